#include "services/mqtt_bridge/topic_cache.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "iot2mqtt/sdk/contract.h"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "rapidjson/document.h"
#include "rapidjson/memorystream.h"
#include "rapidjson/reader.h"

namespace iot2mqtt::mqtt_bridge {
namespace {

constexpr size_t kMaxTopicBytes = 65535;
constexpr size_t kMaxInstanceIdBytes = 63;

bool IsJsonSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

absl::string_view TrimJsonSpace(absl::string_view text) {
  while (!text.empty() && IsJsonSpace(text.front())) text.remove_prefix(1);
  while (!text.empty() && IsJsonSpace(text.back())) text.remove_suffix(1);
  return text;
}

// Exactly one valid JSON value (RFC 8259, UTF-8 checked, any depth).
bool IsJsonValue(absl::string_view text) {
  if (text.empty()) return false;
  // A raw NUL is never valid JSON, and RapidJSON would take it for the end.
  if (std::memchr(text.data(), '\0', text.size()) != nullptr) return false;
  constexpr unsigned kFlags = rapidjson::kParseValidateEncodingFlag |
                              rapidjson::kParseIterativeFlag |
                              rapidjson::kParseNumbersAsStringsFlag;
  rapidjson::MemoryStream stream(text.data(), text.size());
  rapidjson::Reader reader;
  rapidjson::BaseReaderHandler<rapidjson::UTF8<>> handler;
  return !reader.Parse<kFlags>(stream, handler).IsError();
}

// ^[a-z0-9][a-z0-9_-]{0,62}$
bool IsProjectableInstanceId(absl::string_view id) {
  if (id.empty() || id.size() > kMaxInstanceIdBytes) return false;
  for (size_t i = 0; i < id.size(); ++i) {
    char c = id[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              (i > 0 && (c == '_' || c == '-'));
    if (!ok) return false;
  }
  return true;
}

// "online" / "offline" / "unknown" from a status value (JSON text).
std::string StatusFromValue(const std::string& value) {
  std::string text = value;
  rapidjson::Document doc;
  doc.Parse(value.data(), value.size());
  if (!doc.HasParseError() && doc.IsString()) {
    text.assign(doc.GetString(), doc.GetStringLength());
  }
  std::string lower = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (lower == "online" || lower == "offline") return lower;
  return "unknown";
}

bool ContainsIgnoreCase(absl::string_view haystack,
                        absl::string_view lower_needle) {
  if (lower_needle.empty()) return true;
  auto it = std::search(
      haystack.begin(), haystack.end(), lower_needle.begin(),
      lower_needle.end(), [](char h, char n) {
        return absl::ascii_tolower(static_cast<unsigned char>(h)) == n;
      });
  return it != haystack.end();
}

// Length of the well-formed UTF-8 sequence at `i`, 0 when there is none.
size_t Utf8SequenceLength(absl::string_view text, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  unsigned char b0 = byte(i);
  if (b0 < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    cp = b0 & 0x0F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    cp = b0 & 0x07;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    unsigned char b = byte(i + k);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000)) return 0;
  if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
  if (cp > 0x10FFFF) return 0;
  return n;
}

// The merged `state` document of a device (see DeviceView).
std::string MergedState(
    absl::string_view device_id, const std::string* full_state,
    const std::vector<std::pair<const std::string*, const std::string*>>&
        overrides) {
  if (full_state != nullptr && overrides.empty()) return *full_state;
  auto overrides_object = [&](sdk::JsonObjectBuilder base) {
    for (const auto& [key, value] : overrides) {
      absl::StatusOr<std::string> compact = sdk::RewriteJson(*value);
      base.SetRaw(*key, compact.ok() ? *compact : *value);
    }
    return base.Build();
  };
  if (full_state != nullptr) {
    absl::StatusOr<std::vector<sdk::JsonMember>> members =
        sdk::SplitJsonObject(*full_state);
    if (members.ok()) {
      sdk::JsonObjectBuilder top;
      bool had_state = false;
      for (const sdk::JsonMember& member : *members) {
        if (member.key != "state") {
          top.SetRaw(member.key, member.value);
          continue;
        }
        had_state = true;
        sdk::JsonObjectBuilder state;
        absl::StatusOr<std::vector<sdk::JsonMember>> state_members =
            sdk::SplitJsonObject(member.value);
        if (state_members.ok()) {
          for (const sdk::JsonMember& m : *state_members) {
            state.SetRaw(m.key, m.value);
          }
        }
        top.SetRaw("state", overrides_object(std::move(state)));
      }
      if (!had_state) {
        top.SetRaw("state", overrides_object(sdk::JsonObjectBuilder()));
      }
      return top.Build();
    }
  }
  return sdk::JsonObjectBuilder()
      .Set("device_id", device_id)
      .SetRaw("state", overrides_object(sdk::JsonObjectBuilder()))
      .Build();
}

}  // namespace

std::string PayloadToJson(absl::string_view payload) {
  absl::string_view trimmed = TrimJsonSpace(payload);
  if (IsJsonValue(trimmed)) return std::string(trimmed);
  return sdk::JsonString(payload);
}

// ---------------------------------------------------------------------------
// Topic filters

bool TopicMatchesFilter(absl::string_view topic, absl::string_view filter) {
  if (topic.empty() || filter.empty()) return false;
  if (topic.front() == '$' &&
      (filter.front() == '+' || filter.front() == '#')) {
    return false;
  }
  size_t ti = 0;
  size_t fi = 0;
  bool topic_done = false;
  for (;;) {
    size_t fe = filter.find('/', fi);
    bool filter_last = fe == absl::string_view::npos;
    if (filter_last) fe = filter.size();
    absl::string_view flevel = filter.substr(fi, fe - fi);
    // `#` matches the rest, including the parent level ("a/#" matches "a").
    if (flevel == "#") return true;
    if (topic_done) return false;
    size_t te = topic.find('/', ti);
    bool topic_last = te == absl::string_view::npos;
    if (topic_last) te = topic.size();
    absl::string_view tlevel = topic.substr(ti, te - ti);
    if (flevel != "+" && flevel != tlevel) return false;
    if (filter_last) return topic_last;
    fi = fe + 1;
    if (topic_last) {
      topic_done = true;
    } else {
      ti = te + 1;
    }
  }
}

std::string TopicProblem(absl::string_view topic, bool allow_wildcards) {
  const char* what = allow_wildcards ? "topic filter" : "topic";
  if (topic.empty()) return absl::StrCat(what, " is empty");
  if (topic.size() > kMaxTopicBytes) {
    return absl::StrCat(what, " is longer than ", kMaxTopicBytes, " bytes");
  }
  for (size_t i = 0; i < topic.size();) {
    if (topic[i] == '\0') return absl::StrCat(what, " contains a NUL byte");
    size_t n = Utf8SequenceLength(topic, i);
    if (n == 0) return absl::StrCat(what, " is not valid UTF-8");
    i += n;
  }
  if (!allow_wildcards) {
    if (topic.find_first_of("+#") != absl::string_view::npos) {
      return "topic must not contain the wildcards '+' or '#'";
    }
    return "";
  }
  size_t start = 0;
  for (;;) {
    size_t end = topic.find('/', start);
    bool last = end == absl::string_view::npos;
    if (last) end = topic.size();
    absl::string_view level = topic.substr(start, end - start);
    if (level.find_first_of("+#") != absl::string_view::npos) {
      if (level.size() != 1) {
        return "'+' and '#' must occupy a whole level of a topic filter";
      }
      if (level == "#" && !last) {
        return "'#' must be the last level of a topic filter";
      }
    }
    if (last) break;
    start = end + 1;
  }
  return "";
}

// ---------------------------------------------------------------------------
// TopicCache

struct TopicCache::TopicPlace {
  enum class Kind { kNone, kOther, kStatus, kState, kProperty };
  Kind kind = Kind::kNone;  // kNone: not under a projectable instance.
  absl::string_view instance;
  absl::string_view device;
  absl::string_view key;
};

TopicCache::TopicCache(CacheLimits limits)
    : limits_(limits),
      base_topic_(sdk::kDefaultBaseTopic),
      instances_prefix_(
          absl::StrCat(sdk::kDefaultBaseTopic, "/v1/instances/")) {}

void TopicCache::SetBaseTopic(std::string base_topic) {
  absl::MutexLock lock(&mu_);
  if (base_topic == base_topic_) return;
  ClearLocked();
  instances_prefix_ = absl::StrCat(base_topic, "/v1/instances/");
  base_topic_ = std::move(base_topic);
}

std::string TopicCache::base_topic() const {
  absl::MutexLock lock(&mu_);
  return base_topic_;
}

TopicCache::TopicPlace TopicCache::Locate(absl::string_view topic) const {
  TopicPlace place;
  if (base_topic_.empty() || !absl::StartsWith(topic, instances_prefix_)) {
    return place;
  }
  absl::string_view rest = topic.substr(instances_prefix_.size());
  size_t slash = rest.find('/');
  if (slash == absl::string_view::npos) return place;
  absl::string_view instance = rest.substr(0, slash);
  if (!IsProjectableInstanceId(instance)) return place;
  place.instance = instance;
  place.kind = TopicPlace::Kind::kOther;
  rest.remove_prefix(slash + 1);
  if (rest == "status") {
    place.kind = TopicPlace::Kind::kStatus;
    return place;
  }
  if (!absl::ConsumePrefix(&rest, "devices/")) return place;
  slash = rest.find('/');
  if (slash == 0 || slash == absl::string_view::npos) return place;
  absl::string_view device = rest.substr(0, slash);
  rest.remove_prefix(slash);
  if (rest == "/state") {
    place.kind = TopicPlace::Kind::kState;
    place.device = device;
  } else if (absl::ConsumePrefix(&rest, "/state/") && !rest.empty() &&
             rest.find('/') == absl::string_view::npos) {
    place.kind = TopicPlace::Kind::kProperty;
    place.device = device;
    place.key = rest;
  }
  return place;
}

void TopicCache::Index(EntryMap::iterator it) {
  TopicPlace place = Locate(it->first);
  if (place.kind == TopicPlace::Kind::kNone) return;
  auto inst = instances_.find(place.instance);
  if (inst == instances_.end()) {
    inst =
        instances_.emplace(std::string(place.instance), InstanceIndex()).first;
  }
  InstanceIndex& index = inst->second;
  ++index.topics;
  index.last_seen = std::max(index.last_seen, it->second.received);
  const Entry* entry = &it->second;
  switch (place.kind) {
    case TopicPlace::Kind::kStatus:
      index.status = entry;
      break;
    case TopicPlace::Kind::kState:
    case TopicPlace::Kind::kProperty: {
      auto dev = index.devices.find(place.device);
      if (dev == index.devices.end()) {
        dev = index.devices.emplace(std::string(place.device), DeviceIndex())
                  .first;
      }
      if (place.kind == TopicPlace::Kind::kState) {
        dev->second.state = entry;
      } else {
        dev->second.properties[std::string(place.key)] = entry;
      }
      break;
    }
    default:
      break;
  }
}

void TopicCache::Unindex(EntryMap::iterator it) {
  TopicPlace place = Locate(it->first);
  if (place.kind == TopicPlace::Kind::kNone) return;
  auto inst = instances_.find(place.instance);
  if (inst == instances_.end()) return;
  InstanceIndex& index = inst->second;
  if (place.kind == TopicPlace::Kind::kStatus) {
    index.status = nullptr;
  } else if (place.kind == TopicPlace::Kind::kState ||
             place.kind == TopicPlace::Kind::kProperty) {
    auto dev = index.devices.find(place.device);
    if (dev != index.devices.end()) {
      if (place.kind == TopicPlace::Kind::kState) {
        dev->second.state = nullptr;
      } else {
        auto prop = dev->second.properties.find(place.key);
        if (prop != dev->second.properties.end()) {
          dev->second.properties.erase(prop);
        }
      }
      if (dev->second.state == nullptr && dev->second.properties.empty()) {
        index.devices.erase(dev);
      }
    }
  }
  if (--index.topics == 0) instances_.erase(inst);
}

void TopicCache::LinkNewest(Entry* entry) {
  entry->newer = nullptr;
  entry->older = newest_;
  if (newest_ != nullptr) newest_->newer = entry;
  newest_ = entry;
  if (oldest_ == nullptr) oldest_ = entry;
}

void TopicCache::Unlink(Entry* entry) {
  if (entry->older != nullptr) {
    entry->older->newer = entry->newer;
  } else {
    oldest_ = entry->newer;
  }
  if (entry->newer != nullptr) {
    entry->newer->older = entry->older;
  } else {
    newest_ = entry->older;
  }
  entry->older = entry->newer = nullptr;
}

void TopicCache::EraseLocked(EntryMap::iterator it) {
  Unindex(it);
  Unlink(&it->second);
  bytes_ -= it->first.size() + it->second.value.size();
  entries_.erase(it);
}

void TopicCache::ClearLocked() {
  entries_.clear();
  instances_.clear();
  oldest_ = newest_ = nullptr;
  bytes_ = 0;
}

CacheChange TopicCache::Apply(absl::string_view topic,
                              absl::string_view payload, bool retained, int qos,
                              absl::Time received) {
  CacheChange change;
  if (payload.empty()) {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(topic);
    if (it != entries_.end()) {
      EraseLocked(it);
      change.kind = CacheChange::Kind::kDelete;
    }
    return change;
  }

  std::string value = PayloadToJson(payload);
  const size_t needed = topic.size() + value.size();

  absl::MutexLock lock(&mu_);
  auto it = entries_.find(topic);
  if (needed > limits_.max_bytes || limits_.max_topics == 0) {
    if (it != entries_.end()) {
      EraseLocked(it);
      ++evicted_;
      change.evicted = 1;
    }
    return change;
  }

  bool inserted = false;
  if (it == entries_.end()) {
    it = entries_.emplace(std::string(topic), Entry()).first;
    it->second.topic = &it->first;
    bytes_ += it->first.size();
    inserted = true;
  } else {
    bytes_ -= it->second.value.size();
    Unlink(&it->second);
  }
  Entry& entry = it->second;
  entry.value = value;
  bytes_ += entry.value.size();
  entry.received = received;
  entry.retained = retained;
  entry.qos = qos;
  entry.seq = next_seq_++;
  LinkNewest(&entry);
  if (inserted) {
    Index(it);
  } else {
    TopicPlace place = Locate(topic);
    if (place.kind != TopicPlace::Kind::kNone) {
      auto inst = instances_.find(place.instance);
      if (inst != instances_.end()) {
        inst->second.last_seen = std::max(inst->second.last_seen, received);
      }
    }
  }

  while ((entries_.size() > limits_.max_topics || bytes_ > limits_.max_bytes) &&
         oldest_ != nullptr && oldest_ != &entry) {
    EraseLocked(entries_.find(*oldest_->topic));
    ++evicted_;
    ++change.evicted;
  }

  change.kind = CacheChange::Kind::kUpdate;
  change.value = std::move(value);
  return change;
}

namespace {

template <typename Entry>
CachedTopic ToCachedTopic(const std::string& topic, const Entry& entry) {
  CachedTopic out;
  out.topic = topic;
  out.value = entry.value;
  out.received = entry.received;
  out.retained = entry.retained;
  out.qos = entry.qos;
  return out;
}

}  // namespace

std::optional<CachedTopic> TopicCache::Get(absl::string_view topic) const {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(topic);
  if (it == entries_.end()) return std::nullopt;
  return ToCachedTopic(it->first, it->second);
}

std::vector<CachedTopic> TopicCache::List(absl::string_view substring) const {
  std::string needle = absl::AsciiStrToLower(substring);
  std::vector<CachedTopic> out;
  absl::MutexLock lock(&mu_);
  for (const auto& [topic, entry] : entries_) {
    if (ContainsIgnoreCase(topic, needle)) {
      out.push_back(ToCachedTopic(topic, entry));
    }
  }
  return out;
}

std::vector<CachedTopic> TopicCache::Matching(absl::string_view filter) const {
  std::vector<CachedTopic> out;
  if (filter.empty()) return out;
  // Only topics starting with the filter's literal levels can match; "a/#"
  // also matches "a", hence the prefix without its trailing '/'.
  size_t wildcard = filter.find_first_of("+#");
  absl::string_view prefix = filter.substr(0, wildcard);
  if (wildcard != absl::string_view::npos) {
    size_t level_start = prefix.rfind('/');
    prefix = level_start == absl::string_view::npos
                 ? absl::string_view()
                 : prefix.substr(0, level_start);
  }
  absl::MutexLock lock(&mu_);
  for (auto it = entries_.lower_bound(prefix);
       it != entries_.end() && absl::StartsWith(it->first, prefix); ++it) {
    if (TopicMatchesFilter(it->first, filter)) {
      out.push_back(ToCachedTopic(it->first, it->second));
    }
  }
  return out;
}

std::vector<std::string> TopicCache::TopicsUnder(
    absl::string_view prefix) const {
  std::vector<std::string> out;
  std::string under = absl::StrCat(prefix, "/");
  absl::MutexLock lock(&mu_);
  auto exact = entries_.find(prefix);
  if (exact != entries_.end()) out.push_back(exact->first);
  for (auto it = entries_.lower_bound(under);
       it != entries_.end() && absl::StartsWith(it->first, under); ++it) {
    out.push_back(it->first);
  }
  return out;
}

void TopicCache::Erase(absl::string_view topic) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(topic);
  if (it != entries_.end()) EraseLocked(it);
}

