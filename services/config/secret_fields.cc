#include "services/config/secret_fields.h"

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "iot2mqtt/sdk/json_sax.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/runtime_secrets.h"
#include "rapidjson/error/en.h"
#include "rapidjson/memorystream.h"
#include "rapidjson/reader.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"
#include "services/common/status.h"
#include "services/config/secret_vault.h"

namespace iot2mqtt::config {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

// Numbers as their raw text, so every number survives byte for byte.
constexpr unsigned kParseFlags = rapidjson::kParseValidateEncodingFlag |
                                 rapidjson::kParseNumbersAsStringsFlag |
                                 rapidjson::kParseIterativeFlag;

absl::Status InvalidDocument(std::string message) {
  return common::WithReason(absl::InvalidArgumentError(std::move(message)),
                            kSecretsInvalidContent);
}

absl::Status ParseError(const rapidjson::ParseResult& result, bool too_deep,
                        const char* wrong_type, absl::string_view text) {
  if (wrong_type != nullptr) {
    absl::string_view type = sdk::JsonTypeOf(text);
    return InvalidDocument(
        absl::StrCat("expected a JSON object, got ",
                     type.empty() ? absl::string_view(wrong_type) : type));
  }
  if (too_deep) {
    return InvalidDocument(
        absl::StrCat("invalid JSON at offset ", result.Offset(),
                     ": nesting deeper than ", sdk::kMaxJsonDepth, " levels"));
  }
  return InvalidDocument(
      absl::StrCat("invalid JSON at offset ", result.Offset(), ": ",
                   rapidjson::GetParseError_En(result.Code())));
}

bool IsPlaceholderShaped(absl::string_view text) {
  constexpr size_t kMinSize = sizeof(sdk::kSecretPlaceholderPrefix) - 1 +
                              sizeof(sdk::kSecretPlaceholderSuffix) - 1 + 1;
  return text.size() >= kMinSize &&
         absl::StartsWith(text, sdk::kSecretPlaceholderPrefix) &&
         absl::EndsWith(text, sdk::kSecretPlaceholderSuffix);
}

// Splits `key` into lower-case words at '_', '-', ' ', '.' and at a lower
// case letter or digit followed by an upper case one.
std::vector<std::string> WordsOf(absl::string_view key) {
  std::vector<std::string> words;
  std::string current;
  for (size_t i = 0; i < key.size(); ++i) {
    char c = key[i];
    if (c == '_' || c == '-' || c == ' ' || c == '.') {
      if (!current.empty()) words.push_back(std::move(current));
      current.clear();
      continue;
    }
    if (absl::ascii_isupper(c) && i > 0 &&
        (absl::ascii_islower(key[i - 1]) || absl::ascii_isdigit(key[i - 1])) &&
        !current.empty()) {
      words.push_back(std::move(current));
      current.clear();
    }
    current += absl::ascii_tolower(c);
  }
  if (!current.empty()) words.push_back(std::move(current));
  return words;
}

// The (secret) values found by Extractor, in document order; a path seen
// again replaces the earlier value in place.
class SecretList {
 public:
  void Put(std::string path, std::string json) {
    for (auto& entry : entries_) {
      if (entry.first == path) {
        entry.second = std::move(json);
        return;
      }
    }
    entries_.emplace_back(std::move(path), std::move(json));
  }
  std::string Json() const {
    std::string out = "{";
    for (const auto& entry : entries_) {
      if (out.size() > 1) out += ',';
      absl::StrAppend(&out, sdk::JsonString(entry.first), ":", entry.second);
    }
    out += '}';
    return out;
  }

 private:
  std::vector<std::pair<std::string, std::string>> entries_;
};

// SAX handler for ExtractSecrets: copies the document to `out`, tracking the
// dotted path of each value. A secret member's value is written to a capture
// buffer instead (containers until they close), recorded under its path,
// and replaced by the placeholder.
class Extractor : public sdk::ScalarEvents<Extractor, Writer> {
 public:
  Extractor(Writer* out, const std::set<std::string>& declared)
      : out_(out), declared_(declared) {}

  bool Key(const char* s, rapidjson::SizeType n, bool) {
    if (capture_depth_ > 0) return capture_.Key(s, n);
    frames_.back().key.assign(s, n);
    return out_->Key(s, n);
  }
  bool StartObject() { return StartContainer(false); }
  bool EndObject(rapidjson::SizeType count) {
    if (capture_depth_ > 0) {
      return capture_.EndObject(count) && EndCapture();
    }
    frames_.pop_back();
    return out_->EndObject(count);
  }
  bool StartArray() { return StartContainer(true); }
  bool EndArray(rapidjson::SizeType count) {
    if (capture_depth_ > 0) {
      return capture_.EndArray(count) && EndCapture();
    }
    frames_.pop_back();
    return out_->EndArray(count);
  }

