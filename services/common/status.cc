#include "services/common/status.h"

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"

namespace iot2mqtt::common {

absl::Status WithReason(absl::Status status, absl::string_view reason,
                        const std::map<std::string, std::string>& metadata) {
  if (status.ok()) return status;
  google::rpc::ErrorInfo info;
  info.set_reason(std::string(reason));
  info.set_domain(std::string(kErrorDomain));
  for (const auto& [key, value] : metadata) {
    (*info.mutable_metadata())[key] = value;
  }
  status.SetPayload(kErrorInfoTypeUrl, absl::Cord(info.SerializeAsString()));
  return status;
}

std::optional<google::rpc::ErrorInfo> GetErrorInfo(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kErrorInfoTypeUrl);
  if (!payload.has_value()) return std::nullopt;
  google::rpc::ErrorInfo info;
  if (!info.ParseFromString(std::string(*payload))) return std::nullopt;
  return info;
}

std::string CodeName(absl::StatusCode code) {
  // absl spells them "NOT_FOUND"-style already, in upper case.
  return absl::AsciiStrToUpper(absl::StatusCodeToString(code));
}

std::string ReasonOf(const absl::Status& status) {
  if (status.ok()) return "";
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  if (info.has_value() && !info->reason().empty()) return info->reason();
  return CodeName(status.code());
}

}  // namespace iot2mqtt::common
