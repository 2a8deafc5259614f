// Change events of the real iot2mqtt-config binary: WatchChanges over gRPC
// (order, cursors, resuming, resync after a restart), the same stream as
// Server-Sent Events through the real iot2mqtt-gateway (Last-Event-ID
// resume), and the connector catalogue followed while its files change.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "catch2/catch.hpp"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "iot2mqtt/config/v1/config_service.grpc.pb.h"
#include "rapidjson/document.h"
#include "tests/integration/config/config_harness.h"
#include "tests/support/stream_client.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::config {
namespace {

using harness::CheckError;
using harness::Context;
using harness::Parse;
using harness::ServiceStack;
using harness::Str;
using ::iot2mqtt::config::v1::ChangeEvent;
using ::iot2mqtt::testing::HttpRequest;
using ::iot2mqtt::testing::HttpResponse;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::StreamClient;
using ::iot2mqtt::testing::WaitFor;
using ::iot2mqtt::testing::WriteFile;

constexpr char kProbeMac[] = "02-00-00-00-00-01";
constexpr char kMac[] = "a4-cf-12-34-56-78";

// One WatchChanges call, read on a thread of its own.
class Watcher {
 public:
  Watcher(int port, const std::string& after) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    std::shared_ptr<grpc::Channel> channel =
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                  grpc::InsecureChannelCredentials(), args);
    // Connected first: a connection failure is not what is tested.
    REQUIRE(channel->WaitForConnected(std::chrono::system_clock::now() +
                                      std::chrono::seconds(10)));
    stub_ = v1::ConfigService::NewStub(channel);
    v1::WatchChangesRequest request;
    request.set_after(after);
    reader_ = stub_->WatchChanges(&context_, request);
    thread_ = std::thread([this] {
      ChangeEvent event;
      while (reader_->Read(&event)) {
        std::lock_guard<std::mutex> lock(mu_);
        events_.push_back(event);
      }
      grpc::Status status = reader_->Finish();
      std::lock_guard<std::mutex> lock(mu_);
      status_ = status;
      ended_ = true;
    });
  }
  ~Watcher() {
    context_.TryCancel();
    thread_.join();
  }
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  std::vector<ChangeEvent> events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }
  bool WaitForCount(size_t count, absl::Duration timeout = absl::Seconds(10)) {
    return WaitFor([&] { return events().size() >= count; }, timeout);
  }
  // Waits until an event satisfies `match`; returns its index or -1.
  template <typename Match>
  int WaitForEvent(Match match, absl::Duration timeout = absl::Seconds(10)) {
    int found = -1;
    WaitFor(
        [&] {
          std::vector<ChangeEvent> seen = events();
          for (size_t i = 0; i < seen.size(); ++i) {
            if (match(seen[i])) {
              found = static_cast<int>(i);
              return true;
            }
          }
          return false;
        },
        timeout);
    return found;
  }
  bool WaitEnded(absl::Duration timeout = absl::Seconds(10)) {
    return WaitFor(
        [&] {
          std::lock_guard<std::mutex> lock(mu_);
          return ended_;
        },
        timeout);
  }

 private:
  std::unique_ptr<v1::ConfigService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<ChangeEvent>> reader_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<ChangeEvent> events_;
  grpc::Status status_;
  bool ended_ = false;
};

bool PutDeviceConfig(v1::ConfigService::Stub& stub, const std::string& mac,
                     const std::string& content) {
  v1::UpdateDeviceConfigRequest request;
  request.set_mac_address(mac);
  request.set_content(content);
  v1::UpdateDeviceConfigResponse response;
  return stub.UpdateDeviceConfig(Context().get(), request, &response).ok();
}

bool IsProbeDeleted(const ChangeEvent& event) {
  return event.kind() == ChangeEvent::DEVICE_CONFIG &&
         event.action() == ChangeEvent::DELETED &&
         event.mac_address() == kProbeMac;
}

