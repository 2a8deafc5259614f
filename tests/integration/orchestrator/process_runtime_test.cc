// The process runtime against real child processes: small shell scripts as
// connector entries, and the real demo connector against a loopback
// Mosquitto. Covers the Runtime contract (runtime.h) as the reconcile loop
// will use it, adoption after an orchestrator crash, pid reuse, log
// rotation and process-group stops.

#include "services/orchestrator/process_runtime.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "catch2/catch.hpp"
#include "iot2mqtt/sdk/contract.h"
#include "rapidjson/document.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"
#include "sdk/testing/loopback_broker.h"
#include "sdk/testing/topic_capture.h"
#include "services/common/status.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::orchestrator {
namespace {

using ::iot2mqtt::testing::BinaryPath;
using ::iot2mqtt::testing::ChildProcess;
using ::iot2mqtt::testing::ListDir;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::TempDir;
using ::iot2mqtt::testing::WaitFor;
using ::iot2mqtt::testing::WriteFile;

// Prints what the connector sees, then waits.
constexpr char kEnvScript[] = R"sh(#!/bin/sh
echo "cwd=$(pwd)"
echo "stdin=$(readlink /proc/$$/fd/0)"
if [ -e "/proc/$$/fd/$LEAK_FD" ]; then echo "leaked fd"; else echo "no leaked fd"; fi
if [ -r "$IOT2MQTT_SECRETS_FILE" ]; then echo "secrets readable"; fi
if [ -r "$IOT2MQTT_INSTANCE_FILE" ]; then echo "instance readable"; fi
env | sort
echo "ready"
exec sleep 1000
)sh";

// A numbered line every 20 ms.
constexpr char kLoopScript[] = R"sh(#!/bin/sh
i=0
while true; do
  i=$((i+1))
  echo "line $i"
  sleep 0.02
done
)sh";

// Ignores SIGTERM, and so does its grandchild (same process group).
constexpr char kStubbornScript[] = R"sh(#!/bin/sh
trap '' TERM
sleep 1000 &
echo "grandchild $!"
while true; do sleep 1; done
)sh";

// Ends cleanly on SIGTERM.
constexpr char kGracefulScript[] = R"sh(#!/bin/sh
trap 'echo "got TERM"; exit 0' TERM
echo "ready"
while true; do sleep 0.1; done
)sh";

constexpr char kExit3Script[] = R"sh(#!/bin/sh
echo "bye"
exit 3
)sh";

// ~100-byte lines, fast.
constexpr char kChattyScript[] = R"sh(#!/bin/sh
i=0
while true; do
  i=$((i+1))
  echo "line $i ................................................................................"
  sleep 0.005
done
)sh";

constexpr char kSdkLineScript[] = R"sh(#!/bin/sh
echo '{"timestamp":"2026-11-22T16:41:07.123456Z","severity":"INFO","message":"hello"}'
echo "plain line"
exec sleep 1000
)sh";

void RequireError(const absl::Status& status, absl::StatusCode code,
                  const std::string& reason) {
  INFO(status.ToString());
  REQUIRE(status.code() == code);
  CHECK(common::ReasonOf(status) == reason);
}

// Alive and not a zombie (zombies may linger: nobody reaps orphans here).
bool ProcessAlive(int64_t pid) {
  std::string stat;
  int fd = open(absl::StrCat("/proc/", pid, "/stat").c_str(), O_RDONLY);
  if (fd < 0) return false;
  char buffer[1024];
  ssize_t n = read(fd, buffer, sizeof buffer);
  close(fd);
  if (n <= 0) return false;
  absl::StatusOr<ProcStat> parsed =
      ParseProcStat(absl::string_view(buffer, static_cast<size_t>(n)));
  return parsed.ok() && parsed->state != 'Z' && parsed->state != 'X';
}

std::string RealPath(const std::string& path) {
  char buffer[PATH_MAX];
  REQUIRE(realpath(path.c_str(), buffer) != nullptr);
  return buffer;
}

class World {
 public:
  World() {
    REQUIRE(mkdir(dir_.Join("connectors").c_str(), 0755) == 0);
    REQUIRE(mkdir(dir_.Join("instances").c_str(), 0755) == 0);
    options_.state_dir = dir_.Join("state");
    options_.poll_interval = absl::Milliseconds(20);
    options_.scan_interval = absl::Milliseconds(100);
    options_.stop_grace = absl::Seconds(5);
  }
  ~World() {
    // Nothing outlives the test, whichever runtime started it.
    for (int64_t pid : pids_) {
      if (pid <= 0 || !ProcessAlive(pid)) continue;
      kill(static_cast<pid_t>(-pid), SIGKILL);
      int status;
      waitpid(static_cast<pid_t>(pid), &status, WNOHANG);
    }
  }

  ProcessRuntimeOptions& options() { return options_; }
  ProcessRuntime& runtime() {
    if (runtime_ == nullptr) runtime_ = Open();
    return *runtime_;
  }
  std::unique_ptr<ProcessRuntime> Open() {
    absl::StatusOr<std::unique_ptr<ProcessRuntime>> runtime =
        ProcessRuntime::Open(options_);
    INFO(runtime.status().ToString());
    REQUIRE(runtime.ok());
    return *std::move(runtime);
  }
  void Crash() { runtime_.reset(); }  // Destroyed without stopping anything.

