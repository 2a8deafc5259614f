// The shipped connector binaries (demo, template) as child processes against
// a real Mosquitto on a free loopback port: the faults of issue 3 (SIGKILL ->
// last will, broker restart, SIGTERM) and the contract seen from outside.

#include <signal.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "catch2/catch.hpp"
#include "iot2mqtt/sdk/contract.h"
#include "sdk/testing/loopback_broker.h"
#include "sdk/testing/topic_capture.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::testing {
namespace {

using sdk::testing::CapturedMessage;
using sdk::testing::LoopbackBroker;
using sdk::testing::TopicCapture;

constexpr char kDemoConfig[] = R"({
  "instance_id": "demo", "connector_type": "demo", "update_interval": 0.5,
  "motion_mean_interval": 0.4, "motion_hold": 0.2,
  "devices": [
    {"device_id": "light", "type": "light"},
    {"device_id": "climate", "type": "climate"},
    {"device_id": "plug", "type": "switch"},
    {"device_id": "hall", "type": "motion", "zone": "hallway"}
  ],
  "groups": [{"group_id": "power", "devices": ["light", "plug"]}]})";

TopicCapture::Predicate Payload(const std::string& payload) {
  return [payload](const CapturedMessage& m) { return m.payload == payload; };
}

class World {
 public:
  World() {
    auto broker = LoopbackBroker::Start();
    INFO(broker.status().ToString());
    REQUIRE(broker.ok());
    broker_ = *std::move(broker);
  }

  std::unique_ptr<TopicCapture> Capture(const std::string& filter) {
    auto capture =
        TopicCapture::Start(broker_->host(), broker_->port(), filter);
    INFO(capture.status().ToString());
    REQUIRE(capture.ok());
    return *std::move(capture);
  }

  // Starts `binary` for `instance` with `config` as its instance file.
  std::unique_ptr<ChildProcess> StartConnector(
      const std::string& binary, const std::string& instance,
      const std::string& config,
      std::map<std::string, std::string> extra_env = {}) {
    std::string config_path = dir_.Join(instance + ".json");
    WriteFile(config_path, config);
    WriteFile(dir_.Join("empty.env"), "");
    std::map<std::string, std::string> env = {
        {"INSTANCE_NAME", instance},
        {"IOT2MQTT_INSTANCE_FILE", config_path},
        {"IOT2MQTT_ENV_FILE", dir_.Join("empty.env")},
        {"MQTT_HOST", broker_->host()},
        {"MQTT_PORT", absl::StrCat(broker_->port())},
        {"MQTT_KEEPALIVE", "5"},
        {"LOG_LEVEL", "DEBUG"}};
    for (auto& [k, v] : extra_env) env[k] = v;
    log_path_ = dir_.Join(instance + ".log");
    auto process = ChildProcess::Start(BinaryPath(binary), {}, env, log_path_);
    REQUIRE(process.ok());
    return *std::move(process);
  }

  std::string Log() const { return ReadFile(log_path_); }
  LoopbackBroker& broker() { return *broker_; }
  TempDir& dir() { return dir_; }

 private:
  TempDir dir_;
  std::unique_ptr<LoopbackBroker> broker_;
  std::string log_path_;
};

sdk::Topics TopicsOf(const std::string& instance) {
  return *sdk::Topics::Create("IoT2mqtt", instance);
}

