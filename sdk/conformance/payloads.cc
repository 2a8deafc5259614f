#include "sdk/conformance/payloads.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "rapidjson/error/en.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"
#include "sdk/conformance/timestamps.h"

namespace iot2mqtt::conformance {
namespace {

using ::rapidjson::Value;

absl::Status Invalid(absl::string_view a, absl::string_view b = "",
                     absl::string_view c = "", absl::string_view d = "") {
  return absl::InvalidArgumentError(absl::StrCat(a, b, c, d));
}

const char* TypeName(const Value& value) {
  if (value.IsObject()) return "an object";
  if (value.IsArray()) return "an array";
  if (value.IsString()) return "a string";
  if (value.IsBool()) return "a boolean";
  if (value.IsNull()) return "null";
  return "a number";
}

// Member `name` of `object` of the kind `is` accepts, or an error naming
// what came.
absl::Status Member(const Value& object, absl::string_view name,
                    bool (Value::*is)() const, absl::string_view kind,
                    const Value** out) {
  auto it =
      object.FindMember(Value(rapidjson::StringRef(name.data(), name.size())));
  if (it == object.MemberEnd()) return Invalid("no \"", name, "\"");
  if (!(it->value.*is)()) {
    return Invalid(absl::StrCat("\"", name, "\" is "), TypeName(it->value),
                   ", expected ", kind);
  }
  *out = &it->value;
  return absl::OkStatus();
}

absl::Status StringMember(const Value& object, absl::string_view name,
                          std::string* out) {
  const Value* value = nullptr;
  absl::Status status =
      Member(object, name, &Value::IsString, "a string", &value);
  if (status.ok()) out->assign(value->GetString(), value->GetStringLength());
  return status;
}

absl::Status ExpectString(const Value& object, absl::string_view name,
                          absl::string_view expected) {
  std::string actual;
  absl::Status status = StringMember(object, name, &actual);
  if (!status.ok()) return status;
  if (actual != expected) {
    return Invalid(absl::StrCat("\"", name, "\" is \"", actual),
                   absl::StrCat("\", expected \"", expected, "\""));
  }
  return absl::OkStatus();
}

absl::Status ParseObject(absl::string_view payload, rapidjson::Document* doc) {
  absl::Status parsed = ParseJson(payload, doc);
  if (!parsed.ok()) return parsed;
  if (!doc->IsObject()) {
    return Invalid("payload is ", TypeName(*doc), ", expected an object");
  }
  return absl::OkStatus();
}

absl::Status NonNegativeInteger(const Value& object, absl::string_view name,
                                int64_t* out) {
  const Value* value = nullptr;
  absl::Status status =
      Member(object, name, &Value::IsNumber, "an integer", &value);
  if (!status.ok()) return status;
  if (!value->IsInt64() || value->GetInt64() < 0) {
    return Invalid(
        "\"", name, "\" is ",
        absl::StrCat(JsonText(*value), ", expected a non-negative integer"));
  }
  *out = value->GetInt64();
  return absl::OkStatus();
}

}  // namespace

TimeWindow FreshSince(absl::Time sent) {
  return TimeWindow{sent - kClockSkew, absl::Now() + kClockSkew};
}

TimeWindow NotInFuture() {
  return TimeWindow{absl::InfinitePast(), absl::Now() + kClockSkew};
}

absl::Status ParseJson(absl::string_view text, rapidjson::Document* doc) {
  doc->Parse<rapidjson::kParseValidateEncodingFlag>(text.data(), text.size());
  if (doc->HasParseError()) {
    return Invalid(
        absl::StrCat("not JSON (", Shorten(text), ": ",
                     rapidjson::GetParseError_En(doc->GetParseError()),
                     " at offset ", doc->GetErrorOffset(), ")"));
  }
  return absl::OkStatus();
}

std::string JsonText(const Value& value) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  value.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

std::string Shorten(absl::string_view text) {
  constexpr size_t kMax = 160;
  std::string out = "`";
  for (size_t i = 0; i < text.size() && i < kMax; ++i) {
    const char c = text[i];
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += "?";
    } else {
      out += c;
    }
  }
  if (text.size() > kMax)
    absl::StrAppend(&out, "... (", text.size(), " bytes)");
  out += "`";
  return out;
}

