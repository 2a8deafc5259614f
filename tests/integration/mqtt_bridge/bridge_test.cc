// iot2mqtt-mqtt-bridge as a process, with the real config service and real
// Mosquitto brokers: cache and projections from demo-connector traffic,
// commands, publish validation, clearing, broker restart, settings changes,
// TestConnection, slow subscribers.

#include <signal.h>
#include <sys/stat.h>

#include <regex>

#include "rapidjson/document.h"
#include "tests/integration/mqtt_bridge/bridge_harness.h"

namespace iot2mqtt::mqtt_bridge::harness {
namespace {

constexpr char kDemoConfig[] = R"({
  "instance_id": "demo", "connector_type": "demo", "update_interval": 0.5,
  "motion_mean_interval": 0.4, "motion_hold": 0.2,
  "devices": [
    {"device_id": "light", "type": "light"},
    {"device_id": "climate", "type": "climate"},
    {"device_id": "plug", "type": "switch"},
    {"device_id": "hall", "type": "motion", "zone": "hallway"}
  ]})";

Env SeedFor(const LoopbackBroker& broker) {
  return {{"MQTT_HOST", broker.host()},
          {"MQTT_PORT", absl::StrCat(broker.port())}};
}

rapidjson::Document Json(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.c_str(), text.size());
  INFO(text);
  REQUIRE_FALSE(doc.HasParseError());
  return doc;
}

std::vector<std::string> TopicNames(BridgeStack& stack,
                                    const std::string& filter = "") {
  v1::ListTopicsRequest request;
  request.set_filter(filter);
  v1::ListTopicsResponse response;
  REQUIRE(stack.bridge().ListTopics(Context().get(), request, &response).ok());
  std::vector<std::string> names;
  for (const auto& t : response.topics()) names.push_back(t.topic());
  return names;
}

bool HasTopic(BridgeStack& stack, const std::string& topic) {
  for (const std::string& name : TopicNames(stack)) {
    if (name == topic) return true;
  }
  return false;
}

grpc::Status Publish(BridgeStack& stack, const std::string& topic,
                     const std::string& payload_json,
                     std::optional<int> qos = std::nullopt,
                     bool retain = false) {
  v1::PublishRequest request;
  request.set_topic(topic);
  request.set_payload(payload_json);
  if (qos.has_value()) request.set_qos(*qos);
  request.set_retain(retain);
  v1::PublishResponse response;
  grpc::Status s = stack.bridge().Publish(Context().get(), request, &response);
  if (s.ok()) {
    CHECK(response.success());
    CHECK(response.message() == "Message published");
  }
  return s;
}

