#include "iot2mqtt/sdk/instance_config.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "catch2/catch.hpp"

namespace iot2mqtt::sdk {
namespace {

TEST_CASE("InstanceConfig: a full document", "[unit][config]") {
  absl::StatusOr<InstanceConfig> config = ParseInstanceConfig(
      R"({"instance_id": "living", "connector_type": "yeelight",
          "update_interval": 2.5,
          "effect_type": "smooth",
          "connection": {"duration": 300, "effect_type": "sudden"},
          "devices": [
            {"device_id": "l1", "ip": "192.0.2.5", "port": "55443", "model": "color"},
            {"device_id": "l2", "enabled": false, "model": null}
          ],
          "groups": [{"group_id": "all", "devices": ["l1", "l2", "ghost"]}]})",
      "living", "");
  REQUIRE(config.ok());
  CHECK(config->instance_id == "living");
  CHECK(config->connector_type == "yeelight");
  CHECK(config->update_interval == absl::Milliseconds(2500));
  REQUIRE(config->devices.size() == 2);
  const DeviceConfig& l1 = config->devices[0];
  CHECK(l1.device_id == "l1");
  CHECK(l1.enabled);
  CHECK(l1.model == "color");
  CHECK(l1.entry.GetString("ip") == "192.0.2.5");
  CHECK(l1.entry.GetInt("port", 1) == 55443);  // Numeric string accepted.
  CHECK(l1.entry.GetInt("missing", 7) == 7);
  CHECK(l1.entry.GetString("port", "d") == "55443");
  CHECK_FALSE(config->devices[1].enabled);
  CHECK(config->devices[1].model.empty());
  CHECK(config->FindDevice("l2") == &config->devices[1]);
  CHECK(config->FindDevice("l3") == nullptr);
  REQUIRE(config->groups.size() == 1);
  CHECK(config->groups[0].devices ==
        std::vector<std::string>{"l1", "l2", "ghost"});
  CHECK(config->FindGroup("all") != nullptr);
  // Settings: top level first, then "connection".
  ConfigObject settings = config->settings();
  CHECK(settings.GetString("effect_type") == "smooth");
  CHECK(settings.GetInt("duration") == 300);
}

TEST_CASE("InstanceConfig: defaults", "[unit][config]") {
  absl::StatusOr<InstanceConfig> config = ParseInstanceConfig("{}", "x", "");
  REQUIRE(config.ok());
  CHECK(config->update_interval == absl::Seconds(10));
  CHECK(config->connector_type == "unknown");
  CHECK(config->devices.empty());
  CHECK(config->groups.empty());
  config = ParseInstanceConfig(R"({"update_interval": "15"})", "x", "demo");
  REQUIRE(config.ok());
  CHECK(config->connector_type == "demo");  // From CONNECTOR_TYPE.
  CHECK(config->update_interval == absl::Seconds(15));
}

TEST_CASE("InstanceConfig: every problem reported at once", "[unit][config]") {
  absl::StatusOr<InstanceConfig> config = ParseInstanceConfig(
      R"({"update_interval": 0.05,
          "devices": [
            {"device_id": "ok"},
            {"device_id": "ok"},
            {"device_id": "a/b"},
            {"device_id": "_instance"},
            {"name": "no id"},
            {"device_id": "e", "enabled": "yes"},
            7
          ],
          "groups": [{"group_id": "g", "devices": "ok"}, {"devices": []}]})",
      "x", "");
  REQUIRE(absl::IsInvalidArgument(config.status()));
  std::string message(config.status().message());
  for (const char* expected :
       {"update_interval=0.05 is below the minimum",
        "devices[1].device_id \"ok\" is repeated", "devices[2].device_id",
        "devices[3].device_id \"_instance\" is reserved",
        "devices[4].device_id must be a string",
        "devices[5].enabled must be a boolean", "devices[6] must be an object",
        "groups[0].devices must be an array", "groups[1].group_id"}) {
    INFO(message);
    CHECK(message.find(expected) != std::string::npos);
  }
  CHECK(absl::IsInvalidArgument(ParseInstanceConfig("[]", "x", "").status()));
  CHECK(absl::IsInvalidArgument(
      ParseInstanceConfig("{\"devices\": [", "x", "").status()));
  CHECK(absl::IsInvalidArgument(
      ParseInstanceConfig(R"({"update_interval": "soon"})", "x", "").status()));
}

TEST_CASE("InstanceConfig: path and loading", "[unit][config]") {
  CHECK(InstanceConfigPath(MapEnv(), "living") == "/app/instances/living.json");
  CHECK(InstanceConfigPath(MapEnv({{"IOT2MQTT_INSTANCE_FILE", "/x/y.json"}}),
                           "living") == "/x/y.json");

  absl::StatusOr<InstanceConfig> missing =
      LoadInstanceConfig("/nonexistent/i.json", "i", "");
  REQUIRE(absl::IsNotFound(missing.status()));
  CHECK(std::string(missing.status().message()).find("/nonexistent/i.json") !=
        std::string::npos);

  char name[] = "/tmp/iot2mqtt-instance-XXXXXX";
  int fd = mkstemp(name);
  REQUIRE(fd >= 0);
  close(fd);
  {
    std::ofstream out(name);
    out << "{\"devices\": [{\"device_id\": \"d\"}], oops}";
  }
  absl::StatusOr<InstanceConfig> malformed = LoadInstanceConfig(name, "i", "");
  REQUIRE(absl::IsInvalidArgument(malformed.status()));
  CHECK(std::string(malformed.status().message()).find(name) !=
        std::string::npos);
  {
    std::ofstream out(name);
    out << "{\"devices\": [{\"device_id\": \"d\"}]}";
  }
  absl::StatusOr<InstanceConfig> good = LoadInstanceConfig(name, "i", "");
  REQUIRE(good.ok());
  CHECK(good->devices.size() == 1);
  std::remove(name);
}

}  // namespace
}  // namespace iot2mqtt::sdk
