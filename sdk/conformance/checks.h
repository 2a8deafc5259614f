#ifndef IOT2MQTT_SDK_CONFORMANCE_CHECKS_H_
#define IOT2MQTT_SDK_CONFORMANCE_CHECKS_H_

// The conformance checks of docs/mqtt-contract.md, one function each, run
// against a RUNNING connector through a Session. Every wait is bounded by
// the session's timeout and driven by arriving messages (no sleeps).

#include <functional>
#include <string>
#include <vector>

#include "sdk/conformance/options.h"

namespace iot2mqtt::conformance {

class Session;

enum class Outcome { kPass, kFail, kSkip };

struct Verdict {
  Outcome outcome;
  std::string detail;  // One line.
};

struct CheckResult {
  std::string name;
  Outcome outcome;
  std::string detail;
};

using CheckFunction = Verdict (*)(Session&);

struct Check {
  const char* name;
  CheckFunction run;
};

// Every check, in the order they run (graceful-shutdown and last-will stop
// the connector and so come last).
const std::vector<Check>& AllChecks();
const std::vector<std::string>& CheckNames();

Verdict CheckStatusOnline(Session& s);
Verdict CheckStateShape(Session& s);
Verdict CheckPropertyTopics(Session& s);
Verdict CheckMetaDevicesList(Session& s);
Verdict CheckMetaInfo(Session& s);
Verdict CheckMetaUnknownRequest(Session& s);
Verdict CheckCommandResponse(Session& s);
Verdict CheckOffsetTimestamp(Session& s);
Verdict CheckLegacyCommand(Session& s);
Verdict CheckStaleCommand(Session& s);
Verdict CheckFutureCommand(Session& s);
Verdict CheckMalformedCommand(Session& s);
Verdict CheckUnknownDevice(Session& s);
Verdict CheckUnknownGroup(Session& s);
Verdict CheckGetUnknownDevice(Session& s);
Verdict CheckGetFull(Session& s);
Verdict CheckGetFiltered(Session& s);
Verdict CheckGroupCommand(Session& s);
Verdict CheckExtraLevels(Session& s);
Verdict CheckReconnect(Session& s);
Verdict CheckGracefulShutdown(Session& s);
Verdict CheckLastWill(Session& s);

// Connects and runs the selected checks in order, calling `report` as each
// finishes. A connection failure is reported as a failed check "connect".
std::vector<CheckResult> RunChecks(
    const CheckerOptions& options,
    const std::function<void(const CheckResult&)>& report);

// "PASS <name>: <detail>" (FAIL, SKIP).
std::string FormatResult(const CheckResult& result);
// "N passed, N failed, N skipped".
std::string FormatSummary(const std::vector<CheckResult>& results);

}  // namespace iot2mqtt::conformance

#endif  // IOT2MQTT_SDK_CONFORMANCE_CHECKS_H_
