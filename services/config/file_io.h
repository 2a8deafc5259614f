#ifndef IOT2MQTT_SERVICES_CONFIG_FILE_IO_H_
#define IOT2MQTT_SERVICES_CONFIG_FILE_IO_H_

// File primitives every store of the config service uses (no gRPC):
//
//   - WriteFileAtomically: temp file in the same directory + fsync + rename +
//     directory fsync, so a crash at any instant leaves the old or the new
//     file, never a mix or an empty file.
//   - ReadWholeFile: a regular file's bytes.
//   - FileLock: an exclusive flock() on a lock file. flock locks belong to
//     the open file description, so they exclude other threads of this
//     process as well as other processes.
//   - StorageError: an errno mapped to a status the caller can act on
//     (STORAGE_FULL, STORAGE_UNAVAILABLE, STORAGE_IO_ERROR).

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace iot2mqtt::config {

// Error reasons shared by every store.
inline constexpr char kStorageUnavailable[] = "STORAGE_UNAVAILABLE";
inline constexpr char kStorageFull[] = "STORAGE_FULL";
inline constexpr char kStorageIoError[] = "STORAGE_IO_ERROR";

// "cannot <action> <path>: <strerror>" with the reason for `error`:
// ENOSPC/EDQUOT/EFBIG → RESOURCE_EXHAUSTED STORAGE_FULL; EACCES/EPERM/EROFS/
// ENOENT/ENOTDIR → UNAVAILABLE STORAGE_UNAVAILABLE; else INTERNAL
// STORAGE_IO_ERROR. Metadata {"path": path}.
absl::Status StorageError(int error, absl::string_view action,
                          const std::string& path);

// The bytes of the regular file at `path`. NOT_FOUND (plain, no reason)
// when it does not exist; StorageError otherwise.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

// Whether `path` exists (any type, symlinks not followed).
bool PathExists(const std::string& path);

// Replaces `path` atomically with `content`. The new file gets `mode`
// (exactly, umask ignored). The directory must exist.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view content, mode_t mode);

// mkdir -p with `mode` for the directories it creates.
absl::Status MakeDirectories(const std::string& path, mode_t mode = 0755);

// Removes `path` (a file) and fsyncs its directory. NOT_FOUND (plain) when
// it did not exist.
absl::Status RemoveFile(const std::string& path);

// Names of the entries of `directory` (no "." or ".."), sorted. NOT_FOUND
// (plain) when the directory does not exist.
absl::StatusOr<std::vector<std::string>> ListDirectory(
    const std::string& directory);

// "a/b/c.json" → "a/b"; "c.json" → ".".
std::string DirectoryOf(const std::string& path);

// Whether `name` is a temporary file WriteFileAtomically leaves behind on a
// crash (".<name>.tmp-<16 hex>"); stores skip and may delete them.
bool IsAtomicWriteTempName(absl::string_view name);

// Removes, below `root` (recursively, symlinks not followed), the temporary
// files crashed atomic writes left behind that are older than `min_age`
// (younger ones may belong to a write in progress in another process).
// Returns how many were removed; problems are logged, never fatal.
int RemoveStaleTempFiles(const std::string& root, absl::Duration min_age);

// Closes a file descriptor on scope exit (unless Close()d first).
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd();
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }
  // Closes now; returns 0 or the errno of close().
  int Close();

 private:
  int fd_;
};

// An exclusive advisory lock, held until destruction.
class FileLock {
 public:
  // Blocks until the lock on `lock_path` (created 0600 if missing) is held.
  static absl::StatusOr<FileLock> Acquire(const std::string& lock_path);
  FileLock(FileLock&& other) noexcept;
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// Current UTC time as ISO-8601 with microseconds and "Z",
// e.g. "2026-11-22T16:41:07.123456Z".
std::string UtcNowIso8601();

}  // namespace iot2mqtt::config

#endif  // IOT2MQTT_SERVICES_CONFIG_FILE_IO_H_
