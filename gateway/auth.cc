#include "gateway/auth.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gateway/route_table.h"

namespace iot2mqtt::gateway {

bool IsPublicRoute(absl::string_view method, absl::string_view path) {
  if (path == kLoginPath) return method == "POST" || method == "OPTIONS";
  if (path == "/api/setup/status" || path == "/api/health" ||
      path == "/metrics" || path == "/api/docs" || path == "/api/docs/" ||
      path == "/api/docs/openapi.json") {
    return true;
  }
  // Static files: everything that is neither the API nor a stream.
  return !(path == "/api" || absl::StartsWith(path, "/api/") || path == "/ws" ||
           absl::StartsWith(path, "/ws/"));
}

bool IsWebSocketUpgrade(const HttpRequest& request) {
  return absl::EqualsIgnoreCase(request.Header("upgrade"), "websocket");
}

std::string BearerTokenOf(const HttpRequest& request, bool allow_query) {
  const std::string value = request.Header("authorization");
  absl::string_view header = absl::StripAsciiWhitespace(value);
  if (header.size() > 7 && absl::StartsWithIgnoreCase(header, "bearer ")) {
    return std::string(absl::StripAsciiWhitespace(header.substr(7)));
  }
  if (!allow_query) return "";
  for (absl::string_view pair : absl::StrSplit(request.query, '&')) {
    if (!absl::ConsumePrefix(&pair, "token=")) continue;
    absl::StatusOr<std::string> value = PercentDecode(pair, true);
    if (value.ok()) return *value;
  }
  return "";
}

bool IsLoopbackAddress(absl::string_view address) {
  absl::ConsumePrefix(&address, "::ffff:");
  return address == "::1" || absl::StartsWith(address, "127.");
}

LoginLimiter::LoginLimiter(int max_failures, absl::Duration window,
                           size_t max_clients)
    : max_failures_(std::max(1, max_failures)),
      window_(window),
      max_clients_(std::max<size_t>(1, max_clients)) {}

void LoginLimiter::Prune(const std::string& address, absl::Time now) {
  auto it = failures_.find(address);
  if (it == failures_.end()) return;
  std::list<absl::Time>& times = it->second;
  while (!times.empty() && times.front() + window_ <= now) times.pop_front();
  if (times.empty()) failures_.erase(it);
}

absl::Duration LoginLimiter::RetryAfter(const std::string& address,
                                        absl::Time now) {
  absl::MutexLock lock(&mu_);
  Prune(address, now);
  auto it = failures_.find(address);
  if (it == failures_.end() ||
      static_cast<int>(it->second.size()) < max_failures_) {
    return absl::ZeroDuration();
  }
  return it->second.front() + window_ - now;
}

void LoginLimiter::RecordFailure(const std::string& address, absl::Time now) {
  absl::MutexLock lock(&mu_);
  Prune(address, now);
  if (failures_.count(address) == 0 && failures_.size() >= max_clients_) {
    // Forget the address whose newest failure is oldest.
    auto stalest = failures_.begin();
    for (auto it = failures_.begin(); it != failures_.end(); ++it) {
      if (it->second.back() < stalest->second.back()) stalest = it;
    }
    failures_.erase(stalest);
  }
  std::list<absl::Time>& times = failures_[address];
  times.push_back(now);
  while (static_cast<int>(times.size()) > max_failures_) times.pop_front();
}

void LoginLimiter::RecordSuccess(const std::string& address) {
  absl::MutexLock lock(&mu_);
  failures_.erase(address);
}

std::optional<Principal> TokenCache::Lookup(const std::string& token,
                                            absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(token);
  if (it == entries_.end()) return std::nullopt;
  if (it->second.expires_at <= now) {
    order_.erase(it->second.position);
    entries_.erase(it);
    return std::nullopt;
  }
  order_.splice(order_.begin(), order_, it->second.position);
  return Principal{it->second.subject, it->second.expires_at};
}

void TokenCache::Insert(const std::string& token, std::string subject,
                        absl::Time expires_at) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(token);
  if (it != entries_.end()) {
    order_.erase(it->second.position);
    entries_.erase(it);
  }
  order_.push_front(token);
  entries_[token] = Entry{std::move(subject), expires_at, order_.begin()};
  while (entries_.size() > capacity_) {
    entries_.erase(order_.back());
    order_.pop_back();
  }
}

}  // namespace iot2mqtt::gateway
