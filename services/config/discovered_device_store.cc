#include "services/config/discovered_device_store.h"

#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
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
#include "services/config/file_io.h"
#include "services/config/instance_store.h"

namespace iot2mqtt::config {
namespace {

constexpr mode_t kFileMode = 0600;
constexpr int kMaxPort = 65535;

// The typed fields, in the order they are written; a record member with one
// of these names is never an attribute.
constexpr absl::string_view kTypedFields[] = {
    "id",           "name",         "integration",
    "ip",           "port",         "model",
    "manufacturer", "capabilities", "discovered_at",
    "last_seen",    "added",        "added_at",
    "instance_id",  "mac",          "serial",
    "device_id"};

bool IsTypedField(absl::string_view key) {
  return std::find(std::begin(kTypedFields), std::end(kTypedFields), key) !=
         std::end(kTypedFields);
}

// An id as it can be shown in a message: escaped, at most 64 bytes.
std::string Printable(absl::string_view text) {
  constexpr size_t kMax = 64;
  if (text.size() <= kMax) return absl::CHexEscape(text);
  return absl::StrCat(absl::CHexEscape(text.substr(0, kMax)), "...");
}

absl::Status DeviceIdError(absl::string_view id, std::optional<int> index) {
  std::string where =
      index ? absl::StrCat("devices[", *index, "]: ") : std::string();
  std::string message =
      id.empty() ? absl::StrCat(where, "device id is required: it must match ",
                                kDeviceIdPattern)
                 : absl::StrCat(where, "invalid device id \"", Printable(id),
                                "\": it must match ", kDeviceIdPattern);
  std::map<std::string, std::string> metadata = {{"device_id", Printable(id)},
                                                 {"pattern", kDeviceIdPattern}};
  if (index) metadata["index"] = absl::StrCat(*index);
  return common::WithReason(absl::InvalidArgumentError(message),
                            kInvalidDeviceId, metadata);
}

absl::Status InvalidDevice(int index, absl::string_view id,
                           absl::string_view field, absl::string_view problem) {
  return common::WithReason(
      absl::InvalidArgumentError(absl::StrCat(
          "devices[", index, "] (", Printable(id), "): ", field, " ", problem)),
      kInvalidDevice,
      {{"device_id", Printable(id)},
       {"field", std::string(field)},
       {"index", absl::StrCat(index)}});
}

absl::Status NotFound(absl::string_view id) {
  return common::WithReason(
      absl::NotFoundError(absl::StrCat("Device ", id, " not found")),
      kDeviceNotFound, {{"device_id", std::string(id)}});
}

// The string a compact JSON string literal holds.
std::optional<std::string> DecodeString(const std::string& json) {
  if (sdk::JsonTypeOf(json) != "string") return std::nullopt;
  rapidjson::Document document;
  document.Parse(json.data(), json.size());
  if (document.HasParseError() || !document.IsString()) return std::nullopt;
  return std::string(document.GetString(), document.GetStringLength());
}

// {"k":v,...} from members ("" when there are none).
std::string ObjectText(const std::vector<sdk::JsonMember>& members) {
  if (members.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < members.size(); ++i) {
    if (i > 0) out.push_back(',');
    absl::StrAppend(&out, sdk::JsonString(members[i].key), ":",
                    members[i].value);
  }
  out.push_back('}');
  return out;
}

// Sets `key` in `members`: replaced in place when present, else appended.
void SetMember(std::vector<sdk::JsonMember>& members, std::string key,
               std::string value) {
  for (sdk::JsonMember& member : members) {
    if (member.key == key) {
      member.value = std::move(value);
      return;
    }
  }
  members.push_back({std::move(key), std::move(value)});
}

// The members of a stored (already validated) object text; none for "".
std::vector<sdk::JsonMember> MembersOf(const std::string& object) {
  if (object.empty()) return {};
  absl::StatusOr<std::vector<sdk::JsonMember>> members =
      sdk::SplitJsonObject(object);
  return members.ok() ? *std::move(members) : std::vector<sdk::JsonMember>{};
}

// Splits a compact JSON array into its elements' compact texts, numbers
// kept exactly as written.
class ArraySplitter
    : public sdk::ScalarEvents<ArraySplitter,
                               rapidjson::Writer<rapidjson::StringBuffer>> {
 public:
  template <typename Write>
  bool Scalar(sdk::JsonScalar, Write write) {
    if (depth_ == 0) return false;  // Not an array.
    if (depth_ == 1) Begin();
    if (!write(writer_)) return false;
    if (depth_ == 1) End();
    return true;
  }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    return writer_.Key(s, n);
  }
  bool StartObject() {
    if (depth_ == 0) return false;
    if (depth_ == 1) Begin();
    ++depth_;
    return writer_.StartObject();
  }
  bool EndObject(rapidjson::SizeType n) {
    --depth_;
    if (!writer_.EndObject(n)) return false;
    if (depth_ == 1) End();
    return true;
  }
  bool StartArray() {
    if (depth_ == 0) {
      depth_ = 1;
      return true;
    }
    if (depth_ == 1) Begin();
    ++depth_;
    return writer_.StartArray();
  }
  bool EndArray(rapidjson::SizeType n) {
    --depth_;
    if (depth_ == 0) return true;
    if (!writer_.EndArray(n)) return false;
    if (depth_ == 1) End();
    return true;
  }
  std::vector<std::string>& elements() { return elements_; }

