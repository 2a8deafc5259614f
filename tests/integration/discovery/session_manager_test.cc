// Discovery sessions with real child processes: shell-script tools speaking
// the line protocol, and the real Yeelight discover tool against the bulb
// simulator on loopback. Devices go to a fake store that behaves like the
// config service's (merged by id, `added` kept).

#include "services/discovery/session_manager.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "catch2/catch.hpp"
#include "connectors/yeelight/testing/bulb_simulator.h"
#include "services/common/status.h"
#include "tests/integration/discovery/child_test_util.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::discovery {
namespace {

using ::iot2mqtt::testing::BinaryPath;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::SourcePath;
using ::iot2mqtt::testing::TempDir;
using ::iot2mqtt::testing::WaitFor;
using ::iot2mqtt::testing::WriteFile;

constexpr absl::Duration kLong = absl::Seconds(60);

// Like the config service's store: merged by id, first-seen and `added`
// kept, last_seen refreshed. Can be told to fail.
class FakeStore : public DeviceStore {
 public:
  struct Call {
    std::string integration;
    std::vector<std::string> ids;
    bool scan_completed = false;
  };

  absl::StatusOr<std::vector<DiscoveredDevice>> Record(
      const std::string& integration,
      const std::vector<DiscoveredDevice>& devices,
      bool scan_completed) override {
    absl::MutexLock lock(&mu_);
    Call call;
    call.integration = integration;
    call.scan_completed = scan_completed;
    for (const DiscoveredDevice& device : devices) {
      call.ids.push_back(device.id());
    }
    calls_.push_back(call);
    if (fail_) {
      return common::WithReason(
          absl::UnavailableError("config service unreachable"),
          "CONFIG_UNAVAILABLE");
    }
    const std::string now = absl::FormatTime(absl::Now());
    std::vector<DiscoveredDevice> stored;
    for (const DiscoveredDevice& device : devices) {
      DiscoveredDevice record = device;
      record.set_integration(integration);
      auto it = records_.find(device.id());
      if (it == records_.end()) {
        record.set_discovered_at(now);
        record.set_added(false);
        record.clear_added_at();
        record.clear_instance_id();
      } else {
        record.set_discovered_at(it->second.discovered_at());
        record.set_added(it->second.added());
        record.set_added_at(it->second.added_at());
        record.set_instance_id(it->second.instance_id());
      }
      record.set_last_seen(now);
      records_[device.id()] = record;
      stored.push_back(record);
    }
    return stored;
  }

  void set_fail(bool fail) {
    absl::MutexLock lock(&mu_);
    fail_ = fail;
  }
  void MarkAdded(const std::string& id, const std::string& instance) {
    absl::MutexLock lock(&mu_);
    REQUIRE(records_.count(id) == 1);
    records_[id].set_added(true);
    records_[id].set_instance_id(instance);
  }
  std::vector<Call> calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  std::map<std::string, DiscoveredDevice> records() {
    absl::MutexLock lock(&mu_);
    return records_;
  }

 private:
  absl::Mutex mu_;
  bool fail_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, DiscoveredDevice> records_ ABSL_GUARDED_BY(mu_);
};

class FakeConnectors : public ConnectorSource {
 public:
  void Add(const std::string& name, ConnectorTooling tooling) {
    absl::MutexLock lock(&mu_);
    connectors_[name] = std::move(tooling);
  }
  absl::StatusOr<ConnectorTooling> Lookup(
      const std::string& connector) override {
    absl::MutexLock lock(&mu_);
    auto it = connectors_.find(connector);
    if (it == connectors_.end()) {
      return common::WithReason(absl::NotFoundError(absl::StrCat(
                                    "Integration ", connector, " not found")),
                                "INTEGRATION_NOT_FOUND");
    }
    return it->second;
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, ConnectorTooling> connectors_ ABSL_GUARDED_BY(mu_);
};

// Every state a watcher received.
class Recorder {
 public:
  SessionManager::Watcher watcher() {
    return [this](const DiscoverySession& session) {
      absl::MutexLock lock(&mu_);
      states_.push_back(session);
    };
  }
  std::vector<DiscoverySession> states() {
    absl::MutexLock lock(&mu_);
    return states_;
  }
  bool HasFinal() {
    absl::MutexLock lock(&mu_);
    return !states_.empty() && states_.back().status() != "running";
  }

