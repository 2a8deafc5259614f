// A Connector in this process, a real Mosquitto on a free loopback port, and
// a TopicCapture watching from the outside as the platform would.

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "iot2mqtt/sdk/connector.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "sdk/testing/loopback_broker.h"
#include "sdk/testing/topic_capture.h"

namespace iot2mqtt::sdk {
namespace {

using testing::CapturedMessage;
using testing::LoopbackBroker;
using testing::TopicCapture;

// Lamps with `power` and `level`; a device can be told to stop answering.
class LampConnector final : public Connector {
 public:
  void SetAnswering(const std::string& device, bool answering) {
    absl::MutexLock lock(&mu_);
    silent_[device] = !answering;
  }

 protected:
  absl::StatusOr<std::string> ReadDevice(const DeviceConfig& device) override {
    absl::MutexLock lock(&mu_);
    if (silent_[device.device_id]) {
      return absl::DeadlineExceededError("no answer within 1 s");
    }
    return State(device.device_id);
  }
  absl::StatusOr<std::string> ApplyCommand(
      const DeviceConfig& device, const rapidjson::Value& values) override {
    absl::MutexLock lock(&mu_);
    for (const auto& m : values.GetObject()) {
      std::string key = m.name.GetString();
      if (key == "power" && m.value.IsBool()) {
        power_[device.device_id] = m.value.GetBool();
      } else if (key == "level" && m.value.IsInt()) {
        level_[device.device_id] = m.value.GetInt();
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("unsupported value \"", key, "\""));
      }
    }
    return State(device.device_id);
  }

 private:
  std::string State(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return JsonObjectBuilder()
        .Set("power", power_[id])
        .Set("level", level_[id])
        .Set("name", absl::StrCat("lamp ", id))
        .Build();
  }
  absl::Mutex mu_;
  std::map<std::string, bool> silent_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, bool> power_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> level_ ABSL_GUARDED_BY(mu_);
};

class Bench {
 public:
  explicit Bench(const std::string& config) {
    auto broker = LoopbackBroker::Start();
    INFO(broker.status().ToString());
    REQUIRE(broker.ok());
    broker_ = *std::move(broker);
    MqttSettings settings;
    settings.host = broker_->host();
    settings.port = broker_->port();
    settings.keepalive_seconds = 5;
    settings.max_inbound_payload = kMaxInboundPayloadBytes;
    client_ = std::make_unique<MosquittoClient>(settings, "iot2mqtt_home");
    topics = *Topics::Create(settings.base_topic, "home");
    capture = NewCapture();
    options_.config = ParseInstanceConfig(config, "home", "lamps").value();
    options_.mqtt = settings;
    options_.client = client_.get();
    thread_ = std::thread([this] { exit_code_ = connector.Run(options_); });
    REQUIRE(capture->WaitFor(topics.Status(), Payload("online")).has_value());
  }
  ~Bench() { Stop(); }

  int Stop() {
    connector.RequestStop();
    if (thread_.joinable()) thread_.join();
    return exit_code_;
  }
  std::unique_ptr<TopicCapture> NewCapture(const std::string& filter = "") {
    auto capture = TopicCapture::Start(broker_->host(), broker_->port(),
                                       filter.empty() ? topics.All() : filter);
    INFO(capture.status().ToString());
    REQUIRE(capture.ok());
    return *std::move(capture);
  }
  // The first retained message a fresh subscriber gets on `topic`.
  std::optional<CapturedMessage> Retained(const std::string& topic) {
    auto fresh = NewCapture(topic);
    return fresh->WaitFor(topic,
                          [](const CapturedMessage& m) { return m.retain; });
  }
  static TopicCapture::Predicate Payload(const std::string& payload) {
    return [payload](const CapturedMessage& m) { return m.payload == payload; };
  }
  std::optional<ErrorMessage> Error(const std::string& device,
                                    const std::string& code, size_t since = 0) {
    std::optional<CapturedMessage> m = capture->WaitFor(
        topics.Error(device),
        [&](const CapturedMessage& m) {
          auto e = ParseErrorPayload(m.payload);
          return e.ok() && e->error_code == code;
        },
        absl::Seconds(5), since);
    if (!m.has_value()) return std::nullopt;
    return ParseErrorPayload(m->payload).value();
  }

