#include "gateway/transcoder.h"

#include <cmath>
#include <limits>
#include <string>

#include "catch2/catch.hpp"
#include "gateway/route_table.h"
#include "gateway_test/v1/test_service.pb.h"
#include "iot2mqtt/config/v1/config_service.pb.h"
#include "services/common/status.h"

namespace iot2mqtt::gateway {
namespace {

using gateway_test::v1::CreateThingRequest;
using gateway_test::v1::ListThingsRequest;
using gateway_test::v1::Thing;
using gateway_test::v1::UpdateThingRequest;

const RouteTable& Routes() {
  static const RouteTable* const kTable = [] {
    (void)Thing::descriptor();
    (void)config::v1::DeviceConfig::descriptor();
    absl::StatusOr<RouteTable> table = RouteTable::Build(
        {"gateway_test.v1.TestService", "iot2mqtt.config.v1.ConfigService"});
    REQUIRE(table.ok());
    return new RouteTable(*std::move(table));
  }();
  return *kTable;
}

// Transcodes an HTTP request into `request` via the route table.
absl::Status Transcode(const std::string& method, const std::string& target,
                       const std::string& body,
                       google::protobuf::Message* request) {
  std::string path = target.substr(0, target.find('?'));
  std::string query = target.find('?') == std::string::npos
                          ? ""
                          : target.substr(target.find('?') + 1);
  RouteMatch match = Routes().Match(method, path);
  REQUIRE(match.outcome == RouteMatch::Outcome::kMatched);
  REQUIRE(match.route->method->input_type() == request->GetDescriptor());
  return BuildRequest(*match.route, match.bindings, query, body, request);
}

const Route& RouteFor(const std::string& method, const std::string& path) {
  RouteMatch match = Routes().Match(method, path);
  REQUIRE(match.outcome == RouteMatch::Outcome::kMatched);
  return *match.route;
}

std::string Reason(const absl::Status& status) {
  return common::ReasonOf(status);
}

TEST_CASE("query parameters bind to scalar fields by type") {
  ListThingsRequest request;
  absl::Status status = Transcode(
      "GET",
      "/v1/things?page_size=10&filter=a+b%20c&tags=x&tags=y&color=COLOR_RED"
      "&include_hidden=true&min_size=-5&ratio=0.5&nested.owner=me"
      "&nested.max=18446744073709551615&token=aGVsbG8&limit=7&wrapped=3"
      "&since=2024-01-02T03:04:05Z&unknown=1&_=12345",
      "", &request);
  REQUIRE(status.ok());
  CHECK(request.page_size() == 10);
  CHECK(request.filter() == "a b c");
  REQUIRE(request.tags_size() == 2);
  CHECK(request.tags(0) == "x");
  CHECK(request.tags(1) == "y");
  CHECK(request.color() == gateway_test::v1::COLOR_RED);
  CHECK(request.include_hidden());
  CHECK(request.min_size() == -5);
  CHECK(request.ratio() == 0.5);
  CHECK(request.nested().owner() == "me");
  CHECK(request.nested().max() == std::numeric_limits<uint64_t>::max());
  CHECK(request.token() == "hello");
  REQUIRE(request.has_limit());
  CHECK(request.limit() == 7);
  CHECK(request.wrapped().value() == 3);
  CHECK(request.since().seconds() == 1704164645);

  // lowerCamel names work too; enums by number.
  REQUIRE(Transcode("GET", "/v1/things?pageSize=3&color=2", "", &request).ok());
  CHECK(request.page_size() == 3);
  CHECK(request.color() == gateway_test::v1::COLOR_BLUE);
}

TEST_CASE("bad query values are 400 INVALID_QUERY_PARAMETER") {
  for (const char* target :
       {"/v1/things?page_size=abc", "/v1/things?page_size=99999999999",
        "/v1/things?color=PURPLE", "/v1/things?include_hidden=maybe",
        "/v1/things?limit=-1", "/v1/things?ratio=x", "/v1/things?filter=%zz",
        "/v1/things?filter=%ff", "/v1/things?since=yesterday",
        "/v1/things?token=***"}) {
    INFO(target);
    ListThingsRequest request;
    absl::Status status = Transcode("GET", target, "", &request);
    CHECK(status.code() == absl::StatusCode::kInvalidArgument);
    CHECK(Reason(status) == kInvalidQueryParameter);
  }
}

TEST_CASE("path variables bind to nested fields and win over the body") {
  gateway_test::v1::GetThingRequest get;
  REQUIRE(Transcode("GET", "/v1/shelves/s%201/things/t1", "", &get).ok());
  CHECK(get.shelf().name() == "s 1");
  CHECK(get.id() == "t1");

  UpdateThingRequest update;
  REQUIRE(Transcode("PATCH", "/v1/things/abc", R"({"id":"other","label":"L"})",
                    &update)
              .ok());
  CHECK(update.id() == "abc");
  CHECK(update.label() == "L");

  // A path variable must still be valid UTF-8.
  absl::Status bad = Transcode("GET", "/v1/things/%ff%fe", "", &get);
  CHECK(bad.code() == absl::StatusCode::kInvalidArgument);
  CHECK(Reason(bad) == kInvalidPathParameter);
}

TEST_CASE("body \"field\" maps the whole body to that field") {
  CreateThingRequest request;
  REQUIRE(Transcode("POST", "/v1/things?request_id=r1&thing.id=ignored",
                    R"({"id":"t1","label":"L","i64":"5","attrs":{"k":"v"}})",
                    &request)
              .ok());
  CHECK(request.thing().id() == "t1");  // The body binds thing.*; query can't.
  CHECK(request.thing().label() == "L");
  CHECK(request.thing().i64() == 5);
  CHECK(request.thing().attrs().at("k") == "v");
  CHECK(request.request_id() == "r1");

  // Exactly one JSON value: no smuggling other members in.
  absl::Status smuggled = Transcode(
      "POST", "/v1/things", R"({"id":"x"}, "request_id": "y")", &request);
  CHECK(Reason(smuggled) == kInvalidJson);
}

TEST_CASE("body \"*\" rejects unknown fields, bad JSON and bad UTF-8") {
  UpdateThingRequest request;
  absl::Status unknown =
      Transcode("PATCH", "/v1/things/a", R"({"nope":1})", &request);
  CHECK(unknown.code() == absl::StatusCode::kInvalidArgument);
  CHECK(Reason(unknown) == kInvalidRequestBody);

  absl::Status wrong_type =
      Transcode("PATCH", "/v1/things/a", R"({"label":5})", &request);
  CHECK(Reason(wrong_type) == kInvalidRequestBody);

  for (const std::string& body :
       {std::string("{\"label\":"), std::string("[1,2]"), std::string("nope"),
        std::string("{\"label\":\"\xff\"}"),
        std::string("{\"label\":\"a\"} x")}) {
    INFO(body);
    absl::Status status = Transcode("PATCH", "/v1/things/a", body, &request);
    CHECK(status.code() == absl::StatusCode::kInvalidArgument);
    CHECK(Reason(status) == kInvalidJson);
  }

  // No body at all is an empty message (the service validates).
  REQUIRE(Transcode("PATCH", "/v1/things/a", "", &request).ok());
  CHECK(request.id() == "a");
  CHECK(request.payload().empty());

  // With body "*", the query string binds nothing.
  REQUIRE(Transcode("PATCH", "/v1/things/a?label=q", "{}", &request).ok());
  CHECK_FALSE(request.has_label());
}

constexpr char kExactJson[] =
    R"({"z":1,"big":12345678901234567890,"small":0.1,"huge":1e300,)"
    R"("neg":-0.0,"text":"h\u00e9llo \u2603 \"q\"","nested":{"b":[1,2,{"c":null}],"a":true}})";
