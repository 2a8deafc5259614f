#include "iot2mqtt/sdk/connector.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "iot2mqtt/sdk/log.h"

namespace iot2mqtt::sdk {
namespace {

constexpr char kErrorCodeUrl[] = "type.iot2mqtt.dev/iot2mqtt.sdk.ErrorCode";
// Severity of UPDATE_ERROR from this many consecutive failures on.
constexpr int kFailuresBeforeError = 5;

using SteadyClock = std::chrono::steady_clock;

absl::Duration Until(SteadyClock::time_point when) {
  auto left = when - SteadyClock::now();
  if (left.count() < 0) return absl::ZeroDuration();
  return absl::FromChrono(left);
}

SteadyClock::duration ToSteady(absl::Duration d) {
  return std::chrono::duration_cast<SteadyClock::duration>(
      absl::ToChronoNanoseconds(d));
}

// Compact object text from split members (numbers exact).
std::string Compact(const std::vector<JsonMember>& members) {
  std::string out = "{";
  for (size_t i = 0; i < members.size(); ++i) {
    if (i > 0) out.push_back(',');
    absl::StrAppend(&out, JsonString(members[i].key), ":", members[i].value);
  }
  out.push_back('}');
  return out;
}

// How long a request may wait for its device: the command's `timeout` (ms;
// 0 or absent: the staleness limit), at most an hour.
int64_t RequestTimeoutMs(const std::optional<int64_t>& timeout_ms) {
  if (!timeout_ms.has_value() || *timeout_ms <= 0) {
    return absl::ToInt64Milliseconds(kStaleCommandAge);
  }
  return std::min<int64_t>(*timeout_ms, 3600 * 1000);
}

std::string Oversized(size_t bytes) {
  return absl::StrCat("payload of ", bytes, " bytes exceeds the limit of ",
                      kMaxInboundPayloadBytes, " bytes; rejected unread");
}

}  // namespace

absl::Status WithErrorCode(absl::Status status, absl::string_view code) {
  if (!status.ok()) status.SetPayload(kErrorCodeUrl, absl::Cord(code));
  return status;
}

std::string ErrorCodeOf(const absl::Status& status,
                        absl::string_view fallback) {
  if (auto code = status.GetPayload(kErrorCodeUrl);
      code.has_value() && !code->empty()) {
    return std::string(*code);
  }
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return error_codes::kInvalidCommand;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return error_codes::kDeviceOffline;
    default:
      return std::string(fallback);
  }
}

// ---------------------------------------------------------------------------

class Connector::Runtime {
 public:
  explicit Runtime(Connector& owner) : owner_(owner) {}
  ~Runtime();

  int Run(ConnectorOptions options);
  void RequestStop() {
    absl::MutexLock lock(&stop_mu_);
    stop_requested_ = true;
  }
  bool clean() const { return clean_.load(); }

  absl::Status PublishState(absl::string_view device_id,
                            absl::string_view state_json);
  absl::Status PublishEvent(absl::string_view device_id,
                            absl::string_view event,
                            absl::string_view data_json);
  absl::Status PublishError(absl::string_view device_id,
                            absl::string_view error_code,
                            absl::string_view message, ErrorSeverity severity,
                            std::optional<RetryInfo> retry = std::nullopt);
  void RequestRefresh(absl::string_view device_id);

  const InstanceConfig& config() const { return options_.config; }
  const Topics& topics() const { return *topics_; }
  Clock& clock() const { return *options_.clock; }

 private:
  struct Task {
    std::function<void()> run;
    std::function<void()> cancel;  // When the connector stops first.
  };

  struct Worker {
    explicit Worker(const DeviceConfig& c) : config(c) {}
    const DeviceConfig& config;
    bool poll = true;
    absl::Mutex mu;
    std::deque<Task> tasks ABSL_GUARDED_BY(mu);
    bool refresh ABSL_GUARDED_BY(mu) = false;
    bool stop ABSL_GUARDED_BY(mu) = false;
    bool exited ABSL_GUARDED_BY(mu) = false;
    SteadyClock::time_point next_poll ABSL_GUARDED_BY(mu);
    int failures = 0;  // Worker thread only.
    std::thread thread;
  };

  struct GroupCall {
    std::string group_id;
    std::optional<std::string> id;
    SteadyClock::time_point deadline;
    int64_t timeout_ms = 0;
    absl::Mutex mu;
    std::vector<GroupMemberResult> results ABSL_GUARDED_BY(mu);
    std::vector<bool> filled ABSL_GUARDED_BY(mu);
    size_t pending ABSL_GUARDED_BY(mu) = 0;
    bool done ABSL_GUARDED_BY(mu) = false;
  };

  struct Known {
    std::string state;  // Compact JSON object.
    absl::Time timestamp;
  };

