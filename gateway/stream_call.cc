#include "gateway/stream_call.h"

#include <utility>

#include "services/common/rpc_scope.h"

namespace iot2mqtt::gateway {

std::shared_ptr<StreamCall> StreamCall::Start(grpc::GenericStub* stub,
                                              const std::string& rpc_path,
                                              const std::string& request,
                                              const CallOptions& options,
                                              StreamCallbacks callbacks) {
  std::shared_ptr<StreamCall> call(new StreamCall(std::move(callbacks)));
  call->self_ = call;
  call->context_.AddMetadata(common::kCorrelationIdMetadata,
                             options.correlation_id);
  if (options.deadline != absl::InfiniteFuture()) {
    call->context_.set_deadline(absl::ToChronoTime(options.deadline));
  }
  grpc::Slice slice(request);
  call->request_ = grpc::ByteBuffer(&slice, 1);
  stub->PrepareBidiStreamingCall(&call->context_, rpc_path, grpc::StubOptions(),
                                 call.get());
  call->StartWriteLast(&call->request_, grpc::WriteOptions());
  call->StartRead(&call->response_);
  call->StartCall();
  return call;
}

StreamCall::~StreamCall() = default;

void StreamCall::Cancel() { context_.TryCancel(); }

void StreamCall::Resume() {
  {
    absl::MutexLock lock(&mu_);
    if (!paused_) {
      resume_pending_ = true;
      return;
    }
    paused_ = false;
  }
  StartRead(&response_);
}

void StreamCall::OnReadDone(bool ok) {
  if (!ok) return;  // The stream is over; OnDone follows.
  std::string bytes = BytesOf(response_);
  response_.Clear();
  StreamAction action = callbacks_.on_message ? callbacks_.on_message(bytes)
                                              : StreamAction::kContinue;
  if (action == StreamAction::kCancel) {
    Cancel();
    return;  // No more reads: OnDone follows the cancellation.
  }
  if (action == StreamAction::kPause) {
    absl::MutexLock lock(&mu_);
    if (!resume_pending_) {
      paused_ = true;
      return;
    }
  }
  {
    absl::MutexLock lock(&mu_);
    resume_pending_ = false;
  }
  StartRead(&response_);
}

void StreamCall::OnDone(const grpc::Status& status) {
  if (callbacks_.on_done) callbacks_.on_done(status);
  callbacks_ = StreamCallbacks();
  // Possibly the last reference: nothing after this.
  std::shared_ptr<StreamCall> self = std::move(self_);
}

}  // namespace iot2mqtt::gateway
