#include "services/mqtt_bridge/config_client.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "services/common/service_client.h"
#include "services/common/status.h"

namespace iot2mqtt::mqtt_bridge {
namespace {

// A cursor the config service can never know: a watch started with it
// begins with a resync marker, sent after the service fixed the stream's
// position (docs/api.md, "Resuming"). Without a cursor the stream would
// start silently, and a change made between the caller's last read and
// that moment would be lost.
constexpr char kUnknownCursor[] = "resync";

BrokerSettings FromProto(const config::v1::MqttSettings& proto) {
  BrokerSettings s;
  s.host = proto.host();
  s.port = proto.port() > 0 ? proto.port() : 1883;
  s.username = proto.username();
  s.password = proto.password();
  if (!proto.base_topic().empty()) s.base_topic = proto.base_topic();
  if (!proto.client_prefix().empty()) s.client_prefix = proto.client_prefix();
  s.keepalive = proto.keepalive() > 0 ? proto.keepalive() : 60;
  return s;
}

}  // namespace

GrpcConfigClient::GrpcConfigClient(std::string address, absl::Duration timeout)
    : address_(std::move(address)), timeout_(timeout) {
  // Follows a restarted config service quickly.
  stub_ =
      config::v1::ConfigService::NewStub(common::MakeServiceChannel(address_));
}

absl::StatusOr<BrokerSettings> GrpcConfigClient::Resolve() {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoMilliseconds(timeout_));
  config::v1::ResolveMqttSettingsResponse response;
  grpc::Status status = stub_->ResolveMqttSettings(&context, {}, &response);
  if (!status.ok()) {
    return common::WithReason(
        absl::UnavailableError(
            absl::StrCat("the config service (", address_,
                         ") did not answer: ", status.error_message())),
        kConfigUnavailable);
  }
  return FromProto(response.settings());
}

absl::Status GrpcConfigClient::Watch(
    const std::string& after,
    const std::function<bool(const SettingsChange&)>& on_change) {
  grpc::ClientContext context;
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return absl::CancelledError("watch cancelled");
    watching_ = &context;
  }
  config::v1::WatchChangesRequest request;
  request.set_after(after.empty() ? std::string(kUnknownCursor) : after);
  std::unique_ptr<grpc::ClientReader<config::v1::ChangeEvent>> reader =
      stub_->WatchChanges(&context, request);
  config::v1::ChangeEvent event;
  while (reader->Read(&event)) {
    SettingsChange change;
    change.cursor = event.cursor();
    change.resync = event.resync();
    change.mqtt = event.kind() == config::v1::ChangeEvent::SETTINGS &&
                  (event.settings().empty() || event.settings() == "mqtt");
    if (!on_change(change)) {
      context.TryCancel();
      break;
    }
  }
  grpc::Status status = reader->Finish();
  {
    absl::MutexLock lock(&mu_);
    watching_ = nullptr;
  }
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

void GrpcConfigClient::CancelWatch() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  if (watching_ != nullptr) watching_->TryCancel();
}

}  // namespace iot2mqtt::mqtt_bridge
