#ifndef IOT2MQTT_SERVICES_ORCHESTRATOR_ORCHESTRATOR_DEPS_H_
#define IOT2MQTT_SERVICES_ORCHESTRATOR_ORCHESTRATOR_DEPS_H_

// What the orchestrator needs from the other services, as interfaces (no
// gRPC): the config service (desired state) and the mqtt-bridge (instance
// status, clearing retained topics). service_clients.h implements them over
// gRPC; tests may fake them.

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace iot2mqtt::orchestrator {

// One configured instance, as listed.
struct ConfiguredInstance {
  std::string connector;
  std::string instance_id;
  bool enabled = true;
  int devices = 0;  // Entries of its `devices` array.
};

// GetRuntimeConfig's answer.
struct InstanceRuntimeConfig {
  std::string instance_json;  // As stored, secret placeholders in place.
  std::string secrets_json;   // The runtime secrets file's content.
  bool enabled = true;
};

// One change event of the config service (the parts the orchestrator uses).
struct ConfigChange {
  enum class Kind { kOther, kInstance, kSettings, kCatalogue };
  std::string cursor;
  Kind kind = Kind::kOther;
  std::string connector;
  std::string instance_id;
  bool resync = false;
};

class ConfigSource {
 public:
  virtual ~ConfigSource() = default;

  virtual absl::StatusOr<std::vector<ConfiguredInstance>> ListInstances() = 0;
  // NOT_FOUND when the instance does not exist.
  virtual absl::StatusOr<InstanceRuntimeConfig> GetRuntimeConfig(
      absl::string_view connector, absl::string_view instance_id) = 0;
  // MQTT_HOST, MQTT_PORT, MQTT_USERNAME, MQTT_BASE_TOPIC,
  // MQTT_CLIENT_PREFIX, MQTT_QOS, MQTT_RETAIN, MQTT_KEEPALIVE (set ones
  // only; never the password).
  virtual absl::StatusOr<std::map<std::string, std::string>> MqttEnv() = 0;
  // Deletes the instance document and its secrets.
  virtual absl::Status DeleteInstance(absl::string_view connector,
                                      absl::string_view instance_id) = 0;
  // Streams change events after `after` ("" = from now) into `sink` until
  // the stream ends or CancelWatch() is called; returns why it ended.
  virtual absl::Status Watch(
      const std::string& after,
      const std::function<void(const ConfigChange&)>& sink) = 0;
  // Ends a running Watch() (and makes later ones return at once).
  virtual void CancelWatch() = 0;
};

class BridgeClient {
 public:
  virtual ~BridgeClient() = default;

  // Clears the instance's retained topics; returns how many.
  virtual absl::StatusOr<int64_t> ClearInstanceTopics(
      absl::string_view instance_id) = 0;
  // Whether the bridge is connected to the broker.
  virtual absl::StatusOr<bool> Connected() = 0;
  // instance id → `online`, `offline` or `unknown`.
  virtual absl::StatusOr<std::map<std::string, std::string>>
  InstanceStatuses() = 0;
};

}  // namespace iot2mqtt::orchestrator

#endif  // IOT2MQTT_SERVICES_ORCHESTRATOR_ORCHESTRATOR_DEPS_H_
