#include "gateway/openapi.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "gateway/proto_comments.h"
#include "gateway/transcoder.h"
#include "iot2mqtt/telemetry/v1/telemetry_service.pb.h"
#include "rapidjson/prettywriter.h"
#include "rapidjson/stringbuffer.h"

namespace iot2mqtt::gateway {
namespace {

// For writing every message type reachable from the routes: the first type
// of `referenced` (which grows while types are written) not yet in
// `written`, now marked written; nullptr when all are.
const google::protobuf::Descriptor* NextUnwritten(
    const std::set<const google::protobuf::Descriptor*>& referenced,
    std::set<const google::protobuf::Descriptor*>* written) {
  for (const google::protobuf::Descriptor* type : referenced) {
    if (written->insert(type).second) return type;
  }
  return nullptr;
}

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::MethodDescriptor;
using Writer = rapidjson::PrettyWriter<rapidjson::StringBuffer>;

constexpr char kErrorSchema[] = "Error";
constexpr char kHealthSchema[] = "Health";

bool IsWellKnown(const Descriptor* type) {
  return type->file()->package() == "google.protobuf";
}

std::string SchemaName(const Descriptor* type) { return type->full_name(); }

std::string FirstSentence(const std::string& text) {
  size_t end = text.find_first_of(".\n");
  return end == std::string::npos ? text : text.substr(0, end + 1);
}

// The operations in service and method declaration order.
std::vector<const Route*> OrderedRoutes(const RouteTable& routes) {
  std::vector<const Route*> ordered;
  for (const Route& route : routes.routes()) ordered.push_back(&route);
  std::stable_sort(ordered.begin(), ordered.end(),
                   [](const Route* a, const Route* b) {
                     const auto* sa = a->method->service();
                     const auto* sb = b->method->service();
                     if (sa != sb) return sa->full_name() < sb->full_name();
                     return a->method->index() < b->method->index();
                   });
  return ordered;
}

struct QueryParameter {
  std::string name;
  const FieldDescriptor* field;
};

// Scalar leaves of `type` that a query string may set: everything the path
// and body don't bind, through singular message fields.
void CollectQueryParameters(const Descriptor* type, const std::string& prefix,
                            const std::set<std::string>& bound, int depth,
                            std::vector<QueryParameter>* out) {
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* field = type->field(i);
    std::string name = absl::StrCat(prefix, field->name());
    if (bound.count(name) > 0 || field->is_map()) continue;
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE &&
        !IsWellKnown(field->message_type())) {
      if (!field->is_repeated() && depth < 3) {
        CollectQueryParameters(field->message_type(), absl::StrCat(name, "."),
                               bound, depth + 1, out);
      }
      continue;
    }
    out->push_back({name, field});
  }
}

std::vector<QueryParameter> QueryParameters(const Route& route) {
  std::vector<QueryParameter> parameters;
  if (route.body == "*") return parameters;
  std::set<std::string> bound;
  for (const auto& variable : route.path.variables()) {
    bound.insert(variable.field_path);
  }
  if (!route.body.empty()) bound.insert(route.body);
  CollectQueryParameters(route.method->input_type(), "", bound, 0, &parameters);
  return parameters;
}

const FieldDescriptor* PathField(const Route& route, const std::string& path) {
  absl::StatusOr<std::vector<const FieldDescriptor*>> fields =
      ResolveFieldPath(route.method->input_type(), path);
  return fields.ok() ? fields->back() : nullptr;
}

// ---------------------------------------------------------------- OpenAPI

class OpenApiWriter {
 public:
  explicit OpenApiWriter(Writer* writer) : w_(*writer) {}

  void Key(absl::string_view key) {
    w_.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
  }
  void String(absl::string_view value) {
    w_.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
  }
  void Member(absl::string_view key, absl::string_view value) {
    Key(key);
    String(value);
  }

  void Ref(const std::string& name) {
    w_.StartObject();
    Member("$ref", absl::StrCat("#/components/schemas/", name));
    w_.EndObject();
  }

  void MessageRef(const Descriptor* type) {
    referenced_.insert(type);
    Ref(SchemaName(type));
  }

  // Schema of one value of `field` (ignoring repetition and presence).
  void ValueSchema(const FieldDescriptor* field) {
    w_.StartObject();
    ValueSchemaMembers(field);
    w_.EndObject();
  }

