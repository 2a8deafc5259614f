#include "iot2mqtt/sdk/runtime_secrets.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/json_sax.h"
#include "iot2mqtt/sdk/log.h"
#include "rapidjson/document.h"
#include "rapidjson/error/en.h"
#include "rapidjson/memorystream.h"
#include "rapidjson/reader.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace iot2mqtt::sdk {
namespace {

constexpr unsigned kParseFlags = rapidjson::kParseValidateEncodingFlag |
                                 rapidjson::kParseNumbersAsStringsFlag |
                                 rapidjson::kParseIterativeFlag;

// SAX handler: copies every event to `writer` (numbers as their raw text)
// while tracking the dotted path of the current value, and replaces a string
// that is the placeholder of its own path by the value for that path.
using ReplacerWriter = rapidjson::Writer<rapidjson::StringBuffer>;

class PlaceholderReplacer
    : public ScalarEvents<PlaceholderReplacer, ReplacerWriter> {
 public:
  using Writer = ReplacerWriter;

  PlaceholderReplacer(Writer* writer,
                      const std::map<std::string, std::string>& values)
      : writer_(writer), values_(values) {}

  template <typename F>
  bool Scalar(JsonScalar, F write) {
    BeginValue();
    return write(*writer_);
  }
  bool String(const char* str, rapidjson::SizeType length, bool) {
    BeginValue();
    absl::string_view text(str, length);
    if (!frames_.empty() && absl::StartsWith(text, kSecretPlaceholderPrefix) &&
        absl::EndsWith(text, kSecretPlaceholderSuffix)) {
      std::string path = Path();
      if (text == SecretPlaceholder(path)) {
        auto it = values_.find(path);
        if (it != values_.end()) {
          return writer_->RawValue(
              it->second.data(),
              static_cast<rapidjson::SizeType>(it->second.size()),
              rapidjson::kStringType);
        }
        missing_.push_back(std::move(path));
      }
    }
    return writer_->String(str, length);
  }
  bool Key(const char* str, rapidjson::SizeType length, bool) {
    frames_.back().key.assign(str, length);
    return writer_->Key(str, length);
  }
  bool StartObject() {
    BeginValue();
    if (!Enter(false)) return false;
    return writer_->StartObject();
  }
  bool EndObject(rapidjson::SizeType count) {
    frames_.pop_back();
    return writer_->EndObject(count);
  }
  bool StartArray() {
    BeginValue();
    if (!Enter(true)) return false;
    return writer_->StartArray();
  }
  bool EndArray(rapidjson::SizeType count) {
    frames_.pop_back();
    return writer_->EndArray(count);
  }

  bool too_deep() const { return too_deep_; }
  // Paths whose placeholder had no value.
  const std::vector<std::string>& missing() const { return missing_; }

 private:
  using Frame = sdk::JsonFrame;

  void BeginValue() {
    if (!frames_.empty() && frames_.back().array) ++frames_.back().index;
  }
  bool Enter(bool array) {
    if (static_cast<int>(frames_.size()) >= kMaxJsonDepth) {
      too_deep_ = true;
      return false;
    }
    Frame frame;
    frame.array = array;
    frames_.push_back(std::move(frame));
    return true;
  }
  std::string Path() const { return sdk::DottedPath(frames_); }

  Writer* writer_;
  const std::map<std::string, std::string>& values_;
  std::vector<Frame> frames_;
  std::vector<std::string> missing_;
  bool too_deep_ = false;
};

absl::StatusOr<std::string> Replace(
    absl::string_view json, const std::map<std::string, std::string>& values,
    std::vector<std::string>* missing) {
  rapidjson::StringBuffer buffer;
  PlaceholderReplacer::Writer writer(buffer);
  PlaceholderReplacer handler(&writer, values);
  rapidjson::MemoryStream stream(json.data(), json.size());
  rapidjson::Reader reader;
  rapidjson::ParseResult result = reader.Parse<kParseFlags>(stream, handler);
  if (result.IsError()) {
    if (handler.too_deep()) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid JSON at offset ", result.Offset(),
                       ": nesting deeper than ", kMaxJsonDepth, " levels"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("invalid JSON at offset ", result.Offset(), ": ",
                     rapidjson::GetParseError_En(result.Code())));
  }
  if (missing != nullptr) *missing = handler.missing();
  return std::string(buffer.GetString(), buffer.GetSize());
}

// The text of a JSON string literal (validated before).
std::string DecodeString(absl::string_view literal) {
  rapidjson::Document doc;
  doc.Parse(literal.data(), literal.size());
  if (doc.HasParseError() || !doc.IsString()) return "";
  return std::string(doc.GetString(), doc.GetStringLength());
}

// The whole content of `path`, or errno.
int ReadAll(const std::string& path, std::string* out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  char buffer[8192];
  while (true) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int error = errno;
      close(fd);
      return error;
    }
    if (n == 0) break;
    out->append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return 0;
}

}  // namespace

std::string SecretPlaceholder(absl::string_view path) {
  return absl::StrCat(kSecretPlaceholderPrefix, path, kSecretPlaceholderSuffix);
}

