#include "services/config/token_service.h"

#include <sodium.h>
#include <sys/stat.h>

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "rapidjson/document.h"
#include "rapidjson/error/en.h"
#include "services/common/status.h"
#include "services/config/file_io.h"

namespace iot2mqtt::config {
namespace {

constexpr size_t kSecretBytes = 32;
constexpr size_t kMaxTokenBytes = 8192;
constexpr char kHeader[] = R"({"alg":"HS256","typ":"JWT"})";

absl::Status SodiumReady() {
  static const int result = sodium_init();
  if (result < 0) return absl::InternalError("libsodium failed to initialise");
  return absl::OkStatus();
}

std::string Base64UrlEncode(absl::string_view bytes) {
  const int variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), variant), '\0');
  sodium_bin2base64(out.data(), out.size(),
                    reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), variant);
  out.resize(out.size() - 1);  // The terminating NUL.
  return out;
}

std::optional<std::string> Base64UrlDecode(absl::string_view text) {
  std::string out(text.size() * 3 / 4 + 1, '\0');
  size_t length = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()),
                        out.size(), text.data(), text.size(), nullptr, &length,
                        &end, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      end != text.data() + text.size()) {
    return std::nullopt;
  }
  out.resize(length);
  return out;
}

std::string Hmac(absl::string_view key, absl::string_view message) {
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(
      &state, reinterpret_cast<const unsigned char*>(key.data()), key.size());
  crypto_auth_hmacsha256_update(
      &state, reinterpret_cast<const unsigned char*>(message.data()),
      message.size());
  crypto_auth_hmacsha256_final(&state, mac);
  return std::string(reinterpret_cast<const char*>(mac), sizeof(mac));
}

absl::Status Malformed(absl::string_view why) {
  return common::WithReason(
      absl::UnauthenticatedError(absl::StrCat("malformed token: ", why)),
      kTokenMalformed);
}

// Parses a decoded JWT segment as a JSON object.
bool ParseObject(const std::string& json, rapidjson::Document* document) {
  document->Parse<rapidjson::kParseValidateEncodingFlag>(json.data(),
                                                         json.size());
  return !document->HasParseError() && document->IsObject();
}

}  // namespace

TokenService::TokenService(std::string auth_dir, absl::Duration lifetime,
                           std::function<absl::Time()> clock)
    : auth_dir_(std::move(auth_dir)),
      secret_path_(auth_dir_ + "/token_secret"),
      lock_path_(auth_dir_ + "/.token_secret.lock"),
      lifetime_(lifetime),
      clock_(std::move(clock)) {}

TokenService::~TokenService() {
  absl::MutexLock lock(&mu_);
  if (secret_.has_value()) sodium_memzero(secret_->data(), secret_->size());
}

absl::StatusOr<std::string> TokenService::Secret() {
  absl::MutexLock lock(&mu_);
  if (!secret_.has_value()) {
    IOT2MQTT_ASSIGN_OR_RETURN(std::string secret, LoadOrCreateSecret());
    secret_ = std::move(secret);
  }
  return *secret_;
}