  LoopbackBroker& broker() { return *broker_; }
  LampConnector connector;
  Topics topics = *Topics::Create("IoT2mqtt", "x");
  std::unique_ptr<TopicCapture> capture;

 private:
  std::unique_ptr<LoopbackBroker> broker_;
  std::unique_ptr<MosquittoClient> client_;
  ConnectorOptions options_;
  std::thread thread_;
  int exit_code_ = -1;
};

constexpr char kConfig[] = R"({
  "update_interval": 3600,
  "devices": [{"device_id": "l1"}, {"device_id": "l2"}],
  "groups": [{"group_id": "both", "devices": ["l1", "l2", "ghost"]}]})";

TEST_CASE("Connector over Mosquitto: status, state, commands, errors",
          "[integration][connector]") {
  Bench b(kConfig);
  std::optional<CapturedMessage> online = b.Retained(b.topics.Status());
  REQUIRE(online.has_value());
  CHECK(online->payload == "online");
  CHECK(online->qos == 1);

  REQUIRE(b.capture->WaitFor(b.topics.StateProperty("l1", "name")).has_value());
  std::optional<CapturedMessage> state = b.Retained(b.topics.State("l1"));
  REQUIRE(state.has_value());
  CHECK(ParseStatePayload(state->payload)->state ==
        R"({"power":false,"level":0,"name":"lamp l1"})");
  std::optional<CapturedMessage> name =
      b.Retained(b.topics.StateProperty("l1", "name"));
  REQUIRE(name.has_value());
  CHECK(name->payload == "\"lamp l1\"");

  // cmd -> response with the result -> fresh state.
  size_t mark = b.capture->Mark();
  absl::StatusOr<CommandResponse> response = testing::SendCommandAndAwait(
      *b.capture, b.topics, "l1", R"({"power":true,"level":55})");
  REQUIRE(response.ok());
  CHECK(response->status == ResultStatus::kSuccess);
  CHECK(response->result == R"({"power":true,"level":55,"name":"lamp l1"})");
  std::optional<CapturedMessage> fresh =
      b.capture->WaitFor(b.topics.State("l1"), nullptr, absl::Seconds(5), mark);
  REQUIRE(fresh.has_value());
  CHECK(fresh->payload.find("\"level\":55") != std::string::npos);

  // Stale, future, malformed, unknown device.
  const auto send = [&](const std::string& topic, const std::string& payload) {
    REQUIRE(b.capture->Publish(topic, payload).ok());
  };
  const auto response_to = [&](const std::string& device,
                               const std::string& id) {
    std::optional<CapturedMessage> m = b.capture->WaitFor(
        b.topics.CommandResponse(device), [&](const CapturedMessage& m) {
          auto r = ParseCommandResponsePayload(m.payload);
          return r.ok() && r->cmd_id == id;
        });
    REQUIRE(m.has_value());
    return ParseCommandResponsePayload(m->payload).value();
  };
  send(b.topics.Command("l1"),
       BuildCommandPayload("stale", absl::Now() - absl::Seconds(90),
                           R"({"power":false})"));
  CHECK(response_to("l1", "stale").error_code == "STALE_COMMAND");
  send(b.topics.Command("l1"),
       BuildCommandPayload("future", absl::Now() + absl::Minutes(5),
                           R"({"power":false})"));
  CHECK(response_to("l1", "future").error_code == "STALE_COMMAND");
  send(b.topics.Command("ghost"),
       BuildCommandPayload("who", absl::Now(), R"({"power":false})"));
  CHECK(response_to("ghost", "who").error_code == "UNKNOWN_DEVICE");
  send(b.topics.Command("l1"), R"({"id":"bad","values":"on"})");
  CHECK(response_to("l1", "bad").error_code == "INVALID_COMMAND");
  send(b.topics.Command("l1"), "{\"power\": tru");
  REQUIRE(b.Error("l1", "INVALID_COMMAND").has_value());
  send(b.topics.Command("l1"), std::string(300 * 1024, '{'));
  std::optional<CapturedMessage> huge =
      b.capture->WaitFor(b.topics.Error("l1"), [](const CapturedMessage& m) {
        return m.payload.find("307200 bytes exceeds") != std::string::npos;
      });
  REQUIRE(huge.has_value());
  // Extra levels are not contract topics: ignored, no crash.
  mark = b.capture->Mark();
  send(b.topics.Command("l1") + "/extra", R"({"id":"x","values":{}})");
  send(b.topics.root() + "/devices/l1/cmd/response/x", "{}");
  CHECK_FALSE(b.capture->Arrives(b.topics.root() + "/devices/+/error", nullptr,
                                 absl::Milliseconds(300), mark));
  REQUIRE(
      testing::SendCommandAndAwait(*b.capture, b.topics, "l2", R"({"level":1})")
          .ok());
}

