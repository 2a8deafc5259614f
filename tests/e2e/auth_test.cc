// End to end: authentication of the web API, the access key's life (first
// login, WEB_ACCESS_KEY, `iot2mqtt-config set-access-key`), login rate
// limiting, secrets kept out of logs, files and responses, and path traversal
// on every name-bearing route. The real iot2mqtt-config and iot2mqtt-gateway
// binaries run on free loopback ports with their data in a TempDir.

#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "catch2/catch.hpp"
#include "grpcpp/grpcpp.h"
#include "iot2mqtt/config/v1/config_service.grpc.pb.h"
#include "rapidjson/document.h"
#include "services/common/grpc_status.h"
#include "services/common/status.h"
#include "tests/e2e/e2e_stack.h"
#include "tests/support/stream_client.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::testing {
namespace {

using e2e::Bearer;
using e2e::CheckErrorBody;
using e2e::CheckUnauthorized;
using e2e::Headers;
using e2e::Parse;
using e2e::Stack;
using e2e::StackOptions;
using e2e::Str;

constexpr char kMac[] = "a4-cf-12-34-56-78";
constexpr char kHidden[] = "***HIDDEN***";

// The bytes of every regular file under `root` (recursively) and the names
// of its directories, by relative path.
std::map<std::string, std::string> Snapshot(const std::string& root,
                                            const std::string& prefix = "") {
  std::map<std::string, std::string> out;
  DIR* dir = opendir(root.c_str());
  if (dir == nullptr) return out;
  while (dirent* entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    std::string path = root + "/" + name;
    std::string relative = prefix + name;
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      out[relative + "/"] = "<dir>";
      for (auto& [k, v] : Snapshot(path, relative + "/")) out[k] = v;
    } else if (S_ISREG(st.st_mode)) {
      std::ifstream in(path, std::ios::binary);
      std::ostringstream bytes;
      bytes << in.rdbuf();
      out[relative] = bytes.str();
    } else {
      out[relative] = "<special>";
    }
  }
  closedir(dir);
  return out;
}

// The data directory without `runtime/`: the orchestrator's state and the
// logs of the connectors it runs change on their own.
std::map<std::string, std::string> StoredData(const std::string& data_dir) {
  std::map<std::string, std::string> out = Snapshot(data_dir);
  for (auto it = out.begin(); it != out.end();) {
    it = absl::StartsWith(it->first, "runtime/") ? out.erase(it)
                                                   : std::next(it);
  }
  return out;
}

// Sends `request` to 127.0.0.1:port and reads until `needle` arrives, the
// peer closes or `timeout` passes; returns what arrived (for streams, which
// never close).
std::string ReadUntil(int port, const std::string& request,
                      const std::string& needle,
                      absl::Duration timeout = absl::Seconds(10)) {
  StreamClient client(port, request);
  client.WaitFor(needle, timeout);
  return client.received();
}

// The reason carried by a gRPC status (google.rpc.ErrorInfo).
std::string ReasonOf(const grpc::Status& status) {
  return common::ReasonOf(common::ToAbslStatus(status));
}

std::unique_ptr<config::v1::ConfigService::Stub> ConfigStub(
    const std::string& target) {
  return config::v1::ConfigService::NewStub(
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
}

void SetDeadline(grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(30));
}

// Routes served without a token.
bool IsPublic(const std::string& method, const std::string& path) {
  if (path == "/api/auth/login") return method == "POST";
  return path == "/api/setup/status" || path == "/api/health" ||
         path == "/metrics" || path == "/api/docs" ||
         path == "/api/docs/openapi.json";
}

struct Endpoint {
  std::string method;  // Upper case.
  std::string target;  // Path variables replaced by valid-looking names.
};

