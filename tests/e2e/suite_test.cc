// End to end: the real iot2mqtt-config and iot2mqtt-gateway binaries on free
// loopback ports, driven over HTTP/JSON and gRPC the way users drive them.

#include <signal.h>
#include <sys/stat.h>

#include <map>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "rapidjson/document.h"
#include "tests/support/reflection_client.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::testing {
namespace {

constexpr char kMac[] = "a4-cf-12-34-56-78";

rapidjson::Document Parse(const std::string& body) {
  rapidjson::Document doc;
  doc.Parse(body.c_str(), body.size());
  INFO(body);
  REQUIRE_FALSE(doc.HasParseError());
  return doc;
}

std::string Str(const rapidjson::Value& v, const char* key) {
  REQUIRE(v.HasMember(key));
  REQUIRE(v[key].IsString());
  return v[key].GetString();
}

// Asserts the unified error body and that it matches the response header.
void CheckErrorBody(const HttpResponse& r, int status,
                    const std::string& code) {
  INFO(r.body);
  CHECK(r.status == status);
  rapidjson::Document doc = Parse(r.body);
  CHECK(Str(doc, "code") == code);
  CHECK_FALSE(Str(doc, "error").empty());
  CHECK(Str(doc, "detail") == Str(doc, "error"));
  CHECK(doc.HasMember("details"));
  CHECK((doc["details"].IsNull() || doc["details"].IsObject()));
  CHECK(Str(doc, "correlationId") == r.Header("X-Correlation-ID"));
  CHECK_FALSE(r.Header("X-Correlation-ID").empty());
}

constexpr char kAccessKey[] = "e2e access key #1";

class Suite {
 public:
  explicit Suite(bool create_configs_dir = true) {
    configs_dir_ = dir_.Join("esp32-configs");
    if (create_configs_dir) REQUIRE(mkdir(configs_dir_.c_str(), 0755) == 0);
    config_port_ = FreePort();
    StartConfig();
    gateway_port_ = FreePort();
    auto gateway = ChildProcess::Start(
        BinaryPath("iot2mqtt-gateway"), {},
        {{"GATEWAY_LISTEN_ADDR", absl::StrCat("127.0.0.1:", gateway_port_)},
         {"CONFIG_SERVICE_ADDR", config_target()},
         {"LOG_LEVEL", "DEBUG"}},
        dir_.Join("gateway.log"));
    REQUIRE(gateway.ok());
    gateway_ = std::move(*gateway);
    REQUIRE(WaitFor([this] { return Get("/api/health").ok(); }));
    // Every call below carries a token, as the web UI's do.
    HttpResponse login = Call("POST", "/api/auth/login",
                              absl::StrCat(R"({"key":")", kAccessKey, "\"}"));
    INFO(login.body);
    REQUIRE(login.status == 200);
    token_ = Str(Parse(login.body), "token");
  }

  void StartConfig() {
    auto config = ChildProcess::Start(
        BinaryPath("iot2mqtt-config"), {},
        {{"ESP32_CONFIGS_DIR", configs_dir_},
         {"IOT2MQTT_DATA_DIR", dir_.Join("data")},
         {"IOT2MQTT_CONNECTORS_DIR", SourcePath("connectors")},
         {"WEB_ACCESS_KEY", kAccessKey},
         {"CONFIG_LISTEN_ADDR", config_target()},
         {"LOG_LEVEL", "DEBUG"}},
        dir_.Join("config.log"));
    REQUIRE(config.ok());
    config_ = std::move(*config);
    // Ready when it listens; until then the gateway rightly answers 503.
    REQUIRE(WaitFor([this] { return PortAccepts(config_port_); }));
  }

  absl::StatusOr<HttpResponse> Get(const std::string& target) {
    return HttpRequest(gateway_port_, "GET", target, "", AuthHeaders({}));
  }
  HttpResponse Call(
      const std::string& method, const std::string& target,
      const std::string& body = "",
      const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    auto r =
        HttpRequest(gateway_port_, method, target, body, AuthHeaders(headers));
    INFO(method << " " << target);
    REQUIRE(r.ok());
    return *r;
  }

