#ifndef IOT2MQTT_SDK_CONTRACT_H_
#define IOT2MQTT_SDK_CONTRACT_H_

// The v1 MQTT contract (docs/mqtt-contract.md) as code: topic names, id and
// timestamp rules, and a builder and a parser for every payload. The
// Connector base class uses these; tests and the conformance checker can use
// them to speak the contract from the other side.
//
// JSON: builders embed JSON values given as text (a state object, command
// values, event data) exactly, numbers included; callers pass compact,
// already-validated JSON there (JsonObjectBuilder output, or text returned by
// a parser here). Parsers accept any valid JSON, check types, and return
// embedded objects as compact text with every number kept exact. Free text
// (messages, event names) is written as UTF-8 with invalid bytes replaced by
// U+FFFD.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace iot2mqtt::sdk {

inline constexpr char kDefaultBaseTopic[] = "IoT2mqtt";
// The device id of errors that concern the instance rather than a device.
inline constexpr char kInstanceErrorDevice[] = "_instance";
inline constexpr size_t kMaxIdBytes = 128;
// Inbound payloads above this size are rejected unread.
inline constexpr size_t kMaxInboundPayloadBytes = 256 * 1024;
// A command older than this is stale; one further in the future than the
// skew is rejected too.
inline constexpr absl::Duration kStaleCommandAge = absl::Seconds(30);
inline constexpr absl::Duration kMaxCommandFutureSkew = absl::Seconds(5);

// Error codes the SDK publishes. Connectors add their own in UPPER_SNAKE_CASE.
namespace error_codes {
inline constexpr char kUpdateError[] = "UPDATE_ERROR";
inline constexpr char kInitError[] = "INIT_ERROR";
inline constexpr char kCommandError[] = "COMMAND_ERROR";
inline constexpr char kUnknownDevice[] = "UNKNOWN_DEVICE";
inline constexpr char kStaleCommand[] = "STALE_COMMAND";
inline constexpr char kInvalidCommand[] = "INVALID_COMMAND";
inline constexpr char kUnknownGroup[] = "UNKNOWN_GROUP";
inline constexpr char kDeviceOffline[] = "DEVICE_OFFLINE";
}  // namespace error_codes

// ---------------------------------------------------------------------------
// Names

// Ids used in topics (instance, device, group, meta type, state key): 1-128
// bytes of valid UTF-8 without '/', '+', '#', NUL or control characters
// (C0, DEL, C1). INVALID_ARGUMENT says what is wrong.
absl::Status ValidateId(absl::string_view id);
inline bool IsValidId(absl::string_view id) { return ValidateId(id).ok(); }

// MQTT_BASE_TOPIC: not empty, valid UTF-8, no '+', '#' or NUL, does not start
// or end with '/'.
absl::Status ValidateBaseTopic(absl::string_view base);

// What a topic under `{base}/v1/instances/{i}/` is.
enum class TopicKind {
  kStatus,                // status
  kState,                 // devices/{d}/state
  kStateProperty,         // devices/{d}/state/{key}
  kEvents,                // devices/{d}/events
  kError,                 // devices/{d}/error
  kCommand,               // devices/{d}/cmd               (inbound)
  kCommandResponse,       // devices/{d}/cmd/response
  kGet,                   // devices/{d}/get               (inbound)
  kGetResponse,           // devices/{d}/get/response
  kGroupCommand,          // groups/{g}/cmd                (inbound)
  kGroupCommandResponse,  // groups/{g}/cmd/response
  kMetaRequest,           // meta/request/{type}           (inbound)
  kDevicesList,           // meta/devices_list
  kInfo,                  // meta/info
};

struct TopicRef {
  TopicKind kind = TopicKind::kStatus;
  std::string id;        // Device, group or meta request type; "" otherwise.
  std::string property;  // The state key of kStateProperty.
};

// Topic names of one instance. Builders take ids the caller has validated
// (ValidateId); the parsers validate everything.
class Topics {
 public:
  // INVALID_ARGUMENT when the base or the instance id is invalid.
  static absl::StatusOr<Topics> Create(absl::string_view base,
                                       absl::string_view instance);

  const std::string& base() const { return base_; }
  const std::string& instance() const { return instance_; }
  // "{base}/v1/instances/{i}" (no trailing slash).
  const std::string& root() const { return root_; }
  // "{root}/#": every topic of the instance.
  std::string All() const;

  std::string Status() const;
  std::string State(absl::string_view device) const;
  std::string StateProperty(absl::string_view device,
                            absl::string_view key) const;
  std::string Events(absl::string_view device) const;
  std::string Error(absl::string_view device) const;
  std::string Command(absl::string_view device) const;
  std::string CommandResponse(absl::string_view device) const;
  std::string Get(absl::string_view device) const;
  std::string GetResponse(absl::string_view device) const;
  std::string GroupCommand(absl::string_view group) const;
  std::string GroupCommandResponse(absl::string_view group) const;
  std::string MetaRequest(absl::string_view type) const;
  std::string DevicesList() const;
  std::string Info() const;

