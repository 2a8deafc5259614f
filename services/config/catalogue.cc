#include "services/config/catalogue.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <iterator>
#include <system_error>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "rapidjson/document.h"
#include "services/common/status.h"
#include "services/config/file_io.h"

namespace iot2mqtt::config {

// One file of a connector as read (or refused).
struct ConnectorCatalogue::LoadedFile {
  enum class State { kMissing, kRead, kRefused };
  State state = State::kMissing;
  std::string content;  // kRead.
  std::string refusal;  // kRefused: why it was not read.

  // JSON files (setup.json, manifest.json), when read:
  std::string json_error;        // Not JSON / not an object; "" otherwise.
  rapidjson::Document document;  // The parsed object when json_error == "".
  std::vector<sdk::JsonMember> members;        // Its members, exact text.
  std::vector<SchemaProblem> schema_problems;  // setup.json only.

  bool read() const { return state == State::kRead; }
  // The parsed object, or nullptr.
  const rapidjson::Value* object() const {
    return read() && json_error.empty() && document.IsObject() ? &document
                                                               : nullptr;
  }
};

struct ConnectorCatalogue::Connector {
  std::string name;
  std::shared_ptr<const LoadedFile> setup;
  std::shared_ptr<const LoadedFile> manifest;
  std::shared_ptr<const LoadedFile> icon;
};

namespace {

using Connector = ConnectorCatalogue::Connector;
using FileKind = ConnectorCatalogue::FileKind;
using LoadedFile = ConnectorCatalogue::LoadedFile;

constexpr char kSetupFile[] = "setup.json";
constexpr char kManifestFile[] = "manifest.json";
constexpr char kIconFile[] = "icon.svg";
constexpr size_t kMaxNameLength = 63;
constexpr size_t kMaxProblemsInMessage = 10;

const char* FileName(FileKind kind) {
  switch (kind) {
    case FileKind::kSetup:
      return kSetupFile;
    case FileKind::kManifest:
      return kManifestFile;
    case FileKind::kIcon:
      return kIconFile;
  }
  return "";
}

std::string ErrnoText(int error) {
  return std::generic_category().message(error);
}

// A name as it can be shown in a message: escaped, at most 64 bytes.
std::string Printable(absl::string_view text) {
  constexpr size_t kMax = 64;
  if (text.size() <= kMax) return absl::CHexEscape(text);
  return absl::StrCat(absl::CHexEscape(text.substr(0, kMax)), "...");
}

bool IsValidName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              (i > 0 && (c == '_' || c == '-'));
    if (!ok) return false;
  }
  return true;
}

bool IsHiddenName(absl::string_view name) {
  return !name.empty() && (name[0] == '_' || name[0] == '.');
}

int64_t NsOf(const struct timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

int64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return NsOf(ts);
}

absl::Status ConnectorNotFound(absl::string_view name) {
  return common::WithReason(absl::NotFoundError(absl::StrCat(
                                "Integration not found: ", Printable(name))),
                            kConnectorNotFound,
                            {{"connector", Printable(name)}});
}

absl::Status Refused(const std::string& name, const LoadedFile& file,
                     const char* file_name) {
  return common::WithReason(
      absl::FailedPreconditionError(
          absl::StrCat(file_name, " of connector ", name, " ", file.refusal)),
      kConnectorFileRefused, {{"connector", name}, {"file", file_name}});
}

// Where the open file `fd` (opened as `path`) really is.
std::string ResolvedPathOf(int fd, const std::string& path) {
  char buffer[PATH_MAX + 1];
  std::string link = absl::StrCat("/proc/self/fd/", fd);
  ssize_t n = readlink(link.c_str(), buffer, PATH_MAX);
  if (n > 0) return std::string(buffer, static_cast<size_t>(n));
  char* resolved = realpath(path.c_str(), nullptr);
  if (resolved == nullptr) return "";
  std::string out(resolved);
  free(resolved);
  return out;
}

