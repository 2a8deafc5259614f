// Discovery-service benchmarks, run by hand
// (tests/bench/run_platform_bench.sh --discovery), never by ctest. Each
// starts the real platform (Mosquitto, iot2mqtt-config, -mqtt-bridge,
// -discovery, -gateway from build/bin) on loopback ports and logs in with
// WEB_ACCESS_KEY. Results are `RESULT {json}` lines, one per measurement
// (medians over the runs, with each run's figure); `RUN {json}` lines give
// every run.
//
//   discovery_bench tool-latency [calls=200] [runs=3]
//       POST /api/integrations/benchtool/tools/execute through the gateway
//       (one keep-alive connection, sequential, 10 warm-ups per path) of a
//       /bin/sh tool that prints {"ok":true,"result":{}}, declared with
//       network "local" and with network "none" (a new network namespace
//       per run). Same run: ExecuteTool over gRPC straight to the service,
//       the config service's GetConnectorSetup (the first step of every
//       call), the bare posix_spawn + wait of the same script from this
//       process (same stdin/stdout pipes), fork + exec, and fork +
//       unshare(CLONE_NEWNET) + exec (the kernel's share of "none"). The
//       paths alternate per run. Checks first that the "none" tool runs in
//       a network namespace other than this process's.
//   discovery_bench tool-parallel [runs=3]
//       20 and 32 concurrent calls of a tool that sleeps 1 s (ideal: 1 s of
//       wall time), then 32 of a 3 s tool and a 33rd call while they run
//       (429 TOO_MANY_TOOLS expected at TOOL_MAX_CONCURRENT=32).
//   discovery_bench discover [runs=3] [counts=1,20,100]
//       The real Yeelight discovery (iot2mqtt-yeelight-discover) against
//       the bulb simulator on 127.0.0.1 with that many bulbs: POST
//       /api/integrations/yeelight/discover {"timeout":1}, then the
//       session's WebSocket until it is no longer running, then GET
//       /api/discovery/devices until it lists every bulb; then a second,
//       identical scan (the stored count must not change). A fresh
//       platform and simulator per run.
//   discovery_bench memory [runs=3]
//       iot2mqtt-discovery's RSS 2 s after start (no call yet), while 32
//       tools run (3 s each), and after them. A fresh platform per run.
//   discovery_bench idle [repeats=5]
//       The first call after 0 to 2 s without traffic: the trivial tool
//       through the gateway and over gRPC, GetConnectorSetup, GET
//       /api/discovery/status and GET /api/configs (gRPC 1.51's callback
//       threads sleep 100 ms after 1 s without an event).

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/civil_time.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core/buffers_to_string.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/websocket/stream.hpp"
#include "connectors/yeelight/testing/bulb_simulator.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "iot2mqtt/config/v1/config_service.grpc.pb.h"
#include "iot2mqtt/discovery/v1/discovery_service.grpc.pb.h"
#include "iot2mqtt/sdk/json_builder.h"
#include "rapidjson/document.h"
#include "tests/bench/platform/platform_stack.h"
#include "tests/bench/sdk/bench_util.h"

namespace iot2mqtt::bench {
namespace {

namespace cv1 = ::iot2mqtt::config::v1;
namespace dv1 = ::iot2mqtt::discovery::v1;
namespace beast = boost::beast;
using boost::asio::ip::tcp;

constexpr char kToolConnector[] = "benchtool";
constexpr int kWarmup = 10;
constexpr int kMaxConcurrent = 32;  // The service's default.

int Arg(int argc, char** argv, int index, int fallback) {
  return argc > index ? std::atoi(argv[index]) : fallback;
}

double R3(double x) { return std::round(x * 1000) / 1000; }

std::string JsonNumbers(const std::vector<double>& values) {
  std::vector<std::string> parts;
  for (double v : values) {
    parts.push_back(sdk::JsonObjectBuilder().Set("v", R3(v)).Build());
    // {"v":x} -> x
    parts.back() = parts.back().substr(5, parts.back().size() - 6);
  }
  return absl::StrCat("[", absl::StrJoin(parts, ","), "]");
}

std::string JsonInts(const std::vector<double>& values) {
  std::vector<std::string> parts;
  for (double v : values) {
    parts.push_back(absl::StrCat(static_cast<int64_t>(std::llround(v))));
  }
  return absl::StrCat("[", absl::StrJoin(parts, ","), "]");
}

void Emit(const char* kind, sdk::JsonObjectBuilder& json) {
  Say("%s %s", kind, json.Build().c_str());
}

// --- The bench connector -----------------------------------------------------

void WriteExecutable(const std::string& path, const std::string& text) {
  testing::WriteFile(path, text);
  if (chmod(path.c_str(), 0755) != 0) {
    std::fprintf(stderr, "chmod %s failed\n", path.c_str());
    std::exit(1);
  }
}

// <connectors>/benchtool: noop.sh (prints the result at once) and sleep.sh
// (sleeps $BENCH_SLEEP s first), declared as tools with network local/none.
void MakeToolConnector(const std::string& connectors) {
  const std::string dir = absl::StrCat(connectors, "/", kToolConnector);
  if (mkdir(dir.c_str(), 0755) != 0) {
    std::fprintf(stderr, "mkdir %s failed\n", dir.c_str());
    std::exit(1);
  }
  WriteExecutable(dir + "/noop.sh",
                  "#!/bin/sh\nprintf '{\"ok\":true,\"result\":{}}\\n'\n");
  WriteExecutable(
      dir + "/netns.sh",
      "#!/bin/sh\nprintf '{\"ok\":true,\"result\":{\"netns\":\"%s\"}}"
      "\\n' \"$(readlink /proc/self/ns/net)\"\n");
  WriteExecutable(dir + "/sleep.sh",
                  "#!/bin/sh\nsleep \"$BENCH_SLEEP\"\n"
                  "printf '{\"ok\":true,\"result\":{}}\\n'\n");
  testing::WriteFile(dir + "/manifest.json", R"({
  "name": "benchtool",
  "display_name": "Discovery bench tools",
  "version": "0.0.1",
  "description": "Trivial setup tools for discovery_bench."
})");
  testing::WriteFile(dir + "/setup.json", R"({
  "version": "0.0.1",
  "display_name": "Discovery bench tools",
  "description": "Trivial setup tools for discovery_bench.",
  "flows": [{"id": "check", "name": "Check", "default": true, "steps": [
    {"id": "noop", "type": "tool", "title": "No-op", "tool": "noop_local"}]}],
  "tools": {
    "noop_local": {"entry": "noop.sh", "timeout": 10, "network": "local"},
    "noop_none": {"entry": "noop.sh", "timeout": 10, "network": "none"},
    "netns_local": {"entry": "netns.sh", "timeout": 10, "network": "local"},
    "netns_none": {"entry": "netns.sh", "timeout": 10, "network": "none"},
    "sleep_1": {"entry": "sleep.sh", "timeout": 30, "network": "local",
                "environment": {"BENCH_SLEEP": "1"}},
    "sleep_3": {"entry": "sleep.sh", "timeout": 30, "network": "local",
                "environment": {"BENCH_SLEEP": "3"}}
  }
})");
}

