// Settings (.env), MQTT settings, the access key, login and session tokens.

#include <sodium.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "catch2/catch.hpp"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/log.h"
#include "services/common/status.h"
#include "services/config/access_keys.h"
#include "services/config/mqtt_settings.h"
#include "services/config/secret_vault.h"
#include "services/config/settings_store.h"
#include "services/config/token_service.h"
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

using Changes = std::map<std::string, std::optional<std::string>>;
using Values = std::map<std::string, std::string>;

std::map<std::string, std::string> MetadataOf(const absl::Status& status) {
  std::optional<google::rpc::ErrorInfo> info = common::GetErrorInfo(status);
  REQUIRE(info.has_value());
  return {info->metadata().begin(), info->metadata().end()};
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  REQUIRE(stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

Values LoadOk(const SettingsStore& store) {
  absl::StatusOr<Values> values = store.Load();
  INFO(values.status().ToString());
  REQUIRE(values.ok());
  return *values;
}

void UpdateOk(SettingsStore& store, const Changes& changes) {
  absl::Status status = store.Update(changes);
  INFO(status.ToString());
  REQUIRE(status.ok());
}

// Every file below `dir` with its content.
std::map<std::string, std::string> Snapshot(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const std::string& name : ListDir(dir)) {
    std::string path = dir + "/" + name;
    struct stat st;
    REQUIRE(lstat(path.c_str(), &st) == 0);
    if (S_ISDIR(st.st_mode)) {
      for (const auto& [child, content] : Snapshot(path)) {
        files[name + "/" + child] = content;
      }
    } else {
      files[name] = ReadFile(path);
    }
  }
  return files;
}

// Captures log lines while alive.

// An in-memory SecretVault.
class FakeVault final : public SecretVault {
 public:
  absl::StatusOr<std::string> Load(absl::string_view connector,
                                   absl::string_view id) override {
    absl::MutexLock lock(&mu_);
    auto it = values_.find(Owner(connector, id));
    return it == values_.end() ? "{}" : it->second;
  }
  absl::Status Store(absl::string_view connector, absl::string_view id,
                     absl::string_view values_json) override {
    absl::StatusOr<std::string> compact = sdk::RewriteJson(values_json);
    if (!compact.ok()) return compact.status();
    absl::MutexLock lock(&mu_);
    if (*compact == "{}") {
      values_.erase(Owner(connector, id));
    } else {
      values_[Owner(connector, id)] = *compact;
    }
    return absl::OkStatus();
  }
  absl::Status Remove(absl::string_view connector,
                      absl::string_view id) override {
    absl::MutexLock lock(&mu_);
    values_.erase(Owner(connector, id));
    return absl::OkStatus();
  }
  std::string Platform() {
    absl::StatusOr<std::string> values =
        Load(kPlatformSecretsConnector, kPlatformSecretsId);
    REQUIRE(values.ok());
    return *values;
  }

 private:
  static std::string Owner(absl::string_view connector, absl::string_view id) {
    return absl::StrCat(connector, "/", id);
  }
  absl::Mutex mu_;
  std::map<std::string, std::string> values_ ABSL_GUARDED_BY(mu_);
};

// ---------------------------------------------------------------- .env ---

TEST_CASE("Settings: a missing .env loads as no settings", "[unit][settings]") {
  TempDir dir;
  SettingsStore store(dir.path());
  REQUIRE(LoadOk(store).empty());
}

TEST_CASE("Settings: written in upstream's grouped layout, mode 0600",
          "[unit][settings]") {
  TempDir dir;
  SettingsStore store(dir.path());
  UpdateOk(store, {{"TZ", "UTC"},
                   {"MQTT_PORT", "1883"},
                   {"LOG_LEVEL", "INFO"},
                   {"MQTT_HOST", "192.0.2.10"},
                   {"MQTT_KEEPALIVE", "60"},
                   {"WEB_PORT", "8765"},
                   {"MQTT_RETAIN", "true"},
                   {"MQTT_BASE_TOPIC", "IoT2mqtt"}});
  std::string text = ReadFile(store.env_path());
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  REQUIRE(lines.size() > 3);
  CHECK(lines[0] == "# IoT2MQTT Configuration");
  CHECK(std::regex_match(
      lines[1],
      std::regex(R"(# Generated at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)")));
  std::string rest = text.substr(lines[0].size() + lines[1].size() + 2);
  CHECK(rest ==
        "\n"
        "# Web Interface\n"
        "WEB_PORT=8765\n"
        "\n"
        "# MQTT Broker Settings\n"
        "MQTT_HOST=192.0.2.10\n"
        "MQTT_PORT=1883\n"
        "\n"
        "# MQTT Topics and Client\n"
        "MQTT_BASE_TOPIC=IoT2mqtt\n"
        "MQTT_RETAIN=true\n"
        "\n"
        "# Advanced Settings\n"
        "MQTT_KEEPALIVE=60\n"
        "\n"
        "# Other Settings\n"
        "LOG_LEVEL=INFO\n"
        "TZ=UTC\n"
        "\n");
  CHECK(ModeOf(store.env_path()) == 0600);
}

TEST_CASE("Settings: tricky values survive a round trip exactly",
          "[unit][settings]") {
  const Values tricky = {
      {"SPACES", "two words and  more"},
      {"HASH", "a #not-a-comment"},
      {"HASH_START", "#start"},
      {"SINGLE", "it's"},
      {"SINGLE_WRAPPED", "'wrapped'"},
      {"DOUBLE", "say \"hi\""},
      {"DOUBLE_WRAPPED", "\"wrapped\""},
      {"BACKSLASH", "C:\\path\\"},
      {"ESCAPE_LOOKALIKE", "not a newline: \\n"},
      {"NEWLINE", "line1\nline2\r\nline3"},
      {"TAB", "a\tb"},
      {"EQUALS", "a=b=c"},
      {"UNICODE", "Grüße, 東京 ✓"},
      {"EMPTY", ""},
      {"PADDED", "  padded  "},
      {"DOLLAR", "$2b$12$abcdef"},
      {"URL", "mqtt://user@192.0.2.1:1883/path?x=1&y=2"},
  };
  TempDir dir;
  SettingsStore store(dir.path());
  Changes changes;
  for (const auto& [key, value] : tricky) changes[key] = value;
  UpdateOk(store, changes);
  CHECK(LoadOk(store) == tricky);
  SettingsStore reopened(dir.path());
  CHECK(LoadOk(reopened) == tricky);
  // Safe values stay bare, the rest is quoted.
  std::string text = ReadFile(store.env_path());
  CHECK(absl::StrContains(text, "\nEQUALS=a=b=c\n"));
  CHECK(absl::StrContains(text, "\nEMPTY=\n"));
  CHECK(absl::StrContains(text, "\nSPACES=\"two words and  more\"\n"));
  CHECK(absl::StrContains(text, "\nNEWLINE=\"line1\\nline2\\r\\nline3\"\n"));
  // A second rewrite (merge of one more key) keeps them too.
  UpdateOk(store, {{"MORE", "x"}});
  Values expected = tricky;
  expected["MORE"] = "x";
  CHECK(LoadOk(store) == expected);
}

TEST_CASE("Settings: updates merge, nullopt removes", "[unit][settings]") {
  TempDir dir;
  SettingsStore store(dir.path());
  UpdateOk(store, {{"A", "1"}, {"B", "2"}, {"C", "3"}});
  UpdateOk(store, {{"A", std::nullopt},
                   {"B", "two"},
                   {"D", "4"},
                   {"NEVER_SET", std::nullopt}});
  CHECK(LoadOk(store) == Values{{"B", "two"}, {"C", "3"}, {"D", "4"}});
  CHECK_FALSE(absl::StrContains(ReadFile(store.env_path()), "A="));
}

TEST_CASE("Settings: an upstream-style .env parses", "[unit][settings]") {
  TempDir dir;
  WriteFile(dir.Join(".env"),
            "# IoT2MQTT Configuration\n"
            "# Generated at 2024-05-01T10:00:00.000000\n"
            "\n"
            "# Web Interface\n"
            "WEB_ACCESS_KEY=$2b$12$KIXQJ0nYQ1f8Wq\n"
            "WEB_PORT = 8765 \n"
            "\n"
            "# MQTT Broker Settings\n"
            "MQTT_HOST=192.0.2.7   # the broker\n"
            "MQTT_PORT=1883\r\n"
            "MQTT_USERNAME=\n"
            "MQTT_PASSWORD=pa#ss\n"
            "export LOG_LEVEL=DEBUG\n"
            "QUOTED_D=\"hello world\"  # comment\n"
            "QUOTED_S='it''s'\n"
            "SINGLE='C:\\dir'\n"
            "URL=http://192.0.2.1/#frag\n"
            "MULTI=\"first\n"
            "second\"\n"
            "not a setting line\n"
            "=no key\n"
            "DUP=1\n"
            "DUP=2\n");
  SettingsStore store(dir.path());
  Values values = LoadOk(store);
  CHECK(values == Values{{"WEB_ACCESS_KEY", "$2b$12$KIXQJ0nYQ1f8Wq"},
                         {"WEB_PORT", "8765"},
                         {"MQTT_HOST", "192.0.2.7"},
                         {"MQTT_PORT", "1883"},
                         {"MQTT_USERNAME", ""},
                         {"MQTT_PASSWORD", "pa#ss"},
                         {"LOG_LEVEL", "DEBUG"},
                         {"QUOTED_D", "hello world"},
                         {"QUOTED_S", "'it''s'"},
                         {"SINGLE", "C:\\dir"},
                         {"URL", "http://192.0.2.1/#frag"},
                         {"MULTI", "first\nsecond"},
                         {"DUP", "2"}});
  // A merge keeps every existing value.
  UpdateOk(store, {{"TZ", "Europe/Berlin"}});
  values["TZ"] = "Europe/Berlin";
  CHECK(LoadOk(store) == values);
}

TEST_CASE("Settings: backups of the previous file, only the newest kept",
          "[unit][settings]") {
  TempDir dir;
  SettingsStore store(dir.path(), /*max_backups=*/3);
  UpdateOk(store, {{"N", "0"}});
  std::string before_last;
  for (int i = 1; i <= 6; ++i) {
    before_last = ReadFile(store.env_path());
    UpdateOk(store, {{"N", absl::StrCat(i)}});
  }
  std::vector<std::string> backups = ListDir(store.backup_dir());
  REQUIRE(backups.size() == 3);
  for (const std::string& name : backups) {
    CHECK(std::regex_match(name,
                           std::regex(R"(\.env\.\d{8}T\d{6}\.\d{6}Z\.bak)")));
    CHECK(ModeOf(store.backup_dir() + "/" + name) == 0600);
  }
  CHECK(ReadFile(store.backup_dir() + "/" + backups.back()) == before_last);
  CHECK(ParseEnvText(ReadFile(store.backup_dir() + "/" + backups.front())) ==
        Values{{"N", "3"}});
  CHECK(ModeOf(store.backup_dir()) == 0700);
  // An update that changes nothing neither rewrites nor backs up.
  std::string current = ReadFile(store.env_path());
  UpdateOk(store, {{"N", "6"}, {"ABSENT", std::nullopt}});
  CHECK(ReadFile(store.env_path()) == current);
  CHECK(ListDir(store.backup_dir()) == backups);
}

TEST_CASE("Settings: a bad name or value changes nothing on disk",
          "[unit][settings]") {
  TempDir dir;
  SettingsStore store(dir.path());
  UpdateOk(store, {{"KEEP", "1"}});
  UpdateOk(store, {{"KEEP", "2"}});
  std::map<std::string, std::string> before = Snapshot(dir.path());
  for (const char* bad : {"", "1ABC", "A-B", "A B", "A=B", "Ä"}) {
    absl::Status status = store.Update({{"GOOD", "x"}, {bad, "y"}});
    RequireError(status, absl::StatusCode::kInvalidArgument,
                 kInvalidSettingName);
  }
  const std::string secret = std::string("hunter2\0tail", 12);
  absl::Status status = store.Update({{"GOOD", "x"}, {"PASSWORD", secret}});
  RequireError(status, absl::StatusCode::kInvalidArgument,
               kInvalidSettingValue);
  CHECK_FALSE(absl::StrContains(status.ToString(), "hunter2"));
  CHECK(MetadataOf(status).at("name") == "PASSWORD");
  CHECK(Snapshot(dir.path()) == before);
  CHECK(LoadOk(store) == Values{{"KEEP", "2"}});
}

TEST_CASE("Settings: 8 threads x 20 concurrent updates lose nothing",
          "[unit][settings]") {
  TempDir dir;
  SettingsStore store(dir.path());
  constexpr int kThreads = 8;
  constexpr int kUpdates = 20;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&store, &failures, t] {
      for (int i = 0; i < kUpdates; ++i) {
        absl::Status status =
            store.Update({{absl::StrCat("T", t, "_", i), absl::StrCat(t * i)},
                          {absl::StrCat("LAST_", t), absl::StrCat(i)}});
        if (!status.ok()) ++failures;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  REQUIRE(failures == 0);
  Values values = LoadOk(store);
  CHECK(values.size() == kThreads * kUpdates + kThreads);
  for (int t = 0; t < kThreads; ++t) {
    CHECK(values[absl::StrCat("LAST_", t)] == absl::StrCat(kUpdates - 1));
    for (int i = 0; i < kUpdates; ++i) {
      CHECK(values[absl::StrCat("T", t, "_", i)] == absl::StrCat(t * i));
    }
  }
  CHECK(ListDir(store.backup_dir()).size() ==
        static_cast<size_t>(SettingsStore::kDefaultMaxBackups));
}

TEST_CASE("Settings: concurrent updates from several processes lose nothing",
          "[unit][settings]") {
  TempDir dir;
  constexpr int kChildren = 4;
  constexpr int kUpdates = 10;
  std::vector<pid_t> children;
  for (int c = 0; c < kChildren; ++c) {
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      SettingsStore store(dir.path());
      int failures = 0;
      for (int i = 0; i < kUpdates; ++i) {
        if (!store.Update({{absl::StrCat("P", c, "_", i), "v"}}).ok()) {
          ++failures;
        }
      }
      _exit(failures == 0 ? 0 : 1);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  SettingsStore store(dir.path());
  Values values = LoadOk(store);
  CHECK(values.size() == kChildren * kUpdates);
}

// ---------------------------------------------------------------- MQTT ---

MqttSettings ValidSettings() {
  MqttSettings s;
  s.host = "192.0.2.10";
  s.port = 8883;
  s.username = "iot";
  s.password = "s3cr3t-Pa55word";
  s.base_topic = "home/iot";
  s.client_prefix = "iot2mqtt-test";
  s.qos = 2;
  s.retain = false;
  s.keepalive = 120;
  return s;
}

void RequireSame(const MqttSettings& a, const MqttSettings& b) {
  CHECK(a.host == b.host);
  CHECK(a.port == b.port);
  CHECK(a.username == b.username);
  CHECK(a.password == b.password);
  CHECK(a.base_topic == b.base_topic);
  CHECK(a.client_prefix == b.client_prefix);
  CHECK(a.qos == b.qos);
  CHECK(a.retain == b.retain);
  CHECK(a.keepalive == b.keepalive);
}

// Every file's content under `dir`, concatenated.
std::string AllFileContents(const std::string& dir) {
  std::string all;
  for (const auto& [name, content] : Snapshot(dir)) {
    absl::StrAppend(&all, name, "\n", content, "\n");
  }
  return all;
}

TEST_CASE("Mqtt: upstream defaults when nothing is stored", "[unit][mqtt]") {
  TempDir dir;
  SettingsStore settings(dir.path());
  FakeVault vault;
  MqttSettingsStore store(settings, vault);
  absl::StatusOr<MqttSettings> got = store.Get();
  REQUIRE(got.ok());
  RequireSame(*got, MqttSettings());
  CHECK(got->host.empty());
  CHECK(MqttSettingsStore::ToJson(*got, true) ==
        R"({"host":"","port":1883,"username":"","password":"",)"
        R"("base_topic":"IoT2mqtt","client_prefix":"iot2mqtt","qos":1,)"
        R"("retain":true,"keepalive":60})");
}

TEST_CASE("Mqtt: Set stores, the password only in the vault", "[unit][mqtt]") {
  TempDir dir;
  SettingsStore settings(dir.path());
  FakeVault vault;
  MqttSettingsStore store(settings, vault);
  CapturedLog logs;
  MqttSettings desired = ValidSettings();
  absl::StatusOr<MqttSettings> stored = store.Set(desired);
  INFO(stored.status().ToString());
  REQUIRE(stored.ok());
  RequireSame(*stored, desired);
  absl::StatusOr<MqttSettings> got = store.Get();
  REQUIRE(got.ok());
  RequireSame(*got, desired);

  Values env = LoadOk(settings);
  CHECK(env == Values{{"MQTT_HOST", "192.0.2.10"},
                      {"MQTT_PORT", "8883"},
                      {"MQTT_USERNAME", "iot"},
                      {"MQTT_BASE_TOPIC", "home/iot"},
                      {"MQTT_CLIENT_PREFIX", "iot2mqtt-test"},
                      {"MQTT_QOS", "2"},
                      {"MQTT_RETAIN", "false"},
                      {"MQTT_KEEPALIVE", "120"}});
  CHECK_FALSE(absl::StrContains(AllFileContents(dir.path()), desired.password));
  CHECK(vault.Platform() == R"({"MQTT_PASSWORD":"s3cr3t-Pa55word"})");
  CHECK_FALSE(absl::StrContains(logs.text(), desired.password));
}

TEST_CASE("Mqtt: validation reports every bad field at once", "[unit][mqtt]") {
  TempDir dir;
  SettingsStore settings(dir.path());
  FakeVault vault;
  MqttSettingsStore store(settings, vault);
  MqttSettings bad;
  bad.host = "bad host";
  bad.port = 0;
  bad.username = std::string(257, 'u');
  bad.password = std::string("pw-SECRET\0x", 11);
  bad.base_topic = "/home/+";
  bad.client_prefix = "no spaces!";
  bad.qos = 3;
  bad.keepalive = 5;
  absl::StatusOr<MqttSettings> result = store.Set(bad);
  RequireError(result.status(), absl::StatusCode::kInvalidArgument,
               kInvalidMqttSettings);
  std::map<std::string, std::string> metadata = MetadataOf(result.status());
  std::set<std::string> fields;
  for (const auto& [field, problem] : metadata) fields.insert(field);
  CHECK(fields == std::set<std::string>{"host", "port", "username", "password",
                                        "base_topic", "client_prefix", "qos",
                                        "keepalive"});
  CHECK(absl::StrContains(result.status().message(), "keepalive"));
  CHECK_FALSE(absl::StrContains(result.status().ToString(), "SECRET"));
  CHECK(ListDir(dir.path()).empty());
  CHECK(vault.Platform() == "{}");

  SECTION("boundaries") {
    struct Case {
      const char* field;
      std::function<void(MqttSettings&)> make_bad;
    };
    std::vector<Case> cases = {
        {"host", [](MqttSettings& s) { s.host = ""; }},
        {"host", [](MqttSettings& s) { s.host = std::string(254, 'h'); }},
        {"host", [](MqttSettings& s) { s.host = "a\tb"; }},
        {"port", [](MqttSettings& s) { s.port = 65536; }},
        {"qos", [](MqttSettings& s) { s.qos = -1; }},
        {"keepalive", [](MqttSettings& s) { s.keepalive = 3601; }},
        {"base_topic", [](MqttSettings& s) { s.base_topic = ""; }},
        {"base_topic", [](MqttSettings& s) { s.base_topic = "a/#"; }},
        {"base_topic", [](MqttSettings& s) { s.base_topic = "a/"; }},
        {"base_topic",
         [](MqttSettings& s) { s.base_topic = std::string(201, 't'); }},
        {"client_prefix", [](MqttSettings& s) { s.client_prefix = ""; }},
        {"client_prefix",
         [](MqttSettings& s) { s.client_prefix = std::string(65, 'c'); }},
    };
    for (const Case& c : cases) {
      MqttSettings s = ValidSettings();
      c.make_bad(s);
      absl::Status status = ValidateMqttSettings(s);
      INFO(c.field << ": " << status.ToString());
      REQUIRE(common::ReasonOf(status) == kInvalidMqttSettings);
      CHECK(MetadataOf(status).size() == 1);
      CHECK(MetadataOf(status).count(c.field) == 1);
    }
    MqttSettings edge = ValidSettings();
    edge.host = std::string(253, 'h');
    edge.port = 65535;
    edge.qos = 0;
    edge.keepalive = 10;
    edge.base_topic = std::string(200, 't');
    edge.client_prefix = std::string(64, '-');
    edge.username = std::string(256, 'u');
    CHECK(ValidateMqttSettings(edge).ok());
    edge.port = 1;
    edge.keepalive = 3600;
    edge.username = "";
    edge.password = "";
    CHECK(ValidateMqttSettings(edge).ok());
  }
}

TEST_CASE("Mqtt: the mask keeps the stored password, empty clears it",
          "[unit][mqtt]") {
  TempDir dir;
  SettingsStore settings(dir.path());
  FakeVault vault;
  REQUIRE(vault
              .Store(kPlatformSecretsConnector, kPlatformSecretsId,
                     R"({"OTHER_SECRET":"keep me"})")
              .ok());
  MqttSettingsStore store(settings, vault);
  REQUIRE(store.Set(ValidSettings()).ok());

  MqttSettings masked = ValidSettings();
  masked.host = "192.0.2.20";
  masked.password = kHiddenPassword;
  absl::StatusOr<MqttSettings> stored = store.Set(masked);
  REQUIRE(stored.ok());
  CHECK(stored->host == "192.0.2.20");
  CHECK(stored->password == ValidSettings().password);
  CHECK(MqttSettingsStore::ToJson(*stored, true) ==
        R"({"host":"192.0.2.20","port":8883,"username":"iot",)"
        R"("password":"***HIDDEN***","base_topic":"home/iot",)"
        R"("client_prefix":"iot2mqtt-test","qos":2,"retain":false,)"
        R"("keepalive":120})");
  CHECK(absl::StrContains(MqttSettingsStore::ToJson(*stored, false),
                          R"("password":"s3cr3t-Pa55word")"));
  CHECK(vault.Platform() ==
        R"({"OTHER_SECRET":"keep me","MQTT_PASSWORD":"s3cr3t-Pa55word"})");

  MqttSettings cleared = ValidSettings();
  cleared.password = "";
  stored = store.Set(cleared);
  REQUIRE(stored.ok());
  CHECK(stored->password.empty());
  CHECK(store.Get()->password.empty());
  CHECK(vault.Platform() == R"({"OTHER_SECRET":"keep me"})");
  CHECK(absl::StrContains(MqttSettingsStore::ToJson(*stored, true),
                          R"("password":"")"));
}

TEST_CASE("Mqtt: an upstream plaintext password is used and migrated",
          "[unit][mqtt]") {
  const std::string plaintext = "upstream-Plain#Text";
  auto write_upstream_env = [&plaintext](const std::string& path) {
    WriteFile(path,
              "# MQTT Broker Settings\n"
              "MQTT_HOST=192.0.2.5\n"
              "MQTT_PORT=1883\n"
              "MQTT_USERNAME=old\n"
              "MQTT_PASSWORD=\"" +
                  plaintext +
                  "\"\n"
                  "MQTT_RETAIN=True\n");
  };
  TempDir dir;
  SettingsStore settings(dir.path());
  FakeVault vault;
  MqttSettingsStore store(settings, vault);
  write_upstream_env(settings.env_path());
  CapturedLog logs;

  absl::StatusOr<MqttSettings> got = store.Get();
  REQUIRE(got.ok());
  CHECK(got->password == plaintext);
  CHECK(got->host == "192.0.2.5");
  CHECK(got->retain);

  SECTION("by MigratePlaintextPassword") {
    // A change to another setting first leaves a backup with the password.
    REQUIRE(settings.Update({{"TZ", "UTC"}}).ok());
    REQUIRE(store.MigratePlaintextPassword().ok());
    CHECK(LoadOk(settings).count("MQTT_PASSWORD") == 0);
    CHECK(LoadOk(settings).at("TZ") == "UTC");
    CHECK(vault.Platform() ==
          absl::StrCat(R"({"MQTT_PASSWORD":")", plaintext, R"("})"));
    CHECK(store.Get()->password == plaintext);
    CHECK_FALSE(absl::StrContains(AllFileContents(dir.path()), plaintext));
    // Nothing left to migrate: a no-op.
    std::map<std::string, std::string> before = Snapshot(dir.path());
    REQUIRE(store.MigratePlaintextPassword().ok());
    CHECK(Snapshot(dir.path()) == before);
  }
  SECTION("by the next Set keeping the password") {
    MqttSettings desired = *got;
    desired.password = kHiddenPassword;
    desired.username = "new";
    absl::StatusOr<MqttSettings> stored = store.Set(desired);
    REQUIRE(stored.ok());
    CHECK(stored->password == plaintext);
    CHECK(stored->username == "new");
    CHECK(LoadOk(settings).count("MQTT_PASSWORD") == 0);
    CHECK_FALSE(absl::StrContains(AllFileContents(dir.path()), plaintext));
  }
  SECTION("a plaintext password put back into .env wins over the vault") {
    REQUIRE(store.MigratePlaintextPassword().ok());
    REQUIRE(settings.Update({{"MQTT_PASSWORD", "edited-by-hand"}}).ok());
    CHECK(store.Get()->password == "edited-by-hand");
  }
  CHECK_FALSE(absl::StrContains(logs.text(), plaintext));
}

TEST_CASE("Mqtt: unparsable stored numbers fall back to the defaults",
          "[unit][mqtt]") {
  TempDir dir;
  SettingsStore settings(dir.path());
  FakeVault vault;
  MqttSettingsStore store(settings, vault);
  WriteFile(settings.env_path(),
            "MQTT_HOST=192.0.2.9\n"
            "MQTT_PORT=notaport-xyzzy\n"
            "MQTT_QOS=7\n"
            "MQTT_KEEPALIVE=\n"
            "MQTT_RETAIN=FALSE\n");
  CapturedLog logs;
  absl::StatusOr<MqttSettings> got = store.Get();
  REQUIRE(got.ok());
  CHECK(got->host == "192.0.2.9");
  CHECK(got->port == 1883);
  CHECK(got->qos == 1);
  CHECK(got->keepalive == 60);
  CHECK_FALSE(got->retain);
  std::string text = logs.text();
  CHECK(absl::StrContains(text, "MQTT_PORT"));
  CHECK(absl::StrContains(text, "MQTT_QOS"));
  CHECK(absl::StrContains(text, "WARNING"));
  CHECK_FALSE(absl::StrContains(text, "xyzzy"));
  CHECK_FALSE(absl::StrContains(text, "MQTT_KEEPALIVE"));  // Empty = unset.
}

TEST_CASE("Mqtt: FromJson reads the POST /api/mqtt/config body",
          "[unit][mqtt]") {
  SECTION("defaults for missing keys") {
    absl::StatusOr<MqttSettings> s =
        MqttSettingsStore::FromJson(R"({"host":"192.0.2.3","extra":1})");
    REQUIRE(s.ok());
    MqttSettings expected;
    expected.host = "192.0.2.3";
    RequireSame(*s, expected);
  }
  SECTION("every field, nulls for username and password") {
    absl::StatusOr<MqttSettings> s = MqttSettingsStore::FromJson(
        R"({"host":"broker.example","port":1884,"username":null,)"
        R"("password":null,"base_topic":"t","client_prefix":"p","qos":0,)"
        R"("retain":false,"keepalive":30})");
    REQUIRE(s.ok());
    CHECK(s->host == "broker.example");
    CHECK(s->port == 1884);
    CHECK(s->username.empty());
    CHECK(s->password.empty());
    CHECK(s->base_topic == "t");
    CHECK(s->client_prefix == "p");
    CHECK(s->qos == 0);
    CHECK_FALSE(s->retain);
    CHECK(s->keepalive == 30);
    // ToJson and FromJson agree.
    absl::StatusOr<MqttSettings> again =
        MqttSettingsStore::FromJson(MqttSettingsStore::ToJson(*s, false));
    REQUIRE(again.ok());
    RequireSame(*again, *s);
  }
  SECTION("wrong types, all named at once") {
    absl::StatusOr<MqttSettings> s = MqttSettingsStore::FromJson(
        R"({"host":"h","port":"1883","qos":1.5,"retain":"yes",)"
        R"("keepalive":null,"base_topic":7,"username":[]})");
    RequireError(s.status(), absl::StatusCode::kInvalidArgument,
                 kInvalidMqttSettings);
    std::map<std::string, std::string> metadata = MetadataOf(s.status());
    std::set<std::string> fields;
    for (const auto& [field, problem] : metadata) fields.insert(field);
    CHECK(fields == std::set<std::string>{"port", "qos", "retain", "keepalive",
                                          "base_topic", "username"});
  }
  SECTION("host required") {
    for (const char* body : {"{}", R"({"host":""})", R"({"host":null})"}) {
      absl::StatusOr<MqttSettings> s = MqttSettingsStore::FromJson(body);
      INFO(body);
      RequireError(s.status(), absl::StatusCode::kInvalidArgument,
                   kInvalidMqttSettings);
      CHECK(MetadataOf(s.status()).count("host") == 1);
    }
  }
  SECTION("not an object") {
    for (const char* body : {"[]", "", "{", "\"host\""}) {
      INFO(body);
      RequireError(MqttSettingsStore::FromJson(body).status(),
                   absl::StatusCode::kInvalidArgument, kInvalidMqttSettings);
    }
  }
}

// ---------------------------------------------------------- access key ---

TEST_CASE("AccessKey: set, verify, replace; only a hash on disk",
          "[unit][auth]") {
  TempDir dir;
  const std::string auth_dir = dir.Join("auth");
  AccessKeyStore keys(auth_dir);
  CHECK_FALSE(keys.HasKey());
  RequireError(keys.Verify("anything").status(),
               absl::StatusCode::kFailedPrecondition, kAccessKeyNotSet);

  const std::string key = "correct horse battery staple";
  CapturedLog logs;
  REQUIRE(keys.SetKey(key).ok());
  CHECK(keys.HasKey());
  CHECK(*keys.Verify(key));
  CHECK_FALSE(*keys.Verify("correct horse battery stapler"));
  CHECK_FALSE(*keys.Verify(std::string(2000, 'x')));
  CHECK(ModeOf(keys.key_path()) == 0600);
  CHECK(ModeOf(auth_dir) == 0700);
  std::string stored = ReadFile(keys.key_path());
  CHECK(absl::StartsWith(stored, "$argon2id$v=19$m=19456,"));
  CHECK_FALSE(absl::StrContains(stored, key));

  REQUIRE(keys.SetKey("another key").ok());
  CHECK(*keys.Verify("another key"));
  CHECK_FALSE(*keys.Verify(key));
  CHECK_FALSE(absl::StrContains(logs.text(), key));
  CHECK_FALSE(absl::StrContains(logs.text(), "another key"));
}

TEST_CASE("AccessKey: length limits", "[unit][auth]") {
  TempDir dir;
  AccessKeyStore keys(dir.path());
  RequireError(keys.SetKey(""), absl::StatusCode::kInvalidArgument,
               kInvalidAccessKeyFormat);
  absl::Status too_long = keys.SetKey(std::string(1025, 'k'));
  RequireError(too_long, absl::StatusCode::kInvalidArgument,
               kInvalidAccessKeyFormat);
  CHECK_FALSE(absl::StrContains(too_long.ToString(), "kkkk"));
  CHECK_FALSE(keys.HasKey());
  REQUIRE(keys.SetKey(std::string(1024, 'k')).ok());
  CHECK(*keys.Verify(std::string(1024, 'k')));
}

TEST_CASE("AccessKey: a stored value that is not a hash is reported",
          "[unit][auth]") {
  TempDir dir;
  AccessKeyStore keys(dir.path());
  WriteFile(keys.key_path(), "plaintext-key\n");
  RequireError(keys.Verify("plaintext-key").status(),
               absl::StatusCode::kFailedPrecondition, kAccessKeyCorrupt);
}

TEST_CASE("AccessKey: of concurrent SetKeyIfAbsent exactly one wins",
          "[unit][auth]") {
  TempDir dir;
  AccessKeyStore keys(dir.path());
  constexpr int kThreads = 4;
  std::vector<absl::Status> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&keys, &results, t] {
      results[t] = keys.SetKeyIfAbsent(absl::StrCat("key-", t));
    });
  }
  for (std::thread& thread : threads) thread.join();
  int winners = 0;
  int winner = -1;
  for (int t = 0; t < kThreads; ++t) {
    if (results[t].ok()) {
      ++winners;
      winner = t;
    } else {
      RequireError(results[t], absl::StatusCode::kAlreadyExists,
                   kAccessKeyAlreadySet);
    }
  }
  REQUIRE(winners == 1);
  for (int t = 0; t < kThreads; ++t) {
    CHECK(*keys.Verify(absl::StrCat("key-", t)) == (t == winner));
  }
  RequireError(keys.SetKeyIfAbsent("later"), absl::StatusCode::kAlreadyExists,
               kAccessKeyAlreadySet);
}

