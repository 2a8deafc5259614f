#include "gateway/gateway.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gateway/mqtt_socket.h"
#include "gateway/openapi.h"
#include "gateway/stream_call.h"
#include "gateway/transcoder.h"
#include "gateway/websocket_stream.h"
#include "google/protobuf/message.h"
#include "iot2mqtt/api/v1/annotations.pb.h"
#include "iot2mqtt/config/v1/config_service.pb.h"
#include "iot2mqtt/discovery/v1/discovery_service.pb.h"
#include "iot2mqtt/mqtt_bridge/v1/mqtt_bridge_service.pb.h"
#include "iot2mqtt/orchestrator/v1/orchestrator_service.pb.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/telemetry/v1/telemetry_service.pb.h"
#include "prometheus/text_serializer.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"
#include "services/common/grpc_status.h"
#include "services/common/rpc_scope.h"
#include "services/common/service_client.h"
#include "services/common/status.h"

namespace iot2mqtt::gateway {
namespace {

using google::protobuf::Message;

constexpr char kGetHealth[] =
    "/iot2mqtt.telemetry.v1.TelemetryService/GetHealth";
constexpr char kGetMetrics[] =
    "/iot2mqtt.telemetry.v1.TelemetryService/GetMetrics";

constexpr char kConfigService[] = "iot2mqtt.config.v1.ConfigService";
constexpr char kLoginRpc[] = "/iot2mqtt.config.v1.ConfigService/Login";
constexpr char kVerifyTokenRpc[] =
    "/iot2mqtt.config.v1.ConfigService/VerifyToken";
// Metadata carrying the HTTP client's address to the config service (a
// first login sets the access key only from the machine itself).
constexpr char kClientAddressMetadata[] = "x-client-address";

constexpr char kHealthRoute[] = "/api/health";
constexpr char kMetricsRoute[] = "/metrics";
constexpr char kDocsRoute[] = "/api/docs";
constexpr char kOpenApiRoute[] = "/api/docs/openapi.json";
constexpr char kWebSocketPrefix[] = "/ws/";
constexpr char kMqttSocketRoute[] = "/ws/mqtt";
// `/ws/logs/{id}`: the orchestrator's StreamLogs as text frames.
constexpr char kLogsSocketPrefix[] = "/ws/logs/";
constexpr char kLogsSocketRoute[] = "/ws/logs/{id}";
constexpr char kOrchestratorService[] =
    "iot2mqtt.orchestrator.v1.OrchestratorService";
constexpr char kStreamLogsRpc[] =
    "/iot2mqtt.orchestrator.v1.OrchestratorService/StreamLogs";
constexpr char kSystemStatusRpc[] =
    "/iot2mqtt.orchestrator.v1.OrchestratorService/GetSystemStatus";
// WebSockets of the discovery service (upgrades only; the same paths are
// REST routes otherwise). `ws` is matched before the session id: upstream
// did it the other way round and `/api/discovery/ws` was unreachable.
constexpr char kDiscoveryDevicesSocketRoute[] = "/api/discovery/ws";
constexpr char kDiscoverySessionSocketRoute[] = "/api/discovery/{session_id}";
constexpr char kDiscoveryService[] = "iot2mqtt.discovery.v1.DiscoveryService";
constexpr char kWatchDevicesRpc[] =
    "/iot2mqtt.discovery.v1.DiscoveryService/WatchDevices";
constexpr char kWatchSessionRpc[] =
    "/iot2mqtt.discovery.v1.DiscoveryService/WatchSession";
// Upstream's frame for an unknown session (kept verbatim as "error").
constexpr char kInvalidSessionId[] = "Invalid session ID";

// Bounded label values: arbitrary methods from clients must not create
// unbounded metric series.
std::string MethodLabel(absl::string_view method) {
  for (const char* known :
       {"GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "HEAD"}) {
    if (method == known) return known;
  }
  return "OTHER";
}

HttpResponse Error(const HttpError& error, const HttpRequest& request,
                   std::string route = "unmatched") {
  HttpResponse response = ErrorResponse(error, request.correlation_id);
  response.route = std::move(route);
  return response;
}

HttpResponse MethodNotAllowed(const HttpRequest& request,
                              std::vector<std::string> allowed,
                              std::string route) {
  allowed.push_back("OPTIONS");
  std::string allow = absl::StrJoin(allowed, ", ");
  HttpResponse response =
      Error(GatewayError(
                405, absl::StatusCode::kUnimplemented,
                absl::StrCat("method ", EscapeUnprintable(request.method, 256),
                             " is not allowed on ",
                             EscapeUnprintable(request.path, 256),
                             "; allowed: ", allow),
                "METHOD_NOT_ALLOWED", {{"allowed_methods", allow}}),
            request, std::move(route));
  response.headers.emplace_back("Allow", allow);
  return response;
}

HttpResponse Options(std::vector<std::string> allowed, std::string route) {
  allowed.push_back("OPTIONS");
  HttpResponse response;
  response.status = 204;
  response.content_type.clear();
  response.route = std::move(route);
  response.headers.emplace_back("Allow", absl::StrJoin(allowed, ", "));
  return response;
}

// The last segment of `/api/discovery/<segment>` (decoded) when `path` is
// exactly that, else nothing.
std::optional<std::string> DiscoverySocketSegment(absl::string_view path) {
  absl::StatusOr<std::vector<std::string>> segments = SplitPath(path);
  if (!segments.ok() || segments->size() != 3 || (*segments)[0] != "api" ||
      (*segments)[1] != "discovery" || (*segments)[2].empty()) {
    return std::nullopt;
  }
  return (*segments)[2];
}

// How a failed discovery stream ends its socket: upstream's `{"error":
// msg}` frame with our type/code/message beside it, then 1011; for a session
// socket whose id is unknown (or can't be one), upstream's "Invalid session
// ID" and 1008.
StreamWebSocket::Ending DiscoverySocketEnding(const grpc::Status& status,
                                              bool session) {
  HttpError error = BackendError(status, "discovery");
  const std::string reason = ErrorReason(error.status);
  std::string message = error.status.message();
  StreamWebSocket::Ending ending;
  ending.close_reason = "backend stream failed";
  if (session &&
      (error.status.code() == static_cast<int>(absl::StatusCode::kNotFound) ||
       error.status.code() ==
           static_cast<int>(absl::StatusCode::kInvalidArgument))) {
    message = kInvalidSessionId;
    ending.close_code = kClosePolicyViolation;
    ending.close_reason = kInvalidSessionId;
  }
  ending.frame = sdk::JsonObjectBuilder()
                     .Set("error", message)
                     .Set("type", "error")
                     .Set("code", reason)
                     .Set("message", message)
                     .Build();
  return ending;
}

std::chrono::system_clock::time_point DeadlineAfter(absl::Duration timeout) {
  return std::chrono::system_clock::now() +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(
             absl::ToChronoMilliseconds(timeout));
}

}  // namespace

struct Gateway::PendingCall {
  grpc::ClientContext context;
  grpc::ByteBuffer request;
  grpc::ByteBuffer response;
};

absl::StatusOr<std::unique_ptr<Gateway>> Gateway::Create(
    GatewayOptions options) {
  std::vector<std::string> services;
  for (const BackendSpec& backend : options.backends) {
    services.insert(services.end(), backend.services.begin(),
                    backend.services.end());
  }
  absl::StatusOr<RouteTable> routes = RouteTable::Build(services);
  if (!routes.ok()) return routes.status();
  return std::unique_ptr<Gateway>(
      new Gateway(std::move(options), *std::move(routes)));
}

Gateway::Gateway(GatewayOptions options, RouteTable routes)
    : options_(std::move(options)),
      routes_(std::move(routes)),
      registry_(std::make_shared<prometheus::Registry>()),
      login_limiter_(options_.max_failed_logins,
                     options_.login_failure_window) {
  for (const BackendSpec& spec : options_.backends) {
    auto backend = std::make_unique<Backend>();
    backend->spec = spec;
    // Comes back quickly after a backend restart.
    backend->channel = common::MakeServiceChannel(spec.address);
    backend->stub = std::make_unique<grpc::GenericStub>(backend->channel);
    for (const std::string& service : spec.services) {
      backend_by_service_[service] = backend.get();
    }
    backends_.push_back(std::move(backend));
  }
  if (auto it = backend_by_service_.find(kConfigService);
      it != backend_by_service_.end()) {
    auth_backend_ = it->second;
  }
  openapi_json_ = BuildOpenApiJson(routes_);
  docs_html_ = BuildDocsHtml(routes_);

  requests_total_ = &prometheus::BuildCounter()
                         .Name("iot_http_requests_total")
                         .Help("HTTP requests answered by the gateway")
                         .Register(*registry_);
  request_duration_ =
      &prometheus::BuildHistogram()
           .Name("iot_http_request_duration_seconds")
           .Help("Time from a complete request header to the answer")
           .Register(*registry_);
  backend_calls_total_ = &prometheus::BuildCounter()
                              .Name("iot_gateway_backend_calls_total")
                              .Help("gRPC calls made to backends, by gRPC code")
                              .Register(*registry_);
  backend_errors_total_ =
      &prometheus::BuildCounter()
           .Name("iot_gateway_backend_errors_total")
           .Help(
               "Backend calls that failed before the service answered "
               "(unreachable, deadline) and failed telemetry fetches")
           .Register(*registry_);

  logins_total_ = &prometheus::BuildCounter()
                       .Name("iot_gateway_logins_total")
                       .Help(
                           "Login attempts by outcome: success, failure "
                           "(wrong or missing key), limited (429)")
                       .Register(*registry_);
  auth_rejections_total_ =
      &prometheus::BuildCounter()
           .Name("iot_gateway_auth_rejections_total")
           .Help("Requests refused for want of a valid token, by reason")
           .Register(*registry_);

  HttpServerOptions server_options;
  server_options.listen_address = options_.listen_address;
  server_options.threads = options_.threads;
  server_options.max_body_bytes = options_.max_body_bytes;
  server_options.max_header_bytes = options_.max_header_bytes;
  server_options.read_timeout = options_.read_timeout;
  server_options.shutdown_grace = options_.shutdown_grace;
  server_options.cors_origins = options_.cors_origins;
  server_options.websocket_max_message_bytes = options_.ws_max_message_bytes;
  server_options.websocket_queue_bytes = options_.ws_queue_bytes;
  server_options.websocket_idle_timeout = options_.ws_idle_timeout;
  server_options.websocket_write_timeout = options_.ws_write_timeout;
  server_ = std::make_unique<HttpServer>(std::move(server_options), this);
}

Gateway::~Gateway() { Shutdown(); }

absl::Status Gateway::Start() {
  if (absl::Status s = server_->Start(); !s.ok()) return s;
  std::string host =
      options_.listen_address.substr(0, options_.listen_address.rfind(':'));
  IOT2MQTT_LOG(INFO)
          .With("port", server_->port())
          .With("routes", static_cast<int64_t>(routes_.routes().size()))
      << "gateway listening on http://" << host << ":" << server_->port();
  for (const auto& backend : backends_) {
    IOT2MQTT_LOG(INFO)
            .With("backend", backend->spec.name)
            .With("address", backend->spec.address)
        << "backend " << backend->spec.name << " at " << backend->spec.address;
  }
  return absl::OkStatus();
}

void Gateway::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  // Requests in progress get the grace period to finish...
  server_->Shutdown();
  // ...then backend calls still running are cancelled, and we wait for
  // their callbacks, which reference the server's io_context.
  std::vector<std::shared_ptr<SseBridge>> streams;
  std::vector<std::shared_ptr<CallHandle>> socket_calls;
  {
    absl::MutexLock lock(&calls_mu_);
    accepting_calls_ = false;
    for (PendingCall* call : calls_) call->context.TryCancel();
    for (auto& [raw, weak] : streams_) {
      if (std::shared_ptr<SseBridge> bridge = weak.lock()) {
        streams.push_back(std::move(bridge));
      }
    }
    for (auto& [raw, weak] : socket_calls_) {
      if (std::shared_ptr<CallHandle> call = weak.lock()) {
        socket_calls.push_back(std::move(call));
      }
    }
  }
  for (const std::shared_ptr<SseBridge>& bridge : streams) bridge->Cancel();
  for (const std::shared_ptr<CallHandle>& call : socket_calls) call->Cancel();
  streams.clear();
  socket_calls.clear();
  absl::MutexLock lock(&calls_mu_);
  calls_mu_.Await(absl::Condition(this, &Gateway::NoCallsLeft));
}

bool Gateway::NoCallsLeft() const {
  return calls_.empty() && streams_.empty() && socket_calls_.empty();
}

int Gateway::calls_in_progress() {
  absl::MutexLock lock(&calls_mu_);
  return static_cast<int>(calls_.size() + streams_.size() +
                          socket_calls_.size());
}

Gateway::Backend* Gateway::BackendFor(const std::string& rpc_path) {
  // "/pkg.Service/Method" → "pkg.Service".
  size_t slash = rpc_path.find('/', 1);
  if (rpc_path.empty() || rpc_path[0] != '/' || slash == std::string::npos) {
    return nullptr;
  }
  auto it = backend_by_service_.find(rpc_path.substr(1, slash - 1));
  return it == backend_by_service_.end() ? nullptr : it->second;
}

void Gateway::Unary(const std::string& rpc_path, const Message& request,
                    const CallOptions& options, UnaryDone done) {
  Backend* backend = BackendFor(rpc_path);
  if (backend == nullptr) {
    done(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                      absl::StrCat("no backend serves ", rpc_path)),
         "");
    return;
  }
  absl::Duration deadline = options_.backend_deadline;
  if (options.deadline != absl::InfiniteFuture()) {
    deadline = std::max(absl::ZeroDuration(),
                        std::min(deadline, options.deadline - absl::Now()));
  }
  Call(backend, rpc_path, request, deadline, options.correlation_id,
       std::move(done));
}