  // `headers` plus the bearer token, unless they carry an Authorization
  // header of their own.
  std::vector<std::pair<std::string, std::string>> AuthHeaders(
      std::vector<std::pair<std::string, std::string>> headers) const {
    for (const auto& [name, value] : headers) {
      if (absl::EqualsIgnoreCase(name, "Authorization")) return headers;
    }
    if (!token_.empty()) {
      headers.emplace_back("Authorization", absl::StrCat("Bearer ", token_));
    }
    return headers;
  }
  const std::string& token() const { return token_; }
  int gateway_port() const { return gateway_port_; }
  const std::string& data_dir() { return data_dir_ = dir_.Join("data"); }

  std::string config_target() const {
    return absl::StrCat("127.0.0.1:", config_port_);
  }
  const std::string& configs_dir() const { return configs_dir_; }
  ChildProcess& config() { return *config_; }
  ChildProcess& gateway() { return *gateway_; }
  void StopConfig() { config_.reset(); }
  std::string Logs() {
    return ReadFile(dir_.Join("config.log")) +
           ReadFile(dir_.Join("gateway.log"));
  }

 private:
  TempDir dir_;
  std::string configs_dir_;
  int config_port_ = 0;
  int gateway_port_ = 0;
  std::unique_ptr<ChildProcess> config_;
  std::unique_ptr<ChildProcess> gateway_;
  std::string token_;
  std::string data_dir_;
};

TEST_CASE("Suite: device config lifecycle over REST", "[e2e]") {
  Suite suite;
  HttpResponse empty = suite.Call("GET", "/api/configs");
  CHECK(empty.status == 200);
  CHECK(empty.Header("Content-Type").find("application/json") == 0);
  CHECK(empty.body == R"({"configs":[],"count":0})");

  HttpResponse created = suite.Call(
      "PUT", absl::StrCat("/api/configs/", kMac),
      R"({"content": {"deviceName": "Kitchen", "deviceEntityId": "sensor.kitchen", "enableOTA": true, "pins": [4, 5]}})");
  REQUIRE(created.status == 200);
  rapidjson::Document doc = Parse(created.body);
  CHECK(Str(doc, "mac_address") == kMac);
  CHECK(Str(doc, "device_name") == "Kitchen");
  CHECK(Str(doc, "device_entity_id") == "sensor.kitchen");
  CHECK(doc["enable_ota"].GetBool());
  CHECK(doc["content"]["pins"][1].GetInt() == 5);

  // A second device with none of the summary keys: nulls, not missing keys.
  HttpResponse bare = suite.Call("PUT", "/api/configs/00-11-22-33-44-55",
                                 R"({"content": {"deviceName": 7}})");
  REQUIRE(bare.status == 200);
  rapidjson::Document bare_doc = Parse(bare.body);
  CHECK(bare_doc["device_name"].IsNull());
  CHECK(bare_doc["device_entity_id"].IsNull());
  CHECK(bare_doc["enable_ota"].IsNull());

  HttpResponse list = suite.Call("GET", "/api/configs");
  REQUIRE(list.status == 200);
  rapidjson::Document list_doc = Parse(list.body);
  CHECK(list_doc["count"].GetInt() == 2);
  REQUIRE(list_doc["configs"].Size() == 2);
  CHECK(Str(list_doc["configs"][0], "mac_address") == "00-11-22-33-44-55");
  CHECK(list_doc["configs"][0]["device_name"].IsNull());
  CHECK(Str(list_doc["configs"][1], "mac_address") == kMac);
  CHECK(Str(list_doc["configs"][1], "device_name") == "Kitchen");
  CHECK_FALSE(list_doc["configs"][1].HasMember("content"));

  HttpResponse updated = suite.Call(
      "PUT", absl::StrCat("/api/configs/", kMac),
      R"({"content": {"deviceName": "Pantry", "enableOTA": false}})");
  REQUIRE(updated.status == 200);
  HttpResponse fetched = suite.Call("GET", absl::StrCat("/api/configs/", kMac));
  REQUIRE(fetched.status == 200);
  rapidjson::Document fetched_doc = Parse(fetched.body);
  CHECK(Str(fetched_doc, "device_name") == "Pantry");
  CHECK_FALSE(fetched_doc["enable_ota"].GetBool());
  CHECK_FALSE(fetched_doc["content"].HasMember("pins"));

  // The file a device reads is the content, as a JSON object.
  rapidjson::Document on_disk =
      Parse(ReadFile(absl::StrCat(suite.configs_dir(), "/", kMac, ".json")));
  CHECK(Str(on_disk, "deviceName") == "Pantry");

  HttpResponse deleted =
      suite.Call("DELETE", absl::StrCat("/api/configs/", kMac));
  CHECK(deleted.status == 204);
  CHECK(deleted.body.empty());
  CheckErrorBody(suite.Call("GET", absl::StrCat("/api/configs/", kMac)), 404,
                 "DEVICE_CONFIG_NOT_FOUND");
  CheckErrorBody(suite.Call("DELETE", absl::StrCat("/api/configs/", kMac)), 404,
                 "DEVICE_CONFIG_NOT_FOUND");
  CHECK(ListDir(suite.configs_dir()) ==
        std::vector<std::string>{"00-11-22-33-44-55.json"});
}

