#ifndef IOT2MQTT_TESTS_E2E_E2E_STACK_H_
#define IOT2MQTT_TESTS_E2E_E2E_STACK_H_

// The installation end-to-end tests run: the real binaries on free loopback
// ports with their data in a TempDir, spoken to over HTTP through the
// gateway. Header-only; it REQUIREs through Catch.
//
//   Stack stack({"key-1", true, {}});            // config, orchestrator,
//   std::string token = stack.TokenFor("key-1");  // gateway
//   HttpResponse r = stack.Call("GET", "/api/instances", "", Bearer(token));
//
// By default the orchestrator runs instances as local processes whose broker
// (and mqtt-bridge, and discovery service) is a closed loopback port. With
// `live`, a real Mosquitto (sdk::testing::LoopbackBroker), the mqtt-bridge
// and the discovery service run too, so connectors come online.

#include <signal.h>
#include <sys/stat.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "catch2/catch.hpp"
#include "rapidjson/document.h"
#include "sdk/testing/loopback_broker.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::testing::e2e {

using Headers = std::vector<std::pair<std::string, std::string>>;

inline rapidjson::Document Parse(const std::string& body) {
  rapidjson::Document doc;
  doc.Parse(body.c_str(), body.size());
  INFO(body);
  REQUIRE_FALSE(doc.HasParseError());
  return doc;
}

inline std::string Str(const rapidjson::Value& v, const char* key) {
  INFO(key);
  REQUIRE(v.IsObject());
  REQUIRE(v.HasMember(key));
  REQUIRE(v[key].IsString());
  return v[key].GetString();
}

// Asserts the unified error body (error, code, details, correlationId,
// detail) with `code`.
inline void CheckErrorBody(const HttpResponse& r, int status,
                           const std::string& code) {
  INFO(r.status << " " << r.body);
  CHECK(r.status == status);
  rapidjson::Document doc = Parse(r.body);
  CHECK(Str(doc, "code") == code);
  CHECK_FALSE(Str(doc, "error").empty());
  CHECK(Str(doc, "detail") == Str(doc, "error"));
  REQUIRE(doc.HasMember("details"));
  CHECK((doc["details"].IsNull() || doc["details"].IsObject()));
  CHECK(Str(doc, "correlationId") == r.Header("X-Correlation-ID"));
  CHECK_FALSE(r.Header("X-Correlation-ID").empty());
}

// A 401 carries the unified body and a bearer challenge.
inline void CheckUnauthorized(const HttpResponse& r, const std::string& code) {
  CheckErrorBody(r, 401, code);
  CHECK(r.Header("WWW-Authenticate") == "Bearer");
}

inline Headers Bearer(const std::string& token) {
  return {{"Authorization", absl::StrCat("Bearer ", token)}};
}

inline std::string LoginBody(const std::string& key) {
  return absl::StrCat(R"({"key":")", key, "\"}");
}

// Starts `binary` listening on a free loopback port, given through the
// environment variable `address_variable`, and waits until `ready(port)`.
// FreePort's port was free a moment ago; on a busy machine another process
// may take it before the child binds, so a child that exits saying the
// address is in use is started again on another port.
inline std::unique_ptr<ChildProcess> StartListening(
    const std::string& binary, std::map<std::string, std::string> env,
    const std::string& address_variable, const std::string& log_path,
    const std::function<bool(int)>& ready, int* port) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    *port = FreePort();
    env[address_variable] = absl::StrCat("127.0.0.1:", *port);
    auto child = ChildProcess::Start(BinaryPath(binary), {}, env, log_path);
    REQUIRE(child.ok());
    std::unique_ptr<ChildProcess> process = std::move(*child);
    bool up = WaitFor([&] { return !process->Running() || ready(*port); },
                      absl::Seconds(20));
    if (up && process->Running()) return process;
    const std::string log = ReadFile(log_path);
    INFO(binary << " did not start: " << log);
    REQUIRE(absl::StrContains(log, "in use"));
  }
  FAIL("no free port for " << binary);
  return nullptr;
}

struct StackOptions {
  // WEB_ACCESS_KEY for the config service; none when empty.
  std::string access_key;
  bool start_gateway = true;
  std::map<std::string, std::string> gateway_env;
  std::map<std::string, std::string> config_env = {};
  // A real broker, the mqtt-bridge and the discovery service as well (with
  // start_gateway).
  bool live = false;
  // The connector catalogue; default: the source tree's connectors/.
  std::string connectors_dir = {};
  // Added to the discovery service's environment.
  std::map<std::string, std::string> discovery_env = {};
};

