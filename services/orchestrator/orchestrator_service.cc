#include "services/orchestrator/orchestrator_service.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "rapidjson/document.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"
#include "services/common/grpc_status.h"
#include "services/common/rpc_scope.h"
#include "services/common/status.h"

namespace iot2mqtt::orchestrator {
namespace {

constexpr int kDefaultLines = 100;
constexpr int kMaxLines = 10000;
constexpr size_t kMaxQueued = 256;

absl::StatusOr<int> LinesOf(bool has, int lines) {
  if (!has) return kDefaultLines;
  if (lines < 1 || lines > kMaxLines) {
    return common::WithReason(absl::InvalidArgumentError(absl::StrCat(
                                  "lines must be between 1 and ", kMaxLines)),
                              "INVALID_LINES");
  }
  return lines;
}

// Docker's short id (12 hex digits) for full ids; names stay.
std::string ShortId(const std::string& id) {
  if (id.size() == 64 &&
      id.find_first_not_of("0123456789abcdef") == std::string::npos) {
    return id.substr(0, 12);
  }
  return id;
}

void ToProto(const RuntimeInfo& info, v1::ContainerInfo* out) {
  out->set_id(ShortId(info.id));
  out->set_name(info.name);
  out->set_status(std::string(RuntimeStateName(info.state)));
  out->set_image(info.image);
  out->set_created(IsoTime(info.created));
  out->set_ports("{}");
  for (const auto& [key, value] : info.labels) {
    (*out->mutable_labels())[key] = value;
  }
  out->set_instance_id(info.instance_id);
  out->set_connector(info.connector);
  out->set_status_text(info.status_text);
  out->set_restart_count(info.restart_count);
  out->set_pid(info.pid);
}

void ToProto(const InstanceRuntimeView& view, v1::InstanceRuntime* out) {
  out->set_instance_id(view.instance_id);
  out->set_connector(view.connector);
  out->set_desired_running(view.desired_running);
  out->set_state(view.state);
  out->set_container_id(ShortId(view.container_id));
  out->set_restarts(view.restarts);
  out->set_crash_loop(view.crash_loop);
  out->set_last_error(view.last_error);
  out->set_last_exit_code(view.last_exit_code);
  for (const std::string& line : view.last_log_lines) {
    out->add_last_log_lines(line);
  }
  out->set_updated_at(IsoTime(view.updated_at));
  out->set_next_restart_at(IsoTime(view.next_restart_at));
}

void SetAction(v1::ContainerActionResponse* response, const char* message) {
  response->set_success(true);
  response->set_message(message);
}

void SetInstanceAction(v1::InstanceActionResponse* response,
                       absl::string_view id, absl::string_view what) {
  response->set_status("success");
  response->set_message(absl::StrCat("Instance ", id, " ", what));
}

}  // namespace

std::string LiveStatusOf(const InstanceRuntimeView* view,
                         absl::string_view bus_status) {
  if (view == nullptr) return "configuring";  // Not reconciled yet.
  const std::string& state = view->state;
  if (state == "running") {
    return bus_status == "online" ? "connected" : "configuring";
  }
  if (state == "starting") return "configuring";
  if (state == "crash_loop" || state == "build_failed" || state == "error") {
    return "error";
  }
  return "offline";  // stopped, missing.
}

namespace {

using JsonValue = rapidjson::Value;

std::string StatusOfMember(const JsonValue& object) {
  auto it = object.FindMember("status");
  if (it == object.MemberEnd() || !it->value.IsString()) return "";
  return it->value.GetString();
}

// Sets the instance object's status from `live` (disabled stays).
void OverlayInstance(JsonValue& object,
                     const std::map<std::string, std::string>& live,
                     rapidjson::Document::AllocatorType& allocator) {
  if (!object.IsObject()) return;
  auto id = object.FindMember("instance_id");
  if (id == object.MemberEnd() || !id->value.IsString()) return;
  if (StatusOfMember(object) == "disabled") return;
  auto it = live.find(id->value.GetString());
  if (it == live.end()) return;
  auto status = object.FindMember("status");
  if (status == object.MemberEnd()) {
    object.AddMember("status", JsonValue(it->second.c_str(), allocator),
                     allocator);
  } else {
    status->value.SetString(it->second.c_str(), allocator);
  }
}

// Upstream's aggregate over the enabled instances.
std::string Aggregate(const JsonValue& instances) {
  bool any = false, error = false, offline = false, configuring = false;
  for (const JsonValue& instance : instances.GetArray()) {
    if (!instance.IsObject()) continue;
    std::string status = StatusOfMember(instance);
    if (status == "disabled") continue;
    any = true;
    error = error || status == "error";
    offline = offline || status == "offline";
    configuring = configuring || status == "configuring" || status == "unknown";
  }
  if (!any) return "disabled";
  if (error) return "error";
  if (offline) return "offline";
  if (configuring) return "configuring";
  return "connected";
}

}  // namespace

absl::StatusOr<std::string> OverlayIntegrationStatus(
    absl::string_view json, absl::string_view kind,
    const std::map<std::string, std::string>& live) {
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  auto shape_error = [&kind] {
    return absl::InternalError(
        absl::StrCat("the config service's ", kind, " view has another shape"));
  };
  if (doc.HasParseError()) return shape_error();
  auto& allocator = doc.GetAllocator();
  if (kind == "instance") {
    if (!doc.IsObject()) return shape_error();
    OverlayInstance(doc, live, allocator);
  } else if (kind == "instances") {
    if (!doc.IsArray()) return shape_error();
    for (JsonValue& instance : doc.GetArray()) {
      OverlayInstance(instance, live, allocator);
    }
  } else {
    if (!doc.IsArray()) return shape_error();
    for (JsonValue& integration : doc.GetArray()) {
      if (!integration.IsObject()) continue;
      auto instances = integration.FindMember("instances");
      if (instances == integration.MemberEnd() || !instances->value.IsArray()) {
        continue;
      }
      for (JsonValue& instance : instances->value.GetArray()) {
        OverlayInstance(instance, live, allocator);
      }
      std::string aggregate = Aggregate(instances->value);
      auto status = integration.FindMember("status");
      if (status == integration.MemberEnd()) {
        integration.AddMember("status", JsonValue(aggregate.c_str(), allocator),
                              allocator);
      } else {
        status->value.SetString(aggregate.c_str(), allocator);
      }
    }
  }
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  doc.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

v1::LogEntry ToLogEntry(const LogLine& line) {
  v1::LogEntry entry;
  absl::Time time = line.time == absl::InfinitePast() ? absl::Now() : line.time;
  entry.set_timestamp(IsoTime(time));
  entry.set_level(LogLevelOf(line.text));
  entry.set_content(line.text);
  entry.set_stream(line.stream.empty() ? "stdout" : line.stream);
  return entry;
}

// --- Streams -----------------------------------------------------------------

// What a stream's producer thread and its reactor share. The reactor may be
// gone (OnDone) while the producer still runs: it then sees `cancelled`.
struct OrchestratorServiceImpl::StreamControl {
  absl::Mutex mu;
  bool cancelled ABSL_GUARDED_BY(mu) = false;

  bool Cancelled() {
    absl::MutexLock lock(&mu);
    return cancelled;
  }
  void Cancel() {
    absl::MutexLock lock(&mu);
    cancelled = true;
  }
};

namespace {

template <typename Message>
class ThreadStream final : public grpc::ServerWriteReactor<Message> {
 public:
  using Control = OrchestratorServiceImpl::StreamControl;

  struct State;

  explicit ThreadStream(std::shared_ptr<Control> control)
      : state_(std::make_shared<State>()) {
    state_->reactor = this;
    state_->control = std::move(control);
  }

  // The producer's side; valid after the reactor is gone.
  class Sink {
   public:
    explicit Sink(std::shared_ptr<State> state) : state_(std::move(state)) {}
    // Queues one message; waits while the queue is full. False once the
    // stream is cancelled.
    bool Push(Message message) const {
      return state_->Push(std::move(message));
    }
    bool Cancelled() const { return state_->IsCancelled(); }
    void Done(const absl::Status& status) const { state_->Done(status); }

   private:
    std::shared_ptr<State> state_;
  };

  Sink MakeSink() { return Sink(state_); }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&state_->mu);
    state_->writing = false;
    if (!ok) {
      state_->cancelled = true;
      state_->FinishLocked(grpc::Status::CANCELLED);
      return;
    }
    state_->PumpLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&state_->mu);
    state_->cancelled = true;
    if (!state_->writing) state_->FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&state_->mu);
      state_->reactor = nullptr;
      state_->cancelled = true;
    }
    delete this;
  }

  struct State {
    absl::Mutex mu;
    ThreadStream* reactor ABSL_GUARDED_BY(mu) = nullptr;
    std::shared_ptr<Control> control;
    std::deque<Message> queue ABSL_GUARDED_BY(mu);
    Message current ABSL_GUARDED_BY(mu);
    bool writing ABSL_GUARDED_BY(mu) = false;
    bool producer_done ABSL_GUARDED_BY(mu) = false;
    bool finished ABSL_GUARDED_BY(mu) = false;
    bool cancelled ABSL_GUARDED_BY(mu) = false;
    absl::Status final_status ABSL_GUARDED_BY(mu);

    bool IsCancelled() {
      if (control->Cancelled()) return true;
      absl::MutexLock lock(&mu);
      return cancelled || finished;
    }

    bool Push(Message message) {
      absl::MutexLock lock(&mu);
      auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
        return queue.size() < kMaxQueued || cancelled || finished;
      };
      while (!room()) {
        mu.AwaitWithTimeout(absl::Condition(&room), absl::Milliseconds(100));
        if (control->Cancelled()) return false;
      }
      if (cancelled || finished) return false;
      queue.push_back(std::move(message));
      PumpLocked();
      return true;
    }

    void Done(const absl::Status& status) {
      absl::MutexLock lock(&mu);
      producer_done = true;
      final_status = status;
      PumpLocked();
    }

    void PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      if (reactor == nullptr || finished || writing) return;
      if (!queue.empty()) {
        current = std::move(queue.front());
        queue.pop_front();
        writing = true;
        reactor->StartWrite(&current);
        return;
      }
      if (producer_done) FinishLocked(common::ToGrpcStatus(final_status));
    }

    void FinishLocked(const grpc::Status& status)
        ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      if (finished || reactor == nullptr) return;
      finished = true;
      reactor->Finish(status);
    }
  };

 private:
  std::shared_ptr<State> state_;
};

}  // namespace