// <connectors>/yeelight: the source tree's connector folder (its files).
void CopyYeelight(const std::string& connectors) {
  const std::string target = connectors + "/yeelight";
  const std::string source = testing::SourcePath("connectors/yeelight");
  if (mkdir(target.c_str(), 0755) != 0) std::exit(1);
  for (const std::string& name : testing::ListDir(source)) {
    struct stat st;
    const std::string path = source + "/" + name;
    if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    testing::WriteFile(target + "/" + name, testing::ReadFile(path));
  }
}

StackOptions ToolStackOptions() {
  StackOptions options;
  options.discovery = true;
  options.prepare_connectors = MakeToolConnector;
  return options;
}

std::unique_ptr<dv1::DiscoveryService::Stub> DiscoveryStub(int port) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return dv1::DiscoveryService::NewStub(
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                grpc::InsecureChannelCredentials(), args));
}

std::string ToolBody(const std::string& tool) {
  return absl::StrCat(R"({"tool":")", tool, R"(","input":{}})");
}

std::string ToolTarget() {
  return absl::StrCat("/api/integrations/", kToolConnector, "/tools/execute");
}

bool ToolOk(const testing::HttpResponse& r) {
  return r.status == 200 && r.body.find("\"ok\":true") != std::string::npos;
}

// Child pids of `pid` (every thread's /proc/<pid>/task/<tid>/children).
std::vector<pid_t> ChildPids(pid_t pid) {
  std::vector<pid_t> out;
  const std::string dir = absl::StrCat("/proc/", pid, "/task");
  for (const std::string& tid : testing::ListDir(dir)) {
    std::ifstream in(absl::StrCat(dir, "/", tid, "/children"));
    pid_t child;
    while (in >> child) out.push_back(child);
  }
  return out;
}

int Threads(pid_t pid) {
  return static_cast<int>(
      testing::ListDir(absl::StrCat("/proc/", pid, "/task")).size());
}

// CPU seconds of a process from /proc/<pid>/stat: its own (utime + stime,
// threads that ended included, unlike the per-thread schedstat sum of
// CpuSeconds) and that of its reaped children (cutime + cstime: the tools).
struct ProcCpu {
  double self = 0;
  double children = 0;
};

ProcCpu ProcessCpu(pid_t pid) {
  ProcCpu out;
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  size_t close = text.rfind(')');
  if (close == std::string::npos) return out;
  std::istringstream fields(text.substr(close + 2));
  std::vector<std::string> f;
  std::string field;
  while (fields >> field) f.push_back(field);
  // f[0] is field 3 (state): utime is field 14, so f[11].
  if (f.size() < 15) return out;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  out.self = (std::atof(f[11].c_str()) + std::atof(f[12].c_str())) / tick;
  out.children = (std::atof(f[13].c_str()) + std::atof(f[14].c_str())) / tick;
  return out;
}

// --- Bare spawns (the floor) -------------------------------------------------

// The tool's clean environment, as the service gives it.
char kPath[] = "PATH=/usr/local/bin:/usr/bin:/bin";
char kHome[] = "HOME=/tmp";
char kLang[] = "LANG=C.UTF-8";
char* kEnv[] = {kPath, kHome, kLang, nullptr};

enum class SpawnKind { kPosixSpawn, kFork, kForkNetns };

