#ifndef IOT2MQTT_SERVICES_CONFIG_CATALOGUE_H_
#define IOT2MQTT_SERVICES_CONFIG_CATALOGUE_H_

// The connector catalogue: what `<connectors_dir>/<name>/` folders offer
// (setup.json, manifest.json, icon.svg), in the JSON shapes of upstream's
// REST API (reference §1.3), without its defects: an invalid setup.json is
// listed with its problems instead of being skipped or failing the whole
// list, /meta keeps unknown keys, branding is never dropped, and no input
// produces an internal error. See docs/setup-flows.md.
//
// Names. A connector name matches ^[a-z0-9][a-z0-9_-]{0,62}$. Every method
// that takes a name checks it before any path is built. Folders whose name
// starts with '_' or '.' are templates or hidden: never listed, never served
// (NOT_FOUND). Other folders whose name does not match are listed nowhere and
// logged at WARNING once (again if they disappear and come back).
//
// Files. A connector folder may be a symlink. A file is read only when it is
// a regular file that resolves inside the (resolved) connector folder and is
// at most 1 MiB; otherwise it is reported as a problem and not read. Files
// are cached by identity (device, inode, size, mtime, ctime), re-read when it
// changes, and (like FileDeviceConfigStore) re-read while modified less than
// 2 s ago, so an edit within the timestamp granularity is never missed.
// Thread-safe.
//
// Errors carry a google.rpc.ErrorInfo reason (services/common/status.h):
//   INVALID_ARGUMENT    INVALID_CONNECTOR_NAME {connector, pattern},
//                       INVALID_CONFIG
//   NOT_FOUND           CONNECTOR_NOT_FOUND {connector},
//                       SETUP_NOT_FOUND {connector}, ICON_NOT_FOUND {connector}
//   FAILED_PRECONDITION SETUP_SCHEMA_INVALID {connector, problems},
//                       MANIFEST_INVALID {connector},
//                       CONNECTOR_FILE_REFUSED {connector, file}
//   UNAVAILABLE         STORAGE_UNAVAILABLE {path} (the folder is missing)
//
// JSON results are compact, keys in the documented order. A "problems"
// array holds {"path","message"} objects: paths inside setup.json as
// ValidateSetupSchema reports them ("flows[0].id"), and "setup.json",
// "manifest.json" or "icon.svg" for a file as a whole.

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "services/config/setup_schema.h"

namespace iot2mqtt::config {

inline constexpr char kInvalidConnectorName[] = "INVALID_CONNECTOR_NAME";
inline constexpr char kConnectorNotFound[] = "CONNECTOR_NOT_FOUND";
inline constexpr char kSetupNotFound[] = "SETUP_NOT_FOUND";
inline constexpr char kIconNotFound[] = "ICON_NOT_FOUND";
inline constexpr char kManifestInvalid[] = "MANIFEST_INVALID";
inline constexpr char kConnectorFileRefused[] = "CONNECTOR_FILE_REFUSED";

inline constexpr char kConnectorNamePattern[] = "^[a-z0-9][a-z0-9_-]{0,62}$";
inline constexpr int64_t kMaxConnectorFileBytes = 1 << 20;  // 1 MiB

// §5.6 branding defaults (the icon default depends on icon.svg).
inline constexpr char kDefaultBrandColor[] = "#6366F1";
inline constexpr char kDefaultBrandBackground[] =
    "linear-gradient(135deg, #667eea 0%, #764ba2 100%)";
inline constexpr char kDefaultBrandCategory[] = "general";
inline constexpr char kDefaultBrandIcon[] = "/assets/default-icon.svg";

struct Icon {
  std::string content_type;  // "image/svg+xml"
  std::string data;
};

class ConnectorCatalogue {
 public:
  explicit ConnectorCatalogue(std::string connectors_dir);
  ConnectorCatalogue(const ConnectorCatalogue&) = delete;
  ConnectorCatalogue& operator=(const ConnectorCatalogue&) = delete;

  // OK when `name` matches kConnectorNamePattern; else INVALID_ARGUMENT
  // INVALID_CONNECTOR_NAME showing the name escaped and the pattern.
  static absl::Status ValidateName(absl::string_view name);

  // GET /api/connectors: [{name, display_name, description, icon, instances,
  // has_setup, version, problems}] for every listed connector, with or
  // without setup.json. `instance_ids` maps connector name → instance ids.
  absl::StatusOr<std::string> ListConnectorsJson(
      const std::map<std::string, std::vector<std::string>>& instance_ids);

  // GET /api/connectors/available: [{name, display_name, version, author,
  // description, branding, discovery, capabilities, default_flow,
  // flows:[{id,name,description}], problems}] for connectors that have a
  // setup.json, valid or not (what can't be read is null).
  absl::StatusOr<std::string> ListAvailableJson();

