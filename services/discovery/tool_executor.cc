#include "services/discovery/tool_executor.h"

#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "iot2mqtt/sdk/json_sax.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "rapidjson/document.h"
#include "rapidjson/memorystream.h"
#include "rapidjson/reader.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"
#include "services/common/status.h"
#include "services/orchestrator/build_context.h"
#include "services/orchestrator/process_runtime.h"

namespace iot2mqtt::discovery {
namespace {

constexpr char kInvalidSetup[] = "INVALID_SETUP";
constexpr char kInvalidToolDeclaration[] = "INVALID_TOOL_DECLARATION";
constexpr char kToolNotFound[] = "TOOL_NOT_FOUND";
constexpr char kToolHasNoEntry[] = "TOOL_HAS_NO_ENTRY";
constexpr char kEntryNotFound[] = "ENTRY_NOT_FOUND";
constexpr char kEntryOutsideConnector[] = "ENTRY_OUTSIDE_CONNECTOR";
constexpr char kInvalidInput[] = "INVALID_INPUT";
constexpr char kTooManyTools[] = "TOO_MANY_TOOLS";

constexpr char kMask[] = "******";
constexpr size_t kMaxMessageBytes = 4096;
constexpr double kMinTimeoutSeconds = 1;
constexpr double kMaxTimeoutSeconds = 600;
constexpr absl::Duration kDefaultTimeout = absl::Seconds(30);
constexpr char kBasePath[] = "/usr/local/bin:/usr/bin:/bin";

bool IsEnvName(absl::string_view name) {
  if (name.empty() ||
      absl::ascii_isdigit(static_cast<unsigned char>(name[0]))) {
    return false;
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_') {
      return false;
    }
  }
  return true;
}

absl::Status InvalidSetup(std::string message) {
  return common::WithReason(absl::FailedPreconditionError(std::move(message)),
                            kInvalidSetup);
}

absl::Status InvalidTool(absl::string_view tool_id, absl::string_view what) {
  return common::WithReason(absl::FailedPreconditionError(
                                absl::StrCat("Tool '", tool_id, "': ", what)),
                            kInvalidToolDeclaration,
                            {{"tool", std::string(tool_id)}});
}

// Parses a setup.json text; INVALID_SETUP unless it is a JSON object.
absl::Status ParseSetup(absl::string_view text, rapidjson::Document* doc) {
  doc->Parse<rapidjson::kParseValidateEncodingFlag>(text.data(), text.size());
  if (doc->HasParseError()) {
    return InvalidSetup(absl::StrCat("setup.json is not valid JSON (offset ",
                                     doc->GetErrorOffset(), ")"));
  }
  if (!doc->IsObject()) return InvalidSetup("setup.json is not a JSON object");
  return absl::OkStatus();
}

const rapidjson::Value* Member(const rapidjson::Value& object,
                               absl::string_view key) {
  if (!object.IsObject()) return nullptr;
  auto it = object.FindMember(
      rapidjson::Value(rapidjson::StringRef(key.data(), key.size())));
  if (it == object.MemberEnd() || it->value.IsNull()) return nullptr;
  return &it->value;
}

absl::StatusOr<absl::Duration> ParseTimeout(const rapidjson::Value& value,
                                            absl::string_view tool_id,
                                            absl::string_view field) {
  if (!value.IsNumber() || !(value.GetDouble() >= kMinTimeoutSeconds) ||
      !(value.GetDouble() <= kMaxTimeoutSeconds)) {
    return InvalidTool(tool_id, absl::StrCat(field,
                                             " must be a number of seconds "
                                             "from 1 to 600"));
  }
  return absl::Seconds(value.GetDouble());
}

// `tools.<id>` as an object (the declaration itself is not checked).
absl::StatusOr<const rapidjson::Value*> FindTool(const rapidjson::Value& setup,
                                                 absl::string_view connector,
                                                 absl::string_view tool_id) {
  const rapidjson::Value* tools = Member(setup, "tools");
  if (tools != nullptr && !tools->IsObject()) {
    return InvalidTool(tool_id, "setup.json `tools` is not an object");
  }
  const rapidjson::Value* tool =
      tools == nullptr ? nullptr : Member(*tools, tool_id);
  if (tool == nullptr) {
    return common::WithReason(
        absl::NotFoundError(
            absl::StrCat("Tool '", tool_id, "' not found for ", connector)),
        kToolNotFound,
        {{"tool", std::string(tool_id)},
         {"integration", std::string(connector)}});
  }
  if (!tool->IsObject()) {
    return InvalidTool(tool_id, "the declaration is not an object");
  }
  return tool;
}

absl::StatusOr<ToolDeclaration> ParseTool(const rapidjson::Value& object,
                                          absl::string_view tool_id) {
  ToolDeclaration tool;
  tool.id = std::string(tool_id);
  const rapidjson::Value* entry = Member(object, "entry");
  if (entry != nullptr && !entry->IsString()) {
    return InvalidTool(tool_id, "entry must be a string");
  }
  if (entry == nullptr || entry->GetStringLength() == 0) {
    return common::WithReason(absl::FailedPreconditionError(absl::StrCat(
                                  "Tool '", tool_id, "' has no entry")),
                              kToolHasNoEntry,
                              {{"tool", std::string(tool_id)}});
  }
  tool.entry.assign(entry->GetString(), entry->GetStringLength());
  if (const rapidjson::Value* timeout = Member(object, "timeout")) {
    IOT2MQTT_ASSIGN_OR_RETURN(tool.timeout,
                              ParseTimeout(*timeout, tool_id, "timeout"));
  }
  if (const rapidjson::Value* secrets = Member(object, "secrets")) {
    if (!secrets->IsArray()) {
      return InvalidTool(tool_id, "secrets must be an array of input keys");
    }
    for (const rapidjson::Value& key : secrets->GetArray()) {
      if (!key.IsString()) {
        return InvalidTool(tool_id, "secrets must be an array of input keys");
      }
      tool.secrets.emplace_back(key.GetString(), key.GetStringLength());
    }
  }
  if (const rapidjson::Value* env = Member(object, "environment")) {
    if (!env->IsObject()) {
      return InvalidTool(tool_id, "environment must be an object of strings");
    }
    for (const auto& member : env->GetObject()) {
      std::string name(member.name.GetString(), member.name.GetStringLength());
      if (!IsEnvName(name)) {
        return InvalidTool(
            tool_id, absl::StrCat("environment name \"", name,
                                  "\" must match [A-Za-z_][A-Za-z0-9_]*"));
      }
      if (!member.value.IsString()) {
        return InvalidTool(tool_id, absl::StrCat("environment value of ", name,
                                                 " must be a string"));
      }
      tool.environment.emplace_back(
          std::move(name), std::string(member.value.GetString(),
                                       member.value.GetStringLength()));
    }
  }
  if (const rapidjson::Value* network = Member(object, "network")) {
    absl::string_view value =
        network->IsString() ? absl::string_view(network->GetString(),
                                                network->GetStringLength())
                            : absl::string_view();
    if (value == "none") {
      tool.network = ToolNetwork::kNone;
    } else if (value == "local") {
      tool.network = ToolNetwork::kLocal;
    } else if (value == "internet") {
      tool.network = ToolNetwork::kInternet;
    } else {
      return InvalidTool(tool_id,
                         "network must be \"none\", \"local\" or \"internet\"");
    }
  }
  return tool;
}

// Expands ${NAME} and ${NAME:-default} from this process's environment.
std::string ExpandValue(absl::string_view value) {
  std::string out;
  size_t i = 0;
  while (i < value.size()) {
    if (value[i] != '$' || i + 1 >= value.size() || value[i + 1] != '{') {
      out.push_back(value[i++]);
      continue;
    }
    size_t name_start = i + 2;
    size_t j = name_start;
    while (j < value.size() &&
           (absl::ascii_isalnum(static_cast<unsigned char>(value[j])) ||
            value[j] == '_')) {
      ++j;
    }
    absl::string_view name = value.substr(name_start, j - name_start);
    if (!IsEnvName(name) || j >= value.size()) {
      out.push_back(value[i++]);  // Not a reference: literal.
      continue;
    }
    std::string name_text(name);
    const char* current = std::getenv(name_text.c_str());
    if (value[j] == '}') {
      if (current != nullptr) out += current;
      i = j + 1;
      continue;
    }
    if (value.substr(j, 2) == ":-") {
      size_t close = value.find('}', j + 2);
      if (close != absl::string_view::npos) {
        if (current != nullptr && current[0] != '\0') {
          out += current;
        } else {
          out.append(value.data() + j + 2, close - (j + 2));
        }
        i = close + 1;
        continue;
      }
    }
    out.push_back(value[i++]);
  }
  return out;
}

// Copies a JSON object, masking every string (values and keys) and keeping
// numbers as their exact text. Fails unless the text is one JSON object.
class MaskingCopier
    : public sdk::ScalarEvents<MaskingCopier,
                               rapidjson::Writer<rapidjson::StringBuffer>> {
 public:
  using Writer = rapidjson::Writer<rapidjson::StringBuffer>;
  MaskingCopier(Writer* writer, const std::vector<std::string>* secrets)
      : writer_(writer), secrets_(secrets) {}

  template <typename Write>
  bool Scalar(sdk::JsonScalar, Write write) {
    return depth_ > 0 && write(*writer_);
  }
  bool String(const char* s, rapidjson::SizeType n, bool) {
    if (depth_ == 0) return false;
    std::string masked = MaskSecrets(absl::string_view(s, n), *secrets_);
    return writer_->String(masked.data(),
                           static_cast<rapidjson::SizeType>(masked.size()));
  }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    std::string masked = MaskSecrets(absl::string_view(s, n), *secrets_);
    return writer_->Key(masked.data(),
                        static_cast<rapidjson::SizeType>(masked.size()));
  }
  bool StartObject() { return Enter() && writer_->StartObject(); }
  bool EndObject(rapidjson::SizeType count) {
    --depth_;
    return writer_->EndObject(count);
  }
  bool StartArray() { return depth_ > 0 && Enter() && writer_->StartArray(); }
  bool EndArray(rapidjson::SizeType count) {
    --depth_;
    return writer_->EndArray(count);
  }

