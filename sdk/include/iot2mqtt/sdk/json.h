#ifndef IOT2MQTT_SDK_JSON_H_
#define IOT2MQTT_SDK_JSON_H_

// Exact JSON handling for untrusted input. Documents are validated strictly
// (RFC 8259, UTF-8 checked, nesting depth limited) and re-written keeping the
// exact text of every number (so 64-bit integers beyond 2^53, 0.1 and 1e300
// survive), every string's characters and the order of object keys.

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace iot2mqtt::sdk {

enum class JsonFormat {
  kCompact,  // No whitespace.
  kPretty,   // Two-space indentation, for files people read.
};

inline constexpr int kMaxJsonDepth = 64;

// Validates `text` as exactly one JSON value and re-writes it. Errors are
// INVALID_ARGUMENT with the byte offset and RapidJSON's description.
absl::StatusOr<std::string> RewriteJson(
    absl::string_view text, JsonFormat format = JsonFormat::kCompact);

// One member of a JSON object: its key and its value as compact JSON text.
struct JsonMember {
  std::string key;
  std::string value;
};

// Validates `text` as a JSON object and returns its members in document
// order, each value re-written compactly with numbers kept exact. Errors are
// INVALID_ARGUMENT ("expected a JSON object, got array", parse errors with
// their offset).
absl::StatusOr<std::vector<JsonMember>> SplitJsonObject(absl::string_view text);

// The JSON type name of the first value in `text` ("object", "array",
// "string", "number", "true", "false", "null"), "" when it starts with none.
absl::string_view JsonTypeOf(absl::string_view text);

// The type of the first value in `text` for messages: "an object",
// "an array", "a string", "a number", "a boolean", "null", or
// "something else" (the text form of DescribeJsonType in json_builder.h).
std::string DescribeJsonType(absl::string_view text);

}  // namespace iot2mqtt::sdk

#endif  // IOT2MQTT_SDK_JSON_H_
