#include "services/discovery/child_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/orchestrator/process_runtime.h"

namespace iot2mqtt::discovery {
namespace {

// Poll slice when no pidfd (or no cancel eventfd) can wake us.
constexpr absl::Duration kFallbackPoll = absl::Milliseconds(20);
// Poll slice while waiting for a signalled group to empty.
constexpr absl::Duration kGroupPoll = absl::Milliseconds(20);
constexpr size_t kChunk = 64 * 1024;

// What the child reports through the status pipe before _exit(127).
enum ChildStage : int {
  kStageSetpgid = 1,
  kStageUnshare,
  kStageDup,
  kStageChdir,
  kStageExec,
};
struct ChildFailure {
  int stage;
  int error;
  int error2;  // kStageUnshare: errno of the CLONE_NEWUSER fallback.
};

// An owned descriptor (movable).
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// A CLOEXEC pipe whose both ends are >= 3, so that the child's dup2() onto
// 0, 1 and 2 never overwrites a descriptor it still needs.
bool MakePipe(UniqueFd* read_end, UniqueFd* write_end) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return false;
  for (int& fd : fds) {
    if (fd < 3) {
      int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
      close(fd);
      fd = moved;
    }
  }
  *read_end = UniqueFd(fds[0]);
  *write_end = UniqueFd(fds[1]);
  return read_end->valid() && write_end->valid();
}

bool SetNonBlocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

// Blocks SIGPIPE in the calling thread while it lives, so that writing to
// a child that closed its stdin gives EPIPE instead of killing the process;
// a SIGPIPE raised meanwhile is consumed before the mask is restored. The
// process-wide disposition of SIGPIPE is not touched.
class ScopedSigpipeBlock {
 public:
  ScopedSigpipeBlock() {
    sigemptyset(&pipe_set_);
    sigaddset(&pipe_set_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set_, &previous_);
    sigset_t pending;
    sigemptyset(&pending);
    was_pending_ = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
  }
  ~ScopedSigpipeBlock() {
    sigset_t pending;
    sigemptyset(&pending);
    if (!was_pending_ && sigpending(&pending) == 0 &&
        sigismember(&pending, SIGPIPE)) {
      struct timespec zero = {0, 0};
      while (sigtimedwait(&pipe_set_, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
  }
  ScopedSigpipeBlock(const ScopedSigpipeBlock&) = delete;
  ScopedSigpipeBlock& operator=(const ScopedSigpipeBlock&) = delete;

 private:
  sigset_t pipe_set_;
  sigset_t previous_;
  bool was_pending_ = false;
};

// The child side after fork(): async-signal-safe calls only.
[[noreturn]] void ChildFail(int report, int stage, int error, int error2 = 0) {
  ChildFailure failure = {stage, error, error2};
  (void)!write(report, &failure, sizeof failure);
  _exit(127);
}

// Best effort (used after unshare(CLONE_NEWUSER)); async-signal-safe.
void WriteSmallFile(const char* path, const char* text, size_t length) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  (void)!write(fd, text, length);
  close(fd);
}

std::string SpawnErrorText(const ChildFailure& failure,
                           const std::string& executable,
                           const std::string& working_dir) {
  switch (failure.stage) {
    case kStageSetpgid:
      return absl::StrCat("setpgid: ", std::strerror(failure.error));
    case kStageUnshare:
      return absl::StrCat(
          "unshare(CLONE_NEWNET): ", std::strerror(failure.error),
          "; unshare(CLONE_NEWUSER|CLONE_NEWNET): ",
          std::strerror(failure.error2));
    case kStageDup:
      return absl::StrCat("dup2: ", std::strerror(failure.error));
    case kStageChdir:
      return absl::StrCat("chdir ", working_dir, ": ",
                          std::strerror(failure.error));
    case kStageExec:
      return absl::StrCat("execve ", executable, ": ",
                          std::strerror(failure.error));
  }
  return absl::StrCat("child setup failed: ", std::strerror(failure.error));
}

// Whether any process of group `pgid` is alive (zombies do not count: they
// hold no resources, and an orphaned one may never be reaped when PID 1
// does not reap).
bool GroupHasLiveMembers(pid_t pgid) {
  if (kill(-pgid, 0) != 0 && errno == ESRCH) return false;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return true;  // Unknown: assume alive.
  bool alive = false;
  while (struct dirent* entry = readdir(dir)) {
    int64_t pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid) || pid <= 0) continue;
    std::string path = absl::StrCat("/proc/", pid, "/stat");
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    char buffer[1024];
    ssize_t n = read(fd, buffer, sizeof buffer);
    close(fd);
    if (n <= 0) continue;
    absl::StatusOr<orchestrator::ProcStat> stat = orchestrator::ParseProcStat(
        absl::string_view(buffer, static_cast<size_t>(n)));
    if (!stat.ok() || stat->pgrp != pgid) continue;
    if (stat->state == 'Z' || stat->state == 'X') continue;
    alive = true;
    break;
  }
  closedir(dir);
  return alive;
}

// Milliseconds from now until `until` for poll(), rounded up, >= 0.
int PollMillis(absl::Time now, absl::Time until) {
  if (until == absl::InfiniteFuture()) return -1;
  if (until <= now) return 0;
  absl::Duration left = until - now;
  int64_t ms =
      absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1)));
  return static_cast<int>(std::min<int64_t>(ms, INT_MAX));
}

