#include "services/mqtt_bridge/mqtt_bridge_service.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "iot2mqtt/sdk/contract.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "services/common/grpc_status.h"
#include "services/common/rpc_scope.h"
#include "services/common/status.h"
#include "services/mqtt_bridge/broker_probe.h"

namespace iot2mqtt::mqtt_bridge {
namespace {

inline constexpr char kShuttingDown[] = "SHUTTING_DOWN";

absl::Status ShuttingDown() {
  return common::WithReason(
      absl::UnavailableError("the mqtt-bridge is shutting down"),
      kShuttingDown);
}

std::string Timestamp(absl::Time time) {
  return time == absl::Time() ? std::string() : sdk::FormatTimestamp(time);
}

void ToProto(const DeviceView& device, absl::string_view instance_id,
             v1::DeviceState* out) {
  out->set_device_id(device.device_id);
  out->set_instance_id(std::string(instance_id));
  out->set_state(device.state);
  out->set_last_update(Timestamp(device.last_update));
}

void ToProto(const HubEvent& event, v1::TopicEvent* out) {
  out->Clear();
  switch (event.type) {
    case HubEvent::Type::kSnapshot:
      out->set_type(v1::TopicEvent::SNAPSHOT);
      break;
    case HubEvent::Type::kSnapshotEnd:
      out->set_type(v1::TopicEvent::SNAPSHOT_END);
      return;
    case HubEvent::Type::kUpdate:
      out->set_type(v1::TopicEvent::UPDATE);
      break;
    case HubEvent::Type::kDelete:
      out->set_type(v1::TopicEvent::DELETE);
      break;
    case HubEvent::Type::kSkipped:
      out->set_type(v1::TopicEvent::SKIPPED);
      out->set_skipped(static_cast<int32_t>(
          std::min<int64_t>(event.skipped, INT32_MAX)));
      return;
  }
  out->set_topic(event.topic);
  if (event.type != HubEvent::Type::kDelete) out->set_value(event.value);
  out->set_timestamp(Timestamp(event.received));
  out->set_retained(event.retained);
  out->set_qos(event.qos);
}

}  // namespace

// One Subscribe call: drains its Subscription into the stream, one write at
// a time. The hub's wake-up (on the MQTT network thread) only schedules a
// drain on the event pool; writes start there or in OnWriteDone.
class MqttBridgeServiceImpl::SubscribeStream final
    : public grpc::ServerWriteReactor<v1::TopicEvent> {
 public:
  SubscribeStream(MqttBridgeServiceImpl& service,
                  grpc::CallbackServerContext* context)
      : service_(service),
        correlation_id_(common::CorrelationIdFrom(*context)),
        waker_(std::make_shared<Waker>()) {
    waker_->stream = this;
  }

  void Begin(const v1::SubscribeRequest& request) {
    sdk::ScopedCorrelationId scope(correlation_id_);
    if (!service_.Register(this)) {
      Close(ShuttingDown());
      return;
    }
    std::vector<std::string> filters(request.filters().begin(),
                                     request.filters().end());
    std::shared_ptr<Waker> waker = waker_;
    absl::StatusOr<std::shared_ptr<Subscription>> subscription =
        service_.bridge_.Subscribe(std::move(filters), request.skip_snapshot(),
                                   [waker] {
                                     absl::MutexLock lock(&waker->mu);
                                     if (waker->stream != nullptr) {
                                       waker->stream->Kick();
                                     }
                                   });
    if (!subscription.ok()) {
      IOT2MQTT_LOG(INFO)
              .With("rpc", "Subscribe")
              .With("reason", common::ReasonOf(subscription.status()))
          << subscription.status().message();
      Close(subscription.status());
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      subscription_ = *std::move(subscription);
    }
    IOT2MQTT_LOG(DEBUG).With("rpc", "Subscribe") << "subscriber attached";
    Kick();
  }

  // Ends the stream with `status` once the write under way (if any) is
  // done.
  void Close(const absl::Status& status) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    if (writing_) {
      close_status_ = status;
      return;
    }
    FinishLocked(status);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    if (!ok) {
      writing_ = false;
      FinishLocked(absl::CancelledError("the client went away"));
      return;
    }
    WriteNextLocked();
  }

