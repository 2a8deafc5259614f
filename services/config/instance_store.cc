#include "services/config/instance_store.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/runtime_secrets.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "rapidjson/document.h"
#include "rapidjson/memorystream.h"
#include "rapidjson/reader.h"
#include "services/common/status.h"
#include "services/config/file_io.h"
#include "services/config/secret_fields.h"

namespace iot2mqtt::config {
namespace {

constexpr absl::string_view kJsonSuffix = ".json";
constexpr char kHistoryDir[] = ".history";
constexpr char kLockName[] = ".lock";
constexpr mode_t kFileMode = 0600;
constexpr mode_t kDirMode = 0700;
constexpr int64_t kDefaultUpdateInterval = 10;
constexpr int64_t kMaxUpdateInterval = 2147483647;

constexpr bool SameText(const char* a, const char* b) {
  return *a == *b && (*a == '\0' || SameText(a + 1, b + 1));
}
static_assert(SameText(kInstanceNamePattern, kConnectorNamePattern),
              "connector names are checked alike by the catalogue and here");

// Keys of the document the store owns; any other key of a request is kept.
constexpr absl::string_view kDocumentKeys[] = {
    "instance_id",     "instance_type", "connector_type", "friendly_name",
    "connection",      "devices",       "groups",         "enabled",
    "update_interval", "created_at",    "updated_at"};
// Request keys that are not document keys but are never kept as such.
constexpr absl::string_view kRequestOnlyKeys[] = {"config", "secrets"};

bool IsDocumentKey(absl::string_view key) {
  return std::find(std::begin(kDocumentKeys), std::end(kDocumentKeys), key) !=
         std::end(kDocumentKeys);
}

bool IsReservedKey(absl::string_view key) {
  return IsDocumentKey(key) ||
         std::find(std::begin(kRequestOnlyKeys), std::end(kRequestOnlyKeys),
                   key) != std::end(kRequestOnlyKeys);
}

// A name as it can be shown in a message: escaped, at most 64 bytes.
std::string Printable(absl::string_view text) {
  constexpr size_t kMax = 64;
  if (text.size() <= kMax) return absl::CHexEscape(text);
  return absl::StrCat(absl::CHexEscape(text.substr(0, kMax)), "...");
}

// ---------------------------------------------------------------------------
// A JSON tree that keeps every number's text and the order of keys.

struct Json {
  enum class Kind { kScalar, kObject, kArray };
  Kind kind = Kind::kScalar;
  std::string scalar = "null";  // Compact JSON text of a scalar.
  std::vector<std::pair<std::string, Json>> members;
  std::vector<Json> elements;

  static Json Object() {
    Json j;
    j.kind = Kind::kObject;
    return j;
  }
  static Json Array() {
    Json j;
    j.kind = Kind::kArray;
    return j;
  }
  static Json Raw(std::string text) {
    Json j;
    j.scalar = std::move(text);
    return j;
  }
  static Json String(absl::string_view text) {
    return Raw(sdk::JsonString(text));
  }
  static Json Bool(bool b) { return Raw(b ? "true" : "false"); }

  bool is_object() const { return kind == Kind::kObject; }
  bool is_array() const { return kind == Kind::kArray; }
  bool is_null() const { return kind == Kind::kScalar && scalar == "null"; }
  bool is_string() const {
    return kind == Kind::kScalar && !scalar.empty() && scalar[0] == '"';
  }
  bool is_number() const {
    return kind == Kind::kScalar && !scalar.empty() &&
           (scalar[0] == '-' || absl::ascii_isdigit(scalar[0]));
  }
  bool is_bool() const {
    return kind == Kind::kScalar && (scalar == "true" || scalar == "false");
  }

  std::optional<std::string> AsString() const {
    if (!is_string()) return std::nullopt;
    rapidjson::Document document;
    document.Parse(scalar.data(), scalar.size());
    if (document.HasParseError() || !document.IsString()) return std::nullopt;
    return std::string(document.GetString(), document.GetStringLength());
  }
  std::optional<bool> AsBool() const {
    if (!is_bool()) return std::nullopt;
    return scalar == "true";
  }

  // "an object", "a string", ... for messages.
  const char* TypeName() const {
    if (is_object()) return "an object";
    if (is_array()) return "an array";
    if (is_string()) return "a string";
    if (is_bool()) return "a boolean";
    if (is_null()) return "null";
    return "a number";
  }

  const Json* Find(absl::string_view key) const {
    for (const auto& member : members) {
      if (member.first == key) return &member.second;
    }
    return nullptr;
  }
  Json* Find(absl::string_view key) {
    for (auto& member : members) {
      if (member.first == key) return &member.second;
    }
    return nullptr;
  }
  // Replaces the value in place, or appends the member.
  Json* Set(absl::string_view key, Json value) {
    if (Json* existing = Find(key)) {
      *existing = std::move(value);
      return existing;
    }
    members.emplace_back(std::string(key), std::move(value));
    return &members.back().second;
  }
  void Remove(absl::string_view key) {
    members.erase(std::remove_if(members.begin(), members.end(),
                                 [key](const auto& member) {
                                   return member.first == key;
                                 }),
                  members.end());
  }
};

void AppendJson(const Json& json, std::string* out) {
  switch (json.kind) {
    case Json::Kind::kScalar:
      out->append(json.scalar);
      return;
    case Json::Kind::kObject: {
      out->push_back('{');
      bool first = true;
      for (const auto& [key, value] : json.members) {
        if (!first) out->push_back(',');
        first = false;
        out->append(sdk::JsonString(key));
        out->push_back(':');
        AppendJson(value, out);
      }
      out->push_back('}');
      return;
    }
    case Json::Kind::kArray: {
      out->push_back('[');
      bool first = true;
      for (const Json& element : json.elements) {
        if (!first) out->push_back(',');
        first = false;
        AppendJson(element, out);
      }
      out->push_back(']');
      return;
    }
  }
}

std::string Compact(const Json& json) {
  std::string out;
  AppendJson(json, &out);
  return out;
}

// SAX events → Json. Duplicate keys: the last one counts.
class TreeBuilder {
 public:
  bool Null() { return Add(Json::Raw("null")); }
  bool Bool(bool b) { return Add(Json::Bool(b)); }
  bool Int(int i) { return Add(Json::Raw(absl::StrCat(i))); }
  bool Uint(unsigned u) { return Add(Json::Raw(absl::StrCat(u))); }
  bool Int64(int64_t i) { return Add(Json::Raw(absl::StrCat(i))); }
  bool Uint64(uint64_t u) { return Add(Json::Raw(absl::StrCat(u))); }
  bool Double(double) { return false; }  // Numbers arrive as raw text.
  bool RawNumber(const char* s, rapidjson::SizeType n, bool) {
    return Add(Json::Raw(std::string(s, n)));
  }
  bool String(const char* s, rapidjson::SizeType n, bool) {
    return Add(Json::String(absl::string_view(s, n)));
  }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    key_.assign(s, n);
    return true;
  }
  bool StartObject() { return Open(Json::Object()); }
  bool EndObject(rapidjson::SizeType) {
    stack_.pop_back();
    return true;
  }
  bool StartArray() { return Open(Json::Array()); }
  bool EndArray(rapidjson::SizeType) {
    stack_.pop_back();
    return true;
  }
  Json& root() { return root_; }