 private:
  absl::Mutex mu_;
  std::vector<DiscoverySession> states_ ABSL_GUARDED_BY(mu_);
};

// A connector directory under `root` whose discovery tool is the shell
// script `body` (run by /bin/sh).
ConnectorTooling ShellConnector(const TempDir& root, const std::string& name,
                                const std::string& body,
                                const std::string& discovery_extra = "",
                                const std::string& shebang = "#!/bin/sh") {
  const std::string dir = root.Join(name);
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  const std::string setup = absl::StrCat(
      R"({"display_name":")", name, R"(","discovery":{"supported":true,)",
      R"("tool":"scan")", discovery_extra,
      R"(},"tools":{"scan":{"entry":"scan.sh","timeout":30,)",
      R"("network":"local"}}})");
  WriteFile(dir + "/setup.json", setup);
  WriteFile(dir + "/scan.sh", absl::StrCat(shebang, "\n", body, "\n"));
  REQUIRE(::chmod((dir + "/scan.sh").c_str(), 0755) == 0);
  ConnectorTooling tooling;
  tooling.connector_dir = dir;
  tooling.setup_json = setup;
  return tooling;
}

// A shell loop that waits until `path` exists.
std::string WaitForFile(const std::string& path) {
  return absl::StrCat("while [ ! -e '", path, "' ]; do sleep 0.02; done");
}

using test::ProcessGone;

// The first number in the file at `path`.
pid_t PidFrom(const std::string& path) {
  const std::string text = ReadFile(path);
  int pid = 0;
  REQUIRE(absl::SimpleAtoi(
      absl::StripAsciiWhitespace(text.substr(0, text.find(' '))), &pid));
  REQUIRE(pid > 0);
  return pid;
}

bool HasLog(const DiscoverySession& session, const std::string& part) {
  return std::any_of(
      session.logs().begin(), session.logs().end(),
      [&](const std::string& line) { return absl::StrContains(line, part); });
}

const DiscoveredDevice* FindDevice(const DiscoverySession& session,
                                   const std::string& id) {
  for (const DiscoveredDevice& device : session.devices()) {
    if (device.id() == id) return &device;
  }
  return nullptr;
}

// Sets an environment variable of this process for a scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    const char* old = std::getenv(name);
    if (old != nullptr) old_ = std::string(old);
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_.has_value()) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

struct Harness {
  explicit Harness(SessionManagerOptions options = SessionManagerOptions(),
                   ToolExecutorOptions executor_options = ToolExecutorOptions())
      : executor(std::move(executor_options)),
        manager(std::make_unique<SessionManager>(options, &executor, &store,
                                                 &connectors)) {}

  // Waits (generously) until the session has finished and returns it.
  DiscoverySession Finished(const std::string& id) {
    absl::StatusOr<DiscoverySession> session;
    REQUIRE(WaitFor(
        [&] {
          session = manager->Get(id);
          return session.ok() && session->status() != "running";
        },
        absl::Seconds(90)));
    return *session;
  }

