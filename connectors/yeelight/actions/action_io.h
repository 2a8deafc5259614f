#ifndef IOT2MQTT_CONNECTORS_YEELIGHT_ACTIONS_ACTION_IO_H_
#define IOT2MQTT_CONNECTORS_YEELIGHT_ACTIONS_ACTION_IO_H_

// The Yeelight setup actions, as functions from the request text to the
// answer text (the binaries only add stdin/stdout and the environment).
//
// Tool contract: the request is {"tool": id, "input": {...}} (a payload
// without "input" is taken as the input itself); the answer is one JSON
// object, {"ok":true,"result":...} or
// {"ok":false,"error":{"code","message","retriable"}}.

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace iot2mqtt::yeelight {

struct ValidateSettings {
  absl::Duration connect_timeout = absl::Seconds(3);
  absl::Duration request_timeout = absl::Seconds(4);
};

// validate_device: input {host (or ip), port?}. Connects, reads the bulb's
// properties and answers {"host","port","properties":{...}}. Errors:
// invalid_input, missing_parameter ("host is required"), validation_failed
// (retriable: the bulb may be off or LAN control disabled).
std::string RunValidate(absl::string_view request,
                        const ValidateSettings& settings);

struct DiscoverSettings {
  // Where the M-SEARCH goes (YEELIGHT_DISCOVERY_ADDRESS).
  std::string address = "239.255.255.250:1982";
  // How long to collect answers (DISCOVERY_TIMEOUT, or input.timeout).
  absl::Duration timeout = absl::Seconds(5);
};

// discover_devices: input {timeout?: seconds}. Answers
// {"count": N, "devices": [{device_id, ip, port, model, friendly_name,
// ssid, properties}]}. Errors: invalid_input, discovery_failed.
std::string RunDiscover(absl::string_view request,
                        const DiscoverSettings& settings);

}  // namespace iot2mqtt::yeelight

#endif  // IOT2MQTT_CONNECTORS_YEELIGHT_ACTIONS_ACTION_IO_H_