 private:
  Json* Insert(Json value) {
    if (stack_.empty()) {
      root_ = std::move(value);
      return &root_;
    }
    Json* parent = stack_.back();
    if (parent->is_object()) return parent->Set(key_, std::move(value));
    parent->elements.push_back(std::move(value));
    return &parent->elements.back();
  }
  bool Add(Json value) {
    Insert(std::move(value));
    return true;
  }
  bool Open(Json value) {
    // Only the innermost open containers are on the stack, and each is the
    // last element of its parent, which does not grow while it is open.
    stack_.push_back(Insert(std::move(value)));
    return true;
  }

  Json root_;
  std::vector<Json*> stack_;
  std::string key_;
};

// Parses one JSON value (validated by sdk::RewriteJson: UTF-8, depth).
absl::StatusOr<Json> ParseJson(absl::string_view text) {
  IOT2MQTT_ASSIGN_OR_RETURN(std::string compact, sdk::RewriteJson(text));
  rapidjson::MemoryStream stream(compact.data(), compact.size());
  rapidjson::Reader reader;
  TreeBuilder builder;
  constexpr unsigned kFlags =
      rapidjson::kParseNumbersAsStringsFlag | rapidjson::kParseIterativeFlag;
  if (reader.Parse<kFlags>(stream, builder).IsError()) {
    return absl::InvalidArgumentError("invalid JSON");
  }
  return std::move(builder.root());
}

absl::StatusOr<Json> ParseObject(absl::string_view text) {
  IOT2MQTT_ASSIGN_OR_RETURN(Json json, ParseJson(text));
  if (!json.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected a JSON object, got ", json.TypeName()));
  }
  return json;
}

// Whether `json` is the string "__SECRET__<path>__"; the path when it is.
std::optional<std::string> PlaceholderPath(const Json& json) {
  std::optional<std::string> text = json.AsString();
  if (!text) return std::nullopt;
  absl::string_view view = *text;
  if (!absl::ConsumePrefix(&view, sdk::kSecretPlaceholderPrefix) ||
      !absl::ConsumeSuffix(&view, sdk::kSecretPlaceholderSuffix) ||
      view.empty()) {
    return std::nullopt;
  }
  return std::string(view);
}

void CollectPlaceholderPaths(const Json& json, std::set<std::string>* paths) {
  if (json.is_object()) {
    for (const auto& member : json.members) {
      CollectPlaceholderPaths(member.second, paths);
    }
  } else if (json.is_array()) {
    for (const Json& element : json.elements) {
      CollectPlaceholderPaths(element, paths);
    }
  } else if (std::optional<std::string> path = PlaceholderPath(json)) {
    paths->insert(*path);
  }
}

// The value at a dotted path ("connection.password", "devices.0.token").
// With `create`, a missing last segment of an existing object is added
// (null).
Json* Resolve(Json* root, absl::string_view path, bool create) {
  std::vector<absl::string_view> segments = absl::StrSplit(path, '.');
  Json* node = root;
  for (size_t i = 0; i < segments.size(); ++i) {
    absl::string_view segment = segments[i];
    if (segment.empty()) return nullptr;
    if (node->is_object()) {
      Json* child = node->Find(segment);
      if (child == nullptr) {
        if (!create || i + 1 != segments.size()) return nullptr;
        child = node->Set(segment, Json::Raw("null"));
      }
      node = child;
    } else if (node->is_array()) {
      size_t index = 0;
      if (!std::all_of(segment.begin(), segment.end(), absl::ascii_isdigit) ||
          !absl::SimpleAtoi(segment, &index) ||
          index >= node->elements.size()) {
        return nullptr;
      }
      node = &node->elements[index];
    } else {
      return nullptr;
    }
  }
  return node;
}

std::map<std::string, std::string> Canonical(const Json& object) {
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : object.members) out[key] = Compact(value);
  return out;
}

// ---------------------------------------------------------------------------
// Requests.

struct Problem {
  Problem(std::string field_in, std::string text_in,
          std::optional<std::string> bad_name = std::nullopt)
      : field(std::move(field_in)),
        text(std::move(text_in)),
        name(std::move(bad_name)) {}
  std::string field;
  std::string text;
  // A name that fails kInstanceNamePattern, printable.
  std::optional<std::string> name;
};

// The fields of a create or update request, each set when present.
struct Request {
  std::optional<std::string> instance_id;
  std::optional<std::string> connector_type;
  std::optional<std::string> instance_type;
  std::optional<std::string> friendly_name;
  std::optional<Json> config;
  std::optional<Json> devices;
  std::optional<Json> groups;
  std::optional<bool> enabled;
  std::optional<Json> update_interval;  // A whole number.
  std::optional<Json> secrets;          // An object.
  std::vector<std::pair<std::string, Json>> unknown;
};

