// Streaming HTTP answers (ResponseStream) on a real HttpServer, and the SSE
// bridge in front of a real gRPC server with a scripted WatchChanges, driven
// over loopback sockets.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "catch2/catch.hpp"
#include "gateway/http_server.h"
#include "gateway/sse_bridge.h"
#include "gateway/transcoder.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "iot2mqtt/config/v1/config_service.grpc.pb.h"
#include "rapidjson/document.h"
#include "services/common/grpc_status.h"
#include "services/common/rpc_scope.h"
#include "services/common/status.h"
#include "tests/support/stream_client.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::gateway {
namespace {

using config::v1::ChangeEvent;
using config::v1::WatchChangesRequest;
using testing::StreamClient;
using testing::WaitFor;


std::string Get(const std::string& target,
                const std::string& extra_headers = "") {
  return absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                      extra_headers, "\r\n");
}

// ---------------------------------------------------------------------------
// ResponseStream on a bare HttpServer.

// One streaming answer: the stream and how often its on_close ran.
struct Slot {
  std::shared_ptr<ResponseStream> stream;
  std::atomic<int> closes{0};
};

// /plain answers at once; /deferred keeps the responder; anything else is a
// stream (with "hello\n" written before the answer).
class StreamingHandler final : public RequestHandler {
 public:
  explicit StreamingHandler(size_t limit) : limit_(limit) {}

  void Handle(HttpRequest request, Responder respond) override {
    {
      absl::MutexLock lock(&mu_);
      last_remote_address_ = request.remote_address;
    }
    if (request.path == "/plain") {
      HttpResponse response;
      response.body = "{\"ok\":true}";
      respond(std::move(response));
      return;
    }
    if (request.path == "/deferred") {
      absl::MutexLock lock(&mu_);
      deferred_.push_back(std::move(respond));
      return;
    }
    std::shared_ptr<Slot> slot = NewSlot();
    slot->stream->Write("hello\n");  // Queued until the headers are out.
    respond(StreamResponse(slot));
  }

  std::shared_ptr<Slot> NewSlot() {
    auto slot = std::make_shared<Slot>();
    slot->stream = std::make_shared<ResponseStream>(limit_);
    slot->stream->SetOnClose(
        [slot_ptr = slot.get()] { slot_ptr->closes.fetch_add(1); });
    absl::MutexLock lock(&mu_);
    slots_.push_back(slot);
    return slot;
  }

  static HttpResponse StreamResponse(const std::shared_ptr<Slot>& slot) {
    HttpResponse response;
    response.content_type = "text/event-stream";
    response.route = "/stream";
    response.stream = slot->stream;
    return response;
  }

  // The i-th stream handed out, once there is one.
  std::shared_ptr<Slot> slot(size_t i) {
    REQUIRE(WaitFor([&] {
      absl::MutexLock lock(&mu_);
      return slots_.size() > i;
    }));
    absl::MutexLock lock(&mu_);
    return slots_[i];
  }

  std::string last_remote_address() {
    absl::MutexLock lock(&mu_);
    return last_remote_address_;
  }

  // Takes the i-th kept responder, once there is one.
  Responder TakeDeferred(size_t i) {
    REQUIRE(WaitFor([&] {
      absl::MutexLock lock(&mu_);
      return deferred_.size() > i;
    }));
    absl::MutexLock lock(&mu_);
    return std::move(deferred_[i]);
  }

 private:
  const size_t limit_;
  absl::Mutex mu_;
  std::vector<std::shared_ptr<Slot>> slots_ ABSL_GUARDED_BY(mu_);
  std::vector<Responder> deferred_ ABSL_GUARDED_BY(mu_);
  std::string last_remote_address_ ABSL_GUARDED_BY(mu_);
};

HttpServerOptions ServerOptions() {
  HttpServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.threads = 2;
  options.read_timeout = absl::Seconds(2);
  options.write_timeout = absl::Seconds(5);
  options.shutdown_grace = absl::Seconds(10);
  return options;
}

