#ifndef IOT2MQTT_SERVICES_CONFIG_MQTT_SETTINGS_H_
#define IOT2MQTT_SERVICES_CONFIG_MQTT_SETTINGS_H_

// The platform's MQTT broker settings (GET/POST /api/mqtt/config; no gRPC).
//
// Everything but the password lives in `.env` (SettingsStore) under the
// upstream keys MQTT_HOST, MQTT_PORT, MQTT_USERNAME, MQTT_BASE_TOPIC,
// MQTT_CLIENT_PREFIX, MQTT_QOS, MQTT_RETAIN (true/false), MQTT_KEEPALIVE.
// The password is kept encrypted in the SecretVault under the owner
// (kPlatformSecretsConnector, kPlatformSecretsId) as {"MQTT_PASSWORD": ...}
// (other values of that owner are kept), never in `.env`, which every
// connector can read.
//
// An upstream installation has MQTT_PASSWORD in plaintext in `.env`. Such a
// value is used (it wins over the vault: it can only be there because
// someone put it there after the last Set) and moved into the vault by the
// next Set or by MigratePlaintextPassword(), which also remove it from the
// backups of `.env`.
//
// Errors (services/common/status.h reasons):
//   INVALID_ARGUMENT  INVALID_MQTT_SETTINGS, metadata field → problem for
//                     every invalid field (host, port, username, password,
//                     base_topic, client_prefix, qos, retain, keepalive;
//                     "body" when the JSON is not an object)
//   plus the errors of SettingsStore and SecretVault.

#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "services/config/secret_vault.h"
#include "services/config/settings_store.h"

namespace iot2mqtt::config {

inline constexpr char kInvalidMqttSettings[] = "INVALID_MQTT_SETTINGS";
// The password as GET /api/mqtt/config shows it, and the value a POST sends
// back to keep the stored password.
inline constexpr char kHiddenPassword[] = "***HIDDEN***";
// The vault key of the password under the platform owner.
inline constexpr char kMqttPasswordKey[] = "MQTT_PASSWORD";

struct MqttSettings {
  std::string host;
  int port = 1883;
  std::string username;
  std::string password;
  std::string base_topic = "IoT2mqtt";
  std::string client_prefix = "iot2mqtt";
  int qos = 1;
  bool retain = true;
  int keepalive = 60;
};

// OK, or INVALID_ARGUMENT INVALID_MQTT_SETTINGS listing every problem:
// host required, no spaces or control characters, <= 253 bytes; port
// 1..65535; qos 0..2; keepalive 10..3600; base_topic non-empty, no '+', '#'
// or NUL, no leading or trailing '/', <= 200 bytes; client_prefix
// [A-Za-z0-9_-]{1,64}; username <= 256 bytes; username and password without
// NUL. Values are never echoed (the password is a secret).
absl::Status ValidateMqttSettings(const MqttSettings& settings);

// Thread-safe; Set() and MigratePlaintextPassword() are serialised.
class MqttSettingsStore {
 public:
  MqttSettingsStore(SettingsStore& settings, SecretVault& vault)
      : settings_(settings), vault_(vault) {}

  // Whether a broker host is configured (reads only the settings file; the
  // vault is not touched).
  absl::StatusOr<bool> HasHost();

  // The stored settings, upstream defaults for missing keys. A value that
  // doesn't parse (or is out of range) falls back to its default with a
  // WARNING naming the key.
  absl::StatusOr<MqttSettings> Get();

  // Validates `desired` (every problem at once), then stores it: the
  // password "***HIDDEN***" keeps the stored one, "" clears it. The password
  // goes to the vault first, then `.env` is written without MQTT_PASSWORD.
  // Returns the settings now stored.
  absl::StatusOr<MqttSettings> Set(MqttSettings desired);

  // Moves a plaintext MQTT_PASSWORD from `.env` into the vault; OK and
  // nothing changed when there is none.
  absl::Status MigratePlaintextPassword();

  // The upstream MQTTConfig object {host, port, username, password,
  // base_topic, client_prefix, qos, retain, keepalive}. With
  // `mask_password` the password is "***HIDDEN***" when set, "" when not.
  static std::string ToJson(const MqttSettings& settings, bool mask_password);

  // The body of POST /api/mqtt/config: upstream MQTTConfig, defaults for
  // missing keys, null allowed for username and password, unknown keys
  // ignored. Wrong JSON types and a missing or empty host are one
  // INVALID_ARGUMENT INVALID_MQTT_SETTINGS naming every such field; ranges
  // are checked by Set().
  static absl::StatusOr<MqttSettings> FromJson(absl::string_view json);

 private:
  // The vault's password, nullopt when it has none.
  absl::StatusOr<std::optional<std::string>> LoadVaultPassword();
  // Sets (or, for nullopt / "", removes) the vault's password, keeping the
  // owner's other values.
  absl::Status StoreVaultPassword(const std::optional<std::string>& password);

  SettingsStore& settings_;
  SecretVault& vault_;
  // Serialises the read-modify-write of the vault and .env by Set() and
  // MigratePlaintextPassword().
  absl::Mutex write_mu_;
};

}  // namespace iot2mqtt::config

#endif  // IOT2MQTT_SERVICES_CONFIG_MQTT_SETTINGS_H_
