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
                  "lights",
                  ""};
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
                                              "all",
                                              ""};
  return *shipped;
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
