#ifndef IOT2MQTT_TESTS_SUPPORT_STREAM_CLIENT_H_
#define IOT2MQTT_TESTS_SUPPORT_STREAM_CLIENT_H_

// A raw HTTP client for tests of streaming answers (Server-Sent Events, a
// response that never ends): sends a request to 127.0.0.1 and reads what
// arrives bit by bit, with deadlines. Header-only: it REQUIREs through
// Catch, so only test binaries include it.

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "catch2/catch.hpp"

namespace iot2mqtt::testing {

class StreamClient {
 public:
  // Connects to 127.0.0.1:port (with a small receive buffer when
  // `receive_buffer` > 0) and sends `request`.
  StreamClient(int port, const std::string& request, int receive_buffer = 0) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    if (receive_buffer > 0) {
      setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer,
                 sizeof(receive_buffer));
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) ==
            0);
    size_t sent = 0;
    while (sent < request.size()) {
      ssize_t n =
          send(fd_, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      REQUIRE(n > 0);
      sent += static_cast<size_t>(n);
    }
  }
  ~StreamClient() { Close(); }
  StreamClient(const StreamClient&) = delete;
  StreamClient& operator=(const StreamClient&) = delete;

  // Reads until `done()` holds (true), the server closes or `timeout` passes
  // (false).
  bool ReadUntil(const std::function<bool()>& done,
                 absl::Duration timeout = absl::Seconds(10)) {
    absl::Time deadline = absl::Now() + timeout;
    while (!done()) {
      if (closed_ || !ReadSome(deadline)) return false;
    }
    return true;
  }

  // Reads until what arrived contains `text` (true), the server closes or
  // `timeout` passes (false).
  bool WaitFor(const std::string& text,
               absl::Duration timeout = absl::Seconds(5)) {
    absl::Time deadline = absl::Now() + timeout;
    while (!absl::StrContains(received_, text)) {
      if (closed_ || !ReadSome(deadline)) return false;
    }
    return true;
  }

  // Reads until `text` occurs `count` times.
  bool WaitForCount(const std::string& text, int count,
                    absl::Duration timeout = absl::Seconds(5)) {
    absl::Time deadline = absl::Now() + timeout;
    while (Count(text) < count) {
      if (closed_ || !ReadSome(deadline)) return false;
    }
    return true;
  }

  // Reads until `size` bytes arrived.
  bool WaitForSize(size_t size, absl::Duration timeout = absl::Seconds(5)) {
    absl::Time deadline = absl::Now() + timeout;
    while (received_.size() < size) {
      if (closed_ || !ReadSome(deadline)) return false;
    }
    return true;
  }

  // Reads until the server closes the connection (EOF or reset).
  bool WaitClosed(absl::Duration timeout = absl::Seconds(5)) {
    absl::Time deadline = absl::Now() + timeout;
    while (!closed_) {
      if (!ReadSome(deadline)) return false;
    }
    return true;
  }

  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  const std::string& received() const { return received_; }
  std::string head() const {
    return received_.substr(0, received_.find("\r\n\r\n"));
  }
  std::string body() const {
    size_t end = received_.find("\r\n\r\n");
    return end == std::string::npos ? "" : received_.substr(end + 4);
  }
  // A header of the answer ("" when absent; name in lower case).
  std::string Header(const std::string& name) const {
    for (absl::string_view line : absl::StrSplit(head(), "\r\n")) {
      size_t colon = line.find(':');
      if (colon == absl::string_view::npos) continue;
      if (absl::AsciiStrToLower(line.substr(0, colon)) == name) {
        return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      }
    }
    return "";
  }
  int Count(const std::string& text) const {
    int count = 0;
    for (size_t at = received_.find(text); at != std::string::npos;
         at = received_.find(text, at + text.size())) {
      ++count;
    }
    return count;
  }

 private:
  // Waits for bytes until `deadline`; false on timeout.
  bool ReadSome(absl::Time deadline) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd pfd{fd_, POLLIN, 0};
    int ready =
        poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready < 0 && errno == EINTR) return true;
    if (ready <= 0) return false;
    char buffer[65536];
    ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
    if (n <= 0) {
      closed_ = true;
    } else {
      received_.append(buffer, static_cast<size_t>(n));
    }
    return true;
  }

  int fd_ = -1;
  std::string received_;
  bool closed_ = false;
};

}  // namespace iot2mqtt::testing

#endif  // IOT2MQTT_TESTS_SUPPORT_STREAM_CLIENT_H_
