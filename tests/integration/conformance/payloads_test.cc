// The checker's own timestamp and payload parsing (sdk/conformance): what it
// accepts decides whether a connector passes, so its edges are pinned here.

#include "sdk/conformance/payloads.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "catch2/catch.hpp"
#include "rapidjson/document.h"
#include "sdk/conformance/options.h"
#include "sdk/conformance/timestamps.h"

namespace iot2mqtt::conformance {
namespace {

absl::Time Utc(int y, int mo, int d, int h, int mi, int s) {
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s),
                         absl::UTCTimeZone());
}

TEST_CASE("timestamps: Z, offsets, fractions and zoneless forms",
          "[conformance]") {
  const absl::Time expected = Utc(2025, 10, 13, 10, 30, 0);
  auto z = ParseTimestamp("2025-10-13T10:30:00.123Z");
  REQUIRE(z.ok());
  CHECK(z->has_zone);
  CHECK(z->time == expected + absl::Milliseconds(123));

  auto offset = ParseTimestamp("2025-10-13T12:30:00+02:00");
  REQUIRE(offset.ok());
  CHECK(offset->time == expected);
  auto compact = ParseTimestamp("2025-10-13T05:00:00.5-0530");
  REQUIRE(compact.ok());
  CHECK(compact->time == expected + absl::Milliseconds(500));

  auto naive = ParseTimestamp("2025-10-13T10:30:00");
  REQUIRE(naive.ok());
  CHECK_FALSE(naive->has_zone);
  CHECK(naive->time == expected);

  for (const char* bad :
       {"2025-02-30T00:00:00Z", "2025-10-13 10:30:00Z", "2025-10-13T10:30:00.Z",
        "2025-10-13T10:30:00Zjunk", "2025-10-13T10:30Z", "1760351400",
        "2025-10-13T10:30:00+25:00", ""}) {
    INFO(bad);
    CHECK_FALSE(ParseTimestamp(bad).ok());
  }
}

TEST_CASE("timestamps: formatting round-trips", "[conformance]") {
  const absl::Time t = Utc(2025, 10, 13, 10, 30, 0) + absl::Milliseconds(7);
  CHECK(FormatTimestampUtc(t) == "2025-10-13T10:30:00.007Z");
  CHECK(FormatTimestampWithOffset(t, 330) == "2025-10-13T16:00:00.007+05:30");
  CHECK(FormatTimestampWithOffset(t, -90) == "2025-10-13T09:00:00.007-01:30");
  auto back = ParseTimestamp(FormatTimestampWithOffset(t, -90));
  REQUIRE(back.ok());
  CHECK(back->time == t);
}

std::string State(const std::string& timestamp, const std::string& device) {
  return absl::StrCat("{\"timestamp\":\"", timestamp, "\",\"device_id\":\"",
                      device, "\",\"state\":{\"power\":true}}");
}

TEST_CASE("payloads: state shape", "[conformance]") {
  rapidjson::Document doc;
  const std::string now = FormatTimestampUtc(absl::Now());
  CHECK(
      CheckStatePayload(State(now, "lamp"), "lamp", NotInFuture(), &doc).ok());
  // Local time sent without a zone (upstream's bug).
  absl::Status naive = CheckStatePayload(
      State("2025-10-13T10:30:00.000", "lamp"), "lamp", NotInFuture(), &doc);
  CHECK(absl::StrContains(naive.message(), "no zone"));
  // Local time at UTC+2 labelled Z.
  absl::Status ahead = CheckStatePayload(
      State(FormatTimestampUtc(absl::Now() + absl::Hours(2)), "lamp"), "lamp",
      NotInFuture(), &doc);
  CHECK(absl::StrContains(ahead.message(), "in the future"));
  CHECK_FALSE(
      CheckStatePayload(State(now, "other"), "lamp", NotInFuture(), &doc).ok());
  CHECK_FALSE(CheckStatePayload("{\"timestamp\":\"" + now +
                                    "\",\"device_id\":\"lamp\",\"state\":[]}",
                                "lamp", NotInFuture(), &doc)
                  .ok());
}

