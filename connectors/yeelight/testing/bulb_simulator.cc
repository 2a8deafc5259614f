#include "connectors/yeelight/testing/bulb_simulator.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "rapidjson/document.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"

namespace iot2mqtt::yeelight::testing {
namespace {

std::string Errno(absl::string_view what) {
  return absl::StrCat(what, ": ", std::strerror(errno));
}

void Drain(int fd) {
  char buffer[64];
  while (read(fd, buffer, sizeof(buffer)) > 0) {
  }
}

sockaddr_in Loopback(int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

int BoundPort(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return ntohs(address.sin_port);
}

// Properties whose values bulbs send as numbers in notifications.
bool NumericProperty(const std::string& name) {
  return name != "power" && name != "name" && name != "bg_power";
}

std::string ErrorLine(int64_t id, int code, absl::string_view message) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.StartObject();
  writer.Key("id");
  writer.Int64(id);
  writer.Key("error");
  writer.StartObject();
  writer.Key("code");
  writer.Int(code);
  writer.Key("message");
  writer.String(message.data(),
                static_cast<rapidjson::SizeType>(message.size()));
  writer.EndObject();
  writer.EndObject();
  return absl::StrCat(absl::string_view(buffer.GetString(), buffer.GetSize()),
                      "\r\n");
}

std::string ResultLine(int64_t id, const std::vector<std::string>& values) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.StartObject();
  writer.Key("id");
  writer.Int64(id);
  writer.Key("result");
  writer.StartArray();
  for (const std::string& value : values) {
    writer.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
  }
  writer.EndArray();
  writer.EndObject();
  return absl::StrCat(absl::string_view(buffer.GetString(), buffer.GetSize()),
                      "\r\n");
}

std::string NotificationLine(const Properties& changed) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.StartObject();
  writer.Key("method");
  writer.String("props");
  writer.Key("params");
  writer.StartObject();
  for (const auto& [name, value] : changed) {
    writer.Key(name.c_str());
    int64_t number = 0;
    if (NumericProperty(name) && absl::SimpleAtoi(value, &number)) {
      writer.Int64(number);
    } else {
      writer.String(value.c_str());
    }
  }
  writer.EndObject();
  writer.EndObject();
  return absl::StrCat(absl::string_view(buffer.GetString(), buffer.GetSize()),
                      "\r\n");
}

Properties DefaultProperties(const SimulatedBulb& config) {
  Properties state = {
      {"power", "on"},     {"bright", "100"},    {"ct", "4000"},
      {"rgb", "16711680"}, {"hue", "100"},       {"sat", "35"},
      {"color_mode", "2"}, {"flowing", "0"},     {"delayoff", "0"},
      {"music_on", "0"},   {"name", config.name}};
  if (config.background) {
    state.insert({{"bg_power", "off"},
                  {"bg_bright", "50"},
                  {"bg_ct", "3000"},
                  {"bg_rgb", "255"},
                  {"bg_hue", "240"},
                  {"bg_sat", "100"},
                  {"bg_lmode", "2"},
                  {"bg_flowing", "0"}});
  }
  for (const auto& [name, value] : config.initial) state[name] = value;
  return state;
}

const char* const kSupport =
    "get_prop set_default set_power toggle set_bright start_cf stop_cf "
    "set_scene cron_add cron_get cron_del set_ct_abx set_rgb set_hsv "
    "set_adjust adjust_bright adjust_ct adjust_color set_music set_name";

struct Outcome {
  bool ok = true;
  int code = 0;
  std::string message;
  std::vector<std::string> result = {"ok"};
  Properties changed;

  static Outcome Error(int code, std::string message) {
    Outcome outcome;
    outcome.ok = false;
    outcome.code = code;
    outcome.message = std::move(message);
    return outcome;
  }
};

}  // namespace

struct BulbSimulator::Bulb {
  SimulatedBulb config;
  int listen_fd = -1;
  int port = 0;
  Properties state;
  absl::Duration delay;
  bool silent = false;
  bool offline = false;
  bool garbage = false;
  std::vector<std::string> methods;
};

struct BulbSimulator::Connection {
  int64_t id = 0;
  int fd = -1;
  Bulb* bulb = nullptr;
  LineSplitter splitter;
  absl::Time last_due = absl::InfinitePast();
};