TEST_CASE("cache, projections and commands from a running demo connector",
          "[integration][mqtt_bridge]") {
  auto broker = StartBroker();
  BridgeStack stack(SeedFor(*broker));
  stack.StartBridge();
  stack.WaitConnected(broker->port());
  DemoConnector demo(*broker, "demo", kDemoConfig);

  // The instance projection: online with its four devices.
  bool seen = WaitFor([&] {
    v1::ListInstanceStatesResponse states;
    if (!stack.bridge().ListInstanceStates(Context().get(), {}, &states).ok()) {
      return false;
    }
    for (const auto& instance : states.instances()) {
      if (instance.instance_id() == "demo" && instance.status() == "online" &&
          instance.devices_size() == 4 && !instance.last_seen().empty()) {
        return true;
      }
    }
    return false;
  });
  INFO(stack.Logs());
  INFO(demo.Log());
  REQUIRE(seen);

  v1::GetInstanceDevicesRequest devices_request;
  devices_request.set_instance_id("demo");
  v1::GetInstanceDevicesResponse devices;
  REQUIRE(stack.bridge()
              .GetInstanceDevices(Context().get(), devices_request, &devices)
              .ok());
  REQUIRE(devices.devices_size() == 4);
  CHECK(devices.devices(0).device_id() == "climate");  // Sorted.
  for (const auto& device : devices.devices()) {
    CHECK(device.instance_id() == "demo");
    CHECK(absl::EndsWith(device.last_update(), "Z"));
    rapidjson::Document state = Json(device.state());
    REQUIRE(state.IsObject());
    REQUIRE(state.HasMember("state"));
    CHECK(state["state"].IsObject());
  }
  devices_request.set_instance_id("nobody");
  devices.Clear();
  REQUIRE(stack.bridge()
              .GetInstanceDevices(Context().get(), devices_request, &devices)
              .ok());
  CHECK(devices.devices_size() == 0);

  // Topics, with a case-insensitive filter, values as JSON.
  v1::ListTopicsRequest list;
  list.set_filter("DEMO/STATUS");
  v1::ListTopicsResponse topics;
  REQUIRE(stack.bridge().ListTopics(Context().get(), list, &topics).ok());
  REQUIRE(topics.topics_size() == 1);
  CHECK(topics.topics(0).topic() == "IoT2mqtt/v1/instances/demo/status");
  CHECK(topics.topics(0).value() == "\"online\"");
  // Received live (the bridge was subscribed first): not a retained replay.
  CHECK_FALSE(topics.topics(0).retained());
  CHECK(topics.topics(0).qos() == 1);

  v1::GetStatusResponse status = stack.Status();
  CHECK(status.connected());
  CHECK(status.broker() == "127.0.0.1");
  CHECK(status.base_topic() == "IoT2mqtt");
  CHECK(status.client_id() == "iot2mqtt__bridge");
  CHECK(status.topics_count() >= 9);
  CHECK(status.cache_bytes() > 0);
  CHECK(status.messages_received() >= status.topics_count());
  CHECK(status.last_error().empty());
  CHECK(absl::EndsWith(status.since(), "Z"));

  SECTION("a command gets the connector's response") {
    v1::SendCommandRequest command;
    command.set_instance_id("demo");
    command.set_device_id("light");
    command.set_command(R"({"power": true, "brightness": 30})");
    v1::SendCommandResponse response;
    grpc::Status s =
        stack.bridge().SendCommand(Context(10).get(), command, &response);
    INFO(s.error_message());
    REQUIRE(s.ok());
    CHECK(response.success());
    CHECK(std::regex_match(
        response.command_id(),
        std::regex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-"
                   "[0-9a-f]{12}")));
    rapidjson::Document body = Json(response.response());
    CHECK(std::string(body["cmd_id"].GetString()) == response.command_id());
    CHECK(std::string(body["status"].GetString()) == "success");
    CHECK(response.latency_ms() > 0);
    CHECK(response.latency_ms() < 5000);
    std::string metrics = stack.Metrics();
    INFO(metrics);
    CHECK(absl::StrContains(
        metrics, "iot_mqtt_bridge_commands_total{outcome=\"response\"} 1"));
    CHECK(absl::StrContains(metrics, "iot_mqtt_bridge_connected 1"));
    CHECK(absl::StrContains(metrics, "iot_mqtt_bridge_cache_topics "));
    CHECK_FALSE(absl::StrContains(metrics,
                                  "iot_mqtt_bridge_messages_received_total 0"));

    // The contract's name for the same thing, and an error response.
    command.clear_command();
    command.set_values(R"({"brightness": 300})");
    response.Clear();
    REQUIRE(
        stack.bridge().SendCommand(Context(10).get(), command, &response).ok());
    body = Json(response.response());
    CHECK(std::string(body["status"].GetString()) == "error");
    CHECK(std::string(body["error_code"].GetString()) == "INVALID_COMMAND");

    // The cached state follows the command.
    CHECK(WaitFor([&] {
      devices_request.set_instance_id("demo");
      v1::GetInstanceDevicesResponse now;
      if (!stack.bridge()
               .GetInstanceDevices(Context().get(), devices_request, &now)
               .ok()) {
        return false;
      }
      for (const auto& d : now.devices()) {
        if (d.device_id() != "light") continue;
        rapidjson::Document state = Json(d.state());
        return state["state"]["brightness"].IsInt() &&
               state["state"]["brightness"].GetInt() == 30;
      }
      return false;
    }));
  }

  SECTION("a command nobody answers times out with its id") {
    v1::SendCommandRequest command;
    command.set_instance_id("ghost");
    command.set_device_id("lamp");
    command.set_values(R"({"power": true})");
    command.set_timeout(0.5);
    auto capture = Capture(*broker, "IoT2mqtt/v1/instances/ghost/#");
    v1::SendCommandResponse response;
    absl::Time start = absl::Now();
    grpc::Status s =
        stack.bridge().SendCommand(Context(10).get(), command, &response);
    CHECK(absl::Now() - start >= absl::Milliseconds(450));
    CHECK(s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
    CHECK(ReasonOf(s) == "COMMAND_TIMEOUT");
    std::string id = MetadataOf(s)["command_id"];
    CHECK(id.size() == 36);
    // What went out: id, UTC timestamp, values, timeout in ms, QoS 1, not
    // retained.
    auto sent =
        capture->WaitFor("IoT2mqtt/v1/instances/ghost/devices/lamp/cmd");
    REQUIRE(sent.has_value());
    CHECK(sent->qos == 1);
    CHECK_FALSE(sent->retain);
    rapidjson::Document payload = Json(sent->payload);
    CHECK(std::string(payload["id"].GetString()) == id);
    CHECK(absl::EndsWith(payload["timestamp"].GetString(), "Z"));
    CHECK(payload["values"]["power"].GetBool());
    CHECK(payload["timeout"].GetInt() == 500);

    // timeout 0: published, not waited for.
    command.set_timeout(0);
    response.Clear();
    REQUIRE(
        stack.bridge().SendCommand(Context().get(), command, &response).ok());
    CHECK(response.success());
    CHECK(response.response() == "null");
    CHECK(response.command_id().size() == 36);
  }

  SECTION("invalid commands are refused with a reason") {
    struct Case {
      std::string instance, device, command, values;
      std::optional<double> timeout;
      std::string reason;
    };
    std::vector<Case> cases = {
        {"Demo", "light", "{}", "", std::nullopt, "INVALID_INSTANCE_ID"},
        {"demo/x", "light", "{}", "", std::nullopt, "INVALID_INSTANCE_ID"},
        {"demo", "li+ght", "{}", "", std::nullopt, "INVALID_DEVICE_ID"},
        {"demo", "", "{}", "", std::nullopt, "INVALID_DEVICE_ID"},
        {"demo", "light", "", "", std::nullopt, "INVALID_COMMAND"},
        {"demo", "light", "{}", "{}", std::nullopt, "INVALID_COMMAND"},
        {"demo", "light", "[1]", "", std::nullopt, "INVALID_COMMAND"},
        {"demo", "light", "{\"a\":", "", std::nullopt, "INVALID_COMMAND"},
        {"demo", "light", "{}", "", 61.0, "INVALID_TIMEOUT"},
        {"demo", "light", "{}", "", -1.0, "INVALID_TIMEOUT"},
    };
    for (const Case& c : cases) {
      v1::SendCommandRequest command;
      command.set_instance_id(c.instance);
      command.set_device_id(c.device);
      command.set_command(c.command);
      command.set_values(c.values);
      if (c.timeout.has_value()) command.set_timeout(*c.timeout);
      v1::SendCommandResponse response;
      grpc::Status s =
          stack.bridge().SendCommand(Context().get(), command, &response);
      INFO(c.instance << " " << c.device << " " << c.command << " "
                      << c.values);
      CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
      CHECK(ReasonOf(s) == c.reason);
    }
  }
}

