#include "services/config/device_config_store.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "catch2/catch.hpp"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/log.h"
#include "services/common/status.h"
#include "tests/support/captured_log.h"
#include "tests/support/test_support.h"
#include "tests/unit/config/config_test_util.h"

namespace iot2mqtt::config {
namespace {

using ::iot2mqtt::testing::CapturedLog;
using ::iot2mqtt::testing::ListDir;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::TempDir;
using ::iot2mqtt::testing::WriteFile;

constexpr char kMac[] = "a4-cf-12-34-56-78";

std::string Compact(const std::string& json) {
  absl::StatusOr<std::string> compact = sdk::RewriteJson(json);
  REQUIRE(compact.ok());
  return *compact;
}

std::string Pretty(const std::string& json) {
  absl::StatusOr<std::string> pretty =
      sdk::RewriteJson(json, sdk::JsonFormat::kPretty);
  REQUIRE(pretty.ok());
  return *pretty + "\n";
}

// Every file below `path` with its content ("<dir>/" for directories).
std::map<std::string, std::string> Snapshot(const std::string& path) {
  std::map<std::string, std::string> files;
  for (const std::string& name : ListDir(path)) {
    std::string child = path + "/" + name;
    struct stat st;
    REQUIRE(lstat(child.c_str(), &st) == 0);
    if (S_ISDIR(st.st_mode)) {
      files[name + "/"] = "";
      for (const auto& [sub, content] : Snapshot(child)) {
        files[name + "/" + sub] = content;
      }
    } else {
      files[name] = ReadFile(child);
    }
  }
  return files;
}

std::vector<std::string> TempFiles(const std::string& dir) {
  std::vector<std::string> temps;
  for (const std::string& name : ListDir(dir)) {
    if (absl::StrContains(name, ".tmp")) temps.push_back(name);
  }
  return temps;
}

TEST_CASE("FileDeviceConfigStore: list on an empty directory is empty",
          "[config]") {
  TempDir dir;
  FileDeviceConfigStore store(dir.path());
  absl::StatusOr<std::vector<DeviceConfigSummary>> configs = store.List();
  REQUIRE(configs.ok());
  CHECK(configs->empty());
}

TEST_CASE("FileDeviceConfigStore: list returns every config sorted by MAC",
          "[config]") {
  TempDir dir;
  WriteFile(dir.Join("ff-00-00-00-00-01.json"), R"({"deviceName":"c"})");
  WriteFile(dir.Join("00-00-00-00-00-02.json"), R"({"deviceName":"a"})");
  WriteFile(dir.Join("a4-cf-12-34-56-78.json"), R"({"deviceName":"b"})");
  FileDeviceConfigStore store(dir.path());

  absl::StatusOr<std::vector<DeviceConfigSummary>> configs = store.List();
  REQUIRE(configs.ok());
  REQUIRE(configs->size() == 3);
  CHECK((*configs)[0].mac_address == "00-00-00-00-00-02");
  CHECK((*configs)[1].mac_address == "a4-cf-12-34-56-78");
  CHECK((*configs)[2].mac_address == "ff-00-00-00-00-01");
  CHECK((*configs)[0].device_name == "a");
}

TEST_CASE("FileDeviceConfigStore: list extracts name, entity id and OTA flag",
          "[config]") {
  TempDir dir;
  WriteFile(dir.Join(std::string(kMac) + ".json"), R"({
    "deviceName": "Kitchen sensor",
    "deviceEntityId": "sensor.kitchen",
    "enableOTA": true,
    "mqttBroker": {"host": "broker.home.arpa", "port": 1883}
  })");
  FileDeviceConfigStore store(dir.path());

