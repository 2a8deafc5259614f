#ifndef IOT2MQTT_SERVICES_MQTT_BRIDGE_BRIDGE_H_
#define IOT2MQTT_SERVICES_MQTT_BRIDGE_BRIDGE_H_

// The platform's own MQTT connection.
//
// Settings: read from a SettingsSource (settings_source.h; the config
// service's ResolveMqttSettings in production, config_client.h), retried
// with backoff while it is unreachable, and followed through its change
// stream (WatchChanges, resumed with its cursor; a `resync` re-reads them,
// and a stream opened without a cursor starts with one). When they really
// change, the MQTT client is replaced without a restart; a new broker or
// base topic clears the cache.
//
// Connection: client id `<client_prefix>_mqtt_bridge`, no will and no birth
// message, `<base>/#` at QoS 1 (subscribed again on every reconnect by the
// SDK client), reconnect with capped exponential backoff.
//
// Every received message goes to the TopicCache and the SubscriberHub
// (UPDATE / DELETE), and `.../cmd/response` messages to the CommandTracker;
// all of that is cheap and runs on the MQTT network thread (no gRPC call
// there).
//
// Error reasons (services/common/status.h):
//   UNAVAILABLE       MQTT_NOT_CONNECTED (publish, command, clear while not
//                     connected), CONFIG_UNAVAILABLE (stored password needed
//                     but the config service did not answer)
//   INVALID_ARGUMENT  INVALID_TOPIC, INVALID_FILTER, INVALID_QOS,
//                     INVALID_PAYLOAD, PAYLOAD_TOO_LARGE (metadata limit),
//                     INVALID_INSTANCE_ID, INVALID_DEVICE_ID, INVALID_COMMAND,
//                     INVALID_TIMEOUT, INVALID_MQTT_SETTINGS (metadata
//                     field -> problem)
//   DEADLINE_EXCEEDED COMMAND_TIMEOUT (metadata command_id), from the
//                     service's SendCommand

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "iot2mqtt/sdk/mqtt_client.h"
#include "prometheus/registry.h"
#include "services/common/server_runner.h"
#include "services/mqtt_bridge/command_tracker.h"
#include "services/mqtt_bridge/settings_source.h"
#include "services/mqtt_bridge/subscriber_hub.h"
#include "services/mqtt_bridge/topic_cache.h"

namespace iot2mqtt::mqtt_bridge {

inline constexpr char kMqttNotConnected[] = "MQTT_NOT_CONNECTED";
inline constexpr char kInvalidTopic[] = "INVALID_TOPIC";
inline constexpr char kInvalidFilter[] = "INVALID_FILTER";
inline constexpr char kInvalidQos[] = "INVALID_QOS";
inline constexpr char kInvalidPayload[] = "INVALID_PAYLOAD";
inline constexpr char kPayloadTooLarge[] = "PAYLOAD_TOO_LARGE";
inline constexpr char kInvalidInstanceId[] = "INVALID_INSTANCE_ID";
inline constexpr char kInvalidDeviceId[] = "INVALID_DEVICE_ID";
inline constexpr char kInvalidCommand[] = "INVALID_COMMAND";
inline constexpr char kInvalidTimeout[] = "INVALID_TIMEOUT";
inline constexpr char kInvalidMqttSettings[] = "INVALID_MQTT_SETTINGS";
inline constexpr char kCommandTimeout[] = "COMMAND_TIMEOUT";
// The password TestConnection replaces with the stored one.
inline constexpr char kHiddenPassword[] = "***HIDDEN***";

struct BridgeOptions {
  CacheLimits cache_limits;
  size_t max_payload_bytes = 262144;
  size_t subscriber_queue = 4096;
  // Retry delays while the config service is unreachable.
  absl::Duration config_retry_initial = absl::Milliseconds(250);
  absl::Duration config_retry_max = absl::Seconds(5);
  // MQTT reconnect backoff.
  absl::Duration reconnect_initial = absl::Milliseconds(250);
  absl::Duration reconnect_max = absl::Seconds(10);
  // Metrics are registered here when set.
  std::shared_ptr<prometheus::Registry> registry;
};

struct BridgeStatus {
  bool connected = false;
  bool configured = false;  // The config service named a broker host.
  std::string host;
  int port = 0;
  std::string base_topic;
  std::string client_id;
  absl::Time since;        // When `connected` last changed.
  std::string last_error;  // Empty when none since the last connect.
  int64_t topics = 0;
  int64_t cache_bytes = 0;
  int64_t evicted = 0;
  int64_t messages_received = 0;
};

// A validated SendCommand request.
struct CommandSpec {
  std::string instance_id;
  std::string device_id;
  std::string values;                         // Compact JSON object.
  absl::Duration timeout = absl::Seconds(5);  // Zero: don't wait.
  std::string command_id;                     // A fresh UUID4.
};

// Validates SendCommand's fields: instance id ^[a-z0-9][a-z0-9_-]{0,62}$;
// device id per the contract's id rule (1-128 bytes of UTF-8 without `/`,
// `+`, `#`, NUL or control characters); exactly one of `command` / `values`
// (JSON text), which must be an object; timeout 0..60 s (default 5).
absl::StatusOr<CommandSpec> ParseCommandRequest(
    absl::string_view instance_id, absl::string_view device_id,
    absl::string_view command, absl::string_view values,
    std::optional<double> timeout_seconds);

// `^[a-z0-9][a-z0-9_-]{0,62}$`; INVALID_ARGUMENT INVALID_INSTANCE_ID.
absl::Status ValidateInstanceId(absl::string_view id);

// Publish's payload: JSON text; a JSON string becomes its text, any other
// JSON value its (unchanged) JSON text, "" an empty payload.
// INVALID_ARGUMENT INVALID_PAYLOAD when it is not JSON.
absl::StatusOr<std::string> PayloadFromJson(absl::string_view json);

// A random UUID version 4 (lower-case, 36 characters).
std::string NewUuid4();

class BridgeMetrics;

class Bridge {
 public:
  // `settings` (not null) is where the broker settings come from.
  Bridge(BridgeOptions options, std::unique_ptr<SettingsSource> settings);
  // Stop().
  ~Bridge();
  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;

