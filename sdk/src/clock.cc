#include "iot2mqtt/sdk/clock.h"

namespace iot2mqtt::sdk {
namespace {

class SystemClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

}  // namespace

Clock& RealClock() {
  static Clock* const clock = new SystemClock();
  return *clock;
}

}  // namespace iot2mqtt::sdk
