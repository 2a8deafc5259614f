// Tool declarations in setup.json, the discovery declaration, secret
// masking and the clean tool environment.

#include <stdlib.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "services/common/status.h"
#include "services/discovery/tool_executor.h"

namespace iot2mqtt::discovery {
namespace {

std::string Setup(const std::string& tool_json) {
  return absl::StrCat(R"({"name":"demo","tools":{"probe":)", tool_json, "}}");
}

absl::Status ParseError(const std::string& tool_json) {
  absl::StatusOr<ToolDeclaration> tool =
      ParseToolDeclaration(Setup(tool_json), "demo", "probe");
  REQUIRE_FALSE(tool.ok());
  return tool.status();
}

bool HasVar(const std::vector<std::string>& env, const std::string& var) {
  return std::find(env.begin(), env.end(), var) != env.end();
}

bool HasName(const std::vector<std::string>& env, const std::string& name) {
  return std::any_of(env.begin(), env.end(), [&](const std::string& var) {
    return absl::StartsWith(var, name + "=");
  });
}

TEST_CASE("A minimal tool declaration gets upstream's defaults") {
  absl::StatusOr<ToolDeclaration> tool = ParseToolDeclaration(
      Setup(R"({"entry":"actions/probe.sh"})"), "demo", "probe");
  REQUIRE(tool.ok());
  CHECK(tool->id == "probe");
  CHECK(tool->entry == "actions/probe.sh");
  CHECK(tool->timeout == absl::Seconds(30));
  CHECK(tool->network == ToolNetwork::kNone);
  CHECK(tool->secrets.empty());
  CHECK(tool->environment.empty());
}

TEST_CASE("Every field of a tool declaration is read") {
  absl::StatusOr<ToolDeclaration> tool = ParseToolDeclaration(
      Setup(R"({"entry":"probe","timeout":600,"secrets":["password","token"],
               "environment":{"MODE":"fast","_X1":"${HOME}"},
               "network":"local","unknown_key":1})"),
      "demo", "probe");
  REQUIRE(tool.ok());
  CHECK(tool->timeout == absl::Seconds(600));
  CHECK(tool->secrets == std::vector<std::string>{"password", "token"});
  CHECK(tool->environment == std::vector<std::pair<std::string, std::string>>{
                                 {"MODE", "fast"}, {"_X1", "${HOME}"}});
  CHECK(tool->network == ToolNetwork::kLocal);
  absl::StatusOr<ToolDeclaration> internet = ParseToolDeclaration(
      Setup(R"({"entry":"probe","network":"internet","timeout":1})"), "demo",
      "probe");
  REQUIRE(internet.ok());
  CHECK(internet->network == ToolNetwork::kInternet);
  CHECK(internet->timeout == absl::Seconds(1));
}

TEST_CASE("Malformed tool declarations are INVALID_TOOL_DECLARATION") {
  const char* cases[] = {
      R"("probe.sh")",
      R"({"entry":42})",
      R"({"entry":"p","timeout":0})",
      R"({"entry":"p","timeout":601})",
      R"({"entry":"p","timeout":0.5})",
      R"({"entry":"p","timeout":"30"})",
      R"({"entry":"p","secrets":"password"})",
      R"({"entry":"p","secrets":["password",1]})",
      R"({"entry":"p","environment":["A=1"]})",
      R"({"entry":"p","environment":{"1ABC":"x"}})",
      R"({"entry":"p","environment":{"A-B":"x"}})",
      R"({"entry":"p","environment":{"A=B":"x"}})",
      R"({"entry":"p","environment":{"":"x"}})",
      R"({"entry":"p","environment":{"A":1}})",
      R"({"entry":"p","network":"host"})",
      R"({"entry":"p","network":true})",
  };
  for (const char* tool_json : cases) {
    INFO(tool_json);
    absl::Status status = ParseError(tool_json);
    CHECK(status.code() == absl::StatusCode::kFailedPrecondition);
    CHECK(common::ReasonOf(status) == "INVALID_TOOL_DECLARATION");
  }
  absl::StatusOr<ToolDeclaration> tools_not_object =
      ParseToolDeclaration(R"({"tools":["probe"]})", "demo", "probe");
  REQUIRE_FALSE(tools_not_object.ok());
  CHECK(common::ReasonOf(tools_not_object.status()) ==
        "INVALID_TOOL_DECLARATION");
}

TEST_CASE("An undeclared tool is TOOL_NOT_FOUND with upstream's message") {
  for (const std::string& setup :
       {Setup(R"({"entry":"p"})"), std::string(R"({"name":"demo"})")}) {
    absl::StatusOr<ToolDeclaration> tool =
        ParseToolDeclaration(setup, "demo", "scan");
    REQUIRE_FALSE(tool.ok());
    CHECK(tool.status().code() == absl::StatusCode::kNotFound);
    CHECK(common::ReasonOf(tool.status()) == "TOOL_NOT_FOUND");
    CHECK(tool.status().message() == "Tool 'scan' not found for demo");
  }
}

TEST_CASE("A tool without entry is TOOL_HAS_NO_ENTRY") {
  for (const char* tool_json :
       {R"({})", R"({"entry":""})", R"({"entry":null,"timeout":5})"}) {
    INFO(tool_json);
    absl::Status status = ParseError(tool_json);
    CHECK(status.code() == absl::StatusCode::kFailedPrecondition);
    CHECK(common::ReasonOf(status) == "TOOL_HAS_NO_ENTRY");
    CHECK(status.message() == "Tool 'probe' has no entry");
  }
}

TEST_CASE("A setup.json that is not a JSON object is INVALID_SETUP") {
  for (const char* setup : {"{", "[]", "", "{\"tools\":{}} x"}) {
    INFO(setup);
    absl::StatusOr<ToolDeclaration> tool =
        ParseToolDeclaration(setup, "demo", "probe");
    REQUIRE_FALSE(tool.ok());
    CHECK(common::ReasonOf(tool.status()) == "INVALID_SETUP");
    absl::StatusOr<DiscoveryDeclaration> discovery =
        ParseDiscoveryDeclaration(setup);
    REQUIRE_FALSE(discovery.ok());
    CHECK(common::ReasonOf(discovery.status()) == "INVALID_SETUP");
  }
}

TEST_CASE("The discovery declaration") {
  SECTION("absent or switched off: not supported") {
    for (const char* setup :
         {R"({"tools":{"scan":{"entry":"s"}}})", R"({"discovery":null})",
          R"({"discovery":{"supported":false,"tool":"missing"}})"}) {
      INFO(setup);
      absl::StatusOr<DiscoveryDeclaration> discovery =
          ParseDiscoveryDeclaration(setup);
      REQUIRE(discovery.ok());
      CHECK_FALSE(discovery->supported);
    }
  }
  SECTION("supported by default, with its own timeout") {
    absl::StatusOr<DiscoveryDeclaration> discovery = ParseDiscoveryDeclaration(
        R"({"discovery":{"tool":"scan","timeout":45,"protocol":"ssdp"},
            "tools":{"scan":{"entry":"s","timeout":15}}})");
    REQUIRE(discovery.ok());
    CHECK(discovery->supported);
    CHECK(discovery->tool == "scan");
    CHECK(discovery->timeout == absl::Seconds(45));
  }
  SECTION("without its own timeout: the tool's, else 30 s") {
    absl::StatusOr<DiscoveryDeclaration> tool_timeout =
        ParseDiscoveryDeclaration(
            R"({"discovery":{"supported":true,"tool":"scan"},
                "tools":{"scan":{"entry":"s","timeout":15}}})");
    REQUIRE(tool_timeout.ok());
    CHECK(tool_timeout->timeout == absl::Seconds(15));
    absl::StatusOr<DiscoveryDeclaration> fallback = ParseDiscoveryDeclaration(
        R"({"discovery":{"tool":"scan"},"tools":{"scan":{"entry":"s"}}})");
    REQUIRE(fallback.ok());
    CHECK(fallback->timeout == absl::Seconds(30));
  }
  SECTION("a missing or undeclared tool is INVALID_TOOL_DECLARATION") {
    for (const char* setup :
         {R"({"discovery":{"supported":true}})",
          R"({"discovery":{"tool":"scan"}})",
          R"({"discovery":{"tool":"scan"},"tools":{"other":{"entry":"o"}}})",
          R"({"discovery":{"tool":7},"tools":{"scan":{"entry":"s"}}})",
          R"({"discovery":{"tool":"scan","timeout":900},
              "tools":{"scan":{"entry":"s"}}})",
          R"({"discovery":"yes"})"}) {
      INFO(setup);
      absl::StatusOr<DiscoveryDeclaration> discovery =
          ParseDiscoveryDeclaration(setup);
      REQUIRE_FALSE(discovery.ok());
      CHECK(discovery.status().code() == absl::StatusCode::kFailedPrecondition);
      CHECK(common::ReasonOf(discovery.status()) == "INVALID_TOOL_DECLARATION");
    }
  }
}

