// Resident memory and CPU of a demo connector with 10 devices, idle (no
// commands; polling every 10 s; motion events every ~30 s). Target (issue
// 3): RSS <= 8 MB, CPU ~ 0.
//
//   sdk_idle_bench [seconds=20]

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "sdk/testing/loopback_broker.h"
#include "sdk/testing/topic_capture.h"
#include "tests/bench/sdk/bench_util.h"

int main(int argc, char** argv) {
  using namespace iot2mqtt;
  using namespace iot2mqtt::bench;
  double seconds = argc > 1 ? std::atof(argv[1]) : 20;
  auto broker = sdk::testing::LoopbackBroker::Start();
  if (!broker.ok()) {
    std::fprintf(stderr, "broker: %s\n", broker.status().ToString().c_str());
    return 1;
  }
  iot2mqtt::testing::TempDir temp;
  const std::string dir = temp.path();
  std::string devices;
  const char* kinds[] = {"light", "climate", "switch", "motion"};
  for (int i = 0; i < 10; ++i) {
    absl::StrAppend(&devices, i ? "," : "", R"({"device_id": "d)", i,
                    R"(", "type": ")", kinds[i % 4], "\"}");
  }
  const std::string instance_json =
      absl::StrCat(R"({"update_interval": 10, "devices": [)", devices, "]}");
  std::printf(
      "demo connector, 10 devices, idle for %.0f s after a 3 s "
      "warm-up\n",
      seconds);
  std::printf("%-10s %-10s %-10s %-10s %s\n", "binary", "RSS KiB", "peak KiB",
              "CPU %", "threads");
  auto demo = StartDemo(dir, "idle", instance_json, (*broker)->host(),
                        (*broker)->port());
  sdk::Topics topics = *sdk::Topics::Create("IoT2mqtt", "idle");
  auto status = sdk::testing::TopicCapture::Start(
      (*broker)->host(), (*broker)->port(), topics.Status());
  if (!status.ok() ||
      !(*status)->WaitFor(
          topics.Status(), [](const auto& m) { return m.payload == "online"; },
          absl::Seconds(10))) {
    std::fprintf(stderr, "demo connector did not come online\n");
    return 1;
  }
  sleep(3);
  double cpu0 = CpuSeconds(demo->pid());
  absl::Time t0 = absl::Now();
  usleep(static_cast<useconds_t>(seconds * 1e6));
  double cpu1 = CpuSeconds(demo->pid());
  double wall = absl::ToDoubleSeconds(absl::Now() - t0);
  std::string task_dir = absl::StrCat("/proc/", demo->pid(), "/task");
  int threads = 0;
  {
    std::string cmd = absl::StrCat("ls ", task_dir, " | wc -l");
    FILE* p = popen(cmd.c_str(), "r");
    if (p != nullptr) {
      if (std::fscanf(p, "%d", &threads) != 1) threads = 0;
      pclose(p);
    }
  }
  std::printf("%-10s %-10ld %-10ld %-10.3f %d\n", "demo", RssKib(demo->pid()),
              PeakRssKib(demo->pid()), 100.0 * (cpu1 - cpu0) / wall, threads);
  demo->Signal(SIGTERM);
  (void)demo->Wait(absl::Seconds(10));
  return 0;
}