struct BulbSimulator::Outgoing {
  absl::Time due;
  int64_t seq = 0;
  int64_t connection_id = 0;
  std::string data;
};

absl::StatusOr<std::unique_ptr<BulbSimulator>> BulbSimulator::Start(
    size_t count) {
  SimulatorOptions options;
  options.bulbs.resize(count);
  return Start(std::move(options));
}

absl::StatusOr<std::unique_ptr<BulbSimulator>> BulbSimulator::Start(
    SimulatorOptions options) {
  std::unique_ptr<BulbSimulator> sim(new BulbSimulator());
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::InternalError(Errno("pipe2"));
  }
  sim->wake_read_ = fds[0];
  sim->wake_write_ = fds[1];
  for (size_t i = 0; i < options.bulbs.size(); ++i) {
    auto bulb = std::make_unique<Bulb>();
    bulb->config = options.bulbs[i];
    if (bulb->config.id.empty()) {
      bulb->config.id = absl::StrFormat("0x%016x", i + 1);
    }
    if (bulb->config.name.empty()) {
      bulb->config.name = absl::StrCat("bulb", i + 1);
    }
    bulb->port = bulb->config.port;
    bulb->state = DefaultProperties(bulb->config);
    if (absl::Status status = sim->Listen(bulb.get()); !status.ok()) {
      return status;
    }
    sim->bulbs_.push_back(std::move(bulb));
  }
  if (options.discovery) {
    sim->udp_fd_ =
        socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (sim->udp_fd_ < 0) return absl::InternalError(Errno("socket"));
    sockaddr_in address = Loopback(options.discovery_port);
    if (bind(sim->udp_fd_, reinterpret_cast<sockaddr*>(&address),
             sizeof(address)) != 0) {
      return absl::UnavailableError(Errno(
          absl::StrCat("bind discovery 127.0.0.1:", options.discovery_port)));
    }
    sim->discovery_port_ = BoundPort(sim->udp_fd_);
  }
  BulbSimulator* raw = sim.get();
  sim->thread_ = std::thread([raw] { raw->Loop(); });
  return sim;
}

BulbSimulator::~BulbSimulator() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  Wake();
  if (thread_.joinable()) thread_.join();
  absl::MutexLock lock(&mu_);
  for (auto& connection : connections_) close(connection->fd);
  connections_.clear();
  for (auto& bulb : bulbs_) {
    if (bulb->listen_fd >= 0) close(bulb->listen_fd);
  }
  if (udp_fd_ >= 0) close(udp_fd_);
  if (wake_read_ >= 0) close(wake_read_);
  if (wake_write_ >= 0) close(wake_write_);
}

absl::Status BulbSimulator::Listen(Bulb* bulb) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return absl::InternalError(Errno("socket"));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in address = Loopback(bulb->port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(fd, 16) != 0) {
    std::string error = Errno(absl::StrCat("listen 127.0.0.1:", bulb->port));
    close(fd);
    return absl::UnavailableError(error);
  }
  bulb->listen_fd = fd;
  bulb->port = BoundPort(fd);
  return absl::OkStatus();
}

void BulbSimulator::Wake() {
  char byte = 1;
  ssize_t ignored = write(wake_write_, &byte, 1);
  (void)ignored;
}

void BulbSimulator::RunOnLoop(std::function<void()> task) {
  bool done = false;
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  tasks_.push_back([&task, &done] {
    task();
    done = true;
  });
  Wake();
  mu_.Await(absl::Condition(&done));
}

int BulbSimulator::port(size_t bulb) const {
  absl::MutexLock lock(&mu_);
  return bulbs_.at(bulb)->port;
}

const std::string& BulbSimulator::id(size_t bulb) const {
  return bulbs_.at(bulb)->config.id;
}

std::string BulbSimulator::discovery_address() const {
  return absl::StrCat("127.0.0.1:", discovery_port_);
}

Properties BulbSimulator::State(size_t bulb) const {
  absl::MutexLock lock(&mu_);
  return bulbs_.at(bulb)->state;
}

