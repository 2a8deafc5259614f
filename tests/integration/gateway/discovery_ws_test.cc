// The discovery WebSockets of the gateway (`/api/discovery/ws` and
// `/api/discovery/{session_id}`), in-process on loopback in front of a fake
// DiscoveryService (and a fake ConfigService that only checks tokens):
// which RPC each path reaches, one text frame per message, the close codes,
// upstream's frame for an unknown session, and auth.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "catch2/catch.hpp"
#include "gateway/gateway.h"
#include "gateway/transcoder.h"
#include "grpcpp/grpcpp.h"
#include "iot2mqtt/config/v1/config_service.grpc.pb.h"
#include "iot2mqtt/discovery/v1/discovery_service.grpc.pb.h"
#include "rapidjson/document.h"
#include "services/common/grpc_status.h"
#include "services/common/status.h"
#include "tests/integration/gateway/ws_client.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::gateway {
namespace {

namespace discovery = ::iot2mqtt::discovery::v1;
using ::iot2mqtt::testing::HttpRequest;
using ::iot2mqtt::testing::WaitFor;
using ::iot2mqtt::testing::WsClient;

constexpr char kToken[] = "good-token";
constexpr char kKnownSession[] = "4f1c2b7e-session";

discovery::DiscoverySession Session(const std::string& status, int progress,
                                    bool with_device) {
  discovery::DiscoverySession session;
  session.set_session_id(kKnownSession);
  session.set_integration("yeelight");
  session.set_status(status);
  session.set_progress(progress);
  session.set_timeout(3);
  session.set_started_at("2024-05-01T10:00:00Z");
  if (with_device) {
    config::v1::DiscoveredDevice* device = session.add_devices();
    device->set_id("yeelight_0x1");
    device->set_name("Bulb");
    device->set_integration("yeelight");
    device->set_ip("192.0.2.7");
    device->set_port(55443);
  }
  if (status != "running") session.set_finished_at("2024-05-01T10:00:03Z");
  return session;
}

discovery::DevicesSnapshot Snapshot(int devices, const std::string& last_scan) {
  discovery::DevicesSnapshot snapshot;
  for (int i = 0; i < devices; ++i) {
    config::v1::DiscoveredDevice* device = snapshot.add_devices();
    device->set_id(absl::StrCat("yeelight_0x", i));
    device->set_integration("yeelight");
    device->set_added(i == 0);
  }
  snapshot.set_last_scan(last_scan);
  return snapshot;
}

// WatchDevices: two snapshots, then open until the client goes. WatchSession:
// the known session's three states, then the end; any other id is
// SESSION_NOT_FOUND. Records every call.
class FakeDiscovery final : public discovery::DiscoveryService::Service {
 public:
  grpc::Status WatchDevices(
      grpc::ServerContext* context, const discovery::WatchDevicesRequest*,
      grpc::ServerWriter<discovery::DevicesSnapshot>* writer) override {
    {
      absl::MutexLock lock(&mu_);
      ++watch_devices_;
    }
    writer->Write(Snapshot(1, ""));
    writer->Write(Snapshot(2, "2024-05-01T10:00:03Z"));
    // A live feed: it ends when the client does (polled; this is the fake's
    // own wait, not the test's synchronisation).
    absl::Time give_up = absl::Now() + absl::Seconds(20);
    while (!context->IsCancelled() && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    absl::MutexLock lock(&mu_);
    devices_cancelled_ = context->IsCancelled();
    return grpc::Status::CANCELLED;
  }

  grpc::Status WatchSession(
      grpc::ServerContext*, const discovery::SessionRequest* request,
      grpc::ServerWriter<discovery::DiscoverySession>* writer) override {
    {
      absl::MutexLock lock(&mu_);
      watched_sessions_.push_back(request->session_id());
    }
    if (request->session_id() != kKnownSession) {
      return common::ToGrpcStatus(common::WithReason(
          absl::NotFoundError("Invalid session ID"), "SESSION_NOT_FOUND",
          {{"session_id", request->session_id()}}));
    }
    writer->Write(Session("running", 0, false));
    writer->Write(Session("running", 50, true));
    writer->Write(Session("completed", 100, true));
    return grpc::Status::OK;
  }

  grpc::Status GetStatus(grpc::ServerContext*,
                         const discovery::GetStatusRequest*,
                         discovery::GetStatusResponse* response) override {
    response->set_status("idle");
    response->set_total_devices(2);
    return grpc::Status::OK;
  }

  int watch_devices() {
    absl::MutexLock lock(&mu_);
    return watch_devices_;
  }
  bool devices_cancelled() {
    absl::MutexLock lock(&mu_);
    return devices_cancelled_;
  }
  std::vector<std::string> watched_sessions() {
    absl::MutexLock lock(&mu_);
    return watched_sessions_;
  }

 private:
  absl::Mutex mu_;
  int watch_devices_ ABSL_GUARDED_BY(mu_) = 0;
  bool devices_cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> watched_sessions_ ABSL_GUARDED_BY(mu_);
};

// Accepts kToken only.
class FakeAuth final : public config::v1::ConfigService::Service {
 public:
  grpc::Status VerifyToken(grpc::ServerContext*,
                           const config::v1::VerifyTokenRequest* request,
                           config::v1::VerifyTokenResponse* response) override {
    if (request->token() != kToken) {
      return common::ToGrpcStatus(common::WithReason(
          absl::UnauthenticatedError("Invalid or expired token"),
          "INVALID_TOKEN"));
    }
    response->set_subject("user");
    response->mutable_expires_at()->set_seconds(
        absl::ToUnixSeconds(absl::Now() + absl::Hours(1)));
    return grpc::Status::OK;
  }
};

struct StackOptions {
  AuthMode auth_mode = AuthMode::kDisabled;
  bool discovery_backend = true;
  // Where the gateway looks for the discovery service; default the fake.
  std::string discovery_address = {};
};

// The fakes behind one gRPC server, the gateway in front.
class Stack {
 public:
  explicit Stack(StackOptions options = StackOptions()) {
    grpc::ServerBuilder builder;
    int grpc_port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &grpc_port);
    builder.RegisterService(&discovery_);
    builder.RegisterService(&auth_);
    grpc_ = builder.BuildAndStart();
    REQUIRE(grpc_ != nullptr);
    const std::string address = absl::StrCat("127.0.0.1:", grpc_port);
    GatewayOptions gateway_options;
    gateway_options.listen_address = "127.0.0.1:0";
    gateway_options.backends = {
        {"config", {"iot2mqtt.config.v1.ConfigService"}, address}};
    if (options.discovery_backend) {
      gateway_options.backends.push_back(
          {"discovery",
           {"iot2mqtt.discovery.v1.DiscoveryService"},
           options.discovery_address.empty() ? address
                                             : options.discovery_address});
    }
    gateway_options.auth_mode = options.auth_mode;
    gateway_options.shutdown_grace = absl::Seconds(2);
    absl::StatusOr<std::unique_ptr<Gateway>> gateway =
        Gateway::Create(std::move(gateway_options));
    REQUIRE(gateway.ok());
    gateway_ = *std::move(gateway);
    REQUIRE(gateway_->Start().ok());
  }