TEST_CASE("payloads: strict JSON", "[conformance]") {
  rapidjson::Document doc;
  CHECK(ParseJson("true", &doc).ok());
  CHECK(ParseJson("{\"r\":255}", &doc).ok());
  CHECK_FALSE(ParseJson("True", &doc).ok());
  CHECK_FALSE(ParseJson("None", &doc).ok());
  CHECK_FALSE(ParseJson("1 2", &doc).ok());
  CHECK_FALSE(ParseJson("\"\xff\"", &doc).ok());
}

TEST_CASE("payloads: meta info uptime is seconds, not an epoch",
          "[conformance]") {
  int64_t uptime = 0;
  const std::string head =
      "{\"instance_id\":\"i\",\"connector_type\":\"demo\",\"devices_count\":2,"
      "\"groups_count\":0,\"uptime\":";
  CHECK(CheckInfo(head + "42}", "i", 100, &uptime).ok());
  CHECK(uptime == 42);
  CHECK_FALSE(CheckInfo(head + "1760351400}", "i", 100, &uptime).ok());
  CHECK_FALSE(CheckInfo(head + "4.5}", "i", 100, &uptime).ok());
  CHECK_FALSE(CheckInfo(head + "42}", "j", 100, &uptime).ok());
}

TEST_CASE("payloads: devices list, group response, error", "[conformance]") {
  size_t count = 0;
  CHECK(CheckDevicesList("[{\"device_id\":\"a\",\"global_id\":\"i_a\","
                         "\"model\":\"m\",\"enabled\":true,\"online\":false}]",
                         "i", "a", &count)
            .ok());
  CHECK(count == 1);
  CHECK_FALSE(CheckDevicesList("[{\"device_id\":\"a\",\"global_id\":\"a\","
                               "\"model\":\"m\",\"enabled\":true,"
                               "\"online\":true}]",
                               "i", "a", &count)
                  .ok());
  CHECK_FALSE(CheckDevicesList("[]", "i", "a", &count).ok());

  const std::string now = FormatTimestampUtc(absl::Now());
  std::string status;
  std::vector<std::string> succeeded;
  CHECK(CheckGroupResponse(
            absl::StrCat("{\"cmd_id\":\"c\",\"status\":\"partial\","
                         "\"timestamp\":\"",
                         now,
                         "\",\"results\":{\"a\":{"
                         "\"status\":\"success\"},\"b\":{\"status\":\"error\","
                         "\"error_code\":\"DEVICE_OFFLINE\"}}}"),
            "c", NotInFuture(), &status, &succeeded)
            .ok());
  CHECK(succeeded == std::vector<std::string>{"a"});
  succeeded.clear();
  CHECK_FALSE(CheckGroupResponse(
                  absl::StrCat("{\"cmd_id\":\"c\",\"status\":\"success\","
                               "\"timestamp\":\"",
                               now,
                               "\",\"results\":{\"b\":{"
                               "\"status\":\"error\",\"error_code\":\"X\"}}}"),
                  "c", NotInFuture(), &status, &succeeded)
                  .ok());

  CHECK(CheckErrorPayload(
            absl::StrCat("{\"timestamp\":\"", now,
                         "\",\"error_code\":"
                         "\"INVALID_COMMAND\",\"message\":\"m\",\"severity\":"
                         "\"warning\"}"),
            "INVALID_COMMAND", "warning", NotInFuture())
            .ok());
  CHECK_FALSE(CheckErrorPayload(
                  absl::StrCat("{\"timestamp\":\"", now,
                               "\",\"error_code\":"
                               "\"invalid\",\"message\":\"m\",\"severity\":"
                               "\"warning\"}"),
                  "", "", NotInFuture())
                  .ok());
}

TEST_CASE("options: flags, defaults and every problem at once",
          "[conformance]") {
  auto options = ParseArgs({"--instance", "living", "--port=1884", "--only",
                            "status-online, last-will"});
  REQUIRE(options.ok());
  CHECK(options->host == "127.0.0.1");
  CHECK(options->port == 1884);
  CHECK(options->only ==
        std::vector<std::string>{"status-online", "last-will"});
  CHECK(options->timeout == absl::Seconds(5));

  auto bad = ParseArgs({"--port", "0", "--command", "[1]", "--base", "a/#"});
  REQUIRE_FALSE(bad.ok());
  for (const char* word : {"--port", "--command", "--base", "--instance"}) {
    INFO(word);
    CHECK(absl::StrContains(bad.status().message(), word));
  }
}

}  // namespace
}  // namespace iot2mqtt::conformance
