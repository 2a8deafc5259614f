#include "sdk/testing/topic_capture.h"

#include <mosquitto.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "sdk/testing/fake_mqtt_client.h"

namespace iot2mqtt::sdk::testing {
namespace {

std::atomic<int> counter{0};

void InitLibrary() {
  static std::once_flag once;
  std::call_once(once, [] { mosquitto_lib_init(); });
}

}  // namespace

std::string NewRequestId() {
  static thread_local std::mt19937_64 random{std::random_device{}()};
  return absl::StrFormat("t-%d-%08x", counter.fetch_add(1),
                         static_cast<uint32_t>(random()));
}

absl::StatusOr<std::unique_ptr<TopicCapture>> TopicCapture::Start(
    const std::string& host, int port, const std::string& filter, int qos,
    absl::Duration timeout) {
  InitLibrary();
  std::unique_ptr<TopicCapture> capture(new TopicCapture(filter, qos));
  std::string id =
      absl::StrCat("iot2mqtt-capture-", getpid(), "-", counter.fetch_add(1));
  capture->mosq_ = mosquitto_new(id.c_str(), true, capture.get());
  if (capture->mosq_ == nullptr) {
    return absl::ResourceExhaustedError("mosquitto_new failed");
  }
  mosquitto_int_option(capture->mosq_, MOSQ_OPT_TCP_NODELAY, 1);
  mosquitto_reconnect_delay_set(capture->mosq_, 1, 1, false);
  mosquitto_connect_callback_set(capture->mosq_, &TopicCapture::OnConnect);
  mosquitto_subscribe_callback_set(capture->mosq_, &TopicCapture::OnSubscribe);
  mosquitto_message_callback_set(capture->mosq_, &TopicCapture::OnMessage);
  mosquitto_publish_callback_set(capture->mosq_, &TopicCapture::OnPublish);
  mosquitto_disconnect_callback_set(capture->mosq_,
                                    &TopicCapture::OnDisconnect);
  int rc = mosquitto_connect_async(capture->mosq_, host.c_str(), port, 30);
  if (rc != MOSQ_ERR_SUCCESS) {
    return absl::UnavailableError(
        absl::StrCat("capture connect: ", mosquitto_strerror(rc)));
  }
  rc = mosquitto_loop_start(capture->mosq_);
  if (rc != MOSQ_ERR_SUCCESS) {
    return absl::InternalError(
        absl::StrCat("capture loop: ", mosquitto_strerror(rc)));
  }
  absl::MutexLock lock(&capture->mu_);
  const TopicCapture* self = capture.get();
  const auto subscribed = [self]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
    return self->subscriptions_acked_ > 0;
  };
  if (!capture->mu_.AwaitWithTimeout(absl::Condition(&subscribed), timeout)) {
    return absl::DeadlineExceededError(
        absl::StrCat("capture: no SUBACK from ", host, ":", port));
  }
  return capture;
}

TopicCapture::~TopicCapture() {
  if (mosq_ != nullptr) {
    mosquitto_disconnect(mosq_);
    mosquitto_loop_stop(mosq_, true);
    mosquitto_destroy(mosq_);
  }
}

void TopicCapture::OnConnect(struct mosquitto* mosq, void* self, int rc) {
  auto* capture = static_cast<TopicCapture*>(self);
  if (rc != 0) return;
  {
    absl::MutexLock lock(&capture->mu_);
    capture->connected_ = true;
  }
  mosquitto_subscribe(mosq, nullptr, capture->filter_.c_str(), capture->qos_);
}

void TopicCapture::OnSubscribe(struct mosquitto*, void* self, int, int,
                               const int*) {
  auto* capture = static_cast<TopicCapture*>(self);
  absl::MutexLock lock(&capture->mu_);
  ++capture->subscriptions_acked_;
}

void TopicCapture::OnDisconnect(struct mosquitto*, void* self, int) {
  auto* capture = static_cast<TopicCapture*>(self);
  absl::MutexLock lock(&capture->mu_);
  capture->connected_ = false;
}

