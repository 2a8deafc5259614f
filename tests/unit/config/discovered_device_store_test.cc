#include "services/config/discovered_device_store.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "catch2/catch.hpp"
#include "iot2mqtt/sdk/json.h"
#include "rapidjson/document.h"
#include "services/common/status.h"
#include "services/config/instance_store.h"
#include "tests/support/captured_log.h"
#include "tests/support/test_support.h"
#include "tests/unit/config/config_test_util.h"

namespace iot2mqtt::config {
namespace {

using ::iot2mqtt::testing::CapturedLog;
using ::iot2mqtt::testing::ListDir;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::TempDir;
using ::iot2mqtt::testing::WriteFile;

// "2026-01-01T00:00:01.000000Z", "...02...", ...: one tick per call.
class FakeClock {
 public:
  std::string operator()() {
    ++ticks_;
    return Time(ticks_);
  }
  static std::string Time(int tick) {
    return absl::StrFormat("2026-01-01T00:%02d:%02d.000000Z", tick / 60,
                           tick % 60);
  }
  int ticks() const { return ticks_; }

 private:
  int ticks_ = 0;
};

// A store over `dir` whose clock is `clock`.
DiscoveredDeviceStoreOptions Options(const TempDir& dir, FakeClock* clock) {
  DiscoveredDeviceStoreOptions options;
  options.data_dir = dir.path();
  options.clock = [clock] { return (*clock)(); };
  return options;
}

DiscoveredDevice Device(const std::string& id, const std::string& name = "",
                        const std::string& ip = "", int port = 0) {
  DiscoveredDevice device;
  device.set_id(id);
  device.set_name(name);
  device.set_ip(ip);
  device.set_port(port);
  return device;
}

std::string FilePath(const TempDir& dir) {
  return dir.Join(kDiscoveredDevicesFile);
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

rapidjson::Document ParseFile(const std::string& path) {
  const std::string text = ReadFile(path);
  rapidjson::Document doc;
  doc.Parse(text.c_str(), text.size());
  INFO(text);
  REQUIRE_FALSE(doc.HasParseError());
  REQUIRE(doc.IsObject());
  return doc;
}

// The members of a JSON object sorted by key, values as compact exact text.
std::vector<std::pair<std::string, std::string>> SortedMembers(
    const std::string& json) {
  absl::StatusOr<std::vector<sdk::JsonMember>> members =
      sdk::SplitJsonObject(json);
  INFO(json);
  REQUIRE(members.ok());
  std::vector<std::pair<std::string, std::string>> sorted;
  for (sdk::JsonMember& member : *members) {
    sorted.emplace_back(std::move(member.key), std::move(member.value));
  }
  std::sort(sorted.begin(), sorted.end());
  return sorted;
}

// The records of the file, each as compact JSON text.
std::vector<std::string> FileRecords(const std::string& path) {
  absl::StatusOr<std::vector<sdk::JsonMember>> top =
      sdk::SplitJsonObject(ReadFile(path));
  REQUIRE(top.ok());
  std::vector<std::string> records;
  for (const sdk::JsonMember& member : *top) {
    if (member.key != "devices") continue;
    rapidjson::Document doc;
    doc.Parse(member.value.c_str(), member.value.size());
    REQUIRE(doc.IsArray());
    for (const rapidjson::Value& record : doc.GetArray()) {
      REQUIRE(record.IsObject());
      REQUIRE(record.HasMember("id"));
      records.push_back(record["id"].GetString());
    }
  }
  return records;
}

const DiscoveredDevice* FindIn(const std::vector<DiscoveredDevice>& devices,
                               const std::string& id) {
  for (const DiscoveredDevice& device : devices) {
    if (device.id() == id) return &device;
  }
  return nullptr;
}

TEST_CASE("DiscoveredDeviceStore: no file is an empty list, never created",
          "[config][discovery]") {
  TempDir dir;
  FakeClock clock;
  DiscoveredDeviceStore store(Options(dir, &clock));
  auto listing = store.List();
  REQUIRE(listing.ok());
  CHECK(listing->devices.empty());
  CHECK(listing->last_scan.empty());
  // Nothing reported, scan not completed: nothing to write.
  auto recorded = store.Record("yeelight", {}, false);
  REQUIRE(recorded.ok());
  CHECK_FALSE(recorded->changed);
  CHECK(ListDir(dir.path()).empty());
}

TEST_CASE(
    "DiscoveredDeviceStore: new devices are appended in upstream's flat "
    "format",
    "[config][discovery]") {
  TempDir dir;
  FakeClock clock;
  DiscoveredDeviceStore store(Options(dir, &clock));
  DiscoveredDevice lamp =
      Device("yeelight_0x2dfb19a", "Desk lamp", "192.0.2.20", 55443);
  lamp.set_model("color");
  lamp.set_manufacturer("Yeelight");
  lamp.set_capabilities(R"({"power":true,"color_temp_range":{"min":1700}})");
  lamp.set_attributes(R"({"fw_ver":"18","support":["get_prop","set_power"]})");
  lamp.set_device_id("0x0000000002dfb19a");
  // Bookkeeping in a report is ignored.
  lamp.set_added(true);
  lamp.set_instance_id("sneaky");
  lamp.set_discovered_at("1999-01-01T00:00:00Z");
  lamp.set_integration("other");
  DiscoveredDevice bare = Device("yeelight_192_0_2_21");

  auto recorded = store.Record("yeelight", {lamp, bare}, false);
  INFO(recorded.status().ToString());
  REQUIRE(recorded.ok());
  CHECK(recorded->changed);
  CHECK(recorded->new_devices == 2);
  CHECK(recorded->single_device_id.empty());
  REQUIRE(recorded->devices.size() == 2);
  const DiscoveredDevice& stored = recorded->devices[0];
  CHECK(stored.id() == lamp.id());
  CHECK(stored.integration() == "yeelight");
  CHECK(stored.discovered_at() == FakeClock::Time(1));
  CHECK(stored.last_seen() == FakeClock::Time(1));
  CHECK_FALSE(stored.added());
  CHECK(stored.instance_id().empty());
  CHECK(stored.added_at().empty());
  CHECK(recorded->devices[1].id() == bare.id());

  rapidjson::Document file = ParseFile(FilePath(dir));
  CHECK(file["last_scan"].IsNull());
  REQUIRE(file["devices"].IsArray());
  REQUIRE(file["devices"].Size() == 2);
  const rapidjson::Value& first = file["devices"][0];
  CHECK(std::string(first["id"].GetString()) == lamp.id());
  CHECK(first["port"].IsInt());
  CHECK(first["port"].GetInt() == 55443);
  CHECK(std::string(first["fw_ver"].GetString()) == "18");  // Flattened.
  CHECK(first["support"].IsArray());
  CHECK(first["capabilities"]["color_temp_range"]["min"].GetInt() == 1700);
  CHECK_FALSE(first.HasMember("attributes"));
  CHECK(first["added"].IsFalse());
  CHECK(std::string(first["integration"].GetString()) == "yeelight");
  const rapidjson::Value& second = file["devices"][1];
  // Required keys always, empty optional ones never.
  for (const char* key :
       {"id", "name", "integration", "discovered_at", "added"}) {
    INFO(key);
    CHECK(second.HasMember(key));
  }
  for (const char* key : {"ip", "port", "model", "capabilities", "added_at",
                          "instance_id", "mac", "serial", "device_id"}) {
    INFO(key);
    CHECK_FALSE(second.HasMember(key));
  }

  struct stat st;
  REQUIRE(stat(FilePath(dir).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  for (const std::string& name : ListDir(dir.path())) {
    CHECK_FALSE(absl::StrContains(name, ".tmp"));
  }

  // What List returns is what Record returned.
  auto listing = store.List();
  REQUIRE(listing.ok());
  REQUIRE(listing->devices.size() == 2);
  CHECK(listing->devices[0].SerializeAsString() == stored.SerializeAsString());
  CHECK(listing->devices[0].attributes() ==
        R"({"fw_ver":"18","support":["get_prop","set_power"]})");
}

TEST_CASE(
    "DiscoveredDeviceStore: a rescan keeps added, added_at, instance_id and "
    "discovered_at",
    "[config][discovery]") {
  TempDir dir;
  FakeClock clock;
  DiscoveredDeviceStore store(Options(dir, &clock));
  DiscoveredDevice lamp = Device("yeelight_lamp", "Lamp", "192.0.2.20", 55443);
  lamp.set_model("mono");
  lamp.set_attributes(R"({"fw_ver":"18","device_type":"mono"})");
  REQUIRE(store.Record("yeelight", {lamp}, false).ok());  // t1

  auto marked = store.MarkAdded("yeelight_lamp", "living_room");  // t2
  REQUIRE(marked.ok());
  CHECK(marked->added());
  CHECK(marked->added_at() == FakeClock::Time(2));
  CHECK(marked->instance_id() == "living_room");
  CHECK(marked->discovered_at() == FakeClock::Time(1));

  // The rescan reports a new name, a new firmware, no ip and no model.
  DiscoveredDevice again = Device("yeelight_lamp", "Lamp (renamed)");
  again.set_attributes(R"({"fw_ver":"19","rssi":-40})");
  auto recorded = store.Record("yeelight", {again}, true);  // t3
  REQUIRE(recorded.ok());
  CHECK(recorded->new_devices == 0);
  CHECK(recorded->single_device_id == "yeelight_lamp");
  REQUIRE(recorded->devices.size() == 1);

  auto listing = store.List();
  REQUIRE(listing.ok());
  REQUIRE(listing->devices.size() == 1);
  const DiscoveredDevice& stored = listing->devices[0];
  CHECK(stored.SerializeAsString() == recorded->devices[0].SerializeAsString());
  CHECK(stored.added());  // Upstream's rescan reset this to false.
  CHECK(stored.added_at() == FakeClock::Time(2));
  CHECK(stored.instance_id() == "living_room");
  CHECK(stored.discovered_at() == FakeClock::Time(1));
  CHECK(stored.last_seen() == FakeClock::Time(3));
  CHECK(stored.name() == "Lamp (renamed)");
  CHECK(stored.ip() == "192.0.2.20");  // Not reported: kept.
  CHECK(stored.port() == 55443);
  CHECK(stored.model() == "mono");
  CHECK(SortedMembers(stored.attributes()) ==
        SortedMembers(R"({"fw_ver":"19","device_type":"mono","rssi":-40})"));
  CHECK(listing->last_scan == FakeClock::Time(3));
}

TEST_CASE("DiscoveredDeviceStore: last_scan is set only by a completed scan",
          "[config][discovery]") {
  TempDir dir;
  FakeClock clock;
  DiscoveredDeviceStore store(Options(dir, &clock));
  REQUIRE(store.Record("yeelight", {Device("yeelight_a")}, false).ok());  // t1
  CHECK(store.List()->last_scan.empty());
  CHECK(ParseFile(FilePath(dir))["last_scan"].IsNull());

  // A completed scan that found nothing still completed.
  auto empty_scan = store.Record("yeelight", {}, true);  // t2
  REQUIRE(empty_scan.ok());
  CHECK(empty_scan->changed);
  CHECK(store.List()->last_scan == FakeClock::Time(2));

  REQUIRE(store.Record("yeelight", {Device("yeelight_b")}, false).ok());  // t3
  CHECK(store.List()->last_scan == FakeClock::Time(2));
  CHECK(std::string(ParseFile(FilePath(dir))["last_scan"].GetString()) ==
        FakeClock::Time(2));
  REQUIRE(store.Record("yeelight", {Device("yeelight_b")}, true).ok());  // t4
  CHECK(store.List()->last_scan == FakeClock::Time(4));
}

TEST_CASE(
    "DiscoveredDeviceStore: a file written by upstream is read without loss "
    "and written back readable",
    "[config][discovery]") {
  TempDir dir;
  FakeClock clock;
  // What upstream's yeelight discovery merged into the file (§7.1), with
  // an exact big number and a float that must keep their text.
  const std::string yeelight_record = R"({
      "id": "yeelight_192_0_2_20", "name": "Yeelight color", "ip": "192.0.2.20",
      "port": 55443, "model": "color", "fw_ver": "18",
      "support": ["get_prop", "set_default", "set_power"],
      "integration": "yeelight", "manufacturer": "Yeelight",
      "capabilities": {"power": true, "brightness_range": {"min": 1, "max": 100},
                       "color_temp_range": {"min": 1700, "max": 6500}},
      "device_type": "color", "discovered_at": "2025-03-01T10:00:00.123456",
      "added": true, "added_at": "2025-03-01T10:05:00", "ratio": 0.1,
      "token": 123456789012345678901234567890, "optional_null": null})";
  const std::string manual_record = R"({
      "id": "demo_192_0_2_30", "name": "Manual", "integration": "demo",
      "ip": "192.0.2.30", "port": null, "discovered_at": "2025-03-02T08:00:00",
      "added": false})";
  WriteFile(
      FilePath(dir),
      absl::StrCat(R"({"devices": [)", yeelight_record, ",", manual_record,
                   R"(], "last_scan": "2025-03-01T10:00:01", )",
                   R"("schema_note": {"kept": [1, 2]}})"));
  DiscoveredDeviceStore store(Options(dir, &clock));

