// The Connector base class against an in-memory MQTT client and a fake
// clock: every rule of docs/mqtt-contract.md that needs no broker.

#include "iot2mqtt/sdk/connector.h"

#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "iot2mqtt/sdk/json_builder.h"
#include "sdk/testing/fake_mqtt_client.h"

namespace iot2mqtt::sdk {
namespace {

using testing::FakeMqttClient;

// Devices with a power flag and a level; the test scripts failures and
// blocking reads.
class ScriptedConnector final : public Connector {
 public:
  void SetFailing(const std::string& device, bool failing) {
    absl::MutexLock lock(&mu_);
    failing_[device] = failing;
  }
  void Block(const std::string& device) {
    absl::MutexLock lock(&mu_);
    blocked_[device] = true;
  }
  void Unblock(const std::string& device) {
    absl::MutexLock lock(&mu_);
    blocked_[device] = false;
  }
  bool WaitBlocked(const std::string& device) {
    absl::MutexLock lock(&mu_);
    const auto inside = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return in_block_[device];
    };
    return mu_.AwaitWithTimeout(absl::Condition(&inside), absl::Seconds(5));
  }
  bool WaitReturned(const std::string& device, int count) {
    absl::MutexLock lock(&mu_);
    const auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return returned_[device] >= count;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(5));
  }
  int Returned(const std::string& device) {
    absl::MutexLock lock(&mu_);
    return returned_[device];
  }
  void set_init_status(absl::Status status) { init_status_ = status; }

  std::atomic<bool> cleaned_up{false};
  std::atomic<bool> stop_seen{false};

 protected:
  absl::Status Initialize() override { return init_status_; }

  absl::StatusOr<std::string> ReadDevice(const DeviceConfig& device) override {
    absl::MutexLock lock(&mu_);
    const std::string& id = device.device_id;
    if (blocked_[id]) {
      in_block_[id] = true;
      const auto released = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !blocked_[id];
      };
      mu_.Await(absl::Condition(&released));
      in_block_[id] = false;
    }
    ++returned_[id];
    if (failing_[id]) return absl::UnavailableError("no answer");
    return StateLocked(id);
  }

  absl::StatusOr<std::string> ApplyCommand(
      const DeviceConfig& device, const rapidjson::Value& values) override {
    absl::MutexLock lock(&mu_);
    const std::string& id = device.device_id;
    bool read_back = false;
    for (const auto& m : values.GetObject()) {
      std::string key = m.name.GetString();
      if (key == "power" && m.value.IsBool()) {
        power_[id] = m.value.GetBool();
      } else if (key == "level" && m.value.IsInt() && m.value.GetInt() >= 0 &&
                 m.value.GetInt() <= 100) {
        level_[id] = m.value.GetInt();
      } else if (key == "unplug") {
        return absl::UnavailableError("device unreachable");
      } else if (key == "busy") {
        return WithErrorCode(absl::FailedPreconditionError("bulb is busy"),
                             "BULB_BUSY");
      } else if (key == "read_back") {
        read_back = true;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("unsupported value \"", key, "\""));
      }
    }
    if (read_back) return std::string();
    return StateLocked(id);
  }

  bool PollDevice(const DeviceConfig& device) const override {
    return device.entry.GetBool("poll", true);
  }
  void OnStopRequested() override { stop_seen = true; }
  void Cleanup() override { cleaned_up = true; }

 private:
  std::string StateLocked(const std::string& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return JsonObjectBuilder()
        .Set("power", power_[id])
        .Set("level", level_[id])
        .Build();
  }

  absl::Status init_status_;
  absl::Mutex mu_;
  std::map<std::string, bool> failing_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, bool> blocked_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, bool> in_block_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> returned_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, bool> power_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> level_ ABSL_GUARDED_BY(mu_);
};

constexpr char kConfig[] = R"({
  "connector_type": "scripted", "update_interval": 3600,
  "devices": [{"device_id": "l1", "model": "lamp"}, {"device_id": "l2"},
              {"device_id": "off", "enabled": false}],
  "groups": [{"group_id": "all", "devices": ["l1", "l2", "off", "ghost"]},
             {"group_id": "lamps", "devices": ["l1", "l2"]},
             {"group_id": "empty", "devices": ["off"]}]})";

class Harness {
 public:
  explicit Harness(const std::string& config = kConfig,
                   absl::Duration stop_timeout = absl::Seconds(10),
                   bool start = true) {
    absl::StatusOr<InstanceConfig> parsed =
        ParseInstanceConfig(config, "home", "");
    REQUIRE(parsed.ok());
    options_.config = *parsed;
    options_.client = &client;
    options_.clock = &clock;
    options_.stop_timeout = stop_timeout;
    topics = *Topics::Create("IoT2mqtt", "home");
    if (start) Start();
  }
  ~Harness() { Stop(); }

