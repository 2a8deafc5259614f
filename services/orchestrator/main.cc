// iot2mqtt-orchestrator: turns configured instances into running connectors
// (Docker containers or local processes) and keeps them so.
//
// Environment (every problem reported at once, exit 2):
//   IOT2MQTT_DATA_DIR            data directory (required): instances/,
//                                .env, runtime/ (secrets files, state)
//   IOT2MQTT_CONNECTORS_DIR      connector directories (<data>/connectors)
//   ORCHESTRATOR_LISTEN_ADDR     gRPC address (127.0.0.1:50052)
//   CONFIG_SERVICE_ADDR          the config service (127.0.0.1:50051)
//   MQTT_BRIDGE_ADDR             the mqtt-bridge (127.0.0.1:50054)
//   IOT2MQTT_RUNTIME             docker | process | auto (auto: docker when
//                                the Docker socket answers a ping, else
//                                process)
//   IOT2MQTT_CONNECTOR_BIN_DIR   where connector entries are looked up after
//                                the connector directory (comma-separated;
//                                default: this executable's directory)
//   DOCKER_HOST                  the Docker socket
//   (unix:///var/run/docker.sock) HOST_IOT2MQTT_PATH           the data
//   directory's path on the Docker
//                                host, when it differs (bind mounts)
//   RECONCILE_INTERVAL_SECONDS   full reconcile period (30)
//   WATCHDOG_POLL_MS             how often runtimes are checked (1000)
//   WATCHDOG_BACKOFF_INITIAL_MS  first restart delay after a crash (1000)
//   WATCHDOG_BACKOFF_MAX_SECONDS restart delay cap (60)
//   CRASH_LOOP_RESTARTS          crashes that make a crash loop (5) ...
//   CRASH_LOOP_WINDOW_SECONDS    ... within this many seconds (300)
//   PROCESS_STOP_ON_EXIT         true: a graceful shutdown stops the
//                                process runtime's connectors (true; a
//                                kill -9 always leaves them for adoption)
//   ORCHESTRATOR_WORKER_THREADS  threads for RPC work (8)
//   LOG_LEVEL                    DEBUG/INFO/WARNING/ERROR (INFO); also the
//                                connectors' LOG_LEVEL

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "iot2mqtt/sdk/env.h"
#include "iot2mqtt/sdk/log.h"
#include "services/common/server_runner.h"
#include "services/orchestrator/docker_runtime.h"
#include "services/orchestrator/orchestrator.h"
#include "services/orchestrator/orchestrator_service.h"
#include "services/orchestrator/process_runtime.h"
#include "services/orchestrator/service_clients.h"

#ifndef IOT2MQTT_VERSION
#define IOT2MQTT_VERSION "0.0.0"
#endif

