#include "gateway/auth.h"

#include <string>

#include "absl/time/time.h"
#include "catch2/catch.hpp"

namespace iot2mqtt::gateway {
namespace {

HttpRequest Request(std::string method, std::string path,
                    std::string query = "", HeaderList headers = {}) {
  HttpRequest request;
  request.method = std::move(method);
  request.path = std::move(path);
  request.query = std::move(query);
  request.headers = std::move(headers);
  return request;
}

TEST_CASE(
    "only login, setup status, health, metrics, docs and static files "
    "are public") {
  CHECK(IsPublicRoute("POST", "/api/auth/login"));
  CHECK_FALSE(IsPublicRoute("GET", "/api/auth/login"));
  CHECK(IsPublicRoute("GET", "/api/setup/status"));
  CHECK(IsPublicRoute("GET", "/api/health"));
  CHECK(IsPublicRoute("GET", "/metrics"));
  CHECK(IsPublicRoute("GET", "/api/docs"));
  CHECK(IsPublicRoute("GET", "/api/docs/openapi.json"));
  CHECK(IsPublicRoute("GET", "/"));
  CHECK(IsPublicRoute("GET", "/assets/app.js"));
  for (const char* path : {"/api/configs", "/api/instances", "/api/auth/check",
                           "/api/auth/verify", "/api/events", "/api",
                           "/ws/mqtt", "/ws", "/api/docsx", "/api/health/x"}) {
    INFO(path);
    CHECK_FALSE(IsPublicRoute("GET", path));
  }
}

TEST_CASE(
    "the bearer token comes from the header, the query only for "
    "streams") {
  HttpRequest header = Request("GET", "/api/instances", "",
                               {{"authorization", "Bearer  abc.def.ghi "}});
  CHECK(BearerTokenOf(header, false) == "abc.def.ghi");
  CHECK(BearerTokenOf(Request("GET", "/x", "", {{"authorization", "bearer t"}}),
                      false) == "t");
  CHECK(BearerTokenOf(Request("GET", "/x", "", {{"authorization", "Basic t"}}),
                      true)
            .empty());
  HttpRequest query = Request("GET", "/api/events", "a=1&token=q%2Bt&b=2");
  CHECK(BearerTokenOf(query, false).empty());
  CHECK(BearerTokenOf(query, true) == "q+t");
  // The header wins over the query.
  query.headers = {{"authorization", "Bearer h"}};
  CHECK(BearerTokenOf(query, true) == "h");
  CHECK(IsWebSocketUpgrade(
      Request("GET", "/ws/mqtt", "", {{"upgrade", "WebSocket"}})));
  CHECK_FALSE(IsWebSocketUpgrade(Request("GET", "/ws/mqtt")));
}

TEST_CASE("loopback addresses") {
  CHECK(IsLoopbackAddress("127.0.0.1"));
  CHECK(IsLoopbackAddress("127.1.2.3"));
  CHECK(IsLoopbackAddress("::1"));
  CHECK(IsLoopbackAddress("::ffff:127.0.0.1"));
  CHECK_FALSE(IsLoopbackAddress("192.0.2.10"));
  CHECK_FALSE(IsLoopbackAddress("::ffff:192.0.2.10"));
  CHECK_FALSE(IsLoopbackAddress(""));
  CHECK_FALSE(IsLoopbackAddress("1270.0.0.1"));
}

TEST_CASE("failed logins lock one address out for the window") {
  LoginLimiter limiter(3, absl::Seconds(60));
  absl::Time t0 = absl::FromUnixSeconds(1000000);
  for (int i = 0; i < 3; ++i) {
    CHECK(limiter.RetryAfter("192.0.2.1", t0) == absl::ZeroDuration());
    limiter.RecordFailure("192.0.2.1", t0 + absl::Seconds(i));
  }
  // Locked until the oldest failure leaves the window.
  CHECK(limiter.RetryAfter("192.0.2.1", t0 + absl::Seconds(10)) ==
        absl::Seconds(50));
  // Others are not affected.
  CHECK(limiter.RetryAfter("192.0.2.2", t0) == absl::ZeroDuration());
  CHECK(limiter.RetryAfter("192.0.2.1", t0 + absl::Seconds(60)) ==
        absl::ZeroDuration());
  // A success clears the address.
  for (int i = 0; i < 3; ++i) limiter.RecordFailure("192.0.2.3", t0);
  CHECK(limiter.RetryAfter("192.0.2.3", t0) > absl::ZeroDuration());
  limiter.RecordSuccess("192.0.2.3");
  CHECK(limiter.RetryAfter("192.0.2.3", t0) == absl::ZeroDuration());
}

TEST_CASE("the login limiter tracks a bounded number of addresses") {
  LoginLimiter limiter(1, absl::Seconds(60), 2);
  absl::Time t0 = absl::FromUnixSeconds(1000000);
  limiter.RecordFailure("192.0.2.1", t0);
  limiter.RecordFailure("192.0.2.2", t0 + absl::Seconds(1));
  limiter.RecordFailure("192.0.2.3", t0 + absl::Seconds(2));
  // The stalest address was forgotten; the newer ones are still locked.
  CHECK(limiter.RetryAfter("192.0.2.1", t0 + absl::Seconds(3)) ==
        absl::ZeroDuration());
  CHECK(limiter.RetryAfter("192.0.2.2", t0 + absl::Seconds(3)) >
        absl::ZeroDuration());
  CHECK(limiter.RetryAfter("192.0.2.3", t0 + absl::Seconds(3)) >
        absl::ZeroDuration());
}

TEST_CASE("verified tokens are cached until they expire, LRU-bounded") {
  TokenCache cache(2);
  absl::Time t0 = absl::FromUnixSeconds(1000000);
  cache.Insert("a", "user", t0 + absl::Seconds(10));
  std::optional<Principal> a = cache.Lookup("a", t0);
  REQUIRE(a.has_value());
  CHECK(a->subject == "user");
  CHECK(a->expires_at == t0 + absl::Seconds(10));
  CHECK_FALSE(cache.Lookup("a", t0 + absl::Seconds(10)).has_value());
  CHECK_FALSE(cache.Lookup("unknown", t0).has_value());
  cache.Insert("x", "u1", t0 + absl::Hours(1));
  cache.Insert("y", "u2", t0 + absl::Hours(1));
  CHECK(cache.Lookup("x", t0).has_value());  // x is now the most recent.
  cache.Insert("z", "u3", t0 + absl::Hours(1));
  CHECK_FALSE(cache.Lookup("y", t0).has_value());
  CHECK(cache.Lookup("x", t0).has_value());
  CHECK(cache.Lookup("z", t0).has_value());
}

}  // namespace
}  // namespace iot2mqtt::gateway
