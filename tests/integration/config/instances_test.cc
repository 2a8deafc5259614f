// Instances, MQTT settings and secrets of the real iot2mqtt-config binary,
// driven over REST through the real iot2mqtt-gateway (logged in with the
// access key from WEB_ACCESS_KEY) and over gRPC for what has no route:
// CRUD in upstream's document shape, masking, settings validation and the
// .env round trip, SIGKILL during instance and settings writes, concurrent
// updates of one instance, and key rotation.

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "catch2/catch.hpp"
#include "iot2mqtt/config/v1/config_service.grpc.pb.h"
#include "rapidjson/document.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"
#include "tests/integration/config/config_harness.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::config {
namespace {

using harness::CheckError;
using harness::Context;
using harness::FilesContaining;
using harness::IsJsonObject;
using harness::kMask;
using harness::Parse;
using harness::ServiceStack;
using harness::Str;
using ::iot2mqtt::testing::HttpResponse;
using ::iot2mqtt::testing::ListDir;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::WaitFor;
using ::iot2mqtt::testing::WriteFile;

constexpr char kCreateBody[] = R"({
  "instance_id": "home1",
  "connector_type": "demo",
  "friendly_name": "Living room",
  "config": {"password": "p1", "effect_type": "smooth"},
  "devices": [{"device_id": "d1"}],
  "enabled": true,
  "update_interval": 10
})";

// The elements of a JSON array response.
std::vector<std::string> Ids(const rapidjson::Value& array, const char* key) {
  REQUIRE(array.IsArray());
  std::vector<std::string> ids;
  for (const rapidjson::Value& item : array.GetArray()) {
    ids.push_back(Str(item, key));
  }
  return ids;
}

std::string ToJson(const rapidjson::Value& value) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  value.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

// What GetRuntimeConfig hands a runtime.
struct Runtime {
  rapidjson::Document instance;
  rapidjson::Document secrets;
};

Runtime GetRuntime(v1::ConfigService::Stub& stub, const std::string& connector,
                   const std::string& id) {
  v1::GetRuntimeConfigRequest request;
  request.set_connector(connector);
  request.set_instance_id(id);
  v1::GetRuntimeConfigResponse response;
  grpc::Status status =
      stub.GetRuntimeConfig(Context().get(), request, &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  Runtime runtime{Parse(response.instance()), Parse(response.secrets_file())};
  REQUIRE(runtime.secrets["values"].IsObject());
  return runtime;
}

std::string SecretValue(const Runtime& runtime, const char* path) {
  return Str(runtime.secrets["values"], path);
}

v1::MqttSettings ResolveMqtt(v1::ConfigService::Stub& stub) {
  v1::ResolveMqttSettingsResponse response;
  grpc::Status status =
      stub.ResolveMqttSettings(Context().get(), {}, &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  return response.settings();
}

grpc::Status UpdateInstance(v1::ConfigService::Stub& stub,
                            const std::string& connector, const std::string& id,
                            const std::string& body, int deadline_seconds = 5) {
  v1::UpdateInstanceRequest request;
  request.set_connector(connector);
  request.set_instance_id(id);
  request.set_instance(body);
  v1::UpdateInstanceResponse response;
  return stub.UpdateInstance(Context(deadline_seconds).get(), request,
                             &response);
}

// A .env parser written from python-dotenv's rules, independent of the
// product's: `KEY=value`, `export `, comments, double quotes with \" \\ \n
// \t \r escapes, single quotes taken literally, and in a bare value
// everything from " #" on is a comment.
std::map<std::string, std::string> ParseDotenv(const std::string& text) {
  std::map<std::string, std::string> values;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    absl::ConsumePrefix(&line, "export ");
    size_t eq = line.find('=');
    if (eq == absl::string_view::npos) continue;
    std::string key(absl::StripAsciiWhitespace(line.substr(0, eq)));
    absl::string_view raw =
        absl::StripLeadingAsciiWhitespace(line.substr(eq + 1));
    std::string value;
    if (!raw.empty() && raw[0] == '"') {
      for (size_t i = 1; i < raw.size() && raw[i] != '"'; ++i) {
        if (raw[i] == '\\' && i + 1 < raw.size()) {
          char next = raw[++i];
          value += next == 'n'   ? '\n'
                   : next == 't' ? '\t'
                   : next == 'r' ? '\r'
                                 : next;
        } else {
          value += raw[i];
        }
      }
    } else if (!raw.empty() && raw[0] == '\'') {
      size_t end = raw.find('\'', 1);
      value = std::string(raw.substr(1, end == absl::string_view::npos
                                            ? absl::string_view::npos
                                            : end - 1));
    } else {
      size_t comment = raw.find(" #");
      value = std::string(absl::StripTrailingAsciiWhitespace(raw.substr(
          0, comment == absl::string_view::npos ? raw.size() : comment)));
    }
    values[key] = value;
  }
  return values;
}

bool HasLineStartingWith(const std::string& text, const std::string& prefix) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(absl::StripLeadingAsciiWhitespace(line), prefix)) {
      return true;
    }
  }
  return false;
}

