#include "iot2mqtt/sdk/json.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "iot2mqtt/sdk/json_sax.h"
#include "rapidjson/error/en.h"
#include "rapidjson/memorystream.h"
#include "rapidjson/prettywriter.h"
#include "rapidjson/reader.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace iot2mqtt::sdk {
namespace {

constexpr unsigned kParseFlags = rapidjson::kParseValidateEncodingFlag |
                                 rapidjson::kParseNumbersAsStringsFlag |
                                 rapidjson::kParseIterativeFlag;

// Forwards SAX events to a writer, numbers as their raw text, and stops past
// kMaxJsonDepth. With `split`, members of the top-level object go to
// separate buffers instead.
template <typename Writer>
class Forwarder : public ScalarEvents<Forwarder<Writer>, Writer> {
 public:
  explicit Forwarder(Writer* writer) : writer_(writer) {}

  template <typename F>
  bool Scalar(JsonScalar, F write) {
    return write(*writer_);
  }
  bool Key(const char* str, rapidjson::SizeType length, bool) {
    return writer_->Key(str, length);
  }
  bool StartObject() { return Enter() && writer_->StartObject(); }
  bool EndObject(rapidjson::SizeType count) {
    --depth_;
    return writer_->EndObject(count);
  }
  bool StartArray() { return Enter() && writer_->StartArray(); }
  bool EndArray(rapidjson::SizeType count) {
    --depth_;
    return writer_->EndArray(count);
  }
  bool too_deep() const { return too_deep_; }

 private:
  bool Enter() {
    if (++depth_ > kMaxJsonDepth) {
      too_deep_ = true;
      return false;
    }
    return true;
  }
  Writer* writer_;
  int depth_ = 0;
  bool too_deep_ = false;
};

absl::Status ParseError(const rapidjson::ParseResult& result, bool too_deep) {
  if (too_deep) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid JSON at offset ", result.Offset(),
                     ": nesting deeper than ", kMaxJsonDepth, " levels"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("invalid JSON at offset ", result.Offset(), ": ",
                   rapidjson::GetParseError_En(result.Code())));
}

template <typename Writer>
absl::Status Rewrite(absl::string_view text, Writer* writer) {
  rapidjson::MemoryStream stream(text.data(), text.size());
  rapidjson::Reader reader;
  Forwarder<Writer> handler(writer);
  rapidjson::ParseResult result = reader.Parse<kParseFlags>(stream, handler);
  if (result.IsError()) return ParseError(result, handler.too_deep());
  return absl::OkStatus();
}

// Receives the events of one top-level object; each member value is written
// to its own compact buffer.
using SplitWriter = rapidjson::Writer<rapidjson::StringBuffer>;

class Splitter : public ScalarEvents<Splitter, SplitWriter> {
 public:
  using W = SplitWriter;

  template <typename F>
  bool Scalar(JsonScalar, F write) {
    if (depth_ == 0) {
      wrong_type_ = "a scalar";
      return false;
    }
    return write(writer_) && Completed();
  }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    if (depth_ == 1) {
      members_.push_back({std::string(s, n), ""});
      buffer_.Clear();
      writer_.Reset(buffer_);
      return true;
    }
    return writer_.Key(s, n);
  }
  bool StartObject() {
    if (depth_ == 0) {
      depth_ = 1;
      return true;
    }
    if (++depth_ > kMaxJsonDepth) {
      too_deep_ = true;
      return false;
    }
    return writer_.StartObject();
  }
  bool EndObject(rapidjson::SizeType count) {
    if (--depth_ == 0) return true;
    bool ok = writer_.EndObject(count);
    return ok && Completed();
  }
  bool StartArray() {
    if (depth_ == 0) {
      wrong_type_ = "an array";
      return false;
    }
    if (++depth_ > kMaxJsonDepth) {
      too_deep_ = true;
      return false;
    }
    return writer_.StartArray();
  }
  bool EndArray(rapidjson::SizeType count) {
    --depth_;
    bool ok = writer_.EndArray(count);
    return ok && Completed();
  }

  std::vector<JsonMember>& members() { return members_; }
  const char* wrong_type() const { return wrong_type_; }
  bool too_deep() const { return too_deep_; }

 private:
  // After a value: when it was a whole member value, store its text.
  bool Completed() {
    if (depth_ == 1) {
      members_.back().value.assign(buffer_.GetString(), buffer_.GetSize());
    }
    return true;
  }

  rapidjson::StringBuffer buffer_;
  W writer_{buffer_};
  std::vector<JsonMember> members_;
  int depth_ = 0;
  const char* wrong_type_ = nullptr;
  bool too_deep_ = false;
};

}  // namespace

absl::StatusOr<std::string> RewriteJson(absl::string_view text,
                                        JsonFormat format) {
  rapidjson::StringBuffer buffer;
  if (format == JsonFormat::kPretty) {
    rapidjson::PrettyWriter<rapidjson::StringBuffer> writer(buffer);
    writer.SetIndent(' ', 2);
    if (absl::Status s = Rewrite(text, &writer); !s.ok()) return s;
  } else {
    rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
    if (absl::Status s = Rewrite(text, &writer); !s.ok()) return s;
  }
  return std::string(buffer.GetString(), buffer.GetSize());
}

absl::StatusOr<std::vector<JsonMember>> SplitJsonObject(
    absl::string_view text) {
  rapidjson::MemoryStream stream(text.data(), text.size());
  rapidjson::Reader reader;
  Splitter splitter;
  rapidjson::ParseResult result = reader.Parse<kParseFlags>(stream, splitter);
  if (splitter.wrong_type() != nullptr) {
    absl::string_view type = JsonTypeOf(text);
    return absl::InvalidArgumentError(absl::StrCat(
        "expected a JSON object, got ",
        type.empty() ? absl::string_view(splitter.wrong_type()) : type));
  }
  if (result.IsError()) return ParseError(result, splitter.too_deep());
  return std::move(splitter.members());
}

absl::string_view JsonTypeOf(absl::string_view text) {
  text = absl::StripLeadingAsciiWhitespace(text);
  if (text.empty()) return "";
  switch (text.front()) {
    case '{':
      return "object";
    case '[':
      return "array";
    case '"':
      return "string";
    case 't':
      return "true";
    case 'f':
      return "false";
    case 'n':
      return "null";
    default:
      if (text.front() == '-' || absl::ascii_isdigit(text.front())) {
        return "number";
      }
      return "";
  }
}

std::string DescribeJsonType(absl::string_view text) {
  absl::string_view type = JsonTypeOf(text);
  if (type == "object") return "an object";
  if (type == "array") return "an array";
  if (type == "string") return "a string";
  if (type == "number") return "a number";
  if (type == "true" || type == "false") return "a boolean";
  if (type == "null") return "null";
  return "something else";
}

}  // namespace iot2mqtt::sdk
