#include "gateway/gateway_options.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "iot2mqtt/config/v1/config_service.pb.h"
#include "iot2mqtt/discovery/v1/discovery_service.pb.h"
#include "iot2mqtt/mqtt_bridge/v1/mqtt_bridge_service.pb.h"
#include "iot2mqtt/orchestrator/v1/orchestrator_service.pb.h"

namespace iot2mqtt::gateway {
namespace {

// The full name of the service `name` declared in the proto file of the
// generated message `M` (naming the message links its descriptors into the
// binary, so the route table finds them in the generated pool).
template <typename M>
std::string ServiceOf(const std::string& name) {
  return absl::StrCat(M::descriptor()->file()->package(), ".", name);
}

bool ValidHostPort(const std::string& address) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  int port;
  return absl::SimpleAtoi(address.substr(colon + 1), &port) && port >= 0 &&
         port <= 65535;
}

}  // namespace

std::vector<BackendDefinition> BackendDefinitions() {
  return {
      {"config",
       "CONFIG_SERVICE_ADDR",
       "127.0.0.1:50051",
       {ServiceOf<config::v1::DeviceConfig>("ConfigService")}},
      {"mqtt-bridge",
       "MQTT_BRIDGE_ADDR",
       "127.0.0.1:50054",
       {ServiceOf<mqtt_bridge::v1::TopicEvent>("MqttBridgeService")}},
      {"orchestrator",
       "ORCHESTRATOR_ADDR",
       "127.0.0.1:50052",
       {ServiceOf<orchestrator::v1::LogEntry>("OrchestratorService")}},
      {"discovery",
       "DISCOVERY_ADDR",
       "127.0.0.1:50053",
       {ServiceOf<discovery::v1::DiscoverySession>("DiscoveryService")}},
  };
}

absl::StatusOr<GatewayOptions> LoadGatewayOptions(sdk::EnvReader& env) {
  GatewayOptions options;
  options.listen_address = env.String("GATEWAY_LISTEN_ADDR", "0.0.0.0:8080");
  if (!ValidHostPort(options.listen_address)) {
    env.AddProblem(absl::StrCat("GATEWAY_LISTEN_ADDR=\"",
                                options.listen_address, "\" is not host:port"));
  }
  for (const BackendDefinition& definition : BackendDefinitions()) {
    BackendSpec backend{
        definition.name, definition.services,
        env.String(definition.address_variable, definition.default_address)};
    if (!ValidHostPort(backend.address) &&
        !absl::StartsWith(backend.address, "unix:")) {
      env.AddProblem(absl::StrCat(definition.address_variable, "=\"",
                                  backend.address, "\" is not host:port"));
    }
    options.backends.push_back(std::move(backend));
  }
  options.cors_origins = env.List("CORS_ORIGINS", {});
  options.threads = static_cast<int>(env.Int("GATEWAY_THREADS", 2, 1, 64));
  options.max_body_bytes = static_cast<size_t>(
      env.Int("GATEWAY_MAX_BODY_BYTES", 1048576, 1, int64_t{1} << 30));
  options.max_header_bytes = static_cast<size_t>(
      env.Int("GATEWAY_MAX_HEADER_BYTES", 16384, 1024, 1 << 20));
  options.read_timeout =
      absl::Seconds(env.Int("GATEWAY_READ_TIMEOUT_SECONDS", 30, 1, 3600));
  options.backend_deadline = absl::Milliseconds(
      env.Int("GATEWAY_BACKEND_DEADLINE_MS", 10000, 1, 3600 * 1000));
  std::string auth_mode = env.String("AUTH_MODE", "required");
  if (auth_mode == "required") {
    options.auth_mode = AuthMode::kRequired;
  } else if (auth_mode == "disabled") {
    options.auth_mode = AuthMode::kDisabled;
  } else {
    env.AddProblem(absl::StrCat("AUTH_MODE=\"", auth_mode,
                                "\" is not \"required\" or \"disabled\""));
  }
  options.max_failed_logins =
      static_cast<int>(env.Int("AUTH_MAX_FAILED_LOGINS", 5, 1, 1000));
  options.login_failure_window =
      absl::Seconds(env.Int("AUTH_LOGIN_WINDOW_SECONDS", 60, 1, 86400));
  options.ws_max_message_bytes = static_cast<size_t>(
      env.Int("GATEWAY_WS_MAX_MESSAGE_BYTES", 65536, 128, 16 << 20));
  options.ws_queue_bytes = static_cast<size_t>(
      env.Int("GATEWAY_WS_QUEUE_BYTES", 1048576, 1024, int64_t{1} << 30));
  options.ws_idle_timeout =
      absl::Seconds(env.Int("GATEWAY_WS_IDLE_TIMEOUT_SECONDS", 60, 2, 3600));
  if (absl::Status s = env.Finish(); !s.ok()) return s;
  return options;
}

}  // namespace iot2mqtt::gateway
