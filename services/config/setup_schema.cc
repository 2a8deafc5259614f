#include "services/config/setup_schema.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "rapidjson/document.h"
#include "services/common/status.h"

namespace iot2mqtt::config {
namespace {

using rapidjson::Value;

constexpr unsigned kParseFlags = rapidjson::kParseValidateEncodingFlag |
                                 rapidjson::kParseFullPrecisionFlag |
                                 rapidjson::kParseIterativeFlag;

constexpr const char* kStepTypes[] = {"form",     "tool",      "select",
                                      "summary",  "discovery", "message",
                                      "instance", "oauth"};
constexpr const char* kStandardFieldTypes[] = {
    "text", "password", "number", "select",  "checkbox",
    "ip",   "url",      "email",  "textarea"};
constexpr const char* kToolNetworks[] = {"none", "local", "internet"};
constexpr int64_t kMaxToolTimeoutSeconds = 600;

// Parses `text` strictly: sdk::RewriteJson first (UTF-8, nesting depth,
// RFC 8259), so the error names the offset; then into `document`.
absl::Status ParseDocument(absl::string_view text,
                           rapidjson::Document* document) {
  absl::StatusOr<std::string> checked = sdk::RewriteJson(text);
  if (!checked.ok()) return checked.status();
  document->Parse<kParseFlags>(text.data(), text.size());
  if (document->HasParseError()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid JSON at offset ", document->GetErrorOffset()));
  }
  return absl::OkStatus();
}

absl::string_view View(const Value& string) {
  return absl::string_view(string.GetString(), string.GetStringLength());
}

// The member `key` of `object`; the last one when the key repeats (as
// Python's json and sdk::SplitJsonObject do). nullptr when absent.
const Value* Find(const Value& object, absl::string_view key) {
  const Value* found = nullptr;
  for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
    if (View(it->name) == key) found = &it->value;
  }
  return found;
}

// The string member `key`, or "" when absent or not a string.
std::string StringOf(const Value& object, absl::string_view key) {
  const Value* value = Find(object, key);
  return value != nullptr && value->IsString() ? std::string(View(*value))
                                               : std::string();
}

bool IsTrue(const Value& object, absl::string_view key) {
  const Value* value = Find(object, key);
  return value != nullptr && value->IsBool() && value->GetBool();
}

bool IsInteger(const Value& value) {
  if (value.IsInt64()) return true;
  if (!value.IsDouble()) return false;
  double d = value.GetDouble();
  return std::isfinite(d) && std::trunc(d) == d && std::fabs(d) < 9.0e18;
}

int64_t IntegerOf(const Value& value) {
  return value.IsInt64() ? value.GetInt64()
                         : static_cast<int64_t>(value.GetDouble());
}

bool OneOf(absl::string_view value, const char* const* begin,
           const char* const* end) {
  for (const char* const* it = begin; it != end; ++it) {
    if (value == *it) return true;
  }
  return false;
}

template <size_t N>
bool OneOf(absl::string_view value, const char* const (&set)[N]) {
  return OneOf(value, set, set + N);
}

template <size_t N>
std::string ListOf(const char* const (&set)[N]) {
  return absl::StrJoin(set, set + N, ", ");
}

// ^[a-z][a-z0-9_]*$: the name of a custom field type.
bool IsCustomFieldType(absl::string_view type) {
  if (type.empty() || type[0] < 'a' || type[0] > 'z') return false;
  for (char c : type) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

// Every step id of every flow (for multi_device's loop bounds).
std::set<std::string> AllStepIds(const Value& root) {
  std::set<std::string> ids;
  const Value* flows = Find(root, "flows");
  if (flows == nullptr || !flows->IsArray()) return ids;
  for (const Value& flow : flows->GetArray()) {
    if (!flow.IsObject()) continue;
    const Value* steps = Find(flow, "steps");
    if (steps == nullptr || !steps->IsArray()) continue;
    for (const Value& step : steps->GetArray()) {
      if (step.IsObject()) {
        const Value* id = Find(step, "id");
        if (id != nullptr && id->IsString()) ids.insert(std::string(View(*id)));
      }
    }
  }
  return ids;
}

// Calls `visit(field)` for every object in the `schema.fields` of every form
// step of every flow, in document order.
template <typename Visit>
void ForEachFormField(const Value& root, Visit visit) {
  const Value* flows = Find(root, "flows");
  if (flows == nullptr || !flows->IsArray()) return;
  for (const Value& flow : flows->GetArray()) {
    if (!flow.IsObject()) continue;
    const Value* steps = Find(flow, "steps");
    if (steps == nullptr || !steps->IsArray()) continue;
    for (const Value& step : steps->GetArray()) {
      if (!step.IsObject() || StringOf(step, "type") != "form") continue;
      const Value* schema = Find(step, "schema");
      if (schema == nullptr || !schema->IsObject()) continue;
      const Value* fields = Find(*schema, "fields");
      if (fields == nullptr || !fields->IsArray()) continue;
      for (const Value& field : fields->GetArray()) {
        if (field.IsObject()) visit(field);
      }
    }
  }
}

enum class Kind { kString, kBool, kNumber, kObject, kArray };

bool HasKind(const Value& value, Kind kind) {
  switch (kind) {
    case Kind::kString:
      return value.IsString();
    case Kind::kBool:
      return value.IsBool();
    case Kind::kNumber:
      return value.IsNumber();
    case Kind::kObject:
      return value.IsObject();
    case Kind::kArray:
      return value.IsArray();
  }
  return false;
}

const char* MustBe(Kind kind) {
  switch (kind) {
    case Kind::kString:
      return "must be a string";
    case Kind::kBool:
      return "must be a boolean";
    case Kind::kNumber:
      return "must be a number";
    case Kind::kObject:
      return "must be an object";
    case Kind::kArray:
      return "must be an array";
  }
  return "has the wrong type";
}

std::string Join(const std::string& path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

std::string Index(const std::string& path, size_t index) {
  return absl::StrCat(path, "[", index, "]");
}

// Walks a parsed setup.json and collects its problems.
class SchemaChecker {
 public:
  std::vector<SchemaProblem> Check(const Value& root) {
    if (!root.IsObject()) {
      Add("", "must be a JSON object");
      return std::move(problems_);
    }
    Required(root, "", "display_name", Kind::kString);
    for (const char* key : {"version", "description", "author"}) {
      Optional(root, "", key, Kind::kString);
    }
    if (const Value* branding = Optional(root, "", "branding", Kind::kObject)) {
      for (const char* key : {"icon", "color", "background", "category"}) {
        Optional(*branding, "branding", key, Kind::kString);
      }
    }
    Optional(root, "", "requirements", Kind::kObject);
    Optional(root, "", "discovery", Kind::kObject);
    if (const Value* secrets = Optional(root, "", "secrets", Kind::kArray)) {
      CheckStringArray(*secrets, "secrets");
    }
    CheckTools(root);
    CheckFlows(root);
    CheckMultiDevice(root);
    return std::move(problems_);
  }

 private:
  void Add(std::string path, std::string message) {
    problems_.push_back({std::move(path), std::move(message)});
  }

  // The member when present, not null and of `kind`; reports a present
  // member of another type. nullptr otherwise.
  const Value* Optional(const Value& object, const std::string& path,
                        absl::string_view key, Kind kind) {
    const Value* value = Find(object, key);
    if (value == nullptr || value->IsNull()) return nullptr;
    if (!HasKind(*value, kind)) {
      Add(Join(path, key), MustBe(kind));
      return nullptr;
    }
    return value;
  }

  // As Optional, but a missing or null member is reported too.
  const Value* Required(const Value& object, const std::string& path,
                        absl::string_view key, Kind kind) {
    const Value* value = Find(object, key);
    if (value == nullptr || value->IsNull()) {
      Add(Join(path, key), "is required");
      return nullptr;
    }
    return Optional(object, path, key, kind);
  }

  // A required, non-empty string member.
  const Value* RequiredName(const Value& object, const std::string& path,
                            absl::string_view key) {
    const Value* value = Required(object, path, key, Kind::kString);
    if (value != nullptr && value->GetStringLength() == 0) {
      Add(Join(path, key), "must not be empty");
      return nullptr;
    }
    return value;
  }

  void CheckStringArray(const Value& array, const std::string& path) {
    for (size_t i = 0; i < array.Size(); ++i) {
      if (!array[static_cast<rapidjson::SizeType>(i)].IsString()) {
        Add(Index(path, i), "must be a string");
      }
    }
  }

  void CheckTools(const Value& root) {
    const Value* tools = Optional(root, "", "tools", Kind::kObject);
    if (tools == nullptr) return;
    for (auto it = tools->MemberBegin(); it != tools->MemberEnd(); ++it) {
      tool_ids_.insert(std::string(View(it->name)));
      std::string path = Join("tools", View(it->name));
      const Value& tool = it->value;
      if (!tool.IsObject()) {
        Add(path, "must be an object");
        continue;
      }
      if (const Value* entry = Required(tool, path, "entry", Kind::kString)) {
        CheckEntry(View(*entry), Join(path, "entry"));
      }
      const Value* timeout = Find(tool, "timeout");
      if (timeout != nullptr && !timeout->IsNull() &&
          (!IsInteger(*timeout) || IntegerOf(*timeout) <= 0 ||
           IntegerOf(*timeout) > kMaxToolTimeoutSeconds)) {
        Add(Join(path, "timeout"),
            absl::StrCat("must be a positive integer of at most ",
                         kMaxToolTimeoutSeconds, " (seconds)"));
      }
      if (const Value* network =
              Optional(tool, path, "network", Kind::kString)) {
        if (!OneOf(View(*network), kToolNetworks)) {
          Add(Join(path, "network"),
              absl::StrCat("must be one of ", ListOf(kToolNetworks)));
        }
      }
      if (const Value* secrets =
              Optional(tool, path, "secrets", Kind::kArray)) {
        CheckStringArray(*secrets, Join(path, "secrets"));
      }
      if (const Value* environment =
              Optional(tool, path, "environment", Kind::kObject)) {
        std::string env_path = Join(path, "environment");
        for (auto var = environment->MemberBegin();
             var != environment->MemberEnd(); ++var) {
          if (!var->value.IsString()) {
            Add(Join(env_path, View(var->name)), "must be a string");
          }
        }
      }
    }
  }

  void CheckEntry(absl::string_view entry, const std::string& path) {
    if (entry.empty()) {
      Add(path, "must not be empty");
    } else if (entry[0] == '/') {
      Add(path, "must be a path relative to the connector directory");
    } else if (absl::StrContains(entry, "..")) {
      Add(path, "must not contain '..'");
    } else if (absl::StrContains(entry, absl::string_view("\0", 1))) {
      Add(path, "must not contain NUL characters");
    }
  }

  void CheckFlows(const Value& root) {
    const Value* flows = Required(root, "", "flows", Kind::kArray);
    if (flows == nullptr) return;
    if (flows->Empty()) {
      Add("flows", "must contain at least one flow");
      return;
    }
    std::set<std::string> flow_ids;
    for (size_t i = 0; i < flows->Size(); ++i) {
      const Value& flow = (*flows)[static_cast<rapidjson::SizeType>(i)];
      std::string path = Index("flows", i);
      if (!flow.IsObject()) {
        Add(path, "must be an object");
        continue;
      }
      if (const Value* id = RequiredName(flow, path, "id")) {
        if (!flow_ids.insert(std::string(View(*id))).second) {
          Add(Join(path, "id"),
              absl::StrCat("duplicate flow id '", View(*id), "'"));
        }
      }
      RequiredName(flow, path, "name");
      Optional(flow, path, "description", Kind::kString);
      Optional(flow, path, "default", Kind::kBool);
      if (const Value* prerequisites =
              Optional(flow, path, "prerequisites", Kind::kArray)) {
        CheckStringArray(*prerequisites, Join(path, "prerequisites"));
      }
      const Value* steps = Required(flow, path, "steps", Kind::kArray);
      if (steps == nullptr) continue;
      if (steps->Empty()) {
        Add(Join(path, "steps"), "must contain at least one step");
        continue;
      }
      std::set<std::string> step_ids;
      for (size_t j = 0; j < steps->Size(); ++j) {
        CheckStep((*steps)[static_cast<rapidjson::SizeType>(j)],
                  Index(Join(path, "steps"), j), &step_ids);
      }
    }
  }

  void CheckStep(const Value& step, const std::string& path,
                 std::set<std::string>* step_ids) {
    if (!step.IsObject()) {
      Add(path, "must be an object");
      return;
    }
    if (const Value* id = RequiredName(step, path, "id")) {
      if (!step_ids->insert(std::string(View(*id))).second) {
        Add(Join(path, "id"),
            absl::StrCat("duplicate step id '", View(*id), "'"));
      }
    }
    std::string type;
    if (const Value* value = Required(step, path, "type", Kind::kString)) {
      type = std::string(View(*value));
      if (!OneOf(type, kStepTypes)) {
        Add(Join(path, "type"),
            absl::StrCat("must be one of ", ListOf(kStepTypes)));
        type.clear();
      }
    }
    Optional(step, path, "title", Kind::kString);
    Optional(step, path, "description", Kind::kString);
    Optional(step, path, "auto_advance", Kind::kBool);
    Optional(step, path, "optional", Kind::kBool);
    Optional(step, path, "conditions", Kind::kObject);
    if (const Value* actions = Optional(step, path, "actions", Kind::kArray)) {
      for (size_t i = 0; i < actions->Size(); ++i) {
        if (!(*actions)[static_cast<rapidjson::SizeType>(i)].IsObject()) {
          Add(Index(Join(path, "actions"), i), "must be an object");
        }
      }
    }
    if (type == "form") {
      CheckFormStep(step, path);
    } else if (type == "tool") {
      if (const Value* tool = Required(step, path, "tool", Kind::kString)) {
        if (tool_ids_.count(std::string(View(*tool))) == 0) {
          Add(Join(path, "tool"),
              absl::StrCat("names tool '", View(*tool),
                           "', which is not declared in tools"));
        }
      }
      Optional(step, path, "input", Kind::kObject);
      Optional(step, path, "output_key", Kind::kString);
    } else if (type == "select") {
      const Value* items = Find(step, "items");
      if (items != nullptr && !items->IsNull() && !items->IsString() &&
          !items->IsArray()) {
        Add(Join(path, "items"), "must be a string or an array");
      }
      Optional(step, path, "item_label", Kind::kString);
      const Value* item_value = Find(step, "item_value");
      if (item_value != nullptr && !item_value->IsNull() &&
          !item_value->IsString() && !item_value->IsObject()) {
        Add(Join(path, "item_value"), "must be a string or an object");
      }
      Optional(step, path, "multi_select", Kind::kBool);
      Optional(step, path, "output_key", Kind::kString);
    } else if (type == "summary") {
      if (const Value* sections =
              Optional(step, path, "sections", Kind::kArray)) {
        for (size_t i = 0; i < sections->Size(); ++i) {
          const Value& section =
              (*sections)[static_cast<rapidjson::SizeType>(i)];
          std::string section_path = Index(Join(path, "sections"), i);
          if (!section.IsObject()) {
            Add(section_path, "must be an object");
            continue;
          }
          Optional(section, section_path, "label", Kind::kString);
          Optional(section, section_path, "value", Kind::kString);
        }
      }
    } else if (type == "instance") {
      Required(step, path, "instance", Kind::kObject);
    } else if (type == "oauth") {
      if (const Value* oauth = Required(step, path, "oauth", Kind::kObject)) {
        std::string oauth_path = Join(path, "oauth");
        RequiredName(*oauth, oauth_path, "provider");
        if (const Value* scopes =
                Optional(*oauth, oauth_path, "scopes", Kind::kArray)) {
          CheckStringArray(*scopes, Join(oauth_path, "scopes"));
        }
        Optional(*oauth, oauth_path, "redirect_uri", Kind::kString);
      }
    }
  }

  void CheckFormStep(const Value& step, const std::string& path) {
    const Value* schema = Required(step, path, "schema", Kind::kObject);
    if (schema == nullptr) return;
    std::string schema_path = Join(path, "schema");
    const Value* fields =
        Required(*schema, schema_path, "fields", Kind::kArray);
    if (fields == nullptr) return;
    std::set<std::string> names;
    for (size_t i = 0; i < fields->Size(); ++i) {
      CheckField((*fields)[static_cast<rapidjson::SizeType>(i)],
                 Index(Join(schema_path, "fields"), i), &names);
    }
  }

  void CheckField(const Value& field, const std::string& path,
                  std::set<std::string>* names) {
    if (!field.IsObject()) {
      Add(path, "must be an object");
      return;
    }
    std::string type;
    if (const Value* value = Required(field, path, "type", Kind::kString)) {
      type = std::string(View(*value));
      if (!OneOf(type, kStandardFieldTypes) && !IsCustomFieldType(type)) {
        Add(Join(path, "type"),
            absl::StrCat("must be one of ", ListOf(kStandardFieldTypes),
                         ", or a custom field type matching "
                         "^[a-z][a-z0-9_]*$"));
      }
    }
    if (const Value* name = RequiredName(field, path, "name")) {
      if (!names->insert(std::string(View(*name))).second) {
        Add(Join(path, "name"),
            absl::StrCat("duplicate field name '", View(*name), "'"));
      }
    }
    for (const char* key : {"label", "description", "placeholder", "pattern"}) {
      Optional(field, path, key, Kind::kString);
    }
    for (const char* key : {"required", "multiline", "secret", "advanced"}) {
      Optional(field, path, key, Kind::kBool);
    }
    const Value* min = Optional(field, path, "min", Kind::kNumber);
    const Value* max = Optional(field, path, "max", Kind::kNumber);
    Optional(field, path, "step", Kind::kNumber);
    if (min != nullptr && max != nullptr &&
        min->GetDouble() > max->GetDouble()) {
      Add(Join(path, "max"), "must not be less than min");
    }
    Optional(field, path, "conditions", Kind::kObject);
    const Value* options = type == "select"
                               ? Required(field, path, "options", Kind::kArray)
                               : Optional(field, path, "options", Kind::kArray);
    if (options != nullptr) {
      for (size_t i = 0; i < options->Size(); ++i) {
        const Value& option = (*options)[static_cast<rapidjson::SizeType>(i)];
        std::string option_path = Index(Join(path, "options"), i);
        if (!option.IsObject()) {
          Add(option_path, "must be an object with value and label");
          continue;
        }
        if (Find(option, "value") == nullptr) {
          Add(Join(option_path, "value"), "is required");
        }
        Required(option, option_path, "label", Kind::kString);
      }
    }
  }

  void CheckMultiDevice(const Value& root) {
    const Value* multi = Optional(root, "", "multi_device", Kind::kObject);
    if (multi == nullptr) return;
    const std::string path = "multi_device";
    const Value* enabled = Required(*multi, path, "enabled", Kind::kBool);
    const Value* max_devices = Find(*multi, "max_devices");
    if (max_devices != nullptr && !max_devices->IsNull() &&
        (!IsInteger(*max_devices) || IntegerOf(*max_devices) <= 0)) {
      Add(Join(path, "max_devices"), "must be a positive integer");
    }
    Optional(*multi, path, "device_label", Kind::kString);
    Optional(*multi, path, "add_button_label", Kind::kString);
    bool on = enabled != nullptr && enabled->GetBool();
    std::set<std::string> step_ids = AllStepIds(root);
    for (const char* key : {"loop_from_step", "loop_to_step"}) {
      const Value* step = on ? Required(*multi, path, key, Kind::kString)
                             : Optional(*multi, path, key, Kind::kString);
      if (step != nullptr && step_ids.count(std::string(View(*step))) == 0) {
        Add(Join(path, key),
            absl::StrCat("names step '", View(*step), "', which no flow has"));
      }
    }
  }

  std::vector<SchemaProblem> problems_;
  std::set<std::string> tool_ids_;
};

// A JSON array of strings.
std::string JsonArray(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ",";
    out += sdk::JsonString(items[i]);
  }
  out += "]";
  return out;
}

// Whether `value` fully matches `pattern`; nullopt when the pattern does not
// compile or the match can't be completed.
std::optional<bool> FullMatch(const std::string& pattern,
                              const std::string& value) {
  if (value.size() > kMaxPatternInput) return false;
  try {
    std::regex re(pattern, std::regex::ECMAScript);
    return std::regex_match(value, re);
  } catch (const std::regex_error&) {
    return std::nullopt;
  }
}

}  // namespace

std::vector<SchemaProblem> ValidateSetupSchema(absl::string_view json) {
  rapidjson::Document document;
  absl::Status parsed = ParseDocument(json, &document);
  if (!parsed.ok()) return {{"", std::string(parsed.message())}};
  return SchemaChecker().Check(document);
}

std::set<std::string> DeclaredSecretFields(absl::string_view json) {
  std::set<std::string> names;
  rapidjson::Document document;
  if (!ParseDocument(json, &document).ok() || !document.IsObject()) {
    return names;
  }
  ForEachFormField(document, [&names](const Value& field) {
    const Value* name = Find(field, "name");
    if (name == nullptr || !name->IsString()) return;
    if (IsTrue(field, "secret") || StringOf(field, "type") == "password") {
      names.insert(std::string(View(*name)));
    }
  });
  return names;
}

absl::StatusOr<std::string> ValidateConfigAgainstSetup(
    absl::string_view setup_json, absl::string_view config_json) {
  rapidjson::Document config;
  absl::Status parsed = ParseDocument(config_json, &config);
  if (!parsed.ok() || !config.IsObject()) {
    std::string why = parsed.ok() ? absl::StrCat("expected a JSON object, got ",
                                                 sdk::DescribeJsonType(config))
                                  : std::string(parsed.message());
    return common::WithReason(
        absl::InvalidArgumentError(absl::StrCat("config is invalid: ", why)),
        kInvalidConfig);
  }
  rapidjson::Document setup;
  parsed = ParseDocument(setup_json, &setup);
  if (!parsed.ok() || !setup.IsObject()) {
    std::string why =
        parsed.ok() ? "expected a JSON object" : std::string(parsed.message());
    return common::WithReason(absl::FailedPreconditionError(
                                  absl::StrCat("setup.json is invalid: ", why)),
                              kSetupSchemaInvalid);
  }

  // Field name → definition; a name keeps its first position, a later
  // definition wins (a Python dict's update semantics).
  std::vector<std::string> order;
  std::map<std::string, const Value*> fields;
  ForEachFormField(setup, [&](const Value& field) {
    const Value* name = Find(field, "name");
    if (name == nullptr || !name->IsString()) return;
    std::string key(View(*name));
    if (fields.count(key) == 0) order.push_back(key);
    fields[key] = &field;
  });

  std::vector<std::string> errors;
  std::vector<std::string> warnings;
  for (const std::string& name : order) {
    const Value& field = *fields[name];
    const Value* value = Find(config, name);
    if (value == nullptr || value->IsNull()) {
      if (IsTrue(field, "required")) {
        errors.push_back(
            absl::StrCat("Required field '", name, "' is missing"));
      }
      continue;
    }
    std::string type = StringOf(field, "type");
    const Value* min = Find(field, "min");
    const Value* max = Find(field, "max");
    if (min != nullptr && !min->IsNumber()) min = nullptr;
    if (max != nullptr && !max->IsNumber()) max = nullptr;
    bool numeric = value->IsNumber();  // Booleans are not numbers here.
    if (!numeric && (type == "number" || min != nullptr || max != nullptr)) {
      errors.push_back(absl::StrCat("Field '", name, "' must be numeric"));
    }
    if (type == "checkbox" && !value->IsBool()) {
      errors.push_back(absl::StrCat("Field '", name, "' must be boolean"));
    }
    const Value* pattern = Find(field, "pattern");
    if (pattern != nullptr && pattern->IsString() && value->IsString()) {
      std::optional<bool> match =
          FullMatch(std::string(View(*pattern)), std::string(View(*value)));
      if (!match.has_value()) {
        errors.push_back(absl::StrCat(
            "Field '", name, "' has an invalid pattern in setup.json"));
      } else if (!*match) {
        errors.push_back(
            absl::StrCat("Field '", name, "' value does not match pattern"));
      }
    }
    if (numeric) {
      double number = value->GetDouble();
      if (min != nullptr && number < min->GetDouble()) {
        errors.push_back(absl::StrCat("Field '", name, "' must be >= ",
                                      PythonFloatRepr(min->GetDouble())));
      }
      if (max != nullptr && number > max->GetDouble()) {
        errors.push_back(absl::StrCat("Field '", name, "' must be <= ",
                                      PythonFloatRepr(max->GetDouble())));
      }
    }
  }
  std::set<std::string> seen;
  for (auto it = config.MemberBegin(); it != config.MemberEnd(); ++it) {
    std::string key(View(it->name));
    if (!seen.insert(key).second) continue;
    if (fields.count(key) == 0 && !absl::StartsWith(key, "_")) {
      warnings.push_back(absl::StrCat("Unknown field '", key, "'"));
    }
  }
  return absl::StrCat("{\"valid\":", errors.empty() ? "true" : "false",
                      ",\"errors\":", JsonArray(errors),
                      ",\"warnings\":", JsonArray(warnings), "}");
}

std::string PythonFloatRepr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  // The shortest scientific form that reads back as `value`.
  char buffer[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof(buffer), "%.*e", precision - 1, value);
    if (std::strtod(buffer, nullptr) == value) break;
  }
  // buffer: [-]d[.ddd]e(+|-)xx
  absl::string_view text(buffer);
  bool negative = absl::ConsumePrefix(&text, "-");
  size_t e = text.find('e');
  std::string digits;
  for (char c : text.substr(0, e)) {
    if (c != '.') digits += c;
  }
  int exponent = std::atoi(std::string(text.substr(e + 1)).c_str());
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();

  std::string out = negative ? "-" : "";
  int decimal_point = exponent + 1;  // Digits before the point.
  int n = static_cast<int>(digits.size());
  if (decimal_point > -4 && decimal_point <= 16) {
    if (decimal_point <= 0) {
      out += "0.";
      out.append(static_cast<size_t>(-decimal_point), '0');
      out += digits;
    } else if (decimal_point >= n) {
      out += digits;
      out.append(static_cast<size_t>(decimal_point - n), '0');
      out += ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(decimal_point));
      out += ".";
      out += digits.substr(static_cast<size_t>(decimal_point));
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (n > 1) absl::StrAppend(&out, ".", digits.substr(1));
  int magnitude = exponent < 0 ? -exponent : exponent;
  absl::StrAppend(&out, "e", exponent < 0 ? "-" : "+",
                  magnitude < 10 ? "0" : "", magnitude);
  return out;
}

}  // namespace iot2mqtt::config
