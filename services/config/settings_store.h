#ifndef IOT2MQTT_SERVICES_CONFIG_SETTINGS_STORE_H_
#define IOT2MQTT_SERVICES_CONFIG_SETTINGS_STORE_H_

// The platform's `.env` file (no gRPC): `KEY=VALUE` settings that the
// platform and docker compose read.
//
// Reading accepts what upstream and python-dotenv accept: blank lines and
// `#` comments, an optional `export ` prefix, split on the first '=', key and
// value trimmed, a value in matching single or double quotes unquoted
// (double quotes decode \" \\ \n \r \t ...; single quotes \' and \\; a quoted
// value may span lines), and in an unquoted value everything from a
// whitespace followed by '#' is a comment.
//
// Writing rewrites the whole file in upstream's grouped layout:
//
//   # IoT2MQTT Configuration
//   # Generated at 2026-11-22T16:41:07.123456Z
//
//   # MQTT Broker Settings
//   MQTT_HOST=192.0.2.10
//   MQTT_PORT=1883
//
//   # Other Settings
//   LOG_LEVEL=INFO
//   TZ="Europe/Somewhere Else"
//
// (groups without any present key are left out; "Other Settings" holds the
// remaining keys sorted). A value is written bare when it consists of
// [A-Za-z0-9_./:@+,=-] only, else double-quoted with \\ \" \n \r \t escapes,
// so every value without NUL survives a round trip exactly.
//
// Errors (services/common/status.h reasons):
//   INVALID_ARGUMENT    INVALID_SETTING_NAME {name}, INVALID_SETTING_VALUE
//                       {name}
//   UNAVAILABLE         STORAGE_UNAVAILABLE {path}
//   RESOURCE_EXHAUSTED  STORAGE_FULL {path}
//   INTERNAL            STORAGE_IO_ERROR {path}

#include <map>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace iot2mqtt::config {

inline constexpr char kInvalidSettingName[] = "INVALID_SETTING_NAME";
inline constexpr char kInvalidSettingValue[] = "INVALID_SETTING_VALUE";

// True for `^[A-Za-z_][A-Za-z0-9_]*$`.
bool IsValidSettingName(absl::string_view name);

// Parses the text of a .env file (see above). A later assignment of a key
// wins; lines without '=' or with an empty key are skipped.
std::map<std::string, std::string> ParseEnvText(absl::string_view text);

// One value as it is written after `KEY=`: bare when safe, else quoted.
std::string FormatEnvValue(absl::string_view value);

// The whole file in the grouped layout, with `generated_at` in the header.
std::string RenderEnvText(const std::map<std::string, std::string>& values,
                          absl::string_view generated_at);

// `<data_dir>/.env`, guarded by the lock file `<data_dir>/.env.lock`, with
// backups in `<data_dir>/.env.backups/.env.<yyyymmddTHHMMSS.ffffff>Z.bak`
// (UTC; mode 0600; only the newest `max_backups` are kept). The data
// directory must exist.
//
// Update() is a read-modify-write under the lock file (flock, which excludes
// other threads and processes alike), and the new file replaces the old one
// atomically (mode 0600): concurrent updates from any number of threads and
// processes never lose a change, and readers see the old or the new file.
// Thread-safe.
class SettingsStore {
 public:
  static constexpr int kDefaultMaxBackups = 10;

  explicit SettingsStore(std::string data_dir,
                         int max_backups = kDefaultMaxBackups);
  SettingsStore(const SettingsStore&) = delete;
  SettingsStore& operator=(const SettingsStore&) = delete;

  // Every setting; an empty map when the file does not exist.
  absl::StatusOr<std::map<std::string, std::string>> Load() const;

  // Sets each key with a value and removes each key mapped to nullopt, all
  // at once. Every name and value is validated first: on INVALID_ARGUMENT
  // nothing is written. When the merge changes nothing the file is left as
  // it is (no backup, no rewrite).
  absl::Status Update(
      const std::map<std::string, std::optional<std::string>>& changes);

  // Removes the setting `name` from every backup (rewritten in the grouped
  // layout), e.g. once a secret has moved elsewhere. INVALID_ARGUMENT
  // INVALID_SETTING_NAME for a bad name; OK when there are no backups.
  absl::Status RemoveFromBackups(const std::string& name);

  const std::string& env_path() const { return env_path_; }
  const std::string& backup_dir() const { return backup_dir_; }

 private:
  absl::Status BackUp(const std::string& content);

  const std::string data_dir_;
  const std::string env_path_;
  const std::string lock_path_;
  const std::string backup_dir_;
  const int max_backups_;
  // Serialises this process's writers before they queue on the file lock.
  absl::Mutex update_mu_;
};

}  // namespace iot2mqtt::config

#endif  // IOT2MQTT_SERVICES_CONFIG_SETTINGS_STORE_H_