TEST_CASE("Connector over Mosquitto: get, groups, meta",
          "[integration][connector]") {
  Bench b(kConfig);
  REQUIRE(testing::SendCommandAndAwait(*b.capture, b.topics, "l1",
                                       R"({"power":true,"level":20})")
              .ok());
  REQUIRE(
      b.capture
          ->WaitFor(b.topics.StateProperty("l1", "level"), Bench::Payload("20"))
          .has_value());

  // get with properties: an answer, and the retained state stays whole.
  REQUIRE(b.capture
              ->Publish(b.topics.Get("l1"),
                        R"({"properties":["level"],"id":"g-1"})")
              .ok());
  std::optional<CapturedMessage> got =
      b.capture->WaitFor(b.topics.GetResponse("l1"));
  REQUIRE(got.has_value());
  CHECK_FALSE(got->retain);
  absl::StatusOr<GetResponse> get = ParseGetResponsePayload(got->payload);
  REQUIRE(get.ok());
  CHECK(get->state == R"({"level":20})");
  std::optional<CapturedMessage> retained = b.Retained(b.topics.State("l1"));
  REQUIRE(retained.has_value());
  CHECK(ParseStatePayload(retained->payload)->state ==
        R"({"power":true,"level":20,"name":"lamp l1"})");
  // get without properties: the full state is published again.
  size_t mark = b.capture->Mark();
  REQUIRE(b.capture->Publish(b.topics.Get("l2"), "{}").ok());
  REQUIRE(
      b.capture->WaitFor(b.topics.State("l2"), nullptr, absl::Seconds(5), mark)
          .has_value());

  // One aggregated group answer.
  mark = b.capture->Mark();
  REQUIRE(
      b.capture
          ->Publish(b.topics.GroupCommand("both"),
                    BuildCommandPayload("g-7", absl::Now(), R"({"level":99})"))
          .ok());
  std::optional<CapturedMessage> group = b.capture->WaitFor(
      b.topics.GroupCommandResponse("both"), nullptr, absl::Seconds(5), mark);
  REQUIRE(group.has_value());
  absl::StatusOr<GroupCommandResponse> g =
      ParseGroupCommandResponsePayload(group->payload);
  REQUIRE(g.ok());
  CHECK(g->cmd_id == "g-7");
  CHECK(g->status == ResultStatus::kPartial);
  REQUIRE(g->results.size() == 3);
  CHECK(g->results[2].error_code == "UNKNOWN_DEVICE");
  CHECK(b.capture
            ->WaitFor(b.topics.StateProperty("l2", "level"),
                      Bench::Payload("99"), absl::Seconds(5), mark)
            .has_value());
  CHECK_FALSE(b.capture->Arrives(b.topics.GroupCommandResponse("both"), nullptr,
                                 absl::Milliseconds(200), group->index + 1));

  // Meta.
  REQUIRE(b.capture->Publish(b.topics.MetaRequest("info"), "").ok());
  std::optional<CapturedMessage> info = b.capture->WaitFor(b.topics.Info());
  REQUIRE(info.has_value());
  // Live subscribers get retain=0 (MQTT 3.1.1); a new one gets it retained.
  std::optional<CapturedMessage> retained_info = b.Retained(b.topics.Info());
  REQUIRE(retained_info.has_value());
  CHECK(retained_info->payload == info->payload);
  absl::StatusOr<InstanceInfo> parsed = ParseInfoPayload(info->payload);
  REQUIRE(parsed.ok());
  CHECK(parsed->uptime_seconds >= 0);
  CHECK(parsed->uptime_seconds < 60);  // Seconds since start, not the epoch.
  CHECK(parsed->devices_count == 2);
  CHECK(parsed->connector_type == "lamps");
  REQUIRE(b.capture->Publish(b.topics.MetaRequest("devices_list"), "").ok());
  std::optional<CapturedMessage> list =
      b.capture->WaitFor(b.topics.DevicesList());
  REQUIRE(list.has_value());
  CHECK(ParseDevicesListPayload(list->payload).value().size() == 2);
}