TEST_CASE("Suite: content round-trips exactly", "[e2e]") {
  Suite suite;
  const std::string content =
      R"({"z":12345678901234567890,"a":0.1,"m":1e300,"neg":-9223372036854775808,)"
      R"("text":"h\u00e9llo ☃ 😀","nested":{"k2":[true,null,{"x":1.50}],"k1":""}})";
  const std::string expected =
      "{\"z\":12345678901234567890,\"a\":0.1,\"m\":1e300,\"neg\":-"
      "9223372036854775808,"
      "\"text\":\"h\xC3\xA9llo \xE2\x98\x83 \xF0\x9F\x98\x80\","
      "\"nested\":{\"k2\":[true,null,{\"x\":1.50}],\"k1\":\"\"}}";
  HttpResponse put = suite.Call("PUT", absl::StrCat("/api/configs/", kMac),
                                absl::StrCat(R"({"content":)", content, "}"));
  REQUIRE(put.status == 200);
  CHECK(put.body.find(absl::StrCat("\"content\":", expected)) !=
        std::string::npos);
  HttpResponse get = suite.Call("GET", absl::StrCat("/api/configs/", kMac));
  REQUIRE(get.status == 200);
  INFO(get.body);
  CHECK(get.body.find(absl::StrCat("\"content\":", expected)) !=
        std::string::npos);
}

TEST_CASE("Suite: bad input is 400 with the unified body and changes nothing",
          "[e2e]") {
  Suite suite;
  const std::string good = R"({"content": {"deviceName": "x"}})";
  for (const char* mac : {"A4-CF-12-34-56-78", "a4:cf:12:34:56:78",
                          "a4-cf-12-34-56", "a4-cf-12-34-56-78-9a", "%2e%2e",
                          "..%2f..%2fetc%2fpasswd", "a4-cf-12-34-56-7g",
                          "a4-cf-12-34-56-78.json", "a4-cf-12-34-56-78%00"}) {
    INFO(mac);
    CheckErrorBody(suite.Call("PUT", absl::StrCat("/api/configs/", mac), good),
                   400, "INVALID_MAC_ADDRESS");
    CheckErrorBody(suite.Call("GET", absl::StrCat("/api/configs/", mac)), 400,
                   "INVALID_MAC_ADDRESS");
  }
  const std::string target = absl::StrCat("/api/configs/", kMac);
  CHECK(suite.Call("PUT", target, R"({"content": [1, 2]})").status == 400);
  CHECK(suite.Call("PUT", target, R"({"content": "text"})").status == 400);
  CHECK(suite.Call("PUT", target, R"({})").status == 400);
  CHECK(suite.Call("PUT", target, R"({"content": {"a": }})").status == 400);
  CHECK(suite.Call("PUT", target, "not json").status == 400);
  CHECK(suite.Call("PUT", target, "{\"content\": {\"a\": \"\xC3\x28\"}}")
            .status == 400);
  CHECK(suite.Call("PUT", target, R"({"content": {}, "surprise": 1})").status ==
        400);
  CHECK(ListDir(suite.configs_dir()).empty());
}

