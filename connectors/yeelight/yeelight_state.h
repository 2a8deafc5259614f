#ifndef IOT2MQTT_CONNECTORS_YEELIGHT_YEELIGHT_STATE_H_
#define IOT2MQTT_CONNECTORS_YEELIGHT_YEELIGHT_STATE_H_

// Pure translation between bulb properties and the MQTT contract: the state
// object a bulb's properties become, and the requests a command's `values`
// become. No I/O, so both are unit-tested on their own.
//
// State keys: online, power, brightness, color_temp, color_mode, flowing,
// music_mode, name, model, fw_ver, last_update, rgb {r,g,b} + hex_color
// (when rgb > 0), hsv {h,s,v} (when hue and sat are known), nightlight
// {brightness, active} (when the bulb has one), background {...} (when the
// bulb has a background light).
//
// Command keys: power (true / false / "toggle" / "on" / "off"), toggle,
// brightness (1..100, or "+N" / "-N" relative, clamped), brightness_step,
// color_temp (kelvin, clamped 1700..6500, or "+N" / "-N"), color ("#RRGGBB"
// / {r,g,b} / {h,s,v?}), rgb ({r,g,b} / [r,g,b]), hsv ({h,s,v?}), name,
// background {power, brightness, color_temp, rgb, hsv}, transition (ms; 0 =
// sudden), effect ("smooth" / "sudden" for this command, "stop" ends a
// colour flow).

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "connectors/yeelight/yeelight_protocol.h"
#include "rapidjson/document.h"

namespace iot2mqtt::yeelight {

// What the configuration and discovery know about a bulb.
struct BulbIdentity {
  std::string device_id;
  std::string name;   // From the config; the bulb's own name wins.
  std::string model;  // From the config or discovery; "" when unknown.
  std::string fw_ver;
};

// The state object (compact JSON) for `properties`. `last_update` is `now`
// in UTC ("2025-10-13T10:30:00.123Z").
std::string StateJson(const Properties& properties,
                      const BulbIdentity& identity, absl::Time now);

// Same, written into `out` (an object) with `allocator`.
void BuildState(const Properties& properties, const BulbIdentity& identity,
                absl::Time now, rapidjson::Value* out,
                rapidjson::Document::AllocatorType& allocator);

// Merges a `props` notification into the cached properties.
void MergeProperties(const Properties& update, Properties* cache);

struct CommandDefaults {
  Transition transition;  // effect_type and duration from the config.
  // Turn the bulb on first when a command changes brightness or colour of a
  // bulb that is off (bulbs refuse such changes while off).
  bool auto_on = true;
};

// The requests that carry out `values` (a JSON object), in order: power
// on / toggle first, then the other changes, power off last. Every value is
// checked before anything is planned: INVALID_ARGUMENT names the first bad
// key (unknown keys included), so a bad command changes nothing.
absl::StatusOr<std::vector<Request>> PlanCommand(
    const rapidjson::Value& values, const Properties& current,
    const CommandDefaults& defaults);

// Convenience: `values_json` is the JSON text of the values object.
absl::StatusOr<std::vector<Request>> PlanCommandJson(
    absl::string_view values_json, const Properties& current,
    const CommandDefaults& defaults);

// UTC ISO 8601 with milliseconds and Z.
std::string FormatTimestamp(absl::Time time);

}  // namespace iot2mqtt::yeelight

#endif  // IOT2MQTT_CONNECTORS_YEELIGHT_YEELIGHT_STATE_H_