// Runs `script` in `dir` with `request` on a stdin pipe and its stdout on a
// pipe read to EOF, then waits: posix_spawn (own process group), or fork +
// execve as the service does it, with unshare(CLONE_NEWNET) for kForkNetns.
// Whether it printed an ok result and exited 0.
bool SpawnOnce(const std::string& script, const std::string& dir,
               const std::string& request, SpawnKind kind) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) return false;
  if (pipe2(out, O_CLOEXEC) != 0) {
    close(in[0]);
    close(in[1]);
    return false;
  }
  std::string path = script;
  char* argv[] = {path.data(), nullptr};
  pid_t pid = -1;
  if (kind == SpawnKind::kPosixSpawn) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addchdir_np(&actions, dir.c_str());
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    int rc = posix_spawn(&pid, path.c_str(), &actions, &attr, argv, kEnv);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) pid = -1;
  } else {
    pid = fork();
    if (pid == 0) {
      setpgid(0, 0);
      if (kind == SpawnKind::kForkNetns && unshare(CLONE_NEWNET) != 0) {
        _exit(126);
      }
      if (dup2(in[0], STDIN_FILENO) < 0 || dup2(out[1], STDOUT_FILENO) < 0) {
        _exit(126);
      }
      if (chdir(dir.c_str()) != 0) _exit(126);
      execve(argv[0], argv, kEnv);
      _exit(127);
    }
  }
  close(in[0]);
  close(out[1]);
  if (pid < 0) {
    close(in[1]);
    close(out[0]);
    return false;
  }
  ssize_t ignored = write(in[1], request.data(), request.size());
  (void)ignored;  // EPIPE when the tool is already gone (SIGPIPE ignored).
  close(in[1]);
  std::string text;
  char buffer[4096];
  for (;;) {
    ssize_t n = read(out[0], buffer, sizeof buffer);
    if (n > 0) {
      text.append(buffer, static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;
    }
  }
  close(out[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
         text.find("\"ok\":true") != std::string::npos;
}

// --- tool-latency ------------------------------------------------------------

struct Path {
  // gateway, grpc, config_lookup, posix_spawn, fork_exec, fork_netns_exec.
  std::string name;
  std::string network;  // local / none
  // One call; its latency in ms, or < 0 on failure.
  std::function<double()> call = nullptr;
  std::vector<double> run_p50 = {}, run_p99 = {}, all = {};
  // gRPC: the service's duration_seconds.
  std::vector<double> service_ms = {};
  // Per call, per run: the service's own CPU, its tools' (reaped
  // children), the gateway's.
  std::vector<double> discovery_cpu_us = {}, tools_cpu_us = {},
                      gateway_cpu_us = {};
  int failures = 0;
};

int RunToolLatency(int argc, char** argv) {
  const int calls = Arg(argc, argv, 2, 200);
  const int runs = Arg(argc, argv, 3, 3);
  PlatformStack stack(ToolStackOptions());
  auto stub = DiscoveryStub(stack.discovery_port());
  HttpClient http(stack.gateway_port());
  const std::string script =
      absl::StrCat(stack.root(), "/connectors/", kToolConnector, "/noop.sh");
  const std::string dir =
      absl::StrCat(stack.root(), "/connectors/", kToolConnector);
  Say("tool-latency: %d sequential calls per path and run after %d warm-ups, "
      "%d runs; load average %s",
      calls, kWarmup, runs, LoadAverage().c_str());

  // The "none" tool really runs in another network namespace: the tools
  // report theirs (net:[inode]), compared with this process's.
  char own_ns[128] = {};
  ssize_t own_len = readlink("/proc/self/ns/net", own_ns, sizeof own_ns - 1);
  const std::string host_ns(own_ns,
                            own_len > 0 ? static_cast<size_t>(own_len) : 0);
  std::string ns_local, ns_none;
  for (auto [tool, out] : {std::make_pair("netns_local", &ns_local),
                           std::make_pair("netns_none", &ns_none)}) {
    testing::HttpResponse r =
        http.Request("POST", ToolTarget(), ToolBody(tool), stack.token());
    size_t at = r.body.find("\"netns\":\"");
    if (at != std::string::npos) {
      *out = r.body.substr(at + 9, r.body.find('"', at + 9) - at - 9);
    }
  }
  const bool isolated = !ns_none.empty() && ns_none != host_ns;
  Say("network namespaces: host %s, tool \"local\" %s, tool \"none\" %s "
      "(%s)",
      host_ns.c_str(), ns_local.c_str(), ns_none.c_str(),
      isolated ? "isolated" : "NOT ISOLATED");

  // The first step of every call: the service asks the config service for
  // the connector's setup.json.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto config = cv1::ConfigService::NewStub(
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", stack.config_port()),
                                grpc::InsecureChannelCredentials(), args));

  std::vector<Path> paths;
  paths.reserve(8);  // The gRPC paths keep a pointer to their Path.
  for (const char* network : {"local", "none"}) {
    const std::string tool = absl::StrCat("noop_", network);
    paths.push_back(
        {"gateway", network,
         [&http, &stack, body = ToolBody(tool)]() -> double {
           absl::Time t0 = absl::Now();
           testing::HttpResponse r =
               http.Request("POST", ToolTarget(), body, stack.token());
           double ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
           if (!ToolOk(r)) {
             std::fprintf(stderr, "gateway: %d %s\n", r.status, r.body.c_str());
             return -1;
           }
           return ms;
         }});
  }
  for (const char* network : {"local", "none"}) {
    const std::string tool = absl::StrCat("noop_", network);
    paths.push_back({"grpc", network, nullptr});
    Path* path = &paths.back();
    path->call = [&stub, tool, path]() -> double {
      dv1::ExecuteToolRequest request;
      request.set_integration(kToolConnector);
      request.set_tool(tool);
      request.set_input("{}");
      dv1::ExecuteToolResponse response;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::seconds(30));
      absl::Time t0 = absl::Now();
      grpc::Status s = stub->ExecuteTool(&context, request, &response);
      double ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
      if (!s.ok() || !response.ok()) {
        std::fprintf(stderr, "grpc: %s %s\n", s.error_message().c_str(),
                     response.result().c_str());
        return -1;
      }
      path->service_ms.push_back(1000 * response.duration_seconds());
      return ms;
    };
  }
  const std::string request = R"({"tool":"noop_local","input":{}})";
  paths.push_back({"config_lookup", "-", [&]() -> double {
                     cv1::GetConnectorSetupRequest lookup;
                     lookup.set_name(kToolConnector);
                     cv1::GetConnectorSetupResponse setup;
                     grpc::ClientContext context;
                     context.set_deadline(std::chrono::system_clock::now() +
                                          std::chrono::seconds(10));
                     absl::Time t0 = absl::Now();
                     grpc::Status s =
                         config->GetConnectorSetup(&context, lookup, &setup);
                     double ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
                     return s.ok() ? ms : -1;
                   }});
  auto bare = [&](SpawnKind kind) {
    return [&, kind]() -> double {
      absl::Time t0 = absl::Now();
      bool ok = SpawnOnce(script, dir, request, kind);
      double ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
      return ok ? ms : -1;
    };
  };
  paths.push_back({"posix_spawn", "local", bare(SpawnKind::kPosixSpawn)});
  paths.push_back({"fork_exec", "local", bare(SpawnKind::kFork)});
  paths.push_back({"fork_netns_exec", "none", bare(SpawnKind::kForkNetns)});

  for (Path& path : paths) {
    for (int i = 0; i < kWarmup; ++i) {
      if (path.call() < 0) ++path.failures;
    }
    path.service_ms.clear();
  }
  for (int run = 1; run <= runs; ++run) {
    for (Path& path : paths) {
      std::vector<double> ms;
      const size_t service0 = path.service_ms.size();
      const ProcCpu cpu_d0 = ProcessCpu(stack.discovery_pid());
      const ProcCpu cpu_g0 = ProcessCpu(stack.gateway_pid());
      const ProcCpu cpu_self0 = ProcessCpu(getpid());
      const bool bare = path.name != "gateway" && path.name != "grpc" &&
                        path.name != "config_lookup";
      absl::Time t0 = absl::Now();
      for (int i = 0; i < calls; ++i) {
        double v = path.call();
        if (v < 0) {
          ++path.failures;
        } else {
          ms.push_back(v);
        }
      }
      const double wall = absl::ToDoubleSeconds(absl::Now() - t0);
      const ProcCpu cpu_d1 = ProcessCpu(stack.discovery_pid());
      const double cpu_d = 1e6 * (cpu_d1.self - cpu_d0.self) / calls;
      // The tools' CPU: reaped by the service, or by this process.
      const double cpu_t =
          bare ? 1e6 * (ProcessCpu(getpid()).children - cpu_self0.children) /
                     calls
               : 1e6 * (cpu_d1.children - cpu_d0.children) / calls;
      const double cpu_g =
          1e6 * (ProcessCpu(stack.gateway_pid()).self - cpu_g0.self) / calls;
      std::vector<double> service(path.service_ms.begin() + service0,
                                  path.service_ms.end());
      path.all.insert(path.all.end(), ms.begin(), ms.end());
      const double p50 = Quantile(ms, 0.5);
      const double p99 = Quantile(ms, 0.99);
      path.run_p50.push_back(p50);
      path.run_p99.push_back(p99);
      path.discovery_cpu_us.push_back(cpu_d);
      path.tools_cpu_us.push_back(cpu_t);
      path.gateway_cpu_us.push_back(cpu_g);
      sdk::JsonObjectBuilder line;
      line.Set("bench", "tool-latency")
          .Set("run", run)
          .Set("path", path.name)
          .Set("network", path.network)
          .Set("n", static_cast<int64_t>(ms.size()))
          .Set("p50_ms", R3(p50))
          .Set("p99_ms", R3(p99))
          .Set("max_ms", R3(ms.empty() ? 0 : ms.back()))
          .Set("calls_per_s", R3(calls / wall))
          .Set("discovery_cpu_us_per_call", R3(cpu_d))
          .Set("tool_cpu_us_per_call", R3(cpu_t))
          .Set("gateway_cpu_us_per_call", R3(cpu_g))
          .Set("load", LoadAverage());
      if (!service.empty()) {
        line.Set("service_duration_p50_ms", R3(Quantile(service, 0.5)));
      }
      Emit("RUN", line);
    }
  }
  int failures = 0;
  for (Path& path : paths) {
    failures += path.failures;
    std::sort(path.all.begin(), path.all.end());
    std::vector<double> service = path.service_ms;
    sdk::JsonObjectBuilder line;
    line.Set("bench", "tool-latency")
        .Set("path", path.name)
        .Set("network", path.network)
        .Set("runs", runs)
        .Set("calls_per_run", calls)
        .Set("p50_ms", R3(Median(path.run_p50)))
        .Set("p99_ms", R3(Median(path.run_p99)))
        .SetRaw("run_p50_ms", JsonNumbers(path.run_p50))
        .SetRaw("run_p99_ms", JsonNumbers(path.run_p99))
        .Set("pooled_p50_ms", R3(Quantile(path.all, 0.5)))
        .Set("pooled_p99_ms", R3(Quantile(path.all, 0.99)))
        .Set("max_ms", R3(path.all.empty() ? 0 : path.all.back()))
        .Set("discovery_cpu_us_per_call", R3(Median(path.discovery_cpu_us)))
        .Set("tool_cpu_us_per_call", R3(Median(path.tools_cpu_us)))
        .Set("gateway_cpu_us_per_call", R3(Median(path.gateway_cpu_us)))
        .Set("failures", path.failures);
    if (!service.empty()) {
      line.Set("service_duration_p50_ms", R3(Quantile(service, 0.5)));
    }
    Emit("RESULT", line);
  }
  sdk::JsonObjectBuilder ns;
  ns.Set("bench", "tool-latency-netns")
      .Set("host", host_ns)
      .Set("tool_local", ns_local)
      .Set("tool_none", ns_none)
      .Set("none_isolated", isolated);
  Emit("RESULT", ns);
  Say("discovery RSS after the runs: %ld KiB (peak %ld KiB), %d threads",
      RssKib(stack.discovery_pid()), PeakRssKib(stack.discovery_pid()),
      Threads(stack.discovery_pid()));
  return failures == 0 && isolated ? 0 : 1;
}

