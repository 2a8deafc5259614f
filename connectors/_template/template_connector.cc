#include "connectors/_template/template_connector.h"

#include "absl/strings/str_cat.h"
#include "iot2mqtt/sdk/json_builder.h"

namespace iot2mqtt::connectors {

absl::StatusOr<std::string> TemplateConnector::ReadDevice(
    const sdk::DeviceConfig& device) {
  absl::MutexLock lock(&mu_);
  // A real connector asks the device here (and returns UNAVAILABLE when it
  // does not answer: the SDK publishes UPDATE_ERROR and retries).
  return sdk::JsonObjectBuilder()
      .Set("power", power_[device.device_id])
      .Build();
}

absl::StatusOr<std::string> TemplateConnector::ApplyCommand(
    const sdk::DeviceConfig& device, const rapidjson::Value& values) {
  // Validate everything before changing anything.
  for (const auto& member : values.GetObject()) {
    std::string key(member.name.GetString(), member.name.GetStringLength());
    if (key != "power") {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown value \"", key, "\" (this device has: power)"));
    }
    if (!member.value.IsBool()) {
      return absl::InvalidArgumentError("\"power\" must be true or false");
    }
  }
  absl::MutexLock lock(&mu_);
  if (values.HasMember("power")) {
    power_[device.device_id] = values["power"].GetBool();
  }
  return sdk::JsonObjectBuilder()
      .Set("power", power_[device.device_id])
      .Build();
}

}  // namespace iot2mqtt::connectors