  ~Stack() {
    gateway_.reset();
    grpc_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  }

  int port() const { return gateway_->port(); }
  FakeDiscovery& discovery() { return discovery_; }
  Gateway& gateway() { return *gateway_; }

 private:
  FakeDiscovery discovery_;
  FakeAuth auth_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<Gateway> gateway_;
};

rapidjson::Document Json(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.c_str(), text.size());
  INFO(text);
  REQUIRE_FALSE(doc.HasParseError());
  REQUIRE(doc.IsObject());
  return doc;
}

std::string Str(const rapidjson::Value& value) {
  REQUIRE(value.IsString());
  return std::string(value.GetString(), value.GetStringLength());
}

TEST_CASE("/api/discovery/ws is the device feed, not a session") {
  Stack stack;
  WsClient client(stack.port());
  REQUIRE(client.Open("/api/discovery/ws") == 101);
  // One frame per snapshot: upstream's discovered_devices.json shape.
  std::optional<std::string> first = client.Read();
  REQUIRE(first);
  CHECK(*first == MessageToJson(Snapshot(1, "")));
  rapidjson::Document doc = Json(*first);
  REQUIRE(doc["devices"].IsArray());
  CHECK(doc["devices"].Size() == 1);
  CHECK(Str(doc["devices"][0]["id"]) == "yeelight_0x0");
  CHECK(doc["devices"][0]["added"].GetBool());
  CHECK(Str(doc["last_scan"]).empty());
  std::optional<std::string> second = client.Read();
  REQUIRE(second);
  doc = Json(*second);
  CHECK(doc["devices"].Size() == 2);
  CHECK(Str(doc["last_scan"]) == "2024-05-01T10:00:03Z");

  // WatchDevices answered; WatchSession was never asked about "ws".
  CHECK(stack.discovery().watch_devices() == 1);
  CHECK(stack.discovery().watched_sessions().empty());

  // The feed stays open; closing the socket ends the backend call.
  CHECK_FALSE(client.Read(absl::Milliseconds(300)));
  CHECK(client.timed_out());
  REQUIRE(WaitFor([&] { return stack.discovery().devices_cancelled(); }));
  CHECK(WaitFor([&] { return stack.gateway().calls_in_progress() == 0; }));
}

