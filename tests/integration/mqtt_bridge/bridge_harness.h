#ifndef IOT2MQTT_TESTS_INTEGRATION_MQTT_BRIDGE_BRIDGE_HARNESS_H_
#define IOT2MQTT_TESTS_INTEGRATION_MQTT_BRIDGE_BRIDGE_HARNESS_H_

// The real iot2mqtt-config and iot2mqtt-mqtt-bridge binaries (and, when
// asked, the demo connector) as child processes against real Mosquitto
// brokers on free loopback ports. Header-only.

#include <signal.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "catch2/catch.hpp"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "iot2mqtt/mqtt_bridge/v1/mqtt_bridge_service.grpc.pb.h"
#include "iot2mqtt/telemetry/v1/telemetry_service.grpc.pb.h"
#include "sdk/testing/loopback_broker.h"
#include "sdk/testing/topic_capture.h"
#include "services/common/grpc_status.h"
#include "services/common/status.h"
#include "tests/integration/config/config_harness.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::mqtt_bridge::harness {

using ::iot2mqtt::config::harness::ServiceStack;
using ::iot2mqtt::mqtt_bridge::v1::MqttBridgeService;
using ::iot2mqtt::mqtt_bridge::v1::TopicEvent;
using ::iot2mqtt::sdk::testing::CapturedMessage;
using ::iot2mqtt::sdk::testing::LoopbackBroker;
using ::iot2mqtt::sdk::testing::TopicCapture;
using ::iot2mqtt::testing::BinaryPath;
using ::iot2mqtt::testing::ChildProcess;
using ::iot2mqtt::testing::FreePort;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::TempDir;
using ::iot2mqtt::testing::WaitFor;
using ::iot2mqtt::testing::WriteFile;

using Env = std::map<std::string, std::string>;

inline std::unique_ptr<LoopbackBroker> StartBroker(
    sdk::testing::LoopbackBrokerOptions options = {}) {
  auto broker = LoopbackBroker::Start(std::move(options));
  INFO(broker.status().ToString());
  REQUIRE(broker.ok());
  return *std::move(broker);
}

inline std::unique_ptr<TopicCapture> Capture(const LoopbackBroker& broker,
                                             const std::string& filter) {
  auto capture = TopicCapture::Start(broker.host(), broker.port(), filter);
  INFO(capture.status().ToString());
  REQUIRE(capture.ok());
  return *std::move(capture);
}

inline std::unique_ptr<grpc::ClientContext> Context(int seconds = 5) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(seconds));
  return context;
}

// The reason (ErrorInfo) of a failed call.
inline std::string ReasonOf(const grpc::Status& status) {
  return common::ReasonOf(common::ToAbslStatus(status));
}
inline std::map<std::string, std::string> MetadataOf(
    const grpc::Status& status) {
  std::optional<google::rpc::ErrorInfo> info =
      common::GetErrorInfo(common::ToAbslStatus(status));
  std::map<std::string, std::string> metadata;
  if (info.has_value()) {
    for (const auto& [k, v] : info->metadata()) metadata[k] = v;
  }
  return metadata;
}

// Config service + mqtt-bridge. `config_env` seeds the config service
// (MQTT_HOST, MQTT_PORT, ...).
class BridgeStack {
 public:
  explicit BridgeStack(Env config_env) : config_(std::move(config_env)) {
    config_.StartConfig();
  }
  ~BridgeStack() {
    bridge_stub_.reset();
    bridge_.reset();
  }

  void StartBridge(Env extra = {}) {
    bridge_port_ = FreePort();
    Env env = {
        {"MQTT_BRIDGE_LISTEN_ADDR", absl::StrCat("127.0.0.1:", bridge_port_)},
        {"CONFIG_SERVICE_ADDR",
         absl::StrCat("127.0.0.1:", config_.config_port())},
        {"LOG_LEVEL", "DEBUG"}};
    for (auto& [k, v] : extra) env[k] = v;
    auto process = ChildProcess::Start(BinaryPath("iot2mqtt-mqtt-bridge"), {},
                                       env, log_path());
    REQUIRE(process.ok());
    bridge_ = *std::move(process);
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    bridge_stub_ = MqttBridgeService::NewStub(
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", bridge_port_),
                                  grpc::InsecureChannelCredentials(), args));
    bool ready = WaitFor(
        [&] {
          if (!bridge_->Running()) return true;
          v1::GetStatusResponse status;
          return bridge_stub_->GetStatus(Context(1).get(), {}, &status).ok();
        },
        absl::Seconds(20));
    INFO(Logs());
    REQUIRE(bridge_->Running());
    REQUIRE(ready);
  }

  // SIGTERM; returns the exit code.
  int StopBridge() {
    bridge_->Signal(SIGTERM);
    absl::StatusOr<int> code = bridge_->Wait(absl::Seconds(15));
    INFO(Logs());
    REQUIRE(code.ok());
    bridge_.reset();
    return *code;
  }

  v1::GetStatusResponse Status() {
    v1::GetStatusResponse status;
    grpc::Status s = bridge().GetStatus(Context().get(), {}, &status);
    INFO(s.error_message());
    REQUIRE(s.ok());
    return status;
  }

  // Waits until the bridge is connected to 127.0.0.1:`port`.
  void WaitConnected(int port, absl::Duration timeout = absl::Seconds(20)) {
    bool connected = WaitFor(
        [&] {
          v1::GetStatusResponse status;
          return bridge().GetStatus(Context().get(), {}, &status).ok() &&
                 status.connected() && status.port() == port;
        },
        timeout);
    INFO(Logs());
    REQUIRE(connected);
  }

  telemetry::v1::GetHealthResponse Health() {
    auto stub = telemetry::v1::TelemetryService::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", bridge_port_),
                            grpc::InsecureChannelCredentials()));
    telemetry::v1::GetHealthResponse health;
    REQUIRE(stub->GetHealth(Context().get(), {}, &health).ok());
    return health;
  }
  // The Prometheus text.
  std::string Metrics() {
    auto stub = telemetry::v1::TelemetryService::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", bridge_port_),
                            grpc::InsecureChannelCredentials()));
    telemetry::v1::GetMetricsResponse metrics;
    REQUIRE(stub->GetMetrics(Context().get(), {}, &metrics).ok());
    return metrics.text();
  }

  MqttBridgeService::Stub& bridge() { return *bridge_stub_; }
  config::v1::ConfigService::Stub& config() { return config_.stub(); }
  ServiceStack& services() { return config_; }
  int bridge_port() const { return bridge_port_; }
  std::string log_path() const { return config_.root() + "/bridge.log"; }
  std::string Logs() const {
    std::string text = access(log_path().c_str(), R_OK) == 0
                           ? ReadFile(log_path())
                           : std::string();
    if (text.size() > 8000) text = text.substr(text.size() - 8000);
    return absl::StrCat(config_.Logs(3000), "--- bridge.log\n", text);
  }

 private:
  ServiceStack config_;
  int bridge_port_ = 0;
  std::unique_ptr<ChildProcess> bridge_;
  std::unique_ptr<MqttBridgeService::Stub> bridge_stub_;
};

