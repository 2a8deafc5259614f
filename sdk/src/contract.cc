#include "iot2mqtt/sdk/contract.h"

#include <cmath>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "rapidjson/document.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace iot2mqtt::sdk {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

// Length of the well-formed UTF-8 sequence at s[i] (0 when ill-formed); the
// code point goes to *cp.
size_t DecodeUtf8(absl::string_view s, size_t i, uint32_t* cp) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char b0 = byte(i);
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  size_t n = 0;
  uint32_t min = 0;
  if ((b0 & 0xE0) == 0xC0) {
    n = 2;
    *cp = b0 & 0x1F;
    min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 3;
    *cp = b0 & 0x0F;
    min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 4;
    *cp = b0 & 0x07;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    unsigned char b = byte(i + k);
    if ((b & 0xC0) != 0x80) return 0;
    *cp = (*cp << 6) | (b & 0x3F);
  }
  if (*cp < min || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF)) {
    return 0;
  }
  return n;
}

void WriteText(Writer& writer, absl::string_view text) {
  if (IsValidUtf8(text)) {
    writer.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
  } else {
    std::string clean = SanitizeUtf8(text);
    writer.String(clean.data(), static_cast<rapidjson::SizeType>(clean.size()));
  }
}

void WriteKey(Writer& writer, absl::string_view key) {
  if (IsValidUtf8(key)) {
    writer.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
  } else {
    std::string clean = SanitizeUtf8(key);
    writer.Key(clean.data(), static_cast<rapidjson::SizeType>(clean.size()));
  }
}

// Embeds one JSON value given as text; an empty text becomes {}.
void WriteRaw(Writer& writer, absl::string_view json) {
  if (json.empty()) json = "{}";
  writer.RawValue(json.data(), json.size(), rapidjson::kObjectType);
}

void WriteTime(Writer& writer, absl::Time time) {
  WriteText(writer, FormatTimestamp(time));
}

std::string Done(const rapidjson::StringBuffer& buffer) {
  return std::string(buffer.GetString(), buffer.GetSize());
}

// ---- parsing helpers ------------------------------------------------------

// The members of a JSON object payload, looked up by key (the last of
// duplicate keys wins, as in most JSON libraries).
class Members {
 public:
  static absl::StatusOr<Members> Parse(absl::string_view payload,
                                       absl::string_view what) {
    absl::StatusOr<std::vector<JsonMember>> members = SplitJsonObject(payload);
    if (!members.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " is not a JSON object: ", members.status().message()));
    }
    return Members(*std::move(members));
  }

  const JsonMember* Find(absl::string_view key) const {
    for (auto it = members_.rbegin(); it != members_.rend(); ++it) {
      if (it->key == key) return &*it;
    }
    return nullptr;
  }
  const std::vector<JsonMember>& all() const { return members_; }

  absl::StatusOr<std::string> String(absl::string_view key) const;
  absl::StatusOr<std::optional<std::string>> OptionalString(
      absl::string_view key) const;
  absl::StatusOr<int64_t> Int(absl::string_view key) const;
  absl::StatusOr<bool> Bool(absl::string_view key) const;
  absl::StatusOr<absl::Time> Time(absl::string_view key) const;
  // The compact text of an object member.
  absl::StatusOr<std::string> Object(absl::string_view key) const;

 private:
  explicit Members(std::vector<JsonMember> members)
      : members_(std::move(members)) {}
  absl::StatusOr<const JsonMember*> Required(absl::string_view key) const {
    const JsonMember* member = Find(key);
    if (member == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("missing \"", key, "\""));
    }
    return member;
  }
  std::vector<JsonMember> members_;
};

absl::Status WrongType(absl::string_view key, absl::string_view expected,
                       absl::string_view json) {
  absl::string_view got = JsonTypeOf(json);
  if (got == "true" || got == "false") got = "boolean";
  return absl::InvalidArgumentError(
      absl::StrCat("\"", key, "\" must be ", expected, ", got ", got));
}

absl::StatusOr<std::string> ParseStringLiteral(absl::string_view key,
                                               absl::string_view json) {
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError() || !doc.IsString()) {
    return WrongType(key, "a string", json);
  }
  return std::string(doc.GetString(), doc.GetStringLength());
}

absl::StatusOr<std::string> Members::String(absl::string_view key) const {
  absl::StatusOr<const JsonMember*> member = Required(key);
  if (!member.ok()) return member.status();
  return ParseStringLiteral(key, (*member)->value);
}

absl::StatusOr<std::optional<std::string>> Members::OptionalString(
    absl::string_view key) const {
  const JsonMember* member = Find(key);
  if (member == nullptr) return std::optional<std::string>();
  absl::StatusOr<std::string> value = ParseStringLiteral(key, member->value);
  if (!value.ok()) return value.status();
  return std::optional<std::string>(*std::move(value));
}

