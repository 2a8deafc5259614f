#ifndef IOT2MQTT_SERVICES_ORCHESTRATOR_ORCHESTRATOR_SERVICE_H_
#define IOT2MQTT_SERVICES_ORCHESTRATOR_ORCHESTRATOR_SERVICE_H_

// OrchestratorService over the callback API: thin handlers. Unary bodies run
// on a WorkPool (runtime calls may block for seconds); the two streams
// (StreamLogs, BuildConnector) run their producer on a thread of their own.
// EndStreams() (ServerOptions::before_shutdown) ends every open stream.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "iot2mqtt/orchestrator/v1/orchestrator_service.grpc.pb.h"
#include "services/common/work_pool.h"
#include "services/orchestrator/orchestrator.h"
#include "services/orchestrator/service_clients.h"

namespace iot2mqtt::orchestrator {

class OrchestratorServiceImpl final
    : public v1::OrchestratorService::CallbackService {
 public:
  // Neither is owned. `integrations` (may be null) serves the configured-
  // integration routes; with null they answer UNIMPLEMENTED.
  OrchestratorServiceImpl(Orchestrator& orchestrator,
                          GrpcConfigSource* integrations, BridgeClient& bridge,
                          int worker_threads = 8);
  ~OrchestratorServiceImpl() override;

  // Ends open streams (their producers see a cancellation) and waits for
  // their threads.
  void EndStreams();

  grpc::ServerUnaryReactor* ListContainers(
      grpc::CallbackServerContext* context,
      const v1::ListContainersRequest* request,
      v1::ListContainersResponse* response) override;
  grpc::ServerUnaryReactor* StartContainer(
      grpc::CallbackServerContext* context, const v1::ContainerRequest* request,
      v1::ContainerActionResponse* response) override;
  grpc::ServerUnaryReactor* StopContainer(
      grpc::CallbackServerContext* context, const v1::ContainerRequest* request,
      v1::ContainerActionResponse* response) override;
  grpc::ServerUnaryReactor* RestartContainer(
      grpc::CallbackServerContext* context, const v1::ContainerRequest* request,
      v1::ContainerActionResponse* response) override;
  grpc::ServerUnaryReactor* RemoveContainer(
      grpc::CallbackServerContext* context,
      const v1::RemoveContainerRequest* request,
      v1::ContainerActionResponse* response) override;
  grpc::ServerUnaryReactor* GetContainerLogs(
      grpc::CallbackServerContext* context,
      const v1::GetContainerLogsRequest* request,
      v1::GetContainerLogsResponse* response) override;
  grpc::ServerWriteReactor<v1::LogEntry>* StreamLogs(
      grpc::CallbackServerContext* context,
      const v1::StreamLogsRequest* request) override;
  grpc::ServerUnaryReactor* GetContainerStats(
      grpc::CallbackServerContext* context, const v1::ContainerRequest* request,
      v1::ContainerStats* response) override;
  grpc::ServerUnaryReactor* StartInstance(
      grpc::CallbackServerContext* context, const v1::InstanceRequest* request,
      v1::InstanceActionResponse* response) override;
  grpc::ServerUnaryReactor* StopInstance(
      grpc::CallbackServerContext* context, const v1::InstanceRequest* request,
      v1::InstanceActionResponse* response) override;
  grpc::ServerUnaryReactor* RestartInstance(
      grpc::CallbackServerContext* context, const v1::InstanceRequest* request,
      v1::InstanceActionResponse* response) override;
  grpc::ServerUnaryReactor* DeleteInstance(
      grpc::CallbackServerContext* context, const v1::InstanceRequest* request,
      v1::InstanceActionResponse* response) override;
  grpc::ServerUnaryReactor* RetryInstance(
      grpc::CallbackServerContext* context,
      const v1::RetryInstanceRequest* request,
      v1::RetryInstanceResponse* response) override;
  grpc::ServerUnaryReactor* ListInstanceRuntimes(
      grpc::CallbackServerContext* context,
      const v1::ListInstanceRuntimesRequest* request,
      v1::ListInstanceRuntimesResponse* response) override;
  grpc::ServerWriteReactor<v1::BuildProgress>* BuildConnector(
      grpc::CallbackServerContext* context,
      const v1::BuildConnectorRequest* request) override;
  grpc::ServerUnaryReactor* GetSystemStatus(
      grpc::CallbackServerContext* context,
      const v1::GetSystemStatusRequest* request,
      v1::GetSystemStatusResponse* response) override;

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

  struct StreamControl;

 private:
  // Runs `producer` on a new thread for a stream; tracked for EndStreams().
  void StartStreamThread(std::function<void()> body);
  // The live status of every configured instance (runtime view + bus).
  std::map<std::string, std::string> LiveStatuses();
  Orchestrator& orchestrator_;
  GrpcConfigSource* integrations_;
  BridgeClient& bridge_;
  common::WorkPool pool_;
  absl::Mutex mu_;
  std::vector<std::shared_ptr<StreamControl>> streams_ ABSL_GUARDED_BY(mu_);
  struct StreamThread {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<StreamThread> threads_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
};

// An instance's live status for the integration views: `disabled` when
// `config_status` says so; else from its runtime view (nullptr: not known
// yet) and its status on the bus (`online`, `offline`, `unknown`):
// connected, configuring, offline or error.
std::string LiveStatusOf(const InstanceRuntimeView* view,
                         absl::string_view bus_status);

// Rewrites the `status` of the integration views of the config service
// (`kind`: "integrations" — a list of integrations with `instances`;
// "instances" — a list of instances; "instance" — one) from `live`
// (instance id → status; ids missing keep their status) and recomputes each
// integration's aggregate status. INTERNAL when `json` is not that shape.
absl::StatusOr<std::string> OverlayIntegrationStatus(
    absl::string_view json, absl::string_view kind,
    const std::map<std::string, std::string>& live);

// "error", "warning", ... as LogEntry; `now` for lines without a time.
v1::LogEntry ToLogEntry(const LogLine& line);

}  // namespace iot2mqtt::orchestrator

#endif  // IOT2MQTT_SERVICES_ORCHESTRATOR_ORCHESTRATOR_SERVICE_H_
