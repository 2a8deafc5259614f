#include "services/mqtt_bridge/subscriber_hub.h"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "catch2/catch.hpp"
#include "services/mqtt_bridge/topic_cache.h"

namespace iot2mqtt::mqtt_bridge {
namespace {

HubEvent Update(const std::string& topic, const std::string& value) {
  HubEvent event;
  event.type = HubEvent::Type::kUpdate;
  event.topic = topic;
  event.value = value;
  return event;
}

HubEvent Snapshot(const std::string& topic, const std::string& value) {
  HubEvent event = Update(topic, value);
  event.type = HubEvent::Type::kSnapshot;
  return event;
}

// Every event waiting, as "type:topic=value" strings.
std::vector<std::string> Drain(Subscription& sub) {
  std::vector<std::string> out;
  while (std::optional<HubEvent> e = sub.Take()) {
    switch (e->type) {
      case HubEvent::Type::kSnapshot:
        out.push_back(absl::StrCat("snapshot:", e->topic, "=", e->value));
        break;
      case HubEvent::Type::kSnapshotEnd:
        out.push_back("end");
        break;
      case HubEvent::Type::kUpdate:
        out.push_back(absl::StrCat("update:", e->topic, "=", e->value));
        break;
      case HubEvent::Type::kDelete:
        out.push_back(absl::StrCat("delete:", e->topic));
        break;
      case HubEvent::Type::kSkipped:
        out.push_back(absl::StrCat("skipped:", e->skipped));
        break;
    }
  }
  return out;
}

using Events = std::vector<std::string>;

TEST_CASE("Subscribers get the snapshot, then matching live events", "[unit]") {
  SubscriberHub hub;
  auto sub = hub.Subscribe({"home/+/state", "alarm/#"},
                           {Snapshot("home/a/state", "1")}, nullptr);
  hub.Publish(Update("home/b/state", "2"));
  hub.Publish(Update("home/b/state/power", "3"));
  hub.Publish(Update("alarm", "4"));
  HubEvent del;
  del.type = HubEvent::Type::kDelete;
  del.topic = "alarm/x";
  hub.Publish(del);
  CHECK(sub->pending() == 5);
  CHECK(Drain(*sub) == Events{"snapshot:home/a/state=1", "end",
                              "update:home/b/state=2", "update:alarm=4",
                              "delete:alarm/x"});
  CHECK(sub->pending() == 0);
  CHECK_FALSE(sub->Take().has_value());
  sub->Cancel();
}

TEST_CASE("Subscribers are independent", "[unit]") {
  SubscriberHub hub(2);
  auto fast = hub.Subscribe({"#"}, {}, nullptr);
  auto slow = hub.Subscribe({"#"}, {}, nullptr);
  auto other = hub.Subscribe({"other"}, {}, nullptr);
  CHECK(hub.subscribers() == 3);
  CHECK(hub.ActiveFilters() == std::vector<std::string>{"#", "#", "other"});
  CHECK(Drain(*fast) == Events{"end"});
  for (int i = 0; i < 4; ++i) {
    hub.Publish(Update("t", std::to_string(i)));
    CHECK(Drain(*fast) == Events{absl::StrCat("update:t=", i)});
  }
  CHECK(fast->dropped() == 0);
  CHECK(Drain(*other) == Events{"end"});
  CHECK(Drain(*slow) == Events{"end", "skipped:2", "update:t=2", "update:t=3"});
  CHECK(slow->dropped() == 2);
  fast->Cancel();
  slow->Cancel();
  other->Cancel();
}

TEST_CASE("Overflow drops the oldest and reports the count once", "[unit]") {
  SubscriberHub hub(3);
  auto sub = hub.Subscribe({"t/#"}, {Snapshot("t/s", "0")}, nullptr);
  for (int i = 1; i <= 7; ++i) hub.Publish(Update("t/x", std::to_string(i)));
  CHECK(sub->pending() == 2 + 1 + 3);
  // The snapshot is kept whole; the skipped marker stands where the dropped
  // live events were.
  CHECK(Drain(*sub) == Events{"snapshot:t/s=0", "end", "skipped:4",
                              "update:t/x=5", "update:t/x=6", "update:t/x=7"});
  CHECK(sub->dropped() == 4);
  hub.Publish(Update("t/x", "8"));
  CHECK(Drain(*sub) == Events{"update:t/x=8"});
  for (int i = 9; i <= 13; ++i) hub.Publish(Update("t/x", std::to_string(i)));
  CHECK(Drain(*sub) ==
        Events{"skipped:2", "update:t/x=11", "update:t/x=12", "update:t/x=13"});
  CHECK(sub->dropped() == 6);
  sub->Cancel();
}

TEST_CASE("Wake runs when a queue goes from empty to non-empty", "[unit]") {
  SubscriberHub hub;
  int wakes = 0;
  auto sub = hub.Subscribe({"t"}, {}, [&] { ++wakes; });
  CHECK(wakes == 1);  // kSnapshotEnd is waiting.
  hub.Publish(Update("t", "1"));
  CHECK(wakes == 1);  // Not drained yet.
  CHECK(Drain(*sub) == Events{"end", "update:t=1"});
  hub.Publish(Update("other", "1"));
  CHECK(wakes == 1);
  hub.Publish(Update("t", "2"));
  CHECK(wakes == 2);
  CHECK(Drain(*sub) == Events{"update:t=2"});
  sub->Cancel();
  hub.Publish(Update("t", "3"));
  CHECK(wakes == 2);
}

TEST_CASE("Wake can take events and cancel from inside", "[unit]") {
  SubscriberHub hub;
  std::shared_ptr<Subscription> sub;
  std::vector<std::string> seen;
  absl::Notification subscribed;
  sub = hub.Subscribe({"t"}, {}, [&] {
    if (!subscribed.HasBeenNotified()) return;  // The initial wake.
    while (std::optional<HubEvent> e = sub->Take()) {
      seen.push_back(e->value);
      if (e->value == "stop") sub->Cancel();
    }
  });
  CHECK(Drain(*sub) == Events{"end"});
  subscribed.Notify();
  hub.Publish(Update("t", "a"));
  hub.Publish(Update("t", "stop"));
  hub.Publish(Update("t", "after"));
  CHECK(seen == std::vector<std::string>{"a", "stop"});
  CHECK(sub->cancelled());
  CHECK(hub.subscribers() == 0);
}

TEST_CASE("Cancel stops delivery and the hub forgets it", "[unit]") {
  SubscriberHub hub;
  auto keep = hub.Subscribe({"t"}, {}, nullptr);
  auto gone = hub.Subscribe({"t", "u"}, {Snapshot("t", "0")}, nullptr);
  hub.Publish(Update("t", "1"));
  gone->Cancel();
  gone->Cancel();  // Idempotent.
  CHECK(gone->pending() == 0);
  hub.Publish(Update("t", "2"));
  CHECK_FALSE(gone->Take().has_value());
  CHECK(hub.subscribers() == 1);
  CHECK(hub.ActiveFilters() == std::vector<std::string>{"t"});
  CHECK(Drain(*keep) == Events{"end", "update:t=1", "update:t=2"});
  keep->Cancel();
  CHECK(hub.subscribers() == 0);
}

TEST_CASE("A subscription may outlive its hub", "[unit]") {
  std::shared_ptr<Subscription> sub;
  {
    SubscriberHub hub;
    sub = hub.Subscribe({"t"}, {}, nullptr);
    hub.Publish(Update("t", "1"));
  }
  CHECK(Drain(*sub) == Events{"end", "update:t=1"});
  sub->Cancel();
}

// A publisher updates a cache, then publishes; subscribers join meanwhile,
// their snapshot read from the cache. Every subscriber must see the value
// sequence without a gap: the snapshot value, then every later value.
TEST_CASE("Snapshot comes before live events under concurrent Publish",
          "[unit]") {
  constexpr int kMessages = 20000;
  SubscriberHub hub(kMessages + 10);
  TopicCache cache;
  cache.Apply("t/x", "0", true, 0, absl::Now());
  std::atomic<bool> started{false};
  std::thread publisher([&] {
    for (int i = 1; i <= kMessages; ++i) {
      std::string value = std::to_string(i);
      cache.Apply("t/x", value, true, 0, absl::Now());
      hub.Publish(Update("t/x", value));
      if (i == 100) started = true;
    }
  });
  while (!started.load()) std::this_thread::yield();

  std::vector<std::shared_ptr<Subscription>> subs;
  for (int i = 0; i < 10; ++i) {
    auto snapshot = [&] {
      std::vector<HubEvent> events;
      for (const CachedTopic& t : cache.Matching("t/#")) {
        events.push_back(Snapshot(t.topic, t.value));
      }
      return events;
    };
    subs.push_back(hub.SubscribeWithSnapshot({"t/#"}, snapshot, nullptr));
  }
  publisher.join();

  for (const auto& sub : subs) {
    std::optional<HubEvent> first = sub->Take();
    REQUIRE(first.has_value());
    REQUIRE(first->type == HubEvent::Type::kSnapshot);
    int expected = 0;
    REQUIRE(absl::SimpleAtoi(first->value, &expected));
    std::optional<HubEvent> end = sub->Take();
    REQUIRE(end.has_value());
    REQUIRE(end->type == HubEvent::Type::kSnapshotEnd);
    int last = expected;
    bool first_live = true;
    while (std::optional<HubEvent> e = sub->Take()) {
      REQUIRE(e->type == HubEvent::Type::kUpdate);
      int value = 0;
      REQUIRE(absl::SimpleAtoi(e->value, &value));
      // At most one value seen both in the snapshot and live.
      REQUIRE((value == last + 1 || (first_live && value == last)));
      first_live = false;
      last = value;
    }
    CHECK(last == kMessages);
    CHECK(sub->dropped() == 0);
    sub->Cancel();
  }
}

TEST_CASE("Plain Subscribe queues the snapshot ahead of live events",
          "[unit]") {
  SubscriberHub hub;
  std::atomic<bool> stop{false};
  std::thread publisher([&] {
    int i = 0;
    while (!stop.load()) hub.Publish(Update("t", std::to_string(++i)));
  });
  std::vector<HubEvent> snapshot;
  for (int i = 0; i < 100; ++i) snapshot.push_back(Snapshot("s", "x"));
  auto sub = hub.Subscribe({"t"}, snapshot, nullptr);
  stop = true;
  publisher.join();
  for (int i = 0; i < 100; ++i) {
    std::optional<HubEvent> e = sub->Take();
    REQUIRE(e.has_value());
    REQUIRE(e->type == HubEvent::Type::kSnapshot);
  }
  std::optional<HubEvent> end = sub->Take();
  REQUIRE(end.has_value());
  CHECK(end->type == HubEvent::Type::kSnapshotEnd);
  while (std::optional<HubEvent> e = sub->Take()) {
    CHECK((e->type == HubEvent::Type::kUpdate ||
           e->type == HubEvent::Type::kSkipped));
  }
  sub->Cancel();
}

}  // namespace
}  // namespace iot2mqtt::mqtt_bridge