TEST_CASE("publish: validation, defaults, and the payload as given",
          "[integration][mqtt_bridge]") {
  auto broker = StartBroker();
  BridgeStack stack(SeedFor(*broker));
  stack.StartBridge({{"MQTT_BRIDGE_MAX_PAYLOAD_BYTES", "1024"}});
  stack.WaitConnected(broker->port());
  auto capture = Capture(*broker, "pub/#");

  // A JSON string goes out as its text; defaults: QoS 1, not retained.
  REQUIRE(Publish(stack, "pub/text", R"("hello")").ok());
  auto text = capture->WaitFor("pub/text");
  REQUIRE(text.has_value());
  CHECK(text->payload == "hello");
  CHECK(text->qos == 1);
  CHECK_FALSE(text->retain);
  // Anything else as its JSON text; qos and retain as given.
  REQUIRE(Publish(stack, "pub/object", R"({"a": [1, 2.50]})", 0, true).ok());
  auto later = Capture(*broker, "pub/object");
  auto object = later->WaitFor("pub/object");
  REQUIRE(object.has_value());
  CHECK(object->payload == R"({"a": [1, 2.50]})");
  CHECK(object->retain);

  struct Case {
    std::string topic, payload;
    std::optional<int> qos;
    std::string reason;
  };
  std::vector<Case> cases = {
      {"pub/+/x", "1", std::nullopt, "INVALID_TOPIC"},
      {"pub/#", "1", std::nullopt, "INVALID_TOPIC"},
      {"", "1", std::nullopt, "INVALID_TOPIC"},
      {std::string("pub/\0x", 6), "1", std::nullopt, "INVALID_TOPIC"},
      {"pub/q", "1", 3, "INVALID_QOS"},
      {"pub/q", "1", -1, "INVALID_QOS"},
      {"pub/big", absl::StrCat("\"", std::string(1025, 'x'), "\""),
       std::nullopt, "PAYLOAD_TOO_LARGE"},
      {"pub/bad", "{not json", std::nullopt, "INVALID_PAYLOAD"},
  };
  for (const Case& c : cases) {
    INFO(c.topic << " " << c.payload.substr(0, 20));
    grpc::Status s = Publish(stack, c.topic, c.payload, c.qos);
    CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(ReasonOf(s) == c.reason);
  }
  // Exactly at the limit is fine.
  CHECK(Publish(stack, "pub/edge",
                absl::StrCat("\"", std::string(1024, 'y'), "\""))
            .ok());
  CHECK(capture->WaitFor("pub/edge").has_value());
  CHECK_FALSE(capture->Arrives("pub/big", nullptr, absl::Milliseconds(200)));
}