  auto listing = store.List();
  INFO(listing.status().ToString());
  REQUIRE(listing.ok());
  REQUIRE(listing->devices.size() == 2);
  CHECK(listing->last_scan == "2025-03-01T10:00:01");
  const DiscoveredDevice& lamp = listing->devices[0];
  CHECK(lamp.port() == 55443);
  CHECK(lamp.added());
  CHECK(lamp.added_at() == "2025-03-01T10:05:00");
  CHECK(SortedMembers(lamp.capabilities()) ==
        SortedMembers(R"({"power": true, "brightness_range": {"min": 1,
            "max": 100}, "color_temp_range": {"min": 1700, "max": 6500}})"));
  CHECK(SortedMembers(lamp.attributes()) ==
        SortedMembers(R"({"fw_ver": "18", "support": ["get_prop",
            "set_default", "set_power"], "device_type": "color", "ratio": 0.1,
            "token": 123456789012345678901234567890, "optional_null": null})"));
  CHECK(listing->devices[1].port() == 0);  // null: not set.

  // Filtered by integration.
  auto demo = store.List("demo");
  REQUIRE(demo.ok());
  REQUIRE(demo->devices.size() == 1);
  CHECK(demo->devices[0].id() == "demo_192_0_2_30");

  // A write (of another record) keeps the upstream record member for member
  // (the null port is left out), the other top-level key and last_scan.
  REQUIRE(store.Record("demo", {Device("demo_new")}, false).ok());
  absl::StatusOr<std::vector<sdk::JsonMember>> top =
      sdk::SplitJsonObject(ReadFile(FilePath(dir)));
  REQUIRE(top.ok());
  std::string devices_json;
  for (const sdk::JsonMember& member : *top) {
    if (member.key == "devices") devices_json = member.value;
    if (member.key == "last_scan") {
      CHECK(member.value == R"("2025-03-01T10:00:01")");
    }
    if (member.key == "schema_note") CHECK(member.value == R"({"kept":[1,2]})");
  }
  REQUIRE(absl::StartsWith(devices_json, "["));
  // The first record's compact text starts right after "[" and ends where
  // the second begins.
  const size_t end = devices_json.find(",{\"id\":\"demo_192_0_2_30\"");
  REQUIRE(end != std::string::npos);
  CHECK(SortedMembers(devices_json.substr(1, end - 1)) ==
        SortedMembers(yeelight_record));
  CHECK(FileRecords(FilePath(dir)) ==
        std::vector<std::string>{"yeelight_192_0_2_20", "demo_192_0_2_30",
                                 "demo_new"});
}

