#ifndef IOT2MQTT_SDK_MQTT_CLIENT_H_
#define IOT2MQTT_SDK_MQTT_CLIENT_H_

// The MQTT connection of a connector: the `MqttClient` role and its
// libmosquitto implementation, `MosquittoClient`.
//
// Connection life cycle (contract "Connection"): the last will is set before
// every connection attempt; after every successful (re)connect the client
// subscribes (again) to every filter given to Subscribe(), publishes the
// birth message (`status` <- `online`), sends what waited in the outbound
// queue (oldest first), and only then calls the connection handler, where
// the Connector re-publishes the retained state of every known device. A
// lost connection is retried with capped exponential backoff and jitter
// (reconnect_initial doubling to reconnect_max). Stop() publishes a final
// message (`offline`), waits for the broker's acknowledgement, and
// disconnects cleanly.
//
// Threading (MosquittoClient): one network thread per client runs
// libmosquitto's loop and the reconnect backoff; Publish() and Subscribe()
// may be called from any thread. The message and connection handlers run on
// the network thread and must return quickly (hand work to another thread).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "iot2mqtt/sdk/env.h"
#include "iot2mqtt/sdk/outbound_queue.h"

struct mosquitto;
struct mosquitto_message;

namespace iot2mqtt::sdk {

// Broker settings, from the environment (the process environment wins over
// the .env file; see ReadMqttSettings).
struct MqttSettings {
  std::string host = "localhost";          // MQTT_HOST
  int port = 1883;                         // MQTT_PORT
  std::string username;                    // MQTT_USERNAME (optional)
  std::string password;                    // MQTT_PASSWORD; never logged
  std::string client_prefix = "iot2mqtt";  // MQTT_CLIENT_PREFIX
  int qos = 1;                             // MQTT_QOS: state and subscriptions
  bool retain = true;                      // MQTT_RETAIN: state topics
  int keepalive_seconds = 60;              // MQTT_KEEPALIVE
  std::string base_topic = "IoT2mqtt";     // MQTT_BASE_TOPIC

  // Tuning; not read from the environment.
  absl::Duration reconnect_initial = absl::Milliseconds(500);
  absl::Duration reconnect_max = absl::Seconds(30);
  // A connection attempt without CONNACK by then is abandoned.
  absl::Duration connect_timeout = absl::Seconds(10);
  OutboundQueue::Limits queue_limits;
  // QoS>0 messages in flight at once (MQTT "receive maximum" of the broker).
  int max_inflight = 100;
  // Inbound payloads above this are delivered without their bytes (see
  // InboundMessage::oversized). 0 means no limit.
  size_t max_inbound_payload = 0;
};

// Reads the MQTT_* variables through `env`, recording every problem in it
// (port, QoS, keepalive ranges, a base topic the contract forbids).
MqttSettings ReadMqttSettings(EnvReader& env);
// `<prefix>_<instance>`.
std::string MqttClientId(const MqttSettings& settings,
                         absl::string_view instance);

// A received message. When the payload was larger than
// MqttSettings::max_inbound_payload, `payload` is empty, `oversized` is true
// and `payload_bytes` tells its size.
struct InboundMessage {
  std::string topic;
  std::string payload;
  int qos = 0;
  bool retain = false;
  size_t payload_bytes = 0;
  bool oversized = false;
};

class MqttClient {
 public:
  using MessageHandler = std::function<void(InboundMessage message)>;
  using ConnectionHandler = std::function<void(bool connected)>;

  virtual ~MqttClient() = default;

  // Before Start().
  virtual void SetWill(MqttMessage will) = 0;
  virtual void SetBirth(MqttMessage birth) = 0;
  virtual void SetMessageHandler(MessageHandler handler) = 0;
  virtual void SetConnectionHandler(ConnectionHandler handler) = 0;

  // Remembered and (re)sent on every connect; sent at once when connected.
  // INVALID_ARGUMENT for an invalid filter or QoS.
  virtual absl::Status Subscribe(const std::string& filter, int qos) = 0;
  // Starts connecting in the background; returns at once.
  virtual absl::Status Start() = 0;
  // Sends now when connected, else queues (bounded; see OutboundQueue).
  // INVALID_ARGUMENT for an invalid topic or QoS, FAILED_PRECONDITION after
  // Stop().
  virtual absl::Status Publish(MqttMessage message,
                               MessageClass cls = MessageClass::kNormal) = 0;
  virtual bool IsConnected() const = 0;
  // Publishes `last` when connected and waits up to `timeout` for the
  // broker to acknowledge it (QoS>0) or for it to be written (QoS 0), then
  // disconnects cleanly (the broker does not send the will) and stops.
  // Idempotent.
  virtual void Stop(std::optional<MqttMessage> last,
                    absl::Duration timeout) = 0;
};

// libmosquitto status code -> absl::Status with mosquitto_strerror() text
// (and errno's text for MOSQ_ERR_ERRNO). `context` prefixes the message.
absl::Status FromMosquitto(int rc, absl::string_view context = "");

class MosquittoClient final : public MqttClient {
 public:
  MosquittoClient(MqttSettings settings, std::string client_id);
  ~MosquittoClient() override;
  MosquittoClient(const MosquittoClient&) = delete;
  MosquittoClient& operator=(const MosquittoClient&) = delete;

