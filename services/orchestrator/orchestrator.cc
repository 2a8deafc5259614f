#include "services/orchestrator/orchestrator.h"

#include <sodium.h>

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "rapidjson/document.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"
#include "services/common/status.h"
#include "services/config/file_io.h"

namespace iot2mqtt::orchestrator {
namespace {

// Instance states (InstanceRuntime.state).
constexpr char kStateRunning[] = "running";
constexpr char kStateStarting[] = "starting";
constexpr char kStateStopped[] = "stopped";
constexpr char kStateCrashLoop[] = "crash_loop";
constexpr char kStateBuildFailed[] = "build_failed";
constexpr char kStateMissing[] = "missing";
constexpr char kStateError[] = "error";
constexpr const char* kStates[] = {
    kStateRunning,     kStateStarting, kStateStopped, kStateCrashLoop,
    kStateBuildFailed, kStateMissing,  kStateError};

bool IsUp(RuntimeState state) {
  return state == RuntimeState::kRunning ||
         state == RuntimeState::kRestarting || state == RuntimeState::kPaused;
}

std::string Seconds(absl::Duration d) {
  return absl::StrCat(absl::ToDoubleSeconds(d), " s");
}

absl::Status InstanceNotFound(absl::string_view instance_id) {
  return common::WithReason(
      absl::NotFoundError(absl::StrCat("Instance ", instance_id, " not found")),
      kInstanceNotFound, {{"instance_id", std::string(instance_id)}});
}

}  // namespace

// --- Metrics -----------------------------------------------------------------

class OrchestratorMetrics {
 public:
  explicit OrchestratorMetrics(prometheus::Registry& registry)
      : transitions_(prometheus::BuildCounter()
                         .Name("iot_orchestrator_transitions_total")
                         .Help("Instance state transitions by target state.")
                         .Register(registry)),
        actions_(prometheus::BuildCounter()
                     .Name("iot_orchestrator_actions_total")
                     .Help("Runtime actions by action and outcome.")
                     .Register(registry)),
        runtimes_(prometheus::BuildGauge()
                      .Name("iot_orchestrator_runtimes")
                      .Help("Configured instances by state.")
                      .Register(registry)),
        crash_loops_(prometheus::BuildGauge()
                         .Name("iot_orchestrator_crash_loops")
                         .Help("Instances in a crash loop.")
                         .Register(registry)
                         .Add({})),
        reconcile_(prometheus::BuildHistogram()
                       .Name("iot_orchestrator_reconcile_seconds")
                       .Help("Duration of full reconcile passes.")
                       .Register(registry)
                       .Add({}, prometheus::Histogram::BucketBoundaries{
                                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                    2.5, 5, 10, 30, 60})) {
    for (const char* state : kStates) {
      runtimes_.Add({{"state", state}}).Set(0);
    }
  }

  void Transition(absl::string_view to) {
    transitions_.Add({{"to", std::string(to)}}).Increment();
  }
  void Action(absl::string_view action, bool ok) {
    actions_
        .Add({{"action", std::string(action)},
              {"outcome", ok ? "success" : "error"}})
        .Increment();
  }
  void SetStates(const std::map<std::string, int>& counts, int crash_loops) {
    for (const char* state : kStates) {
      auto it = counts.find(state);
      runtimes_.Add({{"state", state}})
          .Set(it == counts.end() ? 0 : it->second);
    }
    crash_loops_.Set(crash_loops);
  }
  void Reconcile(absl::Duration took) {
    reconcile_.Observe(absl::ToDoubleSeconds(took));
  }

 private:
  prometheus::Family<prometheus::Counter>& transitions_;
  prometheus::Family<prometheus::Counter>& actions_;
  prometheus::Family<prometheus::Gauge>& runtimes_;
  prometheus::Gauge& crash_loops_;
  prometheus::Histogram& reconcile_;
};

// --- Per-instance state --------------------------------------------------

struct Orchestrator::Instance {
  std::string instance_id;
  std::string connector;
  bool configured = false;
  bool enabled = true;
  std::string state = kStateMissing;
  std::string runtime_id;
  std::string hash;         // Of the last spec built.
  std::string failed_hash;  // The spec that crash-looped or failed to build.
  bool crash_loop = false;
  bool build_failed = false;
  std::deque<absl::Time> crashes;
  int restarts = 0;
  std::string last_error;
  int last_exit_code = 0;
  std::vector<std::string> last_log_lines;
  absl::Time updated_at = absl::Now();
  bool pending_restart = false;
  absl::Time next_restart_at = absl::InfinitePast();
  absl::Duration backoff;
  int seen_restart_count = -1;  // Docker's RestartCount; -1: no baseline.
  std::string seen_runtime_id;
};

// --- Construction ----------------------------------------------------------

Orchestrator::Orchestrator(Runtime& runtime, ConfigSource& config,
                           BridgeClient& bridge, OrchestratorOptions options,
                           prometheus::Registry* registry)
    : runtime_(runtime),
      config_(config),
      bridge_(bridge),
      options_(std::move(options)),
      paths_{options_.data_dir, options_.connectors_dir.empty()
                                    ? options_.data_dir + "/connectors"
                                    : options_.connectors_dir} {
  if (registry == nullptr) {
    own_registry_ = std::make_shared<prometheus::Registry>();
    registry = own_registry_.get();
  }
  metrics_ = std::make_unique<OrchestratorMetrics>(*registry);
}

Orchestrator::~Orchestrator() { Shutdown(); }

absl::Status Orchestrator::Start() {
  if (sodium_init() < 0) return absl::InternalError("libsodium init failed");
  IOT2MQTT_RETURN_IF_ERROR(config::MakeDirectories(paths_.SecretsDir(), 0700));
  LoadState();
  {
    absl::MutexLock lock(&mu_);
    if (started_) return absl::OkStatus();
    started_ = true;
  }
  watcher_ = std::thread([this] { WatchLoop(); });
  loop_ = std::thread([this] { MainLoop(); });
  return absl::OkStatus();
}

void Orchestrator::Shutdown() {
  if (shutting_down_.exchange(true)) return;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  config_.CancelWatch();
  if (watcher_.joinable()) watcher_.join();
  if (loop_.joinable()) loop_.join();
  if (!options_.stop_runtimes_on_shutdown) return;
  absl::MutexLock action(&action_mu_);
  absl::StatusOr<std::vector<RuntimeInfo>> listed = runtime_.List();
  if (!listed.ok()) return;
  for (const RuntimeInfo& info : *listed) {
    if (!IsUp(info.state)) continue;
    absl::Status s = runtime_.Stop(info.id, options_.stop_grace);
    IOT2MQTT_LOG(INFO).With("instance", info.instance_id)
        << "stopped at shutdown" << (s.ok() ? "" : ": ")
        << (s.ok() ? "" : s.message());
  }
}

void Orchestrator::RequestReconcile() {
  absl::MutexLock lock(&mu_);
  reconcile_requested_ = true;
}

bool Orchestrator::ReconcileNow() {
  absl::MutexLock action(&action_mu_);
  return ReconcileLocked();
}

// --- Threads -----------------------------------------------------------------

void Orchestrator::WatchLoop() {
  absl::Duration backoff = absl::Seconds(1);
  while (true) {
    std::string after;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      after = cursor_;
    }
    bool got_event = false;
    absl::Status status = config_.Watch(after, [&](const ConfigChange& change) {
      got_event = true;
      absl::MutexLock lock(&mu_);
      if (!change.cursor.empty()) cursor_ = change.cursor;
      if (change.resync || change.kind != ConfigChange::Kind::kOther) {
        reconcile_requested_ = true;
      }
    });
    if (got_event) backoff = absl::Seconds(1);
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    IOT2MQTT_LOG(WARNING).With("retry_in_s", absl::ToInt64Seconds(backoff))
        << "config change stream ended: " << status.message();
    // Changes may have been missed while disconnected without a cursor.
    if (cursor_.empty()) reconcile_requested_ = true;
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), backoff);
    backoff = std::min(backoff * 2, absl::Seconds(10));
  }
}

