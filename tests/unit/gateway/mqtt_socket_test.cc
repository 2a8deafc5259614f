// The /ws/mqtt handler against a fake bridge (BackendCalls) and a fake
// socket: what the client sees for each bridge event and client message.

#include "gateway/mqtt_socket.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "catch2/catch.hpp"
#include "iot2mqtt/mqtt_bridge/v1/mqtt_bridge_service.pb.h"
#include "rapidjson/document.h"
#include "services/common/grpc_status.h"
#include "services/common/status.h"

namespace iot2mqtt::gateway {
namespace {

namespace v1 = ::iot2mqtt::mqtt_bridge::v1;

class FakeConnection : public WebSocketConnection {
 public:
  bool SendText(std::string message) override {
    absl::MutexLock lock(&mu_);
    if (close_code_ != 0) return false;
    sent_.push_back(std::move(message));
    return true;
  }
  void Close(int code, std::string reason) override {
    absl::MutexLock lock(&mu_);
    if (close_code_ == 0) {
      close_code_ = code;
      reason_ = std::move(reason);
    }
  }
  size_t queued_bytes() const override { return 0; }
  bool congested() const override {
    absl::MutexLock lock(&mu_);
    return congested_;
  }
  void NotifyWhenDrained(std::function<void()> callback) override {
    absl::MutexLock lock(&mu_);
    drained_.push_back(std::move(callback));
  }
  void SetCongested(bool congested) {
    std::vector<std::function<void()>> drained;
    {
      absl::MutexLock lock(&mu_);
      congested_ = congested;
      if (!congested) drained.swap(drained_);
    }
    for (auto& callback : drained) callback();
  }

  // Messages sent since the last call.
  std::vector<std::string> Take() {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> out;
    out.swap(sent_);
    return out;
  }
  int close_code() {
    absl::MutexLock lock(&mu_);
    return close_code_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> sent_;
  bool congested_ = false;
  std::vector<std::function<void()>> drained_;
  int close_code_ = 0;
  std::string reason_;
};

struct FakeStream : CallHandle {
  std::string rpc_path;
  v1::SubscribeRequest request;
  StreamCallbacks callbacks;
  bool cancelled = false;
  bool done = false;
  int resumes = 0;
  void Cancel() override { cancelled = true; }
  void Resume() override { ++resumes; }
  // Sends one event; whether the handler reads on.
  bool Event(v1::TopicEvent::Type type, const std::string& topic = "",
             const std::string& value = "") {
    return Action(type, topic, value) == StreamAction::kContinue;
  }
  StreamAction Action(v1::TopicEvent::Type type, const std::string& topic = "",
                      const std::string& value = "") {
    v1::TopicEvent event;
    event.set_type(type);
    event.set_topic(topic);
    event.set_value(value);
    event.set_timestamp("2024-05-01T10:00:00Z");
    event.set_qos(1);
    return callbacks.on_message(event.SerializeAsString());
  }
  void Finish(const grpc::Status& status) {
    done = true;
    callbacks.on_done(status);
  }
};

struct FakeUnary {
  std::string rpc_path;
  std::string request;
  UnaryDone done;
};

class FakeCalls : public BackendCalls {
 public:
  void Unary(const std::string& rpc_path,
             const google::protobuf::Message& request,
             const CallOptions& options, UnaryDone done) override {
    unary.push_back({rpc_path, request.SerializeAsString(), std::move(done)});
  }
  std::shared_ptr<CallHandle> Stream(const std::string& rpc_path,
                                     const google::protobuf::Message& request,
                                     const CallOptions& options,
                                     StreamCallbacks callbacks,
                                     grpc::Status* refused) override {
    auto stream = std::make_shared<FakeStream>();
    stream->rpc_path = rpc_path;
    REQUIRE(stream->request.ParseFromString(request.SerializeAsString()));
    stream->callbacks = std::move(callbacks);
    deadline = options.deadline;
    streams.push_back(stream);
    return stream;
  }
  // Answers the oldest unary call.
  void Answer(const grpc::Status& status,
              const google::protobuf::Message& reply) {
    REQUIRE_FALSE(unary.empty());
    FakeUnary call = std::move(unary.front());
    unary.erase(unary.begin());
    call.done(status, reply.SerializeAsString());
  }

