#ifndef IOT2MQTT_CONNECTORS_YEELIGHT_YEELIGHT_PROTOCOL_H_
#define IOT2MQTT_CONNECTORS_YEELIGHT_YEELIGHT_PROTOCOL_H_

// The Yeelight LAN protocol without any I/O: request encoding, response and
// notification parsing, line splitting, and the SSDP-style discovery
// messages. Everything here is a pure function so it can be tested alone.
//
// Control: TCP (default port 55443), one JSON object per line ("\r\n"):
//   -> {"id":1,"method":"set_power","params":["on","smooth",500]}
//   <- {"id":1,"result":["ok"]}
//   <- {"id":2,"error":{"code":-1,"message":"unsupported method"}}
//   <- {"method":"props","params":{"power":"on","bright":"80"}}   (pushed)
// Discovery: UDP "M-SEARCH * HTTP/1.1" with ST: wifi_bulb to
// 239.255.255.250:1982; bulbs answer with HTTP-style headers.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace iot2mqtt::yeelight {

inline constexpr int kDefaultControlPort = 55443;
inline constexpr char kDefaultDiscoveryAddress[] = "239.255.255.250:1982";
// The shortest transition a bulb accepts for "smooth" changes.
inline constexpr int kMinDurationMs = 30;
// Longest accepted line; a longer one is dropped (and counted) unread.
inline constexpr size_t kMaxLineBytes = 64 * 1024;

// Bulb properties as the bulb reports them: name -> text ("on", "80").
using Properties = std::map<std::string, std::string>;

// A request parameter: Yeelight methods take integers and strings.
using Param = std::variant<int64_t, std::string>;

struct Request {
  std::string method;
  std::vector<Param> params;
};

// {"id":id,"method":...,"params":[...]}\r\n
std::string EncodeRequest(int64_t id, const Request& request);

// One parsed line from a bulb.
struct Message {
  enum class Kind { kResult, kError, kNotification };
  Kind kind = Kind::kResult;
  int64_t id = 0;                   // kResult, kError
  std::vector<std::string> result;  // kResult: each value as text
  int64_t error_code = 0;           // kError
  std::string error_message;        // kError
  std::string method;               // kNotification ("props")
  Properties params;                // kNotification: values as text
};

// Parses one line (without its line ending). INVALID_ARGUMENT for anything
// that is not one of the three message shapes.
absl::StatusOr<Message> ParseMessage(absl::string_view line);

// Splits a byte stream into lines ("\n", a trailing "\r" removed). Empty
// lines are skipped. A line longer than `max_line` bytes is dropped whole,
// and counted in dropped_lines().
class LineSplitter {
 public:
  explicit LineSplitter(size_t max_line = kMaxLineBytes)
      : max_line_(max_line) {}
  void Append(absl::string_view data);
  // The next complete line, false when there is none yet.
  bool Next(std::string* line);
  size_t dropped_lines() const { return dropped_lines_; }
  void Clear() {
    buffer_.clear();
    discarding_ = false;
  }

 private:
  size_t max_line_;
  std::string buffer_;
  size_t scan_from_ = 0;
  bool discarding_ = false;  // Inside an over-long line.
  size_t dropped_lines_ = 0;
};

// Transition of a state change: "smooth" (with a duration) or "sudden".
struct Transition {
  bool smooth = true;
  int duration_ms = 300;
};
// Clamps the duration to at least kMinDurationMs.
Transition NormalizeTransition(Transition transition);

// Request builders. Values are clamped to what bulbs accept.
Request GetProp(const std::vector<std::string>& names);
Request SetPower(bool on, Transition transition);
Request Toggle();
Request SetBright(int brightness, Transition transition);    // 1..100
Request SetCtAbx(int kelvin, Transition transition);         // 1700..6500
Request SetRgb(int r, int g, int b, Transition transition);  // 0..255 each
Request SetHsv(int hue, int sat, Transition transition);     // 0..359, 0..100
Request SetName(absl::string_view name);
// The background-light variant of a request (set_power -> bg_set_power,
// toggle -> bg_toggle).
Request Background(Request request);

// The properties the connector asks for with get_prop.
const std::vector<std::string>& StandardProperties();
const std::vector<std::string>& BackgroundProperties();

// --- Discovery --------------------------------------------------------------

struct HostPort {
  std::string host;
  int port = 0;
};
// "a.b.c.d:port" or "a.b.c.d" (then `default_port`). Only numeric IPv4.
absl::StatusOr<HostPort> ParseHostPort(absl::string_view text,
                                       int default_port);

// The M-SEARCH datagram sent to `host_port` ("239.255.255.250:1982").
std::string BuildSearchRequest(absl::string_view host_port);

// A bulb found by discovery.
struct DiscoveredBulb {
  std::string id;  // "0x000000000015243f"
  std::string host;
  int port = kDefaultControlPort;
  std::string model;
  std::string fw_ver;
  std::string name;
  std::vector<std::string> support;  // Supported methods.
  // Every header of the answer with a lower-case name (power, bright, ct,
  // rgb, hue, sat, color_mode, ...).
  std::map<std::string, std::string> headers;
};

// Parses a search answer ("HTTP/1.1 200 OK") or an advertisement
// ("NOTIFY * HTTP/1.1") with a `Location: yeelight://ip:port` header.
absl::StatusOr<DiscoveredBulb> ParseSearchResponse(absl::string_view datagram);

// The answer a bulb sends to an M-SEARCH (used by the simulator).
std::string BuildSearchResponse(const DiscoveredBulb& bulb);

}  // namespace iot2mqtt::yeelight

#endif  // IOT2MQTT_CONNECTORS_YEELIGHT_YEELIGHT_PROTOCOL_H_