  void Start() {
    thread_ = std::thread([this] { exit_code_ = connector.Run(options_); });
    // The first poll of every enabled device.
    for (const DeviceConfig& d : options_.config.devices) {
      if (d.enabled && d.entry.GetBool("poll", true)) {
        REQUIRE(client.WaitFor(topics.State(d.device_id)).has_value());
      }
    }
  }
  int Stop() {
    connector.RequestStop();
    if (thread_.joinable()) thread_.join();
    return exit_code_;
  }

  // A command payload stamped with the fake clock's time plus `age`.
  std::string Command(const std::string& id, const std::string& values,
                      absl::Duration age = absl::ZeroDuration()) {
    return BuildCommandPayload(id, clock.Now() - age, values, std::nullopt);
  }
  std::optional<CommandResponse> Response(const std::string& device,
                                          const std::string& id,
                                          size_t since = 0) {
    std::optional<MqttMessage> m = client.WaitFor(
        topics.CommandResponse(device),
        [&](const MqttMessage& m) {
          auto r = ParseCommandResponsePayload(m.payload);
          return r.ok() && r->cmd_id == id;
        },
        absl::Seconds(5), since);
    if (!m.has_value()) return std::nullopt;
    CHECK(m->qos == 1);
    CHECK_FALSE(m->retain);
    return ParseCommandResponsePayload(m->payload).value();
  }
  std::optional<ErrorMessage> Error(const std::string& device,
                                    const std::string& code, size_t since = 0) {
    std::optional<MqttMessage> m = client.WaitFor(
        topics.Error(device),
        [&](const MqttMessage& m) {
          auto e = ParseErrorPayload(m.payload);
          return e.ok() && e->error_code == code;
        },
        absl::Seconds(5), since);
    if (!m.has_value()) return std::nullopt;
    return ParseErrorPayload(m->payload).value();
  }

  FakeMqttClient client;
  FakeClock clock;
  ScriptedConnector connector;
  Topics topics = *Topics::Create("IoT2mqtt", "x");

 private:
  ConnectorOptions options_;
  std::thread thread_;
  int exit_code_ = -1;
};

TEST_CASE("Connector: will, birth, subscriptions, first state",
          "[unit][connector]") {
  Harness h;
  std::optional<MqttMessage> will = h.client.will();
  REQUIRE(will.has_value());
  CHECK(will->topic == "IoT2mqtt/v1/instances/home/status");
  CHECK(will->payload == "offline");
  CHECK(will->qos == 1);
  CHECK(will->retain);
  std::optional<MqttMessage> birth = h.client.birth();
  REQUIRE(birth.has_value());
  CHECK(birth->payload == "online");
  CHECK(birth->qos == 1);
  CHECK(birth->retain);
  CHECK(h.client.subscriptions() ==
        std::vector<std::pair<std::string, int>>{
            {"IoT2mqtt/v1/instances/home/devices/+/cmd", 1},
            {"IoT2mqtt/v1/instances/home/devices/+/get", 1},
            {"IoT2mqtt/v1/instances/home/groups/+/cmd", 1},
            {"IoT2mqtt/v1/instances/home/meta/request/+", 1}});

  std::vector<MqttMessage> states = h.client.PublishedTo(h.topics.State("l1"));
  REQUIRE_FALSE(states.empty());
  CHECK(states[0].retain);
  CHECK(states[0].qos == 1);
  absl::StatusOr<StateMessage> state = ParseStatePayload(states[0].payload);
  REQUIRE(state.ok());
  CHECK(state->device_id == "l1");
  CHECK(state->state == R"({"power":false,"level":0})");
  CHECK(state->timestamp == h.clock.Now());
  // Property topics carry JSON values, in the same batch.
  REQUIRE(h.client.WaitFor(h.topics.StateProperty("l1", "level")).has_value());
  CHECK(
      h.client.PublishedTo(h.topics.StateProperty("l1", "power"))[0].payload ==
      "false");
  CHECK(
      h.client.PublishedTo(h.topics.StateProperty("l1", "level"))[0].payload ==
      "0");
  // Disabled devices are never read.
  CHECK(h.client.PublishedTo(h.topics.State("off")).empty());
}

