#ifndef IOT2MQTT_SDK_DOTENV_H_
#define IOT2MQTT_SDK_DOTENV_H_

// `.env` files as the upstream suite writes them (`KEY=VALUE` lines, blank
// lines and `#` comments skipped, split on the first '=', key and value
// trimmed), plus what python-dotenv also accepts: an `export ` prefix,
// quoted values with escapes, and comments after a value.

#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "iot2mqtt/sdk/env.h"

namespace iot2mqtt::sdk {

// Parses the text of a .env file into key → value. Lines without '=' or
// with an empty key are skipped; a later line wins. Values in double quotes
// decode backslash escapes (n, r, t, backslash, quote), so the values the
// config service writes with spaces, '#', quotes or newlines come back
// exactly; single quotes decode an escaped backslash or quote. An unquoted
// value ends at " #" (a comment).
std::map<std::string, std::string> ParseDotEnvEntries(absl::string_view text);

// The same as a MapEnv.
MapEnv ParseDotEnv(absl::string_view text);

// Reads and parses `path`. NOT_FOUND when the file does not exist, other
// errors when it cannot be read.
absl::StatusOr<MapEnv> ReadDotEnv(const std::string& path);

inline constexpr char kDefaultEnvFile[] = "/app/.env";

// The .env file named by IOT2MQTT_ENV_FILE in `process` (default
// kDefaultEnvFile). A missing default file yields an empty MapEnv (the
// process runtime has none); a missing file that was named explicitly, or
// an unreadable one, is an error.
absl::StatusOr<MapEnv> LoadEnvFile(const Env& process);

// Looks a name up in `first`, then in `second` (the environment wins over
// the .env file). Both must outlive this object.
class LayeredEnv final : public Env {
 public:
  LayeredEnv(const Env& first, const Env& second)
      : first_(first), second_(second) {}
  std::optional<std::string> Get(absl::string_view name) const override {
    std::optional<std::string> value = first_.Get(name);
    if (value.has_value()) return value;
    return second_.Get(name);
  }

 private:
  const Env& first_;
  const Env& second_;
};

}  // namespace iot2mqtt::sdk

#endif  // IOT2MQTT_SDK_DOTENV_H_
