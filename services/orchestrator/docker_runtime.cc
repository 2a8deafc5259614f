#include "services/orchestrator/docker_runtime.h"

#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "rapidjson/document.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"
#include "services/common/status.h"

namespace iot2mqtt::orchestrator {
namespace {

constexpr char kRuntimeNotFound[] = "RUNTIME_NOT_FOUND";
constexpr char kRuntimeExists[] = "RUNTIME_EXISTS";
constexpr char kInvalidConnectorName[] = "INVALID_CONNECTOR_NAME";
constexpr char kInvalidInstanceId[] = "INVALID_INSTANCE_ID";
constexpr char kInvalidSpec[] = "INVALID_RUNTIME_SPEC";
constexpr char kNamePattern[] = "^[a-z0-9][a-z0-9_-]{0,62}$";
constexpr absl::Duration kRemoveGrace = absl::Seconds(10);

// ---------------------------------------------------------------------------
// Small helpers

// kNamePattern without a regex engine.
bool IsValidName(absl::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '_' && c != '-'))) return false;
  }
  return true;
}

// What Docker accepts as a container id, id prefix or name; anything else
// (a "/", "..", "?") could steer the request elsewhere and is nobody.
bool IsPlausibleContainerRef(absl::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (size_t i = 0; i < id.size(); ++i) {
    char c = id[i];
    bool alnum = absl::ascii_isalnum(static_cast<unsigned char>(c));
    if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-'))) return false;
  }
  return true;
}

std::string Printable(absl::string_view text) {
  constexpr size_t kMax = 64;
  if (text.size() <= kMax) return absl::CHexEscape(text);
  return absl::StrCat(absl::CHexEscape(text.substr(0, kMax)), "...");
}

absl::Status NotFound(absl::string_view id) {
  std::string shown = Printable(id);
  return common::WithReason(absl::NotFoundError(absl::StrCat(
                                "no connector container \"", shown, "\"")),
                            kRuntimeNotFound, {{"id", shown}});
}

absl::Status DockerFailure(absl::string_view what,
                           const DockerResponse& response) {
  return common::WithReason(absl::InternalError(absl::StrCat(
                                "Docker: ", what, " answered ", response.status,
                                ": ", DockerErrorMessage(response.body))),
                            kDockerError,
                            {{"http_status", absl::StrCat(response.status)}});
}

absl::Status ValidateConnectorName(absl::string_view connector) {
  if (IsValidName(connector)) return absl::OkStatus();
  return common::WithReason(
      absl::InvalidArgumentError(absl::StrCat("connector name \"",
                                              Printable(connector),
                                              "\" must match ", kNamePattern)),
      kInvalidConnectorName,
      {{"connector", Printable(connector)}, {"pattern", kNamePattern}});
}

absl::Status ValidateNames(absl::string_view connector,
                           absl::string_view instance_id) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateConnectorName(connector));
  if (IsValidName(instance_id)) return absl::OkStatus();
  return common::WithReason(
      absl::InvalidArgumentError(absl::StrCat("instance id \"",
                                              Printable(instance_id),
                                              "\" must match ", kNamePattern)),
      kInvalidInstanceId,
      {{"instance_id", Printable(instance_id)}, {"pattern", kNamePattern}});
}

absl::Status InvalidSpec(absl::string_view problem) {
  return common::WithReason(absl::InvalidArgumentError(problem), kInvalidSpec);
}

bool IsWithin(absl::string_view path, absl::string_view root) {
  if (root == "/") return absl::StartsWith(path, "/");
  return path == root ||
         (absl::StartsWith(path, root) && path.size() > root.size() &&
          path[root.size()] == '/');
}

