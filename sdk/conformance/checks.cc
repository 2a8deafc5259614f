#include "sdk/conformance/checks.h"

#include <signal.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "rapidjson/document.h"
#include "sdk/conformance/payloads.h"
#include "sdk/conformance/session.h"
#include "sdk/conformance/timestamps.h"

namespace iot2mqtt::conformance {
namespace {

Verdict Pass(std::string detail) { return {Outcome::kPass, std::move(detail)}; }
Verdict Fail(std::string detail) { return {Outcome::kFail, std::move(detail)}; }
Verdict Skip(std::string detail) { return {Outcome::kSkip, std::move(detail)}; }
Verdict Fail(const absl::Status& status) {
  return Fail(std::string(status.message()));
}

std::string Ms(absl::Duration d) {
  return absl::StrCat(absl::ToInt64Milliseconds(d), " ms");
}

std::string Within(const Session& s) {
  return absl::StrCat("within ", absl::FormatDuration(s.options().timeout));
}

// The checks that exercise a device skip when there is none (state-shape
// reports that as its failure).
#define IOT2MQTT_NEED_DEVICE(s)                                               \
  do {                                                                        \
    absl::Status resolved_ = (s).ResolveDevice();                             \
    if (!resolved_.ok()) {                                                    \
      return Skip(                                                            \
          absl::StrCat("no device to exercise (", resolved_.message(), ")")); \
    }                                                                         \
  } while (0)

// error_code of an error payload, "" when it has none.
std::string ErrorCodeOf(absl::string_view payload) {
  rapidjson::Document doc;
  if (!ParseJson(payload, &doc).ok() || !doc.IsObject()) return "";
  auto it = doc.FindMember("error_code");
  if (it == doc.MemberEnd() || !it->value.IsString()) return "";
  return it->value.GetString();
}

// A retained copy of `topic` that passes `validate`, as a new subscriber
// would get it.
absl::Status ExpectRetained(
    Session& s, const std::string& topic,
    const std::function<absl::Status(const std::string&)>& validate) {
  absl::StatusOr<std::optional<Message>> retained = s.ReadRetained(topic);
  if (!retained.ok()) return retained.status();
  if (!retained->has_value()) {
    return absl::NotFoundError(absl::StrCat("a new subscriber to ", topic,
                                            " gets no retained message"));
  }
  absl::Status valid = validate((*retained)->payload);
  if (!valid.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("retained ", topic, ": ", valid.message()));
  }
  return absl::OkStatus();
}

// Sends `meta/request/{type}` and waits for the reply on `meta/{reply}`.
absl::StatusOr<Message> MetaExchange(Session& s, absl::string_view type,
                                     absl::string_view reply) {
  const std::string reply_topic = s.Topic(absl::StrCat("meta/", reply));
  const size_t from = s.probe().Mark();
  absl::Status sent =
      s.Send(s.Topic(absl::StrCat("meta/request/", type)), "{}");
  if (!sent.ok()) return sent;
  std::optional<Message> m = s.Await(
      from, [&](const Message& m) { return m.topic == reply_topic; },
      s.Deadline());
  if (!m.has_value()) {
    return absl::DeadlineExceededError(absl::StrCat(
        "no ", reply_topic, " after meta/request/", type, " ", Within(s)));
  }
  if (m->qos < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(reply_topic, " came at QoS 0, expected QoS 1"));
  }
  return *m;
}

// Sends a command with the device's command values and `timestamp`, and
// expects an error response with `code`.
Verdict ExpectRejected(Session& s, absl::string_view timestamp,
                       absl::string_view what) {
  IOT2MQTT_NEED_DEVICE(s);
  absl::StatusOr<std::string> values = s.CommandValues();
  if (!values.ok()) return Fail(values.status());
  const std::string id = s.NewId("cmd");
  absl::Time sent;
  absl::StatusOr<Message> reply = s.CommandRoundTrip(
      s.device(), Session::Command(id, timestamp, *values), id, &sent);
  if (!reply.ok()) return Fail(reply.status());
  rapidjson::Document doc;
  absl::Status status =
      CheckCommandResponse(reply->payload, id, "error", "STALE_COMMAND", true,
                           FreshSince(sent), &doc);
  if (!status.ok()) {
    return Fail(absl::StrCat("a command ", what, ": ", status.message()));
  }
  return Pass(absl::StrCat("a command ", what,
                           " was answered with error STALE_COMMAND"));
}

// A valid command still gets a success response (the connector is alive
// and answering).
absl::Status StillAnswers(Session& s) {
  absl::StatusOr<std::string> values = s.CommandValues();
  if (!values.ok()) return values.status();
  const std::string id = s.NewId("cmd");
  absl::Time sent;
  absl::StatusOr<Message> reply = s.CommandRoundTrip(
      s.device(),
      Session::Command(id, FormatTimestampUtc(absl::Now()), *values), id,
      &sent);
  if (!reply.ok()) {
    return absl::UnavailableError(
        absl::StrCat("a valid command afterwards got no answer: ",
                     reply.status().message()));
  }
  rapidjson::Document doc;
  absl::Status status = CheckCommandResponse(reply->payload, id, "success", "",
                                             true, FreshSince(sent), &doc);
  if (!status.ok()) {
    return absl::UnavailableError(
        absl::StrCat("a valid command afterwards: ", status.message()));
  }
  return absl::OkStatus();
}

}  // namespace