// The config service's own integration views (their REST routes belong to
// the orchestrator, which adds live status): the JSON the RPC returns.
std::string IntegrationView(harness::ServiceStack& stack,
                            absl::string_view path) {
  grpc::Status status;
  std::string json;
  if (path == "/api/integrations/") {
    v1::ListConfiguredIntegrationsResponse response;
    status = stack.stub().ListConfiguredIntegrations(Context().get(), {},
                                                     &response);
    json = response.integrations();
  } else if (absl::ConsumePrefix(&path, "/api/integrations/instances/")) {
    v1::GetIntegrationInstanceRequest request;
    request.set_instance_id(std::string(path));
    v1::GetIntegrationInstanceResponse response;
    status = stack.stub().GetIntegrationInstance(Context().get(), request,
                                                 &response);
    json = response.instance();
  } else {
    REQUIRE(absl::ConsumePrefix(&path, "/api/integrations/"));
    REQUIRE(absl::ConsumeSuffix(&path, "/instances"));
    v1::ListIntegrationInstancesRequest request;
    request.set_name(std::string(path));
    v1::ListIntegrationInstancesResponse response;
    status = stack.stub().ListIntegrationInstances(Context().get(), request,
                                                   &response);
    json = response.instances();
  }
  INFO(status.error_message());
  REQUIRE(status.ok());
  return json;
}