std::optional<std::string> RealPath(const std::string& path) {
  char buffer[PATH_MAX];
  if (realpath(path.c_str(), buffer) == nullptr) return std::nullopt;
  return std::string(buffer);
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// No bind may expose the Docker socket (host root) to a connector.
absl::Status CheckMountSource(const std::string& source,
                              absl::string_view docker_socket) {
  std::vector<std::pair<std::string, std::string>> views = {
      {source, std::string(docker_socket)}};
  std::optional<std::string> real_source = RealPath(source);
  std::optional<std::string> real_socket = RealPath(std::string(docker_socket));
  if (real_source.has_value() || real_socket.has_value()) {
    views.emplace_back(real_source.value_or(source),
                       real_socket.value_or(std::string(docker_socket)));
  }
  for (const auto& [src, socket] : views) {
    if (src == "/" || IsWithin(socket, src)) {
      return common::WithReason(
          absl::FailedPreconditionError(absl::StrCat(
              "refusing to mount ", source,
              " into a connector: it is or holds the Docker socket")),
          kMountRefused, {{"path", source}});
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// JSON access

const rapidjson::Value* Member(const rapidjson::Value& object,
                               const char* name) {
  if (!object.IsObject()) return nullptr;
  auto it = object.FindMember(name);
  return it == object.MemberEnd() ? nullptr : &it->value;
}

const rapidjson::Value* Path(const rapidjson::Value& root,
                             std::initializer_list<const char*> names) {
  const rapidjson::Value* value = &root;
  for (const char* name : names) {
    value = Member(*value, name);
    if (value == nullptr) return nullptr;
  }
  return value;
}

std::string StringAt(const rapidjson::Value& root,
                     std::initializer_list<const char*> names) {
  const rapidjson::Value* value = Path(root, names);
  if (value == nullptr || !value->IsString()) return "";
  return std::string(value->GetString(), value->GetStringLength());
}

int64_t IntAt(const rapidjson::Value& root,
              std::initializer_list<const char*> names) {
  const rapidjson::Value* value = Path(root, names);
  if (value == nullptr || !value->IsNumber()) return 0;
  if (value->IsInt64()) return value->GetInt64();
  if (value->IsUint64()) {
    return static_cast<int64_t>(std::min<uint64_t>(
        value->GetUint64(), static_cast<uint64_t>(INT64_MAX)));
  }
  return static_cast<int64_t>(value->GetDouble());
}

uint64_t UintAt(const rapidjson::Value& root,
                std::initializer_list<const char*> names) {
  const rapidjson::Value* value = Path(root, names);
  if (value == nullptr || !value->IsNumber()) return 0;
  if (value->IsUint64()) return value->GetUint64();
  if (value->IsInt64()) return 0;  // Negative.
  double d = value->GetDouble();
  return d > 0 ? static_cast<uint64_t>(d) : 0;
}

bool BoolAt(const rapidjson::Value& root,
            std::initializer_list<const char*> names) {
  const rapidjson::Value* value = Path(root, names);
  return value != nullptr && value->IsBool() && value->GetBool();
}

absl::StatusOr<rapidjson::Document> ParseAnswer(absl::string_view json,
                                                absl::string_view what) {
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError() || !doc.IsObject()) {
    return common::WithReason(absl::InternalError(absl::StrCat(
                                  "Docker: unreadable answer to ", what)),
                              kDockerError);
  }
  return doc;
}

// Docker's units.HumanDuration.
std::string HumanDuration(absl::Duration d) {
  int64_t seconds = absl::ToInt64Seconds(d);
  if (seconds < 1) return "Less than a second";
  if (seconds == 1) return "1 second";
  if (seconds < 60) return absl::StrCat(seconds, " seconds");
  int64_t minutes = seconds / 60;
  if (minutes == 1) return "About a minute";
  if (minutes < 60) return absl::StrCat(minutes, " minutes");
  int64_t hours = minutes / 60;
  if (hours == 1) return "About an hour";
  if (hours < 48) return absl::StrCat(hours, " hours");
  if (hours < 24 * 7 * 2) return absl::StrCat(hours / 24, " days");
  if (hours < 24 * 30 * 2) return absl::StrCat(hours / 24 / 7, " weeks");
  if (hours < 24 * 365 * 2) return absl::StrCat(hours / 24 / 30, " months");
  return absl::StrCat(hours / 24 / 365, " years");
}

std::string StatusText(const RuntimeInfo& info, absl::string_view docker,
                       absl::Time now) {
  switch (info.state) {
    case RuntimeState::kCreated:
      return "Created";
    case RuntimeState::kRunning:
      return absl::StrCat("Up ", HumanDuration(now - info.started_at));
    case RuntimeState::kPaused:
      return absl::StrCat("Up ", HumanDuration(now - info.started_at),
                          " (Paused)");
    case RuntimeState::kRestarting:
      return absl::StrCat("Restarting (", info.exit_code.value_or(0), ") ",
                          HumanDuration(now - info.finished_at), " ago");
    case RuntimeState::kExited:
      if (docker == "removing") return "Removal In Progress";
      if (info.finished_at == absl::InfinitePast()) {
        return absl::StrCat("Exited (", info.exit_code.value_or(0), ")");
      }
      return absl::StrCat("Exited (", info.exit_code.value_or(0), ") ",
                          HumanDuration(now - info.finished_at), " ago");
    case RuntimeState::kDead:
      return "Dead";
  }
  return "";
}

struct InspectedContainer {
  RuntimeInfo info;
  bool tty = false;
  bool memory_limit_set = false;
};

absl::StatusOr<InspectedContainer> ParseInspect(absl::string_view json,
                                                absl::Time now) {
  IOT2MQTT_ASSIGN_OR_RETURN(rapidjson::Document doc,
                            ParseAnswer(json, "GET /containers/{id}/json"));
  InspectedContainer out;
  RuntimeInfo& info = out.info;
  info.id = StringAt(doc, {"Id"});
  std::string name = StringAt(doc, {"Name"});
  info.name = std::string(absl::StripPrefix(name, "/"));
  if (const rapidjson::Value* labels = Path(doc, {"Config", "Labels"});
      labels != nullptr && labels->IsObject()) {
    for (const auto& member : labels->GetObject()) {
      if (member.value.IsString()) {
        info.labels[member.name.GetString()] = member.value.GetString();
      }
    }
  }
  auto label = info.labels.find(kLabelType);
  if (label == info.labels.end() || label->second != kLabelTypeConnector) {
    return NotFound(info.name.empty() ? info.id : info.name);
  }
  info.connector = info.labels[kLabelConnector];
  info.instance_id = info.labels[kLabelInstance];
  info.config_hash = info.labels[kLabelConfigHash];
  info.image = StringAt(doc, {"Config", "Image"});
  std::string docker_state = StringAt(doc, {"State", "Status"});
  info.state =
      RuntimeStateFromDocker(docker_state).value_or(RuntimeState::kDead);
  int64_t exit_code = IntAt(doc, {"State", "ExitCode"});
  if (info.state == RuntimeState::kExited ||
      info.state == RuntimeState::kDead ||
      info.state == RuntimeState::kRestarting) {
    info.exit_code = static_cast<int>(exit_code);
  }
  if (info.state == RuntimeState::kRunning ||
      info.state == RuntimeState::kPaused) {
    info.pid = IntAt(doc, {"State", "Pid"});
  }
  info.restart_count = static_cast<int>(IntAt(doc, {"RestartCount"}));
  info.created = ParseDockerTime(StringAt(doc, {"Created"}));
  info.started_at = ParseDockerTime(StringAt(doc, {"State", "StartedAt"}));
  info.finished_at = ParseDockerTime(StringAt(doc, {"State", "FinishedAt"}));
  info.status_text = StatusText(info, docker_state, now);
  out.tty = BoolAt(doc, {"Config", "Tty"});
  out.memory_limit_set = IntAt(doc, {"HostConfig", "Memory"}) > 0;
  return out;
}

// GET /containers/{id}/json, NOT_FOUND unless the container is ours.
absl::StatusOr<InspectedContainer> InspectOurs(DockerApi& api,
                                               absl::Duration timeout,
                                               absl::string_view id) {
  if (!IsPlausibleContainerRef(id)) return NotFound(id);
  IOT2MQTT_ASSIGN_OR_RETURN(
      DockerResponse response,
      api.Call("GET", absl::StrCat("/containers/", id, "/json"), timeout));
  if (response.status == 404) return NotFound(id);
  if (response.status != 200) {
    return DockerFailure("GET /containers/{id}/json", response);
  }
  absl::StatusOr<InspectedContainer> inspected =
      ParseInspect(response.body, absl::Now());
  if (absl::IsNotFound(inspected.status())) return NotFound(id);
  return inspected;
}

std::string SecondsParameter(absl::Duration grace) {
  return absl::StrCat(std::max<int64_t>(
      0, static_cast<int64_t>(std::ceil(absl::ToDoubleSeconds(grace)))));
}

std::string SinceParameter(absl::Time since) {
  absl::Duration d = since - absl::UnixEpoch();
  if (d < absl::ZeroDuration()) return "0";
  int64_t seconds = absl::IDivDuration(d, absl::Seconds(1), &d);
  return absl::StrFormat("%d.%09d", seconds, absl::ToInt64Nanoseconds(d));
}

}  // namespace

// ---------------------------------------------------------------------------
// Pure functions

std::string TranslateHostPath(absl::string_view path,
                              const std::vector<PathMapping>& mappings) {
  const PathMapping* best = nullptr;
  for (const PathMapping& mapping : mappings) {
    absl::string_view from = mapping.from;
    while (from.size() > 1 && absl::EndsWith(from, "/")) from.remove_suffix(1);
    if (from.empty() || !IsWithin(path, from)) continue;
    if (best == nullptr || from.size() > best->from.size()) best = &mapping;
  }
  if (best == nullptr) return std::string(path);
  absl::string_view from = best->from;
  while (from.size() > 1 && absl::EndsWith(from, "/")) from.remove_suffix(1);
  absl::string_view rest = path.substr(from == "/" ? 0 : from.size());
  absl::string_view to = best->to;
  while (to.size() > 1 && absl::EndsWith(to, "/")) to.remove_suffix(1);
  if (rest.empty()) return std::string(to);
  if (to == "/") return std::string(rest);
  return absl::StrCat(to, rest);
}

absl::StatusOr<std::vector<PathMapping>> PathMappingsFromInspect(
    absl::string_view container_json) {
  IOT2MQTT_ASSIGN_OR_RETURN(
      rapidjson::Document doc,
      ParseAnswer(container_json, "GET /containers/{id}/json"));
  std::vector<PathMapping> mappings;
  const rapidjson::Value* mounts = Member(doc, "Mounts");
  if (mounts == nullptr || !mounts->IsArray()) return mappings;
  for (const rapidjson::Value& mount : mounts->GetArray()) {
    std::string type = StringAt(mount, {"Type"});
    if (type != "bind" && type != "volume") continue;
    PathMapping mapping;
    mapping.from = StringAt(mount, {"Destination"});
    mapping.to = StringAt(mount, {"Source"});
    if (absl::StartsWith(mapping.from, "/") &&
        absl::StartsWith(mapping.to, "/")) {
      mappings.push_back(std::move(mapping));
    }
  }
  return mappings;
}

std::optional<RuntimeState> RuntimeStateFromDocker(absl::string_view status) {
  if (status == "created") return RuntimeState::kCreated;
  if (status == "running") return RuntimeState::kRunning;
  if (status == "restarting") return RuntimeState::kRestarting;
  if (status == "paused") return RuntimeState::kPaused;
  if (status == "exited" || status == "removing") return RuntimeState::kExited;
  if (status == "dead") return RuntimeState::kDead;
  return std::nullopt;
}

absl::StatusOr<RuntimeInfo> RuntimeInfoFromInspect(absl::string_view json,
                                                   absl::Time now) {
  IOT2MQTT_ASSIGN_OR_RETURN(InspectedContainer inspected,
                            ParseInspect(json, now));
  return std::move(inspected.info);
}

absl::StatusOr<RuntimeStats> RuntimeStatsFromJson(absl::string_view json,
                                                  bool memory_limit_set) {
  IOT2MQTT_ASSIGN_OR_RETURN(rapidjson::Document doc,
                            ParseAnswer(json, "GET /containers/{id}/stats"));
  RuntimeStats stats;
  uint64_t cpu = UintAt(doc, {"cpu_stats", "cpu_usage", "total_usage"});
  uint64_t precpu = UintAt(doc, {"precpu_stats", "cpu_usage", "total_usage"});
  uint64_t system = UintAt(doc, {"cpu_stats", "system_cpu_usage"});
  uint64_t presystem = UintAt(doc, {"precpu_stats", "system_cpu_usage"});
  uint64_t cpus = UintAt(doc, {"cpu_stats", "online_cpus"});
  if (cpus == 0) {
    const rapidjson::Value* per_cpu =
        Path(doc, {"cpu_stats", "cpu_usage", "percpu_usage"});
    if (per_cpu != nullptr && per_cpu->IsArray()) cpus = per_cpu->Size();
  }
  if (cpus == 0) cpus = 1;
  if (cpu > precpu && system > presystem) {
    stats.cpu_percent = static_cast<double>(cpu - precpu) /
                        static_cast<double>(system - presystem) *
                        static_cast<double>(cpus) * 100.0;
  }
  uint64_t usage = UintAt(doc, {"memory_stats", "usage"});
  uint64_t cache = 0;
  if (Path(doc, {"memory_stats", "stats", "total_inactive_file"}) != nullptr) {
    cache = UintAt(doc, {"memory_stats", "stats", "total_inactive_file"});
  } else if (Path(doc, {"memory_stats", "stats", "inactive_file"}) != nullptr) {
    cache = UintAt(doc, {"memory_stats", "stats", "inactive_file"});
  } else {
    cache = UintAt(doc, {"memory_stats", "stats", "cache"});
  }
  stats.memory_bytes = static_cast<int64_t>(usage > cache ? usage - cache : 0);
  if (memory_limit_set) {
    stats.memory_limit_bytes = IntAt(doc, {"memory_stats", "limit"});
  }
  stats.pids = IntAt(doc, {"pids_stats", "current"});
  return stats;
}

absl::StatusOr<std::string> ContainerCreateBody(
    const RuntimeSpec& spec, const std::vector<PathMapping>& host_paths,
    absl::string_view docker_socket) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateNames(spec.connector, spec.instance_id));
  struct Bind {
    std::string source;
    const char* target;
  };
  std::vector<Bind> binds;
  std::map<std::string, std::string> env = spec.env;
  for (const auto& [key, value] : env) {
    if (key.empty() || absl::StrContains(key, '=') ||
        absl::StrContains(key, '\0') || absl::StrContains(value, '\0')) {
      return InvalidSpec(absl::StrCat("environment variable name \"",
                                      Printable(key), "\" is not valid"));
    }
  }
  auto absolute = [](const std::string& path, absl::string_view what) {
    if (absl::StartsWith(path, "/")) return absl::OkStatus();
    return InvalidSpec(absl::StrCat(what, " must be an absolute path, got \"",
                                    Printable(path), "\""));
  };
  IOT2MQTT_RETURN_IF_ERROR(absolute(spec.instance_file, "instance_file"));
  binds.push_back({DirName(spec.instance_file), kContainerInstancesDir});
  env["IOT2MQTT_INSTANCE_FILE"] =
      absl::StrCat(kContainerInstancesDir, "/", BaseName(spec.instance_file));
  if (!spec.env_file.empty()) {
    IOT2MQTT_RETURN_IF_ERROR(absolute(spec.env_file, "env_file"));
    binds.push_back({spec.env_file, kContainerEnvFile});
    env["IOT2MQTT_ENV_FILE"] = kContainerEnvFile;
  } else {
    env["IOT2MQTT_ENV_FILE"] = "/dev/null";
  }
  if (!spec.secrets_file.empty()) {
    IOT2MQTT_RETURN_IF_ERROR(absolute(spec.secrets_file, "secrets_file"));
    binds.push_back({spec.secrets_file, kContainerSecretsFile});
    env["IOT2MQTT_SECRETS_FILE"] = kContainerSecretsFile;
  } else {
    env.erase("IOT2MQTT_SECRETS_FILE");
  }
  if (!spec.shared_dir.empty()) {
    IOT2MQTT_RETURN_IF_ERROR(absolute(spec.shared_dir, "shared_dir"));
    binds.push_back({spec.shared_dir, kContainerSharedDir});
  }
  for (const Bind& bind : binds) {
    IOT2MQTT_RETURN_IF_ERROR(CheckMountSource(bind.source, docker_socket));
  }

  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  auto key = [&w](const char* k) { w.Key(k); };
  auto string = [&w](const std::string& s) {
    w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  };
  w.StartObject();
  key("Image");
  string(ImageTag(spec.connector));
  key("Env");
  w.StartArray();
  for (const auto& [name, value] : env) string(absl::StrCat(name, "=", value));
  w.EndArray();
  key("Labels");
  w.StartObject();
  key(kLabelType);
  string(kLabelTypeConnector);
  key(kLabelConnector);
  string(spec.connector);
  key(kLabelInstance);
  string(spec.instance_id);
  key(kLabelConfigHash);
  string(spec.config_hash);
  w.EndObject();
  key("HostConfig");
  w.StartObject();
  key("NetworkMode");
  string("host");
  key("RestartPolicy");
  w.StartObject();
  key("Name");
  string("unless-stopped");
  key("MaximumRetryCount");
  w.Int(0);
  w.EndObject();
  // Mounts rather than Binds: a missing source is an error, where Binds
  // would quietly create a root-owned directory in its place.
  key("Mounts");
  w.StartArray();
  for (const Bind& bind : binds) {
    w.StartObject();
    key("Type");
    string("bind");
    key("Source");
    string(TranslateHostPath(bind.source, host_paths));
    key("Target");
    string(bind.target);
    key("ReadOnly");
    w.Bool(true);
    w.EndObject();
  }
  w.EndArray();
  if (spec.cpus.has_value() && *spec.cpus > 0) {
    key("NanoCpus");
    w.Int64(static_cast<int64_t>(std::llround(*spec.cpus * 1e9)));
  }
  if (spec.memory_bytes.has_value() && *spec.memory_bytes > 0) {
    key("Memory");
    w.Int64(*spec.memory_bytes);
  }
  key("LogConfig");
  w.StartObject();
  key("Type");
  string("json-file");
  key("Config");
  w.StartObject();
  key("max-size");
  string("10m");
  key("max-file");
  string("3");
  w.EndObject();
  w.EndObject();
  key("SecurityOpt");
  w.StartArray();
  string("no-new-privileges");
  w.EndArray();
  w.EndObject();
  w.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

// ---------------------------------------------------------------------------
// DockerRuntime

DockerRuntime::DockerRuntime(DockerRuntimeOptions options)
    : options_(std::move(options)),
      api_(DockerApiOptions{options_.socket_path, options_.connect_timeout}) {}

absl::StatusOr<std::string> DockerRuntime::Ping() {
  IOT2MQTT_ASSIGN_OR_RETURN(std::string body,
                            api_.Version(options_.request_timeout));
  rapidjson::Document doc;
  doc.Parse(body.data(), body.size());
  std::string version = doc.IsObject() ? StringAt(doc, {"Version"}) : "";
  return absl::StrCat("Docker ", version.empty() ? "?" : version, " (API ",
                      api_.api_version(), ")");
}

absl::StatusOr<std::vector<PathMapping>> DockerRuntime::HostPaths() {
  {
    absl::MutexLock lock(&mu_);
    if (host_paths_.has_value()) return *host_paths_;
  }
  std::vector<PathMapping> mappings = options_.host_path_map;
  if (mappings.empty() && options_.detect_host_paths &&
      access("/.dockerenv", F_OK) == 0) {
    char hostname[HOST_NAME_MAX + 1] = {};
    gethostname(hostname, sizeof(hostname) - 1);
    absl::StatusOr<DockerResponse> response =
        IsPlausibleContainerRef(hostname)
            ? api_.Call("GET", absl::StrCat("/containers/", hostname, "/json"),
                        options_.request_timeout)
            : absl::StatusOr<DockerResponse>(DockerResponse{404, ""});
    if (!response.ok()) return response.status();
    absl::StatusOr<std::vector<PathMapping>> own =
        response->status == 200 ? PathMappingsFromInspect(response->body)
                                : absl::NotFoundError("not inspectable");
    if (own.ok()) {
      mappings = *std::move(own);
      IOT2MQTT_LOG(INFO).With("mounts", static_cast<int64_t>(mappings.size()))
          << "docker runtime: bind sources translated through the mounts of "
             "our own container "
          << hostname;
    } else {
      IOT2MQTT_LOG(WARNING)
          << "docker runtime: running in a container but cannot inspect it ("
          << hostname << "); bind sources are used as they are; set "
          << "HOST_IOT2MQTT_PATH";
    }
  }
  absl::MutexLock lock(&mu_);
  host_paths_ = mappings;
  return mappings;
}

absl::Status DockerRuntime::Prepare(const RuntimeSpec& spec,
                                    const ProgressSink& progress) {
  auto report = [&progress](absl::string_view line) {
    if (progress) progress(line);
  };
  IOT2MQTT_RETURN_IF_ERROR(ValidateConnectorName(spec.connector));
  BuildContextOptions context_options;
  context_options.bin_dirs = options_.bin_dirs;
  context_options.ldd = options_.ldd;
  context_options.max_bytes = options_.max_context_bytes;
  IOT2MQTT_ASSIGN_OR_RETURN(
      BuildContext plan,
      PlanBuildContext(spec.connector_dir, spec.entry, context_options));
  IOT2MQTT_ASSIGN_OR_RETURN(
      ContextArchive archive,
      WriteContextArchive(plan, options_.max_context_bytes));
  std::string tag = ImageTag(spec.connector);

  IOT2MQTT_ASSIGN_OR_RETURN(
      DockerResponse image,
      api_.Call("GET", absl::StrCat("/images/", tag, "/json"),
                options_.request_timeout));
  std::string old_id;
  if (image.status == 200) {
    IOT2MQTT_ASSIGN_OR_RETURN(
        rapidjson::Document doc,
        ParseAnswer(image.body, "GET /images/{tag}/json"));
    old_id = StringAt(doc, {"Id"});
    if (StringAt(doc, {"Config", "Labels", kLabelContextHash}) ==
        archive.fingerprint) {
      report(absl::StrCat("image ", tag, " is up to date"));
      return absl::OkStatus();
    }
  } else if (image.status != 404) {
    return DockerFailure("GET /images/{tag}/json", image);
  }
  if (plan.generated) {
    report(absl::StrCat("entry ", plan.entry_path, " with ",
                        plan.libraries.size(), " shared libraries"));
  }
  report(absl::StrCat("building image ", tag, " (", plan.files.size(),
                      " files, ", archive.tar.size() / 1024, " KiB context)"));
  IOT2MQTT_RETURN_IF_ERROR(Build(tag, archive, progress));

  // The image the tag left behind is garbage unless a container still uses
  // it (then Docker refuses and it goes with that container's removal).
  if (!old_id.empty()) {
    absl::StatusOr<DockerResponse> now =
        api_.Call("GET", absl::StrCat("/images/", tag, "/json"),
                  options_.request_timeout);
    absl::StatusOr<rapidjson::Document> doc =
        now.ok() && now->status == 200
            ? ParseAnswer(now->body, "GET /images/{tag}/json")
            : absl::StatusOr<rapidjson::Document>(absl::NotFoundError(""));
    if (doc.ok() && StringAt(*doc, {"Id"}) != old_id) {
      absl::StatusOr<DockerResponse> removed = api_.Call(
          "DELETE", absl::StrCat("/images/", old_id), options_.request_timeout);
      (void)removed;
    }
  }
  report(absl::StrCat("image ", tag, " built"));
  return absl::OkStatus();
}

absl::Status DockerRuntime::Build(const std::string& tag,
                                  const ContextArchive& context,
                                  const ProgressSink& progress) {
  std::string labels = sdk::JsonObjectBuilder()
                           .Set(kLabelContextHash, context.fingerprint)
                           .Build();
  std::string path = absl::StrCat("/build?t=", QueryEscape(tag),
                                  "&labels=", QueryEscape(labels),
                                  "&rm=1&forcerm=1&version=1");
  std::string error;
  LineSplitter lines([&](absl::string_view line) {
    rapidjson::Document doc;
    doc.Parse(line.data(), line.size());
    if (doc.HasParseError() || !doc.IsObject()) return;
    std::string text = StringAt(doc, {"stream"});
    if (text.empty()) text = StringAt(doc, {"status"});
    std::string failure = StringAt(doc, {"error"});
    if (!failure.empty() && error.empty()) error = failure;
    if (!failure.empty()) text = failure;
    if (!progress) return;
    for (absl::string_view part : absl::StrSplit(text, '\n')) {
      part = absl::StripTrailingAsciiWhitespace(part);
      if (!part.empty()) progress(part);
    }
  });
  IOT2MQTT_ASSIGN_OR_RETURN(DockerResponse response,
                            api_.Stream(
                                "POST", path, options_.build_timeout,
                                [&lines](absl::string_view chunk) {
                                  lines.Feed(chunk);
                                  return true;
                                },
                                nullptr, context.tar, "application/x-tar"));
  lines.Finish();
  if (response.status != 200 && error.empty()) {
    error = DockerErrorMessage(response.body);
  }
  if (!error.empty()) {
    return common::WithReason(absl::FailedPreconditionError(absl::StrCat(
                                  "building image ", tag, " failed: ", error)),
                              kBuildFailed, {{"image", tag}});
  }
  return absl::OkStatus();
}

absl::StatusOr<RuntimeInfo> DockerRuntime::Create(const RuntimeSpec& spec) {
  IOT2MQTT_ASSIGN_OR_RETURN(std::vector<PathMapping> host_paths, HostPaths());
  IOT2MQTT_ASSIGN_OR_RETURN(
      std::string body,
      ContainerCreateBody(spec, host_paths, api_.socket_path()));
  std::string name = RuntimeName(spec.connector, spec.instance_id);
  IOT2MQTT_ASSIGN_OR_RETURN(
      DockerResponse created,
      api_.Call("POST", absl::StrCat("/containers/create?name=", name),
                options_.request_timeout, body, "application/json"));
  if (created.status == 409) {
    return common::WithReason(absl::AlreadyExistsError(absl::StrCat(
                                  "container ", name, " already exists")),
                              kRuntimeExists, {{"name", name}});
  }
  if (created.status == 404) {
    return common::WithReason(absl::FailedPreconditionError(absl::StrCat(
                                  "image ", ImageTag(spec.connector),
                                  " does not exist; Prepare builds it: ",
                                  DockerErrorMessage(created.body))),
                              kImageNotFound,
                              {{"image", ImageTag(spec.connector)}});
  }
  if (created.status == 400) {
    return common::WithReason(absl::FailedPreconditionError(absl::StrCat(
                                  "Docker refused to create ", name, ": ",
                                  DockerErrorMessage(created.body))),
                              kCreateFailed, {{"name", name}});
  }
  if (created.status != 201) {
    return DockerFailure("POST /containers/create", created);
  }
  IOT2MQTT_ASSIGN_OR_RETURN(
      rapidjson::Document doc,
      ParseAnswer(created.body, "POST /containers/create"));
  std::string id = StringAt(doc, {"Id"});
  if (!IsPlausibleContainerRef(id)) {
    return DockerFailure("POST /containers/create (no Id)", created);
  }
  IOT2MQTT_ASSIGN_OR_RETURN(
      DockerResponse started,
      api_.Call("POST", absl::StrCat("/containers/", id, "/start"),
                options_.request_timeout));
  if (started.status != 204 && started.status != 304) {
    absl::StatusOr<DockerResponse> removed =
        api_.Call("DELETE", absl::StrCat("/containers/", id, "?force=1&v=1"),
                  options_.request_timeout);
    (void)removed;
    return common::WithReason(absl::FailedPreconditionError(absl::StrCat(
                                  "container ", name, " would not start: ",
                                  DockerErrorMessage(started.body))),
                              kStartFailed, {{"name", name}});
  }
  IOT2MQTT_LOG(INFO)
          .With("runtime", name)
          .With("image", ImageTag(spec.connector))
      << "docker runtime: container created and started";
  return Inspect(id);
}

absl::StatusOr<std::vector<RuntimeInfo>> DockerRuntime::List() {
  std::string filters = absl::StrCat(R"({"label":[")", kLabelType, "=",
                                     kLabelTypeConnector, R"("]})");
  IOT2MQTT_ASSIGN_OR_RETURN(
      DockerResponse response,
      api_.Call(
          "GET",
          absl::StrCat("/containers/json?all=1&filters=", QueryEscape(filters)),
          options_.request_timeout));
  if (response.status != 200) {
    return DockerFailure("GET /containers/json", response);
  }
  rapidjson::Document doc;
  doc.Parse(response.body.data(), response.body.size());
  if (doc.HasParseError() || !doc.IsArray()) {
    return common::WithReason(
        absl::InternalError(
            "Docker: unreadable answer to GET /containers/json"),
        kDockerError);
  }
  std::vector<RuntimeInfo> out;
  for (const rapidjson::Value& summary : doc.GetArray()) {
    std::string id = StringAt(summary, {"Id"});
    absl::StatusOr<InspectedContainer> inspected =
        InspectOurs(api_, options_.request_timeout, id);
    if (absl::IsNotFound(inspected.status())) continue;  // Just removed.
    if (!inspected.ok()) return inspected.status();
    out.push_back(std::move(inspected->info));
  }
  std::sort(out.begin(), out.end(),
            [](const RuntimeInfo& a, const RuntimeInfo& b) {
              return a.name < b.name;
            });
  return out;
}

