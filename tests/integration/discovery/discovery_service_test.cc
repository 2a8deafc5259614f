// The discovery service as users reach it: the real iot2mqtt-discovery and
// iot2mqtt-config binaries over temporary directories on loopback, the real
// Yeelight tools against the bulb simulator, and shell-script tools of a
// test connector.
//
//   <root>/connectors/yeelight/   the repository's setup.json + manifest.json
//                                 (entries found in build/bin)
//   <root>/connectors/shtools/    /bin/sh tools (see WriteShellTools)
//   <root>/discovery.log

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "catch2/catch.hpp"
#include "connectors/yeelight/testing/bulb_simulator.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/create_channel.h"
#include "iot2mqtt/discovery/v1/discovery_service.grpc.pb.h"
#include "rapidjson/document.h"
#include "tests/integration/config/config_harness.h"
#include "tests/integration/discovery/child_test_util.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::discovery {
namespace {

using ::iot2mqtt::config::harness::ServiceStack;
using ::iot2mqtt::discovery::v1::DiscoveryService;
using ::iot2mqtt::testing::BinaryPath;
using ::iot2mqtt::testing::ChildProcess;
using ::iot2mqtt::testing::FreePort;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::SourcePath;
using ::iot2mqtt::testing::WaitFor;
using ::iot2mqtt::testing::WriteFile;
using ::iot2mqtt::yeelight::testing::BulbSimulator;
using DiscoveredDevice = ::iot2mqtt::config::v1::DiscoveredDevice;

constexpr int kParallelTools = 20;
constexpr char kSecret[] = "hunter2-very-secret";

std::unique_ptr<grpc::ClientContext> Context(int seconds = 30) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(seconds));
  return context;
}

std::shared_ptr<grpc::Channel> Channel(int port) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                   grpc::InsecureChannelCredentials(), args);
}

// The ErrorInfo reason of a failed call ("" when none).
std::string ReasonOf(const grpc::Status& status) {
  google::rpc::Status rpc_status;
  if (!rpc_status.ParseFromString(status.error_details())) return "";
  for (const auto& detail : rpc_status.details()) {
    google::rpc::ErrorInfo info;
    if (detail.UnpackTo(&info)) return info.reason();
  }
  return "";
}

void CheckError(const grpc::Status& status, grpc::StatusCode code,
                const std::string& reason) {
  INFO(status.error_message());
  CHECK(status.error_code() == code);
  CHECK(ReasonOf(status) == reason);
}

rapidjson::Document Parse(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.c_str(), text.size());
  INFO(text);
  REQUIRE_FALSE(doc.HasParseError());
  REQUIRE(doc.IsObject());
  return doc;
}

// The member at `path` (each step must exist).
const rapidjson::Value& At(const rapidjson::Value& value,
                           std::initializer_list<const char*> path) {
  const rapidjson::Value* at = &value;
  for (const char* key : path) {
    INFO("member " << key);
    REQUIRE(at->IsObject());
    REQUIRE(at->HasMember(key));
    at = &(*at)[key];
  }
  return *at;
}

std::string StrAt(const rapidjson::Value& value,
                  std::initializer_list<const char*> path) {
  const rapidjson::Value& at = At(value, path);
  REQUIRE(at.IsString());
  return std::string(at.GetString(), at.GetStringLength());
}

int IntAt(const rapidjson::Value& value,
          std::initializer_list<const char*> path) {
  const rapidjson::Value& at = At(value, path);
  REQUIRE(at.IsInt());
  return at.GetInt();
}

bool BoolAt(const rapidjson::Value& value,
            std::initializer_list<const char*> path) {
  const rapidjson::Value& at = At(value, path);
  REQUIRE(at.IsBool());
  return at.GetBool();
}

void MakeDir(const std::string& path) {
  REQUIRE(mkdir(path.c_str(), 0755) == 0);
}

void WriteScript(const std::string& path, const std::string& body) {
  WriteFile(path, "#!/bin/sh\n" + body);
  REQUIRE(chmod(path.c_str(), 0755) == 0);
}

// Joins a thread when the scope ends (also when a REQUIRE throws).
class Joiner {
 public:
  explicit Joiner(std::thread& thread) : thread_(thread) {}
  ~Joiner() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::thread& thread_;
};

// Whether any live (not zombie) process of the group `pgid` is left.
bool GroupAlive(pid_t pgid) { return !test::LiveGroupMembers(pgid).empty(); }

// The real config and discovery binaries plus one simulated bulb.
class DiscoveryStack {
 public:
  DiscoveryStack() {
    auto sim = BulbSimulator::Start(1);
    REQUIRE(sim.ok());
    sim_ = *std::move(sim);
    const std::string yeelight = stack_.connectors_dir() + "/yeelight";
    MakeDir(yeelight);
    for (const char* file : {"setup.json", "manifest.json"}) {
      WriteFile(
          yeelight + "/" + file,
          ReadFile(SourcePath(absl::StrCat("connectors/yeelight/", file))));
    }
    WriteShellTools();
    stack_.StartConfig();
    StartDiscovery();
  }

