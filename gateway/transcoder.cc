#include "gateway/transcoder.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/json_util.h"
#include "iot2mqtt/api/v1/annotations.pb.h"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/log.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"
#include "services/common/status.h"

namespace iot2mqtt::gateway {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

absl::Status Invalid(absl::string_view reason, absl::string_view message,
                     const std::map<std::string, std::string>& metadata = {}) {
  return common::WithReason(absl::InvalidArgumentError(message), reason,
                            metadata);
}

bool IsWellKnownType(const Descriptor* type) {
  return type->file()->package() == "google.protobuf";
}

bool IsWrapperType(const Descriptor* type) {
  static const std::set<std::string>* const kWrappers =
      new std::set<std::string>{
          "google.protobuf.DoubleValue", "google.protobuf.FloatValue",
          "google.protobuf.Int64Value",  "google.protobuf.UInt64Value",
          "google.protobuf.Int32Value",  "google.protobuf.UInt32Value",
          "google.protobuf.BoolValue",   "google.protobuf.StringValue",
          "google.protobuf.BytesValue"};
  return kWrappers->count(type->full_name()) > 0;
}

bool IsSingularMessage(const FieldDescriptor* field) {
  return field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE &&
         !field->is_repeated();
}

// By proto name, else by JSON name (as protobuf's JSON parser accepts both).
const FieldDescriptor* FindField(const Descriptor* type,
                                 absl::string_view name) {
  const FieldDescriptor* field = type->FindFieldByName(std::string(name));
  if (field != nullptr) return field;
  for (int i = 0; i < type->field_count(); ++i) {
    if (type->field(i)->json_name() == name) return type->field(i);
  }
  return nullptr;
}

// Whether a request body for `type` needs our raw_json handling somewhere
// below (through singular message fields; repeated and map fields go to
// protobuf's parser as they are).
bool ContainsRawJson(const Descriptor* type,
                     std::set<const Descriptor*>* visiting) {
  if (!visiting->insert(type).second) return false;
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* field = type->field(i);
    if (IsRawJsonField(field)) return true;
    if (IsSingularMessage(field) && !IsWellKnownType(field->message_type()) &&
        ContainsRawJson(field->message_type(), visiting)) {
      return true;
    }
  }
  return false;
}

bool ContainsRawJson(const Descriptor* type) {
  std::set<const Descriptor*> visiting;
  return ContainsRawJson(type, &visiting);
}