TEST_CASE("Connector: command -> response with result -> fresh state",
          "[unit][connector]") {
  Harness h;
  size_t mark = h.client.Mark();
  h.client.Deliver(h.topics.Command("l1"),
                   h.Command("c-1", R"({"power":true,"level":70})"));
  std::optional<CommandResponse> response = h.Response("l1", "c-1", mark);
  REQUIRE(response.has_value());
  CHECK(response->status == ResultStatus::kSuccess);
  CHECK(response->result == R"({"power":true,"level":70})");
  std::optional<MqttMessage> state =
      h.client.WaitFor(h.topics.State("l1"), nullptr, absl::Seconds(5), mark);
  REQUIRE(state.has_value());
  CHECK(ParseStatePayload(state->payload)->state ==
        R"({"power":true,"level":70})");
  // Response first, then the state.
  std::vector<FakeMqttClient::Published> all = h.client.published();
  size_t response_at = 0, state_at = 0;
  for (size_t i = mark; i < all.size(); ++i) {
    if (all[i].message.topic == h.topics.CommandResponse("l1") &&
        !response_at) {
      response_at = i;
    }
    if (all[i].message.topic == h.topics.State("l1") && !state_at) state_at = i;
  }
  CHECK(response_at < state_at);

  // Legacy flat payload, no id: applied, no response.
  mark = h.client.Mark();
  h.client.Deliver(h.topics.Command("l2"), R"({"level": 5})");
  REQUIRE(h.client
              .WaitFor(
                  h.topics.State("l2"),
                  [](const MqttMessage& m) {
                    return m.payload.find("\"level\":5") != std::string::npos;
                  },
                  absl::Seconds(5), mark)
              .has_value());
  CHECK(h.client.PublishedTo(h.topics.CommandResponse("l2")).empty());

  // "" from ApplyCommand: the SDK reads the device back.
  mark = h.client.Mark();
  h.client.Deliver(h.topics.Command("l2"),
                   h.Command("c-2", R"({"read_back":true})"));
  response = h.Response("l2", "c-2", mark);
  REQUIRE(response.has_value());
  CHECK(response->result == R"({"power":false,"level":5})");
}

TEST_CASE("Connector: stale, future and zoned timestamps",
          "[unit][connector]") {
  Harness h;
  h.client.Deliver(h.topics.Command("l1"),
                   h.Command("old", R"({"power":true})", absl::Seconds(42)));
  std::optional<CommandResponse> r = h.Response("l1", "old");
  REQUIRE(r.has_value());
  CHECK(r->status == ResultStatus::kError);
  CHECK(r->error_code == "STALE_COMMAND");
  CHECK(r->error == "command is 42 s old (limit 30 s)");

  h.client.Deliver(
      h.topics.Command("l1"),
      h.Command("future", R"({"power":true})", -absl::Seconds(10)));
  r = h.Response("l1", "future");
  REQUIRE(r.has_value());
  CHECK(r->error_code == "STALE_COMMAND");

  h.client.Deliver(h.topics.Command("l1"),
                   h.Command("skew", R"({"power":true})", -absl::Seconds(3)));
  r = h.Response("l1", "skew");
  REQUIRE(r.has_value());
  CHECK(r->status == ResultStatus::kSuccess);

  // The same instant written as local time with its offset is fresh.
  std::string local = absl::FormatTime("%Y-%m-%dT%H:%M:%S+02:00", h.clock.Now(),
                                       absl::FixedTimeZone(2 * 3600));
  h.client.Deliver(h.topics.Command("l1"),
                   absl::StrCat(R"({"id":"zoned","timestamp":")", local,
                                R"(","values":{"level":1}})"));
  r = h.Response("l1", "zoned");
  REQUIRE(r.has_value());
  CHECK(r->status == ResultStatus::kSuccess);

  // Unparsable timestamp, no id: an error on the device's error topic.
  h.client.Deliver(h.topics.Command("l1"),
                   R"({"timestamp":"yesterday","values":{"level":2}})");
  std::optional<ErrorMessage> e = h.Error("l1", "STALE_COMMAND");
  REQUIRE(e.has_value());
  CHECK(e->severity == ErrorSeverity::kWarning);
}

