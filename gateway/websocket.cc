#include "gateway/websocket.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "gateway/http_server.h"

namespace iot2mqtt::gateway {
namespace {

bool IsBase64Char(char c) {
  return absl::ascii_isalnum(c) || c == '+' || c == '/';
}

// 16 bytes in base64: 22 characters and "==".
bool IsValidKey(absl::string_view key) {
  key = absl::StripAsciiWhitespace(key);
  if (key.size() != 24 || !absl::EndsWith(key, "==")) return false;
  for (size_t i = 0; i < 22; ++i) {
    if (!IsBase64Char(key[i])) return false;
  }
  return true;
}

bool HasToken(absl::string_view header, absl::string_view token) {
  for (absl::string_view part : absl::StrSplit(header, ',')) {
    if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(part), token)) {
      return true;
    }
  }
  return false;
}

HttpError Invalid(absl::string_view what) {
  return GatewayError(
      400, absl::StatusCode::kInvalidArgument,
      std::string("not a valid WebSocket handshake: ") + std::string(what),
      kWebSocketHandshakeInvalid);
}

}  // namespace

std::optional<HttpError> ValidateWebSocketUpgrade(const HttpRequest& request) {
  if (request.method != "GET") return Invalid("the method must be GET");
  if (!absl::EqualsIgnoreCase(
          absl::StripAsciiWhitespace(request.Header("upgrade")), "websocket")) {
    return Invalid("\"Upgrade: websocket\" is missing");
  }
  if (!HasToken(request.Header("connection"), "upgrade")) {
    return Invalid("\"Connection: Upgrade\" is missing");
  }
  if (!IsValidKey(request.Header("sec-websocket-key"))) {
    return Invalid("Sec-WebSocket-Key must be 16 bytes in base64");
  }
  if (absl::StripAsciiWhitespace(request.Header("sec-websocket-version")) !=
      "13") {
    return GatewayError(426, absl::StatusCode::kFailedPrecondition,
                        "only WebSocket version 13 is supported",
                        kWebSocketVersionUnsupported,
                        {{"supported_version", "13"}});
  }
  return std::nullopt;
}

}  // namespace iot2mqtt::gateway