TEST_CASE("iot2mqtt-config: instance CRUD over REST in upstream's shape",
          "[config][instances]") {
  ServiceStack stack;
  stack.StartConfig();
  stack.StartGateway();
  const std::string file = stack.instances_dir() + "/demo/home1.json";

  HttpResponse created = stack.Http("POST", "/api/instances", kCreateBody);
  INFO(created.body);
  REQUIRE(created.status == 200);
  rapidjson::Document created_doc = Parse(created.body);
  CHECK(created_doc["success"].IsTrue());
  CHECK(Str(created_doc, "instance_id") == "home1");

  // The file: upstream §5.3, secrets replaced by placeholders, 0600.
  std::string stored_text = ReadFile(file);
  CHECK_FALSE(absl::StrContains(stored_text, "\"p1\""));
  rapidjson::Document stored = Parse(stored_text);
  CHECK(Str(stored, "instance_id") == "home1");
  CHECK(Str(stored, "instance_type") == "device");
  CHECK(Str(stored, "connector_type") == "demo");
  CHECK(Str(stored, "friendly_name") == "Living room");
  REQUIRE(stored["connection"].IsObject());
  CHECK(Str(stored["connection"], "effect_type") == "smooth");
  CHECK(absl::StartsWith(Str(stored["connection"], "password"), "__SECRET__"));
  CHECK(Str(stored, "effect_type") == "smooth");  // The top-level copy.
  CHECK(absl::StartsWith(Str(stored, "password"), "__SECRET__"));
  REQUIRE(stored["devices"].IsArray());
  REQUIRE(stored["devices"].Size() == 1);
  CHECK(Str(stored["devices"][0], "device_id") == "d1");
  CHECK(stored["groups"].IsArray());
  CHECK(stored["enabled"].IsTrue());
  CHECK(stored["update_interval"].GetInt() == 10);
  const std::string created_at = Str(stored, "created_at");
  CHECK(absl::EndsWith(created_at, "Z"));
  CHECK(absl::EndsWith(Str(stored, "updated_at"), "Z"));
  struct stat st;
  REQUIRE(stat(file.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  // Ids are unique per connector and across connectors.
  CheckError(stack.Http("POST", "/api/instances", kCreateBody), 409,
             "INSTANCE_ALREADY_EXISTS");
  CheckError(
      stack.Http("POST", "/api/instances",
                 R"({"instance_id":"home1","connector_type":"yeelight"})"),
      409, "INSTANCE_ID_TAKEN");
  CHECK(access((stack.instances_dir() + "/yeelight/home1.json").c_str(),
               F_OK) != 0);
  // A second connector (not in the catalogue: its instances count anyway).
  REQUIRE(stack
              .Http("POST", "/api/instances",
                    R"({"instance_id":"lamp","connector_type":"yeelight",)"
                    R"("config":{"host":"192.0.2.7"}})")
              .status == 200);

  // Reads mask every secret.
  HttpResponse got = stack.Http("GET", "/api/instances/demo/home1");
  REQUIRE(got.status == 200);
  CHECK_FALSE(absl::StrContains(got.body, "\"p1\""));
  CHECK_FALSE(absl::StrContains(got.body, "__SECRET__"));
  rapidjson::Document got_doc = Parse(got.body);
  CHECK(Str(got_doc["connection"], "password") == kMask);
  CHECK(Str(got_doc, "password") == kMask);
  CHECK(Str(got_doc, "friendly_name") == "Living room");

  HttpResponse all = stack.Http("GET", "/api/instances");
  REQUIRE(all.status == 200);
  CHECK_FALSE(absl::StrContains(all.body, "\"p1\""));
  CHECK(Ids(Parse(all.body), "instance_id") ==
        std::vector<std::string>{"home1", "lamp"});
  CHECK(Ids(Parse(stack.Http("GET", "/api/instances?connector=demo").body),
            "instance_id") == std::vector<std::string>{"home1"});
  CHECK(Ids(Parse(stack.Http("GET", "/api/instances?connector=yeelight").body),
            "instance_id") == std::vector<std::string>{"lamp"});

  const std::string integrations_json = IntegrationView(stack, "/api/integrations/");
  CHECK_FALSE(absl::StrContains(integrations_json, "\"p1\""));
  rapidjson::Document integrations_doc = Parse(integrations_json);
  REQUIRE(Ids(integrations_doc, "name") ==
          std::vector<std::string>{"demo", "yeelight"});
  CHECK(integrations_doc[0]["instances_count"].GetInt() == 1);
  CHECK(Str(integrations_doc[0], "display_name") == "Demo devices");
  CHECK(integrations_doc[1]["instances_count"].GetInt() == 1);

  const std::string of_demo_json = IntegrationView(stack, "/api/integrations/demo/instances");
  rapidjson::Document of_demo_doc = Parse(of_demo_json);
  REQUIRE(Ids(of_demo_doc, "instance_id") == std::vector<std::string>{"home1"});
  CHECK(Str(of_demo_doc[0], "integration") == "demo");
  CHECK(Str(of_demo_doc[0], "friendly_name") == "Living room");
  CHECK(of_demo_doc[0]["device_count"].GetInt() == 1);
  CHECK(of_demo_doc[0]["enabled"].IsTrue());
  CHECK(Str(of_demo_doc[0], "created_at") == created_at);

  const std::string by_id_json = IntegrationView(stack, "/api/integrations/instances/home1");
  rapidjson::Document by_id_doc = Parse(by_id_json);
  CHECK(Str(by_id_doc, "instance_id") == "home1");
  CHECK(Str(by_id_doc, "integration") == "demo");
  CHECK(Str(by_id_doc["config"]["connection"], "password") == kMask);

  // A partial PUT changes what it names and keeps the rest.
  HttpResponse renamed = stack.Http("PUT", "/api/instances/demo/home1",
                                    R"({"friendly_name":"New"})");
  INFO(renamed.body);
  REQUIRE(renamed.status == 200);
  rapidjson::Document after_rename = Parse(ReadFile(file));
  CHECK(Str(after_rename, "friendly_name") == "New");
  CHECK(Str(after_rename["connection"], "effect_type") == "smooth");
  CHECK(Str(after_rename, "effect_type") == "smooth");
  CHECK(after_rename["devices"].Size() == 1);
  CHECK(after_rename["update_interval"].GetInt() == 10);
  CHECK(Str(after_rename, "created_at") == created_at);
  CHECK(Str(after_rename, "updated_at") >= created_at);
  CHECK(SecretValue(GetRuntime(stack.stub(), "demo", "home1"),
                    "connection.password") == "p1");

  // The UI sends back what it was shown: the mask keeps the stored secret.
  rapidjson::Document shown =
      Parse(stack.Http("GET", "/api/instances/demo/home1").body);
  HttpResponse resent = stack.Http(
      "PUT", "/api/instances/demo/home1",
      absl::StrCat(R"({"instance_id":"home1","connector_type":"demo",)",
                   R"("friendly_name":"New","enabled":true,)",
                   R"("update_interval":10,"devices":[{"device_id":"d1"}],)",
                   R"("config":{"password":")", kMask,
                   R"(","effect_type":"flash"}})"));
  INFO(resent.body);
  REQUIRE(resent.status == 200);
  Runtime runtime = GetRuntime(stack.stub(), "demo", "home1");
  CHECK(SecretValue(runtime, "connection.password") == "p1");
  CHECK(Str(runtime.instance["connection"], "password") ==
        "__SECRET__connection.password__");
  CHECK(Str(runtime.instance["connection"], "effect_type") == "flash");
  CHECK(Str(runtime.instance, "effect_type") == "flash");
  CHECK(Str(shown["connection"], "password") == kMask);

  // The whole document as shown (`connection`, masked top-level copies,
  // timestamps) is accepted back too; the path names the instance.
  rapidjson::Document whole =
      Parse(stack.Http("GET", "/api/instances/demo/home1").body);
  whole["friendly_name"].SetString("Again", whole.GetAllocator());
  whole["instance_id"].SetString("elsewhere", whole.GetAllocator());
  HttpResponse whole_put =
      stack.Http("PUT", "/api/instances/demo/home1", ToJson(whole));
  INFO(whole_put.body);
  REQUIRE(whole_put.status == 200);
  runtime = GetRuntime(stack.stub(), "demo", "home1");
  CHECK(Str(runtime.instance, "instance_id") == "home1");
  CHECK(Str(runtime.instance, "friendly_name") == "Again");
  CHECK(Str(runtime.instance, "created_at") == created_at);
  CHECK(SecretValue(runtime, "connection.password") == "p1");
  CHECK(SecretValue(runtime, "password") == "p1");
  CHECK(ListDir(stack.instances_dir() + "/demo") ==
        std::vector<std::string>{".history", "home1.json"});
  CHECK_FALSE(absl::StrContains(ReadFile(file), "\"p1\""));
  CHECK(FilesContaining(stack.data_dir(), "\"p1\"").empty());
  CHECK_FALSE(absl::StrContains(stack.Logs(0), "\"p1\""));

  // Delete: 200, then gone, a copy in the history, the secrets gone too.
  HttpResponse deleted = stack.Http("DELETE", "/api/instances/demo/home1");
  INFO(deleted.body);
  REQUIRE(deleted.status == 200);
  CHECK(Parse(deleted.body)["success"].IsTrue());
  CheckError(stack.Http("GET", "/api/instances/demo/home1"), 404,
             "INSTANCE_NOT_FOUND");
  {
    v1::GetIntegrationInstanceRequest request;
    request.set_instance_id("home1");
    v1::GetIntegrationInstanceResponse response;
    CHECK(stack.stub()
              .GetIntegrationInstance(Context().get(), request, &response)
              .error_code() == grpc::StatusCode::NOT_FOUND);
  }
  CheckError(stack.Http("DELETE", "/api/instances/demo/home1"), 404,
             "INSTANCE_NOT_FOUND");
  CHECK(access(file.c_str(), F_OK) != 0);
  const std::string history = stack.instances_dir() + "/demo/.history";
  std::vector<std::string> versions = ListDir(history);
  REQUIRE_FALSE(versions.empty());
  for (const std::string& version : versions) {
    INFO(version);
    CHECK(absl::StartsWith(version, "home1."));
    CHECK(absl::EndsWith(version, "Z.json"));
    std::string text = ReadFile(history + "/" + version);
    CHECK(IsJsonObject(text));
    CHECK_FALSE(absl::StrContains(text, "\"p1\""));
  }
  // The newest copy is the last version (names sort by time).
  rapidjson::Document newest = Parse(ReadFile(history + "/" + versions.back()));
  CHECK(Str(newest, "friendly_name") == "Again");
  CHECK(Str(newest["connection"], "effect_type") == "flash");
  v1::GetRuntimeConfigRequest gone;
  gone.set_connector("demo");
  gone.set_instance_id("home1");
  v1::GetRuntimeConfigResponse gone_response;
  CHECK(stack.stub()
            .GetRuntimeConfig(Context().get(), gone, &gone_response)
            .error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(Ids(Parse(stack.Http("GET", "/api/instances").body), "instance_id") ==
        std::vector<std::string>{"lamp"});
}

TEST_CASE(
    "iot2mqtt-config: odd files in the instance store never break a "
    "listing",
    "[config][instances]") {
  ServiceStack stack;
  stack.StartConfig();
  stack.StartGateway();
  REQUIRE(stack.Http("POST", "/api/instances", kCreateBody).status == 200);

  const std::string demo = stack.instances_dir() + "/demo";
  // Only the required keys, as an old or hand-written file may be.
  WriteFile(demo + "/bare.json", R"({"instance_id":"bare"})");
  // Optional keys of the wrong types, and an id that disagrees with the path.
  WriteFile(demo + "/typed.json",
            R"({"instance_id":"someone-else","friendly_name":5,)"
            R"("enabled":"yes","devices":"none","created_at":7,)"
            R"("connection":[1]})");
  WriteFile(demo + "/garbage.json", "{\"instance_id\": \"garb");
  WriteFile(demo + "/array.json", "[1, 2, 3]");
  WriteFile(demo + "/empty.json", "");
  WriteFile(demo + "/notes.txt", "not an instance");
  REQUIRE(mkdir((demo + "/folder.json").c_str(), 0755) == 0);
  REQUIRE(mkdir((stack.instances_dir() + "/Not A Connector").c_str(), 0755) ==
          0);
  WriteFile(stack.instances_dir() + "/Not A Connector/x.json", "{}");
  WriteFile(stack.instances_dir() + "/stray.json", "{}");

  HttpResponse all = stack.Http("GET", "/api/instances");
  INFO(all.body);
  REQUIRE(all.status == 200);
  rapidjson::Document listed = Parse(all.body);
  CHECK(Ids(listed, "instance_id") ==
        std::vector<std::string>{"bare", "home1", "typed"});
  for (const rapidjson::Value& item : listed.GetArray()) {
    CHECK(Str(item, "connector_type") == "demo");
  }
  CHECK(stack.Http("GET", "/api/instances?connector=demo").status == 200);

  const std::string of_demo_json = IntegrationView(stack, "/api/integrations/demo/instances");
  INFO(of_demo_json);
  rapidjson::Document of_demo_doc = Parse(of_demo_json);
  REQUIRE(Ids(of_demo_doc, "instance_id") ==
          std::vector<std::string>{"bare", "home1", "typed"});
  // Defaults for what is missing or unusable.
  for (int i : {0, 2}) {
    const rapidjson::Value& item = of_demo_doc[i];
    CHECK(Str(item, "friendly_name") == Str(item, "instance_id"));
    CHECK(item["enabled"].IsTrue());
    CHECK(item["device_count"].GetInt() == 0);
    CHECK(item["created_at"].IsNull());
  }

  const std::string integrations_json = IntegrationView(stack, "/api/integrations/");
  INFO(integrations_json);
  rapidjson::Document integrations_doc = Parse(integrations_json);
  REQUIRE(Ids(integrations_doc, "name") == std::vector<std::string>{"demo"});
  CHECK(integrations_doc[0]["instances_count"].GetInt() == 3);
  CHECK(stack.Http("GET", "/api/connectors").status == 200);

  // The unreadable one is an error a user can act on, never a 500.
  CheckError(stack.Http("GET", "/api/instances/demo/garbage"), 400,
             "INSTANCE_CORRUPT");
  CHECK(stack.Http("GET", "/api/instances/demo/bare").status == 200);
}

TEST_CASE(
    "iot2mqtt-config: MQTT settings are validated, stored without the "
    "password in .env, and keep other settings",
    "[config][settings]") {
  ServiceStack stack;
  const std::string original =
      "# written by hand\n"
      "OTHER=\"a # b \\\"q\\\"\"\n"
      "PLAIN=hello world # a comment\n"
      "SINGLE='it is \"x\" #1'\n"
      "export EXPORTED=yes\n"
      "MULTI=\"line1\nline2 # not a comment\"\n"
      "TAB=\"a\tb\"\n";
  WriteFile(stack.env_path(), original);
  stack.StartConfig();
  stack.StartGateway();

  HttpResponse bad =
      stack.Http("POST", "/api/mqtt/config",
                 R"({"host":"192.0.2.10","port":0,"qos":5,"keepalive":5,)"
                 R"("base_topic":"a/#","password":"mq-pass"})");
  rapidjson::Document bad_doc = CheckError(bad, 400, "INVALID_MQTT_SETTINGS");
  REQUIRE(bad_doc["details"].IsObject());
  for (const char* field : {"port", "qos", "keepalive", "base_topic"}) {
    INFO(field);
    CHECK(bad_doc["details"].HasMember(field));
    CHECK(absl::StrContains(Str(bad_doc, "error"), field));
  }
  CHECK_FALSE(bad_doc["details"].HasMember("host"));
  CHECK_FALSE(absl::StrContains(bad.body, "mq-pass"));
  CHECK(ReadFile(stack.env_path()) == original);
  CHECK(FilesContaining(stack.data_dir(), "mq-pass").empty());

  HttpResponse good = stack.Http(
      "POST", "/api/mqtt/config",
      R"({"host":"192.0.2.10","port":8883,"username":"iot","password":"mq-pass",)"
      R"("base_topic":"home/iot","client_prefix":"hub","qos":2,)"
      R"("retain":false,"keepalive":30})");
  INFO(good.body);
  REQUIRE(good.status == 200);
  CHECK(Parse(good.body)["success"].IsTrue());

  HttpResponse shown = stack.Http("GET", "/api/mqtt/config");
  REQUIRE(shown.status == 200);
  rapidjson::Document shown_doc = Parse(shown.body);
  CHECK(Str(shown_doc, "host") == "192.0.2.10");
  CHECK(shown_doc["port"].GetInt() == 8883);
  CHECK(Str(shown_doc, "username") == "iot");
  CHECK(Str(shown_doc, "password") == kMask);
  CHECK(Str(shown_doc, "base_topic") == "home/iot");
  CHECK(shown_doc["qos"].GetInt() == 2);
  CHECK(shown_doc["retain"].IsFalse());
  CHECK(shown_doc["keepalive"].GetInt() == 30);

  // .env: no password; the other settings mean what they meant.
  std::string env_text = ReadFile(stack.env_path());
  INFO(env_text);
  CHECK_FALSE(absl::StrContains(env_text, "mq-pass"));
  CHECK_FALSE(HasLineStartingWith(env_text, "MQTT_PASSWORD"));
  CHECK(FilesContaining(stack.data_dir(), "mq-pass").empty());
  std::map<std::string, std::string> env = ParseDotenv(env_text);
  CHECK(env["MQTT_HOST"] == "192.0.2.10");
  CHECK(env["MQTT_PORT"] == "8883");
  CHECK(env["MQTT_USERNAME"] == "iot");
  CHECK(env["MQTT_BASE_TOPIC"] == "home/iot");
  CHECK(env["OTHER"] == "a # b \"q\"");
  CHECK(env["PLAIN"] == "hello world");
  CHECK(env["SINGLE"] == "it is \"x\" #1");
  CHECK(env["EXPORTED"] == "yes");
  CHECK(env["MULTI"] == "line1\nline2 # not a comment");
  CHECK(env["TAB"] == "a\tb");
  struct stat st;
  REQUIRE(stat(stack.env_path().c_str(), &st) == 0);
  CHECK((st.st_mode & 0077) == 0);

  v1::MqttSettings resolved = ResolveMqtt(stack.stub());
  CHECK(resolved.password() == "mq-pass");
  CHECK(resolved.host() == "192.0.2.10");
  CHECK(resolved.port() == 8883);

  // The mask sent back keeps the password; everything else changes.
  HttpResponse again = stack.Http(
      "POST", "/api/mqtt/config",
      absl::StrCat(R"({"host":"192.0.2.11","port":1883,"username":"iot",)",
                   R"("password":")", kMask, R"("})"));
  INFO(again.body);
  REQUIRE(again.status == 200);
  resolved = ResolveMqtt(stack.stub());
  CHECK(resolved.password() == "mq-pass");
  CHECK(resolved.host() == "192.0.2.11");
  CHECK(ParseDotenv(ReadFile(stack.env_path()))["OTHER"] == "a # b \"q\"");

  // And all of it survives a restart.
  stack.StopConfig();
  stack.StartConfig();
  resolved = ResolveMqtt(stack.stub());
  CHECK(resolved.password() == "mq-pass");
  CHECK(resolved.host() == "192.0.2.11");
  REQUIRE(WaitFor(
      [&] { return stack.Http("GET", "/api/mqtt/config").status == 200; }));
  CHECK(Str(Parse(stack.Http("GET", "/api/mqtt/config").body), "password") ==
        kMask);
  CHECK(FilesContaining(stack.data_dir(), "mq-pass").empty());
  CHECK_FALSE(absl::StrContains(stack.Logs(0), "mq-pass"));
}

TEST_CASE(
    "iot2mqtt-config: MQTT_HOST and MQTT_PORT in the environment are "
    "the settings shown",
    "[config][settings]") {
  ServiceStack stack(
      harness::Env{{"MQTT_HOST", "127.0.0.1"}, {"MQTT_PORT", "1884"}});
  WriteFile(stack.env_path(), "MQTT_HOST=192.0.2.99\nMQTT_PORT=1999\n");
  stack.StartConfig();
  stack.StartGateway();
  HttpResponse shown = stack.Http("GET", "/api/mqtt/config");
  INFO(shown.body);
  REQUIRE(shown.status == 200);
  rapidjson::Document doc = Parse(shown.body);
  CHECK(Str(doc, "host") == "127.0.0.1");
  CHECK(doc["port"].GetInt() == 1884);
  CHECK(Str(doc, "password").empty());
  v1::MqttSettings resolved = ResolveMqtt(stack.stub());
  CHECK(resolved.host() == "127.0.0.1");
  CHECK(resolved.port() == 1884);
}

// --- SIGKILL during instance and settings writes ---------------------------

constexpr const char* kCrashIds[] = {"crash1", "crash2"};

// Every version sent so far, recorded before it is sent (a write may land
// even when the kill keeps the answer from arriving).
class Versions {
 public:
  void AddInstance(const std::string& name, const std::string& blob,
                   const std::string& password) {
    std::lock_guard<std::mutex> lock(mu_);
    blobs_[name] = blob;
    passwords_.insert(password);
  }
  void AddHost(const std::string& host, const std::string& password) {
    std::lock_guard<std::mutex> lock(mu_);
    hosts_.insert(host);
    mqtt_passwords_.insert(password);
  }
  // The blob written with friendly_name `name`, or nullopt.
  std::optional<std::string> Blob(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = blobs_.find(name);
    if (it == blobs_.end()) return std::nullopt;
    return it->second;
  }
  bool HasPassword(const std::string& password) {
    std::lock_guard<std::mutex> lock(mu_);
    return passwords_.count(password) > 0;
  }
  bool HasHost(const std::string& host) {
    std::lock_guard<std::mutex> lock(mu_);
    return hosts_.count(host) > 0;
  }
  bool HasMqttPassword(const std::string& password) {
    std::lock_guard<std::mutex> lock(mu_);
    return mqtt_passwords_.count(password) > 0;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> blobs_;
  std::set<std::string> passwords_;
  std::set<std::string> hosts_;
  std::set<std::string> mqtt_passwords_;
};

// Sends writes as fast as the service answers until stopped: instance
// updates (friendly_name carries a counter, the blob grows and shrinks up to
// 64 KiB, a new password each time) or MQTT settings.
class CrashWriter {
 public:
  enum class Kind { kInstance, kMqtt };
  CrashWriter(v1::ConfigService::Stub& stub, Versions& versions, Kind kind,
              int id)
      : stub_(stub), versions_(versions), kind_(kind), id_(id), rng_(id + 11) {
    thread_ = std::thread([this] { Run(); });
  }
  ~CrashWriter() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int successes() const { return successes_.load(); }

 private:
  void Run() {
    for (int seq = 0; !stop_; ++seq) {
      bool ok = kind_ == Kind::kInstance ? WriteInstance(seq) : WriteMqtt(seq);
      if (ok) ++successes_;
    }
  }

  bool WriteInstance(int seq) {
    const std::string name = absl::StrCat("v-", id_, "-", seq);
    const std::string blob(
        1 + (static_cast<size_t>(seq) * 7919 + rng_() % 4096) % 65536,
        static_cast<char>('a' + seq % 26));
    const std::string password = absl::StrCat("pw-", id_, "-", seq);
    versions_.AddInstance(name, blob, password);
    return UpdateInstance(stub_, "demo", kCrashIds[rng_() % 2],
                          absl::StrCat(R"({"friendly_name":")", name,
                                       R"(","config":{"blob":")", blob,
                                       R"(","password":")", password, R"("}})"),
                          2)
        .ok();
  }

  bool WriteMqtt(int seq) {
    const std::string host = absl::StrCat("broker-", id_, "-", seq, ".test");
    const std::string password = absl::StrCat("mqtt-pw-", id_, "-", seq);
    versions_.AddHost(host, password);
    v1::UpdateMqttSettingsRequest request;
    request.set_settings(absl::StrCat(R"({"host":")", host, R"(","password":")",
                                      password, R"("})"));
    v1::UpdateMqttSettingsResponse response;
    return stub_.UpdateMqttSettings(Context(2).get(), request, &response).ok();
  }

  v1::ConfigService::Stub& stub_;
  Versions& versions_;
  Kind kind_;
  int id_;
  std::mt19937 rng_;
  std::atomic<bool> stop_{false};
  std::atomic<int> successes_{0};
  std::thread thread_;
};

