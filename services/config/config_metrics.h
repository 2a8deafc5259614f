#ifndef IOT2MQTT_SERVICES_CONFIG_CONFIG_METRICS_H_
#define IOT2MQTT_SERVICES_CONFIG_CONFIG_METRICS_H_

// Prometheus metrics of the device-config store:
//   iot_config_operations_total{operation="list|get|save|delete",
//                               status="success|error"}       counter
//   iot_config_operation_duration_seconds{operation}          histogram
//   iot_config_files_count                                    gauge
// The gauge counts valid configuration files; it is refreshed after list,
// successful save and delete, and on every health check.

#include <array>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "services/config/device_config_store.h"

namespace iot2mqtt::config {

class ConfigMetrics {
 public:
  enum class Operation { kList = 0, kGet, kSave, kDelete };

  // Registers the metric families on `registry`, which must outlive this.
  explicit ConfigMetrics(prometheus::Registry& registry);
  ConfigMetrics(const ConfigMetrics&) = delete;
  ConfigMetrics& operator=(const ConfigMetrics&) = delete;

  void RecordOperation(Operation operation, bool success,
                       absl::Duration duration);
  void SetFilesCount(int count);

  // The `operation` label value: "list", "get", "save", "delete".
  static absl::string_view Name(Operation operation);

 private:
  static constexpr int kOperations = 4;
  struct Series {
    prometheus::Counter* success = nullptr;
    prometheus::Counter* error = nullptr;
    prometheus::Histogram* duration = nullptr;
  };
  std::array<Series, kOperations> series_;
  prometheus::Gauge* files_count_ = nullptr;
};

// Decorates a store with metrics; the handlers stay free of them.
class InstrumentedDeviceConfigStore final : public DeviceConfigStore {
 public:
  // Neither is owned; both must outlive this.
  InstrumentedDeviceConfigStore(DeviceConfigStore& store,
                                ConfigMetrics& metrics)
      : store_(store), metrics_(metrics) {}

  absl::StatusOr<std::vector<DeviceConfigSummary>> List() override;
  absl::StatusOr<DeviceConfig> Get(absl::string_view mac_address) override;
  absl::StatusOr<DeviceConfig> Put(absl::string_view mac_address,
                                   absl::string_view content) override;
  absl::Status Delete(absl::string_view mac_address) override;
  StoreHealth CheckHealth() override;

 private:
  void RefreshFilesCount();

  DeviceConfigStore& store_;
  ConfigMetrics& metrics_;
};

}  // namespace iot2mqtt::config

#endif  // IOT2MQTT_SERVICES_CONFIG_CONFIG_METRICS_H_
