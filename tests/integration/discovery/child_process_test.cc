// RunChild with real child processes: pipes, environment, limits, the
// deadline, cancellation, process groups and network isolation.

#include "services/discovery/child_process.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "catch2/catch.hpp"
#include "tests/integration/discovery/child_test_util.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::discovery {
namespace {

using ::iot2mqtt::discovery::test::FileExists;
using ::iot2mqtt::discovery::test::LiveGroupMembers;
using ::iot2mqtt::discovery::test::ProcessGone;
using ::iot2mqtt::discovery::test::ReadPidFile;
using ::iot2mqtt::discovery::test::WriteScript;
using ::iot2mqtt::testing::TempDir;
using ::iot2mqtt::testing::WaitFor;
using End = ChildResult::End;

const std::vector<std::string> kEnv = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8"};

// /bin/sh -c <command> in `dir`.
ChildSpec Shell(const std::string& command, const std::string& dir = "/") {
  ChildSpec spec;
  spec.executable = "/bin/sh";
  spec.args = {"-c", command};
  spec.working_dir = dir;
  spec.env = kEnv;
  spec.timeout = absl::Seconds(60);
  return spec;
}

std::string RealPath(const std::string& path) {
  char resolved[PATH_MAX];
  REQUIRE(realpath(path.c_str(), resolved) != nullptr);
  return resolved;
}

TEST_CASE(
    "RunChild feeds stdin and collects stdout, stderr and the exit code") {
  ChildSpec spec = Shell("cat; echo 'to stderr' >&2; exit 7");
  spec.stdin_data = "hello\nworld";
  ChildResult result = RunChild(spec, nullptr);
  CHECK(result.end == End::kExited);
  CHECK(result.exit_code == 7);
  CHECK(result.stdout_text == "hello\nworld");
  CHECK(result.stderr_text == "to stderr\n");
  CHECK_FALSE(result.stderr_truncated);
  CHECK_FALSE(result.killed);
  CHECK(result.pid > 0);
  CHECK(ProcessGone(result.pid));
}

TEST_CASE("The child gets exactly the given environment") {
  REQUIRE(setenv("IOT2MQTT_TEST_SECRET_ENV", "leak", 1) == 0);
  ChildSpec spec;
  spec.executable = "/usr/bin/env";
  spec.working_dir = "/";
  spec.env = {"A=1", "B=two words", "EMPTY="};
  ChildResult result = RunChild(spec, nullptr);
  unsetenv("IOT2MQTT_TEST_SECRET_ENV");
  REQUIRE(result.end == End::kExited);
  CHECK(result.exit_code == 0);
  CHECK(result.stdout_text == "A=1\nB=two words\nEMPTY=\n");
}

TEST_CASE("The child runs in working_dir with only descriptors 0, 1 and 2") {
  TempDir dir;
  // A descriptor of ours without CLOEXEC, at a number the child would not
  // open by itself.
  int leaked = open("/dev/null", O_RDONLY);
  REQUIRE(leaked >= 0);
  REQUIRE(dup2(leaked, 100) == 100);
  close(leaked);
  ChildResult result =
      RunChild(Shell("pwd; ls /proc/$$/fd", dir.path()), nullptr);
  close(100);
  REQUIRE(result.end == End::kExited);
  std::vector<std::string> lines =
      absl::StrSplit(result.stdout_text, '\n', absl::SkipEmpty());
  REQUIRE_FALSE(lines.empty());
  CHECK(lines[0] == RealPath(dir.path()));
  std::set<std::string> fds(lines.begin() + 1, lines.end());
  CHECK(fds == std::set<std::string>{"0", "1", "2"});
}

TEST_CASE("A child killed by a signal we did not send is kSignaled") {
  ChildResult result = RunChild(Shell("echo partial; kill -KILL $$"), nullptr);
  CHECK(result.end == End::kSignaled);
  CHECK(result.term_signal == SIGKILL);
  CHECK(result.exit_code == -1);
  CHECK(result.stdout_text == "partial\n");
  CHECK_FALSE(result.killed);
}

TEST_CASE("The timeout ends the whole group, SIGKILL after the grace period") {
  TempDir dir;
  WriteScript(dir.Join("stubborn.sh"),
              "#!/bin/sh\n"
              "trap '' TERM\n"
              "sleep 1000 &\n"
              "echo $! > grandchild.pid\n"
              "echo started\n"
              "while :; do sleep 1; done\n");
  ChildSpec spec;
  spec.executable = dir.Join("stubborn.sh");
  spec.working_dir = dir.path();
  spec.env = kEnv;
  spec.timeout = absl::Seconds(2);
  spec.limits.kill_grace = absl::Milliseconds(300);
  ChildResult result = RunChild(spec, nullptr);
  CHECK(result.end == End::kTimedOut);
  CHECK(result.killed);
  CHECK(result.exit_code == -1);
  CHECK(result.stdout_text == "started\n");
  int64_t grandchild = ReadPidFile(dir.Join("grandchild.pid"));
  CHECK(ProcessGone(result.pid));
  CHECK(ProcessGone(grandchild));
  CHECK(LiveGroupMembers(result.pid).empty());
}

TEST_CASE("A child that ends on SIGTERM is not SIGKILLed") {
  ChildSpec spec = Shell("echo started; exec sleep 1000");
  spec.timeout = absl::Seconds(1);
  spec.limits.kill_grace = absl::Seconds(30);
  ChildResult result = RunChild(spec, nullptr);
  CHECK(result.end == End::kTimedOut);
  CHECK_FALSE(result.killed);
  CHECK(result.stdout_text == "started\n");
  CHECK(LiveGroupMembers(result.pid).empty());
}

TEST_CASE("A background process holding stdout does not keep the run going") {
  TempDir dir;
  ChildSpec spec =
      Shell("sleep 1000 & echo $! > grandchild.pid; echo done", dir.path());
  spec.limits.kill_grace = absl::Milliseconds(200);
  ChildResult result = RunChild(spec, nullptr);
  CHECK(result.end == End::kExited);
  CHECK(result.exit_code == 0);
  CHECK(result.stdout_text == "done\n");
  CHECK(ProcessGone(ReadPidFile(dir.Join("grandchild.pid"))));
  CHECK(LiveGroupMembers(result.pid).empty());
}

TEST_CASE("stdout beyond its limit ends the run and keeps the first bytes") {
  ChildSpec spec = Shell("head -c 10485760 /dev/zero | tr '\\0' x");
  spec.limits.max_stdout_bytes = 1 << 20;
  ChildResult result = RunChild(spec, nullptr);
  CHECK(result.end == End::kOutputTooLarge);
  CHECK(result.stdout_text.size() == size_t{1} << 20);
  CHECK(result.stdout_text.find_first_not_of('x') == std::string::npos);
  CHECK(LiveGroupMembers(result.pid).empty());
}

TEST_CASE("stderr beyond its limit is drained and cut") {
  ChildSpec spec =
      Shell("head -c 5000000 /dev/zero | tr '\\0' e >&2; echo done");
  spec.limits.max_stderr_bytes = 1000;
  ChildResult result = RunChild(spec, nullptr);
  CHECK(result.end == End::kExited);
  CHECK(result.exit_code == 0);
  CHECK(result.stdout_text == "done\n");
  CHECK(result.stderr_text == std::string(1000, 'e'));
  CHECK(result.stderr_truncated);
}

TEST_CASE("A child that never reads its stdin does not hurt us") {
  ChildSpec spec = Shell("exec 0<&-; echo closed");
  spec.stdin_data = std::string(8 << 20, 'i');
  ChildResult result = RunChild(spec, nullptr);
  CHECK(result.end == End::kExited);
  CHECK(result.exit_code == 0);
  CHECK(result.stdout_text == "closed\n");
}

TEST_CASE("Lines are streamed as they come") {
  std::vector<std::string> out_lines;
  std::vector<std::string> err_lines;
  ChildSpec spec =
      Shell("printf 'one\\ntwo\\n\\nlast'; printf 'e1\\ne2\\n' >&2");
  spec.on_stdout_line = [&](absl::string_view line) {
    out_lines.emplace_back(line);
  };
  spec.on_stderr_line = [&](absl::string_view line) {
    err_lines.emplace_back(line);
  };
  ChildResult result = RunChild(spec, nullptr);
  CHECK(result.end == End::kExited);
  CHECK(out_lines == std::vector<std::string>{"one", "two", "", "last"});
  CHECK(err_lines == std::vector<std::string>{"e1", "e2"});
  CHECK(result.stdout_text == "one\ntwo\n\nlast");
}

TEST_CASE("A CancelToken ends a running child and its group") {
  TempDir dir;
  ChildSpec spec = Shell(
      "trap '' TERM; sleep 1000 & echo $! > grandchild.pid; "
      "echo $$ > leader.pid; wait",
      dir.path());
  spec.timeout = absl::Seconds(300);
  spec.limits.kill_grace = absl::Milliseconds(200);
  CancelToken token;
  ChildResult result;
  std::thread runner([&] { result = RunChild(spec, &token); });
  bool started = WaitFor([&] { return FileExists(dir.Join("leader.pid")); },
                         absl::Seconds(60));
  token.Cancel();
  token.Cancel();  // Idempotent.
  runner.join();
  REQUIRE(started);
  CHECK(result.end == End::kCancelled);
  CHECK(ProcessGone(ReadPidFile(dir.Join("grandchild.pid"))));
  CHECK(LiveGroupMembers(result.pid).empty());
}

TEST_CASE("A token cancelled before the run spawns nothing") {
  TempDir dir;
  CancelToken token;
  token.Cancel();
  CHECK(token.cancelled());
  ChildResult result = RunChild(Shell("touch marker", dir.path()), &token);
  CHECK(result.end == End::kCancelled);
  CHECK_FALSE(FileExists(dir.Join("marker")));
}

TEST_CASE("Spawn failures are reported, not run") {
  TempDir dir;
  ChildSpec missing;
  missing.executable = dir.Join("missing");
  missing.working_dir = dir.path();
  ChildResult result = RunChild(missing, nullptr);
  CHECK(result.end == End::kSpawnFailed);
  CHECK(absl::StrContains(result.spawn_error, "execve"));
  CHECK(absl::StrContains(result.spawn_error, "No such file"));

  ChildSpec bad_dir = Shell("touch marker", dir.Join("nowhere"));
  result = RunChild(bad_dir, nullptr);
  CHECK(result.end == End::kSpawnFailed);
  CHECK(absl::StrContains(result.spawn_error, "chdir"));

  ChildSpec relative = Shell("true");
  relative.executable = "sh";
  result = RunChild(relative, nullptr);
  CHECK(result.end == End::kSpawnFailed);
  CHECK(absl::StrContains(result.spawn_error, "absolute"));
}

TEST_CASE("isolate_network leaves the child nothing but a downed loopback") {
  ChildSpec spec = Shell("cat /proc/net/dev");
  spec.isolate_network = true;
  ChildResult result = RunChild(spec, nullptr);
  if (result.end == End::kSpawnFailed) {
    // Not permitted on this machine: then the child must not have run.
    WARN("network isolation unavailable: " << result.spawn_error);
    CHECK(absl::StrContains(result.spawn_error, "unshare"));
    return;
  }
  REQUIRE(result.end == End::kExited);
  std::vector<std::string> interfaces;
  for (absl::string_view line : absl::StrSplit(result.stdout_text, '\n')) {
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    interfaces.emplace_back(absl::StripAsciiWhitespace(line.substr(0, colon)));
  }
  CHECK(interfaces == std::vector<std::string>{"lo"});
}

TEST_CASE("EndName names every end") {
  CHECK(EndName(End::kExited) == "exited");
  CHECK(EndName(End::kTimedOut) == "timed out");
  CHECK(EndName(End::kSpawnFailed) == "spawn failed");
}

}  // namespace
}  // namespace iot2mqtt::discovery
