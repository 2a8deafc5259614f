#include "services/discovery/device_identity.h"

#include <cmath>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "rapidjson/document.h"
#include "services/common/status.h"

namespace iot2mqtt::discovery {
namespace {

constexpr char kInvalidDevice[] = "INVALID_DEVICE";
constexpr char kInvalidConfig[] = "INVALID_CONFIG";
constexpr char kInvalidInstanceId[] = "INVALID_INSTANCE_ID";
constexpr size_t kMaxDeviceIdLength = 128;
constexpr size_t kMaxInstanceIdLength = 63;
constexpr size_t kInstanceKeyLength = 12;

absl::Status InvalidDevice(absl::string_view message) {
  return common::WithReason(absl::InvalidArgumentError(message),
                            kInvalidDevice);
}

bool IsIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

bool IsLowerAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

// Lower case, every character outside [a-z0-9_-] replaced by '_'.
std::string Normalise(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    c = absl::ascii_tolower(static_cast<unsigned char>(c));
    out.push_back(IsIdChar(c) ? c : '_');
  }
  return out;
}

// `^[a-z0-9][a-z0-9_-]{0,max-1}$`.
bool MatchesIdPattern(absl::string_view id, size_t max_length) {
  if (id.empty() || id.size() > max_length || !IsLowerAlnum(id.front())) {
    return false;
  }
  for (char c : id) {
    if (!IsIdChar(c)) return false;
  }
  return true;
}

// The string a JSON string value (given as its text) holds, trimmed;
// nullopt for any other type.
std::optional<std::string> StringOf(absl::string_view json) {
  if (sdk::JsonTypeOf(json) != "string") return std::nullopt;
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError() || !doc.IsString()) return std::nullopt;
  return std::string(absl::StripAsciiWhitespace(
      absl::string_view(doc.GetString(), doc.GetStringLength())));
}

// A non-empty string, or a number as its JSON text (serials and ids).
std::optional<std::string> IdentifierOf(absl::string_view json) {
  if (sdk::JsonTypeOf(json) == "number") return std::string(json);
  std::optional<std::string> text = StringOf(json);
  if (!text.has_value() || text->empty()) return std::nullopt;
  return text;
}

// A port 1..65535 from a number or a numeric string.
std::optional<int> PortOf(absl::string_view json) {
  std::string text;
  if (sdk::JsonTypeOf(json) == "number") {
    text = std::string(json);
  } else if (std::optional<std::string> s = StringOf(json); s.has_value()) {
    text = *s;
  } else {
    return std::nullopt;
  }
  double value = 0;
  if (!absl::SimpleAtod(text, &value) || !std::isfinite(value) ||
      value != std::floor(value) || value < 1 || value > 65535) {
    return std::nullopt;
  }
  return static_cast<int>(value);
}

// The MAC's hex digits, lower case ("" when it has none).
std::string MacKey(absl::string_view mac) {
  std::string key;
  for (char c : mac) {
    if (absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      key.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
    }
  }
  return key;
}

// The part of the id after `<integration>_` (the whole id without it).
absl::string_view KeyPart(const DiscoveredDevice& device) {
  absl::string_view id = device.id();
  const std::string prefix = absl::StrCat(device.integration(), "_");
  if (!device.integration().empty()) absl::ConsumePrefix(&id, prefix);
  return id;
}

}  // namespace

bool IsValidDeviceId(absl::string_view id) {
  return MatchesIdPattern(id, kMaxDeviceIdLength);
}

