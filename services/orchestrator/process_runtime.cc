#include "services/orchestrator/process_runtime.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "rapidjson/document.h"
#include "services/common/status.h"
#include "services/config/file_io.h"

namespace iot2mqtt::orchestrator {
namespace {

constexpr char kRuntimeNotFound[] = "RUNTIME_NOT_FOUND";
constexpr char kRuntimeExists[] = "RUNTIME_EXISTS";
constexpr char kRuntimeUnavailable[] = "RUNTIME_UNAVAILABLE";
constexpr char kEntryNotFound[] = "ENTRY_NOT_FOUND";
constexpr char kConnectorDirNotFound[] = "CONNECTOR_DIR_NOT_FOUND";
constexpr char kSpawnFailed[] = "SPAWN_FAILED";
constexpr char kInvalidEnv[] = "INVALID_ENV";
constexpr char kSecretInEnv[] = "SECRET_IN_ENV";
constexpr char kRegistryIoError[] = "REGISTRY_IO_ERROR";

constexpr char kRecordSuffix[] = ".json";
constexpr char kDefaultPath[] = "/usr/bin:/bin";
// After the SIGKILL, how long Stop waits for the group to disappear.
constexpr absl::Duration kKillWait = absl::Seconds(5);
constexpr absl::Duration kStopPoll = absl::Milliseconds(20);
constexpr absl::Duration kMaxFollowPoll = absl::Milliseconds(250);

std::string IsoTime(absl::Time t) {
  if (t == absl::InfinitePast()) return "";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

// Registry times have microseconds: a time read back equals the one given.
absl::Time Micros(absl::Time t) {
  return absl::FromUnixMicros(absl::ToUnixMicros(t));
}

absl::Time ParseTimeOrPast(absl::string_view text) {
  absl::Time t;
  std::string error;
  if (text.empty() ||
      !absl::ParseTime(absl::RFC3339_full, std::string(text), &t, &error)) {
    return absl::InfinitePast();
  }
  return t;
}

absl::Status NotFound(absl::string_view id) {
  if (IsRuntimeName(id)) {
    return common::WithReason(
        absl::NotFoundError(absl::StrCat("no process runtime named ", id)),
        kRuntimeNotFound, {{"id", std::string(id)}});
  }
  return common::WithReason(
      absl::NotFoundError("no process runtime with that id"), kRuntimeNotFound);
}

absl::Status EntryNotFound(const std::string& entry, std::string message) {
  return common::WithReason(absl::FailedPreconditionError(std::move(message)),
                            kEntryNotFound, {{"entry", entry}});
}

absl::Status ValidateEnv(const std::map<std::string, std::string>& env) {
  for (const auto& [key, value] : env) {
    bool valid = !key.empty() && key.size() <= 128 &&
                 !absl::ascii_isdigit(static_cast<unsigned char>(key[0]));
    for (char c : key) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_') {
        valid = false;
      }
    }
    if (!valid) {
      return common::WithReason(
          absl::InvalidArgumentError(
              "environment variable names must match [A-Za-z_][A-Za-z0-9_]*"),
          kInvalidEnv);
    }
    if (value.find('\0') != std::string::npos) {
      return common::WithReason(
          absl::InvalidArgumentError(absl::StrCat(
              "environment variable ", key, " has a NUL byte in its value")),
          kInvalidEnv, {{"name", key}});
    }
    std::string upper = absl::AsciiStrToUpper(key);
    for (const char* suffix : {"PASSWORD", "SECRET", "TOKEN"}) {
      if (absl::EndsWith(upper, suffix)) {
        return common::WithReason(
            absl::InvalidArgumentError(absl::StrCat(
                "environment variable ", key,
                " looks like a secret; secrets travel in the secrets file")),
            kSecretInEnv, {{"name", key}});
      }
    }
  }
  return absl::OkStatus();
}

// ---- /proc
// -------------------------------------------------------------------

std::optional<std::string> ReadProcFile(int64_t pid, const char* file) {
  std::string path = absl::StrCat("/proc/", pid, "/", file);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string data;
  char buffer[4096];
  while (true) {
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  if (data.empty()) return std::nullopt;
  return data;
}

std::optional<ProcStat> ReadProcStat(int64_t pid) {
  std::optional<std::string> text = ReadProcFile(pid, "stat");
  if (!text.has_value()) return std::nullopt;
  absl::StatusOr<ProcStat> stat = ParseProcStat(*text);
  if (!stat.ok()) return std::nullopt;
  return *stat;
}

bool IsZombie(char state) { return state == 'Z' || state == 'X'; }

// Every live (not zombie) process whose process group is `pgid`.
std::vector<ProcStat> GroupMembers(int64_t pgid) {
  std::vector<ProcStat> members;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return members;
  while (struct dirent* entry = readdir(dir)) {
    int64_t pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid) || pid <= 0) continue;
    std::optional<ProcStat> stat = ReadProcStat(pid);
    if (!stat.has_value() || stat->pgrp != pgid || IsZombie(stat->state)) {
      continue;
    }
    members.push_back(*stat);
  }
  closedir(dir);
  return members;
}

bool GroupAlive(int64_t pgid) {
  if (pgid <= 0) return false;
  if (kill(static_cast<pid_t>(-pgid), 0) != 0 && errno == ESRCH) return false;
  return !GroupMembers(pgid).empty();
}

struct ProcessCheck {
  bool alive = false;
  std::optional<int> exit_code;
};

// Whether the process `pid` started at `start_ticks` still runs. When this
// process is its parent it is reaped here (by pid) and its exit code
// returned.
ProcessCheck CheckProcess(int64_t pid, int64_t start_ticks) {
  ProcessCheck check;
  if (pid <= 0) return check;
  std::optional<ProcStat> stat = ReadProcStat(pid);
  if (!stat.has_value()) return check;
  if (start_ticks == 0 ||
      static_cast<int64_t>(stat->start_ticks) != start_ticks) {
    return check;  // Not (provably) ours: a reused pid.
  }
  if (stat->ppid == getpid()) {
    int status = 0;
    pid_t reaped = waitpid(static_cast<pid_t>(pid), &status, WNOHANG);
    if (reaped == 0) {
      check.alive = true;
      return check;
    }
    if (reaped == pid) {
      if (WIFEXITED(status)) {
        check.exit_code = WEXITSTATUS(status);
      } else if (WIFSIGNALED(status)) {
        check.exit_code = 128 + WTERMSIG(status);
      }
    }
    return check;
  }
  check.alive = !IsZombie(stat->state);
  return check;
}