Verdict CheckStatusOnline(Session& s) {
  const std::string topic = s.Topic("status");
  std::string last = "nothing";
  std::optional<Message> online = s.Await(
      0,
      [&](const Message& m) {
        if (m.topic != topic) return false;
        last = absl::StrCat(Shorten(m.payload), m.retain ? " (retained)" : "");
        return m.payload == "online";
      },
      s.Deadline());
  if (!online.has_value()) {
    return Fail(absl::StrCat("expected `online` on ", topic, " ", Within(s),
                             ", got ", last));
  }
  if (online->qos < 1) {
    return Fail("`online` came at QoS 0, expected QoS 1");
  }
  if (!online->retain) {
    absl::Status retained = ExpectRetained(s, topic, [](const std::string& p) {
      return p == "online" ? absl::OkStatus()
                           : absl::InvalidArgumentError(absl::StrCat(
                                 Shorten(p), ", expected `online`"));
    });
    if (!retained.ok()) {
      return Fail(
          absl::StrCat("`online` was published but ", retained.message()));
    }
  }
  return Pass(
      absl::StrCat("retained `online` on ", topic, " at QoS ", online->qos));
}

Verdict CheckStateShape(Session& s) {
  absl::Status resolved = s.ResolveDevice();
  if (!resolved.ok()) return Fail(resolved);
  const Message& m = s.first_state();
  if (!IsValidId(s.device())) {
    return Fail(absl::StrCat("device id \"", s.device(), "\" in ", m.topic,
                             " is not a valid id"));
  }
  rapidjson::Document doc;
  absl::Status status =
      CheckStatePayload(m.payload, s.device(), NotInFuture(), &doc);
  if (!status.ok()) return Fail(absl::StrCat(m.topic, ": ", status.message()));
  if (!m.retain) {
    status = ExpectRetained(s, m.topic, [&](const std::string& p) {
      rapidjson::Document again;
      return CheckStatePayload(p, s.device(), NotInFuture(), &again);
    });
    if (!status.ok()) return Fail(status);
  }
  return Pass(absl::StrCat("device \"", s.device(), "\": retained state with ",
                           doc["state"].MemberCount(), " keys [",
                           absl::StrJoin(Keys(doc["state"]), ","),
                           "], timestamp ", doc["timestamp"].GetString()));
}

Verdict CheckPropertyTopics(Session& s) {
  IOT2MQTT_NEED_DEVICE(s);
  rapidjson::Document latest;
  absl::Status status = s.LatestState(&latest);
  if (!status.ok()) return Fail(status);
  const std::vector<std::string> keys = Keys(latest);
  if (keys.empty()) return Pass("the state has no keys, so no property topics");
  const std::string state_topic = s.DeviceTopic("state");
  const std::string property_prefix = state_topic + "/";
  const size_t from = s.probe().Mark();
  status = s.probe().Subscribe({property_prefix + "+"}, s.Deadline());
  if (!status.ok()) return Fail(status);
  // A get makes the connector publish a fresh batch (state and properties),
  // so this also works when state is not retained.
  status = s.Send(s.DeviceTopic("get"), "{}");
  if (!status.ok()) return Fail(status);

  std::vector<std::unique_ptr<rapidjson::Document>> states;
  std::map<std::string, std::vector<std::unique_ptr<rapidjson::Document>>>
      properties;
  std::map<std::string, std::string> last_text;
  std::vector<std::string> invalid;
  auto matched = [&](const std::string& key) {
    for (const auto& property : properties[key]) {
      for (const auto& state : states) {
        auto it = (*state)["state"].FindMember(key.c_str());
        if (it != (*state)["state"].MemberEnd() && it->value == *property) {
          return true;
        }
      }
    }
    return false;
  };
  const absl::Time deadline = s.Deadline();
  size_t cursor = 0;
  bool all = false;
  while (!all && invalid.empty()) {
    const size_t index = cursor;
    std::optional<Message> m = s.probe().Next(&cursor, deadline);
    if (!m.has_value()) break;
    if (m->topic == state_topic) {
      auto doc = std::make_unique<rapidjson::Document>();
      if (ParseJson(m->payload, doc.get()).ok() && doc->IsObject() &&
          doc->HasMember("state") && (*doc)["state"].IsObject()) {
        states.push_back(std::move(doc));
      }
    } else if (index >= from && absl::StartsWith(m->topic, property_prefix)) {
      const std::string key = m->topic.substr(property_prefix.size());
      auto doc = std::make_unique<rapidjson::Document>();
      last_text[key] = m->payload;
      if (!ParseJson(m->payload, doc.get()).ok()) {
        invalid.push_back(absl::StrCat("state/", key, " carried ",
                                       Shorten(m->payload), ", not JSON"));
      } else {
        properties[key].push_back(std::move(doc));
      }
    }
    all = std::all_of(keys.begin(), keys.end(), matched);
  }
  if (!invalid.empty()) return Fail(absl::StrJoin(invalid, "; "));
  if (all) {
    return Pass(absl::StrCat("state/{", absl::StrJoin(keys, ","),
                             "} each carry the JSON value of the state key"));
  }
  std::vector<std::string> problems;
  for (const std::string& key : keys) {
    if (matched(key)) continue;
    if (last_text.count(key) == 0) {
      problems.push_back(absl::StrCat("no message on state/", key));
    } else {
      auto it = latest.FindMember(key.c_str());
      problems.push_back(absl::StrCat(
          "state/", key, " carried ", Shorten(last_text[key]), ", state has ",
          it == latest.MemberEnd() ? "no such key" : JsonText(it->value)));
    }
  }
  return Fail(absl::StrCat(absl::StrJoin(problems, "; "), " (", Within(s),
                           " of a get)"));
}

