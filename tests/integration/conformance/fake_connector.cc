// conformance_fake_connector: a connector written on raw libmosquitto for the
// conformance checker's own tests (not on the SDK, so the checker is tested
// against something it shares no contract code with). It follows
// docs/mqtt-contract.md, except for the defects named in FAKE_DEFECTS
// (comma-separated):
//
//   no-will                  connects without a last will
//   python-bool              property topics carry True/False/None
//   epoch-uptime             meta/info uptime is the Unix epoch
//   filtered-get-overwrites  a filtered get re-publishes the retained state
//                            with only the asked keys (upstream's bug)
//   accept-future            commands stamped in the future are accepted
//   silent-malformed         malformed commands are dropped without an error
//   no-offline-on-stop       SIGTERM disconnects without publishing offline
//   online-once              `online` only after the first connect, not
//                            after reconnects (upstream's bug)
//
// Environment: MQTT_HOST, MQTT_PORT, MQTT_BASE_TOPIC (IoT2mqtt),
// MQTT_KEEPALIVE (60, at least 5), INSTANCE_NAME (required), FAKE_DEFECTS.
// Devices: "lamp" and "plug"; group "all" holds both.

#include <mosquitto.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "rapidjson/document.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"
#include "sdk/conformance/timestamps.h"

namespace {

using ::iot2mqtt::conformance::FormatTimestampUtc;
using ::iot2mqtt::conformance::ParseTimestamp;

std::string Env(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

std::string Json(const rapidjson::Value& value) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  value.Accept(writer);
  return buffer.GetString();
}

class FakeConnector {
 public:
  FakeConnector() {
    instance_ = Env("INSTANCE_NAME", "");
    prefix_ = absl::StrCat(Env("MQTT_BASE_TOPIC", "IoT2mqtt"), "/v1/instances/",
                           instance_);
    for (absl::string_view d :
         absl::StrSplit(Env("FAKE_DEFECTS", ""), ',', absl::SkipEmpty())) {
      defects_.insert(std::string(d));
    }
    devices_["lamp"].Parse(
        R"({"power":true,"brightness":75,"name":"living room",)"
        R"("color":{"r":255,"g":160,"b":0},"scene":null})");
    devices_["plug"].Parse(R"({"power":false,"watts":0.5})");
    groups_["all"] = {"lamp", "plug"};
    started_ = absl::Now();
  }

  int Run() {
    if (instance_.empty()) {
      std::fprintf(stderr, "INSTANCE_NAME is required\n");
      return 2;
    }
    int port = 1883, keepalive = 60;
    if (!absl::SimpleAtoi(Env("MQTT_PORT", "1883"), &port) ||
        !absl::SimpleAtoi(Env("MQTT_KEEPALIVE", "60"), &keepalive)) {
      std::fprintf(stderr, "bad MQTT_PORT or MQTT_KEEPALIVE\n");
      return 2;
    }
    // SIGTERM/SIGINT are taken with sigwait below; the loop thread started
    // after this inherits the mask.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    mosquitto_lib_init();
    mosq_ =
        mosquitto_new(absl::StrCat("iot2mqtt_", instance_).c_str(), true, this);
    mosquitto_int_option(mosq_, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_callback_set(mosq_, [](mosquitto*, void* self, int rc) {
      if (rc == 0) static_cast<FakeConnector*>(self)->OnConnect();
    });
    mosquitto_message_callback_set(
        mosq_, [](mosquitto*, void* self, const mosquitto_message* m) {
          static_cast<FakeConnector*>(self)->OnMessage(m);
        });
    mosquitto_publish_callback_set(mosq_, [](mosquitto*, void* self, int mid) {
      auto* fake = static_cast<FakeConnector*>(self);
      absl::MutexLock lock(&fake->mu_);
      fake->acked_.insert(mid);
    });
    mosquitto_reconnect_delay_set(mosq_, 1, 30, true);
    if (!Has("no-will")) {
      mosquitto_will_set(mosq_, Topic("status").c_str(), 7, "offline", 1, true);
    }
    // libmosquitto refuses keepalives under 5 s.
    const int rc = mosquitto_connect_async(
        mosq_, Env("MQTT_HOST", "127.0.0.1").c_str(), port, keepalive);
    if (rc != MOSQ_ERR_SUCCESS) {
      std::fprintf(stderr, "connect: %s\n", mosquitto_strerror(rc));
      return 1;
    }
    mosquitto_loop_start(mosq_);

    int signal_number = 0;
    sigwait(&signals, &signal_number);
    if (!Has("no-offline-on-stop")) {
      int mid = 0;
      mosquitto_publish(mosq_, &mid, Topic("status").c_str(), 7, "offline", 1,
                        true);
      absl::MutexLock lock(&mu_);
      auto acked = [this, mid]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return acked_.count(mid) > 0;
      };
      mu_.AwaitWithTimeout(absl::Condition(&acked), absl::Seconds(5));
    }
    mosquitto_disconnect(mosq_);
    mosquitto_loop_stop(mosq_, false);
    mosquitto_destroy(mosq_);
    mosquitto_lib_cleanup();
    return 0;
  }