// Reads `path` into `file` if it is a regular file of at most 1 MiB that
// resolves inside `root`; otherwise marks it refused (or missing when it
// vanished). `st` receives the identity of what was opened.
void ReadConfined(const std::string& path, const std::string& root,
                  LoadedFile* file, struct stat* st) {
  ScopedFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (fd.get() < 0) {
    int error = errno;
    if (error == ENOENT) {
      file->state = LoadedFile::State::kMissing;
      return;
    }
    file->state = LoadedFile::State::kRefused;
    file->refusal = absl::StrCat("cannot be read: ", ErrnoText(error));
    return;
  }
  file->state = LoadedFile::State::kRefused;
  if (fstat(fd.get(), st) != 0) {
    file->refusal = absl::StrCat("cannot be read: ", ErrnoText(errno));
    return;
  }
  if (!S_ISREG(st->st_mode)) {
    file->refusal = "is not a regular file; not read";
    return;
  }
  if (st->st_size > kMaxConnectorFileBytes) {
    file->refusal = absl::StrCat("is larger than 1 MiB (", st->st_size,
                                 " bytes); not read");
    return;
  }
  std::string resolved = ResolvedPathOf(fd.get(), path);
  if (!absl::StartsWith(resolved, absl::StrCat(root, "/"))) {
    file->refusal = "resolves outside the connector directory; not read";
    return;
  }
  std::string content;
  char buffer[16384];
  while (true) {
    ssize_t n = read(fd.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      file->refusal = absl::StrCat("cannot be read: ", ErrnoText(errno));
      return;
    }
    if (n == 0) break;
    content.append(buffer, static_cast<size_t>(n));
    if (content.size() > static_cast<size_t>(kMaxConnectorFileBytes)) {
      file->refusal = "is larger than 1 MiB; not read";
      return;
    }
  }
  file->state = LoadedFile::State::kRead;
  file->content = std::move(content);
}

// Parses a read JSON file (setup.json or manifest.json).
void ParseJsonFile(FileKind kind, LoadedFile* file) {
  if (kind == FileKind::kSetup) {
    file->schema_problems = ValidateSetupSchema(file->content);
  }
  absl::StatusOr<std::string> checked = sdk::RewriteJson(file->content);
  if (!checked.ok()) {
    file->json_error = std::string(checked.status().message());
    return;
  }
  file->document.Parse<rapidjson::kParseFullPrecisionFlag |
                       rapidjson::kParseIterativeFlag>(file->content.data(),
                                                       file->content.size());
  if (file->document.HasParseError()) {
    file->json_error = "invalid JSON";
    return;
  }
  if (!file->document.IsObject()) {
    file->json_error = absl::StrCat("must be a JSON object, got ",
                                    sdk::DescribeJsonType(file->document));
    return;
  }
  absl::StatusOr<std::vector<sdk::JsonMember>> members =
      sdk::SplitJsonObject(file->content);
  if (members.ok()) file->members = *std::move(members);
}

absl::string_view View(const rapidjson::Value& string) {
  return absl::string_view(string.GetString(), string.GetStringLength());
}

// The last member `key` of `object` (duplicates: the last wins).
const rapidjson::Value* Find(const rapidjson::Value& object,
                             absl::string_view key) {
  const rapidjson::Value* found = nullptr;
  for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
    if (View(it->name) == key) found = &it->value;
  }
  return found;
}

// A string member of a JSON file's object.
std::optional<std::string> StringMember(const LoadedFile* file,
                                        absl::string_view key) {
  const rapidjson::Value* object = file == nullptr ? nullptr : file->object();
  if (object == nullptr) return std::nullopt;
  const rapidjson::Value* value = Find(*object, key);
  if (value == nullptr || !value->IsString()) return std::nullopt;
  return std::string(View(*value));
}

// The exact text of a member of a JSON file's object (not null).
std::optional<std::string> RawMember(const LoadedFile* file,
                                     absl::string_view key) {
  if (file == nullptr || file->object() == nullptr) return std::nullopt;
  std::optional<std::string> found;
  for (const sdk::JsonMember& member : file->members) {
    if (member.key == key) found = member.value;
  }
  if (found.has_value() && *found == "null") return std::nullopt;
  return found;
}

std::string JsonOrNull(const std::optional<std::string>& text) {
  return text.has_value() ? sdk::JsonString(*text) : "null";
}

std::string RawOrNull(const std::optional<std::string>& json) {
  return json.has_value() ? *json : "null";
}

std::string JsonArray(const std::vector<std::string>& elements_json) {
  return absl::StrCat("[", absl::StrJoin(elements_json, ","), "]");
}

std::string ProblemsJson(const std::vector<SchemaProblem>& problems) {
  std::vector<std::string> items;
  items.reserve(problems.size());
  for (const SchemaProblem& problem : problems) {
    items.push_back(sdk::JsonObjectBuilder()
                        .Set("path", problem.path)
                        .Set("message", problem.message)
                        .Build());
  }
  return JsonArray(items);
}

// Problems of one file as a whole (refused, not JSON, not an object).
void AddFileProblems(const LoadedFile* file, const char* file_name,
                     std::vector<SchemaProblem>* problems) {
  if (file == nullptr) return;
  if (file->state == LoadedFile::State::kRefused) {
    problems->push_back({file_name, file->refusal});
  }
}

