// The Yeelight client and discovery against simulated bulbs on loopback.

#include "connectors/yeelight/yeelight_client.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "catch2/catch.hpp"
#include "connectors/yeelight/testing/bulb_simulator.h"
#include "connectors/yeelight/yeelight_discovery.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::yeelight {
namespace {

using ::iot2mqtt::testing::FreePort;
using ::iot2mqtt::testing::WaitFor;
using testing::BulbSimulator;

std::unique_ptr<BulbSimulator> StartSimulator(size_t bulbs) {
  auto sim = BulbSimulator::Start(bulbs);
  REQUIRE(sim.ok());
  return *std::move(sim);
}

ClientOptions OptionsFor(const BulbSimulator& sim, size_t bulb) {
  ClientOptions options;
  options.host = "127.0.0.1";
  options.port = sim.port(bulb);
  options.connect_timeout = absl::Seconds(2);
  options.request_timeout = absl::Seconds(2);
  options.reconnect_min = absl::Milliseconds(50);
  options.reconnect_max = absl::Milliseconds(400);
  options.log_name = sim.id(bulb);
  return options;
}

// Collects notifications from a client's callback.
class Notifications {
 public:
  void Add(const Properties& properties) {
    absl::MutexLock lock(&mu_);
    all_.push_back(properties);
  }
  std::vector<Properties> all() const {
    absl::MutexLock lock(&mu_);
    return all_;
  }
  bool Saw(const std::string& name, const std::string& value) const {
    absl::MutexLock lock(&mu_);
    for (const Properties& properties : all_) {
      auto it = properties.find(name);
      if (it != properties.end() && it->second == value) return true;
    }
    return false;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<Properties> all_;
};

TEST_CASE("several bulbs are read and changed independently") {
  auto sim = StartSimulator(3);
  std::vector<std::unique_ptr<Client>> clients;
  for (size_t i = 0; i < sim->size(); ++i) {
    clients.push_back(std::make_unique<Client>(OptionsFor(*sim, i)));
  }
  REQUIRE(clients[0]->Call(SetBright(10, Transition{})).ok());
  REQUIRE(clients[1]->Call(SetCtAbx(2000, Transition{false, 0})).ok());
  REQUIRE(clients[2]->Call(SetPower(false, Transition{})).ok());
  REQUIRE(clients[2]->Call(Toggle()).ok());
  REQUIRE(clients[2]->Call(SetRgb(0, 255, 0, Transition{})).ok());
  REQUIRE(clients[2]->Call(SetHsv(200, 40, Transition{})).ok());

  CHECK(sim->Property(0, "bright") == "10");
  CHECK(sim->Property(1, "bright") == "100");
  CHECK(sim->Property(1, "ct") == "2000");
  CHECK(sim->Property(1, "color_mode") == "2");
  CHECK(sim->Property(2, "power") == "on");
  CHECK(sim->Property(2, "rgb") == "65280");
  CHECK(sim->Property(2, "hue") == "200");
  CHECK(sim->Property(2, "color_mode") == "3");

  auto properties = clients[0]->GetProperties({"power", "bright", "nope"});
  REQUIRE(properties.ok());
  CHECK(*properties ==
        Properties{{"power", "on"}, {"bright", "10"}, {"nope", ""}});
}

TEST_CASE("a bulb's error answer is reported with its code") {
  auto sim = StartSimulator(1);
  Client client(OptionsFor(*sim, 0));
  REQUIRE(client.Call(SetPower(false, Transition{})).ok());
  auto refused = client.Call(SetBright(50, Transition{}));
  CHECK(absl::IsFailedPrecondition(refused.status()));
  CHECK(refused.status().message().find("-5000") != std::string::npos);
  auto unknown = client.Call(Request{"set_scene", {std::string("cf")}});
  CHECK(absl::IsFailedPrecondition(unknown.status()));
  // The connection survives an error answer.
  CHECK(client.Call(SetPower(true, Transition{})).ok());
}

TEST_CASE("notifications reach the callback without any request") {
  auto sim = StartSimulator(1);
  Notifications seen;
  ClientOptions options = OptionsFor(*sim, 0);
  options.keep_connected = true;
  options.on_notification = [&seen](const Properties& p) { seen.Add(p); };
  Client client(options);
  REQUIRE(sim->WaitForConnections(0, 1));
  // A change made with the wall switch or the phone app.
  sim->SetProperties(0, {{"power", "off"}});
  CHECK(WaitFor([&] { return seen.Saw("power", "off"); }, absl::Seconds(5)));
  // Notifications with numbers arrive as text.
  sim->SetProperties(0, {{"bright", "7"}});
  CHECK(WaitFor([&] { return seen.Saw("bright", "7"); }, absl::Seconds(5)));
}

TEST_CASE("answers are matched by id while notifications interleave") {
  auto sim = StartSimulator(1);
  Notifications seen;
  ClientOptions options = OptionsFor(*sim, 0);
  options.on_notification = [&seen](const Properties& p) { seen.Add(p); };
  Client client(options);
  REQUIRE(client.Call(GetProp({"power"})).ok());
  // Several threads change and read at once; every change also pushes a
  // notification to the same connection, between the answers.
  std::atomic<int> failures{0};
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        int bright = 1 + (t * 20 + i) % 100;
        if (!client.Call(SetBright(bright, Transition{false, 0})).ok()) {
          ++failures;
        }
        auto name = client.GetProperties({"name"});
        if (!name.ok()) {
          ++failures;
        } else if (name->at("name") != "bulb1") {
          ++wrong;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CHECK(failures == 0);
  CHECK(wrong == 0);
  CHECK(WaitFor([&] { return seen.all().size() >= 80; }, absl::Seconds(5)));
}

TEST_CASE("malformed lines are skipped and counted") {
  auto sim = StartSimulator(1);
  Notifications seen;
  ClientOptions options = OptionsFor(*sim, 0);
  options.on_notification = [&seen](const Properties& p) { seen.Add(p); };
  Client client(options);
  sim->SetGarbageBeforeReplies(0, true);
  for (int i = 0; i < 5; ++i) {
    REQUIRE(client.Call(SetBright(20 + i, Transition{false, 0})).ok());
  }
  CHECK(client.malformed_lines() >= 5);
  sim->SetGarbageBeforeReplies(0, false);
  sim->SendRaw(0, "\xff\xfe binary junk\r\n[1,2]\r\n{\"id\":\"x\"}\r\n");
  sim->SendRaw(0, std::string(100 * 1024, 'x') + "\r\n");
  sim->SendRaw(0, "{\"method\":\"props\",\"params\":{\"ct\":1800}}\r\n");
  CHECK(WaitFor([&] { return seen.Saw("ct", "1800"); }, absl::Seconds(5)));
  CHECK(client.malformed_lines() >= 9);
  auto bright = client.GetProperties({"bright"});
  REQUIRE(bright.ok());
  CHECK(bright->at("bright") == "24");
}

TEST_CASE("slow answers: within the timeout they arrive, beyond it they fail") {
  auto sim = StartSimulator(1);
  Client client(OptionsFor(*sim, 0));
  REQUIRE(client.Call(GetProp({"power"})).ok());
  sim->SetReplyDelay(0, absl::Milliseconds(300));
  absl::Time start = absl::Now();
  CHECK(client.Call(GetProp({"power"}), absl::Seconds(2)).ok());
  CHECK(absl::Now() - start >= absl::Milliseconds(250));

  sim->SetReplyDelay(0, absl::Milliseconds(1500));
  start = absl::Now();
  auto late = client.Call(GetProp({"power"}), absl::Milliseconds(300));
  CHECK(absl::IsDeadlineExceeded(late.status()));
  CHECK(absl::Now() - start < absl::Milliseconds(1200));

  // Once the bulb is quick again the client recovers by itself.
  sim->SetReplyDelay(0, absl::ZeroDuration());
  CHECK(WaitFor([&] { return client.Call(GetProp({"power"})).ok(); },
                absl::Seconds(5)));
}

TEST_CASE("a dropped connection is re-opened") {
  auto sim = StartSimulator(1);
  Notifications seen;
  ClientOptions options = OptionsFor(*sim, 0);
  options.keep_connected = true;
  options.on_notification = [&seen](const Properties& p) { seen.Add(p); };
  Client client(options);
  REQUIRE(sim->WaitForConnections(0, 1));
  sim->DropConnections(0);
  // Reconnected in the background: notifications flow again without a
  // request.
  CHECK(WaitFor(
      [&] {
        sim->SetProperties(0, {{"name", "after-drop"}});
        return seen.Saw("name", "after-drop");
      },
      absl::Seconds(5)));
  CHECK(client.Call(GetProp({"power"})).ok());

  // Without keep_connected the next request reconnects.
  Client on_demand(OptionsFor(*sim, 0));
  REQUIRE(on_demand.Call(GetProp({"power"})).ok());
  sim->DropConnections(0);
  CHECK(WaitFor([&] { return on_demand.Call(GetProp({"power"})).ok(); },
                absl::Seconds(5)));
}

TEST_CASE("a silent bulb times out and recovers when it answers again") {
  auto sim = StartSimulator(2);
  Client silent(OptionsFor(*sim, 0));
  Client other(OptionsFor(*sim, 1));
  REQUIRE(silent.Call(GetProp({"power"})).ok());
  sim->SetSilent(0, true);
  CHECK(absl::IsDeadlineExceeded(
      silent.Call(GetProp({"power"}), absl::Milliseconds(300)).status()));
  CHECK(other.Call(GetProp({"power"})).ok());
  sim->SetSilent(0, false);
  CHECK(WaitFor([&] { return silent.Call(GetProp({"power"})).ok(); },
                absl::Seconds(5)));
}

TEST_CASE("an offline bulb is unavailable and comes back on its port") {
  auto sim = StartSimulator(1);
  ClientOptions options = OptionsFor(*sim, 0);
  options.keep_connected = true;
  Client client(options);
  REQUIRE(client.Call(GetProp({"power"})).ok());
  sim->SetOffline(0, true);
  CHECK(WaitFor([&] { return !client.connected(); }, absl::Seconds(5)));
  auto status = client.Call(GetProp({"power"})).status();
  CHECK((absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status)));
  sim->SetOffline(0, false);
  CHECK(WaitFor([&] { return client.connected(); }, absl::Seconds(5)));
  CHECK(client.Call(GetProp({"power"})).ok());
}

TEST_CASE("nothing listening: requests fail fast with UNAVAILABLE") {
  ClientOptions options;
  options.host = "127.0.0.1";
  options.port = FreePort();
  Client client(options);
  absl::Time start = absl::Now();
  CHECK(absl::IsUnavailable(client.Call(GetProp({"power"})).status()));
  CHECK(absl::Now() - start < absl::Seconds(2));
}

TEST_CASE("discovery finds every online bulb once, within the timeout") {
  auto sim = StartSimulator(3);
  sim->SetProperties(1, {{"name", "Kitchen"}});
  DiscoveryOptions options;
  options.address = sim->discovery_address();
  options.timeout = absl::Milliseconds(800);
  absl::Time start = absl::Now();
  auto bulbs = Discover(options);
  absl::Duration took = absl::Now() - start;
  REQUIRE(bulbs.ok());
  REQUIRE(bulbs->size() == 3);  // Searched twice, answers deduplicated.
  CHECK(sim->search_count() == 2);
  CHECK(took >= absl::Milliseconds(750));
  CHECK(took < absl::Seconds(2));
  for (size_t i = 0; i < 3; ++i) {
    CHECK((*bulbs)[i].host == "127.0.0.1");
  }
  bool kitchen = false;
  for (const DiscoveredBulb& bulb : *bulbs) {
    if (bulb.id == sim->id(1)) {
      kitchen = bulb.name == "Kitchen" && bulb.port == sim->port(1) &&
                bulb.headers.at("power") == "on";
    }
  }
  CHECK(kitchen);

  // The discovered address works for control.
  ClientOptions control;
  control.host = (*bulbs)[0].host;
  control.port = (*bulbs)[0].port;
  Client client(control);
  CHECK(client.Call(GetProp({"power"})).ok());

  // An offline bulb does not answer; max_results ends the wait early.
  sim->SetOffline(2, true);
  options.timeout = absl::Seconds(5);
  options.max_results = 2;
  start = absl::Now();
  bulbs = Discover(options);
  REQUIRE(bulbs.ok());
  CHECK(bulbs->size() == 2);
  CHECK(absl::Now() - start < absl::Seconds(2));
  for (const DiscoveredBulb& bulb : *bulbs) CHECK(bulb.id != sim->id(2));
}

TEST_CASE("discovery with nobody answering returns nothing after the wait") {
  DiscoveryOptions options;
  options.address = "127.0.0.1:" + std::to_string(FreePort());
  options.timeout = absl::Milliseconds(300);
  auto bulbs = Discover(options);
  REQUIRE(bulbs.ok());
  CHECK(bulbs->empty());
  options.address = "not-an-address";
  CHECK(absl::IsInvalidArgument(Discover(options).status()));
}

}  // namespace
}  // namespace iot2mqtt::yeelight
