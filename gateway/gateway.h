#ifndef IOT2MQTT_GATEWAY_GATEWAY_H_
#define IOT2MQTT_GATEWAY_GATEWAY_H_

// The HTTP gateway: REST/JSON derived from the protos in front of the gRPC
// backends, plus the built-in routes
//
//   GET /api/health             every backend's TelemetryService.GetHealth,
//                               and mqtt_connected (mqtt-bridge GetStatus)
//   GET /metrics                our metrics + every backend's GetMetrics
//   GET /api/docs               HTML reference of the REST API
//   GET /api/docs/openapi.json  OpenAPI 3.0 document
//   WS  /ws/mqtt                live MQTT view (mqtt_socket.h)
//   WS  /ws/logs/{id}           an instance's log lines (StreamLogs)
//   WS  /api/discovery/ws       discovered devices: each DevicesSnapshot
//                               of WatchDevices as a text frame
//   WS  /api/discovery/{session_id}
//                               a discovery session: each state of
//                               WatchSession as a text frame, close 1000
//                               after the final one; an unknown session
//                               gets `{"error":"Invalid session ID",...}`
//                               and close 1008
//
// (The two discovery sockets are WebSocket upgrades only; other requests
// to those paths go through the route table. `ws` is matched first, so it
// never reads as a session id.)
//
// In-process use (tests):
//
//   GatewayOptions options;
//   options.listen_address = "127.0.0.1:0";
//   options.backends = {{"config", {"iot2mqtt.config.v1.ConfigService"},
//                        absl::StrCat("127.0.0.1:", grpc_port)}};
//   absl::StatusOr<std::unique_ptr<Gateway>> gateway =
//   Gateway::Create(options); REQUIRE((*gateway)->Start().ok()); int port =
//   (*gateway)->port();

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gateway/auth.h"
#include "gateway/backend_calls.h"
#include "gateway/gateway_options.h"
#include "gateway/http_server.h"
#include "gateway/route_table.h"
#include "gateway/sse_bridge.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace iot2mqtt::gateway {

// The deadline of a transcoded call of `method` with `request`: `base`
// (GATEWAY_BACKEND_DEADLINE_MS), plus the method's
// `(iot2mqtt.api.v1.max_duration_seconds)` when set (a call that may
// legitimately run that long, e.g. a setup tool), plus the request's own
// `timeout` (seconds, a double field; a command's wait) when it has one.
absl::Duration BackendDeadlineFor(
    const google::protobuf::MethodDescriptor& method,
    const google::protobuf::Message& request, absl::Duration base);

class Gateway final : public RequestHandler, public BackendCalls {
 public:
  // Builds the routes from the descriptors and the backend channels (which
  // connect lazily); doesn't listen yet. Fails on unusable options or
  // http rules.
  static absl::StatusOr<std::unique_ptr<Gateway>> Create(
      GatewayOptions options);
  ~Gateway() override;

  // Listens and serves; "gateway listening on http://host:port" is logged.
  absl::Status Start();
  // The bound port (after Start).
  int port() const { return server_->port(); }
  // Stops accepting, lets requests in progress finish within the grace
  // period, cancels backend calls still running. Idempotent.
  void Shutdown();

  void Handle(HttpRequest request, Responder respond) override;
  void Record(absl::string_view method, const HttpResponse& response,
              absl::Duration latency) override;

  const RouteTable& routes() const { return routes_; }

  // BackendCalls (for the WebSocket endpoints): tracked like every backend
  // call, cancelled and waited for by Shutdown.
  void Unary(const std::string& rpc_path,
             const google::protobuf::Message& request,
             const CallOptions& options, UnaryDone done) override;
  std::shared_ptr<CallHandle> Stream(const std::string& rpc_path,
                                     const google::protobuf::Message& request,
                                     const CallOptions& options,
                                     StreamCallbacks callbacks,
                                     grpc::Status* refused = nullptr) override;

  // Backend calls and streams still running (SSE, WebSocket, unary).
  int calls_in_progress();
  // Open WebSockets.
  int websockets_open() const { return server_->websockets_open(); }

 private:
  struct Backend {
    BackendSpec spec;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<grpc::GenericStub> stub;
  };
  struct PendingCall;
  // Called on a gRPC thread with the status and the serialized response.
  using CallDone =
      std::function<void(const grpc::Status&, const std::string& response)>;