// One output stream of the child: accumulated up to a limit, split into
// lines for the callback.
struct OutputStream {
  UniqueFd fd;
  std::string* text = nullptr;
  int64_t max_bytes = 0;
  bool over_limit = false;  // More bytes came than max_bytes.
  size_t line_start = 0;
  const std::function<void(absl::string_view)>* on_line = nullptr;

  void Append(const char* data, size_t length) {
    size_t room = text->size() < static_cast<size_t>(max_bytes)
                      ? static_cast<size_t>(max_bytes) - text->size()
                      : 0;
    size_t take = std::min(room, length);
    if (take < length) over_limit = true;
    if (take == 0) return;
    size_t scan = text->size();
    text->append(data, take);
    if (on_line == nullptr || !*on_line) return;
    while (true) {
      size_t newline = text->find('\n', scan);
      if (newline == std::string::npos) break;
      (*on_line)(
          absl::string_view(*text).substr(line_start, newline - line_start));
      line_start = newline + 1;
      scan = line_start;
    }
  }

  // Reads what is available (a bounded number of chunks, so that a fast
  // writer cannot keep us here). Closes the descriptor at EOF or on an
  // error.
  void Read() {
    char buffer[kChunk];
    for (int chunks = 0; fd.valid() && chunks < 16; ++chunks) {
      ssize_t n = read(fd.get(), buffer, sizeof buffer);
      if (n > 0) {
        Append(buffer, static_cast<size_t>(n));
        // A pipe holds 64 KiB at most: one full read rarely has more behind
        // it, and poll() tells us when it does.
        if (static_cast<size_t>(n) < sizeof buffer) return;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      fd.Reset();  // EOF or error.
    }
  }

  // The last unterminated line, unless the text was cut at the limit.
  void Finish() {
    fd.Reset();
    if (on_line == nullptr || !*on_line || over_limit) return;
    if (line_start < text->size()) {
      (*on_line)(absl::string_view(*text).substr(line_start));
      line_start = text->size();
    }
  }
};

}  // namespace

CancelToken::CancelToken() : fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

CancelToken::~CancelToken() {
  if (fd_ >= 0) close(fd_);
}

void CancelToken::Cancel() {
  if (cancelled_.exchange(true)) return;
  if (fd_ >= 0) {
    uint64_t one = 1;
    (void)!write(fd_, &one, sizeof one);
  }
}