// Checks every instance file and .env on disk; returns the temporary files
// of interrupted writes in the instance directories.
std::set<std::string> CheckDisk(const ServiceStack& stack, Versions& versions) {
  std::set<std::string> temp_files;
  for (const std::string& connector : ListDir(stack.instances_dir())) {
    if (connector[0] == '.') continue;  // The lock file.
    REQUIRE(connector == "demo");
    const std::string dir = stack.instances_dir() + "/" + connector;
    for (const std::string& name : ListDir(dir)) {
      INFO(name);
      if (name[0] == '.') {
        if (absl::StrContains(name, ".tmp-")) temp_files.insert(name);
        continue;
      }
      REQUIRE((name == "crash1.json" || name == "crash2.json"));
      std::string text = ReadFile(dir + "/" + name);
      INFO(text.substr(0, 300));
      REQUIRE(IsJsonObject(text));
      rapidjson::Document doc = Parse(text);
      const std::string friendly_name = Str(doc, "friendly_name");
      std::optional<std::string> blob = versions.Blob(friendly_name);
      REQUIRE(blob.has_value());
      CHECK(Str(doc["connection"], "blob") == *blob);
      CHECK(Str(doc, "blob") == *blob);
      CHECK(Str(doc["connection"], "password") ==
            "__SECRET__connection.password__");
    }
  }
  std::string env_text = ReadFile(stack.env_path());
  INFO(env_text);
  std::map<std::string, std::string> env = ParseDotenv(env_text);
  CHECK(versions.HasHost(env["MQTT_HOST"]));
  CHECK_FALSE(HasLineStartingWith(env_text, "MQTT_PASSWORD"));
  CHECK_FALSE(absl::StrContains(env_text, "mqtt-pw-"));
  return temp_files;
}

