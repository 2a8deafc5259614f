#include "gateway/cors.h"

#include <map>
#include <string>

#include "catch2/catch.hpp"

namespace iot2mqtt::gateway {
namespace {

std::map<std::string, std::string> AsMap(const HeaderList& headers) {
  return std::map<std::string, std::string>(headers.begin(), headers.end());
}

TEST_CASE("no configured origins: no CORS headers at all") {
  CorsPolicy policy;
  CHECK_FALSE(policy.enabled());
  CHECK(policy.ResponseHeaders("http://ui.example").empty());
  CHECK_FALSE(policy.IsPreflight("OPTIONS", "http://ui.example", "PUT"));
}

TEST_CASE("a matching origin is echoed with Vary: Origin") {
  CorsPolicy policy({"http://ui.example", " http://localhost:3000/ "});
  auto headers = AsMap(policy.ResponseHeaders("http://ui.example"));
  CHECK(headers["Access-Control-Allow-Origin"] == "http://ui.example");
  CHECK(headers["Vary"] == "Origin");
  CHECK(headers["Access-Control-Expose-Headers"] == "X-Correlation-ID");
  // Configured with spaces and a trailing slash; browsers send neither.
  CHECK(AsMap(policy.ResponseHeaders(
            "http://localhost:3000"))["Access-Control-Allow-Origin"] ==
        "http://localhost:3000");
}

TEST_CASE("a non-matching origin gets no CORS headers") {
  CorsPolicy policy({"http://ui.example"});
  CHECK(policy.ResponseHeaders("http://evil.example").empty());
  CHECK(policy.ResponseHeaders("http://ui.example.evil.example").empty());
  CHECK(policy.ResponseHeaders("").empty());
  CHECK(policy.PreflightHeaders("http://evil.example").empty());
  CHECK_FALSE(policy.IsPreflight("OPTIONS", "http://evil.example", "PUT"));
}

TEST_CASE("* allows every origin") {
  CorsPolicy policy({"*"});
  CHECK(AsMap(policy.ResponseHeaders(
            "https://anything.example"))["Access-Control-Allow-Origin"] ==
        "https://anything.example");
  CHECK(policy.ResponseHeaders("").empty());  // Not a CORS request.
}

TEST_CASE("preflights: OPTIONS with an allowed Origin and a requested method") {
  CorsPolicy policy({"http://ui.example"});
  CHECK(policy.IsPreflight("OPTIONS", "http://ui.example", "PUT"));
  CHECK_FALSE(policy.IsPreflight("OPTIONS", "http://ui.example", ""));
  CHECK_FALSE(policy.IsPreflight("GET", "http://ui.example", "PUT"));
  auto headers = AsMap(policy.PreflightHeaders("http://ui.example"));
  CHECK(headers["Access-Control-Allow-Origin"] == "http://ui.example");
  CHECK(headers["Vary"] == "Origin");
  for (const char* method : {"GET", "PUT", "POST", "DELETE", "PATCH"}) {
    CHECK(headers["Access-Control-Allow-Methods"].find(method) !=
          std::string::npos);
  }
  for (const char* header :
       {"Content-Type", "Authorization", "X-Correlation-ID"}) {
    CHECK(headers["Access-Control-Allow-Headers"].find(header) !=
          std::string::npos);
  }
  CHECK(headers["Access-Control-Expose-Headers"] == "X-Correlation-ID");
}

}  // namespace
}  // namespace iot2mqtt::gateway