TEST_CASE("clear-instance clears exactly that instance; clear-all the rest",
          "[integration][mqtt_bridge]") {
  auto broker = StartBroker();
  BridgeStack stack(SeedFor(*broker));
  stack.StartBridge();
  stack.WaitConnected(broker->port());
  auto writer = Capture(*broker, "unused/#");
  const std::string root = "IoT2mqtt/v1/instances/";
  for (const std::string& topic :
       {root + "inst/status", root + "inst/devices/d1/state",
        root + "inst/devices/d1/state/power", root + "inst",
        root + "inst2/status", root + "inst2/devices/d1/state",
        std::string("other/keep")}) {
    REQUIRE(writer->Publish(topic, "1", 1, true).ok());
  }
  // other/keep is outside the base topic: not cached.
  REQUIRE(WaitFor([&] {
    return HasTopic(stack, root + "inst2/devices/d1/state") &&
           HasTopic(stack, root + "inst") &&
           HasTopic(stack, root + "inst/devices/d1/state/power");
  }));

  v1::ClearInstanceTopicsRequest request;
  request.set_instance_id("Inst");
  v1::ClearResponse response;
  grpc::Status s =
      stack.bridge().ClearInstanceTopics(Context().get(), request, &response);
  CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(ReasonOf(s) == "INVALID_INSTANCE_ID");

  request.set_instance_id("inst");
  s = stack.bridge().ClearInstanceTopics(Context().get(), request, &response);
  INFO(s.error_message());
  REQUIRE(s.ok());
  CHECK(response.status() == "success");
  CHECK(response.message() == "All MQTT topics cleared for instance inst");
  // 4 cached + meta/info + meta/devices_list (status is both).
  CHECK(response.cleared() == 6);
  std::vector<std::string> left = TopicNames(stack, "instances/inst");
  CHECK(left == std::vector<std::string>{root + "inst2/devices/d1/state",
                                         root + "inst2/status"});
  // At the broker: only inst2's retained messages remain.
  auto after = Capture(*broker, "#");
  REQUIRE(after->WaitFor(root + "inst2/status").has_value());
  REQUIRE(after->WaitFor("other/keep").has_value());
  CHECK_FALSE(
      after->Arrives(root + "inst/#", nullptr, absl::Milliseconds(300)));
  CHECK_FALSE(after->Arrives(root + "inst", nullptr, absl::Milliseconds(1)));

  v1::ClearResponse all;
  REQUIRE(stack.bridge().ClearAll(Context().get(), {}, &all).ok());
  CHECK(all.status() == "success");
  CHECK(all.message() == "All IoT2MQTT topics cleared from MQTT broker");
  CHECK(all.cleared() == 2);
  CHECK(TopicNames(stack).empty());
  auto last = Capture(*broker, "#");
  REQUIRE(last->WaitFor("other/keep").has_value());
  CHECK_FALSE(last->Arrives("IoT2mqtt/#", nullptr, absl::Milliseconds(300)));
}

