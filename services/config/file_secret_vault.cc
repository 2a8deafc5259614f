#include "services/config/file_secret_vault.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "services/common/status.h"
#include "services/config/file_io.h"

namespace iot2mqtt::config {
namespace {

constexpr char kCurrentLink[] = "current";
constexpr char kGenerationPrefix[] = "gen-";
constexpr char kKeyFile[] = "key";
constexpr char kSecretSuffix[] = ".secret";
constexpr char kTempLinkPrefix[] = ".current.tmp-";
constexpr size_t kMagicBytes = sizeof(kSecretFileMagic) - 1;
constexpr size_t kNonceBytes = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t kTagBytes = crypto_aead_xchacha20poly1305_ietf_ABYTES;
static_assert(kSecretKeyBytes == crypto_aead_xchacha20poly1305_ietf_KEYBYTES,
              "key size");

bool IsOwnerName(absl::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  auto lower_or_digit = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  };
  if (!lower_or_digit(name.front())) return false;
  for (char c : name) {
    if (!lower_or_digit(c) && c != '_' && c != '-') return false;
  }
  return true;
}

bool IsOwnerConnector(absl::string_view connector) {
  return connector == kPlatformSecretsConnector || IsOwnerName(connector);
}

// "gen-<n>" → n (n >= 1); 0 for any other name.
int ParseGeneration(absl::string_view name) {
  if (!absl::ConsumePrefix(&name, kGenerationPrefix) || name.empty() ||
      name.size() > 9 || name.front() == '0') {
    return 0;
  }
  int generation = 0;
  for (char c : name) {
    if (c < '0' || c > '9') return 0;
  }
  if (!absl::SimpleAtoi(name, &generation)) return 0;
  return generation;
}

void Wipe(std::string* text) {
  if (!text->empty()) sodium_memzero(&(*text)[0], text->size());
  text->clear();
}

absl::Status LayoutInvalid(std::string message, const std::string& path) {
  return common::WithReason(absl::FailedPreconditionError(std::move(message)),
                            kSecretsLayoutInvalid, {{"path", path}});
}

absl::Status KeyInvalid(std::string message, const std::string& path) {
  return common::WithReason(absl::FailedPreconditionError(std::move(message)),
                            kSecretsKeyInvalid, {{"path", path}});
}

absl::Status Unreadable(absl::string_view connector, absl::string_view id,
                        absl::string_view why) {
  return common::WithReason(
      absl::FailedPreconditionError(absl::StrCat(
          "the secrets of ", connector, "/", id, " cannot be read: ", why)),
      kSecretsUnreadable,
      {{"connector", std::string(connector)}, {"id", std::string(id)}});
}

absl::Status SyncDirectory(const std::string& directory) {
  int fd = open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return StorageError(errno, "open directory", directory);
  int error = fsync(fd) == 0 ? 0 : errno;
  close(fd);
  if (error != 0) return StorageError(error, "sync directory", directory);
  return absl::OkStatus();
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// rm -r without following symlinks.
absl::Status RemoveTree(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return StorageError(errno, "stat", path);
  }
  if (S_ISDIR(st.st_mode)) {
    absl::StatusOr<std::vector<std::string>> names = ListDirectory(path);
    if (!names.ok()) return names.status();
    for (const std::string& name : *names) {
      IOT2MQTT_RETURN_IF_ERROR(RemoveTree(absl::StrCat(path, "/", name)));
    }
    if (rmdir(path.c_str()) != 0) return StorageError(errno, "remove", path);
    return absl::OkStatus();
  }
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return StorageError(errno, "remove", path);
  }
  return absl::OkStatus();
}

std::string RandomHex() {
  unsigned char bytes[8];
  randombytes_buf(bytes, sizeof(bytes));
  char hex[2 * sizeof(bytes) + 1];
  sodium_bin2hex(hex, sizeof(hex), bytes, sizeof(bytes));
  return hex;
}