  std::string ConnectorDir(const std::string& connector) {
    std::string path = dir_.Join("connectors/" + connector);
    mkdir(path.c_str(), 0755);
    return path;
  }
  void Script(const std::string& connector, const std::string& name,
              const std::string& body) {
    std::string path = ConnectorDir(connector) + "/" + name;
    WriteFile(path, body);
    REQUIRE(chmod(path.c_str(), 0755) == 0);
  }
  RuntimeSpec Spec(const std::string& connector, const std::string& instance,
                   const std::string& entry, const std::string& body) {
    Script(connector, entry, body);
    RuntimeSpec spec;
    spec.connector = connector;
    spec.instance_id = instance;
    spec.connector_dir = ConnectorDir(connector);
    spec.instance_file = dir_.Join("instances/" + instance + ".json");
    WriteFile(spec.instance_file, "{}\n");
    spec.entry = entry;
    spec.env = {{"INSTANCE_NAME", instance}, {"CONNECTOR_TYPE", connector}};
    spec.config_hash = "hash-" + instance;
    return spec;
  }
  RuntimeInfo Create(const RuntimeSpec& spec) {
    absl::StatusOr<RuntimeInfo> info = runtime().Create(spec);
    INFO(info.status().ToString());
    REQUIRE(info.ok());
    pids_.push_back(info->pid);
    return *info;
  }
  RuntimeInfo Inspect(const std::string& id) { return Inspect(runtime(), id); }
  static RuntimeInfo Inspect(ProcessRuntime& runtime, const std::string& id) {
    absl::StatusOr<RuntimeInfo> info = runtime.Inspect(id);
    INFO(info.status().ToString());
    REQUIRE(info.ok());
    return *info;
  }
  void Track(int64_t pid) { pids_.push_back(pid); }

  std::string Log(const std::string& name) {
    return ReadFile(options_.state_dir + "/logs/" + name + ".log");
  }
  bool LogHas(const std::string& name, const std::string& needle) {
    std::string path = options_.state_dir + "/logs/" + name + ".log";
    if (access(path.c_str(), F_OK) != 0) return false;
    return absl::StrContains(ReadFile(path), needle);
  }
  std::string RecordPath(const std::string& name) {
    return options_.state_dir + "/" + name + ".json";
  }
  const TempDir& dir() const { return dir_; }

 private:
  TempDir dir_;
  ProcessRuntimeOptions options_;
  std::unique_ptr<ProcessRuntime> runtime_;
  std::vector<int64_t> pids_;
};

int LineNumber(const std::string& text) {
  std::vector<std::string> parts = absl::StrSplit(text, ' ');
  int n = -1;
  if (parts.size() < 2 || parts[0] != "line" ||
      !absl::SimpleAtoi(parts[1], &n)) {
    return -1;
  }
  return n;
}

std::vector<LogLine> Tail(ProcessRuntime& runtime, const std::string& id,
                          int tail) {
  std::vector<LogLine> lines;
  LogOptions options;
  options.tail = tail;
  absl::Status status = runtime.Logs(id, options, [&](const LogLine& line) {
    lines.push_back(line);
    return true;
  });
  INFO(status.ToString());
  REQUIRE(status.ok());
  return lines;
}