// A watcher started with after="" sees changes from the moment the service
// registered it, which the client can't observe: probe with device-config
// writes until it reports one, then delete the probe as a marker. Returns
// the index of the marker; every later event comes from the test.
int Prime(v1::ConfigService::Stub& stub, Watcher& watcher) {
  int probe = 0;
  REQUIRE(WaitFor(
      [&] {
        REQUIRE(PutDeviceConfig(stub, kProbeMac,
                                absl::StrCat(R"({"probe":)", probe++, "}")));
        return watcher.WaitForCount(1, absl::Milliseconds(200));
      },
      absl::Seconds(20)));
  v1::DeleteDeviceConfigRequest request;
  request.set_mac_address(kProbeMac);
  v1::DeleteDeviceConfigResponse response;
  REQUIRE(stub.DeleteDeviceConfig(Context().get(), request, &response).ok());
  int marker = watcher.WaitForEvent(IsProbeDeleted);
  REQUIRE(marker >= 0);
  return marker;
}

// The events after index `marker`.
std::vector<ChangeEvent> After(const std::vector<ChangeEvent>& events,
                               int marker) {
  return std::vector<ChangeEvent>(events.begin() + marker + 1, events.end());
}

// "<epoch>.<revision>" split; REQUIREs the shape.
std::pair<std::string, uint64_t> SplitCursor(const std::string& cursor) {
  INFO(cursor);
  std::vector<std::string> parts = absl::StrSplit(cursor, '.');
  REQUIRE(parts.size() == 2);
  REQUIRE_FALSE(parts[0].empty());
  uint64_t revision = 0;
  REQUIRE(absl::SimpleAtoi(parts[1], &revision));
  return {parts[0], revision};
}

// What an event says, for comparing sequences in one CHECK.
std::string Describe(const ChangeEvent& event) {
  if (event.resync()) return "resync";
  return absl::StrCat(ChangeEvent::Kind_Name(event.kind()), " ",
                      ChangeEvent::Action_Name(event.action()),
                      " c=", event.connector(), " i=", event.instance_id(),
                      " m=", event.mac_address(), " s=", event.settings());
}

std::vector<std::string> Describe(const std::vector<ChangeEvent>& events) {
  std::vector<std::string> out;
  for (const ChangeEvent& event : events) out.push_back(Describe(event));
  return out;
}

std::vector<std::string> Cursors(const std::vector<ChangeEvent>& events) {
  std::vector<std::string> out;
  for (const ChangeEvent& event : events) out.push_back(event.cursor());
  return out;
}

const std::vector<std::string> kExpected = {
    "INSTANCE CREATED c=demo i=ev1 m= s=",
    "INSTANCE UPDATED c=demo i=ev1 m= s=",
    "INSTANCE DELETED c=demo i=ev1 m= s=",
    absl::StrCat("DEVICE_CONFIG UPDATED c= i= m=", kMac, " s="),
    absl::StrCat("DEVICE_CONFIG DELETED c= i= m=", kMac, " s="),
    "SETTINGS UPDATED c= i= m= s=mqtt",
};

// The mutations behind kExpected, over gRPC (plus one update that changes
// nothing, which is no event).
void MutateEverything(v1::ConfigService::Stub& stub) {
  v1::CreateInstanceRequest create;
  create.set_instance(
      R"({"instance_id":"ev1","connector_type":"demo","friendly_name":"A"})");
  v1::CreateInstanceResponse created;
  REQUIRE(stub.CreateInstance(Context().get(), create, &created).ok());
  v1::UpdateInstanceRequest update;
  update.set_connector("demo");
  update.set_instance_id("ev1");
  update.set_instance(R"({"friendly_name":"B"})");
  v1::UpdateInstanceResponse updated;
  REQUIRE(stub.UpdateInstance(Context().get(), update, &updated).ok());
  REQUIRE(stub.UpdateInstance(Context().get(), update, &updated).ok());
  v1::DeleteInstanceRequest remove;
  remove.set_connector("demo");
  remove.set_instance_id("ev1");
  v1::DeleteInstanceResponse removed;
  REQUIRE(stub.DeleteInstance(Context().get(), remove, &removed).ok());
  REQUIRE(PutDeviceConfig(stub, kMac, R"({"deviceName":"Kitchen"})"));
  v1::DeleteDeviceConfigRequest remove_config;
  remove_config.set_mac_address(kMac);
  v1::DeleteDeviceConfigResponse removed_config;
  REQUIRE(
      stub.DeleteDeviceConfig(Context().get(), remove_config, &removed_config)
          .ok());
  v1::UpdateMqttSettingsRequest mqtt;
  mqtt.set_settings(R"({"host":"192.0.2.30","password":"watch-pass"})");
  v1::UpdateMqttSettingsResponse mqtt_response;
  REQUIRE(stub.UpdateMqttSettings(Context().get(), mqtt, &mqtt_response).ok());
}

