#ifndef IOT2MQTT_GATEWAY_GATEWAY_OPTIONS_H_
#define IOT2MQTT_GATEWAY_GATEWAY_OPTIONS_H_

// The gateway's settings, read once from the environment by main().

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gateway/auth.h"
#include "iot2mqtt/sdk/env.h"

namespace iot2mqtt::gateway {

// One gRPC service process behind the gateway.
struct BackendSpec {
  std::string name;                   // Short name: "config".
  std::vector<std::string> services;  // Proto services it serves (full names).
  std::string address;                // "127.0.0.1:50051".
};

struct GatewayOptions {
  std::string listen_address = "0.0.0.0:8080";  // Port 0 picks a free one.
  std::vector<BackendSpec> backends;
  // Backends (by name) whose failure doesn't make /api/health unhealthy:
  // the gateway still serves everything else (a broker outage, say, must
  // not fail the gateway's liveness). They are still reported under
  // "services", and in "degraded".
  std::vector<std::string> optional_backends = {"mqtt-bridge", "orchestrator",
                                                "discovery"};
  std::vector<std::string> cors_origins;  // Empty: no CORS headers.
  int threads = 2;                        // HTTP io threads.
  size_t max_body_bytes = 1048576;        // Larger bodies get 413.
  size_t max_header_bytes = 16384;        // Larger headers get 431.
  // A request (headers and body) must arrive within this time, else 408.
  absl::Duration read_timeout = absl::Seconds(30);
  // Deadline of every transcoded backend call.
  absl::Duration backend_deadline = absl::Seconds(10);
  // Deadline of the health and metrics calls behind /api/health, /metrics.
  absl::Duration telemetry_deadline = absl::Seconds(2);
  // How long Shutdown() lets in-flight requests finish.
  absl::Duration shutdown_grace = absl::Seconds(5);
  // kDisabled: no route needs a token (trusted networks only).
  AuthMode auth_mode = AuthMode::kRequired;
  // Failed logins allowed per client address within the window.
  int max_failed_logins = 5;
  absl::Duration login_failure_window = absl::Minutes(1);
  // WebSockets (websocket.h): the largest client message, the bytes queued
  // for a client before it counts as too slow, the idle time before a
  // silent connection is dropped (pings go out at half of it).
  size_t ws_max_message_bytes = 65536;
  size_t ws_queue_bytes = 1048576;
  absl::Duration ws_idle_timeout = absl::Seconds(60);
  // A write to a client that makes no progress this long closes it (1008).
  absl::Duration ws_write_timeout = absl::Seconds(30);
};

// The services the gateway fronts, each with the variable holding its
// address and the default. Adding a service is one line in gateway_options.cc.
struct BackendDefinition {
  std::string name;
  std::string address_variable;
  std::string default_address;
  std::vector<std::string> services;
};
std::vector<BackendDefinition> BackendDefinitions();

// Reads GATEWAY_LISTEN_ADDR, CONFIG_SERVICE_ADDR, MQTT_BRIDGE_ADDR,
// ORCHESTRATOR_ADDR, DISCOVERY_ADDR (one variable per backend),
// CORS_ORIGINS, GATEWAY_THREADS, GATEWAY_MAX_BODY_BYTES,
// GATEWAY_MAX_HEADER_BYTES, GATEWAY_READ_TIMEOUT_SECONDS,
// GATEWAY_BACKEND_DEADLINE_MS, AUTH_MODE (required|disabled),
// AUTH_MAX_FAILED_LOGINS, AUTH_LOGIN_WINDOW_SECONDS, GATEWAY_WS_MAX_MESSAGE_BYTES,
// GATEWAY_WS_QUEUE_BYTES, GATEWAY_WS_IDLE_TIMEOUT_SECONDS. Every problem is reported
// in one INVALID_ARGUMENT status. (LOG_LEVEL is main()'s.)
absl::StatusOr<GatewayOptions> LoadGatewayOptions(sdk::EnvReader& env);

}  // namespace iot2mqtt::gateway

#endif  // IOT2MQTT_GATEWAY_GATEWAY_OPTIONS_H_
