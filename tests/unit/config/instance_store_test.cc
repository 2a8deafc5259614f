#include "services/config/instance_store.h"

#include <sys/stat.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "catch2/catch.hpp"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "iot2mqtt/sdk/log.h"
#include "rapidjson/document.h"
#include "services/common/status.h"
#include "services/config/file_io.h"
#include "services/config/secret_fields.h"
#include "tests/support/captured_log.h"
#include "tests/support/test_support.h"
#include "tests/unit/config/config_test_util.h"

namespace iot2mqtt::config {
namespace {

using ::iot2mqtt::testing::CapturedLog;
using ::iot2mqtt::testing::ListDir;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::TempDir;

// Writes a file, creating its directory.
void WriteFile(const std::string& path, const std::string& content) {
  REQUIRE(MakeDirectories(DirectoryOf(path)).ok());
  testing::WriteFile(path, content);
}

// An in-memory SecretVault.
class FakeVault : public SecretVault {
 public:
  absl::StatusOr<std::string> Load(absl::string_view connector,
                                   absl::string_view id) override {
    absl::MutexLock lock(&mu_);
    auto it = values_.find(Owner(connector, id));
    return it == values_.end() ? "{}" : it->second;
  }
  absl::Status Store(absl::string_view connector, absl::string_view id,
                     absl::string_view values_json) override {
    absl::MutexLock lock(&mu_);
    if (fail_stores_) return absl::UnavailableError("vault is down");
    if (values_json == "{}") {
      values_.erase(Owner(connector, id));
    } else {
      values_[Owner(connector, id)] = std::string(values_json);
    }
    return absl::OkStatus();
  }
  absl::Status Remove(absl::string_view connector,
                      absl::string_view id) override {
    absl::MutexLock lock(&mu_);
    values_.erase(Owner(connector, id));
    return absl::OkStatus();
  }
  void set_fail_stores(bool fail) {
    absl::MutexLock lock(&mu_);
    fail_stores_ = fail;
  }
  std::map<std::string, std::string> all() {
    absl::MutexLock lock(&mu_);
    return values_;
  }

 private:
  static std::string Owner(absl::string_view c, absl::string_view i) {
    return absl::StrCat(c, "/", i);
  }
  absl::Mutex mu_;
  std::map<std::string, std::string> values_ ABSL_GUARDED_BY(mu_);
  bool fail_stores_ ABSL_GUARDED_BY(mu_) = false;
};

// A clock that advances one second per reading.
class StepClock {
 public:
  absl::Time Now() {
    absl::MutexLock lock(&mu_);
    now_ += absl::Seconds(1);
    return now_;
  }

 private:
  absl::Mutex mu_;
  absl::Time now_ = absl::FromUnixSeconds(1767323045);  // 2026-01-02T03:04:05Z
};

struct Fixture {
  explicit Fixture(int history_limit = 10) {
    InstanceStoreOptions options;
    options.instances_dir = dir.Join("instances");
    options.history_limit = history_limit;
    options.declared_secrets = [](const std::string& connector) {
      return connector == "yeelight" ? std::set<std::string>{"pin"}
                                     : std::set<std::string>{};
    };
    options.display_name = [](const std::string& connector) {
      return connector == "yeelight" ? std::string("Yeelight") : "";
    };
    options.clock = [this] { return clock.Now(); };
    store = std::make_unique<InstanceStore>(std::move(options), vault);
  }
  std::string Instances(const std::string& rel = "") const {
    return rel.empty() ? dir.Join("instances") : dir.Join("instances/" + rel);
  }

  TempDir dir;
  FakeVault vault;
  StepClock clock;
  std::unique_ptr<InstanceStore> store;
};

rapidjson::Document Parse(const std::string& json) {
  rapidjson::Document document;
  document.Parse(json.data(), json.size());
  INFO(json);
  REQUIRE_FALSE(document.HasParseError());
  return document;
}

std::string Str(const rapidjson::Value& object, const char* key) {
  REQUIRE(object.IsObject());
  REQUIRE(object.HasMember(key));
  REQUIRE(object[key].IsString());
  return object[key].GetString();
}

std::string Metadata(const absl::Status& status, const std::string& key) {
  std::optional<google::rpc::ErrorInfo> info = common::GetErrorInfo(status);
  REQUIRE(info.has_value());
  auto it = info->metadata().find(key);
  return it == info->metadata().end() ? "" : it->second;
}

InstanceChange MustCreate(InstanceStore& store, const std::string& body) {
  absl::StatusOr<InstanceChange> change = store.Create(body);
  INFO(change.status().ToString());
  REQUIRE(change.ok());
  return *change;
}

InstanceChange MustUpdate(InstanceStore& store, const std::string& connector,
                          const std::string& id, const std::string& body) {
  absl::StatusOr<InstanceChange> change = store.Update(connector, id, body);
  INFO(change.status().ToString());
  REQUIRE(change.ok());
  return *change;
}

rapidjson::Document MustGet(InstanceStore& store, const std::string& connector,
                            const std::string& id) {
  absl::StatusOr<std::string> doc = store.Get(connector, id);
  INFO(doc.status().ToString());
  REQUIRE(doc.ok());
  return Parse(*doc);
}

// Every path below `root` ("<dir>/" for directories) with its content.
std::map<std::string, std::string> Snapshot(const std::string& root) {
  std::map<std::string, std::string> out;
  struct stat st;
  if (lstat(root.c_str(), &st) != 0) return out;
  for (const std::string& name : ListDir(root)) {
    std::string child = root + "/" + name;
    REQUIRE(lstat(child.c_str(), &st) == 0);
    if (S_ISDIR(st.st_mode)) {
      out[name + "/"] = "";
      for (const auto& [sub, content] : Snapshot(child)) {
        out[name + "/" + sub] = content;
      }
    } else {
      out[name] = ReadFile(child);
    }
  }
  return out;
}

std::vector<std::string> HistoryOf(const Fixture& f,
                                   const std::string& connector,
                                   const std::string& id) {
  std::vector<std::string> names;
  std::string dir = f.Instances(connector + "/.history");
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) return names;
  for (const std::string& name : ListDir(dir)) {
    if (absl::StartsWith(name, id + ".")) names.push_back(name);
  }
  return names;
}

constexpr char kYeelight[] = R"({
  "instance_id": "living_room",
  "connector_type": "yeelight",
  "friendly_name": "Living room",
  "config": {"discovery_enabled": false, "effect_type": "smooth",
             "duration": 300, "ip": "192.0.2.10"},
  "devices": [{"device_id": "living-room-light", "ip": "192.0.2.10",
               "port": 55443, "name": "Living Room Light", "enabled": true}],
  "enabled": true,
  "update_interval": 15
})";