absl::StatusOr<RuntimeInfo> DockerRuntime::Inspect(absl::string_view id) {
  IOT2MQTT_ASSIGN_OR_RETURN(InspectedContainer inspected,
                            InspectOurs(api_, options_.request_timeout, id));
  return std::move(inspected.info);
}

absl::Status DockerRuntime::Lifecycle(absl::string_view action,
                                      absl::string_view id,
                                      std::optional<absl::Duration> grace) {
  IOT2MQTT_ASSIGN_OR_RETURN(InspectedContainer inspected,
                            InspectOurs(api_, options_.request_timeout, id));
  std::string path =
      absl::StrCat("/containers/", inspected.info.id, "/", action);
  absl::Duration timeout = options_.request_timeout;
  if (grace.has_value()) {
    absl::StrAppend(&path, "?t=", SecondsParameter(*grace));
    timeout += *grace;
  }
  IOT2MQTT_ASSIGN_OR_RETURN(DockerResponse response,
                            api_.Call("POST", path, timeout));
  if (response.status == 204 || response.status == 304) {
    IOT2MQTT_LOG(INFO).With("runtime", inspected.info.name)
        << "docker runtime: " << action;
    return absl::OkStatus();
  }
  if (response.status == 404) return NotFound(id);
  if (action == "start") {
    return common::WithReason(
        absl::FailedPreconditionError(absl::StrCat(
            "container ", inspected.info.name,
            " would not start: ", DockerErrorMessage(response.body))),
        kStartFailed, {{"name", inspected.info.name}});
  }
  return DockerFailure(absl::StrCat("POST /containers/{id}/", action),
                       response);
}

