// ToolExecutor with real tools (shell scripts in a connector directory):
// upstream's result contract, secrets, entry confinement, the clean
// environment, network isolation, parallel runs, limits and cancellation.

#include "services/discovery/tool_executor.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "catch2/catch.hpp"
#include "rapidjson/document.h"
#include "services/common/status.h"
#include "tests/integration/discovery/child_test_util.h"
#include "tests/support/captured_log.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::discovery {
namespace {

using ::iot2mqtt::discovery::test::FileExists;
using ::iot2mqtt::discovery::test::LiveGroupMembers;
using ::iot2mqtt::discovery::test::ProcessGone;
using ::iot2mqtt::discovery::test::ReadPidFile;
using ::iot2mqtt::discovery::test::WriteScript;
using ::iot2mqtt::testing::CapturedLog;
using ::iot2mqtt::testing::ListDir;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::TempDir;
using ::iot2mqtt::testing::WaitFor;

constexpr char kSecret[] = "hunter2-S3cret";

// A connector directory <tmp>/demo with its tools; <tmp> is "outside".
class Connector {
 public:
  Connector() : dir_(root_.Join("demo")) {
    REQUIRE(mkdir(dir_.c_str(), 0755) == 0);
  }
  const std::string& dir() const { return dir_; }
  std::string Join(const std::string& name) const { return dir_ + "/" + name; }
  std::string Outside(const std::string& name) const {
    return root_.Join(name);
  }

  // Writes `body` as the executable `name` (a /bin/sh script unless the
  // body has its own #! line).
  void Script(const std::string& name, const std::string& body) const {
    WriteScript(Join(name),
                absl::StartsWith(body, "#!") ? body : "#!/bin/sh\n" + body);
  }

  // Tool "t" of a setup.json declaring `declaration` for it.
  static ToolDeclaration Tool(const std::string& declaration) {
    absl::StatusOr<ToolDeclaration> tool = ParseToolDeclaration(
        absl::StrCat(R"({"name":"demo","tools":{"t":)", declaration, "}}"),
        "demo", "t");
    INFO(tool.status().ToString());
    REQUIRE(tool.ok());
    return *tool;
  }

 private:
  TempDir root_;
  std::string dir_;
};

ToolExecutorOptions FastOptions() {
  ToolExecutorOptions options;
  options.limits.kill_grace = absl::Milliseconds(300);
  return options;
}

ToolRun Run(
    ToolExecutor& executor, const Connector& connector,
    const ToolDeclaration& tool, const std::string& input = "{}",
    CancelToken* cancel = nullptr,
    const std::vector<std::pair<std::string, std::string>>& extra = {}) {
  absl::StatusOr<ToolRun> run =
      executor.Execute("demo", connector.dir(), tool, input, cancel, extra);
  INFO(run.status().ToString());
  REQUIRE(run.ok());
  return *run;
}

struct ErrorView {
  std::string code;
  std::string message;
  bool retriable = false;
};

// The {"ok":false,"error":{...}} of a result.
ErrorView ErrorOf(const ToolRun& run) {
  INFO(run.result_json);
  rapidjson::Document doc;
  doc.Parse(run.result_json.c_str());
  REQUIRE(doc.IsObject());
  REQUIRE(doc["ok"].IsFalse());
  const rapidjson::Value& error = doc["error"];
  REQUIRE(error.IsObject());
  REQUIRE(error["code"].IsString());
  REQUIRE(error["message"].IsString());
  REQUIRE(error["retriable"].IsBool());
  CHECK(run.error_code == error["code"].GetString());
  CHECK_FALSE(run.ok);
  return ErrorView{error["code"].GetString(), error["message"].GetString(),
                   error["retriable"].GetBool()};
}

std::string RealPath(const std::string& path) {
  char resolved[PATH_MAX];
  REQUIRE(realpath(path.c_str(), resolved) != nullptr);
  return resolved;
}

TEST_CASE("A tool's result object is returned verbatim") {
  Connector connector;
  const std::string printed =
      R"({"ok":true,"result":{"big":12345678901234567890,"pi":3.14159,)"
      R"("name":"lamp \"one\"","list":[1,{"nested":null}],"flag":false}})";
  connector.Script("ok.sh", absl::StrCat("cat > /dev/null\necho '", printed,
                                         "'\necho 'some log' >&2\n"));
  ToolExecutor executor(FastOptions());
  ToolRun run =
      Run(executor, connector, Connector::Tool(R"({"entry":"ok.sh"})"));
  CHECK(run.result_json == printed);
  CHECK(run.ok);
  CHECK(run.error_code.empty());
  CHECK(run.exit_code == 0);
  CHECK(executor.running() == 0);
}