std::string BulbSimulator::Property(size_t bulb,
                                    const std::string& name) const {
  absl::MutexLock lock(&mu_);
  const Properties& state = bulbs_.at(bulb)->state;
  auto it = state.find(name);
  return it == state.end() ? std::string() : it->second;
}

void BulbSimulator::SetProperties(size_t index, const Properties& changes) {
  Bulb* bulb = bulbs_.at(index).get();
  RunOnLoop([this, bulb, &changes]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    for (const auto& [name, value] : changes) bulb->state[name] = value;
    Notify(bulb, changes, absl::Now());
  });
}

void BulbSimulator::DropConnections(size_t index) {
  Bulb* bulb = bulbs_.at(index).get();
  RunOnLoop([this, bulb]() ABSL_NO_THREAD_SAFETY_ANALYSIS { CloseAll(bulb); });
}

void BulbSimulator::SetReplyDelay(size_t index, absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  bulbs_.at(index)->delay = delay;
}

void BulbSimulator::SetSilent(size_t index, bool silent) {
  absl::MutexLock lock(&mu_);
  bulbs_.at(index)->silent = silent;
}

void BulbSimulator::SetGarbageBeforeReplies(size_t index, bool garbage) {
  absl::MutexLock lock(&mu_);
  bulbs_.at(index)->garbage = garbage;
}

void BulbSimulator::SetOffline(size_t index, bool offline) {
  Bulb* bulb = bulbs_.at(index).get();
  RunOnLoop([this, bulb, offline]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (offline == bulb->offline) return;
    bulb->offline = offline;
    if (offline) {
      CloseAll(bulb);
      close(bulb->listen_fd);
      bulb->listen_fd = -1;
      return;
    }
    // Back on the same port; retried briefly in case the port lingers.
    for (int attempt = 0; attempt < 50; ++attempt) {
      if (Listen(bulb).ok()) return;
      absl::SleepFor(absl::Milliseconds(20));
    }
    std::fprintf(stderr, "simulator: cannot listen on port %d again\n",
                 bulb->port);
  });
}

void BulbSimulator::SendRaw(size_t index, const std::string& bytes) {
  Bulb* bulb = bulbs_.at(index).get();
  RunOnLoop([this, bulb, &bytes]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    for (auto& connection : connections_) {
      if (connection->bulb == bulb) {
        Queue(connection.get(), bytes, absl::Now());
      }
    }
    FlushDue();
  });
}

size_t BulbSimulator::connection_count(size_t index) const {
  absl::MutexLock lock(&mu_);
  const Bulb* bulb = bulbs_.at(index).get();
  return static_cast<size_t>(std::count_if(
      connections_.begin(), connections_.end(),
      [bulb](const auto& connection) { return connection->bulb == bulb; }));
}

std::vector<std::string> BulbSimulator::methods(size_t index) const {
  absl::MutexLock lock(&mu_);
  return bulbs_.at(index)->methods;
}

int64_t BulbSimulator::search_count() const {
  absl::MutexLock lock(&mu_);
  return searches_;
}

bool BulbSimulator::WaitForConnections(size_t index, size_t count,
                                       absl::Duration timeout) const {
  const Bulb* bulb = bulbs_.at(index).get();
  auto enough = [this, bulb, count]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return static_cast<size_t>(std::count_if(connections_.begin(),
                                             connections_.end(),
                                             [bulb](const auto& connection) {
                                               return connection->bulb == bulb;
                                             })) >= count;
  };
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

void BulbSimulator::Queue(Connection* connection, std::string data,
                          absl::Time due) {
  // Keep each connection's messages in order even when the delay changes.
  due = std::max(due, connection->last_due);
  connection->last_due = due;
  outgoing_.push_back(
      Outgoing{due, ++outgoing_seq_, connection->id, std::move(data)});
}

void BulbSimulator::Notify(Bulb* bulb, const Properties& changed,
                           absl::Time due) {
  if (changed.empty()) return;
  std::string line = NotificationLine(changed);
  for (auto& connection : connections_) {
    if (connection->bulb == bulb) Queue(connection.get(), line, due);
  }
}

