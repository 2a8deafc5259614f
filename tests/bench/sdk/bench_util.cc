#include "tests/bench/sdk/bench_util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace iot2mqtt::bench {

std::unique_ptr<testing::ChildProcess> StartOrDie(
    const std::string& path, const std::vector<std::string>& args,
    const std::map<std::string, std::string>& env, const std::string& log,
    const std::string& input) {
  auto child = testing::ChildProcess::Start(path, args, env, log, input);
  if (!child.ok()) {
    std::fprintf(stderr, "cannot start %s: %s\n", path.c_str(),
                 child.status().ToString().c_str());
    std::exit(1);
  }
  return *std::move(child);
}

std::unique_ptr<testing::ChildProcess> StartDemo(
    const std::string& dir, const std::string& instance,
    const std::string& instance_json, const std::string& mqtt_host,
    int mqtt_port) {
  testing::WriteFile(dir + "/demo.json", instance_json);
  testing::WriteFile(dir + "/empty.env", "");
  return StartOrDie(BinDir() + "/iot2mqtt-connector-demo", {},
                    {{"INSTANCE_NAME", instance},
                     {"IOT2MQTT_INSTANCE_FILE", dir + "/demo.json"},
                     {"IOT2MQTT_ENV_FILE", dir + "/empty.env"},
                     {"MQTT_HOST", mqtt_host},
                     {"MQTT_PORT", std::to_string(mqtt_port)},
                     {"LOG_LEVEL", "WARNING"}},
                    dir + "/demo.log");
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