TEST_CASE(
    "DiscoveredDeviceStore: a bad record is skipped and logged, never fatal",
    "[config][discovery]") {
  TempDir dir;
  FakeClock clock;
  WriteFile(FilePath(dir), R"({"devices": [
      42,
      {"name": "no id", "integration": "demo"},
      {"id": "Not Valid!", "name": "bad id"},
      {"id": 7},
      {"id": "demo_ok", "name": "fine", "port": "55443", "added": "yes",
       "capabilities": [1], "integration": "demo"},
      {"id": "demo_ok", "name": "a duplicate"},
      {"id": "demo_second"}
    ], "last_scan": null})");
  DiscoveredDeviceStore store(Options(dir, &clock));
  CapturedLog log;
  auto listing = store.List();
  INFO(listing.status().ToString());
  REQUIRE(listing.ok());
  REQUIRE(listing->devices.size() == 2);
  const DiscoveredDevice& ok = listing->devices[0];
  CHECK(ok.id() == "demo_ok");
  CHECK(ok.name() == "fine");
  CHECK(ok.port() == 0);             // A string: dropped.
  CHECK_FALSE(ok.added());           // Not a boolean: dropped.
  CHECK(ok.capabilities().empty());  // Not an object: dropped.
  CHECK(ok.attributes().empty());    // Typed names never become attributes.
  CHECK(listing->devices[1].id() == "demo_second");
  CHECK(listing->devices[1].name().empty());
  CHECK(listing->last_scan.empty());

  const int warnings = log.Count("\"WARNING\"");
  CHECK(warnings >= 5);  // 42, no id, bad id, id 7, duplicate, fields.
  CHECK(log.Count("record 0 skipped") == 1);
  CHECK(log.Count("appears earlier") == 1);
  // Logged once per file content, not on every listing.
  REQUIRE(store.List().ok());
  REQUIRE(store.List("demo").ok());
  CHECK(log.Count("\"WARNING\"") == warnings);

  // The skipped records do not block writes; the next write drops them.
  REQUIRE(store.Delete("demo_second").ok());
  CHECK(FileRecords(FilePath(dir)) == std::vector<std::string>{"demo_ok"});
}