  // The four filters a connector subscribes to: devices/+/cmd,
  // devices/+/get, groups/+/cmd, meta/request/+.
  std::vector<std::string> InboundFilters() const;

  // Any topic of the contract under this instance. NOT_FOUND when the topic
  // is outside the instance or has more or fewer levels than the contract
  // lists; INVALID_ARGUMENT when an id level is not a valid id (wildcards
  // included).
  absl::StatusOr<TopicRef> Parse(absl::string_view topic) const;
  // Only the inbound kinds (kCommand, kGet, kGroupCommand, kMetaRequest);
  // NOT_FOUND for any other topic.
  absl::StatusOr<TopicRef> ParseInbound(absl::string_view topic) const;

 private:
  Topics(std::string base, std::string instance);
  std::string base_;
  std::string instance_;
  std::string root_;
};

// ---------------------------------------------------------------------------
// Timestamps

// UTC, ISO 8601 with milliseconds and Z: "2025-10-13T10:30:00.123Z".
std::string FormatTimestamp(absl::Time time);
// Accepts "YYYY-MM-DDTHH:MM:SS" (T, t or a space), optional fraction (any
// number of digits), then Z/z, a numeric offset (+02:00, +0200, +02) or
// nothing (taken as UTC). INVALID_ARGUMENT otherwise, including impossible
// dates.
absl::StatusOr<absl::Time> ParseTimestamp(absl::string_view text);

// Command freshness (contract "Commands" step 2). `timestamp` is the JSON
// text of the command's timestamp member (a string literal when well-formed)
// or nullopt when the command had none (always fresh). FAILED_PRECONDITION
// with a readable reason when it is unparsable, older than kStaleCommandAge
// or more than kMaxCommandFutureSkew ahead of `now`.
absl::Status CheckCommandTime(const std::optional<std::string>& timestamp,
                              absl::Time now);

// ---------------------------------------------------------------------------
// Payloads

enum class ErrorSeverity { kInfo, kWarning, kError, kCritical };
absl::string_view ErrorSeverityName(ErrorSeverity severity);
std::optional<ErrorSeverity> ParseErrorSeverity(absl::string_view name);

// "success" / "partial" / "error" of responses (partial: groups only).
enum class ResultStatus { kSuccess, kPartial, kError };
absl::string_view ResultStatusName(ResultStatus status);

// devices/{d}/state: {"timestamp", "device_id", "state": {...}}.
struct StateMessage {
  absl::Time timestamp;
  std::string device_id;
  std::string state = "{}";  // Compact JSON object.
};
std::string BuildStatePayload(const StateMessage& message);
absl::StatusOr<StateMessage> ParseStatePayload(absl::string_view payload);

// devices/{d}/state/{key}: the JSON value itself. Parsing validates it and
// returns it compacted (numbers exact).
absl::StatusOr<std::string> ParsePropertyPayload(absl::string_view payload);

// devices/{d}/events: {"timestamp", "event", "data": {...}}.
struct EventMessage {
  absl::Time timestamp;
  std::string event;
  std::string data = "{}";  // Compact JSON (an object by convention).
};
std::string BuildEventPayload(const EventMessage& message);
absl::StatusOr<EventMessage> ParseEventPayload(absl::string_view payload);

// devices/{d}/error: {"timestamp", "error_code", "message", "severity",
// "retry_info"?: {"attempt", "max_attempts"?, "next_retry"?}}.
struct RetryInfo {
  int64_t attempt = 0;
  std::optional<int64_t> max_attempts;
  std::optional<absl::Time> next_retry;
};
struct ErrorMessage {
  absl::Time timestamp;
  std::string error_code;
  std::string message;
  ErrorSeverity severity = ErrorSeverity::kError;
  std::optional<RetryInfo> retry_info;
};
std::string BuildErrorPayload(const ErrorMessage& message);
absl::StatusOr<ErrorMessage> ParseErrorPayload(absl::string_view payload);

// devices/{d}/cmd and groups/{g}/cmd:
// {"id"?, "timestamp"?, "values": {...}, "timeout"? (ms)}, or the legacy flat
// form where every member but id/timestamp/timeout is a value.
struct CommandRequest {
  std::optional<std::string> id;
  // JSON text of the timestamp member as sent (a string literal when
  // well-formed); checked by CheckCommandTime, never by the parser.
  std::optional<std::string> timestamp;
  std::optional<int64_t> timeout_ms;
  std::string values = "{}";  // Compact JSON object, numbers exact.
  bool legacy_flat = false;
};
// INVALID_ARGUMENT (contract: INVALID_COMMAND) when the payload is not a JSON
// object, `values` is not an object, `id` is not a string or `timeout` is not
// a non-negative integer. `id_out`, when given, receives the id whenever it
// could be read, so a rejection can still be answered.
absl::StatusOr<CommandRequest> ParseCommandPayload(
    absl::string_view payload, std::optional<std::string>* id_out = nullptr);