// Every problem of setup.json (paths inside it, "setup.json" for the file).
std::vector<SchemaProblem> SetupProblems(const Connector& connector) {
  std::vector<SchemaProblem> problems;
  AddFileProblems(connector.setup.get(), kSetupFile, &problems);
  if (connector.setup != nullptr && connector.setup->read()) {
    for (const SchemaProblem& problem : connector.setup->schema_problems) {
      problems.push_back(
          {problem.path.empty() ? kSetupFile : problem.path, problem.message});
    }
  }
  return problems;
}

// Problems of manifest.json and icon.svg.
std::vector<SchemaProblem> OtherProblems(const Connector& connector) {
  std::vector<SchemaProblem> problems;
  AddFileProblems(connector.manifest.get(), kManifestFile, &problems);
  if (connector.manifest != nullptr && connector.manifest->read() &&
      !connector.manifest->json_error.empty()) {
    problems.push_back({kManifestFile, connector.manifest->json_error});
  }
  AddFileProblems(connector.icon.get(), kIconFile, &problems);
  return problems;
}

std::vector<SchemaProblem> AllProblems(const Connector& connector) {
  std::vector<SchemaProblem> problems = SetupProblems(connector);
  for (SchemaProblem& problem : OtherProblems(connector)) {
    problems.push_back(std::move(problem));
  }
  return problems;
}

bool HasSetup(const Connector& connector) {
  return connector.setup->state != LoadedFile::State::kMissing;
}

bool HasIcon(const Connector& connector) { return connector.icon->read(); }

std::string IconUrl(const std::string& name) {
  return absl::StrCat("/api/integrations/", name, "/icon");
}

std::string DisplayNameOf(const Connector& connector) {
  for (const auto& [file, key] :
       {std::make_pair(connector.setup.get(), "display_name"),
        std::make_pair(connector.manifest.get(), "display_name"),
        std::make_pair(connector.manifest.get(), "name")}) {
    std::optional<std::string> value = StringMember(file, key);
    if (value.has_value() && !value->empty()) return *value;
  }
  return connector.name;
}

std::optional<std::string> DescriptionOf(const Connector& connector) {
  std::optional<std::string> value =
      StringMember(connector.setup.get(), "description");
  return value.has_value()
             ? value
             : StringMember(connector.manifest.get(), "description");
}

std::optional<std::string> VersionOf(const Connector& connector) {
  std::optional<std::string> value =
      StringMember(connector.manifest.get(), "version");
  return value.has_value() ? value
                           : StringMember(connector.setup.get(), "version");
}

// setup.branding ∥ manifest.branding, each key kept, missing §5.6 defaults
// added.
std::string BrandingJson(const Connector& connector) {
  sdk::JsonObjectBuilder branding;
  std::optional<std::string> source =
      RawMember(connector.setup.get(), "branding");
  if (!source.has_value() || sdk::JsonTypeOf(*source) != "object") {
    source = RawMember(connector.manifest.get(), "branding");
  }
  std::set<std::string> keys;
  if (source.has_value() && sdk::JsonTypeOf(*source) == "object") {
    absl::StatusOr<std::vector<sdk::JsonMember>> members =
        sdk::SplitJsonObject(*source);
    if (members.ok()) {
      for (const sdk::JsonMember& member : *members) {
        branding.SetRaw(member.key, member.value);
        keys.insert(member.key);
      }
    }
  }
  std::string icon =
      HasIcon(connector) ? IconUrl(connector.name) : kDefaultBrandIcon;
  for (const auto& [key, value] :
       {std::make_pair("icon", icon.c_str()),
        std::make_pair("color", kDefaultBrandColor),
        std::make_pair("background", kDefaultBrandBackground),
        std::make_pair("category", kDefaultBrandCategory)}) {
    if (keys.count(key) == 0) branding.Set(key, value);
  }
  return branding.Build();
}

std::string IconJson(const Connector& connector) {
  return HasIcon(connector) ? sdk::JsonString(IconUrl(connector.name)) : "null";
}

// The id of the first flow with default:true, else of the first flow.
std::optional<std::string> DefaultFlowOf(const rapidjson::Value& flows) {
  for (const rapidjson::Value& flow : flows.GetArray()) {
    if (!flow.IsObject()) continue;
    const rapidjson::Value* is_default = Find(flow, "default");
    const rapidjson::Value* id = Find(flow, "id");
    if (is_default != nullptr && is_default->IsBool() &&
        is_default->GetBool() && id != nullptr && id->IsString()) {
      return std::string(View(*id));
    }
  }
  if (!flows.Empty() && flows[0].IsObject()) {
    const rapidjson::Value* id = Find(flows[0], "id");
    if (id != nullptr && id->IsString()) return std::string(View(*id));
  }
  return std::nullopt;
}