// --- Service -------------------------------------------------------------

OrchestratorServiceImpl::OrchestratorServiceImpl(Orchestrator& orchestrator,
                                                 GrpcConfigSource* integrations,
                                                 BridgeClient& bridge,
                                                 int worker_threads)
    : orchestrator_(orchestrator),
      integrations_(integrations),
      bridge_(bridge),
      pool_(worker_threads) {}

OrchestratorServiceImpl::~OrchestratorServiceImpl() { EndStreams(); }

void OrchestratorServiceImpl::EndStreams() {
  std::vector<StreamThread> threads;
  {
    absl::MutexLock lock(&mu_);
    ended_ = true;
    for (auto& control : streams_) control->Cancel();
    threads.swap(threads_);
  }
  for (StreamThread& entry : threads) entry.thread.join();
}

void OrchestratorServiceImpl::StartStreamThread(std::function<void()> body) {
  absl::MutexLock lock(&mu_);
  // Join the threads of streams that ended meanwhile.
  for (auto it = threads_.begin(); it != threads_.end();) {
    if (it->done->load()) {
      it->thread.join();
      it = threads_.erase(it);
    } else {
      ++it;
    }
  }
  streams_.erase(std::remove_if(streams_.begin(), streams_.end(),
                                [](const std::shared_ptr<StreamControl>& c) {
                                  return c.use_count() == 1;
                                }),
                 streams_.end());
  auto done = std::make_shared<std::atomic<bool>>(false);
  StreamThread entry;
  entry.done = done;
  entry.thread = std::thread([body = std::move(body), done] {
    body();
    done->store(true);
  });
  threads_.push_back(std::move(entry));
}

