#include "gateway/websocket_stream.h"

#include <utility>

#include "absl/time/clock.h"
#include "gateway/http_status.h"
#include "gateway/mqtt_ws_protocol.h"
#include "gateway/transcoder.h"

namespace iot2mqtt::gateway {

std::string WebSocketErrorFor(const grpc::Status& status,
                              absl::string_view backend) {
  HttpError error = BackendError(status, backend);
  return mqtt_ws::ErrorMessage(ErrorReason(error.status),
                               error.status.message());
}

StreamWebSocket::StreamWebSocket(
    BackendCalls* calls, std::string rpc_path,
    std::unique_ptr<google::protobuf::Message> request,
    const google::protobuf::Descriptor* response_type, CallOptions options,
    Render render, OnError on_error)
    : calls_(calls),
      rpc_path_(std::move(rpc_path)),
      request_(std::move(request)),
      prototype_(
          google::protobuf::MessageFactory::generated_factory()->GetPrototype(
              response_type)),
      options_(std::move(options)),
      render_(std::move(render)),
      on_error_(std::move(on_error)) {}

void StreamWebSocket::OnOpen(std::shared_ptr<WebSocketConnection> connection) {
  {
    absl::MutexLock lock(&mu_);
    connection_ = std::move(connection);
  }
  std::shared_ptr<StreamWebSocket> self = shared_from_this();
  StreamCallbacks callbacks;
  callbacks.on_message = [self](const std::string& bytes) {
    return self->OnEvent(bytes);
  };
  callbacks.on_done = [self](const grpc::Status& status) {
    self->OnDone(status);
  };
  grpc::Status refused;
  std::shared_ptr<CallHandle> call = calls_->Stream(
      rpc_path_, *request_, options_, std::move(callbacks), &refused);
  absl::MutexLock lock(&mu_);
  if (call == nullptr) {
    if (connection_ != nullptr) {
      connection_->SendText(WebSocketErrorFor(refused, "backend"));
      connection_->Close(kCloseInternalError, "backend unavailable");
    }
    return;
  }
  call_ = call;
  if (closed_) call->Cancel();
}

StreamAction StreamWebSocket::OnEvent(const std::string& bytes) {
  std::unique_ptr<google::protobuf::Message> message(prototype_->New());
  if (!message->ParseFromString(bytes)) {
    return StreamAction::kContinue;  // Skipped.
  }
  std::string text = render_ ? render_(*message) : MessageToJson(*message);
  absl::MutexLock lock(&mu_);
  if (closed_ || connection_ == nullptr ||
      !connection_->SendText(std::move(text))) {
    return StreamAction::kCancel;
  }
  if (!connection_->congested()) return StreamAction::kContinue;
  // A slow reader: wait for it (the backend queues or skips).
  std::weak_ptr<StreamWebSocket> weak = weak_from_this();
  connection_->NotifyWhenDrained([weak] {
    if (std::shared_ptr<StreamWebSocket> self = weak.lock()) {
      std::shared_ptr<CallHandle> call;
      {
        absl::MutexLock lock(&self->mu_);
        call = self->call_;
      }
      if (call != nullptr) call->Resume();
    }
  });
  return StreamAction::kPause;
}

void StreamWebSocket::OnDone(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  if (closed_ || connection_ == nullptr) return;
  if (status.ok()) {
    connection_->Close(kCloseNormal, "stream ended");
    return;
  }
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
      absl::Now() >= options_.deadline) {
    connection_->SendText(mqtt_ws::ErrorMessage(
        "TOKEN_EXPIRED",
        "the token that opened this socket expired; log in again"));
    connection_->Close(kClosePolicyViolation, "token expired");
    return;
  }
  Ending ending;
  if (on_error_) {
    ending = on_error_(status);
  } else {
    ending.frame = WebSocketErrorFor(status, "backend");
    ending.close_reason = "backend stream failed";
  }
  connection_->SendText(std::move(ending.frame));
  connection_->Close(ending.close_code, std::move(ending.close_reason));
}

void StreamWebSocket::OnMessage(std::string text) {
  (void)text;
  absl::MutexLock lock(&mu_);
  if (connection_ != nullptr) {
    connection_->SendText(mqtt_ws::ErrorMessage(
        "NOT_SUPPORTED", "this socket does not take messages"));
  }
}

void StreamWebSocket::OnClose(int code) {
  (void)code;
  std::shared_ptr<CallHandle> call;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    connection_.reset();
    call = call_;
  }
  if (call != nullptr) call->Cancel();
}

}  // namespace iot2mqtt::gateway