  TempDir root;
  FakeStore store;
  FakeConnectors connectors;
  ToolExecutor executor;
  std::unique_ptr<SessionManager> manager;
};

TEST_CASE("a session streams progress, devices and logs into the store") {
  Harness h;
  int changes = 0;
  absl::Mutex changes_mu;
  h.manager->SetDevicesChangedCallback([&] {
    absl::MutexLock lock(&changes_mu);
    ++changes;
  });
  const std::string gate = h.root.Join("gate");
  h.connectors.Add(
      "demo",
      ShellConnector(
          h.root, "demo",
          absl::StrCat(
              "request=$(cat)\n"
              "echo \"mode=$DISCOVERY_MODE timeout=$DISCOVERY_TIMEOUT\"\n"
              "echo \"stdin=$request\"\n"
              "echo '{\"progress\":-20}'\n"
              "echo 'after progress'\n",
              WaitForFile(gate),
              "\n"
              "echo '{\"progress\":10}'\n"
              "echo '{\"device\":{\"mac\":\"AA:BB:CC:00:00:01\",\"ip\":"
              "\"192.0.2.10\",\"port\":80,\"name\":\"One\"}}'\n"
              "echo '{\"log\":\"looking further\"}'\n"
              "echo 'plain text line'\n"
              "echo 'to stderr' >&2\n"
              "echo '{\"device\":{\"ip\":\"192.0.2.99\"},\"progress\":250}'\n"
              "echo '{\"device\":{\"name\":\"no identity\"}}'\n"
              "echo '{\"device\":{\"mac\":\"aa:bb:cc:00:00:01\",\"ip\":"
              "\"192.0.2.10\",\"port\":80,\"name\":\"One again\"}}'\n"
              "echo '{\"ok\":true,\"result\":{\"count\":2,\"devices\":["
              "{\"mac\":\"aa-bb-cc-00-00-01\",\"ip\":\"192.0.2.10\","
              "\"port\":80,\"name\":\"One final\"},"
              "{\"serial\":\"S2\",\"ip\":\"192.0.2.11\"},"
              "{\"serial\":\"S2\",\"ip\":\"192.0.2.11\"}]}}'\n")));

  absl::StatusOr<DiscoverySession> started =
      h.manager->Start("demo", absl::Seconds(7));
  REQUIRE(started.ok());
  CHECK(started->status() == "running");
  CHECK(started->integration() == "demo");
  CHECK(started->timeout() == 7);
  CHECK(started->session_id().size() == 36);
  CHECK(absl::EndsWith(started->started_at(), "Z"));

  Recorder recorder;
  REQUIRE(h.manager->Watch(started->session_id(), recorder.watcher()).ok());
  // The current state arrives before Watch returns.
  REQUIRE_FALSE(recorder.states().empty());
  CHECK(recorder.states().front().session_id() == started->session_id());

  // Reported progress below 0 is clamped.
  REQUIRE(WaitFor([&] {
    auto now = h.manager->Get(started->session_id());
    return now.ok() && HasLog(*now, "after progress") && now->progress() == 0;
  }));
  WriteFile(gate, "");

  DiscoverySession done = h.Finished(started->session_id());
  INFO(done.DebugString());
  CHECK(done.status() == "completed");
  CHECK(done.progress() == 100);
  CHECK(done.error().empty());
  CHECK(absl::EndsWith(done.finished_at(), "Z"));
  CHECK(HasLog(done, "mode=true timeout=7"));
  CHECK(HasLog(done, R"(stdin={"tool":"scan","input":{"timeout":7}})"));
  CHECK(HasLog(done, "looking further"));
  CHECK(HasLog(done, "plain text line"));
  CHECK(HasLog(done, "to stderr"));
  CHECK(HasLog(done, "Ignored a device report"));

  // Three devices, each once, as the store has them.
  REQUIRE(done.devices_size() == 3);
  const DiscoveredDevice* one = FindDevice(done, "demo_aabbcc000001");
  REQUIRE(one != nullptr);
  CHECK(one->name() == "One final");
  CHECK(one->ip() == "192.0.2.10");
  CHECK(one->port() == 80);
  CHECK_FALSE(one->discovered_at().empty());
  REQUIRE(FindDevice(done, "demo_s2") != nullptr);
  REQUIRE(FindDevice(done, "demo_192_0_2_99") != nullptr);
  CHECK(h.store.records().size() == 3);

  // Stored as they arrived, then once more with the final result.
  std::vector<FakeStore::Call> calls = h.store.calls();
  REQUIRE(calls.size() == 4);
  CHECK(calls[0].ids == std::vector<std::string>{"demo_aabbcc000001"});
  CHECK_FALSE(calls[0].scan_completed);
  CHECK(calls[1].ids == std::vector<std::string>{"demo_192_0_2_99"});
  CHECK(calls[2].ids == std::vector<std::string>{"demo_aabbcc000001"});
  CHECK(calls[3].ids ==
        std::vector<std::string>{"demo_aabbcc000001", "demo_s2"});
  CHECK(calls[3].scan_completed);
  for (const FakeStore::Call& call : calls) CHECK(call.integration == "demo");
  {
    absl::MutexLock lock(&changes_mu);
    CHECK(changes == 4);
  }

  // The watcher saw the progress (clamped to 100) while running, and the
  // final state exactly once, last.
  REQUIRE(WaitFor([&] { return recorder.HasFinal(); }));
  std::vector<DiscoverySession> states = recorder.states();
  CHECK(std::any_of(states.begin(), states.end(), [](const auto& s) {
    return s.status() == "running" && s.progress() == 10;
  }));
  CHECK(std::any_of(states.begin(), states.end(), [](const auto& s) {
    return s.status() == "running" && s.progress() == 100;
  }));
  CHECK(std::count_if(states.begin(), states.end(), [](const auto& s) {
          return s.status() != "running";
        }) == 1);
  CHECK(states.back().status() == "completed");
  CHECK(states.back().devices_size() == 3);

  // Watching a finished session: its final state, once.
  Recorder late;
  REQUIRE(h.manager->Watch(started->session_id(), late.watcher()).ok());
  REQUIRE(late.states().size() == 1);
  CHECK(late.states()[0].status() == "completed");
}

TEST_CASE("the real Yeelight tool finds the simulated bulbs, stored once") {
  auto sim = yeelight::testing::BulbSimulator::Start(2);
  REQUIRE(sim.ok());
  (*sim)->SetProperties(0, {{"name", "Desk"}});
  const std::string discover = BinaryPath("iot2mqtt-yeelight-discover");
  ToolExecutorOptions executor_options;
  executor_options.bin_dirs = {discover.substr(0, discover.rfind('/'))};
  executor_options.passthrough_env = {
      absl::StrCat("YEELIGHT_DISCOVERY_ADDRESS=", (*sim)->discovery_address())};
  // setup.json declares YEELIGHT_DISCOVERY_ADDRESS as
  // "${YEELIGHT_DISCOVERY_ADDRESS:-<multicast>}", expanded from the
  // service's own environment, so the test sets it there as well.
  ScopedEnv address("YEELIGHT_DISCOVERY_ADDRESS", (*sim)->discovery_address());
  Harness h(SessionManagerOptions(), executor_options);
  ConnectorTooling tooling;
  tooling.connector_dir = SourcePath("connectors/yeelight");
  tooling.setup_json = ReadFile(tooling.connector_dir + "/setup.json");
  h.connectors.Add("yeelight", tooling);

  auto run = [&] {
    absl::StatusOr<DiscoverySession> started =
        h.manager->Start("yeelight", absl::Seconds(1));
    REQUIRE(started.ok());
    return h.Finished(started->session_id());
  };
  const std::string desk_id = "yeelight_" + (*sim)->id(0);
  const std::string other_id = "yeelight_" + (*sim)->id(1);

  DiscoverySession first = run();
  INFO(first.DebugString());
  REQUIRE(first.status() == "completed");
  REQUIRE(first.devices_size() == 2);
  const DiscoveredDevice* desk = FindDevice(first, desk_id);
  REQUIRE(desk != nullptr);
  CHECK(desk->ip() == "127.0.0.1");
  CHECK(desk->port() == (*sim)->port(0));
  CHECK(desk->name() == "Desk");
  CHECK(desk->model() == "color");
  CHECK(desk->device_id() == (*sim)->id(0));
  CHECK(absl::StrContains(desk->attributes(), "\"support\""));
  REQUIRE(FindDevice(first, other_id) != nullptr);
  CHECK(h.store.records().size() == 2);
  std::vector<FakeStore::Call> calls = h.store.calls();
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].scan_completed);

  // The user adds the desk lamp; a second scan keeps that.
  h.store.MarkAdded(desk_id, "desk");
  DiscoverySession second = run();
  INFO(second.DebugString());
  REQUIRE(second.status() == "completed");
  CHECK(second.session_id() != first.session_id());
  REQUIRE(second.devices_size() == 2);
  const DiscoveredDevice* desk_again = FindDevice(second, desk_id);
  REQUIRE(desk_again != nullptr);
  CHECK(desk_again->added());
  CHECK(desk_again->instance_id() == "desk");
  CHECK_FALSE(FindDevice(second, other_id)->added());
  CHECK(h.store.records().size() == 2);
  CHECK(h.store.records()[desk_id].added());
  CHECK(h.manager->List().size() == 2);
}

