#include <mosquitto.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "iot2mqtt/sdk/backoff.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/mqtt_client.h"

namespace iot2mqtt::sdk {
namespace {

void InitLibrary() {
  static std::once_flag once;
  std::call_once(once, [] { mosquitto_lib_init(); });
}

absl::string_view ClassName(MessageClass cls) {
  switch (cls) {
    case MessageClass::kState:
      return "state";
    case MessageClass::kNormal:
      return "normal";
    case MessageClass::kResponse:
      return "response";
  }
  return "normal";
}

// Poll interval of the network thread: how quickly it notices Stop() or a
// connect timeout while no socket event wakes it. Publish() and Stop() wake
// it at once through libmosquitto's socket pair when connected.
constexpr int kConnectedLoopMs = 5000;
constexpr int kConnectingLoopMs = 200;

// The reason of a failed connection attempt, for connection_info(): the
// system's text for a socket error ("Connection refused"), else
// libmosquitto's.
std::string ConnectErrorText(int rc, const absl::Status& status) {
  if (rc == MOSQ_ERR_ERRNO) {
    // FromMosquitto appended "(<strerror>)"; keep only that part.
    absl::string_view message = status.message();
    size_t open = message.rfind('(');
    if (open != absl::string_view::npos && message.back() == ')') {
      return std::string(message.substr(open + 1, message.size() - open - 2));
    }
  }
  return std::string(status.message());
}

}  // namespace

absl::Status FromMosquitto(int rc, absl::string_view context) {
  if (rc == MOSQ_ERR_SUCCESS) return absl::OkStatus();
  int saved_errno = errno;
  std::string text = mosquitto_strerror(rc);
  if (rc == MOSQ_ERR_ERRNO) {
    absl::StrAppend(&text, " (", std::strerror(saved_errno), ")");
  }
  std::string message =
      context.empty() ? text : absl::StrCat(context, ": ", text);
  switch (rc) {
    case MOSQ_ERR_INVAL:
    case MOSQ_ERR_PAYLOAD_SIZE:
    case MOSQ_ERR_MALFORMED_UTF8:
    case MOSQ_ERR_QOS_NOT_SUPPORTED:
    case MOSQ_ERR_OVERSIZE_PACKET:
    case MOSQ_ERR_RETAIN_NOT_SUPPORTED:
    case MOSQ_ERR_TOPIC_ALIAS_INVALID:
    case MOSQ_ERR_DUPLICATE_PROPERTY:
      return absl::InvalidArgumentError(message);
    case MOSQ_ERR_NOMEM:
      return absl::ResourceExhaustedError(message);
    case MOSQ_ERR_NO_CONN:
    case MOSQ_ERR_CONN_REFUSED:
    case MOSQ_ERR_CONN_LOST:
    case MOSQ_ERR_ERRNO:
    case MOSQ_ERR_EAI:
    case MOSQ_ERR_LOOKUP:
    case MOSQ_ERR_KEEPALIVE:
    case MOSQ_ERR_PROXY:
    case MOSQ_ERR_TLS:
    case MOSQ_ERR_TLS_HANDSHAKE:
    case MOSQ_ERR_CONN_PENDING:
      return absl::UnavailableError(message);
    case MOSQ_ERR_AUTH:
      return absl::UnauthenticatedError(message);
    case MOSQ_ERR_ACL_DENIED:
      return absl::PermissionDeniedError(message);
    case MOSQ_ERR_NOT_SUPPORTED:
      return absl::UnimplementedError(message);
    case MOSQ_ERR_NOT_FOUND:
      return absl::NotFoundError(message);
    case MOSQ_ERR_TIMEOUT:
      return absl::DeadlineExceededError(message);
    case MOSQ_ERR_ALREADY_EXISTS:
    case MOSQ_ERR_SUB_EXISTS:
      return absl::AlreadyExistsError(message);
    case MOSQ_ERR_PROTOCOL:
    case MOSQ_ERR_MALFORMED_PACKET:
      return absl::InternalError(message);
    default:
      return absl::UnknownError(message);
  }
}

MosquittoClient::MosquittoClient(MqttSettings settings, std::string client_id)
    : settings_(std::move(settings)),
      client_id_(std::move(client_id)),
      since_(absl::Now()),
      queue_(settings_.queue_limits) {
  InitLibrary();
}

MosquittoClient::~MosquittoClient() {
  Stop(std::nullopt, absl::ZeroDuration());
}

void MosquittoClient::SetWill(MqttMessage will) { will_ = std::move(will); }
void MosquittoClient::SetBirth(MqttMessage birth) { birth_ = std::move(birth); }
void MosquittoClient::SetMessageHandler(MessageHandler handler) {
  on_message_ = std::move(handler);
}
void MosquittoClient::SetConnectionHandler(ConnectionHandler handler) {
  on_connection_ = std::move(handler);
}

absl::Status MosquittoClient::Subscribe(const std::string& filter, int qos) {
  if (qos < 0 || qos > 2) {
    return absl::InvalidArgumentError(absl::StrCat("invalid QoS ", qos));
  }
  if (filter.find('\0') != std::string::npos ||
      mosquitto_sub_topic_check(filter.c_str()) != MOSQ_ERR_SUCCESS) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid subscription filter \"", filter, "\""));
  }
  absl::MutexLock lock(&mu_);
  subscriptions_.emplace_back(filter, qos);
  if (connected_ && mosq_ != nullptr) {
    int rc = mosquitto_subscribe(mosq_, nullptr, filter.c_str(), qos);
    if (rc != MOSQ_ERR_SUCCESS) {
      // Sent again on the next connect.
      IOT2MQTT_LOG(WARNING)
              .With("filter", filter)
              .With("error", FromMosquitto(rc).ToString())
          << "subscribe failed; retried after the next reconnect";
    }
  }
  return absl::OkStatus();
}