// The target of the symlink `path`: NOT_FOUND (plain) when missing.
absl::StatusOr<std::string> ReadLink(const std::string& path) {
  char target[256];
  ssize_t n = readlink(path.c_str(), target, sizeof(target));
  if (n < 0) {
    if (errno == ENOENT) return absl::NotFoundError(path + " does not exist");
    if (errno == EINVAL) {
      return LayoutInvalid(path + " is not a symbolic link", path);
    }
    return StorageError(errno, "read link", path);
  }
  if (static_cast<size_t>(n) >= sizeof(target)) {
    return LayoutInvalid(path + " points to an unexpected target", path);
  }
  return std::string(target, static_cast<size_t>(n));
}

// Points <dir>/current at gen-<generation>: a fresh symlink renamed over it.
absl::Status SwapCurrent(const std::string& dir, int generation) {
  const std::string temp = absl::StrCat(dir, "/", kTempLinkPrefix, RandomHex());
  const std::string target = absl::StrCat(kGenerationPrefix, generation);
  if (symlink(target.c_str(), temp.c_str()) != 0) {
    return StorageError(errno, "create link", temp);
  }
  const std::string current = absl::StrCat(dir, "/", kCurrentLink);
  if (rename(temp.c_str(), current.c_str()) != 0) {
    int error = errno;
    unlink(temp.c_str());
    return StorageError(error, "replace", current);
  }
  return SyncDirectory(dir);
}

// A fresh random key, written 0400.
absl::Status WriteNewKey(const std::string& path, unsigned char* key) {
  randombytes_buf(key, kSecretKeyBytes);
  return WriteFileAtomically(
      path,
      absl::string_view(reinterpret_cast<const char*>(key), kSecretKeyBytes),
      0400);
}

absl::Status ReadKey(const std::string& path, unsigned char* key) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return KeyInvalid(absl::StrCat("the secrets key ", path, " is missing"),
                        path);
    }
    return StorageError(errno, "stat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    return KeyInvalid(
        absl::StrCat("the secrets key ", path, " is not a regular file"), path);
  }
  if ((st.st_mode & 077) != 0) {
    if (chmod(path.c_str(), 0400) != 0) {
      return StorageError(errno, "chmod", path);
    }
    IOT2MQTT_LOG(WARNING)
            .With("path", path)
            .With("mode", absl::StrFormat("%04o", st.st_mode & 0777))
        << "the secrets key was readable by group or others; its mode is "
           "now 0400";
  }
  absl::StatusOr<std::string> bytes = ReadWholeFile(path);
  if (!bytes.ok()) return bytes.status();
  if (bytes->size() != kSecretKeyBytes) {
    size_t size = bytes->size();
    Wipe(&*bytes);
    return KeyInvalid(absl::StrCat("the secrets key ", path, " has ", size,
                                   " bytes, expected ", kSecretKeyBytes),
                      path);
  }
  std::memcpy(key, bytes->data(), kSecretKeyBytes);
  Wipe(&*bytes);
  return absl::OkStatus();
}

std::string AssociatedData(absl::string_view connector, absl::string_view id) {
  return absl::StrCat(connector, "/", id);
}