void BulbSimulator::CloseConnection(Connection* connection) {
  int64_t id = connection->id;
  close(connection->fd);
  outgoing_.erase(std::remove_if(outgoing_.begin(), outgoing_.end(),
                                 [id](const Outgoing& outgoing) {
                                   return outgoing.connection_id == id;
                                 }),
                  outgoing_.end());
  connections_.erase(
      std::remove_if(connections_.begin(), connections_.end(),
                     [id](const auto& c) { return c->id == id; }),
      connections_.end());
}

void BulbSimulator::CloseAll(Bulb* bulb) {
  std::vector<Connection*> doomed;
  for (auto& connection : connections_) {
    if (connection->bulb == bulb) doomed.push_back(connection.get());
  }
  for (Connection* connection : doomed) CloseConnection(connection);
}

void BulbSimulator::FlushDue() {
  const absl::Time now = absl::Now();
  std::stable_sort(outgoing_.begin(), outgoing_.end(),
                   [](const Outgoing& a, const Outgoing& b) {
                     return a.due != b.due ? a.due < b.due : a.seq < b.seq;
                   });
  std::vector<int64_t> broken;
  size_t sent = 0;
  for (; sent < outgoing_.size() && outgoing_[sent].due <= now; ++sent) {
    const Outgoing& outgoing = outgoing_[sent];
    for (auto& connection : connections_) {
      if (connection->id != outgoing.connection_id) continue;
      // Small lines to a loopback peer: a short or failed send means the
      // client is gone or stuck; drop it.
      ssize_t n = send(connection->fd, outgoing.data.data(),
                       outgoing.data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n != static_cast<ssize_t>(outgoing.data.size())) {
        broken.push_back(connection->id);
      }
    }
  }
  outgoing_.erase(outgoing_.begin(), outgoing_.begin() + sent);
  for (int64_t id : broken) {
    for (auto& connection : connections_) {
      if (connection->id == id) {
        CloseConnection(connection.get());
        break;
      }
    }
  }
}

