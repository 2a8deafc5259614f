// Secret fields (pure JSON logic) and the file-backed secret vault.

#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "catch2/catch.hpp"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/runtime_secrets.h"
#include "services/common/status.h"
#include "services/config/file_io.h"
#include "services/config/file_secret_vault.h"
#include "services/config/secret_fields.h"
#include "services/config/secret_vault.h"
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

std::string Compact(const std::string& json) {
  absl::StatusOr<std::string> compact = sdk::RewriteJson(json);
  REQUIRE(compact.ok());
  return *compact;
}

SecretSplit Extract(const std::string& json,
                    const std::set<std::string>& declared = {}) {
  absl::StatusOr<SecretSplit> split = ExtractSecrets(json, declared);
  INFO(split.status().ToString());
  REQUIRE(split.ok());
  return *split;
}

// Every file below `path` (recursively, symlinks not followed) with its
// content; directories as "<dir>/".
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
    } else if (S_ISLNK(st.st_mode)) {
      char target[256];
      ssize_t n = readlink(child.c_str(), target, sizeof(target));
      REQUIRE(n > 0);
      files[name] = "-> " + std::string(target, static_cast<size_t>(n));
    } else {
      files[name] = ReadFile(child);
    }
  }
  return files;
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  REQUIRE(lstat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

std::string CurrentTarget(const std::string& dir) {
  char target[256];
  ssize_t n = readlink((dir + "/current").c_str(), target, sizeof(target));
  REQUIRE(n > 0);
  return std::string(target, static_cast<size_t>(n));
}

std::unique_ptr<FileSecretVault> OpenVault(const std::string& dir) {
  absl::StatusOr<std::unique_ptr<FileSecretVault>> vault =
      FileSecretVault::Open(dir);
  INFO(vault.status().ToString());
  REQUIRE(vault.ok());
  return *std::move(vault);
}

std::string LoadOk(SecretVault& vault, const std::string& connector,
                   const std::string& id) {
  absl::StatusOr<std::string> values = vault.Load(connector, id);
  INFO(values.status().ToString());
  REQUIRE(values.ok());
  return *values;
}

// ---------------------------------------------------------------------------
// IsCredentialName

TEST_CASE("IsCredentialName: credential names by their last word",
          "[config][secrets]") {
  const std::vector<std::pair<std::string, bool>> table = {
      {"password", true},
      {"db_password", true},
      {"DB_PASSWORD", true},
      {"dbPassword", true},
      {"passwd", true},
      {"wifi_passphrase", true},
      {"apiKey", true},
      {"api_key", true},
      {"apikey", true},
      {"APIKey", true},
      {"api-key", true},
      {"access_token", true},
      {"refreshToken", true},
      {"oauth2Token", true},
      {"auth_token", true},
      {"client_secret", true},
      {"clientSecret", true},
      {"secret", true},
      {"privateKey", true},
      {"private_key", true},
      {"credentials", true},
      {"cloud_credential", true},
      {"Wi-Fi Password", true},
      // Not credentials: the credential word is not the last one.
      {"token_type", false},
      {"password_hint", false},
      {"use_password_auth", false},
      {"tokens_used", false},
      {"tokens", false},
      {"password_length", false},
      {"secret_santa_enabled", false},
      {"key", false},
      {"public_key", false},
      {"monkey", false},
      {"username", false},
      {"host", false},
      {"", false},
  };
  for (const auto& [key, expected] : table) {
    INFO(key);
    CHECK(IsCredentialName(key) == expected);
  }
}

// ---------------------------------------------------------------------------
// ExtractSecrets

TEST_CASE("ExtractSecrets: credential-named values at any depth, lists too",
          "[config][secrets]") {
  SecretSplit split = Extract(R"({
    "instance_id": "living",
    "password": "top",
    "connection": {"host": "192.0.2.10", "apiKey": "k-1",
                   "nested": {"client_secret": "cs"}},
    "devices": [
      {"device_id": "a", "ip": "192.0.2.11"},
      {"device_id": "b", "password": "devpass", "port": 55443}
    ],
    "token_type": "bearer"
  })");
  CHECK(split.document_json == Compact(R"({
    "instance_id": "living",
    "password": "__SECRET__password__",
    "connection": {"host": "192.0.2.10",
                   "apiKey": "__SECRET__connection.apiKey__",
                   "nested": {"client_secret":
                              "__SECRET__connection.nested.client_secret__"}},
    "devices": [
      {"device_id": "a", "ip": "192.0.2.11"},
      {"device_id": "b", "password": "__SECRET__devices.1.password__",
       "port": 55443}
    ],
    "token_type": "bearer"
  })"));
  CHECK(split.secrets_json == R"({"password":"top","connection.apiKey":"k-1",)"
                              R"("connection.nested.client_secret":"cs",)"
                              R"("devices.1.password":"devpass"})");
}

