// WS /ws/mqtt end to end: a real Mosquitto, the real iot2mqtt-config and
// iot2mqtt-mqtt-bridge binaries, the gateway in-process with auth on, and a
// WebSocket client.

#include <unistd.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "catch2/catch.hpp"
#include "gateway/gateway.h"
#include "gateway/websocket.h"
#include "rapidjson/document.h"
#include "sdk/testing/loopback_broker.h"
#include "sdk/testing/topic_capture.h"
#include "tests/integration/config/config_harness.h"
#include "tests/integration/gateway/ws_client.h"
#include "tests/support/captured_log.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::gateway {
namespace {

using ::iot2mqtt::config::harness::kAccessKey;
using ::iot2mqtt::config::harness::ServiceStack;
using ::iot2mqtt::sdk::testing::LoopbackBroker;
using ::iot2mqtt::sdk::testing::TopicCapture;
using ::iot2mqtt::testing::BinaryPath;
using ::iot2mqtt::testing::ChildProcess;
using ::iot2mqtt::testing::FreePort;
using ::iot2mqtt::testing::HttpResponse;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::WaitFor;
using ::iot2mqtt::testing::WsClient;

constexpr char kConfigService[] = "iot2mqtt.config.v1.ConfigService";
constexpr char kBridgeService[] = "iot2mqtt.mqtt_bridge.v1.MqttBridgeService";

rapidjson::Document Json(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.c_str(), text.size());
  INFO(text.substr(0, 2000));
  REQUIRE_FALSE(doc.HasParseError());
  REQUIRE(doc.IsObject());
  return doc;
}

std::string Str(const rapidjson::Value& value, const char* key) {
  INFO("key " << key);
  REQUIRE(value.HasMember(key));
  REQUIRE(value[key].IsString());
  return std::string(value[key].GetString(), value[key].GetStringLength());
}

std::string TypeOf(const std::string& message) {
  return Str(Json(message), "type");
}

// The next message, or a marker saying there was none (printable in a
// failed CHECK).
std::string Next(WsClient& client) {
  return client.Read().value_or("<closed or timed out>");
}

// A predicate for WsClient::ReadUntil: a message of `type` (and `topic`).
std::function<bool(const std::string&)> Is(const std::string& type,
                                           const std::string& topic = "") {
  return [type, topic](const std::string& message) {
    rapidjson::Document doc = Json(message);
    if (Str(doc, "type") != type) return false;
    return topic.empty() ||
           (doc.HasMember("topic") && doc["topic"].IsString() &&
            Str(doc, "topic") == topic);
  };
}

// Broker + config + bridge binaries, the gateway in-process (auth on).
class WsStack {
 public:
  explicit WsStack(std::function<void(GatewayOptions&)> tweak = nullptr) {
    auto broker = LoopbackBroker::Start();
    INFO(broker.status().ToString());
    REQUIRE(broker.ok());
    broker_ = *std::move(broker);
    services_ = std::make_unique<ServiceStack>(
        config::harness::Env{{"MQTT_HOST", broker_->host()},
                             {"MQTT_PORT", absl::StrCat(broker_->port())}});
    services_->StartConfig();
    StartBridge();

    GatewayOptions options;
    options.listen_address = "127.0.0.1:0";
    options.backends = {{"config",
                         {kConfigService},
                         absl::StrCat("127.0.0.1:", services_->config_port())},
                        {"mqtt-bridge", {kBridgeService}, bridge_address()}};
    options.shutdown_grace = absl::Seconds(3);
    if (tweak) tweak(options);
    absl::StatusOr<std::unique_ptr<Gateway>> gateway =
        Gateway::Create(std::move(options));
    REQUIRE(gateway.ok());
    gateway_ = *std::move(gateway);
    REQUIRE(gateway_->Start().ok());

    HttpResponse login = Http("POST", "/api/auth/login",
                              absl::StrCat(R"({"key":")", kAccessKey, R"("})"));
    INFO(login.body);
    REQUIRE(login.status == 200);
    token_ = Str(Json(login.body), "token");

    // The bridge is connected to the broker (through the gateway's REST).
    bool connected = WaitFor(
        [&] {
          HttpResponse status = Http("GET", "/api/mqtt/status");
          if (status.status != 200) return false;
          rapidjson::Document doc = Json(status.body);
          if (!doc["connected"].GetBool()) return false;
          base_ = Str(doc, "base_topic");
          return true;
        },
        absl::Seconds(20));
    INFO(Logs());
    REQUIRE(connected);
    auto publisher =
        TopicCapture::Start(broker_->host(), broker_->port(), "unused/none");
    REQUIRE(publisher.ok());
    publisher_ = *std::move(publisher);
  }

