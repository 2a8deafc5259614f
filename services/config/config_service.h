#ifndef IOT2MQTT_SERVICES_CONFIG_CONFIG_SERVICE_H_
#define IOT2MQTT_SERVICES_CONFIG_CONFIG_SERVICE_H_

#include "iot2mqtt/config/v1/config_service.grpc.pb.h"
#include "services/common/server_runner.h"
#include "services/config/device_config_store.h"

namespace iot2mqtt::config {

// iot2mqtt.config.v1.ConfigService over a DeviceConfigStore, which validates
// the arguments and owns every rule; the handlers only translate.
class ConfigServiceImpl final
    : public iot2mqtt::config::v1::ConfigService::CallbackService {
 public:
  // `store` is not owned and must outlive the service.
  explicit ConfigServiceImpl(DeviceConfigStore& store) : store_(store) {}

  grpc::ServerUnaryReactor* ListDeviceConfigs(
      grpc::CallbackServerContext* context,
      const v1::ListDeviceConfigsRequest* request,
      v1::ListDeviceConfigsResponse* response) override;
  grpc::ServerUnaryReactor* GetDeviceConfig(
      grpc::CallbackServerContext* context,
      const v1::GetDeviceConfigRequest* request,
      v1::GetDeviceConfigResponse* response) override;
  grpc::ServerUnaryReactor* UpdateDeviceConfig(
      grpc::CallbackServerContext* context,
      const v1::UpdateDeviceConfigRequest* request,
      v1::UpdateDeviceConfigResponse* response) override;
  grpc::ServerUnaryReactor* DeleteDeviceConfig(
      grpc::CallbackServerContext* context,
      const v1::DeleteDeviceConfigRequest* request,
      v1::DeleteDeviceConfigResponse* response) override;

 private:
  DeviceConfigStore& store_;
};

// The health probe of the config service: the store's verdict with the
// details `device_configs_dir` and `device_configs_count`.
common::HealthVerdict CheckConfigHealth(DeviceConfigStore& store);

}  // namespace iot2mqtt::config

#endif  // IOT2MQTT_SERVICES_CONFIG_CONFIG_SERVICE_H_
