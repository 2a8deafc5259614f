#ifndef IOT2MQTT_TESTS_BENCH_PLATFORM_PLATFORM_STACK_H_
#define IOT2MQTT_TESTS_BENCH_PLATFORM_PLATFORM_STACK_H_

// The real platform for the platform benchmarks (issues #5 and #6), run by
// hand (tests/bench/run_platform_bench.sh), never by ctest: a Mosquitto on a
// free loopback port, then iot2mqtt-config, iot2mqtt-mqtt-bridge,
// iot2mqtt-gateway and (when asked) iot2mqtt-orchestrator and
// iot2mqtt-discovery from build/bin as child processes over a temporary
// directory, a login with WEB_ACCESS_KEY, and small clients: a keep-alive
// HTTP/1.1 connection, a WebSocket reader, the bridge's gRPC stub. Every
// failure to set up prints why and exits 1.
//
//   <root>/data/            IOT2MQTT_DATA_DIR
//   <root>/connectors/demo/ the repository's demo connector (setup, manifest)
//   <root>/connectors/...   whatever StackOptions::prepare_connectors adds
//   <root>/esp32/           ESP32_CONFIGS_DIR
//   <root>/{config,bridge,gateway,orchestrator,discovery}.log

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/websocket/stream.hpp"
#include "iot2mqtt/mqtt_bridge/v1/mqtt_bridge_service.grpc.pb.h"
#include "sdk/testing/loopback_broker.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::bench {

inline constexpr char kAccessKey[] = "platform-bench-access-key";
inline constexpr char kBaseTopic[] = "IoT2mqtt";

struct StackOptions {
  bool orchestrator = false;
  std::string runtime = "process";  // IOT2MQTT_RUNTIME of the orchestrator.
  std::map<std::string, std::string> bridge_env;  // Extra bridge variables.
  std::string broker_extra_config;                // mosquitto.conf lines.
  // iot2mqtt-discovery too (IOT2MQTT_CONNECTOR_BIN_DIR = build/bin), with
  // these extra variables. Off by default: the other benches run without
  // it (the gateway's DISCOVERY_ADDR is then a closed loopback port).
  bool discovery = false;
  std::map<std::string, std::string> discovery_env = {};
  // Called with <root>/connectors before any service starts (the config
  // service and the discovery service read connector folders there).
  std::function<void(const std::string& connectors_dir)> prepare_connectors =
      nullptr;
};

// A keep-alive HTTP/1.1 connection to 127.0.0.1:port (Boost.Beast, sync).
class HttpClient {
 public:
  explicit HttpClient(int port);
  ~HttpClient();
  // One request; status 0 and the error in `body` when the connection failed
  // (the next request reconnects).
  testing::HttpResponse Request(const std::string& method,
                                const std::string& target,
                                const std::string& body = "",
                                const std::string& token = "");

 private:
  void Connect();
  int port_;
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::socket socket_;
  boost::beast::flat_buffer buffer_;
  bool connected_ = false;
};

// A WebSocket client on /ws/mqtt that handshakes, reads the first message
// (the topics snapshot) and then counts what it gets by type, all on its
// own thread. Stop() shuts the socket down and joins.
class WsCounter {
 public:
  WsCounter(int port, const std::string& target);
  ~WsCounter();
  // Waits for the handshake and the first message; whether it was the
  // topics snapshot (false on a timeout: call Stop()).
  bool WaitFirst(absl::Duration timeout);
  bool ok() const { return ok_; }
  // The first message, or why there is none.
  const std::string& first() const { return first_; }
  void Stop();

  std::atomic<int64_t> updates{0};
  std::atomic<int64_t> skipped_markers{0};
  std::atomic<int64_t> skipped_total{0};  // Sum of the markers' counts.
  std::atomic<int64_t> other{0};
  std::atomic<int64_t> bytes{0};
  std::atomic<bool> closed{false};
  std::string close_reason;  // Set when the reader ended on its own.

 private:
  void Loop(int port, std::string target);
  boost::asio::io_context ioc_;
  boost::beast::websocket::stream<boost::asio::ip::tcp::socket> ws_;
  absl::Mutex mu_;
  bool first_done_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> ok_{false};
  std::string first_;  // Written before first_done_, read after.
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

class PlatformStack {
 public:
  explicit PlatformStack(StackOptions options = {});
  ~PlatformStack();
  PlatformStack(const PlatformStack&) = delete;
  PlatformStack& operator=(const PlatformStack&) = delete;

  // SIGTERM to the orchestrator (connectors stop with it: the bench sets
  // PROCESS_STOP_ON_EXIT=true); waits up to `timeout`.
  void StopOrchestrator(absl::Duration timeout = absl::Seconds(60));

  int gateway_port() const { return gateway_port_; }
  int config_port() const { return config_port_; }
  int bridge_port() const { return bridge_port_; }
  int orchestrator_port() const { return orchestrator_port_; }
  const std::string& token() const { return token_; }
  sdk::testing::LoopbackBroker& broker() { return *broker_; }
  pid_t bridge_pid() const { return bridge_->pid(); }
  pid_t gateway_pid() const { return gateway_->pid(); }
  pid_t config_pid() const { return config_->pid(); }
  pid_t orchestrator_pid() const {
    return orchestrator_ ? orchestrator_->pid() : -1;
  }
  int discovery_port() const { return discovery_port_; }
  pid_t discovery_pid() const { return discovery_ ? discovery_->pid() : -1; }
  // SIGTERM to the discovery service (it stops the tools it runs: they live
  // in process groups of their own); waits up to `timeout`.
  void StopDiscovery(absl::Duration timeout = absl::Seconds(30));
  const std::string& root() const { return root_.path(); }

  // GetStatus straight from the bridge (gRPC).
  mqtt_bridge::v1::GetStatusResponse BridgeStatus();
  mqtt_bridge::v1::MqttBridgeService::Stub& bridge() { return *bridge_stub_; }

  // The tail of every log, for a failure message.
  std::string Logs(size_t tail = 3000) const;

 private:
  std::unique_ptr<testing::ChildProcess> Start(
      const std::string& binary, std::map<std::string, std::string> env,
      const std::string& log, int port);

  testing::TempDir root_;
  StackOptions options_;
  std::unique_ptr<sdk::testing::LoopbackBroker> broker_;
  int config_port_ = 0;
  int bridge_port_ = 0;
  int gateway_port_ = 0;
  int orchestrator_port_ = 0;
  int discovery_port_ = 0;
  std::unique_ptr<testing::ChildProcess> config_;
  std::unique_ptr<testing::ChildProcess> bridge_;
  std::unique_ptr<testing::ChildProcess> orchestrator_;
  std::unique_ptr<testing::ChildProcess> discovery_;
  std::unique_ptr<testing::ChildProcess> gateway_;
  std::unique_ptr<mqtt_bridge::v1::MqttBridgeService::Stub> bridge_stub_;
  std::string token_;
};

// A string field of a JSON object ("" when absent).
std::string JsonString(const std::string& json, const char* key);
// printf-style line to stdout, flushed (the driver script tees it).
void Say(const char* format, ...) __attribute__((format(printf, 1, 2)));
// "1 min load average" from /proc/loadavg.
std::string LoadAverage();
double Median(std::vector<double> values);

}  // namespace iot2mqtt::bench

#endif  // IOT2MQTT_TESTS_BENCH_PLATFORM_PLATFORM_STACK_H_
