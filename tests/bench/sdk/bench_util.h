#ifndef IOT2MQTT_TESTS_BENCH_SDK_BENCH_UTIL_H_
#define IOT2MQTT_TESTS_BENCH_SDK_BENCH_UTIL_H_

// Small helpers shared by the SDK benchmarks (no test framework).

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace iot2mqtt::bench {

// A child process with its stdout/stderr to `log` (or /dev/null), stdin from
// `input` (or /dev/null); killed (SIGKILL) on destruction unless reaped.
class Child {
 public:
  Child(const std::string& path, const std::vector<std::string>& args,
        const std::map<std::string, std::string>& env,
        const std::string& log = "", const std::string& input = "");
  ~Child();
  pid_t pid() const { return pid_; }
  // Exit code (or 128 + signal); -1 on timeout.
  int Wait(double timeout_s);
  void Signal(int signal_number);

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
};

// The build tree's bin/ directory: $IOT2MQTT_BINARY_DIR/bin, else the
// directory of this executable.
std::string BinDir();
// "/tmp/iot2mqtt-bench-XXXXXX", created.
std::string TempDir();
void WriteFile(const std::string& path, const std::string& content);
// VmRSS and VmHWM of a process in KiB.
long RssKib(pid_t pid);
long PeakRssKib(pid_t pid);
// CPU time of all threads of a process in seconds.
double CpuSeconds(pid_t pid);
// The q-quantile (0..1) of `values` (sorted in place).
double Quantile(std::vector<double>& values, double q);

}  // namespace iot2mqtt::bench

#endif  // IOT2MQTT_TESTS_BENCH_SDK_BENCH_UTIL_H_
