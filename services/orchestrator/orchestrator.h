#ifndef IOT2MQTT_SERVICES_ORCHESTRATOR_ORCHESTRATOR_H_
#define IOT2MQTT_SERVICES_ORCHESTRATOR_ORCHESTRATOR_H_

// The orchestrator's core (no gRPC): the reconcile loop, the watchdog and
// the lifecycle actions behind the RPCs.
//
// Desired state: the enabled instances of the config service, minus those
// the user stopped (persisted in <data>/runtime/orchestrator_state.json so
// they stay stopped across restarts). Actual state: runtime.List(). A full
// pass runs at start, every `reconcile_interval`, and right after any
// instance, settings or catalogue change event (WatchChanges, resumed from
// the last cursor after a reconnect). For each desired instance it builds a
// RuntimeSpec (spec_builder.h) and converges:
//   missing                      → Prepare + Create
//   config_hash differs          → Remove + Create
//   disabled / stopped by user   → Stop
//   runtime without an instance  → Remove + clear its retained topics +
//                                  remove its secrets file
// Runtimes whose hash matches are adopted untouched.
//
// Watchdog: every `poll_interval` the runtimes are listed; a desired-running
// runtime that exited is started again after a backoff (initial, doubling,
// capped); `crash_loop_restarts` crashes within `crash_loop_window` declare
// a crash loop: no more restarts, the runtime kept stopped, its last exit
// code and last 20 log lines kept (ListInstanceRuntimes) until
// Start/Retry/Restart or a config change. Docker restarts crashed
// containers itself (unless-stopped): there crashes are counted from
// RestartCount growth and a crash loop stops the container.
//
// Every runtime call runs on the orchestrator's threads or on the caller's
// (a worker, never a gRPC callback thread); mutating calls are serialized.
// Transitions are logged (instance, from, to, why) and counted:
//   iot_orchestrator_transitions_total{to}          counter
//   iot_orchestrator_actions_total{action,outcome}  counter
//   iot_orchestrator_runtimes{state}                gauge
//   iot_orchestrator_crash_loops                    gauge
//   iot_orchestrator_reconcile_seconds              histogram
//
// Errors: NOT_FOUND INSTANCE_NOT_FOUND / RUNTIME_NOT_FOUND; INVALID_ARGUMENT
// INVALID_INSTANCE_ID / INVALID_CONNECTOR_NAME; FAILED_PRECONDITION
// INSTANCE_DISABLED; UNAVAILABLE CONFIG_UNAVAILABLE; the runtime's reasons.

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prometheus/registry.h"
#include "services/orchestrator/orchestrator_deps.h"
#include "services/orchestrator/runtime.h"
#include "services/orchestrator/spec_builder.h"

namespace iot2mqtt::orchestrator {

inline constexpr char kInstanceNotFound[] = "INSTANCE_NOT_FOUND";
inline constexpr char kRuntimeNotFound[] = "RUNTIME_NOT_FOUND";
inline constexpr char kInstanceDisabled[] = "INSTANCE_DISABLED";
inline constexpr char kConfigUnavailable[] = "CONFIG_UNAVAILABLE";

struct OrchestratorOptions {
  std::string data_dir;
  std::string connectors_dir;  // Default <data>/connectors.
  std::string connector_log_level = "INFO";
  absl::Duration reconcile_interval = absl::Seconds(30);
  absl::Duration poll_interval = absl::Seconds(1);
  absl::Duration backoff_initial = absl::Seconds(1);
  absl::Duration backoff_max = absl::Seconds(60);
  int crash_loop_restarts = 5;
  absl::Duration crash_loop_window = absl::Seconds(300);
  absl::Duration stop_grace = absl::Seconds(10);
  int crash_log_lines = 20;
  // Stop every runtime on Shutdown() (process runtime,
  // PROCESS_STOP_ON_EXIT).
  bool stop_runtimes_on_shutdown = false;
  // Whether a Docker daemon answers (GetSystemStatus); null: the runtime's
  // kind decides.
  std::function<bool()> docker_probe;
  std::string version;
};

// One instance as the orchestrator sees it (ListInstanceRuntimes).
struct InstanceRuntimeView {
  std::string instance_id;
  std::string connector;
  bool desired_running = false;
  // running, starting, stopped, crash_loop, build_failed, missing, error.
  std::string state;
  std::string container_id;
  int restarts = 0;
  bool crash_loop = false;
  std::string last_error;
  int last_exit_code = 0;
  std::vector<std::string> last_log_lines;
  absl::Time updated_at = absl::InfinitePast();
  absl::Time next_restart_at = absl::InfinitePast();
};

struct SystemStatus {
  bool mqtt_connected = false;
  bool docker_available = false;
  int instances_count = 0;
  int devices_count = 0;
  int containers_running = 0;
  int containers_total = 0;
  std::string version;
  std::string runtime;
};

class OrchestratorMetrics;

class Orchestrator {
 public:
  // None is owned; all must outlive this. `registry` may be null.
  Orchestrator(Runtime& runtime, ConfigSource& config, BridgeClient& bridge,
               OrchestratorOptions options, prometheus::Registry* registry);
  ~Orchestrator();
  Orchestrator(const Orchestrator&) = delete;
  Orchestrator& operator=(const Orchestrator&) = delete;

  // Loads the state file and starts the watcher and the loop (the first
  // pass runs at once).
  absl::Status Start();
  // Ends log streams, stops the threads, and (stop_runtimes_on_shutdown)
  // stops every runtime. Idempotent.
  void Shutdown();
  bool shutting_down() const { return shutting_down_.load(); }

  // Asks for a full pass soon.
  void RequestReconcile();
  // Runs one full pass now (blocking) and returns whether it could read
  // both states.
  bool ReconcileNow();

