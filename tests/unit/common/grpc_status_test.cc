#include "services/common/grpc_status.h"

#include "catch2/catch.hpp"
#include "services/common/status.h"

namespace iot2mqtt::common {
namespace {

TEST_CASE("ToGrpcStatus: every canonical code keeps its number and message",
          "[unit][status]") {
  for (int code = 1; code <= 16; ++code) {
    absl::Status in(static_cast<absl::StatusCode>(code), "boom");
    grpc::Status out = ToGrpcStatus(in);
    CHECK(static_cast<int>(out.error_code()) == code);
    CHECK(out.error_message() == "boom");
    absl::Status back = ToAbslStatus(out);
    CHECK(back.code() == in.code());
    CHECK(back.message() == "boom");
  }
  CHECK(ToGrpcStatus(absl::OkStatus()).ok());
  CHECK(ToAbslStatus(grpc::Status::OK).ok());
}

TEST_CASE("ToGrpcStatus: a code outside the canonical range is UNKNOWN",
          "[unit][status]") {
  absl::Status odd(static_cast<absl::StatusCode>(42), "odd");
  CHECK(ToGrpcStatus(odd).error_code() == grpc::StatusCode::UNKNOWN);
}

TEST_CASE("ErrorInfo reason and metadata survive the round trip",
          "[unit][status]") {
  absl::Status status = WithReason(
      absl::NotFoundError("device config not found"), "DEVICE_CONFIG_NOT_FOUND",
      {{"mac_address", "aa-bb-cc-dd-ee-ff"}});
  grpc::Status wire = ToGrpcStatus(status);
  google::rpc::Status rpc = ToRpcStatus(wire);
  CHECK(rpc.code() == 5);
  REQUIRE(rpc.details_size() == 1);
  CHECK(rpc.details(0).type_url() == std::string(kErrorInfoTypeUrl));

  absl::Status back = ToAbslStatus(wire);
  auto info = GetErrorInfo(back);
  REQUIRE(info.has_value());
  CHECK(info->reason() == "DEVICE_CONFIG_NOT_FOUND");
  CHECK(info->domain() == "iot2mqtt");
  CHECK(info->metadata().at("mac_address") == "aa-bb-cc-dd-ee-ff");
  CHECK(ReasonOf(back) == "DEVICE_CONFIG_NOT_FOUND");
}

TEST_CASE("ReasonOf: falls back to the code name", "[unit][status]") {
  CHECK(ReasonOf(absl::UnavailableError("x")) == "UNAVAILABLE");
  CHECK(ReasonOf(absl::InvalidArgumentError("x")) == "INVALID_ARGUMENT");
  CHECK(ReasonOf(absl::OkStatus()).empty());
  CHECK(CodeName(absl::StatusCode::kDeadlineExceeded) == "DEADLINE_EXCEEDED");
}

TEST_CASE("ToRpcStatus: a plain grpc::Status without details still maps",
          "[unit][status]") {
  grpc::Status plain(grpc::StatusCode::PERMISSION_DENIED, "nope");
  google::rpc::Status rpc = ToRpcStatus(plain);
  CHECK(rpc.code() == 7);
  CHECK(rpc.message() == "nope");
  CHECK(rpc.details_size() == 0);
}

}  // namespace
}  // namespace iot2mqtt::common
