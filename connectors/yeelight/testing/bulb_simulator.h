#ifndef IOT2MQTT_CONNECTORS_YEELIGHT_TESTING_BULB_SIMULATOR_H_
#define IOT2MQTT_CONNECTORS_YEELIGHT_TESTING_BULB_SIMULATOR_H_

// Simulated Yeelight bulbs on 127.0.0.1, for tests and for trying the
// connector by hand (binary `yeelight-bulb-simulator`). Each bulb listens on
// its own TCP port and speaks the LAN protocol: get_prop, set_power, toggle,
// set_bright, set_ct_abx, set_rgb, set_hsv, set_name, stop_cf (and the bg_*
// variants for bulbs with a background light). After every change it pushes
// a `props` notification to each connected client, as real bulbs do. Like a
// real bulb it refuses brightness and colour changes while off
// (-5000 "general error"). One UDP socket answers M-SEARCH for every bulb
// that is online.
//
// Faults: drop every connection, delay answers, stop answering (connections
// stay open), go offline (listener closed, connections refused) and come
// back on the same port, send raw (malformed) lines, send a malformed line
// before every answer.
//
// Everything runs on one loop thread; the methods below are thread-safe.
// Loopback only: nothing here binds or sends anywhere else.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "connectors/yeelight/yeelight_protocol.h"

namespace iot2mqtt::yeelight::testing {

struct SimulatedBulb {
  std::string id;  // Default "0x00000000000000NN".
  std::string model = "color";
  std::string fw_ver = "18";
  std::string name;
  bool background = false;  // Has a background light (bg_* methods).
  int port = 0;             // 0: any free loopback port.
  Properties initial;       // Overrides of the default properties.
};

struct SimulatorOptions {
  std::vector<SimulatedBulb> bulbs;
  bool discovery = true;
  int discovery_port = 0;  // 0: any free loopback port.
};

class BulbSimulator {
 public:
  // `count` default bulbs with discovery on.
  static absl::StatusOr<std::unique_ptr<BulbSimulator>> Start(size_t count);
  static absl::StatusOr<std::unique_ptr<BulbSimulator>> Start(
      SimulatorOptions options);
  ~BulbSimulator();
  BulbSimulator(const BulbSimulator&) = delete;
  BulbSimulator& operator=(const BulbSimulator&) = delete;

  size_t size() const { return bulbs_.size(); }
  int port(size_t bulb) const;
  const std::string& id(size_t bulb) const;
  int discovery_port() const { return discovery_port_; }
  // "127.0.0.1:<discovery port>", for YEELIGHT_DISCOVERY_ADDRESS.
  std::string discovery_address() const;

  // The bulb's current properties.
  Properties State(size_t bulb) const;
  std::string Property(size_t bulb, const std::string& name) const;
  // A change made outside the protocol (wall switch, phone app): applied,
  // then notified to every connected client.
  void SetProperties(size_t bulb, const Properties& changes);

  // Faults.
  void DropConnections(size_t bulb);
  void SetReplyDelay(size_t bulb, absl::Duration delay);
  void SetSilent(size_t bulb, bool silent);
  void SetOffline(size_t bulb, bool offline);
  void SendRaw(size_t bulb, const std::string& bytes);
  void SetGarbageBeforeReplies(size_t bulb, bool garbage);

  // Observations.
  size_t connection_count(size_t bulb) const;
  // Methods received, in order (also while silent).
  std::vector<std::string> methods(size_t bulb) const;
  int64_t search_count() const;
  bool WaitForConnections(size_t bulb, size_t count,
                          absl::Duration timeout = absl::Seconds(10)) const;

 private:
  struct Bulb;
  struct Connection;
  struct Outgoing;

  BulbSimulator() = default;
  absl::Status Listen(Bulb* bulb);
  void Loop();
  // Runs `task` on the loop thread and waits for it.
  void RunOnLoop(std::function<void()> task);
  void Wake();
  void Accept(Bulb* bulb) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Read(Connection* connection) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandleRequest(Connection* connection, const std::string& line)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AnswerSearch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Queue(Connection* connection, std::string data, absl::Time due)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Notify(Bulb* bulb, const Properties& changed, absl::Time due)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseConnection(Connection* connection)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseAll(Bulb* bulb) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FlushDue() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Bulb>> bulbs_;  // Fixed after Start.
  std::vector<std::unique_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
  std::vector<Outgoing> outgoing_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  int64_t next_connection_id_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t outgoing_seq_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t searches_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int udp_fd_ = -1;
  int discovery_port_ = 0;
  int wake_read_ = -1;
  int wake_write_ = -1;
  std::thread thread_;
};

}  // namespace iot2mqtt::yeelight::testing

#endif  // IOT2MQTT_CONNECTORS_YEELIGHT_TESTING_BULB_SIMULATOR_H_
