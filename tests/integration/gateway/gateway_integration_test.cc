// The gateway in-process on 127.0.0.1:0 in front of an in-process config
// service (a fake we control, and the real one over a temporary directory),
// driven over real sockets.

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "catch2/catch.hpp"
#include "gateway/gateway.h"
#include "iot2mqtt/config/v1/config_service.grpc.pb.h"
#include "prometheus/counter.h"
#include "prometheus/registry.h"
#include "rapidjson/document.h"
#include "services/common/grpc_status.h"
#include "services/common/rpc_scope.h"
#include "services/common/server_runner.h"
#include "services/common/status.h"
#include "services/config/config_service.h"
#include "services/config/config_stack.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::gateway {
namespace {

using config::v1::ConfigService;
using testing::HttpRequest;
using testing::HttpResponse;
using testing::RawExchange;
using testing::StatusOfRaw;

constexpr char kMac[] = "a4-cf-12-34-56-78";
// Exact numbers, unicode and key order that must survive the gateway.
constexpr char kContent[] =
    R"({"deviceName":"Kitchen","z":1,"big":12345678901234567890,)"
    R"("small":0.1,"huge":1e300,"text":"h\u00e9llo \u2603","a":[true,null]})";
constexpr char kContentCompact[] =
    R"({"deviceName":"Kitchen","z":1,"big":12345678901234567890,)"
    "\"small\":0.1,\"huge\":1e300,\"text\":\"h\xc3\xa9llo \xe2\x98\x83\","
    R"("a":[true,null]})";

// A ConfigService with canned answers that records what it was asked.
class FakeConfigService final : public ConfigService::CallbackService {
 public:
  ~FakeConfigService() override {
    ReleaseSlowCalls();
    for (std::thread& thread : threads_) thread.join();
  }

  void ReleaseSlowCalls() {
    if (!release_.HasBeenNotified()) release_.Notify();
  }

