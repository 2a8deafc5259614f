#include "services/mqtt_bridge/subscriber_hub.h"

#include <algorithm>
#include <utility>

#include "services/mqtt_bridge/topic_cache.h"

namespace iot2mqtt::mqtt_bridge {

struct Subscription::HubCore {
  absl::Mutex mu;
  std::vector<std::shared_ptr<Subscription>> subscriptions ABSL_GUARDED_BY(mu);
};

// ---------------------------------------------------------------------------
// Subscription

Subscription::Subscription(std::vector<std::string> filters,
                           std::vector<HubEvent> snapshot,
                           std::function<void()> wake, size_t queue_limit,
                           std::weak_ptr<HubCore> hub)
    : filters_(std::move(filters)),
      wake_(std::move(wake)),
      queue_limit_(queue_limit),
      hub_(std::move(hub)) {
  absl::MutexLock lock(&mu_);
  for (HubEvent& event : snapshot) snapshot_.push_back(std::move(event));
  HubEvent end;
  end.type = HubEvent::Type::kSnapshotEnd;
  snapshot_.push_back(std::move(end));
}

bool Subscription::Matches(absl::string_view topic) const {
  for (const std::string& filter : filters_) {
    if (TopicMatchesFilter(topic, filter)) return true;
  }
  return false;
}

size_t Subscription::PendingLocked() const {
  return snapshot_.size() + live_.size() + (skipped_ > 0 ? 1 : 0);
}

bool Subscription::Push(const HubEvent& event) {
  absl::MutexLock lock(&mu_);
  if (cancelled_.load(std::memory_order_relaxed)) return false;
  const bool was_empty = PendingLocked() == 0;
  if (queue_limit_ == 0) {
    ++skipped_;
    ++dropped_;
    return was_empty;
  }
  while (live_.size() >= queue_limit_) {
    live_.pop_front();
    ++skipped_;
    ++dropped_;
  }
  live_.push_back(event);
  return was_empty;
}

void Subscription::CallWake() {
  if (!wake_) return;
  absl::MutexLock lock(&wake_mu_);
  if (cancelled_.load()) return;
  waking_thread_.store(std::this_thread::get_id());
  wake_();
  waking_thread_.store(std::thread::id());
}

std::optional<HubEvent> Subscription::Take() {
  absl::MutexLock lock(&mu_);
  if (!snapshot_.empty()) {
    HubEvent event = std::move(snapshot_.front());
    snapshot_.pop_front();
    return event;
  }
  if (skipped_ > 0) {
    HubEvent event;
    event.type = HubEvent::Type::kSkipped;
    event.skipped = skipped_;
    skipped_ = 0;
    return event;
  }
  if (!live_.empty()) {
    HubEvent event = std::move(live_.front());
    live_.pop_front();
    return event;
  }
  return std::nullopt;
}

size_t Subscription::pending() const {
  absl::MutexLock lock(&mu_);
  return PendingLocked();
}

int64_t Subscription::dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

bool Subscription::cancelled() const { return cancelled_.load(); }

void Subscription::Cancel() {
  if (cancelled_.exchange(true)) return;
  {
    absl::MutexLock lock(&mu_);
    snapshot_.clear();
    live_.clear();
    skipped_ = 0;
  }
  if (std::shared_ptr<HubCore> core = hub_.lock()) {
    absl::MutexLock lock(&core->mu);
    auto& subs = core->subscriptions;
    subs.erase(std::remove_if(subs.begin(), subs.end(),
                              [this](const std::shared_ptr<Subscription>& s) {
                                return s.get() == this;
                              }),
               subs.end());
  }
  // Wait for a wake in progress on another thread.
  if (waking_thread_.load() != std::this_thread::get_id()) {
    absl::MutexLock lock(&wake_mu_);
  }
}

// ---------------------------------------------------------------------------
// SubscriberHub

SubscriberHub::SubscriberHub(size_t queue_limit)
    : queue_limit_(queue_limit), core_(std::make_shared<HubCore>()) {}

std::shared_ptr<Subscription> SubscriberHub::Subscribe(
    std::vector<std::string> filters, std::vector<HubEvent> snapshot,
    Wake wake) {
  std::shared_ptr<Subscription> subscription(
      new Subscription(std::move(filters), std::move(snapshot), std::move(wake),
                       queue_limit_, core_));
  {
    absl::MutexLock lock(&core_->mu);
    core_->subscriptions.push_back(subscription);
  }
  subscription->CallWake();
  return subscription;
}

std::shared_ptr<Subscription> SubscriberHub::SubscribeWithSnapshot(
    std::vector<std::string> filters, const SnapshotFn& snapshot, Wake wake) {
  std::shared_ptr<Subscription> subscription;
  {
    absl::MutexLock lock(&core_->mu);
    subscription.reset(new Subscription(
        std::move(filters), snapshot ? snapshot() : std::vector<HubEvent>(),
        std::move(wake), queue_limit_, core_));
    core_->subscriptions.push_back(subscription);
  }
  subscription->CallWake();
  return subscription;
}

void SubscriberHub::Publish(const HubEvent& event) {
  // Allocates only when some queue went from empty to non-empty.
  std::vector<std::shared_ptr<Subscription>> to_wake;
  {
    absl::ReaderMutexLock lock(&core_->mu);
    for (const std::shared_ptr<Subscription>& sub : core_->subscriptions) {
      if (sub->cancelled_.load(std::memory_order_relaxed)) continue;
      if (!sub->Matches(event.topic)) continue;
      if (sub->Push(event)) to_wake.push_back(sub);
    }
  }
  for (const std::shared_ptr<Subscription>& sub : to_wake) sub->CallWake();
}

size_t SubscriberHub::subscribers() const {
  absl::ReaderMutexLock lock(&core_->mu);
  return core_->subscriptions.size();
}

std::vector<std::string> SubscriberHub::ActiveFilters() const {
  std::vector<std::string> out;
  absl::ReaderMutexLock lock(&core_->mu);
  for (const std::shared_ptr<Subscription>& sub : core_->subscriptions) {
    out.insert(out.end(), sub->filters().begin(), sub->filters().end());
  }
  return out;
}

}  // namespace iot2mqtt::mqtt_bridge