TEST_CASE("Connector: malformed, unknown and oversized requests",
          "[unit][connector]") {
  Harness h;
  h.client.Deliver(h.topics.Command("l1"), "{not json");
  std::optional<ErrorMessage> e = h.Error("l1", "INVALID_COMMAND");
  REQUIRE(e.has_value());
  CHECK(e->severity == ErrorSeverity::kWarning);

  h.client.Deliver(h.topics.Command("l1"), R"({"id":"v","values":[1,2]})");
  std::optional<CommandResponse> r = h.Response("l1", "v");
  REQUIRE(r.has_value());
  CHECK(r->error_code == "INVALID_COMMAND");

  h.client.Deliver(h.topics.Command("nope"), R"({"id":"u","values":{}})");
  r = h.Response("nope", "u");
  REQUIRE(r.has_value());
  CHECK(r->error_code == "UNKNOWN_DEVICE");
  h.client.Deliver(h.topics.Command("off"), R"({"id":"d","values":{}})");
  r = h.Response("off", "d");
  REQUIRE(r.has_value());
  CHECK(r->error_code == "UNKNOWN_DEVICE");
  CHECK(r->error == "device \"off\" is disabled");
  h.client.Deliver(h.topics.Command("nope"), R"({"values":{}})");
  REQUIRE(h.Error("nope", "UNKNOWN_DEVICE").has_value());

  h.client.DeliverOversized(h.topics.Command("l1"), 300 * 1024);
  e = h.Error("l1", "INVALID_COMMAND", 0);
  REQUIRE(h.client
              .WaitFor(h.topics.Error("l1"),
                       [](const MqttMessage& m) {
                         return m.payload.find("307200 bytes") !=
                                std::string::npos;
                       })
              .has_value());

  // Even when the client delivers the bytes, they are not parsed.
  h.client.Deliver(h.topics.Get("l2"), std::string(300 * 1024, ' '));
  REQUIRE(h.client
              .WaitFor(h.topics.Error("l2"),
                       [](const MqttMessage& m) {
                         return m.payload.find("307200 bytes exceeds") !=
                                std::string::npos;
                       })
              .has_value());

  // Values the connector rejects, unreachable device, a connector's code.
  h.client.Deliver(h.topics.Command("l1"),
                   h.Command("bad", R"({"level":500})"));
  r = h.Response("l1", "bad");
  REQUIRE(r.has_value());
  CHECK(r->error_code == "INVALID_COMMAND");
  h.client.Deliver(h.topics.Command("l1"), h.Command("un", R"({"unplug":1})"));
  r = h.Response("l1", "un");
  REQUIRE(r.has_value());
  CHECK(r->error_code == "DEVICE_OFFLINE");
  h.client.Deliver(h.topics.Command("l1"), h.Command("busy", R"({"busy":1})"));
  r = h.Response("l1", "busy");
  REQUIRE(r.has_value());
  CHECK(r->error_code == "BULB_BUSY");
  CHECK(r->error == "bulb is busy");
  h.client.Deliver(h.topics.Command("l1"), R"({"values":{"unplug":1}})");
  e = h.Error("l1", "DEVICE_OFFLINE");
  REQUIRE(e.has_value());
  CHECK(e->severity == ErrorSeverity::kError);

  // Topics the contract does not list and invalid ids.
  size_t mark = h.client.Mark();
  h.client.Deliver(h.topics.Command("l1") + "/extra", R"({"values":{}})");
  h.client.Deliver("IoT2mqtt/v1/instances/other/devices/l1/cmd", "{}");
  h.client.Deliver(h.topics.root() + "/devices/bad\x01id/cmd", "{}");
  std::optional<ErrorMessage> instance_error =
      h.Error("_instance", "INVALID_COMMAND", mark);
  REQUIRE(instance_error.has_value());
  CHECK(instance_error->message.find("ignored a message") != std::string::npos);
  // A retained request is not executed.
  h.client.Deliver(h.topics.Command("l1"), h.Command("ret", R"({"level":9})"),
                   /*retain=*/true);
  REQUIRE(h.client
              .WaitFor(h.topics.Error("_instance"),
                       [](const MqttMessage& m) {
                         return m.payload.find("retained") != std::string::npos;
                       })
              .has_value());
  CHECK(h.client.PublishedTo(h.topics.CommandResponse("l1")).size() == 4);
  // Nothing crashed: the connector still answers.
  h.client.Deliver(h.topics.Command("l1"),
                   h.Command("alive", R"({"level":3})"));
  REQUIRE(h.Response("l1", "alive").has_value());
}

