#ifndef IOT2MQTT_SERVICES_COMMON_SERVICE_CLIENT_H_
#define IOT2MQTT_SERVICES_COMMON_SERVICE_CLIENT_H_

// The channel every service (and the gateway) uses to reach another one.

#include <grpcpp/channel.h>

#include <memory>
#include <string>

namespace iot2mqtt::common {

// An insecure channel to `address` that comes back quickly after the peer
// restarts: reconnect backoff 250 ms, at most 2 s (gRPC's default grows to
// two minutes, all of it answered UNAVAILABLE).
std::shared_ptr<grpc::Channel> MakeServiceChannel(const std::string& address);

}  // namespace iot2mqtt::common

#endif  // IOT2MQTT_SERVICES_COMMON_SERVICE_CLIENT_H_
