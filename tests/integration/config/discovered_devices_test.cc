// The discovered-device store of the real iot2mqtt-config binary over gRPC:
// Record → List → Mark → Delete, the DISCOVERED_DEVICE change events on
// WatchChanges, errors with their reasons, and the file
// `<data>/discovered_devices.json` surviving a SIGKILL and a restart.

#include <signal.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "iot2mqtt/config/v1/config_service.grpc.pb.h"
#include "rapidjson/document.h"
#include "tests/integration/config/config_harness.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::config {
namespace {

using harness::Context;
using harness::Parse;
using harness::ServiceStack;
using ::iot2mqtt::config::v1::ChangeEvent;
using ::iot2mqtt::config::v1::DiscoveredDevice;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::WaitFor;

constexpr char kProbe[] = "demo_probe";

// One WatchChanges call, read on a thread of its own.
class Watcher {
 public:
  explicit Watcher(int port) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    std::shared_ptr<grpc::Channel> channel =
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                  grpc::InsecureChannelCredentials(), args);
    REQUIRE(channel->WaitForConnected(std::chrono::system_clock::now() +
                                      std::chrono::seconds(10)));
    stub_ = v1::ConfigService::NewStub(channel);
    reader_ = stub_->WatchChanges(&context_, v1::WatchChangesRequest());
    thread_ = std::thread([this] {
      ChangeEvent event;
      while (reader_->Read(&event)) {
        std::lock_guard<std::mutex> lock(mu_);
        events_.push_back(event);
      }
      reader_->Finish();
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

 private:
  std::unique_ptr<v1::ConfigService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<ChangeEvent>> reader_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<ChangeEvent> events_;
};

// The ErrorInfo reason of a failed call ("" when none).
std::string ReasonOf(const grpc::Status& status) {
  google::rpc::Status rpc_status;
  if (!rpc_status.ParseFromString(status.error_details())) return "";
  for (const auto& detail : rpc_status.details()) {
    google::rpc::ErrorInfo info;
    if (detail.UnpackTo(&info)) return info.reason();
  }
  return "";
}

DiscoveredDevice Device(const std::string& id, const std::string& name,
                        const std::string& ip, int port) {
  DiscoveredDevice device;
  device.set_id(id);
  device.set_name(name);
  device.set_ip(ip);
  device.set_port(port);
  return device;
}

grpc::Status Record(v1::ConfigService::Stub& stub,
                    const std::vector<DiscoveredDevice>& devices,
                    bool scan_completed,
                    v1::RecordDiscoveredDevicesResponse* response,
                    const std::string& integration = "demo") {
  v1::RecordDiscoveredDevicesRequest request;
  request.set_integration(integration);
  for (const DiscoveredDevice& device : devices) {
    *request.add_devices() = device;
  }
  request.set_scan_completed(scan_completed);
  return stub.RecordDiscoveredDevices(Context().get(), request, response);
}

grpc::Status Delete(v1::ConfigService::Stub& stub, const std::string& id) {
  v1::DeleteDiscoveredDeviceRequest request;
  request.set_device_id(id);
  v1::DeleteDiscoveredDeviceResponse response;
  return stub.DeleteDiscoveredDevice(Context().get(), request, &response);
}

grpc::Status Mark(v1::ConfigService::Stub& stub, const std::string& id,
                  const std::string& instance_id, DiscoveredDevice* response) {
  v1::MarkDiscoveredDeviceAddedRequest request;
  request.set_device_id(id);
  request.set_instance_id(instance_id);
  return stub.MarkDiscoveredDeviceAdded(Context().get(), request, response);
}

v1::ListDiscoveredDevicesResponse List(v1::ConfigService::Stub& stub,
                                       const std::string& integration = "") {
  v1::ListDiscoveredDevicesRequest request;
  request.set_integration(integration);
  v1::ListDiscoveredDevicesResponse response;
  grpc::Status status =
      stub.ListDiscoveredDevices(Context().get(), request, &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  return response;
}

std::string Describe(const ChangeEvent& event) {
  if (event.resync()) return "resync";
  return absl::StrCat(ChangeEvent::Kind_Name(event.kind()), " ",
                      ChangeEvent::Action_Name(event.action()),
                      " d=", event.device_id());
}

std::vector<std::string> Describe(const std::vector<ChangeEvent>& events) {
  std::vector<std::string> described;
  for (const ChangeEvent& event : events) described.push_back(Describe(event));
  return described;
}

// A watcher started from "now" sees changes from the moment the service
// registered it, which the client can't observe: records a probe device
// until the watcher reports an event, then deletes it as a marker. Returns
// the number of events up to and including the marker.
size_t Prime(v1::ConfigService::Stub& stub, Watcher& watcher) {
  REQUIRE(WaitFor(
      [&] {
        v1::RecordDiscoveredDevicesResponse response;
        REQUIRE(Record(stub, {Device(kProbe, "probe", "", 0)}, false, &response)
                    .ok());
        return watcher.WaitForCount(1, absl::Milliseconds(200));
      },
      absl::Seconds(20)));
  REQUIRE(Delete(stub, kProbe).ok());
  size_t marker = 0;
  REQUIRE(WaitFor([&] {
    std::vector<ChangeEvent> events = watcher.events();
    for (size_t i = 0; i < events.size(); ++i) {
      if (events[i].kind() == ChangeEvent::DISCOVERED_DEVICE &&
          events[i].action() == ChangeEvent::DELETED &&
          events[i].device_id() == kProbe) {
        marker = i + 1;
        return true;
      }
    }
    return false;
  }));
  return marker;
}

TEST_CASE(
    "iot2mqtt-config: discovered devices over gRPC — record, list, mark, "
    "delete, change events, and the file survives a restart",
    "[config][discovery]") {
  ServiceStack stack;
  stack.StartConfig();
  const std::string path = stack.data_dir() + "/discovered_devices.json";

  DiscoveredDevice lamp = Device("demo_lamp", "Desk lamp", "192.0.2.20", 55443);
  lamp.set_model("color");
  lamp.set_capabilities(R"({"power":true,"brightness":true})");
  lamp.set_attributes(R"({"fw_ver":"18","support":["get_prop","set_power"]})");
  const DiscoveredDevice plug = Device("demo_plug", "Plug", "192.0.2.21", 80);

  v1::ListDiscoveredDevicesResponse before_restart;
  {
    Watcher watcher(stack.config_port());
    const size_t marker = Prime(stack.stub(), watcher);

    // A scan reports two devices and completes.
    v1::RecordDiscoveredDevicesResponse recorded;
    grpc::Status status =
        Record(stack.stub(), {lamp, plug}, true, &recorded, "demo");
    INFO(status.error_message());
    REQUIRE(status.ok());
    CHECK(recorded.new_devices() == 2);
    REQUIRE(recorded.devices_size() == 2);
    CHECK(recorded.devices(0).id() == "demo_lamp");
    CHECK(recorded.devices(0).integration() == "demo");
    CHECK_FALSE(recorded.devices(0).discovered_at().empty());
    CHECK(recorded.devices(0).last_seen() ==
          recorded.devices(0).discovered_at());
    CHECK_FALSE(recorded.devices(0).added());

    // Listed, oldest first, with last_scan; filtered by integration.
    v1::ListDiscoveredDevicesResponse listed = List(stack.stub());
    REQUIRE(listed.devices_size() == 2);
    CHECK(listed.devices(0).SerializeAsString() ==
          recorded.devices(0).SerializeAsString());
    CHECK(listed.devices(1).id() == "demo_plug");
    CHECK_FALSE(listed.last_scan().empty());
    CHECK(List(stack.stub(), "demo").devices_size() == 2);
    CHECK(List(stack.stub(), "yeelight").devices_size() == 0);

    // Added to an instance.
    DiscoveredDevice marked;
    REQUIRE(Mark(stack.stub(), "demo_lamp", "desk", &marked).ok());
    CHECK(marked.added());
    CHECK(marked.instance_id() == "desk");
    CHECK_FALSE(marked.added_at().empty());

    // Errors carry their reasons and emit no event.
    DiscoveredDevice ignored;
    grpc::Status unknown = Mark(stack.stub(), "demo_nothing", "desk", &ignored);
    CHECK(unknown.error_code() == grpc::StatusCode::NOT_FOUND);
    CHECK(ReasonOf(unknown) == "DEVICE_NOT_FOUND");
    CHECK(unknown.error_message() == "Device demo_nothing not found");
    grpc::Status gone = Delete(stack.stub(), "demo_nothing");
    CHECK(gone.error_code() == grpc::StatusCode::NOT_FOUND);
    CHECK(ReasonOf(gone) == "DEVICE_NOT_FOUND");
    v1::RecordDiscoveredDevicesResponse rejected;
    grpc::Status bad_id = Record(
        stack.stub(), {Device("Demo Lamp", "x", "", 0)}, true, &rejected);
    CHECK(bad_id.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(ReasonOf(bad_id) == "INVALID_DEVICE_ID");
    grpc::Status bad_integration =
        Record(stack.stub(), {plug}, true, &rejected, "../etc");
    CHECK(bad_integration.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(ReasonOf(bad_integration) == "INVALID_CONNECTOR_NAME");
    DiscoveredDevice bad_caps = plug;
    bad_caps.set_capabilities("[1]");
    grpc::Status bad_device = Record(stack.stub(), {bad_caps}, true, &rejected);
    CHECK(bad_device.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(ReasonOf(bad_device) == "INVALID_DEVICE");
    grpc::Status bad_instance =
        Mark(stack.stub(), "demo_lamp", "Desk!", &ignored);
    CHECK(bad_instance.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(ReasonOf(bad_instance) == "INVALID_INSTANCE_ID");

    // A rescan of one device: it stays added.
    DiscoveredDevice rescanned = lamp;
    rescanned.set_name("Desk lamp (renamed)");
    REQUIRE(Record(stack.stub(), {rescanned}, false, &recorded).ok());
    CHECK(recorded.new_devices() == 0);
    REQUIRE(recorded.devices_size() == 1);
    CHECK(recorded.devices(0).added());
    CHECK(recorded.devices(0).instance_id() == "desk");
    CHECK(recorded.devices(0).name() == "Desk lamp (renamed)");

    // One new device, then a deletion.
    REQUIRE(Record(stack.stub(), {Device("demo_fan", "Fan", "192.0.2.22", 0)},
                   false, &recorded)
                .ok());
    CHECK(recorded.new_devices() == 1);
    REQUIRE(Delete(stack.stub(), "demo_plug").ok());

    const std::vector<std::string> expected = {
        "DISCOVERED_DEVICE CREATED d=",           // Two devices at once.
        "DISCOVERED_DEVICE UPDATED d=demo_lamp",  // Marked.
        "DISCOVERED_DEVICE UPDATED d=demo_lamp",  // Rescanned.
        "DISCOVERED_DEVICE CREATED d=demo_fan",
        "DISCOVERED_DEVICE DELETED d=demo_plug"};
    REQUIRE(watcher.WaitForCount(marker + expected.size()));
    std::vector<ChangeEvent> events = watcher.events();
    CHECK(Describe(std::vector<ChangeEvent>(events.begin() + marker,
                                            events.end())) == expected);

    before_restart = List(stack.stub());
    REQUIRE(before_restart.devices_size() == 2);
    CHECK(before_restart.devices(0).id() == "demo_lamp");
    CHECK(before_restart.devices(1).id() == "demo_fan");
  }

  // The file is upstream's format: attributes flat in the record.
  rapidjson::Document file = Parse(ReadFile(path));
  REQUIRE(file["devices"].IsArray());
  REQUIRE(file["devices"].Size() == 2);
  const rapidjson::Value& record = file["devices"][0];
  CHECK(std::string(record["fw_ver"].GetString()) == "18");
  CHECK(record["added"].IsTrue());
  CHECK(std::string(record["instance_id"].GetString()) == "desk");
  CHECK(record["port"].GetInt() == 55443);
  CHECK(file["last_scan"].IsString());

  // No chance to finish anything: what was answered is on disk.
  stack.KillConfig();
  stack.StartConfig();
  v1::ListDiscoveredDevicesResponse after_restart = List(stack.stub());
  CHECK(after_restart.SerializeAsString() ==
        before_restart.SerializeAsString());

  // And the bookkeeping holds across the restart: a rescan keeps `added`.
  v1::RecordDiscoveredDevicesResponse recorded;
  REQUIRE(Record(stack.stub(), {lamp}, true, &recorded).ok());
  REQUIRE(recorded.devices_size() == 1);
  CHECK(recorded.devices(0).added());
  CHECK(recorded.devices(0).discovered_at() ==
        before_restart.devices(0).discovered_at());
  CHECK(recorded.devices(0).name() == "Desk lamp");
  CHECK(List(stack.stub()).last_scan() != before_restart.last_scan());
}

}  // namespace
}  // namespace iot2mqtt::config
