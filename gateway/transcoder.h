#ifndef IOT2MQTT_GATEWAY_TRANSCODER_H_
#define IOT2MQTT_GATEWAY_TRANSCODER_H_

// HTTP/JSON ⇄ protobuf for routes from the RouteTable.
//
// Requests: the body (per the rule's `body`: "*" = the whole message, a
// field name = that field, "" = none) is read first, then query parameters
// bind to the fields neither path nor body bind, then path variables (they
// win). JSON uses proto field names (lowerCamel names are accepted too);
// unknown fields, bad values and anything that isn't valid UTF-8 JSON are
// INVALID_ARGUMENT with an ErrorInfo reason. Fields marked
// `(iot2mqtt.api.v1.raw_json)` take the exact text of their JSON value.
//
// Responses are written by reflection: proto field names in declaration
// order, proto3 scalars always, unset fields with presence as null, repeated
// fields as arrays, maps as objects (keys sorted), enums by name, 64-bit
// integers as strings, bytes as base64, google.protobuf.* well-known types
// as protobuf's JSON mapping, raw_json fields spliced verbatim (empty →
// null).

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "gateway/route_table.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace iot2mqtt::gateway {

// Error reasons of request transcoding (ErrorInfo.reason, all 400).
inline constexpr char kInvalidJson[] = "INVALID_JSON";
inline constexpr char kInvalidRequestBody[] = "INVALID_REQUEST_BODY";
inline constexpr char kInvalidQueryParameter[] = "INVALID_QUERY_PARAMETER";
inline constexpr char kInvalidPathParameter[] = "INVALID_PATH_PARAMETER";

// Whether `field` is a string marked `(iot2mqtt.api.v1.raw_json) = true`.
bool IsRawJsonField(const google::protobuf::FieldDescriptor* field);

// Fills `request` (of the route's input type) from the HTTP request.
// `query` is the raw query string (without '?').
absl::Status BuildRequest(const Route& route,
                          const std::vector<PathTemplate::Binding>& bindings,
                          absl::string_view query, absl::string_view body,
                          google::protobuf::Message* request);

// Parses a JSON object into `message` (cleared first), raw_json aware.
absl::Status JsonObjectToMessage(absl::string_view json,
                                 google::protobuf::Message* message);

// Sets a singular or repeated scalar/enum field (or a well-known wrapper,
// Timestamp, Duration or FieldMask field) from its text form, as used in
// paths and query strings.
absl::Status SetFieldFromText(google::protobuf::Message* message,
                              const google::protobuf::FieldDescriptor* field,
                              absl::string_view text);

// The JSON of `message` by the rules above.
std::string MessageToJson(const google::protobuf::Message& message);

struct RenderedResponse {
  bool no_content = false;  // The response type has no fields: 204.
  std::string json;         // The body (JSON unless content_type says not).
  std::string content_type = "application/json";
};

// Whether `type` is iot2mqtt.api.v1.HttpBody (a non-JSON answer).
bool IsHttpBody(const google::protobuf::Descriptor* type);

// The HTTP body for a route's response: the `response_body` field alone when
// the rule names one, else the whole message. An iot2mqtt.api.v1.HttpBody
// (the message, or the named field) gives its bytes and content type.
RenderedResponse RenderResponse(const Route& route,
                                const google::protobuf::Message& response);

// Whether `text` is valid UTF-8 (no overlong forms, surrogates or code
// points past U+10FFFF).
bool IsValidUtf8(absl::string_view text);

}  // namespace iot2mqtt::gateway

#endif  // IOT2MQTT_GATEWAY_TRANSCODER_H_
