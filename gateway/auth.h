#ifndef IOT2MQTT_GATEWAY_AUTH_H_
#define IOT2MQTT_GATEWAY_AUTH_H_

// The gateway's authentication policy (pure logic; the token itself is
// issued and checked by the config service, which holds the signing secret).
//
// Every route needs a bearer token except: POST /api/auth/login,
// GET /api/setup/status, /api/health, /metrics, the API reference
// (/api/docs, /api/docs/openapi.json) and static files (paths outside /api/
// and /ws/). The token comes from `Authorization: Bearer <token>`; streams
// (WebSocket upgrades and Server-Sent Events, which browsers open without
// custom headers) may pass it as `?token=` instead.

#include <cstdint>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gateway/http_server.h"

namespace iot2mqtt::gateway {

enum class AuthMode { kRequired, kDisabled };

// Reasons of the gateway's own auth answers.
inline constexpr char kAuthRequired[] = "AUTH_REQUIRED";
inline constexpr char kTooManyLoginAttempts[] = "TOO_MANY_LOGIN_ATTEMPTS";

inline constexpr char kLoginPath[] = "/api/auth/login";
inline constexpr char kAuthCheckPath[] = "/api/auth/check";
inline constexpr char kAuthVerifyPath[] = "/api/auth/verify";

// Whether `method path` may be served without a token.
bool IsPublicRoute(absl::string_view method, absl::string_view path);

// The bearer token of `request`: the Authorization header, else (when
// `allow_query` — streams only) the `token` query parameter; "" when none.
std::string BearerTokenOf(const HttpRequest& request, bool allow_query);

// Whether `request` opens a stream that may carry its token in the query: a
// WebSocket upgrade.
bool IsWebSocketUpgrade(const HttpRequest& request);

// Whether an address (as "127.0.0.1", "::1", "::ffff:127.0.0.1") is
// loopback.
bool IsLoopbackAddress(absl::string_view address);

// Failed logins per client address: after `max_failures` within `window`,
// further attempts are refused until the oldest failure leaves the window.
// A successful login clears the address. Bounded: at most `max_clients`
// addresses are tracked (the stalest are forgotten first).
class LoginLimiter {
 public:
  LoginLimiter(int max_failures = 5, absl::Duration window = absl::Minutes(1),
               size_t max_clients = 10000);
  // How long `address` must wait; zero when it may try now.
  absl::Duration RetryAfter(const std::string& address, absl::Time now);
  void RecordFailure(const std::string& address, absl::Time now);
  void RecordSuccess(const std::string& address);

 private:
  void Prune(const std::string& address, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int max_failures_;
  const absl::Duration window_;
  const size_t max_clients_;
  absl::Mutex mu_;
  std::map<std::string, std::list<absl::Time>> failures_ ABSL_GUARDED_BY(mu_);
};

// Who a request is authenticated as, and until when.
struct Principal {
  std::string subject;
  absl::Time expires_at = absl::InfiniteFuture();
};

// Tokens the config service accepted, until they expire (so a request
// costs no extra call). Bounded; least recently used dropped first.
class TokenCache {
 public:
  explicit TokenCache(size_t capacity = 4096) : capacity_(capacity) {}
  // The principal when `token` is known and not expired at `now`.
  std::optional<Principal> Lookup(const std::string& token, absl::Time now);
  void Insert(const std::string& token, std::string subject,
              absl::Time expires_at);

 private:
  struct Entry {
    std::string subject;
    absl::Time expires_at;
    std::list<std::string>::iterator position;
  };
  const size_t capacity_;
  absl::Mutex mu_;
  std::list<std::string> order_ ABSL_GUARDED_BY(mu_);  // Most recent first.
  std::unordered_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace iot2mqtt::gateway

#endif  // IOT2MQTT_GATEWAY_AUTH_H_