void BulbSimulator::Accept(Bulb* bulb) {
  while (true) {
    int fd = accept4(bulb->listen_fd, nullptr, nullptr,
                     SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    auto connection = std::make_unique<Connection>();
    connection->id = next_connection_id_++;
    connection->fd = fd;
    connection->bulb = bulb;
    connections_.push_back(std::move(connection));
  }
}

void BulbSimulator::Read(Connection* connection) {
  char buffer[4096];
  ssize_t n = recv(connection->fd, buffer, sizeof(buffer), 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    return;
  }
  if (n <= 0) {
    CloseConnection(connection);
    return;
  }
  connection->splitter.Append(
      absl::string_view(buffer, static_cast<size_t>(n)));
  std::string line;
  while (connection->splitter.Next(&line)) HandleRequest(connection, line);
}

void BulbSimulator::HandleRequest(Connection* connection,
                                  const std::string& line) {
  Bulb* bulb = connection->bulb;
  rapidjson::Document doc;
  doc.Parse(line.c_str(), line.size());
  int64_t id = 0;
  std::string method;
  if (!doc.HasParseError() && doc.IsObject()) {
    auto id_member = doc.FindMember("id");
    if (id_member != doc.MemberEnd() && id_member->value.IsInt64()) {
      id = id_member->value.GetInt64();
    }
    auto method_member = doc.FindMember("method");
    if (method_member != doc.MemberEnd() && method_member->value.IsString()) {
      method = method_member->value.GetString();
    }
  }
  bulb->methods.push_back(method.empty() ? "<invalid>" : method);
  if (bulb->silent) return;
  const absl::Time due = absl::Now() + bulb->delay;
  if (bulb->garbage) {
    Queue(connection, "{\"id\": oops, this is not JSON\r\n", due);
  }
  static const rapidjson::Value kEmpty(rapidjson::kArrayType);
  const rapidjson::Value* params_ptr = &kEmpty;
  if (!method.empty()) {
    auto params_member = doc.FindMember("params");
    if (params_member != doc.MemberEnd() && params_member->value.IsArray()) {
      params_ptr = &params_member->value;
    }
  }
  const rapidjson::Value& params = *params_ptr;

  auto int_at = [&params](rapidjson::SizeType i, int64_t* out) {
    if (i >= params.Size() || !params[i].IsInt64()) return false;
    *out = params[i].GetInt64();
    return true;
  };
  auto string_at = [&params](rapidjson::SizeType i, std::string* out) {
    if (i >= params.Size() || !params[i].IsString()) return false;
    *out = params[i].GetString();
    return true;
  };
  // Optional effect and duration from position `from`.
  auto transition_ok = [&](rapidjson::SizeType from) {
    if (params.Size() <= from) return true;
    std::string effect;
    if (!string_at(from, &effect) ||
        (effect != "smooth" && effect != "sudden")) {
      return false;
    }
    if (params.Size() <= from + 1) return true;
    int64_t duration = 0;
    if (!int_at(from + 1, &duration)) return false;
    return effect == "sudden" || duration >= kMinDurationMs;
  };

  Outcome outcome;
  std::string name = method;
  std::string prefix;
  if (absl::StartsWith(name, "bg_")) {
    if (!bulb->config.background) {
      outcome = Outcome::Error(-1, "method not supported");
      name.clear();
    } else {
      prefix = "bg_";
      name = name.substr(3);
    }
  }
  Properties& state = bulb->state;
  const std::string power_key = prefix + "power";
  const std::string mode_key = prefix.empty() ? "color_mode" : "bg_lmode";
  const bool is_on = state[power_key] == "on";
  auto invalid = [] { return Outcome::Error(-1, "invalid params"); };
  auto off_error = [] { return Outcome::Error(-5000, "general error"); };

  if (method.empty()) {
    outcome = Outcome::Error(-1, "invalid command");
  } else if (name.empty()) {
    // Unsupported bg_ method, already answered.
  } else if (name == "get_prop" && prefix.empty()) {
    outcome.result.clear();
    for (rapidjson::SizeType i = 0; i < params.Size(); ++i) {
      std::string property;
      if (!string_at(i, &property)) {
        outcome = invalid();
        break;
      }
      auto it = state.find(property);
      outcome.result.push_back(it == state.end() ? "" : it->second);
    }
  } else if (name == "set_power") {
    std::string value;
    if (!string_at(0, &value) || (value != "on" && value != "off") ||
        !transition_ok(1)) {
      outcome = invalid();
    } else {
      outcome.changed[power_key] = value;
    }
  } else if (name == "toggle") {
    outcome.changed[power_key] = is_on ? "off" : "on";
  } else if (name == "set_bright") {
    int64_t bright = 0;
    if (!int_at(0, &bright) || bright < 1 || bright > 100 ||
        !transition_ok(1)) {
      outcome = invalid();
    } else if (!is_on) {
      outcome = off_error();
    } else {
      outcome.changed[prefix + "bright"] = absl::StrCat(bright);
    }
  } else if (name == "set_ct_abx") {
    int64_t ct = 0;
    if (!int_at(0, &ct) || ct < 1700 || ct > 6500 || !transition_ok(1)) {
      outcome = invalid();
    } else if (!is_on) {
      outcome = off_error();
    } else {
      outcome.changed[prefix + "ct"] = absl::StrCat(ct);
      outcome.changed[mode_key] = "2";
    }
  } else if (name == "set_rgb") {
    int64_t rgb = 0;
    if (!int_at(0, &rgb) || rgb < 0 || rgb > 0xFFFFFF || !transition_ok(1)) {
      outcome = invalid();
    } else if (!is_on) {
      outcome = off_error();
    } else {
      outcome.changed[prefix + "rgb"] = absl::StrCat(rgb);
      outcome.changed[mode_key] = "1";
    }
  } else if (name == "set_hsv") {
    int64_t hue = 0;
    int64_t sat = 0;
    if (!int_at(0, &hue) || !int_at(1, &sat) || hue < 0 || hue > 359 ||
        sat < 0 || sat > 100 || !transition_ok(2)) {
      outcome = invalid();
    } else if (!is_on) {
      outcome = off_error();
    } else {
      outcome.changed[prefix + "hue"] = absl::StrCat(hue);
      outcome.changed[prefix + "sat"] = absl::StrCat(sat);
      outcome.changed[mode_key] = "3";
    }
  } else if (name == "set_name" && prefix.empty()) {
    std::string value;
    if (!string_at(0, &value)) {
      outcome = invalid();
    } else {
      outcome.changed["name"] = value;
    }
  } else if (name == "stop_cf") {
    outcome.changed[prefix + "flowing"] = "0";
  } else {
    outcome = Outcome::Error(-1, "method not supported");
  }

  if (!outcome.ok) {
    Queue(connection, ErrorLine(id, outcome.code, outcome.message), due);
    return;
  }
  for (const auto& [key, value] : outcome.changed) state[key] = value;
  Queue(connection, ResultLine(id, outcome.result), due);
  Notify(bulb, outcome.changed, due);
}

void BulbSimulator::AnswerSearch() {
  char buffer[2048];
  sockaddr_in from{};
  socklen_t from_len = sizeof(from);
  ssize_t n = recvfrom(udp_fd_, buffer, sizeof(buffer), 0,
                       reinterpret_cast<sockaddr*>(&from), &from_len);
  if (n <= 0) return;
  absl::string_view datagram(buffer, static_cast<size_t>(n));
  if (!absl::StartsWith(datagram, "M-SEARCH") ||
      !absl::StrContains(datagram, "wifi_bulb")) {
    return;
  }
  ++searches_;
  for (const auto& bulb : bulbs_) {
    if (bulb->offline) continue;
    DiscoveredBulb answer;
    answer.id = bulb->config.id;
    answer.host = "127.0.0.1";
    answer.port = bulb->port;
    answer.model = bulb->config.model;
    answer.fw_ver = bulb->config.fw_ver;
    answer.name = bulb->state["name"];
    answer.support = {kSupport};
    for (const char* key :
         {"power", "bright", "color_mode", "ct", "rgb", "hue", "sat"}) {
      answer.headers[key] = bulb->state[key];
    }
    std::string text = BuildSearchResponse(answer);
    sendto(udp_fd_, text.data(), text.size(), 0,
           reinterpret_cast<sockaddr*>(&from), from_len);
  }
}

void BulbSimulator::Loop() {
  enum class Kind { kWake, kUdp, kListener, kConnection };
  struct Source {
    Kind kind;
    int64_t id;  // Bulb index or connection id.
  };
  while (true) {
    std::vector<pollfd> fds;
    std::vector<Source> sources;
    absl::Time next_due = absl::InfiniteFuture();
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      std::vector<std::function<void()>> tasks = std::move(tasks_);
      tasks_.clear();
      for (auto& task : tasks) task();
      FlushDue();
      fds.push_back({wake_read_, POLLIN, 0});
      sources.push_back({Kind::kWake, 0});
      if (udp_fd_ >= 0) {
        fds.push_back({udp_fd_, POLLIN, 0});
        sources.push_back({Kind::kUdp, 0});
      }
      for (size_t i = 0; i < bulbs_.size(); ++i) {
        if (bulbs_[i]->listen_fd >= 0) {
          fds.push_back({bulbs_[i]->listen_fd, POLLIN, 0});
          sources.push_back({Kind::kListener, static_cast<int64_t>(i)});
        }
      }
      for (auto& connection : connections_) {
        fds.push_back({connection->fd, POLLIN, 0});
        sources.push_back({Kind::kConnection, connection->id});
      }
      for (const Outgoing& outgoing : outgoing_) {
        next_due = std::min(next_due, outgoing.due);
      }
    }
    int timeout_ms = -1;
    if (next_due != absl::InfiniteFuture()) {
      timeout_ms = static_cast<int>(std::max<int64_t>(
          0, absl::ToInt64Milliseconds(
                 absl::Ceil(next_due - absl::Now(), absl::Milliseconds(1)))));
    }
    if (poll(fds.data(), fds.size(), timeout_ms) <= 0) continue;
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      switch (sources[i].kind) {
        case Kind::kWake:
          Drain(wake_read_);
          break;
        case Kind::kUdp:
          AnswerSearch();
          break;
        case Kind::kListener: {
          Bulb* bulb = bulbs_[static_cast<size_t>(sources[i].id)].get();
          if (bulb->listen_fd >= 0) Accept(bulb);
          break;
        }
        case Kind::kConnection:
          for (auto& connection : connections_) {
            if (connection->id == sources[i].id) {
              Read(connection.get());
              break;
            }
          }
          break;
      }
    }
  }
}

}  // namespace iot2mqtt::yeelight::testing