absl::Status MosquittoClient::Unsubscribe(const std::string& filter) {
  absl::MutexLock lock(&mu_);
  auto removed =
      std::remove_if(subscriptions_.begin(), subscriptions_.end(),
                     [&filter](const std::pair<std::string, int>& s) {
                       return s.first == filter;
                     });
  if (removed == subscriptions_.end()) {
    return absl::NotFoundError(
        absl::StrCat("not subscribed to \"", filter, "\""));
  }
  subscriptions_.erase(removed, subscriptions_.end());
  if (connected_ && mosq_ != nullptr) {
    int rc = mosquitto_unsubscribe(mosq_, nullptr, filter.c_str());
    if (rc != MOSQ_ERR_SUCCESS) {
      // The next connection starts clean (clean session) without it.
      IOT2MQTT_LOG(WARNING)
              .With("filter", filter)
              .With("error", FromMosquitto(rc).ToString())
          << "unsubscribe failed";
    }
  }
  return absl::OkStatus();
}

MosquittoClient::ConnectionInfo MosquittoClient::connection_info() const {
  absl::MutexLock lock(&mu_);
  ConnectionInfo info;
  info.connected = connected_;
  info.since = since_;
  info.last_error = last_error_;
  return info;
}

absl::Status MosquittoClient::Start() {
  absl::MutexLock lock(&mu_);
  if (started_ || stopped_) {
    return absl::FailedPreconditionError("MQTT client already started");
  }
  started_ = true;
  since_ = absl::Now();
  IOT2MQTT_LOG(INFO)
          .With("host", settings_.host)
          .With("port", settings_.port)
          .With("client_id", client_id_)
          .With("username_set", !settings_.username.empty())
          .With("keepalive_s", settings_.keepalive_seconds)
      << "connecting to the MQTT broker";
  thread_ = std::thread(&MosquittoClient::Run, this);
  return absl::OkStatus();
}

