// The pure parts of the orchestrator's runtimes: names, /proc parsing, log
// line times, copy-truncate rotation and entry resolution (real files in a
// TempDir).

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "catch2/catch.hpp"
#include "iot2mqtt/sdk/log.h"
#include "services/common/status.h"
#include "services/orchestrator/process_runtime.h"
#include "services/orchestrator/runtime.h"
#include "tests/support/captured_log.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::orchestrator {
namespace {

using ::iot2mqtt::testing::CapturedLog;
using ::iot2mqtt::testing::ListDir;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::TempDir;
using ::iot2mqtt::testing::WriteFile;

void RequireError(const absl::Status& status, absl::StatusCode code,
                  const std::string& reason) {
  INFO(status.ToString());
  REQUIRE(status.code() == code);
  CHECK(common::ReasonOf(status) == reason);
}

TEST_CASE("runtime names follow upstream", "[unit][orchestrator]") {
  CHECK(RuntimeName("demo", "kitchen") == "iot2mqtt_demo_kitchen");
  CHECK(RuntimeName("yee-light", "a_1") == "iot2mqtt_yee-light_a_1");
  CHECK(ImageTag("demo") == "iot2mqtt_demo:latest");
  CHECK(RuntimeStateName(RuntimeState::kCreated) == "created");
  CHECK(RuntimeStateName(RuntimeState::kRunning) == "running");
  CHECK(RuntimeStateName(RuntimeState::kRestarting) == "restarting");
  CHECK(RuntimeStateName(RuntimeState::kPaused) == "paused");
  CHECK(RuntimeStateName(RuntimeState::kExited) == "exited");
  CHECK(RuntimeStateName(RuntimeState::kDead) == "dead");
}

TEST_CASE("name components are validated strictly", "[unit][orchestrator]") {
  for (const std::string& good :
       {std::string("a"), std::string("demo"), std::string("a-b_c9"),
        std::string("0x"), std::string(63, 'z')}) {
    INFO(good);
    CHECK(IsValidNameComponent(good));
  }
  for (const std::string& bad :
       {std::string(""), std::string("Demo"), std::string("-a"),
        std::string("_a"), std::string("a/b"), std::string(".."),
        std::string("a.b"), std::string("a b"), std::string(64, 'z'),
        std::string("caf\xc3\xa9"), std::string("a\0b", 3)}) {
    INFO(bad);
    CHECK_FALSE(IsValidNameComponent(bad));
  }
  CHECK(ValidateSpecNames("demo", "kitchen").ok());
  RequireError(ValidateSpecNames("../demo", "kitchen"),
               absl::StatusCode::kInvalidArgument, "INVALID_CONNECTOR_NAME");
  RequireError(ValidateSpecNames("demo", "x/../../etc"),
               absl::StatusCode::kInvalidArgument, "INVALID_INSTANCE_ID");
}

TEST_CASE("only names RuntimeName can produce are runtime ids",
          "[unit][orchestrator]") {
  CHECK(IsRuntimeName("iot2mqtt_demo_kitchen"));
  CHECK(IsRuntimeName("iot2mqtt_a_b_c"));
  CHECK(IsRuntimeName(RuntimeName(std::string(63, 'a'), std::string(63, 'b'))));
  for (const char* bad :
       {"", "demo_kitchen", "iot2mqtt_demo", "iot2mqtt_demo_", "iot2mqtt__x",
        "iot2mqtt_../x_y", "iot2mqtt_demo_a/b", "iot2mqtt_demo_a.json",
        "IOT2MQTT_demo_x", "iot2mqtt_Demo_x", "0123456789abcdef"}) {
    INFO(bad);
    CHECK_FALSE(IsRuntimeName(bad));
  }
}

TEST_CASE("/proc/<pid>/stat is parsed, odd command names included",
          "[unit][orchestrator]") {
  // Fields 3.. from a real line; the comm holds spaces and parentheses.
  const std::string line =
      "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 "
      "17 5 0 0 20 0 3 0 987654 10000000 500 18446744073709551615 "
      "1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
  absl::StatusOr<ProcStat> stat = ParseProcStat(line);
  REQUIRE(stat.ok());
  CHECK(stat->pid == 4242);
  CHECK(stat->comm == "my (odd) name");
  CHECK(stat->state == 'S');
  CHECK(stat->ppid == 1);
  CHECK(stat->pgrp == 4242);
  CHECK(stat->utime == 17);
  CHECK(stat->stime == 5);
  CHECK(stat->start_ticks == 987654);

  // This very process.
  std::string self = ReadFile("/proc/self/stat");
  absl::StatusOr<ProcStat> own = ParseProcStat(self);
  REQUIRE(own.ok());
  CHECK(own->pid == getpid());
  CHECK(own->ppid == getppid());
  CHECK(own->pgrp == getpgrp());
  CHECK(own->start_ticks > 0);

  for (const char* bad : {"", "12 comm S 1", "12 (comm) S 1 2 3",
                          "(x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17",
                          "x (c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 "
                          "18 19 20"}) {
    INFO(bad);
    CHECK_FALSE(ParseProcStat(bad).ok());
  }
}

TEST_CASE("VmRSS is read from /proc/<pid>/status", "[unit][orchestrator]") {
  CHECK(ParseVmRssBytes("Name:\tx\nVmPeak:\t  100 kB\nVmRSS:\t    2048 kB\n"
                        "Threads:\t1\n") == 2048 * 1024);
  CHECK_FALSE(ParseVmRssBytes("Name:\tkthreadd\nState:\tS\n").has_value());
  std::optional<int64_t> own = ParseVmRssBytes(ReadFile("/proc/self/status"));
  REQUIRE(own.has_value());
  CHECK(*own > 100 * 1024);
}

TEST_CASE("log line times come from a leading timestamp",
          "[unit][orchestrator]") {
  absl::Time expected;
  std::string error;
  REQUIRE(absl::ParseTime(absl::RFC3339_full, "2026-11-22T16:41:07.123456Z",
                          &expected, &error));
  CHECK(ParseLogLineTime(R"({"timestamp":"2026-11-22T16:41:07.123456Z",)"
                         R"("severity":"INFO","message":"hi"})") == expected);
  CHECK(ParseLogLineTime(R"({ "timestamp" : "2026-11-22T16:41:07.123456Z"})") ==
        expected);
  CHECK(ParseLogLineTime("2026-11-22T16:41:07.123456Z connected") == expected);
  CHECK(ParseLogLineTime("2026-11-22T17:41:07.123456+01:00 x") == expected);
  for (const char* none :
       {"", "hello", "42 apples", R"({"severity":"INFO"})",
        R"({"timestamp":"yesterday"})", R"({"timestamp":"2026-11-22T16:41)",
        "2026-13-45T99:99:99Z x"}) {
    INFO(none);
    CHECK(ParseLogLineTime(none) == absl::InfinitePast());
  }

