#ifndef IOT2MQTT_GATEWAY_ROUTE_TABLE_H_
#define IOT2MQTT_GATEWAY_ROUTE_TABLE_H_

// REST routes derived from the `google.api.http` options in the compiled
// descriptors: no route is written by hand for a unary RPC.
//
// Path templates follow google/api/http.proto:
//   Template = "/" Segments [ Verb ] ;
//   Segments = Segment { "/" Segment } ;
//   Segment  = "*" | "**" | LITERAL | Variable ;
//   Variable = "{" FieldPath [ "=" Segments ] "}" ;
//   Verb     = ":" LITERAL ;
//
// Matching splits the raw path on '/' and percent-decodes each segment
// afterwards, so "%2F" stays inside its segment (and is then the service's to
// reject); invalid percent-encoding is an error (400).

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"

namespace iot2mqtt::gateway {

class PathTemplate {
 public:
  enum class SegmentKind {
    kLiteral,
    kWildcard /* * */,
    kDeepWildcard /* ** */
  };
  struct Segment {
    SegmentKind kind = SegmentKind::kLiteral;
    std::string literal;
  };
  // A variable spans segments [begin, end); end == begin + 1 for "{name}".
  struct Variable {
    std::string field_path;  // "mac_address" or "device.mac"
    size_t begin = 0;
    size_t end = 0;
  };
  // A variable's value found by Match.
  struct Binding {
    std::string field_path;
    std::string value;
  };

  static absl::StatusOr<PathTemplate> Parse(absl::string_view text);

  // Matches a raw request path (no query string): the verb is taken off the
  // raw text, the rest split on '/' and each segment percent-decoded.
  // Returns false when it doesn't match (or doesn't decode); fills
  // `bindings` with the decoded variable values otherwise.
  bool Match(absl::string_view raw_path, std::vector<Binding>* bindings) const;

  const std::string& text() const { return text_; }
  // The template with every variable written "{field_path}" (OpenAPI style).
  std::string OpenApiPath() const;
  const std::vector<Segment>& segments() const { return segments_; }
  const std::vector<Variable>& variables() const { return variables_; }
  const std::string& verb() const { return verb_; }

  // Sort key: literals before wildcards position by position, so the most
  // specific template is tried first.
  bool MoreSpecificThan(const PathTemplate& other) const;

 private:
  std::string text_;
  std::vector<Segment> segments_;
  std::vector<Variable> variables_;
  std::string verb_;
};

// Splits a raw path ("/a/b%2Fc") into percent-decoded segments
// ({"a", "b/c"}). INVALID_ARGUMENT for a path not starting with '/' or
// with invalid percent-encoding.
absl::StatusOr<std::vector<std::string>> SplitPath(absl::string_view raw_path);

// Decodes %XX escapes; with `plus_is_space` ('+' → ' ', for query strings).
absl::StatusOr<std::string> PercentDecode(absl::string_view text,
                                          bool plus_is_space = false);

// The fields along a dotted path ("device.mac") from `message`: every field
// but the last is a singular message field. Unknown names are
// INVALID_ARGUMENT.
absl::StatusOr<std::vector<const google::protobuf::FieldDescriptor*>>
ResolveFieldPath(const google::protobuf::Descriptor* message,
                 absl::string_view path);

struct Route {
  std::string http_method;  // "GET", "PUT", ... (upper case)
  PathTemplate path;
  const google::protobuf::MethodDescriptor* method = nullptr;
  std::string rpc_path;  // "/iot2mqtt.config.v1.ConfigService/GetDeviceConfig"
  std::string body;      // "", "*" or a top-level field name
  std::string response_body;  // "" or a top-level field name
  // A server-streaming method: served as Server-Sent Events.
  bool streaming = false;
};

struct RouteMatch {
  enum class Outcome { kMatched, kNotFound, kMethodNotAllowed, kBadPath };
  Outcome outcome = Outcome::kNotFound;
  const Route* route = nullptr;
  std::vector<PathTemplate::Binding> bindings;
  std::vector<std::string> allowed_methods;  // For kMethodNotAllowed.
  std::string error;                         // For kBadPath.
};

class RouteTable {
 public:
  // Routes for every unary and server-streaming method of the named
  // services (full names, e.g. "iot2mqtt.config.v1.ConfigService", looked up
  // in the generated pool) that carries a google.api.http option,
  // additional_bindings included. Client-streaming methods are skipped. Fails
  // on unknown services and on rules that don't fit their messages.
  static absl::StatusOr<RouteTable> Build(
      const std::vector<std::string>& services);

  // `raw_path` is the request target without its query string.
  RouteMatch Match(absl::string_view http_method,
                   absl::string_view raw_path) const;

  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;  // Most specific first.
};

}  // namespace iot2mqtt::gateway

#endif  // IOT2MQTT_GATEWAY_ROUTE_TABLE_H_