absl::Status MosquittoClient::Publish(MqttMessage message, MessageClass cls) {
  if (message.qos < 0 || message.qos > 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid QoS ", message.qos));
  }
  if (message.topic.find('\0') != std::string::npos ||
      mosquitto_pub_topic_check(message.topic.c_str()) != MOSQ_ERR_SUCCESS) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid topic \"", message.topic, "\""));
  }
  absl::MutexLock lock(&mu_);
  if (stopping_ || stopped_) {
    return absl::FailedPreconditionError("MQTT client is stopped");
  }
  OutboundMessage item{std::move(message), cls};
  if (connected_ && mosq_ != nullptr) return PublishLocked(std::move(item));
  QueueLocked(std::move(item));
  return absl::OkStatus();
}

absl::Status MosquittoClient::PublishLocked(OutboundMessage item) {
  const MqttMessage& m = item.message;
  int mid = 0;
  int rc = mosquitto_publish(mosq_, &mid, m.topic.c_str(),
                             static_cast<int>(m.payload.size()),
                             m.payload.data(), m.qos, m.retain);
  if (rc == MOSQ_ERR_SUCCESS) {
    if (m.qos > 0)
      inflight_.emplace(mid, Inflight{next_seq_++, std::move(item)});
    return absl::OkStatus();
  }
  if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST) {
    QueueLocked(std::move(item));
    return absl::OkStatus();
  }
  return FromMosquitto(rc, absl::StrCat("publish to ", m.topic));
}

void MosquittoClient::QueueLocked(OutboundMessage item) {
  std::vector<OutboundMessage> dropped;
  queue_.Push(std::move(item.message), item.cls, &dropped);
  if (dropped.empty()) return;
  dropped_ += static_cast<int64_t>(dropped.size());
  drops_since_connect_ += static_cast<int64_t>(dropped.size());
  LogDrops(dropped);
}

void MosquittoClient::LogDrops(const std::vector<OutboundMessage>& dropped) {
  for (const OutboundMessage& item : dropped) {
    if (item.cls == MessageClass::kResponse) {
      IOT2MQTT_LOG(ERROR)
              .With("topic", item.message.topic)
              .With("queued", static_cast<int64_t>(queue_.size()))
          << "outbound queue full while disconnected: dropped a response";
    } else if (!logged_state_drop_) {
      logged_state_drop_ = true;
      IOT2MQTT_LOG(WARNING)
              .With("topic", item.message.topic)
              .With("class", ClassName(item.cls))
              .With("queued", static_cast<int64_t>(queue_.size()))
          << "outbound queue full while disconnected: dropping the oldest "
             "messages (counted until the next connect)";
    }
  }
}

bool MosquittoClient::IsConnected() const {
  absl::MutexLock lock(&mu_);
  return connected_;
}

MosquittoClient::Stats MosquittoClient::stats() const {
  absl::MutexLock lock(&mu_);
  Stats stats;
  stats.connects = connects_;
  stats.dropped = dropped_;
  stats.queued = queue_.size();
  stats.inflight = inflight_.size();
  return stats;
}

struct mosquitto* MosquittoClient::NewHandle() {
  struct mosquitto* m = mosquitto_new(client_id_.c_str(), true, this);
  if (m == nullptr) return nullptr;
  mosquitto_threaded_set(m, true);
  mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
  mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
  mosquitto_int_option(m, MOSQ_OPT_SEND_MAXIMUM,
                       std::clamp(settings_.max_inflight, 1, 65535));
  if (will_.has_value()) {
    int rc = mosquitto_will_set(
        m, will_->topic.c_str(), static_cast<int>(will_->payload.size()),
        will_->payload.data(), will_->qos, will_->retain);
    if (rc != MOSQ_ERR_SUCCESS) {
      IOT2MQTT_LOG(ERROR).With("error", FromMosquitto(rc).ToString())
          << "cannot set the last will";
    }
  }
  if (!settings_.username.empty()) {
    mosquitto_username_pw_set(
        m, settings_.username.c_str(),
        settings_.password.empty() ? nullptr : settings_.password.c_str());
  }
  mosquitto_connect_callback_set(m, &MosquittoClient::OnConnectThunk);
  mosquitto_publish_callback_set(m, &MosquittoClient::OnPublishThunk);
  mosquitto_message_callback_set(m, &MosquittoClient::OnMessageThunk);
  return m;
}

