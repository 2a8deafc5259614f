#ifndef IOT2MQTT_SERVICES_MQTT_BRIDGE_SETTINGS_SOURCE_H_
#define IOT2MQTT_SERVICES_MQTT_BRIDGE_SETTINGS_SOURCE_H_

// Where the bridge's broker settings come from, and how it learns that they
// changed. No gRPC here: the config service's implementation is
// GrpcConfigClient (config_client.h).

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace iot2mqtt::mqtt_bridge {

// UNAVAILABLE: the settings source (the config service) did not answer.
inline constexpr char kConfigUnavailable[] = "CONFIG_UNAVAILABLE";

// The broker settings the bridge follows (config's MqttSettings without the
// values it doesn't use: qos and retain).
struct BrokerSettings {
  std::string host;  // Empty: not configured.
  int port = 1883;
  std::string username;
  std::string password;
  std::string base_topic = "IoT2mqtt";
  std::string client_prefix = "iot2mqtt";
  int keepalive = 60;

  bool operator==(const BrokerSettings& o) const {
    return host == o.host && port == o.port && username == o.username &&
           password == o.password && base_topic == o.base_topic &&
           client_prefix == o.client_prefix && keepalive == o.keepalive;
  }
  bool operator!=(const BrokerSettings& o) const { return !(*this == o); }
};

// One event of the change stream.
struct SettingsChange {
  // Where to resume after this event; empty when the event has none.
  std::string cursor;
  // Changes may have been missed: read the settings again.
  bool resync = false;
  // The MQTT settings changed: read them again.
  bool mqtt = false;
};

class SettingsSource {
 public:
  virtual ~SettingsSource() = default;

  // The stored settings with the real password (blocking; thread-safe).
  // UNAVAILABLE CONFIG_UNAVAILABLE when the source does not answer.
  virtual absl::StatusOr<BrokerSettings> Resolve() = 0;

  // Streams the changes after `after` into `on_change` until the stream
  // ends, `on_change` returns false (the stream is then cancelled) or
  // CancelWatch() is called; returns why the stream ended. When `after` is
  // empty or no longer known to the source, the first event is a resync,
  // sent once the stream is in place: settings resolved after it reflect
  // every change the stream does not deliver.
  virtual absl::Status Watch(
      const std::string& after,
      const std::function<bool(const SettingsChange&)>& on_change) = 0;

  // Ends a running Watch() and makes later ones return at once.
  virtual void CancelWatch() = 0;

  // Where the settings come from, for logs and messages ("127.0.0.1:50051").
  virtual std::string Describe() const = 0;
};

}  // namespace iot2mqtt::mqtt_bridge

#endif  // IOT2MQTT_SERVICES_MQTT_BRIDGE_SETTINGS_SOURCE_H_