TEST_CASE("Suite: the correlation id travels and is echoed", "[e2e]") {
  Suite suite;
  HttpResponse r = suite.Call("GET", "/api/configs/ff-ff-ff-ff-ff-ff", "",
                              {{"X-Correlation-ID", "trace-e2e-42"}});
  CHECK(r.Header("X-Correlation-ID") == "trace-e2e-42");
  CheckErrorBody(r, 404, "DEVICE_CONFIG_NOT_FOUND");
  // Both services logged the request under that id.
  REQUIRE(WaitFor([&] {
    std::string logs = suite.Logs();
    size_t first = logs.find("\"correlation_id\":\"trace-e2e-42\"");
    return first != std::string::npos &&
           logs.find("\"correlation_id\":\"trace-e2e-42\"", first + 1) !=
               std::string::npos;
  }));
}

TEST_CASE("Suite: health follows the configs directory", "[e2e]") {
  Suite suite(/*create_configs_dir=*/false);
  HttpResponse sick = suite.Call("GET", "/api/health");
  CHECK(sick.status == 503);
  rapidjson::Document doc = Parse(sick.body);
  CHECK(Str(doc, "status") == "unhealthy");
  CHECK(Str(doc, "reason").find(suite.configs_dir()) != std::string::npos);
  CheckErrorBody(suite.Call("PUT", absl::StrCat("/api/configs/", kMac),
                            R"({"content": {}})"),
                 503, "STORAGE_UNAVAILABLE");
  CheckErrorBody(suite.Call("GET", "/api/configs"), 503, "STORAGE_UNAVAILABLE");
  struct stat st;
  CHECK(stat(suite.configs_dir().c_str(), &st) != 0);  // Never auto-created.

  REQUIRE(mkdir(suite.configs_dir().c_str(), 0755) == 0);
  HttpResponse well = suite.Call("GET", "/api/health");
  CHECK(well.status == 200);
  CHECK(Str(Parse(well.body), "status") == "healthy");
  CHECK(suite
            .Call("PUT", absl::StrCat("/api/configs/", kMac),
                  R"({"content": {}})")
            .status == 200);
}

TEST_CASE("Suite: metrics count operations and requests", "[e2e]") {
  Suite suite;
  suite.Call("PUT", absl::StrCat("/api/configs/", kMac), R"({"content": {}})");
  suite.Call("GET", "/api/configs/00-00-00-00-00-01");
  suite.Call("GET", "/api/configs");
  // One wrong key and one request without a token (the suite's own login
  // was the one success).
  suite.Call("POST", "/api/auth/login", R"({"key":"wrong"})");
  suite.Call("GET", "/api/configs", "", {{"Authorization", "Bearer"}});
  HttpResponse metrics = suite.Call("GET", "/metrics");
  REQUIRE(metrics.status == 200);
  CHECK(metrics.Header("Content-Type").find("text/plain") == 0);
  const std::string& text = metrics.body;
  INFO(text.substr(0, 4000));
  CHECK(text.find("iot_config_operations_total{operation=\"save\",status="
                  "\"success\"} 1") != std::string::npos);
  CHECK(text.find("iot_config_operations_total{operation=\"get\",status="
                  "\"error\"} 1") != std::string::npos);
  CHECK(text.find("iot_config_files_count 1") != std::string::npos);
  CHECK(text.find("iot_config_operation_duration_seconds_bucket") !=
        std::string::npos);
  CHECK(text.find("iot_http_requests_total") != std::string::npos);
  CHECK(text.find("iot_http_request_duration_seconds") != std::string::npos);
  CHECK(text.find("iot_config_changes_total{action=\"updated\",kind=\"device_"
                  "config\"} 1") != std::string::npos);
  CHECK(text.find("iot_gateway_logins_total{outcome=\"success\"} 1") !=
        std::string::npos);
  CHECK(text.find("iot_gateway_logins_total{outcome=\"failure\"} 1") !=
        std::string::npos);
  CHECK(text.find(
            "iot_gateway_auth_rejections_total{reason=\"AUTH_REQUIRED\"} 1") !=
        std::string::npos);
}

