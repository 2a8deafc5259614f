#ifndef IOT2MQTT_TESTS_INTEGRATION_ORCHESTRATOR_ORCHESTRATOR_HARNESS_H_
#define IOT2MQTT_TESTS_INTEGRATION_ORCHESTRATOR_ORCHESTRATOR_HARNESS_H_

// The real platform for the orchestrator integration tests: a loopback
// Mosquitto, iot2mqtt-config, iot2mqtt-mqtt-bridge and
// iot2mqtt-orchestrator as child processes over temporary directories.
// Header-only (one test binary).
//
//   <root>/data/                    IOT2MQTT_DATA_DIR
//   <root>/connectors/demo/         the repository's demo connector
//                                   (manifest entry found in build/bin)
//   <root>/connectors/crasher/      a shell script connector that prints a
//                                   few lines, counts its runs in runs.txt
//                                   and exits 3 at once
//   <root>/esp32/                   ESP32_CONFIGS_DIR
//   <root>/{config,bridge,orchestrator}.log
//
// Connectors run in their own sessions (they survive the orchestrator, by
// design): the destructor stops the orchestrator gracefully with
// PROCESS_STOP_ON_EXIT=true and then kills whatever the process runtime's
// registry still names.

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "iot2mqtt/config/v1/config_service.grpc.pb.h"
#include "iot2mqtt/orchestrator/v1/orchestrator_service.grpc.pb.h"
#include "iot2mqtt/sdk/contract.h"
#include "iot2mqtt/telemetry/v1/telemetry_service.grpc.pb.h"
#include "rapidjson/document.h"
#include "sdk/testing/loopback_broker.h"
#include "sdk/testing/topic_capture.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::orchestrator::harness {

using ::iot2mqtt::config::v1::ConfigService;
using ::iot2mqtt::orchestrator::v1::OrchestratorService;
using ::iot2mqtt::testing::BinaryPath;
using ::iot2mqtt::testing::ChildProcess;
using ::iot2mqtt::testing::FreePort;
using ::iot2mqtt::testing::ListDir;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::SourcePath;
using ::iot2mqtt::testing::TempDir;
using ::iot2mqtt::testing::WaitFor;
using ::iot2mqtt::testing::WriteFile;

inline constexpr char kBaseTopic[] = "orchtest";
inline constexpr char kBrokerPassword[] = "broker-pw-7f3k";

inline std::unique_ptr<grpc::ClientContext> Context(int seconds = 10) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(seconds));
  return context;
}

inline std::shared_ptr<grpc::Channel> Channel(int port) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                   grpc::InsecureChannelCredentials(), args);
}

inline bool FileExists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// The file's bytes, "" when it can't be read (processes come and go).
inline std::string ReadIfAny(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

inline bool ProcessAlive(int64_t pid) {
  if (pid <= 0) return false;
  std::string stat = ReadIfAny(absl::StrCat("/proc/", pid, "/stat"));
  size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() &&
         stat[paren + 2] != 'Z' && stat[paren + 2] != 'X';
}

// The NUL-separated environment of a process, as a map.
inline std::map<std::string, std::string> ProcessEnviron(int64_t pid) {
  std::map<std::string, std::string> env;
  std::string text = ReadIfAny(absl::StrCat("/proc/", pid, "/environ"));
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\0', start);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(start, end - start);
    size_t eq = item.find('=');
    if (eq != std::string::npos) env[item.substr(0, eq)] = item.substr(eq + 1);
    start = end + 1;
  }
  return env;
}

// Whether a Docker daemon answers (tests/integration/orchestrator/
// ensure_dockerd.sh starts one when it can); `why` says why not.
inline bool DockerAvailable(std::string* why) {
  static const std::pair<bool, std::string> answer = [] {
    TempDir dir;
    std::string log = dir.Join("ensure_dockerd.log");
    std::map<std::string, std::string> env;
    if (const char* host = getenv("DOCKER_HOST")) env["DOCKER_HOST"] = host;
    auto child = ChildProcess::Start(
        "/bin/bash",
        {SourcePath("tests/integration/orchestrator/ensure_dockerd.sh")}, env,
        log);
    if (!child.ok()) return std::make_pair(false, child.status().ToString());
    absl::StatusOr<int> code = (*child)->Wait(absl::Seconds(150));
    std::string output = ReadIfAny(log);
    while (!output.empty() && output.back() == '\n') output.pop_back();
    std::string last = output.substr(output.rfind('\n') + 1);
    bool ok = code.ok() && *code == 0;
    if (absl::StartsWith(last, "SKIPPED: ")) last = last.substr(9);
    return std::make_pair(ok, last);
  }();
  *why = answer.second;
  return answer.first;
}