TEST_CASE("demo: live devices, commands, events", "[integration][demo]") {
  World world;
  sdk::Topics topics = TopicsOf("demo");
  auto capture = world.Capture(topics.All());
  auto demo =
      world.StartConnector("iot2mqtt-connector-demo", "demo", kDemoConfig);
  INFO(world.Log());
  REQUIRE(capture->WaitFor(topics.Status(), Payload("online")).has_value());
  for (const char* device : {"light", "climate", "plug", "hall"}) {
    INFO(device);
    REQUIRE(capture->WaitFor(topics.State(device)).has_value());
  }

  // The climate sensor drifts within its bounds.
  std::optional<CapturedMessage> temperature =
      capture->WaitFor(topics.StateProperty("climate", "temperature"));
  REQUIRE(temperature.has_value());
  double celsius = std::stod(temperature->payload);
  CHECK(celsius >= 15);
  CHECK(celsius <= 30);

  absl::StatusOr<sdk::CommandResponse> r = sdk::testing::SendCommandAndAwait(
      *capture, topics, "light",
      R"({"power":true,"brightness":30,"color_temp":2700})");
  REQUIRE(r.ok());
  CHECK(r->status == sdk::ResultStatus::kSuccess);
  CHECK(r->result == R"({"power":true,"brightness":30,"color_temp":2700})");
  r = sdk::testing::SendCommandAndAwait(*capture, topics, "light",
                                        R"({"brightness":300})");
  REQUIRE(r.ok());
  CHECK(r->error_code == "INVALID_COMMAND");
  r = sdk::testing::SendCommandAndAwait(*capture, topics, "climate",
                                        R"({"temperature":25})");
  REQUIRE(r.ok());
  CHECK(r->error_code == "INVALID_COMMAND");
  r = sdk::testing::SendCommandAndAwait(*capture, topics, "plug",
                                        R"({"power":true})");
  REQUIRE(r.ok());
  CHECK(r->result == R"({"power":true})");

  // Motion events at random intervals, with the state following.
  std::optional<CapturedMessage> event =
      capture->WaitFor(topics.Events("hall"), nullptr, absl::Seconds(10));
  REQUIRE(event.has_value());
  absl::StatusOr<sdk::EventMessage> parsed =
      sdk::ParseEventPayload(event->payload);
  REQUIRE(parsed.ok());
  CHECK(parsed->event == "motion_detected");
  CHECK(parsed->data.find("\"zone\":\"hallway\"") != std::string::npos);
  REQUIRE(capture
              ->WaitFor(topics.StateProperty("hall", "motion"), Payload("true"),
                        absl::Seconds(5))
              .has_value());

  // Group command across a light and a plug.
  size_t mark = capture->Mark();
  REQUIRE(capture
              ->Publish(topics.GroupCommand("power"),
                        sdk::BuildCommandPayload("g-1", absl::Now(),
                                                 R"({"power":false})"))
              .ok());
  std::optional<CapturedMessage> group = capture->WaitFor(
      topics.GroupCommandResponse("power"), nullptr, absl::Seconds(5), mark);
  REQUIRE(group.has_value());
  CHECK(sdk::ParseGroupCommandResponsePayload(group->payload)->status ==
        sdk::ResultStatus::kSuccess);
}

TEST_CASE("demo: SIGKILL -> the broker publishes the last will",
          "[integration][demo]") {
  World world;
  sdk::Topics topics = TopicsOf("demo");
  auto capture = world.Capture(topics.Status());
  auto demo =
      world.StartConnector("iot2mqtt-connector-demo", "demo", kDemoConfig);
  std::optional<CapturedMessage> online =
      capture->WaitFor(topics.Status(), Payload("online"));
  REQUIRE(online.has_value());
  size_t mark = capture->Mark();
  demo->Signal(SIGKILL);
  REQUIRE(demo->Wait(absl::Seconds(5)).ok());
  std::optional<CapturedMessage> offline = capture->WaitFor(
      topics.Status(), Payload("offline"), absl::Seconds(5), mark);
  REQUIRE(offline.has_value());
  // Retained: a subscriber arriving later sees `offline`.
  auto later = world.Capture(topics.Status());
  std::optional<CapturedMessage> retained = later->WaitFor(topics.Status());
  REQUIRE(retained.has_value());
  CHECK(retained->retain);
  CHECK(retained->payload == "offline");
}

TEST_CASE("demo: SIGTERM -> offline and exit 0 within 10 s",
          "[integration][demo]") {
  World world;
  sdk::Topics topics = TopicsOf("demo");
  auto capture = world.Capture(topics.All());
  auto demo =
      world.StartConnector("iot2mqtt-connector-demo", "demo", kDemoConfig);
  REQUIRE(capture->WaitFor(topics.Status(), Payload("online")).has_value());
  REQUIRE(capture->WaitFor(topics.State("light")).has_value());
  size_t mark = capture->Mark();
  absl::Time start = absl::Now();
  demo->Signal(SIGTERM);
  absl::StatusOr<int> code = demo->Wait(absl::Seconds(10));
  INFO(world.Log());
  REQUIRE(code.ok());
  CHECK(*code == 0);
  CHECK(absl::Now() - start < absl::Seconds(10));
  std::optional<CapturedMessage> offline = capture->WaitFor(
      topics.Status(), Payload("offline"), absl::Seconds(2), mark);
  REQUIRE(offline.has_value());
  // Nothing after `offline`.
  CHECK_FALSE(capture->Arrives(topics.All(), nullptr, absl::Milliseconds(300),
                               offline->index + 1));
}