 private:
  void Begin() {
    buffer_.Clear();
    writer_.Reset(buffer_);
  }
  void End() { elements_.emplace_back(buffer_.GetString(), buffer_.GetSize()); }

  int depth_ = 0;
  rapidjson::StringBuffer buffer_;
  rapidjson::Writer<rapidjson::StringBuffer> writer_{buffer_};
  std::vector<std::string> elements_;
};

absl::StatusOr<std::vector<std::string>> SplitArray(const std::string& json) {
  rapidjson::MemoryStream stream(json.data(), json.size());
  rapidjson::Reader reader;
  ArraySplitter splitter;
  constexpr unsigned kFlags =
      rapidjson::kParseNumbersAsStringsFlag | rapidjson::kParseIterativeFlag;
  if (reader.Parse<kFlags>(stream, splitter).IsError()) {
    return absl::InvalidArgumentError("not a JSON array");
  }
  return std::move(splitter.elements());
}

// One record of the file; nullopt (with the reason in `problems`) when it
// is skipped. Wrong-typed fields are dropped and noted in `problems`.
std::optional<DiscoveredDevice> DecodeRecord(
    const std::string& json, size_t index, std::vector<std::string>* problems) {
  absl::StatusOr<std::vector<sdk::JsonMember>> members =
      sdk::SplitJsonObject(json);
  if (!members.ok()) {
    problems->push_back(absl::StrCat("record ", index, " skipped: it is ",
                                     sdk::DescribeJsonType(json),
                                     ", not an object"));
    return std::nullopt;
  }
  DiscoveredDevice device;
  std::vector<sdk::JsonMember> attributes;
  std::vector<std::string> dropped;
  for (sdk::JsonMember& member : *members) {
    const std::string& key = member.key;
    const std::string& value = member.value;
    if (!IsTypedField(key)) {
      SetMember(attributes, key, std::move(member.value));
      continue;
    }
    const bool is_null = value == "null";
    if (key == "port") {
      int port = 0;
      if (is_null) {
        device.set_port(0);
      } else if (absl::SimpleAtoi(value, &port) && port >= 0 &&
                 port <= kMaxPort && sdk::JsonTypeOf(value) == "number") {
        device.set_port(port);
      } else {
        dropped.push_back(key);
      }
    } else if (key == "added") {
      if (value == "true" || value == "false" || is_null) {
        device.set_added(value == "true");
      } else {
        dropped.push_back(key);
      }
    } else if (key == "capabilities") {
      if (is_null) {
        device.clear_capabilities();
      } else if (sdk::JsonTypeOf(value) == "object") {
        device.set_capabilities(value);
      } else {
        dropped.push_back(key);
      }
    } else {
      std::optional<std::string> text = DecodeString(value);
      if (!text && !is_null) {
        dropped.push_back(key);
        continue;
      }
      std::string decoded = text ? *std::move(text) : std::string();
      // Every other typed field is a string field of the same name.
      const google::protobuf::FieldDescriptor* field =
          DiscoveredDevice::descriptor()->FindFieldByName(key);
      if (field != nullptr) {
        device.GetReflection()->SetString(&device, field, std::move(decoded));
      }
    }
  }
  if (!IsValidDeviceId(device.id())) {
    problems->push_back(absl::StrCat(
        "record ", index, " skipped: ",
        device.id().empty()
            ? std::string("it has no id")
            : absl::StrCat("invalid id \"", Printable(device.id()), "\"")));
    return std::nullopt;
  }
  for (const std::string& key : dropped) {
    problems->push_back(absl::StrCat("record ", device.id(), ": field ", key,
                                     " ignored (wrong type)"));
  }
  device.set_attributes(ObjectText(attributes));
  return device;
}

// The record as written: typed fields, then the attributes.
std::string EncodeRecord(const DiscoveredDevice& device) {
  sdk::JsonObjectBuilder record;
  auto optional = [&record](absl::string_view key, const std::string& value) {
    if (!value.empty()) record.Set(key, value);
  };
  record.Set("id", device.id())
      .Set("name", device.name())
      .Set("integration", device.integration());
  optional("ip", device.ip());
  if (device.port() != 0) record.Set("port", device.port());
  optional("model", device.model());
  optional("manufacturer", device.manufacturer());
  if (!device.capabilities().empty()) {
    record.SetRaw("capabilities", device.capabilities());
  }
  record.Set("discovered_at", device.discovered_at());
  optional("last_seen", device.last_seen());
  record.Set("added", device.added());
  optional("added_at", device.added_at());
  optional("instance_id", device.instance_id());
  optional("mac", device.mac());
  optional("serial", device.serial());
  optional("device_id", device.device_id());
  for (sdk::JsonMember& member : MembersOf(device.attributes())) {
    if (!IsTypedField(member.key)) record.SetRaw(member.key, member.value);
  }
  return record.Build();
}

// "" / "null" → ""; a JSON object → its compact text; else INVALID_DEVICE.
absl::StatusOr<std::string> NormalizeObject(const std::string& value, int index,
                                            absl::string_view id,
                                            absl::string_view field) {
  if (value.empty()) return std::string();
  absl::StatusOr<std::string> compact = sdk::RewriteJson(value);
  if (!compact.ok()) {
    return InvalidDevice(
        index, id, field,
        absl::StrCat("is not valid JSON: ", compact.status().message()));
  }
  if (*compact == "null") return std::string();
  if (sdk::JsonTypeOf(*compact) != "object") {
    return InvalidDevice(index, id, field,
                         absl::StrCat("must be a JSON object, got ",
                                      sdk::DescribeJsonType(*compact)));
  }
  if (compact->size() > DiscoveredDeviceStore::kMaxJsonBytes) {
    return InvalidDevice(
        index, id, field,
        absl::StrCat("is longer than ", DiscoveredDeviceStore::kMaxJsonBytes,
                     " bytes"));
  }
  if (field == "attributes") {
    // Typed fields own their names in the file.
    std::vector<sdk::JsonMember> kept;
    for (sdk::JsonMember& member : MembersOf(*compact)) {
      if (!IsTypedField(member.key)) {
        SetMember(kept, std::move(member.key), std::move(member.value));
      }
    }
    return ObjectText(kept);
  }
  return compact;
}

// A reported device, validated, with its JSON fields normalised and the
// bookkeeping fields cleared.
absl::StatusOr<DiscoveredDevice> ValidateReported(
    const DiscoveredDevice& reported, int index,
    absl::string_view integration) {
  if (!IsValidDeviceId(reported.id())) {
    return DeviceIdError(reported.id(), index);
  }
  const std::string& id = reported.id();
  const std::pair<absl::string_view, const std::string*> strings[] = {
      {"name", &reported.name()},
      {"ip", &reported.ip()},
      {"model", &reported.model()},
      {"manufacturer", &reported.manufacturer()},
      {"mac", &reported.mac()},
      {"serial", &reported.serial()},
      {"device_id", &reported.device_id()}};
  for (const auto& [field, value] : strings) {
    if (value->size() > DiscoveredDeviceStore::kMaxStringBytes) {
      return InvalidDevice(
          index, id, field,
          absl::StrCat("is longer than ",
                       DiscoveredDeviceStore::kMaxStringBytes, " bytes"));
    }
  }
  if (reported.port() < 0 || reported.port() > kMaxPort) {
    return InvalidDevice(
        index, id, "port",
        absl::StrCat("must be 0..", kMaxPort, ", got ", reported.port()));
  }
  DiscoveredDevice device = reported;
  IOT2MQTT_ASSIGN_OR_RETURN(
      *device.mutable_capabilities(),
      NormalizeObject(reported.capabilities(), index, id, "capabilities"));
  IOT2MQTT_ASSIGN_OR_RETURN(
      *device.mutable_attributes(),
      NormalizeObject(reported.attributes(), index, id, "attributes"));
  device.set_integration(std::string(integration));
  device.clear_discovered_at();
  device.clear_last_seen();
  device.clear_added();
  device.clear_added_at();
  device.clear_instance_id();
  return device;
}

// A known record updated with a report: non-empty reported fields replace,
// attributes merge key by key; bookkeeping kept.
void MergeInto(const DiscoveredDevice& report, DiscoveredDevice* stored) {
  auto take = [](const std::string& from, std::string* to) {
    if (!from.empty()) *to = from;
  };
  take(report.name(), stored->mutable_name());
  stored->set_integration(report.integration());
  take(report.ip(), stored->mutable_ip());
  if (report.port() != 0) stored->set_port(report.port());
  take(report.model(), stored->mutable_model());
  take(report.manufacturer(), stored->mutable_manufacturer());
  take(report.capabilities(), stored->mutable_capabilities());
  take(report.mac(), stored->mutable_mac());
  take(report.serial(), stored->mutable_serial());
  take(report.device_id(), stored->mutable_device_id());
  if (!report.attributes().empty()) {
    std::vector<sdk::JsonMember> merged = MembersOf(stored->attributes());
    for (sdk::JsonMember& member : MembersOf(report.attributes())) {
      SetMember(merged, std::move(member.key), std::move(member.value));
    }
    stored->set_attributes(ObjectText(merged));
  }
}

}  // namespace

