#ifndef IOT2MQTT_SDK_INSTANCE_CONFIG_H_
#define IOT2MQTT_SDK_INSTANCE_CONFIG_H_

// The instance document a connector serves:
// `/app/instances/<INSTANCE_NAME>.json` (IOT2MQTT_INSTANCE_FILE overrides the
// whole path, for the process runtime). Shape (upstream §5.3; unknown keys are
// kept for the connector):
//
//   {"instance_id": "living", "connector_type": "demo", "update_interval": 10,
//    "devices": [{"device_id": "light1", "enabled": true, "model": "...",
//                 ...connector-specific keys (ip, port, ...)}],
//    "groups": [{"group_id": "all", "devices": ["light1"]}],
//    "connection": {...}, ...connector settings, often also at the top level}

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "iot2mqtt/sdk/env.h"
#include "rapidjson/document.h"

namespace iot2mqtt::sdk {

inline constexpr char kDefaultInstancesDir[] = "/app/instances";
inline constexpr absl::Duration kDefaultUpdateInterval = absl::Seconds(10);
inline constexpr absl::Duration kMinUpdateInterval = absl::Milliseconds(100);

// A read-only JSON object from the config with lenient typed getters: each
// returns `fallback` when the key is absent, null or of another type.
// Numbers given as numeric strings are accepted (the setup UI sometimes
// stores "55443"). Cheap to copy (shared document).
class ConfigObject {
 public:
  ConfigObject();  // An empty object.
  // INVALID_ARGUMENT unless `json` is a JSON object.
  static absl::StatusOr<ConfigObject> Parse(absl::string_view json);

  const rapidjson::Value& value() const { return *value_; }
  // Compact JSON text of the object.
  std::string json() const;
  bool Has(absl::string_view key) const { return Find(key) != nullptr; }
  // nullptr when absent.
  const rapidjson::Value* Find(absl::string_view key) const;

  std::string GetString(absl::string_view key,
                        absl::string_view fallback = "") const;
  int64_t GetInt(absl::string_view key, int64_t fallback = 0) const;
  double GetDouble(absl::string_view key, double fallback = 0) const;
  bool GetBool(absl::string_view key, bool fallback = false) const;
  // An empty object when absent or not an object.
  ConfigObject GetObject(absl::string_view key) const;

 private:
  ConfigObject(std::shared_ptr<const rapidjson::Document> doc,
               const rapidjson::Value* value)
      : doc_(std::move(doc)), value_(value) {}
  std::shared_ptr<const rapidjson::Document> doc_;
  const rapidjson::Value* value_;
};

struct DeviceConfig {
  std::string device_id;
  bool enabled = true;
  std::string model;   // "" when the entry has none.
  ConfigObject entry;  // The whole entry, for connector-specific keys.
};

struct GroupConfig {
  std::string group_id;
  std::vector<std::string> devices;
};

struct InstanceConfig {
  std::string instance_id;     // INSTANCE_NAME (used in every topic).
  std::string connector_type;  // Config, else CONNECTOR_TYPE, else "unknown".
  absl::Duration update_interval = kDefaultUpdateInterval;
  std::vector<DeviceConfig> devices;  // Disabled ones included.
  std::vector<GroupConfig> groups;
  ConfigObject document;  // The whole file.

  // A connector setting: the top-level key, else the same key inside
  // "connection" (upstream copies the setup form's config to both places).
  ConfigObject settings() const;
  const DeviceConfig* FindDevice(absl::string_view device_id) const;
  const GroupConfig* FindGroup(absl::string_view group_id) const;
};

// `IOT2MQTT_INSTANCE_FILE` when set, else /app/instances/<instance>.json.
std::string InstanceConfigPath(const Env& env, absl::string_view instance);

// Parses and checks a document, reporting every problem at once
// (INVALID_ARGUMENT): devices need a unique, valid `device_id` (not
// "_instance"), `enabled` must be a boolean, groups need a unique, valid
// `group_id` and a `devices` list of strings, `update_interval` is a number
// of seconds >= 0.1 (numeric strings accepted).
absl::StatusOr<InstanceConfig> ParseInstanceConfig(
    absl::string_view json, absl::string_view instance,
    absl::string_view connector_type_fallback);

// Reads `path` and parses it; NOT_FOUND when the file does not exist. The
// message names the path.
absl::StatusOr<InstanceConfig> LoadInstanceConfig(
    const std::string& path, absl::string_view instance,
    absl::string_view connector_type_fallback);

}  // namespace iot2mqtt::sdk

#endif  // IOT2MQTT_SDK_INSTANCE_CONFIG_H_