  absl::StatusOr<std::vector<DeviceConfigSummary>> configs = store.List();
  REQUIRE(configs.ok());
  REQUIRE(configs->size() == 1);
  const DeviceConfigSummary& summary = configs->front();
  CHECK(summary.mac_address == kMac);
  CHECK(summary.device_name == "Kitchen sensor");
  CHECK(summary.device_entity_id == "sensor.kitchen");
  CHECK(summary.enable_ota == true);
}

TEST_CASE("FileDeviceConfigStore: list leaves missing or mistyped fields unset",
          "[config]") {
  TempDir dir;
  WriteFile(dir.Join("00-00-00-00-00-01.json"), R"({"other": 1})");
  WriteFile(
      dir.Join("00-00-00-00-00-02.json"),
      R"({"deviceName": 42, "deviceEntityId": null, "enableOTA": "yes"})");
  WriteFile(dir.Join("00-00-00-00-00-03.json"), R"({"enableOTA": false})");
  FileDeviceConfigStore store(dir.path());

  absl::StatusOr<std::vector<DeviceConfigSummary>> configs = store.List();
  REQUIRE(configs.ok());
  REQUIRE(configs->size() == 3);
  for (int i = 0; i < 2; ++i) {
    CHECK_FALSE((*configs)[i].device_name.has_value());
    CHECK_FALSE((*configs)[i].device_entity_id.has_value());
    CHECK_FALSE((*configs)[i].enable_ota.has_value());
  }
  CHECK((*configs)[2].enable_ota == false);
}

TEST_CASE("FileDeviceConfigStore: list skips invalid JSON with a warning",
          "[config]") {
  TempDir dir;
  WriteFile(dir.Join("00-00-00-00-00-01.json"), R"({"deviceName": "ok"})");
  WriteFile(dir.Join("00-00-00-00-00-02.json"), R"({"deviceName": )");
  WriteFile(dir.Join("00-00-00-00-00-03.json"), R"([1, 2])");
  WriteFile(dir.Join("00-00-00-00-00-04.json"), "");
  FileDeviceConfigStore store(dir.path());
  CapturedLog log;

  absl::StatusOr<std::vector<DeviceConfigSummary>> configs = store.List();
  REQUIRE(configs.ok());
  REQUIRE(configs->size() == 1);
  CHECK(configs->front().mac_address == "00-00-00-00-00-01");

  std::vector<std::string> warnings;
  for (const std::string& line : log.lines()) {
    if (absl::StrContains(line, "\"WARNING\"")) warnings.push_back(line);
  }
  REQUIRE(warnings.size() == 3);
  CHECK(absl::StrContains(warnings[0], "00-00-00-00-00-02.json"));
  CHECK(absl::StrContains(warnings[0], "offset"));
  CHECK(absl::StrContains(warnings[1], "00-00-00-00-00-03.json"));
  CHECK(absl::StrContains(warnings[1], "got an array"));
  CHECK(absl::StrContains(warnings[2], "00-00-00-00-00-04.json"));
}

TEST_CASE("FileDeviceConfigStore: list ignores names that are not configs",
          "[config]") {
  TempDir dir;
  WriteFile(dir.Join("00-00-00-00-00-01.json"), "{}");
  WriteFile(dir.Join("README.md"), "# configs");
  WriteFile(dir.Join("notes.json"), "{}");
  WriteFile(dir.Join("A4-CF-12-34-56-78.json"), "{}");
  WriteFile(dir.Join("a4:cf:12:34:56:78.json"), "{}");
  WriteFile(dir.Join("00-00-00-00-00-02.json.bak"), "{}");
  WriteFile(dir.Join("00-00-00-00-00-03"), "{}");
  FileDeviceConfigStore store(dir.path());
  // Written after construction, so not cleaned up: a write in flight.
  WriteFile(dir.Join(".00-00-00-00-00-04.json.tmp-0123456789abcdef"), "{}");

  absl::StatusOr<std::vector<DeviceConfigSummary>> configs = store.List();
  REQUIRE(configs.ok());
  REQUIRE(configs->size() == 1);
  CHECK(configs->front().mac_address == "00-00-00-00-00-01");
}

TEST_CASE("FileDeviceConfigStore: get returns the summary and compact content",
          "[config]") {
  TempDir dir;
  WriteFile(dir.Join(std::string(kMac) + ".json"),
            "{\n  \"deviceName\": \"Hall\",\n  \"enableOTA\": false,\n"
            "  \"wifi\": {\"ssid\": \"home\"}\n}\n");
  FileDeviceConfigStore store(dir.path());

  absl::StatusOr<DeviceConfig> config = store.Get(kMac);
  REQUIRE(config.ok());
  CHECK(config->summary.mac_address == kMac);
  CHECK(config->summary.device_name == "Hall");
  CHECK_FALSE(config->summary.device_entity_id.has_value());
  CHECK(config->summary.enable_ota == false);
  CHECK(config->content ==
        R"({"deviceName":"Hall","enableOTA":false,"wifi":{"ssid":"home"}})");
}

TEST_CASE("FileDeviceConfigStore: get on unknown MAC is NOT_FOUND",
          "[config]") {
  TempDir dir;
  FileDeviceConfigStore store(dir.path());
  absl::StatusOr<DeviceConfig> config = store.Get(kMac);
  RequireError(config.status(), absl::StatusCode::kNotFound,
               kDeviceConfigNotFound);
  std::optional<google::rpc::ErrorInfo> info =
      common::GetErrorInfo(config.status());
  REQUIRE(info.has_value());
  CHECK(info->metadata().at("mac_address") == kMac);
  CHECK(absl::StrContains(config.status().message(), kMac));
}

TEST_CASE("FileDeviceConfigStore: get with an invalid MAC is INVALID_ARGUMENT",
          "[config]") {
  TempDir dir;
  FileDeviceConfigStore store(dir.path());
  absl::StatusOr<DeviceConfig> config = store.Get("A4:CF:12:34:56:78");
  RequireError(config.status(), absl::StatusCode::kInvalidArgument,
               kInvalidMacAddress);
  CHECK(absl::StrContains(config.status().message(), "A4:CF:12:34:56:78"));
  CHECK(absl::StrContains(config.status().message(), "xx-xx-xx-xx-xx-xx"));
}

TEST_CASE("FileDeviceConfigStore: get on a corrupt file is FAILED_PRECONDITION",
          "[config]") {
  TempDir dir;
  WriteFile(dir.Join(std::string(kMac) + ".json"), R"({"deviceName": "x",)");
  FileDeviceConfigStore store(dir.path());
  absl::StatusOr<DeviceConfig> config = store.Get(kMac);
  RequireError(config.status(), absl::StatusCode::kFailedPrecondition,
               kDeviceConfigCorrupt);
  CHECK(absl::StrContains(config.status().message(), "offset"));
  CHECK(absl::StrContains(config.status().message(), kMac));

  WriteFile(dir.Join(std::string(kMac) + ".json"), R"("just a string")");
  RequireError(store.Get(kMac).status(), absl::StatusCode::kFailedPrecondition,
               kDeviceConfigCorrupt);
}

TEST_CASE("FileDeviceConfigStore: save creates a readable file", "[config]") {
  TempDir dir;
  FileDeviceConfigStore store(dir.path());
  const std::string content =
      R"({ "deviceName" : "Porch", "deviceEntityId": "light.porch",
           "enableOTA": true, "pins": [1, 2, 3] })";

  absl::StatusOr<DeviceConfig> saved = store.Put(kMac, content);
  REQUIRE(saved.ok());
  CHECK(saved->summary.mac_address == kMac);
  CHECK(saved->summary.device_name == "Porch");
  CHECK(saved->summary.device_entity_id == "light.porch");
  CHECK(saved->summary.enable_ota == true);
  CHECK(saved->content ==
        R"({"deviceName":"Porch","deviceEntityId":"light.porch",)"
        R"("enableOTA":true,"pins":[1,2,3]})");

  CHECK(ListDir(dir.path()) ==
        std::vector<std::string>{std::string(kMac) + ".json"});
  std::string file = ReadFile(dir.Join(std::string(kMac) + ".json"));
  CHECK(file == Pretty(content));
  CHECK(absl::StrContains(file, "\n  \"deviceName\": \"Porch\""));

  absl::StatusOr<DeviceConfig> read = store.Get(kMac);
  REQUIRE(read.ok());
  CHECK(read->content == saved->content);
}