absl::StatusOr<RuntimeSecrets> ParseRuntimeSecrets(absl::string_view text,
                                                   const std::string& path) {
  const std::string where = absl::StrCat("secrets file ", path, ": ");
  absl::StatusOr<std::vector<JsonMember>> members = SplitJsonObject(text);
  if (!members.ok()) {
    // Parse errors carry an offset and RapidJSON's description, no content.
    return absl::InvalidArgumentError(
        absl::StrCat(where, members.status().message()));
  }
  RuntimeSecrets secrets;
  secrets.path = path;
  std::vector<std::string> problems;
  bool has_version = false, has_connector = false, has_instance = false;
  for (const JsonMember& member : *members) {
    absl::string_view type = JsonTypeOf(member.value);
    if (member.key == "version") {
      has_version = true;
      if (member.value != absl::StrCat(kRuntimeSecretsVersion)) {
        problems.push_back(
            absl::StrCat("version must be ", kRuntimeSecretsVersion));
      }
    } else if (member.key == "connector" || member.key == "instance") {
      if (type != "string") {
        problems.push_back(absl::StrCat(member.key, " must be a string"));
        continue;
      }
      if (member.key == "connector") {
        has_connector = true;
        secrets.connector = DecodeString(member.value);
      } else {
        has_instance = true;
        secrets.instance = DecodeString(member.value);
      }
    } else if (member.key == "values") {
      if (type != "object") {
        problems.push_back("values must be an object");
        continue;
      }
      absl::StatusOr<std::vector<JsonMember>> values =
          SplitJsonObject(member.value);
      if (!values.ok()) return values.status();  // Validated already.
      for (JsonMember& value : *values) {
        secrets.values[value.key] = std::move(value.value);
      }
    } else if (member.key == "env") {
      if (type != "object") {
        problems.push_back("env must be an object");
        continue;
      }
      absl::StatusOr<std::vector<JsonMember>> variables =
          SplitJsonObject(member.value);
      if (!variables.ok()) return variables.status();
      for (const JsonMember& variable : *variables) {
        if (JsonTypeOf(variable.value) != "string") {
          problems.push_back(
              absl::StrCat("env.", variable.key, " must be a string"));
          continue;
        }
        secrets.env.Set(variable.key, DecodeString(variable.value));
      }
    }
  }
  if (!has_version) problems.push_back("version is required");
  if (!has_connector) problems.push_back("connector is required");
  if (!has_instance) problems.push_back("instance is required");
  if (!problems.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, absl::StrJoin(problems, "; ")));
  }
  return secrets;
}

absl::StatusOr<RuntimeSecrets> LoadRuntimeSecrets(const Env& env) {
  std::optional<std::string> named = env.Get(kSecretsFileVariable);
  const bool is_named = named.has_value() && !named->empty();
  const std::string path = is_named ? *named : kDefaultSecretsFile;
  std::string text;
  if (int error = ReadAll(path, &text); error != 0) {
    if (error == ENOENT) {
      if (!is_named) return RuntimeSecrets();
      return absl::NotFoundError(absl::StrCat(
          kSecretsFileVariable, ": secrets file ", path, " does not exist"));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot read secrets file ", path, ": ", std::strerror(error)));
  }
  return ParseRuntimeSecrets(text, path);
}

absl::StatusOr<std::string> ReplaceSecretPlaceholders(
    absl::string_view json, const std::map<std::string, std::string>& values) {
  return Replace(json, values, nullptr);
}

absl::StatusOr<std::string> ApplyRuntimeSecrets(absl::string_view instance_json,
                                                const RuntimeSecrets& secrets) {
  std::vector<std::string> missing;
  absl::StatusOr<std::string> applied =
      Replace(instance_json, secrets.values, &missing);
  if (applied.ok() && !missing.empty()) {
    IOT2MQTT_LOG(WARNING)
            .With("paths", absl::StrJoin(missing, ","))
            .With("secrets_file", secrets.path)
        << "the instance config has secret placeholders without a value; the "
           "connector sees the placeholder strings";
  }
  return applied;
}

absl::StatusOr<InstanceConfig> LoadInstanceConfigWithSecrets(
    const std::string& path, absl::string_view instance,
    absl::string_view connector_type_fallback, const RuntimeSecrets& secrets) {
  std::string text;
  if (int error = ReadAll(path, &text); error != 0) {
    if (error == ENOENT) {
      return absl::NotFoundError(
          absl::StrCat("instance config ", path, " does not exist"));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot read instance config ", path, ": ", std::strerror(error)));
  }
  absl::StatusOr<std::string> applied = ApplyRuntimeSecrets(text, secrets);
  if (!applied.ok()) {
    return absl::Status(applied.status().code(),
                        absl::StrCat("instance config ", path, ": ",
                                     applied.status().message()));
  }
  absl::StatusOr<InstanceConfig> config =
      ParseInstanceConfig(*applied, instance, connector_type_fallback);
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat("instance config ", path, ": ",
                                     config.status().message()));
  }
  return config;
}

std::optional<std::string> SecretsFallbackEnv::Get(
    absl::string_view name) const {
  std::optional<std::string> value = base_.Get(name);
  if (value.has_value() && !value->empty()) return value;
  std::optional<std::string> secret = secrets_.env.Get(name);
  if (secret.has_value()) return secret;
  return value;
}

}  // namespace iot2mqtt::sdk