absl::string_view EndName(ChildResult::End end) {
  switch (end) {
    case ChildResult::End::kExited:
      return "exited";
    case ChildResult::End::kSignaled:
      return "killed by signal";
    case ChildResult::End::kTimedOut:
      return "timed out";
    case ChildResult::End::kCancelled:
      return "cancelled";
    case ChildResult::End::kOutputTooLarge:
      return "output too large";
    case ChildResult::End::kSpawnFailed:
      return "spawn failed";
  }
  return "unknown";
}

ChildResult RunChild(const ChildSpec& spec, CancelToken* cancel) {
  ChildResult result;
  const absl::Time started = absl::Now();
  auto spawn_failed = [&](std::string error) {
    result.end = ChildResult::End::kSpawnFailed;
    result.spawn_error = std::move(error);
    result.elapsed = absl::Now() - started;
    return result;
  };
  if (cancel != nullptr && cancel->cancelled()) {
    result.end = ChildResult::End::kCancelled;
    return result;
  }
  if (spec.executable.empty() || spec.executable[0] != '/') {
    return spawn_failed(absl::StrCat("executable \"", spec.executable,
                                     "\" is not an absolute path"));
  }

  // Everything the child needs is prepared before fork(): after it, only
  // async-signal-safe calls.
  std::vector<std::string> argv_strings;
  argv_strings.push_back(spec.executable);
  argv_strings.insert(argv_strings.end(), spec.args.begin(), spec.args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings = spec.env;
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  const std::string working_dir =
      spec.working_dir.empty() ? std::string("/") : spec.working_dir;
  const std::string uid_map = absl::StrCat(getuid(), " ", getuid(), " 1");
  const std::string gid_map = absl::StrCat(getgid(), " ", getgid(), " 1");
  const bool isolate = spec.isolate_network;

  UniqueFd stdin_read, stdin_write, stdout_read, stdout_write, stderr_read,
      stderr_write, status_read, status_write;
  if (!MakePipe(&stdin_read, &stdin_write) ||
      !MakePipe(&stdout_read, &stdout_write) ||
      !MakePipe(&stderr_read, &stderr_write) ||
      !MakePipe(&status_read, &status_write)) {
    return spawn_failed(absl::StrCat("pipe: ", std::strerror(errno)));
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
  const int child_in = stdin_read.get();
  const int child_out = stdout_write.get();
  const int child_err = stderr_write.get();
  const int report = status_write.get();

  // Blocked before fork (the child resets its mask before exec).
  ScopedSigpipeBlock sigpipe_block;

  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    return spawn_failed(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    // Dies with the thread that runs it (RunChild's caller blocks until the
    // child is reaped, so that thread outlives a normal run): a service
    // killed with SIGKILL leaves no tool behind. Checked against a parent
    // that died before the call.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    if (setpgid(0, 0) != 0) ChildFail(report, kStageSetpgid, errno);
    for (int s = 1; s < NSIG; ++s) sigaction(s, &default_action, nullptr);
    sigprocmask(SIG_SETMASK, &empty_mask, nullptr);
    if (isolate && unshare(CLONE_NEWNET) != 0) {
      int error = errno;
      if (unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) {
        ChildFail(report, kStageUnshare, error, errno);
      }
      // Keep our own ids inside the new user namespace (else "nobody").
      WriteSmallFile("/proc/self/setgroups", "deny", 4);
      WriteSmallFile("/proc/self/uid_map", uid_map.data(), uid_map.size());
      WriteSmallFile("/proc/self/gid_map", gid_map.data(), gid_map.size());
    }
    // All four are >= 3 (MakePipe), so 0..2 can be overwritten in any
    // order; the status pipe goes to 3 last.
    if (dup2(child_in, STDIN_FILENO) < 0 ||
        dup2(child_out, STDOUT_FILENO) < 0 ||
        dup2(child_err, STDERR_FILENO) < 0 || dup2(report, 3) < 0) {
      ChildFail(report, kStageDup, errno);
    }
    fcntl(3, F_SETFD, FD_CLOEXEC);
    if (close_range(4, ~0U, 0) != 0) {
      for (int fd = 4; fd < max_fd; ++fd) close(fd);
    }
    if (chdir(working_dir.c_str()) != 0) ChildFail(3, kStageChdir, errno);
    execve(argv[0], argv.data(), envp.data());
    ChildFail(3, kStageExec, errno);
  }

  result.pid = pid;
  stdin_read.Reset();
  stdout_write.Reset();
  stderr_write.Reset();
  status_write.Reset();
  ChildFailure failure = {0, 0, 0};
  ssize_t got;
  do {
    got = read(status_read.get(), &failure, sizeof failure);
  } while (got < 0 && errno == EINTR);
  status_read.Reset();
  if (got > 0) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return spawn_failed(SpawnErrorText(failure, spec.executable, working_dir));
  }

  // The leader stays unreaped (a zombie at worst) until the end, so that its
  // pid, which is the group id, cannot be reused while we signal the group.
  // (Through syscall(): glibc 2.36's <sys/pidfd.h> lacks extern "C".) A
  // kernel without pidfds makes the loop poll every kFallbackPoll.
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  auto leader_exited = [pid]() {
    siginfo_t info;
    std::memset(&info, 0, sizeof info);
    return waitid(P_PID, static_cast<id_t>(pid), &info,
                  WEXITED | WNOHANG | WNOWAIT) == 0 &&
           info.si_pid == pid;
  };

  SetNonBlocking(stdin_write.get());
  SetNonBlocking(stdout_read.get());
  SetNonBlocking(stderr_read.get());
  OutputStream out;
  out.fd = std::move(stdout_read);
  out.text = &result.stdout_text;
  out.max_bytes = std::max<int64_t>(spec.limits.max_stdout_bytes, 0);
  out.on_line = &spec.on_stdout_line;
  OutputStream err;
  err.fd = std::move(stderr_read);
  err.text = &result.stderr_text;
  err.max_bytes = std::max<int64_t>(spec.limits.max_stderr_bytes, 0);
  err.on_line = &spec.on_stderr_line;
  size_t stdin_offset = 0;
  if (spec.stdin_data.empty()) stdin_write.Reset();

  const absl::Duration grace =
      std::max(spec.limits.kill_grace, absl::ZeroDuration());
  const absl::Time deadline =
      started + std::max(spec.timeout, absl::ZeroDuration());
  std::optional<ChildResult::End> ended;  // Set when we end the group.
  bool exited = false;
  absl::Time linger_until = absl::InfiniteFuture();
  const int cancel_fd = cancel != nullptr ? cancel->fd() : -1;

  // Phase 1: feed stdin and read until the leader exited and both pipes
  // reached EOF (or a grace period after its exit: a background process
  // may hold them open), the deadline, cancellation or too much output.
  while (true) {
    absl::Time now = absl::Now();
    if (!exited && leader_exited()) {
      exited = true;
      pidfd.Reset();
      linger_until = std::min(now + grace, std::max(deadline, now));
    }
    if (out.over_limit) {
      ended = ChildResult::End::kOutputTooLarge;
      break;
    }
    bool cancelled = cancel != nullptr && cancel->cancelled();
    if (exited) {
      if (!out.fd.valid() && !err.fd.valid()) break;
      if (now >= linger_until || cancelled) break;
    } else {
      if (cancelled) {
        ended = ChildResult::End::kCancelled;
        break;
      }
      if (now >= deadline) {
        ended = ChildResult::End::kTimedOut;
        break;
      }
    }

    struct pollfd fds[5];
    nfds_t count = 0;
    int in_index = -1, out_index = -1, err_index = -1;
    if (stdin_write.valid()) {
      in_index = static_cast<int>(count);
      fds[count++] = {stdin_write.get(), POLLOUT, 0};
    }
    if (out.fd.valid()) {
      out_index = static_cast<int>(count);
      fds[count++] = {out.fd.get(), POLLIN, 0};
    }
    if (err.fd.valid()) {
      err_index = static_cast<int>(count);
      fds[count++] = {err.fd.get(), POLLIN, 0};
    }
    absl::Time wake = exited ? linger_until : deadline;
    if (!exited) {
      if (cancel_fd >= 0) fds[count++] = {cancel_fd, POLLIN, 0};
      if (pidfd.valid()) fds[count++] = {pidfd.get(), POLLIN, 0};
      if (!pidfd.valid() || (cancel != nullptr && cancel_fd < 0)) {
        wake = std::min(wake, now + kFallbackPoll);
      }
    }
    int ready = poll(fds, count, PollMillis(now, wake));
    if (ready < 0) {
      if (errno == EINTR) continue;
      absl::SleepFor(kFallbackPoll);  // Should not happen; do not spin.
      continue;
    }
    if (in_index >= 0 && fds[in_index].revents != 0) {
      const std::string& data = spec.stdin_data;
      size_t chunk = std::min(kChunk, data.size() - stdin_offset);
      ssize_t n = write(stdin_write.get(), data.data() + stdin_offset, chunk);
      if (n > 0) {
        stdin_offset += static_cast<size_t>(n);
        if (stdin_offset >= data.size()) stdin_write.Reset();
      } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                 errno != EINTR) {
        stdin_write.Reset();  // EPIPE: the child does not read its stdin.
      }
    }
    if (out_index >= 0 && fds[out_index].revents != 0) out.Read();
    if (err_index >= 0 && fds[err_index].revents != 0) err.Read();
  }
  stdin_write.Reset();

  // Phase 2: end whatever is left of the group: SIGTERM, the grace period,
  // SIGKILL, the grace period again. Output is drained meanwhile (a child
  // blocked on a full pipe could not act on SIGTERM).
  auto drain_until_empty = [&](absl::Time until) {
    while (true) {
      bool leader_done = exited || leader_exited();
      if (leader_done) exited = true;
      if (leader_done && !GroupHasLiveMembers(pid)) return true;
      absl::Time now = absl::Now();
      if (now >= until) return false;
      struct pollfd fds[2];
      nfds_t count = 0;
      if (out.fd.valid()) fds[count++] = {out.fd.get(), POLLIN, 0};
      if (err.fd.valid()) fds[count++] = {err.fd.get(), POLLIN, 0};
      int wait = PollMillis(now, std::min(until, now + kGroupPoll));
      if (count == 0) {
        absl::SleepFor(absl::Milliseconds(wait));
        continue;
      }
      if (poll(fds, count, wait) > 0) {
        if (out.fd.valid()) out.Read();
        if (err.fd.valid()) err.Read();
      }
    }
  };
  if (ended.has_value() || !exited || GroupHasLiveMembers(pid)) {
    kill(-pid, SIGTERM);
    if (!drain_until_empty(absl::Now() + grace)) {
      kill(-pid, SIGKILL);
      result.killed = true;
      drain_until_empty(absl::Now() + grace);
    }
  }
  // The group is gone: take what is buffered and stop reading (a process
  // that left the group could hold the pipes open forever).
  out.Read();
  err.Read();
  out.Finish();
  err.Finish();
  result.stderr_truncated = err.over_limit;

  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (ended.has_value()) {
    result.end = *ended;
  } else if (WIFEXITED(status)) {
    result.end = ChildResult::End::kExited;
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.end = ChildResult::End::kSignaled;
    result.term_signal = WTERMSIG(status);
  } else {
    result.end = ChildResult::End::kSignaled;
  }
  result.elapsed = absl::Now() - started;
  return result;
}

}  // namespace iot2mqtt::discovery