TEST_CASE("FileDeviceConfigStore: save replaces an existing config",
          "[config]") {
  TempDir dir;
  FileDeviceConfigStore store(dir.path());
  REQUIRE(store.Put(kMac, R"({"deviceName": "old", "extra": 1})").ok());
  REQUIRE(store.Put(kMac, R"({"deviceName": "new"})").ok());

  absl::StatusOr<DeviceConfig> read = store.Get(kMac);
  REQUIRE(read.ok());
  CHECK(read->content == R"({"deviceName":"new"})");
  CHECK(ListDir(dir.path()).size() == 1);
  absl::StatusOr<std::vector<DeviceConfigSummary>> configs = store.List();
  REQUIRE(configs.ok());
  REQUIRE(configs->size() == 1);
  CHECK(configs->front().device_name == "new");
}

TEST_CASE("FileDeviceConfigStore: save with an invalid MAC writes nothing",
          "[config]") {
  TempDir dir;
  FileDeviceConfigStore store(dir.path());
  absl::StatusOr<DeviceConfig> saved = store.Put("a4-cf-12-34-56", "{}");
  RequireError(saved.status(), absl::StatusCode::kInvalidArgument,
               kInvalidMacAddress);
  CHECK(ListDir(dir.path()).empty());
}

TEST_CASE("FileDeviceConfigStore: save rejects content that is not an object",
          "[config]") {
  TempDir dir;
  FileDeviceConfigStore store(dir.path());

  RequireError(store.Put(kMac, "").status(), absl::StatusCode::kInvalidArgument,
               kContentRequired);

  absl::Status array = store.Put(kMac, "[1, 2]").status();
  RequireError(array, absl::StatusCode::kInvalidArgument, kInvalidContent);
  CHECK(absl::StrContains(array.message(),
                          "expected a JSON object, got an array"));

  absl::Status broken = store.Put(kMac, R"({"a": tru})").status();
  RequireError(broken, absl::StatusCode::kInvalidArgument, kInvalidContent);
  CHECK(absl::StrContains(broken.message(), "offset"));

  for (const char* content :
       {"\"text\"", "42", "null", "true", "   ", "{} {}", "{\"a\":1,}"}) {
    INFO(content);
    RequireError(store.Put(kMac, content).status(),
                 absl::StatusCode::kInvalidArgument, kInvalidContent);
  }
  RequireError(store.Put(kMac, "{\"bad\": \"\xff\xfe\"}").status(),
               absl::StatusCode::kInvalidArgument, kInvalidContent);
  CHECK(ListDir(dir.path()).empty());
}