// ---------------------------------------------------------------------------

TEST_CASE("InstanceStore: create writes the documented file", "[config]") {
  Fixture f;
  InstanceChange change = MustCreate(*f.store, kYeelight);
  CHECK(change.connector == "yeelight");
  CHECK(change.instance_id == "living_room");
  CHECK(change.changed);
  CHECK(
      change.response_json ==
      R"({"success":true,"message":"Instance created","instance_id":"living_room"})");

  const std::string path = f.Instances("yeelight/living_room.json");
  struct stat st;
  REQUIRE(stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  std::string text = ReadFile(path);
  CHECK(absl::EndsWith(text, "}\n"));
  CHECK(absl::StrContains(text, "\n  \"instance_id\": \"living_room\""));

  rapidjson::Document doc = Parse(text);
  std::vector<std::string> keys;
  for (const auto& member : doc.GetObject())
    keys.push_back(member.name.GetString());
  CHECK(keys == std::vector<std::string>{
                    "instance_id", "instance_type", "connector_type",
                    "friendly_name", "connection", "devices", "groups",
                    "enabled", "update_interval", "created_at", "updated_at",
                    "discovery_enabled", "effect_type", "duration", "ip"});
  CHECK(Str(doc, "instance_type") == "device");
  CHECK(Str(doc, "friendly_name") == "Living room");
  CHECK(doc["connection"]["duration"].GetInt() == 300);
  CHECK(doc["update_interval"].GetInt() == 15);
  CHECK(doc["groups"].IsArray());
  CHECK(doc["groups"].Empty());
}

TEST_CASE("InstanceStore: get returns what was saved, devices included",
          "[config]") {
  Fixture f;
  MustCreate(*f.store, kYeelight);
  rapidjson::Document doc = MustGet(*f.store, "yeelight", "living_room");
  CHECK(Str(doc, "instance_id") == "living_room");
  CHECK(Str(doc, "connector_type") == "yeelight");
  REQUIRE(doc["devices"].Size() == 1);
  CHECK(Str(doc["devices"][0], "device_id") == "living-room-light");
  CHECK(doc["devices"][0]["port"].GetInt() == 55443);
  CHECK(doc["devices"][0]["enabled"].GetBool());
  CHECK(Str(doc["connection"], "effect_type") == "smooth");
}

TEST_CASE("InstanceStore: defaults for optional request fields", "[config]") {
  Fixture f;
  MustCreate(
      *f.store,
      R"({"instance_id":"demo","connector_type":"sample","x_custom":[1,2.50]})");
  rapidjson::Document doc = MustGet(*f.store, "sample", "demo");
  CHECK(Str(doc, "friendly_name") == "demo");
  CHECK(doc["connection"].IsObject());
  CHECK(doc["connection"].ObjectEmpty());
  CHECK(doc["devices"].Empty());
  CHECK(doc["enabled"].GetBool());
  CHECK(doc["update_interval"].GetInt() == 10);
  // Unknown keys are kept, numbers as written.
  CHECK(absl::StrContains(ReadFile(f.Instances("sample/demo.json")), "2.50"));
  CHECK(doc["x_custom"].Size() == 2);

  MustCreate(*f.store, R"({"instance_id":"demo2","connector_type":"sample",
      "friendly_name":"","update_interval":"30","instance_type":"account"})");
  rapidjson::Document doc2 = MustGet(*f.store, "sample", "demo2");
  CHECK(Str(doc2, "friendly_name") == "demo2");
  CHECK(doc2["update_interval"].IsInt());
  CHECK(doc2["update_interval"].GetInt() == 30);
  CHECK(Str(doc2, "instance_type") == "account");
}

TEST_CASE("InstanceStore: backward-compatible flattening of config",
          "[config]") {
  Fixture f;
  MustCreate(*f.store,
             R"({"instance_id":"test_light","connector_type":"yeelight",
      "friendly_name":"Test","config":{"ip":"192.0.2.5","effect_type":"sudden",
      "discovery_enabled":true,"enabled":false,"friendly_name":"nope"}})");
  rapidjson::Document doc =
      Parse(ReadFile(f.Instances("yeelight/test_light.json")));
  CHECK(Str(doc["connection"], "ip") == "192.0.2.5");
  CHECK(Str(doc, "ip") == "192.0.2.5");
  CHECK(Str(doc, "effect_type") == "sudden");
  CHECK(doc["discovery_enabled"].GetBool());
  // A config key never overrides a document key.
  CHECK(doc["enabled"].GetBool());
  CHECK(Str(doc, "friendly_name") == "Test");
  CHECK_FALSE(doc["connection"]["enabled"].GetBool());
}