  bool running() const { return running_.load(); }
  absl::Status Send(std::string topic, std::string payload, int qos,
                    bool retain, MessageClass cls);
  // The same, for callers that have nothing to do on failure (Send logs).
  void Emit(std::string topic, std::string payload, int qos, bool retain,
            MessageClass cls) {
    Send(std::move(topic), std::move(payload), qos, retain, cls).IgnoreError();
  }
  void ReportError(absl::string_view device_id, absl::string_view error_code,
                   absl::string_view message, ErrorSeverity severity,
                   std::optional<RetryInfo> retry = std::nullopt) {
    PublishError(device_id, error_code, message, severity, retry).IgnoreError();
  }
  void ReportState(absl::string_view device_id, absl::string_view state) {
    absl::Status status = PublishState(device_id, state);
    if (!status.ok()) {
      IOT2MQTT_LOG(WARNING).With("error", status.ToString())
          << "cannot publish a device state";
    }
  }
  // Publishes state + property topics of a known state. state_mu_ held.
  void SendStateLocked(const std::string& device_id, const Known& known,
                       const std::vector<JsonMember>& members)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_mu_);
  void Republish();
  void SetOnline(const std::string& device_id, bool online);

  // Network thread.
  void Receive(InboundMessage message);
  // Control thread.
  void ControlLoop();
  void Dispatch(const InboundMessage& message);
  void HandleCommand(const std::string& device_id,
                     const InboundMessage& message);
  void HandleGet(const std::string& device_id, const InboundMessage& message);
  void HandleGroup(const std::string& group_id, const InboundMessage& message);
  void HandleMeta(const std::string& type, const InboundMessage& message);
  void ExpireGroups(bool all, absl::string_view why);

  // Rejections: a response when there is an id, else an error.
  void RejectCommand(const std::string& device_id,
                     const std::optional<std::string>& id,
                     absl::string_view code, absl::string_view message,
                     ErrorSeverity severity = ErrorSeverity::kWarning);
  void RejectGet(const std::string& device_id,
                 const std::optional<std::string>& id, absl::string_view code,
                 absl::string_view message);
  void RejectGroup(const std::string& group_id,
                   const std::optional<std::string>& id, absl::string_view code,
                   absl::string_view message);

  // Workers.
  Worker* FindWorker(absl::string_view device_id) const;
  std::string UnknownDeviceMessage(absl::string_view device_id) const;
  bool Enqueue(Worker& worker, Task task);
  // Why Enqueue() refused.
  std::string RefusalMessage(absl::string_view what) const;
  void WorkerLoop(Worker& worker);
  void Poll(Worker& worker, bool scheduled);
  absl::Duration FailureDelay(int failures) const;
  void ExecuteCommand(Worker& worker, const CommandRequest& command,
                      SteadyClock::time_point deadline);
  void ExecuteGet(Worker& worker, const GetRequest& request,
                  SteadyClock::time_point deadline);
  void ExecuteGroupMember(Worker& worker,
                          const std::shared_ptr<GroupCall>& call, size_t index,
                          const std::string& values);
  // Applies values; the state after the command (compact) or an error.
  absl::StatusOr<std::string> Apply(Worker& worker, const std::string& values);
  void CompleteMember(const std::shared_ptr<GroupCall>& call, size_t index,
                      GroupMemberResult result);
  void FinishGroup(const GroupCall& call,
                   const std::vector<GroupMemberResult>& results);

  void Shutdown();

  Connector& owner_;
  ConnectorOptions options_;
  std::optional<Topics> topics_;
  absl::Time started_;
  std::atomic<bool> running_{false};
  std::atomic<bool> clean_{true};
  // Shutdown() began: requests are answered, not applied.
  std::atomic<bool> stopping_{false};
  bool control_started_ = false;  // Run()'s thread only.
  // by_id_ is complete (read-only from then on).
  std::atomic<bool> workers_ready_{false};

  absl::Mutex stop_mu_;
  bool stop_requested_ ABSL_GUARDED_BY(stop_mu_) = false;
  bool connected_ ABSL_GUARDED_BY(stop_mu_) = false;

  std::vector<std::unique_ptr<Worker>> workers_;
  std::unordered_map<std::string, Worker*> by_id_;

  absl::Mutex state_mu_;
  std::map<std::string, Known> known_ ABSL_GUARDED_BY(state_mu_);
  std::unordered_map<std::string, bool> online_ ABSL_GUARDED_BY(state_mu_);

  absl::Mutex control_mu_;
  std::deque<InboundMessage> inbox_ ABSL_GUARDED_BY(control_mu_);
  bool control_stop_ ABSL_GUARDED_BY(control_mu_) = false;
  bool inbox_overflowing_ ABSL_GUARDED_BY(control_mu_) = false;
  std::thread control_thread_;
  // Control thread only.
  std::vector<std::shared_ptr<GroupCall>> pending_groups_;
};

Connector::Runtime::~Runtime() {
  // Run() joins everything it started; this covers a Runtime that never ran.
  if (control_thread_.joinable()) control_thread_.join();
}

absl::Status Connector::Runtime::Send(std::string topic, std::string payload,
                                      int qos, bool retain, MessageClass cls) {
  absl::Status status = options_.client->Publish(
      MqttMessage{std::move(topic), std::move(payload), qos, retain}, cls);
  if (!status.ok()) {
    IOT2MQTT_LOG(WARNING).With("error", status.ToString()) << "publish failed";
  }
  return status;
}

// ---- state -----------------------------------------------------------------

void Connector::Runtime::SendStateLocked(
    const std::string& device_id, const Known& known,
    const std::vector<JsonMember>& members) {
  const int qos = options_.mqtt.qos;
  const bool retain = options_.mqtt.retain;
  Emit(topics_->State(device_id),
       BuildStatePayload(StateMessage{known.timestamp, device_id, known.state}),
       qos, retain, MessageClass::kState);
  for (const JsonMember& member : members) {
    if (!IsValidId(member.key)) {
      IOT2MQTT_LOG(DEBUG)
              .With("device_id", device_id)
              .With("key", SanitizeUtf8(member.key))
          << "state key cannot be a topic level; no property topic";
      continue;
    }
    Emit(topics_->StateProperty(device_id, member.key), member.value, qos,
         retain, MessageClass::kState);
  }
}

absl::Status Connector::Runtime::PublishState(absl::string_view device_id,
                                              absl::string_view state_json) {
  if (!running()) {
    return absl::FailedPreconditionError("the connector is not running");
  }
  if (absl::Status s = ValidateId(device_id); !s.ok()) return s;
  absl::StatusOr<std::vector<JsonMember>> members = SplitJsonObject(state_json);
  if (!members.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("state of ", device_id,
                     " is not a JSON object: ", members.status().message()));
  }
  Known known{Compact(*members), options_.clock->Now()};
  std::string id(device_id);
  absl::MutexLock lock(&state_mu_);
  known_[id] = known;
  online_[id] = true;
  SendStateLocked(id, known, *members);
  return absl::OkStatus();
}

void Connector::Runtime::Republish() {
  {
    absl::MutexLock lock(&stop_mu_);
    connected_ = true;
  }
  absl::MutexLock lock(&state_mu_);
  for (const auto& [device_id, known] : known_) {
    absl::StatusOr<std::vector<JsonMember>> members =
        SplitJsonObject(known.state);
    if (members.ok()) SendStateLocked(device_id, known, *members);
  }
}

