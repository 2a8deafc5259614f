#include "services/mqtt_bridge/bridge.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "iot2mqtt/sdk/backoff.h"
#include "iot2mqtt/sdk/contract.h"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/log.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "rapidjson/document.h"
#include "services/common/status.h"

namespace iot2mqtt::mqtt_bridge {

// Prometheus metrics (names iot_mqtt_bridge_*).
class BridgeMetrics {
 public:
  explicit BridgeMetrics(prometheus::Registry& registry) {
    received = &prometheus::BuildCounter()
                    .Name("iot_mqtt_bridge_messages_received_total")
                    .Help("MQTT messages received by the bridge")
                    .Register(registry)
                    .Add({});
    topics = &prometheus::BuildGauge()
                  .Name("iot_mqtt_bridge_cache_topics")
                  .Help("Topics in the bridge's cache")
                  .Register(registry)
                  .Add({});
    bytes = &prometheus::BuildGauge()
                 .Name("iot_mqtt_bridge_cache_bytes")
                 .Help("Bytes (topics and values) in the bridge's cache")
                 .Register(registry)
                 .Add({});
    evictions = &prometheus::BuildCounter()
                     .Name("iot_mqtt_bridge_cache_evictions_total")
                     .Help("Topics evicted because the cache was full")
                     .Register(registry)
                     .Add({});
    auto& commands = prometheus::BuildCounter()
                         .Name("iot_mqtt_bridge_commands_total")
                         .Help("Commands sent, by outcome")
                         .Register(registry);
    command_response = &commands.Add({{"outcome", "response"}});
    command_timeout = &commands.Add({{"outcome", "timeout"}});
    command_no_wait = &commands.Add({{"outcome", "no_wait"}});
    command_cancelled = &commands.Add({{"outcome", "cancelled"}});
    command_not_connected = &commands.Add({{"outcome", "not_connected"}});
    command_error = &commands.Add({{"outcome", "error"}});
    auto& publishes = prometheus::BuildCounter()
                          .Name("iot_mqtt_bridge_publishes_total")
                          .Help("Publish requests, by outcome")
                          .Register(registry);
    publish_success = &publishes.Add({{"outcome", "success"}});
    publish_invalid = &publishes.Add({{"outcome", "invalid"}});
    publish_not_connected = &publishes.Add({{"outcome", "not_connected"}});
    publish_error = &publishes.Add({{"outcome", "error"}});
    connected = &prometheus::BuildGauge()
                     .Name("iot_mqtt_bridge_connected")
                     .Help("1 while connected to the MQTT broker")
                     .Register(registry)
                     .Add({});
    subscribers = &prometheus::BuildGauge()
                       .Name("iot_mqtt_bridge_subscribers")
                       .Help("Live Subscribe streams")
                       .Register(registry)
                       .Add({});
  }

