#include "services/orchestrator/build_context.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "services/common/status.h"

extern char** environ;

namespace iot2mqtt::orchestrator {
namespace {

constexpr char kInvalidEntry[] = "INVALID_ENTRY";
constexpr char kConnectorDirNotFound[] = "CONNECTOR_DIR_NOT_FOUND";
constexpr char kEntryNotFound[] = "ENTRY_NOT_FOUND";
constexpr char kContextUnreadable[] = "CONTEXT_UNREADABLE";
constexpr size_t kMaxLddOutput = 1 << 20;

std::string ErrnoText(int error) {
  return std::generic_category().message(error);
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::optional<std::string> RealPath(const std::string& path) {
  char buffer[PATH_MAX];
  if (realpath(path.c_str(), buffer) == nullptr) return std::nullopt;
  return std::string(buffer);
}

bool IsWithin(const std::string& path, const std::string& root) {
  return path == root || absl::StartsWith(path, root + "/");
}

absl::Status Unreadable(const std::string& path, int error) {
  return common::WithReason(
      absl::FailedPreconditionError(absl::StrCat(
          "cannot read ", path, " for the build context: ", ErrnoText(error))),
      kContextUnreadable, {{"path", path}});
}

void AddParents(const std::string& path,
                std::map<std::string, ContextFile>* files) {
  for (size_t slash = path.find('/'); slash != std::string::npos;
       slash = path.find('/', slash + 1)) {
    std::string parent = path.substr(0, slash);
    if (files->count(parent) == 0) {
      ContextFile dir;
      dir.path = parent;
      dir.type = ContextFile::Type::kDirectory;
      dir.mode = 0755;
      (*files)[parent] = dir;
    }
  }
}

void Add(ContextFile file, std::map<std::string, ContextFile>* files) {
  AddParents(file.path, files);
  std::string path = file.path;
  (*files)[path] = std::move(file);
}

// Adds the tree below `dir` (relative `rel` to the connector directory
// whose real path is `root_real`) under `prefix`.
absl::Status AddTree(const std::string& root_real, const std::string& dir,
                     const std::string& rel, const std::string& prefix,
                     std::map<std::string, ContextFile>* files) {
  std::unique_ptr<DIR, int (*)(DIR*)> handle(opendir(dir.c_str()), &closedir);
  if (!handle) return Unreadable(dir, errno);
  std::vector<std::string> names;
  while (dirent* entry = readdir(handle.get())) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    std::string path = absl::StrCat(dir, "/", name);
    std::string child_rel = rel.empty() ? name : absl::StrCat(rel, "/", name);
    std::string archive_path =
        prefix.empty() ? child_rel : absl::StrCat(prefix, "/", child_rel);
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) return Unreadable(path, errno);
    ContextFile file;
    file.path = archive_path;
    file.mode = st.st_mode & 07777;
    if (S_ISDIR(st.st_mode)) {
      file.type = ContextFile::Type::kDirectory;
      Add(file, files);
      IOT2MQTT_RETURN_IF_ERROR(
          AddTree(root_real, path, child_rel, prefix, files));
    } else if (S_ISREG(st.st_mode)) {
      file.type = ContextFile::Type::kFile;
      file.source = path;
      Add(std::move(file), files);
    } else if (S_ISLNK(st.st_mode)) {
      char target[PATH_MAX];
      ssize_t length = readlink(path.c_str(), target, sizeof(target) - 1);
      if (length < 0) return Unreadable(path, errno);
      std::string link_target(target, static_cast<size_t>(length));
      std::optional<std::string> resolved = RealPath(path);
      if (absl::StartsWith(link_target, "/") || !resolved.has_value() ||
          !IsWithin(*resolved, root_real)) {
        return common::WithReason(
            absl::FailedPreconditionError(absl::StrCat(
                "the connector directory's symlink ", child_rel, " -> ",
                absl::CHexEscape(link_target),
                " must be a relative link to something inside it: the "
                "build context holds only the connector directory's own "
                "files")),
            kContextSymlinkEscape, {{"path", child_rel}});
      }
      file.type = ContextFile::Type::kSymlink;
      file.mode = 0777;
      file.link_target = std::move(link_target);
      Add(std::move(file), files);
    }
    // Sockets, FIFOs and devices are not build material: skipped.
  }
  return absl::OkStatus();
}

absl::Status ValidateEntry(absl::string_view entry) {
  bool ok = !entry.empty() && entry.size() <= 128 && entry[0] != '.' &&
            entry[0] != '-';
  for (char c : entry) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
        c != '_' && c != '-') {
      ok = false;
    }
  }
  if (ok) return absl::OkStatus();
  return common::WithReason(
      absl::InvalidArgumentError(absl::StrCat(
          "the manifest's entry \"", absl::CHexEscape(entry.substr(0, 128)),
          "\" is not a plain file name ([A-Za-z0-9._-], not starting with "
          "'.' or '-')")),
      kInvalidEntry);
}

