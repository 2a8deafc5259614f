#include "tests/bench/platform/flood_publisher.h"

#include <mosquitto.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace iot2mqtt::bench {

FloodPublisher::FloodPublisher(int port, int qos, bool retain, int window,
                               Maker make)
    : qos_(qos), retain_(retain), window_(window), make_(std::move(make)) {
  mosquitto_lib_init();
  std::string id = absl::StrCat("flood-", getpid(), "-", port, "-", qos);
  mosq_ = mosquitto_new(id.c_str(), true, this);
  if (mosq_ == nullptr) return;
  mosquitto_publish_callback_set(mosq_, &FloodPublisher::OnPublish);
  mosquitto_max_inflight_messages_set(mosq_, static_cast<unsigned>(window));
  if (mosquitto_connect(mosq_, "127.0.0.1", port, 60) != MOSQ_ERR_SUCCESS) {
    return;
  }
  ok_ = mosquitto_loop_start(mosq_) == MOSQ_ERR_SUCCESS;
}

FloodPublisher::~FloodPublisher() {
  Stop();
  if (mosq_ != nullptr) {
    mosquitto_disconnect(mosq_);
    mosquitto_loop_stop(mosq_, false);
    mosquitto_destroy(mosq_);
  }
}

void FloodPublisher::OnPublish(struct mosquitto*, void* self, int) {
  auto* publisher = static_cast<FloodPublisher*>(self);
  absl::MutexLock lock(&publisher->mu_);
  ++publisher->completed_;
}

void FloodPublisher::Start(int64_t limit) {
  stop_ = false;
  done_ = false;
  thread_ = std::thread([this, limit] { Loop(limit); });
}

void FloodPublisher::Stop() {
  {
    absl::MutexLock lock(&mu_);  // Wakes the loop's Await.
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

bool FloodPublisher::Drain(int seconds) {
  absl::MutexLock lock(&mu_);
  auto drained = [this] { return completed_ >= sent_; };
  return mu_.AwaitWithTimeout(absl::Condition(&drained),
                              absl::Seconds(seconds));
}

void FloodPublisher::Loop(int64_t limit) {
  std::string topic;
  std::string payload;
  for (int64_t i = 0; !stop_ && (limit == 0 || i < limit); ++i) {
    {
      absl::MutexLock lock(&mu_);
      auto room = [this] { return stop_ || sent_ - completed_ < window_; };
      mu_.Await(absl::Condition(&room));
    }
    if (stop_) break;
    make_(i, &topic, &payload);
    ++sent_;
    int rc = mosquitto_publish(mosq_, nullptr, topic.c_str(),
                               static_cast<int>(payload.size()), payload.data(),
                               qos_, retain_);
    if (rc != MOSQ_ERR_SUCCESS) {
      --sent_;
      ++errors_;
      absl::SleepFor(absl::Milliseconds(1));
    }
  }
  done_ = true;
}

}  // namespace iot2mqtt::bench