std::shared_ptr<CallHandle> Gateway::Stream(const std::string& rpc_path,
                                            const Message& request,
                                            const CallOptions& options,
                                            StreamCallbacks callbacks,
                                            grpc::Status* refused) {
  Backend* backend = BackendFor(rpc_path);
  if (backend == nullptr) {
    if (refused != nullptr) {
      *refused = grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                              absl::StrCat("no backend serves ", rpc_path));
    }
    return nullptr;
  }
  std::string bytes = request.SerializeAsString();
  absl::MutexLock lock(&calls_mu_);
  if (!accepting_calls_) {
    if (refused != nullptr) {
      *refused = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              "the gateway is shutting down");
    }
    return nullptr;
  }
  // Registered before it can end: on_done takes calls_mu_.
  auto holder = std::make_shared<CallHandle*>(nullptr);
  std::function<void(const grpc::Status&)> done = std::move(callbacks.on_done);
  callbacks.on_done = [this, holder,
                       done = std::move(done)](const grpc::Status& status) {
    if (done) done(status);
    absl::MutexLock done_lock(&calls_mu_);
    socket_calls_.erase(*holder);
  };
  std::shared_ptr<StreamCall> call = StreamCall::Start(
      backend->stub.get(), rpc_path, bytes, options, std::move(callbacks));
  *holder = call.get();
  socket_calls_[call.get()] = call;
  return call;
}