absl::StatusOr<DiscoveredDevice> DeviceFromReport(
    absl::string_view integration, absl::string_view device_json) {
  if (sdk::JsonTypeOf(device_json) != "object") {
    return InvalidDevice("device report is not a JSON object");
  }
  absl::StatusOr<std::vector<sdk::JsonMember>> members =
      sdk::SplitJsonObject(device_json);
  if (!members.ok()) {
    return InvalidDevice(absl::StrCat("device report is not a JSON object: ",
                                      members.status().message()));
  }

  DiscoveredDevice device;
  device.set_integration(std::string(integration));
  std::string mac_key;
  std::optional<std::string> serial;
  std::optional<std::string> own_id;  // `id`, else `device_id`.
  std::optional<std::string> ip;      // `ip`, else `host`.
  std::optional<std::string> name;    // `name`, else `friendly_name`.
  sdk::JsonObjectBuilder attributes;
  for (const sdk::JsonMember& member : *members) {
    const std::string& key = member.key;
    const std::string& value = member.value;
    bool used = false;
    if (key == "mac") {
      if (std::optional<std::string> mac = StringOf(value);
          mac.has_value() && !MacKey(*mac).empty()) {
        device.set_mac(*mac);
        mac_key = MacKey(*mac);
        used = true;
      }
    } else if (key == "serial") {
      if (std::optional<std::string> s = IdentifierOf(value); s.has_value()) {
        serial = std::move(s);
        used = true;
      }
    } else if (key == "id" || key == "device_id") {
      if (std::optional<std::string> s = IdentifierOf(value); s.has_value()) {
        if (key == "id" || !own_id.has_value()) own_id = std::move(s);
        used = true;
      }
    } else if (key == "ip" || key == "host") {
      if (std::optional<std::string> s = StringOf(value);
          s.has_value() && !s->empty()) {
        if (key == "ip" || !ip.has_value()) ip = std::move(s);
        used = true;
      }
    } else if (key == "port") {
      if (std::optional<int> port = PortOf(value); port.has_value()) {
        device.set_port(*port);
        used = true;
      }
    } else if (key == "name" || key == "friendly_name") {
      if (std::optional<std::string> s = StringOf(value); s.has_value()) {
        if (key == "name" || !name.has_value()) name = std::move(s);
        used = true;
      }
    } else if (key == "model" || key == "manufacturer") {
      if (std::optional<std::string> s = StringOf(value); s.has_value()) {
        if (key == "model") {
          device.set_model(*s);
        } else {
          device.set_manufacturer(*s);
        }
        used = true;
      }
    } else if (key == "capabilities") {
      if (sdk::JsonTypeOf(value) == "object") {
        device.set_capabilities(value);
        used = true;
      } else if (sdk::JsonTypeOf(value) == "null") {
        used = true;
      }
    }
    // Everything else, and recognised keys of an unusable type, is kept.
    if (!used) attributes.SetRaw(key, value);
  }
  if (own_id.has_value()) device.set_device_id(*own_id);
  if (!serial.has_value()) serial = own_id;
  if (serial.has_value()) device.set_serial(*serial);
  if (ip.has_value()) device.set_ip(*ip);
  if (name.has_value()) device.set_name(*name);
  if (!attributes.empty()) device.set_attributes(attributes.Build());

  std::string key;
  if (!mac_key.empty()) {
    key = mac_key;
  } else if (serial.has_value()) {
    key = *serial;
  } else if (ip.has_value()) {
    key = device.port() > 0 ? absl::StrCat(*ip, "_", device.port()) : *ip;
  } else {
    return InvalidDevice(
        "device report has none of mac, serial, id, device_id, ip, host");
  }
  std::string id = Normalise(absl::StrCat(integration, "_", key));
  if (id.size() > kMaxDeviceIdLength) id.resize(kMaxDeviceIdLength);
  if (!IsValidDeviceId(id)) {
    return InvalidDevice(absl::StrCat("device id '", id,
                                      "' is not valid (integration '",
                                      Normalise(integration), "')"));
  }
  device.set_id(std::move(id));
  return device;
}

std::string DefaultInstanceId(const DiscoveredDevice& device) {
  std::string integration = Normalise(device.integration());
  // Room for "_" and the key tail within 63 characters.
  const size_t max_prefix = kMaxInstanceIdLength - 1 - kInstanceKeyLength;
  if (integration.size() > max_prefix) integration.resize(max_prefix);
  if (integration.empty() || !IsLowerAlnum(integration.front())) {
    integration = absl::StrCat("device", integration);
    if (integration.size() > max_prefix) integration.resize(max_prefix);
  }
  std::string key = Normalise(KeyPart(device));
  if (key.size() > kInstanceKeyLength) {
    key = key.substr(key.size() - kInstanceKeyLength);
  }
  if (key.empty()) return integration;
  return absl::StrCat(integration, "_", key);
}