  void ValueSchemaMembers(const FieldDescriptor* field) {
    switch (field->type()) {
      case FieldDescriptor::TYPE_INT32:
      case FieldDescriptor::TYPE_SINT32:
      case FieldDescriptor::TYPE_SFIXED32:
        Member("type", "integer");
        Member("format", "int32");
        return;
      case FieldDescriptor::TYPE_UINT32:
      case FieldDescriptor::TYPE_FIXED32:
        Member("type", "integer");
        Member("format", "int64");
        Key("minimum");
        w_.Int(0);
        return;
      case FieldDescriptor::TYPE_INT64:
      case FieldDescriptor::TYPE_SINT64:
      case FieldDescriptor::TYPE_SFIXED64:
        Member("type", "string");
        Member("format", "int64");
        return;
      case FieldDescriptor::TYPE_UINT64:
      case FieldDescriptor::TYPE_FIXED64:
        Member("type", "string");
        Member("format", "uint64");
        return;
      case FieldDescriptor::TYPE_DOUBLE:
        Member("type", "number");
        Member("format", "double");
        return;
      case FieldDescriptor::TYPE_FLOAT:
        Member("type", "number");
        Member("format", "float");
        return;
      case FieldDescriptor::TYPE_BOOL:
        Member("type", "boolean");
        return;
      case FieldDescriptor::TYPE_STRING:
        if (IsRawJsonField(field)) {
          Member("type", "object");
          Key("additionalProperties");
          w_.Bool(true);
          Member("x-raw-json", "true");
          return;
        }
        Member("type", "string");
        return;
      case FieldDescriptor::TYPE_BYTES:
        Member("type", "string");
        Member("format", "byte");
        return;
      case FieldDescriptor::TYPE_ENUM: {
        Member("type", "string");
        Key("enum");
        w_.StartArray();
        for (int i = 0; i < field->enum_type()->value_count(); ++i) {
          String(field->enum_type()->value(i)->name());
        }
        w_.EndArray();
        return;
      }
      case FieldDescriptor::TYPE_MESSAGE:
      case FieldDescriptor::TYPE_GROUP:
        WellKnownOrRef(field->message_type());
        return;
    }
  }

  void WellKnownOrRef(const Descriptor* type) {
    const std::string& name = type->full_name();
    if (name == "google.protobuf.Timestamp") {
      Member("type", "string");
      Member("format", "date-time");
    } else if (name == "google.protobuf.Duration") {
      Member("type", "string");
      Member("example", "1.5s");
    } else if (name == "google.protobuf.FieldMask") {
      Member("type", "string");
    } else if (name == "google.protobuf.Struct" ||
               name == "google.protobuf.Any" ||
               name == "google.protobuf.Empty") {
      Member("type", "object");
      Key("additionalProperties");
      w_.Bool(true);
    } else if (name == "google.protobuf.ListValue") {
      Member("type", "array");
      Key("items");
      w_.StartObject();
      w_.EndObject();
    } else if (name == "google.protobuf.Value") {
      // Any JSON value: no constraint.
    } else if (IsWellKnown(type) && type->field_count() == 1 &&
               type->field(0)->name() == "value") {
      // Wrappers render as their value, or null.
      ValueSchemaMembers(type->field(0));
      Key("nullable");
      w_.Bool(true);
    } else {
      referenced_.insert(type);
      Key("allOf");
      w_.StartArray();
      Ref(SchemaName(type));
      w_.EndArray();
    }
  }

  // Schema of a field as it appears in JSON: arrays, maps, nullability and
  // its description.
  void FieldSchema(const FieldDescriptor* field) {
    w_.StartObject();
    std::string description = ProtoComments::Get().Of(field);
    if (field->is_map()) {
      Member("type", "object");
      Key("additionalProperties");
      ValueSchema(field->message_type()->map_value());
    } else if (field->is_repeated()) {
      Member("type", "array");
      Key("items");
      ValueSchema(field);
    } else {
      ValueSchemaMembers(field);
      if (field->has_presence() || IsRawJsonField(field)) {
        Key("nullable");
        w_.Bool(true);
      }
    }
    if (!description.empty()) Member("description", description);
    w_.EndObject();
  }