 private:
  bool Has(const char* defect) const { return defects_.count(defect) > 0; }
  std::string Topic(absl::string_view suffix) const {
    return absl::StrCat(prefix_, "/", suffix);
  }
  void Publish(const std::string& topic, const std::string& payload,
               bool retain) {
    mosquitto_publish(mosq_, nullptr, topic.c_str(),
                      static_cast<int>(payload.size()), payload.data(), 1,
                      retain);
  }

  void OnConnect() {
    for (const char* filter :
         {"devices/+/cmd", "devices/+/get", "groups/+/cmd", "meta/request/+"}) {
      mosquitto_subscribe(mosq_, nullptr, Topic(filter).c_str(), 1);
    }
    if (!Has("online-once") || !connected_before_) {
      Publish(Topic("status"), "online", true);
    }
    connected_before_ = true;
    for (const auto& [device, state] : devices_) PublishState(device, state);
  }

  std::string PropertyPayload(const rapidjson::Value& value) const {
    if (Has("python-bool")) {
      if (value.IsBool()) return value.GetBool() ? "True" : "False";
      if (value.IsNull()) return "None";
    }
    return Json(value);
  }

  void PublishState(const std::string& device, const rapidjson::Value& state) {
    rapidjson::Document doc(rapidjson::kObjectType);
    auto& a = doc.GetAllocator();
    doc.AddMember("timestamp",
                  rapidjson::Value(FormatTimestampUtc(absl::Now()).c_str(), a),
                  a);
    doc.AddMember("device_id", rapidjson::Value(device.c_str(), a), a);
    doc.AddMember("state", rapidjson::Value(state, a), a);
    const std::string base = Topic(absl::StrCat("devices/", device, "/state"));
    Publish(base, Json(doc), true);
    for (auto it = state.MemberBegin(); it != state.MemberEnd(); ++it) {
      Publish(absl::StrCat(base, "/", it->name.GetString()),
              PropertyPayload(it->value), true);
    }
  }

  // An error where the contract puts it: cmd/response with an id, else the
  // device's error topic.
  void Reject(const std::string& response_topic, const std::string& device,
              const std::string& id, const std::string& code,
              const std::string& message) {
    rapidjson::Document doc(rapidjson::kObjectType);
    auto& a = doc.GetAllocator();
    const std::string now = FormatTimestampUtc(absl::Now());
    if (!id.empty()) {
      doc.AddMember("cmd_id", rapidjson::Value(id.c_str(), a), a);
      doc.AddMember("status", "error", a);
      doc.AddMember("timestamp", rapidjson::Value(now.c_str(), a), a);
      doc.AddMember("error_code", rapidjson::Value(code.c_str(), a), a);
      doc.AddMember("error", rapidjson::Value(message.c_str(), a), a);
      Publish(response_topic, Json(doc), false);
      return;
    }
    doc.AddMember("timestamp", rapidjson::Value(now.c_str(), a), a);
    doc.AddMember("error_code", rapidjson::Value(code.c_str(), a), a);
    doc.AddMember("message", rapidjson::Value(message.c_str(), a), a);
    doc.AddMember("severity", "warning", a);
    Publish(Topic(absl::StrCat("devices/", device, "/error")), Json(doc),
            false);
  }

