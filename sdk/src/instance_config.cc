#include "iot2mqtt/sdk/instance_config.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "iot2mqtt/sdk/contract.h"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "iot2mqtt/sdk/log.h"
#include "rapidjson/error/en.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace iot2mqtt::sdk {
namespace {

std::shared_ptr<const rapidjson::Document> EmptyObject() {
  static const auto* const empty = [] {
    auto doc = std::make_shared<rapidjson::Document>();
    doc->SetObject();
    return new std::shared_ptr<const rapidjson::Document>(std::move(doc));
  }();
  return *empty;
}

bool NumberOf(const rapidjson::Value& v, double* out) {
  if (v.IsNumber()) {
    *out = v.GetDouble();
    return true;
  }
  if (v.IsString()) {
    return absl::SimpleAtod(
               absl::string_view(v.GetString(), v.GetStringLength()), out) &&
           std::isfinite(*out);
  }
  return false;
}

}  // namespace

ConfigObject::ConfigObject() : doc_(EmptyObject()), value_(doc_.get()) {}

absl::StatusOr<ConfigObject> ConfigObject::Parse(absl::string_view json) {
  auto doc = std::make_shared<rapidjson::Document>();
  doc->Parse<rapidjson::kParseFullPrecisionFlag |
             rapidjson::kParseValidateEncodingFlag>(json.data(), json.size());
  if (doc->HasParseError()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid JSON at offset ", doc->GetErrorOffset(), ": ",
                     rapidjson::GetParseError_En(doc->GetParseError())));
  }
  if (!doc->IsObject()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected a JSON object, got ", DescribeJsonType(*doc)));
  }
  const rapidjson::Value* root = doc.get();
  return ConfigObject(std::move(doc), root);
}