Verdict CheckMetaDevicesList(Session& s) {
  const std::string device = s.ResolveDevice().ok() ? s.device() : "";
  absl::StatusOr<Message> reply =
      MetaExchange(s, "devices_list", "devices_list");
  if (!reply.ok()) return Fail(reply.status());
  size_t count = 0;
  auto validate = [&](const std::string& payload) {
    return CheckDevicesList(payload, s.options().instance, device, &count);
  };
  absl::Status status = validate(reply->payload);
  if (!status.ok()) {
    return Fail(absl::StrCat(reply->topic, ": ", status.message()));
  }
  status = ExpectRetained(s, reply->topic, validate);
  if (!status.ok()) return Fail(status);
  return Pass(absl::StrCat(count,
                           " devices, global_id = ", s.options().instance,
                           "_<device>, retained at QoS ", reply->qos));
}

Verdict CheckMetaInfo(Session& s) {
  // An integer of seconds since start: bounded by the process age when the
  // pid is known, else by ten years (an epoch is far beyond either).
  int64_t max_uptime = int64_t{10} * 365 * 24 * 3600;
  std::string bound = "ten years";
  const absl::Time asked = absl::Now();
  absl::StatusOr<Message> reply = MetaExchange(s, "info", "info");
  if (!reply.ok()) return Fail(reply.status());
  if (s.pid() != 0) {
    absl::StatusOr<int64_t> age = ProcessAgeSeconds(s.pid());
    if (age.ok()) {
      max_uptime = *age + 2 + absl::ToInt64Seconds(absl::Now() - asked);
      bound = absl::StrCat("the process age ", *age, " s");
    }
  }
  int64_t uptime = 0;
  auto validate = [&](const std::string& payload) {
    return CheckInfo(payload, s.options().instance, max_uptime, &uptime);
  };
  absl::Status status = validate(reply->payload);
  if (!status.ok()) {
    return Fail(absl::StrCat(reply->topic, ": ", status.message()));
  }
  const int64_t live_uptime = uptime;
  status = ExpectRetained(s, reply->topic, validate);
  if (!status.ok()) return Fail(status);
  return Pass(absl::StrCat("instance_id ", s.options().instance, ", uptime ",
                           live_uptime, " s (at most ", bound,
                           "), retained at QoS ", reply->qos));
}

Verdict CheckMetaUnknownRequest(Session& s) {
  const std::string type = absl::StrCat("no-such-request-", s.RandomHex());
  const std::string error_topic = s.Topic("devices/_instance/error");
  const size_t from = s.probe().Mark();
  const absl::Time sent = absl::Now();
  absl::Status status =
      s.Send(s.Topic(absl::StrCat("meta/request/", type)), "{}");
  if (!status.ok()) return Fail(status);
  std::optional<Message> error = s.Await(
      from, [&](const Message& m) { return m.topic == error_topic; },
      s.Deadline());
  if (!error.has_value()) {
    return Fail(absl::StrCat("meta/request/", type, ": expected an ",
                             "INVALID_COMMAND error on ", error_topic,
                             ", nothing came ", Within(s)));
  }
  status = CheckErrorPayload(error->payload, "INVALID_COMMAND", "",
                             FreshSince(sent));
  if (!status.ok())
    return Fail(absl::StrCat(error_topic, ": ", status.message()));
  for (const Message& m : s.probe().Since(from)) {
    if (absl::StartsWith(m.topic, s.Topic("meta/"))) {
      return Fail(
          absl::StrCat("an unknown meta request also published on ", m.topic));
    }
  }
  return Pass(absl::StrCat("meta/request/", type,
                           " -> INVALID_COMMAND on devices/_instance/error"));
}

Verdict CheckCommandResponse(Session& s) {
  IOT2MQTT_NEED_DEVICE(s);
  absl::StatusOr<std::string> values = s.CommandValues();
  if (!values.ok()) return Fail(values.status());
  const std::string id = s.NewId("cmd");
  absl::Time sent;
  size_t from = 0;
  absl::StatusOr<Message> reply = s.CommandRoundTrip(
      s.device(),
      Session::Command(id, FormatTimestampUtc(absl::Now()), *values), id, &sent,
      &from);
  if (!reply.ok()) return Fail(reply.status());
  const absl::Duration round_trip = reply->received - sent;
  rapidjson::Document doc;
  absl::Status status = CheckCommandResponse(reply->payload, id, "success", "",
                                             true, FreshSince(sent), &doc);
  if (!status.ok()) {
    return Fail(absl::StrCat("values ", *values, ": ", status.message()));
  }
  if (!doc.HasMember("result") || !doc["result"].IsObject()) {
    return Fail(absl::StrCat(
        "the success response has no \"result\" object (the state after the "
        "command): ",
        Shorten(reply->payload)));
  }
  const std::string state_topic = s.DeviceTopic("state");
  std::string last;
  std::optional<Message> state = s.Await(
      from,
      [&](const Message& m) {
        if (m.topic != state_topic) return false;
        rapidjson::Document state_doc;
        absl::Status valid = CheckStatePayload(m.payload, s.device(),
                                               FreshSince(sent), &state_doc);
        if (!valid.ok())
          last = absl::StrCat(" (got one: ", valid.message(), ")");
        return valid.ok();
      },
      s.Deadline());
  if (!state.has_value()) {
    return Fail(absl::StrCat("success, but no fresh state on ", state_topic,
                             " after the command ", Within(s), last));
  }
  return Pass(absl::StrCat("values ", *values, " -> success in ",
                           Ms(round_trip), ", then a fresh state"));
}

Verdict CheckOffsetTimestamp(Session& s) {
  IOT2MQTT_NEED_DEVICE(s);
  absl::StatusOr<std::string> values = s.CommandValues();
  if (!values.ok()) return Fail(values.status());
  const std::string id = s.NewId("cmd");
  // The current instant written at +05:30: a connector that drops the zone
  // sees a command 5.5 h in the future and rejects it.
  const std::string timestamp = FormatTimestampWithOffset(absl::Now(), 330);
  absl::Time sent;
  absl::StatusOr<Message> reply = s.CommandRoundTrip(
      s.device(), Session::Command(id, timestamp, *values), id, &sent);
  if (!reply.ok()) return Fail(reply.status());
  rapidjson::Document doc;
  absl::Status status = CheckCommandResponse(reply->payload, id, "success", "",
                                             true, FreshSince(sent), &doc);
  if (!status.ok()) {
    return Fail(absl::StrCat("a fresh command stamped ", timestamp, ": ",
                             status.message()));
  }
  return Pass(
      absl::StrCat("a fresh command stamped ", timestamp, " was accepted"));
}