  grpc::ServerUnaryReactor* ListDeviceConfigs(
      grpc::CallbackServerContext* context,
      const config::v1::ListDeviceConfigsRequest*,
      config::v1::ListDeviceConfigsResponse* response) override {
    Record(context, "List", "", "");
    auto* first = response->add_configs();
    first->set_mac_address(kMac);
    first->set_device_name("Kitchen");
    first->set_enable_ota(true);
    response->add_configs()->set_mac_address("a4-cf-12-34-56-79");
    response->set_count(2);
    return Finish(context, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* GetDeviceConfig(
      grpc::CallbackServerContext* context,
      const config::v1::GetDeviceConfigRequest* request,
      config::v1::GetDeviceConfigResponse* response) override {
    Record(context, "Get", request->mac_address(), "");
    if (request->mac_address() == "slow") {
      grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
      absl::MutexLock lock(&mu_);
      threads_.emplace_back([this, reactor] {
        release_.WaitForNotificationWithTimeout(absl::Seconds(3));
        reactor->Finish(grpc::Status::OK);
      });
      return reactor;
    }
    if (request->mac_address() != kMac) {
      return Finish(context,
                    common::ToGrpcStatus(common::WithReason(
                        absl::NotFoundError(absl::StrCat(
                            "no device config for ", request->mac_address())),
                        "DEVICE_CONFIG_NOT_FOUND",
                        {{"mac_address", request->mac_address()}})));
    }
    config::v1::DeviceConfig* config = response->mutable_device_config();
    config->set_mac_address(kMac);
    config->set_device_name("Kitchen");
    config->set_content(kContent);
    return Finish(context, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* UpdateDeviceConfig(
      grpc::CallbackServerContext* context,
      const config::v1::UpdateDeviceConfigRequest* request,
      config::v1::UpdateDeviceConfigResponse* response) override {
    Record(context, "Update", request->mac_address(), request->content());
    config::v1::DeviceConfig* config = response->mutable_device_config();
    config->set_mac_address(request->mac_address());
    config->set_content(request->content());
    return Finish(context, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* DeleteDeviceConfig(
      grpc::CallbackServerContext* context,
      const config::v1::DeleteDeviceConfigRequest* request,
      config::v1::DeleteDeviceConfigResponse*) override {
    Record(context, "Delete", request->mac_address(), "");
    return Finish(context, grpc::Status::OK);
  }

  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  std::string last(const std::string& what) {
    absl::MutexLock lock(&mu_);
    if (what == "rpc") return last_rpc_;
    if (what == "mac") return last_mac_;
    if (what == "content") return last_content_;
    return last_correlation_id_;
  }

 private:
  static grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* context,
                                          const grpc::Status& status) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(status);
    return reactor;
  }

  void Record(grpc::CallbackServerContext* context, const std::string& rpc,
              const std::string& mac, const std::string& content) {
    absl::MutexLock lock(&mu_);
    ++calls_;
    last_rpc_ = rpc;
    last_mac_ = mac;
    last_content_ = content;
    last_correlation_id_ = common::CorrelationIdFrom(*context);
  }

  absl::Mutex mu_;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_rpc_ ABSL_GUARDED_BY(mu_);
  std::string last_mac_ ABSL_GUARDED_BY(mu_);
  std::string last_content_ ABSL_GUARDED_BY(mu_);
  std::string last_correlation_id_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
  absl::Notification release_;
};

// A config backend (fake or given) behind a GrpcServer, and the gateway in
// front of it.
struct StackOptions {
  std::function<void(GatewayOptions&)> tweak;
  bool backend_up = true;
  grpc::Service* service = nullptr;  // Default: the fake.
  common::HealthProbe probe;         // Default: Stack::SetHealth's verdict.
};

StackOptions Tweaked(std::function<void(GatewayOptions&)> tweak) {
  StackOptions options;
  options.tweak = std::move(tweak);
  return options;
}

class Stack {
 public:
  using Options = StackOptions;

  Stack() : Stack(StackOptions()) {}
  explicit Stack(StackOptions options) {
    registry_ = std::make_shared<prometheus::Registry>();
    prometheus::BuildCounter()
        .Name("fake_config_things_total")
        .Help("A backend metric")
        .Register(*registry_)
        .Add({})
        .Increment(3);
    int grpc_port = testing::FreePort();
    if (options.backend_up) {
      common::ServerOptions server_options;
      server_options.service_name = "config";
      server_options.listen_address = "127.0.0.1:0";
      server_options.registry = registry_;
      server_options.health_probe = options.probe ? options.probe : [this] {
        common::HealthVerdict verdict;
        absl::MutexLock lock(&mu_);
        verdict.healthy = healthy_;
        verdict.reason = reason_;
        verdict.details = {{"device_configs_dir", "/data/configs"}};
        return verdict;
      };
      grpc_ = std::make_unique<common::GrpcServer>(std::move(server_options));
      REQUIRE(grpc_
                  ->Start({options.service != nullptr
                               ? options.service
                               : static_cast<grpc::Service*>(&fake_)})
                  .ok());
      grpc_port = grpc_->port();
    }
    GatewayOptions gateway_options;
    gateway_options.listen_address = "127.0.0.1:0";
    gateway_options.backends = {{"config",
                                 {"iot2mqtt.config.v1.ConfigService"},
                                 absl::StrCat("127.0.0.1:", grpc_port)}};
    gateway_options.threads = 2;
    gateway_options.max_body_bytes = 4096;
    gateway_options.max_header_bytes = 2048;
    gateway_options.read_timeout = absl::Seconds(1);
    gateway_options.backend_deadline = absl::Seconds(5);
    gateway_options.shutdown_grace = absl::Seconds(2);
    // These tests are about transcoding; auth has its own tests.
    gateway_options.auth_mode = AuthMode::kDisabled;
    if (options.tweak) options.tweak(gateway_options);
    absl::StatusOr<std::unique_ptr<Gateway>> gateway =
        Gateway::Create(std::move(gateway_options));
    REQUIRE(gateway.ok());
    gateway_ = *std::move(gateway);
    REQUIRE(gateway_->Start().ok());
  }

  ~Stack() {
    fake_.ReleaseSlowCalls();
    gateway_.reset();
    if (grpc_) grpc_->Shutdown();
  }

  int port() const { return gateway_->port(); }
  FakeConfigService& fake() { return fake_; }
  void SetHealth(bool healthy, const std::string& reason) {
    absl::MutexLock lock(&mu_);
    healthy_ = healthy;
    reason_ = reason;
  }

  HttpResponse Request(
      const std::string& method, const std::string& target,
      const std::string& body = "",
      const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    absl::StatusOr<HttpResponse> response =
        HttpRequest(port(), method, target, body, headers);
    INFO(response.status().ToString());
    REQUIRE(response.ok());
    return *std::move(response);
  }

  std::string Raw(const std::string& bytes,
                  absl::Duration timeout = absl::Seconds(5)) {
    absl::StatusOr<std::string> raw = RawExchange(port(), bytes, timeout);
    REQUIRE(raw.ok());
    return *std::move(raw);
  }

 private:
  absl::Mutex mu_;
  bool healthy_ ABSL_GUARDED_BY(mu_) = true;
  std::string reason_ ABSL_GUARDED_BY(mu_);
  FakeConfigService fake_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<common::GrpcServer> grpc_;
  std::unique_ptr<Gateway> gateway_;
};

rapidjson::Document Json(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.c_str(), text.size());
  INFO(text);
  REQUIRE_FALSE(doc.HasParseError());
  return doc;
}

std::string Str(const rapidjson::Value& value) {
  REQUIRE(value.IsString());
  return std::string(value.GetString(), value.GetStringLength());
}

// The unified error body, checked against the response's headers.
void CheckErrorBody(const HttpResponse& response, int status,
                    const std::string& code) {
  INFO(response.body);
  CHECK(response.status == status);
  CHECK(response.Header("content-type") == "application/json");
  rapidjson::Document doc = Json(response.body);
  REQUIRE(doc.IsObject());
  CHECK(Str(doc["code"]) == code);
  CHECK(Str(doc["error"]) == Str(doc["detail"]));
  CHECK_FALSE(Str(doc["error"]).empty());
  CHECK(doc.HasMember("details"));
  CHECK(Str(doc["correlationId"]) == response.Header("x-correlation-id"));
  CHECK_FALSE(response.Header("x-correlation-id").empty());
}

std::string RawErrorCode(const std::string& raw) {
  size_t body = raw.find("\r\n\r\n");
  REQUIRE(body != std::string::npos);
  rapidjson::Document doc = Json(raw.substr(body + 4));
  return Str(doc["code"]);
}

TEST_CASE("config routes are transcoded to the service and back") {
  Stack stack;
  HttpResponse list = stack.Request("GET", "/api/configs");
  CHECK(list.status == 200);
  CHECK(list.Header("content-type") == "application/json");
  CHECK(
      list.body ==
      R"({"configs":[{"mac_address":"a4-cf-12-34-56-78","device_name":"Kitchen",)"
      R"("device_entity_id":null,"enable_ota":true},{"mac_address":"a4-cf-12-34-56-79",)"
      R"("device_name":null,"device_entity_id":null,"enable_ota":null}],"count":2})");

  HttpResponse get = stack.Request("GET", absl::StrCat("/api/configs/", kMac));
  CHECK(get.status == 200);
  CHECK(get.body ==
        absl::StrCat(
            R"({"mac_address":"a4-cf-12-34-56-78","device_name":"Kitchen",)"
            R"("device_entity_id":null,"enable_ota":null,"content":)",
            kContent, "}"));

  HttpResponse put =
      stack.Request("PUT", absl::StrCat("/api/configs/", kMac),
                    absl::StrCat(R"({"content":)", kContent, "}"));
  CHECK(put.status == 200);
  CHECK(stack.fake().last("rpc") == "Update");
  CHECK(stack.fake().last("mac") == kMac);
  CHECK(stack.fake().last("content") == kContentCompact);
  rapidjson::Document put_doc = Json(put.body);
  CHECK(Str(put_doc["mac_address"]) == kMac);
  CHECK(put.body.find(absl::StrCat(R"("content":)", kContentCompact)) !=
        std::string::npos);

  HttpResponse del =
      stack.Request("DELETE", absl::StrCat("/api/configs/", kMac));
  CHECK(del.status == 204);
  CHECK(del.body.empty());
  CHECK(del.Header("content-length").empty());
  CHECK(stack.fake().last("rpc") == "Delete");
}

TEST_CASE("error bodies carry the service's reason and the correlation id") {
  Stack stack;
  HttpResponse missing = stack.Request("GET", "/api/configs/a4-cf-12-34-56-00");
  CheckErrorBody(missing, 404, "DEVICE_CONFIG_NOT_FOUND");
  rapidjson::Document doc = Json(missing.body);
  CHECK(Str(doc["details"]["mac_address"]) == "a4-cf-12-34-56-00");
  // The same id reached the service as gRPC metadata.
  CHECK(stack.fake().last("correlation") == missing.Header("x-correlation-id"));

  HttpResponse given = stack.Request("GET", "/api/configs/a4-cf-12-34-56-00",
                                     "", {{"X-Correlation-ID", "trace-42"}});
  CHECK(given.Header("x-correlation-id") == "trace-42");
  CHECK(Str(Json(given.body)["correlationId"]) == "trace-42");
  CHECK(stack.fake().last("correlation") == "trace-42");

  HttpResponse ok = stack.Request("GET", "/api/configs", "",
                                  {{"X-Correlation-ID", "trace-43"}});
  CHECK(ok.Header("x-correlation-id") == "trace-43");
  CHECK(stack.fake().last("correlation") == "trace-43");

  // Not sane (too long): replaced by a fresh one.
  HttpResponse replaced = stack.Request(
      "GET", "/api/configs", "", {{"X-Correlation-ID", std::string(200, 'x')}});
  CHECK(replaced.Header("x-correlation-id").size() == 32);
  CHECK(stack.fake().last("correlation") ==
        replaced.Header("x-correlation-id"));
}

TEST_CASE("unknown routes are 404, wrong methods 405, bad paths 400") {
  Stack stack;
  CheckErrorBody(stack.Request("GET", "/api/nothing"), 404, "ROUTE_NOT_FOUND");
  CheckErrorBody(stack.Request("GET", "/"), 404, "ROUTE_NOT_FOUND");

  HttpResponse wrong = stack.Request("POST", "/api/configs");
  CheckErrorBody(wrong, 405, "METHOD_NOT_ALLOWED");
  CHECK(wrong.Header("allow") == "GET, OPTIONS");
  HttpResponse wrong_item =
      stack.Request("PATCH", absl::StrCat("/api/configs/", kMac));
  CheckErrorBody(wrong_item, 405, "METHOD_NOT_ALLOWED");
  CHECK(wrong_item.Header("allow") == "DELETE, GET, PUT, OPTIONS");
  HttpResponse options = stack.Request("OPTIONS", "/api/configs");
  CHECK(options.status == 204);
  CHECK(options.Header("allow") == "GET, OPTIONS");

  CheckErrorBody(stack.Request("GET", "/api/configs/%zz"), 400, "INVALID_PATH");
  int calls = stack.fake().calls();
  // %2F stays inside the segment and reaches the service, which judges it.
  CheckErrorBody(stack.Request("GET", "/api/configs/a%2Fb"), 404,
                 "DEVICE_CONFIG_NOT_FOUND");
  CHECK(stack.fake().last("mac") == "a/b");
  CheckErrorBody(stack.Request("GET", "/api/configs/%2e%2e"), 404,
                 "DEVICE_CONFIG_NOT_FOUND");
  CHECK(stack.fake().last("mac") == "..");
  CHECK(stack.fake().calls() == calls + 2);
}

TEST_CASE("bad bodies are 400 before the service is called") {
  Stack stack;
  int calls = stack.fake().calls();
  std::string target = absl::StrCat("/api/configs/", kMac);
  CheckErrorBody(stack.Request("PUT", target, "{\"content\":{\"a\":\"\xff\"}}"),
                 400, "INVALID_JSON");
  CheckErrorBody(stack.Request("PUT", target, "{\"content\":"), 400,
                 "INVALID_JSON");
  CheckErrorBody(stack.Request("PUT", target, R"({"content":{},"extra":1})"),
                 400, "INVALID_REQUEST_BODY");
  CHECK(stack.fake().calls() == calls);
}

TEST_CASE(
    "malformed HTTP gets 400, 431, 413 or 408 and never hurts the server") {
  Stack stack;
  int calls = stack.fake().calls();

  std::string garbage = stack.Raw("GARBAGE\r\n\r\n");
  CHECK(StatusOfRaw(garbage) == 400);
  CHECK(RawErrorCode(garbage) == "MALFORMED_REQUEST");
  CHECK(StatusOfRaw(stack.Raw("GET / HTTP/9.9\r\n\r\n")) == 400);
  CHECK(StatusOfRaw(stack.Raw(std::string(
            "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11))) == 400);

  std::string big_header = stack.Raw(absl::StrCat(
      "GET /api/configs HTTP/1.1\r\nHost: x\r\nX-Big: ", std::string(5000, 'a'),
      "\r\n\r\n"));
  CHECK(StatusOfRaw(big_header) == 431);
  CHECK(RawErrorCode(big_header) == "HEADERS_TOO_LARGE");

  std::string body(10000, ' ');
  std::string big_body = stack.Raw(absl::StrCat(
      "PUT /api/configs/", kMac, " HTTP/1.1\r\nHost: x\r\nContent-Length: ",
      body.size(), "\r\n\r\n", body));
  CHECK(StatusOfRaw(big_body) == 413);
  CHECK(RawErrorCode(big_body) == "PAYLOAD_TOO_LARGE");

  std::string chunk(3000, ' ');
  std::string big_chunked = stack.Raw(
      absl::StrCat("PUT /api/configs/", kMac,
                   " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                   "bb8\r\n", chunk, "\r\nbb8\r\n", chunk, "\r\n0\r\n\r\n"));
  CHECK(StatusOfRaw(big_chunked) == 413);

  // Content-Length promises more than arrives: 408 after the read timeout.
  std::string lying = stack.Raw(absl::StrCat(
      "PUT /api/configs/", kMac,
      " HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"content\":{}}"));
  CHECK(StatusOfRaw(lying) == 408);
  CHECK(RawErrorCode(lying) == "REQUEST_TIMEOUT");

  CHECK(stack.fake().calls() == calls);
  CHECK(stack.Request("GET", "/api/configs").status == 200);
}

TEST_CASE("a slow client does not hold up the others") {
  Stack stack(Tweaked([](GatewayOptions& options) {
    options.threads = 1;
    options.read_timeout = absl::Seconds(3);
  }));
  std::string slow_answer;
  std::thread slow([&] {
    absl::StatusOr<std::string> raw = RawExchange(
        stack.port(),
        "GET /api/configs HTTP/1.1\r\nHost: x\r\nX-Half: ", absl::Seconds(10));
    if (raw.ok()) slow_answer = *raw;
  });
  absl::SleepFor(absl::Milliseconds(200));  // Let the slow client connect.
  absl::Time start = absl::Now();
  for (int i = 0; i < 5; ++i) {
    CHECK(stack.Request("GET", "/api/configs").status == 200);
  }
  CHECK(absl::Now() - start < absl::Seconds(2));
  slow.join();
  CHECK(StatusOfRaw(slow_answer) == 408);
}

TEST_CASE("keep-alive, pipelining and Expect: 100-continue") {
  Stack stack;
  std::string raw = stack.Raw(
      "GET /api/configs HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /api/configs/a4-cf-12-34-56-00 HTTP/1.1\r\nHost: x\r\n"
      "Connection: close\r\n\r\n");
  CHECK(raw.find("HTTP/1.1 200 OK") != std::string::npos);
  CHECK(raw.find("HTTP/1.1 404 Not Found") != std::string::npos);
  CHECK(raw.find("HTTP/1.1 200 OK") < raw.find("HTTP/1.1 404 Not Found"));

  std::string body = absl::StrCat(R"({"content":)", kContent, "}");
  std::string expect = stack.Raw(absl::StrCat(
      "PUT /api/configs/", kMac,
      " HTTP/1.1\r\nHost: x\r\nConnection: close\r\nExpect: 100-continue\r\n"
      "Content-Length: ",
      body.size(), "\r\n\r\n", body));
  CHECK(expect.rfind("HTTP/1.1 100 Continue\r\n\r\n", 0) == 0);
  CHECK(expect.find("HTTP/1.1 200 OK") != std::string::npos);

  // HEAD: GET's headers without the body.
  HttpResponse head = stack.Request("HEAD", "/api/configs");
  CHECK(head.status == 200);
  CHECK(head.body.empty());
  CHECK(head.Header("content-length") != "0");
  CHECK_FALSE(head.Header("content-length").empty());

  // absolute-form request targets.
  std::string absolute = stack.Raw(
      "GET http://gateway.local/api/configs?x=1 HTTP/1.1\r\nHost: "
      "gateway.local\r\n"
      "Connection: close\r\n\r\n");
  CHECK(StatusOfRaw(absolute) == 200);
}

TEST_CASE("an unreachable backend is 503 BACKEND_UNAVAILABLE") {
  StackOptions down;
  down.backend_up = false;
  Stack stack(down);
  HttpResponse response = stack.Request("GET", "/api/configs");
  CheckErrorBody(response, 503, "BACKEND_UNAVAILABLE");
  CHECK(Str(Json(response.body)["details"]["service"]) == "config");

  HttpResponse health = stack.Request("GET", "/api/health");
  CHECK(health.status == 503);
  rapidjson::Document doc = Json(health.body);
  CHECK(Str(doc["status"]) == "unhealthy");
  CHECK(absl::StartsWith(Str(doc["reason"]), "config: unreachable ("));
  CHECK_FALSE(doc["services"]["config"]["healthy"].GetBool());

  HttpResponse metrics = stack.Request("GET", "/metrics");
  CHECK(metrics.status == 200);
  CHECK(metrics.body.find(
            "iot_gateway_backend_errors_total{service=\"config\"}") !=
        std::string::npos);
}

TEST_CASE("a backend past its deadline is 504") {
  Stack stack(Tweaked([](GatewayOptions& options) {
    options.backend_deadline = absl::Milliseconds(300);
  }));
  absl::Time start = absl::Now();
  HttpResponse response = stack.Request("GET", "/api/configs/slow");
  CheckErrorBody(response, 504, "BACKEND_DEADLINE_EXCEEDED");
  CHECK(absl::Now() - start < absl::Seconds(2));
}

TEST_CASE("/api/health reports every backend: 200 and 503") {
  Stack stack;
  HttpResponse healthy = stack.Request("GET", "/api/health");
  CHECK(healthy.status == 200);
  rapidjson::Document doc = Json(healthy.body);
  CHECK(Str(doc["status"]) == "healthy");
  CHECK_FALSE(doc.HasMember("reason"));
  CHECK(doc["services"]["config"]["healthy"].GetBool());
  CHECK(Str(doc["services"]["config"]["service"]) == "config");
  CHECK(Str(doc["services"]["config"]["details"]["device_configs_dir"]) ==
        "/data/configs");

  stack.SetHealth(false, "disk gone");
  HttpResponse unhealthy = stack.Request("GET", "/api/health");
  CHECK(unhealthy.status == 503);
  rapidjson::Document bad = Json(unhealthy.body);
  CHECK(Str(bad["status"]) == "unhealthy");
  CHECK(Str(bad["reason"]) == "config: disk gone");
  CHECK_FALSE(bad["services"]["config"]["healthy"].GetBool());

  CheckErrorBody(stack.Request("POST", "/api/health"), 405,
                 "METHOD_NOT_ALLOWED");
}

TEST_CASE("/metrics has the gateway's metrics and the backend's") {
  Stack stack;
  REQUIRE(stack.Request("GET", absl::StrCat("/api/configs/", kMac)).status ==
          200);
  stack.Request("GET", "/nowhere");
  HttpResponse metrics = stack.Request("GET", "/metrics");
  CHECK(metrics.status == 200);
  CHECK(absl::StartsWith(metrics.Header("content-type"),
                         "text/plain; version=0.0.4"));
  for (
      const char* text :
      {"# TYPE iot_http_requests_total counter",
       R"(iot_http_requests_total{method="GET",route="/api/configs/{mac_address}",status="200"} 1)",
       R"(iot_http_requests_total{method="GET",route="unmatched",status="404"} 1)",
       "iot_http_request_duration_seconds_bucket{",
       "fake_config_things_total 3"}) {
    INFO(text);
    CHECK(metrics.body.find(text) != std::string::npos);
  }
}

TEST_CASE("CORS: allowed origins get headers and preflights, others nothing") {
  Stack stack(Tweaked([](GatewayOptions& options) {
    options.cors_origins = {"http://ui.example"};
  }));
  HttpResponse preflight = stack.Request(
      "OPTIONS", absl::StrCat("/api/configs/", kMac), "",
      {{"Origin", "http://ui.example"},
       {"Access-Control-Request-Method", "PUT"},
       {"Access-Control-Request-Headers", "content-type, x-correlation-id"}});
  CHECK(preflight.status == 204);
  CHECK(preflight.body.empty());
  CHECK(preflight.Header("access-control-allow-origin") == "http://ui.example");
  CHECK(preflight.Header("vary") == "Origin");
  CHECK(preflight.Header("access-control-allow-methods").find("PUT") !=
        std::string::npos);
  CHECK(preflight.Header("access-control-allow-headers")
            .find("X-Correlation-ID") != std::string::npos);
  CHECK(preflight.Header("access-control-allow-headers").find("Content-Type") !=
        std::string::npos);

  HttpResponse allowed = stack.Request("GET", "/api/configs", "",
                                       {{"Origin", "http://ui.example"}});
  CHECK(allowed.status == 200);
  CHECK(allowed.Header("access-control-allow-origin") == "http://ui.example");
  CHECK(allowed.Header("access-control-expose-headers") == "X-Correlation-ID");
  HttpResponse error = stack.Request("GET", "/api/nothing", "",
                                     {{"Origin", "http://ui.example"}});
  CHECK(error.Header("access-control-allow-origin") == "http://ui.example");

  HttpResponse other = stack.Request("GET", "/api/configs", "",
                                     {{"Origin", "http://evil.example"}});
  CHECK(other.status == 200);
  CHECK(other.Header("access-control-allow-origin").empty());
  HttpResponse other_preflight =
      stack.Request("OPTIONS", "/api/configs", "",
                    {{"Origin", "http://evil.example"},
                     {"Access-Control-Request-Method", "GET"}});
  CHECK(other_preflight.Header("access-control-allow-origin").empty());
}

TEST_CASE("API docs: HTML and OpenAPI") {
  Stack stack;
  HttpResponse html = stack.Request("GET", "/api/docs");
  CHECK(html.status == 200);
  CHECK(html.Header("content-type") == "text/html; charset=utf-8");
  CHECK(html.body.find("/api/configs/{mac_address}") != std::string::npos);
  HttpResponse openapi = stack.Request("GET", "/api/docs/openapi.json");
  CHECK(openapi.status == 200);
  rapidjson::Document doc = Json(openapi.body);
  CHECK(doc["paths"].HasMember("/api/configs/{mac_address}"));
  CHECK(doc["components"]["schemas"].HasMember("Error"));
}

TEST_CASE("in front of the real config service") {
  testing::TempDir dir;
  testing::TempDir data;
  config::ConfigStackOptions stack_options;
  stack_options.data_dir = data.path();
  stack_options.esp32_dir = dir.path();
  absl::StatusOr<std::unique_ptr<config::ConfigStack>> config_stack =
      config::ConfigStack::Open(stack_options);
  REQUIRE(config_stack.ok());
  config::ConfigStack& config = **config_stack;
  StackOptions options;
  options.service = &config.service();
  options.probe = [&config] {
    return config::CheckConfigHealth(config.device_configs());
  };
  Stack stack(options);
  std::string target = absl::StrCat("/api/configs/", kMac);

  HttpResponse put = stack.Request(
      "PUT", target, absl::StrCat(R"({"content":)", kContent, "}"));
  INFO(put.body);
  REQUIRE(put.status == 200);
  rapidjson::Document saved = Json(put.body);
  CHECK(Str(saved["device_name"]) == "Kitchen");

  HttpResponse get = stack.Request("GET", target);
  CHECK(get.status == 200);
  INFO(get.body);
  // Numbers, unicode and key order as sent.
  for (const char* text : {"12345678901234567890", "\"small\":0.1", "1e300",
                           "\"text\":\"h\xc3\xa9llo \xe2\x98\x83\""}) {
    CHECK(get.body.find(text) != std::string::npos);
  }
  CHECK(get.body.find("\"z\":1") < get.body.find("\"big\""));

  HttpResponse list = stack.Request("GET", "/api/configs");
  CHECK(list.status == 200);
  CHECK(list.body.find(
            R"("mac_address":"a4-cf-12-34-56-78","device_name":"Kitchen")") !=
        std::string::npos);

  CheckErrorBody(stack.Request("GET", "/api/configs/NOT-A-MAC"), 400,
                 "INVALID_MAC_ADDRESS");
  CheckErrorBody(stack.Request("GET", "/api/configs/a4-cf-12-34-56-78%2F.."),
                 400, "INVALID_MAC_ADDRESS");
  CheckErrorBody(stack.Request("PUT", target, R"({"content":"text"})"), 400,
                 "INVALID_CONTENT");

  HttpResponse del = stack.Request("DELETE", target);
  CHECK(del.status == 204);
  CHECK(del.body.empty());
  CheckErrorBody(stack.Request("GET", target), 404, "DEVICE_CONFIG_NOT_FOUND");

  HttpResponse health = stack.Request("GET", "/api/health");
  CHECK(health.status == 200);
  CHECK(Json(health.body)["services"]["config"]["details"].HasMember(
      "device_configs_dir"));
}

}  // namespace
}  // namespace iot2mqtt::gateway
