#include "iot2mqtt/sdk/json_builder.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "iot2mqtt/sdk/contract.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace iot2mqtt::sdk {

std::string DescribeJsonType(const rapidjson::Value& value) {
  switch (value.GetType()) {
    case rapidjson::kNullType:
      return "null";
    case rapidjson::kFalseType:
    case rapidjson::kTrueType:
      return "a boolean";
    case rapidjson::kObjectType:
      return "an object";
    case rapidjson::kArrayType:
      return "an array";
    case rapidjson::kStringType:
      return "a string";
    case rapidjson::kNumberType:
      return "a number";
  }
  return "unknown";
}

std::string JsonString(absl::string_view text) {
  std::string clean =
      IsValidUtf8(text) ? std::string(text) : SanitizeUtf8(text);
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.String(clean.data(), static_cast<rapidjson::SizeType>(clean.size()));
  return std::string(buffer.GetString(), buffer.GetSize());
}

JsonObjectBuilder& JsonObjectBuilder::Put(absl::string_view key,
                                          std::string json) {
  for (auto& member : members_) {
    if (member.first == key) {
      member.second = std::move(json);
      return *this;
    }
  }
  members_.emplace_back(std::string(key), std::move(json));
  return *this;
}

JsonObjectBuilder& JsonObjectBuilder::Set(absl::string_view key, bool value) {
  return Put(key, value ? "true" : "false");
}

JsonObjectBuilder& JsonObjectBuilder::Set(absl::string_view key,
                                          int64_t value) {
  return Put(key, absl::StrCat(value));
}

JsonObjectBuilder& JsonObjectBuilder::Set(absl::string_view key,
                                          uint64_t value) {
  return Put(key, absl::StrCat(value));
}

JsonObjectBuilder& JsonObjectBuilder::Set(absl::string_view key, double value) {
  if (!std::isfinite(value)) return Put(key, "null");
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.Double(value);
  return Put(key, std::string(buffer.GetString(), buffer.GetSize()));
}

JsonObjectBuilder& JsonObjectBuilder::Set(absl::string_view key,
                                          absl::string_view value) {
  return Put(key, JsonString(value));
}

JsonObjectBuilder& JsonObjectBuilder::SetNull(absl::string_view key) {
  return Put(key, "null");
}

JsonObjectBuilder& JsonObjectBuilder::SetRaw(absl::string_view key,
                                             absl::string_view json) {
  return Put(key, std::string(json));
}

std::string JsonObjectBuilder::Build() const {
  std::string out = "{";
  bool first = true;
  for (const auto& [key, json] : members_) {
    if (!first) out.push_back(',');
    first = false;
    absl::StrAppend(&out, JsonString(key), ":", json);
  }
  out.push_back('}');
  return out;
}

}  // namespace iot2mqtt::sdk
