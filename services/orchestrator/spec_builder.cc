#include "services/orchestrator/spec_builder.h"

#include <sodium.h>

#include <cerrno>
#include <cmath>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "rapidjson/document.h"
#include "services/common/status.h"
#include "services/config/file_io.h"

namespace iot2mqtt::orchestrator {
namespace {

absl::Status ManifestError(const std::string& path, absl::string_view why) {
  return common::WithReason(
      absl::FailedPreconditionError(absl::StrCat(path, ": ", why)),
      kManifestInvalid, {{"path", path}});
}

// Appends `value` to `out` with its length first, so that no two different
// field lists give the same text.
void AddField(std::string* out, absl::string_view name,
              absl::string_view value) {
  absl::StrAppend(out, name, "=", value.size(), ":", value, "\n");
}

}  // namespace

bool IsValidName(absl::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (alnum) continue;
    if (i > 0 && (c == '_' || c == '-')) continue;
    return false;
  }
  return true;
}

absl::Status ValidateInstanceId(absl::string_view instance_id) {
  if (IsValidName(instance_id)) return absl::OkStatus();
  return common::WithReason(
      absl::InvalidArgumentError(
          "instance_id must match ^[a-z0-9][a-z0-9_-]{0,62}$"),
      kInvalidInstanceId);
}

absl::Status ValidateConnectorName(absl::string_view connector) {
  if (IsValidName(connector)) return absl::OkStatus();
  return common::WithReason(
      absl::InvalidArgumentError(
          "connector must match ^[a-z0-9][a-z0-9_-]{0,62}$"),
      kInvalidConnectorName);
}

absl::StatusOr<Manifest> ReadManifest(const std::string& connector_dir) {
  if (!config::PathExists(connector_dir)) {
    return common::WithReason(
        absl::NotFoundError(
            absl::StrCat("connector directory ", connector_dir, " not found")),
        kConnectorNotFound);
  }
  const std::string path = connector_dir + "/manifest.json";
  absl::StatusOr<std::string> text = config::ReadWholeFile(path);
  if (absl::IsNotFound(text.status())) {
    return ManifestError(path, "missing");
  }
  if (!text.ok()) return text.status();
  rapidjson::Document doc;
  doc.Parse(text->c_str(), text->size());
  if (doc.HasParseError() || !doc.IsObject()) {
    return ManifestError(path, "not a JSON object");
  }
  Manifest manifest;
  auto entry = doc.FindMember("entry");
  if (entry == doc.MemberEnd() || !entry->value.IsString() ||
      entry->value.GetStringLength() == 0) {
    return ManifestError(path, "\"entry\" must be a non-empty string");
  }
  manifest.entry.assign(entry->value.GetString(),
                        entry->value.GetStringLength());
  if (absl::StrContains(manifest.entry, "..") ||
      absl::StartsWith(manifest.entry, "/")) {
    return ManifestError(path,
                         "\"entry\" must be a relative path inside the "
                         "connector directory");
  }
  auto resources = doc.FindMember("resources");
  if (resources != doc.MemberEnd() && !resources->value.IsNull()) {
    if (!resources->value.IsObject()) {
      return ManifestError(path, "\"resources\" must be an object");
    }
    const rapidjson::Value& r = resources->value;
    auto cpu = r.FindMember("cpu");
    if (cpu != r.MemberEnd() && !cpu->value.IsNull()) {
      if (!cpu->value.IsNumber() || !(cpu->value.GetDouble() > 0) ||
          !std::isfinite(cpu->value.GetDouble())) {
        return ManifestError(path, "\"resources.cpu\" must be a number > 0");
      }
      manifest.cpus = cpu->value.GetDouble();
    }
    auto memory = r.FindMember("memory_mb");
    if (memory != r.MemberEnd() && !memory->value.IsNull()) {
      if (!memory->value.IsNumber() || !(memory->value.GetDouble() >= 1) ||
          memory->value.GetDouble() > 1024.0 * 1024.0) {
        return ManifestError(path,
                             "\"resources.memory_mb\" must be a number >= 1");
      }
      manifest.memory_bytes =
          static_cast<int64_t>(memory->value.GetDouble() * 1024 * 1024);
    }
  }
  return manifest;
}

std::string SpecPaths::ConnectorDir(absl::string_view connector) const {
  return absl::StrCat(connectors_dir, "/", connector);
}

std::string SpecPaths::InstanceFile(absl::string_view connector,
                                    absl::string_view instance_id) const {
  return absl::StrCat(data_dir, "/instances/", connector, "/", instance_id,
                      ".json");
}

std::string SpecPaths::SecretsDir() const {
  return absl::StrCat(data_dir, "/runtime/secrets");
}

std::string SpecPaths::SecretsFile(absl::string_view instance_id) const {
  return absl::StrCat(SecretsDir(), "/", instance_id, ".json");
}

std::string SpecPaths::EnvFile() const { return data_dir + "/.env"; }

