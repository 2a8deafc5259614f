#include "iot2mqtt/sdk/dotenv.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace iot2mqtt::sdk {

MapEnv ParseDotEnv(absl::string_view text) {
  MapEnv env;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    if (absl::ConsumePrefix(&line, "export ")) {
      line = absl::StripLeadingAsciiWhitespace(line);
    }
    size_t eq = line.find('=');
    if (eq == absl::string_view::npos) continue;
    absl::string_view key = absl::StripAsciiWhitespace(line.substr(0, eq));
    absl::string_view value = absl::StripAsciiWhitespace(line.substr(eq + 1));
    if (key.empty()) continue;
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
        value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    env.Set(std::string(key), std::string(value));
  }
  return env;
}

absl::StatusOr<MapEnv> ReadDotEnv(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int error = errno;
    if (error == ENOENT) {
      return absl::NotFoundError(absl::StrCat(path, " does not exist"));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read ", path, ": ", std::strerror(error)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return ParseDotEnv(text.str());
}

absl::StatusOr<MapEnv> LoadEnvFile(const Env& process) {
  std::optional<std::string> named = process.Get("IOT2MQTT_ENV_FILE");
  if (named.has_value() && !named->empty()) {
    absl::StatusOr<MapEnv> env = ReadDotEnv(*named);
    if (!env.ok()) {
      return absl::Status(
          env.status().code(),
          absl::StrCat("IOT2MQTT_ENV_FILE: ", env.status().message()));
    }
    return env;
  }
  absl::StatusOr<MapEnv> env = ReadDotEnv(kDefaultEnvFile);
  if (absl::IsNotFound(env.status())) return MapEnv();
  return env;
}

}  // namespace iot2mqtt::sdk
