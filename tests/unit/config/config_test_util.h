#ifndef IOT2MQTT_TESTS_UNIT_CONFIG_CONFIG_TEST_UTIL_H_
#define IOT2MQTT_TESTS_UNIT_CONFIG_CONFIG_TEST_UTIL_H_

// Assertions shared by the config service's unit tests.

#include <string>

#include "absl/status/status.h"
#include "catch2/catch.hpp"
#include "services/common/status.h"

namespace iot2mqtt::config {

// `status` has `code` and the ErrorInfo reason `reason`.
inline void RequireError(const absl::Status& status, absl::StatusCode code,
                         const std::string& reason) {
  INFO(status.ToString());
  REQUIRE(status.code() == code);
  REQUIRE(common::ReasonOf(status) == reason);
}

}  // namespace iot2mqtt::config

#endif  // IOT2MQTT_TESTS_UNIT_CONFIG_CONFIG_TEST_UTIL_H_