TEST_CASE("FileDeviceConfigStore: a failed rename leaves no temporary file",
          "[config]") {
  TempDir dir;
  // The target path is a non-empty directory, so rename() fails (EISDIR),
  // even for root.
  std::string target = dir.Join(std::string(kMac) + ".json");
  REQUIRE(mkdir(target.c_str(), 0755) == 0);
  WriteFile(target + "/keep", "keep");
  FileDeviceConfigStore store(dir.path());

  absl::Status status = store.Put(kMac, R"({"deviceName": "x"})").status();
  INFO(status.ToString());
  REQUIRE_FALSE(status.ok());
  CHECK(common::ReasonOf(status) == kStorageIoError);
  CHECK(absl::StrContains(status.message(), target));
  CHECK(TempFiles(dir.path()).empty());
  CHECK(ListDir(dir.path()) ==
        std::vector<std::string>{std::string(kMac) + ".json"});
  CHECK(ReadFile(target + "/keep") == "keep");
}

TEST_CASE("FileDeviceConfigStore: a failed write keeps the old file",
          "[config]") {
  TempDir dir;
  FileDeviceConfigStore store(dir.path());
  const std::string old_content = R"({"deviceName":"old"})";
  REQUIRE(store.Put(kMac, old_content).ok());
  const std::string old_file = ReadFile(dir.Join(std::string(kMac) + ".json"));

  // Files may not grow past 1 KiB: write() fails with EFBIG, even for root.
  struct rlimit saved_limit;
  REQUIRE(getrlimit(RLIMIT_FSIZE, &saved_limit) == 0);
  struct rlimit small = saved_limit;
  small.rlim_cur = 1024;
  auto previous_handler = signal(SIGXFSZ, SIG_IGN);
  REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
  absl::Status status =
      store
          .Put(kMac, absl::StrCat(R"({"deviceName":")", std::string(8192, 'x'),
                                  "\"}"))
          .status();
  REQUIRE(setrlimit(RLIMIT_FSIZE, &saved_limit) == 0);
  signal(SIGXFSZ, previous_handler);

  RequireError(status, absl::StatusCode::kResourceExhausted, kStorageFull);
  CHECK(TempFiles(dir.path()).empty());
  CHECK(ReadFile(dir.Join(std::string(kMac) + ".json")) == old_file);
  absl::StatusOr<DeviceConfig> read = store.Get(kMac);
  REQUIRE(read.ok());
  CHECK(read->content == old_content);
}