double ClockTicksPerSecond() {
  long hz = sysconf(_SC_CLK_TCK);
  return hz > 0 ? static_cast<double>(hz) : 100.0;
}

std::optional<double> UptimeSeconds() {
  int fd = open("/proc/uptime", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buffer[128];
  ssize_t n = read(fd, buffer, sizeof buffer - 1);
  close(fd);
  if (n <= 0) return std::nullopt;
  buffer[n] = '\0';
  double seconds = 0;
  std::vector<absl::string_view> parts =
      absl::StrSplit(absl::string_view(buffer, static_cast<size_t>(n)), ' ');
  if (parts.empty() || !absl::SimpleAtod(parts[0], &seconds)) {
    return std::nullopt;
  }
  return seconds;
}

// ---- Files
// -------------------------------------------------------------------

struct FileRead {
  std::string data;
  int64_t size = 0;  // Size of the file when read.
  ino_t inode = 0;
};

// Bytes [offset, end) of `path`; nullopt when it does not exist.
std::optional<FileRead> ReadFrom(const std::string& path, int64_t offset) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  config::ScopedFd closer(fd);
  struct stat st;
  if (fstat(fd, &st) != 0) return std::nullopt;
  FileRead result;
  result.size = st.st_size;
  result.inode = st.st_ino;
  if (offset >= st.st_size) return result;
  result.data.resize(static_cast<size_t>(st.st_size - offset));
  size_t done = 0;
  while (done < result.data.size()) {
    ssize_t n = pread(fd, result.data.data() + done, result.data.size() - done,
                      static_cast<off_t>(offset) + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  result.data.resize(done);
  return result;
}

absl::Status CopyFile(const std::string& from, const std::string& to) {
  int in = open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return config::StorageError(errno, "open", from);
  config::ScopedFd in_closer(in);
  int out = open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0) return config::StorageError(errno, "create", to);
  config::ScopedFd out_closer(out);
  char buffer[64 * 1024];
  while (true) {
    ssize_t n = read(in, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return config::StorageError(errno, "read", from);
    if (n == 0) break;
    ssize_t written = 0;
    while (written < n) {
      ssize_t w =
          write(out, buffer + written, static_cast<size_t>(n - written));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return config::StorageError(errno, "write", to);
      written += w;
    }
  }
  if (out_closer.Close() != 0) return config::StorageError(errno, "close", to);
  return absl::OkStatus();
}

// ---- Log lines
// ---------------------------------------------------------------

struct ParsedLine {
  LogLine line;
  absl::Time effective = absl::InfinitePast();  // For `since`.
};

// Splits `data` into lines (a last line without newline only when
// `include_partial`), inheriting times for `since`.
std::vector<ParsedLine> ParseLines(absl::string_view data,
                                   bool include_partial) {
  std::vector<ParsedLine> lines;
  absl::Time last = absl::InfinitePast();
  size_t start = 0;
  while (start < data.size()) {
    size_t end = data.find('\n', start);
    if (end == absl::string_view::npos) {
      if (!include_partial) break;
      end = data.size();
    }
    ParsedLine parsed;
    parsed.line.stream = "stdout";
    parsed.line.text = std::string(data.substr(start, end - start));
    if (!parsed.line.text.empty() && parsed.line.text.back() == '\r') {
      parsed.line.text.pop_back();
    }
    parsed.line.time = ParseLogLineTime(parsed.line.text);
    if (parsed.line.time != absl::InfinitePast()) last = parsed.line.time;
    parsed.effective = last;
    lines.push_back(std::move(parsed));
    start = end + 1;
  }
  return lines;
}

// Length of the complete lines at the start of `data`.
size_t CompleteLength(absl::string_view data) {
  size_t last = data.rfind('\n');
  return last == absl::string_view::npos ? 0 : last + 1;
}

bool PassesSince(const ParsedLine& line, const LogOptions& options) {
  return !options.since.has_value() || line.effective == absl::InfinitePast() ||
         line.effective >= *options.since;
}

// ---- JSON
// --------------------------------------------------------------------

std::string MapJson(const std::map<std::string, std::string>& map) {
  sdk::JsonObjectBuilder builder;
  for (const auto& [key, value] : map) builder.Set(key, value);
  return builder.Build();
}

std::string StringMember(const rapidjson::Value& object, const char* key) {
  auto it = object.FindMember(key);
  if (it == object.MemberEnd() || !it->value.IsString()) return "";
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

int64_t IntMember(const rapidjson::Value& object, const char* key) {
  auto it = object.FindMember(key);
  if (it == object.MemberEnd() || !it->value.IsInt64()) return 0;
  return it->value.GetInt64();
}

std::map<std::string, std::string> MapMember(const rapidjson::Value& object,
                                             const char* key) {
  std::map<std::string, std::string> map;
  auto it = object.FindMember(key);
  if (it == object.MemberEnd() || !it->value.IsObject()) return map;
  for (const auto& member : it->value.GetObject()) {
    if (!member.value.IsString()) continue;
    map[member.name.GetString()] =
        std::string(member.value.GetString(), member.value.GetStringLength());
  }
  return map;
}

std::optional<RuntimeState> ParseState(absl::string_view text) {
  for (RuntimeState state : {RuntimeState::kCreated, RuntimeState::kRunning,
                             RuntimeState::kRestarting, RuntimeState::kPaused,
                             RuntimeState::kExited, RuntimeState::kDead}) {
    if (RuntimeStateName(state) == text) return state;
  }
  return std::nullopt;
}

std::string ExecutableDirectory() {
  char buffer[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buffer, sizeof buffer - 1);
  if (n <= 0) return "";
  return config::DirectoryOf(std::string(buffer, static_cast<size_t>(n)));
}

}  // namespace

// ---- Helpers
// -----------------------------------------------------------------

bool IsValidNameComponent(absl::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              (i > 0 && (c == '_' || c == '-'));
    if (!ok) return false;
  }
  return true;
}

absl::Status ValidateSpecNames(absl::string_view connector,
                               absl::string_view instance_id) {
  if (!IsValidNameComponent(connector)) {
    return common::WithReason(
        absl::InvalidArgumentError(
            "connector name must match ^[a-z0-9][a-z0-9_-]{0,62}$"),
        "INVALID_CONNECTOR_NAME");
  }
  if (!IsValidNameComponent(instance_id)) {
    return common::WithReason(
        absl::InvalidArgumentError(
            "instance id must match ^[a-z0-9][a-z0-9_-]{0,62}$"),
        "INVALID_INSTANCE_ID");
  }
  return absl::OkStatus();
}

bool IsRuntimeName(absl::string_view id) {
  if (!absl::ConsumePrefix(&id, "iot2mqtt_")) return false;
  // Some split <connector>_<instance> must make two valid components.
  for (size_t i = 1; i + 1 < id.size(); ++i) {
    if (id[i] == '_' && IsValidNameComponent(id.substr(0, i)) &&
        IsValidNameComponent(id.substr(i + 1))) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<std::string> ResolveProcessEntry(
    const std::string& connector_dir, const std::string& entry,
    const std::vector<std::string>& bin_dirs) {
  if (entry.empty()) return EntryNotFound(entry, "the connector has no entry");
  if (entry[0] == '/') {
    return EntryNotFound(
        entry, absl::StrCat("entry \"", entry,
                            "\" must be relative to the connector directory"));
  }
  for (absl::string_view part : absl::StrSplit(entry, '/')) {
    if (part == "..") {
      return EntryNotFound(
          entry, absl::StrCat("entry \"", entry, "\" must not contain \"..\""));
    }
  }
  char resolved[PATH_MAX];
  if (realpath(connector_dir.c_str(), resolved) == nullptr) {
    int error = errno;
    return common::WithReason(
        absl::FailedPreconditionError(absl::StrCat(
            "connector directory ", connector_dir, ": ", std::strerror(error))),
        kConnectorDirNotFound, {{"path", connector_dir}});
  }
  const std::string root = resolved;
  struct stat st;
  const std::string candidate = absl::StrCat(root, "/", entry);
  if (lstat(candidate.c_str(), &st) == 0) {
    if (realpath(candidate.c_str(), resolved) == nullptr) {
      return EntryNotFound(entry, absl::StrCat("entry \"", entry, "\" in ",
                                               root, " is a broken link"));
    }
    std::string real = resolved;
    if (!absl::StartsWith(real, absl::StrCat(root, "/"))) {
      return EntryNotFound(
          entry,
          absl::StrCat("entry \"", entry,
                       "\" resolves outside the connector directory ", root));
    }
    if (stat(real.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
        access(real.c_str(), X_OK) != 0) {
      return EntryNotFound(
          entry, absl::StrCat("entry ", real, " is not an executable file"));
    }
    return real;
  }
  if (entry.find('/') == std::string::npos) {
    for (const std::string& dir : bin_dirs) {
      std::string path = absl::StrCat(dir, "/", entry);
      if (stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
          access(path.c_str(), X_OK) == 0 &&
          realpath(path.c_str(), resolved) != nullptr) {
        return std::string(resolved);
      }
    }
  }
  return EntryNotFound(
      entry, absl::StrCat(
                 "entry \"", entry, "\" not found in ", root,
                 bin_dirs.empty()
                     ? ""
                     : absl::StrCat(" nor in ", absl::StrJoin(bin_dirs, ", ")),
                 " (or not executable)"));
}

absl::StatusOr<ProcStat> ParseProcStat(absl::string_view text) {
  size_t open = text.find('(');
  size_t close = text.rfind(')');
  if (open == absl::string_view::npos || close == absl::string_view::npos ||
      close < open || open == 0) {
    return absl::InvalidArgumentError("malformed /proc stat: no (comm)");
  }
  ProcStat stat;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text.substr(0, open)),
                        &stat.pid)) {
    return absl::InvalidArgumentError("malformed /proc stat: pid");
  }
  stat.comm = std::string(text.substr(open + 1, close - open - 1));
  std::vector<absl::string_view> fields = absl::StrSplit(
      text.substr(close + 1), absl::ByAnyChar(" \n"), absl::SkipEmpty());
  // fields[0] is field 3 (state); field N is fields[N - 3].
  if (fields.size() < 20 || fields[0].size() != 1) {
    return absl::InvalidArgumentError("malformed /proc stat: too few fields");
  }
  stat.state = fields[0][0];
  if (!absl::SimpleAtoi(fields[1], &stat.ppid) ||
      !absl::SimpleAtoi(fields[2], &stat.pgrp) ||
      !absl::SimpleAtoi(fields[11], &stat.utime) ||
      !absl::SimpleAtoi(fields[12], &stat.stime) ||
      !absl::SimpleAtoi(fields[19], &stat.start_ticks)) {
    return absl::InvalidArgumentError("malformed /proc stat: numbers");
  }
  return stat;
}

std::optional<int64_t> ParseVmRssBytes(absl::string_view status_text) {
  for (absl::string_view line : absl::StrSplit(status_text, '\n')) {
    if (!absl::ConsumePrefix(&line, "VmRSS:")) continue;
    line = absl::StripAsciiWhitespace(line);
    int64_t factor = 1;
    if (absl::ConsumeSuffix(&line, "kB")) factor = 1024;
    int64_t value = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &value)) {
      return std::nullopt;
    }
    return value * factor;
  }
  return std::nullopt;
}

