#ifndef IOT2MQTT_SDK_BACKOFF_H_
#define IOT2MQTT_SDK_BACKOFF_H_

// Capped exponential backoff with jitter: the n-th delay (n from 0) is
// min(max, initial * multiplier^n) scaled by a random factor in
// [1 - jitter, 1], so the cap is never exceeded and retries of many clients
// spread out even at the cap. Not thread-safe.

#include <cstdint>
#include <random>

#include "absl/time/time.h"

namespace iot2mqtt::sdk {

class Backoff {
 public:
  Backoff(absl::Duration initial, absl::Duration max, double multiplier = 2.0,
          double jitter = 0.25, uint64_t seed = std::random_device{}());

  // The delay before the next attempt; advances the attempt count.
  absl::Duration Next();
  // The delay Next() would return without jitter.
  absl::Duration Ceiling() const;
  void Reset() { attempts_ = 0; }
  int attempts() const { return attempts_; }

 private:
  absl::Duration initial_;
  absl::Duration max_;
  double multiplier_;
  double jitter_;
  int attempts_ = 0;
  std::mt19937_64 random_;
};

}  // namespace iot2mqtt::sdk

#endif  // IOT2MQTT_SDK_BACKOFF_H_
