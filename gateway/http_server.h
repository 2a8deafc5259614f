#ifndef IOT2MQTT_GATEWAY_HTTP_SERVER_H_
#define IOT2MQTT_GATEWAY_HTTP_SERVER_H_

// An asynchronous HTTP/1.1 server (Boost.Beast) that hands complete requests
// to a RequestHandler and writes the answers, on N io threads. It owns the
// protocol: keep-alive, limits (431 for headers, 413 for bodies, checked
// before the body is read), a per-request read deadline (408, so a slow
// client never holds anything but its own connection), 400 for anything
// that isn't HTTP, CORS headers and preflights, the X-Correlation-ID header
// on every response and one INFO log line per request. Nothing on an io
// thread blocks: handlers answer through a Responder that may be called
// later from any thread.
//
// Streaming answers (SSE): a handler may answer with a response whose
// `stream` is set. The server then writes the status line and headers (no
// Content-Length, `Cache-Control: no-cache`, `X-Accel-Buffering: no`,
// `Connection: close`: the body ends when the connection closes), logs the
// request once, and writes whatever the producer pushes into the stream, in
// order, until either side ends it.
//
// WebSockets: a handler accepts an upgrade by answering with a response whose
// `websocket` is set; the server checks the handshake, answers 101 and runs
// the socket (websocket.h).

#include <atomic>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gateway/cors.h"
#include "gateway/http_status.h"
#include "gateway/websocket.h"

namespace iot2mqtt::gateway {

// `text` (a path, a method) safe for a log line or an error message: bytes
// outside printable ASCII (and spaces) percent-encoded, at most `max_bytes`
// of input.
std::string EscapeUnprintable(absl::string_view text, size_t max_bytes);

struct HttpServerOptions {
  std::string listen_address = "0.0.0.0:8080";  // host:port; port 0 = any.
  int threads = 2;
  size_t max_body_bytes = 1048576;
  size_t max_header_bytes = 16384;
  absl::Duration read_timeout = absl::Seconds(30);   // Per request.
  absl::Duration write_timeout = absl::Seconds(30);  // Per response.
  absl::Duration shutdown_grace = absl::Seconds(5);
  std::vector<std::string> cors_origins;
  // WebSockets (websocket.h): the largest message a client may send, the
  // bytes queued for a client before it counts as too slow, the idle time
  // after which the connection is dropped (a ping goes out at half of it),
  // the time allowed for a closing handshake (and for a slow client to take
  // its last write) before the TCP connection is cut.
  size_t websocket_max_message_bytes = 65536;
  size_t websocket_queue_bytes = 1048576;
  absl::Duration websocket_idle_timeout = absl::Seconds(60);
  absl::Duration websocket_close_timeout = absl::Seconds(5);
  // A write to a WebSocket client that makes no progress for this long
  // closes it: 1008 "client too slow".
  absl::Duration websocket_write_timeout = absl::Seconds(30);
};

struct HttpRequest {
  std::string method;  // As sent ("GET").
  std::string target;  // Raw request target ("/api/configs?x=1").
  std::string path;    // Raw path (before '?'), not decoded.
  std::string query;   // Raw query string (after '?'), not decoded.
  HeaderList headers;  // Names in lower case, in arrival order.
  std::string body;
  std::string correlation_id;  // From X-Correlation-ID when sane, else new.
  std::string remote_address;  // The client's IP address ("127.0.0.1").

  // The first value of header `name` (lower case), "" when absent.
  std::string Header(absl::string_view name) const;
};

// The body of a streaming answer: a producer on any thread pushes chunks, the
// connection's strand writes them. Thread-safe; always owned by shared_ptr
// (the producer and the server's session each hold one).
//
//   auto stream = std::make_shared<ResponseStream>();
//   stream->SetOnClose([call] { call->Cancel(); });
//   HttpResponse response;
//   response.content_type = "text/event-stream";
//   response.stream = stream;
//   respond(std::move(response));
//   stream->Write("data: 1\n\n");  // From any thread, before or after.
//
// A slow client is dropped, never waited for: when the bytes queued and not
// yet written exceed `max_buffered_bytes`, the stream closes (the write that
// overflowed returns false) and the connection is closed.
class ResponseStream {
 public:
  static constexpr size_t kDefaultMaxBufferedBytes = 1048576;

  explicit ResponseStream(size_t max_buffered_bytes = kDefaultMaxBufferedBytes);
  ~ResponseStream();
  ResponseStream(const ResponseStream&) = delete;
  ResponseStream& operator=(const ResponseStream&) = delete;

