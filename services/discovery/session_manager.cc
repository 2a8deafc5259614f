#include "services/discovery/session_manager.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "iot2mqtt/sdk/contract.h"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "rapidjson/document.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"
#include "services/common/status.h"

namespace iot2mqtt::discovery {
namespace {

constexpr char kSessionNotFound[] = "SESSION_NOT_FOUND";
constexpr char kDiscoveryNotSupported[] = "DISCOVERY_NOT_SUPPORTED";
constexpr char kInvalidTimeout[] = "INVALID_TIMEOUT";
constexpr char kTooManySessions[] = "TOO_MANY_SESSIONS";

constexpr char kRunning[] = "running";
constexpr char kCompleted[] = "completed";
constexpr char kFailed[] = "failed";
constexpr char kCancelled[] = "cancelled";

// The tool is expected to stop itself at the session timeout; it is killed
// this much later.
constexpr absl::Duration kKillMargin = absl::Seconds(5);
// Stdout is read line by line; this only bounds a runaway tool.
constexpr int64_t kMaxStdoutBytes = int64_t{16} << 20;
constexpr size_t kMaxLogLineBytes = 4096;

std::string IsoTime(absl::Time time) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", time, absl::UTCTimeZone());
}

// A random (version 4) UUID: 122 random bits from the kernel's generator.
std::string NewSessionId() {
  std::random_device random;  // getrandom() / /dev/urandom.
  uint8_t bytes[16];
  for (int i = 0; i < 16; i += 4) {
    const uint32_t word = random();
    for (int j = 0; j < 4; ++j) bytes[i + j] = (word >> (8 * j)) & 0xff;
  }
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  std::string hex;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) hex.push_back('-');
    absl::StrAppendFormat(&hex, "%02x", bytes[i]);
  }
  return hex;
}

// A line as it can be kept: at most kMaxLogLineBytes, valid UTF-8.
std::string LogText(absl::string_view line) {
  line = absl::StripTrailingAsciiWhitespace(line);
  if (line.size() <= kMaxLogLineBytes) return sdk::SanitizeUtf8(line);
  size_t cut = kMaxLogLineBytes;
  while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xc0) == 0x80) {
    --cut;
  }
  return absl::StrCat(sdk::SanitizeUtf8(line.substr(0, cut)), "...");
}

// The string a JSON string value (as text) holds; the text itself for
// other values.
std::string TextOf(absl::string_view json) {
  if (sdk::JsonTypeOf(json) == "string") {
    rapidjson::Document doc;
    doc.Parse(json.data(), json.size());
    if (!doc.HasParseError() && doc.IsString()) {
      return std::string(doc.GetString(), doc.GetStringLength());
    }
  }
  return std::string(json);
}

// The compact JSON text of each element of a JSON array (given as text).
std::vector<std::string> ArrayElements(absl::string_view json) {
  std::vector<std::string> elements;
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseFullPrecisionFlag>(json.data(), json.size());
  if (doc.HasParseError() || !doc.IsArray()) return elements;
  for (const rapidjson::Value& element : doc.GetArray()) {
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
    element.Accept(writer);
    elements.emplace_back(buffer.GetString(), buffer.GetSize());
  }
  return elements;
}

// Whether setup.json's `discovery` declares a `timeout` of its own.
bool DeclaresTimeout(absl::string_view setup_json) {
  rapidjson::Document doc;
  doc.Parse(setup_json.data(), setup_json.size());
  if (doc.HasParseError() || !doc.IsObject()) return false;
  auto discovery = doc.FindMember("discovery");
  return discovery != doc.MemberEnd() && discovery->value.IsObject() &&
         discovery->value.HasMember("timeout");
}

absl::Status SessionNotFound(const std::string& session_id) {
  return common::WithReason(absl::NotFoundError("Invalid session ID"),
                            kSessionNotFound, {{"session_id", session_id}});
}

}  // namespace

struct SessionManager::Session {
  // Fixed at creation.
  std::string id;
  std::string integration;
  int64_t sequence = 0;
  absl::Time started;
  absl::Duration timeout;
  int max_log_lines = 200;
  ChildSpec spec;
  std::vector<std::string> secrets;
  CancelToken cancel;

  // Guarded by the manager's mu_.
  DiscoverySession state;
  int64_t version = 1;  // Bumped on every change watchers should see.
  bool progress_reported = false;
  // The derived progress last published by the ticker.
  int32_t ticked_progress = -1;
  bool result_seen = false;  // A final `ok: true` result was handled.
  bool tool_failed = false;  // A final `ok: false` result was seen.
  std::string tool_error;
  std::string last_stderr;
  bool cancel_requested = false;
  bool finished = false;
  absl::Time finished_time;
  bool thread_done = false;  // Run() has nothing left to do.
  std::thread thread;

