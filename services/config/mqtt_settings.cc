#include "services/config/mqtt_settings.h"

#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "rapidjson/document.h"
#include "services/common/status.h"

namespace iot2mqtt::config {
namespace {

constexpr char kHostKey[] = "MQTT_HOST";
constexpr char kPortKey[] = "MQTT_PORT";
constexpr char kUsernameKey[] = "MQTT_USERNAME";
constexpr char kBaseTopicKey[] = "MQTT_BASE_TOPIC";
constexpr char kClientPrefixKey[] = "MQTT_CLIENT_PREFIX";
constexpr char kQosKey[] = "MQTT_QOS";
constexpr char kRetainKey[] = "MQTT_RETAIN";
constexpr char kKeepaliveKey[] = "MQTT_KEEPALIVE";

constexpr size_t kMaxHostBytes = 253;
constexpr size_t kMaxBaseTopicBytes = 200;
constexpr size_t kMaxClientPrefixBytes = 64;
constexpr size_t kMaxUsernameBytes = 256;

using Env = std::map<std::string, std::string>;
// Field name → problem, in a stable order for messages.
using Problems = std::map<std::string, std::string>;

bool IsValidUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char lead = static_cast<unsigned char>(text[i]);
    size_t extra = 0;
    uint32_t min = 0;
    uint32_t code = lead;
    if (lead < 0x80) {
      ++i;
      continue;
    }
    if ((lead & 0xE0) == 0xC0) {
      extra = 1;
      min = 0x80;
      code = lead & 0x1F;
    } else if ((lead & 0xF0) == 0xE0) {
      extra = 2;
      min = 0x800;
      code = lead & 0x0F;
    } else if ((lead & 0xF8) == 0xF0) {
      extra = 3;
      min = 0x10000;
      code = lead & 0x07;
    } else {
      return false;
    }
    if (i + extra >= text.size()) return false;
    for (size_t k = 1; k <= extra; ++k) {
      const unsigned char next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      code = (code << 6) | (next & 0x3F);
    }
    if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

bool HasSpaceOrControl(absl::string_view text) {
  for (char c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7F) return true;
  }
  return false;
}

absl::Status InvalidSettings(const Problems& problems) {
  std::vector<std::string> parts;
  for (const auto& [field, problem] : problems) {
    parts.push_back(absl::StrCat(field, ": ", problem));
  }
  return common::WithReason(
      absl::InvalidArgumentError(
          absl::StrCat("invalid MQTT settings: ", absl::StrJoin(parts, "; "))),
      kInvalidMqttSettings, problems);
}

std::optional<std::string> Lookup(const Env& env, const char* key) {
  auto it = env.find(key);
  if (it == env.end()) return std::nullopt;
  return it->second;
}

// A non-empty value of `key`, else `fallback`.
std::string StringSetting(const Env& env, const char* key,
                          const std::string& fallback) {
  std::optional<std::string> value = Lookup(env, key);
  return value.has_value() && !value->empty() ? *value : fallback;
}

int IntSetting(const Env& env, const char* key, int fallback, int min,
               int max) {
  std::optional<std::string> value = Lookup(env, key);
  if (!value.has_value() || value->empty()) return fallback;
  int parsed = 0;
  if (absl::SimpleAtoi(*value, &parsed) && parsed >= min && parsed <= max) {
    return parsed;
  }
  // The value is not logged: .env may hold anything.
  IOT2MQTT_LOG(WARNING).With("key", key)
      << key << " in .env is not a whole number between " << min << " and "
      << max << "; using the default " << fallback;
  return fallback;
}

bool BoolSetting(const Env& env, const char* key, bool fallback) {
  std::optional<std::string> value = Lookup(env, key);
  if (!value.has_value() || value->empty()) return fallback;
  std::string lower = absl::AsciiStrToLower(*value);
  if (lower == "true") return true;
  if (lower == "false") return false;
  IOT2MQTT_LOG(WARNING).With("key", key)
      << key << " in .env is neither true nor false; using the default "
      << (fallback ? "true" : "false");
  return fallback;
}

// Decodes a JSON string literal (as SplitJsonObject returns it).
std::optional<std::string> DecodeJsonString(const std::string& json) {
  if (sdk::JsonTypeOf(json) != "string") return std::nullopt;
  rapidjson::Document document;
  document.Parse(json.data(), json.size());
  if (document.HasParseError() || !document.IsString()) return std::nullopt;
  return std::string(document.GetString(), document.GetStringLength());
}

}  // namespace