std::string StringOrNull(const rapidjson::Value& object,
                         absl::string_view key) {
  const rapidjson::Value* value = Find(object, key);
  return value != nullptr && value->IsString() ? sdk::JsonString(View(*value))
                                               : "null";
}

std::string AvailableEntry(const Connector& connector) {
  const rapidjson::Value* setup = connector.setup->object();
  const rapidjson::Value* flows =
      setup == nullptr ? nullptr : Find(*setup, "flows");
  if (flows != nullptr && !flows->IsArray()) flows = nullptr;

  std::string flows_json = "null";
  std::optional<std::string> default_flow;
  if (flows != nullptr) {
    std::vector<std::string> items;
    for (const rapidjson::Value& flow : flows->GetArray()) {
      if (!flow.IsObject()) continue;
      items.push_back(absl::StrCat(
          "{\"id\":", StringOrNull(flow, "id"),
          ",\"name\":", StringOrNull(flow, "name"),
          ",\"description\":", StringOrNull(flow, "description"), "}"));
    }
    flows_json = JsonArray(items);
    default_flow = DefaultFlowOf(*flows);
  }
  std::optional<std::string> author =
      StringMember(connector.setup.get(), "author");
  if (!author.has_value()) {
    author = StringMember(connector.manifest.get(), "author");
  }
  std::optional<std::string> discovery =
      RawMember(connector.setup.get(), "discovery");
  if (!discovery.has_value()) {
    discovery = RawMember(connector.manifest.get(), "discovery");
  }
  return sdk::JsonObjectBuilder()
      .Set("name", connector.name)
      .Set("display_name", DisplayNameOf(connector))
      .SetRaw("version", JsonOrNull(VersionOf(connector)))
      .Set("author", author.value_or("Unknown"))
      .SetRaw("description", JsonOrNull(DescriptionOf(connector)))
      .SetRaw("branding", BrandingJson(connector))
      .SetRaw("discovery", RawOrNull(discovery))
      .SetRaw("capabilities",
              RawOrNull(RawMember(connector.manifest.get(), "capabilities")))
      .SetRaw("default_flow", JsonOrNull(default_flow))
      .SetRaw("flows", flows_json)
      .SetRaw("problems", ProblemsJson(AllProblems(connector)))
      .Build();
}

absl::Status SchemaInvalid(const std::string& name,
                           const std::vector<SchemaProblem>& problems) {
  std::vector<std::string> shown;
  for (size_t i = 0; i < problems.size() && i < kMaxProblemsInMessage; ++i) {
    shown.push_back(absl::StrCat(problems[i].path, ": ", problems[i].message));
  }
  std::string message = absl::StrCat(
      "setup.json of connector ", name,
      " is invalid and can't be rendered: ", absl::StrJoin(shown, "; "));
  if (problems.size() > shown.size()) {
    absl::StrAppend(&message, "; and ", problems.size() - shown.size(),
                    " more");
  }
  return common::WithReason(
      absl::FailedPreconditionError(message), kSetupSchemaInvalid,
      {{"connector", name}, {"problems", ProblemsJson(problems)}});
}

// The connector's setup.json when it was read; the error otherwise.
absl::Status RequireSetup(const Connector& connector) {
  switch (connector.setup->state) {
    case LoadedFile::State::kMissing:
      return common::WithReason(
          absl::NotFoundError(
              absl::StrCat("connector ", connector.name, " has no setup.json")),
          kSetupNotFound, {{"connector", connector.name}});
    case LoadedFile::State::kRefused:
      return Refused(connector.name, *connector.setup, kSetupFile);
    case LoadedFile::State::kRead:
      break;
  }
  return absl::OkStatus();
}

// RequireSetup, and a setup.json without schema problems.
absl::Status RequireValidSetup(const Connector& connector) {
  IOT2MQTT_RETURN_IF_ERROR(RequireSetup(connector));
  std::vector<SchemaProblem> problems = SetupProblems(connector);
  if (!problems.empty()) return SchemaInvalid(connector.name, problems);
  return absl::OkStatus();
}

