#ifndef IOT2MQTT_SERVICES_CONFIG_INSTANCE_STORE_H_
#define IOT2MQTT_SERVICES_CONFIG_INSTANCE_STORE_H_

// The connector-instance store: one JSON document per instance, secrets in a
// SecretVault, and the JSON views of the instance and integration REST routes
// (no gRPC).
//
// Files (under `instances_dir`):
//
//   <connector>/<id>.json                      the document, 0600, pretty
//   <connector>/.history/<id>.<UTC yyyymmddTHHMMSS.ffffff>Z.json
//                                              the previous version, copied
//                                              before each update or delete
//                                              (the newest history_limit kept)
//   .lock                                      flock() around every
//                                              read-modify-write
//
// Names: connector names and instance ids match kInstanceNamePattern and are
// checked before any path is built. Instance ids are unique across ALL
// connectors, because MQTT topics and runtimes use the id alone.
//
// The document (upstream §5.3), keys in this order:
//   {instance_id, instance_type, connector_type, friendly_name,
//    connection: <config>, devices, groups, enabled, update_interval,
//    created_at, updated_at, <each config key copied to the top level unless
//    a key above has its name>, <unknown request keys>}
// The top-level copies (upstream's "backwards compatibility", read by
// connectors) always mirror `connection`: an unknown request key with the
// name of a config key is dropped, and copies of keys removed from the config
// are removed. Timestamps are UTC ISO-8601 with microseconds and "Z".
//
// Secrets (secret_fields.h): every secret value — declared by the connector's
// setup.json, credential-named, or given explicitly in the request's
// `secrets` object — is replaced in the file by "__SECRET__<path>__" and kept
// in the vault under the owner `<connector>/<id>`. The top-level copies are
// extracted as well ("password" and "connection.password" hold the same
// value). An explicit secret whose path exists in the document (or whose
// last segment can be added to an existing object) gets a placeholder there;
// one whose path does not resolve is kept in the vault only (it reaches the
// runtime through GetRuntimeSecretsValues). A path that was secret stays
// secret in later updates even when its name is not a credential name.
// API views show kSecretMask instead of a value; sending the mask back keeps
// the stored value.
//
// Crash safety: every file is replaced atomically (WriteFileAtomically), and
// the vault is written BEFORE the document, so a document never names a
// placeholder whose value was not stored. When an update drops secret paths,
// the vault first receives the union of old and new values, then the
// document is written, then the vault is trimmed to the new values: a crash
// at any point leaves a document whose every placeholder has a value (at
// worst the old document meets the new values of the paths it shares with
// the new one, and unused values stay in the vault until the next update or
// delete; a create replaces whatever a crashed create left). A failed write
// (no crash) puts the old values back. Delete copies the
// document to the history, removes it, then removes the vault values; if the
// last step fails the error is returned and a retried Delete (NOT_FOUND)
// removes them again.
//
// Errors carry a google.rpc.ErrorInfo reason (services/common/status.h):
//   INVALID_ARGUMENT    INVALID_CONNECTOR_NAME {connector, pattern},
//                       INVALID_INSTANCE_ID {instance_id, pattern},
//                       INVALID_INSTANCE {fields} (a body with the wrong
//                       shape: every problem listed; when its only problems
//                       are names failing the pattern, the name's reason)
//   NOT_FOUND           INSTANCE_NOT_FOUND {connector?, instance_id}
//   ALREADY_EXISTS      INSTANCE_ALREADY_EXISTS {connector, instance_id},
//                       INSTANCE_ID_TAKEN {connector (the holder), instance_id}
//   FAILED_PRECONDITION INSTANCE_CORRUPT {connector, instance_id, path},
//                       SECRETS_UNREADABLE (from the vault)
//   storage errors      STORAGE_UNAVAILABLE / STORAGE_FULL / STORAGE_IO_ERROR
// Error messages never contain a field value other than a (escaped,
// truncated) name or instance_type.

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/config/catalogue.h"
#include "services/config/secret_vault.h"