TEST_CASE("demo: broker restart -> online and fresh retained state within 5 s",
          "[integration][demo]") {
  World world;
  sdk::Topics topics = TopicsOf("demo");
  auto demo =
      world.StartConnector("iot2mqtt-connector-demo", "demo", kDemoConfig);
  {
    auto capture = world.Capture(topics.All());
    REQUIRE(capture->WaitFor(topics.Status(), Payload("online")).has_value());
    REQUIRE(capture->WaitFor(topics.State("plug")).has_value());
  }
  REQUIRE(world.broker().Stop().ok());
  REQUIRE(world.broker().Restart().ok());
  absl::Time restarted = absl::Now();
  auto capture = world.Capture(topics.All());
  std::optional<CapturedMessage> online =
      capture->WaitFor(topics.Status(), Payload("online"), absl::Seconds(5));
  INFO(world.Log());
  REQUIRE(online.has_value());
  for (const char* device : {"light", "climate", "plug", "hall"}) {
    INFO(device);
    std::optional<CapturedMessage> state =
        capture->WaitFor(topics.State(device), nullptr, absl::Seconds(5));
    REQUIRE(state.has_value());
    CHECK(state->received - restarted < absl::Seconds(5));
    absl::StatusOr<sdk::StateMessage> parsed =
        sdk::ParseStatePayload(state->payload);
    REQUIRE(parsed.ok());
  }
  // Retained again for late subscribers.
  auto later = world.Capture(topics.State("light"));
  std::optional<CapturedMessage> retained =
      later->WaitFor(topics.State("light"));
  REQUIRE(retained.has_value());
  CHECK(retained->retain);
  REQUIRE(sdk::testing::SendCommandAndAwait(*capture, topics, "plug",
                                            R"({"power":true})")
              .ok());
}

TEST_CASE("template: the smallest connector follows the contract",
          "[integration][template]") {
  World world;
  sdk::Topics topics = TopicsOf("tpl");
  auto capture = world.Capture(topics.All());
  auto connector =
      world.StartConnector("iot2mqtt-connector-template", "tpl",
                           R"({"devices": [{"device_id": "virtual-1"}]})");
  REQUIRE(capture->WaitFor(topics.Status(), Payload("online")).has_value());
  REQUIRE(capture
              ->WaitFor(topics.StateProperty("virtual-1", "power"),
                        Payload("false"))
              .has_value());
  absl::StatusOr<sdk::CommandResponse> r = sdk::testing::SendCommandAndAwait(
      *capture, topics, "virtual-1", R"({"power":true})");
  REQUIRE(r.ok());
  CHECK(r->result == R"({"power":true})");
  r = sdk::testing::SendCommandAndAwait(*capture, topics, "virtual-1",
                                        R"({"colour":"red"})");
  REQUIRE(r.ok());
  CHECK(r->error_code == "INVALID_COMMAND");
  REQUIRE(capture->Publish(topics.MetaRequest("info"), "").ok());
  std::optional<CapturedMessage> info = capture->WaitFor(topics.Info());
  REQUIRE(info.has_value());
  CHECK(sdk::ParseInfoPayload(info->payload)->connector_type == "unknown");
  size_t mark = capture->Mark();
  connector->Signal(SIGINT);
  absl::StatusOr<int> code = connector->Wait(absl::Seconds(10));
  REQUIRE(code.ok());
  CHECK(*code == 0);
  REQUIRE(
      capture
          ->WaitFor(topics.Status(), Payload("offline"), absl::Seconds(2), mark)
          .has_value());
}

// Exactly one ERROR line, mentioning `needle`.
void CheckOneErrorLine(const std::string& log, const std::string& needle) {
  INFO(log);
  std::vector<std::string> errors;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (line.find("\"severity\":\"ERROR\"") != absl::string_view::npos) {
      errors.emplace_back(line);
    }
  }
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find(needle) != std::string::npos);
}

TEST_CASE("connectors: a bad environment or config exits 2 with one clear line",
          "[integration][template]") {
  World world;
  SECTION("missing config file") {
    auto p = world.StartConnector(
        "iot2mqtt-connector-template", "tpl", "{}",
        {{"IOT2MQTT_INSTANCE_FILE", world.dir().Join("missing.json")}});
    absl::StatusOr<int> code = p->Wait(absl::Seconds(10));
    REQUIRE(code.ok());
    CHECK(*code == 2);
    CheckOneErrorLine(world.Log(), "missing.json does not exist");
  }
  SECTION("malformed config") {
    auto p = world.StartConnector("iot2mqtt-connector-template", "tpl",
                                  R"({"devices": [{"device_id": 1}]})");
    absl::StatusOr<int> code = p->Wait(absl::Seconds(10));
    REQUIRE(code.ok());
    CHECK(*code == 2);
    CheckOneErrorLine(world.Log(), "devices[0].device_id must be a string");
  }
  SECTION("invalid environment, every problem on one line") {
    auto p = world.StartConnector(
        "iot2mqtt-connector-template", "tpl", "{}",
        {{"INSTANCE_NAME", "a+b"}, {"MQTT_PORT", "0"}, {"MQTT_QOS", "5"}});
    absl::StatusOr<int> code = p->Wait(absl::Seconds(10));
    REQUIRE(code.ok());
    CHECK(*code == 2);
    CheckOneErrorLine(world.Log(), "INSTANCE_NAME");
    CHECK(world.Log().find("MQTT_PORT") != std::string::npos);
    CHECK(world.Log().find("MQTT_QOS") != std::string::npos);
  }
}

}  // namespace
}  // namespace iot2mqtt::testing
