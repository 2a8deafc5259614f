#include "services/config/device_config_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <random>
#include <system_error>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "rapidjson/document.h"
#include "services/common/status.h"
#include "services/config/file_io.h"

namespace iot2mqtt::config {
namespace {

constexpr absl::string_view kJsonSuffix = ".json";
constexpr absl::string_view kTempInfix = ".json.tmp-";
constexpr size_t kMacLength = 17;  // "a4-cf-12-34-56-78"
constexpr char kExpectedFormat[] =
    "expected six lower-case hex pairs separated by hyphens "
    "(xx-xx-xx-xx-xx-xx), e.g. a4-cf-12-34-56-78";

std::string ErrnoText(int error) {
  return std::generic_category().message(error);
}

bool IsLowerHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

// A bad MAC as it can be shown in a message: escaped, at most 64 bytes.
std::string Printable(absl::string_view text) {
  constexpr size_t kMax = 64;
  if (text.size() <= kMax) return absl::CHexEscape(text);
  return absl::StrCat(absl::CHexEscape(text.substr(0, kMax)), "...");
}

absl::Status NotFound(absl::string_view mac) {
  return common::WithReason(absl::NotFoundError(absl::StrCat(
                                "no device config for MAC address ", mac)),
                            kDeviceConfigNotFound,
                            {{"mac_address", std::string(mac)}});
}

// A stored file that is not a JSON object. FAILED_PRECONDITION rather than
// DATA_LOSS or INTERNAL: nothing is wrong with the service, the caller can
// act on it (replace the file with UpdateDeviceConfig or delete it), and the
// other configurations stay readable.
absl::Status Corrupt(absl::string_view mac, const std::string& path,
                     absl::string_view problem) {
  return common::WithReason(
      absl::FailedPreconditionError(absl::StrCat(
          "device config ", mac, " is corrupt: ", path, " ", problem,
          "; replace it with UpdateDeviceConfig or delete it")),
      kDeviceConfigCorrupt,
      {{"mac_address", std::string(mac)}, {"path", path}});
}

// Reads a whole regular file; returns 0 or an errno (EISDIR for anything
// that is not a regular file). `st_out`, when given, receives its fstat().
int ReadRegularFile(const std::string& path, std::string* out,
                    struct stat* st_out = nullptr) {
  ScopedFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return errno;
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return errno;
  if (st_out != nullptr) *st_out = st;
  if (!S_ISREG(st.st_mode)) return EISDIR;
  out->clear();
  out->reserve(static_cast<size_t>(st.st_size));
  char buffer[16384];
  while (true) {
    ssize_t n = read(fd.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return 0;
    out->append(buffer, static_cast<size_t>(n));
  }
}

// `.<mac>.json.tmp-<hex>`: what WriteAtomically leaves behind on a crash.
bool IsTempFileName(absl::string_view name) {
  if (!absl::ConsumePrefix(&name, ".")) return false;
  if (name.size() <= kMacLength + kTempInfix.size()) return false;
  if (!IsValidMacAddress(name.substr(0, kMacLength))) return false;
  name.remove_prefix(kMacLength);
  if (!absl::ConsumePrefix(&name, kTempInfix)) return false;
  return std::all_of(name.begin(), name.end(), IsLowerHex);
}

// Decodes a member value that is a JSON string.
std::optional<std::string> JsonString(const std::string& value) {
  if (sdk::JsonTypeOf(value) != "string") return std::nullopt;
  rapidjson::Document document;
  document.Parse(value.data(), value.size());
  if (document.HasParseError() || !document.IsString()) return std::nullopt;
  return std::string(document.GetString(), document.GetStringLength());
}

std::optional<bool> JsonBool(const std::string& value) {
  if (value == "true") return true;
  if (value == "false") return false;
  return std::nullopt;
}

}  // namespace

bool IsValidMacAddress(absl::string_view mac) {
  if (mac.size() != kMacLength) return false;
  for (size_t i = 0; i < mac.size(); ++i) {
    bool ok = i % 3 == 2 ? mac[i] == '-' : IsLowerHex(mac[i]);
    if (!ok) return false;
  }
  return true;
}

absl::Status ValidateMacAddress(absl::string_view mac) {
  if (IsValidMacAddress(mac)) return absl::OkStatus();
  std::string message =
      mac.empty() ? absl::StrCat("MAC address is required: ", kExpectedFormat)
                  : absl::StrCat("invalid MAC address \"", Printable(mac),
                                 "\": ", kExpectedFormat);
  return common::WithReason(absl::InvalidArgumentError(message),
                            kInvalidMacAddress,
                            {{"mac_address", Printable(mac)},
                             {"expected_format", "xx-xx-xx-xx-xx-xx"}});
}

absl::StatusOr<DeviceConfig> ParseDeviceConfig(std::string mac_address,
                                               absl::string_view text) {
  absl::StatusOr<std::vector<sdk::JsonMember>> members =
      sdk::SplitJsonObject(text);
  if (!members.ok()) {
    if (absl::StartsWith(members.status().message(), "expected")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "expected a JSON object, got ", sdk::DescribeJsonType(text)));
    }
    return members.status();
  }
  DeviceConfig config;
  IOT2MQTT_ASSIGN_OR_RETURN(config.content,
                            sdk::RewriteJson(text, sdk::JsonFormat::kCompact));
  config.summary.mac_address = std::move(mac_address);
  // With duplicate keys the last one counts, as in JavaScript and Python.
  for (const sdk::JsonMember& member : *members) {
    if (member.key == "deviceName") {
      config.summary.device_name = JsonString(member.value);
    } else if (member.key == "deviceEntityId") {
      config.summary.device_entity_id = JsonString(member.value);
    } else if (member.key == "enableOTA") {
      config.summary.enable_ota = JsonBool(member.value);
    }
  }
  return config;
}