TEST_CASE("InstanceStore: list by connector and all, orphan dirs included",
          "[config]") {
  Fixture f;
  MustCreate(*f.store, R"({"instance_id":"a1","connector_type":"connector1"})");
  MustCreate(*f.store, R"({"instance_id":"a2","connector_type":"connector1"})");
  MustCreate(*f.store, R"({"instance_id":"b1","connector_type":"connector2"})");
  // An instance dir whose connector is not in any catalogue, written by hand.
  WriteFile(
      f.Instances("orphan/o1.json"),
      R"({"instance_id":"o1","instance_type":"device","friendly_name":"O"})");

  absl::StatusOr<std::string> all = f.store->ListInstancesJson();
  REQUIRE(all.ok());
  rapidjson::Document list = Parse(*all);
  REQUIRE(list.Size() == 4);
  std::vector<std::string> seen;
  for (const auto& doc : list.GetArray()) {
    seen.push_back(Str(doc, "connector_type") + "/" + Str(doc, "instance_id"));
  }
  CHECK(seen == std::vector<std::string>{"connector1/a1", "connector1/a2",
                                         "connector2/b1", "orphan/o1"});

  absl::StatusOr<std::string> one =
      f.store->ListInstancesJson(std::string("connector1"));
  REQUIRE(one.ok());
  CHECK(Parse(*one).Size() == 2);
  absl::StatusOr<std::string> none =
      f.store->ListInstancesJson(std::string("nothing"));
  REQUIRE(none.ok());
  CHECK(*none == "[]");

  auto ids = f.store->InstanceIdsByConnector();
  REQUIRE(ids.ok());
  CHECK(ids->size() == 3);
  CHECK((*ids)["connector1"] == std::vector<std::string>{"a1", "a2"});
  CHECK((*ids)["orphan"] == std::vector<std::string>{"o1"});

  absl::StatusOr<std::string> holder = f.store->FindById("o1");
  REQUIRE(holder.ok());
  CHECK(*holder == "orphan");
  RequireError(f.store->FindById("zz").status(), absl::StatusCode::kNotFound,
               kInstanceNotFound);
  CHECK(f.store->FindById("zz").status().message() == "Instance zz not found");
}

TEST_CASE("InstanceStore: listing a missing directory is empty", "[config]") {
  Fixture f;
  absl::StatusOr<std::string> all = f.store->ListInstancesJson();
  REQUIRE(all.ok());
  CHECK(*all == "[]");
  absl::StatusOr<std::string> integrations =
      f.store->ListConfiguredIntegrationsJson();
  REQUIRE(integrations.ok());
  CHECK(*integrations == "[]");
  absl::StatusOr<int> devices = f.store->CountDevices();
  REQUIRE(devices.ok());
  CHECK(*devices == 0);
  struct stat st;
  CHECK(stat(f.Instances().c_str(), &st) != 0);  // Reads create nothing.
}

TEST_CASE("InstanceStore: duplicate ids are ALREADY_EXISTS", "[config]") {
  Fixture f;
  MustCreate(*f.store, R"({"instance_id":"x","connector_type":"alpha"})");

  absl::Status same =
      f.store->Create(R"({"instance_id":"x","connector_type":"alpha"})")
          .status();
  RequireError(same, absl::StatusCode::kAlreadyExists, kInstanceAlreadyExists);
  CHECK(same.message() == "Instance already exists");

  // Ids are global: another connector can't take it either.
  absl::Status other =
      f.store->Create(R"({"instance_id":"x","connector_type":"beta"})")
          .status();
  RequireError(other, absl::StatusCode::kAlreadyExists, kInstanceIdTaken);
  CHECK(Metadata(other, "connector") == "alpha");
  CHECK(absl::StrContains(other.message(), "alpha"));
  struct stat st;
  CHECK(stat(f.Instances("beta/x.json").c_str(), &st) != 0);
}

TEST_CASE("InstanceStore: a partial PUT keeps what it does not name",
          "[config]") {
  Fixture f;
  MustCreate(*f.store, kYeelight);
  rapidjson::Document before = MustGet(*f.store, "yeelight", "living_room");

  InstanceChange change = MustUpdate(
      *f.store, "yeelight", "living_room",
      R"({"friendly_name":"Lounge","config":{"duration":500,"ip":null},
                     "instance_id":"other","connector_type":"other",
                     "created_at":"1999-01-01T00:00:00Z"})");
  CHECK(change.changed);
  CHECK(
      change.response_json ==
      R"({"success":true,"message":"Instance updated","instance_id":"living_room"})");

  rapidjson::Document after = MustGet(*f.store, "yeelight", "living_room");
  CHECK(Str(after, "friendly_name") == "Lounge");
  CHECK(Str(after, "instance_id") == "living_room");
  CHECK(Str(after, "connector_type") == "yeelight");
  CHECK(Str(after, "created_at") == Str(before, "created_at"));
  CHECK(Str(after, "updated_at") != Str(before, "updated_at"));
  CHECK(Str(after, "instance_type") == "device");
  CHECK(after["update_interval"].GetInt() == 15);
  CHECK(after["devices"].Size() == 1);
  // Config merged: duration changed, effect_type kept, ip removed — with
  // its top-level copy.
  CHECK(after["connection"]["duration"].GetInt() == 500);
  CHECK(after["duration"].GetInt() == 500);
  CHECK(Str(after["connection"], "effect_type") == "smooth");
  CHECK(Str(after, "effect_type") == "smooth");
  CHECK_FALSE(after["connection"].HasMember("ip"));
  CHECK_FALSE(after.HasMember("ip"));
  // Nothing else moved to other paths.
  struct stat st;
  CHECK(stat(f.Instances("other").c_str(), &st) != 0);
}