// --- idle
// ----------------------------------------------------------------------

// The first call after a quiet period (what a user's click meets): the
// trivial tool through the gateway and over gRPC, and the config service's
// GetConnectorSetup, and two gateway routes without a tool, each after 0 to
// 2 s without any traffic.
int RunIdle(int argc, char** argv) {
  const int repeats = Arg(argc, argv, 2, 5);
  PlatformStack stack(ToolStackOptions());
  auto stub = DiscoveryStub(stack.discovery_port());
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto config = cv1::ConfigService::NewStub(
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", stack.config_port()),
                                grpc::InsecureChannelCredentials(), args));
  HttpClient http(stack.gateway_port());
  auto via_gateway = [&]() -> double {
    absl::Time t0 = absl::Now();
    testing::HttpResponse r = http.Request(
        "POST", ToolTarget(), ToolBody("noop_local"), stack.token());
    double ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
    return ToolOk(r) ? ms : -1;
  };
  auto via_grpc = [&]() -> double {
    dv1::ExecuteToolRequest request;
    request.set_integration(kToolConnector);
    request.set_tool("noop_local");
    dv1::ExecuteToolResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(30));
    absl::Time t0 = absl::Now();
    grpc::Status s = stub->ExecuteTool(&context, request, &response);
    double ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
    return s.ok() && response.ok() ? ms : -1;
  };
  auto lookup = [&]() -> double {
    cv1::GetConnectorSetupRequest request;
    request.set_name(kToolConnector);
    cv1::GetConnectorSetupResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    absl::Time t0 = absl::Now();
    grpc::Status s = config->GetConnectorSetup(&context, request, &response);
    double ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
    return s.ok() ? ms : -1;
  };
  struct Probe {
    const char* name;
    std::function<double()> call;
  };
  auto get = [&](const char* target) {
    return [&, target]() -> double {
      absl::Time t0 = absl::Now();
      testing::HttpResponse r = http.Request("GET", target, "", stack.token());
      double ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
      return r.status == 200 ? ms : -1;
    };
  };
  std::vector<Probe> probes = {
      {"gateway_tool", via_gateway},
      {"grpc_tool", via_grpc},
      {"config_lookup", lookup},
      // Gateway -> discovery (-> config) without a tool, and gateway ->
      // config only.
      {"gateway_discovery_status", get("/api/discovery/status")},
      {"gateway_configs", get("/api/configs")}};
  for (Probe& p : probes) {
    for (int i = 0; i < kWarmup; ++i) (void)p.call();
  }
  Say("idle: the first call after a quiet period, %d times each; load "
      "average %s",
      repeats, LoadAverage().c_str());
  int failures = 0;
  for (Probe& p : probes) {
    for (double gap : {0.0, 0.3, 0.6, 1.0, 1.5, 2.0}) {
      std::vector<double> ms;
      for (int i = 0; i < repeats; ++i) {
        (void)p.call();  // Everything warm, then the quiet period.
        absl::SleepFor(absl::Seconds(gap));
        double v = p.call();
        if (v < 0) {
          ++failures;
        } else {
          ms.push_back(v);
        }
      }
      std::vector<double> sorted = ms;
      std::sort(sorted.begin(), sorted.end());
      sdk::JsonObjectBuilder line;
      line.Set("bench", "idle")
          .Set("probe", p.name)
          .Set("idle_s", gap)
          .Set("n", static_cast<int64_t>(ms.size()))
          .Set("median_ms", R3(Median(ms)))
          .Set("max_ms", R3(sorted.empty() ? 0 : sorted.back()))
          .SetRaw("ms", JsonNumbers(ms));
      Emit("RESULT", line);
    }
  }
  return failures == 0 ? 0 : 1;
}