absl::Status SodiumReady() {
  static const int result = sodium_init();
  if (result < 0) {
    return common::WithReason(
        absl::InternalError("libsodium could not be initialised"),
        kStorageIoError);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateSecretOwner(absl::string_view connector,
                                 absl::string_view id) {
  if (IsOwnerConnector(connector) && IsOwnerName(id)) return absl::OkStatus();
  return common::WithReason(
      absl::InvalidArgumentError(
          "a secrets owner is a connector and an id matching "
          "^[a-z0-9][a-z0-9_-]{0,62}$"),
      kInvalidSecretOwner,
      {{"connector", std::string(connector)}, {"id", std::string(id)}});
}

FileSecretVault::FileSecretVault(std::string dir)
    : dir_(std::move(dir)), lock_path_(dir_ + "/.lock") {
  sodium_mlock(key_, sizeof(key_));  // Best effort: keep it out of swap.
}

FileSecretVault::~FileSecretVault() {
  absl::MutexLock lock(&mu_);
  sodium_munlock(key_, sizeof(key_));  // Also zeroes it.
  sodium_memzero(key_, sizeof(key_));
}

absl::StatusOr<std::unique_ptr<FileSecretVault>> FileSecretVault::Open(
    std::string secrets_dir) {
  IOT2MQTT_RETURN_IF_ERROR(SodiumReady());
  while (secrets_dir.size() > 1 && secrets_dir.back() == '/') {
    secrets_dir.pop_back();
  }
  IOT2MQTT_RETURN_IF_ERROR(MakeDirectories(secrets_dir, 0700));
  struct stat st;
  if (stat(secrets_dir.c_str(), &st) != 0) {
    return StorageError(errno, "stat", secrets_dir);
  }
  if ((st.st_mode & 077) != 0) {
    if (chmod(secrets_dir.c_str(), 0700) != 0) {
      return StorageError(errno, "chmod", secrets_dir);
    }
    IOT2MQTT_LOG(WARNING).With("path", secrets_dir)
        << "the secrets directory was open to group or others; its mode is "
           "now 0700";
  }

  std::unique_ptr<FileSecretVault> vault(new FileSecretVault(secrets_dir));
  const std::string& dir = vault->dir_;
  const std::string current_path = absl::StrCat(dir, "/", kCurrentLink);
  {
    absl::MutexLock lock(&vault->mu_);
    IOT2MQTT_ASSIGN_OR_RETURN(FileLock file_lock,
                              FileLock::Acquire(vault->lock_path_));
    IOT2MQTT_ASSIGN_OR_RETURN(std::vector<std::string> names,
                              ListDirectory(dir));
    int current = 0;
    absl::StatusOr<std::string> target = ReadLink(current_path);
    if (target.ok()) {
      current = ParseGeneration(*target);
      if (current == 0 || !IsDirectory(absl::StrCat(dir, "/", *target))) {
        return LayoutInvalid(
            absl::StrCat(current_path, " does not point to a generation"),
            current_path);
      }
    } else if (!absl::IsNotFound(target.status())) {
      return target.status();
    } else {
      // No generation in charge: a first start, or a crash while the first
      // generation was made (it holds a key and nothing else).
      for (const std::string& name : names) {
        int generation = ParseGeneration(name);
        if (generation == 0) continue;
        absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
            owners = vault->ListOwners(generation);
        if (!owners.ok()) return owners.status();
        if (!owners->empty()) {
          return LayoutInvalid(absl::StrCat(current_path, " is missing but ",
                                            dir, "/", name, " holds secrets"),
                               current_path);
        }
      }
      current = 1;
      for (const std::string& name : names) {
        if (ParseGeneration(name) != 0) {
          IOT2MQTT_RETURN_IF_ERROR(RemoveTree(absl::StrCat(dir, "/", name)));
        }
      }
      const std::string generation_dir = vault->GenerationDir(current);
      IOT2MQTT_RETURN_IF_ERROR(MakeDirectories(generation_dir, 0700));
      unsigned char key[kSecretKeyBytes];
      absl::Status written =
          WriteNewKey(absl::StrCat(generation_dir, "/", kKeyFile), key);
      sodium_memzero(key, sizeof(key));
      IOT2MQTT_RETURN_IF_ERROR(written);
      IOT2MQTT_RETURN_IF_ERROR(SyncDirectory(dir));
      IOT2MQTT_RETURN_IF_ERROR(SwapCurrent(dir, current));
      IOT2MQTT_LOG(INFO).With("path", dir) << "secrets vault created";
      IOT2MQTT_ASSIGN_OR_RETURN(names, ListDirectory(dir));
    }
    // Leftovers: generations other than the current one, temporary links.
    for (const std::string& name : names) {
      int generation = ParseGeneration(name);
      bool stale_generation = generation != 0 && generation != current;
      if (stale_generation || absl::StartsWith(name, kTempLinkPrefix)) {
        IOT2MQTT_LOG(INFO).With("path", absl::StrCat(dir, "/", name))
            << "removing what an interrupted secrets operation left behind";
        IOT2MQTT_RETURN_IF_ERROR(RemoveTree(absl::StrCat(dir, "/", name)));
      }
    }
    IOT2MQTT_RETURN_IF_ERROR(vault->Refresh());
  }
  return vault;
}

std::string FileSecretVault::GenerationDir(int generation) const {
  return absl::StrCat(dir_, "/", kGenerationPrefix, generation);
}

std::string FileSecretVault::SecretPath(int generation,
                                        absl::string_view connector,
                                        absl::string_view id) const {
  return absl::StrCat(GenerationDir(generation), "/", connector, "/", id,
                      kSecretSuffix);
}

absl::Status FileSecretVault::Refresh() {
  const std::string current_path = absl::StrCat(dir_, "/", kCurrentLink);
  absl::StatusOr<std::string> target = ReadLink(current_path);
  if (absl::IsNotFound(target.status())) {
    return LayoutInvalid(absl::StrCat(current_path, " is missing"),
                         current_path);
  }
  if (!target.ok()) return target.status();
  int generation = ParseGeneration(*target);
  if (generation == 0) {
    return LayoutInvalid(
        absl::StrCat(current_path, " does not point to a generation"),
        current_path);
  }
  if (generation == generation_) return absl::OkStatus();
  unsigned char key[kSecretKeyBytes];
  absl::Status read =
      ReadKey(absl::StrCat(GenerationDir(generation), "/", kKeyFile), key);
  if (read.ok()) {
    std::memcpy(key_, key, sizeof(key_));
    generation_ = generation;
  }
  sodium_memzero(key, sizeof(key));
  return read;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
FileSecretVault::ListOwners(int generation) const {
  const std::string generation_dir = GenerationDir(generation);
  IOT2MQTT_ASSIGN_OR_RETURN(std::vector<std::string> connectors,
                            ListDirectory(generation_dir));
  std::vector<std::pair<std::string, std::string>> owners;
  for (const std::string& connector : connectors) {
    const std::string connector_dir =
        absl::StrCat(generation_dir, "/", connector);
    if (!IsOwnerConnector(connector) || !IsDirectory(connector_dir)) continue;
    IOT2MQTT_ASSIGN_OR_RETURN(std::vector<std::string> files,
                              ListDirectory(connector_dir));
    for (const std::string& file : files) {
      absl::string_view id = file;
      if (!absl::ConsumeSuffix(&id, kSecretSuffix) || !IsOwnerName(id)) {
        continue;
      }
      owners.emplace_back(connector, std::string(id));
    }
  }
  return owners;
}

absl::StatusOr<std::string> FileSecretVault::Decrypt(
    const std::string& path, absl::string_view connector, absl::string_view id,
    const unsigned char* key) const {
  IOT2MQTT_ASSIGN_OR_RETURN(std::string content, ReadWholeFile(path));
  if (content.size() < kMagicBytes + kNonceBytes + kTagBytes) {
    return Unreadable(connector, id, "the file is too short");
  }
  if (absl::string_view(content).substr(0, kMagicBytes) != kSecretFileMagic) {
    return Unreadable(connector, id, "the file is not a secrets file");
  }
  const auto* nonce =
      reinterpret_cast<const unsigned char*>(content.data() + kMagicBytes);
  const auto* ciphertext = nonce + kNonceBytes;
  const size_t ciphertext_size = content.size() - kMagicBytes - kNonceBytes;
  std::string plaintext(ciphertext_size - kTagBytes, '\0');
  unsigned long long plaintext_size = 0;  // NOLINT(runtime/int): libsodium.
  const std::string ad = AssociatedData(connector, id);
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<unsigned char*>(&plaintext[0]), &plaintext_size,
          nullptr, ciphertext, ciphertext_size,
          reinterpret_cast<const unsigned char*>(ad.data()), ad.size(), nonce,
          key) != 0) {
    Wipe(&plaintext);
    return Unreadable(connector, id,
                      "it does not decrypt with the current key for this "
                      "owner (tampered, moved or foreign file)");
  }
  plaintext.resize(static_cast<size_t>(plaintext_size));
  absl::StatusOr<std::string> compact;
  if (sdk::JsonTypeOf(plaintext) == "object") {
    compact = sdk::RewriteJson(plaintext);
  }
  Wipe(&plaintext);
  if (!compact.ok()) {
    return Unreadable(connector, id, "the decrypted content is not an object");
  }
  return compact;
}

absl::Status FileSecretVault::Encrypt(const std::string& path,
                                      absl::string_view connector,
                                      absl::string_view id,
                                      absl::string_view plaintext,
                                      const unsigned char* key) const {
  std::string content(kMagicBytes + kNonceBytes + plaintext.size() + kTagBytes,
                      '\0');
  std::memcpy(&content[0], kSecretFileMagic, kMagicBytes);
  auto* nonce = reinterpret_cast<unsigned char*>(&content[kMagicBytes]);
  randombytes_buf(nonce, kNonceBytes);
  unsigned long long ciphertext_size = 0;  // NOLINT(runtime/int): libsodium.
  const std::string ad = AssociatedData(connector, id);
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      nonce + kNonceBytes, &ciphertext_size,
      reinterpret_cast<const unsigned char*>(plaintext.data()),
      plaintext.size(), reinterpret_cast<const unsigned char*>(ad.data()),
      ad.size(), nullptr, nonce, key);
  content.resize(kMagicBytes + kNonceBytes +
                 static_cast<size_t>(ciphertext_size));
  IOT2MQTT_RETURN_IF_ERROR(MakeDirectories(DirectoryOf(path), 0700));
  return WriteFileAtomically(path, content, 0600);
}