bool IsValidId(absl::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '/' || c == '+' || c == '#' || u < 0x20 || u == 0x7f) {
      return false;
    }
  }
  return true;
}

bool IsUpperSnakeCase(absl::string_view text) {
  if (text.empty() ||
      !absl::ascii_isupper(static_cast<unsigned char>(text[0]))) {
    return false;
  }
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (!absl::ascii_isupper(u) && !absl::ascii_isdigit(u) && c != '_') {
      return false;
    }
  }
  return true;
}

absl::Status CheckTimestampMember(const Value& object, absl::string_view name,
                                  TimeWindow window) {
  std::string text;
  absl::Status status = StringMember(object, name, &text);
  if (!status.ok()) return status;
  absl::StatusOr<Timestamp> parsed = ParseTimestamp(text);
  if (!parsed.ok()) return Invalid(parsed.status().message());
  if (!parsed->has_zone) {
    return Invalid(
        "\"", name, "\" ",
        absl::StrCat("\"", text, "\" has no zone (expected UTC with Z)"));
  }
  const absl::Time now = absl::Now();
  if (parsed->time > window.not_after) {
    return Invalid(absl::StrCat(
        "\"", name, "\" \"", text, "\" is ",
        absl::FormatDuration(absl::Trunc(parsed->time - now, absl::Seconds(1))),
        " in the future (local time sent as UTC?)"));
  }
  if (parsed->time < window.not_before) {
    return Invalid(absl::StrCat(
        "\"", name, "\" \"", text, "\" is ",
        absl::FormatDuration(absl::Trunc(now - parsed->time, absl::Seconds(1))),
        " old for a reply just sent"));
  }
  return absl::OkStatus();
}

absl::Status CheckStatePayload(absl::string_view payload,
                               absl::string_view device, TimeWindow window,
                               rapidjson::Document* doc) {
  absl::Status status = ParseObject(payload, doc);
  if (!status.ok()) return status;
  status = CheckTimestampMember(*doc, "timestamp", window);
  if (!status.ok()) return status;
  status = ExpectString(*doc, "device_id", device);
  if (!status.ok()) return status;
  const Value* state = nullptr;
  return Member(*doc, "state", &Value::IsObject, "an object", &state);
}

absl::Status CheckCommandResponse(absl::string_view payload,
                                  absl::string_view cmd_id,
                                  absl::string_view status_expected,
                                  absl::string_view error_code,
                                  bool require_error_text, TimeWindow window,
                                  rapidjson::Document* doc) {
  absl::Status status = ParseObject(payload, doc);
  if (!status.ok()) return status;
  status = ExpectString(*doc, "cmd_id", cmd_id);
  if (!status.ok()) return status;
  std::string actual_status;
  status = StringMember(*doc, "status", &actual_status);
  if (!status.ok()) return status;
  if (actual_status != status_expected) {
    std::string why;
    if (doc->HasMember("error") && (*doc)["error"].IsString()) {
      why = absl::StrCat(" (error: ", (*doc)["error"].GetString(), ")");
    }
    if (doc->HasMember("error_code") && (*doc)["error_code"].IsString()) {
      why = absl::StrCat(" (", (*doc)["error_code"].GetString(), why, ")");
    }
    return Invalid("status \"", actual_status,
                   absl::StrCat("\", expected \"", status_expected, "\""), why);
  }
  status = CheckTimestampMember(*doc, "timestamp", window);
  if (!status.ok()) return status;
  if (actual_status == "error") {
    std::string code;
    status = StringMember(*doc, "error_code", &code);
    if (!status.ok()) return status;
    if (!error_code.empty() && code != error_code) {
      return Invalid("error_code \"", code,
                     absl::StrCat("\", expected \"", error_code, "\""));
    }
    if (!require_error_text) return absl::OkStatus();
    std::string message;
    return StringMember(*doc, "error", &message);
  }
  return absl::OkStatus();
}