TEST_CASE("FileDeviceConfigStore: delete removes the config", "[config]") {
  TempDir dir;
  FileDeviceConfigStore store(dir.path());
  REQUIRE(store.Put(kMac, "{}").ok());
  REQUIRE(store.Delete(kMac).ok());
  CHECK(ListDir(dir.path()).empty());
  RequireError(store.Get(kMac).status(), absl::StatusCode::kNotFound,
               kDeviceConfigNotFound);
}

TEST_CASE("FileDeviceConfigStore: delete on unknown MAC is NOT_FOUND",
          "[config]") {
  TempDir dir;
  FileDeviceConfigStore store(dir.path());
  absl::Status status = store.Delete(kMac);
  RequireError(status, absl::StatusCode::kNotFound, kDeviceConfigNotFound);
  std::optional<google::rpc::ErrorInfo> info = common::GetErrorInfo(status);
  REQUIRE(info.has_value());
  CHECK(info->metadata().at("mac_address") == kMac);
}

TEST_CASE("FileDeviceConfigStore: valid MAC addresses are accepted",
          "[config]") {
  for (const char* mac :
       {"a4-cf-12-34-56-78", "00-00-00-00-00-00", "ff-ff-ff-ff-ff-ff",
        "01-23-45-67-89-ab", "cd-ef-0a-1b-2c-3d"}) {
    INFO(mac);
    CHECK(IsValidMacAddress(mac));
    CHECK(ValidateMacAddress(mac).ok());
  }
}

TEST_CASE("FileDeviceConfigStore: invalid MAC addresses are rejected",
          "[config]") {
  const std::vector<std::string> invalid = {
      "",
      "A4-CF-12-34-56-78",
      "a4-CF-12-34-56-78",
      "a4:cf:12:34:56:78",
      "a4cf12345678",
      "a4-cf-12-34-56",
      "a4-cf-12-34-56-78-9a",
      "a4-cf-12-34-56-7g",
      "a4-cf-12-34-56-78.json",
      " a4-cf-12-34-56-78",
      "a4-cf-12-34-56-78\n",
      "a4_cf_12_34_56_78",
      "a4-cf-12-34-56-7",
      "a4--cf-12-34-56-7",
      "../cf-12-34-56-78",
      std::string("a4-cf-12-34-56-78\0", 18),
      std::string(4096, 'a'),
  };
  for (const std::string& mac : invalid) {
    INFO(mac);
    CHECK_FALSE(IsValidMacAddress(mac));
    absl::Status status = ValidateMacAddress(mac);
    RequireError(status, absl::StatusCode::kInvalidArgument,
                 kInvalidMacAddress);
    CHECK(absl::StrContains(status.message(), "xx-xx-xx-xx-xx-xx"));
    CHECK(status.message().size() < 300);
  }
}