absl::Time ParseLogLineTime(absl::string_view line) {
  absl::string_view rest = line;
  absl::string_view candidate;
  if (absl::ConsumePrefix(&rest, "{")) {
    rest = absl::StripLeadingAsciiWhitespace(rest);
    if (!absl::ConsumePrefix(&rest, "\"timestamp\"")) {
      return absl::InfinitePast();
    }
    rest = absl::StripLeadingAsciiWhitespace(rest);
    if (!absl::ConsumePrefix(&rest, ":")) return absl::InfinitePast();
    rest = absl::StripLeadingAsciiWhitespace(rest);
    if (!absl::ConsumePrefix(&rest, "\"")) return absl::InfinitePast();
    size_t end = rest.find('"');
    if (end == absl::string_view::npos) return absl::InfinitePast();
    candidate = rest.substr(0, end);
  } else {
    if (rest.empty() ||
        !absl::ascii_isdigit(static_cast<unsigned char>(rest[0]))) {
      return absl::InfinitePast();
    }
    candidate = rest.substr(0, rest.find(' '));
  }
  if (candidate.size() < 20 || candidate.size() > 40) {
    return absl::InfinitePast();
  }
  return ParseTimeOrPast(candidate);
}

absl::StatusOr<bool> RotateLogFile(const std::string& path, int64_t max_bytes,
                                   int keep) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
    return config::StorageError(errno, "stat", path);
  }
  if (st.st_size <= max_bytes) return false;
  if (keep > 0) {
    std::string oldest = absl::StrCat(path, ".", keep);
    if (unlink(oldest.c_str()) != 0 && errno != ENOENT) {
      return config::StorageError(errno, "remove", oldest);
    }
    for (int k = keep - 1; k >= 1; --k) {
      std::string from = absl::StrCat(path, ".", k);
      std::string to = absl::StrCat(path, ".", k + 1);
      if (rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) {
        return config::StorageError(errno, "rename", from);
      }
    }
    IOT2MQTT_RETURN_IF_ERROR(CopyFile(path, absl::StrCat(path, ".1")));
  }
  if (truncate(path.c_str(), 0) != 0) {
    return config::StorageError(errno, "truncate", path);
  }
  return true;
}

