#include "services/config/config_stack.h"

#include <set>
#include <utility>

#include "services/config/file_io.h"

namespace iot2mqtt::config {

absl::StatusOr<std::unique_ptr<ConfigStack>> ConfigStack::Open(
    ConfigStackOptions options,
    std::shared_ptr<prometheus::Registry> registry) {
  if (options.connectors_dir.empty()) {
    options.connectors_dir = options.data_dir + "/connectors";
  }
  if (absl::Status s = MakeDirectories(options.data_dir, 0755); !s.ok()) {
    return s;
  }
  if (absl::Status s = MakeDirectories(options.data_dir + "/instances", 0755);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = MakeDirectories(options.data_dir + "/auth", 0700);
      !s.ok()) {
    return s;
  }
  std::unique_ptr<ConfigStack> stack(new ConfigStack());
  stack->options_ = options;
  stack->registry_ = std::move(registry);
  absl::StatusOr<std::unique_ptr<FileSecretVault>> vault =
      FileSecretVault::Open(options.data_dir + "/secrets");
  if (!vault.ok()) return vault.status();
  stack->vault_ = *std::move(vault);
  stack->access_keys_ =
      std::make_unique<AccessKeyStore>(options.data_dir + "/auth");
  stack->tokens_ = std::make_unique<TokenService>(options.data_dir + "/auth",
                                                 options.token_lifetime);
  stack->authenticator_ =
      std::make_unique<Authenticator>(*stack->access_keys_, *stack->tokens_);
  stack->settings_ =
      std::make_unique<SettingsStore>(options.data_dir, options.backup_limit);
  stack->mqtt_ =
      std::make_unique<MqttSettingsStore>(*stack->settings_, *stack->vault_);
  stack->catalogue_ =
      std::make_unique<ConnectorCatalogue>(options.connectors_dir);

  ConnectorCatalogue* catalogue = stack->catalogue_.get();
  InstanceStoreOptions instance_options;
  instance_options.instances_dir = options.data_dir + "/instances";
  instance_options.history_limit = options.history_limit;
  instance_options.declared_secrets = [catalogue](const std::string& c) {
    absl::StatusOr<std::set<std::string>> names =
        catalogue->SecretFieldNames(c);
    return names.ok() ? *names : std::set<std::string>{};
  };
  instance_options.display_name = [catalogue](const std::string& c) {
    absl::StatusOr<std::string> name = catalogue->DisplayName(c);
    return name.ok() ? *name : c;
  };
  stack->instances_ = std::make_unique<InstanceStore>(
      std::move(instance_options), *stack->vault_);

  DiscoveredDeviceStoreOptions discovered_options;
  discovered_options.data_dir = options.data_dir;
  stack->discovered_devices_ =
      std::make_unique<DiscoveredDeviceStore>(std::move(discovered_options));

  stack->files_ = std::make_unique<FileDeviceConfigStore>(options.esp32_dir);
  stack->metrics_ = std::make_unique<ConfigMetrics>(*stack->registry_);
  stack->device_configs_ = std::make_unique<InstrumentedDeviceConfigStore>(
      *stack->files_, *stack->metrics_);
  stack->changes_ = std::make_unique<ChangeLog>(options.change_log_capacity);
  stack->pool_ = std::make_unique<common::WorkPool>(options.worker_threads);
  prometheus::Family<prometheus::Counter>* changes_total =
      &prometheus::BuildCounter()
           .Name("iot_config_changes_total")
           .Help("Changes made through the config service, by kind and action")
           .Register(*stack->registry_);
  stack->service_ = std::make_unique<ConfigServiceImpl>(ConfigDomain{
      *stack->device_configs_, *stack->settings_, *stack->mqtt_,
      *stack->access_keys_, *stack->tokens_, *stack->authenticator_,
      *stack->catalogue_, *stack->instances_, *stack->discovered_devices_,
      *stack->vault_, *stack->changes_, *stack->pool_, changes_total});
  return stack;
}

}  // namespace iot2mqtt::config