  // What the SDK writes parses to when it was written.
  CapturedLog log;
  absl::Time before = absl::Now();
  IOT2MQTT_LOG(INFO) << "connected";
  absl::Time after = absl::Now();
  REQUIRE(log.lines().size() == 1);
  std::string line = log.lines()[0];
  while (!line.empty() && line.back() == '\n') line.pop_back();
  absl::Time parsed = ParseLogLineTime(line);
  CHECK(parsed >= before - absl::Microseconds(1));
  CHECK(parsed <= after);
}

TEST_CASE("copy-truncate rotation keeps a bounded set of files",
          "[unit][orchestrator]") {
  TempDir dir;
  const std::string path = dir.Join("c.log");
  absl::StatusOr<bool> rotated = RotateLogFile(path, 10, 3);
  REQUIRE(rotated.ok());
  CHECK_FALSE(*rotated);  // Missing file.

  WriteFile(path, "small\n");
  rotated = RotateLogFile(path, 10, 3);
  REQUIRE(rotated.ok());
  CHECK_FALSE(*rotated);
  CHECK(ReadFile(path) == "small\n");

  // The writer keeps its O_APPEND descriptor across rotations, as a
  // connector does.
  int fd = open(path.c_str(), O_WRONLY | O_APPEND);
  REQUIRE(fd >= 0);
  auto append = [&](const std::string& text) {
    REQUIRE(write(fd, text.data(), text.size()) ==
            static_cast<ssize_t>(text.size()));
  };
  for (int round = 1; round <= 5; ++round) {
    append(absl::StrCat("round ", round, " is long enough\n"));
    rotated = RotateLogFile(path, 10, 3);
    REQUIRE(rotated.ok());
    CHECK(*rotated);
    CHECK(ReadFile(path).empty());
  }
  // Writes continue at the start of the truncated file (no hole of NULs).
  append("after\n");
  CHECK(ReadFile(path) == "after\n");
  close(fd);

  CHECK(ListDir(dir.path()) ==
        std::vector<std::string>{"c.log", "c.log.1", "c.log.2", "c.log.3"});
  CHECK(ReadFile(path + ".1") == "round 5 is long enough\n");
  CHECK(ReadFile(path + ".2") == "round 4 is long enough\n");
  CHECK(ReadFile(path + ".3") == "round 3 is long enough\n");

  // keep == 0: truncation only.
  WriteFile(dir.Join("d.log"), "0123456789abcdef\n");
  rotated = RotateLogFile(dir.Join("d.log"), 10, 0);
  REQUIRE(rotated.ok());
  CHECK(*rotated);
  CHECK(ReadFile(dir.Join("d.log")).empty());
  CHECK(access(dir.Join("d.log.1").c_str(), F_OK) != 0);
}

