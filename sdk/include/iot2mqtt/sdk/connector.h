#ifndef IOT2MQTT_SDK_CONNECTOR_H_
#define IOT2MQTT_SDK_CONNECTOR_H_

// The base class of every C++ connector. A connector overrides a few hooks;
// the base speaks the whole v1 MQTT contract (docs/mqtt-contract.md):
// status and last will, polling with per-device backoff and UPDATE_ERROR,
// command dispatch with staleness checks and responses, `get` with and
// without `properties`, group commands with one aggregated response, meta
// replies, re-publishing after reconnects, graceful stop.
//
//   class LampConnector : public sdk::Connector {
//    protected:
//     absl::StatusOr<std::string> ReadDevice(
//         const sdk::DeviceConfig& device) override {
//       return sdk::JsonObjectBuilder().Set("power", on_).Build();
//     }
//     absl::StatusOr<std::string> ApplyCommand(
//         const sdk::DeviceConfig& device,
//         const rapidjson::Value& values) override {
//       if (values.HasMember("power") && values["power"].IsBool()) ...
//       return std::string();  // "" = read the device again for the result
//     }
//   };
//   int main() { return sdk::RunConnector<LampConnector>("lamp"); }
//
// Threading model:
// - The MQTT network thread only moves received messages into the control
//   queue (bounded) and re-publishes known state after a reconnect.
// - One control thread parses and validates every inbound message, answers
//   what needs no device (rejections, meta, unknown devices and groups) and
//   hands device work to the device's worker. It never calls a device hook.
// - One worker thread per enabled device runs that device's polls, commands
//   and reads, one at a time, in arrival order (commands before a due poll).
//   ReadDevice()/ApplyCommand() of different devices run concurrently; the
//   hooks of one device never do. A device whose hook blocks stalls only its
//   own worker: the other devices keep their polling rhythm, and requests
//   that wait for it past their deadline (the command's `timeout`, else 30 s)
//   are answered with DEVICE_OFFLINE without being applied.
// - Initialize(), Cleanup() and OnStopRequested() run on the thread that
//   called Run(). PublishState/PublishEvent/PublishError/RequestRefresh may
//   be called from any thread (event-driven connectors, their own sockets).
//
// Polling: every `update_interval` (config, default 10 s) for each enabled
// device for which PollDevice() is true. After a failed read the device gets
// UPDATE_ERROR with retry_info (attempt, next_retry) and is retried after
// update_interval * 2^(failures-1), capped at max(update_interval,
// min(10 * update_interval, 60 s)); the first success resets it.

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "iot2mqtt/sdk/clock.h"
#include "iot2mqtt/sdk/contract.h"
#include "iot2mqtt/sdk/instance_config.h"
#include "iot2mqtt/sdk/mqtt_client.h"
#include "rapidjson/document.h"

namespace iot2mqtt::sdk {

// Attaches a contract error code (UPPER_SNAKE_CASE) to a status returned by
// a hook, e.g. WithErrorCode(absl::UnavailableError("bulb busy"),
// "BULB_BUSY").
absl::Status WithErrorCode(absl::Status status, absl::string_view code);
// The code attached with WithErrorCode(); otherwise INVALID_ARGUMENT and
// OUT_OF_RANGE map to INVALID_COMMAND, UNAVAILABLE and DEADLINE_EXCEEDED to
// DEVICE_OFFLINE, anything else to `fallback`.
std::string ErrorCodeOf(const absl::Status& status, absl::string_view fallback);

// What Run() needs. RunConnector() fills it from the environment; tests
// build it by hand (a FakeMqttClient or a MosquittoClient on a loopback
// broker, a FakeClock).
struct ConnectorOptions {
  InstanceConfig config;
  // qos, retain and base_topic are used; the connection itself is the
  // client's business.
  MqttSettings mqtt;
  // Not owned. Run() sets its will, birth and handlers, subscribes, starts
  // it and stops it.
  MqttClient* client = nullptr;
  Clock* clock = &RealClock();
  // Budget of the graceful stop: workers, Cleanup(), `offline`, disconnect
  // (the contract allows 10 s; the rest is margin for the process exit).
  absl::Duration stop_timeout = absl::Seconds(9);
  // Requests waiting for one device; more are answered DEVICE_OFFLINE.
  size_t max_device_queue = 64;
  // Inbound messages waiting for the control thread; more are dropped
  // (logged).
  size_t max_inbox = 1024;
};

class Connector {
 public:
  Connector();
  virtual ~Connector();
  Connector(const Connector&) = delete;
  Connector& operator=(const Connector&) = delete;

