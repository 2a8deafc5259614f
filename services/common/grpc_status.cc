#include "services/common/grpc_status.h"

#include <string>

#include "absl/strings/cord.h"

namespace iot2mqtt::common {
namespace {

// Both enums share the canonical numbering 0..16; anything else is UNKNOWN.
bool IsCanonical(int code) { return code >= 0 && code <= 16; }

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  int raw = static_cast<int>(status.code());
  grpc::StatusCode code = IsCanonical(raw) ? static_cast<grpc::StatusCode>(raw)
                                           : grpc::StatusCode::UNKNOWN;
  google::rpc::Status rpc;
  rpc.set_code(static_cast<int>(code));
  rpc.set_message(std::string(status.message()));
  status.ForEachPayload(
      [&rpc](absl::string_view type_url, const absl::Cord& payload) {
        google::protobuf::Any* any = rpc.add_details();
        any->set_type_url(std::string(type_url));
        any->set_value(std::string(payload));
      });
  return grpc::Status(code, std::string(status.message()),
                      rpc.SerializeAsString());
}

google::rpc::Status ToRpcStatus(const grpc::Status& status) {
  google::rpc::Status rpc;
  if (!status.error_details().empty() &&
      rpc.ParseFromString(status.error_details())) {
    return rpc;
  }
  rpc.Clear();
  rpc.set_code(static_cast<int>(status.error_code()));
  rpc.set_message(status.error_message());
  return rpc;
}

absl::Status ToAbslStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  int raw = static_cast<int>(status.error_code());
  absl::StatusCode code = IsCanonical(raw) ? static_cast<absl::StatusCode>(raw)
                                           : absl::StatusCode::kUnknown;
  absl::Status result(code, status.error_message());
  google::rpc::Status rpc = ToRpcStatus(status);
  for (const google::protobuf::Any& any : rpc.details()) {
    result.SetPayload(any.type_url(), absl::Cord(any.value()));
  }
  return result;
}

}  // namespace iot2mqtt::common
