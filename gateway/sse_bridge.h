#ifndef IOT2MQTT_GATEWAY_SSE_BRIDGE_H_
#define IOT2MQTT_GATEWAY_SSE_BRIDGE_H_

// Server-Sent Events from a server-streaming gRPC method (ARCHITECTURE.md §8:
// `GET /api/events` ← ConfigService.WatchChanges).
//
// An SseBridge runs one call with the gRPC callback API (a generic bidi call
// carrying one request and a half-close: on the wire the same as a
// server-streaming call) and writes into a ResponseStream:
//
//   retry: 3000                  first, before any message
//
//   id: <cursor>                 per message: its string field `cursor`
//   event: <kind>                its enum field `kind`, lower case
//   data: <JSON>                 MessageToJson (transcoder.h)
//
//   : keepalive                  after `keepalive` without a frame
//
//   event: error                 the call failed: the unified error body
//   data: {"error":...,"code":...,"correlationId":...}
//
// then ends the stream (End) when the call ends. When the stream closes
// first (the client went away, a slow client was dropped, the server shut
// down) the call is cancelled at once. Lifetimes: the bridge keeps itself
// alive until the call's OnDone; the caller may drop its pointer at any time.
//
// Use (in a RequestHandler):
//
//   auto stream = std::make_shared<ResponseStream>();
//   SseCall call;
//   call.stub = backend->stub.get();
//   call.rpc_path = route.rpc_path;
//   call.request = message->SerializeAsString();
//   call.response_type = route.method->output_type();
//   call.correlation_id = request.correlation_id;
//   call.backend = "config";
//   std::shared_ptr<SseBridge> bridge =
//       SseBridge::Start(std::move(call), stream, SseOptions(), on_done);
//   HttpResponse response;
//   response.content_type = kSseContentType;
//   response.stream = stream;
//   respond(std::move(response));

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gateway/http_server.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "grpcpp/alarm.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/client_callback.h"

namespace iot2mqtt::gateway {

inline constexpr char kSseContentType[] = "text/event-stream; charset=utf-8";

// The request's Last-Event-ID header when it is printable ASCII (spaces
// allowed) of at most 128 bytes, else "".
std::string LastEventIdOf(const HttpRequest& request);

// One message as an SSE frame (see above): `id:` when the message has a
// non-empty string field `cursor` without control characters, `event:` the
// name of its enum field `kind` in lower case ("message" when it has none
// or it is the zero value), then one `data:` line per line of its JSON.
std::string SseEventFrame(const google::protobuf::Message& message);

// An `event: error` frame with the unified error body.
std::string SseErrorFrame(const HttpError& error,
                          absl::string_view correlation_id);

struct SseOptions {
  // A `: keepalive` comment after this long without a frame.
  absl::Duration keepalive = absl::Seconds(15);
  // The reconnection delay advised to the client (`retry:`).
  absl::Duration retry = absl::Seconds(3);
};

// What to call.
struct SseCall {
  // Not owned; it (and its channel) must outlive the call, i.e. until
  // on_done has run.
  grpc::GenericStub* stub = nullptr;
  // "/iot2mqtt.config.v1.ConfigService/WatchChanges".
  std::string rpc_path;
  // The serialized request message.
  std::string request;
  // The response message type (parsed with the generated pool's factory).
  const google::protobuf::Descriptor* response_type = nullptr;
  // Sent as x-correlation-id metadata and put in error bodies.
  std::string correlation_id;
  // The backend's short name, for error messages ("config").
  std::string backend;
  // When set, the stream ends at this time (the token that opened it
  // expires) with `deadline_error` as its error frame.
  absl::Time deadline = absl::InfiniteFuture();
  HttpError deadline_error;
};

class SseBridge final
    : public std::enable_shared_from_this<SseBridge>,
      private grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  // Runs once, on a gRPC thread (never inside Start or Cancel, so they may
  // be called holding a lock on_done takes), when the call is over: the
  // call's final status (CANCELLED after the stream closed or Cancel()).
  // The bridge touches neither the stub nor the stream after it.
  using DoneCallback = std::function<void(const grpc::Status& status)>;

  // Writes `retry:` and starts the call. `stream` is usually not yet handed
  // to the server (that's fine: it queues).
  static std::shared_ptr<SseBridge> Start(
      SseCall call, std::shared_ptr<ResponseStream> stream,
      SseOptions options = SseOptions(), DoneCallback on_done = nullptr);

  ~SseBridge() override;
  SseBridge(const SseBridge&) = delete;
  SseBridge& operator=(const SseBridge&) = delete;

  // Cancels the call (gateway shutdown); the stream then ends without an
  // error frame. Any thread, any time, idempotent.
  void Cancel();

  // Messages written so far.
  int64_t events() const { return events_.load(); }

 private:
  SseBridge(SseCall call, std::shared_ptr<ResponseStream> stream,
            SseOptions options, DoneCallback on_done);

  void Begin();
  // Writes to the stream; false when it is closed.
  bool Emit(std::string frame);
  void ArmKeepalive(absl::Duration after) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnKeepalive();

  // grpc::ClientBidiReactor
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

  const SseCall call_;
  const std::shared_ptr<ResponseStream> stream_;
  const SseOptions options_;
  DoneCallback on_done_;
  const google::protobuf::Message* prototype_;

  grpc::ClientContext context_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> error_sent_{false};
  std::atomic<int64_t> events_{0};

  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_frame_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<grpc::Alarm> alarm_ ABSL_GUARDED_BY(mu_);

  // Ourselves, from Begin until OnDone.
  std::shared_ptr<SseBridge> self_;
  absl::Time started_;
};

}  // namespace iot2mqtt::gateway

#endif  // IOT2MQTT_GATEWAY_SSE_BRIDGE_H_
