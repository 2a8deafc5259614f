#ifndef IOT2MQTT_SERVICES_DISCOVERY_CHILD_PROCESS_H_
#define IOT2MQTT_SERVICES_DISCOVERY_CHILD_PROCESS_H_

// Runs one short-lived child process (a setup tool or a discovery run) to
// completion: stdin fed from a string, stdout and stderr read through pipes
// with size limits, a deadline, cancellation, and a clean kill of the whole
// process group (SIGTERM, grace period, SIGKILL). No gRPC here.
//
// The child: fork + execve of an absolute path prepared before the fork
// (only async-signal-safe calls after it); its own process group
// (setpgid(0, 0)); cwd = working_dir; exactly `env` as its environment;
// every descriptor but 0/1/2 closed; with `isolate_network` a fresh network
// namespace (unshare(CLONE_NEWNET), falling back to CLONE_NEWUSER |
// CLONE_NEWNET when not privileged). If isolation or exec fails, the child
// reports the errno through a CLOEXEC status pipe and RunChild returns
// End::kSpawnFailed: a tool that asked for no network never runs with it.
//
// When the child exits by itself, RunChild keeps reading until both pipes
// reach EOF, at most kill_grace longer (a background process may hold them
// open); whatever is then left of the process group is ended like a
// timeout (SIGTERM, grace, SIGKILL), so a run never leaves processes
// behind. Processes that left the group (setsid, setpgid) are not tracked.
// Zombies count as gone (an orphan may never be reaped when PID 1 does not
// reap). The leader is reaped last, so its pid (the group id) cannot be
// reused while the group is signalled.
//
// Signals: SIGPIPE is blocked in the calling thread for the duration of
// RunChild (a SIGPIPE from writing to a child that closed its stdin is
// consumed before the mask is restored); the process-wide disposition is
// not changed. The child starts with default dispositions and an empty
// mask. A CancelToken already cancelled before the run spawns nothing
// (End::kCancelled).

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace iot2mqtt::discovery {

// Wakes a RunChild blocked in poll() from another thread (an eventfd).
// Cancel() is idempotent and may be called before, during or after the run.
class CancelToken {
 public:
  CancelToken();
  ~CancelToken();
  CancelToken(const CancelToken&) = delete;
  CancelToken& operator=(const CancelToken&) = delete;

  void Cancel();
  bool cancelled() const { return cancelled_.load(); }
  // For RunChild's poll set: readable once cancelled.
  int fd() const { return fd_; }

 private:
  std::atomic<bool> cancelled_{false};
  int fd_ = -1;
};

struct ChildLimits {
  // More stdout than this ends the run: the group is killed and the result
  // is End::kOutputTooLarge (stdout keeps the first max bytes).
  int64_t max_stdout_bytes = int64_t{1} << 20;
  // Stderr beyond this is drained and dropped; `stderr_truncated` is set.
  int64_t max_stderr_bytes = int64_t{64} << 10;
  // Between SIGTERM and SIGKILL of the process group.
  absl::Duration kill_grace = absl::Seconds(2);
};

struct ChildSpec {
  std::string executable;  // Absolute path (already resolved and checked).
  std::vector<std::string> args;  // argv[1..]; argv[0] is `executable`.
  std::string working_dir;
  std::vector<std::string> env;  // "NAME=value", the whole environment.
  std::string stdin_data;        // Written, then stdin is closed.
  bool isolate_network = false;
  absl::Duration timeout = absl::Seconds(30);
  ChildLimits limits;
  // Streaming: when set, called (on RunChild's thread) with each complete
  // stdout line, without its '\n' (a last unterminated line at the end);
  // stdout is then still accumulated up to the limit.
  std::function<void(absl::string_view)> on_stdout_line;
  // The same for stderr lines (called for lines within the stderr limit).
  std::function<void(absl::string_view)> on_stderr_line;
};

struct ChildResult {
  enum class End {
    kExited,          // Exited by itself: see exit_code.
    kSignaled,        // Killed by a signal we did not send: term_signal.
    kTimedOut,        // The timeout passed; we ended the group.
    kCancelled,       // CancelToken fired; we ended the group.
    kOutputTooLarge,  // stdout passed the limit; we ended the group.
    kSpawnFailed,     // fork/isolation/exec failed: spawn_error.
  };
  End end = End::kSpawnFailed;
  int exit_code = -1;   // kExited only.
  int term_signal = 0;  // kSignaled only.
  // When we ended the group: whether SIGKILL was needed after the grace.
  bool killed = false;
  std::string stdout_text;
  std::string stderr_text;
  bool stderr_truncated = false;
  // e.g. "execve /x/tool.sh: Permission denied", "unshare(CLONE_NEWNET):
  // Operation not permitted; unshare(CLONE_NEWUSER|CLONE_NEWNET): ...".
  std::string spawn_error;
  absl::Duration elapsed;
  int64_t pid = 0;
};

// Blocks until the child and every process of its group are gone (after a
// kill, it waits for the group to empty, bounded by the grace period
// twice). Never leaves a zombie. `cancel` may be null.
ChildResult RunChild(const ChildSpec& spec, CancelToken* cancel);

// Human name of an End ("exited", "timed out", ...), for logs.
absl::string_view EndName(ChildResult::End end);

}  // namespace iot2mqtt::discovery

#endif  // IOT2MQTT_SERVICES_DISCOVERY_CHILD_PROCESS_H_