void Orchestrator::MainLoop() {
  absl::Time next_full = absl::Now();
  absl::Time next_poll = absl::Now();
  while (true) {
    bool full = false;
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || reconcile_requested_;
      };
      mu_.AwaitWithDeadline(absl::Condition(&wake),
                            std::min(next_full, next_poll));
      if (stopping_) return;
      full = reconcile_requested_ || absl::Now() >= next_full;
      reconcile_requested_ = false;
    }
    absl::MutexLock action(&action_mu_);
    if (full) {
      bool ok = ReconcileLocked();
      // When config or the runtime did not answer, try again soon.
      next_full = absl::Now() + (ok ? options_.reconcile_interval
                                    : std::min(options_.reconcile_interval,
                                               absl::Seconds(2)));
    }
    if (absl::Now() >= next_poll || full) {
      WatchdogLocked();
      next_poll = absl::Now() + options_.poll_interval;
    }
  }
}

// --- Reconcile ---------------------------------------------------------------

bool Orchestrator::ReconcileLocked() {
  const absl::Time start = absl::Now();
  absl::StatusOr<std::vector<ConfiguredInstance>> configured =
      config_.ListInstances();
  if (!configured.ok()) {
    IOT2MQTT_LOG(WARNING) << "reconcile skipped: can't list instances: "
                          << configured.status().message();
    return false;
  }
  absl::StatusOr<std::vector<RuntimeInfo>> actual = runtime_.List();
  if (!actual.ok()) {
    IOT2MQTT_LOG(WARNING) << "reconcile skipped: can't list runtimes: "
                          << actual.status().message();
    return false;
  }
  absl::StatusOr<std::map<std::string, std::string>> mqtt = config_.MqttEnv();
  if (!mqtt.ok()) {
    IOT2MQTT_LOG(WARNING) << "reconcile skipped: can't read MQTT settings: "
                          << mqtt.status().message();
    return false;
  }
  std::map<std::string, const ConfiguredInstance*> wanted;
  for (const ConfiguredInstance& instance : *configured) {
    wanted[instance.instance_id] = &instance;
  }
  std::map<std::string, const RuntimeInfo*> matched;
  std::vector<const RuntimeInfo*> orphans;
  for (const RuntimeInfo& info : *actual) {
    auto it = wanted.find(info.instance_id);
    if (it == wanted.end() || it->second->connector != info.connector ||
        matched.count(info.instance_id) > 0) {
      orphans.push_back(&info);
    } else {
      matched[info.instance_id] = &info;
    }
  }
  for (const ConfiguredInstance& instance : *configured) {
    auto it = matched.find(instance.instance_id);
    absl::Status status = ConvergeLocked(
        instance, *mqtt, it == matched.end() ? nullptr : it->second, false);
    if (!status.ok()) {
      IOT2MQTT_LOG(WARNING).With("instance", instance.instance_id)
          << "converge failed: " << status.message();
    }
  }
  for (const RuntimeInfo* orphan : orphans) RemoveOrphanLocked(*orphan);
  // Secrets files of instances that are gone.
  absl::StatusOr<std::vector<std::string>> files =
      config::ListDirectory(paths_.SecretsDir());
  if (files.ok()) {
    for (const std::string& name : *files) {
      if (!absl::EndsWith(name, ".json")) continue;
      std::string id = name.substr(0, name.size() - 5);
      if (wanted.count(id) > 0) continue;
      absl::Status s = RemoveSecretsFile(paths_.SecretsFile(id));
      IOT2MQTT_LOG(INFO).With("instance", id)
          << "removed the secrets file of a deleted instance"
          << (s.ok() ? "" : ": ") << (s.ok() ? "" : s.message());
    }
  }
  {
    absl::MutexLock lock(&mu_);
    for (auto it = instances_.begin(); it != instances_.end();) {
      if (wanted.count(it->first) == 0) {
        it = instances_.erase(it);
      } else {
        ++it;
      }
    }
    bool changed = false;
    for (auto it = user_stopped_.begin(); it != user_stopped_.end();) {
      if (wanted.count(*it) == 0) {
        it = user_stopped_.erase(it);
        changed = true;
      } else {
        ++it;
      }
    }
    if (changed) SaveStateLocked();
    UpdateGauges();
  }
  metrics_->Reconcile(absl::Now() - start);
  IOT2MQTT_LOG(DEBUG)
          .With("instances", static_cast<int>(configured->size()))
          .With("runtimes", static_cast<int>(actual->size()))
      << "reconciled";
  return true;
}