// ---- The registry
// ------------------------------------------------------------

struct ProcessRuntime::Record {
  std::string name;
  RuntimeSpec spec;
  std::string entry_path;
  RuntimeState state = RuntimeState::kCreated;
  int64_t pid = 0;
  int64_t start_ticks = 0;
  absl::Time created = absl::InfinitePast();
  absl::Time started_at = absl::InfinitePast();
  absl::Time finished_at = absl::InfinitePast();
  std::optional<int> exit_code;

  std::map<std::string, std::string> Labels() const {
    return {{kLabelType, kLabelTypeConnector},
            {kLabelConnector, spec.connector},
            {kLabelInstance, spec.instance_id},
            {kLabelConfigHash, spec.config_hash}};
  }

  std::string ToJson() const {
    sdk::JsonObjectBuilder s;
    s.Set("connector_dir", spec.connector_dir)
        .Set("instance_file", spec.instance_file)
        .Set("secrets_file", spec.secrets_file)
        .Set("env_file", spec.env_file)
        .Set("shared_dir", spec.shared_dir)
        .Set("entry", spec.entry)
        .SetRaw("env", MapJson(spec.env));
    if (spec.cpus.has_value()) {
      s.Set("cpus", *spec.cpus);
    } else {
      s.SetNull("cpus");
    }
    if (spec.memory_bytes.has_value()) {
      s.Set("memory_bytes", *spec.memory_bytes);
    } else {
      s.SetNull("memory_bytes");
    }
    sdk::JsonObjectBuilder r;
    r.Set("name", name)
        .Set("connector", spec.connector)
        .Set("instance_id", spec.instance_id)
        .Set("config_hash", spec.config_hash)
        .SetRaw("labels", MapJson(Labels()))
        .Set("state", RuntimeStateName(state))
        .Set("pid", pid)
        .Set("start_ticks", start_ticks)
        .Set("entry_path", entry_path)
        .Set("created", IsoTime(created))
        .Set("started_at", IsoTime(started_at))
        .Set("finished_at", IsoTime(finished_at));
    if (exit_code.has_value()) {
      r.Set("exit_code", *exit_code);
    } else {
      r.SetNull("exit_code");
    }
    r.SetRaw("spec", s.Build());
    absl::StatusOr<std::string> pretty =
        sdk::RewriteJson(r.Build(), sdk::JsonFormat::kPretty);
    return pretty.ok() ? *pretty + "\n" : r.Build();
  }

  // Only records that are ours: consistent names and our type label.
  static std::optional<Record> FromJson(absl::string_view file_name,
                                        absl::string_view text) {
    rapidjson::Document doc;
    doc.Parse(text.data(), text.size());
    if (doc.HasParseError() || !doc.IsObject()) return std::nullopt;
    Record record;
    record.name = StringMember(doc, "name");
    record.spec.connector = StringMember(doc, "connector");
    record.spec.instance_id = StringMember(doc, "instance_id");
    record.spec.config_hash = StringMember(doc, "config_hash");
    std::map<std::string, std::string> labels = MapMember(doc, "labels");
    if (record.name != file_name ||
        !ValidateSpecNames(record.spec.connector, record.spec.instance_id)
             .ok() ||
        RuntimeName(record.spec.connector, record.spec.instance_id) !=
            record.name ||
        labels[kLabelType] != kLabelTypeConnector) {
      return std::nullopt;
    }
    std::optional<RuntimeState> state = ParseState(StringMember(doc, "state"));
    if (!state.has_value()) return std::nullopt;
    record.state = *state;
    record.pid = IntMember(doc, "pid");
    record.start_ticks = IntMember(doc, "start_ticks");
    record.entry_path = StringMember(doc, "entry_path");
    record.created = ParseTimeOrPast(StringMember(doc, "created"));
    record.started_at = ParseTimeOrPast(StringMember(doc, "started_at"));
    record.finished_at = ParseTimeOrPast(StringMember(doc, "finished_at"));
    auto code = doc.FindMember("exit_code");
    if (code != doc.MemberEnd() && code->value.IsInt()) {
      record.exit_code = code->value.GetInt();
    }
    auto spec = doc.FindMember("spec");
    if (spec != doc.MemberEnd() && spec->value.IsObject()) {
      const rapidjson::Value& s = spec->value;
      record.spec.connector_dir = StringMember(s, "connector_dir");
      record.spec.instance_file = StringMember(s, "instance_file");
      record.spec.secrets_file = StringMember(s, "secrets_file");
      record.spec.env_file = StringMember(s, "env_file");
      record.spec.shared_dir = StringMember(s, "shared_dir");
      record.spec.entry = StringMember(s, "entry");
      record.spec.env = MapMember(s, "env");
      auto cpus = s.FindMember("cpus");
      if (cpus != s.MemberEnd() && cpus->value.IsNumber()) {
        record.spec.cpus = cpus->value.GetDouble();
      }
      auto memory = s.FindMember("memory_bytes");
      if (memory != s.MemberEnd() && memory->value.IsInt64()) {
        record.spec.memory_bytes = memory->value.GetInt64();
      }
    }
    return record;
  }
};

namespace {

// The registry lock (other ProcessRuntime objects and processes over the
// same state_dir). Taken after mu_, never while waiting for a process.
absl::StatusOr<config::FileLock> LockRegistry(const std::string& state_dir) {
  return config::FileLock::Acquire(state_dir + "/.lock");
}

}  // namespace

// ---- ProcessRuntime
// ----------------------------------------------------------

absl::StatusOr<std::unique_ptr<ProcessRuntime>> ProcessRuntime::Open(
    ProcessRuntimeOptions options) {
  if (options.state_dir.empty()) {
    return absl::InvalidArgumentError("state_dir is required");
  }
  if (options.bin_dirs.empty()) {
    std::string dir = ExecutableDirectory();
    if (!dir.empty()) options.bin_dirs.push_back(dir);
  }
  if (!options.clock) options.clock = [] { return absl::Now(); };
  if (options.poll_interval <= absl::ZeroDuration()) {
    options.poll_interval = absl::Milliseconds(200);
  }
  options.log_files = std::max(0, options.log_files);
  for (const std::string& dir :
       {options.state_dir, options.state_dir + "/logs"}) {
    absl::Status made = config::MakeDirectories(dir, 0700);
    if (!made.ok()) {
      return common::WithReason(absl::UnavailableError(made.message()),
                                kRuntimeUnavailable, {{"path", dir}});
    }
  }
  // Temporary files of registry writes a crash interrupted.
  config::RemoveStaleTempFiles(options.state_dir, absl::Minutes(1));
  return std::unique_ptr<ProcessRuntime>(
      new ProcessRuntime(std::move(options)));
}

