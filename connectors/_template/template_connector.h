#ifndef IOT2MQTT_CONNECTORS_TEMPLATE_TEMPLATE_CONNECTOR_H_
#define IOT2MQTT_CONNECTORS_TEMPLATE_TEMPLATE_CONNECTOR_H_

// The template connector: every configured device is a virtual switch with
// one state key, `power`. It shows the two hooks every connector writes;
// the SDK's Connector base does the rest of the MQTT contract (status, last
// will, polling, errors, commands, get, groups, meta, graceful stop).

#include <map>
#include <string>

#include "absl/synchronization/mutex.h"
#include "iot2mqtt/sdk/connector.h"

namespace iot2mqtt::connectors {

class TemplateConnector final : public sdk::Connector {
 protected:
  // Called on the device's worker thread every update_interval and for
  // `get`: returns the whole state as a JSON object.
  absl::StatusOr<std::string> ReadDevice(
      const sdk::DeviceConfig& device) override;
  // Called on the device's worker thread for `cmd` and group commands:
  // applies the values and returns the state after them.
  absl::StatusOr<std::string> ApplyCommand(
      const sdk::DeviceConfig& device, const rapidjson::Value& values) override;

 private:
  // Hooks of different devices run concurrently: guard shared state.
  absl::Mutex mu_;
  std::map<std::string, bool> power_ ABSL_GUARDED_BY(mu_);
};

}  // namespace iot2mqtt::connectors

#endif  // IOT2MQTT_CONNECTORS_TEMPLATE_TEMPLATE_CONNECTOR_H_