TEST_CASE("A result without \"ok\" counts as ok") {
  Connector connector;
  connector.Script("plain.sh", "echo '  {\"devices\": []}  '\n");
  ToolExecutor executor(FastOptions());
  ToolRun run =
      Run(executor, connector, Connector::Tool(R"({"entry":"plain.sh"})"));
  CHECK(run.ok);
  CHECK(run.result_json == R"({"devices":[]})");
}

TEST_CASE("A handled error (exit 0) is returned with its message masked") {
  Connector connector;
  connector.Script(
      "handled.sh",
      absl::StrCat("echo '{\"ok\":false,\"error\":{\"code\":"
                   "\"validation_failed\",\"message\":\"wrong password ",
                   kSecret, "\",\"retriable\":true}}'\n"));
  ToolExecutor executor(FastOptions());
  ToolRun run =
      Run(executor, connector, Connector::Tool(R"({"entry":"handled.sh",
                                        "secrets":["password"]})"),
          absl::StrCat(R"({"password":")", kSecret, R"("})"));
  ErrorView error = ErrorOf(run);
  CHECK(error.code == "validation_failed");
  CHECK(error.message == "wrong password ******");
  CHECK(error.retriable);
  CHECK(run.exit_code == 0);
}

TEST_CASE("A crashing tool is tool_failed with its stderr as the message") {
  Connector connector;
  connector.Script("crash.sh",
                   "echo 'Traceback: something broke' >&2\n"
                   "echo '  at line 3  ' >&2\nexit 3\n");
  connector.Script("silent.sh", "exit 4\n");
  ToolExecutor executor(FastOptions());
  ToolRun run =
      Run(executor, connector, Connector::Tool(R"({"entry":"crash.sh"})"));
  ErrorView error = ErrorOf(run);
  CHECK(error.code == "tool_failed");
  CHECK(error.message == "Traceback: something broke\n  at line 3");
  CHECK_FALSE(error.retriable);
  CHECK(run.exit_code == 3);

  run = Run(executor, connector, Connector::Tool(R"({"entry":"silent.sh"})"));
  error = ErrorOf(run);
  CHECK(error.code == "tool_failed");
  CHECK(error.message == "non-zero exit code 4");
  CHECK(run.exit_code == 4);
}

TEST_CASE("A tool failure keeps the last 4 KiB of stderr") {
  Connector connector;
  connector.Script("noisy.sh",
                   "head -c 20000 /dev/zero | tr '\\0' n >&2\n"
                   "echo 'FATAL: the real reason' >&2\nexit 1\n");
  ToolExecutor executor(FastOptions());
  ToolRun run =
      Run(executor, connector, Connector::Tool(R"({"entry":"noisy.sh"})"));
  ErrorView error = ErrorOf(run);
  CHECK(error.message.size() <= 4096);
  CHECK(absl::StartsWith(error.message, "..."));
  CHECK(absl::EndsWith(error.message, "FATAL: the real reason"));
}

TEST_CASE("A tool killed by a signal is tool_failed") {
  Connector connector;
  connector.Script("killed.sh", "kill -KILL $$\n");
  ToolExecutor executor(FastOptions());
  ToolRun run =
      Run(executor, connector, Connector::Tool(R"({"entry":"killed.sh"})"));
  ErrorView error = ErrorOf(run);
  CHECK(error.code == "tool_failed");
  CHECK(error.message == "killed by signal SIGKILL");
  CHECK(run.exit_code == -1);
}

