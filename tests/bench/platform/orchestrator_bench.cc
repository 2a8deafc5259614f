// Orchestrator benchmarks (issue #6), run by hand
// (tests/bench/run_platform_bench.sh), never by ctest. Each starts the real
// platform (Mosquitto, iot2mqtt-config, -mqtt-bridge, -orchestrator,
// -gateway from build/bin) on loopback ports, logs in with WEB_ACCESS_KEY
// and creates demo instances with POST /api/instances through the gateway.
// A raw MQTT subscriber on <base>/v1/instances/+/status, started before the
// first POST, times each instance's `online`.
//
//   orchestrator_bench startup <process|docker> [instances=5]
//       One warm-up instance (on docker it builds the image when missing),
//       then `instances` created one after another; time from the POST to
//       `online` for each. Targets: process <= 1 s, docker <= 3 s.
//   orchestrator_bench fleet <process|docker> [count=50]
//       `count` instances POSTed at once (one thread and connection each);
//       wall time until all are online; orchestrator RSS with them running.
//       Targets (docker): <= 30 s, RSS <= 30 MB.
//
// Every instance is deleted at the end (DELETE /api/instances/demo/{id}; the
// orchestrator removes the connector) and the bench waits until the
// orchestrator lists none of them.

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "iot2mqtt/orchestrator/v1/orchestrator_service.grpc.pb.h"
#include "sdk/testing/topic_capture.h"
#include "tests/bench/platform/platform_stack.h"
#include "tests/bench/sdk/bench_util.h"

namespace iot2mqtt::bench {
namespace {

using sdk::testing::CapturedMessage;
using sdk::testing::TopicCapture;

std::string InstanceBody(const std::string& id) {
  return absl::StrCat(
      R"({"instance_id":")", id,
      R"(","connector_type":"demo","friendly_name":"Bench )", id,
      R"(","config":{},"devices":[{"device_id":"light","type":"light"},)",
      R"({"device_id":"climate","type":"climate"}],"update_interval":10})");
}

std::string StatusTopic(const std::string& id) {
  return absl::StrCat(kBaseTopic, "/v1/instances/", id, "/status");
}

// The connectors the orchestrator lists whose instance id starts with
// `prefix` (-1 when it does not answer).
int Listed(orchestrator::v1::OrchestratorService::Stub& stub,
           const std::string& prefix, int* running = nullptr) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  orchestrator::v1::ListContainersResponse response;
  if (!stub.ListContainers(&context, {}, &response).ok()) return -1;
  int n = 0;
  int up = 0;
  for (const auto& info : response.containers()) {
    if (absl::StartsWith(info.instance_id(), prefix)) {
      ++n;
      if (info.status() == "running") ++up;
    }
  }
  if (running != nullptr) *running = up;
  return n;
}