TEST_CASE("FileDeviceConfigStore: path tricks are rejected and touch no file",
          "[config]") {
  TempDir root;
  std::string configs = root.Join("configs");
  REQUIRE(mkdir(configs.c_str(), 0755) == 0);
  // Bait outside the store that a path trick would reach.
  WriteFile(root.Join("cf-12-34-56-78.json"), R"({"secret": true})");
  WriteFile(root.Join("secret.json"), R"({"secret": true})");
  WriteFile(configs + "/a4-cf-12-34-56-78.json", R"({"deviceName": "x"})");
  FileDeviceConfigStore store(configs);
  const std::map<std::string, std::string> before = Snapshot(root.path());

  const std::vector<std::string> tricks = {
      "../cf-12-34-56-78",
      "../secret",
      "..%2fsecret",
      "..%2f..%2fetc%2fpasswd",
      "%2e%2e",
      "%2e%2e%2fcf-12-34-56-78",
      "../../../../etc/passwd",
      "/etc/passwd",
      "A4-CF-12-34-56-78",
      "a4:cf:12:34:56:78",
      "a4-cf-12-34-56-78.json",
      "a4-cf-12-34-56-78/",
      "./a4-cf-12-34-56-78",
      std::string("a4-cf-12-34-56-78\0.txt", 22),
      std::string("\0", 1),
      "",
  };
  for (const std::string& mac : tricks) {
    INFO(mac);
    RequireError(store.Get(mac).status(), absl::StatusCode::kInvalidArgument,
                 kInvalidMacAddress);
    RequireError(store.Put(mac, R"({"pwned": true})").status(),
                 absl::StatusCode::kInvalidArgument, kInvalidMacAddress);
    RequireError(store.Delete(mac), absl::StatusCode::kInvalidArgument,
                 kInvalidMacAddress);
  }
  CHECK(Snapshot(root.path()) == before);
}

TEST_CASE("FileDeviceConfigStore: numbers, unicode and key order round-trip",
          "[config]") {
  TempDir dir;
  FileDeviceConfigStore store(dir.path());
  const std::string content =
      R"({"z":9223372036854775807,"a":12345678901234567890,"m":-0.0,)"
      R"("f":0.1,"big":1e300,"tiny":1.5e-300,"neg":-9223372036854775808,)"
      R"("exp":1E+2,"s":"héllo ☃ 😀","nested":{"y":[0.30000000000000004,)"
      R"({"b":1,"a":2}]}})";

  absl::StatusOr<DeviceConfig> saved = store.Put(kMac, content);
  REQUIRE(saved.ok());
  CHECK(saved->content == content);

  absl::StatusOr<DeviceConfig> read = store.Get(kMac);
  REQUIRE(read.ok());
  CHECK(read->content == content);

  std::string file = ReadFile(dir.Join(std::string(kMac) + ".json"));
  for (const char* text :
       {"12345678901234567890", "9223372036854775807", "-0.0", "0.1", "1e300",
        "1.5e-300", "1E+2", "héllo ☃ 😀", "0.30000000000000004"}) {
    INFO(text);
    CHECK(absl::StrContains(file, text));
  }
  CHECK(file.find("\"z\"") < file.find("\"a\""));
  CHECK(file.find("\"a\"") < file.find("\"m\""));
}

TEST_CASE(
    "FileDeviceConfigStore: a missing directory is unhealthy and "
    "UNAVAILABLE",
    "[config]") {
  TempDir root;
  std::string missing = root.Join("no-such-dir");
  FileDeviceConfigStore store(missing);

  StoreHealth health = store.CheckHealth();
  CHECK_FALSE(health.healthy);
  CHECK(health.directory == missing);
  CHECK(absl::StrContains(health.reason, missing));
  CHECK(absl::StrContains(health.reason, "No such file or directory"));

  std::vector<absl::Status> statuses = {
      store.List().status(), store.Get(kMac).status(),
      store.Put(kMac, "{}").status(), store.Delete(kMac)};
  for (const absl::Status& status : statuses) {
    RequireError(status, absl::StatusCode::kUnavailable, kStorageUnavailable);
    CHECK(status.message() == health.reason);
  }
  // Never created by the store.
  CHECK(ListDir(root.path()).empty());
}

TEST_CASE("FileDeviceConfigStore: a file instead of a directory is unhealthy",
          "[config]") {
  TempDir root;
  WriteFile(root.Join("file"), "not a directory");
  FileDeviceConfigStore store(root.Join("file"));
  StoreHealth health = store.CheckHealth();
  CHECK_FALSE(health.healthy);
  CHECK(absl::StrContains(health.reason, "Not a directory"));
  RequireError(store.List().status(), absl::StatusCode::kUnavailable,
               kStorageUnavailable);
}

