// mqtt-bridge benchmarks (issue #5), run by hand
// (tests/bench/run_platform_bench.sh), never by ctest. Each starts the real
// platform (Mosquitto, iot2mqtt-config, -mqtt-bridge, -gateway from
// build/bin) on loopback ports and logs in with WEB_ACCESS_KEY.
//
//   bridge_bench ingest [runs=3] [seconds=10] [topics=1000]
//       A libmosquitto publisher floods <base>/v1/instances/.../state
//       topics (QoS 0 and QoS 1), with and without one WebSocket client on
//       /ws/mqtt reading; the rate is the bridge's messages_received
//       (GetStatus) over a fixed window after 2 s of warm-up.
//       Target: >= 20,000 msg/s with the WebSocket client.
//   bridge_bench command [commands=1000] [rounds=3]
//       POST /api/devices/{instance}/{device}/command through the gateway
//       (one keep-alive connection, sequential) against the demo connector;
//       same run: the bridge's SendCommand over gRPC, and the bare MQTT
//       cmd -> cmd/response. Target: p50 <= 5 ms through the gateway.
//   bridge_bench memory [topics=100000]
//       Publishes that many distinct retained topics; the bridge's VmRSS
//       before and after, cache_bytes; then how long a new /ws/mqtt client
//       takes to get the snapshot.

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "iot2mqtt/sdk/contract.h"
#include "sdk/testing/topic_capture.h"
#include "tests/bench/platform/flood_publisher.h"
#include "tests/bench/platform/platform_stack.h"
#include "tests/bench/sdk/bench_util.h"