ProcessRuntime::ProcessRuntime(ProcessRuntimeOptions options)
    : options_(std::move(options)) {
  monitor_ = std::thread([this] { MonitorLoop(); });
}

ProcessRuntime::~ProcessRuntime() {
  stopping_.Notify();
  if (monitor_.joinable()) monitor_.join();
}

std::string ProcessRuntime::LogPath(absl::string_view name) const {
  return absl::StrCat(options_.state_dir, "/logs/", name, ".log");
}

std::string ProcessRuntime::RecordPath(absl::string_view name) const {
  return absl::StrCat(options_.state_dir, "/", name, kRecordSuffix);
}

absl::StatusOr<ProcessRuntime::Record> ProcessRuntime::ReadRecord(
    absl::string_view name) const {
  if (!IsRuntimeName(name)) return NotFound(name);
  absl::StatusOr<std::string> text = config::ReadWholeFile(RecordPath(name));
  if (absl::IsNotFound(text.status())) return NotFound(name);
  if (!text.ok()) return text.status();
  std::optional<Record> record = Record::FromJson(name, *text);
  if (!record.has_value()) return NotFound(name);
  return *std::move(record);
}

absl::Status ProcessRuntime::WriteRecord(const Record& record) const {
  return config::WriteFileAtomically(RecordPath(record.name), record.ToJson(),
                                     0600);
}

absl::StatusOr<std::vector<ProcessRuntime::Record>> ProcessRuntime::ReadAll()
    const {
  absl::StatusOr<std::vector<std::string>> names =
      config::ListDirectory(options_.state_dir);
  if (!names.ok()) {
    return common::WithReason(absl::UnavailableError(names.status().message()),
                              kRuntimeUnavailable,
                              {{"path", options_.state_dir}});
  }
  std::vector<Record> records;
  for (absl::string_view file : *names) {
    if (!absl::ConsumeSuffix(&file, kRecordSuffix) || !IsRuntimeName(file)) {
      continue;
    }
    absl::StatusOr<Record> record = ReadRecord(file);
    if (record.ok()) {
      records.push_back(*std::move(record));
    } else if (!absl::IsNotFound(record.status())) {
      IOT2MQTT_LOG(WARNING).With("name", std::string(file))
          << "unreadable process runtime record: " << record.status().message();
    }
  }
  return records;
}

void ProcessRuntime::Probe(Record& record) {
  if (record.state != RuntimeState::kRunning) return;
  ProcessCheck check = CheckProcess(record.pid, record.start_ticks);
  if (check.alive) return;
  const int64_t pid = record.pid;
  const int64_t start_ticks = record.start_ticks;
  watched_.erase(record.name);
  cpu_samples_.erase(record.name);
  absl::StatusOr<config::FileLock> lock = LockRegistry(options_.state_dir);
  if (!lock.ok()) return;
  absl::StatusOr<Record> current = ReadRecord(record.name);
  if (!current.ok()) return;
  bool same = current->pid == pid && current->start_ticks == start_ticks;
  bool changed = false;
  if (same && current->state == RuntimeState::kRunning) {
    current->state = RuntimeState::kExited;
    current->exit_code = check.exit_code;
    current->finished_at = Micros(options_.clock());
    changed = true;
  } else if (same && current->state == RuntimeState::kExited &&
             !current->exit_code.has_value() && check.exit_code.has_value()) {
    current->exit_code = check.exit_code;
    changed = true;
  }
  if (changed) {
    absl::Status written = WriteRecord(*current);
    if (!written.ok()) {
      IOT2MQTT_LOG(WARNING).With("name", record.name)
          << "cannot record connector exit: " << written.message();
    }
    auto log = IOT2MQTT_LOG(INFO);
    log.With("name", record.name).With("pid", pid);
    if (current->exit_code.has_value()) {
      log.With("exit_code", *current->exit_code);
    }
    log << "connector process exited";
  }
  record = *std::move(current);
}

absl::StatusOr<ProcessRuntime::Record> ProcessRuntime::Refresh(
    absl::string_view id) {
  IOT2MQTT_ASSIGN_OR_RETURN(Record record, ReadRecord(id));
  Probe(record);
  return record;
}