  // Serialises deliveries to this session's watchers (taken before the
  // manager's mu_, never while holding it).
  absl::Mutex notify_mu;
  // Watcher handle -> version it last received.
  std::map<int64_t, int64_t> delivered ABSL_GUARDED_BY(notify_mu);

  // The state as callers see it: a running session without progress
  // reports shows elapsed / timeout (at most 99).
  DiscoverySession Snapshot(absl::Time now) const {
    DiscoverySession snapshot = state;
    if (!finished && !progress_reported && timeout > absl::ZeroDuration()) {
      const double fraction = (now - started) / timeout;
      snapshot.set_progress(
          static_cast<int32_t>(std::clamp(fraction * 100.0, 0.0, 99.0)));
    }
    return snapshot;
  }

  void AddLog(absl::string_view line) {
    state.add_logs(LogText(MaskSecrets(line, secrets)));
    const int excess = state.logs_size() - std::max(max_log_lines, 0);
    if (excess > 0) state.mutable_logs()->DeleteSubrange(0, excess);
  }

  // Adds `device` to the session's list or replaces the entry of its id
  // (when `replace`; an unstored copy never replaces a stored record).
  void MergeDevice(const DiscoveredDevice& device, bool replace) {
    for (DiscoveredDevice& known : *state.mutable_devices()) {
      if (known.id() == device.id()) {
        if (replace) known = device;
        return;
      }
    }
    *state.add_devices() = device;
  }

  // Delivers the current state to every watcher that has not seen it; after
  // the final state, the watchers are dropped.
  static void Publish(SessionManager* manager, Session* session) {
    absl::MutexLock notify(&session->notify_mu);
    std::vector<Watcher> calls;
    DiscoverySession snapshot;
    {
      absl::MutexLock lock(&manager->mu_);
      for (auto it = manager->watchers_.begin();
           it != manager->watchers_.end();) {
        if (it->second.first != session->id) {
          ++it;
          continue;
        }
        int64_t& seen = session->delivered[it->first];
        if (seen < session->version) {
          seen = session->version;
          calls.push_back(it->second.second);
        }
        if (session->finished) {
          session->delivered.erase(it->first);
          it = manager->watchers_.erase(it);
        } else {
          ++it;
        }
      }
      if (!calls.empty()) snapshot = session->Snapshot(absl::Now());
    }
    for (const Watcher& call : calls) call(snapshot);
  }

  // Records `devices` through the store and joins the stored records into
  // the session's list. A store error is logged in the session, which keeps
  // the devices (unstored) and goes on.
  static void Store(SessionManager* manager, Session* session,
                    const std::vector<DiscoveredDevice>& devices,
                    bool scan_completed) {
    absl::StatusOr<std::vector<DiscoveredDevice>> stored =
        manager->store_->Record(session->integration, devices, scan_completed);
    std::function<void()> changed;
    {
      absl::MutexLock lock(&manager->mu_);
      if (stored.ok()) {
        for (const DiscoveredDevice& device : *stored) {
          session->MergeDevice(device, /*replace=*/true);
        }
        changed = manager->devices_changed_;
      } else {
        IOT2MQTT_LOG(WARNING)
                .With("session_id", session->id)
                .With("integration", session->integration)
                .With("error", stored.status().message())
            << "discovery: could not store devices";
        session->AddLog(absl::StrCat(
            devices.empty() ? std::string("Could not record the scan")
                            : absl::StrCat("Could not store ", devices.size(),
                                           " device(s)"),
            ": ", stored.status().message()));
        const std::string now = IsoTime(absl::Now());
        for (DiscoveredDevice device : devices) {
          device.set_integration(session->integration);
          device.set_discovered_at(now);
          device.set_last_seen(now);
          session->MergeDevice(device, /*replace=*/false);
        }
      }
      ++session->version;
    }
    if (changed) changed();
  }

