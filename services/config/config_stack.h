#ifndef IOT2MQTT_SERVICES_CONFIG_CONFIG_STACK_H_
#define IOT2MQTT_SERVICES_CONFIG_CONFIG_STACK_H_

// Everything the config service is made of, built over one data directory:
// main() serves it, tests build it in a temporary directory.
//
//   <data_dir>/.env               settings (SettingsStore)
//   <data_dir>/instances/         instance documents (InstanceStore)
//   <data_dir>/secrets/           encrypted secret values (FileSecretVault)
//   <data_dir>/auth/              access-key hash, token secret
//   <data_dir>/discovered_devices.json  what discovery scans found
//   <connectors_dir>/             the catalogue (read only)
//   <esp32_dir>/                  ESP32 device configs (never created)

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/registry.h"
#include "services/common/work_pool.h"
#include "services/config/access_keys.h"
#include "services/config/catalogue.h"
#include "services/config/change_log.h"
#include "services/config/config_metrics.h"
#include "services/config/config_service.h"
#include "services/config/device_config_store.h"
#include "services/config/discovered_device_store.h"
#include "services/config/file_secret_vault.h"
#include "services/config/instance_store.h"
#include "services/config/mqtt_settings.h"
#include "services/config/settings_store.h"
#include "services/config/token_service.h"

namespace iot2mqtt::config {

struct ConfigStackOptions {
  std::string data_dir;
  std::string connectors_dir;  // Default <data_dir>/connectors.
  std::string esp32_dir;
  int worker_threads = 4;
  int history_limit = 10;
  int backup_limit = 10;
  size_t change_log_capacity = 1024;
  // How long an issued bearer token is valid.
  absl::Duration token_lifetime =
      absl::Seconds(TokenService::kDefaultLifetimeSeconds);
};

class ConfigStack {
 public:
  // Creates the data directories it owns; fails when the secrets store
  // can't be opened.
  static absl::StatusOr<std::unique_ptr<ConfigStack>> Open(
      ConfigStackOptions options,
      std::shared_ptr<prometheus::Registry> registry =
          std::make_shared<prometheus::Registry>());

  ConfigServiceImpl& service() { return *service_; }
  DeviceConfigStore& device_configs() { return *device_configs_; }
  SettingsStore& settings() { return *settings_; }
  MqttSettingsStore& mqtt() { return *mqtt_; }
  AccessKeyStore& access_keys() { return *access_keys_; }
  TokenService& tokens() { return *tokens_; }
  ConnectorCatalogue& catalogue() { return *catalogue_; }
  InstanceStore& instances() { return *instances_; }
  DiscoveredDeviceStore& discovered_devices() { return *discovered_devices_; }
  FileSecretVault& vault() { return *vault_; }
  ChangeLog& changes() { return *changes_; }
  const std::shared_ptr<prometheus::Registry>& registry() { return registry_; }
  const ConfigStackOptions& options() const { return options_; }

 private:
  ConfigStack() = default;

  ConfigStackOptions options_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<FileSecretVault> vault_;
  std::unique_ptr<AccessKeyStore> access_keys_;
  std::unique_ptr<TokenService> tokens_;
  std::unique_ptr<Authenticator> authenticator_;
  std::unique_ptr<SettingsStore> settings_;
  std::unique_ptr<MqttSettingsStore> mqtt_;
  std::unique_ptr<ConnectorCatalogue> catalogue_;
  std::unique_ptr<InstanceStore> instances_;
  std::unique_ptr<DiscoveredDeviceStore> discovered_devices_;
  std::unique_ptr<FileDeviceConfigStore> files_;
  std::unique_ptr<ConfigMetrics> metrics_;
  std::unique_ptr<InstrumentedDeviceConfigStore> device_configs_;
  std::unique_ptr<ChangeLog> changes_;
  // Last but one: its threads finish their work before the stores go.
  std::unique_ptr<common::WorkPool> pool_;
  std::unique_ptr<ConfigServiceImpl> service_;
};

}  // namespace iot2mqtt::config

#endif  // IOT2MQTT_SERVICES_CONFIG_CONFIG_STACK_H_
