#include "services/discovery/config_client.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "iot2mqtt/sdk/log.h"
#include "services/common/grpc_status.h"
#include "services/common/rpc_scope.h"
#include "services/common/service_client.h"
#include "services/common/status.h"

namespace iot2mqtt::discovery {
namespace {

namespace cv1 = ::iot2mqtt::config::v1;

std::chrono::system_clock::time_point DeadlineIn(absl::Duration d) {
  return std::chrono::system_clock::now() +
         std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

bool IsNameChar(char c, bool first) {
  if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
  return !first && (c == '_' || c == '-');
}

}  // namespace

bool IsValidName(absl::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!IsNameChar(name[i], i == 0)) return false;
  }
  return true;
}

std::shared_ptr<grpc::Channel> MakeConfigChannel(const std::string& address) {
  return common::MakeServiceChannel(address);
}

ConfigClient::ConfigClient(std::shared_ptr<grpc::Channel> channel,
                           ConfigClientOptions options)
    : stub_(cv1::ConfigService::NewStub(std::move(channel))),
      options_(std::move(options)) {}

void ConfigClient::Prepare(grpc::ClientContext& context,
                           absl::Duration deadline) const {
  context.set_deadline(DeadlineIn(deadline));
  const std::string& correlation_id = sdk::CurrentCorrelationId();
  if (!correlation_id.empty()) {
    context.AddMetadata(common::kCorrelationIdMetadata, correlation_id);
  }
}

absl::StatusOr<std::vector<DiscoveredDevice>> ConfigClient::Record(
    const std::string& integration,
    const std::vector<DiscoveredDevice>& devices, bool scan_completed) {
  grpc::ClientContext context;
  Prepare(context, options_.deadline * 2);
  cv1::RecordDiscoveredDevicesRequest request;
  request.set_integration(integration);
  for (const DiscoveredDevice& device : devices)
    *request.add_devices() = device;
  request.set_scan_completed(scan_completed);
  cv1::RecordDiscoveredDevicesResponse response;
  grpc::Status status =
      stub_->RecordDiscoveredDevices(&context, request, &response);
  if (!status.ok()) return common::ToAbslStatus(status);
  return std::vector<DiscoveredDevice>(
      std::make_move_iterator(response.mutable_devices()->begin()),
      std::make_move_iterator(response.mutable_devices()->end()));
}

absl::StatusOr<std::string> ConfigClient::GetConnectorSetup(
    const std::string& connector) {
  grpc::ClientContext context;
  Prepare(context, options_.deadline);
  cv1::GetConnectorSetupRequest request;
  request.set_name(connector);
  cv1::GetConnectorSetupResponse response;
  grpc::Status status = stub_->GetConnectorSetup(&context, request, &response);
  if (!status.ok()) return common::ToAbslStatus(status);
  return std::move(*response.mutable_setup());
}

absl::StatusOr<ConnectorTooling> ConfigClient::Lookup(
    const std::string& connector) {
  if (!IsValidName(connector)) {
    return common::WithReason(
        absl::InvalidArgumentError(
            "integration must match ^[a-z0-9][a-z0-9_-]{0,62}$"),
        kInvalidConnectorName);
  }
  absl::StatusOr<std::string> setup = GetConnectorSetup(connector);
  if (absl::IsNotFound(setup.status())) {
    return common::WithReason(absl::NotFoundError(absl::StrCat(
                                  "setup.json not found for ", connector)),
                              kIntegrationNotFound,
                              {{"integration", connector}});
  }
  if (!setup.ok()) return setup.status();
  ConnectorTooling tooling;
  tooling.connector_dir = absl::StrCat(options_.connectors_dir, "/", connector);
  tooling.setup_json = *std::move(setup);
  return tooling;
}

absl::StatusOr<DiscoveredDeviceList> ConfigClient::ListDiscoveredDevices(
    const std::string& integration) {
  grpc::ClientContext context;
  Prepare(context, options_.deadline);
  cv1::ListDiscoveredDevicesRequest request;
  request.set_integration(integration);
  cv1::ListDiscoveredDevicesResponse response;
  grpc::Status status =
      stub_->ListDiscoveredDevices(&context, request, &response);
  if (!status.ok()) return common::ToAbslStatus(status);
  DiscoveredDeviceList list;
  list.devices.assign(
      std::make_move_iterator(response.mutable_devices()->begin()),
      std::make_move_iterator(response.mutable_devices()->end()));
  list.last_scan = std::move(*response.mutable_last_scan());
  return list;
}

absl::StatusOr<DiscoveredDevice> ConfigClient::MarkDiscoveredDeviceAdded(
    const std::string& device_id, const std::string& instance_id) {
  grpc::ClientContext context;
  Prepare(context, options_.deadline * 2);
  cv1::MarkDiscoveredDeviceAddedRequest request;
  request.set_device_id(device_id);
  request.set_instance_id(instance_id);
  DiscoveredDevice response;
  grpc::Status status =
      stub_->MarkDiscoveredDeviceAdded(&context, request, &response);
  if (!status.ok()) return common::ToAbslStatus(status);
  return response;
}

absl::Status ConfigClient::DeleteDiscoveredDevice(
    const std::string& device_id) {
  grpc::ClientContext context;
  Prepare(context, options_.deadline * 2);
  cv1::DeleteDiscoveredDeviceRequest request;
  request.set_device_id(device_id);
  cv1::DeleteDiscoveredDeviceResponse response;
  return common::ToAbslStatus(
      stub_->DeleteDiscoveredDevice(&context, request, &response));
}

absl::StatusOr<std::string> ConfigClient::CreateInstance(
    const std::string& instance_json) {
  grpc::ClientContext context;
  Prepare(context, options_.deadline * 2);
  cv1::CreateInstanceRequest request;
  request.set_instance(instance_json);
  cv1::CreateInstanceResponse response;
  grpc::Status status = stub_->CreateInstance(&context, request, &response);
  if (!status.ok()) return common::ToAbslStatus(status);
  return std::move(*response.mutable_result());
}

absl::Status ConfigClient::Ping() {
  grpc::ClientContext context;
  Prepare(context, options_.deadline);
  cv1::GetSetupStatusResponse response;
  grpc::Status status = stub_->GetSetupStatus(&context, {}, &response);
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
      status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return common::ToAbslStatus(status);
  }
  return absl::OkStatus();
}

}  // namespace iot2mqtt::discovery