  // A final tool result `{"ok": ..., "result"|"error": ...}` (its members).
  static void HandleFinal(SessionManager* manager, Session* session,
                          const std::vector<sdk::JsonMember>& members) {
    bool ok = false;
    std::string result;
    std::string error;
    for (const sdk::JsonMember& member : members) {
      if (member.key == "ok") ok = member.value == "true";
      if (member.key == "result") result = member.value;
      if (member.key == "error") error = member.value;
    }
    if (!ok) {
      std::string message;
      if (sdk::JsonTypeOf(error) == "object") {
        absl::StatusOr<std::vector<sdk::JsonMember>> fields =
            sdk::SplitJsonObject(error);
        if (fields.ok()) {
          for (const sdk::JsonMember& field : *fields) {
            if (field.key == "message") message = TextOf(field.value);
          }
        }
      } else if (sdk::JsonTypeOf(error) == "string") {
        message = TextOf(error);
      }
      if (message.empty()) message = "Discovery tool reported a failure";
      absl::MutexLock lock(&manager->mu_);
      session->tool_failed = true;
      session->tool_error = LogText(MaskSecrets(message, session->secrets));
      ++session->version;
      return;
    }
    std::vector<DiscoveredDevice> devices;
    std::vector<std::string> problems;
    if (sdk::JsonTypeOf(result) == "object") {
      absl::StatusOr<std::vector<sdk::JsonMember>> fields =
          sdk::SplitJsonObject(result);
      if (fields.ok()) {
        for (const sdk::JsonMember& field : *fields) {
          if (field.key != "devices") continue;
          for (const std::string& element : ArrayElements(field.value)) {
            absl::StatusOr<DiscoveredDevice> device =
                DeviceFromReport(session->integration, element);
            if (!device.ok()) {
              problems.push_back(
                  absl::StrCat("Ignored a device of the result: ",
                               device.status().message()));
              continue;
            }
            const bool duplicate = std::any_of(devices.begin(), devices.end(),
                                               [&](const DiscoveredDevice& d) {
                                                 return d.id() == device->id();
                                               });
            if (!duplicate) devices.push_back(*std::move(device));
          }
        }
      }
    }
    {
      absl::MutexLock lock(&manager->mu_);
      session->result_seen = true;
      for (const std::string& problem : problems) session->AddLog(problem);
      ++session->version;
    }
    Store(manager, session, devices, /*scan_completed=*/true);
  }

  // One stdout line of the tool.
  static void HandleLine(SessionManager* manager, Session* session,
                         absl::string_view raw) {
    absl::string_view line = absl::StripAsciiWhitespace(raw);
    if (line.empty()) return;
    absl::StatusOr<std::vector<sdk::JsonMember>> members =
        sdk::JsonTypeOf(line) == "object"
            ? sdk::SplitJsonObject(line)
            : absl::InvalidArgumentError("not an object");
    bool recognised = false;
    if (members.ok()) {
      for (const sdk::JsonMember& member : *members) {
        if (member.key == "progress" &&
            sdk::JsonTypeOf(member.value) == "number") {
          double value = 0;
          if (!absl::SimpleAtod(member.value, &value) || std::isnan(value)) {
            continue;
          }
          recognised = true;
          absl::MutexLock lock(&manager->mu_);
          session->progress_reported = true;
          session->state.set_progress(
              static_cast<int32_t>(std::clamp(std::round(value), 0.0, 100.0)));
          ++session->version;
        } else if (member.key == "log") {
          recognised = true;
          absl::MutexLock lock(&manager->mu_);
          session->AddLog(TextOf(member.value));
          ++session->version;
        } else if (member.key == "device") {
          recognised = true;
          absl::StatusOr<DiscoveredDevice> device =
              DeviceFromReport(session->integration, member.value);
          if (!device.ok()) {
            absl::MutexLock lock(&manager->mu_);
            session->AddLog(absl::StrCat("Ignored a device report: ",
                                         device.status().message()));
            ++session->version;
          } else {
            Store(manager, session, {*device}, /*scan_completed=*/false);
          }
        } else if (member.key == "ok" &&
                   (member.value == "true" || member.value == "false")) {
          recognised = true;
          HandleFinal(manager, session, *members);
        }
      }
    }
    if (!recognised) {
      absl::MutexLock lock(&manager->mu_);
      session->AddLog(line);
      ++session->version;
    }
    Publish(manager, session);
  }

  static void HandleStderrLine(SessionManager* manager, Session* session,
                               absl::string_view raw) {
    absl::string_view line = absl::StripAsciiWhitespace(raw);
    if (line.empty()) return;
    {
      absl::MutexLock lock(&manager->mu_);
      session->AddLog(line);
      session->last_stderr = LogText(MaskSecrets(line, session->secrets));
      ++session->version;
    }
    Publish(manager, session);
  }
};