TEST_CASE("InstanceStore: the UI's full PUT body replaces the fields",
          "[config]") {
  Fixture f;
  MustCreate(*f.store, kYeelight);
  MustUpdate(*f.store, "yeelight", "living_room", R"({
    "instance_id": "living_room", "connector_type": "yeelight",
    "friendly_name": "Living room", "enabled": false, "update_interval": 15,
    "config": {"discovery_enabled": true, "effect_type": "sudden",
               "duration": 300, "ip": "192.0.2.10"},
    "devices": [], "secrets": null})");
  rapidjson::Document doc = MustGet(*f.store, "yeelight", "living_room");
  CHECK_FALSE(doc["enabled"].GetBool());
  CHECK(doc["devices"].Empty());
  CHECK(doc["discovery_enabled"].GetBool());
  CHECK(Str(doc, "effect_type") == "sudden");
}

TEST_CASE("InstanceStore: an update that changes nothing writes nothing",
          "[config]") {
  Fixture f;
  MustCreate(*f.store, kYeelight);
  std::string before = ReadFile(f.Instances("yeelight/living_room.json"));
  InstanceChange change = MustUpdate(*f.store, "yeelight", "living_room",
                                     R"({"friendly_name":"Living room"})");
  CHECK_FALSE(change.changed);
  CHECK(ReadFile(f.Instances("yeelight/living_room.json")) == before);
  CHECK(HistoryOf(f, "yeelight", "living_room").empty());
}

TEST_CASE("InstanceStore: PUT or DELETE of an unknown instance is NOT_FOUND",
          "[config]") {
  Fixture f;
  MustCreate(*f.store, R"({"instance_id":"x","connector_type":"alpha"})");
  absl::Status put =
      f.store->Update("alpha", "y", R"({"enabled":false})").status();
  RequireError(put, absl::StatusCode::kNotFound, kInstanceNotFound);
  CHECK(put.message() == "Instance not found");
  // The right id under the wrong connector is not found either.
  RequireError(f.store->Update("beta", "x", "{}").status(),
               absl::StatusCode::kNotFound, kInstanceNotFound);
  RequireError(f.store->Delete("alpha", "y").status(),
               absl::StatusCode::kNotFound, kInstanceNotFound);
  RequireError(f.store->Get("alpha", "y").status(), absl::StatusCode::kNotFound,
               kInstanceNotFound);
  RequireError(f.store->GetIntegrationInstanceJson("y").status(),
               absl::StatusCode::kNotFound, kInstanceNotFound);
  struct stat st;
  CHECK(stat(f.Instances("alpha/y.json").c_str(), &st) != 0);
  CHECK(stat(f.Instances("beta").c_str(), &st) != 0);
}

TEST_CASE("InstanceStore: delete keeps a history copy and drops the secrets",
          "[config]") {
  Fixture f;
  MustCreate(*f.store, R"({"instance_id":"demo","connector_type":"sample",
      "config":{"host":"192.0.2.7","password":"hunter2"}})");
  std::string stored = ReadFile(f.Instances("sample/demo.json"));
  REQUIRE(f.vault.all().count("sample/demo") == 1);

  absl::StatusOr<InstanceChange> deleted = f.store->Delete("sample", "demo");
  REQUIRE(deleted.ok());
  CHECK(deleted->response_json ==
        R"({"success":true,"message":"Instance deleted successfully"})");
  CHECK(f.vault.all().empty());
  RequireError(f.store->Get("sample", "demo").status(),
               absl::StatusCode::kNotFound, kInstanceNotFound);

  std::vector<std::string> history = HistoryOf(f, "sample", "demo");
  REQUIRE(history.size() == 1);
  CHECK(ReadFile(f.Instances("sample/.history/" + history[0])) == stored);
  // Named <id>.<yyyymmddTHHMMSS.ffffff>Z.json, mode 0600.
  CHECK(history[0].size() ==
        std::string("demo.20260102T030405.000000Z.json").size());
  CHECK(absl::EndsWith(history[0], "Z.json"));
  struct stat st;
  REQUIRE(stat(f.Instances("sample/.history/" + history[0]).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  // The id is free again.
  MustCreate(*f.store, R"({"instance_id":"demo","connector_type":"other"})");
}

TEST_CASE("InstanceStore: history is bounded and holds previous versions",
          "[config]") {
  Fixture f(/*history_limit=*/3);
  MustCreate(*f.store, R"({"instance_id":"demo","connector_type":"sample"})");
  for (int i = 1; i <= 6; ++i) {
    MustUpdate(*f.store, "sample", "demo",
               absl::StrCat(R"({"update_interval":)", i * 100, "}"));
  }
  std::vector<std::string> history = HistoryOf(f, "sample", "demo");
  REQUIRE(history.size() == 3);
  // The newest copy is the version before the last update (500).
  rapidjson::Document newest =
      Parse(ReadFile(f.Instances("sample/.history/" + history.back())));
  CHECK(newest["update_interval"].GetInt() == 500);
  rapidjson::Document oldest =
      Parse(ReadFile(f.Instances("sample/.history/" + history.front())));
  CHECK(oldest["update_interval"].GetInt() == 300);
}

TEST_CASE("InstanceStore: timestamps are UTC with microseconds and Z",
          "[config]") {
  Fixture f;
  MustCreate(*f.store, R"({"instance_id":"demo","connector_type":"sample"})");
  rapidjson::Document created = MustGet(*f.store, "sample", "demo");
  std::string created_at = Str(created, "created_at");
  CHECK(created_at.size() == std::string("2026-01-02T03:04:06.000000Z").size());
  CHECK(absl::StartsWith(created_at, "2026-01-02T03:04:"));
  CHECK(absl::EndsWith(created_at, "Z"));
  CHECK(absl::EndsWith(Str(created, "updated_at"), "Z"));

  MustUpdate(*f.store, "sample", "demo", R"({"enabled":false})");
  MustUpdate(*f.store, "sample", "demo", R"({"enabled":true})");
  rapidjson::Document updated = MustGet(*f.store, "sample", "demo");
  CHECK(Str(updated, "created_at") == created_at);
  CHECK(Str(updated, "updated_at") > created_at);
  CHECK(absl::EndsWith(Str(updated, "updated_at"), "Z"));
}

TEST_CASE("InstanceStore: secret values never reach the file or responses",
          "[config]") {
  Fixture f;
  MustCreate(*f.store, R"({"instance_id":"cam","connector_type":"cameras",
      "config":{"host":"192.0.2.20","password":"s3cr3t-pw"},
      "devices":[{"device_id":"d1","token":"tok-abc-123"}]})");

  std::string file = ReadFile(f.Instances("cameras/cam.json"));
  CHECK_FALSE(absl::StrContains(file, "s3cr3t-pw"));
  CHECK_FALSE(absl::StrContains(file, "tok-abc-123"));
  CHECK(absl::StrContains(file, "__SECRET__connection.password__"));
  CHECK(absl::StrContains(file, "__SECRET__devices.0.token__"));
  // The top-level copy is a secret as well.
  CHECK(absl::StrContains(file, "\"password\": \"__SECRET__password__\""));

  absl::StatusOr<std::string> values =
      f.store->GetRuntimeSecretsValues("cameras", "cam");
  REQUIRE(values.ok());
  rapidjson::Document vault = Parse(*values);
  CHECK(Str(vault, "connection.password") == "s3cr3t-pw");
  CHECK(Str(vault, "password") == "s3cr3t-pw");
  CHECK(Str(vault, "devices.0.token") == "tok-abc-123");

  std::vector<std::string> responses;
  responses.push_back(*f.store->Get("cameras", "cam"));
  responses.push_back(*f.store->ListInstancesJson());
  responses.push_back(*f.store->ListConfiguredIntegrationsJson());
  responses.push_back(*f.store->ListIntegrationInstancesJson("cameras"));
  responses.push_back(*f.store->GetIntegrationInstanceJson("cam"));
  for (const std::string& response : responses) {
    INFO(response);
    CHECK_FALSE(absl::StrContains(response, "s3cr3t-pw"));
    CHECK_FALSE(absl::StrContains(response, "tok-abc-123"));
    CHECK_FALSE(absl::StrContains(response, "__SECRET__"));
    CHECK(absl::StrContains(response, kSecretMask));
  }
  rapidjson::Document masked = MustGet(*f.store, "cameras", "cam");
  CHECK(Str(masked["connection"], "password") == kSecretMask);
  CHECK(Str(masked["devices"][0], "token") == kSecretMask);

  // The stored form, for runtimes: placeholders, no values, no mask.
  absl::StatusOr<std::string> stored = f.store->GetStoredJson("cameras", "cam");
  REQUIRE(stored.ok());
  CHECK(Str(Parse(*stored)["connection"], "password") ==
        "__SECRET__connection.password__");
  CHECK_FALSE(absl::StrContains(*stored, "s3cr3t-pw"));

  absl::StatusOr<std::string> real = f.store->GetWithSecrets("cameras", "cam");
  REQUIRE(real.ok());
  rapidjson::Document injected = Parse(*real);
  CHECK(Str(injected["connection"], "password") == "s3cr3t-pw");
  CHECK(Str(injected, "password") == "s3cr3t-pw");
  CHECK(Str(injected["devices"][0], "token") == "tok-abc-123");
}