TEST_CASE(
    "iot2mqtt-config: WatchChanges streams every change in order and "
    "resumes after a cursor",
    "[config][events]") {
  ServiceStack stack;
  stack.StartConfig();
  Watcher first(stack.config_port(), "");
  const int marker = Prime(stack.stub(), first);

  MutateEverything(stack.stub());
  REQUIRE(
      first.WaitForCount(static_cast<size_t>(marker) + 1 + kExpected.size()));
  std::vector<ChangeEvent> seen = After(first.events(), marker);
  CHECK(Describe(seen) == kExpected);
  const std::string marker_cursor = first.events()[marker].cursor();
  const std::string epoch = SplitCursor(marker_cursor).first;
  uint64_t previous = SplitCursor(marker_cursor).second;
  for (const ChangeEvent& event : seen) {
    INFO(Describe(event));
    auto [event_epoch, revision] = SplitCursor(event.cursor());
    CHECK(event_epoch == epoch);
    CHECK(revision == previous + 1);  // Nothing in between, nothing twice.
    previous = revision;
    CHECK_FALSE(event.resync());
    CHECK(event.time().seconds() > 0);
  }
  CHECK(seen[5].settings() == "mqtt");

  // A second watcher after the cursor of event 2 gets 3.. exactly, then
  // what happens next.
  Watcher second(stack.config_port(), seen[1].cursor());
  REQUIRE(second.WaitForCount(4));
  REQUIRE(PutDeviceConfig(stack.stub(), kMac, R"({"deviceName":"Hall"})"));
  REQUIRE(second.WaitForCount(5));
  REQUIRE(
      first.WaitForCount(static_cast<size_t>(marker) + 2 + kExpected.size()));
  std::vector<ChangeEvent> resumed = second.events();
  std::vector<ChangeEvent> expected_resumed(seen.begin() + 2, seen.end());
  expected_resumed.push_back(first.events().back());
  CHECK(Describe(resumed) == Describe(expected_resumed));
  CHECK(Cursors(resumed) == Cursors(expected_resumed));
  // Resuming at the newest event gives nothing until the next change.
  Watcher at_newest(stack.config_port(), first.events().back().cursor());

  // A restart forgets the stream: a watcher with an old cursor is told to
  // resync first (and so is one with a cursor the service never issued).
  const std::string old_cursor = seen[5].cursor();
  stack.StopConfig();  // Clean, with three watchers connected.
  CHECK(first.WaitEnded());
  CHECK(second.WaitEnded());
  CHECK(at_newest.WaitEnded());
  CHECK(at_newest.events().empty());
  stack.StartConfig();
  Watcher after_restart(stack.config_port(), old_cursor);
  Watcher bogus(stack.config_port(), "not-a-cursor");
  Watcher future(stack.config_port(), absl::StrCat(epoch, ".999999"));
  REQUIRE(after_restart.WaitForCount(1));
  REQUIRE(bogus.WaitForCount(1));
  REQUIRE(future.WaitForCount(1));
  const ChangeEvent resync = after_restart.events()[0];
  CHECK(resync.resync());
  CHECK(bogus.events()[0].resync());
  CHECK(future.events()[0].resync());
  const std::string new_epoch = SplitCursor(resync.cursor()).first;
  CHECK(new_epoch != epoch);

  // The marker's cursor is a valid place to resume from; then the changes
  // come as usual, once.
  Watcher from_marker(stack.config_port(), resync.cursor());
  REQUIRE(PutDeviceConfig(stack.stub(), kMac, R"({"deviceName":"Attic"})"));
  REQUIRE(after_restart.WaitForCount(2));
  REQUIRE(from_marker.WaitForCount(1));
  ChangeEvent next = after_restart.events()[1];
  CHECK_FALSE(next.resync());
  CHECK(Describe(next) ==
        absl::StrCat("DEVICE_CONFIG UPDATED c= i= m=", kMac, " s="));
  CHECK(SplitCursor(next.cursor()).first == new_epoch);
  CHECK(Describe(from_marker.events()) ==
        std::vector<std::string>{Describe(next)});
  CHECK(from_marker.events()[0].cursor() == next.cursor());
}