TEST_CASE("ExtractSecrets: a document without secrets is unchanged",
          "[config][secrets]") {
  const std::string doc =
      R"({"b":1,"a":[1.50,-0,1e300,18446744073709551615],"c":"x"})";
  SecretSplit split = Extract(doc);
  CHECK(split.document_json == doc);  // Key order and number text kept.
  CHECK(split.secrets_json == "{}");
}

TEST_CASE(
    "ExtractSecrets: booleans and null under credential names stay, "
    "unless declared",
    "[config][secrets]") {
  const std::string doc =
      R"({"use_password":true,"password":null,"token":false,"pin":1234,)"
      R"("api_key":12345678901234567890})";
  SecretSplit plain = Extract(doc);
  CHECK(plain.document_json ==
        R"({"use_password":true,"password":null,"token":false,"pin":1234,)"
        R"("api_key":"__SECRET__api_key__"})");
  CHECK(plain.secrets_json == R"({"api_key":12345678901234567890})");

  SecretSplit declared = Extract(doc, {"password", "token", "pin"});
  CHECK(declared.document_json ==
        R"({"use_password":true,"password":"__SECRET__password__",)"
        R"("token":"__SECRET__token__","pin":"__SECRET__pin__",)"
        R"("api_key":"__SECRET__api_key__"})");
  CHECK(declared.secrets_json == R"({"password":null,"token":false,"pin":1234,)"
                                 R"("api_key":12345678901234567890})");
}

TEST_CASE(
    "ExtractSecrets: declared names work at any depth and a secret "
    "container is secret as a whole",
    "[config][secrets]") {
  SecretSplit split =
      Extract(R"({"devices":[{"device_id":"a","code":"0000"}],)"
              R"("credentials":{"user":"u","pass":[1,2,{"x":null}]},"code":7})",
              {"code"});
  CHECK(
      split.document_json ==
      R"({"devices":[{"device_id":"a","code":"__SECRET__devices.0.code__"}],)"
      R"("credentials":"__SECRET__credentials__","code":"__SECRET__code__"})");
  CHECK(split.secrets_json ==
        R"({"devices.0.code":"0000",)"
        R"("credentials":{"user":"u","pass":[1,2,{"x":null}]},"code":7})");
}

TEST_CASE("ExtractSecrets: lists of lists and keys with '__'",
          "[config][secrets]") {
  SecretSplit split = Extract(
      R"({"groups":[[{"token":"t00"}],[{"a":1},{"my__token":"t11"}]]})");
  CHECK(split.document_json ==
        R"({"groups":[[{"token":"__SECRET__groups.0.0.token__"}],)"
        R"([{"a":1},{"my__token":"__SECRET__groups.1.1.my__token__"}]]})");
  CHECK(split.secrets_json ==
        R"({"groups.0.0.token":"t00","groups.1.1.my__token":"t11"})");
}

TEST_CASE("ExtractSecrets: anything but a JSON object is INVALID_ARGUMENT",
          "[config][secrets]") {
  for (const std::string bad :
       {"[1,2]", "\"password\"", "42", "", "{\"password\":", "{} {}"}) {
    INFO(bad);
    RequireError(ExtractSecrets(bad, {}).status(),
                 absl::StatusCode::kInvalidArgument, kSecretsInvalidContent);
  }
}

// ---------------------------------------------------------------------------
// MaskSecrets, InjectSecrets, KeepMaskedSecrets

