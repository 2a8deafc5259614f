#ifndef IOT2MQTT_SDK_CONFORMANCE_SESSION_H_
#define IOT2MQTT_SDK_CONFORMANCE_SESSION_H_

// What the checks share: the checker's connection (subscribed to every
// outbound topic of the instance from the start), the device under test and
// helpers to send a request and wait for its answer with a deadline.

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "rapidjson/document.h"
#include "sdk/conformance/mqtt_probe.h"
#include "sdk/conformance/options.h"

namespace iot2mqtt::conformance {

class Session {
 public:
  // Connects and subscribes; the retained messages of the instance are in
  // the probe's log when this returns.
  static absl::StatusOr<std::unique_ptr<Session>> Open(CheckerOptions options);

  const CheckerOptions& options() const { return options_; }
  MqttProbe& probe() { return *probe_; }
  absl::Time Deadline() const { return absl::Now() + options_.timeout; }
  // `{base}/v1/instances/{i}/<suffix>`.
  std::string Topic(absl::string_view suffix) const;
  // `{base}/v1/instances/{i}/devices/{d}/<suffix>` for the device under test.
  std::string DeviceTopic(absl::string_view suffix) const;
  // A fresh id for commands and requests: `conformance-<kind>-<hex>`.
  std::string NewId(absl::string_view kind);
  // Eight random hex digits.
  std::string RandomHex();

  // Publishes at QoS 1, not retained, and waits for the broker's PUBACK.
  absl::Status Send(const std::string& topic, absl::string_view payload);
  // What a new subscriber to `topic` gets as retained message.
  absl::StatusOr<std::optional<Message>> ReadRetained(const std::string& topic);

  // The device under test: --device, else among the retained states the
  // first device with a key like `power` (see kControllableKeys), else the
  // first retained state, else the first state message that arrives.
  // Resolved once; the error says why there is none.
  absl::Status ResolveDevice();
  const std::string& device() const { return device_; }
  // The first state message of the device (as resolved).
  const Message& first_state() const { return first_state_; }
  // The `state` object of the newest valid state message of the device.
  absl::Status LatestState(rapidjson::Document* state);
  // The `values` object the command checks send (JSON text), and the key it
  // sets.
  absl::StatusOr<std::string> CommandValues();

  // {"id"?, "timestamp", "values"} as JSON text.
  static std::string Command(absl::string_view id, absl::string_view timestamp,
                             absl::string_view values_json);

  // Waits for the first message at index >= `from` on `topic` whose payload
  // is a JSON object with member `id_member` == `id`. On timeout the error
  // names what else came on the topic.
  absl::StatusOr<Message> AwaitReply(size_t from, const std::string& topic,
                                     absl::string_view id_member,
                                     absl::string_view id);
  // Waits for the first message at index >= `from` satisfying `accept`.
  std::optional<Message> Await(
      size_t from, const std::function<bool(const Message&)>& accept,
      absl::Time deadline);

  // Sends a command with `id` to `devices/{device}/cmd` and waits for the
  // response; `*sent` gets the time it was sent, `*from` (when not null)
  // the index of the first message after it was sent.
  absl::StatusOr<Message> CommandRoundTrip(absl::string_view device,
                                           absl::string_view payload,
                                           absl::string_view id,
                                           absl::Time* sent,
                                           size_t* from = nullptr);

  // Whether the connector still looks alive: no `offline` on status since
  // message `from`, the process (with --pid/--kill-pid) still runs.
  absl::Status StillAlive(size_t from);
  // Pid the checker knows the connector by (0 when none).
  pid_t pid() const;

 private:
  explicit Session(CheckerOptions options);

  CheckerOptions options_;
  std::string prefix_;
  std::string run_id_;
  std::unique_ptr<MqttProbe> probe_;
  absl::BitGen bitgen_;
  int retained_reads_ = 0;

  bool device_resolved_ = false;
  absl::Status device_status_;
  std::string device_;
  Message first_state_;
};

// Whether `pid` has exited, waiting until `deadline` (event-driven via a
// pidfd). NOT_FOUND when there is no such process, UNIMPLEMENTED without
// pidfd support.
absl::StatusOr<bool> WaitForExit(pid_t pid, absl::Time deadline);
// Seconds the process has been running, from /proc.
absl::StatusOr<int64_t> ProcessAgeSeconds(pid_t pid);

}  // namespace iot2mqtt::conformance

#endif  // IOT2MQTT_SDK_CONFORMANCE_SESSION_H_