// --- SSE through the gateway -------------------------------------------------


struct SseFrame {
  std::string id;
  std::string event;
  std::string data;
};

// The complete frames with data in an SSE body (retry and comments left
// out).
std::vector<SseFrame> Frames(const std::string& body) {
  std::vector<SseFrame> frames;
  size_t start = 0;
  for (size_t end = body.find("\n\n"); end != std::string::npos;
       start = end + 2, end = body.find("\n\n", start)) {
    SseFrame frame;
    for (absl::string_view line :
         absl::StrSplit(body.substr(start, end - start), '\n')) {
      if (absl::ConsumePrefix(&line, "id: ")) frame.id = std::string(line);
      if (absl::ConsumePrefix(&line, "event: ")) {
        frame.event = std::string(line);
      }
      if (absl::ConsumePrefix(&line, "data: ")) {
        absl::StrAppend(&frame.data, frame.data.empty() ? "" : "\n", line);
      }
    }
    if (!frame.data.empty()) frames.push_back(std::move(frame));
  }
  return frames;
}

std::string EventsRequest(const std::string& token,
                          const std::string& extra_headers = "") {
  return absl::StrCat(
      "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: "
      "text/event-stream\r\nAuthorization: Bearer ",
      token, "\r\n", extra_headers, "\r\n");
}

// The frame's event as Describe() shows a ChangeEvent, checking that the
// frame's id is the event's cursor and its name the kind in lower case.
std::string DescribeFrame(const SseFrame& frame) {
  INFO(frame.data);
  rapidjson::Document data = Parse(frame.data);
  CHECK(Str(data, "cursor") == frame.id);
  if (data["resync"].IsTrue()) return "resync";
  std::string kind = Str(data, "kind");
  CHECK(frame.event == absl::AsciiStrToLower(kind));
  return absl::StrCat(
      kind, " ", Str(data, "action"), " c=", Str(data, "connector"),
      " i=", Str(data, "instance_id"), " m=", Str(data, "mac_address"),
      " s=", Str(data, "settings"));
}