TEST_CASE("MaskSecrets: placeholders become the mask, nothing else changes",
          "[config][secrets]") {
  absl::StatusOr<std::string> masked = MaskSecrets(
      R"({"password":"__SECRET__password__","n":1.10,)"
      R"("devices":[{"token":"__SECRET__devices.0.token__","x":"__SECRET__"}]})");
  REQUIRE(masked.ok());
  CHECK(*masked == R"({"password":"***HIDDEN***","n":1.10,)"
                   R"("devices":[{"token":"***HIDDEN***","x":"__SECRET__"}]})");
  RequireError(MaskSecrets("[]").status(), absl::StatusCode::kInvalidArgument,
               kSecretsInvalidContent);
}

TEST_CASE("InjectSecrets: values return to their own paths only",
          "[config][secrets]") {
  const std::string doc = R"({"password":"__SECRET__password__",)"
                          R"("name":"__SECRET__password__",)"
                          R"("devices":[{"a__b":"__SECRET__devices.0.a__b__"},)"
                          R"({"token":"__SECRET__devices.1.token__"}],)"
                          R"("missing":"__SECRET__missing__"})";
  absl::StatusOr<std::string> injected = InjectSecrets(
      doc, R"({"password":"p\"w","devices.0.a__b":{"k":[1,2.50]},)"
           R"("devices.1.token":null})");
  INFO(injected.status().ToString());
  REQUIRE(injected.ok());
  CHECK(*injected == R"({"password":"p\"w","name":"__SECRET__password__",)"
                     R"("devices":[{"a__b":{"k":[1,2.50]}},{"token":null}],)"
                     R"("missing":"__SECRET__missing__"})");
  RequireError(InjectSecrets(doc, "[]").status(),
               absl::StatusCode::kInvalidArgument, kSecretsInvalidContent);
  RequireError(InjectSecrets("[]", "{}").status(),
               absl::StatusCode::kInvalidArgument, kSecretsInvalidContent);
}

TEST_CASE("KeepMaskedSecrets: the mask keeps the stored value",
          "[config][secrets]") {
  absl::StatusOr<std::string> kept = KeepMaskedSecrets(
      R"({"password":"***HIDDEN***","token":"new","api_key":"***HIDDEN***",)"
      R"("connection.secret":"__SECRET__connection.secret__"})",
      R"({"token":"old","password":"stored","connection.secret":42})");
  INFO(kept.status().ToString());
  REQUIRE(kept.ok());
  // api_key has no stored value: dropped (its placeholder stays in the
  // document, so the connector never sees the mask).
  CHECK(*kept ==
        R"({"password":"stored","token":"new","connection.secret":42})");
  RequireError(KeepMaskedSecrets("{}", "nope").status(),
               absl::StatusCode::kInvalidArgument, kSecretsInvalidContent);
}

TEST_CASE("Secrets round trip: extract then inject restores the document",
          "[config][secrets]") {
  const std::string doc = Compact(R"({
    "name": "Wohnzimmer – Licht 💡",
    "password": "пароль密码🔑",
    "connection": {"token": {"a": [1, 2.5, -3e-7, 12345678901234567890],
                             "b": null, "c": true}},
    "devices": [{"device_id": "d1", "api_key": 0.1},
                {"device_id": "d2", "secret": "\u0000\n\"\\"}],
    "update_interval": 10
  })");
  SecretSplit split = Extract(doc);
  CHECK_FALSE(absl::StrContains(split.document_json, "пароль"));
  CHECK_FALSE(absl::StrContains(split.document_json, "12345678901234567890"));
  absl::StatusOr<std::string> injected =
      InjectSecrets(split.document_json, split.secrets_json);
  REQUIRE(injected.ok());
  CHECK(*injected == doc);

  absl::StatusOr<std::string> masked = MaskSecrets(split.document_json);
  REQUIRE(masked.ok());
  CHECK(absl::StrContains(*masked, R"("password":"***HIDDEN***")"));
}