// Whether the loader of an image without ld.so.cache searches `dir` by
// itself: /lib, /usr/lib, /lib64, /usr/lib64 and the multiarch directories
// below /lib and /usr/lib.
bool IsDefaultLibraryDir(const std::string& dir) {
  if (dir == "/lib" || dir == "/usr/lib" || dir == "/lib64" ||
      dir == "/usr/lib64") {
    return true;
  }
  std::string parent = DirName(dir);
  return (parent == "/lib" || parent == "/usr/lib") &&
         absl::StrContains(dir.substr(parent.size()), "-linux-");
}

struct RunResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together.
};

absl::StatusOr<RunResult> RunCapture(const std::vector<std::string>& argv,
                                     absl::Duration timeout) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", ErrnoText(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attributes, 0);

  std::vector<char*> args;
  for (const std::string& arg : argv)
    args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const char* path_value = getenv("PATH");
  std::string path_env = absl::StrCat(
      "PATH=", path_value != nullptr ? path_value : "/usr/bin:/bin");
  std::string locale_env = "LC_ALL=C";
  char* env[] = {const_cast<char*>(path_env.c_str()),
                 const_cast<char*>(locale_env.c_str()), nullptr};
  pid_t pid = -1;
  int error = posix_spawnp(&pid, argv[0].c_str(), &actions, &attributes,
                           args.data(), env);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  close(fds[1]);
  if (error != 0) {
    close(fds[0]);
    return common::WithReason(
        absl::FailedPreconditionError(
            absl::StrCat("cannot run ", argv[0], ": ", ErrnoText(error))),
        kLddFailed);
  }
  RunResult result;
  absl::Time deadline = absl::Now() + timeout;
  bool timed_out = false;
  while (true) {
    int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p = {fds[0], POLLIN, 0};
    int ready = poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char buffer[8192];
    ssize_t n = read(fds[0], buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (result.output.size() < kMaxLddOutput) {
      result.output.append(buffer, static_cast<size_t>(n));
    }
  }
  close(fds[0]);
  if (timed_out) kill(-pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return common::WithReason(
        absl::FailedPreconditionError(absl::StrCat(
            argv[0], " took longer than ", absl::FormatDuration(timeout))),
        kLddFailed);
  }
  result.exit_code =
      WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

class Fingerprint {
 public:
  Fingerprint() {
    static const bool initialized = sodium_init() >= 0;
    (void)initialized;
    crypto_generichash_init(&state_, nullptr, 0, crypto_generichash_BYTES);
  }
  void Update(absl::string_view data) {
    crypto_generichash_update(
        &state_, reinterpret_cast<const unsigned char*>(data.data()),
        data.size());
  }
  std::string Hex() {
    unsigned char digest[crypto_generichash_BYTES];
    crypto_generichash_final(&state_, digest, sizeof(digest));
    return absl::BytesToHexString(absl::string_view(
        reinterpret_cast<const char*>(digest), sizeof(digest)));
  }

 private:
  crypto_generichash_state state_;
};

la_ssize_t AppendToString(struct archive*, void* client, const void* buffer,
                          size_t length) {
  static_cast<std::string*>(client)->append(static_cast<const char*>(buffer),
                                            length);
  return static_cast<la_ssize_t>(length);
}

absl::Status ArchiveError(struct archive* archive, absl::string_view what) {
  const char* text = archive_error_string(archive);
  return absl::InternalError(absl::StrCat("libarchive: ", what, ": ",
                                          text != nullptr ? text : "failed"));
}

}  // namespace