// The index of the frame that deletes the probe, or -1.
int ProbeDeletedFrame(const std::vector<SseFrame>& frames) {
  for (size_t i = 0; i < frames.size(); ++i) {
    if (frames[i].event == "device_config" &&
        absl::StrContains(frames[i].data, "\"DELETED\"") &&
        absl::StrContains(frames[i].data, kProbeMac)) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

TEST_CASE(
    "iot2mqtt-gateway: GET /api/events streams the changes as SSE and "
    "resumes at Last-Event-ID",
    "[config][events][gateway]") {
  ServiceStack stack;
  stack.StartConfig();
  stack.StartGateway();

  // Like every other route, it needs a token.
  auto anonymous = HttpRequest(stack.gateway_port(), "GET", "/api/events");
  REQUIRE(anonymous.ok());
  CheckError(*anonymous, 401, "AUTH_REQUIRED");

  StreamClient first(stack.gateway_port(), EventsRequest(stack.token()));
  REQUIRE(first.WaitFor("retry: 3000\n\n", absl::Seconds(10)));
  CHECK(absl::StartsWith(first.head(), "HTTP/1.1 200"));
  CHECK(absl::StrContains(first.head(), "text/event-stream"));
  const std::string probe = absl::StrCat("/api/configs/", kProbeMac);
  int put = 0;
  REQUIRE(WaitFor(
      [&] {
        REQUIRE(stack
                    .Http("PUT", probe,
                          absl::StrCat(R"({"content":{"probe":)", put++, "}}"))
                    .status == 200);
        return first.WaitFor("event: device_config", absl::Milliseconds(200));
      },
      absl::Seconds(20)));
  REQUIRE(stack.Http("DELETE", probe).status == 204);
  REQUIRE(first.ReadUntil(
      [&] { return ProbeDeletedFrame(Frames(first.body())) >= 0; }));

  // Through REST, as the UI does it.
  REQUIRE(stack
              .Http("POST", "/api/instances",
                    R"({"instance_id":"ev1","connector_type":"demo"})")
              .status == 200);
  REQUIRE(
      stack.Http("PUT", "/api/instances/demo/ev1", R"({"friendly_name":"B"})")
          .status == 200);
  REQUIRE(stack.Http("DELETE", "/api/instances/demo/ev1").status == 200);
  REQUIRE(stack
              .Http("PUT", absl::StrCat("/api/configs/", kMac),
                    R"({"content":{"deviceName":"Kitchen"}})")
              .status == 200);
  REQUIRE(stack.Http("DELETE", absl::StrCat("/api/configs/", kMac)).status ==
          204);
  REQUIRE(stack.Http("POST", "/api/mqtt/config", R"({"host":"192.0.2.31"})")
              .status == 200);

  std::vector<SseFrame> frames;
  REQUIRE(first.ReadUntil([&] {
    frames = Frames(first.body());
    int marker = ProbeDeletedFrame(frames);
    return marker >= 0 &&
           frames.size() >= static_cast<size_t>(marker) + 1 + kExpected.size();
  }));
  INFO(first.body());
  frames.erase(frames.begin(), frames.begin() + ProbeDeletedFrame(frames) + 1);
  REQUIRE(frames.size() == kExpected.size());
  std::vector<std::string> described;
  for (const SseFrame& frame : frames)
    described.push_back(DescribeFrame(frame));
  CHECK(described == std::vector<std::string>{
                         "INSTANCE CREATED c=demo i=ev1 m= s=",
                         "INSTANCE UPDATED c=demo i=ev1 m= s=",
                         "INSTANCE DELETED c=demo i=ev1 m= s=", kExpected[3],
                         kExpected[4], kExpected[5]});
  CHECK(frames[0].event == "instance");
  CHECK(frames[5].event == "settings");

  // The browser goes away; a change happens; it comes back with the id of
  // the first frame it saw and gets everything after it, once, in order.
  first.Close();
  REQUIRE(stack
              .Http("PUT", absl::StrCat("/api/configs/", kMac),
                    R"({"content":{"deviceName":"Missed"}})")
              .status == 200);
  StreamClient again(
      stack.gateway_port(),
      EventsRequest(stack.token(),
                    absl::StrCat("Last-Event-ID: ", frames[0].id, "\r\n")));
  std::vector<SseFrame> resumed;
  REQUIRE(again.ReadUntil([&] {
    resumed = Frames(again.body());
    return resumed.size() >= kExpected.size();
  }));
  INFO(again.body());
  REQUIRE(resumed.size() == kExpected.size());
  for (size_t i = 0; i + 1 < resumed.size(); ++i) {
    INFO(i);
    CHECK(resumed[i].id == frames[i + 1].id);
    CHECK(DescribeFrame(resumed[i]) == described[i + 1]);
  }
  CHECK(DescribeFrame(resumed.back()) ==
        absl::StrCat("DEVICE_CONFIG UPDATED c= i= m=", kMac, " s="));

  // An id from nowhere: one resync frame, then the stream goes on.
  StreamClient lost(
      stack.gateway_port(),
      EventsRequest(stack.token(), "Last-Event-ID: 0123456789abcdef.42\r\n"));
  std::vector<SseFrame> lost_frames;
  REQUIRE(lost.ReadUntil([&] {
    lost_frames = Frames(lost.body());
    return !lost_frames.empty();
  }));
  CHECK(DescribeFrame(lost_frames[0]) == "resync");
}

// --- The catalogue ----------------------------------------------------------

// Index of the first catalogue event after `from`, or -1.
int CatalogueEventAfter(const std::vector<ChangeEvent>& events, int from) {
  for (size_t i = static_cast<size_t>(from + 1); i < events.size(); ++i) {
    if (events[i].kind() == ChangeEvent::CATALOGUE) return static_cast<int>(i);
  }
  return -1;
}

TEST_CASE(
    "iot2mqtt-config: catalogue edits are events, and a broken "
    "setup.json is reported, never hidden",
    "[config][events][catalogue]") {
  ServiceStack stack(harness::Env{{"CATALOGUE_POLL_SECONDS", "1"}});
  const std::string setup = stack.connector_dir() + "/setup.json";
  const std::string original = ReadFile(setup);
  stack.StartConfig();
  stack.StartGateway();
  Watcher watcher(stack.config_port(), "");
  int last = Prime(stack.stub(), watcher);

  HttpResponse meta = stack.Http("GET", "/api/integrations/demo/meta");
  INFO(meta.body);
  REQUIRE(meta.status == 200);
  CHECK(Str(Parse(meta.body), "display_name") == "Demo devices");
  CheckError(stack.Http("GET", "/api/integrations/demo/icon"), 404,
             "ICON_NOT_FOUND");

  // An edit: a catalogue event, and the new key in /meta.
  REQUIRE(original[0] == '{');
  const std::string edited =
      absl::StrCat("{\n  \"edited_by_test\": true,", original.substr(1));
  WriteFile(setup, edited);
  auto next_catalogue_event = [&] {
    int found = -1;
    WaitFor(
        [&] {
          found = CatalogueEventAfter(watcher.events(), last);
          return found >= 0;
        },
        absl::Seconds(15));
    INFO(stack.Logs());
    REQUIRE(found >= 0);
    last = found;
    ChangeEvent event = watcher.events()[found];
    CHECK(event.action() == ChangeEvent::UPDATED);
    CHECK(event.connector().empty());  // "Re-read the catalogue."
    CHECK_FALSE(event.resync());
    return event;
  };
  next_catalogue_event();
  REQUIRE(WaitFor([&] {
    HttpResponse r = stack.Http("GET", "/api/integrations/demo/meta");
    return r.status == 200 && absl::StrContains(r.body, "edited_by_test");
  }));

  // Broken JSON: listed with its problems; the routes that render it say so.
  WriteFile(setup, "{ \"flows\": [ not json");
  next_catalogue_event();
  HttpResponse available;
  REQUIRE(WaitFor([&] {
    available = stack.Http("GET", "/api/connectors/available");
    return available.status == 200 &&
           absl::StrContains(available.body, "\"path\":\"setup.json\"");
  }));
  INFO(available.body);
  rapidjson::Document available_doc = Parse(available.body);
  REQUIRE(available_doc.IsArray());
  bool listed = false;
  for (const rapidjson::Value& entry : available_doc.GetArray()) {
    if (Str(entry, "name") != "demo") continue;
    listed = true;
    REQUIRE(entry["problems"].IsArray());
    REQUIRE(entry["problems"].Size() > 0);
    CHECK(Str(entry["problems"][0], "path") == "setup.json");
    CHECK_FALSE(Str(entry["problems"][0], "message").empty());
  }
  CHECK(listed);
  rapidjson::Document invalid =
      CheckError(stack.Http("GET", "/api/integrations/demo/meta"), 400,
                 "SETUP_SCHEMA_INVALID");
  CHECK(Str(invalid["details"], "connector") == "demo");
  CheckError(stack.Http("GET", "/api/connectors/demo/setup"), 400,
             "SETUP_SCHEMA_INVALID");
  CHECK(stack.Http("GET", "/api/connectors").status == 200);
  HttpResponse integrations = stack.Http("GET", "/api/integrations");
  CHECK(integrations.status == 200);
  CHECK(absl::StrContains(integrations.body, "\"name\":\"demo\""));

  // An icon appears: an event, and the bytes as image/svg+xml.
  const std::string svg =
      "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 8 8\">"
      "<circle cx=\"4\" cy=\"4\" r=\"3\" fill=\"#10B981\"/></svg>\n";
  WriteFile(stack.connector_dir() + "/icon.svg", svg);
  next_catalogue_event();
  HttpResponse icon;
  REQUIRE(WaitFor([&] {
    icon = stack.Http("GET", "/api/integrations/demo/icon");
    return icon.status == 200;
  }));
  CHECK(absl::StartsWith(icon.Header("Content-Type"), "image/svg+xml"));
  CHECK(icon.body == svg);

  // Repaired: /meta renders again, now with the icon.
  WriteFile(setup, original);
  next_catalogue_event();
  HttpResponse repaired;
  REQUIRE(WaitFor([&] {
    repaired = stack.Http("GET", "/api/integrations/demo/meta");
    return repaired.status == 200;
  }));
  INFO(repaired.body);
  rapidjson::Document repaired_doc = Parse(repaired.body);
  CHECK_FALSE(repaired_doc.HasMember("edited_by_test"));
  CHECK_FALSE(Str(repaired_doc, "icon_url").empty());
}

}  // namespace
}  // namespace iot2mqtt::config
