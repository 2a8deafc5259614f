#ifndef IOT2MQTT_SDK_ENV_H_
#define IOT2MQTT_SDK_ENV_H_

// Environment loading into a struct that reports every problem at once:
//
//   sdk::EnvReader env(sdk::ProcessEnv());
//   options.port = env.Int("PORT", 50051, 1, 65535);
//   options.dir = env.Required("ESP32_CONFIGS_DIR");
//   if (absl::Status s = env.Finish(); !s.ok()) { log s; exit(2); }

#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace iot2mqtt::sdk {

// Where variables come from: the process environment, or a map in tests.
class Env {
 public:
  virtual ~Env() = default;
  virtual std::optional<std::string> Get(absl::string_view name) const = 0;
};

class ProcessEnv final : public Env {
 public:
  std::optional<std::string> Get(absl::string_view name) const override;
};

class MapEnv final : public Env {
 public:
  MapEnv() = default;
  MapEnv(
      std::initializer_list<std::pair<const std::string, std::string>> values)
      : values_(values) {}
  void Set(const std::string& name, const std::string& value) {
    values_[name] = value;
  }
  std::optional<std::string> Get(absl::string_view name) const override;

 private:
  std::map<std::string, std::string> values_;
};

// Reads typed variables and collects every problem; Finish() reports them
// all in one INVALID_ARGUMENT status. An empty value counts as unset.
class EnvReader {
 public:
  explicit EnvReader(const Env& env) : env_(env) {}

  std::string String(absl::string_view name, absl::string_view fallback);
  // Records a problem when unset or empty.
  std::string Required(absl::string_view name);
  int64_t Int(absl::string_view name, int64_t fallback, int64_t min,
              int64_t max);
  bool Bool(absl::string_view name, bool fallback);
  // Comma-separated list; surrounding spaces trimmed, empty items dropped.
  // Also accepts a JSON-style list `["a","b"]` as the upstream .env did.
  std::vector<std::string> List(absl::string_view name,
                                const std::vector<std::string>& fallback);
  // Records a problem found by the caller (cross-field checks).
  void AddProblem(std::string problem) {
    problems_.push_back(std::move(problem));
  }

  absl::Status Finish() const;

 private:
  std::optional<std::string> Lookup(absl::string_view name) const;

  const Env& env_;
  std::vector<std::string> problems_;
};

}  // namespace iot2mqtt::sdk

#endif  // IOT2MQTT_SDK_ENV_H_
