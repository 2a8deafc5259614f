#ifndef IOT2MQTT_SERVICES_MQTT_BRIDGE_COMMAND_TRACKER_H_
#define IOT2MQTT_SERVICES_MQTT_BRIDGE_COMMAND_TRACKER_H_

// Commands waiting for their `cmd/response`. Register() before publishing;
// OnResponse() with every message received on a `.../cmd/response` topic;
// exactly one of the completion's outcomes happens: the response (its
// payload) or the timeout (after `timeout`, from the tracker's own timer
// thread), or cancellation (Cancel() or destruction: kCancelled).

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace iot2mqtt::mqtt_bridge {

struct CommandOutcome {
  enum class Kind { kResponse, kTimeout, kCancelled };
  Kind kind = Kind::kTimeout;
  std::string response;    // The `cmd/response` payload (kResponse).
  absl::Duration latency;  // Register() to the outcome.
};

class CommandTracker {
 public:
  using Done = std::function<void(CommandOutcome)>;

  CommandTracker();
  ~CommandTracker();  // Completes everything pending with kCancelled.

  // Waits for a response whose `cmd_id` (or `id`) equals `command_id` on
  // `response_topic`. `done` runs once, never under the tracker's lock.
  // Registering an id that is still pending cancels the earlier one.
  void Register(const std::string& command_id,
                const std::string& response_topic, absl::Duration timeout,
                Done done);
  // A message on a response topic; true when it completed a command.
  bool OnResponse(absl::string_view topic, absl::string_view payload);
  void Cancel(const std::string& command_id);
  size_t pending() const;

  CommandTracker(const CommandTracker&) = delete;
  CommandTracker& operator=(const CommandTracker&) = delete;

 private:
  struct Pending {
    std::string response_topic;
    absl::Time registered;
    absl::Time deadline;
    Done done;
  };

  void TimerLoop();
  // Removes `command_id` (when pending) and returns its completion.
  std::optional<Pending> TakeLocked(const std::string& command_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void Complete(Pending pending, CommandOutcome::Kind kind,
                       std::string response);

  mutable absl::Mutex mu_;
  absl::CondVar wakeup_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, Pending, std::less<>> pending_ ABSL_GUARDED_BY(mu_);
  std::set<std::pair<absl::Time, std::string>> deadlines_ ABSL_GUARDED_BY(mu_);
  std::thread timer_;
};

}  // namespace iot2mqtt::mqtt_bridge

#endif  // IOT2MQTT_SERVICES_MQTT_BRIDGE_COMMAND_TRACKER_H_
