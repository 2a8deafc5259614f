#ifndef IOT2MQTT_SERVICES_MQTT_BRIDGE_CONFIG_CLIENT_H_
#define IOT2MQTT_SERVICES_MQTT_BRIDGE_CONFIG_CLIENT_H_

// The bridge's SettingsSource over gRPC: ResolveMqttSettings (with a
// deadline) and WatchChanges on the config service.

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/client_context.h"
#include "iot2mqtt/config/v1/config_service.grpc.pb.h"
#include "services/mqtt_bridge/settings_source.h"

namespace iot2mqtt::mqtt_bridge {

class GrpcConfigClient final : public SettingsSource {
 public:
  // A channel to `address` ("127.0.0.1:50051") that follows a restarted
  // config service quickly; `timeout` is each unary call's deadline.
  explicit GrpcConfigClient(std::string address,
                            absl::Duration timeout = absl::Seconds(5));

  // UNAVAILABLE CONFIG_UNAVAILABLE "the config service (<address>) did not
  // answer: ..." on any failure.
  absl::StatusOr<BrokerSettings> Resolve() override;
  // Without a cursor the stream starts with a resync marker (see
  // SettingsSource::Watch). The returned status carries the stream's gRPC
  // code and message.
  absl::Status Watch(
      const std::string& after,
      const std::function<bool(const SettingsChange&)>& on_change) override;
  void CancelWatch() override;
  std::string Describe() const override { return address_; }

 private:
  const std::string address_;
  const absl::Duration timeout_;
  std::unique_ptr<config::v1::ConfigService::Stub> stub_;
  absl::Mutex mu_;
  grpc::ClientContext* watching_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace iot2mqtt::mqtt_bridge

#endif  // IOT2MQTT_SERVICES_MQTT_BRIDGE_CONFIG_CLIENT_H_