absl::Status DockerRuntime::Start(absl::string_view id) {
  return Lifecycle("start", id, std::nullopt);
}

absl::Status DockerRuntime::Stop(absl::string_view id, absl::Duration grace) {
  return Lifecycle("stop", id, grace);
}

absl::Status DockerRuntime::Restart(absl::string_view id,
                                    absl::Duration grace) {
  return Lifecycle("restart", id, grace);
}

absl::Status DockerRuntime::Remove(absl::string_view id) {
  IOT2MQTT_ASSIGN_OR_RETURN(InspectedContainer inspected,
                            InspectOurs(api_, options_.request_timeout, id));
  const RuntimeInfo& info = inspected.info;
  if (info.state == RuntimeState::kRunning ||
      info.state == RuntimeState::kRestarting ||
      info.state == RuntimeState::kPaused) {
    absl::Status stopped = Lifecycle("stop", info.id, kRemoveGrace);
    if (!stopped.ok() && !absl::IsNotFound(stopped)) return stopped;
  }
  IOT2MQTT_ASSIGN_OR_RETURN(
      DockerResponse response,
      api_.Call("DELETE", absl::StrCat("/containers/", info.id, "?force=1&v=1"),
                options_.request_timeout));
  if (response.status == 204 || response.status == 404) {
    IOT2MQTT_LOG(INFO).With("runtime", info.name) << "docker runtime: removed";
    return absl::OkStatus();
  }
  return DockerFailure("DELETE /containers/{id}", response);
}