Verdict CheckLegacyCommand(Session& s) {
  IOT2MQTT_NEED_DEVICE(s);
  absl::StatusOr<std::string> values = s.CommandValues();
  if (!values.ok()) return Fail(values.status());
  const std::string id = s.NewId("cmd");
  // {"id", "timestamp", <the values flat>}.
  rapidjson::Document flat;
  flat.Parse(values->c_str());
  auto& allocator = flat.GetAllocator();
  flat.AddMember("id", rapidjson::Value(id.c_str(), allocator), allocator);
  flat.AddMember(
      "timestamp",
      rapidjson::Value(FormatTimestampUtc(absl::Now()).c_str(), allocator),
      allocator);
  absl::Time sent;
  absl::StatusOr<Message> reply =
      s.CommandRoundTrip(s.device(), JsonText(flat), id, &sent);
  if (!reply.ok()) return Fail(reply.status());
  rapidjson::Document doc;
  absl::Status status = CheckCommandResponse(reply->payload, id, "success", "",
                                             true, FreshSince(sent), &doc);
  if (!status.ok()) {
    return Fail(
        absl::StrCat("flat command ", JsonText(flat), ": ", status.message()));
  }
  return Pass(absl::StrCat("flat command (no \"values\") ", JsonText(flat),
                           " -> success"));
}

Verdict CheckStaleCommand(Session& s) {
  return ExpectRejected(s, FormatTimestampUtc(absl::Now() - absl::Seconds(60)),
                        "60 s old");
}

Verdict CheckFutureCommand(Session& s) {
  return ExpectRejected(s, FormatTimestampUtc(absl::Now() + absl::Seconds(60)),
                        "60 s in the future");
}

Verdict CheckMalformedCommand(Session& s) {
  IOT2MQTT_NEED_DEVICE(s);
  const size_t start = s.probe().Mark();
  const std::string cmd_topic = s.DeviceTopic("cmd");
  const std::string response_topic = s.DeviceTopic("cmd/response");
  const std::string error_topic = s.DeviceTopic("error");
  struct Case {
    std::string name;
    std::string payload;
    std::string id;                // Set: the error goes to cmd/response.
    bool any_error_place = false;  // Huge payloads are rejected unread.
  };
  const std::string now = FormatTimestampUtc(absl::Now());
  std::vector<Case> cases;
  cases.push_back({"not JSON", "{\"values\": {\"power\": tru", "", false});
  cases.push_back({"a JSON array", "[1,2,3]", "", false});
  const std::string id = s.NewId("bad");
  cases.push_back({"values not an object, with id",
                   absl::StrCat("{\"id\":\"", id, "\",\"timestamp\":\"", now,
                                "\",\"values\":42}"),
                   id, false});
  cases.push_back(
      {"values not an object, without id",
       absl::StrCat("{\"timestamp\":\"", now, "\",\"values\":\"on\"}"), "",
       false});
  const std::string huge_id = s.NewId("huge");
  cases.push_back({"a 300 KiB payload",
                   absl::StrCat("{\"id\":\"", huge_id, "\",\"timestamp\":\"",
                                now, "\",\"values\":{\"blob\":\"",
                                std::string(300 * 1024, 'x'), "\"}}"),
                   huge_id, true});
  std::vector<std::string> problems;
  for (const Case& c : cases) {
    const size_t from = s.probe().Mark();
    const absl::Time sent = absl::Now();
    absl::Status status = s.Send(cmd_topic, c.payload);
    if (!status.ok()) return Fail(status);
    std::optional<Message> error = s.Await(
        from,
        [&](const Message& m) {
          if (m.topic == error_topic) {
            return ErrorCodeOf(m.payload) != "UPDATE_ERROR";
          }
          if (m.topic != response_topic || c.id.empty()) return false;
          rapidjson::Document doc;
          return ParseJson(m.payload, &doc).ok() && doc.IsObject() &&
                 doc.HasMember("cmd_id") && doc["cmd_id"].IsString() &&
                 c.id == doc["cmd_id"].GetString();
        },
        s.Deadline());
    const std::string expected =
        c.any_error_place
            ? absl::StrCat("an error on ", error_topic, " or cmd/response")
        : c.id.empty()
            ? absl::StrCat("INVALID_COMMAND (warning) on ", error_topic)
            : "an INVALID_COMMAND error on cmd/response";
    if (!error.has_value()) {
      problems.push_back(absl::StrCat(c.name, ": expected ", expected,
                                      ", nothing came ", Within(s)));
      continue;
    }
    if (error->topic == error_topic) {
      if (!c.id.empty() && !c.any_error_place) {
        problems.push_back(absl::StrCat(
            c.name,
            ": the id was readable, expected the error on cmd/response, "
            "got it on ",
            error_topic));
        continue;
      }
      status = c.any_error_place
                   ? CheckErrorPayload(error->payload, "", "", FreshSince(sent))
                   : CheckErrorPayload(error->payload, "INVALID_COMMAND",
                                       "warning", FreshSince(sent));
    } else {
      rapidjson::Document doc;
      status = CheckCommandResponse(error->payload, c.id, "error",
                                    c.any_error_place ? "" : "INVALID_COMMAND",
                                    true, FreshSince(sent), &doc);
    }
    if (!status.ok()) {
      problems.push_back(absl::StrCat(c.name, ": ", status.message()));
    }
  }
  absl::Status alive = StillAnswers(s);
  if (alive.ok()) alive = s.StillAlive(start);
  if (!alive.ok()) problems.push_back(std::string(alive.message()));
  if (!problems.empty()) return Fail(absl::StrJoin(problems, "; "));
  return Pass(absl::StrCat(cases.size(),
                           " malformed commands each got their error; the "
                           "connector stayed online and answers"));
}

