#include "connectors/yeelight/actions/action_io.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "connectors/yeelight/yeelight_client.h"
#include "connectors/yeelight/yeelight_discovery.h"
#include "rapidjson/document.h"
#include "rapidjson/error/en.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace iot2mqtt::yeelight {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void String(Writer& writer, absl::string_view text) {
  writer.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
}

std::string Error(absl::string_view code, absl::string_view message,
                  bool retriable) {
  rapidjson::StringBuffer buffer;
  Writer writer(buffer);
  writer.StartObject();
  writer.Key("ok");
  writer.Bool(false);
  writer.Key("error");
  writer.StartObject();
  writer.Key("code");
  String(writer, code);
  writer.Key("message");
  String(writer, message);
  writer.Key("retriable");
  writer.Bool(retriable);
  writer.EndObject();
  writer.EndObject();
  return buffer.GetString();
}

// The "input" object of a tool request (or the whole payload when it has
// none). An error answer in `error` otherwise.
const rapidjson::Value* Input(const rapidjson::Document& doc,
                              absl::string_view request, std::string* error) {
  if (doc.HasParseError()) {
    *error =
        Error("invalid_input",
              absl::StrCat("request is not JSON: ",
                           rapidjson::GetParseError_En(doc.GetParseError()),
                           " at offset ", doc.GetErrorOffset()),
              false);
    return nullptr;
  }
  if (!doc.IsObject()) {
    *error = Error("invalid_input", "request must be a JSON object", false);
    return nullptr;
  }
  auto input = doc.FindMember("input");
  if (input == doc.MemberEnd()) return &doc;
  if (input->value.IsNull()) {
    static const rapidjson::Value kEmpty(rapidjson::kObjectType);
    return &kEmpty;
  }
  if (!input->value.IsObject()) {
    *error = Error("invalid_input", "\"input\" must be a JSON object", false);
    return nullptr;
  }
  return &input->value;
}

std::string Text(const rapidjson::Value& object, const char* key) {
  auto it = object.FindMember(key);
  if (it == object.MemberEnd()) return "";
  if (it->value.IsString()) {
    return std::string(absl::StripAsciiWhitespace(it->value.GetString()));
  }
  return "";
}

// Upstream's rule: empty, missing or unparsable -> 55443.
int PortOf(const rapidjson::Value& input) {
  auto it = input.FindMember("port");
  if (it == input.MemberEnd()) return kDefaultControlPort;
  int64_t port = 0;
  const rapidjson::Value& value = it->value;
  if (value.IsInt64()) {
    port = value.GetInt64();
  } else if (value.IsNumber() && std::isfinite(value.GetDouble())) {
    port = static_cast<int64_t>(value.GetDouble());
  } else if (value.IsString()) {
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(value.GetString()),
                          &port)) {
      return kDefaultControlPort;
    }
  }
  if (port < 1 || port > 65535) return kDefaultControlPort;
  return static_cast<int>(port);
}

}  // namespace

std::string RunValidate(absl::string_view request,
                        const ValidateSettings& settings) {
  rapidjson::Document doc;
  doc.Parse(request.data(), request.size());
  std::string error;
  const rapidjson::Value* input = Input(doc, request, &error);
  if (input == nullptr) return error;
  std::string host = Text(*input, "host");
  if (host.empty()) host = Text(*input, "ip");
  if (host.empty()) {
    return Error("missing_parameter", "host is required", false);
  }
  const int port = PortOf(*input);

  ClientOptions options;
  options.host = host;
  options.port = port;
  options.connect_timeout = settings.connect_timeout;
  options.request_timeout = settings.request_timeout;
  options.log_name = host;
  Client client(options);
  absl::StatusOr<Properties> properties =
      client.GetProperties(StandardProperties());
  if (!properties.ok()) {
    return Error(
        "validation_failed",
        absl::StrCat("Yeelight bulb at ", host, ":", port,
                     " did not answer: ", properties.status().message(),
                     ". Check that the bulb is powered and that LAN "
                     "control is enabled in the Yeelight app."),
        true);
  }
  rapidjson::StringBuffer buffer;
  Writer writer(buffer);
  writer.StartObject();
  writer.Key("ok");
  writer.Bool(true);
  writer.Key("result");
  writer.StartObject();
  writer.Key("host");
  String(writer, host);
  writer.Key("port");
  writer.Int(port);
  writer.Key("properties");
  writer.StartObject();
  for (const auto& [name, value] : *properties) {
    writer.Key(name.c_str());
    if (value.empty()) {
      writer.Null();
    } else {
      String(writer, value);
    }
  }
  writer.EndObject();
  writer.EndObject();
  writer.EndObject();
  return buffer.GetString();
}