  ~DiscoveryStack() {
    if (discovery_ != nullptr) {
      stub_.reset();
      discovery_->Signal(SIGTERM);
      (void)discovery_->Wait(absl::Seconds(30));
    }
  }

  DiscoveryStack(const DiscoveryStack&) = delete;
  DiscoveryStack& operator=(const DiscoveryStack&) = delete;

  // SIGTERM; the exit code.
  // SIGKILL: no graceful stop at all.
  void KillDiscovery() {
    REQUIRE(discovery_ != nullptr);
    stub_.reset();
    discovery_->Signal(SIGKILL);
    absl::StatusOr<int> code = discovery_->Wait(absl::Seconds(60));
    REQUIRE(code.ok());
    discovery_.reset();
  }

  int StopDiscovery() {
    REQUIRE(discovery_ != nullptr);
    stub_.reset();  // Else the server waits its grace period for it.
    discovery_->Signal(SIGTERM);
    absl::StatusOr<int> code = discovery_->Wait(absl::Seconds(60));
    INFO(Logs());
    REQUIRE(code.ok());
    discovery_.reset();
    return *code;
  }

  DiscoveryService::Stub& stub() {
    REQUIRE(stub_ != nullptr);
    return *stub_;
  }
  config::v1::ConfigService::Stub& config() { return stack_.stub(); }
  BulbSimulator& sim() { return *sim_; }
  int port() const { return port_; }
  std::string shtools_dir() const {
    return stack_.connectors_dir() + "/shtools";
  }
  std::string barrier_dir() const { return stack_.root() + "/barrier"; }

  std::string Logs() const {
    std::string logs = stack_.Logs();
    const std::string path = stack_.root() + "/discovery.log";
    if (access(path.c_str(), R_OK) == 0) {
      std::string text = ReadFile(path);
      if (text.size() > 8000) text = text.substr(text.size() - 8000);
      absl::StrAppend(&logs, "--- discovery.log\n", text);
    }
    return logs;
  }
  std::string DiscoveryLog() const {
    return ReadFile(stack_.root() + "/discovery.log");
  }

  // --- Calls --------------------------------------------------------------

  v1::ExecuteToolResponse Execute(const std::string& integration,
                                  const std::string& tool,
                                  const std::string& input,
                                  grpc::Status* status_out = nullptr) {
    v1::ExecuteToolRequest request;
    request.set_integration(integration);
    request.set_tool(tool);
    request.set_input(input);
    v1::ExecuteToolResponse response;
    grpc::Status status =
        stub().ExecuteTool(Context(120).get(), request, &response);
    if (status_out != nullptr) {
      *status_out = status;
    } else {
      INFO(status.error_message() << "\n" << Logs());
      REQUIRE(status.ok());
    }
    return response;
  }

  std::string StartSession(const std::string& integration, int timeout) {
    v1::StartDiscoveryRequest request;
    request.set_name(integration);
    request.set_timeout(timeout);
    v1::StartDiscoveryResponse response;
    grpc::Status status =
        stub().StartDiscovery(Context().get(), request, &response);
    INFO(status.error_message() << "\n" << Logs());
    REQUIRE(status.ok());
    CHECK(response.status() == "started");
    CHECK(response.websocket_url() ==
          absl::StrCat("/api/discovery/", response.session_id()));
    return response.session_id();
  }

  // Every state WatchSession sends, to its end; the stream's status.
  std::vector<v1::DiscoverySession> Watch(const std::string& session_id,
                                          grpc::Status* status) {
    auto context = Context(120);
    v1::SessionRequest request;
    request.set_session_id(session_id);
    auto reader = stub().WatchSession(context.get(), request);
    std::vector<v1::DiscoverySession> states;
    v1::DiscoverySession state;
    while (reader->Read(&state)) states.push_back(state);
    *status = reader->Finish();
    return states;
  }

  v1::DiscoverySession GetSession(const std::string& session_id) {
    v1::SessionRequest request;
    request.set_session_id(session_id);
    v1::DiscoverySession response;
    grpc::Status status =
        stub().GetSession(Context().get(), request, &response);
    INFO(status.error_message());
    REQUIRE(status.ok());
    return response;
  }

  std::vector<DiscoveredDevice> Devices() {
    v1::ListDevicesResponse response;
    grpc::Status status = stub().ListDevices(Context().get(), {}, &response);
    INFO(status.error_message() << "\n" << Logs());
    REQUIRE(status.ok());
    return {response.devices().begin(), response.devices().end()};
  }

  v1::GetStatusResponse Status() {
    v1::GetStatusResponse response;
    grpc::Status status = stub().GetStatus(Context().get(), {}, &response);
    INFO(status.error_message());
    REQUIRE(status.ok());
    return response;
  }