absl::StatusOr<int64_t> Members::Int(absl::string_view key) const {
  absl::StatusOr<const JsonMember*> member = Required(key);
  if (!member.ok()) return member.status();
  rapidjson::Document doc;
  doc.Parse((*member)->value.data(), (*member)->value.size());
  if (doc.HasParseError() || !doc.IsInt64()) {
    return WrongType(key, "an integer", (*member)->value);
  }
  return doc.GetInt64();
}

absl::StatusOr<bool> Members::Bool(absl::string_view key) const {
  absl::StatusOr<const JsonMember*> member = Required(key);
  if (!member.ok()) return member.status();
  const std::string& v = (*member)->value;
  if (v == "true") return true;
  if (v == "false") return false;
  return WrongType(key, "a boolean", v);
}

absl::StatusOr<absl::Time> Members::Time(absl::string_view key) const {
  absl::StatusOr<std::string> text = String(key);
  if (!text.ok()) return text.status();
  absl::StatusOr<absl::Time> time = ParseTimestamp(*text);
  if (!time.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", key, "\": ", time.status().message()));
  }
  return *time;
}

absl::StatusOr<std::string> Members::Object(absl::string_view key) const {
  absl::StatusOr<const JsonMember*> member = Required(key);
  if (!member.ok()) return member.status();
  if (JsonTypeOf((*member)->value) != "object") {
    return WrongType(key, "an object", (*member)->value);
  }
  return (*member)->value;
}

absl::StatusOr<ResultStatus> ParseResultStatus(absl::string_view name,
                                               bool allow_partial) {
  if (name == "success") return ResultStatus::kSuccess;
  if (name == "error") return ResultStatus::kError;
  if (allow_partial && name == "partial") return ResultStatus::kPartial;
  return absl::InvalidArgumentError(absl::StrCat(
      "\"status\" must be ",
      allow_partial ? "success, partial or error" : "success or error",
      ", got \"", SanitizeUtf8(name), "\""));
}

// Two decimal digits at text[pos].
bool TwoDigits(absl::string_view text, size_t pos, int* out) {
  if (pos + 2 > text.size() || !absl::ascii_isdigit(text[pos]) ||
      !absl::ascii_isdigit(text[pos + 1])) {
    return false;
  }
  *out = (text[pos] - '0') * 10 + (text[pos + 1] - '0');
  return true;
}

std::string Seconds(absl::Duration d) {
  double s = std::round(absl::ToDoubleSeconds(d) * 10) / 10;
  return absl::StrFormat("%g", s);
}

}  // namespace

// ---------------------------------------------------------------------------
// Names

bool IsValidUtf8(absl::string_view text) {
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    size_t n = DecodeUtf8(text, i, &cp);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string SanitizeUtf8(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    size_t n = DecodeUtf8(text, i, &cp);
    if (n == 0) {
      out.append("\xEF\xBF\xBD");
      ++i;
    } else {
      out.append(text.data() + i, n);
      i += n;
    }
  }
  return out;
}

absl::Status ValidateId(absl::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError("id is empty");
  if (id.size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "id is ", id.size(), " bytes long (limit ", kMaxIdBytes, ")"));
  }
  for (size_t i = 0; i < id.size();) {
    uint32_t cp = 0;
    size_t n = DecodeUtf8(id, i, &cp);
    if (n == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("id \"", SanitizeUtf8(id), "\" is not valid UTF-8"));
    }
    if (cp == '/' || cp == '+' || cp == '#') {
      return absl::InvalidArgumentError(absl::StrCat(
          "id \"", id, "\" contains '", std::string(1, char(cp)), "'"));
    }
    if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "id \"", absl::CHexEscape(id), "\" contains a control character"));
    }
    i += n;
  }
  return absl::OkStatus();
}

absl::Status ValidateBaseTopic(absl::string_view base) {
  if (base.empty()) return absl::InvalidArgumentError("base topic is empty");
  if (!IsValidUtf8(base)) {
    return absl::InvalidArgumentError("base topic is not valid UTF-8");
  }
  if (base.find_first_of(absl::string_view("+#\0", 3)) !=
      absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("base topic \"", absl::CHexEscape(base),
                     "\" contains '+', '#' or NUL"));
  }
  if (base.front() == '/' || base.back() == '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("base topic \"", base, "\" starts or ends with '/'"));
  }
  return absl::OkStatus();
}

Topics::Topics(std::string base, std::string instance)
    : base_(std::move(base)),
      instance_(std::move(instance)),
      root_(absl::StrCat(base_, "/v1/instances/", instance_)) {}

absl::StatusOr<Topics> Topics::Create(absl::string_view base,
                                      absl::string_view instance) {
  if (absl::Status s = ValidateBaseTopic(base); !s.ok()) return s;
  if (absl::Status s = ValidateId(instance); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("instance ", s.message()));
  }
  return Topics(std::string(base), std::string(instance));
}