TEST_CASE("MaskSecrets replaces every occurrence") {
  CHECK(MaskSecrets("user admin pw hunter2, again hunter2", {"hunter2"}) ==
        "user admin pw ******, again ******");
  CHECK(MaskSecrets("nothing here", {"hunter2"}) == "nothing here");
  CHECK(MaskSecrets("", {"hunter2"}).empty());
}

TEST_CASE("MaskSecrets leaves no part of nested or overlapping secrets") {
  // One secret contains the other: masked whole, in either order.
  CHECK(MaskSecrets("key=password123!", {"pass", "password123"}) ==
        "key=******!");
  CHECK(MaskSecrets("key=password123!", {"password123", "pass"}) ==
        "key=******!");
  // Overlapping secrets: neither "ab" of the first nor "ef" of the second
  // survives.
  std::string masked = MaskSecrets("x abcdef y", {"abcd", "cdef"});
  CHECK(masked == "x ****** y");
  // Overlapping occurrences of the same secret.
  CHECK(MaskSecrets("aaaa", {"aaa"}) == "******");
}

TEST_CASE("MaskSecrets ignores empty secrets") {
  CHECK(MaskSecrets("text", {""}) == "text");
  CHECK(MaskSecrets("top secret", {"", "secret"}) == "top ******");
}

