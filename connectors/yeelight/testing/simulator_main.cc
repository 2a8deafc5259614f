// yeelight-bulb-simulator: simulated Yeelight bulbs on 127.0.0.1.
//
//   yeelight-bulb-simulator [--bulbs N] [--port P] [--discovery-port P]
//                           [--background] [--no-discovery]
//
// Prints one JSON line with the ports, e.g.
//   {"discovery":"127.0.0.1:41234","bulbs":[{"id":"0x...01","port":55443,...}]}
// then runs until SIGTERM/SIGINT. Bulb N listens on P+N when --port is given
// (else on any free port). Fault injection from stdin, one command a line
// (bulb numbers from 0):
//   drop I | delay I MS | silent I on|off | offline I on|off |
//   garbage I on|off | raw I TEXT | set I PROPERTY VALUE | state I

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "connectors/yeelight/testing/bulb_simulator.h"
#include "iot2mqtt/sdk/log.h"

namespace {

using iot2mqtt::yeelight::Properties;
using iot2mqtt::yeelight::testing::BulbSimulator;
using iot2mqtt::yeelight::testing::SimulatedBulb;
using iot2mqtt::yeelight::testing::SimulatorOptions;

int Usage() {
  std::fprintf(stderr,
               "usage: yeelight-bulb-simulator [--bulbs N] [--port P] "
               "[--discovery-port P] [--background] [--no-discovery]\n");
  return 2;
}

bool ParseFlag(const std::vector<std::string>& args, size_t* i,
               const std::string& name, int* out) {
  if (args[*i] != name || *i + 1 >= args.size()) return false;
  ++*i;
  return absl::SimpleAtoi(args[*i], out);
}

std::string Reply(BulbSimulator& sim, const std::string& line) {
  std::vector<std::string> words =
      absl::StrSplit(line, absl::MaxSplits(' ', 3), absl::SkipEmpty());
  if (words.size() < 2) return "error: expected COMMAND BULB ...";
  size_t bulb = 0;
  if (!absl::SimpleAtoi(words[1], &bulb) || bulb >= sim.size()) {
    return "error: no such bulb";
  }
  const std::string& command = words[0];
  auto flag = [&words]() { return words.size() > 2 && words[2] == "on"; };
  if (command == "drop") {
    sim.DropConnections(bulb);
  } else if (command == "delay" && words.size() > 2) {
    int ms = 0;
    if (!absl::SimpleAtoi(words[2], &ms)) return "error: bad delay";
    sim.SetReplyDelay(bulb, absl::Milliseconds(ms));
  } else if (command == "silent") {
    sim.SetSilent(bulb, flag());
  } else if (command == "offline") {
    sim.SetOffline(bulb, flag());
  } else if (command == "garbage") {
    sim.SetGarbageBeforeReplies(bulb, flag());
  } else if (command == "raw" && words.size() > 2) {
    std::string text = words[2];
    if (words.size() > 3) absl::StrAppend(&text, " ", words[3]);
    sim.SendRaw(bulb, text + "\r\n");
  } else if (command == "set" && words.size() > 3) {
    sim.SetProperties(bulb, Properties{{words[2], words[3]}});
  } else if (command == "state") {
    std::string out;
    for (const auto& [name, value] : sim.State(bulb)) {
      absl::StrAppend(&out, name, "=", value, " ");
    }
    return out;
  } else {
    return "error: unknown command";
  }
  return "ok";
}

}  // namespace

int main(int argc, char** argv) {
  iot2mqtt::sdk::SetLogService("yeelight-bulb-simulator");
  std::vector<std::string> args(argv + 1, argv + argc);
  int bulbs = 2;
  int port = 0;
  int discovery_port = 0;
  bool background = false;
  bool discovery = true;
  for (size_t i = 0; i < args.size(); ++i) {
    if (ParseFlag(args, &i, "--bulbs", &bulbs) ||
        ParseFlag(args, &i, "--port", &port) ||
        ParseFlag(args, &i, "--discovery-port", &discovery_port)) {
      continue;
    }
    if (args[i] == "--background") {
      background = true;
    } else if (args[i] == "--no-discovery") {
      discovery = false;
    } else {
      return Usage();
    }
  }
  if (bulbs < 1 || bulbs > 256 || port < 0 || port + bulbs > 65536) {
    return Usage();
  }

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  SimulatorOptions options;
  options.discovery = discovery;
  options.discovery_port = discovery_port;
  for (int i = 0; i < bulbs; ++i) {
    SimulatedBulb bulb;
    bulb.port = port == 0 ? 0 : port + i;
    bulb.background = background;
    options.bulbs.push_back(bulb);
  }
  auto sim = BulbSimulator::Start(options);
  if (!sim.ok()) {
    std::fprintf(stderr, "yeelight-bulb-simulator: %s\n",
                 std::string(sim.status().message()).c_str());
    return 1;
  }
  std::string ready = "{\"discovery\":";
  absl::StrAppend(&ready,
                  discovery
                      ? absl::StrCat("\"", (*sim)->discovery_address(), "\"")
                      : "null",
                  ",\"bulbs\":[");
  for (size_t i = 0; i < (*sim)->size(); ++i) {
    absl::StrAppend(&ready, i == 0 ? "" : ",", "{\"id\":\"", (*sim)->id(i),
                    "\",\"host\":\"127.0.0.1\",\"port\":", (*sim)->port(i),
                    ",\"name\":\"bulb", i + 1, "\"}");
  }
  absl::StrAppend(&ready, "]}\n");
  std::fputs(ready.c_str(), stdout);
  std::fflush(stdout);

  BulbSimulator* raw = sim->get();
  std::thread([raw] {
    std::string line;
    while (std::getline(std::cin, line)) {
      std::string answer = Reply(*raw, line);
      std::fprintf(stderr, "%s\n", answer.c_str());
    }
  }).detach();

  int received = 0;
  sigwait(&signals, &received);
  std::fflush(stdout);
  _exit(0);
}
