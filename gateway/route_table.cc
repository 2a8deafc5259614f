#include "gateway/route_table.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "google/api/annotations.pb.h"
#include "google/api/http.pb.h"

namespace iot2mqtt::gateway {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::MethodDescriptor;

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool IsIdentStart(char c) { return absl::ascii_isalpha(c) || c == '_'; }
bool IsIdentChar(char c) { return absl::ascii_isalnum(c) || c == '_'; }

// Recursive-descent parser over the template text.
class TemplateParser {
 public:
  explicit TemplateParser(absl::string_view text) : text_(text) {}

  absl::Status Parse(std::vector<PathTemplate::Segment>* segments,
                     std::vector<PathTemplate::Variable>* variables,
                     std::string* verb) {
    segments_ = segments;
    variables_ = variables;
    if (!Consume('/')) return Error("must start with '/'");
    if (absl::Status s = ParseSegments(/*in_variable=*/false); !s.ok()) {
      return s;
    }
    if (Consume(':')) {
      absl::string_view rest = text_.substr(pos_);
      if (rest.empty() || absl::StrContains(rest, '/')) {
        return Error("invalid verb");
      }
      *verb = std::string(rest);
      pos_ = text_.size();
    }
    if (pos_ != text_.size()) return Error("unexpected character");
    // "**" may only be the last segment.
    for (size_t i = 0; i < segments->size(); ++i) {
      if ((*segments)[i].kind == PathTemplate::SegmentKind::kDeepWildcard &&
          i + 1 != segments->size()) {
        return Error("'**' must be the last segment");
      }
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid path template \"", text_, "\" at offset ", pos_, ": ", what));
  }
  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek() const { return AtEnd() ? '\0' : text_[pos_]; }
  bool Consume(char c) {
    if (Peek() != c) return false;
    ++pos_;
    return true;
  }

  absl::Status ParseSegments(bool in_variable) {
    while (true) {
      if (absl::Status s = ParseSegment(in_variable); !s.ok()) return s;
      if (!Consume('/')) return absl::OkStatus();
      // A trailing slash is part of the route ("/api/integrations/" is not
      // "/api/integrations"): an empty last literal segment.
      if (!in_variable && (AtEnd() || Peek() == ':')) {
        segments_->push_back({PathTemplate::SegmentKind::kLiteral, ""});
        return absl::OkStatus();
      }
    }
  }

  absl::Status ParseSegment(bool in_variable) {
    using Kind = PathTemplate::SegmentKind;
    if (Peek() == '{') {
      if (in_variable) return Error("nested variable");
      ++pos_;
      size_t start = pos_;
      while (true) {
        if (!IsIdentStart(Peek())) return Error("expected a field name");
        while (IsIdentChar(Peek())) ++pos_;
        if (!Consume('.')) break;
      }
      PathTemplate::Variable variable;
      variable.field_path = std::string(text_.substr(start, pos_ - start));
      variable.begin = segments_->size();
      if (Consume('=')) {
        if (absl::Status s = ParseSegments(/*in_variable=*/true); !s.ok()) {
          return s;
        }
      } else {
        segments_->push_back({Kind::kWildcard, ""});
      }
      if (!Consume('}')) return Error("expected '}'");
      variable.end = segments_->size();
      variables_->push_back(std::move(variable));
      return absl::OkStatus();
    }
    if (Consume('*')) {
      segments_->push_back(
          {Consume('*') ? Kind::kDeepWildcard : Kind::kWildcard, ""});
      return absl::OkStatus();
    }
    size_t start = pos_;
    while (!AtEnd() && !absl::StrContains("/:{}*=", Peek())) ++pos_;
    if (pos_ == start) return Error("empty segment");
    segments_->push_back(
        {Kind::kLiteral, std::string(text_.substr(start, pos_ - start))});
    return absl::OkStatus();
  }

  absl::string_view text_;
  size_t pos_ = 0;
  std::vector<PathTemplate::Segment>* segments_ = nullptr;
  std::vector<PathTemplate::Variable>* variables_ = nullptr;
};

int Rank(PathTemplate::SegmentKind kind) {
  switch (kind) {
    case PathTemplate::SegmentKind::kLiteral:
      return 0;
    case PathTemplate::SegmentKind::kWildcard:
      return 1;
    case PathTemplate::SegmentKind::kDeepWildcard:
      return 2;
  }
  return 2;
}

}  // namespace