// FNV-1a, 64 bits.
class Fnv {
 public:
  void Add(absl::string_view data) {
    for (unsigned char c : data) {
      hash_ ^= c;
      hash_ *= 0x100000001b3ULL;
    }
    hash_ ^= 0xff;  // Separator, so ("ab","c") != ("a","bc").
    hash_ *= 0x100000001b3ULL;
  }
  uint64_t value() const { return hash_; }

 private:
  uint64_t hash_ = 0xcbf29ce484222325ULL;
};

// FNV-1a of the first 1 MiB + 1 bytes of `path`; nullopt when unreadable.
std::optional<uint64_t> HashFile(const std::string& path) {
  ScopedFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (fd.get() < 0) return std::nullopt;
  Fnv hash;
  char buffer[16384];
  size_t total = 0;
  while (total <= static_cast<size_t>(kMaxConnectorFileBytes)) {
    ssize_t n = read(fd.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) break;
    hash.Add(absl::string_view(buffer, static_cast<size_t>(n)));
    total += static_cast<size_t>(n);
  }
  return hash.value();
}

}  // namespace

ConnectorCatalogue::ConnectorCatalogue(std::string connectors_dir)
    : directory_(std::move(connectors_dir)) {}

absl::Status ConnectorCatalogue::ValidateName(absl::string_view name) {
  if (IsValidName(name)) return absl::OkStatus();
  std::string message =
      name.empty() ? absl::StrCat("connector name is required: expected ",
                                  kConnectorNamePattern)
                   : absl::StrCat("invalid connector name \"", Printable(name),
                                  "\": expected ", kConnectorNamePattern);
  return common::WithReason(
      absl::InvalidArgumentError(message), kInvalidConnectorName,
      {{"connector", Printable(name)}, {"pattern", kConnectorNamePattern}});
}

absl::StatusOr<ConnectorCatalogue::Connector> ConnectorCatalogue::Resolve(
    absl::string_view name) {
  // A template's or hidden folder's name ("_template") is not valid, but
  // it is "not found" rather than malformed. No path is built for it.
  if (IsHiddenName(name) && IsValidName(name.substr(1))) {
    return ConnectorNotFound(name);
  }
  IOT2MQTT_RETURN_IF_ERROR(ValidateName(name));
  return LoadConnector(std::string(name));
}

absl::StatusOr<ConnectorCatalogue::Connector> ConnectorCatalogue::LoadConnector(
    const std::string& name) {
  std::string path = absl::StrCat(directory_, "/", name);
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    int error = errno;
    if (error == ENOENT || error == ENOTDIR) {
      struct stat dir_st;
      if (stat(directory_.c_str(), &dir_st) != 0) {
        return StorageError(errno, "read connectors directory", directory_);
      }
      return ConnectorNotFound(name);
    }
    return StorageError(error, "read connector directory", path);
  }
  if (!S_ISDIR(st.st_mode)) return ConnectorNotFound(name);
  char* resolved = realpath(path.c_str(), nullptr);
  if (resolved == nullptr) {
    return StorageError(errno, "resolve connector directory", path);
  }
  std::string root(resolved);
  free(resolved);
  Connector connector;
  connector.name = name;
  connector.setup = Load(name, root, FileKind::kSetup);
  connector.manifest = Load(name, root, FileKind::kManifest);
  connector.icon = Load(name, root, FileKind::kIcon);
  return connector;
}

std::shared_ptr<const ConnectorCatalogue::LoadedFile> ConnectorCatalogue::Load(
    const std::string& name, const std::string& root, FileKind kind) {
  const char* file_name = FileName(kind);
  std::string path = absl::StrCat(root, "/", file_name);
  auto loaded = std::make_shared<LoadedFile>();
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    int error = errno;
    if (error == ENOENT || error == ENOTDIR) {
      if (lstat(path.c_str(), &st) == 0) {
        loaded->state = LoadedFile::State::kRefused;
        loaded->refusal = "is a symbolic link to nothing; not read";
      }
      return loaded;
    }
    loaded->state = LoadedFile::State::kRefused;
    loaded->refusal = absl::StrCat("cannot be read: ", ErrnoText(error));
    return loaded;
  }
  FileIdentity identity{st.st_dev, st.st_ino, st.st_size, NsOf(st.st_mtim),
                        NsOf(st.st_ctim)};
  {
    absl::MutexLock lock(&mu_);
    auto by_name = cache_.find(name);
    if (by_name != cache_.end()) {
      auto entry = by_name->second.find(file_name);
      if (entry != by_name->second.end() && entry->second.trusted &&
          entry->second.root == root && entry->second.identity == identity) {
        return entry->second.loaded;
      }
    }
  }
  struct stat read_st = st;
  ReadConfined(path, root, loaded.get(), &read_st);
  if (loaded->read() && kind != FileKind::kIcon)
    ParseJsonFile(kind, loaded.get());
  if (loaded->state == LoadedFile::State::kMissing) return loaded;
  CacheEntry entry;
  entry.identity = {read_st.st_dev, read_st.st_ino, read_st.st_size,
                    NsOf(read_st.st_mtim), NsOf(read_st.st_ctim)};
  entry.root = root;
  entry.trusted = NowNs() - entry.identity.mtime_ns >= kTrustAfterNs;
  entry.loaded = loaded;
  absl::MutexLock lock(&mu_);
  cache_[name][file_name] = std::move(entry);
  return loaded;
}