TEST_CASE("Anything but one JSON object on stdout is invalid_output") {
  Connector connector;
  ToolExecutor executor(FastOptions());
  const char* outputs[] = {"not json at all", "[1,2]",    "{} {}",
                           "{\"ok\":true",    "\"text\"", "42"};
  for (const char* output : outputs) {
    INFO(output);
    connector.Script("garbage.sh", absl::StrCat("echo '", output, "'\n"));
    ToolRun run =
        Run(executor, connector, Connector::Tool(R"({"entry":"garbage.sh"})"));
    ErrorView error = ErrorOf(run);
    CHECK(error.code == "invalid_output");
    CHECK(error.message == "Tool returned invalid JSON");
    CHECK_FALSE(error.retriable);
    CHECK(run.exit_code == 0);
  }
}

TEST_CASE("Empty stdout is invalid_output, not success") {
  Connector connector;
  connector.Script("empty.sh", "echo 'only a log line' >&2\necho\n");
  ToolExecutor executor(FastOptions());
  ToolRun run =
      Run(executor, connector, Connector::Tool(R"({"entry":"empty.sh"})"));
  ErrorView error = ErrorOf(run);
  CHECK(error.code == "invalid_output");
  CHECK(error.message == "Tool printed nothing");
}

TEST_CASE("A tool past its timeout is ended with its whole process group") {
  Connector connector;
  connector.Script("stubborn.sh",
                   "trap '' TERM\n"
                   "sleep 1000 &\n"
                   "echo $! > grandchild.pid\n"
                   "echo $$ > leader.pid\n"
                   "while :; do sleep 1; done\n");
  ToolExecutor executor(FastOptions());
  ToolRun run = Run(executor, connector,
                    Connector::Tool(R"({"entry":"stubborn.sh","timeout":2})"));
  ErrorView error = ErrorOf(run);
  CHECK(error.code == "timeout");
  CHECK(error.message == "Tool 't' timed out after 2 s");
  CHECK(error.retriable);
  CHECK(run.exit_code == -1);
  int64_t leader = ReadPidFile(connector.Join("leader.pid"));
  int64_t grandchild = ReadPidFile(connector.Join("grandchild.pid"));
  CHECK(ProcessGone(leader));
  CHECK(ProcessGone(grandchild));
  CHECK(LiveGroupMembers(leader).empty());
}

TEST_CASE("Huge stdout is invalid_output naming the limit") {
  Connector connector;
  connector.Script("flood.sh", "head -c 10485760 /dev/zero | tr '\\0' '['\n");
  ToolExecutor executor(FastOptions());
  ToolRun run =
      Run(executor, connector, Connector::Tool(R"({"entry":"flood.sh"})"));
  ErrorView error = ErrorOf(run);
  CHECK(error.code == "invalid_output");
  CHECK(error.message == "Tool output exceeds 1048576 bytes");
}

TEST_CASE("Huge stderr does not stop a tool that succeeds") {
  Connector connector;
  connector.Script("chatty.sh",
                   "head -c 10485760 /dev/zero | tr '\\0' l >&2\n"
                   "echo '{\"ok\":true,\"result\":\"done\"}'\n");
  ToolExecutor executor(FastOptions());
  ToolRun run =
      Run(executor, connector, Connector::Tool(R"({"entry":"chatty.sh"})"));
  CHECK(run.ok);
  CHECK(run.result_json == R"({"ok":true,"result":"done"})");
}