// --- tool-parallel -----------------------------------------------------------

struct BatchResult {
  double wall_s = 0;   // Release to the last answer.
  double first_s = 0;  // Release to the first answer.
  int ok = 0;
  std::vector<std::string> failures;  // "status body" of the others.
};

// `count` threads, each on its own keep-alive connection (opened before the
// release), POST `tool` at once. `while_running` (optional) runs on this
// thread after the release.
BatchResult Batch(PlatformStack& stack, int count, const std::string& tool,
                  const std::function<void()>& while_running = nullptr) {
  BatchResult result;
  std::vector<std::unique_ptr<HttpClient>> clients;
  for (int i = 0; i < count; ++i) {
    clients.push_back(std::make_unique<HttpClient>(stack.gateway_port()));
    // Opens the connection (and checks the token) outside the timing.
    testing::HttpResponse r = clients.back()->Request(
        "GET", "/api/discovery/status", "", stack.token());
    if (r.status != 200) {
      result.failures.push_back(absl::StrCat("status ", r.status, r.body));
    }
  }
  absl::Notification go;
  std::vector<absl::Time> ends(static_cast<size_t>(count));
  std::vector<testing::HttpResponse> answers(static_cast<size_t>(count));
  std::vector<std::thread> threads;
  for (int i = 0; i < count; ++i) {
    threads.emplace_back([&, i] {
      go.WaitForNotification();
      answers[static_cast<size_t>(i)] =
          clients[static_cast<size_t>(i)]->Request(
              "POST", ToolTarget(), ToolBody(tool), stack.token());
      ends[static_cast<size_t>(i)] = absl::Now();
    });
  }
  const absl::Time t0 = absl::Now();
  go.Notify();
  if (while_running) while_running();
  for (std::thread& t : threads) t.join();
  absl::Time last = t0, first = absl::InfiniteFuture();
  for (int i = 0; i < count; ++i) {
    last = std::max(last, ends[static_cast<size_t>(i)]);
    first = std::min(first, ends[static_cast<size_t>(i)]);
    const testing::HttpResponse& r = answers[static_cast<size_t>(i)];
    if (ToolOk(r)) {
      ++result.ok;
    } else {
      result.failures.push_back(absl::StrCat(r.status, " ", r.body));
    }
  }
  result.wall_s = absl::ToDoubleSeconds(last - t0);
  result.first_s = absl::ToDoubleSeconds(first - t0);
  return result;
}