TEST_CASE("Connector: get with and without properties", "[unit][connector]") {
  Harness h;
  h.client.Deliver(h.topics.Command("l1"),
                   h.Command("c", R"({"power":true,"level":40})"));
  REQUIRE(h.Response("l1", "c").has_value());
  // The command's state batch is complete (its last property topic).
  REQUIRE(h.client.WaitForCount(h.topics.StateProperty("l1", "level"), 2));

  size_t mark = h.client.Mark();
  h.client.Deliver(h.topics.Get("l1"),
                   R"({"properties":["level"],"id":"g-1"})");
  std::optional<MqttMessage> m = h.client.WaitFor(
      h.topics.GetResponse("l1"), nullptr, absl::Seconds(5), mark);
  REQUIRE(m.has_value());
  CHECK_FALSE(m->retain);
  absl::StatusOr<GetResponse> g = ParseGetResponsePayload(m->payload);
  REQUIRE(g.ok());
  CHECK(g->state == R"({"level":40})");
  CHECK(g->id == "g-1");
  // The retained full state is untouched.
  std::vector<FakeMqttClient::Published> after = h.client.published();
  for (size_t i = mark; i < after.size(); ++i) {
    CHECK(after[i].message.topic.find("/state") == std::string::npos);
  }

  // Without properties: the full state, retained, as usual; no response.
  mark = h.client.Mark();
  h.client.Deliver(h.topics.Get("l1"), "");
  m = h.client.WaitFor(h.topics.State("l1"), nullptr, absl::Seconds(5), mark);
  REQUIRE(m.has_value());
  CHECK(m->retain);
  CHECK(ParseStatePayload(m->payload)->state == R"({"power":true,"level":40})");

  // Unknown device: error topic, plus get/response because of the id.
  h.client.Deliver(h.topics.Get("ghost"), R"({"id":"g-2"})");
  REQUIRE(h.Error("ghost", "UNKNOWN_DEVICE").has_value());
  m = h.client.WaitFor(h.topics.GetResponse("ghost"));
  REQUIRE(m.has_value());
  g = ParseGetResponsePayload(m->payload);
  REQUIRE(g.ok());
  CHECK_FALSE(g->state.has_value());
  CHECK(g->error_code == "UNKNOWN_DEVICE");
  // Malformed properties.
  h.client.Deliver(h.topics.Get("l2"), R"({"properties":"level"})");
  REQUIRE(h.Error("l2", "INVALID_COMMAND").has_value());
}

TEST_CASE("Connector: group commands, one aggregated response",
          "[unit][connector]") {
  Harness h;
  size_t mark = h.client.Mark();
  h.client.Deliver(h.topics.GroupCommand("all"),
                   h.Command("g-1", R"({"power":true})"));
  std::optional<MqttMessage> m = h.client.WaitFor(
      h.topics.GroupCommandResponse("all"), nullptr, absl::Seconds(5), mark);
  REQUIRE(m.has_value());
  absl::StatusOr<GroupCommandResponse> r =
      ParseGroupCommandResponsePayload(m->payload);
  REQUIRE(r.ok());
  CHECK(r->cmd_id == "g-1");
  CHECK(r->status == ResultStatus::kPartial);
  REQUIRE(r->results.size() == 3);  // "off" is disabled: not targeted.
  CHECK(r->results[0].device_id == "l1");
  CHECK(r->results[0].success);
  CHECK(r->results[1].device_id == "l2");
  CHECK(r->results[1].success);
  CHECK(r->results[2].device_id == "ghost");
  CHECK(r->results[2].error_code == "UNKNOWN_DEVICE");
  // Every member that changed published its fresh state.
  CHECK(h.client
            .WaitFor(
                h.topics.State("l1"),
                [](const MqttMessage& m) {
                  return m.payload.find("\"power\":true") != std::string::npos;
                },
                absl::Seconds(5), mark)
            .has_value());
  CHECK(h.client
            .WaitFor(
                h.topics.State("l2"),
                [](const MqttMessage& m) {
                  return m.payload.find("\"power\":true") != std::string::npos;
                },
                absl::Seconds(5), mark)
            .has_value());
  CHECK(h.client.PublishedTo(h.topics.GroupCommandResponse("all")).size() == 1);

  h.client.Deliver(h.topics.GroupCommand("lamps"),
                   h.Command("g-2", R"({"level":10})"));
  REQUIRE(h.client
              .WaitFor(h.topics.GroupCommandResponse("lamps"),
                       [](const MqttMessage& m) {
                         auto r = ParseGroupCommandResponsePayload(m.payload);
                         return r.ok() && r->status == ResultStatus::kSuccess;
                       })
              .has_value());
  h.client.Deliver(h.topics.GroupCommand("lamps"),
                   h.Command("g-3", R"({"level":1000})"));
  REQUIRE(h.client
              .WaitFor(h.topics.GroupCommandResponse("lamps"),
                       [](const MqttMessage& m) {
                         auto r = ParseGroupCommandResponsePayload(m.payload);
                         return r.ok() && r->cmd_id == "g-3" &&
                                r->status == ResultStatus::kError;
                       })
              .has_value());

  h.client.Deliver(h.topics.GroupCommand("nope"), h.Command("g-4", "{}"));
  m = h.client.WaitFor(h.topics.GroupCommandResponse("nope"));
  REQUIRE(m.has_value());
  r = ParseGroupCommandResponsePayload(m->payload);
  REQUIRE(r.ok());
  CHECK(r->status == ResultStatus::kError);
  CHECK(r->error_code == "UNKNOWN_GROUP");
  h.client.Deliver(h.topics.GroupCommand("nope"), R"({"values":{}})");
  REQUIRE(h.Error("_instance", "UNKNOWN_GROUP").has_value());
  h.client.Deliver(h.topics.GroupCommand("lamps"),
                   h.Command("g-5", "{}", absl::Seconds(60)));
  REQUIRE(h.client
              .WaitFor(h.topics.GroupCommandResponse("lamps"),
                       [](const MqttMessage& m) {
                         auto r = ParseGroupCommandResponsePayload(m.payload);
                         return r.ok() && r->cmd_id == "g-5" &&
                                r->error_code == "STALE_COMMAND";
                       })
              .has_value());
  // No id: member failures go to the members' error topics.
  h.client.Deliver(h.topics.GroupCommand("lamps"),
                   R"({"values":{"unplug":1}})");
  REQUIRE(h.Error("l1", "DEVICE_OFFLINE").has_value());
  REQUIRE(h.Error("l2", "DEVICE_OFFLINE").has_value());
}

