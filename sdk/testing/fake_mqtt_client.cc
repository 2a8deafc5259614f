#include "sdk/testing/fake_mqtt_client.h"

#include "absl/strings/str_split.h"

namespace iot2mqtt::sdk::testing {

bool TopicMatches(const std::string& filter, const std::string& topic) {
  std::vector<absl::string_view> f = absl::StrSplit(filter, '/');
  std::vector<absl::string_view> t = absl::StrSplit(topic, '/');
  size_t i = 0;
  for (; i < f.size(); ++i) {
    if (f[i] == "#") return true;
    if (i >= t.size()) return false;
    if (f[i] != "+" && f[i] != t[i]) return false;
  }
  return i == t.size();
}

void FakeMqttClient::SetWill(MqttMessage will) {
  absl::MutexLock lock(&mu_);
  will_ = std::move(will);
}
void FakeMqttClient::SetBirth(MqttMessage birth) {
  absl::MutexLock lock(&mu_);
  birth_ = std::move(birth);
}
void FakeMqttClient::SetMessageHandler(MessageHandler handler) {
  absl::MutexLock lock(&mu_);
  on_message_ = std::move(handler);
}
void FakeMqttClient::SetConnectionHandler(ConnectionHandler handler) {
  absl::MutexLock lock(&mu_);
  on_connection_ = std::move(handler);
}

absl::Status FakeMqttClient::Subscribe(const std::string& filter, int qos) {
  absl::MutexLock lock(&mu_);
  subscriptions_.emplace_back(filter, qos);
  return absl::OkStatus();
}

absl::Status FakeMqttClient::Start() {
  {
    absl::MutexLock lock(&mu_);
    if (started_) return absl::FailedPreconditionError("already started");
    started_ = true;
  }
  if (connect_on_start_) Connect();
  return absl::OkStatus();
}

absl::Status FakeMqttClient::Publish(MqttMessage message, MessageClass cls) {
  absl::MutexLock lock(&mu_);
  if (stopped_) return absl::FailedPreconditionError("MQTT client is stopped");
  if (message.qos < 0 || message.qos > 2) {
    return absl::InvalidArgumentError("invalid QoS");
  }
  if (message.topic.empty() ||
      message.topic.find_first_of("+#") != std::string::npos) {
    return absl::InvalidArgumentError("invalid topic");
  }
  published_.push_back(Published{std::move(message), cls, connected_});
  return absl::OkStatus();
}

bool FakeMqttClient::IsConnected() const {
  absl::MutexLock lock(&mu_);
  return connected_;
}

void FakeMqttClient::Stop(std::optional<MqttMessage> last, absl::Duration) {
  absl::MutexLock lock(&mu_);
  if (stopped_) return;
  if (last.has_value()) {
    last_ = last;
    if (connected_)
      published_.push_back(Published{*last, MessageClass::kNormal, true});
  }
  stopped_ = true;
  connected_ = false;
}

void FakeMqttClient::Connect() {
  ConnectionHandler handler;
  {
    absl::MutexLock lock(&mu_);
    connected_ = true;
    if (birth_.has_value()) {
      published_.push_back(Published{*birth_, MessageClass::kNormal, true});
    }
    handler = on_connection_;
  }
  if (handler) handler(true);
}

void FakeMqttClient::Disconnect() {
  ConnectionHandler handler;
  {
    absl::MutexLock lock(&mu_);
    connected_ = false;
    handler = on_connection_;
  }
  if (handler) handler(false);
}

void FakeMqttClient::Deliver(const std::string& topic,
                             const std::string& payload, bool retain) {
  MessageHandler handler;
  {
    absl::MutexLock lock(&mu_);
    handler = on_message_;
  }
  if (!handler) return;
  InboundMessage message;
  message.topic = topic;
  message.payload = payload;
  message.qos = 1;
  message.retain = retain;
  message.payload_bytes = payload.size();
  handler(std::move(message));
}

void FakeMqttClient::DeliverOversized(const std::string& topic, size_t bytes) {
  MessageHandler handler;
  {
    absl::MutexLock lock(&mu_);
    handler = on_message_;
  }
  if (!handler) return;
  InboundMessage message;
  message.topic = topic;
  message.qos = 1;
  message.payload_bytes = bytes;
  message.oversized = true;
  handler(std::move(message));
}

std::vector<FakeMqttClient::Published> FakeMqttClient::published() const {
  absl::MutexLock lock(&mu_);
  return published_;
}

std::vector<MqttMessage> FakeMqttClient::PublishedTo(
    const std::string& topic) const {
  absl::MutexLock lock(&mu_);
  std::vector<MqttMessage> out;
  for (const Published& p : published_) {
    if (p.message.topic == topic) out.push_back(p.message);
  }
  return out;
}

size_t FakeMqttClient::Mark() const {
  absl::MutexLock lock(&mu_);
  return published_.size();
}

std::optional<MqttMessage> FakeMqttClient::WaitFor(const std::string& filter,
                                                   const Predicate& predicate,
                                                   absl::Duration timeout,
                                                   size_t since) const {
  std::optional<MqttMessage> found;
  const auto match = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (size_t i = since; i < published_.size(); ++i) {
      const MqttMessage& m = published_[i].message;
      if (TopicMatches(filter, m.topic) && (!predicate || predicate(m))) {
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

bool FakeMqttClient::WaitForCount(const std::string& filter, size_t count,
                                  absl::Duration timeout, size_t since) const {
  const auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    size_t n = 0;
    for (size_t i = since; i < published_.size(); ++i) {
      if (TopicMatches(filter, published_[i].message.topic)) ++n;
    }
    return n >= count;
  };
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

std::optional<MqttMessage> FakeMqttClient::will() const {
  absl::MutexLock lock(&mu_);
  return will_;
}
std::optional<MqttMessage> FakeMqttClient::birth() const {
  absl::MutexLock lock(&mu_);
  return birth_;
}
std::vector<std::pair<std::string, int>> FakeMqttClient::subscriptions() const {
  absl::MutexLock lock(&mu_);
  return subscriptions_;
}
bool FakeMqttClient::started() const {
  absl::MutexLock lock(&mu_);
  return started_;
}
bool FakeMqttClient::stopped() const {
  absl::MutexLock lock(&mu_);
  return stopped_;
}
std::optional<MqttMessage> FakeMqttClient::last_message() const {
  absl::MutexLock lock(&mu_);
  return last_;
}

}  // namespace iot2mqtt::sdk::testing