 private:
  bool Enter() { return ++depth_ <= sdk::kMaxJsonDepth; }
  Writer* writer_;
  const std::vector<std::string>* secrets_;
  int depth_ = 0;
};

absl::StatusOr<std::string> MaskJsonObject(
    absl::string_view text, const std::vector<std::string>& secrets) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  MaskingCopier copier(&writer, &secrets);
  rapidjson::MemoryStream stream(text.data(), text.size());
  rapidjson::Reader reader;
  constexpr unsigned kFlags = rapidjson::kParseValidateEncodingFlag |
                              rapidjson::kParseNumbersAsStringsFlag |
                              rapidjson::kParseIterativeFlag;
  if (reader.Parse<kFlags>(stream, copier).IsError()) {
    return absl::InvalidArgumentError("not one JSON object");
  }
  return std::string(buffer.GetString(), buffer.GetSize());
}

std::string ErrorResult(absl::string_view code, absl::string_view message,
                        bool retriable) {
  return sdk::JsonObjectBuilder()
      .Set("ok", false)
      .SetRaw("error", sdk::JsonObjectBuilder()
                           .Set("code", code)
                           .Set("message", message)
                           .Set("retriable", retriable)
                           .Build())
      .Build();
}

// Drops a tail of `text` that is a proper prefix of a secret (the text was
// cut at a limit, possibly in the middle of one).
void DropSecretPrefixTail(std::string* text,
                          const std::vector<std::string>& secrets) {
  for (const std::string& secret : secrets) {
    for (size_t k = std::min(secret.size() - 1, text->size()); k > 0; --k) {
      if (absl::EndsWith(*text, absl::string_view(secret).substr(0, k))) {
        text->resize(text->size() - k);
        break;
      }
    }
  }
}