TEST_CASE("subscribe: snapshot, live events, filters outside the base",
          "[integration][mqtt_bridge]") {
  auto broker = StartBroker();
  BridgeStack stack(SeedFor(*broker));
  stack.StartBridge();
  stack.WaitConnected(broker->port());
  auto writer = Capture(*broker, "unused/#");
  REQUIRE(writer->Publish("IoT2mqtt/a/1", R"({"v":1})", 1, true).ok());
  REQUIRE(writer->Publish("IoT2mqtt/b/1", "plain", 1, true).ok());
  REQUIRE(WaitFor([&] { return TopicNames(stack).size() == 2; }));

  v1::SubscribeRequest request;
  request.add_filters("IoT2mqtt/a/#");
  StreamReader a(stack.bridge(), request);
  auto end = a.WaitFor(
      [](const TopicEvent& e) { return e.type() == TopicEvent::SNAPSHOT_END; });
  REQUIRE(end.has_value());
  std::vector<TopicEvent> events = a.Events();
  REQUIRE(events.size() == 2);
  CHECK(events[0].type() == TopicEvent::SNAPSHOT);
  CHECK(events[0].topic() == "IoT2mqtt/a/1");
  CHECK(events[0].value() == R"({"v":1})");
  CHECK(events[0].qos() == 1);
  CHECK(absl::EndsWith(events[0].timestamp(), "Z"));

  // Everything under the base by default; a text payload is a JSON string.
  StreamReader all(stack.bridge(), v1::SubscribeRequest());
  REQUIRE(all.WaitForTopic("IoT2mqtt/b/1", TopicEvent::SNAPSHOT).has_value());
  REQUIRE(all.WaitForTopic("IoT2mqtt/b/1", TopicEvent::SNAPSHOT)->value() ==
          "\"plain\"");

  size_t mark = a.Mark();
  REQUIRE(writer->Publish("IoT2mqtt/a/2", "2", 1, false).ok());
  REQUIRE(writer->Publish("IoT2mqtt/b/2", "2", 1, false).ok());
  REQUIRE(writer->Publish("IoT2mqtt/a/1", "", 1, true).ok());
  auto update = a.WaitForTopic("IoT2mqtt/a/2", TopicEvent::UPDATE,
                               absl::Seconds(10), mark);
  REQUIRE(update.has_value());
  CHECK(update->value() == "2");
  CHECK_FALSE(update->retained());
  CHECK(a.WaitForTopic("IoT2mqtt/a/1", TopicEvent::DELETE, absl::Seconds(10),
                       mark)
            .has_value());
  REQUIRE(all.WaitForTopic("IoT2mqtt/b/2", TopicEvent::UPDATE).has_value());
  for (const TopicEvent& e : a.Events()) CHECK(e.topic() != "IoT2mqtt/b/2");

  // A filter outside the base topic is subscribed at the broker while
  // needed.
  REQUIRE(writer->Publish("elsewhere/x", "7", 1, true).ok());
  CHECK_FALSE(HasTopic(stack, "elsewhere/x"));
  v1::SubscribeRequest outside;
  outside.add_filters("elsewhere/#");
  auto other = std::make_unique<StreamReader>(stack.bridge(), outside);
  auto retained = other->WaitForTopic("elsewhere/x", TopicEvent::UPDATE);
  REQUIRE(retained.has_value());
  CHECK(retained->retained());
  CHECK(HasTopic(stack, "elsewhere/x"));
  other.reset();  // Cancelled by the client.
  CHECK(WaitFor([&] { return !HasTopic(stack, "elsewhere/x"); }));

  // Invalid filters end the stream at once.
  v1::SubscribeRequest bad;
  bad.add_filters("a/#/b");
  StreamReader invalid(stack.bridge(), bad);
  std::optional<grpc::Status> status = invalid.WaitEnd(absl::Seconds(5));
  REQUIRE(status.has_value());
  CHECK(status->error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(ReasonOf(*status) == "INVALID_FILTER");

  // Shutdown ends live streams cleanly: the service ends them itself
  // (SHUTTING_DOWN), rather than the grace period cutting them off.
  CHECK(stack.StopBridge() == 0);
  status = a.WaitEnd(absl::Seconds(5));
  REQUIRE(status.has_value());
  CHECK(status->error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(ReasonOf(*status) == "SHUTTING_DOWN");
}

TEST_CASE("subscribe: a large snapshot arrives whole, every time",
          "[integration][mqtt_bridge]") {
  // A UI opening /ws/mqtt on a busy installation: thousands of cached
  // topics must reach the subscriber promptly (a stalled write once kept
  // the snapshot from ever completing).
  auto broker = StartBroker();
  BridgeStack stack(SeedFor(*broker));
  stack.StartBridge();
  stack.WaitConnected(broker->port());
  constexpr int kTopics = 5000;
  auto writer = Capture(*broker, "unused/#");
  for (int i = 0; i < kTopics; ++i) {
    REQUIRE(writer
                ->Publish(absl::StrCat("IoT2mqtt/v1/instances/bulk/devices/d",
                                       i, "/state"),
                          absl::StrCat(R"({"state":{"n":)", i, "}}"), 0, true)
                .ok());
  }
  REQUIRE(WaitFor([&] { return stack.Status().topics_count() == kTopics; },
                  absl::Seconds(30)));
  for (int attempt = 0; attempt < 3; ++attempt) {
    INFO("attempt " << attempt);
    StreamReader reader(stack.bridge(), v1::SubscribeRequest());
    auto end = reader.WaitFor(
        [](const TopicEvent& e) {
          return e.type() == TopicEvent::SNAPSHOT_END;
        },
        absl::Seconds(15));
    REQUIRE(end.has_value());
    int snapshot = 0;
    for (const TopicEvent& e : reader.Events()) {
      if (e.type() == TopicEvent::SNAPSHOT) ++snapshot;
    }
    CHECK(snapshot == kTopics);
  }
}

TEST_CASE("broker restart: status tells the truth, streams resume",
          "[integration][mqtt_bridge]") {
  auto broker = StartBroker();
  BridgeStack stack(SeedFor(*broker));
  stack.StartBridge();
  stack.WaitConnected(broker->port());
  StreamReader stream(stack.bridge(), v1::SubscribeRequest());
  REQUIRE(stream
              .WaitFor([](const TopicEvent& e) {
                return e.type() == TopicEvent::SNAPSHOT_END;
              })
              .has_value());
  const std::string connected_since = stack.Status().since();

  REQUIRE(broker->Stop().ok());
  REQUIRE(WaitFor([&] { return !stack.Status().connected(); }));
  v1::GetStatusResponse down = stack.Status();
  CHECK_FALSE(down.last_error().empty());
  CHECK(down.since() != connected_since);
  CHECK(down.broker() == "127.0.0.1");
  telemetry::v1::GetHealthResponse health = stack.Health();
  CHECK_FALSE(health.healthy());
  CHECK(health.reason() == "not connected to the MQTT broker");
  CHECK(health.details().at("broker") ==
        absl::StrCat("127.0.0.1:", broker->port()));
  CHECK(absl::StrContains(stack.Metrics(), "iot_mqtt_bridge_connected 0"));
  // Nothing is queued silently.
  grpc::Status s = Publish(stack, "IoT2mqtt/x", "1");
  CHECK(s.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(ReasonOf(s) == "MQTT_NOT_CONNECTED");
  v1::SendCommandRequest command;
  command.set_instance_id("demo");
  command.set_device_id("light");
  command.set_values("{}");
  v1::SendCommandResponse response;
  s = stack.bridge().SendCommand(Context().get(), command, &response);
  CHECK(ReasonOf(s) == "MQTT_NOT_CONNECTED");
  v1::ClearResponse cleared;
  s = stack.bridge().ClearAll(Context().get(), {}, &cleared);
  CHECK(ReasonOf(s) == "MQTT_NOT_CONNECTED");
  // The reconnect attempts fail while the broker is away.
  REQUIRE(WaitFor([&] {
    return absl::StrContains(stack.Status().last_error(), "refused");
  }));

  REQUIRE(broker->Restart().ok());
  stack.WaitConnected(broker->port());
  v1::GetStatusResponse up = stack.Status();
  CHECK(up.last_error().empty());
  CHECK(WaitFor([&] { return stack.Health().healthy(); }));
  auto writer = Capture(*broker, "unused/#");
  size_t mark = stream.Mark();
  REQUIRE(writer->Publish("IoT2mqtt/after/restart", "1", 1, false).ok());
  CHECK(stream
            .WaitForTopic("IoT2mqtt/after/restart", TopicEvent::UPDATE,
                          absl::Seconds(10), mark)
            .has_value());
}

TEST_CASE("changed settings move the bridge to another broker without restart",
          "[integration][mqtt_bridge]") {
  auto first = StartBroker();
  auto second = StartBroker();
  BridgeStack stack(SeedFor(*first));
  stack.StartBridge();
  stack.WaitConnected(first->port());
  auto writer = Capture(*first, "unused/#");
  REQUIRE(writer->Publish("IoT2mqtt/on/first", "1", 1, true).ok());
  REQUIRE(WaitFor([&] { return HasTopic(stack, "IoT2mqtt/on/first"); }));

  config::v1::UpdateMqttSettingsRequest update;
  update.set_settings(absl::StrCat(R"({"host":"127.0.0.1","port":)",
                                   second->port(),
                                   R"(,"base_topic":"Second"})"));
  config::v1::UpdateMqttSettingsResponse updated;
  grpc::Status s =
      stack.config().UpdateMqttSettings(Context().get(), update, &updated);
  INFO(s.error_message());
  REQUIRE(s.ok());
  stack.WaitConnected(second->port());
  v1::GetStatusResponse status = stack.Status();
  CHECK(status.base_topic() == "Second");
  // The old broker's topics are gone; the new base topic is followed.
  CHECK_FALSE(HasTopic(stack, "IoT2mqtt/on/first"));
  auto capture = Capture(*second, "#");
  REQUIRE(capture->Publish("Second/hello", "1", 1, true).ok());
  CHECK(WaitFor([&] { return HasTopic(stack, "Second/hello"); }));
  REQUIRE(Publish(stack, "Second/from/bridge", "2").ok());
  CHECK(capture->WaitFor("Second/from/bridge").has_value());
}

TEST_CASE("TestConnection: success, broker refusal, nothing listening",
          "[integration][mqtt_bridge]") {
  TempDir dir;
  const std::string passwords = dir.Join("passwords");
  WriteFile(passwords, "");
  // Mosquitto started as root reads it as its own user.
  REQUIRE(chmod(dir.path().c_str(), 0755) == 0);
  REQUIRE(system(absl::StrCat("mosquitto_passwd -b ", passwords,
                              " alice 's3cret pass'")
                     .c_str()) == 0);
  REQUIRE(chmod(passwords.c_str(), 0644) == 0);
  sdk::testing::LoopbackBrokerOptions options;
  options.extra_config =
      absl::StrCat("allow_anonymous false\npassword_file ", passwords);
  auto broker = StartBroker(options);
  // The bridge itself uses the stored credentials.
  BridgeStack stack({{"MQTT_HOST", broker->host()},
                     {"MQTT_PORT", absl::StrCat(broker->port())},
                     {"MQTT_USERNAME", "alice"},
                     {"MQTT_PASSWORD", "s3cret pass"}});
  stack.StartBridge({{"MQTT_BRIDGE_TEST_TIMEOUT_MS", "2000"}});
  stack.WaitConnected(broker->port());

  auto test = [&](const std::string& host, std::optional<int> port,
                  const std::string& username, const std::string& password,
                  v1::TestConnectionResponse* response) {
    v1::TestConnectionRequest request;
    request.set_host(host);
    if (port.has_value()) request.set_port(*port);
    request.set_username(username);
    request.set_password(password);
    return stack.bridge().TestConnection(Context(10).get(), request, response);
  };
  v1::TestConnectionResponse response;
  REQUIRE(test("127.0.0.1", broker->port(), "alice", "s3cret pass", &response)
              .ok());
  CHECK(response.success());
  CHECK(response.message() == "Connection successful");

  response.Clear();
  REQUIRE(test("127.0.0.1", broker->port(), "alice", "***HIDDEN***", &response)
              .ok());
  CHECK(response.success());

  response.Clear();
  REQUIRE(test("127.0.0.1", broker->port(), "alice", "wrong", &response).ok());
  CHECK_FALSE(response.success());
  CHECK(absl::StrContains(response.message(), "not authorised"));
  CHECK_FALSE(absl::StrContains(response.message(), "wrong"));

  int nothing = FreePort();
  response.Clear();
  REQUIRE(test("127.0.0.1", nothing, "", "", &response).ok());
  CHECK_FALSE(response.success());
  CHECK(
      absl::StrContains(response.message(),
                        absl::StrCat("Cannot connect to 127.0.0.1:", nothing)));
  CHECK(absl::StrContains(response.message(), "refused"));

  // Something that is not an MQTT broker: the config service's gRPC port.
  response.Clear();
  absl::Time start = absl::Now();
  REQUIRE(test("127.0.0.1", stack.services().config_port(), "", "", &response)
              .ok());
  CHECK_FALSE(response.success());
  CHECK(absl::Now() - start < absl::Seconds(5));

  grpc::Status s = test("127.0.0.1", 70000, "", "", &response);
  CHECK(s.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(ReasonOf(s) == "INVALID_MQTT_SETTINGS");
  CHECK(MetadataOf(s).count("port") == 1);
  s = test("", std::nullopt, "", "", &response);
  CHECK(ReasonOf(s) == "INVALID_MQTT_SETTINGS");
  CHECK(MetadataOf(s).count("host") == 1);

  // The bridge's own status and logs never show the password.
  std::string logs = ReadFile(stack.log_path());
  CHECK_FALSE(absl::StrContains(logs, "s3cret"));
}

TEST_CASE("status without a broker, and a broker that refuses the bridge",
          "[integration][mqtt_bridge]") {
  auto broker = StartBroker();
  BridgeStack stack({});
  stack.StartBridge();
  REQUIRE(WaitFor([&] {
    v1::GetStatusResponse status = stack.Status();
    return status.broker() == "Not configured";
  }));
  CHECK_FALSE(stack.Status().connected());
  grpc::Status s = Publish(stack, "IoT2mqtt/x", "1");
  CHECK(ReasonOf(s) == "MQTT_NOT_CONNECTED");
  // Configured later: picked up without a restart.
  config::v1::UpdateMqttSettingsRequest update;
  update.set_settings(
      absl::StrCat(R"({"host":"127.0.0.1","port":)", broker->port(), "}"));
  config::v1::UpdateMqttSettingsResponse updated;
  REQUIRE(stack.config()
              .UpdateMqttSettings(Context().get(), update, &updated)
              .ok());
  stack.WaitConnected(broker->port());
}

TEST_CASE("a slow subscriber skips ahead and never stalls a fast one",
          "[integration][mqtt_bridge]") {
  auto broker = StartBroker();
  BridgeStack stack(SeedFor(*broker));
  stack.StartBridge({{"MQTT_BRIDGE_SUBSCRIBER_QUEUE", "64"}});
  stack.WaitConnected(broker->port());
  v1::SubscribeRequest request;
  request.add_filters("IoT2mqtt/flood/#");
  StreamReader slow(stack.bridge(), request, /*read_now=*/false);
  StreamReader fast(stack.bridge(), request);
  REQUIRE(fast.WaitFor([](const TopicEvent& e) {
                return e.type() == TopicEvent::SNAPSHOT_END;
              })
              .has_value());
  auto writer = Capture(*broker, "unused/#");
  // ~24 MB: far more than the stalled stream's transport buffers.
  const std::string payload = absl::StrCat("\"", std::string(8000, 'z'), "\"");
  for (int i = 0; i < 3000; ++i) {
    REQUIRE(writer
                ->Publish(absl::StrCat("IoT2mqtt/flood/", i % 50), payload, 1,
                          false)
                .ok());
  }
  REQUIRE(writer->Publish("IoT2mqtt/flood/end", "1", 1, false).ok());
  INFO(stack.Logs());
  CHECK(fast.WaitForTopic("IoT2mqtt/flood/end", TopicEvent::UPDATE,
                          absl::Seconds(20))
            .has_value());
  CHECK(stack.Status().connected());

  // The slow one, once it reads, learns it skipped, then catches up.
  slow.Resume();
  auto skipped = slow.WaitFor(
      [](const TopicEvent& e) { return e.type() == TopicEvent::SKIPPED; },
      absl::Seconds(20));
  REQUIRE(skipped.has_value());
  CHECK(skipped->skipped() > 0);
  CHECK(slow.WaitForTopic("IoT2mqtt/flood/end", TopicEvent::UPDATE,
                          absl::Seconds(20))
            .has_value());
  CHECK(slow.Events().size() < 3000);
}

}  // namespace
}  // namespace iot2mqtt::mqtt_bridge::harness
