#include "tests/bench/sdk/bench_util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace iot2mqtt::bench {

Child::Child(const std::string& path, const std::vector<std::string>& args,
             const std::map<std::string, std::string>& env,
             const std::string& log, const std::string& input) {
  std::vector<std::string> env_strings;
  for (const char* inherited : {"PATH", "HOME", "TMPDIR"}) {
    const char* value = std::getenv(inherited);
    if (value != nullptr)
      env_strings.push_back(std::string(inherited) + "=" + value);
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings = {path};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    int out = open(log.empty() ? "/dev/null" : log.c_str(),
                   O_WRONLY | O_CREAT | O_APPEND, 0644);
    int in = open(input.empty() ? "/dev/null" : input.c_str(), O_RDONLY);
    dup2(out, STDOUT_FILENO);
    dup2(out, STDERR_FILENO);
    dup2(in, STDIN_FILENO);
    execve(path.c_str(), argv.data(), envp.data());
    _exit(127);
  }
}

Child::~Child() {
  if (pid_ > 0 && !reaped_) {
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
}

void Child::Signal(int signal_number) {
  if (pid_ > 0 && !reaped_) kill(pid_, signal_number);
}

int Child::Wait(double timeout_s) {
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      return 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return -1;
}

std::string BinDir() {
  const char* dir = std::getenv("IOT2MQTT_BINARY_DIR");
  if (dir != nullptr && *dir != '\0') return std::string(dir) + "/bin";
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return ".";
  std::string path(self, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/'));
}

std::string TempDir() {
  char name[] = "/tmp/iot2mqtt-bench-XXXXXX";
  if (mkdtemp(name) == nullptr) std::abort();
  return name;
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

namespace {
long StatusField(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      return std::strtol(line.c_str() + field.size() + 1, nullptr, 10);
    }
  }
  return -1;
}
}  // namespace

long RssKib(pid_t pid) { return StatusField(pid, "VmRSS"); }
long PeakRssKib(pid_t pid) { return StatusField(pid, "VmHWM"); }

double CpuSeconds(pid_t pid) {
  // Nanosecond run time of every thread (/proc/<pid>/task/*/schedstat);
  // utime/stime in /proc/<pid>/stat only count 10 ms ticks.
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  double total = 0;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    std::ifstream in(entry.path() / "schedstat");
    double ns = 0;
    if (in >> ns) total += ns;
  }
  return total / 1e9;
}

double Quantile(std::vector<double>& values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t index =
      static_cast<size_t>(q * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

}  // namespace iot2mqtt::bench