// What SplitJsonObject keeps of it: exact numbers and key order, strings as
// UTF-8 (escapes for quotes only).
constexpr char kExactJsonCompact[] =
    R"({"z":1,"big":12345678901234567890,"small":0.1,"huge":1e300,)"
    "\"neg\":-0.0,\"text\":\"h\xc3\xa9llo \xe2\x98\x83 \\\"q\\\"\","
    R"("nested":{"b":[1,2,{"c":null}],"a":true}})";

TEST_CASE("raw_json fields take the exact text of their JSON value") {
  UpdateThingRequest request;
  std::string body =
      std::string(R"({"payload":)") + kExactJson +
      R"(,"inner":{"config":[1e300,12345678901234567890],"n":3},"label":"L"})";
  REQUIRE(Transcode("PATCH", "/v1/things/a", body, &request).ok());
  CHECK(request.payload() == kExactJsonCompact);
  CHECK(request.inner().config() == "[1e300,12345678901234567890]");
  CHECK(request.inner().n() == 3);
  CHECK(request.label() == "L");

  // null leaves the field empty.
  REQUIRE(
      Transcode("PATCH", "/v1/things/a", R"({"payload":null})", &request).ok());
  CHECK(request.payload().empty());

  // body: "payload" — the whole body is the raw value.
  REQUIRE(Transcode("PUT", "/v1/things/a/payload", kExactJson, &request).ok());
  CHECK(request.id() == "a");
  CHECK(request.payload() == kExactJsonCompact);
}

