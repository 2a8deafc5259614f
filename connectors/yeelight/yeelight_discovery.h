#ifndef IOT2MQTT_CONNECTORS_YEELIGHT_YEELIGHT_DISCOVERY_H_
#define IOT2MQTT_CONNECTORS_YEELIGHT_YEELIGHT_DISCOVERY_H_

// Yeelight discovery: one M-SEARCH datagram (sent twice against loss) to the
// configured address, then every answer that arrives within the timeout is
// collected, deduplicated by bulb id. The address always comes from the
// caller's configuration (YEELIGHT_DISCOVERY_ADDRESS); real bulbs listen on
// the multicast group 239.255.255.250:1982, the simulator on a loopback port.

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "connectors/yeelight/yeelight_protocol.h"

namespace iot2mqtt::yeelight {

struct DiscoveryOptions {
  // "a.b.c.d:port" (numeric IPv4).
  std::string address = kDefaultDiscoveryAddress;
  // How long to collect answers (the wait is bounded by this).
  absl::Duration timeout = absl::Seconds(3);
  // Stop early once this many distinct bulbs answered (0: wait the timeout).
  size_t max_results = 0;
};

// Bulbs in the order their first answer arrived. INVALID_ARGUMENT for a bad
// address, UNAVAILABLE when the search cannot be sent. Unparsable datagrams
// are logged and skipped.
absl::StatusOr<std::vector<DiscoveredBulb>> Discover(
    const DiscoveryOptions& options);

}  // namespace iot2mqtt::yeelight

#endif  // IOT2MQTT_CONNECTORS_YEELIGHT_YEELIGHT_DISCOVERY_H_