// What the file holds.
struct DiscoveredDeviceStore::Contents {
  std::vector<DiscoveredDevice> devices;
  std::optional<std::string> last_scan;  // nullopt: null.
  std::vector<sdk::JsonMember> extra;    // Other top-level keys, kept.

  DiscoveredDevice* Find(absl::string_view id) {
    for (DiscoveredDevice& device : devices) {
      if (device.id() == id) return &device;
    }
    return nullptr;
  }
};

namespace {

absl::Status Corrupt(const std::string& path, absl::string_view problem) {
  return common::WithReason(
      absl::FailedPreconditionError(absl::StrCat(
          "the discovered devices file ", path, " is unusable: ", problem,
          "; fix it or delete it (a new scan recreates it)")),
      kStoreCorrupt, {{"path", path}});
}

std::string Render(const std::vector<DiscoveredDevice>& devices,
                   const std::optional<std::string>& last_scan,
                   const std::vector<sdk::JsonMember>& extra) {
  std::string out = "{\"devices\":[";
  for (size_t i = 0; i < devices.size(); ++i) {
    if (i > 0) out.push_back(',');
    out += EncodeRecord(devices[i]);
  }
  absl::StrAppend(&out, "],\"last_scan\":",
                  last_scan ? sdk::JsonString(*last_scan) : "null");
  for (const sdk::JsonMember& member : extra) {
    absl::StrAppend(&out, ",", sdk::JsonString(member.key), ":", member.value);
  }
  out.push_back('}');
  return out;
}

}  // namespace