TEST_CASE(
    "DiscoveredDeviceStore: an unusable file is STORE_CORRUPT and is never "
    "overwritten",
    "[config][discovery]") {
  TempDir dir;
  FakeClock clock;
  DiscoveredDeviceStore store(Options(dir, &clock));
  const std::string content =
      GENERATE(std::string("{\"devices\": [ {\"id\": \"a\" "),
               std::string("[]"), std::string("{\"devices\": {\"id\": \"a\"}}"),
               std::string(""), std::string("{\"devices\": \"none\"}"));
  INFO(content);
  WriteFile(FilePath(dir), content);

  RequireError(store.List().status(), absl::StatusCode::kFailedPrecondition,
               kStoreCorrupt);
  auto info = common::GetErrorInfo(store.List().status());
  REQUIRE(info.has_value());
  CHECK(info->metadata().at("path") == FilePath(dir));
  RequireError(store.Record("demo", {Device("demo_a")}, true).status(),
               absl::StatusCode::kFailedPrecondition, kStoreCorrupt);
  RequireError(store.MarkAdded("demo_a", "demo1").status(),
               absl::StatusCode::kFailedPrecondition, kStoreCorrupt);
  RequireError(store.Delete("demo_a"), absl::StatusCode::kFailedPrecondition,
               kStoreCorrupt);
  CHECK(ReadFile(FilePath(dir)) == content);
}