  // Starts following the config service's settings (in the background).
  void Start();
  // Stops the settings thread and the MQTT client; pending commands end
  // with kCancelled. Idempotent.
  void Stop();

  BridgeStatus Status() const;
  common::HealthVerdict Health() const;

  // The cache (reads: ListTopics and the projections).
  const TopicCache& cache() const { return cache_; }
  const BridgeOptions& options() const { return options_; }

  // Validates and publishes. `payload` is what goes on the wire.
  absl::Status Publish(const std::string& topic, std::string payload, int qos,
                       bool retain);

  // A subscriber: its filters (validated; empty means `<base>/#`), a
  // snapshot of the matching cached topics unless `skip_snapshot`, then live
  // events. Filters outside the base topic are subscribed at the broker
  // while a subscription needs them. End it with Unsubscribe().
  absl::StatusOr<std::shared_ptr<Subscription>> Subscribe(
      std::vector<std::string> filters, bool skip_snapshot,
      SubscriberHub::Wake wake);
  void Unsubscribe(const std::shared_ptr<Subscription>& subscription);
  size_t subscribers() const { return hub_.subscribers(); }

  // Publishes the command (QoS 1, not retained) and returns its id. When
  // the spec has a timeout, `done` runs once with the outcome (on the
  // tracker's timer thread or the MQTT network thread: hand work off).
  // UNAVAILABLE MQTT_NOT_CONNECTED when not connected (`done` never runs
  // then).
  absl::StatusOr<std::string> SendCommand(const CommandSpec& spec,
                                          CommandTracker::Done done);

  // Empty retained messages (QoS 1) to every cached topic that is exactly
  // `<base>/v1/instances/<id>` or below it, plus its status, meta/info and
  // meta/devices_list; removes them from the cache (DELETE events to
  // subscribers). Returns how many topics were cleared.
  absl::StatusOr<int64_t> ClearInstance(absl::string_view instance_id);
  // The same for every cached topic under the base topic.
  absl::StatusOr<int64_t> ClearAll();

  // Ends every command still waiting (their `done` gets kCancelled); for
  // shutdown.
  void CancelCommands();

  // The stored settings with the real password (blocking; a worker's job).
  // UNAVAILABLE CONFIG_UNAVAILABLE when the config service does not answer.
  absl::StatusOr<BrokerSettings> ResolveStoredSettings();

 private:
  void SettingsLoop();
  // Watches the change stream until it ends; returns whether settings must
  // be read again before watching again.
  bool WatchOnce(std::string* cursor);
  // Resolves and applies; false when the config service did not answer.
  bool Refresh();
  void Apply(const BrokerSettings& settings);
  void OnMessage(uint64_t generation, sdk::InboundMessage message);
  void OnConnection(uint64_t generation, bool connected);
  // Sleeps up to `delay`; false when stopping.
  bool Pause(absl::Duration delay);
  std::shared_ptr<sdk::MosquittoClient> ConnectedClient(
      std::string* base_topic) const;
  absl::StatusOr<int64_t> ClearTopics(std::vector<std::string> topics);
  // Whether `filter` is covered by the `<base>/#` subscription.
  static bool InsideBase(absl::string_view filter, absl::string_view base);

  const BridgeOptions options_;
  std::unique_ptr<BridgeMetrics> metrics_;
  const std::unique_ptr<SettingsSource> source_;

  TopicCache cache_;
  SubscriberHub hub_;
  CommandTracker tracker_;
  // Serialises cache updates with hub deliveries and with a new
  // subscriber's snapshot, so that no event is lost or doubled between
  // the two.
  absl::Mutex ingest_mu_;

  std::atomic<uint64_t> generation_{0};
  std::atomic<int64_t> messages_received_{0};

  // Serialises Apply().
  absl::Mutex apply_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool have_settings_ ABSL_GUARDED_BY(mu_) = false;
  BrokerSettings settings_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<sdk::MosquittoClient> client_ ABSL_GUARDED_BY(mu_);
  std::string client_id_ ABSL_GUARDED_BY(mu_);
  // While no client exists: when that began, and why.
  absl::Time idle_since_ ABSL_GUARDED_BY(mu_);
  std::string config_error_ ABSL_GUARDED_BY(mu_);
  // Broker subscriptions of filters outside the base topic, ref-counted.
  std::map<std::string, int> extra_filters_ ABSL_GUARDED_BY(mu_);
  std::map<const Subscription*, std::vector<std::string>> subscription_extras_
      ABSL_GUARDED_BY(mu_);
  std::set<std::string> pending_commands_ ABSL_GUARDED_BY(mu_);

  std::thread settings_thread_;
};

}  // namespace iot2mqtt::mqtt_bridge

#endif  // IOT2MQTT_SERVICES_MQTT_BRIDGE_BRIDGE_H_
