#ifndef IOT2MQTT_GATEWAY_CORS_H_
#define IOT2MQTT_GATEWAY_CORS_H_

// CORS decisions for the configured origins (CORS_ORIGINS). A matching
// Origin is echoed in Access-Control-Allow-Origin (with Vary: Origin); "*"
// matches every origin; an origin that doesn't match gets no CORS headers,
// so the browser refuses the response.

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace iot2mqtt::gateway {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

class CorsPolicy {
 public:
  CorsPolicy() = default;
  explicit CorsPolicy(std::vector<std::string> origins);

  bool enabled() const { return !origins_.empty(); }
  bool Allows(absl::string_view origin) const;

  // Whether the request is a CORS preflight this policy answers (204 with
  // PreflightHeaders): OPTIONS with an allowed Origin and an
  // Access-Control-Request-Method header.
  bool IsPreflight(absl::string_view method, absl::string_view origin,
                   absl::string_view request_method) const;

  // Headers for an ordinary response to a request with this Origin header
  // ("" when absent): none unless the origin is allowed.
  HeaderList ResponseHeaders(absl::string_view origin) const;
  // Headers for a preflight answer.
  HeaderList PreflightHeaders(absl::string_view origin) const;

  static constexpr char kAllowedMethods[] =
      "GET, PUT, POST, DELETE, PATCH, OPTIONS";
  static constexpr char kAllowedHeaders[] =
      "Content-Type, Authorization, X-Correlation-ID";
  static constexpr char kExposedHeaders[] = "X-Correlation-ID";

 private:
  std::vector<std::string> origins_;
  bool any_ = false;
};

}  // namespace iot2mqtt::gateway

#endif  // IOT2MQTT_GATEWAY_CORS_H_
