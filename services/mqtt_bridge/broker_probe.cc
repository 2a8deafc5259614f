#include "services/mqtt_bridge/broker_probe.h"

#include <mosquitto.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "services/common/status.h"
#include "services/mqtt_bridge/bridge.h"

namespace iot2mqtt::mqtt_bridge {
namespace {

struct ProbeState {
  bool connack = false;
  int rc = -1;
};

void OnConnect(struct mosquitto*, void* obj, int rc) {
  auto* state = static_cast<ProbeState*>(obj);
  state->connack = true;
  state->rc = rc;
}

std::string RandomClientId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return absl::StrFormat("iot2mqtt_probe_%012x", rng() & 0xffffffffffffULL);
}

// libmosquitto's text, or the system's for a socket error.
std::string ErrorText(int rc, int saved_errno) {
  if (rc == MOSQ_ERR_ERRNO) return std::strerror(saved_errno);
  return mosquitto_strerror(rc);
}

}  // namespace

absl::StatusOr<ProbeTarget> MakeProbeTarget(absl::string_view host,
                                            std::optional<int> port,
                                            absl::string_view username,
                                            absl::string_view password,
                                            std::optional<int> keepalive) {
  std::map<std::string, std::string> problems;
  if (host.empty()) {
    problems["host"] = "required";
  } else if (host.size() > 253) {
    problems["host"] = "longer than 253 bytes";
  } else if (std::any_of(host.begin(), host.end(), [](char c) {
               return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f;
             })) {
    problems["host"] = "contains spaces or control characters";
  }
  if (port.has_value() && (*port < 1 || *port > 65535)) {
    problems["port"] = "must be from 1 to 65535";
  }
  if (keepalive.has_value() && (*keepalive < 10 || *keepalive > 3600)) {
    problems["keepalive"] = "must be from 10 to 3600 seconds";
  }
  if (username.find('\0') != absl::string_view::npos) {
    problems["username"] = "contains NUL";
  }
  if (password.find('\0') != absl::string_view::npos) {
    problems["password"] = "contains NUL";
  }
  if (!problems.empty()) {
    std::string message = "invalid MQTT settings:";
    for (const auto& [field, problem] : problems) {
      absl::StrAppend(&message, " ", field, " ", problem, ";");
    }
    message.pop_back();
    return common::WithReason(absl::InvalidArgumentError(message),
                              kInvalidMqttSettings, problems);
  }
  ProbeTarget target;
  target.host = std::string(host);
  target.port = port.value_or(1883);
  target.username = std::string(username);
  target.password = std::string(password);
  target.keepalive_seconds = keepalive.value_or(60);
  return target;
}

ProbeResult ProbeBroker(const ProbeTarget& target, absl::Duration timeout) {
  static std::once_flag init;
  std::call_once(init, [] { mosquitto_lib_init(); });
  ProbeResult result;
  const std::string where = absl::StrCat(target.host, ":", target.port);
  ProbeState state;
  const std::string client_id =
      target.client_id.empty() ? RandomClientId() : target.client_id;
  struct mosquitto* m = mosquitto_new(client_id.c_str(), true, &state);
  if (m == nullptr) {
    result.message =
        absl::StrCat("Cannot connect to ", where, ": out of memory");
    return result;
  }
  mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
  mosquitto_connect_callback_set(m, &OnConnect);
  if (!target.username.empty()) {
    mosquitto_username_pw_set(
        m, target.username.c_str(),
        target.password.empty() ? nullptr : target.password.c_str());
  }
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + timeout;
  int rc = mosquitto_connect_async(m, target.host.c_str(), target.port,
                                   target.keepalive_seconds);
  if (rc != MOSQ_ERR_SUCCESS) {
    result.message =
        absl::StrCat("Cannot connect to ", where, ": ", ErrorText(rc, errno));
    mosquitto_destroy(m);
    return result;
  }
  while (!state.connack) {
    absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      result.message =
          absl::StrCat("Cannot connect to ", where, ": no answer within ",
                       absl::FormatDuration(timeout));
      mosquitto_destroy(m);
      return result;
    }
    int wait_ms = static_cast<int>(
        std::min<int64_t>(100, absl::ToInt64Milliseconds(left) + 1));
    rc = mosquitto_loop(m, wait_ms, 1);
    if (rc != MOSQ_ERR_SUCCESS && !state.connack) {
      int saved_errno = errno;
      std::string text = ErrorText(rc, saved_errno);
      if (rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_PROTOCOL) {
        text = absl::StrCat(text, " (is it an MQTT broker?)");
      }
      result.message = absl::StrCat("Cannot connect to ", where, ": ", text);
      mosquitto_destroy(m);
      return result;
    }
  }
  if (state.rc != 0) {
    result.message = mosquitto_connack_string(state.rc);
  } else {
    result.success = true;
    result.message = "Connection successful";
    result.latency_ms = absl::ToInt64Milliseconds(absl::Now() - start);
    mosquitto_disconnect(m);
    // Let the DISCONNECT go out (bounded).
    for (int i = 0; i < 5; ++i) {
      if (mosquitto_loop(m, 20, 1) != MOSQ_ERR_SUCCESS) break;
    }
  }
  mosquitto_destroy(m);
  return result;
}

}  // namespace iot2mqtt::mqtt_bridge