std::string SpecPaths::StateFile() const {
  return data_dir + "/runtime/orchestrator_state.json";
}

absl::StatusOr<RuntimeSpec> BuildSpec(const SpecPaths& paths,
                                      const SpecInputs& inputs) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateConnectorName(inputs.connector));
  IOT2MQTT_RETURN_IF_ERROR(ValidateInstanceId(inputs.instance_id));
  RuntimeSpec spec;
  spec.connector = inputs.connector;
  spec.instance_id = inputs.instance_id;
  spec.connector_dir = paths.ConnectorDir(inputs.connector);
  IOT2MQTT_ASSIGN_OR_RETURN(Manifest manifest,
                            ReadManifest(spec.connector_dir));
  spec.entry = manifest.entry;
  spec.cpus = manifest.cpus;
  spec.memory_bytes = manifest.memory_bytes;
  spec.instance_file = paths.InstanceFile(inputs.connector, inputs.instance_id);
  spec.secrets_file = paths.SecretsFile(inputs.instance_id);
  spec.env_file = paths.EnvFile();
  for (const auto& [name, value] : inputs.mqtt_env) {
    if (name == "MQTT_PASSWORD") continue;  // Only in the secrets file.
    spec.env[name] = value;
  }
  spec.env["INSTANCE_NAME"] = inputs.instance_id;
  spec.env["CONNECTOR_TYPE"] = inputs.connector;
  spec.env["MODE"] = "production";
  spec.env["LOG_LEVEL"] =
      inputs.log_level.empty() ? std::string("INFO") : inputs.log_level;
  spec.config_hash =
      Fingerprint(spec, inputs.instance_json, inputs.secrets_json);
  return spec;
}

std::string Fingerprint(const RuntimeSpec& spec,
                        absl::string_view instance_json,
                        absl::string_view secrets_json) {
  std::string text;
  AddField(&text, "connector", spec.connector);
  AddField(&text, "instance_id", spec.instance_id);
  AddField(&text, "connector_dir", spec.connector_dir);
  AddField(&text, "instance_file", spec.instance_file);
  AddField(&text, "secrets_file", spec.secrets_file);
  AddField(&text, "env_file", spec.env_file);
  AddField(&text, "shared_dir", spec.shared_dir);
  AddField(&text, "entry", spec.entry);
  AddField(&text, "cpus", spec.cpus ? absl::StrCat(*spec.cpus) : "-");
  AddField(&text, "memory",
           spec.memory_bytes ? absl::StrCat(*spec.memory_bytes) : "-");
  for (const auto& [name, value] : spec.env) {
    AddField(&text, absl::StrCat("env.", name), value);
  }
  AddField(&text, "instance", instance_json);
  AddField(&text, "secrets", secrets_json);
  static const int sodium_ready = sodium_init();  // Thread-safe, once.
  (void)sodium_ready;
  unsigned char digest[16];
  crypto_generichash(digest, sizeof(digest),
                     reinterpret_cast<const unsigned char*>(text.data()),
                     text.size(), nullptr, 0);
  sodium_memzero(&text[0], text.size());
  char hex[sizeof(digest) * 2 + 1];
  sodium_bin2hex(hex, sizeof(hex), digest, sizeof(digest));
  return hex;
}

absl::StatusOr<bool> WriteSecretsFile(const std::string& path,
                                      absl::string_view content) {
  absl::StatusOr<std::string> current = config::ReadWholeFile(path);
  bool same = current.ok() && *current == content;
  if (current.ok() && !current->empty()) {
    sodium_memzero(&(*current)[0], current->size());
  }
  if (same) return false;
  IOT2MQTT_RETURN_IF_ERROR(
      config::MakeDirectories(config::DirectoryOf(path), 0700));
  IOT2MQTT_RETURN_IF_ERROR(config::WriteFileAtomically(path, content, 0600));
  return true;
}

absl::Status RemoveSecretsFile(const std::string& path) {
  absl::Status status = config::RemoveFile(path);
  if (absl::IsNotFound(status)) return absl::OkStatus();
  return status;
}

std::string LogLevelOf(absl::string_view content) {
  std::string lower = absl::AsciiStrToLower(content);
  if (absl::StrContains(lower, "error") ||
      absl::StrContains(lower, "exception")) {
    return "error";
  }
  if (absl::StrContains(lower, "warn")) return "warning";
  if (absl::StrContains(lower, "success") ||
      absl::StrContains(lower, "connected")) {
    return "success";
  }
  if (absl::StrContains(lower, "info")) return "info";
  if (absl::StrContains(lower, "debug")) return "debug";
  return "info";
}

std::string IsoTime(absl::Time time) {
  if (time == absl::InfinitePast() || time == absl::InfiniteFuture()) {
    return "";
  }
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", time, absl::UTCTimeZone());
}

}  // namespace iot2mqtt::orchestrator
