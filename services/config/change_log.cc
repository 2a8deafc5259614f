#include "services/config/change_log.h"

#include <random>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace iot2mqtt::config {
namespace {

std::string RandomEpoch() {
  std::random_device device;
  return absl::StrFormat("%08x%08x", device(), device());
}

}  // namespace

ChangeLog::ChangeLog(size_t capacity) : ChangeLog(capacity, RandomEpoch()) {}

ChangeLog::ChangeLog(size_t capacity, std::string epoch)
    : capacity_(capacity < 1 ? 1 : capacity), epoch_(std::move(epoch)) {}

uint64_t ChangeLog::Append(Change change) {
  uint64_t revision;
  {
    absl::MutexLock lock(&mu_);
    revision = next_revision_++;
    change.revision = revision;
    change.time = absl::Now();
    change.resync = false;
    changes_.push_back(std::move(change));
    while (changes_.size() > capacity_) changes_.pop_front();
  }
  absl::MutexLock lock(&listeners_mu_);
  for (auto& [id, listener] : listeners_) listener();
  return revision;
}

std::string ChangeLog::CursorOf(uint64_t revision) const {
  return absl::StrCat(epoch_, ".", revision);
}

uint64_t ChangeLog::latest() const {
  absl::MutexLock lock(&mu_);
  return next_revision_ - 1;
}

ChangeLog::Start ChangeLog::StartAfter(absl::string_view cursor) const {
  absl::MutexLock lock(&mu_);
  Start start;
  start.position = next_revision_ - 1;
  if (cursor.empty()) return start;
  std::vector<absl::string_view> parts = absl::StrSplit(cursor, '.');
  uint64_t revision = 0;
  if (parts.size() != 2 || parts[0] != epoch_ ||
      !absl::SimpleAtoi(parts[1], &revision) || revision > start.position) {
    start.resync = true;
    return start;
  }
  // Everything after `revision` must still be here.
  uint64_t oldest_kept =
      changes_.empty() ? next_revision_ : changes_.front().revision;
  if (revision + 1 < oldest_kept) {
    start.resync = true;
    return start;
  }
  start.position = revision;
  return start;
}

Change ChangeLog::Marker(uint64_t revision) const {
  Change marker;
  marker.revision = revision;
  marker.time = absl::Now();
  marker.resync = true;
  return marker;
}

std::vector<Change> ChangeLog::Read(uint64_t* position, size_t max) const {
  absl::MutexLock lock(&mu_);
  std::vector<Change> out;
  uint64_t newest = next_revision_ - 1;
  if (*position >= newest) return out;
  uint64_t oldest_kept = changes_.front().revision;
  if (*position + 1 < oldest_kept) {
    *position = newest;
    out.push_back(Marker(newest));
    return out;
  }
  size_t index = static_cast<size_t>(*position + 1 - oldest_kept);
  for (; index < changes_.size() && out.size() < max; ++index) {
    out.push_back(changes_[index]);
    *position = changes_[index].revision;
  }
  return out;
}

int ChangeLog::AddListener(std::function<void()> listener) {
  absl::MutexLock lock(&listeners_mu_);
  int id = next_listener_++;
  listeners_[id] = std::move(listener);
  return id;
}

void ChangeLog::Close() {
  closed_.store(true);
  absl::MutexLock lock(&listeners_mu_);
  for (auto& [id, listener] : listeners_) listener();
}

void ChangeLog::RemoveListener(int id) {
  absl::MutexLock lock(&listeners_mu_);
  listeners_.erase(id);
}

const char* KindName(Change::Kind kind) {
  switch (kind) {
    case Change::Kind::kInstance:
      return "instance";
    case Change::Kind::kSettings:
      return "settings";
    case Change::Kind::kDeviceConfig:
      return "device_config";
    case Change::Kind::kCatalogue:
      return "catalogue";
    case Change::Kind::kDiscoveredDevice:
      return "discovered_device";
  }
  return "unknown";
}

const char* ActionName(Change::Action action) {
  switch (action) {
    case Change::Action::kCreated:
      return "created";
    case Change::Action::kUpdated:
      return "updated";
    case Change::Action::kDeleted:
      return "deleted";
  }
  return "unknown";
}

}  // namespace iot2mqtt::config