absl::Status ValidateMqttSettings(const MqttSettings& s) {
  Problems problems;
  if (s.host.empty()) {
    problems["host"] = "is required";
  } else if (HasSpaceOrControl(s.host)) {
    problems["host"] = "must not contain spaces or control characters";
  } else if (s.host.size() > kMaxHostBytes) {
    problems["host"] =
        absl::StrCat("must be at most ", kMaxHostBytes, " bytes long");
  }
  if (s.port < 1 || s.port > 65535) {
    problems["port"] = "must be between 1 and 65535";
  }
  if (s.qos < 0 || s.qos > 2) problems["qos"] = "must be 0, 1 or 2";
  if (s.keepalive < 10 || s.keepalive > 3600) {
    problems["keepalive"] = "must be between 10 and 3600 seconds";
  }
  const std::string& topic = s.base_topic;
  if (topic.empty()) {
    problems["base_topic"] = "is required";
  } else if (topic.find_first_of(std::string("+#\0", 3)) != std::string::npos) {
    problems["base_topic"] = "must not contain '+', '#' or NUL";
  } else if (topic.front() == '/' || topic.back() == '/') {
    problems["base_topic"] = "must not start or end with '/'";
  } else if (topic.size() > kMaxBaseTopicBytes) {
    problems["base_topic"] =
        absl::StrCat("must be at most ", kMaxBaseTopicBytes, " bytes long");
  } else if (!IsValidUtf8(topic)) {
    problems["base_topic"] = "must be valid UTF-8";
  }
  const std::string& prefix = s.client_prefix;
  bool prefix_ok = !prefix.empty() && prefix.size() <= kMaxClientPrefixBytes;
  for (char c : prefix) {
    prefix_ok =
        prefix_ok && (absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                      c == '_' || c == '-');
  }
  if (!prefix_ok) {
    problems["client_prefix"] = absl::StrCat(
        "must be 1 to ", kMaxClientPrefixBytes, " letters, digits, '_' or '-'");
  }
  if (s.username.size() > kMaxUsernameBytes) {
    problems["username"] =
        absl::StrCat("must be at most ", kMaxUsernameBytes, " bytes long");
  } else if (s.username.find('\0') != std::string::npos ||
             !IsValidUtf8(s.username)) {
    problems["username"] = "must be valid UTF-8 without NUL";
  }
  if (s.password.find('\0') != std::string::npos || !IsValidUtf8(s.password)) {
    problems["password"] = "must be valid UTF-8 without NUL";
  }
  if (problems.empty()) return absl::OkStatus();
  return InvalidSettings(problems);
}

absl::StatusOr<std::optional<std::string>>
MqttSettingsStore::LoadVaultPassword() {
  IOT2MQTT_ASSIGN_OR_RETURN(
      std::string values,
      vault_.Load(kPlatformSecretsConnector, kPlatformSecretsId));
  IOT2MQTT_ASSIGN_OR_RETURN(std::vector<sdk::JsonMember> members,
                            sdk::SplitJsonObject(values));
  std::optional<std::string> password;
  for (const sdk::JsonMember& member : members) {
    if (member.key != kMqttPasswordKey) continue;
    password = DecodeJsonString(member.value);
    if (!password.has_value()) {
      IOT2MQTT_LOG(WARNING)
          << "the vault's MQTT_PASSWORD is not a string; ignoring it";
    }
  }
  return password;
}