absl::StatusOr<std::string> TokenService::LoadOrCreateSecret() {
  IOT2MQTT_RETURN_IF_ERROR(SodiumReady());
  absl::StatusOr<std::string> secret = ReadWholeFile(secret_path_);
  if (absl::IsNotFound(secret.status())) {
    IOT2MQTT_RETURN_IF_ERROR(MakeDirectories(auth_dir_, 0700));
    IOT2MQTT_ASSIGN_OR_RETURN(FileLock file_lock,
                              FileLock::Acquire(lock_path_));
    // Someone may have created it while we waited for the lock.
    secret = ReadWholeFile(secret_path_);
    if (absl::IsNotFound(secret.status())) {
      std::string fresh(kSecretBytes, '\0');
      randombytes_buf(fresh.data(), fresh.size());
      IOT2MQTT_RETURN_IF_ERROR(WriteFileAtomically(secret_path_, fresh, 0600));
      IOT2MQTT_LOG(INFO).With("path", secret_path_)
          << "created a new token signing secret";
      return fresh;
    }
  }
  if (!secret.ok()) return secret.status();
  struct stat st;
  if (stat(secret_path_.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    if (chmod(secret_path_.c_str(), 0600) != 0) {
      return StorageError(errno, "chmod", secret_path_);
    }
    IOT2MQTT_LOG(WARNING).With("path", secret_path_)
        << "the token signing secret was readable by group or others; "
           "its mode is now 0600";
  }
  if (secret->size() != kSecretBytes) {
    sodium_memzero(secret->data(), secret->size());
    return common::WithReason(
        absl::FailedPreconditionError(absl::StrCat(
            "the token signing secret ", secret_path_, " is not ", kSecretBytes,
            " bytes long; delete it to create a new one (every session "
            "token becomes invalid)")),
        kTokenSecretCorrupt, {{"path", secret_path_}});
  }
  return secret;
}

absl::StatusOr<IssuedToken> TokenService::Issue(absl::string_view subject) {
  IOT2MQTT_ASSIGN_OR_RETURN(std::string secret, Secret());
  const int64_t now = absl::ToUnixSeconds(clock_());
  const int64_t lifetime = absl::ToInt64Seconds(lifetime_);
  std::string claims = sdk::JsonObjectBuilder()
                           .Set("sub", subject)
                           .Set("iat", now)
                           .Set("exp", now + lifetime)
                           .Build();
  std::string signing_input =
      absl::StrCat(Base64UrlEncode(kHeader), ".", Base64UrlEncode(claims));
  std::string signature = Hmac(secret, signing_input);
  sodium_memzero(secret.data(), secret.size());
  IssuedToken issued;
  issued.token = absl::StrCat(signing_input, ".", Base64UrlEncode(signature));
  issued.expires_in_seconds = lifetime;
  return issued;
}

absl::StatusOr<VerifiedToken> TokenService::Verify(absl::string_view token) {
  if (token.empty()) return Malformed("empty");
  if (token.size() > kMaxTokenBytes) return Malformed("too long");
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3) return Malformed("expected three dot-separated parts");

  std::optional<std::string> header = Base64UrlDecode(parts[0]);
  rapidjson::Document header_json;
  if (!header.has_value() || !ParseObject(*header, &header_json)) {
    return Malformed("the header is not base64url-encoded JSON");
  }
  auto alg = header_json.FindMember("alg");
  if (alg == header_json.MemberEnd() || !alg->value.IsString() ||
      absl::string_view(alg->value.GetString(), alg->value.GetStringLength()) !=
          "HS256") {
    return Malformed("only the HS256 algorithm is accepted");
  }

  std::optional<std::string> signature = Base64UrlDecode(parts[2]);
  if (!signature.has_value() ||
      signature->size() != crypto_auth_hmacsha256_BYTES) {
    return Malformed("the signature is not a base64url HMAC-SHA256");
  }
  IOT2MQTT_ASSIGN_OR_RETURN(std::string secret, Secret());
  absl::string_view signing_input =
      token.substr(0, parts[0].size() + 1 + parts[1].size());
  std::string expected = Hmac(secret, signing_input);
  sodium_memzero(secret.data(), secret.size());
  if (sodium_memcmp(expected.data(), signature->data(), expected.size()) != 0) {
    return common::WithReason(
        absl::UnauthenticatedError("the token signature is invalid"),
        kTokenSignatureInvalid);
  }

  std::optional<std::string> claims = Base64UrlDecode(parts[1]);
  rapidjson::Document claims_json;
  if (!claims.has_value() || !ParseObject(*claims, &claims_json)) {
    return Malformed("the claims are not base64url-encoded JSON");
  }
  auto sub = claims_json.FindMember("sub");
  auto exp = claims_json.FindMember("exp");
  if (sub == claims_json.MemberEnd() || !sub->value.IsString() ||
      sub->value.GetStringLength() == 0) {
    return Malformed("the subject (sub) is missing");
  }
  if (exp == claims_json.MemberEnd() || !exp->value.IsInt64()) {
    return Malformed("the expiry (exp) is missing");
  }
  VerifiedToken verified;
  verified.subject =
      std::string(sub->value.GetString(), sub->value.GetStringLength());
  verified.expires_at = absl::FromUnixSeconds(exp->value.GetInt64());
  if (clock_() >= verified.expires_at) {
    return common::WithReason(
        absl::UnauthenticatedError("the token has expired; log in again"),
        kTokenExpired);
  }
  return verified;
}

}  // namespace iot2mqtt::config
