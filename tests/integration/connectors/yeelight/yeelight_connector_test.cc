// The connector binary against a real Mosquitto on a loopback port and
// simulated bulbs, watched from the outside as the platform would.

#include <csignal>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "catch2/catch.hpp"
#include "connectors/yeelight/testing/bulb_simulator.h"
#include "iot2mqtt/sdk/contract.h"
#include "rapidjson/document.h"
#include "sdk/testing/loopback_broker.h"
#include "sdk/testing/topic_capture.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::yeelight {
namespace {

using ::iot2mqtt::sdk::Topics;
using ::iot2mqtt::sdk::testing::CapturedMessage;
using ::iot2mqtt::sdk::testing::LoopbackBroker;
using ::iot2mqtt::sdk::testing::SendCommandAndAwait;
using ::iot2mqtt::sdk::testing::TopicCapture;
using ::iot2mqtt::testing::BinaryPath;
using ::iot2mqtt::testing::ChildProcess;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::TempDir;
using ::iot2mqtt::testing::WriteFile;
using testing::BulbSimulator;
using testing::SimulatorOptions;

constexpr char kInstance[] = "yl_test";

// The "state" object of a state payload, parsed.
rapidjson::Document StateOf(const CapturedMessage& message) {
  rapidjson::Document doc;
  auto parsed = sdk::ParseStatePayload(message.payload);
  if (parsed.ok()) doc.Parse(parsed->state.c_str());
  if (doc.HasParseError() || !doc.IsObject()) doc.SetObject();
  return doc;
}

bool StateHas(const CapturedMessage& message, const char* key, bool value) {
  rapidjson::Document state = StateOf(message);
  return state.HasMember(key) && state[key].IsBool() &&
         state[key].GetBool() == value;
}

bool StateHas(const CapturedMessage& message, const char* key, int value) {
  rapidjson::Document state = StateOf(message);
  return state.HasMember(key) && state[key].IsInt() &&
         state[key].GetInt() == value;
}

std::string ErrorCodeOf(const CapturedMessage& message) {
  auto parsed = sdk::ParseErrorPayload(message.payload);
  return parsed.ok() ? parsed->error_code : "";
}

// Broker, bulbs, the connector process and a capture of its topics.
class Rig {
 public:
  Rig(size_t bulbs, double update_interval_s,
      const std::vector<size_t>& offline_at_start = {},
      const std::string& extra_devices = "") {
    auto broker = LoopbackBroker::Start();
    REQUIRE(broker.ok());
    broker_ = *std::move(broker);
    auto sim = BulbSimulator::Start(bulbs);
    REQUIRE(sim.ok());
    sim_ = *std::move(sim);
    for (size_t bulb : offline_at_start) sim_->SetOffline(bulb, true);
    auto topics = Topics::Create(sdk::kDefaultBaseTopic, kInstance);
    REQUIRE(topics.ok());
    topics_ = std::make_unique<Topics>(*topics);

    std::string devices;
    for (size_t i = 0; i < bulbs; ++i) {
      absl::StrAppend(&devices, i == 0 ? "" : ",", R"({"device_id":"bulb)", i,
                      R"(","ip":"127.0.0.1","port":)", sim_->port(i),
                      R"(,"name":"Bulb )", i, R"(","enabled":true})");
    }
    if (!extra_devices.empty()) absl::StrAppend(&devices, ",", extra_devices);
    WriteFile(dir_.Join("instance.json"),
              absl::StrCat(R"({"instance_id":")", kInstance,
                           R"(","connector_type":"yeelight",)",
                           R"("update_interval":)", update_interval_s,
                           R"(,"effect_type":"sudden","duration":300,)",
                           R"("devices":[)", devices, "]}"));
    WriteFile(dir_.Join("empty.env"), "");

    auto capture =
        TopicCapture::Start(broker_->host(), broker_->port(), topics_->All());
    REQUIRE(capture.ok());
    capture_ = *std::move(capture);

    std::map<std::string, std::string> env = broker_->Env();
    env["INSTANCE_NAME"] = kInstance;
    env["IOT2MQTT_INSTANCE_FILE"] = dir_.Join("instance.json");
    env["IOT2MQTT_ENV_FILE"] = dir_.Join("empty.env");
    env["YEELIGHT_REQUEST_TIMEOUT_MS"] = "500";
    env["YEELIGHT_CONNECT_TIMEOUT_MS"] = "500";
    env["LOG_LEVEL"] = "DEBUG";
    auto connector =
        ChildProcess::Start(BinaryPath("iot2mqtt-connector-yeelight"), {}, env,
                            dir_.Join("connector.log"));
    REQUIRE(connector.ok());
    connector_ = *std::move(connector);
  }

  ~Rig() {
    if (connector_ != nullptr && connector_->Running()) {
      connector_->Signal(SIGTERM);
      (void)connector_->Wait(absl::Seconds(15));
    }
  }

  BulbSimulator& sim() { return *sim_; }
  TopicCapture& capture() { return *capture_; }
  const Topics& topics() const { return *topics_; }
  ChildProcess& connector() { return *connector_; }
  std::string log() const { return ReadFile(dir_.Join("connector.log")); }

  std::string State(size_t bulb) const {
    return topics_->State(absl::StrCat("bulb", bulb));
  }
  std::string Error(size_t bulb) const {
    return topics_->Error(absl::StrCat("bulb", bulb));
  }

  // A state of `bulb` published after `since`.
  std::optional<CapturedMessage> NextState(
      size_t bulb, size_t since,
      const TopicCapture::Predicate& predicate = nullptr,
      absl::Duration timeout = absl::Seconds(5)) const {
    return capture_->WaitFor(State(bulb), predicate, timeout, since);
  }

 private:
  TempDir dir_;
  std::unique_ptr<LoopbackBroker> broker_;
  std::unique_ptr<BulbSimulator> sim_;
  std::unique_ptr<Topics> topics_;
  std::unique_ptr<TopicCapture> capture_;
  std::unique_ptr<ChildProcess> connector_;
};