TEST_CASE("Connector: meta replies", "[unit][connector]") {
  Harness h;
  h.clock.Advance(absl::Seconds(42) + absl::Milliseconds(900));
  h.client.Deliver(h.topics.MetaRequest("info"), "");
  std::optional<MqttMessage> m = h.client.WaitFor(h.topics.Info());
  REQUIRE(m.has_value());
  CHECK(m->retain);
  CHECK(m->qos == 1);
  absl::StatusOr<InstanceInfo> info = ParseInfoPayload(m->payload);
  REQUIRE(info.ok());
  CHECK(info->instance_id == "home");
  CHECK(info->connector_type == "scripted");
  CHECK(info->devices_count == 3);
  CHECK(info->groups_count == 3);
  CHECK(info->uptime_seconds == 42);

  h.client.Deliver(h.topics.MetaRequest("devices_list"), "{}");
  m = h.client.WaitFor(h.topics.DevicesList());
  REQUIRE(m.has_value());
  CHECK(m->retain);
  absl::StatusOr<std::vector<DeviceListEntry>> list =
      ParseDevicesListPayload(m->payload);
  REQUIRE(list.ok());
  REQUIRE(list->size() == 3);
  CHECK((*list)[0].global_id == "home_l1");
  CHECK((*list)[0].model == "lamp");
  CHECK((*list)[0].online);
  CHECK((*list)[1].model == "unknown");
  CHECK_FALSE((*list)[2].enabled);
  CHECK_FALSE((*list)[2].online);

  h.client.Deliver(h.topics.MetaRequest("reboot"), "");
  REQUIRE(h.Error("_instance", "INVALID_COMMAND").has_value());
}

TEST_CASE(
    "Connector: a failing device gets UPDATE_ERROR, others keep going, "
    "it recovers",
    "[unit][connector]") {
  Harness h(R"({"update_interval": 0.1,
                "devices": [{"device_id": "l1"}, {"device_id": "l2"}]})");
  h.connector.SetFailing("l1", true);
  size_t mark = h.client.Mark();
  std::optional<ErrorMessage> first = h.Error("l1", "UPDATE_ERROR", mark);
  REQUIRE(first.has_value());
  CHECK(first->severity == ErrorSeverity::kWarning);
  REQUIRE(first->retry_info.has_value());
  CHECK(first->retry_info->attempt == 1);
  CHECK(first->retry_info->next_retry ==
        h.clock.Now() + absl::Milliseconds(100));
  CHECK(first->message.find("no answer") != std::string::npos);
  std::optional<MqttMessage> second =
      h.client.WaitFor(h.topics.Error("l1"), [](const MqttMessage& m) {
        auto e = ParseErrorPayload(m.payload);
        return e.ok() && e->retry_info.has_value() &&
               e->retry_info->attempt == 2;
      });
  REQUIRE(second.has_value());
  // Backoff: the second retry waits twice as long.
  CHECK(ParseErrorPayload(second->payload)->retry_info->next_retry ==
        h.clock.Now() + absl::Milliseconds(200));
  // The other device keeps its rhythm meanwhile.
  CHECK(h.client.WaitForCount(h.topics.State("l2"), 3, absl::Seconds(5), mark));
  h.client.Deliver(h.topics.MetaRequest("devices_list"), "");
  std::optional<MqttMessage> list = h.client.WaitFor(h.topics.DevicesList());
  REQUIRE(list.has_value());
  CHECK(ParseDevicesListPayload(list->payload).value()[0].online == false);

  h.connector.SetFailing("l1", false);
  mark = h.client.Mark();
  REQUIRE(
      h.client.WaitFor(h.topics.State("l1"), nullptr, absl::Seconds(5), mark)
          .has_value());
  h.client.Deliver(h.topics.MetaRequest("devices_list"), "");
  list =
      h.client.WaitFor(h.topics.DevicesList(), nullptr, absl::Seconds(5), mark);
  REQUIRE(list.has_value());
  CHECK(ParseDevicesListPayload(list->payload).value()[0].online == true);
}

