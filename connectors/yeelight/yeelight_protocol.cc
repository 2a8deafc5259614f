#include "connectors/yeelight/yeelight_protocol.h"

#include <arpa/inet.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "rapidjson/document.h"
#include "rapidjson/error/en.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace iot2mqtt::yeelight {
namespace {

// A JSON value as text: strings unquoted, everything else as compact JSON.
std::string ValueText(const rapidjson::Value& value) {
  if (value.IsString()) {
    return std::string(value.GetString(), value.GetStringLength());
  }
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  value.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

int Clamp(int value, int low, int high) {
  return std::max(low, std::min(high, value));
}

void AppendTransition(Transition transition, std::vector<Param>* params) {
  transition = NormalizeTransition(transition);
  params->emplace_back(std::string(transition.smooth ? "smooth" : "sudden"));
  params->emplace_back(static_cast<int64_t>(transition.duration_ms));
}

}  // namespace

std::string EncodeRequest(int64_t id, const Request& request) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.StartObject();
  writer.Key("id");
  writer.Int64(id);
  writer.Key("method");
  writer.String(request.method.data(),
                static_cast<rapidjson::SizeType>(request.method.size()));
  writer.Key("params");
  writer.StartArray();
  for (const Param& param : request.params) {
    if (const int64_t* number = std::get_if<int64_t>(&param)) {
      writer.Int64(*number);
    } else {
      const std::string& text = std::get<std::string>(param);
      writer.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
    }
  }
  writer.EndArray();
  writer.EndObject();
  return absl::StrCat(absl::string_view(buffer.GetString(), buffer.GetSize()),
                      "\r\n");
}

absl::StatusOr<Message> ParseMessage(absl::string_view line) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(line.data(), line.size());
  if (doc.HasParseError()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not JSON at offset ", doc.GetErrorOffset(), ": ",
                     rapidjson::GetParseError_En(doc.GetParseError())));
  }
  if (!doc.IsObject()) {
    return absl::InvalidArgumentError("not a JSON object");
  }
  Message message;
  auto id = doc.FindMember("id");
  auto method = doc.FindMember("method");
  if (id == doc.MemberEnd() && method != doc.MemberEnd()) {
    auto params = doc.FindMember("params");
    if (!method->value.IsString()) {
      return absl::InvalidArgumentError("notification method is not a string");
    }
    if (params == doc.MemberEnd() || !params->value.IsObject()) {
      return absl::InvalidArgumentError("notification params is not an object");
    }
    message.kind = Message::Kind::kNotification;
    message.method = method->value.GetString();
    for (const auto& member : params->value.GetObject()) {
      message.params[member.name.GetString()] = ValueText(member.value);
    }
    return message;
  }
  if (id == doc.MemberEnd() || !id->value.IsInt64()) {
    return absl::InvalidArgumentError("message has no integer id");
  }
  message.id = id->value.GetInt64();
  auto result = doc.FindMember("result");
  auto error = doc.FindMember("error");
  if (result != doc.MemberEnd()) {
    message.kind = Message::Kind::kResult;
    if (result->value.IsArray()) {
      for (const auto& value : result->value.GetArray()) {
        message.result.push_back(ValueText(value));
      }
    } else {
      message.result.push_back(ValueText(result->value));
    }
    return message;
  }
  if (error != doc.MemberEnd()) {
    message.kind = Message::Kind::kError;
    if (error->value.IsObject()) {
      auto code = error->value.FindMember("code");
      if (code != error->value.MemberEnd() && code->value.IsInt64()) {
        message.error_code = code->value.GetInt64();
      }
      auto text = error->value.FindMember("message");
      if (text != error->value.MemberEnd()) {
        message.error_message = ValueText(text->value);
      }
    } else {
      message.error_message = ValueText(error->value);
    }
    return message;
  }
  return absl::InvalidArgumentError("message has neither result nor error");
}

void LineSplitter::Append(absl::string_view data) {
  buffer_.append(data.data(), data.size());
}