absl::Status ProcessRuntime::Spawn(Record& record) {
  const RuntimeSpec& spec = record.spec;
  IOT2MQTT_ASSIGN_OR_RETURN(
      record.entry_path,
      ResolveProcessEntry(spec.connector_dir, spec.entry, options_.bin_dirs));
  char resolved_dir[PATH_MAX];
  if (realpath(spec.connector_dir.c_str(), resolved_dir) == nullptr) {
    return common::WithReason(
        absl::FailedPreconditionError(absl::StrCat(
            "connector directory ", spec.connector_dir, " is missing")),
        kConnectorDirNotFound, {{"path", spec.connector_dir}});
  }

  // Everything the child needs is prepared before fork(): after it, only
  // async-signal-safe calls.
  std::map<std::string, std::string> env = spec.env;
  env.emplace("PATH", kDefaultPath);
  env["IOT2MQTT_INSTANCE_FILE"] = spec.instance_file;
  if (spec.secrets_file.empty()) {
    env.erase("IOT2MQTT_SECRETS_FILE");
  } else {
    env["IOT2MQTT_SECRETS_FILE"] = spec.secrets_file;
  }
  env["IOT2MQTT_ENV_FILE"] =
      spec.env_file.empty() ? "/dev/null" : spec.env_file;
  std::vector<std::string> env_strings;
  for (const auto& [key, value] : env) {
    env_strings.push_back(absl::StrCat(key, "=", value));
  }
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string argv0 = record.entry_path;
  char* argv[] = {argv0.data(), nullptr};

  const std::string log_path = LogPath(record.name);
  int log_fd =
      open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) return config::StorageError(errno, "open log", log_path);
  config::ScopedFd log_closer(fcntl(log_fd, F_DUPFD_CLOEXEC, 3));
  close(log_fd);
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_fd < 0) return config::StorageError(errno, "open", "/dev/null");
  config::ScopedFd null_closer(fcntl(null_fd, F_DUPFD_CLOEXEC, 3));
  close(null_fd);
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return common::WithReason(
        absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno))),
        kSpawnFailed);
  }
  config::ScopedFd error_read(fcntl(pipe_fds[0], F_DUPFD_CLOEXEC, 3));
  config::ScopedFd error_write(fcntl(pipe_fds[1], F_DUPFD_CLOEXEC, 3));
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  if (log_closer.get() < 0 || null_closer.get() < 0 || error_read.get() < 0 ||
      error_write.get() < 0) {
    return common::WithReason(absl::InternalError("cannot set up descriptors"),
                              kSpawnFailed);
  }
  struct rlimit nofile;
  int max_fd = 65536;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 &&
      nofile.rlim_cur != RLIM_INFINITY) {
    max_fd = static_cast<int>(std::min<rlim_t>(nofile.rlim_cur, 1 << 20));
  }
  struct sigaction default_action;
  std::memset(&default_action, 0, sizeof default_action);
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  sigset_t empty_mask;
  sigemptyset(&empty_mask);
  const int out = log_closer.get();
  const int in = null_closer.get();
  const int report = error_write.get();

  pid_t pid = fork();
  if (pid < 0) {
    int error = errno;
    std::string message = absl::StrCat("fork: ", std::strerror(error));
    return common::WithReason((error == EAGAIN || error == ENOMEM)
                                  ? absl::ResourceExhaustedError(message)
                                  : absl::InternalError(message),
                              kSpawnFailed);
  }
  if (pid == 0) {
    // The child: own session and process group, clean descriptors.
    setsid();
    for (int s = 1; s < NSIG; ++s) sigaction(s, &default_action, nullptr);
    sigprocmask(SIG_SETMASK, &empty_mask, nullptr);
    int error = 0;
    if (dup2(in, STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0 ||
        dup2(out, STDERR_FILENO) < 0 || dup2(report, 3) < 0) {
      error = errno;
      (void)!write(report, &error, sizeof error);
      _exit(127);
    }
    fcntl(3, F_SETFD, FD_CLOEXEC);
    if (close_range(4, ~0U, 0) != 0) {
      for (int fd = 4; fd < max_fd; ++fd) close(fd);
    }
    if (chdir(resolved_dir) != 0) {
      error = errno;
      (void)!write(3, &error, sizeof error);
      _exit(127);
    }
    execve(argv[0], argv, envp.data());
    error = errno;
    (void)!write(3, &error, sizeof error);
    _exit(127);
  }

  error_write.Close();
  int child_error = 0;
  ssize_t n;
  do {
    n = read(error_read.get(), &child_error, sizeof child_error);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return common::WithReason(absl::FailedPreconditionError(absl::StrCat(
                                  "cannot execute ", record.entry_path, ": ",
                                  std::strerror(child_error))),
                              kSpawnFailed, {{"entry", record.entry_path}});
  }
  std::optional<ProcStat> stat = ReadProcStat(pid);
  record.pid = pid;
  record.start_ticks =
      stat.has_value() ? static_cast<int64_t>(stat->start_ticks) : 0;
  record.state = RuntimeState::kRunning;
  record.started_at = Micros(options_.clock());
  record.finished_at = absl::InfinitePast();
  record.exit_code.reset();
  watched_[record.name] = Watched{record.pid, record.start_ticks};
  cpu_samples_.erase(record.name);
  IOT2MQTT_LOG(INFO)
          .With("name", record.name)
          .With("pid", static_cast<int64_t>(pid))
          .With("entry", record.entry_path)
      << "connector process started";
  return absl::OkStatus();
}

absl::StatusOr<std::string> ProcessRuntime::Ping() {
  if (access(options_.state_dir.c_str(), W_OK | X_OK) != 0) {
    int error = errno;
    return common::WithReason(absl::UnavailableError(absl::StrCat(
                                  "state directory ", options_.state_dir, ": ",
                                  std::strerror(error))),
                              kRuntimeUnavailable,
                              {{"path", options_.state_dir}});
  }
  struct utsname name;
  if (uname(&name) != 0) return std::string("process runtime");
  return absl::StrCat("process runtime (", name.sysname, " ", name.release,
                      ")");
}

absl::Status ProcessRuntime::Prepare(const RuntimeSpec& spec,
                                     const ProgressSink& progress) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateSpecNames(spec.connector, spec.instance_id));
  IOT2MQTT_RETURN_IF_ERROR(ValidateEnv(spec.env));
  IOT2MQTT_ASSIGN_OR_RETURN(
      std::string entry,
      ResolveProcessEntry(spec.connector_dir, spec.entry, options_.bin_dirs));
  if (progress) progress(absl::StrCat("entry resolved: ", entry));
  return absl::OkStatus();
}

absl::StatusOr<RuntimeInfo> ProcessRuntime::Create(const RuntimeSpec& spec) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateSpecNames(spec.connector, spec.instance_id));
  IOT2MQTT_RETURN_IF_ERROR(ValidateEnv(spec.env));
  Record record;
  record.name = RuntimeName(spec.connector, spec.instance_id);
  record.spec = spec;
  absl::MutexLock l(&mu_);
  IOT2MQTT_ASSIGN_OR_RETURN(config::FileLock lock,
                            LockRegistry(options_.state_dir));
  absl::StatusOr<Record> existing = ReadRecord(record.name);
  if (!existing.ok() && config::PathExists(RecordPath(record.name))) {
    // Writes are atomic, so only a hand-edited file gets here: it names no
    // process we could stop, and must not block the name forever.
    IOT2MQTT_LOG(WARNING).With("name", record.name)
        << "replacing an unreadable process runtime record";
  }
  if (existing.ok()) {
    return common::WithReason(
        absl::AlreadyExistsError(
            absl::StrCat("process runtime ", record.name, " already exists")),
        kRuntimeExists, {{"name", record.name}});
  }
  record.created = Micros(options_.clock());
  IOT2MQTT_RETURN_IF_ERROR(Spawn(record));
  absl::Status written = WriteRecord(record);
  if (!written.ok()) {
    // Nothing may run unregistered: it could never be stopped.
    kill(static_cast<pid_t>(-record.pid), SIGKILL);
    int status = 0;
    waitpid(static_cast<pid_t>(record.pid), &status, 0);
    watched_.erase(record.name);
    return common::WithReason(absl::Status(written.code(), written.message()),
                              kRegistryIoError, {{"name", record.name}});
  }
  return ToInfo(record);
}

