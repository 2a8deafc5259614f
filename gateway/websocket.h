#ifndef IOT2MQTT_GATEWAY_WEBSOCKET_H_
#define IOT2MQTT_GATEWAY_WEBSOCKET_H_

// WebSocket endpoints (RFC 6455) on the HTTP server.
//
// A RequestHandler accepts an upgrade by answering with an HttpResponse whose
// `websocket` is set (see http_server.h); every refusal before that (401, 404,
// ...) is an ordinary HTTP answer with the unified error body. The server
// then checks the handshake (ValidateWebSocketUpgrade: 400, or 426 for
// another protocol version), answers 101, and drives the socket:
//
//   - incoming: text messages up to `max_message_bytes` (larger: close 1009,
//     binary: close 1003), each handed to OnMessage;
//   - outgoing: SendText queues without blocking; the queue is bounded in
//     bytes. A producer that can wait (a backend stream) checks congested()
//     and pauses until NotifyWhenDrained fires, so a client that reads
//     slowly makes the producer skip ahead instead of growing the queue.
//     A client that doesn't read is closed with 1008 "client too slow": when
//     the queue overflows, or when one write makes no progress for
//     `write_timeout` (the queue is dropped; the close frame follows the
//     write in flight; the TCP connection goes after `close_timeout` if the
//     client never reads again). It never holds up the producer or other
//     sockets;
//   - keepalive: a ping after half the idle timeout without traffic; no
//     traffic (not even a pong) for the whole idle timeout closes the TCP
//     connection;
//   - server shutdown: close 1001 "server shutting down".
//
// A handler:
//
//   class Echo : public WebSocketHandler {
//     void OnOpen(std::shared_ptr<WebSocketConnection> c) override {
//       connection_ = c;
//     }
//     void OnMessage(std::string text) override {
//       connection_->SendText(text);
//     }
//     void OnClose(int code) override { connection_.reset(); }
//     std::shared_ptr<WebSocketConnection> connection_;
//   };
//
//   HttpResponse response;
//   response.websocket = std::make_shared<Echo>();
//   respond(std::move(response));

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "gateway/http_status.h"

namespace iot2mqtt::gateway {

struct HttpRequest;

// Close codes (RFC 6455 §7.4.1) the gateway uses.
inline constexpr int kCloseNormal = 1000;
inline constexpr int kCloseGoingAway = 1001;        // Server shutting down.
inline constexpr int kCloseUnsupportedData = 1003;  // A binary message.
inline constexpr int kCloseAbnormal = 1006;  // No close frame (never sent).
inline constexpr int kClosePolicyViolation = 1008;  // Too slow, token expired.
inline constexpr int kCloseTooBig = 1009;
inline constexpr int kCloseInternalError = 1011;  // A backend failed.

// Reason of the close frame for a client that didn't keep up.
inline constexpr char kClientTooSlow[] = "client too slow";

// One open WebSocket as its handler sees it. Thread-safe; SendText and Close
// never block and never call the handler back on the caller's thread (so
// they may be called holding a lock the handler's callbacks take).
class WebSocketConnection {
 public:
  virtual ~WebSocketConnection() = default;

  // Queues one text message (UTF-8). False (nothing queued) once the socket
  // is closing or closed, or when the message would take the queue past the
  // limit, which closes the socket with 1008 "client too slow". A single
  // message larger than the limit is accepted when nothing else is queued.
  virtual bool SendText(std::string message) = 0;

  // Sends what is queued, then a close frame with `code` and `reason` (at
  // most 123 bytes; longer is cut). Idempotent: the first close wins.
  virtual void Close(int code, std::string reason) = 0;

  // Bytes queued and not yet written.
  virtual size_t queued_bytes() const = 0;

  // Whether the queue holds more than half its limit: a producer that can
  // wait should stop sending until NotifyWhenDrained fires.
  virtual bool congested() const = 0;

  // Runs `callback` once, never inside this call, when the queue has
  // drained to a quarter of its limit (soon, when it is there already).
  // Never runs once the socket is closed.
  virtual void NotifyWhenDrained(std::function<void()> callback) = 0;
};

// The server side of one WebSocket endpoint. The server calls it on the
// socket's strand, one call at a time: OnOpen once the upgrade succeeded,
// OnMessage per text message, OnClose exactly once after OnOpen when the
// socket is gone for any reason. A handler whose upgrade fails is destroyed
// without any call. Callbacks must not block.
class WebSocketHandler {
 public:
  virtual ~WebSocketHandler() = default;
  virtual void OnOpen(std::shared_ptr<WebSocketConnection> connection) = 0;
  virtual void OnMessage(std::string text) = 0;
  // `code`: the close code sent or received (kCloseAbnormal when the TCP
  // connection just ended). The connection refuses further messages.
  virtual void OnClose(int code) = 0;
};

// Why `request` is not a valid WebSocket opening handshake, or nothing when
// it is: GET, HTTP/1.1 (the caller checks the version), `Upgrade: websocket`,
// `Connection` containing `upgrade`, a `Sec-WebSocket-Key` of 16 base64
// bytes; 400 WEBSOCKET_HANDSHAKE_INVALID otherwise. A `Sec-WebSocket-Version`
// other than 13 is 426 WEBSOCKET_VERSION_UNSUPPORTED (the answer should
// carry `Sec-WebSocket-Version: 13`).
std::optional<HttpError> ValidateWebSocketUpgrade(const HttpRequest& request);

inline constexpr char kWebSocketHandshakeInvalid[] =
    "WEBSOCKET_HANDSHAKE_INVALID";
inline constexpr char kWebSocketVersionUnsupported[] =
    "WEBSOCKET_VERSION_UNSUPPORTED";

}  // namespace iot2mqtt::gateway

#endif  // IOT2MQTT_GATEWAY_WEBSOCKET_H_