TEST_CASE("the config PUT body keeps content exactly") {
  config::v1::UpdateDeviceConfigRequest request;
  std::string body = std::string(R"({"content":)") + kExactJson + "}";
  REQUIRE(
      Transcode("PUT", "/api/configs/a4-cf-12-34-56-78", body, &request).ok());
  CHECK(request.mac_address() == "a4-cf-12-34-56-78");
  CHECK(request.content() == kExactJsonCompact);
}

TEST_CASE("responses print every field in declaration order") {
  Thing thing;
  CHECK(MessageToJson(thing) ==
        R"({"id":"","label":null,"i32":0,"i64":"0","u64":"0","u32":0,"d":0.0,)"
        R"("f":0,"b":false,"data":"","color":"COLOR_UNSPECIFIED","tags":[],)"
        R"("sizes":[],"attrs":{},"by_number":{},"shelf":null,"created":null,)"
        R"("extra":null,"maybe":null,"payload":null,"shelves":[],)"
        R"("maybe_color":null,"s64":"0"})");
}

TEST_CASE("responses render values by the proto3 JSON rules") {
  Thing thing;
  thing.set_id("t");
  thing.set_label("");
  thing.set_i32(-7);
  thing.set_i64(-9007199254740993);
  thing.set_u64(std::numeric_limits<uint64_t>::max());
  thing.set_u32(4000000000u);
  thing.set_d(1e300);
  thing.set_f(0.1f);
  thing.set_b(true);
  thing.set_data("hi");
  thing.set_color(gateway_test::v1::COLOR_BLUE);
  thing.add_tags("x");
  thing.add_sizes(12345678901234567);
  (*thing.mutable_attrs())["b"] = "2";
  (*thing.mutable_attrs())["a"] = "1";
  (*thing.mutable_by_number())[10] = "ten";
  (*thing.mutable_by_number())[-5] = "minus five";
  (*thing.mutable_by_number())[2] = "two";
  thing.mutable_shelf()->set_name("s");
  thing.mutable_created()->set_seconds(1704164645);
  (*thing.mutable_extra()->mutable_fields())["k"].set_number_value(1.5);
  thing.mutable_maybe()->set_value(0);
  thing.set_payload(kExactJson);
  thing.add_shelves()->set_name("s2");
  thing.set_maybe_color(gateway_test::v1::COLOR_RED);
  thing.set_s64(-1);
  CHECK(
      MessageToJson(thing) ==
      std::string(R"({"id":"t","label":"","i32":-7,"i64":"-9007199254740993",)"
                  R"("u64":"18446744073709551615","u32":4000000000,"d":1e300,)"
                  R"("f":0.1,"b":true,"data":"aGk=","color":"COLOR_BLUE",)"
                  R"("tags":["x"],"sizes":["12345678901234567"],)"
                  R"("attrs":{"a":"1","b":"2"},)"
                  R"("by_number":{"-5":"minus five","2":"two","10":"ten"},)"
                  R"("shelf":{"name":"s"},"created":"2024-01-02T03:04:05Z",)"
                  R"("extra":{"k":1.5},"maybe":0,"payload":)") +
          kExactJson +
          R"(,"shelves":[{"name":"s2"}],"maybe_color":"COLOR_RED","s64":"-1"})");
}

