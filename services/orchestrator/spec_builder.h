#ifndef IOT2MQTT_SERVICES_ORCHESTRATOR_SPEC_BUILDER_H_
#define IOT2MQTT_SERVICES_ORCHESTRATOR_SPEC_BUILDER_H_

// Turns one configured instance into the RuntimeSpec the runtimes start
// (no gRPC): the connector's manifest, the instance file, the runtime
// secrets file, the environment, and one fingerprint of all of it.
//
//   <connectors>/<connector>/manifest.json      entry, resources
//   <data>/instances/<connector>/<id>.json      written by the config service
//   <data>/runtime/secrets/<id>.json            written here (0600, atomic)
//   <data>/.env                                 the platform's settings

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "services/orchestrator/runtime.h"

namespace iot2mqtt::orchestrator {

// Reasons of the errors below.
inline constexpr char kInvalidInstanceId[] = "INVALID_INSTANCE_ID";
inline constexpr char kInvalidConnectorName[] = "INVALID_CONNECTOR_NAME";
inline constexpr char kManifestInvalid[] = "MANIFEST_INVALID";
inline constexpr char kConnectorNotFound[] = "CONNECTOR_NOT_FOUND";

// `^[a-z0-9][a-z0-9_-]{0,62}$`.
bool IsValidName(absl::string_view name);
// INVALID_ARGUMENT with INVALID_INSTANCE_ID / INVALID_CONNECTOR_NAME.
absl::Status ValidateInstanceId(absl::string_view instance_id);
absl::Status ValidateConnectorName(absl::string_view connector);

// What manifest.json says about running the connector.
struct Manifest {
  std::string entry;
  std::optional<double> cpus;
  std::optional<int64_t> memory_bytes;
};

// Reads `<connector_dir>/manifest.json`. NOT_FOUND (CONNECTOR_NOT_FOUND)
// without a connector directory; FAILED_PRECONDITION (MANIFEST_INVALID)
// when the manifest is missing, not JSON, has no string `entry`, or bad
// resources.
absl::StatusOr<Manifest> ReadManifest(const std::string& connector_dir);

// The directories the orchestrator works in.
struct SpecPaths {
  std::string data_dir;
  std::string connectors_dir;

  std::string ConnectorDir(absl::string_view connector) const;
  std::string InstanceFile(absl::string_view connector,
                           absl::string_view instance_id) const;
  std::string SecretsDir() const;  // <data>/runtime/secrets
  std::string SecretsFile(absl::string_view instance_id) const;
  std::string EnvFile() const;    // <data>/.env
  std::string StateFile() const;  // <data>/runtime/orchestrator_state.json
};

// Everything a spec is made of, as read from the config service.
struct SpecInputs {
  std::string connector;
  std::string instance_id;
  std::string instance_json;  // The document as stored (placeholders).
  std::string secrets_json;   // The runtime secrets file's content.
  // MQTT_HOST, MQTT_PORT, ... (never MQTT_PASSWORD).
  std::map<std::string, std::string> mqtt_env;
  std::string log_level;  // LOG_LEVEL for the connector.
};

// The spec (config_hash filled; the secrets file is not written here).
absl::StatusOr<RuntimeSpec> BuildSpec(const SpecPaths& paths,
                                      const SpecInputs& inputs);

// Fingerprint (32 hex digits) of the spec's fields and the secrets JSON.
std::string Fingerprint(const RuntimeSpec& spec,
                        absl::string_view instance_json,
                        absl::string_view secrets_json);

// Writes `content` to `path` (mode 0600, directory 0700 created when
// missing) unless the file already holds exactly that. Returns whether it
// wrote.
absl::StatusOr<bool> WriteSecretsFile(const std::string& path,
                                      absl::string_view content);

// Removes the file; OK when it did not exist.
absl::Status RemoveSecretsFile(const std::string& path);

// Upstream's level heuristic on a log line's content (case-insensitive):
// error|exception → "error"; warning|warn → "warning"; success|connected →
// "success"; info → "info"; debug → "debug"; else "info".
std::string LogLevelOf(absl::string_view content);

// UTC ISO-8601 with "Z" (seconds); "" for an infinite time.
std::string IsoTime(absl::Time time);

}  // namespace iot2mqtt::orchestrator

#endif  // IOT2MQTT_SERVICES_ORCHESTRATOR_SPEC_BUILDER_H_
