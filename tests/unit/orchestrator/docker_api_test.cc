// The Docker API client's wire formats and transport, without a dockerd:
// the multiplexed log stream, timestamps, version negotiation, and the
// libcurl transport against a small fake daemon on a unix socket.

#include "services/orchestrator/docker_api.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "catch2/catch.hpp"
#include "services/common/status.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::orchestrator {
namespace {

using ::iot2mqtt::testing::TempDir;

// One frame of Docker's multiplexed stream.
std::string Frame(int stream, const std::string& payload) {
  std::string header(8, '\0');
  header[0] = static_cast<char>(stream);
  uint32_t n = static_cast<uint32_t>(payload.size());
  header[4] = static_cast<char>((n >> 24) & 0xff);
  header[5] = static_cast<char>((n >> 16) & 0xff);
  header[6] = static_cast<char>((n >> 8) & 0xff);
  header[7] = static_cast<char>(n & 0xff);
  return header + payload;
}

struct Collected {
  std::vector<LogLine> lines;
  LogSink Sink() {
    return [this](const LogLine& line) {
      lines.push_back(line);
      return true;
    };
  }
};

absl::Time At(const std::string& text) {
  absl::Time t;
  std::string error;
  REQUIRE(absl::ParseTime(absl::RFC3339_full, text, &t, &error));
  return t;
}

TEST_CASE("log stream: frames split anywhere give the same lines",
          "[unit][docker]") {
  std::string stream =
      Frame(1, "2024-05-01T10:00:00.123456789Z connector started\n") +
      Frame(2, "2024-05-01T10:00:01.5Z warning: slow broker\n") +
      Frame(1, "2024-05-01T10:00:02Z state published\n") +
      // A 300-byte line, so a header lands mid-payload for some splits.
      Frame(1, "2024-05-01T10:00:03Z " + std::string(300, 'x') + "\n");

  auto check = [](const std::vector<LogLine>& lines) {
    REQUIRE(lines.size() == 4);
    CHECK(lines[0].stream == "stdout");
    CHECK(lines[0].text == "connector started");
    CHECK(lines[0].time ==
          At("2024-05-01T10:00:00Z") + absl::Nanoseconds(123456789));
    CHECK(lines[1].stream == "stderr");
    CHECK(lines[1].text == "warning: slow broker");
    CHECK(lines[1].time ==
          At("2024-05-01T10:00:01Z") + absl::Milliseconds(500));
    CHECK(lines[2].text == "state published");
    CHECK(lines[3].text == std::string(300, 'x'));
  };

  SECTION("one byte at a time") {
    Collected got;
    LogStreamDecoder decoder(false, got.Sink());
    for (char c : stream) REQUIRE(decoder.Feed(std::string(1, c)));
    REQUIRE(decoder.Finish());
    check(got.lines);
  }
  SECTION("random splits") {
    std::mt19937 random(42);
    for (int round = 0; round < 50; ++round) {
      Collected got;
      LogStreamDecoder decoder(false, got.Sink());
      size_t at = 0;
      while (at < stream.size()) {
        size_t n = std::uniform_int_distribution<size_t>(1, 40)(random);
        n = std::min(n, stream.size() - at);
        REQUIRE(decoder.Feed(stream.substr(at, n)));
        at += n;
      }
      REQUIRE(decoder.Finish());
      check(got.lines);
    }
  }
}

TEST_CASE(
    "log stream: a line spread over frames, a last line without "
    "newline, CRLF",
    "[unit][docker]") {
  Collected got;
  LogStreamDecoder decoder(false, got.Sink());
  REQUIRE(decoder.Feed(Frame(1, "2024-05-01T10:00:00Z part one, ")));
  REQUIRE(decoder.Feed(Frame(2, "2024-05-01T10:00:00Z on stderr\r\n")));
  REQUIRE(decoder.Feed(Frame(1, "part two\n")));
  REQUIRE(decoder.Feed(Frame(1, "2024-05-01T10:00:09Z cut off")));
  CHECK(got.lines.size() == 2);
  REQUIRE(decoder.Finish());
  REQUIRE(got.lines.size() == 3);
  CHECK(got.lines[0].stream == "stderr");
  CHECK(got.lines[0].text == "on stderr");
  CHECK(got.lines[1].stream == "stdout");
  CHECK(got.lines[1].text == "part one, part two");
  CHECK(got.lines[2].text == "cut off");
  CHECK(got.lines[2].time == At("2024-05-01T10:00:09Z"));
}

TEST_CASE(
    "log stream: a TTY stream is raw, lines without a timestamp keep "
    "their text",
    "[unit][docker]") {
  Collected got;
  LogStreamDecoder decoder(true, got.Sink());
  REQUIRE(decoder.Feed("2024-05-01T10:00:00Z first\r\nsecond li"));
  REQUIRE(decoder.Feed("ne\n"));
  REQUIRE(decoder.Finish());
  REQUIRE(got.lines.size() == 2);
  CHECK(got.lines[0].text == "first");
  CHECK(got.lines[0].stream == "stdout");
  CHECK(got.lines[1].text == "second line");
  CHECK(got.lines[1].time == absl::InfinitePast());
}

TEST_CASE("log stream: a sink returning false stops the decoding",
          "[unit][docker]") {
  int calls = 0;
  LogStreamDecoder decoder(false, [&calls](const LogLine&) {
    ++calls;
    return false;
  });
  CHECK_FALSE(decoder.Feed(Frame(1, "a\nb\nc\n")));
  CHECK_FALSE(decoder.Feed(Frame(1, "d\n")));
  CHECK_FALSE(decoder.Finish());
  CHECK(calls == 1);
}

TEST_CASE("Docker timestamps", "[unit][docker]") {
  CHECK(ParseDockerTime("2024-05-01T10:00:00.000000001Z") ==
        At("2024-05-01T10:00:00Z") + absl::Nanoseconds(1));
  CHECK(ParseDockerTime("2024-05-01T12:00:00+02:00") ==
        At("2024-05-01T10:00:00Z"));
  CHECK(ParseDockerTime("0001-01-01T00:00:00Z") == absl::InfinitePast());
  CHECK(ParseDockerTime("") == absl::InfinitePast());
  CHECK(ParseDockerTime("yesterday") == absl::InfinitePast());
}

TEST_CASE("DOCKER_HOST gives the socket, only unix sockets", "[unit][docker]") {
  CHECK(*DockerSocketPath(nullptr) == "/var/run/docker.sock");
  CHECK(*DockerSocketPath("") == "/var/run/docker.sock");
  CHECK(*DockerSocketPath("unix:///run/user/1000/docker.sock") ==
        "/run/user/1000/docker.sock");
  CHECK(absl::IsInvalidArgument(
      DockerSocketPath("tcp://192.0.2.10:2375").status()));
  CHECK(absl::IsInvalidArgument(DockerSocketPath("unix://relative").status()));
}

TEST_CASE(
    "API version: the daemon's newest, capped, never below its "
    "oldest",
    "[unit][docker]") {
  CHECK(*ChooseApiVersion("1.41", "1.12") == "1.41");
  CHECK(*ChooseApiVersion("1.52", "1.24") == "1.47");
  CHECK(*ChooseApiVersion("1.52", "1.48") == "1.48");
  absl::StatusOr<std::string> old = ChooseApiVersion("1.39", "1.12");
  CHECK(absl::IsFailedPrecondition(old.status()));
  CHECK(common::ReasonOf(old.status()) == "DOCKER_TOO_OLD");
  CHECK_FALSE(ChooseApiVersion("banana", "1.12").ok());
}

TEST_CASE("query escaping and Docker error bodies", "[unit][docker]") {
  CHECK(QueryEscape(R"({"label":["a=b"]})") ==
        "%7B%22label%22%3A%5B%22a%3Db%22%5D%7D");
  CHECK(QueryEscape("iot2mqtt_demo:latest") == "iot2mqtt_demo%3Alatest");
  CHECK(DockerErrorMessage(R"({"message":"No such container: x"})") ==
        "No such container: x");
  CHECK(DockerErrorMessage("plain\n") == "plain");
}

TEST_CASE("line splitter", "[unit][docker]") {
  std::vector<std::string> lines;
  LineSplitter splitter(
      [&lines](absl::string_view line) { lines.emplace_back(line); });
  splitter.Feed("{\"stream\":\"a\"}\n{\"str");
  splitter.Feed("eam\":\"b\"}\n{\"x\":1}");
  CHECK(lines.size() == 2);
  splitter.Finish();
  REQUIRE(lines.size() == 3);
  CHECK(lines[1] == "{\"stream\":\"b\"}");
  CHECK(lines[2] == "{\"x\":1}");
}

// A fake daemon: answers GET /version, then streams a chunked body that
// never ends for any other request.
class FakeDaemon {
 public:
  explicit FakeDaemon(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof(address.sun_path));
    path.copy(address.sun_path, path.size());
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) ==
            0);
    REQUIRE(listen(fd_, 8) == 0);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeDaemon() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  int requests() const { return requests_; }

 private:
  void Serve() {
    while (!stop_) {
      int client = accept(fd_, nullptr, nullptr);
      if (client < 0) return;
      std::string request;
      char buffer[4096];
      while (request.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = read(client, buffer, sizeof(buffer));
        if (n <= 0) break;
        request.append(buffer, static_cast<size_t>(n));
      }
      ++requests_;
      if (request.rfind("GET /version ", 0) == 0) {
        std::string body = R"({"Version":"20.10.24","ApiVersion":"1.41",)"
                           R"("MinAPIVersion":"1.12"})";
        std::string answer = absl::StrCat(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            "Content-Length: ",
            body.size(), "\r\n\r\n", body);
        (void)!write(client, answer.data(), answer.size());
        close(client);
        continue;
      }
      std::string head =
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
      (void)!write(client, head.data(), head.size());
      std::string chunk = Frame(1, "2024-05-01T10:00:00Z tick\n");
      std::string encoded =
          absl::StrCat(absl::Hex(chunk.size()), "\r\n", chunk, "\r\n");
      // One line now, then silence until the client goes away.
      (void)!write(client, encoded.data(), encoded.size());
      while (!stop_ && read(client, buffer, sizeof(buffer)) > 0) {
      }
      close(client);
    }
  }

  std::string path_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::thread thread_;
};