TEST_CASE("Authenticator: first login only from loopback", "[unit][auth]") {
  TempDir dir;
  AccessKeyStore keys(dir.path());
  TokenService tokens(dir.path());
  Authenticator auth(keys, tokens);
  CapturedLog logs;

  absl::StatusOr<IssuedToken> empty = auth.Login("", true);
  RequireError(empty.status(), absl::StatusCode::kInvalidArgument,
               kAccessKeyRequired);
  CHECK(empty.status().message() == "Access key is required");

  absl::StatusOr<IssuedToken> remote = auth.Login("remote-grab", false);
  RequireError(remote.status(), absl::StatusCode::kFailedPrecondition,
               kAccessKeyNotSet);
  CHECK(absl::StrContains(remote.status().message(), "WEB_ACCESS_KEY"));
  CHECK(absl::StrContains(remote.status().message(),
                          "iot2mqtt-config set-access-key"));
  CHECK_FALSE(keys.HasKey());

  absl::StatusOr<IssuedToken> first = auth.Login("local-owner", true);
  REQUIRE(first.ok());
  CHECK(first->expires_in_seconds == 604800);
  absl::StatusOr<VerifiedToken> verified = tokens.Verify(first->token);
  REQUIRE(verified.ok());
  CHECK(verified->subject == "user");
  CHECK(keys.HasKey());

  // From now on the key is checked, wherever the login comes from.
  absl::StatusOr<IssuedToken> wrong = auth.Login("remote-grab", true);
  RequireError(wrong.status(), absl::StatusCode::kUnauthenticated,
               kInvalidAccessKey);
  CHECK(wrong.status().message() == "Invalid access key");
  RequireError(auth.Login("remote-grab", false).status(),
               absl::StatusCode::kUnauthenticated, kInvalidAccessKey);
  CHECK(auth.Login("local-owner", false).ok());

  std::string text = logs.text();
  CHECK_FALSE(absl::StrContains(text, "local-owner"));
  CHECK_FALSE(absl::StrContains(text, "remote-grab"));
}