std::string Topics::All() const { return absl::StrCat(root_, "/#"); }
std::string Topics::Status() const { return absl::StrCat(root_, "/status"); }
std::string Topics::State(absl::string_view d) const {
  return absl::StrCat(root_, "/devices/", d, "/state");
}
std::string Topics::StateProperty(absl::string_view d,
                                  absl::string_view key) const {
  return absl::StrCat(root_, "/devices/", d, "/state/", key);
}
std::string Topics::Events(absl::string_view d) const {
  return absl::StrCat(root_, "/devices/", d, "/events");
}
std::string Topics::Error(absl::string_view d) const {
  return absl::StrCat(root_, "/devices/", d, "/error");
}
std::string Topics::Command(absl::string_view d) const {
  return absl::StrCat(root_, "/devices/", d, "/cmd");
}
std::string Topics::CommandResponse(absl::string_view d) const {
  return absl::StrCat(root_, "/devices/", d, "/cmd/response");
}
std::string Topics::Get(absl::string_view d) const {
  return absl::StrCat(root_, "/devices/", d, "/get");
}
std::string Topics::GetResponse(absl::string_view d) const {
  return absl::StrCat(root_, "/devices/", d, "/get/response");
}
std::string Topics::GroupCommand(absl::string_view g) const {
  return absl::StrCat(root_, "/groups/", g, "/cmd");
}
std::string Topics::GroupCommandResponse(absl::string_view g) const {
  return absl::StrCat(root_, "/groups/", g, "/cmd/response");
}
std::string Topics::MetaRequest(absl::string_view type) const {
  return absl::StrCat(root_, "/meta/request/", type);
}
std::string Topics::DevicesList() const {
  return absl::StrCat(root_, "/meta/devices_list");
}
std::string Topics::Info() const { return absl::StrCat(root_, "/meta/info"); }

std::vector<std::string> Topics::InboundFilters() const {
  return {absl::StrCat(root_, "/devices/+/cmd"),
          absl::StrCat(root_, "/devices/+/get"),
          absl::StrCat(root_, "/groups/+/cmd"),
          absl::StrCat(root_, "/meta/request/+")};
}

absl::StatusOr<TopicRef> Topics::Parse(absl::string_view topic) const {
  absl::string_view rest = topic;
  if (!absl::ConsumePrefix(&rest, root_) || !absl::ConsumePrefix(&rest, "/")) {
    return absl::NotFoundError("topic is outside the instance");
  }
  std::vector<absl::string_view> levels = absl::StrSplit(rest, '/');
  const auto not_contract = [&] {
    return absl::NotFoundError(
        absl::StrCat("\"", SanitizeUtf8(rest), "\" is not a contract topic"));
  };
  const auto id_at = [&](size_t i, TopicKind kind) -> absl::StatusOr<TopicRef> {
    if (absl::Status s = ValidateId(levels[i]); !s.ok()) return s;
    TopicRef ref;
    ref.kind = kind;
    ref.id = std::string(levels[i]);
    return ref;
  };
  switch (levels.size()) {
    case 1:
      if (levels[0] == "status") return TopicRef{TopicKind::kStatus, "", ""};
      return not_contract();
    case 2:
      if (levels[0] == "meta" && levels[1] == "devices_list") {
        return TopicRef{TopicKind::kDevicesList, "", ""};
      }
      if (levels[0] == "meta" && levels[1] == "info") {
        return TopicRef{TopicKind::kInfo, "", ""};
      }
      return not_contract();
    case 3:
      if (levels[0] == "devices") {
        if (levels[2] == "state") return id_at(1, TopicKind::kState);
        if (levels[2] == "events") return id_at(1, TopicKind::kEvents);
        if (levels[2] == "error") return id_at(1, TopicKind::kError);
        if (levels[2] == "cmd") return id_at(1, TopicKind::kCommand);
        if (levels[2] == "get") return id_at(1, TopicKind::kGet);
      } else if (levels[0] == "groups" && levels[2] == "cmd") {
        return id_at(1, TopicKind::kGroupCommand);
      } else if (levels[0] == "meta" && levels[1] == "request") {
        return id_at(2, TopicKind::kMetaRequest);
      }
      return not_contract();
    case 4:
      if (levels[0] == "devices") {
        if (levels[2] == "state") {
          absl::StatusOr<TopicRef> ref = id_at(1, TopicKind::kStateProperty);
          if (!ref.ok()) return ref;
          if (absl::Status s = ValidateId(levels[3]); !s.ok()) return s;
          ref->property = std::string(levels[3]);
          return ref;
        }
        if (levels[2] == "cmd" && levels[3] == "response") {
          return id_at(1, TopicKind::kCommandResponse);
        }
        if (levels[2] == "get" && levels[3] == "response") {
          return id_at(1, TopicKind::kGetResponse);
        }
      } else if (levels[0] == "groups" && levels[2] == "cmd" &&
                 levels[3] == "response") {
        return id_at(1, TopicKind::kGroupCommandResponse);
      }
      return not_contract();
    default:
      return not_contract();
  }
}