std::optional<int64_t> WholeSeconds(absl::string_view text) {
  int64_t value = 0;
  if (text.empty() || text.size() > 10 ||
      !std::all_of(text.begin(), text.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(text, &value) || value < 1 ||
      value > kMaxUpdateInterval) {
    return std::nullopt;
  }
  return value;
}

void CheckName(const Json& value, absl::string_view field, bool required,
               std::optional<std::string>* out,
               std::vector<Problem>* problems) {
  std::optional<std::string> text = value.AsString();
  if (!text) {
    problems->push_back(
        {std::string(field),
         absl::StrCat(field, " must be a string, got ", value.TypeName())});
    return;
  }
  if (!IsValidInstanceName(*text)) {
    problems->push_back(
        {std::string(field),
         text->empty() && required
             ? absl::StrCat(field, " is required and must match ",
                            kInstanceNamePattern)
             : absl::StrCat(field, " \"", Printable(*text), "\" must match ",
                            kInstanceNamePattern),
         Printable(*text)});
    return;
  }
  *out = std::move(text);
}

// Reads the members of a create (`create`) or update request; every problem
// goes to `problems`.
Request ReadRequest(const Json& body, bool create,
                    std::vector<Problem>* problems) {
  Request request;
  const Json* config = body.Find("config");
  const char* config_field = "config";
  if (config == nullptr) {
    config = body.Find("connection");  // A document sent back.
    config_field = "connection";
  }
  for (const auto& [key, value] : body.members) {
    if (key == "instance_id" || key == "connector_type") {
      if (!create) continue;  // The path names the instance.
      CheckName(
          value, key, true,
          key == "instance_id" ? &request.instance_id : &request.connector_type,
          problems);
    } else if (key == "instance_type") {
      if (!create) continue;  // Kept from creation.
      std::optional<std::string> type = value.AsString();
      if (type &&
          (*type == "device" || *type == "account" || *type == "service")) {
        request.instance_type = std::move(type);
      } else {
        problems->push_back(
            {key, type ? absl::StrCat("instance_type must be one of device, "
                                      "account, service, got \"",
                                      Printable(*type), "\"")
                       : absl::StrCat("instance_type must be a string, got ",
                                      value.TypeName())});
      }
    } else if (key == "friendly_name") {
      if (std::optional<std::string> name = value.AsString()) {
        request.friendly_name = std::move(name);
      } else {
        problems->push_back(
            {key, absl::StrCat("friendly_name must be a string, got ",
                               value.TypeName())});
      }
    } else if (key == "devices" || key == "groups") {
      if (!value.is_array()) {
        problems->push_back({key, absl::StrCat(key, " must be an array, got ",
                                               value.TypeName())});
        continue;
      }
      bool ok = true;
      for (size_t i = 0; i < value.elements.size(); ++i) {
        if (!value.elements[i].is_object()) {
          problems->push_back(
              {key, absl::StrCat(key, "[", i, "] must be an object, got ",
                                 value.elements[i].TypeName())});
          ok = false;
        }
      }
      if (ok) (key == "devices" ? request.devices : request.groups) = value;
    } else if (key == "enabled") {
      if (std::optional<bool> enabled = value.AsBool()) {
        request.enabled = enabled;
      } else {
        problems->push_back(
            {key, absl::StrCat("enabled must be a boolean, got ",
                               value.TypeName())});
      }
    } else if (key == "update_interval") {
      std::optional<int64_t> seconds;
      if (value.is_number()) {
        seconds = WholeSeconds(value.scalar);
      } else if (std::optional<std::string> text = value.AsString()) {
        seconds = WholeSeconds(*text);
      }
      if (seconds) {
        request.update_interval = Json::Raw(absl::StrCat(*seconds));
      } else {
        problems->push_back(
            {key,
             absl::StrCat("update_interval must be a whole number of "
                          "seconds from 1 to ",
                          kMaxUpdateInterval, ", got ", value.TypeName())});
      }
    } else if (key == "secrets") {
      if (value.is_object()) {
        request.secrets = value;
      } else if (!value.is_null()) {
        problems->push_back(
            {key, absl::StrCat("secrets must be an object or null, got ",
                               value.TypeName())});
      }
    } else if (key == config_field) {
      if (value.is_object()) {
        request.config = value;
      } else {
        problems->push_back(
            {key, absl::StrCat(config_field, " must be an object, got ",
                               value.TypeName())});
      }
    } else if (!IsReservedKey(key)) {
      request.unknown.emplace_back(key, value);
    }
  }
  if (create) {
    if (body.Find("instance_id") == nullptr) {
      problems->push_back({"instance_id", "instance_id is required"});
    }
    if (body.Find("connector_type") == nullptr) {
      problems->push_back({"connector_type", "connector_type is required"});
    }
  }
  return request;
}

// INVALID_INSTANCE listing every problem, or, when the only problems are
// names that fail the pattern, INVALID_INSTANCE_ID / INVALID_CONNECTOR_NAME.
absl::Status RequestError(const std::vector<Problem>& problems) {
  std::vector<std::string> texts;
  std::vector<std::string> fields;
  std::map<std::string, std::string> metadata = {
      {"pattern", kInstanceNamePattern}};
  bool only_names = true;
  bool bad_id = false;
  for (const Problem& problem : problems) {
    texts.push_back(problem.text);
    if (std::find(fields.begin(), fields.end(), problem.field) ==
        fields.end()) {
      fields.push_back(problem.field);
    }
    only_names = only_names && problem.name.has_value();
    bad_id = bad_id || problem.field == "instance_id";
    if (problem.name) {
      metadata[problem.field == "instance_id" ? "instance_id" : "connector"] =
          *problem.name;
    }
  }
  metadata["fields"] = absl::StrJoin(fields, ",");
  std::string message =
      absl::StrCat("invalid instance: ", absl::StrJoin(texts, "; "));
  const char* reason = kInvalidInstance;
  if (only_names) reason = bad_id ? kInvalidInstanceId : kInvalidConnectorName;
  return common::WithReason(absl::InvalidArgumentError(message), reason,
                            metadata);
}

absl::StatusOr<Json> ParseRequestBody(absl::string_view body_json) {
  absl::StatusOr<Json> body = ParseObject(body_json);
  if (!body.ok()) {
    return common::WithReason(
        absl::InvalidArgumentError(
            absl::StrCat("invalid instance: the body must be a JSON object (",
                         body.status().message(), ")")),
        kInvalidInstance, {{"fields", ""}});
  }
  return body;
}

// The members of a document that the store rebuilds it from.
struct Fields {
  std::string instance_id;
  std::string connector_type;
  std::string instance_type = "device";
  std::string friendly_name;
  Json config = Json::Object();
  Json devices = Json::Array();
  Json groups = Json::Array();
  bool enabled = true;
  Json update_interval = Json::Raw(absl::StrCat(kDefaultUpdateInterval));
  std::string created_at;
  std::vector<std::pair<std::string, Json>> unknown;
};

// The document (§5.3); `flattened` receives the keys copied from config.
Json BuildDocument(const Fields& fields, const std::string& updated_at,
                   std::vector<std::string>* flattened) {
  Json doc = Json::Object();
  doc.Set("instance_id", Json::String(fields.instance_id));
  doc.Set("instance_type", Json::String(fields.instance_type));
  doc.Set("connector_type", Json::String(fields.connector_type));
  doc.Set("friendly_name",
          Json::String(fields.friendly_name.empty() ? fields.instance_id
                                                    : fields.friendly_name));
  doc.Set("connection", fields.config);
  doc.Set("devices", fields.devices);
  doc.Set("groups", fields.groups);
  doc.Set("enabled", Json::Bool(fields.enabled));
  doc.Set("update_interval", fields.update_interval);
  doc.Set("created_at", Json::String(fields.created_at));
  doc.Set("updated_at", Json::String(updated_at));
  for (const auto& [key, value] : fields.config.members) {
    if (doc.Find(key) != nullptr) continue;
    doc.Set(key, value);
    flattened->push_back(key);
  }
  for (const auto& [key, value] : fields.unknown) {
    if (doc.Find(key) == nullptr) doc.Set(key, value);
  }
  return doc;
}

// The fields of a stored document (secrets injected), for an update.
Fields FieldsOf(const Json& doc, const std::string& connector,
                const std::string& instance_id) {
  Fields fields;
  fields.instance_id = instance_id;
  fields.connector_type = connector;
  if (const Json* v = doc.Find("instance_type")) {
    if (std::optional<std::string> s = v->AsString()) fields.instance_type = *s;
  }
  if (const Json* v = doc.Find("friendly_name")) {
    if (std::optional<std::string> s = v->AsString()) fields.friendly_name = *s;
  }
  if (const Json* v = doc.Find("connection"); v != nullptr && v->is_object()) {
    fields.config = *v;
  }
  if (const Json* v = doc.Find("devices"); v != nullptr && v->is_array()) {
    fields.devices = *v;
  }
  if (const Json* v = doc.Find("groups"); v != nullptr && v->is_array()) {
    fields.groups = *v;
  }
  if (const Json* v = doc.Find("enabled")) {
    if (std::optional<bool> b = v->AsBool()) fields.enabled = *b;
  }
  if (const Json* v = doc.Find("update_interval")) {
    if (v->is_number() && WholeSeconds(v->scalar)) fields.update_interval = *v;
  }
  if (const Json* v = doc.Find("created_at")) {
    if (std::optional<std::string> s = v->AsString()) fields.created_at = *s;
  }
  for (const auto& [key, value] : doc.members) {
    // Top-level copies of config keys are rebuilt from the config.
    if (IsReservedKey(key) || fields.config.Find(key) != nullptr) continue;
    fields.unknown.emplace_back(key, value);
  }
  return fields;
}

void ApplyRequest(Request request, Fields* fields) {
  if (request.instance_type) fields->instance_type = *request.instance_type;
  if (request.friendly_name) fields->friendly_name = *request.friendly_name;
  if (request.devices) fields->devices = std::move(*request.devices);
  if (request.groups) fields->groups = std::move(*request.groups);
  if (request.enabled) fields->enabled = *request.enabled;
  if (request.update_interval) {
    fields->update_interval = std::move(*request.update_interval);
  }
  for (auto& [key, value] : request.unknown) {
    bool replaced = false;
    for (auto& member : fields->unknown) {
      if (member.first == key) {
        member.second = value;
        replaced = true;
      }
    }
    if (!replaced) fields->unknown.emplace_back(key, std::move(value));
  }
}

struct SecretPlan {
  Json doc;     // With placeholders.
  Json values;  // The vault's new values.
};

// Moves the secrets of `doc` into the vault values.
//   old_doc/old_values: the stored document (placeholders) and vault values
//   (an empty object and "{}" for a create).
absl::StatusOr<SecretPlan> PlanSecrets(
    const Json& doc, const std::set<std::string>& declared,
    const std::vector<std::string>& flattened,
    const std::optional<Json>& explicit_secrets, const Json& old_doc,
    const std::string& old_values_json) {
  IOT2MQTT_ASSIGN_OR_RETURN(SecretSplit split,
                            ExtractSecrets(Compact(doc), declared));
  SecretPlan plan;
  IOT2MQTT_ASSIGN_OR_RETURN(plan.doc, ParseObject(split.document_json));
  IOT2MQTT_ASSIGN_OR_RETURN(Json extracted, ParseObject(split.secrets_json));

  // Paths that were secret stay secret; explicit secrets become secret.
  std::set<std::string> placed_before;
  CollectPlaceholderPaths(old_doc, &placed_before);
  std::vector<std::pair<std::string, std::optional<Json>>> marks;
  for (const std::string& path : placed_before) {
    marks.emplace_back(path, std::nullopt);
  }
  std::set<std::string> removed;
  if (explicit_secrets) {
    for (const auto& [path, value] : explicit_secrets->members) {
      if (value.is_null()) {
        removed.insert(path);
        continue;
      }
      marks.emplace_back(path, value);
      // The top-level copy of a config key shares the value.
      absl::string_view key = path;
      if (absl::ConsumePrefix(&key, "connection.") &&
          std::find(flattened.begin(), flattened.end(), key) !=
              flattened.end()) {
        marks.emplace_back(std::string(key), value);
      }
    }
  }
  for (const auto& [path, explicit_value] : marks) {
    Json* target = Resolve(&plan.doc, path, explicit_value.has_value());
    if (target != nullptr && PlaceholderPath(*target) != path) {
      extracted.Set(path, *target);
      *target = Json::String(sdk::SecretPlaceholder(path));
    }
    if (explicit_value) extracted.Set(path, *explicit_value);
  }

  IOT2MQTT_ASSIGN_OR_RETURN(
      std::string kept, KeepMaskedSecrets(Compact(extracted), old_values_json));
  IOT2MQTT_ASSIGN_OR_RETURN(plan.values, ParseObject(kept));
  // A placeholder whose value was missing came back as its own text.
  plan.values.members.erase(
      std::remove_if(plan.values.members.begin(), plan.values.members.end(),
                     [](const auto& member) {
                       return PlaceholderPath(member.second) == member.first;
                     }),
      plan.values.members.end());
  // Values that never had a placeholder (explicit ones whose path did not
  // resolve) stay until the request sets them to null.
  IOT2MQTT_ASSIGN_OR_RETURN(Json old_values, ParseObject(old_values_json));
  for (const auto& [path, value] : old_values.members) {
    if (placed_before.count(path) > 0 || removed.count(path) > 0 ||
        plan.values.Find(path) != nullptr) {
      continue;
    }
    plan.values.Set(path, value);
  }
  return plan;
}

std::string FormatTimestamp(absl::Time time) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", time, absl::UTCTimeZone());
}

