#ifndef IOT2MQTT_SERVICES_DISCOVERY_DISCOVERY_SERVICE_H_
#define IOT2MQTT_SERVICES_DISCOVERY_DISCOVERY_SERVICE_H_

// DiscoveryService over the callback API: thin handlers over ToolExecutor,
// SessionManager and the config client.
//
// - ExecuteTool runs each tool on a thread of its own (at most
//   `max_concurrent_tools` at once); the thread finishes the call. A client
//   that cancels the call, or Shutdown(), cancels the tool (its process
//   group gets SIGTERM, then SIGKILL).
// - Unary bodies that call the config service run on a WorkPool.
// - WatchSession and WatchDevices are server streams that always send the
//   latest state (a slow reader skips intermediate states, never the last
//   one). The device list is re-read by one watcher thread when a session
//   stored devices, after our own writes, and every `devices_poll_interval`
//   (changes made by another writer).
// - Shutdown() (ServerOptions::before_shutdown) refuses new calls, cancels
//   running tools and sessions, and ends every stream with UNAVAILABLE
//   SHUTTING_DOWN.

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "iot2mqtt/discovery/v1/discovery_service.grpc.pb.h"
#include "services/common/work_pool.h"
#include "services/discovery/child_process.h"
#include "services/discovery/config_client.h"
#include "services/discovery/session_manager.h"
#include "services/discovery/tool_executor.h"

namespace iot2mqtt::discovery {

inline constexpr char kShuttingDown[] = "SHUTTING_DOWN";

struct DiscoveryServiceOptions {
  // Threads for unary work (config calls, cancellations).
  int worker_threads = 4;
  // ExecuteTool calls running at once (RESOURCE_EXHAUSTED TOO_MANY_TOOLS
  // beyond); the executor's max_concurrent.
  int max_concurrent_tools = 32;
  // WatchDevices re-reads the stored list this often.
  absl::Duration devices_poll_interval = absl::Seconds(5);
  // AddManualDevice's TCP reachability check.
  absl::Duration reachability_timeout = absl::Seconds(2);
};

// Whether `ip` is an IPv4 or IPv6 literal or a host name (at most 253
// characters of letters, digits, '-' and '.', labels of 1..63).
bool IsValidHost(absl::string_view ip);

// Whether a TCP connection to host:port succeeds within `timeout`
// (non-blocking connect; the first resolved address).
bool TcpReachable(const std::string& host, int port, absl::Duration timeout);

class DiscoveryServiceImpl final
    : public v1::DiscoveryService::CallbackService {
 public:
  // None is owned; all must outlive the service. The service registers
  // itself as `sessions`' devices-changed callback.
  DiscoveryServiceImpl(ToolExecutor& executor, SessionManager& sessions,
                       ConfigClient& config, DiscoveryServiceOptions options);
  ~DiscoveryServiceImpl() override;

  // See above. Idempotent; returns once every tool thread has ended.
  void Shutdown();

  grpc::ServerUnaryReactor* ExecuteTool(
      grpc::CallbackServerContext* context,
      const v1::ExecuteToolRequest* request,
      v1::ExecuteToolResponse* response) override;
  grpc::ServerUnaryReactor* StartDiscovery(
      grpc::CallbackServerContext* context,
      const v1::StartDiscoveryRequest* request,
      v1::StartDiscoveryResponse* response) override;
  grpc::ServerUnaryReactor* StartScan(grpc::CallbackServerContext* context,
                                      const v1::StartScanRequest* request,
                                      v1::StartScanResponse* response) override;
  grpc::ServerUnaryReactor* ListSessions(
      grpc::CallbackServerContext* context,
      const v1::ListSessionsRequest* request,
      v1::ListSessionsResponse* response) override;
  grpc::ServerUnaryReactor* GetSession(grpc::CallbackServerContext* context,
                                       const v1::SessionRequest* request,
                                       v1::DiscoverySession* response) override;
  grpc::ServerUnaryReactor* CancelSession(
      grpc::CallbackServerContext* context, const v1::SessionRequest* request,
      v1::DiscoverySession* response) override;
  grpc::ServerWriteReactor<v1::DiscoverySession>* WatchSession(
      grpc::CallbackServerContext* context,
      const v1::SessionRequest* request) override;
  grpc::ServerUnaryReactor* ListDevices(
      grpc::CallbackServerContext* context,
      const v1::ListDevicesRequest* request,
      v1::ListDevicesResponse* response) override;
  grpc::ServerWriteReactor<v1::DevicesSnapshot>* WatchDevices(
      grpc::CallbackServerContext* context,
      const v1::WatchDevicesRequest* request) override;
  grpc::ServerUnaryReactor* AddDevice(grpc::CallbackServerContext* context,
                                      const v1::AddDeviceRequest* request,
                                      v1::AddDeviceResponse* response) override;
  grpc::ServerUnaryReactor* DeleteDevice(
      grpc::CallbackServerContext* context,
      const v1::DeleteDeviceRequest* request,
      v1::DeleteDeviceResponse* response) override;
  grpc::ServerUnaryReactor* AddManualDevice(
      grpc::CallbackServerContext* context,
      const v1::AddManualDeviceRequest* request,
      v1::AddManualDeviceResponse* response) override;
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const v1::GetStatusRequest* request,
                                      v1::GetStatusResponse* response) override;

  // Shared with the stream reactors (defined in the .cc).
  class ToolCall;
  struct SessionStream;
  struct DevicesStream;
  struct DevicesWatch;

 private:
  struct ToolThread {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
    std::shared_ptr<CancelToken> cancel;
  };

  // Runs one ExecuteTool on its thread (lookup, declaration, run).
  absl::Status RunTool(const v1::ExecuteToolRequest& request,
                       v1::ExecuteToolResponse* response, CancelToken* cancel);
  absl::Status AddDeviceBody(const v1::AddDeviceRequest& request,
                             v1::AddDeviceResponse* response);
  absl::Status AddManualDeviceBody(const v1::AddManualDeviceRequest& request,
                                   v1::AddManualDeviceResponse* response);
  bool shutting_down();

  ToolExecutor& executor_;
  SessionManager& sessions_;
  ConfigClient& config_;
  const DiscoveryServiceOptions options_;
  common::WorkPool pool_;
  // The device-list watchers and their thread (outlives callbacks held by
  // the session manager).
  std::shared_ptr<DevicesWatch> devices_;
  // AddDevice / AddManualDevice one at a time (check, create, mark).
  absl::Mutex add_mu_;

  absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<ToolThread> tools_ ABSL_GUARDED_BY(mu_);
  std::map<SessionStream*, std::shared_ptr<SessionStream>> session_streams_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace iot2mqtt::discovery

#endif  // IOT2MQTT_SERVICES_DISCOVERY_DISCOVERY_SERVICE_H_