  prometheus::Counter* received;
  prometheus::Gauge* topics;
  prometheus::Gauge* bytes;
  prometheus::Counter* evictions;
  prometheus::Counter* command_response;
  prometheus::Counter* command_timeout;
  prometheus::Counter* command_no_wait;
  prometheus::Counter* command_cancelled;
  prometheus::Counter* command_not_connected;
  prometheus::Counter* command_error;
  prometheus::Counter* publish_success;
  prometheus::Counter* publish_invalid;
  prometheus::Counter* publish_not_connected;
  prometheus::Counter* publish_error;
  prometheus::Gauge* connected;
  prometheus::Gauge* subscribers;
};

namespace {

constexpr absl::Duration kMaxCommandTimeout = absl::Seconds(60);
constexpr absl::Duration kClientStopTimeout = absl::Seconds(1);

absl::Status Invalid(absl::string_view reason, std::string message,
                     const std::map<std::string, std::string>& metadata = {}) {
  return common::WithReason(absl::InvalidArgumentError(std::move(message)),
                            reason, metadata);
}

absl::Status NotConnected() {
  return common::WithReason(
      absl::UnavailableError("not connected to the MQTT broker"),
      kMqttNotConnected);
}

bool IsAbsentJson(absl::string_view json) {
  absl::string_view trimmed = absl::StripAsciiWhitespace(json);
  return trimmed.empty() || trimmed == "null";
}

void Increment(prometheus::Counter* counter, double by = 1) {
  if (counter != nullptr && by > 0) counter->Increment(by);
}

}  // namespace

absl::Status ValidateInstanceId(absl::string_view id) {
  bool ok = !id.empty() && id.size() <= 63;
  for (size_t i = 0; ok && i < id.size(); ++i) {
    char c = id[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    ok = alnum || (i > 0 && (c == '_' || c == '-'));
  }
  if (ok) return absl::OkStatus();
  return Invalid(kInvalidInstanceId,
                 "the instance id must match ^[a-z0-9][a-z0-9_-]{0,62}$");
}

absl::StatusOr<CommandSpec> ParseCommandRequest(
    absl::string_view instance_id, absl::string_view device_id,
    absl::string_view command, absl::string_view values,
    std::optional<double> timeout_seconds) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateInstanceId(instance_id));
  if (absl::Status s = sdk::ValidateId(device_id); !s.ok()) {
    return Invalid(kInvalidDeviceId,
                   absl::StrCat("invalid device id: ", s.message()));
  }
  const bool has_command = !IsAbsentJson(command);
  const bool has_values = !IsAbsentJson(values);
  if (has_command == has_values) {
    return Invalid(kInvalidCommand,
                   has_command ? "give either command or values, not both"
                               : "command (or values) is required");
  }
  absl::string_view json = has_command ? command : values;
  if (sdk::JsonTypeOf(absl::StripAsciiWhitespace(json)) != "object") {
    return Invalid(kInvalidCommand,
                   absl::StrCat(has_command ? "command" : "values",
                                " must be a JSON object"));
  }
  absl::StatusOr<std::string> compact = sdk::RewriteJson(json);
  if (!compact.ok()) {
    return Invalid(
        kInvalidCommand,
        absl::StrCat(has_command ? "command" : "values",
                     " is not valid JSON: ", compact.status().message()));
  }
  CommandSpec spec;
  spec.instance_id = std::string(instance_id);
  spec.device_id = std::string(device_id);
  spec.values = *std::move(compact);
  spec.command_id = NewUuid4();
  if (timeout_seconds.has_value()) {
    double t = *timeout_seconds;
    if (!std::isfinite(t) || t < 0 ||
        t > absl::ToDoubleSeconds(kMaxCommandTimeout)) {
      return Invalid(kInvalidTimeout,
                     "timeout must be from 0 to 60 seconds (0: don't wait)");
    }
    spec.timeout = absl::Milliseconds(std::llround(t * 1000));
  }
  return spec;
}

absl::StatusOr<std::string> PayloadFromJson(absl::string_view json) {
  if (absl::StripAsciiWhitespace(json).empty()) return std::string();
  rapidjson::Document doc;
  doc.Parse(json.data(), json.size());
  if (doc.HasParseError()) {
    return Invalid(kInvalidPayload, "the payload is not valid JSON");
  }
  if (doc.IsString()) {
    return std::string(doc.GetString(), doc.GetStringLength());
  }
  return std::string(json);
}

std::string NewUuid4() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  uint64_t hi = rng();
  uint64_t lo = rng();
  hi = (hi & ~0xF000ULL) | 0x4000ULL;                  // Version 4.
  lo = (lo & ~(0xC000ULL << 48)) | (0x8000ULL << 48);  // RFC 4122 variant.
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", hi >> 32,
                         (hi >> 16) & 0xFFFF, hi & 0xFFFF, lo >> 48,
                         lo & 0xFFFFFFFFFFFFULL);
}

// ---------------------------------------------------------------------------

Bridge::Bridge(BridgeOptions options, std::unique_ptr<SettingsSource> settings)
    : options_(std::move(options)),
      source_(std::move(settings)),
      cache_(options_.cache_limits),
      hub_(options_.subscriber_queue) {
  if (options_.registry != nullptr) {
    metrics_ = std::make_unique<BridgeMetrics>(*options_.registry);
  }
  absl::MutexLock lock(&mu_);
  idle_since_ = absl::Now();
  cache_.SetBaseTopic(settings_.base_topic);
}

Bridge::~Bridge() { Stop(); }

void Bridge::Start() {
  absl::MutexLock lock(&mu_);
  if (stopping_ || settings_thread_.joinable()) return;
  settings_thread_ = std::thread(&Bridge::SettingsLoop, this);
}

