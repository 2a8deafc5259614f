#ifndef IOT2MQTT_SDK_STATUS_MACROS_H_
#define IOT2MQTT_SDK_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Abseil's open-source release has no RETURN_IF_ERROR / ASSIGN_OR_RETURN.

#define IOT2MQTT_RETURN_IF_ERROR(expr)                   \
  do {                                                   \
    ::absl::Status iot2mqtt_status_ = (expr);            \
    if (!iot2mqtt_status_.ok()) return iot2mqtt_status_; \
  } while (0)

#define IOT2MQTT_STATUS_CONCAT_INNER_(a, b) a##b
#define IOT2MQTT_STATUS_CONCAT_(a, b) IOT2MQTT_STATUS_CONCAT_INNER_(a, b)

#define IOT2MQTT_ASSIGN_OR_RETURN(lhs, expr) \
  IOT2MQTT_ASSIGN_OR_RETURN_IMPL_(           \
      IOT2MQTT_STATUS_CONCAT_(iot2mqtt_statusor_, __LINE__), lhs, expr)

#define IOT2MQTT_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                    \
  if (!statusor.ok()) return std::move(statusor).status();   \
  lhs = *std::move(statusor)

#endif  // IOT2MQTT_SDK_STATUS_MACROS_H_