absl::Status Orchestrator::ConvergeLocked(
    const ConfiguredInstance& configured,
    const std::map<std::string, std::string>& mqtt, const RuntimeInfo* actual,
    bool start_now) {
  const std::string& id = configured.instance_id;
  absl::StatusOr<InstanceRuntimeConfig> runtime_config =
      config_.GetRuntimeConfig(configured.connector, id);
  if (absl::IsNotFound(runtime_config.status())) {
    return absl::OkStatus();  // Deleted meanwhile: the next pass cleans up.
  }
  if (!runtime_config.ok()) return runtime_config.status();
  bool user_stopped = false;
  {
    absl::MutexLock lock(&mu_);
    Instance& instance = InstanceLocked(id);
    instance.connector = configured.connector;
    instance.configured = true;
    instance.enabled = runtime_config->enabled;
    user_stopped = user_stopped_.count(id) > 0;
    if (actual != nullptr) instance.runtime_id = actual->id;
  }
  if (!runtime_config->enabled || user_stopped) {
    const char* why =
        !runtime_config->enabled ? "instance disabled" : "stopped by the user";
    if (actual != nullptr && IsUp(actual->state)) {
      absl::Status s = runtime_.Stop(actual->id, options_.stop_grace);
      Count("stop", s);
      if (!s.ok()) {
        absl::MutexLock lock(&mu_);
        Instance& instance = InstanceLocked(id);
        instance.last_error = std::string(s.message());
        Transition(instance, kStateError, s.message());
        return s;
      }
    }
    absl::MutexLock lock(&mu_);
    Instance& instance = InstanceLocked(id);
    instance.pending_restart = false;
    instance.next_restart_at = absl::InfinitePast();
    Transition(instance, kStateStopped, why);
    return absl::OkStatus();
  }

  SpecInputs inputs;
  inputs.connector = configured.connector;
  inputs.instance_id = id;
  inputs.instance_json = runtime_config->instance_json;
  inputs.secrets_json = runtime_config->secrets_json;
  inputs.mqtt_env = mqtt;
  inputs.log_level = options_.connector_log_level;
  absl::StatusOr<RuntimeSpec> spec = BuildSpec(paths_, inputs);
  absl::Status written = absl::OkStatus();
  if (spec.ok()) {
    written =
        WriteSecretsFile(spec->secrets_file, inputs.secrets_json).status();
  }
  if (!inputs.secrets_json.empty()) {
    sodium_memzero(&inputs.secrets_json[0], inputs.secrets_json.size());
    sodium_memzero(&runtime_config->secrets_json[0],
                   runtime_config->secrets_json.size());
  }
  if (!spec.ok() || !written.ok()) {
    absl::Status s = spec.ok() ? written : spec.status();
    absl::MutexLock lock(&mu_);
    Instance& instance = InstanceLocked(id);
    instance.last_error = std::string(s.message());
    Transition(instance, spec.ok() ? kStateError : kStateBuildFailed,
               s.message());
    return s;
  }
  {
    absl::MutexLock lock(&mu_);
    Instance& instance = InstanceLocked(id);
    instance.hash = spec->config_hash;
    if ((instance.crash_loop || instance.build_failed) &&
        instance.failed_hash != spec->config_hash) {
      IOT2MQTT_LOG(INFO).With("instance", id)
          << "configuration changed: clearing the "
          << (instance.crash_loop ? "crash loop" : "build failure");
      ClearFailure(instance);
    }
    if (instance.crash_loop || instance.build_failed) {
      return absl::OkStatus();  // Kept until retried or changed.
    }
    if (instance.state == kStateBuildFailed) instance.state = kStateMissing;
  }
  if (actual != nullptr && actual->config_hash != spec->config_hash) {
    IOT2MQTT_LOG(INFO).With("instance", id)
        << "configuration changed: recreating the runtime";
    absl::Status s = runtime_.Remove(actual->id);
    Count("remove", s);
    if (!s.ok() && !absl::IsNotFound(s)) {
      absl::MutexLock lock(&mu_);
      Instance& instance = InstanceLocked(id);
      instance.last_error = std::string(s.message());
      Transition(instance, kStateError, s.message());
      return s;
    }
    absl::MutexLock lock(&mu_);
    Instance& instance = InstanceLocked(id);
    instance.crashes.clear();
    instance.backoff = options_.backoff_initial;
    instance.pending_restart = false;
    instance.seen_restart_count = -1;
    actual = nullptr;
  }
  if (actual == nullptr) return CreateLocked(*spec);

  // Adopt what runs with this configuration.
  if (actual->state == RuntimeState::kRunning) {
    absl::MutexLock lock(&mu_);
    Instance& instance = InstanceLocked(id);
    Transition(instance, kStateRunning,
               instance.state == kStateMissing ? "adopted" : "running");
    return absl::OkStatus();
  }
  if (start_now && actual->state != RuntimeState::kRestarting) {
    absl::Status s = runtime_.Start(actual->id);
    Count("start", s);
    absl::MutexLock lock(&mu_);
    Instance& instance = InstanceLocked(id);
    instance.pending_restart = false;
    instance.next_restart_at = absl::InfinitePast();
    if (!s.ok()) {
      instance.last_error = std::string(s.message());
      Transition(instance, kStateError, s.message());
      return s;
    }
    Transition(instance, kStateRunning, "started");
  }
  return absl::OkStatus();  // Exited: the watchdog restarts it.
}

absl::Status Orchestrator::ConvergeOneLocked(
    const ConfiguredInstance& configured, bool start_now) {
  IOT2MQTT_ASSIGN_OR_RETURN(auto mqtt, config_.MqttEnv());
  IOT2MQTT_ASSIGN_OR_RETURN(std::optional<RuntimeInfo> actual,
                            RuntimeOfLocked(configured.instance_id));
  if (actual.has_value() && actual->connector != configured.connector) {
    RemoveOrphanLocked(*actual);
    actual.reset();
  }
  return ConvergeLocked(configured, mqtt, actual ? &*actual : nullptr,
                        start_now);
}