absl::Status DockerRuntime::Logs(absl::string_view id,
                                 const LogOptions& options,
                                 const LogSink& sink) {
  IOT2MQTT_ASSIGN_OR_RETURN(InspectedContainer inspected,
                            InspectOurs(api_, options_.request_timeout, id));
  std::string path = absl::StrCat(
      "/containers/", inspected.info.id,
      "/logs?stdout=1&stderr=1&timestamps=1&tail=",
      options.tail < 0 ? std::string("all") : absl::StrCat(options.tail),
      "&follow=", options.follow ? "1" : "0");
  if (options.since.has_value()) {
    absl::StrAppend(&path, "&since=", SinceParameter(*options.since));
  }
  LogStreamDecoder decoder(inspected.tty, sink);
  absl::StatusOr<DockerResponse> response = api_.Stream(
      "GET", path,
      options.follow ? absl::InfiniteDuration() : options_.request_timeout,
      [&decoder](absl::string_view chunk) { return decoder.Feed(chunk); },
      options.cancelled);
  if (absl::IsCancelled(response.status())) return absl::OkStatus();
  if (!response.ok()) return response.status();
  if (response->status == 404) return NotFound(id);
  if (response->status != 200) {
    return DockerFailure("GET /containers/{id}/logs", *response);
  }
  decoder.Finish();
  return absl::OkStatus();
}

absl::StatusOr<RuntimeStats> DockerRuntime::Stats(absl::string_view id) {
  IOT2MQTT_ASSIGN_OR_RETURN(InspectedContainer inspected,
                            InspectOurs(api_, options_.request_timeout, id));
  IOT2MQTT_ASSIGN_OR_RETURN(
      DockerResponse response,
      api_.Call("GET",
                absl::StrCat("/containers/", inspected.info.id,
                             "/stats?stream=false"),
                options_.request_timeout));
  if (response.status == 404) return NotFound(id);
  if (response.status != 200) {
    return DockerFailure("GET /containers/{id}/stats", response);
  }
  return RuntimeStatsFromJson(response.body, inspected.memory_limit_set);
}

}  // namespace iot2mqtt::orchestrator