// One installation: iot2mqtt-config (+ iot2mqtt-orchestrator and
// iot2mqtt-gateway, + Mosquitto, iot2mqtt-mqtt-bridge and
// iot2mqtt-discovery when live) with their own data directory. Logs go to
// <tmp>/logs, the data to <tmp>/data.
class Stack {
 public:
  explicit Stack(StackOptions options = {}) : options_(std::move(options)) {
    REQUIRE(mkdir(dir_.Join("logs").c_str(), 0755) == 0);
    REQUIRE(mkdir(dir_.Join("esp32-configs").c_str(), 0755) == 0);
    if (options_.connectors_dir.empty()) {
      options_.connectors_dir = SourcePath("connectors");
    }
    if (options_.live && options_.start_gateway) {
      auto broker = sdk::testing::LoopbackBroker::Start();
      REQUIRE(broker.ok());
      broker_ = *std::move(broker);
    }
    config_ = StartListening(
        "iot2mqtt-config", ConfigEnv(), "CONFIG_LISTEN_ADDR", config_log(),
        [](int port) { return PortAccepts(port); }, &config_port_);
    if (!options_.start_gateway) return;
    std::string bridge_target = closed_target_;
    std::string discovery_target = closed_target_;
    if (broker_ != nullptr) {
      bridge_ = StartListening(
          "iot2mqtt-mqtt-bridge",
          {{"CONFIG_SERVICE_ADDR", config_target()}, {"LOG_LEVEL", "DEBUG"}},
          "MQTT_BRIDGE_LISTEN_ADDR", dir_.Join("logs/mqtt-bridge.log"),
          [](int port) { return PortAccepts(port); }, &bridge_port_);
      bridge_target = absl::StrCat("127.0.0.1:", bridge_port_);
      std::map<std::string, std::string> env = {
          {"IOT2MQTT_DATA_DIR", data_dir()},
          {"IOT2MQTT_CONNECTORS_DIR", options_.connectors_dir},
          {"CONFIG_SERVICE_ADDR", config_target()},
          {"LOG_LEVEL", "DEBUG"}};
      for (const auto& [name, value] : options_.discovery_env) {
        env[name] = value;
      }
      discovery_ = StartListening(
          "iot2mqtt-discovery", env, "DISCOVERY_LISTEN_ADDR",
          dir_.Join("logs/discovery.log"),
          [](int port) { return PortAccepts(port); }, &discovery_port_);
      discovery_target = absl::StrCat("127.0.0.1:", discovery_port_);
    }
    // The orchestrator serves the configured-integration views and runs
    // instances as local processes.
    orchestrator_ = StartListening(
        "iot2mqtt-orchestrator",
        {{"IOT2MQTT_DATA_DIR", data_dir()},
         {"IOT2MQTT_CONNECTORS_DIR", options_.connectors_dir},
         {"CONFIG_SERVICE_ADDR", config_target()},
         {"MQTT_BRIDGE_ADDR", bridge_target},
         {"IOT2MQTT_RUNTIME", "process"},
         {"PROCESS_STOP_ON_EXIT", "true"},
         {"LOG_LEVEL", "DEBUG"}},
        "ORCHESTRATOR_LISTEN_ADDR", orchestrator_log(),
        [](int port) { return PortAccepts(port); }, &orchestrator_port_);
    std::map<std::string, std::string> env = {
        {"CONFIG_SERVICE_ADDR", config_target()},
        {"ORCHESTRATOR_ADDR", absl::StrCat("127.0.0.1:", orchestrator_port_)},
        {"MQTT_BRIDGE_ADDR", bridge_target},
        {"DISCOVERY_ADDR", discovery_target},
        {"LOG_LEVEL", "DEBUG"}};
    for (const auto& [name, value] : options_.gateway_env) env[name] = value;
    gateway_ = StartListening(
        "iot2mqtt-gateway", env, "GATEWAY_LISTEN_ADDR", gateway_log(),
        [](int port) { return HttpRequest(port, "GET", "/api/health").ok(); },
        &gateway_port_);
  }

