#ifndef IOT2MQTT_SDK_LOG_H_
#define IOT2MQTT_SDK_LOG_H_

// JSON-lines logging: one object per line on stdout with `timestamp` (RFC 3339,
// UTC), `severity`, `message`, `service`, the current correlation id when one
// is set, and any fields added with With(). Never log a secret.
//
//   IOT2MQTT_LOG(INFO).With("rpc", "GetDeviceConfig").With("latency_ms", 1.5)
//       << "request served";

#include <cstdint>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace iot2mqtt::sdk {

enum class Severity { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

namespace log_severity {
inline constexpr Severity DEBUG = Severity::kDebug;
inline constexpr Severity INFO = Severity::kInfo;
inline constexpr Severity WARNING = Severity::kWarning;
inline constexpr Severity ERROR = Severity::kError;
}  // namespace log_severity

// Process-wide settings, set once in main().
void SetLogService(absl::string_view service);
void SetLogLevel(Severity level);
// Parses DEBUG/INFO/WARNING/ERROR (any case); false when unknown.
bool ParseSeverity(absl::string_view text, Severity* out);
class EnvReader;
// LOG_LEVEL through `env` (default INFO): its severity, or INFO with a
// problem recorded in `env` when it is none of the above. `text`, when
// given, gets the value as set.
Severity ReadLogLevel(EnvReader& env, std::string* text = nullptr);
bool LogEnabled(Severity severity);

// Redirects log lines (tests); nullptr restores stdout.
class LogSink {
 public:
  virtual ~LogSink() = default;
  virtual void Write(absl::string_view line) = 0;
};
void SetLogSink(LogSink* sink);

// The correlation id attached to every line logged by this thread while the
// scope lives (set per request by the RPC and HTTP edges).
class ScopedCorrelationId {
 public:
  explicit ScopedCorrelationId(std::string id);
  ~ScopedCorrelationId();
  ScopedCorrelationId(const ScopedCorrelationId&) = delete;
  ScopedCorrelationId& operator=(const ScopedCorrelationId&) = delete;

 private:
  std::string previous_;
};
const std::string& CurrentCorrelationId();

class LogLine {
 public:
  explicit LogLine(Severity severity);
  ~LogLine();
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;

  LogLine& With(absl::string_view key, absl::string_view value);
  LogLine& With(absl::string_view key, const char* value) {
    return With(key, absl::string_view(value));
  }
  LogLine& With(absl::string_view key, const std::string& value) {
    return With(key, absl::string_view(value));
  }
  LogLine& With(absl::string_view key, int64_t value);
  LogLine& With(absl::string_view key, int value) {
    return With(key, static_cast<int64_t>(value));
  }
  LogLine& With(absl::string_view key, double value);
  LogLine& With(absl::string_view key, bool value);

  template <typename T>
  LogLine& operator<<(const T& value) {
    if (enabled_) message_ << value;
    return *this;
  }

 private:
  struct Field {
    std::string key;
    std::string json;  // Already-encoded JSON value.
  };
  Severity severity_;
  bool enabled_;
  std::ostringstream message_;
  std::vector<Field> fields_;
};

// Encodes `text` as a JSON string literal (with quotes).
std::string JsonQuote(absl::string_view text);

}  // namespace iot2mqtt::sdk

#define IOT2MQTT_LOG(severity) \
  ::iot2mqtt::sdk::LogLine(::iot2mqtt::sdk::log_severity::severity)

#endif  // IOT2MQTT_SDK_LOG_H_
