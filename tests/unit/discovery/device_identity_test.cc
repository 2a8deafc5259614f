// DeviceFromReport, DefaultInstanceId and InstanceDocumentFor: what a tool
// reports becomes a record with a stable id, and a record becomes the
// instance document that adds it.

#include "services/discovery/device_identity.h"

#include <string>

#include "catch2/catch.hpp"
#include "rapidjson/document.h"
#include "services/common/status.h"

namespace iot2mqtt::discovery {
namespace {

DiscoveredDevice Report(const std::string& json,
                        const std::string& integration = "yeelight") {
  absl::StatusOr<DiscoveredDevice> device = DeviceFromReport(integration, json);
  INFO(json << " -> " << device.status().ToString());
  REQUIRE(device.ok());
  return *device;
}

std::string ReasonOfReport(const std::string& json) {
  absl::StatusOr<DiscoveredDevice> device = DeviceFromReport("yeelight", json);
  REQUIRE_FALSE(device.ok());
  CHECK(device.status().code() == absl::StatusCode::kInvalidArgument);
  return common::ReasonOf(device.status());
}

rapidjson::Document Parse(const std::string& json) {
  rapidjson::Document doc;
  doc.Parse(json.c_str());
  INFO(json);
  REQUIRE_FALSE(doc.HasParseError());
  REQUIRE(doc.IsObject());
  return doc;
}

std::string Str(const rapidjson::Value& value) {
  REQUIRE(value.IsString());
  return std::string(value.GetString(), value.GetStringLength());
}

TEST_CASE("the id comes from the MAC's hex digits, lower case") {
  DiscoveredDevice device =
      Report(R"({"mac":"aa:bb:CC:dd:EE:ff","serial":"S1","ip":"192.0.2.7",)"
             R"("port":55443})");
  CHECK(device.id() == "yeelight_aabbccddeeff");
  CHECK(device.mac() == "aa:bb:CC:dd:EE:ff");
  CHECK(device.serial() == "S1");
  CHECK(device.integration() == "yeelight");
  CHECK(device.ip() == "192.0.2.7");
  CHECK(device.port() == 55443);
  // Other separators give the same id.
  CHECK(Report(R"({"mac":"AA-BB-CC-DD-EE-FF"})").id() ==
        "yeelight_aabbccddeeff");
}

TEST_CASE("without a MAC the serial, id or device_id is the key") {
  CHECK(Report(R"({"serial":"SN-0042","ip":"192.0.2.7"})").id() ==
        "yeelight_sn-0042");

  DiscoveredDevice bulb = Report(
      R"({"device_id":"0x0000000002dfb19a","ip":"192.0.2.7","port":55443})");
  CHECK(bulb.id() == "yeelight_0x0000000002dfb19a");
  CHECK(bulb.device_id() == "0x0000000002dfb19a");
  CHECK(bulb.serial() == "0x0000000002dfb19a");

  DiscoveredDevice by_id = Report(R"({"id":"Lamp.7","ip":"192.0.2.7"})");
  CHECK(by_id.id() == "yeelight_lamp_7");
  CHECK(by_id.device_id() == "Lamp.7");

  // A numeric id counts as well.
  CHECK(Report(R"({"id":12345})").id() == "yeelight_12345");

  // An explicit serial wins over the device's own id for the key.
  DiscoveredDevice both = Report(R"({"serial":"abc","device_id":"xyz"})");
  CHECK(both.id() == "yeelight_abc");
  CHECK(both.device_id() == "xyz");
  CHECK(both.serial() == "abc");
}

TEST_CASE("without identity the address is the key") {
  CHECK(Report(R"({"ip":"192.0.2.7","port":55443})").id() ==
        "yeelight_192_0_2_7_55443");
  CHECK(Report(R"({"ip":"192.0.2.7"})").id() == "yeelight_192_0_2_7");
  DiscoveredDevice host = Report(R"({"host":"Bulb.Example","port":"8080"})");
  CHECK(host.id() == "yeelight_bulb_example_8080");
  CHECK(host.ip() == "Bulb.Example");
  CHECK(host.port() == 8080);
  // An empty MAC is no identity.
  CHECK(Report(R"({"mac":"","ip":"192.0.2.9"})").id() == "yeelight_192_0_2_9");
}

TEST_CASE("ids are normalised and cut to 128 characters") {
  DiscoveredDevice odd = Report(R"({"serial":"A B/C\u00e9:d"})");
  CHECK(odd.id() == "yeelight_a_b_c___d");  // é is two bytes.
  CHECK(IsValidDeviceId(odd.id()));

  DiscoveredDevice long_one =
      Report(R"({"serial":")" + std::string(300, 'x') + R"("})");
  CHECK(long_one.id().size() == 128);
  CHECK(long_one.id().rfind("yeelight_xxx", 0) == 0);
  CHECK(IsValidDeviceId(long_one.id()));
}

TEST_CASE("reports that are no device are INVALID_DEVICE") {
  CHECK(ReasonOfReport("[1,2]") == "INVALID_DEVICE");
  CHECK(ReasonOfReport("\"bulb\"") == "INVALID_DEVICE");
  CHECK(ReasonOfReport("{not json") == "INVALID_DEVICE");
  CHECK(ReasonOfReport("") == "INVALID_DEVICE");
  CHECK(ReasonOfReport(R"({"name":"Lamp","model":"color"})") ==
        "INVALID_DEVICE");
  CHECK(ReasonOfReport(R"({"mac":"zz:zz","ip":""})") == "INVALID_DEVICE");
  CHECK(ReasonOfReport(R"({"ip":42})") == "INVALID_DEVICE");
  // The integration is part of the id: an unusable one fails too.
  CHECK_FALSE(DeviceFromReport("", R"({"serial":"a"})").ok());
}

TEST_CASE("fields are mapped, unknown keys are kept as attributes") {
  DiscoveredDevice device = Report(
      R"({"device_id":"0x1","ip":"192.0.2.7","port":"55443",)"
      R"("friendly_name":"Desk","model":"color","manufacturer":"Yeelight",)"
      R"("capabilities":{"power":true,"rgb":true},"fw_ver":"18",)"
      R"("support":["get_prop","set_power"],"ssid":null,)"
      R"("big":12345678901234567890})");
  CHECK(device.name() == "Desk");
  CHECK(device.model() == "color");
  CHECK(device.manufacturer() == "Yeelight");
  CHECK(device.port() == 55443);
  CHECK(device.capabilities() == R"({"power":true,"rgb":true})");
  rapidjson::Document attributes = Parse(device.attributes());
  CHECK(attributes.MemberCount() == 4);
  CHECK(Str(attributes["fw_ver"]) == "18");
  CHECK(attributes["support"].Size() == 2);
  CHECK(attributes["ssid"].IsNull());
  // Numbers keep their exact text.
  CHECK(device.attributes().find("12345678901234567890") != std::string::npos);

  // `name` wins over `friendly_name`; no unknown keys, no attributes.
  DiscoveredDevice named =
      Report(R"({"ip":"192.0.2.7","name":"A","friendly_name":"B"})");
  CHECK(named.name() == "A");
  CHECK(named.attributes().empty());

  // A port that is no port is kept as an attribute, not used.
  DiscoveredDevice bad_port = Report(R"({"ip":"192.0.2.7","port":"http"})");
  CHECK(bad_port.port() == 0);
  CHECK(bad_port.id() == "yeelight_192_0_2_7");
  CHECK(Str(Parse(bad_port.attributes())["port"]) == "http");
  CHECK(Report(R"({"ip":"192.0.2.7","port":70000})").port() == 0);
}

TEST_CASE("the default instance id is valid and ends with the key") {
  DiscoveredDevice bulb =
      Report(R"({"device_id":"0x0000000002dfb19a","ip":"192.0.2.7"})");
  CHECK(DefaultInstanceId(bulb) == "yeelight_000002dfb19a");

  DiscoveredDevice short_key = Report(R"({"serial":"ab"})");
  CHECK(DefaultInstanceId(short_key) == "yeelight_ab");

  // A long integration name still gives at most 63 characters.
  const std::string integration(63, 'z');
  DiscoveredDevice long_integration =
      Report(R"({"mac":"aa:bb:cc:dd:ee:ff"})", integration);
  const std::string id = DefaultInstanceId(long_integration);
  CHECK(id.size() <= 63);
  CHECK(id.substr(id.size() - 13) == "_aabbccddeeff");
  for (const DiscoveredDevice& device : {bulb, short_key, long_integration}) {
    const std::string instance = DefaultInstanceId(device);
    INFO(instance);
    CHECK(IsValidDeviceId(instance));
    CHECK(instance.size() <= 63);
  }
}

TEST_CASE("the instance document adds the device as the only device") {
  DiscoveredDevice bulb =
      Report(R"({"device_id":"0x1a","ip":"192.0.2.7","port":55443,)"
             R"("friendly_name":"Desk","model":"color",)"
             R"("capabilities":{"power":true}})");
  absl::StatusOr<std::string> text = InstanceDocumentFor(
      bulb, "desk_lamp", "", R"({"effect_type":"smooth","duration":300})");
  REQUIRE(text.ok());
  rapidjson::Document doc = Parse(*text);
  CHECK(Str(doc["instance_id"]) == "desk_lamp");
  CHECK(Str(doc["connector_type"]) == "yeelight");
  CHECK(Str(doc["friendly_name"]) == "Desk");
  CHECK(doc["enabled"].GetBool());
  CHECK(doc["update_interval"].GetInt() == 10);
  // `config` (stored as the document's `connection`): the device's address
  // plus the caller's settings.
  CHECK_FALSE(doc.HasMember("connection"));
  CHECK(Str(doc["config"]["ip"]) == "192.0.2.7");
  CHECK(doc["config"]["port"].GetInt() == 55443);
  CHECK(Str(doc["config"]["effect_type"]) == "smooth");
  CHECK(doc["config"]["duration"].GetInt() == 300);
  REQUIRE(doc["devices"].IsArray());
  REQUIRE(doc["devices"].Size() == 1);
  const rapidjson::Value& entry = doc["devices"][0];
  CHECK(Str(entry["device_id"]) == "0x1a");
  CHECK(Str(entry["global_id"]) == "desk_lamp_0x1a");
  CHECK(Str(entry["name"]) == "Desk");
  CHECK(Str(entry["friendly_name"]) == "Desk");
  CHECK(Str(entry["ip"]) == "192.0.2.7");
  CHECK(entry["port"].GetInt() == 55443);
  CHECK(Str(entry["model"]) == "color");
  CHECK(entry["enabled"].GetBool());
  CHECK(entry["capabilities"]["power"].GetBool());
}

TEST_CASE("the caller's config wins over the device's address") {
  DiscoveredDevice bulb = Report(R"({"ip":"192.0.2.7","port":55443})");
  absl::StatusOr<std::string> text =
      InstanceDocumentFor(bulb, "lamp", "", R"({"port":1234,"mode":"x"})");
  REQUIRE(text.ok());
  rapidjson::Document doc = Parse(*text);
  CHECK(Str(doc["config"]["ip"]) == "192.0.2.7");
  CHECK(doc["config"]["port"].GetInt() == 1234);
  CHECK(Str(doc["config"]["mode"]) == "x");
  CHECK(doc["config"].MemberCount() == 3);
}

TEST_CASE("the instance document falls back to the record's own fields") {
  DiscoveredDevice bare = Report(R"({"ip":"192.0.2.8"})", "demo");
  for (const char* config : {"", "null", "  "}) {
    absl::StatusOr<std::string> text =
        InstanceDocumentFor(bare, "", "Porch", config);
    REQUIRE(text.ok());
    rapidjson::Document doc = Parse(*text);
    CHECK(Str(doc["instance_id"]) == DefaultInstanceId(bare));
    CHECK(Str(doc["friendly_name"]) == "Porch");
    CHECK(doc["config"].IsObject());
    CHECK(Str(doc["config"]["ip"]) == "192.0.2.8");
    CHECK(doc["config"].MemberCount() == 1);
    const rapidjson::Value& entry = doc["devices"][0];
    // No device id of its own: the record id is used.
    CHECK(Str(entry["device_id"]) == bare.id());
    CHECK(Str(entry["global_id"]) == DefaultInstanceId(bare) + "_" + bare.id());
    CHECK(Str(entry["model"]) == "unknown");
    CHECK_FALSE(entry.HasMember("port"));
    CHECK_FALSE(doc["config"].HasMember("port"));
  }
}

TEST_CASE("a config that is no JSON object is INVALID_CONFIG") {
  DiscoveredDevice bulb = Report(R"({"ip":"192.0.2.7"})");
  for (const char* config : {"[1]", "\"x\"", "42", "{bad", "{} {}"}) {
    absl::StatusOr<std::string> text =
        InstanceDocumentFor(bulb, "lamp", "", config);
    INFO(config);
    REQUIRE_FALSE(text.ok());
    CHECK(text.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(common::ReasonOf(text.status()) == "INVALID_CONFIG");
  }
  absl::StatusOr<std::string> bad_id =
      InstanceDocumentFor(bulb, "../etc", "", "");
  REQUIRE_FALSE(bad_id.ok());
  CHECK(common::ReasonOf(bad_id.status()) == "INVALID_INSTANCE_ID");
}

TEST_CASE("IsValidDeviceId follows the pattern") {
  CHECK(IsValidDeviceId("yeelight_abc-1"));
  CHECK(IsValidDeviceId("a"));
  CHECK(IsValidDeviceId(std::string(128, 'a')));
  CHECK_FALSE(IsValidDeviceId(std::string(129, 'a')));
  CHECK_FALSE(IsValidDeviceId(""));
  CHECK_FALSE(IsValidDeviceId("_a"));
  CHECK_FALSE(IsValidDeviceId("A"));
  CHECK_FALSE(IsValidDeviceId("a/b"));
}

}  // namespace
}  // namespace iot2mqtt::discovery