TEST_CASE("Declared secrets never appear in what a run returns or logs") {
  Connector connector;
  // The secret in a nested result string, an array, a key, and stderr.
  connector.Script(
      "leaky.sh",
      absl::StrCat("cat > /dev/null\necho 'using ", kSecret, "' >&2\n",
                   "echo '{\"ok\":true,\"result\":{\"url\":\"rtsp://u:",
                   kSecret, "@192.0.2.7/\",\"list\":[\"", kSecret, "\"],\"",
                   kSecret, "\":1}}'\n"));
  connector.Script("leaky_fail.sh", absl::StrCat("echo 'login failed for u/",
                                                 kSecret, "' >&2\nexit 2\n"));
  const std::string input = absl::StrCat(R"({"host":"192.0.2.7","password":")",
                                         kSecret, R"(","pin":987654321})");
  ToolExecutor executor(FastOptions());
  CapturedLog log;

  ToolRun ok = Run(executor, connector, Connector::Tool(R"({"entry":"leaky.sh",
                                       "secrets":["password","pin"]})"),
                   input);
  CHECK(ok.ok);
  CHECK(ok.result_json ==
        R"({"ok":true,"result":{"url":"rtsp://u:******@192.0.2.7/",)"
        R"("list":["******"],"******":1}})");

  ToolRun failed =
      Run(executor, connector, Connector::Tool(R"({"entry":"leaky_fail.sh",
                                           "secrets":["password"]})"),
          input);
  ErrorView error = ErrorOf(failed);
  CHECK(error.code == "tool_failed");
  CHECK(error.message == "login failed for u/******");

  for (const ToolRun* run : {&ok, &failed}) {
    CHECK_FALSE(absl::StrContains(run->result_json, kSecret));
    CHECK_FALSE(absl::StrContains(run->error_code, kSecret));
  }
  CHECK(log.Count("tool run finished") == 2);
  CHECK_FALSE(absl::StrContains(log.text(), kSecret));
  CHECK_FALSE(absl::StrContains(log.text(), "987654321"));
}

TEST_CASE("Entries outside the connector directory never run") {
  Connector connector;
  const std::string marker = connector.Outside("marker");
  connector.Script("../outside.sh", absl::StrCat("touch ", marker, "\n"));
  REQUIRE(symlink(connector.Outside("outside.sh").c_str(),
                  connector.Join("link.sh").c_str()) == 0);
  REQUIRE(symlink(connector.Outside("").c_str(),
                  connector.Join("up").c_str()) == 0);
  ToolExecutor executor(FastOptions());
  struct Case {
    std::string entry;
    absl::StatusCode code;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {"../outside.sh", absl::StatusCode::kFailedPrecondition,
       "ENTRY_OUTSIDE_CONNECTOR"},
      {"actions/../../outside.sh", absl::StatusCode::kFailedPrecondition,
       "ENTRY_OUTSIDE_CONNECTOR"},
      {connector.Outside("outside.sh"), absl::StatusCode::kFailedPrecondition,
       "ENTRY_OUTSIDE_CONNECTOR"},
      {"/bin/sh", absl::StatusCode::kFailedPrecondition,
       "ENTRY_OUTSIDE_CONNECTOR"},
      {"link.sh", absl::StatusCode::kFailedPrecondition,
       "ENTRY_OUTSIDE_CONNECTOR"},
      {"up/outside.sh", absl::StatusCode::kFailedPrecondition,
       "ENTRY_OUTSIDE_CONNECTOR"},
      {"missing.sh", absl::StatusCode::kNotFound, "ENTRY_NOT_FOUND"},
  };
  for (const Case& c : cases) {
    INFO(c.entry);
    ToolDeclaration tool;
    tool.id = "t";
    tool.entry = c.entry;
    absl::StatusOr<ToolRun> run =
        executor.Execute("demo", connector.dir(), tool, "{}", nullptr);
    REQUIRE_FALSE(run.ok());
    CHECK(run.status().code() == c.code);
    CHECK(common::ReasonOf(run.status()) == c.reason);
    if (c.reason == "ENTRY_NOT_FOUND") {
      CHECK(run.status().message() == "Entry script not found: missing.sh");
    }
  }
  CHECK_FALSE(FileExists(marker));
  CHECK(executor.running() == 0);
}

TEST_CASE("A non-executable entry is ENTRY_NOT_FOUND") {
  Connector connector;
  ::iot2mqtt::testing::WriteFile(connector.Join("plain.txt"), "echo hi\n");
  ToolExecutor executor(FastOptions());
  absl::StatusOr<ToolDeclaration> tool = ParseToolDeclaration(
      R"({"tools":{"t":{"entry":"plain.txt"}}})", "demo", "t");
  REQUIRE(tool.ok());
  CHECK(common::ReasonOf(
            executor.ResolveEntry(connector.dir(), tool->entry).status()) ==
        "ENTRY_NOT_FOUND");
  absl::StatusOr<std::string> inside =
      executor.ResolveEntry(connector.dir(), "./plain.txt");
  CHECK_FALSE(inside.ok());
}