bool LineSplitter::Next(std::string* line) {
  while (true) {
    size_t newline = buffer_.find('\n', scan_from_);
    if (newline == std::string::npos) {
      if (buffer_.size() > max_line_) {
        // An over-long line: forget what we have and skip to its end.
        if (!discarding_) ++dropped_lines_;
        discarding_ = true;
        buffer_.clear();
      }
      scan_from_ = buffer_.size();
      return false;
    }
    std::string candidate = buffer_.substr(0, newline);
    buffer_.erase(0, newline + 1);
    scan_from_ = 0;
    if (discarding_) {
      discarding_ = false;
      continue;
    }
    if (candidate.size() > max_line_) {
      ++dropped_lines_;
      continue;
    }
    if (!candidate.empty() && candidate.back() == '\r') candidate.pop_back();
    if (absl::StripAsciiWhitespace(candidate).empty()) continue;
    *line = std::move(candidate);
    return true;
  }
}

Transition NormalizeTransition(Transition transition) {
  if (transition.duration_ms < kMinDurationMs) {
    transition.duration_ms = kMinDurationMs;
  }
  return transition;
}

Request GetProp(const std::vector<std::string>& names) {
  Request request{"get_prop", {}};
  for (const std::string& name : names) request.params.emplace_back(name);
  return request;
}

Request SetPower(bool on, Transition transition) {
  Request request{"set_power", {std::string(on ? "on" : "off")}};
  AppendTransition(transition, &request.params);
  return request;
}

Request Toggle() { return Request{"toggle", {}}; }

Request SetBright(int brightness, Transition transition) {
  Request request{"set_bright",
                  {static_cast<int64_t>(Clamp(brightness, 1, 100))}};
  AppendTransition(transition, &request.params);
  return request;
}

Request SetCtAbx(int kelvin, Transition transition) {
  Request request{"set_ct_abx",
                  {static_cast<int64_t>(Clamp(kelvin, 1700, 6500))}};
  AppendTransition(transition, &request.params);
  return request;
}

Request SetRgb(int r, int g, int b, Transition transition) {
  int64_t rgb = (static_cast<int64_t>(Clamp(r, 0, 255)) << 16) |
                (static_cast<int64_t>(Clamp(g, 0, 255)) << 8) |
                static_cast<int64_t>(Clamp(b, 0, 255));
  // A bulb rejects 0 (black); the dimmest colour it takes is 1.
  if (rgb == 0) rgb = 1;
  Request request{"set_rgb", {rgb}};
  AppendTransition(transition, &request.params);
  return request;
}

Request SetHsv(int hue, int sat, Transition transition) {
  Request request{"set_hsv",
                  {static_cast<int64_t>(Clamp(hue, 0, 359)),
                   static_cast<int64_t>(Clamp(sat, 0, 100))}};
  AppendTransition(transition, &request.params);
  return request;
}

Request SetName(absl::string_view name) {
  return Request{"set_name", {std::string(name)}};
}

Request Background(Request request) {
  if (request.method == "toggle") {
    request.method = "bg_toggle";
  } else {
    request.method = absl::StrCat("bg_", request.method);
  }
  return request;
}

const std::vector<std::string>& StandardProperties() {
  static const auto* const kNames = new std::vector<std::string>{
      "power", "bright",     "ct",         "rgb",      "hue",
      "sat",   "color_mode", "flowing",    "delayoff", "music_on",
      "name",  "nl_br",      "active_mode"};
  return *kNames;
}

const std::vector<std::string>& BackgroundProperties() {
  static const auto* const kNames = new std::vector<std::string>{
      "bg_power", "bg_bright", "bg_ct",    "bg_rgb",
      "bg_hue",   "bg_sat",    "bg_lmode", "bg_flowing"};
  return *kNames;
}