absl::Status ParseObject(absl::string_view json, Message* message) {
  absl::StatusOr<std::vector<sdk::JsonMember>> members =
      sdk::SplitJsonObject(json);
  if (!members.ok()) {
    return Invalid(kInvalidJson, absl::StrCat("the request body is not valid: ",
                                              members.status().message()));
  }
  const Descriptor* type = message->GetDescriptor();
  std::string rest = "{";
  std::vector<std::pair<const FieldDescriptor*, const std::string*>> raw;
  std::vector<std::pair<const FieldDescriptor*, const std::string*>> nested;
  for (const sdk::JsonMember& member : *members) {
    const FieldDescriptor* field = FindField(type, member.key);
    if (field != nullptr && IsRawJsonField(field)) {
      if (field->is_repeated()) {
        return Invalid(kInvalidRequestBody,
                       absl::StrCat("field \"", field->name(),
                                    "\" can't be set from a request body"));
      }
      raw.emplace_back(field, &member.value);
      continue;
    }
    if (field != nullptr && IsSingularMessage(field) &&
        !IsWellKnownType(field->message_type()) &&
        ContainsRawJson(field->message_type())) {
      nested.emplace_back(field, &member.value);
      continue;
    }
    if (rest.size() > 1) rest += ",";
    absl::StrAppend(&rest, sdk::JsonQuote(member.key), ":", member.value);
  }
  rest += "}";

  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  google::protobuf::util::Status parsed =
      google::protobuf::util::JsonStringToMessage(rest, message, options);
  if (!parsed.ok()) {
    return Invalid(
        kInvalidRequestBody,
        absl::StrCat("the request body does not fit ", type->full_name(), ": ",
                     std::string(parsed.message())));
  }
  const Reflection* reflection = message->GetReflection();
  for (const auto& [field, value] : raw) {
    if (*value == "null") {
      reflection->ClearField(message, field);
    } else {
      reflection->SetString(message, field, *value);
    }
  }
  for (const auto& [field, value] : nested) {
    if (*value == "null") {
      reflection->ClearField(message, field);
      continue;
    }
    if (sdk::JsonTypeOf(*value) != "object") {
      return Invalid(
          kInvalidRequestBody,
          absl::StrCat("field \"", field->name(), "\" must be a JSON object"));
    }
    if (absl::Status s =
            ParseObject(*value, reflection->MutableMessage(message, field));
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

bool IsBlank(absl::string_view text) {
  return absl::StripAsciiWhitespace(text).empty();
}

}  // namespace

bool IsRawJsonField(const FieldDescriptor* field) {
  return field->type() == FieldDescriptor::TYPE_STRING &&
         field->options().GetExtension(iot2mqtt::api::v1::raw_json);
}

bool IsValidUtf8(absl::string_view text) {
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int length;
    uint32_t code_point;
    if (c >= 0xc2 && c <= 0xdf) {
      length = 2;
      code_point = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      length = 3;
      code_point = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      length = 4;
      code_point = c & 0x07;
    } else {
      return false;
    }
    if (i + length > n) return false;
    for (int k = 1; k < length; ++k) {
      unsigned char next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      code_point = (code_point << 6) | (next & 0x3f);
    }
    if ((length == 3 && code_point < 0x800) ||
        (length == 4 && code_point < 0x10000) || code_point > 0x10ffff ||
        (code_point >= 0xd800 && code_point <= 0xdfff)) {
      return false;
    }
    i += length;
  }
  return true;
}

absl::Status JsonObjectToMessage(absl::string_view json, Message* message) {
  message->Clear();
  return ParseObject(json, message);
}

absl::Status SetFieldFromText(Message* message, const FieldDescriptor* field,
                              absl::string_view text) {
  const Reflection* reflection = message->GetReflection();
  const bool repeated = field->is_repeated();
  auto bad = [field](absl::string_view expected) {
    return absl::InvalidArgumentError(
        absl::StrCat("field \"", field->name(), "\" expects ", expected));
  };
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      const Descriptor* type = field->message_type();
      if (field->is_map() || !IsWellKnownType(type)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "field \"", field->name(), "\" can't be set from text"));
      }
      Message* sub = repeated ? reflection->AddMessage(message, field)
                              : reflection->MutableMessage(message, field);
      if (IsWrapperType(type)) {
        return SetFieldFromText(sub, type->FindFieldByName("value"), text);
      }
      const std::string& name = type->full_name();
      if (name == "google.protobuf.Timestamp" ||
          name == "google.protobuf.Duration" ||
          name == "google.protobuf.FieldMask") {
        if (!IsValidUtf8(text)) return bad("valid UTF-8");
        google::protobuf::util::Status parsed =
            google::protobuf::util::JsonStringToMessage(sdk::JsonQuote(text),
                                                        sub);
        if (!parsed.ok()) return bad(absl::StrCat("a valid ", type->name()));
        return absl::OkStatus();
      }
      return absl::InvalidArgumentError(
          absl::StrCat("field \"", field->name(), "\" can't be set from text"));
    }
    case FieldDescriptor::CPPTYPE_INT32: {
      int32_t value;
      if (!absl::SimpleAtoi(text, &value)) return bad("a 32-bit integer");
      repeated ? reflection->AddInt32(message, field, value)
               : reflection->SetInt32(message, field, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t value;
      if (!absl::SimpleAtoi(text, &value)) return bad("a 64-bit integer");
      repeated ? reflection->AddInt64(message, field, value)
               : reflection->SetInt64(message, field, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t value;
      if (!absl::SimpleAtoi(text, &value)) {
        return bad("an unsigned 32-bit integer");
      }
      repeated ? reflection->AddUInt32(message, field, value)
               : reflection->SetUInt32(message, field, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t value;
      if (!absl::SimpleAtoi(text, &value)) {
        return bad("an unsigned 64-bit integer");
      }
      repeated ? reflection->AddUInt64(message, field, value)
               : reflection->SetUInt64(message, field, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_DOUBLE: {
      double value;
      if (!absl::SimpleAtod(text, &value)) return bad("a number");
      repeated ? reflection->AddDouble(message, field, value)
               : reflection->SetDouble(message, field, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_FLOAT: {
      float value;
      if (!absl::SimpleAtof(text, &value)) return bad("a number");
      repeated ? reflection->AddFloat(message, field, value)
               : reflection->SetFloat(message, field, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      bool value;
      if (text == "true" || text == "1") {
        value = true;
      } else if (text == "false" || text == "0") {
        value = false;
      } else {
        return bad("true or false");
      }
      repeated ? reflection->AddBool(message, field, value)
               : reflection->SetBool(message, field, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      const google::protobuf::EnumValueDescriptor* value =
          field->enum_type()->FindValueByName(std::string(text));
      int number;
      if (value == nullptr && absl::SimpleAtoi(text, &number)) {
        value = field->enum_type()->FindValueByNumber(number);
      }
      if (value == nullptr) {
        return bad(absl::StrCat("a value of ", field->enum_type()->name()));
      }
      repeated ? reflection->AddEnum(message, field, value)
               : reflection->SetEnum(message, field, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string value;
      if (field->type() == FieldDescriptor::TYPE_BYTES) {
        if (!absl::WebSafeBase64Unescape(text, &value) &&
            !absl::Base64Unescape(text, &value)) {
          return bad("base64");
        }
      } else {
        if (!IsValidUtf8(text)) return bad("valid UTF-8");
        value = std::string(text);
      }
      repeated ? reflection->AddString(message, field, std::move(value))
               : reflection->SetString(message, field, std::move(value));
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError("unsupported field type");
}

absl::Status BuildRequest(const Route& route,
                          const std::vector<PathTemplate::Binding>& bindings,
                          absl::string_view query, absl::string_view body,
                          Message* request) {
  request->Clear();
  const Descriptor* type = request->GetDescriptor();

  // 1. The body.
  if (!route.body.empty() && !IsBlank(body)) {
    if (route.body == "*") {
      if (absl::Status s = ParseObject(body, request); !s.ok()) return s;
    } else {
      // The body is the JSON of one field: check it is exactly one JSON value
      // (so it can't smuggle in other members), then parse it as
      // {"field": value}.
      absl::StatusOr<std::string> value = sdk::RewriteJson(body);
      if (!value.ok()) {
        return Invalid(kInvalidJson,
                       absl::StrCat("the request body is not valid: ",
                                    value.status().message()));
      }
      std::string wrapped =
          absl::StrCat("{", sdk::JsonQuote(route.body), ":", *value, "}");
      if (absl::Status s = ParseObject(wrapped, request); !s.ok()) return s;
    }
  }

  // 2. Query parameters, for fields neither the path nor the body binds.
  // Unknown names are ignored (cache busters and the like).
  if (route.body != "*" && !query.empty()) {
    for (absl::string_view pair : absl::StrSplit(query, '&')) {
      if (pair.empty()) continue;
      std::pair<absl::string_view, absl::string_view> kv =
          absl::StrSplit(pair, absl::MaxSplits('=', 1));
      absl::StatusOr<std::string> key =
          PercentDecode(kv.first, /*plus_is_space=*/true);
      absl::StatusOr<std::string> value =
          PercentDecode(kv.second, /*plus_is_space=*/true);
      if (!key.ok() || !value.ok()) {
        return Invalid(kInvalidQueryParameter,
                       "the query string has invalid percent-encoding");
      }
      // Resolve the dotted name (proto or JSON names) before touching the
      // message, so unknown names leave no trace.
      std::vector<const FieldDescriptor*> chain;
      std::string canonical;
      bool known = true;
      const Descriptor* current = type;
      for (absl::string_view part : absl::StrSplit(*key, '.')) {
        const FieldDescriptor* field =
            current == nullptr ? nullptr : FindField(current, part);
        if (field == nullptr) {
          known = false;
          break;
        }
        absl::StrAppend(&canonical, chain.empty() ? "" : ".", field->name());
        chain.push_back(field);
        current =
            IsSingularMessage(field) && !IsWellKnownType(field->message_type())
                ? field->message_type()
                : nullptr;
      }
      if (!known) continue;
      if (!route.body.empty() &&
          (canonical == route.body ||
           absl::StartsWith(canonical, absl::StrCat(route.body, ".")))) {
        continue;
      }
      bool path_bound =
          std::any_of(bindings.begin(), bindings.end(),
                      [&canonical](const PathTemplate::Binding& b) {
                        return b.field_path == canonical;
                      });
      if (path_bound) continue;
      Message* target = request;
      for (size_t i = 0; i + 1 < chain.size(); ++i) {
        target = target->GetReflection()->MutableMessage(target, chain[i]);
      }
      if (absl::Status s = SetFieldFromText(target, chain.back(), *value);
          !s.ok()) {
        return Invalid(
            kInvalidQueryParameter,
            absl::StrCat("query parameter \"", canonical, "\": ", s.message()),
            {{"parameter", canonical}});
      }
    }
  }

  // 3. Path variables (validated against the message when the route was
  // built).
  for (const PathTemplate::Binding& binding : bindings) {
    absl::StatusOr<std::vector<const FieldDescriptor*>> fields =
        ResolveFieldPath(type, binding.field_path);
    if (!fields.ok()) return fields.status();
    Message* target = request;
    for (size_t i = 0; i + 1 < fields->size(); ++i) {
      target = target->GetReflection()->MutableMessage(target, (*fields)[i]);
    }
    if (absl::Status s =
            SetFieldFromText(target, fields->back(), binding.value);
        !s.ok()) {
      return Invalid(kInvalidPathParameter,
                     absl::StrCat("path parameter \"", binding.field_path,
                                  "\": ", s.message()),
                     {{"parameter", binding.field_path}});
    }
  }
  return absl::OkStatus();
}

namespace {

// Shortest text that reads back as the same float.
std::string FloatText(float value) {
  for (int precision = 1; precision < 9; ++precision) {
    std::string text = absl::StrFormat("%.*g", precision, value);
    if (std::strtof(text.c_str(), nullptr) == value) return text;
  }
  return absl::StrFormat("%.9g", value);
}

class JsonRenderer {
 public:
  explicit JsonRenderer(JsonWriter* writer) : writer_(*writer) {}

  void WriteMessage(const Message& message) {
    const Descriptor* type = message.GetDescriptor();
    if (IsWellKnownType(type)) {
      WriteWellKnown(message);
      return;
    }
    writer_.StartObject();
    for (int i = 0; i < type->field_count(); ++i) {
      const FieldDescriptor* field = type->field(i);
      writer_.Key(field->name().data(),
                  static_cast<rapidjson::SizeType>(field->name().size()));
      WriteField(message, field);
    }
    writer_.EndObject();
  }

  // The value of one field (null, array, object or scalar).
  void WriteField(const Message& message, const FieldDescriptor* field) {
    const Reflection* reflection = message.GetReflection();
    if (field->is_map()) {
      WriteMap(message, field);
    } else if (field->is_repeated()) {
      writer_.StartArray();
      int size = reflection->FieldSize(message, field);
      for (int i = 0; i < size; ++i) WriteValue(message, field, i);
      writer_.EndArray();
    } else if (field->has_presence() && !reflection->HasField(message, field)) {
      writer_.Null();
    } else {
      WriteValue(message, field, -1);
    }
  }

 private:
  void WriteWellKnown(const Message& message) {
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    std::string json;
    google::protobuf::util::Status status =
        google::protobuf::util::MessageToJsonString(message, &json, options);
    if (!status.ok()) {
      IOT2MQTT_LOG(WARNING).With("type", message.GetDescriptor()->full_name())
          << "can't render well-known type: " << status.ToString();
      writer_.Null();
      return;
    }
    writer_.RawValue(json.data(), json.size(), rapidjson::kObjectType);
  }

  void WriteRawJson(const FieldDescriptor* field, const std::string& text) {
    if (text.empty()) {
      writer_.Null();
      return;
    }
    // Spliced verbatim; a service bug that stored something else must not
    // break the whole response, so it is shown as a string then.
    if (!sdk::RewriteJson(text).ok()) {
      IOT2MQTT_LOG(WARNING).With("field", field->full_name())
          << "raw_json field does not hold valid JSON; rendered as a string";
      writer_.String(text);
      return;
    }
    writer_.RawValue(text.data(), text.size(), rapidjson::kObjectType);
  }

  void WriteDouble(double value) {
    if (std::isnan(value)) {
      writer_.String("NaN");
    } else if (std::isinf(value)) {
      writer_.String(value > 0 ? "Infinity" : "-Infinity");
    } else {
      writer_.Double(value);
    }
  }

  void WriteFloat(float value) {
    if (!std::isfinite(value)) {
      WriteDouble(value);
      return;
    }
    std::string text = FloatText(value);
    writer_.RawValue(text.data(), text.size(), rapidjson::kNumberType);
  }

  void WriteEnum(const FieldDescriptor* field, int number) {
    if (field->enum_type()->full_name() == "google.protobuf.NullValue") {
      writer_.Null();
      return;
    }
    const google::protobuf::EnumValueDescriptor* value =
        field->enum_type()->FindValueByNumber(number);
    if (value != nullptr) {
      writer_.String(value->name());
    } else {
      writer_.Int(number);
    }
  }

  // `index` < 0: the singular value.
  void WriteValue(const Message& message, const FieldDescriptor* field,
                  int index) {
    const Reflection* r = message.GetReflection();
    const bool rep = index >= 0;
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        writer_.Int(rep ? r->GetRepeatedInt32(message, field, index)
                        : r->GetInt32(message, field));
        return;
      case FieldDescriptor::CPPTYPE_UINT32:
        writer_.Uint(rep ? r->GetRepeatedUInt32(message, field, index)
                         : r->GetUInt32(message, field));
        return;
      case FieldDescriptor::CPPTYPE_INT64:
        writer_.String(
            absl::StrCat(rep ? r->GetRepeatedInt64(message, field, index)
                             : r->GetInt64(message, field)));
        return;
      case FieldDescriptor::CPPTYPE_UINT64:
        writer_.String(
            absl::StrCat(rep ? r->GetRepeatedUInt64(message, field, index)
                             : r->GetUInt64(message, field)));
        return;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        WriteDouble(rep ? r->GetRepeatedDouble(message, field, index)
                        : r->GetDouble(message, field));
        return;
      case FieldDescriptor::CPPTYPE_FLOAT:
        WriteFloat(rep ? r->GetRepeatedFloat(message, field, index)
                       : r->GetFloat(message, field));
        return;
      case FieldDescriptor::CPPTYPE_BOOL:
        writer_.Bool(rep ? r->GetRepeatedBool(message, field, index)
                         : r->GetBool(message, field));
        return;
      case FieldDescriptor::CPPTYPE_ENUM:
        WriteEnum(field, rep ? r->GetRepeatedEnumValue(message, field, index)
                             : r->GetEnumValue(message, field));
        return;
      case FieldDescriptor::CPPTYPE_STRING: {
        std::string scratch;
        const std::string& value =
            rep ? r->GetRepeatedStringReference(message, field, index, &scratch)
                : r->GetStringReference(message, field, &scratch);
        if (field->type() == FieldDescriptor::TYPE_BYTES) {
          writer_.String(absl::Base64Escape(value));
        } else if (IsRawJsonField(field)) {
          WriteRawJson(field, value);
        } else {
          writer_.String(value);
        }
        return;
      }
      case FieldDescriptor::CPPTYPE_MESSAGE:
        WriteMessage(rep ? r->GetRepeatedMessage(message, field, index)
                         : r->GetMessage(message, field));
        return;
    }
  }

  std::string MapKey(const Message& entry, const FieldDescriptor* key) {
    const Reflection* r = entry.GetReflection();
    switch (key->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        return absl::StrCat(r->GetInt32(entry, key));
      case FieldDescriptor::CPPTYPE_UINT32:
        return absl::StrCat(r->GetUInt32(entry, key));
      case FieldDescriptor::CPPTYPE_INT64:
        return absl::StrCat(r->GetInt64(entry, key));
      case FieldDescriptor::CPPTYPE_UINT64:
        return absl::StrCat(r->GetUInt64(entry, key));
      case FieldDescriptor::CPPTYPE_BOOL:
        return r->GetBool(entry, key) ? "true" : "false";
      default:
        return r->GetString(entry, key);
    }
  }

  void WriteMap(const Message& message, const FieldDescriptor* field) {
    const Reflection* r = message.GetReflection();
    const Descriptor* entry_type = field->message_type();
    const FieldDescriptor* key = entry_type->map_key();
    const FieldDescriptor* value = entry_type->map_value();
    // Protobuf maps have no order; sort so the output is stable (numerically
    // for integer keys).
    struct Entry {
      std::string key;
      const Message* message;
    };
    std::vector<Entry> entries;
    int size = r->FieldSize(message, field);
    entries.reserve(size);
    for (int i = 0; i < size; ++i) {
      const Message& entry = r->GetRepeatedMessage(message, field, i);
      entries.push_back({MapKey(entry, key), &entry});
    }
    const bool numeric = key->cpp_type() != FieldDescriptor::CPPTYPE_STRING &&
                         key->cpp_type() != FieldDescriptor::CPPTYPE_BOOL;
    std::stable_sort(entries.begin(), entries.end(),
                     [numeric](const Entry& a, const Entry& b) {
                       if (numeric) {
                         bool a_neg = !a.key.empty() && a.key[0] == '-';
                         bool b_neg = !b.key.empty() && b.key[0] == '-';
                         if (a_neg != b_neg) return a_neg;
                         if (a.key.size() != b.key.size()) {
                           return a_neg ? a.key.size() > b.key.size()
                                        : a.key.size() < b.key.size();
                         }
                         return a_neg ? a.key > b.key : a.key < b.key;
                       }
                       return a.key < b.key;
                     });
    writer_.StartObject();
    for (const Entry& entry : entries) {
      writer_.Key(entry.key.data(),
                  static_cast<rapidjson::SizeType>(entry.key.size()));
      WriteValue(*entry.message, value, -1);
    }
    writer_.EndObject();
  }

  JsonWriter& writer_;
};

}  // namespace

std::string MessageToJson(const Message& message) {
  rapidjson::StringBuffer buffer;
  JsonWriter writer(buffer);
  JsonRenderer(&writer).WriteMessage(message);
  return std::string(buffer.GetString(), buffer.GetSize());
}

bool IsHttpBody(const Descriptor* type) {
  return type != nullptr && type->full_name() == "iot2mqtt.api.v1.HttpBody";
}

namespace {

RenderedResponse RenderHttpBody(const Message& body) {
  const Descriptor* type = body.GetDescriptor();
  const Reflection* reflection = body.GetReflection();
  RenderedResponse result;
  result.content_type =
      reflection->GetString(body, type->FindFieldByName("content_type"));
  if (result.content_type.empty()) {
    result.content_type = "application/octet-stream";
  }
  result.json = reflection->GetString(body, type->FindFieldByName("data"));
  return result;
}

}  // namespace

RenderedResponse RenderResponse(const Route& route, const Message& response) {
  RenderedResponse result;
  const Descriptor* type = response.GetDescriptor();
  if (IsHttpBody(type)) return RenderHttpBody(response);
  if (type->field_count() == 0) {
    result.no_content = true;
    return result;
  }
  const FieldDescriptor* field =
      route.response_body.empty() ? nullptr
                                  : type->FindFieldByName(route.response_body);
  if (field != nullptr && IsSingularMessage(field) &&
      IsHttpBody(field->message_type())) {
    return RenderHttpBody(
        response.GetReflection()->GetMessage(response, field));
  }
  if (field == nullptr) {
    result.json = MessageToJson(response);
    return result;
  }
  rapidjson::StringBuffer buffer;
  JsonWriter writer(buffer);
  JsonRenderer(&writer).WriteField(response, field);
  result.json = std::string(buffer.GetString(), buffer.GetSize());
  return result;
}

}  // namespace iot2mqtt::gateway