absl::StatusOr<std::string> FileSecretVault::Load(absl::string_view connector,
                                                  absl::string_view id) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateSecretOwner(connector, id));
  absl::MutexLock lock(&mu_);
  IOT2MQTT_ASSIGN_OR_RETURN(FileLock file_lock, FileLock::Acquire(lock_path_));
  IOT2MQTT_RETURN_IF_ERROR(Refresh());
  absl::StatusOr<std::string> values =
      Decrypt(SecretPath(generation_, connector, id), connector, id, key_);
  if (absl::IsNotFound(values.status()) &&
      common::GetErrorInfo(values.status()) == std::nullopt) {
    return std::string("{}");
  }
  return values;
}

absl::Status FileSecretVault::Store(absl::string_view connector,
                                    absl::string_view id,
                                    absl::string_view values_json) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateSecretOwner(connector, id));
  absl::StatusOr<std::string> compact;
  if (sdk::JsonTypeOf(values_json) == "object") {
    compact = sdk::RewriteJson(values_json);
  }
  if (!compact.ok()) {
    return common::WithReason(
        absl::InvalidArgumentError(absl::StrCat(
            "the secrets of ", connector, "/", id, " must be a JSON object")),
        kSecretsInvalidContent,
        {{"connector", std::string(connector)}, {"id", std::string(id)}});
  }
  if (*compact == "{}") return Remove(connector, id);
  absl::MutexLock lock(&mu_);
  absl::Status status = [&]() -> absl::Status {
    IOT2MQTT_ASSIGN_OR_RETURN(FileLock file_lock,
                              FileLock::Acquire(lock_path_));
    IOT2MQTT_RETURN_IF_ERROR(Refresh());
    return Encrypt(SecretPath(generation_, connector, id), connector, id,
                   *compact, key_);
  }();
  Wipe(&*compact);
  return status;
}

