#include "gateway/openapi.h"

#include <string>

#include "catch2/catch.hpp"
#include "gateway/route_table.h"
#include "iot2mqtt/config/v1/config_service.pb.h"
#include "rapidjson/document.h"

namespace iot2mqtt::gateway {
namespace {

const RouteTable& ConfigRoutes() {
  static const RouteTable* const kTable = [] {
    (void)config::v1::DeviceConfig::descriptor();
    absl::StatusOr<RouteTable> table =
        RouteTable::Build({"iot2mqtt.config.v1.ConfigService"});
    REQUIRE(table.ok());
    return new RouteTable(*std::move(table));
  }();
  return *kTable;
}

TEST_CASE("the OpenAPI document has the config paths and the error schema") {
  std::string json = BuildOpenApiJson(ConfigRoutes());
  rapidjson::Document doc;
  doc.Parse(json.c_str(), json.size());
  REQUIRE_FALSE(doc.HasParseError());
  CHECK(std::string(doc["openapi"].GetString()) == "3.0.3");

  const auto& paths = doc["paths"];
  REQUIRE(paths.HasMember("/api/configs"));
  CHECK(paths["/api/configs"].HasMember("get"));
  REQUIRE(paths.HasMember("/api/configs/{mac_address}"));
  const auto& item = paths["/api/configs/{mac_address}"];
  CHECK(item.HasMember("get"));
  CHECK(item.HasMember("put"));
  CHECK(item.HasMember("delete"));
  CHECK(paths.HasMember("/api/health"));
  CHECK(paths.HasMember("/metrics"));

  // The path parameter.
  const auto& get = item["get"];
  const auto& parameter = get["parameters"][0];
  CHECK(std::string(parameter["name"].GetString()) == "mac_address");
  CHECK(std::string(parameter["in"].GetString()) == "path");
  CHECK(parameter["required"].GetBool());
  // Descriptions come from the proto comments.
  CHECK(std::string(get["description"].GetString()).find("full content") !=
        std::string::npos);

  // PUT: the body is the request minus the path field; content is free-form.
  const auto& body =
      item["put"]["requestBody"]["content"]["application/json"]["schema"];
  CHECK_FALSE(body["properties"].HasMember("mac_address"));
  CHECK(std::string(body["properties"]["content"]["type"].GetString()) ==
        "object");
  CHECK(std::string(item["put"]["responses"]["default"]["$ref"].GetString()) ==
        "#/components/responses/Error");

  // DELETE answers 204; GET's response is the device_config field.
  CHECK(item["delete"]["responses"].HasMember("204"));
  CHECK_FALSE(item["delete"]["responses"].HasMember("200"));
  const auto& get_schema =
      get["responses"]["200"]["content"]["application/json"]["schema"];
  CHECK(std::string(get_schema["allOf"][0]["$ref"].GetString()) ==
        "#/components/schemas/iot2mqtt.config.v1.DeviceConfig");

  const auto& schemas = doc["components"]["schemas"];
  REQUIRE(schemas.HasMember("Error"));
  const auto& error = schemas["Error"];
  for (const char* field :
       {"error", "code", "details", "correlationId", "detail"}) {
    CHECK(error["properties"].HasMember(field));
  }
  CHECK(error["properties"]["details"]["nullable"].GetBool());
  REQUIRE(schemas.HasMember("iot2mqtt.config.v1.DeviceConfig"));
  const auto& device = schemas["iot2mqtt.config.v1.DeviceConfig"]["properties"];
  CHECK(device["device_name"]["nullable"].GetBool());
  CHECK_FALSE(device["mac_address"].HasMember("nullable"));
  CHECK(std::string(device["content"]["type"].GetString()) == "object");
  CHECK(schemas.HasMember("iot2mqtt.config.v1.ListDeviceConfigsResponse"));
  CHECK(schemas.HasMember("iot2mqtt.config.v1.DeviceConfigSummary"));
}

TEST_CASE("the HTML docs are self-contained and list every operation") {
  std::string html = BuildDocsHtml(ConfigRoutes());
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  for (const char* text :
       {"/api/configs", "/api/configs/{mac_address}", ">GET<", ">PUT<",
        ">DELETE<", "204 No Content", "correlationId", "DeviceConfig",
        "Lists every device configuration"}) {
    INFO(text);
    CHECK(html.find(text) != std::string::npos);
  }
  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("https://") == std::string::npos);
  CHECK(html.find("http://") == std::string::npos);
}

}  // namespace
}  // namespace iot2mqtt::gateway
