// The discovery service's REST routes next to every other backend's (the
// gateway serves them all at once): each route resolves to its RPC,
// additional bindings included, nothing shadows another service's route,
// upstream's bodies transcode, and a setup tool's call gets the deadline
// its method declares.

#include <algorithm>
#include <string>
#include <vector>

#include "catch2/catch.hpp"
#include "gateway/gateway.h"
#include "gateway/openapi.h"
#include "gateway/route_table.h"
#include "gateway/transcoder.h"
#include "iot2mqtt/config/v1/config_service.pb.h"
#include "iot2mqtt/discovery/v1/discovery_service.pb.h"
#include "iot2mqtt/mqtt_bridge/v1/mqtt_bridge_service.pb.h"
#include "iot2mqtt/orchestrator/v1/orchestrator_service.pb.h"
#include "rapidjson/document.h"

namespace iot2mqtt::gateway {
namespace {

namespace discovery = ::iot2mqtt::discovery::v1;

constexpr char kBridge[] = "iot2mqtt.mqtt_bridge.v1.MqttBridgeService";
constexpr char kConfig[] = "iot2mqtt.config.v1.ConfigService";
constexpr char kOrchestrator[] = "iot2mqtt.orchestrator.v1.OrchestratorService";
constexpr char kDiscovery[] = "iot2mqtt.discovery.v1.DiscoveryService";

const RouteTable& Routes() {
  static const RouteTable* const kTable = [] {
    (void)config::v1::DeviceConfig::descriptor();
    (void)mqtt_bridge::v1::TopicEvent::descriptor();
    (void)orchestrator::v1::LogEntry::descriptor();
    (void)discovery::DiscoverySession::descriptor();
    absl::StatusOr<RouteTable> table =
        RouteTable::Build({kConfig, kBridge, kOrchestrator, kDiscovery});
    REQUIRE(table.ok());
    return new RouteTable(*std::move(table));
  }();
  return *kTable;
}

// The full name of the RPC `method path` resolves to ("" when none).
std::string RpcOf(const std::string& method, const std::string& path) {
  RouteMatch match = Routes().Match(method, path);
  if (match.outcome != RouteMatch::Outcome::kMatched) return "";
  return match.route->method->full_name();
}

const google::protobuf::MethodDescriptor& Method(const std::string& name) {
  const google::protobuf::MethodDescriptor* method =
      discovery::DiscoverySession::descriptor()
          ->file()
          ->FindServiceByName("DiscoveryService")
          ->FindMethodByName(name);
  REQUIRE(method != nullptr);
  return *method;
}

absl::Status Transcode(const std::string& method, const std::string& path,
                       const std::string& body,
                       google::protobuf::Message* request) {
  RouteMatch match = Routes().Match(method, path);
  REQUIRE(match.outcome == RouteMatch::Outcome::kMatched);
  REQUIRE(match.route->method->input_type() == request->GetDescriptor());
  return BuildRequest(*match.route, match.bindings, "", body, request);
}

TEST_CASE("every discovery route resolves to its RPC") {
  const std::string d = std::string(kDiscovery) + ".";
  CHECK(RpcOf("POST", "/api/integrations/yeelight/tools/execute") ==
        d + "ExecuteTool");
  CHECK(RpcOf("POST", "/api/integrations/yeelight/discover") ==
        d + "StartDiscovery");
  CHECK(RpcOf("POST", "/api/discovery/scan/yeelight") == d + "StartScan");
  CHECK(RpcOf("GET", "/api/discovery/sessions") == d + "ListSessions");
  CHECK(RpcOf("GET", "/api/discovery/sessions/s-1") == d + "GetSession");
  CHECK(RpcOf("POST", "/api/discovery/sessions/s-1/cancel") ==
        d + "CancelSession");
  // The additional binding: DELETE on the session is a cancel too.
  CHECK(RpcOf("DELETE", "/api/discovery/sessions/s-1") == d + "CancelSession");
  CHECK(RpcOf("GET", "/api/discovery/sessions/s-1/stream") ==
        d + "WatchSession");
  CHECK(RpcOf("GET", "/api/discovery/devices") == d + "ListDevices");
  CHECK(RpcOf("GET", "/api/discovery/devices/stream") == d + "WatchDevices");
  CHECK(RpcOf("POST", "/api/discovery/devices/yeelight_0x1/add") ==
        d + "AddDevice");
  CHECK(RpcOf("DELETE", "/api/discovery/devices/yeelight_0x1") ==
        d + "DeleteDevice");
  CHECK(RpcOf("POST", "/api/discovery/manual") == d + "AddManualDevice");
  CHECK(RpcOf("GET", "/api/discovery/status") == d + "GetStatus");
  CHECK(
      Routes().Match("GET", "/api/discovery/devices/stream").route->streaming);
  CHECK(Routes()
            .Match("GET", "/api/discovery/sessions/s-1/stream")
            .route->streaming);

  // GET and DELETE on one session path are two RPCs; other methods 405.
  RouteMatch put = Routes().Match("PUT", "/api/discovery/sessions/s-1");
  REQUIRE(put.outcome == RouteMatch::Outcome::kMethodNotAllowed);
  CHECK(put.allowed_methods == std::vector<std::string>{"DELETE", "GET"});
  RouteMatch get = Routes().Match("GET", "/api/integrations/x/tools/execute");
  REQUIRE(get.outcome == RouteMatch::Outcome::kMethodNotAllowed);
  CHECK(get.allowed_methods == std::vector<std::string>{"POST"});
  // The WebSocket paths are no REST route (the gateway serves upgrades on
  // them itself).
  CHECK(Routes().Match("GET", "/api/discovery/ws").outcome ==
        RouteMatch::Outcome::kNotFound);
  CHECK(Routes().Match("GET", "/api/discovery/4f1c-session").outcome ==
        RouteMatch::Outcome::kNotFound);
}

TEST_CASE("discovery routes don't shadow the other services' routes") {
  const std::string c = std::string(kConfig) + ".";
  const std::string o = std::string(kOrchestrator) + ".";
  const std::string b = std::string(kBridge) + ".";
  // /api/integrations/{name}/… stays the config service's.
  CHECK(RpcOf("GET", "/api/integrations") == c + "ListIntegrations");
  CHECK(RpcOf("GET", "/api/integrations/yeelight/meta") ==
        c + "GetIntegrationMeta");
  CHECK(RpcOf("GET", "/api/integrations/yeelight/setup").rfind(c, 0) == 0);
  CHECK(RpcOf("GET", "/api/integrations/yeelight/icon").rfind(c, 0) == 0);
  CHECK(RpcOf("POST", "/api/integrations/yeelight/validate").rfind(c, 0) == 0);
  // /api/integrations/instances/… stays the orchestrator's.
  CHECK(RpcOf("GET", "/api/integrations/") == o + "ListConfiguredIntegrations");
  CHECK(RpcOf("GET", "/api/integrations/yeelight/instances") ==
        o + "ListIntegrationInstances");
  CHECK(RpcOf("GET", "/api/integrations/instances/bulb") ==
        o + "GetIntegrationInstance");
  CHECK(RpcOf("DELETE", "/api/integrations/instances/bulb").rfind(o, 0) == 0);
  CHECK(RpcOf("POST", "/api/integrations/instances/bulb/start").rfind(o, 0) ==
        0);
  CHECK(RpcOf("POST", "/api/integrations/instances/bulb/restart").rfind(o, 0) ==
        0);
  // …and the bridge's clear routes.
  CHECK(RpcOf("POST", "/api/integrations/mqtt/clear-all") == b + "ClearAll");
  CHECK(RpcOf("POST", "/api/integrations/mqtt/clear-instance/hall") ==
        b + "ClearInstanceTopics");
  // A connector named like a literal segment still reaches discovery.
  CHECK(RpcOf("POST", "/api/integrations/mqtt/discover") ==
        std::string(kDiscovery) + ".StartDiscovery");

  // No two routes share a method and a template.
  std::vector<std::string> seen;
  for (const Route& route : Routes().routes()) {
    std::string key = route.http_method + " " + route.path.OpenApiPath();
    INFO(key);
    CHECK(std::find(seen.begin(), seen.end(), key) == seen.end());
    seen.push_back(key);
  }
}

TEST_CASE("upstream's discovery bodies transcode") {
  discovery::ExecuteToolRequest execute;
  REQUIRE(Transcode("POST", "/api/integrations/yeelight/tools/execute",
                    R"({"tool":"validate_device",)"
                    R"("input":{"host":"192.0.2.7","port":55443}})",
                    &execute)
              .ok());
  CHECK(execute.integration() == "yeelight");
  CHECK(execute.tool() == "validate_device");
  CHECK(execute.input() == R"({"host":"192.0.2.7","port":55443})");

  discovery::StartDiscoveryRequest start;
  REQUIRE(Transcode("POST", "/api/integrations/yeelight/discover",
                    R"({"timeout":3,"network_mode":"host"})", &start)
              .ok());
  CHECK(start.name() == "yeelight");
  CHECK(start.timeout() == 3);
  CHECK(start.network_mode() == "host");

  discovery::AddDeviceRequest add;
  REQUIRE(Transcode("POST", "/api/discovery/devices/yeelight_0x1/add",
                    R"({"instance_id":"bulb_walk","friendly_name":"Walk",)"
                    R"("config":{"duration":300}})",
                    &add)
              .ok());
  CHECK(add.device_id() == "yeelight_0x1");
  CHECK(add.instance_id() == "bulb_walk");
  CHECK(add.config() == R"({"duration":300})");

  // The tool's answer is the body, verbatim.
  const Route& route =
      *Routes().Match("POST", "/api/integrations/yeelight/tools/execute").route;
  discovery::ExecuteToolResponse reply;
  reply.set_result(R"({"ok":true,"result":{"model":"color","power":"on"}})");
  reply.set_ok(true);
  reply.set_exit_code(0);
  CHECK(RenderResponse(route, reply).json ==
        R"({"ok":true,"result":{"model":"color","power":"on"}})");
}

TEST_CASE("a setup tool's call gets its method's maximum duration") {
  const absl::Duration base = absl::Seconds(10);
  // ExecuteTool declares 620 s (the tool's timeout, at most 600, plus the
  // kill grace): no fixed cut-off before the tool's own.
  discovery::ExecuteToolRequest execute;
  CHECK(BackendDeadlineFor(Method("ExecuteTool"), execute, base) ==
        absl::Seconds(630));
  CHECK(BackendDeadlineFor(Method("ExecuteTool"), execute,
                           absl::Milliseconds(250)) ==
        absl::Seconds(620) + absl::Milliseconds(250));
  // Methods without the option keep the usual deadline; an int `timeout`
  // (a discovery session's length, which runs in the background) adds
  // nothing.
  discovery::StartDiscoveryRequest start;
  start.set_timeout(300);
  CHECK(BackendDeadlineFor(Method("StartDiscovery"), start, base) == base);
  CHECK(BackendDeadlineFor(Method("GetStatus"), discovery::GetStatusRequest(),
                           base) == base);
}

TEST_CASE("a command's own timeout still extends its deadline") {
  const google::protobuf::MethodDescriptor* send =
      mqtt_bridge::v1::TopicEvent::descriptor()
          ->file()
          ->FindServiceByName("MqttBridgeService")
          ->FindMethodByName("SendCommand");
  REQUIRE(send != nullptr);
  const absl::Duration base = absl::Seconds(10);
  mqtt_bridge::v1::SendCommandRequest command;
  CHECK(BackendDeadlineFor(*send, command, base) == base);
  command.set_timeout(2.5);
  CHECK(BackendDeadlineFor(*send, command, base) ==
        base + absl::Milliseconds(2500));
  command.set_timeout(-1);  // Nonsense adds nothing; the service refuses it.
  CHECK(BackendDeadlineFor(*send, command, base) == base);
}

TEST_CASE("the API docs list the discovery routes") {
  std::string json = BuildOpenApiJson(Routes());
  rapidjson::Document doc;
  doc.Parse(json.c_str(), json.size());
  REQUIRE_FALSE(doc.HasParseError());
  const auto& paths = doc["paths"];
  REQUIRE(paths.HasMember("/api/integrations/{integration}/tools/execute"));
  CHECK(
      paths["/api/integrations/{integration}/tools/execute"].HasMember("post"));
  REQUIRE(paths.HasMember("/api/discovery/sessions/{session_id}"));
  CHECK(paths["/api/discovery/sessions/{session_id}"].HasMember("get"));
  CHECK(paths["/api/discovery/sessions/{session_id}"].HasMember("delete"));
  CHECK(paths.HasMember("/api/discovery/devices/{device_id}/add"));
  CHECK(paths.HasMember("/api/discovery/status"));
}

}  // namespace
}  // namespace iot2mqtt::gateway