TEST_CASE("cancelling a session ends the tool and keeps what it found") {
  Harness h;
  const std::string pids = h.root.Join("pids");
  h.connectors.Add(
      "slow",
      ShellConnector(h.root, "slow",
                     absl::StrCat("echo '{\"device\":{\"serial\":\"early\"}}'\n"
                                  "sleep 600 &\n"
                                  "echo \"$$ $!\" > '",
                                  pids, ".tmp' && mv '", pids, ".tmp' '", pids,
                                  "'\n"
                                  "wait\n")));
  absl::StatusOr<DiscoverySession> started =
      h.manager->Start("slow", absl::Seconds(120));
  REQUIRE(started.ok());
  REQUIRE(WaitFor([&] { return ::access(pids.c_str(), F_OK) == 0; }, kLong));
  REQUIRE(WaitFor([&] {
    auto now = h.manager->Get(started->session_id());
    return now.ok() && now->devices_size() == 1;
  }));
  const std::string both = ReadFile(pids);
  const pid_t shell = PidFrom(pids);
  int sleeper = 0;
  REQUIRE(absl::SimpleAtoi(both.substr(both.find(' ') + 1), &sleeper));

  absl::StatusOr<DiscoverySession> cancelled =
      h.manager->Cancel(started->session_id());
  REQUIRE(cancelled.ok());
  CHECK(cancelled->status() == "cancelled");
  CHECK_FALSE(cancelled->finished_at().empty());
  CHECK(cancelled->devices_size() == 1);
  CHECK(ProcessGone(shell));
  CHECK(WaitFor([&] { return ProcessGone(sleeper); }));
  CHECK(h.store.records().count("slow_early") == 1);
  CHECK(h.manager->Running().empty());

  // Cancelling again answers the session as it is.
  absl::StatusOr<DiscoverySession> again =
      h.manager->Cancel(started->session_id());
  REQUIRE(again.ok());
  CHECK(again->status() == "cancelled");
  CHECK(again->finished_at() == cancelled->finished_at());
}

