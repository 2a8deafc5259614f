#include "sdk/conformance/timestamps.h"

#include <cstdint>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace iot2mqtt::conformance {
namespace {

// Reads exactly `width` digits at `*pos`.
bool Digits(absl::string_view text, size_t* pos, int width, int* out) {
  if (*pos + width > text.size()) return false;
  int value = 0;
  for (int i = 0; i < width; ++i) {
    char c = text[*pos + i];
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
    value = value * 10 + (c - '0');
  }
  *pos += width;
  *out = value;
  return true;
}

bool Expect(absl::string_view text, size_t* pos, char c) {
  if (*pos >= text.size() || text[*pos] != c) return false;
  ++*pos;
  return true;
}

}  // namespace

absl::StatusOr<Timestamp> ParseTimestamp(absl::string_view text) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("timestamp \"", text, "\": ", why));
  };
  size_t pos = 0;
  int year, month, day, hour, minute, second;
  if (!Digits(text, &pos, 4, &year) || !Expect(text, &pos, '-') ||
      !Digits(text, &pos, 2, &month) || !Expect(text, &pos, '-') ||
      !Digits(text, &pos, 2, &day)) {
    return bad("expected YYYY-MM-DD");
  }
  if (!Expect(text, &pos, 'T')) return bad("expected 'T' after the date");
  if (!Digits(text, &pos, 2, &hour) || !Expect(text, &pos, ':') ||
      !Digits(text, &pos, 2, &minute) || !Expect(text, &pos, ':') ||
      !Digits(text, &pos, 2, &second)) {
    return bad("expected HH:MM:SS");
  }
  const absl::CivilSecond civil(year, month, day, hour, minute, second);
  if (civil.year() != year || civil.month() != month || civil.day() != day ||
      civil.hour() != hour || civil.minute() != minute ||
      civil.second() != second) {
    return bad("no such date or time");
  }
  int64_t nanos = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int64_t scale = 100000000;
    size_t start = pos;
    while (pos < text.size() &&
           absl::ascii_isdigit(static_cast<unsigned char>(text[pos]))) {
      nanos += (text[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return bad("no digits after '.'");
  }
  Timestamp result;
  int offset_seconds = 0;
  if (pos < text.size() && text[pos] == 'Z') {
    ++pos;
    result.has_zone = true;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    const int sign = text[pos] == '-' ? -1 : 1;
    ++pos;
    int offset_hours, offset_minutes;
    if (!Digits(text, &pos, 2, &offset_hours)) return bad("bad zone offset");
    Expect(text, &pos, ':');
    if (!Digits(text, &pos, 2, &offset_minutes) || offset_hours > 23 ||
        offset_minutes > 59) {
      return bad("bad zone offset");
    }
    offset_seconds = sign * (offset_hours * 3600 + offset_minutes * 60);
    result.has_zone = true;
  }
  if (pos != text.size()) return bad("unexpected text after the time");
  result.time = absl::FromCivil(civil, absl::UTCTimeZone()) +
                absl::Nanoseconds(nanos) - absl::Seconds(offset_seconds);
  return result;
}

std::string FormatTimestampUtc(absl::Time time) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time, absl::UTCTimeZone());
}

std::string FormatTimestampWithOffset(absl::Time time, int offset_minutes) {
  const absl::TimeZone zone = absl::FixedTimeZone(offset_minutes * 60);
  return absl::StrCat(
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3S", time, zone),
      offset_minutes < 0 ? "-" : "+",
      absl::StrFormat("%02d:%02d", std::abs(offset_minutes) / 60,
                      std::abs(offset_minutes) % 60));
}

}  // namespace iot2mqtt::conformance
