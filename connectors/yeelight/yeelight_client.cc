#include "connectors/yeelight/yeelight_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "iot2mqtt/sdk/log.h"

namespace iot2mqtt::yeelight {
namespace {

std::string Errno(absl::string_view what) {
  return absl::StrCat(what, ": ", std::strerror(errno));
}

int PollTimeoutMs(absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) return -1;
  absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  int64_t ms =
      absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1)));
  return static_cast<int>(std::min<int64_t>(ms, 60 * 60 * 1000));
}

void Drain(int fd) {
  char buffer[64];
  while (read(fd, buffer, sizeof(buffer)) > 0) {
  }
}

std::string Excerpt(absl::string_view line) {
  constexpr size_t kMax = 120;
  if (line.size() <= kMax) return std::string(line);
  return absl::StrCat(line.substr(0, kMax), "...");
}

}  // namespace

Client::Client(ClientOptions options) : options_(std::move(options)) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0) {
    wake_read_ = fds[0];
    wake_write_ = fds[1];
  }
  thread_ = std::thread([this] { Run(); });
}

Client::~Client() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  Wake();
  thread_.join();
  if (wake_read_ >= 0) close(wake_read_);
  if (wake_write_ >= 0) close(wake_write_);
}

void Client::Wake() {
  if (wake_write_ >= 0) {
    char byte = 1;
    ssize_t ignored = write(wake_write_, &byte, 1);
    (void)ignored;
  }
}

bool Client::connected() const {
  absl::MutexLock lock(&mu_);
  return connected_;
}

int64_t Client::malformed_lines() const {
  absl::MutexLock lock(&mu_);
  return malformed_lines_;
}

void Client::Disconnect() {
  {
    absl::MutexLock lock(&mu_);
    if (fd_ < 0) return;
    connected_ = false;
    drop_requested_ = true;
  }
  Wake();
}