TEST_CASE("a streaming answer: headers, then chunks as they are pushed") {
  StreamingHandler handler(ResponseStream::kDefaultMaxBufferedBytes);
  HttpServer server(ServerOptions(), &handler);
  REQUIRE(server.Start().ok());

  StreamClient client(server.port(),
                      Get("/stream", "X-Correlation-ID: stream-corr-1\r\n"));
  REQUIRE(client.WaitFor("\r\n\r\nhello\n"));
  INFO(client.head());
  CHECK(absl::StartsWith(client.head(), "HTTP/1.1 200"));
  CHECK(client.Header("content-type") == "text/event-stream");
  CHECK(client.Header("cache-control") == "no-cache");
  CHECK(client.Header("x-accel-buffering") == "no");
  CHECK(client.Header("connection") == "close");
  CHECK(client.Header("x-correlation-id") == "stream-corr-1");
  CHECK(client.Header("content-length").empty());
  CHECK(client.Header("transfer-encoding").empty());
  // Not a request in progress once the headers are out.
  CHECK(WaitFor([&] { return server.requests_in_progress() == 0; }));

  std::shared_ptr<Slot> slot = handler.slot(0);
  std::thread([&] { CHECK(slot->stream->Write("one\n")); }).join();
  // Arrives while the stream is still open.
  REQUIRE(client.WaitFor("one\n"));
  CHECK(slot->closes.load() == 0);
  CHECK_FALSE(slot->stream->closed());

  std::thread([&] {
    CHECK(slot->stream->Write("two\n"));
    slot->stream->End();
  }).join();
  REQUIRE(client.WaitClosed());
  CHECK(client.body() == "hello\none\ntwo\n");
  CHECK(WaitFor([&] { return slot->closes.load() == 1; }));
  CHECK(slot->stream->closed());
  CHECK_FALSE(slot->stream->Write("late\n"));

  // The server goes on serving.
  absl::StatusOr<testing::HttpResponse> plain =
      testing::HttpRequest(server.port(), "GET", "/plain");
  REQUIRE(plain.ok());
  CHECK(plain->status == 200);
  CHECK(slot->closes.load() == 1);
  CHECK(handler.last_remote_address() == "127.0.0.1");
}

TEST_CASE("a client that disconnects ends the stream within a second") {
  StreamingHandler handler(ResponseStream::kDefaultMaxBufferedBytes);
  HttpServer server(ServerOptions(), &handler);
  REQUIRE(server.Start().ok());

  StreamClient client(server.port(), Get("/stream"));
  REQUIRE(client.WaitFor("hello\n"));
  std::shared_ptr<Slot> slot = handler.slot(0);
  CHECK(slot->closes.load() == 0);
  client.Close();
  CHECK(WaitFor([&] { return slot->closes.load() == 1; }, absl::Seconds(1)));
  CHECK(slot->stream->closed());
  CHECK_FALSE(slot->stream->Write("anyone?\n"));
  CHECK(slot->closes.load() == 1);
}

TEST_CASE("a client that never reads is dropped; the others go on") {
  constexpr size_t kLimit = 1024 * 1024;
  StreamingHandler handler(kLimit);
  HttpServerOptions options = ServerOptions();
  options.write_timeout = absl::Seconds(30);  // Not what drops it.
  HttpServer server(options, &handler);
  REQUIRE(server.Start().ok());

  StreamClient slow(server.port(), Get("/stream"), /*receive_buffer=*/4096);
  std::shared_ptr<Slot> slow_slot = handler.slot(0);
  StreamClient fast(server.port(), Get("/stream"));
  REQUIRE(fast.WaitFor("hello\n"));
  std::shared_ptr<Slot> fast_slot = handler.slot(1);

  // The same chunks to both, at the pace of the client that reads: the
  // other one's socket buffers fill up, then its queue, and it is dropped
  // (Write fails: the producer is never held up).
  const std::string chunk(16 * 1024, 'x');
  bool dropped = false;
  size_t fast_bytes = fast.received().size();
  for (int i = 0; i < 8192 && !dropped; ++i) {  // 128 MiB at most.
    dropped = !slow_slot->stream->Write(chunk);
    REQUIRE(fast_slot->stream->Write(chunk));
    fast_bytes += chunk.size();
    REQUIRE(fast.WaitForSize(fast_bytes));
  }
  REQUIRE(dropped);
  CHECK(
      WaitFor([&] { return slow_slot->closes.load() == 1; }, absl::Seconds(1)));
  CHECK(slow_slot->stream->closed());
  // The connection is closed at once (it lets go of the stream), not when
  // the client reads again or at the write timeout.
  CHECK(WaitFor([&] { return slow_slot->stream.use_count() == 1; },
                absl::Seconds(2)));
  CHECK(slow.WaitClosed(absl::Seconds(3)));

  for (int i = 0; i < 20; ++i) {
    std::string line = absl::StrCat("ping ", i, "\n");
    REQUIRE(fast_slot->stream->Write(line));
    REQUIRE(fast.WaitFor(line));
  }
  CHECK(fast_slot->closes.load() == 0);
  CHECK_FALSE(fast_slot->stream->closed());
  CHECK(slow_slot->closes.load() == 1);
}

