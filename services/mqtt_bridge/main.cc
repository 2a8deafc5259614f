// iot2mqtt-mqtt-bridge: the platform's own MQTT connection over gRPC (topic
// cache, instance/device projections, publish, subscribe streams, commands
// with responses). The broker settings come from the config service.
//
// Environment (every problem reported at once, exit 2):
//   MQTT_BRIDGE_LISTEN_ADDR        gRPC address (127.0.0.1:50054)
//   CONFIG_SERVICE_ADDR            the config service (127.0.0.1:50051)
//   MQTT_BRIDGE_CACHE_MAX_TOPICS   topics kept in the cache (100000)
//   MQTT_BRIDGE_CACHE_MAX_BYTES    bytes (topics + values) kept in the cache
//                                  (67108864)
//   MQTT_BRIDGE_MAX_PAYLOAD_BYTES  largest payload Publish accepts (262144)
//   MQTT_BRIDGE_SUBSCRIBER_QUEUE   events queued per Subscribe stream before
//                                  it skips ahead (4096)
//   MQTT_BRIDGE_TEST_TIMEOUT_MS    how long TestConnection waits for the
//                                  broker (5000)
//   LOG_LEVEL                      DEBUG/INFO/WARNING/ERROR (INFO)

#include <memory>
#include <string>
#include <utility>

#include "iot2mqtt/sdk/env.h"
#include "iot2mqtt/sdk/log.h"
#include "prometheus/registry.h"
#include "services/common/server_runner.h"
#include "services/common/work_pool.h"
#include "services/mqtt_bridge/bridge.h"
#include "services/mqtt_bridge/config_client.h"
#include "services/mqtt_bridge/mqtt_bridge_service.h"

namespace iot2mqtt::mqtt_bridge {
namespace {

struct Options {
  std::string listen_address;
  std::string config_address;
  BridgeOptions bridge;
  ServiceOptions service;
};

bool ReadOptions(Options* options) {
  sdk::ProcessEnv process_env;
  sdk::EnvReader env(process_env);
  options->listen_address =
      env.String("MQTT_BRIDGE_LISTEN_ADDR", "127.0.0.1:50054");
  options->config_address =
      env.String("CONFIG_SERVICE_ADDR", "127.0.0.1:50051");
  options->bridge.cache_limits.max_topics = static_cast<size_t>(
      env.Int("MQTT_BRIDGE_CACHE_MAX_TOPICS", 100000, 1, 100000000));
  options->bridge.cache_limits.max_bytes = static_cast<size_t>(
      env.Int("MQTT_BRIDGE_CACHE_MAX_BYTES", 67108864, 1024, int64_t{1} << 40));
  options->bridge.max_payload_bytes = static_cast<size_t>(
      env.Int("MQTT_BRIDGE_MAX_PAYLOAD_BYTES", 262144, 1, 268435455));
  options->bridge.subscriber_queue = static_cast<size_t>(
      env.Int("MQTT_BRIDGE_SUBSCRIBER_QUEUE", 4096, 16, 10000000));
  options->service.probe_timeout = absl::Milliseconds(
      env.Int("MQTT_BRIDGE_TEST_TIMEOUT_MS", 5000, 100, 60000));
  const sdk::Severity severity = sdk::ReadLogLevel(env);
  if (absl::Status status = env.Finish(); !status.ok()) {
    IOT2MQTT_LOG(ERROR) << status.message();
    return false;
  }
  sdk::SetLogLevel(severity);
  return true;
}

int Main() {
  sdk::SetLogService("mqtt-bridge");
  common::BlockTerminationSignals();
  Options options;
  if (!ReadOptions(&options)) return 2;

  auto registry = std::make_shared<prometheus::Registry>();
  options.bridge.registry = registry;
  // Declared first: destroyed last, after the server and the service.
  common::WorkPool blocking(4);
  common::WorkPool events(2);
  Bridge bridge(options.bridge,
                std::make_unique<GrpcConfigClient>(options.config_address));
  MqttBridgeServiceImpl service(bridge, blocking, events, options.service);
  bridge.Start();

  common::ServerOptions server_options;
  server_options.service_name = "mqtt-bridge";
  server_options.listen_address = options.listen_address;
  server_options.health_probe = [&bridge] { return bridge.Health(); };
  server_options.registry = registry;
  server_options.before_shutdown = [&service] { service.Shutdown(); };
  int code = common::RunServer(std::move(server_options), {&service});
  bridge.Stop();
  return code;
}

}  // namespace
}  // namespace iot2mqtt::mqtt_bridge

int main() { return iot2mqtt::mqtt_bridge::Main(); }