TEST_CASE("BuildRuntimeSecretsJson: the file the SDK reads",
          "[config][secrets]") {
  const std::string doc =
      R"({"connection":{"password":"__SECRET__connection.password__"},)"
      R"("n":1.0})";
  std::string file = BuildRuntimeSecretsJson(
      "yeelight", "living", R"({"connection.password": "hunter2", "x": 1.0})",
      {{"MQTT_PASSWORD", "mq\"tt"}});
  CHECK(file == R"({"version":1,"connector":"yeelight","instance":"living",)"
                R"("values":{"connection.password":"hunter2","x":1.0},)"
                R"("env":{"MQTT_PASSWORD":"mq\"tt"}})");
  absl::StatusOr<sdk::RuntimeSecrets> secrets =
      sdk::ParseRuntimeSecrets(file, "/run/secrets/iot2mqtt.json");
  INFO(secrets.status().ToString());
  REQUIRE(secrets.ok());
  CHECK(secrets->env.Get("MQTT_PASSWORD") ==
        std::optional<std::string>("mq\"tt"));
  absl::StatusOr<std::string> applied = sdk::ApplyRuntimeSecrets(doc, *secrets);
  REQUIRE(applied.ok());
  CHECK(*applied == R"({"connection":{"password":"hunter2"},"n":1.0})");

  // Values that are not an object: an empty map (and an error log line
  // without the content).
  CapturedLog log;
  std::string empty =
      BuildRuntimeSecretsJson("yeelight", "living", "not json hunter2", {});
  CHECK(empty == R"({"version":1,"connector":"yeelight","instance":"living",)"
                 R"("values":{},"env":{}})");
  CHECK_FALSE(absl::StrContains(log.text(), "hunter2"));
  CHECK(absl::StrContains(log.text(), "ERROR"));
}

// ---------------------------------------------------------------------------
// FileSecretVault

TEST_CASE("FileSecretVault: store, load and remove", "[config][vault]") {
  TempDir tmp;
  auto vault = OpenVault(tmp.Join("secrets"));
  CHECK(LoadOk(*vault, "yeelight", "living") == "{}");

  REQUIRE(vault
              ->Store("yeelight", "living",
                      R"({"connection.password": "hunter2", "n": 1.50})")
              .ok());
  CHECK(LoadOk(*vault, "yeelight", "living") ==
        R"({"connection.password":"hunter2","n":1.50})");
  CHECK(LoadOk(*vault, "yeelight", "kitchen") == "{}");
  REQUIRE(vault
              ->Store(kPlatformSecretsConnector, kPlatformSecretsId,
                      R"({"mqtt.password":"m"})")
              .ok());
  CHECK(LoadOk(*vault, kPlatformSecretsConnector, kPlatformSecretsId) ==
        R"({"mqtt.password":"m"})");
  CHECK(vault->Owners() ==
        std::vector<std::pair<std::string, std::string>>{
            {"_platform", "settings"}, {"yeelight", "living"}});

  // Replacing, then "{}" removes.
  REQUIRE(vault->Store("yeelight", "living", R"({"token":"t2"})").ok());
  CHECK(LoadOk(*vault, "yeelight", "living") == R"({"token":"t2"})");
  REQUIRE(vault->Store("yeelight", "living", "{ }").ok());
  CHECK(LoadOk(*vault, "yeelight", "living") == "{}");
  std::string gen = tmp.Join("secrets/") + CurrentTarget(tmp.Join("secrets"));
  CHECK_FALSE(PathExists(gen + "/yeelight"));

  REQUIRE(vault->Store("yeelight", "living", R"({"token":"t3"})").ok());
  REQUIRE(vault->Remove("yeelight", "living").ok());
  CHECK(LoadOk(*vault, "yeelight", "living") == "{}");
  CHECK(vault->Remove("yeelight", "living").ok());  // Nothing to remove.
  CHECK(vault->Owners() == std::vector<std::pair<std::string, std::string>>{
                               {"_platform", "settings"}});
}

TEST_CASE("FileSecretVault: values that are not a JSON object are refused",
          "[config][vault]") {
  TempDir tmp;
  auto vault = OpenVault(tmp.Join("secrets"));
  for (const std::string bad : {"[]", "\"hunter2\"", "{\"a\":", ""}) {
    absl::Status status = vault->Store("demo", "one", bad);
    RequireError(status, absl::StatusCode::kInvalidArgument,
                 kSecretsInvalidContent);
    CHECK_FALSE(absl::StrContains(status.ToString(), "hunter2"));
  }
  CHECK(vault->Owners().empty());
}