TEST_CASE(
    "DiscoveredDeviceStore: an invalid request is rejected and changes "
    "nothing on disk",
    "[config][discovery]") {
  TempDir dir;
  FakeClock clock;
  DiscoveredDeviceStore store(Options(dir, &clock));
  REQUIRE(
      store.Record("yeelight", {Device("yeelight_a", "A", "192.0.2.1")}, true)
          .ok());
  const std::string before = ReadFile(FilePath(dir));

  const DiscoveredDevice good = Device("yeelight_good", "Good");
  auto with = [&good](DiscoveredDevice bad) {
    return std::vector<DiscoveredDevice>{good, std::move(bad)};
  };
  auto check = [&](const absl::Status& status, absl::StatusCode code,
                   const std::string& reason) {
    RequireError(status, code, reason);
    CHECK(ReadFile(FilePath(dir)) == before);
  };
  SECTION("integration") {
    for (const char* name : {"", "Yeelight", "-x", "a/b", "../x"}) {
      INFO(name);
      check(store.Record(name, {good}, true).status(),
            absl::StatusCode::kInvalidArgument, kInvalidConnectorName);
    }
    check(store.List("Bad Name").status(), absl::StatusCode::kInvalidArgument,
          kInvalidConnectorName);
  }
  SECTION("device id") {
    std::string too_long(129, 'a');
    for (const std::string& id :
         {std::string(""), std::string("UPPER"), std::string("_x"),
          std::string("a.b"), std::string("a/b"), too_long}) {
      INFO(id);
      check(store.Record("yeelight", with(Device(id)), false).status(),
            absl::StatusCode::kInvalidArgument, kInvalidDeviceId);
    }
    auto status = store.Record("yeelight", with(Device("Bad")), false).status();
    auto info = common::GetErrorInfo(status);
    REQUIRE(info.has_value());
    CHECK(info->metadata().at("index") == "1");
    CHECK(store.Record("yeelight", {Device(std::string(128, 'a'))}, false)
              .ok());  // The longest valid id.
  }
  SECTION("fields") {
    DiscoveredDevice device = Device("yeelight_bad");
    SECTION("capabilities not an object") { device.set_capabilities("[1,2]"); }
    SECTION("capabilities not JSON") { device.set_capabilities("{power"); }
    SECTION("attributes a string") { device.set_attributes("\"fw 18\""); }
    SECTION("attributes too large") {
      device.set_attributes(absl::StrCat(
          R"({"blob":")",
          std::string(DiscoveredDeviceStore::kMaxJsonBytes, 'x'), R"("})"));
    }
    SECTION("a string field too long") {
      device.set_model(
          std::string(DiscoveredDeviceStore::kMaxStringBytes + 1, 'm'));
    }
    SECTION("port above 65535") { device.set_port(65536); }
    SECTION("negative port") { device.set_port(-1); }
    check(store.Record("yeelight", with(device), false).status(),
          absl::StatusCode::kInvalidArgument, kInvalidDevice);
  }
  SECTION("instance id of MarkAdded") {
    for (const char* id : {"", "Living Room", "../x"}) {
      INFO(id);
      check(store.MarkAdded("yeelight_a", id).status(),
            absl::StatusCode::kInvalidArgument, kInvalidInstanceId);
    }
    check(store.MarkAdded("Bad Id", "room").status(),
          absl::StatusCode::kInvalidArgument, kInvalidDeviceId);
    check(store.Delete("../a"), absl::StatusCode::kInvalidArgument,
          kInvalidDeviceId);
  }
}