namespace iot2mqtt::bench {
namespace {

using mqtt_bridge::v1::GetStatusResponse;

int Arg(int argc, char** argv, int index, int fallback) {
  return argc > index ? std::atoi(argv[index]) : fallback;
}

// Waits until the bridge's messages_received stops moving (nothing more in
// flight); returns the final count.
int64_t SettledCount(PlatformStack& stack) {
  int64_t last = -1;
  for (int i = 0; i < 300; ++i) {
    int64_t now = stack.BridgeStatus().messages_received();
    if (now == last) return now;
    last = now;
    absl::SleepFor(absl::Milliseconds(200));
  }
  return last;
}

// --- ingest ------------------------------------------------------------------

struct IngestResult {
  double bridge_rate = 0;     // msg/s counted by the bridge in the window.
  double publisher_rate = 0;  // msg/s the publisher completed.
  double delivered = 0;       // bridge received / published over the run.
  double bridge_cpu = 0;      // CPU seconds per wall second (bridge).
  double gateway_cpu = 0;
  double broker_cpu = 0;
  int64_t ws_updates = 0;  // In the window.
  int64_t ws_markers = 0;
  int64_t ws_skipped = 0;
  bool ws_closed = false;
  int ws_snapshot_timeouts = 0;  // Sockets given up before their snapshot.
};

IngestResult Ingest(PlatformStack& stack, int qos, bool with_ws, int seconds,
                    int topics) {
  IngestResult result;
  std::unique_ptr<WsCounter> ws;
  if (with_ws) {
    // Up to 3 tries: a first message that does not come within 20 s is
    // counted (see docs/performance.md) and the socket is given up.
    for (int attempt = 0; attempt < 3; ++attempt) {
      ws = std::make_unique<WsCounter>(
          stack.gateway_port(), absl::StrCat("/ws/mqtt?token=", stack.token()));
      absl::Time t0 = absl::Now();
      if (ws->WaitFirst(absl::Seconds(20))) break;
      ++result.ws_snapshot_timeouts;
      std::fprintf(stderr, "ws: %s after %.1f s\n", ws->first().c_str(),
                   absl::ToDoubleSeconds(absl::Now() - t0));
      ws->Stop();
      ws.reset();
    }
    if (ws == nullptr) {
      // Measured without a reader rather than not at all (the line says so).
      std::fprintf(stderr, "ws: no topics snapshot in 3 tries\n");
    }
  }
  const std::string prefix = absl::StrCat(kBaseTopic, "/v1/instances/ingest");
  int64_t start_count = SettledCount(stack);
  FloodPublisher publisher(
      stack.broker().port(), qos, /*retain=*/false, qos == 0 ? 1000 : 200,
      [&](int64_t i, std::string* topic, std::string* payload) {
        int64_t t = i % topics;
        *topic =
            absl::StrCat(prefix, t / 100, "/devices/dev", t % 100, "/state");
        *payload = absl::StrCat(
            R"({"timestamp":"2026-11-23T10:00:00Z","device_id":"dev)", t % 100,
            R"(","state":{"temperature":)", 20 + i % 10, R"(.5,"seq":)", i,
            "}}");
      });
  if (!publisher.ok()) {
    std::fprintf(stderr, "publisher: cannot connect\n");
    return result;
  }
  publisher.Start();
  absl::SleepFor(absl::Seconds(2));  // Warm-up.
  const absl::Time t0 = absl::Now();
  const int64_t bridge0 = stack.BridgeStatus().messages_received();
  const int64_t pub0 = publisher.completed();
  const double cpu_bridge0 = CpuSeconds(stack.bridge_pid());
  const double cpu_gateway0 = CpuSeconds(stack.gateway_pid());
  const double cpu_broker0 = CpuSeconds(stack.broker().pid());
  int64_t ws_updates0 = 0, ws_markers0 = 0, ws_skipped0 = 0;
  if (ws) {
    ws_updates0 = ws->updates;
    ws_markers0 = ws->skipped_markers;
    ws_skipped0 = ws->skipped_total;
  }
  absl::SleepFor(absl::Seconds(seconds));
  const int64_t bridge1 = stack.BridgeStatus().messages_received();
  const int64_t pub1 = publisher.completed();
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - t0);
  result.bridge_cpu = (CpuSeconds(stack.bridge_pid()) - cpu_bridge0) / elapsed;
  result.gateway_cpu =
      (CpuSeconds(stack.gateway_pid()) - cpu_gateway0) / elapsed;
  result.broker_cpu =
      (CpuSeconds(stack.broker().pid()) - cpu_broker0) / elapsed;
  if (ws) {
    result.ws_updates = ws->updates - ws_updates0;
    result.ws_markers = ws->skipped_markers - ws_markers0;
    result.ws_skipped = ws->skipped_total - ws_skipped0;
  }
  publisher.Stop();
  publisher.Drain(30);
  int64_t end_count = SettledCount(stack);
  result.bridge_rate = static_cast<double>(bridge1 - bridge0) / elapsed;
  result.publisher_rate = static_cast<double>(pub1 - pub0) / elapsed;
  result.delivered = publisher.sent() > 0
                         ? static_cast<double>(end_count - start_count) /
                               static_cast<double>(publisher.sent())
                         : 0;
  if (ws) {
    result.ws_closed = ws->closed;
    if (ws->closed) {
      std::fprintf(stderr, "ws closed by the server: %s\n",
                   ws->close_reason.c_str());
    }
    ws->Stop();
  }
  return result;
}