TEST_CASE(
    "a tool that overruns its timeout is stopped and the scan completes") {
  Harness h;
  h.connectors.Add("stubborn",
                   ShellConnector(h.root, "stubborn",
                                  "trap '' TERM\n"
                                  "echo '{\"device\":{\"serial\":\"found\"}}'\n"
                                  "while true; do sleep 1; done\n"));
  absl::StatusOr<DiscoverySession> started =
      h.manager->Start("stubborn", absl::Seconds(1));
  REQUIRE(started.ok());
  DiscoverySession done = h.Finished(started->session_id());
  INFO(done.DebugString());
  CHECK(done.status() == "completed");
  CHECK(done.progress() == 100);
  CHECK(done.devices_size() == 1);
  CHECK(HasLog(done, "did not stop at its timeout of 1 s"));
  std::vector<FakeStore::Call> calls = h.store.calls();
  REQUIRE(calls.size() == 2);
  CHECK(calls[1].ids.empty());
  CHECK(calls[1].scan_completed);
}

TEST_CASE("a session without progress reports shows elapsed time") {
  Harness h;
  const std::string gate = h.root.Join("gate");
  h.connectors.Add("quiet", ShellConnector(h.root, "quiet", WaitForFile(gate)));
  absl::StatusOr<DiscoverySession> started =
      h.manager->Start("quiet", absl::Seconds(2));
  REQUIRE(started.ok());
  CHECK(started->progress() < 100);
  // 1 % of 2 s passes quickly; it never reaches 100 while running.
  CHECK(WaitFor([&] {
    auto now = h.manager->Get(started->session_id());
    return now.ok() && now->progress() >= 1;
  }));
  absl::StatusOr<DiscoverySession> now = h.manager->Get(started->session_id());
  REQUIRE(now.ok());
  CHECK(now->status() == "running");
  CHECK(now->progress() <= 99);
  WriteFile(gate, "");
  DiscoverySession done = h.Finished(started->session_id());
  CHECK(done.status() == "completed");
  CHECK(done.progress() == 100);
  // No final result: the end of the scan is still recorded.
  std::vector<FakeStore::Call> calls = h.store.calls();
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].scan_completed);
}

