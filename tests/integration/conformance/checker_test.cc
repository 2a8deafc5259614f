// The conformance checker against fake connectors on a real Mosquitto: a
// correct one passes every check, deliberately broken ones fail exactly the
// checks for their defects.

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "tests/integration/conformance/conformance_support.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::conformance {
namespace {

using ::iot2mqtt::testing::BinaryPath;
using ::iot2mqtt::testing::ChildProcess;
using ::iot2mqtt::testing::FreePort;
using ::iot2mqtt::testing::TempDir;

constexpr char kInstance[] = "fake_1";

// Starts the fake connector with `defects`, keepalive 5 s.
std::unique_ptr<ChildProcess> StartFake(const TestBroker& broker,
                                        const std::string& defects,
                                        const TempDir& dir) {
  absl::StatusOr<std::unique_ptr<ChildProcess>> fake =
      ChildProcess::Start(BinaryPath("conformance_fake_connector"), {},
                          {{"MQTT_HOST", "127.0.0.1"},
                           {"MQTT_PORT", absl::StrCat(broker.port())},
                           {"MQTT_KEEPALIVE", "5"},
                           {"INSTANCE_NAME", kInstance},
                           {"FAKE_DEFECTS", defects}},
                          dir.Join("fake.log"));
  REQUIRE(fake.ok());
  return *std::move(fake);
}

std::vector<std::string> BaseArgs(const TestBroker& broker) {
  return {
      "--host",     "127.0.0.1", "--port",       absl::StrCat(broker.port()),
      "--instance", kInstance,   "--timeout-ms", "3000"};
}

std::vector<std::string> Plus(std::vector<std::string> args,
                              const std::vector<std::string>& more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

const std::set<std::string>& EveryCheck() {
  static const std::set<std::string>* names = new std::set<std::string>{
      "status-online",     "state-shape",      "property-topics",
      "meta-devices-list", "meta-info",        "meta-unknown-request",
      "command-response",  "offset-timestamp", "legacy-command",
      "stale-command",     "future-command",   "malformed-command",
      "unknown-device",    "unknown-group",    "get-unknown-device",
      "get-full",          "get-filtered",     "group-command",
      "extra-levels",      "reconnect",        "graceful-shutdown",
      "last-will"};
  return *names;
}

std::set<std::string> AsSet(const std::vector<std::string>& names) {
  return std::set<std::string>(names.begin(), names.end());
}

TEST_CASE("conformance: a correct connector passes every check",
          "[conformance]") {
  TestBroker broker;
  TempDir dir;
  std::unique_ptr<ChildProcess> fake = StartFake(broker, "", dir);
  CheckerReport report =
      RunChecker(Plus(BaseArgs(broker),
                      {"--group", "all", "--pid", absl::StrCat(fake->pid())}));
  INFO(report.output);
  CHECK(report.exit_code == 0);
  CHECK(report.Named("FAIL").empty());
  CHECK(AsSet(report.Named("SKIP")) == std::set<std::string>{"last-will"});
  CHECK(report.Named("PASS").size() == EveryCheck().size() - 1);
  CHECK(report.summary == "21 passed, 0 failed, 1 skipped");
  // graceful-shutdown stopped it.
  absl::StatusOr<int> exit_code = fake->Wait(absl::Seconds(5));
  CHECK((exit_code.ok() && *exit_code == 0));
}

TEST_CASE("conformance: a correct connector's last will is published on kill",
          "[conformance]") {
  TestBroker broker;
  TempDir dir;
  std::unique_ptr<ChildProcess> fake = StartFake(broker, "", dir);
  CheckerReport report = RunChecker(
      Plus(BaseArgs(broker), {"--only", "status-online,last-will", "--kill-pid",
                              absl::StrCat(fake->pid()), "--keepalive", "5"}));
  INFO(report.output);
  CHECK(report.exit_code == 0);
  CHECK(AsSet(report.Named("PASS")) ==
        std::set<std::string>{"status-online", "last-will"});
  CHECK(report.summary == "2 passed, 0 failed, 0 skipped");
}

TEST_CASE(
    "conformance: no last will, Python booleans, epoch uptime and a filtered "
    "get that overwrites the state fail exactly their checks",
    "[conformance]") {
  TestBroker broker;
  TempDir dir;
  std::unique_ptr<ChildProcess> fake = StartFake(
      broker, "no-will,python-bool,epoch-uptime,filtered-get-overwrites", dir);
  CheckerReport report = RunChecker(Plus(
      BaseArgs(broker), {"--device", "lamp", "--group", "all", "--kill-pid",
                         absl::StrCat(fake->pid()), "--keepalive", "5"}));
  INFO(report.output);
  CHECK(report.exit_code == 1);
  CHECK(AsSet(report.Named("FAIL")) ==
        std::set<std::string>{"property-topics", "meta-info", "get-filtered",
                              "last-will"});
  CHECK(AsSet(report.Named("SKIP")) ==
        std::set<std::string>{"graceful-shutdown"});
  CHECK(report.summary == "17 passed, 4 failed, 1 skipped");
  CHECK(absl::StrContains(report.detail["property-topics"], "`True`"));
  CHECK(absl::StrContains(report.detail["meta-info"], "uptime"));
  CHECK(absl::StrContains(report.detail["get-filtered"], "lost key"));
  CHECK(absl::StrContains(report.detail["last-will"], "no last will"));
}

TEST_CASE(
    "conformance: accepting future commands, dropping malformed ones "
    "silently, `online` only once and stopping without offline fail exactly "
    "their checks",
    "[conformance]") {
  TestBroker broker;
  TempDir dir;
  std::unique_ptr<ChildProcess> fake = StartFake(
      broker, "accept-future,silent-malformed,online-once,no-offline-on-stop",
      dir);
  CheckerReport report =
      RunChecker(Plus(BaseArgs(broker), {"--device", "plug", "--group", "all",
                                         "--pid", absl::StrCat(fake->pid())}));
  INFO(report.output);
  CHECK(report.exit_code == 1);
  CHECK(AsSet(report.Named("FAIL")) ==
        std::set<std::string>{"future-command", "malformed-command",
                              "reconnect", "graceful-shutdown"});
  CHECK(AsSet(report.Named("SKIP")) == std::set<std::string>{"last-will"});
  CHECK(report.summary == "17 passed, 4 failed, 1 skipped");
  CHECK(
      absl::StrContains(report.detail["future-command"], "expected \"error\""));
  CHECK(absl::StrContains(report.detail["malformed-command"], "nothing came"));
  CHECK(absl::StrContains(report.detail["reconnect"], "no `online`"));
  CHECK(absl::StrContains(report.detail["graceful-shutdown"], "no `offline`"));
}

TEST_CASE("conformance: nothing running fails instead of passing",
          "[conformance]") {
  TestBroker broker;
  CheckerReport report =
      RunChecker({"--port", absl::StrCat(broker.port()), "--instance", "nobody",
                  "--timeout-ms", "300"});
  INFO(report.output);
  CHECK(report.exit_code == 1);
  CHECK(report.outcome["status-online"] == "FAIL");
  CHECK(report.outcome["state-shape"] == "FAIL");
  CHECK(report.outcome["meta-info"] == "FAIL");
  CHECK(report.outcome["unknown-device"] == "FAIL");
  CHECK(report.outcome["command-response"] == "SKIP");
  CHECK(report.Named("PASS").empty());
}

TEST_CASE("conformance: no broker is one failed check, bad flags exit 2",
          "[conformance]") {
  CheckerReport unreachable =
      RunChecker({"--port", absl::StrCat(FreePort()), "--instance", "x",
                  "--timeout-ms", "500"});
  CHECK(unreachable.exit_code == 1);
  CHECK(unreachable.outcome["connect"] == "FAIL");
  CHECK(unreachable.summary == "0 passed, 1 failed, 0 skipped");

  CheckerReport bad = RunChecker({"--instance", "x", "--only", "no-such"});
  CHECK(bad.exit_code == 2);
  CHECK(absl::StrContains(bad.output, "no-such"));

  CheckerReport help = RunChecker({"--help"});
  CHECK(help.exit_code == 0);
  CHECK(absl::StrContains(help.output, "--instance"));
}

}  // namespace
}  // namespace iot2mqtt::conformance
