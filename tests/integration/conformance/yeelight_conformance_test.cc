// The Yeelight connector against bulbs simulated on loopback must pass every
// check of the conformance checker, like the connectors that need no
// hardware.

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "connectors/yeelight/testing/bulb_simulator.h"
#include "tests/integration/conformance/conformance_support.h"

namespace iot2mqtt::conformance {
namespace {

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
  PassesEveryCheck({"iot2mqtt-connector-yeelight",
                    "yeelight_conformance",
                    config,
                    {"lamp1", "lamp2"},
                    "lamps",
                    "lamp1"});
}

}  // namespace
}  // namespace iot2mqtt::conformance