TEST_CASE(
    "Connector: a blocked device stalls nobody else; late commands are "
    "not applied",
    "[unit][connector]") {
  Harness h(R"({"update_interval": 0.1,
                "devices": [{"device_id": "l1"}, {"device_id": "l2"}]})");
  h.connector.Block("l1");
  REQUIRE(h.connector.WaitBlocked("l1"));
  size_t mark = h.client.Mark();
  h.client.Deliver(
      h.topics.Command("l1"),
      BuildCommandPayload("late", h.clock.Now(), R"({"level":9})", 100));
  h.client.Deliver(
      h.topics.Command("l2"),
      BuildCommandPayload("fast", h.clock.Now(), R"({"level":8})", 100));
  std::optional<CommandResponse> fast = h.Response("l2", "fast", mark);
  REQUIRE(fast.has_value());
  CHECK(fast->status == ResultStatus::kSuccess);
  // l2 keeps polling every 100 ms while l1 hangs (>= 300 ms pass).
  CHECK(h.client.WaitForCount(h.topics.State("l2"), 4, absl::Seconds(5), mark));
  CHECK(h.client.PublishedTo(h.topics.CommandResponse("l1")).empty());
  h.connector.Unblock("l1");
  std::optional<CommandResponse> late = h.Response("l1", "late", mark);
  REQUIRE(late.has_value());
  CHECK(late->error_code == "DEVICE_OFFLINE");
  CHECK(late->error.find("not applied") != std::string::npos);
}

TEST_CASE("Connector: every reconnect re-publishes known state after online",
          "[unit][connector]") {
  Harness h;
  h.client.Disconnect();
  size_t mark = h.client.Mark();
  h.client.Connect();
  std::vector<FakeMqttClient::Published> all = h.client.published();
  REQUIRE(all.size() >= mark + 3);
  CHECK(all[mark].message.topic == h.topics.Status());
  CHECK(all[mark].message.payload == "online");
  std::set<std::string> republished;
  for (size_t i = mark + 1; i < all.size(); ++i) {
    if (all[i].message.topic == h.topics.State("l1") ||
        all[i].message.topic == h.topics.State("l2")) {
      republished.insert(all[i].message.topic);
      CHECK(all[i].message.retain);
    }
  }
  CHECK(republished.size() == 2);
}

TEST_CASE("Connector: event-driven publishing from any thread",
          "[unit][connector]") {
  Harness h;
  std::thread other([&] {
    CHECK(h.connector.PublishEvent("l1", "pressed", R"({"n": 1})").ok());
    CHECK(h.connector.PublishState("l1", R"({"power": true, "x": 0.1})").ok());
    CHECK(
        h.connector
            .PublishError("l1", "OVERHEAT", "too hot", ErrorSeverity::kCritical)
            .ok());
  });
  other.join();
  std::optional<MqttMessage> event = h.client.WaitFor(h.topics.Events("l1"));
  REQUIRE(event.has_value());
  CHECK_FALSE(event->retain);
  absl::StatusOr<EventMessage> e = ParseEventPayload(event->payload);
  REQUIRE(e.ok());
  CHECK(e->event == "pressed");
  CHECK(e->data == R"({"n":1})");
  REQUIRE(h.client
              .WaitFor(h.topics.State("l1"),
                       [](const MqttMessage& m) {
                         return m.payload.find("\"x\":0.1") !=
                                std::string::npos;
                       })
              .has_value());
  REQUIRE(h.Error("l1", "OVERHEAT").has_value());
  CHECK(absl::IsInvalidArgument(h.connector.PublishState("l1", "[1]")));
  CHECK(absl::IsInvalidArgument(h.connector.PublishState("a/b", "{}")));
  CHECK(absl::IsInvalidArgument(h.connector.PublishEvent("l1", "e", "{oops")));
}

