#include "tests/support/test_support.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace iot2mqtt::testing {
namespace {

std::string Errno(const char* what) {
  return absl::StrCat(what, ": ", std::strerror(errno));
}

void RemoveTree(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    chmod(path.c_str(), 0700);
    for (const std::string& name : ListDir(path)) {
      RemoveTree(path + "/" + name);
    }
    rmdir(path.c_str());
  } else {
    unlink(path.c_str());
  }
}

absl::StatusOr<int> ConnectLoopback(int port, absl::Duration timeout) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(Errno("socket"));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    std::string error = Errno("connect");
    close(fd);
    return absl::UnavailableError(error);
  }
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(absl::ToInt64Seconds(timeout));
  tv.tv_usec = static_cast<suseconds_t>(
      absl::ToInt64Microseconds(timeout - absl::Seconds(tv.tv_sec)));
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return fd;
}

bool SendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Reads until EOF, error or deadline.
std::string ReceiveAll(int fd, absl::Time deadline) {
  std::string out;
  char buf[16384];
  while (absl::Now() < deadline) {
    pollfd pfd{fd, POLLIN, 0};
    int ms = static_cast<int>(std::max<int64_t>(
        1, absl::ToInt64Milliseconds(deadline - absl::Now())));
    int ready = poll(&pfd, 1, ms);
    if (ready <= 0) break;
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::string DecodeChunked(absl::string_view body) {
  std::string out;
  while (!body.empty()) {
    size_t eol = body.find("\r\n");
    if (eol == absl::string_view::npos) break;
    std::string size_text(body.substr(0, eol));
    size_t semicolon = size_text.find(';');
    if (semicolon != std::string::npos) size_text.resize(semicolon);
    size_t size = std::strtoul(size_text.c_str(), nullptr, 16);
    body.remove_prefix(eol + 2);
    if (size == 0 || body.size() < size) break;
    absl::StrAppend(&out, body.substr(0, size));
    body.remove_prefix(std::min(body.size(), size + 2));
  }
  return out;
}

}  // namespace

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = absl::StrCat(base != nullptr && *base ? base : "/tmp",
                                     "/iot2mqtt-test-XXXXXX");
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (mkdtemp(buffer.data()) == nullptr)
    throw std::runtime_error(Errno("mkdtemp"));
  path_ = buffer.data();
}

TempDir::~TempDir() { RemoveTree(path_); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write " + path);
  out << content;
  if (!out.flush()) throw std::runtime_error("cannot write " + path);
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* entry = readdir(d)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(Errno("socket"));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::string error = Errno("bind");
    close(fd);
    throw std::runtime_error(error);
  }
  close(fd);
  return ntohs(addr.sin_port);
}

bool PortAccepts(int port) {
  absl::StatusOr<int> fd = ConnectLoopback(port, absl::Seconds(1));
  if (!fd.ok()) return false;
  close(*fd);
  return true;
}

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  absl::Duration pause = absl::Milliseconds(2);
  while (true) {
    if (condition()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(pause);
    pause = std::min(pause * 2, absl::Milliseconds(50));
  }
}

std::string BinaryPath(const std::string& name) {
  const char* dir = std::getenv("IOT2MQTT_BINARY_DIR");
  if (dir == nullptr || *dir == '\0') {
    throw std::runtime_error(
        "IOT2MQTT_BINARY_DIR is not set (run through ctest)");
  }
  return absl::StrCat(dir, "/bin/", name);
}

std::string SourcePath(const std::string& relative) {
  const char* dir = std::getenv("IOT2MQTT_SOURCE_DIR");
  // The tree this binary was built from, when the environment doesn't say.
  if (dir == nullptr || *dir == '\0') dir = IOT2MQTT_DEFAULT_SOURCE_DIR;
  return absl::StrCat(dir, "/", relative);
}

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::string& path, const std::vector<std::string>& args,
    const std::map<std::string, std::string>& env, const std::string& log_path,
    const std::string& stdin_path) {
  std::vector<std::string> env_strings;
  for (const char* inherited : {"PATH", "HOME", "TMPDIR"}) {
    const char* value = std::getenv(inherited);
    if (value != nullptr && env.count(inherited) == 0) {
      env_strings.push_back(absl::StrCat(inherited, "=", value));
    }
  }
  for (const auto& [key, value] : env) {
    env_strings.push_back(absl::StrCat(key, "=", value));
  }
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings = {path};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  int out_fd = log_path.empty()
                   ? open("/dev/null", O_WRONLY | O_CLOEXEC)
                   : open(log_path.c_str(),
                          O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out_fd < 0) return absl::InternalError(Errno("open log"));
  int in_fd = open(stdin_path.empty() ? "/dev/null" : stdin_path.c_str(),
                   O_RDONLY | O_CLOEXEC);
  if (in_fd < 0) {
    std::string error = Errno("open stdin");
    close(out_fd);
    return absl::InternalError(error);
  }
  pid_t pid = fork();
  if (pid < 0) {
    std::string error = Errno("fork");
    close(out_fd);
    close(in_fd);
    return absl::InternalError(error);
  }
  if (pid == 0) {
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(out_fd, STDOUT_FILENO);
    dup2(out_fd, STDERR_FILENO);
    dup2(in_fd, STDIN_FILENO);
    execve(path.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  close(out_fd);
  close(in_fd);
  // Also from the parent: no race with the child's own call.
  setpgid(pid, pid);
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid));
}