TEST_CASE("a session socket sends each state, then closes 1000") {
  Stack stack;
  WsClient client(stack.port());
  REQUIRE(client.Open(absl::StrCat("/api/discovery/", kKnownSession)) == 101);
  std::vector<std::string> frames;
  while (std::optional<std::string> frame = client.Read()) {
    frames.push_back(*frame);
  }
  CHECK(client.close_code() == 1000);
  REQUIRE(frames.size() == 3);
  std::vector<std::string> statuses;
  std::vector<int> progress;
  for (const std::string& frame : frames) {
    rapidjson::Document doc = Json(frame);
    CHECK(Str(doc["session_id"]) == kKnownSession);
    statuses.push_back(Str(doc["status"]));
    progress.push_back(doc["progress"].GetInt());
  }
  CHECK(statuses ==
        std::vector<std::string>{"running", "running", "completed"});
  CHECK(progress == std::vector<int>{0, 50, 100});
  rapidjson::Document last = Json(frames.back());
  REQUIRE(last["devices"].IsArray());
  REQUIRE(last["devices"].Size() == 1);
  CHECK(Str(last["devices"][0]["id"]) == "yeelight_0x1");
  CHECK(last["devices"][0]["port"].GetInt() == 55443);
  REQUIRE(last["logs"].IsArray());
  CHECK(frames.back() == MessageToJson(Session("completed", 100, true)));
  CHECK(stack.discovery().watched_sessions() ==
        std::vector<std::string>{kKnownSession});
  CHECK(stack.discovery().watch_devices() == 0);
}

TEST_CASE("an unknown session gets upstream's error frame, then 1008") {
  Stack stack;
  WsClient client(stack.port());
  REQUIRE(client.Open("/api/discovery/no-such-session") == 101);
  std::optional<std::string> frame = client.Read();
  REQUIRE(frame);
  rapidjson::Document doc = Json(*frame);
  CHECK(Str(doc["error"]) == "Invalid session ID");
  CHECK(Str(doc["type"]) == "error");
  CHECK(Str(doc["code"]) == "SESSION_NOT_FOUND");
  CHECK(Str(doc["message"]) == "Invalid session ID");
  CHECK_FALSE(client.Read());
  CHECK(client.close_code() == 1008);
  CHECK(client.close_reason() == "Invalid session ID");
  CHECK(stack.discovery().watched_sessions() ==
        std::vector<std::string>{"no-such-session"});
}

