// iot2mqtt-connector-demo: virtual devices (light, climate sensor, switch,
// motion sensor) on the MQTT bus. Environment: see sdk::RunConnector.

#include "connectors/demo/demo_connector.h"

int main() {
  return iot2mqtt::sdk::RunConnector<iot2mqtt::connectors::demo::DemoConnector>(
      "demo");
}
