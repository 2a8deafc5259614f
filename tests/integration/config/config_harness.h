#ifndef IOT2MQTT_TESTS_INTEGRATION_CONFIG_CONFIG_HARNESS_H_
#define IOT2MQTT_TESTS_INTEGRATION_CONFIG_CONFIG_HARNESS_H_

// The real iot2mqtt-config (and, when asked, iot2mqtt-gateway) binaries over
// temporary directories on free loopback ports, for the config integration
// tests (instances_test.cc, events_test.cc). Header-only: both test files
// are one binary, everything here is inline.
//
//   <root>/data/          IOT2MQTT_DATA_DIR
//   <root>/connectors/    IOT2MQTT_CONNECTORS_DIR: a copy of the repository's
//                         connectors/demo/{setup.json,manifest.json}
//   <root>/esp32/         ESP32_CONFIGS_DIR
//   <root>/config.log, <root>/gateway.log

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "iot2mqtt/config/v1/config_service.grpc.pb.h"
#include "rapidjson/document.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::config::harness {

using ::iot2mqtt::config::v1::ConfigService;
using ::iot2mqtt::testing::BinaryPath;
using ::iot2mqtt::testing::ChildProcess;
using ::iot2mqtt::testing::FreePort;
using ::iot2mqtt::testing::HttpRequest;
using ::iot2mqtt::testing::HttpResponse;
using ::iot2mqtt::testing::ListDir;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::SourcePath;
using ::iot2mqtt::testing::TempDir;
using ::iot2mqtt::testing::WaitFor;
using ::iot2mqtt::testing::WriteFile;

// Extra environment of the config service.
using Env = std::map<std::string, std::string>;

inline constexpr char kAccessKey[] = "config integration key #7";
inline constexpr char kMask[] = "***HIDDEN***";

inline std::unique_ptr<grpc::ClientContext> Context(int seconds = 5) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(seconds));
  return context;
}

// A stub on a channel of its own (no subchannel shared with earlier
// channels, so no reconnect backoff inherited from refused attempts).
inline std::unique_ptr<ConfigService::Stub> Connect(int port) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return ConfigService::NewStub(
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                grpc::InsecureChannelCredentials(), args));
}

inline rapidjson::Document Parse(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.c_str(), text.size());
  INFO(text.substr(0, 2000));
  REQUIRE_FALSE(doc.HasParseError());
  return doc;
}

// Whether `text` is one JSON object (nothing after it).
inline bool IsJsonObject(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.c_str(), text.size());
  return !doc.HasParseError() && doc.IsObject();
}

inline std::string Str(const rapidjson::Value& value, const char* key) {
  INFO("key " << key);
  REQUIRE(value.IsObject());
  REQUIRE(value.HasMember(key));
  REQUIRE(value[key].IsString());
  return std::string(value[key].GetString(), value[key].GetStringLength());
}

// The unified error body: {"error", "code", "details", "correlationId",
// "detail"}; checks the status and returns the body.
inline rapidjson::Document CheckError(const HttpResponse& response, int status,
                                      const std::string& code) {
  INFO(response.body);
  CHECK(response.status == status);
  rapidjson::Document doc = Parse(response.body);
  CHECK(Str(doc, "code") == code);
  CHECK_FALSE(Str(doc, "error").empty());
  return doc;
}

// Every regular file under `dir`, recursively: path → content.
inline std::map<std::string, std::string> ReadTree(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const std::string& name : ListDir(dir)) {
    const std::string path = dir + "/" + name;
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      for (auto& [sub, content] : ReadTree(path)) files[sub] = content;
    } else if (S_ISREG(st.st_mode)) {
      files[path] = ReadFile(path);
    }
  }
  return files;
}

// The files of the tree whose content contains `needle`.
inline std::vector<std::string> FilesContaining(const std::string& dir,
                                                const std::string& needle) {
  std::vector<std::string> found;
  for (const auto& [path, content] : ReadTree(dir)) {
    if (absl::StrContains(content, needle)) found.push_back(path);
  }
  return found;
}