bool IsValidDeviceId(absl::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  auto lower_or_digit = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  };
  if (!lower_or_digit(id[0])) return false;
  return std::all_of(id.begin() + 1, id.end(), [&](char c) {
    return lower_or_digit(c) || c == '_' || c == '-';
  });
}

absl::Status ValidateDeviceId(absl::string_view id) {
  if (IsValidDeviceId(id)) return absl::OkStatus();
  return DeviceIdError(id, std::nullopt);
}

DiscoveredDeviceStore::DiscoveredDeviceStore(
    DiscoveredDeviceStoreOptions options)
    : options_(std::move(options)),
      path_(absl::StrCat(options_.data_dir, "/", kDiscoveredDevicesFile)),
      lock_path_(absl::StrCat(options_.data_dir, "/.", kDiscoveredDevicesFile,
                              ".lock")) {}

std::string DiscoveredDeviceStore::Now() const {
  return options_.clock ? options_.clock() : UtcNowIso8601();
}

absl::StatusOr<DiscoveredDeviceStore::Contents> DiscoveredDeviceStore::Load() {
  Contents contents;
  absl::StatusOr<std::string> text = ReadWholeFile(path_);
  if (absl::IsNotFound(text.status())) return contents;
  if (!text.ok()) return text.status();

  absl::StatusOr<std::vector<sdk::JsonMember>> members =
      sdk::SplitJsonObject(*text);
  if (!members.ok()) {
    return Corrupt(path_, absl::StrCat("it is not a JSON object (",
                                       members.status().message(), ")"));
  }
  std::string devices_json = "[]";
  for (sdk::JsonMember& member : *members) {
    if (member.key == "devices") {
      if (member.value == "null") {
        devices_json = "[]";
      } else if (sdk::JsonTypeOf(member.value) != "array") {
        return Corrupt(path_, absl::StrCat("\"devices\" is ",
                                           sdk::DescribeJsonType(member.value),
                                           ", not an array"));
      } else {
        devices_json = std::move(member.value);
      }
    } else if (member.key == "last_scan") {
      contents.last_scan = DecodeString(member.value);
    } else {
      SetMember(contents.extra, std::move(member.key), std::move(member.value));
    }
  }
  IOT2MQTT_ASSIGN_OR_RETURN(std::vector<std::string> records,
                            SplitArray(devices_json));

  std::vector<std::string> problems;
  absl::flat_hash_set<std::string> seen;
  for (size_t i = 0; i < records.size(); ++i) {
    std::optional<DiscoveredDevice> device =
        DecodeRecord(records[i], i, &problems);
    if (!device) continue;
    if (!seen.insert(device->id()).second) {
      problems.push_back(absl::StrCat("record ", i, " skipped: id ",
                                      device->id(), " appears earlier"));
      continue;
    }
    contents.devices.push_back(*std::move(device));
  }
  if (!problems.empty()) {
    // Once per file content, not on every listing.
    const size_t hash = std::hash<std::string>()(*text);
    absl::MutexLock lock(&warn_mu_);
    if (hash != warned_hash_) {
      warned_hash_ = hash;
      for (const std::string& problem : problems) {
        IOT2MQTT_LOG(WARNING).With("path", path_)
            << "discovered devices: " << problem;
      }
    }
  }
  return contents;
}

