#ifndef IOT2MQTT_TESTS_SUPPORT_TEST_SUPPORT_H_
#define IOT2MQTT_TESTS_SUPPORT_TEST_SUPPORT_H_

// Helpers shared by integration and end-to-end tests: temporary directories,
// free loopback ports, child processes, a minimal HTTP/1.1 client, waiting on
// a condition with a deadline (never a bare sleep). Loopback only.

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace iot2mqtt::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Join(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Whole-file helpers; abort the test (via Catch REQUIRE in the caller) on
// error.
std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& content);
// Names of the entries of `dir` (no "." / ".."), sorted.
std::vector<std::string> ListDir(const std::string& dir);

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();
// Whether something accepts TCP connections on 127.0.0.1:port now.
bool PortAccepts(int port);

// Polls `condition` every few milliseconds until it holds or `timeout`
// passes; returns whether it held.
bool WaitFor(const std::function<bool()>& condition,
             absl::Duration timeout = absl::Seconds(10));

// Path of a binary built by this tree: $IOT2MQTT_BINARY_DIR/bin/<name>
// (CTest sets IOT2MQTT_BINARY_DIR).
std::string BinaryPath(const std::string& name);
// Path of a file in the source tree: $IOT2MQTT_SOURCE_DIR/<relative>, by
// default the tree this test binary was built from.
std::string SourcePath(const std::string& relative);

// A child process in its own process group with a controlled environment
// (PATH, HOME, TMPDIR are inherited; everything else comes from `env`).
// stdout and stderr go to `log_path` (or /dev/null when empty), stdin comes
// from `stdin_path` (or /dev/null when empty).
// The destructor kills the whole group (SIGKILL) and reaps it.
class ChildProcess {
 public:
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(
      const std::string& path, const std::vector<std::string>& args,
      const std::map<std::string, std::string>& env,
      const std::string& log_path = "", const std::string& stdin_path = "");
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  void Signal(int signal_number);
  // Waits for exit; returns the exit code, 128+signal when killed, or
  // DEADLINE_EXCEEDED.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  bool Running();

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_;
  bool reaped_ = false;
  int exit_code_ = -1;
};

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // Lower-case names.
  std::string body;
  // Header value or "" when absent (name in any case).
  std::string Header(const std::string& name) const;
};

// One HTTP/1.1 request on a fresh connection to 127.0.0.1:port
// (`Connection: close`, Content-Length set when `body` is not empty or the
// method is PUT/POST/PATCH). Fails on connection errors or a malformed answer.
absl::StatusOr<HttpResponse> HttpRequest(
    int port, const std::string& method, const std::string& target,
    const std::string& body = "",
    const std::vector<std::pair<std::string, std::string>>& headers = {},
    absl::Duration timeout = absl::Seconds(10));

// Sends raw bytes and returns whatever arrives until the peer closes or
// `timeout` passes (for malformed-HTTP tests).
absl::StatusOr<std::string> RawExchange(
    int port, const std::string& raw,
    absl::Duration timeout = absl::Seconds(5));

// Parses the status code of a raw HTTP/1.1 response ("HTTP/1.1 400 ..."),
// 0 when there is none.
int StatusOfRaw(const std::string& raw);

}  // namespace iot2mqtt::testing

#endif  // IOT2MQTT_TESTS_SUPPORT_TEST_SUPPORT_H_