FileDeviceConfigStore::FileDeviceConfigStore(std::string directory)
    : directory_(std::move(directory)) {
  RemoveStaleTempFiles();
}

std::string FileDeviceConfigStore::PathOf(absl::string_view mac) const {
  return absl::StrCat(directory_, "/", mac, kJsonSuffix);
}

absl::Status FileDeviceConfigStore::CheckDirectory() const {
  struct stat st;
  int error = 0;
  if (stat(directory_.c_str(), &st) != 0) {
    error = errno;
  } else if (!S_ISDIR(st.st_mode)) {
    error = ENOTDIR;
  } else if (access(directory_.c_str(), R_OK | W_OK | X_OK) != 0) {
    error = errno;
  }
  if (error == 0) return absl::OkStatus();
  return common::WithReason(absl::UnavailableError(absl::StrCat(
                                "device config directory \"", directory_,
                                "\" is unusable: ", ErrnoText(error))),
                            kStorageUnavailable, {{"path", directory_}});
}

void FileDeviceConfigStore::RemoveStaleTempFiles() {
  DIR* dir = opendir(directory_.c_str());
  if (dir == nullptr) return;  // CheckHealth() reports it.
  std::vector<std::string> stale;
  while (dirent* entry = readdir(dir)) {
    if (IsTempFileName(entry->d_name)) stale.emplace_back(entry->d_name);
  }
  closedir(dir);
  for (const std::string& name : stale) {
    std::string path = absl::StrCat(directory_, "/", name);
    if (unlink(path.c_str()) == 0) {
      IOT2MQTT_LOG(WARNING).With("file", path)
          << "removed temporary file left by an interrupted write: " << path;
    }
  }
}

FileDeviceConfigStore::FileIdentity FileDeviceConfigStore::IdentityOf(
    const struct stat& st) {
  FileIdentity identity;
  identity.inode = st.st_ino;
  identity.size = st.st_size;
  identity.mtime_ns =
      int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  identity.ctime_ns =
      int64_t{st.st_ctim.tv_sec} * 1000000000 + st.st_ctim.tv_nsec;
  return identity;
}

absl::StatusOr<std::vector<DeviceConfigSummary>> FileDeviceConfigStore::Scan() {
  IOT2MQTT_RETURN_IF_ERROR(CheckDirectory());
  DIR* dir = opendir(directory_.c_str());
  if (dir == nullptr) return StorageError(errno, "list", directory_);
  std::vector<std::string> macs;
  while (true) {
    errno = 0;
    dirent* entry = readdir(dir);
    if (entry == nullptr) break;
    absl::string_view name(entry->d_name);
    if (!absl::ConsumeSuffix(&name, kJsonSuffix)) continue;
    if (IsValidMacAddress(name)) macs.emplace_back(name);
  }
  int error = errno;
  if (error != 0) {
    closedir(dir);
    return StorageError(error, "list", directory_);
  }
  std::sort(macs.begin(), macs.end());

  std::vector<DeviceConfigSummary> summaries;
  summaries.reserve(macs.size());
  absl::MutexLock lock(&cache_mu_);
  ++scan_generation_;
  for (std::string& mac : macs) {
    std::string name = absl::StrCat(mac, kJsonSuffix);
    struct stat st;
    // Relative to the open directory: no path walk per file.
    if (fstatat(dirfd(dir), name.c_str(), &st, 0) != 0) continue;  // Gone.
    CachedSummary& entry = cache_[mac];
    entry.generation = scan_generation_;
    if (entry.trusted && entry.identity == IdentityOf(st)) {
      if (entry.summary) summaries.push_back(*entry.summary);
      continue;
    }
    // Changed or new: read it, and key the result by what was read.
    std::string path = PathOf(mac);
    std::string text;
    struct stat read_st;
    absl::Status problem;
    entry.summary.reset();
    entry.trusted = false;
    if (int read_error = ReadRegularFile(path, &text, &read_st);
        read_error != 0) {
      if (read_error == ENOENT) continue;  // Deleted meanwhile.
      problem = absl::UnknownError(
          absl::StrCat("cannot read it: ", ErrnoText(read_error)));
    } else {
      entry.identity = IdentityOf(read_st);
      entry.trusted = absl::ToUnixNanos(absl::Now()) - entry.identity.mtime_ns >
                      kTrustAfterNs;
      absl::StatusOr<DeviceConfig> config = ParseDeviceConfig(mac, text);
      if (config.ok()) {
        summaries.push_back(config->summary);
        entry.summary = std::move(config->summary);
      } else {
        problem = config.status();
      }
    }
    if (!problem.ok()) {
      IOT2MQTT_LOG(WARNING)
              .With("file", path)
              .With("error", std::string(problem.message()))
          << "skipping device config " << path << ": " << problem.message();
    }
  }
  closedir(dir);
  // Forget files that are gone.
  absl::erase_if(cache_, [this](const auto& item) {
    return item.second.generation != scan_generation_;
  });
  return summaries;
}

