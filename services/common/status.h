#ifndef IOT2MQTT_SERVICES_COMMON_STATUS_H_
#define IOT2MQTT_SERVICES_COMMON_STATUS_H_

// Machine-readable error reasons on absl::Status, carried as a
// `google.rpc.ErrorInfo` payload (AIP-193). Domain code may use this header:
// it has no gRPC dependency.

#include <map>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/rpc/error_details.pb.h"

namespace iot2mqtt::common {

inline constexpr absl::string_view kErrorInfoTypeUrl =
    "type.googleapis.com/google.rpc.ErrorInfo";
inline constexpr absl::string_view kErrorDomain = "iot2mqtt";

// Returns `status` with an ErrorInfo{reason, domain, metadata} payload.
// `reason` is UPPER_SNAKE_CASE, e.g. "INVALID_MAC_ADDRESS".
absl::Status WithReason(
    absl::Status status, absl::string_view reason,
    const std::map<std::string, std::string>& metadata = {});

// The ErrorInfo attached by WithReason, if any.
std::optional<google::rpc::ErrorInfo> GetErrorInfo(const absl::Status& status);

// The reason of `status`: its ErrorInfo reason, else the canonical code name
// ("NOT_FOUND"); empty for OK.
std::string ReasonOf(const absl::Status& status);

// "NOT_FOUND" for absl::StatusCode::kNotFound, etc.
std::string CodeName(absl::StatusCode code);

}  // namespace iot2mqtt::common

#endif  // IOT2MQTT_SERVICES_COMMON_STATUS_H_
