#ifndef IOT2MQTT_SERVICES_ORCHESTRATOR_SERVICE_CLIENTS_H_
#define IOT2MQTT_SERVICES_ORCHESTRATOR_SERVICE_CLIENTS_H_

// ConfigSource and BridgeClient over gRPC (orchestrator_deps.h). Every
// unary call has a deadline; statuses keep their ErrorInfo reasons.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "iot2mqtt/config/v1/config_service.grpc.pb.h"
#include "iot2mqtt/mqtt_bridge/v1/mqtt_bridge_service.grpc.pb.h"
#include "services/orchestrator/orchestrator_deps.h"

namespace iot2mqtt::orchestrator {

// A channel to `address` ("127.0.0.1:50051").
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address);

class GrpcConfigSource final : public ConfigSource {
 public:
  explicit GrpcConfigSource(std::shared_ptr<grpc::Channel> channel,
                            absl::Duration deadline = absl::Seconds(5));

  absl::StatusOr<std::vector<ConfiguredInstance>> ListInstances() override;
  absl::StatusOr<InstanceRuntimeConfig> GetRuntimeConfig(
      absl::string_view connector, absl::string_view instance_id) override;
  absl::StatusOr<std::map<std::string, std::string>> MqttEnv() override;
  absl::Status DeleteInstance(absl::string_view connector,
                              absl::string_view instance_id) override;
  absl::Status Watch(
      const std::string& after,
      const std::function<void(const ConfigChange&)>& sink) override;
  void CancelWatch() override;

  // For the integration routes: the raw JSON answers of the config service.
  absl::StatusOr<std::string> ListConfiguredIntegrationsJson();
  absl::StatusOr<std::string> ListIntegrationInstancesJson(
      absl::string_view name);
  absl::StatusOr<std::string> GetIntegrationInstanceJson(
      absl::string_view instance_id);

 private:
  void SetDeadline(grpc::ClientContext& context) const;

  std::unique_ptr<config::v1::ConfigService::Stub> stub_;
  const absl::Duration deadline_;
  absl::Mutex mu_;
  grpc::ClientContext* watching_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

class GrpcBridgeClient final : public BridgeClient {
 public:
  explicit GrpcBridgeClient(std::shared_ptr<grpc::Channel> channel,
                            absl::Duration deadline = absl::Seconds(5));

  absl::StatusOr<int64_t> ClearInstanceTopics(
      absl::string_view instance_id) override;
  absl::StatusOr<bool> Connected() override;
  absl::StatusOr<std::map<std::string, std::string>> InstanceStatuses()
      override;

 private:
  void SetDeadline(grpc::ClientContext& context) const;

  std::unique_ptr<mqtt_bridge::v1::MqttBridgeService::Stub> stub_;
  const absl::Duration deadline_;
};

}  // namespace iot2mqtt::orchestrator

#endif  // IOT2MQTT_SERVICES_ORCHESTRATOR_SERVICE_CLIENTS_H_