grpc::ServerUnaryReactor* OrchestratorServiceImpl::ListContainers(
    grpc::CallbackServerContext* context,
    const v1::ListContainersRequest* request,
    v1::ListContainersResponse* response) {
  return common::Offload(context, "ListContainers", pool_, [=] {
    bool all = !request->has_all() || request->all();
    IOT2MQTT_ASSIGN_OR_RETURN(std::vector<RuntimeInfo> listed,
                              orchestrator_.ListRuntimes(all));
    for (const RuntimeInfo& info : listed) {
      ToProto(info, response->add_containers());
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* OrchestratorServiceImpl::StartContainer(
    grpc::CallbackServerContext* context, const v1::ContainerRequest* request,
    v1::ContainerActionResponse* response) {
  return common::Offload(context, "StartContainer", pool_, [=] {
    IOT2MQTT_RETURN_IF_ERROR(orchestrator_.StartRuntime(request->id()));
    SetAction(response, "Container started");
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* OrchestratorServiceImpl::StopContainer(
    grpc::CallbackServerContext* context, const v1::ContainerRequest* request,
    v1::ContainerActionResponse* response) {
  return common::Offload(context, "StopContainer", pool_, [=] {
    IOT2MQTT_RETURN_IF_ERROR(orchestrator_.StopRuntime(request->id()));
    SetAction(response, "Container stopped");
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* OrchestratorServiceImpl::RestartContainer(
    grpc::CallbackServerContext* context, const v1::ContainerRequest* request,
    v1::ContainerActionResponse* response) {
  return common::Offload(context, "RestartContainer", pool_, [=] {
    IOT2MQTT_RETURN_IF_ERROR(orchestrator_.RestartRuntime(request->id()));
    SetAction(response, "Container restarted");
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* OrchestratorServiceImpl::RemoveContainer(
    grpc::CallbackServerContext* context,
    const v1::RemoveContainerRequest* request,
    v1::ContainerActionResponse* response) {
  return common::Offload(context, "RemoveContainer", pool_, [=] {
    IOT2MQTT_RETURN_IF_ERROR(orchestrator_.RemoveRuntime(request->id()));
    SetAction(response, "Container deleted");
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* OrchestratorServiceImpl::GetContainerLogs(
    grpc::CallbackServerContext* context,
    const v1::GetContainerLogsRequest* request,
    v1::GetContainerLogsResponse* response) {
  return common::Offload(context, "GetContainerLogs", pool_, [=] {
    IOT2MQTT_ASSIGN_OR_RETURN(int lines,
                              LinesOf(request->has_lines(), request->lines()));
    IOT2MQTT_ASSIGN_OR_RETURN(std::vector<LogLine> logs,
                              orchestrator_.RuntimeLogs(request->id(), lines));
    response->set_container_id(request->id());
    for (const LogLine& line : logs) {
      *response->add_logs() = ToLogEntry(line);
    }
    response->set_since("null");
    response->set_until("null");
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::LogEntry>* OrchestratorServiceImpl::StreamLogs(
    grpc::CallbackServerContext* context,
    const v1::StreamLogsRequest* request) {
  auto control = std::make_shared<StreamControl>();
  auto* stream = new ThreadStream<v1::LogEntry>(control);
  auto sink = stream->MakeSink();
  std::string id = request->id();
  absl::StatusOr<int> lines = LinesOf(request->has_lines(), request->lines());
  std::string correlation_id = common::CorrelationIdFrom(*context);
  {
    absl::MutexLock lock(&mu_);
    if (ended_) {
      sink.Done(absl::UnavailableError("the orchestrator is shutting down"));
      return stream;
    }
    streams_.push_back(control);
  }
  StartStreamThread([this, sink, id, lines, correlation_id] {
    sdk::ScopedCorrelationId scope(
        correlation_id.empty() ? common::NewCorrelationId() : correlation_id);
    if (!lines.ok()) {
      sink.Done(lines.status());
      return;
    }
    absl::Status status = orchestrator_.FollowRuntimeLogs(
        id, *lines,
        [&sink](const LogLine& line) { return sink.Push(ToLogEntry(line)); },
        [&sink] { return sink.Cancelled(); });
    if (orchestrator_.shutting_down() && status.ok()) {
      status = absl::UnavailableError("the orchestrator is shutting down");
    }
    IOT2MQTT_LOG(INFO).With("rpc", "StreamLogs").With("id", id)
        << "log stream ended" << (status.ok() ? "" : ": ")
        << (status.ok() ? "" : status.message());
    sink.Done(status);
  });
  return stream;
}

grpc::ServerUnaryReactor* OrchestratorServiceImpl::GetContainerStats(
    grpc::CallbackServerContext* context, const v1::ContainerRequest* request,
    v1::ContainerStats* response) {
  return common::Offload(context, "GetContainerStats", pool_, [=] {
    IOT2MQTT_ASSIGN_OR_RETURN(RuntimeStats stats,
                              orchestrator_.RuntimeStatsOf(request->id()));
    response->set_id(request->id());
    response->set_cpu_percent(stats.cpu_percent);
    response->set_memory_bytes(stats.memory_bytes);
    response->set_memory_limit_bytes(stats.memory_limit_bytes);
    response->set_pids(stats.pids);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* OrchestratorServiceImpl::StartInstance(
    grpc::CallbackServerContext* context, const v1::InstanceRequest* request,
    v1::InstanceActionResponse* response) {
  return common::Offload(context, "StartInstance", pool_, [=] {
    IOT2MQTT_RETURN_IF_ERROR(
        orchestrator_.StartInstance(request->instance_id()));
    SetInstanceAction(response, request->instance_id(), "started");
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* OrchestratorServiceImpl::StopInstance(
    grpc::CallbackServerContext* context, const v1::InstanceRequest* request,
    v1::InstanceActionResponse* response) {
  return common::Offload(context, "StopInstance", pool_, [=] {
    IOT2MQTT_RETURN_IF_ERROR(
        orchestrator_.StopInstance(request->instance_id()));
    SetInstanceAction(response, request->instance_id(), "stopped");
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* OrchestratorServiceImpl::RestartInstance(
    grpc::CallbackServerContext* context, const v1::InstanceRequest* request,
    v1::InstanceActionResponse* response) {
  return common::Offload(context, "RestartInstance", pool_, [=] {
    IOT2MQTT_RETURN_IF_ERROR(
        orchestrator_.RestartInstance(request->instance_id()));
    SetInstanceAction(response, request->instance_id(), "restarted");
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* OrchestratorServiceImpl::DeleteInstance(
    grpc::CallbackServerContext* context, const v1::InstanceRequest* request,
    v1::InstanceActionResponse* response) {
  return common::Offload(context, "DeleteInstance", pool_, [=] {
    IOT2MQTT_ASSIGN_OR_RETURN(
        std::string note, orchestrator_.DeleteInstance(request->instance_id()));
    SetInstanceAction(response, request->instance_id(),
                      absl::StrCat("deleted completely", note));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* OrchestratorServiceImpl::RetryInstance(
    grpc::CallbackServerContext* context,
    const v1::RetryInstanceRequest* request,
    v1::RetryInstanceResponse* response) {
  return common::Offload(context, "RetryInstance", pool_, [=] {
    IOT2MQTT_RETURN_IF_ERROR(orchestrator_.RetryInstance(
        request->connector(), request->instance_id()));
    response->set_success(true);
    response->set_message("Retry initiated");
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* OrchestratorServiceImpl::ListInstanceRuntimes(
    grpc::CallbackServerContext* context,
    const v1::ListInstanceRuntimesRequest* /*request*/,
    v1::ListInstanceRuntimesResponse* response) {
  return common::Offload(context, "ListInstanceRuntimes", pool_, [=] {
    for (const InstanceRuntimeView& view :
         orchestrator_.ListInstanceRuntimes()) {
      ToProto(view, response->add_instances());
    }
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::BuildProgress>*
OrchestratorServiceImpl::BuildConnector(
    grpc::CallbackServerContext* context,
    const v1::BuildConnectorRequest* request) {
  auto control = std::make_shared<StreamControl>();
  auto* stream = new ThreadStream<v1::BuildProgress>(control);
  auto sink = stream->MakeSink();
  std::string connector = request->connector();
  std::string correlation_id = common::CorrelationIdFrom(*context);
  {
    absl::MutexLock lock(&mu_);
    if (ended_) {
      sink.Done(absl::UnavailableError("the orchestrator is shutting down"));
      return stream;
    }
    streams_.push_back(control);
  }
  StartStreamThread([this, sink, connector, correlation_id] {
    sdk::ScopedCorrelationId scope(
        correlation_id.empty() ? common::NewCorrelationId() : correlation_id);
    absl::Status status = orchestrator_.BuildConnector(
        connector, [&sink](absl::string_view line) {
          v1::BuildProgress progress;
          progress.set_line(std::string(line));
          sink.Push(std::move(progress));
        });
    IOT2MQTT_LOG(INFO)
            .With("rpc", "BuildConnector")
            .With("connector", connector)
            .With("ok", status.ok())
        << "build ended" << (status.ok() ? "" : ": ")
        << (status.ok() ? "" : status.message());
    // The last message says how it ended; a bad request is an RPC error.
    if (absl::IsInvalidArgument(status) || absl::IsNotFound(status)) {
      sink.Done(status);
      return;
    }
    v1::BuildProgress last;
    last.set_done(true);
    last.set_success(status.ok());
    if (!status.ok()) last.set_error(std::string(status.message()));
    sink.Push(std::move(last));
    sink.Done(absl::OkStatus());
  });
  return stream;
}

grpc::ServerUnaryReactor* OrchestratorServiceImpl::GetSystemStatus(
    grpc::CallbackServerContext* context,
    const v1::GetSystemStatusRequest* /*request*/,
    v1::GetSystemStatusResponse* response) {
  return common::Offload(context, "GetSystemStatus", pool_, [=] {
    SystemStatus status = orchestrator_.GetSystemStatus();
    response->set_mqtt_connected(status.mqtt_connected);
    response->set_docker_available(status.docker_available);
    response->set_instances_count(status.instances_count);
    response->set_devices_count(status.devices_count);
    response->set_containers_running(status.containers_running);
    response->set_containers_total(status.containers_total);
    response->set_version(status.version);
    response->set_runtime(status.runtime);
    return absl::OkStatus();
  });
}

std::map<std::string, std::string> OrchestratorServiceImpl::LiveStatuses() {
  absl::StatusOr<std::map<std::string, std::string>> bus =
      bridge_.InstanceStatuses();
  std::map<std::string, std::string> live;
  for (const InstanceRuntimeView& view : orchestrator_.ListInstanceRuntimes()) {
    std::string bus_status = "unknown";
    if (bus.ok()) {
      auto it = bus->find(view.instance_id);
      if (it != bus->end()) bus_status = it->second;
    }
    live[view.instance_id] = LiveStatusOf(&view, bus_status);
  }
  return live;
}

grpc::ServerUnaryReactor* OrchestratorServiceImpl::ListConfiguredIntegrations(
    grpc::CallbackServerContext* context,
    const v1::ListConfiguredIntegrationsRequest* /*request*/,
    v1::ListConfiguredIntegrationsResponse* response) {
  return common::Offload(context, "ListConfiguredIntegrations", pool_, [=] {
    if (integrations_ == nullptr) return absl::UnimplementedError("no config");
    IOT2MQTT_ASSIGN_OR_RETURN(std::string json,
                              integrations_->ListConfiguredIntegrationsJson());
    IOT2MQTT_ASSIGN_OR_RETURN(
        *response->mutable_integrations(),
        OverlayIntegrationStatus(json, "integrations", LiveStatuses()));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* OrchestratorServiceImpl::ListIntegrationInstances(
    grpc::CallbackServerContext* context,
    const v1::ListIntegrationInstancesRequest* request,
    v1::ListIntegrationInstancesResponse* response) {
  return common::Offload(context, "ListIntegrationInstances", pool_, [=] {
    if (integrations_ == nullptr) return absl::UnimplementedError("no config");
    IOT2MQTT_RETURN_IF_ERROR(ValidateConnectorName(request->name()));
    IOT2MQTT_ASSIGN_OR_RETURN(
        std::string json,
        integrations_->ListIntegrationInstancesJson(request->name()));
    IOT2MQTT_ASSIGN_OR_RETURN(
        *response->mutable_instances(),
        OverlayIntegrationStatus(json, "instances", LiveStatuses()));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* OrchestratorServiceImpl::GetIntegrationInstance(
    grpc::CallbackServerContext* context,
    const v1::GetIntegrationInstanceRequest* request,
    v1::GetIntegrationInstanceResponse* response) {
  return common::Offload(context, "GetIntegrationInstance", pool_, [=] {
    if (integrations_ == nullptr) return absl::UnimplementedError("no config");
    IOT2MQTT_RETURN_IF_ERROR(ValidateInstanceId(request->instance_id()));
    IOT2MQTT_ASSIGN_OR_RETURN(
        std::string json,
        integrations_->GetIntegrationInstanceJson(request->instance_id()));
    IOT2MQTT_ASSIGN_OR_RETURN(
        *response->mutable_instance(),
        OverlayIntegrationStatus(json, "instance", LiveStatuses()));
    return absl::OkStatus();
  });
}

}  // namespace iot2mqtt::orchestrator
