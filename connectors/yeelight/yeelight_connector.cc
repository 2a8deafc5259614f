#include "connectors/yeelight/yeelight_connector.h"

#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "iot2mqtt/sdk/log.h"

namespace iot2mqtt::yeelight {
namespace {

// Every property the connector reads; bulbs answer "" for those they lack.
std::vector<std::string> AllProperties() {
  std::vector<std::string> names = StandardProperties();
  for (const std::string& name : BackgroundProperties()) names.push_back(name);
  return names;
}

absl::Status Annotate(const absl::Status& status, absl::string_view address) {
  return absl::Status(status.code(),
                      absl::StrCat("bulb ", address, ": ", status.message()));
}

}  // namespace

YeelightConnector::YeelightConnector(ConnectorSettings settings)
    : settings_(std::move(settings)) {}

YeelightConnector::~YeelightConnector() {
  // The clients' threads call back into their bulbs: stop them first.
  for (auto& [id, bulb] : bulbs_) bulb->client.reset();
}

absl::Status YeelightConnector::Initialize() {
  const sdk::InstanceConfig& instance = config();
  // Upstream keeps these at the top level and in "connection"; the setup
  // flow's instance step calls the block "config".
  const sdk::ConfigObject settings = instance.settings();
  const sdk::ConfigObject nested = instance.document.GetObject("config");
  auto setting_string = [&](const char* key, const char* fallback) {
    return settings.Has(key) ? settings.GetString(key, fallback)
                             : nested.GetString(key, fallback);
  };
  auto setting_int = [&](const char* key, int64_t fallback) {
    return settings.Has(key) ? settings.GetInt(key, fallback)
                             : nested.GetInt(key, fallback);
  };
  CommandDefaults defaults;
  std::string effect =
      absl::AsciiStrToLower(setting_string("effect_type", "smooth"));
  if (effect != "smooth" && effect != "sudden") {
    IOT2MQTT_LOG(WARNING).With("effect_type", effect)
        << "unknown effect_type, using smooth";
    effect = "smooth";
  }
  defaults.transition.smooth = effect == "smooth";
  int64_t duration = setting_int("duration", 300);
  if (duration < kMinDurationMs || duration > 60 * 60 * 1000) {
    IOT2MQTT_LOG(WARNING).With("duration", duration)
        << "duration out of range (30..3600000 ms), using 300";
    duration = 300;
  }
  defaults.transition.duration_ms = static_cast<int>(duration);

  for (const sdk::DeviceConfig& device : instance.devices) {
    if (!device.enabled) continue;
    auto bulb = std::make_unique<Bulb>();
    bulb->identity.device_id = device.device_id;
    bulb->identity.name =
        device.entry.GetString("name", device.entry.GetString("friendly_name"));
    bulb->identity.model = device.model;
    bulb->identity.fw_ver = device.entry.GetString("fw_ver");
    bulb->defaults = defaults;
    bulb->defaults.auto_on = device.entry.GetBool("auto_on", true);
    std::string host = device.entry.GetString("ip");
    if (host.empty()) host = device.entry.GetString("host");
    host = std::string(absl::StripAsciiWhitespace(host));
    int64_t port = device.entry.GetInt("port", kDefaultControlPort);
    bulb->address = absl::StrCat(host, ":", port);
    if (host.empty()) {
      bulb->config_error = "no \"ip\" configured";
    } else if (port < 1 || port > 65535) {
      bulb->config_error = absl::StrCat("port ", port, " is not 1..65535");
    }
    if (!bulb->config_error.empty()) {
      IOT2MQTT_LOG(ERROR)
              .With("device_id", device.device_id)
              .With("error", bulb->config_error)
          << "bulb not usable";
      PublishError(device.device_id, sdk::error_codes::kInitError,
                   absl::StrCat("bulb \"", device.device_id,
                                "\" is not usable: ", bulb->config_error),
                   sdk::ErrorSeverity::kError)
          .IgnoreError();
      bulbs_[device.device_id] = std::move(bulb);
      continue;
    }
    ClientOptions options;
    options.host = host;
    options.port = static_cast<int>(port);
    options.connect_timeout = settings_.connect_timeout;
    options.request_timeout = settings_.request_timeout;
    options.reconnect_min = settings_.reconnect_min;
    options.reconnect_max = settings_.reconnect_max;
    // An open connection is how notifications arrive.
    options.keep_connected = true;
    options.log_name = device.device_id;
    Bulb* raw = bulb.get();
    options.on_notification = [this, raw](const Properties& update) {
      OnNotification(raw, update);
    };
    options.on_connection = [this, raw](bool connected) {
      OnConnection(raw, connected);
    };
    bulbs_[device.device_id] = std::move(bulb);
    raw->client = std::make_unique<Client>(std::move(options));
  }
  IOT2MQTT_LOG(INFO).With("bulbs", static_cast<int64_t>(bulbs_.size()))
      << "yeelight connector initialised";
  return absl::OkStatus();
}

absl::StatusOr<YeelightConnector::Bulb*> YeelightConnector::FindBulb(
    const sdk::DeviceConfig& device) {
  auto it = bulbs_.find(device.device_id);
  if (it == bulbs_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no bulb \"", device.device_id, "\""));
  }
  Bulb* bulb = it->second.get();
  if (!bulb->config_error.empty() || bulb->client == nullptr) {
    return sdk::WithErrorCode(absl::FailedPreconditionError(absl::StrCat(
                                  "bulb \"", device.device_id,
                                  "\" is not usable: ", bulb->config_error)),
                              sdk::error_codes::kInitError);
  }
  return bulb;
}

