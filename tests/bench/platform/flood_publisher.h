#ifndef IOT2MQTT_TESTS_BENCH_PLATFORM_FLOOD_PUBLISHER_H_
#define IOT2MQTT_TESTS_BENCH_PLATFORM_FLOOD_PUBLISHER_H_

// A libmosquitto publisher that sends as fast as the broker takes it, with
// at most `window` messages outstanding (QoS 0: not yet written to the
// socket; QoS 1: not yet acknowledged), so the client's queue stays bounded
// while the rate is the broker's. Runs on its own thread until Stop().

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"

struct mosquitto;

namespace iot2mqtt::bench {

class FloodPublisher {
 public:
  // `make(i, &topic, &payload)` builds message i (0, 1, ...).
  using Maker = std::function<void(int64_t, std::string*, std::string*)>;

  FloodPublisher(int port, int qos, bool retain, int window, Maker make);
  ~FloodPublisher();
  bool ok() const { return ok_; }

  // Publishes until Stop() or `limit` messages (0: no limit).
  void Start(int64_t limit = 0);
  void Stop();
  // Waits until every message sent so far is out (QoS 1: acknowledged).
  bool Drain(int seconds);
  int64_t sent() const { return sent_; }
  int64_t completed() const { return completed_; }
  int64_t errors() const { return errors_; }
  bool done() const { return done_; }

 private:
  static void OnPublish(struct mosquitto*, void* self, int mid);
  void Loop(int64_t limit);

  struct mosquitto* mosq_ = nullptr;
  int qos_;
  bool retain_;
  int window_;
  Maker make_;
  bool ok_ = false;
  std::atomic<bool> stop_{false};
  std::atomic<bool> done_{false};
  std::atomic<int64_t> sent_{0};
  std::atomic<int64_t> completed_{0};
  std::atomic<int64_t> errors_{0};
  absl::Mutex mu_;
  std::thread thread_;
};

}  // namespace iot2mqtt::bench

#endif  // IOT2MQTT_TESTS_BENCH_PLATFORM_FLOOD_PUBLISHER_H_