// After a restart: the listings show exactly the instances, over gRPC and
// REST; every secret decrypts and is one that was written.
void CheckService(ServiceStack& stack, Versions& versions) {
  v1::ListInstancesResponse listed;
  grpc::Status status =
      stack.stub().ListInstances(Context().get(), {}, &listed);
  INFO(status.error_message());
  REQUIRE(status.ok());
  CHECK(Ids(Parse(listed.instances()), "instance_id") ==
        std::vector<std::string>{"crash1", "crash2"});
  HttpResponse rest;
  CHECK(WaitFor(
      [&] {
        rest = stack.Http("GET", "/api/instances");
        return rest.status == 200;
      },
      absl::Seconds(10)));
  INFO(rest.body.substr(0, 300));
  CHECK(Ids(Parse(rest.body), "instance_id") ==
        std::vector<std::string>{"crash1", "crash2"});
  for (const char* id : kCrashIds) {
    INFO(id);
    Runtime runtime = GetRuntime(stack.stub(), "demo", id);
    std::string password = SecretValue(runtime, "connection.password");
    CHECK(versions.HasPassword(password));
    CHECK(SecretValue(runtime, "password") == password);
  }
  v1::MqttSettings mqtt = ResolveMqtt(stack.stub());
  CHECK(versions.HasHost(mqtt.host()));
  CHECK(versions.HasMqttPassword(mqtt.password()));
}

