#include "services/discovery/discovery_service.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <map>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "services/common/grpc_status.h"
#include "services/common/rpc_scope.h"
#include "services/common/status.h"
#include "services/discovery/device_identity.h"

namespace iot2mqtt::discovery {
namespace {

constexpr int kMaxDiscoveryTimeoutSeconds = 300;

absl::Status ShuttingDown() {
  return common::WithReason(
      absl::UnavailableError("the discovery service is shutting down"),
      kShuttingDown);
}

absl::Status DeviceNotFound(absl::string_view device_id) {
  return common::WithReason(
      absl::NotFoundError(absl::StrCat("Device ", device_id, " not found")),
      "DEVICE_NOT_FOUND", {{"device_id", std::string(device_id)}});
}

absl::Status CheckDeviceId(absl::string_view device_id) {
  if (IsValidDeviceId(device_id)) return absl::OkStatus();
  return common::WithReason(
      absl::InvalidArgumentError(
          "device_id must match ^[a-z0-9][a-z0-9_-]{0,127}$"),
      "INVALID_DEVICE_ID");
}

absl::Status CheckInstanceId(absl::string_view instance_id) {
  if (IsValidName(instance_id)) return absl::OkStatus();
  return common::WithReason(
      absl::InvalidArgumentError(
          "instance_id must match ^[a-z0-9][a-z0-9_-]{0,62}$"),
      "INVALID_INSTANCE_ID");
}

std::string CorrelationIdOf(const grpc::CallbackServerContext& context) {
  std::string id = common::CorrelationIdFrom(context);
  return id.empty() ? common::NewCorrelationId() : id;
}

// One INFO line for the outcome of a call (never a body: instance
// documents and tool input may carry secrets).
sdk::LogLine& Outcome(sdk::LogLine& line, absl::string_view rpc,
                      const absl::Status& status) {
  line.With("rpc", rpc).With("code", common::CodeName(status.code()));
  if (!status.ok()) line.With("reason", common::ReasonOf(status));
  return line;
}

// --- Streams that always carry the latest state ---------------------------

// What a stream's producers and its reactor share; producers may outlive
// the reactor (it is then gone and Offer() answers false).
template <typename Message>
class LatestStream;

template <typename Message>
struct StreamState {
  absl::Mutex mu;
  LatestStream<Message>* reactor ABSL_GUARDED_BY(mu) = nullptr;
  std::optional<Message> pending ABSL_GUARDED_BY(mu);
  Message current ABSL_GUARDED_BY(mu);
  bool writing ABSL_GUARDED_BY(mu) = false;
  bool closing ABSL_GUARDED_BY(mu) = false;
  bool finished ABSL_GUARDED_BY(mu) = false;
  bool done ABSL_GUARDED_BY(mu) = false;
  absl::Status close_status ABSL_GUARDED_BY(mu);
  std::function<void()> on_done ABSL_GUARDED_BY(mu);

  virtual ~StreamState() = default;

  // Sends `message` once the write under way is done, replacing a message
  // not sent yet. False once the stream is ending.
  bool Offer(Message message) {
    absl::MutexLock lock(&mu);
    if (reactor == nullptr || closing || finished) return false;
    pending = std::move(message);
    PumpLocked();
    return true;
  }

  // Ends the stream with `status` after the pending message.
  void Close(const absl::Status& status) {
    absl::MutexLock lock(&mu);
    if (reactor == nullptr || closing || finished) return;
    closing = true;
    close_status = status;
    PumpLocked();
  }

  // Runs `callback` when the call is done; false (not stored) when it is
  // done already.
  bool SetOnDone(std::function<void()> callback) {
    absl::MutexLock lock(&mu);
    if (done) return false;
    on_done = std::move(callback);
    return true;
  }

