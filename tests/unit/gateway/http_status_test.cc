#include "gateway/http_status.h"

#include <string>
#include <utility>
#include <vector>

#include "catch2/catch.hpp"
#include "gateway/http_server.h"
#include "google/rpc/error_details.pb.h"
#include "services/common/grpc_status.h"
#include "services/common/status.h"

namespace iot2mqtt::gateway {
namespace {

TEST_CASE("every gRPC code maps to grpc-gateway's HTTP status") {
  const std::vector<std::pair<grpc::StatusCode, int>> table = {
      {grpc::StatusCode::OK, 200},
      {grpc::StatusCode::CANCELLED, 499},
      {grpc::StatusCode::UNKNOWN, 500},
      {grpc::StatusCode::INVALID_ARGUMENT, 400},
      {grpc::StatusCode::DEADLINE_EXCEEDED, 504},
      {grpc::StatusCode::NOT_FOUND, 404},
      {grpc::StatusCode::ALREADY_EXISTS, 409},
      {grpc::StatusCode::PERMISSION_DENIED, 403},
      {grpc::StatusCode::UNAUTHENTICATED, 401},
      {grpc::StatusCode::RESOURCE_EXHAUSTED, 429},
      {grpc::StatusCode::FAILED_PRECONDITION, 400},
      {grpc::StatusCode::ABORTED, 409},
      {grpc::StatusCode::OUT_OF_RANGE, 400},
      {grpc::StatusCode::UNIMPLEMENTED, 501},
      {grpc::StatusCode::INTERNAL, 500},
      {grpc::StatusCode::UNAVAILABLE, 503},
      {grpc::StatusCode::DATA_LOSS, 500},
  };
  for (const auto& [code, http] : table) {
    INFO(static_cast<int>(code));
    CHECK(HttpStatusFromGrpcCode(code) == http);
  }
  CHECK(HttpStatusFromGrpcCode(static_cast<grpc::StatusCode>(42)) == 500);
}

google::rpc::Status RpcOf(const absl::Status& status) {
  return common::ToRpcStatus(common::ToGrpcStatus(status));
}

TEST_CASE("the error body carries the ErrorInfo reason and metadata") {
  google::rpc::Status status = RpcOf(common::WithReason(
      absl::NotFoundError("no config for a4-cf-12-34-56-78"),
      "CONFIG_NOT_FOUND",
      {{"mac_address", "a4-cf-12-34-56-78"}, {"a", "first"}}));
  CHECK(ErrorReason(status) == "CONFIG_NOT_FOUND");
  CHECK(
      ErrorBody(status, "cid-1") ==
      R"({"error":"no config for a4-cf-12-34-56-78","code":"CONFIG_NOT_FOUND",)"
      R"("details":{"a":"first","mac_address":"a4-cf-12-34-56-78"},)"
      R"("correlationId":"cid-1","detail":"no config for a4-cf-12-34-56-78"})");
}

TEST_CASE("without ErrorInfo the code is the canonical name and details null") {
  google::rpc::Status status = RpcOf(absl::NotFoundError("gone \"quoted\""));
  CHECK(ErrorReason(status) == "NOT_FOUND");
  CHECK(ErrorBody(status, "x") ==
        R"({"error":"gone \"quoted\"","code":"NOT_FOUND","details":null,)"
        R"("correlationId":"x","detail":"gone \"quoted\""})");
  // A plain transport status (no details at all).
  google::rpc::Status plain = common::ToRpcStatus(
      grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "no"));
  CHECK(ErrorReason(plain) == "PERMISSION_DENIED");
}

TEST_CASE("BadRequest field violations join the details") {
  google::rpc::Status status = RpcOf(absl::InvalidArgumentError("bad"));
  google::rpc::BadRequest bad_request;
  auto* violation = bad_request.add_field_violations();
  violation->set_field("content");
  violation->set_description("must be an object");
  status.add_details()->PackFrom(bad_request);
  CHECK(
      ErrorBody(status, "c") ==
      R"({"error":"bad","code":"INVALID_ARGUMENT","details":{"field_violations":)"
      R"([{"field":"content","description":"must be an object"}]},)"
      R"("correlationId":"c","detail":"bad"})");
}

TEST_CASE("backend failures: transport errors get gateway reasons") {
  HttpError down = BackendError(
      grpc::Status(grpc::StatusCode::UNAVAILABLE,
                   "failed to connect to all addresses; ipv4:192.0.2.1:50051"),
      "config");
  CHECK(down.http_status == 503);
  CHECK(ErrorReason(down.status) == "BACKEND_UNAVAILABLE");
  // Internal addresses don't reach clients.
  CHECK(down.status.message().find("192.0.2.1") == std::string::npos);

  HttpError slow = BackendError(
      grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "Deadline Exceeded"),
      "config");
  CHECK(slow.http_status == 504);
  CHECK(ErrorReason(slow.status) == "BACKEND_DEADLINE_EXCEEDED");

  // What the service said itself is passed on.
  HttpError from_service = BackendError(
      common::ToGrpcStatus(common::WithReason(
          absl::UnavailableError("disk gone"), "STORAGE_UNAVAILABLE")),
      "config");
  CHECK(from_service.http_status == 503);
  CHECK(ErrorReason(from_service.status) == "STORAGE_UNAVAILABLE");
  CHECK(from_service.status.message() == "disk gone");

  HttpError invalid = BackendError(
      common::ToGrpcStatus(absl::InvalidArgumentError("bad mac")), "config");
  CHECK(invalid.http_status == 400);
  CHECK(ErrorReason(invalid.status) == "INVALID_ARGUMENT");
}

TEST_CASE("gateway errors use the same body") {
  HttpError error =
      GatewayError(413, absl::StatusCode::kResourceExhausted, "too big",
                   "PAYLOAD_TOO_LARGE", {{"limit_bytes", "10"}});
  HttpResponse response = ErrorResponse(error, "cid");
  CHECK(response.status == 413);
  CHECK(response.content_type == "application/json");
  CHECK(
      response.body ==
      R"({"error":"too big","code":"PAYLOAD_TOO_LARGE","details":{"limit_bytes":"10"},)"
      R"("correlationId":"cid","detail":"too big"})");
}

TEST_CASE("correlation ids from clients are used only when sane") {
  CHECK(CorrelationIdFor("abc-123_XYZ") == "abc-123_XYZ");
  for (const std::string& bad :
       {std::string(""), std::string("has space"), std::string(129, 'a'),
        std::string("tab\there"), std::string("caf\xc3\xa9")}) {
    std::string id = CorrelationIdFor(bad);
    CHECK(id != bad);
    CHECK(id.size() == 32);
  }
  CHECK(CorrelationIdFor(std::string(128, 'a')) == std::string(128, 'a'));
}

}  // namespace
}  // namespace iot2mqtt::gateway
