#ifndef IOT2MQTT_SERVICES_CONFIG_FILE_SECRET_VAULT_H_
#define IOT2MQTT_SERVICES_CONFIG_FILE_SECRET_VAULT_H_

// SecretVault on files (layout in secret_vault.h), libsodium's
// XChaCha20-Poly1305-IETF. A value file is
//
//   "I2S1" (4 bytes) | nonce (24 random bytes, new on every write) |
//   ciphertext + tag of the owner's compact JSON object
//
// with "<connector>/<id>" as associated data. Files are 0600, the key 0400,
// directories 0700, all written with WriteFileAtomically while holding
// <dir>/.lock, which every operation takes (so other processes sharing the
// directory see a consistent generation), after this object's mutex.
//
// Errors carry a google.rpc.ErrorInfo reason (services/common/status.h):
//   INVALID_ARGUMENT    INVALID_SECRET_OWNER {connector, id} (checked before
//                       any path is built), INVALID_CONTENT (values that are
//                       not a JSON object)
//   FAILED_PRECONDITION SECRETS_UNREADABLE {connector, id} (bad magic, short
//                       file, wrong key, tampered or swapped file),
//                       SECRETS_KEY_INVALID {path}, SECRETS_LAYOUT_INVALID
//                       {path}
//   UNAVAILABLE / RESOURCE_EXHAUSTED / INTERNAL  STORAGE_* {path} (file_io.h)
// No message or log line contains a key or a value.

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "services/config/secret_vault.h"

namespace iot2mqtt::config {

inline constexpr size_t kSecretKeyBytes = 32;
inline constexpr char kSecretFileMagic[] = "I2S1";

// Whether (connector, id) may own secrets: both ^[a-z0-9][a-z0-9_-]{0,62}$,
// or the connector is exactly kPlatformSecretsConnector.
absl::Status ValidateSecretOwner(absl::string_view connector,
                                 absl::string_view id);

class FileSecretVault final : public SecretVault {
 public:
  // Opens (creating it 0700 when missing) the vault in `secrets_dir`: makes
  // the first generation with a fresh key when there is none; removes
  // generations other than the current one (half-built by a crashed
  // rotation, or an old one not yet removed) and leftover temporary links;
  // narrows a key file readable by group or others to 0400 (WARNING);
  // refuses a key of the wrong size (FAILED_PRECONDITION
  // SECRETS_KEY_INVALID).
  static absl::StatusOr<std::unique_ptr<FileSecretVault>> Open(
      std::string secrets_dir);

  ~FileSecretVault() override;
  FileSecretVault(const FileSecretVault&) = delete;
  FileSecretVault& operator=(const FileSecretVault&) = delete;

  absl::StatusOr<std::string> Load(absl::string_view connector,
                                   absl::string_view id) override;
  absl::Status Store(absl::string_view connector, absl::string_view id,
                     absl::string_view values_json) override;
  absl::Status Remove(absl::string_view connector,
                      absl::string_view id) override;

  // Builds gen-<n+1> with a new key and every owner's values re-encrypted,
  // fsynced, then swaps `current` by renaming a fresh symlink over it and
  // removes the old generation. Any failure before the swap removes the new
  // generation and leaves every value readable with the old key. A file that
  // doesn't decrypt stops the rotation (SECRETS_UNREADABLE): rotation never
  // drops a value.
  absl::Status RotateKey();

  // Every owner with stored values, sorted; empty when the vault can't be
  // read (logged).
  std::vector<std::pair<std::string, std::string>> Owners();

  const std::string& directory() const { return dir_; }

  // Tests: called during RotateKey after each owner's values are written to
  // the new generation; a non-OK status aborts the rotation there.
  using RotationHook = std::function<absl::Status(absl::string_view connector,
                                                  absl::string_view id)>;
  void SetRotationHookForTesting(RotationHook hook);

 private:
  explicit FileSecretVault(std::string dir);

  // Reads `current` and, when it changed (another process rotated), the key
  // of the generation it names.
  absl::Status Refresh() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string GenerationDir(int generation) const;
  std::string SecretPath(int generation, absl::string_view connector,
                         absl::string_view id) const;
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ListOwners(
      int generation) const;
  absl::StatusOr<std::string> Decrypt(const std::string& path,
                                      absl::string_view connector,
                                      absl::string_view id,
                                      const unsigned char* key) const;
  absl::Status Encrypt(const std::string& path, absl::string_view connector,
                       absl::string_view id, absl::string_view plaintext,
                       const unsigned char* key) const;
  absl::Status RotateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  const std::string lock_path_;
  absl::Mutex mu_;
  int generation_ ABSL_GUARDED_BY(mu_) = 0;  // 0: not loaded yet.
  unsigned char key_[kSecretKeyBytes] ABSL_GUARDED_BY(mu_) = {};
  RotationHook rotation_hook_ ABSL_GUARDED_BY(mu_);
};

}  // namespace iot2mqtt::config

#endif  // IOT2MQTT_SERVICES_CONFIG_FILE_SECRET_VAULT_H_