Verdict CheckUnknownDevice(Session& s) {
  absl::StatusOr<std::string> values = s.CommandValues();
  const std::string device = absl::StrCat("no-such-device-", s.RandomHex());
  const std::string id = s.NewId("cmd");
  absl::Time sent;
  absl::StatusOr<Message> reply = s.CommandRoundTrip(
      device,
      Session::Command(id, FormatTimestampUtc(absl::Now()),
                       values.ok() ? *values : "{\"power\":true}"),
      id, &sent);
  if (!reply.ok()) return Fail(reply.status());
  rapidjson::Document doc;
  absl::Status status =
      CheckCommandResponse(reply->payload, id, "error", "UNKNOWN_DEVICE", true,
                           FreshSince(sent), &doc);
  if (!status.ok()) {
    return Fail(
        absl::StrCat("devices/", device, "/cmd/response: ", status.message()));
  }
  // Without an id the rejection goes to the device's error topic.
  const std::string error_topic =
      s.Topic(absl::StrCat("devices/", device, "/error"));
  const size_t from = s.probe().Mark();
  sent = absl::Now();
  status = s.Send(s.Topic(absl::StrCat("devices/", device, "/cmd")),
                  Session::Command("", FormatTimestampUtc(sent),
                                   values.ok() ? *values : "{\"power\":true}"));
  if (!status.ok()) return Fail(status);
  std::optional<Message> error = s.Await(
      from, [&](const Message& m) { return m.topic == error_topic; },
      s.Deadline());
  if (!error.has_value()) {
    return Fail(absl::StrCat("a command without id to devices/", device,
                             ": expected UNKNOWN_DEVICE on ", error_topic,
                             ", nothing came ", Within(s)));
  }
  status = CheckErrorPayload(error->payload, "UNKNOWN_DEVICE", "warning",
                             FreshSince(sent));
  if (!status.ok())
    return Fail(absl::StrCat(error_topic, ": ", status.message()));
  return Pass(absl::StrCat("devices/", device,
                           "/cmd -> error UNKNOWN_DEVICE on cmd/response (with "
                           "id) and on error (without)"));
}

Verdict CheckGetUnknownDevice(Session& s) {
  const std::string device = absl::StrCat("no-such-device-", s.RandomHex());
  const std::string id = s.NewId("get");
  const std::string error_topic =
      s.Topic(absl::StrCat("devices/", device, "/error"));
  const std::string response_topic =
      s.Topic(absl::StrCat("devices/", device, "/get/response"));
  const size_t from = s.probe().Mark();
  const absl::Time sent = absl::Now();
  absl::Status status =
      s.Send(s.Topic(absl::StrCat("devices/", device, "/get")),
             absl::StrCat("{\"id\":\"", id, "\"}"));
  if (!status.ok()) return Fail(status);
  std::optional<Message> error = s.Await(
      from, [&](const Message& m) { return m.topic == error_topic; },
      s.Deadline());
  if (!error.has_value()) {
    return Fail(absl::StrCat("expected UNKNOWN_DEVICE on ", error_topic,
                             ", nothing came ", Within(s)));
  }
  status =
      CheckErrorPayload(error->payload, "UNKNOWN_DEVICE", "", FreshSince(sent));
  if (!status.ok())
    return Fail(absl::StrCat(error_topic, ": ", status.message()));
  absl::StatusOr<Message> reply = s.AwaitReply(from, response_topic, "id", id);
  if (!reply.ok()) return Fail(reply.status());
  rapidjson::Document doc;
  if (!ParseJson(reply->payload, &doc).ok() || !doc.HasMember("error")) {
    return Fail(absl::StrCat(response_topic,
                             " has no \"error\": ", Shorten(reply->payload)));
  }
  return Pass(absl::StrCat("get with id to devices/", device,
                           " -> UNKNOWN_DEVICE on error and a get/response "
                           "with \"error\""));
}

Verdict CheckUnknownGroup(Session& s) {
  absl::StatusOr<std::string> values = s.CommandValues();
  const std::string group = absl::StrCat("no-such-group-", s.RandomHex());
  const std::string id = s.NewId("cmd");
  const std::string topic = s.Topic(absl::StrCat("groups/", group, "/cmd"));
  const size_t from = s.probe().Mark();
  const absl::Time sent = absl::Now();
  absl::Status status = s.Send(
      topic, Session::Command(id, FormatTimestampUtc(sent),
                              values.ok() ? *values : "{\"power\":true}"));
  if (!status.ok()) return Fail(status);
  absl::StatusOr<Message> reply =
      s.AwaitReply(from, topic + "/response", "cmd_id", id);
  if (!reply.ok()) return Fail(reply.status());
  rapidjson::Document doc;
  status = CheckCommandResponse(reply->payload, id, "error", "UNKNOWN_GROUP",
                                false, FreshSince(sent), &doc);
  if (!status.ok()) {
    return Fail(absl::StrCat(reply->topic, ": ", status.message()));
  }
  return Pass(absl::StrCat("groups/", group, "/cmd -> error UNKNOWN_GROUP"));
}