TEST_CASE("the connector publishes online and the state of every bulb") {
  Rig rig(2, 30, {},
          R"({"device_id":"no_ip","enabled":true},)"
          R"({"device_id":"disabled","ip":"127.0.0.1","enabled":false})");
  INFO(rig.log());
  auto online = rig.capture().WaitFor(
      rig.topics().Status(),
      [](const CapturedMessage& m) { return m.payload == "online"; });
  REQUIRE(online.has_value());
  for (size_t i = 0; i < 2; ++i) {
    auto state = rig.NextState(i, 0);
    REQUIRE(state.has_value());
    rapidjson::Document doc = StateOf(*state);
    CHECK(doc["online"].GetBool());
    CHECK(doc["power"].GetBool());
    CHECK(doc["brightness"].GetInt() == 100);
    CHECK(doc["color_temp"].GetInt() == 4000);
    CHECK(std::string(doc["name"].GetString()) == absl::StrCat("bulb", i + 1));
    // Property topics carry JSON values.
    auto power = rig.capture().WaitFor(
        rig.topics().StateProperty(absl::StrCat("bulb", i), "power"));
    REQUIRE(power.has_value());
    CHECK(power->payload == "true");
  }
  // A bulb without an address is reported once; the others are unaffected.
  auto init = rig.capture().WaitFor(rig.topics().Error("no_ip"));
  REQUIRE(init.has_value());
  CHECK(ErrorCodeOf(*init) == "INIT_ERROR");
  CHECK(init->payload.find("ip") != std::string::npos);
  CHECK_FALSE(rig.capture().Arrives(rig.topics().Error("no_ip"), nullptr,
                                    absl::Milliseconds(300), init->index + 1));
}