  // An object schema of the fields of `type` except `skip`.
  void ObjectSchema(const Descriptor* type, const std::set<std::string>& skip,
                    bool request) {
    w_.StartObject();
    Member("type", "object");
    std::string description = ProtoComments::Get().Of(type);
    if (!description.empty()) Member("description", description);
    Key("properties");
    w_.StartObject();
    std::vector<std::string> required;
    for (int i = 0; i < type->field_count(); ++i) {
      const FieldDescriptor* field = type->field(i);
      if (skip.count(field->name()) > 0) continue;
      Key(field->name());
      FieldSchema(field);
      // Responses always carry every field (null when unset).
      if (!request) required.push_back(field->name());
    }
    w_.EndObject();
    if (!required.empty()) {
      Key("required");
      w_.StartArray();
      for (const std::string& name : required) String(name);
      w_.EndArray();
    }
    if (request) {
      Key("additionalProperties");
      w_.Bool(false);
    }
    w_.EndObject();
  }

  void Parameter(absl::string_view name, absl::string_view in, bool required,
                 const FieldDescriptor* field) {
    w_.StartObject();
    Member("name", name);
    Member("in", in);
    Key("required");
    w_.Bool(required);
    std::string description = ProtoComments::Get().Of(field);
    if (!description.empty()) Member("description", description);
    Key("schema");
    if (field->is_repeated()) {
      w_.StartObject();
      Member("type", "array");
      Key("items");
      ValueSchema(field);
      w_.EndObject();
      Key("explode");
      w_.Bool(true);
    } else {
      ValueSchema(field);
    }
    w_.EndObject();
  }

  void Operation(const Route& route, const std::string& operation_id) {
    const MethodDescriptor* method = route.method;
    std::string description = ProtoComments::Get().Of(method);
    w_.StartObject();
    Member("operationId", operation_id);
    Member("summary",
           description.empty() ? method->name() : FirstSentence(description));
    if (!description.empty()) Member("description", description);
    Key("tags");
    w_.StartArray();
    String(method->service()->name());
    w_.EndArray();
    Member("x-grpc-method", method->full_name());

    Key("parameters");
    w_.StartArray();
    for (const auto& variable : route.path.variables()) {
      const FieldDescriptor* field = PathField(route, variable.field_path);
      if (field != nullptr) {
        Parameter(variable.field_path, "path", true, field);
      }
    }
    for (const QueryParameter& parameter : QueryParameters(route)) {
      Parameter(parameter.name, "query", false, parameter.field);
    }
    w_.StartObject();
    Member("$ref", "#/components/parameters/CorrelationId");
    w_.EndObject();
    w_.EndArray();

    if (!route.body.empty()) {
      Key("requestBody");
      w_.StartObject();
      Key("required");
      w_.Bool(true);
      Key("content");
      w_.StartObject();
      Key("application/json");
      w_.StartObject();
      Key("schema");
      if (route.body == "*") {
        std::set<std::string> skip;
        for (const auto& variable : route.path.variables()) {
          skip.insert(variable.field_path);
        }
        ObjectSchema(method->input_type(), skip, /*request=*/true);
      } else {
        FieldSchema(method->input_type()->FindFieldByName(route.body));
      }
      w_.EndObject();
      w_.EndObject();
      w_.EndObject();
    }

    Key("responses");
    w_.StartObject();
    const Descriptor* output = method->output_type();
    if (output->field_count() == 0) {
      Key("204");
      w_.StartObject();
      Member("description", "No Content");
      w_.EndObject();
    } else {
      Key("200");
      w_.StartObject();
      Member("description", "OK");
      Key("content");
      w_.StartObject();
      if (route.streaming) {
        // Server-Sent Events: one `data:` frame per message.
        Key("text/event-stream");
        w_.StartObject();
        Key("schema");
        MessageRef(output);
        w_.EndObject();
      } else if (IsHttpBody(output)) {
        Key("*/*");
        w_.StartObject();
        Key("schema");
        w_.StartObject();
        Member("type", "string");
        Member("format", "binary");
        w_.EndObject();
        w_.EndObject();
      } else {
        Key("application/json");
        w_.StartObject();
        Key("schema");
        if (!route.response_body.empty()) {
          FieldSchema(output->FindFieldByName(route.response_body));
        } else {
          MessageRef(output);
        }
        w_.EndObject();
      }
      w_.EndObject();  // content
      w_.EndObject();  // 200
    }
    Key("default");
    w_.StartObject();
    Member("$ref", "#/components/responses/Error");
    w_.EndObject();
    w_.EndObject();
    w_.EndObject();
  }