  Gateway(GatewayOptions options, RouteTable routes);

  void Call(Backend* backend, const std::string& rpc_path,
            const google::protobuf::Message& request, absl::Duration deadline,
            const std::string& correlation_id, CallDone done,
            std::vector<std::pair<std::string, std::string>> metadata = {});
  // Serves an authenticated (or public) request.
  void Dispatch(HttpRequest request, Responder respond,
                const Principal& principal);
  // Resolves `token` to its principal (cache, else the config service's
  // VerifyToken) and calls `next` with it or with the reason it's refused.
  void Authenticate(
      const std::string& token, const std::string& correlation_id,
      std::function<void(const grpc::Status&, const Principal& principal)>
          next);
  // The answer to /api/auth/check and /api/auth/verify.
  bool HandleAuthRoute(const HttpRequest& request, Responder& respond,
                       const std::string& subject);
  // `/ws/logs/{id}`: the orchestrator's log stream as text frames.
  void HandleLogsSocket(const HttpRequest& request, Responder respond,
                        const Principal& principal, const std::string& id);
  // A WebSocket upgrade on `/api/discovery/ws` (WatchDevices) or
  // `/api/discovery/{session_id}` (WatchSession); `segment` is the decoded
  // last path segment.
  void HandleDiscoverySocket(const HttpRequest& request, Responder respond,
                             const Principal& principal,
                             const std::string& segment);
  // A server-streaming route: Server-Sent Events through an SseBridge.
  // It ends when the token that opened it expires.
  void HandleStream(const Route& route, Backend* backend,
                    std::unique_ptr<google::protobuf::Message> message,
                    const HttpRequest& request, Responder respond,
                    absl::Time token_expires);
  void HandleRoute(const Route& route,
                   const std::vector<PathTemplate::Binding>& bindings,
                   HttpRequest request, Responder respond,
                   absl::Time token_expires);
  bool NoCallsLeft() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(calls_mu_);
  void HandleHealth(const HttpRequest& request, Responder respond);
  void HandleMetrics(const HttpRequest& request, Responder respond);
  // True when `request` was for a built-in route (and is answered).
  bool HandleBuiltIn(const HttpRequest& request, Responder& respond);
  // A request for /ws/...: a WebSocket endpoint, or 404/405.
  void HandleWebSocket(const HttpRequest& request, Responder respond,
                       const Principal& principal);
  // The backend serving the service of `rpc_path`, or null.
  Backend* BackendFor(const std::string& rpc_path);

  GatewayOptions options_;
  RouteTable routes_;
  std::vector<std::unique_ptr<Backend>> backends_;
  std::map<std::string, Backend*> backend_by_service_;
  std::string openapi_json_;
  std::string docs_html_;

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_total_;
  prometheus::Family<prometheus::Histogram>* request_duration_;
  prometheus::Family<prometheus::Counter>* backend_calls_total_;
  prometheus::Family<prometheus::Counter>* backend_errors_total_;
  prometheus::Family<prometheus::Counter>* logins_total_;
  prometheus::Family<prometheus::Counter>* auth_rejections_total_;

  absl::Mutex calls_mu_;
  std::set<PendingCall*> calls_ ABSL_GUARDED_BY(calls_mu_);
  // Open SSE streams, cancelled at shutdown.
  std::map<SseBridge*, std::weak_ptr<SseBridge>> streams_
      ABSL_GUARDED_BY(calls_mu_);
  // Streams of the WebSocket endpoints, cancelled at shutdown.
  std::map<CallHandle*, std::weak_ptr<CallHandle>> socket_calls_
      ABSL_GUARDED_BY(calls_mu_);
  bool accepting_calls_ ABSL_GUARDED_BY(calls_mu_) = true;

  Backend* auth_backend_ = nullptr;  // Serves Login/VerifyToken.
  LoginLimiter login_limiter_;
  TokenCache token_cache_;

  std::unique_ptr<HttpServer> server_;
  bool shut_down_ = false;
};

}  // namespace iot2mqtt::gateway

#endif  // IOT2MQTT_GATEWAY_GATEWAY_H_
