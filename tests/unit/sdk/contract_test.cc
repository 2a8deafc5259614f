#include "iot2mqtt/sdk/contract.h"

#include <cmath>
#include <string>

#include "catch2/catch.hpp"
#include "iot2mqtt/sdk/json_builder.h"
#include "rapidjson/document.h"

namespace iot2mqtt::sdk {
namespace {

absl::Time At(const char* text) {
  absl::StatusOr<absl::Time> t = ParseTimestamp(text);
  INFO(text);
  REQUIRE(t.ok());
  return *t;
}

// Valid JSON, checked strictly (UTF-8 validated).
bool IsStrictJson(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(text.data(), text.size());
  return !doc.HasParseError();
}

TEST_CASE("Contract: ids follow the topic rules", "[unit][contract]") {
  CHECK(ValidateId("light-1").ok());
  CHECK(ValidateId("Küche_Licht").ok());
  CHECK(ValidateId("_instance").ok());
  CHECK(ValidateId(std::string(128, 'a')).ok());

  CHECK(ValidateId("").code() == absl::StatusCode::kInvalidArgument);
  CHECK_FALSE(ValidateId(std::string(129, 'a')).ok());
  CHECK_FALSE(ValidateId("a/b").ok());
  CHECK_FALSE(ValidateId("+").ok());
  CHECK_FALSE(ValidateId("a#").ok());
  CHECK_FALSE(ValidateId(std::string("a\0b", 3)).ok());
  CHECK_FALSE(ValidateId("tab\there").ok());
  CHECK_FALSE(ValidateId("del\x7f").ok());
  CHECK_FALSE(ValidateId("c1\xc2\x85").ok());    // U+0085 (C1 control)
  CHECK_FALSE(ValidateId("\xff").ok());          // Not UTF-8.
  CHECK_FALSE(ValidateId("\xc0\xaf").ok());      // Overlong '/'.
  CHECK_FALSE(ValidateId("\xed\xa0\x80").ok());  // Surrogate.
  CHECK(std::string(ValidateId("a/b").message()).find("'/'") !=
        std::string::npos);
}

TEST_CASE("Contract: base topic rules", "[unit][contract]") {
  CHECK(ValidateBaseTopic("IoT2mqtt").ok());
  CHECK(ValidateBaseTopic("home/iot").ok());
  CHECK_FALSE(ValidateBaseTopic("").ok());
  CHECK_FALSE(ValidateBaseTopic("/iot").ok());
  CHECK_FALSE(ValidateBaseTopic("iot/").ok());
  CHECK_FALSE(ValidateBaseTopic("a+b").ok());
  CHECK_FALSE(ValidateBaseTopic("a/#").ok());
  CHECK_FALSE(ValidateBaseTopic(std::string("a\0b", 3)).ok());
  CHECK_FALSE(Topics::Create("IoT2mqtt", "bad/instance").ok());
  CHECK_FALSE(Topics::Create("bad+", "ok").ok());
}

TEST_CASE("Contract: every topic of the table", "[unit][contract]") {
  absl::StatusOr<Topics> t = Topics::Create("IoT2mqtt", "home");
  REQUIRE(t.ok());
  const std::string r = "IoT2mqtt/v1/instances/home";
  CHECK(t->root() == r);
  CHECK(t->All() == r + "/#");
  CHECK(t->Status() == r + "/status");
  CHECK(t->State("l1") == r + "/devices/l1/state");
  CHECK(t->StateProperty("l1", "power") == r + "/devices/l1/state/power");
  CHECK(t->Events("l1") == r + "/devices/l1/events");
  CHECK(t->Error("l1") == r + "/devices/l1/error");
  CHECK(t->Command("l1") == r + "/devices/l1/cmd");
  CHECK(t->CommandResponse("l1") == r + "/devices/l1/cmd/response");
  CHECK(t->Get("l1") == r + "/devices/l1/get");
  CHECK(t->GetResponse("l1") == r + "/devices/l1/get/response");
  CHECK(t->GroupCommand("g") == r + "/groups/g/cmd");
  CHECK(t->GroupCommandResponse("g") == r + "/groups/g/cmd/response");
  CHECK(t->MetaRequest("info") == r + "/meta/request/info");
  CHECK(t->DevicesList() == r + "/meta/devices_list");
  CHECK(t->Info() == r + "/meta/info");
  CHECK(t->InboundFilters() ==
        std::vector<std::string>{r + "/devices/+/cmd", r + "/devices/+/get",
                                 r + "/groups/+/cmd", r + "/meta/request/+"});
}

TEST_CASE("Contract: topic parser is exact", "[unit][contract]") {
  absl::StatusOr<Topics> t = Topics::Create("home/iot", "inst");
  REQUIRE(t.ok());
  const std::string r = "home/iot/v1/instances/inst/";

  auto parse = [&](const std::string& rest) { return t->Parse(r + rest); };
  struct Case {
    const char* rest;
    TopicKind kind;
    const char* id;
    const char* property;
  };
  for (const Case& c : std::vector<Case>{
           {"status", TopicKind::kStatus, "", ""},
           {"devices/d1/state", TopicKind::kState, "d1", ""},
           {"devices/d1/state/power", TopicKind::kStateProperty, "d1", "power"},
           {"devices/d1/events", TopicKind::kEvents, "d1", ""},
           {"devices/d1/error", TopicKind::kError, "d1", ""},
           {"devices/d1/cmd", TopicKind::kCommand, "d1", ""},
           {"devices/d1/cmd/response", TopicKind::kCommandResponse, "d1", ""},
           {"devices/d1/get", TopicKind::kGet, "d1", ""},
           {"devices/d1/get/response", TopicKind::kGetResponse, "d1", ""},
           {"groups/g1/cmd", TopicKind::kGroupCommand, "g1", ""},
           {"groups/g1/cmd/response", TopicKind::kGroupCommandResponse, "g1",
            ""},
           {"meta/request/info", TopicKind::kMetaRequest, "info", ""},
           {"meta/devices_list", TopicKind::kDevicesList, "", ""},
           {"meta/info", TopicKind::kInfo, "", ""},
       }) {
    INFO(c.rest);
    absl::StatusOr<TopicRef> ref = parse(c.rest);
    REQUIRE(ref.ok());
    CHECK(ref->kind == c.kind);
    CHECK(ref->id == c.id);
    CHECK(ref->property == c.property);
  }
  // Extra or missing levels, unknown names, other instances: not ours.
  for (const char* rest :
       {"devices/d1/cmd/extra", "devices/d1", "devices/d1/cmd/response/x",
        "devices/d1/state/a/b", "groups/g1", "meta/request", "meta/other",
        "status/x", "unknown", "", "devices//cmd/x"}) {
    INFO(rest);
    CHECK(absl::IsNotFound(parse(rest).status()));
  }
  CHECK(absl::IsNotFound(
      t->Parse("home/iot/v1/instances/other/devices/d1/cmd").status()));
  CHECK(absl::IsNotFound(
      t->Parse("home/iot/v1/instances/inst2/devices/d1/cmd").status()));
  // Invalid ids (wildcards, empty, control characters).
  CHECK(absl::IsInvalidArgument(parse("devices/+/cmd").status()));
  CHECK(absl::IsInvalidArgument(parse("devices/#/get").status()));
  CHECK(absl::IsInvalidArgument(parse("devices//cmd").status()));
  CHECK(absl::IsInvalidArgument(parse("devices/a\x01/cmd").status()));
  CHECK(absl::IsInvalidArgument(parse("meta/request/+").status()));
  // Inbound only.
  CHECK(t->ParseInbound(r + "devices/d1/cmd").ok());
  CHECK(t->ParseInbound(r + "meta/request/x").ok());
  CHECK(absl::IsNotFound(t->ParseInbound(r + "devices/d1/state").status()));
  CHECK(absl::IsNotFound(
      t->ParseInbound(r + "devices/d1/cmd/response").status()));
}

TEST_CASE("Contract: timestamps are UTC with milliseconds and Z",
          "[unit][contract]") {
  absl::Time t = absl::FromUnixMicros(1760351400123456);  // 2025-10-13
  CHECK(FormatTimestamp(t) == "2025-10-13T10:30:00.123Z");
  CHECK(FormatTimestamp(absl::FromUnixSeconds(0)) ==
        "1970-01-01T00:00:00.000Z");
  CHECK(ParseTimestamp(FormatTimestamp(t)).value() ==
        absl::FromUnixMillis(1760351400123));
}

TEST_CASE("Contract: timestamp parser accepts zones and naive UTC",
          "[unit][contract]") {
  const absl::Time utc = absl::FromUnixSeconds(1760351400);  // 10:30:00Z
  CHECK(At("2025-10-13T10:30:00Z") == utc);
  CHECK(At("2025-10-13t10:30:00z") == utc);
  CHECK(At("2025-10-13T10:30:00") == utc);  // Naive: taken as UTC.
  CHECK(At("2025-10-13 10:30:00") == utc);
  CHECK(At("2025-10-13T12:30:00+02:00") == utc);
  CHECK(At("2025-10-13T12:30:00+0200") == utc);
  CHECK(At("2025-10-13T12:30:00+02") == utc);
  CHECK(At("2025-10-13T05:00:00-05:30") == utc);
  CHECK(At("2025-10-13T10:30:00+00:00") == utc);
  CHECK(At("2025-10-13T10:30:00.5Z") == utc + absl::Milliseconds(500));
  CHECK(At("2025-10-13T10:30:00,25Z") == utc + absl::Milliseconds(250));
  CHECK(At("2025-10-13T10:30:00.123456") == utc + absl::Microseconds(123456));
  CHECK(At("2025-10-13T10:30:00.1234567891234Z") ==
        utc + absl::Nanoseconds(123456789));
  CHECK(At("2024-02-29T00:00:00Z") == absl::FromUnixSeconds(1709164800));

  for (const char* bad :
       {"", "2025-10-13", "2025-10-13T10:30", "2025/10/13T10:30:00Z",
        "2025-13-01T00:00:00Z", "2025-02-29T00:00:00Z", "2025-04-31T00:00:00Z",
        "2025-10-13T24:00:00Z", "2025-10-13T10:60:00Z", "2025-10-13T10:30:61Z",
        "2025-10-13T10:30:00.Z", "2025-10-13T10:30:00ZZ",
        "2025-10-13T10:30:00+2:00", "2025-10-13T10:30:00+24:00",
        "2025-10-13T10:30:00 UTC", "1760351400", "yesterday"}) {
    INFO(bad);
    CHECK(absl::IsInvalidArgument(ParseTimestamp(bad).status()));
  }
}

TEST_CASE("Contract: stale and future commands, compared in UTC",
          "[unit][contract]") {
  const absl::Time now = absl::FromUnixSeconds(1760351400);
  auto at = [](absl::Time t) { return JsonString(FormatTimestamp(t)); };
  CHECK(CheckCommandTime(std::nullopt, now).ok());
  CHECK(CheckCommandTime(at(now), now).ok());
  CHECK(CheckCommandTime(at(now - absl::Seconds(29)), now).ok());
  CHECK(CheckCommandTime(at(now + absl::Seconds(4)), now).ok());

  absl::Status old = CheckCommandTime(at(now - absl::Seconds(42)), now);
  CHECK(absl::IsFailedPrecondition(old));
  CHECK(old.message() == "command is 42 s old (limit 30 s)");
  absl::Status future = CheckCommandTime(at(now + absl::Seconds(12)), now);
  CHECK(absl::IsFailedPrecondition(future));
  CHECK(future.message() ==
        "command timestamp is 12 s in the future (limit 5 s)");

  // The upstream bug: a local time with its offset is the same instant.
  CHECK(CheckCommandTime("\"2025-10-13T12:30:00+02:00\"", now).ok());
  // A naive local time two hours ahead is in the future when read as UTC.
  CHECK_FALSE(CheckCommandTime("\"2025-10-13T12:30:00\"", now).ok());
  CHECK(absl::IsFailedPrecondition(CheckCommandTime("\"soon\"", now)));
  CHECK(absl::IsFailedPrecondition(CheckCommandTime("1760351400", now)));
  CHECK(absl::IsFailedPrecondition(CheckCommandTime("null", now)));
}

TEST_CASE("Contract: state payload keeps numbers exact", "[unit][contract]") {
  StateMessage in;
  in.timestamp = absl::FromUnixMillis(1760351400123);
  in.device_id = "l1";
  in.state = R"({"big":12345678901234567890,"x":0.1,"m":1e300,"on":true})";
  std::string payload = BuildStatePayload(in);
  CHECK(payload ==
        R"({"timestamp":"2025-10-13T10:30:00.123Z","device_id":"l1","state":)"
        R"({"big":12345678901234567890,"x":0.1,"m":1e300,"on":true}})");
  absl::StatusOr<StateMessage> out = ParseStatePayload(payload);
  REQUIRE(out.ok());
  CHECK(out->timestamp == in.timestamp);
  CHECK(out->device_id == "l1");
  CHECK(out->state == in.state);

  CHECK_FALSE(ParseStatePayload("not json").ok());
  CHECK_FALSE(ParseStatePayload(R"({"device_id":"l1","state":{}})").ok());
  CHECK_FALSE(
      ParseStatePayload(R"({"timestamp":"x","device_id":"l1","state":{}})")
          .ok());
  CHECK_FALSE(
      ParseStatePayload(
          R"({"timestamp":"2025-10-13T10:30:00Z","device_id":"l1","state":[]})")
          .ok());
}

TEST_CASE("Contract: property payloads are JSON values", "[unit][contract]") {
  CHECK(ParsePropertyPayload("true").value() == "true");
  CHECK(ParsePropertyPayload(" 75 ").value() == "75");
  CHECK(ParsePropertyPayload("\"living room\"").value() == "\"living room\"");
  CHECK(ParsePropertyPayload("null").value() == "null");
  CHECK(ParsePropertyPayload(R"({"r": 255})").value() == R"({"r":255})");
  CHECK_FALSE(ParsePropertyPayload("True").ok());  // Upstream's bug.
  CHECK_FALSE(ParsePropertyPayload("None").ok());
  CHECK_FALSE(ParsePropertyPayload("living room").ok());
}

TEST_CASE("Contract: error and event payloads", "[unit][contract]") {
  ErrorMessage error;
  error.timestamp = absl::FromUnixSeconds(1760351400);
  error.error_code = "UPDATE_ERROR";
  error.message = "bulb \xff did not answer";  // Invalid UTF-8 is replaced.
  error.severity = ErrorSeverity::kWarning;
  RetryInfo retry;
  retry.attempt = 3;
  retry.next_retry = error.timestamp + absl::Seconds(40);
  error.retry_info = retry;
  std::string payload = BuildErrorPayload(error);
  CHECK(IsStrictJson(payload));
  CHECK(payload ==
        "{\"timestamp\":\"2025-10-13T10:30:00.000Z\",\"error_code\":"
        "\"UPDATE_ERROR\",\"message\":\"bulb \xEF\xBF\xBD did not answer\","
        "\"severity\":\"warning\",\"retry_info\":{\"attempt\":3,"
        "\"next_retry\":\"2025-10-13T10:30:40.000Z\"}}");
  absl::StatusOr<ErrorMessage> parsed = ParseErrorPayload(payload);
  REQUIRE(parsed.ok());
  CHECK(parsed->severity == ErrorSeverity::kWarning);
  REQUIRE(parsed->retry_info.has_value());
  CHECK(parsed->retry_info->attempt == 3);
  CHECK_FALSE(parsed->retry_info->max_attempts.has_value());
  CHECK(parsed->retry_info->next_retry == retry.next_retry);

  error.retry_info.reset();
  error.severity = ErrorSeverity::kCritical;
  parsed = ParseErrorPayload(BuildErrorPayload(error));
  REQUIRE(parsed.ok());
  CHECK(parsed->severity == ErrorSeverity::kCritical);
  CHECK_FALSE(parsed->retry_info.has_value());
  CHECK_FALSE(
      ParseErrorPayload(
          R"({"timestamp":"2025-10-13T10:30:00Z","error_code":"X","message":"m","severity":"fatal"})")
          .ok());

  EventMessage event;
  event.timestamp = absl::FromUnixSeconds(1760351400);
  event.event = "motion_detected";
  event.data = R"({"zone":"hall"})";
  absl::StatusOr<EventMessage> e = ParseEventPayload(BuildEventPayload(event));
  REQUIRE(e.ok());
  CHECK(e->event == "motion_detected");
  CHECK(e->data == R"({"zone":"hall"})");
}

TEST_CASE("Contract: command payloads, values and legacy flat form",
          "[unit][contract]") {
  absl::StatusOr<CommandRequest> c = ParseCommandPayload(
      R"({"id":"c-42","timestamp":"2025-10-13T10:30:00.000Z","values":{"power":true,"n":12345678901234567890},"timeout":5000})");
  REQUIRE(c.ok());
  CHECK(c->id == "c-42");
  CHECK(c->timestamp == "\"2025-10-13T10:30:00.000Z\"");
  CHECK(c->timeout_ms == 5000);
  CHECK(c->values == R"({"power":true,"n":12345678901234567890})");
  CHECK_FALSE(c->legacy_flat);

  c = ParseCommandPayload(R"({"power": false, "brightness": 80, "id": "x"})");
  REQUIRE(c.ok());
  CHECK(c->legacy_flat);
  CHECK(c->id == "x");
  CHECK(c->values == R"({"power":false,"brightness":80})");
  CHECK_FALSE(c->timestamp.has_value());

  c = ParseCommandPayload("{}");
  REQUIRE(c.ok());
  CHECK(c->values == "{}");

  // Rejections, with the id kept when it could be read.
  for (const char* bad :
       {"", "not json", "[1,2]", "42", "\"str\"", "null", "{\"values\": 5}",
        "{\"values\": [1]}", "{\"id\": 7, \"values\": {}}",
        "{\"values\": {}, \"timeout\": -1}",
        "{\"values\": {}, \"timeout\": \"soon\"}", "{\"values\": {\"a\": 1}",
        "{\"a\":\"\xff\"}"}) {
    INFO(bad);
    CHECK(absl::IsInvalidArgument(ParseCommandPayload(bad).status()));
  }
  std::optional<std::string> id;
  CHECK_FALSE(ParseCommandPayload(R"({"id":"c-9","values":"on"})", &id).ok());
  CHECK(id == "c-9");

  std::string built = BuildCommandPayload(
      "c-1", absl::FromUnixSeconds(1760351400), R"({"power":true})", 5000);
  CHECK(
      built ==
      R"({"id":"c-1","timestamp":"2025-10-13T10:30:00.000Z","values":{"power":true},"timeout":5000})");
  c = ParseCommandPayload(built);
  REQUIRE(c.ok());
  CHECK(CheckCommandTime(c->timestamp, absl::FromUnixSeconds(1760351401)).ok());
}

TEST_CASE("Contract: command responses", "[unit][contract]") {
  CommandResponse ok;
  ok.cmd_id = "c-42";
  ok.timestamp = absl::FromUnixSeconds(1760351400);
  ok.result = R"({"power":true})";
  std::string payload = BuildCommandResponsePayload(ok);
  CHECK(
      payload ==
      R"({"cmd_id":"c-42","status":"success","timestamp":"2025-10-13T10:30:00.000Z","result":{"power":true}})");
  absl::StatusOr<CommandResponse> parsed = ParseCommandResponsePayload(payload);
  REQUIRE(parsed.ok());
  CHECK(parsed->status == ResultStatus::kSuccess);
  CHECK(parsed->result == R"({"power":true})");

  CommandResponse error;
  error.cmd_id = "c-43";
  error.status = ResultStatus::kError;
  error.timestamp = ok.timestamp;
  error.error_code = "STALE_COMMAND";
  error.error = "command is 42 s old (limit 30 s)";
  payload = BuildCommandResponsePayload(error);
  CHECK(
      payload ==
      R"js({"cmd_id":"c-43","status":"error","timestamp":"2025-10-13T10:30:00.000Z","error_code":"STALE_COMMAND","error":"command is 42 s old (limit 30 s)"})js");
  parsed = ParseCommandResponsePayload(payload);
  REQUIRE(parsed.ok());
  CHECK(parsed->status == ResultStatus::kError);
  CHECK(parsed->error_code == "STALE_COMMAND");
  CHECK_FALSE(
      ParseCommandResponsePayload(
          R"({"cmd_id":"x","status":"partial","timestamp":"2025-10-13T10:30:00Z"})")
          .ok());
}

TEST_CASE("Contract: get requests and responses", "[unit][contract]") {
  absl::StatusOr<GetRequest> g = ParseGetPayload("");
  REQUIRE(g.ok());
  CHECK_FALSE(g->properties.has_value());
  g = ParseGetPayload("  {} ");
  REQUIRE(g.ok());
  CHECK_FALSE(g->properties.has_value());
  g = ParseGetPayload(R"({"properties":["power","brightness"],"id":"g-1"})");
  REQUIRE(g.ok());
  CHECK(g->properties == std::vector<std::string>{"power", "brightness"});
  CHECK(g->id == "g-1");
  std::optional<std::string> id;
  CHECK_FALSE(
      ParseGetPayload(R"({"properties":"power","id":"g-2"})", &id).ok());
  CHECK(id == "g-2");
  CHECK_FALSE(ParseGetPayload(R"({"properties":[1]})").ok());
  CHECK_FALSE(ParseGetPayload("[]").ok());
  CHECK(ParseGetPayload(BuildGetPayload(*g)).value().properties ==
        g->properties);

  GetResponse r;
  r.timestamp = absl::FromUnixSeconds(1760351400);
  r.device_id = "l1";
  r.state = R"({"power":true})";
  r.id = "g-1";
  std::string payload = BuildGetResponsePayload(r);
  CHECK(
      payload ==
      R"({"timestamp":"2025-10-13T10:30:00.000Z","device_id":"l1","state":{"power":true},"id":"g-1"})");
  absl::StatusOr<GetResponse> parsed = ParseGetResponsePayload(payload);
  REQUIRE(parsed.ok());
  CHECK(parsed->state == R"({"power":true})");
  r.state.reset();
  r.error_code = "UNKNOWN_DEVICE";
  r.error = "no such device";
  parsed = ParseGetResponsePayload(BuildGetResponsePayload(r));
  REQUIRE(parsed.ok());
  CHECK_FALSE(parsed->state.has_value());
  CHECK(parsed->error_code == "UNKNOWN_DEVICE");
}

TEST_CASE("Contract: aggregated group responses", "[unit][contract]") {
  GroupMemberResult ok{"light1", true, "", ""};
  GroupMemberResult bad{"light2", false, "DEVICE_OFFLINE", "timeout"};
  CHECK(AggregateStatus({ok, ok}) == ResultStatus::kSuccess);
  CHECK(AggregateStatus({ok, bad}) == ResultStatus::kPartial);
  CHECK(AggregateStatus({bad}) == ResultStatus::kError);
  CHECK(AggregateStatus({}) == ResultStatus::kError);

  GroupCommandResponse response;
  response.cmd_id = "c-7";
  response.status = ResultStatus::kPartial;
  response.timestamp = absl::FromUnixSeconds(1760351400);
  response.results = {ok, bad};
  std::string payload = BuildGroupCommandResponsePayload(response);
  CHECK(
      payload ==
      R"({"cmd_id":"c-7","status":"partial","timestamp":"2025-10-13T10:30:00.000Z","results":{"light1":{"status":"success"},"light2":{"status":"error","error_code":"DEVICE_OFFLINE","error":"timeout"}}})");
  absl::StatusOr<GroupCommandResponse> parsed =
      ParseGroupCommandResponsePayload(payload);
  REQUIRE(parsed.ok());
  CHECK(parsed->status == ResultStatus::kPartial);
  REQUIRE(parsed->results.size() == 2);
  CHECK(parsed->results[1].error_code == "DEVICE_OFFLINE");
}

TEST_CASE("Contract: meta payloads", "[unit][contract]") {
  std::string list = BuildDevicesListPayload(
      "home", {DeviceListEntry{"l1", "", "yeelight.color", true, true},
               DeviceListEntry{"l2", "", "", false, false}});
  CHECK(
      list ==
      R"([{"device_id":"l1","global_id":"home_l1","model":"yeelight.color","enabled":true,"online":true},)"
      R"({"device_id":"l2","global_id":"home_l2","model":"unknown","enabled":false,"online":false}])");
  absl::StatusOr<std::vector<DeviceListEntry>> parsed =
      ParseDevicesListPayload(list);
  REQUIRE(parsed.ok());
  REQUIRE(parsed->size() == 2);
  CHECK((*parsed)[0].global_id == "home_l1");
  CHECK_FALSE((*parsed)[1].enabled);
  CHECK_FALSE(ParseDevicesListPayload("{}").ok());

  InstanceInfo info{"home", "demo", 4, 1, 42};
  std::string payload = BuildInfoPayload(info);
  CHECK(
      payload ==
      R"({"instance_id":"home","connector_type":"demo","devices_count":4,"groups_count":1,"uptime":42})");
  absl::StatusOr<InstanceInfo> back = ParseInfoPayload(payload);
  REQUIRE(back.ok());
  CHECK(back->uptime_seconds == 42);
  CHECK_FALSE(
      ParseInfoPayload(
          R"({"instance_id":"h","connector_type":"d","devices_count":1,"groups_count":0,"uptime":1.5})")
          .ok());
}

TEST_CASE("JsonObjectBuilder: order, replacement, exact types",
          "[unit][contract]") {
  std::string json = JsonObjectBuilder()
                         .Set("power", true)
                         .Set("brightness", 80)
                         .Set("temp", 21.5)
                         .Set("name", "living \"room\"")
                         .SetNull("last")
                         .SetRaw("color", R"({"r":255})")
                         .Set("brightness", int64_t{81})
                         .Set("nan", std::nan(""))
                         .Set("big", uint64_t{18446744073709551615u})
                         .Build();
  CHECK(
      json ==
      R"({"power":true,"brightness":81,"temp":21.5,"name":"living \"room\"","last":null,"color":{"r":255},"nan":null,"big":18446744073709551615})");
  CHECK(JsonObjectBuilder().Build() == "{}");
  CHECK(IsStrictJson(JsonObjectBuilder().Set("bad", "\xff\xfe").Build()));
}

}  // namespace
}  // namespace iot2mqtt::sdk