TEST_CASE("watchers of a quiet tool get its elapsed-time progress") {
  SessionManagerOptions options;
  options.progress_tick = absl::Milliseconds(20);
  Harness h(options);
  const std::string gate = h.root.Join("gate");
  h.connectors.Add("quiet", ShellConnector(h.root, "quiet", WaitForFile(gate)));
  absl::StatusOr<DiscoverySession> started =
      h.manager->Start("quiet", absl::Seconds(2));
  REQUIRE(started.ok());
  Recorder recorder;
  REQUIRE(h.manager->Watch(started->session_id(), recorder.watcher()).ok());
  // The tool prints nothing, yet a watcher sees the progress move.
  CHECK(WaitFor([&] {
    for (const DiscoverySession& state : recorder.states()) {
      if (state.status() == "running" && state.progress() >= 1) return true;
    }
    return false;
  }));
  WriteFile(gate, "");
  CHECK(WaitFor([&] { return recorder.HasFinal(); }));
  std::vector<DiscoverySession> states = recorder.states();
  int finals = 0;
  for (const DiscoverySession& state : states) {
    if (state.status() != "running") ++finals;
  }
  CHECK(finals == 1);
  CHECK(states.back().status() == "completed");
  CHECK(states.back().progress() == 100);
}

TEST_CASE("failures of the tool fail the session with a message") {
  Harness h;
  SECTION("ok:false") {
    h.connectors.Add(
        "broken",
        ShellConnector(h.root, "broken",
                       "echo '{\"ok\":false,\"error\":{\"code\":"
                       "\"discovery_failed\",\"message\":\"no network here\","
                       "\"retriable\":true}}'"));
    auto started = h.manager->Start("broken", absl::Seconds(5));
    REQUIRE(started.ok());
    DiscoverySession done = h.Finished(started->session_id());
    CHECK(done.status() == "failed");
    CHECK(done.error() == "no network here");
    CHECK(h.store.calls().empty());
  }
  SECTION("non-zero exit with stderr") {
    h.connectors.Add("broken",
                     ShellConnector(h.root, "broken",
                                    "echo 'first problem' >&2\n"
                                    "echo 'boom happened' >&2\nexit 3"));
    auto started = h.manager->Start("broken", absl::Seconds(5));
    REQUIRE(started.ok());
    DiscoverySession done = h.Finished(started->session_id());
    CHECK(done.status() == "failed");
    CHECK(done.error() == "boom happened");
    CHECK(HasLog(done, "first problem"));
  }
  SECTION("non-zero exit, nothing said") {
    h.connectors.Add("broken", ShellConnector(h.root, "broken", "exit 4"));
    auto started = h.manager->Start("broken", absl::Seconds(5));
    REQUIRE(started.ok());
    DiscoverySession done = h.Finished(started->session_id());
    CHECK(done.status() == "failed");
    CHECK(done.error() == "exit code 4");
  }
  SECTION("the tool cannot be started") {
    h.connectors.Add("broken",
                     ShellConnector(h.root, "broken", "echo never", "",
                                    "#!/nonexistent/interpreter"));
    auto started = h.manager->Start("broken", absl::Seconds(5));
    REQUIRE(started.ok());
    DiscoverySession done = h.Finished(started->session_id());
    CHECK(done.status() == "failed");
    CHECK(absl::StrContains(done.error(), "Could not start"));
    CHECK(h.store.calls().empty());
  }
}

