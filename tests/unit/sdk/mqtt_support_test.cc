// The pieces under the MQTT client: outbound queue, backoff, settings from
// the environment and the .env file, status mapping.

#include <mosquitto.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "catch2/catch.hpp"
#include "iot2mqtt/sdk/backoff.h"
#include "iot2mqtt/sdk/dotenv.h"
#include "iot2mqtt/sdk/env.h"
#include "iot2mqtt/sdk/mqtt_client.h"
#include "iot2mqtt/sdk/outbound_queue.h"

namespace iot2mqtt::sdk {
namespace {

MqttMessage Msg(const std::string& topic, const std::string& payload = "x",
                bool retain = false) {
  return MqttMessage{topic, payload, 1, retain};
}

std::vector<std::string> Topics(const std::vector<OutboundMessage>& items) {
  std::vector<std::string> out;
  for (const auto& item : items) out.push_back(item.message.topic);
  return out;
}

TEST_CASE("OutboundQueue: keeps order and drops state first", "[unit][mqtt]") {
  OutboundQueue queue({/*max_messages=*/4, /*max_bytes=*/1 << 20});
  std::vector<OutboundMessage> dropped;
  queue.Push(Msg("s1"), MessageClass::kState, &dropped);
  queue.Push(Msg("r1"), MessageClass::kResponse, &dropped);
  queue.Push(Msg("n1"), MessageClass::kNormal, &dropped);
  queue.Push(Msg("s2"), MessageClass::kState, &dropped);
  CHECK(dropped.empty());
  queue.Push(Msg("r2"), MessageClass::kResponse, &dropped);  // s1 goes.
  queue.Push(Msg("r3"), MessageClass::kResponse, &dropped);  // s2 goes.
  queue.Push(Msg("r4"), MessageClass::kResponse, &dropped);  // n1 goes.
  CHECK(Topics(dropped) == std::vector<std::string>{"s1", "s2", "n1"});
  dropped.clear();
  queue.Push(Msg("r5"), MessageClass::kResponse, &dropped);  // Last resort.
  CHECK(Topics(dropped) == std::vector<std::string>{"r1"});
  CHECK(queue.size() == 4);
  CHECK(Topics(queue.TakeAll()) ==
        std::vector<std::string>{"r2", "r3", "r4", "r5"});
  CHECK(queue.empty());
  CHECK(queue.bytes() == 0);
}

TEST_CASE("OutboundQueue: a retained state replaces the queued one",
          "[unit][mqtt]") {
  OutboundQueue queue({100, 1 << 20});
  queue.Push(Msg("d1/state", "old", true), MessageClass::kState);
  queue.Push(Msg("d2/state", "a", true), MessageClass::kState);
  queue.Push(Msg("ev", "e"), MessageClass::kNormal);
  queue.Push(Msg("d1/state", "new", true), MessageClass::kState);
  queue.Push(Msg("d3/state", "q0", false), MessageClass::kState);
  queue.Push(Msg("d3/state", "q1", false), MessageClass::kState);
  std::vector<OutboundMessage> all = queue.TakeAll();
  CHECK(Topics(all) == std::vector<std::string>{"d2/state", "ev", "d1/state",
                                                "d3/state", "d3/state"});
  CHECK(all[2].message.payload == "new");
}

TEST_CASE("OutboundQueue: in-flight messages go back to the front",
          "[unit][mqtt]") {
  OutboundQueue queue({100, 1 << 20});
  queue.Push(Msg("d1/state", "newer", true), MessageClass::kState);
  queue.Push(Msg("q1"), MessageClass::kNormal);
  std::vector<OutboundMessage> inflight = {
      {Msg("f1"), MessageClass::kResponse},
      {Msg("d1/state", "older", true), MessageClass::kState},
      {Msg("f2"), MessageClass::kNormal}};
  queue.PushFront(inflight);
  std::vector<OutboundMessage> all = queue.TakeAll();
  // The older retained state is superseded by the queued newer one.
  CHECK(Topics(all) == std::vector<std::string>{"f1", "f2", "d1/state", "q1"});
  CHECK(all[2].message.payload == "newer");
}

TEST_CASE("OutboundQueue: byte limit", "[unit][mqtt]") {
  OutboundQueue queue({1000, 1000});
  std::vector<OutboundMessage> dropped;
  queue.Push(Msg("a", std::string(500, 'x')), MessageClass::kNormal, &dropped);
  queue.Push(Msg("b", std::string(500, 'x')), MessageClass::kNormal, &dropped);
  CHECK(Topics(dropped) == std::vector<std::string>{"a"});
  dropped.clear();
  queue.Push(Msg("huge", std::string(5000, 'x')), MessageClass::kResponse,
             &dropped);
  CHECK(Topics(dropped) == std::vector<std::string>{"b", "huge"});
  CHECK(queue.empty());
}

TEST_CASE("Backoff: 0.5 s doubling to 30 s, jitter below the ceiling",
          "[unit][mqtt]") {
  Backoff backoff(absl::Milliseconds(500), absl::Seconds(30), 2.0, 0.25, 42);
  std::vector<double> ceilings;
  for (int i = 0; i < 10; ++i) {
    absl::Duration ceiling = backoff.Ceiling();
    absl::Duration delay = backoff.Next();
    CHECK(delay <= ceiling);
    CHECK(delay >= ceiling * 0.75);
    ceilings.push_back(absl::ToDoubleSeconds(ceiling));
  }
  CHECK(ceilings == std::vector<double>{0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30});
  backoff.Reset();
  CHECK(backoff.Ceiling() == absl::Milliseconds(500));
  // Not every delay is the same (jitter).
  Backoff a(absl::Seconds(1), absl::Seconds(1), 2.0, 0.25, 1);
  bool differs = false;
  absl::Duration first = a.Next();
  for (int i = 0; i < 20; ++i) differs = differs || a.Next() != first;
  CHECK(differs);
}

TEST_CASE("MqttSettings: defaults", "[unit][mqtt]") {
  MapEnv env;
  EnvReader reader(env);
  MqttSettings s = ReadMqttSettings(reader);
  REQUIRE(reader.Finish().ok());
  CHECK(s.host == "localhost");
  CHECK(s.port == 1883);
  CHECK(s.username.empty());
  CHECK(s.client_prefix == "iot2mqtt");
  CHECK(s.qos == 1);
  CHECK(s.retain);
  CHECK(s.keepalive_seconds == 60);
  CHECK(s.base_topic == "IoT2mqtt");
  CHECK(MqttClientId(s, "living") == "iot2mqtt_living");
}

TEST_CASE("MqttSettings: values and every problem at once", "[unit][mqtt]") {
  MapEnv good({{"MQTT_HOST", "broker"},
               {"MQTT_PORT", "8883"},
               {"MQTT_USERNAME", "u"},
               {"MQTT_PASSWORD", "p"},
               {"MQTT_CLIENT_PREFIX", "x"},
               {"MQTT_QOS", "0"},
               {"MQTT_RETAIN", "false"},
               {"MQTT_KEEPALIVE", "30"},
               {"MQTT_BASE_TOPIC", "home/iot"}});
  EnvReader reader(good);
  MqttSettings s = ReadMqttSettings(reader);
  REQUIRE(reader.Finish().ok());
  CHECK(s.host == "broker");
  CHECK(s.port == 8883);
  CHECK(s.password == "p");
  CHECK(s.qos == 0);
  CHECK_FALSE(s.retain);
  CHECK(s.keepalive_seconds == 30);
  CHECK(s.base_topic == "home/iot");
  CHECK(MqttClientId(s, "i") == "x_i");

  MapEnv bad({{"MQTT_PORT", "0"},
              {"MQTT_QOS", "3"},
              {"MQTT_RETAIN", "maybe"},
              {"MQTT_KEEPALIVE", "2"},
              {"MQTT_BASE_TOPIC", "a/#"},
              {"MQTT_PASSWORD", "s3cret"}});
  EnvReader bad_reader(bad);
  ReadMqttSettings(bad_reader);
  absl::Status status = bad_reader.Finish();
  REQUIRE_FALSE(status.ok());
  std::string message(status.message());
  CHECK(message.find("MQTT_PORT") != std::string::npos);
  CHECK(message.find("MQTT_QOS") != std::string::npos);
  CHECK(message.find("MQTT_RETAIN") != std::string::npos);
  CHECK(message.find("MQTT_KEEPALIVE") != std::string::npos);
  CHECK(message.find("MQTT_BASE_TOPIC") != std::string::npos);
  CHECK(message.find("s3cret") == std::string::npos);
}

TEST_CASE("DotEnv: upstream format, quotes, export; environment wins",
          "[unit][mqtt]") {
  MapEnv file = ParseDotEnv(
      "# IoT2MQTT Configuration\n"
      "\n"
      "MQTT_HOST = broker.local \n"
      "MQTT_PASSWORD=a=b#c\n"
      "export MQTT_USERNAME=\"user name\"\n"
      "MQTT_CLIENT_PREFIX='pre'\n"
      "not a line\n"
      "=nokey\n"
      "MQTT_PORT=1884\r\n");
  CHECK(file.Get("MQTT_HOST") == "broker.local");
  CHECK(file.Get("MQTT_PASSWORD") == "a=b#c");
  CHECK(file.Get("MQTT_USERNAME") == "user name");
  CHECK(file.Get("MQTT_CLIENT_PREFIX") == "pre");
  CHECK(file.Get("MQTT_PORT") == "1884");
  CHECK_FALSE(file.Get("not a line").has_value());

  MapEnv process({{"MQTT_HOST", "from-env"}});
  LayeredEnv env(process, file);
  EnvReader reader(env);
  MqttSettings s = ReadMqttSettings(reader);
  REQUIRE(reader.Finish().ok());
  CHECK(s.host == "from-env");
  CHECK(s.port == 1884);
  CHECK(s.username == "user name");
}

TEST_CASE("DotEnv: IOT2MQTT_ENV_FILE", "[unit][mqtt]") {
  char name[] = "/tmp/iot2mqtt-env-XXXXXX";
  int fd = mkstemp(name);
  REQUIRE(fd >= 0);
  close(fd);
  std::string path = name;
  {
    std::ofstream out(path);
    out << "MQTT_HOST=filehost\n";
  }
  MapEnv named({{"IOT2MQTT_ENV_FILE", path}});
  absl::StatusOr<MapEnv> loaded = LoadEnvFile(named);
  REQUIRE(loaded.ok());
  CHECK(loaded->Get("MQTT_HOST") == "filehost");
  std::remove(path.c_str());
  // Named explicitly but missing: an error that names the variable.
  absl::StatusOr<MapEnv> missing = LoadEnvFile(named);
  REQUIRE_FALSE(missing.ok());
  CHECK(std::string(missing.status().message()).find("IOT2MQTT_ENV_FILE") !=
        std::string::npos);
  CHECK(absl::IsNotFound(ReadDotEnv("/nonexistent/.env").status()));
}

TEST_CASE("FromMosquitto: actionable codes with libmosquitto's text",
          "[unit][mqtt]") {
  CHECK(FromMosquitto(MOSQ_ERR_SUCCESS).ok());
  absl::Status s = FromMosquitto(MOSQ_ERR_NO_CONN, "publish");
  CHECK(absl::IsUnavailable(s));
  CHECK(s.message() ==
        std::string("publish: ") + mosquitto_strerror(MOSQ_ERR_NO_CONN));
  CHECK(absl::IsInvalidArgument(FromMosquitto(MOSQ_ERR_INVAL)));
  CHECK(absl::IsInvalidArgument(FromMosquitto(MOSQ_ERR_PAYLOAD_SIZE)));
  CHECK(absl::IsUnavailable(FromMosquitto(MOSQ_ERR_CONN_LOST)));
  CHECK(absl::IsUnauthenticated(FromMosquitto(MOSQ_ERR_AUTH)));
  CHECK(absl::IsPermissionDenied(FromMosquitto(MOSQ_ERR_ACL_DENIED)));
  CHECK(absl::IsResourceExhausted(FromMosquitto(MOSQ_ERR_NOMEM)));
  CHECK(absl::IsDeadlineExceeded(FromMosquitto(MOSQ_ERR_TIMEOUT)));
  errno = ECONNREFUSED;
  absl::Status e = FromMosquitto(MOSQ_ERR_ERRNO);
  CHECK(std::string(e.message()).find("refused") != std::string::npos);
}

}  // namespace
}  // namespace iot2mqtt::sdk