ChildProcess::~ChildProcess() {
  if (!reaped_) {
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  } else {
    kill(-pid_, SIGKILL);  // Grandchildren, if any.
  }
}

void ChildProcess::Signal(int signal_number) {
  if (!reaped_) kill(pid_, signal_number);
}

bool ChildProcess::Running() {
  if (reaped_) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    exit_code_ =
        WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

absl::StatusOr<int> ChildProcess::Wait(absl::Duration timeout) {
  if (!WaitFor([this] { return !Running(); }, timeout)) {
    return absl::DeadlineExceededError(
        absl::StrCat("process ", pid_, " still running after ",
                     absl::FormatDuration(timeout)));
  }
  return exit_code_;
}

std::string HttpResponse::Header(const std::string& name) const {
  auto it = headers.find(absl::AsciiStrToLower(name));
  return it == headers.end() ? "" : it->second;
}

int StatusOfRaw(const std::string& raw) {
  if (!absl::StartsWith(raw, "HTTP/1.")) return 0;
  size_t space = raw.find(' ');
  if (space == std::string::npos || raw.size() < space + 4) return 0;
  int status = 0;
  if (!absl::SimpleAtoi(raw.substr(space + 1, 3), &status)) return 0;
  return status;
}

absl::StatusOr<std::string> RawExchange(int port, const std::string& raw,
                                        absl::Duration timeout) {
  absl::StatusOr<int> fd = ConnectLoopback(port, timeout);
  if (!fd.ok()) return fd.status();
  absl::Time deadline = absl::Now() + timeout;
  SendAll(*fd, raw);  // The server may close early; read what it said anyway.
  std::string out = ReceiveAll(*fd, deadline);
  close(*fd);
  return out;
}

absl::StatusOr<HttpResponse> HttpRequest(
    int port, const std::string& method, const std::string& target,
    const std::string& body,
    const std::vector<std::pair<std::string, std::string>>& headers,
    absl::Duration timeout) {
  std::string request =
      absl::StrCat(method, " ", target, " HTTP/1.1\r\nHost: 127.0.0.1:", port,
                   "\r\nConnection: close\r\n");
  bool has_content_type = false;
  for (const auto& [name, value] : headers) {
    absl::StrAppend(&request, name, ": ", value, "\r\n");
    if (absl::EqualsIgnoreCase(name, "content-type")) has_content_type = true;
  }
  if (!body.empty() || method == "PUT" || method == "POST" ||
      method == "PATCH") {
    if (!has_content_type)
      absl::StrAppend(&request, "Content-Type: application/json\r\n");
    absl::StrAppend(&request, "Content-Length: ", body.size(), "\r\n");
  }
  absl::StrAppend(&request, "\r\n", body);

  absl::StatusOr<int> fd = ConnectLoopback(port, timeout);
  if (!fd.ok()) return fd.status();
  absl::Time deadline = absl::Now() + timeout;
  if (!SendAll(*fd, request)) {
    close(*fd);
    return absl::UnavailableError(Errno("send"));
  }
  std::string raw = ReceiveAll(*fd, deadline);
  close(*fd);

  size_t header_end = raw.find("\r\n\r\n");
  int status = StatusOfRaw(raw);
  if (header_end == std::string::npos || status == 0) {
    return absl::DataLossError(
        absl::StrCat("malformed HTTP response: '", raw.substr(0, 200), "'"));
  }
  HttpResponse response;
  response.status = status;
  std::vector<std::string> lines =
      absl::StrSplit(raw.substr(0, header_end), "\r\n");
  for (size_t i = 1; i < lines.size(); ++i) {
    size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    std::string name = absl::AsciiStrToLower(lines[i].substr(0, colon));
    std::string value(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
    response.headers[name] = value;
  }
  std::string payload = raw.substr(header_end + 4);
  if (absl::EqualsIgnoreCase(response.Header("transfer-encoding"), "chunked")) {
    payload = DecodeChunked(payload);
  } else if (!response.Header("content-length").empty()) {
    size_t length = 0;
    if (absl::SimpleAtoi(response.Header("content-length"), &length) &&
        payload.size() > length) {
      payload.resize(length);
    }
  }
  response.body = std::move(payload);
  return response;
}

}  // namespace iot2mqtt::testing