TEST_CASE("Authenticator: of two concurrent first logins one wins",
          "[unit][auth]") {
  TempDir dir;
  AccessKeyStore keys(dir.path());
  TokenService tokens(dir.path());
  Authenticator auth(keys, tokens);
  std::vector<absl::StatusOr<IssuedToken>> results(
      2, absl::UnknownError("not run"));
  std::thread a([&] { results[0] = auth.Login("first-key", true); });
  std::thread b([&] { results[1] = auth.Login("second-key", true); });
  a.join();
  b.join();
  const int winner = results[0].ok() ? 0 : 1;
  const int loser = 1 - winner;
  REQUIRE(results[winner].ok());
  RequireError(results[loser].status(), absl::StatusCode::kUnauthenticated,
               kInvalidAccessKey);
  CHECK(*keys.Verify(winner == 0 ? "first-key" : "second-key"));
}

// -------------------------------------------------------------- tokens ---

std::string B64(absl::string_view bytes) {
  const int variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), variant), '\0');
  sodium_bin2base64(out.data(), out.size(),
                    reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), variant);
  out.resize(out.size() - 1);
  return out;
}

std::string UnB64(absl::string_view text) {
  std::string out(text.size(), '\0');
  size_t length = 0;
  REQUIRE(sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()),
                            out.size(), text.data(), text.size(), nullptr,
                            &length, nullptr,
                            sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0);
  out.resize(length);
  return out;
}