void Gateway::HandleWebSocket(const HttpRequest& request, Responder respond,
                              const Principal& principal) {
  absl::StatusOr<std::string> decoded = PercentDecode(request.path);
  const std::string path = decoded.ok() ? *decoded : request.path;
  if (absl::StartsWith(path, kLogsSocketPrefix)) {
    HandleLogsSocket(request, std::move(respond), principal,
                     path.substr(sizeof(kLogsSocketPrefix) - 1));
    return;
  }
  if (path != kMqttSocketRoute) {
    respond(
        Error(GatewayError(404, absl::StatusCode::kNotFound,
                           absl::StrCat("no WebSocket endpoint at ",
                                        EscapeUnprintable(request.path, 256)),
                           "ROUTE_NOT_FOUND"),
              request));
    return;
  }
  if (request.method == "OPTIONS") {
    respond(Options({"GET"}, kMqttSocketRoute));
    return;
  }
  if (request.method != "GET") {
    respond(MethodNotAllowed(request, {"GET"}, kMqttSocketRoute));
    return;
  }
  if (backend_by_service_.count(kMqttBridgeService) == 0) {
    respond(Error(GatewayError(501, absl::StatusCode::kUnimplemented,
                               "no mqtt-bridge backend is configured",
                               "BACKEND_NOT_CONFIGURED"),
                  request, kMqttSocketRoute));
    return;
  }
  MqttSocketOptions socket_options;
  socket_options.correlation_id = request.correlation_id;
  socket_options.token_expires = principal.expires_at;
  HttpResponse response;
  response.route = kMqttSocketRoute;
  response.websocket = std::make_shared<MqttSocket>(this, socket_options);
  respond(std::move(response));
}