TEST_CASE("the session id is the decoded path segment") {
  Stack stack;
  WsClient client(stack.port());
  REQUIRE(client.Open("/api/discovery/4f1c2b7e%2Dsession") == 101);
  while (client.Read()) {
  }
  CHECK(client.close_code() == 1000);
  CHECK(stack.discovery().watched_sessions() ==
        std::vector<std::string>{kKnownSession});
}

TEST_CASE("discovery sockets take the token in the query; REST is unchanged") {
  Stack stack(StackOptions{AuthMode::kRequired, true});
  {
    // No token: refused before the upgrade, like every stream.
    WsClient client(stack.port());
    CHECK(client.Open("/api/discovery/ws") == 401);
    WsClient wrong(stack.port());
    CHECK(wrong.Open("/api/discovery/ws?token=wrong") == 401);
  }
  {
    WsClient client(stack.port());
    REQUIRE(client.Open(absl::StrCat("/api/discovery/ws?token=", kToken)) ==
            101);
    REQUIRE(client.Read());
  }
  {
    // An upgrade on a REST route's path is a session socket (as upstream).
    WsClient client(stack.port());
    REQUIRE(client.Open(absl::StrCat("/api/discovery/status?token=", kToken)) ==
            101);
    std::optional<std::string> frame = client.Read();
    REQUIRE(frame);
    CHECK(Str(Json(*frame)["error"]) == "Invalid session ID");
    CHECK_FALSE(client.Read());
    CHECK(client.close_code() == 1008);
  }
  // Plain requests go through the route table: GetStatus with a header
  // token; a query token is no credential for a unary route.
  absl::StatusOr<testing::HttpResponse> status =
      HttpRequest(stack.port(), "GET", "/api/discovery/status", "",
                  {{"Authorization", absl::StrCat("Bearer ", kToken)}});
  REQUIRE(status.ok());
  CHECK(status->status == 200);
  CHECK(Str(Json(status->body)["status"]) == "idle");
  status = HttpRequest(stack.port(), "GET",
                       absl::StrCat("/api/discovery/status?token=", kToken));
  REQUIRE(status.ok());
  CHECK(status->status == 401);
  // Without an upgrade, /api/discovery/ws is no route.
  absl::StatusOr<testing::HttpResponse> plain =
      HttpRequest(stack.port(), "GET", "/api/discovery/ws", "",
                  {{"Authorization", absl::StrCat("Bearer ", kToken)}});
  REQUIRE(plain.ok());
  CHECK(plain->status == 404);
  CHECK(Str(Json(plain->body)["code"]) == "ROUTE_NOT_FOUND");
  CHECK(stack.discovery().watched_sessions() ==
        std::vector<std::string>{"status"});
}

TEST_CASE("an unreachable discovery service: an error frame, then 1011") {
  StackOptions options;
  options.discovery_address = absl::StrCat("127.0.0.1:", testing::FreePort());
  Stack stack(options);
  for (const char* path : {"/api/discovery/ws", "/api/discovery/abc"}) {
    INFO(path);
    WsClient client(stack.port());
    REQUIRE(client.Open(path) == 101);
    std::optional<std::string> frame = client.Read();
    REQUIRE(frame);
    rapidjson::Document doc = Json(*frame);
    CHECK(Str(doc["type"]) == "error");
    CHECK(Str(doc["code"]) == "BACKEND_UNAVAILABLE");
    CHECK_FALSE(Str(doc["error"]).empty());
    CHECK(Str(doc["message"]) == Str(doc["error"]));
    CHECK_FALSE(client.Read());
    CHECK(client.close_code() == 1011);
  }
}

TEST_CASE("without a discovery backend the sockets answer 501") {
  Stack stack(StackOptions{AuthMode::kDisabled, false});
  WsClient client(stack.port());
  CHECK(client.Open("/api/discovery/ws") == 501);
  WsClient session(stack.port());
  CHECK(session.Open("/api/discovery/abc") == 501);
}

}  // namespace
}  // namespace iot2mqtt::gateway
