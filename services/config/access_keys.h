#ifndef IOT2MQTT_SERVICES_CONFIG_ACCESS_KEYS_H_
#define IOT2MQTT_SERVICES_CONFIG_ACCESS_KEYS_H_

// The web UI's shared access key (no gRPC). There are no users: whoever
// knows the key gets a session token.
//
// Only an Argon2id hash of the key is stored (libsodium crypto_pwhash_str,
// opslimit INTERACTIVE, 19 MiB), in `<auth_dir>/access_key` (mode 0600,
// directory 0700) — not in `.env`, which connectors can read. Writers are
// serialised by the lock file `<auth_dir>/.access_key.lock`. The key itself
// is never logged or put in any message.
//
// Unlike upstream, where the first person to reach the login page owns the
// installation, a first login only sets the key when it comes from the
// machine itself (loopback); otherwise the key is set with WEB_ACCESS_KEY at
// start or `iot2mqtt-config set-access-key`.
//
// Errors (services/common/status.h reasons):
//   INVALID_ARGUMENT    ACCESS_KEY_REQUIRED, INVALID_ACCESS_KEY_FORMAT
//   UNAUTHENTICATED     INVALID_ACCESS_KEY
//   FAILED_PRECONDITION ACCESS_KEY_NOT_SET, ACCESS_KEY_CORRUPT {path}
//   ALREADY_EXISTS      ACCESS_KEY_ALREADY_SET
//   RESOURCE_EXHAUSTED  ACCESS_KEY_HASH_FAILED (no memory for Argon2id)
//   UNAVAILABLE / RESOURCE_EXHAUSTED / INTERNAL  STORAGE_* {path}

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "services/config/token_service.h"

namespace iot2mqtt::config {

inline constexpr char kAccessKeyRequired[] = "ACCESS_KEY_REQUIRED";
inline constexpr char kInvalidAccessKeyFormat[] = "INVALID_ACCESS_KEY_FORMAT";
inline constexpr char kInvalidAccessKey[] = "INVALID_ACCESS_KEY";
inline constexpr char kAccessKeyNotSet[] = "ACCESS_KEY_NOT_SET";
inline constexpr char kAccessKeyAlreadySet[] = "ACCESS_KEY_ALREADY_SET";
inline constexpr char kAccessKeyCorrupt[] = "ACCESS_KEY_CORRUPT";
inline constexpr char kAccessKeyHashFailed[] = "ACCESS_KEY_HASH_FAILED";

inline constexpr size_t kMaxAccessKeyBytes = 1024;

// Thread-safe (all state is on disk; writers hold the lock file).
class AccessKeyStore {
 public:
  explicit AccessKeyStore(std::string auth_dir);

  // Whether a key has been set.
  bool HasKey() const;

  // Sets or replaces the key (1..1024 bytes, else INVALID_ARGUMENT
  // INVALID_ACCESS_KEY_FORMAT).
  absl::Status SetKey(absl::string_view key);

  // Sets the key unless one exists (ALREADY_EXISTS ACCESS_KEY_ALREADY_SET);
  // of concurrent callers, threads or processes, exactly one succeeds.
  absl::Status SetKeyIfAbsent(absl::string_view key);

  // Whether `key` is the stored key (constant time in the key). With no key
  // stored: FAILED_PRECONDITION ACCESS_KEY_NOT_SET.
  absl::StatusOr<bool> Verify(absl::string_view key) const;

  const std::string& key_path() const { return key_path_; }

 private:
  absl::StatusOr<std::string> Hash(absl::string_view key) const;
  absl::Status Write(absl::string_view key, bool only_if_absent);

  const std::string auth_dir_;
  const std::string key_path_;
  const std::string lock_path_;
};

// The login of POST /api/auth/login.
class Authenticator {
 public:
  Authenticator(AccessKeyStore& keys, TokenService& tokens)
      : keys_(keys), tokens_(tokens) {}

  // A session token for the right key:
  //   - empty key: INVALID_ARGUMENT ACCESS_KEY_REQUIRED;
  //   - no key stored: from loopback, `key` becomes the key (of concurrent
  //     first logins exactly one wins; the others are checked against the
  //     winner's key); from elsewhere FAILED_PRECONDITION ACCESS_KEY_NOT_SET
  //     saying how to set one;
  //   - wrong key: UNAUTHENTICATED INVALID_ACCESS_KEY "Invalid access key".
  absl::StatusOr<IssuedToken> Login(absl::string_view key,
                                    bool client_is_loopback);

 private:
  AccessKeyStore& keys_;
  TokenService& tokens_;
};

}  // namespace iot2mqtt::config

#endif  // IOT2MQTT_SERVICES_CONFIG_ACCESS_KEYS_H_