absl::Status FileSecretVault::Remove(absl::string_view connector,
                                     absl::string_view id) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateSecretOwner(connector, id));
  absl::MutexLock lock(&mu_);
  IOT2MQTT_ASSIGN_OR_RETURN(FileLock file_lock, FileLock::Acquire(lock_path_));
  IOT2MQTT_RETURN_IF_ERROR(Refresh());
  const std::string path = SecretPath(generation_, connector, id);
  absl::Status removed = RemoveFile(path);
  if (absl::IsNotFound(removed) &&
      common::GetErrorInfo(removed) == std::nullopt) {
    return absl::OkStatus();
  }
  IOT2MQTT_RETURN_IF_ERROR(removed);
  rmdir(DirectoryOf(path).c_str());  // Only succeeds when it is now empty.
  return absl::OkStatus();
}

std::vector<std::pair<std::string, std::string>> FileSecretVault::Owners() {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> owners =
      [&]()
      -> absl::StatusOr<std::vector<std::pair<std::string, std::string>>> {
    IOT2MQTT_ASSIGN_OR_RETURN(FileLock file_lock,
                              FileLock::Acquire(lock_path_));
    IOT2MQTT_RETURN_IF_ERROR(Refresh());
    return ListOwners(generation_);
  }();
  if (!owners.ok()) {
    IOT2MQTT_LOG(WARNING).With("path", dir_)
        << "cannot list secret owners: " << owners.status().message();
    return {};
  }
  return *std::move(owners);
}

