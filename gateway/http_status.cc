#include "gateway/http_status.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"
#include "services/common/grpc_status.h"
#include "services/common/status.h"

namespace iot2mqtt::gateway {

int HttpStatusFromGrpcCode(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return 200;
    case grpc::StatusCode::CANCELLED:
      return 499;
    case grpc::StatusCode::UNKNOWN:
      return 500;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return 400;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 504;
    case grpc::StatusCode::NOT_FOUND:
      return 404;
    case grpc::StatusCode::ALREADY_EXISTS:
      return 409;
    case grpc::StatusCode::PERMISSION_DENIED:
      return 403;
    case grpc::StatusCode::UNAUTHENTICATED:
      return 401;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::StatusCode::FAILED_PRECONDITION:
      // grpc-gateway deliberately maps this to 400, not 412: 412 is about
      // HTTP conditional headers.
      return 400;
    case grpc::StatusCode::ABORTED:
      return 409;
    case grpc::StatusCode::OUT_OF_RANGE:
      return 400;
    case grpc::StatusCode::UNIMPLEMENTED:
      return 501;
    case grpc::StatusCode::INTERNAL:
      return 500;
    case grpc::StatusCode::UNAVAILABLE:
      return 503;
    case grpc::StatusCode::DATA_LOSS:
      return 500;
    default:
      return 500;
  }
}

namespace {

bool IsCanonical(int code) { return code >= 0 && code <= 16; }

std::string CanonicalName(int code) {
  return common::CodeName(IsCanonical(code)
                              ? static_cast<absl::StatusCode>(code)
                              : absl::StatusCode::kUnknown);
}

template <typename T>
bool FindDetail(const google::rpc::Status& status, T* out) {
  const std::string& type = T::descriptor()->full_name();
  for (const google::protobuf::Any& any : status.details()) {
    if (absl::EndsWith(any.type_url(), absl::StrCat("/", type)) &&
        any.UnpackTo(out)) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string ErrorReason(const google::rpc::Status& status) {
  google::rpc::ErrorInfo info;
  if (FindDetail(status, &info) && !info.reason().empty()) return info.reason();
  return CanonicalName(status.code());
}

std::string ErrorBody(const google::rpc::Status& status,
                      absl::string_view correlation_id) {
  google::rpc::ErrorInfo info;
  bool has_info = FindDetail(status, &info);
  google::rpc::BadRequest bad_request;
  bool has_bad_request = FindDetail(status, &bad_request) &&
                         bad_request.field_violations_size() > 0;

  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.StartObject();
  writer.Key("error");
  writer.String(status.message());
  writer.Key("code");
  writer.String(has_info && !info.reason().empty()
                    ? info.reason()
                    : CanonicalName(status.code()));
  writer.Key("details");
  if ((has_info && !info.metadata().empty()) || has_bad_request) {
    writer.StartObject();
    if (has_info) {
      // Sorted, so the body is stable (protobuf maps have no order).
      std::map<std::string, std::string> sorted(info.metadata().begin(),
                                                info.metadata().end());
      for (const auto& [key, value] : sorted) {
        writer.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
        writer.String(value);
      }
    }
    if (has_bad_request) {
      writer.Key("field_violations");
      writer.StartArray();
      for (const auto& violation : bad_request.field_violations()) {
        writer.StartObject();
        writer.Key("field");
        writer.String(violation.field());
        writer.Key("description");
        writer.String(violation.description());
        writer.EndObject();
      }
      writer.EndArray();
    }
    writer.EndObject();
  } else {
    writer.Null();
  }
  writer.Key("correlationId");
  writer.String(correlation_id.data(),
                static_cast<rapidjson::SizeType>(correlation_id.size()));
  writer.Key("detail");
  writer.String(status.message());
  writer.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

HttpError GatewayError(int http_status, absl::StatusCode code,
                       absl::string_view message, absl::string_view reason,
                       const std::map<std::string, std::string>& metadata) {
  absl::Status status =
      common::WithReason(absl::Status(code, message), reason, metadata);
  return {http_status, common::ToRpcStatus(common::ToGrpcStatus(status))};
}

HttpError BackendError(const grpc::Status& status, absl::string_view backend) {
  // Our services always attach a serialized google.rpc.Status; a failure
  // without one comes from the transport (or the gateway's own deadline).
  google::rpc::Status rpc = common::ToRpcStatus(status);
  if (status.error_details().empty()) {
    // The transport's message names addresses and internals: it goes to the
    // log (gateway.cc), not to clients.
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
      return GatewayError(
          503, absl::StatusCode::kUnavailable,
          absl::StrCat("the ", backend, " service is unavailable"),
          "BACKEND_UNAVAILABLE", {{"service", std::string(backend)}});
    }
    if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      return GatewayError(
          504, absl::StatusCode::kDeadlineExceeded,
          absl::StrCat("the ", backend, " service did not answer in time"),
          "BACKEND_DEADLINE_EXCEEDED", {{"service", std::string(backend)}});
    }
  }
  return {HttpStatusFromGrpcCode(status.error_code()), std::move(rpc)};
}

}  // namespace iot2mqtt::gateway
