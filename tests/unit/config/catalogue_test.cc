#include "services/config/catalogue.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "catch2/catch.hpp"
#include "iot2mqtt/sdk/log.h"
#include "rapidjson/document.h"
#include "services/common/status.h"
#include "services/config/file_io.h"
#include "services/config/setup_schema.h"
#include "tests/support/captured_log.h"
#include "tests/support/test_support.h"
#include "tests/unit/config/config_test_util.h"

namespace iot2mqtt::config {
namespace {

using ::iot2mqtt::testing::CapturedLog;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::SourcePath;
using ::iot2mqtt::testing::TempDir;
using ::iot2mqtt::testing::WriteFile;

rapidjson::Document Parse(const std::string& json) {
  rapidjson::Document document;
  document.Parse(json.data(), json.size());
  INFO(json);
  REQUIRE(!document.HasParseError());
  return document;
}

std::string Str(const rapidjson::Value& value) {
  REQUIRE(value.IsString());
  return std::string(value.GetString(), value.GetStringLength());
}

std::vector<std::string> Keys(const rapidjson::Value& object) {
  std::vector<std::string> keys;
  for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
    keys.emplace_back(it->name.GetString());
  }
  return keys;
}

// The entry named `name` of a catalogue listing, or nullptr.
const rapidjson::Value* Entry(const rapidjson::Value& list,
                              const std::string& name) {
  for (const rapidjson::Value& entry : list.GetArray()) {
    if (Str(entry["name"]) == name) return &entry;
  }
  return nullptr;
}

std::vector<std::string> NamesOf(const rapidjson::Value& list) {
  std::vector<std::string> names;
  for (const rapidjson::Value& entry : list.GetArray()) {
    names.push_back(Str(entry["name"]));
  }
  return names;
}

void MakeDir(const std::string& path) {
  REQUIRE(mkdir(path.c_str(), 0755) == 0);
}

void SetMtime(const std::string& path, time_t seconds) {
  struct timespec times[2];
  times[0].tv_sec = seconds;
  times[0].tv_nsec = 0;
  times[1].tv_sec = seconds;
  times[1].tv_nsec = 0;
  REQUIRE(utimensat(AT_FDCWD, path.c_str(), times, 0) == 0);
}

// --------------------------------------------------------------------------
// Schema validation

constexpr char kFormStep[] =
    R"({"id":"basics","type":"form","schema":{"fields":[)"
    R"({"type":"text","name":"friendly_name","required":true}]}})";

// A setup.json with one flow whose steps are `steps` (a JSON array body).
std::string Doc(const std::string& steps, const std::string& tools = "{}",
                const std::string& extra = "") {
  return absl::StrCat(R"({"display_name":"Test",)", extra,
                      R"("flows":[{"id":"main","name":"Main","steps":[)", steps,
                      R"(]}],"tools":)", tools, "}");
}

std::string Describe(const std::vector<SchemaProblem>& problems) {
  std::string out;
  for (const SchemaProblem& p : problems) {
    absl::StrAppend(&out, p.path, ": ", p.message, "\n");
  }
  return out;
}

// Requires exactly one problem, at `path`, whose message contains `text`.
void RequireOneProblem(const std::string& json, const std::string& path,
                       const std::string& text) {
  std::vector<SchemaProblem> problems = ValidateSetupSchema(json);
  INFO(json);
  INFO(Describe(problems));
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].path == path);
  CHECK(absl::StrContains(problems[0].message, text));
}

TEST_CASE("Setup schema: the shipped connectors' setup.json files are valid",
          "[config][catalogue]") {
  for (const char* connector : {"_template", "demo", "yeelight"}) {
    INFO(connector);
    std::string setup = ReadFile(
        SourcePath(absl::StrCat("connectors/", connector, "/setup.json")));
    std::vector<SchemaProblem> problems = ValidateSetupSchema(setup);
    INFO(Describe(problems));
    CHECK(problems.empty());
    std::string manifest = ReadFile(
        SourcePath(absl::StrCat("connectors/", connector, "/manifest.json")));
    CHECK(Parse(manifest).IsObject());
  }
  rapidjson::Document yeelight =
      Parse(ReadFile(SourcePath("connectors/yeelight/setup.json")));
  CHECK(Str(yeelight["display_name"]) == "Yeelight");
  REQUIRE(yeelight["flows"].Size() > 0);
  CHECK(yeelight["flows"][0]["steps"].Size() > 0);
}

TEST_CASE("Setup schema: the shipped catalogue lists demo and Yeelight",
          "[config][catalogue]") {
  ConnectorCatalogue catalogue(SourcePath("connectors"));
  absl::StatusOr<std::string> available = catalogue.ListAvailableJson();
  REQUIRE(available.ok());
  rapidjson::Document list = Parse(*available);
  CHECK(NamesOf(list) == std::vector<std::string>{"demo", "yeelight"});
  for (const rapidjson::Value& entry : list.GetArray()) {
    INFO(Str(entry["name"]));
    CHECK(entry["problems"].Size() == 0);
  }
  const rapidjson::Value* yeelight = Entry(list, "yeelight");
  REQUIRE(yeelight != nullptr);
  CHECK(Str((*yeelight)["display_name"]) == "Yeelight");
  CHECK(Str((*yeelight)["default_flow"]) == "manual_entry");
  absl::StatusOr<std::string> meta = catalogue.GetMetaJson("yeelight");
  REQUIRE(meta.ok());
  CHECK(Str(Parse(*meta)["branding"]["color"]) == "#00a0e9");
}