SessionManager::SessionManager(SessionManagerOptions options,
                               ToolExecutor* executor, DeviceStore* store,
                               ConnectorSource* connectors)
    : options_(std::move(options)),
      executor_(executor),
      store_(store),
      connectors_(connectors) {
  ticker_ = std::thread([this] { Tick(); });
}

SessionManager::~SessionManager() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  ticker_.join();
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, session] : sessions_) {
      if (!session->finished) {
        session->cancel_requested = true;
        session->cancel.Cancel();
      }
      if (session->thread.joinable()) {
        threads.push_back(std::move(session->thread));
      }
    }
  }
  for (std::thread& thread : threads) thread.join();
}

absl::StatusOr<DiscoverySession> SessionManager::Start(
    const std::string& connector, absl::Duration timeout) {
  Sweep();
  // The session now running for `connector` (mu_ held).
  auto running_for = [&](absl::Time now) -> std::optional<DiscoverySession> {
    for (const auto& [id, session] : sessions_) {
      if (session->integration == connector && !session->finished) {
        return session->Snapshot(now);
      }
    }
    return std::nullopt;
  };
  {
    absl::MutexLock lock(&mu_);
    if (std::optional<DiscoverySession> running = running_for(absl::Now())) {
      return *std::move(running);
    }
  }

  IOT2MQTT_ASSIGN_OR_RETURN(ConnectorTooling tooling,
                            connectors_->Lookup(connector));
  IOT2MQTT_ASSIGN_OR_RETURN(DiscoveryDeclaration declaration,
                            ParseDiscoveryDeclaration(tooling.setup_json));
  if (!declaration.supported) {
    return common::WithReason(
        absl::FailedPreconditionError(
            "Discovery not supported for this integration"),
        kDiscoveryNotSupported, {{"integration", connector}});
  }
  if (timeout == absl::ZeroDuration()) {
    timeout = DeclaresTimeout(tooling.setup_json) ? declaration.timeout
                                                  : options_.default_timeout;
    timeout = std::min(timeout, options_.max_timeout);
  }
  if (timeout < absl::Seconds(1) || timeout > options_.max_timeout) {
    return common::WithReason(
        absl::InvalidArgumentError(absl::StrCat(
            "timeout must be 1..", absl::ToInt64Seconds(options_.max_timeout),
            " seconds")),
        kInvalidTimeout);
  }
  // Whole seconds: the tool gets them as DISCOVERY_TIMEOUT.
  const int64_t seconds =
      static_cast<int64_t>(std::ceil(absl::ToDoubleSeconds(timeout)));
  IOT2MQTT_ASSIGN_OR_RETURN(
      ToolDeclaration tool,
      ParseToolDeclaration(tooling.setup_json, connector, declaration.tool));
  IOT2MQTT_ASSIGN_OR_RETURN(
      std::string executable,
      executor_->ResolveEntry(tooling.connector_dir, tool.entry));

  auto session = std::make_shared<Session>();
  session->id = NewSessionId();
  session->integration = connector;
  session->timeout = absl::Seconds(seconds);
  session->max_log_lines = options_.max_log_lines;
  const std::string input =
      sdk::JsonObjectBuilder().Set("timeout", seconds).Build();
  session->secrets = SecretValues(tool, input);
  ChildSpec& spec = session->spec;
  spec.executable = std::move(executable);
  spec.working_dir = tooling.connector_dir;
  spec.env = executor_->Environment(
      tool, {{"DISCOVERY_MODE", "true"},
             {"DISCOVERY_TIMEOUT", absl::StrCat(seconds)}});
  spec.stdin_data = sdk::JsonObjectBuilder()
                        .Set("tool", tool.id)
                        .SetRaw("input", input)
                        .Build();
  spec.isolate_network = tool.network == ToolNetwork::kNone;
  spec.timeout = session->timeout + kKillMargin;
  spec.limits.max_stdout_bytes = kMaxStdoutBytes;

  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  if (std::optional<DiscoverySession> running = running_for(now)) {
    return *std::move(running);
  }
  const int running = static_cast<int>(
      std::count_if(sessions_.begin(), sessions_.end(),
                    [](const auto& entry) { return !entry.second->finished; }));
  if (running >= options_.max_running) {
    return common::WithReason(
        absl::ResourceExhaustedError(absl::StrCat(
            "Too many discovery sessions running (at most ",
            options_.max_running, "); try again when one has finished")),
        kTooManySessions);
  }
  int64_t sequence = 0;
  for (const auto& [id, other] : sessions_) {
    sequence = std::max(sequence, other->sequence);
  }
  session->sequence = sequence + 1;
  session->started = now;
  DiscoverySession& state = session->state;
  state.set_session_id(session->id);
  state.set_integration(connector);
  state.set_status(kRunning);
  state.set_started_at(IsoTime(now));
  state.set_timeout(static_cast<int32_t>(seconds));
  sessions_[session->id] = session;
  session->thread = std::thread(&SessionManager::Run, this, session);
  IOT2MQTT_LOG(INFO)
          .With("session_id", session->id)
          .With("integration", connector)
          .With("tool", tool.id)
          .With("timeout_s", seconds)
      << "discovery session started";
  return session->Snapshot(now);
}

