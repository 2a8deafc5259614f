#ifndef IOT2MQTT_SDK_JSON_BUILDER_H_
#define IOT2MQTT_SDK_JSON_BUILDER_H_

// Builds a compact JSON object, the form in which connectors hand device
// state and event data to the SDK:
//
//   return sdk::JsonObjectBuilder()
//       .Set("power", true)
//       .Set("brightness", 80)
//       .SetRaw("color", R"({"r":255,"g":0,"b":0})")
//       .Build();  // {"power":true,"brightness":80,"color":{...}}
//
// Keys keep their insertion order; setting a key again replaces its value in
// place. Non-finite doubles become null; strings are written as UTF-8 with
// invalid bytes replaced by U+FFFD.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "rapidjson/document.h"

namespace iot2mqtt::sdk {

// "null", "a boolean", "an object", "an array", "a string", "a number":
// for messages such as "devices must be an array, got a string".
std::string DescribeJsonType(const rapidjson::Value& value);

class JsonObjectBuilder {
 public:
  JsonObjectBuilder& Set(absl::string_view key, bool value);
  JsonObjectBuilder& Set(absl::string_view key, int value) {
    return Set(key, static_cast<int64_t>(value));
  }
  JsonObjectBuilder& Set(absl::string_view key, int64_t value);
  JsonObjectBuilder& Set(absl::string_view key, uint64_t value);
  JsonObjectBuilder& Set(absl::string_view key, double value);
  JsonObjectBuilder& Set(absl::string_view key, absl::string_view value);
  JsonObjectBuilder& Set(absl::string_view key, const char* value) {
    return Set(key, absl::string_view(value));
  }
  JsonObjectBuilder& Set(absl::string_view key, const std::string& value) {
    return Set(key, absl::string_view(value));
  }
  JsonObjectBuilder& SetNull(absl::string_view key);
  // `json` must be one valid JSON value (e.g. another Build() result); it is
  // embedded as is.
  JsonObjectBuilder& SetRaw(absl::string_view key, absl::string_view json);

  bool empty() const { return members_.empty(); }
  std::string Build() const;

 private:
  JsonObjectBuilder& Put(absl::string_view key, std::string json);
  std::vector<std::pair<std::string, std::string>> members_;
};

// One JSON string literal (with quotes) for `text`, invalid UTF-8 replaced.
std::string JsonString(absl::string_view text);

}  // namespace iot2mqtt::sdk

#endif  // IOT2MQTT_SDK_JSON_BUILDER_H_
