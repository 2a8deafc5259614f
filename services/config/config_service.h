#ifndef IOT2MQTT_SERVICES_CONFIG_CONFIG_SERVICE_H_
#define IOT2MQTT_SERVICES_CONFIG_CONFIG_SERVICE_H_

#include "iot2mqtt/config/v1/config_service.grpc.pb.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "services/common/server_runner.h"
#include "services/common/work_pool.h"
#include "services/config/access_keys.h"
#include "services/config/catalogue.h"
#include "services/config/change_log.h"
#include "services/config/device_config_store.h"
#include "services/config/discovered_device_store.h"
#include "services/config/file_secret_vault.h"
#include "services/config/instance_store.h"
#include "services/config/mqtt_settings.h"
#include "services/config/settings_store.h"
#include "services/config/token_service.h"

namespace iot2mqtt::config {

// Everything the service serves; none of it owned.
struct ConfigDomain {
  DeviceConfigStore& device_configs;
  SettingsStore& settings;
  MqttSettingsStore& mqtt;
  AccessKeyStore& access_keys;
  TokenService& tokens;
  Authenticator& authenticator;
  ConnectorCatalogue& catalogue;
  InstanceStore& instances;
  DiscoveredDeviceStore& discovered_devices;
  FileSecretVault& vault;
  ChangeLog& changes;
  // Runs the handlers' blocking work (file I/O, password hashing).
  common::WorkPool& pool;
  // Counts every change event (iot_config_changes_total); may be null.
  prometheus::Family<prometheus::Counter>* changes_total = nullptr;
};

// Metadata the gateway sets to the HTTP client's address.
inline constexpr char kClientAddressMetadata[] = "x-client-address";

// iot2mqtt.config.v1.ConfigService over the domain stores, which validate
// the arguments and own every rule; the handlers only translate, run the
// work off the gRPC threads and append change events.
class ConfigServiceImpl final
    : public iot2mqtt::config::v1::ConfigService::CallbackService {
 public:
  explicit ConfigServiceImpl(ConfigDomain domain) : d_(domain) {}

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

  grpc::ServerUnaryReactor* Login(grpc::CallbackServerContext* context,
                                  const v1::LoginRequest* request,
                                  v1::LoginResponse* response) override;
  grpc::ServerUnaryReactor* VerifyToken(
      grpc::CallbackServerContext* context,
      const v1::VerifyTokenRequest* request,
      v1::VerifyTokenResponse* response) override;
  grpc::ServerUnaryReactor* GetSetupStatus(
      grpc::CallbackServerContext* context,
      const v1::GetSetupStatusRequest* request,
      v1::GetSetupStatusResponse* response) override;

  grpc::ServerUnaryReactor* GetMqttSettings(
      grpc::CallbackServerContext* context,
      const v1::GetMqttSettingsRequest* request,
      v1::GetMqttSettingsResponse* response) override;
  grpc::ServerUnaryReactor* UpdateMqttSettings(
      grpc::CallbackServerContext* context,
      const v1::UpdateMqttSettingsRequest* request,
      v1::UpdateMqttSettingsResponse* response) override;
  grpc::ServerUnaryReactor* ResolveMqttSettings(
      grpc::CallbackServerContext* context,
      const v1::ResolveMqttSettingsRequest* request,
      v1::ResolveMqttSettingsResponse* response) override;
  grpc::ServerUnaryReactor* RotateSecretsKey(
      grpc::CallbackServerContext* context,
      const v1::RotateSecretsKeyRequest* request,
      v1::RotateSecretsKeyResponse* response) override;

  grpc::ServerUnaryReactor* ListConnectors(
      grpc::CallbackServerContext* context,
      const v1::ListConnectorsRequest* request,
      v1::ListConnectorsResponse* response) override;
  grpc::ServerUnaryReactor* ListAvailableConnectors(
      grpc::CallbackServerContext* context,
      const v1::ListAvailableConnectorsRequest* request,
      v1::ListAvailableConnectorsResponse* response) override;
  grpc::ServerUnaryReactor* GetConnectorSetup(
      grpc::CallbackServerContext* context,
      const v1::GetConnectorSetupRequest* request,
      v1::GetConnectorSetupResponse* response) override;
  grpc::ServerUnaryReactor* ListIntegrations(
      grpc::CallbackServerContext* context,
      const v1::ListIntegrationsRequest* request,
      v1::ListIntegrationsResponse* response) override;
  grpc::ServerUnaryReactor* GetIntegrationMeta(
      grpc::CallbackServerContext* context,
      const v1::GetIntegrationMetaRequest* request,
      v1::GetIntegrationMetaResponse* response) override;
  grpc::ServerUnaryReactor* GetIntegrationIcon(
      grpc::CallbackServerContext* context,
      const v1::GetIntegrationIconRequest* request,
      api::v1::HttpBody* response) override;
  grpc::ServerUnaryReactor* ValidateIntegrationConfig(
      grpc::CallbackServerContext* context,
      const v1::ValidateIntegrationConfigRequest* request,
      v1::ValidateIntegrationConfigResponse* response) override;

  grpc::ServerUnaryReactor* ListInstances(
      grpc::CallbackServerContext* context,
      const v1::ListInstancesRequest* request,
      v1::ListInstancesResponse* response) override;
  grpc::ServerUnaryReactor* CreateInstance(
      grpc::CallbackServerContext* context,
      const v1::CreateInstanceRequest* request,
      v1::CreateInstanceResponse* response) override;
  grpc::ServerUnaryReactor* GetInstance(
      grpc::CallbackServerContext* context,
      const v1::GetInstanceRequest* request,
      v1::GetInstanceResponse* response) override;
  grpc::ServerUnaryReactor* UpdateInstance(
      grpc::CallbackServerContext* context,
      const v1::UpdateInstanceRequest* request,
      v1::UpdateInstanceResponse* response) override;
  grpc::ServerUnaryReactor* DeleteInstance(
      grpc::CallbackServerContext* context,
      const v1::DeleteInstanceRequest* request,
      v1::DeleteInstanceResponse* response) override;
  grpc::ServerUnaryReactor* ListConfiguredIntegrations(
      grpc::CallbackServerContext* context,
      const v1::ListConfiguredIntegrationsRequest* request,
      v1::ListConfiguredIntegrationsResponse* response) override;
  grpc::ServerUnaryReactor* ListIntegrationInstances(
      grpc::CallbackServerContext* context,
      const v1::ListIntegrationInstancesRequest* request,
      v1::ListIntegrationInstancesResponse* response) override;
  grpc::ServerUnaryReactor* GetIntegrationInstance(
      grpc::CallbackServerContext* context,
      const v1::GetIntegrationInstanceRequest* request,
      v1::GetIntegrationInstanceResponse* response) override;
  grpc::ServerUnaryReactor* GetRuntimeConfig(
      grpc::CallbackServerContext* context,
      const v1::GetRuntimeConfigRequest* request,
      v1::GetRuntimeConfigResponse* response) override;

  grpc::ServerUnaryReactor* ListDiscoveredDevices(
      grpc::CallbackServerContext* context,
      const v1::ListDiscoveredDevicesRequest* request,
      v1::ListDiscoveredDevicesResponse* response) override;
  grpc::ServerUnaryReactor* RecordDiscoveredDevices(
      grpc::CallbackServerContext* context,
      const v1::RecordDiscoveredDevicesRequest* request,
      v1::RecordDiscoveredDevicesResponse* response) override;
  grpc::ServerUnaryReactor* MarkDiscoveredDeviceAdded(
      grpc::CallbackServerContext* context,
      const v1::MarkDiscoveredDeviceAddedRequest* request,
      v1::DiscoveredDevice* response) override;
  grpc::ServerUnaryReactor* DeleteDiscoveredDevice(
      grpc::CallbackServerContext* context,
      const v1::DeleteDiscoveredDeviceRequest* request,
      v1::DeleteDiscoveredDeviceResponse* response) override;

  grpc::ServerWriteReactor<v1::ChangeEvent>* WatchChanges(
      grpc::CallbackServerContext* context,
      const v1::WatchChangesRequest* request) override;

 private:
  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* context,
                                absl::string_view rpc,
                                std::function<absl::Status()> body) {
    return common::Offload(context, rpc, d_.pool, std::move(body));
  }
  void Changed(Change::Kind kind, Change::Action action,
               std::string connector = "", std::string instance_id = "",
               std::string mac_address = "", std::string settings = "");
  // A DISCOVERED_DEVICE event; `device_id` "" when several changed.
  void DiscoveredDeviceChanged(Change::Action action, std::string device_id);

  ConfigDomain d_;
};

// The health probe of the config service: the device-config store's
// verdict with the details `device_configs_dir` and `device_configs_count`.
common::HealthVerdict CheckConfigHealth(DeviceConfigStore& store);

// A change as the proto event.
v1::ChangeEvent ToProto(const Change& change, const ChangeLog& log);

}  // namespace iot2mqtt::config

#endif  // IOT2MQTT_SERVICES_CONFIG_CONFIG_SERVICE_H_
