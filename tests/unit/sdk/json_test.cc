#include "iot2mqtt/sdk/json.h"

#include <string>

#include "catch2/catch.hpp"

namespace iot2mqtt::sdk {
namespace {

TEST_CASE("RewriteJson: numbers keep their exact text", "[unit][json]") {
  const std::string input =
      R"({"big":12345678901234567890,"max":9223372036854775807,)"
      R"("tenth":0.1,"huge":1e300,"tiny":1.5e-300,"neg":-0.0,"frac":3.14159265358979323846264338327950288})";
  auto out = RewriteJson(input);
  REQUIRE(out.ok());
  CHECK(*out == input);
}

TEST_CASE("RewriteJson: strings keep unicode and keys keep their order",
          "[unit][json]") {
  auto out = RewriteJson(R"({ "z": "h\u00e9llo ☃ 😀", "a": [1, 2], "m": {} })");
  REQUIRE(out.ok());
  CHECK(*out ==
        "{\"z\":\"h\xC3\xA9llo \xE2\x98\x83 "
        "\xF0\x9F\x98\x80\",\"a\":[1,2],\"m\":{}}");
}

TEST_CASE("RewriteJson: pretty output re-parses to the same compact text",
          "[unit][json]") {
  const std::string input = R"({"a":{"b":[1,2.50,{"c":null}]},"d":true})";
  auto pretty = RewriteJson(input, JsonFormat::kPretty);
  REQUIRE(pretty.ok());
  CHECK(pretty->find("\n  \"a\"") != std::string::npos);
  auto compact = RewriteJson(*pretty);
  REQUIRE(compact.ok());
  CHECK(*compact == input);
}

TEST_CASE("RewriteJson: rejects malformed documents with an offset",
          "[unit][json]") {
  for (const char* bad : {"", "{", "{\"a\":}", "[1,]", "{\"a\":1} x", "NaN",
                          "{'a':1}", "\"\\ud800\""}) {
    INFO(bad);
    auto out = RewriteJson(bad);
    REQUIRE_FALSE(out.ok());
    CHECK(out.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK(out.status().message().find("offset") != absl::string_view::npos);
  }
}

TEST_CASE("RewriteJson: rejects invalid UTF-8", "[unit][json]") {
  auto out = RewriteJson("{\"a\":\"\xC3\x28\"}");
  REQUIRE_FALSE(out.ok());
  CHECK(out.status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("RewriteJson: rejects nesting beyond the limit", "[unit][json]") {
  std::string deep(kMaxJsonDepth + 1, '[');
  deep += std::string(kMaxJsonDepth + 1, ']');
  auto out = RewriteJson(deep);
  REQUIRE_FALSE(out.ok());
  CHECK(out.status().message().find("nesting") != absl::string_view::npos);
  std::string ok(kMaxJsonDepth, '[');
  ok += std::string(kMaxJsonDepth, ']');
  CHECK(RewriteJson(ok).ok());
}

TEST_CASE("SplitJsonObject: members in order with exact values",
          "[unit][json]") {
  auto members = SplitJsonObject(
      R"({"content": {"n": 12345678901234567890, "x": [0.1]}, "s": "t", "b": false, "nil": null})");
  REQUIRE(members.ok());
  REQUIRE(members->size() == 4);
  CHECK((*members)[0].key == "content");
  CHECK((*members)[0].value == R"({"n":12345678901234567890,"x":[0.1]})");
  CHECK((*members)[1].key == "s");
  CHECK((*members)[1].value == "\"t\"");
  CHECK((*members)[2].value == "false");
  CHECK((*members)[3].value == "null");
}

TEST_CASE("SplitJsonObject: empty object has no members", "[unit][json]") {
  auto members = SplitJsonObject(" {} ");
  REQUIRE(members.ok());
  CHECK(members->empty());
}

TEST_CASE("SplitJsonObject: names the type when it is not an object",
          "[unit][json]") {
  auto array = SplitJsonObject("[1,2]");
  REQUIRE_FALSE(array.ok());
  CHECK(array.status().message() == "expected a JSON object, got array");
  auto number = SplitJsonObject("42");
  REQUIRE_FALSE(number.ok());
  CHECK(number.status().message() == "expected a JSON object, got number");
  auto broken = SplitJsonObject("{\"a\":");
  REQUIRE_FALSE(broken.ok());
  CHECK(broken.status().message().find("offset") != absl::string_view::npos);
}

TEST_CASE("JsonTypeOf: reads the first token", "[unit][json]") {
  CHECK(JsonTypeOf("  {}") == "object");
  CHECK(JsonTypeOf("[") == "array");
  CHECK(JsonTypeOf("\"x\"") == "string");
  CHECK(JsonTypeOf("-1") == "number");
  CHECK(JsonTypeOf("null") == "null");
  CHECK(JsonTypeOf("") == "");
}

}  // namespace
}  // namespace iot2mqtt::sdk