// "<id>.<yyyymmddTHHMMSS.ffffff>Z.json"
bool IsHistoryNameOf(absl::string_view name, absl::string_view instance_id) {
  if (!absl::ConsumePrefix(&name, instance_id) ||
      !absl::ConsumePrefix(&name, ".") ||
      !absl::ConsumeSuffix(&name, "Z.json") || name.size() != 22) {
    return false;
  }
  for (size_t i = 0; i < name.size(); ++i) {
    bool ok = i == 8    ? name[i] == 'T'
              : i == 15 ? name[i] == '.'
                        : absl::ascii_isdigit(name[i]);
    if (!ok) return false;
  }
  return true;
}

absl::Status NotFound(absl::string_view connector,
                      absl::string_view instance_id) {
  return common::WithReason(absl::NotFoundError("Instance not found"),
                            kInstanceNotFound,
                            {{"connector", std::string(connector)},
                             {"instance_id", std::string(instance_id)}});
}

absl::Status NotFoundById(absl::string_view instance_id) {
  return common::WithReason(
      absl::NotFoundError(absl::StrCat("Instance ", instance_id, " not found")),
      kInstanceNotFound, {{"instance_id", std::string(instance_id)}});
}

absl::Status Corrupt(absl::string_view connector, absl::string_view instance_id,
                     const std::string& path, absl::string_view problem) {
  return common::WithReason(
      absl::FailedPreconditionError(absl::StrCat(
          "instance ", connector, "/", instance_id, " is corrupt: ", path, " ",
          problem, "; replace the file or delete the instance")),
      kInstanceCorrupt,
      {{"connector", std::string(connector)},
       {"instance_id", std::string(instance_id)},
       {"path", path}});
}