absl::StatusOr<std::string> PercentDecode(absl::string_view text,
                                          bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      int high = i + 1 < text.size() ? HexValue(text[i + 1]) : -1;
      int low = i + 2 < text.size() ? HexValue(text[i + 2]) : -1;
      if (high < 0 || low < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("invalid percent-encoding at offset ", i));
      }
      out.push_back(static_cast<char>(high * 16 + low));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> SplitPath(absl::string_view raw_path) {
  if (!absl::ConsumePrefix(&raw_path, "/")) {
    return absl::InvalidArgumentError("the path must start with '/'");
  }
  std::vector<std::string> segments;
  for (absl::string_view raw : absl::StrSplit(raw_path, '/')) {
    absl::StatusOr<std::string> segment = PercentDecode(raw);
    if (!segment.ok()) return segment.status();
    segments.push_back(*std::move(segment));
  }
  return segments;
}

absl::StatusOr<PathTemplate> PathTemplate::Parse(absl::string_view text) {
  PathTemplate result;
  result.text_ = std::string(text);
  TemplateParser parser(text);
  if (absl::Status s =
          parser.Parse(&result.segments_, &result.variables_, &result.verb_);
      !s.ok()) {
    return s;
  }
  return result;
}

bool PathTemplate::Match(absl::string_view raw_path,
                         std::vector<Binding>* bindings) const {
  if (!verb_.empty()) {
    if (!absl::ConsumeSuffix(&raw_path, absl::StrCat(":", verb_))) return false;
  }
  absl::StatusOr<std::vector<std::string>> split = SplitPath(raw_path);
  if (!split.ok()) return false;
  const std::vector<std::string>& path = *split;
  bool deep =
      !segments_.empty() && segments_.back().kind == SegmentKind::kDeepWildcard;
  size_t fixed = deep ? segments_.size() - 1 : segments_.size();
  if (deep ? path.size() < fixed : path.size() != fixed) return false;
  for (size_t i = 0; i < fixed; ++i) {
    const Segment& segment = segments_[i];
    if (segment.kind == SegmentKind::kLiteral) {
      if (path[i] != segment.literal) return false;
    } else if (path[i].empty()) {
      return false;  // "*" matches one non-empty segment.
    }
  }
  if (bindings == nullptr) return true;
  bindings->clear();
  for (const Variable& variable : variables_) {
    size_t end = variable.end;
    if (end == segments_.size() && deep) end = path.size();
    std::vector<absl::string_view> parts(path.begin() + variable.begin,
                                         path.begin() + end);
    bindings->push_back({variable.field_path, absl::StrJoin(parts, "/")});
  }
  return true;
}

std::string PathTemplate::OpenApiPath() const {
  std::string out;
  size_t i = 0;
  while (i < segments_.size()) {
    out += "/";
    auto variable = std::find_if(
        variables_.begin(), variables_.end(),
        [i](const Variable& v) { return v.begin == i && v.end > v.begin; });
    if (variable != variables_.end()) {
      absl::StrAppend(&out, "{", variable->field_path, "}");
      i = variable->end;
      continue;
    }
    const Segment& segment = segments_[i];
    switch (segment.kind) {
      case SegmentKind::kLiteral:
        out += segment.literal;
        break;
      case SegmentKind::kWildcard:
        out += "*";
        break;
      case SegmentKind::kDeepWildcard:
        out += "**";
        break;
    }
    ++i;
  }
  if (segments_.empty()) out = "/";
  if (!verb_.empty()) absl::StrAppend(&out, ":", verb_);
  return out;
}

bool PathTemplate::MoreSpecificThan(const PathTemplate& other) const {
  size_t n = std::min(segments_.size(), other.segments_.size());
  for (size_t i = 0; i < n; ++i) {
    int mine = Rank(segments_[i].kind);
    int theirs = Rank(other.segments_[i].kind);
    if (mine != theirs) return mine < theirs;
  }
  if (segments_.size() != other.segments_.size()) {
    return segments_.size() > other.segments_.size();
  }
  return !verb_.empty() && other.verb_.empty();
}

absl::StatusOr<std::vector<const FieldDescriptor*>> ResolveFieldPath(
    const Descriptor* message, absl::string_view path) {
  std::vector<const FieldDescriptor*> fields;
  const Descriptor* current = message;
  for (absl::string_view name : absl::StrSplit(path, '.')) {
    if (current == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", path,
          "\": only the last field of a path may be a non-message"));
    }
    const FieldDescriptor* field = current->FindFieldByName(std::string(name));
    if (field == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("no field \"", name, "\" in ", current->full_name()));
    }
    if (!fields.empty() && fields.back()->is_repeated()) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", path, "\" goes through a repeated field"));
    }
    fields.push_back(field);
    current = field->type() == FieldDescriptor::TYPE_MESSAGE
                  ? field->message_type()
                  : nullptr;
  }
  return fields;
}

namespace {

absl::Status CheckTopLevelField(const Descriptor* message,
                                const std::string& name, absl::string_view what,
                                const MethodDescriptor* method) {
  if (name.empty() || (name == "*" && what == "body")) return absl::OkStatus();
  if (message->FindFieldByName(name) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(method->full_name(), ": ", what, " \"", name,
                     "\" is not a field of ", message->full_name()));
  }
  return absl::OkStatus();
}