// The stderr of a failed tool as its error message: masked, trimmed, the
// last kMaxMessageBytes at most.
std::string StderrMessage(const ChildResult& child,
                          const std::vector<std::string>& secrets) {
  std::string text = child.stderr_text;
  if (child.stderr_truncated) DropSecretPrefixTail(&text, secrets);
  std::string masked = MaskSecrets(text, secrets);
  absl::string_view trimmed = absl::StripAsciiWhitespace(masked);
  if (trimmed.size() <= kMaxMessageBytes) return std::string(trimmed);
  size_t start = trimmed.size() - (kMaxMessageBytes - 3);
  // Start on a UTF-8 character boundary.
  while (start < trimmed.size() &&
         (static_cast<unsigned char>(trimmed[start]) & 0xC0) == 0x80) {
    ++start;
  }
  return absl::StrCat("...", trimmed.substr(start));
}

std::string SignalName(int signal_number) {
  const char* abbrev = sigabbrev_np(signal_number);
  if (abbrev == nullptr) return absl::StrCat(signal_number);
  return absl::StrCat("SIG", abbrev);
}

std::string SecondsText(absl::Duration d) {
  return absl::StrFormat("%g", absl::ToDoubleSeconds(d));
}

ToolRun Interpret(const ChildResult& child, const ToolDeclaration& tool,
                  const std::vector<std::string>& secrets,
                  const ChildLimits& limits) {
  ToolRun run;
  run.elapsed = child.elapsed;
  run.exit_code = child.end == ChildResult::End::kExited ? child.exit_code : -1;
  auto fail = [&](absl::string_view code, absl::string_view message,
                  bool retriable) {
    run.ok = false;
    run.error_code = std::string(code);
    run.result_json =
        ErrorResult(code, MaskSecrets(message, secrets), retriable);
    return run;
  };
  switch (child.end) {
    case ChildResult::End::kExited:
      break;
    case ChildResult::End::kSignaled: {
      std::string message = StderrMessage(child, secrets);
      if (message.empty()) {
        message =
            absl::StrCat("killed by signal ", SignalName(child.term_signal));
      }
      return fail("tool_failed", message, false);
    }
    case ChildResult::End::kTimedOut:
      return fail("timeout",
                  absl::StrCat("Tool '", tool.id, "' timed out after ",
                               SecondsText(tool.timeout), " s"),
                  true);
    case ChildResult::End::kCancelled:
      return fail("executor_error", "cancelled", false);
    case ChildResult::End::kOutputTooLarge:
      return fail("invalid_output",
                  absl::StrCat("Tool output exceeds ", limits.max_stdout_bytes,
                               " bytes"),
                  false);
    case ChildResult::End::kSpawnFailed:
      return fail("executor_error", child.spawn_error, false);
  }
  if (child.exit_code != 0) {
    std::string message = StderrMessage(child, secrets);
    if (message.empty()) {
      message = absl::StrCat("non-zero exit code ", child.exit_code);
    }
    return fail("tool_failed", message, false);
  }
  if (absl::StripAsciiWhitespace(child.stdout_text).empty()) {
    return fail("invalid_output", "Tool printed nothing", false);
  }
  absl::StatusOr<std::string> masked =
      MaskJsonObject(child.stdout_text, secrets);
  if (!masked.ok()) {
    return fail("invalid_output", "Tool returned invalid JSON", false);
  }
  run.result_json = *std::move(masked);
  rapidjson::Document doc;
  doc.Parse(run.result_json.data(), run.result_json.size());
  const rapidjson::Value* ok = doc.IsObject() ? Member(doc, "ok") : nullptr;
  bool has_ok = doc.IsObject() && doc.HasMember("ok");
  run.ok = !has_ok || (ok != nullptr && ok->IsTrue());
  if (!run.ok) {
    const rapidjson::Value* error = Member(doc, "error");
    const rapidjson::Value* code =
        error != nullptr ? Member(*error, "code") : nullptr;
    if (code != nullptr && code->IsString()) {
      run.error_code.assign(code->GetString(), code->GetStringLength());
    }
  }
  return run;
}

}  // namespace

