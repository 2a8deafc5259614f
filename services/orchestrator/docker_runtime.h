#ifndef IOT2MQTT_SERVICES_ORCHESTRATOR_DOCKER_RUNTIME_H_
#define IOT2MQTT_SERVICES_ORCHESTRATOR_DOCKER_RUNTIME_H_

// The `docker` runtime: one container per instance through the Docker
// Engine API on the local unix socket (docker_api.h), images built FROM
// scratch from the connector directory (build_context.h).
//
// A container is created as RuntimeName(spec) from ImageTag(connector),
// with the labels iot2mqtt.type=connector, iot2mqtt.connector,
// iot2mqtt.instance and iot2mqtt.config_hash; host networking; restart
// policy unless-stopped; CPU and memory limits when the spec has them;
// json-file logs rotated at 3 × 10 MB; no-new-privileges; and these
// read-only binds (host paths, see below), nothing else — never the Docker
// socket:
//
//   dirname(instance_file) → /app/instances      IOT2MQTT_INSTANCE_FILE
//   env_file               → /app/.env           IOT2MQTT_ENV_FILE (else
//                                                 /dev/null)
//   secrets_file           → /run/secrets/iot2mqtt.json
//                                                 IOT2MQTT_SECRETS_FILE
//   shared_dir             → /app/shared
//
// Host paths: a bind's source is a path on the Docker host. They come from
// `host_path_map` when given (e.g. the data directory → HOST_IOT2MQTT_PATH);
// else, when the orchestrator itself runs in a container (/.dockerenv), from
// its own container's mounts (inspected once by hostname); else the paths
// are the host's already.
//
// Only containers labelled iot2mqtt.type=connector exist for this runtime:
// every other id or name is NOT_FOUND (RUNTIME_NOT_FOUND), so no call can
// touch another container of the host. Images carry only the label
// iot2mqtt.context_hash (containers inherit image labels, so a container
// made from our image by someone else is still not ours).
//
// Errors beyond runtime.h's: FAILED_PRECONDITION IMAGE_NOT_FOUND (Create
// before Prepare), START_FAILED (the created container would not start; it
// is removed again), CREATE_FAILED (Docker refused the container, e.g. a
// bind source does not exist), MOUNT_REFUSED (a bind source is or holds the
// Docker socket, or is "/"); INVALID_ARGUMENT INVALID_CONNECTOR_NAME /
// INVALID_INSTANCE_ID; INTERNAL DOCKER_ERROR (Docker answered something
// unexpected, with its message).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/orchestrator/build_context.h"
#include "services/orchestrator/docker_api.h"
#include "services/orchestrator/runtime.h"