absl::Status Orchestrator::CreateLocked(const RuntimeSpec& spec) {
  {
    absl::MutexLock lock(&mu_);
    Transition(InstanceLocked(spec.instance_id), kStateStarting,
               "creating the runtime");
  }
  absl::Status prepared =
      runtime_.Prepare(spec, [&spec](absl::string_view line) {
        IOT2MQTT_LOG(DEBUG).With("instance", spec.instance_id) << line;
      });
  Count("prepare", prepared);
  if (!prepared.ok()) {
    absl::MutexLock lock(&mu_);
    Instance& instance = InstanceLocked(spec.instance_id);
    instance.last_error = std::string(prepared.message());
    if (absl::IsFailedPrecondition(prepared)) {
      instance.build_failed = true;
      instance.failed_hash = spec.config_hash;
      Transition(instance, kStateBuildFailed, prepared.message());
      SaveStateLocked();
    } else {
      instance.next_restart_at = absl::Now() + instance.backoff;
      instance.backoff = std::min(instance.backoff * 2, options_.backoff_max);
      Transition(instance, kStateError, prepared.message());
    }
    return prepared;
  }
  absl::StatusOr<RuntimeInfo> created = runtime_.Create(spec);
  if (absl::IsAlreadyExists(created.status())) {
    // One with our name that List() did not show: replace it.
    absl::Status removed =
        runtime_.Remove(RuntimeName(spec.connector, spec.instance_id));
    Count("remove", removed);
    created = runtime_.Create(spec);
  }
  Count("create", created.status());
  absl::MutexLock lock(&mu_);
  Instance& instance = InstanceLocked(spec.instance_id);
  if (!created.ok()) {
    instance.last_error = std::string(created.status().message());
    instance.next_restart_at = absl::Now() + instance.backoff;
    instance.backoff = std::min(instance.backoff * 2, options_.backoff_max);
    Transition(instance, kStateError, created.status().message());
    return created.status();
  }
  instance.runtime_id = created->id;
  instance.pending_restart = false;
  instance.next_restart_at = absl::InfinitePast();
  instance.seen_restart_count = created->restart_count;
  instance.seen_runtime_id = created->id;
  instance.last_error.clear();
  Transition(
      instance,
      created->state == RuntimeState::kRunning ? kStateRunning : kStateStarting,
      "runtime created");
  return absl::OkStatus();
}

void Orchestrator::RemoveOrphanLocked(const RuntimeInfo& info) {
  IOT2MQTT_LOG(INFO)
          .With("instance", info.instance_id)
          .With("connector", info.connector)
          .With("runtime", info.name)
      << "removing a runtime without a configured instance";
  absl::Status removed = runtime_.Remove(info.id);
  Count("remove", removed);
  if (!removed.ok() && !absl::IsNotFound(removed)) {
    IOT2MQTT_LOG(WARNING).With("instance", info.instance_id)
        << "can't remove the orphan runtime: " << removed.message();
    return;
  }
  if (IsValidName(info.instance_id)) {
    absl::StatusOr<int64_t> cleared =
        bridge_.ClearInstanceTopics(info.instance_id);
    Count("clear_topics", cleared.status());
    if (!cleared.ok()) {
      IOT2MQTT_LOG(WARNING).With("instance", info.instance_id)
          << "retained topics not cleared: " << cleared.status().message();
    }
    absl::Status s = RemoveSecretsFile(paths_.SecretsFile(info.instance_id));
    if (!s.ok()) {
      IOT2MQTT_LOG(WARNING).With("instance", info.instance_id)
          << "can't remove the secrets file: " << s.message();
    }
  }
}

// --- Watchdog ----------------------------------------------------------------

bool Orchestrator::RecordCrash(Instance& instance, absl::Time now) {
  instance.crashes.push_back(now);
  while (!instance.crashes.empty() &&
         now - instance.crashes.front() > options_.crash_loop_window) {
    instance.crashes.pop_front();
  }
  return static_cast<int>(instance.crashes.size()) >=
         options_.crash_loop_restarts;
}

void Orchestrator::WatchdogLocked() {
  absl::StatusOr<std::vector<RuntimeInfo>> actual = runtime_.List();
  if (!actual.ok()) return;
  const absl::Time now = absl::Now();
  enum class Decision { kNone, kStart, kStateCrashLoop };
  std::vector<std::pair<const RuntimeInfo*, Decision>> decisions;
  std::set<std::string> seen;
  {
    absl::MutexLock lock(&mu_);
    for (const RuntimeInfo& info : *actual) {
      auto it = instances_.find(info.instance_id);
      if (it == instances_.end()) continue;
      Instance& instance = *it->second;
      if (!instance.configured || instance.connector != info.connector) {
        continue;
      }
      seen.insert(info.instance_id);
      if (!instance.enabled || user_stopped_.count(info.instance_id) > 0 ||
          instance.crash_loop || instance.build_failed) {
        continue;
      }
      if (!instance.hash.empty() && info.config_hash != instance.hash) {
        reconcile_requested_ = true;  // Not what we would run.
        continue;
      }
      instance.runtime_id = info.id;
      // Docker restarts crashed containers itself: count its restarts.
      if (instance.seen_restart_count < 0 ||
          instance.seen_runtime_id != info.id) {
        instance.seen_restart_count = info.restart_count;
        instance.seen_runtime_id = info.id;
      } else if (info.restart_count > instance.seen_restart_count) {
        int delta = info.restart_count - instance.seen_restart_count;
        instance.seen_restart_count = info.restart_count;
        instance.restarts += delta;
        if (info.exit_code) instance.last_exit_code = *info.exit_code;
        bool loop = false;
        for (int i = 0; i < delta; ++i) loop = RecordCrash(instance, now);
        IOT2MQTT_LOG(WARNING)
                .With("instance", info.instance_id)
                .With("restart_count", info.restart_count)
            << "the runtime restarted after a crash";
        if (loop) {
          decisions.emplace_back(&info, Decision::kStateCrashLoop);
          continue;
        }
      }
      switch (info.state) {
        case RuntimeState::kRunning:
          if (info.started_at != absl::InfinitePast() &&
              now - info.started_at >= options_.backoff_max) {
            instance.backoff = options_.backoff_initial;
          }
          instance.pending_restart = false;
          Transition(instance, kStateRunning, "running");
          break;
        case RuntimeState::kRestarting:
          Transition(instance, kStateStarting, "restarting");
          break;
        case RuntimeState::kPaused:
          break;
        case RuntimeState::kCreated:
          decisions.emplace_back(&info, Decision::kStart);
          break;
        case RuntimeState::kExited:
        case RuntimeState::kDead:
          if (!instance.pending_restart) {
            if (info.exit_code) instance.last_exit_code = *info.exit_code;
            if (RecordCrash(instance, now)) {
              decisions.emplace_back(&info, Decision::kStateCrashLoop);
              break;
            }
            instance.pending_restart = true;
            instance.next_restart_at = now + instance.backoff;
            std::string why = absl::StrCat(
                "exited",
                info.exit_code ? absl::StrCat(" with code ", *info.exit_code)
                               : std::string(),
                "; restart in ", Seconds(instance.backoff));
            instance.backoff =
                std::min(instance.backoff * 2, options_.backoff_max);
            Transition(instance, kStateStarting, why);
          } else if (now >= instance.next_restart_at) {
            decisions.emplace_back(&info, Decision::kStart);
          }
          break;
      }
    }
    // Desired-running instances whose runtime vanished: create them again
    // (not faster than their backoff after a failed create).
    for (auto& [id, instance] : instances_) {
      if (!instance->configured || !instance->enabled || instance->crash_loop ||
          instance->build_failed || user_stopped_.count(id) > 0 ||
          seen.count(id) > 0) {
        continue;
      }
      if (instance->state != kStateMissing && instance->state != kStateError) {
        Transition(*instance, kStateMissing, "runtime gone");
      }
      if (now >= instance->next_restart_at) {
        reconcile_requested_ = true;
        // Not every poll while creating it keeps failing.
        instance->next_restart_at = now + instance->backoff;
      }
    }
  }
  for (const auto& [info, decision] : decisions) {
    if (decision == Decision::kStateCrashLoop) {
      DeclareCrashLoopLocked(
          *info, absl::StrCat(options_.crash_loop_restarts, " crashes within ",
                              Seconds(options_.crash_loop_window)));
      continue;
    }
    absl::Status s = runtime_.Start(info->id);
    Count("restart", s);
    absl::MutexLock lock(&mu_);
    Instance& instance = InstanceLocked(info->instance_id);
    if (!s.ok()) {
      instance.last_error = std::string(s.message());
      instance.next_restart_at = absl::Now() + instance.backoff;
      Transition(instance, kStateError, s.message());
      continue;
    }
    if (info->state != RuntimeState::kCreated) ++instance.restarts;
    instance.pending_restart = false;
    instance.next_restart_at = absl::InfinitePast();
    Transition(instance, kStateRunning,
               info->state == RuntimeState::kCreated
                   ? "started"
                   : "restarted by the watchdog");
  }
  absl::MutexLock lock(&mu_);
  UpdateGauges();
}

