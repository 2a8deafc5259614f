// iot2mqtt-connector-template: one process per configured instance.
// Environment: see sdk::RunConnector (INSTANCE_NAME, MQTT_*, ...).

#include "connectors/_template/template_connector.h"

int main() {
  return iot2mqtt::sdk::RunConnector<iot2mqtt::connectors::TemplateConnector>(
      "template");
}
