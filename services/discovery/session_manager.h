#ifndef IOT2MQTT_SERVICES_DISCOVERY_SESSION_MANAGER_H_
#define IOT2MQTT_SERVICES_DISCOVERY_SESSION_MANAGER_H_

// Discovery sessions: one child process per session running the
// connector's declared discovery tool (see the proto for the line
// protocol), devices stored through a DeviceStore as they arrive, watchers
// notified on every change, a timeout, cancellation, and retention of
// finished sessions. No gRPC.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "iot2mqtt/config/v1/config_service.pb.h"
#include "iot2mqtt/discovery/v1/discovery_service.pb.h"
#include "services/discovery/device_identity.h"
#include "services/discovery/tool_executor.h"

namespace iot2mqtt::discovery {

using DiscoverySession = ::iot2mqtt::discovery::v1::DiscoverySession;

// Where discovered devices live (the config service; a fake in unit tests).
class DeviceStore {
 public:
  virtual ~DeviceStore() = default;
  virtual absl::StatusOr<std::vector<DiscoveredDevice>> Record(
      const std::string& integration,
      const std::vector<DiscoveredDevice>& devices, bool scan_completed) = 0;
};

// What a session needs of a connector (from the config service's catalogue
// plus the connectors directory).
struct ConnectorTooling {
  std::string connector_dir;  // The connector's directory.
  std::string setup_json;     // Its setup.json text.
};

class ConnectorSource {
 public:
  virtual ~ConnectorSource() = default;
  // NOT_FOUND INTEGRATION_NOT_FOUND for an unknown connector.
  virtual absl::StatusOr<ConnectorTooling> Lookup(
      const std::string& connector) = 0;
};

struct SessionManagerOptions {
  absl::Duration default_timeout = absl::Seconds(30);
  absl::Duration max_timeout = absl::Seconds(300);
  // Finished sessions are forgotten this long after they finished.
  absl::Duration retention = absl::Minutes(10);
  int max_log_lines = 200;
  // More sessions running at once: RESOURCE_EXHAUSTED TOO_MANY_SESSIONS.
  int max_running = 8;
  // While a tool reports no progress of its own, watchers get the progress
  // derived from the elapsed time this often (when it changed).
  absl::Duration progress_tick = absl::Seconds(1);
};

class SessionManager {
 public:
  // `executor` resolves entries and builds environments; `store` and
  // `connectors` must outlive the manager.
  SessionManager(SessionManagerOptions options, ToolExecutor* executor,
                 DeviceStore* store, ConnectorSource* connectors);
  // Cancels every running session and joins their threads.
  ~SessionManager();

  // Starts a session for `connector` (timeout 0 = declared, else default)
  // or returns the one already running for it. FAILED_PRECONDITION
  // DISCOVERY_NOT_SUPPORTED; INVALID_ARGUMENT INVALID_TIMEOUT; the
  // ConnectorSource and ResolveEntry errors; RESOURCE_EXHAUSTED.
  absl::StatusOr<DiscoverySession> Start(const std::string& connector,
                                         absl::Duration timeout);

  // NOT_FOUND SESSION_NOT_FOUND ("Invalid session ID").
  absl::StatusOr<DiscoverySession> Get(const std::string& session_id);
  std::vector<DiscoverySession> List();
  std::vector<DiscoverySession> Running();
  // Ends a running session as `cancelled` and returns its final state.
  absl::StatusOr<DiscoverySession> Cancel(const std::string& session_id);

  // Calls `on_update` with the session now and after every change, from the
  // session's thread (keep it short; it must not call back into the
  // manager). The last call carries the final state. Returns a handle for
  // Unwatch; NOT_FOUND for an unknown session.
  using Watcher = std::function<void(const DiscoverySession&)>;
  absl::StatusOr<int64_t> Watch(const std::string& session_id,
                                Watcher on_update);
  void Unwatch(int64_t handle);

  // Forgets finished sessions older than the retention (also done on every
  // Start).
  void Sweep();

  // Called after every store write with the devices just recorded (the
  // service uses it to wake its device-list watchers).
  void SetDevicesChangedCallback(std::function<void()> callback);

 private:
  struct Session;
  void Run(std::shared_ptr<Session> session);
  // The ticker thread: publishes derived progress of running sessions.
  void Tick();

  SessionManagerOptions options_;
  ToolExecutor* executor_;
  DeviceStore* store_;
  ConnectorSource* connectors_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Session>> sessions_
      ABSL_GUARDED_BY(mu_);
  std::map<int64_t, std::pair<std::string, Watcher>> watchers_
      ABSL_GUARDED_BY(mu_);
  int64_t next_watch_ ABSL_GUARDED_BY(mu_) = 1;
  std::function<void()> devices_changed_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread ticker_;
};

}  // namespace iot2mqtt::discovery

#endif  // IOT2MQTT_SERVICES_DISCOVERY_SESSION_MANAGER_H_