std::string RunningExecutableDir() {
  char buffer[PATH_MAX];
  ssize_t length = readlink("/proc/self/exe", buffer, sizeof(buffer) - 1);
  if (length <= 0) return "";
  return DirName(std::string(buffer, static_cast<size_t>(length)));
}

absl::StatusOr<std::string> ResolveEntry(
    const std::string& connector_dir, absl::string_view entry,
    const std::vector<std::string>& bin_dirs) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateEntry(entry));
  std::vector<std::string> searched = {connector_dir};
  std::string inside = absl::StrCat(connector_dir, "/", entry);
  if (IsRegularFile(inside)) return inside;
  std::vector<std::string> dirs = bin_dirs;
  if (dirs.empty()) dirs.push_back(RunningExecutableDir());
  for (const std::string& dir : dirs) {
    if (dir.empty()) continue;
    searched.push_back(dir);
    std::string candidate = absl::StrCat(dir, "/", entry);
    if (IsRegularFile(candidate)) return candidate;
  }
  std::string where = absl::StrJoin(searched, ", ");
  return common::WithReason(
      absl::FailedPreconditionError(absl::StrCat(
          "the connector's entry ", entry, " is in none of: ", where)),
      kEntryNotFound, {{"entry", std::string(entry)}, {"searched", where}});
}

absl::StatusOr<std::vector<std::string>> ParseLddOutput(
    absl::string_view output) {
  std::vector<std::string> libraries;
  std::vector<std::string> missing;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    size_t arrow = line.find(" => ");
    absl::string_view path = line;
    if (arrow != absl::string_view::npos) {
      path = absl::StripAsciiWhitespace(line.substr(arrow + 4));
      if (absl::StartsWith(path, "not found")) {
        missing.push_back(std::string(line.substr(0, arrow)));
        continue;
      }
    }
    size_t address = path.rfind(" (0x");
    if (address != absl::string_view::npos) path = path.substr(0, address);
    path = absl::StripAsciiWhitespace(path);
    // The vDSO ("linux-vdso.so.1 (0x...)") has no file.
    if (!absl::StartsWith(path, "/")) continue;
    std::string library(path);
    if (std::find(libraries.begin(), libraries.end(), library) ==
        libraries.end()) {
      libraries.push_back(std::move(library));
    }
  }
  if (!missing.empty()) {
    std::string names = absl::StrJoin(missing, ", ");
    return common::WithReason(absl::FailedPreconditionError(absl::StrCat(
                                  "shared libraries not found: ", names)),
                              kLibraryNotFound, {{"libraries", names}});
  }
  return libraries;
}

absl::StatusOr<std::vector<std::string>> SharedLibraries(
    const std::string& binary, const BuildContextOptions& options) {
  IOT2MQTT_ASSIGN_OR_RETURN(
      RunResult run, RunCapture({options.ldd, binary}, options.ldd_timeout));
  if (absl::StrContains(run.output, "not a dynamic executable") ||
      absl::StrContains(run.output, "statically linked")) {
    return std::vector<std::string>();
  }
  if (run.exit_code != 0) {
    return common::WithReason(
        absl::FailedPreconditionError(absl::StrCat(
            options.ldd, " ", binary, " exited with ", run.exit_code, ": ",
            absl::CHexEscape(absl::StripAsciiWhitespace(
                absl::string_view(run.output).substr(0, 512))))),
        kLddFailed);
  }
  absl::StatusOr<std::vector<std::string>> libraries =
      ParseLddOutput(run.output);
  if (!libraries.ok()) {
    std::map<std::string, std::string> metadata = {{"entry", binary}};
    std::optional<google::rpc::ErrorInfo> info =
        common::GetErrorInfo(libraries.status());
    if (info.has_value()) {
      for (const auto& [key, value] : info->metadata()) metadata[key] = value;
    }
    return common::WithReason(absl::FailedPreconditionError(absl::StrCat(
                                  binary, ": ", libraries.status().message())),
                              kLibraryNotFound, metadata);
  }
  return libraries;
}