class EntryDirs {
 public:
  EntryDirs() {
    REQUIRE(mkdir(connector().c_str(), 0755) == 0);
    REQUIRE(mkdir((connector() + "/bin").c_str(), 0755) == 0);
    REQUIRE(mkdir(bin().c_str(), 0755) == 0);
    Executable(connector() + "/run.sh");
    Executable(connector() + "/bin/tool");
    Executable(bin() + "/shipped");
    Executable(dir_.Join("outside.sh"));
    WriteFile(connector() + "/plain.txt", "not a program\n");
  }
  std::string connector() const { return dir_.Join("demo"); }
  std::string bin() const { return dir_.Join("bin"); }
  std::string Join(const std::string& name) const { return dir_.Join(name); }
  static void Executable(const std::string& path) {
    WriteFile(path, "#!/bin/sh\nexit 0\n");
    REQUIRE(chmod(path.c_str(), 0755) == 0);
  }
  absl::StatusOr<std::string> Resolve(const std::string& entry) const {
    return ResolveProcessEntry(connector(), entry, {bin()});
  }

 private:
  TempDir dir_;
};

std::string RealPath(const std::string& path) {
  char buffer[PATH_MAX];
  REQUIRE(realpath(path.c_str(), buffer) != nullptr);
  return buffer;
}

TEST_CASE("entries resolve inside the connector dir, then in bin dirs",
          "[unit][orchestrator]") {
  EntryDirs dirs;
  absl::StatusOr<std::string> path = dirs.Resolve("run.sh");
  REQUIRE(path.ok());
  CHECK(*path == RealPath(dirs.connector() + "/run.sh"));
  path = dirs.Resolve("bin/tool");
  REQUIRE(path.ok());
  CHECK(*path == RealPath(dirs.connector() + "/bin/tool"));
  path = dirs.Resolve("./run.sh");
  REQUIRE(path.ok());
  path = dirs.Resolve("shipped");
  REQUIRE(path.ok());
  CHECK(*path == RealPath(dirs.bin() + "/shipped"));

  // A link that stays inside is fine.
  REQUIRE(symlink("run.sh", (dirs.connector() + "/alias").c_str()) == 0);
  path = dirs.Resolve("alias");
  REQUIRE(path.ok());
  CHECK(*path == RealPath(dirs.connector() + "/run.sh"));
}

TEST_CASE("entries that escape or cannot run are refused",
          "[unit][orchestrator]") {
  EntryDirs dirs;
  REQUIRE(symlink(dirs.Join("outside.sh").c_str(),
                  (dirs.connector() + "/escape").c_str()) == 0);
  REQUIRE(symlink("..", (dirs.connector() + "/up").c_str()) == 0);
  REQUIRE(symlink("missing", (dirs.connector() + "/dangling").c_str()) == 0);
  for (const char* entry :
       {"", "../outside.sh", "bin/../../outside.sh", "escape", "up/outside.sh",
        "dangling", "plain.txt", "bin", "nothing", "bin/shipped", "/bin/sh"}) {
    INFO(entry);
    absl::StatusOr<std::string> path = dirs.Resolve(entry);
    RequireError(path.status(), absl::StatusCode::kFailedPrecondition,
                 "ENTRY_NOT_FOUND");
  }
  absl::StatusOr<std::string> path = dirs.Resolve("nothing");
  CHECK(path.status().message().find(dirs.bin()) != std::string::npos);

  RequireError(ResolveProcessEntry(dirs.Join("no-such-connector"), "run.sh", {})
                   .status(),
               absl::StatusCode::kFailedPrecondition,
               "CONNECTOR_DIR_NOT_FOUND");
}

}  // namespace
}  // namespace iot2mqtt::orchestrator
