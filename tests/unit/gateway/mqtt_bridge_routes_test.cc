// The mqtt-bridge's REST routes next to the config service's and the
// orchestrator's (the gateway serves all three at once): every route
// resolves to the right RPC, and upstream's request bodies transcode.

#include <string>
#include <vector>

#include "catch2/catch.hpp"
#include "gateway/route_table.h"
#include "gateway/transcoder.h"
#include "iot2mqtt/config/v1/config_service.pb.h"
#include "iot2mqtt/mqtt_bridge/v1/mqtt_bridge_service.pb.h"
#include "iot2mqtt/orchestrator/v1/orchestrator_service.pb.h"
#include "services/common/status.h"

namespace iot2mqtt::gateway {
namespace {

namespace bridge = ::iot2mqtt::mqtt_bridge::v1;

constexpr char kBridge[] = "iot2mqtt.mqtt_bridge.v1.MqttBridgeService";
constexpr char kConfig[] = "iot2mqtt.config.v1.ConfigService";
constexpr char kOrchestrator[] = "iot2mqtt.orchestrator.v1.OrchestratorService";

const RouteTable& Routes() {
  static const RouteTable* const kTable = [] {
    (void)config::v1::DeviceConfig::descriptor();
    (void)bridge::TopicEvent::descriptor();
    (void)orchestrator::v1::LogEntry::descriptor();
    absl::StatusOr<RouteTable> table =
        RouteTable::Build({kConfig, kBridge, kOrchestrator});
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

absl::Status Transcode(const std::string& method, const std::string& target,
                       const std::string& body,
                       google::protobuf::Message* request) {
  std::string path = target.substr(0, target.find('?'));
  std::string query = target.find('?') == std::string::npos
                          ? ""
                          : target.substr(target.find('?') + 1);
  RouteMatch match = Routes().Match(method, path);
  REQUIRE(match.outcome == RouteMatch::Outcome::kMatched);
  REQUIRE(match.route->method->input_type() == request->GetDescriptor());
  return BuildRequest(*match.route, match.bindings, query, body, request);
}

TEST_CASE("every mqtt-bridge route resolves to its RPC") {
  const std::string b = std::string(kBridge) + ".";
  CHECK(RpcOf("GET", "/api/mqtt/status") == b + "GetStatus");
  CHECK(RpcOf("POST", "/api/mqtt/test") == b + "TestConnection");
  CHECK(RpcOf("GET", "/api/mqtt/topics") == b + "ListTopics");
  CHECK(RpcOf("POST", "/api/mqtt/publish") == b + "Publish");
  CHECK(RpcOf("GET", "/api/mqtt/stream") == b + "Subscribe");
  CHECK(RpcOf("GET", "/api/mqtt/instances") == b + "ListInstanceStates");
  CHECK(RpcOf("GET", "/api/devices/living-room") == b + "GetInstanceDevices");
  CHECK(RpcOf("POST", "/api/devices/living-room/lamp_1/command") ==
        b + "SendCommand");
  CHECK(RpcOf("POST", "/api/integrations/mqtt/clear-all") == b + "ClearAll");
  CHECK(RpcOf("POST", "/api/integrations/mqtt/clear-instance/hall") ==
        b + "ClearInstanceTopics");
  CHECK(Routes().Match("GET", "/api/mqtt/stream").route->streaming);
}

TEST_CASE("bridge and config routes under the same prefixes don't collide") {
  const std::string c = std::string(kConfig) + ".";
  // The config service keeps /api/mqtt/config and /api/integrations/{name}/…
  CHECK(RpcOf("GET", "/api/mqtt/config").rfind(c, 0) == 0);
  CHECK(RpcOf("POST", "/api/mqtt/config").rfind(c, 0) == 0);
  CHECK(RpcOf("GET", "/api/integrations/mqtt/meta") ==
        c + "GetIntegrationMeta");
  CHECK(RpcOf("POST", "/api/integrations/mqtt/validate").rfind(c, 0) == 0);
  // The configured-integration views are the orchestrator's.
  CHECK(RpcOf("GET", "/api/integrations/mqtt/instances") ==
        std::string(kOrchestrator) + ".ListIntegrationInstances");
  CHECK(RpcOf("GET", "/api/integrations/instances/clear-all") ==
        std::string(kOrchestrator) + ".GetIntegrationInstance");
  // An integration named "clear-all" is not shadowed for config's GETs.
  CHECK(RpcOf("GET", "/api/integrations/clear-all/meta") ==
        c + "GetIntegrationMeta");
  // The bridge's POSTs answer 405 for other methods, not another RPC.
  RouteMatch get = Routes().Match("GET", "/api/integrations/mqtt/clear-all");
  REQUIRE(get.outcome == RouteMatch::Outcome::kMethodNotAllowed);
  CHECK(get.allowed_methods == std::vector<std::string>{"POST"});
  RouteMatch put = Routes().Match("PUT", "/api/devices/hall/lamp/command");
  REQUIRE(put.outcome == RouteMatch::Outcome::kMethodNotAllowed);
  CHECK(put.allowed_methods == std::vector<std::string>{"POST"});
  // /api/devices/{instance_id} takes one segment only.
  CHECK(Routes().Match("GET", "/api/devices/").outcome ==
        RouteMatch::Outcome::kNotFound);
  CHECK(Routes().Match("GET", "/api/devices/a/b").outcome ==
        RouteMatch::Outcome::kNotFound);
}

TEST_CASE("clear-instance binds the instance id from the path") {
  bridge::ClearInstanceTopicsRequest request;
  REQUIRE(Transcode("POST", "/api/integrations/mqtt/clear-instance/hall-2", "",
                    &request)
              .ok());
  CHECK(request.instance_id() == "hall-2");
}

TEST_CASE("a device command takes upstream's body; the path wins") {
  bridge::SendCommandRequest request;
  // Upstream's DeviceCommand: device_id and instance_id repeated in the
  // body (here different from the path), command as an object.
  REQUIRE(Transcode("POST", "/api/devices/hall/lamp_1/command",
                    R"({"device_id":"other","instance_id":"elsewhere",)"
                    R"("command":{"power":true,"brightness":80},)"
                    R"("timeout":2.5})",
                    &request)
              .ok());
  CHECK(request.instance_id() == "hall");
  CHECK(request.device_id() == "lamp_1");
  CHECK(request.command() == R"({"power":true,"brightness":80})");
  CHECK(request.values().empty());
  REQUIRE(request.has_timeout());
  CHECK(request.timeout() == 2.5);

  // The SPA's `{command}` alone, and the contract's `{values}`.
  REQUIRE(Transcode("POST", "/api/devices/hall/lamp_1/command",
                    R"({"command":{"power":false}})", &request)
              .ok());
  CHECK(request.command() == R"({"power":false})");
  CHECK_FALSE(request.has_timeout());
  REQUIRE(Transcode("POST", "/api/devices/hall/lamp_1/command",
                    R"({"values":{"power":false},"timeout":0})", &request)
              .ok());
  CHECK(request.command().empty());
  CHECK(request.values() == R"({"power":false})");
  REQUIRE(request.has_timeout());  // 0 is "don't wait", not "default".
  CHECK(request.timeout() == 0);

  // Unknown members are still refused.
  absl::Status unknown = Transcode("POST", "/api/devices/hall/lamp_1/command",
                                   R"({"command":{},"bogus":1})", &request);
  CHECK(unknown.code() == absl::StatusCode::kInvalidArgument);
  CHECK(common::ReasonOf(unknown) == kInvalidRequestBody);
}

TEST_CASE("optional fields keep their presence: qos 0 is not 'unset'") {
  bridge::PublishRequest publish;
  REQUIRE(Transcode("POST", "/api/mqtt/publish",
                    R"({"topic":"a/b","payload":{"on":true},"qos":0,)"
                    R"("retain":true})",
                    &publish)
              .ok());
  CHECK(publish.topic() == "a/b");
  CHECK(publish.payload() == R"({"on":true})");
  REQUIRE(publish.has_qos());
  CHECK(publish.qos() == 0);
  CHECK(publish.retain());

  REQUIRE(Transcode("POST", "/api/mqtt/publish",
                    R"({"topic":"a/b","payload":"text"})", &publish)
              .ok());
  CHECK_FALSE(publish.has_qos());  // The bridge's default (1) applies.
  CHECK(publish.payload() == R"("text")");
  CHECK_FALSE(publish.retain());

  REQUIRE(Transcode("POST", "/api/mqtt/publish",
                    R"({"topic":"a/b","payload":1,"qos":null})", &publish)
              .ok());
  CHECK_FALSE(publish.has_qos());

  bridge::TestConnectionRequest test;
  REQUIRE(Transcode("POST", "/api/mqtt/test",
                    R"({"host":"192.0.2.10","port":1884,"username":"u",)"
                    R"("password":"***HIDDEN***","base_topic":"IoT2mqtt",)"
                    R"("client_prefix":"iot2mqtt","qos":1,"retain":false,)"
                    R"("keepalive":60})",
                    &test)
              .ok());
  REQUIRE(test.has_port());
  CHECK(test.port() == 1884);
  REQUIRE(test.has_retain());
  CHECK_FALSE(test.retain());
  REQUIRE(test.has_keepalive());
  REQUIRE(Transcode("POST", "/api/mqtt/test", R"({"host":"192.0.2.10"})", &test)
              .ok());
  CHECK_FALSE(test.has_port());
  CHECK_FALSE(test.has_qos());
  CHECK_FALSE(test.has_keepalive());

  // A string where a number belongs is refused.
  CHECK(common::ReasonOf(Transcode("POST", "/api/mqtt/publish",
                                   R"({"topic":"a","qos":"high"})",
                                   &publish)) == kInvalidRequestBody);
}

TEST_CASE("topics filter comes from the query; responses render as upstream") {
  bridge::ListTopicsRequest list;
  REQUIRE(Transcode("GET", "/api/mqtt/topics?filter=Living%20Room", "", &list)
              .ok());
  CHECK(list.filter() == "Living Room");

  const Route& topics = *Routes().Match("GET", "/api/mqtt/topics").route;
  bridge::ListTopicsResponse reply;
  bridge::TopicEntry* entry = reply.add_topics();
  entry->set_topic("IoT2mqtt/v1/instances/hall/status");
  entry->set_value(R"("online")");
  entry->set_timestamp("2024-05-01T10:00:00Z");
  entry->set_retained(true);
  entry->set_qos(1);
  CHECK(RenderResponse(topics, reply).json ==
        R"([{"topic":"IoT2mqtt/v1/instances/hall/status","value":"online",)"
        R"("timestamp":"2024-05-01T10:00:00Z","retained":true,"qos":1}])");

  const Route& command =
      *Routes().Match("POST", "/api/devices/hall/lamp/command").route;
  bridge::SendCommandResponse sent;
  sent.set_success(true);
  sent.set_command_id("c-1");
  CHECK(RenderResponse(command, sent).json ==
        R"({"success":true,"command_id":"c-1","response":null,)"
        R"("latency_ms":0.0})");
}

}  // namespace
}  // namespace iot2mqtt::gateway
