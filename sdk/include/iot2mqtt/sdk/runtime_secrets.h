#ifndef IOT2MQTT_SDK_RUNTIME_SECRETS_H_
#define IOT2MQTT_SDK_RUNTIME_SECRETS_H_

// The secrets a connector receives at run time (no gRPC, no libsodium).
//
// The config service keeps an instance's secret values encrypted and leaves
// the placeholder string "__SECRET__<path>__" at their place in the instance
// document. The orchestrator writes the decrypted values for one instance to
// a plaintext file on a tmpfs and mounts it read-only at
// kDefaultSecretsFile (IOT2MQTT_SECRETS_FILE overrides the path):
//
//   {"version": 1, "connector": "yeelight", "instance": "living",
//    "values": {"connection.password": "hunter2", "devices.0.token": "abc"},
//    "env": {"MQTT_PASSWORD": "..."}}
//
// `values` maps dotted paths (array elements by index) to any JSON value;
// `env` holds environment variables (strings) the connector may use when
// neither the process environment nor the .env file sets them.
// RunConnector applies both, so a connector sees real values with no code
// of its own. Error messages name the file and the key, never a value.

#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "iot2mqtt/sdk/env.h"
#include "iot2mqtt/sdk/instance_config.h"

namespace iot2mqtt::sdk {

inline constexpr char kDefaultSecretsFile[] = "/run/secrets/iot2mqtt.json";
inline constexpr char kSecretsFileVariable[] = "IOT2MQTT_SECRETS_FILE";
inline constexpr int kRuntimeSecretsVersion = 1;
inline constexpr char kSecretPlaceholderPrefix[] = "__SECRET__";
inline constexpr char kSecretPlaceholderSuffix[] = "__";

struct RuntimeSecrets {
  std::string path;       // The file read; "" when there was none.
  std::string connector;  // As written in the file.
  std::string instance;
  // Dotted path → the value as compact JSON (numbers' text kept exactly).
  std::map<std::string, std::string> values;
  MapEnv env;
};

// "__SECRET__<path>__".
std::string SecretPlaceholder(absl::string_view path);

// Parses the text of a secrets file. INVALID_ARGUMENT (naming `path` and the
// offending key, never a value) unless it is an object with "version": 1,
// string "connector" and "instance", an object "values" and an object "env"
// of strings ("values" and "env" may be absent; unknown keys are ignored).
absl::StatusOr<RuntimeSecrets> ParseRuntimeSecrets(absl::string_view text,
                                                   const std::string& path);

// Reads the file named by IOT2MQTT_SECRETS_FILE in `env`, else
// kDefaultSecretsFile. A missing default file gives empty secrets; a missing
// named file is NOT_FOUND; an unreadable or malformed file is an error
// naming the path.
absl::StatusOr<RuntimeSecrets> LoadRuntimeSecrets(const Env& env);

// `json` (one JSON value) with every string that is exactly the placeholder
// of its own location ("__SECRET__devices.1.password__" at
// devices[1].password) replaced by values[<that path>]. Placeholders without
// a value, or found at another location, stay. Keys may contain "__".
// INVALID_ARGUMENT when `json` is not valid JSON; every `values` entry must
// be one valid compact JSON value.
absl::StatusOr<std::string> ReplaceSecretPlaceholders(
    absl::string_view json, const std::map<std::string, std::string>& values);

// ReplaceSecretPlaceholders with the secrets' values; placeholders left
// without a value are logged (path only) at WARNING.
absl::StatusOr<std::string> ApplyRuntimeSecrets(absl::string_view instance_json,
                                                const RuntimeSecrets& secrets);

// LoadInstanceConfig with the secrets applied to the document before it is
// parsed. NOT_FOUND when the file does not exist; messages name the path.
absl::StatusOr<InstanceConfig> LoadInstanceConfigWithSecrets(
    const std::string& path, absl::string_view instance,
    absl::string_view connector_type_fallback, const RuntimeSecrets& secrets);

// The lowest layer of a connector's environment: `base` (process
// environment over the .env file) first, the secrets' env when `base` has no
// value or an empty one (EnvReader treats empty as unset). Both must outlive
// this object.
class SecretsFallbackEnv final : public Env {
 public:
  SecretsFallbackEnv(const Env& base, const RuntimeSecrets& secrets)
      : base_(base), secrets_(secrets) {}
  std::optional<std::string> Get(absl::string_view name) const override;

 private:
  const Env& base_;
  const RuntimeSecrets& secrets_;
};

}  // namespace iot2mqtt::sdk

#endif  // IOT2MQTT_SDK_RUNTIME_SECRETS_H_
