// iot2mqtt-yeelight-discover: the `discover_devices` setup tool.
// stdin {"tool":"discover_devices","input":{"timeout":5}}
// stdout {"ok":true,"result":{"count":N,"devices":[...]}} or an error object.
//
// Environment: YEELIGHT_DISCOVERY_ADDRESS (default 239.255.255.250:1982,
// the Yeelight multicast group), DISCOVERY_TIMEOUT (seconds, default 5),
// LOG_LEVEL.

#include "absl/time/time.h"
#include "connectors/yeelight/actions/action_io.h"
#include "connectors/yeelight/actions/stderr_log.h"
#include "connectors/yeelight/yeelight_protocol.h"

int main() {
  namespace yeelight = iot2mqtt::yeelight;
  std::string request = yeelight::StartAction("iot2mqtt-yeelight-discover");
  iot2mqtt::sdk::ProcessEnv process_env;
  iot2mqtt::sdk::EnvReader env(process_env);
  yeelight::DiscoverSettings settings;
  settings.address = env.String("YEELIGHT_DISCOVERY_ADDRESS",
                                yeelight::kDefaultDiscoveryAddress);
  settings.timeout = absl::Seconds(env.Int("DISCOVERY_TIMEOUT", 5, 1, 60));
  if (absl::Status status = env.Finish(); !status.ok()) {
    IOT2MQTT_LOG(WARNING).With("error", status.message())
        << "ignoring invalid environment, using defaults";
    settings.timeout = absl::Seconds(5);
  }
  yeelight::Answer(yeelight::RunDiscover(request, settings));
  return 0;
}
