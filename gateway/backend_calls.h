#ifndef IOT2MQTT_GATEWAY_BACKEND_CALLS_H_
#define IOT2MQTT_GATEWAY_BACKEND_CALLS_H_

// What the gateway's own handlers (WebSocket endpoints) need from it: calls
// to the backends that the gateway tracks, so that shutdown cancels them and
// waits for them. The Gateway implements it; tests use a fake.
//
//   std::shared_ptr<CallHandle> call = calls->Stream(
//       "/iot2mqtt.mqtt_bridge.v1.MqttBridgeService/Subscribe", request,
//       {correlation_id, deadline},
//       {[](const std::string& bytes) { ...; return true; },
//        [](const grpc::Status& status) { ... }});
//   ...
//   call->Cancel();  // on_done still follows (CANCELLED).

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/status.h"

namespace iot2mqtt::gateway {

// A running call.
class CallHandle {
 public:
  virtual ~CallHandle() = default;
  // Ends the call early; its on_done still runs (CANCELLED). Any thread,
  // idempotent.
  virtual void Cancel() = 0;
  // A stream paused by on_message (kPause) reads on. A Resume that comes
  // before the pause it answers is kept for it. Any thread.
  virtual void Resume() {}
};

// What a stream does after a message.
enum class StreamAction {
  kContinue,  // Read the next one.
  kPause,     // Don't read until Resume() (the server queues, then skips).
  kCancel,    // End the call.
};

// The bytes of a received message (empty when it can't be read).
inline std::string BytesOf(const grpc::ByteBuffer& buffer) {
  std::string bytes;
  std::vector<grpc::Slice> slices;
  if (buffer.Dump(&slices).ok()) {
    for (const grpc::Slice& slice : slices) {
      bytes.append(reinterpret_cast<const char*>(slice.begin()),
                   slice.size());
    }
  }
  return bytes;
}

struct CallOptions {
  // Sent as x-correlation-id metadata.
  std::string correlation_id;
  // The call ends with DEADLINE_EXCEEDED at this time (a stream: when the
  // token that opened it expires). InfiniteFuture: the gateway's default
  // deadline for unary calls, none for streams.
  absl::Time deadline = absl::InfiniteFuture();
};

struct StreamCallbacks {
  // Each message (serialized), one at a time, in order, on a gRPC thread.
  // The next message is read only after it returns, as it says.
  std::function<StreamAction(const std::string& bytes)> on_message;
  // Exactly once, last, on a gRPC thread, never inside Stream() or
  // Cancel(): the call's status (OK when the server ended it).
  std::function<void(const grpc::Status& status)> on_done;
};

using UnaryDone =
    std::function<void(const grpc::Status& status, const std::string& bytes)>;

class BackendCalls {
 public:
  virtual ~BackendCalls() = default;

  // Calls the unary method `rpc_path` ("/pkg.Service/Method") of the backend
  // serving its service; `done` runs once, on a gRPC thread or (backend
  // unknown, shutting down) at once on the caller's thread with
  // UNIMPLEMENTED / UNAVAILABLE.
  virtual void Unary(const std::string& rpc_path,
                     const google::protobuf::Message& request,
                     const CallOptions& options, UnaryDone done) = 0;

  // Starts the server-streaming method `rpc_path`. Null (and no callback)
  // when the gateway is shutting down or no backend serves it (`*refused`
  // tells which, when given).
  virtual std::shared_ptr<CallHandle> Stream(
      const std::string& rpc_path, const google::protobuf::Message& request,
      const CallOptions& options, StreamCallbacks callbacks,
      grpc::Status* refused = nullptr) = 0;
};

}  // namespace iot2mqtt::gateway

#endif  // IOT2MQTT_GATEWAY_BACKEND_CALLS_H_