int64_t MtimeNs(const struct stat& st) {
  return int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string Response(absl::string_view message, absl::string_view instance_id) {
  sdk::JsonObjectBuilder builder;
  builder.Set("success", true).Set("message", message);
  if (!instance_id.empty()) builder.Set("instance_id", instance_id);
  return builder.Build();
}

}  // namespace

// ---------------------------------------------------------------------------

bool IsValidInstanceName(absl::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  auto lower_or_digit = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  };
  if (!lower_or_digit(name[0])) return false;
  return std::all_of(name.begin() + 1, name.end(), [&](char c) {
    return lower_or_digit(c) || c == '_' || c == '-';
  });
}

namespace {
absl::Status ValidateName(absl::string_view name, absl::string_view what,
                          const char* reason, const char* metadata_key) {
  if (IsValidInstanceName(name)) return absl::OkStatus();
  std::string message =
      name.empty() ? absl::StrCat(what, " is required: it must match ",
                                  kInstanceNamePattern)
                   : absl::StrCat("invalid ", what, " \"", Printable(name),
                                  "\": it must match ", kInstanceNamePattern);
  return common::WithReason(
      absl::InvalidArgumentError(message), reason,
      {{metadata_key, Printable(name)}, {"pattern", kInstanceNamePattern}});
}
}  // namespace

absl::Status ValidateConnectorName(absl::string_view connector) {
  return ValidateName(connector, "connector name", kInvalidConnectorName,
                      "connector");
}

absl::Status ValidateInstanceId(absl::string_view instance_id) {
  return ValidateName(instance_id, "instance id", kInvalidInstanceId,
                      "instance_id");
}

struct InstanceStore::Stored {
  std::string connector;
  std::string instance_id;
  Json doc;  // Masked, instance_id and connector_type set from the path.
};

InstanceStore::InstanceStore(InstanceStoreOptions options, SecretVault& vault)
    : options_(std::move(options)), vault_(vault) {}

std::string InstanceStore::ConnectorDir(absl::string_view connector) const {
  return absl::StrCat(options_.instances_dir, "/", connector);
}

std::string InstanceStore::InstancePath(absl::string_view connector,
                                        absl::string_view instance_id) const {
  return absl::StrCat(options_.instances_dir, "/", connector, "/", instance_id,
                      kJsonSuffix);
}

absl::Time InstanceStore::Now() const {
  return options_.clock ? options_.clock() : absl::Now();
}

std::set<std::string> InstanceStore::DeclaredSecrets(
    const std::string& connector) const {
  return options_.declared_secrets ? options_.declared_secrets(connector)
                                   : std::set<std::string>();
}

std::string InstanceStore::DisplayName(const std::string& connector) const {
  std::string name =
      options_.display_name ? options_.display_name(connector) : "";
  return name.empty() ? connector : name;
}

void InstanceStore::WarnOnce(const std::string& path, int64_t mtime_ns,
                             absl::string_view problem) {
  {
    absl::MutexLock lock(&warn_mu_);
    auto [it, inserted] = warned_.try_emplace(path, mtime_ns);
    if (!inserted && it->second == mtime_ns) return;
    it->second = mtime_ns;
  }
  IOT2MQTT_LOG(WARNING).With("file", path).With("error", problem)
      << "instance file " << path << ": " << problem;
}

absl::StatusOr<std::vector<std::string>> InstanceStore::ConnectorDirs() const {
  absl::StatusOr<std::vector<std::string>> names =
      ListDirectory(options_.instances_dir);
  if (absl::IsNotFound(names.status())) return std::vector<std::string>();
  if (!names.ok()) return names.status();
  std::vector<std::string> dirs;
  for (std::string& name : *names) {
    if (IsValidInstanceName(name) && IsDirectory(ConnectorDir(name))) {
      dirs.push_back(std::move(name));
    }
  }
  return dirs;
}

absl::StatusOr<std::optional<std::string>> InstanceStore::Holder(
    absl::string_view instance_id) const {
  IOT2MQTT_ASSIGN_OR_RETURN(std::vector<std::string> connectors,
                            ConnectorDirs());
  for (const std::string& connector : connectors) {
    if (PathExists(InstancePath(connector, instance_id))) return connector;
  }
  return std::nullopt;
}

absl::StatusOr<std::vector<InstanceStore::Stored>> InstanceStore::Scan(
    const std::optional<std::string>& only) {
  std::vector<std::string> connectors;
  if (only) {
    connectors.push_back(*only);
  } else {
    IOT2MQTT_ASSIGN_OR_RETURN(connectors, ConnectorDirs());
  }
  std::vector<Stored> out;
  for (const std::string& connector : connectors) {
    const std::string dir = ConnectorDir(connector);
    absl::StatusOr<std::vector<std::string>> names = ListDirectory(dir);
    if (absl::IsNotFound(names.status())) continue;
    if (!names.ok()) {
      // One unreadable directory does not hide the others.
      WarnOnce(dir, 0, names.status().message());
      continue;
    }
    for (const std::string& name : *names) {
      absl::string_view stem = name;
      // Temporary files (".<id>.json.tmp-<hex>") and the history never
      // match: they start with a dot.
      if (!absl::ConsumeSuffix(&stem, kJsonSuffix) ||
          !IsValidInstanceName(stem)) {
        continue;
      }
      const std::string path = absl::StrCat(dir, "/", name);
      struct stat st;
      if (stat(path.c_str(), &st) != 0) continue;  // Deleted meanwhile.
      absl::StatusOr<std::string> text = ReadWholeFile(path);
      if (absl::IsNotFound(text.status())) continue;
      absl::StatusOr<Json> doc =
          text.ok() ? ParseObject(*text) : absl::StatusOr<Json>(text.status());
      absl::StatusOr<std::string> masked =
          doc.ok() ? MaskSecrets(Compact(*doc))
                   : absl::StatusOr<std::string>(doc.status());
      if (masked.ok()) doc = ParseObject(*masked);
      if (!masked.ok() || !doc.ok()) {
        WarnOnce(path, MtimeNs(st),
                 absl::StrCat(
                     "skipped: ",
                     (masked.ok() ? doc.status() : masked.status()).message()));
        continue;
      }
      // Keys the typed views need: listed with defaults, but reported.
      std::vector<std::string> problems;
      const Json* friendly = doc->Find("friendly_name");
      if (friendly == nullptr || !friendly->is_string()) {
        problems.push_back("friendly_name is missing or not a string");
      }
      const Json* enabled = doc->Find("enabled");
      if (enabled == nullptr || !enabled->is_bool()) {
        problems.push_back("enabled is missing or not a boolean");
      }
      const Json* devices = doc->Find("devices");
      if (devices == nullptr || !devices->is_array()) {
        problems.push_back("devices is missing or not an array");
      }
      if (!problems.empty()) {
        WarnOnce(path, MtimeNs(st),
                 absl::StrCat("listed with defaults: ",
                              absl::StrJoin(problems, "; ")));
      }
      doc->Set("instance_id", Json::String(stem));
      doc->Set("connector_type", Json::String(connector));
      out.push_back({connector, std::string(stem), *std::move(doc)});
    }
  }
  return out;
}

