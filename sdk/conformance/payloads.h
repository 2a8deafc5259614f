#ifndef IOT2MQTT_SDK_CONFORMANCE_PAYLOADS_H_
#define IOT2MQTT_SDK_CONFORMANCE_PAYLOADS_H_

// Validators for the payloads of docs/mqtt-contract.md, written for the
// checker alone (independent of the SDK's builders and parsers). Each returns
// OK or INVALID_ARGUMENT with a one-line description of what is wrong.

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "rapidjson/document.h"

namespace iot2mqtt::conformance {

// How far a connector's clock may be ahead of the checker's, and how old
// the timestamp of a reply may be relative to its request.
inline constexpr absl::Duration kClockSkew = absl::Seconds(5);

// The window a timestamp must fall in; InfinitePast() for retained messages
// of unknown age.
struct TimeWindow {
  absl::Time not_before = absl::InfinitePast();
  absl::Time not_after = absl::InfiniteFuture();
};
// From `sent - kClockSkew` to now + kClockSkew.
TimeWindow FreshSince(absl::Time sent);
// Anything up to now + kClockSkew.
TimeWindow NotInFuture();

// Parses exactly one strict JSON value (UTF-8 validated, nothing after it).
absl::Status ParseJson(absl::string_view text, rapidjson::Document* doc);
// Compact JSON text of `value`.
std::string JsonText(const rapidjson::Value& value);
// `text` quoted for a one-line report: newlines escaped, cut after 160 bytes.
std::string Shorten(absl::string_view text);
// Ids in topics: 1-128 bytes, no '/', '+', '#', NUL or control characters.
bool IsValidId(absl::string_view id);
bool IsUpperSnakeCase(absl::string_view text);

// Member `name` of `object` as a timestamp inside `window`.
absl::Status CheckTimestampMember(const rapidjson::Value& object,
                                  absl::string_view name, TimeWindow window);

// `devices/{d}/state`: {"timestamp", "device_id": d, "state": {...}}.
// On success `*doc` holds the parsed payload.
absl::Status CheckStatePayload(absl::string_view payload,
                               absl::string_view device, TimeWindow window,
                               rapidjson::Document* doc);

// `devices/{d}/cmd/response` and `groups/{g}/cmd/response` common part:
// cmd_id, status, timestamp; for "error" also error_code (== `error_code`
// unless empty) and, with `require_error_text`, a string `error`. `*doc`
// holds the parsed payload.
absl::Status CheckCommandResponse(absl::string_view payload,
                                  absl::string_view cmd_id,
                                  absl::string_view status,
                                  absl::string_view error_code,
                                  bool require_error_text, TimeWindow window,
                                  rapidjson::Document* doc);

// `devices/{d}/error`: timestamp, error_code (== `error_code` unless empty),
// message, severity (== `severity` unless empty; always one of the four).
absl::Status CheckErrorPayload(absl::string_view payload,
                               absl::string_view error_code,
                               absl::string_view severity, TimeWindow window);

// `meta/devices_list`: an array of {device_id, global_id = {i}_{d}, model,
// enabled, online}; contains `device` unless empty. `*count` gets its size.
absl::Status CheckDevicesList(absl::string_view payload,
                              absl::string_view instance,
                              absl::string_view device, size_t* count);

// `meta/info`: {instance_id = i, connector_type, devices_count,
// groups_count, uptime}; uptime an integer number of seconds, at most
// `max_uptime_seconds`.
absl::Status CheckInfo(absl::string_view payload, absl::string_view instance,
                       int64_t max_uptime_seconds, int64_t* uptime);

// `devices/{d}/get/response` to a filtered get: {timestamp, device_id: d,
// state: {exactly `keys`}, id}.
absl::Status CheckGetResponse(absl::string_view payload,
                              absl::string_view device, absl::string_view id,
                              const std::vector<std::string>& keys,
                              TimeWindow window);

// `groups/{g}/cmd/response`: the common part plus `results` (one
// {"status": "success"|"error", ...} per member) consistent with `status`.
// `*succeeded` gets the members that succeeded.
absl::Status CheckGroupResponse(absl::string_view payload,
                                absl::string_view cmd_id, TimeWindow window,
                                std::string* status,
                                std::vector<std::string>* succeeded);

// Top-level keys of a JSON object, in document order.
std::vector<std::string> Keys(const rapidjson::Value& object);

}  // namespace iot2mqtt::conformance

#endif  // IOT2MQTT_SDK_CONFORMANCE_PAYLOADS_H_