absl::StatusOr<std::vector<std::string>> ConnectorCatalogue::Scan() {
  absl::StatusOr<std::vector<std::string>> entries = ListDirectory(directory_);
  if (!entries.ok()) {
    if (absl::IsNotFound(entries.status())) {
      return StorageError(ENOENT, "list connectors directory", directory_);
    }
    return entries.status();
  }
  std::vector<std::string> names;
  std::vector<std::string> invalid;
  for (const std::string& entry : *entries) {
    if (IsHiddenName(entry)) continue;
    struct stat st;
    std::string path = absl::StrCat(directory_, "/", entry);
    if (stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    if (IsValidName(entry)) {
      names.push_back(entry);
    } else {
      invalid.push_back(entry);
    }
  }
  absl::MutexLock lock(&mu_);
  std::set<std::string> still_invalid;
  for (const std::string& entry : invalid) {
    if (warned_names_.count(entry) == 0) {
      IOT2MQTT_LOG(WARNING)
              .With("connector", Printable(entry))
              .With("directory", directory_)
          << "ignoring connector directory \"" << Printable(entry)
          << "\": its name does not match " << kConnectorNamePattern;
    }
    still_invalid.insert(entry);
  }
  warned_names_ = std::move(still_invalid);
  // Forget files of connectors that are gone.
  std::set<std::string> listed(names.begin(), names.end());
  for (auto it = cache_.begin(); it != cache_.end();) {
    it = listed.count(it->first) == 0 ? cache_.erase(it) : std::next(it);
  }
  return names;
}

absl::StatusOr<std::vector<ConnectorCatalogue::Connector>>
ConnectorCatalogue::LoadAll() {
  IOT2MQTT_ASSIGN_OR_RETURN(std::vector<std::string> names, Scan());
  std::vector<Connector> connectors;
  for (const std::string& name : names) {
    absl::StatusOr<Connector> connector = LoadConnector(name);
    // A folder removed since the scan is simply not listed.
    if (absl::IsNotFound(connector.status())) continue;
    if (!connector.ok()) {
      // One unreadable folder is a problem of its own, not of the list.
      Connector unreadable;
      unreadable.name = name;
      auto setup = std::make_shared<LoadedFile>();
      setup->state = LoadedFile::State::kRefused;
      setup->refusal =
          absl::StrCat("cannot be read: the folder is unreadable (",
                       connector.status().message(), ")");
      unreadable.setup = std::move(setup);
      unreadable.manifest = std::make_shared<LoadedFile>();
      unreadable.icon = std::make_shared<LoadedFile>();
      connectors.push_back(std::move(unreadable));
      continue;
    }
    connectors.push_back(*std::move(connector));
  }
  return connectors;
}

absl::StatusOr<std::string> ConnectorCatalogue::ListConnectorsJson(
    const std::map<std::string, std::vector<std::string>>& instance_ids) {
  IOT2MQTT_ASSIGN_OR_RETURN(std::vector<Connector> connectors, LoadAll());
  std::vector<std::string> items;
  for (const Connector& connector : connectors) {
    std::vector<std::string> ids;
    auto it = instance_ids.find(connector.name);
    if (it != instance_ids.end()) {
      for (const std::string& id : it->second)
        ids.push_back(sdk::JsonString(id));
    }
    items.push_back(
        sdk::JsonObjectBuilder()
            .Set("name", connector.name)
            .Set("display_name", DisplayNameOf(connector))
            .SetRaw("description", JsonOrNull(DescriptionOf(connector)))
            .SetRaw("icon", IconJson(connector))
            .SetRaw("instances", JsonArray(ids))
            .Set("has_setup", HasSetup(connector))
            .SetRaw("version", JsonOrNull(VersionOf(connector)))
            .SetRaw("problems", ProblemsJson(AllProblems(connector)))
            .Build());
  }
  return JsonArray(items);
}

absl::StatusOr<std::string> ConnectorCatalogue::ListAvailableJson() {
  IOT2MQTT_ASSIGN_OR_RETURN(std::vector<Connector> connectors, LoadAll());
  std::vector<std::string> items;
  for (const Connector& connector : connectors) {
    if (HasSetup(connector)) items.push_back(AvailableEntry(connector));
  }
  return JsonArray(items);
}

absl::StatusOr<std::string> ConnectorCatalogue::ListIntegrationsJson() {
  IOT2MQTT_ASSIGN_OR_RETURN(std::vector<Connector> connectors, LoadAll());
  std::vector<std::string> items;
  for (const Connector& connector : connectors) {
    items.push_back(
        sdk::JsonObjectBuilder()
            .Set("name", connector.name)
            .Set("display_name", DisplayNameOf(connector))
            .SetRaw("description", JsonOrNull(DescriptionOf(connector)))
            .SetRaw("icon", IconJson(connector))
            .Set("has_setup", HasSetup(connector))
            .SetRaw("version", JsonOrNull(VersionOf(connector)))
            .SetRaw("branding", BrandingJson(connector))
            .SetRaw("problems", ProblemsJson(AllProblems(connector)))
            .Build());
  }
  return JsonArray(items);
}

absl::StatusOr<std::string> ConnectorCatalogue::GetSetupJson(
    absl::string_view name) {
  IOT2MQTT_ASSIGN_OR_RETURN(Connector connector, Resolve(name));
  IOT2MQTT_RETURN_IF_ERROR(RequireSetup(connector));
  const LoadedFile& setup = *connector.setup;
  absl::StatusOr<std::string> checked = sdk::RewriteJson(setup.content);
  if (!checked.ok()) {
    return SchemaInvalid(
        connector.name,
        {{kSetupFile, std::string(checked.status().message())}});
  }
  return setup.content;
}

absl::StatusOr<std::string> ConnectorCatalogue::GetMetaJson(
    absl::string_view name) {
  IOT2MQTT_ASSIGN_OR_RETURN(Connector connector, Resolve(name));
  IOT2MQTT_RETURN_IF_ERROR(RequireValidSetup(connector));
  sdk::JsonObjectBuilder meta;
  for (const sdk::JsonMember& member : connector.setup->members) {
    meta.SetRaw(member.key, member.value);
  }
  meta.SetRaw("branding", BrandingJson(connector));
  if (HasIcon(connector)) meta.Set("icon_url", IconUrl(connector.name));
  meta.SetRaw("problems", ProblemsJson(OtherProblems(connector)));
  return meta.Build();
}

absl::StatusOr<Icon> ConnectorCatalogue::GetIcon(absl::string_view name) {
  IOT2MQTT_ASSIGN_OR_RETURN(Connector connector, Resolve(name));
  switch (connector.icon->state) {
    case LoadedFile::State::kMissing:
      return common::WithReason(
          absl::NotFoundError(absl::StrCat("Icon not found: connector ",
                                           connector.name, " has no icon.svg")),
          kIconNotFound, {{"connector", connector.name}});
    case LoadedFile::State::kRefused:
      return Refused(connector.name, *connector.icon, kIconFile);
    case LoadedFile::State::kRead:
      break;
  }
  return Icon{"image/svg+xml", connector.icon->content};
}

absl::StatusOr<std::string> ConnectorCatalogue::ValidateConfigJson(
    absl::string_view name, absl::string_view body_json) {
  // Arguments first: the name, then the body, before any file is read.
  if (!(IsHiddenName(name) && IsValidName(name.substr(1)))) {
    IOT2MQTT_RETURN_IF_ERROR(ValidateName(name));
  }
  absl::StatusOr<std::vector<sdk::JsonMember>> body =
      sdk::SplitJsonObject(body_json);
  if (!body.ok()) {
    return common::WithReason(
        absl::InvalidArgumentError(
            absl::StrCat("the request body must be {\"config\": {...}}: ",
                         body.status().message())),
        kInvalidConfig);
  }
  std::optional<std::string> config;
  for (const sdk::JsonMember& member : *body) {
    if (member.key == "config") config = member.value;
  }
  if (!config.has_value()) {
    return common::WithReason(
        absl::InvalidArgumentError(
            "config is required: the request body must be {\"config\": "
            "{...}}"),
        kInvalidConfig);
  }
  if (sdk::JsonTypeOf(*config) != "object") {
    return common::WithReason(
        absl::InvalidArgumentError(absl::StrCat(
            "config must be a JSON object, got ", sdk::JsonTypeOf(*config))),
        kInvalidConfig);
  }
  IOT2MQTT_ASSIGN_OR_RETURN(Connector connector, Resolve(name));
  IOT2MQTT_RETURN_IF_ERROR(RequireValidSetup(connector));
  return ValidateConfigAgainstSetup(connector.setup->content, *config);
}

absl::StatusOr<std::set<std::string>> ConnectorCatalogue::SecretFieldNames(
    absl::string_view name) {
  IOT2MQTT_ASSIGN_OR_RETURN(Connector connector, Resolve(name));
  if (!connector.setup->read()) return std::set<std::string>();
  return DeclaredSecretFields(connector.setup->content);
}

absl::StatusOr<std::string> ConnectorCatalogue::DisplayName(
    absl::string_view name) {
  IOT2MQTT_ASSIGN_OR_RETURN(Connector connector, Resolve(name));
  return DisplayNameOf(connector);
}

absl::StatusOr<std::string> ConnectorCatalogue::ManifestJson(
    absl::string_view name) {
  IOT2MQTT_ASSIGN_OR_RETURN(Connector connector, Resolve(name));
  const LoadedFile& manifest = *connector.manifest;
  switch (manifest.state) {
    case LoadedFile::State::kMissing:
      return std::string("{}");
    case LoadedFile::State::kRefused:
      return Refused(connector.name, manifest, kManifestFile);
    case LoadedFile::State::kRead:
      break;
  }
  if (!manifest.json_error.empty()) {
    return common::WithReason(absl::FailedPreconditionError(absl::StrCat(
                                  "manifest.json of connector ", connector.name,
                                  " is invalid: ", manifest.json_error)),
                              kManifestInvalid,
                              {{"connector", connector.name}});
  }
  return manifest.content;
}

std::vector<std::string> ConnectorCatalogue::Names() {
  absl::StatusOr<std::vector<std::string>> names = Scan();
  return names.ok() ? *std::move(names) : std::vector<std::string>();
}

std::string ConnectorCatalogue::FingerprintOf(
    const std::string& path, int64_t now_ns,
    std::map<std::string, HashedFile>* seen) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return lstat(path.c_str(), &st) == 0 ? "dangling" : "-";
  }
  HashedFile file;
  file.identity = {st.st_dev, st.st_ino, st.st_size, NsOf(st.st_mtim),
                   NsOf(st.st_ctim)};
  {
    absl::MutexLock lock(&mu_);
    auto cached = hashed_files_.find(path);
    if (cached != hashed_files_.end() && cached->second.trusted &&
        cached->second.identity == file.identity) {
      file = cached->second;
    } else {
      file.hash.reset();
    }
  }
  if (!file.trusted && S_ISREG(st.st_mode)) {
    // The content's hash too, so that an edit that keeps the size within
    // the timestamp granularity still changes the fingerprint.
    file.hash = HashFile(path);
    file.trusted = now_ns - file.identity.mtime_ns >= kTrustAfterNs;
  }
  (*seen)[path] = file;
  return absl::StrCat(
      static_cast<uint64_t>(st.st_dev), ":", static_cast<uint64_t>(st.st_ino),
      ":", static_cast<int64_t>(st.st_size), ":", file.identity.mtime_ns, ":",
      file.identity.ctime_ns, ":", static_cast<uint64_t>(st.st_mode), ":",
      file.hash.has_value() ? absl::StrCat(*file.hash) : "?");
}

std::string ConnectorCatalogue::Fingerprint() {
  absl::StatusOr<std::vector<std::string>> entries = ListDirectory(directory_);
  if (!entries.ok()) return "unavailable";
  int64_t now = NowNs();
  std::map<std::string, HashedFile> seen;
  Fnv hash;
  for (const std::string& entry : *entries) {
    if (IsHiddenName(entry) || !IsValidName(entry)) continue;
    std::string path = absl::StrCat(directory_, "/", entry);
    struct stat st;
    if (stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    hash.Add(entry);
    hash.Add(absl::StrCat(static_cast<uint64_t>(st.st_dev), ":",
                          static_cast<uint64_t>(st.st_ino)));
    for (const char* file : {kSetupFile, kManifestFile, kIconFile}) {
      hash.Add(FingerprintOf(absl::StrCat(path, "/", file), now, &seen));
    }
  }
  {
    absl::MutexLock lock(&mu_);
    hashed_files_ = std::move(seen);
  }
  return absl::StrFormat("%016x", hash.value());
}

}  // namespace iot2mqtt::config
