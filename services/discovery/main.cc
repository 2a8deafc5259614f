// iot2mqtt-discovery: setup tools and discovery sessions of connectors.
//
// Environment (every problem reported at once, exit 2):
//   DISCOVERY_LISTEN_ADDR        gRPC address (127.0.0.1:50053)
//   CONFIG_SERVICE_ADDR          the config service (127.0.0.1:50051)
//   IOT2MQTT_DATA_DIR            data directory (./data)
//   IOT2MQTT_CONNECTORS_DIR      connector directories (<data>/connectors)
//   IOT2MQTT_CONNECTOR_BIN_DIR   comma list: where a plain tool entry is
//                                looked up after the connector directory
//                                (this binary's directory)
//   TOOL_ENV_PASSTHROUGH         variables copied from this environment into
//                                every tool's, when set (LOG_LEVEL,TZ)
//   TOOL_MAX_OUTPUT_BYTES        stdout limit of a tool (1048576)
//   TOOL_MAX_STDERR_BYTES        stderr kept of a tool (65536)
//   TOOL_KILL_GRACE_MS           SIGTERM to SIGKILL of a tool's group (2000)
//   TOOL_MAX_CONCURRENT          tools running at once (32)
//   DISCOVERY_DEFAULT_TIMEOUT_SECONDS  session timeout when none is declared
//                                (30)
//   DISCOVERY_MAX_SESSIONS       sessions running at once (8)
//   DISCOVERY_SESSION_RETENTION_SECONDS  finished sessions are kept (600)
//   DISCOVERY_WORKER_THREADS     threads for RPC work (4)
//   LOG_LEVEL                    DEBUG/INFO/WARNING/ERROR (INFO)

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "iot2mqtt/sdk/env.h"
#include "iot2mqtt/sdk/log.h"
#include "services/common/server_runner.h"
#include "services/discovery/config_client.h"
#include "services/discovery/discovery_service.h"
#include "services/discovery/session_manager.h"
#include "services/discovery/tool_executor.h"

namespace iot2mqtt::discovery {
namespace {

struct Options {
  std::string listen_address;
  std::string config_address;
  std::string connectors_dir;
  ToolExecutorOptions tools;
  SessionManagerOptions sessions;
  DiscoveryServiceOptions service;
};

bool ReadOptions(Options* options) {
  sdk::ProcessEnv process_env;
  sdk::EnvReader env(process_env);
  options->listen_address =
      env.String("DISCOVERY_LISTEN_ADDR", "127.0.0.1:50053");
  options->config_address =
      env.String("CONFIG_SERVICE_ADDR", "127.0.0.1:50051");
  const std::string data_dir = env.String("IOT2MQTT_DATA_DIR", "./data");
  options->connectors_dir =
      env.String("IOT2MQTT_CONNECTORS_DIR", data_dir + "/connectors");
  options->tools.bin_dirs = env.List("IOT2MQTT_CONNECTOR_BIN_DIR", {});
  for (const std::string& name :
       env.List("TOOL_ENV_PASSTHROUGH", {"LOG_LEVEL", "TZ"})) {
    if (const char* value = std::getenv(name.c_str())) {
      options->tools.passthrough_env.push_back(absl::StrCat(name, "=", value));
    }
  }
  options->tools.limits.max_stdout_bytes = env.Int(
      "TOOL_MAX_OUTPUT_BYTES", int64_t{1} << 20, 1024, int64_t{1} << 30);
  options->tools.limits.max_stderr_bytes = env.Int(
      "TOOL_MAX_STDERR_BYTES", int64_t{64} << 10, 1024, int64_t{1} << 30);
  options->tools.limits.kill_grace =
      absl::Milliseconds(env.Int("TOOL_KILL_GRACE_MS", 2000, 0, 60000));
  options->tools.max_concurrent =
      static_cast<int>(env.Int("TOOL_MAX_CONCURRENT", 32, 1, 1024));
  options->sessions.default_timeout =
      absl::Seconds(env.Int("DISCOVERY_DEFAULT_TIMEOUT_SECONDS", 30, 1, 300));
  options->sessions.max_running =
      static_cast<int>(env.Int("DISCOVERY_MAX_SESSIONS", 8, 1, 256));
  options->sessions.retention = absl::Seconds(
      env.Int("DISCOVERY_SESSION_RETENTION_SECONDS", 600, 0, 7 * 86400));
  options->service.worker_threads =
      static_cast<int>(env.Int("DISCOVERY_WORKER_THREADS", 4, 1, 64));
  options->service.max_concurrent_tools = options->tools.max_concurrent;
  const sdk::Severity severity = sdk::ReadLogLevel(env);
  if (absl::Status status = env.Finish(); !status.ok()) {
    IOT2MQTT_LOG(ERROR) << status.message();
    return false;
  }
  sdk::SetLogLevel(severity);
  return true;
}

int Main() {
  sdk::SetLogService("discovery");
  common::BlockTerminationSignals();
  Options options;
  if (!ReadOptions(&options)) return 2;

  ToolExecutor executor(options.tools);
  ConfigClientOptions config_options;
  config_options.connectors_dir = options.connectors_dir;
  ConfigClient config(MakeConfigChannel(options.config_address),
                      std::move(config_options));
  SessionManager sessions(options.sessions, &executor, &config, &config);
  DiscoveryServiceImpl service(executor, sessions, config, options.service);

  common::ServerOptions server_options;
  server_options.service_name = "discovery";
  server_options.listen_address = options.listen_address;
  server_options.health_probe = [&config] {
    common::HealthVerdict verdict;
    if (absl::Status ping = config.Ping(); !ping.ok()) {
      verdict.healthy = false;
      verdict.reason =
          absl::StrCat("the config service does not answer: ", ping.message());
    }
    return verdict;
  };
  server_options.before_shutdown = [&service] { service.Shutdown(); };
  return common::RunServer(std::move(server_options), {&service});
}

}  // namespace
}  // namespace iot2mqtt::discovery

int main() { return iot2mqtt::discovery::Main(); }