TEST_CASE(
    "Setup schema: a valid document has no problems, and unknown keys and "
    "custom field types are accepted",
    "[config][catalogue]") {
  std::string steps = absl::StrCat(
      kFormStep,
      R"(,{"id":"scan","type":"form","x_layout":"wide","schema":{"fields":[)"
      R"({"type":"camera_stream_scanner","name":"stream",)"
      R"("config":{"host":"{{ form.basics.host }}"}}]}},)"
      R"({"id":"check","type":"tool","tool":"probe","input":{"a":"b"}},)"
      R"({"id":"done","type":"instance","instance":{"connector_type":"t"}})");
  std::string tools =
      R"({"probe":{"entry":"actions/probe","timeout":30,"network":"local",)"
      R"("secrets":["password"],"environment":{"MODE":"x"},)"
      R"("description":"kept"}})";
  std::vector<SchemaProblem> problems =
      ValidateSetupSchema(Doc(steps, tools, R"("x_vendor":{"a":1},)"));
  INFO(Describe(problems));
  CHECK(problems.empty());
}

TEST_CASE("Setup schema: each kind of problem is reported at its path",
          "[config][catalogue]") {
  SECTION("document") {
    RequireOneProblem("{not json", "", "invalid JSON");
    RequireOneProblem("[1]", "", "must be a JSON object");
  }
  SECTION("display_name") {
    RequireOneProblem(R"({"flows":[{"id":"a","name":"A","steps":[)" +
                          std::string(kFormStep) + "]}]}",
                      "display_name", "is required");
    RequireOneProblem(R"({"display_name":5,"flows":[{"id":"a","name":"A",)"
                      R"("steps":[)" +
                          std::string(kFormStep) + "]}]}",
                      "display_name", "must be a string");
  }
  SECTION("flows") {
    RequireOneProblem(R"({"display_name":"T"})", "flows", "is required");
    RequireOneProblem(R"({"display_name":"T","flows":[]})", "flows",
                      "at least one flow");
    RequireOneProblem(R"({"display_name":"T","flows":{}})", "flows",
                      "must be an array");
    std::string step = kFormStep;
    RequireOneProblem(
        R"({"display_name":"T","flows":[{"name":"A","steps":[)" + step + "]}]}",
        "flows[0].id", "is required");
    RequireOneProblem(
        R"({"display_name":"T","flows":[{"id":"a","steps":[)" + step + "]}]}",
        "flows[0].name", "is required");
    RequireOneProblem(R"({"display_name":"T","flows":[{"id":"a","name":"A",)"
                      R"("steps":[)" +
                          step + R"(]},{"id":"a","name":"B","steps":[)" + step +
                          "]}]}",
                      "flows[1].id", "duplicate flow id 'a'");
    RequireOneProblem(R"({"display_name":"T","flows":[{"id":"a","name":"A"}]})",
                      "flows[0].steps", "is required");
  }
  SECTION("steps") {
    RequireOneProblem(Doc(R"({"type":"form","schema":{"fields":[]}})"),
                      "flows[0].steps[0].id", "is required");
    RequireOneProblem(Doc(absl::StrCat(kFormStep, ",", kFormStep)),
                      "flows[0].steps[1].id", "duplicate step id 'basics'");
    RequireOneProblem(Doc(R"({"id":"w","type":"wizard"})"),
                      "flows[0].steps[0].type", "must be one of form, tool");
    RequireOneProblem(Doc(R"({"id":"w"})"), "flows[0].steps[0].type",
                      "is required");
    RequireOneProblem(Doc(R"({"id":"w","type":"form"})"),
                      "flows[0].steps[0].schema", "is required");
    RequireOneProblem(Doc(R"({"id":"w","type":"form","schema":{}})"),
                      "flows[0].steps[0].schema.fields", "is required");
    RequireOneProblem(Doc(R"({"id":"w","type":"form","schema":{"fields":{}}})"),
                      "flows[0].steps[0].schema.fields", "must be an array");
    RequireOneProblem(Doc(R"({"id":"w","type":"message","conditions":[1]})"),
                      "flows[0].steps[0].conditions", "must be an object");
    RequireOneProblem(
        Doc(R"({"id":"w","type":"message","auto_advance":"yes"})"),
        "flows[0].steps[0].auto_advance", "must be a boolean");
    RequireOneProblem(Doc(R"({"id":"i","type":"instance"})"),
                      "flows[0].steps[0].instance", "is required");
    RequireOneProblem(Doc(R"({"id":"o","type":"oauth","oauth":{}})"),
                      "flows[0].steps[0].oauth.provider", "is required");
  }
  SECTION("fields") {
    auto field_doc = [](const std::string& fields) {
      return Doc(R"({"id":"f","type":"form","schema":{"fields":[)" + fields +
                 "]}}");
    };
    const std::string base = R"({"type":"text","name":"a"})";
    RequireOneProblem(
        field_doc(base + R"(,{"type":"Camera Picker","name":"b"})"),
        "flows[0].steps[0].schema.fields[1].type", "custom field type");
    RequireOneProblem(field_doc(base + R"(,{"type":7,"name":"b"})"),
                      "flows[0].steps[0].schema.fields[1].type",
                      "must be a string");
    RequireOneProblem(field_doc(base + R"(,{"type":"text"})"),
                      "flows[0].steps[0].schema.fields[1].name", "is required");
    RequireOneProblem(field_doc(base + "," + base),
                      "flows[0].steps[0].schema.fields[1].name",
                      "duplicate field name 'a'");
    RequireOneProblem(field_doc(R"({"type":"select","name":"s"})"),
                      "flows[0].steps[0].schema.fields[0].options",
                      "is required");
    RequireOneProblem(
        field_doc(R"({"type":"select","name":"s","options":[{"value":1}]})"),
        "flows[0].steps[0].schema.fields[0].options[0].label", "is required");
    RequireOneProblem(
        field_doc(R"({"type":"select","name":"s","options":[{"label":"L"}]})"),
        "flows[0].steps[0].schema.fields[0].options[0].value", "is required");
    RequireOneProblem(field_doc(R"({"type":"text","name":"a","required":1})"),
                      "flows[0].steps[0].schema.fields[0].required",
                      "must be a boolean");
    RequireOneProblem(field_doc(R"({"type":"number","name":"a","min":"1"})"),
                      "flows[0].steps[0].schema.fields[0].min",
                      "must be a number");
    RequireOneProblem(
        field_doc(R"({"type":"text","name":"a","conditions":"x"})"),
        "flows[0].steps[0].schema.fields[0].conditions", "must be an object");
  }
  SECTION("tools") {
    const std::string tool_step =
        absl::StrCat(kFormStep, R"(,{"id":"t","type":"tool","tool":"probe"})");
    RequireOneProblem(Doc(tool_step), "flows[0].steps[1].tool",
                      "'probe', which is not declared in tools");
    auto tool_doc = [&](const std::string& tool) {
      return Doc(tool_step, R"({"probe":)" + tool + "}");
    };
    CHECK(
        ValidateSetupSchema(tool_doc(R"({"entry":"actions/probe"})")).empty());
    RequireOneProblem(tool_doc("{}"), "tools.probe.entry", "is required");
    RequireOneProblem(tool_doc(R"({"entry":"/bin/sh"})"), "tools.probe.entry",
                      "relative");
    RequireOneProblem(tool_doc(R"({"entry":"../other/tool"})"),
                      "tools.probe.entry", "'..'");
    RequireOneProblem(tool_doc(R"({"entry":"actions/../../x"})"),
                      "tools.probe.entry", "'..'");
    for (const char* timeout : {"0", "-5", "601", "1.5", "\"10\""}) {
      INFO(timeout);
      RequireOneProblem(
          tool_doc(absl::StrCat(R"({"entry":"a","timeout":)", timeout, "}")),
          "tools.probe.timeout", "positive integer");
    }
    CHECK(ValidateSetupSchema(tool_doc(R"({"entry":"a","timeout":600})"))
              .empty());
    RequireOneProblem(tool_doc(R"({"entry":"a","network":"lan"})"),
                      "tools.probe.network",
                      "must be one of none, local, internet");
    RequireOneProblem(tool_doc(R"({"entry":"a","secrets":["ok",1]})"),
                      "tools.probe.secrets[1]", "must be a string");
    RequireOneProblem(tool_doc(R"({"entry":"a","environment":{"A":1}})"),
                      "tools.probe.environment.A", "must be a string");
    RequireOneProblem(tool_doc(R"("actions/probe")"), "tools.probe",
                      "must be an object");
  }
  SECTION("multi_device") {
    RequireOneProblem(Doc(kFormStep, "{}", R"("multi_device":{},)"),
                      "multi_device.enabled", "is required");
    std::vector<SchemaProblem> problems = ValidateSetupSchema(
        Doc(kFormStep, "{}", R"("multi_device":{"enabled":true},)"));
    INFO(Describe(problems));
    REQUIRE(problems.size() == 2);
    CHECK(problems[0].path == "multi_device.loop_from_step");
    CHECK(problems[1].path == "multi_device.loop_to_step");
    RequireOneProblem(
        Doc(kFormStep, "{}",
            R"("multi_device":{"enabled":true,"loop_from_step":"basics",)"
            R"("loop_to_step":"nowhere"},)"),
        "multi_device.loop_to_step", "'nowhere', which no flow has");
    // Disabled: the loop bounds are not needed.
    CHECK(ValidateSetupSchema(
              Doc(kFormStep, "{}", R"("multi_device":{"enabled":false},)"))
              .empty());
  }
}