TEST_CASE("a command changes the bulb, the response and state are fresh") {
  Rig rig(2, 30);
  INFO(rig.log());
  REQUIRE(rig.NextState(0, 0).has_value());

  size_t mark = rig.capture().Mark();
  auto response = SendCommandAndAwait(rig.capture(), rig.topics(), "bulb0",
                                      R"({"power": false})");
  REQUIRE(response.ok());
  CHECK(response->status == sdk::ResultStatus::kSuccess);
  CHECK(rig.sim().Property(0, "power") == "off");
  CHECK(rig.sim().Property(1, "power") == "on");
  rapidjson::Document result;
  result.Parse(response->result.c_str());
  REQUIRE(result.IsObject());
  CHECK_FALSE(result["power"].GetBool());
  CHECK(rig.NextState(0, mark,
                      [](const CapturedMessage& m) {
                        return StateHas(m, "power", false);
                      })
            .has_value());

  // Relative brightness on a dark bulb: turned on first, then changed.
  rig.sim().SetReplyDelay(0, absl::Milliseconds(100));  // Slow but in time.
  response = SendCommandAndAwait(
      rig.capture(), rig.topics(), "bulb0",
      R"({"brightness": "-25", "color_temp": 9000, "transition": 0})");
  REQUIRE(response.ok());
  CHECK(response->status == sdk::ResultStatus::kSuccess);
  CHECK(rig.sim().Property(0, "power") == "on");
  CHECK(rig.sim().Property(0, "bright") == "75");
  CHECK(rig.sim().Property(0, "ct") == "6500");  // Clamped.
  result.Parse(response->result.c_str());
  CHECK(result["brightness"].GetInt() == 75);
  CHECK(result["color_temp"].GetInt() == 6500);

  response = SendCommandAndAwait(rig.capture(), rig.topics(), "bulb0",
                                 R"({"color": {"r": 0, "g": 0, "b": 255}})");
  REQUIRE(response.ok());
  result.Parse(response->result.c_str());
  CHECK(std::string(result["hex_color"].GetString()) == "#0000ff");
  CHECK(result["color_mode"].GetInt() == 1);
}

TEST_CASE("a bad command is refused before the bulb is touched") {
  Rig rig(1, 30);
  INFO(rig.log());
  REQUIRE(rig.NextState(0, 0).has_value());
  size_t requests = rig.sim().methods(0).size();
  auto response = SendCommandAndAwait(rig.capture(), rig.topics(), "bulb0",
                                      R"({"power": false, "scene": "party"})");
  REQUIRE(response.ok());
  CHECK(response->status == sdk::ResultStatus::kError);
  CHECK(response->error_code == "INVALID_COMMAND");
  CHECK(response->error.find("scene") != std::string::npos);
  CHECK(rig.sim().Property(0, "power") == "on");
  CHECK(rig.sim().methods(0).size() == requests);
}

TEST_CASE("a change made at the bulb is published at once, without polling") {
  Rig rig(2, 60);  // No poll during the test.
  INFO(rig.log());
  REQUIRE(rig.NextState(0, 0).has_value());
  REQUIRE(rig.NextState(1, 0).has_value());
  REQUIRE(rig.sim().WaitForConnections(0, 1));
  size_t polls = rig.sim().methods(0).size();

  size_t mark = rig.capture().Mark();
  absl::Time changed = absl::Now();
  rig.sim().SetProperties(0, {{"power", "off"}, {"bright", "12"}});
  auto state = rig.NextState(0, mark, [](const CapturedMessage& m) {
    return StateHas(m, "power", false) && StateHas(m, "brightness", 12);
  });
  REQUIRE(state.has_value());
  CHECK(state->received - changed < absl::Seconds(1));
  auto power = rig.capture().WaitFor(
      rig.topics().StateProperty("bulb0", "power"),
      [](const CapturedMessage& m) { return m.payload == "false"; },
      absl::Seconds(2), mark);
  CHECK(power.has_value());
  // Nothing was asked of the bulb: the notification alone did it.
  CHECK(rig.sim().methods(0).size() == polls);
  // The other bulb did not change.
  CHECK_FALSE(rig.capture().Arrives(
      rig.State(1),
      [](const CapturedMessage& m) { return StateHas(m, "power", false); },
      absl::Milliseconds(300), mark));
}

TEST_CASE("a silent bulb gets UPDATE_ERROR while the other keeps updating") {
  Rig rig(2, 0.5);
  INFO(rig.log());
  REQUIRE(rig.NextState(0, 0).has_value());
  REQUIRE(rig.NextState(1, 0).has_value());

  rig.sim().SetSilent(0, true);
  size_t mark = rig.capture().Mark();
  auto error = rig.capture().WaitFor(
      rig.Error(0),
      [](const CapturedMessage& m) { return ErrorCodeOf(m) == "UPDATE_ERROR"; },
      absl::Seconds(5), mark);
  REQUIRE(error.has_value());
  auto parsed = sdk::ParseErrorPayload(error->payload);
  REQUIRE(parsed.ok());
  CHECK(parsed->retry_info.has_value());
  // Meanwhile bulb1 keeps its rhythm.
  size_t after_error = rig.capture().Mark();
  auto first = rig.NextState(1, after_error);
  REQUIRE(first.has_value());
  CHECK(rig.NextState(1, first->index + 1).has_value());

  // Back: bulb0 recovers by itself.
  rig.sim().SetSilent(0, false);
  size_t back = rig.capture().Mark();
  CHECK(rig.NextState(0, back, nullptr, absl::Seconds(15)).has_value());
}

