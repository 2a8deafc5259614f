#ifndef IOT2MQTT_CONNECTORS_YEELIGHT_YEELIGHT_CONNECTOR_H_
#define IOT2MQTT_CONNECTORS_YEELIGHT_YEELIGHT_CONNECTOR_H_

// The Yeelight connector: one Client (one TCP connection, kept open) per
// enabled bulb. The SDK's polling reads each bulb with get_prop; between
// polls the bulb's own `props` notifications update the cached properties
// and the state is published at once. A bulb that cannot be reached at
// start gets INIT_ERROR once, then UPDATE_ERROR from the polling, and is
// retried with backoff, so it recovers by itself (upstream gave up on it
// until a restart). Commands are planned in full before anything is sent
// (yeelight_state.h), then sent in order; the response carries the state
// read back from the bulb.

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "connectors/yeelight/yeelight_client.h"
#include "connectors/yeelight/yeelight_state.h"
#include "iot2mqtt/sdk/connector.h"

namespace iot2mqtt::yeelight {

struct ConnectorSettings {
  absl::Duration request_timeout = absl::Seconds(5);  // Per bulb request.
  absl::Duration connect_timeout = absl::Seconds(3);
  absl::Duration reconnect_min = absl::Milliseconds(500);
  absl::Duration reconnect_max = absl::Seconds(30);
};

class YeelightConnector : public sdk::Connector {
 public:
  explicit YeelightConnector(ConnectorSettings settings = {});
  ~YeelightConnector() override;

 protected:
  absl::Status Initialize() override;
  absl::StatusOr<std::string> ReadDevice(
      const sdk::DeviceConfig& device) override;
  absl::StatusOr<std::string> ApplyCommand(
      const sdk::DeviceConfig& device, const rapidjson::Value& values) override;
  // Misconfigured bulbs (no ip) are reported once, not polled.
  bool PollDevice(const sdk::DeviceConfig& device) const override;
  void Cleanup() override;

 private:
  struct Bulb {
    BulbIdentity identity;
    CommandDefaults defaults;
    std::string address;       // "ip:port", for messages.
    std::string config_error;  // Why this bulb cannot be used, if it can't.
    std::unique_ptr<Client> client;

    absl::Mutex mu;
    Properties properties ABSL_GUARDED_BY(mu);
    // Whether `properties` came from a full read (a notification alone
    // holds only the changed keys).
    bool complete ABSL_GUARDED_BY(mu) = false;
    // Notifications so far, and the count at which each key last changed.
    int64_t notifications ABSL_GUARDED_BY(mu) = 0;
    std::map<std::string, int64_t> changed_at ABSL_GUARDED_BY(mu);
    // INIT_ERROR was published for a bulb not reached since the start.
    bool init_error_published ABSL_GUARDED_BY(mu) = false;
  };

  void OnNotification(Bulb* bulb, const Properties& update);
  void OnConnection(Bulb* bulb, bool connected);
  absl::StatusOr<Bulb*> FindBulb(const sdk::DeviceConfig& device);

  const ConnectorSettings settings_;
  // Filled by Initialize(), fixed afterwards.
  std::map<std::string, std::unique_ptr<Bulb>> bulbs_;
};

}  // namespace iot2mqtt::yeelight

#endif  // IOT2MQTT_CONNECTORS_YEELIGHT_YEELIGHT_CONNECTOR_H_
