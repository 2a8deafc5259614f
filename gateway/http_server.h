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
};

struct HttpRequest {
  std::string method;  // As sent ("GET").
  std::string target;  // Raw request target ("/api/configs?x=1").
  std::string path;    // Raw path (before '?'), not decoded.
  std::string query;   // Raw query string (after '?'), not decoded.
  HeaderList headers;  // Names in lower case, in arrival order.
  std::string body;
  std::string correlation_id;  // From X-Correlation-ID when sane, else new.

  // The first value of header `name` (lower case), "" when absent.
  std::string Header(absl::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  HeaderList headers;
  std::string body;
  // Label for metrics and the access log: the matched route template
  // ("/api/configs/{mac_address}") or "unmatched".
  std::string route = "unmatched";
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

  // Stops accepting, closes idle connections, lets requests in progress
  // finish within the grace period, then stops the io threads. Responders
  // called afterwards are ignored. Idempotent.
  void Shutdown();

  // Requests read but not yet answered.
  int requests_in_progress() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace iot2mqtt::gateway

#endif  // IOT2MQTT_GATEWAY_HTTP_SERVER_H_
