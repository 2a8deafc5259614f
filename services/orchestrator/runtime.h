#ifndef IOT2MQTT_SERVICES_ORCHESTRATOR_RUNTIME_H_
#define IOT2MQTT_SERVICES_ORCHESTRATOR_RUNTIME_H_

// The runtime interface of the orchestrator: what turns one configured
// instance into one running connector. Two backends implement it:
// DockerRuntime (docker_runtime.h: the Docker Engine API) and
// ProcessRuntime (process_runtime.h: local child processes). The reconcile
// loop only speaks this interface.
//
// Runtimes are passive: they never restart a connector on their own behalf
// (Docker's `unless-stopped` policy aside); the orchestrator's watchdog
// decides. Only runtimes carrying our labels are listed or touched: any
// other id or name is NOT_FOUND.
//
// Errors: NOT_FOUND (reason RUNTIME_NOT_FOUND), ALREADY_EXISTS
// (RUNTIME_EXISTS), FAILED_PRECONDITION (e.g. ENTRY_NOT_FOUND, BUILD_FAILED),
// UNAVAILABLE (RUNTIME_UNAVAILABLE: dockerd not answering), INTERNAL.
// Messages never contain secret values.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace iot2mqtt::orchestrator {

// Label keys (ARCHITECTURE.md §7; upstream §6.2).
inline constexpr char kLabelType[] = "iot2mqtt.type";  // = "connector"
inline constexpr char kLabelTypeConnector[] = "connector";
inline constexpr char kLabelConnector[] = "iot2mqtt.connector";
inline constexpr char kLabelInstance[] = "iot2mqtt.instance";
// Fingerprint of everything the runtime was created from; a different one
// means "recreate".
inline constexpr char kLabelConfigHash[] = "iot2mqtt.config_hash";

// `iot2mqtt_<connector>_<instance>` (upstream's container name).
std::string RuntimeName(absl::string_view connector,
                        absl::string_view instance_id);
// `iot2mqtt_<connector>:latest`.
std::string ImageTag(absl::string_view connector);

// What to run for one instance. Paths are absolute paths as the
// orchestrator sees them; each runtime maps them to what the connector sees
// (the Docker runtime bind-mounts them read-only, translated to host paths;
// the process runtime passes them as they are) and sets
// IOT2MQTT_INSTANCE_FILE, IOT2MQTT_SECRETS_FILE and IOT2MQTT_ENV_FILE to the
// connector's view of them.
struct RuntimeSpec {
  std::string connector;
  std::string instance_id;
  std::string connector_dir;  // <connectors>/<connector>
  std::string instance_file;  // <data>/instances/<connector>/<id>.json
  std::string secrets_file;   // Runtime secrets (0600); "" when none.
  std::string env_file;       // <data>/.env; "" when none.
  std::string shared_dir;     // Optional read-only shared files; "" = none.
  // manifest.json `entry`: the connector's executable. Looked up in
  // connector_dir first, then in the runtime's binary directory.
  std::string entry;
  // INSTANCE_NAME, CONNECTOR_TYPE, MODE, MQTT_* (never MQTT_PASSWORD: that
  // travels in the secrets file), LOG_LEVEL, ...
  std::map<std::string, std::string> env;
  std::optional<double> cpus;             // manifest resources.cpu
  std::optional<int64_t> memory_bytes;    // manifest resources.memory_mb
  std::string config_hash;                // kLabelConfigHash
};

enum class RuntimeState {
  kCreated,     // Exists, never started.
  kRunning,
  kRestarting,  // Docker is restarting it.
  kPaused,
  kExited,      // Stopped or crashed; see exit_code.
  kDead,
};
// "created", "running", "restarting", "paused", "exited", "dead".
absl::string_view RuntimeStateName(RuntimeState state);

struct RuntimeInfo {
  std::string id;    // Docker: the container id; process: the name.
  std::string name;  // RuntimeName().
  std::string connector;
  std::string instance_id;
  std::string config_hash;
  std::string image;  // Docker: the image tag; process: the executable.
  RuntimeState state = RuntimeState::kCreated;
  std::string status_text;          // "Up 3 minutes", "running (pid 42)".
  std::optional<int> exit_code;     // When exited and known.
  int64_t pid = 0;                  // 0 when not running.
  int restart_count = 0;            // Docker's own restarts.
  absl::Time created = absl::InfinitePast();
  absl::Time started_at = absl::InfinitePast();
  absl::Time finished_at = absl::InfinitePast();
  std::map<std::string, std::string> labels;
};

struct LogLine {
  absl::Time time = absl::InfinitePast();  // InfinitePast when unknown.
  std::string stream;                      // "stdout" or "stderr".
  std::string text;                        // Without the newline.
};

struct LogOptions {
  int tail = 100;  // Last lines first; -1 means all.
  std::optional<absl::Time> since;
  bool follow = false;
  // Polled at least every 250 ms while following; true ends Logs().
  std::function<bool()> cancelled;
};

// Returns false to stop.
using LogSink = std::function<bool(const LogLine&)>;
// One line of progress (image build output, "entry resolved", ...).
using ProgressSink = std::function<void(absl::string_view line)>;

struct RuntimeStats {
  double cpu_percent = 0;       // Of one CPU, since the previous sample.
  int64_t memory_bytes = 0;     // Resident / cgroup usage.
  int64_t memory_limit_bytes = 0;  // 0 when unlimited.
  int64_t pids = 0;
};

class Runtime {
 public:
  virtual ~Runtime() = default;

  virtual absl::string_view kind() const = 0;  // "docker" or "process".
  // Whether the backend answers (Docker: /_ping). With the version text.
  virtual absl::StatusOr<std::string> Ping() = 0;

  // Makes `spec` ready to create: Docker builds `ImageTag(connector)` when
  // it is missing or the connector's files changed (progress streamed);
  // the process runtime resolves the entry. Idempotent and cheap when
  // nothing changed.
  virtual absl::Status Prepare(const RuntimeSpec& spec,
                               const ProgressSink& progress) = 0;
  // Creates and starts the runtime named RuntimeName(spec); ALREADY_EXISTS
  // when one with that name exists (running or not).
  virtual absl::StatusOr<RuntimeInfo> Create(const RuntimeSpec& spec) = 0;

  // Every runtime carrying our labels, running or not.
  virtual absl::StatusOr<std::vector<RuntimeInfo>> List() = 0;
  // By id or name; NOT_FOUND unless it carries our labels.
  virtual absl::StatusOr<RuntimeInfo> Inspect(absl::string_view id) = 0;

  virtual absl::Status Start(absl::string_view id) = 0;
  // SIGTERM, then SIGKILL after `grace`. OK when already stopped.
  virtual absl::Status Stop(absl::string_view id, absl::Duration grace) = 0;
  virtual absl::Status Restart(absl::string_view id,
                               absl::Duration grace) = 0;
  // Stops (grace 10 s) when running, then removes it and what it owns
  // (logs stay with the process runtime's rotated files until removed).
  virtual absl::Status Remove(absl::string_view id) = 0;

  // Blocks: the last `tail` lines (since `since`), then, with `follow`,
  // new lines as they come until the sink returns false, `cancelled`
  // returns true, or the runtime is removed.
  virtual absl::Status Logs(absl::string_view id, const LogOptions& options,
                            const LogSink& sink) = 0;
  virtual absl::StatusOr<RuntimeStats> Stats(absl::string_view id) = 0;
};

}  // namespace iot2mqtt::orchestrator

#endif  // IOT2MQTT_SERVICES_ORCHESTRATOR_RUNTIME_H_