  // Queues `chunk`; never blocks. False (and nothing queued) once the
  // stream is closed or ended, or when `chunk` would take the queue past
  // the limit (which closes the stream: the client is too slow).
  bool Write(std::string chunk);
  // Writes what is queued, then closes the connection. Idempotent.
  void End();
  // Closes at once, dropping what is queued. Idempotent.
  void Close();
  // `on_close` runs exactly once, when the stream ends for any reason: the
  // client disconnected, End() finished writing, a write failed or timed
  // out, the buffer overflowed, Close() was called, or the server shut down.
  // It may run on any thread, also inside Write() or Close() on the
  // caller's thread, or inside SetOnClose itself when the stream is closed
  // already, so it must not take a lock held around those calls. Replaces
  // an earlier callback that hasn't run.
  void SetOnClose(std::function<void()> on_close);
  // True once End() or Close() was called or the stream closed: Write()
  // would return false.
  bool closed() const;
  size_t max_buffered_bytes() const { return max_buffered_bytes_; }

 private:
  friend class Session;
  enum class Take { kIdle, kData, kEnded, kClosed };

  // For the session (on its strand). `notify` is called (under the lock, so
  // it must only post) whenever there is something new to take.
  void Attach(std::function<void()> notify);
  // Moves the queued chunks to `chunks`: kData. Else kEnded (End() called,
  // all written), kClosed, or kIdle. With `chunks` null (a write in flight)
  // only kClosed or kIdle. Re-arms the notification either way.
  Take TakeChunks(std::vector<std::string>* chunks);
  // `bytes` of taken chunks were written (no longer buffered).
  void Written(size_t bytes);
  // Marks closed, wakes and forgets the session, runs on_close once (not
  // under the lock).
  void CloseAndNotify();
  // Whether the stream closed because the buffer limit was exceeded.
  bool overflowed() const;
  void NotifyLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_buffered_bytes_;
  mutable absl::Mutex mu_;
  std::vector<std::string> queue_ ABSL_GUARDED_BY(mu_);
  size_t buffered_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // Queued + in flight.
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
  bool notify_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool on_close_ran_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> notify_ ABSL_GUARDED_BY(mu_);
  std::function<void()> on_close_ ABSL_GUARDED_BY(mu_);
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  HeaderList headers;
  std::string body;
  // Label for metrics and the access log: the matched route template
  // ("/api/configs/{mac_address}") or "unmatched".
  std::string route = "unmatched";
  // Set for a streaming answer: `body` is ignored and the stream's chunks
  // follow the headers (see ResponseStream). The server closes the stream
  // when it can't be served (server shutting down: 503; HEAD, 204, 304:
  // headers only).
  std::shared_ptr<ResponseStream> stream;
  // Set to accept a WebSocket upgrade (websocket.h): status, body and
  // stream are ignored. A request that isn't a valid handshake gets 400 (426
  // for another version) and the handler is destroyed unused.
  std::shared_ptr<WebSocketHandler> websocket;
};

// Answers one request; must be called exactly once, from any thread.
using Responder = std::function<void(HttpResponse)>;

class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  // Called on an io thread: must not block.
  virtual void Handle(HttpRequest request, Responder respond) = 0;
  // Called once per answered request (also for the server's own errors).
  virtual void Record(absl::string_view method, const HttpResponse& response,
                      absl::Duration latency) {}
};

// An error answer in the unified body (see http_status.h).
HttpResponse ErrorResponse(const HttpError& error,
                           absl::string_view correlation_id);

// The correlation id to use for a request carrying `header` (the
// X-Correlation-ID value, maybe empty): the header when it is printable
// ASCII without spaces and at most 128 bytes, else a new one.
std::string CorrelationIdFor(absl::string_view header);

class HttpServer {
 public:
  // `handler` is not owned and must outlive the server.
  HttpServer(HttpServerOptions options, RequestHandler* handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts the io threads. Fails when the address can't be bound.
  absl::Status Start();
  // The bound port (after Start).
  int port() const { return port_; }

  // Stops accepting, closes idle connections and streaming answers at once,
  // closes WebSockets with 1001, lets requests in progress (and closing
  // handshakes) finish within the grace period, then stops the io threads. Responders called afterwards are ignored (their streams
  // are closed). Idempotent.
  void Shutdown();

  // Requests read but not yet answered (a streaming answer counts until its
  // headers are written).
  int requests_in_progress() const;
  // Open WebSockets (upgraded and not yet finished).
  int websockets_open() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace iot2mqtt::gateway

#endif  // IOT2MQTT_GATEWAY_HTTP_SERVER_H_