absl::StatusOr<std::string> YeelightConnector::ReadDevice(
    const sdk::DeviceConfig& device) {
  absl::StatusOr<Bulb*> found = FindBulb(device);
  if (!found.ok()) return found.status();
  Bulb* bulb = *found;
  int64_t notifications_before;
  {
    absl::MutexLock lock(&bulb->mu);
    notifications_before = bulb->notifications;
  }
  absl::StatusOr<Properties> read =
      bulb->client->GetProperties(AllProperties());
  if (!read.ok()) {
    absl::Status status = Annotate(read.status(), bulb->address);
    bool first_failure = false;
    {
      absl::MutexLock lock(&bulb->mu);
      if (!bulb->complete && !bulb->init_error_published) {
        bulb->init_error_published = true;
        first_failure = true;
      }
    }
    if (first_failure) {
      // As upstream reported a bulb it could not set up; unlike upstream,
      // the polling keeps retrying it.
      PublishError(device.device_id, sdk::error_codes::kInitError,
                   absl::StrCat("cannot reach the bulb at start (",
                                status.message(), "); retrying"),
                   sdk::ErrorSeverity::kError)
          .IgnoreError();
    }
    return status;
  }
  absl::MutexLock lock(&bulb->mu);
  for (auto& [name, value] : *read) {
    // A notification that arrived while the read was under way is at least
    // as fresh as the read.
    auto changed = bulb->changed_at.find(name);
    if (changed != bulb->changed_at.end() &&
        changed->second > notifications_before) {
      continue;
    }
    bulb->properties[name] = std::move(value);
  }
  bulb->complete = true;
  return StateJson(bulb->properties, bulb->identity, clock().Now());
}

absl::StatusOr<std::string> YeelightConnector::ApplyCommand(
    const sdk::DeviceConfig& device, const rapidjson::Value& values) {
  absl::StatusOr<Bulb*> found = FindBulb(device);
  if (!found.ok()) return found.status();
  Bulb* bulb = *found;
  bool complete;
  {
    absl::MutexLock lock(&bulb->mu);
    complete = bulb->complete;
  }
  if (!complete) {
    // Relative values and auto-on need the current state.
    absl::StatusOr<std::string> state = ReadDevice(device);
    if (!state.ok()) return state.status();
  }
  Properties current;
  {
    absl::MutexLock lock(&bulb->mu);
    current = bulb->properties;
  }
  absl::StatusOr<std::vector<Request>> plan =
      PlanCommand(values, current, bulb->defaults);
  if (!plan.ok()) return plan.status();  // INVALID_COMMAND, nothing sent.
  for (const Request& request : *plan) {
    absl::StatusOr<std::vector<std::string>> result =
        bulb->client->Call(request);
    if (result.ok()) continue;
    absl::Status status = Annotate(
        absl::Status(
            result.status().code(),
            absl::StrCat(request.method, ": ", result.status().message())),
        bulb->address);
    if (absl::IsFailedPrecondition(result.status())) {
      // The bulb refused: a command error, not an offline device.
      return sdk::WithErrorCode(status, sdk::error_codes::kCommandError);
    }
    return status;
  }
  return std::string();  // Read the bulb again for the response.
}

void YeelightConnector::OnNotification(Bulb* bulb, const Properties& update) {
  std::string state;
  {
    absl::MutexLock lock(&bulb->mu);
    MergeProperties(update, &bulb->properties);
    ++bulb->notifications;
    for (const auto& [name, value] : update) {
      bulb->changed_at[name] = bulb->notifications;
    }
    if (bulb->complete) {
      state = StateJson(bulb->properties, bulb->identity, clock().Now());
    }
  }
  if (state.empty()) {
    // Only part of the state is known yet: read all of it.
    RequestRefresh(bulb->identity.device_id);
    return;
  }
  absl::Status status = PublishState(bulb->identity.device_id, state);
  if (!status.ok()) {
    IOT2MQTT_LOG(WARNING)
            .With("device_id", bulb->identity.device_id)
            .With("error", status.message())
        << "publishing notified state failed";
  }
}

void YeelightConnector::OnConnection(Bulb* bulb, bool connected) {
  if (!connected) return;
  bool known;
  {
    absl::MutexLock lock(&bulb->mu);
    known = bulb->complete;
  }
  // Back after a drop: changes made meanwhile came with no notification.
  if (known) RequestRefresh(bulb->identity.device_id);
}

bool YeelightConnector::PollDevice(const sdk::DeviceConfig& device) const {
  auto it = bulbs_.find(device.device_id);
  return it != bulbs_.end() && it->second->config_error.empty();
}

void YeelightConnector::Cleanup() {
  for (auto& [id, bulb] : bulbs_) bulb->client.reset();
}

}  // namespace iot2mqtt::yeelight
