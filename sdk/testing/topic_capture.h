#ifndef IOT2MQTT_SDK_TESTING_TOPIC_CAPTURE_H_
#define IOT2MQTT_SDK_TESTING_TOPIC_CAPTURE_H_

// Records what a broker delivers on a topic filter, for tests that watch a
// running connector from the outside (as the platform would), and sends
// requests to it.
//
//   auto capture = sdk::testing::TopicCapture::Start(
//       broker->host(), broker->port(), topics.All());
//   auto online = (*capture)->WaitFor(topics.Status(),
//       [](const auto& m) { return m.payload == "online" && m.retain; });
//   auto response = sdk::testing::SendCommandAndAwait(
//       **capture, topics, "light1", R"({"power":true})");
//
// The capture uses its own libmosquitto client (independent of the SDK's
// MosquittoClient), reconnects by itself every second when the broker goes
// away, and subscribes again each time. Predicates run under the capture's
// lock, possibly on its network thread: keep them pure (no test assertions
// inside).

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "iot2mqtt/sdk/contract.h"

struct mosquitto;
struct mosquitto_message;

namespace iot2mqtt::sdk::testing {

struct CapturedMessage {
  std::string topic;
  std::string payload;
  int qos = 0;
  bool retain = false;  // Set for retained messages replayed on subscribe.
  absl::Time received;
  size_t index = 0;  // Position in the capture (0, 1, ...).
};

class TopicCapture {
 public:
  using Predicate = std::function<bool(const CapturedMessage&)>;

  // Connects (clean session, a unique client id), subscribes to `filter` at
  // `qos` and waits for the broker's SUBACK, so that retained messages
  // existing now are already on their way when this returns.
  static absl::StatusOr<std::unique_ptr<TopicCapture>> Start(
      const std::string& host, int port, const std::string& filter, int qos = 1,
      absl::Duration timeout = absl::Seconds(5));
  ~TopicCapture();
  TopicCapture(const TopicCapture&) = delete;
  TopicCapture& operator=(const TopicCapture&) = delete;

  // The first message with index >= `since` on a topic matching
  // `topic_filter` (MQTT wildcards allowed) for which `predicate` (nullptr:
  // any) holds, waiting up to `timeout`; nullopt when none came.
  std::optional<CapturedMessage> WaitFor(
      const std::string& topic_filter, const Predicate& predicate = nullptr,
      absl::Duration timeout = absl::Seconds(5), size_t since = 0) const;
  // Whether a matching message arrives within `window` (for asserting that
  // something does NOT happen; the one place a test waits a fixed time).
  bool Arrives(const std::string& topic_filter, const Predicate& predicate,
               absl::Duration window, size_t since = 0) const {
    return WaitFor(topic_filter, predicate, window, since).has_value();
  }

  // Everything captured so far (optionally only topics matching a filter).
  std::vector<CapturedMessage> Messages(
      const std::string& topic_filter = "#") const;
  // Number of messages captured so far: pass it as `since` to wait for
  // messages that arrive after this point.
  size_t Mark() const;
  bool connected() const;

  // Publishes as this client; for QoS > 0 waits up to 5 s for the broker's
  // acknowledgement.
  absl::Status Publish(const std::string& topic, const std::string& payload,
                       int qos = 1, bool retain = false);

 private:
  TopicCapture(std::string filter, int qos)
      : filter_(std::move(filter)), qos_(qos) {}
  static void OnConnect(struct mosquitto* mosq, void* self, int rc);
  static void OnSubscribe(struct mosquitto* mosq, void* self, int mid,
                          int count, const int* granted);
  static void OnMessage(struct mosquitto* mosq, void* self,
                        const struct mosquitto_message* message);
  static void OnPublish(struct mosquitto* mosq, void* self, int mid);
  static void OnDisconnect(struct mosquitto* mosq, void* self, int rc);

  const std::string filter_;
  const int qos_;
  struct mosquitto* mosq_ = nullptr;
  mutable absl::Mutex mu_;
  std::vector<CapturedMessage> messages_ ABSL_GUARDED_BY(mu_);
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  int subscriptions_acked_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<int> acked_mids_ ABSL_GUARDED_BY(mu_);
};

// Publishes a command on devices/{device_id}/cmd with a fresh id, the
// current UTC timestamp, `values_json` (a JSON object) and a `timeout`, then
// waits for the cmd/response carrying that id. `capture` must receive the
// response topic (e.g. a capture of topics.All()). DEADLINE_EXCEEDED when no
// response came in time.
absl::StatusOr<CommandResponse> SendCommandAndAwait(
    TopicCapture& capture, const Topics& topics, const std::string& device_id,
    const std::string& values_json, absl::Duration timeout = absl::Seconds(5));

// A fresh request id ("t-<n>-<random>").
std::string NewRequestId();

}  // namespace iot2mqtt::sdk::testing

#endif  // IOT2MQTT_SDK_TESTING_TOPIC_CAPTURE_H_