void Bridge::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  source_->CancelWatch();
  if (settings_thread_.joinable()) settings_thread_.join();
  std::shared_ptr<sdk::MosquittoClient> client;
  {
    absl::MutexLock lock(&mu_);
    client = std::move(client_);
    generation_.fetch_add(1);
  }
  if (client != nullptr) client->Stop(std::nullopt, kClientStopTimeout);
  CancelCommands();
}

void Bridge::CancelCommands() {
  std::vector<std::string> pending;
  {
    absl::MutexLock lock(&mu_);
    pending.assign(pending_commands_.begin(), pending_commands_.end());
  }
  for (const std::string& id : pending) tracker_.Cancel(id);
}

bool Bridge::Pause(absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), delay);
  return !stopping_;
}

void Bridge::SettingsLoop() {
  sdk::Backoff backoff(options_.config_retry_initial,
                       options_.config_retry_max);
  std::string cursor;
  bool need_refresh = true;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    if (need_refresh) {
      if (!Refresh()) {
        if (!Pause(backoff.Next())) return;
        continue;
      }
      need_refresh = false;
      backoff.Reset();
    }
    const absl::Time opened = absl::Now();
    need_refresh = WatchOnce(&cursor);
    // A stream that lived a while was healthy: start the delays over.
    if (absl::Now() - opened > absl::Seconds(10)) backoff.Reset();
    if (!Pause(backoff.Next())) return;
  }
}

bool Bridge::WatchOnce(std::string* cursor) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return false;
  }
  bool refresh_failed = false;
  absl::Status status =
      source_->Watch(*cursor, [&](const SettingsChange& change) {
        {
          absl::MutexLock lock(&mu_);
          config_error_.clear();
        }
        if (!change.cursor.empty()) *cursor = change.cursor;
        if ((change.resync || change.mqtt) && !Refresh()) {
          refresh_failed = true;
          return false;
        }
        return true;
      });
  bool stopping = false;
  {
    absl::MutexLock lock(&mu_);
    stopping = stopping_;
    if (!stopping && !refresh_failed) {
      config_error_ = absl::StrCat("config service change stream ended: ",
                                   status.message());
    }
  }
  if (!stopping && !refresh_failed) {
    IOT2MQTT_LOG(INFO)
            .With("config_service", source_->Describe())
            .With("error", std::string(status.message()))
        << "config change stream ended; watching again";
  }
  return refresh_failed;
}

absl::StatusOr<BrokerSettings> Bridge::ResolveStoredSettings() {
  return source_->Resolve();
}

bool Bridge::Refresh() {
  absl::StatusOr<BrokerSettings> settings = ResolveStoredSettings();
  if (!settings.ok()) {
    bool first = false;
    {
      absl::MutexLock lock(&mu_);
      std::string error(settings.status().message());
      first = error != config_error_;
      config_error_ = std::move(error);
    }
    if (first) {
      IOT2MQTT_LOG(WARNING)
          << settings.status().message() << "; retrying with backoff";
    }
    return false;
  }
  {
    absl::MutexLock lock(&mu_);
    config_error_.clear();
  }
  Apply(*settings);
  return true;
}