void SessionManager::Run(std::shared_ptr<Session> session) {
  Session* s = session.get();
  ChildSpec spec = s->spec;
  spec.on_stdout_line = [this, s](absl::string_view line) {
    Session::HandleLine(this, s, line);
  };
  spec.on_stderr_line = [this, s](absl::string_view line) {
    Session::HandleStderrLine(this, s, line);
  };
  ChildResult result = RunChild(spec, &s->cancel);

  bool result_seen = false;
  bool tool_failed = false;
  {
    absl::MutexLock lock(&mu_);
    result_seen = s->result_seen;
    tool_failed = s->tool_failed;
  }
  // A tool that printed its final result as one multi-line object.
  if (!result_seen && !tool_failed && result.end == ChildResult::End::kExited &&
      result.exit_code == 0 &&
      sdk::JsonTypeOf(result.stdout_text) == "object") {
    absl::StatusOr<std::vector<sdk::JsonMember>> members =
        sdk::SplitJsonObject(result.stdout_text);
    if (members.ok() &&
        std::any_of(members->begin(), members->end(),
                    [](const sdk::JsonMember& m) { return m.key == "ok"; })) {
      Session::HandleFinal(this, s, *members);
      absl::MutexLock lock(&mu_);
      result_seen = s->result_seen;
      tool_failed = s->tool_failed;
    }
  }

  std::string status = kCompleted;
  std::string error;
  std::string note;
  std::string last_stderr;
  bool cancel_requested = false;
  {
    absl::MutexLock lock(&mu_);
    last_stderr = s->last_stderr;
    cancel_requested = s->cancel_requested;
    error = s->tool_error;
  }
  const int64_t timeout_s = absl::ToInt64Seconds(s->timeout);
  switch (result.end) {
    case ChildResult::End::kExited:
      if (result.exit_code != 0) {
        status = kFailed;
        if (error.empty()) {
          error = !last_stderr.empty()
                      ? last_stderr
                      : absl::StrCat("exit code ", result.exit_code);
        }
      }
      break;
    case ChildResult::End::kSignaled:
      status = kFailed;
      if (error.empty()) {
        error = !last_stderr.empty()
                    ? last_stderr
                    : absl::StrCat("killed by signal ", result.term_signal);
      }
      break;
    case ChildResult::End::kTimedOut:
      note = absl::StrCat("Discovery tool did not stop at its timeout of ",
                          timeout_s, " s; it was stopped after ",
                          absl::ToInt64Seconds(spec.timeout), " s");
      break;
    case ChildResult::End::kCancelled:
      status = kCancelled;
      break;
    case ChildResult::End::kOutputTooLarge:
      status = kFailed;
      error = absl::StrCat("Discovery tool output exceeds ", kMaxStdoutBytes,
                           " bytes");
      break;
    case ChildResult::End::kSpawnFailed:
      status = kFailed;
      error = absl::StrCat("Could not start the discovery tool: ",
                           result.spawn_error);
      break;
  }
  if (status == kCompleted && tool_failed) status = kFailed;
  if (status == kCancelled) error.clear();
  if (status == kCompleted && !result_seen) {
    // The scan finished without a final result: it still counts as a scan.
    Session::Store(this, s, {}, /*scan_completed=*/true);
  }

  {
    absl::MutexLock lock(&mu_);
    if (!note.empty()) s->AddLog(note);
    const absl::Time now = absl::Now();
    s->finished = true;
    s->finished_time = now;
    s->state.set_status(status);
    s->state.set_error(LogText(MaskSecrets(error, s->secrets)));
    s->state.set_progress(100);
    s->state.set_finished_at(IsoTime(now));
    ++s->version;
    sdk::LogLine(status == kFailed ? sdk::Severity::kWarning
                                   : sdk::Severity::kInfo)
            .With("session_id", s->id)
            .With("integration", s->integration)
            .With("status", status)
            .With("end", EndName(result.end))
            .With("devices", static_cast<int64_t>(s->state.devices_size()))
            .With("cancel_requested", cancel_requested)
        << "discovery session finished";
  }
  Session::Publish(this, s);
  absl::MutexLock lock(&mu_);
  s->thread_done = true;
}