TEST_CASE(
    "FileDeviceConfigStore: a directory created later is used without "
    "restart",
    "[config]") {
  TempDir root;
  std::string later = root.Join("later");
  FileDeviceConfigStore store(later);
  REQUIRE_FALSE(store.CheckHealth().healthy);

  REQUIRE(mkdir(later.c_str(), 0755) == 0);
  StoreHealth health = store.CheckHealth();
  CHECK(health.healthy);
  CHECK(health.reason.empty());
  CHECK(health.config_count == 0);
  REQUIRE(store.Put(kMac, R"({"deviceName": "late"})").ok());
  CHECK(store.CheckHealth().config_count == 1);
}

TEST_CASE("FileDeviceConfigStore: health counts valid config files",
          "[config]") {
  TempDir dir;
  WriteFile(dir.Join("00-00-00-00-00-01.json"), "{}");
  WriteFile(dir.Join("00-00-00-00-00-02.json"), "{}");
  WriteFile(dir.Join("00-00-00-00-00-03.json"), "corrupt");
  WriteFile(dir.Join("README"), "hello");
  FileDeviceConfigStore store(dir.path());
  StoreHealth health = store.CheckHealth();
  CHECK(health.healthy);
  CHECK(health.config_count == 2);
}

TEST_CASE("FileDeviceConfigStore: stale temporary files are removed at start",
          "[config]") {
  TempDir dir;
  WriteFile(dir.Join(".a4-cf-12-34-56-78.json.tmp-0123456789abcdef"), "{\"a");
  WriteFile(dir.Join(".00-00-00-00-00-01.json.tmp-ff"), "");
  WriteFile(dir.Join(".hidden"), "kept");
  WriteFile(dir.Join("a4-cf-12-34-56-78.json.tmp"), "kept, not ours");
  WriteFile(dir.Join("a4-cf-12-34-56-78.json"), "{}");
  FileDeviceConfigStore store(dir.path());
  CHECK(ListDir(dir.path()) ==
        std::vector<std::string>{".hidden", "a4-cf-12-34-56-78.json",
                                 "a4-cf-12-34-56-78.json.tmp"});
}

TEST_CASE("FileDeviceConfigStore: concurrent saves on one MAC never mix",
          "[config]") {
  TempDir dir;
  FileDeviceConfigStore store(dir.path());
  constexpr int kThreads = 8;
  constexpr int kPuts = 50;
  auto content_of = [](int thread, int i) {
    // Lengths differ, so a torn or mixed write could not parse as one of them.
    return absl::StrCat(R"({"deviceName":"t)", thread, "-", i, R"(","thread":)",
                        thread, R"(,"seq":)", i, R"(,"pad":")",
                        std::string((thread * 97 + i * 31) % 3000, 'p'), "\"}");
  };
  std::set<std::string> written;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPuts; ++i) written.insert(content_of(t, i));
  }
  REQUIRE(store.Put(kMac, content_of(0, 0)).ok());

  std::atomic<bool> done{false};
  std::atomic<int> errors{0};
  std::atomic<int> foreign{0};
  std::thread reader([&] {
    while (!done.load()) {
      absl::StatusOr<DeviceConfig> config = store.Get(kMac);
      if (!config.ok()) {
        errors++;
      } else if (written.count(config->content) == 0) {
        foreign++;
      }
    }
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kPuts; ++i) {
        if (!store.Put(kMac, content_of(t, i)).ok()) errors++;
      }
    });
  }
  for (std::thread& writer : writers) writer.join();
  done = true;
  reader.join();

  CHECK(errors.load() == 0);
  CHECK(foreign.load() == 0);
  std::string file = ReadFile(dir.Join(std::string(kMac) + ".json"));
  CHECK(written.count(Compact(file)) == 1);
  CHECK(ListDir(dir.path()) ==
        std::vector<std::string>{std::string(kMac) + ".json"});
}

}  // namespace
}  // namespace iot2mqtt::config