  void PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (reactor == nullptr || finished || writing) return;
    if (pending.has_value()) {
      current = std::move(*pending);
      pending.reset();
      writing = true;
      // No buffer hint: a hinted write may wait for a later one forever.
      reactor->StartWrite(&current);
      return;
    }
    if (closing) {
      finished = true;
      reactor->Finish(common::ToGrpcStatus(close_status));
    }
  }
};

template <typename Message>
class LatestStream final : public grpc::ServerWriteReactor<Message> {
 public:
  explicit LatestStream(std::shared_ptr<StreamState<Message>> state)
      : state_(std::move(state)) {
    absl::MutexLock lock(&state_->mu);
    state_->reactor = this;
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&state_->mu);
    state_->writing = false;
    if (!ok) {
      state_->pending.reset();
      if (!state_->finished) {
        state_->finished = true;
        this->Finish(
            grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      }
      return;
    }
    state_->PumpLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&state_->mu);
    state_->pending.reset();
    if (!state_->closing) {
      state_->closing = true;
      state_->close_status = absl::CancelledError("cancelled");
    }
    state_->PumpLocked();
  }

  void OnDone() override {
    std::function<void()> on_done;
    {
      absl::MutexLock lock(&state_->mu);
      state_->reactor = nullptr;
      state_->done = true;
      on_done = std::move(state_->on_done);
      state_->on_done = nullptr;
    }
    if (on_done) on_done();
    delete this;
  }

 private:
  std::shared_ptr<StreamState<Message>> state_;
};

}  // namespace

struct DiscoveryServiceImpl::SessionStream final
    : StreamState<v1::DiscoverySession> {};

struct DiscoveryServiceImpl::DevicesStream final
    : StreamState<v1::DevicesSnapshot> {
  // The watcher thread's own: the last snapshot sent (serialized).
  std::optional<std::string> last_sent;
};

// The device-list watchers and the thread that feeds them.
struct DiscoveryServiceImpl::DevicesWatch {
  DevicesWatch(ConfigClient& config, absl::Duration poll_interval)
      : config(config), poll_interval(poll_interval) {
    thread = std::thread([this] { Loop(); });
  }
  ~DevicesWatch() { Stop(); }

  // False once stopping.
  bool Add(const std::shared_ptr<DevicesStream>& stream) {
    absl::MutexLock lock(&mu);
    if (stopping) return false;
    streams[stream.get()] = stream;
    dirty = true;
    return true;
  }

  void Remove(DevicesStream* stream) {
    absl::MutexLock lock(&mu);
    streams.erase(stream);
  }

  void Wake() {
    absl::MutexLock lock(&mu);
    dirty = true;
  }

  // Ends every stream with SHUTTING_DOWN and joins the thread.
  void Stop() {
    std::map<DevicesStream*, std::shared_ptr<DevicesStream>> ending;
    {
      absl::MutexLock lock(&mu);
      stopping = true;
      ending = streams;
    }
    for (auto& [raw, stream] : ending) stream->Close(ShuttingDown());
    absl::MutexLock lock(&joining);
    if (thread.joinable()) thread.join();
  }

  void Loop() {
    while (true) {
      std::vector<std::shared_ptr<DevicesStream>> watchers;
      {
        absl::MutexLock lock(&mu);
        auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
          return dirty || stopping;
        };
        mu.AwaitWithTimeout(absl::Condition(&woken), poll_interval);
        if (stopping) return;
        dirty = false;
        for (auto& [raw, stream] : streams) watchers.push_back(stream);
      }
      if (watchers.empty()) continue;
      absl::StatusOr<DiscoveredDeviceList> list =
          config.ListDiscoveredDevices();
      if (!list.ok()) {
        IOT2MQTT_LOG(WARNING).With("rpc", "WatchDevices")
            << "can't read the discovered devices: " << list.status().message();
        // A watcher that got nothing yet learns why; the others wait for
        // the next read.
        for (auto& stream : watchers) {
          if (!stream->last_sent.has_value()) stream->Close(list.status());
        }
        continue;
      }
      v1::DevicesSnapshot snapshot;
      for (DiscoveredDevice& device : list->devices) {
        *snapshot.add_devices() = std::move(device);
      }
      snapshot.set_last_scan(list->last_scan);
      const std::string bytes = snapshot.SerializeAsString();
      for (auto& stream : watchers) {
        if (stream->last_sent == bytes) continue;
        if (stream->Offer(snapshot)) stream->last_sent = bytes;
      }
    }
  }

  ConfigClient& config;
  const absl::Duration poll_interval;
  absl::Mutex mu;
  std::map<DevicesStream*, std::shared_ptr<DevicesStream>> streams
      ABSL_GUARDED_BY(mu);
  bool dirty ABSL_GUARDED_BY(mu) = false;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  absl::Mutex joining;
  std::thread thread;
};