 private:
  // Tools of the `shtools` connector (all on the host network: namespace
  // isolation is the executor's own test).
  void WriteShellTools() {
    const std::string dir = shtools_dir();
    MakeDir(dir);
    MakeDir(dir + "/tools");
    MakeDir(barrier_dir());
    WriteFile(dir + "/manifest.json",
              R"({"name":"shtools","display_name":"Shell tools",)"
              R"("version":"0.0.1","entry":"tools/echo.sh"})");
    WriteFile(dir + "/setup.json", R"({
  "version": "0.0.1",
  "display_name": "Shell tools",
  "discovery": {"supported": true, "tool": "slow_discover", "timeout": 120},
  "tools": {
    "echo": {"entry": "tools/echo.sh", "network": "local",
             "secrets": ["password"]},
    "fail": {"entry": "tools/fail.sh", "network": "local"},
    "garbage": {"entry": "tools/garbage.sh", "network": "local"},
    "stubborn": {"entry": "tools/stubborn.sh", "timeout": 1,
                 "network": "local"},
    "sleepy": {"entry": "tools/sleepy.sh", "timeout": 120,
               "network": "local"},
    "napping": {"entry": "tools/napping.sh", "timeout": 120,
                "network": "local"},
    "barrier": {"entry": "tools/barrier.sh", "timeout": 120,
                "network": "local"},
    "escape": {"entry": "tools/escape.sh", "network": "local"},
    "slow_discover": {"entry": "tools/slow_discover.sh", "timeout": 120,
                      "network": "local"}
  }
})");
    // Answers with the request it got on stdin.
    WriteScript(dir + "/tools/echo.sh",
                "request=$(cat)\n"
                "printf '{\"ok\":true,\"result\":{\"request\":%s}}\\n' "
                "\"$request\"\n");
    WriteScript(dir + "/tools/fail.sh",
                "echo \"boom: the device said no\" >&2\nexit 3\n");
    WriteScript(dir + "/tools/garbage.sh", "echo 'this is not json'\n");
    // Ignores SIGTERM (and so does its sleep): only SIGKILL ends it.
    WriteScript(dir + "/tools/stubborn.sh",
                "trap '' TERM\n"
                "echo $$ > stubborn.pid\n"
                "while :; do sleep 1; done\n");
    WriteScript(dir + "/tools/sleepy.sh",
                "echo $$ > sleepy.pid.tmp && mv sleepy.pid.tmp sleepy.pid\n"
                "sleep 120\n"
                "echo '{\"ok\":true,\"result\":{}}'\n");
    // Becomes a single long sleep (no shell left behind it).
    WriteScript(dir + "/tools/napping.sh",
                "echo $$ > napping.pid.tmp && mv napping.pid.tmp napping.pid\n"
                "exec sleep 120\n");
    // Waits until every one of the parallel calls has started.
    WriteScript(dir + "/tools/barrier.sh",
                absl::StrCat("dir='", barrier_dir(), "'\n",
                             ": > \"$dir/$$\"\n"
                             "while [ \"$(ls \"$dir\" | wc -l)\" -lt ",
                             kParallelTools,
                             " ]; do sleep 0.05; done\n"
                             "printf '{\"ok\":true,\"result\":{\"peers\":%d}}"
                             "\\n' \"$(ls \"$dir\" | wc -l)\"\n"));
    // A symbolic link inside the connector to a script outside it.
    const std::string outside = stack_.root() + "/outside.sh";
    WriteScript(outside, "echo '{\"ok\":true,\"result\":\"outside\"}'\n");
    REQUIRE(symlink(outside.c_str(), (dir + "/tools/escape.sh").c_str()) == 0);
    // Reports one device at once, then scans "slowly".
    WriteScript(dir + "/tools/slow_discover.sh",
                "echo '{\"progress\": 10}'\n"
                "echo '{\"device\": {\"mac\": \"02:00:00:00:00:01\", \"ip\": "
                "\"192.0.2.10\", \"port\": 8080, \"name\": \"Shell lamp\"}}'\n"
                "echo 'scanning slowly' >&2\n"
                "sleep 120\n"
                "echo '{\"ok\": true, \"result\": {\"devices\": []}}'\n");
  }

  void StartDiscovery() {
    port_ = FreePort();
    std::map<std::string, std::string> env = {
        {"DISCOVERY_LISTEN_ADDR", absl::StrCat("127.0.0.1:", port_)},
        {"CONFIG_SERVICE_ADDR",
         absl::StrCat("127.0.0.1:", stack_.config_port())},
        {"IOT2MQTT_DATA_DIR", stack_.data_dir()},
        {"IOT2MQTT_CONNECTORS_DIR", stack_.connectors_dir()},
        {"YEELIGHT_DISCOVERY_ADDRESS", sim_->discovery_address()},
        {"TOOL_ENV_PASSTHROUGH", "LOG_LEVEL,TZ,YEELIGHT_DISCOVERY_ADDRESS"},
        {"TOOL_KILL_GRACE_MS", "300"},
        {"LOG_LEVEL", "INFO"}};
    auto process = ChildProcess::Start(BinaryPath("iot2mqtt-discovery"), {},
                                       env, stack_.root() + "/discovery.log");
    REQUIRE(process.ok());
    discovery_ = *std::move(process);
    INFO(Logs());
    REQUIRE(WaitFor(
        [&] {
          REQUIRE(discovery_->Running());
          // A fresh channel each time: no reconnect backoff from refusals.
          stub_ = DiscoveryService::NewStub(Channel(port_));
          v1::ListSessionsResponse response;
          return stub_->ListSessions(Context(1).get(), {}, &response).ok();
        },
        absl::Seconds(20)));
  }

  ServiceStack stack_;
  std::unique_ptr<BulbSimulator> sim_;
  int port_ = 0;
  std::unique_ptr<ChildProcess> discovery_;
  std::unique_ptr<DiscoveryService::Stub> stub_;
};

