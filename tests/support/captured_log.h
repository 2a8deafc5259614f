#ifndef IOT2MQTT_TESTS_SUPPORT_CAPTURED_LOG_H_
#define IOT2MQTT_TESTS_SUPPORT_CAPTURED_LOG_H_

// Captures the log lines written while it lives (sdk/log.h sink), for tests
// that check what is logged, and what never is (secrets). Header-only: the
// test binaries that include it link the SDK.

#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "iot2mqtt/sdk/log.h"

namespace iot2mqtt::testing {

class CapturedLog : public sdk::LogSink {
 public:
  CapturedLog() { sdk::SetLogSink(this); }
  ~CapturedLog() override { sdk::SetLogSink(nullptr); }
  CapturedLog(const CapturedLog&) = delete;
  CapturedLog& operator=(const CapturedLog&) = delete;

  void Write(absl::string_view line) override {
    absl::MutexLock lock(&mu_);
    lines_.emplace_back(line);
  }
  std::vector<std::string> lines() {
    absl::MutexLock lock(&mu_);
    return lines_;
  }
  // Every line, each ended by '\n'.
  std::string text() {
    absl::MutexLock lock(&mu_);
    std::string all;
    for (const std::string& line : lines_) absl::StrAppend(&all, line, "\n");
    return all;
  }
  // How many lines contain `needle`.
  int Count(absl::string_view needle) {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (const std::string& line : lines_) n += absl::StrContains(line, needle);
    return n;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
};

}  // namespace iot2mqtt::testing

#endif  // IOT2MQTT_TESTS_SUPPORT_CAPTURED_LOG_H_
