#include "absl/strings/str_cat.h"
#include "iot2mqtt/sdk/contract.h"
#include "iot2mqtt/sdk/mqtt_client.h"

namespace iot2mqtt::sdk {

MqttSettings ReadMqttSettings(EnvReader& env) {
  MqttSettings s;
  s.host = env.String("MQTT_HOST", s.host);
  s.port = static_cast<int>(env.Int("MQTT_PORT", s.port, 1, 65535));
  s.username = env.String("MQTT_USERNAME", "");
  s.password = env.String("MQTT_PASSWORD", "");
  s.client_prefix = env.String("MQTT_CLIENT_PREFIX", s.client_prefix);
  s.qos = static_cast<int>(env.Int("MQTT_QOS", s.qos, 0, 2));
  s.retain = env.Bool("MQTT_RETAIN", s.retain);
  s.keepalive_seconds = static_cast<int>(
      env.Int("MQTT_KEEPALIVE", s.keepalive_seconds, 0, 65535));
  if (s.keepalive_seconds > 0 && s.keepalive_seconds < 5) {
    env.AddProblem(absl::StrCat("MQTT_KEEPALIVE=", s.keepalive_seconds,
                                " must be 0 (off) or at least 5 seconds"));
    s.keepalive_seconds = 60;
  }
  s.base_topic = env.String("MQTT_BASE_TOPIC", kDefaultBaseTopic);
  if (absl::Status status = ValidateBaseTopic(s.base_topic); !status.ok()) {
    env.AddProblem(absl::StrCat("MQTT_BASE_TOPIC: ", status.message()));
  }
  return s;
}

std::string MqttClientId(const MqttSettings& settings,
                         absl::string_view instance) {
  return absl::StrCat(settings.client_prefix, "_", instance);
}

}  // namespace iot2mqtt::sdk