  ~WsStack() {
    gateway_.reset();
    if (bridge_ != nullptr) {
      bridge_->Signal(SIGTERM);
      (void)bridge_->Wait(absl::Seconds(10));
    }
  }

  HttpResponse Http(const std::string& method, const std::string& target,
                    const std::string& body = "") {
    std::vector<std::pair<std::string, std::string>> headers;
    if (!token_.empty()) {
      headers.emplace_back("Authorization", absl::StrCat("Bearer ", token_));
    }
    auto response =
        ::iot2mqtt::testing::HttpRequest(port(), method, target, body, headers);
    REQUIRE(response.ok());
    return *std::move(response);
  }

  // A socket on /ws/mqtt with the token in the query; its first message
  // (the topics snapshot) is returned through `topics`.
  std::unique_ptr<WsClient> Connect(std::string* topics = nullptr,
                                    int receive_buffer = 0) {
    auto client = std::make_unique<WsClient>(port(), receive_buffer);
    REQUIRE(client->Open(absl::StrCat("/ws/mqtt?token=", token_)) == 101);
    std::optional<std::string> first = client->Read();
    INFO(Logs());
    REQUIRE(first.has_value());
    REQUIRE(TypeOf(*first) == "topics");
    if (topics != nullptr) *topics = *first;
    return client;
  }

  void Publish(const std::string& topic, const std::string& payload,
               int qos = 1, bool retain = false) {
    absl::Status s = publisher_->Publish(topic, payload, qos, retain);
    INFO(s.ToString());
    REQUIRE(s.ok());
  }
  // The same from another thread (no Catch assertions there).
  absl::Status PublishFromThread(const std::string& topic,
                                 const std::string& payload, int qos) {
    return publisher_->Publish(topic, payload, qos, false);
  }

  // Topics under the base holding `needle` that the bridge has cached.
  size_t Cached(const std::string& needle) {
    HttpResponse topics = Http("GET", "/api/mqtt/topics?filter=" + needle);
    REQUIRE(topics.status == 200);
    rapidjson::Document doc;
    doc.Parse(topics.body.c_str());
    REQUIRE(doc.IsArray());
    return doc.Size();
  }

  std::string Logs() const {
    std::string bridge = access(bridge_log().c_str(), R_OK) == 0
                             ? ReadFile(bridge_log())
                             : std::string();
    if (bridge.size() > 6000) bridge = bridge.substr(bridge.size() - 6000);
    return absl::StrCat(services_->Logs(3000), "--- bridge.log\n", bridge);
  }

  Gateway& gateway() { return *gateway_; }
  LoopbackBroker& broker() { return *broker_; }
  int port() const { return gateway_->port(); }
  const std::string& token() const { return token_; }
  const std::string& base() const { return base_; }

 private:
  std::string bridge_address() const {
    return absl::StrCat("127.0.0.1:", bridge_port_);
  }
  std::string bridge_log() const { return services_->root() + "/bridge.log"; }

  void StartBridge() {
    bridge_port_ = FreePort();
    auto process = ChildProcess::Start(
        BinaryPath("iot2mqtt-mqtt-bridge"), {},
        {{"MQTT_BRIDGE_LISTEN_ADDR", bridge_address()},
         {"CONFIG_SERVICE_ADDR",
          absl::StrCat("127.0.0.1:", services_->config_port())},
         {"LOG_LEVEL", "INFO"}},
        bridge_log());
    REQUIRE(process.ok());
    bridge_ = *std::move(process);
    bool listening = WaitFor(
        [&] {
          return !bridge_->Running() ||
                 ::iot2mqtt::testing::PortAccepts(bridge_port_);
        },
        absl::Seconds(20));
    INFO(Logs());
    REQUIRE(bridge_->Running());
    REQUIRE(listening);
  }

