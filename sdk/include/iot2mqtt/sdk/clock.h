#ifndef IOT2MQTT_SDK_CLOCK_H_
#define IOT2MQTT_SDK_CLOCK_H_

// The wall clock the SDK reads for payload timestamps, command freshness,
// retry_info and uptime. Tests inject a FakeClock to produce stale or future
// commands and a known uptime without sleeping. (Waiting, e.g. between two
// polls, uses the monotonic clock and is not affected.)

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace iot2mqtt::sdk {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// absl::Now(). A process-wide instance that is never destroyed.
Clock& RealClock();

// A clock that only moves when told to. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1760351400))
      : now_(start) {}
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Set(absl::Time now) {
    absl::MutexLock lock(&mu_);
    now_ = now;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace iot2mqtt::sdk

#endif  // IOT2MQTT_SDK_CLOCK_H_