  void OnMessage(const mosquitto_message* m) {
    absl::string_view rest = m->topic;
    if (!absl::ConsumePrefix(&rest, prefix_ + "/")) return;
    std::vector<std::string> parts = absl::StrSplit(rest, '/');
    const std::string payload =
        m->payloadlen > 0
            ? std::string(static_cast<const char*>(m->payload), m->payloadlen)
            : "";
    if (parts.size() == 3 && parts[0] == "devices" && parts[2] == "cmd") {
      OnCommand(parts[1], payload);
    } else if (parts.size() == 3 && parts[0] == "devices" &&
               parts[2] == "get") {
      OnGet(parts[1], payload);
    } else if (parts.size() == 3 && parts[0] == "groups" && parts[2] == "cmd") {
      OnGroupCommand(parts[1], payload);
    } else if (parts.size() == 3 && parts[0] == "meta" &&
               parts[1] == "request") {
      OnMeta(parts[2]);
    }
  }

  // Parses a command; on failure fills code/message (and id when one can be
  // read) and returns false.
  bool ParseCommand(const std::string& payload, std::string* id,
                    rapidjson::Document* values, std::string* code,
                    std::string* message) {
    if (payload.size() > 256 * 1024) {
      *code = "INVALID_COMMAND";
      *message = "payload over 256 KiB";
      return false;
    }
    rapidjson::Document doc;
    doc.Parse(payload.c_str(), payload.size());
    if (doc.HasParseError() || !doc.IsObject()) {
      *code = "INVALID_COMMAND";
      *message = "payload is not a JSON object";
      return false;
    }
    if (doc.HasMember("id") && doc["id"].IsString())
      *id = doc["id"].GetString();
    values->SetObject();
    if (doc.HasMember("values")) {
      if (!doc["values"].IsObject()) {
        *code = "INVALID_COMMAND";
        *message = "values is not an object";
        return false;
      }
      values->CopyFrom(doc["values"], values->GetAllocator());
    } else {
      for (auto it = doc.MemberBegin(); it != doc.MemberEnd(); ++it) {
        const std::string key = it->name.GetString();
        if (key == "id" || key == "timestamp" || key == "timeout") continue;
        values->AddMember(rapidjson::Value(key.c_str(), values->GetAllocator()),
                          rapidjson::Value(it->value, values->GetAllocator()),
                          values->GetAllocator());
      }
    }
    if (doc.HasMember("timestamp")) {
      const auto& stamp = doc["timestamp"];
      auto parsed = stamp.IsString() ? ParseTimestamp(stamp.GetString())
                                     : absl::InvalidArgumentError("no string");
      const absl::Time now = absl::Now();
      if (!parsed.ok() || now - parsed->time > absl::Seconds(30) ||
          (!Has("accept-future") && parsed->time - now > absl::Seconds(5))) {
        *code = "STALE_COMMAND";
        *message = "command is stale or from the future";
        return false;
      }
    }
    return true;
  }

  // Applies `values` to a device; false (with a message) on an unknown key.
  bool Apply(const std::string& device, const rapidjson::Value& values,
             std::string* message) {
    rapidjson::Document& state = devices_[device];
    for (auto it = values.MemberBegin(); it != values.MemberEnd(); ++it) {
      if (!state.HasMember(it->name.GetString())) {
        *message = absl::StrCat("no property ", it->name.GetString());
        return false;
      }
    }
    for (auto it = values.MemberBegin(); it != values.MemberEnd(); ++it) {
      state[it->name.GetString()].CopyFrom(it->value, state.GetAllocator());
    }
    return true;
  }