  void ErrorSchema() {
    w_.StartObject();
    Member("type", "object");
    Member("description",
           "The one error body of every endpoint, built from the "
           "google.rpc.Status of the failed call.");
    Key("required");
    w_.StartArray();
    for (const char* name :
         {"error", "code", "details", "correlationId", "detail"}) {
      String(name);
    }
    w_.EndArray();
    Key("properties");
    w_.StartObject();
    Key("error");
    w_.StartObject();
    Member("type", "string");
    Member("description", "What went wrong, for people.");
    w_.EndObject();
    Key("code");
    w_.StartObject();
    Member("type", "string");
    Member("description",
           "Machine-readable reason: the google.rpc.ErrorInfo reason (e.g. "
           "ROUTE_NOT_FOUND, BACKEND_UNAVAILABLE) or the "
           "canonical gRPC code name (e.g. NOT_FOUND).");
    Member("example", "NOT_FOUND");
    w_.EndObject();
    Key("details");
    w_.StartObject();
    Member("type", "object");
    Key("nullable");
    w_.Bool(true);
    Key("additionalProperties");
    w_.Bool(true);
    Member("description",
           "The ErrorInfo metadata (strings), plus field_violations from a "
           "google.rpc.BadRequest; null when there are none.");
    w_.EndObject();
    Key("correlationId");
    w_.StartObject();
    Member("type", "string");
    Member("description",
           "The request's correlation id (also in the X-Correlation-ID "
           "header); quote it when reporting a problem.");
    w_.EndObject();
    Key("detail");
    w_.StartObject();
    Member("type", "string");
    Member("description", "Same as error (kept for upstream clients).");
    w_.EndObject();
    w_.EndObject();
    w_.EndObject();
  }

  void HealthSchema() {
    w_.StartObject();
    Member("type", "object");
    Key("required");
    w_.StartArray();
    String("status");
    String("services");
    w_.EndArray();
    Key("properties");
    w_.StartObject();
    Key("status");
    w_.StartObject();
    Member("type", "string");
    Key("enum");
    w_.StartArray();
    String("healthy");
    String("unhealthy");
    w_.EndArray();
    w_.EndObject();
    Key("reason");
    w_.StartObject();
    Member("type", "string");
    Member("description",
           "\"<service>: <reason>\" for every unhealthy service, joined with "
           "\"; \" (only when unhealthy).");
    w_.EndObject();
    Key("services");
    w_.StartObject();
    Member("type", "object");
    Key("additionalProperties");
    MessageRef(telemetry::v1::GetHealthResponse::descriptor());
    w_.EndObject();
    w_.EndObject();
    w_.EndObject();
  }

  void BuiltInOperations() {
    Key("/api/health");
    w_.StartObject();
    Key("get");
    w_.StartObject();
    Member("operationId", "Gateway_Health");
    Member("summary", "Health of every backend service.");
    Key("tags");
    w_.StartArray();
    String("Gateway");
    w_.EndArray();
    Key("responses");
    w_.StartObject();
    for (const char* status : {"200", "503"}) {
      Key(status);
      w_.StartObject();
      Member("description", std::string(status) == "200"
                                ? "Every service is healthy."
                                : "At least one service is unhealthy or "
                                  "unreachable.");
      Key("content");
      w_.StartObject();
      Key("application/json");
      w_.StartObject();
      Key("schema");
      Ref(kHealthSchema);
      w_.EndObject();
      w_.EndObject();
      w_.EndObject();
    }
    w_.EndObject();
    w_.EndObject();
    w_.EndObject();

    Key("/metrics");
    w_.StartObject();
    Key("get");
    w_.StartObject();
    Member("operationId", "Gateway_Metrics");
    Member("summary",
           "Prometheus metrics of the gateway followed by every backend's.");
    Key("tags");
    w_.StartArray();
    String("Gateway");
    w_.EndArray();
    Key("responses");
    w_.StartObject();
    Key("200");
    w_.StartObject();
    Member("description", "Prometheus text exposition format 0.0.4.");
    Key("content");
    w_.StartObject();
    Key("text/plain");
    w_.StartObject();
    Key("schema");
    w_.StartObject();
    Member("type", "string");
    w_.EndObject();
    w_.EndObject();
    w_.EndObject();
    w_.EndObject();
    w_.EndObject();
    w_.EndObject();
    w_.EndObject();
  }

