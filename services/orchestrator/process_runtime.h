#ifndef IOT2MQTT_SERVICES_ORCHESTRATOR_PROCESS_RUNTIME_H_
#define IOT2MQTT_SERVICES_ORCHESTRATOR_PROCESS_RUNTIME_H_

// The `process` runtime: each connector instance is a local child process
// (runtime.h's contract, no Docker).
//
// Processes. Create/Start fork+exec the connector's entry in its own session
// and process group (setsid), cwd = connector_dir, stdin /dev/null, stdout
// and stderr appended (O_APPEND, no pipe) to <state_dir>/logs/<name>.log,
// every other descriptor closed, signal dispositions and mask reset. The
// environment is clean: spec.env, then PATH=/usr/bin:/bin unless spec.env
// sets PATH, then IOT2MQTT_INSTANCE_FILE, IOT2MQTT_SECRETS_FILE (when set)
// and IOT2MQTT_ENV_FILE (spec.env_file or /dev/null), which always win.
// A connector therefore survives the orchestrator (even kill -9) and is
// adopted by the next ProcessRuntime over the same state_dir.
//
// Registry. One JSON file per runtime, <state_dir>/<name>.json (0600,
// written atomically under <state_dir>/.lock): the spec (env included:
// spec.env must hold no secret value — keys ending in PASSWORD, SECRET or
// TOKEN are refused — secrets travel in the secrets file), the entry path,
// the pid and its start time (/proc/<pid>/stat field 22, so a reused pid is
// never mistaken for ours), the state, times and exit code. A process is
// running when its pid is alive (not a zombie) with the recorded start
// time. Exit codes (status or 128+signal) are known when this process is
// the connector's parent; a connector that died while we were not its
// parent is kExited with no exit code.
//
// Monitor. A thread polls every `poll_interval`: it reaps our own children
// by pid (waitpid(pid, WNOHANG), never waitpid(-1)), notices adopted ones
// dying, and every `scan_interval` re-reads the registry (adoption) and
// rotates logs: above `log_max_bytes` the file is copied to .1 (older
// copies shifted up to .<log_files>) and truncated in place, as the child
// keeps its O_APPEND descriptor (lines written between the copy and the
// truncation are lost — logrotate's copytruncate has the same window).
//
// Resources. spec.cpus and spec.memory_bytes are recorded but NOT enforced:
// RLIMIT_AS and RLIMIT_DATA count reserved address space (thread stacks,
// malloc arenas), so a limit near the manifest's working-set figure kills
// healthy connectors. Use the docker runtime for hard limits.
// RuntimeStats.memory_limit_bytes is therefore 0.
//
// Errors (google.rpc.ErrorInfo reasons, services/common/status.h):
//   INVALID_ARGUMENT    INVALID_CONNECTOR_NAME, INVALID_INSTANCE_ID
//                       (^[a-z0-9][a-z0-9_-]{0,62}$, checked before any path
//                       is built), INVALID_ENV, SECRET_IN_ENV
//   NOT_FOUND           RUNTIME_NOT_FOUND (also for any id that is not one
//                       of our names)
//   ALREADY_EXISTS      RUNTIME_EXISTS
//   FAILED_PRECONDITION ENTRY_NOT_FOUND (missing, not executable, absolute,
//                       `..`, or resolving outside connector_dir),
//                       CONNECTOR_DIR_NOT_FOUND, SPAWN_FAILED (exec failed)
//   UNAVAILABLE         RUNTIME_UNAVAILABLE (state_dir unusable)
//   RESOURCE_EXHAUSTED  SPAWN_FAILED (fork: EAGAIN/ENOMEM)
//   INTERNAL            REGISTRY_IO_ERROR, STOP_FAILED (group survived
//                       SIGKILL), and file_io's storage reasons

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "services/orchestrator/runtime.h"