// Every non-public method+path of the OpenAPI document, with its path
// variables filled in.
std::vector<Endpoint> ProtectedEndpoints(const std::string& openapi_json) {
  rapidjson::Document doc = Parse(openapi_json);
  REQUIRE(doc.HasMember("paths"));
  std::vector<Endpoint> out;
  for (auto path = doc["paths"].MemberBegin(); path != doc["paths"].MemberEnd();
       ++path) {
    const std::string templ = path->name.GetString();
    for (auto op = path->value.MemberBegin(); op != path->value.MemberEnd();
         ++op) {
      std::string method = op->name.GetString();
      std::transform(method.begin(), method.end(), method.begin(), ::toupper);
      if (method != "GET" && method != "PUT" && method != "POST" &&
          method != "DELETE" && method != "PATCH") {
        continue;
      }
      if (IsPublic(method, templ)) continue;
      std::string target =
          absl::StrReplaceAll(templ, {{"{mac_address}", kMac},
                                      {"{name}", "demo"},
                                      {"{connector}", "demo"},
                                      {"{instance_id}", "x1"},
                                      {"{device_id}", "lamp"},
                                      {"{id}", "c1"},
                                      {"{integration}", "demo"},
                                      {"{session_id}", "s1"}});
      INFO(templ);
      REQUIRE(target.find('{') == std::string::npos);
      out.push_back({method, target});
    }
  }
  return out;
}

std::string BodyFor(const Endpoint& e) {
  return e.method == "POST" || e.method == "PUT" || e.method == "PATCH" ? "{}"
                                                                        : "";
}