TEST_CASE("Connector: push-only devices are not polled; RequestRefresh reads",
          "[unit][connector]") {
  Harness h(R"({"update_interval": 0.1,
                "devices": [{"device_id": "l1"},
                            {"device_id": "push", "poll": false}]})");
  REQUIRE(h.client.WaitForCount(h.topics.State("l1"), 3));
  CHECK(h.client.PublishedTo(h.topics.State("push")).empty());
  h.connector.RequestRefresh("push");
  REQUIRE(h.client.WaitFor(h.topics.State("push")).has_value());
  h.connector.RequestRefresh("not-a-device");  // Ignored.
  // Commands still reach it.
  h.client.Deliver(h.topics.Command("push"),
                   h.Command("p", R"({"power":true})"));
  std::optional<CommandResponse> r = h.Response("push", "p");
  REQUIRE(r.has_value());
  CHECK(r->status == ResultStatus::kSuccess);
}

TEST_CASE("Connector: graceful stop", "[unit][connector]") {
  Harness h;
  CHECK(h.Stop() == 0);
  CHECK(h.connector.stop_seen);
  CHECK(h.connector.cleaned_up);
  CHECK(h.connector.stopped_cleanly());
  CHECK(h.client.stopped());
  std::optional<MqttMessage> last = h.client.last_message();
  REQUIRE(last.has_value());
  CHECK(last->topic == h.topics.Status());
  CHECK(last->payload == "offline");
  CHECK(last->qos == 1);
  CHECK(last->retain);
  CHECK(absl::IsFailedPrecondition(h.connector.PublishState("l1", "{}")));
}

TEST_CASE("Connector: initialization failure", "[unit][connector]") {
  Harness h(kConfig, absl::Seconds(10), /*start=*/false);
  h.connector.set_init_status(absl::UnavailableError("hub unreachable"));
  ConnectorOptions options;
  options.config = ParseInstanceConfig(kConfig, "home", "").value();
  options.client = &h.client;
  options.clock = &h.clock;
  CHECK(h.connector.Run(options) == 1);
  std::optional<ErrorMessage> e = h.Error("_instance", "INIT_ERROR");
  REQUIRE(e.has_value());
  CHECK(e->severity == ErrorSeverity::kCritical);
  CHECK(e->message == "hub unreachable");
  CHECK(h.client.last_message()->payload == "offline");
  CHECK(h.client.PublishedTo(h.topics.State("l1")).empty());
}

TEST_CASE("Connector: a hook blocked at the stop deadline is abandoned",
          "[unit][connector]") {
  auto h = std::make_unique<Harness>(
      R"({"update_interval": 0.1, "devices": [{"device_id": "l1"}]})",
      absl::Milliseconds(1500));
  h->connector.Block("l1");
  REQUIRE(h->connector.WaitBlocked("l1"));
  h->client.Deliver(h->topics.Command("l1"),
                    BuildCommandPayload("queued", h->clock.Now(), "{}", 60000));
  absl::Time start = absl::Now();
  CHECK(h->Stop() == 0);
  CHECK(absl::Now() - start < absl::Seconds(3));
  CHECK_FALSE(h->connector.stopped_cleanly());
  CHECK_FALSE(h->connector.cleaned_up);
  CHECK(h->client.last_message()->payload == "offline");
  // The queued command was answered, not dropped.
  std::optional<CommandResponse> r = h->Response("l1", "queued");
  REQUIRE(r.has_value());
  CHECK(r->error_code == "DEVICE_OFFLINE");
  // Let the abandoned hook return before the connector goes away.
  int returned_before = h->connector.Returned("l1");
  h->connector.Unblock("l1");
  REQUIRE(h->connector.WaitReturned("l1", returned_before + 1));
  h.reset();
}

TEST_CASE("Connector: options are checked", "[unit][connector]") {
  ScriptedConnector connector;
  ConnectorOptions options;
  CHECK(connector.Run(options) == 2);  // No client.
  FakeMqttClient client;
  options.client = &client;
  options.config.instance_id = "bad/id";
  CHECK(connector.Run(options) == 2);
  CHECK(ErrorCodeOf(absl::InternalError("x"), "COMMAND_ERROR") ==
        "COMMAND_ERROR");
  CHECK(ErrorCodeOf(absl::DeadlineExceededError("x"), "C") == "DEVICE_OFFLINE");
  CHECK(ErrorCodeOf(WithErrorCode(absl::InternalError("x"), "MINE"), "C") ==
        "MINE");
}

}  // namespace
}  // namespace iot2mqtt::sdk
