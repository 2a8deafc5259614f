#include "connectors/demo/demo_connector.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "iot2mqtt/sdk/log.h"

namespace iot2mqtt::connectors::demo {
namespace {

double Round1(double x) { return std::round(x * 10) / 10; }

// An integer JSON value (7 or 7.0), or nothing.
bool IntegerOf(const rapidjson::Value& v, int64_t* out) {
  if (v.IsInt64()) {
    *out = v.GetInt64();
    return true;
  }
  if (v.IsDouble() && std::floor(v.GetDouble()) == v.GetDouble() &&
      std::fabs(v.GetDouble()) < 1e15) {
    *out = static_cast<int64_t>(v.GetDouble());
    return true;
  }
  return false;
}

absl::Status IntInRange(const rapidjson::Value& v, absl::string_view key,
                        int64_t min, int64_t max, int64_t* out) {
  if (!IntegerOf(v, out) || *out < min || *out > max) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", key, "\" must be an integer from ", min, " to ", max));
  }
  return absl::OkStatus();
}

}  // namespace

Kind KindOf(const sdk::DeviceConfig& device) {
  std::string type =
      absl::AsciiStrToLower(device.entry.GetString("type", device.model));
  absl::string_view name = type;
  absl::ConsumePrefix(&name, "demo.");
  if (name == "light" || name == "dimmable_light") return Kind::kLight;
  if (name == "climate" || name == "sensor" || name == "climate_sensor") {
    return Kind::kClimate;
  }
  if (name == "switch" || name == "plug") return Kind::kSwitch;
  if (name == "motion" || name == "motion_sensor") return Kind::kMotion;
  return Kind::kUnknown;
}

DemoConnector::DemoConnector() : random_(std::random_device{}()) {}

DemoConnector::~DemoConnector() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (motion_thread_.joinable()) motion_thread_.join();
}

absl::Status DemoConnector::Initialize() {
  sdk::ConfigObject settings = config().settings();
  motion_mean_ = absl::Seconds(
      std::clamp(settings.GetDouble("motion_mean_interval", 30), 0.2, 86400.0));
  motion_hold_ = absl::Seconds(
      std::clamp(settings.GetDouble("motion_hold", 5), 0.1, 3600.0));
  bool any_motion = false;
  absl::MutexLock lock(&mu_);
  std::uniform_real_distribution<double> unit(0, 1);
  const absl::Time now = absl::Now();
  for (const sdk::DeviceConfig& config : config().devices) {
    if (!config.enabled) continue;
    Device device;
    device.kind = KindOf(config);
    device.comfort_temperature = Round1(19.5 + 4 * unit(random_));
    device.comfort_humidity = Round1(40 + 15 * unit(random_));
    device.temperature = device.comfort_temperature;
    device.humidity = device.comfort_humidity;
    if (device.kind == Kind::kLight) device.power = true;
    if (device.kind == Kind::kMotion) {
      device.next_event = now + NextMotionDelay();
      any_motion = true;
    }
    if (device.kind == Kind::kUnknown) {
      IOT2MQTT_LOG(WARNING).With("device_id", config.device_id)
          << "unknown demo device type; expected light, climate, switch or "
             "motion";
    }
    devices_[config.device_id] = device;
  }
  if (any_motion) motion_thread_ = std::thread([this] { MotionLoop(); });
  return absl::OkStatus();
}

absl::Duration DemoConnector::NextMotionDelay() {
  // Exponential waiting times (a Poisson process), kept within [mean / 10,
  // 10 x mean] so that the demo neither floods nor goes quiet.
  const double mean = absl::ToDoubleSeconds(motion_mean_);
  std::exponential_distribution<double> wait(1.0 / mean);
  double seconds = std::clamp(wait(random_), mean / 10, 10 * mean);
  return absl::Seconds(seconds);
}

std::string DemoConnector::StateOf(const Device& device) const {
  sdk::JsonObjectBuilder state;
  switch (device.kind) {
    case Kind::kLight:
      state.Set("power", device.power)
          .Set("brightness", device.brightness)
          .Set("color_temp", device.color_temp);
      break;
    case Kind::kClimate:
      state.Set("temperature", device.temperature)
          .Set("humidity", device.humidity);
      break;
    case Kind::kSwitch:
      state.Set("power", device.power);
      break;
    case Kind::kMotion:
      state.Set("motion", device.motion);
      if (device.last_motion == absl::InfinitePast()) {
        state.SetNull("last_motion");
      } else {
        state.Set("last_motion", sdk::FormatTimestamp(device.last_motion));
      }
      break;
    case Kind::kUnknown:
      break;
  }
  return state.Build();
}