  // A graceful stop of the orchestrator stops the connector processes it
  // started, and one of the discovery service the tools it runs (both live
  // in process groups of their own, out of reach of the process-group kill
  // of ChildProcess).
  ~Stack() {
    for (ChildProcess* child : {discovery_.get(), orchestrator_.get()}) {
      if (child != nullptr && child->Running()) {
        child->Signal(SIGTERM);
        (void)child->Wait(absl::Seconds(15));
      }
    }
  }

  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;

  // The config service's environment (also the CLI's).
  std::map<std::string, std::string> ConfigEnv() const {
    std::map<std::string, std::string> env = {
        {"ESP32_CONFIGS_DIR", dir_.Join("esp32-configs")},
        {"IOT2MQTT_DATA_DIR", data_dir()},
        {"IOT2MQTT_CONNECTORS_DIR", options_.connectors_dir},
        {"CONFIG_LISTEN_ADDR", config_target()},
        {"MQTT_HOST", "127.0.0.1"},
        {"MQTT_PORT", broker_ != nullptr ? absl::StrCat(broker_->port())
                                         : closed_target_.substr(
                                               closed_target_.find(':') + 1)},
        {"LOG_LEVEL", "DEBUG"}};
    if (!options_.access_key.empty()) {
      env["WEB_ACCESS_KEY"] = options_.access_key;
    }
    for (const auto& [name, value] : options_.config_env) env[name] = value;
    return env;
  }

  HttpResponse Call(const std::string& method, const std::string& target,
                    const std::string& body = "", const Headers& headers = {}) {
    auto r = HttpRequest(gateway_port_, method, target, body, headers);
    INFO(method << " " << target);
    REQUIRE(r.ok());
    return *r;
  }
  HttpResponse Login(const std::string& key) {
    return Call("POST", "/api/auth/login", LoginBody(key));
  }
  // A token for `key`; the login must succeed.
  std::string TokenFor(const std::string& key) {
    HttpResponse r = Login(key);
    INFO(r.body);
    REQUIRE(r.status == 200);
    return Str(Parse(r.body), "token");
  }

  // Stops every service cleanly (SIGTERM), so every log line is written;
  // each must exit with 0.
  void Stop() {
    for (ChildProcess* child :
         {gateway_.get(), discovery_.get(), orchestrator_.get(), bridge_.get(),
          config_.get()}) {
      if (child == nullptr) continue;
      child->Signal(SIGTERM);
      auto code = child->Wait(absl::Seconds(15));
      REQUIRE(code.ok());
      CHECK(*code == 0);
    }
  }

  std::string Logs() const {
    std::string logs = ReadFile(config_log());
    for (const char* name :
         {"gateway", "orchestrator", "mqtt-bridge", "discovery"}) {
      const std::string path = dir_.Join(absl::StrCat("logs/", name, ".log"));
      struct stat st;
      if (stat(path.c_str(), &st) == 0) logs += ReadFile(path);
    }
    return logs;
  }

  const TempDir& dir() const { return dir_; }
  std::string data_dir() const { return dir_.Join("data"); }
  std::string config_log() const { return dir_.Join("logs/config.log"); }
  std::string gateway_log() const { return dir_.Join("logs/gateway.log"); }
  std::string orchestrator_log() const {
    return dir_.Join("logs/orchestrator.log");
  }
  std::string config_target() const {
    return absl::StrCat("127.0.0.1:", config_port_);
  }
  int gateway_port() const { return gateway_port_; }
  // Null unless live.
  sdk::testing::LoopbackBroker* broker() { return broker_.get(); }
  ChildProcess* discovery() { return discovery_.get(); }
  ChildProcess* orchestrator() { return orchestrator_.get(); }

 private:
  TempDir dir_;
  StackOptions options_;
  // Nothing listens there.
  std::string closed_target_ = absl::StrCat("127.0.0.1:", FreePort());
  int config_port_ = 0;
  int gateway_port_ = 0;
  int orchestrator_port_ = 0;
  int bridge_port_ = 0;
  int discovery_port_ = 0;
  std::unique_ptr<sdk::testing::LoopbackBroker> broker_;
  // Destroyed in reverse: gateway first, config last.
  std::unique_ptr<ChildProcess> config_;
  std::unique_ptr<ChildProcess> bridge_;
  std::unique_ptr<ChildProcess> discovery_;
  std::unique_ptr<ChildProcess> orchestrator_;
  std::unique_ptr<ChildProcess> gateway_;
};

}  // namespace iot2mqtt::testing::e2e

#endif  // IOT2MQTT_TESTS_E2E_E2E_STACK_H_
