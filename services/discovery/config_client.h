#ifndef IOT2MQTT_SERVICES_DISCOVERY_CONFIG_CLIENT_H_
#define IOT2MQTT_SERVICES_DISCOVERY_CONFIG_CLIENT_H_

// The discovery service's client of the config service: the connector
// catalogue (ConnectorSource), the discovered-device store (DeviceStore) and
// instance creation. Every call has a deadline and carries the current
// correlation id (`x-correlation-id`); errors keep their google.rpc.Status
// details, so the config service's reasons reach our callers unchanged.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "iot2mqtt/config/v1/config_service.grpc.pb.h"
#include "services/discovery/session_manager.h"

namespace iot2mqtt::discovery {

inline constexpr char kIntegrationNotFound[] = "INTEGRATION_NOT_FOUND";
inline constexpr char kInvalidConnectorName[] = "INVALID_CONNECTOR_NAME";

// `^[a-z0-9][a-z0-9_-]{0,62}$` (connector names and instance ids).
bool IsValidName(absl::string_view name);

// A channel to `address` ("127.0.0.1:50051") that reconnects quickly after
// the config service restarts.
std::shared_ptr<grpc::Channel> MakeConfigChannel(const std::string& address);

struct ConfigClientOptions {
  // IOT2MQTT_CONNECTORS_DIR: a connector's directory is <dir>/<name>.
  std::string connectors_dir;
  // Per call (instance creation gets twice this: it writes and fsyncs).
  absl::Duration deadline = absl::Seconds(5);
};

// The stored list with its last completed scan ("" = never).
struct DiscoveredDeviceList {
  std::vector<DiscoveredDevice> devices;
  std::string last_scan;
};

class ConfigClient final : public DeviceStore, public ConnectorSource {
 public:
  ConfigClient(std::shared_ptr<grpc::Channel> channel,
               ConfigClientOptions options);

  // DeviceStore: RecordDiscoveredDevices; the stored records in order.
  absl::StatusOr<std::vector<DiscoveredDevice>> Record(
      const std::string& integration,
      const std::vector<DiscoveredDevice>& devices,
      bool scan_completed) override;

  // ConnectorSource: the connector's directory and setup.json text.
  // INVALID_ARGUMENT INVALID_CONNECTOR_NAME (checked before anything else);
  // NOT_FOUND INTEGRATION_NOT_FOUND ("setup.json not found for <x>") when
  // the catalogue has no such connector or it has no setup.json.
  absl::StatusOr<ConnectorTooling> Lookup(
      const std::string& connector) override;

  // The raw setup.json text (GetConnectorSetup; config's own errors).
  absl::StatusOr<std::string> GetConnectorSetup(const std::string& connector);

  // The stored discovered devices ("" = every integration).
  absl::StatusOr<DiscoveredDeviceList> ListDiscoveredDevices(
      const std::string& integration = "");
  // NOT_FOUND DEVICE_NOT_FOUND from the config service.
  absl::StatusOr<DiscoveredDevice> MarkDiscoveredDeviceAdded(
      const std::string& device_id, const std::string& instance_id);
  absl::Status DeleteDiscoveredDevice(const std::string& device_id);

  // POST /api/instances with `instance_json` as the body; the config
  // service's result JSON. Its errors (ALREADY_EXISTS INSTANCE_ID_TAKEN,
  // INVALID_ARGUMENT ...) come back as they are.
  absl::StatusOr<std::string> CreateInstance(const std::string& instance_json);

  // Whether the config service answers at all (for the health probe): any
  // answer but UNAVAILABLE / DEADLINE_EXCEEDED counts.
  absl::Status Ping();

 private:
  // Deadline and correlation id of one call.
  void Prepare(grpc::ClientContext& context, absl::Duration deadline) const;

  std::unique_ptr<config::v1::ConfigService::Stub> stub_;
  const ConfigClientOptions options_;
};

}  // namespace iot2mqtt::discovery

#endif  // IOT2MQTT_SERVICES_DISCOVERY_CONFIG_CLIENT_H_