namespace iot2mqtt::orchestrator {
namespace {

struct Options {
  std::string data_dir;
  std::string connectors_dir;
  std::string listen_address;
  std::string config_address;
  std::string bridge_address;
  std::string runtime;  // docker, process, auto
  std::vector<std::string> bin_dirs;
  std::string docker_socket;
  std::string host_path;
  int reconcile_seconds = 30;
  int poll_ms = 1000;
  int backoff_initial_ms = 1000;
  int backoff_max_seconds = 60;
  int crash_loop_restarts = 5;
  int crash_loop_window_seconds = 300;
  bool stop_on_exit = false;
  int worker_threads = 8;
  std::string log_level = "INFO";
};

bool ReadOptions(Options* options) {
  sdk::ProcessEnv process_env;
  sdk::EnvReader env(process_env);
  options->data_dir = env.Required("IOT2MQTT_DATA_DIR");
  options->connectors_dir =
      env.String("IOT2MQTT_CONNECTORS_DIR", options->data_dir + "/connectors");
  options->listen_address =
      env.String("ORCHESTRATOR_LISTEN_ADDR", "127.0.0.1:50052");
  options->config_address =
      env.String("CONFIG_SERVICE_ADDR", "127.0.0.1:50051");
  options->bridge_address = env.String("MQTT_BRIDGE_ADDR", "127.0.0.1:50054");
  options->runtime = env.String("IOT2MQTT_RUNTIME", "auto");
  if (options->runtime != "docker" && options->runtime != "process" &&
      options->runtime != "auto") {
    env.AddProblem("IOT2MQTT_RUNTIME=\"" + options->runtime +
                   "\" is not one of docker, process, auto");
  }
  options->bin_dirs = env.List("IOT2MQTT_CONNECTOR_BIN_DIR", {});
  std::string docker_host = env.String("DOCKER_HOST", "");
  absl::StatusOr<std::string> socket =
      DockerSocketPath(docker_host.empty() ? nullptr : docker_host.c_str());
  if (socket.ok()) {
    options->docker_socket = *socket;
  } else {
    env.AddProblem(absl::StrCat("DOCKER_HOST: ", socket.status().message()));
  }
  options->host_path = env.String("HOST_IOT2MQTT_PATH", "");
  options->reconcile_seconds =
      static_cast<int>(env.Int("RECONCILE_INTERVAL_SECONDS", 30, 1, 86400));
  options->poll_ms =
      static_cast<int>(env.Int("WATCHDOG_POLL_MS", 1000, 50, 60000));
  options->backoff_initial_ms = static_cast<int>(
      env.Int("WATCHDOG_BACKOFF_INITIAL_MS", 1000, 10, 3600000));
  options->backoff_max_seconds =
      static_cast<int>(env.Int("WATCHDOG_BACKOFF_MAX_SECONDS", 60, 1, 86400));
  options->crash_loop_restarts =
      static_cast<int>(env.Int("CRASH_LOOP_RESTARTS", 5, 1, 1000));
  options->crash_loop_window_seconds =
      static_cast<int>(env.Int("CRASH_LOOP_WINDOW_SECONDS", 300, 1, 86400));
  options->stop_on_exit = env.Bool("PROCESS_STOP_ON_EXIT", true);
  options->worker_threads =
      static_cast<int>(env.Int("ORCHESTRATOR_WORKER_THREADS", 8, 1, 64));
  const sdk::Severity severity = sdk::ReadLogLevel(env, &options->log_level);
  if (absl::Status status = env.Finish(); !status.ok()) {
    IOT2MQTT_LOG(ERROR) << status.message();
    return false;
  }
  sdk::SetLogLevel(severity);
  return true;
}

std::unique_ptr<DockerRuntime> MakeDockerRuntime(const Options& options) {
  DockerRuntimeOptions docker;
  docker.socket_path = options.docker_socket;
  docker.bin_dirs = options.bin_dirs;
  if (!options.host_path.empty()) {
    docker.host_path_map.push_back({options.data_dir, options.host_path});
  }
  return std::make_unique<DockerRuntime>(std::move(docker));
}

int Main() {
  sdk::SetLogService("orchestrator");
  common::BlockTerminationSignals();
  Options options;
  if (!ReadOptions(&options)) return 2;

  // The runtime: docker, process, or whichever answers.
  std::unique_ptr<DockerRuntime> docker = MakeDockerRuntime(options);
  std::unique_ptr<Runtime> runtime;
  if (options.runtime == "docker") {
    absl::StatusOr<std::string> ping = docker->Ping();
    if (!ping.ok()) {
      IOT2MQTT_LOG(WARNING)
          << "IOT2MQTT_RUNTIME=docker but Docker at " << options.docker_socket
          << " does not answer yet: " << ping.status().message();
    }
    IOT2MQTT_LOG(INFO) << "runtime: docker (IOT2MQTT_RUNTIME=docker)";
    runtime = std::move(docker);
  } else {
    absl::StatusOr<std::string> ping = options.runtime == "auto"
                                           ? docker->Ping()
                                           : absl::StatusOr<std::string>("");
    if (options.runtime == "auto" && ping.ok()) {
      IOT2MQTT_LOG(INFO) << "runtime: docker (auto: " << *ping << " answers at "
                         << options.docker_socket << ")";
      runtime = std::move(docker);
    } else {
      if (options.runtime == "auto") {
        IOT2MQTT_LOG(INFO) << "runtime: process (auto: Docker at "
                           << options.docker_socket
                           << " does not answer: " << ping.status().message()
                           << ")";
      } else {
        IOT2MQTT_LOG(INFO) << "runtime: process (IOT2MQTT_RUNTIME=process)";
      }
      ProcessRuntimeOptions process;
      process.state_dir = options.data_dir + "/runtime/process";
      process.bin_dirs = options.bin_dirs;
      absl::StatusOr<std::unique_ptr<ProcessRuntime>> opened =
          ProcessRuntime::Open(std::move(process));
      if (!opened.ok()) {
        IOT2MQTT_LOG(ERROR)
            << "can't open the process runtime: " << opened.status().message();
        return 1;
      }
      runtime = *std::move(opened);
    }
  }
  // Docker's availability for GetSystemStatus, whatever runs connectors.
  std::shared_ptr<DockerRuntime> docker_probe;
  if (runtime->kind() != "docker") docker_probe = MakeDockerRuntime(options);

  GrpcConfigSource config(MakeChannel(options.config_address));
  GrpcBridgeClient bridge(MakeChannel(options.bridge_address));
  auto registry = std::make_shared<prometheus::Registry>();

  OrchestratorOptions orchestrator_options;
  orchestrator_options.data_dir = options.data_dir;
  orchestrator_options.connectors_dir = options.connectors_dir;
  orchestrator_options.connector_log_level = options.log_level;
  orchestrator_options.reconcile_interval =
      absl::Seconds(options.reconcile_seconds);
  orchestrator_options.poll_interval = absl::Milliseconds(options.poll_ms);
  orchestrator_options.backoff_initial =
      absl::Milliseconds(options.backoff_initial_ms);
  orchestrator_options.backoff_max = absl::Seconds(options.backoff_max_seconds);
  orchestrator_options.crash_loop_restarts = options.crash_loop_restarts;
  orchestrator_options.crash_loop_window =
      absl::Seconds(options.crash_loop_window_seconds);
  orchestrator_options.stop_runtimes_on_shutdown =
      options.stop_on_exit && runtime->kind() == "process";
  if (docker_probe != nullptr) {
    orchestrator_options.docker_probe = [docker_probe] {
      return docker_probe->Ping().ok();
    };
  }
  orchestrator_options.version = IOT2MQTT_VERSION;
  Orchestrator orchestrator(*runtime, config, bridge,
                            std::move(orchestrator_options), registry.get());
  if (absl::Status s = orchestrator.Start(); !s.ok()) {
    IOT2MQTT_LOG(ERROR) << "can't start the orchestrator: " << s.message();
    return 1;
  }
  OrchestratorServiceImpl service(orchestrator, &config, bridge,
                                  options.worker_threads);

  common::ServerOptions server_options;
  server_options.service_name = "orchestrator";
  server_options.listen_address = options.listen_address;
  server_options.registry = registry;
  Runtime* runtime_ptr = runtime.get();
  server_options.health_probe = [runtime_ptr] {
    common::HealthVerdict verdict;
    absl::StatusOr<std::string> ping = runtime_ptr->Ping();
    verdict.details["runtime"] = std::string(runtime_ptr->kind());
    if (!ping.ok()) {
      verdict.healthy = false;
      verdict.reason =
          absl::StrCat("the ", runtime_ptr->kind(),
                       " runtime does not answer: ", ping.status().message());
    } else {
      verdict.details["runtime_version"] = *ping;
    }
    return verdict;
  };
  server_options.before_shutdown = [&orchestrator, &service] {
    orchestrator.Shutdown();
    service.EndStreams();
  };
  int code = common::RunServer(std::move(server_options), {&service});
  orchestrator.Shutdown();
  return code;
}

}  // namespace
}  // namespace iot2mqtt::orchestrator

int main() { return iot2mqtt::orchestrator::Main(); }
