#include "iot2mqtt/sdk/backoff.h"

#include <algorithm>
#include <cmath>

namespace iot2mqtt::sdk {

Backoff::Backoff(absl::Duration initial, absl::Duration max, double multiplier,
                 double jitter, uint64_t seed)
    : initial_(initial),
      max_(std::max(initial, max)),
      multiplier_(std::max(1.0, multiplier)),
      jitter_(std::clamp(jitter, 0.0, 1.0)),
      random_(seed) {}

absl::Duration Backoff::Ceiling() const {
  // initial * multiplier^attempts, computed without overflowing.
  double factor = std::pow(multiplier_, std::min(attempts_, 64));
  double ceiling = absl::ToDoubleSeconds(initial_) * factor;
  double max = absl::ToDoubleSeconds(max_);
  return absl::Seconds(std::min(ceiling, max));
}

absl::Duration Backoff::Next() {
  absl::Duration ceiling = Ceiling();
  if (attempts_ < 1000) ++attempts_;
  std::uniform_real_distribution<double> factor(1.0 - jitter_, 1.0);
  return ceiling * factor(random_);
}

}  // namespace iot2mqtt::sdk