absl::Status CheckErrorPayload(absl::string_view payload,
                               absl::string_view error_code,
                               absl::string_view severity, TimeWindow window) {
  rapidjson::Document doc;
  absl::Status status = ParseObject(payload, &doc);
  if (!status.ok()) return status;
  status = CheckTimestampMember(doc, "timestamp", window);
  if (!status.ok()) return status;
  std::string code, message, actual_severity;
  status = StringMember(doc, "error_code", &code);
  if (!status.ok()) return status;
  if (!IsUpperSnakeCase(code)) {
    return Invalid("error_code \"", code, "\" is not UPPER_SNAKE_CASE");
  }
  if (!error_code.empty() && code != error_code) {
    return Invalid("error_code \"", code,
                   absl::StrCat("\", expected \"", error_code, "\""));
  }
  status = StringMember(doc, "message", &message);
  if (!status.ok()) return status;
  status = StringMember(doc, "severity", &actual_severity);
  if (!status.ok()) return status;
  static const std::set<std::string> kSeverities = {"info", "warning", "error",
                                                    "critical"};
  if (kSeverities.count(actual_severity) == 0) {
    return Invalid("severity \"", actual_severity,
                   "\" is not info, warning, error or critical");
  }
  if (!severity.empty() && actual_severity != severity) {
    return Invalid("severity \"", actual_severity,
                   absl::StrCat("\", expected \"", severity, "\""));
  }
  return absl::OkStatus();
}

absl::Status CheckDevicesList(absl::string_view payload,
                              absl::string_view instance,
                              absl::string_view device, size_t* count) {
  rapidjson::Document doc;
  absl::Status status = ParseJson(payload, &doc);
  if (!status.ok()) return status;
  if (!doc.IsArray()) {
    return Invalid("payload is ", TypeName(doc), ", expected an array");
  }
  bool found = device.empty();
  for (rapidjson::SizeType i = 0; i < doc.Size(); ++i) {
    const Value& entry = doc[i];
    const std::string where = absl::StrCat("entry ", i, ": ");
    if (!entry.IsObject()) return Invalid(where, "not an object");
    std::string device_id, model;
    const Value* flag = nullptr;
    status = StringMember(entry, "device_id", &device_id);
    if (status.ok() && !IsValidId(device_id)) {
      status = Invalid("device_id \"", device_id, "\" is not a valid id");
    }
    if (status.ok()) {
      status = ExpectString(entry, "global_id",
                            absl::StrCat(instance, "_", device_id));
    }
    if (status.ok()) status = StringMember(entry, "model", &model);
    if (status.ok()) {
      status = Member(entry, "enabled", &Value::IsBool, "a boolean", &flag);
    }
    if (status.ok()) {
      status = Member(entry, "online", &Value::IsBool, "a boolean", &flag);
    }
    if (!status.ok()) return Invalid(where, status.message());
    if (device_id == device) found = true;
  }
  if (!found) return Invalid("device \"", device, "\" is not listed");
  *count = doc.Size();
  return absl::OkStatus();
}

