#include "sdk/testing/loopback_broker.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"

namespace iot2mqtt::sdk::testing {
namespace {

sockaddr_in Loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return addr;
}

std::string Errno(absl::string_view what) {
  return absl::StrCat(what, ": ", std::strerror(errno));
}

}  // namespace

int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr = Loopback(0);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    socklen_t len = sizeof(addr);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port = ntohs(addr.sin_port);
    }
  }
  close(fd);
  return port;
}

bool LoopbackPortAccepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr = Loopback(port);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

absl::StatusOr<std::unique_ptr<LoopbackBroker>> LoopbackBroker::Start(
    LoopbackBrokerOptions options) {
  if (options.binary.empty()) {
    const char* env = std::getenv("IOT2MQTT_MOSQUITTO");
    options.binary =
        env != nullptr && *env != '\0' ? env : "/usr/sbin/mosquitto";
  }
  if (access(options.binary.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("no mosquitto broker at ", options.binary));
  }
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = absl::StrCat(
      tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/iot2mqtt-broker-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(Errno("mkdtemp"));
  }
  int port = FreeLoopbackPort();
  if (port == 0) return absl::UnavailableError("no free loopback port");
  std::unique_ptr<LoopbackBroker> broker(
      new LoopbackBroker(std::move(options), pattern, port));
  {
    std::ofstream conf(broker->dir_ + "/mosquitto.conf");
    conf << "listener " << port << " 127.0.0.1\n"
         << "allow_anonymous true\n"
         << "persistence false\n"
         << "log_dest file " << broker->dir_ << "/mosquitto.log\n"
         << "log_type error\nlog_type warning\nlog_type notice\n"
         << "log_type information\n"
         << "connection_messages true\n"
         << "set_tcp_nodelay "
         << (broker->options_.tcp_nodelay ? "true" : "false") << "\n"
         << broker->options_.extra_config << "\n";
    if (!conf) return absl::InternalError("cannot write mosquitto.conf");
  }
  if (absl::Status s = broker->Launch(); !s.ok()) return s;
  return broker;
}

absl::Status LoopbackBroker::Launch() {
  if (pid_ > 0) return absl::FailedPreconditionError("broker already running");
  std::string conf = dir_ + "/mosquitto.conf";
  std::string out = dir_ + "/stdout.log";
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError(Errno("fork"));
  if (pid == 0) {
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
    execl(options_.binary.c_str(), options_.binary.c_str(), "-c", conf.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  pid_ = pid;
  const absl::Time deadline = absl::Now() + options_.start_timeout;
  while (absl::Now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::UnavailableError(absl::StrCat(
          "mosquitto exited at start (port ", port_, "): ", Log()));
    }
    if (LoopbackPortAccepts(port_)) return absl::OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  Kill().IgnoreError();
  return absl::DeadlineExceededError(
      absl::StrCat("mosquitto did not accept connections on port ", port_));
}

absl::Status LoopbackBroker::Terminate(int signal_number,
                                       absl::Duration grace) {
  if (pid_ <= 0) return absl::OkStatus();
  kill(pid_, signal_number);
  const absl::Time deadline = absl::Now() + grace;
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || (r < 0 && errno == ECHILD)) break;
    if (absl::Now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  pid_ = -1;
  return absl::OkStatus();
}

absl::Status LoopbackBroker::Stop() {
  return Terminate(SIGTERM, absl::Seconds(5));
}
absl::Status LoopbackBroker::Kill() {
  return Terminate(SIGKILL, absl::Seconds(5));
}

absl::Status LoopbackBroker::Restart() {
  if (pid_ > 0) {
    if (absl::Status s = Stop(); !s.ok()) return s;
  }
  return Launch();
}

std::string LoopbackBroker::Log() const {
  std::string text;
  for (const char* name : {"/mosquitto.log", "/stdout.log"}) {
    std::ifstream in(dir_ + name);
    std::stringstream buffer;
    buffer << in.rdbuf();
    text += buffer.str();
  }
  return text;
}

std::map<std::string, std::string> LoopbackBroker::Env() const {
  return {{"MQTT_HOST", host()}, {"MQTT_PORT", absl::StrCat(port_)}};
}

LoopbackBroker::~LoopbackBroker() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

}  // namespace iot2mqtt::sdk::testing
