#include "services/common/work_pool.h"

#include <string>
#include <utility>

#include "services/common/rpc_scope.h"

namespace iot2mqtt::common {

WorkPool::WorkPool(int threads) {
  if (threads < 1) threads = 1;
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

WorkPool::~WorkPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& thread : threads_) thread.join();
}

void WorkPool::Schedule(std::function<void()> work) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(work));
}

bool WorkPool::Ready() const { return stopping_ || !queue_.empty(); }

void WorkPool::Loop() {
  while (true) {
    std::function<void()> work;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &WorkPool::Ready));
      if (queue_.empty()) return;  // Stopping and drained.
      work = std::move(queue_.front());
      queue_.pop_front();
    }
    work();
  }
}

grpc::ServerUnaryReactor* Offload(grpc::CallbackServerContext* context,
                                  absl::string_view rpc, WorkPool& pool,
                                  std::function<absl::Status()> body) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  pool.Schedule(
      [context, reactor, name = std::string(rpc), body = std::move(body)] {
        RpcScope scope(context, name);
        scope.Finish(body(), reactor);
      });
  return reactor;
}

}  // namespace iot2mqtt::common