absl::StatusOr<ToolDeclaration> ParseToolDeclaration(
    absl::string_view setup_json, absl::string_view connector,
    absl::string_view tool_id) {
  rapidjson::Document doc;
  IOT2MQTT_RETURN_IF_ERROR(ParseSetup(setup_json, &doc));
  IOT2MQTT_ASSIGN_OR_RETURN(const rapidjson::Value* tool,
                            FindTool(doc, connector, tool_id));
  return ParseTool(*tool, tool_id);
}

absl::StatusOr<DiscoveryDeclaration> ParseDiscoveryDeclaration(
    absl::string_view setup_json) {
  rapidjson::Document doc;
  IOT2MQTT_RETURN_IF_ERROR(ParseSetup(setup_json, &doc));
  DiscoveryDeclaration discovery;
  const rapidjson::Value* object = Member(doc, "discovery");
  if (object == nullptr) return discovery;
  auto invalid = [](absl::string_view what) {
    return common::WithReason(
        absl::FailedPreconditionError(absl::StrCat("discovery: ", what)),
        kInvalidToolDeclaration);
  };
  if (!object->IsObject()) return invalid("must be an object");
  if (const rapidjson::Value* supported = Member(*object, "supported")) {
    if (!supported->IsBool()) return invalid("supported must be a boolean");
    if (!supported->GetBool()) return discovery;
  }
  const rapidjson::Value* tool = Member(*object, "tool");
  if (tool == nullptr || !tool->IsString() || tool->GetStringLength() == 0) {
    return invalid("`tool` must name a tool of `tools`");
  }
  discovery.tool.assign(tool->GetString(), tool->GetStringLength());
  const rapidjson::Value* tools = Member(doc, "tools");
  const rapidjson::Value* declared =
      tools != nullptr ? Member(*tools, discovery.tool) : nullptr;
  if (declared == nullptr || !declared->IsObject()) {
    return invalid(
        absl::StrCat("tool '", discovery.tool, "' is not declared in `tools`"));
  }
  discovery.timeout = kDefaultTimeout;
  if (const rapidjson::Value* timeout = Member(*object, "timeout")) {
    IOT2MQTT_ASSIGN_OR_RETURN(
        discovery.timeout,
        ParseTimeout(*timeout, discovery.tool, "discovery timeout"));
  } else if (const rapidjson::Value* tool_timeout =
                 Member(*declared, "timeout")) {
    absl::StatusOr<absl::Duration> parsed =
        ParseTimeout(*tool_timeout, discovery.tool, "timeout");
    if (parsed.ok()) discovery.timeout = *parsed;
  }
  discovery.supported = true;
  return discovery;
}