absl::Status CheckInfo(absl::string_view payload, absl::string_view instance,
                       int64_t max_uptime_seconds, int64_t* uptime) {
  rapidjson::Document doc;
  absl::Status status = ParseObject(payload, &doc);
  if (!status.ok()) return status;
  status = ExpectString(doc, "instance_id", instance);
  if (!status.ok()) return status;
  std::string connector_type;
  status = StringMember(doc, "connector_type", &connector_type);
  if (!status.ok()) return status;
  if (connector_type.empty()) return Invalid("\"connector_type\" is empty");
  int64_t devices_count = 0, groups_count = 0;
  status = NonNegativeInteger(doc, "devices_count", &devices_count);
  if (!status.ok()) return status;
  status = NonNegativeInteger(doc, "groups_count", &groups_count);
  if (!status.ok()) return status;
  status = NonNegativeInteger(doc, "uptime", uptime);
  if (!status.ok()) return status;
  if (*uptime > max_uptime_seconds) {
    return Invalid(absl::StrCat("\"uptime\" is ", *uptime, ", more than the ",
                                max_uptime_seconds,
                                " s the connector can have run (an epoch?)"));
  }
  return absl::OkStatus();
}

absl::Status CheckGetResponse(absl::string_view payload,
                              absl::string_view device, absl::string_view id,
                              const std::vector<std::string>& keys,
                              TimeWindow window) {
  rapidjson::Document doc;
  absl::Status status = CheckStatePayload(payload, device, window, &doc);
  if (!status.ok()) return status;
  status = ExpectString(doc, "id", id);
  if (!status.ok()) return status;
  const std::vector<std::string> actual = Keys(doc["state"]);
  if (std::set<std::string>(actual.begin(), actual.end()) !=
      std::set<std::string>(keys.begin(), keys.end())) {
    return Invalid("\"state\" has keys [", absl::StrJoin(actual, ","),
                   "], expected only [",
                   absl::StrCat(absl::StrJoin(keys, ","), "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckGroupResponse(absl::string_view payload,
                                absl::string_view cmd_id, TimeWindow window,
                                std::string* status_out,
                                std::vector<std::string>* succeeded) {
  rapidjson::Document doc;
  absl::Status status = ParseObject(payload, &doc);
  if (!status.ok()) return status;
  status = ExpectString(doc, "cmd_id", cmd_id);
  if (!status.ok()) return status;
  status = StringMember(doc, "status", status_out);
  if (!status.ok()) return status;
  if (*status_out != "success" && *status_out != "partial" &&
      *status_out != "error") {
    return Invalid("status \"", *status_out,
                   "\" is not success, partial or error");
  }
  status = CheckTimestampMember(doc, "timestamp", window);
  if (!status.ok()) return status;
  const Value* results = nullptr;
  status = Member(doc, "results", &Value::IsObject, "an object", &results);
  if (!status.ok()) return status;
  size_t ok = 0, failed = 0;
  for (auto it = results->MemberBegin(); it != results->MemberEnd(); ++it) {
    const std::string member = it->name.GetString();
    const std::string where = absl::StrCat("results.", member, ": ");
    if (!it->value.IsObject()) return Invalid(where, "not an object");
    std::string member_status;
    status = StringMember(it->value, "status", &member_status);
    if (!status.ok()) return Invalid(where, status.message());
    if (member_status == "success") {
      ++ok;
      succeeded->push_back(member);
    } else if (member_status == "error") {
      ++failed;
      std::string code;
      status = StringMember(it->value, "error_code", &code);
      if (!status.ok()) return Invalid(where, status.message());
    } else {
      return Invalid(where, "status \"", member_status,
                     "\" is not success or error");
    }
  }
  if (ok + failed == 0 && *status_out != "error") {
    return Invalid("\"results\" is empty but status is \"", *status_out, "\"");
  }
  const std::string consistent = failed == 0 ? "success"
                                 : ok == 0   ? "error"
                                             : "partial";
  if (ok + failed > 0 && *status_out != consistent) {
    return Invalid(absl::StrCat("status \"", *status_out, "\" but ", ok,
                                " members succeeded and ", failed, " failed"));
  }
  return absl::OkStatus();
}

std::vector<std::string> Keys(const Value& object) {
  std::vector<std::string> keys;
  if (!object.IsObject()) return keys;
  for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
    keys.emplace_back(it->name.GetString(), it->name.GetStringLength());
  }
  return keys;
}

}  // namespace iot2mqtt::conformance