absl::Duration BackendDeadlineFor(
    const google::protobuf::MethodDescriptor& method, const Message& request,
    absl::Duration base) {
  absl::Duration deadline = base;
  // A method that may legitimately run long (a setup tool, bounded by the
  // service) declares how long.
  const int max_duration =
      method.options().GetExtension(api::v1::max_duration_seconds);
  if (max_duration > 0) deadline += absl::Seconds(max_duration);
  // A request that names how long it may wait (a command's `timeout`, in
  // seconds) gets that long on top; the service bounds the value.
  const google::protobuf::FieldDescriptor* timeout =
      request.GetDescriptor()->FindFieldByName("timeout");
  if (timeout == nullptr ||
      timeout->type() != google::protobuf::FieldDescriptor::TYPE_DOUBLE ||
      timeout->is_repeated() ||
      !request.GetReflection()->HasField(request, timeout)) {
    return deadline;
  }
  const double seconds = request.GetReflection()->GetDouble(request, timeout);
  if (!(seconds > 0) || seconds > 3600) return deadline;
  return deadline + absl::Seconds(seconds);
}

void Gateway::HandleLogsSocket(const HttpRequest& request, Responder respond,
                               const Principal& principal,
                               const std::string& id) {
  if (request.method != "GET") {
    respond(MethodNotAllowed(request, {"GET"}, kLogsSocketRoute));
    return;
  }
  if (backend_by_service_.count(kOrchestratorService) == 0) {
    respond(Error(GatewayError(501, absl::StatusCode::kUnimplemented,
                               "no orchestrator backend is configured",
                               "BACKEND_NOT_CONFIGURED"),
                  request, kLogsSocketRoute));
    return;
  }
  // The orchestrator validates the id (only our runtimes exist for it);
  // here it must merely be one path segment.
  if (id.empty() || id.find('/') != std::string::npos) {
    respond(Error(GatewayError(404, absl::StatusCode::kNotFound,
                               "no WebSocket endpoint here", "ROUTE_NOT_FOUND"),
                  request, kLogsSocketRoute));
    return;
  }
  auto message = std::make_unique<orchestrator::v1::StreamLogsRequest>();
  message->set_id(id);
  for (absl::string_view pair : absl::StrSplit(request.query, '&')) {
    if (!absl::ConsumePrefix(&pair, "lines=")) continue;
    int lines = 0;
    if (!absl::SimpleAtoi(pair, &lines) || lines < 0) {
      respond(Error(GatewayError(400, absl::StatusCode::kInvalidArgument,
                                 "lines must be a non-negative integer",
                                 kInvalidQueryParameter),
                    request, kLogsSocketRoute));
      return;
    }
    message->set_lines(lines);
  }
  CallOptions call_options;
  call_options.correlation_id = request.correlation_id;
  call_options.deadline = principal.expires_at;
  HttpResponse response;
  response.route = kLogsSocketRoute;
  response.websocket = std::make_shared<StreamWebSocket>(
      this, kStreamLogsRpc, std::move(message),
      orchestrator::v1::LogEntry::descriptor(), call_options);
  respond(std::move(response));
}

void Gateway::HandleDiscoverySocket(const HttpRequest& request,
                                    Responder respond,
                                    const Principal& principal,
                                    const std::string& segment) {
  const bool devices = segment == "ws";
  const char* route =
      devices ? kDiscoveryDevicesSocketRoute : kDiscoverySessionSocketRoute;
  if (request.method != "GET") {
    respond(MethodNotAllowed(request, {"GET"}, route));
    return;
  }
  if (backend_by_service_.count(kDiscoveryService) == 0) {
    respond(Error(GatewayError(501, absl::StatusCode::kUnimplemented,
                               "no discovery backend is configured",
                               "BACKEND_NOT_CONFIGURED"),
                  request, route));
    return;
  }
  CallOptions call_options;
  call_options.correlation_id = request.correlation_id;
  call_options.deadline = principal.expires_at;
  HttpResponse response;
  response.route = route;
  if (devices) {
    response.websocket = std::make_shared<StreamWebSocket>(
        this, kWatchDevicesRpc,
        std::make_unique<discovery::v1::WatchDevicesRequest>(),
        discovery::v1::DevicesSnapshot::descriptor(), call_options, nullptr,
        [](const grpc::Status& status) {
          return DiscoverySocketEnding(status, /*session=*/false);
        });
    respond(std::move(response));
    return;
  }
  auto message = std::make_unique<discovery::v1::SessionRequest>();
  message->set_session_id(segment);
  response.websocket = std::make_shared<StreamWebSocket>(
      this, kWatchSessionRpc, std::move(message),
      discovery::v1::DiscoverySession::descriptor(), call_options, nullptr,
      [](const grpc::Status& status) {
        return DiscoverySocketEnding(status, /*session=*/true);
      });
  respond(std::move(response));
}

void Gateway::HandleStream(const Route& route, Backend* backend,
                           std::unique_ptr<Message> message,
                           const HttpRequest& request, Responder respond,
                           absl::Time token_expires) {
  // EventSource reconnects with Last-Event-ID: resume there unless the
  // query says otherwise.
  const google::protobuf::FieldDescriptor* after =
      message->GetDescriptor()->FindFieldByName("after");
  if (after != nullptr &&
      after->type() == google::protobuf::FieldDescriptor::TYPE_STRING &&
      !after->is_repeated() &&
      message->GetReflection()->GetString(*message, after).empty()) {
    message->GetReflection()->SetString(message.get(), after,
                                        LastEventIdOf(request));
  }
  auto stream = std::make_shared<ResponseStream>();
  SseCall call;
  call.stub = backend->stub.get();
  call.rpc_path = route.rpc_path;
  call.request = message->SerializeAsString();
  call.response_type = route.method->output_type();
  call.correlation_id = request.correlation_id;
  call.backend = backend->spec.name;
  call.deadline = token_expires;
  call.deadline_error =
      GatewayError(401, absl::StatusCode::kUnauthenticated,
                   "the token that opened this stream expired; log in again",
                   "TOKEN_EXPIRED");
  {
    absl::MutexLock lock(&calls_mu_);
    if (!accepting_calls_) {
      respond(Error(
          GatewayError(503, absl::StatusCode::kUnavailable,
                       "the gateway is shutting down", "BACKEND_UNAVAILABLE"),
          request, route.path.text()));
      return;
    }
    // Registered before it starts, so on_done always finds it.
    auto holder = std::make_shared<SseBridge*>(nullptr);
    std::shared_ptr<SseBridge> bridge =
        SseBridge::Start(std::move(call), stream, SseOptions(),
                         [this, holder](const grpc::Status&) {
                           absl::MutexLock done_lock(&calls_mu_);
                           streams_.erase(*holder);
                         });
    // on_done can't run before this: it takes calls_mu_.
    *holder = bridge.get();
    streams_[bridge.get()] = bridge;
  }
  HttpResponse response;
  response.route = route.path.text();
  response.content_type = kSseContentType;
  response.stream = std::move(stream);
  respond(std::move(response));
}

