#ifndef IOT2MQTT_GATEWAY_MQTT_SOCKET_H_
#define IOT2MQTT_GATEWAY_MQTT_SOCKET_H_

// `WS /ws/mqtt`: the live MQTT view of the web UI, over the mqtt-bridge's
// Subscribe stream (upstream's protocol, reference §1.4, with its defects
// fixed: subscriptions belong to the socket, malformed messages are
// answered, nothing leaks when the socket goes).
//
// Server → client:
//   {"type":"topics","data":[{topic,value,timestamp,retained,qos},...]}
//       once, first: the cached topics under the base topic
//   {"type":"update","topic","value","timestamp","retained","qos"}
//   {"type":"delete","topic"}
//   {"type":"skipped","count":n}      the socket fell behind the bridge
//   {"type":"subscribed"|"unsubscribed"|"published","topic"}
//   {"type":"error","code":"REASON","message"[,"topic"]}
// Client → server:
//   {"action":"subscribe","topic":F}    another filter for this socket only;
//       answered `subscribed`, then its cached topics as `update`s
//   {"action":"unsubscribe","topic":F}  answered `unsubscribed`
//   {"action":"publish","topic","payload","qos"=0,"retain"=false}
//       answered `published` or an error
//
// A message is delivered once even when several of the socket's filters
// match it. A client that reads slowly pauses the socket's streams (the
// bridge then skips ahead for them: `skipped`); one that doesn't read at all
// is closed with 1008 (websocket.h). Client messages that arrive before
// `topics` is sent wait for it. The bridge failing (unreachable, the base
// stream ending) sends an error and closes with 1011; the token that opened the
// socket expiring sends TOKEN_EXPIRED and closes with 1008. Closing the socket
// cancels every stream and forgets pending answers.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gateway/backend_calls.h"
#include "gateway/mqtt_ws_protocol.h"
#include "gateway/websocket.h"

namespace iot2mqtt::gateway {

inline constexpr char kMqttBridgeService[] =
    "iot2mqtt.mqtt_bridge.v1.MqttBridgeService";
inline constexpr char kMqttBridgeSubscribeRpc[] =
    "/iot2mqtt.mqtt_bridge.v1.MqttBridgeService/Subscribe";
inline constexpr char kMqttBridgePublishRpc[] =
    "/iot2mqtt.mqtt_bridge.v1.MqttBridgeService/Publish";
inline constexpr char kMqttBridgeGetStatusRpc[] =
    "/iot2mqtt.mqtt_bridge.v1.MqttBridgeService/GetStatus";

struct MqttSocketOptions {
  std::string correlation_id;
  // When the token that opened the socket expires.
  absl::Time token_expires = absl::InfiniteFuture();
  // Client subscriptions per socket.
  size_t max_subscriptions = 32;
  // Publishes waiting for the bridge per socket.
  size_t max_pending_publishes = 16;
  // Client messages held until the snapshot is sent.
  size_t max_deferred_messages = 64;
};

class MqttSocket final : public WebSocketHandler,
                         public std::enable_shared_from_this<MqttSocket> {
 public:
  // `calls` must outlive the socket's calls (the gateway waits for them).
  MqttSocket(BackendCalls* calls, MqttSocketOptions options);
  ~MqttSocket() override;

  void OnOpen(std::shared_ptr<WebSocketConnection> connection) override;
  void OnMessage(std::string text) override;
  void OnClose(int code) override;

 private:
  struct Stream {
    std::string filter;  // "" for the base stream.
    std::shared_ptr<CallHandle> call;
    bool acknowledged = false;  // `subscribed` sent.
    bool cancelled = false;     // Unsubscribed (its end is expected).
  };

  void OpenBaseStream(const std::string& base_topic);
  // Starts a stream for `filter` ("": the base stream) and registers it.
  void StartStream(const std::string& filter, uint64_t id);
  StreamAction OnEvent(uint64_t id, const std::string& bytes);
  // The socket's queue drained: paused streams read on.
  void OnDrained();
  void OnStreamDone(uint64_t id, const grpc::Status& status);
  void Handle(const std::string& text);
  void Subscribe(const std::string& filter);
  void Unsubscribe(const std::string& filter);
  void Publish(const mqtt_ws::ClientMessage& message);
  // Sends the error and closes the socket (the bridge failed).
  void Fail(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Send(std::string message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Handles the client messages that waited for the snapshot.
  void DrainDeferred();

  BackendCalls* const calls_;
  const MqttSocketOptions options_;

  absl::Mutex mu_;
  std::shared_ptr<WebSocketConnection> connection_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  mqtt_ws::StreamOrder order_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, Stream> streams_ ABSL_GUARDED_BY(mu_);
  uint64_t base_id_ ABSL_GUARDED_BY(mu_) = 0;
  // The "topics" array being built until SNAPSHOT_END.
  std::string snapshot_ ABSL_GUARDED_BY(mu_);
  bool snapshot_sent_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> deferred_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  size_t pending_publishes_ ABSL_GUARDED_BY(mu_) = 0;
  bool drain_armed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace iot2mqtt::gateway

#endif  // IOT2MQTT_GATEWAY_MQTT_SOCKET_H_