TEST_CASE("a bulb unreachable at start is retried and recovers") {
  Rig rig(2, 0.5, /*offline_at_start=*/{0});
  INFO(rig.log());
  REQUIRE(rig.NextState(1, 0).has_value());
  auto error =
      rig.capture().WaitFor(rig.Error(0), [](const CapturedMessage& m) {
        return ErrorCodeOf(m) == "UPDATE_ERROR";
      });
  REQUIRE(error.has_value());
  CHECK_FALSE(rig.capture()
                  .WaitFor(rig.State(0), nullptr, absl::Milliseconds(10))
                  .has_value());
  rig.sim().SetOffline(0, false);
  auto state = rig.NextState(0, 0, nullptr, absl::Seconds(15));
  REQUIRE(state.has_value());
  CHECK(StateHas(*state, "online", true));
  // Commands work once it is back.
  auto response = SendCommandAndAwait(rig.capture(), rig.topics(), "bulb0",
                                      R"({"power": "toggle"})");
  REQUIRE(response.ok());
  CHECK(response->status == sdk::ResultStatus::kSuccess);
  CHECK(rig.sim().Property(0, "power") == "off");
}

TEST_CASE("dropped connections and malformed lines do not stop updates") {
  Rig rig(1, 60);
  INFO(rig.log());
  REQUIRE(rig.NextState(0, 0).has_value());
  REQUIRE(rig.sim().WaitForConnections(0, 1));

  rig.sim().SendRaw(0, "this is not json\r\n{\"id\":\r\n[]\r\n");
  size_t mark = rig.capture().Mark();
  rig.sim().SetProperties(0, {{"ct", "2700"}});
  CHECK(rig.NextState(0, mark,
                      [](const CapturedMessage& m) {
                        return StateHas(m, "color_temp", 2700);
                      })
            .has_value());

  // The connection drops; the connector reconnects in the background and
  // notifications flow again.
  rig.sim().DropConnections(0);
  REQUIRE(rig.sim().WaitForConnections(0, 1));
  mark = rig.capture().Mark();
  rig.sim().SetProperties(0, {{"bright", "33"}});
  CHECK(rig.NextState(0, mark,
                      [](const CapturedMessage& m) {
                        return StateHas(m, "brightness", 33);
                      })
            .has_value());

  // A command while the bulb is slow beyond the deadline fails as offline.
  rig.sim().SetReplyDelay(0, absl::Seconds(2));
  auto response =
      SendCommandAndAwait(rig.capture(), rig.topics(), "bulb0",
                          R"({"brightness": 80})", absl::Seconds(10));
  REQUIRE(response.ok());
  CHECK(response->status == sdk::ResultStatus::kError);
  CHECK(response->error_code == "DEVICE_OFFLINE");
  rig.sim().SetReplyDelay(0, absl::ZeroDuration());
  response = SendCommandAndAwait(rig.capture(), rig.topics(), "bulb0",
                                 R"({"brightness": 60})");
  REQUIRE(response.ok());
  CHECK(response->status == sdk::ResultStatus::kSuccess);
  CHECK(rig.sim().Property(0, "bright") == "60");
}

TEST_CASE("SIGTERM stops the connector gracefully with status offline") {
  Rig rig(1, 30);
  INFO(rig.log());
  REQUIRE(rig.NextState(0, 0).has_value());
  size_t mark = rig.capture().Mark();
  rig.connector().Signal(SIGTERM);
  auto exit_code = rig.connector().Wait(absl::Seconds(12));
  REQUIRE(exit_code.ok());
  CHECK(*exit_code == 0);
  CHECK(rig.capture()
            .WaitFor(
                rig.topics().Status(),
                [](const CapturedMessage& m) { return m.payload == "offline"; },
                absl::Seconds(2), mark)
            .has_value());
}

}  // namespace
}  // namespace iot2mqtt::yeelight