int RunIngest(int argc, char** argv) {
  const int runs = Arg(argc, argv, 2, 3);
  const int seconds = Arg(argc, argv, 3, 10);
  const int topics = Arg(argc, argv, 4, 1000);
  PlatformStack stack;
  Say("ingest: %d distinct topics, %d s window after 2 s warm-up, %d runs "
      "per variant, load average %s",
      topics, seconds, runs, LoadAverage().c_str());
  struct Variant {
    int qos;
    bool ws;
    std::vector<IngestResult> results;
  };
  std::vector<Variant> variants = {
      {0, false, {}}, {0, true, {}}, {1, false, {}}, {1, true, {}}};
  for (int run = 1; run <= runs; ++run) {
    for (Variant& v : variants) {
      IngestResult r = Ingest(stack, v.qos, v.ws, seconds, topics);
      Say("  run %d qos %d %-5s bridge %8.0f msg/s  publisher %8.0f msg/s  "
          "delivered %5.1f %%  ws updates %8lld  skipped markers %5lld "
          "(skipped %lld)%s snapshot-timeouts %d  cpu bridge %.2f gateway %.2f "
          "broker %.2f  "
          "load %s",
          run, v.qos, v.ws ? "ws" : "no-ws", r.bridge_rate, r.publisher_rate,
          100 * r.delivered, static_cast<long long>(r.ws_updates),
          static_cast<long long>(r.ws_markers),
          static_cast<long long>(r.ws_skipped), r.ws_closed ? " CLOSED" : "",
          r.ws_snapshot_timeouts, r.bridge_cpu, r.gateway_cpu, r.broker_cpu,
          LoadAverage().c_str());
      v.results.push_back(r);
    }
  }
  Say("ingest summary (median of %d runs; target >= 20,000 msg/s with the "
      "WebSocket client):",
      runs);
  for (const Variant& v : variants) {
    std::vector<double> rate, pub, del, upd, mark, skip, cpu;
    int timeouts = 0;
    for (const IngestResult& r : v.results) {
      timeouts += r.ws_snapshot_timeouts;
      rate.push_back(r.bridge_rate);
      pub.push_back(r.publisher_rate);
      del.push_back(r.delivered);
      upd.push_back(static_cast<double>(r.ws_updates) / seconds);
      mark.push_back(static_cast<double>(r.ws_markers));
      skip.push_back(static_cast<double>(r.ws_skipped) / seconds);
      cpu.push_back(r.bridge_cpu);
    }
    Say("RESULT ingest qos=%d ws=%s bridge_msg_s=%.0f publisher_msg_s=%.0f "
        "delivered_pct=%.1f ws_updates_s=%.0f ws_skipped_markers=%.0f "
        "ws_skipped_s=%.0f bridge_cpu=%.2f ws_snapshot_timeouts=%d",
        v.qos, v.ws ? "yes" : "no", Median(rate), Median(pub),
        100 * Median(del), Median(upd), Median(mark), Median(skip), Median(cpu),
        timeouts);
  }
  Say("bridge RSS after the runs: %ld KiB, gateway %ld KiB",
      RssKib(stack.bridge_pid()), RssKib(stack.gateway_pid()));
  return 0;
}

// --- command -----------------------------------------------------------------

struct Percentiles {
  double p50, p90, p99, max;
};

Percentiles Stats(std::vector<double> ms) {
  Percentiles p{};
  p.p50 = Quantile(ms, 0.5);
  p.p90 = Quantile(ms, 0.9);
  p.p99 = Quantile(ms, 0.99);
  p.max = ms.empty() ? 0 : ms.back();
  return p;
}