TEST_CASE("a store that fails does not stop the session") {
  Harness h;
  h.store.set_fail(true);
  h.connectors.Add("demo",
                   ShellConnector(h.root, "demo",
                                  "echo '{\"device\":{\"serial\":\"a1\"}}'\n"
                                  "echo '{\"ok\":true,\"result\":{\"devices\":["
                                  "{\"serial\":\"a2\"}]}}'"));
  auto started = h.manager->Start("demo", absl::Seconds(5));
  REQUIRE(started.ok());
  DiscoverySession done = h.Finished(started->session_id());
  INFO(done.DebugString());
  CHECK(done.status() == "completed");
  CHECK(done.devices_size() == 2);
  CHECK(FindDevice(done, "demo_a1") != nullptr);
  CHECK(FindDevice(done, "demo_a2") != nullptr);
  CHECK(HasLog(done, "config service unreachable"));
  CHECK(h.store.calls().size() == 2);
}

TEST_CASE("one session per connector, and a bounded number in all") {
  SessionManagerOptions options;
  options.max_running = 2;
  Harness h(options);
  const std::string gate = h.root.Join("gate");
  for (const char* name : {"one", "two", "three"}) {
    h.connectors.Add(name, ShellConnector(h.root, name, WaitForFile(gate)));
  }
  auto first = h.manager->Start("one", absl::Seconds(60));
  REQUIRE(first.ok());
  auto again = h.manager->Start("one", absl::Seconds(30));
  REQUIRE(again.ok());
  CHECK(again->session_id() == first->session_id());
  CHECK(again->timeout() == 60);
  auto second = h.manager->Start("two", absl::Seconds(60));
  REQUIRE(second.ok());
  CHECK(second->session_id() != first->session_id());
  CHECK(h.manager->Running().size() == 2);

  auto third = h.manager->Start("three", absl::Seconds(60));
  REQUIRE_FALSE(third.ok());
  CHECK(third.status().code() == absl::StatusCode::kResourceExhausted);
  CHECK(common::ReasonOf(third.status()) == "TOO_MANY_SESSIONS");

  WriteFile(gate, "");
  CHECK(h.Finished(first->session_id()).status() == "completed");
  CHECK(h.Finished(second->session_id()).status() == "completed");
  CHECK(h.manager->Running().empty());
  // Finished: the next Start is a new session.
  auto next = h.manager->Start("one", absl::Seconds(60));
  REQUIRE(next.ok());
  CHECK(next->session_id() != first->session_id());
  h.Finished(next->session_id());
}

TEST_CASE("finished sessions are forgotten after the retention") {
  SECTION("zero retention") {
    SessionManagerOptions options;
    options.retention = absl::ZeroDuration();
    Harness h(options);
    h.connectors.Add("demo", ShellConnector(h.root, "demo", "true"));
    auto started = h.manager->Start("demo", absl::Seconds(5));
    REQUIRE(started.ok());
    h.Finished(started->session_id());
    CHECK(WaitFor([&] {
      h.manager->Sweep();
      return !h.manager->Get(started->session_id()).ok();
    }));
    CHECK(h.manager->List().empty());
  }
  SECTION("default retention") {
    Harness h;
    h.connectors.Add("demo", ShellConnector(h.root, "demo", "true"));
    auto started = h.manager->Start("demo", absl::Seconds(5));
    REQUIRE(started.ok());
    h.Finished(started->session_id());
    h.manager->Sweep();
    CHECK(h.manager->Get(started->session_id()).ok());
    CHECK(h.manager->List().size() == 1);
  }
}