namespace iot2mqtt::config {

// kInvalidConnectorName ("INVALID_CONNECTOR_NAME") comes from catalogue.h,
// which checks connector names with the same pattern.
inline constexpr char kInvalidInstanceId[] = "INVALID_INSTANCE_ID";
inline constexpr char kInvalidInstance[] = "INVALID_INSTANCE";
inline constexpr char kInstanceNotFound[] = "INSTANCE_NOT_FOUND";
inline constexpr char kInstanceAlreadyExists[] = "INSTANCE_ALREADY_EXISTS";
inline constexpr char kInstanceIdTaken[] = "INSTANCE_ID_TAKEN";
inline constexpr char kInstanceCorrupt[] = "INSTANCE_CORRUPT";

// Connector names and instance ids.
inline constexpr char kInstanceNamePattern[] = "^[a-z0-9][a-z0-9_-]{0,62}$";

bool IsValidInstanceName(absl::string_view name);
// OK, or INVALID_ARGUMENT INVALID_CONNECTOR_NAME / INVALID_INSTANCE_ID with
// the value (escaped, at most 64 bytes) and the pattern.
absl::Status ValidateConnectorName(absl::string_view connector);
absl::Status ValidateInstanceId(absl::string_view instance_id);

struct InstanceStoreOptions {
  std::string instances_dir;
  // History versions kept per instance; 0 keeps none.
  int history_limit = 10;
  // The setup.json secret field names of a connector; may be empty.
  std::function<std::set<std::string>(const std::string& connector)>
      declared_secrets;
  // The connector's display name (manifest/setup); empty: the name itself.
  std::function<std::string(const std::string& connector)> display_name;
  // Empty: absl::Now.
  std::function<absl::Time()> clock;
};

// What a mutation did.
struct InstanceChange {
  std::string connector;
  std::string instance_id;
  // False when an update left the document and its secrets as they were
  // (then nothing was written, not even updated_at).
  bool changed = false;
  // The REST response, e.g. {"success":true,"message":"Instance created",
  // "instance_id":"demo"}.
  std::string response_json;
};

// Thread-safe. Mutations of one process are serialised by a mutex, and
// across processes by the flock on `<instances_dir>/.lock`; readers need no
// lock (files are replaced by rename). Nothing is created on disk before
// the first successful validation of a mutation.
class InstanceStore {
 public:
  InstanceStore(InstanceStoreOptions options, SecretVault& vault);

  InstanceStore(const InstanceStore&) = delete;
  InstanceStore& operator=(const InstanceStore&) = delete;

  // POST /api/instances. `body_json` is upstream's CreateInstanceRequest:
  //   instance_id (required), connector_type (required),
  //   friendly_name (string; missing or "" → instance_id),
  //   config (object, default {}; `connection` is accepted instead),
  //   devices (array of objects, default []), groups (array, default []),
  //   enabled (bool, default true),
  //   update_interval (whole seconds ≥ 1, or such a numeric string; default
  //   10), instance_type ("device" | "account" | "service", default device),
  //   secrets (object of dotted path → value, or null).
  // Other keys are kept in the document. Response
  // {"success":true,"message":"Instance created","instance_id":id}.
  absl::StatusOr<InstanceChange> Create(absl::string_view body_json);

  // PUT /api/instances/{connector}/{id}: a full or partial body. Present
  // keys replace the stored ones and missing keys keep them, except
  // `config`, which is merged key by key (a key set to null is removed; the
  // UI sends the whole config, so a partial body can change one key
  // without losing concurrent changes of others). instance_id,
  // connector_type, instance_type, created_at and updated_at in the body are
  // ignored. In `secrets`, null removes a vault-only value. Response
  // {"success":true,"message":"Instance updated","instance_id":id}.
  absl::StatusOr<InstanceChange> Update(absl::string_view connector,
                                        absl::string_view instance_id,
                                        absl::string_view body_json);

  // DELETE /api/instances/{connector}/{id}: history copy, file removed, vault
  // values removed. Response
  // {"success":true,"message":"Instance deleted successfully"}.
  absl::StatusOr<InstanceChange> Delete(absl::string_view connector,
                                        absl::string_view instance_id);