RuntimeInfo ProcessRuntime::ToInfo(const Record& record) const {
  RuntimeInfo info;
  info.id = record.name;
  info.name = record.name;
  info.connector = record.spec.connector;
  info.instance_id = record.spec.instance_id;
  info.config_hash = record.spec.config_hash;
  info.image = record.entry_path;
  info.state = record.state;
  info.exit_code = record.exit_code;
  info.created = record.created;
  info.started_at = record.started_at;
  info.finished_at = record.finished_at;
  info.labels = record.Labels();
  switch (record.state) {
    case RuntimeState::kRunning:
      info.pid = record.pid;
      info.status_text = absl::StrCat("running (pid ", record.pid, ")");
      break;
    case RuntimeState::kExited:
      info.status_text =
          record.exit_code.has_value()
              ? absl::StrCat("exited (code ", *record.exit_code, ")")
              : "exited";
      break;
    default:
      info.status_text = std::string(RuntimeStateName(record.state));
  }
  return info;
}

absl::StatusOr<std::vector<RuntimeInfo>> ProcessRuntime::List() {
  IOT2MQTT_ASSIGN_OR_RETURN(std::vector<Record> records, ReadAll());
  std::vector<RuntimeInfo> infos;
  absl::MutexLock l(&mu_);
  for (Record& record : records) {
    Probe(record);
    infos.push_back(ToInfo(record));
  }
  return infos;
}

absl::StatusOr<RuntimeInfo> ProcessRuntime::Inspect(absl::string_view id) {
  absl::MutexLock l(&mu_);
  IOT2MQTT_ASSIGN_OR_RETURN(Record record, Refresh(id));
  return ToInfo(record);
}

absl::Status ProcessRuntime::Start(absl::string_view id) {
  absl::MutexLock l(&mu_);
  IOT2MQTT_ASSIGN_OR_RETURN(Record record, Refresh(id));
  if (record.state == RuntimeState::kRunning) return absl::OkStatus();
  IOT2MQTT_ASSIGN_OR_RETURN(config::FileLock lock,
                            LockRegistry(options_.state_dir));
  IOT2MQTT_ASSIGN_OR_RETURN(record, ReadRecord(id));
  if (record.state == RuntimeState::kRunning) return absl::OkStatus();
  IOT2MQTT_RETURN_IF_ERROR(Spawn(record));
  absl::Status written = WriteRecord(record);
  if (!written.ok()) {
    kill(static_cast<pid_t>(-record.pid), SIGKILL);
    int status = 0;
    waitpid(static_cast<pid_t>(record.pid), &status, 0);
    watched_.erase(record.name);
    return common::WithReason(absl::Status(written.code(), written.message()),
                              kRegistryIoError, {{"name", record.name}});
  }
  return absl::OkStatus();
}

absl::Status ProcessRuntime::Stop(absl::string_view id, absl::Duration grace) {
  int64_t pid = 0;
  {
    absl::MutexLock l(&mu_);
    IOT2MQTT_ASSIGN_OR_RETURN(Record record, Refresh(id));
    if (record.state != RuntimeState::kRunning) return absl::OkStatus();
    pid = record.pid;
    // Verified alive with its start time just now: the group is ours.
    kill(static_cast<pid_t>(-pid), SIGTERM);
  }
  IOT2MQTT_LOG(INFO).With("name", std::string(id)).With("pid", pid)
      << "stopping connector process (SIGTERM)";
  auto gone = [&]() {
    bool leader_gone;
    {
      absl::MutexLock l(&mu_);
      absl::StatusOr<Record> record = Refresh(id);
      leader_gone = !record.ok() || record->state != RuntimeState::kRunning ||
                    record->pid != pid;
    }
    return leader_gone && !GroupAlive(pid);
  };
  auto wait_until = [&](absl::Time deadline) {
    while (true) {
      if (gone()) return true;
      if (absl::Now() >= deadline) return false;
      absl::SleepFor(kStopPoll);
    }
  };
  if (wait_until(absl::Now() + grace)) return absl::OkStatus();
  IOT2MQTT_LOG(WARNING).With("name", std::string(id)).With("pid", pid)
      << "connector process ignored SIGTERM; killing its process group";
  kill(static_cast<pid_t>(-pid), SIGKILL);
  if (wait_until(absl::Now() + kKillWait)) return absl::OkStatus();
  return common::WithReason(
      absl::InternalError(
          absl::StrCat("process group ", pid, " of ", id, " survived SIGKILL")),
      "STOP_FAILED", {{"name", std::string(id)}});
}

absl::Status ProcessRuntime::Restart(absl::string_view id,
                                     absl::Duration grace) {
  IOT2MQTT_RETURN_IF_ERROR(Stop(id, grace));
  return Start(id);
}

absl::Status ProcessRuntime::Remove(absl::string_view id) {
  IOT2MQTT_RETURN_IF_ERROR(Stop(id, options_.stop_grace));
  absl::MutexLock l(&mu_);
  IOT2MQTT_ASSIGN_OR_RETURN(Record record, Refresh(id));
  if (record.state == RuntimeState::kRunning) {
    // Started again meanwhile: it is being removed all the same.
    kill(static_cast<pid_t>(-record.pid), SIGKILL);
  }
  IOT2MQTT_ASSIGN_OR_RETURN(config::FileLock lock,
                            LockRegistry(options_.state_dir));
  absl::Status removed = config::RemoveFile(RecordPath(record.name));
  if (!removed.ok() && !absl::IsNotFound(removed)) return removed;
  watched_.erase(record.name);
  cpu_samples_.erase(record.name);
  const std::string logs = options_.state_dir + "/logs";
  absl::StatusOr<std::vector<std::string>> files = config::ListDirectory(logs);
  if (files.ok()) {
    const std::string log_name = record.name + ".log";
    for (const std::string& file : *files) {
      absl::string_view rest = file;
      int index = 0;
      bool ours =
          rest == log_name || (absl::ConsumePrefix(&rest, log_name + ".") &&
                               absl::SimpleAtoi(rest, &index));
      if (!ours) continue;
      absl::Status gone = config::RemoveFile(logs + "/" + file);
      if (!gone.ok() && !absl::IsNotFound(gone)) return gone;
    }
  }
  IOT2MQTT_LOG(INFO).With("name", record.name) << "connector runtime removed";
  return absl::OkStatus();
}