class Platform {
 public:
  explicit Platform(std::map<std::string, std::string> orchestrator_env = {})
      : orchestrator_env_(std::move(orchestrator_env)) {
    for (const char* dir : {"data", "esp32", "connectors", "connectors/demo",
                            "connectors/crasher", "connectors/crashbin"}) {
      REQUIRE(mkdir(root_.Join(dir).c_str(), 0755) == 0);
    }
    for (const char* file : {"setup.json", "manifest.json"}) {
      WriteFile(root_.Join(absl::StrCat("connectors/demo/", file)),
                ReadFile(SourcePath(absl::StrCat("connectors/demo/", file))));
    }
    WriteFile(root_.Join("connectors/crasher/manifest.json"),
              R"({"name":"crasher","display_name":"Crasher",)"
              R"("version":"0.0.1","entry":"crash.sh"})");
    const std::string script = root_.Join("connectors/crasher/crash.sh");
    WriteFile(script,
              "#!/bin/sh\n"
              "echo run >> runs.txt\n"
              "echo \"crasher $INSTANCE_NAME starting\"\n"
              "echo \"fatal: no device answers\" >&2\n"
              "exit 3\n");
    REQUIRE(chmod(script.c_str(), 0755) == 0);
    // For Docker's FROM-scratch images (no shell): sleep without an operand
    // complains on stderr and exits 1.
    WriteFile(root_.Join("connectors/crashbin/manifest.json"),
              R"({"name":"crashbin","display_name":"Crash binary",)"
              R"("version":"0.0.1","entry":"crash"})");
    const std::string binary = root_.Join("connectors/crashbin/crash");
    WriteFile(binary, ReadFile("/bin/sleep"));
    REQUIRE(chmod(binary.c_str(), 0755) == 0);

    auto broker = sdk::testing::LoopbackBroker::Start();
    REQUIRE(broker.ok());
    broker_ = *std::move(broker);
    config_port_ = FreePort();
    bridge_port_ = FreePort();
    orchestrator_port_ = FreePort();
  }

  ~Platform() {
    if (orchestrator_ != nullptr) {
      stub_.reset();  // Else the server waits its grace period for it.
      orchestrator_->Signal(SIGTERM);
      (void)orchestrator_->Wait(absl::Seconds(20));
      orchestrator_.reset();
    }
    KillConnectors();
    bridge_.reset();
    config_.reset();
  }

  Platform(const Platform&) = delete;
  Platform& operator=(const Platform&) = delete;

  // The bridge takes a few seconds to listen: the orchestrator starts
  // meanwhile.
  void StartAll() {
    StartConfig();
    LaunchBridge();
    StartOrchestrator();
    WaitForBridge();
  }

  void StartConfig() {
    std::map<std::string, std::string> env = {
        {"IOT2MQTT_DATA_DIR", data_dir()},
        {"IOT2MQTT_CONNECTORS_DIR", connectors_dir()},
        {"ESP32_CONFIGS_DIR", root_.Join("esp32")},
        {"CONFIG_LISTEN_ADDR", absl::StrCat("127.0.0.1:", config_port_)},
        {"MQTT_HOST", "127.0.0.1"},
        {"MQTT_PORT", absl::StrCat(broker_->port())},
        {"MQTT_USERNAME", "orchestrator-test"},
        {"MQTT_PASSWORD", kBrokerPassword},
        {"MQTT_BASE_TOPIC", kBaseTopic},
        {"CATALOGUE_POLL_SECONDS", "1"},
        {"LOG_LEVEL", "INFO"}};
    auto process = ChildProcess::Start(BinaryPath("iot2mqtt-config"), {}, env,
                                       root_.Join("config.log"));
    REQUIRE(process.ok());
    config_ = *std::move(process);
    INFO(Logs());
    REQUIRE(WaitFor(
        [&] {
          REQUIRE(config_->Running());
          // A fresh channel each time: no reconnect backoff from refusals.
          config_stub_ = ConfigService::NewStub(Channel(config_port_));
          config::v1::ListInstancesResponse response;
          return config_stub_->ListInstances(Context(1).get(), {}, &response)
              .ok();
        },
        absl::Seconds(20)));
  }

  void StartBridge() {
    LaunchBridge();
    WaitForBridge();
  }

