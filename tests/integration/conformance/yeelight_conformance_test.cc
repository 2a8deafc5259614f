// The Yeelight connector against bulbs simulated on loopback must pass every
// check of the conformance checker, like the connectors that need no
// hardware.

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "connectors/yeelight/testing/bulb_simulator.h"
#include "tests/integration/conformance/conformance_support.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::conformance {
namespace {

using ::iot2mqtt::testing::ChildProcess;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::TempDir;

TEST_CASE("conformance: the yeelight connector passes every check",
          "[conformance][yeelight]") {
  auto bulbs = yeelight::testing::BulbSimulator::Start(2);
  REQUIRE(bulbs.ok());
  const std::string config = absl::StrCat(R"({
  "instance_id": "yeelight_conformance",
  "connector_type": "yeelight",
  "update_interval": 2,
  "devices": [
    {"device_id": "lamp1", "ip": "127.0.0.1", "port": )",
                                          (*bulbs)->port(0), R"(},
    {"device_id": "lamp2", "ip": "127.0.0.1", "port": )",
                                          (*bulbs)->port(1), R"(}
  ],
  "groups": [{"group_id": "lamps", "devices": ["lamp1", "lamp2"]}]
})");
  {
    TestBroker broker;
    TempDir dir;
    std::unique_ptr<ChildProcess> connector =
        StartConnector(broker, dir, "iot2mqtt-connector-yeelight",
                       "yeelight_conformance", config, {"lamp1", "lamp2"});
    CheckerReport report = RunChecker(
        {"--port", absl::StrCat(broker.port()), "--instance",
         "yeelight_conformance", "--device", "lamp1", "--group", "lamps",
         "--pid", absl::StrCat(connector->pid())});
    INFO(report.output);
    INFO(ReadFile(dir.Join("connector.log")));
    CHECK(report.exit_code == 0);
    CHECK(report.Named("FAIL").empty());
    CHECK(report.summary == "21 passed, 0 failed, 1 skipped");
  }
  // last-will kills the connector: a fresh one.
  TestBroker broker;
  TempDir dir;
  std::unique_ptr<ChildProcess> connector =
      StartConnector(broker, dir, "iot2mqtt-connector-yeelight",
                     "yeelight_conformance", config, {"lamp1", "lamp2"});
  CheckerReport report = RunChecker(
      {"--port", absl::StrCat(broker.port()), "--instance",
       "yeelight_conformance", "--only", "status-online,last-will",
       "--kill-pid", absl::StrCat(connector->pid()), "--keepalive", "5"});
  INFO(report.output);
  CHECK(report.exit_code == 0);
  CHECK(report.summary == "2 passed, 0 failed, 0 skipped");
}

}  // namespace
}  // namespace iot2mqtt::conformance
