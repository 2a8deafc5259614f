#include "sdk/conformance/options.h"

#include <algorithm>
#include <cstdint>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "sdk/conformance/checks.h"
#include "sdk/conformance/payloads.h"

namespace iot2mqtt::conformance {

std::string Usage() {
  return absl::StrCat(
      "Usage: iot2mqtt-conformance --instance ID [flags]\n"
      "\n"
      "Exercises a RUNNING connector over MQTT and reports whether it follows\n"
      "the iot2mqtt MQTT contract v1 (docs/mqtt-contract.md). Prints one line\n"
      "per check (PASS/FAIL/SKIP <name>: <detail>), then\n"
      "\"N passed, N failed, N skipped\". Exit code 0 iff nothing failed,\n"
      "1 when a check failed, 2 on bad flags.\n"
      "\n"
      "Flags:\n"
      "  --host H          broker address (default 127.0.0.1)\n"
      "  --port N          broker port (default 1883)\n"
      "  --base B          the connector's MQTT_BASE_TOPIC (default IoT2mqtt)\n"
      "  --instance ID     the connector's instance id (INSTANCE_NAME); "
      "required\n"
      "  --device D        device to exercise (default: the first device with\n"
      "                    a retained state)\n"
      "  --group G         group for group-command (skipped without it)\n"
      "  --command JSON    `values` object sent by the command checks "
      "(default:\n"
      "                    one key of the device's state set to its current\n"
      "                    value, so the device does not change)\n"
      "  --pid PID         run graceful-shutdown: SIGTERM to PID, expect a\n"
      "                    retained `offline` and exit within 10 s (stops the\n"
      "                    connector; runs last)\n"
      "  --kill-pid PID    run last-will: SIGKILL to PID, expect the broker's\n"
      "                    retained `offline` within 1.5 x --keepalive\n"
      "  --keepalive S     the connector's MQTT_KEEPALIVE in seconds (default\n"
      "                    60); bounds the last-will wait\n"
      "  --client-prefix P the connector's MQTT_CLIENT_PREFIX (default\n"
      "                    iot2mqtt); reconnect takes over client id P_ID\n"
      "  --timeout-ms MS   bound of every wait (default 5000)\n"
      "  --only a,b        run only these checks\n"
      "  --list            print the check names and exit\n"
      "  --help            print this text and exit\n"
      "\n"
      "Checks, in order: ",
      absl::StrJoin(CheckNames(), ", "), "\n");
}

absl::StatusOr<CheckerOptions> ParseArgs(const std::vector<std::string>& args) {
  CheckerOptions options;
  std::vector<std::string> problems;
  std::map<std::string, std::string> values;
  static const std::vector<std::string> kValued = {
      "host",       "port",    "base",         "instance", "device",
      "group",      "command", "pid",          "kill-pid", "keepalive",
      "timeout-ms", "only",    "client-prefix"};
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (!absl::ConsumePrefix(&arg, "--")) {
      problems.push_back(absl::StrCat("unexpected argument \"", arg, "\""));
      continue;
    }
    std::string name(arg), value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      has_value = true;
    }
    if (name == "help" || name == "list") {
      (name == "help" ? options.help : options.list) = true;
      continue;
    }
    if (std::find(kValued.begin(), kValued.end(), name) == kValued.end()) {
      problems.push_back(absl::StrCat("unknown flag --", name));
      continue;
    }
    if (!has_value) {
      if (i + 1 >= args.size()) {
        problems.push_back(absl::StrCat("--", name, " needs a value"));
        continue;
      }
      value = args[++i];
    }
    values[name] = value;
  }
  auto integer = [&](const std::string& name, int64_t min, int64_t max,
                     int* out) {
    auto it = values.find(name);
    if (it == values.end()) return;
    int64_t parsed = 0;
    if (!absl::SimpleAtoi(it->second, &parsed) || parsed < min ||
        parsed > max) {
      problems.push_back(absl::StrCat("--", name, "=\"", it->second,
                                      "\" is not an integer in [", min, ", ",
                                      max, "]"));
      return;
    }
    *out = static_cast<int>(parsed);
  };
  auto text = [&](const std::string& name, std::string* out) {
    if (auto it = values.find(name); it != values.end()) *out = it->second;
  };
  text("host", &options.host);
  text("base", &options.base);
  text("instance", &options.instance);
  text("device", &options.device);
  text("group", &options.group);
  text("command", &options.command);
  text("client-prefix", &options.client_prefix);
  integer("port", 1, 65535, &options.port);
  integer("pid", 1, INT32_MAX, &options.pid);
  integer("kill-pid", 1, INT32_MAX, &options.kill_pid);
  integer("keepalive", 1, 65535, &options.keepalive_seconds);
  int timeout_ms = 5000;
  integer("timeout-ms", 1, 3600 * 1000, &timeout_ms);
  options.timeout = absl::Milliseconds(timeout_ms);
  if (auto it = values.find("only"); it != values.end()) {
    options.only = absl::StrSplit(it->second, ',', absl::SkipWhitespace());
    for (std::string& name : options.only) {
      name = std::string(absl::StripAsciiWhitespace(name));
      const auto& known = CheckNames();
      if (std::find(known.begin(), known.end(), name) == known.end()) {
        problems.push_back(
            absl::StrCat("--only: unknown check \"", name, "\" (see --list)"));
      }
    }
  }
  if (options.help || options.list) return options;
  if (options.instance.empty()) {
    problems.push_back("--instance is required");
  } else if (!IsValidId(options.instance)) {
    problems.push_back("--instance is not a valid id");
  }
  if (options.base.empty() || options.base.front() == '/' ||
      options.base.back() == '/' ||
      options.base.find_first_of(std::string("+#\0", 3)) != std::string::npos) {
    problems.push_back(
        "--base must be non-empty, without + # NUL, and not "
        "start or end with /");
  }
  if (!options.device.empty() && !IsValidId(options.device)) {
    problems.push_back("--device is not a valid id");
  }
  if (!options.group.empty() && !IsValidId(options.group)) {
    problems.push_back("--group is not a valid id");
  }
  if (!options.command.empty()) {
    rapidjson::Document doc;
    if (!ParseJson(options.command, &doc).ok() || !doc.IsObject() ||
        doc.MemberCount() == 0) {
      problems.push_back("--command must be a non-empty JSON object");
    }
  }
  if (!problems.empty()) {
    return absl::InvalidArgumentError(absl::StrJoin(problems, "; "));
  }
  return options;
}

}  // namespace iot2mqtt::conformance