std::string ErrorCodeOf(const v1::ExecuteToolResponse& response) {
  rapidjson::Document result = Parse(response.result());
  CHECK_FALSE(BoolAt(result, {"ok"}));
  return StrAt(result, {"error", "code"});
}

std::optional<DiscoveredDevice> FindDevice(
    const std::vector<DiscoveredDevice>& devices, const std::string& id) {
  for (const DiscoveredDevice& device : devices) {
    if (device.id() == id) return device;
  }
  return std::nullopt;
}

// --- ExecuteTool ---------------------------------------------------------

TEST_CASE("ExecuteTool answers with the tool's result or its failure",
          "[discovery][tools]") {
  DiscoveryStack d;

  SECTION("ok: the tool's object, declared secrets masked") {
    v1::ExecuteToolResponse response = d.Execute(
        "shtools", "echo",
        absl::StrCat(R"({"password":")", kSecret, R"(","room":"hall"})"));
    INFO(response.result());
    CHECK(response.ok());
    CHECK(response.error_code().empty());
    CHECK(response.exit_code() == 0);
    CHECK(response.duration_seconds() > 0);
    rapidjson::Document result = Parse(response.result());
    CHECK(BoolAt(result, {"ok"}));
    const auto& request = At(result, {"result", "request"});
    CHECK(StrAt(request, {"tool"}) == "echo");
    CHECK(StrAt(request, {"input", "room"}) == "hall");
    CHECK(StrAt(request, {"input", "password"}) == "******");
    CHECK_FALSE(absl::StrContains(response.result(), kSecret));
    CHECK_FALSE(absl::StrContains(d.DiscoveryLog(), kSecret));
  }

  SECTION("tool_failed: non-zero exit, stderr as the message") {
    v1::ExecuteToolResponse response = d.Execute("shtools", "fail", "{}");
    CHECK_FALSE(response.ok());
    CHECK(response.error_code() == "tool_failed");
    CHECK(response.exit_code() == 3);
    CHECK(ErrorCodeOf(response) == "tool_failed");
    CHECK(absl::StrContains(response.result(), "boom: the device said no"));
  }

  SECTION("invalid_output: stdout is not a JSON object") {
    v1::ExecuteToolResponse response = d.Execute("shtools", "garbage", "");
    CHECK_FALSE(response.ok());
    CHECK(response.error_code() == "invalid_output");
    CHECK(ErrorCodeOf(response) == "invalid_output");
  }

  SECTION("timeout: a tool ignoring SIGTERM is killed, retriable") {
    v1::ExecuteToolResponse response = d.Execute("shtools", "stubborn", "{}");
    CHECK_FALSE(response.ok());
    CHECK(response.error_code() == "timeout");
    CHECK(response.exit_code() == -1);
    rapidjson::Document result = Parse(response.result());
    CHECK(BoolAt(result, {"error", "retriable"}));
    const pid_t pgid = std::stoi(ReadFile(d.shtools_dir() + "/stubborn.pid"));
    INFO(absl::StrJoin(test::LiveGroupMembers(pgid), " "));
    CHECK_FALSE(GroupAlive(pgid));
  }

  SECTION("request errors carry their reasons") {
    grpc::Status status;
    d.Execute("shtools", "", "{}", &status);
    CheckError(status, grpc::StatusCode::INVALID_ARGUMENT, "MISSING_TOOL");
    CHECK(status.error_message() == "Missing 'tool' field");

    d.Execute("shtools", "no_such_tool", "{}", &status);
    CheckError(status, grpc::StatusCode::NOT_FOUND, "TOOL_NOT_FOUND");

    d.Execute("nosuchconnector", "echo", "{}", &status);
    CheckError(status, grpc::StatusCode::NOT_FOUND, "INTEGRATION_NOT_FOUND");
    CHECK(status.error_message() == "setup.json not found for nosuchconnector");

    d.Execute("shtools", "escape", "{}", &status);
    CheckError(status, grpc::StatusCode::FAILED_PRECONDITION,
               "ENTRY_OUTSIDE_CONNECTOR");
  }
}