  void SetWill(MqttMessage will) override;
  void SetBirth(MqttMessage birth) override;
  void SetMessageHandler(MessageHandler handler) override;
  void SetConnectionHandler(ConnectionHandler handler) override;
  absl::Status Subscribe(const std::string& filter, int qos) override;
  absl::Status Start() override;
  absl::Status Publish(MqttMessage message,
                       MessageClass cls = MessageClass::kNormal) override;
  bool IsConnected() const override;
  void Stop(std::optional<MqttMessage> last, absl::Duration timeout) override;

  // Forgets `filter` (every Subscribe() of it) and, when connected, sends
  // UNSUBSCRIBE for it. NOT_FOUND when it was not subscribed.
  absl::Status Unsubscribe(const std::string& filter);

  // The connection as an operator sees it.
  struct ConnectionInfo {
    bool connected = false;
    // When `connected` last changed (Start() for a client that never
    // connected; the construction time before Start()).
    absl::Time since;
    // The last connection problem, e.g. "Connection Refused: not
    // authorised." (the broker's CONNACK reason) or "Cannot connect to
    // host:port: Connection refused" (the socket error); empty after a
    // successful connect until the connection is lost. Never a credential.
    std::string last_error;
  };
  ConnectionInfo connection_info() const;

  struct Stats {
    int64_t connects = 0;  // Successful connections so far.
    int64_t dropped = 0;   // Messages dropped from the outbound queue.
    size_t queued = 0;     // Messages waiting for a connection now.
    size_t inflight = 0;   // QoS>0 messages not acknowledged yet.
  };
  Stats stats() const;
  const std::string& client_id() const { return client_id_; }

 private:
  struct Inflight {
    int64_t seq;
    OutboundMessage item;
  };

  static void OnConnectThunk(struct mosquitto* mosq, void* self, int rc);
  static void OnPublishThunk(struct mosquitto* mosq, void* self, int mid);
  static void OnMessageThunk(struct mosquitto* mosq, void* self,
                             const struct mosquitto_message* message);

  void Run();
  struct mosquitto* NewHandle();
  void HandleConnect(int rc);
  void HandlePublished(int mid);
  void HandleMessage(const struct mosquitto_message* message);
  // After a connection ended: unacknowledged messages back to the queue.
  void HandleConnectionLost(int rc, bool log);
  absl::Status PublishLocked(OutboundMessage item)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void QueueLocked(OutboundMessage item) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void LogDrops(const std::vector<OutboundMessage>& dropped);

  const MqttSettings settings_;
  const std::string client_id_;

  // Set before Start(), read-only afterwards.
  std::optional<MqttMessage> will_;
  std::optional<MqttMessage> birth_;
  MessageHandler on_message_;
  ConnectionHandler on_connection_;

  mutable absl::Mutex mu_;
  struct mosquitto* mosq_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;   // Stop() began.
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;  // The thread must exit.
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool disconnect_sent_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time since_ ABSL_GUARDED_BY(mu_);
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  // The broker refused the current attempt (its reason is in last_error_).
  bool refused_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::pair<std::string, int>> subscriptions_ ABSL_GUARDED_BY(mu_);
  OutboundQueue queue_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<int, Inflight> inflight_ ABSL_GUARDED_BY(mu_);
  int64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<int> final_mid_ ABSL_GUARDED_BY(mu_);
  bool final_done_ ABSL_GUARDED_BY(mu_) = false;
  int64_t connects_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  // Drops logged during the current disconnection (first of each class).
  bool logged_state_drop_ ABSL_GUARDED_BY(mu_) = false;
  int64_t drops_since_connect_ ABSL_GUARDED_BY(mu_) = 0;

  std::thread thread_;
};

}  // namespace iot2mqtt::sdk

#endif  // IOT2MQTT_SDK_MQTT_CLIENT_H_