void Orchestrator::DeclareCrashLoopLocked(const RuntimeInfo& info,
                                          absl::string_view why) {
  std::deque<std::string> lines;
  LogOptions log_options;
  log_options.tail = options_.crash_log_lines;
  absl::Status logs =
      runtime_.Logs(info.id, log_options, [&](const LogLine& line) {
        lines.push_back(line.text);
        if (static_cast<int>(lines.size()) > options_.crash_log_lines) {
          lines.pop_front();
        }
        return true;
      });
  if (!logs.ok()) {
    IOT2MQTT_LOG(WARNING).With("instance", info.instance_id)
        << "can't read the last log lines: " << logs.message();
  }
  if (IsUp(info.state)) {
    absl::Status s = runtime_.Stop(info.id, options_.stop_grace);
    Count("stop", s);
  }
  absl::MutexLock lock(&mu_);
  Instance& instance = InstanceLocked(info.instance_id);
  instance.crash_loop = true;
  instance.failed_hash =
      instance.hash.empty() ? info.config_hash : instance.hash;
  instance.last_log_lines.assign(lines.begin(), lines.end());
  if (info.exit_code) instance.last_exit_code = *info.exit_code;
  instance.pending_restart = false;
  instance.next_restart_at = absl::InfinitePast();
  instance.last_error = absl::StrCat("crash loop: ", why, "; last exit code ",
                                     instance.last_exit_code);
  Transition(instance, kStateCrashLoop, why);
  SaveStateLocked();
  UpdateGauges();
}

// --- Instance actions -----------------------------------------------------

absl::StatusOr<ConfiguredInstance> Orchestrator::FindInstance(
    absl::string_view instance_id) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateInstanceId(instance_id));
  absl::StatusOr<std::vector<ConfiguredInstance>> listed =
      config_.ListInstances();
  if (!listed.ok()) {
    if (common::GetErrorInfo(listed.status()).has_value()) {
      return listed.status();
    }
    return common::WithReason(
        absl::UnavailableError(absl::StrCat(
            "the config service did not answer: ", listed.status().message())),
        kConfigUnavailable);
  }
  for (ConfiguredInstance& instance : *listed) {
    if (instance.instance_id == instance_id) return std::move(instance);
  }
  return InstanceNotFound(instance_id);
}

absl::StatusOr<std::optional<RuntimeInfo>> Orchestrator::RuntimeOfLocked(
    absl::string_view instance_id) {
  IOT2MQTT_ASSIGN_OR_RETURN(std::vector<RuntimeInfo> listed, runtime_.List());
  for (RuntimeInfo& info : listed) {
    if (info.instance_id == instance_id) {
      return std::optional<RuntimeInfo>(std::move(info));
    }
  }
  return std::optional<RuntimeInfo>();
}

absl::Status Orchestrator::StartInstance(absl::string_view instance_id) {
  IOT2MQTT_ASSIGN_OR_RETURN(ConfiguredInstance configured,
                            FindInstance(instance_id));
  if (!configured.enabled) {
    return common::WithReason(
        absl::FailedPreconditionError(absl::StrCat(
            "Instance ", instance_id, " is disabled; enable it first")),
        kInstanceDisabled);
  }
  absl::MutexLock action(&action_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (user_stopped_.erase(std::string(instance_id)) > 0) SaveStateLocked();
    Instance& instance = InstanceLocked(instance_id);
    ClearFailure(instance);
    instance.restarts = 0;
  }
  absl::Status s = ConvergeOneLocked(configured, true);
  Count("start_instance", s);
  return s;
}