  void LaunchBridge() {
    auto process = ChildProcess::Start(
        BinaryPath("iot2mqtt-mqtt-bridge"), {},
        {{"MQTT_BRIDGE_LISTEN_ADDR", absl::StrCat("127.0.0.1:", bridge_port_)},
         {"CONFIG_SERVICE_ADDR", absl::StrCat("127.0.0.1:", config_port_)},
         {"LOG_LEVEL", "INFO"}},
        root_.Join("bridge.log"));
    REQUIRE(process.ok());
    bridge_ = *std::move(process);
  }

  void WaitForBridge() {
    INFO(Logs());
    REQUIRE(WaitFor([&] { return testing::PortAccepts(bridge_port_); },
                    absl::Seconds(20)));
  }

  void StartOrchestrator() {
    std::map<std::string, std::string> env = {
        {"IOT2MQTT_DATA_DIR", data_dir()},
        {"IOT2MQTT_CONNECTORS_DIR", connectors_dir()},
        {"ORCHESTRATOR_LISTEN_ADDR",
         absl::StrCat("127.0.0.1:", orchestrator_port_)},
        {"CONFIG_SERVICE_ADDR", absl::StrCat("127.0.0.1:", config_port_)},
        {"MQTT_BRIDGE_ADDR", absl::StrCat("127.0.0.1:", bridge_port_)},
        {"IOT2MQTT_RUNTIME", "process"},
        {"IOT2MQTT_CONNECTOR_BIN_DIR",
         DirOf(BinaryPath("iot2mqtt-connector-demo"))},
        {"WATCHDOG_POLL_MS", "200"},
        {"WATCHDOG_BACKOFF_INITIAL_MS", "200"},
        {"WATCHDOG_BACKOFF_MAX_SECONDS", "2"},
        {"CRASH_LOOP_RESTARTS", "4"},
        {"CRASH_LOOP_WINDOW_SECONDS", "120"},
        {"PROCESS_STOP_ON_EXIT", "true"},
        {"LOG_LEVEL", "INFO"}};
    for (const auto& [key, value] : orchestrator_env_) env[key] = value;
    auto process = ChildProcess::Start(BinaryPath("iot2mqtt-orchestrator"), {},
                                       env, root_.Join("orchestrator.log"));
    REQUIRE(process.ok());
    orchestrator_ = *std::move(process);
    INFO(Logs());
    REQUIRE(WaitFor(
        [&] {
          REQUIRE(orchestrator_->Running());
          stub_ = OrchestratorService::NewStub(Channel(orchestrator_port_));
          v1::ListInstanceRuntimesResponse response;
          return stub_->ListInstanceRuntimes(Context(1).get(), {}, &response)
              .ok();
        },
        absl::Seconds(20)));
  }

  // SIGTERM; returns the exit code.
  int StopOrchestrator() {
    REQUIRE(orchestrator_ != nullptr);
    stub_.reset();
    orchestrator_->Signal(SIGTERM);
    absl::StatusOr<int> code = orchestrator_->Wait(absl::Seconds(20));
    REQUIRE(code.ok());
    orchestrator_.reset();
    return *code;
  }

  // The orchestrator's Prometheus text (TelemetryService).
  std::string Metrics() {
    auto telemetry =
        telemetry::v1::TelemetryService::NewStub(Channel(orchestrator_port_));
    telemetry::v1::GetMetricsResponse response;
    grpc::Status status = telemetry->GetMetrics(Context().get(), {}, &response);
    REQUIRE(status.ok());
    return response.text();
  }

  void DeleteInConfig(const std::string& id, const std::string& connector) {
    config::v1::DeleteInstanceRequest request;
    request.set_connector(connector);
    request.set_instance_id(id);
    config::v1::DeleteInstanceResponse response;
    REQUIRE(
        config_stub_->DeleteInstance(Context().get(), request, &response).ok());
  }

  // SIGKILL: connectors stay (their own sessions).
  void KillOrchestrator() {
    REQUIRE(orchestrator_ != nullptr);
    stub_.reset();
    orchestrator_->Signal(SIGKILL);
    absl::StatusOr<int> code = orchestrator_->Wait(absl::Seconds(10));
    REQUIRE(code.ok());
    orchestrator_.reset();
  }

  // --- Config -----------------------------------------------------------

