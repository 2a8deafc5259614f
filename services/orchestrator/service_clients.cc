#include "services/orchestrator/service_clients.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "rapidjson/document.h"
#include "services/common/grpc_status.h"
#include "services/common/service_client.h"

namespace iot2mqtt::orchestrator {
namespace {

namespace cv1 = ::iot2mqtt::config::v1;
namespace bv1 = ::iot2mqtt::mqtt_bridge::v1;

std::chrono::system_clock::time_point DeadlineIn(absl::Duration d) {
  return std::chrono::system_clock::now() +
         std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

ConfigChange::Kind KindOf(cv1::ChangeEvent::Kind kind) {
  switch (kind) {
    case cv1::ChangeEvent::INSTANCE:
      return ConfigChange::Kind::kInstance;
    case cv1::ChangeEvent::SETTINGS:
      return ConfigChange::Kind::kSettings;
    case cv1::ChangeEvent::CATALOGUE:
      return ConfigChange::Kind::kCatalogue;
    default:
      return ConfigChange::Kind::kOther;
  }
}

}  // namespace

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address) {
  return common::MakeServiceChannel(address);
}

// --- Config ------------------------------------------------------------------

GrpcConfigSource::GrpcConfigSource(std::shared_ptr<grpc::Channel> channel,
                                   absl::Duration deadline)
    : stub_(cv1::ConfigService::NewStub(std::move(channel))),
      deadline_(deadline) {}

void GrpcConfigSource::SetDeadline(grpc::ClientContext& context) const {
  context.set_deadline(DeadlineIn(deadline_));
}

absl::StatusOr<std::vector<ConfiguredInstance>>
GrpcConfigSource::ListInstances() {
  grpc::ClientContext context;
  SetDeadline(context);
  cv1::ListInstancesResponse response;
  grpc::Status status = stub_->ListInstances(&context, {}, &response);
  if (!status.ok()) return common::ToAbslStatus(status);
  rapidjson::Document doc;
  doc.Parse(response.instances().c_str(), response.instances().size());
  if (doc.HasParseError() || !doc.IsArray()) {
    return absl::InternalError("ListInstances answered no JSON array");
  }
  std::vector<ConfiguredInstance> instances;
  for (const auto& item : doc.GetArray()) {
    if (!item.IsObject()) continue;
    auto id = item.FindMember("instance_id");
    auto connector = item.FindMember("connector_type");
    if (id == item.MemberEnd() || !id->value.IsString() ||
        connector == item.MemberEnd() || !connector->value.IsString()) {
      continue;
    }
    ConfiguredInstance instance;
    instance.instance_id = id->value.GetString();
    instance.connector = connector->value.GetString();
    auto enabled = item.FindMember("enabled");
    instance.enabled = enabled == item.MemberEnd() ||
                       !enabled->value.IsBool() || enabled->value.GetBool();
    auto devices = item.FindMember("devices");
    if (devices != item.MemberEnd() && devices->value.IsArray()) {
      instance.devices = static_cast<int>(devices->value.Size());
    }
    instances.push_back(std::move(instance));
  }
  return instances;
}

absl::StatusOr<InstanceRuntimeConfig> GrpcConfigSource::GetRuntimeConfig(
    absl::string_view connector, absl::string_view instance_id) {
  grpc::ClientContext context;
  SetDeadline(context);
  cv1::GetRuntimeConfigRequest request;
  request.set_connector(std::string(connector));
  request.set_instance_id(std::string(instance_id));
  cv1::GetRuntimeConfigResponse response;
  grpc::Status status = stub_->GetRuntimeConfig(&context, request, &response);
  if (!status.ok()) return common::ToAbslStatus(status);
  InstanceRuntimeConfig config;
  config.instance_json = std::move(*response.mutable_instance());
  config.secrets_json = std::move(*response.mutable_secrets_file());
  config.enabled = response.enabled();
  return config;
}

absl::StatusOr<std::map<std::string, std::string>> GrpcConfigSource::MqttEnv() {
  grpc::ClientContext context;
  SetDeadline(context);
  cv1::ResolveMqttSettingsResponse response;
  grpc::Status status = stub_->ResolveMqttSettings(&context, {}, &response);
  if (!status.ok()) return common::ToAbslStatus(status);
  const cv1::MqttSettings& s = response.settings();
  std::map<std::string, std::string> env;
  if (!s.host().empty()) env["MQTT_HOST"] = s.host();
  if (s.port() > 0) env["MQTT_PORT"] = absl::StrCat(s.port());
  if (!s.username().empty()) env["MQTT_USERNAME"] = s.username();
  if (!s.base_topic().empty()) env["MQTT_BASE_TOPIC"] = s.base_topic();
  if (!s.client_prefix().empty()) {
    env["MQTT_CLIENT_PREFIX"] = s.client_prefix();
  }
  env["MQTT_QOS"] = absl::StrCat(s.qos());
  env["MQTT_RETAIN"] = s.retain() ? "true" : "false";
  if (s.keepalive() > 0) env["MQTT_KEEPALIVE"] = absl::StrCat(s.keepalive());
  // The password reaches connectors through the secrets file only.
  response.mutable_settings()->mutable_password()->assign(s.password().size(),
                                                          '\0');
  return env;
}

absl::Status GrpcConfigSource::DeleteInstance(absl::string_view connector,
                                              absl::string_view instance_id) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(deadline_ * 2));
  cv1::DeleteInstanceRequest request;
  request.set_connector(std::string(connector));
  request.set_instance_id(std::string(instance_id));
  cv1::DeleteInstanceResponse response;
  return common::ToAbslStatus(
      stub_->DeleteInstance(&context, request, &response));
}