std::string ConfigObject::json() const {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  value_->Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

const rapidjson::Value* ConfigObject::Find(absl::string_view key) const {
  if (!value_->IsObject()) return nullptr;
  for (const auto& member : value_->GetObject()) {
    if (absl::string_view(member.name.GetString(),
                          member.name.GetStringLength()) == key) {
      return &member.value;
    }
  }
  return nullptr;
}

std::string ConfigObject::GetString(absl::string_view key,
                                    absl::string_view fallback) const {
  const rapidjson::Value* v = Find(key);
  if (v == nullptr || !v->IsString()) return std::string(fallback);
  return std::string(v->GetString(), v->GetStringLength());
}

int64_t ConfigObject::GetInt(absl::string_view key, int64_t fallback) const {
  const rapidjson::Value* v = Find(key);
  if (v == nullptr) return fallback;
  if (v->IsInt64()) return v->GetInt64();
  double d = 0;
  if (NumberOf(*v, &d) && d == std::floor(d) && std::fabs(d) < 9.0e18) {
    return static_cast<int64_t>(d);
  }
  return fallback;
}

double ConfigObject::GetDouble(absl::string_view key, double fallback) const {
  const rapidjson::Value* v = Find(key);
  double d = 0;
  if (v == nullptr || !NumberOf(*v, &d)) return fallback;
  return d;
}

bool ConfigObject::GetBool(absl::string_view key, bool fallback) const {
  const rapidjson::Value* v = Find(key);
  if (v == nullptr || !v->IsBool()) return fallback;
  return v->GetBool();
}

ConfigObject ConfigObject::GetObject(absl::string_view key) const {
  const rapidjson::Value* v = Find(key);
  if (v == nullptr || !v->IsObject()) return ConfigObject();
  return ConfigObject(doc_, v);
}

ConfigObject InstanceConfig::settings() const {
  // Top-level keys first; "connection" only for keys missing there. Merged
  // into a fresh document.
  auto doc = std::make_shared<rapidjson::Document>();
  doc->SetObject();
  auto& alloc = doc->GetAllocator();
  const rapidjson::Value& top = document.value();
  for (const auto& member : top.GetObject()) {
    doc->AddMember(rapidjson::Value(member.name, alloc),
                   rapidjson::Value(member.value, alloc), alloc);
  }
  ConfigObject connection = document.GetObject("connection");
  for (const auto& member : connection.value().GetObject()) {
    if (document.Find(absl::string_view(member.name.GetString(),
                                        member.name.GetStringLength())) ==
        nullptr) {
      doc->AddMember(rapidjson::Value(member.name, alloc),
                     rapidjson::Value(member.value, alloc), alloc);
    }
  }
  std::string text;
  {
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
    doc->Accept(writer);
    text.assign(buffer.GetString(), buffer.GetSize());
  }
  absl::StatusOr<ConfigObject> merged = ConfigObject::Parse(text);
  return merged.ok() ? *merged : ConfigObject();
}

const DeviceConfig* InstanceConfig::FindDevice(
    absl::string_view device_id) const {
  for (const DeviceConfig& device : devices) {
    if (device.device_id == device_id) return &device;
  }
  return nullptr;
}

const GroupConfig* InstanceConfig::FindGroup(absl::string_view group_id) const {
  for (const GroupConfig& group : groups) {
    if (group.group_id == group_id) return &group;
  }
  return nullptr;
}

std::string InstanceConfigPath(const Env& env, absl::string_view instance) {
  std::optional<std::string> path = env.Get("IOT2MQTT_INSTANCE_FILE");
  if (path.has_value() && !path->empty()) return *path;
  return absl::StrCat(kDefaultInstancesDir, "/", instance, ".json");
}

absl::StatusOr<InstanceConfig> ParseInstanceConfig(
    absl::string_view json, absl::string_view instance,
    absl::string_view connector_type_fallback) {
  absl::StatusOr<ConfigObject> document = ConfigObject::Parse(json);
  if (!document.ok()) return document.status();
  InstanceConfig config;
  config.instance_id = std::string(instance);
  config.document = *document;
  const ConfigObject& doc = config.document;
  std::vector<std::string> problems;

  if (const rapidjson::Value* id = doc.Find("instance_id");
      id != nullptr && id->IsString() &&
      absl::string_view(id->GetString(), id->GetStringLength()) != instance) {
    IOT2MQTT_LOG(WARNING)
            .With("instance_id", std::string(id->GetString()))
            .With("instance", instance)
        << "the config's instance_id differs from INSTANCE_NAME; topics use "
           "INSTANCE_NAME";
  }

  if (const rapidjson::Value* type = doc.Find("connector_type");
      type != nullptr && !type->IsNull()) {
    if (type->IsString()) {
      config.connector_type.assign(type->GetString(), type->GetStringLength());
    } else {
      problems.push_back(absl::StrCat("connector_type must be a string, got ",
                                      DescribeJsonType(*type)));
    }
  }
  if (config.connector_type.empty()) {
    config.connector_type = connector_type_fallback.empty()
                                ? "unknown"
                                : std::string(connector_type_fallback);
  }

  if (const rapidjson::Value* interval = doc.Find("update_interval");
      interval != nullptr && !interval->IsNull()) {
    double seconds = 0;
    if (!NumberOf(*interval, &seconds)) {
      problems.push_back(
          absl::StrCat("update_interval must be a number of seconds, got ",
                       DescribeJsonType(*interval)));
    } else if (seconds < absl::ToDoubleSeconds(kMinUpdateInterval)) {
      problems.push_back(absl::StrCat("update_interval=", seconds,
                                      " is below the minimum of 0.1 s"));
    } else {
      config.update_interval = absl::Seconds(seconds);
    }
  }

  std::set<std::string> device_ids;
  if (const rapidjson::Value* devices = doc.Find("devices");
      devices != nullptr && !devices->IsNull()) {
    if (!devices->IsArray()) {
      problems.push_back(absl::StrCat("devices must be an array, got ",
                                      DescribeJsonType(*devices)));
    } else {
      int index = 0;
      for (const rapidjson::Value& entry : devices->GetArray()) {
        std::string where = absl::StrCat("devices[", index++, "]");
        if (!entry.IsObject()) {
          problems.push_back(absl::StrCat(where, " must be an object, got ",
                                          DescribeJsonType(entry)));
          continue;
        }
        rapidjson::StringBuffer buffer;
        rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
        entry.Accept(writer);
        absl::StatusOr<ConfigObject> object = ConfigObject::Parse(
            absl::string_view(buffer.GetString(), buffer.GetSize()));
        if (!object.ok()) {
          problems.push_back(
              absl::StrCat(where, ": ", object.status().message()));
          continue;
        }
        DeviceConfig device;
        device.entry = *object;
        const rapidjson::Value* id = device.entry.Find("device_id");
        if (id == nullptr || !id->IsString()) {
          problems.push_back(
              absl::StrCat(where, ".device_id must be a string"));
          continue;
        }
        device.device_id.assign(id->GetString(), id->GetStringLength());
        if (absl::Status s = ValidateId(device.device_id); !s.ok()) {
          problems.push_back(absl::StrCat(where, ".device_id: ", s.message()));
          continue;
        }
        if (device.device_id == kInstanceErrorDevice) {
          problems.push_back(
              absl::StrCat(where, ".device_id \"", kInstanceErrorDevice,
                           "\" is reserved for instance errors"));
          continue;
        }
        if (!device_ids.insert(device.device_id).second) {
          problems.push_back(absl::StrCat(where, ".device_id \"",
                                          device.device_id, "\" is repeated"));
          continue;
        }
        if (const rapidjson::Value* enabled = device.entry.Find("enabled");
            enabled != nullptr && !enabled->IsNull()) {
          if (!enabled->IsBool()) {
            problems.push_back(absl::StrCat(where,
                                            ".enabled must be a boolean, got ",
                                            DescribeJsonType(*enabled)));
          } else {
            device.enabled = enabled->GetBool();
          }
        }
        if (const rapidjson::Value* model = device.entry.Find("model");
            model != nullptr && !model->IsNull()) {
          if (!model->IsString()) {
            problems.push_back(absl::StrCat(where,
                                            ".model must be a string, got ",
                                            DescribeJsonType(*model)));
          } else {
            device.model.assign(model->GetString(), model->GetStringLength());
          }
        }
        config.devices.push_back(std::move(device));
      }
    }
  }

  if (const rapidjson::Value* groups = doc.Find("groups");
      groups != nullptr && !groups->IsNull()) {
    if (!groups->IsArray()) {
      problems.push_back(absl::StrCat("groups must be an array, got ",
                                      DescribeJsonType(*groups)));
    } else {
      std::set<std::string> group_ids;
      int index = 0;
      for (const rapidjson::Value& entry : groups->GetArray()) {
        std::string where = absl::StrCat("groups[", index++, "]");
        if (!entry.IsObject()) {
          problems.push_back(absl::StrCat(where, " must be an object, got ",
                                          DescribeJsonType(entry)));
          continue;
        }
        GroupConfig group;
        auto id = entry.FindMember("group_id");
        if (id == entry.MemberEnd() || !id->value.IsString()) {
          problems.push_back(absl::StrCat(where, ".group_id must be a string"));
          continue;
        }
        group.group_id.assign(id->value.GetString(),
                              id->value.GetStringLength());
        if (absl::Status s = ValidateId(group.group_id); !s.ok()) {
          problems.push_back(absl::StrCat(where, ".group_id: ", s.message()));
          continue;
        }
        if (!group_ids.insert(group.group_id).second) {
          problems.push_back(absl::StrCat(where, ".group_id \"", group.group_id,
                                          "\" is repeated"));
          continue;
        }
        auto members = entry.FindMember("devices");
        bool ok = members != entry.MemberEnd() && members->value.IsArray();
        if (ok) {
          for (const rapidjson::Value& member : members->value.GetArray()) {
            if (!member.IsString()) {
              ok = false;
              break;
            }
            group.devices.emplace_back(member.GetString(),
                                       member.GetStringLength());
          }
        }
        if (!ok) {
          problems.push_back(
              absl::StrCat(where, ".devices must be an array of device ids"));
          continue;
        }
        for (const std::string& member : group.devices) {
          if (device_ids.count(member) == 0) {
            IOT2MQTT_LOG(WARNING)
                    .With("group_id", group.group_id)
                    .With("device_id", member)
                << "group member is not a configured device; group commands "
                   "report it as UNKNOWN_DEVICE";
          }
        }
        config.groups.push_back(std::move(group));
      }
    }
  }

  if (!problems.empty()) {
    return absl::InvalidArgumentError(absl::StrJoin(problems, "; "));
  }
  return config;
}

absl::StatusOr<InstanceConfig> LoadInstanceConfig(
    const std::string& path, absl::string_view instance,
    absl::string_view connector_type_fallback) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int error = errno;
    if (error == ENOENT) {
      return absl::NotFoundError(
          absl::StrCat("instance config ", path, " does not exist"));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot read instance config ", path, ": ", std::strerror(error)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  absl::StatusOr<InstanceConfig> config =
      ParseInstanceConfig(text.str(), instance, connector_type_fallback);
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat("instance config ", path, ": ",
                                     config.status().message()));
  }
  return config;
}

}  // namespace iot2mqtt::sdk