void Gateway::Call(Backend* backend, const std::string& rpc_path,
                   const Message& request, absl::Duration deadline,
                   const std::string& correlation_id, CallDone done,
                   std::vector<std::pair<std::string, std::string>> metadata) {
  auto call = std::make_shared<PendingCall>();
  {
    absl::MutexLock lock(&calls_mu_);
    if (!accepting_calls_) {
      done(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the gateway is shutting down"),
           "");
      return;
    }
    calls_.insert(call.get());
  }
  call->context.set_deadline(DeadlineAfter(deadline));
  call->context.AddMetadata(common::kCorrelationIdMetadata, correlation_id);
  for (const auto& [key, value] : metadata) {
    call->context.AddMetadata(key, value);
  }
  std::string bytes = request.SerializeAsString();
  grpc::Slice slice(std::move(bytes));
  call->request = grpc::ByteBuffer(&slice, 1);
  std::string service = backend->spec.name;
  backend->stub->UnaryCall(
      &call->context, rpc_path, grpc::StubOptions(), &call->request,
      &call->response,
      [this, call, service, done = std::move(done)](grpc::Status status) {
        std::string response;
        if (status.ok()) response = BytesOf(call->response);
        backend_calls_total_
            ->Add({{"service", service},
                   {"code", common::CodeName(static_cast<absl::StatusCode>(
                                status.error_code()))}})
            .Increment();
        done(status, response);
        absl::MutexLock lock(&calls_mu_);
        calls_.erase(call.get());
      });
}

void Gateway::Handle(HttpRequest request, Responder respond) {
  // HEAD is GET without the body (the server drops it).
  if (request.method == "HEAD") request.method = "GET";
  if (options_.auth_mode == AuthMode::kDisabled) {
    Dispatch(std::move(request), std::move(respond), Principal{"anonymous"});
    return;
  }
  // Routes match decoded segments, so decide on the decoded path:
  // "/%61pi/instances" is "/api/instances", not a static file.
  absl::StatusOr<std::string> decoded = PercentDecode(request.path);
  if (request.method == "OPTIONS" ||
      IsPublicRoute(request.method, decoded.ok() ? *decoded : request.path)) {
    Dispatch(std::move(request), std::move(respond), Principal{});
    return;
  }
  // Streams (WebSocket, Server-Sent Events) may carry the token in the
  // query: browsers open them without custom headers. A transcoded route is
  // a stream only when its RPC is; WebSockets are the gateway's own routes.
  bool stream = false;
  if (request.method == "GET") {
    RouteMatch match = routes_.Match("GET", request.path);
    stream = match.route != nullptr ? match.route->streaming
                                    : IsWebSocketUpgrade(request);
    // The discovery sockets share their paths with REST routes
    // (`/api/discovery/status` is a session id to the socket).
    if (IsWebSocketUpgrade(request) && DiscoverySocketSegment(request.path)) {
      stream = true;
    }
  }
  std::string token = BearerTokenOf(request, stream);
  std::string correlation_id = request.correlation_id;
  auto shared = std::make_shared<HttpRequest>(std::move(request));
  Authenticate(
      token, correlation_id,
      [this, shared, respond = std::move(respond)](
          const grpc::Status& status, const Principal& principal) mutable {
        if (!status.ok()) {
          HttpResponse error = ErrorResponse(BackendError(status, "config"),
                                             shared->correlation_id);
          if (error.status == 401) {
            error.headers.emplace_back("WWW-Authenticate", "Bearer");
            auth_rejections_total_
                ->Add({{"reason",
                        common::ReasonOf(common::ToAbslStatus(status))}})
                .Increment();
          }
          respond(std::move(error));
          return;
        }
        Dispatch(std::move(*shared), std::move(respond), principal);
      });
}

void Gateway::Authenticate(
    const std::string& token, const std::string& correlation_id,
    std::function<void(const grpc::Status&, const Principal& principal)> next) {
  if (token.empty()) {
    next(common::ToGrpcStatus(common::WithReason(
             absl::UnauthenticatedError(
                 "Not authenticated: send \"Authorization: Bearer <token>\" "
                 "with a token from POST /api/auth/login"),
             kAuthRequired)),
         Principal{});
    return;
  }
  if (std::optional<Principal> principal =
          token_cache_.Lookup(token, absl::Now())) {
    next(grpc::Status::OK, *principal);
    return;
  }
  if (auth_backend_ == nullptr) {
    next(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      "no config service to check tokens"),
         Principal{});
    return;
  }
  config::v1::VerifyTokenRequest verify;
  verify.set_token(token);
  Call(auth_backend_, kVerifyTokenRpc, verify, options_.backend_deadline,
       correlation_id,
       [this, token, next = std::move(next)](const grpc::Status& status,
                                             const std::string& bytes) {
         if (!status.ok()) {
           next(status, Principal{});
           return;
         }
         config::v1::VerifyTokenResponse reply;
         if (!reply.ParseFromString(bytes)) {
           next(grpc::Status(grpc::StatusCode::INTERNAL,
                             "unreadable VerifyToken answer"),
                Principal{});
           return;
         }
         absl::Time expires =
             absl::FromUnixSeconds(reply.expires_at().seconds());
         token_cache_.Insert(token, reply.subject(), expires);
         next(grpc::Status::OK, Principal{reply.subject(), expires});
       });
}

