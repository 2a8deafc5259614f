#ifndef IOT2MQTT_TESTS_INTEGRATION_CONFORMANCE_CONFORMANCE_SUPPORT_H_
#define IOT2MQTT_TESTS_INTEGRATION_CONFORMANCE_CONFORMANCE_SUPPORT_H_

// Shared by the conformance checker's tests: a Mosquitto on a free loopback
// port and a run of the iot2mqtt-conformance binary with its report parsed.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "sdk/testing/loopback_broker.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::conformance {

// The SDK's LoopbackBroker (Mosquitto on 127.0.0.1:<free port>, anonymous,
// no persistence) with TCP_NODELAY, so round trips are not held back by
// Nagle's algorithm; killed with the object.
class TestBroker {
 public:
  TestBroker();
  int port() const { return broker_->port(); }

 private:
  std::unique_ptr<sdk::testing::LoopbackBroker> broker_;
};

struct CheckerReport {
  int exit_code = -1;
  std::string output;                          // stdout and stderr.
  std::map<std::string, std::string> outcome;  // check name -> PASS/FAIL/SKIP
  std::map<std::string, std::string> detail;   // check name -> detail
  std::string summary;                         // "N passed, N failed, ..."
  std::vector<std::string> Named(const std::string& outcome_word) const;
};

// Starts a connector binary (build/bin/<binary>) for instance `instance` on
// `broker`, with `instance_json` as its instance file (IOT2MQTT_INSTANCE_FILE
// in `dir`), MQTT_KEEPALIVE=5 and its log in dir/connector.log. Returns once
// it is online and every device in `wait_devices` has published a state.
std::unique_ptr<testing::ChildProcess> StartConnector(
    const TestBroker& broker, const testing::TempDir& dir,
    const std::string& binary, const std::string& instance,
    const std::string& instance_json,
    const std::vector<std::string>& wait_devices);

// Runs build/bin/iot2mqtt-conformance with `args` and parses its report.
CheckerReport RunChecker(const std::vector<std::string>& args,
                         absl::Duration timeout = absl::Seconds(100));

// A shipped connector, configured for a conformance run.
struct Shipped {
  std::string binary;  // In build/bin.
  std::string instance;
  std::string config;                // The instance document.
  std::vector<std::string> devices;  // Waited for before checking.
  std::string group;
  std::string device;  // The device the checks use; empty: the checker picks.
};

// Asserts (Catch2) that `shipped` passes every check: all but last-will
// (graceful-shutdown stops the connector, which must exit 0), then last-will
// against a fresh process.
void PassesEveryCheck(const Shipped& shipped);

}  // namespace iot2mqtt::conformance

#endif  // IOT2MQTT_TESTS_INTEGRATION_CONFORMANCE_CONFORMANCE_SUPPORT_H_
