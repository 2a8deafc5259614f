#include "gateway/gateway_options.h"

#include <string>

#include "catch2/catch.hpp"
#include "iot2mqtt/sdk/env.h"

namespace iot2mqtt::gateway {
namespace {

TEST_CASE("defaults") {
  sdk::MapEnv env;
  sdk::EnvReader reader(env);
  absl::StatusOr<GatewayOptions> options = LoadGatewayOptions(reader);
  REQUIRE(options.ok());
  CHECK(options->listen_address == "0.0.0.0:8080");
  REQUIRE(options->backends.size() == 4);
  CHECK(options->backends[0].name == "config");
  CHECK(options->backends[0].address == "127.0.0.1:50051");
  CHECK(options->backends[0].services ==
        std::vector<std::string>{"iot2mqtt.config.v1.ConfigService"});
  CHECK(options->backends[1].name == "mqtt-bridge");
  CHECK(options->backends[1].address == "127.0.0.1:50054");
  CHECK(options->backends[1].services ==
        std::vector<std::string>{"iot2mqtt.mqtt_bridge.v1.MqttBridgeService"});
  CHECK(options->backends[2].name == "orchestrator");
  CHECK(options->backends[2].address == "127.0.0.1:50052");
  CHECK(options->backends[2].services ==
        std::vector<std::string>{
            "iot2mqtt.orchestrator.v1.OrchestratorService"});
  CHECK(options->backends[3].name == "discovery");
  CHECK(options->backends[3].address == "127.0.0.1:50053");
  CHECK(options->backends[3].services ==
        std::vector<std::string>{"iot2mqtt.discovery.v1.DiscoveryService"});
  // A broker, runtime or discovery outage must not fail the gateway's
  // liveness.
  CHECK(options->optional_backends ==
        std::vector<std::string>{"mqtt-bridge", "orchestrator", "discovery"});
  CHECK(options->ws_max_message_bytes == 65536);
  CHECK(options->ws_queue_bytes == 1048576);
  CHECK(options->ws_idle_timeout == absl::Seconds(60));
  CHECK(options->cors_origins.empty());
  CHECK(options->threads == 2);
  CHECK(options->max_body_bytes == 1048576);
  CHECK(options->max_header_bytes == 16384);
  CHECK(options->read_timeout == absl::Seconds(30));
  CHECK(options->backend_deadline == absl::Seconds(10));
}

TEST_CASE("every variable is read") {
  sdk::MapEnv env({{"GATEWAY_LISTEN_ADDR", "127.0.0.1:9000"},
                   {"CONFIG_SERVICE_ADDR", "config:50051"},
                   {"CORS_ORIGINS", "http://a.example, http://b.example"},
                   {"GATEWAY_THREADS", "4"},
                   {"GATEWAY_MAX_BODY_BYTES", "2048"},
                   {"GATEWAY_MAX_HEADER_BYTES", "4096"},
                   {"GATEWAY_READ_TIMEOUT_SECONDS", "5"},
                   {"GATEWAY_BACKEND_DEADLINE_MS", "250"},
                   {"MQTT_BRIDGE_ADDR", "bridge:50054"},
                   {"ORCHESTRATOR_ADDR", "orchestrator:50052"},
                   {"DISCOVERY_ADDR", "discovery:50053"},
                   {"GATEWAY_WS_MAX_MESSAGE_BYTES", "4096"},
                   {"GATEWAY_WS_QUEUE_BYTES", "8192"},
                   {"GATEWAY_WS_IDLE_TIMEOUT_SECONDS", "20"}});
  sdk::EnvReader reader(env);
  absl::StatusOr<GatewayOptions> options = LoadGatewayOptions(reader);
  REQUIRE(options.ok());
  CHECK(options->listen_address == "127.0.0.1:9000");
  CHECK(options->backends[0].address == "config:50051");
  CHECK(options->cors_origins ==
        std::vector<std::string>{"http://a.example", "http://b.example"});
  CHECK(options->threads == 4);
  CHECK(options->max_body_bytes == 2048);
  CHECK(options->max_header_bytes == 4096);
  CHECK(options->read_timeout == absl::Seconds(5));
  CHECK(options->backend_deadline == absl::Milliseconds(250));
  CHECK(options->backends[1].address == "bridge:50054");
  CHECK(options->backends[2].address == "orchestrator:50052");
  CHECK(options->backends[3].address == "discovery:50053");
  CHECK(options->ws_max_message_bytes == 4096);
  CHECK(options->ws_queue_bytes == 8192);
  CHECK(options->ws_idle_timeout == absl::Seconds(20));
}

TEST_CASE("every problem is reported at once") {
  sdk::MapEnv env({{"GATEWAY_LISTEN_ADDR", "nonsense"},
                   {"CONFIG_SERVICE_ADDR", "no-port"},
                   {"DISCOVERY_ADDR", "discovery"},
                   {"GATEWAY_THREADS", "0"},
                   {"GATEWAY_MAX_BODY_BYTES", "lots"},
                   {"GATEWAY_READ_TIMEOUT_SECONDS", "-1"},
                   {"GATEWAY_BACKEND_DEADLINE_MS", "x"}});
  sdk::EnvReader reader(env);
  absl::StatusOr<GatewayOptions> options = LoadGatewayOptions(reader);
  REQUIRE_FALSE(options.ok());
  std::string message(options.status().message());
  for (const char* name :
       {"GATEWAY_LISTEN_ADDR", "CONFIG_SERVICE_ADDR", "DISCOVERY_ADDR",
        "GATEWAY_THREADS",
        "GATEWAY_MAX_BODY_BYTES", "GATEWAY_READ_TIMEOUT_SECONDS",
        "GATEWAY_BACKEND_DEADLINE_MS"}) {
    INFO(message);
    CHECK(message.find(name) != std::string::npos);
  }
}

}  // namespace
}  // namespace iot2mqtt::gateway