void Bridge::Apply(const BrokerSettings& settings) {
  absl::MutexLock apply_lock(&apply_mu_);
  std::shared_ptr<sdk::MosquittoClient> old;
  BrokerSettings previous;
  bool had_settings = false;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    if (have_settings_ && settings_ == settings) return;
    old = std::move(client_);
    previous = settings_;
    had_settings = have_settings_;
    have_settings_ = true;
    settings_ = settings;
    client_id_.clear();
    idle_since_ = absl::Now();
    generation_.fetch_add(1);
  }
  // Its network thread ends here; its late messages carry an old
  // generation and are dropped.
  if (old != nullptr) old->Stop(std::nullopt, kClientStopTimeout);
  if (metrics_ != nullptr) metrics_->connected->Set(0);
  const bool moved = !had_settings || previous.host != settings.host ||
                     previous.port != settings.port ||
                     previous.base_topic != settings.base_topic;
  if (moved) {
    absl::MutexLock lock(&ingest_mu_);
    cache_.SetBaseTopic(settings.base_topic);
    cache_.Clear();
    if (metrics_ != nullptr) {
      metrics_->topics->Set(0);
      metrics_->bytes->Set(0);
    }
  }
  if (settings.host.empty()) {
    IOT2MQTT_LOG(WARNING)
        << "no MQTT broker configured; waiting for the settings to name one";
    return;
  }
  sdk::MqttSettings mqtt;
  mqtt.host = settings.host;
  mqtt.port = settings.port;
  mqtt.username = settings.username;
  mqtt.password = settings.password;
  mqtt.client_prefix = settings.client_prefix;
  mqtt.keepalive_seconds = settings.keepalive;
  mqtt.base_topic = settings.base_topic;
  mqtt.reconnect_initial = options_.reconnect_initial;
  mqtt.reconnect_max = options_.reconnect_max;
  // Connectors are `<prefix>_<instance>`, and an instance id never starts
  // with `_`: no instance can take the bridge's id.
  const std::string client_id =
      absl::StrCat(settings.client_prefix, "__bridge");
  auto client = std::make_shared<sdk::MosquittoClient>(mqtt, client_id);
  const uint64_t generation = generation_.load();
  client->SetMessageHandler([this, generation](sdk::InboundMessage message) {
    OnMessage(generation, std::move(message));
  });
  client->SetConnectionHandler([this, generation](bool connected) {
    OnConnection(generation, connected);
  });
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    absl::Status s = client->Subscribe(settings.base_topic + "/#", 1);
    if (!s.ok()) {
      IOT2MQTT_LOG(ERROR) << "cannot subscribe to the base topic: "
                          << s.message();
    }
    for (const auto& [filter, count] : extra_filters_) {
      s = client->Subscribe(filter, 1);
      if (!s.ok()) {
        IOT2MQTT_LOG(ERROR).With("filter", filter)
            << "cannot subscribe: " << s.message();
      }
    }
    client_ = client;
    client_id_ = client_id;
  }
  IOT2MQTT_LOG(INFO)
          .With("host", settings.host)
          .With("port", settings.port)
          .With("base_topic", settings.base_topic)
          .With("client_id", client_id)
          .With("cache_cleared", moved)
      << "using the MQTT broker settings";
  if (absl::Status s = client->Start(); !s.ok()) {
    IOT2MQTT_LOG(WARNING) << "MQTT client not started: " << s.message();
  }
}

void Bridge::OnConnection(uint64_t generation, bool connected) {
  if (generation != generation_.load()) return;
  if (metrics_ != nullptr) metrics_->connected->Set(connected ? 1 : 0);
}

void Bridge::OnMessage(uint64_t generation, sdk::InboundMessage message) {
  if (generation != generation_.load()) return;
  messages_received_.fetch_add(1, std::memory_order_relaxed);
  const absl::Time now = absl::Now();
  CacheChange change;
  {
    absl::MutexLock lock(&ingest_mu_);
    change = cache_.Apply(message.topic, message.payload, message.retain,
                          message.qos, now);
    if (change.kind != CacheChange::Kind::kIgnored) {
      HubEvent event;
      event.type = change.kind == CacheChange::Kind::kUpdate
                       ? HubEvent::Type::kUpdate
                       : HubEvent::Type::kDelete;
      event.topic = message.topic;
      event.value = std::move(change.value);
      event.received = now;
      event.retained = message.retain;
      event.qos = message.qos;
      hub_.Publish(event);
    }
  }
  if (metrics_ != nullptr) {
    metrics_->received->Increment();
    Increment(metrics_->evictions, static_cast<double>(change.evicted));
    metrics_->topics->Set(static_cast<double>(cache_.size()));
    metrics_->bytes->Set(static_cast<double>(cache_.bytes()));
  }
  if (absl::EndsWith(message.topic, "/cmd/response")) {
    tracker_.OnResponse(message.topic, message.payload);
  }
}

std::shared_ptr<sdk::MosquittoClient> Bridge::ConnectedClient(
    std::string* base_topic) const {
  absl::MutexLock lock(&mu_);
  if (client_ == nullptr || !client_->IsConnected()) return nullptr;
  if (base_topic != nullptr) *base_topic = settings_.base_topic;
  return client_;
}