TEST_CASE(
    "iot2mqtt-config: SIGKILL during instance and settings writes "
    "never leaves a torn file or an unreadable secret",
    "[config][crash]") {
  ServiceStack stack;
  stack.StartConfig();
  stack.StartGateway();
  Versions versions;
  for (const char* id : kCrashIds) {
    versions.AddInstance(id, "initial", "pw-initial");
    v1::CreateInstanceRequest request;
    request.set_instance(absl::StrCat(
        R"({"instance_id":")", id, R"(","connector_type":"demo",)",
        R"("friendly_name":")", id,
        R"(","config":{"blob":"initial","password":"pw-initial"}})"));
    v1::CreateInstanceResponse response;
    REQUIRE(
        stack.stub().CreateInstance(Context().get(), request, &response).ok());
  }
  versions.AddHost("broker-initial.test", "mqtt-pw-initial");
  v1::UpdateMqttSettingsRequest mqtt_request;
  mqtt_request.set_settings(
      R"({"host":"broker-initial.test","password":"mqtt-pw-initial"})");
  v1::UpdateMqttSettingsResponse mqtt_response;
  REQUIRE(stack.stub()
              .UpdateMqttSettings(Context().get(), mqtt_request, &mqtt_response)
              .ok());

  std::mt19937 rng(20240602);
  constexpr int kRounds = 20;
  int kills_mid_write = 0;
  std::set<std::string> temp_files;
  for (int round = 0; round < kRounds; ++round) {
    INFO("round " << round);
    CheckService(stack, versions);
    CrashWriter first(stack.stub(), versions, CrashWriter::Kind::kInstance,
                      3 * round);
    CrashWriter second(stack.stub(), versions, CrashWriter::Kind::kInstance,
                       3 * round + 1);
    CrashWriter third(stack.stub(), versions, CrashWriter::Kind::kMqtt,
                      3 * round + 2);
    const int target = 2 + static_cast<int>(rng() % 30);
    REQUIRE(WaitFor(
        [&] {
          return first.successes() + second.successes() >= target &&
                 third.successes() >= 1;
        },
        absl::Seconds(30)));
    stack.KillConfig();
    first.Stop();
    second.Stop();
    third.Stop();
    std::set<std::string> now = CheckDisk(stack, versions);
    if (!std::includes(temp_files.begin(), temp_files.end(), now.begin(),
                       now.end())) {
      ++kills_mid_write;  // A new temporary file: a write was cut short.
    }
    temp_files = std::move(now);
    stack.StartConfig();
  }
  CheckService(stack, versions);
  CheckDisk(stack, versions);
  std::cout << kRounds << " kills of instance/settings writers, "
            << kills_mid_write << " of them in the middle of a write; "
            << temp_files.size() << " temporary files left on disk\n";
}