void MosquittoClient::OnConnectThunk(struct mosquitto*, void* self, int rc) {
  static_cast<MosquittoClient*>(self)->HandleConnect(rc);
}
void MosquittoClient::OnPublishThunk(struct mosquitto*, void* self, int mid) {
  static_cast<MosquittoClient*>(self)->HandlePublished(mid);
}
void MosquittoClient::OnMessageThunk(struct mosquitto*, void* self,
                                     const struct mosquitto_message* message) {
  static_cast<MosquittoClient*>(self)->HandleMessage(message);
}

void MosquittoClient::Run() {
  Backoff backoff(settings_.reconnect_initial, settings_.reconnect_max);
  bool first = true;
  int failures = 0;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (!first) {
        absl::Duration delay = backoff.Next();
        const auto quit = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || closing_;
        };
        mu_.AwaitWithTimeout(absl::Condition(&quit), delay);
      }
      if (stopping_ || closing_) break;
    }
    first = false;
    struct mosquitto* m = NewHandle();
    if (m == nullptr) {
      IOT2MQTT_LOG(ERROR) << "mosquitto_new failed (out of memory)";
      continue;
    }
    int rc = mosquitto_connect_async(m, settings_.host.c_str(), settings_.port,
                                     settings_.keepalive_seconds);
    if (rc != MOSQ_ERR_SUCCESS) {
      ++failures;
      absl::Status status = FromMosquitto(rc, "connect");
      {
        absl::MutexLock lock(&mu_);
        last_error_ =
            absl::StrCat("Cannot connect to ", settings_.host, ":",
                         settings_.port, ": ", ConnectErrorText(rc, status));
      }
      IOT2MQTT_LOG(WARNING)
              .With("host", settings_.host)
              .With("port", settings_.port)
              .With("attempt", failures)
              .With("retry_in_ms", absl::ToInt64Milliseconds(backoff.Ceiling()))
              .With("error", std::string(status.message()))
          << "cannot connect to the MQTT broker";
      mosquitto_destroy(m);
      continue;
    }
    {
      absl::MutexLock lock(&mu_);
      mosq_ = m;
      disconnect_sent_ = false;
      refused_ = false;
    }
    const absl::Time deadline = absl::Now() + settings_.connect_timeout;
    bool was_connected = false;
    bool timed_out = false;
    // Once stopping: how long the DISCONNECT may take to go out before the
    // socket is simply closed (a half-open connection must not hold Stop()).
    std::optional<absl::Time> give_up;
    while (true) {
      bool fast = true;
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) {
          if (!connected_) break;
          if (!disconnect_sent_) {
            mosquitto_disconnect(m);
            disconnect_sent_ = true;
          }
          if (!give_up.has_value()) {
            give_up = absl::Now() + absl::Seconds(1);
          } else if (absl::Now() > *give_up) {
            break;
          }
        } else {
          fast = !connected_;
        }
      }
      rc = mosquitto_loop(m, fast ? kConnectingLoopMs : kConnectedLoopMs, 1);
      if (rc != MOSQ_ERR_SUCCESS) break;
      absl::MutexLock lock(&mu_);
      if (connected_) {
        was_connected = true;
        failures = 0;
        backoff.Reset();
      } else if (!was_connected && absl::Now() > deadline) {
        timed_out = true;
        break;
      }
    }
    {
      absl::MutexLock lock(&mu_);
      was_connected = was_connected || connected_;
    }
    if (!was_connected) {
      ++failures;
      absl::Status status =
          timed_out ? absl::DeadlineExceededError(absl::StrCat(
                          "no CONNACK within ",
                          absl::FormatDuration(settings_.connect_timeout)))
                    : FromMosquitto(rc);
      bool quiet = false;
      {
        absl::MutexLock lock(&mu_);
        quiet = stopping_ || closing_;
        if (!quiet && !refused_) {
          last_error_ =
              absl::StrCat("Cannot connect to ", settings_.host, ":",
                           settings_.port, ": ", ConnectErrorText(rc, status));
        }
      }
      if (!quiet) {
        IOT2MQTT_LOG(WARNING)
                .With("host", settings_.host)
                .With("port", settings_.port)
                .With("attempt", failures)
                .With("retry_in_ms",
                      absl::ToInt64Milliseconds(backoff.Ceiling()))
                .With("error", std::string(status.message()))
            << "cannot connect to the MQTT broker";
      }
    }
    HandleConnectionLost(rc, was_connected);
    mosquitto_destroy(m);
  }
}