TEST_CASE("FileSecretVault: no file holds a plaintext value",
          "[config][vault]") {
  TempDir tmp;
  const std::string dir = tmp.Join("secrets");
  auto vault = OpenVault(dir);
  REQUIRE(vault
              ->Store("yeelight", "living",
                      R"({"connection.password":"PlainHunter2Value"})")
              .ok());
  REQUIRE(vault->Store("demo", "x", R"({"api_key":"PlainApiKeyValue"})").ok());
  for (const auto& [name, content] : Snapshot(dir)) {
    INFO(name);
    CHECK_FALSE(absl::StrContains(content, "PlainHunter2Value"));
    CHECK_FALSE(absl::StrContains(content, "PlainApiKeyValue"));
    CHECK_FALSE(absl::StrContains(content, "connection.password"));
  }
  // The same values written twice give different files (fresh nonce).
  const std::string file =
      dir + "/" + CurrentTarget(dir) + "/yeelight/living.secret";
  std::string first = ReadFile(file);
  REQUIRE(vault
              ->Store("yeelight", "living",
                      R"({"connection.password":"PlainHunter2Value"})")
              .ok());
  CHECK(ReadFile(file) != first);
  CHECK(ReadFile(file).substr(0, 4) == "I2S1");
}

TEST_CASE("FileSecretVault: modes of the key, files and directories",
          "[config][vault]") {
  TempDir tmp;
  const std::string dir = tmp.Join("secrets");
  auto vault = OpenVault(dir);
  REQUIRE(vault->Store("demo", "one", R"({"token":"t"})").ok());
  const std::string gen = dir + "/" + CurrentTarget(dir);
  CHECK(CurrentTarget(dir) == "gen-1");
  CHECK(ModeOf(dir) == 0700);
  CHECK(ModeOf(gen) == 0700);
  CHECK(ModeOf(gen + "/demo") == 0700);
  CHECK(ModeOf(gen + "/key") == 0400);
  CHECK(ModeOf(gen + "/demo/one.secret") == 0600);
  CHECK(ReadFile(gen + "/key").size() == kSecretKeyBytes);
}

TEST_CASE("FileSecretVault: a file moved to another owner does not decrypt",
          "[config][vault]") {
  TempDir tmp;
  const std::string dir = tmp.Join("secrets");
  auto vault = OpenVault(dir);
  REQUIRE(vault->Store("demo", "one", R"({"token":"one-token"})").ok());
  REQUIRE(vault->Store("demo", "two", R"({"token":"two-token"})").ok());
  REQUIRE(vault->Store("other", "one", R"({"token":"x"})").ok());
  const std::string gen = dir + "/" + CurrentTarget(dir);
  WriteFile(gen + "/demo/two.secret", ReadFile(gen + "/demo/one.secret"));
  WriteFile(gen + "/other/one.secret", ReadFile(gen + "/demo/one.secret"));

  for (const auto& [connector, id] :
       std::vector<std::pair<std::string, std::string>>{{"demo", "two"},
                                                        {"other", "one"}}) {
    absl::StatusOr<std::string> swapped = vault->Load(connector, id);
    RequireError(swapped.status(), absl::StatusCode::kFailedPrecondition,
                 kSecretsUnreadable);
    CHECK_FALSE(absl::StrContains(swapped.status().ToString(), "one-token"));
    CHECK(common::GetErrorInfo(swapped.status())->metadata().at("id") == id);
  }
  CHECK(LoadOk(*vault, "demo", "one") == R"({"token":"one-token"})");
}

TEST_CASE(
    "FileSecretVault: a tampered, truncated or foreign file is "
    "SECRETS_UNREADABLE",
    "[config][vault]") {
  TempDir tmp;
  const std::string dir = tmp.Join("secrets");
  auto vault = OpenVault(dir);
  REQUIRE(vault->Store("demo", "one", R"({"token":"t"})").ok());
  const std::string file = dir + "/" + CurrentTarget(dir) + "/demo/one.secret";
  const std::string good = ReadFile(file);

  std::string flipped = good;
  flipped[flipped.size() - 5] ^= 0x01;
  std::string bad_nonce = good;
  bad_nonce[6] ^= 0x40;
  std::string bad_magic = good;
  bad_magic[0] = 'X';
  for (const std::string& content :
       {flipped, bad_nonce, bad_magic, good.substr(0, 30), std::string("")}) {
    WriteFile(file, content);
    RequireError(vault->Load("demo", "one").status(),
                 absl::StatusCode::kFailedPrecondition, kSecretsUnreadable);
  }
  WriteFile(file, good);
  CHECK(LoadOk(*vault, "demo", "one") == R"({"token":"t"})");
}

