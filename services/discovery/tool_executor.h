#ifndef IOT2MQTT_SERVICES_DISCOVERY_TOOL_EXECUTOR_H_
#define IOT2MQTT_SERVICES_DISCOVERY_TOOL_EXECUTOR_H_

// Setup tools: the declaration in setup.json, the checks before a run, and
// upstream's result contract (reference §4.2) on top of RunChild. No gRPC.

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/discovery/child_process.h"

namespace iot2mqtt::discovery {

enum class ToolNetwork { kNone, kLocal, kInternet };

// setup.json `tools.<id>`.
struct ToolDeclaration {
  std::string id;
  std::string entry;
  absl::Duration timeout = absl::Seconds(30);  // 1..600 s.
  std::vector<std::string> secrets;            // Input keys to mask.
  std::vector<std::pair<std::string, std::string>> environment;
  ToolNetwork network = ToolNetwork::kNone;
};

// setup.json `discovery` (see the proto).
struct DiscoveryDeclaration {
  bool supported = false;  // `discovery` present and `supported` not false.
  std::string tool;        // A tool id of `tools`.
  absl::Duration timeout = absl::Seconds(30);
};

// The `tools.<tool_id>` of a setup.json text. NOT_FOUND TOOL_NOT_FOUND
// ("Tool '<id>' not found for <connector>"); FAILED_PRECONDITION
// TOOL_HAS_NO_ENTRY ("Tool '<id>' has no entry"), INVALID_TOOL_DECLARATION
// (bad types, timeout outside 1..600, environment names not
// [A-Za-z_][A-Za-z0-9_]*, unknown network), INVALID_SETUP (not JSON).
absl::StatusOr<ToolDeclaration> ParseToolDeclaration(
    absl::string_view setup_json, absl::string_view connector,
    absl::string_view tool_id);

// The `discovery` of a setup.json text (supported=false when absent or
// `supported: false`). `timeout` is discovery.timeout, else the tool's own
// declared timeout, else 30 s. INVALID_SETUP when not JSON;
// FAILED_PRECONDITION INVALID_TOOL_DECLARATION when `tool` is missing or
// names no declared tool (or a field has a bad type or range).
absl::StatusOr<DiscoveryDeclaration> ParseDiscoveryDeclaration(
    absl::string_view setup_json);

// Replaces every occurrence of every non-empty secret in `text` by
// "******": every byte covered by some occurrence is masked, and each run
// of masked bytes becomes one "******", so a secret containing another, or
// two overlapping ones, leave no part behind.
std::string MaskSecrets(absl::string_view text,
                        const std::vector<std::string>& secrets);

// The values to mask for a run: input[key] for each declared key whose
// value is a non-empty string (numbers as their JSON text), plus their
// JSON-escaped forms when those differ.
std::vector<std::string> SecretValues(const ToolDeclaration& tool,
                                      absl::string_view input_json);

struct ToolExecutorOptions {
  // Where a plain entry name is looked up after the connector directory.
  // Default (empty): the directory of the running executable.
  std::vector<std::string> bin_dirs;
  // "NAME=value" pairs every tool gets before its declared `environment`
  // (the operator's pass-through variables, read once at start).
  std::vector<std::string> passthrough_env;
  ChildLimits limits;
  // More tools than this at once: RESOURCE_EXHAUSTED TOO_MANY_TOOLS.
  int max_concurrent = 32;
};

// The answer of one run.
struct ToolRun {
  std::string result_json;  // The object returned to the caller.
  bool ok = false;          // result has "ok": true (or no "ok" at all).
  std::string error_code;   // result's error.code when not ok.
  int exit_code = -1;
  absl::Duration elapsed;
};

class ToolExecutor {
 public:
  explicit ToolExecutor(ToolExecutorOptions options);

  // Resolves `entry` for the connector directory `connector_dir`: a
  // relative path (no `..`, not absolute) whose realpath lies inside
  // realpath(connector_dir), or a plain file name found in one of the bin
  // dirs; it must be a regular executable file. NOT_FOUND ENTRY_NOT_FOUND
  // ("Entry script not found: <entry>"); FAILED_PRECONDITION
  // ENTRY_OUTSIDE_CONNECTOR.
  absl::StatusOr<std::string> ResolveEntry(const std::string& connector_dir,
                                           const std::string& entry) const;

  // The complete child environment for `tool`, as "NAME=value" strings
  // without duplicate names, later ones winning:
  //   1. PATH=/usr/local/bin:/usr/bin:/bin, HOME=/tmp, LANG=C.UTF-8,
  //      IOT2MQTT_TOOL=<tool id>;
  //   2. options.passthrough_env;
  //   3. the declared `environment`, where `${NAME}` and `${NAME:-default}`
  //      (NAME = [A-Za-z_][A-Za-z0-9_]*) take the value of this service's
  //      own environment variable NAME; unset gives "" (`${NAME}`) or the
  //      default (`${NAME:-default}`, also when NAME is set but empty, as
  //      in the shell); the default is taken literally up to the first `}`;
  //      any other `$` is literal;
  //   4. `extra`.
  // Nothing else of this process's environment reaches a tool. Invalid
  // names in passthrough_env or `extra` are skipped.
  std::vector<std::string> Environment(
      const ToolDeclaration& tool,
      const std::vector<std::pair<std::string, std::string>>& extra) const;

  // Runs `tool` of `connector` (its directory `connector_dir`) with
  // `input_json` (a JSON object; "" or "null" = {}). Request errors
  // (INVALID_ARGUMENT INVALID_INPUT, the ResolveEntry errors,
  // RESOURCE_EXHAUSTED TOO_MANY_TOOLS) are a Status; everything the tool
  // does is a ToolRun with upstream's contract:
  //   exit 0 + one JSON object on stdout -> that object, masked (every
  //     string value inside it has the secrets replaced);
  //   exit 0 + empty stdout -> {"ok":false,"error":{"code":"invalid_output",
  //     "message":"Tool printed nothing","retriable":false}} (upstream
  //     returned {} and the UI took it for success);
  //   exit 0 + anything else -> invalid_output "Tool returned invalid JSON";
  //   stdout over the limit -> invalid_output "Tool output exceeds N bytes";
  //   non-zero exit or a signal -> tool_failed, message = stderr (trimmed,
  //     masked, at most 4 KiB) or "non-zero exit code <n>" / "killed by
  //     signal <name>";
  //   timeout -> timeout "Tool '<id>' timed out after <n> s", retriable;
  //   spawn failure -> executor_error with the reason.
  // Stdin is {"tool": id, "input": input}. `cancel` (may be null) ends the
  // run early (executor_error "cancelled"). Every string (keys included)
  // of the returned object is masked; a tool_failed message keeps the end
  // of stderr (where errors usually are), prefixed "..." when cut. Logs one
  // INFO line per run (connector, tool, end, exit code, elapsed, output
  // sizes; never input values). Blocking; thread-safe.
  absl::StatusOr<ToolRun> Execute(
      const std::string& connector, const std::string& connector_dir,
      const ToolDeclaration& tool, absl::string_view input_json,
      CancelToken* cancel,
      const std::vector<std::pair<std::string, std::string>>& extra_env = {});

  int running() const;

 private:
  ToolExecutorOptions options_;
  mutable absl::Mutex mu_;
  int running_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace iot2mqtt::discovery

#endif  // IOT2MQTT_SERVICES_DISCOVERY_TOOL_EXECUTOR_H_