void Connector::Runtime::SetOnline(const std::string& device_id, bool online) {
  absl::MutexLock lock(&state_mu_);
  online_[device_id] = online;
}

absl::Status Connector::Runtime::PublishEvent(absl::string_view device_id,
                                              absl::string_view event,
                                              absl::string_view data_json) {
  if (!running()) {
    return absl::FailedPreconditionError("the connector is not running");
  }
  if (absl::Status s = ValidateId(device_id); !s.ok()) return s;
  absl::StatusOr<std::string> data =
      RewriteJson(data_json.empty() ? "{}" : data_json);
  if (!data.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("event data: ", data.status().message()));
  }
  return Send(topics_->Events(device_id),
              BuildEventPayload(EventMessage{options_.clock->Now(),
                                             std::string(event), *data}),
              1, false, MessageClass::kNormal);
}

absl::Status Connector::Runtime::PublishError(absl::string_view device_id,
                                              absl::string_view error_code,
                                              absl::string_view message,
                                              ErrorSeverity severity,
                                              std::optional<RetryInfo> retry) {
  if (!running()) {
    return absl::FailedPreconditionError("the connector is not running");
  }
  if (absl::Status s = ValidateId(device_id); !s.ok()) return s;
  ErrorMessage error;
  error.timestamp = options_.clock->Now();
  error.error_code = std::string(error_code);
  error.message = std::string(message);
  error.severity = severity;
  error.retry_info = retry;
  return Send(topics_->Error(device_id), BuildErrorPayload(error), 1, false,
              MessageClass::kNormal);
}

void Connector::Runtime::RequestRefresh(absl::string_view device_id) {
  if (!workers_ready_) return;
  Worker* worker = FindWorker(device_id);
  if (worker == nullptr) return;
  absl::MutexLock lock(&worker->mu);
  worker->refresh = true;
}

// ---- inbound ---------------------------------------------------------------

void Connector::Runtime::Receive(InboundMessage message) {
  // Also when the client was not told the limit: never parse such a payload.
  if (!message.oversized && message.payload.size() > kMaxInboundPayloadBytes) {
    message.oversized = true;
    message.payload_bytes = message.payload.size();
    message.payload.clear();
    message.payload.shrink_to_fit();
  }
  absl::MutexLock lock(&control_mu_);
  if (inbox_.size() >= options_.max_inbox) {
    if (!inbox_overflowing_) {
      inbox_overflowing_ = true;
      IOT2MQTT_LOG(WARNING)
              .With("queued", static_cast<int64_t>(inbox_.size()))
              .With("topic", SanitizeUtf8(message.topic))
          << "too many requests waiting; dropping inbound messages";
    }
    return;
  }
  inbox_overflowing_ = false;
  inbox_.push_back(std::move(message));
}

void Connector::Runtime::ControlLoop() {
  while (true) {
    std::optional<InboundMessage> message;
    {
      absl::MutexLock lock(&control_mu_);
      const auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(control_mu_) {
        return control_stop_ || !inbox_.empty();
      };
      if (pending_groups_.empty()) {
        control_mu_.Await(absl::Condition(&ready));
      } else {
        SteadyClock::time_point earliest = pending_groups_.front()->deadline;
        for (const auto& call : pending_groups_) {
          earliest = std::min(earliest, call->deadline);
        }
        control_mu_.AwaitWithTimeout(absl::Condition(&ready), Until(earliest));
      }
      if (control_stop_) return;
      if (!inbox_.empty()) {
        message = std::move(inbox_.front());
        inbox_.pop_front();
      }
    }
    ExpireGroups(/*all=*/false, "");
    if (message.has_value()) Dispatch(*message);
  }
}

void Connector::Runtime::Dispatch(const InboundMessage& message) {
  absl::StatusOr<TopicRef> ref = topics_->ParseInbound(message.topic);
  if (!ref.ok()) {
    if (absl::IsInvalidArgument(ref.status())) {
      ReportError(
          kInstanceErrorDevice, error_codes::kInvalidCommand,
          absl::StrCat("ignored a message on \"", SanitizeUtf8(message.topic),
                       "\": ", ref.status().message()),
          ErrorSeverity::kWarning);
    } else {
      IOT2MQTT_LOG(DEBUG).With("topic", SanitizeUtf8(message.topic))
          << "ignoring a topic outside the contract";
    }
    return;
  }
  if (message.retain) {
    ReportError(kInstanceErrorDevice, error_codes::kInvalidCommand,
                absl::StrCat("ignored a retained request on \"", message.topic,
                             "\": requests must not be retained"),
                ErrorSeverity::kWarning);
    return;
  }
  IOT2MQTT_LOG(DEBUG)
          .With("topic", message.topic)
          .With("bytes", static_cast<int64_t>(message.payload_bytes))
      << "request";
  switch (ref->kind) {
    case TopicKind::kCommand:
      HandleCommand(ref->id, message);
      break;
    case TopicKind::kGet:
      HandleGet(ref->id, message);
      break;
    case TopicKind::kGroupCommand:
      HandleGroup(ref->id, message);
      break;
    case TopicKind::kMetaRequest:
      HandleMeta(ref->id, message);
      break;
    default:
      break;
  }
}

Connector::Runtime::Worker* Connector::Runtime::FindWorker(
    absl::string_view device_id) const {
  auto it = by_id_.find(std::string(device_id));
  return it == by_id_.end() ? nullptr : it->second;
}

std::string Connector::Runtime::UnknownDeviceMessage(
    absl::string_view device_id) const {
  const DeviceConfig* device = options_.config.FindDevice(device_id);
  if (device != nullptr && !device->enabled) {
    return absl::StrCat("device \"", device_id, "\" is disabled");
  }
  return absl::StrCat("device \"", device_id,
                      "\" is not configured in instance \"",
                      options_.config.instance_id, "\"");
}

