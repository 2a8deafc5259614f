#include "sdk/conformance/mqtt_probe.h"

#include <mosquitto.h>

#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"

namespace iot2mqtt::conformance {
namespace {

void InitLibrary() {
  static std::once_flag once;
  std::call_once(once, [] { mosquitto_lib_init(); });
}

absl::Status MosquittoError(absl::string_view what, int rc) {
  return absl::UnavailableError(
      absl::StrCat(what, ": ", mosquitto_strerror(rc)));
}

}  // namespace

MqttProbe::MqttProbe(std::string client_id, std::string fence_topic)
    : client_id_(std::move(client_id)), fence_topic_(std::move(fence_topic)) {}

MqttProbe::~MqttProbe() {
  if (mosq_ == nullptr) return;
  mosquitto_disconnect(mosq_);
  if (loop_started_) mosquitto_loop_stop(mosq_, false);
  mosquitto_destroy(mosq_);
}

absl::StatusOr<std::unique_ptr<MqttProbe>> MqttProbe::Connect(
    const std::string& host, int port, const std::string& client_id,
    absl::Time deadline) {
  InitLibrary();
  std::unique_ptr<MqttProbe> probe(new MqttProbe(
      client_id, absl::StrCat("iot2mqtt-conformance/", client_id, "/fence")));
  probe->mosq_ = mosquitto_new(client_id.c_str(), true, probe.get());
  if (probe->mosq_ == nullptr) {
    return absl::ResourceExhaustedError("mosquitto_new failed");
  }
  mosquitto_int_option(probe->mosq_, MOSQ_OPT_PROTOCOL_VERSION,
                       MQTT_PROTOCOL_V311);
  mosquitto_int_option(probe->mosq_, MOSQ_OPT_TCP_NODELAY, 1);
  mosquitto_connect_callback_set(probe->mosq_, &MqttProbe::OnConnect);
  mosquitto_disconnect_callback_set(probe->mosq_, &MqttProbe::OnDisconnect);
  mosquitto_message_callback_set(probe->mosq_, &MqttProbe::OnMessage);
  mosquitto_publish_callback_set(probe->mosq_, &MqttProbe::OnAck);
  mosquitto_subscribe_callback_set(probe->mosq_, &MqttProbe::OnSubscribe);
  const std::string where = absl::StrCat(host, ":", port);
  int rc = mosquitto_connect_async(probe->mosq_, host.c_str(), port, 30);
  if (rc != MOSQ_ERR_SUCCESS) {
    return MosquittoError(absl::StrCat("connect to ", where), rc);
  }
  rc = mosquitto_loop_start(probe->mosq_);
  if (rc != MOSQ_ERR_SUCCESS) return MosquittoError("loop_start", rc);
  probe->loop_started_ = true;
  {
    absl::MutexLock lock(&probe->mu_);
    while (probe->connack_rc_ < 0) {
      if (probe->changed_.WaitWithDeadline(&probe->mu_, deadline)) break;
    }
    if (probe->connack_rc_ < 0) {
      return absl::DeadlineExceededError(
          absl::StrCat("no CONNACK from ", where));
    }
    if (probe->connack_rc_ != 0) {
      return absl::UnavailableError(
          absl::StrCat("broker ", where, " refused the connection: ",
                       mosquitto_connack_string(probe->connack_rc_)));
    }
  }
  // The fence topic is subscribed once; Subscribe() and Fence() use it.
  int mid = 0;
  rc = mosquitto_subscribe(probe->mosq_, &mid, probe->fence_topic_.c_str(), 1);
  if (rc != MOSQ_ERR_SUCCESS) return MosquittoError("subscribe", rc);
  absl::Status acked = probe->WaitAcked(mid, deadline, "SUBACK");
  if (!acked.ok()) return acked;
  return probe;
}

void MqttProbe::OnConnect(mosquitto*, void* self, int rc) {
  auto* probe = static_cast<MqttProbe*>(self);
  absl::MutexLock lock(&probe->mu_);
  probe->connack_rc_ = rc;
  probe->connected_ = rc == 0;
  probe->changed_.SignalAll();
}

void MqttProbe::OnDisconnect(mosquitto*, void* self, int) {
  auto* probe = static_cast<MqttProbe*>(self);
  absl::MutexLock lock(&probe->mu_);
  probe->connected_ = false;
  probe->changed_.SignalAll();
}

void MqttProbe::OnMessage(mosquitto*, void* self, const mosquitto_message* m) {
  auto* probe = static_cast<MqttProbe*>(self);
  Message message;
  message.topic = m->topic;
  if (m->payloadlen > 0) {
    message.payload.assign(static_cast<const char*>(m->payload),
                           static_cast<size_t>(m->payloadlen));
  }
  message.qos = m->qos;
  message.retain = m->retain;
  message.received = absl::Now();
  absl::MutexLock lock(&probe->mu_);
  probe->messages_.push_back(std::move(message));
  probe->changed_.SignalAll();
}

void MqttProbe::OnAck(mosquitto*, void* self, int mid) {
  auto* probe = static_cast<MqttProbe*>(self);
  absl::MutexLock lock(&probe->mu_);
  probe->acked_.insert(mid);
  probe->changed_.SignalAll();
}

void MqttProbe::OnSubscribe(mosquitto* mosq, void* self, int mid, int,
                            const int*) {
  OnAck(mosq, self, mid);
}

absl::Status MqttProbe::WaitAcked(int mid, absl::Time deadline,
                                  absl::string_view what) {
  absl::MutexLock lock(&mu_);
  while (acked_.count(mid) == 0) {
    if (changed_.WaitWithDeadline(&mu_, deadline)) break;
  }
  if (acked_.erase(mid) == 0) {
    return absl::DeadlineExceededError(
        absl::StrCat("no ", what, " from the broker in time"));
  }
  return absl::OkStatus();
}

absl::Status MqttProbe::Subscribe(const std::vector<std::string>& filters,
                                  absl::Time deadline) {
  std::vector<char*> raw;
  std::vector<std::string> copies = filters;
  for (std::string& filter : copies) raw.push_back(filter.data());
  int mid = 0;
  int rc = mosquitto_subscribe_multiple(
      mosq_, &mid, static_cast<int>(raw.size()), raw.data(), 2, 0, nullptr);
  if (rc != MOSQ_ERR_SUCCESS) return MosquittoError("subscribe", rc);
  absl::Status acked = WaitAcked(mid, deadline, "SUBACK");
  if (!acked.ok()) return acked;
  return Fence(deadline);
}

absl::Status MqttProbe::Publish(const std::string& topic,
                                absl::string_view payload, int qos, bool retain,
                                absl::Time deadline) {
  int mid = 0;
  int rc = mosquitto_publish(mosq_, &mid, topic.c_str(),
                             static_cast<int>(payload.size()), payload.data(),
                             qos, retain);
  if (rc != MOSQ_ERR_SUCCESS) {
    return MosquittoError(absl::StrCat("publish to ", topic), rc);
  }
  if (qos == 0) return absl::OkStatus();
  return WaitAcked(mid, deadline, qos == 1 ? "PUBACK" : "PUBCOMP");
}

absl::Status MqttProbe::Fence(absl::Time deadline) {
  const std::string token = absl::StrCat(++fence_count_);
  const size_t from = Mark();
  absl::Status published = Publish(fence_topic_, token, 1, false, deadline);
  if (!published.ok()) return published;
  size_t cursor = from;
  while (std::optional<Message> m = Next(&cursor, deadline)) {
    if (m->topic == fence_topic_ && m->payload == token) {
      return absl::OkStatus();
    }
  }
  return absl::DeadlineExceededError("the broker did not echo the fence");
}

size_t MqttProbe::Mark() {
  absl::MutexLock lock(&mu_);
  return messages_.size();
}

std::optional<Message> MqttProbe::Next(size_t* cursor, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  while (messages_.size() <= *cursor) {
    if (changed_.WaitWithDeadline(&mu_, deadline)) break;
  }
  if (messages_.size() <= *cursor) return std::nullopt;
  return messages_[(*cursor)++];
}

std::vector<Message> MqttProbe::Since(size_t from) {
  absl::MutexLock lock(&mu_);
  if (from >= messages_.size()) return {};
  return std::vector<Message>(messages_.begin() + from, messages_.end());
}

bool MqttProbe::connected() {
  absl::MutexLock lock(&mu_);
  return connected_;
}

absl::StatusOr<std::optional<Message>> ReadRetained(
    const std::string& host, int port, const std::string& client_id,
    const std::string& topic, absl::Time deadline) {
  absl::StatusOr<std::unique_ptr<MqttProbe>> probe =
      MqttProbe::Connect(host, port, client_id, deadline);
  if (!probe.ok()) return probe.status();
  const size_t from = (*probe)->Mark();
  absl::Status subscribed = (*probe)->Subscribe({topic}, deadline);
  if (!subscribed.ok()) return subscribed;
  for (const Message& m : (*probe)->Since(from)) {
    if (m.topic == topic && m.retain) return std::optional<Message>(m);
  }
  return std::optional<Message>();
}

}  // namespace iot2mqtt::conformance
