#ifndef IOT2MQTT_SDK_CONFORMANCE_MQTT_PROBE_H_
#define IOT2MQTT_SDK_CONFORMANCE_MQTT_PROBE_H_

// The checker's own MQTT client, written directly on libmosquitto (not on the
// SDK: the checker is an independent implementation of the contract). It
// records every message it receives, in order, and lets a check wait for the
// next one with a deadline, so no check ever sleeps.

#include <cstddef>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

struct mosquitto;
struct mosquitto_message;

namespace iot2mqtt::conformance {

struct Message {
  std::string topic;
  std::string payload;
  int qos = 0;  // As delivered; subscriptions are QoS 2, so the sender's QoS.
  bool retain = false;  // Set only for retained messages sent on subscribe.
  absl::Time received;
};

class MqttProbe {
 public:
  // Connects (MQTT 3.1.1, clean session) and waits for CONNACK.
  static absl::StatusOr<std::unique_ptr<MqttProbe>> Connect(
      const std::string& host, int port, const std::string& client_id,
      absl::Time deadline);
  ~MqttProbe();
  MqttProbe(const MqttProbe&) = delete;
  MqttProbe& operator=(const MqttProbe&) = delete;

  // Subscribes to `filters` at QoS 2 and returns once the broker has
  // delivered every retained message matching them (a fence message on a
  // private topic follows them through the same queue).
  absl::Status Subscribe(const std::vector<std::string>& filters,
                         absl::Time deadline);
  // Publishes and, at QoS 1 or 2, waits for the broker's acknowledgement.
  absl::Status Publish(const std::string& topic, absl::string_view payload,
                       int qos, bool retain, absl::Time deadline);
  // Returns once every message the broker queued for this client before
  // this call has been received.
  absl::Status Fence(absl::Time deadline);

  // Index of the next message to arrive.
  size_t Mark();
  // The message at `*cursor` (waiting for it until `deadline`), advancing
  // the cursor; nullopt at the deadline.
  std::optional<Message> Next(size_t* cursor, absl::Time deadline);
  // Messages from index `from` on, without waiting.
  std::vector<Message> Since(size_t from);
  bool connected();

  const std::string& client_id() const { return client_id_; }

 private:
  MqttProbe(std::string client_id, std::string fence_topic);
  absl::Status WaitAcked(int mid, absl::Time deadline, absl::string_view what);

  static void OnConnect(mosquitto*, void* self, int rc);
  static void OnDisconnect(mosquitto*, void* self, int rc);
  static void OnMessage(mosquitto*, void* self, const mosquitto_message* m);
  static void OnAck(mosquitto*, void* self, int mid);
  static void OnSubscribe(mosquitto*, void* self, int mid, int count,
                          const int* granted);

  const std::string client_id_;
  const std::string fence_topic_;
  mosquitto* mosq_ = nullptr;
  bool loop_started_ = false;
  int fence_count_ = 0;

  absl::Mutex mu_;
  absl::CondVar changed_;
  int connack_rc_ ABSL_GUARDED_BY(mu_) = -1;  // -1: none yet.
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  std::set<int> acked_ ABSL_GUARDED_BY(mu_);
  std::vector<Message> messages_ ABSL_GUARDED_BY(mu_);
};

// Connects a fresh client, subscribes to `topic` and returns the retained
// message the broker holds for it (nullopt when none), so a check sees what a
// new subscriber would see.
absl::StatusOr<std::optional<Message>> ReadRetained(
    const std::string& host, int port, const std::string& client_id,
    const std::string& topic, absl::Time deadline);

}  // namespace iot2mqtt::conformance

#endif  // IOT2MQTT_SDK_CONFORMANCE_MQTT_PROBE_H_