absl::StatusOr<DiscoverySession> SessionManager::Get(
    const std::string& session_id) {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return SessionNotFound(session_id);
  return it->second->Snapshot(absl::Now());
}

std::vector<DiscoverySession> SessionManager::List() {
  absl::MutexLock lock(&mu_);
  std::vector<const Session*> ordered;
  for (const auto& [id, session] : sessions_) ordered.push_back(session.get());
  std::sort(ordered.begin(), ordered.end(),
            [](const Session* a, const Session* b) {
              return a->sequence < b->sequence;
            });
  const absl::Time now = absl::Now();
  std::vector<DiscoverySession> out;
  for (const Session* session : ordered) out.push_back(session->Snapshot(now));
  return out;
}

std::vector<DiscoverySession> SessionManager::Running() {
  std::vector<DiscoverySession> all = List();
  all.erase(std::remove_if(all.begin(), all.end(),
                           [](const DiscoverySession& session) {
                             return session.status() != kRunning;
                           }),
            all.end());
  return all;
}

absl::StatusOr<DiscoverySession> SessionManager::Cancel(
    const std::string& session_id) {
  std::shared_ptr<Session> session;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(session_id);
    if (it == sessions_.end()) return SessionNotFound(session_id);
    session = it->second;
    if (session->finished) return session->Snapshot(absl::Now());
    session->cancel_requested = true;
  }
  session->cancel.Cancel();
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&session->finished));
  return session->Snapshot(absl::Now());
}

absl::StatusOr<int64_t> SessionManager::Watch(const std::string& session_id,
                                              Watcher on_update) {
  std::shared_ptr<Session> session;
  int64_t handle = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(session_id);
    if (it == sessions_.end()) return SessionNotFound(session_id);
    session = it->second;
    handle = next_watch_++;
  }
  absl::MutexLock notify(&session->notify_mu);
  DiscoverySession snapshot;
  {
    absl::MutexLock lock(&mu_);
    snapshot = session->Snapshot(absl::Now());
    if (!session->finished) {
      watchers_[handle] = {session_id, on_update};
      session->delivered[handle] = session->version;
    }
  }
  on_update(snapshot);
  return handle;
}

void SessionManager::Unwatch(int64_t handle) {
  std::shared_ptr<Session> session;
  {
    absl::MutexLock lock(&mu_);
    auto it = watchers_.find(handle);
    if (it == watchers_.end()) return;
    auto owner = sessions_.find(it->second.first);
    if (owner == sessions_.end()) {
      watchers_.erase(it);
      return;
    }
    session = owner->second;
  }
  // After this, no delivery to the watcher is in progress or to come.
  absl::MutexLock notify(&session->notify_mu);
  absl::MutexLock lock(&mu_);
  watchers_.erase(handle);
  session->delivered.erase(handle);
}

void SessionManager::Tick() {
  while (true) {
    std::vector<std::shared_ptr<Session>> changed;
    {
      absl::MutexLock lock(&mu_);
      const absl::Time deadline = absl::Now() + options_.progress_tick;
      mu_.AwaitWithDeadline(absl::Condition(&stopping_), deadline);
      if (stopping_) return;
      const absl::Time now = absl::Now();
      for (auto& [id, session] : sessions_) {
        if (session->finished || session->progress_reported) continue;
        const int32_t progress = session->Snapshot(now).progress();
        if (progress != session->ticked_progress) {
          session->ticked_progress = progress;
          ++session->version;
          changed.push_back(session);
        }
      }
    }
    for (const std::shared_ptr<Session>& session : changed) {
      Session::Publish(this, session.get());
    }
  }
}

void SessionManager::Sweep() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      Session& session = *it->second;
      if (session.thread_done && session.thread.joinable()) {
        threads.push_back(std::move(session.thread));
      }
      if (session.finished && session.thread_done &&
          now - session.finished_time >= options_.retention) {
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (std::thread& thread : threads) thread.join();
}

void SessionManager::SetDevicesChangedCallback(std::function<void()> callback) {
  absl::MutexLock lock(&mu_);
  devices_changed_ = std::move(callback);
}

}  // namespace iot2mqtt::discovery