  template <typename F>
  bool Scalar(sdk::JsonScalar kind, F write) {
    if (capture_depth_ > 0) return write(capture_);
    if (frames_.empty()) {
      wrong_type_ = "a scalar";
      return false;
    }
    BeginValue();
    // A credential-named boolean or null is a flag, not a secret.
    if (IsSecretHere(kind != sdk::JsonScalar::kNull &&
                     kind != sdk::JsonScalar::kBool)) {
      ResetCapture();
      if (!write(capture_)) return false;
      return Record(Path());
    }
    return write(*out_);
  }

  const SecretList& secrets() const { return secrets_; }
  bool too_deep() const { return too_deep_; }
  const char* wrong_type() const { return wrong_type_; }

 private:
  using Frame = sdk::JsonFrame;

  bool StartContainer(bool array) {
    if (static_cast<int>(frames_.size()) + capture_depth_ >=
        sdk::kMaxJsonDepth) {
      too_deep_ = true;
      return false;
    }
    if (capture_depth_ > 0) {
      ++capture_depth_;
      return array ? capture_.StartArray() : capture_.StartObject();
    }
    if (frames_.empty() && array) {
      wrong_type_ = "an array";
      return false;
    }
    BeginValue();
    if (IsSecretHere(/*credential_names_count=*/true)) {
      ResetCapture();
      capture_depth_ = 1;
      capture_path_ = Path();
      return array ? capture_.StartArray() : capture_.StartObject();
    }
    Frame frame;
    frame.array = array;
    frames_.push_back(std::move(frame));
    return array ? out_->StartArray() : out_->StartObject();
  }

  bool EndCapture() {
    if (--capture_depth_ > 0) return true;
    return Record(std::move(capture_path_));
  }

  // Stores the captured value under `path` and writes its placeholder.
  bool Record(std::string path) {
    std::string placeholder = sdk::SecretPlaceholder(path);
    secrets_.Put(std::move(path), std::string(capture_buffer_.GetString(),
                                              capture_buffer_.GetSize()));
    return out_->String(placeholder.data(),
                        static_cast<rapidjson::SizeType>(placeholder.size()));
  }

  void ResetCapture() {
    capture_buffer_.Clear();
    capture_.Reset(capture_buffer_);
  }

  void BeginValue() {
    if (!frames_.empty() && frames_.back().array) ++frames_.back().index;
  }

  // Whether the value about to be written is secret: its key is declared,
  // or (when `credential_names_count`) names a credential.
  bool IsSecretHere(bool credential_names_count) const {
    if (frames_.empty() || frames_.back().array) return false;
    const std::string& key = frames_.back().key;
    if (declared_.count(key) > 0) return true;
    return credential_names_count && IsCredentialName(key);
  }

  std::string Path() const { return sdk::DottedPath(frames_); }

  Writer* out_;
  const std::set<std::string>& declared_;
  std::vector<Frame> frames_;
  rapidjson::StringBuffer capture_buffer_;
  Writer capture_{capture_buffer_};
  int capture_depth_ = 0;
  std::string capture_path_;
  SecretList secrets_;
  bool too_deep_ = false;
  const char* wrong_type_ = nullptr;
};

// SAX handler for MaskSecrets: copies the document, every placeholder-shaped
// string replaced by the mask.
class Masker : public sdk::ScalarEvents<Masker, Writer> {
 public:
  explicit Masker(Writer* out) : out_(out) {}

  bool String(const char* s, rapidjson::SizeType n, bool) {
    if (IsPlaceholderShaped(absl::string_view(s, n))) {
      return Scalar(sdk::JsonScalar::kString, [](Writer& w) {
        return w.String(kSecretMask, sizeof(kSecretMask) - 1);
      });
    }
    return ScalarEvents::String(s, n, true);
  }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    return out_->Key(s, n);
  }
  bool StartObject() { return Enter() && out_->StartObject(); }
  bool EndObject(rapidjson::SizeType count) {
    --depth_;
    return out_->EndObject(count);
  }
  bool StartArray() {
    if (depth_ == 0) {
      wrong_type_ = "an array";
      return false;
    }
    return Enter() && out_->StartArray();
  }
  bool EndArray(rapidjson::SizeType count) {
    --depth_;
    return out_->EndArray(count);
  }

  template <typename F>
  bool Scalar(sdk::JsonScalar, F write) {
    if (depth_ == 0) {
      wrong_type_ = "a scalar";
      return false;
    }
    return write(*out_);
  }

  bool too_deep() const { return too_deep_; }
  const char* wrong_type() const { return wrong_type_; }

 private:
  bool Enter() {
    if (++depth_ > sdk::kMaxJsonDepth) {
      too_deep_ = true;
      return false;
    }
    return true;
  }

  Writer* out_;
  int depth_ = 0;
  bool too_deep_ = false;
  const char* wrong_type_ = nullptr;
};

absl::StatusOr<std::vector<sdk::JsonMember>> SplitObject(
    absl::string_view text, absl::string_view what) {
  absl::StatusOr<std::vector<sdk::JsonMember>> members =
      sdk::SplitJsonObject(text);
  if (!members.ok()) {
    return InvalidDocument(
        absl::StrCat(what, ": ", members.status().message()));
  }
  return members;
}

}  // namespace