TEST_CASE("Connector over Mosquitto: a device that stops answering",
          "[integration][connector]") {
  Bench b(R"({"update_interval": 0.2,
              "devices": [{"device_id": "l1"}, {"device_id": "l2"}]})");
  size_t mark = b.capture->Mark();
  b.connector.SetAnswering("l1", false);
  std::optional<ErrorMessage> error = b.Error("l1", "UPDATE_ERROR", mark);
  REQUIRE(error.has_value());
  REQUIRE(error->retry_info.has_value());
  CHECK(error->retry_info->attempt == 1);
  CHECK(error->retry_info->next_retry.has_value());
  CHECK(error->message.find("no answer") != std::string::npos);
  // l2 keeps updating while l1 fails.
  size_t since = b.capture->Mark();
  for (int i = 0; i < 3; ++i) {
    std::optional<CapturedMessage> m = b.capture->WaitFor(
        b.topics.State("l2"), nullptr, absl::Seconds(5), since);
    REQUIRE(m.has_value());
    since = m->index + 1;
  }
  b.connector.SetAnswering("l1", true);
  mark = b.capture->Mark();
  REQUIRE(
      b.capture->WaitFor(b.topics.State("l1"), nullptr, absl::Seconds(5), mark)
          .has_value());
}

TEST_CASE("Connector over Mosquitto: broker restart, then graceful stop",
          "[integration][connector]") {
  Bench b(kConfig);
  REQUIRE(b.capture->WaitFor(b.topics.State("l2")).has_value());
  REQUIRE(b.broker().Stop().ok());
  REQUIRE(b.broker().Restart().ok());
  absl::Time restarted = absl::Now();
  // Retained messages died with the broker (no persistence); the connector
  // brings back `online` and every device's state.
  auto capture = b.NewCapture();
  std::optional<CapturedMessage> online = capture->WaitFor(
      b.topics.Status(), Bench::Payload("online"), absl::Seconds(5));
  REQUIRE(online.has_value());
  std::optional<CapturedMessage> l1 =
      capture->WaitFor(b.topics.State("l1"), nullptr, absl::Seconds(5));
  std::optional<CapturedMessage> l2 =
      capture->WaitFor(b.topics.State("l2"), nullptr, absl::Seconds(5));
  REQUIRE(l1.has_value());
  REQUIRE(l2.has_value());
  CHECK(l2->received - restarted < absl::Seconds(5));
  // Still serving.
  REQUIRE(testing::SendCommandAndAwait(*capture, b.topics, "l1",
                                       R"({"power":true})")
              .ok());

  size_t mark = capture->Mark();
  absl::Time stop_started = absl::Now();
  CHECK(b.Stop() == 0);
  CHECK(absl::Now() - stop_started < absl::Seconds(10));
  REQUIRE(capture
              ->WaitFor(b.topics.Status(), Bench::Payload("offline"),
                        absl::Seconds(5), mark)
              .has_value());
}

}  // namespace
}  // namespace iot2mqtt::sdk
