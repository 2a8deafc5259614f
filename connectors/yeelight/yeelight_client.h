#ifndef IOT2MQTT_CONNECTORS_YEELIGHT_YEELIGHT_CLIENT_H_
#define IOT2MQTT_CONNECTORS_YEELIGHT_YEELIGHT_CLIENT_H_

// A client for one bulb over the Yeelight LAN protocol (TCP, one JSON object
// per line). One I/O thread per client reads the socket: answers are matched
// to their requests by id, `props` notifications go to a callback at once,
// malformed lines are logged and skipped. A request that gets no answer in
// time fails with DEADLINE_EXCEEDED and the connection is dropped (a bulb
// that lost power leaves a half-open socket); the next request, or the
// background reconnect when `keep_connected` is set, opens a new one.
//
// Errors: UNAVAILABLE (cannot connect, connection lost), DEADLINE_EXCEEDED
// (no answer in time), FAILED_PRECONDITION (the bulb answered with an error;
// the message carries its code and text), INVALID_ARGUMENT (bad host),
// CANCELLED (client shutting down).

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "connectors/yeelight/yeelight_protocol.h"

namespace iot2mqtt::yeelight {

struct ClientOptions {
  std::string host;
  int port = kDefaultControlPort;
  absl::Duration connect_timeout = absl::Seconds(3);
  absl::Duration request_timeout = absl::Seconds(5);
  // Keep a connection open and re-open it after a drop, with backoff, so
  // notifications keep arriving between requests.
  bool keep_connected = false;
  absl::Duration reconnect_min = absl::Milliseconds(500);
  absl::Duration reconnect_max = absl::Seconds(30);
  // Called on the I/O thread for every `props` notification; must not call
  // back into the client synchronously for long (it delays reading).
  std::function<void(const Properties&)> on_notification;
  // Called on the I/O thread when the connection opens (true) or drops.
  std::function<void(bool connected)> on_connection;
  // Names the bulb in log lines.
  std::string log_name;
};

class Client {
 public:
  explicit Client(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends `request` and waits for its answer (the `result` values as text).
  // `timeout` <= 0 means options.request_timeout.
  absl::StatusOr<std::vector<std::string>> Call(
      const Request& request, absl::Duration timeout = absl::ZeroDuration());

  // get_prop for `names`; the answer maps each name to its value ("" when
  // the bulb does not know it).
  absl::StatusOr<Properties> GetProperties(
      const std::vector<std::string>& names,
      absl::Duration timeout = absl::ZeroDuration());

  bool connected() const;
  // Drops the current connection (tests; recovery after a timeout).
  void Disconnect();
  // Lines that could not be parsed or were too long, since start.
  int64_t malformed_lines() const;
  const ClientOptions& options() const { return options_; }

 private:
  struct Pending {
    bool done = false;
    absl::StatusOr<std::vector<std::string>> result =
        absl::UnknownError("pending");
  };

  void Run();
  // Opens a connection (on the I/O thread); UNAVAILABLE on failure.
  absl::Status Connect();
  void HandleLine(const std::string& line);
  // Closes the socket (I/O thread only) and fails every pending request.
  void CloseConnection(const std::string& reason);
  void Wake();

  const ClientOptions options_;
  int wake_read_ = -1;
  int wake_write_ = -1;

  mutable absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_) = -1;  // Owned and closed by the I/O thread.
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool connect_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool drop_requested_ ABSL_GUARDED_BY(mu_) = false;
  // Connection attempts that failed, and the last reason.
  int64_t connect_failures_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_connect_error_ ABSL_GUARDED_BY(mu_);
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<int64_t, Pending*> pending_ ABSL_GUARDED_BY(mu_);
  int64_t malformed_lines_ ABSL_GUARDED_BY(mu_) = 0;

  std::thread thread_;
};

}  // namespace iot2mqtt::yeelight

#endif  // IOT2MQTT_CONNECTORS_YEELIGHT_YEELIGHT_CLIENT_H_
