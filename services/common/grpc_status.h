#ifndef IOT2MQTT_SERVICES_COMMON_GRPC_STATUS_H_
#define IOT2MQTT_SERVICES_COMMON_GRPC_STATUS_H_

// The one mapping between absl::Status and grpc::Status. Payloads (such as the
// google.rpc.ErrorInfo added by WithReason) travel as the `details` of a
// serialized google.rpc.Status in the gRPC `error_details`, which is where
// grpcurl, grpc-gateway and every gRPC client library look for them.

#include "absl/status/status.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/support/status.h"

namespace iot2mqtt::common {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status ToAbslStatus(const grpc::Status& status);

// The google.rpc.Status carried by `status` (code and message filled from the
// status itself when it carries no details).
google::rpc::Status ToRpcStatus(const grpc::Status& status);

}  // namespace iot2mqtt::common

#endif  // IOT2MQTT_SERVICES_COMMON_GRPC_STATUS_H_