TEST_CASE("InstanceStore: the mask sent back keeps the stored secret",
          "[config]") {
  Fixture f;
  MustCreate(*f.store, R"({"instance_id":"cam","connector_type":"cameras",
      "config":{"host":"192.0.2.20","password":"s3cr3t-pw"},
      "devices":[{"device_id":"d1","token":"tok-abc-123"}]})");

  // The UI edits a field and sends the masked values back.
  MustUpdate(*f.store, "cameras", "cam", R"({"friendly_name":"Front door",
      "config":{"host":"192.0.2.21","password":"***HIDDEN***"},
      "devices":[{"device_id":"d1","token":"***HIDDEN***"}]})");
  absl::StatusOr<std::string> real = f.store->GetWithSecrets("cameras", "cam");
  REQUIRE(real.ok());
  rapidjson::Document doc = Parse(*real);
  CHECK(Str(doc["connection"], "password") == "s3cr3t-pw");
  CHECK(Str(doc["connection"], "host") == "192.0.2.21");
  CHECK(Str(doc, "password") == "s3cr3t-pw");
  CHECK(Str(doc["devices"][0], "token") == "tok-abc-123");
  CHECK_FALSE(absl::StrContains(ReadFile(f.Instances("cameras/cam.json")),
                                kSecretMask));

  // A new value replaces it.
  MustUpdate(*f.store, "cameras", "cam", R"({"config":{"password":"n3w-pw"}})");
  doc = Parse(*f.store->GetWithSecrets("cameras", "cam"));
  CHECK(Str(doc["connection"], "password") == "n3w-pw");
  CHECK(Str(doc, "password") == "n3w-pw");
  CHECK(Str(doc["devices"][0], "token") == "tok-abc-123");
  CHECK_FALSE(
      absl::StrContains(ReadFile(f.Instances("cameras/cam.json")), "n3w-pw"));

  // Removing the secret key removes its values.
  MustUpdate(*f.store, "cameras", "cam", R"({"config":{"password":null}})");
  rapidjson::Document values =
      Parse(*f.store->GetRuntimeSecretsValues("cameras", "cam"));
  CHECK_FALSE(values.HasMember("connection.password"));
  CHECK_FALSE(values.HasMember("password"));
  CHECK(Str(values, "devices.0.token") == "tok-abc-123");
}

