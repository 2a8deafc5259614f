#include "services/config/settings_store.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "iot2mqtt/sdk/dotenv.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "services/common/status.h"
#include "services/config/file_io.h"

namespace iot2mqtt::config {
namespace {

constexpr char kBackupPrefix[] = ".env.";
constexpr char kBackupSuffix[] = "Z.bak";
constexpr size_t kMaxShownNameLength = 64;

struct Group {
  const char* title;
  std::vector<const char*> keys;
};

const std::vector<Group>& Groups() {
  static const auto* groups = new std::vector<Group>{
      {"Web Interface", {"WEB_ACCESS_KEY", "WEB_PORT"}},
      {"MQTT Broker Settings",
       {"MQTT_HOST", "MQTT_PORT", "MQTT_USERNAME", "MQTT_PASSWORD"}},
      {"MQTT Topics and Client",
       {"MQTT_BASE_TOPIC", "MQTT_CLIENT_PREFIX", "MQTT_QOS", "MQTT_RETAIN"}},
      {"Home Assistant Discovery",
       {"HA_DISCOVERY_ENABLED", "HA_DISCOVERY_PREFIX"}},
      {"Advanced Settings",
       {"MQTT_KEEPALIVE", "MQTT_CLEAN_SESSION", "RESPONSE_TIMEOUT",
        "MAX_RETRIES"}},
  };
  return *groups;
}

bool IsGroupedKey(const std::string& key) {
  for (const Group& group : Groups()) {
    for (const char* grouped : group.keys) {
      if (key == grouped) return true;
    }
  }
  return false;
}

bool IsSafeValueChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
         c == '.' || c == '/' || c == ':' || c == '@' || c == '+' || c == ',' ||
         c == '=' || c == '-';
}

// A name as it can be shown in a message: escaped, at most 64 bytes.
std::string Printable(absl::string_view text) {
  if (text.size() <= kMaxShownNameLength) return absl::CHexEscape(text);
  return absl::StrCat(absl::CHexEscape(text.substr(0, kMaxShownNameLength)),
                      "...");
}

absl::Status ValidateChanges(
    const std::map<std::string, std::optional<std::string>>& changes) {
  for (const auto& [name, value] : changes) {
    if (!IsValidSettingName(name)) {
      return common::WithReason(
          absl::InvalidArgumentError(absl::StrCat(
              "invalid setting name \"", Printable(name),
              "\": expected letters, digits and '_', not starting with a "
              "digit")),
          kInvalidSettingName, {{"name", Printable(name)}});
    }
    if (value.has_value() && value->find('\0') != std::string::npos) {
      // The value is never shown: it may be a secret.
      return common::WithReason(
          absl::InvalidArgumentError(absl::StrCat("the value of setting ", name,
                                                  " contains a NUL character")),
          kInvalidSettingValue, {{"name", name}});
    }
  }
  return absl::OkStatus();
}

bool IsBackupName(absl::string_view name) {
  return absl::StartsWith(name, kBackupPrefix) &&
         absl::EndsWith(name, kBackupSuffix);
}

}  // namespace