bool Gateway::HandleAuthRoute(const HttpRequest& request, Responder& respond,
                              const std::string& subject) {
  const bool check = request.path == kAuthCheckPath;
  if (!check && request.path != kAuthVerifyPath) return false;
  const char* method = check ? "GET" : "POST";
  if (request.method == "OPTIONS") {
    respond(Options({method}, request.path));
    return true;
  }
  if (request.method != method) {
    respond(MethodNotAllowed(request, {method}, request.path));
    return true;
  }
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.StartObject();
  writer.Key(check ? "authenticated" : "valid");
  writer.Bool(true);
  writer.Key("user");
  writer.String(subject.c_str());
  writer.EndObject();
  HttpResponse response;
  response.route = request.path;
  response.body.assign(buffer.GetString(), buffer.GetSize());
  respond(std::move(response));
  return true;
}

void Gateway::Dispatch(HttpRequest request, Responder respond,
                       const Principal& principal) {
  if (HandleAuthRoute(request, respond, principal.subject)) return;
  if (HandleBuiltIn(request, respond)) return;
  if (absl::StartsWith(request.path, kWebSocketPrefix)) {
    HandleWebSocket(request, std::move(respond), principal);
    return;
  }
  if (IsWebSocketUpgrade(request)) {
    if (std::optional<std::string> segment =
            DiscoverySocketSegment(request.path)) {
      HandleDiscoverySocket(request, std::move(respond), principal, *segment);
      return;
    }
  }
  RouteMatch match = routes_.Match(request.method, request.path);
  switch (match.outcome) {
    case RouteMatch::Outcome::kMatched:
      HandleRoute(*match.route, match.bindings, std::move(request),
                  std::move(respond), principal.expires_at);
      return;
    case RouteMatch::Outcome::kBadPath:
      respond(Error(GatewayError(400, absl::StatusCode::kInvalidArgument,
                                 absl::StrCat("invalid path: ", match.error),
                                 "INVALID_PATH"),
                    request));
      return;
    case RouteMatch::Outcome::kMethodNotAllowed: {
      // Label with the template the path matched, for useful metrics.
      RouteMatch any =
          routes_.Match(match.allowed_methods.front(), request.path);
      std::string route =
          any.route != nullptr ? any.route->path.text() : "unmatched";
      if (request.method == "OPTIONS") {
        respond(Options(match.allowed_methods, route));
      } else {
        respond(MethodNotAllowed(request, match.allowed_methods, route));
      }
      return;
    }
    case RouteMatch::Outcome::kNotFound:
      respond(Error(
          GatewayError(404, absl::StatusCode::kNotFound,
                       absl::StrCat("no route matches ",
                                    EscapeUnprintable(request.method, 256), " ",
                                    EscapeUnprintable(request.path, 256)),
                       "ROUTE_NOT_FOUND"),
          request));
      return;
  }
}

bool Gateway::HandleBuiltIn(const HttpRequest& request, Responder& respond) {
  const std::string& path = request.path;
  std::string route;
  if (path == kHealthRoute) {
    route = kHealthRoute;
  } else if (path == kMetricsRoute) {
    route = kMetricsRoute;
  } else if (path == kDocsRoute || path == "/api/docs/") {
    route = kDocsRoute;
  } else if (path == kOpenApiRoute) {
    route = kOpenApiRoute;
  } else {
    return false;
  }
  if (request.method == "OPTIONS") {
    respond(Options({"GET"}, route));
    return true;
  }
  if (request.method != "GET") {
    respond(MethodNotAllowed(request, {"GET"}, route));
    return true;
  }
  if (route == kHealthRoute) {
    HandleHealth(request, std::move(respond));
  } else if (route == kMetricsRoute) {
    HandleMetrics(request, std::move(respond));
  } else {
    HttpResponse response;
    response.route = route;
    if (route == kDocsRoute) {
      response.content_type = "text/html; charset=utf-8";
      response.body = docs_html_;
    } else {
      response.body = openapi_json_;
    }
    respond(std::move(response));
  }
  return true;
}