// ExecuteTool's reactor: a client's cancellation cancels the tool.
class DiscoveryServiceImpl::ToolCall final : public grpc::ServerUnaryReactor {
 public:
  explicit ToolCall(std::shared_ptr<CancelToken> cancel)
      : cancel_(std::move(cancel)) {}
  void OnCancel() override { cancel_->Cancel(); }
  void OnDone() override { delete this; }

 private:
  const std::shared_ptr<CancelToken> cancel_;
};

// --- Free functions ------------------------------------------------------

bool IsValidHost(absl::string_view ip) {
  if (ip.empty() || ip.size() > 253) return false;
  const std::string text(ip);
  unsigned char buffer[sizeof(in6_addr)];
  if (inet_pton(AF_INET, text.c_str(), buffer) == 1) return true;
  if (inet_pton(AF_INET6, text.c_str(), buffer) == 1) return true;
  size_t label = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                       (c >= '0' && c <= '9');
    if (!alnum && c != '-') return false;
    if (c == '-' && label == 0) return false;
    if (++label > 63) return false;
  }
  return label > 0;
}

bool TcpReachable(const std::string& host, int port, absl::Duration timeout) {
  if (port < 1 || port > 65535) return false;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = absl::StrCat(port);
  if (getaddrinfo(host.c_str(), service.c_str(), &hints, &found) != 0 ||
      found == nullptr) {
    return false;
  }
  bool reachable = false;
  int fd =
      socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    int rc = connect(fd, found->ai_addr, found->ai_addrlen);
    if (rc == 0) {
      reachable = true;
    } else if (errno == EINPROGRESS) {
      pollfd pfd{fd, POLLOUT, 0};
      int ready;
      do {
        ready =
            poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
      } while (ready < 0 && errno == EINTR);
      if (ready == 1) {
        int error = 0;
        socklen_t length = sizeof(error);
        reachable =
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 &&
            error == 0;
      }
    }
    close(fd);
  }
  freeaddrinfo(found);
  return reachable;
}

// --- Service -------------------------------------------------------------

DiscoveryServiceImpl::DiscoveryServiceImpl(ToolExecutor& executor,
                                           SessionManager& sessions,
                                           ConfigClient& config,
                                           DiscoveryServiceOptions options)
    : executor_(executor),
      sessions_(sessions),
      config_(config),
      options_(options),
      pool_(options.worker_threads),
      devices_(std::make_shared<DevicesWatch>(config,
                                              options.devices_poll_interval)) {
  sessions_.SetDevicesChangedCallback(
      [devices = devices_] { devices->Wake(); });
}

DiscoveryServiceImpl::~DiscoveryServiceImpl() {
  Shutdown();
  sessions_.SetDevicesChangedCallback(nullptr);
}

bool DiscoveryServiceImpl::shutting_down() {
  absl::MutexLock lock(&mu_);
  return shutting_down_;
}

void DiscoveryServiceImpl::Shutdown() {
  std::vector<ToolThread> tools;
  std::map<SessionStream*, std::shared_ptr<SessionStream>> streams;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (ToolThread& tool : tools_) tool.cancel->Cancel();
    tools.swap(tools_);
    streams = session_streams_;
  }
  devices_->Stop();
  for (auto& [raw, stream] : streams) stream->Close(ShuttingDown());
  for (const DiscoverySession& session : sessions_.Running()) {
    (void)sessions_.Cancel(session.session_id());
  }
  for (ToolThread& tool : tools) tool.thread.join();
}

// --- ExecuteTool -----------------------------------------------------------