  // Creates an instance of `connector` through the config service.
  void CreateInstance(const std::string& id, const std::string& connector,
                      const std::string& extra = "") {
    config::v1::CreateInstanceRequest request;
    request.set_instance(absl::StrCat(
        R"({"instance_id":")", id, R"(","connector_type":")", connector,
        R"(","friendly_name":"Test )", id, R"(","config":{"api_token":"tok-)",
        id, R"(-secret"},"devices":[{"device_id":"light1","type":"light"}],)",
        R"("update_interval":1)", extra, "}"));
    config::v1::CreateInstanceResponse response;
    grpc::Status status =
        config_stub_->CreateInstance(Context().get(), request, &response);
    INFO(status.error_message());
    REQUIRE(status.ok());
  }

  void UpdateInstance(const std::string& id, const std::string& connector,
                      const std::string& patch) {
    config::v1::UpdateInstanceRequest request;
    request.set_connector(connector);
    request.set_instance_id(id);
    request.set_instance(patch);
    config::v1::UpdateInstanceResponse response;
    grpc::Status status =
        config_stub_->UpdateInstance(Context().get(), request, &response);
    INFO(status.error_message());
    REQUIRE(status.ok());
  }

  // --- Orchestrator ------------------------------------------------------

  OrchestratorService::Stub& stub() {
    REQUIRE(stub_ != nullptr);
    return *stub_;
  }

  std::vector<v1::ContainerInfo> Containers() {
    v1::ListContainersResponse response;
    grpc::Status status = stub().ListContainers(Context().get(), {}, &response);
    INFO(status.error_message());
    REQUIRE(status.ok());
    return {response.containers().begin(), response.containers().end()};
  }

  std::optional<v1::ContainerInfo> Container(const std::string& instance_id) {
    for (v1::ContainerInfo& info : Containers()) {
      if (info.instance_id() == instance_id) return info;
    }
    return std::nullopt;
  }

  std::optional<v1::InstanceRuntime> Runtime(const std::string& instance_id) {
    v1::ListInstanceRuntimesResponse response;
    grpc::Status status =
        stub().ListInstanceRuntimes(Context().get(), {}, &response);
    REQUIRE(status.ok());
    for (const v1::InstanceRuntime& runtime : response.instances()) {
      if (runtime.instance_id() == instance_id) return runtime;
    }
    return std::nullopt;
  }

  // The pid of the instance's running connector; waits until there is one
  // (different from `not_pid` when given).
  int64_t WaitForPid(const std::string& instance_id, int64_t not_pid = 0,
                     absl::Duration timeout = absl::Seconds(20)) {
    int64_t pid = 0;
    bool ok = WaitFor(
        [&] {
          std::optional<v1::ContainerInfo> info = Container(instance_id);
          if (!info || info->status() != "running" || info->pid() == 0) {
            return false;
          }
          pid = info->pid();
          return pid != not_pid && ProcessAlive(pid);
        },
        timeout);
    INFO(Logs());
    REQUIRE(ok);
    return pid;
  }

  grpc::Status InstanceAction(const std::string& action, const std::string& id,
                              v1::InstanceActionResponse* response = nullptr) {
    v1::InstanceRequest request;
    request.set_instance_id(id);
    v1::InstanceActionResponse local;
    if (response == nullptr) response = &local;
    if (action == "start") {
      return stub().StartInstance(Context(30).get(), request, response);
    }
    if (action == "stop") {
      return stub().StopInstance(Context(30).get(), request, response);
    }
    if (action == "restart") {
      return stub().RestartInstance(Context(30).get(), request, response);
    }
    if (action == "delete") {
      return stub().DeleteInstance(Context(30).get(), request, response);
    }
    FAIL("unknown action " << action);
    return grpc::Status::CANCELLED;
  }

  // --- MQTT --------------------------------------------------------------

  std::unique_ptr<sdk::testing::TopicCapture> Capture(
      const std::string& filter) {
    auto capture = sdk::testing::TopicCapture::Start(broker_->host(),
                                                     broker_->port(), filter);
    REQUIRE(capture.ok());
    return *std::move(capture);
  }

  static sdk::Topics TopicsOf(const std::string& id) {
    auto topics = sdk::Topics::Create(kBaseTopic, id);
    REQUIRE(topics.ok());
    return *topics;
  }

  // Waits for the instance's retained `online`.
  void WaitOnline(const std::string& id,
                  absl::Duration timeout = absl::Seconds(20)) {
    sdk::Topics topics = TopicsOf(id);
    auto capture = Capture(topics.Status());
    auto online = capture->WaitFor(
        topics.Status(),
        [](const sdk::testing::CapturedMessage& m) {
          return m.payload == "online";
        },
        timeout);
    INFO(Logs());
    REQUIRE(online.has_value());
  }

  // --- Paths and logs ------------------------------------------------------

  std::string data_dir() const { return root_.Join("data"); }
  std::string connectors_dir() const { return root_.Join("connectors"); }
  std::string InstanceFile(const std::string& connector,
                           const std::string& id) const {
    return absl::StrCat(data_dir(), "/instances/", connector, "/", id, ".json");
  }
  std::string SecretsFile(const std::string& id) const {
    return absl::StrCat(data_dir(), "/runtime/secrets/", id, ".json");
  }
  std::string CrasherRuns() const {
    std::string path = root_.Join("connectors/crasher/runs.txt");
    return FileExists(path) ? ReadFile(path) : "";
  }
  sdk::testing::LoopbackBroker& broker() { return *broker_; }
  int orchestrator_port() const { return orchestrator_port_; }
  bool orchestrator_running() {
    return orchestrator_ && orchestrator_->Running();
  }

  std::string OrchestratorLog() const {
    std::string path = root_.Join("orchestrator.log");
    return FileExists(path) ? ReadFile(path) : "";
  }

  std::string Logs(size_t tail = 5000) const {
    std::string logs;
    for (const char* name : {"config.log", "bridge.log", "orchestrator.log"}) {
      std::string path = root_.Join(name);
      if (!FileExists(path)) continue;
      std::string text = ReadFile(path);
      if (text.size() > tail) text = text.substr(text.size() - tail);
      absl::StrAppend(&logs, "--- ", name, "\n", text);
    }
    return logs;
  }

  // Pids the process runtime's registry names.
  std::vector<int64_t> RegisteredPids() const {
    std::vector<int64_t> pids;
    std::string dir = root_.Join("data/runtime/process");
    if (!FileExists(dir)) return pids;
    for (const std::string& name : ListDir(dir)) {
      if (!absl::EndsWith(name, ".json")) continue;
      rapidjson::Document doc;
      std::string text = ReadIfAny(dir + "/" + name);
      doc.Parse(text.c_str(), text.size());
      if (doc.HasParseError() || !doc.IsObject()) continue;
      auto pid = doc.FindMember("pid");
      if (pid != doc.MemberEnd() && pid->value.IsInt64() &&
          pid->value.GetInt64() > 0) {
        pids.push_back(pid->value.GetInt64());
      }
    }
    return pids;
  }

  // Running processes whose environment names this platform's instance
  // `id` (duplicates would show here).
  int CountConnectorProcesses(const std::string& id) const {
    int count = 0;
    DIR* proc = opendir("/proc");
    REQUIRE(proc != nullptr);
    while (struct dirent* entry = readdir(proc)) {
      std::string name = entry->d_name;
      if (name.empty() ||
          name.find_first_not_of("0123456789") != std::string::npos) {
        continue;
      }
      int64_t pid = std::stoll(name);
      if (!ProcessAlive(pid)) continue;
      std::map<std::string, std::string> env = ProcessEnviron(pid);
      auto instance_file = env.find("IOT2MQTT_INSTANCE_FILE");
      if (instance_file != env.end() &&
          absl::StartsWith(instance_file->second, data_dir()) &&
          env["INSTANCE_NAME"] == id) {
        ++count;
      }
    }
    closedir(proc);
    return count;
  }

 private:
  static std::string DirOf(const std::string& path) {
    return path.substr(0, path.rfind('/'));
  }

  void KillConnectors() {
    for (int64_t pid : RegisteredPids()) {
      if (!ProcessAlive(pid)) continue;
      std::map<std::string, std::string> env = ProcessEnviron(pid);
      auto it = env.find("IOT2MQTT_INSTANCE_FILE");
      if (it == env.end() || !absl::StartsWith(it->second, data_dir())) {
        continue;  // A reused pid: not ours.
      }
      kill(static_cast<pid_t>(-pid), SIGKILL);
      kill(static_cast<pid_t>(pid), SIGKILL);
    }
  }

  TempDir root_;
  std::map<std::string, std::string> orchestrator_env_;
  std::unique_ptr<sdk::testing::LoopbackBroker> broker_;
  int config_port_ = 0;
  int bridge_port_ = 0;
  int orchestrator_port_ = 0;
  std::unique_ptr<ChildProcess> config_;
  std::unique_ptr<ChildProcess> bridge_;
  std::unique_ptr<ChildProcess> orchestrator_;
  std::unique_ptr<ConfigService::Stub> config_stub_;
  std::unique_ptr<OrchestratorService::Stub> stub_;
};

}  // namespace iot2mqtt::orchestrator::harness

#endif  // IOT2MQTT_TESTS_INTEGRATION_ORCHESTRATOR_ORCHESTRATOR_HARNESS_H_
