// iot2mqtt-yeelight-validate: the `validate_device` setup tool.
// stdin {"tool":"validate_device","input":{"host":"192.168.1.50","port":55443}}
// stdout {"ok":true,"result":{"host","port","properties":{...}}} or an error
// object; the exit code is 0 for every handled error.

#include "connectors/yeelight/actions/action_io.h"
#include "connectors/yeelight/actions/stderr_log.h"

int main() {
  std::string request =
      iot2mqtt::yeelight::StartAction("iot2mqtt-yeelight-validate");
  iot2mqtt::yeelight::Answer(iot2mqtt::yeelight::RunValidate(
      request, iot2mqtt::yeelight::ValidateSettings()));
  return 0;
}