std::string MaskSecrets(absl::string_view text,
                        const std::vector<std::string>& secrets) {
  // Marks every byte covered by an occurrence of any secret, then replaces
  // each run of marked bytes by one mask: overlapping or nested secrets
  // leave no part of either behind.
  std::vector<bool> covered;
  for (const std::string& secret : secrets) {
    if (secret.empty() || secret.size() > text.size()) continue;
    for (size_t at = text.find(secret); at != absl::string_view::npos;
         at = text.find(secret, at + 1)) {
      if (covered.empty()) covered.assign(text.size(), false);
      std::fill(
          covered.begin() + static_cast<std::ptrdiff_t>(at),
          covered.begin() + static_cast<std::ptrdiff_t>(at + secret.size()),
          true);
    }
  }
  if (covered.empty()) return std::string(text);
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (!covered[i]) {
      out.push_back(text[i++]);
      continue;
    }
    out += kMask;
    while (i < text.size() && covered[i]) ++i;
  }
  return out;
}

std::vector<std::string> SecretValues(const ToolDeclaration& tool,
                                      absl::string_view input_json) {
  std::vector<std::string> values;
  if (tool.secrets.empty()) return values;
  rapidjson::Document doc;
  // Numbers arrive as strings holding their exact text.
  doc.Parse<rapidjson::kParseNumbersAsStringsFlag>(input_json.data(),
                                                   input_json.size());
  if (doc.HasParseError() || !doc.IsObject()) return values;
  for (const std::string& key : tool.secrets) {
    const rapidjson::Value* value = Member(doc, key);
    if (value == nullptr || !value->IsString() ||
        value->GetStringLength() == 0) {
      continue;
    }
    std::string text(value->GetString(), value->GetStringLength());
    std::string quoted = sdk::JsonString(text);
    std::string escaped = quoted.substr(1, quoted.size() - 2);
    if (std::find(values.begin(), values.end(), text) == values.end()) {
      values.push_back(text);
    }
    if (escaped != text &&
        std::find(values.begin(), values.end(), escaped) == values.end()) {
      values.push_back(std::move(escaped));
    }
  }
  return values;
}

