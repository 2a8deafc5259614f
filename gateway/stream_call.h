#ifndef IOT2MQTT_GATEWAY_STREAM_CALL_H_
#define IOT2MQTT_GATEWAY_STREAM_CALL_H_

// One server-streaming gRPC call through a GenericStub (the callback API: a
// generic bidi call carrying one request and a half-close, on the wire the
// same as a server-streaming call), delivering raw messages to callbacks
// (backend_calls.h). The call keeps itself alive until on_done has run.

#include <atomic>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gateway/backend_calls.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/client_callback.h"

namespace iot2mqtt::gateway {

class StreamCall final
    : public CallHandle,
      public std::enable_shared_from_this<StreamCall>,
      private grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  // `stub` must outlive the call (until on_done has run).
  static std::shared_ptr<StreamCall> Start(grpc::GenericStub* stub,
                                           const std::string& rpc_path,
                                           const std::string& request,
                                           const CallOptions& options,
                                           StreamCallbacks callbacks);
  ~StreamCall() override;

  void Cancel() override;
  void Resume() override;

 private:
  explicit StreamCall(StreamCallbacks callbacks)
      : callbacks_(std::move(callbacks)) {}

  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

  StreamCallbacks callbacks_;
  grpc::ClientContext context_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  std::shared_ptr<StreamCall> self_;  // From Start until OnDone.
  absl::Mutex mu_;
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  bool resume_pending_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace iot2mqtt::gateway

#endif  // IOT2MQTT_GATEWAY_STREAM_CALL_H_
