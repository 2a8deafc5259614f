#include "services/config/config_service.h"

#include <sys/stat.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "iot2mqtt/telemetry/v1/telemetry_service.grpc.pb.h"
#include "prometheus/registry.h"
#include "services/common/grpc_status.h"
#include "services/common/server_runner.h"
#include "services/common/status.h"
#include "services/config/config_stack.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::config {
namespace {

using ::iot2mqtt::config::v1::ConfigService;
using ::iot2mqtt::telemetry::v1::TelemetryService;
using ::iot2mqtt::testing::TempDir;
using ::iot2mqtt::testing::WriteFile;

constexpr char kMac[] = "a4-cf-12-34-56-78";

std::unique_ptr<grpc::ClientContext> Context() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(10));
  return context;
}

void RequireError(const grpc::Status& grpc_status, absl::StatusCode code,
                  const std::string& reason) {
  absl::Status status = common::ToAbslStatus(grpc_status);
  INFO(status.ToString());
  REQUIRE(status.code() == code);
  std::optional<google::rpc::ErrorInfo> info = common::GetErrorInfo(status);
  REQUIRE(info.has_value());
  CHECK(info->reason() == reason);
}

// The config service as main() assembles it, on a loopback port; the data
// directory is <directory>/data, the ESP32 configs <directory> itself.
class ConfigServer {
 public:
  explicit ConfigServer(const std::string& directory)
      : stack_(OpenStack(directory)), server_(Options()) {
    absl::Status started = server_.Start({&stack_->service()});
    REQUIRE(started.ok());
    auto channel =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_.port()),
                            grpc::InsecureChannelCredentials());
    config_ = ConfigService::NewStub(channel);
    telemetry_ = TelemetryService::NewStub(channel);
  }

  ConfigService::Stub& config() { return *config_; }
  TelemetryService::Stub& telemetry() { return *telemetry_; }

  std::string Metrics() {
    telemetry::v1::GetMetricsResponse response;
    grpc::Status status =
        telemetry_->GetMetrics(Context().get(), {}, &response);
    REQUIRE(status.ok());
    return response.text();
  }

 private:
  std::unique_ptr<ConfigStack> OpenStack(const std::string& directory) {
    ConfigStackOptions options;
    options.data_dir = data_.Join("data");
    options.esp32_dir = directory;
    options.worker_threads = 2;
    absl::StatusOr<std::unique_ptr<ConfigStack>> stack =
        ConfigStack::Open(options);
    REQUIRE(stack.ok());
    return *std::move(stack);
  }

  common::ServerOptions Options() {
    common::ServerOptions options;
    options.service_name = "config";
    options.listen_address = "127.0.0.1:0";
    options.health_probe = [this] {
      return CheckConfigHealth(stack_->device_configs());
    };
    options.registry = stack_->registry();
    return options;
  }

  TempDir data_;
  std::unique_ptr<ConfigStack> stack_;
  common::GrpcServer server_;  // Last: stops before the rest goes away.
  std::unique_ptr<ConfigService::Stub> config_;
  std::unique_ptr<TelemetryService::Stub> telemetry_;
};

