// iot2mqtt-config: all persistent state of the platform over gRPC.
//
//   iot2mqtt-config                      serve
//   iot2mqtt-config set-access-key       read a new access key from stdin
//                                        (one line) and store its hash
//   iot2mqtt-config rotate-secrets-key   re-encrypt every secret under a
//                                        new key
//
// Environment (every problem reported at once, exit 2):
//   IOT2MQTT_DATA_DIR        data directory: .env, instances/, secrets/,
//                            auth/ (required; created when missing)
//   IOT2MQTT_CONNECTORS_DIR  connector catalogue (<data>/connectors)
//   ESP32_CONFIGS_DIR        ESP32 device configs (required to serve; never
//   created:
//                            while it is missing the service reports
//                            unhealthy)
//   CONFIG_LISTEN_ADDR       gRPC address (127.0.0.1:50051)
//   CONFIG_WORKER_THREADS    threads for file I/O and hashing (4)
//   CATALOGUE_POLL_SECONDS   how often the catalogue is checked for
//                            changes (5)
//   INSTANCE_HISTORY_LIMIT   previous versions kept per instance (10)
//   SETTINGS_BACKUP_LIMIT    .env backups kept (10)
//   WEB_ACCESS_KEY           sets the access key at start when none is set
//   AUTH_TOKEN_LIFETIME_SECONDS  how long a login's token is valid (604800)
//   MQTT_HOST, MQTT_PORT, MQTT_USERNAME, MQTT_PASSWORD, MQTT_BASE_TOPIC:
//                            when MQTT_HOST is set, those of these that are
//                            set replace the stored MQTT settings at start
//                            (environment beats .env)
//   LOG_LEVEL                DEBUG/INFO/WARNING/ERROR (INFO)

#include <unistd.h>

#include <atomic>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "iot2mqtt/sdk/env.h"
#include "iot2mqtt/sdk/log.h"
#include "services/common/server_runner.h"
#include "services/config/config_stack.h"
#include "services/config/file_io.h"