// The real services over one set of directories. The config port stays the
// same across restarts, so the gateway follows them.
class ServiceStack {
 public:
  // `extra_env` is added to the config service's environment.
  explicit ServiceStack(Env extra_env = {}) : extra_env_(std::move(extra_env)) {
    REQUIRE(mkdir(root_.Join("data").c_str(), 0755) == 0);
    REQUIRE(mkdir(root_.Join("esp32").c_str(), 0755) == 0);
    REQUIRE(mkdir(root_.Join("connectors").c_str(), 0755) == 0);
    REQUIRE(mkdir(connector_dir().c_str(), 0755) == 0);
    for (const char* file : {"setup.json", "manifest.json"}) {
      WriteFile(connector_dir() + "/" + file,
                ReadFile(SourcePath(absl::StrCat("connectors/demo/", file))));
    }
    config_port_ = FreePort();
  }

  ~ServiceStack() {
    gateway_.reset();
    config_.reset();
  }

  ServiceStack(const ServiceStack&) = delete;
  ServiceStack& operator=(const ServiceStack&) = delete;

  // Starts the config service and waits until it answers over gRPC. When
  // its port was taken meanwhile (by another test's process), it moves to a
  // free one, and so does a running gateway.
  void StartConfig() {
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (TryStartConfig()) return;
      INFO(Logs());
      REQUIRE(absl::StrContains(LogSince("config.log", log_offset_),
                                "cannot listen"));
      config_port_ = FreePort();
      if (gateway_ != nullptr) {
        gateway_.reset();
        LaunchGateway();
      }
    }
    FAIL("no free port for the config service");
  }

  // SIGKILL: no chance to finish anything.
  void KillConfig() {
    REQUIRE(config_ != nullptr);
    config_->Signal(SIGKILL);
    absl::StatusOr<int> code = config_->Wait(absl::Seconds(10));
    REQUIRE(code.ok());
    CHECK(*code == 128 + SIGKILL);
    config_.reset();
  }

  // SIGTERM: a clean stop (exit 0). The stub's channel goes first: the
  // server waits (its grace period) for idle client connections to close.
  void StopConfig() {
    REQUIRE(config_ != nullptr);
    stub_.reset();
    config_->Signal(SIGTERM);
    absl::StatusOr<int> code = config_->Wait(absl::Seconds(15));
    INFO(Logs());
    REQUIRE(code.ok());
    CHECK(*code == 0);
    config_.reset();
  }

  // Starts the gateway in front of the config service (which must run) and
  // logs in with the access key the config service was started with.
  void StartGateway() {
    LaunchGateway();
    HttpResponse login = Http("POST", "/api/auth/login",
                              absl::StrCat(R"({"key":")", kAccessKey, R"("})"));
    INFO(login.body);
    REQUIRE(login.status == 200);
    token_ = Str(Parse(login.body), "token");
  }

  // One request through the gateway, with the bearer token once logged in.
  HttpResponse Http(
      const std::string& method, const std::string& target,
      const std::string& body = "",
      std::vector<std::pair<std::string, std::string>> headers = {}) {
    if (!token_.empty()) {
      headers.emplace_back("Authorization", absl::StrCat("Bearer ", token_));
    }
    auto response = HttpRequest(gateway_port_, method, target, body, headers);
    INFO(method << " " << target);
    REQUIRE(response.ok());
    return *std::move(response);
  }

  // The stub of the running config service (a new channel per start).
  ConfigService::Stub& stub() {
    REQUIRE(stub_ != nullptr);
    return *stub_;
  }
  int config_port() const { return config_port_; }
  int gateway_port() const { return gateway_port_; }
  const std::string& token() const { return token_; }
  bool config_running() const { return config_ != nullptr; }

  std::string root() const { return root_.path(); }
  std::string data_dir() const { return root_.Join("data"); }
  std::string instances_dir() const { return root_.Join("data/instances"); }
  std::string env_path() const { return root_.Join("data/.env"); }
  std::string secrets_dir() const { return root_.Join("data/secrets"); }
  std::string connectors_dir() const { return root_.Join("connectors"); }
  std::string connector_dir() const { return root_.Join("connectors/demo"); }
  std::string esp32_dir() const { return root_.Join("esp32"); }

  // Both logs, the last `tail` bytes of each (0: all of them).
  std::string Logs(size_t tail = 6000) const {
    std::string logs;
    for (const char* name : {"config.log", "gateway.log"}) {
      if (access(root_.Join(name).c_str(), R_OK) == 0) {
        std::string text = ReadFile(root_.Join(name));
        if (tail > 0 && text.size() > tail) {
          text = text.substr(text.size() - tail);
        }
        absl::StrAppend(&logs, "--- ", name, "\n", text);
      }
    }
    return logs;
  }

 private:
  // One start; false when the process exited before answering.
  bool TryStartConfig() {
    std::map<std::string, std::string> env = {
        {"IOT2MQTT_DATA_DIR", data_dir()},
        {"IOT2MQTT_CONNECTORS_DIR", connectors_dir()},
        {"ESP32_CONFIGS_DIR", esp32_dir()},
        {"CONFIG_LISTEN_ADDR", absl::StrCat("127.0.0.1:", config_port_)},
        {"WEB_ACCESS_KEY", kAccessKey},
        {"LOG_LEVEL", "INFO"}};
    for (const auto& [key, value] : extra_env_) env[key] = value;
    log_offset_ = LogSince("config.log", 0).size();
    auto process = ChildProcess::Start(BinaryPath("iot2mqtt-config"), {}, env,
                                       root_.Join("config.log"));
    REQUIRE(process.ok());
    config_ = *std::move(process);
    bool exited = false;
    bool ready = WaitFor(
        [&] {
          if (!config_->Running()) {
            exited = true;
            return true;
          }
          stub_ = Connect(config_port_);
          v1::ListDeviceConfigsResponse response;
          return stub_->ListDeviceConfigs(Context(1).get(), {}, &response).ok();
        },
        absl::Seconds(20));
    if (exited) {
      config_.reset();
      stub_.reset();
      return false;
    }
    INFO(Logs());
    REQUIRE(ready);
    return true;
  }

  // Starts the gateway on a free port (another one when that was taken
  // meanwhile) and waits until it answers.
  void LaunchGateway() {
    for (int attempt = 0; attempt < 3; ++attempt) {
      gateway_port_ = FreePort();
      auto process = ChildProcess::Start(
          BinaryPath("iot2mqtt-gateway"), {},
          {{"GATEWAY_LISTEN_ADDR", absl::StrCat("127.0.0.1:", gateway_port_)},
           {"CONFIG_SERVICE_ADDR", absl::StrCat("127.0.0.1:", config_port_)},
           {"LOG_LEVEL", "INFO"}},
          root_.Join("gateway.log"));
      REQUIRE(process.ok());
      gateway_ = *std::move(process);
      bool exited = false;
      bool ready = WaitFor([&] {
        if (!gateway_->Running()) {
          exited = true;
          return true;
        }
        auto health = HttpRequest(gateway_port_, "GET", "/api/health");
        return health.ok() && health->status == 200;
      });
      if (exited) {
        gateway_.reset();
        continue;
      }
      INFO(Logs());
      REQUIRE(ready);
      return;
    }
    INFO(Logs());
    FAIL("the gateway did not start");
  }

  // What the log `name` holds after `offset` bytes ("" without a log).
  std::string LogSince(const char* name, size_t offset) const {
    if (access(root_.Join(name).c_str(), R_OK) != 0) return "";
    std::string text = ReadFile(root_.Join(name));
    return offset < text.size() ? text.substr(offset) : "";
  }

  TempDir root_;
  Env extra_env_;
  int config_port_ = 0;
  int gateway_port_ = 0;
  std::unique_ptr<ChildProcess> config_;
  std::unique_ptr<ChildProcess> gateway_;
  std::unique_ptr<ConfigService::Stub> stub_;
  std::string token_;
  size_t log_offset_ = 0;
};

}  // namespace iot2mqtt::config::harness

#endif  // IOT2MQTT_TESTS_INTEGRATION_CONFIG_CONFIG_HARNESS_H_
