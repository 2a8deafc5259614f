#include "services/common/telemetry_service.h"

#include <utility>

#include "prometheus/text_serializer.h"
#include "services/common/rpc_scope.h"

namespace iot2mqtt::common {

namespace v1 = iot2mqtt::telemetry::v1;

TelemetryServiceImpl::TelemetryServiceImpl(
    std::string service_name, std::function<HealthVerdict()> check_health,
    std::shared_ptr<prometheus::Registry> registry)
    : service_name_(std::move(service_name)),
      check_health_(std::move(check_health)),
      registry_(std::move(registry)) {}

grpc::ServerUnaryReactor* TelemetryServiceImpl::GetHealth(
    grpc::CallbackServerContext* context, const v1::GetHealthRequest* request,
    v1::GetHealthResponse* response) {
  RpcScope rpc(context, "GetHealth");
  HealthVerdict verdict = check_health_();
  response->set_healthy(verdict.healthy);
  response->set_reason(verdict.reason);
  response->set_service(service_name_);
  for (auto& [key, value] : verdict.details) {
    (*response->mutable_details())[key] = value;
  }
  return rpc.Finish(absl::OkStatus());
}

grpc::ServerUnaryReactor* TelemetryServiceImpl::GetMetrics(
    grpc::CallbackServerContext* context, const v1::GetMetricsRequest* request,
    v1::GetMetricsResponse* response) {
  RpcScope rpc(context, "GetMetrics");
  if (registry_ != nullptr) {
    response->set_text(
        prometheus::TextSerializer().Serialize(registry_->Collect()));
  }
  return rpc.Finish(absl::OkStatus());
}

}  // namespace iot2mqtt::common