  void OnCancel() override { Close(absl::CancelledError("cancelled")); }

  void OnDone() override {
    {
      absl::MutexLock lock(&waker_->mu);
      waker_->stream = nullptr;
    }
    std::shared_ptr<Subscription> subscription;
    bool last = false;
    {
      absl::MutexLock lock(&mu_);
      subscription = std::move(subscription_);
      done_ = true;
      last = scheduled_ == 0;
    }
    if (subscription != nullptr) service_.bridge_.Unsubscribe(subscription);
    service_.Unregister(this);
    if (last) delete this;
  }

 private:
  struct Waker {
    absl::Mutex mu;
    SubscribeStream* stream ABSL_GUARDED_BY(mu) = nullptr;
  };

  // Starts draining unless a drain or write is under way.
  void Kick() {
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_ || subscription_ == nullptr) return;
      writing_ = true;
      ++scheduled_;
    }
    service_.events_.Schedule([this] { Drain(); });
  }

  void Drain() {
    bool destroy = false;
    {
      absl::MutexLock lock(&mu_);
      --scheduled_;
      if (done_) {
        destroy = scheduled_ == 0;
      } else {
        WriteNextLocked();
      }
    }
    if (destroy) delete this;
  }

  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) {
      writing_ = false;
      return;
    }
    if (close_status_.has_value()) {
      writing_ = false;
      FinishLocked(*close_status_);
      return;
    }
    std::optional<HubEvent> event;
    if (subscription_ != nullptr) event = subscription_->Take();
    if (!event.has_value()) {
      writing_ = false;
      return;
    }
    ToProto(*event, &event_);
    writing_ = true;
    // No buffer hint: a hinted write may wait for a later unhinted one
    // before it completes, and the next write only starts when this one
    // has (a snapshot could stall forever).
    StartWrite(&event_);
  }

  void FinishLocked(const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(common::ToGrpcStatus(status));
  }

  MqttBridgeServiceImpl& service_;
  const std::string correlation_id_;
  const std::shared_ptr<Waker> waker_;
  absl::Mutex mu_;
  std::shared_ptr<Subscription> subscription_ ABSL_GUARDED_BY(mu_);
  // A write is out, or a drain is scheduled.
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  int scheduled_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<absl::Status> close_status_ ABSL_GUARDED_BY(mu_);
  v1::TopicEvent event_ ABSL_GUARDED_BY(mu_);
};

MqttBridgeServiceImpl::MqttBridgeServiceImpl(Bridge& bridge,
                                             common::WorkPool& blocking,
                                             common::WorkPool& events,
                                             ServiceOptions options)
    : bridge_(bridge),
      blocking_(blocking),
      events_(events),
      options_(options) {}

MqttBridgeServiceImpl::~MqttBridgeServiceImpl() = default;

void MqttBridgeServiceImpl::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (SubscribeStream* stream : streams_) stream->Close(ShuttingDown());
  }
  bridge_.CancelCommands();
}

bool MqttBridgeServiceImpl::Register(SubscribeStream* stream) {
  absl::MutexLock lock(&mu_);
  if (shutting_down_) return false;
  streams_.insert(stream);
  return true;
}

void MqttBridgeServiceImpl::Unregister(SubscribeStream* stream) {
  absl::MutexLock lock(&mu_);
  streams_.erase(stream);
}

grpc::ServerUnaryReactor* MqttBridgeServiceImpl::GetStatus(
    grpc::CallbackServerContext* context, const v1::GetStatusRequest*,
    v1::GetStatusResponse* response) {
  common::RpcScope rpc(context, "GetStatus");
  BridgeStatus status = bridge_.Status();
  response->set_connected(status.connected);
  response->set_broker(status.configured ? status.host : "Not configured");
  response->set_port(status.port);
  response->set_topics_count(static_cast<int32_t>(status.topics));
  response->set_base_topic(status.base_topic);
  response->set_since(Timestamp(status.since));
  response->set_last_error(status.last_error);
  response->set_client_id(status.client_id);
  response->set_cache_bytes(status.cache_bytes);
  response->set_topics_evicted(status.evicted);
  response->set_messages_received(status.messages_received);
  return rpc.Finish(absl::OkStatus());
}