absl::StatusOr<TopicRef> Topics::ParseInbound(absl::string_view topic) const {
  absl::StatusOr<TopicRef> ref = Parse(topic);
  if (!ref.ok()) return ref;
  switch (ref->kind) {
    case TopicKind::kCommand:
    case TopicKind::kGet:
    case TopicKind::kGroupCommand:
    case TopicKind::kMetaRequest:
      return ref;
    default:
      return absl::NotFoundError("not an inbound topic");
  }
}

// ---------------------------------------------------------------------------
// Timestamps

std::string FormatTimestamp(absl::Time time) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time, absl::UTCTimeZone());
}

absl::StatusOr<absl::Time> ParseTimestamp(absl::string_view text) {
  const auto bad = [&](absl::string_view why) {
    std::string shown = SanitizeUtf8(text.substr(0, 64));
    return absl::InvalidArgumentError(
        absl::StrCat("timestamp \"", absl::CHexEscape(shown), "\" ", why));
  };
  // YYYY-MM-DD?HH:MM:SS
  if (text.size() < 19) return bad("is not ISO 8601 (YYYY-MM-DDTHH:MM:SS)");
  int y_hi = 0, y_lo = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  if (!TwoDigits(text, 0, &y_hi) || !TwoDigits(text, 2, &y_lo) ||
      text[4] != '-' || !TwoDigits(text, 5, &mo) || text[7] != '-' ||
      !TwoDigits(text, 8, &d) ||
      (text[10] != 'T' && text[10] != 't' && text[10] != ' ') ||
      !TwoDigits(text, 11, &h) || text[13] != ':' ||
      !TwoDigits(text, 14, &mi) || text[16] != ':' ||
      !TwoDigits(text, 17, &s)) {
    return bad("is not ISO 8601 (YYYY-MM-DDTHH:MM:SS)");
  }
  int year = y_hi * 100 + y_lo;
  size_t pos = 19;
  absl::Duration fraction;
  if (pos < text.size() && (text[pos] == '.' || text[pos] == ',')) {
    ++pos;
    size_t start = pos;
    int64_t nanos = 0;
    int digits = 0;
    while (pos < text.size() && absl::ascii_isdigit(text[pos])) {
      if (digits < 9) {
        nanos = nanos * 10 + (text[pos] - '0');
        ++digits;
      }
      ++pos;
    }
    if (pos == start) return bad("has an empty fraction");
    for (; digits < 9; ++digits) nanos *= 10;
    fraction = absl::Nanoseconds(nanos);
  }
  absl::Duration offset;
  if (pos < text.size()) {
    char c = text[pos];
    if ((c == 'Z' || c == 'z') && pos + 1 == text.size()) {
      pos = text.size();
    } else if (c == '+' || c == '-') {
      int oh = 0, om = 0;
      absl::string_view zone = text.substr(pos + 1);
      bool ok = false;
      if (zone.size() == 2) {
        ok = TwoDigits(zone, 0, &oh);
      } else if (zone.size() == 4) {
        ok = TwoDigits(zone, 0, &oh) && TwoDigits(zone, 2, &om);
      } else if (zone.size() == 5) {
        ok = TwoDigits(zone, 0, &oh) && zone[2] == ':' &&
             TwoDigits(zone, 3, &om);
      }
      if (!ok || oh > 23 || om > 59) return bad("has an invalid UTC offset");
      offset = absl::Hours(oh) + absl::Minutes(om);
      if (c == '-') offset = -offset;
      pos = text.size();
    } else {
      return bad("has trailing characters");
    }
  }
  if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59) {
    return bad("is not a valid date and time");
  }
  absl::CivilSecond civil(year, mo, d, h, mi, s);
  if (civil.day() != d || civil.month() != mo) {
    return bad("is not a valid date");
  }
  return absl::FromCivil(civil, absl::UTCTimeZone()) + fraction - offset;
}

absl::Status CheckCommandTime(const std::optional<std::string>& timestamp,
                              absl::Time now) {
  if (!timestamp.has_value()) return absl::OkStatus();
  absl::StatusOr<std::string> text =
      ParseStringLiteral("timestamp", *timestamp);
  if (!text.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("unparsable timestamp: ", text.status().message()));
  }
  absl::StatusOr<absl::Time> sent = ParseTimestamp(*text);
  if (!sent.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("unparsable ", sent.status().message()));
  }
  absl::Duration age = now - *sent;
  if (age > kStaleCommandAge) {
    return absl::FailedPreconditionError(
        absl::StrCat("command is ", Seconds(age), " s old (limit ",
                     Seconds(kStaleCommandAge), " s)"));
  }
  if (-age > kMaxCommandFutureSkew) {
    return absl::FailedPreconditionError(absl::StrCat(
        "command timestamp is ", Seconds(-age), " s in the future (limit ",
        Seconds(kMaxCommandFutureSkew), " s)"));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Payloads

absl::string_view ErrorSeverityName(ErrorSeverity severity) {
  switch (severity) {
    case ErrorSeverity::kInfo:
      return "info";
    case ErrorSeverity::kWarning:
      return "warning";
    case ErrorSeverity::kError:
      return "error";
    case ErrorSeverity::kCritical:
      return "critical";
  }
  return "error";
}

std::optional<ErrorSeverity> ParseErrorSeverity(absl::string_view name) {
  if (name == "info") return ErrorSeverity::kInfo;
  if (name == "warning") return ErrorSeverity::kWarning;
  if (name == "error") return ErrorSeverity::kError;
  if (name == "critical") return ErrorSeverity::kCritical;
  return std::nullopt;
}

absl::string_view ResultStatusName(ResultStatus status) {
  switch (status) {
    case ResultStatus::kSuccess:
      return "success";
    case ResultStatus::kPartial:
      return "partial";
    case ResultStatus::kError:
      return "error";
  }
  return "error";
}

std::string BuildStatePayload(const StateMessage& message) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  w.Key("timestamp");
  WriteTime(w, message.timestamp);
  w.Key("device_id");
  WriteText(w, message.device_id);
  w.Key("state");
  WriteRaw(w, message.state);
  w.EndObject();
  return Done(buffer);
}

