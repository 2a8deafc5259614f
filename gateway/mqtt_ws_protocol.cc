#include "gateway/mqtt_ws_protocol.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gateway/transcoder.h"
#include "iot2mqtt/sdk/json.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "rapidjson/document.h"
#include "services/common/status.h"

namespace iot2mqtt::gateway::mqtt_ws {
namespace {

constexpr size_t kMaxTopicBytes = 65535;

absl::Status Invalid(const char* reason, absl::string_view message) {
  return common::WithReason(absl::InvalidArgumentError(message), reason);
}

absl::Status CheckTopicText(absl::string_view text, const char* reason,
                            absl::string_view what) {
  if (text.empty()) return Invalid(reason, absl::StrCat(what, " is empty"));
  if (text.size() > kMaxTopicBytes) {
    return Invalid(reason, absl::StrCat(what, " is longer than 65535 bytes"));
  }
  if (text.find('\0') != absl::string_view::npos || !IsValidUtf8(text)) {
    return Invalid(reason,
                   absl::StrCat(what, " must be UTF-8 without NUL characters"));
  }
  return absl::OkStatus();
}

// The JSON value `json` (one member's text) parsed.
bool ParseValue(const std::string& json, rapidjson::Document* doc) {
  doc->Parse(json.c_str(), json.size());
  return !doc->HasParseError();
}

std::string ValueOrNull(absl::string_view value) {
  return value.empty() ? "null" : std::string(value);
}

}  // namespace

absl::Status ValidateTopicFilter(absl::string_view filter) {
  if (absl::Status s =
          CheckTopicText(filter, kInvalidTopicFilter, "the topic filter");
      !s.ok()) {
    return s;
  }
  std::vector<absl::string_view> levels = absl::StrSplit(filter, '/');
  for (size_t i = 0; i < levels.size(); ++i) {
    absl::string_view level = levels[i];
    if (level.find('#') != absl::string_view::npos &&
        (level != "#" || i + 1 != levels.size())) {
      return Invalid(kInvalidTopicFilter,
                     "'#' must be a whole level and the last one");
    }
    if (level.find('+') != absl::string_view::npos && level != "+") {
      return Invalid(kInvalidTopicFilter, "'+' must be a whole level");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTopicName(absl::string_view topic) {
  if (absl::Status s = CheckTopicText(topic, kInvalidTopic, "the topic");
      !s.ok()) {
    return s;
  }
  if (topic.find_first_of("+#") != absl::string_view::npos) {
    return Invalid(kInvalidTopic,
                   "a topic to publish to must not contain '+' or '#'");
  }
  return absl::OkStatus();
}

bool TopicMatches(absl::string_view filter, absl::string_view topic) {
  if (!topic.empty() && topic[0] == '$' && !filter.empty() &&
      (filter[0] == '+' || filter[0] == '#')) {
    return false;
  }
  std::vector<absl::string_view> f = absl::StrSplit(filter, '/');
  std::vector<absl::string_view> t = absl::StrSplit(topic, '/');
  size_t i = 0;
  for (; i < f.size(); ++i) {
    if (f[i] == "#") return true;
    if (i >= t.size()) return false;
    if (f[i] == "+") continue;
    if (f[i] != t[i]) return false;
  }
  return i == t.size();
}

absl::StatusOr<ClientMessage> ParseClientMessage(absl::string_view text) {
  absl::StatusOr<std::vector<sdk::JsonMember>> members =
      sdk::SplitJsonObject(text);
  if (!members.ok()) {
    return Invalid(kInvalidJson,
                   absl::StrCat("the message is not a JSON object: ",
                                members.status().message()));
  }
  const std::string* action = nullptr;
  const std::string* topic = nullptr;
  const std::string* payload = nullptr;
  const std::string* qos = nullptr;
  const std::string* retain = nullptr;
  for (const sdk::JsonMember& member : *members) {
    if (member.key == "action") action = &member.value;
    if (member.key == "topic") topic = &member.value;
    if (member.key == "payload") payload = &member.value;
    if (member.key == "qos") qos = &member.value;
    if (member.key == "retain") retain = &member.value;
  }
  ClientMessage message;
  rapidjson::Document doc;
  std::string name;
  if (action != nullptr && ParseValue(*action, &doc) && doc.IsString()) {
    name.assign(doc.GetString(), doc.GetStringLength());
  }
  if (name == "subscribe") {
    message.action = Action::kSubscribe;
  } else if (name == "unsubscribe") {
    message.action = Action::kUnsubscribe;
  } else if (name == "publish") {
    message.action = Action::kPublish;
  } else {
    return Invalid(kUnknownAction,
                   "\"action\" must be \"subscribe\", \"unsubscribe\" or "
                   "\"publish\"");
  }
  if (topic == nullptr || !ParseValue(*topic, &doc) || !doc.IsString() ||
      doc.GetStringLength() == 0) {
    return Invalid(kMissingTopic, "\"topic\" must be a non-empty string");
  }
  message.topic.assign(doc.GetString(), doc.GetStringLength());
  if (message.action != Action::kPublish) {
    if (absl::Status s = ValidateTopicFilter(message.topic); !s.ok()) return s;
    return message;
  }
  if (absl::Status s = ValidateTopicName(message.topic); !s.ok()) return s;
  if (payload != nullptr) message.payload = *payload;
  if (qos != nullptr) {
    if (!ParseValue(*qos, &doc) || !doc.IsInt() || doc.GetInt() < 0 ||
        doc.GetInt() > 2) {
      return Invalid(kInvalidQos, "\"qos\" must be 0, 1 or 2");
    }
    message.qos = doc.GetInt();
  }
  if (retain != nullptr) {
    if (!ParseValue(*retain, &doc) || !doc.IsBool()) {
      return Invalid(kInvalidRetain, "\"retain\" must be true or false");
    }
    message.retain = doc.GetBool();
  }
  return message;
}

std::string TopicsMessage(const std::string& entries_json_array) {
  return sdk::JsonObjectBuilder()
      .Set("type", "topics")
      .SetRaw("data", entries_json_array)
      .Build();
}

std::string TopicEntry(absl::string_view topic, absl::string_view value,
                       absl::string_view timestamp, bool retained, int qos) {
  return sdk::JsonObjectBuilder()
      .Set("topic", topic)
      .SetRaw("value", ValueOrNull(value))
      .Set("timestamp", timestamp)
      .Set("retained", retained)
      .Set("qos", qos)
      .Build();
}

std::string UpdateMessage(absl::string_view topic, absl::string_view value,
                          absl::string_view timestamp, bool retained, int qos) {
  return sdk::JsonObjectBuilder()
      .Set("type", "update")
      .Set("topic", topic)
      .SetRaw("value", ValueOrNull(value))
      .Set("timestamp", timestamp)
      .Set("retained", retained)
      .Set("qos", qos)
      .Build();
}

std::string DeleteMessage(absl::string_view topic) {
  return sdk::JsonObjectBuilder()
      .Set("type", "delete")
      .Set("topic", topic)
      .Build();
}

std::string SkippedMessage(int64_t count) {
  return sdk::JsonObjectBuilder()
      .Set("type", "skipped")
      .Set("count", count)
      .Build();
}

std::string AckMessage(absl::string_view type, absl::string_view topic) {
  return sdk::JsonObjectBuilder().Set("type", type).Set("topic", topic).Build();
}

std::string ErrorMessage(absl::string_view code, absl::string_view message,
                         absl::string_view topic) {
  sdk::JsonObjectBuilder builder;
  builder.Set("type", "error").Set("code", code).Set("message", message);
  if (!topic.empty()) builder.Set("topic", topic);
  return builder.Build();
}

uint64_t StreamOrder::Add(std::vector<std::string> filters) {
  uint64_t id = next_id_++;
  streams_.push_back({id, std::move(filters)});
  return id;
}

void StreamOrder::Remove(uint64_t id) {
  for (auto it = streams_.begin(); it != streams_.end(); ++it) {
    if (it->id == id) {
      streams_.erase(it);
      return;
    }
  }
}

bool StreamOrder::ShouldDeliver(uint64_t id, absl::string_view topic) const {
  for (const Stream& stream : streams_) {
    if (stream.id == id) return true;  // No earlier one covers it.
    for (const std::string& filter : stream.filters) {
      if (TopicMatches(filter, topic)) return false;
    }
  }
  return false;  // Not live (any more).
}

}  // namespace iot2mqtt::gateway::mqtt_ws
