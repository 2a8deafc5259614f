#include "services/config/config_metrics.h"

#include <string>

#include "absl/time/clock.h"

namespace iot2mqtt::config {
namespace {

// File operations take from a tenth of a millisecond (a cached read) to
// around a second (fsync on a busy disk).
const prometheus::Histogram::BucketBoundaries& DurationBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
      0.025,  0.05,    0.1,    0.25,  0.5,    1.0};
  return *buckets;
}

// Times one store call and records it.
class Timer {
 public:
  Timer(ConfigMetrics& metrics, ConfigMetrics::Operation operation)
      : metrics_(metrics), operation_(operation), start_(absl::Now()) {}
  void Done(bool success) {
    metrics_.RecordOperation(operation_, success, absl::Now() - start_);
  }

 private:
  ConfigMetrics& metrics_;
  ConfigMetrics::Operation operation_;
  absl::Time start_;
};

}  // namespace

absl::string_view ConfigMetrics::Name(Operation operation) {
  switch (operation) {
    case Operation::kList:
      return "list";
    case Operation::kGet:
      return "get";
    case Operation::kSave:
      return "save";
    case Operation::kDelete:
      return "delete";
  }
  return "unknown";
}

ConfigMetrics::ConfigMetrics(prometheus::Registry& registry) {
  auto& operations = prometheus::BuildCounter()
                         .Name("iot_config_operations_total")
                         .Help("Device config operations by outcome.")
                         .Register(registry);
  auto& durations = prometheus::BuildHistogram()
                        .Name("iot_config_operation_duration_seconds")
                        .Help("Duration of device config operations.")
                        .Register(registry);
  for (int i = 0; i < kOperations; ++i) {
    std::string name(Name(static_cast<Operation>(i)));
    series_[i].success =
        &operations.Add({{"operation", name}, {"status", "success"}});
    series_[i].error =
        &operations.Add({{"operation", name}, {"status", "error"}});
    series_[i].duration =
        &durations.Add({{"operation", name}}, DurationBuckets());
  }
  files_count_ = &prometheus::BuildGauge()
                      .Name("iot_config_files_count")
                      .Help("Number of valid device config files.")
                      .Register(registry)
                      .Add({});
}

void ConfigMetrics::RecordOperation(Operation operation, bool success,
                                    absl::Duration duration) {
  Series& series = series_[static_cast<int>(operation)];
  (success ? series.success : series.error)->Increment();
  series.duration->Observe(absl::ToDoubleSeconds(duration));
}

void ConfigMetrics::SetFilesCount(int count) { files_count_->Set(count); }

absl::StatusOr<std::vector<DeviceConfigSummary>>
InstrumentedDeviceConfigStore::List() {
  Timer timer(metrics_, ConfigMetrics::Operation::kList);
  absl::StatusOr<std::vector<DeviceConfigSummary>> configs = store_.List();
  timer.Done(configs.ok());
  if (configs.ok()) metrics_.SetFilesCount(static_cast<int>(configs->size()));
  return configs;
}

absl::StatusOr<DeviceConfig> InstrumentedDeviceConfigStore::Get(
    absl::string_view mac_address) {
  Timer timer(metrics_, ConfigMetrics::Operation::kGet);
  absl::StatusOr<DeviceConfig> config = store_.Get(mac_address);
  timer.Done(config.ok());
  return config;
}

absl::StatusOr<DeviceConfig> InstrumentedDeviceConfigStore::Put(
    absl::string_view mac_address, absl::string_view content) {
  Timer timer(metrics_, ConfigMetrics::Operation::kSave);
  absl::StatusOr<DeviceConfig> config = store_.Put(mac_address, content);
  timer.Done(config.ok());
  if (config.ok()) RefreshFilesCount();
  return config;
}

absl::Status InstrumentedDeviceConfigStore::Delete(
    absl::string_view mac_address) {
  Timer timer(metrics_, ConfigMetrics::Operation::kDelete);
  absl::Status status = store_.Delete(mac_address);
  timer.Done(status.ok());
  if (status.ok()) RefreshFilesCount();
  return status;
}

StoreHealth InstrumentedDeviceConfigStore::CheckHealth() {
  StoreHealth health = store_.CheckHealth();
  metrics_.SetFilesCount(health.config_count);  // 0 while unusable.
  return health;
}

void InstrumentedDeviceConfigStore::RefreshFilesCount() { CheckHealth(); }

}  // namespace iot2mqtt::config