TEST_CASE("Shutdown closes streams at once, without the grace period") {
  StreamingHandler handler(ResponseStream::kDefaultMaxBufferedBytes);
  HttpServer server(ServerOptions(), &handler);  // Grace: 10 s.
  REQUIRE(server.Start().ok());

  StreamClient first(server.port(), Get("/stream"));
  StreamClient second(server.port(), Get("/stream"));
  REQUIRE(first.WaitFor("hello\n"));
  REQUIRE(second.WaitFor("hello\n"));
  // A request in progress (it holds the grace period) whose handler answers
  // with a stream only once Shutdown has begun.
  StreamClient late(server.port(), Get("/deferred"));
  Responder respond_late = handler.TakeDeferred(0);

  absl::Time start = absl::Now();
  std::thread shutdown([&] { server.Shutdown(); });
  CHECK(first.WaitClosed(absl::Seconds(2)));
  CHECK(second.WaitClosed(absl::Seconds(2)));
  CHECK(handler.slot(0)->closes.load() == 1);
  CHECK(handler.slot(1)->closes.load() == 1);

  std::shared_ptr<Slot> late_slot = handler.NewSlot();
  respond_late(StreamingHandler::StreamResponse(late_slot));
  respond_late = nullptr;
  CHECK(late_slot->closes.load() == 1);
  CHECK(late_slot->stream->closed());
  CHECK(late.WaitClosed());
  CHECK(testing::StatusOfRaw(late.received()) == 503);
  CHECK(absl::StrContains(late.body(), "SHUTTING_DOWN"));
  late.Close();  // Else the server waits for it to hang up (2 s).
  shutdown.join();
  CHECK(absl::Now() - start < absl::Seconds(3));
}

TEST_CASE("HEAD of a streaming route: the headers, and the stream closes") {
  StreamingHandler handler(ResponseStream::kDefaultMaxBufferedBytes);
  HttpServer server(ServerOptions(), &handler);
  REQUIRE(server.Start().ok());

  StreamClient client(server.port(),
                      "HEAD /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  REQUIRE(client.WaitClosed());
  CHECK(absl::StartsWith(client.received(), "HTTP/1.1 200"));
  CHECK(client.Header("content-type") == "text/event-stream");
  CHECK(client.body().empty());
  CHECK(WaitFor([&] { return handler.slot(0)->closes.load() == 1; }));
}

// ---------------------------------------------------------------------------
// The SSE bridge.

constexpr char kWatchChanges[] =
    "/iot2mqtt.config.v1.ConfigService/WatchChanges";
constexpr char kMac[] = "a4-cf-12-34-56-78";

// What the fake's WatchChanges does: write `events`, then finish with
// `status` or (hold) wait for the client to cancel.
struct Script {
  std::vector<ChangeEvent> events;
  bool hold = false;
  grpc::Status status = grpc::Status::OK;
};

class FakeWatchService;

class WatchWriter final : public grpc::ServerWriteReactor<ChangeEvent> {
 public:
  WatchWriter(FakeWatchService* service, Script script)
      : service_(service), script_(std::move(script)) {
    Next();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
    }
    if (!ok) {
      FinishOnce(grpc::Status::CANCELLED);
      return;
    }
    Next();
  }

  void OnCancel() override;

  void OnDone() override { delete this; }

 private:
  void Next() {
    const ChangeEvent* event = nullptr;
    bool cancelled;
    {
      absl::MutexLock lock(&mu_);
      cancelled = cancelled_;
      if (!cancelled && next_ < script_.events.size()) {
        writing_ = true;
        event = &script_.events[next_++];
      }
    }
    // Not under the lock: a reaction may run inline.
    if (event != nullptr) {
      StartWrite(event);
    } else if (cancelled) {
      FinishOnce(grpc::Status::CANCELLED);
    } else if (!script_.hold) {
      FinishOnce(script_.status);
    }
  }

  void FinishOnce(const grpc::Status& status) {
    if (!finished_.exchange(true)) Finish(status);
  }

  FakeWatchService* service_;
  Script script_;
  absl::Mutex mu_;
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> finished_{false};
};

