#ifndef IOT2MQTT_SERVICES_MQTT_BRIDGE_TOPIC_CACHE_H_
#define IOT2MQTT_SERVICES_MQTT_BRIDGE_TOPIC_CACHE_H_

// The bridge's view of the bus: the last message of every topic it receives,
// bounded by a number of topics and a number of bytes (topic + value), and
// the MQTT contract's projections of it (instance status, devices and their
// state). Pure logic: no I/O, no clock (callers pass the receive time).
//
// Values are stored as JSON text: the payload when it is valid JSON, else the
// payload as a JSON string (invalid UTF-8 replaced by U+FFFD).
//
// Eviction: when a limit would be exceeded, the least recently updated
// topics go first; `evicted()` counts them.
//
// Thread-safe (one internal mutex); Apply() is the hot path (>= 20,000 calls
// a second on this machine, with projections kept up to date).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace iot2mqtt::mqtt_bridge {

struct CacheLimits {
  size_t max_topics = 100000;
  size_t max_bytes = 64u << 20;
};

struct CachedTopic {
  std::string topic;
  std::string value;  // JSON text.
  absl::Time received;
  bool retained = false;
  int qos = 0;
};

// What Apply() did.
struct CacheChange {
  enum class Kind { kUpdate, kDelete, kIgnored };
  Kind kind = Kind::kIgnored;
  std::string value;   // JSON text (kUpdate).
  size_t evicted = 0;  // Topics evicted to make room.
};

struct DeviceView {
  std::string device_id;
  // The `devices/<d>/state` payload ({timestamp, device_id, state}) with
  // later `devices/<d>/state/<key>` values applied to its `state` object
  // (when there is no full state yet: {"device_id": d, "state": {...}}).
  // Exactly the cached payload while no later property overrides it; the
  // merged document is compact JSON.
  std::string state;
  absl::Time last_update;
};

struct InstanceView {
  std::string instance_id;
  std::string status = "unknown";   // "online", "offline", "unknown".
  std::vector<DeviceView> devices;  // Sorted by device id.
  absl::Time last_seen;
};

// JSON text for a payload (see above).
std::string PayloadToJson(absl::string_view payload);

class TopicCache {
 public:
  explicit TopicCache(CacheLimits limits = {});

  // The base topic the projections read (`<base>/v1/instances/...`),
  // sdk::kDefaultBaseTopic ("IoT2mqtt") until set. Changing it clears the
  // cache (the `evicted` count is kept).
  void SetBaseTopic(std::string base_topic);
  std::string base_topic() const;

  // Records a received message. An empty payload deletes the topic
  // (kDelete when it was cached, else kIgnored). A message that cannot fit
  // even in an empty cache (topic + value above max_bytes, or max_topics 0)
  // is not cached: kIgnored, and an older cached value of the topic is
  // dropped (counted in `evicted`).
  CacheChange Apply(absl::string_view topic, absl::string_view payload,
                    bool retained, int qos, absl::Time received);

  std::optional<CachedTopic> Get(absl::string_view topic) const;
  // Sorted by topic; `substring` is case-insensitive, empty matches all.
  std::vector<CachedTopic> List(absl::string_view substring = "") const;
  // Sorted by topic; topics matching the MQTT filter (`+`, `#`).
  std::vector<CachedTopic> Matching(absl::string_view filter) const;
  // Cached topics equal to `prefix` or starting with `prefix` + "/".
  std::vector<std::string> TopicsUnder(absl::string_view prefix) const;
  // Removes one topic from the cache (no-op when absent).
  void Erase(absl::string_view topic);
  void Clear();

  // Projections (from `<base>/v1/instances/<id>/status`,
  // `.../devices/<d>/state` and `.../devices/<d>/state/<key>`). Only
  // instance ids matching ^[a-z0-9][a-z0-9_-]{0,62}$ are projected; an
  // instance is listed while any topic under `<base>/v1/instances/<id>/` is
  // cached. `last_seen` is the receive time of its latest message.
  std::optional<InstanceView> Instance(absl::string_view instance_id) const;
  std::vector<InstanceView> Instances() const;  // Sorted by id.

  size_t size() const;
  size_t bytes() const;
  int64_t evicted() const;

 private:
  // An ordered map for prefix scans, an intrusive recency list (least
  // recently updated first) for eviction, and projection indexes that point
  // at cached entries, kept up to date incrementally.
  struct Entry {
    std::string value;
    absl::Time received;
    uint64_t seq = 0;  // Apply order, to tell which values came later.
    bool retained = false;
    int qos = 0;
    const std::string* topic = nullptr;  // The map key.
    Entry* older = nullptr;
    Entry* newer = nullptr;
  };
  struct DeviceIndex {
    const Entry* state = nullptr;
    std::map<std::string, const Entry*, std::less<>> properties;
  };
  struct InstanceIndex {
    const Entry* status = nullptr;
    std::map<std::string, DeviceIndex, std::less<>> devices;
    size_t topics = 0;
    absl::Time last_seen;
  };
  using EntryMap = std::map<std::string, Entry, std::less<>>;

  // Where a topic falls in the projections.
  struct TopicPlace;
  TopicPlace Locate(absl::string_view topic) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Index(EntryMap::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unindex(EntryMap::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseLocked(EntryMap::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LinkNewest(Entry* entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unlink(Entry* entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ClearLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  InstanceView ViewOf(const std::string& id, const InstanceIndex& index) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const CacheLimits limits_;
  mutable absl::Mutex mu_;
  std::string base_topic_ ABSL_GUARDED_BY(mu_);
  std::string instances_prefix_ ABSL_GUARDED_BY(mu_);  // <base>/v1/instances/
  EntryMap entries_ ABSL_GUARDED_BY(mu_);
  Entry* oldest_ ABSL_GUARDED_BY(mu_) = nullptr;
  Entry* newest_ ABSL_GUARDED_BY(mu_) = nullptr;
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t evicted_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::string, InstanceIndex, std::less<>> instances_
      ABSL_GUARDED_BY(mu_);
};

// True when `topic` matches the MQTT topic filter `filter` (`+` one level,
// `#` the rest; `$`-topics don't match a leading wildcard).
bool TopicMatchesFilter(absl::string_view topic, absl::string_view filter);
// INVALID_ARGUMENT-worthy problems, "" when fine: empty, > 65535 bytes, NUL,
// invalid UTF-8, or (`allow_wildcards` false) `+`/`#` anywhere; with
// wildcards allowed, `#` only as the last level and `+`/`#` only as whole
// levels.
std::string TopicProblem(absl::string_view topic, bool allow_wildcards);

}  // namespace iot2mqtt::mqtt_bridge

#endif  // IOT2MQTT_SERVICES_MQTT_BRIDGE_TOPIC_CACHE_H_