absl::StatusOr<std::vector<std::string>> Client::Call(const Request& request,
                                                      absl::Duration timeout) {
  if (timeout <= absl::ZeroDuration()) timeout = options_.request_timeout;
  const absl::Time deadline = absl::Now() + timeout;
  Pending pending;
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::CancelledError("client is shutting down");
  if (!connected_) {
    const int64_t failures = connect_failures_;
    connect_requested_ = true;
    Wake();
    auto settled = [this, failures]() {
      mu_.AssertHeld();
      return connected_ || stopping_ || connect_failures_ > failures;
    };
    mu_.AwaitWithDeadline(absl::Condition(&settled), deadline);
    if (stopping_) return absl::CancelledError("client is shutting down");
    if (!connected_) {
      if (connect_failures_ > failures) {
        return absl::UnavailableError(last_connect_error_);
      }
      return absl::DeadlineExceededError(
          absl::StrCat("no connection to ", options_.host, ":", options_.port,
                       " within ", absl::FormatDuration(timeout)));
    }
  }
  const int64_t id = next_id_++;
  const std::string line = EncodeRequest(id, request);
  ssize_t sent =
      send(fd_, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (sent != static_cast<ssize_t>(line.size())) {
    std::string error = sent < 0 ? Errno("send") : "short send";
    // New requests wait for a fresh connection rather than use this one.
    connected_ = false;
    drop_requested_ = true;
    Wake();
    return absl::UnavailableError(
        absl::StrCat("sending ", request.method, " to ", options_.host, ":",
                     options_.port, " failed: ", error));
  }
  pending_[id] = &pending;
  mu_.AwaitWithDeadline(absl::Condition(&pending.done), deadline);
  pending_.erase(id);
  if (!pending.done) {
    // A bulb that lost power leaves a half-open socket; start afresh.
    connected_ = false;
    drop_requested_ = true;
    Wake();
    return absl::DeadlineExceededError(
        absl::StrCat(request.method, " to ", options_.host, ":", options_.port,
                     ": no answer within ", absl::FormatDuration(timeout)));
  }
  return std::move(pending.result);
}

absl::StatusOr<Properties> Client::GetProperties(
    const std::vector<std::string>& names, absl::Duration timeout) {
  absl::StatusOr<std::vector<std::string>> values =
      Call(GetProp(names), timeout);
  if (!values.ok()) return values.status();
  Properties properties;
  for (size_t i = 0; i < names.size(); ++i) {
    properties[names[i]] = i < values->size() ? (*values)[i] : std::string();
  }
  return properties;
}

absl::Status Client::Connect() {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  std::string port = absl::StrCat(options_.port);
  int rc = getaddrinfo(options_.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0 || found == nullptr) {
    return absl::UnavailableError(absl::StrCat(
        "cannot resolve \"", options_.host, "\": ", gai_strerror(rc)));
  }
  sockaddr_storage address{};
  socklen_t address_len = found->ai_addrlen;
  std::memcpy(&address, found->ai_addr, found->ai_addrlen);
  freeaddrinfo(found);

  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return absl::UnavailableError(Errno("socket"));
  const std::string where = absl::StrCat(options_.host, ":", options_.port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), address_len) != 0 &&
      errno != EINPROGRESS) {
    std::string error = Errno(absl::StrCat("connect to ", where));
    close(fd);
    return absl::UnavailableError(error);
  }
  const absl::Time deadline = absl::Now() + options_.connect_timeout;
  while (true) {
    pollfd fds[2] = {{fd, POLLOUT, 0}, {wake_read_, POLLIN, 0}};
    int ready = poll(fds, 2, PollTimeoutMs(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      close(fd);
      return absl::UnavailableError(
          absl::StrCat("connect to ", where, ": timed out after ",
                       absl::FormatDuration(options_.connect_timeout)));
    }
    if (fds[1].revents != 0) {
      Drain(wake_read_);
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        close(fd);
        return absl::CancelledError("client is shutting down");
      }
    }
    if (fds[0].revents != 0) break;
  }
  int error = 0;
  socklen_t error_len = sizeof(error);
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_len);
  if (error != 0) {
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("connect to ", where, ": ", std::strerror(error)));
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  {
    absl::MutexLock lock(&mu_);
    fd_ = fd;
    connected_ = true;
  }
  IOT2MQTT_LOG(DEBUG).With("bulb", options_.log_name).With("address", where)
      << "connected to bulb";
  if (options_.on_connection) options_.on_connection(true);
  return absl::OkStatus();
}

void Client::CloseConnection(const std::string& reason) {
  {
    absl::MutexLock lock(&mu_);
    if (fd_ < 0) return;
    close(fd_);
    fd_ = -1;
    connected_ = false;
    for (auto& [id, pending] : pending_) {
      pending->result = absl::UnavailableError(
          absl::StrCat("connection to ", options_.host, ":", options_.port,
                       " lost: ", reason));
      pending->done = true;
    }
    pending_.clear();
  }
  IOT2MQTT_LOG(INFO)
          .With("bulb", options_.log_name)
          .With("address", absl::StrCat(options_.host, ":", options_.port))
          .With("reason", reason)
      << "connection to bulb closed";
  if (options_.on_connection) options_.on_connection(false);
}

void Client::HandleLine(const std::string& line) {
  absl::StatusOr<Message> message = ParseMessage(line);
  if (!message.ok()) {
    {
      absl::MutexLock lock(&mu_);
      ++malformed_lines_;
    }
    IOT2MQTT_LOG(WARNING)
            .With("bulb", options_.log_name)
            .With("line", Excerpt(line))
            .With("error", message.status().message())
        << "skipping malformed line from bulb";
    return;
  }
  if (message->kind == Message::Kind::kNotification) {
    if (message->method == "props") {
      if (options_.on_notification) options_.on_notification(message->params);
    } else {
      IOT2MQTT_LOG(DEBUG)
              .With("bulb", options_.log_name)
              .With("method", message->method)
          << "ignoring notification";
    }
    return;
  }
  absl::MutexLock lock(&mu_);
  auto it = pending_.find(message->id);
  if (it == pending_.end()) {
    IOT2MQTT_LOG(DEBUG).With("bulb", options_.log_name).With("id", message->id)
        << "answer for no pending request (late?)";
    return;
  }
  Pending* pending = it->second;
  if (message->kind == Message::Kind::kResult) {
    pending->result = std::move(message->result);
  } else {
    pending->result = absl::FailedPreconditionError(absl::StrCat(
        "bulb error ", message->error_code, ": ", message->error_message));
  }
  pending->done = true;
  pending_.erase(it);
}