int RunCommand(int argc, char** argv) {
  const int commands = Arg(argc, argv, 2, 1000);
  const int rounds = Arg(argc, argv, 3, 3);
  constexpr int kWarmup = 100;
  const std::string instance = "cmdbench";
  PlatformStack stack;
  auto demo = StartDemo(
      stack.root(), instance,
      R"({"update_interval": 60, "devices": [{"device_id": "light", "type": "light"}]})",
      "127.0.0.1", stack.broker().port());
  sdk::Topics topics = *sdk::Topics::Create(kBaseTopic, instance);
  auto capture = sdk::testing::TopicCapture::Start(
      "127.0.0.1", stack.broker().port(), topics.CommandResponse("light"));
  auto status = sdk::testing::TopicCapture::Start(
      "127.0.0.1", stack.broker().port(), topics.Status());
  if (!capture.ok() || !status.ok() ||
      !(*status)->WaitFor(
          topics.Status(), [](const auto& m) { return m.payload == "online"; },
          absl::Seconds(15))) {
    std::fprintf(stderr, "demo connector did not come online\n%s",
                 stack.Logs().c_str());
    return 1;
  }
  Say("command: %d commands per path per round after %d warm-up, %d rounds, "
      "load average %s",
      commands, kWarmup, rounds, LoadAverage().c_str());

  HttpClient http(stack.gateway_port());
  const std::string target =
      absl::StrCat("/api/devices/", instance, "/light/command");
  int seq = 0;
  int failures = 0;
  // Through the gateway: HTTP keep-alive -> gRPC -> bridge -> MQTT -> demo.
  auto via_gateway = [&](std::vector<double>* ms,
                         std::vector<double>* bridge_ms) {
    std::string body =
        absl::StrCat(R"({"values":{"brightness":)", 1 + seq++ % 100, "}}");
    absl::Time start = absl::Now();
    testing::HttpResponse response =
        http.Request("POST", target, body, stack.token());
    absl::Time end = absl::Now();
    if (response.status != 200 ||
        response.body.find("\"success\":true") == std::string::npos) {
      if (++failures <= 3) {
        std::fprintf(stderr, "gateway command: %d %s\n", response.status,
                     response.body.c_str());
      }
      return;
    }
    if (ms != nullptr) {
      ms->push_back(absl::ToDoubleMilliseconds(end - start));
      size_t at = response.body.find("\"latency_ms\":");
      if (at != std::string::npos) {
        bridge_ms->push_back(std::atof(response.body.c_str() + at + 13));
      }
    }
  };
  // The bridge's SendCommand over gRPC (no gateway).
  auto via_grpc = [&](std::vector<double>* ms, std::vector<double>* bridge_ms) {
    mqtt_bridge::v1::SendCommandRequest request;
    request.set_instance_id(instance);
    request.set_device_id("light");
    request.set_values(absl::StrCat(R"({"brightness":)", 1 + seq++ % 100, "}"));
    mqtt_bridge::v1::SendCommandResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    absl::Time start = absl::Now();
    grpc::Status s = stack.bridge().SendCommand(&context, request, &response);
    absl::Time end = absl::Now();
    if (!s.ok() || !response.success()) {
      if (++failures <= 3) {
        std::fprintf(stderr, "grpc command: %s\n", s.error_message().c_str());
      }
      return;
    }
    if (ms != nullptr) {
      ms->push_back(absl::ToDoubleMilliseconds(end - start));
      bridge_ms->push_back(response.latency_ms());
    }
  };
  // Bare MQTT: cmd -> cmd/response with a libmosquitto client (the floor).
  auto via_mqtt = [&](std::vector<double>* ms, std::vector<double>*) {
    std::string id = absl::StrCat("raw-", seq++);
    std::string payload = sdk::BuildCommandPayload(
        id, absl::Now(), absl::StrCat(R"({"brightness":)", seq % 100, "}"),
        5000);
    size_t mark = (*capture)->Mark();
    absl::Time start = absl::Now();
    if (!(*capture)->Publish(topics.Command("light"), payload, 1).ok()) {
      ++failures;
      return;
    }
    auto response = (*capture)->WaitFor(
        topics.CommandResponse("light"),
        [&id](const sdk::testing::CapturedMessage& m) {
          return m.payload.find(id + "\"") != std::string::npos;
        },
        absl::Seconds(5), mark);
    absl::Time end = absl::Now();
    if (!response) {
      ++failures;
      return;
    }
    if (ms != nullptr) ms->push_back(absl::ToDoubleMilliseconds(end - start));
  };

  struct Path {
    const char* name;
    std::function<void(std::vector<double>*, std::vector<double>*)> run;
    std::vector<double> all, bridge;
    std::vector<double> round_p50;
  };
  std::vector<Path> paths = {{"gateway (HTTP)", via_gateway, {}, {}, {}},
                             {"bridge gRPC", via_grpc, {}, {}, {}},
                             {"bare MQTT", via_mqtt, {}, {}, {}}};
  for (Path& path : paths) {
    for (int i = 0; i < kWarmup; ++i) path.run(nullptr, nullptr);
  }
  for (int round = 1; round <= rounds; ++round) {
    for (Path& path : paths) {
      std::vector<double> ms;
      const double cpu0 = CpuSeconds(stack.gateway_pid());
      const double cpu_bridge0 = CpuSeconds(stack.bridge_pid());
      absl::Time t0 = absl::Now();
      for (int i = 0; i < commands; ++i) path.run(&ms, &path.bridge);
      const double wall = absl::ToDoubleSeconds(absl::Now() - t0);
      Percentiles p = Stats(ms);
      Say("  round %d %-15s p50 %6.3f ms  p90 %6.3f  p99 %6.3f  max %7.3f  "
          "n %zu  cpu/cmd gateway %.0f us bridge %.0f us  load %s",
          round, path.name, p.p50, p.p90, p.p99, p.max, ms.size(),
          1e6 * (CpuSeconds(stack.gateway_pid()) - cpu0) / commands,
          1e6 * (CpuSeconds(stack.bridge_pid()) - cpu_bridge0) / commands,
          LoadAverage().c_str());
      (void)wall;
      path.round_p50.push_back(p.p50);
      path.all.insert(path.all.end(), ms.begin(), ms.end());
    }
  }
  Say("command summary (all rounds pooled; target p50 <= 5 ms through the "
      "gateway), failures %d:",
      failures);
  for (Path& path : paths) {
    Percentiles p = Stats(path.all);
    std::vector<double> bridge = path.bridge;
    Say("RESULT command path=\"%s\" n=%zu p50_ms=%.3f p90_ms=%.3f "
        "p99_ms=%.3f max_ms=%.3f median_round_p50_ms=%.3f "
        "bridge_publish_to_response_p50_ms=%.3f",
        path.name, path.all.size(), p.p50, p.p90, p.p99, p.max,
        Median(path.round_p50), bridge.empty() ? 0.0 : Quantile(bridge, 0.5));
  }
  return failures == 0 ? 0 : 1;
}