// Always the "values" form; `timestamp` is embedded as given (JSON text).
std::string BuildCommandPayload(const CommandRequest& command);
// Convenience for senders: a command with `id`, the timestamp `now`, the
// given values (compact JSON object) and an optional timeout.
std::string BuildCommandPayload(absl::string_view id, absl::Time now,
                                absl::string_view values,
                                std::optional<int64_t> timeout_ms = 5000);

// devices/{d}/cmd/response:
// success: {"cmd_id", "status": "success", "timestamp", "result": {...}}
// error:   {"cmd_id", "status": "error", "timestamp", "error_code", "error"}
struct CommandResponse {
  std::string cmd_id;
  ResultStatus status = ResultStatus::kSuccess;  // kSuccess or kError.
  absl::Time timestamp;
  std::string result = "{}";  // Success: the state after the command.
  std::string error_code;     // Error only.
  std::string error;          // Error only.
};
std::string BuildCommandResponsePayload(const CommandResponse& response);
absl::StatusOr<CommandResponse> ParseCommandResponsePayload(
    absl::string_view payload);

// devices/{d}/get: {} or {"properties": [...], "id"?}; an empty payload
// counts as {}.
struct GetRequest {
  std::optional<std::vector<std::string>> properties;
  std::optional<std::string> id;
};
// INVALID_ARGUMENT when not an object, `properties` is not an array of
// strings, or `id` is not a string; `id_out` as for commands.
absl::StatusOr<GetRequest> ParseGetPayload(
    absl::string_view payload, std::optional<std::string>* id_out = nullptr);
std::string BuildGetPayload(const GetRequest& request);

// devices/{d}/get/response:
// {"timestamp", "device_id", "state": {only the requested keys}, "id"?}, or
// with "error_code" and "error" instead of "state".
struct GetResponse {
  absl::Time timestamp;
  std::string device_id;
  std::optional<std::string> id;
  std::optional<std::string> state;  // Compact JSON object; unset on error.
  std::string error_code;
  std::string error;
};
std::string BuildGetResponsePayload(const GetResponse& response);
absl::StatusOr<GetResponse> ParseGetResponsePayload(absl::string_view payload);

// groups/{g}/cmd/response:
// {"cmd_id", "status": "success"|"partial"|"error", "timestamp",
//  "results": {"d1": {"status": "success"},
//              "d2": {"status": "error", "error_code", "error"}},
//  "error_code"?, "error"? (when the whole command failed: UNKNOWN_GROUP...)}
struct GroupMemberResult {
  std::string device_id;
  bool success = true;
  std::string error_code;
  std::string error;
};
struct GroupCommandResponse {
  std::string cmd_id;
  ResultStatus status = ResultStatus::kSuccess;
  absl::Time timestamp;
  std::vector<GroupMemberResult> results;
  std::string error_code;  // Whole-command failures only.
  std::string error;
};
// success when every member succeeded, error when none did (or there are
// none), partial otherwise.
ResultStatus AggregateStatus(const std::vector<GroupMemberResult>& results);
std::string BuildGroupCommandResponsePayload(
    const GroupCommandResponse& response);
absl::StatusOr<GroupCommandResponse> ParseGroupCommandResponsePayload(
    absl::string_view payload);

// meta/devices_list: [{"device_id", "global_id": "{i}_{d}", "model",
// "enabled", "online"}].
struct DeviceListEntry {
  std::string device_id;
  std::string global_id;  // Filled by the parser; the builder derives it.
  std::string model;      // "unknown" when the config has none.
  bool enabled = true;
  bool online = false;
};
std::string BuildDevicesListPayload(absl::string_view instance,
                                    const std::vector<DeviceListEntry>& list);
absl::StatusOr<std::vector<DeviceListEntry>> ParseDevicesListPayload(
    absl::string_view payload);

// meta/info: {"instance_id", "connector_type", "devices_count",
// "groups_count", "uptime": whole seconds since start}.
struct InstanceInfo {
  std::string instance_id;
  std::string connector_type;
  int64_t devices_count = 0;
  int64_t groups_count = 0;
  int64_t uptime_seconds = 0;
};
std::string BuildInfoPayload(const InstanceInfo& info);
absl::StatusOr<InstanceInfo> ParseInfoPayload(absl::string_view payload);

// Text made safe for JSON and logs: invalid UTF-8 bytes become U+FFFD.
std::string SanitizeUtf8(absl::string_view text);
// Whether `text` is well-formed UTF-8 (no overlongs, surrogates or values
// above U+10FFFF).
bool IsValidUtf8(absl::string_view text);

}  // namespace iot2mqtt::sdk

#endif  // IOT2MQTT_SDK_CONTRACT_H_