absl::Status Orchestrator::StopInstance(absl::string_view instance_id) {
  IOT2MQTT_ASSIGN_OR_RETURN(ConfiguredInstance configured,
                            FindInstance(instance_id));
  absl::MutexLock action(&action_mu_);
  {
    absl::MutexLock lock(&mu_);
    InstanceLocked(instance_id).connector = configured.connector;
    user_stopped_.insert(std::string(instance_id));
    SaveStateLocked();
  }
  IOT2MQTT_ASSIGN_OR_RETURN(std::optional<RuntimeInfo> actual,
                            RuntimeOfLocked(instance_id));
  absl::Status s = absl::OkStatus();
  if (actual.has_value() && IsUp(actual->state)) {
    s = runtime_.Stop(actual->id, options_.stop_grace);
  }
  Count("stop_instance", s);
  absl::MutexLock lock(&mu_);
  Instance& instance = InstanceLocked(instance_id);
  instance.pending_restart = false;
  instance.next_restart_at = absl::InfinitePast();
  if (!s.ok()) {
    instance.last_error = std::string(s.message());
    Transition(instance, kStateError, s.message());
    return s;
  }
  Transition(instance, kStateStopped, "stopped by the user");
  UpdateGauges();
  return absl::OkStatus();
}

absl::Status Orchestrator::RestartInstance(absl::string_view instance_id) {
  IOT2MQTT_ASSIGN_OR_RETURN(ConfiguredInstance configured,
                            FindInstance(instance_id));
  if (!configured.enabled) {
    return common::WithReason(
        absl::FailedPreconditionError(absl::StrCat(
            "Instance ", instance_id, " is disabled; enable it first")),
        kInstanceDisabled);
  }
  absl::MutexLock action(&action_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (user_stopped_.erase(std::string(instance_id)) > 0) SaveStateLocked();
    ClearFailure(InstanceLocked(instance_id));
  }
  IOT2MQTT_ASSIGN_OR_RETURN(std::optional<RuntimeInfo> before,
                            RuntimeOfLocked(instance_id));
  IOT2MQTT_RETURN_IF_ERROR(ConvergeOneLocked(configured, true));
  std::string hash;
  {
    absl::MutexLock lock(&mu_);
    hash = InstanceLocked(instance_id).hash;
  }
  // Converging recreated or started it unless it was running as wanted.
  if (before.has_value() && before->state == RuntimeState::kRunning &&
      before->config_hash == hash) {
    absl::Status s = runtime_.Restart(before->id, options_.stop_grace);
    Count("restart_instance", s);
    absl::MutexLock lock(&mu_);
    Instance& instance = InstanceLocked(instance_id);
    if (!s.ok()) {
      instance.last_error = std::string(s.message());
      Transition(instance, kStateError, s.message());
      return s;
    }
    Transition(instance, kStateRunning, "restarted by the user");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Orchestrator::DeleteInstance(
    absl::string_view instance_id) {
  IOT2MQTT_ASSIGN_OR_RETURN(ConfiguredInstance configured,
                            FindInstance(instance_id));
  absl::MutexLock action(&action_mu_);
  IOT2MQTT_ASSIGN_OR_RETURN(std::optional<RuntimeInfo> actual,
                            RuntimeOfLocked(instance_id));
  if (actual.has_value()) {
    absl::Status removed = runtime_.Remove(actual->id);
    Count("remove", removed);
    if (!removed.ok() && !absl::IsNotFound(removed)) return removed;
  }
  absl::Status deleted =
      config_.DeleteInstance(configured.connector, instance_id);
  Count("delete_instance", deleted);
  if (absl::IsNotFound(deleted)) return InstanceNotFound(instance_id);
  if (!deleted.ok()) return deleted;
  absl::Status secrets = RemoveSecretsFile(paths_.SecretsFile(instance_id));
  if (!secrets.ok()) {
    IOT2MQTT_LOG(WARNING).With("instance", instance_id)
        << "can't remove the secrets file: " << secrets.message();
  }
  {
    absl::MutexLock lock(&mu_);
    user_stopped_.erase(std::string(instance_id));
    instances_.erase(std::string(instance_id));
    SaveStateLocked();
    UpdateGauges();
  }
  IOT2MQTT_LOG(INFO)
          .With("instance", instance_id)
          .With("connector", configured.connector)
      << "instance deleted";
  absl::StatusOr<int64_t> cleared = bridge_.ClearInstanceTopics(instance_id);
  Count("clear_topics", cleared.status());
  if (!cleared.ok()) {
    IOT2MQTT_LOG(WARNING).With("instance", instance_id)
        << "retained topics not cleared: " << cleared.status().message();
    return std::string(
        "; its MQTT topics were not cleared (the mqtt-bridge did not "
        "answer)");
  }
  return std::string();
}

absl::Status Orchestrator::RetryInstance(absl::string_view connector,
                                         absl::string_view instance_id) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateConnectorName(connector));
  IOT2MQTT_ASSIGN_OR_RETURN(ConfiguredInstance configured,
                            FindInstance(instance_id));
  if (configured.connector != connector) return InstanceNotFound(instance_id);
  absl::MutexLock action(&action_mu_);
  {
    absl::MutexLock lock(&mu_);
    Instance& instance = InstanceLocked(instance_id);
    ClearFailure(instance);
    instance.restarts = 0;
  }
  absl::Status s = ConvergeOneLocked(configured, true);
  Count("retry_instance", s);
  return s;
}

std::vector<InstanceRuntimeView> Orchestrator::ListInstanceRuntimes() {
  std::vector<InstanceRuntimeView> views;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, instance] : instances_) {
    if (!instance->configured) continue;
    InstanceRuntimeView view;
    view.instance_id = id;
    view.connector = instance->connector;
    view.desired_running = instance->enabled && user_stopped_.count(id) == 0;
    view.state = instance->state;
    view.container_id = instance->runtime_id;
    view.restarts = instance->restarts;
    view.crash_loop = instance->crash_loop;
    view.last_error = instance->last_error;
    view.last_exit_code = instance->last_exit_code;
    view.last_log_lines = instance->last_log_lines;
    view.updated_at = instance->updated_at;
    view.next_restart_at = instance->pending_restart ? instance->next_restart_at
                                                     : absl::InfinitePast();
    views.push_back(std::move(view));
  }
  return views;
}

std::optional<InstanceRuntimeView> Orchestrator::GetInstanceRuntime(
    absl::string_view instance_id) {
  for (InstanceRuntimeView& view : ListInstanceRuntimes()) {
    if (view.instance_id == instance_id) return std::move(view);
  }
  return std::nullopt;
}

// --- Runtime actions ---------------------------------------------------------