TEST_CASE("transport: no daemon is UNAVAILABLE RUNTIME_UNAVAILABLE",
          "[unit][docker]") {
  TempDir dir;
  DockerApi api(DockerApiOptions{dir.Join("missing.sock"), absl::Seconds(2)});
  absl::StatusOr<std::string> version = api.Version(absl::Seconds(2));
  CHECK(absl::IsUnavailable(version.status()));
  CHECK(common::ReasonOf(version.status()) == "RUNTIME_UNAVAILABLE");
}

TEST_CASE("transport: a stream is cancelled within 250 ms, a call times out",
          "[unit][docker]") {
  TempDir dir;
  FakeDaemon daemon(dir.Join("d.sock"));
  DockerApi api(DockerApiOptions{dir.Join("d.sock"), absl::Seconds(2)});

  std::atomic<int> lines{0};
  std::atomic<bool> cancel{false};
  absl::Time cancelled_at = absl::InfiniteFuture();
  LogStreamDecoder decoder(false, [&](const LogLine& line) {
    if (line.text == "tick") ++lines;
    return true;
  });
  bool saw_line = false;
  std::thread canceller([&] {
    saw_line = ::iot2mqtt::testing::WaitFor([&] { return lines.load() == 1; });
    cancelled_at = absl::Now();
    cancel = true;
  });
  absl::StatusOr<DockerResponse> streamed = api.Stream(
      "GET", "/containers/x/logs?follow=1", absl::InfiniteDuration(),
      [&decoder](absl::string_view chunk) { return decoder.Feed(chunk); },
      [&cancel] { return cancel.load(); });
  absl::Time returned_at = absl::Now();
  canceller.join();
  CHECK(saw_line);
  CHECK(absl::IsCancelled(streamed.status()));
  CHECK(returned_at - cancelled_at < absl::Milliseconds(250));
  // The API version came from GET /version first.
  CHECK(api.api_version() == "1.41");

  absl::StatusOr<DockerResponse> slow =
      api.Call("GET", "/containers/x/logs", absl::Milliseconds(300));
  CHECK(absl::IsDeadlineExceeded(slow.status()));
  CHECK(common::ReasonOf(slow.status()) == "RUNTIME_TIMEOUT");
}

}  // namespace
}  // namespace iot2mqtt::orchestrator
