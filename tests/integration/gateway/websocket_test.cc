// The HTTP server's WebSocket layer with test handlers on loopback: the
// handshake, limits, keepalive, slow clients, shutdown.

#include "gateway/websocket.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "catch2/catch.hpp"
#include "gateway/http_server.h"
#include "rapidjson/document.h"
#include "tests/integration/gateway/ws_client.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::gateway {
namespace {

using ::iot2mqtt::testing::RawExchange;
using ::iot2mqtt::testing::StatusOfRaw;
using ::iot2mqtt::testing::WaitFor;
using ::iot2mqtt::testing::WsClient;

// Records what the server told it; echoes, or floods on "flood N SIZE".
class TestHandler : public WebSocketHandler {
 public:
  void OnOpen(std::shared_ptr<WebSocketConnection> connection) override {
    absl::MutexLock lock(&mu_);
    connection_ = std::move(connection);
    opened_ = true;
  }
  void OnMessage(std::string text) override {
    std::shared_ptr<WebSocketConnection> connection;
    {
      absl::MutexLock lock(&mu_);
      connection = connection_;
    }
    if (text.rfind("flood", 0) == 0) {
      // From another thread, as a backend stream would.
      std::thread([this, connection] {
        std::string chunk(16384, 'x');
        for (int i = 0; i < 4000; ++i) {
          if (!connection->SendText(chunk)) {
            absl::MutexLock lock(&mu_);
            refused_ = true;
            return;
          }
        }
      }).detach();
      return;
    }
    if (text == "late") {
      // An answer after 1.5 s of silence (idle time is what is tested).
      std::thread([connection] {
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));
        connection->SendText("late answer");
      }).detach();
      return;
    }
    connection->SendText("echo:" + text);
  }
  void OnClose(int code) override {
    absl::MutexLock lock(&mu_);
    close_code_ = code;
    closes_++;
    connection_.reset();
  }

  std::shared_ptr<WebSocketConnection> connection() {
    absl::MutexLock lock(&mu_);
    return connection_;
  }
  int close_code() {
    absl::MutexLock lock(&mu_);
    return close_code_;
  }
  int closes() {
    absl::MutexLock lock(&mu_);
    return closes_;
  }
  bool refused() {
    absl::MutexLock lock(&mu_);
    return refused_;
  }
  bool opened() {
    absl::MutexLock lock(&mu_);
    return opened_;
  }

 private:
  absl::Mutex mu_;
  std::shared_ptr<WebSocketConnection> connection_;
  bool opened_ = false;
  bool refused_ = false;
  int close_code_ = 0;
  int closes_ = 0;
};

class Handler : public RequestHandler {
 public:
  void Handle(HttpRequest request, Responder respond) override {
    if (request.path == "/ws/test") {
      auto handler = std::make_shared<TestHandler>();
      {
        absl::MutexLock lock(&mu_);
        handlers_.push_back(handler);
      }
      HttpResponse response;
      response.route = "/ws/test";
      response.websocket = handler;
      respond(std::move(response));
      return;
    }
    HttpResponse response;
    response.status = 404;
    response.body = R"({"error":"no"})";
    respond(std::move(response));
  }
  std::shared_ptr<TestHandler> handler(size_t i) {
    absl::MutexLock lock(&mu_);
    REQUIRE(i < handlers_.size());
    return handlers_[i];
  }

 private:
  absl::Mutex mu_;
  std::vector<std::shared_ptr<TestHandler>> handlers_;
};

struct Server {
  explicit Server(HttpServerOptions options = {}) {
    options.listen_address = "127.0.0.1:0";
    server = std::make_unique<HttpServer>(options, &handler);
    REQUIRE(server->Start().ok());
    port = server->port();
  }
  Handler handler;
  std::unique_ptr<HttpServer> server;
  int port = 0;
};

std::string Handshake(const std::string& path, const std::string& extra) {
  return absl::StrCat("GET ", path,
                      " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n",
                      extra, "\r\n");
}

TEST_CASE("a WebSocket opens, echoes and closes cleanly") {
  Server s;
  WsClient client(s.port);
  REQUIRE(client.Open("/ws/test", {{"X-Correlation-ID", "ws-trace-1"}}) == 101);
  CHECK(std::string(client.response()["X-Correlation-ID"]) == "ws-trace-1");
  client.Send("hello");
  CHECK(client.Read() == std::optional<std::string>("echo:hello"));
  client.Send(std::string(1000, 'y'));
  CHECK(client.Read()->size() == 1005);
  CHECK(s.server->websockets_open() == 1);
  client.Close();
  std::shared_ptr<TestHandler> handler = s.handler.handler(0);
  REQUIRE(WaitFor([&] { return handler->closes() == 1; }));
  CHECK(handler->close_code() == kCloseNormal);
  REQUIRE(WaitFor([&] { return s.server->websockets_open() == 0; }));
  // Closed: the connection takes nothing more.
  CHECK(handler->connection() == nullptr);
}