// --- Concurrency and key rotation ------------------------------------------

TEST_CASE("iot2mqtt-config: concurrent updates of one instance lose nothing",
          "[config][instances]") {
  ServiceStack stack;
  stack.StartConfig();
  v1::CreateInstanceRequest create;
  create.set_instance(
      R"({"instance_id":"busy","connector_type":"demo","config":{}})");
  v1::CreateInstanceResponse created;
  REQUIRE(stack.stub().CreateInstance(Context().get(), create, &created).ok());

  constexpr int kThreads = 16;
  constexpr int kRounds = 4;
  std::atomic<int> ready{0};
  std::mutex errors_mu;
  std::vector<std::string> errors;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Each its own channel, connected before the start: the updates
      // really overlap at the server. (16 channels connecting at once
      // sometimes fail on the client side; that is not what is tested.)
      std::unique_ptr<v1::ConfigService::Stub> stub;
      WaitFor([&] {
        stub = harness::Connect(stack.config_port());
        v1::ListDeviceConfigsResponse response;
        return stub->ListDeviceConfigs(Context(1).get(), {}, &response).ok();
      });
      ++ready;
      while (ready.load() < kThreads) std::this_thread::yield();
      for (int round = 0; round < kRounds; ++round) {
        grpc::Status status =
            UpdateInstance(*stub, "demo", "busy",
                           absl::StrCat(R"({"config":{"key)", t, R"(":"value-)",
                                        t, "-", round, R"("}})"),
                           20);
        if (!status.ok()) {
          std::lock_guard<std::mutex> lock(errors_mu);
          errors.push_back(absl::StrCat("thread ", t, " round ", round, ": ",
                                        status.error_code(), " ",
                                        status.error_message()));
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CHECK(errors == std::vector<std::string>{});

  v1::GetInstanceRequest get;
  get.set_connector("demo");
  get.set_instance_id("busy");
  v1::GetInstanceResponse got;
  REQUIRE(stack.stub().GetInstance(Context().get(), get, &got).ok());
  rapidjson::Document doc = Parse(got.instance());
  REQUIRE(doc["connection"].IsObject());
  CHECK(doc["connection"].MemberCount() == kThreads);
  for (int t = 0; t < kThreads; ++t) {
    const std::string key = absl::StrCat("key", t);
    const std::string last = absl::StrCat("value-", t, "-", kRounds - 1);
    INFO(key);
    CHECK(Str(doc["connection"], key.c_str()) == last);
    CHECK(Str(doc, key.c_str()) == last);  // The top-level copy.
  }
  // History is bounded (INSTANCE_HISTORY_LIMIT, 10 by default).
  std::vector<std::string> history =
      ListDir(stack.instances_dir() + "/demo/.history");
  CHECK_FALSE(history.empty());
  CHECK(history.size() <= 10);
}