void Gateway::HandleRoute(const Route& route,
                          const std::vector<PathTemplate::Binding>& bindings,
                          HttpRequest request, Responder respond,
                          absl::Time token_expires) {
  auto it = backend_by_service_.find(route.method->service()->full_name());
  if (it == backend_by_service_.end()) {
    respond(Error(
        GatewayError(501, absl::StatusCode::kUnimplemented,
                     "no backend serves this route", "BACKEND_NOT_CONFIGURED"),
        request, route.path.text()));
    return;
  }
  Backend* backend = it->second;
  google::protobuf::MessageFactory* factory =
      google::protobuf::MessageFactory::generated_factory();
  std::unique_ptr<Message> message(
      factory->GetPrototype(route.method->input_type())->New());
  if (absl::Status s = BuildRequest(route, bindings, request.query,
                                    request.body, message.get());
      !s.ok()) {
    respond(Error({400, common::ToRpcStatus(common::ToGrpcStatus(s))}, request,
                  route.path.text()));
    return;
  }
  if (route.streaming) {
    HandleStream(route, backend, std::move(message), request,
                 std::move(respond), token_expires);
    return;
  }
  std::string correlation_id = request.correlation_id;
  std::vector<std::pair<std::string, std::string>> metadata;
  if (route.rpc_path == kLoginRpc) {
    // Failed logins are limited per client address.
    const std::string address = request.remote_address;
    absl::Duration wait = login_limiter_.RetryAfter(address, absl::Now());
    if (wait > absl::ZeroDuration()) {
      int64_t seconds =
          absl::ToInt64Seconds(absl::Ceil(wait, absl::Seconds(1)));
      HttpResponse error =
          Error(GatewayError(429, absl::StatusCode::kResourceExhausted,
                             absl::StrCat("too many failed logins from this "
                                          "address; try again in ",
                                          seconds, " s"),
                             kTooManyLoginAttempts,
                             {{"retry_after_seconds", absl::StrCat(seconds)}}),
                request, route.path.text());
      error.headers.emplace_back("Retry-After", absl::StrCat(seconds));
      logins_total_->Add({{"outcome", "limited"}}).Increment();
      respond(std::move(error));
      return;
    }
    metadata.emplace_back(kClientAddressMetadata, address);
    respond = [this, address, inner = std::move(respond)](HttpResponse r) {
      if (r.status == 401) {
        login_limiter_.RecordFailure(address, absl::Now());
      } else if (r.status == 200) {
        login_limiter_.RecordSuccess(address);
      }
      logins_total_->Add({{"outcome", r.status == 200 ? "success" : "failure"}})
          .Increment();
      inner(std::move(r));
    };
  }
  Call(
      backend, route.rpc_path, *message,
      BackendDeadlineFor(*route.method, *message, options_.backend_deadline),
      correlation_id,
      [this, &route, respond = std::move(respond), correlation_id,
       name = backend->spec.name](const grpc::Status& status,
                                  const std::string& bytes) {
        HttpResponse response;
        response.route = route.path.text();
        if (!status.ok()) {
          if (status.error_details().empty()) {
            // Never reached the service (unreachable, deadline).
            backend_errors_total_->Add({{"service", name}}).Increment();
            sdk::ScopedCorrelationId scope(correlation_id);
            IOT2MQTT_LOG(WARNING)
                    .With("backend", name)
                    .With("rpc", route.rpc_path)
                    .With("code",
                          common::CodeName(static_cast<absl::StatusCode>(
                              status.error_code())))
                    .With("error", status.error_message())
                << "backend call failed";
          }
          HttpResponse error =
              ErrorResponse(BackendError(status, name), correlation_id);
          error.route = route.path.text();
          respond(std::move(error));
          return;
        }
        std::unique_ptr<Message> reply(
            google::protobuf::MessageFactory::generated_factory()
                ->GetPrototype(route.method->output_type())
                ->New());
        if (!reply->ParseFromString(bytes)) {
          HttpResponse error = ErrorResponse(
              GatewayError(502, absl::StatusCode::kInternal,
                           absl::StrCat("the ", name,
                                        " service sent an unreadable answer"),
                           "BAD_BACKEND_RESPONSE"),
              correlation_id);
          error.route = route.path.text();
          respond(std::move(error));
          return;
        }
        RenderedResponse rendered = RenderResponse(route, *reply);
        if (rendered.no_content) {
          response.status = 204;
          response.content_type.clear();
        } else {
          response.body = std::move(rendered.json);
          response.content_type = std::move(rendered.content_type);
        }
        respond(std::move(response));
      },
      std::move(metadata));
}

namespace {

// Collects the answers of a fan-out call to every backend.
struct FanOut {
  explicit FanOut(size_t n) : statuses(n), bodies(n), remaining(n) {}
  absl::Mutex mu;
  std::vector<grpc::Status> statuses;
  std::vector<std::string> bodies;
  size_t remaining;
  // Records answer `i`; true for the last one.
  bool Done(size_t i, const grpc::Status& status, const std::string& body) {
    absl::MutexLock lock(&mu);
    statuses[i] = status;
    bodies[i] = body;
    return --remaining == 0;
  }
};

}  // namespace