absl::Status GrpcConfigSource::Watch(
    const std::string& after,
    const std::function<void(const ConfigChange&)>& sink) {
  grpc::ClientContext context;
  {
    absl::MutexLock lock(&mu_);
    if (cancelled_) return absl::CancelledError("watch cancelled");
    watching_ = &context;
  }
  cv1::WatchChangesRequest request;
  request.set_after(after);
  std::unique_ptr<grpc::ClientReader<cv1::ChangeEvent>> reader =
      stub_->WatchChanges(&context, request);
  cv1::ChangeEvent event;
  while (reader->Read(&event)) {
    ConfigChange change;
    change.cursor = event.cursor();
    change.kind = KindOf(event.kind());
    change.connector = event.connector();
    change.instance_id = event.instance_id();
    change.resync = event.resync();
    sink(change);
  }
  grpc::Status status = reader->Finish();
  absl::MutexLock lock(&mu_);
  watching_ = nullptr;
  return common::ToAbslStatus(status);
}

void GrpcConfigSource::CancelWatch() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  if (watching_ != nullptr) watching_->TryCancel();
}

absl::StatusOr<std::string> GrpcConfigSource::ListConfiguredIntegrationsJson() {
  grpc::ClientContext context;
  SetDeadline(context);
  cv1::ListConfiguredIntegrationsResponse response;
  grpc::Status status =
      stub_->ListConfiguredIntegrations(&context, {}, &response);
  if (!status.ok()) return common::ToAbslStatus(status);
  return std::move(*response.mutable_integrations());
}

absl::StatusOr<std::string> GrpcConfigSource::ListIntegrationInstancesJson(
    absl::string_view name) {
  grpc::ClientContext context;
  SetDeadline(context);
  cv1::ListIntegrationInstancesRequest request;
  request.set_name(std::string(name));
  cv1::ListIntegrationInstancesResponse response;
  grpc::Status status =
      stub_->ListIntegrationInstances(&context, request, &response);
  if (!status.ok()) return common::ToAbslStatus(status);
  return std::move(*response.mutable_instances());
}

absl::StatusOr<std::string> GrpcConfigSource::GetIntegrationInstanceJson(
    absl::string_view instance_id) {
  grpc::ClientContext context;
  SetDeadline(context);
  cv1::GetIntegrationInstanceRequest request;
  request.set_instance_id(std::string(instance_id));
  cv1::GetIntegrationInstanceResponse response;
  grpc::Status status =
      stub_->GetIntegrationInstance(&context, request, &response);
  if (!status.ok()) return common::ToAbslStatus(status);
  return std::move(*response.mutable_instance());
}

// --- Bridge ------------------------------------------------------------------

GrpcBridgeClient::GrpcBridgeClient(std::shared_ptr<grpc::Channel> channel,
                                   absl::Duration deadline)
    : stub_(bv1::MqttBridgeService::NewStub(std::move(channel))),
      deadline_(deadline) {}

void GrpcBridgeClient::SetDeadline(grpc::ClientContext& context) const {
  context.set_deadline(DeadlineIn(deadline_));
}

absl::StatusOr<int64_t> GrpcBridgeClient::ClearInstanceTopics(
    absl::string_view instance_id) {
  grpc::ClientContext context;
  SetDeadline(context);
  bv1::ClearInstanceTopicsRequest request;
  request.set_instance_id(std::string(instance_id));
  bv1::ClearResponse response;
  grpc::Status status =
      stub_->ClearInstanceTopics(&context, request, &response);
  if (!status.ok()) return common::ToAbslStatus(status);
  return response.cleared();
}

absl::StatusOr<bool> GrpcBridgeClient::Connected() {
  grpc::ClientContext context;
  SetDeadline(context);
  bv1::GetStatusResponse response;
  grpc::Status status = stub_->GetStatus(&context, {}, &response);
  if (!status.ok()) return common::ToAbslStatus(status);
  return response.connected();
}

absl::StatusOr<std::map<std::string, std::string>>
GrpcBridgeClient::InstanceStatuses() {
  grpc::ClientContext context;
  SetDeadline(context);
  bv1::ListInstanceStatesResponse response;
  grpc::Status status = stub_->ListInstanceStates(&context, {}, &response);
  if (!status.ok()) return common::ToAbslStatus(status);
  std::map<std::string, std::string> statuses;
  for (const bv1::InstanceState& state : response.instances()) {
    statuses[state.instance_id()] = state.status();
  }
  return statuses;
}

}  // namespace iot2mqtt::orchestrator
