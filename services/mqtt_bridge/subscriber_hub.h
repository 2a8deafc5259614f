#ifndef IOT2MQTT_SERVICES_MQTT_BRIDGE_SUBSCRIBER_HUB_H_
#define IOT2MQTT_SERVICES_MQTT_BRIDGE_SUBSCRIBER_HUB_H_

// Fan-out of topic events to independent subscribers. Each subscriber has
// its own filters and a bounded queue; Publish() never blocks on a
// subscriber: when a queue is full the oldest queued events are dropped and
// the next event the subscriber takes is a SKIPPED marker with the count.
// Pure logic, thread-safe.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace iot2mqtt::mqtt_bridge {

struct HubEvent {
  enum class Type { kSnapshot, kSnapshotEnd, kUpdate, kDelete, kSkipped };
  Type type = Type::kUpdate;
  std::string topic;
  std::string value;  // JSON text (kSnapshot, kUpdate).
  absl::Time received;
  bool retained = false;
  int qos = 0;
  int64_t skipped = 0;  // kSkipped.
};

class SubscriberHub;

class Subscription {
 public:
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  // Takes the next event, if any (never blocks). After the subscriber fell
  // behind, the first event taken is kSkipped. Order: the snapshot, then
  // kSnapshotEnd, then live events. The snapshot is never dropped; live
  // events beyond the hub's queue_limit drop the oldest live ones, and the
  // kSkipped marker (with the count) comes where they were: before the
  // remaining live events, after the snapshot.
  std::optional<HubEvent> Take();
  // Events waiting.
  size_t pending() const;
  const std::vector<std::string>& filters() const { return filters_; }
  // Stops delivery; the hub forgets the subscription; queued events are
  // discarded. Idempotent. When it returns, no Wake of this subscription is
  // running or will run (unless Cancel() is called from within that Wake).
  void Cancel();
  bool cancelled() const;
  // Total events dropped for this subscriber.
  int64_t dropped() const;

  // Created by the hub.
 private:
  friend class SubscriberHub;
  struct HubCore;

  Subscription(std::vector<std::string> filters, std::vector<HubEvent> snapshot,
               std::function<void()> wake, size_t queue_limit,
               std::weak_ptr<HubCore> hub);
  bool Matches(absl::string_view topic) const;
  // Queues a live event; true when the queue went from empty to non-empty.
  bool Push(const HubEvent& event);
  // Runs the wake callback (never under a lock).
  void CallWake();
  size_t PendingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::vector<std::string> filters_;
  const std::function<void()> wake_;
  const size_t queue_limit_;
  const std::weak_ptr<HubCore> hub_;

  mutable absl::Mutex mu_;
  std::deque<HubEvent> snapshot_ ABSL_GUARDED_BY(mu_);
  std::deque<HubEvent> live_ ABSL_GUARDED_BY(mu_);
  int64_t skipped_ ABSL_GUARDED_BY(mu_) = 0;  // Not yet reported.
  int64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<bool> cancelled_{false};

  // Held while the wake callback runs, so Cancel() can wait for it.
  absl::Mutex wake_mu_;
  std::atomic<std::thread::id> waking_thread_{};
};

class SubscriberHub {
 public:
  // Called (outside the hub's lock, on the publishing thread) when a
  // subscription's queue goes from empty to non-empty: the owner should
  // start draining it with Take().
  using Wake = std::function<void()>;

  explicit SubscriberHub(size_t queue_limit = 4096);

  // `filters` must be valid (TopicProblem with wildcards allowed). The
  // snapshot events (already matched by the caller) are queued first,
  // followed by kSnapshotEnd, atomically with respect to Publish(): no live
  // event is lost or delivered before them.
  // `wake` runs once before Subscribe returns (kSnapshotEnd is queued).
  std::shared_ptr<Subscription> Subscribe(std::vector<std::string> filters,
                                          std::vector<HubEvent> snapshot,
                                          Wake wake);
  // Same, with the snapshot taken by `snapshot` while Publish() is held
  // off: a caller that updates its cache before Publish() and reads it here
  // loses no event (at worst one arrives both in the snapshot and live).
  using SnapshotFn = std::function<std::vector<HubEvent>()>;
  std::shared_ptr<Subscription> SubscribeWithSnapshot(
      std::vector<std::string> filters, const SnapshotFn& snapshot, Wake wake);

  // Delivers to every subscription whose filters match `event.topic`.
  void Publish(const HubEvent& event);

  size_t subscribers() const;
  // Every filter of every live subscription (with repeats), for
  // broker-subscription bookkeeping.
  std::vector<std::string> ActiveFilters() const;

 private:
  using HubCore = Subscription::HubCore;
  const size_t queue_limit_;
  std::shared_ptr<HubCore> core_;
};

}  // namespace iot2mqtt::mqtt_bridge

#endif  // IOT2MQTT_SERVICES_MQTT_BRIDGE_SUBSCRIBER_HUB_H_