TEST_CASE("ExecuteTool runs the Yeelight validate tool against a bulb",
          "[discovery][tools][yeelight]") {
  DiscoveryStack d;
  d.sim().SetProperties(0, {{"bright", "42"}});

  v1::ExecuteToolResponse found = d.Execute(
      "yeelight", "validate_device",
      absl::StrCat(R"({"host":"127.0.0.1","port":)", d.sim().port(0), "}"));
  INFO(found.result() << "\n" << d.Logs());
  REQUIRE(found.ok());
  rapidjson::Document result = Parse(found.result());
  CHECK(IntAt(result, {"result", "port"}) == d.sim().port(0));
  CHECK(StrAt(result, {"result", "properties", "bright"}) == "42");
  CHECK(StrAt(result, {"result", "properties", "power"}) ==
        d.sim().Property(0, "power"));

  v1::ExecuteToolResponse closed = d.Execute(
      "yeelight", "validate_device",
      absl::StrCat(R"({"host":"127.0.0.1","port":)", FreePort(), "}"));
  INFO(closed.result());
  CHECK_FALSE(closed.ok());
  CHECK(closed.error_code() == "validation_failed");
}

TEST_CASE("ExecuteTool runs many tools at once", "[discovery][tools]") {
  DiscoveryStack d;
  // Each barrier tool waits until all of them have started: they only
  // answer ok when they overlap.
  std::vector<std::thread> callers;
  std::vector<grpc::Status> statuses(kParallelTools);
  std::vector<v1::ExecuteToolResponse> responses(kParallelTools);
  for (int i = 0; i < kParallelTools; ++i) {
    callers.emplace_back([&d, &statuses, &responses, i] {
      auto stub = DiscoveryService::NewStub(Channel(d.port()));
      v1::ExecuteToolRequest request;
      request.set_integration("shtools");
      request.set_tool("barrier");
      statuses[i] =
          stub->ExecuteTool(Context(120).get(), request, &responses[i]);
    });
  }
  for (std::thread& caller : callers) caller.join();
  for (int i = 0; i < kParallelTools; ++i) {
    INFO("call " << i << ": " << statuses[i].error_message() << " "
                 << responses[i].result());
    REQUIRE(statuses[i].ok());
    CHECK(responses[i].ok());
    rapidjson::Document result = Parse(responses[i].result());
    CHECK(IntAt(result, {"result", "peers"}) == kParallelTools);
  }
}

TEST_CASE("a client that cancels ExecuteTool ends the tool",
          "[discovery][tools]") {
  DiscoveryStack d;
  const std::string pid_file = d.shtools_dir() + "/sleepy.pid";
  grpc::ClientContext context;
  grpc::Status status;
  std::thread caller([&] {
    auto stub = DiscoveryService::NewStub(Channel(d.port()));
    v1::ExecuteToolRequest request;
    request.set_integration("shtools");
    request.set_tool("sleepy");
    v1::ExecuteToolResponse response;
    status = stub->ExecuteTool(&context, request, &response);
  });
  Joiner joiner(caller);
  bool started = WaitFor([&] { return access(pid_file.c_str(), R_OK) == 0; },
                         absl::Seconds(30));
  context.TryCancel();
  caller.join();
  REQUIRE(started);
  const pid_t pgid = std::stoi(ReadFile(pid_file));
  CHECK(status.error_code() == grpc::StatusCode::CANCELLED);
  INFO(d.Logs());
  CHECK(WaitFor([&] { return !GroupAlive(pgid); }, absl::Seconds(30)));
}

// --- Sessions and devices --------------------------------------------------

