#ifndef IOT2MQTT_SERVICES_DISCOVERY_DEVICE_IDENTITY_H_
#define IOT2MQTT_SERVICES_DISCOVERY_DEVICE_IDENTITY_H_

// From what a discovery tool reports about a device to a DiscoveredDevice
// record with a stable id, and from a record to the instance document that
// adds it. Pure functions, no I/O.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "iot2mqtt/config/v1/config_service.pb.h"

namespace iot2mqtt::discovery {

using DiscoveredDevice = ::iot2mqtt::config::v1::DiscoveredDevice;

// A device object as a tool reports it (a `{"device": {...}}` line or an
// element of `result.devices`). Recognised keys: `mac`; `serial`; `id` or
// `device_id` (the device's own id, taken as its serial); `ip` or `host`;
// `port` (number or numeric string); `name` or `friendly_name`; `model`;
// `manufacturer`; `capabilities` (object). Everything else goes to
// `attributes`. The id is `<integration>_<key>` where key is the MAC (hex
// digits only, lower case), else the serial, else `<ip>_<port>` (ip alone
// without a port), normalised to [a-z0-9_-] (other characters become `_`)
// and cut to 128 characters. INVALID_ARGUMENT INVALID_DEVICE when it is
// not an object or has none of mac, serial/id/device_id, ip/host.
absl::StatusOr<DiscoveredDevice> DeviceFromReport(
    absl::string_view integration, absl::string_view device_json);

// `^[a-z0-9][a-z0-9_-]{0,127}$`.
bool IsValidDeviceId(absl::string_view id);

// An instance id for a device when the user gives none: `<integration>_`
// plus the last 12 characters of the key part of the device id, valid for
// `^[a-z0-9][a-z0-9_-]{0,62}$`.
std::string DefaultInstanceId(const DiscoveredDevice& device);

// The POST /api/instances body (upstream §7.1, in our instance shape) that
// adds `device` as the only device of a new instance:
//   {"instance_id", "connector_type": integration, "friendly_name",
//    "enabled": true, "update_interval": 10,
//    "config": {"ip", "port"} of the device, then the members of
//      `config_json` (which win); the config service stores a create body's
//      `config` as the document's `connection`,
//    "devices": [{"device_id": device_id ∥ id, "global_id":
//      "<instance>_<device_id>", "name"/"friendly_name": friendly_name,
//      "ip", "port", "model", "enabled": true, "capabilities"}]}
// `config_json` must be "" / "null" or a JSON object (INVALID_ARGUMENT
// INVALID_CONFIG otherwise).
absl::StatusOr<std::string> InstanceDocumentFor(
    const DiscoveredDevice& device, absl::string_view instance_id,
    absl::string_view friendly_name, absl::string_view config_json);

}  // namespace iot2mqtt::discovery

#endif  // IOT2MQTT_SERVICES_DISCOVERY_DEVICE_IDENTITY_H_