TEST_CASE(
    "FileSecretVault: invalid owners are refused before any path is "
    "built",
    "[config][vault]") {
  TempDir tmp;
  const std::string dir = tmp.Join("secrets");
  auto vault = OpenVault(dir);
  const auto before = Snapshot(tmp.path());
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"..", "x"},
      {"demo", ".."},
      {"../demo", "x"},
      {"demo", "a/b"},
      {"Demo", "x"},
      {"demo", "X"},
      {"", "x"},
      {"demo", ""},
      {"_demo", "x"},
      {"-demo", "x"},
      {"demo", "_platform"},
      {"_platform", "Settings"},
      {"demo", "a.secret"},
      {std::string(64, 'a'), "x"},
      {"demo", std::string(64, 'a')},
      {std::string("de\0mo", 5), "x"}};
  for (const auto& [connector, id] : bad) {
    INFO(connector << "/" << id);
    RequireError(vault->Store(connector, id, R"({"token":"t"})"),
                 absl::StatusCode::kInvalidArgument, kInvalidSecretOwner);
    RequireError(vault->Load(connector, id).status(),
                 absl::StatusCode::kInvalidArgument, kInvalidSecretOwner);
    RequireError(vault->Remove(connector, id),
                 absl::StatusCode::kInvalidArgument, kInvalidSecretOwner);
  }
  CHECK(Snapshot(tmp.path()) == before);
  // The longest valid names and the platform owner are fine.
  CHECK(vault->Store(std::string(63, 'a'), std::string(63, '9'), R"({"a":1})")
            .ok());
  CHECK(vault->Store("a_b-c", "0-x_y", R"({"a":1})").ok());
}

TEST_CASE("FileSecretVault: values survive a restart", "[config][vault]") {
  TempDir tmp;
  const std::string dir = tmp.Join("secrets");
  const std::string values = R"({"connection.password":"pässwörd","n":1e2})";
  {
    auto vault = OpenVault(dir);
    REQUIRE(vault->Store("demo", "one", values).ok());
  }
  const std::string key = ReadFile(dir + "/gen-1/key");
  auto reopened = OpenVault(dir);
  CHECK(LoadOk(*reopened, "demo", "one") == values);
  CHECK(ReadFile(dir + "/gen-1/key") == key);  // No new key on reopen.
}

TEST_CASE("FileSecretVault: rotation re-encrypts every value under a new key",
          "[config][vault]") {
  TempDir tmp;
  const std::string dir = tmp.Join("secrets");
  auto vault = OpenVault(dir);
  REQUIRE(vault->Store("demo", "one", R"({"token":"t1"})").ok());
  REQUIRE(vault->Store("demo", "two", R"({"password":"p2"})").ok());
  REQUIRE(vault
              ->Store(kPlatformSecretsConnector, kPlatformSecretsId,
                      R"({"mqtt.password":"m"})")
              .ok());
  const std::string old_key = ReadFile(dir + "/gen-1/key");
  const std::string old_file = ReadFile(dir + "/gen-1/demo/one.secret");

  REQUIRE(vault->RotateKey().ok());
  CHECK(CurrentTarget(dir) == "gen-2");
  CHECK_FALSE(PathExists(dir + "/gen-1"));  // Old key gone.
  CHECK(ListDir(dir) == std::vector<std::string>{".lock", "current", "gen-2"});
  CHECK(ReadFile(dir + "/gen-2/key") != old_key);
  CHECK(ModeOf(dir + "/gen-2/key") == 0400);
  CHECK(ModeOf(dir + "/gen-2/demo/one.secret") == 0600);
  CHECK(ReadFile(dir + "/gen-2/demo/one.secret") != old_file);

  CHECK(LoadOk(*vault, "demo", "one") == R"({"token":"t1"})");
  CHECK(LoadOk(*vault, "demo", "two") == R"({"password":"p2"})");
  CHECK(LoadOk(*vault, kPlatformSecretsConnector, kPlatformSecretsId) ==
        R"({"mqtt.password":"m"})");
  // Writes go to the new generation; a restart reads it too.
  REQUIRE(vault->Store("demo", "three", R"({"secret":"s3"})").ok());
  vault.reset();
  auto reopened = OpenVault(dir);
  CHECK(LoadOk(*reopened, "demo", "one") == R"({"token":"t1"})");
  CHECK(LoadOk(*reopened, "demo", "three") == R"({"secret":"s3"})");
  REQUIRE(reopened->RotateKey().ok());
  CHECK(CurrentTarget(dir) == "gen-3");
  CHECK(LoadOk(*reopened, "demo", "three") == R"({"secret":"s3"})");
}

