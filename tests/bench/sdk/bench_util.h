#ifndef IOT2MQTT_TESTS_BENCH_SDK_BENCH_UTIL_H_
#define IOT2MQTT_TESTS_BENCH_SDK_BENCH_UTIL_H_

// Small helpers shared by the SDK benchmarks (no test framework).

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/test_support.h"

namespace iot2mqtt::bench {

// Starts a child process (tests/support ChildProcess: own process group,
// killed on destruction); on failure prints why and exits 1.
std::unique_ptr<testing::ChildProcess> StartOrDie(
    const std::string& path, const std::vector<std::string>& args,
    const std::map<std::string, std::string>& env, const std::string& log = "",
    const std::string& input = "");

// Starts build/bin/iot2mqtt-connector-demo as `instance` with
// `instance_json` as its instance document (written to `dir`), connected to
// the broker at host:port, logging WARNING and up to dir/demo.log.
std::unique_ptr<testing::ChildProcess> StartDemo(
    const std::string& dir, const std::string& instance,
    const std::string& instance_json, const std::string& mqtt_host,
    int mqtt_port);

// The build tree's bin/ directory: $IOT2MQTT_BINARY_DIR/bin, else the
// directory of this executable.
std::string BinDir();
// VmRSS and VmHWM of a process in KiB.
long RssKib(pid_t pid);
long PeakRssKib(pid_t pid);
// CPU time of all threads of a process in seconds.
double CpuSeconds(pid_t pid);
// The q-quantile (0..1) of `values` (sorted in place).
double Quantile(std::vector<double>& values, double q);

}  // namespace iot2mqtt::bench

#endif  // IOT2MQTT_TESTS_BENCH_SDK_BENCH_UTIL_H_
