#include "iot2mqtt/sdk/log.h"

#include <string>
#include <vector>

#include "catch2/catch.hpp"
#include "rapidjson/document.h"

namespace iot2mqtt::sdk {
namespace {

class CaptureSink : public LogSink {
 public:
  void Write(absl::string_view line) override { lines.emplace_back(line); }
  std::vector<std::string> lines;
};

struct Capture {
  Capture() { SetLogSink(&sink); }
  ~Capture() {
    SetLogSink(nullptr);
    SetLogLevel(Severity::kInfo);
  }
  CaptureSink sink;
};

TEST_CASE("Log: one JSON object per line with the standard fields",
          "[unit][log]") {
  Capture capture;
  SetLogService("config");
  {
    ScopedCorrelationId id("abc-123");
    IOT2MQTT_LOG(WARNING).With("rpc", "GetDeviceConfig").With("latency_ms", 1.5)
        << "quote \" and newline \n kept";
  }
  REQUIRE(capture.sink.lines.size() == 1);
  const std::string& line = capture.sink.lines[0];
  CHECK(line.back() == '\n');
  CHECK(line.find('\n') == line.size() - 1);
  rapidjson::Document doc;
  doc.Parse(line.c_str());
  REQUIRE_FALSE(doc.HasParseError());
  CHECK(std::string(doc["severity"].GetString()) == "WARNING");
  CHECK(std::string(doc["service"].GetString()) == "config");
  CHECK(std::string(doc["correlation_id"].GetString()) == "abc-123");
  CHECK(std::string(doc["rpc"].GetString()) == "GetDeviceConfig");
  CHECK(doc["latency_ms"].GetDouble() == 1.5);
  CHECK(std::string(doc["message"].GetString()) ==
        "quote \" and newline \n kept");
  std::string timestamp = doc["timestamp"].GetString();
  CHECK(timestamp.size() == 27);
  CHECK(timestamp.back() == 'Z');
}

TEST_CASE("Log: lines below the level are dropped", "[unit][log]") {
  Capture capture;
  SetLogLevel(Severity::kWarning);
  IOT2MQTT_LOG(INFO) << "hidden";
  IOT2MQTT_LOG(ERROR) << "shown";
  REQUIRE(capture.sink.lines.size() == 1);
  CHECK(capture.sink.lines[0].find("shown") != std::string::npos);
}

TEST_CASE("Log: correlation id is scoped", "[unit][log]") {
  Capture capture;
  {
    ScopedCorrelationId outer("outer");
    {
      ScopedCorrelationId inner("inner");
      CHECK(CurrentCorrelationId() == "inner");
    }
    CHECK(CurrentCorrelationId() == "outer");
  }
  CHECK(CurrentCorrelationId().empty());
  IOT2MQTT_LOG(INFO) << "no id";
  CHECK(capture.sink.lines.at(0).find("correlation_id") == std::string::npos);
}

TEST_CASE("Log: severity names parse", "[unit][log]") {
  Severity s;
  CHECK(ParseSeverity("debug", &s));
  CHECK(s == Severity::kDebug);
  CHECK(ParseSeverity("WARN", &s));
  CHECK(s == Severity::kWarning);
  CHECK_FALSE(ParseSeverity("loud", &s));
}

}  // namespace
}  // namespace iot2mqtt::sdk
