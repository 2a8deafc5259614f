#include "services/config/config_service.h"

#include <string>
#include <utility>

#include "services/common/rpc_scope.h"

namespace iot2mqtt::config {
namespace {

// Fills the summary fields, which v1::DeviceConfigSummary and v1::DeviceConfig
// share.
template <typename Proto>
void ToProto(const DeviceConfigSummary& from, Proto* to) {
  to->set_mac_address(from.mac_address);
  if (from.device_name) to->set_device_name(*from.device_name);
  if (from.device_entity_id) to->set_device_entity_id(*from.device_entity_id);
  if (from.enable_ota) to->set_enable_ota(*from.enable_ota);
}

void ToProto(DeviceConfig from, v1::DeviceConfig* to) {
  ToProto(from.summary, to);
  to->set_content(std::move(from.content));
}

}  // namespace

grpc::ServerUnaryReactor* ConfigServiceImpl::ListDeviceConfigs(
    grpc::CallbackServerContext* context,
    const v1::ListDeviceConfigsRequest* request,
    v1::ListDeviceConfigsResponse* response) {
  common::RpcScope rpc(context, "ListDeviceConfigs");
  absl::StatusOr<std::vector<DeviceConfigSummary>> configs = store_.List();
  if (configs.ok()) {
    for (const DeviceConfigSummary& config : *configs) {
      ToProto(config, response->add_configs());
    }
    response->set_count(response->configs_size());
  }
  return rpc.Finish(configs.status());
}

grpc::ServerUnaryReactor* ConfigServiceImpl::GetDeviceConfig(
    grpc::CallbackServerContext* context,
    const v1::GetDeviceConfigRequest* request,
    v1::GetDeviceConfigResponse* response) {
  common::RpcScope rpc(context, "GetDeviceConfig");
  absl::StatusOr<DeviceConfig> config = store_.Get(request->mac_address());
  if (config.ok()) {
    ToProto(*std::move(config), response->mutable_device_config());
  }
  return rpc.Finish(config.status());
}

grpc::ServerUnaryReactor* ConfigServiceImpl::UpdateDeviceConfig(
    grpc::CallbackServerContext* context,
    const v1::UpdateDeviceConfigRequest* request,
    v1::UpdateDeviceConfigResponse* response) {
  common::RpcScope rpc(context, "UpdateDeviceConfig");
  absl::StatusOr<DeviceConfig> config =
      store_.Put(request->mac_address(), request->content());
  if (config.ok()) {
    ToProto(*std::move(config), response->mutable_device_config());
  }
  return rpc.Finish(config.status());
}

grpc::ServerUnaryReactor* ConfigServiceImpl::DeleteDeviceConfig(
    grpc::CallbackServerContext* context,
    const v1::DeleteDeviceConfigRequest* request,
    v1::DeleteDeviceConfigResponse* response) {
  common::RpcScope rpc(context, "DeleteDeviceConfig");
  return rpc.Finish(store_.Delete(request->mac_address()));
}

common::HealthVerdict CheckConfigHealth(DeviceConfigStore& store) {
  StoreHealth health = store.CheckHealth();
  common::HealthVerdict verdict;
  verdict.healthy = health.healthy;
  verdict.reason = std::move(health.reason);
  verdict.details["device_configs_dir"] = health.directory;
  if (health.healthy) {
    verdict.details["device_configs_count"] =
        std::to_string(health.config_count);
  }
  return verdict;
}

}  // namespace iot2mqtt::config
