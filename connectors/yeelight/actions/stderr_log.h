#ifndef IOT2MQTT_CONNECTORS_YEELIGHT_ACTIONS_STDERR_LOG_H_
#define IOT2MQTT_CONNECTORS_YEELIGHT_ACTIONS_STDERR_LOG_H_

// Actions answer on stdout, so their log lines go to stderr.

#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>

#include "iot2mqtt/sdk/env.h"
#include "iot2mqtt/sdk/log.h"

namespace iot2mqtt::yeelight {

class StderrLogSink final : public sdk::LogSink {
 public:
  void Write(absl::string_view line) override {
    std::fwrite(line.data(), 1, line.size(), stderr);
    if (line.empty() || line.back() != '\n') std::fputc('\n', stderr);
  }
};

// Sets up logging for an action binary and returns stdin's whole text.
inline std::string StartAction(const char* service) {
  static StderrLogSink sink;
  sdk::SetLogSink(&sink);
  sdk::SetLogService(service);
  sdk::Severity level = sdk::Severity::kInfo;
  if (auto text = sdk::ProcessEnv().Get("LOG_LEVEL")) {
    sdk::ParseSeverity(*text, &level);
  }
  sdk::SetLogLevel(level);
  return std::string(std::istreambuf_iterator<char>(std::cin),
                     std::istreambuf_iterator<char>());
}

inline void Answer(const std::string& json) {
  std::fwrite(json.data(), 1, json.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

}  // namespace iot2mqtt::yeelight

#endif  // IOT2MQTT_CONNECTORS_YEELIGHT_ACTIONS_STDERR_LOG_H_