void Client::Run() {
  LineSplitter splitter;
  std::mt19937 random(std::random_device{}());
  absl::Duration backoff = options_.reconnect_min;
  absl::Time next_attempt = absl::InfinitePast();
  bool healthy = false;  // The current connection delivered a valid line.
  size_t dropped_seen = 0;
  while (true) {
    int fd;
    bool drop;
    bool want_connect;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      fd = fd_;
      drop = drop_requested_;
      drop_requested_ = false;
      want_connect = connect_requested_;
    }
    if (fd >= 0 && drop) {
      CloseConnection("dropped by client");
      splitter.Clear();
      next_attempt = absl::Now() + options_.reconnect_min;
      continue;
    }
    if (fd < 0) {
      bool attempt = want_connect ||
                     (options_.keep_connected && absl::Now() >= next_attempt);
      if (attempt) {
        absl::Status status = Connect();
        absl::MutexLock lock(&mu_);
        connect_requested_ = false;
        if (status.ok()) {
          splitter.Clear();
          healthy = false;
          continue;
        }
        if (stopping_) break;
        ++connect_failures_;
        last_connect_error_ = std::string(status.message());
        std::uniform_real_distribution<double> jitter(0.8, 1.2);
        next_attempt = absl::Now() + backoff * jitter(random);
        backoff = std::min(backoff * 2, options_.reconnect_max);
        continue;
      }
      absl::Time until =
          options_.keep_connected ? next_attempt : absl::InfiniteFuture();
      pollfd wake = {wake_read_, POLLIN, 0};
      if (poll(&wake, 1, PollTimeoutMs(until)) > 0) Drain(wake_read_);
      continue;
    }
    pollfd fds[2] = {{fd, POLLIN, 0}, {wake_read_, POLLIN, 0}};
    int ready = poll(fds, 2, -1);
    if (ready < 0) continue;
    if (fds[1].revents != 0) Drain(wake_read_);
    if (fds[0].revents == 0) continue;
    char buffer[4096];
    ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n > 0) {
      splitter.Append(absl::string_view(buffer, static_cast<size_t>(n)));
      std::string line;
      while (splitter.Next(&line)) {
        int64_t malformed_before = malformed_lines();
        HandleLine(line);
        if (!healthy && malformed_lines() == malformed_before) {
          healthy = true;
          backoff = options_.reconnect_min;
        }
      }
      if (splitter.dropped_lines() != dropped_seen) {
        absl::MutexLock lock(&mu_);
        malformed_lines_ +=
            static_cast<int64_t>(splitter.dropped_lines() - dropped_seen);
        dropped_seen = splitter.dropped_lines();
        IOT2MQTT_LOG(WARNING).With("bulb", options_.log_name)
            << "skipping over-long line from bulb";
      }
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      continue;
    }
    CloseConnection(n == 0 ? "closed by bulb" : Errno("recv"));
    splitter.Clear();
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    next_attempt = absl::Now() + backoff * jitter(random);
    if (!healthy) backoff = std::min(backoff * 2, options_.reconnect_max);
  }
  // Shutting down.
  absl::MutexLock lock(&mu_);
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  connected_ = false;
  for (auto& [id, pending] : pending_) {
    pending->result = absl::CancelledError("client is shutting down");
    pending->done = true;
  }
  pending_.clear();
}

}  // namespace iot2mqtt::yeelight
