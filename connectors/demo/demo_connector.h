#ifndef IOT2MQTT_CONNECTORS_DEMO_DEMO_CONNECTOR_H_
#define IOT2MQTT_CONNECTORS_DEMO_DEMO_CONNECTOR_H_

// Virtual devices, chosen per device by its "type" (or "model"):
//
//   light    {"power": bool, "brightness": 1..100, "color_temp": 2700..6500 K}
//   climate  {"temperature": °C, "humidity": %}  read-only, drifts slowly
//            within 15..30 °C and 25..75 % around a per-device comfort point
//   switch   {"power": bool}
//   motion   {"motion": bool, "last_motion": timestamp or null}  read-only;
//            emits `motion_detected` events at random intervals (mean
//            `motion_mean_interval` s, default 30) and reports motion for
//            `motion_hold` s (default 5)
//
// Settings (top level or under "connection"): motion_mean_interval,
// motion_hold (seconds; numbers or numeric strings).

#include <map>
#include <random>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "iot2mqtt/sdk/connector.h"

namespace iot2mqtt::connectors::demo {

enum class Kind { kLight, kClimate, kSwitch, kMotion, kUnknown };
Kind KindOf(const sdk::DeviceConfig& device);

class DemoConnector final : public sdk::Connector {
 public:
  DemoConnector();
  ~DemoConnector() override;

 protected:
  absl::Status Initialize() override;
  absl::StatusOr<std::string> ReadDevice(
      const sdk::DeviceConfig& device) override;
  absl::StatusOr<std::string> ApplyCommand(
      const sdk::DeviceConfig& device, const rapidjson::Value& values) override;
  void OnStopRequested() override;
  void Cleanup() override;

 private:
  struct Device {
    Kind kind = Kind::kUnknown;
    bool power = false;
    int brightness = 80;
    int color_temp = 4000;
    double temperature = 21.5;
    double humidity = 45;
    double comfort_temperature = 21.5;
    double comfort_humidity = 45;
    bool motion = false;
    absl::Time last_motion = absl::InfinitePast();
    // Motion schedule (event thread).
    absl::Time next_event = absl::InfiniteFuture();
    absl::Time motion_off = absl::InfiniteFuture();
  };

  std::string StateOf(const Device& device) const;
  void Drift(Device& device) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Time until the next motion event.
  absl::Duration NextMotionDelay() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The motion event loop (its own thread; publishes from there).
  void MotionLoop();

  absl::Duration motion_mean_ = absl::Seconds(30);
  absl::Duration motion_hold_ = absl::Seconds(5);

  absl::Mutex mu_;
  std::map<std::string, Device> devices_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 random_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread motion_thread_;
};

}  // namespace iot2mqtt::connectors::demo

#endif  // IOT2MQTT_CONNECTORS_DEMO_DEMO_CONNECTOR_H_