TEST_CASE("Suite: API docs are served from the same descriptors", "[e2e]") {
  Suite suite;
  HttpResponse page = suite.Call("GET", "/api/docs");
  CHECK(page.status == 200);
  CHECK(page.Header("Content-Type").find("text/html") == 0);
  CHECK(page.body.find("/api/configs/{mac_address}") != std::string::npos);
  HttpResponse spec = suite.Call("GET", "/api/docs/openapi.json");
  REQUIRE(spec.status == 200);
  rapidjson::Document doc = Parse(spec.body);
  CHECK(Str(doc, "openapi").rfind("3.", 0) == 0);
  CHECK(doc["paths"].HasMember("/api/configs"));
  CHECK(doc["paths"]["/api/configs/{mac_address}"].HasMember("put"));
  CHECK(doc["paths"]["/api/configs/{mac_address}"].HasMember("delete"));
}

TEST_CASE("Suite: gRPC reflection lists and calls the config service",
          "[e2e]") {
  Suite suite;
  auto client = ReflectionClient::Connect(suite.config_target());
  REQUIRE(client.ok());
  auto services = (*client)->ListServices();
  REQUIRE(services.ok());
  for (const char* name :
       {"iot2mqtt.config.v1.ConfigService", "grpc.health.v1.Health",
        "iot2mqtt.telemetry.v1.TelemetryService"}) {
    INFO(name);
    CHECK(std::find(services->begin(), services->end(), name) !=
          services->end());
  }
  auto put = (*client)->Call(
      "iot2mqtt.config.v1.ConfigService", "UpdateDeviceConfig",
      R"({"mac_address": "a4-cf-12-34-56-78", "content": "{\"deviceName\":\"grpc\"}"})");
  REQUIRE(put.ok());
  auto list = (*client)->Call("iot2mqtt.config.v1.ConfigService",
                              "ListDeviceConfigs", "{}");
  REQUIRE(list.ok());
  CHECK(list->find("\"device_name\":\"grpc\"") != std::string::npos);
  auto bad = (*client)->Call("iot2mqtt.config.v1.ConfigService",
                             "GetDeviceConfig", R"({"mac_address": "../etc"})");
  CHECK(bad.status().code() == absl::StatusCode::kInvalidArgument);
  auto health = (*client)->Call("grpc.health.v1.Health", "Check", "{}");
  REQUIRE(health.ok());
  CHECK(health->find("SERVING") != std::string::npos);
}

TEST_CASE("Suite: config service down is 503 and recovers", "[e2e]") {
  Suite suite;
  suite.StopConfig();
  CheckErrorBody(suite.Call("GET", "/api/configs"), 503, "BACKEND_UNAVAILABLE");
  HttpResponse health = suite.Call("GET", "/api/health");
  CHECK(health.status == 503);
  suite.StartConfig();
  REQUIRE(
      WaitFor([&] { return suite.Call("GET", "/api/configs").status == 200; },
              absl::Seconds(20)));
}

TEST_CASE("Suite: SIGTERM stops both binaries cleanly", "[e2e]") {
  Suite suite;
  suite.gateway().Signal(SIGTERM);
  suite.config().Signal(SIGTERM);
  auto gateway_exit = suite.gateway().Wait(absl::Seconds(10));
  auto config_exit = suite.config().Wait(absl::Seconds(10));
  REQUIRE(gateway_exit.ok());
  REQUIRE(config_exit.ok());
  CHECK(*gateway_exit == 0);
  CHECK(*config_exit == 0);
}

TEST_CASE(
    "Suite: a missing ESP32_CONFIGS_DIR variable stops the service at start",
    "[e2e]") {
  TempDir dir;
  auto config = ChildProcess::Start(
      BinaryPath("iot2mqtt-config"), {},
      {{"CONFIG_LISTEN_ADDR", absl::StrCat("127.0.0.1:", FreePort())},
       {"LOG_LEVEL", "loud"}},
      dir.Join("config.log"));
  REQUIRE(config.ok());
  auto code = (*config)->Wait(absl::Seconds(10));
  REQUIRE(code.ok());
  CHECK(*code != 0);
  std::string log = ReadFile(dir.Join("config.log"));
  // Every problem at once, in one line.
  CHECK(log.find("ESP32_CONFIGS_DIR") != std::string::npos);
  CHECK(log.find("LOG_LEVEL") != std::string::npos);
}

}  // namespace
}  // namespace iot2mqtt::testing
