#include "gateway/proto_comments.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/descriptor.pb.h"
#include "iot2mqtt/sdk/log.h"

namespace iot2mqtt::gateway {
namespace {

// "// A line.\n// Another.\n" arrives as " A line.\n Another.\n": strip
// each line, keep paragraph breaks.
std::string Clean(const std::string& comment) {
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(comment, '\n')) {
    lines.emplace_back(absl::StripAsciiWhitespace(line));
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) out += lines[i].empty() || lines[i - 1].empty() ? "\n" : " ";
    out += lines[i];
  }
  return out;
}

template <typename D>
std::string CommentOf(const D* element) {
  if (element == nullptr) return "";
  google::protobuf::SourceLocation location;
  if (!element->GetSourceLocation(&location)) return "";
  return Clean(location.leading_comments);
}

}  // namespace

const ProtoComments& ProtoComments::Get() {
  static const ProtoComments* const kComments = new ProtoComments();
  return *kComments;
}

ProtoComments::ProtoComments() {
  google::protobuf::FileDescriptorSet set;
  if (!set.ParseFromArray(kApiDescriptorSet,
                          static_cast<int>(kApiDescriptorSetSize))) {
    IOT2MQTT_LOG(WARNING) << "embedded descriptor set unreadable; API docs "
                             "go without comments";
    return;
  }
  // --include_imports lists dependencies first.
  for (const google::protobuf::FileDescriptorProto& file : set.file()) {
    if (pool_.BuildFile(file) == nullptr) {
      IOT2MQTT_LOG(WARNING).With("file", file.name())
          << "can't load comments of a proto file";
    }
  }
}

std::string ProtoComments::Of(
    const google::protobuf::ServiceDescriptor* service) const {
  return CommentOf(pool_.FindServiceByName(service->full_name()));
}
std::string ProtoComments::Of(
    const google::protobuf::MethodDescriptor* method) const {
  return CommentOf(pool_.FindMethodByName(method->full_name()));
}
std::string ProtoComments::Of(
    const google::protobuf::Descriptor* message) const {
  return CommentOf(pool_.FindMessageTypeByName(message->full_name()));
}
std::string ProtoComments::Of(
    const google::protobuf::FieldDescriptor* field) const {
  return CommentOf(pool_.FindFieldByName(field->full_name()));
}
std::string ProtoComments::Of(
    const google::protobuf::EnumValueDescriptor* value) const {
  return CommentOf(pool_.FindEnumValueByName(value->full_name()));
}

}  // namespace iot2mqtt::gateway