absl::StatusOr<StateMessage> ParseStatePayload(absl::string_view payload) {
  absl::StatusOr<Members> m = Members::Parse(payload, "state payload");
  if (!m.ok()) return m.status();
  StateMessage message;
  IOT2MQTT_ASSIGN_OR_RETURN(message.timestamp, m->Time("timestamp"));
  IOT2MQTT_ASSIGN_OR_RETURN(message.device_id, m->String("device_id"));
  IOT2MQTT_ASSIGN_OR_RETURN(message.state, m->Object("state"));
  return message;
}

absl::StatusOr<std::string> ParsePropertyPayload(absl::string_view payload) {
  return RewriteJson(payload);
}

std::string BuildEventPayload(const EventMessage& message) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  w.Key("timestamp");
  WriteTime(w, message.timestamp);
  w.Key("event");
  WriteText(w, message.event);
  w.Key("data");
  WriteRaw(w, message.data);
  w.EndObject();
  return Done(buffer);
}

absl::StatusOr<EventMessage> ParseEventPayload(absl::string_view payload) {
  absl::StatusOr<Members> m = Members::Parse(payload, "event payload");
  if (!m.ok()) return m.status();
  EventMessage message;
  IOT2MQTT_ASSIGN_OR_RETURN(message.timestamp, m->Time("timestamp"));
  IOT2MQTT_ASSIGN_OR_RETURN(message.event, m->String("event"));
  const JsonMember* data = m->Find("data");
  if (data == nullptr) {
    return absl::InvalidArgumentError("missing \"data\"");
  }
  message.data = data->value;
  return message;
}

std::string BuildErrorPayload(const ErrorMessage& message) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  w.Key("timestamp");
  WriteTime(w, message.timestamp);
  w.Key("error_code");
  WriteText(w, message.error_code);
  w.Key("message");
  WriteText(w, message.message);
  w.Key("severity");
  WriteText(w, ErrorSeverityName(message.severity));
  if (message.retry_info.has_value()) {
    const RetryInfo& retry = *message.retry_info;
    w.Key("retry_info");
    w.StartObject();
    w.Key("attempt");
    w.Int64(retry.attempt);
    if (retry.max_attempts.has_value()) {
      w.Key("max_attempts");
      w.Int64(*retry.max_attempts);
    }
    if (retry.next_retry.has_value()) {
      w.Key("next_retry");
      WriteTime(w, *retry.next_retry);
    }
    w.EndObject();
  }
  w.EndObject();
  return Done(buffer);
}

absl::StatusOr<ErrorMessage> ParseErrorPayload(absl::string_view payload) {
  absl::StatusOr<Members> m = Members::Parse(payload, "error payload");
  if (!m.ok()) return m.status();
  ErrorMessage message;
  IOT2MQTT_ASSIGN_OR_RETURN(message.timestamp, m->Time("timestamp"));
  IOT2MQTT_ASSIGN_OR_RETURN(message.error_code, m->String("error_code"));
  IOT2MQTT_ASSIGN_OR_RETURN(message.message, m->String("message"));
  std::string severity;
  IOT2MQTT_ASSIGN_OR_RETURN(severity, m->String("severity"));
  std::optional<ErrorSeverity> parsed = ParseErrorSeverity(severity);
  if (!parsed.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"severity\" must be info, warning, error or critical, "
                     "got \"",
                     SanitizeUtf8(severity), "\""));
  }
  message.severity = *parsed;
  if (m->Find("retry_info") != nullptr) {
    std::string retry_text;
    IOT2MQTT_ASSIGN_OR_RETURN(retry_text, m->Object("retry_info"));
    absl::StatusOr<Members> r = Members::Parse(retry_text, "retry_info");
    if (!r.ok()) return r.status();
    RetryInfo retry;
    IOT2MQTT_ASSIGN_OR_RETURN(retry.attempt, r->Int("attempt"));
    if (r->Find("max_attempts") != nullptr) {
      int64_t max = 0;
      IOT2MQTT_ASSIGN_OR_RETURN(max, r->Int("max_attempts"));
      retry.max_attempts = max;
    }
    if (r->Find("next_retry") != nullptr) {
      absl::Time next;
      IOT2MQTT_ASSIGN_OR_RETURN(next, r->Time("next_retry"));
      retry.next_retry = next;
    }
    message.retry_info = retry;
  }
  return message;
}

