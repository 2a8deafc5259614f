// The conformance checker against the shipped connectors that need no
// hardware: each must pass every check.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "tests/integration/conformance/conformance_support.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::conformance {
namespace {

using ::iot2mqtt::testing::ChildProcess;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::TempDir;

struct Shipped {
  const char* binary;
  const char* instance;
  const char* config;
  std::vector<std::string> devices;  // Waited for before checking.
  const char* group;
};

const Shipped& Demo() {
  static const Shipped* demo =
      new Shipped{"iot2mqtt-connector-demo",
                  "demo_conformance",
                  R"({
  "instance_id": "demo_conformance",
  "connector_type": "demo",
  "update_interval": 2,
  "motion_mean_interval": 3,
  "devices": [
    {"device_id": "climate1", "type": "climate", "enabled": true},
    {"device_id": "light1", "type": "light", "model": "demo.light", "enabled": true},
    {"device_id": "plug1", "type": "switch", "enabled": true},
    {"device_id": "motion1", "type": "motion", "enabled": true},
    {"device_id": "spare", "type": "light", "enabled": false}
  ],
  "groups": [{"group_id": "lights", "devices": ["light1", "plug1"]}]
})",
                  {"climate1", "light1", "plug1", "motion1"},
                  "lights"};
  return *demo;
}

const Shipped& Template() {
  static const Shipped* shipped = new Shipped{"iot2mqtt-connector-template",
                                              "template_conformance",
                                              R"({
  "instance_id": "template_conformance",
  "connector_type": "template",
  "update_interval": 2,
  "devices": [{"device_id": "switch1"}, {"device_id": "switch2"}],
  "groups": [{"group_id": "all", "devices": ["switch1", "switch2"]}]
})",
                                              {"switch1", "switch2"},
                                              "all"};
  return *shipped;
}

// Every check but last-will (graceful-shutdown stops the connector), then
// last-will against a fresh process.
void PassesEveryCheck(const Shipped& shipped) {
  {
    TestBroker broker;
    TempDir dir;
    std::unique_ptr<ChildProcess> connector =
        StartConnector(broker, dir, shipped.binary, shipped.instance,
                       shipped.config, shipped.devices);
    CheckerReport report = RunChecker(
        {"--port", absl::StrCat(broker.port()), "--instance", shipped.instance,
         "--group", shipped.group, "--pid", absl::StrCat(connector->pid())});
    INFO(report.output);
    INFO(ReadFile(dir.Join("connector.log")));
    CHECK(report.exit_code == 0);
    CHECK(report.Named("FAIL").empty());
    CHECK(report.Named("SKIP") == std::vector<std::string>{"last-will"});
    CHECK(report.summary == "21 passed, 0 failed, 1 skipped");
    absl::StatusOr<int> exit_code = connector->Wait(absl::Seconds(5));
    CHECK((exit_code.ok() && *exit_code == 0));
  }
  TestBroker broker;
  TempDir dir;
  std::unique_ptr<ChildProcess> connector =
      StartConnector(broker, dir, shipped.binary, shipped.instance,
                     shipped.config, shipped.devices);
  CheckerReport report = RunChecker(
      {"--port", absl::StrCat(broker.port()), "--instance", shipped.instance,
       "--only", "status-online,last-will", "--kill-pid",
       absl::StrCat(connector->pid()), "--keepalive", "5"});
  INFO(report.output);
  CHECK(report.exit_code == 0);
  CHECK(report.summary == "2 passed, 0 failed, 0 skipped");
}

#ifdef IOT2MQTT_HAVE_DEMO_CONNECTOR
TEST_CASE("conformance: the demo connector passes every check",
          "[conformance][demo]") {
  PassesEveryCheck(Demo());
}
#endif

#ifdef IOT2MQTT_HAVE_TEMPLATE_CONNECTOR
TEST_CASE("conformance: the template connector passes every check",
          "[conformance][template]") {
  PassesEveryCheck(Template());
}
#endif

}  // namespace
}  // namespace iot2mqtt::conformance