TEST_CASE("FileSecretVault: a rotation that fails midway changes nothing",
          "[config][vault]") {
  TempDir tmp;
  const std::string dir = tmp.Join("secrets");
  auto vault = OpenVault(dir);
  REQUIRE(vault->Store("demo", "one", R"({"token":"t1"})").ok());
  REQUIRE(vault->Store("demo", "two", R"({"token":"t2"})").ok());
  REQUIRE(vault->Store("demo", "three", R"({"token":"t3"})").ok());
  const auto before = Snapshot(dir);

  int written = 0;
  vault->SetRotationHookForTesting(
      [&written](absl::string_view, absl::string_view) {
        if (++written == 2) {
          return absl::UnavailableError("disk went away (injected)");
        }
        return absl::OkStatus();
      });
  absl::Status rotated = vault->RotateKey();
  CHECK(rotated.code() == absl::StatusCode::kUnavailable);
  CHECK(written == 2);
  CHECK(Snapshot(dir) == before);  // No trace of gen-2; gen-1 in charge.
  CHECK(LoadOk(*vault, "demo", "one") == R"({"token":"t1"})");
  CHECK(LoadOk(*vault, "demo", "three") == R"({"token":"t3"})");

  // A file that doesn't decrypt stops the rotation too: nothing is dropped.
  vault->SetRotationHookForTesting(nullptr);
  WriteFile(dir + "/gen-1/demo/two.secret", "I2S1 not a valid file at all...");
  RequireError(vault->RotateKey(), absl::StatusCode::kFailedPrecondition,
               kSecretsUnreadable);
  CHECK(CurrentTarget(dir) == "gen-1");
  CHECK_FALSE(PathExists(dir + "/gen-2"));
  CHECK(LoadOk(*vault, "demo", "three") == R"({"token":"t3"})");
}

TEST_CASE(
    "FileSecretVault: leftovers of a crashed rotation are removed at "
    "start",
    "[config][vault]") {
  TempDir tmp;
  const std::string dir = tmp.Join("secrets");
  {
    auto vault = OpenVault(dir);
    REQUIRE(vault->Store("demo", "one", R"({"token":"t1"})").ok());
  }
  // A half-built next generation, an old one and a temporary link.
  REQUIRE(MakeDirectories(dir + "/gen-2/demo", 0700).ok());
  WriteFile(dir + "/gen-2/key", std::string(32, 'k'));
  WriteFile(dir + "/gen-2/demo/one.secret", "I2S1 half written");
  REQUIRE(MakeDirectories(dir + "/gen-0000", 0700).ok());  // Not a gen name.
  REQUIRE(symlink("gen-2", (dir + "/.current.tmp-0123456789abcdef").c_str()) ==
          0);

  auto vault = OpenVault(dir);
  CHECK(ListDir(dir) ==
        std::vector<std::string>{".lock", "current", "gen-0000", "gen-1"});
  CHECK(LoadOk(*vault, "demo", "one") == R"({"token":"t1"})");
  REQUIRE(vault->RotateKey().ok());
  CHECK(LoadOk(*vault, "demo", "one") == R"({"token":"t1"})");
}

TEST_CASE(
    "FileSecretVault: a key open to group or others is narrowed to "
    "0400",
    "[config][vault]") {
  TempDir tmp;
  const std::string dir = tmp.Join("secrets");
  {
    auto vault = OpenVault(dir);
    REQUIRE(vault->Store("demo", "one", R"({"token":"t1"})").ok());
  }
  REQUIRE(chmod((dir + "/gen-1/key").c_str(), 0644) == 0);
  REQUIRE(chmod(dir.c_str(), 0755) == 0);
  CapturedLog log;
  auto vault = OpenVault(dir);
  CHECK(ModeOf(dir + "/gen-1/key") == 0400);
  CHECK(ModeOf(dir) == 0700);
  CHECK(absl::StrContains(log.text(), "WARNING"));
  CHECK(absl::StrContains(log.text(), "0644"));
  CHECK(LoadOk(*vault, "demo", "one") == R"({"token":"t1"})");
}

