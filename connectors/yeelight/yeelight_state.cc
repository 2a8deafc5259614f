#include "connectors/yeelight/yeelight_state.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "rapidjson/error/en.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace iot2mqtt::yeelight {
namespace {

using rapidjson::Value;
using Allocator = rapidjson::Document::AllocatorType;

std::optional<int64_t> PropInt(const Properties& properties,
                               const std::string& name) {
  auto it = properties.find(name);
  if (it == properties.end()) return std::nullopt;
  int64_t value = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(it->second), &value)) {
    return std::nullopt;
  }
  return value;
}

std::string PropText(const Properties& properties, const std::string& name) {
  auto it = properties.find(name);
  return it == properties.end() ? std::string() : it->second;
}

void AddString(Value* object, const char* key, const std::string& text,
               Allocator& allocator) {
  object->AddMember(Value(key, allocator), Value(text.c_str(), allocator),
                    allocator);
}

void AddInt(Value* object, const char* key, int64_t number,
            Allocator& allocator) {
  object->AddMember(Value(key, allocator), Value(number), allocator);
}

void AddBool(Value* object, const char* key, bool flag, Allocator& allocator) {
  object->AddMember(Value(key, allocator), Value(flag), allocator);
}

// rgb {r,g,b} + hex_color, and hsv {h,s,v}, from `prefix`rgb / hue / sat.
void AddColour(const Properties& properties, const std::string& prefix,
               int64_t brightness, Value* object, Allocator& allocator) {
  std::optional<int64_t> rgb = PropInt(properties, prefix + "rgb");
  if (rgb && *rgb > 0 && *rgb <= 0xFFFFFF) {
    Value colour(rapidjson::kObjectType);
    AddInt(&colour, "r", (*rgb >> 16) & 0xFF, allocator);
    AddInt(&colour, "g", (*rgb >> 8) & 0xFF, allocator);
    AddInt(&colour, "b", *rgb & 0xFF, allocator);
    object->AddMember("rgb", colour, allocator);
    AddString(object, "hex_color",
              absl::StrFormat("#%06x", static_cast<unsigned>(*rgb)), allocator);
  }
  std::optional<int64_t> hue = PropInt(properties, prefix + "hue");
  std::optional<int64_t> sat = PropInt(properties, prefix + "sat");
  if (hue && sat && *hue >= 0 && *sat >= 0) {
    Value hsv(rapidjson::kObjectType);
    AddInt(&hsv, "h", *hue, allocator);
    AddInt(&hsv, "s", *sat, allocator);
    AddInt(&hsv, "v", brightness, allocator);
    object->AddMember("hsv", hsv, allocator);
  }
}

absl::Status Invalid(absl::string_view key, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("\"", key, "\": ", problem));
}

// An integer from a JSON number (rounded) or a numeric string.
absl::StatusOr<int64_t> ToInt(absl::string_view key, const Value& value) {
  if (value.IsInt64()) return value.GetInt64();
  if (value.IsNumber()) {
    double number = value.GetDouble();
    if (!std::isfinite(number) || std::fabs(number) > 1e9) {
      return Invalid(key, "number out of range");
    }
    return static_cast<int64_t>(std::llround(number));
  }
  if (value.IsString()) {
    absl::string_view text =
        absl::StripAsciiWhitespace(absl::string_view(value.GetString()));
    int64_t number = 0;
    if (absl::SimpleAtoi(text, &number)) return number;
    double real = 0;
    if (absl::SimpleAtod(text, &real) && std::isfinite(real) &&
        std::fabs(real) < 1e9) {
      return static_cast<int64_t>(std::llround(real));
    }
    return Invalid(key, absl::StrCat("\"", text, "\" is not a number"));
  }
  return Invalid(key, absl::StrCat("expected a number, got ",
                                   sdk::DescribeJsonType(value)));
}

int64_t Clamp(int64_t value, int64_t low, int64_t high) {
  return std::max(low, std::min(high, value));
}