TEST_CASE("InstanceStore: when the vault fails, the document is not written",
          "[config]") {
  Fixture f;
  f.vault.set_fail_stores(true);
  absl::Status created =
      f.store
          ->Create(R"({"instance_id":"cam","connector_type":"cameras",
              "config":{"password":"s3cr3t-pw"}})")
          .status();
  CHECK(created.code() == absl::StatusCode::kUnavailable);
  struct stat st;
  CHECK(stat(f.Instances("cameras/cam.json").c_str(), &st) != 0);

  f.vault.set_fail_stores(false);
  MustCreate(*f.store, R"({"instance_id":"cam","connector_type":"cameras",
      "config":{"password":"s3cr3t-pw"}})");
  const std::string before = ReadFile(f.Instances("cameras/cam.json"));
  f.vault.set_fail_stores(true);
  CHECK(f.store->Update("cameras", "cam", R"({"config":{"password":"n3w"}})")
            .status()
            .code() == absl::StatusCode::kUnavailable);
  CHECK(ReadFile(f.Instances("cameras/cam.json")) == before);
  rapidjson::Document real = Parse(*f.store->GetWithSecrets("cameras", "cam"));
  CHECK(Str(real["connection"], "password") == "s3cr3t-pw");
}

TEST_CASE("InstanceStore: declared and explicit secrets", "[config]") {
  Fixture f;
  // `pin` is declared secret by the yeelight setup; `code` is made secret
  // explicitly; `cloud.key` has no place in the document.
  MustCreate(*f.store, R"({"instance_id":"y1","connector_type":"yeelight",
      "config":{"pin":"4711","code":"plain?"},
      "secrets":{"connection.code":"c0de-99","cloud.key":"k-777"}})");
  std::string file = ReadFile(f.Instances("yeelight/y1.json"));
  CHECK_FALSE(absl::StrContains(file, "4711"));
  CHECK_FALSE(absl::StrContains(file, "c0de-99"));
  CHECK_FALSE(absl::StrContains(file, "plain?"));
  CHECK_FALSE(absl::StrContains(file, "k-777"));

  rapidjson::Document real = Parse(*f.store->GetWithSecrets("yeelight", "y1"));
  CHECK(Str(real["connection"], "pin") == "4711");
  CHECK(Str(real["connection"], "code") == "c0de-99");
  CHECK(Str(real, "code") == "c0de-99");
  rapidjson::Document values =
      Parse(*f.store->GetRuntimeSecretsValues("yeelight", "y1"));
  CHECK(Str(values, "cloud.key") == "k-777");

  // The masked document sent back as is keeps every value, including the
  // explicit ones whose names are not credential names.
  std::string masked = *f.store->Get("yeelight", "y1");
  CHECK_FALSE(absl::StrContains(masked, "c0de-99"));
  MustUpdate(*f.store, "yeelight", "y1", masked);
  real = Parse(*f.store->GetWithSecrets("yeelight", "y1"));
  CHECK(Str(real["connection"], "pin") == "4711");
  CHECK(Str(real["connection"], "code") == "c0de-99");
  values = Parse(*f.store->GetRuntimeSecretsValues("yeelight", "y1"));
  CHECK(Str(values, "cloud.key") == "k-777");

  // A new plain value of a path that was secret stays secret.
  MustUpdate(*f.store, "yeelight", "y1", R"({"config":{"code":"c0de-100"}})");
  CHECK_FALSE(
      absl::StrContains(ReadFile(f.Instances("yeelight/y1.json")), "c0de-100"));
  real = Parse(*f.store->GetWithSecrets("yeelight", "y1"));
  CHECK(Str(real["connection"], "code") == "c0de-100");

  // null removes a vault-only value.
  MustUpdate(*f.store, "yeelight", "y1", R"({"secrets":{"cloud.key":null}})");
  values = Parse(*f.store->GetRuntimeSecretsValues("yeelight", "y1"));
  CHECK_FALSE(values.HasMember("cloud.key"));
}

TEST_CASE("InstanceStore: invalid names are rejected and create nothing",
          "[config]") {
  Fixture f;
  MustCreate(*f.store, R"({"instance_id":"good","connector_type":"sample"})");
  const std::map<std::string, std::string> before = Snapshot(f.dir.path());

  const std::vector<std::string> bad = {"..",
                                        "../x",
                                        "a/b",
                                        "%2F",
                                        "/abs",
                                        "",
                                        "A",
                                        std::string("x\0y", 3),
                                        std::string(200, 'a'),
                                        ".history",
                                        "-x",
                                        "x.json"};
  for (const std::string& name : bad) {
    INFO("name: " << absl::CHexEscape(name));
    std::string quoted = sdk::JsonString(name);
    RequireError(f.store
                     ->Create(absl::StrCat(R"({"instance_id":)", quoted,
                                           R"(,"connector_type":"sample"})"))
                     .status(),
                 absl::StatusCode::kInvalidArgument, kInvalidInstanceId);
    RequireError(
        f.store
            ->Create(absl::StrCat(R"({"instance_id":"fresh","connector_type":)",
                                  quoted, "}"))
            .status(),
        absl::StatusCode::kInvalidArgument, kInvalidConnectorName);
    RequireError(f.store->Update("sample", name, "{}").status(),
                 absl::StatusCode::kInvalidArgument, kInvalidInstanceId);
    RequireError(f.store->Update(name, "good", "{}").status(),
                 absl::StatusCode::kInvalidArgument, kInvalidConnectorName);
    RequireError(f.store->Delete("sample", name).status(),
                 absl::StatusCode::kInvalidArgument, kInvalidInstanceId);
    RequireError(f.store->Delete(name, "good").status(),
                 absl::StatusCode::kInvalidArgument, kInvalidConnectorName);
    RequireError(f.store->Get(name, "good").status(),
                 absl::StatusCode::kInvalidArgument, kInvalidConnectorName);
    RequireError(f.store->GetWithSecrets("sample", name).status(),
                 absl::StatusCode::kInvalidArgument, kInvalidInstanceId);
    RequireError(f.store->GetStoredJson(name, "good").status(),
                 absl::StatusCode::kInvalidArgument, kInvalidConnectorName);
    RequireError(f.store->GetRuntimeSecretsValues("sample", name).status(),
                 absl::StatusCode::kInvalidArgument, kInvalidInstanceId);
    RequireError(f.store->FindById(name).status(),
                 absl::StatusCode::kInvalidArgument, kInvalidInstanceId);
    RequireError(f.store->ListInstancesJson(name).status(),
                 absl::StatusCode::kInvalidArgument, kInvalidConnectorName);
    RequireError(f.store->ListIntegrationInstancesJson(name).status(),
                 absl::StatusCode::kInvalidArgument, kInvalidConnectorName);

    absl::Status status = f.store->Get("sample", name).status();
    RequireError(status, absl::StatusCode::kInvalidArgument,
                 kInvalidInstanceId);
    // The message shows the value escaped and cut, and the pattern.
    CHECK(absl::StrContains(status.message(), kInstanceNamePattern));
    CHECK(status.message().find('\0') == absl::string_view::npos);
    CHECK(status.message().size() < 200);
  }
  CHECK(Snapshot(f.dir.path()) == before);
  RequireError(f.store->Get("sample", std::string("x\0y", 3)).status(),
               absl::StatusCode::kInvalidArgument, kInvalidInstanceId);
  CHECK(absl::StrContains(
      f.store->Get("sample", std::string("x\0y", 3)).status().message(),
      "x\\x00y"));
}

