#ifndef IOT2MQTT_SDK_CONFORMANCE_TIMESTAMPS_H_
#define IOT2MQTT_SDK_CONFORMANCE_TIMESTAMPS_H_

// ISO 8601 timestamps as the MQTT contract uses them
// (docs/mqtt-contract.md, "Names"): written as UTC with milliseconds and `Z`,
// read with `Z` or a numeric offset, with or without fractional seconds.
// The checker's own implementation, independent of the SDK's.

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace iot2mqtt::conformance {

struct Timestamp {
  absl::Time time;
  // False when the text carried neither `Z` nor an offset (the contract
  // reads it as UTC; a connector must not write one).
  bool has_zone = false;
};

// Parses `YYYY-MM-DDTHH:MM:SS[.fraction][Z|+HH:MM|-HH:MM|+HHMM|-HHMM]`.
// Errors are INVALID_ARGUMENT naming what is wrong.
absl::StatusOr<Timestamp> ParseTimestamp(absl::string_view text);

// `2025-10-13T10:30:00.123Z`.
std::string FormatTimestampUtc(absl::Time time);
// The same instant written with a numeric offset, e.g. `+05:30`.
std::string FormatTimestampWithOffset(absl::Time time, int offset_minutes);

}  // namespace iot2mqtt::conformance

#endif  // IOT2MQTT_SDK_CONFORMANCE_TIMESTAMPS_H_