void DemoConnector::Drift(Device& device) {
  std::normal_distribution<double> temperature_noise(0, 0.08);
  std::normal_distribution<double> humidity_noise(0, 0.3);
  device.temperature = Round1(
      std::clamp(device.temperature +
                     0.05 * (device.comfort_temperature - device.temperature) +
                     temperature_noise(random_),
                 15.0, 30.0));
  device.humidity = Round1(std::clamp(
      device.humidity + 0.05 * (device.comfort_humidity - device.humidity) +
          humidity_noise(random_),
      25.0, 75.0));
}

absl::StatusOr<std::string> DemoConnector::ReadDevice(
    const sdk::DeviceConfig& config) {
  absl::MutexLock lock(&mu_);
  auto it = devices_.find(config.device_id);
  if (it == devices_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no demo device \"", config.device_id, "\""));
  }
  Device& device = it->second;
  if (device.kind == Kind::kUnknown) {
    return absl::FailedPreconditionError(
        absl::StrCat("unknown demo device type \"",
                     config.entry.GetString("type", config.model),
                     "\" (expected light, climate, switch or motion)"));
  }
  if (device.kind == Kind::kClimate) Drift(device);
  return StateOf(device);
}

absl::StatusOr<std::string> DemoConnector::ApplyCommand(
    const sdk::DeviceConfig& config, const rapidjson::Value& values) {
  absl::MutexLock lock(&mu_);
  auto it = devices_.find(config.device_id);
  if (it == devices_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no demo device \"", config.device_id, "\""));
  }
  Device& device = it->second;
  Device next = device;
  for (const auto& member : values.GetObject()) {
    std::string key(member.name.GetString(), member.name.GetStringLength());
    const rapidjson::Value& v = member.value;
    switch (device.kind) {
      case Kind::kClimate:
      case Kind::kMotion:
        return absl::InvalidArgumentError(
            "this device is a sensor: it has no settable values");
      case Kind::kUnknown:
        return absl::FailedPreconditionError("unknown demo device type");
      case Kind::kSwitch:
      case Kind::kLight:
        break;
    }
    int64_t number = 0;
    if (key == "power") {
      if (!v.IsBool()) {
        return absl::InvalidArgumentError("\"power\" must be true or false");
      }
      next.power = v.GetBool();
    } else if (key == "brightness" && device.kind == Kind::kLight) {
      if (absl::Status s = IntInRange(v, key, 1, 100, &number); !s.ok()) {
        return s;
      }
      next.brightness = static_cast<int>(number);
    } else if (key == "color_temp" && device.kind == Kind::kLight) {
      if (absl::Status s = IntInRange(v, key, 2700, 6500, &number); !s.ok()) {
        return s;
      }
      next.color_temp = static_cast<int>(number);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown value \"", key, "\" (this device has: ",
          device.kind == Kind::kLight ? "power, brightness, color_temp"
                                      : "power",
          ")"));
    }
  }
  device = next;
  return StateOf(device);
}

void DemoConnector::MotionLoop() {
  struct Out {
    std::string device_id;
    std::string state;
    bool event = false;
    std::string data;
  };
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    absl::Time earliest = absl::InfiniteFuture();
    for (const auto& [id, device] : devices_) {
      if (device.kind != Kind::kMotion) continue;
      earliest = std::min({earliest, device.next_event, device.motion_off});
    }
    mu_.AwaitWithDeadline(absl::Condition(&stop_), earliest);
    if (stop_) break;
    const absl::Time now = absl::Now();
    std::vector<Out> out;
    for (auto& [id, device] : devices_) {
      if (device.kind != Kind::kMotion) continue;
      if (device.motion_off <= now) {
        device.motion = false;
        device.motion_off = absl::InfiniteFuture();
        out.push_back(Out{id, StateOf(device), false, ""});
      }
      if (device.next_event <= now) {
        device.motion = true;
        device.last_motion = now;
        device.motion_off = now + motion_hold_;
        device.next_event = now + NextMotionDelay();
        const sdk::DeviceConfig* config = this->config().FindDevice(id);
        std::string zone =
            config == nullptr
                ? id
                : config->entry.GetString("zone",
                                          config->entry.GetString("name", id));
        out.push_back(
            Out{id, StateOf(device), true,
                sdk::JsonObjectBuilder()
                    .Set("zone", zone)
                    .Set("hold_s", absl::ToDoubleSeconds(motion_hold_))
                    .Build()});
      }
    }
    // Publish without holding the lock: the SDK may take its own.
    mu_.Unlock();
    for (const Out& o : out) {
      if (o.event) {
        PublishEvent(o.device_id, "motion_detected", o.data).IgnoreError();
      }
      PublishState(o.device_id, o.state).IgnoreError();
    }
    mu_.Lock();
  }
}

void DemoConnector::OnStopRequested() {
  absl::MutexLock lock(&mu_);
  stop_ = true;
}

void DemoConnector::Cleanup() {
  if (motion_thread_.joinable()) motion_thread_.join();
}

}  // namespace iot2mqtt::connectors::demo
