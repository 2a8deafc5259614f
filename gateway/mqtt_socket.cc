#include "gateway/mqtt_socket.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gateway/http_status.h"
#include "iot2mqtt/mqtt_bridge/v1/mqtt_bridge_service.pb.h"
#include "iot2mqtt/sdk/log.h"
#include "services/common/rpc_scope.h"
#include "services/common/status.h"

namespace iot2mqtt::gateway {
namespace {

namespace v1 = ::iot2mqtt::mqtt_bridge::v1;
using mqtt_ws::AckMessage;
using mqtt_ws::ErrorMessage;

constexpr char kBackend[] = "mqtt-bridge";

// The error message for a failed bridge call.
std::string BridgeErrorMessage(const grpc::Status& status,
                               absl::string_view topic = "") {
  HttpError error = BackendError(status, kBackend);
  return ErrorMessage(ErrorReason(error.status), error.status.message(), topic);
}

}  // namespace

MqttSocket::MqttSocket(BackendCalls* calls, MqttSocketOptions options)
    : calls_(calls), options_(std::move(options)) {}

MqttSocket::~MqttSocket() = default;

void MqttSocket::OnOpen(std::shared_ptr<WebSocketConnection> connection) {
  {
    absl::MutexLock lock(&mu_);
    connection_ = std::move(connection);
  }
  // The base topic first: the base stream's filter, for the rule that
  // delivers each message once.
  calls_->Unary(
      kMqttBridgeGetStatusRpc, v1::GetStatusRequest(),
      {options_.correlation_id, absl::InfiniteFuture()},
      [self = shared_from_this()](const grpc::Status& status,
                                  const std::string& bytes) {
        v1::GetStatusResponse reply;
        {
          absl::MutexLock lock(&self->mu_);
          if (self->closed_) return;
          if (!status.ok()) {
            self->Fail(status);
            return;
          }
          if (!reply.ParseFromString(bytes)) {
            self->Fail(grpc::Status(grpc::StatusCode::INTERNAL,
                                    "the mqtt-bridge sent an unreadable "
                                    "status"));
            return;
          }
        }
        self->OpenBaseStream(reply.base_topic());
      });
}

void MqttSocket::OpenBaseStream(const std::string& base_topic) {
  uint64_t id;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    std::vector<std::string> filters;
    if (!base_topic.empty()) filters.push_back(absl::StrCat(base_topic, "/#"));
    id = order_.Add(std::move(filters));
    base_id_ = id;
    streams_[id] = Stream();
  }
  StartStream("", id);
}

void MqttSocket::StartStream(const std::string& filter, uint64_t id) {
  v1::SubscribeRequest request;
  if (!filter.empty()) request.add_filters(filter);
  std::shared_ptr<MqttSocket> self = shared_from_this();
  StreamCallbacks callbacks;
  callbacks.on_message = [self, id](const std::string& bytes) {
    return self->OnEvent(id, bytes);
  };
  callbacks.on_done = [self, id](const grpc::Status& status) {
    self->OnStreamDone(id, status);
  };
  grpc::Status refused;
  std::shared_ptr<CallHandle> call =
      calls_->Stream(kMqttBridgeSubscribeRpc, request,
                     {options_.correlation_id, options_.token_expires},
                     std::move(callbacks), &refused);
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(id);
  if (call == nullptr) {
    if (it != streams_.end()) streams_.erase(it);
    order_.Remove(id);
    if (closed_) return;
    if (id == base_id_) {
      Fail(refused);
    } else {
      Send(BridgeErrorMessage(refused, filter));
    }
    return;
  }
  if (it == streams_.end()) return;  // Over already.
  it->second.call = call;
  if (closed_ || it->second.cancelled) call->Cancel();
}