ToolExecutor::ToolExecutor(ToolExecutorOptions options)
    : options_(std::move(options)) {
  if (options_.bin_dirs.empty()) {
    std::string dir = orchestrator::RunningExecutableDir();
    if (!dir.empty()) options_.bin_dirs.push_back(std::move(dir));
  }
  options_.max_concurrent = std::max(options_.max_concurrent, 1);
}

absl::StatusOr<std::string> ToolExecutor::ResolveEntry(
    const std::string& connector_dir, const std::string& entry) const {
  auto outside = [&entry]() {
    return common::WithReason(
        absl::FailedPreconditionError(absl::StrCat(
            "Entry script must stay inside the connector directory: ", entry)),
        kEntryOutsideConnector, {{"entry", entry}});
  };
  auto not_found = [&entry]() {
    return common::WithReason(
        absl::NotFoundError(absl::StrCat("Entry script not found: ", entry)),
        kEntryNotFound, {{"entry", entry}});
  };
  if (!entry.empty() && entry[0] == '/') return outside();
  for (absl::string_view part : absl::StrSplit(entry, '/')) {
    if (part == "..") return outside();
  }
  absl::StatusOr<std::string> resolved = orchestrator::ResolveProcessEntry(
      connector_dir, entry, options_.bin_dirs);
  if (resolved.ok()) return resolved;
  // ResolveProcessEntry says ENTRY_NOT_FOUND for a link leading out as well:
  // tell that case apart.
  char root[PATH_MAX];
  char real[PATH_MAX];
  struct stat st;
  if (!entry.empty() && realpath(connector_dir.c_str(), root) != nullptr) {
    std::string candidate = absl::StrCat(root, "/", entry);
    if (lstat(candidate.c_str(), &st) == 0 &&
        realpath(candidate.c_str(), real) != nullptr &&
        !absl::StartsWith(real, absl::StrCat(root, "/"))) {
      return outside();
    }
  }
  return not_found();
}