BridgeStatus Bridge::Status() const {
  BridgeStatus status;
  {
    absl::MutexLock lock(&mu_);
    status.configured = have_settings_ && !settings_.host.empty();
    status.host = settings_.host;
    status.port = settings_.port;
    status.base_topic = settings_.base_topic;
    status.client_id = client_id_;
    if (client_ != nullptr) {
      sdk::MosquittoClient::ConnectionInfo info = client_->connection_info();
      status.connected = info.connected;
      status.since = info.since;
      status.last_error = info.last_error;
    } else {
      status.since = idle_since_;
      status.last_error = config_error_;
    }
  }
  status.topics = static_cast<int64_t>(cache_.size());
  status.cache_bytes = static_cast<int64_t>(cache_.bytes());
  status.evicted = cache_.evicted();
  status.messages_received = messages_received_.load();
  return status;
}

common::HealthVerdict Bridge::Health() const {
  BridgeStatus status = Status();
  common::HealthVerdict verdict;
  verdict.healthy = status.connected;
  verdict.details["base_topic"] = status.base_topic;
  verdict.details["cache_topics"] = std::to_string(status.topics);
  if (status.configured) {
    verdict.details["broker"] = absl::StrCat(status.host, ":", status.port);
  }
  if (!status.last_error.empty()) {
    verdict.details["last_error"] = status.last_error;
  }
  if (status.connected) return verdict;
  {
    absl::MutexLock lock(&mu_);
    if (!have_settings_) {
      verdict.reason = "waiting for the MQTT settings from the config service";
      return verdict;
    }
  }
  verdict.reason = status.configured ? "not connected to the MQTT broker"
                                     : "no MQTT broker configured";
  return verdict;
}

absl::Status Bridge::Publish(const std::string& topic, std::string payload,
                             int qos, bool retain) {
  absl::Status invalid;
  if (std::string problem = TopicProblem(topic, false); !problem.empty()) {
    invalid = Invalid(kInvalidTopic, absl::StrCat("invalid topic: ", problem));
  } else if (qos < 0 || qos > 2) {
    invalid = Invalid(kInvalidQos, "qos must be 0, 1 or 2");
  } else if (payload.size() > options_.max_payload_bytes) {
    invalid = Invalid(
        kPayloadTooLarge,
        absl::StrCat("the payload has ", payload.size(),
                     " bytes; the limit is ", options_.max_payload_bytes),
        {{"limit", std::to_string(options_.max_payload_bytes)}});
  }
  if (!invalid.ok()) {
    if (metrics_ != nullptr) Increment(metrics_->publish_invalid);
    return invalid;
  }
  std::shared_ptr<sdk::MosquittoClient> client = ConnectedClient(nullptr);
  if (client == nullptr) {
    if (metrics_ != nullptr) Increment(metrics_->publish_not_connected);
    return NotConnected();
  }
  absl::Status s =
      client->Publish(sdk::MqttMessage{topic, std::move(payload), qos, retain});
  if (metrics_ != nullptr) {
    Increment(s.ok() ? metrics_->publish_success : metrics_->publish_error);
  }
  return s;
}

bool Bridge::InsideBase(absl::string_view filter, absl::string_view base) {
  return filter == base ||
         (absl::StartsWith(filter, base) && filter.size() > base.size() &&
          filter[base.size()] == '/');
}