absl::StatusOr<Route> MakeRoute(const MethodDescriptor* method,
                                const google::api::HttpRule& rule) {
  Route route;
  std::string path;
  switch (rule.pattern_case()) {
    case google::api::HttpRule::kGet:
      route.http_method = "GET";
      path = rule.get();
      break;
    case google::api::HttpRule::kPut:
      route.http_method = "PUT";
      path = rule.put();
      break;
    case google::api::HttpRule::kPost:
      route.http_method = "POST";
      path = rule.post();
      break;
    case google::api::HttpRule::kDelete:
      route.http_method = "DELETE";
      path = rule.delete_();
      break;
    case google::api::HttpRule::kPatch:
      route.http_method = "PATCH";
      path = rule.patch();
      break;
    case google::api::HttpRule::kCustom:
      route.http_method = absl::AsciiStrToUpper(rule.custom().kind());
      path = rule.custom().path();
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          method->full_name(), ": google.api.http has no pattern"));
  }
  absl::StatusOr<PathTemplate> parsed = PathTemplate::Parse(path);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(method->full_name(), ": ", parsed.status().message()));
  }
  route.path = *std::move(parsed);
  route.method = method;
  route.rpc_path =
      absl::StrCat("/", method->service()->full_name(), "/", method->name());
  route.streaming = method->server_streaming();
  route.body = rule.body();
  route.response_body = rule.response_body();
  if (absl::Status s =
          CheckTopLevelField(method->input_type(), route.body, "body", method);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckTopLevelField(
          method->output_type(), route.response_body, "response_body", method);
      !s.ok()) {
    return s;
  }
  for (const PathTemplate::Variable& variable : route.path.variables()) {
    absl::StatusOr<std::vector<const FieldDescriptor*>> fields =
        ResolveFieldPath(method->input_type(), variable.field_path);
    if (!fields.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(method->full_name(), ": ", fields.status().message()));
    }
    const FieldDescriptor* leaf = fields->back();
    if (leaf->is_repeated() || leaf->type() == FieldDescriptor::TYPE_MESSAGE) {
      return absl::InvalidArgumentError(
          absl::StrCat(method->full_name(), ": path variable \"",
                       variable.field_path, "\" must be a singular scalar"));
    }
  }
  return route;
}

}  // namespace

absl::StatusOr<RouteTable> RouteTable::Build(
    const std::vector<std::string>& services) {
  const google::protobuf::DescriptorPool* pool =
      google::protobuf::DescriptorPool::generated_pool();
  RouteTable table;
  for (const std::string& name : services) {
    const google::protobuf::ServiceDescriptor* service =
        pool->FindServiceByName(name);
    if (service == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("service ", name, " is not linked into the gateway"));
    }
    for (int i = 0; i < service->method_count(); ++i) {
      const MethodDescriptor* method = service->method(i);
      if (method->client_streaming()) continue;
      if (!method->options().HasExtension(google::api::http)) continue;
      const google::api::HttpRule& rule =
          method->options().GetExtension(google::api::http);
      std::vector<const google::api::HttpRule*> rules = {&rule};
      for (const google::api::HttpRule& extra : rule.additional_bindings()) {
        rules.push_back(&extra);
      }
      for (const google::api::HttpRule* r : rules) {
        absl::StatusOr<Route> route = MakeRoute(method, *r);
        if (!route.ok()) return route.status();
        table.routes_.push_back(*std::move(route));
      }
    }
  }
  std::stable_sort(table.routes_.begin(), table.routes_.end(),
                   [](const Route& a, const Route& b) {
                     return a.path.MoreSpecificThan(b.path);
                   });
  return table;
}

RouteMatch RouteTable::Match(absl::string_view http_method,
                             absl::string_view raw_path) const {
  RouteMatch result;
  if (absl::StatusOr<std::vector<std::string>> split = SplitPath(raw_path);
      !split.ok()) {
    result.outcome = RouteMatch::Outcome::kBadPath;
    result.error = std::string(split.status().message());
    return result;
  }
  std::set<std::string> allowed;
  for (const Route& route : routes_) {
    std::vector<PathTemplate::Binding> bindings;
    if (!route.path.Match(raw_path, &bindings)) continue;
    if (route.http_method == http_method) {
      result.outcome = RouteMatch::Outcome::kMatched;
      result.route = &route;
      result.bindings = std::move(bindings);
      return result;
    }
    allowed.insert(route.http_method);
  }
  if (!allowed.empty()) {
    result.outcome = RouteMatch::Outcome::kMethodNotAllowed;
    result.allowed_methods.assign(allowed.begin(), allowed.end());
  }
  return result;
}

}  // namespace iot2mqtt::gateway