TEST_CASE("discovery finds the bulb, stores it once, and adds it",
          "[discovery][sessions][yeelight]") {
  DiscoveryStack d;

  // Discovery: the session's states end with `completed` and the bulb.
  const std::string session_id = d.StartSession("yeelight", 2);
  grpc::Status watch_status;
  std::vector<v1::DiscoverySession> states = d.Watch(session_id, &watch_status);
  INFO(watch_status.error_message() << "\n" << d.Logs());
  CHECK(watch_status.ok());
  REQUIRE_FALSE(states.empty());
  const v1::DiscoverySession& last = states.back();
  CHECK(last.session_id() == session_id);
  CHECK(last.integration() == "yeelight");
  CHECK(last.status() == "completed");
  CHECK(last.progress() == 100);
  REQUIRE(last.devices_size() == 1);
  const DiscoveredDevice bulb = last.devices(0);
  CHECK(bulb.ip() == "127.0.0.1");
  CHECK(bulb.port() == d.sim().port(0));
  CHECK(bulb.integration() == "yeelight");
  CHECK_FALSE(bulb.added());
  const std::string bulb_id = bulb.id();
  CHECK(absl::StartsWith(bulb_id, "yeelight_"));

  // Stored, once, also after a second scan.
  std::vector<DiscoveredDevice> devices = d.Devices();
  REQUIRE(FindDevice(devices, bulb_id).has_value());
  const std::string again = d.StartSession("yeelight", 2);
  d.Watch(again, &watch_status);
  CHECK(watch_status.ok());
  CHECK(d.GetSession(again).status() == "completed");
  devices = d.Devices();
  CHECK(devices.size() == 1);
  REQUIRE(FindDevice(devices, bulb_id).has_value());
  v1::GetStatusResponse status = d.Status();
  CHECK(status.status() == "idle");
  CHECK_FALSE(status.last_scan().empty());

  // AddDevice: an instance in the config service, the device added.
  v1::AddDeviceRequest add;
  add.set_device_id(bulb_id);
  add.set_friendly_name("Hall bulb");
  v1::AddDeviceResponse added;
  grpc::Status add_status = d.stub().AddDevice(Context().get(), add, &added);
  INFO(add_status.error_message() << "\n" << d.Logs());
  REQUIRE(add_status.ok());
  CHECK(added.status() == "success");
  CHECK(added.message() ==
        absl::StrCat("Device ", bulb_id, " added successfully"));
  CHECK(added.connector() == "yeelight");
  REQUIRE_FALSE(added.instance_id().empty());
  config::v1::GetInstanceRequest get;
  get.set_connector("yeelight");
  get.set_instance_id(added.instance_id());
  config::v1::GetInstanceResponse instance;
  grpc::Status get_status =
      d.config().GetInstance(Context().get(), get, &instance);
  INFO(get_status.error_message());
  REQUIRE(get_status.ok());
  rapidjson::Document doc = Parse(instance.instance());
  INFO(instance.instance());
  CHECK(StrAt(doc, {"instance_id"}) == added.instance_id());
  CHECK(StrAt(doc, {"friendly_name"}) == "Hall bulb");
  std::optional<DiscoveredDevice> stored = FindDevice(d.Devices(), bulb_id);
  REQUIRE(stored.has_value());
  CHECK(stored->added());
  CHECK(stored->instance_id() == added.instance_id());

  // Twice: refused; unknown: not found.
  add_status = d.stub().AddDevice(Context().get(), add, &added);
  CheckError(add_status, grpc::StatusCode::ALREADY_EXISTS,
             "DEVICE_ALREADY_ADDED");
  v1::AddDeviceRequest unknown;
  unknown.set_device_id("yeelight_nothing_here");
  add_status = d.stub().AddDevice(Context().get(), unknown, &added);
  CheckError(add_status, grpc::StatusCode::NOT_FOUND, "DEVICE_NOT_FOUND");
  CHECK(add_status.error_message() == "Device yeelight_nothing_here not found");

  // DeleteDevice forgets it (the instance stays).
  v1::DeleteDeviceRequest remove;
  remove.set_device_id(bulb_id);
  v1::DeleteDeviceResponse removed;
  grpc::Status delete_status =
      d.stub().DeleteDevice(Context().get(), remove, &removed);
  INFO(delete_status.error_message());
  REQUIRE(delete_status.ok());
  CHECK(removed.status() == "success");
  CHECK(removed.message() == absl::StrCat("Device ", bulb_id, " removed"));
  CHECK_FALSE(FindDevice(d.Devices(), bulb_id).has_value());
  CHECK(d.config().GetInstance(Context().get(), get, &instance).ok());
  delete_status = d.stub().DeleteDevice(Context().get(), remove, &removed);
  CheckError(delete_status, grpc::StatusCode::NOT_FOUND, "DEVICE_NOT_FOUND");

  // Manual adds: the bulb's port answers, a closed port does not.
  v1::AddManualDeviceRequest manual;
  manual.set_integration("yeelight");
  manual.set_instance_id("manual_bulb");
  manual.set_ip("127.0.0.1");
  manual.set_port(d.sim().port(0));
  manual.set_name("Manual bulb");
  manual.set_model("color");
  v1::AddManualDeviceResponse manual_added;
  grpc::Status manual_status =
      d.stub().AddManualDevice(Context().get(), manual, &manual_added);
  INFO(manual_status.error_message() << "\n" << d.Logs());
  REQUIRE(manual_status.ok());
  CHECK(manual_added.status() == "success");
  CHECK(manual_added.reachable());
  CHECK(manual_added.instance_id() == "manual_bulb");
  std::optional<DiscoveredDevice> manual_device =
      FindDevice(d.Devices(), manual_added.device_id());
  REQUIRE(manual_device.has_value());
  CHECK(manual_device->added());
  CHECK(manual_device->port() == d.sim().port(0));
  get.set_instance_id("manual_bulb");
  CHECK(d.config().GetInstance(Context().get(), get, &instance).ok());

  manual.set_instance_id("manual_closed");
  manual.set_port(FreePort());
  manual_status =
      d.stub().AddManualDevice(Context().get(), manual, &manual_added);
  INFO(manual_status.error_message());
  REQUIRE(manual_status.ok());
  CHECK_FALSE(manual_added.reachable());

  manual.set_ip("not a host");
  manual_status =
      d.stub().AddManualDevice(Context().get(), manual, &manual_added);
  CheckError(manual_status, grpc::StatusCode::INVALID_ARGUMENT, "INVALID_IP");

  // The bulb comes back with a new scan, not added this time.
  d.Watch(d.StartSession("yeelight", 2), &watch_status);
  CHECK(watch_status.ok());
  status = d.Status();
  CHECK(status.status() == "idle");
  CHECK(status.total_devices() == 3);
  CHECK(status.added_devices() == 2);
  CHECK(status.available_devices() == 1);
  CHECK(status.devices_size() == 3);
  CHECK(status.active_sessions_size() == 0);
}