void FileSecretVault::SetRotationHookForTesting(RotationHook hook) {
  absl::MutexLock lock(&mu_);
  rotation_hook_ = std::move(hook);
}

absl::Status FileSecretVault::RotateKey() {
  absl::MutexLock lock(&mu_);
  IOT2MQTT_ASSIGN_OR_RETURN(FileLock file_lock, FileLock::Acquire(lock_path_));
  return RotateLocked();
}

absl::Status FileSecretVault::RotateLocked() {
  IOT2MQTT_RETURN_IF_ERROR(Refresh());
  const int old_generation = generation_;
  const int new_generation = old_generation + 1;
  const std::string new_dir = GenerationDir(new_generation);
  IOT2MQTT_RETURN_IF_ERROR(RemoveTree(new_dir));  // A crashed attempt.
  IOT2MQTT_ASSIGN_OR_RETURN(auto owners, ListOwners(old_generation));

  unsigned char new_key[kSecretKeyBytes];
  absl::Status built = [&]() -> absl::Status {
    IOT2MQTT_RETURN_IF_ERROR(MakeDirectories(new_dir, 0700));
    IOT2MQTT_RETURN_IF_ERROR(
        WriteNewKey(absl::StrCat(new_dir, "/", kKeyFile), new_key));
    for (const auto& [connector, id] : owners) {
      IOT2MQTT_ASSIGN_OR_RETURN(
          std::string values, Decrypt(SecretPath(old_generation, connector, id),
                                      connector, id, key_));
      absl::Status written = Encrypt(SecretPath(new_generation, connector, id),
                                     connector, id, values, new_key);
      Wipe(&values);
      IOT2MQTT_RETURN_IF_ERROR(written);
      if (rotation_hook_) {
        IOT2MQTT_RETURN_IF_ERROR(rotation_hook_(connector, id));
      }
    }
    // Files and their directories are synced by WriteFileAtomically; the
    // new generation's entries and its own entry are synced here.
    IOT2MQTT_RETURN_IF_ERROR(SyncDirectory(new_dir));
    IOT2MQTT_RETURN_IF_ERROR(SyncDirectory(dir_));
    return SwapCurrent(dir_, new_generation);
  }();
  if (!built.ok()) {
    sodium_memzero(new_key, sizeof(new_key));
    if (absl::Status removed = RemoveTree(new_dir); !removed.ok()) {
      IOT2MQTT_LOG(WARNING).With("path", new_dir)
          << "cannot remove the unfinished generation (removed at the next "
             "start): "
          << removed.message();
    }
    IOT2MQTT_LOG(ERROR).With("path", dir_)
        << "key rotation failed; the old key stays in charge: "
        << built.message();
    return built;
  }
  std::memcpy(key_, new_key, sizeof(key_));
  sodium_memzero(new_key, sizeof(new_key));
  generation_ = new_generation;
  if (absl::Status removed = RemoveTree(GenerationDir(old_generation));
      !removed.ok()) {
    IOT2MQTT_LOG(WARNING).With("path", GenerationDir(old_generation))
        << "cannot remove the previous generation (removed at the next "
           "start): "
        << removed.message();
  }
  IOT2MQTT_LOG(INFO)
          .With("generation", static_cast<int64_t>(new_generation))
          .With("owners", static_cast<int64_t>(owners.size()))
      << "secrets key rotated";
  return absl::OkStatus();
}

}  // namespace iot2mqtt::config