// An absolute value, or "+N" / "-N" relative to `current`; clamped.
absl::StatusOr<int> AbsoluteOrRelative(absl::string_view key,
                                       const Value& value,
                                       std::optional<int64_t> current,
                                       int64_t fallback, int64_t low,
                                       int64_t high) {
  if (value.IsString()) {
    absl::string_view text =
        absl::StripAsciiWhitespace(absl::string_view(value.GetString()));
    if (!text.empty() && (text[0] == '+' || text[0] == '-')) {
      int64_t delta = 0;
      if (!absl::SimpleAtoi(text.substr(1), &delta)) {
        return Invalid(key, absl::StrCat("\"", text, "\" is not +N or -N"));
      }
      if (text[0] == '-') delta = -delta;
      return static_cast<int>(
          Clamp(current.value_or(fallback) + delta, low, high));
    }
  }
  absl::StatusOr<int64_t> number = ToInt(key, value);
  if (!number.ok()) return number.status();
  return static_cast<int>(Clamp(*number, low, high));
}

struct Rgb {
  int r, g, b;
};
struct Hsv {
  int h, s;
  std::optional<int> v;
};
using Colour = std::variant<Rgb, Hsv>;

absl::StatusOr<int> Component(absl::string_view key, const Value& object,
                              const char* name, int low, int high) {
  auto it = object.FindMember(name);
  if (it == object.MemberEnd()) {
    return Invalid(key, absl::StrCat("missing \"", name, "\""));
  }
  absl::StatusOr<int64_t> number =
      ToInt(absl::StrCat(key, ".", name), it->value);
  if (!number.ok()) return number.status();
  return static_cast<int>(Clamp(*number, low, high));
}

absl::StatusOr<Colour> ParseColour(absl::string_view key, const Value& value) {
  if (value.IsString()) {
    absl::string_view text =
        absl::StripAsciiWhitespace(absl::string_view(value.GetString()));
    absl::ConsumePrefix(&text, "#");
    unsigned rgb = 0;
    bool hex = text.size() == 6 &&
               std::all_of(text.begin(), text.end(),
                           [](char c) { return absl::ascii_isxdigit(c); });
    if (!hex || !absl::SimpleHexAtoi(text, &rgb)) {
      return Invalid(key, absl::StrCat("\"", value.GetString(),
                                       "\" is not a #RRGGBB colour"));
    }
    return Colour(Rgb{static_cast<int>((rgb >> 16) & 0xFF),
                      static_cast<int>((rgb >> 8) & 0xFF),
                      static_cast<int>(rgb & 0xFF)});
  }
  if (value.IsArray()) {
    if (value.Size() != 3) return Invalid(key, "expected [r, g, b]");
    int parts[3];
    for (rapidjson::SizeType i = 0; i < 3; ++i) {
      absl::StatusOr<int64_t> number = ToInt(key, value[i]);
      if (!number.ok()) return number.status();
      parts[i] = static_cast<int>(Clamp(*number, 0, 255));
    }
    return Colour(Rgb{parts[0], parts[1], parts[2]});
  }
  if (value.IsObject()) {
    if (value.HasMember("r") || value.HasMember("g") || value.HasMember("b")) {
      absl::StatusOr<int> r = Component(key, value, "r", 0, 255);
      if (!r.ok()) return r.status();
      absl::StatusOr<int> g = Component(key, value, "g", 0, 255);
      if (!g.ok()) return g.status();
      absl::StatusOr<int> b = Component(key, value, "b", 0, 255);
      if (!b.ok()) return b.status();
      return Colour(Rgb{*r, *g, *b});
    }
    if (value.HasMember("h") || value.HasMember("s")) {
      absl::StatusOr<int> h = Component(key, value, "h", 0, 359);
      if (!h.ok()) return h.status();
      absl::StatusOr<int> s = Component(key, value, "s", 0, 100);
      if (!s.ok()) return s.status();
      Hsv hsv{*h, *s, std::nullopt};
      if (value.HasMember("v")) {
        absl::StatusOr<int> v = Component(key, value, "v", 0, 100);
        if (!v.ok()) return v.status();
        hsv.v = *v;
      }
      return Colour(hsv);
    }
    return Invalid(key, "expected {r,g,b} or {h,s,v}");
  }
  return Invalid(key, absl::StrCat("expected \"#RRGGBB\", {r,g,b} or {h,s,v}, "
                                   "got ",
                                   sdk::DescribeJsonType(value)));
}

