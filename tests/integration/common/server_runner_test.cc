// The server runner on a real loopback port: reflection lists and calls every
// service (what grpcurl does), standard health follows the probe, telemetry
// reports the reason and the metrics.

#include "services/common/server_runner.h"

#include <atomic>
#include <string>

#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "prometheus/counter.h"
#include "tests/support/reflection_client.h"

namespace iot2mqtt::common {
namespace {

using iot2mqtt::testing::ReflectionClient;

struct Fixture {
  Fixture() {
    ServerOptions options;
    options.service_name = "probe-test";
    options.listen_address = "127.0.0.1:0";
    options.health_probe = [this] {
      HealthVerdict verdict;
      verdict.healthy = healthy.load();
      if (!verdict.healthy) verdict.reason = "disk on fire";
      verdict.details["answer"] = "42";
      return verdict;
    };
    options.registry = std::make_shared<prometheus::Registry>();
    prometheus::BuildCounter()
        .Name("iot_test_things_total")
        .Help("Things.")
        .Register(*options.registry)
        .Add({})
        .Increment(3);
    server = std::make_unique<GrpcServer>(options);
    REQUIRE(server->Start({}).ok());
    target = absl::StrCat("127.0.0.1:", server->port());
    auto connected = ReflectionClient::Connect(target);
    REQUIRE(connected.ok());
    client = std::move(*connected);
  }
  std::atomic<bool> healthy{true};
  std::unique_ptr<GrpcServer> server;
  std::string target;
  std::unique_ptr<ReflectionClient> client;
};

TEST_CASE("GrpcServer: reflection lists health, reflection and telemetry",
          "[integration][common]") {
  Fixture f;
  auto services = f.client->ListServices();
  REQUIRE(services.ok());
  auto has = [&](const std::string& name) {
    return std::find(services->begin(), services->end(), name) !=
           services->end();
  };
  CHECK(has("grpc.health.v1.Health"));
  CHECK(has("grpc.reflection.v1alpha.ServerReflection"));
  CHECK(has("iot2mqtt.telemetry.v1.TelemetryService"));
  auto methods =
      f.client->ListMethods("iot2mqtt.telemetry.v1.TelemetryService");
  REQUIRE(methods.ok());
  CHECK(methods->size() == 2);
}

TEST_CASE("GrpcServer: health and telemetry follow the probe",
          "[integration][common]") {
  Fixture f;
  auto serving = f.client->Call("grpc.health.v1.Health", "Check", "{}");
  REQUIRE(serving.ok());
  CHECK(serving->find("\"SERVING\"") != std::string::npos);
  auto healthy = f.client->Call("iot2mqtt.telemetry.v1.TelemetryService",
                                "GetHealth", "{}");
  REQUIRE(healthy.ok());
  CHECK(healthy->find("\"healthy\":true") != std::string::npos);
  CHECK(healthy->find("\"answer\":\"42\"") != std::string::npos);

  f.healthy = false;
  auto unhealthy = f.client->Call("iot2mqtt.telemetry.v1.TelemetryService",
                                  "GetHealth", "{}");
  REQUIRE(unhealthy.ok());
  CHECK(unhealthy->find("\"reason\":\"disk on fire\"") != std::string::npos);
  // GetHealth ran the probe, so the standard health service flipped too.
  auto not_serving = f.client->Call("grpc.health.v1.Health", "Check", "{}");
  REQUIRE(not_serving.ok());
  CHECK(not_serving->find("\"NOT_SERVING\"") != std::string::npos);
}

TEST_CASE("GrpcServer: metrics come out in Prometheus text",
          "[integration][common]") {
  Fixture f;
  auto metrics = f.client->Call("iot2mqtt.telemetry.v1.TelemetryService",
                                "GetMetrics", "{}");
  REQUIRE(metrics.ok());
  CHECK(metrics->find("iot_test_things_total 3") != std::string::npos);
}

TEST_CASE("GrpcServer: a taken port is a clear error",
          "[integration][common]") {
  Fixture f;
  ServerOptions options;
  options.service_name = "second";
  options.listen_address = f.target;
  GrpcServer second(options);
  absl::Status status = second.Start({});
  CHECK(status.code() == absl::StatusCode::kUnavailable);
  CHECK(status.message().find(f.target) != absl::string_view::npos);
}

TEST_CASE("GrpcServer: shutdown stops serving", "[integration][common]") {
  Fixture f;
  f.server->Shutdown();
  f.server->Wait();
  auto after = f.client->Call("iot2mqtt.telemetry.v1.TelemetryService",
                              "GetHealth", "{}");
  CHECK_FALSE(after.ok());
}

}  // namespace
}  // namespace iot2mqtt::common
