#ifndef IOT2MQTT_SERVICES_COMMON_WORK_POOL_H_
#define IOT2MQTT_SERVICES_COMMON_WORK_POOL_H_

// Blocking work (file I/O with fsync, password hashing) off the gRPC
// callback threads: a fixed pool of worker threads, and the unary-handler
// edge that runs a handler body there.
//
//   grpc::ServerUnaryReactor* FooServiceImpl::GetBar(
//       grpc::CallbackServerContext* context, const GetBarRequest* request,
//       GetBarResponse* response) {
//     return common::Offload(context, "GetBar", pool_, [=] {
//       absl::StatusOr<Bar> bar = store_.Get(request->name());
//       if (bar.ok()) *response->mutable_bar() = *std::move(bar);
//       return bar.status();
//     });
//   }

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/server_context.h"

namespace iot2mqtt::common {

class WorkPool {
 public:
  explicit WorkPool(int threads);
  // Runs the queued work, then joins the threads.
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  void Schedule(std::function<void()> work);

 private:
  void Loop();
  bool Ready() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// Runs `body` on `pool` inside an RpcScope (correlation id, one log line)
// and finishes the call with its status. The request and response stay
// valid until then.
grpc::ServerUnaryReactor* Offload(grpc::CallbackServerContext* context,
                                  absl::string_view rpc, WorkPool& pool,
                                  std::function<absl::Status()> body);

}  // namespace iot2mqtt::common

#endif  // IOT2MQTT_SERVICES_COMMON_WORK_POOL_H_