void AppendColour(const Colour& colour, Transition transition,
                  std::vector<Request>* out) {
  if (const Rgb* rgb = std::get_if<Rgb>(&colour)) {
    out->push_back(SetRgb(rgb->r, rgb->g, rgb->b, transition));
    return;
  }
  const Hsv& hsv = std::get<Hsv>(colour);
  if (hsv.v && *hsv.v != 100) {
    out->push_back(SetBright(std::max(1, *hsv.v), transition));
  }
  out->push_back(SetHsv(hsv.h, hsv.s, transition));
}

enum class PowerChange { kNone, kOn, kOff, kToggle };

absl::StatusOr<PowerChange> ParsePower(absl::string_view key,
                                       const Value& value) {
  if (value.IsBool())
    return value.GetBool() ? PowerChange::kOn : PowerChange::kOff;
  if (value.IsString()) {
    std::string text = absl::AsciiStrToLower(
        absl::StripAsciiWhitespace(absl::string_view(value.GetString())));
    if (text == "on" || text == "true") return PowerChange::kOn;
    if (text == "off" || text == "false") return PowerChange::kOff;
    if (text == "toggle") return PowerChange::kToggle;
  }
  if (value.IsInt64() && (value.GetInt64() == 0 || value.GetInt64() == 1)) {
    return value.GetInt64() == 1 ? PowerChange::kOn : PowerChange::kOff;
  }
  return Invalid(key, "expected true, false or \"toggle\"");
}

// The requests of one light (main or background).
struct LightPlan {
  PowerChange power = PowerChange::kNone;
  std::vector<Request> changes;  // Brightness, colour, ...

  void AppendTo(const Properties& current, const std::string& prefix,
                const CommandDefaults& defaults, Transition transition,
                bool background, std::vector<Request>* out) const {
    auto wrap = [background](Request request) {
      return background ? Background(std::move(request)) : request;
    };
    if (power == PowerChange::kOn)
      out->push_back(wrap(SetPower(true, transition)));
    if (power == PowerChange::kToggle) out->push_back(wrap(Toggle()));
    if (power == PowerChange::kNone && !changes.empty() && defaults.auto_on &&
        PropText(current, prefix + "power") == "off") {
      out->push_back(wrap(SetPower(true, transition)));
    }
    for (const Request& request : changes) out->push_back(wrap(request));
    if (power == PowerChange::kOff) {
      out->push_back(wrap(SetPower(false, transition)));
    }
  }
};

// Keys shared by the main and background lights.
absl::Status PlanLightKey(absl::string_view key, const Value& value,
                          const Properties& current, const std::string& prefix,
                          Transition transition, LightPlan* plan) {
  if (key == "power") {
    absl::StatusOr<PowerChange> power = ParsePower(key, value);
    if (!power.ok()) return power.status();
    plan->power = *power;
  } else if (key == "toggle") {
    plan->power = PowerChange::kToggle;
  } else if (key == "brightness") {
    absl::StatusOr<int> brightness = AbsoluteOrRelative(
        key, value, PropInt(current, prefix + "bright"), 50, 1, 100);
    if (!brightness.ok()) return brightness.status();
    plan->changes.push_back(SetBright(*brightness, transition));
  } else if (key == "brightness_step") {
    absl::StatusOr<int64_t> step = ToInt(key, value);
    if (!step.ok()) return step.status();
    int64_t base = PropInt(current, prefix + "bright").value_or(50);
    plan->changes.push_back(
        SetBright(static_cast<int>(Clamp(base + *step, 1, 100)), transition));
  } else if (key == "color_temp") {
    absl::StatusOr<int> kelvin = AbsoluteOrRelative(
        key, value, PropInt(current, prefix + "ct"), 4000, 1700, 6500);
    if (!kelvin.ok()) return kelvin.status();
    plan->changes.push_back(SetCtAbx(*kelvin, transition));
  } else if (key == "color" || key == "rgb" || key == "hsv") {
    absl::StatusOr<Colour> colour = ParseColour(key, value);
    if (!colour.ok()) return colour.status();
    if (key == "rgb" && !std::holds_alternative<Rgb>(*colour)) {
      return Invalid(key, "expected {r,g,b} or [r,g,b]");
    }
    if (key == "hsv" && !std::holds_alternative<Hsv>(*colour)) {
      return Invalid(key, "expected {h,s,v}");
    }
    AppendColour(*colour, transition, &plan->changes);
  } else {
    return absl::NotFoundError(std::string(key));
  }
  return absl::OkStatus();
}