TEST_CASE("non-finite doubles are strings; broken raw_json stays valid JSON") {
  Thing thing;
  thing.set_d(std::nan(""));
  thing.set_f(-std::numeric_limits<float>::infinity());
  thing.set_payload("{not json");
  std::string json = MessageToJson(thing);
  CHECK(json.find(R"("d":"NaN")") != std::string::npos);
  CHECK(json.find(R"("f":"-Infinity")") != std::string::npos);
  CHECK(json.find(R"("payload":"{not json")") != std::string::npos);
}

TEST_CASE("raw_json survives a round trip through request and response") {
  UpdateThingRequest request;
  std::string body = std::string(R"({"payload":)") + kExactJsonCompact + "}";
  REQUIRE(Transcode("PATCH", "/v1/things/a", body, &request).ok());
  Thing thing;
  thing.set_payload(request.payload());
  std::string json = MessageToJson(thing);
  CHECK(json.find(std::string(R"("payload":)") + kExactJsonCompact + ",") !=
        std::string::npos);
}

TEST_CASE("response_body renders one field; empty messages are 204") {
  config::v1::GetDeviceConfigResponse response;
  const Route& get = RouteFor("GET", "/api/configs/a4-cf-12-34-56-78");
  RenderedResponse unset = RenderResponse(get, response);
  CHECK_FALSE(unset.no_content);
  CHECK(unset.json == "null");

  config::v1::DeviceConfig* config = response.mutable_device_config();
  config->set_mac_address("a4-cf-12-34-56-78");
  config->set_device_name("Kitchen");
  config->set_content(kExactJson);
  RenderedResponse rendered = RenderResponse(get, response);
  CHECK(rendered.json ==
        std::string(
            R"({"mac_address":"a4-cf-12-34-56-78","device_name":"Kitchen",)"
            R"("device_entity_id":null,"enable_ota":null,"content":)") +
            kExactJson + "}");

  const Route& del = RouteFor("DELETE", "/api/configs/a4-cf-12-34-56-78");
  RenderedResponse deleted =
      RenderResponse(del, config::v1::DeleteDeviceConfigResponse());
  CHECK(deleted.no_content);
  CHECK(deleted.json.empty());

  config::v1::ListDeviceConfigsResponse list;
  list.add_configs()->set_mac_address("a4-cf-12-34-56-78");
  list.set_count(1);
  const Route& list_route = RouteFor("GET", "/api/configs");
  CHECK(RenderResponse(list_route, list).json ==
        R"({"configs":[{"mac_address":"a4-cf-12-34-56-78","device_name":null,)"
        R"("device_entity_id":null,"enable_ota":null}],"count":1})");
}

TEST_CASE("UTF-8 validation is strict") {
  CHECK(IsValidUtf8("h\xc3\xa9llo \xe2\x98\x83 \xf0\x9f\x98\x80"));
  CHECK_FALSE(IsValidUtf8("\xff"));
  CHECK_FALSE(IsValidUtf8("\xc0\xaf"));          // Overlong '/'.
  CHECK_FALSE(IsValidUtf8("\xed\xa0\x80"));      // Surrogate.
  CHECK_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // Past U+10FFFF.
  CHECK_FALSE(IsValidUtf8("\xe2\x98"));          // Truncated.
}

}  // namespace
}  // namespace iot2mqtt::gateway