// --- memory ------------------------------------------------------------------

int RunMemory(int argc, char** argv) {
  const int topics = Arg(argc, argv, 2, 100000);
  PlatformStack stack;
  absl::SleepFor(absl::Seconds(2));
  GetStatusResponse before = stack.BridgeStatus();
  const long rss_before = RssKib(stack.bridge_pid());
  const long gateway_before = RssKib(stack.gateway_pid());
  const long broker_before = RssKib(stack.broker().pid());
  Say("memory: %d distinct retained topics; load average %s", topics,
      LoadAverage().c_str());
  Say("  before: bridge RSS %ld KiB, cache_topics %lld, cache_bytes %lld",
      rss_before, static_cast<long long>(before.topics_count()),
      static_cast<long long>(before.cache_bytes()));
  const std::string prefix = absl::StrCat(kBaseTopic, "/v1/instances/mem");
  FloodPublisher publisher(
      stack.broker().port(), 1, /*retain=*/true, 200,
      [&](int64_t i, std::string* topic, std::string* payload) {
        *topic =
            absl::StrCat(prefix, i / 1000, "/devices/dev", i % 1000, "/state");
        *payload = absl::StrCat(
            R"({"timestamp":"2026-11-23T10:00:00Z","device_id":"dev)", i % 1000,
            R"(","state":{"temperature":21.5,"seq":)", i, "}}");
      });
  if (!publisher.ok()) return 1;
  absl::Time t0 = absl::Now();
  publisher.Start(topics);
  GetStatusResponse after;
  bool reached = testing::WaitFor(
      [&] {
        after = stack.BridgeStatus();
        return after.topics_count() >= topics;
      },
      absl::Seconds(300));
  const double ingest_s = absl::ToDoubleSeconds(absl::Now() - t0);
  publisher.Stop();
  if (!reached) {
    std::fprintf(stderr, "cache reached only %lld topics (evicted %lld)\n",
                 static_cast<long long>(after.topics_count()),
                 static_cast<long long>(after.topics_evicted()));
  }
  absl::SleepFor(absl::Seconds(2));
  after = stack.BridgeStatus();
  const long rss_after = RssKib(stack.bridge_pid());
  const long hwm_after = PeakRssKib(stack.bridge_pid());
  Say("  after %.1f s: bridge RSS %ld KiB (peak %ld KiB), cache_topics %lld, "
      "cache_bytes %lld, evicted %lld, messages_received %lld",
      ingest_s, rss_after, hwm_after,
      static_cast<long long>(after.topics_count()),
      static_cast<long long>(after.cache_bytes()),
      static_cast<long long>(after.topics_evicted()),
      static_cast<long long>(after.messages_received()));
  // A new WebSocket client gets all of them in its first message.
  absl::Time ws0 = absl::Now();
  WsCounter ws(stack.gateway_port(),
               absl::StrCat("/ws/mqtt?token=", stack.token()));
  if (!ws.WaitFirst(absl::Seconds(60))) {
    std::fprintf(stderr, "no topics snapshot within 60 s: %s\n",
                 ws.first().c_str());
  }
  const double snapshot_s = absl::ToDoubleSeconds(absl::Now() - ws0);
  const size_t snapshot_bytes = ws.ok() ? ws.first().size() : 0;
  ws.Stop();
  absl::SleepFor(absl::Seconds(1));
  const long gateway_after = RssKib(stack.gateway_pid());
  const long gateway_peak = PeakRssKib(stack.gateway_pid());
  const long rss_final = RssKib(stack.bridge_pid());
  Say("  /ws/mqtt snapshot: %s, %zu bytes in %.2f s; gateway RSS %ld -> %ld "
      "KiB (peak %ld), bridge RSS after it %ld KiB (peak %ld); broker RSS "
      "%ld -> %ld KiB",
      ws.ok() ? "ok" : "FAILED", snapshot_bytes, snapshot_s, gateway_before,
      gateway_after, gateway_peak, rss_final, PeakRssKib(stack.bridge_pid()),
      broker_before, RssKib(stack.broker().pid()));
  Say("RESULT memory topics=%lld rss_before_kib=%ld rss_after_kib=%ld "
      "rss_delta_per_topic_bytes=%.0f cache_bytes=%lld evicted=%lld "
      "ingest_s=%.1f snapshot_bytes=%zu snapshot_s=%.2f gateway_peak_kib=%ld",
      static_cast<long long>(after.topics_count()), rss_before, rss_after,
      1024.0 * static_cast<double>(rss_after - rss_before) /
          static_cast<double>(std::max<int64_t>(1, after.topics_count())),
      static_cast<long long>(after.cache_bytes()),
      static_cast<long long>(after.topics_evicted()), ingest_s, snapshot_bytes,
      snapshot_s, gateway_peak);
  return reached ? 0 : 1;
}

}  // namespace
}  // namespace iot2mqtt::bench

int main(int argc, char** argv) {
  using namespace iot2mqtt::bench;  // NOLINT(build/namespaces)
  signal(SIGPIPE, SIG_IGN);
  std::string what = argc > 1 ? argv[1] : "";
  if (what == "ingest") return RunIngest(argc, argv);
  if (what == "command") return RunCommand(argc, argv);
  if (what == "memory") return RunMemory(argc, argv);
  std::fprintf(stderr,
               "usage: bridge_bench ingest [runs] [seconds] [topics]\n"
               "       bridge_bench command [commands] [rounds]\n"
               "       bridge_bench memory [topics]\n");
  return 2;
}