const char* const kKnownKeys =
    "power, toggle, brightness, brightness_step, color_temp, color, rgb, hsv, "
    "name, background, transition, effect";

}  // namespace

std::string FormatTimestamp(absl::Time time) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time, absl::UTCTimeZone());
}

void BuildState(const Properties& properties, const BulbIdentity& identity,
                absl::Time now, Value* out, Allocator& allocator) {
  out->SetObject();
  int64_t brightness = PropInt(properties, "bright").value_or(100);
  AddBool(out, "online", true, allocator);
  AddBool(out, "power", PropText(properties, "power") == "on", allocator);
  AddInt(out, "brightness", brightness, allocator);
  AddInt(out, "color_temp", PropInt(properties, "ct").value_or(3500),
         allocator);
  AddInt(out, "color_mode", PropInt(properties, "color_mode").value_or(0),
         allocator);
  AddBool(out, "flowing", PropText(properties, "flowing") == "1", allocator);
  AddBool(out, "music_mode", PropText(properties, "music_on") == "1",
          allocator);
  std::string name = PropText(properties, "name");
  if (name.empty()) name = identity.name;
  if (name.empty()) name = identity.device_id;
  AddString(out, "name", name, allocator);
  AddString(out, "model", identity.model.empty() ? "unknown" : identity.model,
            allocator);
  AddString(out, "fw_ver",
            identity.fw_ver.empty() ? "unknown" : identity.fw_ver, allocator);
  AddString(out, "last_update", FormatTimestamp(now), allocator);
  AddColour(properties, "", brightness, out, allocator);
  if (std::optional<int64_t> nl_br = PropInt(properties, "nl_br")) {
    Value nightlight(rapidjson::kObjectType);
    AddInt(&nightlight, "brightness", *nl_br, allocator);
    AddBool(&nightlight, "active", PropText(properties, "active_mode") == "1",
            allocator);
    out->AddMember("nightlight", nightlight, allocator);
  }
  std::string bg_power = PropText(properties, "bg_power");
  if (!bg_power.empty()) {
    Value background(rapidjson::kObjectType);
    int64_t bg_bright = PropInt(properties, "bg_bright").value_or(100);
    AddBool(&background, "power", bg_power == "on", allocator);
    AddInt(&background, "brightness", bg_bright, allocator);
    AddInt(&background, "color_temp",
           PropInt(properties, "bg_ct").value_or(3500), allocator);
    AddInt(&background, "color_mode",
           PropInt(properties, "bg_lmode").value_or(0), allocator);
    AddBool(&background, "flowing", PropText(properties, "bg_flowing") == "1",
            allocator);
    AddColour(properties, "bg_", bg_bright, &background, allocator);
    out->AddMember("background", background, allocator);
  }
}