std::string GeneratedDockerfile(
    absl::string_view entry,
    const std::vector<std::string>& extra_library_dirs) {
  std::string dockerfile =
      "# Generated by the iot2mqtt orchestrator: the connector's files, its\n"
      "# executable and the shared libraries it needs; nothing else.\n"
      "FROM scratch\n"
      "COPY rootfs/ /\n";
  if (!extra_library_dirs.empty()) {
    absl::StrAppend(&dockerfile, "ENV LD_LIBRARY_PATH=",
                    absl::StrJoin(extra_library_dirs, ":"), "\n");
  }
  absl::StrAppend(&dockerfile, "WORKDIR /app\nENTRYPOINT [",
                  sdk::JsonString(absl::StrCat("/app/", entry)), "]\n");
  return dockerfile;
}

absl::StatusOr<BuildContext> PlanBuildContext(
    const std::string& connector_dir, absl::string_view entry,
    const BuildContextOptions& options) {
  struct stat st;
  std::optional<std::string> root_real = RealPath(connector_dir);
  if (!root_real.has_value() || stat(root_real->c_str(), &st) != 0 ||
      !S_ISDIR(st.st_mode)) {
    return common::WithReason(
        absl::FailedPreconditionError(absl::StrCat(
            "the connector directory ", connector_dir, " does not exist")),
        kConnectorDirNotFound, {{"path", connector_dir}});
  }
  BuildContext context;
  std::map<std::string, ContextFile> files;
  if (IsRegularFile(absl::StrCat(connector_dir, "/Dockerfile"))) {
    IOT2MQTT_RETURN_IF_ERROR(
        AddTree(*root_real, connector_dir, "", "", &files));
  } else {
    context.generated = true;
    IOT2MQTT_ASSIGN_OR_RETURN(
        context.entry_path,
        ResolveEntry(connector_dir, entry, options.bin_dirs));
    IOT2MQTT_RETURN_IF_ERROR(
        AddTree(*root_real, connector_dir, "", "rootfs/app", &files));
    ContextFile app;
    app.path = "rootfs/app";
    app.type = ContextFile::Type::kDirectory;
    app.mode = 0755;
    Add(app, &files);
    ContextFile executable;
    executable.path = absl::StrCat("rootfs/app/", entry);
    executable.source = context.entry_path;
    executable.mode = 0755;
    Add(executable, &files);
    IOT2MQTT_ASSIGN_OR_RETURN(context.libraries,
                              SharedLibraries(context.entry_path, options));
    std::set<std::string> extra_dirs;
    for (const std::string& library : context.libraries) {
      ContextFile file;
      file.path = absl::StrCat("rootfs", library);
      file.source = library;
      file.mode = 0755;
      Add(file, &files);
      std::string dir = DirName(library);
      if (!IsDefaultLibraryDir(dir)) extra_dirs.insert(dir);
    }
    ContextFile tmp;
    tmp.path = "rootfs/tmp";
    tmp.type = ContextFile::Type::kDirectory;
    tmp.mode = 01777;
    Add(tmp, &files);
    ContextFile dockerfile;
    dockerfile.path = "Dockerfile";
    dockerfile.content = GeneratedDockerfile(
        entry, std::vector<std::string>(extra_dirs.begin(), extra_dirs.end()));
    Add(dockerfile, &files);
  }
  for (auto& [path, file] : files) context.files.push_back(std::move(file));
  return context;
}