void TopicCapture::OnMessage(struct mosquitto*, void* self,
                             const struct mosquitto_message* message) {
  auto* capture = static_cast<TopicCapture*>(self);
  CapturedMessage captured;
  captured.topic = message->topic;
  if (message->payloadlen > 0) {
    captured.payload.assign(static_cast<const char*>(message->payload),
                            static_cast<size_t>(message->payloadlen));
  }
  captured.qos = message->qos;
  captured.retain = message->retain;
  captured.received = absl::Now();
  absl::MutexLock lock(&capture->mu_);
  captured.index = capture->messages_.size();
  capture->messages_.push_back(std::move(captured));
}

void TopicCapture::OnPublish(struct mosquitto*, void* self, int mid) {
  auto* capture = static_cast<TopicCapture*>(self);
  absl::MutexLock lock(&capture->mu_);
  capture->acked_mids_.push_back(mid);
}

std::optional<CapturedMessage> TopicCapture::WaitFor(
    const std::string& topic_filter, const Predicate& predicate,
    absl::Duration timeout, size_t since) const {
  std::optional<CapturedMessage> found;
  size_t scanned = since;
  const auto match = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (; scanned < messages_.size(); ++scanned) {
      const CapturedMessage& m = messages_[scanned];
      if (TopicMatches(topic_filter, m.topic) && (!predicate || predicate(m))) {
        found = m;
        return true;
      }
    }
    return false;
  };
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&match), timeout);
  return found;
}

std::vector<CapturedMessage> TopicCapture::Messages(
    const std::string& topic_filter) const {
  absl::MutexLock lock(&mu_);
  std::vector<CapturedMessage> out;
  for (const CapturedMessage& m : messages_) {
    if (TopicMatches(topic_filter, m.topic)) out.push_back(m);
  }
  return out;
}

size_t TopicCapture::Mark() const {
  absl::MutexLock lock(&mu_);
  return messages_.size();
}

bool TopicCapture::connected() const {
  absl::MutexLock lock(&mu_);
  return connected_;
}

absl::Status TopicCapture::Publish(const std::string& topic,
                                   const std::string& payload, int qos,
                                   bool retain) {
  int mid = 0;
  int rc = mosquitto_publish(mosq_, &mid, topic.c_str(),
                             static_cast<int>(payload.size()), payload.data(),
                             qos, retain);
  if (rc != MOSQ_ERR_SUCCESS) {
    return absl::UnavailableError(
        absl::StrCat("capture publish: ", mosquitto_strerror(rc)));
  }
  if (qos == 0) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  const auto acked = [this, mid]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return std::find(acked_mids_.begin(), acked_mids_.end(), mid) !=
           acked_mids_.end();
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&acked), absl::Seconds(5))) {
    return absl::DeadlineExceededError("capture publish: no PUBACK");
  }
  return absl::OkStatus();
}

absl::StatusOr<CommandResponse> SendCommandAndAwait(
    TopicCapture& capture, const Topics& topics, const std::string& device_id,
    const std::string& values_json, absl::Duration timeout) {
  std::string id = NewRequestId();
  size_t mark = capture.Mark();
  absl::Status published =
      capture.Publish(topics.Command(device_id),
                      BuildCommandPayload(id, absl::Now(), values_json,
                                          absl::ToInt64Milliseconds(timeout)));
  if (!published.ok()) return published;
  std::optional<CapturedMessage> response = capture.WaitFor(
      topics.CommandResponse(device_id),
      [&id](const CapturedMessage& m) {
        absl::StatusOr<CommandResponse> r =
            ParseCommandResponsePayload(m.payload);
        return r.ok() && r->cmd_id == id;
      },
      timeout, mark);
  if (!response.has_value()) {
    return absl::DeadlineExceededError(
        absl::StrCat("no response to command ", id, " for ", device_id,
                     " within ", absl::FormatDuration(timeout)));
  }
  return ParseCommandResponsePayload(response->payload);
}

}  // namespace iot2mqtt::sdk::testing