absl::StatusOr<HostPort> ParseHostPort(absl::string_view text,
                                       int default_port) {
  text = absl::StripAsciiWhitespace(text);
  HostPort result;
  result.port = default_port;
  absl::string_view host = text;
  size_t colon = text.rfind(':');
  if (colon != absl::string_view::npos) {
    host = text.substr(0, colon);
    int port = 0;
    if (!absl::SimpleAtoi(text.substr(colon + 1), &port) || port < 1 ||
        port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid port in \"", text, "\""));
    }
    result.port = port;
  }
  in_addr addr{};
  std::string host_text(host);
  if (inet_pton(AF_INET, host_text.c_str(), &addr) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", host, "\" is not an IPv4 address (a.b.c.d[:port])"));
  }
  result.host = std::move(host_text);
  return result;
}

std::string BuildSearchRequest(absl::string_view host_port) {
  return absl::StrCat("M-SEARCH * HTTP/1.1\r\n", "HOST: ", host_port, "\r\n",
                      "MAN: \"ssdp:discover\"\r\n", "ST: wifi_bulb\r\n",
                      "\r\n");
}

absl::StatusOr<DiscoveredBulb> ParseSearchResponse(absl::string_view datagram) {
  std::vector<absl::string_view> lines =
      absl::StrSplit(datagram, '\n', absl::SkipWhitespace());
  if (lines.empty()) return absl::InvalidArgumentError("empty datagram");
  absl::string_view status = absl::StripAsciiWhitespace(lines[0]);
  bool answer = absl::StartsWith(status, "HTTP/1.1 200");
  bool advert = absl::StartsWith(status, "NOTIFY * HTTP/1.1");
  if (!answer && !advert) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a search answer: \"", status.substr(0, 40), "\""));
  }
  DiscoveredBulb bulb;
  for (size_t i = 1; i < lines.size(); ++i) {
    absl::string_view line = absl::StripAsciiWhitespace(lines[i]);
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    std::string name = absl::AsciiStrToLower(
        absl::StripAsciiWhitespace(line.substr(0, colon)));
    std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    bulb.headers[name] = value;
  }
  auto location = bulb.headers.find("location");
  if (location == bulb.headers.end()) {
    return absl::InvalidArgumentError("answer has no Location header");
  }
  absl::string_view address = location->second;
  if (!absl::ConsumePrefix(&address, "yeelight://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Location is not yeelight://ip:port: \"", location->second, "\""));
  }
  absl::StatusOr<HostPort> host_port =
      ParseHostPort(address, kDefaultControlPort);
  if (!host_port.ok()) return host_port.status();
  bulb.host = host_port->host;
  bulb.port = host_port->port;
  auto get = [&bulb](const char* name) {
    auto it = bulb.headers.find(name);
    return it == bulb.headers.end() ? std::string() : it->second;
  };
  bulb.id = get("id");
  if (bulb.id.empty()) {
    return absl::InvalidArgumentError("answer has no id header");
  }
  bulb.model = get("model");
  bulb.fw_ver = get("fw_ver");
  bulb.name = get("name");
  bulb.support = absl::StrSplit(get("support"), ' ', absl::SkipEmpty());
  return bulb;
}

std::string BuildSearchResponse(const DiscoveredBulb& bulb) {
  std::string out = absl::StrCat(
      "HTTP/1.1 200 OK\r\n", "Cache-Control: max-age=3600\r\n", "Date: \r\n",
      "Ext: \r\n", "Location: yeelight://", bulb.host, ":", bulb.port, "\r\n",
      "Server: POSIX UPnP/1.0 YGLC/1\r\n", "id: ", bulb.id, "\r\n",
      "model: ", bulb.model, "\r\n", "fw_ver: ", bulb.fw_ver, "\r\n",
      "support: ", absl::StrJoin(bulb.support, " "), "\r\n");
  for (const auto& [name, value] : bulb.headers) {
    if (name == "id" || name == "model" || name == "fw_ver" ||
        name == "support" || name == "location" || name == "name") {
      continue;
    }
    absl::StrAppend(&out, name, ": ", value, "\r\n");
  }
  absl::StrAppend(&out, "name: ", bulb.name, "\r\n\r\n");
  return out;
}

}  // namespace iot2mqtt::yeelight