namespace iot2mqtt::config {
namespace {

// A setting from the environment only when it is set there.
struct MqttSeed {
  std::string host;
  std::optional<int> port;
  std::optional<std::string> username;
  std::optional<std::string> password;
  std::optional<std::string> base_topic;
};

struct Options {
  std::string data_dir;
  std::string connectors_dir;
  std::string esp32_dir;
  std::string listen_address;
  int worker_threads = 4;
  int catalogue_poll_seconds = 5;
  int history_limit = 10;
  int backup_limit = 10;
  int token_lifetime_seconds = 604800;
  std::string access_key;  // WEB_ACCESS_KEY
  bool seed_mqtt = false;
  MqttSeed mqtt;
};

bool ReadOptions(bool serving, Options* options) {
  sdk::ProcessEnv process_env;
  sdk::EnvReader env(process_env);
  options->data_dir = env.Required("IOT2MQTT_DATA_DIR");
  options->connectors_dir =
      env.String("IOT2MQTT_CONNECTORS_DIR", options->data_dir + "/connectors");
  // The commands don't touch device configs.
  options->esp32_dir = serving ? env.Required("ESP32_CONFIGS_DIR")
                               : env.String("ESP32_CONFIGS_DIR", "");
  options->listen_address = env.String("CONFIG_LISTEN_ADDR", "127.0.0.1:50051");
  options->worker_threads =
      static_cast<int>(env.Int("CONFIG_WORKER_THREADS", 4, 1, 64));
  options->catalogue_poll_seconds =
      static_cast<int>(env.Int("CATALOGUE_POLL_SECONDS", 5, 1, 3600));
  options->history_limit =
      static_cast<int>(env.Int("INSTANCE_HISTORY_LIMIT", 10, 0, 1000));
  options->backup_limit =
      static_cast<int>(env.Int("SETTINGS_BACKUP_LIMIT", 10, 0, 1000));
  options->token_lifetime_seconds = static_cast<int>(
      env.Int("AUTH_TOKEN_LIFETIME_SECONDS", 604800, 1, 31536000));
  options->access_key = env.String("WEB_ACCESS_KEY", "");
  std::string host = env.String("MQTT_HOST", "");
  if (!host.empty()) {
    options->seed_mqtt = true;
    options->mqtt.host = host;
    if (process_env.Get("MQTT_PORT").has_value()) {
      options->mqtt.port =
          static_cast<int>(env.Int("MQTT_PORT", 1883, 1, 65535));
    }
    options->mqtt.username = process_env.Get("MQTT_USERNAME");
    options->mqtt.password = process_env.Get("MQTT_PASSWORD");
    options->mqtt.base_topic = process_env.Get("MQTT_BASE_TOPIC");
  }
  const sdk::Severity severity = sdk::ReadLogLevel(env);
  if (absl::Status status = env.Finish(); !status.ok()) {
    IOT2MQTT_LOG(ERROR) << status.message();
    return false;
  }
  sdk::SetLogLevel(severity);
  return true;
}

// Reads one line from stdin without echoing it into any log.
int SetAccessKeyCommand(AccessKeyStore& keys) {
  if (isatty(STDIN_FILENO)) {
    std::cerr << "New access key (input is not hidden): " << std::flush;
  }
  std::string key;
  std::getline(std::cin, key);
  absl::string_view trimmed = absl::StripTrailingAsciiWhitespace(key);
  absl::Status status = keys.SetKey(trimmed);
  std::fill(key.begin(), key.end(), '\0');
  if (!status.ok()) {
    IOT2MQTT_LOG(ERROR) << status.message();
    return 1;
  }
  IOT2MQTT_LOG(INFO) << "access key stored (Argon2id hash in "
                     << keys.key_path() << "); existing tokens stay valid "
                     << "until they expire";
  return 0;
}

int Main(int argc, char** argv) {
  sdk::SetLogService("config");
  std::string command = argc > 1 ? argv[1] : "";
  if (!command.empty() && command != "set-access-key" &&
      command != "rotate-secrets-key") {
    IOT2MQTT_LOG(ERROR) << "unknown command \"" << command
                        << "\"; use set-access-key or rotate-secrets-key";
    return 2;
  }
  if (command.empty()) common::BlockTerminationSignals();
  Options options;
  if (!ReadOptions(command.empty(), &options)) return 2;

  ConfigStackOptions stack_options;
  stack_options.data_dir = options.data_dir;
  stack_options.connectors_dir = options.connectors_dir;
  stack_options.esp32_dir = options.esp32_dir;
  stack_options.worker_threads = options.worker_threads;
  stack_options.history_limit = options.history_limit;
  stack_options.backup_limit = options.backup_limit;
  stack_options.token_lifetime = absl::Seconds(options.token_lifetime_seconds);
  absl::StatusOr<std::unique_ptr<ConfigStack>> opened =
      ConfigStack::Open(stack_options);
  if (!opened.ok()) {
    IOT2MQTT_LOG(ERROR) << "can't open the data directory " << options.data_dir
                        << ": " << opened.status().message();
    return 1;
  }
  ConfigStack& stack = **opened;
  if (command == "set-access-key") {
    return SetAccessKeyCommand(stack.access_keys());
  }
  if (command == "rotate-secrets-key") {
    if (absl::Status s = stack.vault().RotateKey(); !s.ok()) {
      IOT2MQTT_LOG(ERROR) << "rotation failed, the old key stays in use: "
                          << s.message();
      return 1;
    }
    IOT2MQTT_LOG(INFO) << "secrets key rotated";
    return 0;
  }

  if (int removed = RemoveStaleTempFiles(options.data_dir, absl::Seconds(10));
      removed > 0) {
    IOT2MQTT_LOG(INFO).With("files", removed)
        << "removed temporary files left by an interrupted write";
  }
  MqttSettingsStore& mqtt = stack.mqtt();
  if (absl::Status s = mqtt.MigratePlaintextPassword(); !s.ok()) {
    IOT2MQTT_LOG(WARNING) << "can't move the MQTT password out of .env: "
                          << s.message();
  }
  if (options.seed_mqtt) {
    absl::StatusOr<MqttSettings> stored = mqtt.Get();
    MqttSettings desired = stored.ok() ? *stored : MqttSettings{};
    const MqttSeed& seed = options.mqtt;
    desired.host = seed.host;
    if (seed.port) desired.port = *seed.port;
    if (seed.username) desired.username = *seed.username;
    if (seed.password && !seed.password->empty()) {
      desired.password = *seed.password;
    }
    if (seed.base_topic) desired.base_topic = *seed.base_topic;
    if (absl::Status s = mqtt.Set(desired).status(); !s.ok()) {
      IOT2MQTT_LOG(ERROR) << "the MQTT_* environment is not usable: "
                          << s.message();
      return 2;
    }
  }
  if (!options.access_key.empty()) {
    absl::Status s = stack.access_keys().SetKeyIfAbsent(options.access_key);
    if (s.ok()) {
      IOT2MQTT_LOG(INFO) << "access key set from WEB_ACCESS_KEY";
    } else if (absl::IsAlreadyExists(s)) {
      IOT2MQTT_LOG(INFO) << "WEB_ACCESS_KEY ignored: an access key is already "
                            "set (change it with iot2mqtt-config "
                            "set-access-key)";
    } else {
      IOT2MQTT_LOG(ERROR) << "WEB_ACCESS_KEY: " << s.message();
      return 2;
    }
  }
  ConnectorCatalogue& catalogue = stack.catalogue();
  ChangeLog& changes = stack.changes();

  // The catalogue is files a user may edit at any time: poll it.
  absl::Notification stop_polling;
  std::thread poller([&] {
    std::string fingerprint = catalogue.Fingerprint();
    while (!stop_polling.WaitForNotificationWithTimeout(
        absl::Seconds(options.catalogue_poll_seconds))) {
      std::string now = catalogue.Fingerprint();
      if (now == fingerprint) continue;
      fingerprint = std::move(now);
      Change change;
      change.kind = Change::Kind::kCatalogue;
      change.action = Change::Action::kUpdated;
      changes.Append(std::move(change));
      IOT2MQTT_LOG(INFO) << "connector catalogue changed";
    }
  });

  common::ServerOptions server_options;
  server_options.service_name = "config";
  server_options.listen_address = options.listen_address;
  server_options.health_probe = [&stack] {
    return CheckConfigHealth(stack.device_configs());
  };
  server_options.registry = stack.registry();
  server_options.before_shutdown = [&changes] { changes.Close(); };
  int code = common::RunServer(std::move(server_options), {&stack.service()});
  stop_polling.Notify();
  poller.join();
  return code;
}

}  // namespace
}  // namespace iot2mqtt::config

int main(int argc, char** argv) { return iot2mqtt::config::Main(argc, argv); }
