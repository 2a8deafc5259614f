#include "gateway/mqtt_ws_protocol.h"

#include <string>

#include "catch2/catch.hpp"
#include "gateway/http_server.h"
#include "gateway/websocket.h"
#include "services/common/status.h"

namespace iot2mqtt::gateway::mqtt_ws {
namespace {

std::string ReasonOfParse(const std::string& text) {
  absl::StatusOr<ClientMessage> message = ParseClientMessage(text);
  REQUIRE_FALSE(message.ok());
  CHECK(message.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_FALSE(message.status().message().empty());
  return common::ReasonOf(message.status());
}

TEST_CASE("topic filters match as MQTT 3.1.1 says") {
  CHECK(TopicMatches("a/b", "a/b"));
  CHECK_FALSE(TopicMatches("a/b", "a/b/c"));
  CHECK_FALSE(TopicMatches("a/b", "a"));
  CHECK(TopicMatches("a/+/c", "a/b/c"));
  CHECK(TopicMatches("a/+/c", "a//c"));  // An empty level is a level.
  CHECK_FALSE(TopicMatches("a/+/c", "a/b/d/c"));
  CHECK(TopicMatches("a/+", "a/b"));
  CHECK_FALSE(TopicMatches("a/+", "a"));
  CHECK_FALSE(TopicMatches("a/+", "a/b/c"));
  CHECK(TopicMatches("a/#", "a"));  // '#' includes the parent level.
  CHECK(TopicMatches("a/#", "a/b/c"));
  CHECK_FALSE(TopicMatches("a/#", "ab/c"));
  CHECK(TopicMatches("#", "anything/at/all"));
  CHECK(TopicMatches("+/+", "/x"));
  // Wildcards at the first level never match $-topics.
  CHECK_FALSE(TopicMatches("#", "$SYS/broker/uptime"));
  CHECK_FALSE(TopicMatches("+/broker/uptime", "$SYS/broker/uptime"));
  CHECK(TopicMatches("$SYS/#", "$SYS/broker/uptime"));
  // Case and prefixes matter.
  CHECK_FALSE(TopicMatches("IoT2mqtt/#", "iot2mqtt/x"));
  CHECK_FALSE(TopicMatches("base/v1/instances/hall/#",
                           "base/v1/instances/hall2/status"));
}

TEST_CASE("topic filters and names are validated") {
  for (const char* good : {"a", "a/b", "+", "#", "a/+/c", "a/#", "/", "+/#"}) {
    INFO(good);
    CHECK(ValidateTopicFilter(good).ok());
  }
  for (const char* bad : {"", "a/#/b", "a#", "a/b+", "#/a", "a/+b"}) {
    INFO(bad);
    absl::Status status = ValidateTopicFilter(bad);
    CHECK(common::ReasonOf(status) == kInvalidTopicFilter);
  }
  CHECK(common::ReasonOf(ValidateTopicFilter(std::string("a\0b", 3))) ==
        kInvalidTopicFilter);
  CHECK(common::ReasonOf(ValidateTopicFilter("a/\xff")) == kInvalidTopicFilter);
  CHECK(common::ReasonOf(ValidateTopicFilter(std::string(65536, 'a'))) ==
        kInvalidTopicFilter);
  CHECK(ValidateTopicName("a/b").ok());
  CHECK(common::ReasonOf(ValidateTopicName("a/+")) == kInvalidTopic);
  CHECK(common::ReasonOf(ValidateTopicName("a/#")) == kInvalidTopic);
  CHECK(common::ReasonOf(ValidateTopicName("")) == kInvalidTopic);
}

TEST_CASE("client messages parse with upstream's defaults") {
  absl::StatusOr<ClientMessage> subscribe =
      ParseClientMessage(R"({"action":"subscribe","topic":"zigbee2mqtt/#"})");
  REQUIRE(subscribe.ok());
  CHECK(subscribe->action == Action::kSubscribe);
  CHECK(subscribe->topic == "zigbee2mqtt/#");

  absl::StatusOr<ClientMessage> unsubscribe = ParseClientMessage(
      R"({"topic":"a/+","action":"unsubscribe","extra":[1,2]})");
  REQUIRE(unsubscribe.ok());
  CHECK(unsubscribe->action == Action::kUnsubscribe);
  CHECK(unsubscribe->topic == "a/+");

  absl::StatusOr<ClientMessage> publish = ParseClientMessage(
      R"({"action":"publish","topic":"a/b","payload":"on"})");
  REQUIRE(publish.ok());
  CHECK(publish->action == Action::kPublish);
  CHECK(publish->payload == R"("on")");
  CHECK(publish->qos == 0);
  CHECK_FALSE(publish->retain);

  absl::StatusOr<ClientMessage> full = ParseClientMessage(
      R"({"action":"publish","topic":"a/b","payload":{"x":12345678901234567890},)"
      R"("qos":2,"retain":true})");
  REQUIRE(full.ok());
  CHECK(full->payload == R"({"x":12345678901234567890})");  // Exact.
  CHECK(full->qos == 2);
  CHECK(full->retain);

  absl::StatusOr<ClientMessage> empty =
      ParseClientMessage(R"({"action":"publish","topic":"a/b"})");
  REQUIRE(empty.ok());
  CHECK(empty->payload.empty());
}

TEST_CASE("malformed client messages get a reason") {
  CHECK(ReasonOfParse("not json") == kInvalidJson);
  CHECK(ReasonOfParse("[1,2]") == kInvalidJson);
  CHECK(ReasonOfParse(R"({"action":"subscribe")") == kInvalidJson);
  CHECK(ReasonOfParse(R"({"topic":"a"})") == kUnknownAction);
  CHECK(ReasonOfParse(R"({"action":"delete","topic":"a"})") == kUnknownAction);
  CHECK(ReasonOfParse(R"({"action":7,"topic":"a"})") == kUnknownAction);
  CHECK(ReasonOfParse(R"({"action":"subscribe"})") == kMissingTopic);
  CHECK(ReasonOfParse(R"({"action":"subscribe","topic":""})") == kMissingTopic);
  CHECK(ReasonOfParse(R"({"action":"subscribe","topic":5})") == kMissingTopic);
  CHECK(ReasonOfParse(R"({"action":"subscribe","topic":"a/#/b"})") ==
        kInvalidTopicFilter);
  CHECK(ReasonOfParse(R"({"action":"unsubscribe","topic":"a+"})") ==
        kInvalidTopicFilter);
  CHECK(ReasonOfParse(R"({"action":"publish","topic":"a/#"})") ==
        kInvalidTopic);
  CHECK(ReasonOfParse(R"({"action":"publish","topic":"a","qos":3})") ==
        kInvalidQos);
  CHECK(ReasonOfParse(R"({"action":"publish","topic":"a","qos":"1"})") ==
        kInvalidQos);
  CHECK(ReasonOfParse(R"({"action":"publish","topic":"a","retain":1})") ==
        kInvalidRetain);
}

TEST_CASE("server messages have upstream's shapes") {
  CHECK(
      UpdateMessage("a/b", R"({"on":true})", "2024-05-01T10:00:00Z", true, 1) ==
      R"({"type":"update","topic":"a/b","value":{"on":true},)"
      R"("timestamp":"2024-05-01T10:00:00Z","retained":true,"qos":1})");
  CHECK(UpdateMessage("a", "", "t", false, 0) ==
        R"({"type":"update","topic":"a","value":null,"timestamp":"t",)"
        R"("retained":false,"qos":0})");
  CHECK(TopicsMessage("[" + TopicEntry("a", "1", "t", false, 0) + "]") ==
        R"({"type":"topics","data":[{"topic":"a","value":1,"timestamp":"t",)"
        R"("retained":false,"qos":0}]})");
  CHECK(TopicsMessage("[]") == R"({"type":"topics","data":[]})");
  CHECK(DeleteMessage("a\"b") == R"({"type":"delete","topic":"a\"b"})");
  CHECK(SkippedMessage(12) == R"({"type":"skipped","count":12})");
  CHECK(AckMessage("subscribed", "x/#") ==
        R"({"type":"subscribed","topic":"x/#"})");
  CHECK(ErrorMessage("INVALID_JSON", "bad") ==
        R"({"type":"error","code":"INVALID_JSON","message":"bad"})");
  CHECK(ErrorMessage("X", "m", "t") ==
        R"({"type":"error","code":"X","message":"m","topic":"t"})");
}

TEST_CASE("overlapping streams deliver each message once, oldest first") {
  StreamOrder order;
  uint64_t base = order.Add({"IoT2mqtt/#"});
  uint64_t wide = order.Add({"IoT2mqtt/v1/+/hall/#"});
  uint64_t outside = order.Add({"zigbee2mqtt/#"});
  uint64_t narrow = order.Add({"zigbee2mqtt/lamp"});

  // Inside the base topic: the base stream delivers, no other.
  CHECK(order.ShouldDeliver(base, "IoT2mqtt/v1/instances/hall/status"));
  CHECK_FALSE(order.ShouldDeliver(wide, "IoT2mqtt/v1/instances/hall/status"));
  // Outside: the oldest covering subscription delivers.
  CHECK(order.ShouldDeliver(outside, "zigbee2mqtt/lamp"));
  CHECK_FALSE(order.ShouldDeliver(narrow, "zigbee2mqtt/lamp"));
  CHECK(order.ShouldDeliver(outside, "zigbee2mqtt/plug"));

  // After unsubscribing the older one, the younger takes over.
  order.Remove(outside);
  CHECK(order.ShouldDeliver(narrow, "zigbee2mqtt/lamp"));
  CHECK_FALSE(order.ShouldDeliver(outside, "zigbee2mqtt/plug"));  // Gone.
  CHECK(order.size() == 3);
  order.Remove(12345);  // Unknown: ignored.
  CHECK(order.size() == 3);

  // A base stream without filters (base topic unknown) covers nothing.
  StreamOrder unknown_base;
  uint64_t b = unknown_base.Add({});
  uint64_t s = unknown_base.Add({"x/#"});
  CHECK(unknown_base.ShouldDeliver(b, "x/y"));
  CHECK(unknown_base.ShouldDeliver(s, "x/y"));
}

TEST_CASE("WebSocket handshakes are validated before the upgrade") {
  HttpRequest request;
  request.method = "GET";
  request.headers = {{"upgrade", "websocket"},
                     {"connection", "keep-alive, Upgrade"},
                     {"sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="},
                     {"sec-websocket-version", "13"}};
  CHECK_FALSE(ValidateWebSocketUpgrade(request).has_value());

  auto status_of = [](const HttpRequest& r) {
    std::optional<HttpError> error = ValidateWebSocketUpgrade(r);
    REQUIRE(error.has_value());
    return error->http_status;
  };
  HttpRequest post = request;
  post.method = "POST";
  CHECK(status_of(post) == 400);
  HttpRequest no_upgrade = request;
  no_upgrade.headers[0].second = "h2c";
  CHECK(status_of(no_upgrade) == 400);
  HttpRequest no_connection = request;
  no_connection.headers[1].second = "keep-alive";
  CHECK(status_of(no_connection) == 400);
  HttpRequest bad_key = request;
  bad_key.headers[2].second = "short==";
  CHECK(status_of(bad_key) == 400);
  HttpRequest old_version = request;
  old_version.headers[3].second = "8";
  CHECK(status_of(old_version) == 426);
  std::optional<HttpError> error = ValidateWebSocketUpgrade(old_version);
  CHECK(ErrorReason(error->status) == kWebSocketVersionUnsupported);
  CHECK(ErrorReason(ValidateWebSocketUpgrade(bad_key)->status) ==
        kWebSocketHandshakeInvalid);
}

}  // namespace
}  // namespace iot2mqtt::gateway::mqtt_ws