absl::StatusOr<CommandRequest> ParseCommandPayload(
    absl::string_view payload, std::optional<std::string>* id_out) {
  absl::StatusOr<Members> m = Members::Parse(payload, "command payload");
  if (!m.ok()) return m.status();
  CommandRequest command;
  IOT2MQTT_ASSIGN_OR_RETURN(command.id, m->OptionalString("id"));
  if (id_out != nullptr) *id_out = command.id;
  if (const JsonMember* ts = m->Find("timestamp"); ts != nullptr) {
    command.timestamp = ts->value;
  }
  if (const JsonMember* timeout = m->Find("timeout"); timeout != nullptr) {
    rapidjson::Document doc;
    doc.Parse(timeout->value.data(), timeout->value.size());
    if (doc.HasParseError() || !doc.IsNumber() || doc.GetDouble() < 0 ||
        !std::isfinite(doc.GetDouble())) {
      return absl::InvalidArgumentError(
          "\"timeout\" must be a non-negative number of milliseconds");
    }
    double ms = doc.GetDouble();
    command.timeout_ms =
        ms > 9.0e15 ? int64_t{9000000000000000} : static_cast<int64_t>(ms);
  }
  if (const JsonMember* values = m->Find("values"); values != nullptr) {
    if (JsonTypeOf(values->value) != "object") {
      return WrongType("values", "an object", values->value);
    }
    command.values = values->value;
    return command;
  }
  // Legacy flat form: every other member is a value.
  command.legacy_flat = true;
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  for (const JsonMember& member : m->all()) {
    if (member.key == "id" || member.key == "timestamp" ||
        member.key == "timeout") {
      continue;
    }
    WriteKey(w, member.key);
    WriteRaw(w, member.value);
  }
  w.EndObject();
  command.values = Done(buffer);
  return command;
}

std::string BuildCommandPayload(const CommandRequest& command) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  if (command.id.has_value()) {
    w.Key("id");
    WriteText(w, *command.id);
  }
  if (command.timestamp.has_value()) {
    w.Key("timestamp");
    WriteRaw(w, *command.timestamp);
  }
  w.Key("values");
  WriteRaw(w, command.values);
  if (command.timeout_ms.has_value()) {
    w.Key("timeout");
    w.Int64(*command.timeout_ms);
  }
  w.EndObject();
  return Done(buffer);
}

std::string BuildCommandPayload(absl::string_view id, absl::Time now,
                                absl::string_view values,
                                std::optional<int64_t> timeout_ms) {
  CommandRequest command;
  command.id = std::string(id);
  command.timestamp = JsonString(FormatTimestamp(now));
  command.values = std::string(values);
  command.timeout_ms = timeout_ms;
  return BuildCommandPayload(command);
}

std::string BuildCommandResponsePayload(const CommandResponse& response) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  w.Key("cmd_id");
  WriteText(w, response.cmd_id);
  bool success = response.status == ResultStatus::kSuccess;
  w.Key("status");
  WriteText(w, success ? "success" : "error");
  w.Key("timestamp");
  WriteTime(w, response.timestamp);
  if (success) {
    w.Key("result");
    WriteRaw(w, response.result);
  } else {
    w.Key("error_code");
    WriteText(w, response.error_code);
    w.Key("error");
    WriteText(w, response.error);
  }
  w.EndObject();
  return Done(buffer);
}

absl::StatusOr<CommandResponse> ParseCommandResponsePayload(
    absl::string_view payload) {
  absl::StatusOr<Members> m = Members::Parse(payload, "command response");
  if (!m.ok()) return m.status();
  CommandResponse response;
  IOT2MQTT_ASSIGN_OR_RETURN(response.cmd_id, m->String("cmd_id"));
  std::string status;
  IOT2MQTT_ASSIGN_OR_RETURN(status, m->String("status"));
  IOT2MQTT_ASSIGN_OR_RETURN(response.status, ParseResultStatus(status, false));
  IOT2MQTT_ASSIGN_OR_RETURN(response.timestamp, m->Time("timestamp"));
  if (response.status == ResultStatus::kSuccess) {
    response.result.clear();
    if (m->Find("result") != nullptr) {
      IOT2MQTT_ASSIGN_OR_RETURN(response.result, m->Object("result"));
    }
  } else {
    IOT2MQTT_ASSIGN_OR_RETURN(response.error_code, m->String("error_code"));
    IOT2MQTT_ASSIGN_OR_RETURN(response.error, m->String("error"));
  }
  return response;
}