TEST_CASE("A tool sees only the clean environment and its declaration") {
  Connector connector;
  connector.Script("env.sh", "env > env.txt\necho '{\"ok\":true}'\n");
  REQUIRE(setenv("IOT2MQTT_TEST_SECRET_ENV", "must-not-leak", 1) == 0);
  REQUIRE(setenv("IOT2MQTT_TEST_REGION", "eu-west", 1) == 0);
  ToolExecutorOptions options = FastOptions();
  options.passthrough_env = {"TZ=UTC"};
  ToolExecutor executor(std::move(options));
  ToolRun run = Run(executor, connector,
                    Connector::Tool(R"({"entry":"env.sh","environment":{
          "MODE":"probe","REGION":"${IOT2MQTT_TEST_REGION}",
          "LEVEL":"${IOT2MQTT_TEST_UNSET_VAR:-3}"}})"),
                    "{}", nullptr, {{"DISCOVERY_MODE", "true"}});
  unsetenv("IOT2MQTT_TEST_SECRET_ENV");
  unsetenv("IOT2MQTT_TEST_REGION");
  CHECK(run.ok);
  std::vector<std::string> lines = absl::StrSplit(
      ReadFile(connector.Join("env.txt")), '\n', absl::SkipEmpty());
  std::set<std::string> vars(lines.begin(), lines.end());
  // dash exports PWD itself: the working directory, the connector's.
  CHECK(vars.count("PWD=" + RealPath(connector.dir())) == 1);
  vars.erase("PWD=" + RealPath(connector.dir()));
  CHECK(vars == std::set<std::string>{
                    "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp",
                    "LANG=C.UTF-8", "IOT2MQTT_TOOL=t", "TZ=UTC", "MODE=probe",
                    "REGION=eu-west", "LEVEL=3", "DISCOVERY_MODE=true"});
}

TEST_CASE("stdin carries the tool id and the input") {
  Connector connector;
  connector.Script("echo.sh",
                   "input=$(cat)\n"
                   "printf '{\"ok\":true,\"result\":%s}' \"$input\"\n");
  ToolExecutor executor(FastOptions());
  ToolDeclaration tool = Connector::Tool(R"({"entry":"echo.sh"})");
  ToolRun run = Run(
      executor, connector, tool,
      R"( {"host": "192.0.2.1", "port": 55443, "n": 18446744073709551616, "f": 0.10} )");
  CHECK(
      run.result_json ==
      R"({"ok":true,"result":{"tool":"t","input":)"
      R"({"host":"192.0.2.1","port":55443,"n":18446744073709551616,"f":0.10}}})");
  for (const char* empty : {"", "null", "  "}) {
    INFO("input: '" << empty << "'");
    run = Run(executor, connector, tool, empty);
    CHECK(run.result_json == R"({"ok":true,"result":{"tool":"t","input":{}}})");
  }
}

