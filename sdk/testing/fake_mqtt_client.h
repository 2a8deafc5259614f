#ifndef IOT2MQTT_SDK_TESTING_FAKE_MQTT_CLIENT_H_
#define IOT2MQTT_SDK_TESTING_FAKE_MQTT_CLIENT_H_

// An in-memory MqttClient for unit tests of a Connector: no broker, no
// network. The test drives the connection and the inbound messages and
// inspects what the connector published.
//
//   sdk::testing::FakeMqttClient client;
//   options.client = &client;
//   std::thread run([&] { connector.Run(options); });
//   client.WaitConnectedHandler();  // Start() connects by default
//   client.Deliver(topics.Command("light1"), R"({"id":"c1","values":{...}})");
//   auto response = client.WaitFor(topics.CommandResponse("light1"));
//
// Thread-safe. Handlers run on the thread that calls Connect(), Deliver()...
// (the test thread), as the real client runs them on its network thread.

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "iot2mqtt/sdk/mqtt_client.h"

namespace iot2mqtt::sdk::testing {

class FakeMqttClient final : public MqttClient {
 public:
  struct Published {
    MqttMessage message;
    MessageClass cls = MessageClass::kNormal;
    bool while_connected = true;
  };
  using Predicate = std::function<bool(const MqttMessage&)>;

  // With `connect_on_start`, Start() behaves like a broker that accepts at
  // once: Connect() runs inside it.
  explicit FakeMqttClient(bool connect_on_start = true)
      : connect_on_start_(connect_on_start) {}

  void SetWill(MqttMessage will) override;
  void SetBirth(MqttMessage birth) override;
  void SetMessageHandler(MessageHandler handler) override;
  void SetConnectionHandler(ConnectionHandler handler) override;
  absl::Status Subscribe(const std::string& filter, int qos) override;
  absl::Status Start() override;
  absl::Status Publish(MqttMessage message, MessageClass cls) override;
  bool IsConnected() const override;
  void Stop(std::optional<MqttMessage> last, absl::Duration timeout) override;

  // --- Test controls ---
  // A (re)connect: the birth message is recorded, then the connection
  // handler runs (the connector re-publishes its known state).
  void Connect();
  // A lost connection: publishes are recorded with while_connected=false.
  void Disconnect();
  // An inbound message, as if the broker delivered it.
  void Deliver(const std::string& topic, const std::string& payload,
               bool retain = false);
  void DeliverOversized(const std::string& topic, size_t bytes);

  std::vector<Published> published() const;
  // Messages published to exactly `topic`, oldest first.
  std::vector<MqttMessage> PublishedTo(const std::string& topic) const;
  // Number of messages published so far (use as `since`).
  size_t Mark() const;
  // The first message from index `since` on published to a topic matching
  // `filter` (MQTT wildcards) that satisfies `predicate`.
  std::optional<MqttMessage> WaitFor(const std::string& filter,
                                     const Predicate& predicate = nullptr,
                                     absl::Duration timeout = absl::Seconds(5),
                                     size_t since = 0) const;
  // Whether `count` messages from index `since` on match, within `timeout`.
  bool WaitForCount(const std::string& filter, size_t count,
                    absl::Duration timeout = absl::Seconds(5),
                    size_t since = 0) const;
  std::optional<MqttMessage> will() const;
  std::optional<MqttMessage> birth() const;
  std::vector<std::pair<std::string, int>> subscriptions() const;
  bool started() const;
  bool stopped() const;
  std::optional<MqttMessage> last_message() const;  // Given to Stop().

 private:
  const bool connect_on_start_;
  mutable absl::Mutex mu_;
  std::optional<MqttMessage> will_ ABSL_GUARDED_BY(mu_);
  std::optional<MqttMessage> birth_ ABSL_GUARDED_BY(mu_);
  std::optional<MqttMessage> last_ ABSL_GUARDED_BY(mu_);
  MessageHandler on_message_ ABSL_GUARDED_BY(mu_);
  ConnectionHandler on_connection_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<std::string, int>> subscriptions_ ABSL_GUARDED_BY(mu_);
  std::vector<Published> published_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
};

// MQTT topic filter matching ('+' and '#').
bool TopicMatches(const std::string& filter, const std::string& topic);

}  // namespace iot2mqtt::sdk::testing

#endif  // IOT2MQTT_SDK_TESTING_FAKE_MQTT_CLIENT_H_