absl::Status InstanceStore::WriteHistory(const std::string& connector,
                                         const std::string& instance_id,
                                         const std::string& content) {
  if (options_.history_limit <= 0) return absl::OkStatus();
  const std::string dir =
      absl::StrCat(ConnectorDir(connector), "/", kHistoryDir);
  IOT2MQTT_RETURN_IF_ERROR(MakeDirectories(dir, kDirMode));
  absl::Time time = Now();
  std::string path;
  do {  // Never overwrite a version taken in the same microsecond.
    path = absl::StrCat(
        dir, "/", instance_id, ".",
        absl::FormatTime("%Y%m%dT%H%M%E6S", time, absl::UTCTimeZone()),
        "Z.json");
    time += absl::Microseconds(1);
  } while (PathExists(path));
  IOT2MQTT_RETURN_IF_ERROR(WriteFileAtomically(path, content, kFileMode));

  IOT2MQTT_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDirectory(dir));
  std::vector<std::string> versions;
  for (std::string& name : names) {
    if (IsHistoryNameOf(name, instance_id)) versions.push_back(std::move(name));
  }
  // Sorted by name is oldest first.
  size_t limit = static_cast<size_t>(options_.history_limit);
  for (size_t i = 0; i + limit < versions.size(); ++i) {
    absl::Status removed = RemoveFile(absl::StrCat(dir, "/", versions[i]));
    if (!removed.ok() && !absl::IsNotFound(removed)) return removed;
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Mutations.

absl::StatusOr<InstanceChange> InstanceStore::Create(
    absl::string_view body_json) {
  IOT2MQTT_ASSIGN_OR_RETURN(Json body, ParseRequestBody(body_json));
  std::vector<Problem> problems;
  Request request = ReadRequest(body, /*create=*/true, &problems);
  if (!problems.empty()) return RequestError(problems);
  const std::string connector = *request.connector_type;
  const std::string instance_id = *request.instance_id;

  Fields fields;
  fields.instance_id = instance_id;
  fields.connector_type = connector;
  std::optional<Json> explicit_secrets = std::move(request.secrets);
  if (request.config) fields.config = std::move(*request.config);
  ApplyRequest(std::move(request), &fields);

  absl::MutexLock lock(&write_mu_);
  IOT2MQTT_RETURN_IF_ERROR(MakeDirectories(options_.instances_dir, kDirMode));
  IOT2MQTT_ASSIGN_OR_RETURN(
      FileLock file_lock,
      FileLock::Acquire(absl::StrCat(options_.instances_dir, "/", kLockName)));
  IOT2MQTT_ASSIGN_OR_RETURN(std::optional<std::string> holder,
                            Holder(instance_id));
  if (holder && *holder == connector) {
    return common::WithReason(
        absl::AlreadyExistsError("Instance already exists"),
        kInstanceAlreadyExists,
        {{"connector", connector}, {"instance_id", instance_id}});
  }
  if (holder) {
    return common::WithReason(
        absl::AlreadyExistsError(absl::StrCat(
            "instance id ", instance_id, " is already used by connector ",
            *holder, "; instance ids are unique across connectors")),
        kInstanceIdTaken,
        {{"connector", *holder}, {"instance_id", instance_id}});
  }

  const std::string now = FormatTimestamp(Now());
  fields.created_at = now;
  std::vector<std::string> flattened;
  Json doc = BuildDocument(fields, now, &flattened);
  IOT2MQTT_ASSIGN_OR_RETURN(
      SecretPlan plan, PlanSecrets(doc, DeclaredSecrets(connector), flattened,
                                   explicit_secrets, Json::Object(), "{}"));
  IOT2MQTT_ASSIGN_OR_RETURN(
      std::string pretty,
      sdk::RewriteJson(Compact(plan.doc), sdk::JsonFormat::kPretty));
  pretty.push_back('\n');

  IOT2MQTT_RETURN_IF_ERROR(MakeDirectories(ConnectorDir(connector), kDirMode));
  // Vault first ("{}" also clears what a crashed create may have left).
  IOT2MQTT_RETURN_IF_ERROR(
      vault_.Store(connector, instance_id, Compact(plan.values)));
  absl::Status written = WriteFileAtomically(
      InstancePath(connector, instance_id), pretty, kFileMode);
  if (!written.ok()) {
    (void)vault_.Remove(connector, instance_id);  // Best effort.
    return written;
  }
  IOT2MQTT_LOG(INFO)
          .With("connector", connector)
          .With("instance_id", instance_id)
      << "instance " << connector << "/" << instance_id << " created";
  return InstanceChange{connector, instance_id, true,
                        Response("Instance created", instance_id)};
}

absl::StatusOr<InstanceChange> InstanceStore::Update(
    absl::string_view connector_view, absl::string_view id_view,
    absl::string_view body_json) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateConnectorName(connector_view));
  IOT2MQTT_RETURN_IF_ERROR(ValidateInstanceId(id_view));
  const std::string connector(connector_view);
  const std::string instance_id(id_view);
  IOT2MQTT_ASSIGN_OR_RETURN(Json body, ParseRequestBody(body_json));
  std::vector<Problem> problems;
  Request request = ReadRequest(body, /*create=*/false, &problems);
  if (!problems.empty()) return RequestError(problems);

  absl::MutexLock lock(&write_mu_);
  const std::string path = InstancePath(connector, instance_id);
  if (!PathExists(path)) return NotFound(connector, instance_id);
  IOT2MQTT_ASSIGN_OR_RETURN(
      FileLock file_lock,
      FileLock::Acquire(absl::StrCat(options_.instances_dir, "/", kLockName)));
  absl::StatusOr<std::string> old_text = ReadWholeFile(path);
  if (absl::IsNotFound(old_text.status())) {
    return NotFound(connector, instance_id);
  }
  if (!old_text.ok()) return old_text.status();
  absl::StatusOr<Json> old_doc = ParseObject(*old_text);
  if (!old_doc.ok()) {
    return Corrupt(connector, instance_id, path,
                   absl::StrCat("is not a JSON object (",
                                old_doc.status().message(), ")"));
  }
  IOT2MQTT_ASSIGN_OR_RETURN(std::string old_values_json,
                            vault_.Load(connector, instance_id));
  IOT2MQTT_ASSIGN_OR_RETURN(Json old_values, ParseObject(old_values_json));
  IOT2MQTT_ASSIGN_OR_RETURN(std::string injected_text,
                            InjectSecrets(*old_text, old_values_json));
  IOT2MQTT_ASSIGN_OR_RETURN(Json injected, ParseObject(injected_text));

  Fields fields = FieldsOf(injected, connector, instance_id);
  if (fields.created_at.empty()) fields.created_at = FormatTimestamp(Now());
  std::optional<Json> explicit_secrets = std::move(request.secrets);
  if (request.config) {
    for (auto& [key, value] : request.config->members) {
      if (value.is_null()) {
        fields.config.Remove(key);
      } else {
        fields.config.Set(key, std::move(value));
      }
    }
  }
  ApplyRequest(std::move(request), &fields);

  std::vector<std::string> flattened;
  Json doc = BuildDocument(fields, FormatTimestamp(Now()), &flattened);
  IOT2MQTT_ASSIGN_OR_RETURN(
      SecretPlan plan,
      PlanSecrets(doc, DeclaredSecrets(connector), flattened, explicit_secrets,
                  *old_doc, old_values_json));

  // Nothing to do when only updated_at would change.
  Json before = *old_doc;
  Json after = plan.doc;
  before.Remove("updated_at");
  after.Remove("updated_at");
  if (Compact(before) == Compact(after) &&
      Canonical(old_values) == Canonical(plan.values)) {
    return InstanceChange{connector, instance_id, false,
                          Response("Instance updated", instance_id)};
  }

  IOT2MQTT_ASSIGN_OR_RETURN(
      std::string pretty,
      sdk::RewriteJson(Compact(plan.doc), sdk::JsonFormat::kPretty));
  pretty.push_back('\n');
  IOT2MQTT_RETURN_IF_ERROR(WriteHistory(connector, instance_id, *old_text));

  // The vault never lacks a value the document on disk names (see header).
  const std::string new_values = Compact(plan.values);
  Json both = old_values;
  bool dropped = false;
  for (const auto& [key, value] : plan.values.members) both.Set(key, value);
  for (const auto& [key, value] : old_values.members) {
    dropped = dropped || plan.values.Find(key) == nullptr;
  }
  IOT2MQTT_RETURN_IF_ERROR(vault_.Store(connector, instance_id,
                                        dropped ? Compact(both) : new_values));
  if (absl::Status written = WriteFileAtomically(path, pretty, kFileMode);
      !written.ok()) {
    (void)vault_.Store(connector, instance_id, old_values_json);  // Undo.
    return written;
  }
  if (dropped) {
    IOT2MQTT_RETURN_IF_ERROR(vault_.Store(connector, instance_id, new_values));
  }
  IOT2MQTT_LOG(INFO)
          .With("connector", connector)
          .With("instance_id", instance_id)
      << "instance " << connector << "/" << instance_id << " updated";
  return InstanceChange{connector, instance_id, true,
                        Response("Instance updated", instance_id)};
}