absl::StatusOr<RuntimeInfo> Orchestrator::OurRuntime(absl::string_view id) {
  if (id.empty() || id.size() > 200) {
    return common::WithReason(
        absl::NotFoundError(absl::StrCat("Container ", id, " not found")),
        kRuntimeNotFound);
  }
  absl::StatusOr<RuntimeInfo> info = runtime_.Inspect(id);
  if (absl::IsNotFound(info.status())) {
    return common::WithReason(
        absl::NotFoundError(absl::StrCat("Container ", id, " not found")),
        kRuntimeNotFound);
  }
  return info;
}

absl::StatusOr<std::vector<RuntimeInfo>> Orchestrator::ListRuntimes(bool all) {
  IOT2MQTT_ASSIGN_OR_RETURN(std::vector<RuntimeInfo> listed, runtime_.List());
  if (!all) {
    listed.erase(std::remove_if(listed.begin(), listed.end(),
                                [](const RuntimeInfo& info) {
                                  return info.state != RuntimeState::kRunning;
                                }),
                 listed.end());
  }
  return listed;
}

absl::Status Orchestrator::RuntimeAction(
    absl::string_view id, absl::string_view action,
    absl::Status (Orchestrator::*instance_action)(absl::string_view),
    const std::function<absl::Status(const std::string&)>& runtime_action) {
  IOT2MQTT_ASSIGN_OR_RETURN(RuntimeInfo info, OurRuntime(id));
  absl::StatusOr<ConfiguredInstance> configured =
      FindInstance(info.instance_id);
  if (configured.ok() && configured->connector == info.connector) {
    return (this->*instance_action)(info.instance_id);
  }
  absl::MutexLock lock(&action_mu_);
  absl::Status s = runtime_action(info.id);
  Count(action, s);
  return s;
}

absl::Status Orchestrator::StartRuntime(absl::string_view id) {
  return RuntimeAction(id, "start", &Orchestrator::StartInstance,
                       [this](const std::string& runtime_id) {
                         return runtime_.Start(runtime_id);
                       });
}

absl::Status Orchestrator::StopRuntime(absl::string_view id) {
  return RuntimeAction(id, "stop", &Orchestrator::StopInstance,
                       [this](const std::string& runtime_id) {
                         return runtime_.Stop(runtime_id, options_.stop_grace);
                       });
}

absl::Status Orchestrator::RestartRuntime(absl::string_view id) {
  return RuntimeAction(
      id, "restart", &Orchestrator::RestartInstance,
      [this](const std::string& runtime_id) {
        return runtime_.Restart(runtime_id, options_.stop_grace);
      });
}

absl::Status Orchestrator::RemoveRuntime(absl::string_view id) {
  IOT2MQTT_ASSIGN_OR_RETURN(RuntimeInfo info, OurRuntime(id));
  absl::MutexLock action(&action_mu_);
  absl::Status s = runtime_.Remove(info.id);
  Count("remove", s);
  if (!s.ok()) return s;
  absl::MutexLock lock(&mu_);
  auto it = instances_.find(info.instance_id);
  if (it != instances_.end()) {
    Transition(*it->second, kStateMissing, "runtime removed by the user");
  }
  reconcile_requested_ = true;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<LogLine>> Orchestrator::RuntimeLogs(
    absl::string_view id, int lines) {
  IOT2MQTT_ASSIGN_OR_RETURN(RuntimeInfo info, OurRuntime(id));
  std::vector<LogLine> out;
  LogOptions log_options;
  log_options.tail = lines;
  IOT2MQTT_RETURN_IF_ERROR(
      runtime_.Logs(info.id, log_options, [&out](const LogLine& line) {
        out.push_back(line);
        return true;
      }));
  return out;
}

absl::Status Orchestrator::FollowRuntimeLogs(
    absl::string_view id, int lines, const LogSink& sink,
    const std::function<bool()>& cancelled) {
  IOT2MQTT_ASSIGN_OR_RETURN(RuntimeInfo info, OurRuntime(id));
  LogOptions log_options;
  log_options.tail = lines;
  log_options.follow = true;
  log_options.cancelled = [this, &cancelled] {
    return shutting_down_.load() || (cancelled && cancelled());
  };
  return runtime_.Logs(info.id, log_options, sink);
}

absl::StatusOr<RuntimeStats> Orchestrator::RuntimeStatsOf(
    absl::string_view id) {
  IOT2MQTT_ASSIGN_OR_RETURN(RuntimeInfo info, OurRuntime(id));
  return runtime_.Stats(info.id);
}

absl::Status Orchestrator::BuildConnector(absl::string_view connector,
                                          const ProgressSink& progress) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateConnectorName(connector));
  RuntimeSpec spec;
  spec.connector = std::string(connector);
  spec.instance_id = "build";
  spec.connector_dir = paths_.ConnectorDir(connector);
  IOT2MQTT_ASSIGN_OR_RETURN(Manifest manifest,
                            ReadManifest(spec.connector_dir));
  spec.entry = manifest.entry;
  spec.cpus = manifest.cpus;
  spec.memory_bytes = manifest.memory_bytes;
  absl::MutexLock action(&action_mu_);
  absl::Status s = runtime_.Prepare(spec, progress);
  Count("build", s);
  if (s.ok()) {
    // A build may end a build failure of this connector's instances.
    absl::MutexLock lock(&mu_);
    for (auto& [id, instance] : instances_) {
      if (instance->connector == connector && instance->build_failed) {
        ClearFailure(*instance);
        reconcile_requested_ = true;
      }
    }
  }
  return s;
}

SystemStatus Orchestrator::GetSystemStatus() {
  SystemStatus status;
  status.version = options_.version;
  status.runtime = std::string(runtime_.kind());
  absl::StatusOr<std::vector<ConfiguredInstance>> configured =
      config_.ListInstances();
  if (configured.ok()) {
    status.instances_count = static_cast<int>(configured->size());
    for (const ConfiguredInstance& instance : *configured) {
      status.devices_count += instance.devices;
    }
  }
  absl::StatusOr<std::vector<RuntimeInfo>> listed = runtime_.List();
  if (listed.ok()) {
    status.containers_total = static_cast<int>(listed->size());
    for (const RuntimeInfo& info : *listed) {
      if (info.state == RuntimeState::kRunning) ++status.containers_running;
    }
  }
  absl::StatusOr<bool> connected = bridge_.Connected();
  status.mqtt_connected = connected.ok() && *connected;
  if (options_.docker_probe) {
    status.docker_available = options_.docker_probe();
  } else {
    status.docker_available =
        runtime_.kind() == "docker" && runtime_.Ping().ok();
  }
  return status;
}

