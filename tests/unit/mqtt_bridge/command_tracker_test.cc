#include "services/mqtt_bridge/command_tracker.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "catch2/catch.hpp"

namespace iot2mqtt::mqtt_bridge {
namespace {

constexpr char kTopic[] = "IoT2mqtt/v1/instances/i/devices/d/cmd/response";
constexpr char kOtherTopic[] = "IoT2mqtt/v1/instances/i/devices/e/cmd/response";

// Records the outcomes of one command.
struct Recorder {
  absl::Mutex mu;
  std::vector<CommandOutcome> outcomes;
  absl::Notification done;

  CommandTracker::Done Callback() {
    return [this](CommandOutcome outcome) {
      absl::MutexLock lock(&mu);
      outcomes.push_back(std::move(outcome));
      if (!done.HasBeenNotified()) done.Notify();
    };
  }
  size_t count() {
    absl::MutexLock lock(&mu);
    return outcomes.size();
  }
  CommandOutcome first() {
    absl::MutexLock lock(&mu);
    REQUIRE(!outcomes.empty());
    return outcomes.front();
  }
};

TEST_CASE("A response completes its command once", "[unit]") {
  Recorder rec;
  CommandTracker tracker;
  tracker.Register("c1", kTopic, absl::Seconds(30), rec.Callback());
  CHECK(tracker.pending() == 1);
  const std::string payload =
      R"({"cmd_id": "c1", "status": "success", "timestamp": "x"})";
  CHECK(tracker.OnResponse(kTopic, payload));
  REQUIRE(rec.done.HasBeenNotified());  // Ran on the calling thread.
  CHECK(rec.first().kind == CommandOutcome::Kind::kResponse);
  CHECK(rec.first().response == payload);
  CHECK(rec.first().latency >= absl::ZeroDuration());
  CHECK(tracker.pending() == 0);
  CHECK_FALSE(tracker.OnResponse(kTopic, payload));
  tracker.Cancel("c1");
  CHECK(rec.count() == 1);
}

TEST_CASE("The `id` member is accepted too", "[unit]") {
  Recorder rec;
  CommandTracker tracker;
  tracker.Register("c2", kTopic, absl::Seconds(30), rec.Callback());
  CHECK(tracker.OnResponse(kTopic, R"({"id": "c2", "status": "error"})"));
  CHECK(rec.first().kind == CommandOutcome::Kind::kResponse);
}

TEST_CASE("Wrong ids, topics and payloads are ignored", "[unit]") {
  Recorder rec;
  CommandTracker tracker;
  tracker.Register("c3", kTopic, absl::Seconds(30), rec.Callback());
  CHECK_FALSE(tracker.OnResponse(kTopic, R"({"cmd_id": "other"})"));
  CHECK_FALSE(tracker.OnResponse(kOtherTopic, R"({"cmd_id": "c3"})"));
  CHECK_FALSE(tracker.OnResponse(kTopic, R"({"cmd_id": 3})"));
  CHECK_FALSE(tracker.OnResponse(kTopic, "c3"));
  CHECK_FALSE(tracker.OnResponse(kTopic, R"(["c3"])"));
  CHECK_FALSE(tracker.OnResponse(kTopic, ""));
  CHECK(rec.count() == 0);
  CHECK(tracker.pending() == 1);
  // cmd_id of another command, id of this one: still ours.
  CHECK(tracker.OnResponse(kTopic, R"({"cmd_id": "zz", "id": "c3"})"));
  CHECK(rec.count() == 1);
}

TEST_CASE("An unanswered command times out", "[unit]") {
  Recorder slow;
  Recorder fast;
  CommandTracker tracker;
  tracker.Register("slow", kTopic, absl::Seconds(30), slow.Callback());
  tracker.Register("fast", kTopic, absl::Milliseconds(50), fast.Callback());
  REQUIRE(fast.done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  CommandOutcome outcome = fast.first();
  CHECK(outcome.kind == CommandOutcome::Kind::kTimeout);
  CHECK(outcome.latency >= absl::Milliseconds(50));
  CHECK(outcome.response.empty());
  // Too late now.
  CHECK_FALSE(tracker.OnResponse(kTopic, R"({"cmd_id": "fast"})"));
  CHECK(fast.count() == 1);
  CHECK(slow.count() == 0);
  CHECK(tracker.pending() == 1);
}

TEST_CASE("Timeouts fire in deadline order, whatever the registration order",
          "[unit]") {
  absl::Mutex mu;
  std::vector<std::string> order;
  absl::Notification all;
  CommandTracker tracker;
  auto record = [&](const std::string& name) {
    return [&, name](CommandOutcome outcome) {
      absl::MutexLock lock(&mu);
      order.push_back(outcome.kind == CommandOutcome::Kind::kTimeout
                          ? name
                          : "not a timeout");
      if (order.size() == 3) all.Notify();
    };
  };
  tracker.Register("c", kTopic, absl::Milliseconds(300), record("c"));
  tracker.Register("b", kTopic, absl::Milliseconds(150), record("b"));
  tracker.Register("a", kTopic, absl::Milliseconds(20), record("a"));
  REQUIRE(all.WaitForNotificationWithTimeout(absl::Seconds(10)));
  absl::MutexLock lock(&mu);
  CHECK(order == std::vector<std::string>{"a", "b", "c"});
}

TEST_CASE("Cancel and destruction complete with kCancelled", "[unit]") {
  Recorder cancelled;
  Recorder pending1;
  Recorder pending2;
  {
    CommandTracker tracker;
    tracker.Register("x", kTopic, absl::Seconds(30), cancelled.Callback());
    tracker.Register("y", kTopic, absl::Seconds(30), pending1.Callback());
    tracker.Register("z", kOtherTopic, absl::Hours(1), pending2.Callback());
    tracker.Cancel("x");
    tracker.Cancel("x");
    tracker.Cancel("unknown");
    CHECK(cancelled.count() == 1);
    CHECK(cancelled.first().kind == CommandOutcome::Kind::kCancelled);
    CHECK(tracker.pending() == 2);
    CHECK(pending1.count() == 0);
  }
  CHECK(pending1.count() == 1);
  CHECK(pending1.first().kind == CommandOutcome::Kind::kCancelled);
  CHECK(pending2.count() == 1);
  CHECK(pending2.first().kind == CommandOutcome::Kind::kCancelled);
  CHECK(cancelled.count() == 1);
}

TEST_CASE("Registering a pending id again cancels the earlier one", "[unit]") {
  Recorder first;
  Recorder second;
  CommandTracker tracker;
  tracker.Register("dup", kTopic, absl::Seconds(30), first.Callback());
  tracker.Register("dup", kTopic, absl::Seconds(30), second.Callback());
  CHECK(first.count() == 1);
  CHECK(first.first().kind == CommandOutcome::Kind::kCancelled);
  CHECK(tracker.OnResponse(kTopic, R"({"cmd_id": "dup"})"));
  CHECK(second.first().kind == CommandOutcome::Kind::kResponse);
  CHECK(tracker.pending() == 0);
}

TEST_CASE("A callback may call back into the tracker", "[unit]") {
  Recorder inner;
  absl::Notification outer_done;
  CommandTracker tracker;
  tracker.Register("outer", kTopic, absl::Milliseconds(10),
                   [&](CommandOutcome) {
                     // Runs on the timer thread, outside the lock.
                     tracker.Register("inner", kTopic, absl::Milliseconds(10),
                                      inner.Callback());
                     outer_done.Notify();
                   });
  REQUIRE(outer_done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  REQUIRE(inner.done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  CHECK(inner.first().kind == CommandOutcome::Kind::kTimeout);
}

TEST_CASE("Responses racing the timeout complete each command exactly once",
          "[unit]") {
  constexpr int kCommands = 200;
  std::atomic<int> completions{0};
  std::atomic<int> responses{0};
  {
    CommandTracker tracker;
    for (int i = 0; i < kCommands; ++i) {
      tracker.Register("r" + std::to_string(i), kTopic,
                       absl::Milliseconds(i % 3), [&](CommandOutcome outcome) {
                         ++completions;
                         if (outcome.kind == CommandOutcome::Kind::kResponse) {
                           ++responses;
                         }
                       });
    }
    int answered = 0;
    for (int i = 0; i < kCommands; ++i) {
      if (tracker.OnResponse(kTopic,
                             "{\"cmd_id\": \"r" + std::to_string(i) + "\"}")) {
        ++answered;
      }
    }
    CHECK(answered == responses.load());
  }
  CHECK(completions.load() == kCommands);
}

}  // namespace
}  // namespace iot2mqtt::mqtt_bridge
