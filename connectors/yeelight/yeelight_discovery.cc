#include "connectors/yeelight/yeelight_discovery.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "iot2mqtt/sdk/log.h"

namespace iot2mqtt::yeelight {
namespace {

class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

absl::StatusOr<std::vector<DiscoveredBulb>> Discover(
    const DiscoveryOptions& options) {
  absl::StatusOr<HostPort> target = ParseHostPort(options.address, 1982);
  if (!target.ok()) return target.status();
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(target->port));
  inet_pton(AF_INET, target->host.c_str(), &address.sin_addr);

  ScopedFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    return absl::UnavailableError(
        absl::StrCat("socket: ", std::strerror(errno)));
  }
  if (IN_MULTICAST(ntohl(address.sin_addr.s_addr))) {
    unsigned char ttl = 2;
    setsockopt(fd.get(), IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl));
  }
  const std::string search = BuildSearchRequest(options.address);
  auto send_search = [&]() -> absl::Status {
    if (sendto(fd.get(), search.data(), search.size(), 0,
               reinterpret_cast<const sockaddr*>(&address),
               sizeof(address)) < 0) {
      return absl::UnavailableError(absl::StrCat(
          "sending M-SEARCH to ", options.address, ": ", std::strerror(errno)));
    }
    return absl::OkStatus();
  };
  if (absl::Status status = send_search(); !status.ok()) return status;

  const absl::Time start = absl::Now();
  const absl::Time deadline = start + options.timeout;
  // A second search against datagram loss, a little later.
  absl::Time resend_at =
      start + std::min(options.timeout / 3, absl::Milliseconds(500));
  bool resent = false;
  std::vector<DiscoveredBulb> found;
  std::set<std::string> seen;
  while (true) {
    absl::Time now = absl::Now();
    if (now >= deadline) break;
    if (!resent && now >= resend_at) {
      resent = true;
      if (absl::Status status = send_search(); !status.ok()) {
        IOT2MQTT_LOG(WARNING).With("error", status.message())
            << "second M-SEARCH failed";
      }
    }
    absl::Time wake = resent ? deadline : std::min(deadline, resend_at);
    int64_t wait_ms =
        std::max<int64_t>(0, absl::ToInt64Milliseconds(absl::Ceil(
                                 wake - now, absl::Milliseconds(1))));
    pollfd pfd = {fd.get(), POLLIN, 0};
    int ready = poll(&pfd, 1, static_cast<int>(wait_ms));
    if (ready <= 0) continue;
    char buffer[2048];
    sockaddr_in from{};
    socklen_t from_len = sizeof(from);
    ssize_t n = recvfrom(fd.get(), buffer, sizeof(buffer), 0,
                         reinterpret_cast<sockaddr*>(&from), &from_len);
    if (n <= 0) continue;
    absl::StatusOr<DiscoveredBulb> bulb =
        ParseSearchResponse(absl::string_view(buffer, static_cast<size_t>(n)));
    if (!bulb.ok()) {
      char from_text[INET_ADDRSTRLEN] = {};
      inet_ntop(AF_INET, &from.sin_addr, from_text, sizeof(from_text));
      IOT2MQTT_LOG(WARNING)
              .With("from", from_text)
              .With("error", bulb.status().message())
          << "skipping unparsable discovery answer";
      continue;
    }
    if (!seen.insert(bulb->id).second) continue;
    found.push_back(*std::move(bulb));
    if (options.max_results > 0 && found.size() >= options.max_results) break;
  }
  return found;
}

}  // namespace iot2mqtt::yeelight
