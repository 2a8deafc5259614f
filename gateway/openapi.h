#ifndef IOT2MQTT_GATEWAY_OPENAPI_H_
#define IOT2MQTT_GATEWAY_OPENAPI_H_

// API documentation generated from the same descriptors and http rules the
// gateway routes by: an OpenAPI 3.0 document (/api/docs/openapi.json) and a
// self-contained HTML reference (/api/docs). Descriptions come from the proto
// comments when the descriptor set embedded at build time
// (api_descriptor_set.h) carries them.

#include <string>

#include "gateway/route_table.h"

namespace iot2mqtt::gateway {

std::string BuildOpenApiJson(const RouteTable& routes);
std::string BuildDocsHtml(const RouteTable& routes);

}  // namespace iot2mqtt::gateway

#endif  // IOT2MQTT_GATEWAY_OPENAPI_H_
