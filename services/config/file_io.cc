#include "services/config/file_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <random>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "iot2mqtt/sdk/log.h"
#include "services/common/status.h"

namespace iot2mqtt::config {
namespace {

constexpr absl::string_view kTempInfix = ".tmp-";

int WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return 0;
}

int SyncDirectory(const std::string& directory) {
  ScopedFd fd(open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return errno;
  if (fsync(fd.get()) != 0) return errno;
  return fd.Close();
}

std::string RandomHex() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return absl::StrFormat("%016x", rng());
}

std::string BaseNameOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

ScopedFd::~ScopedFd() {
  if (fd_ >= 0) close(fd_);
}

int ScopedFd::Close() {
  int fd = fd_;
  fd_ = -1;
  return close(fd) == 0 ? 0 : errno;
}

absl::Status StorageError(int error, absl::string_view action,
                          const std::string& path) {
  std::string message = absl::StrCat("cannot ", action, " ", path, ": ",
                                     std::generic_category().message(error));
  switch (error) {
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return common::WithReason(absl::ResourceExhaustedError(message),
                                kStorageFull, {{"path", path}});
    case EACCES:
    case EPERM:
    case EROFS:
    case ENOENT:
    case ENOTDIR:
      return common::WithReason(absl::UnavailableError(message),
                                kStorageUnavailable, {{"path", path}});
    default:
      return common::WithReason(absl::InternalError(message), kStorageIoError,
                                {{"path", path}});
  }
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  ScopedFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return absl::NotFoundError(path + " does not exist");
    return StorageError(errno, "open", path);
  }
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return StorageError(errno, "stat", path);
  if (!S_ISREG(st.st_mode)) return StorageError(EISDIR, "read", path);
  std::string out;
  out.reserve(static_cast<size_t>(st.st_size));
  char buffer[16384];
  while (true) {
    ssize_t n = read(fd.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return StorageError(errno, "read", path);
    if (n == 0) return out;
    out.append(buffer, static_cast<size_t>(n));
  }
}

bool PathExists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

std::string DirectoryOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

bool IsAtomicWriteTempName(absl::string_view name) {
  if (!absl::ConsumePrefix(&name, ".")) return false;
  size_t infix = name.rfind(kTempInfix);
  if (infix == absl::string_view::npos || infix == 0) return false;
  absl::string_view hex = name.substr(infix + kTempInfix.size());
  return hex.size() == 16 && std::all_of(hex.begin(), hex.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view content, mode_t mode) {
  const std::string directory = DirectoryOf(path);
  const std::string base = BaseNameOf(path);
  std::string temp;
  int fd = -1;
  int open_error = EEXIST;
  for (int attempt = 0; attempt < 5 && open_error == EEXIST; ++attempt) {
    temp = absl::StrCat(directory, "/.", base, kTempInfix, RandomHex());
    fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    open_error = fd < 0 ? errno : 0;
  }
  if (fd < 0) {
    return StorageError(open_error, "create a temporary file in", directory);
  }
  ScopedFd file(fd);
  const char* action = "write";
  int error = 0;
  if (fchmod(file.get(), mode) != 0) {
    error = errno;
    action = "chmod";
  } else if ((error = WriteAll(file.get(), content)) == 0) {
    action = "sync";
    if (fsync(file.get()) != 0) {
      error = errno;
    } else if ((error = file.Close()) == 0) {
      action = "replace";
      if (rename(temp.c_str(), path.c_str()) != 0) error = errno;
    }
  }
  if (error != 0) {
    unlink(temp.c_str());
    return StorageError(error, action, path);
  }
  if (int sync_error = SyncDirectory(directory); sync_error != 0) {
    return StorageError(sync_error, "sync directory", directory);
  }
  return absl::OkStatus();
}

absl::Status MakeDirectories(const std::string& path, mode_t mode) {
  if (path.empty()) return absl::OkStatus();
  struct stat st;
  if (stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return absl::OkStatus();
    return StorageError(ENOTDIR, "create directory", path);
  }
  std::string parent = DirectoryOf(path);
  if (parent != path && parent != "." && parent != "/") {
    if (absl::Status s = MakeDirectories(parent, mode); !s.ok()) return s;
  }
  if (mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return StorageError(errno, "create directory", path);
  }
  chmod(path.c_str(), mode);  // Exactly `mode`, whatever the umask.
  return absl::OkStatus();
}

absl::Status RemoveFile(const std::string& path) {
  if (unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return absl::NotFoundError(path + " does not exist");
    return StorageError(errno, "remove", path);
  }
  std::string directory = DirectoryOf(path);
  if (int error = SyncDirectory(directory); error != 0) {
    return StorageError(error, "sync directory", directory);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ListDirectory(
    const std::string& directory) {
  DIR* dir = opendir(directory.c_str());
  if (dir == nullptr) {
    if (errno == ENOENT) {
      return absl::NotFoundError(directory + " does not exist");
    }
    return StorageError(errno, "list", directory);
  }
  std::vector<std::string> names;
  while (struct dirent* entry = readdir(dir)) {
    absl::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    names.emplace_back(name);
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

int RemoveStaleTempFiles(const std::string& root, absl::Duration min_age) {
  absl::StatusOr<std::vector<std::string>> names = ListDirectory(root);
  if (!names.ok()) return 0;
  int removed = 0;
  const absl::Time cutoff = absl::Now() - min_age;
  for (const std::string& name : *names) {
    std::string path = absl::StrCat(root, "/", name);
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      removed += RemoveStaleTempFiles(path, min_age);
    } else if (S_ISREG(st.st_mode) && IsAtomicWriteTempName(name) &&
               absl::FromTimeT(st.st_mtime) < cutoff) {
      if (unlink(path.c_str()) == 0) {
        ++removed;
      } else {
        IOT2MQTT_LOG(WARNING).With("path", path)
            << "can't remove a temporary file left by a crash";
      }
    }
  }
  return removed;
}

absl::StatusOr<FileLock> FileLock::Acquire(const std::string& lock_path) {
  int fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return StorageError(errno, "open lock file", lock_path);
  while (flock(fd, LOCK_EX) != 0) {
    if (errno == EINTR) continue;
    int error = errno;
    close(fd);
    return StorageError(error, "lock", lock_path);
  }
  return FileLock(fd);
}

FileLock::FileLock(FileLock&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)) {}

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);  // Closing releases the flock.
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

FileLock::~FileLock() {
  if (fd_ >= 0) close(fd_);
}

std::string UtcNowIso8601() {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::Now(),
                          absl::UTCTimeZone());
}

}  // namespace iot2mqtt::config