  // GET /api/integrations: [{name, display_name, description, icon,
  // has_setup, version, branding, problems}].
  absl::StatusOr<std::string> ListIntegrationsJson();

  // The setup.json text as stored. SETUP_NOT_FOUND when there is none;
  // FAILED_PRECONDITION SETUP_SCHEMA_INVALID (with the parse error) when it
  // isn't JSON.
  absl::StatusOr<std::string> GetSetupJson(absl::string_view name);

  // GET /api/integrations/{name}/meta: setup.json's object, every key kept,
  // plus `branding` (filled with defaults), `icon_url` (when icon.svg exists)
  // and `problems` (of manifest.json and icon.svg). FAILED_PRECONDITION
  // SETUP_SCHEMA_INVALID listing the problems when the schema has any.
  absl::StatusOr<std::string> GetMetaJson(absl::string_view name);

  // icon.svg as image/svg+xml; NOT_FOUND ICON_NOT_FOUND without one.
  absl::StatusOr<Icon> GetIcon(absl::string_view name);

  // POST /api/integrations/{name}/validate with body {"config": {...}}:
  // ValidateConfigAgainstSetup's result. INVALID_CONFIG when the body or its
  // config isn't an object; SETUP_NOT_FOUND; SETUP_SCHEMA_INVALID.
  absl::StatusOr<std::string> ValidateConfigJson(absl::string_view name,
                                                 absl::string_view body_json);

  // DeclaredSecretFields of the connector's setup.json; empty when it has
  // none (or it can't be read).
  absl::StatusOr<std::set<std::string>> SecretFieldNames(
      absl::string_view name);

  // setup display_name ∥ manifest display_name ∥ manifest name ∥ the name.
  absl::StatusOr<std::string> DisplayName(absl::string_view name);

  // manifest.json as stored; "{}" when absent. MANIFEST_INVALID when it
  // isn't a JSON object.
  absl::StatusOr<std::string> ManifestJson(absl::string_view name);

  // The listed connectors, sorted; empty when the folder can't be listed.
  std::vector<std::string> Names();

  // Changes whenever a listed connector folder, or its setup.json,
  // manifest.json or icon.svg, is added, removed or modified (identity and
  // content hash of each file). Cheap enough to poll: stat calls, and a file
  // is read again only when its identity changed or it was modified less
  // than 2 s before it was last hashed.
  std::string Fingerprint();

  const std::string& directory() const { return directory_; }

  static constexpr int64_t kTrustAfterNs = 2'000'000'000;

  // Implementation types, public only for the .cc file's helpers.
  enum class FileKind { kSetup, kManifest, kIcon };
  struct LoadedFile;
  struct Connector;

 private:
  struct FileIdentity {
    dev_t device = 0;
    ino_t inode = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    bool operator==(const FileIdentity& other) const {
      return device == other.device && inode == other.inode &&
             size == other.size && mtime_ns == other.mtime_ns &&
             ctime_ns == other.ctime_ns;
    }
  };
  struct CacheEntry {
    FileIdentity identity;
    std::string root;      // The resolved connector folder it was read in.
    bool trusted = false;  // Modified long enough before it was read.
    std::shared_ptr<const LoadedFile> loaded;
  };

  // Validates `name` (templates are NOT_FOUND) and loads the connector.
  absl::StatusOr<Connector> Resolve(absl::string_view name);
  absl::StatusOr<Connector> LoadConnector(const std::string& name);
  // The listed connector names (logs invalid ones once).
  absl::StatusOr<std::vector<std::string>> Scan();
  absl::StatusOr<std::vector<Connector>> LoadAll();
  std::shared_ptr<const LoadedFile> Load(const std::string& name,
                                         const std::string& root,
                                         FileKind kind);

  // The fingerprint's view of one file: its identity and content hash.
  struct HashedFile {
    FileIdentity identity;
    bool trusted = false;
    std::optional<uint64_t> hash;
  };
  std::string FingerprintOf(const std::string& path, int64_t now_ns,
                            std::map<std::string, HashedFile>* seen);

  const std::string directory_;
  absl::Mutex mu_;
  // connector name → file name → what was read.
  std::map<std::string, std::map<std::string, CacheEntry>> cache_
      ABSL_GUARDED_BY(mu_);
  std::set<std::string> warned_names_ ABSL_GUARDED_BY(mu_);
  // Path → identity and hash, as of the last Fingerprint().
  std::map<std::string, HashedFile> hashed_files_ ABSL_GUARDED_BY(mu_);
};

}  // namespace iot2mqtt::config

#endif  // IOT2MQTT_SERVICES_CONFIG_CATALOGUE_H_
