#include "gateway/cors.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/strip.h"

namespace iot2mqtt::gateway {

CorsPolicy::CorsPolicy(std::vector<std::string> origins) {
  for (std::string& origin : origins) {
    absl::string_view trimmed = absl::StripAsciiWhitespace(origin);
    // "http://localhost:3000/" in the environment means the origin
    // "http://localhost:3000": browsers never send the slash.
    absl::ConsumeSuffix(&trimmed, "/");
    if (trimmed.empty()) continue;
    if (trimmed == "*") any_ = true;
    origins_.emplace_back(trimmed);
  }
}

bool CorsPolicy::Allows(absl::string_view origin) const {
  if (origin.empty() || origins_.empty()) return false;
  if (any_) return true;
  // Scheme and host are case-insensitive (RFC 6454 serializes them in lower
  // case; be lenient with the configured spelling).
  return std::any_of(origins_.begin(), origins_.end(),
                     [origin](const std::string& allowed) {
                       return absl::EqualsIgnoreCase(allowed, origin);
                     });
}

bool CorsPolicy::IsPreflight(absl::string_view method, absl::string_view origin,
                             absl::string_view request_method) const {
  return method == "OPTIONS" && !request_method.empty() && Allows(origin);
}

HeaderList CorsPolicy::ResponseHeaders(absl::string_view origin) const {
  if (!Allows(origin)) return {};
  return {{"Access-Control-Allow-Origin", std::string(origin)},
          {"Vary", "Origin"},
          {"Access-Control-Expose-Headers", kExposedHeaders}};
}

HeaderList CorsPolicy::PreflightHeaders(absl::string_view origin) const {
  if (!Allows(origin)) return {};
  return {{"Access-Control-Allow-Origin", std::string(origin)},
          {"Vary", "Origin"},
          {"Access-Control-Allow-Methods", kAllowedMethods},
          {"Access-Control-Allow-Headers", kAllowedHeaders},
          {"Access-Control-Expose-Headers", kExposedHeaders},
          {"Access-Control-Max-Age", "600"}};
}

}  // namespace iot2mqtt::gateway
