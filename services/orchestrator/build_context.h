#ifndef IOT2MQTT_SERVICES_ORCHESTRATOR_BUILD_CONTEXT_H_
#define IOT2MQTT_SERVICES_ORCHESTRATOR_BUILD_CONTEXT_H_

// The Docker build context of a connector image (no gRPC, no Docker):
//
//   - A connector directory with a Dockerfile is sent as it is.
//   - Otherwise the context is generated, for an image FROM scratch:
//
//       Dockerfile                 FROM scratch / COPY rootfs/ / /
//                                  WORKDIR /app / ENTRYPOINT ["/app/<entry>"]
//       rootfs/app/...             the connector directory's files, and the
//                                  entry executable (from the connector
//                                  directory, else the first binary
//                                  directory holding it)
//       rootfs/<lib path>          every shared library `ldd` lists for the
//                                  entry, at the path the loader finds it,
//                                  and the dynamic loader itself
//       rootfs/tmp/                empty, mode 1777
//
//     Libraries found outside the loader's default directories are named in
//     an `ENV LD_LIBRARY_PATH=...` line (an image has no ld.so.cache).
//
// Only directories, regular files and symlinks whose target (followed to
// the end) stays inside the connector directory go in; a symlink pointing
// outside (or nowhere) is refused, other file types are skipped. The tar
// is deterministic (sorted, owner 0:0, mtime 0) and the fingerprint covers
// every entry's path, type, mode and content, so the same files always give
// the same fingerprint and any change gives another.
//
// Errors (FAILED_PRECONDITION unless said otherwise):
//   INVALID_ARGUMENT INVALID_ENTRY   the entry is not a plain file name
//   CONNECTOR_DIR_NOT_FOUND          connector_dir is not a directory
//   ENTRY_NOT_FOUND {entry, searched}
//   LIBRARY_NOT_FOUND {entry, libraries}   ldd could not resolve some
//   LDD_FAILED                       ldd missing, failing or too slow
//   CONTEXT_SYMLINK_ESCAPE {path}
//   CONTEXT_TOO_LARGE {limit_bytes}
//   CONTEXT_UNREADABLE {path}        a file could not be read

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace iot2mqtt::orchestrator {

inline constexpr char kLibraryNotFound[] = "LIBRARY_NOT_FOUND";
inline constexpr char kLddFailed[] = "LDD_FAILED";
inline constexpr char kContextSymlinkEscape[] = "CONTEXT_SYMLINK_ESCAPE";
inline constexpr char kContextTooLarge[] = "CONTEXT_TOO_LARGE";

struct ContextFile {
  enum class Type { kDirectory, kFile, kSymlink };
  std::string path;  // In the archive: "Dockerfile", "rootfs/app/x".
  Type type = Type::kFile;
  uint32_t mode = 0644;     // Permission bits.
  std::string source;       // kFile: the file to read, or "" to use...
  std::string content;      // ...this content (the generated Dockerfile).
  std::string link_target;  // kSymlink.
};

struct BuildContext {
  bool generated = false;  // A FROM scratch context made here.
  std::string entry_path;  // The resolved entry ("" unless generated).
  std::vector<std::string> libraries;  // As ldd named them (generated).
  std::vector<ContextFile> files;      // Sorted by path, parents first.
};

struct BuildContextOptions {
  // Where the entry is looked up after the connector directory. Default
  // (empty): the directory of the running executable.
  std::vector<std::string> bin_dirs;
  std::string ldd = "ldd";  // Looked up in PATH unless absolute.
  absl::Duration ldd_timeout = absl::Seconds(20);
  int64_t max_bytes = int64_t{512} << 20;
};

// The directory of /proc/self/exe ("" when unknown).
std::string RunningExecutableDir();

// `entry` in `connector_dir` when a regular file is there, else in the
// first of `bin_dirs` (default: RunningExecutableDir()) that has one.
absl::StatusOr<std::string> ResolveEntry(
    const std::string& connector_dir, absl::string_view entry,
    const std::vector<std::string>& bin_dirs);

// The libraries in `ldd` output, in order: the path of every "name => path
// (addr)" and "path (addr)" line (the loader included; the vDSO skipped).
// LIBRARY_NOT_FOUND naming every "name => not found".
absl::StatusOr<std::vector<std::string>> ParseLddOutput(
    absl::string_view output);

// Runs `ldd binary` (LC_ALL=C) and parses it; a static executable needs
// nothing.
absl::StatusOr<std::vector<std::string>> SharedLibraries(
    const std::string& binary, const BuildContextOptions& options);

// The generated Dockerfile for `entry`; `extra_library_dirs` (outside the
// loader's defaults) go into LD_LIBRARY_PATH.
std::string GeneratedDockerfile(
    absl::string_view entry,
    const std::vector<std::string>& extra_library_dirs);

// Everything the context of `connector_dir` holds (nothing is read yet but
// directory listings and, for a generated context, ldd's answer).
absl::StatusOr<BuildContext> PlanBuildContext(
    const std::string& connector_dir, absl::string_view entry,
    const BuildContextOptions& options);

struct ContextArchive {
  std::string tar;          // An uncompressed POSIX tar.
  std::string fingerprint;  // 64 hex digits (BLAKE2b-256).
};

// Reads every file of `context` into a tar (CONTEXT_TOO_LARGE past
// `max_bytes` of file content).
absl::StatusOr<ContextArchive> WriteContextArchive(const BuildContext& context,
                                                   int64_t max_bytes);

}  // namespace iot2mqtt::orchestrator

#endif  // IOT2MQTT_SERVICES_ORCHESTRATOR_BUILD_CONTEXT_H_
