#ifndef IOT2MQTT_SERVICES_CONFIG_SECRET_VAULT_H_
#define IOT2MQTT_SERVICES_CONFIG_SECRET_VAULT_H_

// Encrypted storage of secret values (no gRPC).
//
// Every owner (an instance `<connector>/<id>`, or the platform settings under
// the reserved owner `_platform/settings`, which no valid connector name can
// collide with) has one JSON object of secret values keyed by dotted path:
//
//   {"connection.password": "hunter2", "devices.0.token": "abc"}
//
// Values are encrypted with XChaCha20-Poly1305 (libsodium, AEAD, the owner
// as associated data so a file can't be swapped between owners) under one
// 32-byte key created with mode 0400. Layout under the secrets directory:
//
//   current -> gen-<n>          symlink, replaced atomically
//   gen-<n>/key                 the key (0400)
//   gen-<n>/<connector>/<id>.secret   nonce + ciphertext (0600)
//   .lock                       serialises writers and rotation
//
// Rotation builds gen-<n+1> completely (new key, every value re-encrypted),
// fsyncs it, then swaps `current` with one rename: readers see all old or all
// new, and a crash midway leaves the old generation in charge (the
// half-built one is removed at the next start).

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace iot2mqtt::config {

inline constexpr char kSecretsUnreadable[] = "SECRETS_UNREADABLE";
// Additions. The key file has the wrong size or is missing from the current
// generation (FAILED_PRECONDITION).
inline constexpr char kSecretsKeyInvalid[] = "SECRETS_KEY_INVALID";
// `current` is not a symlink to an existing gen-<n>, or it is missing while
// a generation holds values (FAILED_PRECONDITION; an operator must look).
inline constexpr char kSecretsLayoutInvalid[] = "SECRETS_LAYOUT_INVALID";
// A connector or id that is not ^[a-z0-9][a-z0-9_-]{0,62}$ (the connector
// may also be kPlatformSecretsConnector) (INVALID_ARGUMENT).
inline constexpr char kInvalidSecretOwner[] = "INVALID_SECRET_OWNER";
// Values (or a document) that are not a JSON object (INVALID_ARGUMENT).
inline constexpr char kSecretsInvalidContent[] = "INVALID_CONTENT";
inline constexpr char kPlatformSecretsConnector[] = "_platform";
inline constexpr char kPlatformSecretsId[] = "settings";

class SecretVault {
 public:
  virtual ~SecretVault() = default;
  // The owner's values as a compact JSON object; "{}" when it has none.
  // A file that doesn't decrypt is FAILED_PRECONDITION SECRETS_UNREADABLE.
  virtual absl::StatusOr<std::string> Load(absl::string_view connector,
                                           absl::string_view id) = 0;
  // Replaces the owner's values (a JSON object); "{}" removes them.
  virtual absl::Status Store(absl::string_view connector, absl::string_view id,
                             absl::string_view values_json) = 0;
  // Removes the owner's values; OK when there were none.
  virtual absl::Status Remove(absl::string_view connector,
                              absl::string_view id) = 0;
};

}  // namespace iot2mqtt::config

#endif  // IOT2MQTT_SERVICES_CONFIG_SECRET_VAULT_H_
