#ifndef IOT2MQTT_SDK_OUTBOUND_QUEUE_H_
#define IOT2MQTT_SDK_OUTBOUND_QUEUE_H_

// The bounded queue outbound messages wait in while the broker is
// unreachable (contract "Robustness"). Not thread-safe: MosquittoClient
// guards it with its own mutex.
//
// Drop order when a limit is reached: the oldest kState message (state and
// property topics: superseded by the next poll anyway), then the oldest
// kNormal one (events, errors, meta), and only then the oldest kResponse
// (command, get and group responses), which callers log at ERROR. A retained
// kState message also replaces a queued one with the same topic: only the
// newest retained value of a topic matters.

#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>
#include <vector>

namespace iot2mqtt::sdk {

struct MqttMessage {
  std::string topic;
  std::string payload;
  int qos = 0;
  bool retain = false;
};

enum class MessageClass {
  kState,     // Device state and property topics.
  kNormal,    // Events, errors, meta, status.
  kResponse,  // Answers to a request (cmd/get/group responses).
};

struct OutboundMessage {
  MqttMessage message;
  MessageClass cls = MessageClass::kNormal;
};

class OutboundQueue {
 public:
  struct Limits {
    size_t max_messages = 1000;
    size_t max_bytes = 4 * 1024 * 1024;
  };

  explicit OutboundQueue(Limits limits) : limits_(limits) {}

  // Appends a message, then drops what the limits require; every dropped
  // message (possibly the new one, when it alone is larger than max_bytes)
  // is appended to `dropped` when given.
  void Push(MqttMessage message, MessageClass cls,
            std::vector<OutboundMessage>* dropped = nullptr);
  // Puts messages ahead of everything queued, keeping their order (the
  // unacknowledged in-flight messages of a lost connection). A retained
  // kState message whose topic already has a newer queued value is
  // discarded as superseded (not reported as dropped).
  void PushFront(std::vector<OutboundMessage> messages,
                 std::vector<OutboundMessage>* dropped = nullptr);
  // Everything queued, oldest first; the queue is empty afterwards.
  std::vector<OutboundMessage> TakeAll();

  size_t size() const { return count_; }
  size_t bytes() const { return bytes_; }
  bool empty() const { return count_ == 0; }

  // Accounted size of one message.
  static size_t Cost(const MqttMessage& message) {
    return message.topic.size() + message.payload.size() + 64;
  }

 private:
  struct Entry {
    int64_t seq;
    OutboundMessage item;
  };
  using List = std::list<Entry>;

  List& ListOf(MessageClass cls);
  void Insert(OutboundMessage item, bool front);
  void Remove(List& list, List::iterator it);
  void Enforce(std::vector<OutboundMessage>* dropped);

  Limits limits_;
  List state_;
  List normal_;
  List response_;
  // Retained kState messages by topic, for coalescing.
  std::unordered_map<std::string, List::iterator> retained_state_;
  int64_t next_back_ = 0;
  int64_t next_front_ = -1;
  size_t count_ = 0;
  size_t bytes_ = 0;
};

}  // namespace iot2mqtt::sdk

#endif  // IOT2MQTT_SDK_OUTBOUND_QUEUE_H_
