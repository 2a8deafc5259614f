#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "iot2mqtt/sdk/connector.h"
#include "iot2mqtt/sdk/dotenv.h"
#include "iot2mqtt/sdk/env.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/runtime_secrets.h"

namespace iot2mqtt::sdk {
namespace {

sigset_t TerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

}  // namespace

int RunConnector(absl::string_view name, const ConnectorFactory& factory) {
  // Before any thread exists, so that every thread inherits the mask and
  // only the waiter below receives the signals.
  sigset_t signals = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  SetLogService(absl::StrCat("connector-", name));

  ProcessEnv process;
  absl::StatusOr<MapEnv> dotenv = LoadEnvFile(process);
  if (!dotenv.ok()) {
    IOT2MQTT_LOG(ERROR) << dotenv.status().message();
    return 2;
  }
  LayeredEnv files(process, *dotenv);
  absl::StatusOr<RuntimeSecrets> secrets = LoadRuntimeSecrets(files);
  if (!secrets.ok()) {
    IOT2MQTT_LOG(ERROR) << secrets.status().message();
    return 2;
  }
  // Process environment > .env file > the secrets file's env.
  SecretsFallbackEnv env(files, *secrets);
  EnvReader reader(env);
  std::string instance = reader.Required("INSTANCE_NAME");
  if (!instance.empty()) {
    if (absl::Status s = ValidateId(instance); !s.ok()) {
      reader.AddProblem(absl::StrCat("INSTANCE_NAME: ", s.message()));
    }
    if (!secrets->path.empty() && secrets->instance != instance) {
      reader.AddProblem(absl::StrCat("secrets file ", secrets->path,
                                     " is for instance \"", secrets->instance,
                                     "\", not \"", instance, "\""));
    }
  }
  const Severity severity = ReadLogLevel(reader);
  MqttSettings mqtt = ReadMqttSettings(reader);
  std::string connector_type = reader.String("CONNECTOR_TYPE", "");
  std::string path = InstanceConfigPath(env, instance);
  if (absl::Status s = reader.Finish(); !s.ok()) {
    IOT2MQTT_LOG(ERROR) << s.message();
    return 2;
  }
  SetLogLevel(severity);

  absl::StatusOr<InstanceConfig> config =
      LoadInstanceConfigWithSecrets(path, instance, connector_type, *secrets);
  if (!config.ok()) {
    IOT2MQTT_LOG(ERROR).With("instance", instance).With("path", path)
        << config.status().message();
    return 2;
  }
  IOT2MQTT_LOG(INFO)
          .With("instance", instance)
          .With("path", path)
          .With("devices", static_cast<int64_t>(config->devices.size()))
          .With("base_topic", mqtt.base_topic)
      << "instance config loaded";

  mqtt.max_inbound_payload = kMaxInboundPayloadBytes;
  MosquittoClient client(mqtt, MqttClientId(mqtt, instance));
  std::unique_ptr<Connector> connector = factory();

  // The signal waiter: SIGTERM/SIGINT stop the connector (later ones are
  // only logged: some supervisors signal the whole process group as well as
  // the process, and the stop is bounded anyway). When the connector stops
  // by itself, `done` is set and the waiter is woken with a thread-directed
  // SIGTERM.
  std::atomic<bool> done{false};
  Connector* target = connector.get();
  std::thread waiter([&done, target, signals] {
    bool first = true;
    while (true) {
      int signal_number = 0;
      if (sigwait(&signals, &signal_number) != 0) continue;
      if (done.load()) return;
      if (first) {
        first = false;
        IOT2MQTT_LOG(INFO).With("signal", signal_number)
            << "termination signal received";
        target->RequestStop();
      } else {
        IOT2MQTT_LOG(INFO).With("signal", signal_number)
            << "termination signal received; already stopping";
      }
    }
  });

  ConnectorOptions options;
  options.config = *std::move(config);
  options.mqtt = mqtt;
  options.client = &client;
  int code = connector->Run(std::move(options));

  done = true;
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  if (!connector->stopped_cleanly()) {
    // A device hook still runs and uses the connector: do not destroy it.
    std::fflush(stdout);
    _exit(code);
  }
  return code;
}

}  // namespace iot2mqtt::sdk