TEST_CASE("a manual add of a scanned address uses the scanned record",
          "[discovery][devices]") {
  DiscoveryStack d;
  grpc::Status watch_status;
  d.Watch(d.StartSession("yeelight", 2), &watch_status);
  INFO(watch_status.error_message() << "\n" << d.Logs());
  REQUIRE(watch_status.ok());
  std::vector<DiscoveredDevice> devices = d.Devices();
  REQUIRE(devices.size() == 1);
  const DiscoveredDevice bulb = devices[0];

  v1::AddManualDeviceRequest manual;
  manual.set_integration("yeelight");
  manual.set_instance_id("typed_in");
  manual.set_ip("127.0.0.1");
  manual.set_port(d.sim().port(0));
  v1::AddManualDeviceResponse added;
  grpc::Status status =
      d.stub().AddManualDevice(Context().get(), manual, &added);
  INFO(status.error_message());
  REQUIRE(status.ok());
  // No second record for the same bulb; the instance names the bulb's own
  // id, as an add from the scan would.
  CHECK(added.device_id() == bulb.id());
  devices = d.Devices();
  REQUIRE(devices.size() == 1);
  CHECK(devices[0].added());
  CHECK(devices[0].instance_id() == "typed_in");
  config::v1::GetInstanceRequest get;
  get.set_connector("yeelight");
  get.set_instance_id("typed_in");
  config::v1::GetInstanceResponse instance;
  REQUIRE(d.config().GetInstance(Context().get(), get, &instance).ok());
  rapidjson::Document doc = Parse(instance.instance());
  INFO(instance.instance());
  REQUIRE(doc["devices"].IsArray());
  CHECK(std::string(doc["devices"][0]["device_id"].GetString()) ==
        bulb.device_id());

  // The same address again: already added.
  manual.set_instance_id("typed_again");
  status = d.stub().AddManualDevice(Context().get(), manual, &added);
  CheckError(status, grpc::StatusCode::ALREADY_EXISTS, "DEVICE_ALREADY_ADDED");
}

TEST_CASE("WatchDevices sends the list now and after every change",
          "[discovery][devices]") {
  DiscoveryStack d;
  // A channel of its own: it outlives the stack's stub at the end.
  auto watcher = DiscoveryService::NewStub(Channel(d.port()));
  auto context = Context(120);
  auto reader = watcher->WatchDevices(context.get(), {});
  v1::DevicesSnapshot snapshot;
  REQUIRE(reader->Read(&snapshot));
  CHECK(snapshot.devices_size() == 0);

  v1::AddManualDeviceRequest manual;
  manual.set_integration("yeelight");
  manual.set_instance_id("watched_bulb");
  manual.set_ip("127.0.0.1");
  manual.set_port(d.sim().port(0));
  v1::AddManualDeviceResponse added;
  grpc::Status status =
      d.stub().AddManualDevice(Context().get(), manual, &added);
  INFO(status.error_message() << "\n" << d.Logs());
  REQUIRE(status.ok());
  // The next snapshots end with the device added.
  bool seen = false;
  while (!seen && reader->Read(&snapshot)) {
    seen = snapshot.devices_size() == 1 && snapshot.devices(0).added() &&
           snapshot.devices(0).id() == added.device_id();
  }
  CHECK(seen);

  v1::DeleteDeviceRequest remove;
  remove.set_device_id(added.device_id());
  v1::DeleteDeviceResponse removed;
  REQUIRE(d.stub().DeleteDevice(Context().get(), remove, &removed).ok());
  bool gone = false;
  while (!gone && reader->Read(&snapshot)) gone = snapshot.devices_size() == 0;
  CHECK(gone);

  // The service's shutdown ends the stream with its reason.
  CHECK(d.StopDiscovery() == 0);
  while (reader->Read(&snapshot)) {
  }
  grpc::Status end = reader->Finish();
  CheckError(end, grpc::StatusCode::UNAVAILABLE, "SHUTTING_DOWN");
}