  // The document, compact, secrets masked.
  absl::StatusOr<std::string> Get(absl::string_view connector,
                                  absl::string_view instance_id);
  // GET /api/instances/{connector}/{id}: the same as Get.
  absl::StatusOr<std::string> GetInstanceJson(absl::string_view connector,
                                              absl::string_view instance_id) {
    return Get(connector, instance_id);
  }
  // The document with the real secret values (for the orchestrator only;
  // never an API response).
  absl::StatusOr<std::string> GetWithSecrets(absl::string_view connector,
                                             absl::string_view instance_id);
  // The document as stored: placeholders "__SECRET__<path>__" instead of
  // secret values (for a runtime, which receives the values separately).
  absl::StatusOr<std::string> GetStoredJson(absl::string_view connector,
                                            absl::string_view instance_id);
  // The vault's values of the instance: {"<path>": value, ...}.
  absl::StatusOr<std::string> GetRuntimeSecretsValues(
      absl::string_view connector, absl::string_view instance_id);

  // The connector that holds `instance_id`; NOT_FOUND INSTANCE_NOT_FOUND
  // "Instance <id> not found".
  absl::StatusOr<std::string> FindById(absl::string_view instance_id);

  // Listings. Every instance directory counts, whether or not its connector
  // is in the catalogue. A file that is not a JSON object is skipped and
  // logged (WARNING, once per file version); a document lacking optional
  // keys or holding them with other types is listed with defaults
  // (friendly_name = id, enabled = true, device_count = 0, created_at =
  // null) and logged the same way. Temporary files of interrupted writes
  // are ignored. Documents are masked everywhere, and listed with
  // instance_id and connector_type as their path says.

  // GET /api/instances[?connector=]: [document, ...] sorted by connector
  // then id.
  absl::StatusOr<std::string> ListInstancesJson(
      const std::optional<std::string>& connector = std::nullopt);
  // GET /api/integrations/: [{name, display_name, instances_count, status,
  // last_seen: null, instances: [IntegrationInstance]}] for each connector
  // with at least one instance. IntegrationInstance = {instance_id,
  // friendly_name, integration, status, device_count, last_seen: null,
  // created_at, enabled, config: <document>}. Runtime state belongs to the
  // orchestrator: here an instance's status is "disabled" when it is not
  // enabled, else "unknown"; a connector's is "unknown" when any instance's
  // is, else "disabled".
  absl::StatusOr<std::string> ListConfiguredIntegrationsJson();
  // GET /api/integrations/{name}/instances: [IntegrationInstance]; [] when
  // there is none.
  absl::StatusOr<std::string> ListIntegrationInstancesJson(
      absl::string_view connector);
  // GET /api/integrations/instances/{id}: {instance_id, integration,
  // friendly_name, status, config, created_at}.
  absl::StatusOr<std::string> GetIntegrationInstanceJson(
      absl::string_view instance_id);

  // Instance ids per connector, both sorted.
  absl::StatusOr<std::map<std::string, std::vector<std::string>>>
  InstanceIdsByConnector();
  // The number of entries of every instance's `devices`.
  absl::StatusOr<int> CountDevices();

  const std::string& instances_dir() const { return options_.instances_dir; }

 private:
  struct Stored;
  std::string ConnectorDir(absl::string_view connector) const;
  std::string InstancePath(absl::string_view connector,
                           absl::string_view instance_id) const;
  absl::Time Now() const;
  std::set<std::string> DeclaredSecrets(const std::string& connector) const;
  std::string DisplayName(const std::string& connector) const;
  // The valid connector names that are directories, sorted.
  absl::StatusOr<std::vector<std::string>> ConnectorDirs() const;
  // Every listable instance (of `connector` only, when given).
  absl::StatusOr<std::vector<Stored>> Scan(
      const std::optional<std::string>& connector);
  // The connector holding `instance_id`, or nullopt.
  absl::StatusOr<std::optional<std::string>> Holder(
      absl::string_view instance_id) const;
  absl::Status WriteHistory(const std::string& connector,
                            const std::string& instance_id,
                            const std::string& content);
  void WarnOnce(const std::string& path, int64_t mtime_ns,
                absl::string_view problem);

  const InstanceStoreOptions options_;
  SecretVault& vault_;
  // Serialises mutations (with the file lock) and secret reads.
  absl::Mutex write_mu_;
  absl::Mutex warn_mu_;
  // File → mtime of the version already warned about.
  absl::flat_hash_map<std::string, int64_t> warned_ ABSL_GUARDED_BY(warn_mu_);
};

}  // namespace iot2mqtt::config

#endif  // IOT2MQTT_SERVICES_CONFIG_INSTANCE_STORE_H_