// Deletes the instances through the gateway (8 at a time) and waits until
// the orchestrator lists none; returns the seconds it took (-1: timeout).
double DeleteAll(PlatformStack& stack,
                 orchestrator::v1::OrchestratorService::Stub& stub,
                 const std::vector<std::string>& ids,
                 const std::string& prefix) {
  absl::Time t0 = absl::Now();
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      HttpClient http(stack.gateway_port());
      for (size_t i = static_cast<size_t>(t); i < ids.size(); i += 8) {
        testing::HttpResponse r =
            http.Request("DELETE", absl::StrCat("/api/instances/demo/", ids[i]),
                         "", stack.token());
        if (r.status != 200 && r.status != 204) {
          std::fprintf(stderr, "DELETE %s: %d %s\n", ids[i].c_str(), r.status,
                       r.body.c_str());
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  bool gone = testing::WaitFor([&] { return Listed(stub, prefix) == 0; },
                               absl::Seconds(300));
  return gone ? absl::ToDoubleSeconds(absl::Now() - t0) : -1;
}

struct Bench {
  explicit Bench(const std::string& runtime)
      : stack(StackOptions{true, runtime, {}, ""}),
        prefix(absl::StrCat("pb", getpid() % 100000, "-")) {
    stub = orchestrator::v1::OrchestratorService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", stack.orchestrator_port()),
        grpc::InsecureChannelCredentials()));
    auto c =
        TopicCapture::Start("127.0.0.1", stack.broker().port(),
                            absl::StrCat(kBaseTopic, "/v1/instances/+/status"));
    if (!c.ok()) {
      std::fprintf(stderr, "capture: %s\n", c.status().ToString().c_str());
      std::exit(1);
    }
    capture = *std::move(c);
  }

  // POSTs instance `id`; the HTTP status.
  int Create(HttpClient& http, const std::string& id) {
    testing::HttpResponse r =
        http.Request("POST", "/api/instances", InstanceBody(id), stack.token());
    if (r.status != 200 && r.status != 201) {
      std::fprintf(stderr, "POST /api/instances %s: %d %s\n", id.c_str(),
                   r.status, r.body.c_str());
    }
    return r.status;
  }

  // When `online` for `id` arrived after capture position `mark`.
  std::optional<absl::Time> Online(const std::string& id, size_t mark,
                                   absl::Duration timeout) {
    auto m = capture->WaitFor(
        StatusTopic(id),
        [](const CapturedMessage& m) { return m.payload == "online"; }, timeout,
        mark);
    if (!m) return std::nullopt;
    return m->received;
  }

  PlatformStack stack;
  std::string prefix;
  std::unique_ptr<orchestrator::v1::OrchestratorService::Stub> stub;
  std::unique_ptr<TopicCapture> capture;
  std::vector<std::string> ids;
};

int RunStartup(const std::string& runtime, int instances) {
  Bench bench(runtime);
  Say("startup (%s): 1 warm-up + %d instances one after another; load "
      "average %s",
      runtime.c_str(), instances, LoadAverage().c_str());
  HttpClient http(bench.stack.gateway_port());
  std::vector<double> seconds;
  std::vector<double> post_ms;
  int failures = 0;
  for (int i = 0; i <= instances; ++i) {
    std::string id = absl::StrCat(bench.prefix, i);
    bench.ids.push_back(id);
    size_t mark = bench.capture->Mark();
    absl::Time t0 = absl::Now();
    int status = bench.Create(http, id);
    absl::Time posted = absl::Now();
    std::optional<absl::Time> online =
        status == 200 || status == 201
            ? bench.Online(id, mark, absl::Seconds(i == 0 ? 300 : 60))
            : std::nullopt;
    if (!online) {
      ++failures;
      std::fprintf(stderr, "%s: not online\n%s", id.c_str(),
                   bench.stack.Logs().c_str());
      continue;
    }
    double s = absl::ToDoubleSeconds(*online - t0);
    double p = absl::ToDoubleMilliseconds(posted - t0);
    Say("  %s %s: POST %.1f ms, online after %.3f s  load %s",
        i == 0 ? "warm-up" : "instance", id.c_str(), p, s,
        LoadAverage().c_str());
    if (i > 0) {
      seconds.push_back(s);
      post_ms.push_back(p);
    }
  }
  std::vector<double> sorted = seconds;
  std::sort(sorted.begin(), sorted.end());
  Say("RESULT startup runtime=%s n=%zu median_s=%.3f min_s=%.3f max_s=%.3f "
      "post_median_ms=%.1f orchestrator_rss_kib=%ld failures=%d",
      runtime.c_str(), seconds.size(), Median(seconds),
      sorted.empty() ? 0 : sorted.front(), sorted.empty() ? 0 : sorted.back(),
      Median(post_ms), RssKib(bench.stack.orchestrator_pid()), failures);
  double removed = DeleteAll(bench.stack, *bench.stub, bench.ids, bench.prefix);
  Say("  cleanup: %zu instances removed in %.1f s", bench.ids.size(), removed);
  return failures == 0 && removed >= 0 ? 0 : 1;
}

