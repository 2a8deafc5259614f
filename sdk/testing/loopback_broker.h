#ifndef IOT2MQTT_SDK_TESTING_LOOPBACK_BROKER_H_
#define IOT2MQTT_SDK_TESTING_LOOPBACK_BROKER_H_

// A real Mosquitto broker for tests, on 127.0.0.1 and a free port, from a
// temporary config (anonymous access, no persistence). Loopback only.
//
//   auto broker = sdk::testing::LoopbackBroker::Start();
//   REQUIRE(broker.ok());
//   settings.host = (*broker)->host(); settings.port = (*broker)->port();
//   ...
//   REQUIRE((*broker)->Stop().ok());     // connections drop
//   REQUIRE((*broker)->Restart().ok());  // same port; retained messages are
//                                        // gone (no persistence)
//
// The destructor kills the broker (SIGKILL) and removes its files. The
// binary is /usr/sbin/mosquitto unless IOT2MQTT_MOSQUITTO or the options
// name another.

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace iot2mqtt::sdk::testing {

struct LoopbackBrokerOptions {
  std::string binary;  // Default: $IOT2MQTT_MOSQUITTO or /usr/sbin/mosquitto.
  absl::Duration start_timeout = absl::Seconds(10);
  // TCP_NODELAY on the broker's client sockets. Mosquitto's default is off,
  // which lets Nagle's algorithm and delayed ACKs add ~40 ms to exchanges of
  // small packets (a command and its response); production brokers should
  // turn it on too.
  bool tcp_nodelay = true;
  // Extra mosquitto.conf lines (e.g. "max_queued_messages 0").
  std::string extra_config;
};

class LoopbackBroker {
 public:
  static absl::StatusOr<std::unique_ptr<LoopbackBroker>> Start(
      LoopbackBrokerOptions options = {});
  ~LoopbackBroker();
  LoopbackBroker(const LoopbackBroker&) = delete;
  LoopbackBroker& operator=(const LoopbackBroker&) = delete;

  std::string host() const { return "127.0.0.1"; }
  int port() const { return port_; }
  // MQTT_HOST and MQTT_PORT for a connector process.
  std::map<std::string, std::string> Env() const;
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  // SIGTERM, then SIGKILL after 5 s; waits for the exit.
  absl::Status Stop();
  // SIGKILL; waits for the exit.
  absl::Status Kill();
  // Starts again on the same port and waits until it accepts connections.
  absl::Status Restart();
  // The broker's log so far.
  std::string Log() const;

 private:
  LoopbackBroker(LoopbackBrokerOptions options, std::string dir, int port)
      : options_(std::move(options)), dir_(std::move(dir)), port_(port) {}
  absl::Status Launch();
  absl::Status Terminate(int signal_number, absl::Duration grace);

  LoopbackBrokerOptions options_;
  std::string dir_;
  int port_;
  pid_t pid_ = -1;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreeLoopbackPort();
// Whether something accepts TCP connections on 127.0.0.1:port now.
bool LoopbackPortAccepts(int port);

}  // namespace iot2mqtt::sdk::testing

#endif  // IOT2MQTT_SDK_TESTING_LOOPBACK_BROKER_H_