Verdict CheckGetFull(Session& s) {
  IOT2MQTT_NEED_DEVICE(s);
  const std::string state_topic = s.DeviceTopic("state");
  for (const std::string payload : {"{}", ""}) {
    const std::string label = payload.empty() ? "an empty get" : "get `{}`";
    const size_t from = s.probe().Mark();
    const absl::Time sent = absl::Now();
    absl::Status status = s.Send(s.DeviceTopic("get"), payload);
    if (!status.ok()) return Fail(status);
    std::string last;
    std::optional<Message> state = s.Await(
        from,
        [&](const Message& m) {
          if (m.topic != state_topic) return false;
          rapidjson::Document doc;
          absl::Status valid =
              CheckStatePayload(m.payload, s.device(), FreshSince(sent), &doc);
          if (!valid.ok()) last = absl::StrCat(" (got: ", valid.message(), ")");
          return valid.ok();
        },
        s.Deadline());
    if (!state.has_value()) {
      return Fail(absl::StrCat(label, ": no fresh state on ", state_topic, " ",
                               Within(s), last));
    }
  }
  return Pass("get `{}` and an empty get each re-published the state");
}

Verdict CheckGetFiltered(Session& s) {
  IOT2MQTT_NEED_DEVICE(s);
  rapidjson::Document full;
  absl::Status status = s.LatestState(&full);
  if (!status.ok()) return Fail(status);
  const std::vector<std::string> keys = Keys(full);
  if (keys.empty()) return Skip("the state has no keys to filter");
  const std::string key = keys.front();
  const std::string id = s.NewId("get");
  const std::string state_topic = s.DeviceTopic("state");
  const std::string response_topic = s.DeviceTopic("get/response");
  const size_t from = s.probe().Mark();
  const absl::Time sent = absl::Now();
  rapidjson::Document request(rapidjson::kObjectType);
  rapidjson::Value properties(rapidjson::kArrayType);
  properties.PushBack(rapidjson::Value(key.c_str(), request.GetAllocator()),
                      request.GetAllocator());
  request.AddMember("properties", properties, request.GetAllocator());
  request.AddMember("id", rapidjson::Value(id.c_str(), request.GetAllocator()),
                    request.GetAllocator());
  status = s.Send(s.DeviceTopic("get"), JsonText(request));
  if (!status.ok()) return Fail(status);
  absl::StatusOr<Message> reply = s.AwaitReply(from, response_topic, "id", id);
  if (!reply.ok()) return Fail(reply.status());
  status =
      CheckGetResponse(reply->payload, s.device(), id, {key}, FreshSince(sent));
  if (!status.ok()) {
    return Fail(absl::StrCat(response_topic, ": ", status.message()));
  }
  // Whatever the connector published for this get is on the bus once it has
  // answered a later request.
  (void)MetaExchange(s, "info", "info");
  const std::set<std::string> full_keys(keys.begin(), keys.end());
  auto complete = [&](const std::string& payload) {
    rapidjson::Document doc;
    if (!ParseJson(payload, &doc).ok() || !doc.IsObject() ||
        !doc.HasMember("state") || !doc["state"].IsObject()) {
      return absl::InvalidArgumentError(
          absl::StrCat(Shorten(payload), " is not a state"));
    }
    for (const std::string& k : full_keys) {
      if (!doc["state"].HasMember(k.c_str())) {
        return absl::InvalidArgumentError(
            absl::StrCat("the full state lost key \"", k,
                         "\" after a filtered get: ", Shorten(payload)));
      }
    }
    return absl::OkStatus();
  };
  for (const Message& m : s.probe().Since(from)) {
    if (m.topic != state_topic) continue;
    status = complete(m.payload);
    if (!status.ok())
      return Fail(absl::StrCat(state_topic, ": ", status.message()));
  }
  status = ExpectRetained(s, state_topic, complete);
  if (!status.ok()) return Fail(status);
  absl::StatusOr<std::optional<Message>> retained_response =
      s.ReadRetained(response_topic);
  if (!retained_response.ok()) return Fail(retained_response.status());
  if (retained_response->has_value()) {
    return Fail(absl::StrCat(response_topic, " is retained; it must not be"));
  }
  return Pass(absl::StrCat(
      "get/response held only [", key, "]; the retained state kept its ",
      full_keys.size(), " keys",
      full_keys.size() == 1 ? " (a single key: nothing to lose)" : ""));
}

Verdict CheckGroupCommand(Session& s) {
  const std::string& group = s.options().group;
  if (group.empty()) return Skip("needs --group");
  absl::StatusOr<std::string> values = s.CommandValues();
  if (!values.ok()) return Fail(values.status());
  const std::string id = s.NewId("cmd");
  const std::string topic = s.Topic(absl::StrCat("groups/", group, "/cmd"));
  const size_t from = s.probe().Mark();
  const absl::Time sent = absl::Now();
  absl::Status status =
      s.Send(topic, Session::Command(id, FormatTimestampUtc(sent), *values));
  if (!status.ok()) return Fail(status);
  absl::StatusOr<Message> reply =
      s.AwaitReply(from, topic + "/response", "cmd_id", id);
  if (!reply.ok()) return Fail(reply.status());
  std::string aggregate;
  std::vector<std::string> succeeded;
  status = CheckGroupResponse(reply->payload, id, FreshSince(sent), &aggregate,
                              &succeeded);
  if (!status.ok()) {
    return Fail(absl::StrCat(reply->topic, ": ", status.message()));
  }
  if (aggregate != "success") {
    return Fail(
        absl::StrCat("values ", *values, " -> status \"", aggregate,
                     "\", expected success: ", Shorten(reply->payload)));
  }
  for (const std::string& member : succeeded) {
    const std::string state_topic =
        s.Topic(absl::StrCat("devices/", member, "/state"));
    std::optional<Message> state = s.Await(
        from,
        [&](const Message& m) {
          rapidjson::Document doc;
          return m.topic == state_topic &&
                 CheckStatePayload(m.payload, member, FreshSince(sent), &doc)
                     .ok();
        },
        s.Deadline());
    if (!state.has_value()) {
      return Fail(absl::StrCat("member \"", member,
                               "\" succeeded but published no fresh state ",
                               Within(s)));
    }
  }
  return Pass(absl::StrCat("groups/", group, "/cmd -> success for [",
                           absl::StrJoin(succeeded, ","),
                           "], each published a fresh state"));
}