absl::Status DiscoveryServiceImpl::RunTool(
    const v1::ExecuteToolRequest& request, v1::ExecuteToolResponse* response,
    CancelToken* cancel) {
  if (request.tool().empty()) {
    return common::WithReason(
        absl::InvalidArgumentError("Missing 'tool' field"), "MISSING_TOOL");
  }
  IOT2MQTT_ASSIGN_OR_RETURN(ConnectorTooling tooling,
                            config_.Lookup(request.integration()));
  IOT2MQTT_ASSIGN_OR_RETURN(
      ToolDeclaration tool,
      ParseToolDeclaration(tooling.setup_json, request.integration(),
                           request.tool()));
  IOT2MQTT_ASSIGN_OR_RETURN(
      ToolRun run,
      executor_.Execute(request.integration(), tooling.connector_dir, tool,
                        request.input(), cancel));
  response->set_result(std::move(run.result_json));
  response->set_ok(run.ok);
  response->set_error_code(run.error_code);
  response->set_exit_code(run.exit_code);
  response->set_duration_seconds(absl::ToDoubleSeconds(run.elapsed));
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* DiscoveryServiceImpl::ExecuteTool(
    grpc::CallbackServerContext* context, const v1::ExecuteToolRequest* request,
    v1::ExecuteToolResponse* response) {
  auto cancel = std::make_shared<CancelToken>();
  auto* call = new ToolCall(cancel);
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    // Join the threads of tools that ended meanwhile.
    for (auto it = tools_.begin(); it != tools_.end();) {
      if (it->done->load()) {
        it->thread.join();
        it = tools_.erase(it);
      } else {
        ++it;
      }
    }
    if (shutting_down_) {
      refused = ShuttingDown();
    } else if (static_cast<int>(tools_.size()) >=
               options_.max_concurrent_tools) {
      refused =
          common::WithReason(absl::ResourceExhaustedError(absl::StrCat(
                                 "more than ", options_.max_concurrent_tools,
                                 " tools running; try again later")),
                             "TOO_MANY_TOOLS");
    } else {
      auto done = std::make_shared<std::atomic<bool>>(false);
      ToolThread entry;
      entry.done = done;
      entry.cancel = cancel;
      entry.thread =
          std::thread([this, context, request, response, call, cancel, done] {
            common::RpcScope rpc(context, "ExecuteTool");
            absl::Status status = RunTool(*request, response, cancel.get());
            if (cancel->cancelled()) {
              status = shutting_down()
                           ? ShuttingDown()
                           : absl::CancelledError("the call was cancelled");
            }
            sdk::LogLine line(sdk::Severity::kInfo);
            Outcome(line, "ExecuteTool", status)
                .With("integration", request->integration())
                .With("tool", request->tool());
            if (status.ok()) {
              line.With("ok", response->ok())
                  .With("error_code", response->error_code())
                  .With("exit_code", response->exit_code())
                  .With("duration_seconds", response->duration_seconds());
            }
            line << (status.ok() ? "tool ran" : status.message());
            rpc.Finish(status, call);
            done->store(true);
          });
      tools_.push_back(std::move(entry));
      return call;
    }
  }
  common::RpcScope rpc(context, "ExecuteTool");
  rpc.Finish(refused, call);
  return call;
}

// --- Sessions ----------------------------------------------------------------

grpc::ServerUnaryReactor* DiscoveryServiceImpl::StartDiscovery(
    grpc::CallbackServerContext* context,
    const v1::StartDiscoveryRequest* request,
    v1::StartDiscoveryResponse* response) {
  return common::Offload(context, "StartDiscovery", pool_, [=] {
    absl::Status status = [&]() -> absl::Status {
      if (shutting_down()) return ShuttingDown();
      const int timeout = request->timeout();
      if (timeout < 0 || timeout > kMaxDiscoveryTimeoutSeconds) {
        return common::WithReason(
            absl::InvalidArgumentError(absl::StrCat(
                "timeout must be between 1 and ", kMaxDiscoveryTimeoutSeconds,
                " seconds (0: the declared timeout)")),
            "INVALID_TIMEOUT");
      }
      IOT2MQTT_ASSIGN_OR_RETURN(
          DiscoverySession session,
          sessions_.Start(request->name(), absl::Seconds(timeout)));
      response->set_session_id(session.session_id());
      response->set_status("started");
      response->set_websocket_url(
          absl::StrCat("/api/discovery/", session.session_id()));
      return absl::OkStatus();
    }();
    sdk::LogLine line(sdk::Severity::kInfo);
    Outcome(line, "StartDiscovery", status)
            .With("integration", request->name())
            .With("session_id", response->session_id())
        << (status.ok() ? "discovery session started" : status.message());
    return status;
  });
}

