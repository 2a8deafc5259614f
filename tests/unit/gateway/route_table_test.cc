#include "gateway/route_table.h"

#include <string>
#include <vector>

#include "catch2/catch.hpp"
#include "gateway_test/v1/test_service.pb.h"
#include "iot2mqtt/config/v1/config_service.pb.h"
#include "iot2mqtt/orchestrator/v1/orchestrator_service.pb.h"

namespace iot2mqtt::gateway {
namespace {

constexpr char kTestService[] = "gateway_test.v1.TestService";

const RouteTable& TestRoutes() {
  // Naming a generated message links the test proto's descriptors.
  (void)gateway_test::v1::Thing::descriptor();
  static const RouteTable* const kTable = [] {
    absl::StatusOr<RouteTable> table = RouteTable::Build({kTestService});
    REQUIRE(table.ok());
    return new RouteTable(*std::move(table));
  }();
  return *kTable;
}

std::string Binding(const RouteMatch& match, const std::string& field) {
  for (const auto& binding : match.bindings) {
    if (binding.field_path == field) return binding.value;
  }
  return "<unbound>";
}

TEST_CASE("path templates parse literals, variables, wildcards and verbs") {
  absl::StatusOr<PathTemplate> simple =
      PathTemplate::Parse("/api/configs/{mac_address}");
  REQUIRE(simple.ok());
  REQUIRE(simple->segments().size() == 3);
  CHECK(simple->segments()[0].literal == "api");
  CHECK(simple->segments()[2].kind == PathTemplate::SegmentKind::kWildcard);
  REQUIRE(simple->variables().size() == 1);
  CHECK(simple->variables()[0].field_path == "mac_address");
  CHECK(simple->variables()[0].begin == 2);
  CHECK(simple->variables()[0].end == 3);
  CHECK(simple->OpenApiPath() == "/api/configs/{mac_address}");

  absl::StatusOr<PathTemplate> nested =
      PathTemplate::Parse("/v1/{name=shelves/*/books/*}:archive");
  REQUIRE(nested.ok());
  CHECK(nested->verb() == "archive");
  REQUIRE(nested->variables().size() == 1);
  CHECK(nested->variables()[0].begin == 1);
  CHECK(nested->variables()[0].end == 5);
  CHECK(nested->OpenApiPath() == "/v1/{name}:archive");

  absl::StatusOr<PathTemplate> deep =
      PathTemplate::Parse("/v1/{path=files/**}");
  REQUIRE(deep.ok());
  CHECK(deep->segments().back().kind ==
        PathTemplate::SegmentKind::kDeepWildcard);

  absl::StatusOr<PathTemplate> dotted =
      PathTemplate::Parse("/v1/{shelf.name}/x/*");
  REQUIRE(dotted.ok());
  CHECK(dotted->variables()[0].field_path == "shelf.name");
}

TEST_CASE("invalid path templates are rejected") {
  for (const char* text :
       {"api/configs", "/api/{unclosed", "/api/**/tail", "/api/{a={b}}",
        "/api//x", "/api/{1bad}", "/api/x:", "/api/{a}:v/w"}) {
    INFO(text);
    CHECK_FALSE(PathTemplate::Parse(text).ok());
  }
}

TEST_CASE("paths are split first and percent-decoded per segment") {
  absl::StatusOr<std::vector<std::string>> split =
      SplitPath("/a/b%2Fc/%2e%2e/%41%42");
  REQUIRE(split.ok());
  CHECK(*split == std::vector<std::string>{"a", "b/c", "..", "AB"});
  CHECK_FALSE(SplitPath("/a/%zz").ok());
  CHECK_FALSE(SplitPath("/a/%4").ok());
  CHECK_FALSE(SplitPath("/a/%").ok());
  CHECK_FALSE(SplitPath("no-slash").ok());
  absl::StatusOr<std::string> query =
      PercentDecode("a+b%20c", /*plus_is_space=*/true);
  REQUIRE(query.ok());
  CHECK(*query == "a b c");
  CHECK(*PercentDecode("a+b") == "a+b");
}

TEST_CASE("routes come from the google.api.http options, bindings included") {
  const RouteTable& table = TestRoutes();
  // 10 rules + 1 additional binding + the server-streaming RPC (served as
  // SSE); the RPC without an option has none.
  CHECK(table.routes().size() == 11);
  for (const Route& route : table.routes()) {
    CHECK(route.method->name() != "Ping");
    CHECK(route.streaming == (route.method->name() == "StreamThings"));
  }
  RouteMatch stream = table.Match("GET", "/v1/stream");
  REQUIRE(stream.outcome == RouteMatch::Outcome::kMatched);
  CHECK(stream.route->streaming);

  RouteMatch get = table.Match("GET", "/v1/things/abc");
  REQUIRE(get.outcome == RouteMatch::Outcome::kMatched);
  CHECK(get.route->method->name() == "GetThing");
  CHECK(get.route->rpc_path == "/gateway_test.v1.TestService/GetThing");
  CHECK(Binding(get, "id") == "abc");

  RouteMatch extra = table.Match("GET", "/v1/shelves/s1/things/t1");
  REQUIRE(extra.outcome == RouteMatch::Outcome::kMatched);
  CHECK(extra.route->method->name() == "GetThing");
  CHECK(Binding(extra, "shelf.name") == "s1");
  CHECK(Binding(extra, "id") == "t1");

  RouteMatch patch = table.Match("PATCH", "/v1/things/abc");
  REQUIRE(patch.outcome == RouteMatch::Outcome::kMatched);
  CHECK(patch.route->body == "*");

  RouteMatch custom = table.Match("LOOKUP", "/v1/lookup/k1");
  REQUIRE(custom.outcome == RouteMatch::Outcome::kMatched);
  CHECK(custom.route->method->name() == "Lookup");
}

TEST_CASE("a trailing slash is part of the template") {
  absl::StatusOr<PathTemplate> slash = PathTemplate::Parse("/api/items/");
  REQUIRE(slash.ok());
  CHECK(slash->Match("/api/items/", nullptr));
  CHECK_FALSE(slash->Match("/api/items", nullptr));
  CHECK(slash->OpenApiPath() == "/api/items/");
  absl::StatusOr<PathTemplate> bare = PathTemplate::Parse("/api/items");
  REQUIRE(bare.ok());
  CHECK_FALSE(bare->Match("/api/items/", nullptr));
  CHECK_FALSE(PathTemplate::Parse("/api//items").ok());
}

TEST_CASE("percent-encoding is decoded after splitting") {
  const RouteTable& table = TestRoutes();
  RouteMatch slash = table.Match("GET", "/v1/things/a%2Fb");
  REQUIRE(slash.outcome == RouteMatch::Outcome::kMatched);
  CHECK(Binding(slash, "id") == "a/b");  // One segment: the service judges it.

  RouteMatch dots = table.Match("GET", "/v1/things/%2e%2e");
  REQUIRE(dots.outcome == RouteMatch::Outcome::kMatched);
  CHECK(Binding(dots, "id") == "..");

  RouteMatch bad = table.Match("GET", "/v1/things/%zz");
  CHECK(bad.outcome == RouteMatch::Outcome::kBadPath);
  CHECK_FALSE(bad.error.empty());
}

TEST_CASE("verbs, ** and multi-segment variables match") {
  const RouteTable& table = TestRoutes();
  RouteMatch publish = table.Match("POST", "/v1/things/t9:publish");
  REQUIRE(publish.outcome == RouteMatch::Outcome::kMatched);
  CHECK(publish.route->method->name() == "PublishThing");
  CHECK(Binding(publish, "id") == "t9");

  // Without the verb's method, ':' is just part of the id.
  RouteMatch colon = table.Match("GET", "/v1/things/t9:publish");
  REQUIRE(colon.outcome == RouteMatch::Outcome::kMatched);
  CHECK(colon.route->method->name() == "GetThing");
  CHECK(Binding(colon, "id") == "t9:publish");

  RouteMatch file = table.Match("GET", "/v1/files/a/b/c.txt");
  REQUIRE(file.outcome == RouteMatch::Outcome::kMatched);
  CHECK(Binding(file, "name") == "files/a/b/c.txt");
  RouteMatch root = table.Match("GET", "/v1/files");
  REQUIRE(root.outcome == RouteMatch::Outcome::kMatched);
  CHECK(Binding(root, "name") == "files");

  RouteMatch book = table.Match("GET", "/v1/shelves/s1/books/b2");
  REQUIRE(book.outcome == RouteMatch::Outcome::kMatched);
  CHECK(book.route->method->name() == "GetBook");
  CHECK(Binding(book, "name") == "shelves/s1/books/b2");
  CHECK(table.Match("GET", "/v1/shelves/s1/books").outcome ==
        RouteMatch::Outcome::kNotFound);
}

TEST_CASE("a known path with another method is 405, an unknown one 404") {
  const RouteTable& table = TestRoutes();
  RouteMatch wrong = table.Match("DELETE", "/v1/things/abc");
  REQUIRE(wrong.outcome == RouteMatch::Outcome::kMethodNotAllowed);
  CHECK(wrong.allowed_methods == std::vector<std::string>{"GET", "PATCH"});

  CHECK(table.Match("GET", "/v1/nothing").outcome ==
        RouteMatch::Outcome::kNotFound);
  CHECK(table.Match("POST", "/v1/stream").outcome ==
        RouteMatch::Outcome::kMethodNotAllowed);
  // "*" needs a non-empty segment: a trailing slash is another path.
  CHECK(table.Match("GET", "/v1/things/").outcome ==
        RouteMatch::Outcome::kNotFound);
  CHECK(table.Match("GET", "/v1/things/a/b").outcome ==
        RouteMatch::Outcome::kNotFound);
}

TEST_CASE("the config service's routes") {
  (void)config::v1::DeviceConfig::descriptor();
  (void)orchestrator::v1::LogEntry::descriptor();
  absl::StatusOr<RouteTable> config_only =
      RouteTable::Build({"iot2mqtt.config.v1.ConfigService"});
  REQUIRE(config_only.ok());
  // Every ConfigService RPC with an http rule; GetConnectorSetup has two.
  CHECK(config_only->routes().size() == 22);
  // The configured-integration views are the orchestrator's (live status).
  absl::StatusOr<RouteTable> table =
      RouteTable::Build({"iot2mqtt.config.v1.ConfigService",
                         "iot2mqtt.orchestrator.v1.OrchestratorService"});
  REQUIRE(table.ok());
  RouteMatch list = table->Match("GET", "/api/configs");
  REQUIRE(list.outcome == RouteMatch::Outcome::kMatched);
  CHECK(list.route->method->name() == "ListDeviceConfigs");
  RouteMatch put = table->Match("PUT", "/api/configs/a4-cf-12-34-56-78");
  REQUIRE(put.outcome == RouteMatch::Outcome::kMatched);
  CHECK(put.route->body == "*");
  CHECK(put.route->response_body == "device_config");
  CHECK(put.route->path.text() == "/api/configs/{mac_address}");
  // Literal segments win over variables, and a trailing slash is another
  // route: /api/integrations (catalogue) vs /api/integrations/ (configured).
  RouteMatch instance = table->Match("GET", "/api/integrations/instances/meta");
  REQUIRE(instance.outcome == RouteMatch::Outcome::kMatched);
  CHECK(instance.route->method->full_name() ==
        "iot2mqtt.orchestrator.v1.OrchestratorService.GetIntegrationInstance");
  RouteMatch catalogue = table->Match("GET", "/api/integrations");
  REQUIRE(catalogue.outcome == RouteMatch::Outcome::kMatched);
  CHECK(catalogue.route->method->name() == "ListIntegrations");
  RouteMatch configured = table->Match("GET", "/api/integrations/");
  REQUIRE(configured.outcome == RouteMatch::Outcome::kMatched);
  CHECK(configured.route->method->full_name() ==
        "iot2mqtt.orchestrator.v1.OrchestratorService."
        "ListConfiguredIntegrations");
  RouteMatch events = table->Match("GET", "/api/events");
  REQUIRE(events.outcome == RouteMatch::Outcome::kMatched);
  CHECK(events.route->streaming);
  RouteMatch options = table->Match("POST", "/api/configs/a4-cf-12-34-56-78");
  REQUIRE(options.outcome == RouteMatch::Outcome::kMethodNotAllowed);
  CHECK(options.allowed_methods ==
        std::vector<std::string>{"DELETE", "GET", "PUT"});
}

TEST_CASE("unknown services fail the build") {
  CHECK_FALSE(RouteTable::Build({"no.such.Service"}).ok());
}

}  // namespace
}  // namespace iot2mqtt::gateway