TEST_CASE("InstanceStore: a bad body lists every problem", "[config]") {
  Fixture f;
  absl::Status status =
      f.store
          ->Create(R"({"instance_id":5,"connector_type":"sample",
              "friendly_name":7,"config":[],"devices":["x"],"groups":{},
              "enabled":"yes","update_interval":0,"secrets":"pw",
              "instance_type":"robot"})")
          .status();
  RequireError(status, absl::StatusCode::kInvalidArgument, kInvalidInstance);
  for (const char* field :
       {"instance_id must be a string", "friendly_name",
        "config must be an object", "devices[0] must be an object",
        "groups must be an array", "enabled must be a boolean",
        "update_interval", "secrets", "instance_type"}) {
    CHECK(absl::StrContains(status.message(), field));
  }
  CHECK(absl::StrContains(Metadata(status, "fields"), "update_interval"));
  // The secret value is not echoed.
  CHECK_FALSE(absl::StrContains(status.message(), "\"pw\""));

  RequireError(f.store->Create(R"({"friendly_name":"x"})").status(),
               absl::StatusCode::kInvalidArgument, kInvalidInstance);
  CHECK(absl::StrContains(f.store->Create("{}").status().message(),
                          "connector_type is required"));
  for (const char* body :
       {"[]", "not json", "", R"({"update_interval":1.5})"}) {
    INFO(body);
    RequireError(f.store->Create(body).status(),
                 absl::StatusCode::kInvalidArgument, kInvalidInstance);
  }
  for (const char* interval :
       {R"("abc")", "-3", "1e3", "10.0", "true", "99999999999"}) {
    INFO(interval);
    RequireError(
        f.store
            ->Create(absl::StrCat(
                R"({"instance_id":"i","connector_type":"c","update_interval":)",
                interval, "}"))
            .status(),
        absl::StatusCode::kInvalidArgument, kInvalidInstance);
  }

  MustCreate(*f.store, R"({"instance_id":"ok","connector_type":"sample"})");
  absl::Status put =
      f.store->Update("sample", "ok", R"({"enabled":1,"devices":{}})").status();
  RequireError(put, absl::StatusCode::kInvalidArgument, kInvalidInstance);
  CHECK(absl::StrContains(put.message(), "enabled"));
  CHECK(absl::StrContains(put.message(), "devices"));
  struct stat st;
  CHECK(stat(f.Instances("c").c_str(), &st) != 0);
}

TEST_CASE("InstanceStore: a corrupt or partial file does not break listings",
          "[config]") {
  Fixture f;
  CapturedLog log;
  MustCreate(*f.store, R"({"instance_id":"good","connector_type":"sample",
      "devices":[{"device_id":"a"},{"device_id":"b"}]})");
  WriteFile(f.Instances("sample/broken.json"), "{not json");
  WriteFile(f.Instances("sample/array.json"), "[1,2]");
  WriteFile(f.Instances("sample/bare.json"), "{}");
  // Leftovers that are not instances.
  WriteFile(f.Instances("sample/.x.json.tmp-0123456789abcdef"), "{");
  WriteFile(f.Instances("sample/notes.txt"), "hello");
  WriteFile(f.Instances("NotAConnector/z.json"), "{}");

  for (int round = 0; round < 2; ++round) {
    absl::StatusOr<std::string> all = f.store->ListInstancesJson();
    REQUIRE(all.ok());
    rapidjson::Document list = Parse(*all);
    REQUIRE(list.Size() == 2);
    CHECK(Str(list[0], "instance_id") == "bare");
    CHECK(Str(list[1], "instance_id") == "good");

    absl::StatusOr<std::string> integrations =
        f.store->ListIntegrationInstancesJson("sample");
    REQUIRE(integrations.ok());
    rapidjson::Document instances = Parse(*integrations);
    REQUIRE(instances.Size() == 2);
    CHECK(Str(instances[0], "friendly_name") == "bare");  // Defaults.
    CHECK(instances[0]["enabled"].GetBool());
    CHECK(instances[0]["created_at"].IsNull());
    CHECK(instances[1]["device_count"].GetInt() == 2);
  }
  // One warning per bad file, not one per listing.
  CHECK(log.Count("broken.json") == 1);
  CHECK(log.Count("array.json") == 1);
  CHECK(log.Count("bare.json") == 1);

  absl::StatusOr<int> devices = f.store->CountDevices();
  REQUIRE(devices.ok());
  CHECK(*devices == 2);
  RequireError(f.store->Get("sample", "broken").status(),
               absl::StatusCode::kFailedPrecondition, kInstanceCorrupt);
  RequireError(f.store->Update("sample", "array", "{}").status(),
               absl::StatusCode::kFailedPrecondition, kInstanceCorrupt);
  // A corrupt instance can still be deleted.
  REQUIRE(f.store->Delete("sample", "broken").ok());
}