absl::StatusOr<std::shared_ptr<Subscription>> Bridge::Subscribe(
    std::vector<std::string> filters, bool skip_snapshot,
    SubscriberHub::Wake wake) {
  std::string base;
  {
    absl::MutexLock lock(&mu_);
    base = settings_.base_topic;
  }
  if (filters.empty()) filters.push_back(base + "/#");
  for (const std::string& filter : filters) {
    if (std::string problem = TopicProblem(filter, true); !problem.empty()) {
      return Invalid(kInvalidFilter,
                     absl::StrCat("invalid topic filter: ", problem));
    }
  }
  std::sort(filters.begin(), filters.end());
  filters.erase(std::unique(filters.begin(), filters.end()), filters.end());
  std::vector<std::string> extra;
  for (const std::string& filter : filters) {
    if (!InsideBase(filter, base)) extra.push_back(filter);
  }
  if (!extra.empty()) {
    absl::MutexLock lock(&mu_);
    for (const std::string& filter : extra) {
      if (++extra_filters_[filter] == 1 && client_ != nullptr) {
        absl::Status s = client_->Subscribe(filter, 1);
        if (!s.ok()) {
          IOT2MQTT_LOG(WARNING).With("filter", filter)
              << "cannot subscribe: " << s.message();
        }
      }
    }
  }
  std::shared_ptr<Subscription> subscription;
  {
    absl::MutexLock lock(&ingest_mu_);
    std::vector<HubEvent> snapshot;
    if (!skip_snapshot) {
      std::map<std::string, CachedTopic> matching;
      for (const std::string& filter : filters) {
        for (CachedTopic& topic : cache_.Matching(filter)) {
          std::string name = topic.topic;
          matching.emplace(std::move(name), std::move(topic));
        }
      }
      snapshot.reserve(matching.size());
      for (auto& [name, topic] : matching) {
        HubEvent event;
        event.type = HubEvent::Type::kSnapshot;
        event.topic = name;
        event.value = std::move(topic.value);
        event.received = topic.received;
        event.retained = topic.retained;
        event.qos = topic.qos;
        snapshot.push_back(std::move(event));
      }
    }
    subscription =
        hub_.Subscribe(filters, std::move(snapshot), std::move(wake));
  }
  {
    absl::MutexLock lock(&mu_);
    subscription_extras_[subscription.get()] = std::move(extra);
  }
  if (metrics_ != nullptr) {
    metrics_->subscribers->Set(static_cast<double>(hub_.subscribers()));
  }
  return subscription;
}

void Bridge::Unsubscribe(const std::shared_ptr<Subscription>& subscription) {
  if (subscription == nullptr) return;
  subscription->Cancel();
  std::vector<std::string> released;
  std::string base;
  std::vector<std::string> remaining;
  {
    absl::MutexLock lock(&mu_);
    base = settings_.base_topic;
    auto it = subscription_extras_.find(subscription.get());
    if (it != subscription_extras_.end()) {
      for (const std::string& filter : it->second) {
        auto count = extra_filters_.find(filter);
        if (count == extra_filters_.end() || --count->second > 0) continue;
        extra_filters_.erase(count);
        released.push_back(filter);
        if (client_ != nullptr) client_->Unsubscribe(filter).IgnoreError();
      }
      subscription_extras_.erase(it);
    }
    for (const auto& [filter, count] : extra_filters_) {
      remaining.push_back(filter);
    }
  }
  if (!released.empty()) {
    // Topics only those filters brought in leave the cache with them.
    absl::MutexLock lock(&ingest_mu_);
    for (const std::string& filter : released) {
      for (const CachedTopic& topic : cache_.Matching(filter)) {
        if (InsideBase(topic.topic, base)) continue;
        bool kept = std::any_of(remaining.begin(), remaining.end(),
                                [&](const std::string& f) {
                                  return TopicMatchesFilter(topic.topic, f);
                                });
        if (!kept) cache_.Erase(topic.topic);
      }
    }
  }
  if (metrics_ != nullptr) {
    metrics_->subscribers->Set(static_cast<double>(hub_.subscribers()));
  }
}

