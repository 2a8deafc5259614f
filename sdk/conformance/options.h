#ifndef IOT2MQTT_SDK_CONFORMANCE_OPTIONS_H_
#define IOT2MQTT_SDK_CONFORMANCE_OPTIONS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace iot2mqtt::conformance {

struct CheckerOptions {
  std::string host = "127.0.0.1";
  int port = 1883;
  std::string base = "IoT2mqtt";
  std::string instance;
  std::string device;          // Empty: the first device with a state.
  std::string group;           // Empty: group-command is skipped.
  std::string command;         // JSON object for `values`; empty: derived.
  int pid = 0;                 // graceful-shutdown (SIGTERM) when set.
  int kill_pid = 0;            // last-will (SIGKILL) when set.
  int keepalive_seconds = 60;  // The connector's MQTT_KEEPALIVE.
  std::string client_prefix =
      "iot2mqtt";  // The connector's MQTT_CLIENT_PREFIX.
  absl::Duration timeout = absl::Milliseconds(5000);
  std::vector<std::string> only;  // Empty: every check.
  bool help = false;
  bool list = false;
};

std::string Usage();

// Parses the arguments after the program name (`--flag value` or
// `--flag=value`). Errors are INVALID_ARGUMENT naming every problem.
absl::StatusOr<CheckerOptions> ParseArgs(const std::vector<std::string>& args);

}  // namespace iot2mqtt::conformance

#endif  // IOT2MQTT_SDK_CONFORMANCE_OPTIONS_H_