int RunFleet(const std::string& runtime, int count) {
  Bench bench(runtime);
  const long rss_idle = RssKib(bench.stack.orchestrator_pid());
  Say("fleet (%s): %d instances at once; orchestrator idle RSS %ld KiB; load "
      "average %s",
      runtime.c_str(), count, rss_idle, LoadAverage().c_str());
  for (int i = 0; i < count; ++i) {
    bench.ids.push_back(absl::StrCat(bench.prefix, i));
  }
  size_t mark = bench.capture->Mark();
  std::vector<int> statuses(static_cast<size_t>(count), 0);
  std::vector<std::thread> threads;
  std::atomic<bool> go{false};
  for (int i = 0; i < count; ++i) {
    threads.emplace_back([&, i] {
      HttpClient http(bench.stack.gateway_port());
      while (!go) std::this_thread::yield();
      statuses[static_cast<size_t>(i)] =
          bench.Create(http, bench.ids[static_cast<size_t>(i)]);
    });
  }
  absl::Time t0 = absl::Now();
  go = true;
  for (std::thread& t : threads) t.join();
  const double posted_s = absl::ToDoubleSeconds(absl::Now() - t0);
  int created = 0;
  for (int s : statuses) created += s == 200 || s == 201 ? 1 : 0;
  absl::Time last = t0;
  int online = 0;
  for (const std::string& id : bench.ids) {
    std::optional<absl::Time> at =
        bench.Online(id, mark, absl::Seconds(300) - (absl::Now() - t0));
    if (!at) continue;
    ++online;
    if (*at > last) last = *at;
  }
  const double wall = absl::ToDoubleSeconds(last - t0);
  Say("  %d/%d POSTs succeeded in %.2f s; %d online, the last after %.2f s",
      created, count, posted_s, online, wall);
  absl::SleepFor(absl::Seconds(3));
  int running = 0;
  int listed = Listed(*bench.stub, bench.prefix, &running);
  const long rss = RssKib(bench.stack.orchestrator_pid());
  const long peak = PeakRssKib(bench.stack.orchestrator_pid());
  const double cpu = CpuSeconds(bench.stack.orchestrator_pid());
  Say("RESULT fleet runtime=%s count=%d online=%d wall_s=%.2f posts_s=%.2f "
      "orchestrator_rss_kib=%ld orchestrator_peak_kib=%ld "
      "orchestrator_idle_rss_kib=%ld listed=%d running=%d "
      "orchestrator_cpu_s=%.2f load=\"%s\"",
      runtime.c_str(), count, online, wall, posted_s, rss, peak, rss_idle,
      listed, running, cpu, LoadAverage().c_str());
  double removed = DeleteAll(bench.stack, *bench.stub, bench.ids, bench.prefix);
  Say("  cleanup: %zu instances removed in %.1f s", bench.ids.size(), removed);
  return online == count && removed >= 0 ? 0 : 1;
}

}  // namespace
}  // namespace iot2mqtt::bench

int main(int argc, char** argv) {
  using namespace iot2mqtt::bench;  // NOLINT(build/namespaces)
  signal(SIGPIPE, SIG_IGN);
  std::string what = argc > 1 ? argv[1] : "";
  std::string runtime = argc > 2 ? argv[2] : "process";
  if (runtime != "process" && runtime != "docker") what = "";
  if (what == "startup") {
    return RunStartup(runtime, argc > 3 ? std::atoi(argv[3]) : 5);
  }
  if (what == "fleet") {
    return RunFleet(runtime, argc > 3 ? std::atoi(argv[3]) : 50);
  }
  std::fprintf(stderr,
               "usage: orchestrator_bench startup <process|docker> [n]\n"
               "       orchestrator_bench fleet <process|docker> [count]\n");
  return 2;
}
