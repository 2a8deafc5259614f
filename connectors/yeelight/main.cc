// iot2mqtt-connector-yeelight: one instance of the Yeelight connector.
// The SDK reads INSTANCE_NAME, MQTT_*, IOT2MQTT_INSTANCE_FILE, LOG_LEVEL;
// this file adds YEELIGHT_REQUEST_TIMEOUT_MS and YEELIGHT_CONNECT_TIMEOUT_MS.

#include <memory>

#include "absl/time/time.h"
#include "connectors/yeelight/yeelight_connector.h"
#include "iot2mqtt/sdk/connector.h"
#include "iot2mqtt/sdk/env.h"
#include "iot2mqtt/sdk/log.h"

int main() {
  namespace sdk = iot2mqtt::sdk;
  namespace yeelight = iot2mqtt::yeelight;
  sdk::SetLogService("connector-yeelight");
  sdk::ProcessEnv process_env;
  sdk::EnvReader env(process_env);
  yeelight::ConnectorSettings settings;
  settings.request_timeout = absl::Milliseconds(
      env.Int("YEELIGHT_REQUEST_TIMEOUT_MS", 5000, 100, 60000));
  settings.connect_timeout = absl::Milliseconds(
      env.Int("YEELIGHT_CONNECT_TIMEOUT_MS", 3000, 100, 60000));
  if (absl::Status status = env.Finish(); !status.ok()) {
    IOT2MQTT_LOG(ERROR).With("error", status.message())
        << "invalid configuration";
    return 2;
  }
  return sdk::RunConnector("yeelight", [settings] {
    return std::make_unique<yeelight::YeelightConnector>(settings);
  });
}