namespace iot2mqtt::config {
namespace {

// Sets a file's modification time `seconds_ago` into the past, as if it had
// been written then (so the listing cache trusts it).
void Age(const std::string& path, int seconds_ago) {
  struct timespec times[2];
  clock_gettime(CLOCK_REALTIME, &times[0]);
  times[0].tv_sec -= seconds_ago;
  times[1] = times[0];
  REQUIRE(utimensat(AT_FDCWD, path.c_str(), times, 0) == 0);
}

std::optional<std::string> NameIn(const std::vector<DeviceConfigSummary>& list,
                                  const std::string& mac) {
  for (const DeviceConfigSummary& s : list) {
    if (s.mac_address == mac) return s.device_name;
  }
  return std::string("<absent>");
}

TEST_CASE("FileDeviceConfigStore: list sees files changed behind its back",
          "[config]") {
  TempDir dir;
  FileDeviceConfigStore store(dir.path());
  const std::string path = dir.Join(std::string(kMac) + ".json");
  WriteFile(path, R"({"deviceName": "Kitchen"})");
  Age(path, 60);
  REQUIRE(NameIn(*store.List(), kMac) == "Kitchen");  // Cached and trusted.

  SECTION("a rewrite of another size") {
    WriteFile(path, R"({"deviceName": "Living room"})");
    Age(path, 60);
    CHECK(NameIn(*store.List(), kMac) == "Living room");
  }
  SECTION("an in-place edit of the same size just now") {
    WriteFile(path, R"({"deviceName": "Pantry!"})");
    CHECK(NameIn(*store.List(), kMac) == "Pantry!");
  }
  SECTION("a save through the store") {
    REQUIRE(store.Put(kMac, R"({"deviceName": "Garage"})").ok());
    CHECK(NameIn(*store.List(), kMac) == "Garage");
  }
  SECTION("a deleted file") {
    REQUIRE(unlink(path.c_str()) == 0);
    CHECK(store.List()->empty());
  }
  SECTION("a file that became invalid") {
    WriteFile(path, R"({"deviceName": )");
    CHECK(store.List()->empty());
    CHECK(store.CheckHealth().config_count == 0);
  }
}

TEST_CASE("FileDeviceConfigStore: an invalid file is logged once per version",
          "[config]") {
  TempDir dir;
  const std::string path = dir.Join("00-00-00-00-00-02.json");
  WriteFile(path, R"({"deviceName": )");
  Age(path, 60);
  FileDeviceConfigStore store(dir.path());
  CapturedLog log;
  for (int i = 0; i < 3; ++i) REQUIRE(store.List().ok());
  store.CheckHealth();
  int warnings = 0;
  for (const std::string& line : log.lines()) {
    if (absl::StrContains(line, "\"WARNING\"")) ++warnings;
  }
  CHECK(warnings == 1);
}

}  // namespace
}  // namespace iot2mqtt::config

namespace iot2mqtt::config {
namespace {

TEST_CASE(
    "stale temporary files of crashed writes are removed at start, "
    "recent ones kept") {
  testing::TempDir dir;
  ::mkdir(dir.Join("instances").c_str(), 0755);
  ::mkdir(dir.Join("instances/demo").c_str(), 0755);
  const std::string stale =
      dir.Join("instances/demo/.x.json.tmp-0123456789abcdef");
  const std::string fresh = dir.Join(".env.tmp-fedcba9876543210");
  const std::string kept = dir.Join("instances/demo/x.json");
  testing::WriteFile(stale, "{");
  testing::WriteFile(fresh, "A=1");
  testing::WriteFile(kept, "{}");
  struct timespec times[2] = {{1000000, 0}, {1000000, 0}};
  REQUIRE(utimensat(AT_FDCWD, stale.c_str(), times, 0) == 0);

  CHECK(RemoveStaleTempFiles(dir.path(), absl::Seconds(10)) == 1);
  CHECK_FALSE(PathExists(stale));
  CHECK(PathExists(fresh));  // Maybe a write in progress elsewhere.
  CHECK(PathExists(kept));
}

}  // namespace
}  // namespace iot2mqtt::config