absl::StatusOr<GetRequest> ParseGetPayload(absl::string_view payload,
                                           std::optional<std::string>* id_out) {
  if (absl::StripAsciiWhitespace(payload).empty()) return GetRequest{};
  absl::StatusOr<Members> m = Members::Parse(payload, "get payload");
  if (!m.ok()) return m.status();
  GetRequest request;
  IOT2MQTT_ASSIGN_OR_RETURN(request.id, m->OptionalString("id"));
  if (id_out != nullptr) *id_out = request.id;
  if (const JsonMember* props = m->Find("properties"); props != nullptr) {
    rapidjson::Document doc;
    doc.Parse(props->value.data(), props->value.size());
    if (doc.HasParseError() || !doc.IsArray()) {
      return WrongType("properties", "an array of strings", props->value);
    }
    std::vector<std::string> names;
    for (const rapidjson::Value& item : doc.GetArray()) {
      if (!item.IsString()) {
        return absl::InvalidArgumentError(
            "\"properties\" must be an array of strings");
      }
      names.emplace_back(item.GetString(), item.GetStringLength());
    }
    request.properties = std::move(names);
  }
  return request;
}

std::string BuildGetPayload(const GetRequest& request) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  if (request.properties.has_value()) {
    w.Key("properties");
    w.StartArray();
    for (const std::string& name : *request.properties) WriteText(w, name);
    w.EndArray();
  }
  if (request.id.has_value()) {
    w.Key("id");
    WriteText(w, *request.id);
  }
  w.EndObject();
  return Done(buffer);
}

std::string BuildGetResponsePayload(const GetResponse& response) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  w.Key("timestamp");
  WriteTime(w, response.timestamp);
  w.Key("device_id");
  WriteText(w, response.device_id);
  if (response.state.has_value()) {
    w.Key("state");
    WriteRaw(w, *response.state);
  } else {
    w.Key("error_code");
    WriteText(w, response.error_code);
    w.Key("error");
    WriteText(w, response.error);
  }
  if (response.id.has_value()) {
    w.Key("id");
    WriteText(w, *response.id);
  }
  w.EndObject();
  return Done(buffer);
}

absl::StatusOr<GetResponse> ParseGetResponsePayload(absl::string_view payload) {
  absl::StatusOr<Members> m = Members::Parse(payload, "get response");
  if (!m.ok()) return m.status();
  GetResponse response;
  IOT2MQTT_ASSIGN_OR_RETURN(response.timestamp, m->Time("timestamp"));
  IOT2MQTT_ASSIGN_OR_RETURN(response.device_id, m->String("device_id"));
  IOT2MQTT_ASSIGN_OR_RETURN(response.id, m->OptionalString("id"));
  if (m->Find("state") != nullptr) {
    std::string state;
    IOT2MQTT_ASSIGN_OR_RETURN(state, m->Object("state"));
    response.state = std::move(state);
  } else {
    IOT2MQTT_ASSIGN_OR_RETURN(response.error, m->String("error"));
    std::optional<std::string> code;
    IOT2MQTT_ASSIGN_OR_RETURN(code, m->OptionalString("error_code"));
    response.error_code = code.value_or("");
  }
  return response;
}

ResultStatus AggregateStatus(const std::vector<GroupMemberResult>& results) {
  size_t ok = 0;
  for (const GroupMemberResult& r : results) ok += r.success ? 1 : 0;
  if (results.empty() || ok == 0) return ResultStatus::kError;
  if (ok == results.size()) return ResultStatus::kSuccess;
  return ResultStatus::kPartial;
}

std::string BuildGroupCommandResponsePayload(
    const GroupCommandResponse& response) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  w.Key("cmd_id");
  WriteText(w, response.cmd_id);
  w.Key("status");
  WriteText(w, ResultStatusName(response.status));
  w.Key("timestamp");
  WriteTime(w, response.timestamp);
  w.Key("results");
  w.StartObject();
  for (const GroupMemberResult& r : response.results) {
    WriteKey(w, r.device_id);
    w.StartObject();
    w.Key("status");
    WriteText(w, r.success ? "success" : "error");
    if (!r.success) {
      w.Key("error_code");
      WriteText(w, r.error_code);
      w.Key("error");
      WriteText(w, r.error);
    }
    w.EndObject();
  }
  w.EndObject();
  if (!response.error_code.empty()) {
    w.Key("error_code");
    WriteText(w, response.error_code);
    w.Key("error");
    WriteText(w, response.error);
  }
  w.EndObject();
  return Done(buffer);
}

