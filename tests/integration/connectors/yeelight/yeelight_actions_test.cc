// The validate and discover actions as the test-runner runs them: a child
// process with the request on stdin and one JSON object on stdout.

#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "catch2/catch.hpp"
#include "connectors/yeelight/testing/bulb_simulator.h"
#include "rapidjson/document.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::yeelight {
namespace {

using ::iot2mqtt::testing::BinaryPath;
using ::iot2mqtt::testing::ChildProcess;
using ::iot2mqtt::testing::FreePort;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::TempDir;
using ::iot2mqtt::testing::WriteFile;
using testing::BulbSimulator;

struct ToolRun {
  int exit_code = -1;
  std::string stdout_text;
  std::string stderr_text;
  rapidjson::Document answer;
};

// Runs `binary` with `request` on stdin (through /bin/sh redirections).
ToolRun RunTool(const std::string& binary, const std::string& request,
                const std::map<std::string, std::string>& env = {}) {
  TempDir dir;
  WriteFile(dir.Join("in.json"), request);
  std::string command = absl::StrCat(
      "exec '", BinaryPath(binary), "' < '", dir.Join("in.json"), "' > '",
      dir.Join("out.json"), "' 2> '", dir.Join("err.log"), "'");
  auto child = ChildProcess::Start("/bin/sh", {"-c", command}, env);
  REQUIRE(child.ok());
  auto exit_code = (*child)->Wait(absl::Seconds(30));
  REQUIRE(exit_code.ok());
  ToolRun run;
  run.exit_code = *exit_code;
  run.stdout_text = ReadFile(dir.Join("out.json"));
  run.stderr_text = ReadFile(dir.Join("err.log"));
  run.answer.Parse(run.stdout_text.c_str());
  INFO("stdout: " << run.stdout_text << "\nstderr: " << run.stderr_text);
  REQUIRE_FALSE(run.answer.HasParseError());
  REQUIRE(run.answer.IsObject());
  return run;
}

std::string ErrorCode(const ToolRun& run) {
  REQUIRE(run.answer.HasMember("ok"));
  REQUIRE_FALSE(run.answer["ok"].GetBool());
  return run.answer["error"]["code"].GetString();
}

TEST_CASE("validate reads a reachable bulb's properties") {
  auto sim = BulbSimulator::Start(1);
  REQUIRE(sim.ok());
  (*sim)->SetProperties(0, {{"bright", "42"}});
  int port = (*sim)->port(0);
  ToolRun run = RunTool(
      "iot2mqtt-yeelight-validate",
      absl::StrCat(R"({"tool":"validate_device","input":{"host":"127.0.0.1",)",
                   R"("port":")", port, R"("}})"));
  CHECK(run.exit_code == 0);
  REQUIRE(run.answer["ok"].GetBool());
  const auto& result = run.answer["result"];
  CHECK(std::string(result["host"].GetString()) == "127.0.0.1");
  CHECK(result["port"].GetInt() == port);
  CHECK(std::string(result["properties"]["power"].GetString()) == "on");
  CHECK(std::string(result["properties"]["bright"].GetString()) == "42");
  CHECK(result["properties"]["nl_br"].IsNull());  // Not a ceiling light.
  // stdout holds exactly one JSON object.
  CHECK(run.stdout_text.find('\n') == run.stdout_text.size() - 1);
}

TEST_CASE("validate accepts a flat payload and `ip` for the host") {
  auto sim = BulbSimulator::Start(1);
  REQUIRE(sim.ok());
  ToolRun run = RunTool(
      "iot2mqtt-yeelight-validate",
      absl::StrCat(R"({"ip":"127.0.0.1","port":)", (*sim)->port(0), "}"));
  CHECK(run.exit_code == 0);
  CHECK(run.answer["ok"].GetBool());
}

TEST_CASE("validate without a host asks for it") {
  for (const char* request :
       {R"({"tool":"validate_device","input":{}})",
        R"({"tool":"validate_device","input":{"host":"  ","port":55443}})",
        R"({"tool":"validate_device","input":{"host":42}})"}) {
    INFO(request);
    ToolRun run = RunTool("iot2mqtt-yeelight-validate", request);
    CHECK(run.exit_code == 0);
    CHECK(ErrorCode(run) == "missing_parameter");
    CHECK(std::string(run.answer["error"]["message"].GetString()) ==
          "host is required");
    CHECK_FALSE(run.answer["error"]["retriable"].GetBool());
  }
}

TEST_CASE("validate of an unreachable or silent bulb fails, retriable") {
  ToolRun refused = RunTool(
      "iot2mqtt-yeelight-validate",
      absl::StrCat(R"({"tool":"validate_device","input":{"host":"127.0.0.1",)",
                   R"("port":)", FreePort(), "}}"));
  CHECK(refused.exit_code == 0);
  CHECK(ErrorCode(refused) == "validation_failed");
  CHECK(refused.answer["error"]["retriable"].GetBool());

  auto sim = BulbSimulator::Start(1);
  REQUIRE(sim.ok());
  (*sim)->SetSilent(0, true);
  absl::Time start = absl::Now();
  ToolRun silent =
      RunTool("iot2mqtt-yeelight-validate",
              absl::StrCat(R"({"input":{"host":"127.0.0.1","port":)",
                           (*sim)->port(0), "}}"));
  CHECK(absl::Now() - start < absl::Seconds(9));  // Inside the tool's 10 s.
  CHECK(ErrorCode(silent) == "validation_failed");
  CHECK(std::string(silent.answer["error"]["message"].GetString())
            .find("no answer") != std::string::npos);
}

TEST_CASE("actions answer malformed requests with invalid_input") {
  for (const char* binary :
       {"iot2mqtt-yeelight-validate", "iot2mqtt-yeelight-discover"}) {
    for (const char* request : {"", "{not json", "[1]", R"({"input":[1]})"}) {
      INFO(binary << " " << request);
      ToolRun run = RunTool(binary, request,
                            {{"YEELIGHT_DISCOVERY_ADDRESS", "127.0.0.1:9"}});
      CHECK(run.exit_code == 0);
      CHECK(ErrorCode(run) == "invalid_input");
    }
  }
}

TEST_CASE("discover lists the bulbs answering on the configured address") {
  auto sim = BulbSimulator::Start(2);
  REQUIRE(sim.ok());
  (*sim)->SetProperties(0, {{"name", "Desk"}});
  ToolRun run =
      RunTool("iot2mqtt-yeelight-discover",
              R"({"tool":"discover_devices","input":{"timeout":1}})",
              {{"YEELIGHT_DISCOVERY_ADDRESS", (*sim)->discovery_address()}});
  CHECK(run.exit_code == 0);
  REQUIRE(run.answer["ok"].GetBool());
  const auto& result = run.answer["result"];
  REQUIRE(result["count"].GetInt() == 2);
  REQUIRE(result["devices"].Size() == 2);
  std::map<std::string, const rapidjson::Value*> by_id;
  for (const auto& device : result["devices"].GetArray()) {
    by_id[device["device_id"].GetString()] = &device;
  }
  REQUIRE(by_id.count((*sim)->id(0)) == 1);
  const rapidjson::Value& desk = *by_id[(*sim)->id(0)];
  CHECK(std::string(desk["ip"].GetString()) == "127.0.0.1");
  CHECK(desk["port"].GetInt() == (*sim)->port(0));
  CHECK(std::string(desk["model"].GetString()) == "color");
  CHECK(std::string(desk["friendly_name"].GetString()) == "Desk");
  CHECK(desk["ssid"].IsNull());
  CHECK(std::string(desk["manufacturer"].GetString()) == "Yeelight");
  // Capabilities follow the bulb's `support` list (the simulated colour bulb
  // has set_rgb but no background light).
  CHECK(desk["capabilities"]["power"].GetBool());
  CHECK(desk["capabilities"]["rgb"].GetBool());
  CHECK_FALSE(desk["capabilities"]["background_light"].GetBool());
  CHECK(desk["capabilities"]["color_temp_range"]["max"].GetInt() == 6500);
  CHECK(std::string(desk["properties"]["power"].GetString()) == "on");
  CHECK(desk["properties"]["support"].IsArray());
}

TEST_CASE("discover with nobody answering finds nothing, a bad address fails") {
  ToolRun empty = RunTool(
      "iot2mqtt-yeelight-discover", R"({"input":{"timeout":0.3}})",
      {{"YEELIGHT_DISCOVERY_ADDRESS", absl::StrCat("127.0.0.1:", FreePort())}});
  REQUIRE(empty.answer["ok"].GetBool());
  CHECK(empty.answer["result"]["count"].GetInt() == 0);

  ToolRun bad = RunTool("iot2mqtt-yeelight-discover", R"({"input":{}})",
                        {{"YEELIGHT_DISCOVERY_ADDRESS", "bulbs.example:1982"}});
  CHECK(bad.exit_code == 0);
  CHECK(ErrorCode(bad) == "discovery_failed");
  CHECK_FALSE(bad.answer["error"]["retriable"].GetBool());

  ToolRun bad_timeout =
      RunTool("iot2mqtt-yeelight-discover", R"({"input":{"timeout":-1}})",
              {{"YEELIGHT_DISCOVERY_ADDRESS", "127.0.0.1:9"}});
  CHECK(ErrorCode(bad_timeout) == "invalid_input");
}

}  // namespace
}  // namespace iot2mqtt::yeelight