Verdict CheckExtraLevels(Session& s) {
  IOT2MQTT_NEED_DEVICE(s);
  absl::StatusOr<std::string> values = s.CommandValues();
  if (!values.ok()) return Fail(values.status());
  const size_t from = s.probe().Mark();
  const std::string id = s.NewId("extra");
  const std::string now = FormatTimestampUtc(absl::Now());
  const std::vector<std::pair<std::string, std::string>> stray = {
      {s.DeviceTopic("cmd/extra"), Session::Command(id, now, *values)},
      {s.DeviceTopic("get/extra"),
       absl::StrCat("{\"properties\":[],\"id\":\"", id, "\"}")},
      {s.DeviceTopic("state/x/y"), "{\"not\":\"a state\"}"},
      {s.Topic("meta/request/info/extra"), "{}"},
  };
  for (const auto& [topic, payload] : stray) {
    absl::Status status = s.Send(topic, payload);
    if (!status.ok()) return Fail(status);
  }
  std::vector<std::string> problems;
  absl::Status alive = StillAnswers(s);
  if (alive.ok()) alive = s.StillAlive(from);
  if (!alive.ok()) problems.push_back(std::string(alive.message()));
  for (const Message& m : s.probe().Since(from)) {
    if (absl::StrContains(m.payload, id)) {
      problems.push_back(absl::StrCat("answered a topic with extra levels on ",
                                      m.topic, ": ", Shorten(m.payload)));
    }
  }
  if (!problems.empty()) return Fail(absl::StrJoin(problems, "; "));
  return Pass(absl::StrCat(
      "ignored cmd/extra, get/extra, state/x/y and meta/request/info/extra; "
      "still answers"));
}

Verdict CheckReconnect(Session& s) {
  const std::string client_id =
      absl::StrCat(s.options().client_prefix, "_", s.options().instance);
  const std::string status_topic = s.Topic("status");
  // The first reconnect comes after about 0.5 s of backoff (1 s in
  // libmosquitto's own reconnect loop), plus jitter.
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + absl::Seconds(2) + s.options().timeout;
  const size_t from = s.probe().Mark();
  {
    // A second client with the connector's id makes the broker drop the
    // connector's connection (MQTT session takeover); this one leaves at
    // once so the connector can come back.
    absl::StatusOr<std::unique_ptr<MqttProbe>> impostor = MqttProbe::Connect(
        s.options().host, s.options().port, client_id, s.Deadline());
    if (!impostor.ok()) {
      return Fail(absl::StrCat("cannot connect as client id \"", client_id,
                               "\": ", impostor.status().message()));
    }
  }
  std::optional<Message> online = s.Await(
      from,
      [&](const Message& m) {
        return m.topic == status_topic && m.payload == "online";
      },
      deadline);
  if (!online.has_value()) {
    return Fail(absl::StrCat(
        "no `online` on ", status_topic, " within ",
        absl::FormatDuration(deadline - start),
        " after the broker dropped client id \"", client_id,
        "\" (is that the connector's client id? does it publish `online` "
        "after every reconnect?)"));
  }
  const absl::Duration took = online->received - start;
  std::string also;
  if (s.ResolveDevice().ok()) {
    const std::string state_topic = s.DeviceTopic("state");
    std::optional<Message> state = s.Await(
        from,
        [&](const Message& m) {
          rapidjson::Document doc;
          return m.topic == state_topic &&
                 CheckStatePayload(m.payload, s.device(), FreshSince(start),
                                   &doc)
                     .ok();
        },
        s.Deadline());
    if (!state.has_value()) {
      return Fail(absl::StrCat("`online` again after ", Ms(took),
                               ", but no fresh state on ", state_topic, " ",
                               Within(s), " of it"));
    }
    also = absl::StrCat(" and a fresh state of \"", s.device(), "\"");
  }
  return Pass(absl::StrCat("dropped client id \"", client_id, "\"; `online`",
                           also, " again after ", Ms(took)));
}

Verdict CheckGracefulShutdown(Session& s) {
  const pid_t pid = s.options().pid;
  if (pid == 0) return Skip("needs --pid (it stops the connector)");
  const std::string topic = s.Topic("status");
  const absl::Duration bound = absl::Seconds(10);
  const size_t from = s.probe().Mark();
  const absl::Time start = absl::Now();
  if (kill(pid, SIGTERM) != 0) {
    return Fail(
        absl::StrCat("cannot send SIGTERM to ", pid, ": ", strerror(errno)));
  }
  std::optional<Message> offline = s.Await(
      from,
      [&](const Message& m) {
        return m.topic == topic && m.payload == "offline";
      },
      start + bound);
  if (!offline.has_value()) {
    return Fail(
        absl::StrCat("no `offline` on ", topic, " within 10 s of SIGTERM"));
  }
  const absl::Duration took = offline->received - start;
  if (offline->qos < 1) return Fail("`offline` came at QoS 0, expected QoS 1");
  absl::StatusOr<bool> exited = WaitForExit(pid, start + bound);
  std::string exit_note = ", process exited";
  if (exited.ok() && !*exited) {
    return Fail(
        absl::StrCat("`offline` after ", Ms(took),
                     ", but the process still runs 10 s after SIGTERM"));
  }
  if (!exited.ok() && !absl::IsNotFound(exited.status())) {
    exit_note =
        absl::StrCat(" (exit not observed: ", exited.status().message(), ")");
  }
  absl::Status retained = ExpectRetained(s, topic, [](const std::string& p) {
    return p == "offline" ? absl::OkStatus()
                          : absl::InvalidArgumentError(absl::StrCat(
                                Shorten(p), ", expected `offline`"));
  });
  if (!retained.ok()) return Fail(retained);
  return Pass(absl::StrCat("retained `offline` ", Ms(took), " after SIGTERM",
                           exit_note));
}