void Connector::Runtime::RejectCommand(const std::string& device_id,
                                       const std::optional<std::string>& id,
                                       absl::string_view code,
                                       absl::string_view message,
                                       ErrorSeverity severity) {
  IOT2MQTT_LOG(WARNING)
          .With("device_id", device_id)
          .With("cmd_id", id.has_value() ? SanitizeUtf8(*id) : std::string())
          .With("error_code", code)
          .With("error", SanitizeUtf8(message))
      << "command failed";
  if (id.has_value()) {
    CommandResponse response;
    response.cmd_id = *id;
    response.status = ResultStatus::kError;
    response.timestamp = options_.clock->Now();
    response.error_code = std::string(code);
    response.error = std::string(message);
    Emit(topics_->CommandResponse(device_id),
         BuildCommandResponsePayload(response), 1, false,
         MessageClass::kResponse);
  } else {
    ReportError(device_id, code, message, severity);
  }
}

void Connector::Runtime::RejectGet(const std::string& device_id,
                                   const std::optional<std::string>& id,
                                   absl::string_view code,
                                   absl::string_view message) {
  IOT2MQTT_LOG(WARNING)
          .With("device_id", device_id)
          .With("error_code", code)
          .With("error", SanitizeUtf8(message))
      << "get failed";
  ReportError(device_id, code, message, ErrorSeverity::kWarning);
  if (id.has_value()) {
    GetResponse response;
    response.timestamp = options_.clock->Now();
    response.device_id = device_id;
    response.id = id;
    response.error_code = std::string(code);
    response.error = std::string(message);
    Emit(topics_->GetResponse(device_id), BuildGetResponsePayload(response), 1,
         false, MessageClass::kResponse);
  }
}

void Connector::Runtime::RejectGroup(const std::string& group_id,
                                     const std::optional<std::string>& id,
                                     absl::string_view code,
                                     absl::string_view message) {
  IOT2MQTT_LOG(WARNING)
          .With("group_id", group_id)
          .With("error_code", code)
          .With("error", SanitizeUtf8(message))
      << "group command rejected";
  if (id.has_value()) {
    GroupCommandResponse response;
    response.cmd_id = *id;
    response.status = ResultStatus::kError;
    response.timestamp = options_.clock->Now();
    response.error_code = std::string(code);
    response.error = std::string(message);
    Emit(topics_->GroupCommandResponse(group_id),
         BuildGroupCommandResponsePayload(response), 1, false,
         MessageClass::kResponse);
  } else {
    ReportError(kInstanceErrorDevice, code,
                absl::StrCat("group \"", group_id, "\": ", message),
                ErrorSeverity::kWarning);
  }
}

void Connector::Runtime::HandleCommand(const std::string& device_id,
                                       const InboundMessage& message) {
  if (message.oversized) {
    RejectCommand(device_id, std::nullopt, error_codes::kInvalidCommand,
                  Oversized(message.payload_bytes));
    return;
  }
  std::optional<std::string> id;
  absl::StatusOr<CommandRequest> command =
      ParseCommandPayload(message.payload, &id);
  if (!command.ok()) {
    RejectCommand(device_id, id, error_codes::kInvalidCommand,
                  command.status().message());
    return;
  }
  Worker* worker = FindWorker(device_id);
  if (worker == nullptr) {
    RejectCommand(device_id, id, error_codes::kUnknownDevice,
                  UnknownDeviceMessage(device_id));
    return;
  }
  if (absl::Status fresh =
          CheckCommandTime(command->timestamp, options_.clock->Now());
      !fresh.ok()) {
    RejectCommand(device_id, id, error_codes::kStaleCommand, fresh.message());
    return;
  }
  SteadyClock::time_point deadline =
      SteadyClock::now() +
      ToSteady(absl::Milliseconds(RequestTimeoutMs(command->timeout_ms)));
  auto shared = std::make_shared<CommandRequest>(*std::move(command));
  Task task;
  task.run = [this, worker, shared, deadline] {
    ExecuteCommand(*worker, *shared, deadline);
  };
  task.cancel = [this, device_id, shared] {
    RejectCommand(device_id, shared->id, error_codes::kDeviceOffline,
                  "the connector is stopping; the command was not applied");
  };
  if (!Enqueue(*worker, std::move(task))) {
    RejectCommand(device_id, id, error_codes::kDeviceOffline,
                  RefusalMessage("command"));
  }
}

void Connector::Runtime::HandleGet(const std::string& device_id,
                                   const InboundMessage& message) {
  if (message.oversized) {
    RejectGet(device_id, std::nullopt, error_codes::kInvalidCommand,
              Oversized(message.payload_bytes));
    return;
  }
  std::optional<std::string> id;
  absl::StatusOr<GetRequest> request = ParseGetPayload(message.payload, &id);
  if (!request.ok()) {
    RejectGet(device_id, id, error_codes::kInvalidCommand,
              request.status().message());
    return;
  }
  Worker* worker = FindWorker(device_id);
  if (worker == nullptr) {
    RejectGet(device_id, id, error_codes::kUnknownDevice,
              UnknownDeviceMessage(device_id));
    return;
  }
  SteadyClock::time_point deadline =
      SteadyClock::now() + ToSteady(kStaleCommandAge);
  auto shared = std::make_shared<GetRequest>(*std::move(request));
  Task task;
  task.run = [this, worker, shared, deadline] {
    ExecuteGet(*worker, *shared, deadline);
  };
  task.cancel = [this, device_id, shared] {
    RejectGet(device_id, shared->id, error_codes::kDeviceOffline,
              "the connector is stopping; the device was not read");
  };
  if (!Enqueue(*worker, std::move(task))) {
    RejectGet(device_id, id, error_codes::kDeviceOffline,
              RefusalMessage("read"));
  }
}