// A ConfigService whose WatchChanges follows a script and records what it
// was asked.
class FakeWatchService final
    : public config::v1::ConfigService::CallbackService {
 public:
  void SetScript(Script script) {
    absl::MutexLock lock(&mu_);
    script_ = std::move(script);
  }

  grpc::ServerWriteReactor<ChangeEvent>* WatchChanges(
      grpc::CallbackServerContext* context,
      const WatchChangesRequest* request) override {
    Script script;
    {
      absl::MutexLock lock(&mu_);
      ++calls_;
      last_after_ = request->after();
      last_correlation_id_ = common::CorrelationIdFrom(*context);
      script = script_;
    }
    return new WatchWriter(this, std::move(script));
  }

  void CountCancel() { cancels_.fetch_add(1); }
  int cancels() const { return cancels_.load(); }
  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  std::string last_after() {
    absl::MutexLock lock(&mu_);
    return last_after_;
  }
  std::string last_correlation_id() {
    absl::MutexLock lock(&mu_);
    return last_correlation_id_;
  }

 private:
  absl::Mutex mu_;
  Script script_ ABSL_GUARDED_BY(mu_);
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_after_ ABSL_GUARDED_BY(mu_);
  std::string last_correlation_id_ ABSL_GUARDED_BY(mu_);
  std::atomic<int> cancels_{0};
};

void WatchWriter::OnCancel() {
  service_->CountCancel();
  bool writing;
  {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    writing = writing_;
  }
  // A pending write completes (not ok) and finishes then.
  if (!writing) FinishOnce(grpc::Status::CANCELLED);
}

// GET /api/events → SseBridge → WatchChanges, the way the gateway wires it.
class SseHandler final : public RequestHandler {
 public:
  SseHandler(grpc::GenericStub* stub, SseOptions options)
      : stub_(stub), options_(options) {}

  void Handle(HttpRequest request, Responder respond) override {
    WatchChangesRequest watch;
    watch.set_after(LastEventIdOf(request));
    auto stream = std::make_shared<ResponseStream>();
    SseCall call;
    call.stub = stub_;
    call.rpc_path = kWatchChanges;
    call.request = watch.SerializeAsString();
    call.response_type = ChangeEvent::descriptor();
    call.correlation_id = request.correlation_id;
    call.backend = "config";
    {
      absl::MutexLock lock(&mu_);
      ++started_;
    }
    std::shared_ptr<SseBridge> bridge = SseBridge::Start(
        std::move(call), stream, options_, [this](const grpc::Status& status) {
          absl::MutexLock lock(&mu_);
          codes_.push_back(status.error_code());
        });
    {
      absl::MutexLock lock(&mu_);
      bridges_.push_back(bridge);
    }
    HttpResponse response;
    response.content_type = kSseContentType;
    response.route = "/api/events";
    response.stream = stream;
    respond(std::move(response));
  }

  std::shared_ptr<SseBridge> bridge(size_t i) {
    REQUIRE(WaitFor([&] {
      absl::MutexLock lock(&mu_);
      return bridges_.size() > i;
    }));
    absl::MutexLock lock(&mu_);
    return bridges_[i].lock();
  }

