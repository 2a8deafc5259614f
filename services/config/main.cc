// iot2mqtt-config: the ESP32 device-configuration store over gRPC.
//
// Environment: ESP32_CONFIGS_DIR (required; never created: while it is
// missing the service runs and reports unhealthy), CONFIG_LISTEN_ADDR
// (default 127.0.0.1:50051), LOG_LEVEL (DEBUG/INFO/WARNING/ERROR, default
// INFO). A bad environment exits 2 after one ERROR line naming every problem.

#include <memory>
#include <string>
#include <utility>

#include "iot2mqtt/sdk/env.h"
#include "iot2mqtt/sdk/log.h"
#include "prometheus/registry.h"
#include "services/common/server_runner.h"
#include "services/config/config_metrics.h"
#include "services/config/config_service.h"
#include "services/config/device_config_store.h"

namespace iot2mqtt::config {
namespace {

int Main() {
  common::BlockTerminationSignals();
  sdk::SetLogService("config");

  sdk::ProcessEnv process_env;
  sdk::EnvReader env(process_env);
  std::string directory = env.Required("ESP32_CONFIGS_DIR");
  std::string listen_address =
      env.String("CONFIG_LISTEN_ADDR", "127.0.0.1:50051");
  std::string log_level = env.String("LOG_LEVEL", "INFO");
  sdk::Severity severity = sdk::Severity::kInfo;
  if (!sdk::ParseSeverity(log_level, &severity)) {
    env.AddProblem("LOG_LEVEL=\"" + log_level +
                   "\" is not one of DEBUG, INFO, WARNING, ERROR");
  }
  if (absl::Status status = env.Finish(); !status.ok()) {
    IOT2MQTT_LOG(ERROR) << status.message();
    return 2;
  }
  sdk::SetLogLevel(severity);

  FileDeviceConfigStore files(directory);
  auto registry = std::make_shared<prometheus::Registry>();
  ConfigMetrics metrics(*registry);
  InstrumentedDeviceConfigStore store(files, metrics);
  ConfigServiceImpl service(store);

  common::ServerOptions options;
  options.service_name = "config";
  options.listen_address = listen_address;
  options.health_probe = [&store] { return CheckConfigHealth(store); };
  options.registry = registry;
  return common::RunServer(std::move(options), {&service});
}

}  // namespace
}  // namespace iot2mqtt::config

int main() { return iot2mqtt::config::Main(); }