TEST_CASE("create runs the entry in its own session with a clean environment",
          "[integration][process_runtime]") {
  World world;
  RuntimeSpec spec = world.Spec("envtest", "kitchen", "run.sh", kEnvScript);
  spec.secrets_file = world.dir().Join("kitchen.secrets");
  WriteFile(spec.secrets_file, "MQTT_PASSWORD=hunter2-do-not-log\n");
  // A descriptor the orchestrator holds without O_CLOEXEC must not leak.
  int leak = open("/dev/null", O_RDONLY);
  REQUIRE(leak >= 0);
  spec.env["LEAK_FD"] = absl::StrCat(leak);
  setenv("IOT2MQTT_TEST_ORCHESTRATOR_ONLY", "1", 1);
  RuntimeInfo info = world.Create(spec);
  close(leak);
  unsetenv("IOT2MQTT_TEST_ORCHESTRATOR_ONLY");

  const std::string name = "iot2mqtt_envtest_kitchen";
  CHECK(info.id == name);
  CHECK(info.name == name);
  CHECK(info.state == RuntimeState::kRunning);
  CHECK(info.pid > 0);
  CHECK(info.image == RealPath(spec.connector_dir + "/run.sh"));
  CHECK(info.labels.at(kLabelType) == "connector");
  CHECK(info.labels.at(kLabelConnector) == "envtest");
  CHECK(info.labels.at(kLabelInstance) == "kitchen");
  CHECK(info.labels.at(kLabelConfigHash) == "hash-kitchen");
  CHECK(info.config_hash == "hash-kitchen");
  CHECK(info.status_text == absl::StrCat("running (pid ", info.pid, ")"));
  CHECK(info.created != absl::InfinitePast());
  CHECK(info.started_at != absl::InfinitePast());

  REQUIRE(WaitFor([&] { return world.LogHas(name, "ready"); }));
  std::string log = world.Log(name);
  INFO(log);
  std::vector<std::string> lines = absl::StrSplit(log, '\n');
  auto has = [&](const std::string& line) {
    return std::find(lines.begin(), lines.end(), line) != lines.end();
  };
  CHECK(has("cwd=" + RealPath(spec.connector_dir)));
  CHECK(has("stdin=/dev/null"));
  CHECK(has("no leaked fd"));
  CHECK(has("secrets readable"));
  CHECK(has("instance readable"));
  CHECK(has("IOT2MQTT_INSTANCE_FILE=" + spec.instance_file));
  CHECK(has("IOT2MQTT_SECRETS_FILE=" + spec.secrets_file));
  CHECK(has("IOT2MQTT_ENV_FILE=/dev/null"));
  CHECK(has("PATH=/usr/bin:/bin"));
  CHECK(has("INSTANCE_NAME=kitchen"));
  CHECK(has("CONNECTOR_TYPE=envtest"));
  CHECK_FALSE(absl::StrContains(log, "IOT2MQTT_TEST_ORCHESTRATOR_ONLY"));
  CHECK_FALSE(absl::StrContains(log, "HOME="));

  // Own session and process group: survives the orchestrator's group.
  CHECK(getsid(static_cast<pid_t>(info.pid)) == info.pid);
  CHECK(getpgid(static_cast<pid_t>(info.pid)) == info.pid);

  // The registry record: private, and no secret value in it.
  struct stat st;
  REQUIRE(stat(world.RecordPath(name).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  std::string record = ReadFile(world.RecordPath(name));
  CHECK_FALSE(absl::StrContains(record, "hunter2"));
  CHECK(absl::StrContains(record, absl::StrCat("\"pid\": ", info.pid)));

  // Same name again, running or not.
  RequireError(world.runtime().Create(spec).status(),
               absl::StatusCode::kAlreadyExists, "RUNTIME_EXISTS");
  REQUIRE(world.runtime().Stop(name, absl::Seconds(5)).ok());
  RequireError(world.runtime().Create(spec).status(),
               absl::StatusCode::kAlreadyExists, "RUNTIME_EXISTS");
}

TEST_CASE("create refuses bad names, secrets in env and escaping entries",
          "[integration][process_runtime]") {
  World world;
  RuntimeSpec spec = world.Spec("demo", "one", "run.sh", kLoopScript);

  RuntimeSpec bad = spec;
  bad.connector = "../demo";
  RequireError(world.runtime().Create(bad).status(),
               absl::StatusCode::kInvalidArgument, "INVALID_CONNECTOR_NAME");
  bad = spec;
  bad.instance_id = "a/../../b";
  RequireError(world.runtime().Create(bad).status(),
               absl::StatusCode::kInvalidArgument, "INVALID_INSTANCE_ID");
  bad = spec;
  bad.env["MQTT_PASSWORD"] = "hunter2";
  absl::Status secret = world.runtime().Create(bad).status();
  RequireError(secret, absl::StatusCode::kInvalidArgument, "SECRET_IN_ENV");
  CHECK_FALSE(absl::StrContains(secret.ToString(), "hunter2"));

  // Outside the connector dir: `..`, an absolute path, a symlink.
  WriteFile(world.dir().Join("connectors/outside.sh"), kLoopScript);
  REQUIRE(chmod(world.dir().Join("connectors/outside.sh").c_str(), 0755) == 0);
  REQUIRE(symlink(world.dir().Join("connectors/outside.sh").c_str(),
                  (spec.connector_dir + "/link.sh").c_str()) == 0);
  for (const char* entry :
       {"../outside.sh", "link.sh", "/bin/sh", "missing.sh"}) {
    INFO(entry);
    bad = spec;
    bad.entry = entry;
    RequireError(world.runtime().Prepare(bad, nullptr),
                 absl::StatusCode::kFailedPrecondition, "ENTRY_NOT_FOUND");
    RequireError(world.runtime().Create(bad).status(),
                 absl::StatusCode::kFailedPrecondition, "ENTRY_NOT_FOUND");
  }
  // Nothing was registered or logged by any refusal.
  CHECK(ListDir(world.options().state_dir) ==
        std::vector<std::string>{".lock", "logs"});
  CHECK(ListDir(world.options().state_dir + "/logs").empty());

  std::vector<std::string> progress;
  REQUIRE(
      world.runtime()
          .Prepare(spec,
                   [&](absl::string_view line) { progress.emplace_back(line); })
          .ok());
  CHECK(progress ==
        std::vector<std::string>{"entry resolved: " +
                                 RealPath(spec.connector_dir + "/run.sh")});
}

TEST_CASE("list and inspect see only our runtimes",
          "[integration][process_runtime]") {
  World world;
  world.Create(world.Spec("demo", "b", "run.sh", kLoopScript));
  world.Create(world.Spec("demo", "a", "run.sh", kLoopScript));
  // Files that are not ours.
  const std::string state = world.options().state_dir;
  WriteFile(state + "/notes.json", "{}");
  WriteFile(state + "/iot2mqtt_web_x.json",
            R"({"name":"iot2mqtt_web_x","connector":"web","instance_id":"x",)"
            R"("labels":{"iot2mqtt.type":"orchestrator"},"state":"running",)"
            R"("pid":1})");
  WriteFile(state + "/iot2mqtt_demo_c.json", "not json");

  absl::StatusOr<std::vector<RuntimeInfo>> list = world.runtime().List();
  REQUIRE(list.ok());
  REQUIRE(list->size() == 2);
  CHECK((*list)[0].name == "iot2mqtt_demo_a");
  CHECK((*list)[1].name == "iot2mqtt_demo_b");
  for (const RuntimeInfo& info : *list) {
    CHECK(info.state == RuntimeState::kRunning);
    CHECK(info.connector == "demo");
  }

  for (const char* id : {"iot2mqtt_web_x", "iot2mqtt_demo_c", "notes",
                         "../state/iot2mqtt_demo_a", "iot2mqtt_demo_zz", ""}) {
    INFO(id);
    RequireError(world.runtime().Inspect(id).status(),
                 absl::StatusCode::kNotFound, "RUNTIME_NOT_FOUND");
    RequireError(world.runtime().Stop(id, absl::Seconds(1)),
                 absl::StatusCode::kNotFound, "RUNTIME_NOT_FOUND");
    RequireError(world.runtime().Start(id), absl::StatusCode::kNotFound,
                 "RUNTIME_NOT_FOUND");
    RequireError(world.runtime().Remove(id), absl::StatusCode::kNotFound,
                 "RUNTIME_NOT_FOUND");
    RequireError(world.runtime().Stats(id).status(),
                 absl::StatusCode::kNotFound, "RUNTIME_NOT_FOUND");
    RequireError(
        world.runtime().Logs(id, {}, [](const LogLine&) { return true; }),
        absl::StatusCode::kNotFound, "RUNTIME_NOT_FOUND");
  }
  // The foreign record's pid 1 was never touched.
  CHECK(kill(1, 0) == 0);
  CHECK(ReadFile(state + "/iot2mqtt_web_x.json").find("orchestrator") !=
        std::string::npos);
  // An unreadable record does not block its name.
  RuntimeInfo replaced =
      world.Create(world.Spec("demo", "c", "run.sh", kLoopScript));
  CHECK(replaced.state == RuntimeState::kRunning);
  CHECK(world.Inspect("iot2mqtt_demo_c").pid == replaced.pid);
}

TEST_CASE("logs: tail, timestamps, follow until cancelled or removed",
          "[integration][process_runtime]") {
  World world;
  world.Create(world.Spec("demo", "loop", "run.sh", kLoopScript));
  const std::string name = "iot2mqtt_demo_loop";
  REQUIRE(WaitFor([&] { return world.LogHas(name, "line 20\n"); }));

  std::vector<LogLine> tail = Tail(world.runtime(), name, 5);
  REQUIRE(tail.size() == 5);
  int first = LineNumber(tail[0].text);
  REQUIRE(first >= 16);
  for (size_t i = 0; i < tail.size(); ++i) {
    CHECK(LineNumber(tail[i].text) == first + static_cast<int>(i));
    CHECK(tail[i].stream == "stdout");
    CHECK(tail[i].time == absl::InfinitePast());  // No timestamp printed.
  }
  // tail -1: everything, from line 1.
  std::vector<LogLine> all = Tail(world.runtime(), name, -1);
  REQUIRE(all.size() >= 20);
  CHECK(all[0].text == "line 1");

  // Follow: the tail, then new lines without gaps or repeats, until
  // cancelled.
  std::atomic<bool> cancel{false};
  std::vector<int> seen;
  absl::Mutex mu;
  LogOptions follow;
  follow.tail = 3;
  follow.follow = true;
  follow.cancelled = [&] { return cancel.load(); };
  absl::Status status;
  std::thread reader([&] {
    status = world.runtime().Logs(name, follow, [&](const LogLine& line) {
      absl::MutexLock l(&mu);
      seen.push_back(LineNumber(line.text));
      return true;
    });
  });
  bool enough = WaitFor([&] {
    absl::MutexLock l(&mu);
    return seen.size() >= 30;
  });
  cancel = true;
  reader.join();
  REQUIRE(enough);
  REQUIRE(status.ok());
  {
    absl::MutexLock l(&mu);
    for (size_t i = 1; i < seen.size(); ++i) {
      INFO(i);
      CHECK(seen[i] == seen[i - 1] + 1);
    }
  }

  // A sink that returns false ends Logs at once.
  int calls = 0;
  LogOptions one;
  one.tail = 10;
  one.follow = true;
  REQUIRE(world.runtime()
              .Logs(name, one,
                    [&](const LogLine&) {
                      ++calls;
                      return false;
                    })
              .ok());
  CHECK(calls == 1);

  // Removing the runtime ends a follower.
  std::atomic<bool> ended{false};
  std::thread follower([&] {
    LogOptions options;
    options.tail = 0;
    options.follow = true;
    CHECK(world.runtime()
              .Logs(name, options, [](const LogLine&) { return true; })
              .ok());
    ended = true;
  });
  REQUIRE(world.runtime().Remove(name).ok());
  bool follower_ended = WaitFor([&] { return ended.load(); });
  follower.join();
  CHECK(follower_ended);

  // Timestamps of the SDK's JSON lines are parsed; `since` filters on them.
  world.Create(world.Spec("demo", "sdk", "run.sh", kSdkLineScript));
  REQUIRE(WaitFor([&] { return world.LogHas("iot2mqtt_demo_sdk", "plain"); }));
  std::vector<LogLine> sdk_lines =
      Tail(world.runtime(), "iot2mqtt_demo_sdk", 10);
  REQUIRE(sdk_lines.size() == 2);
  absl::Time expected;
  std::string error;
  REQUIRE(absl::ParseTime(absl::RFC3339_full, "2026-11-22T16:41:07.123456Z",
                          &expected, &error));
  CHECK(sdk_lines[0].time == expected);
  CHECK(sdk_lines[1].time == absl::InfinitePast());
  LogOptions later;
  later.since = expected + absl::Seconds(1);
  std::vector<LogLine> filtered;
  REQUIRE(world.runtime()
              .Logs("iot2mqtt_demo_sdk", later,
                    [&](const LogLine& line) {
                      filtered.push_back(line);
                      return true;
                    })
              .ok());
  CHECK(filtered.empty());  // The plain line inherits the earlier time.
}

TEST_CASE("stop: SIGTERM, then SIGKILL for the whole group after the grace",
          "[integration][process_runtime]") {
  World world;
  RuntimeInfo info =
      world.Create(world.Spec("demo", "stubborn", "run.sh", kStubbornScript));
  const std::string name = info.name;
  REQUIRE(WaitFor([&] { return world.LogHas(name, "grandchild "); }));
  std::string log = world.Log(name);
  int64_t grandchild = 0;
  REQUIRE(absl::SimpleAtoi(
      absl::StripSuffix(absl::StripPrefix(log, "grandchild "), "\n"),
      &grandchild));
  world.Track(grandchild);
  REQUIRE(ProcessAlive(grandchild));

  absl::Time start = absl::Now();
  absl::Status stopped = world.runtime().Stop(name, absl::Milliseconds(500));
  absl::Duration took = absl::Now() - start;
  INFO(stopped.ToString());
  REQUIRE(stopped.ok());
  CHECK(took >= absl::Milliseconds(500));
  CHECK(took < absl::Seconds(5));
  CHECK_FALSE(ProcessAlive(info.pid));
  CHECK_FALSE(ProcessAlive(grandchild));
  RuntimeInfo after = world.Inspect(name);
  CHECK(after.state == RuntimeState::kExited);
  REQUIRE(after.exit_code.has_value());
  CHECK(*after.exit_code == 128 + SIGKILL);
  CHECK(after.pid == 0);
  CHECK(after.status_text == "exited (code 137)");
  CHECK(after.finished_at >= after.started_at);

  // Already stopped: OK, nothing changes.
  REQUIRE(world.runtime().Stop(name, absl::Seconds(1)).ok());
  CHECK(world.Inspect(name).exit_code == after.exit_code);

  // A connector that honours SIGTERM stops at once with its own code.
  RuntimeInfo graceful =
      world.Create(world.Spec("demo", "graceful", "run.sh", kGracefulScript));
  REQUIRE(WaitFor([&] { return world.LogHas(graceful.name, "ready"); }));
  start = absl::Now();
  REQUIRE(world.runtime().Stop(graceful.name, absl::Seconds(20)).ok());
  CHECK(absl::Now() - start < absl::Seconds(10));
  RuntimeInfo done = world.Inspect(graceful.name);
  CHECK(done.state == RuntimeState::kExited);
  CHECK(done.exit_code == std::optional<int>(0));
  CHECK(world.LogHas(graceful.name, "got TERM"));
}

TEST_CASE("exit codes are recorded; start, restart, remove",
          "[integration][process_runtime]") {
  World world;
  RuntimeInfo quick =
      world.Create(world.Spec("demo", "quick", "run.sh", kExit3Script));
  // The monitor notices the exit on its own.
  REQUIRE(WaitFor([&] {
    std::string record = ReadFile(world.RecordPath(quick.name));
    return absl::StrContains(record, "\"exited\"");
  }));
  RuntimeInfo exited = world.Inspect(quick.name);
  CHECK(exited.state == RuntimeState::kExited);
  CHECK(exited.exit_code == std::optional<int>(3));
  CHECK(exited.status_text == "exited (code 3)");
  CHECK(exited.finished_at != absl::InfinitePast());
  CHECK(world.LogHas(quick.name, "bye"));

  // Start runs it again from the registry (it exits 3 again).
  REQUIRE(world.runtime().Start(quick.name).ok());
  REQUIRE(WaitFor([&] {
    return absl::StrContains(world.Log(quick.name), "bye\nbye\n") &&
           world.Inspect(quick.name).state == RuntimeState::kExited;
  }));
  CHECK(world.Inspect(quick.name).exit_code == std::optional<int>(3));

  RuntimeInfo loop =
      world.Create(world.Spec("demo", "loop", "run.sh", kLoopScript));
  REQUIRE(world.runtime().Stop(loop.name, absl::Seconds(5)).ok());
  RuntimeInfo stopped = world.Inspect(loop.name);
  CHECK(stopped.state == RuntimeState::kExited);
  CHECK(stopped.exit_code == std::optional<int>(128 + SIGTERM));
  CHECK_FALSE(ProcessAlive(loop.pid));

  REQUIRE(world.runtime().Start(loop.name).ok());
  RuntimeInfo started = world.Inspect(loop.name);
  world.Track(started.pid);
  CHECK(started.state == RuntimeState::kRunning);
  CHECK(started.pid != loop.pid);
  CHECK_FALSE(started.exit_code.has_value());
  CHECK(started.finished_at == absl::InfinitePast());
  // Starting a running one changes nothing.
  REQUIRE(world.runtime().Start(loop.name).ok());
  CHECK(world.Inspect(loop.name).pid == started.pid);

  REQUIRE(world.runtime().Restart(loop.name, absl::Seconds(5)).ok());
  RuntimeInfo restarted = world.Inspect(loop.name);
  world.Track(restarted.pid);
  CHECK(restarted.state == RuntimeState::kRunning);
  CHECK(restarted.pid != started.pid);
  CHECK_FALSE(ProcessAlive(started.pid));
  CHECK(ProcessAlive(restarted.pid));

  // Remove: process, record and logs gone.
  REQUIRE(world.runtime().Remove(loop.name).ok());
  CHECK_FALSE(ProcessAlive(restarted.pid));
  RequireError(world.runtime().Inspect(loop.name).status(),
               absl::StatusCode::kNotFound, "RUNTIME_NOT_FOUND");
  RequireError(world.runtime().Remove(loop.name), absl::StatusCode::kNotFound,
               "RUNTIME_NOT_FOUND");
  CHECK(access(world.RecordPath(loop.name).c_str(), F_OK) != 0);
  for (const std::string& file : ListDir(world.options().state_dir + "/logs")) {
    CHECK_FALSE(absl::StartsWith(file, loop.name));
  }
  // The other runtime is untouched; the name is free again.
  CHECK(world.Inspect(quick.name).state == RuntimeState::kExited);
  world.Create(world.Spec("demo", "loop", "run.sh", kLoopScript));
}

TEST_CASE("a new runtime object adopts running connectors",
          "[integration][process_runtime]") {
  World world;
  RuntimeSpec spec = world.Spec("demo", "adopted", "run.sh", kLoopScript);
  RuntimeInfo info = world.Create(spec);

  // A second object over the same state dir, while the first lives.
  std::unique_ptr<ProcessRuntime> second = world.Open();
  RuntimeInfo seen = World::Inspect(*second, info.name);
  CHECK(seen.state == RuntimeState::kRunning);
  CHECK(seen.pid == info.pid);

  // The first one goes away without stopping anything (a crash).
  world.Crash();
  REQUIRE(ProcessAlive(info.pid));
  std::unique_ptr<ProcessRuntime> third = world.Open();
  for (ProcessRuntime* runtime : {second.get(), third.get()}) {
    absl::StatusOr<std::vector<RuntimeInfo>> list = runtime->List();
    REQUIRE(list.ok());
    REQUIRE(list->size() == 1);
    CHECK((*list)[0].pid == info.pid);
    CHECK((*list)[0].state == RuntimeState::kRunning);
    // No duplicate.
    RequireError(runtime->Create(spec).status(),
                 absl::StatusCode::kAlreadyExists, "RUNTIME_EXISTS");
  }
  CHECK(ProcessAlive(info.pid));
  CHECK(World::Inspect(*third, info.name).started_at == info.started_at);

  // The adopted process is watched: its death is noticed.
  REQUIRE(kill(static_cast<pid_t>(info.pid), SIGKILL) == 0);
  REQUIRE(WaitFor([&] {
    return absl::StrContains(ReadFile(world.RecordPath(info.name)),
                             "\"exited\"");
  }));
  RuntimeInfo dead = World::Inspect(*third, info.name);
  CHECK(dead.state == RuntimeState::kExited);
  CHECK(dead.pid == 0);
  // And it can be started again by the adopter.
  REQUIRE(third->Start(info.name).ok());
  RuntimeInfo again = World::Inspect(*third, info.name);
  world.Track(again.pid);
  CHECK(again.state == RuntimeState::kRunning);
  CHECK(again.pid != info.pid);
  REQUIRE(third->Remove(info.name).ok());
}

TEST_CASE("connectors survive an orchestrator killed with SIGKILL",
          "[integration][process_runtime]") {
  World world;
  RuntimeSpec spec = world.Spec("demo", "orphan", "run.sh", kLoopScript);
  const std::string name = "iot2mqtt_demo_orphan";
  // The "orchestrator" is a forked process that creates the connector and
  // is then killed; the connector is not our child.
  int report[2];
  REQUIRE(pipe(report) == 0);
  pid_t orchestrator = fork();
  REQUIRE(orchestrator >= 0);
  if (orchestrator == 0) {
    close(report[0]);
    absl::StatusOr<std::unique_ptr<ProcessRuntime>> runtime =
        ProcessRuntime::Open(world.options());
    int64_t pid = 0;
    if (runtime.ok()) {
      absl::StatusOr<RuntimeInfo> info = (*runtime)->Create(spec);
      if (info.ok()) pid = info->pid;
    }
    (void)!write(report[1], &pid, sizeof pid);
    kill(getpid(), SIGKILL);
    _exit(1);
  }
  close(report[1]);
  int64_t pid = 0;
  REQUIRE(read(report[0], &pid, sizeof pid) == sizeof pid);
  close(report[0]);
  int status = 0;
  REQUIRE(waitpid(orchestrator, &status, 0) == orchestrator);
  REQUIRE(WIFSIGNALED(status));
  REQUIRE(pid > 0);
  world.Track(pid);

  // Still running, and adopted as it is.
  REQUIRE(WaitFor([&] { return world.LogHas(name, "line 5\n"); }));
  CHECK(ProcessAlive(pid));
  RuntimeInfo adopted = world.Inspect(name);
  CHECK(adopted.state == RuntimeState::kRunning);
  CHECK(adopted.pid == pid);

  // It dies while we are not its parent: exited, exit code unknown.
  REQUIRE(kill(static_cast<pid_t>(pid), SIGKILL) == 0);
  REQUIRE(WaitFor(
      [&] { return world.Inspect(name).state == RuntimeState::kExited; }));
  RuntimeInfo dead = world.Inspect(name);
  CHECK_FALSE(dead.exit_code.has_value());
  CHECK(dead.status_text == "exited");
  CHECK(dead.finished_at != absl::InfinitePast());
}

// Rewrites fields of a registry record (as a stale or tampered file).
void EditRecord(const std::string& path,
                const std::function<void(rapidjson::Document&)>& edit) {
  rapidjson::Document doc;
  std::string text = ReadFile(path);
  doc.Parse(text.c_str());
  REQUIRE(doc.IsObject());
  edit(doc);
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  doc.Accept(writer);
  WriteFile(path, buffer.GetString());
}

TEST_CASE("a reused pid is never mistaken for our connector",
          "[integration][process_runtime]") {
  World world;
  RuntimeInfo info =
      world.Create(world.Spec("demo", "reuse", "run.sh", kLoopScript));
  REQUIRE(world.runtime().Stop(info.name, absl::Seconds(5)).ok());
  world.Crash();  // No monitor while the record is edited.

  // Another process now has a pid the record names, with another start time.
  absl::StatusOr<std::unique_ptr<ChildProcess>> stranger =
      ChildProcess::Start("/bin/sleep", {"1000"}, {});
  REQUIRE(stranger.ok());
  const int64_t stranger_pid = (*stranger)->pid();
  EditRecord(world.RecordPath(info.name), [&](rapidjson::Document& doc) {
    doc["state"].SetString("running");
    doc["pid"].SetInt64(stranger_pid);
    doc["exit_code"].SetNull();
  });

  RuntimeInfo seen = world.Inspect(info.name);
  CHECK(seen.state == RuntimeState::kExited);
  CHECK(seen.pid == 0);
  CHECK_FALSE(seen.exit_code.has_value());
  absl::StatusOr<RuntimeStats> stats = world.runtime().Stats(info.name);
  REQUIRE(stats.ok());
  CHECK(stats->pids == 0);
  REQUIRE(world.runtime().Stop(info.name, absl::Seconds(1)).ok());
  REQUIRE(world.runtime().Remove(info.name).ok());
  CHECK((*stranger)->Running());

  // Our own pid in a record: not ours either (start time differs).
  RuntimeInfo second =
      world.Create(world.Spec("demo", "self", "run.sh", kLoopScript));
  REQUIRE(world.runtime().Stop(second.name, absl::Seconds(5)).ok());
  world.Crash();
  EditRecord(world.RecordPath(second.name), [&](rapidjson::Document& doc) {
    doc["state"].SetString("running");
    doc["pid"].SetInt64(getpid());
  });
  CHECK(world.Inspect(second.name).state == RuntimeState::kExited);
  REQUIRE(world.runtime().Remove(second.name).ok());
}

TEST_CASE("log rotation keeps the files bounded",
          "[integration][process_runtime]") {
  World world;
  world.options().log_max_bytes = 4096;
  world.options().log_files = 2;
  world.options().scan_interval = absl::Milliseconds(20);
  RuntimeInfo info =
      world.Create(world.Spec("demo", "chatty", "run.sh", kChattyScript));
  const std::string logs = world.options().state_dir + "/logs";
  const std::string path = logs + "/" + info.name + ".log";

  // Rotated at least three times: the oldest copy was dropped, so line 1 is
  // gone and the kept lines start later.
  REQUIRE(WaitFor(
      [&] {
        std::vector<LogLine> all = Tail(world.runtime(), info.name, -1);
        return access((path + ".2").c_str(), F_OK) == 0 && !all.empty() &&
               LineNumber(all.front().text) > 150;
      },
      absl::Seconds(60)));
  std::vector<LogLine> all = Tail(world.runtime(), info.name, -1);
  // Oldest first, increasing (a few lines may fall between copy and
  // truncation).
  for (size_t i = 1; i < all.size(); ++i) {
    INFO(all[i - 1].text << " / " << all[i].text);
    CHECK(LineNumber(all[i].text) > LineNumber(all[i - 1].text));
  }
  REQUIRE(world.runtime().Stop(info.name, absl::Seconds(5)).ok());
  std::vector<std::string> files = ListDir(logs);
  CHECK(files == std::vector<std::string>{info.name + ".log",
                                          info.name + ".log.1",
                                          info.name + ".log.2"});
  // Each file is near the limit: a poll interval of writes at most.
  for (const std::string& file : files) {
    struct stat st;
    REQUIRE(stat((logs + "/" + file).c_str(), &st) == 0);
    INFO(file << " " << st.st_size);
    CHECK(st.st_size <= 4096 + 16 * 1024);
  }
}

TEST_CASE("stats report the process group's memory and CPU",
          "[integration][process_runtime]") {
  World world;
  RuntimeInfo info = world.Create(
      world.Spec("demo", "busy", "run.sh",
                 "#!/bin/sh\nsleep 1000 &\nwhile :; do :; done\n"));
  absl::StatusOr<RuntimeStats> stats;
  REQUIRE(WaitFor([&] {
    stats = world.runtime().Stats(info.name);
    return stats.ok() && stats->pids == 2 && stats->cpu_percent > 10;
  }));
  CHECK(stats->memory_bytes > 100 * 1024);
  CHECK(stats->memory_limit_bytes == 0);
  REQUIRE(world.runtime().Stop(info.name, absl::Seconds(5)).ok());
  stats = world.runtime().Stats(info.name);
  REQUIRE(stats.ok());
  CHECK(stats->pids == 0);
  CHECK(stats->memory_bytes == 0);
}

constexpr char kDemoConfig[] = R"({
  "instance_id": "demo", "connector_type": "demo", "update_interval": 0.5,
  "devices": [{"device_id": "light", "type": "light"}]})";