TEST_CASE("SecretValues takes the declared input keys") {
  ToolDeclaration tool;
  tool.id = "probe";
  tool.secrets = {"password", "token", "pin", "empty", "absent", "flag"};
  std::vector<std::string> values =
      SecretValues(tool,
                   R"({"password":"a\"b","token":"t0k","pin":12345,"empty":"",
          "flag":true,"host":"192.0.2.1"})");
  CHECK(values == std::vector<std::string>{"a\"b", "a\\\"b", "t0k", "12345"});
  // Undeclared keys never count; unparsable input gives nothing.
  tool.secrets = {};
  CHECK(SecretValues(tool, R"({"password":"x"})").empty());
  tool.secrets = {"password"};
  CHECK(SecretValues(tool, "not json").empty());
}

TEST_CASE("The tool environment is clean") {
  REQUIRE(setenv("IOT2MQTT_TEST_SECRET_ENV", "leaked", 1) == 0);
  ToolExecutor executor(ToolExecutorOptions{});
  ToolDeclaration tool;
  tool.id = "probe";
  std::vector<std::string> env = executor.Environment(tool, {});
  CHECK(env == std::vector<std::string>{"PATH=/usr/local/bin:/usr/bin:/bin",
                                        "HOME=/tmp", "LANG=C.UTF-8",
                                        "IOT2MQTT_TOOL=probe"});
  CHECK_FALSE(HasName(env, "IOT2MQTT_TEST_SECRET_ENV"));

  ToolExecutorOptions options;
  options.passthrough_env = {"IOT2MQTT_TEST_SECRET_ENV=passed", "TZ=UTC",
                             "not a pair", "BAD-NAME=x"};
  ToolExecutor passing(std::move(options));
  env = passing.Environment(tool, {});
  CHECK(HasVar(env, "IOT2MQTT_TEST_SECRET_ENV=passed"));
  CHECK(HasVar(env, "TZ=UTC"));
  CHECK_FALSE(HasName(env, "BAD-NAME"));
  CHECK(env.size() == 6);
  unsetenv("IOT2MQTT_TEST_SECRET_ENV");
}

TEST_CASE("Declared environment values expand ${NAME} and ${NAME:-default}") {
  REQUIRE(setenv("IOT2MQTT_TEST_REGION", "eu", 1) == 0);
  REQUIRE(setenv("IOT2MQTT_TEST_EMPTY", "", 1) == 0);
  unsetenv("IOT2MQTT_TEST_UNSET");
  ToolExecutor executor(ToolExecutorOptions{});
  ToolDeclaration tool;
  tool.id = "probe";
  tool.environment = {
      {"A", "${IOT2MQTT_TEST_REGION}"},
      {"B", "x-${IOT2MQTT_TEST_UNSET}-y"},
      {"C", "${IOT2MQTT_TEST_UNSET:-fallback value}"},
      {"D", "${IOT2MQTT_TEST_REGION:-other}/${IOT2MQTT_TEST_EMPTY:-dflt}"},
      {"E", "$IOT2MQTT_TEST_REGION ${1X} ${A B} ${OPEN $$"},
      {"F", "${IOT2MQTT_TEST_UNSET:-}"},
  };
  std::vector<std::string> env = executor.Environment(tool, {});
  CHECK(HasVar(env, "A=eu"));
  CHECK(HasVar(env, "B=x--y"));
  CHECK(HasVar(env, "C=fallback value"));
  CHECK(HasVar(env, "D=eu/dflt"));
  CHECK(HasVar(env, "E=$IOT2MQTT_TEST_REGION ${1X} ${A B} ${OPEN $$"));
  CHECK(HasVar(env, "F="));
  unsetenv("IOT2MQTT_TEST_REGION");
  unsetenv("IOT2MQTT_TEST_EMPTY");
}

TEST_CASE("Later environment layers win, without duplicates") {
  ToolExecutorOptions options;
  options.passthrough_env = {"MODE=operator", "PATH=/opt/bin:/usr/bin",
                             "KEEP=1"};
  ToolExecutor executor(std::move(options));
  ToolDeclaration tool;
  tool.id = "probe";
  tool.environment = {{"MODE", "declared"}, {"LEVEL", "3"}};
  std::vector<std::string> env = executor.Environment(
      tool, {{"LEVEL", "extra"}, {"DISCOVERY_MODE", "true"}});
  CHECK(HasVar(env, "MODE=declared"));
  CHECK(HasVar(env, "PATH=/opt/bin:/usr/bin"));
  CHECK(HasVar(env, "KEEP=1"));
  CHECK(HasVar(env, "LEVEL=extra"));
  CHECK(HasVar(env, "DISCOVERY_MODE=true"));
  for (const char* name : {"MODE", "PATH", "LEVEL", "HOME"}) {
    INFO(name);
    CHECK(std::count_if(env.begin(), env.end(), [&](const std::string& var) {
            return absl::StartsWith(var, absl::StrCat(name, "="));
          }) == 1);
  }
}

}  // namespace
}  // namespace iot2mqtt::discovery
