#ifndef IOT2MQTT_SERVICES_CONFIG_CHANGE_LOG_H_
#define IOT2MQTT_SERVICES_CONFIG_CHANGE_LOG_H_

// The config service's change stream (no gRPC): every mutation appends one
// Change with the next revision; the newest `capacity` changes stay in
// memory so a watcher that reconnects with the cursor of the last change it
// saw gets what it missed. A cursor is "<epoch>.<revision>", the epoch being
// random per process start: after a restart (or when the cursor is older
// than what is kept, from the future, or malformed) the watcher gets a
// resync marker instead and should re-read what it shows.

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace iot2mqtt::config {

struct Change {
  enum class Kind {
    kInstance,
    kSettings,
    kDeviceConfig,
    kCatalogue,
    kDiscoveredDevice
  };
  enum class Action { kCreated, kUpdated, kDeleted };
  Kind kind = Kind::kInstance;
  Action action = Action::kUpdated;
  std::string connector;    // kInstance, kCatalogue.
  std::string instance_id;  // kInstance.
  std::string mac_address;  // kDeviceConfig.
  std::string settings;     // kSettings: "mqtt", "access_key", ...
  std::string device_id;    // kDiscoveredDevice: "" when several changed.
  // Set by ChangeLog.
  uint64_t revision = 0;
  absl::Time time;
  bool resync = false;  // The marker: "you missed changes".
};

class ChangeLog {
 public:
  explicit ChangeLog(size_t capacity = 1024);
  // For tests: a fixed epoch.
  ChangeLog(size_t capacity, std::string epoch);

  // Assigns the revision and time, keeps it, wakes the listeners.
  uint64_t Append(Change change);

  std::string CursorOf(uint64_t revision) const;
  // The revision of the newest change (0 when none yet).
  uint64_t latest() const;

  // Where a watcher starting after `cursor` stands: the revision it has
  // seen, and whether it must be told to resync first. An empty cursor
  // means "from now on".
  struct Start {
    uint64_t position = 0;
    bool resync = false;
  };
  Start StartAfter(absl::string_view cursor) const;

  // Up to `max` changes after `*position`; advances it. When the changes
  // after it were already dropped (a slow watcher), returns one resync
  // marker and moves `*position` to the newest.
  std::vector<Change> Read(uint64_t* position, size_t max) const;

  // `listener` runs (on the appending thread, without the log's lock) after
  // every Append. RemoveListener waits for a call in progress to end.
  int AddListener(std::function<void()> listener);
  void RemoveListener(int id);

  // At shutdown: wakes the listeners so watchers end their streams.
  void Close();
  bool closed() const { return closed_.load(); }

 private:
  Change Marker(uint64_t revision) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t capacity_;
  const std::string epoch_;
  mutable absl::Mutex mu_;
  std::deque<Change> changes_ ABSL_GUARDED_BY(mu_);
  uint64_t next_revision_ ABSL_GUARDED_BY(mu_) = 1;

  std::atomic<bool> closed_{false};
  absl::Mutex listeners_mu_;
  std::map<int, std::function<void()>> listeners_
      ABSL_GUARDED_BY(listeners_mu_);
  int next_listener_ ABSL_GUARDED_BY(listeners_mu_) = 1;
};

const char* KindName(Change::Kind kind);
const char* ActionName(Change::Action action);

}  // namespace iot2mqtt::config

#endif  // IOT2MQTT_SERVICES_CONFIG_CHANGE_LOG_H_