TEST_CASE("DiscoveredDeviceStore: null and empty JSON fields are accepted",
          "[config][discovery]") {
  TempDir dir;
  FakeClock clock;
  DiscoveredDeviceStore store(Options(dir, &clock));
  DiscoveredDevice device = Device("demo_a");
  device.set_capabilities("null");
  // Typed fields own their names: attribute copies of them are ignored.
  device.set_attributes(R"({"integration":"elsewhere","ip":"x","fw":1})");
  auto recorded = store.Record("demo", {device}, false);
  INFO(recorded.status().ToString());
  REQUIRE(recorded.ok());
  CHECK(recorded->devices[0].capabilities().empty());
  CHECK(recorded->devices[0].attributes() == R"({"fw":1})");
  rapidjson::Document file = ParseFile(FilePath(dir));
  CHECK(std::string(file["devices"][0]["integration"].GetString()) == "demo");
  CHECK_FALSE(file["devices"][0].HasMember("ip"));
  CHECK(store.List()->devices[0].SerializeAsString() ==
        recorded->devices[0].SerializeAsString());
}

TEST_CASE("DiscoveredDeviceStore: request and store limits",
          "[config][discovery]") {
  TempDir dir;
  FakeClock clock;
  SECTION("at most 1000 devices per request") {
    DiscoveredDeviceStore store(Options(dir, &clock));
    std::vector<DiscoveredDevice> devices;
    for (int i = 0; i < 1001; ++i) {
      devices.push_back(Device(absl::StrCat("demo_", i)));
    }
    RequireError(store.Record("demo", devices, true).status(),
                 absl::StatusCode::kResourceExhausted,
                 kTooManyDiscoveredDevices);
    CHECK_FALSE(Exists(FilePath(dir)));
    devices.pop_back();
    auto recorded = store.Record("demo", devices, true);
    REQUIRE(recorded.ok());
    CHECK(recorded->new_devices == 1000);
    CHECK(store.List()->devices.size() == 1000);
  }
  SECTION("at most 10000 devices in the store") {
    // A full store, as another writer left it.
    std::string records;
    for (int i = 0; i < 10000; ++i) {
      absl::StrAppend(&records, i > 0 ? "," : "",
                      absl::StrFormat(R"({"id":"demo_%d","name":"",)"
                                      R"("integration":"demo",)"
                                      R"("discovered_at":"","added":false})",
                                      i));
    }
    WriteFile(FilePath(dir), absl::StrCat(R"({"devices":[)", records,
                                          R"(],"last_scan":null})"));
    const std::string before = ReadFile(FilePath(dir));
    DiscoveredDeviceStore store(Options(dir, &clock));
    auto status =
        store.Record("demo", {Device("demo_5"), Device("demo_new")}, true)
            .status();
    RequireError(status, absl::StatusCode::kResourceExhausted,
                 kTooManyDiscoveredDevices);
    CHECK(ReadFile(FilePath(dir)) == before);
    // Known devices can still be seen again, and room can be made.
    REQUIRE(store.Record("demo", {Device("demo_5", "Five")}, true).ok());
    REQUIRE(store.Delete("demo_0").ok());
    auto recorded = store.Record("demo", {Device("demo_new")}, true);
    REQUIRE(recorded.ok());
    CHECK(store.List()->devices.size() == 10000);
  }
  SECTION("a configured limit") {
    DiscoveredDeviceStoreOptions options = Options(dir, &clock);
    options.max_devices = 2;
    DiscoveredDeviceStore store(options);
    REQUIRE(
        store.Record("demo", {Device("demo_a"), Device("demo_b")}, false).ok());
    const std::string before = ReadFile(FilePath(dir));
    RequireError(store.Record("demo", {Device("demo_c")}, false).status(),
                 absl::StatusCode::kResourceExhausted,
                 kTooManyDiscoveredDevices);
    CHECK(ReadFile(FilePath(dir)) == before);
  }
}