absl::StatusOr<InstanceChange> InstanceStore::Delete(
    absl::string_view connector_view, absl::string_view id_view) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateConnectorName(connector_view));
  IOT2MQTT_RETURN_IF_ERROR(ValidateInstanceId(id_view));
  const std::string connector(connector_view);
  const std::string instance_id(id_view);

  absl::MutexLock lock(&write_mu_);
  const std::string path = InstancePath(connector, instance_id);
  if (!PathExists(path)) {
    // Values a failed earlier delete left behind go now (OK when none).
    (void)vault_.Remove(connector, instance_id);
    return NotFound(connector, instance_id);
  }
  IOT2MQTT_ASSIGN_OR_RETURN(
      FileLock file_lock,
      FileLock::Acquire(absl::StrCat(options_.instances_dir, "/", kLockName)));
  absl::StatusOr<std::string> old_text = ReadWholeFile(path);
  if (absl::IsNotFound(old_text.status())) {
    return NotFound(connector, instance_id);
  }
  // A corrupt document can still be deleted (its bytes go to the history).
  if (!old_text.ok()) return old_text.status();
  IOT2MQTT_RETURN_IF_ERROR(WriteHistory(connector, instance_id, *old_text));
  absl::Status removed = RemoveFile(path);
  if (absl::IsNotFound(removed)) return NotFound(connector, instance_id);
  IOT2MQTT_RETURN_IF_ERROR(removed);
  IOT2MQTT_RETURN_IF_ERROR(vault_.Remove(connector, instance_id));
  IOT2MQTT_LOG(INFO)
          .With("connector", connector)
          .With("instance_id", instance_id)
      << "instance " << connector << "/" << instance_id << " deleted";
  return InstanceChange{connector, instance_id, true,
                        Response("Instance deleted successfully", "")};
}

// ---------------------------------------------------------------------------
// Reads.

absl::StatusOr<std::string> InstanceStore::Get(absl::string_view connector,
                                               absl::string_view instance_id) {
  IOT2MQTT_ASSIGN_OR_RETURN(std::string stored,
                            GetStoredJson(connector, instance_id));
  return MaskSecrets(stored);
}

absl::StatusOr<std::string> InstanceStore::GetStoredJson(
    absl::string_view connector, absl::string_view instance_id) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateConnectorName(connector));
  IOT2MQTT_RETURN_IF_ERROR(ValidateInstanceId(instance_id));
  const std::string path = InstancePath(connector, instance_id);
  absl::StatusOr<std::string> text = ReadWholeFile(path);
  if (absl::IsNotFound(text.status())) return NotFound(connector, instance_id);
  if (!text.ok()) return text.status();
  absl::StatusOr<Json> doc = ParseObject(*text);
  if (!doc.ok()) {
    return Corrupt(
        connector, instance_id, path,
        absl::StrCat("is not a JSON object (", doc.status().message(), ")"));
  }
  doc->Set("instance_id", Json::String(instance_id));
  doc->Set("connector_type", Json::String(connector));
  return Compact(*doc);
}

absl::StatusOr<std::string> InstanceStore::GetWithSecrets(
    absl::string_view connector, absl::string_view instance_id) {
  absl::MutexLock lock(&write_mu_);  // The file and the vault agree.
  IOT2MQTT_ASSIGN_OR_RETURN(std::string stored,
                            GetStoredJson(connector, instance_id));
  IOT2MQTT_ASSIGN_OR_RETURN(std::string values,
                            vault_.Load(connector, instance_id));
  return InjectSecrets(stored, values);
}