void Connector::Runtime::HandleGroup(const std::string& group_id,
                                     const InboundMessage& message) {
  if (message.oversized) {
    RejectGroup(group_id, std::nullopt, error_codes::kInvalidCommand,
                Oversized(message.payload_bytes));
    return;
  }
  std::optional<std::string> id;
  absl::StatusOr<CommandRequest> command =
      ParseCommandPayload(message.payload, &id);
  if (!command.ok()) {
    RejectGroup(group_id, id, error_codes::kInvalidCommand,
                command.status().message());
    return;
  }
  const GroupConfig* group = options_.config.FindGroup(group_id);
  if (group == nullptr) {
    RejectGroup(group_id, id, error_codes::kUnknownGroup,
                absl::StrCat("group \"", group_id,
                             "\" is not configured in instance \"",
                             options_.config.instance_id, "\""));
    return;
  }
  if (absl::Status fresh =
          CheckCommandTime(command->timestamp, options_.clock->Now());
      !fresh.ok()) {
    RejectGroup(group_id, id, error_codes::kStaleCommand, fresh.message());
    return;
  }
  auto call = std::make_shared<GroupCall>();
  call->group_id = group_id;
  call->id = id;
  call->timeout_ms = RequestTimeoutMs(command->timeout_ms);
  call->deadline =
      SteadyClock::now() + ToSteady(absl::Milliseconds(call->timeout_ms));
  // Members in config order; disabled ones are not targeted.
  std::vector<std::pair<size_t, Worker*>> targets;
  {
    absl::MutexLock lock(&call->mu);
    for (const std::string& member : group->devices) {
      const DeviceConfig* device = options_.config.FindDevice(member);
      if (device != nullptr && !device->enabled) continue;
      GroupMemberResult result;
      result.device_id = member;
      size_t index = call->results.size();
      if (device == nullptr) {
        result.success = false;
        result.error_code = error_codes::kUnknownDevice;
        result.error = UnknownDeviceMessage(member);
        call->results.push_back(result);
        call->filled.push_back(true);
        continue;
      }
      call->results.push_back(result);
      call->filled.push_back(false);
      targets.emplace_back(index, FindWorker(member));
    }
    call->pending = targets.size();
    if (targets.empty()) call->done = true;
  }
  if (targets.empty()) {
    std::vector<GroupMemberResult> results;
    {
      absl::MutexLock lock(&call->mu);
      results = call->results;
    }
    if (results.empty()) {
      RejectGroup(group_id, id, error_codes::kUnknownDevice,
                  "the group has no enabled member");
    } else {
      FinishGroup(*call, results);
    }
    return;
  }
  auto values = std::make_shared<std::string>(command->values);
  for (const auto& [index, worker] : targets) {
    Task task;
    Worker* w = worker;
    size_t i = index;
    task.run = [this, w, call, i, values] {
      ExecuteGroupMember(*w, call, i, *values);
    };
    task.cancel = [this, call, i, w] {
      GroupMemberResult result;
      result.device_id = w->config.device_id;
      result.success = false;
      result.error_code = error_codes::kDeviceOffline;
      result.error = "the connector is stopping; the command was not applied";
      CompleteMember(call, i, result);
    };
    if (!Enqueue(*worker, std::move(task))) {
      GroupMemberResult result;
      result.device_id = worker->config.device_id;
      result.success = false;
      result.error_code = error_codes::kDeviceOffline;
      result.error = RefusalMessage("command");
      CompleteMember(call, index, result);
    }
  }
  bool done = false;
  {
    absl::MutexLock lock(&call->mu);
    done = call->done;
  }
  if (!done) pending_groups_.push_back(call);
}

void Connector::Runtime::ExpireGroups(bool all, absl::string_view why) {
  SteadyClock::time_point now = SteadyClock::now();
  std::vector<std::shared_ptr<GroupCall>> keep;
  for (const auto& call : pending_groups_) {
    std::vector<GroupMemberResult> results;
    bool finish = false;
    {
      absl::MutexLock lock(&call->mu);
      if (call->done) continue;
      if (!all && now < call->deadline) {
        keep.push_back(call);
        continue;
      }
      for (size_t i = 0; i < call->results.size(); ++i) {
        if (call->filled[i]) continue;
        call->filled[i] = true;
        call->results[i].success = false;
        call->results[i].error_code = error_codes::kDeviceOffline;
        call->results[i].error =
            all ? std::string(why)
                : absl::StrCat("no answer within ", call->timeout_ms, " ms");
      }
      call->done = true;
      call->pending = 0;
      results = call->results;
      finish = true;
    }
    if (finish) FinishGroup(*call, results);
  }
  pending_groups_ = std::move(keep);
}

void Connector::Runtime::CompleteMember(const std::shared_ptr<GroupCall>& call,
                                        size_t index,
                                        GroupMemberResult result) {
  std::vector<GroupMemberResult> results;
  {
    absl::MutexLock lock(&call->mu);
    if (call->done || call->filled[index]) return;
    call->results[index] = std::move(result);
    call->filled[index] = true;
    if (--call->pending > 0) return;
    call->done = true;
    results = call->results;
  }
  FinishGroup(*call, results);
}

void Connector::Runtime::FinishGroup(
    const GroupCall& call, const std::vector<GroupMemberResult>& results) {
  if (call.id.has_value()) {
    GroupCommandResponse response;
    response.cmd_id = *call.id;
    response.status = AggregateStatus(results);
    response.timestamp = options_.clock->Now();
    response.results = results;
    Emit(topics_->GroupCommandResponse(call.group_id),
         BuildGroupCommandResponsePayload(response), 1, false,
         MessageClass::kResponse);
    return;
  }
  // No id, no response: failures go to each member's error topic.
  for (const GroupMemberResult& r : results) {
    if (r.success) continue;
    std::string device =
        IsValidId(r.device_id) ? r.device_id : kInstanceErrorDevice;
    ReportError(device, r.error_code,
                absl::StrCat("group \"", call.group_id, "\": ", r.error),
                ErrorSeverity::kError);
  }
}