StreamAction MqttSocket::OnEvent(uint64_t id, const std::string& bytes) {
  v1::TopicEvent event;
  if (!event.ParseFromString(bytes)) {
    sdk::ScopedCorrelationId scope(options_.correlation_id);
    IOT2MQTT_LOG(WARNING) << "unreadable topic event from the mqtt-bridge";
    return StreamAction::kContinue;
  }
  bool drain = false;
  bool ok = true;
  bool pause = false;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return StreamAction::kCancel;
    auto it = streams_.find(id);
    if (it == streams_.end() || it->second.cancelled) {
      return StreamAction::kCancel;
    }
    Stream& stream = it->second;
    const bool base = id == base_id_;
    if (!base && !stream.acknowledged) {
      stream.acknowledged = true;
      ok = Send(AckMessage("subscribed", stream.filter));
    }
    switch (event.type()) {
      case v1::TopicEvent::SNAPSHOT:
        if (base && !snapshot_sent_) {
          if (!snapshot_.empty()) snapshot_ += ",";
          snapshot_ += mqtt_ws::TopicEntry(event.topic(), event.value(),
                                           event.timestamp(), event.retained(),
                                           event.qos());
          break;
        }
        [[fallthrough]];
      case v1::TopicEvent::UPDATE:
        if (order_.ShouldDeliver(id, event.topic())) {
          ok = ok && Send(mqtt_ws::UpdateMessage(
                         event.topic(), event.value(), event.timestamp(),
                         event.retained(), event.qos()));
        }
        break;
      case v1::TopicEvent::SNAPSHOT_END:
        if (base && !snapshot_sent_) {
          std::string data = absl::StrCat("[", snapshot_, "]");
          snapshot_.clear();
          snapshot_.shrink_to_fit();
          snapshot_sent_ = true;
          ok = ok && Send(mqtt_ws::TopicsMessage(data));
          if (!deferred_.empty()) {
            draining_ = true;
            drain = true;
          }
        }
        break;
      case v1::TopicEvent::DELETE:
        if (order_.ShouldDeliver(id, event.topic())) {
          ok = ok && Send(mqtt_ws::DeleteMessage(event.topic()));
        }
        break;
      case v1::TopicEvent::SKIPPED:
        ok = ok && Send(mqtt_ws::SkippedMessage(event.skipped()));
        break;
      default:
        break;
    }
    if (!ok) {
      // The socket is closing (too slow, say): this stream's end is
      // expected.
      it->second.cancelled = true;
    } else if (connection_ != nullptr && connection_->congested()) {
      // The client reads slowly: wait for it (the bridge skips ahead).
      pause = true;
      if (!drain_armed_) {
        drain_armed_ = true;
        connection_->NotifyWhenDrained(
            [self = shared_from_this()] { self->OnDrained(); });
      }
    }
  }
  if (drain) DrainDeferred();
  if (!ok) return StreamAction::kCancel;
  return pause ? StreamAction::kPause : StreamAction::kContinue;
}

void MqttSocket::OnDrained() {
  std::vector<std::shared_ptr<CallHandle>> calls;
  {
    absl::MutexLock lock(&mu_);
    drain_armed_ = false;
    if (closed_) return;
    for (auto& [id, stream] : streams_) {
      if (stream.call != nullptr && !stream.cancelled) {
        calls.push_back(stream.call);
      }
    }
  }
  for (const std::shared_ptr<CallHandle>& call : calls) call->Resume();
}

void MqttSocket::OnStreamDone(uint64_t id, const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(id);
  const bool cancelled = it != streams_.end() && it->second.cancelled;
  const std::string filter = it != streams_.end() ? it->second.filter : "";
  if (it != streams_.end()) streams_.erase(it);
  order_.Remove(id);
  if (closed_ || cancelled) return;
  const bool expired =
      status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
      absl::Now() >= options_.token_expires;
  if (id == base_id_ || expired) {
    Fail(status.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                    "the mqtt-bridge ended the stream")
                     : status);
    return;
  }
  // One subscription failed (the bridge refused its filter, say).
  Send(BridgeErrorMessage(
      status.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                 "the mqtt-bridge ended the subscription")
                  : status,
      filter));
}

void MqttSocket::Fail(const grpc::Status& status) {
  if (connection_ == nullptr) return;
  const bool expired =
      status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
      absl::Now() >= options_.token_expires;
  if (expired) {
    Send(ErrorMessage(
        "TOKEN_EXPIRED",
        "the token that opened this socket expired; log in again"));
    connection_->Close(kClosePolicyViolation, "token expired");
    return;
  }
  {
    sdk::ScopedCorrelationId scope(options_.correlation_id);
    IOT2MQTT_LOG(WARNING)
            .With("code", common::CodeName(static_cast<absl::StatusCode>(
                              status.error_code())))
            .With("error", status.error_message())
        << "mqtt socket: the mqtt-bridge failed; closing";
  }
  Send(BridgeErrorMessage(status));
  connection_->Close(kCloseInternalError, "mqtt bridge unavailable");
}

bool MqttSocket::Send(std::string message) {
  return connection_ != nullptr && connection_->SendText(std::move(message));
}