absl::Status MqttSettingsStore::StoreVaultPassword(
    const std::optional<std::string>& password) {
  IOT2MQTT_ASSIGN_OR_RETURN(
      std::string values,
      vault_.Load(kPlatformSecretsConnector, kPlatformSecretsId));
  IOT2MQTT_ASSIGN_OR_RETURN(std::vector<sdk::JsonMember> members,
                            sdk::SplitJsonObject(values));
  sdk::JsonObjectBuilder builder;
  std::optional<std::string> previous;
  for (const sdk::JsonMember& member : members) {
    if (member.key == kMqttPasswordKey) {
      previous = DecodeJsonString(member.value);
      continue;
    }
    builder.SetRaw(member.key, member.value);
  }
  const bool set = password.has_value() && !password->empty();
  if (set) builder.Set(kMqttPasswordKey, *password);
  if ((set && previous == password) || (!set && !previous.has_value())) {
    return absl::OkStatus();  // Already stored as wanted.
  }
  return vault_.Store(kPlatformSecretsConnector, kPlatformSecretsId,
                      builder.empty() ? "{}" : builder.Build());
}

absl::StatusOr<bool> MqttSettingsStore::HasHost() {
  IOT2MQTT_ASSIGN_OR_RETURN(Env env, settings_.Load());
  return !StringSetting(env, kHostKey, "").empty();
}

absl::StatusOr<MqttSettings> MqttSettingsStore::Get() {
  IOT2MQTT_ASSIGN_OR_RETURN(Env env, settings_.Load());
  MqttSettings s;
  s.host = StringSetting(env, kHostKey, "");
  s.port = IntSetting(env, kPortKey, s.port, 1, 65535);
  s.username = StringSetting(env, kUsernameKey, "");
  s.base_topic = StringSetting(env, kBaseTopicKey, s.base_topic);
  s.client_prefix = StringSetting(env, kClientPrefixKey, s.client_prefix);
  s.qos = IntSetting(env, kQosKey, s.qos, 0, 2);
  s.retain = BoolSetting(env, kRetainKey, s.retain);
  s.keepalive = IntSetting(env, kKeepaliveKey, s.keepalive, 10, 3600);
  if (std::optional<std::string> plaintext = Lookup(env, kMqttPasswordKey)) {
    s.password = std::move(*plaintext);
  } else {
    IOT2MQTT_ASSIGN_OR_RETURN(std::optional<std::string> stored,
                              LoadVaultPassword());
    s.password = stored.value_or("");
  }
  return s;
}

absl::StatusOr<MqttSettings> MqttSettingsStore::Set(MqttSettings desired) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateMqttSettings(desired));
  absl::MutexLock lock(&write_mu_);
  IOT2MQTT_ASSIGN_OR_RETURN(Env env, settings_.Load());
  const bool had_plaintext = env.count(kMqttPasswordKey) > 0;
  if (desired.password == kHiddenPassword) {
    IOT2MQTT_ASSIGN_OR_RETURN(MqttSettings current, Get());
    desired.password = std::move(current.password);
  }
  // The vault first: a crash before .env is written leaves a plaintext
  // MQTT_PASSWORD (which wins) or the new password with the old settings,
  // never a lost password.
  IOT2MQTT_RETURN_IF_ERROR(StoreVaultPassword(desired.password));
  IOT2MQTT_RETURN_IF_ERROR(settings_.Update({
      {kHostKey, desired.host},
      {kPortKey, absl::StrCat(desired.port)},
      {kUsernameKey, desired.username},
      {kMqttPasswordKey, std::nullopt},
      {kBaseTopicKey, desired.base_topic},
      {kClientPrefixKey, desired.client_prefix},
      {kQosKey, absl::StrCat(desired.qos)},
      {kRetainKey, desired.retain ? "true" : "false"},
      {kKeepaliveKey, absl::StrCat(desired.keepalive)},
  }));
  if (had_plaintext) {
    IOT2MQTT_RETURN_IF_ERROR(settings_.RemoveFromBackups(kMqttPasswordKey));
  }
  IOT2MQTT_LOG(INFO).With("host", desired.host).With("port", desired.port)
      << "MQTT settings saved";
  return Get();
}