// --- Bookkeeping -------------------------------------------------------------

Orchestrator::Instance& Orchestrator::InstanceLocked(
    absl::string_view instance_id) {
  auto& slot = instances_[std::string(instance_id)];
  if (slot == nullptr) {
    slot = std::make_unique<Instance>();
    slot->instance_id = std::string(instance_id);
    slot->backoff = options_.backoff_initial;
  }
  return *slot;
}

void Orchestrator::Transition(Instance& instance, absl::string_view to,
                              absl::string_view why) {
  if (instance.state == to) return;
  IOT2MQTT_LOG(INFO)
          .With("instance", instance.instance_id)
          .With("connector", instance.connector)
          .With("from", instance.state)
          .With("to", to)
          .With("why", why)
      << "instance " << instance.instance_id << ": " << instance.state << " -> "
      << to << " (" << why << ")";
  instance.state = std::string(to);
  instance.updated_at = absl::Now();
  metrics_->Transition(to);
}

void Orchestrator::ClearFailure(Instance& instance) {
  bool had = instance.crash_loop || instance.build_failed;
  instance.crash_loop = false;
  instance.build_failed = false;
  instance.failed_hash.clear();
  instance.crashes.clear();
  instance.backoff = options_.backoff_initial;
  instance.pending_restart = false;
  instance.next_restart_at = absl::InfinitePast();
  instance.seen_restart_count = -1;
  instance.last_log_lines.clear();
  if (had) {
    instance.last_error.clear();
    SaveStateLocked();
  }
}

void Orchestrator::UpdateGauges() {
  std::map<std::string, int> counts;
  int crash_loops = 0;
  for (const auto& [id, instance] : instances_) {
    if (!instance->configured) continue;
    ++counts[instance->state];
    if (instance->crash_loop) ++crash_loops;
  }
  metrics_->SetStates(counts, crash_loops);
}

void Orchestrator::Count(absl::string_view action, const absl::Status& status) {
  metrics_->Action(action, status.ok());
}

// The state file: {"version":1,"stopped":[ids],"failures":{id:{"connector",
// "kind":"crash_loop"|"build_failed","hash","exit_code","error","log":[]}}}.
void Orchestrator::LoadState() {
  absl::StatusOr<std::string> text = config::ReadWholeFile(paths_.StateFile());
  if (!text.ok()) {
    if (!absl::IsNotFound(text.status())) {
      IOT2MQTT_LOG(WARNING) << "can't read " << paths_.StateFile() << ": "
                            << text.status().message();
    }
    return;
  }
  rapidjson::Document doc;
  doc.Parse(text->c_str(), text->size());
  if (doc.HasParseError() || !doc.IsObject()) {
    IOT2MQTT_LOG(WARNING) << paths_.StateFile()
                          << " is not a JSON object; ignoring it";
    return;
  }
  absl::MutexLock lock(&mu_);
  auto stopped = doc.FindMember("stopped");
  if (stopped != doc.MemberEnd() && stopped->value.IsArray()) {
    for (const auto& id : stopped->value.GetArray()) {
      if (id.IsString() && IsValidName(id.GetString())) {
        user_stopped_.insert(id.GetString());
      }
    }
  }
  auto failures = doc.FindMember("failures");
  if (failures != doc.MemberEnd() && failures->value.IsObject()) {
    for (const auto& member : failures->value.GetObject()) {
      std::string id = member.name.GetString();
      const rapidjson::Value& f = member.value;
      if (!IsValidName(id) || !f.IsObject()) continue;
      Instance& instance = InstanceLocked(id);
      auto str = [&f](const char* key) {
        auto it = f.FindMember(key);
        return it != f.MemberEnd() && it->value.IsString()
                   ? std::string(it->value.GetString())
                   : std::string();
      };
      instance.connector = str("connector");
      std::string kind = str("kind");
      instance.crash_loop = kind == kStateCrashLoop;
      instance.build_failed = kind == kStateBuildFailed;
      instance.state =
          instance.crash_loop ? kStateCrashLoop : kStateBuildFailed;
      instance.failed_hash = str("hash");
      instance.last_error = str("error");
      auto code = f.FindMember("exit_code");
      if (code != f.MemberEnd() && code->value.IsInt()) {
        instance.last_exit_code = code->value.GetInt();
      }
      auto log = f.FindMember("log");
      if (log != f.MemberEnd() && log->value.IsArray()) {
        for (const auto& line : log->value.GetArray()) {
          if (line.IsString())
            instance.last_log_lines.push_back(line.GetString());
        }
      }
    }
  }
  IOT2MQTT_LOG(INFO).With("stopped", static_cast<int>(user_stopped_.size()))
      << "loaded " << paths_.StateFile();
}

void Orchestrator::SaveStateLocked() {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.StartObject();
  writer.Key("version");
  writer.Int(1);
  writer.Key("stopped");
  writer.StartArray();
  for (const std::string& id : user_stopped_) writer.String(id.c_str());
  writer.EndArray();
  writer.Key("failures");
  writer.StartObject();
  for (const auto& [id, instance] : instances_) {
    if (!instance->crash_loop && !instance->build_failed) continue;
    writer.Key(id.c_str());
    writer.StartObject();
    writer.Key("connector");
    writer.String(instance->connector.c_str());
    writer.Key("kind");
    writer.String(instance->crash_loop ? kStateCrashLoop : kStateBuildFailed);
    writer.Key("hash");
    writer.String(instance->failed_hash.c_str());
    writer.Key("exit_code");
    writer.Int(instance->last_exit_code);
    writer.Key("error");
    writer.String(instance->last_error.c_str());
    writer.Key("log");
    writer.StartArray();
    for (const std::string& line : instance->last_log_lines) {
      writer.String(line.c_str(),
                    static_cast<rapidjson::SizeType>(line.size()));
    }
    writer.EndArray();
    writer.EndObject();
  }
  writer.EndObject();
  writer.EndObject();
  const std::string path = paths_.StateFile();
  absl::Status s = config::MakeDirectories(config::DirectoryOf(path), 0700);
  if (s.ok()) {
    s = config::WriteFileAtomically(
        path, absl::string_view(buffer.GetString(), buffer.GetSize()), 0600);
  }
  if (!s.ok()) {
    IOT2MQTT_LOG(ERROR) << "can't save the orchestrator state: " << s.message();
  }
}

}  // namespace iot2mqtt::orchestrator
