#ifndef IOT2MQTT_GATEWAY_MQTT_WS_PROTOCOL_H_
#define IOT2MQTT_GATEWAY_MQTT_WS_PROTOCOL_H_

// The `/ws/mqtt` protocol (upstream's, see mqtt_socket.h), as pure logic:
// client messages parsed and checked, server messages written, MQTT topic
// filters matched, and the per-socket rule that keeps overlapping
// subscriptions from delivering a message twice.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace iot2mqtt::gateway::mqtt_ws {

// Reasons of `{"type":"error","code":...}` answers to client messages.
inline constexpr char kInvalidJson[] = "INVALID_JSON";
inline constexpr char kUnknownAction[] = "UNKNOWN_ACTION";
inline constexpr char kMissingTopic[] = "MISSING_TOPIC";
inline constexpr char kInvalidTopicFilter[] = "INVALID_TOPIC_FILTER";
inline constexpr char kInvalidTopic[] = "INVALID_TOPIC";
inline constexpr char kInvalidQos[] = "INVALID_QOS";
inline constexpr char kInvalidRetain[] = "INVALID_RETAIN";
inline constexpr char kTooManySubscriptions[] = "TOO_MANY_SUBSCRIPTIONS";
inline constexpr char kTooManyPendingPublishes[] = "TOO_MANY_PENDING_PUBLISHES";

enum class Action { kSubscribe, kUnsubscribe, kPublish };

struct ClientMessage {
  Action action = Action::kSubscribe;
  // A topic filter (subscribe, unsubscribe) or a topic name (publish).
  std::string topic;
  // publish: the exact JSON text of "payload" ("" when absent: an empty
  // message), "qos" (default 0), "retain" (default false).
  std::string payload;
  int qos = 0;
  bool retain = false;
};

// Parses one client message: `{"action":"subscribe","topic":F}`,
// `{"action":"unsubscribe","topic":F}`,
// `{"action":"publish","topic":T,"payload":any,"qos":0..2,"retain":bool}`.
// Other members are ignored. INVALID_ARGUMENT with one of the reasons above.
absl::StatusOr<ClientMessage> ParseClientMessage(absl::string_view text);

// MQTT 3.1.1 §4.7: a non-empty filter of at most 65535 bytes of UTF-8
// without NUL; `+` and `#` each a whole level, `#` only last.
absl::Status ValidateTopicFilter(absl::string_view filter);
// A topic name: the same without any wildcard.
absl::Status ValidateTopicName(absl::string_view topic);

// Whether `topic` matches `filter` (`+` one level, `#` the rest including
// the parent level; wildcards at the first level don't match `$` topics).
bool TopicMatches(absl::string_view filter, absl::string_view topic);

// Server messages. `value` is JSON text ("" is written as null).
std::string TopicsMessage(const std::string& entries_json_array);
// One element of the "topics" array.
std::string TopicEntry(absl::string_view topic, absl::string_view value,
                       absl::string_view timestamp, bool retained, int qos);
std::string UpdateMessage(absl::string_view topic, absl::string_view value,
                          absl::string_view timestamp, bool retained, int qos);
std::string DeleteMessage(absl::string_view topic);
std::string SkippedMessage(int64_t count);
// {"type":"subscribed"|"unsubscribed"|"published","topic":topic}
std::string AckMessage(absl::string_view type, absl::string_view topic);
// {"type":"error","code","message"} plus "topic" when not empty.
std::string ErrorMessage(absl::string_view code, absl::string_view message,
                         absl::string_view topic = "");

// The streams of one socket in the order they were opened, each with its
// filters. A message that stream k received is delivered only when no
// earlier live stream has a filter matching its topic (that stream delivers
// it), so overlapping subscriptions never deliver a message twice and a
// topic stays with the oldest subscription covering it. Not thread-safe.
class StreamOrder {
 public:
  // A new, youngest stream; returns its id.
  uint64_t Add(std::vector<std::string> filters);
  // Forgets the stream (unsubscribed or ended). Unknown ids are ignored.
  void Remove(uint64_t id);
  bool ShouldDeliver(uint64_t id, absl::string_view topic) const;
  size_t size() const { return streams_.size(); }

 private:
  struct Stream {
    uint64_t id;
    std::vector<std::string> filters;
  };
  std::vector<Stream> streams_;  // Oldest first.
  uint64_t next_id_ = 1;
};

}  // namespace iot2mqtt::gateway::mqtt_ws

#endif  // IOT2MQTT_GATEWAY_MQTT_WS_PROTOCOL_H_