namespace iot2mqtt::orchestrator {

inline constexpr char kBuildFailed[] = "BUILD_FAILED";
inline constexpr char kImageNotFound[] = "IMAGE_NOT_FOUND";
inline constexpr char kCreateFailed[] = "CREATE_FAILED";
inline constexpr char kStartFailed[] = "START_FAILED";
inline constexpr char kMountRefused[] = "MOUNT_REFUSED";
inline constexpr char kDockerError[] = "DOCKER_ERROR";

// Image label: the fingerprint of the build context the image was built
// from (ContextArchive::fingerprint).
inline constexpr char kLabelContextHash[] = "iot2mqtt.context_hash";

// Where the connector finds its files inside the container.
inline constexpr char kContainerInstancesDir[] = "/app/instances";
inline constexpr char kContainerEnvFile[] = "/app/.env";
inline constexpr char kContainerSecretsFile[] = "/run/secrets/iot2mqtt.json";
inline constexpr char kContainerSharedDir[] = "/app/shared";

// `from` (a path prefix as the orchestrator sees it) is `to` on the Docker
// host.
struct PathMapping {
  std::string from;
  std::string to;
};

// `path` with the longest `from` that is a whole-component prefix of it
// replaced by its `to` ("/data" maps "/data" and "/data/x", not
// "/database"); `path` itself when none matches.
std::string TranslateHostPath(absl::string_view path,
                              const std::vector<PathMapping>& mappings);

// The bind and volume mounts of a GET /containers/{id}/json answer as
// mappings (Destination → Source).
absl::StatusOr<std::vector<PathMapping>> PathMappingsFromInspect(
    absl::string_view container_json);

// Docker's State.Status as a RuntimeState ("removing" → kExited); nullopt
// for anything else.
std::optional<RuntimeState> RuntimeStateFromDocker(absl::string_view status);

// A GET /containers/{id}/json answer as a RuntimeInfo; status_text like
// Docker's ("Up 3 minutes", "Exited (1) 5 seconds ago") as of `now`.
// NOT_FOUND (RUNTIME_NOT_FOUND) unless it carries iot2mqtt.type=connector.
absl::StatusOr<RuntimeInfo> RuntimeInfoFromInspect(absl::string_view json,
                                                   absl::Time now);

// A GET /containers/{id}/stats?stream=false answer. cpu_percent from the
// cpu_stats/precpu_stats deltas (100 = one CPU busy); memory without the
// page cache (inactive_file, or cache on cgroup v1); the limit only when
// `memory_limit_set` (Docker reports the host's memory otherwise).
absl::StatusOr<RuntimeStats> RuntimeStatsFromJson(absl::string_view json,
                                                  bool memory_limit_set);

// The POST /containers/create body for `spec` (see the top of this file),
// bind sources translated with `host_paths`. MOUNT_REFUSED when a source
// (as the orchestrator sees it) is "/", is `docker_socket` or holds it.
absl::StatusOr<std::string> ContainerCreateBody(
    const RuntimeSpec& spec, const std::vector<PathMapping>& host_paths,
    absl::string_view docker_socket);

struct DockerRuntimeOptions {
  // The daemon's socket: DockerSocketPath(getenv("DOCKER_HOST")) in main.
  std::string socket_path = kDefaultDockerSocket;
  // Where entries are looked up after the connector directory; default:
  // the directory of the running executable.
  std::vector<std::string> bin_dirs;
  // Orchestrator path prefix → host path prefix. Empty: detect (above).
  std::vector<PathMapping> host_path_map;
  bool detect_host_paths = true;
  absl::Duration connect_timeout = absl::Seconds(5);
  absl::Duration request_timeout = absl::Seconds(30);  // Most calls.
  absl::Duration build_timeout = absl::Minutes(20);
  std::string ldd = "ldd";
  int64_t max_context_bytes = int64_t{512} << 20;
};

class DockerRuntime final : public Runtime {
 public:
  explicit DockerRuntime(DockerRuntimeOptions options);

  absl::string_view kind() const override { return "docker"; }
  // "Docker 20.10.24 (API 1.41)".
  absl::StatusOr<std::string> Ping() override;
  absl::Status Prepare(const RuntimeSpec& spec,
                       const ProgressSink& progress) override;
  absl::StatusOr<RuntimeInfo> Create(const RuntimeSpec& spec) override;
  absl::StatusOr<std::vector<RuntimeInfo>> List() override;
  absl::StatusOr<RuntimeInfo> Inspect(absl::string_view id) override;
  absl::Status Start(absl::string_view id) override;
  absl::Status Stop(absl::string_view id, absl::Duration grace) override;
  absl::Status Restart(absl::string_view id, absl::Duration grace) override;
  absl::Status Remove(absl::string_view id) override;
  absl::Status Logs(absl::string_view id, const LogOptions& options,
                    const LogSink& sink) override;
  absl::StatusOr<RuntimeStats> Stats(absl::string_view id) override;

 private:
  absl::StatusOr<std::vector<PathMapping>> HostPaths();
  absl::Status Build(const std::string& tag, const ContextArchive& context,
                     const ProgressSink& progress);
  absl::Status Lifecycle(absl::string_view action, absl::string_view id,
                         std::optional<absl::Duration> grace);

  const DockerRuntimeOptions options_;
  DockerApi api_;
  absl::Mutex mu_;
  std::optional<std::vector<PathMapping>> host_paths_ ABSL_GUARDED_BY(mu_);
};

}  // namespace iot2mqtt::orchestrator

#endif  // IOT2MQTT_SERVICES_ORCHESTRATOR_DOCKER_RUNTIME_H_