TEST_CASE("Setup schema: declared secret fields", "[config][catalogue]") {
  std::string setup =
      Doc(R"({"id":"f","type":"form","schema":{"fields":[)"
          R"({"type":"password","name":"password"},)"
          R"({"type":"text","name":"token","secret":true},)"
          R"({"type":"text","name":"host"},)"
          R"({"type":"text","name":"api_key","secret":false}]}},)"
          R"({"id":"t","type":"tool","tool":"probe"})",
          R"({"probe":{"entry":"a","secrets":["tool_only"]}})");
  CHECK(DeclaredSecretFields(setup) ==
        std::set<std::string>{"password", "token"});
  CHECK(DeclaredSecretFields("not json").empty());
}

// --------------------------------------------------------------------------
// Validate semantics

constexpr char kValidateSetup[] = R"({
  "display_name": "V",
  "flows": [
    {"id": "one", "name": "One", "steps": [
      {"id": "a", "type": "form", "schema": {"fields": [
        {"type": "text", "name": "host", "required": true,
         "pattern": "^[0-9.]+$"},
        {"type": "number", "name": "port", "min": 1, "max": 65535},
        {"type": "number", "name": "level", "min": 5, "max": 10.5},
        {"type": "checkbox", "name": "enabled"},
        {"type": "text", "name": "label", "min": 2}
      ]}}
    ]},
    {"id": "two", "name": "Two", "steps": [
      {"id": "b", "type": "form", "schema": {"fields": [
        {"type": "number", "name": "port", "min": 1024, "max": 65535},
        {"type": "text", "name": "code", "pattern": "("}
      ]}},
      {"id": "c", "type": "message"}
    ]}
  ]
})";

std::string Validate(const std::string& config) {
  absl::StatusOr<std::string> result =
      ValidateConfigAgainstSetup(kValidateSetup, config);
  INFO(result.status().ToString());
  REQUIRE(result.ok());
  return *result;
}

