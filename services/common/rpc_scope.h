#ifndef IOT2MQTT_SERVICES_COMMON_RPC_SCOPE_H_
#define IOT2MQTT_SERVICES_COMMON_RPC_SCOPE_H_

// The edge of every unary handler: takes the correlation id from the
// `x-correlation-id` request metadata (or makes one), makes it the current
// log correlation id, and on Finish() logs the RPC once (rpc, code, reason,
// latency_ms), maps the status and finishes the default reactor.
//
//   grpc::ServerUnaryReactor* FooServiceImpl::GetBar(
//       grpc::CallbackServerContext* context, const GetBarRequest* request,
//       GetBarResponse* response) {
//     common::RpcScope rpc(context, "GetBar");
//     absl::StatusOr<Bar> bar = store_.Get(request->name());
//     if (bar.ok()) *response->mutable_bar() = *std::move(bar);
//     return rpc.Finish(bar.status());
//   }

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/server_context.h"
#include "iot2mqtt/sdk/log.h"

namespace iot2mqtt::common {

inline constexpr char kCorrelationIdMetadata[] = "x-correlation-id";

// A fresh random correlation id (32 hex digits).
std::string NewCorrelationId();

// The correlation id the client sent, if it is sane (printable, ≤ 128 bytes).
std::string CorrelationIdFrom(const grpc::ServerContextBase& context);

class RpcScope {
 public:
  RpcScope(grpc::CallbackServerContext* context, absl::string_view rpc);
  RpcScope(const RpcScope&) = delete;
  RpcScope& operator=(const RpcScope&) = delete;

  grpc::ServerUnaryReactor* Finish(const absl::Status& status);
  // The same for a handler that took the context's DefaultReactor() itself
  // (it may be taken only once).
  void Finish(const absl::Status& status, grpc::ServerUnaryReactor* reactor);

  const std::string& correlation_id() const { return correlation_id_; }

 private:
  grpc::CallbackServerContext* context_;
  std::string rpc_;
  std::string correlation_id_;
  absl::Time start_;
  sdk::ScopedCorrelationId log_scope_;
};

}  // namespace iot2mqtt::common

#endif  // IOT2MQTT_SERVICES_COMMON_RPC_SCOPE_H_
