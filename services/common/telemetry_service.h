#ifndef IOT2MQTT_SERVICES_COMMON_TELEMETRY_SERVICE_H_
#define IOT2MQTT_SERVICES_COMMON_TELEMETRY_SERVICE_H_

#include <functional>
#include <memory>
#include <string>

#include "iot2mqtt/telemetry/v1/telemetry_service.grpc.pb.h"
#include "prometheus/registry.h"
#include "services/common/server_runner.h"

namespace iot2mqtt::common {

// iot2mqtt.telemetry.v1.TelemetryService, registered by GrpcServer.
class TelemetryServiceImpl final
    : public iot2mqtt::telemetry::v1::TelemetryService::CallbackService {
 public:
  TelemetryServiceImpl(std::string service_name,
                       std::function<HealthVerdict()> check_health,
                       std::shared_ptr<prometheus::Registry> registry);

  grpc::ServerUnaryReactor* GetHealth(
      grpc::CallbackServerContext* context,
      const iot2mqtt::telemetry::v1::GetHealthRequest* request,
      iot2mqtt::telemetry::v1::GetHealthResponse* response) override;
  grpc::ServerUnaryReactor* GetMetrics(
      grpc::CallbackServerContext* context,
      const iot2mqtt::telemetry::v1::GetMetricsRequest* request,
      iot2mqtt::telemetry::v1::GetMetricsResponse* response) override;

 private:
  std::string service_name_;
  std::function<HealthVerdict()> check_health_;
  std::shared_ptr<prometheus::Registry> registry_;
};

}  // namespace iot2mqtt::common

#endif  // IOT2MQTT_SERVICES_COMMON_TELEMETRY_SERVICE_H_