namespace iot2mqtt::orchestrator {

inline constexpr char kProcessRuntimeKind[] = "process";

struct ProcessRuntimeOptions {
  // Registry files and logs/ live here (created 0700 when missing).
  std::string state_dir;
  // Where `entry` is looked up after connector_dir (plain names only).
  // Empty: the directory of the running executable (/proc/self/exe).
  std::vector<std::string> bin_dirs;
  int64_t log_max_bytes = 1 << 20;  // Rotate above this size.
  int log_files = 3;                // Rotated copies kept (.1 ... .N).
  // Used by Remove() (runtime.h: 10 s).
  absl::Duration stop_grace = absl::Seconds(10);
  // Reaping, exit detection, log following.
  absl::Duration poll_interval = absl::Milliseconds(200);
  // Registry re-read (adoption) and log rotation.
  absl::Duration scan_interval = absl::Seconds(1);
  // Times written to the registry.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
};

class ProcessRuntime final : public Runtime {
 public:
  // Creates state_dir and state_dir/logs, resolves bin_dirs and starts the
  // monitor. Processes already registered there are adopted as they are.
  // UNAVAILABLE RUNTIME_UNAVAILABLE when state_dir cannot be created.
  static absl::StatusOr<std::unique_ptr<ProcessRuntime>> Open(
      ProcessRuntimeOptions options);

  // Stops the monitor only: connectors keep running (stopping them on a
  // graceful shutdown is the caller's decision).
  ~ProcessRuntime() override;
  ProcessRuntime(const ProcessRuntime&) = delete;
  ProcessRuntime& operator=(const ProcessRuntime&) = delete;

  absl::string_view kind() const override { return kProcessRuntimeKind; }
  // "process runtime (Linux <release>)"; UNAVAILABLE when state_dir is not
  // writable.
  absl::StatusOr<std::string> Ping() override;
  // Validates names and resolves the entry; progress gets
  // "entry resolved: <path>".
  absl::Status Prepare(const RuntimeSpec& spec,
                       const ProgressSink& progress) override;
  // Spawns the process and registers it (no record is left when the exec
  // fails). The id is the name. ALREADY_EXISTS while a readable record
  // holds the name; an unreadable one (hand-edited) is replaced.
  absl::StatusOr<RuntimeInfo> Create(const RuntimeSpec& spec) override;
  // Sorted by name. Unreadable or foreign files in state_dir are skipped.
  absl::StatusOr<std::vector<RuntimeInfo>> List() override;
  absl::StatusOr<RuntimeInfo> Inspect(absl::string_view id) override;
  // Spawns again from the registered spec (entry resolved anew); OK when
  // already running.
  absl::Status Start(absl::string_view id) override;
  // SIGTERM to the process group, SIGKILL to it after `grace`; returns when
  // no process of the group is left (or 5 s after the SIGKILL). OK when
  // already stopped.
  absl::Status Stop(absl::string_view id, absl::Duration grace) override;
  absl::Status Restart(absl::string_view id, absl::Duration grace) override;
  // Stops (options.stop_grace), then deletes the record and every log file.
  absl::Status Remove(absl::string_view id) override;
  // Reads the log file and its rotated copies. Every line is stream
  // "stdout" (stderr shares the file); `time` comes from a leading
  // timestamp (the SDK's JSON lines, or an RFC 3339 prefix), else
  // InfinitePast. `since` compares a line's own time, or that of the
  // nearest earlier line that has one; lines with neither are kept.
  // Following polls the file (at most every 250 ms) and survives rotation:
  // when the file shrank, the unread rest comes from <log>.1. It ends when
  // the sink returns false, `cancelled` returns true or the runtime is
  // removed (not when the process exits: it may be started again).
  absl::Status Logs(absl::string_view id, const LogOptions& options,
                    const LogSink& sink) override;
  // Over the whole process group: summed VmRSS, CPU from utime+stime
  // (first call: average since the process started), process count. All
  // zero when not running.
  absl::StatusOr<RuntimeStats> Stats(absl::string_view id) override;

  const std::string& state_dir() const { return options_.state_dir; }
  // <state_dir>/logs/<name>.log
  std::string LogPath(absl::string_view name) const;

