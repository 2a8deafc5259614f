// End to end: the whole setup walk of a discovered device through the
// gateway, every binary real and on loopback: Mosquitto, iot2mqtt-config,
// iot2mqtt-mqtt-bridge, iot2mqtt-orchestrator (local processes),
// iot2mqtt-discovery, iot2mqtt-gateway, and a simulated Yeelight bulb
// (connectors/yeelight/testing) that answers the discover tool's M-SEARCH
// and the connector's LAN protocol.
//
// login → the connector's setup (validate step) → the validate tool → a
// discovery session followed on its WebSocket → the stored device → add it
// → the instance is configured, started and online → discovery status and
// the device feed WebSocket show it added.

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "catch2/catch.hpp"
#include "connectors/yeelight/testing/bulb_simulator.h"
#include "rapidjson/document.h"
#include "tests/e2e/e2e_stack.h"
#include "tests/integration/gateway/ws_client.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::testing {
namespace {

using e2e::Bearer;
using e2e::CheckErrorBody;
using e2e::Headers;
using e2e::Parse;
using e2e::Stack;
using e2e::StackOptions;
using e2e::Str;
using yeelight::testing::BulbSimulator;

constexpr char kKey[] = "walk-key-1";

// A catalogue holding a copy of the source tree's Yeelight connector (its
// top-level files: setup.json, manifest.json, ...).
std::string MakeCatalogue(const TempDir& dir) {
  const std::string catalogue = dir.Join("connectors");
  const std::string target = catalogue + "/yeelight";
  REQUIRE(mkdir(catalogue.c_str(), 0755) == 0);
  REQUIRE(mkdir(target.c_str(), 0755) == 0);
  const std::string source = SourcePath("connectors/yeelight");
  for (const std::string& name : ListDir(source)) {
    struct stat st;
    const std::string path = source + "/" + name;
    if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    WriteFile(target + "/" + name, ReadFile(path));
  }
  return catalogue;
}

// The processes but this one with `needle` in their command line or
// environment (our own processes only are readable; enough here, every
// child runs as us).
std::vector<std::string> ProcessesMentioning(const std::string& needle) {
  std::vector<std::string> found;
  DIR* proc = opendir("/proc");
  REQUIRE(proc != nullptr);
  const std::string self = std::to_string(getpid());
  while (dirent* entry = readdir(proc)) {
    const std::string pid = entry->d_name;
    if (pid.empty() ||
        pid.find_first_not_of("0123456789") != std::string::npos ||
        pid == self) {
      continue;
    }
    for (const char* file : {"cmdline", "environ"}) {
      std::ifstream in("/proc/" + pid + "/" + file, std::ios::binary);
      std::ostringstream bytes;
      bytes << in.rdbuf();
      if (bytes.str().find(needle) != std::string::npos) {
        found.push_back(pid);
        break;
      }
    }
  }
  closedir(proc);
  return found;
}

const rapidjson::Value* FindById(const rapidjson::Value& devices,
                                 const std::string& id) {
  REQUIRE(devices.IsArray());
  for (const auto& device : devices.GetArray()) {
    if (device.IsObject() && device.HasMember("id") &&
        device["id"].IsString() && device["id"].GetString() == id) {
      return &device;
    }
  }
  return nullptr;
}

TEST_CASE("Discovery walk: from the validate tool to an online instance",
          "[e2e]") {
  auto simulator = BulbSimulator::Start(1);
  REQUIRE(simulator.ok());
  BulbSimulator& bulbs = **simulator;
  const int bulb_port = bulbs.port(0);

  TempDir catalogue_dir;
  StackOptions options;
  options.access_key = kKey;
  options.live = true;
  options.connectors_dir = MakeCatalogue(catalogue_dir);
  options.discovery_env = {
      {"YEELIGHT_DISCOVERY_ADDRESS", bulbs.discovery_address()}};
  std::optional<Stack> stack_holder;
  stack_holder.emplace(options);
  Stack& stack = *stack_holder;

  // Login.
  const std::string token = stack.TokenFor(kKey);
  const Headers auth = Bearer(token);

  // The setup flow has the validate step, a tool step.
  HttpResponse meta =
      stack.Call("GET", "/api/integrations/yeelight/meta", "", auth);
  INFO(meta.body);
  REQUIRE(meta.status == 200);
  rapidjson::Document meta_doc = Parse(meta.body);
  bool has_validate = false;
  for (const auto& flow : meta_doc["flows"].GetArray()) {
    for (const auto& step : flow["steps"].GetArray()) {
      if (Str(step, "id") == "validate") {
        CHECK(Str(step, "type") == "tool");
        CHECK(Str(step, "tool") == "validate_device");
        has_validate = true;
      }
    }
  }
  CHECK(has_validate);

  // The validate tool reaches the bulb.
  HttpResponse validated = stack.Call(
      "POST", "/api/integrations/yeelight/tools/execute",
      absl::StrCat(R"({"tool":"validate_device","input":{"host":"127.0.0.1",)",
                   R"("port":)", bulb_port, "}}"),
      auth);
  INFO(validated.body);
  REQUIRE(validated.status == 200);
  rapidjson::Document validation = Parse(validated.body);
  REQUIRE(validation["ok"].IsBool());
  CHECK(validation["ok"].GetBool());
  REQUIRE(validation["result"].IsObject());
  CHECK(validation["result"]["port"].GetInt() == bulb_port);

  // Request errors of the tool route: the unified error body.
  CheckErrorBody(stack.Call("POST", "/api/integrations/yeelight/tools/execute",
                            R"({"tool":"no_such_tool","input":{}})", auth),
                 404, "TOOL_NOT_FOUND");
  HttpResponse no_tool =
      stack.Call("POST", "/api/integrations/yeelight/tools/execute",
                 R"({"input":{}})", auth);
  CheckErrorBody(no_tool, 400, "MISSING_TOOL");
  CHECK(Str(Parse(no_tool.body), "error") == "Missing 'tool' field");

  // A discovery session, followed on its WebSocket until it completes.
  HttpResponse started = stack.Call(
      "POST", "/api/integrations/yeelight/discover", R"({"timeout":3})", auth);
  INFO(started.body);
  REQUIRE(started.status == 200);
  rapidjson::Document start = Parse(started.body);
  const std::string session_id = Str(start, "session_id");
  REQUIRE_FALSE(session_id.empty());
  CHECK(Str(start, "status") == "started");
  CHECK(Str(start, "websocket_url") ==
        absl::StrCat("/api/discovery/", session_id));

  WsClient session_socket(stack.gateway_port());
  REQUIRE(session_socket.Open(absl::StrCat(Str(start, "websocket_url"),
                                           "?token=", token)) == 101);
  std::vector<std::string> earlier;
  std::optional<std::string> final_frame = session_socket.ReadUntil(
      [](const std::string& frame) {
        rapidjson::Document doc = Parse(frame);
        return Str(doc, "status") != "running";
      },
      absl::Seconds(60), &earlier);
  INFO(session_socket.error());
  INFO(stack.Logs());
  REQUIRE(final_frame);
  rapidjson::Document session = Parse(*final_frame);
  CHECK(Str(session, "status") == "completed");
  CHECK(Str(session, "session_id") == session_id);
  CHECK(session["progress"].GetInt() == 100);
  REQUIRE(session["devices"].IsArray());
  REQUIRE(session["devices"].Size() == 1);
  const rapidjson::Value& found = session["devices"][0];
  const std::string device_id = Str(found, "id");
  CHECK(Str(found, "integration") == "yeelight");
  CHECK(Str(found, "ip") == "127.0.0.1");
  CHECK(found["port"].GetInt() == bulb_port);
  CHECK(Str(found, "device_id") == bulbs.id(0));
  // Every earlier frame was a running state; after the final one the
  // server closes normally.
  for (const std::string& frame : earlier) {
    CHECK(Str(Parse(frame), "status") == "running");
  }
  CHECK_FALSE(session_socket.Read());
  CHECK(session_socket.close_code() == 1000);

  // Stored, not added yet.
  HttpResponse listed = stack.Call("GET", "/api/discovery/devices", "", auth);
  INFO(listed.body);
  REQUIRE(listed.status == 200);
  rapidjson::Document devices = Parse(listed.body);
  const rapidjson::Value* stored = FindById(devices, device_id);
  REQUIRE(stored != nullptr);
  CHECK_FALSE((*stored)["added"].GetBool());

  // Add it: an instance through the config service.
  HttpResponse added = stack.Call(
      "POST", absl::StrCat("/api/discovery/devices/", device_id, "/add"),
      R"({"instance_id":"bulb_walk","friendly_name":"Walk bulb"})", auth);
  INFO(added.body);
  REQUIRE(added.status == 200);
  rapidjson::Document add = Parse(added.body);
  CHECK(Str(add, "status") == "success");
  CHECK(Str(add, "instance_id") == "bulb_walk");
  CHECK(Str(add, "connector") == "yeelight");

  HttpResponse instances = stack.Call("GET", "/api/instances", "", auth);
  INFO(instances.body);
  REQUIRE(instances.status == 200);
  rapidjson::Document instance_list = Parse(instances.body);
  bool listed_instance = false;
  for (const auto& instance : instance_list.GetArray()) {
    if (Str(instance, "instance_id") == "bulb_walk") {
      CHECK(Str(instance, "connector_type") == "yeelight");
      CHECK(Str(instance, "friendly_name") == "Walk bulb");
      listed_instance = true;
    }
  }
  CHECK(listed_instance);

  // The orchestrator starts it; the connector reaches the bulb and reports
  // online on the bus.
  std::string last_status;
  bool online = WaitFor(
      [&] {
        HttpResponse r = stack.Call(
            "GET", "/api/integrations/instances/bulb_walk", "", auth);
        if (r.status != 200) return false;
        last_status = Str(Parse(r.body), "status");
        return last_status == "connected";
      },
      absl::Seconds(60));
  INFO("last status " << last_status);
  INFO(stack.Logs());
  REQUIRE(online);
  CHECK(bulbs.connection_count(0) >= 1);

  // Discovery's own view: idle, one device, added.
  HttpResponse status = stack.Call("GET", "/api/discovery/status", "", auth);
  INFO(status.body);
  REQUIRE(status.status == 200);
  rapidjson::Document status_doc = Parse(status.body);
  CHECK(Str(status_doc, "status") == "idle");
  CHECK(status_doc["total_devices"].GetInt() == 1);
  CHECK(status_doc["added_devices"].GetInt() == 1);

  // The device feed (not taken for a session id) starts with the list.
  WsClient feed(stack.gateway_port());
  REQUIRE(feed.Open(absl::StrCat("/api/discovery/ws?token=", token)) == 101);
  std::optional<std::string> snapshot = feed.Read();
  INFO(feed.error());
  REQUIRE(snapshot);
  rapidjson::Document snapshot_doc = Parse(*snapshot);
  REQUIRE(snapshot_doc.HasMember("last_scan"));
  const rapidjson::Value* fed = FindById(snapshot_doc["devices"], device_id);
  REQUIRE(fed != nullptr);
  CHECK((*fed)["added"].GetBool());
  CHECK(Str(*fed, "instance_id") == "bulb_walk");
  feed.Close();

  // Everything stops cleanly and nothing is left running.
  const std::string root = stack.dir().path();
  stack.Stop();
  stack_holder.reset();
  std::vector<std::string> leftovers;
  CHECK(WaitFor([&] {
    leftovers = ProcessesMentioning(root);
    return leftovers.empty();
  }));
  INFO(absl::StrJoin(leftovers, " "));
  CHECK(leftovers.empty());
}

}  // namespace
}  // namespace iot2mqtt::testing
