#include "tests/integration/conformance/conformance_support.h"

#include <regex>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "catch2/catch.hpp"
#include "sdk/testing/topic_capture.h"

namespace iot2mqtt::conformance {

using ::iot2mqtt::testing::BinaryPath;
using ::iot2mqtt::testing::ChildProcess;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::TempDir;
using ::iot2mqtt::testing::WriteFile;

TestBroker::TestBroker() {
  sdk::testing::LoopbackBrokerOptions options;
  options.extra_config = "set_tcp_nodelay true\n";
  absl::StatusOr<std::unique_ptr<sdk::testing::LoopbackBroker>> broker =
      sdk::testing::LoopbackBroker::Start(options);
  INFO(broker.status().ToString());
  REQUIRE(broker.ok());
  broker_ = *std::move(broker);
}

std::unique_ptr<ChildProcess> StartConnector(
    const TestBroker& broker, const TempDir& dir, const std::string& binary,
    const std::string& instance, const std::string& instance_json,
    const std::vector<std::string>& wait_devices) {
  const std::string instance_file = dir.Join("instance.json");
  WriteFile(instance_file, instance_json);
  const std::string prefix =
      absl::StrCat("IoT2mqtt/v1/instances/", instance, "/");
  auto capture = sdk::testing::TopicCapture::Start("127.0.0.1", broker.port(),
                                                   prefix + "#");
  REQUIRE(capture.ok());
  absl::StatusOr<std::unique_ptr<ChildProcess>> connector =
      ChildProcess::Start(BinaryPath(binary), {},
                          {{"INSTANCE_NAME", instance},
                           {"IOT2MQTT_INSTANCE_FILE", instance_file},
                           {"MQTT_HOST", "127.0.0.1"},
                           {"MQTT_PORT", absl::StrCat(broker.port())},
                           {"MQTT_KEEPALIVE", "5"},
                           {"LOG_LEVEL", "DEBUG"}},
                          dir.Join("connector.log"));
  REQUIRE(connector.ok());
  auto online = (*capture)->WaitFor(
      prefix + "status",
      [](const sdk::testing::CapturedMessage& m) {
        return m.payload == "online";
      },
      absl::Seconds(10));
  INFO(ReadFile(dir.Join("connector.log")));
  REQUIRE(online.has_value());
  for (const std::string& device : wait_devices) {
    INFO(device);
    REQUIRE(
        (*capture)->WaitFor(absl::StrCat(prefix, "devices/", device, "/state"),
                            nullptr, absl::Seconds(10)));
  }
  return *std::move(connector);
}

std::vector<std::string> CheckerReport::Named(
    const std::string& outcome_word) const {
  std::vector<std::string> names;
  for (const auto& [name, word] : outcome) {
    if (word == outcome_word) names.push_back(name);
  }
  return names;
}

CheckerReport RunChecker(const std::vector<std::string>& args,
                         absl::Duration timeout) {
  TempDir dir;
  const std::string log = dir.Join("checker.out");
  absl::StatusOr<std::unique_ptr<ChildProcess>> checker =
      ChildProcess::Start(BinaryPath("iot2mqtt-conformance"), args, {}, log);
  REQUIRE(checker.ok());
  absl::StatusOr<int> exit_code = (*checker)->Wait(timeout);
  CheckerReport report;
  report.output = ReadFile(log);
  INFO(report.output);
  REQUIRE(exit_code.ok());
  report.exit_code = *exit_code;
  static const std::regex kLine("^(PASS|FAIL|SKIP) ([a-z-]+): (.*)$");
  static const std::regex kSummary(
      "^[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$");
  for (absl::string_view line :
       absl::StrSplit(report.output, '\n', absl::SkipEmpty())) {
    const std::string text(line);
    std::smatch match;
    if (std::regex_match(text, match, kLine)) {
      report.outcome[match[2]] = match[1];
      report.detail[match[2]] = match[3];
    } else if (std::regex_match(text, kSummary)) {
      report.summary = text;
    }
  }
  return report;
}

void PassesEveryCheck(const Shipped& shipped) {
  {
    TestBroker broker;
    testing::TempDir dir;
    std::unique_ptr<testing::ChildProcess> connector =
        StartConnector(broker, dir, shipped.binary, shipped.instance,
                       shipped.config, shipped.devices);
    std::vector<std::string> args = {
        "--port",     absl::StrCat(broker.port()),
        "--instance", shipped.instance,
        "--group",    shipped.group,
        "--pid",      absl::StrCat(connector->pid())};
    if (!shipped.device.empty()) {
      args.insert(args.end(), {"--device", shipped.device});
    }
    CheckerReport report = RunChecker(args);
    INFO(report.output);
    INFO(testing::ReadFile(dir.Join("connector.log")));
    CHECK(report.exit_code == 0);
    CHECK(report.Named("FAIL").empty());
    CHECK(report.Named("SKIP") == std::vector<std::string>{"last-will"});
    CHECK(report.summary == "21 passed, 0 failed, 1 skipped");
    absl::StatusOr<int> exit_code = connector->Wait(absl::Seconds(5));
    CHECK((exit_code.ok() && *exit_code == 0));
  }
  TestBroker broker;
  testing::TempDir dir;
  std::unique_ptr<testing::ChildProcess> connector =
      StartConnector(broker, dir, shipped.binary, shipped.instance,
                     shipped.config, shipped.devices);
  CheckerReport report = RunChecker(
      {"--port", absl::StrCat(broker.port()), "--instance", shipped.instance,
       "--only", "status-online,last-will", "--kill-pid",
       absl::StrCat(connector->pid()), "--keepalive", "5"});
  INFO(report.output);
  CHECK(report.exit_code == 0);
  CHECK(report.summary == "2 passed, 0 failed, 0 skipped");
}

}  // namespace iot2mqtt::conformance