absl::StatusOr<std::vector<DeviceConfigSummary>> FileDeviceConfigStore::List() {
  return Scan();
}

absl::StatusOr<DeviceConfig> FileDeviceConfigStore::Get(
    absl::string_view mac_address) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateMacAddress(mac_address));
  IOT2MQTT_RETURN_IF_ERROR(CheckDirectory());
  std::string path = PathOf(mac_address);
  std::string text;
  if (int error = ReadRegularFile(path, &text); error != 0) {
    if (error == ENOENT) return NotFound(mac_address);
    if (error == EISDIR) {
      return Corrupt(mac_address, path, "is not a regular file");
    }
    return StorageError(error, "read", path);
  }
  absl::StatusOr<DeviceConfig> config =
      ParseDeviceConfig(std::string(mac_address), text);
  if (!config.ok()) {
    return Corrupt(mac_address, path,
                   absl::StrCat("is not a valid JSON object (",
                                config.status().message(), ")"));
  }
  return config;
}

absl::StatusOr<DeviceConfig> FileDeviceConfigStore::Put(
    absl::string_view mac_address, absl::string_view content) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateMacAddress(mac_address));
  if (content.empty()) {
    return common::WithReason(
        absl::InvalidArgumentError("content is required: a JSON object such as "
                                   "{\"deviceName\": \"Kitchen sensor\"}"),
        kContentRequired);
  }
  absl::StatusOr<DeviceConfig> config =
      ParseDeviceConfig(std::string(mac_address), content);
  if (!config.ok()) {
    return common::WithReason(
        absl::InvalidArgumentError(
            absl::StrCat("invalid content: ", config.status().message())),
        kInvalidContent);
  }
  IOT2MQTT_ASSIGN_OR_RETURN(
      std::string pretty, sdk::RewriteJson(content, sdk::JsonFormat::kPretty));
  pretty.push_back('\n');
  IOT2MQTT_RETURN_IF_ERROR(CheckDirectory());

  // Replaced atomically (temp file, fsync, rename): readers see the old
  // content or the new one; an existing file keeps its permissions.
  const std::string target = PathOf(mac_address);
  mode_t mode = 0644;
  struct stat existing;
  if (stat(target.c_str(), &existing) == 0 && S_ISREG(existing.st_mode)) {
    mode = existing.st_mode & 07777;
  }
  IOT2MQTT_RETURN_IF_ERROR(WriteFileAtomically(target, pretty, mode));
  return config;
}

absl::Status FileDeviceConfigStore::Delete(absl::string_view mac_address) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateMacAddress(mac_address));
  IOT2MQTT_RETURN_IF_ERROR(CheckDirectory());
  absl::Status removed = RemoveFile(PathOf(mac_address));
  if (absl::IsNotFound(removed)) return NotFound(mac_address);
  return removed;
}

StoreHealth FileDeviceConfigStore::CheckHealth() {
  StoreHealth health;
  health.directory = directory_;
  absl::StatusOr<std::vector<DeviceConfigSummary>> configs = Scan();
  if (!configs.ok()) {
    health.reason = std::string(configs.status().message());
    return health;
  }
  health.healthy = true;
  health.config_count = static_cast<int>(configs->size());
  return health;
}

}  // namespace iot2mqtt::config