int RunToolParallel(int argc, char** argv) {
  const int runs = Arg(argc, argv, 2, 3);
  PlatformStack stack(ToolStackOptions());
  Say("tool-parallel: batches of a 1 s tool through the gateway, %d runs; "
      "load average %s",
      runs, LoadAverage().c_str());
  // Warm-up: one call of each tool's script.
  {
    HttpClient http(stack.gateway_port());
    testing::HttpResponse r = http.Request(
        "POST", ToolTarget(), ToolBody("noop_local"), stack.token());
    if (!ToolOk(r)) {
      std::fprintf(stderr, "warm-up failed: %d %s\n%s", r.status,
                   r.body.c_str(), stack.Logs().c_str());
      return 1;
    }
  }
  int failures = 0;
  for (int count : {20, 32}) {
    std::vector<double> walls, firsts;
    for (int run = 1; run <= runs; ++run) {
      BatchResult b = Batch(stack, count, "sleep_1");
      for (size_t i = 0; i < b.failures.size() && i < 3; ++i) {
        std::fprintf(stderr, "batch %d: %s\n", count, b.failures[i].c_str());
      }
      failures += static_cast<int>(b.failures.size());
      walls.push_back(b.wall_s);
      firsts.push_back(b.first_s);
      sdk::JsonObjectBuilder line;
      line.Set("bench", "tool-parallel")
          .Set("run", run)
          .Set("concurrent", count)
          .Set("tool_sleep_s", 1)
          .Set("wall_s", R3(b.wall_s))
          .Set("first_answer_s", R3(b.first_s))
          .Set("ok", b.ok)
          .Set("failed", static_cast<int>(b.failures.size()))
          .Set("load", LoadAverage());
      Emit("RUN", line);
    }
    sdk::JsonObjectBuilder line;
    line.Set("bench", "tool-parallel")
        .Set("concurrent", count)
        .Set("tool_sleep_s", 1)
        .Set("runs", runs)
        .Set("wall_s", R3(Median(walls)))
        .SetRaw("run_wall_s", JsonNumbers(walls))
        .Set("first_answer_s", R3(Median(firsts)))
        .Set("ideal_s", 1.0);
    Emit("RESULT", line);
  }

  // 32 running (3 s each), then a 33rd.
  std::vector<double> extra_ms;
  std::vector<std::string> extra_answers;
  std::vector<double> walls;
  for (int run = 1; run <= runs; ++run) {
    int extra_status = 0;
    std::string extra_code;
    double extra = 0;
    int running_seen = 0;
    BatchResult b = Batch(stack, kMaxConcurrent, "sleep_3", [&] {
      // Waits until the service runs all 32 (its children), then calls.
      testing::WaitFor(
          [&] {
            running_seen =
                static_cast<int>(ChildPids(stack.discovery_pid()).size());
            return running_seen >= kMaxConcurrent;
          },
          absl::Seconds(2));
      HttpClient http(stack.gateway_port());
      (void)http.Request("GET", "/api/discovery/status", "", stack.token());
      absl::Time t0 = absl::Now();
      testing::HttpResponse r = http.Request(
          "POST", ToolTarget(), ToolBody("noop_local"), stack.token());
      extra = absl::ToDoubleMilliseconds(absl::Now() - t0);
      extra_status = r.status;
      extra_code = JsonString(r.body, "code");
      if (extra_code.empty()) extra_code = r.body.substr(0, 80);
    });
    failures += static_cast<int>(b.failures.size());
    for (size_t i = 0; i < b.failures.size() && i < 3; ++i) {
      std::fprintf(stderr, "batch 32x3s: %s\n", b.failures[i].c_str());
    }
    extra_ms.push_back(extra);
    walls.push_back(b.wall_s);
    extra_answers.push_back(absl::StrCat(extra_status, " ", extra_code));
    sdk::JsonObjectBuilder line;
    line.Set("bench", "tool-parallel-33rd")
        .Set("run", run)
        .Set("running_children", running_seen)
        .Set("status", extra_status)
        .Set("code", extra_code)
        .Set("answer_ms", R3(extra))
        .Set("batch_ok", b.ok)
        .Set("batch_wall_s", R3(b.wall_s))
        .Set("load", LoadAverage());
    Emit("RUN", line);
  }
  std::vector<std::string> quoted;
  for (const std::string& a : extra_answers) {
    quoted.push_back(sdk::JsonObjectBuilder().Set("a", a).Build().substr(5));
    quoted.back().pop_back();
  }
  sdk::JsonObjectBuilder line;
  line.Set("bench", "tool-parallel-33rd")
      .Set("runs", runs)
      .Set("max_concurrent", kMaxConcurrent)
      .SetRaw("answers", absl::StrCat("[", absl::StrJoin(quoted, ","), "]"))
      .Set("answer_ms", R3(Median(extra_ms)))
      .Set("batch_of_32x3s_wall_s", R3(Median(walls)));
  Emit("RESULT", line);
  Say("discovery RSS after the runs: %ld KiB (peak %ld KiB), %d threads",
      RssKib(stack.discovery_pid()), PeakRssKib(stack.discovery_pid()),
      Threads(stack.discovery_pid()));
  return failures == 0 ? 0 : 1;
}

// --- discover ----------------------------------------------------------------

// Follows /api/discovery/{id} until a frame whose status is not `running`.
struct SessionFollow {
  bool ok = false;
  std::string error;
  std::string status;
  int devices = 0;
  int frames = 0;
  absl::Time end;
  double session_s = -1;  // finished_at - started_at of the final frame.
};

// An ISO-8601 UTC time with `Z` ("2026-11-22T22:01:03.114Z").
absl::Time ParseUtc(const rapidjson::Value& doc, const char* key) {
  absl::Time t = absl::InfinitePast();
  if (!doc.HasMember(key) || !doc[key].IsString()) return t;
  std::string error;
  if (!absl::ParseTime("%Y-%m-%dT%H:%M:%E*SZ", doc[key].GetString(), &t,
                       &error)) {
    return absl::InfinitePast();
  }
  return t;
}