TEST_CASE("Validate: upstream's messages, exactly", "[config][catalogue]") {
  CHECK(Validate(R"({"host":"192.0.2.10","port":8080,"level":7})") ==
        R"({"valid":true,"errors":[],"warnings":[]})");
  CHECK(Validate(R"({"port":80})") ==
        R"({"valid":false,"errors":["Required field 'host' is missing",)"
        R"("Field 'port' must be >= 1024.0"],"warnings":[]})");
  CHECK(Validate(R"({"host":null})") ==
        R"({"valid":false,"errors":["Required field 'host' is missing"],)"
        R"("warnings":[]})");
  CHECK(Validate(R"({"host":"1.2","level":2.5})") ==
        R"({"valid":false,"errors":["Field 'level' must be >= 5.0"],)"
        R"("warnings":[]})");
  CHECK(Validate(R"({"host":"1.2","level":11,"port":70000})") ==
        R"({"valid":false,"errors":["Field 'port' must be <= 65535.0",)"
        R"("Field 'level' must be <= 10.5"],"warnings":[]})");
  CHECK(Validate(R"({"host":"web.example","enabled":"yes"})") ==
        R"({"valid":false,"errors":["Field 'host' value does not match )"
        R"(pattern","Field 'enabled' must be boolean"],"warnings":[]})");
  CHECK(Validate(R"({"host":"1","extra":1,"_private":2})") ==
        R"({"valid":true,"errors":[],"warnings":["Unknown field 'extra'"]})");
  CHECK(Validate(R"({"host":"1","code":"x"})") ==
        R"({"valid":false,"errors":["Field 'code' has an invalid pattern )"
        R"(in setup.json"],"warnings":[]})");
}

TEST_CASE(
    "Validate: booleans are not numbers, and non-numeric values for min/max "
    "fields are errors, not crashes",
    "[config][catalogue]") {
  CHECK(Validate(R"({"host":"1","port":true})") ==
        R"({"valid":false,"errors":["Field 'port' must be numeric"],)"
        R"("warnings":[]})");
  CHECK(Validate(R"({"host":"1","level":"high","label":"abc"})") ==
        R"({"valid":false,"errors":["Field 'level' must be numeric",)"
        R"("Field 'label' must be numeric"],"warnings":[]})");
  CHECK(Validate(R"({"host":"1","level":[5]})") ==
        R"({"valid":false,"errors":["Field 'level' must be numeric"],)"
        R"("warnings":[]})");
  // A value std::regex would overflow the stack on is refused, not matched.
  std::string long_value(200000, '1');
  CHECK(Validate(absl::StrCat(R"({"host":")", long_value, R"("})")) ==
        R"({"valid":false,"errors":["Field 'host' value does not match )"
        R"(pattern"],"warnings":[]})");
}

TEST_CASE("Validate: the Yeelight example of docs/setup-flows.md",
          "[config][catalogue]") {
  absl::StatusOr<std::string> result = ValidateConfigAgainstSetup(
      ReadFile(SourcePath("connectors/yeelight/setup.json")),
      R"({"ip":"bulb.local","friendly_name":"Desk","duration":5,)"
      R"("colour":"red"})");
  REQUIRE(result.ok());
  CHECK(*result ==
        R"({"valid":false,"errors":["Field 'ip' value does not match )"
        R"(pattern","Field 'duration' must be >= 30.0"],)"
        R"("warnings":["Unknown field 'colour'"]})");
}

TEST_CASE("Validate: config and setup that are not objects",
          "[config][catalogue]") {
  for (const char* config : {"[]", "5", "\"x\"", "{", ""}) {
    INFO(config);
    RequireError(ValidateConfigAgainstSetup(kValidateSetup, config).status(),
                 absl::StatusCode::kInvalidArgument, kInvalidConfig);
  }
  RequireError(ValidateConfigAgainstSetup("[]", "{}").status(),
               absl::StatusCode::kFailedPrecondition, kSetupSchemaInvalid);
}

TEST_CASE("Validate: bounds print like Python floats", "[config][catalogue]") {
  CHECK(PythonFloatRepr(5) == "5.0");
  CHECK(PythonFloatRepr(2.5) == "2.5");
  CHECK(PythonFloatRepr(-3) == "-3.0");
  CHECK(PythonFloatRepr(0) == "0.0");
  CHECK(PythonFloatRepr(0.1) == "0.1");
  CHECK(PythonFloatRepr(65535) == "65535.0");
  CHECK(PythonFloatRepr(0.0001) == "0.0001");
  CHECK(PythonFloatRepr(0.00001) == "1e-05");
  CHECK(PythonFloatRepr(1e15) == "1000000000000000.0");
  CHECK(PythonFloatRepr(1e16) == "1e+16");
  CHECK(PythonFloatRepr(1.5e300) == "1.5e+300");
  CHECK(PythonFloatRepr(123456789012345678.0) == "1.2345678901234568e+17");
}

// --------------------------------------------------------------------------
// The catalogue over real folders

constexpr char kAlphaSetup[] = R"({
  "version": "2.0.0",
  "display_name": "Alpha",
  "description": "Alpha lamps",
  "author": "Ada",
  "x_vendor": {"precise": 1.50, "big": 12345678901234567890},
  "discovery": {"supported": true},
  "flows": [
    {"id": "quick", "name": "Quick", "steps": [
      {"id": "s", "type": "form", "schema": {"fields": [
        {"type": "text", "name": "host", "required": true},
        {"type": "password", "name": "password"},
        {"type": "camera_stream_scanner", "name": "scan",
         "config": {"host": "{{ form.s.host }}"}}
      ]}}
    ]},
    {"id": "full", "name": "Full", "description": "Everything", "default": true,
     "steps": [{"id": "m", "type": "message"}]}
  ]
})";