grpc::ServerUnaryReactor* MqttBridgeServiceImpl::TestConnection(
    grpc::CallbackServerContext* context,
    const v1::TestConnectionRequest* request,
    v1::TestConnectionResponse* response) {
  return common::Offload(
      context, "TestConnection", blocking_, [this, request, response] {
        std::optional<int> port;
        if (request->has_port()) port = request->port();
        std::optional<int> keepalive;
        if (request->has_keepalive()) keepalive = request->keepalive();
        IOT2MQTT_ASSIGN_OR_RETURN(
            ProbeTarget target,
            MakeProbeTarget(request->host(), port, request->username(),
                            request->password(), keepalive));
        if (target.password == kHiddenPassword) {
          IOT2MQTT_ASSIGN_OR_RETURN(BrokerSettings stored,
                                    bridge_.ResolveStoredSettings());
          target.password = stored.password;
        }
        ProbeResult result = ProbeBroker(target, options_.probe_timeout);
        response->set_success(result.success);
        response->set_message(result.message);
        response->set_latency_ms(result.latency_ms);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* MqttBridgeServiceImpl::ListTopics(
    grpc::CallbackServerContext* context, const v1::ListTopicsRequest* request,
    v1::ListTopicsResponse* response) {
  common::RpcScope rpc(context, "ListTopics");
  for (const CachedTopic& topic : bridge_.cache().List(request->filter())) {
    v1::TopicEntry* entry = response->add_topics();
    entry->set_topic(topic.topic);
    entry->set_value(topic.value);
    entry->set_timestamp(Timestamp(topic.received));
    entry->set_retained(topic.retained);
    entry->set_qos(topic.qos);
  }
  return rpc.Finish(absl::OkStatus());
}

grpc::ServerUnaryReactor* MqttBridgeServiceImpl::Publish(
    grpc::CallbackServerContext* context, const v1::PublishRequest* request,
    v1::PublishResponse* response) {
  common::RpcScope rpc(context, "Publish");
  absl::StatusOr<std::string> payload = PayloadFromJson(request->payload());
  if (!payload.ok()) return rpc.Finish(payload.status());
  absl::Status status = bridge_.Publish(request->topic(), *std::move(payload),
                                        request->has_qos() ? request->qos() : 1,
                                        request->retain());
  if (status.ok()) {
    response->set_success(true);
    response->set_message("Message published");
  }
  return rpc.Finish(status);
}

grpc::ServerWriteReactor<v1::TopicEvent>* MqttBridgeServiceImpl::Subscribe(
    grpc::CallbackServerContext* context, const v1::SubscribeRequest* request) {
  auto* stream = new SubscribeStream(*this, context);
  stream->Begin(*request);
  return stream;
}

grpc::ServerUnaryReactor* MqttBridgeServiceImpl::SendCommand(
    grpc::CallbackServerContext* context, const v1::SendCommandRequest* request,
    v1::SendCommandResponse* response) {
  std::optional<double> timeout;
  if (request->has_timeout()) timeout = request->timeout();
  absl::StatusOr<CommandSpec> spec =
      ParseCommandRequest(request->instance_id(), request->device_id(),
                          request->command(), request->values(), timeout);
  if (!spec.ok()) {
    common::RpcScope rpc(context, "SendCommand");
    return rpc.Finish(spec.status());
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const std::string command_id = spec->command_id;
  const absl::Duration waited = spec->timeout;
  absl::StatusOr<std::string> sent =
      bridge_.SendCommand(*spec, [this, context, reactor, response, command_id,
                                  waited](CommandOutcome outcome) {
        // Possibly on the MQTT network thread: finish elsewhere.
        events_.Schedule([context, reactor, response, command_id, waited,
                          outcome = std::move(outcome)] {
          common::RpcScope rpc(context, "SendCommand");
          absl::Status status;
          switch (outcome.kind) {
            case CommandOutcome::Kind::kResponse:
              response->set_success(true);
              response->set_command_id(command_id);
              response->set_response(PayloadToJson(outcome.response));
              response->set_latency_ms(
                  absl::ToDoubleMilliseconds(outcome.latency));
              break;
            case CommandOutcome::Kind::kTimeout:
              status = common::WithReason(
                  absl::DeadlineExceededError(
                      absl::StrCat("no response to command ", command_id,
                                   " within ", absl::FormatDuration(waited))),
                  kCommandTimeout, {{"command_id", command_id}});
              break;
            case CommandOutcome::Kind::kCancelled:
              status = ShuttingDown();
              break;
          }
          rpc.Finish(status, reactor);
        });
      });
  if (!sent.ok()) {
    common::RpcScope rpc(context, "SendCommand");
    rpc.Finish(sent.status(), reactor);
  } else if (waited == absl::ZeroDuration()) {
    common::RpcScope rpc(context, "SendCommand");
    response->set_success(true);
    response->set_command_id(command_id);
    response->set_response("null");
    response->set_latency_ms(0);
    rpc.Finish(absl::OkStatus(), reactor);
  }
  return reactor;
}

grpc::ServerUnaryReactor* MqttBridgeServiceImpl::GetInstanceDevices(
    grpc::CallbackServerContext* context,
    const v1::GetInstanceDevicesRequest* request,
    v1::GetInstanceDevicesResponse* response) {
  common::RpcScope rpc(context, "GetInstanceDevices");
  if (absl::Status s = sdk::ValidateId(request->instance_id()); !s.ok()) {
    return rpc.Finish(
        common::WithReason(absl::InvalidArgumentError(absl::StrCat(
                               "invalid instance id: ", s.message())),
                           kInvalidInstanceId));
  }
  std::optional<InstanceView> instance =
      bridge_.cache().Instance(request->instance_id());
  if (instance.has_value()) {
    for (const DeviceView& device : instance->devices) {
      ToProto(device, instance->instance_id, response->add_devices());
    }
  }
  return rpc.Finish(absl::OkStatus());
}

grpc::ServerUnaryReactor* MqttBridgeServiceImpl::ListInstanceStates(
    grpc::CallbackServerContext* context, const v1::ListInstanceStatesRequest*,
    v1::ListInstanceStatesResponse* response) {
  common::RpcScope rpc(context, "ListInstanceStates");
  for (const InstanceView& instance : bridge_.cache().Instances()) {
    v1::InstanceState* out = response->add_instances();
    out->set_instance_id(instance.instance_id);
    out->set_status(instance.status);
    out->set_last_seen(Timestamp(instance.last_seen));
    for (const DeviceView& device : instance.devices) {
      ToProto(device, instance.instance_id, out->add_devices());
    }
  }
  return rpc.Finish(absl::OkStatus());
}

grpc::ServerUnaryReactor* MqttBridgeServiceImpl::ClearInstanceTopics(
    grpc::CallbackServerContext* context,
    const v1::ClearInstanceTopicsRequest* request,
    v1::ClearResponse* response) {
  common::RpcScope rpc(context, "ClearInstanceTopics");
  absl::StatusOr<int64_t> cleared =
      bridge_.ClearInstance(request->instance_id());
  if (cleared.ok()) {
    response->set_status("success");
    response->set_message(absl::StrCat("All MQTT topics cleared for instance ",
                                       request->instance_id()));
    response->set_cleared(static_cast<int32_t>(*cleared));
  }
  return rpc.Finish(cleared.status());
}

grpc::ServerUnaryReactor* MqttBridgeServiceImpl::ClearAll(
    grpc::CallbackServerContext* context, const v1::ClearAllRequest*,
    v1::ClearResponse* response) {
  common::RpcScope rpc(context, "ClearAll");
  absl::StatusOr<int64_t> cleared = bridge_.ClearAll();
  if (cleared.ok()) {
    response->set_status("success");
    response->set_message("All IoT2MQTT topics cleared from MQTT broker");
    response->set_cleared(static_cast<int32_t>(*cleared));
  }
  return rpc.Finish(cleared.status());
}

}  // namespace iot2mqtt::mqtt_bridge