void Connector::Runtime::HandleMeta(const std::string& type,
                                    const InboundMessage& message) {
  const InstanceConfig& config = options_.config;
  if (type == "devices_list") {
    std::vector<DeviceListEntry> list;
    {
      absl::MutexLock lock(&state_mu_);
      for (const DeviceConfig& device : config.devices) {
        DeviceListEntry entry;
        entry.device_id = device.device_id;
        entry.model = device.model;
        entry.enabled = device.enabled;
        auto it = online_.find(device.device_id);
        entry.online = it != online_.end() && it->second;
        list.push_back(std::move(entry));
      }
    }
    Emit(topics_->DevicesList(),
         BuildDevicesListPayload(config.instance_id, list), 1, true,
         MessageClass::kNormal);
  } else if (type == "info") {
    InstanceInfo info;
    info.instance_id = config.instance_id;
    info.connector_type = config.connector_type;
    info.devices_count = static_cast<int64_t>(config.devices.size());
    info.groups_count = static_cast<int64_t>(config.groups.size());
    info.uptime_seconds = std::max<int64_t>(
        0, absl::ToInt64Seconds(options_.clock->Now() - started_));
    Emit(topics_->Info(), BuildInfoPayload(info), 1, true,
         MessageClass::kNormal);
  } else {
    ReportError(kInstanceErrorDevice, error_codes::kInvalidCommand,
                absl::StrCat("unknown meta request \"", type,
                             "\" (expected devices_list or info)"),
                ErrorSeverity::kWarning);
  }
}

// ---- workers
// -----------------------------------------------------------------

std::string Connector::Runtime::RefusalMessage(absl::string_view what) const {
  if (stopping_) {
    return absl::StrCat("the connector is stopping; the ", what,
                        " was not carried out");
  }
  return absl::StrCat("device is busy: ", options_.max_device_queue,
                      " requests are already waiting");
}

bool Connector::Runtime::Enqueue(Worker& worker, Task task) {
  absl::MutexLock lock(&worker.mu);
  if (worker.stop || worker.tasks.size() >= options_.max_device_queue) {
    return false;
  }
  worker.tasks.push_back(std::move(task));
  return true;
}

absl::Duration Connector::Runtime::FailureDelay(int failures) const {
  absl::Duration interval = options_.config.update_interval;
  absl::Duration cap =
      std::max(interval, std::min(interval * 10, absl::Seconds(60)));
  absl::Duration delay = interval;
  for (int i = 1; i < failures && delay < cap; ++i) delay *= 2;
  return std::min(delay, cap);
}

void Connector::Runtime::WorkerLoop(Worker& worker) {
  while (true) {
    Task task;
    bool read = false;
    bool scheduled = false;
    {
      absl::MutexLock lock(&worker.mu);
      const auto wake = [&worker]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(worker.mu) {
        return worker.stop || !worker.tasks.empty() || worker.refresh;
      };
      while (true) {
        if (worker.stop) break;
        if (!worker.tasks.empty()) {
          task = std::move(worker.tasks.front());
          worker.tasks.pop_front();
          break;
        }
        if (worker.refresh) {
          worker.refresh = false;
          read = true;
          break;
        }
        if (worker.poll) {
          if (SteadyClock::now() >= worker.next_poll) {
            read = scheduled = true;
            break;
          }
          worker.mu.AwaitWithTimeout(absl::Condition(&wake),
                                     Until(worker.next_poll));
        } else {
          worker.mu.Await(absl::Condition(&wake));
        }
      }
      if (worker.stop) {
        worker.exited = true;
        return;
      }
    }
    if (task.run) {
      task.run();
    } else if (read) {
      Poll(worker, scheduled);
    }
  }
}

void Connector::Runtime::Poll(Worker& worker, bool scheduled) {
  const DeviceConfig& device = worker.config;
  absl::StatusOr<std::string> state = owner_.ReadDevice(device);
  absl::Status status =
      state.ok() ? PublishState(device.device_id, *state) : state.status();
  const absl::Duration interval = options_.config.update_interval;
  if (status.ok()) {
    if (worker.failures > 0) {
      IOT2MQTT_LOG(INFO)
              .With("device_id", device.device_id)
              .With("failed_attempts", worker.failures)
          << "device answers again";
    }
    worker.failures = 0;
    absl::MutexLock lock(&worker.mu);
    SteadyClock::time_point now = SteadyClock::now();
    if (scheduled) {
      worker.next_poll += ToSteady(interval);
      if (worker.next_poll <= now) worker.next_poll = now + ToSteady(interval);
    } else {
      worker.next_poll = now + ToSteady(interval);
    }
    return;
  }
  ++worker.failures;
  absl::Duration delay = FailureDelay(worker.failures);
  {
    absl::MutexLock lock(&worker.mu);
    worker.next_poll = SteadyClock::now() + ToSteady(delay);
  }
  SetOnline(device.device_id, false);
  RetryInfo retry;
  retry.attempt = worker.failures;
  retry.next_retry = options_.clock->Now() + delay;
  IOT2MQTT_LOG(WARNING)
          .With("device_id", device.device_id)
          .With("attempt", worker.failures)
          .With("retry_in_ms", absl::ToInt64Milliseconds(delay))
          .With("error", SanitizeUtf8(status.message()))
      << "reading the device failed";
  ReportError(device.device_id, error_codes::kUpdateError,
              absl::StrCat("reading the device failed: ", status.message()),
              worker.failures >= kFailuresBeforeError ? ErrorSeverity::kError
                                                      : ErrorSeverity::kWarning,
              retry);
}

absl::StatusOr<std::string> Connector::Runtime::Apply(
    Worker& worker, const std::string& values) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseFullPrecisionFlag>(values.data(), values.size());
  if (doc.HasParseError() || !doc.IsObject()) {
    return absl::InvalidArgumentError("values are not a JSON object");
  }
  absl::StatusOr<std::string> after = owner_.ApplyCommand(worker.config, doc);
  if (!after.ok()) return after.status();
  if (after->empty()) {
    after = owner_.ReadDevice(worker.config);
    if (!after.ok()) {
      return WithErrorCode(
          absl::Status(after.status().code(),
                       absl::StrCat("applied, but reading the state back "
                                    "failed: ",
                                    after.status().message())),
          ErrorCodeOf(after.status(), error_codes::kCommandError));
    }
  }
  absl::StatusOr<std::vector<JsonMember>> members = SplitJsonObject(*after);
  if (!members.ok()) {
    return WithErrorCode(
        absl::InternalError(absl::StrCat("the connector returned a state that "
                                         "is not a JSON object: ",
                                         members.status().message())),
        error_codes::kCommandError);
  }
  return Compact(*members);
}