absl::Status DiscoveredDeviceStore::Mutate(
    const std::function<absl::StatusOr<bool>(Contents&)>& mutate) {
  absl::MutexLock process_lock(&write_mu_);
  IOT2MQTT_ASSIGN_OR_RETURN(FileLock file_lock, FileLock::Acquire(lock_path_));
  IOT2MQTT_ASSIGN_OR_RETURN(Contents contents, Load());
  IOT2MQTT_ASSIGN_OR_RETURN(bool changed, mutate(contents));
  if (!changed) return absl::OkStatus();
  IOT2MQTT_ASSIGN_OR_RETURN(
      std::string pretty,
      sdk::RewriteJson(
          Render(contents.devices, contents.last_scan, contents.extra),
          sdk::JsonFormat::kPretty));
  pretty.push_back('\n');
  return WriteFileAtomically(path_, pretty, kFileMode);
}

absl::StatusOr<DiscoveredDeviceStore::Listing> DiscoveredDeviceStore::List(
    absl::string_view integration) {
  if (!integration.empty()) {
    IOT2MQTT_RETURN_IF_ERROR(ValidateConnectorName(integration));
  }
  IOT2MQTT_ASSIGN_OR_RETURN(Contents contents, Load());
  Listing listing;
  listing.last_scan = contents.last_scan.value_or("");
  for (DiscoveredDevice& device : contents.devices) {
    if (integration.empty() || device.integration() == integration) {
      listing.devices.push_back(std::move(device));
    }
  }
  return listing;
}