std::vector<std::string> ToolExecutor::Environment(
    const ToolDeclaration& tool,
    const std::vector<std::pair<std::string, std::string>>& extra) const {
  std::vector<std::pair<std::string, std::string>> vars;
  auto set = [&vars](absl::string_view name, std::string value) {
    if (!IsEnvName(name)) return;
    for (auto& var : vars) {
      if (var.first == name) {
        var.second = std::move(value);
        return;
      }
    }
    vars.emplace_back(std::string(name), std::move(value));
  };
  set("PATH", kBasePath);
  set("HOME", "/tmp");
  set("LANG", "C.UTF-8");
  set("IOT2MQTT_TOOL", tool.id);
  for (const std::string& pair : options_.passthrough_env) {
    size_t equals = pair.find('=');
    if (equals == std::string::npos) continue;
    set(absl::string_view(pair).substr(0, equals), pair.substr(equals + 1));
  }
  for (const auto& [name, value] : tool.environment) {
    set(name, ExpandValue(value));
  }
  for (const auto& [name, value] : extra) set(name, value);
  std::vector<std::string> env;
  env.reserve(vars.size());
  for (const auto& [name, value] : vars) {
    env.push_back(absl::StrCat(name, "=", value));
  }
  return env;
}

absl::StatusOr<ToolRun> ToolExecutor::Execute(
    const std::string& connector, const std::string& connector_dir,
    const ToolDeclaration& tool, absl::string_view input_json,
    CancelToken* cancel,
    const std::vector<std::pair<std::string, std::string>>& extra_env) {
  std::string input = "{}";
  absl::string_view given = absl::StripAsciiWhitespace(input_json);
  if (!given.empty() && given != "null") {
    absl::StatusOr<std::string> rewritten = sdk::RewriteJson(given);
    if (!rewritten.ok() || sdk::JsonTypeOf(*rewritten) != "object") {
      return common::WithReason(
          absl::InvalidArgumentError(
              !rewritten.ok()
                  ? absl::StrCat("input: ", rewritten.status().message())
                  : "input must be a JSON object"),
          kInvalidInput);
    }
    input = *std::move(rewritten);
  }
  IOT2MQTT_ASSIGN_OR_RETURN(std::string executable,
                            ResolveEntry(connector_dir, tool.entry));
  char root[PATH_MAX];
  if (realpath(connector_dir.c_str(), root) == nullptr) {
    return common::WithReason(absl::NotFoundError(absl::StrCat(
                                  "Entry script not found: ", tool.entry)),
                              kEntryNotFound, {{"entry", tool.entry}});
  }
  {
    absl::MutexLock lock(&mu_);
    if (running_ >= options_.max_concurrent) {
      return common::WithReason(
          absl::ResourceExhaustedError(
              absl::StrCat("Too many tools running (at most ",
                           options_.max_concurrent, " at once)")),
          kTooManyTools, {{"limit", absl::StrCat(options_.max_concurrent)}});
    }
    ++running_;
  }
  struct Release {
    ToolExecutor* self;
    ~Release() {
      absl::MutexLock lock(&self->mu_);
      --self->running_;
    }
  } release{this};

  const std::vector<std::string> secrets = SecretValues(tool, input);
  ChildSpec spec;
  spec.executable = std::move(executable);
  spec.working_dir = root;
  spec.env = Environment(tool, extra_env);
  spec.stdin_data = absl::StrCat("{\"tool\":", sdk::JsonString(tool.id),
                                 ",\"input\":", input, "}");
  spec.isolate_network = tool.network == ToolNetwork::kNone;
  spec.timeout = tool.timeout;
  spec.limits = options_.limits;
  ChildResult child = RunChild(spec, cancel);
  ToolRun run = Interpret(child, tool, secrets, options_.limits);
  IOT2MQTT_LOG(INFO)
          .With("connector", connector)
          .With("tool", tool.id)
          .With("end", EndName(child.end))
          .With("exit_code", run.exit_code)
          .With("result", run.ok ? std::string("ok") : run.error_code)
          .With("elapsed_ms", absl::ToDoubleMilliseconds(child.elapsed))
          .With("stdout_bytes", static_cast<int64_t>(child.stdout_text.size()))
          .With("stderr_bytes", static_cast<int64_t>(child.stderr_text.size()))
      << "tool run finished";
  return run;
}

int ToolExecutor::running() const {
  absl::MutexLock lock(&mu_);
  return running_;
}

}  // namespace iot2mqtt::discovery