absl::Status MqttSettingsStore::MigratePlaintextPassword() {
  absl::MutexLock lock(&write_mu_);
  IOT2MQTT_ASSIGN_OR_RETURN(Env env, settings_.Load());
  std::optional<std::string> plaintext = Lookup(env, kMqttPasswordKey);
  if (!plaintext.has_value()) return absl::OkStatus();
  IOT2MQTT_RETURN_IF_ERROR(StoreVaultPassword(plaintext));
  IOT2MQTT_RETURN_IF_ERROR(
      settings_.Update({{kMqttPasswordKey, std::nullopt}}));
  // The backups of .env hold the plaintext too.
  IOT2MQTT_RETURN_IF_ERROR(settings_.RemoveFromBackups(kMqttPasswordKey));
  IOT2MQTT_LOG(INFO)
      << "moved the plaintext MQTT_PASSWORD from .env into the secret vault";
  return absl::OkStatus();
}

std::string MqttSettingsStore::ToJson(const MqttSettings& s,
                                      bool mask_password) {
  std::string password = s.password;
  if (mask_password && !password.empty()) password = kHiddenPassword;
  return sdk::JsonObjectBuilder()
      .Set("host", s.host)
      .Set("port", s.port)
      .Set("username", s.username)
      .Set("password", password)
      .Set("base_topic", s.base_topic)
      .Set("client_prefix", s.client_prefix)
      .Set("qos", s.qos)
      .Set("retain", s.retain)
      .Set("keepalive", s.keepalive)
      .Build();
}

absl::StatusOr<MqttSettings> MqttSettingsStore::FromJson(
    absl::string_view json) {
  absl::StatusOr<std::vector<sdk::JsonMember>> members =
      sdk::SplitJsonObject(json);
  if (!members.ok()) {
    return InvalidSettings({{"body", std::string(members.status().message())}});
  }
  MqttSettings s;
  Problems problems;
  auto string_field = [&problems](const sdk::JsonMember& member,
                                  std::string* out, bool nullable) {
    if (nullable && member.value == "null") {
      out->clear();
      return;
    }
    std::optional<std::string> value = DecodeJsonString(member.value);
    if (value.has_value()) {
      *out = std::move(*value);
    } else {
      problems[member.key] = "must be a string";
    }
  };
  auto int_field = [&problems](const sdk::JsonMember& member, int* out) {
    int value = 0;
    if (sdk::JsonTypeOf(member.value) == "number" &&
        absl::SimpleAtoi(member.value, &value)) {
      *out = value;
    } else {
      problems[member.key] = "must be an integer";
    }
  };
  for (const sdk::JsonMember& member : *members) {
    const std::string& key = member.key;
    if (key == "host") {
      string_field(member, &s.host, false);
    } else if (key == "port") {
      int_field(member, &s.port);
    } else if (key == "username") {
      string_field(member, &s.username, true);
    } else if (key == "password") {
      string_field(member, &s.password, true);
    } else if (key == "base_topic") {
      string_field(member, &s.base_topic, false);
    } else if (key == "client_prefix") {
      string_field(member, &s.client_prefix, false);
    } else if (key == "qos") {
      int_field(member, &s.qos);
    } else if (key == "retain") {
      if (member.value == "true" || member.value == "false") {
        s.retain = member.value == "true";
      } else {
        problems["retain"] = "must be a boolean";
      }
    } else if (key == "keepalive") {
      int_field(member, &s.keepalive);
    }
  }
  if (s.host.empty() && problems.count("host") == 0) {
    problems["host"] = "is required";
  }
  if (!problems.empty()) return InvalidSettings(problems);
  return s;
}

}  // namespace iot2mqtt::config