Verdict CheckLastWill(Session& s) {
  const pid_t pid = s.options().kill_pid;
  if (pid == 0) return Skip("needs --kill-pid (it kills the connector)");
  absl::StatusOr<bool> gone = WaitForExit(pid, absl::Now());
  if (absl::IsNotFound(gone.status()) || (gone.ok() && *gone)) {
    return Skip(absl::StrCat("process ", pid, " has already exited"));
  }
  const std::string topic = s.Topic("status");
  // The broker publishes the will when it sees the connection end: at once
  // when the kernel closes the socket, at most 1.5 x keepalive otherwise.
  const absl::Duration bound =
      absl::Seconds(s.options().keepalive_seconds) * 1.5 + s.options().timeout;
  const size_t from = s.probe().Mark();
  const absl::Time start = absl::Now();
  if (kill(pid, SIGKILL) != 0) {
    return Fail(
        absl::StrCat("cannot send SIGKILL to ", pid, ": ", strerror(errno)));
  }
  std::optional<Message> offline = s.Await(
      from,
      [&](const Message& m) {
        return m.topic == topic && m.payload == "offline";
      },
      start + bound);
  if (!offline.has_value()) {
    return Fail(absl::StrCat(
        "no `offline` on ", topic, " within ", absl::FormatDuration(bound),
        " of SIGKILL (1.5 x keepalive ", s.options().keepalive_seconds,
        " s + timeout): no last will set?"));
  }
  absl::Status retained = ExpectRetained(s, topic, [](const std::string& p) {
    return p == "offline" ? absl::OkStatus()
                          : absl::InvalidArgumentError(absl::StrCat(
                                Shorten(p), ", expected `offline`"));
  });
  if (!retained.ok()) return Fail(retained);
  if (offline->qos < 1) return Fail("the will came at QoS 0, expected QoS 1");
  return Pass(absl::StrCat("the broker published the retained will `offline` ",
                           Ms(offline->received - start), " after SIGKILL"));
}

const std::vector<Check>& AllChecks() {
  static const std::vector<Check>* checks = new std::vector<Check>{
      {"status-online", &CheckStatusOnline},
      {"state-shape", &CheckStateShape},
      {"property-topics", &CheckPropertyTopics},
      {"meta-devices-list", &CheckMetaDevicesList},
      {"meta-info", &CheckMetaInfo},
      {"meta-unknown-request", &CheckMetaUnknownRequest},
      {"command-response", &CheckCommandResponse},
      {"offset-timestamp", &CheckOffsetTimestamp},
      {"legacy-command", &CheckLegacyCommand},
      {"stale-command", &CheckStaleCommand},
      {"future-command", &CheckFutureCommand},
      {"malformed-command", &CheckMalformedCommand},
      {"unknown-device", &CheckUnknownDevice},
      {"unknown-group", &CheckUnknownGroup},
      {"get-unknown-device", &CheckGetUnknownDevice},
      {"get-full", &CheckGetFull},
      {"get-filtered", &CheckGetFiltered},
      {"group-command", &CheckGroupCommand},
      {"extra-levels", &CheckExtraLevels},
      {"reconnect", &CheckReconnect},
      {"graceful-shutdown", &CheckGracefulShutdown},
      {"last-will", &CheckLastWill},
  };
  return *checks;
}

const std::vector<std::string>& CheckNames() {
  static const std::vector<std::string>* names = [] {
    auto* out = new std::vector<std::string>;
    for (const Check& check : AllChecks()) out->push_back(check.name);
    return out;
  }();
  return *names;
}

std::vector<CheckResult> RunChecks(
    const CheckerOptions& options,
    const std::function<void(const CheckResult&)>& report) {
  std::vector<CheckResult> results;
  absl::StatusOr<std::unique_ptr<Session>> session = Session::Open(options);
  if (!session.ok()) {
    results.push_back(
        {"connect", Outcome::kFail,
         absl::StrCat("cannot use the broker at ", options.host, ":",
                      options.port, ": ", session.status().message())});
    report(results.back());
    return results;
  }
  for (const Check& check : AllChecks()) {
    if (!options.only.empty() &&
        std::find(options.only.begin(), options.only.end(), check.name) ==
            options.only.end()) {
      continue;
    }
    Verdict verdict = check.run(**session);
    results.push_back({check.name, verdict.outcome, std::move(verdict.detail)});
    report(results.back());
  }
  return results;
}

std::string FormatResult(const CheckResult& result) {
  const char* word = result.outcome == Outcome::kPass   ? "PASS"
                     : result.outcome == Outcome::kFail ? "FAIL"
                                                        : "SKIP";
  return absl::StrCat(word, " ", result.name, ": ", result.detail);
}

std::string FormatSummary(const std::vector<CheckResult>& results) {
  int passed = 0, failed = 0, skipped = 0;
  for (const CheckResult& r : results) {
    (r.outcome == Outcome::kPass   ? passed
     : r.outcome == Outcome::kFail ? failed
                                   : skipped)++;
  }
  return absl::StrCat(passed, " passed, ", failed, " failed, ", skipped,
                      " skipped");
}

}  // namespace iot2mqtt::conformance