bool IsValidSettingName(absl::string_view name) {
  if (name.empty()) return false;
  if (!absl::ascii_isalpha(static_cast<unsigned char>(name.front())) &&
      name.front() != '_') {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

std::map<std::string, std::string> ParseEnvText(absl::string_view text) {
  return sdk::ParseDotEnvEntries(text);
}

std::string FormatEnvValue(absl::string_view value) {
  if (std::all_of(value.begin(), value.end(), IsSafeValueChar)) {
    return std::string(value);
  }
  std::string out = "\"";
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

std::string RenderEnvText(const std::map<std::string, std::string>& values,
                          absl::string_view generated_at) {
  std::string out = absl::StrCat("# IoT2MQTT Configuration\n# Generated at ",
                                 generated_at, "\n\n");
  auto append = [&out](const std::string& key, const std::string& value) {
    absl::StrAppend(&out, key, "=", FormatEnvValue(value), "\n");
  };
  for (const Group& group : Groups()) {
    bool any = false;
    for (const char* key : group.keys) {
      auto it = values.find(key);
      if (it == values.end()) continue;
      if (!any) absl::StrAppend(&out, "# ", group.title, "\n");
      any = true;
      append(it->first, it->second);
    }
    if (any) out += "\n";
  }
  bool any_other = false;
  for (const auto& [key, value] : values) {  // std::map: sorted by key.
    if (IsGroupedKey(key)) continue;
    if (!any_other) out += "# Other Settings\n";
    any_other = true;
    append(key, value);
  }
  if (any_other) out += "\n";
  return out;
}

SettingsStore::SettingsStore(std::string data_dir, int max_backups)
    : data_dir_(std::move(data_dir)),
      env_path_(data_dir_ + "/.env"),
      lock_path_(data_dir_ + "/.env.lock"),
      backup_dir_(data_dir_ + "/.env.backups"),
      max_backups_(std::max(0, max_backups)) {}

absl::StatusOr<std::map<std::string, std::string>> SettingsStore::Load() const {
  absl::StatusOr<std::string> text = ReadWholeFile(env_path_);
  if (absl::IsNotFound(text.status())) {
    return std::map<std::string, std::string>();
  }
  if (!text.ok()) return text.status();
  return ParseEnvText(*text);
}

absl::Status SettingsStore::Update(
    const std::map<std::string, std::optional<std::string>>& changes) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateChanges(changes));
  absl::MutexLock process_lock(&update_mu_);
  IOT2MQTT_ASSIGN_OR_RETURN(FileLock file_lock, FileLock::Acquire(lock_path_));

  absl::StatusOr<std::string> previous = ReadWholeFile(env_path_);
  const bool existed = previous.ok();
  if (!existed && !absl::IsNotFound(previous.status())) {
    return previous.status();
  }
  std::map<std::string, std::string> current;
  if (existed) current = ParseEnvText(*previous);
  std::map<std::string, std::string> merged = current;
  for (const auto& [name, value] : changes) {
    if (value.has_value()) {
      merged[name] = *value;
    } else {
      merged.erase(name);
    }
  }
  if (merged == current) {  // Nothing to change (or to create).
    return absl::OkStatus();
  }
  if (existed) IOT2MQTT_RETURN_IF_ERROR(BackUp(*previous));
  IOT2MQTT_RETURN_IF_ERROR(WriteFileAtomically(
      env_path_, RenderEnvText(merged, UtcNowIso8601()), 0600));
  std::vector<std::string> names;
  for (const auto& change : changes) names.push_back(change.first);
  IOT2MQTT_LOG(INFO)
          .With("path", env_path_)
          .With("keys", absl::StrJoin(names, ","))
      << "settings updated";
  return absl::OkStatus();
}

absl::Status SettingsStore::RemoveFromBackups(const std::string& name) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateChanges({{name, std::nullopt}}));
  absl::MutexLock process_lock(&update_mu_);
  IOT2MQTT_ASSIGN_OR_RETURN(FileLock file_lock, FileLock::Acquire(lock_path_));
  absl::StatusOr<std::vector<std::string>> names = ListDirectory(backup_dir_);
  if (absl::IsNotFound(names.status())) return absl::OkStatus();
  if (!names.ok()) return names.status();
  for (const std::string& backup : *names) {
    if (!IsBackupName(backup)) continue;
    const std::string path = backup_dir_ + "/" + backup;
    IOT2MQTT_ASSIGN_OR_RETURN(std::string content, ReadWholeFile(path));
    std::map<std::string, std::string> values = ParseEnvText(content);
    if (values.erase(name) == 0) continue;
    IOT2MQTT_RETURN_IF_ERROR(WriteFileAtomically(
        path, RenderEnvText(values, UtcNowIso8601()), 0600));
  }
  return absl::OkStatus();
}

absl::Status SettingsStore::BackUp(const std::string& content) {
  if (max_backups_ == 0) return absl::OkStatus();
  IOT2MQTT_RETURN_IF_ERROR(MakeDirectories(backup_dir_, 0700));
  absl::Time when = absl::Now();
  std::string path;
  // Unique even when two updates fall into one microsecond; the name still
  // sorts by time.
  do {
    path = absl::StrCat(
        backup_dir_, "/", kBackupPrefix,
        absl::FormatTime("%Y%m%dT%H%M%E6S", when, absl::UTCTimeZone()),
        kBackupSuffix);
    when += absl::Microseconds(1);
  } while (PathExists(path));
  IOT2MQTT_RETURN_IF_ERROR(WriteFileAtomically(path, content, 0600));

  IOT2MQTT_ASSIGN_OR_RETURN(std::vector<std::string> names,
                            ListDirectory(backup_dir_));
  std::vector<std::string> backups;
  for (std::string& name : names) {
    if (IsBackupName(name)) backups.push_back(std::move(name));
  }
  // Sorted oldest first: the timestamp in the name sorts chronologically.
  size_t keep = static_cast<size_t>(max_backups_);
  for (size_t i = 0; i + keep < backups.size(); ++i) {
    absl::Status removed = RemoveFile(backup_dir_ + "/" + backups[i]);
    if (!removed.ok() && !absl::IsNotFound(removed)) {
      IOT2MQTT_LOG(WARNING).With("path", backup_dir_ + "/" + backups[i])
          << "cannot remove an old settings backup: " << removed.message();
    }
  }
  return absl::OkStatus();
}

}  // namespace iot2mqtt::config
