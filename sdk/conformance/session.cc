#include "sdk/conformance/session.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "rapidjson/stringbuffer.h"
#include "rapidjson/writer.h"
#include "sdk/conformance/payloads.h"
#include "sdk/conformance/timestamps.h"

namespace iot2mqtt::conformance {
namespace {

// State keys a controllable device usually has, most telling first.
constexpr const char* kControllableKeys[] = {"power", "on",         "switch",
                                             "state", "brightness", "bright",
                                             "level", "color_temp", "ct"};

}  // namespace

Session::Session(CheckerOptions options)
    : options_(std::move(options)),
      prefix_(
          absl::StrCat(options_.base, "/v1/instances/", options_.instance)) {
  run_id_ = absl::StrFormat("%08x", absl::Uniform<uint32_t>(bitgen_));
}

absl::StatusOr<std::unique_ptr<Session>> Session::Open(CheckerOptions options) {
  std::unique_ptr<Session> session(new Session(std::move(options)));
  const CheckerOptions& o = session->options_;
  absl::StatusOr<std::unique_ptr<MqttProbe>> probe = MqttProbe::Connect(
      o.host, o.port, absl::StrCat("iot2mqtt-conformance-", session->run_id_),
      session->Deadline());
  if (!probe.ok()) return probe.status();
  session->probe_ = *std::move(probe);
  // Every outbound topic of the contract except events and property topics
  // (the property check subscribes to those of its device). None of these
  // filters overlap, so each message arrives once.
  absl::Status subscribed = session->probe_->Subscribe(
      {session->Topic("status"), session->Topic("devices/+/state"),
       session->Topic("devices/+/error"),
       session->Topic("devices/+/cmd/response"),
       session->Topic("devices/+/get/response"),
       session->Topic("groups/+/cmd/response"), session->Topic("meta/+")},
      session->Deadline());
  if (!subscribed.ok()) return subscribed;
  return session;
}

std::string Session::Topic(absl::string_view suffix) const {
  return absl::StrCat(prefix_, "/", suffix);
}

std::string Session::DeviceTopic(absl::string_view suffix) const {
  return absl::StrCat(prefix_, "/devices/", device_, "/", suffix);
}

std::string Session::NewId(absl::string_view kind) {
  return absl::StrFormat("conformance-%s-%s-%08x", kind, run_id_,
                         absl::Uniform<uint32_t>(bitgen_));
}

std::string Session::RandomHex() {
  return absl::StrFormat("%08x", absl::Uniform<uint32_t>(bitgen_));
}

absl::Status Session::Send(const std::string& topic,
                           absl::string_view payload) {
  return probe_->Publish(topic, payload, 1, false, Deadline());
}

absl::StatusOr<std::optional<Message>> Session::ReadRetained(
    const std::string& topic) {
  return conformance::ReadRetained(
      options_.host, options_.port,
      absl::StrCat(probe_->client_id(), "-r", ++retained_reads_), topic,
      Deadline());
}

absl::Status Session::ResolveDevice() {
  if (device_resolved_) return device_status_;
  device_resolved_ = true;
  const std::string head = Topic("devices/");
  auto device_of = [&](const Message& m) -> std::string {
    absl::string_view rest = m.topic;
    if (!absl::ConsumePrefix(&rest, head) ||
        !absl::ConsumeSuffix(&rest, "/state") || absl::StrContains(rest, '/')) {
      return "";
    }
    return std::string(rest);
  };
  // Retained states arrived with the subscription; prefer them, and among
  // them (without --device) one that looks controllable, so the command
  // checks do not pick a read-only sensor.
  bool have_fallback = false;
  for (const Message& m : probe_->Since(0)) {
    const std::string d = device_of(m);
    if (d.empty() || !m.retain) continue;
    if (!options_.device.empty() && d != options_.device) continue;
    bool controllable = !options_.device.empty();
    rapidjson::Document doc;
    if (!controllable && ParseJson(m.payload, &doc).ok() && doc.IsObject() &&
        doc.HasMember("state") && doc["state"].IsObject()) {
      for (const char* key : kControllableKeys) {
        if (doc["state"].HasMember(key)) controllable = true;
      }
    }
    if (controllable || !have_fallback) {
      device_ = d;
      first_state_ = m;
      have_fallback = true;
    }
    if (controllable) return device_status_;
  }
  if (have_fallback) return device_status_;
  std::optional<Message> m = Await(
      0,
      [&](const Message& m) {
        const std::string d = device_of(m);
        return !d.empty() && (options_.device.empty() || d == options_.device);
      },
      Deadline());
  if (m.has_value()) {
    device_ = device_of(*m);
    first_state_ = *m;
    return device_status_;
  }
  device_status_ = absl::NotFoundError(absl::StrCat(
      "no message on ",
      Topic(absl::StrCat("devices/",
                         options_.device.empty() ? "+" : options_.device,
                         "/state")),
      " within ", absl::FormatDuration(options_.timeout)));
  return device_status_;
}

absl::Status Session::LatestState(rapidjson::Document* state) {
  absl::Status resolved = ResolveDevice();
  if (!resolved.ok()) return resolved;
  const std::string topic = DeviceTopic("state");
  rapidjson::Document latest;
  bool found = false;
  for (const Message& m : probe_->Since(0)) {
    if (m.topic != topic) continue;
    rapidjson::Document doc;
    if (ParseJson(m.payload, &doc).ok() && doc.IsObject() &&
        doc.HasMember("state") && doc["state"].IsObject()) {
      latest.Swap(doc);
      found = true;
    }
  }
  if (!found) {
    return absl::NotFoundError(
        absl::StrCat("no valid state of device \"", device_, "\" seen"));
  }
  state->CopyFrom(latest["state"], state->GetAllocator());
  return absl::OkStatus();
}

absl::StatusOr<std::string> Session::CommandValues() {
  if (!options_.command.empty()) return options_.command;
  rapidjson::Document state;
  absl::Status status = LatestState(&state);
  if (!status.ok()) return status;
  if (state.MemberCount() == 0) {
    return absl::FailedPreconditionError(
        "the device's state is empty; pass --command");
  }
  // Keys a controllable device usually has, then any boolean, then the
  // first key: sent with its current value, so the device does not change.
  const rapidjson::Value* chosen_value = nullptr;
  std::string chosen_key;
  for (const char* key : kControllableKeys) {
    auto it = state.FindMember(key);
    if (it != state.MemberEnd() && !it->value.IsNull()) {
      chosen_key = key;
      chosen_value = &it->value;
      break;
    }
  }
  for (auto it = state.MemberBegin();
       chosen_value == nullptr && it != state.MemberEnd(); ++it) {
    if (it->value.IsBool()) {
      chosen_key = it->name.GetString();
      chosen_value = &it->value;
    }
  }
  if (chosen_value == nullptr) {
    chosen_key = state.MemberBegin()->name.GetString();
    chosen_value = &state.MemberBegin()->value;
  }
  rapidjson::Document values(rapidjson::kObjectType);
  rapidjson::Value copy(*chosen_value, values.GetAllocator());
  values.AddMember(rapidjson::Value(chosen_key.c_str(), values.GetAllocator()),
                   copy, values.GetAllocator());
  return JsonText(values);
}

std::string Session::Command(absl::string_view id, absl::string_view timestamp,
                             absl::string_view values_json) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.StartObject();
  if (!id.empty()) {
    writer.Key("id");
    writer.String(id.data(), static_cast<rapidjson::SizeType>(id.size()));
  }
  writer.Key("timestamp");
  writer.String(timestamp.data(),
                static_cast<rapidjson::SizeType>(timestamp.size()));
  writer.Key("values");
  writer.RawValue(values_json.data(), values_json.size(),
                  rapidjson::kObjectType);
  writer.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

std::optional<Message> Session::Await(
    size_t from, const std::function<bool(const Message&)>& accept,
    absl::Time deadline) {
  size_t cursor = from;
  while (std::optional<Message> m = probe_->Next(&cursor, deadline)) {
    if (accept(*m)) return m;
  }
  return std::nullopt;
}

absl::StatusOr<Message> Session::AwaitReply(size_t from,
                                            const std::string& topic,
                                            absl::string_view id_member,
                                            absl::string_view id) {
  std::string other;
  std::optional<Message> reply = Await(
      from,
      [&](const Message& m) {
        if (m.topic != topic) return false;
        rapidjson::Document doc;
        if (ParseJson(m.payload, &doc).ok() && doc.IsObject()) {
          auto it = doc.FindMember(
              rapidjson::StringRef(id_member.data(), id_member.size()));
          if (it != doc.MemberEnd() && it->value.IsString() &&
              absl::string_view(it->value.GetString(),
                                it->value.GetStringLength()) == id) {
            return true;
          }
        }
        other = Shorten(m.payload);
        return false;
      },
      Deadline());
  if (reply.has_value()) return *reply;
  return absl::DeadlineExceededError(absl::StrCat(
      "no reply on ", topic, " with \"", id_member, "\": \"", id, "\" within ",
      absl::FormatDuration(options_.timeout),
      other.empty() ? "" : absl::StrCat(" (it carried ", other, ")")));
}

absl::StatusOr<Message> Session::CommandRoundTrip(absl::string_view device,
                                                  absl::string_view payload,
                                                  absl::string_view id,
                                                  absl::Time* sent,
                                                  size_t* from_out) {
  const std::string base = Topic(absl::StrCat("devices/", device, "/cmd"));
  const size_t from = probe_->Mark();
  if (from_out != nullptr) *from_out = from;
  *sent = absl::Now();
  absl::Status status = Send(base, payload);
  if (!status.ok()) return status;
  return AwaitReply(from, base + "/response", "cmd_id", id);
}

pid_t Session::pid() const {
  return options_.pid != 0 ? options_.pid : options_.kill_pid;
}

absl::Status Session::StillAlive(size_t from) {
  const std::string status_topic = Topic("status");
  for (const Message& m : probe_->Since(from)) {
    if (m.topic == status_topic && m.payload == "offline") {
      return absl::UnavailableError("status went `offline`");
    }
  }
  if (pid() != 0) {
    absl::StatusOr<bool> exited = WaitForExit(pid(), absl::Now());
    if (exited.ok() && *exited) {
      return absl::UnavailableError(absl::StrCat("process ", pid(), " exited"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> WaitForExit(pid_t pid, absl::Time deadline) {
#ifdef SYS_pidfd_open
  const int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) {
    if (errno == ESRCH) {
      return absl::NotFoundError(absl::StrCat("no process ", pid));
    }
    return absl::UnimplementedError(
        absl::StrCat("pidfd_open: ", strerror(errno)));
  }
  bool exited = false;
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    const int ms = left <= absl::ZeroDuration()
                       ? 0
                       : static_cast<int>(absl::ToInt64Milliseconds(left)) + 1;
    pollfd p{fd, POLLIN, 0};
    const int rc = poll(&p, 1, ms);
    if (rc < 0 && errno == EINTR) continue;
    exited = rc > 0;
    break;
  }
  close(fd);
  return exited;
#else
  return absl::UnimplementedError("no pidfd_open on this system");
#endif
}

absl::StatusOr<int64_t> ProcessAgeSeconds(pid_t pid) {
  std::ifstream stat_file(absl::StrCat("/proc/", pid, "/stat"));
  std::ifstream uptime_file("/proc/uptime");
  std::stringstream stat, uptime;
  stat << stat_file.rdbuf();
  uptime << uptime_file.rdbuf();
  const std::string stat_text = stat.str();
  const size_t paren = stat_text.rfind(')');
  if (paren == std::string::npos) {
    return absl::NotFoundError(absl::StrCat("no /proc/", pid, "/stat"));
  }
  // Fields after "pid (comm)" start at field 3; starttime is field 22.
  std::vector<absl::string_view> fields = absl::StrSplit(
      absl::string_view(stat_text).substr(paren + 1), ' ', absl::SkipEmpty());
  double system_uptime = 0;
  int64_t start_ticks = 0;
  const std::string uptime_text = uptime.str();
  std::vector<absl::string_view> uptime_fields =
      absl::StrSplit(uptime_text, ' ', absl::SkipEmpty());
  if (fields.size() < 20 || !absl::SimpleAtoi(fields[19], &start_ticks) ||
      uptime_fields.empty() ||
      !absl::SimpleAtod(uptime_fields[0], &system_uptime)) {
    return absl::InternalError("cannot read the process start time");
  }
  const double age =
      system_uptime - static_cast<double>(start_ticks) /
                          static_cast<double>(sysconf(_SC_CLK_TCK));
  return static_cast<int64_t>(age < 0 ? 0 : age);
}

}  // namespace iot2mqtt::conformance
