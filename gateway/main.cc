// iot2mqtt-gateway: REST/JSON in front of the gRPC services.
//
// Environment (all problems are reported at once, exit 2):
//   GATEWAY_LISTEN_ADDR           host:port to serve HTTP on (0.0.0.0:8080)
//   CONFIG_SERVICE_ADDR           config service (127.0.0.1:50051)
//   CORS_ORIGINS                  allowed browser origins, "*" for any ("")
//   GATEWAY_THREADS               HTTP io threads (2)
//   GATEWAY_MAX_BODY_BYTES        request body limit, 413 beyond (1048576)
//   GATEWAY_MAX_HEADER_BYTES      request header limit, 431 beyond (16384)
//   GATEWAY_READ_TIMEOUT_SECONDS  time to receive a request, 408 beyond (30)
//   GATEWAY_BACKEND_DEADLINE_MS   deadline of every backend call (10000)
//   AUTH_MODE                     required, or disabled for trusted
//                                 networks (required)
//   AUTH_MAX_FAILED_LOGINS        failed logins per client address (5)...
//   AUTH_LOGIN_WINDOW_SECONDS     ...within this window, then 429 (60)
//   LOG_LEVEL                     DEBUG, INFO, WARNING or ERROR (INFO)

#include <cstdlib>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "gateway/gateway.h"
#include "gateway/gateway_options.h"
#include "iot2mqtt/sdk/env.h"
#include "iot2mqtt/sdk/log.h"
#include "services/common/server_runner.h"

int main() {
  using namespace iot2mqtt;  // NOLINT(build/namespaces)
  common::BlockTerminationSignals();
  sdk::SetLogService("gateway");

  sdk::ProcessEnv process_env;
  sdk::EnvReader env(process_env);
  std::string level_text = env.String("LOG_LEVEL", "INFO");
  sdk::Severity level;
  if (sdk::ParseSeverity(level_text, &level)) {
    sdk::SetLogLevel(level);
  } else {
    env.AddProblem("LOG_LEVEL=\"" + level_text +
                   "\" is not DEBUG, INFO, WARNING or ERROR");
  }
  absl::StatusOr<gateway::GatewayOptions> options =
      gateway::LoadGatewayOptions(env);
  if (!options.ok()) {
    IOT2MQTT_LOG(ERROR) << options.status().message();
    return 2;
  }

  if (options->auth_mode == gateway::AuthMode::kDisabled) {
    IOT2MQTT_LOG(WARNING)
        << "AUTH_MODE=disabled: every route is open to anyone who can reach "
           "this port; use it only on a trusted network";
  }
  absl::StatusOr<std::unique_ptr<gateway::Gateway>> server =
      gateway::Gateway::Create(*std::move(options));
  if (!server.ok()) {
    IOT2MQTT_LOG(ERROR) << "can't build the routes: "
                        << server.status().message();
    return 1;
  }
  if (absl::Status started = (*server)->Start(); !started.ok()) {
    IOT2MQTT_LOG(ERROR) << started.message();
    return 1;
  }
  int signal_number = common::WaitForTerminationSignal();
  IOT2MQTT_LOG(INFO).With("signal", signal_number) << "shutting down";
  (*server)->Shutdown();
  IOT2MQTT_LOG(INFO) << "gateway stopped";
  return 0;
}