TEST_CASE("Input that is not a JSON object is INVALID_INPUT and runs nothing") {
  Connector connector;
  connector.Script("marker.sh", "touch ran\necho '{}'\n");
  ToolExecutor executor(FastOptions());
  ToolDeclaration tool = Connector::Tool(R"({"entry":"marker.sh"})");
  for (const char* input : {"[1]", "{", "\"text\"", "{} x", "12"}) {
    INFO(input);
    absl::StatusOr<ToolRun> run =
        executor.Execute("demo", connector.dir(), tool, input, nullptr);
    REQUIRE_FALSE(run.ok());
    CHECK(run.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(common::ReasonOf(run.status()) == "INVALID_INPUT");
  }
  CHECK_FALSE(FileExists(connector.Join("ran")));
}

// A listening TCP socket on 127.0.0.1 (connections complete in the
// backlog; nothing accepts them).
class Listener {
 public:
  Listener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) ==
            0);
    REQUIRE(listen(fd_, 16) == 0);
    socklen_t length = sizeof address;
    REQUIRE(getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) ==
            0);
    port_ = ntohs(address.sin_port);
  }
  ~Listener() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST_CASE(
    "network \"none\" isolates a tool from loopback; \"local\" does not") {
  Listener listener;
  Connector connector;
  connector.Script(
      "probe.sh",
      "#!/bin/bash\n"
      "if (exec 3<>\"/dev/tcp/127.0.0.1/$PORT\") 2>/dev/null; then r=true;"
      " else r=false; fi\n"
      "echo \"{\\\"ok\\\":true,\\\"result\\\":{\\\"reachable\\\":$r}}\"\n");
  ToolExecutor executor(FastOptions());
  auto declaration = [&](const std::string& network) {
    return Connector::Tool(absl::StrCat(
        R"({"entry":"probe.sh","environment":{"PORT":")", listener.port(),
        R"("})", network.empty() ? "" : R"(,"network":")" + network + "\"",
        "}"));
  };
  const std::string reachable = R"({"ok":true,"result":{"reachable":true}})";
  const std::string unreachable = R"({"ok":true,"result":{"reachable":false}})";

  ToolRun local = Run(executor, connector, declaration("local"));
  CHECK(local.result_json == reachable);
  ToolRun internet = Run(executor, connector, declaration("internet"));
  CHECK(internet.result_json == reachable);

  for (const std::string network : {"none", ""}) {  // "" = the default.
    INFO("network: '" << network << "'");
    ToolRun none = Run(executor, connector, declaration(network));
    if (!none.ok && none.error_code == "executor_error") {
      // Neither unshare variant permitted here: the tool must not have run
      // with the network instead.
      ErrorView error = ErrorOf(none);
      WARN("network isolation unavailable: " << error.message);
      CHECK(absl::StrContains(error.message, "unshare"));
      continue;
    }
    CHECK(none.result_json == unreachable);
  }
}

TEST_CASE("Twenty tools run in parallel") {
  constexpr int kTools = 20;
  Connector connector;
  REQUIRE(mkdir(connector.Join("runs").c_str(), 0755) == 0);
  // Each records when it started, waits until all have started (so a run
  // that was serialised would time out instead of passing), sleeps 1 s and
  // records when it ended.
  connector.Script("slow.sh",
                   absl::StrCat("cat > /dev/null\n"
                                "date +%s%N > runs/$RUN.start\n"
                                "while [ \"$(ls runs | grep -c start)\" -lt ",
                                kTools,
                                " ]; do sleep 0.05; done\n"
                                "sleep 1\n"
                                "date +%s%N > runs/$RUN.end\n"
                                "echo '{\"ok\":true,\"result\":{}}'\n"));
  ToolExecutor executor(FastOptions());
  ToolDeclaration tool =
      Connector::Tool(R"({"entry":"slow.sh","timeout":300,"network":"local"})");
  std::vector<absl::StatusOr<ToolRun>> runs(kTools,
                                            absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kTools; ++i) {
    threads.emplace_back([&, i] {
      runs[i] = executor.Execute("demo", connector.dir(), tool, "{}", nullptr,
                                 {{"RUN", absl::StrCat(i)}});
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int i = 0; i < kTools; ++i) {
    INFO("run " << i << ": " << runs[i].status().ToString());
    REQUIRE(runs[i].ok());
    CHECK(runs[i]->ok);
  }
  int64_t last_start = 0;
  int64_t first_end = INT64_MAX;
  for (int i = 0; i < kTools; ++i) {
    int64_t start = 0;
    int64_t end = 0;
    REQUIRE(absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFile(connector.Join(
                                 absl::StrCat("runs/", i, ".start")))),
                             &start));
    REQUIRE(absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFile(connector.Join(
                                 absl::StrCat("runs/", i, ".end")))),
                             &end));
    last_start = std::max(last_start, start);
    first_end = std::min(first_end, end);
  }
  // Every run started before any ended: all twenty ran at once.
  CHECK(last_start < first_end);
  CHECK(executor.running() == 0);
}

