#ifndef IOT2MQTT_SERVICES_CONFIG_SECRET_FIELDS_H_
#define IOT2MQTT_SERVICES_CONFIG_SECRET_FIELDS_H_

// Which values of an instance document are secret, and moving them between
// the document, the vault and API responses (pure logic, no I/O).
//
// A member is secret when its key is one of `declared` (setup.json fields
// with `secret: true` or `type: "password"`), or when its key names a
// credential (see IsCredentialName) and its value is neither a boolean nor
// null. Objects and arrays are walked at any depth, lists included; a
// secret member's whole value (any JSON type) is secret.
//
// Paths are dotted, array elements by index: "connection.password",
// "devices.0.token". In the stored document a secret value is replaced by
// the placeholder string "__SECRET__<path>__" (upstream's format).

#include <map>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace iot2mqtt::config {

// What API responses show instead of a secret value; sending it back in an
// update keeps the stored value.
inline constexpr char kSecretMask[] = "***HIDDEN***";

// Whether `key` names a credential: split into words at '_', '-' and
// lower→upper camel-case boundaries, lower-cased, it ends with one of
// password, passwd, passphrase, secret, token, api_key/apikey, private_key,
// credential(s), auth_token, client_secret. So "password", "db_password",
// "apiKey", "access_token" are; "token_type", "password_hint",
// "use_password_auth" are not.
//
// Details (additions): ' ' and '.' separate words too, and a digit followed
// by an upper-case letter is a boundary ("oauth2Token"); "privatekey" and
// "private_key"/"privateKey" both count, as do "apikey"/"api_key"/"apiKey"/
// "APIKey". Only the last word(s) decide, so plurals and counters such as
// "tokens", "tokens_used", "password_length" are not credentials.
bool IsCredentialName(absl::string_view key);

struct SecretSplit {
  std::string document_json;  // With placeholders; key order kept.
  std::string secrets_json;   // {"<path>": value, ...}; "{}" when none.
};

// Splits `document_json` (a JSON object). INVALID_ARGUMENT when it isn't one.
// Addition: when a path occurs twice (duplicate keys, or a key containing
// '.' that spells another member's path), the later value wins.
absl::StatusOr<SecretSplit> ExtractSecrets(
    absl::string_view document_json, const std::set<std::string>& declared);

// `extracted` (from ExtractSecrets of an update) with every value that is the
// mask string replaced by the value at the same path in `stored`; a masked
// path with no stored value is dropped (and its placeholder stays, so the
// connector sees no value rather than the mask). Both are JSON objects.
//
// Addition: a value that is the placeholder of its own path (a client that
// sent the stored document back unchanged) is kept like the mask.
absl::StatusOr<std::string> KeepMaskedSecrets(absl::string_view extracted,
                                              absl::string_view stored);

// The document with every placeholder replaced by kSecretMask (for API
// responses). Any string of the placeholder's shape is masked, wherever it
// is.
absl::StatusOr<std::string> MaskSecrets(absl::string_view document_json);

// The document with every placeholder replaced by its value from
// `secrets_json`; placeholders without a value stay.
//
// Addition: only a placeholder found at its own path is replaced (the value
// of "connection.password" never lands in another member), so keys that
// contain "__" work.
absl::StatusOr<std::string> InjectSecrets(absl::string_view document_json,
                                          absl::string_view secrets_json);

// The runtime secrets file a connector receives (format in
// sdk/include/iot2mqtt/sdk/runtime_secrets.h and docs/connector-guide.md):
//
//   {"version":1,"connector":"<c>","instance":"<id>",
//    "values":{"<dotted.path>":<value>,...},"env":{"MQTT_PASSWORD":"..."}}
//
// `values_json` is the owner's values as SecretVault::Load returns them; a
// text that isn't a JSON object gives "values":{} (logged without content).
std::string BuildRuntimeSecretsJson(
    absl::string_view connector, absl::string_view id,
    absl::string_view values_json,
    const std::map<std::string, std::string>& env);

}  // namespace iot2mqtt::config

#endif  // IOT2MQTT_SERVICES_CONFIG_SECRET_FIELDS_H_
