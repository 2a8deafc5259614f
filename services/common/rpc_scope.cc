#include "services/common/rpc_scope.h"

#include <random>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "services/common/grpc_status.h"
#include "services/common/status.h"

namespace iot2mqtt::common {

std::string NewCorrelationId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return absl::StrFormat("%016x%016x", rng(), rng());
}

std::string CorrelationIdFrom(const grpc::ServerContextBase& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(kCorrelationIdMetadata);
  if (it == metadata.end()) return "";
  absl::string_view value(it->second.data(), it->second.size());
  if (value.empty() || value.size() > 128) return "";
  for (char c : value) {
    if (c < 0x21 || c > 0x7e) return "";
  }
  return std::string(value);
}

namespace {
std::string CorrelationIdOrNew(const grpc::ServerContextBase& context) {
  std::string id = CorrelationIdFrom(context);
  return id.empty() ? NewCorrelationId() : id;
}
}  // namespace

RpcScope::RpcScope(grpc::CallbackServerContext* context, absl::string_view rpc)
    : context_(context),
      rpc_(rpc),
      correlation_id_(CorrelationIdOrNew(*context)),
      start_(absl::Now()),
      log_scope_(correlation_id_) {
  context_->AddInitialMetadata(kCorrelationIdMetadata, correlation_id_);
}

grpc::ServerUnaryReactor* RpcScope::Finish(const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context_->DefaultReactor();
  Finish(status, reactor);
  return reactor;
}

void RpcScope::Finish(const absl::Status& status,
                      grpc::ServerUnaryReactor* reactor) {
  double latency_ms = absl::ToDoubleMilliseconds(absl::Now() - start_);
  bool server_fault = status.code() == absl::StatusCode::kInternal ||
                      status.code() == absl::StatusCode::kUnknown ||
                      status.code() == absl::StatusCode::kDataLoss;
  // Successful calls are DEBUG: the gateway already logs every request at
  // INFO under the same correlation id.
  sdk::LogLine line(server_fault  ? sdk::Severity::kError
                    : status.ok() ? sdk::Severity::kDebug
                                  : sdk::Severity::kInfo);
  line.With("rpc", rpc_)
      .With("code", CodeName(status.code()))
      .With("latency_ms", latency_ms);
  if (!status.ok()) {
    line.With("reason", ReasonOf(status)) << status.message();
  } else {
    line << "rpc served";
  }
  reactor->Finish(ToGrpcStatus(status));
}

}  // namespace iot2mqtt::common