  // The final codes of the calls that are over, once `n` are.
  std::vector<grpc::StatusCode> WaitDone(size_t n) {
    CHECK(WaitFor([&] {
      absl::MutexLock lock(&mu_);
      return codes_.size() >= n;
    }));
    absl::MutexLock lock(&mu_);
    return codes_;
  }

  // Cancels every call and waits for them to be over.
  void CancelAll() {
    std::vector<std::weak_ptr<SseBridge>> bridges;
    {
      absl::MutexLock lock(&mu_);
      bridges = bridges_;
    }
    for (const auto& weak : bridges) {
      if (std::shared_ptr<SseBridge> bridge = weak.lock()) bridge->Cancel();
    }
    REQUIRE(WaitFor([&] {
      absl::MutexLock lock(&mu_);
      return codes_.size() == started_;
    }));
  }

 private:
  grpc::GenericStub* stub_;
  SseOptions options_;
  absl::Mutex mu_;
  size_t started_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::weak_ptr<SseBridge>> bridges_ ABSL_GUARDED_BY(mu_);
  std::vector<grpc::StatusCode> codes_ ABSL_GUARDED_BY(mu_);
};

// The fake behind a gRPC server, a channel to it (or to `backend_port`),
// and an HttpServer with the SseHandler.
class SseStack {
 public:
  explicit SseStack(SseOptions options = SseOptions(), int backend_port = 0) {
    int port = backend_port;
    if (port == 0) {
      grpc::ServerBuilder builder;
      builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                               &port);
      builder.RegisterService(&service_);
      grpc_server_ = builder.BuildAndStart();
      REQUIRE(grpc_server_ != nullptr);
    }
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                   grpc::InsecureChannelCredentials());
    stub_ = std::make_unique<grpc::GenericStub>(channel_);
    handler_ = std::make_unique<SseHandler>(stub_.get(), options);
    http_ = std::make_unique<HttpServer>(ServerOptions(), handler_.get());
    REQUIRE(http_->Start().ok());
  }

  ~SseStack() {
    http_->Shutdown();
    handler_->CancelAll();
    if (grpc_server_) grpc_server_->Shutdown();
  }

  int port() const { return http_->port(); }
  FakeWatchService& service() { return service_; }
  SseHandler& handler() { return *handler_; }
  HttpServer& http() { return *http_; }

 private:
  FakeWatchService service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> stub_;
  std::unique_ptr<SseHandler> handler_;
  std::unique_ptr<HttpServer> http_;
};

ChangeEvent Event(const std::string& cursor, ChangeEvent::Kind kind) {
  ChangeEvent event;
  event.set_cursor(cursor);
  event.set_kind(kind);
  event.set_action(ChangeEvent::UPDATED);
  if (kind == ChangeEvent::DEVICE_CONFIG) event.set_mac_address(kMac);
  if (kind == ChangeEvent::SETTINGS) event.set_settings("mqtt");
  return event;
}

rapidjson::Document Json(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.c_str(), text.size());
  INFO(text);
  REQUIRE_FALSE(doc.HasParseError());
  REQUIRE(doc.IsObject());
  return doc;
}

std::string Str(const rapidjson::Value& value) {
  REQUIRE(value.IsString());
  return std::string(value.GetString(), value.GetStringLength());
}

TEST_CASE("SSE: every message a frame with id, event and data") {
  SseStack stack;
  Script script;
  script.events = {Event("5.1", ChangeEvent::DEVICE_CONFIG),
                   Event("5.2", ChangeEvent::SETTINGS)};
  stack.service().SetScript(script);

  StreamClient client(stack.port(), Get("/api/events",
                                        "Last-Event-ID: 5.0\r\n"
                                        "X-Correlation-ID: sse-corr-1\r\n"));
  REQUIRE(client.WaitClosed());
  INFO(client.received());
  CHECK(absl::StartsWith(client.head(), "HTTP/1.1 200"));
  CHECK(client.Header("content-type") == "text/event-stream; charset=utf-8");
  CHECK(client.Header("cache-control") == "no-cache");
  CHECK(client.body() ==
        absl::StrCat("retry: 3000\n\n",                        //
                     "id: 5.1\nevent: device_config\ndata: ",  //
                     MessageToJson(script.events[0]), "\n\n",  //
                     "id: 5.2\nevent: settings\ndata: ",       //
                     MessageToJson(script.events[1]), "\n\n"));
  // The data is the event's JSON.
  std::string first = client.body();
  first = first.substr(first.find("data: ") + 6);
  first = first.substr(0, first.find('\n'));
  rapidjson::Document doc = Json(first);
  CHECK(Str(doc["cursor"]) == "5.1");
  CHECK(Str(doc["kind"]) == "DEVICE_CONFIG");
  CHECK(Str(doc["action"]) == "UPDATED");
  CHECK(Str(doc["mac_address"]) == kMac);

  // The resume cursor and the correlation id reached the service.
  CHECK(stack.service().last_after() == "5.0");
  CHECK(stack.service().last_correlation_id() == "sse-corr-1");
  CHECK(stack.handler().WaitDone(1) ==
        std::vector<grpc::StatusCode>{grpc::StatusCode::OK});
}

