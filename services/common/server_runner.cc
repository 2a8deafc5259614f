#include "services/common/server_runner.h"

#include <pthread.h>
#include <signal.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "grpc/grpc.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "iot2mqtt/sdk/log.h"
#include "services/common/telemetry_service.h"

namespace iot2mqtt::common {

GrpcServer::GrpcServer(ServerOptions options) : options_(std::move(options)) {}

GrpcServer::~GrpcServer() {
  Shutdown();
  Wait();
}

absl::Status GrpcServer::Start(const std::vector<grpc::Service*>& services) {
  grpc::EnableDefaultHealthCheckService(true);
  // Pulls grpc.health.v1's descriptors into the binary so reflection can
  // describe the health service (the default one is built without them).
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  telemetry_ = std::make_unique<TelemetryServiceImpl>(
      options_.service_name, [this] { return CheckHealth(); },
      options_.registry);

  grpc::ServerBuilder builder;
  // Without this, a second server on a taken port would start and silently
  // share it (SO_REUSEPORT); we want a clear "address in use" instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(options_.listen_address,
                           grpc::InsecureServerCredentials(), &port_);
  for (grpc::Service* service : services) builder.RegisterService(service);
  builder.RegisterService(telemetry_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    server_.reset();
    return absl::UnavailableError(absl::StrCat("cannot listen on ",
                                               options_.listen_address,
                                               " (address in use or invalid)"));
  }
  CheckHealth();
  poller_ = std::thread([this] { PollHealth(); });
  return absl::OkStatus();
}

HealthVerdict GrpcServer::CheckHealth() {
  HealthVerdict verdict;
  if (options_.health_probe) verdict = options_.health_probe();
  absl::MutexLock lock(&mu_);
  if (server_ != nullptr && !shut_down_) {
    // "" is the whole server; grpcurl and Kubernetes probes ask for it.
    server_->GetHealthCheckService()->SetServingStatus(verdict.healthy);
  }
  if (verdict.healthy != last_healthy_ || verdict.reason != last_reason_) {
    if (verdict.healthy) {
      IOT2MQTT_LOG(INFO) << options_.service_name << " is healthy again";
    } else {
      IOT2MQTT_LOG(WARNING).With("reason", verdict.reason)
          << options_.service_name << " is unhealthy: " << verdict.reason;
    }
    last_healthy_ = verdict.healthy;
    last_reason_ = verdict.reason;
  }
  return verdict;
}

void GrpcServer::PollHealth() {
  while (!stop_polling_.WaitForNotificationWithTimeout(
      options_.health_poll_interval)) {
    CheckHealth();
  }
}

void GrpcServer::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_ || server_ == nullptr) return;
    shut_down_ = true;
    server_->GetHealthCheckService()->Shutdown();
  }
  if (!stop_polling_.HasBeenNotified()) stop_polling_.Notify();
  if (poller_.joinable()) poller_.join();
  if (options_.before_shutdown) options_.before_shutdown();
  server_->Shutdown(std::chrono::system_clock::now() +
                    absl::ToChronoNanoseconds(options_.shutdown_grace));
}

void GrpcServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

void BlockTerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForTerminationSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int signal_number = 0;
  while (sigwait(&set, &signal_number) != 0) {
  }
  return signal_number;
}

int RunServer(ServerOptions options,
              const std::vector<grpc::Service*>& services) {
  BlockTerminationSignals();
  std::string name = options.service_name;
  std::string address = options.listen_address;
  GrpcServer server(std::move(options));
  if (absl::Status status = server.Start(services); !status.ok()) {
    IOT2MQTT_LOG(ERROR) << status.message();
    return 1;
  }
  IOT2MQTT_LOG(INFO).With("address", address).With("port", server.port())
      << name << " listening on " << address << " (port " << server.port()
      << ")";
  int signal_number = WaitForTerminationSignal();
  IOT2MQTT_LOG(INFO).With("signal", signal_number) << name << " shutting down";
  server.Shutdown();
  server.Wait();
  IOT2MQTT_LOG(INFO) << name << " stopped";
  return 0;
}

}  // namespace iot2mqtt::common