  std::unique_ptr<LoopbackBroker> broker_;
  std::unique_ptr<ServiceStack> services_;
  int bridge_port_ = 0;
  std::unique_ptr<ChildProcess> bridge_;
  std::unique_ptr<Gateway> gateway_;
  std::unique_ptr<TopicCapture> publisher_;
  std::string token_;
  std::string base_;
};

TEST_CASE("/ws/mqtt: the cached topics on connect, then updates and deletes") {
  WsStack stack;
  const std::string status = stack.base() + "/v1/instances/ws1/status";
  const std::string state =
      stack.base() + "/v1/instances/ws1/devices/lamp/state";
  stack.Publish(status, "online", 1, /*retain=*/true);
  stack.Publish(state, R"({"power":true})", 1, /*retain=*/true);
  REQUIRE(WaitFor([&] { return stack.Cached("ws1") == 2; }));

  std::string topics;
  std::unique_ptr<WsClient> client = stack.Connect(&topics);
  rapidjson::Document doc = Json(topics);
  REQUIRE(doc["data"].IsArray());
  bool saw_status = false, saw_state = false;
  for (const rapidjson::Value& entry : doc["data"].GetArray()) {
    const std::string topic = Str(entry, "topic");
    CHECK(entry.HasMember("timestamp"));
    CHECK(entry.HasMember("qos"));
    if (topic == status) {
      saw_status = true;
      CHECK(Str(entry, "value") == "online");
      // Live to the bridge, so not flagged retained by the broker.
      CHECK(entry["retained"].IsBool());
    }
    if (topic == state) {
      saw_state = true;
      CHECK(entry["value"]["power"].GetBool());
    }
  }
  CHECK(saw_status);
  CHECK(saw_state);

  stack.Publish(status, "offline");
  std::optional<std::string> update = client->ReadUntil(Is("update", status));
  REQUIRE(update.has_value());
  rapidjson::Document u = Json(*update);
  CHECK(Str(u, "value") == "offline");
  CHECK_FALSE(u["retained"].GetBool());
  CHECK_FALSE(Str(u, "timestamp").empty());

  stack.Publish(state, "", 1, /*retain=*/true);  // Empty retained: delete.
  std::optional<std::string> deleted = client->ReadUntil(Is("delete", state));
  REQUIRE(deleted.has_value());
  CHECK(*deleted ==
        absl::StrCat(R"({"type":"delete","topic":")", state, R"("})"));
}