void MqttSocket::OnMessage(std::string text) {
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    if (!snapshot_sent_ || draining_) {
      if (deferred_.size() >= options_.max_deferred_messages) {
        Send(ErrorMessage("TOO_MANY_EARLY_MESSAGES",
                          "wait for the topics message before sending more"));
        return;
      }
      deferred_.push_back(std::move(text));
      return;
    }
  }
  Handle(text);
}

void MqttSocket::DrainDeferred() {
  while (true) {
    std::vector<std::string> batch;
    {
      absl::MutexLock lock(&mu_);
      if (deferred_.empty() || closed_) {
        draining_ = false;
        return;
      }
      batch.swap(deferred_);
    }
    for (const std::string& text : batch) Handle(text);
  }
}

void MqttSocket::Handle(const std::string& text) {
  absl::StatusOr<mqtt_ws::ClientMessage> message =
      mqtt_ws::ParseClientMessage(text);
  if (!message.ok()) {
    absl::MutexLock lock(&mu_);
    Send(ErrorMessage(common::ReasonOf(message.status()),
                      message.status().message()));
    return;
  }
  switch (message->action) {
    case mqtt_ws::Action::kSubscribe:
      Subscribe(message->topic);
      return;
    case mqtt_ws::Action::kUnsubscribe:
      Unsubscribe(message->topic);
      return;
    case mqtt_ws::Action::kPublish:
      Publish(*message);
      return;
  }
}

void MqttSocket::Subscribe(const std::string& filter) {
  uint64_t id;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    size_t subscriptions = 0;
    for (const auto& [stream_id, stream] : streams_) {
      if (stream_id == base_id_ || stream.cancelled) continue;
      if (stream.filter == filter) {
        Send(AckMessage("subscribed", filter));  // Already.
        return;
      }
      ++subscriptions;
    }
    if (subscriptions >= options_.max_subscriptions) {
      Send(ErrorMessage(
          mqtt_ws::kTooManySubscriptions,
          absl::StrCat("at most ", options_.max_subscriptions,
                       " subscriptions per socket; unsubscribe first"),
          filter));
      return;
    }
    id = order_.Add({filter});
    Stream stream;
    stream.filter = filter;
    streams_[id] = std::move(stream);
  }
  StartStream(filter, id);
}

void MqttSocket::Unsubscribe(const std::string& filter) {
  absl::MutexLock lock(&mu_);
  if (closed_) return;
  for (auto& [id, stream] : streams_) {
    if (id == base_id_ || stream.cancelled || stream.filter != filter) continue;
    stream.cancelled = true;
    order_.Remove(id);
    if (stream.call != nullptr) stream.call->Cancel();
    break;
  }
  Send(AckMessage("unsubscribed", filter));
}

void MqttSocket::Publish(const mqtt_ws::ClientMessage& message) {
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    if (pending_publishes_ >= options_.max_pending_publishes) {
      Send(ErrorMessage(
          mqtt_ws::kTooManyPendingPublishes,
          absl::StrCat("at most ", options_.max_pending_publishes,
                       " publishes may wait for the bridge at once"),
          message.topic));
      return;
    }
    ++pending_publishes_;
  }
  v1::PublishRequest request;
  request.set_topic(message.topic);
  request.set_payload(message.payload);
  request.set_qos(message.qos);
  request.set_retain(message.retain);
  calls_->Unary(
      kMqttBridgePublishRpc, request,
      {options_.correlation_id, absl::InfiniteFuture()},
      [self = shared_from_this(), topic = message.topic](
          const grpc::Status& status, const std::string& bytes) {
        absl::MutexLock lock(&self->mu_);
        --self->pending_publishes_;
        if (self->closed_) return;
        if (!status.ok()) {
          self->Send(BridgeErrorMessage(status, topic));
          return;
        }
        v1::PublishResponse reply;
        if (reply.ParseFromString(bytes) && !reply.success()) {
          self->Send(ErrorMessage("PUBLISH_FAILED",
                                  reply.message().empty()
                                      ? "the message was not published"
                                      : reply.message(),
                                  topic));
          return;
        }
        self->Send(AckMessage("published", topic));
      });
}

void MqttSocket::OnClose(int code) {
  (void)code;
  std::vector<std::shared_ptr<CallHandle>> calls;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    connection_.reset();
    deferred_.clear();
    for (auto& [id, stream] : streams_) {
      if (stream.call != nullptr) calls.push_back(stream.call);
    }
  }
  for (const std::shared_ptr<CallHandle>& call : calls) call->Cancel();
}

}  // namespace iot2mqtt::gateway