TEST_CASE("InstanceStore: a temp file left by a crashed write is ignored",
          "[config]") {
  Fixture f;
  WriteFile(f.Instances("sample/.x.json.tmp-0123456789abcdef"),
            R"({"instance_id":"x"})");
  absl::StatusOr<std::string> all = f.store->ListInstancesJson();
  REQUIRE(all.ok());
  CHECK(*all == "[]");
  RequireError(f.store->FindById("x").status(), absl::StatusCode::kNotFound,
               kInstanceNotFound);
  MustCreate(*f.store, R"({"instance_id":"x","connector_type":"sample"})");
  all = f.store->ListInstancesJson();
  REQUIRE(all.ok());
  CHECK(Parse(*all).Size() == 1);
}

TEST_CASE("InstanceStore: integration views", "[config]") {
  Fixture f;
  MustCreate(*f.store, kYeelight);
  MustCreate(*f.store, R"({"instance_id":"bedroom","connector_type":"yeelight",
      "enabled":false})");
  MustCreate(*f.store, R"({"instance_id":"off","connector_type":"sample",
      "enabled":false,"devices":[{"device_id":"d"}]})");

  absl::StatusOr<std::string> json = f.store->ListConfiguredIntegrationsJson();
  REQUIRE(json.ok());
  rapidjson::Document list = Parse(*json);
  REQUIRE(list.Size() == 2);
  const rapidjson::Value& sample = list[0];
  CHECK(Str(sample, "name") == "sample");
  CHECK(Str(sample, "display_name") == "sample");
  CHECK(Str(sample, "status") == "disabled");
  CHECK(sample["instances_count"].GetInt() == 1);
  CHECK(sample["last_seen"].IsNull());
  const rapidjson::Value& yeelight = list[1];
  CHECK(Str(yeelight, "display_name") == "Yeelight");
  CHECK(Str(yeelight, "status") == "unknown");
  CHECK(yeelight["instances_count"].GetInt() == 2);
  const rapidjson::Value& first = yeelight["instances"][0];
  CHECK(Str(first, "instance_id") == "bedroom");
  CHECK(Str(first, "status") == "disabled");
  const rapidjson::Value& second = yeelight["instances"][1];
  CHECK(Str(second, "instance_id") == "living_room");
  CHECK(Str(second, "friendly_name") == "Living room");
  CHECK(Str(second, "integration") == "yeelight");
  CHECK(Str(second, "status") == "unknown");
  CHECK(second["device_count"].GetInt() == 1);
  CHECK(second["last_seen"].IsNull());
  CHECK(second["enabled"].GetBool());
  CHECK(absl::EndsWith(Str(second, "created_at"), "Z"));
  CHECK(Str(second["config"], "effect_type") == "smooth");

  absl::StatusOr<std::string> one = f.store->GetIntegrationInstanceJson("off");
  REQUIRE(one.ok());
  rapidjson::Document instance = Parse(*one);
  std::vector<std::string> keys;
  for (const auto& m : instance.GetObject()) keys.push_back(m.name.GetString());
  CHECK(keys == std::vector<std::string>{"instance_id", "integration",
                                         "friendly_name", "status", "config",
                                         "created_at"});
  CHECK(Str(instance, "integration") == "sample");
  CHECK(Str(instance, "status") == "disabled");

  absl::StatusOr<std::string> none =
      f.store->ListIntegrationInstancesJson("nothing");
  REQUIRE(none.ok());
  CHECK(*none == "[]");
  absl::StatusOr<int> devices = f.store->CountDevices();
  REQUIRE(devices.ok());
  CHECK(*devices == 2);
}

TEST_CASE("InstanceStore: concurrent updates of one instance lose nothing",
          "[config]") {
  Fixture f(/*history_limit=*/5);
  MustCreate(*f.store, R"({"instance_id":"busy","connector_type":"sample",
      "config":{"base":1}})");
  constexpr int kThreads = 16;
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      results[i] =
          f.store
              ->Update("sample", "busy",
                       absl::StrCat(R"({"config":{"key_)", i, R"(":)", i,
                                    R"(,"api_token":"t-)", i, R"("}})"))
              .status();
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const absl::Status& result : results) CHECK(result.ok());

  rapidjson::Document doc = MustGet(*f.store, "sample", "busy");
  CHECK(doc["connection"]["base"].GetInt() == 1);
  for (int i = 0; i < kThreads; ++i) {
    std::string key = absl::StrCat("key_", i);
    INFO(key);
    REQUIRE(doc["connection"].HasMember(key.c_str()));
    CHECK(doc["connection"][key.c_str()].GetInt() == i);
    CHECK(doc[key.c_str()].GetInt() == i);
  }
  // The secret is one of the written values, and the vault agrees.
  rapidjson::Document real = Parse(*f.store->GetWithSecrets("sample", "busy"));
  CHECK(absl::StartsWith(Str(real["connection"], "api_token"), "t-"));
  CHECK(HistoryOf(f, "sample", "busy").size() == 5);
  CHECK(ListDir(f.Instances("sample")) ==
        std::vector<std::string>{".history", "busy.json"});
}

}  // namespace
}  // namespace iot2mqtt::config