absl::StatusOr<ContextArchive> WriteContextArchive(const BuildContext& context,
                                                   int64_t max_bytes) {
  ContextArchive out;
  Fingerprint fingerprint;
  std::unique_ptr<struct archive, int (*)(struct archive*)> archive(
      archive_write_new(), &archive_write_free);
  if (!archive ||
      archive_write_set_format_pax_restricted(archive.get()) != ARCHIVE_OK ||
      archive_write_open(archive.get(), &out.tar, nullptr, &AppendToString,
                         nullptr) != ARCHIVE_OK) {
    return ArchiveError(archive.get(), "open");
  }
  int64_t total = 0;
  std::vector<char> buffer(1 << 20);
  for (const ContextFile& file : context.files) {
    std::unique_ptr<archive_entry, void (*)(archive_entry*)> entry(
        archive_entry_new(), &archive_entry_free);
    archive_entry_set_pathname(entry.get(), file.path.c_str());
    archive_entry_set_perm(entry.get(), file.mode);
    archive_entry_set_mtime(entry.get(), 0, 0);
    archive_entry_set_uid(entry.get(), 0);
    archive_entry_set_gid(entry.get(), 0);
    std::string header = file.path;
    header.push_back('\0');
    absl::StrAppend(&header, static_cast<int>(file.type), ":", file.mode);
    header.push_back('\0');

    int fd = -1;
    int64_t size = 0;
    switch (file.type) {
      case ContextFile::Type::kDirectory:
        archive_entry_set_filetype(entry.get(), AE_IFDIR);
        break;
      case ContextFile::Type::kSymlink:
        archive_entry_set_filetype(entry.get(), AE_IFLNK);
        archive_entry_set_symlink(entry.get(), file.link_target.c_str());
        absl::StrAppend(&header, file.link_target);
        header.push_back('\0');
        break;
      case ContextFile::Type::kFile:
        archive_entry_set_filetype(entry.get(), AE_IFREG);
        if (file.source.empty()) {
          size = static_cast<int64_t>(file.content.size());
        } else {
          fd = open(file.source.c_str(), O_RDONLY | O_CLOEXEC);
          struct stat st;
          if (fd < 0) return Unreadable(file.source, errno);
          if (fstat(fd, &st) != 0) {
            int error = errno;
            close(fd);
            return Unreadable(file.source, error);
          }
          if (!S_ISREG(st.st_mode)) {
            close(fd);
            return Unreadable(file.source, EISDIR);
          }
          size = st.st_size;
        }
        archive_entry_set_size(entry.get(), size);
        absl::StrAppend(&header, size);
        header.push_back('\0');
        break;
    }
    total += size;
    if (total > max_bytes) {
      if (fd >= 0) close(fd);
      return common::WithReason(absl::FailedPreconditionError(absl::StrCat(
                                    "the build context exceeds ", max_bytes,
                                    " bytes (at ", file.path, ")")),
                                kContextTooLarge,
                                {{"limit_bytes", absl::StrCat(max_bytes)}});
    }
    fingerprint.Update(header);
    if (archive_write_header(archive.get(), entry.get()) != ARCHIVE_OK) {
      if (fd >= 0) close(fd);
      return ArchiveError(archive.get(), file.path);
    }
    if (file.type != ContextFile::Type::kFile) continue;
    if (fd < 0) {
      fingerprint.Update(file.content);
      if (archive_write_data(archive.get(), file.content.data(),
                             file.content.size()) < 0) {
        return ArchiveError(archive.get(), file.path);
      }
      continue;
    }
    int64_t left = size;
    while (left > 0) {
      ssize_t n = read(fd, buffer.data(),
                       static_cast<size_t>(std::min<int64_t>(
                           left, static_cast<int64_t>(buffer.size()))));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        int error = n < 0 ? errno : EIO;
        close(fd);
        return Unreadable(file.source, error);
      }
      fingerprint.Update(
          absl::string_view(buffer.data(), static_cast<size_t>(n)));
      if (archive_write_data(archive.get(), buffer.data(),
                             static_cast<size_t>(n)) < 0) {
        close(fd);
        return ArchiveError(archive.get(), file.path);
      }
      left -= n;
    }
    close(fd);
  }
  if (archive_write_close(archive.get()) != ARCHIVE_OK) {
    return ArchiveError(archive.get(), "close");
  }
  out.fingerprint = fingerprint.Hex();
  return out;
}

}  // namespace iot2mqtt::orchestrator