TEST_CASE("SSE: a client that goes away cancels the backend call") {
  SseStack stack;
  Script script;
  script.events = {Event("7.1", ChangeEvent::INSTANCE)};
  script.hold = true;
  stack.service().SetScript(script);

  StreamClient client(stack.port(), Get("/api/events"));
  REQUIRE(client.WaitFor("id: 7.1\nevent: instance\n"));
  CHECK(stack.service().cancels() == 0);
  CHECK(stack.service().last_after().empty());
  client.Close();
  CHECK(WaitFor([&] { return stack.service().cancels() == 1; },
                absl::Seconds(2)));
  CHECK(stack.handler().WaitDone(1) ==
        std::vector<grpc::StatusCode>{grpc::StatusCode::CANCELLED});
}

TEST_CASE("SSE: a backend error is an error event, then the end") {
  SseStack stack;
  Script script;
  script.events = {Event("8.1", ChangeEvent::CATALOGUE)};
  script.status = common::ToGrpcStatus(
      common::WithReason(absl::OutOfRangeError("cursor 3.9 is too old"),
                         "CURSOR_EXPIRED", {{"cursor", "3.9"}}));
  stack.service().SetScript(script);

  StreamClient client(stack.port(),
                      Get("/api/events", "X-Correlation-ID: sse-corr-3\r\n"));
  REQUIRE(client.WaitClosed());
  INFO(client.received());
  const std::string body = client.body();
  CHECK(absl::StrContains(body, "id: 8.1\nevent: catalogue\n"));
  size_t error = body.find("event: error\ndata: ");
  REQUIRE(error != std::string::npos);
  CHECK(absl::EndsWith(body, "\n\n"));
  std::string data = body.substr(error + 19);
  data = data.substr(0, data.find('\n'));
  rapidjson::Document doc = Json(data);
  CHECK(Str(doc["code"]) == "CURSOR_EXPIRED");
  CHECK(Str(doc["correlationId"]) == "sse-corr-3");
  CHECK(absl::StrContains(Str(doc["error"]), "cursor 3.9 is too old"));
  CHECK(Str(doc["details"]["cursor"]) == "3.9");
  CHECK(stack.handler().WaitDone(1) ==
        std::vector<grpc::StatusCode>{grpc::StatusCode::OUT_OF_RANGE});
}

TEST_CASE("SSE: an unreachable backend is an error event") {
  SseStack stack(SseOptions(), testing::FreePort());
  StreamClient client(stack.port(),
                      Get("/api/events", "X-Correlation-ID: sse-corr-4\r\n"));
  REQUIRE(client.WaitClosed(absl::Seconds(10)));
  INFO(client.received());
  size_t error = client.body().find("event: error\ndata: ");
  REQUIRE(error != std::string::npos);
  std::string data = client.body().substr(error + 19);
  rapidjson::Document doc = Json(data.substr(0, data.find('\n')));
  CHECK(Str(doc["code"]) == "BACKEND_UNAVAILABLE");
  CHECK(Str(doc["correlationId"]) == "sse-corr-4");
}