bool IsCredentialName(absl::string_view key) {
  std::vector<std::string> words = WordsOf(key);
  if (words.empty()) return false;
  const std::string& last = words.back();
  for (const char* word :
       {"password", "passwd", "passphrase", "secret", "token", "apikey",
        "privatekey", "credential", "credentials"}) {
    if (last == word) return true;
  }
  if (words.size() >= 2 && last == "key") {
    const std::string& before = words[words.size() - 2];
    return before == "api" || before == "private";
  }
  return false;
}

absl::StatusOr<SecretSplit> ExtractSecrets(
    absl::string_view document_json, const std::set<std::string>& declared) {
  rapidjson::StringBuffer buffer;
  Writer writer(buffer);
  Extractor extractor(&writer, declared);
  rapidjson::MemoryStream stream(document_json.data(), document_json.size());
  rapidjson::Reader reader;
  rapidjson::ParseResult result = reader.Parse<kParseFlags>(stream, extractor);
  if (result.IsError() || extractor.wrong_type() != nullptr) {
    return ParseError(result, extractor.too_deep(), extractor.wrong_type(),
                      document_json);
  }
  SecretSplit split;
  split.document_json.assign(buffer.GetString(), buffer.GetSize());
  split.secrets_json = extractor.secrets().Json();
  return split;
}

absl::StatusOr<std::string> KeepMaskedSecrets(absl::string_view extracted,
                                              absl::string_view stored) {
  absl::StatusOr<std::vector<sdk::JsonMember>> updates =
      SplitObject(extracted, "extracted secrets");
  if (!updates.ok()) return updates.status();
  absl::StatusOr<std::vector<sdk::JsonMember>> kept =
      SplitObject(stored, "stored secrets");
  if (!kept.ok()) return kept.status();
  const std::string mask = sdk::JsonString(kSecretMask);
  SecretList result;
  for (sdk::JsonMember& update : *updates) {
    if (update.value != mask &&
        update.value != sdk::JsonString(sdk::SecretPlaceholder(update.key))) {
      result.Put(std::move(update.key), std::move(update.value));
      continue;
    }
    for (sdk::JsonMember& old : *kept) {
      if (old.key == update.key) {
        result.Put(std::move(update.key), std::move(old.value));
        break;
      }
    }
  }
  return result.Json();
}

absl::StatusOr<std::string> MaskSecrets(absl::string_view document_json) {
  rapidjson::StringBuffer buffer;
  Writer writer(buffer);
  Masker masker(&writer);
  rapidjson::MemoryStream stream(document_json.data(), document_json.size());
  rapidjson::Reader reader;
  rapidjson::ParseResult result = reader.Parse<kParseFlags>(stream, masker);
  if (result.IsError() || masker.wrong_type() != nullptr) {
    return ParseError(result, masker.too_deep(), masker.wrong_type(),
                      document_json);
  }
  return std::string(buffer.GetString(), buffer.GetSize());
}

absl::StatusOr<std::string> InjectSecrets(absl::string_view document_json,
                                          absl::string_view secrets_json) {
  absl::StatusOr<std::vector<sdk::JsonMember>> secrets =
      SplitObject(secrets_json, "secrets");
  if (!secrets.ok()) return secrets.status();
  if (sdk::JsonTypeOf(document_json) != "object") {
    absl::string_view type = sdk::JsonTypeOf(document_json);
    return InvalidDocument(absl::StrCat("expected a JSON object, got ",
                                        type.empty() ? "no value" : type));
  }
  std::map<std::string, std::string> values;
  for (sdk::JsonMember& secret : *secrets) {
    values[std::move(secret.key)] = std::move(secret.value);
  }
  absl::StatusOr<std::string> injected =
      sdk::ReplaceSecretPlaceholders(document_json, values);
  if (!injected.ok()) {
    return InvalidDocument(std::string(injected.status().message()));
  }
  return injected;
}

std::string BuildRuntimeSecretsJson(
    absl::string_view connector, absl::string_view id,
    absl::string_view values_json,
    const std::map<std::string, std::string>& env) {
  std::string values = "{}";
  bool valid = false;
  if (sdk::JsonTypeOf(values_json) == "object") {
    absl::StatusOr<std::string> compact = sdk::RewriteJson(values_json);
    if (compact.ok()) {
      values = *std::move(compact);
      valid = true;
    }
  }
  if (!valid) {
    IOT2MQTT_LOG(ERROR).With("connector", connector).With("id", id)
        << "secret values are not a JSON object; the runtime secrets file "
           "gets none";
  }
  sdk::JsonObjectBuilder env_object;
  for (const auto& [name, value] : env) env_object.Set(name, value);
  return sdk::JsonObjectBuilder()
      .Set("version", sdk::kRuntimeSecretsVersion)
      .Set("connector", connector)
      .Set("instance", id)
      .SetRaw("values", values)
      .SetRaw("env", env_object.Build())
      .Build();
}

}  // namespace iot2mqtt::config
