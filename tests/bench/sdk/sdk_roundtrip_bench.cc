// Command round trip against the demo connector process: cmd published ->
// cmd/response received, through a local Mosquitto. Target (issue 3):
// p50 <= 2 ms, p99 <= 10 ms.
//
//   sdk_roundtrip_bench [commands=2000] [--broker-default]

#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "iot2mqtt/sdk/contract.h"
#include "sdk/testing/loopback_broker.h"
#include "sdk/testing/topic_capture.h"
#include "tests/bench/sdk/bench_util.h"

int main(int argc, char** argv) {
  using namespace iot2mqtt;
  using namespace iot2mqtt::bench;
  int n = argc > 1 ? std::atoi(argv[1]) : 2000;
  // Without TCP_NODELAY on the broker's sockets (mosquitto's default), Nagle
  // and delayed ACKs add ~40 ms to every exchange of small packets.
  bool nodelay = !(argc > 2 && std::string(argv[2]) == "--broker-default");
  sdk::testing::LoopbackBrokerOptions options;
  options.tcp_nodelay = nodelay;
  auto broker = sdk::testing::LoopbackBroker::Start(options);
  if (!broker.ok()) {
    std::fprintf(stderr, "broker: %s\n", broker.status().ToString().c_str());
    return 1;
  }
  iot2mqtt::testing::TempDir temp;
  const std::string dir = temp.path();
  auto demo = StartDemo(
      dir, "bench",
      R"({"update_interval": 10, "devices": [{"device_id": "light", "type": "light"}]})",
      (*broker)->host(), (*broker)->port());
  sdk::Topics topics = *sdk::Topics::Create("IoT2mqtt", "bench");
  auto capture = sdk::testing::TopicCapture::Start(
      (*broker)->host(), (*broker)->port(), topics.CommandResponse("light"));
  auto status = sdk::testing::TopicCapture::Start(
      (*broker)->host(), (*broker)->port(), topics.Status());
  if (!capture.ok() || !status.ok() ||
      !(*status)->WaitFor(
          topics.Status(), [](const auto& m) { return m.payload == "online"; },
          absl::Seconds(10))) {
    std::fprintf(stderr, "demo connector did not come online\n");
    return 1;
  }
  std::vector<double> ms;
  int failures = 0;
  for (int i = 0; i < n + 50; ++i) {
    std::string id = absl::StrCat("rt-", i);
    std::string payload = sdk::BuildCommandPayload(
        id, absl::Now(), absl::StrCat(R"({"brightness":)", 1 + i % 100, "}"),
        5000);
    size_t mark = (*capture)->Mark();
    absl::Time start = absl::Now();
    if (!(*capture)->Publish(topics.Command("light"), payload, 1).ok()) {
      ++failures;
      continue;
    }
    auto response = (*capture)->WaitFor(
        topics.CommandResponse("light"),
        [&id](const sdk::testing::CapturedMessage& m) {
          return m.payload.find(id + "\"") != std::string::npos;
        },
        absl::Seconds(5), mark);
    absl::Time end = absl::Now();
    if (!response.has_value()) {
      ++failures;
      continue;
    }
    if (i >= 50)
      ms.push_back(absl::ToDoubleMilliseconds(end - start));  // Warm-up.
  }
  std::printf(
      "command round trip (cmd -> cmd/response) against the demo "
      "connector, %zu commands, QoS 1, loopback, broker %s\n",
      ms.size(), nodelay ? "set_tcp_nodelay true" : "defaults (Nagle on)");
  std::vector<double> copy = ms;
  std::printf("%-8s %-8s %-8s %-8s %-8s %s\n", "p50 ms", "p90 ms", "p99 ms",
              "max ms", "mean ms", "failures");
  double sum = 0;
  for (double v : ms) sum += v;
  std::printf("%-8.3f %-8.3f %-8.3f %-8.3f %-8.3f %d\n", Quantile(copy, 0.5),
              Quantile(copy, 0.9), Quantile(copy, 0.99), Quantile(copy, 1.0),
              ms.empty() ? 0 : sum / ms.size(), failures);
  demo->Signal(SIGTERM);
  (void)demo->Wait(absl::Seconds(10));
  return 0;
}