// A Subscribe stream read on its own thread.
class StreamReader {
 public:
  StreamReader(MqttBridgeService::Stub& stub, v1::SubscribeRequest request,
               bool read_now = true)
      : reader_(stub.Subscribe(&context_, request)) {
    if (read_now) Resume();
  }
  ~StreamReader() {
    context_.TryCancel();
    Resume();
    thread_.join();
  }

  // Starts reading (a stream created with read_now = false doesn't read:
  // a stalled client).
  void Resume() {
    absl::MutexLock lock(&mu_);
    if (started_) return;
    started_ = true;
    thread_ = std::thread([this] {
      TopicEvent event;
      while (reader_->Read(&event)) {
        absl::MutexLock lock(&mu_);
        events_.push_back(event);
      }
      grpc::Status status = reader_->Finish();
      absl::MutexLock lock(&mu_);
      status_ = status;
      ended_ = true;
    });
  }

  void Cancel() { context_.TryCancel(); }

  // The first event at or after `since` that satisfies `predicate`.
  std::optional<TopicEvent> WaitFor(
      const std::function<bool(const TopicEvent&)>& predicate,
      absl::Duration timeout = absl::Seconds(10), size_t since = 0) {
    std::optional<TopicEvent> found;
    auto check = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (size_t i = since; i < events_.size(); ++i) {
        if (predicate(events_[i])) {
          found = events_[i];
          return true;
        }
      }
      return ended_;
    };
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&check), timeout);
    return found;
  }
  std::optional<TopicEvent> WaitForTopic(
      const std::string& topic, TopicEvent::Type type,
      absl::Duration timeout = absl::Seconds(10), size_t since = 0) {
    return WaitFor(
        [&](const TopicEvent& e) {
          return e.topic() == topic && e.type() == type;
        },
        timeout, since);
  }
  // Waits for the end of the stream; its status.
  std::optional<grpc::Status> WaitEnd(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&ended_), timeout);
    if (!ended_) return std::nullopt;
    return status_;
  }
  std::vector<TopicEvent> Events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  size_t Mark() {
    absl::MutexLock lock(&mu_);
    return events_.size();
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<TopicEvent>> reader_;
  std::thread thread_;
  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<TopicEvent> events_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

// The demo connector for `instance`, against `broker`.
class DemoConnector {
 public:
  DemoConnector(const LoopbackBroker& broker, const std::string& instance,
                const std::string& config) {
    std::string config_path = dir_.Join(instance + ".json");
    WriteFile(config_path, config);
    WriteFile(dir_.Join("empty.env"), "");
    log_path_ = dir_.Join(instance + ".log");
    auto process =
        ChildProcess::Start(BinaryPath("iot2mqtt-connector-demo"), {},
                            {{"INSTANCE_NAME", instance},
                             {"IOT2MQTT_INSTANCE_FILE", config_path},
                             {"IOT2MQTT_ENV_FILE", dir_.Join("empty.env")},
                             {"MQTT_HOST", broker.host()},
                             {"MQTT_PORT", absl::StrCat(broker.port())},
                             {"MQTT_KEEPALIVE", "5"},
                             {"LOG_LEVEL", "INFO"}},
                            log_path_);
    REQUIRE(process.ok());
    process_ = *std::move(process);
  }
  std::string Log() const { return ReadFile(log_path_); }

 private:
  TempDir dir_;
  std::string log_path_;
  std::unique_ptr<ChildProcess> process_;
};

}  // namespace iot2mqtt::mqtt_bridge::harness

#endif  // IOT2MQTT_TESTS_INTEGRATION_MQTT_BRIDGE_BRIDGE_HARNESS_H_