  void OnCommand(const std::string& device, const std::string& payload) {
    const std::string response =
        Topic(absl::StrCat("devices/", device, "/cmd/response"));
    std::string id, code, message;
    rapidjson::Document values;
    if (!ParseCommand(payload, &id, &values, &code, &message)) {
      if (code == "INVALID_COMMAND" && Has("silent-malformed")) return;
      Reject(response, device, id, code, message);
      return;
    }
    if (devices_.count(device) == 0) {
      Reject(response, device, id, "UNKNOWN_DEVICE", "no such device");
      return;
    }
    if (!Apply(device, values, &message)) {
      Reject(response, device, id, "COMMAND_ERROR", message);
      return;
    }
    if (!id.empty()) {
      rapidjson::Document doc(rapidjson::kObjectType);
      auto& a = doc.GetAllocator();
      doc.AddMember("cmd_id", rapidjson::Value(id.c_str(), a), a);
      doc.AddMember("status", "success", a);
      doc.AddMember(
          "timestamp",
          rapidjson::Value(FormatTimestampUtc(absl::Now()).c_str(), a), a);
      doc.AddMember("result", rapidjson::Value(devices_[device], a), a);
      Publish(response, Json(doc), false);
    }
    PublishState(device, devices_[device]);
  }

  void OnGet(const std::string& device, const std::string& payload) {
    rapidjson::Document doc;
    doc.Parse(payload.empty() ? "{}" : payload.c_str());
    if (doc.HasParseError() || !doc.IsObject()) {
      Reject("", device, "", "INVALID_COMMAND", "get payload is not an object");
      return;
    }
    if (devices_.count(device) == 0) {
      Reject("", device, "", "UNKNOWN_DEVICE", "no such device");
      if (doc.HasMember("id") && doc["id"].IsString()) {
        rapidjson::Document reply(rapidjson::kObjectType);
        auto& a = reply.GetAllocator();
        reply.AddMember(
            "timestamp",
            rapidjson::Value(FormatTimestampUtc(absl::Now()).c_str(), a), a);
        reply.AddMember("device_id", rapidjson::Value(device.c_str(), a), a);
        reply.AddMember("id", rapidjson::Value(doc["id"].GetString(), a), a);
        reply.AddMember("error_code", "UNKNOWN_DEVICE", a);
        reply.AddMember("error", "no such device", a);
        Publish(Topic(absl::StrCat("devices/", device, "/get/response")),
                Json(reply), false);
      }
      return;
    }
    const rapidjson::Document& state = devices_[device];
    if (!doc.HasMember("properties") || !doc["properties"].IsArray()) {
      PublishState(device, state);
      return;
    }
    rapidjson::Document reply(rapidjson::kObjectType);
    auto& a = reply.GetAllocator();
    rapidjson::Value subset(rapidjson::kObjectType);
    for (const auto& key : doc["properties"].GetArray()) {
      if (key.IsString() && state.HasMember(key.GetString())) {
        subset.AddMember(rapidjson::Value(key.GetString(), a),
                         rapidjson::Value(state[key.GetString()], a), a);
      }
    }
    if (Has("filtered-get-overwrites")) PublishState(device, subset);
    reply.AddMember(
        "timestamp",
        rapidjson::Value(FormatTimestampUtc(absl::Now()).c_str(), a), a);
    reply.AddMember("device_id", rapidjson::Value(device.c_str(), a), a);
    reply.AddMember("state", subset, a);
    if (doc.HasMember("id") && doc["id"].IsString()) {
      reply.AddMember("id", rapidjson::Value(doc["id"].GetString(), a), a);
    }
    Publish(Topic(absl::StrCat("devices/", device, "/get/response")),
            Json(reply), false);
  }