SessionFollow FollowSession(int port, const std::string& target,
                            absl::Duration timeout) {
  SessionFollow out;
  try {
    boost::asio::io_context ioc;
    beast::websocket::stream<tcp::socket> ws(ioc);
    ws.next_layer().connect(
        tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"),
                      static_cast<unsigned short>(port)));
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(absl::ToInt64Seconds(timeout));
    setsockopt(ws.next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv,
               sizeof tv);
    ws.read_message_max(64u << 20);
    ws.handshake(absl::StrCat("127.0.0.1:", port), target);
    for (;;) {
      beast::flat_buffer buffer;
      ws.read(buffer);
      ++out.frames;
      std::string frame = beast::buffers_to_string(buffer.data());
      rapidjson::Document doc;
      doc.Parse(frame.c_str(), frame.size());
      if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("status") ||
          !doc["status"].IsString()) {
        out.error = "not a session: " + frame.substr(0, 200);
        return out;
      }
      out.status = doc["status"].GetString();
      if (doc.HasMember("devices") && doc["devices"].IsArray()) {
        out.devices = static_cast<int>(doc["devices"].Size());
      }
      if (out.status != "running") {
        out.end = absl::Now();
        absl::Time started = ParseUtc(doc, "started_at");
        absl::Time finished = ParseUtc(doc, "finished_at");
        if (started != absl::InfinitePast() &&
            finished != absl::InfinitePast()) {
          out.session_s = absl::ToDoubleSeconds(finished - started);
        }
        out.ok = true;
        boost::system::error_code ignored;
        ws.close(beast::websocket::close_code::normal, ignored);
        return out;
      }
    }
  } catch (const boost::system::system_error& e) {
    out.error = e.what();
  }
  return out;
}

int CountListed(const std::string& body) {
  rapidjson::Document doc;
  doc.Parse(body.c_str(), body.size());
  if (doc.HasParseError() || !doc.IsArray()) return -1;
  return static_cast<int>(doc.Size());
}

struct ScanResult {
  bool ok = false;
  double post_ms = 0;
  double completed_s = 0;  // POST sent -> final WebSocket frame.
  double listed_s = 0;     // POST sent -> GET lists them all.
  int session_devices = 0;
  int listed = 0;
  int frames = 0;
  double session_s = -1;  // The session's own finished_at - started_at.
  std::string status;
};

ScanResult Scan(PlatformStack& stack, int count) {
  ScanResult out;
  HttpClient http(stack.gateway_port());
  // The connection is open before the clock starts.
  (void)http.Request("GET", "/api/discovery/status", "", stack.token());
  const absl::Time t0 = absl::Now();
  testing::HttpResponse started =
      http.Request("POST", "/api/integrations/yeelight/discover",
                   R"({"timeout":1})", stack.token());
  out.post_ms = absl::ToDoubleMilliseconds(absl::Now() - t0);
  const std::string url = JsonString(started.body, "websocket_url");
  if (started.status != 200 || url.empty()) {
    std::fprintf(stderr, "discover: %d %s\n", started.status,
                 started.body.c_str());
    return out;
  }
  SessionFollow follow = FollowSession(
      stack.gateway_port(), absl::StrCat(url, "?token=", stack.token()),
      absl::Seconds(60));
  if (!follow.ok) {
    std::fprintf(stderr, "session socket: %s\n", follow.error.c_str());
    return out;
  }
  out.completed_s = absl::ToDoubleSeconds(follow.end - t0);
  out.session_devices = follow.devices;
  out.frames = follow.frames;
  out.status = follow.status;
  out.session_s = follow.session_s;
  // Then the stored list, as a UI would reload it.
  bool listed = testing::WaitFor(
      [&] {
        testing::HttpResponse r =
            http.Request("GET", "/api/discovery/devices", "", stack.token());
        out.listed = r.status == 200 ? CountListed(r.body) : -1;
        return out.listed >= count;
      },
      absl::Seconds(30));
  out.listed_s = absl::ToDoubleSeconds(absl::Now() - t0);
  out.ok = listed && follow.status == "completed" && follow.devices == count;
  return out;
}

int RunDiscover(int argc, char** argv) {
  const int runs = Arg(argc, argv, 2, 3);
  std::vector<int> counts = {1, 20, 100};
  if (argc > 3) {
    counts.clear();
    for (absl::string_view c : absl::StrSplit(argv[3], ',')) {
      counts.push_back(std::atoi(std::string(c).c_str()));
    }
  }
  Say("discover: Yeelight discovery {\"timeout\":1} against the bulb "
      "simulator, %d runs per bulb count, a fresh platform each; load "
      "average %s",
      runs, LoadAverage().c_str());
  int failures = 0;
  for (int count : counts) {
    std::vector<double> post, completed, listed, completed2, listed2, own;
    std::vector<double> after_second;
    for (int run = 1; run <= runs; ++run) {
      auto simulator =
          yeelight::testing::BulbSimulator::Start(static_cast<size_t>(count));
      if (!simulator.ok()) {
        std::fprintf(stderr, "simulator: %s\n",
                     simulator.status().ToString().c_str());
        return 1;
      }
      StackOptions options;
      options.discovery = true;
      options.discovery_env = {
          {"YEELIGHT_DISCOVERY_ADDRESS", (*simulator)->discovery_address()}};
      options.prepare_connectors = CopyYeelight;
      PlatformStack stack(options);
      const double cpu0 = CpuSeconds(stack.discovery_pid());
      ScanResult first = Scan(stack, count);
      ScanResult second = Scan(stack, count);
      const double cpu = CpuSeconds(stack.discovery_pid()) - cpu0;
      if (!first.ok || !second.ok || second.listed != count) {
        ++failures;
        std::fprintf(stderr, "discover %d run %d failed\n%s", count, run,
                     stack.Logs().c_str());
      }
      post.push_back(first.post_ms);
      completed.push_back(first.completed_s);
      own.push_back(first.session_s);
      listed.push_back(first.listed_s);
      completed2.push_back(second.completed_s);
      listed2.push_back(second.listed_s);
      after_second.push_back(second.listed);
      sdk::JsonObjectBuilder line;
      line.Set("bench", "discover")
          .Set("run", run)
          .Set("bulbs", count)
          .Set("post_ms", R3(first.post_ms))
          .Set("completed_s", R3(first.completed_s))
          .Set("listed_s", R3(first.listed_s))
          .Set("session_started_to_finished_s", R3(first.session_s))
          .Set("status", first.status)
          .Set("session_devices", first.session_devices)
          .Set("listed", first.listed)
          .Set("frames", first.frames)
          .Set("second_completed_s", R3(second.completed_s))
          .Set("second_listed_s", R3(second.listed_s))
          .Set("second_status", second.status)
          .Set("second_session_devices", second.session_devices)
          .Set("listed_after_second", second.listed)
          .Set("searches_seen_by_simulator",
               static_cast<int64_t>((*simulator)->search_count()))
          .Set("discovery_cpu_s", R3(cpu))
          .Set("discovery_rss_kib",
               static_cast<int64_t>(RssKib(stack.discovery_pid())))
          .Set("load", LoadAverage());
      Emit("RUN", line);
    }
    sdk::JsonObjectBuilder line;
    line.Set("bench", "discover")
        .Set("bulbs", count)
        .Set("runs", runs)
        .Set("timeout_s", 1)
        .Set("post_ms", R3(Median(post)))
        .Set("completed_s", R3(Median(completed)))
        .SetRaw("run_completed_s", JsonNumbers(completed))
        .Set("session_started_to_finished_s", R3(Median(own)))
        .Set("listed_s", R3(Median(listed)))
        .SetRaw("run_listed_s", JsonNumbers(listed))
        .Set("second_completed_s", R3(Median(completed2)))
        .Set("second_listed_s", R3(Median(listed2)))
        .SetRaw("listed_after_second", JsonInts(after_second));
    Emit("RESULT", line);
  }
  return failures == 0 ? 0 : 1;
}

