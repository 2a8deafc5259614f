#ifndef IOT2MQTT_SERVICES_COMMON_SERVER_RUNNER_H_
#define IOT2MQTT_SERVICES_COMMON_SERVER_RUNNER_H_

// Runs a gRPC server the way every iot2mqtt service does: standard
// `grpc.health.v1` health service driven by a probe, server reflection (so
// `grpcurl -plaintext host:port list` works), our TelemetryService (health
// with its reason, Prometheus metrics), graceful shutdown on SIGTERM/SIGINT.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "prometheus/registry.h"

namespace iot2mqtt::common {

struct HealthVerdict {
  bool healthy = true;
  std::string reason;                          // Why not, when unhealthy.
  std::map<std::string, std::string> details;  // Facts for operators.
};

using HealthProbe = std::function<HealthVerdict()>;

struct ServerOptions {
  std::string service_name;    // Short name for logs and health, e.g. "config".
  std::string listen_address;  // "0.0.0.0:50051"; port 0 picks a free one.
  HealthProbe health_probe;    // Null means always healthy.
  absl::Duration health_poll_interval = absl::Seconds(5);
  absl::Duration shutdown_grace = absl::Seconds(5);
  std::shared_ptr<prometheus::Registry> registry;  // Null: no metrics.
  // Runs once at Shutdown, before the grace period starts: ends long-lived
  // streams so they don't hold it.
  std::function<void()> before_shutdown;
};

class TelemetryServiceImpl;

class GrpcServer {
 public:
  explicit GrpcServer(ServerOptions options);
  ~GrpcServer();
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  // Binds and starts serving `services` (not owned; must outlive the server)
  // plus health, reflection and telemetry. Fails when the address can't be
  // bound.
  absl::Status Start(const std::vector<grpc::Service*>& services);
  // The bound port (after Start).
  int port() const { return port_; }
  // Stops accepting, lets in-flight calls finish within the grace period,
  // then cancels the rest. Idempotent.
  void Shutdown();
  void Wait();

  // Runs the probe now and publishes its verdict to the health service.
  HealthVerdict CheckHealth();

 private:
  void PollHealth();

  ServerOptions options_;
  std::unique_ptr<TelemetryServiceImpl> telemetry_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  absl::Notification stop_polling_;
  std::thread poller_;
  absl::Mutex mu_;
  bool last_healthy_ ABSL_GUARDED_BY(mu_) = true;
  std::string last_reason_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts
// afterwards, so that WaitForTerminationSignal() receives them. Call first in
// main().
void BlockTerminationSignals();
// Waits for SIGTERM or SIGINT; returns the signal number.
int WaitForTerminationSignal();

// main() of a service: starts the server, logs where it listens, waits for
// SIGTERM/SIGINT, shuts down gracefully. Returns the process exit code.
int RunServer(ServerOptions options,
              const std::vector<grpc::Service*>& services);

}  // namespace iot2mqtt::common

#endif  // IOT2MQTT_SERVICES_COMMON_SERVER_RUNNER_H_