  void OnGroupCommand(const std::string& group, const std::string& payload) {
    const std::string response =
        Topic(absl::StrCat("groups/", group, "/cmd/response"));
    std::string id, code, message;
    rapidjson::Document values;
    if (!ParseCommand(payload, &id, &values, &code, &message)) {
      Reject(response, "_instance", id, code, message);
      return;
    }
    auto it = groups_.find(group);
    if (it == groups_.end()) {
      Reject(response, "_instance", id, "UNKNOWN_GROUP", "no such group");
      return;
    }
    rapidjson::Document doc(rapidjson::kObjectType);
    auto& a = doc.GetAllocator();
    rapidjson::Value results(rapidjson::kObjectType);
    int ok = 0, failed = 0;
    for (const std::string& member : it->second) {
      rapidjson::Value result(rapidjson::kObjectType);
      std::string why;
      if (Apply(member, values, &why)) {
        ++ok;
        result.AddMember("status", "success", a);
        PublishState(member, devices_[member]);
      } else {
        ++failed;
        result.AddMember("status", "error", a);
        result.AddMember("error_code", "COMMAND_ERROR", a);
        result.AddMember("error", rapidjson::Value(why.c_str(), a), a);
      }
      results.AddMember(rapidjson::Value(member.c_str(), a), result, a);
    }
    if (id.empty()) return;
    doc.AddMember("cmd_id", rapidjson::Value(id.c_str(), a), a);
    const char* status = failed == 0 ? "success"
                         : ok == 0   ? "error"
                                     : "partial";
    doc.AddMember("status", rapidjson::StringRef(status), a);
    doc.AddMember("timestamp",
                  rapidjson::Value(FormatTimestampUtc(absl::Now()).c_str(), a),
                  a);
    doc.AddMember("results", results, a);
    Publish(response, Json(doc), false);
  }

  void OnMeta(const std::string& type) {
    rapidjson::Document doc;
    auto& a = doc.GetAllocator();
    if (type == "devices_list") {
      doc.SetArray();
      for (const auto& [device, state] : devices_) {
        rapidjson::Value entry(rapidjson::kObjectType);
        entry.AddMember("device_id", rapidjson::Value(device.c_str(), a), a);
        entry.AddMember(
            "global_id",
            rapidjson::Value(absl::StrCat(instance_, "_", device).c_str(), a),
            a);
        entry.AddMember("model", "fake", a);
        entry.AddMember("enabled", true, a);
        entry.AddMember("online", true, a);
        doc.PushBack(entry, a);
      }
      Publish(Topic("meta/devices_list"), Json(doc), true);
    } else if (type == "info") {
      doc.SetObject();
      doc.AddMember("instance_id", rapidjson::Value(instance_.c_str(), a), a);
      doc.AddMember("connector_type", "fake", a);
      doc.AddMember("devices_count", static_cast<int>(devices_.size()), a);
      doc.AddMember("groups_count", static_cast<int>(groups_.size()), a);
      doc.AddMember("uptime",
                    Has("epoch-uptime")
                        ? static_cast<int64_t>(std::time(nullptr))
                        : absl::ToInt64Seconds(absl::Now() - started_),
                    a);
      Publish(Topic("meta/info"), Json(doc), true);
    } else {
      Reject("", "_instance", "", "INVALID_COMMAND", "unknown meta request");
    }
  }

  std::string instance_;
  std::string prefix_;
  std::set<std::string> defects_;
  std::map<std::string, rapidjson::Document> devices_;
  std::map<std::string, std::vector<std::string>> groups_;
  absl::Time started_;
  bool connected_before_ = false;
  mosquitto* mosq_ = nullptr;
  absl::Mutex mu_;
  std::set<int> acked_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

int main() {
  FakeConnector fake;
  return fake.Run();
}