  // Schemas of every message referenced so far (and what they reference).
  void Components() {
    Key("components");
    w_.StartObject();
    Key("parameters");
    w_.StartObject();
    Key("CorrelationId");
    w_.StartObject();
    Member("name", "X-Correlation-ID");
    Member("in", "header");
    Key("required");
    w_.Bool(false);
    Member("description",
           "Correlation id for the logs of every service the request "
           "touches (printable ASCII, at most 128 characters); a new one is "
           "made when absent. Echoed in the response header.");
    Key("schema");
    w_.StartObject();
    Member("type", "string");
    Key("maxLength");
    w_.Int(128);
    w_.EndObject();
    w_.EndObject();
    w_.EndObject();

    Key("responses");
    w_.StartObject();
    Key("Error");
    w_.StartObject();
    Member("description",
           "Error. The HTTP status follows the gRPC code (grpc-gateway's "
           "table); the gateway's own errors use 400, 404, 405, 408, 413, "
           "431, 503 and 504.");
    Key("content");
    w_.StartObject();
    Key("application/json");
    w_.StartObject();
    Key("schema");
    Ref(kErrorSchema);
    w_.EndObject();
    w_.EndObject();
    w_.EndObject();
    w_.EndObject();

    Key("schemas");
    w_.StartObject();
    Key(kErrorSchema);
    ErrorSchema();
    Key(kHealthSchema);
    HealthSchema();
    std::set<const Descriptor*> written;
    while (const Descriptor* next = NextUnwritten(referenced_, &written)) {
      Key(SchemaName(next));
      ObjectSchema(next, {}, /*request=*/false);
    }
    w_.EndObject();
    w_.EndObject();
  }

 private:
  Writer& w_;
  std::set<const Descriptor*> referenced_;
};

// ------------------------------------------------------------------- HTML

std::string Html(absl::string_view text) {
  return absl::StrReplaceAll(
      text, {{"&", "&amp;"}, {"<", "&lt;"}, {">", "&gt;"}, {"\"", "&quot;"}});
}

std::string Anchor(const Descriptor* type) {
  return absl::StrReplaceAll(type->full_name(), {{".", "-"}});
}

// The JSON type of a field value, for people; links messages.
std::string TypeText(const FieldDescriptor* field,
                     std::set<const Descriptor*>* referenced,
                     bool ignore_repeated = false) {
  if (field->is_map()) {
    return absl::StrCat(
        "object (map of ",
        TypeText(field->message_type()->map_value(), referenced), ")");
  }
  if (field->is_repeated() && !ignore_repeated) {
    return absl::StrCat("array of ", TypeText(field, referenced, true));
  }
  switch (field->type()) {
    case FieldDescriptor::TYPE_INT32:
    case FieldDescriptor::TYPE_SINT32:
    case FieldDescriptor::TYPE_SFIXED32:
      return "integer (int32)";
    case FieldDescriptor::TYPE_UINT32:
    case FieldDescriptor::TYPE_FIXED32:
      return "integer (uint32)";
    case FieldDescriptor::TYPE_INT64:
    case FieldDescriptor::TYPE_SINT64:
    case FieldDescriptor::TYPE_SFIXED64:
      return "string (int64)";
    case FieldDescriptor::TYPE_UINT64:
    case FieldDescriptor::TYPE_FIXED64:
      return "string (uint64)";
    case FieldDescriptor::TYPE_DOUBLE:
    case FieldDescriptor::TYPE_FLOAT:
      return "number";
    case FieldDescriptor::TYPE_BOOL:
      return "boolean";
    case FieldDescriptor::TYPE_STRING:
      return IsRawJsonField(field) ? "any JSON (kept exactly as sent)"
                                   : "string";
    case FieldDescriptor::TYPE_BYTES:
      return "string (base64)";
    case FieldDescriptor::TYPE_ENUM: {
      std::vector<std::string> names;
      for (int i = 0; i < field->enum_type()->value_count(); ++i) {
        names.push_back(field->enum_type()->value(i)->name());
      }
      return absl::StrCat("string, one of ", absl::StrJoin(names, ", "));
    }
    case FieldDescriptor::TYPE_MESSAGE:
    case FieldDescriptor::TYPE_GROUP: {
      const Descriptor* type = field->message_type();
      if (IsWellKnown(type)) {
        if (type->full_name() == "google.protobuf.Timestamp") {
          return "string (RFC 3339 time)";
        }
        return type->full_name();
      }
      referenced->insert(type);
      return absl::StrCat("<a href=\"#", Anchor(type), "\">",
                          Html(type->name()), "</a>");
    }
  }
  return "?";
}

