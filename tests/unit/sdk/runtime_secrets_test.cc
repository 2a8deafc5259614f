#include "iot2mqtt/sdk/runtime_secrets.h"

#include <sys/stat.h>

#include <map>
#include <string>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "catch2/catch.hpp"
#include "iot2mqtt/sdk/dotenv.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/mqtt_client.h"
#include "tests/support/captured_log.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::sdk {
namespace {

using ::iot2mqtt::testing::CapturedLog;
using ::iot2mqtt::testing::TempDir;
using ::iot2mqtt::testing::WriteFile;

RuntimeSecrets SecretsWith(std::map<std::string, std::string> values) {
  RuntimeSecrets secrets;
  secrets.path = "/run/secrets/iot2mqtt.json";
  secrets.connector = "demo";
  secrets.instance = "living";
  secrets.values = std::move(values);
  return secrets;
}

std::string Apply(const std::string& json, const RuntimeSecrets& secrets) {
  absl::StatusOr<std::string> applied = ApplyRuntimeSecrets(json, secrets);
  INFO(applied.status().ToString());
  REQUIRE(applied.ok());
  return *applied;
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

TEST_CASE("ApplyRuntimeSecrets: placeholders at their own path get the value",
          "[unit][secrets]") {
  RuntimeSecrets secrets = SecretsWith({
      {"password", R"("top")"},
      {"connection.password", R"("p\"w ü")"},
      {"connection.auth", R"({"user":"u","pass":[1,2.50]})"},
      {"devices.1.token", "12345678901234567890"},
      {"groups.0.1.my__key", "null"},
      {"weird__", R"("w")"},
  });
  const std::string doc =
      R"({"password":"__SECRET__password__","n":1.10,)"
      R"("connection":{"password":"__SECRET__connection.password__",)"
      R"("auth":"__SECRET__connection.auth__"},)"
      R"("devices":[{"device_id":"a"},)"
      R"({"device_id":"b","token":"__SECRET__devices.1.token__"}],)"
      R"("groups":[[{},{"my__key":"__SECRET__groups.0.1.my__key__"}]],)"
      R"("weird__":"__SECRET__weird____"})";
  CHECK(Apply(doc, secrets) ==
        R"({"password":"top","n":1.10,)"
        R"("connection":{"password":"p\"w ü",)"
        R"("auth":{"user":"u","pass":[1,2.50]}},)"
        R"("devices":[{"device_id":"a"},)"
        R"({"device_id":"b","token":12345678901234567890}],)"
        R"("groups":[[{},{"my__key":null}]],)"
        R"("weird__":"w"})");
}

TEST_CASE(
    "ApplyRuntimeSecrets: a placeholder elsewhere or without a value "
    "stays",
    "[unit][secrets]") {
  RuntimeSecrets secrets = SecretsWith({{"password", R"("TopSecretValue")"}});
  CapturedLog log;
  // "name" carries another member's placeholder: it is not the place of
  // that value. devices.0.token has no value.
  const std::string doc =
      R"({"name":"__SECRET__password__",)"
      R"("devices":[{"token":"__SECRET__devices.0.token__"}],)"
      R"("list":["__SECRET__password__"]})";
  CHECK(Apply(doc, secrets) == doc);
  CHECK(absl::StrContains(log.text(), "WARNING"));
  CHECK(absl::StrContains(log.text(), "devices.0.token"));
  CHECK_FALSE(absl::StrContains(log.text(), "TopSecretValue"));
}

TEST_CASE("ApplyRuntimeSecrets: invalid JSON is INVALID_ARGUMENT",
          "[unit][secrets]") {
  absl::StatusOr<std::string> applied =
      ApplyRuntimeSecrets(R"({"password": "hunter2)", SecretsWith({}));
  REQUIRE(applied.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_FALSE(absl::StrContains(applied.status().message(), "hunter2"));
}

TEST_CASE("ParseRuntimeSecrets: the documented format", "[unit][secrets]") {
  absl::StatusOr<RuntimeSecrets> secrets = ParseRuntimeSecrets(
      R"({"version":1,"connector":"yeelight","instance":"living",)"
      R"("values":{"connection.password":"hunter2","n":1.0},)"
      R"("env":{"MQTT_PASSWORD":"mqtt-pw"},"future":true})",
      "/x/secrets.json");
  INFO(secrets.status().ToString());
  REQUIRE(secrets.ok());
  CHECK(secrets->path == "/x/secrets.json");
  CHECK(secrets->connector == "yeelight");
  CHECK(secrets->instance == "living");
  CHECK(secrets->values ==
        std::map<std::string, std::string>{
            {"connection.password", R"("hunter2")"}, {"n", "1.0"}});
  CHECK(secrets->env.Get("MQTT_PASSWORD") ==
        std::optional<std::string>("mqtt-pw"));
  CHECK_FALSE(secrets->env.Get("MQTT_USERNAME").has_value());
}

TEST_CASE(
    "ParseRuntimeSecrets: problems name the file and key, never a "
    "value",
    "[unit][secrets]") {
  const std::map<std::string, std::string> cases = {
      {R"({"version":2,"connector":"c","instance":"i"})", "version must be 1"},
      {R"({"connector":"c","instance":"i"})", "version is required"},
      {R"({"version":1,"instance":"i"})", "connector is required"},
      {R"({"version":1,"connector":"c","instance":"i",)"
       R"("env":{"MQTT_PASSWORD":["SecretValue1"]}})",
       "env.MQTT_PASSWORD must be a string"},
      {R"({"version":1,"connector":"c","instance":"i",)"
       R"("values":"SecretValue1"})",
       "values must be an object"},
      {R"(["SecretValue1"])", "expected a JSON object"},
      {R"({"version":1,"values":{"password":"SecretValue1)", "invalid JSON"},
  };
  for (const auto& [text, expected] : cases) {
    INFO(text);
    absl::StatusOr<RuntimeSecrets> secrets =
        ParseRuntimeSecrets(text, "/x/secrets.json");
    REQUIRE(secrets.status().code() == absl::StatusCode::kInvalidArgument);
    std::string message(secrets.status().message());
    CHECK(absl::StrContains(message, "/x/secrets.json"));
    CHECK(absl::StrContains(message, expected));
    CHECK_FALSE(absl::StrContains(message, "SecretValue1"));
  }
}

TEST_CASE("LoadRuntimeSecrets: a missing default file means no secrets",
          "[unit][secrets]") {
  if (Exists(kDefaultSecretsFile)) {
    WARN("skipped: " << kDefaultSecretsFile << " exists on this machine");
    return;
  }
  for (const MapEnv& env : {MapEnv(), MapEnv({{kSecretsFileVariable, ""}})}) {
    absl::StatusOr<RuntimeSecrets> secrets = LoadRuntimeSecrets(env);
    INFO(secrets.status().ToString());
    REQUIRE(secrets.ok());
    CHECK(secrets->path.empty());
    CHECK(secrets->values.empty());
    CHECK_FALSE(secrets->env.Get("MQTT_PASSWORD").has_value());
  }
}

TEST_CASE("LoadRuntimeSecrets: a missing named file is an error naming it",
          "[unit][secrets]") {
  TempDir dir;
  const std::string path = dir.Join("absent.json");
  absl::StatusOr<RuntimeSecrets> secrets =
      LoadRuntimeSecrets(MapEnv({{kSecretsFileVariable, path}}));
  REQUIRE(secrets.status().code() == absl::StatusCode::kNotFound);
  CHECK(absl::StrContains(secrets.status().message(), path));
  CHECK(absl::StrContains(secrets.status().message(), kSecretsFileVariable));
}

TEST_CASE(
    "LoadRuntimeSecrets: a malformed file is an error without its "
    "content",
    "[unit][secrets]") {
  TempDir dir;
  const std::string path = dir.Join("secrets.json");
  WriteFile(path, R"({"version":1,"values":{"password":"LeakedValue99" oops})");
  absl::StatusOr<RuntimeSecrets> secrets =
      LoadRuntimeSecrets(MapEnv({{kSecretsFileVariable, path}}));
  REQUIRE(secrets.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(absl::StrContains(secrets.status().message(), path));
  CHECK_FALSE(absl::StrContains(secrets.status().ToString(), "LeakedValue99"));

  // A directory where the file should be.
  absl::StatusOr<RuntimeSecrets> directory =
      LoadRuntimeSecrets(MapEnv({{kSecretsFileVariable, dir.path()}}));
  CHECK_FALSE(directory.ok());
  CHECK(absl::StrContains(directory.status().message(), dir.path()));
}

TEST_CASE("LoadRuntimeSecrets: reads the named file", "[unit][secrets]") {
  TempDir dir;
  const std::string path = dir.Join("secrets.json");
  WriteFile(path, R"({"version":1,"connector":"demo","instance":"living",)"
                  R"("values":{"connection.password":"pw"},"env":{}})");
  absl::StatusOr<RuntimeSecrets> secrets =
      LoadRuntimeSecrets(MapEnv({{kSecretsFileVariable, path}}));
  INFO(secrets.status().ToString());
  REQUIRE(secrets.ok());
  CHECK(secrets->path == path);
  CHECK(secrets->instance == "living");
  CHECK(secrets->values.at("connection.password") == R"("pw")");
}

TEST_CASE("SecretsFallbackEnv: process > .env file > secrets env",
          "[unit][secrets]") {
  RuntimeSecrets secrets = SecretsWith({});
  secrets.env.Set("MQTT_PASSWORD", "from-secrets");
  secrets.env.Set("MQTT_USERNAME", "secret-user");
  secrets.env.Set("MQTT_HOST", "secrets.example");

  MapEnv process({{"MQTT_HOST", "127.0.0.1"}, {"MQTT_USERNAME", ""}});
  MapEnv dotenv({{"MQTT_HOST", "dotenv.example"}, {"MQTT_PORT", "1884"}});
  LayeredEnv files(process, dotenv);
  SecretsFallbackEnv env(files, secrets);
  EnvReader reader(env);
  MqttSettings mqtt = ReadMqttSettings(reader);
  REQUIRE(reader.Finish().ok());
  CHECK(mqtt.host == "127.0.0.1");  // Process wins.
  CHECK(mqtt.port == 1884);         // .env file next.
  CHECK(mqtt.password == "from-secrets");
  CHECK(mqtt.username == "secret-user");  // An empty value falls through.

  MapEnv with_password({{"MQTT_PASSWORD", "from-process"}});
  SecretsFallbackEnv overridden(with_password, secrets);
  CHECK(overridden.Get("MQTT_PASSWORD") ==
        std::optional<std::string>("from-process"));
  CHECK_FALSE(overridden.Get("UNSET").has_value());
}

TEST_CASE("LoadInstanceConfigWithSecrets: the connector sees real values",
          "[unit][secrets]") {
  TempDir dir;
  const std::string path = dir.Join("living.json");
  WriteFile(path, R"({
    "instance_id": "living", "connector_type": "demo",
    "connection": {"host": "192.0.2.10",
                   "password": "__SECRET__connection.password__"},
    "password": "__SECRET__password__",
    "devices": [{"device_id": "light1", "token": "__SECRET__devices.0.token__",
                 "port": 55443}]
  })");
  RuntimeSecrets secrets = SecretsWith({{"connection.password", R"("cpw")"},
                                        {"password", R"("tpw")"},
                                        {"devices.0.token", R"("tok")"}});
  absl::StatusOr<InstanceConfig> config =
      LoadInstanceConfigWithSecrets(path, "living", "", secrets);
  INFO(config.status().ToString());
  REQUIRE(config.ok());
  CHECK(config->settings().GetString("password") == "tpw");
  CHECK(config->document.GetObject("connection").GetString("password") ==
        "cpw");
  REQUIRE(config->devices.size() == 1);
  CHECK(config->devices[0].entry.GetString("token") == "tok");
  CHECK(config->devices[0].entry.GetInt("port") == 55443);

  absl::StatusOr<InstanceConfig> missing = LoadInstanceConfigWithSecrets(
      dir.Join("absent.json"), "living", "", secrets);
  CHECK(missing.status().code() == absl::StatusCode::kNotFound);
  CHECK(absl::StrContains(missing.status().message(), "absent.json"));

  WriteFile(path, R"({"devices": [{"device_id": "a", "password": "ab)");
  absl::StatusOr<InstanceConfig> malformed =
      LoadInstanceConfigWithSecrets(path, "living", "", secrets);
  CHECK(malformed.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(absl::StrContains(malformed.status().message(), path));
}

}  // namespace
}  // namespace iot2mqtt::sdk