  // --- Instance actions (blocking; INSTANCE_NOT_FOUND for ids the config
  // service does not know). Ids are validated first.
  absl::Status StartInstance(absl::string_view instance_id);
  absl::Status StopInstance(absl::string_view instance_id);
  absl::Status RestartInstance(absl::string_view instance_id);
  // Deletes runtime, config (instance file + secrets), runtime secrets file
  // and retained topics. Returns a note when topics could not be cleared.
  absl::StatusOr<std::string> DeleteInstance(absl::string_view instance_id);
  absl::Status RetryInstance(absl::string_view connector,
                             absl::string_view instance_id);
  std::vector<InstanceRuntimeView> ListInstanceRuntimes();
  // One instance's view; NOT_FOUND when not configured.
  std::optional<InstanceRuntimeView> GetInstanceRuntime(
      absl::string_view instance_id);

  // --- Runtime (container) actions; RUNTIME_NOT_FOUND unless the id names
  // one of our runtimes. For a configured instance, start/stop/restart act
  // like the instance actions (a stop is remembered).
  absl::StatusOr<std::vector<RuntimeInfo>> ListRuntimes(bool all);
  absl::Status StartRuntime(absl::string_view id);
  absl::Status StopRuntime(absl::string_view id);
  absl::Status RestartRuntime(absl::string_view id);
  // Removes it; the reconcile loop creates it again unless the instance is
  // disabled, stopped or gone.
  absl::Status RemoveRuntime(absl::string_view id);
  absl::StatusOr<std::vector<LogLine>> RuntimeLogs(absl::string_view id,
                                                   int lines);
  // Follows until `sink` returns false, `cancelled` returns true or
  // shutdown.
  absl::Status FollowRuntimeLogs(absl::string_view id, int lines,
                                 const LogSink& sink,
                                 const std::function<bool()>& cancelled);
  absl::StatusOr<RuntimeStats> RuntimeStatsOf(absl::string_view id);
  // Prepare() of a connector (image build / entry check), progress lines
  // streamed.
  absl::Status BuildConnector(absl::string_view connector,
                              const ProgressSink& progress);
  SystemStatus GetSystemStatus();

  Runtime& runtime() { return runtime_; }

 private:
  struct Instance;
  struct PassInputs;

  // Threads.
  void WatchLoop();
  void MainLoop();

  // Passes (action_mu_ held).
  bool ReconcileLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(action_mu_);
  void WatchdogLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(action_mu_);
  // Converges one configured instance. `start_now`: an existing stopped
  // runtime is started without waiting for the watchdog.
  absl::Status ConvergeLocked(const ConfiguredInstance& configured,
                              const std::map<std::string, std::string>& mqtt,
                              const RuntimeInfo* actual, bool start_now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(action_mu_);
  // Converges one instance with fresh inputs.
  absl::Status ConvergeOneLocked(const ConfiguredInstance& configured,
                                 bool start_now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(action_mu_);
  absl::Status CreateLocked(const RuntimeSpec& spec)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(action_mu_);
  void RemoveOrphanLocked(const RuntimeInfo& info)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(action_mu_);
  void DeclareCrashLoopLocked(const RuntimeInfo& info, absl::string_view why)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(action_mu_);
  // Counts one crash; returns true when it makes a crash loop.
  bool RecordCrash(Instance& instance, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The configured instance `instance_id` (config service).
  absl::StatusOr<ConfiguredInstance> FindInstance(
      absl::string_view instance_id);
  // Our runtime of `instance_id`, if any (runtime.List()).
  absl::StatusOr<std::optional<RuntimeInfo>> RuntimeOfLocked(
      absl::string_view instance_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(action_mu_);
  // Our runtime by id or name; RUNTIME_NOT_FOUND otherwise.
  absl::StatusOr<RuntimeInfo> OurRuntime(absl::string_view id);
  // Start/stop/restart of runtime `id`: on a configured instance's runtime
  // the instance action (remembered, watchdog-aware), else the bare
  // runtime call, counted as `action`.
  absl::Status RuntimeAction(
      absl::string_view id, absl::string_view action,
      absl::Status (Orchestrator::*instance_action)(absl::string_view),
      const std::function<absl::Status(const std::string&)>& runtime_action);

  // Transition bookkeeping (mu_ held).
  Instance& InstanceLocked(absl::string_view instance_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Transition(Instance& instance, absl::string_view to,
                  absl::string_view why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ClearFailure(Instance& instance) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateGauges() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Count(absl::string_view action, const absl::Status& status);

  // The state file.
  void LoadState();
  void SaveStateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Runtime& runtime_;
  ConfigSource& config_;
  BridgeClient& bridge_;
  const OrchestratorOptions options_;
  const SpecPaths paths_;
  std::shared_ptr<prometheus::Registry> own_registry_;  // When none given.
  std::unique_ptr<OrchestratorMetrics> metrics_;

  // Serializes every mutating runtime call and the passes.
  absl::Mutex action_mu_ ABSL_ACQUIRED_BEFORE(mu_);

  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<Instance>> instances_
      ABSL_GUARDED_BY(mu_);
  std::set<std::string> user_stopped_ ABSL_GUARDED_BY(mu_);
  bool reconcile_requested_ ABSL_GUARDED_BY(mu_) = true;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::string cursor_ ABSL_GUARDED_BY(mu_);

  std::atomic<bool> shutting_down_{false};
  std::thread watcher_;
  std::thread loop_;
};

}  // namespace iot2mqtt::orchestrator

#endif  // IOT2MQTT_SERVICES_ORCHESTRATOR_ORCHESTRATOR_H_