absl::Status ProcessRuntime::Logs(absl::string_view id,
                                  const LogOptions& options,
                                  const LogSink& sink) {
  IOT2MQTT_ASSIGN_OR_RETURN(Record record, ReadRecord(id));
  const std::string path = LogPath(record.name);

  // Tail: the current file, then older copies while more lines are wanted.
  std::optional<FileRead> current = ReadFrom(path, 0);
  int64_t offset = 0;
  ino_t inode = 0;
  std::vector<ParsedLine> lines;
  if (current.has_value()) {
    inode = current->inode;
    absl::string_view data = current->data;
    if (options.follow) data = data.substr(0, CompleteLength(data));
    offset = static_cast<int64_t>(data.size());
    for (ParsedLine& line : ParseLines(data, !options.follow)) {
      if (PassesSince(line, options)) lines.push_back(std::move(line));
    }
  }
  const size_t wanted =
      options.tail < 0 ? SIZE_MAX : static_cast<size_t>(options.tail);
  for (int k = 1; k <= options_.log_files && lines.size() < wanted; ++k) {
    std::optional<FileRead> older = ReadFrom(absl::StrCat(path, ".", k), 0);
    if (!older.has_value()) break;
    std::vector<ParsedLine> parsed = ParseLines(older->data, true);
    std::vector<ParsedLine> kept;
    for (ParsedLine& line : parsed) {
      if (PassesSince(line, options)) kept.push_back(std::move(line));
    }
    kept.insert(kept.end(), std::make_move_iterator(lines.begin()),
                std::make_move_iterator(lines.end()));
    lines = std::move(kept);
  }
  size_t first = lines.size() > wanted ? lines.size() - wanted : 0;
  for (size_t i = first; i < lines.size(); ++i) {
    if (!sink(lines[i].line)) return absl::OkStatus();
  }
  if (!options.follow) return absl::OkStatus();

  // Follow: poll the file; a shrunk or replaced file was rotated.
  auto emit = [&](absl::string_view data, bool include_partial) {
    for (ParsedLine& line : ParseLines(data, include_partial)) {
      if (!PassesSince(line, options)) continue;
      if (!sink(line.line)) return false;
    }
    return true;
  };
  const absl::Duration poll = std::min(options_.poll_interval, kMaxFollowPoll);
  while (true) {
    if (options.cancelled && options.cancelled()) return absl::OkStatus();
    if (!config::PathExists(RecordPath(record.name))) return absl::OkStatus();
    struct stat st;
    if (stat(path.c_str(), &st) == 0) {
      if (st.st_ino != inode) {
        inode = st.st_ino;
        offset = 0;
      } else if (st.st_size < offset) {
        // Copy-truncated: what we had not read yet went to <path>.1.
        std::optional<FileRead> copy =
            ReadFrom(absl::StrCat(path, ".1"), offset);
        if (copy.has_value() && copy->size >= offset &&
            !emit(copy->data, true)) {
          return absl::OkStatus();
        }
        offset = 0;
      }
      std::optional<FileRead> fresh = ReadFrom(path, offset);
      if (fresh.has_value() && !fresh->data.empty()) {
        size_t complete = CompleteLength(fresh->data);
        if (complete > 0) {
          if (!emit(absl::string_view(fresh->data).substr(0, complete),
                    false)) {
            return absl::OkStatus();
          }
          offset += static_cast<int64_t>(complete);
        }
      }
    }
    absl::SleepFor(poll);
  }
}

absl::StatusOr<RuntimeStats> ProcessRuntime::Stats(absl::string_view id) {
  RuntimeStats stats;
  int64_t pid = 0;
  int64_t start_ticks = 0;
  {
    absl::MutexLock l(&mu_);
    IOT2MQTT_ASSIGN_OR_RETURN(Record record, Refresh(id));
    if (record.state != RuntimeState::kRunning) return stats;
    pid = record.pid;
    start_ticks = record.start_ticks;
  }
  uint64_t ticks = 0;
  for (const ProcStat& member : GroupMembers(pid)) {
    ++stats.pids;
    ticks += member.utime + member.stime;
    std::optional<std::string> status = ReadProcFile(member.pid, "status");
    if (status.has_value()) {
      stats.memory_bytes += ParseVmRssBytes(*status).value_or(0);
    }
  }
  const double hz = ClockTicksPerSecond();
  absl::Time now = absl::Now();
  absl::MutexLock l(&mu_);
  auto previous = cpu_samples_.find(std::string(id));
  double seconds = 0;
  double used = 0;
  if (previous != cpu_samples_.end() && previous->second.pid == pid) {
    seconds = absl::ToDoubleSeconds(now - previous->second.at);
    used = ticks >= previous->second.ticks
               ? static_cast<double>(ticks - previous->second.ticks) / hz
               : 0;
  } else if (std::optional<double> uptime = UptimeSeconds()) {
    seconds = *uptime - static_cast<double>(start_ticks) / hz;
    used = static_cast<double>(ticks) / hz;
  }
  if (seconds > 0) stats.cpu_percent = std::max(0.0, 100.0 * used / seconds);
  cpu_samples_[std::string(id)] = CpuSample{pid, ticks, now};
  return stats;
}

// ---- Monitor
// -----------------------------------------------------------------

void ProcessRuntime::MonitorLoop() {
  absl::Time next_scan = absl::InfinitePast();
  do {
    absl::Time now = absl::Now();
    bool scan = now >= next_scan;
    if (scan) next_scan = now + options_.scan_interval;
    MonitorTick(scan);
  } while (!stopping_.WaitForNotificationWithTimeout(options_.poll_interval));
}

void ProcessRuntime::MonitorTick(bool scan) {
  if (scan) {
    absl::StatusOr<std::vector<Record>> records = ReadAll();
    if (records.ok()) {
      for (const Record& record : *records) {
        absl::StatusOr<bool> rotated = RotateLogFile(
            LogPath(record.name), options_.log_max_bytes, options_.log_files);
        if (!rotated.ok()) {
          IOT2MQTT_LOG(WARNING).With("name", record.name)
              << "log rotation failed: " << rotated.status().message();
        }
      }
      absl::MutexLock l(&mu_);
      for (const Record& record : *records) {
        if (record.state == RuntimeState::kRunning) {
          watched_[record.name] = Watched{record.pid, record.start_ticks};
        }
      }
    }
  }
  absl::MutexLock l(&mu_);
  std::vector<std::string> dead;
  for (const auto& [name, watched] : watched_) {
    // Cheap: one /proc read; the registry is read only on a change.
    std::optional<ProcStat> stat = ReadProcStat(watched.pid);
    bool maybe_dead =
        !stat.has_value() ||
        static_cast<int64_t>(stat->start_ticks) != watched.start_ticks ||
        IsZombie(stat->state);
    if (maybe_dead) dead.push_back(name);
  }
  for (const std::string& name : dead) {
    absl::StatusOr<Record> record = Refresh(name);
    if (!record.ok() || record->state != RuntimeState::kRunning) {
      watched_.erase(name);
    }
  }
}

}  // namespace iot2mqtt::orchestrator
