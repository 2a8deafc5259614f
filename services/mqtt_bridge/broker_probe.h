#ifndef IOT2MQTT_SERVICES_MQTT_BRIDGE_BROKER_PROBE_H_
#define IOT2MQTT_SERVICES_MQTT_BRIDGE_BROKER_PROBE_H_

// One connection attempt to a broker with given credentials, for
// TestConnection: connect, wait for the CONNACK (or the socket error, or the
// timeout), disconnect. Blocks the calling thread up to `timeout` (plus name
// resolution): run it on a worker. Never logs or returns the password.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace iot2mqtt::mqtt_bridge {

struct ProbeTarget {
  std::string host;
  int port = 1883;
  std::string username;
  std::string password;
  int keepalive_seconds = 60;
  std::string client_id;  // Empty: "iot2mqtt_probe_<random>".
};

struct ProbeResult {
  bool success = false;
  // "Connection successful", the broker's refusal ("Connection Refused: not
  // authorised."), or "Cannot connect to <host>:<port>: <error>".
  std::string message;
  int64_t latency_ms = 0;  // Until the CONNACK (success only).
};

// TestConnection's request (upstream's MQTTConfig): host required (no
// spaces or control characters, at most 253 bytes); port 1..65535 (default
// 1883); keepalive 10..3600 (default 60). INVALID_ARGUMENT
// INVALID_MQTT_SETTINGS with metadata field -> problem for every bad field.
absl::StatusOr<ProbeTarget> MakeProbeTarget(absl::string_view host,
                                            std::optional<int> port,
                                            absl::string_view username,
                                            absl::string_view password,
                                            std::optional<int> keepalive);

ProbeResult ProbeBroker(const ProbeTarget& target, absl::Duration timeout);

}  // namespace iot2mqtt::mqtt_bridge

#endif  // IOT2MQTT_SERVICES_MQTT_BRIDGE_BROKER_PROBE_H_