TEST_CASE("ConfigService: update, get, list and delete round-trip",
          "[config]") {
  TempDir dir;
  ConfigServer server(dir.path());

  v1::UpdateDeviceConfigRequest update;
  update.set_mac_address(kMac);
  update.set_content(
      R"({"deviceName": "Porch", "enableOTA": false, "n": 12345678901234567890})");
  v1::UpdateDeviceConfigResponse updated;
  grpc::Status status =
      server.config().UpdateDeviceConfig(Context().get(), update, &updated);
  REQUIRE(status.ok());
  CHECK(updated.device_config().mac_address() == kMac);
  CHECK(updated.device_config().device_name() == "Porch");
  CHECK_FALSE(updated.device_config().has_device_entity_id());
  REQUIRE(updated.device_config().has_enable_ota());
  CHECK_FALSE(updated.device_config().enable_ota());
  CHECK(updated.device_config().content() ==
        R"({"deviceName":"Porch","enableOTA":false,"n":12345678901234567890})");

  v1::UpdateDeviceConfigRequest second;
  second.set_mac_address("00-11-22-33-44-55");
  second.set_content(R"({"deviceEntityId": "light.hall"})");
  REQUIRE(server.config()
              .UpdateDeviceConfig(Context().get(), second, &updated)
              .ok());

  v1::GetDeviceConfigRequest get;
  get.set_mac_address(kMac);
  v1::GetDeviceConfigResponse got;
  REQUIRE(server.config().GetDeviceConfig(Context().get(), get, &got).ok());
  CHECK(got.device_config().content() ==
        R"({"deviceName":"Porch","enableOTA":false,"n":12345678901234567890})");

  v1::ListDeviceConfigsResponse listed;
  REQUIRE(server.config().ListDeviceConfigs(Context().get(), {}, &listed).ok());
  REQUIRE(listed.count() == 2);
  REQUIRE(listed.configs_size() == 2);
  CHECK(listed.configs(0).mac_address() == "00-11-22-33-44-55");
  CHECK_FALSE(listed.configs(0).has_device_name());
  CHECK(listed.configs(0).device_entity_id() == "light.hall");
  CHECK_FALSE(listed.configs(0).has_enable_ota());
  CHECK(listed.configs(1).mac_address() == kMac);
  CHECK(listed.configs(1).device_name() == "Porch");

  v1::DeleteDeviceConfigRequest remove;
  remove.set_mac_address(kMac);
  v1::DeleteDeviceConfigResponse removed;
  REQUIRE(server.config()
              .DeleteDeviceConfig(Context().get(), remove, &removed)
              .ok());
  RequireError(server.config().GetDeviceConfig(Context().get(), get, &got),
               absl::StatusCode::kNotFound, kDeviceConfigNotFound);
}

TEST_CASE("ConfigService: errors reach the client with code and reason",
          "[config]") {
  TempDir dir;
  WriteFile(dir.Join("00-00-00-00-00-01.json"), "{broken");
  ConfigServer server(dir.path());

  v1::GetDeviceConfigRequest get;
  v1::GetDeviceConfigResponse got;
  get.set_mac_address(kMac);
  grpc::Status missing =
      server.config().GetDeviceConfig(Context().get(), get, &got);
  RequireError(missing, absl::StatusCode::kNotFound, kDeviceConfigNotFound);
  CHECK(common::GetErrorInfo(common::ToAbslStatus(missing))
            ->metadata()
            .at("mac_address") == kMac);

  get.set_mac_address("A4:CF:12:34:56:78");
  grpc::Status bad_mac =
      server.config().GetDeviceConfig(Context().get(), get, &got);
  RequireError(bad_mac, absl::StatusCode::kInvalidArgument, kInvalidMacAddress);
  CHECK(absl::StrContains(bad_mac.error_message(), "xx-xx-xx-xx-xx-xx"));

  get.set_mac_address("00-00-00-00-00-01");
  RequireError(server.config().GetDeviceConfig(Context().get(), get, &got),
               absl::StatusCode::kFailedPrecondition, kDeviceConfigCorrupt);

  v1::UpdateDeviceConfigRequest update;
  v1::UpdateDeviceConfigResponse updated;
  update.set_mac_address(kMac);
  RequireError(
      server.config().UpdateDeviceConfig(Context().get(), update, &updated),
      absl::StatusCode::kInvalidArgument, kContentRequired);
  update.set_content("[1,2,3]");
  grpc::Status array =
      server.config().UpdateDeviceConfig(Context().get(), update, &updated);
  RequireError(array, absl::StatusCode::kInvalidArgument, kInvalidContent);
  CHECK(absl::StrContains(array.error_message(), "got an array"));
  update.set_mac_address("../etc/passwd");
  update.set_content("{}");
  RequireError(
      server.config().UpdateDeviceConfig(Context().get(), update, &updated),
      absl::StatusCode::kInvalidArgument, kInvalidMacAddress);

  v1::DeleteDeviceConfigRequest remove;
  v1::DeleteDeviceConfigResponse removed;
  remove.set_mac_address(kMac);
  RequireError(
      server.config().DeleteDeviceConfig(Context().get(), remove, &removed),
      absl::StatusCode::kNotFound, kDeviceConfigNotFound);

  // The corrupt file is skipped, not an error.
  v1::ListDeviceConfigsResponse listed;
  REQUIRE(server.config().ListDeviceConfigs(Context().get(), {}, &listed).ok());
  CHECK(listed.count() == 0);
}