absl::StatusOr<DiscoveredDeviceStore::RecordResult>
DiscoveredDeviceStore::Record(absl::string_view integration,
                              const std::vector<DiscoveredDevice>& devices,
                              bool scan_completed) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateConnectorName(integration));
  if (devices.size() > options_.max_devices_per_request) {
    return common::WithReason(
        absl::ResourceExhaustedError(absl::StrCat(
            "a scan may report at most ", options_.max_devices_per_request,
            " devices at once, got ", devices.size())),
        kTooManyDiscoveredDevices,
        {{"limit", absl::StrCat(options_.max_devices_per_request)},
         {"scope", "request"}});
  }
  std::vector<DiscoveredDevice> reports;
  reports.reserve(devices.size());
  for (size_t i = 0; i < devices.size(); ++i) {
    IOT2MQTT_ASSIGN_OR_RETURN(
        DiscoveredDevice report,
        ValidateReported(devices[i], static_cast<int>(i), integration));
    reports.push_back(std::move(report));
  }
  RecordResult result;
  if (reports.empty() && !scan_completed) return result;

  absl::flat_hash_set<std::string> distinct;
  for (const DiscoveredDevice& report : reports) distinct.insert(report.id());
  if (distinct.size() == 1) result.single_device_id = reports.front().id();

  const std::string now = Now();
  IOT2MQTT_RETURN_IF_ERROR(
      Mutate([&](Contents& contents) -> absl::StatusOr<bool> {
        result.new_devices = 0;
        result.devices.clear();
        for (const DiscoveredDevice& report : reports) {
          DiscoveredDevice* stored = contents.Find(report.id());
          if (stored == nullptr) {
            ++result.new_devices;
            contents.devices.push_back(report);
            stored = &contents.devices.back();
            stored->set_discovered_at(now);
          } else {
            MergeInto(report, stored);
          }
          stored->set_last_seen(now);
        }
        if (result.new_devices > 0 &&
            contents.devices.size() > options_.max_devices) {
          return common::WithReason(
              absl::ResourceExhaustedError(absl::StrCat(
                  "at most ", options_.max_devices,
                  " discovered devices are kept: delete some first")),
              kTooManyDiscoveredDevices,
              {{"limit", absl::StrCat(options_.max_devices)},
               {"scope", "store"}});
        }
        if (scan_completed) contents.last_scan = now;
        for (const DiscoveredDevice& report : reports) {
          result.devices.push_back(*contents.Find(report.id()));
        }
        return true;
      }));
  result.changed = true;
  return result;
}

absl::StatusOr<DiscoveredDevice> DiscoveredDeviceStore::MarkAdded(
    absl::string_view device_id, absl::string_view instance_id) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateDeviceId(device_id));
  IOT2MQTT_RETURN_IF_ERROR(ValidateInstanceId(instance_id));
  const std::string now = Now();
  DiscoveredDevice marked;
  IOT2MQTT_RETURN_IF_ERROR(
      Mutate([&](Contents& contents) -> absl::StatusOr<bool> {
        DiscoveredDevice* device = contents.Find(device_id);
        if (device == nullptr) return NotFound(device_id);
        device->set_added(true);
        device->set_added_at(now);
        device->set_instance_id(std::string(instance_id));
        marked = *device;
        return true;
      }));
  return marked;
}

absl::Status DiscoveredDeviceStore::Delete(absl::string_view device_id) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateDeviceId(device_id));
  return Mutate([&](Contents& contents) -> absl::StatusOr<bool> {
    auto it = std::find_if(
        contents.devices.begin(), contents.devices.end(),
        [&](const DiscoveredDevice& d) { return d.id() == device_id; });
    if (it == contents.devices.end()) return NotFound(device_id);
    contents.devices.erase(it);
    return true;
  });
}

}  // namespace iot2mqtt::config
