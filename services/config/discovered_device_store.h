#ifndef IOT2MQTT_SERVICES_CONFIG_DISCOVERED_DEVICE_STORE_H_
#define IOT2MQTT_SERVICES_CONFIG_DISCOVERED_DEVICE_STORE_H_

// The devices discovery scans found (no gRPC), in upstream's file
// `<data_dir>/discovered_devices.json` (reference §7.1):
//
//   {
//     "devices": [
//       {"id": "yeelight_0x0000000002dfb19a", "name": "Desk lamp",
//        "integration": "yeelight", "ip": "192.0.2.20", "port": 55443,
//        "model": "color", "manufacturer": "Yeelight",
//        "capabilities": {"power": true},
//        "discovered_at": "2026-11-22T16:41:07.123456Z",
//        "last_seen": "2026-11-22T17:02:11.000001Z", "added": false,
//        "fw_ver": "18", "support": ["get_prop", "set_power"]},
//       ...
//     ],
//     "last_scan": "2026-11-22T17:02:12.500000Z"        (or null: never)
//   }
//
// Each record is flat: the typed fields of v1::DiscoveredDevice at the top
// level (id, name, integration, discovered_at and added always; ip, port,
// model, manufacturer, capabilities, last_seen, added_at, instance_id, mac,
// serial and device_id only when set), followed by every member of
// `attributes`. Reading is the reverse: a member named like a typed field
// with the right type (or null) fills it, every other member goes to
// `attributes`, so files written by upstream (fw_ver, support, device_type,
// ...) are read without loss and files written here are readable by
// upstream. A typed field of the wrong type (e.g. "port": "x") is dropped
// with a WARNING; a record that is not an object or lacks a valid id is
// skipped with a WARNING (and dropped by the next write), never an error of
// the whole list; so is a later record with an id seen before. Warnings are
// logged once per file content. Top-level keys other than devices and
// last_scan are kept.
//
// Writes are read-modify-write under the flock
// `<data_dir>/.discovered_devices.json.lock` (and a mutex), the file
// replaced atomically (0600, pretty-printed): concurrent writers of any
// process never lose a change; readers need no lock. Arguments are validated
// before the file is touched: an invalid request changes nothing.
//
// Errors (services/common/status.h reasons):
//   INVALID_ARGUMENT    INVALID_CONNECTOR_NAME {connector, pattern},
//                       INVALID_DEVICE_ID {device_id, pattern, index?},
//                       INVALID_INSTANCE_ID {instance_id, pattern},
//                       INVALID_DEVICE {device_id, field, index}
//   NOT_FOUND           DEVICE_NOT_FOUND {device_id} "Device <id> not found"
//   RESOURCE_EXHAUSTED  TOO_MANY_DISCOVERED_DEVICES {limit, scope: request
//                       or store}
//   FAILED_PRECONDITION STORE_CORRUPT {path}: the file is not a JSON object
//                       or its `devices` is not an array (nothing is written
//                       over it; fix or delete it)
//   storage errors      STORAGE_UNAVAILABLE / STORAGE_FULL / STORAGE_IO_ERROR

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "iot2mqtt/config/v1/config_service.pb.h"

namespace iot2mqtt::config {

using DiscoveredDevice = ::iot2mqtt::config::v1::DiscoveredDevice;

inline constexpr char kInvalidDeviceId[] = "INVALID_DEVICE_ID";
inline constexpr char kInvalidDevice[] = "INVALID_DEVICE";
inline constexpr char kDeviceNotFound[] = "DEVICE_NOT_FOUND";
inline constexpr char kTooManyDiscoveredDevices[] =
    "TOO_MANY_DISCOVERED_DEVICES";
inline constexpr char kStoreCorrupt[] = "STORE_CORRUPT";

inline constexpr char kDeviceIdPattern[] = "^[a-z0-9][a-z0-9_-]{0,127}$";
inline constexpr char kDiscoveredDevicesFile[] = "discovered_devices.json";

// True for exactly kDeviceIdPattern.
bool IsValidDeviceId(absl::string_view id);
// OK, or INVALID_ARGUMENT INVALID_DEVICE_ID with the id (escaped, at most 64
// bytes) and the pattern.
absl::Status ValidateDeviceId(absl::string_view id);

struct DiscoveredDeviceStoreOptions {
  std::string data_dir;
  // The current time as stored (UTC ISO-8601 with "Z"); empty: UtcNowIso8601.
  std::function<std::string()> clock;
  // Records the store holds at most.
  size_t max_devices = 10000;
  // Devices one Record() call may report.
  size_t max_devices_per_request = 1000;
};

class DiscoveredDeviceStore {
 public:
  // Bytes of each string field, and of capabilities / attributes (compact).
  static constexpr size_t kMaxStringBytes = 1024;
  static constexpr size_t kMaxJsonBytes = 16384;

