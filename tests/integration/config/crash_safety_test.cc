// Crash safety of device-config writes: the real iot2mqtt-config binary is
// killed with SIGKILL while a client keeps replacing configurations; after
// every kill each `<mac>.json` must still be one complete configuration that
// was written, and after the restart no temporary file may remain.

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "iot2mqtt/config/v1/config_service.grpc.pb.h"
#include "iot2mqtt/sdk/json.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::config {
namespace {

using ::iot2mqtt::config::v1::ConfigService;
using ::iot2mqtt::testing::BinaryPath;
using ::iot2mqtt::testing::ChildProcess;
using ::iot2mqtt::testing::FreePort;
using ::iot2mqtt::testing::ListDir;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::TempDir;
using ::iot2mqtt::testing::WaitFor;

constexpr const char* kMacs[] = {"a4-cf-12-34-56-01", "a4-cf-12-34-56-02",
                                 "a4-cf-12-34-56-03"};

std::unique_ptr<grpc::ClientContext> Context(int seconds) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(seconds));
  return context;
}

// A channel of its own (no subchannel shared with earlier channels, so no
// reconnect backoff inherited from attempts refused before the service
// listened).
std::unique_ptr<ConfigService::Stub> Connect(int port) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return ConfigService::NewStub(
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                grpc::InsecureChannelCredentials(), args));
}

// Every content sent so far, compact; recorded before it is sent, since a
// write may land even when the kill keeps the answer from arriving.
class Written {
 public:
  void Add(const std::string& content) {
    std::lock_guard<std::mutex> lock(mu_);
    contents_.insert(content);
  }
  bool Contains(const std::string& content) {
    std::lock_guard<std::mutex> lock(mu_);
    return contents_.count(content) > 0;
  }

 private:
  std::mutex mu_;
  std::set<std::string> contents_;
};

// Checks every file of the store directory; returns how many temporary files
// there are.
int CheckFiles(const std::string& directory, Written& written) {
  int temp_files = 0;
  for (const std::string& name : ListDir(directory)) {
    INFO(name);
    if (absl::StrContains(name, ".tmp-")) {
      CHECK(name[0] == '.');
      ++temp_files;
      continue;
    }
    REQUIRE(absl::EndsWith(name, ".json"));
    std::string text = ReadFile(directory + "/" + name);
    INFO(text.substr(0, 200));
    REQUIRE(sdk::SplitJsonObject(text).ok());
    absl::StatusOr<std::string> compact = sdk::RewriteJson(text);
    REQUIRE(compact.ok());
    CHECK(written.Contains(*compact));
  }
  return temp_files;
}

// Replaces configurations as fast as the service answers until stopped.
class Writer {
 public:
  Writer(ConfigService::Stub& stub, Written& written, int id)
      : stub_(stub), written_(written), id_(id), rng_(id * 7919 + 1) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Writer() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int successes() const { return successes_.load(); }

 private:
  void Run() {
    int seq = 0;
    while (!stop_) {
      const std::string mac = kMacs[rng_() % std::size(kMacs)];
      // Sizes up to 64 KiB: a torn write would show as a truncated file.
      std::string content = absl::StrCat(
          R"({"deviceName":")", mac, "-", id_, "-", seq, R"(","seq":)", seq,
          R"(,"big":12345678901234567890,"pad":")",
          std::string(rng_() % 65536, static_cast<char>('a' + seq % 26)),
          R"("})");
      ++seq;
      written_.Add(content);
      v1::UpdateDeviceConfigRequest request;
      request.set_mac_address(mac);
      request.set_content(content);
      v1::UpdateDeviceConfigResponse response;
      if (stub_.UpdateDeviceConfig(Context(2).get(), request, &response).ok()) {
        successes_++;
      }
    }
  }

  ConfigService::Stub& stub_;
  Written& written_;
  int id_;
  std::mt19937 rng_;
  std::atomic<bool> stop_{false};
  std::atomic<int> successes_{0};
  std::thread thread_;
};

struct Service {
  std::unique_ptr<ChildProcess> process;
  std::unique_ptr<ConfigService::Stub> stub;
};

Service StartService(const std::string& directory, const std::string& log) {
  int port = FreePort();
  absl::StatusOr<std::unique_ptr<ChildProcess>> process = ChildProcess::Start(
      BinaryPath("iot2mqtt-config"), {},
      {{"ESP32_CONFIGS_DIR", directory},
       {"IOT2MQTT_DATA_DIR", directory + ".data"},
       {"CONFIG_LISTEN_ADDR", absl::StrCat("127.0.0.1:", port)},
       {"LOG_LEVEL", "WARNING"}},
      log);
  REQUIRE(process.ok());
  Service service{*std::move(process), nullptr};
  bool ready = WaitFor([&] {
    service.stub = Connect(port);
    v1::ListDeviceConfigsResponse response;
    return service.stub->ListDeviceConfigs(Context(1).get(), {}, &response)
        .ok();
  });
  INFO(ReadFile(log));
  REQUIRE(ready);
  return service;
}

TEST_CASE("iot2mqtt-config: SIGKILL during writes never leaves a torn config",
          "[config]") {
  TempDir root;
  const std::string directory = root.Join("configs");
  REQUIRE(mkdir(directory.c_str(), 0755) == 0);
  const std::string log = root.Join("config.log");
  Written written;
  std::mt19937 rng(20240601);
  constexpr int kRounds = 20;
  int kills_with_temp_files = 0;

  for (int round = 0; round < kRounds; ++round) {
    INFO("round " << round);
    Service service = StartService(directory, log);

    // Whatever the last kill interrupted: no temporary file survives the
    // restart, and the service lists exactly the files on disk.
    CHECK(CheckFiles(directory, written) == 0);
    v1::ListDeviceConfigsResponse listed;
    REQUIRE(
        service.stub->ListDeviceConfigs(Context(5).get(), {}, &listed).ok());
    CHECK(listed.count() == static_cast<int>(ListDir(directory).size()));
    for (const v1::DeviceConfigSummary& summary : listed.configs()) {
      CHECK(std::find(std::begin(kMacs), std::end(kMacs),
                      summary.mac_address()) != std::end(kMacs));
    }

    Writer first(*service.stub, written, 2 * round);
    Writer second(*service.stub, written, 2 * round + 1);
    const int target = 1 + static_cast<int>(rng() % 30);
    REQUIRE(WaitFor(
        [&] { return first.successes() + second.successes() >= target; },
        absl::Seconds(30)));
    service.process->Signal(SIGKILL);
    absl::StatusOr<int> exit_code = service.process->Wait(absl::Seconds(10));
    REQUIRE(exit_code.ok());
    CHECK(*exit_code == 128 + SIGKILL);
    first.Stop();
    second.Stop();

    if (CheckFiles(directory, written) > 0) ++kills_with_temp_files;
  }

  Service last = StartService(directory, log);
  CHECK(CheckFiles(directory, written) == 0);
  std::cout << kRounds << " kills, " << kills_with_temp_files
            << " of them in the middle of a write\n";
}

}  // namespace
}  // namespace iot2mqtt::config