grpc::ServerUnaryReactor* DiscoveryServiceImpl::StartScan(
    grpc::CallbackServerContext* context, const v1::StartScanRequest* request,
    v1::StartScanResponse* response) {
  return common::Offload(context, "StartScan", pool_, [=] {
    absl::Status status = [&]() -> absl::Status {
      if (shutting_down()) return ShuttingDown();
      IOT2MQTT_ASSIGN_OR_RETURN(
          DiscoverySession session,
          sessions_.Start(request->integration(), absl::ZeroDuration()));
      response->set_status("started");
      response->set_message(
          absl::StrCat("Discovery started for ", request->integration()));
      response->set_check_endpoint("/api/discovery/status");
      response->set_session_id(session.session_id());
      return absl::OkStatus();
    }();
    sdk::LogLine line(sdk::Severity::kInfo);
    Outcome(line, "StartScan", status)
            .With("integration", request->integration())
            .With("session_id", response->session_id())
        << (status.ok() ? "scan started" : status.message());
    return status;
  });
}

grpc::ServerUnaryReactor* DiscoveryServiceImpl::ListSessions(
    grpc::CallbackServerContext* context,
    const v1::ListSessionsRequest* /*request*/,
    v1::ListSessionsResponse* response) {
  return common::Offload(context, "ListSessions", pool_, [=] {
    for (DiscoverySession& session : sessions_.List()) {
      *response->add_sessions() = std::move(session);
    }
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* DiscoveryServiceImpl::GetSession(
    grpc::CallbackServerContext* context, const v1::SessionRequest* request,
    v1::DiscoverySession* response) {
  return common::Offload(context, "GetSession", pool_, [=] {
    IOT2MQTT_ASSIGN_OR_RETURN(*response, sessions_.Get(request->session_id()));
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* DiscoveryServiceImpl::CancelSession(
    grpc::CallbackServerContext* context, const v1::SessionRequest* request,
    v1::DiscoverySession* response) {
  return common::Offload(context, "CancelSession", pool_, [=] {
    absl::StatusOr<DiscoverySession> session =
        sessions_.Cancel(request->session_id());
    if (session.ok()) *response = *std::move(session);
    sdk::LogLine line(sdk::Severity::kInfo);
    Outcome(line, "CancelSession", session.status())
            .With("session_id", request->session_id())
            .With("status", response->status())
        << (session.ok() ? "session cancelled" : session.status().message());
    return session.status();
  });
}

grpc::ServerWriteReactor<v1::DiscoverySession>*
DiscoveryServiceImpl::WatchSession(grpc::CallbackServerContext* context,
                                   const v1::SessionRequest* request) {
  auto state = std::make_shared<SessionStream>();
  auto* reactor = new LatestStream<v1::DiscoverySession>(state);
  const std::string session_id = request->session_id();
  const std::string correlation_id = CorrelationIdOf(*context);
  sdk::ScopedCorrelationId scope(correlation_id);
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) {
      state->Close(ShuttingDown());
      return reactor;
    }
    session_streams_[state.get()] = state;
  }
  absl::StatusOr<int64_t> handle =
      sessions_.Watch(session_id, [state](const DiscoverySession& session) {
        state->Offer(session);
        if (session.status() != "running") state->Close(absl::OkStatus());
      });
  if (!handle.ok()) {
    IOT2MQTT_LOG(INFO)
            .With("rpc", "WatchSession")
            .With("session_id", session_id)
            .With("reason", common::ReasonOf(handle.status()))
        << handle.status().message();
    {
      absl::MutexLock lock(&mu_);
      session_streams_.erase(state.get());
    }
    state->Close(handle.status());
    return reactor;
  }
  SessionStream* raw = state.get();
  auto cleanup = [this, raw, id = *handle, session_id, correlation_id] {
    sessions_.Unwatch(id);
    {
      absl::MutexLock lock(&mu_);
      session_streams_.erase(raw);
    }
    sdk::ScopedCorrelationId scope(correlation_id);
    IOT2MQTT_LOG(INFO)
            .With("rpc", "WatchSession")
            .With("session_id", session_id)
        << "session stream ended";
  };
  if (!state->SetOnDone(cleanup)) cleanup();
  return reactor;
}

// --- Devices -----------------------------------------------------------------

grpc::ServerUnaryReactor* DiscoveryServiceImpl::ListDevices(
    grpc::CallbackServerContext* context,
    const v1::ListDevicesRequest* /*request*/,
    v1::ListDevicesResponse* response) {
  return common::Offload(context, "ListDevices", pool_, [=] {
    IOT2MQTT_ASSIGN_OR_RETURN(DiscoveredDeviceList list,
                              config_.ListDiscoveredDevices());
    for (DiscoveredDevice& device : list.devices) {
      *response->add_devices() = std::move(device);
    }
    return absl::OkStatus();
  });
}

grpc::ServerWriteReactor<v1::DevicesSnapshot>*
DiscoveryServiceImpl::WatchDevices(grpc::CallbackServerContext* context,
                                   const v1::WatchDevicesRequest* /*request*/) {
  auto state = std::make_shared<DevicesStream>();
  auto* reactor = new LatestStream<v1::DevicesSnapshot>(state);
  if (!devices_->Add(state)) {
    state->Close(ShuttingDown());
    return reactor;
  }
  DevicesStream* raw = state.get();
  auto cleanup = [devices = devices_, raw,
                  correlation_id = CorrelationIdOf(*context)] {
    devices->Remove(raw);
    sdk::ScopedCorrelationId scope(correlation_id);
    IOT2MQTT_LOG(INFO).With("rpc", "WatchDevices") << "device stream ended";
  };
  if (!state->SetOnDone(cleanup)) cleanup();
  return reactor;
}

absl::Status DiscoveryServiceImpl::AddDeviceBody(
    const v1::AddDeviceRequest& request, v1::AddDeviceResponse* response) {
  IOT2MQTT_RETURN_IF_ERROR(CheckDeviceId(request.device_id()));
  absl::MutexLock lock(&add_mu_);
  IOT2MQTT_ASSIGN_OR_RETURN(DiscoveredDeviceList list,
                            config_.ListDiscoveredDevices());
  const DiscoveredDevice* device = nullptr;
  for (const DiscoveredDevice& candidate : list.devices) {
    if (candidate.id() == request.device_id()) device = &candidate;
  }
  if (device == nullptr) return DeviceNotFound(request.device_id());
  if (device->added()) {
    return common::WithReason(
        absl::AlreadyExistsError(absl::StrCat(
            "Device ", device->id(), " was already added",
            device->instance_id().empty()
                ? std::string()
                : absl::StrCat(" (instance ", device->instance_id(), ")"))),
        "DEVICE_ALREADY_ADDED",
        {{"device_id", device->id()}, {"instance_id", device->instance_id()}});
  }
  const std::string instance_id = request.instance_id().empty()
                                      ? DefaultInstanceId(*device)
                                      : request.instance_id();
  IOT2MQTT_RETURN_IF_ERROR(CheckInstanceId(instance_id));
  const std::string& friendly_name = request.friendly_name().empty()
                                         ? device->name()
                                         : request.friendly_name();
  IOT2MQTT_ASSIGN_OR_RETURN(
      std::string document,
      InstanceDocumentFor(*device, instance_id, friendly_name,
                          request.config()));
  IOT2MQTT_RETURN_IF_ERROR(config_.CreateInstance(document).status());
  devices_->Wake();
  absl::StatusOr<DiscoveredDevice> marked =
      config_.MarkDiscoveredDeviceAdded(device->id(), instance_id);
  if (!marked.ok()) {
    // The instance exists: that is what the user asked for.
    IOT2MQTT_LOG(WARNING)
            .With("rpc", "AddDevice")
            .With("device_id", device->id())
            .With("instance_id", instance_id)
        << "instance created, but the device could not be marked added: "
        << marked.status().message();
  }
  response->set_status("success");
  response->set_message(
      absl::StrCat("Device ", device->id(), " added successfully"));
  response->set_instance_id(instance_id);
  response->set_connector(device->integration());
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* DiscoveryServiceImpl::AddDevice(
    grpc::CallbackServerContext* context, const v1::AddDeviceRequest* request,
    v1::AddDeviceResponse* response) {
  return common::Offload(context, "AddDevice", pool_, [=] {
    absl::Status status = AddDeviceBody(*request, response);
    sdk::LogLine line(sdk::Severity::kInfo);
    Outcome(line, "AddDevice", status)
            .With("device_id", request->device_id())
            .With("instance_id", response->instance_id())
        << (status.ok() ? "device added" : status.message());
    return status;
  });
}

grpc::ServerUnaryReactor* DiscoveryServiceImpl::DeleteDevice(
    grpc::CallbackServerContext* context,
    const v1::DeleteDeviceRequest* request,
    v1::DeleteDeviceResponse* response) {
  return common::Offload(context, "DeleteDevice", pool_, [=] {
    absl::Status status = [&]() -> absl::Status {
      IOT2MQTT_RETURN_IF_ERROR(CheckDeviceId(request->device_id()));
      absl::Status deleted =
          config_.DeleteDiscoveredDevice(request->device_id());
      if (absl::IsNotFound(deleted))
        return DeviceNotFound(request->device_id());
      IOT2MQTT_RETURN_IF_ERROR(deleted);
      devices_->Wake();
      response->set_status("success");
      response->set_message(
          absl::StrCat("Device ", request->device_id(), " removed"));
      return absl::OkStatus();
    }();
    sdk::LogLine line(sdk::Severity::kInfo);
    Outcome(line, "DeleteDevice", status)
            .With("device_id", request->device_id())
        << (status.ok() ? "device removed" : status.message());
    return status;
  });
}

absl::Status DiscoveryServiceImpl::AddManualDeviceBody(
    const v1::AddManualDeviceRequest& request,
    v1::AddManualDeviceResponse* response) {
  const std::string& integration = request.integration();
  if (!IsValidHost(request.ip())) {
    return common::WithReason(
        absl::InvalidArgumentError(
            "ip must be an IPv4 or IPv6 address or a host name (at most 253 "
            "characters, no spaces)"),
        "INVALID_IP");
  }
  if (request.port() < 0 || request.port() > 65535) {
    return common::WithReason(absl::InvalidArgumentError(
                                  "port must be between 1 and 65535 (0: none)"),
                              "INVALID_PORT");
  }
  if (!request.instance_id().empty()) {
    IOT2MQTT_RETURN_IF_ERROR(CheckInstanceId(request.instance_id()));
  }
  // The integration must exist (INTEGRATION_NOT_FOUND otherwise).
  IOT2MQTT_RETURN_IF_ERROR(config_.Lookup(integration).status());

  std::string name = request.name();
  if (name.empty()) name = request.friendly_name();
  if (name.empty()) name = request.ip();
  sdk::JsonObjectBuilder report;
  report.Set("ip", request.ip());
  if (request.port() > 0) report.Set("port", request.port());
  report.Set("name", name);
  if (!request.model().empty()) report.Set("model", request.model());
  IOT2MQTT_ASSIGN_OR_RETURN(DiscoveredDevice device,
                            DeviceFromReport(integration, report.Build()));
  std::string instance_id = request.instance_id().empty()
                                ? DefaultInstanceId(device)
                                : request.instance_id();
  IOT2MQTT_RETURN_IF_ERROR(CheckInstanceId(instance_id));
  const std::string friendly_name =
      request.friendly_name().empty() ? name : request.friendly_name();
  // The document first: a bad `config` changes nothing.
  IOT2MQTT_RETURN_IF_ERROR(
      InstanceDocumentFor(device, instance_id, friendly_name, request.config())
          .status());

  absl::MutexLock lock(&add_mu_);
  IOT2MQTT_ASSIGN_OR_RETURN(DiscoveredDeviceList list,
                            config_.ListDiscoveredDevices(integration));
  // A device a scan found already (same id, or same address) is that
  // record: its serial and device id stay, and no second record appears.
  std::optional<DiscoveredDevice> found;
  for (const DiscoveredDevice& known : list.devices) {
    const bool same_address = request.port() > 0 &&
                              known.ip() == request.ip() &&
                              known.port() == request.port();
    if (known.id() != device.id() && !same_address) continue;
    if (known.added()) {
      return common::WithReason(
          absl::AlreadyExistsError(absl::StrCat("Device ", known.id(),
                                                " was already added (instance ",
                                                known.instance_id(), ")")),
          "DEVICE_ALREADY_ADDED",
          {{"device_id", known.id()}, {"instance_id", known.instance_id()}});
    }
    found = known;
    break;
  }
  DiscoveredDevice record;
  if (found.has_value()) {
    record = *std::move(found);
  } else {
    IOT2MQTT_ASSIGN_OR_RETURN(std::vector<DiscoveredDevice> stored,
                              config_.Record(integration, {device}, false));
    devices_->Wake();
    record = stored.empty() ? device : stored.front();
  }
  if (request.instance_id().empty()) instance_id = DefaultInstanceId(record);
  IOT2MQTT_ASSIGN_OR_RETURN(
      std::string document,
      InstanceDocumentFor(record, instance_id, friendly_name,
                          request.config()));
  IOT2MQTT_RETURN_IF_ERROR(config_.CreateInstance(document).status());
  absl::StatusOr<DiscoveredDevice> marked =
      config_.MarkDiscoveredDeviceAdded(record.id(), instance_id);
  if (!marked.ok()) {
    IOT2MQTT_LOG(WARNING)
            .With("rpc", "AddManualDevice")
            .With("device_id", record.id())
            .With("instance_id", instance_id)
        << "instance created, but the device could not be marked added: "
        << marked.status().message();
  }
  devices_->Wake();
  const bool reachable =
      request.port() > 0 &&
      TcpReachable(request.ip(), request.port(), options_.reachability_timeout);
  response->set_status("success");
  response->set_message("Device added manually");
  response->set_device_id(record.id());
  response->set_instance_id(instance_id);
  response->set_reachable(reachable);
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* DiscoveryServiceImpl::AddManualDevice(
    grpc::CallbackServerContext* context,
    const v1::AddManualDeviceRequest* request,
    v1::AddManualDeviceResponse* response) {
  return common::Offload(context, "AddManualDevice", pool_, [=] {
    absl::Status status = AddManualDeviceBody(*request, response);
    sdk::LogLine line(sdk::Severity::kInfo);
    Outcome(line, "AddManualDevice", status)
            .With("integration", request->integration())
            .With("device_id", response->device_id())
            .With("instance_id", response->instance_id())
            .With("reachable", response->reachable())
        << (status.ok() ? "device added manually" : status.message());
    return status;
  });
}

grpc::ServerUnaryReactor* DiscoveryServiceImpl::GetStatus(
    grpc::CallbackServerContext* context,
    const v1::GetStatusRequest* /*request*/, v1::GetStatusResponse* response) {
  return common::Offload(context, "GetStatus", pool_, [=] {
    IOT2MQTT_ASSIGN_OR_RETURN(DiscoveredDeviceList list,
                              config_.ListDiscoveredDevices());
    std::vector<DiscoverySession> running = sessions_.Running();
    response->set_status(running.empty() ? "idle" : "scanning");
    response->set_last_scan(list.last_scan);
    int32_t added = 0;
    for (DiscoveredDevice& device : list.devices) {
      if (device.added()) ++added;
      *response->add_devices() = std::move(device);
    }
    const int32_t total = response->devices_size();
    response->set_total_devices(total);
    response->set_added_devices(added);
    response->set_available_devices(total - added);
    for (DiscoverySession& session : running) {
      *response->add_active_sessions() = std::move(session);
    }
    return absl::OkStatus();
  });
}

}  // namespace iot2mqtt::discovery