TEST_CASE("requests that start nothing") {
  Harness h;
  SECTION("unknown session ids") {
    for (auto status :
         {h.manager->Get("nope").status(), h.manager->Cancel("nope").status(),
          h.manager->Watch("nope", [](const DiscoverySession&) {}).status()}) {
      CHECK(status.code() == absl::StatusCode::kNotFound);
      CHECK(common::ReasonOf(status) == "SESSION_NOT_FOUND");
      CHECK(status.message() == "Invalid session ID");
    }
  }
  SECTION("a connector without discovery") {
    ConnectorTooling tooling = ShellConnector(h.root, "plain", "true");
    tooling.setup_json = R"({"display_name":"Plain","tools":{}})";
    h.connectors.Add("plain", tooling);
    ConnectorTooling off = ShellConnector(h.root, "off", "true");
    off.setup_json = R"({"discovery":{"supported":false,"tool":"scan"},)"
                     R"("tools":{"scan":{"entry":"scan.sh"}}})";
    h.connectors.Add("off", off);
    for (const char* name : {"plain", "off"}) {
      auto started = h.manager->Start(name, absl::ZeroDuration());
      REQUIRE_FALSE(started.ok());
      CHECK(started.status().code() == absl::StatusCode::kFailedPrecondition);
      CHECK(common::ReasonOf(started.status()) == "DISCOVERY_NOT_SUPPORTED");
    }
  }
  SECTION("an unknown connector") {
    auto started = h.manager->Start("ghost", absl::ZeroDuration());
    REQUIRE_FALSE(started.ok());
    CHECK(common::ReasonOf(started.status()) == "INTEGRATION_NOT_FOUND");
  }
  SECTION("timeouts out of range") {
    h.connectors.Add("demo", ShellConnector(h.root, "demo", "true"));
    for (absl::Duration timeout :
         {absl::Seconds(-1), absl::Milliseconds(500), absl::Seconds(301)}) {
      auto started = h.manager->Start("demo", timeout);
      REQUIRE_FALSE(started.ok());
      CHECK(started.status().code() == absl::StatusCode::kInvalidArgument);
      CHECK(common::ReasonOf(started.status()) == "INVALID_TIMEOUT");
    }
  }
  SECTION("a missing entry") {
    ConnectorTooling tooling = ShellConnector(h.root, "demo", "true");
    REQUIRE(::unlink((tooling.connector_dir + "/scan.sh").c_str()) == 0);
    h.connectors.Add("demo", tooling);
    auto started = h.manager->Start("demo", absl::ZeroDuration());
    REQUIRE_FALSE(started.ok());
    CHECK(common::ReasonOf(started.status()) == "ENTRY_NOT_FOUND");
  }
  CHECK(h.manager->List().empty());
  CHECK(h.store.calls().empty());
}

TEST_CASE("the timeout defaults to the declared one, else the default") {
  SessionManagerOptions options;
  options.default_timeout = absl::Seconds(12);
  Harness h(options);
  const std::string gate = h.root.Join("gate");
  h.connectors.Add(
      "declared",
      ShellConnector(h.root, "declared", WaitForFile(gate), R"(,"timeout":9)"));
  h.connectors.Add("undeclared",
                   ShellConnector(h.root, "undeclared", WaitForFile(gate)));
  auto declared = h.manager->Start("declared", absl::ZeroDuration());
  REQUIRE(declared.ok());
  CHECK(declared->timeout() == 9);
  auto undeclared = h.manager->Start("undeclared", absl::ZeroDuration());
  REQUIRE(undeclared.ok());
  CHECK(undeclared->timeout() == 12);
  WriteFile(gate, "");
  h.Finished(declared->session_id());
  h.Finished(undeclared->session_id());
}

TEST_CASE("destroying the manager ends running tools") {
  Harness h;
  const std::string pid_file = h.root.Join("pid");
  h.connectors.Add(
      "slow",
      ShellConnector(h.root, "slow",
                     absl::StrCat("echo $$ > '", pid_file, ".tmp' && mv '",
                                  pid_file, ".tmp' '", pid_file,
                                  "'\nwhile true; do sleep 1; done")));
  Recorder recorder;
  auto started = h.manager->Start("slow", absl::Seconds(120));
  REQUIRE(started.ok());
  REQUIRE(h.manager->Watch(started->session_id(), recorder.watcher()).ok());
  REQUIRE(
      WaitFor([&] { return ::access(pid_file.c_str(), F_OK) == 0; }, kLong));
  const pid_t pid = PidFrom(pid_file);
  h.manager.reset();
  CHECK(ProcessGone(pid));
  REQUIRE(recorder.HasFinal());
  CHECK(recorder.states().back().status() == "cancelled");
}

}  // namespace
}  // namespace iot2mqtt::discovery