  // Runs the connector until RequestStop(): starts the MQTT client (status
  // `online` after every connect), calls Initialize(), starts the device
  // workers and serves the contract. Then stops gracefully within
  // options.stop_timeout: polling stops, OnStopRequested(), the workers
  // finish their current hook, Cleanup(), `offline` is published and
  // acknowledged, the client disconnects. Returns 0 after a graceful stop,
  // 1 when Initialize() failed (INIT_ERROR is published on the `_instance`
  // error topic first), 2 when the options are unusable. Call once.
  int Run(ConnectorOptions options);
  // Any thread, any time (also before Run()); returns at once.
  void RequestStop();
  // False when a device hook was still blocked when the stop budget ran
  // out: Cleanup() was skipped and the hook may still touch this object, so
  // the process should exit without destroying it (RunConnector does).
  bool stopped_cleanly() const;

  // --- For connectors, from any thread while Run() is active. ---

  // Publishes a device's state (a JSON object; property topics follow) as
  // the polling loop does, and marks the device online.
  absl::Status PublishState(absl::string_view device_id,
                            absl::string_view state_json);
  // devices/{d}/events; `data_json` is a JSON value (an object by
  // convention).
  absl::Status PublishEvent(absl::string_view device_id,
                            absl::string_view event,
                            absl::string_view data_json = "{}");
  // devices/{d}/error (use kInstanceErrorDevice for the instance).
  absl::Status PublishError(absl::string_view device_id,
                            absl::string_view error_code,
                            absl::string_view message,
                            ErrorSeverity severity = ErrorSeverity::kError);
  // Reads the device soon on its worker (outside the polling rhythm) and
  // publishes the result like a poll. Ignored before the workers start
  // (i.e. during Initialize()) and for unknown or disabled devices.
  void RequestRefresh(absl::string_view device_id);

  // Valid from Initialize() on.
  const InstanceConfig& config() const;
  const Topics& topics() const;
  Clock& clock() const;

 protected:
  // Once, before any device hook. An error stops the connector (exit 1).
  virtual absl::Status Initialize() { return absl::OkStatus(); }
  // The device's current state as a JSON object (JsonObjectBuilder). An
  // error is published as UPDATE_ERROR and retried with backoff.
  virtual absl::StatusOr<std::string> ReadDevice(
      const DeviceConfig& device) = 0;
  // Applies command values (a JSON object, already checked to be one) and
  // returns the state after it, or "" to have ReadDevice() called for it.
  // Reject bad values with INVALID_ARGUMENT (-> INVALID_COMMAND); report an
  // unreachable device with UNAVAILABLE (-> DEVICE_OFFLINE); see
  // WithErrorCode() for your own codes.
  virtual absl::StatusOr<std::string> ApplyCommand(
      const DeviceConfig& device, const rapidjson::Value& values) = 0;
  // Whether the base polls this device (false for push-only devices that
  // call PublishState() themselves). Default: true.
  virtual bool PollDevice(const DeviceConfig& device) const { return true; }
  // Stop was requested: unblock hooks that may be waiting (close sockets).
  virtual void OnStopRequested() {}
  // After every worker has stopped, before `offline` is published.
  virtual void Cleanup() {}

 private:
  class Runtime;
  std::unique_ptr<Runtime> runtime_;
};

using ConnectorFactory = std::function<std::unique_ptr<Connector>()>;

// The whole main() of a connector process. Reads the environment (the
// process environment over the .env file at IOT2MQTT_ENV_FILE, default
// /app/.env): INSTANCE_NAME (required, a valid id), MQTT_* (see
// MqttSettings), CONNECTOR_TYPE, IOT2MQTT_INSTANCE_FILE, LOG_LEVEL; loads
// the instance config; connects with a MosquittoClient; runs the connector
// until SIGTERM or SIGINT. A bad
// environment or config exits 2 after one ERROR log line naming every
// problem. `name` is used for the log's `service` field
// ("connector-<name>").
int RunConnector(absl::string_view name, const ConnectorFactory& factory);

template <typename T>
int RunConnector(absl::string_view name) {
  return RunConnector(name, [] { return std::make_unique<T>(); });
}

}  // namespace iot2mqtt::sdk

#endif  // IOT2MQTT_SDK_CONNECTOR_H_
