#ifndef IOT2MQTT_SERVICES_CONFIG_DEVICE_CONFIG_STORE_H_
#define IOT2MQTT_SERVICES_CONFIG_DEVICE_CONFIG_STORE_H_

// The ESP32 device-configuration store: one JSON object per device, keyed by
// the device's MAC address in the form `a4-cf-12-34-56-78`.
//
// Errors carry a google.rpc.ErrorInfo reason (services/common/status.h):
//   INVALID_ARGUMENT    INVALID_MAC_ADDRESS, CONTENT_REQUIRED, INVALID_CONTENT
//   NOT_FOUND           DEVICE_CONFIG_NOT_FOUND {mac_address}
//   FAILED_PRECONDITION DEVICE_CONFIG_CORRUPT {mac_address}
//   UNAVAILABLE         STORAGE_UNAVAILABLE {path}
//   RESOURCE_EXHAUSTED  STORAGE_FULL {path}
//   INTERNAL            STORAGE_IO_ERROR {path}
// Arguments are validated before storage is touched, so a malformed request
// is INVALID_ARGUMENT even while the directory is unavailable.

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "services/config/file_io.h"

namespace iot2mqtt::config {

inline constexpr char kInvalidMacAddress[] = "INVALID_MAC_ADDRESS";
inline constexpr char kContentRequired[] = "CONTENT_REQUIRED";
inline constexpr char kInvalidContent[] = "INVALID_CONTENT";
inline constexpr char kDeviceConfigNotFound[] = "DEVICE_CONFIG_NOT_FOUND";
inline constexpr char kDeviceConfigCorrupt[] = "DEVICE_CONFIG_CORRUPT";

// Summary fields taken from the content keys `deviceName` (string),
// `deviceEntityId` (string) and `enableOTA` (bool); unset when the key is
// missing or holds another type.
struct DeviceConfigSummary {
  std::string mac_address;
  std::optional<std::string> device_name;
  std::optional<std::string> device_entity_id;
  std::optional<bool> enable_ota;
};

struct DeviceConfig {
  DeviceConfigSummary summary;
  // The JSON object, compact, numbers' text and key order as stored.
  std::string content;
};

struct StoreHealth {
  bool healthy = false;
  std::string reason;     // Why not, when unhealthy (names path and errno).
  std::string directory;  // The directory the store serves.
  int config_count = 0;   // Valid configuration files (when healthy).
};

// True for exactly `^[0-9a-f]{2}(-[0-9a-f]{2}){5}$`.
bool IsValidMacAddress(absl::string_view mac);
// OK, or INVALID_ARGUMENT INVALID_MAC_ADDRESS naming the expected format.
absl::Status ValidateMacAddress(absl::string_view mac);

// Parses stored or submitted text as a device configuration: INVALID_ARGUMENT
// (with the parse error or "expected a JSON object, got ...") unless it is a
// JSON object.
absl::StatusOr<DeviceConfig> ParseDeviceConfig(std::string mac_address,
                                               absl::string_view text);

class DeviceConfigStore {
 public:
  virtual ~DeviceConfigStore() = default;

  // Every valid configuration, sorted by MAC address. Entries that are not
  // valid JSON objects are skipped (and logged).
  virtual absl::StatusOr<std::vector<DeviceConfigSummary>> List() = 0;
  virtual absl::StatusOr<DeviceConfig> Get(absl::string_view mac_address) = 0;
  // Creates or replaces (upsert) atomically; returns what is now stored.
  virtual absl::StatusOr<DeviceConfig> Put(absl::string_view mac_address,
                                           absl::string_view content) = 0;
  virtual absl::Status Delete(absl::string_view mac_address) = 0;
  virtual StoreHealth CheckHealth() = 0;
};

// Files `<directory>/<mac>.json`, pretty-printed for people to read. The
// directory is never created here: while it is missing, not a directory or
// not readable and writable, CheckHealth() is unhealthy and every operation
// fails with UNAVAILABLE STORAGE_UNAVAILABLE; it recovers as soon as the
// directory is usable again.
//
// Writes go to a temporary file in the same directory (`.<mac>.json.tmp-<hex>`,
// never listed) that is fsynced and renamed over the target, then the
// directory is fsynced: readers see the old or the new content, never a mix,
// and concurrent writers of one MAC end with the last rename winning. One
// process owns the directory: temporary files left by a crash are removed
// when the store is constructed. Thread-safe.
//
// List() and CheckHealth() keep the parsed summary of each file keyed by its
// identity (inode, size, mtime, ctime): a file is read and parsed again only
// when it changed, whoever changed it (this service, a person, a device
// tool), so listing 200 configs costs one stat() per file. As in git's
// "racily clean" rule, a file modified less than kTrustAfter before it was
// read is read again next time: an edit within the file system's timestamp
// granularity that keeps the size can't be missed. An invalid file is logged
// once per version, not on every listing.
class FileDeviceConfigStore final : public DeviceConfigStore {
 public:
  explicit FileDeviceConfigStore(std::string directory);

  absl::StatusOr<std::vector<DeviceConfigSummary>> List() override;
  absl::StatusOr<DeviceConfig> Get(absl::string_view mac_address) override;
  absl::StatusOr<DeviceConfig> Put(absl::string_view mac_address,
                                   absl::string_view content) override;
  absl::Status Delete(absl::string_view mac_address) override;
  StoreHealth CheckHealth() override;

  const std::string& directory() const { return directory_; }

  static constexpr int64_t kTrustAfterNs = 2'000'000'000;

 private:
  // OK or UNAVAILABLE STORAGE_UNAVAILABLE with the path and errno text.
  absl::Status CheckDirectory() const;
  absl::StatusOr<std::vector<DeviceConfigSummary>> Scan();
  void RemoveStaleTempFiles();
  std::string PathOf(absl::string_view mac_address) const;

  // What a file was when it was last parsed.
  struct FileIdentity {
    ino_t inode = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    bool operator==(const FileIdentity& other) const {
      return inode == other.inode && size == other.size &&
             mtime_ns == other.mtime_ns && ctime_ns == other.ctime_ns;
    }
  };
  static FileIdentity IdentityOf(const struct stat& st);
  struct CachedSummary {
    FileIdentity identity;
    bool trusted = false;  // Modified long enough before it was read.
    std::optional<DeviceConfigSummary> summary;  // nullopt: not a valid config.
    uint64_t generation = 0;                     // Last scan that saw it.
  };

  const std::string directory_;
  absl::Mutex cache_mu_;
  absl::flat_hash_map<std::string, CachedSummary> cache_
      ABSL_GUARDED_BY(cache_mu_);
  uint64_t scan_generation_ ABSL_GUARDED_BY(cache_mu_) = 0;
};

}  // namespace iot2mqtt::config

#endif  // IOT2MQTT_SERVICES_CONFIG_DEVICE_CONFIG_STORE_H_