absl::StatusOr<std::string> Bridge::SendCommand(const CommandSpec& spec,
                                                CommandTracker::Done done) {
  std::string base;
  std::shared_ptr<sdk::MosquittoClient> client = ConnectedClient(&base);
  if (client == nullptr) {
    if (metrics_ != nullptr) Increment(metrics_->command_not_connected);
    return NotConnected();
  }
  absl::StatusOr<sdk::Topics> topics =
      sdk::Topics::Create(base, spec.instance_id);
  if (!topics.ok()) {
    return Invalid(kInvalidInstanceId, std::string(topics.status().message()));
  }
  const bool wait = spec.timeout > absl::ZeroDuration();
  std::optional<int64_t> timeout_ms;
  if (wait) timeout_ms = absl::ToInt64Milliseconds(spec.timeout);
  std::string payload = sdk::BuildCommandPayload(spec.command_id, absl::Now(),
                                                 spec.values, timeout_ms);
  // Set when publishing failed: the tracker's cancellation is then ours,
  // not the caller's outcome.
  auto failed = std::make_shared<std::atomic<bool>>(false);
  if (wait) {
    {
      absl::MutexLock lock(&mu_);
      pending_commands_.insert(spec.command_id);
    }
    tracker_.Register(spec.command_id, topics->CommandResponse(spec.device_id),
                      spec.timeout,
                      [this, id = spec.command_id, failed,
                       done = std::move(done)](CommandOutcome outcome) {
                        {
                          absl::MutexLock lock(&mu_);
                          pending_commands_.erase(id);
                        }
                        if (failed->load()) return;
                        if (metrics_ != nullptr) {
                          switch (outcome.kind) {
                            case CommandOutcome::Kind::kResponse:
                              Increment(metrics_->command_response);
                              break;
                            case CommandOutcome::Kind::kTimeout:
                              Increment(metrics_->command_timeout);
                              break;
                            case CommandOutcome::Kind::kCancelled:
                              Increment(metrics_->command_cancelled);
                              break;
                          }
                        }
                        done(std::move(outcome));
                      });
  }
  absl::Status s = client->Publish(sdk::MqttMessage{
      topics->Command(spec.device_id), std::move(payload), 1, false});
  if (!s.ok()) {
    failed->store(true);
    if (wait) tracker_.Cancel(spec.command_id);
    if (metrics_ != nullptr) Increment(metrics_->command_error);
    return s;
  }
  if (!wait && metrics_ != nullptr) Increment(metrics_->command_no_wait);
  IOT2MQTT_LOG(DEBUG)
          .With("command_id", spec.command_id)
          .With("instance_id", spec.instance_id)
          .With("device_id", spec.device_id)
      << "command published";
  return spec.command_id;
}

absl::StatusOr<int64_t> Bridge::ClearTopics(std::vector<std::string> topics) {
  std::shared_ptr<sdk::MosquittoClient> client = ConnectedClient(nullptr);
  if (client == nullptr) return NotConnected();
  std::sort(topics.begin(), topics.end());
  topics.erase(std::unique(topics.begin(), topics.end()), topics.end());
  int64_t cleared = 0;
  absl::Status failure;
  for (const std::string& topic : topics) {
    absl::Status s = client->Publish(sdk::MqttMessage{topic, "", 1, true});
    if (!s.ok()) {
      failure = s;
      break;
    }
    ++cleared;
  }
  {
    absl::MutexLock lock(&ingest_mu_);
    for (size_t i = 0; i < static_cast<size_t>(cleared); ++i) {
      if (!cache_.Get(topics[i]).has_value()) continue;
      cache_.Erase(topics[i]);
      HubEvent event;
      event.type = HubEvent::Type::kDelete;
      event.topic = topics[i];
      event.received = absl::Now();
      event.retained = true;
      event.qos = 1;
      hub_.Publish(event);
    }
  }
  if (metrics_ != nullptr) {
    metrics_->topics->Set(static_cast<double>(cache_.size()));
    metrics_->bytes->Set(static_cast<double>(cache_.bytes()));
  }
  if (!failure.ok()) return failure;
  return cleared;
}

absl::StatusOr<int64_t> Bridge::ClearInstance(absl::string_view instance_id) {
  IOT2MQTT_RETURN_IF_ERROR(ValidateInstanceId(instance_id));
  std::string base;
  if (ConnectedClient(&base) == nullptr) return NotConnected();
  absl::StatusOr<sdk::Topics> topics = sdk::Topics::Create(base, instance_id);
  if (!topics.ok()) {
    return Invalid(kInvalidInstanceId, std::string(topics.status().message()));
  }
  std::vector<std::string> names = cache_.TopicsUnder(topics->root());
  names.push_back(topics->Status());
  names.push_back(topics->Info());
  names.push_back(topics->DevicesList());
  absl::StatusOr<int64_t> cleared = ClearTopics(std::move(names));
  if (cleared.ok()) {
    IOT2MQTT_LOG(INFO)
            .With("instance_id", std::string(instance_id))
            .With("topics", *cleared)
        << "cleared the instance's MQTT topics";
  }
  return cleared;
}

absl::StatusOr<int64_t> Bridge::ClearAll() {
  std::string base;
  if (ConnectedClient(&base) == nullptr) return NotConnected();
  absl::StatusOr<int64_t> cleared = ClearTopics(cache_.TopicsUnder(base));
  if (cleared.ok()) {
    IOT2MQTT_LOG(INFO).With("topics", *cleared)
        << "cleared every MQTT topic under the base topic";
  }
  return cleared;
}

}  // namespace iot2mqtt::mqtt_bridge