TEST_CASE("FileSecretVault: a key of the wrong size is refused",
          "[config][vault]") {
  TempDir tmp;
  const std::string dir = tmp.Join("secrets");
  { OpenVault(dir); }
  const std::string key = dir + "/gen-1/key";
  REQUIRE(chmod(key.c_str(), 0600) == 0);
  WriteFile(key, std::string(31, 'k'));
  absl::StatusOr<std::unique_ptr<FileSecretVault>> vault =
      FileSecretVault::Open(dir);
  RequireError(vault.status(), absl::StatusCode::kFailedPrecondition,
               kSecretsKeyInvalid);

  REQUIRE(unlink(key.c_str()) == 0);
  RequireError(FileSecretVault::Open(dir).status(),
               absl::StatusCode::kFailedPrecondition, kSecretsKeyInvalid);
}

TEST_CASE("FileSecretVault: a broken `current` is refused, not replaced",
          "[config][vault]") {
  TempDir tmp;
  const std::string dir = tmp.Join("secrets");
  {
    auto vault = OpenVault(dir);
    REQUIRE(vault->Store("demo", "one", R"({"token":"t1"})").ok());
  }
  REQUIRE(unlink((dir + "/current").c_str()) == 0);
  // A generation with values and nothing in charge: an operator must look.
  RequireError(FileSecretVault::Open(dir).status(),
               absl::StatusCode::kFailedPrecondition, kSecretsLayoutInvalid);
  CHECK(PathExists(dir + "/gen-1/demo/one.secret"));
  REQUIRE(symlink("gen-7", (dir + "/current").c_str()) == 0);
  RequireError(FileSecretVault::Open(dir).status(),
               absl::StatusCode::kFailedPrecondition, kSecretsLayoutInvalid);
}

TEST_CASE(
    "FileSecretVault: two vaults on one directory see each other's "
    "rotation",
    "[config][vault]") {
  TempDir tmp;
  const std::string dir = tmp.Join("secrets");
  auto first = OpenVault(dir);
  auto second = OpenVault(dir);
  REQUIRE(first->Store("demo", "one", R"({"token":"t1"})").ok());
  CHECK(LoadOk(*second, "demo", "one") == R"({"token":"t1"})");
  REQUIRE(first->RotateKey().ok());
  CHECK(LoadOk(*second, "demo", "one") == R"({"token":"t1"})");
  REQUIRE(second->Store("demo", "two", R"({"token":"t2"})").ok());
  CHECK(LoadOk(*first, "demo", "two") == R"({"token":"t2"})");
}

TEST_CASE("FileSecretVault: concurrent stores from many threads",
          "[config][vault]") {
  TempDir tmp;
  const std::string dir = tmp.Join("secrets");
  auto vault = OpenVault(dir);
  constexpr int kThreads = 8;
  constexpr int kWrites = 15;
  std::vector<std::thread> threads;
  std::vector<absl::Status> errors(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&vault, &errors, t] {
      for (int i = 0; i < kWrites && errors[t].ok(); ++i) {
        errors[t] =
            vault->Store("demo", absl::StrCat("owner-", t),
                         absl::StrCat(R"({"token":")", t, "-", i, R"("})"));
        if (errors[t].ok()) {
          errors[t] = vault->Store("shared", "one",
                                   absl::StrCat(R"({"writer":)", t, "}"));
        }
        if (errors[t].ok() && t == 0 && i == kWrites / 2) {
          errors[t] = vault->RotateKey();
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const absl::Status& error : errors) CHECK(error.ok());
  for (int t = 0; t < kThreads; ++t) {
    CHECK(LoadOk(*vault, "demo", absl::StrCat("owner-", t)) ==
          absl::StrCat(R"({"token":")", t, "-", kWrites - 1, R"("})"));
  }
  std::string shared = LoadOk(*vault, "shared", "one");
  CHECK(absl::StartsWith(shared, R"({"writer":)"));
  CHECK(vault->Owners().size() == kThreads + 1);
  for (const auto& [name, content] : Snapshot(dir)) {
    INFO(name);
    CHECK_FALSE(IsAtomicWriteTempName(name.substr(name.rfind('/') + 1)));
  }
}

}  // namespace
}  // namespace iot2mqtt::config
