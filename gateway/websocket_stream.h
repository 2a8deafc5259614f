#ifndef IOT2MQTT_GATEWAY_WEBSOCKET_STREAM_H_
#define IOT2MQTT_GATEWAY_WEBSOCKET_STREAM_H_

// A server-streaming RPC forwarded to a WebSocket as text frames: the
// adapter behind one-way socket endpoints (`/ws/logs/{id}` and the like).
//
//   auto request = std::make_unique<v1::StreamLogsRequest>();
//   request->set_container_id(id);
//   HttpResponse response;
//   response.websocket = std::make_shared<StreamWebSocket>(
//       calls, "/iot2mqtt.orchestrator.v1.OrchestratorService/StreamLogs",
//       std::move(request), v1::LogLine::descriptor(), options);
//
// On open the call starts; each message goes out as one text frame (its
// JSON by the transcoder's rules, or `render`'s text). When the call ends:
// OK → close 1000; the token's deadline → `{"type":"error","code":
// "TOKEN_EXPIRED",...}` and close 1008; another error → `{"type":"error",
// "code":REASON,"message"}` and close 1011, or what `on_error` makes of it.
// Client messages are answered with an error (NOT_SUPPORTED); the socket stays
// open. A client too slow for the stream is closed (websocket.h) and the call
// cancelled; closing the socket cancels the call.

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "gateway/backend_calls.h"
#include "gateway/websocket.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace iot2mqtt::gateway {

class StreamWebSocket final
    : public WebSocketHandler,
      public std::enable_shared_from_this<StreamWebSocket> {
 public:
  using Render = std::function<std::string(const google::protobuf::Message&)>;

  // How a failed call ends the socket: the last frame, then the close.
  struct Ending {
    std::string frame;
    int close_code = kCloseInternalError;
    std::string close_reason;
  };
  // Shapes the ending of a call that failed (an expired token excepted).
  using OnError = std::function<Ending(const grpc::Status&)>;

  // `response_type` is the stream's message type (in the generated pool).
  // `options.deadline` is when the token that opened the socket expires.
  StreamWebSocket(BackendCalls* calls, std::string rpc_path,
                  std::unique_ptr<google::protobuf::Message> request,
                  const google::protobuf::Descriptor* response_type,
                  CallOptions options, Render render = nullptr,
                  OnError on_error = nullptr);

  void OnOpen(std::shared_ptr<WebSocketConnection> connection) override;
  void OnMessage(std::string text) override;
  void OnClose(int code) override;

 private:
  StreamAction OnEvent(const std::string& bytes);
  void OnDone(const grpc::Status& status);

  BackendCalls* const calls_;
  const std::string rpc_path_;
  const std::unique_ptr<google::protobuf::Message> request_;
  const google::protobuf::Message* prototype_;
  const CallOptions options_;
  const Render render_;
  const OnError on_error_;

  absl::Mutex mu_;
  std::shared_ptr<WebSocketConnection> connection_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<CallHandle> call_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// `{"type":"error","code":REASON,"message":...}` for a failed backend call.
std::string WebSocketErrorFor(const grpc::Status& status,
                              absl::string_view backend);

}  // namespace iot2mqtt::gateway

#endif  // IOT2MQTT_GATEWAY_WEBSOCKET_STREAM_H_