TEST_CASE("Tools over max_concurrent are TOO_MANY_TOOLS") {
  Connector connector;
  connector.Script("block.sh",
                   "cat > /dev/null\n"
                   "touch started.$RUN\n"
                   "while [ ! -e release ]; do sleep 0.05; done\n"
                   "echo '{\"ok\":true}'\n");
  connector.Script("quick.sh", "echo '{\"ok\":true}'\n");
  ToolExecutorOptions options = FastOptions();
  options.max_concurrent = 2;
  ToolExecutor executor(std::move(options));
  ToolDeclaration block = Connector::Tool(
      R"({"entry":"block.sh","timeout":300,"network":"local"})");
  ToolDeclaration quick =
      Connector::Tool(R"({"entry":"quick.sh","network":"local"})");
  std::vector<absl::StatusOr<ToolRun>> runs(2, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      runs[i] = executor.Execute("demo", connector.dir(), block, "{}", nullptr,
                                 {{"RUN", absl::StrCat(i)}});
    });
  }
  bool both_running = WaitFor(
      [&] {
        return FileExists(connector.Join("started.0")) &&
               FileExists(connector.Join("started.1"));
      },
      absl::Seconds(60));
  absl::StatusOr<ToolRun> third =
      executor.Execute("demo", connector.dir(), quick, "{}", nullptr);
  ::iot2mqtt::testing::WriteFile(connector.Join("release"), "");
  for (std::thread& thread : threads) thread.join();
  REQUIRE(both_running);
  REQUIRE_FALSE(third.ok());
  CHECK(third.status().code() == absl::StatusCode::kResourceExhausted);
  CHECK(common::ReasonOf(third.status()) == "TOO_MANY_TOOLS");
  for (const auto& run : runs) {
    REQUIRE(run.ok());
    CHECK(run->ok);
  }
  // The slots are free again.
  CHECK(executor.running() == 0);
  CHECK(Run(executor, connector, quick).ok);
}

TEST_CASE("A CancelToken ends a running tool and its group") {
  Connector connector;
  connector.Script("forever.sh",
                   "trap '' TERM\n"
                   "sleep 1000 &\n"
                   "echo $! > grandchild.pid\n"
                   "echo $$ > leader.pid\n"
                   "wait\n");
  ToolExecutor executor(FastOptions());
  ToolDeclaration tool =
      Connector::Tool(R"({"entry":"forever.sh","timeout":600})");
  CancelToken token;
  absl::StatusOr<ToolRun> run = absl::UnknownError("not run");
  std::thread runner([&] {
    run = executor.Execute("demo", connector.dir(), tool, "{}", &token);
  });
  bool started =
      WaitFor([&] { return FileExists(connector.Join("leader.pid")); },
              absl::Seconds(60));
  token.Cancel();
  runner.join();
  REQUIRE(started);
  REQUIRE(run.ok());
  ErrorView error = ErrorOf(*run);
  CHECK(error.code == "executor_error");
  CHECK(error.message == "cancelled");
  int64_t leader = ReadPidFile(connector.Join("leader.pid"));
  CHECK(ProcessGone(leader));
  CHECK(ProcessGone(ReadPidFile(connector.Join("grandchild.pid"))));
  CHECK(LiveGroupMembers(leader).empty());
}

TEST_CASE("A tool that cannot start is executor_error") {
  Connector connector;
  // Executable, but its interpreter does not exist.
  connector.Script("broken.sh", "#!/nonexistent/interpreter\necho '{}'\n");
  ToolExecutor executor(FastOptions());
  ToolRun run =
      Run(executor, connector, Connector::Tool(R"({"entry":"broken.sh"})"));
  ErrorView error = ErrorOf(run);
  CHECK(error.code == "executor_error");
  CHECK(absl::StrContains(error.message, "execve"));
  CHECK(run.exit_code == -1);
}

}  // namespace
}  // namespace iot2mqtt::discovery
