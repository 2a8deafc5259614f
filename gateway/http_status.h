#ifndef IOT2MQTT_GATEWAY_HTTP_STATUS_H_
#define IOT2MQTT_GATEWAY_HTTP_STATUS_H_

// The one mapping from gRPC codes to HTTP statuses (grpc-gateway's table) and
// the one error body every gateway response uses (ARCHITECTURE.md §8):
//
//   {"error": msg, "code": "REASON", "details": {...}|null,
//    "correlationId": id, "detail": msg}
//
// REASON is the google.rpc.ErrorInfo reason when there is one, else the
// canonical code name; details are the ErrorInfo metadata (plus
// "field_violations" from a google.rpc.BadRequest).

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/support/status.h"

namespace iot2mqtt::gateway {

// grpc-gateway's HTTPStatusFromCode; codes outside 0..16 give 500.
int HttpStatusFromGrpcCode(grpc::StatusCode code);

// The reason shown in the error body's "code": the ErrorInfo reason of
// `status` when present, else the canonical code name ("NOT_FOUND").
std::string ErrorReason(const google::rpc::Status& status);

// The unified error body for `status`.
std::string ErrorBody(const google::rpc::Status& status,
                      absl::string_view correlation_id);

// An error answer: HTTP status and the google.rpc.Status behind the body.
struct HttpError {
  int http_status = 500;
  google::rpc::Status status;
};

// An error the gateway produces itself (404 route, 405, 413, ...): `code` is
// the closest canonical code, `reason` goes into an ErrorInfo.
HttpError GatewayError(int http_status, absl::StatusCode code,
                       absl::string_view message, absl::string_view reason,
                       const std::map<std::string, std::string>& metadata = {});

// The answer for a failed backend call to the service `backend` (short
// name). Statuses the service produced keep their code, message and details.
// Transport failures the service never saw (no details attached) get
// reasons: UNAVAILABLE → 503 BACKEND_UNAVAILABLE, DEADLINE_EXCEEDED → 504
// BACKEND_DEADLINE_EXCEEDED.
HttpError BackendError(const grpc::Status& status, absl::string_view backend);

}  // namespace iot2mqtt::gateway

#endif  // IOT2MQTT_GATEWAY_HTTP_STATUS_H_
