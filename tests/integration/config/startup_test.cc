// Start-up behaviour of the real iot2mqtt-config binary.

#include <signal.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "catch2/catch.hpp"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "iot2mqtt/telemetry/v1/telemetry_service.grpc.pb.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::config {
namespace {

using ::iot2mqtt::telemetry::v1::TelemetryService;
using ::iot2mqtt::testing::BinaryPath;
using ::iot2mqtt::testing::ChildProcess;
using ::iot2mqtt::testing::FreePort;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::TempDir;
using ::iot2mqtt::testing::WaitFor;

TEST_CASE("iot2mqtt-config: bad environment exits 2 naming every problem",
          "[config]") {
  TempDir root;
  const std::string log = root.Join("config.log");
  absl::StatusOr<std::unique_ptr<ChildProcess>> process = ChildProcess::Start(
      BinaryPath("iot2mqtt-config"), {}, {{"LOG_LEVEL", "LOUD"}}, log);
  REQUIRE(process.ok());
  absl::StatusOr<int> exit_code = (*process)->Wait(absl::Seconds(10));
  REQUIRE(exit_code.ok());
  CHECK(*exit_code == 2);

  std::vector<std::string> lines =
      absl::StrSplit(ReadFile(log), '\n', absl::SkipEmpty());
  INFO(ReadFile(log));
  REQUIRE(lines.size() == 1);
  CHECK(absl::StrContains(lines[0], "\"ERROR\""));
  CHECK(absl::StrContains(lines[0], "ESP32_CONFIGS_DIR"));
  CHECK(absl::StrContains(lines[0], "LOG_LEVEL"));
}

TEST_CASE("iot2mqtt-config: starts without its directory and reports why",
          "[config]") {
  TempDir root;
  const std::string directory = root.Join("not-yet");
  const int port = FreePort();
  absl::StatusOr<std::unique_ptr<ChildProcess>> process = ChildProcess::Start(
      BinaryPath("iot2mqtt-config"), {},
      {{"ESP32_CONFIGS_DIR", directory},
       {"IOT2MQTT_DATA_DIR", root.Join("data")},
       {"CONFIG_LISTEN_ADDR", absl::StrCat("127.0.0.1:", port)}},
      root.Join("config.log"));
  REQUIRE(process.ok());
  // A fresh channel per attempt: one channel would wait out its reconnect
  // backoff after the refused attempts made before the service listened.
  telemetry::v1::GetHealthResponse health;
  REQUIRE(WaitFor([&] {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto stub = TelemetryService::NewStub(
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                  grpc::InsecureChannelCredentials(), args));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(1));
    return stub->GetHealth(&context, {}, &health).ok();
  }));
  CHECK_FALSE(health.healthy());
  CHECK(absl::StrContains(health.reason(), directory));
  CHECK(health.details().at("device_configs_dir") == directory);

  (*process)->Signal(SIGTERM);
  absl::StatusOr<int> exit_code = (*process)->Wait(absl::Seconds(10));
  REQUIRE(exit_code.ok());
  CHECK(*exit_code == 0);
}

}  // namespace
}  // namespace iot2mqtt::config