namespace {

// What a bulb can do, from the methods it lists in `support` (upstream's
// discovery record): {power, brightness, color_temp, rgb, hsv, color_flow,
// timer, adjust, music_mode, background_light, brightness_range,
// color_temp_range}.
void WriteCapabilities(Writer& writer, const std::vector<std::string>& support) {
  auto has = [&support](absl::string_view method) {
    return std::find(support.begin(), support.end(), method) != support.end();
  };
  writer.StartObject();
  const std::pair<const char*, const char*> kFlags[] = {
      {"power", "set_power"},       {"brightness", "set_bright"},
      {"color_temp", "set_ct_abx"}, {"rgb", "set_rgb"},
      {"hsv", "set_hsv"},           {"color_flow", "start_cf"},
      {"timer", "cron_add"},        {"adjust", "set_adjust"},
      {"music_mode", "set_music"},  {"background_light", "bg_set_power"},
  };
  for (const auto& [capability, method] : kFlags) {
    writer.Key(capability);
    writer.Bool(has(method));
  }
  writer.Key("brightness_range");
  writer.StartObject();
  writer.Key("min");
  writer.Int(1);
  writer.Key("max");
  writer.Int(100);
  writer.EndObject();
  writer.Key("color_temp_range");
  writer.StartObject();
  writer.Key("min");
  writer.Int(1700);
  writer.Key("max");
  writer.Int(6500);
  writer.EndObject();
  writer.EndObject();
}

}  // namespace

std::string RunDiscover(absl::string_view request,
                        const DiscoverSettings& settings) {
  rapidjson::Document doc;
  doc.Parse(request.data(), request.size());
  std::string error;
  const rapidjson::Value* input = Input(doc, request, &error);
  if (input == nullptr) return error;
  DiscoveryOptions options;
  options.address = settings.address;
  options.timeout = settings.timeout;
  if (auto it = input->FindMember("timeout"); it != input->MemberEnd()) {
    if (!it->value.IsNumber() || it->value.GetDouble() <= 0 ||
        it->value.GetDouble() > 60) {
      return Error("invalid_input", "\"timeout\" must be 0 < seconds <= 60",
                   false);
    }
    options.timeout = absl::Seconds(it->value.GetDouble());
  }
  absl::StatusOr<std::vector<DiscoveredBulb>> bulbs = Discover(options);
  if (!bulbs.ok()) {
    return Error("discovery_failed",
                 absl::StrCat("discovery via ", options.address,
                              " failed: ", bulbs.status().message()),
                 !absl::IsInvalidArgument(bulbs.status()));
  }
  rapidjson::StringBuffer buffer;
  Writer writer(buffer);
  writer.StartObject();
  writer.Key("ok");
  writer.Bool(true);
  writer.Key("result");
  writer.StartObject();
  writer.Key("count");
  writer.Uint64(bulbs->size());
  writer.Key("devices");
  writer.StartArray();
  for (const DiscoveredBulb& bulb : *bulbs) {
    writer.StartObject();
    writer.Key("device_id");
    String(writer, bulb.id.empty() ? bulb.host : bulb.id);
    writer.Key("ip");
    String(writer, bulb.host);
    writer.Key("port");
    writer.Int(bulb.port);
    writer.Key("model");
    String(writer, bulb.model.empty() ? "unknown" : bulb.model);
    writer.Key("friendly_name");
    String(writer, !bulb.name.empty()
                       ? bulb.name
                       : absl::StrCat("Yeelight ",
                                      bulb.model.empty() ? "bulb" : bulb.model,
                                      " ", bulb.host));
    writer.Key("manufacturer");
    String(writer, "Yeelight");
    writer.Key("capabilities");
    WriteCapabilities(writer, bulb.support);
    writer.Key("ssid");
    writer.Null();
    writer.Key("properties");
    writer.StartObject();
    for (const auto& [name, value] : bulb.headers) {
      if (name == "location" || name == "cache-control" || name == "date" ||
          name == "ext" || name == "server") {
        continue;
      }
      writer.Key(name.c_str());
      if (name == "support") {
        writer.StartArray();
        for (const std::string& method : bulb.support) String(writer, method);
        writer.EndArray();
      } else {
        String(writer, value);
      }
    }
    writer.EndObject();
    writer.EndObject();
  }
  writer.EndArray();
  writer.EndObject();
  writer.EndObject();
  return buffer.GetString();
}

}  // namespace iot2mqtt::yeelight