// --- memory ------------------------------------------------------------------

int RunMemory(int argc, char** argv) {
  const int runs = Arg(argc, argv, 2, 3);
  Say("memory: iot2mqtt-discovery RSS idle and with %d tools running, %d "
      "runs (fresh platform each); load average %s",
      kMaxConcurrent, runs, LoadAverage().c_str());
  std::vector<double> idle, during, peak, after, threads_idle, threads_during;
  int failures = 0;
  for (int run = 1; run <= runs; ++run) {
    PlatformStack stack(ToolStackOptions());
    const pid_t pid = stack.discovery_pid();
    absl::SleepFor(absl::Seconds(2));
    const long rss_idle = RssKib(pid);
    const int t_idle = Threads(pid);
    long rss_during = 0;
    int t_during = 0, children = 0;
    BatchResult b = Batch(stack, kMaxConcurrent, "sleep_3", [&] {
      testing::WaitFor(
          [&] {
            children = static_cast<int>(ChildPids(pid).size());
            return children >= kMaxConcurrent;
          },
          absl::Seconds(2));
      // Samples while they run (they end ~3 s after the release).
      for (int i = 0; i < 15; ++i) {
        rss_during = std::max(rss_during, RssKib(pid));
        t_during = std::max(t_during, Threads(pid));
        absl::SleepFor(absl::Milliseconds(100));
      }
    });
    failures += static_cast<int>(b.failures.size());
    absl::SleepFor(absl::Seconds(1));
    const long rss_after = RssKib(pid);
    // VmHWM is updated lazily by the kernel: a sample may exceed it.
    const long rss_peak = std::max(PeakRssKib(pid), rss_during);
    idle.push_back(static_cast<double>(rss_idle));
    during.push_back(static_cast<double>(rss_during));
    peak.push_back(static_cast<double>(rss_peak));
    after.push_back(static_cast<double>(rss_after));
    threads_idle.push_back(t_idle);
    threads_during.push_back(t_during);
    sdk::JsonObjectBuilder line;
    line.Set("bench", "memory")
        .Set("run", run)
        .Set("rss_idle_kib", static_cast<int64_t>(rss_idle))
        .Set("rss_during_kib", static_cast<int64_t>(rss_during))
        .Set("rss_peak_kib", static_cast<int64_t>(rss_peak))
        .Set("rss_after_kib", static_cast<int64_t>(rss_after))
        .Set("threads_idle", t_idle)
        .Set("threads_during", t_during)
        .Set("children_seen", children)
        .Set("batch_ok", b.ok)
        .Set("load", LoadAverage());
    Emit("RUN", line);
  }
  sdk::JsonObjectBuilder line;
  line.Set("bench", "memory")
      .Set("runs", runs)
      .Set("tools_running", kMaxConcurrent)
      .Set("rss_idle_kib", static_cast<int64_t>(std::llround(Median(idle))))
      .Set("rss_during_kib", static_cast<int64_t>(std::llround(Median(during))))
      .Set("rss_peak_kib", static_cast<int64_t>(std::llround(Median(peak))))
      .Set("rss_after_kib", static_cast<int64_t>(std::llround(Median(after))))
      .SetRaw("run_rss_idle_kib", JsonInts(idle))
      .SetRaw("run_rss_during_kib", JsonInts(during))
      .SetRaw("run_rss_peak_kib", JsonInts(peak))
      .Set("threads_idle",
           static_cast<int64_t>(std::llround(Median(threads_idle))))
      .Set("threads_during",
           static_cast<int64_t>(std::llround(Median(threads_during))));
  Emit("RESULT", line);
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace iot2mqtt::bench

int main(int argc, char** argv) {
  using namespace iot2mqtt::bench;  // NOLINT(build/namespaces)
  signal(SIGPIPE, SIG_IGN);
  std::string what = argc > 1 ? argv[1] : "";
  if (what == "tool-latency") return RunToolLatency(argc, argv);
  if (what == "tool-parallel") return RunToolParallel(argc, argv);
  if (what == "discover") return RunDiscover(argc, argv);
  if (what == "memory") return RunMemory(argc, argv);
  if (what == "idle") return RunIdle(argc, argv);
  std::fprintf(stderr,
               "usage: discovery_bench tool-latency [calls] [runs]\n"
               "       discovery_bench tool-parallel [runs]\n"
               "       discovery_bench discover [runs] [counts,...]\n"
               "       discovery_bench memory [runs]\n"
               "       discovery_bench idle [repeats]\n");
  return 2;
}