TEST_CASE("/ws/mqtt: subscriptions belong to one socket, once per message") {
  WsStack stack;
  std::unique_ptr<WsClient> a = stack.Connect();
  std::unique_ptr<WsClient> b = stack.Connect();
  const std::string marker = stack.base() + "/v1/instances/marker/status";

  // Retained before the subscription: the broker hands it over when the
  // bridge subscribes, so its arrival shows the subscription is live.
  stack.Publish("zigbee2mqtt/lamp", R"({"state":"ON"})", 1, /*retain=*/true);
  a->Send(R"({"action":"subscribe","topic":"zigbee2mqtt/#"})");
  CHECK(Next(*a) == R"({"type":"subscribed","topic":"zigbee2mqtt/#"})");
  std::optional<std::string> lamp = a->Read();
  REQUIRE(lamp.has_value());
  INFO(*lamp);
  CHECK(Is("update", "zigbee2mqtt/lamp")(*lamp));
  CHECK(Json(*lamp)["value"]["state"] == "ON");
  // Cleared again (else each new subscription replays it).
  stack.Publish("zigbee2mqtt/lamp", "", 1, /*retain=*/true);
  CHECK(Next(*a) == R"({"type":"delete","topic":"zigbee2mqtt/lamp"})");
  // B never subscribed: the next thing it sees is the marker.
  stack.Publish(marker, "1");
  std::string next = Next(*b);
  INFO(next);
  CHECK(Is("update", marker)(next));
  CHECK(a->ReadUntil(Is("update", marker)).has_value());

  // An overlapping filter: its snapshot and messages come once.
  a->Send(R"({"action":"subscribe","topic":"zigbee2mqtt/lamp"})");
  CHECK(Next(*a) == R"({"type":"subscribed","topic":"zigbee2mqtt/lamp"})");
  // The end marker travels the same bridge stream as the lamp (the wide
  // filter's); one under the base topic would come on another stream,
  // with no order between the two.
  const std::string lamp_marker = "zigbee2mqtt/zz-marker";
  stack.Publish("zigbee2mqtt/lamp", R"({"state":"OFF"})");
  stack.Publish(lamp_marker, "2");
  std::vector<std::string> before;
  REQUIRE(a->ReadUntil(Is("update", lamp_marker), absl::Seconds(10), &before)
              .has_value());
  INFO(absl::StrJoin(before, "\n"));
  REQUIRE(before.size() == 1);
  CHECK(Is("update", "zigbee2mqtt/lamp")(before[0]));

  // Unsubscribing the wide filter: the narrow one still delivers.
  a->Send(R"({"action":"unsubscribe","topic":"zigbee2mqtt/#"})");
  CHECK(a->ReadUntil(Is("unsubscribed", "zigbee2mqtt/#")).has_value());
  stack.Publish("zigbee2mqtt/plug", "x");
  stack.Publish("zigbee2mqtt/lamp", R"({"state":"ON"})");
  std::string after = Next(*a);
  INFO(after);
  CHECK(Is("update", "zigbee2mqtt/lamp")(after));
  a->Send(R"({"action":"unsubscribe","topic":"zigbee2mqtt/lamp"})");
  CHECK(a->ReadUntil(Is("unsubscribed", "zigbee2mqtt/lamp")).has_value());
  stack.Publish("zigbee2mqtt/lamp", "gone");
  stack.Publish(marker, "3");
  std::string last = Next(*a);
  INFO(last);
  CHECK(Is("update", marker)(last));
}

TEST_CASE("/ws/mqtt: publish honours qos and retain") {
  WsStack stack;
  std::unique_ptr<WsClient> client = stack.Connect();
  auto live = TopicCapture::Start(stack.broker().host(), stack.broker().port(),
                                  "wspub/#", /*qos=*/2);
  REQUIRE(live.ok());

  client->Send(R"({"action":"publish","topic":"wspub/one","payload":{"a":1},)"
               R"("qos":2,"retain":true})");
  CHECK(client->ReadUntil(Is("published", "wspub/one")).has_value());
  auto one = (*live)->WaitFor("wspub/one");
  REQUIRE(one.has_value());
  CHECK(one->payload == R"({"a":1})");
  CHECK(one->qos == 2);

  // Upstream's defaults: QoS 0, not retained; a string as its text.
  client->Send(R"({"action":"publish","topic":"wspub/two","payload":"hi"})");
  CHECK(client->ReadUntil(Is("published", "wspub/two")).has_value());
  auto two = (*live)->WaitFor("wspub/two");
  REQUIRE(two.has_value());
  CHECK(two->payload == "hi");
  CHECK(two->qos == 0);

  // A new subscriber gets the retained one only.
  auto late = TopicCapture::Start(stack.broker().host(), stack.broker().port(),
                                  "wspub/#", /*qos=*/2);
  REQUIRE(late.ok());
  auto retained = (*late)->WaitFor("wspub/one");
  REQUIRE(retained.has_value());
  CHECK(retained->retain);
  CHECK_FALSE((*late)->Arrives("wspub/two", nullptr, absl::Milliseconds(500)));
}

TEST_CASE("/ws/mqtt: malformed messages are answered; the socket stays") {
  WsStack stack;
  std::unique_ptr<WsClient> client = stack.Connect();
  client->Send("not json");
  std::optional<std::string> error = client->Read();
  REQUIRE(error.has_value());
  rapidjson::Document doc = Json(*error);
  CHECK(Str(doc, "type") == "error");
  CHECK(Str(doc, "code") == "INVALID_JSON");
  client->Send(R"({"action":"publish","topic":"a/#","payload":1})");
  CHECK(Str(Json(*client->Read()), "code") == "INVALID_TOPIC");
  client->Send(R"({"action":"jump","topic":"a"})");
  CHECK(Str(Json(*client->Read()), "code") == "UNKNOWN_ACTION");
  client->Send(R"({"action":"subscribe","topic":"a/#/b"})");
  CHECK(Str(Json(*client->Read()), "code") == "INVALID_TOPIC_FILTER");
  // Still usable.
  client->Send(R"({"action":"subscribe","topic":"still/#"})");
  CHECK(Next(*client) == R"({"type":"subscribed","topic":"still/#"})");
  stack.Publish("still/here", "1");
  CHECK(client->ReadUntil(Is("update", "still/here")).has_value());
}

TEST_CASE("/ws/mqtt: no token, a bad token, an unknown socket") {
  WsStack stack;
  WsClient anonymous(stack.port());
  CHECK(anonymous.Open("/ws/mqtt") == 401);
  rapidjson::Document body = Json(anonymous.response().body());
  CHECK(Str(body, "code") == "AUTH_REQUIRED");
  CHECK(body.HasMember("correlationId"));
  CHECK(std::string(anonymous.response()["WWW-Authenticate"]) == "Bearer");

  WsClient forged(stack.port());
  CHECK(forged.Open("/ws/mqtt?token=not-a-token") == 401);

  WsClient unknown(stack.port());
  CHECK(unknown.Open(absl::StrCat("/ws/nothing?token=", stack.token())) == 404);
  CHECK(Str(Json(unknown.response().body()), "code") == "ROUTE_NOT_FOUND");

  // The header works as well as the query.
  WsClient header(stack.port());
  CHECK(header.Open("/ws/mqtt", {{"Authorization",
                                  absl::StrCat("Bearer ", stack.token())}}) ==
        101);
  std::optional<std::string> first = header.Read();
  REQUIRE(first.has_value());
  CHECK(TypeOf(*first) == "topics");
}

TEST_CASE("/ws/mqtt: a stalled client is closed; others keep receiving") {
  ::iot2mqtt::testing::CapturedLog log;
  WsStack stack([](GatewayOptions& options) {
    options.ws_queue_bytes = 262144;
    options.ws_write_timeout = absl::Seconds(2);
  });
  std::unique_ptr<WsClient> slow =
      stack.Connect(nullptr, /*receive_buffer=*/4096);
  std::unique_ptr<WsClient> fast = stack.Connect();
  // One Subscribe stream per socket (the GetStatus calls end meanwhile).
  REQUIRE(WaitFor([&] { return stack.gateway().calls_in_progress() == 2; }));

  // ~13 MB, more than the socket buffers and the queue hold, that the slow
  // client doesn't read. The fast one reads as fast as it can; where it
  // falls behind the burst it skips ahead ("skipped") rather than being
  // dropped, and it gets the last message.
  const std::string topic = stack.base() + "/v1/instances/flood/telemetry";
  const std::string payload(32768, 'x');
  const int kMessages = 400;
  int failed_publishes = 0;
  std::thread publisher([&] {
    for (int i = 0; i < kMessages; ++i) {
      if (!stack.PublishFromThread(topic, payload, 0).ok()) ++failed_publishes;
    }
    if (!stack.PublishFromThread(topic, "\"last\"", 1).ok()) {
      ++failed_publishes;
    }
  });
  int updates = 0;
  int64_t skipped = 0;
  std::optional<std::string> message;
  while ((message = fast->Read(absl::Seconds(20)))) {
    rapidjson::Document doc = Json(*message);
    if (Str(doc, "type") == "skipped") skipped += doc["count"].GetInt64();
    if (Str(doc, "type") != "update") continue;
    if (doc["value"].IsString() && Str(doc, "value") == "last") break;
    ++updates;
  }
  publisher.join();
  CHECK(failed_publishes == 0);
  INFO(stack.Logs());
  INFO("fast: " << updates << " updates, " << skipped << " skipped, close "
                << fast->close_code() << " " << fast->close_reason()
                << ", timed out " << fast->timed_out());
  REQUIRE(message.has_value());
  CHECK(updates > 0);

  // The stalled write gets the slow socket closed; reading now, the client
  // finds the close frame after what was in flight.
  REQUIRE(WaitFor([&] { return log.Count("websocket client too slow") > 0; },
                  absl::Seconds(20)));
  int slow_received = 0;
  while (slow->Read(absl::Seconds(10))) ++slow_received;
  CHECK_FALSE(slow->timed_out());
  CHECK(slow->close_code() == kClosePolicyViolation);
  CHECK(slow->close_reason() == kClientTooSlow);
  CHECK(slow_received < kMessages);
  // Its stream is gone, the fast one's isn't.
  REQUIRE(WaitFor([&] { return stack.gateway().calls_in_progress() == 1; }));
  // The fast one is still served.
  stack.Publish(topic, "\"after\"");
  CHECK(fast->ReadUntil(Is("update", topic)).has_value());
}

TEST_CASE("/ws/mqtt: closing a socket ends its streams; shutdown sends 1001") {
  WsStack stack;
  std::unique_ptr<WsClient> client = stack.Connect();
  client->Send(R"({"action":"subscribe","topic":"one/#"})");
  client->Send(R"({"action":"subscribe","topic":"two/#"})");
  CHECK(client->ReadUntil(Is("subscribed", "two/#")).has_value());
  REQUIRE(WaitFor([&] { return stack.gateway().calls_in_progress() == 3; }));
  client->Close();
  REQUIRE(WaitFor([&] { return stack.gateway().calls_in_progress() == 0; }));
  REQUIRE(WaitFor([&] { return stack.gateway().websockets_open() == 0; }));

  std::unique_ptr<WsClient> first = stack.Connect();
  std::unique_ptr<WsClient> second = stack.Connect();
  second->Send(R"({"action":"subscribe","topic":"x/#"})");
  CHECK(second->ReadUntil(Is("subscribed", "x/#")).has_value());
  std::thread stopper([&] { stack.gateway().Shutdown(); });
  CHECK_FALSE(first->Read().has_value());
  CHECK(first->close_code() == kCloseGoingAway);
  CHECK_FALSE(second->Read().has_value());
  CHECK(second->close_code() == kCloseGoingAway);
  stopper.join();
  CHECK(stack.gateway().calls_in_progress() == 0);
}

TEST_CASE("/ws/mqtt and /api/health without a reachable bridge") {
  GatewayOptions options;
  options.listen_address = "127.0.0.1:0";
  options.backends = {{"mqtt-bridge",
                       {kBridgeService},
                       absl::StrCat("127.0.0.1:", FreePort())}};
  options.auth_mode = AuthMode::kDisabled;
  absl::StatusOr<std::unique_ptr<Gateway>> gateway =
      Gateway::Create(std::move(options));
  REQUIRE(gateway.ok());
  REQUIRE((*gateway)->Start().ok());
  WsClient client((*gateway)->port());
  REQUIRE(client.Open("/ws/mqtt") == 101);
  std::optional<std::string> error = client.Read();
  REQUIRE(error.has_value());
  rapidjson::Document doc = Json(*error);
  CHECK(Str(doc, "type") == "error");
  CHECK(Str(doc, "code") == "BACKEND_UNAVAILABLE");
  CHECK_FALSE(client.Read().has_value());
  CHECK(client.close_code() == kCloseInternalError);

  // The bridge is optional for health: 200, but mqtt_connected is false.
  auto health = ::iot2mqtt::testing::HttpRequest((*gateway)->port(), "GET",
                                                 "/api/health");
  REQUIRE(health.ok());
  CHECK(health->status == 200);
  rapidjson::Document h = Json(health->body);
  CHECK_FALSE(h["mqtt_connected"].GetBool());
  CHECK(Str(h, "status") == "healthy");
  CHECK(Str(h, "degraded").rfind("mqtt-bridge: unreachable", 0) == 0);
  CHECK_FALSE(h["services"]["mqtt-bridge"]["healthy"].GetBool());
}

TEST_CASE("/api/health: mqtt_connected from the bridge") {
  WsStack stack;
  HttpResponse health = stack.Http("GET", "/api/health");
  INFO(health.body);
  rapidjson::Document doc = Json(health.body);
  CHECK(doc["mqtt_connected"].GetBool());
  CHECK(doc["services"].HasMember("config"));
  CHECK(doc["services"].HasMember("mqtt-bridge"));
}

}  // namespace
}  // namespace iot2mqtt::gateway