// A token signed by a different installation (its own data dir and secret).
std::string ForeignToken() {
  Stack other({/*access_key=*/"other install key", /*start_gateway=*/false,
               /*gateway_env=*/{}});
  auto stub = ConfigStub(other.config_target());
  grpc::ClientContext context;
  SetDeadline(&context);
  config::v1::LoginRequest request;
  request.set_key("other install key");
  config::v1::LoginResponse response;
  grpc::Status status = stub->Login(&context, request, &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  REQUIRE_FALSE(response.token().empty());
  return response.token();
}

TEST_CASE(
    "Auth: every protected route refuses a missing, malformed or "
    "foreign token",
    "[e2e]") {
  const std::string foreign = ForeignToken();
  Stack stack({"key-1", true, {}});
  HttpResponse spec = stack.Call("GET", "/api/docs/openapi.json");
  REQUIRE(spec.status == 200);
  std::vector<Endpoint> endpoints = ProtectedEndpoints(spec.body);
  // The document lists the routes this test must cover.
  std::set<std::string> covered;
  for (const Endpoint& e : endpoints) covered.insert(e.method + " " + e.target);
  for (const char* expected : {"GET /api/configs",
                               "PUT /api/configs/a4-cf-12-34-56-78",
                               "DELETE /api/configs/a4-cf-12-34-56-78",
                               "GET /api/mqtt/config",
                               "POST /api/mqtt/config",
                               "GET /api/connectors",
                               "GET /api/connectors/available",
                               "GET /api/connectors/demo/setup",
                               "GET /api/integrations",
                               "GET /api/integrations/",
                               "GET /api/integrations/demo/meta",
                               "GET /api/integrations/demo/icon",
                               "GET /api/integrations/demo/setup",
                               "POST /api/integrations/demo/validate",
                               "GET /api/integrations/demo/instances",
                               "GET /api/integrations/instances/x1",
                               "GET /api/instances",
                               "POST /api/instances",
                               "GET /api/instances/demo/x1",
                               "PUT /api/instances/demo/x1",
                               "DELETE /api/instances/demo/x1",
                               "GET /api/events"}) {
    INFO(expected);
    CHECK(covered.count(expected) == 1);
  }

  const std::string token = stack.TokenFor("key-1");
  for (const Endpoint& e : endpoints) {
    INFO(e.method << " " << e.target);
    const std::string body = BodyFor(e);
    CheckUnauthorized(stack.Call(e.method, e.target, body), "AUTH_REQUIRED");
    CheckUnauthorized(stack.Call(e.method, e.target, body, Bearer("garbage")),
                      "TOKEN_MALFORMED");
    CheckUnauthorized(stack.Call(e.method, e.target, body, Bearer(foreign)),
                      "TOKEN_SIGNATURE_INVALID");
    // Routes match decoded segments: an encoded "api" is still the API.
    for (const char* encoded : {"/%61pi/", "/%61%70%69/", "/%41pi/"}) {
      const std::string disguised =
          absl::StrCat(encoded, e.target.substr(strlen("/api/")));
      INFO(disguised);
      HttpResponse r = stack.Call(e.method, disguised, body);
      if (std::string(encoded) == "/%41pi/") {
        // "Api" is no route at all.
        CheckErrorBody(r, 404, "ROUTE_NOT_FOUND");
      } else {
        CheckUnauthorized(r, "AUTH_REQUIRED");
      }
    }
    // The scheme alone is no token either.
    CheckUnauthorized(
        stack.Call(e.method, e.target, body, {{"Authorization", "Bearer"}}),
        "AUTH_REQUIRED");
    if (e.target == "/api/events") continue;  // A stream: checked below.
    // With this install's token the request gets past auth.
    HttpResponse authorised =
        stack.Call(e.method, e.target, body, Bearer(token));
    INFO(authorised.body);
    CHECK(authorised.status != 401);
    CHECK(authorised.status != 403);
  }
  // Nothing was created by the refused requests.
  CHECK(ListDir(stack.dir().Join("esp32-configs")).empty());
}

TEST_CASE("Auth: check and verify answer with the token's user", "[e2e]") {
  Stack stack({"key-1", true, {}});
  CheckUnauthorized(stack.Call("GET", "/api/auth/check"), "AUTH_REQUIRED");
  CheckUnauthorized(stack.Call("POST", "/api/auth/verify", "{}"),
                    "AUTH_REQUIRED");
  CheckUnauthorized(stack.Call("GET", "/api/auth/check", "", Bearer("a.b.c")),
                    "TOKEN_MALFORMED");
  const std::string token = stack.TokenFor("key-1");
  HttpResponse check = stack.Call("GET", "/api/auth/check", "", Bearer(token));
  CHECK(check.status == 200);
  CHECK(check.body == R"({"authenticated":true,"user":"user"})");
  HttpResponse verify =
      stack.Call("POST", "/api/auth/verify", "{}", Bearer(token));
  CHECK(verify.status == 200);
  CHECK(verify.body == R"({"valid":true,"user":"user"})");
  // A token whose signature was tampered with is refused.
  // (The first character of the signature: the last one carries unused
  // bits.)
  std::string tampered = token;
  char& first = tampered[tampered.rfind('.') + 1];
  first = first == 'A' ? 'B' : 'A';
  CheckUnauthorized(stack.Call("GET", "/api/auth/check", "", Bearer(tampered)),
                    "TOKEN_SIGNATURE_INVALID");
}

TEST_CASE("Auth: ?token= opens the event stream but no other route", "[e2e]") {
  Stack stack({"key-1", true, {}});
  const std::string token = stack.TokenFor("key-1");
  const std::string stream =
      ReadUntil(stack.gateway_port(),
                absl::StrCat("GET /api/events?token=", token,
                             " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: "
                             "text/event-stream\r\n\r\n"),
                "retry:");
  INFO(stream);
  CHECK(StatusOfRaw(stream) == 200);
  CHECK(stream.find("text/event-stream") != std::string::npos);
  CHECK(stream.find("\r\n\r\nretry:") != std::string::npos);

  // Without it, or with a bad one, the stream is refused.
  CheckUnauthorized(stack.Call("GET", "/api/events"), "AUTH_REQUIRED");
  CheckUnauthorized(stack.Call("GET", "/api/events?token=garbage"),
                    "TOKEN_MALFORMED");
  // A plain route ignores the query token, also when the request claims to
  // be a WebSocket upgrade.
  CheckUnauthorized(
      stack.Call("GET", absl::StrCat("/api/instances?token=", token)),
      "AUTH_REQUIRED");
  CheckUnauthorized(
      stack.Call("GET", absl::StrCat("/api/instances?token=", token), "",
                 {{"Upgrade", "websocket"}, {"Connection", "Upgrade"}}),
      "AUTH_REQUIRED");
  CHECK(stack.Call("GET", "/api/instances", "", Bearer(token)).status == 200);
}

TEST_CASE("Auth: an event stream ends when the token that opened it expires",
          "[e2e]") {
  StackOptions options;
  options.access_key = "key-1";
  options.config_env = {{"AUTH_TOKEN_LIFETIME_SECONDS", "2"}};
  Stack stack(options);
  HttpResponse login = stack.Login("key-1");
  REQUIRE(login.status == 200);
  rapidjson::Document doc = Parse(login.body);
  CHECK(doc["expires_in"].GetInt() == 2);
  const std::string token = doc["token"].GetString();
  const std::string stream = ReadUntil(
      stack.gateway_port(),
      absl::StrCat("GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Authorization: Bearer ",
                   token, "\r\nAccept: text/event-stream\r\n\r\n"),
      "TOKEN_EXPIRED", absl::Seconds(15));
  INFO(stream);
  CHECK(StatusOfRaw(stream) == 200);
  CHECK(stream.find("event: error") != std::string::npos);
  CHECK(stream.find("TOKEN_EXPIRED") != std::string::npos);
  // The same token no longer opens anything.
  CheckUnauthorized(stack.Call("GET", "/api/instances", "", Bearer(token)),
                    "TOKEN_EXPIRED");
}

TEST_CASE("Auth: public routes answer without a token", "[e2e]") {
  Stack stack({"key-1", true, {}});
  HttpResponse status = stack.Call("GET", "/api/setup/status");
  CHECK(status.status == 200);
  rapidjson::Document doc = Parse(status.body);
  CHECK(doc["has_access_key"].GetBool());
  CHECK(stack.Call("GET", "/api/health").status == 200);
  HttpResponse metrics = stack.Call("GET", "/metrics");
  CHECK(metrics.status == 200);
  CHECK(metrics.body.find("iot_http_requests_total") != std::string::npos);
  CHECK(stack.Call("GET", "/api/docs").status == 200);
  CHECK(stack.Call("GET", "/api/docs/openapi.json").status == 200);
  HttpResponse login = stack.Login("key-1");
  CHECK(login.status == 200);
  // A wrong key at the public login route is 401 from the service, not a
  // demand for a token.
  CheckErrorBody(stack.Login("key-2"), 401, "INVALID_ACCESS_KEY");
}

TEST_CASE("Auth: the first loopback login sets the access key", "[e2e]") {
  Stack stack;  // No WEB_ACCESS_KEY, empty data dir.
  HttpResponse before = stack.Call("GET", "/api/setup/status");
  REQUIRE(before.status == 200);
  CHECK_FALSE(Parse(before.body)["has_access_key"].GetBool());

  // An empty key sets nothing.
  CheckErrorBody(stack.Call("POST", "/api/auth/login", R"({"key":""})"), 400,
                 "ACCESS_KEY_REQUIRED");
  CheckErrorBody(stack.Call("POST", "/api/auth/login", "{}"), 400,
                 "ACCESS_KEY_REQUIRED");
  CHECK_FALSE(
      Parse(stack.Call("GET", "/api/setup/status").body)["has_access_key"]
          .GetBool());

  HttpResponse first = stack.Login("k-one");
  INFO(first.body);
  REQUIRE(first.status == 200);
  rapidjson::Document doc = Parse(first.body);
  const std::string token = Str(doc, "token");
  CHECK(std::count(token.begin(), token.end(), '.') == 2);
  CHECK(Str(doc, "token_type") == "bearer");
  REQUIRE(doc.HasMember("expires_in"));
  CHECK(doc["expires_in"].GetInt() == 604800);
  CHECK(stack.Call("GET", "/api/auth/check", "", Bearer(token)).status == 200);

  // The key is now set: another key is refused, the first one works.
  CheckErrorBody(stack.Login("k-two"), 401, "INVALID_ACCESS_KEY");
  CHECK(stack.Login("k-one").status == 200);
  HttpResponse after = stack.Call("GET", "/api/setup/status");
  CHECK(Parse(after.body)["has_access_key"].GetBool());
  // Only a hash is stored.
  const std::string stored = ReadFile(stack.data_dir() + "/auth/access_key");
  CHECK_FALSE(stored.empty());
  CHECK(stored.find("k-one") == std::string::npos);
}

TEST_CASE("Auth: a first login from the network does not set the key",
          "[e2e]") {
  Stack stack({"", /*start_gateway=*/false, {}});
  auto stub = ConfigStub(stack.config_target());
  for (const char* address :
       {"192.0.2.10", "::ffff:192.0.2.10", "2001:db8::1"}) {
    INFO(address);
    grpc::ClientContext context;
    SetDeadline(&context);
    context.AddMetadata("x-client-address", address);
    config::v1::LoginRequest request;
    request.set_key("stranger-key");
    config::v1::LoginResponse response;
    grpc::Status status = stub->Login(&context, request, &response);
    CHECK(status.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
    CHECK(ReasonOf(status) == "ACCESS_KEY_NOT_SET");
    CHECK(response.token().empty());
    // The message says how to set a key, without echoing the offered one.
    CHECK(status.error_message().find("stranger-key") == std::string::npos);
  }
  struct stat st;
  CHECK(stat((stack.data_dir() + "/auth/access_key").c_str(), &st) != 0);
  grpc::ClientContext context;
  SetDeadline(&context);
  config::v1::GetSetupStatusResponse setup;
  REQUIRE(stub->GetSetupStatus(&context, config::v1::GetSetupStatusRequest(),
                               &setup)
              .ok());
  CHECK_FALSE(setup.has_access_key());
}

TEST_CASE("Auth: failed logins are rate limited per client", "[e2e]") {
  Stack stack(
      {"right-key",
       true,
       {{"AUTH_MAX_FAILED_LOGINS", "3"}, {"AUTH_LOGIN_WINDOW_SECONDS", "2"}}});
  for (int i = 0; i < 3; ++i) {
    INFO("attempt " << i + 1);
    CheckErrorBody(stack.Login("wrong-key"), 401, "INVALID_ACCESS_KEY");
  }
  // Even the right key waits now.
  HttpResponse limited = stack.Login("right-key");
  CheckErrorBody(limited, 429, "TOO_MANY_LOGIN_ATTEMPTS");
  int retry_after = 0;
  INFO("Retry-After: " << limited.Header("Retry-After"));
  REQUIRE(absl::SimpleAtoi(limited.Header("Retry-After"), &retry_after));
  CHECK(retry_after >= 1);
  CHECK(retry_after <= 2);
  rapidjson::Document doc = Parse(limited.body);
  CHECK(Str(doc["details"], "retry_after_seconds") ==
        limited.Header("Retry-After"));
  CHECK(limited.body.find("right-key") == std::string::npos);
  // A refused attempt is not a token.
  CHECK_FALSE(doc.HasMember("token"));

  // Once the window has passed, the right key works.
  HttpResponse ok;
  REQUIRE(WaitFor(
      [&] {
        ok = stack.Login("right-key");
        return ok.status != 429;
      },
      absl::Seconds(15)));
  CHECK(ok.status == 200);
  // Success clears the record: one wrong key is a plain 401 again.
  CheckErrorBody(stack.Login("wrong-key"), 401, "INVALID_ACCESS_KEY");
  CHECK(stack.Login("right-key").status == 200);
}

TEST_CASE("Auth: the key, tokens and instance secrets never leak", "[e2e]") {
  const std::string key = "wak-SECRET-0";
  const std::vector<std::string> secrets = {"pw-SECRET-1", "tok-SECRET-2",
                                            "pw-SECRET-3", "wrong-SECRET-4"};
  Stack stack({key, true, {}});
  const std::string token = stack.TokenFor(key);
  const Headers auth = Bearer(token);
  CheckErrorBody(stack.Login("wrong-SECRET-4"), 401, "INVALID_ACCESS_KEY");

  HttpResponse created = stack.Call(
      "POST", "/api/instances",
      R"({"instance_id":"home1","connector_type":"demo","friendly_name":"Home",)"
      R"("config":{"password":"pw-SECRET-1","effect_type":"smooth"},)"
      R"("devices":[{"device_id":"d1","token":"tok-SECRET-2"}]})",
      auth);
  INFO(created.body);
  REQUIRE(created.status == 200);
  std::vector<HttpResponse> responses = {created};
  for (const char* target :
       {"/api/instances/demo/home1", "/api/instances",
        "/api/instances?connector=demo", "/api/integrations/",
        "/api/integrations/instances/home1",
        "/api/integrations/demo/instances"}) {
    HttpResponse r = stack.Call("GET", target, "", auth);
    INFO(target << " " << r.body);
    CHECK(r.status == 200);
    CHECK(r.body.find(kHidden) != std::string::npos);
    responses.push_back(r);
  }
  rapidjson::Document doc =
      Parse(stack.Call("GET", "/api/instances/demo/home1", "", auth).body);
  CHECK(Str(doc["connection"], "password") == kHidden);
  CHECK(Str(doc, "password") == kHidden);
  CHECK(Str(doc["devices"][0], "token") == kHidden);

  // The mask sent back keeps the stored value; a new value replaces it.
  HttpResponse kept = stack.Call(
      "PUT", "/api/instances/demo/home1",
      R"({"friendly_name":"Home 2","config":{"password":"***HIDDEN***",)"
      R"("effect_type":"sudden"}})",
      auth);
  INFO(kept.body);
  CHECK(kept.status == 200);
  responses.push_back(kept);
  HttpResponse replaced = stack.Call(
      "PUT", "/api/instances/demo/home1",
      R"({"config":{"password":"pw-SECRET-3","effect_type":"sudden"}})", auth);
  CHECK(replaced.status == 200);
  responses.push_back(replaced);
  responses.push_back(stack.Call("GET", "/api/instances/demo/home1", "", auth));
  // Query tokens are not logged either.
  responses.push_back(
      stack.Call("GET", absl::StrCat("/api/instances?token=", token)));
  ReadUntil(stack.gateway_port(),
            absl::StrCat("GET /api/events?token=", token,
                         " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
            "retry:");

  for (const HttpResponse& r : responses) {
    INFO(r.body);
    for (const std::string& secret : secrets) {
      CHECK(r.body.find(secret) == std::string::npos);
    }
    CHECK(r.body.find(key) == std::string::npos);
  }

  stack.Stop();
  const std::string logs = stack.Logs();
  REQUIRE(logs.find("\"severity\":\"DEBUG\"") != std::string::npos);
  REQUIRE(logs.find("instance demo/home1 created") != std::string::npos);
  std::vector<std::string> forbidden = secrets;
  forbidden.push_back(key);
  forbidden.push_back(token);
  // The signature alone, too (a log may cut the token).
  forbidden.push_back(token.substr(token.rfind('.') + 1));
  for (const std::string& s : forbidden) {
    INFO(s);
    CHECK(logs.find(s) == std::string::npos);
  }
  std::map<std::string, std::string> files = Snapshot(stack.data_dir());
  REQUIRE(files.count("instances/demo/home1.json") == 1);
  for (const auto& [path, bytes] : files) {
    INFO(path);
    if (absl::StartsWith(path, "runtime/secrets/") &&
        !absl::EndsWith(path, "/")) {
      // The runtime secrets file the connector reads: plaintext by design,
      // readable by its owner only.
      struct stat st;
      REQUIRE(stat((stack.data_dir() + "/" + path).c_str(), &st) == 0);
      CHECK((st.st_mode & 0777) == 0600);
      continue;
    }
    for (const std::string& s : forbidden) {
      INFO(s);
      CHECK(bytes.find(s) == std::string::npos);
    }
  }
}

TEST_CASE("Auth: set-access-key replaces the key of a running service",
          "[e2e]") {
  Stack stack({"old-key-1", true, {}});
  stack.TokenFor("old-key-1");

  auto run_cli = [&](const std::string& input) {
    const std::string input_path = stack.dir().Join("key-input");
    WriteFile(input_path, input);
    const std::string log = stack.dir().Join("logs/cli.log");
    auto cli =
        ChildProcess::Start(BinaryPath("iot2mqtt-config"), {"set-access-key"},
                            stack.ConfigEnv(), log, input_path);
    REQUIRE(cli.ok());
    auto code = (*cli)->Wait(absl::Seconds(30));
    REQUIRE(unlink(input_path.c_str()) == 0);
    REQUIRE(code.ok());
    return std::make_pair(*code, ReadFile(log));
  };

  // An empty line is refused and changes nothing.
  auto [empty_code, empty_output] = run_cli("\n");
  CHECK(empty_code != 0);
  CHECK(stack.Login("old-key-1").status == 200);

  auto [code, output] = run_cli("new-key-SECRET-7\n");
  INFO(output);
  CHECK(code == 0);
  CHECK(output.find("new-key-SECRET-7") == std::string::npos);
  CHECK(output.find("old-key-1") == std::string::npos);

  CHECK(stack.Login("new-key-SECRET-7").status == 200);
  CheckErrorBody(stack.Login("old-key-1"), 401, "INVALID_ACCESS_KEY");
  const std::string stored = ReadFile(stack.data_dir() + "/auth/access_key");
  CHECK(stored.find("new-key-SECRET-7") == std::string::npos);
  // The service's log does not have it either.
  CHECK(stack.Logs().find("new-key-SECRET-7") == std::string::npos);
}

TEST_CASE("Auth: AUTH_MODE=disabled opens the API and warns", "[e2e]") {
  Stack stack({"key-1", true, {{"AUTH_MODE", "disabled"}}});
  HttpResponse list = stack.Call("GET", "/api/instances");
  CHECK(list.status == 200);
  CHECK(list.body == "[]");
  CHECK(stack.Call("GET", "/api/connectors").status == 200);
  bool warned = false;
  for (absl::string_view line :
       absl::StrSplit(ReadFile(stack.gateway_log()), '\n')) {
    if (absl::StrContains(line, "\"severity\":\"WARNING\"") &&
        absl::StrContains(line, "AUTH_MODE")) {
      warned = true;
    }
  }
  INFO(ReadFile(stack.gateway_log()));
  CHECK(warned);
}

TEST_CASE("Auth: AUTH_MODE=required is the default and no warning is logged",
          "[e2e]") {
  Stack stack({"key-1", true, {}});
  CheckUnauthorized(stack.Call("GET", "/api/instances"), "AUTH_REQUIRED");
  CHECK(ReadFile(stack.gateway_log()).find("AUTH_MODE") == std::string::npos);
}

// --- Path traversal ---------------------------------------------------------

// `value` in a path segment, as sent.
const std::vector<std::string>& BadSegments() {
  static const auto* values =
      new std::vector<std::string>{"..",
                                   "%2e%2e",
                                   "a%2Fb",
                                   "%2Fetc%2Fpasswd",
                                   "x%00y",
                                   std::string(300, 'a'),
                                   "UPPER",
                                   "-lead",
                                   "..%2F..%2Fetc",
                                   "a.json",
                                   "%2E%2E%2F%2E%2E"};
  return *values;
}

// The same names as JSON string contents (for bodies).
const std::vector<std::string>& BadBodyNames() {
  static const auto* values = new std::vector<std::string>{
      "..",          "%2e%2e",    "a/b",
      "/etc/passwd", "x\\u0000y", std::string(300, 'a'),
      "UPPER",       "-lead",     "../../etc",
      "a.json",      "",          " a",
      "a b"};
  return *values;
}

void CheckRejected(const HttpResponse& r, const std::string& reason) {
  INFO(r.status << " " << r.body);
  if (r.status == 400) {
    rapidjson::Document doc = Parse(r.body);
    const std::string code = Str(doc, "code");
    CHECK((code == reason || code == "INVALID_PATH"));
    CheckErrorBody(r, 400, code);
  } else {
    FAIL("expected 400 " << reason);
  }
}

TEST_CASE(
    "Auth: names that would escape their directory are 400 and touch "
    "nothing",
    "[e2e]") {
  Stack stack({"key-1", true, {}});
  const Headers auth = Bearer(stack.TokenFor("key-1"));
  // Something to damage.
  REQUIRE(stack
              .Call("POST", "/api/instances",
                    R"({"instance_id":"home1","connector_type":"demo",)"
                    R"("config":{"password":"pw"}})",
                    auth)
              .status == 200);
  const std::string connectors = SourcePath("connectors");
  const std::map<std::string, std::string> data_before =
      StoredData(stack.data_dir());
  const std::map<std::string, std::string> root_before =
      Snapshot(stack.dir().path());
  const std::map<std::string, std::string> connectors_before =
      Snapshot(connectors);
  REQUIRE(data_before.count("instances/demo/home1.json") == 1);
  const std::vector<std::string> instances_before =
      ListDir(stack.data_dir() + "/instances");
  REQUIRE(connectors_before.count("demo/setup.json") == 1);

  const std::string body = R"({"friendly_name":"x","config":{}})";
  for (const std::string& v : BadSegments()) {
    INFO("segment " << v);
    for (const char* method : {"GET", "PUT", "DELETE"}) {
      INFO(method);
      std::string b = std::string(method) == "PUT" ? body : "";
      CheckRejected(
          stack.Call(method, absl::StrCat("/api/instances/", v, "/home1"), b,
                     auth),
          "INVALID_CONNECTOR_NAME");
      CheckRejected(
          stack.Call(method, absl::StrCat("/api/instances/demo/", v), b, auth),
          "INVALID_INSTANCE_ID");
    }
    CheckRejected(
        stack.Call("GET", absl::StrCat("/api/connectors/", v, "/setup"), "",
                   auth),
        "INVALID_CONNECTOR_NAME");
    for (const char* leaf : {"meta", "icon", "setup", "instances"}) {
      INFO(leaf);
      CheckRejected(
          stack.Call("GET", absl::StrCat("/api/integrations/", v, "/", leaf),
                     "", auth),
          "INVALID_CONNECTOR_NAME");
    }
    CheckRejected(
        stack.Call("POST", absl::StrCat("/api/integrations/", v, "/validate"),
                   R"({"config":{}})", auth),
        "INVALID_CONNECTOR_NAME");
    CheckRejected(
        stack.Call("GET", absl::StrCat("/api/integrations/instances/", v), "",
                   auth),
        "INVALID_INSTANCE_ID");
  }
  for (const std::string& v : BadBodyNames()) {
    INFO("body name " << v);
    CheckRejected(
        stack.Call("POST", "/api/instances",
                   absl::StrCat(R"({"instance_id":"new1","connector_type":")",
                                v, R"(","config":{}})"),
                   auth),
        "INVALID_CONNECTOR_NAME");
    CheckRejected(
        stack.Call("POST", "/api/instances",
                   absl::StrCat(R"({"instance_id":")", v,
                                R"(","connector_type":"demo","config":{}})"),
                   auth),
        "INVALID_INSTANCE_ID");
  }
  // Raw slashes change the route: no route, or a rejected name.
  for (const char* target :
       {"/api/instances/../../etc/passwd", "/api/integrations/../../x/meta",
        "/api/connectors/../../etc/setup",
        "/api/integrations/instances/../.."}) {
    INFO(target);
    HttpResponse r = stack.Call("GET", target, "", auth);
    INFO(r.body);
    if (r.status == 404) {
      CheckErrorBody(r, 404, "ROUTE_NOT_FOUND");
    } else {
      CHECK(r.status == 400);
    }
  }

  // Not a byte changed in the data, the catalogue or next to the data.
  CHECK(StoredData(stack.data_dir()) == data_before);
  std::map<std::string, std::string> root_after = Snapshot(stack.dir().path());
  std::set<std::string> root_names_before, root_names_after;
  for (const auto& [k, v] : root_before) {
    if (!absl::StartsWith(k, "data/")) root_names_before.insert(k);
  }
  for (const auto& [k, v] : root_after) {
    if (!absl::StartsWith(k, "data/")) root_names_after.insert(k);
  }
  CHECK(root_names_after == root_names_before);
  CHECK(Snapshot(connectors) == connectors_before);
  HttpResponse still = stack.Call("GET", "/api/instances/demo/home1", "", auth);
  CHECK(still.status == 200);

  // On PUT the path wins over the body: bad names in the body are ignored
  // (or refused), never used as a path.
  for (const std::string& v : BadBodyNames()) {
    INFO("body name " << v);
    HttpResponse put =
        stack.Call("PUT", "/api/instances/demo/home1",
                   absl::StrCat(R"({"instance_id":")", v,
                                R"(","connector_type":")", v, R"("})"),
                   auth);
    INFO(put.body);
    CHECK((put.status == 200 || put.status == 400));
    if (put.status == 200) {
      rapidjson::Document doc =
          Parse(stack.Call("GET", "/api/instances/demo/home1", "", auth).body);
      CHECK(Str(doc, "instance_id") == "home1");
      CHECK(Str(doc, "connector_type") == "demo");
    }
  }
  std::map<std::string, std::string> data_after_puts =
      StoredData(stack.data_dir());
  for (const auto& [path, bytes] : data_after_puts) {
    INFO(path);
    if (data_before.count(path) == 0) {
      CHECK(absl::StartsWith(path, "instances/demo/.history/"));
    }
  }
  CHECK(ListDir(stack.data_dir() + "/instances") == instances_before);
  CHECK(Snapshot(connectors) == connectors_before);
}

}  // namespace
}  // namespace iot2mqtt::testing