TEST_CASE("the demo connector runs as a process and goes online",
          "[integration][process_runtime][demo]") {
  auto broker = sdk::testing::LoopbackBroker::Start();
  INFO(broker.status().ToString());
  REQUIRE(broker.ok());
  sdk::Topics topics = *sdk::Topics::Create("IoT2mqtt", "demo");
  auto capture = sdk::testing::TopicCapture::Start(
      (*broker)->host(), (*broker)->port(), topics.All());
  REQUIRE(capture.ok());

  World world;
  const std::string demo = BinaryPath("iot2mqtt-connector-demo");
  REQUIRE(access(demo.c_str(), X_OK) == 0);
  world.options().bin_dirs = {demo.substr(0, demo.rfind('/'))};
  RuntimeSpec spec;
  spec.connector = "demo";
  spec.instance_id = "demo";
  spec.connector_dir = world.ConnectorDir("demo");  // No binary inside.
  spec.instance_file = world.dir().Join("instances/demo.json");
  WriteFile(spec.instance_file, kDemoConfig);
  spec.entry = "iot2mqtt-connector-demo";
  spec.env = {{"INSTANCE_NAME", "demo"},
              {"CONNECTOR_TYPE", "demo"},
              {"MODE", "production"},
              {"MQTT_HOST", (*broker)->host()},
              {"MQTT_PORT", absl::StrCat((*broker)->port())},
              {"LOG_LEVEL", "DEBUG"}};
  spec.memory_bytes = 16 << 20;
  spec.cpus = 0.05;
  RuntimeInfo info = world.Create(spec);
  CHECK(info.image == RealPath(demo));

  auto online = [](const sdk::testing::CapturedMessage& m) {
    return m.payload == "online";
  };
  INFO(world.Log(info.name));
  REQUIRE((*capture)
              ->WaitFor(topics.Status(), online, absl::Seconds(10))
              .has_value());
  REQUIRE((*capture)->WaitFor(topics.State("light")).has_value());

  // Its JSON log lines carry their time.
  std::vector<LogLine> lines = Tail(world.runtime(), info.name, 20);
  REQUIRE_FALSE(lines.empty());
  for (const LogLine& line : lines) {
    INFO(line.text);
    CHECK(line.time > info.created - absl::Seconds(1));
    CHECK(line.time < absl::Now() + absl::Seconds(1));
  }
  absl::StatusOr<RuntimeStats> stats = world.runtime().Stats(info.name);
  REQUIRE(stats.ok());
  CHECK(stats->memory_bytes > 0);
  CHECK(stats->pids == 1);

  size_t mark = (*capture)->Mark();
  REQUIRE(world.runtime().Stop(info.name, absl::Seconds(10)).ok());
  CHECK((*capture)
            ->WaitFor(
                topics.Status(),
                [](const sdk::testing::CapturedMessage& m) {
                  return m.payload == "offline";
                },
                absl::Seconds(5), mark)
            .has_value());
  RuntimeInfo stopped = world.Inspect(info.name);
  CHECK(stopped.exit_code == std::optional<int>(0));

  // Restart from the registry: online again.
  mark = (*capture)->Mark();
  REQUIRE(world.runtime().Start(info.name).ok());
  world.Track(world.Inspect(info.name).pid);
  CHECK((*capture)
            ->WaitFor(topics.Status(), online, absl::Seconds(10), mark)
            .has_value());
  REQUIRE(world.runtime().Remove(info.name).ok());
}

}  // namespace
}  // namespace iot2mqtt::orchestrator