absl::StatusOr<std::string> InstanceDocumentFor(const DiscoveredDevice& device,
                                                absl::string_view instance_id,
                                                absl::string_view friendly_name,
                                                absl::string_view config_json) {
  // The config first: it is what a caller most likely got wrong.
  std::string config = "{}";
  absl::string_view config_text = absl::StripAsciiWhitespace(config_json);
  if (!config_text.empty() && config_text != "null") {
    absl::StatusOr<std::string> rewritten = sdk::RewriteJson(config_text);
    if (!rewritten.ok()) {
      return common::WithReason(
          absl::InvalidArgumentError(absl::StrCat(
              "config must be a JSON object: ", rewritten.status().message())),
          kInvalidConfig);
    }
    if (sdk::JsonTypeOf(*rewritten) != "object") {
      return common::WithReason(absl::InvalidArgumentError(absl::StrCat(
                                    "config must be a JSON object, got ",
                                    sdk::JsonTypeOf(*rewritten))),
                                kInvalidConfig);
    }
    config = *std::move(rewritten);
  }

  std::string instance = instance_id.empty() ? DefaultInstanceId(device)
                                             : std::string(instance_id);
  if (!MatchesIdPattern(instance, kMaxInstanceIdLength)) {
    return common::WithReason(
        absl::InvalidArgumentError(
            "instance_id must match ^[a-z0-9][a-z0-9_-]{0,62}$"),
        kInvalidInstanceId, {{"instance_id", instance}});
  }

  const std::string& device_id =
      device.device_id().empty() ? device.id() : device.device_id();
  std::string name(absl::StripAsciiWhitespace(friendly_name));
  if (name.empty()) name = device.name();
  if (name.empty()) name = device_id;

  // The create body's `config` becomes the document's `connection` (the
  // config service's create shape): the device's address, then whatever the
  // caller gave, which wins.
  absl::StatusOr<std::vector<sdk::JsonMember>> given =
      sdk::SplitJsonObject(config);
  if (!given.ok()) {
    return common::WithReason(
        absl::InvalidArgumentError(absl::StrCat(
            "config must be a JSON object: ", given.status().message())),
        kInvalidConfig);
  }
  auto is_given = [&given](absl::string_view key) {
    for (const sdk::JsonMember& member : *given) {
      if (member.key == key) return true;
    }
    return false;
  };
  sdk::JsonObjectBuilder connection;
  if (!device.ip().empty() && !is_given("ip")) connection.Set("ip", device.ip());
  if (device.port() > 0 && !is_given("port")) {
    connection.Set("port", device.port());
  }
  for (const sdk::JsonMember& member : *given) {
    connection.SetRaw(member.key, member.value);
  }

  sdk::JsonObjectBuilder entry;
  entry.Set("device_id", device_id)
      .Set("global_id", absl::StrCat(instance, "_", device_id))
      .Set("name", name)
      .Set("friendly_name", name);
  if (!device.ip().empty()) entry.Set("ip", device.ip());
  if (device.port() > 0) entry.Set("port", device.port());
  entry.Set("model", device.model().empty() ? "unknown" : device.model())
      .Set("enabled", true);
  if (sdk::JsonTypeOf(device.capabilities()) != "object") {
    entry.SetNull("capabilities");
  } else {
    entry.SetRaw("capabilities", device.capabilities());
  }

  return sdk::JsonObjectBuilder()
      .Set("instance_id", instance)
      .Set("connector_type", device.integration())
      .Set("friendly_name", name)
      .Set("enabled", true)
      .Set("update_interval", 10)
      .SetRaw("config", connection.Build())
      .SetRaw("devices", absl::StrCat("[", entry.Build(), "]"))
      .Build();
}

}  // namespace iot2mqtt::discovery
