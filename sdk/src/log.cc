#include "iot2mqtt/sdk/log.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "rapidjson/stringbuffer.h"
#include "iot2mqtt/sdk/env.h"
#include "rapidjson/writer.h"

namespace iot2mqtt::sdk {
namespace {

std::mutex& OutputMutex() {
  static std::mutex mu;
  return mu;
}
std::string& ServiceName() {
  static std::string name = "iot2mqtt";
  return name;
}
std::atomic<int> g_level{static_cast<int>(Severity::kInfo)};
std::atomic<LogSink*> g_sink{nullptr};
thread_local std::string t_correlation_id;

const char* SeverityName(Severity s) {
  switch (s) {
    case Severity::kDebug:
      return "DEBUG";
    case Severity::kInfo:
      return "INFO";
    case Severity::kWarning:
      return "WARNING";
    case Severity::kError:
      return "ERROR";
  }
  return "INFO";
}

void WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n <= 0) return;  // Nowhere else to report a failing stdout.
    off += static_cast<size_t>(n);
  }
}

}  // namespace

void SetLogService(absl::string_view service) {
  std::lock_guard<std::mutex> lock(OutputMutex());
  ServiceName() = std::string(service);
}

void SetLogLevel(Severity level) { g_level = static_cast<int>(level); }

Severity ReadLogLevel(EnvReader& env, std::string* text) {
  std::string level = env.String("LOG_LEVEL", "INFO");
  Severity severity = Severity::kInfo;
  if (!ParseSeverity(level, &severity)) {
    env.AddProblem(absl::StrCat("LOG_LEVEL=\"", level,
                                "\" is not one of DEBUG, INFO, WARNING, ERROR"));
  }
  if (text != nullptr) *text = std::move(level);
  return severity;
}

bool ParseSeverity(absl::string_view text, Severity* out) {
  std::string upper = absl::AsciiStrToUpper(text);
  if (upper == "DEBUG") {
    *out = Severity::kDebug;
  } else if (upper == "INFO") {
    *out = Severity::kInfo;
  } else if (upper == "WARNING" || upper == "WARN") {
    *out = Severity::kWarning;
  } else if (upper == "ERROR") {
    *out = Severity::kError;
  } else {
    return false;
  }
  return true;
}

bool LogEnabled(Severity severity) {
  return static_cast<int>(severity) >= g_level.load();
}

void SetLogSink(LogSink* sink) { g_sink = sink; }

ScopedCorrelationId::ScopedCorrelationId(std::string id)
    : previous_(std::move(t_correlation_id)) {
  t_correlation_id = std::move(id);
}
ScopedCorrelationId::~ScopedCorrelationId() {
  t_correlation_id = std::move(previous_);
}
const std::string& CurrentCorrelationId() { return t_correlation_id; }

std::string JsonQuote(absl::string_view text) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
  return std::string(buffer.GetString(), buffer.GetSize());
}

LogLine::LogLine(Severity severity)
    : severity_(severity), enabled_(LogEnabled(severity)) {}

LogLine& LogLine::With(absl::string_view key, absl::string_view value) {
  if (enabled_) fields_.push_back({std::string(key), JsonQuote(value)});
  return *this;
}
LogLine& LogLine::With(absl::string_view key, int64_t value) {
  if (enabled_) fields_.push_back({std::string(key), std::to_string(value)});
  return *this;
}
LogLine& LogLine::With(absl::string_view key, double value) {
  if (!enabled_) return *this;
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  if (std::isfinite(value)) {
    writer.Double(value);
  } else {
    writer.Null();
  }
  fields_.push_back({std::string(key), buffer.GetString()});
  return *this;
}
LogLine& LogLine::With(absl::string_view key, bool value) {
  if (enabled_) fields_.push_back({std::string(key), value ? "true" : "false"});
  return *this;
}

LogLine::~LogLine() {
  if (!enabled_) return;
  std::string line = "{\"timestamp\":";
  line += JsonQuote(absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::Now(),
                                     absl::UTCTimeZone()));
  line += ",\"severity\":\"";
  line += SeverityName(severity_);
  line += "\",\"message\":";
  line += JsonQuote(message_.str());
  {
    std::lock_guard<std::mutex> lock(OutputMutex());
    line += ",\"service\":";
    line += JsonQuote(ServiceName());
  }
  if (!t_correlation_id.empty()) {
    line += ",\"correlation_id\":";
    line += JsonQuote(t_correlation_id);
  }
  for (const Field& field : fields_) {
    line += ',';
    line += JsonQuote(field.key);
    line += ':';
    line += field.json;
  }
  line += "}\n";
  std::lock_guard<std::mutex> lock(OutputMutex());
  if (LogSink* sink = g_sink.load()) {
    sink->Write(line);
  } else {
    WriteAll(STDOUT_FILENO, line);
  }
}

}  // namespace iot2mqtt::sdk