void Gateway::HandleHealth(const HttpRequest& request, Responder respond) {
  // One slot per backend's GetHealth, and one for the bridge's GetStatus
  // (mqtt_connected) when there is a bridge.
  Backend* bridge = BackendFor(kMqttBridgeGetStatusRpc);
  Backend* orchestrator = BackendFor(kSystemStatusRpc);
  const size_t status_slot = backends_.size();
  const size_t system_slot = status_slot + (bridge ? 1 : 0);
  auto fan = std::make_shared<FanOut>(backends_.size() + (bridge ? 1 : 0) +
                                      (orchestrator ? 1 : 0));
  auto finish = [this, fan, respond, bridge, status_slot, orchestrator,
                 system_slot] {
    bool mqtt_connected = false;
    if (bridge != nullptr && fan->statuses[status_slot].ok()) {
      mqtt_bridge::v1::GetStatusResponse status;
      mqtt_connected = status.ParseFromString(fan->bodies[status_slot]) &&
                       status.connected();
    }
    // Upstream's docker_available: whether the connector runtime answers
    // (the orchestrator's view; false when it is unreachable).
    bool docker_available = false;
    std::string runtime;
    if (orchestrator != nullptr && fan->statuses[system_slot].ok()) {
      orchestrator::v1::GetSystemStatusResponse system;
      if (system.ParseFromString(fan->bodies[system_slot])) {
        docker_available = system.docker_available();
        runtime = system.runtime();
      }
    }
    bool healthy = true;
    std::vector<std::string> reasons;
    std::vector<std::string> degraded;  // Optional backends that failed.
    rapidjson::StringBuffer services;
    rapidjson::Writer<rapidjson::StringBuffer> writer(services);
    writer.StartObject();
    for (size_t i = 0; i < backends_.size(); ++i) {
      const std::string& name = backends_[i]->spec.name;
      telemetry::v1::GetHealthResponse health;
      const grpc::Status& status = fan->statuses[i];
      if (!status.ok() || !health.ParseFromString(fan->bodies[i])) {
        health.Clear();
        health.set_healthy(false);
        health.set_service(name);
        if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
            status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
          health.set_reason(
              absl::StrCat("unreachable (", status.error_message(), ")"));
        } else {
          health.set_reason(absl::StrCat(
              "health check failed (",
              common::CodeName(
                  static_cast<absl::StatusCode>(status.error_code())),
              ": ", status.error_message(), ")"));
        }
        backend_errors_total_->Add({{"service", name}}).Increment();
      }
      if (!health.healthy()) {
        std::string why = absl::StrCat(
            name, ": ",
            health.reason().empty() ? "unhealthy" : health.reason());
        if (std::find(options_.optional_backends.begin(),
                      options_.optional_backends.end(),
                      name) != options_.optional_backends.end()) {
          degraded.push_back(std::move(why));
        } else {
          healthy = false;
          reasons.push_back(std::move(why));
        }
      }
      std::string json = MessageToJson(health);
      writer.Key(name.data(), static_cast<rapidjson::SizeType>(name.size()));
      writer.RawValue(json.data(), json.size(), rapidjson::kObjectType);
    }
    writer.EndObject();

    rapidjson::StringBuffer body;
    rapidjson::Writer<rapidjson::StringBuffer> out(body);
    out.StartObject();
    out.Key("status");
    out.String(healthy ? "healthy" : "unhealthy");
    if (!healthy) {
      out.Key("reason");
      out.String(absl::StrJoin(reasons, "; "));
    }
    if (!degraded.empty()) {
      out.Key("degraded");
      out.String(absl::StrJoin(degraded, "; "));
    }
    out.Key("mqtt_connected");
    out.Bool(mqtt_connected);
    out.Key("docker_available");
    out.Bool(docker_available);
    if (!runtime.empty()) {
      out.Key("runtime");
      out.String(runtime);
    }
    out.Key("services");
    out.RawValue(services.GetString(), services.GetSize(),
                 rapidjson::kObjectType);
    out.EndObject();
    HttpResponse response;
    response.status = healthy ? 200 : 503;
    response.route = kHealthRoute;
    response.body = std::string(body.GetString(), body.GetSize());
    respond(std::move(response));
  };
  if (backends_.empty()) {
    finish();
    return;
  }
  for (size_t i = 0; i < backends_.size(); ++i) {
    Call(backends_[i].get(), kGetHealth, telemetry::v1::GetHealthRequest(),
         options_.telemetry_deadline, request.correlation_id,
         [fan, i, finish](const grpc::Status& status, const std::string& body) {
           if (fan->Done(i, status, body)) finish();
         });
  }
  if (bridge != nullptr) {
    Call(bridge, kMqttBridgeGetStatusRpc, mqtt_bridge::v1::GetStatusRequest(),
         options_.telemetry_deadline, request.correlation_id,
         [fan, status_slot, finish](const grpc::Status& status,
                                    const std::string& body) {
           if (fan->Done(status_slot, status, body)) finish();
         });
  }
  if (orchestrator != nullptr) {
    Call(orchestrator, kSystemStatusRpc,
         orchestrator::v1::GetSystemStatusRequest(),
         options_.telemetry_deadline, request.correlation_id,
         [fan, system_slot, finish](const grpc::Status& status,
                                    const std::string& body) {
           if (fan->Done(system_slot, status, body)) finish();
         });
  }
}

void Gateway::HandleMetrics(const HttpRequest& request, Responder respond) {
  auto fan = std::make_shared<FanOut>(backends_.size());
  auto finish = [this, fan, respond] {
    std::string text =
        prometheus::TextSerializer().Serialize(registry_->Collect());
    for (size_t i = 0; i < backends_.size(); ++i) {
      const std::string& name = backends_[i]->spec.name;
      telemetry::v1::GetMetricsResponse metrics;
      if (!fan->statuses[i].ok() || !metrics.ParseFromString(fan->bodies[i])) {
        backend_errors_total_->Add({{"service", name}}).Increment();
        IOT2MQTT_LOG(WARNING)
                .With("backend", name)
                .With("error", fan->statuses[i].error_message())
            << "can't fetch the metrics of " << name;
        continue;
      }
      if (!text.empty() && text.back() != '\n') text += '\n';
      text += metrics.text();
    }
    if (!text.empty() && text.back() != '\n') text += '\n';
    HttpResponse response;
    response.route = kMetricsRoute;
    response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    response.body = std::move(text);
    respond(std::move(response));
  };
  if (backends_.empty()) {
    finish();
    return;
  }
  for (size_t i = 0; i < backends_.size(); ++i) {
    Call(backends_[i].get(), kGetMetrics, telemetry::v1::GetMetricsRequest(),
         options_.telemetry_deadline, request.correlation_id,
         [fan, i, finish](const grpc::Status& status, const std::string& body) {
           if (fan->Done(i, status, body)) finish();
         });
  }
}

void Gateway::Record(absl::string_view method, const HttpResponse& response,
                     absl::Duration latency) {
  std::string method_label = MethodLabel(method);
  requests_total_
      ->Add({{"method", method_label},
             {"route", response.route},
             {"status", absl::StrCat(response.status)}})
      .Increment();
  static const prometheus::Histogram::BucketBoundaries* const kBuckets =
      new prometheus::Histogram::BucketBoundaries{
          0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
          0.25,  0.5,    1,     2.5,  5,     10};
  request_duration_
      ->Add({{"method", method_label}, {"route", response.route}}, *kBuckets)
      .Observe(absl::ToDoubleSeconds(latency));
}

}  // namespace iot2mqtt::gateway