 private:
  struct Record;
  struct Watched {
    int64_t pid = 0;
    int64_t start_ticks = 0;
  };
  struct CpuSample {
    int64_t pid = 0;
    uint64_t ticks = 0;
    absl::Time at;
  };

  explicit ProcessRuntime(ProcessRuntimeOptions options);

  std::string RecordPath(absl::string_view name) const;
  absl::StatusOr<Record> ReadRecord(absl::string_view name) const;
  absl::Status WriteRecord(const Record& record) const;
  // Reads the record of `id` and brings its state up to date (reaping or
  // noticing a dead process). NOT_FOUND unless `id` is one of ours.
  absl::StatusOr<Record> Refresh(absl::string_view id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Marks `record` exited when its process is gone; writes the change.
  void Probe(Record& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Spawn(Record& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::vector<Record>> ReadAll() const;
  RuntimeInfo ToInfo(const Record& record) const;

  void MonitorLoop();
  void MonitorTick(bool scan);

  const ProcessRuntimeOptions options_;
  absl::Mutex mu_;
  std::map<std::string, Watched> watched_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, CpuSample> cpu_samples_ ABSL_GUARDED_BY(mu_);
  absl::Notification stopping_;
  std::thread monitor_;
};

// ---- Helpers (exposed for tests) -------------------------------------------

// ^[a-z0-9][a-z0-9_-]{0,62}$: connector names and instance ids.
bool IsValidNameComponent(absl::string_view name);
// INVALID_ARGUMENT INVALID_CONNECTOR_NAME / INVALID_INSTANCE_ID.
absl::Status ValidateSpecNames(absl::string_view connector,
                               absl::string_view instance_id);
// Whether `id` could be RuntimeName() of valid names (the only ids the
// process runtime accepts; anything else is NOT_FOUND).
bool IsRuntimeName(absl::string_view id);

// Resolves `entry`: a relative path (no `..`, not absolute) whose realpath
// lies inside realpath(connector_dir), or else a plain file name found in one
// of `bin_dirs`; it must be a regular executable file. Returns the realpath.
// FAILED_PRECONDITION ENTRY_NOT_FOUND / CONNECTOR_DIR_NOT_FOUND.
absl::StatusOr<std::string> ResolveProcessEntry(
    const std::string& connector_dir, const std::string& entry,
    const std::vector<std::string>& bin_dirs);

// The fields of /proc/<pid>/stat the runtime uses.
struct ProcStat {
  int64_t pid = 0;
  std::string comm;
  char state = '?';  // R, S, D, Z, X, T, ...
  int64_t ppid = 0;
  int64_t pgrp = 0;
  uint64_t utime = 0;        // Field 14, clock ticks.
  uint64_t stime = 0;        // Field 15.
  uint64_t start_ticks = 0;  // Field 22: start time after boot, ticks.
};
// Parses the text of /proc/<pid>/stat (comm may hold spaces and parens).
absl::StatusOr<ProcStat> ParseProcStat(absl::string_view text);
// VmRSS of /proc/<pid>/status in bytes; nullopt when absent (kernel
// threads, zombies).
std::optional<int64_t> ParseVmRssBytes(absl::string_view status_text);

// The leading timestamp of a log line: {"timestamp":"<RFC 3339>",... (the
// SDK's format) or "<RFC 3339> ..."; InfinitePast when there is none.
absl::Time ParseLogLineTime(absl::string_view line);

// Copy-truncate rotation: when `path` is larger than `max_bytes`, shifts
// <path>.1 .. <path>.<keep-1> up by one (dropping <path>.<keep>), copies
// `path` to <path>.1 and truncates `path` to zero (keep == 0: truncates
// only). Returns whether it rotated; false when the file is missing.
absl::StatusOr<bool> RotateLogFile(const std::string& path, int64_t max_bytes,
                                   int keep);

}  // namespace iot2mqtt::orchestrator

#endif  // IOT2MQTT_SERVICES_ORCHESTRATOR_PROCESS_RUNTIME_H_