// The secrets directory: entry name → content (for files) or link target.
std::map<std::string, std::string> SecretsSnapshot(const std::string& dir) {
  std::map<std::string, std::string> snapshot;
  for (const std::string& name : ListDir(dir)) {
    const std::string path = dir + "/" + name;
    char target[4096];
    ssize_t n = readlink(path.c_str(), target, sizeof(target));
    if (n >= 0) snapshot[name] = "-> " + std::string(target, n);
  }
  for (const auto& [path, content] : harness::ReadTree(dir)) {
    snapshot[path.substr(dir.size() + 1)] = content;
  }
  return snapshot;
}

TEST_CASE(
    "iot2mqtt-config: RotateSecretsKey re-encrypts every secret under "
    "a new generation",
    "[config][secrets]") {
  ServiceStack stack;
  stack.StartConfig();
  v1::CreateInstanceRequest create;
  create.set_instance(
      R"({"instance_id":"rot","connector_type":"demo",)"
      R"("config":{"password":"rot-pass-1","api_token":"tok-9","mode":"x"}})");
  v1::CreateInstanceResponse created;
  REQUIRE(stack.stub().CreateInstance(Context().get(), create, &created).ok());
  v1::UpdateMqttSettingsRequest mqtt;
  mqtt.set_settings(R"({"host":"192.0.2.20","password":"mq-rot"})");
  v1::UpdateMqttSettingsResponse mqtt_response;
  REQUIRE(stack.stub()
              .UpdateMqttSettings(Context().get(), mqtt, &mqtt_response)
              .ok());

  const std::map<std::string, std::string> before =
      SecretsSnapshot(stack.secrets_dir());
  INFO("before: " << before.size() << " entries");
  REQUIRE(before.count("current") == 1);
  REQUIRE(before.count("gen-1/key") == 1);

  v1::RotateSecretsKeyResponse rotated;
  grpc::Status status =
      stack.stub().RotateSecretsKey(Context(20).get(), {}, &rotated);
  INFO(status.error_message());
  REQUIRE(status.ok());
  CHECK(rotated.owners() == 2);  // The instance and the platform settings.

  auto check_secrets = [&] {
    Runtime runtime = GetRuntime(stack.stub(), "demo", "rot");
    CHECK(SecretValue(runtime, "connection.password") == "rot-pass-1");
    CHECK(SecretValue(runtime, "connection.api_token") == "tok-9");
    CHECK(Str(runtime.instance["connection"], "mode") == "x");
    CHECK(ResolveMqtt(stack.stub()).password() == "mq-rot");
    CHECK(Str(runtime.secrets["env"], "MQTT_PASSWORD") == "mq-rot");
  };
  check_secrets();

  const std::map<std::string, std::string> after =
      SecretsSnapshot(stack.secrets_dir());
  CHECK(after.at("current") != before.at("current"));
  CHECK(absl::StrContains(after.at("current"), "gen-2"));
  CHECK(after.count("gen-1/key") == 0);  // The old generation is gone.
  REQUIRE(after.count("gen-2/key") == 1);
  CHECK(after.at("gen-2/key") != before.at("gen-1/key"));
  struct stat st;
  REQUIRE(stat((stack.secrets_dir() + "/gen-2/key").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0400);
  REQUIRE(after.count("gen-2/demo/rot.secret") == 1);
  CHECK(after.at("gen-2/demo/rot.secret") !=
        before.at("gen-1/demo/rot.secret"));
  CHECK(FilesContaining(stack.data_dir(), "rot-pass-1").empty());
  CHECK(FilesContaining(stack.data_dir(), "mq-rot").empty());

  // A restart opens the new generation, and writing secrets still works.
  stack.StopConfig();
  stack.StartConfig();
  check_secrets();
  REQUIRE(UpdateInstance(stack.stub(), "demo", "rot",
                         R"({"config":{"password":"rot-pass-2"}})")
              .ok());
  Runtime runtime = GetRuntime(stack.stub(), "demo", "rot");
  CHECK(SecretValue(runtime, "connection.password") == "rot-pass-2");
  CHECK(SecretValue(runtime, "connection.api_token") == "tok-9");
  CHECK(SecretsSnapshot(stack.secrets_dir()).count("gen-1/key") == 0);
}

}  // namespace
}  // namespace iot2mqtt::config
