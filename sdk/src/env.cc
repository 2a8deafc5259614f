#include "iot2mqtt/sdk/env.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace iot2mqtt::sdk {

std::optional<std::string> ProcessEnv::Get(absl::string_view name) const {
  const char* value = std::getenv(std::string(name).c_str());
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

std::optional<std::string> MapEnv::Get(absl::string_view name) const {
  auto it = values_.find(std::string(name));
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> EnvReader::Lookup(absl::string_view name) const {
  std::optional<std::string> value = env_.Get(name);
  if (value.has_value() && value->empty()) return std::nullopt;
  return value;
}

std::string EnvReader::String(absl::string_view name,
                              absl::string_view fallback) {
  return Lookup(name).value_or(std::string(fallback));
}

std::string EnvReader::Required(absl::string_view name) {
  std::optional<std::string> value = Lookup(name);
  if (!value.has_value()) {
    problems_.push_back(absl::StrCat(name, " is required but not set"));
    return "";
  }
  return *value;
}

int64_t EnvReader::Int(absl::string_view name, int64_t fallback, int64_t min,
                       int64_t max) {
  std::optional<std::string> value = Lookup(name);
  if (!value.has_value()) return fallback;
  int64_t parsed = 0;
  if (!absl::SimpleAtoi(*value, &parsed)) {
    problems_.push_back(
        absl::StrCat(name, "=\"", *value, "\" is not an integer"));
    return fallback;
  }
  if (parsed < min || parsed > max) {
    problems_.push_back(absl::StrCat(name, "=", parsed, " is out of range [",
                                     min, ", ", max, "]"));
    return fallback;
  }
  return parsed;
}

bool EnvReader::Bool(absl::string_view name, bool fallback) {
  std::optional<std::string> value = Lookup(name);
  if (!value.has_value()) return fallback;
  std::string lower = absl::AsciiStrToLower(*value);
  if (lower == "1" || lower == "true" || lower == "yes" || lower == "on") {
    return true;
  }
  if (lower == "0" || lower == "false" || lower == "no" || lower == "off") {
    return false;
  }
  problems_.push_back(
      absl::StrCat(name, "=\"", *value, "\" is not a boolean (true/false)"));
  return fallback;
}

std::vector<std::string> EnvReader::List(
    absl::string_view name, const std::vector<std::string>& fallback) {
  std::optional<std::string> value = Lookup(name);
  if (!value.has_value()) return fallback;
  absl::string_view text = absl::StripAsciiWhitespace(*value);
  if (absl::ConsumePrefix(&text, "[") && !absl::ConsumeSuffix(&text, "]")) {
    problems_.push_back(absl::StrCat(name, " starts with '[' but has no ']'"));
    return fallback;
  }
  std::vector<std::string> items;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (item.size() >= 2 && (item.front() == '"' || item.front() == '\'') &&
        item.back() == item.front()) {
      item = item.substr(1, item.size() - 2);
    }
    if (!item.empty()) items.emplace_back(item);
  }
  return items;
}

absl::Status EnvReader::Finish() const {
  if (problems_.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("invalid configuration: ", absl::StrJoin(problems_, "; ")));
}

}  // namespace iot2mqtt::sdk