void MosquittoClient::HandleConnect(int rc) {
  if (rc != 0) {
    {
      absl::MutexLock lock(&mu_);
      refused_ = true;
      last_error_ = mosquitto_connack_string(rc);
    }
    IOT2MQTT_LOG(WARNING)
            .With("host", settings_.host)
            .With("port", settings_.port)
            .With("client_id", client_id_)
            .With("reason", mosquitto_connack_string(rc))
        << "the MQTT broker refused the connection";
    return;
  }
  int64_t dropped = 0;
  size_t flushed = 0;
  {
    absl::MutexLock lock(&mu_);
    if (closing_ || stopping_) {
      // Stop() is under way: leave without a birth message; the retained
      // status stays what the last connection (or its will) left.
      if (!disconnect_sent_) mosquitto_disconnect(mosq_);
      disconnect_sent_ = true;
      return;
    }
    for (const auto& [filter, qos] : subscriptions_) {
      int src = mosquitto_subscribe(mosq_, nullptr, filter.c_str(), qos);
      if (src != MOSQ_ERR_SUCCESS) {
        IOT2MQTT_LOG(ERROR)
                .With("filter", filter)
                .With("error", FromMosquitto(src).ToString())
            << "subscribe failed";
      }
    }
    if (birth_.has_value()) {
      absl::Status s =
          PublishLocked(OutboundMessage{*birth_, MessageClass::kNormal});
      if (!s.ok()) {
        IOT2MQTT_LOG(ERROR).With("error", s.ToString())
            << "cannot publish the birth message";
      }
    }
    connected_ = true;
    since_ = absl::Now();
    last_error_.clear();
    ++connects_;
    std::vector<OutboundMessage> backlog = queue_.TakeAll();
    flushed = backlog.size();
    for (OutboundMessage& item : backlog) {
      std::string topic = item.message.topic;
      absl::Status s = PublishLocked(std::move(item));
      if (!s.ok()) {
        IOT2MQTT_LOG(ERROR).With("topic", topic).With("error", s.ToString())
            << "cannot publish a queued message";
      }
    }
    dropped = drops_since_connect_;
    drops_since_connect_ = 0;
    logged_state_drop_ = false;
  }
  IOT2MQTT_LOG(INFO)
          .With("host", settings_.host)
          .With("port", settings_.port)
          .With("client_id", client_id_)
          .With("flushed", static_cast<int64_t>(flushed))
          .With("dropped_while_disconnected", dropped)
      << "connected to the MQTT broker";
  if (on_connection_) on_connection_(true);
}

void MosquittoClient::HandlePublished(int mid) {
  absl::MutexLock lock(&mu_);
  inflight_.erase(mid);
  if (final_mid_.has_value() && *final_mid_ == mid) final_done_ = true;
}

void MosquittoClient::HandleMessage(const struct mosquitto_message* message) {
  if (!on_message_ || message == nullptr || message->topic == nullptr) return;
  InboundMessage in;
  in.topic = message->topic;
  in.qos = message->qos;
  in.retain = message->retain;
  in.payload_bytes =
      message->payloadlen > 0 ? static_cast<size_t>(message->payloadlen) : 0;
  if (settings_.max_inbound_payload > 0 &&
      in.payload_bytes > settings_.max_inbound_payload) {
    in.oversized = true;
  } else if (in.payload_bytes > 0) {
    in.payload.assign(static_cast<const char*>(message->payload),
                      in.payload_bytes);
  }
  on_message_(std::move(in));
}