void Connector::Runtime::ExecuteCommand(Worker& worker,
                                        const CommandRequest& command,
                                        SteadyClock::time_point deadline) {
  const std::string& device_id = worker.config.device_id;
  if (SteadyClock::now() > deadline) {
    RejectCommand(device_id, command.id, error_codes::kDeviceOffline,
                  "device is busy: the command was not started before its "
                  "timeout and was not applied");
    return;
  }
  absl::StatusOr<std::string> state = Apply(worker, command.values);
  if (!state.ok()) {
    RejectCommand(device_id, command.id,
                  ErrorCodeOf(state.status(), error_codes::kCommandError),
                  state.status().message(), ErrorSeverity::kError);
    return;
  }
  if (command.id.has_value()) {
    CommandResponse response;
    response.cmd_id = *command.id;
    response.status = ResultStatus::kSuccess;
    response.timestamp = options_.clock->Now();
    response.result = *state;
    Emit(topics_->CommandResponse(device_id),
         BuildCommandResponsePayload(response), 1, false,
         MessageClass::kResponse);
  }
  ReportState(device_id, *state);
}

void Connector::Runtime::ExecuteGet(Worker& worker, const GetRequest& request,
                                    SteadyClock::time_point deadline) {
  const std::string& device_id = worker.config.device_id;
  if (SteadyClock::now() > deadline) {
    RejectGet(device_id, request.id, error_codes::kDeviceOffline,
              "device is busy: the request waited too long");
    return;
  }
  absl::StatusOr<std::string> state = owner_.ReadDevice(worker.config);
  absl::StatusOr<std::vector<JsonMember>> members =
      state.ok() ? SplitJsonObject(*state)
                 : absl::StatusOr<std::vector<JsonMember>>(state.status());
  if (!members.ok()) {
    RejectGet(device_id, request.id,
              ErrorCodeOf(members.status(), error_codes::kUpdateError),
              absl::StrCat("reading the device failed: ",
                           members.status().message()));
    return;
  }
  if (!request.properties.has_value()) {
    ReportState(device_id, *state);
    return;
  }
  std::vector<JsonMember> selected;
  for (const JsonMember& member : *members) {
    if (std::find(request.properties->begin(), request.properties->end(),
                  member.key) != request.properties->end()) {
      selected.push_back(member);
    }
  }
  GetResponse response;
  response.timestamp = options_.clock->Now();
  response.device_id = device_id;
  response.id = request.id;
  response.state = Compact(selected);
  Emit(topics_->GetResponse(device_id), BuildGetResponsePayload(response), 1,
       false, MessageClass::kResponse);
}

void Connector::Runtime::ExecuteGroupMember(
    Worker& worker, const std::shared_ptr<GroupCall>& call, size_t index,
    const std::string& values) {
  GroupMemberResult result;
  result.device_id = worker.config.device_id;
  bool expired = false;
  {
    absl::MutexLock lock(&call->mu);
    if (call->done) return;
    expired = SteadyClock::now() > call->deadline;
  }
  if (expired) {
    result.success = false;
    result.error_code = error_codes::kDeviceOffline;
    result.error = absl::StrCat("no answer within ", call->timeout_ms, " ms");
    CompleteMember(call, index, result);
    return;
  }
  absl::StatusOr<std::string> state = Apply(worker, values);
  if (!state.ok()) {
    result.success = false;
    result.error_code = ErrorCodeOf(state.status(), error_codes::kCommandError);
    result.error = std::string(state.status().message());
    IOT2MQTT_LOG(WARNING)
            .With("group_id", call->group_id)
            .With("device_id", result.device_id)
            .With("error_code", result.error_code)
            .With("error", SanitizeUtf8(result.error))
        << "group command failed on a member";
  } else {
    ReportState(worker.config.device_id, *state);
  }
  CompleteMember(call, index, result);
}

// ---- lifecycle
// ---------------------------------------------------------------