// connectors/ with: alpha (setup, manifest, icon), bare (manifest only),
// broken (setup.json not JSON), invalid (schema problems), _template and
// .hidden (valid setups), Bad_Name (valid setup), and a regular file.
class Fixture {
 public:
  Fixture() : dir(temp.Join("connectors")) {
    MakeDir(dir);
    MakeConnector("alpha", kAlphaSetup,
                  R"({"name":"alpha","version":"2.1.0",)"
                  R"("capabilities":{"lights":true}})");
    WriteFile(dir + "/alpha/icon.svg", "<svg>alpha</svg>");
    MakeConnector("bare", "",
                  R"({"name":"bare","display_name":"Bare Metal",)"
                  R"("description":"No setup"})");
    MakeConnector("broken", "{\"display_name\": \"Broken\",", "");
    MakeConnector("invalid",
                  R"({"display_name":"Invalid","flows":[{"id":"x"}]})", "");
    MakeConnector("_template", Doc(kFormStep), "");
    MakeConnector(".hidden", Doc(kFormStep), "");
    MakeConnector("Bad_Name", Doc(kFormStep), "");
    WriteFile(dir + "/CMakeLists.txt", "add_subdirectory(alpha)\n");
  }

  void MakeConnector(const std::string& name, const std::string& setup,
                     const std::string& manifest) {
    MakeDir(dir + "/" + name);
    if (!setup.empty()) WriteFile(dir + "/" + name + "/setup.json", setup);
    if (!manifest.empty()) {
      WriteFile(dir + "/" + name + "/manifest.json", manifest);
    }
  }

  TempDir temp;
  std::string dir;
};

TEST_CASE(
    "Catalogue: /api/connectors lists every connector folder, with or "
    "without setup.json, and no templates",
    "[config][catalogue]") {
  Fixture fx;
  ConnectorCatalogue catalogue(fx.dir);
  absl::StatusOr<std::string> json =
      catalogue.ListConnectorsJson({{"alpha", {"kitchen", "hall"}}});
  REQUIRE(json.ok());
  rapidjson::Document list = Parse(*json);
  CHECK(NamesOf(list) ==
        std::vector<std::string>{"alpha", "bare", "broken", "invalid"});
  CHECK(catalogue.Names() == NamesOf(list));

  const rapidjson::Value& alpha = *Entry(list, "alpha");
  CHECK(Keys(alpha) == std::vector<std::string>{
                           "name", "display_name", "description", "icon",
                           "instances", "has_setup", "version", "problems"});
  CHECK(Str(alpha["display_name"]) == "Alpha");
  CHECK(Str(alpha["description"]) == "Alpha lamps");
  CHECK(Str(alpha["icon"]) == "/api/integrations/alpha/icon");
  REQUIRE(alpha["instances"].Size() == 2);
  CHECK(Str(alpha["instances"][0]) == "kitchen");
  CHECK(alpha["has_setup"].GetBool());
  CHECK(Str(alpha["version"]) == "2.1.0");  // manifest ∥ setup
  CHECK(alpha["problems"].Size() == 0);

  const rapidjson::Value& bare = *Entry(list, "bare");
  CHECK(!bare["has_setup"].GetBool());
  CHECK(Str(bare["display_name"]) == "Bare Metal");
  CHECK(Str(bare["description"]) == "No setup");
  CHECK(bare["icon"].IsNull());
  CHECK(bare["instances"].Size() == 0);
  CHECK(bare["version"].IsNull());

  const rapidjson::Value& broken = *Entry(list, "broken");
  CHECK(Str(broken["display_name"]) == "broken");  // falls back to the name
  REQUIRE(broken["problems"].Size() == 1);
  CHECK(Str(broken["problems"][0]["path"]) == "setup.json");
  CHECK(
      absl::StrContains(Str(broken["problems"][0]["message"]), "invalid JSON"));
}

TEST_CASE(
    "Catalogue: /api/connectors/available lists setups, invalid ones "
    "with their problems",
    "[config][catalogue]") {
  Fixture fx;
  ConnectorCatalogue catalogue(fx.dir);
  absl::StatusOr<std::string> json = catalogue.ListAvailableJson();
  REQUIRE(json.ok());
  rapidjson::Document list = Parse(*json);
  CHECK(NamesOf(list) ==
        std::vector<std::string>{"alpha", "broken", "invalid"});

  const rapidjson::Value& alpha = *Entry(list, "alpha");
  CHECK(Keys(alpha) ==
        std::vector<std::string>{"name", "display_name", "version", "author",
                                 "description", "branding", "discovery",
                                 "capabilities", "default_flow", "flows",
                                 "problems"});
  CHECK(Str(alpha["author"]) == "Ada");
  CHECK(alpha["discovery"]["supported"].GetBool());
  CHECK(alpha["capabilities"]["lights"].GetBool());
  CHECK(Str(alpha["default_flow"]) == "full");
  REQUIRE(alpha["flows"].Size() == 2);
  CHECK(Str(alpha["flows"][0]["id"]) == "quick");
  CHECK(alpha["flows"][0]["description"].IsNull());
  CHECK(Str(alpha["flows"][1]["description"]) == "Everything");
  CHECK(Str(alpha["branding"]["icon"]) == "/api/integrations/alpha/icon");
  CHECK(alpha["problems"].Size() == 0);

  const rapidjson::Value& broken = *Entry(list, "broken");
  CHECK(broken["problems"].Size() == 1);
  CHECK(broken["flows"].IsNull());
  CHECK(broken["default_flow"].IsNull());
  CHECK(Str(broken["author"]) == "Unknown");

  const rapidjson::Value& invalid = *Entry(list, "invalid");
  CHECK(Str(invalid["display_name"]) == "Invalid");
  REQUIRE(invalid["problems"].Size() == 2);
  CHECK(Str(invalid["problems"][0]["path"]) == "flows[0].name");
  CHECK(Str(invalid["problems"][1]["path"]) == "flows[0].steps");
  REQUIRE(invalid["flows"].Size() == 1);
  CHECK(Str(invalid["flows"][0]["id"]) == "x");
  CHECK(invalid["flows"][0]["name"].IsNull());
}

