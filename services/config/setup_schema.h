#ifndef IOT2MQTT_SERVICES_CONFIG_SETUP_SCHEMA_H_
#define IOT2MQTT_SERVICES_CONFIG_SETUP_SCHEMA_H_

// The setup-flow schema of a connector's setup.json (pure logic, no I/O).
// The accepted schema, the problems reported and the validate messages are
// described in docs/setup-flows.md.
//
//   - ValidateSetupSchema: every problem that keeps the web UI from
//     rendering the flows (missing or mistyped keys, unknown step types,
//     duplicate ids, tools that are not declared, unsafe tool entries, ...).
//     Unknown keys are allowed and never reported. Field types other than the
//     nine standard ones are custom fields when they match
//     ^[a-z][a-z0-9_]*$ (upstream rejects them).
//   - DeclaredSecretFields: names of form fields whose values are secret.
//   - ValidateConfigAgainstSetup: upstream's POST .../validate semantics
//     (same messages), without its 500s.

#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace iot2mqtt::config {

inline constexpr char kInvalidConfig[] = "INVALID_CONFIG";
inline constexpr char kSetupSchemaInvalid[] = "SETUP_SCHEMA_INVALID";

// One problem of a setup.json. `path` locates it, dotted with array indexes
// ("flows[0].steps[2].schema.fields[1].type", "tools.validate.entry"); it is
// "" for the document as a whole (not JSON, not an object).
struct SchemaProblem {
  std::string path;
  std::string message;
};

// All problems of `json` as a setup.json, in document order; empty when it
// is valid.
std::vector<SchemaProblem> ValidateSetupSchema(absl::string_view json);

// Names of the form fields (of every flow) that have `secret: true` or
// `type: "password"`. Best effort: works on documents with schema problems;
// empty when `json` isn't a JSON object.
std::set<std::string> DeclaredSecretFields(absl::string_view json);

// Checks `config_json` (the values a setup flow collected) against the form
// fields of every flow of `setup_json`, merged by name (a later field of the
// same name wins). Returns compact {"valid":bool,"errors":[...],
// "warnings":[...]} with upstream's messages:
//   Required field '<n>' is missing           (missing or null)
//   Field '<n>' must be numeric               (number fields, and any field
//                                              with min/max; booleans are NOT
//                                              numeric)
//   Field '<n>' must be boolean               (checkbox fields)
//   Field '<n>' value does not match pattern  (strings only, full match,
//                                              ECMAScript syntax)
//   Field '<n>' has an invalid pattern in setup.json
//   Field '<n>' must be >= <min> / <= <max>   (bounds as Python prints
//                                              floats: 5 → 5.0)
//   Unknown field '<k>'                       (warning; keys starting with
//                                              '_' are exempt)
// Values are never echoed. Errors: INVALID_ARGUMENT INVALID_CONFIG when
// `config_json` isn't a JSON object; FAILED_PRECONDITION SETUP_SCHEMA_INVALID
// when `setup_json` isn't one.
absl::StatusOr<std::string> ValidateConfigAgainstSetup(
    absl::string_view setup_json, absl::string_view config_json);

// How Python's repr() prints a float: 5 → "5.0", 2.5 → "2.5",
// 1e16 → "1e+16", 1e-05 → "1e-05".
std::string PythonFloatRepr(double value);

// Strings longer than this are never matched against a pattern (std::regex
// recurses per character); they fail the pattern check.
inline constexpr size_t kMaxPatternInput = 1024;

}  // namespace iot2mqtt::config

#endif  // IOT2MQTT_SERVICES_CONFIG_SETUP_SCHEMA_H_
