#include "services/mqtt_bridge/command_tracker.h"

#include <vector>

#include "rapidjson/document.h"

namespace iot2mqtt::mqtt_bridge {
namespace {

// The string members `cmd_id` and `id` of a response payload, when present.
std::vector<std::string> ResponseIds(absl::string_view payload) {
  std::vector<std::string> ids;
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseValidateEncodingFlag |
            rapidjson::kParseIterativeFlag>(payload.data(), payload.size());
  if (doc.HasParseError() || !doc.IsObject()) return ids;
  for (const char* name : {"cmd_id", "id"}) {
    auto it = doc.FindMember(name);
    if (it != doc.MemberEnd() && it->value.IsString()) {
      ids.emplace_back(it->value.GetString(), it->value.GetStringLength());
    }
  }
  return ids;
}

}  // namespace

CommandTracker::CommandTracker() : timer_([this] { TimerLoop(); }) {}

CommandTracker::~CommandTracker() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    wakeup_.Signal();
  }
  timer_.join();
  std::map<std::string, Pending, std::less<>> left;
  {
    absl::MutexLock lock(&mu_);
    left.swap(pending_);
    deadlines_.clear();
  }
  for (auto& [id, pending] : left) {
    Complete(std::move(pending), CommandOutcome::Kind::kCancelled, "");
  }
}

void CommandTracker::Complete(Pending pending, CommandOutcome::Kind kind,
                              std::string response) {
  CommandOutcome outcome;
  outcome.kind = kind;
  outcome.response = std::move(response);
  outcome.latency = absl::Now() - pending.registered;
  if (pending.done) pending.done(std::move(outcome));
}

std::optional<CommandTracker::Pending> CommandTracker::TakeLocked(
    const std::string& command_id) {
  auto it = pending_.find(command_id);
  if (it == pending_.end()) return std::nullopt;
  Pending pending = std::move(it->second);
  pending_.erase(it);
  deadlines_.erase({pending.deadline, command_id});
  return pending;
}

void CommandTracker::Register(const std::string& command_id,
                              const std::string& response_topic,
                              absl::Duration timeout, Done done) {
  Pending pending;
  pending.response_topic = response_topic;
  pending.registered = absl::Now();
  pending.deadline = pending.registered + timeout;
  pending.done = std::move(done);
  std::optional<Pending> replaced;
  {
    absl::MutexLock lock(&mu_);
    replaced = TakeLocked(command_id);
    const bool earliest =
        deadlines_.empty() || pending.deadline < deadlines_.begin()->first;
    deadlines_.emplace(pending.deadline, command_id);
    pending_.emplace(command_id, std::move(pending));
    if (earliest) wakeup_.Signal();
  }
  if (replaced.has_value()) {
    Complete(std::move(*replaced), CommandOutcome::Kind::kCancelled, "");
  }
}

bool CommandTracker::OnResponse(absl::string_view topic,
                                absl::string_view payload) {
  std::vector<std::string> ids = ResponseIds(payload);
  if (ids.empty()) return false;
  std::optional<Pending> completed;
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& id : ids) {
      auto it = pending_.find(id);
      if (it == pending_.end() || it->second.response_topic != topic) continue;
      completed = TakeLocked(id);
      break;
    }
  }
  if (!completed.has_value()) return false;
  Complete(std::move(*completed), CommandOutcome::Kind::kResponse,
           std::string(payload));
  return true;
}

void CommandTracker::Cancel(const std::string& command_id) {
  std::optional<Pending> cancelled;
  {
    absl::MutexLock lock(&mu_);
    cancelled = TakeLocked(command_id);
  }
  if (cancelled.has_value()) {
    Complete(std::move(*cancelled), CommandOutcome::Kind::kCancelled, "");
  }
}

size_t CommandTracker::pending() const {
  absl::MutexLock lock(&mu_);
  return pending_.size();
}

void CommandTracker::TimerLoop() {
  std::vector<Pending> expired;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      for (;;) {
        if (stopping_) return;
        absl::Time now = absl::Now();
        while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
          std::string id = std::move(deadlines_.begin()->second);
          deadlines_.erase(deadlines_.begin());
          auto it = pending_.find(id);
          if (it != pending_.end()) {
            expired.push_back(std::move(it->second));
            pending_.erase(it);
          }
        }
        if (!expired.empty()) break;
        if (deadlines_.empty()) {
          wakeup_.Wait(&mu_);
        } else {
          wakeup_.WaitWithDeadline(&mu_, deadlines_.begin()->first);
        }
      }
    }
    for (Pending& pending : expired) {
      Complete(std::move(pending), CommandOutcome::Kind::kTimeout, "");
    }
    expired.clear();
  }
}

}  // namespace iot2mqtt::mqtt_bridge
