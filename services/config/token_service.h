#ifndef IOT2MQTT_SERVICES_CONFIG_TOKEN_SERVICE_H_
#define IOT2MQTT_SERVICES_CONFIG_TOKEN_SERVICE_H_

// Session tokens for the web UI (no gRPC): JWT HS256 (RFC 7519) signed with a
// random 32-byte secret created once per installation, never a built-in
// default (upstream's "your-secret-key-change-in-production").
//
//   header  {"alg":"HS256","typ":"JWT"}
//   claims  {"sub":"user","iat":<unix s>,"exp":<unix s>}
//
// The secret lives in `<auth_dir>/token_secret` (32 raw bytes, mode 0600,
// directory 0700). It is created on first use under the lock file
// `<auth_dir>/.token_secret.lock`, so processes that start together end up
// with one secret. An existing secret readable by group or others is
// chmodded to 0600 (with a WARNING). Replacing the file (or deleting it)
// invalidates every issued token.
//
// Errors (services/common/status.h reasons):
//   UNAUTHENTICATED     TOKEN_MALFORMED, TOKEN_SIGNATURE_INVALID,
//                       TOKEN_EXPIRED
//   FAILED_PRECONDITION TOKEN_SECRET_CORRUPT {path} (not 32 bytes)
//   UNAVAILABLE / RESOURCE_EXHAUSTED / INTERNAL  STORAGE_* {path}

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace iot2mqtt::config {

inline constexpr char kTokenMalformed[] = "TOKEN_MALFORMED";
inline constexpr char kTokenSignatureInvalid[] = "TOKEN_SIGNATURE_INVALID";
inline constexpr char kTokenExpired[] = "TOKEN_EXPIRED";
inline constexpr char kTokenSecretCorrupt[] = "TOKEN_SECRET_CORRUPT";

struct IssuedToken {
  std::string token;
  int64_t expires_in_seconds = 0;
};

struct VerifiedToken {
  std::string subject;
  absl::Time expires_at;
};

// Thread-safe. The secret is read (or created) once and kept in memory.
class TokenService {
 public:
  static constexpr int64_t kDefaultLifetimeSeconds = 604800;  // 7 days.

  explicit TokenService(
      std::string auth_dir,
      absl::Duration lifetime = absl::Seconds(kDefaultLifetimeSeconds),
      std::function<absl::Time()> clock = [] { return absl::Now(); });
  ~TokenService();
  TokenService(const TokenService&) = delete;
  TokenService& operator=(const TokenService&) = delete;

  // A token for `subject` valid for the lifetime from now. Fails only when
  // the secret can't be read or created.
  absl::StatusOr<IssuedToken> Issue(absl::string_view subject);

  // Checks structure, algorithm (HS256 only; "none" and everything else are
  // TOKEN_MALFORMED), signature (constant time) and expiry (a token is
  // expired from its `exp` second on).
  absl::StatusOr<VerifiedToken> Verify(absl::string_view token);

  const std::string& secret_path() const { return secret_path_; }

 private:
  // The secret, loaded or created on first use.
  absl::StatusOr<std::string> Secret() ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::string> LoadOrCreateSecret();

  const std::string auth_dir_;
  const std::string secret_path_;
  const std::string lock_path_;
  const absl::Duration lifetime_;
  const std::function<absl::Time()> clock_;
  absl::Mutex mu_;
  std::optional<std::string> secret_ ABSL_GUARDED_BY(mu_);
};

}  // namespace iot2mqtt::config

#endif  // IOT2MQTT_SERVICES_CONFIG_TOKEN_SERVICE_H_
