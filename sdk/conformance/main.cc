// iot2mqtt-conformance: checks a RUNNING connector against the MQTT contract
// v1 (docs/mqtt-contract.md) and prints one PASS/FAIL/SKIP line per check,
// then "N passed, N failed, N skipped". Exit code 0 iff nothing failed, 1
// when a check failed, 2 on bad flags. See --help and docs/connector-guide.md.

#include <cstdio>
#include <string>
#include <vector>

#include "sdk/conformance/checks.h"
#include "sdk/conformance/options.h"

int main(int argc, char** argv) {
  using namespace iot2mqtt::conformance;  // NOLINT(build/namespaces)
  std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<CheckerOptions> options = ParseArgs(args);
  if (!options.ok()) {
    std::fprintf(stderr, "iot2mqtt-conformance: %s\n(see --help)\n",
                 std::string(options.status().message()).c_str());
    return 2;
  }
  if (options->help) {
    std::fputs(Usage().c_str(), stdout);
    return 0;
  }
  if (options->list) {
    for (const std::string& name : CheckNames()) {
      std::printf("%s\n", name.c_str());
    }
    return 0;
  }
  std::vector<CheckResult> results =
      RunChecks(*options, [](const CheckResult& result) {
        std::printf("%s\n", FormatResult(result).c_str());
        std::fflush(stdout);
      });
  std::printf("%s\n", FormatSummary(results).c_str());
  for (const CheckResult& result : results) {
    if (result.outcome == Outcome::kFail) return 1;
  }
  return 0;
}