void MosquittoClient::HandleConnectionLost(int rc, bool was_connected) {
  bool quiet = false;
  {
    absl::MutexLock lock(&mu_);
    if (connected_) {
      since_ = absl::Now();
      if (!(stopping_ || closing_)) {
        last_error_ = absl::StrCat(
            "Connection lost: ",
            FromMosquitto(rc == MOSQ_ERR_SUCCESS ? MOSQ_ERR_CONN_LOST : rc)
                .message());
      }
    }
    connected_ = false;
    mosq_ = nullptr;
    quiet = stopping_ || closing_;
    std::vector<Inflight> pending;
    pending.reserve(inflight_.size());
    for (auto& [mid, entry] : inflight_) pending.push_back(std::move(entry));
    inflight_.clear();
    std::sort(
        pending.begin(), pending.end(),
        [](const Inflight& a, const Inflight& b) { return a.seq < b.seq; });
    std::vector<OutboundMessage> items;
    items.reserve(pending.size());
    for (Inflight& entry : pending) items.push_back(std::move(entry.item));
    if (!quiet && !items.empty()) {
      std::vector<OutboundMessage> dropped;
      queue_.PushFront(std::move(items), &dropped);
      dropped_ += static_cast<int64_t>(dropped.size());
      drops_since_connect_ += static_cast<int64_t>(dropped.size());
      LogDrops(dropped);
    }
    final_done_ = true;
  }
  if (!was_connected) return;
  if (!quiet) {
    IOT2MQTT_LOG(WARNING)
            .With("host", settings_.host)
            .With("port", settings_.port)
            .With("error", FromMosquitto(
                               rc == MOSQ_ERR_SUCCESS ? MOSQ_ERR_CONN_LOST : rc)
                               .ToString())
        << "lost the connection to the MQTT broker; reconnecting";
  }
  if (on_connection_) on_connection_(false);
}

void MosquittoClient::Stop(std::optional<MqttMessage> last,
                           absl::Duration timeout) {
  size_t lost = 0;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_ || stopping_) return;
    if (!started_) {
      stopped_ = true;
      return;
    }
    closing_ = true;
    final_done_ = true;
    if (last.has_value() && connected_ && mosq_ != nullptr) {
      int mid = 0;
      int rc = mosquitto_publish(mosq_, &mid, last->topic.c_str(),
                                 static_cast<int>(last->payload.size()),
                                 last->payload.data(), last->qos, last->retain);
      if (rc == MOSQ_ERR_SUCCESS && last->qos > 0) {
        final_mid_ = mid;
        final_done_ = false;
      } else if (rc != MOSQ_ERR_SUCCESS) {
        IOT2MQTT_LOG(WARNING).With("error", FromMosquitto(rc).ToString())
            << "cannot publish the final message";
      }
    }
    const auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return final_done_ || !connected_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
    if (!final_done_ && connected_) {
      IOT2MQTT_LOG(WARNING) << "the broker did not acknowledge the final "
                               "message in time; disconnecting anyway";
    }
    // DISCONNECT goes out after every queued packet; the network thread
    // wakes up (libmosquitto's socket pair), sees the closed connection and
    // exits.
    stopping_ = true;
    if (connected_ && mosq_ != nullptr && !disconnect_sent_) {
      mosquitto_disconnect(mosq_);
      disconnect_sent_ = true;
    }
    lost = queue_.size();
  }
  if (thread_.joinable()) thread_.join();
  absl::MutexLock lock(&mu_);
  stopped_ = true;
  if (lost > 0) {
    IOT2MQTT_LOG(WARNING).With("messages", static_cast<int64_t>(lost))
        << "stopped while disconnected: queued messages were not sent";
  }
}

}  // namespace iot2mqtt::sdk