// A token signed with the secret in `secret_path`.
std::string Sign(const std::string& secret_path, const std::string& header,
                 const std::string& claims) {
  std::string secret = ReadFile(secret_path);
  std::string input = absl::StrCat(B64(header), ".", B64(claims));
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(
      &state, reinterpret_cast<const unsigned char*>(secret.data()),
      secret.size());
  crypto_auth_hmacsha256_update(
      &state, reinterpret_cast<const unsigned char*>(input.data()),
      input.size());
  crypto_auth_hmacsha256_final(&state, mac);
  return absl::StrCat(
      input, ".",
      B64(absl::string_view(reinterpret_cast<const char*>(mac), sizeof(mac))));
}

struct FakeClock {
  absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  std::function<absl::Time()> Fn() {
    return [this] { return now; };
  }
};

TEST_CASE("Tokens: issue and verify", "[unit][tokens]") {
  REQUIRE(sodium_init() >= 0);
  TempDir dir;
  FakeClock clock;
  TokenService tokens(dir.path(), absl::Seconds(604800), clock.Fn());
  absl::StatusOr<IssuedToken> issued = tokens.Issue("user");
  REQUIRE(issued.ok());
  CHECK(issued->expires_in_seconds == 604800);
  std::vector<std::string> parts = absl::StrSplit(issued->token, '.');
  REQUIRE(parts.size() == 3);
  CHECK(UnB64(parts[0]) == R"({"alg":"HS256","typ":"JWT"})");
  CHECK(UnB64(parts[1]) ==
        R"({"sub":"user","iat":1800000000,"exp":1800604800})");
  CHECK(UnB64(parts[2]).size() == 32);

  absl::StatusOr<VerifiedToken> verified = tokens.Verify(issued->token);
  REQUIRE(verified.ok());
  CHECK(verified->subject == "user");
  CHECK(verified->expires_at == absl::FromUnixSeconds(1'800'604'800));
  // What an independent HS256 implementation would compute.
  CHECK(Sign(tokens.secret_path(), UnB64(parts[0]), UnB64(parts[1])) ==
        issued->token);
}

TEST_CASE("Tokens: expiry follows the clock", "[unit][tokens]") {
  TempDir dir;
  FakeClock clock;
  TokenService tokens(dir.path(), absl::Hours(1), clock.Fn());
  absl::StatusOr<IssuedToken> issued = tokens.Issue("user");
  REQUIRE(issued.ok());
  CHECK(issued->expires_in_seconds == 3600);
  clock.now += absl::Seconds(3599);
  CHECK(tokens.Verify(issued->token).ok());
  clock.now += absl::Seconds(1);
  RequireError(tokens.Verify(issued->token).status(),
               absl::StatusCode::kUnauthenticated, kTokenExpired);
}

TEST_CASE("Tokens: tampering, other secrets and garbage are rejected",
          "[unit][tokens]") {
  REQUIRE(sodium_init() >= 0);
  TempDir dir;
  TokenService tokens(dir.Join("a"));
  absl::StatusOr<IssuedToken> issued = tokens.Issue("user");
  REQUIRE(issued.ok());
  std::vector<std::string> parts = absl::StrSplit(issued->token, '.');

  SECTION("tampered payload") {
    std::string claims = UnB64(parts[1]);
    claims.replace(claims.find("\"user\""), 6, "\"root\"");
    std::string forged =
        absl::StrCat(parts[0], ".", B64(claims), ".", parts[2]);
    RequireError(tokens.Verify(forged).status(),
                 absl::StatusCode::kUnauthenticated, kTokenSignatureInvalid);
  }
  SECTION("tampered signature") {
    std::string signature = UnB64(parts[2]);
    signature[5] ^= 0x01;
    std::string forged =
        absl::StrCat(parts[0], ".", parts[1], ".", B64(signature));
    RequireError(tokens.Verify(forged).status(),
                 absl::StatusCode::kUnauthenticated, kTokenSignatureInvalid);
  }
  SECTION("signed by another installation") {
    TokenService other(dir.Join("b"));
    absl::StatusOr<IssuedToken> foreign = other.Issue("user");
    REQUIRE(foreign.ok());
    RequireError(tokens.Verify(foreign->token).status(),
                 absl::StatusCode::kUnauthenticated, kTokenSignatureInvalid);
    RequireError(other.Verify(issued->token).status(),
                 absl::StatusCode::kUnauthenticated, kTokenSignatureInvalid);
  }
  SECTION("alg none and other algorithms") {
    std::string claims = UnB64(parts[1]);
    std::string none = absl::StrCat(B64(R"({"alg":"none","typ":"JWT"})"), ".",
                                    B64(claims), ".");
    RequireError(tokens.Verify(none).status(),
                 absl::StatusCode::kUnauthenticated, kTokenMalformed);
    std::string none_with_sig = absl::StrCat(
        B64(R"({"alg":"none","typ":"JWT"})"), ".", parts[1], ".", parts[2]);
    RequireError(tokens.Verify(none_with_sig).status(),
                 absl::StatusCode::kUnauthenticated, kTokenMalformed);
    // Correctly signed, but claiming another algorithm.
    std::string hs512 =
        Sign(tokens.secret_path(), R"({"alg":"HS512","typ":"JWT"})", claims);
    RequireError(tokens.Verify(hs512).status(),
                 absl::StatusCode::kUnauthenticated, kTokenMalformed);
  }
  SECTION("correctly signed but malformed claims") {
    const std::string header = R"({"alg":"HS256","typ":"JWT"})";
    for (const char* claims :
         {"not json", "[]", R"({"exp":4000000000})", R"({"sub":"user"})",
          R"({"sub":"user","exp":"4000000000"})",
          R"({"sub":"","exp":4000000000})"}) {
      INFO(claims);
      RequireError(
          tokens.Verify(Sign(tokens.secret_path(), header, claims)).status(),
          absl::StatusCode::kUnauthenticated, kTokenMalformed);
    }
    CHECK(tokens
              .Verify(Sign(tokens.secret_path(), header,
                           R"({"sub":"user","exp":4000000000})"))
              .ok());
  }
  SECTION("garbage") {
    for (const std::string& garbage :
         {std::string(""), std::string("abc"), std::string("a.b"),
          std::string("a.b.c.d"), std::string("!!!.$$$.###"), std::string(".."),
          absl::StrCat(issued->token, "="),
          absl::StrCat(parts[0], "=.", parts[1], ".", parts[2]),
          std::string(10000, 'a')}) {
      INFO(garbage.substr(0, 80));
      absl::Status status = tokens.Verify(garbage).status();
      REQUIRE(status.code() == absl::StatusCode::kUnauthenticated);
      CHECK((common::ReasonOf(status) == kTokenMalformed ||
             common::ReasonOf(status) == kTokenSignatureInvalid));
    }
  }
}

TEST_CASE("Tokens: one 0600 secret per installation, reused",
          "[unit][tokens]") {
  TempDir dir;
  const std::string auth_dir = dir.Join("auth");
  std::string token;
  {
    TokenService first(auth_dir);
    absl::StatusOr<IssuedToken> issued = first.Issue("user");
    REQUIRE(issued.ok());
    token = issued->token;
  }
  TokenService second(auth_dir);
  CHECK(ModeOf(second.secret_path()) == 0600);
  CHECK(ModeOf(auth_dir) == 0700);
  CHECK(ReadFile(second.secret_path()).size() == 32);
  CHECK(second.Verify(token).ok());

  SECTION("a secret readable by others is made private") {
    REQUIRE(chmod(second.secret_path().c_str(), 0644) == 0);
    CapturedLog logs;
    TokenService third(auth_dir);
    CHECK(third.Verify(token).ok());
    CHECK(ModeOf(third.secret_path()) == 0600);
    CHECK(absl::StrContains(logs.text(), "WARNING"));
  }
  SECTION("a secret of the wrong size is refused") {
    WriteFile(second.secret_path(), "short");
    TokenService third(auth_dir);
    RequireError(third.Issue("user").status(),
                 absl::StatusCode::kFailedPrecondition, kTokenSecretCorrupt);
    CHECK(ReadFile(second.secret_path()) == "short");
  }
}

TEST_CASE("Tokens: services created together share one secret",
          "[unit][tokens]") {
  TempDir dir;
  constexpr int kThreads = 8;
  std::vector<std::string> issued(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&dir, &issued, t] {
      TokenService service(dir.path());
      absl::StatusOr<IssuedToken> token = service.Issue("user");
      if (token.ok()) issued[t] = token->token;
    });
  }
  for (std::thread& thread : threads) thread.join();
  TokenService verifier(dir.path());
  for (const std::string& token : issued) {
    REQUIRE_FALSE(token.empty());
    CHECK(verifier.Verify(token).ok());
  }
}

}  // namespace
}  // namespace iot2mqtt::config