TEST_CASE("a cancelled session keeps the devices it found",
          "[discovery][sessions]") {
  DiscoveryStack d;
  const std::string session_id = d.StartSession("shtools", 0);
  INFO(d.Logs());
  REQUIRE(WaitFor([&] { return d.GetSession(session_id).devices_size() == 1; },
                  absl::Seconds(30)));
  v1::DiscoverySession running = d.GetSession(session_id);
  CHECK(running.status() == "running");
  CHECK(running.timeout() == 120);
  // The same connector again joins the running session.
  CHECK(d.StartSession("shtools", 0) == session_id);
  v1::GetStatusResponse status = d.Status();
  CHECK(status.status() == "scanning");
  REQUIRE(status.active_sessions_size() == 1);
  CHECK(status.active_sessions(0).session_id() == session_id);

  v1::SessionRequest request;
  request.set_session_id(session_id);
  v1::DiscoverySession cancelled;
  grpc::Status cancel_status =
      d.stub().CancelSession(Context().get(), request, &cancelled);
  INFO(cancel_status.error_message());
  REQUIRE(cancel_status.ok());
  CHECK(cancelled.status() == "cancelled");
  CHECK(d.GetSession(session_id).status() == "cancelled");
  grpc::Status watch_status;
  std::vector<v1::DiscoverySession> states = d.Watch(session_id, &watch_status);
  CHECK(watch_status.ok());
  REQUIRE(states.size() == 1);
  CHECK(states[0].status() == "cancelled");
  std::optional<DiscoveredDevice> lamp =
      FindDevice(d.Devices(), "shtools_020000000001");
  REQUIRE(lamp.has_value());
  CHECK(lamp->ip() == "192.0.2.10");
  CHECK(d.Status().status() == "idle");

  // Unknown sessions.
  request.set_session_id("no-such-session");
  v1::DiscoverySession unknown;
  CheckError(d.stub().GetSession(Context().get(), request, &unknown),
             grpc::StatusCode::NOT_FOUND, "SESSION_NOT_FOUND");
  grpc::Status unknown_watch;
  d.Watch("no-such-session", &unknown_watch);
  CheckError(unknown_watch, grpc::StatusCode::NOT_FOUND, "SESSION_NOT_FOUND");
  CHECK(unknown_watch.error_message() == "Invalid session ID");

  // Timeouts outside 1..300 are refused.
  v1::StartDiscoveryRequest bad;
  bad.set_name("shtools");
  bad.set_timeout(301);
  v1::StartDiscoveryResponse ignored;
  CheckError(d.stub().StartDiscovery(Context().get(), bad, &ignored),
             grpc::StatusCode::INVALID_ARGUMENT, "INVALID_TIMEOUT");
}

TEST_CASE("SIGTERM ends running tools and exits 0", "[discovery][shutdown]") {
  DiscoveryStack d;
  const std::string pid_file = d.shtools_dir() + "/sleepy.pid";
  grpc::Status status;
  std::thread caller([&] {
    auto stub = DiscoveryService::NewStub(Channel(d.port()));
    v1::ExecuteToolRequest request;
    request.set_integration("shtools");
    request.set_tool("sleepy");
    v1::ExecuteToolResponse response;
    status = stub->ExecuteTool(Context(120).get(), request, &response);
  });
  Joiner joiner(caller);
  bool started = WaitFor([&] { return access(pid_file.c_str(), R_OK) == 0; },
                         absl::Seconds(30));
  INFO(d.Logs());
  REQUIRE(started);
  const pid_t pgid = std::stoi(ReadFile(pid_file));
  CHECK(GroupAlive(pgid));
  CHECK(d.StopDiscovery() == 0);
  caller.join();
  CHECK_FALSE(GroupAlive(pgid));
  INFO(status.error_message());
  CheckError(status, grpc::StatusCode::UNAVAILABLE, "SHUTTING_DOWN");
}

TEST_CASE("a tool does not outlive a killed discovery service",
          "[discovery][shutdown]") {
  DiscoveryStack d;
  const std::string pid_file = d.shtools_dir() + "/napping.pid";
  std::thread caller([&] {
    auto stub = DiscoveryService::NewStub(Channel(d.port()));
    v1::ExecuteToolRequest request;
    request.set_integration("shtools");
    request.set_tool("napping");
    v1::ExecuteToolResponse response;
    // The call fails when the service dies; only the tool matters here.
    static_cast<void>(
        stub->ExecuteTool(Context(120).get(), request, &response));
  });
  Joiner joiner(caller);
  bool started = WaitFor([&] { return access(pid_file.c_str(), R_OK) == 0; },
                         absl::Seconds(30));
  INFO(d.Logs());
  REQUIRE(started);
  const pid_t pgid = std::stoi(ReadFile(pid_file));
  CHECK(GroupAlive(pgid));
  d.KillDiscovery();
  // The tool (now a lone `sleep 120`) is killed with its service.
  CHECK(WaitFor([&] { return !GroupAlive(pgid); }, absl::Seconds(30)));
  caller.join();
}

}  // namespace
}  // namespace iot2mqtt::discovery