TEST_CASE(
    "DiscoveredDeviceStore: marking or deleting an unknown device is "
    "NOT_FOUND DEVICE_NOT_FOUND",
    "[config][discovery]") {
  TempDir dir;
  FakeClock clock;
  DiscoveredDeviceStore store(Options(dir, &clock));
  // Without a file.
  RequireError(store.MarkAdded("demo_x", "demo1").status(),
               absl::StatusCode::kNotFound, kDeviceNotFound);
  RequireError(store.Delete("demo_x"), absl::StatusCode::kNotFound,
               kDeviceNotFound);
  CHECK_FALSE(Exists(FilePath(dir)));

  REQUIRE(
      store.Record("demo", {Device("demo_a"), Device("demo_b")}, false).ok());
  const std::string before = ReadFile(FilePath(dir));
  absl::Status missing = store.Delete("demo_x");
  RequireError(missing, absl::StatusCode::kNotFound, kDeviceNotFound);
  CHECK(missing.message() == "Device demo_x not found");
  RequireError(store.MarkAdded("demo_x", "demo1").status(),
               absl::StatusCode::kNotFound, kDeviceNotFound);
  CHECK(ReadFile(FilePath(dir)) == before);

  REQUIRE(store.Delete("demo_a").ok());
  CHECK(FileRecords(FilePath(dir)) == std::vector<std::string>{"demo_b"});
  RequireError(store.Delete("demo_a"), absl::StatusCode::kNotFound,
               kDeviceNotFound);
}

TEST_CASE(
    "DiscoveredDeviceStore: concurrent writers of two stores lose no change",
    "[config][discovery]") {
  TempDir dir;
  DiscoveredDeviceStoreOptions options;
  options.data_dir = dir.path();
  // Two stores over one directory stand for two processes.
  DiscoveredDeviceStore first(options);
  DiscoveredDeviceStore second(options);
  constexpr int kPerThread = 15;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    DiscoveredDeviceStore& store = t % 2 == 0 ? first : second;
    threads.emplace_back([&store, &failures, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string id = absl::StrCat("demo_", t, "_", i);
        if (!store.Record("demo", {Device(id)}, i % 3 == 0).ok()) ++failures;
        if (i % 5 == 0 && !store.MarkAdded(id, "demo1").ok()) ++failures;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CHECK(failures.load() == 0);
  auto listing = first.List();
  REQUIRE(listing.ok());
  CHECK(listing->devices.size() == 4 * kPerThread);
  for (int t = 0; t < 4; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      const DiscoveredDevice* device =
          FindIn(listing->devices, absl::StrCat("demo_", t, "_", i));
      REQUIRE(device != nullptr);
      CHECK(device->added() == (i % 5 == 0));
    }
  }
  CHECK_FALSE(listing->last_scan.empty());
}

}  // namespace
}  // namespace iot2mqtt::config
