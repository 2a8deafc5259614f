#include "services/orchestrator/runtime.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace iot2mqtt::orchestrator {

std::string RuntimeName(absl::string_view connector,
                        absl::string_view instance_id) {
  return absl::StrCat("iot2mqtt_", connector, "_", instance_id);
}

std::string ImageTag(absl::string_view connector) {
  return absl::StrCat("iot2mqtt_", connector, ":latest");
}

absl::string_view RuntimeStateName(RuntimeState state) {
  switch (state) {
    case RuntimeState::kCreated:
      return "created";
    case RuntimeState::kRunning:
      return "running";
    case RuntimeState::kRestarting:
      return "restarting";
    case RuntimeState::kPaused:
      return "paused";
    case RuntimeState::kExited:
      return "exited";
    case RuntimeState::kDead:
      return "dead";
  }
  return "dead";
}

}  // namespace iot2mqtt::orchestrator
