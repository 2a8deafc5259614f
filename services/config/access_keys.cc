#include "services/config/access_keys.h"

#include <sodium.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "services/common/status.h"
#include "services/config/file_io.h"

namespace iot2mqtt::config {
namespace {

constexpr unsigned long long kOpsLimit = crypto_pwhash_OPSLIMIT_INTERACTIVE;
constexpr size_t kMemLimit = size_t{19} * 1024 * 1024;
constexpr char kArgon2idPrefix[] = "$argon2id$";

absl::Status SodiumReady() {
  static const int result = sodium_init();
  if (result < 0) return absl::InternalError("libsodium failed to initialise");
  return absl::OkStatus();
}

absl::Status ValidateKey(absl::string_view key) {
  if (!key.empty() && key.size() <= kMaxAccessKeyBytes) {
    return absl::OkStatus();
  }
  return common::WithReason(
      absl::InvalidArgumentError(absl::StrCat(
          "the access key must be 1 to ", kMaxAccessKeyBytes, " bytes long")),
      kInvalidAccessKeyFormat,
      {{"max_bytes", absl::StrCat(kMaxAccessKeyBytes)}});
}

}  // namespace

AccessKeyStore::AccessKeyStore(std::string auth_dir)
    : auth_dir_(std::move(auth_dir)),
      key_path_(auth_dir_ + "/access_key"),
      lock_path_(auth_dir_ + "/.access_key.lock") {}

bool AccessKeyStore::HasKey() const { return PathExists(key_path_); }

absl::Status AccessKeyStore::SetKey(absl::string_view key) {
  return Write(key, /*only_if_absent=*/false);
}

absl::Status AccessKeyStore::SetKeyIfAbsent(absl::string_view key) {
  return Write(key, /*only_if_absent=*/true);
}

absl::StatusOr<std::string> AccessKeyStore::Hash(absl::string_view key) const {
  IOT2MQTT_RETURN_IF_ERROR(SodiumReady());
  char hash[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(hash, key.data(), key.size(), kOpsLimit, kMemLimit,
                            crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return common::WithReason(absl::ResourceExhaustedError(
                                  "not enough memory to hash the access key"),
                              kAccessKeyHashFailed);
  }
  return std::string(hash);
}

absl::Status AccessKeyStore::Write(absl::string_view key, bool only_if_absent) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateKey(key));
  if (only_if_absent && HasKey()) {
    return common::WithReason(
        absl::AlreadyExistsError("an access key is already set"),
        kAccessKeyAlreadySet);
  }
  // Hashing takes tens of milliseconds: done before taking the lock.
  IOT2MQTT_ASSIGN_OR_RETURN(std::string hash, Hash(key));
  IOT2MQTT_RETURN_IF_ERROR(MakeDirectories(auth_dir_, 0700));
  IOT2MQTT_ASSIGN_OR_RETURN(FileLock file_lock, FileLock::Acquire(lock_path_));
  if (only_if_absent && HasKey()) {
    return common::WithReason(
        absl::AlreadyExistsError("an access key is already set"),
        kAccessKeyAlreadySet);
  }
  IOT2MQTT_RETURN_IF_ERROR(
      WriteFileAtomically(key_path_, absl::StrCat(hash, "\n"), 0600));
  IOT2MQTT_LOG(INFO).With("path", key_path_) << "access key set";
  return absl::OkStatus();
}

absl::StatusOr<bool> AccessKeyStore::Verify(absl::string_view key) const {
  IOT2MQTT_RETURN_IF_ERROR(SodiumReady());
  absl::StatusOr<std::string> stored = ReadWholeFile(key_path_);
  if (absl::IsNotFound(stored.status())) {
    return common::WithReason(
        absl::FailedPreconditionError("no access key has been set"),
        kAccessKeyNotSet);
  }
  if (!stored.ok()) return stored.status();
  std::string hash(absl::StripTrailingAsciiWhitespace(*stored));
  if (!absl::StartsWith(hash, kArgon2idPrefix) ||
      hash.size() >= crypto_pwhash_STRBYTES ||
      crypto_pwhash_str_needs_rehash(hash.c_str(), kOpsLimit, kMemLimit) ==
          -1) {
    return common::WithReason(
        absl::FailedPreconditionError(
            absl::StrCat("the stored access key ", key_path_,
                         " is not an Argon2id hash; set a new key with "
                         "`iot2mqtt-config set-access-key`")),
        kAccessKeyCorrupt, {{"path", key_path_}});
  }
  // No stored key can be longer; rejecting early also bounds the work.
  if (key.empty() || key.size() > kMaxAccessKeyBytes) return false;
  return crypto_pwhash_str_verify(hash.c_str(), key.data(), key.size()) == 0;
}

absl::StatusOr<IssuedToken> Authenticator::Login(absl::string_view key,
                                                 bool client_is_loopback) {
  if (key.empty()) {
    return common::WithReason(
        absl::InvalidArgumentError("Access key is required"),
        kAccessKeyRequired);
  }
  if (!keys_.HasKey()) {
    if (!client_is_loopback) {
      return common::WithReason(
          absl::FailedPreconditionError(
              "No access key has been set yet. Set one with WEB_ACCESS_KEY "
              "when the platform starts, with `iot2mqtt-config "
              "set-access-key`, or by logging in for the first time from "
              "the machine the platform runs on"),
          kAccessKeyNotSet);
    }
    absl::Status set = keys_.SetKeyIfAbsent(key);
    if (set.ok()) {
      IOT2MQTT_LOG(INFO) << "access key set by the first login (loopback)";
      return tokens_.Issue("user");
    }
    // Another first login won: this key is checked against the winner's.
    if (!absl::IsAlreadyExists(set)) return set;
  }
  IOT2MQTT_ASSIGN_OR_RETURN(bool valid, keys_.Verify(key));
  if (!valid) {
    IOT2MQTT_LOG(WARNING) << "login with an invalid access key";
    return common::WithReason(absl::UnauthenticatedError("Invalid access key"),
                              kInvalidAccessKey);
  }
  return tokens_.Issue("user");
}

}  // namespace iot2mqtt::config