TEST_CASE("SSE: a quiet stream gets keepalive comments") {
  SseOptions options;
  options.keepalive = absl::Milliseconds(100);
  SseStack stack(options);
  Script script;
  script.hold = true;
  stack.service().SetScript(script);

  StreamClient client(stack.port(), Get("/api/events"));
  REQUIRE(client.WaitForCount(": keepalive\n\n", 2));
  CHECK(absl::StartsWith(client.body(), "retry: 3000\n\n: keepalive\n\n"));
  CHECK_FALSE(absl::StrContains(client.body(), "event:"));
}

TEST_CASE("SSE: Cancel and server shutdown end the call and the stream") {
  SseStack stack;
  Script script;
  script.hold = true;
  stack.service().SetScript(script);

  StreamClient first(stack.port(), Get("/api/events"));
  REQUIRE(first.WaitFor("retry: 3000\n\n"));
  REQUIRE(WaitFor([&] { return stack.service().calls() == 1; }));
  std::shared_ptr<SseBridge> bridge = stack.handler().bridge(0);
  REQUIRE(bridge != nullptr);
  bridge->Cancel();
  REQUIRE(first.WaitClosed());
  CHECK(first.body() == "retry: 3000\n\n");  // No error event.
  CHECK(WaitFor([&] { return stack.service().cancels() == 1; }));

  StreamClient second(stack.port(), Get("/api/events"));
  REQUIRE(second.WaitFor("retry: 3000\n\n"));
  REQUIRE(WaitFor([&] { return stack.service().calls() == 2; }));
  absl::Time start = absl::Now();
  stack.http().Shutdown();
  CHECK(absl::Now() - start < absl::Seconds(3));
  CHECK(second.WaitClosed());
  CHECK(WaitFor([&] { return stack.service().cancels() == 2; },
                absl::Seconds(2)));
}

TEST_CASE("SSE: a call that can't be made ends the stream, never inline") {
  auto stream = std::make_shared<ResponseStream>();
  SseCall call;  // No stub.
  call.rpc_path = kWatchChanges;
  call.response_type = ChangeEvent::descriptor();
  call.correlation_id = "sse-corr-9";
  call.backend = "config";
  absl::Mutex mu;
  std::vector<grpc::StatusCode> codes;
  std::shared_ptr<SseBridge> bridge;
  {
    // on_done takes the lock held around Start: it must not run inside.
    absl::MutexLock lock(&mu);
    bridge = SseBridge::Start(std::move(call), stream, SseOptions(),
                              [&](const grpc::Status& status) {
                                absl::MutexLock done_lock(&mu);
                                codes.push_back(status.error_code());
                              });
    CHECK(codes.empty());
  }
  REQUIRE(WaitFor([&] {
    absl::MutexLock lock(&mu);
    return !codes.empty();
  }));
  absl::MutexLock lock(&mu);
  CHECK(codes == std::vector<grpc::StatusCode>{grpc::StatusCode::INTERNAL});
  CHECK(stream->closed());
}

TEST_CASE("SSE helpers: frames and Last-Event-ID") {
  WatchChangesRequest no_cursor;  // Neither `cursor` nor `kind`.
  no_cursor.set_after("1.2");
  CHECK(
      SseEventFrame(no_cursor) ==
      absl::StrCat("event: message\ndata: ", MessageToJson(no_cursor), "\n\n"));
  ChangeEvent unspecified;
  unspecified.set_cursor("bad\ncursor");
  CHECK(absl::StartsWith(SseEventFrame(unspecified), "event: message\n"));

  HttpRequest request;
  CHECK(LastEventIdOf(request).empty());
  request.headers = {{"last-event-id", "12.345"}};
  CHECK(LastEventIdOf(request) == "12.345");
  request.headers = {{"last-event-id", std::string(129, '1')}};
  CHECK(LastEventIdOf(request).empty());
  request.headers = {{"last-event-id", std::string(128, '1')}};
  CHECK(LastEventIdOf(request) == std::string(128, '1'));
  request.headers = {{"last-event-id", "1.2\x01"}};
  CHECK(LastEventIdOf(request).empty());
  request.headers = {{"last-event-id", "caf\xc3\xa9"}};
  CHECK(LastEventIdOf(request).empty());
}

}  // namespace
}  // namespace iot2mqtt::gateway