absl::StatusOr<GroupCommandResponse> ParseGroupCommandResponsePayload(
    absl::string_view payload) {
  absl::StatusOr<Members> m = Members::Parse(payload, "group response");
  if (!m.ok()) return m.status();
  GroupCommandResponse response;
  IOT2MQTT_ASSIGN_OR_RETURN(response.cmd_id, m->String("cmd_id"));
  std::string status;
  IOT2MQTT_ASSIGN_OR_RETURN(status, m->String("status"));
  IOT2MQTT_ASSIGN_OR_RETURN(response.status, ParseResultStatus(status, true));
  IOT2MQTT_ASSIGN_OR_RETURN(response.timestamp, m->Time("timestamp"));
  if (m->Find("results") != nullptr) {
    std::string results_text;
    IOT2MQTT_ASSIGN_OR_RETURN(results_text, m->Object("results"));
    absl::StatusOr<Members> results = Members::Parse(results_text, "results");
    if (!results.ok()) return results.status();
    for (const JsonMember& member : results->all()) {
      absl::StatusOr<Members> r =
          Members::Parse(member.value, absl::StrCat("results.", member.key));
      if (!r.ok()) return r.status();
      GroupMemberResult result;
      result.device_id = member.key;
      std::string member_status;
      IOT2MQTT_ASSIGN_OR_RETURN(member_status, r->String("status"));
      ResultStatus parsed;
      IOT2MQTT_ASSIGN_OR_RETURN(parsed,
                                ParseResultStatus(member_status, false));
      result.success = parsed == ResultStatus::kSuccess;
      if (!result.success) {
        IOT2MQTT_ASSIGN_OR_RETURN(result.error_code, r->String("error_code"));
        IOT2MQTT_ASSIGN_OR_RETURN(result.error, r->String("error"));
      }
      response.results.push_back(std::move(result));
    }
  }
  std::optional<std::string> code, error;
  IOT2MQTT_ASSIGN_OR_RETURN(code, m->OptionalString("error_code"));
  IOT2MQTT_ASSIGN_OR_RETURN(error, m->OptionalString("error"));
  response.error_code = code.value_or("");
  response.error = error.value_or("");
  return response;
}

std::string BuildDevicesListPayload(absl::string_view instance,
                                    const std::vector<DeviceListEntry>& list) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartArray();
  for (const DeviceListEntry& entry : list) {
    w.StartObject();
    w.Key("device_id");
    WriteText(w, entry.device_id);
    w.Key("global_id");
    WriteText(w, absl::StrCat(instance, "_", entry.device_id));
    w.Key("model");
    WriteText(w, entry.model.empty() ? "unknown" : entry.model);
    w.Key("enabled");
    w.Bool(entry.enabled);
    w.Key("online");
    w.Bool(entry.online);
    w.EndObject();
  }
  w.EndArray();
  return Done(buffer);
}

absl::StatusOr<std::vector<DeviceListEntry>> ParseDevicesListPayload(
    absl::string_view payload) {
  absl::StatusOr<std::string> compact = RewriteJson(payload);
  if (!compact.ok()) return compact.status();
  if (JsonTypeOf(*compact) != "array") {
    return absl::InvalidArgumentError("devices_list is not a JSON array");
  }
  rapidjson::Document doc;
  doc.Parse(compact->data(), compact->size());
  std::vector<DeviceListEntry> list;
  for (const rapidjson::Value& item : doc.GetArray()) {
    rapidjson::StringBuffer buffer;
    Writer w(buffer);
    item.Accept(w);
    absl::StatusOr<Members> m =
        Members::Parse(absl::string_view(buffer.GetString(), buffer.GetSize()),
                       "devices_list entry");
    if (!m.ok()) return m.status();
    DeviceListEntry entry;
    IOT2MQTT_ASSIGN_OR_RETURN(entry.device_id, m->String("device_id"));
    IOT2MQTT_ASSIGN_OR_RETURN(entry.global_id, m->String("global_id"));
    IOT2MQTT_ASSIGN_OR_RETURN(entry.model, m->String("model"));
    IOT2MQTT_ASSIGN_OR_RETURN(entry.enabled, m->Bool("enabled"));
    IOT2MQTT_ASSIGN_OR_RETURN(entry.online, m->Bool("online"));
    list.push_back(std::move(entry));
  }
  return list;
}

std::string BuildInfoPayload(const InstanceInfo& info) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  w.Key("instance_id");
  WriteText(w, info.instance_id);
  w.Key("connector_type");
  WriteText(w, info.connector_type);
  w.Key("devices_count");
  w.Int64(info.devices_count);
  w.Key("groups_count");
  w.Int64(info.groups_count);
  w.Key("uptime");
  w.Int64(info.uptime_seconds);
  w.EndObject();
  return Done(buffer);
}

absl::StatusOr<InstanceInfo> ParseInfoPayload(absl::string_view payload) {
  absl::StatusOr<Members> m = Members::Parse(payload, "info payload");
  if (!m.ok()) return m.status();
  InstanceInfo info;
  IOT2MQTT_ASSIGN_OR_RETURN(info.instance_id, m->String("instance_id"));
  IOT2MQTT_ASSIGN_OR_RETURN(info.connector_type, m->String("connector_type"));
  IOT2MQTT_ASSIGN_OR_RETURN(info.devices_count, m->Int("devices_count"));
  IOT2MQTT_ASSIGN_OR_RETURN(info.groups_count, m->Int("groups_count"));
  IOT2MQTT_ASSIGN_OR_RETURN(info.uptime_seconds, m->Int("uptime"));
  return info;
}

}  // namespace iot2mqtt::sdk
