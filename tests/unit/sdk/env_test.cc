#include "iot2mqtt/sdk/env.h"

#include "catch2/catch.hpp"

namespace iot2mqtt::sdk {
namespace {

TEST_CASE("EnvReader: defaults apply when unset or empty", "[unit][env]") {
  MapEnv env({{"EMPTY", ""}});
  EnvReader reader(env);
  CHECK(reader.String("MISSING", "dflt") == "dflt");
  CHECK(reader.String("EMPTY", "dflt") == "dflt");
  CHECK(reader.Int("PORT", 8080, 1, 65535) == 8080);
  CHECK(reader.Bool("FLAG", true));
  CHECK(reader.Finish().ok());
}

TEST_CASE("EnvReader: reports every problem at once", "[unit][env]") {
  MapEnv env({{"PORT", "http"}, {"THREADS", "0"}, {"FLAG", "maybe"}});
  EnvReader reader(env);
  reader.Required("ESP32_CONFIGS_DIR");
  reader.Int("PORT", 1, 1, 65535);
  reader.Int("THREADS", 2, 1, 64);
  reader.Bool("FLAG", false);
  absl::Status status = reader.Finish();
  REQUIRE(status.code() == absl::StatusCode::kInvalidArgument);
  std::string message(status.message());
  CHECK(message.find("ESP32_CONFIGS_DIR is required") != std::string::npos);
  CHECK(message.find("PORT=\"http\" is not an integer") != std::string::npos);
  CHECK(message.find("THREADS=0 is out of range [1, 64]") != std::string::npos);
  CHECK(message.find("FLAG=\"maybe\" is not a boolean") != std::string::npos);
}

TEST_CASE("EnvReader: typed values parse", "[unit][env]") {
  MapEnv env({{"PORT", "50051"}, {"FLAG", "Yes"}, {"DIR", "/data"}});
  EnvReader reader(env);
  CHECK(reader.Int("PORT", 1, 1, 65535) == 50051);
  CHECK(reader.Bool("FLAG", false));
  CHECK(reader.Required("DIR") == "/data");
  CHECK(reader.Finish().ok());
}

TEST_CASE("EnvReader: lists accept commas and the upstream JSON form",
          "[unit][env]") {
  MapEnv env({{"A", "http://a, http://b ,"},
              {"B", R"(["http://localhost:3000", "https://x"])"},
              {"C", "[oops"}});
  EnvReader reader(env);
  CHECK(reader.List("A", {}) ==
        std::vector<std::string>{"http://a", "http://b"});
  CHECK(reader.List("B", {}) ==
        std::vector<std::string>{"http://localhost:3000", "https://x"});
  CHECK(reader.List("MISSING", {"*"}) == std::vector<std::string>{"*"});
  reader.List("C", {});
  CHECK_FALSE(reader.Finish().ok());
}

}  // namespace
}  // namespace iot2mqtt::sdk