int Connector::Runtime::Run(ConnectorOptions options) {
  options_ = std::move(options);
  if (options_.client == nullptr || options_.clock == nullptr) {
    IOT2MQTT_LOG(ERROR) << "connector options without an MQTT client or clock";
    return 2;
  }
  absl::StatusOr<Topics> topics =
      Topics::Create(options_.mqtt.base_topic, options_.config.instance_id);
  if (!topics.ok()) {
    IOT2MQTT_LOG(ERROR).With("error", topics.status().ToString())
        << "cannot build the instance's topics";
    return 2;
  }
  topics_ = *std::move(topics);
  started_ = options_.clock->Now();
  MqttClient& client = *options_.client;

  client.SetWill(MqttMessage{topics_->Status(), "offline", 1, true});
  client.SetBirth(MqttMessage{topics_->Status(), "online", 1, true});
  client.SetMessageHandler(
      [this](InboundMessage message) { Receive(std::move(message)); });
  client.SetConnectionHandler([this](bool connected) {
    if (connected) {
      Republish();
    } else {
      absl::MutexLock lock(&stop_mu_);
      connected_ = false;
    }
  });
  for (const std::string& filter : topics_->InboundFilters()) {
    if (absl::Status s = client.Subscribe(filter, options_.mqtt.qos); !s.ok()) {
      IOT2MQTT_LOG(ERROR).With("error", s.ToString()) << "cannot subscribe";
      return 2;
    }
  }
  running_ = true;
  if (absl::Status s = client.Start(); !s.ok()) {
    IOT2MQTT_LOG(ERROR).With("error", s.ToString())
        << "cannot start the MQTT client";
    running_ = false;
    return 1;
  }

  if (absl::Status s = owner_.Initialize(); !s.ok()) {
    IOT2MQTT_LOG(ERROR).With("error", s.ToString())
        << "connector initialization failed";
    ReportError(kInstanceErrorDevice, error_codes::kInitError, s.message(),
                ErrorSeverity::kCritical);
    {
      // Give the error a chance to reach the broker.
      absl::MutexLock lock(&stop_mu_);
      const auto connected = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(stop_mu_) {
        return connected_;
      };
      stop_mu_.AwaitWithTimeout(
          absl::Condition(&connected),
          std::min(absl::Seconds(3), options_.stop_timeout / 2));
    }
    Shutdown();
    return 1;
  }

  for (const DeviceConfig& device : options_.config.devices) {
    if (!device.enabled) continue;
    auto worker = std::make_unique<Worker>(device);
    worker->poll = owner_.PollDevice(device);
    {
      absl::MutexLock lock(&worker->mu);
      worker->next_poll = SteadyClock::now();
    }
    by_id_[device.device_id] = worker.get();
    workers_.push_back(std::move(worker));
  }
  workers_ready_ = true;
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    w->thread = std::thread([this, w] { WorkerLoop(*w); });
  }
  control_thread_ = std::thread([this] { ControlLoop(); });
  control_started_ = true;
  IOT2MQTT_LOG(INFO)
          .With("instance", options_.config.instance_id)
          .With("connector_type", options_.config.connector_type)
          .With("devices", static_cast<int64_t>(workers_.size()))
          .With("groups", static_cast<int64_t>(options_.config.groups.size()))
          .With("update_interval_s",
                absl::ToDoubleSeconds(options_.config.update_interval))
      << "connector running";

  {
    absl::MutexLock lock(&stop_mu_);
    stop_mu_.Await(absl::Condition(&stop_requested_));
  }
  Shutdown();
  return 0;
}

void Connector::Runtime::Shutdown() {
  const SteadyClock::time_point deadline =
      SteadyClock::now() + ToSteady(options_.stop_timeout);
  // Keep part of the budget for Cleanup(), `offline` and the disconnect.
  const absl::Duration reserve =
      std::min(absl::Seconds(3), options_.stop_timeout / 3);
  IOT2MQTT_LOG(INFO) << "stopping";
  stopping_ = true;
  owner_.OnStopRequested();

  std::deque<InboundMessage> unread;
  {
    absl::MutexLock lock(&control_mu_);
    control_stop_ = true;
  }
  if (control_thread_.joinable()) control_thread_.join();

  for (auto& worker : workers_) {
    absl::MutexLock lock(&worker->mu);
    worker->stop = true;
  }
  bool all_stopped = true;
  std::vector<Task> cancelled;
  for (auto& worker : workers_) {
    bool exited = false;
    {
      absl::MutexLock lock(&worker->mu);
      const auto gone = [&worker]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(worker->mu) {
        return worker->exited;
      };
      worker->mu.AwaitWithTimeout(absl::Condition(&gone),
                                  Until(deadline) - reserve);
      exited = worker->exited;
      for (Task& task : worker->tasks) cancelled.push_back(std::move(task));
      worker->tasks.clear();
    }
    if (exited) {
      worker->thread.join();
    } else {
      all_stopped = false;
      IOT2MQTT_LOG(ERROR).With("device_id", worker->config.device_id)
          << "a device hook is still running at the stop deadline; "
             "abandoning it";
      worker->thread.detach();
      // The detached thread still uses the worker: never free it.
      worker.release();  // NOLINT(bugprone-unused-return-value)
    }
  }
  for (Task& task : cancelled) {
    if (task.cancel) task.cancel();
  }
  // Requests received but not dispatched yet are answered too (workers are
  // stopped: every device request is refused with "stopping").
  {
    absl::MutexLock lock(&control_mu_);
    unread.swap(inbox_);
  }
  if (control_started_) {
    for (const InboundMessage& message : unread) Dispatch(message);
  }
  ExpireGroups(/*all=*/true, "the connector is stopping");
  if (all_stopped) {
    owner_.Cleanup();
  } else {
    IOT2MQTT_LOG(ERROR) << "skipping Cleanup(): a device hook is still running";
  }
  clean_ = all_stopped;
  running_ = false;
  absl::Duration left = std::max(Until(deadline), absl::Milliseconds(500));
  options_.client->Stop(MqttMessage{topics_->Status(), "offline", 1, true},
                        left);
  IOT2MQTT_LOG(INFO).With("clean", all_stopped) << "stopped";
}

// ---------------------------------------------------------------------------

Connector::Connector() : runtime_(std::make_unique<Runtime>(*this)) {}

Connector::~Connector() {
  // A Runtime abandoned with a blocked hook must not be freed (see
  // stopped_cleanly()).
  if (!runtime_->clean()) runtime_.release();  // NOLINT
}

int Connector::Run(ConnectorOptions options) {
  return runtime_->Run(std::move(options));
}
void Connector::RequestStop() { runtime_->RequestStop(); }
bool Connector::stopped_cleanly() const { return runtime_->clean(); }

absl::Status Connector::PublishState(absl::string_view device_id,
                                     absl::string_view state_json) {
  return runtime_->PublishState(device_id, state_json);
}
absl::Status Connector::PublishEvent(absl::string_view device_id,
                                     absl::string_view event,
                                     absl::string_view data_json) {
  return runtime_->PublishEvent(device_id, event, data_json);
}
absl::Status Connector::PublishError(absl::string_view device_id,
                                     absl::string_view error_code,
                                     absl::string_view message,
                                     ErrorSeverity severity) {
  return runtime_->PublishError(device_id, error_code, message, severity);
}
void Connector::RequestRefresh(absl::string_view device_id) {
  runtime_->RequestRefresh(device_id);
}
const InstanceConfig& Connector::config() const { return runtime_->config(); }
const Topics& Connector::topics() const { return runtime_->topics(); }
Clock& Connector::clock() const { return runtime_->clock(); }

}  // namespace iot2mqtt::sdk