TEST_CASE("bad handshakes are refused with the unified error body") {
  Server s;
  // No key.
  std::string raw =
      RawExchange(s.port,
                  Handshake("/ws/test", "Sec-WebSocket-Version: 13\r\n"))
          .value();
  CHECK(StatusOfRaw(raw) == 400);
  CHECK(raw.find("WEBSOCKET_HANDSHAKE_INVALID") != std::string::npos);
  // Another version.
  raw = RawExchange(s.port,
                    Handshake("/ws/test",
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Version: 8\r\n"))
            .value();
  CHECK(StatusOfRaw(raw) == 426);
  CHECK(raw.find("Sec-WebSocket-Version: 13") != std::string::npos);
  CHECK(raw.find("WEBSOCKET_VERSION_UNSUPPORTED") != std::string::npos);
  // A plain GET to a WebSocket endpoint.
  raw = RawExchange(s.port,
                    "GET /ws/test HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    "\r\n")
            .value();
  CHECK(StatusOfRaw(raw) == 400);
  // HTTP/1.0.
  raw = RawExchange(s.port,
                    "GET /ws/test HTTP/1.0\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n")
            .value();
  CHECK(StatusOfRaw(raw) == 400);
  // A valid handshake to a path the handler refuses is its ordinary answer.
  WsClient client(s.port);
  CHECK(client.Open("/elsewhere") == 404);
  // None of the refused handlers was opened.
  for (size_t i = 0; i < 4; ++i) CHECK_FALSE(s.handler.handler(i)->opened());
}

TEST_CASE("too large and binary messages close the socket") {
  HttpServerOptions options;
  options.websocket_max_message_bytes = 1024;
  Server s(options);
  WsClient big(s.port);
  REQUIRE(big.Open("/ws/test") == 101);
  big.Send(std::string(1000, 'a'));
  CHECK(big.Read().has_value());
  big.Send(std::string(2000, 'a'));
  CHECK_FALSE(big.Read().has_value());
  INFO(big.error());
  CHECK(big.close_code() == kCloseTooBig);
  REQUIRE(WaitFor([&] { return s.handler.handler(0)->closes() == 1; }));
  CHECK(s.handler.handler(0)->close_code() == kCloseTooBig);

  WsClient binary(s.port);
  REQUIRE(binary.Open("/ws/test") == 101);
  binary.SendBinary("\x01\x02");
  CHECK_FALSE(binary.Read().has_value());
  CHECK(binary.close_code() == kCloseUnsupportedData);
}

TEST_CASE("idle sockets are pinged; a silent client is dropped") {
  HttpServerOptions options;
  options.websocket_idle_timeout = absl::Milliseconds(600);
  Server s(options);
  WsClient client(s.port);
  REQUIRE(client.Open("/ws/test") == 101);
  // A reading client answers the pings (Beast does) and stays.
  client.Send("late");
  CHECK(client.Read() == std::optional<std::string>("late answer"));
  CHECK(client.pings() >= 2);
  CHECK(s.handler.handler(0)->closes() == 0);

  // A client that completes the handshake and then never reads.
  std::string raw = absl::StrCat(
      "GET /ws/test HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n");
  absl::Time start = absl::Now();
  std::string answer = RawExchange(s.port, raw, absl::Seconds(10)).value();
  CHECK(StatusOfRaw(answer) == 101);
  // RawExchange returns when the server closed the connection.
  CHECK(absl::Now() - start < absl::Seconds(5));
  REQUIRE(WaitFor([&] { return s.handler.handler(1)->closes() == 1; }));
}

TEST_CASE("a client that doesn't read is closed: 1008 client too slow") {
  HttpServerOptions options;
  options.websocket_queue_bytes = 65536;
  options.websocket_close_timeout = absl::Seconds(20);
  Server s(options);
  WsClient slow(s.port, /*receive_buffer=*/4096);
  REQUIRE(slow.Open("/ws/test") == 101);
  WsClient other(s.port);
  REQUIRE(other.Open("/ws/test") == 101);
  slow.Send("flood");  // 64 MB for a client that reads nothing.
  std::shared_ptr<TestHandler> slow_handler = s.handler.handler(0);
  REQUIRE(WaitFor([&] { return slow_handler->refused(); }));
  // Meanwhile the other socket is served at once.
  other.Send("still here");
  CHECK(other.Read() == std::optional<std::string>("echo:still here"));
  // The queue was dropped: memory stays bounded.
  CHECK(slow_handler->connection()->queued_bytes() <= 65536 + 16384);
  // When the slow client reads at last, it finds the close frame.
  std::optional<std::string> message;
  int received = 0;
  while ((message = slow.Read(absl::Seconds(10)))) ++received;
  CHECK_FALSE(slow.timed_out());
  CHECK(slow.close_code() == kClosePolicyViolation);
  CHECK(slow.close_reason() == kClientTooSlow);
  CHECK(received < 4000);
  REQUIRE(WaitFor([&] { return slow_handler->closes() == 1; }));
  CHECK(slow_handler->close_code() == kClosePolicyViolation);
}

TEST_CASE("shutdown closes sockets with 1001") {
  Server s;
  WsClient client(s.port);
  REQUIRE(client.Open("/ws/test") == 101);
  client.Send("x");
  REQUIRE(client.Read().has_value());
  std::thread stopper([&] { s.server->Shutdown(); });
  CHECK_FALSE(client.Read(absl::Seconds(10)).has_value());
  CHECK_FALSE(client.timed_out());
  CHECK(client.close_code() == kCloseGoingAway);
  stopper.join();
  CHECK(s.handler.handler(0)->close_code() == kCloseGoingAway);
}

}  // namespace
}  // namespace iot2mqtt::gateway