std::string StateJson(const Properties& properties,
                      const BulbIdentity& identity, absl::Time now) {
  rapidjson::Document doc;
  BuildState(properties, identity, now, &doc, doc.GetAllocator());
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  doc.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

void MergeProperties(const Properties& update, Properties* cache) {
  for (const auto& [name, value] : update) (*cache)[name] = value;
}

absl::StatusOr<std::vector<Request>> PlanCommand(
    const rapidjson::Value& values, const Properties& current,
    const CommandDefaults& defaults) {
  if (!values.IsObject()) {
    return absl::InvalidArgumentError("values must be a JSON object");
  }
  Transition transition = NormalizeTransition(defaults.transition);
  // The transition applies to the whole command, wherever it appears.
  std::optional<bool> smooth;
  bool stop_flow = false;
  if (auto it = values.FindMember("transition"); it != values.MemberEnd()) {
    absl::StatusOr<int64_t> ms = ToInt("transition", it->value);
    if (!ms.ok()) return ms.status();
    if (*ms < 0 || *ms > 60 * 60 * 1000) {
      return Invalid("transition", "expected 0..3600000 ms");
    }
    if (*ms == 0) {
      transition.smooth = false;
    } else {
      transition.smooth = true;
      transition.duration_ms = static_cast<int>(*ms);
    }
  }
  if (auto it = values.FindMember("effect"); it != values.MemberEnd()) {
    std::string effect = it->value.IsString()
                             ? absl::AsciiStrToLower(it->value.GetString())
                             : std::string();
    if (effect == "smooth") {
      smooth = true;
    } else if (effect == "sudden") {
      smooth = false;
    } else if (effect == "stop") {
      stop_flow = true;
    } else {
      return Invalid("effect", "expected \"smooth\", \"sudden\" or \"stop\"");
    }
  }
  if (smooth) transition.smooth = *smooth;
  transition = NormalizeTransition(transition);

  LightPlan main;
  LightPlan background;
  std::vector<Request> extra;
  for (const auto& member : values.GetObject()) {
    absl::string_view key(member.name.GetString(),
                          member.name.GetStringLength());
    const Value& value = member.value;
    if (key == "transition" || key == "effect") continue;
    if (key == "name") {
      if (!value.IsString() || value.GetStringLength() == 0 ||
          value.GetStringLength() > 64) {
        return Invalid(key, "expected a string of 1..64 bytes");
      }
      extra.push_back(SetName(value.GetString()));
      continue;
    }
    if (key == "background") {
      if (!value.IsObject()) {
        return Invalid(key, "expected an object");
      }
      for (const auto& bg : value.GetObject()) {
        absl::string_view bg_key(bg.name.GetString(),
                                 bg.name.GetStringLength());
        absl::Status status = PlanLightKey(bg_key, bg.value, current, "bg_",
                                           transition, &background);
        if (absl::IsNotFound(status)) {
          return Invalid(absl::StrCat("background.", bg_key),
                         "unknown key (known: power, toggle, brightness, "
                         "brightness_step, color_temp, color, rgb, hsv)");
        }
        if (!status.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat("background.", status.message()));
        }
      }
      continue;
    }
    absl::Status status =
        PlanLightKey(key, value, current, "", transition, &main);
    if (absl::IsNotFound(status)) {
      return Invalid(key,
                     absl::StrCat("unknown key (known: ", kKnownKeys, ")"));
    }
    if (!status.ok()) return status;
  }

  std::vector<Request> plan;
  if (stop_flow) plan.push_back(Request{"stop_cf", {}});
  main.AppendTo(current, "", defaults, transition, false, &plan);
  background.AppendTo(current, "bg_", defaults, transition, true, &plan);
  for (Request& request : extra) plan.push_back(std::move(request));
  return plan;
}

absl::StatusOr<std::vector<Request>> PlanCommandJson(
    absl::string_view values_json, const Properties& current,
    const CommandDefaults& defaults) {
  rapidjson::Document doc;
  doc.Parse(values_json.data(), values_json.size());
  if (doc.HasParseError()) {
    return absl::InvalidArgumentError(
        absl::StrCat("values are not JSON: ",
                     rapidjson::GetParseError_En(doc.GetParseError())));
  }
  return PlanCommand(doc, current, defaults);
}

}  // namespace iot2mqtt::yeelight