  struct Listing {
    std::vector<DiscoveredDevice> devices;  // In file order: oldest first.
    std::string last_scan;                  // "" = never.
  };

  struct RecordResult {
    // The stored records of the reported devices, in request order.
    std::vector<DiscoveredDevice> devices;
    // How many ids were new.
    int new_devices = 0;
    // Whether the file was written (false only for a request reporting no
    // device without scan_completed).
    bool changed = false;
    // The one id the request reported; "" when it reported several or none.
    std::string single_device_id;
  };

  explicit DiscoveredDeviceStore(DiscoveredDeviceStoreOptions options);
  DiscoveredDeviceStore(const DiscoveredDeviceStore&) = delete;
  DiscoveredDeviceStore& operator=(const DiscoveredDeviceStore&) = delete;

  // The records (only `integration`'s when not empty) and last_scan. An
  // empty listing when the file does not exist.
  absl::StatusOr<Listing> List(absl::string_view integration = "");

  // Merges what a scan of `integration` reported, by id. A new id is
  // appended (discovered_at = last_seen = now, added false). A known id gets
  // the reported fields and last_seen = now and keeps discovered_at, added,
  // added_at and instance_id; a field the report leaves empty (0 for port)
  // keeps its stored value, and the reported attributes are merged into the
  // stored ones key by key (upstream's dict.update of the keys a tool
  // reported). Every device's integration becomes `integration`;
  // discovered_at, last_seen, added, added_at and instance_id of the report
  // are ignored; attribute keys named like a typed field are ignored (the
  // typed field owns the name in the file). `scan_completed` sets last_scan
  // to now. Validation: integration, each id, ip/name/... at most
  // kMaxStringBytes, port 0..65535, capabilities and attributes "", "null"
  // or a JSON object of at most kMaxJsonBytes; at most
  // max_devices_per_request devices; at most max_devices records after the
  // merge.
  absl::StatusOr<RecordResult> Record(
      absl::string_view integration,
      const std::vector<DiscoveredDevice>& devices, bool scan_completed);

  // added = true, added_at = now, instance_id; returns the record.
  absl::StatusOr<DiscoveredDevice> MarkAdded(absl::string_view device_id,
                                             absl::string_view instance_id);

  // Forgets one record.
  absl::Status Delete(absl::string_view device_id);

  const std::string& path() const { return path_; }

 private:
  struct Contents;
  // The file's contents (empty when missing); STORE_CORRUPT when unusable.
  absl::StatusOr<Contents> Load();
  // Load, `mutate`, write, under the locks. Nothing is written when
  // `mutate` fails or returns false ("nothing to change").
  absl::Status Mutate(
      const std::function<absl::StatusOr<bool>(Contents&)>& mutate);
  std::string Now() const;

  const DiscoveredDeviceStoreOptions options_;
  const std::string path_;
  const std::string lock_path_;
  // Serialises this process's writers before they queue on the file lock.
  absl::Mutex write_mu_;
  absl::Mutex warn_mu_;
  // Hash of the file content whose problems were last logged.
  size_t warned_hash_ ABSL_GUARDED_BY(warn_mu_) = 0;
};

}  // namespace iot2mqtt::config

#endif  // IOT2MQTT_SERVICES_CONFIG_DISCOVERED_DEVICE_STORE_H_