  std::vector<FakeUnary> unary;
  std::vector<std::shared_ptr<FakeStream>> streams;
  absl::Time deadline;
};

rapidjson::Document Json(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.c_str(), text.size());
  INFO(text);
  REQUIRE_FALSE(doc.HasParseError());
  return doc;
}

std::string TypeOf(const std::string& text) {
  rapidjson::Document doc = Json(text);
  return doc["type"].GetString();
}

// An open socket whose base stream has started (base topic IoT2mqtt).
struct Fixture {
  explicit Fixture(MqttSocketOptions options = {}) {
    socket = std::make_shared<MqttSocket>(&calls, options);
    socket->OnOpen(connection);
    REQUIRE(calls.unary.size() == 1);
    CHECK(calls.unary[0].rpc_path == kMqttBridgeGetStatusRpc);
    v1::GetStatusResponse status;
    status.set_connected(true);
    status.set_base_topic("IoT2mqtt");
    calls.Answer(grpc::Status::OK, status);
    REQUIRE(calls.streams.size() == 1);
    base = calls.streams[0];
    CHECK(base->rpc_path == kMqttBridgeSubscribeRpc);
    CHECK(base->request.filters_size() == 0);  // Everything under the base.
  }
  ~Fixture() {
    if (connection->close_code() == 0) socket->OnClose(kCloseNormal);
  }
  FakeCalls calls;
  std::shared_ptr<FakeConnection> connection =
      std::make_shared<FakeConnection>();
  std::shared_ptr<MqttSocket> socket;
  std::shared_ptr<FakeStream> base;
};

TEST_CASE("on connect: one topics message from the snapshot, then updates") {
  Fixture f;
  CHECK(f.connection->Take().empty());
  REQUIRE(f.base->Event(v1::TopicEvent::SNAPSHOT, "IoT2mqtt/a", "1"));
  REQUIRE(
      f.base->Event(v1::TopicEvent::SNAPSHOT, "IoT2mqtt/b", R"({"on":true})"));
  CHECK(f.connection->Take().empty());  // Held until SNAPSHOT_END.
  REQUIRE(f.base->Event(v1::TopicEvent::SNAPSHOT_END));
  std::vector<std::string> sent = f.connection->Take();
  REQUIRE(sent.size() == 1);
  rapidjson::Document topics = Json(sent[0]);
  CHECK(std::string(topics["type"].GetString()) == "topics");
  REQUIRE(topics["data"].Size() == 2);
  CHECK(std::string(topics["data"][0]["topic"].GetString()) == "IoT2mqtt/a");
  CHECK(topics["data"][0]["value"].GetInt() == 1);
  CHECK(topics["data"][1]["value"]["on"].GetBool());
  CHECK(topics["data"][1]["qos"].GetInt() == 1);

  REQUIRE(f.base->Event(v1::TopicEvent::UPDATE, "IoT2mqtt/a", "2"));
  REQUIRE(f.base->Event(v1::TopicEvent::DELETE, "IoT2mqtt/b"));
  v1::TopicEvent skipped;
  skipped.set_type(v1::TopicEvent::SKIPPED);
  skipped.set_skipped(7);
  REQUIRE(f.base->callbacks.on_message(skipped.SerializeAsString()) ==
          StreamAction::kContinue);
  sent = f.connection->Take();
  REQUIRE(sent.size() == 3);
  CHECK(sent[0] ==
        R"({"type":"update","topic":"IoT2mqtt/a","value":2,)"
        R"("timestamp":"2024-05-01T10:00:00Z","retained":false,"qos":1})");
  CHECK(sent[1] == R"({"type":"delete","topic":"IoT2mqtt/b"})");
  CHECK(sent[2] == R"({"type":"skipped","count":7})");
}

TEST_CASE("a slow reader pauses the streams until the socket drains") {
  Fixture f;
  REQUIRE(f.base->Event(v1::TopicEvent::SNAPSHOT_END));
  f.socket->OnMessage(R"({"action":"subscribe","topic":"z/#"})");
  REQUIRE(f.calls.streams.size() == 2);
  f.connection->SetCongested(true);
  CHECK(f.base->Action(v1::TopicEvent::UPDATE, "IoT2mqtt/a", "1") ==
        StreamAction::kPause);
  CHECK(f.calls.streams[1]->Action(v1::TopicEvent::UPDATE, "z/a", "1") ==
        StreamAction::kPause);
  CHECK(f.base->resumes == 0);
  f.connection->SetCongested(false);
  CHECK(f.base->resumes == 1);
  CHECK(f.calls.streams[1]->resumes == 1);
  // Nothing was lost on the socket's side: both messages went out.
  std::vector<std::string> sent = f.connection->Take();
  REQUIRE(sent.size() == 4);  // topics, subscribed, two updates.
  CHECK(f.base->Action(v1::TopicEvent::UPDATE, "IoT2mqtt/a", "2") ==
        StreamAction::kContinue);
}

TEST_CASE("an empty cache still sends an empty topics message") {
  Fixture f;
  REQUIRE(f.base->Event(v1::TopicEvent::SNAPSHOT_END));
  CHECK(f.connection->Take() ==
        std::vector<std::string>{R"({"type":"topics","data":[]})"});
}

TEST_CASE("client messages before the snapshot wait for it") {
  Fixture f;
  f.socket->OnMessage(R"({"action":"subscribe","topic":"zigbee2mqtt/#"})");
  f.socket->OnMessage("garbage");
  CHECK(f.calls.streams.size() == 1);
  CHECK(f.connection->Take().empty());
  REQUIRE(f.base->Event(v1::TopicEvent::SNAPSHOT_END));
  std::vector<std::string> sent = f.connection->Take();
  REQUIRE(sent.size() == 2);
  CHECK(TypeOf(sent[0]) == "topics");
  CHECK(TypeOf(sent[1]) == "error");  // "garbage", in order.
  REQUIRE(f.calls.streams.size() == 2);
  CHECK(f.calls.streams[1]->request.filters(0) == "zigbee2mqtt/#");
}

TEST_CASE("subscribe: acknowledged, its snapshot as updates, once per topic") {
  Fixture f;
  REQUIRE(f.base->Event(v1::TopicEvent::SNAPSHOT_END));
  f.connection->Take();
  f.socket->OnMessage(R"({"action":"subscribe","topic":"zigbee2mqtt/#"})");
  REQUIRE(f.calls.streams.size() == 2);
  std::shared_ptr<FakeStream> zigbee = f.calls.streams[1];
  REQUIRE(zigbee->Event(v1::TopicEvent::SNAPSHOT, "zigbee2mqtt/lamp", "1"));
  REQUIRE(zigbee->Event(v1::TopicEvent::SNAPSHOT_END));
  std::vector<std::string> sent = f.connection->Take();
  REQUIRE(sent.size() == 2);
  CHECK(sent[0] == R"({"type":"subscribed","topic":"zigbee2mqtt/#"})");
  CHECK(TypeOf(sent[1]) == "update");

  // Subscribing again answers without a second stream.
  f.socket->OnMessage(R"({"action":"subscribe","topic":"zigbee2mqtt/#"})");
  CHECK(f.calls.streams.size() == 2);
  CHECK(f.connection->Take() ==
        std::vector<std::string>{
            R"({"type":"subscribed","topic":"zigbee2mqtt/#"})"});

  // A narrower filter and one inside the base topic: their copies of
  // messages an older stream delivers are dropped.
  f.socket->OnMessage(R"({"action":"subscribe","topic":"zigbee2mqtt/lamp"})");
  f.socket->OnMessage(R"({"action":"subscribe","topic":"IoT2mqtt/v1/#"})");
  REQUIRE(f.calls.streams.size() == 4);
  std::shared_ptr<FakeStream> lamp = f.calls.streams[2];
  std::shared_ptr<FakeStream> inside = f.calls.streams[3];
  REQUIRE(lamp->Event(v1::TopicEvent::SNAPSHOT, "zigbee2mqtt/lamp", "1"));
  REQUIRE(inside->Event(v1::TopicEvent::SNAPSHOT_END));
  f.connection->Take();  // The two acknowledgements.
  REQUIRE(f.base->Event(v1::TopicEvent::UPDATE, "IoT2mqtt/v1/x", "5"));
  REQUIRE(inside->Event(v1::TopicEvent::UPDATE, "IoT2mqtt/v1/x", "5"));
  REQUIRE(zigbee->Event(v1::TopicEvent::UPDATE, "zigbee2mqtt/lamp", "0"));
  REQUIRE(lamp->Event(v1::TopicEvent::UPDATE, "zigbee2mqtt/lamp", "0"));
  sent = f.connection->Take();
  REQUIRE(sent.size() == 2);
  CHECK(Json(sent[0])["topic"].GetString() == std::string("IoT2mqtt/v1/x"));
  CHECK(Json(sent[1])["topic"].GetString() == std::string("zigbee2mqtt/lamp"));

  // Unsubscribe the wide one: the narrow one now delivers.
  f.socket->OnMessage(R"({"action":"unsubscribe","topic":"zigbee2mqtt/#"})");
  CHECK(zigbee->cancelled);
  CHECK(f.connection->Take() ==
        std::vector<std::string>{
            R"({"type":"unsubscribed","topic":"zigbee2mqtt/#"})"});
  CHECK_FALSE(zigbee->Event(v1::TopicEvent::UPDATE, "zigbee2mqtt/x", "0"));
  zigbee->Finish(grpc::Status::CANCELLED);
  REQUIRE(lamp->Event(v1::TopicEvent::UPDATE, "zigbee2mqtt/lamp", "1"));
  sent = f.connection->Take();
  REQUIRE(sent.size() == 1);  // No error for the expected end.
  CHECK(TypeOf(sent[0]) == "update");
}

TEST_CASE("a subscription the bridge refuses is an error; the socket stays") {
  Fixture f;
  REQUIRE(f.base->Event(v1::TopicEvent::SNAPSHOT_END));
  f.connection->Take();
  f.socket->OnMessage(R"({"action":"subscribe","topic":"a/#"})");
  REQUIRE(f.calls.streams.size() == 2);
  f.calls.streams[1]->Finish(common::ToGrpcStatus(common::WithReason(
      absl::InvalidArgumentError("filter refused"), "INVALID_TOPIC_FILTER")));
  std::vector<std::string> sent = f.connection->Take();
  REQUIRE(sent.size() == 1);
  rapidjson::Document error = Json(sent[0]);
  CHECK(error["code"].GetString() == std::string("INVALID_TOPIC_FILTER"));
  CHECK(error["topic"].GetString() == std::string("a/#"));
  CHECK(f.connection->close_code() == 0);
  REQUIRE(f.base->Event(v1::TopicEvent::UPDATE, "IoT2mqtt/a", "1"));
  CHECK(f.connection->Take().size() == 1);
}

TEST_CASE("publish goes to the bridge with the client's qos and retain") {
  Fixture f;
  REQUIRE(f.base->Event(v1::TopicEvent::SNAPSHOT_END));
  f.connection->Take();
  f.socket->OnMessage(
      R"({"action":"publish","topic":"a/b","payload":{"x":1},"qos":2,)"
      R"("retain":true})");
  REQUIRE(f.calls.unary.size() == 1);
  CHECK(f.calls.unary[0].rpc_path == kMqttBridgePublishRpc);
  v1::PublishRequest request;
  REQUIRE(request.ParseFromString(f.calls.unary[0].request));
  CHECK(request.topic() == "a/b");
  CHECK(request.payload() == R"({"x":1})");
  REQUIRE(request.has_qos());
  CHECK(request.qos() == 2);
  CHECK(request.retain());
  v1::PublishResponse ok;
  ok.set_success(true);
  f.calls.Answer(grpc::Status::OK, ok);
  CHECK(f.connection->Take() ==
        std::vector<std::string>{R"({"type":"published","topic":"a/b"})"});

  // Upstream's defaults: qos 0, no retain.
  f.socket->OnMessage(R"({"action":"publish","topic":"a/b","payload":"x"})");
  REQUIRE(request.ParseFromString(f.calls.unary[0].request));
  REQUIRE(request.has_qos());
  CHECK(request.qos() == 0);
  CHECK_FALSE(request.retain());
  f.calls.Answer(common::ToGrpcStatus(common::WithReason(
                     absl::FailedPreconditionError("not connected"),
                     "MQTT_NOT_CONNECTED")),
                 ok);
  std::vector<std::string> sent = f.connection->Take();
  REQUIRE(sent.size() == 1);
  CHECK(Json(sent[0])["code"].GetString() == std::string("MQTT_NOT_CONNECTED"));
  CHECK(f.connection->close_code() == 0);
}

TEST_CASE("malformed messages are answered and the socket stays usable") {
  Fixture f;
  REQUIRE(f.base->Event(v1::TopicEvent::SNAPSHOT_END));
  f.connection->Take();
  for (const char* bad :
       {"{", R"({"action":"dance","topic":"a"})", R"({"action":"subscribe"})",
        R"({"action":"subscribe","topic":"a/#/b"})"}) {
    f.socket->OnMessage(bad);
  }
  std::vector<std::string> sent = f.connection->Take();
  REQUIRE(sent.size() == 4);
  std::vector<std::string> codes;
  for (const std::string& m : sent)
    codes.push_back(Json(m)["code"].GetString());
  CHECK(codes == std::vector<std::string>{"INVALID_JSON", "UNKNOWN_ACTION",
                                          "MISSING_TOPIC",
                                          "INVALID_TOPIC_FILTER"});
  CHECK(f.connection->close_code() == 0);
  CHECK(f.calls.streams.size() == 1);
  REQUIRE(f.base->Event(v1::TopicEvent::UPDATE, "IoT2mqtt/a", "1"));
  CHECK(f.connection->Take().size() == 1);
}

TEST_CASE("subscriptions per socket are bounded") {
  MqttSocketOptions options;
  options.max_subscriptions = 2;
  Fixture f(options);
  REQUIRE(f.base->Event(v1::TopicEvent::SNAPSHOT_END));
  f.connection->Take();
  f.socket->OnMessage(R"({"action":"subscribe","topic":"a"})");
  f.socket->OnMessage(R"({"action":"subscribe","topic":"b"})");
  f.socket->OnMessage(R"({"action":"subscribe","topic":"c"})");
  CHECK(f.calls.streams.size() == 3);
  std::vector<std::string> sent = f.connection->Take();
  REQUIRE(sent.size() == 1);
  CHECK(Json(sent[0])["code"].GetString() ==
        std::string("TOO_MANY_SUBSCRIPTIONS"));
}

TEST_CASE("the bridge unreachable: an error, then close 1011") {
  auto connection = std::make_shared<FakeConnection>();
  FakeCalls calls;
  auto socket = std::make_shared<MqttSocket>(&calls, MqttSocketOptions());
  socket->OnOpen(connection);
  calls.Answer(grpc::Status(grpc::StatusCode::UNAVAILABLE, "connect failed"),
               v1::GetStatusResponse());
  std::vector<std::string> sent = connection->Take();
  REQUIRE(sent.size() == 1);
  CHECK(Json(sent[0])["code"].GetString() ==
        std::string("BACKEND_UNAVAILABLE"));
  CHECK(connection->close_code() == kCloseInternalError);
  CHECK(calls.streams.empty());
  socket->OnClose(kCloseInternalError);
}

TEST_CASE("the base stream failing closes the socket with 1011") {
  Fixture f;
  REQUIRE(f.base->Event(v1::TopicEvent::SNAPSHOT_END));
  f.connection->Take();
  f.base->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "bridge gone"));
  std::vector<std::string> sent = f.connection->Take();
  REQUIRE(sent.size() == 1);
  CHECK(TypeOf(sent[0]) == "error");
  CHECK(f.connection->close_code() == kCloseInternalError);
  f.socket->OnClose(kCloseInternalError);
}

TEST_CASE("the token expiring closes the socket with 1008") {
  MqttSocketOptions options;
  options.token_expires = absl::Now() - absl::Seconds(1);
  Fixture f(options);
  CHECK(f.calls.deadline == options.token_expires);  // The stream's deadline.
  f.base->Finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "late"));
  std::vector<std::string> sent = f.connection->Take();
  REQUIRE(sent.size() == 1);
  CHECK(Json(sent[0])["code"].GetString() == std::string("TOKEN_EXPIRED"));
  CHECK(f.connection->close_code() == kClosePolicyViolation);
  f.socket->OnClose(kClosePolicyViolation);
}

TEST_CASE("closing the socket cancels every stream and silences answers") {
  Fixture f;
  REQUIRE(f.base->Event(v1::TopicEvent::SNAPSHOT_END));
  f.socket->OnMessage(R"({"action":"subscribe","topic":"a/#"})");
  f.socket->OnMessage(R"({"action":"publish","topic":"a/b","payload":1})");
  REQUIRE(f.calls.streams.size() == 2);
  f.connection->Take();
  f.socket->OnClose(kCloseGoingAway);
  CHECK(f.base->cancelled);
  CHECK(f.calls.streams[1]->cancelled);
  CHECK_FALSE(f.base->Event(v1::TopicEvent::UPDATE, "IoT2mqtt/a", "1"));
  f.base->Finish(grpc::Status::CANCELLED);
  f.calls.streams[1]->Finish(grpc::Status::CANCELLED);
  v1::PublishResponse ok;
  ok.set_success(true);
  f.calls.Answer(grpc::Status::OK, ok);
  f.socket->OnMessage(R"({"action":"subscribe","topic":"b/#"})");
  CHECK(f.calls.streams.size() == 2);
  CHECK(f.connection->Take().empty());
}

}  // namespace
}  // namespace iot2mqtt::gateway