void TopicCache::Clear() {
  absl::MutexLock lock(&mu_);
  ClearLocked();
}

InstanceView TopicCache::ViewOf(const std::string& id,
                                const InstanceIndex& index) const {
  InstanceView view;
  view.instance_id = id;
  view.last_seen = index.last_seen;
  if (index.status != nullptr)
    view.status = StatusFromValue(index.status->value);
  view.devices.reserve(index.devices.size());
  std::vector<std::pair<const std::string*, const std::string*>> overrides;
  for (const auto& [device_id, device] : index.devices) {
    DeviceView dv;
    dv.device_id = device_id;
    overrides.clear();
    absl::Time last_update = absl::InfinitePast();
    uint64_t state_seq = 0;
    if (device.state != nullptr) {
      state_seq = device.state->seq;
      last_update = device.state->received;
    }
    for (const auto& [key, entry] : device.properties) {
      if (entry->seq <= state_seq) continue;  // Superseded by the full state.
      overrides.emplace_back(&key, &entry->value);
      last_update = std::max(last_update, entry->received);
    }
    if (device.state == nullptr && overrides.empty()) continue;
    dv.state = MergedState(
        device_id, device.state != nullptr ? &device.state->value : nullptr,
        overrides);
    dv.last_update = last_update;
    view.devices.push_back(std::move(dv));
  }
  return view;
}

std::optional<InstanceView> TopicCache::Instance(
    absl::string_view instance_id) const {
  absl::MutexLock lock(&mu_);
  auto it = instances_.find(instance_id);
  if (it == instances_.end()) return std::nullopt;
  return ViewOf(it->first, it->second);
}

std::vector<InstanceView> TopicCache::Instances() const {
  std::vector<InstanceView> out;
  absl::MutexLock lock(&mu_);
  out.reserve(instances_.size());
  for (const auto& [id, index] : instances_) out.push_back(ViewOf(id, index));
  return out;
}

size_t TopicCache::size() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

size_t TopicCache::bytes() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

int64_t TopicCache::evicted() const {
  absl::MutexLock lock(&mu_);
  return evicted_;
}

}  // namespace iot2mqtt::mqtt_bridge