TEST_CASE("Catalogue: /api/integrations keeps branding",
          "[config][catalogue]") {
  Fixture fx;
  ConnectorCatalogue catalogue(fx.dir);
  absl::StatusOr<std::string> json = catalogue.ListIntegrationsJson();
  REQUIRE(json.ok());
  rapidjson::Document list = Parse(*json);
  const rapidjson::Value& bare = *Entry(list, "bare");
  CHECK(Keys(bare) == std::vector<std::string>{
                          "name", "display_name", "description", "icon",
                          "has_setup", "version", "branding", "problems"});
  CHECK(Str(bare["branding"]["color"]) == "#6366F1");
  CHECK(Str(bare["branding"]["icon"]) == "/assets/default-icon.svg");
}

TEST_CASE("Catalogue: meta keeps unknown keys and adds branding defaults",
          "[config][catalogue]") {
  Fixture fx;
  ConnectorCatalogue catalogue(fx.dir);
  absl::StatusOr<std::string> meta = catalogue.GetMetaJson("alpha");
  REQUIRE(meta.ok());
  // Unknown keys, field-level config and numbers' text survive.
  CHECK(absl::StrContains(
      *meta, R"("x_vendor":{"precise":1.50,"big":12345678901234567890})"));
  CHECK(absl::StrContains(*meta, R"("config":{"host":"{{ form.s.host }}"})"));
  rapidjson::Document document = Parse(*meta);
  CHECK(Str(document["display_name"]) == "Alpha");
  CHECK(Str(document["icon_url"]) == "/api/integrations/alpha/icon");
  const rapidjson::Value& branding = document["branding"];
  CHECK(Str(branding["color"]) == "#6366F1");
  CHECK(Str(branding["category"]) == "general");
  CHECK(Str(branding["background"]) ==
        "linear-gradient(135deg, #667eea 0%, #764ba2 100%)");
  CHECK(Str(branding["icon"]) == "/api/integrations/alpha/icon");
  CHECK(document["problems"].Size() == 0);

  SECTION("partial branding is filled; no icon means the default icon") {
    WriteFile(fx.dir + "/alpha/setup.json",
              Doc(kFormStep, "{}",
                  R"("branding":{"color":"#000000","x_theme":"dark"},)"));
    REQUIRE(unlink((fx.dir + "/alpha/icon.svg").c_str()) == 0);
    meta = catalogue.GetMetaJson("alpha");
    REQUIRE(meta.ok());
    rapidjson::Document filled = Parse(*meta);
    CHECK(Str(filled["branding"]["color"]) == "#000000");
    CHECK(Str(filled["branding"]["x_theme"]) == "dark");
    CHECK(Str(filled["branding"]["category"]) == "general");
    CHECK(Str(filled["branding"]["icon"]) == "/assets/default-icon.svg");
    CHECK(!filled.HasMember("icon_url"));
  }
}

TEST_CASE("Catalogue: setup, meta and validate errors", "[config][catalogue]") {
  Fixture fx;
  ConnectorCatalogue catalogue(fx.dir);
  RequireError(catalogue.GetMetaJson("nothere").status(),
               absl::StatusCode::kNotFound, kConnectorNotFound);
  RequireError(catalogue.GetMetaJson("bare").status(),
               absl::StatusCode::kNotFound, kSetupNotFound);
  RequireError(catalogue.GetSetupJson("bare").status(),
               absl::StatusCode::kNotFound, kSetupNotFound);
  RequireError(catalogue.GetSetupJson("broken").status(),
               absl::StatusCode::kFailedPrecondition, kSetupSchemaInvalid);
  RequireError(catalogue.GetMetaJson("broken").status(),
               absl::StatusCode::kFailedPrecondition, kSetupSchemaInvalid);
  absl::Status invalid = catalogue.GetMetaJson("invalid").status();
  RequireError(invalid, absl::StatusCode::kFailedPrecondition,
               kSetupSchemaInvalid);
  CHECK(absl::StrContains(invalid.message(), "flows[0].name: is required"));
  // The schema is served raw even when it has problems.
  absl::StatusOr<std::string> raw = catalogue.GetSetupJson("invalid");
  REQUIRE(raw.ok());
  CHECK(*raw == ReadFile(fx.dir + "/invalid/setup.json"));

  RequireError(
      catalogue.ValidateConfigJson("bare", R"({"config":{}})").status(),
      absl::StatusCode::kNotFound, kSetupNotFound);
  RequireError(
      catalogue.ValidateConfigJson("invalid", R"({"config":{}})").status(),
      absl::StatusCode::kFailedPrecondition, kSetupSchemaInvalid);
  for (const char* body :
       {"[]", "{}", R"({"config":[1]})", R"({"config":"x"})", "{"}) {
    INFO(body);
    RequireError(catalogue.ValidateConfigJson("alpha", body).status(),
                 absl::StatusCode::kInvalidArgument, kInvalidConfig);
  }
  absl::StatusOr<std::string> result = catalogue.ValidateConfigJson(
      "alpha", R"({"config":{"password":"hunter2","zone":1}})");
  REQUIRE(result.ok());
  CHECK(*result ==
        R"({"valid":false,"errors":["Required field 'host' is missing"],)"
        R"("warnings":["Unknown field 'zone'"]})");
  CHECK(!absl::StrContains(*result, "hunter2"));
}

TEST_CASE("Catalogue: templates and hidden folders are never listed or served",
          "[config][catalogue]") {
  Fixture fx;
  ConnectorCatalogue catalogue(fx.dir);
  for (const std::string& json :
       {*catalogue.ListConnectorsJson({}), *catalogue.ListAvailableJson(),
        *catalogue.ListIntegrationsJson()}) {
    CHECK(!absl::StrContains(json, "_template"));
    CHECK(!absl::StrContains(json, "hidden"));
    CHECK(!absl::StrContains(json, "Bad_Name"));
  }
  for (const char* name : {"_template", ".hidden"}) {
    INFO(name);
    RequireError(catalogue.GetMetaJson(name).status(),
                 absl::StatusCode::kNotFound, kConnectorNotFound);
    RequireError(catalogue.GetSetupJson(name).status(),
                 absl::StatusCode::kNotFound, kConnectorNotFound);
    RequireError(catalogue.GetIcon(name).status(), absl::StatusCode::kNotFound,
                 kConnectorNotFound);
  }
  // The static check stays strict: a template name is not a connector name.
  RequireError(ConnectorCatalogue::ValidateName("_template"),
               absl::StatusCode::kInvalidArgument, kInvalidConnectorName);
}

TEST_CASE("Catalogue: a folder with an invalid name is logged once",
          "[config][catalogue]") {
  Fixture fx;
  CapturedLog log;
  ConnectorCatalogue catalogue(fx.dir);
  catalogue.Names();
  REQUIRE(catalogue.ListAvailableJson().ok());
  std::vector<std::string> lines = log.lines();
  REQUIRE(lines.size() == 1);
  CHECK(absl::StrContains(lines[0], "WARNING"));
  CHECK(absl::StrContains(lines[0], "Bad_Name"));
}

TEST_CASE("Catalogue: the icon is served, or ICON_NOT_FOUND",
          "[config][catalogue]") {
  Fixture fx;
  ConnectorCatalogue catalogue(fx.dir);
  absl::StatusOr<Icon> icon = catalogue.GetIcon("alpha");
  REQUIRE(icon.ok());
  CHECK(icon->content_type == "image/svg+xml");
  CHECK(icon->data == "<svg>alpha</svg>");
  RequireError(catalogue.GetIcon("bare").status(), absl::StatusCode::kNotFound,
               kIconNotFound);
  RequireError(catalogue.GetIcon("nothere").status(),
               absl::StatusCode::kNotFound, kConnectorNotFound);
}

TEST_CASE("Catalogue: display name, manifest and secret fields",
          "[config][catalogue]") {
  Fixture fx;
  ConnectorCatalogue catalogue(fx.dir);
  CHECK(*catalogue.DisplayName("alpha") == "Alpha");
  CHECK(*catalogue.DisplayName("bare") == "Bare Metal");
  CHECK(*catalogue.DisplayName("broken") == "broken");
  CHECK(*catalogue.ManifestJson("alpha") ==
        ReadFile(fx.dir + "/alpha/manifest.json"));
  CHECK(*catalogue.ManifestJson("broken") == "{}");
  WriteFile(fx.dir + "/broken/manifest.json", "[]");
  RequireError(catalogue.ManifestJson("broken").status(),
               absl::StatusCode::kFailedPrecondition, kManifestInvalid);
  CHECK(*catalogue.SecretFieldNames("alpha") ==
        std::set<std::string>{"password"});
  CHECK(catalogue.SecretFieldNames("bare")->empty());
  RequireError(catalogue.SecretFieldNames("nothere").status(),
               absl::StatusCode::kNotFound, kConnectorNotFound);
}

TEST_CASE("Catalogue: malformed names are rejected before any file is touched",
          "[config][catalogue]") {
  TempDir temp;
  // The folder does not exist: any file access would answer UNAVAILABLE.
  ConnectorCatalogue catalogue(temp.Join("missing"));
  RequireError(catalogue.GetMetaJson("alpha").status(),
               absl::StatusCode::kUnavailable, kStorageUnavailable);
  RequireError(catalogue.GetMetaJson("_template").status(),
               absl::StatusCode::kNotFound, kConnectorNotFound);

  const std::string seventy(70, 'a');
  for (const std::string& name :
       {std::string(".."), std::string("a/b"), std::string("%2e%2e"),
        std::string("/etc"), std::string("A"), seventy, std::string("x\0y", 3),
        std::string(""), std::string("../alpha"), std::string("-a"),
        std::string("a b")}) {
    INFO(absl::CHexEscape(name));
    auto check = [](const absl::Status& status) {
      RequireError(status, absl::StatusCode::kInvalidArgument,
                   kInvalidConnectorName);
      CHECK(absl::StrContains(status.message(), kConnectorNamePattern));
    };
    check(ConnectorCatalogue::ValidateName(name));
    check(catalogue.GetSetupJson(name).status());
    check(catalogue.GetMetaJson(name).status());
    check(catalogue.GetIcon(name).status());
    check(catalogue.ValidateConfigJson(name, "not even json").status());
    check(catalogue.SecretFieldNames(name).status());
    check(catalogue.DisplayName(name).status());
    check(catalogue.ManifestJson(name).status());
  }
  absl::Status nul = catalogue.GetMetaJson(std::string("x\0y", 3)).status();
  INFO(nul.message());
  CHECK(absl::StrContains(nul.message(), "x\\x00y"));
  CHECK(ConnectorCatalogue::ValidateName(std::string(63, 'a')).ok());
  CHECK(ConnectorCatalogue::ValidateName("0-a_b").ok());
}

TEST_CASE("Catalogue: files are read only inside the connector folder",
          "[config][catalogue]") {
  Fixture fx;
  const std::string outside = fx.temp.Join("outside.json");
  WriteFile(outside, Doc(kFormStep, "{}", R"("x_secret":"s3cr3t-outside",)"));

  SECTION("a setup.json symlink pointing outside is refused") {
    MakeDir(fx.dir + "/sneaky");
    REQUIRE(symlink(outside.c_str(), (fx.dir + "/sneaky/setup.json").c_str()) ==
            0);
    ConnectorCatalogue catalogue(fx.dir);
    RequireError(catalogue.GetSetupJson("sneaky").status(),
                 absl::StatusCode::kFailedPrecondition, kConnectorFileRefused);
    RequireError(catalogue.GetMetaJson("sneaky").status(),
                 absl::StatusCode::kFailedPrecondition, kConnectorFileRefused);
    std::string listing = *catalogue.ListAvailableJson();
    CHECK(!absl::StrContains(listing, "s3cr3t-outside"));
    rapidjson::Document list = Parse(listing);
    const rapidjson::Value* sneaky = Entry(list, "sneaky");
    REQUIRE(sneaky != nullptr);
    REQUIRE((*sneaky)["problems"].Size() == 1);
    CHECK(Str((*sneaky)["problems"][0]["path"]) == "setup.json");
    CHECK(absl::StrContains(Str((*sneaky)["problems"][0]["message"]),
                            "outside the connector directory"));
  }
  SECTION("a symlink to another connector's icon is refused too") {
    REQUIRE(symlink((fx.dir + "/alpha/icon.svg").c_str(),
                    (fx.dir + "/bare/icon.svg").c_str()) == 0);
    ConnectorCatalogue catalogue(fx.dir);
    RequireError(catalogue.GetIcon("bare").status(),
                 absl::StatusCode::kFailedPrecondition, kConnectorFileRefused);
  }
  SECTION("a symlinked connector folder and in-folder symlinks are fine") {
    const std::string real = fx.temp.Join("elsewhere");
    MakeDir(real);
    WriteFile(real + "/setup-v2.json", Doc(kFormStep));
    REQUIRE(symlink("setup-v2.json", (real + "/setup.json").c_str()) == 0);
    REQUIRE(symlink(real.c_str(), (fx.dir + "/linked").c_str()) == 0);
    ConnectorCatalogue catalogue(fx.dir);
    absl::StatusOr<std::string> setup = catalogue.GetSetupJson("linked");
    REQUIRE(setup.ok());
    CHECK(*setup == Doc(kFormStep));
    CHECK(catalogue.GetMetaJson("linked").ok());
  }
  SECTION("a file over 1 MiB is a problem, not read") {
    std::string big =
        Doc(kFormStep, "{}",
            absl::StrCat(R"("x_pad":")",
                         std::string(kMaxConnectorFileBytes, 'x'), R"(",)"));
    WriteFile(fx.dir + "/alpha/setup.json", big);
    ConnectorCatalogue catalogue(fx.dir);
    RequireError(catalogue.GetSetupJson("alpha").status(),
                 absl::StatusCode::kFailedPrecondition, kConnectorFileRefused);
    rapidjson::Document list = Parse(*catalogue.ListConnectorsJson({}));
    const rapidjson::Value& alpha = *Entry(list, "alpha");
    REQUIRE(alpha["problems"].Size() == 1);
    CHECK(absl::StrContains(Str(alpha["problems"][0]["message"]),
                            "larger than 1 MiB"));
  }
}

TEST_CASE("Catalogue: edits are seen and change the fingerprint",
          "[config][catalogue]") {
  Fixture fx;
  ConnectorCatalogue catalogue(fx.dir);
  const std::string setup = fx.dir + "/alpha/setup.json";
  SetMtime(setup, 1'600'000'000);  // Old enough for the cache to trust it.
  std::string before = catalogue.Fingerprint();
  CHECK(catalogue.Fingerprint() == before);
  CHECK(*catalogue.DisplayName("alpha") == "Alpha");

  // Same size, same inode, another mtime: a cached copy must not be served.
  std::string edited = ReadFile(setup);
  edited.replace(edited.find("\"Alpha\""), 7, "\"Omega\"");
  WriteFile(setup, edited);
  SetMtime(setup, 1'600'000'100);
  std::string after_edit = catalogue.Fingerprint();
  CHECK(after_edit != before);
  CHECK(*catalogue.DisplayName("alpha") == "Omega");
  CHECK(catalogue.Fingerprint() == after_edit);

  WriteFile(fx.dir + "/bare/icon.svg", "<svg/>");
  std::string after_icon = catalogue.Fingerprint();
  CHECK(after_icon != after_edit);
  CHECK(Str(Parse(*catalogue.ListConnectorsJson({}))[1]["icon"]) ==
        "/api/integrations/bare/icon");

  // Templates and files that are not catalogue files don't count.
  MakeDir(fx.dir + "/_draft");
  WriteFile(fx.dir + "/README.md", "connectors\n");
  CHECK(catalogue.Fingerprint() == after_icon);

  fx.MakeConnector("gamma", Doc(kFormStep), "");
  std::string after_add = catalogue.Fingerprint();
  CHECK(after_add != after_icon);
  REQUIRE(unlink((fx.dir + "/gamma/setup.json").c_str()) == 0);
  REQUIRE(rmdir((fx.dir + "/gamma").c_str()) == 0);
  CHECK(catalogue.Fingerprint() == after_icon);
}

TEST_CASE("Catalogue: concurrent readers and a writer", "[config][catalogue]") {
  Fixture fx;
  ConnectorCatalogue catalogue(fx.dir);
  const std::string setup = fx.dir + "/alpha/setup.json";
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 3; ++i) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        absl::StatusOr<std::string> list = catalogue.ListAvailableJson();
        absl::StatusOr<std::string> meta = catalogue.GetMetaJson("alpha");
        if (!list.ok() || !meta.ok()) failures.fetch_add(1);
      }
    });
  }
  for (int i = 0; i < 200; ++i) {
    // Atomic replacement, as editors and deployments do.
    std::string temp = setup + ".new";
    WriteFile(temp, i % 2 == 0 ? Doc(kFormStep) : std::string(kAlphaSetup));
    REQUIRE(rename(temp.c_str(), setup.c_str()) == 0);
  }
  stop.store(true);
  for (std::thread& reader : readers) reader.join();
  CHECK(failures.load() == 0);
  CHECK(*catalogue.DisplayName("alpha") == "Alpha");
}

}  // namespace
}  // namespace iot2mqtt::config