absl::StatusOr<std::string> InstanceStore::GetRuntimeSecretsValues(
    absl::string_view connector, absl::string_view instance_id) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateConnectorName(connector));
  IOT2MQTT_RETURN_IF_ERROR(ValidateInstanceId(instance_id));
  absl::MutexLock lock(&write_mu_);
  if (!PathExists(InstancePath(connector, instance_id))) {
    return NotFound(connector, instance_id);
  }
  return vault_.Load(connector, instance_id);
}

absl::StatusOr<std::string> InstanceStore::FindById(
    absl::string_view instance_id) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateInstanceId(instance_id));
  IOT2MQTT_ASSIGN_OR_RETURN(std::optional<std::string> holder,
                            Holder(instance_id));
  if (!holder) return NotFoundById(instance_id);
  return *holder;
}

namespace {

// IntegrationInstance of upstream's api/integrations.py.
struct TypedView {
  std::string friendly_name;
  bool enabled = true;
  int device_count = 0;
  std::string created_at_json = "null";
  const char* status = "unknown";
};

TypedView TypedViewOf(const Json& doc, const std::string& instance_id) {
  TypedView view;
  view.friendly_name = instance_id;
  if (const Json* v = doc.Find("friendly_name")) {
    if (std::optional<std::string> s = v->AsString(); s && !s->empty()) {
      view.friendly_name = *s;
    }
  }
  if (const Json* v = doc.Find("enabled")) {
    if (std::optional<bool> b = v->AsBool()) view.enabled = *b;
  }
  if (const Json* v = doc.Find("devices"); v != nullptr && v->is_array()) {
    view.device_count = static_cast<int>(v->elements.size());
  }
  if (const Json* v = doc.Find("created_at"); v != nullptr && v->is_string()) {
    view.created_at_json = v->scalar;
  }
  view.status = view.enabled ? "unknown" : "disabled";
  return view;
}

std::string IntegrationInstanceJson(const std::string& connector,
                                    const std::string& instance_id,
                                    const Json& doc) {
  TypedView view = TypedViewOf(doc, instance_id);
  return sdk::JsonObjectBuilder()
      .Set("instance_id", instance_id)
      .Set("friendly_name", view.friendly_name)
      .Set("integration", connector)
      .Set("status", view.status)
      .Set("device_count", view.device_count)
      .SetNull("last_seen")
      .SetRaw("created_at", view.created_at_json)
      .Set("enabled", view.enabled)
      .SetRaw("config", Compact(doc))
      .Build();
}

std::string JsonArray(const std::vector<std::string>& elements) {
  return absl::StrCat("[", absl::StrJoin(elements, ","), "]");
}

}  // namespace

absl::StatusOr<std::string> InstanceStore::ListInstancesJson(
    const std::optional<std::string>& connector) {
  if (connector) IOT2MQTT_RETURN_IF_ERROR(ValidateConnectorName(*connector));
  IOT2MQTT_ASSIGN_OR_RETURN(std::vector<Stored> instances, Scan(connector));
  std::vector<std::string> docs;
  docs.reserve(instances.size());
  for (const Stored& stored : instances) docs.push_back(Compact(stored.doc));
  return JsonArray(docs);
}

absl::StatusOr<std::string> InstanceStore::ListConfiguredIntegrationsJson() {
  IOT2MQTT_ASSIGN_OR_RETURN(std::vector<Stored> instances, Scan(std::nullopt));
  std::vector<std::string> integrations;
  for (size_t begin = 0; begin < instances.size();) {
    const std::string& connector = instances[begin].connector;
    size_t end = begin;
    std::vector<std::string> members;
    bool any_unknown = false;
    for (; end < instances.size() && instances[end].connector == connector;
         ++end) {
      const Stored& stored = instances[end];
      members.push_back(
          IntegrationInstanceJson(connector, stored.instance_id, stored.doc));
      any_unknown =
          any_unknown || TypedViewOf(stored.doc, stored.instance_id).enabled;
    }
    integrations.push_back(
        sdk::JsonObjectBuilder()
            .Set("name", connector)
            .Set("display_name", DisplayName(connector))
            .Set("instances_count", static_cast<int>(end - begin))
            .Set("status", any_unknown ? "unknown" : "disabled")
            .SetNull("last_seen")
            .SetRaw("instances", JsonArray(members))
            .Build());
    begin = end;
  }
  return JsonArray(integrations);
}

absl::StatusOr<std::string> InstanceStore::ListIntegrationInstancesJson(
    absl::string_view connector) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateConnectorName(connector));
  IOT2MQTT_ASSIGN_OR_RETURN(std::vector<Stored> instances,
                            Scan(std::string(connector)));
  std::vector<std::string> members;
  for (const Stored& stored : instances) {
    members.push_back(IntegrationInstanceJson(stored.connector,
                                              stored.instance_id, stored.doc));
  }
  return JsonArray(members);
}

absl::StatusOr<std::string> InstanceStore::GetIntegrationInstanceJson(
    absl::string_view instance_id) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateInstanceId(instance_id));
  IOT2MQTT_ASSIGN_OR_RETURN(std::optional<std::string> holder,
                            Holder(instance_id));
  if (!holder) return NotFoundById(instance_id);
  absl::StatusOr<std::string> doc_text = Get(*holder, instance_id);
  if (absl::IsNotFound(doc_text.status())) return NotFoundById(instance_id);
  if (!doc_text.ok()) return doc_text.status();
  IOT2MQTT_ASSIGN_OR_RETURN(Json doc, ParseObject(*doc_text));
  const std::string id(instance_id);
  TypedView view = TypedViewOf(doc, id);
  return sdk::JsonObjectBuilder()
      .Set("instance_id", id)
      .Set("integration", *holder)
      .Set("friendly_name", view.friendly_name)
      .Set("status", view.status)
      .SetRaw("config", *doc_text)
      .SetRaw("created_at", view.created_at_json)
      .Build();
}

absl::StatusOr<std::map<std::string, std::vector<std::string>>>
InstanceStore::InstanceIdsByConnector() {
  IOT2MQTT_ASSIGN_OR_RETURN(std::vector<Stored> instances, Scan(std::nullopt));
  std::map<std::string, std::vector<std::string>> ids;
  for (Stored& stored : instances) {
    ids[stored.connector].push_back(std::move(stored.instance_id));
  }
  return ids;
}

absl::StatusOr<int> InstanceStore::CountDevices() {
  IOT2MQTT_ASSIGN_OR_RETURN(std::vector<Stored> instances, Scan(std::nullopt));
  int count = 0;
  for (const Stored& stored : instances) {
    count += TypedViewOf(stored.doc, stored.instance_id).device_count;
  }
  return count;
}

}  // namespace iot2mqtt::config