TEST_CASE("ConfigService: a missing directory is unhealthy and UNAVAILABLE",
          "[config]") {
  TempDir root;
  std::string directory = root.Join("configs");
  ConfigServer server(directory);

  telemetry::v1::GetHealthResponse health;
  REQUIRE(server.telemetry().GetHealth(Context().get(), {}, &health).ok());
  CHECK_FALSE(health.healthy());
  CHECK(health.service() == "config");
  CHECK(absl::StrContains(health.reason(), directory));
  CHECK(absl::StrContains(health.reason(), "No such file or directory"));
  CHECK(health.details().at("device_configs_dir") == directory);

  v1::ListDeviceConfigsResponse listed;
  grpc::Status list =
      server.config().ListDeviceConfigs(Context().get(), {}, &listed);
  RequireError(list, absl::StatusCode::kUnavailable, kStorageUnavailable);
  CHECK(list.error_message() == health.reason());

  // Recovers as soon as the directory exists, without a restart.
  REQUIRE(mkdir(directory.c_str(), 0755) == 0);
  REQUIRE(server.telemetry().GetHealth(Context().get(), {}, &health).ok());
  CHECK(health.healthy());
  CHECK(health.reason().empty());
  CHECK(health.details().at("device_configs_count") == "0");
  REQUIRE(server.config().ListDeviceConfigs(Context().get(), {}, &listed).ok());
}

TEST_CASE("ConfigService: operations are counted in the metrics", "[config]") {
  TempDir dir;
  WriteFile(dir.Join("00-00-00-00-00-01.json"), "{}");
  ConfigServer server(dir.path());

  v1::UpdateDeviceConfigRequest update;
  v1::UpdateDeviceConfigResponse updated;
  update.set_mac_address(kMac);
  update.set_content("{}");
  REQUIRE(server.config()
              .UpdateDeviceConfig(Context().get(), update, &updated)
              .ok());
  v1::GetDeviceConfigRequest get;
  v1::GetDeviceConfigResponse got;
  get.set_mac_address("ff-ff-ff-ff-ff-ff");
  REQUIRE_FALSE(
      server.config().GetDeviceConfig(Context().get(), get, &got).ok());

  std::string text = server.Metrics();
  INFO(text);
  CHECK(absl::StrContains(
      text,
      "iot_config_operations_total{operation=\"save\",status=\"success\"} 1"));
  CHECK(absl::StrContains(
      text,
      "iot_config_operations_total{operation=\"get\",status=\"error\"} 1"));
  CHECK(absl::StrContains(text,
                          "iot_config_operations_total{operation=\"delete\","
                          "status=\"success\"} 0"));
  CHECK(absl::StrContains(text, "iot_config_files_count 2"));
  CHECK(absl::StrContains(
      text,
      "iot_config_operation_duration_seconds_count{operation=\"save\"} 1"));
  CHECK(absl::StrContains(text,
                          "iot_config_operation_duration_seconds_bucket{"
                          "operation=\"get\",le=\"0.0001\"}"));

  v1::DeleteDeviceConfigRequest remove;
  v1::DeleteDeviceConfigResponse removed;
  remove.set_mac_address(kMac);
  REQUIRE(server.config()
              .DeleteDeviceConfig(Context().get(), remove, &removed)
              .ok());
  CHECK(absl::StrContains(server.Metrics(), "iot_config_files_count 1"));
}

}  // namespace
}  // namespace iot2mqtt::config