std::string FieldsTable(const Descriptor* type,
                        const std::set<std::string>& skip,
                        std::set<const Descriptor*>* referenced) {
  std::string out =
      "<table><tr><th>Field</th><th>Type</th><th>Description</th></tr>\n";
  int rows = 0;
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* field = type->field(i);
    if (skip.count(field->name()) > 0) continue;
    ++rows;
    std::string type_text = TypeText(field, referenced);
    if (!field->is_repeated() &&
        (field->has_presence() || IsRawJsonField(field))) {
      absl::StrAppend(&type_text, " or null");
    }
    absl::StrAppend(&out, "<tr><td><code>", Html(field->name()),
                    "</code></td><td>", type_text, "</td><td>",
                    Html(ProtoComments::Get().Of(field)), "</td></tr>\n");
  }
  if (rows == 0) return "<p>No fields: <code>{}</code>.</p>\n";
  out += "</table>\n";
  return out;
}

constexpr char kStyle[] = R"css(
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:60rem;padding:1rem 2rem;color:#1d2330;line-height:1.45}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #d9dde5;padding-bottom:.3rem;margin-top:2.5rem}
h3{margin:1.8rem 0 .4rem;font-size:1.05rem}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}
pre{background:#f4f6f9;padding:.7rem;border-radius:4px;overflow-x:auto}
table{border-collapse:collapse;width:100%;margin:.4rem 0 1rem}
th,td{border:1px solid #d9dde5;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f6f9}
.op{border:1px solid #d9dde5;border-radius:6px;padding:.2rem 1rem .6rem;margin:1rem 0}
.method{display:inline-block;min-width:4.2rem;text-align:center;font-weight:700;color:#fff;border-radius:3px;padding:.1rem .4rem;margin-right:.5rem}
.GET{background:#2f7d32}.PUT{background:#a86500}.POST{background:#1f5fbf}.DELETE{background:#b3261e}.PATCH{background:#6b3fa0}
.muted{color:#5b6475}
)css";

}  // namespace

std::string BuildOpenApiJson(const RouteTable& routes) {
  rapidjson::StringBuffer buffer;
  Writer writer(buffer);
  writer.SetIndent(' ', 2);
  OpenApiWriter out(&writer);
  writer.StartObject();
  out.Member("openapi", "3.0.3");
  out.Key("info");
  writer.StartObject();
  out.Member("title", "iot2mqtt API");
  out.Member("version", "v1");
  out.Member("description",
             "REST/JSON derived from the google.api.http annotations of the "
             "iot2mqtt gRPC services. JSON uses proto field names; unset "
             "optional fields are null; 64-bit integers are strings. Every "
             "error has the Error body.");
  writer.EndObject();

  // Group operations by path, in declaration order.
  std::vector<std::string> order;
  std::map<std::string, std::vector<const Route*>> by_path;
  for (const Route* route : OrderedRoutes(routes)) {
    std::string path = route->path.OpenApiPath();
    if (by_path.count(path) == 0) order.push_back(path);
    by_path[path].push_back(route);
  }
  std::map<std::string, int> operation_ids;
  out.Key("paths");
  writer.StartObject();
  for (const std::string& path : order) {
    out.Key(path);
    writer.StartObject();
    for (const Route* route : by_path[path]) {
      std::string id = absl::StrCat(route->method->service()->name(), "_",
                                    route->method->name());
      int n = operation_ids[id]++;
      if (n > 0) absl::StrAppend(&id, "_", n + 1);
      std::string method = route->http_method;
      std::transform(method.begin(), method.end(), method.begin(), ::tolower);
      out.Key(method);
      out.Operation(*route, id);
    }
    writer.EndObject();
  }
  out.BuiltInOperations();
  writer.EndObject();
  out.Components();
  writer.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

std::string BuildDocsHtml(const RouteTable& routes) {
  std::set<const Descriptor*> referenced;
  std::string ops;
  std::string index = "<ul>\n";
  const google::protobuf::ServiceDescriptor* service = nullptr;
  for (const Route* route : OrderedRoutes(routes)) {
    const MethodDescriptor* method = route->method;
    if (method->service() != service) {
      service = method->service();
      absl::StrAppend(&ops, "<h2 id=\"", Html(service->name()), "\">",
                      Html(service->name()), "</h2>\n");
      std::string comment = ProtoComments::Get().Of(service);
      if (!comment.empty())
        absl::StrAppend(&ops, "<p>", Html(comment), "</p>\n");
    }
    std::string anchor = absl::StrCat(method->service()->name(), "-",
                                      method->name(), "-", route->http_method);
    std::string path = route->path.OpenApiPath();
    absl::StrAppend(&index, "<li><a href=\"#", Html(anchor),
                    "\"><span class=\"method ", route->http_method, "\">",
                    route->http_method, "</span><code>", Html(path),
                    "</code></a></li>\n");
    absl::StrAppend(&ops, "<div class=\"op\" id=\"", Html(anchor),
                    "\">\n<h3><span class=\"method ", route->http_method, "\">",
                    route->http_method, "</span><code>", Html(path),
                    "</code></h3>\n");
    std::string comment = ProtoComments::Get().Of(method);
    if (!comment.empty()) absl::StrAppend(&ops, "<p>", Html(comment), "</p>\n");
    absl::StrAppend(&ops, "<p class=\"muted\">gRPC: <code>",
                    Html(method->full_name()), "</code></p>\n");

    // Parameters.
    std::string parameters;
    for (const auto& variable : route->path.variables()) {
      const FieldDescriptor* field = PathField(*route, variable.field_path);
      if (field == nullptr) continue;
      absl::StrAppend(&parameters, "<tr><td><code>", Html(variable.field_path),
                      "</code></td><td>path</td><td>",
                      TypeText(field, &referenced), "</td><td>",
                      Html(ProtoComments::Get().Of(field)), "</td></tr>\n");
    }
    for (const QueryParameter& parameter : QueryParameters(*route)) {
      absl::StrAppend(&parameters, "<tr><td><code>", Html(parameter.name),
                      "</code></td><td>query</td><td>",
                      TypeText(parameter.field, &referenced), "</td><td>",
                      Html(ProtoComments::Get().Of(parameter.field)),
                      "</td></tr>\n");
    }
    if (!parameters.empty()) {
      absl::StrAppend(&ops,
                      "<h4>Parameters</h4>\n<table><tr><th>Name</th><th>In</"
                      "th><th>Type</th><th>Description</th></tr>\n",
                      parameters, "</table>\n");
    }

    // Body.
    if (route->body == "*") {
      std::set<std::string> skip;
      for (const auto& variable : route->path.variables()) {
        skip.insert(variable.field_path);
      }
      absl::StrAppend(&ops, "<h4>Request body</h4>\n<p>A JSON object:</p>\n",
                      FieldsTable(method->input_type(), skip, &referenced));
    } else if (!route->body.empty()) {
      const FieldDescriptor* field =
          method->input_type()->FindFieldByName(route->body);
      absl::StrAppend(&ops, "<h4>Request body</h4>\n<p>",
                      TypeText(field, &referenced), ": ",
                      Html(ProtoComments::Get().Of(field)), "</p>\n");
    }

    // Response.
    const Descriptor* output = method->output_type();
    absl::StrAppend(&ops, "<h4>Response</h4>\n");
    if (output->field_count() == 0) {
      absl::StrAppend(&ops, "<p><b>204 No Content</b>, empty body.</p>\n");
    } else if (!route->response_body.empty()) {
      const FieldDescriptor* field =
          output->FindFieldByName(route->response_body);
      absl::StrAppend(&ops, "<p><b>200</b>: ", TypeText(field, &referenced),
                      "</p>\n");
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE &&
          !field->is_repeated() && !IsWellKnown(field->message_type())) {
        absl::StrAppend(&ops,
                        FieldsTable(field->message_type(), {}, &referenced));
      }
    } else {
      absl::StrAppend(&ops, "<p><b>200</b>: a JSON object:</p>\n",
                      FieldsTable(output, {}, &referenced));
    }
    absl::StrAppend(&ops,
                    "<p class=\"muted\">Errors: the <a href=\"#errors\">error "
                    "body</a>.</p>\n</div>\n");
  }
  index += "</ul>\n";

  // Message types referenced (and those they reference in turn).
  std::string types;
  std::set<const Descriptor*> written;
  while (const Descriptor* next = NextUnwritten(referenced, &written)) {
    std::string table = FieldsTable(next, {}, &referenced);
    std::string comment = ProtoComments::Get().Of(next);
    absl::StrAppend(&types, "<h3 id=\"", Anchor(next), "\">",
                    Html(next->name()), " <span class=\"muted\">(",
                    Html(next->full_name()), ")</span></h3>\n",
                    comment.empty() ? "" : "<p>", Html(comment),
                    comment.empty() ? "" : "</p>\n", table);
  }

  std::string html = absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, "
      "initial-scale=1\">\n"
      "<title>iot2mqtt API</title>\n<style>",
      kStyle,
      "</style>\n</head>\n<body>\n<h1>iot2mqtt API</h1>\n"
      "<p class=\"muted\">Generated from the proto descriptors the gateway "
      "routes by. Machine-readable: <a href=\"/api/docs/openapi.json\">"
      "OpenAPI 3.0</a>.</p>\n"
      "<p>JSON uses proto field names. Every field is present in responses; "
      "optional fields and messages that are unset are <code>null</code>; "
      "64-bit integers are strings. Unknown fields in request bodies are "
      "rejected. Send <code>X-Correlation-ID</code> to tie a request to the "
      "logs of every service it touches; every response carries it.</p>\n"
      "<h2>Operations</h2>\n",
      index, ops,
      "<h2 id=\"builtin\">Gateway</h2>\n"
      "<div class=\"op\"><h3><span class=\"method GET\">GET</span><code>/api/"
      "health</code></h3><p>Calls every service's health check. 200 "
      "<code>{\"status\":\"healthy\",\"services\":{\"config\":{\"healthy\":"
      "true,...}}}</code> when all are healthy, else 503 with "
      "<code>\"status\":\"unhealthy\"</code> and <code>\"reason\"</code> "
      "naming each failing service.</p></div>\n"
      "<div class=\"op\"><h3><span class=\"method GET\">GET</span><code>/"
      "metrics</code></h3><p>Prometheus text format: the gateway's metrics "
      "(<code>iot_http_requests_total</code>, "
      "<code>iot_http_request_duration_seconds</code>, ...) followed by each "
      "service's.</p></div>\n"
      "<h2 id=\"errors\">Errors</h2>\n"
      "<p>Every error, from a service or from the gateway itself, has this "
      "body:</p>\n<pre>{\n  \"error\": \"no route matches GET /api/nothing\",\n"
      "  \"code\": \"ROUTE_NOT_FOUND\",\n  \"details\": null,\n"
      "  \"correlationId\": \"4f1c2b9e0d6a7f3e8c5b1a2d3e4f5a6b\",\n"
      "  \"detail\": \"no route matches GET /api/nothing\"\n}</pre>\n"
      "<table><tr><th>Field</th><th>Meaning</th></tr>\n"
      "<tr><td><code>error</code></td><td>What went wrong, for people.</td></"
      "tr>\n"
      "<tr><td><code>code</code></td><td>Machine-readable reason "
      "(<code>google.rpc.ErrorInfo.reason</code>), else the gRPC code name "
      "such as <code>NOT_FOUND</code>.</td></tr>\n"
      "<tr><td><code>details</code></td><td>Object of facts about the error "
      "(ErrorInfo metadata, <code>field_violations</code>), or "
      "<code>null</code>.</td></tr>\n"
      "<tr><td><code>correlationId</code></td><td>Same as the "
      "<code>X-Correlation-ID</code> response header.</td></tr>\n"
      "<tr><td><code>detail</code></td><td>Same as <code>error</code>, for "
      "upstream clients.</td></tr>\n</table>\n"
      "<p>HTTP status from the gRPC code: INVALID_ARGUMENT, "
      "FAILED_PRECONDITION, OUT_OF_RANGE 400; UNAUTHENTICATED 401; "
      "PERMISSION_DENIED 403; NOT_FOUND 404; ALREADY_EXISTS, ABORTED 409; "
      "RESOURCE_EXHAUSTED 429; CANCELLED 499; UNKNOWN, INTERNAL, DATA_LOSS "
      "500; UNIMPLEMENTED 501; UNAVAILABLE 503; DEADLINE_EXCEEDED 504. The "
      "gateway's own: 400 MALFORMED_REQUEST, INVALID_JSON, "
      "INVALID_REQUEST_BODY, INVALID_PATH, INVALID_QUERY_PARAMETER, "
      "INVALID_PATH_PARAMETER; 404 ROUTE_NOT_FOUND; 405 METHOD_NOT_ALLOWED; "
      "408 REQUEST_TIMEOUT; 413 PAYLOAD_TOO_LARGE; 431 HEADERS_TOO_LARGE; 503 "
      "BACKEND_UNAVAILABLE; 504 BACKEND_DEADLINE_EXCEEDED.</p>\n"
      "<h2>Types</h2>\n",
      types, "</body>\n</html>\n");
  return html;
}

}  // namespace iot2mqtt::gateway
