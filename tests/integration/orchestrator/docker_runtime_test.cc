// The docker runtime against a real dockerd (ARCHITECTURE.md §10):
// ensure_dockerd.sh starts `dockerd --bridge=none --iptables=false` when
// none answers; when none can be had every case prints "SKIPPED: <reason>"
// and CTest reports it as skipped. Images are built FROM scratch from
// build/bin/iot2mqtt-connector-demo and its shared libraries; the
// connectors use host networking and reach a loopback Mosquitto.
//
// Every name is unique to the test process (connector "itest-<pid>-<rand>"),
// so parallel runs never share a container or an image, and everything a
// case made is removed when it ends, passed or failed.

#include "services/orchestrator/docker_runtime.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "catch2/catch.hpp"
#include "iot2mqtt/sdk/contract.h"
#include "rapidjson/document.h"
#include "sdk/testing/loopback_broker.h"
#include "sdk/testing/topic_capture.h"
#include "services/common/status.h"
#include "services/orchestrator/docker_api.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::orchestrator {
namespace {

using ::iot2mqtt::testing::BinaryPath;
using ::iot2mqtt::testing::ChildProcess;
using ::iot2mqtt::testing::ReadFile;
using ::iot2mqtt::testing::SourcePath;
using ::iot2mqtt::testing::TempDir;
using ::iot2mqtt::testing::WaitFor;
using ::iot2mqtt::testing::WriteFile;
using sdk::testing::CapturedMessage;
using sdk::testing::LoopbackBroker;
using sdk::testing::TopicCapture;

constexpr absl::Duration kOnlineTimeout = absl::Seconds(30);
constexpr char kDemoEntry[] = "iot2mqtt-connector-demo";

// ---------------------------------------------------------------------------
// A daemon, or a visible reason why not.

struct Daemon {
  enum class State { kAvailable, kUnavailable, kBroken } state;
  std::string text;  // What ensure_dockerd.sh said last.
};

const Daemon& EnsureDaemon() {
  static const Daemon daemon = [] {
    TempDir dir;
    std::string log = dir.Join("ensure_dockerd.log");
    std::map<std::string, std::string> env;
    if (const char* host = getenv("DOCKER_HOST")) env["DOCKER_HOST"] = host;
    auto child = ChildProcess::Start(
        "/bin/bash",
        {SourcePath("tests/integration/orchestrator/ensure_dockerd.sh")}, env,
        log);
    if (!child.ok()) {
      return Daemon{Daemon::State::kBroken, child.status().ToString()};
    }
    absl::StatusOr<int> code = (*child)->Wait(absl::Seconds(150));
    std::string output = ReadFile(log);
    std::vector<std::string> lines =
        absl::StrSplit(output, '\n', absl::SkipWhitespace());
    std::string last = lines.empty() ? "" : lines.back();
    if (code.ok() && *code == 0) return Daemon{Daemon::State::kAvailable, last};
    if (code.ok() && *code == 77) {
      return Daemon{Daemon::State::kUnavailable,
                    std::string(absl::StripPrefix(last, "SKIPPED: "))};
    }
    return Daemon{Daemon::State::kBroken,
                  absl::StrCat("ensure_dockerd.sh: ",
                               code.ok() ? absl::StrCat("exit ", *code)
                                         : code.status().ToString(),
                               ": ", output)};
  }();
  return daemon;
}

// False (after saying why, in a line CTest's SKIP_REGULAR_EXPRESSION
// matches) when no dockerd can be had.
bool DockerOrSkip() {
  const Daemon& daemon = EnsureDaemon();
  if (daemon.state == Daemon::State::kBroken) FAIL(daemon.text);
  if (daemon.state == Daemon::State::kUnavailable) {
    std::cout << "SKIPPED: no Docker daemon: " << daemon.text << std::endl;
    WARN("SKIPPED: no Docker daemon: " << daemon.text);
    return false;
  }
  return true;
}

std::string SocketPath() {
  absl::StatusOr<std::string> socket = DockerSocketPath(getenv("DOCKER_HOST"));
  REQUIRE(socket.ok());
  return *socket;
}

std::string DirName(const std::string& path) {
  return path.substr(0, path.rfind('/'));
}

rapidjson::Document Json(const std::string& text) {
  rapidjson::Document doc;
  doc.Parse(text.data(), text.size());
  REQUIRE_FALSE(doc.HasParseError());
  return doc;
}

TopicCapture::Predicate Payload(const std::string& payload) {
  return [payload](const CapturedMessage& m) { return m.payload == payload; };
}

// ---------------------------------------------------------------------------
// One case's world: a connector directory with a unique name, a data
// directory, a loopback broker, a runtime; everything removed at the end.

class World {
 public:
  World()
      : api_(DockerApiOptions{SocketPath(), absl::Seconds(5)}),
        runtime_(Options()) {
    std::mt19937 random(std::random_device{}());
    suffix_ = absl::StrCat(getpid(), "-",
                           absl::Hex(random() & 0xffff, absl::kZeroPad4));
    connector_ = absl::StrCat("itest-", suffix_);
    connector_dir_ = dir_.Join(connector_);
    REQUIRE(mkdir(connector_dir_.c_str(), 0755) == 0);
    WriteFile(connector_dir_ + "/manifest.json",
              ReadFile(SourcePath("connectors/demo/manifest.json")));
    for (const char* sub : {"data", "data/instances", "data/shared"}) {
      REQUIRE(mkdir(dir_.Join(sub).c_str(), 0755) == 0);
    }
    REQUIRE(mkdir(dir_.Join("data/instances/" + connector_).c_str(), 0755) ==
            0);
    WriteFile(dir_.Join("data/.env"), "LOG_LEVEL=DEBUG\n");
    WriteFile(dir_.Join("data/shared/readme.txt"), "shared\n");
    auto broker = LoopbackBroker::Start();
    INFO(broker.status().ToString());
    REQUIRE(broker.ok());
    broker_ = *std::move(broker);
  }

  ~World() {
    // Containers first (they hold the images), then the images.
    for (const std::string& name : containers_) {
      (void)api_.Call("DELETE",
                      absl::StrCat("/containers/", name, "?force=1&v=1"),
                      absl::Seconds(60));
    }
    (void)api_.Call("DELETE",
                    absl::StrCat("/images/", ImageTag(connector_), "?force=1"),
                    absl::Seconds(60));
    for (const std::string& image : images_) {
      (void)api_.Call("DELETE", absl::StrCat("/images/", image, "?force=1"),
                      absl::Seconds(60));
    }
  }

  static DockerRuntimeOptions Options() {
    DockerRuntimeOptions options;
    options.socket_path = SocketPath();
    options.bin_dirs = {DirName(BinaryPath(kDemoEntry))};
    options.detect_host_paths = false;
    return options;
  }

  // A unique container name (removed at the end).
  std::string Unique(const std::string& what) {
    std::string name = absl::StrCat("iot2mqtt-test-", what, "-", suffix_);
    containers_.push_back(name);
    return name;
  }

  // The spec of instance `id` of this world's connector: its instance file
  // (the demo's devices), secrets, .env and shared directory.
  RuntimeSpec Spec(const std::string& id) {
    RuntimeSpec spec;
    spec.connector = connector_;
    spec.instance_id = id;
    spec.connector_dir = connector_dir_;
    spec.instance_file = dir_.Join(
        absl::StrCat("data/instances/", connector_, "/", id, ".json"));
    WriteFile(spec.instance_file,
              absl::StrCat(R"({"instance_id":")", id,
                           R"(","connector_type":"demo","update_interval":1,
                  "devices":[{"device_id":"light","type":"light"},
                             {"device_id":"climate","type":"climate"}]})"));
    spec.secrets_file = dir_.Join(absl::StrCat("data/", id, ".secrets.json"));
    WriteFile(
        spec.secrets_file,
        absl::StrCat(R"({"version":1,"connector":")", connector_,
                     R"(","instance":")", id, R"(","values":{},"env":{}})"));
    spec.env_file = dir_.Join("data/.env");
    spec.shared_dir = dir_.Join("data/shared");
    spec.entry = kDemoEntry;
    spec.env = {{"INSTANCE_NAME", id},
                {"CONNECTOR_TYPE", "demo"},
                {"MODE", "production"},
                {"MQTT_HOST", broker_->host()},
                {"MQTT_PORT", absl::StrCat(broker_->port())},
                {"MQTT_KEEPALIVE", "5"}};
    spec.cpus = 0.5;
    spec.memory_bytes = 64 << 20;
    spec.config_hash = absl::StrCat("hash-", id);
    containers_.push_back(RuntimeName(connector_, id));
    return spec;
  }

  void Prepare(std::vector<std::string>* progress = nullptr) {
    RuntimeSpec spec = Spec("prep");
    absl::Status status =
        runtime_.Prepare(spec, [progress](absl::string_view line) {
          if (progress != nullptr) progress->emplace_back(line);
        });
    INFO(status.ToString());
    REQUIRE(status.ok());
  }

  // Creates instance `id` and waits for its retained `online`.
  RuntimeInfo CreateOnline(const std::string& id, TopicCapture& capture) {
    absl::StatusOr<RuntimeInfo> info = runtime_.Create(Spec(id));
    INFO(info.status().ToString());
    REQUIRE(info.ok());
    sdk::Topics topics = *sdk::Topics::Create("IoT2mqtt", id);
    INFO(Logs(info->id));
    REQUIRE(capture.WaitFor(topics.Status(), Payload("online"), kOnlineTimeout)
                .has_value());
    return *info;
  }

  std::unique_ptr<TopicCapture> Capture() {
    auto capture =
        TopicCapture::Start(broker_->host(), broker_->port(), "IoT2mqtt/#");
    REQUIRE(capture.ok());
    return *std::move(capture);
  }

  // <method> <path> straight to Docker.
  DockerResponse Raw(const std::string& method, const std::string& path,
                     const std::string& body = "") {
    absl::StatusOr<DockerResponse> response =
        api_.Call(method, path, absl::Seconds(60), body,
                  body.empty() ? "" : "application/json");
    INFO(response.status().ToString());
    REQUIRE(response.ok());
    return *response;
  }

  std::string Logs(const std::string& id) {
    std::string text;
    (void)runtime_.Logs(id, LogOptions{}, [&text](const LogLine& line) {
      absl::StrAppend(&text, line.stream, ": ", line.text, "\n");
      return true;
    });
    return text;
  }

  DockerRuntime& runtime() { return runtime_; }
  const std::string& connector() const { return connector_; }
  const std::string& connector_dir() const { return connector_dir_; }
  std::string tag() const { return ImageTag(connector_); }
  void ForgetImage(const std::string& id) { images_.push_back(id); }

 private:
  TempDir dir_;
  DockerApi api_;
  DockerRuntime runtime_;
  std::string suffix_;
  std::string connector_;
  std::string connector_dir_;
  std::unique_ptr<LoopbackBroker> broker_;
  std::vector<std::string> containers_;
  std::vector<std::string> images_;
};

sdk::Topics TopicsOf(const std::string& instance) {
  return *sdk::Topics::Create("IoT2mqtt", instance);
}

std::string ImageId(World& world) {
  DockerResponse image =
      world.Raw("GET", absl::StrCat("/images/", world.tag(), "/json"));
  REQUIRE(image.status == 200);
  rapidjson::Document doc = Json(image.body);
  return doc["Id"].GetString();
}

bool AnyContains(const std::vector<std::string>& lines,
                 const std::string& part) {
  for (const std::string& line : lines) {
    if (absl::StrContains(line, part)) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------

TEST_CASE("docker: ping names the daemon and the API version",
          "[integration][docker]") {
  if (!DockerOrSkip()) return;
  DockerRuntime runtime(World::Options());
  absl::StatusOr<std::string> ping = runtime.Ping();
  INFO(ping.status().ToString());
  REQUIRE(ping.ok());
  CHECK(absl::StartsWith(*ping, "Docker "));
  CHECK(absl::StrContains(*ping, "(API 1."));
}

TEST_CASE(
    "docker: the demo image is built FROM scratch, runs, and is "
    "rebuilt only when the connector's files change",
    "[integration][docker]") {
  if (!DockerOrSkip()) return;
  World world;
  std::vector<std::string> progress;
  world.Prepare(&progress);
  INFO(absl::StrJoin(progress, "\n"));
  CHECK(AnyContains(progress, "Step 1/"));
  CHECK(AnyContains(progress, "FROM scratch"));

  DockerResponse image =
      world.Raw("GET", absl::StrCat("/images/", world.tag(), "/json"));
  REQUIRE(image.status == 200);
  rapidjson::Document doc = Json(image.body);
  std::string first_id = doc["Id"].GetString();
  const rapidjson::Value& labels = doc["Config"]["Labels"];
  REQUIRE(labels.IsObject());
  CHECK(std::string(labels["iot2mqtt.context_hash"].GetString()).size() == 64);
  // Containers inherit image labels: the image must not make one "ours".
  CHECK_FALSE(labels.HasMember("iot2mqtt.type"));
  CHECK(std::string(doc["Config"]["Entrypoint"][0].GetString()) ==
        "/app/iot2mqtt-connector-demo");

  // Every library resolves inside the image: started bare (no
  // INSTANCE_NAME) the connector exits 2 naming what is missing, not 127
  // "error while loading shared libraries".
  std::string bare = world.Unique("bare");
  DockerResponse created =
      world.Raw("POST", absl::StrCat("/containers/create?name=", bare),
                absl::StrCat(R"({"Image":")", world.tag(),
                             R"(","HostConfig":{"NetworkMode":"none"}})"));
  REQUIRE(created.status == 201);
  REQUIRE(
      world.Raw("POST", absl::StrCat("/containers/", bare, "/start")).status ==
      204);
  DockerResponse waited =
      world.Raw("POST", absl::StrCat("/containers/", bare, "/wait"));
  REQUIRE(waited.status == 200);
  std::string bare_logs =
      world
          .Raw("GET",
               absl::StrCat("/containers/", bare, "/logs?stdout=1&stderr=1"))
          .body;
  INFO(bare_logs);
  CHECK(Json(waited.body)["StatusCode"].GetInt() == 2);
  CHECK(absl::StrContains(bare_logs, "INSTANCE_NAME"));
  CHECK_FALSE(absl::StrContains(bare_logs, "shared libraries"));
  REQUIRE(world.Raw("DELETE", absl::StrCat("/containers/", bare)).status ==
          204);

  // Nothing changed: no build.
  progress.clear();
  world.Prepare(&progress);
  CHECK(progress == std::vector<std::string>{
                        absl::StrCat("image ", world.tag(), " is up to date")});
  CHECK(ImageId(world) == first_id);

  // The connector's files changed: rebuilt, the old image removed.
  WriteFile(world.connector_dir() + "/manifest.json",
            R"({"name":"demo","entry":"iot2mqtt-connector-demo",
                "version":"0.1.1"})");
  progress.clear();
  world.Prepare(&progress);
  CHECK(AnyContains(progress, "Step 1/"));
  std::string second_id = ImageId(world);
  CHECK(second_id != first_id);
  world.ForgetImage(first_id);
  CHECK(world.Raw("GET", absl::StrCat("/images/", first_id, "/json")).status ==
        404);
}

TEST_CASE(
    "docker: a created connector comes online with the labels, "
    "binds, env and restart policy specified, a second create is "
    "ALREADY_EXISTS, remove takes it offline and away",
    "[integration][docker]") {
  if (!DockerOrSkip()) return;
  World world;
  world.Prepare();
  auto capture = world.Capture();
  RuntimeSpec spec = world.Spec("living");
  RuntimeInfo info = world.CreateOnline("living", *capture);
  CHECK(info.name == RuntimeName(world.connector(), "living"));
  CHECK(info.connector == world.connector());
  CHECK(info.instance_id == "living");
  CHECK(info.config_hash == "hash-living");
  CHECK(info.image == world.tag());
  CHECK(info.state == RuntimeState::kRunning);
  CHECK(info.pid > 0);

  // By name too, and listed.
  absl::StatusOr<RuntimeInfo> by_name = world.runtime().Inspect(info.name);
  REQUIRE(by_name.ok());
  CHECK(by_name->id == info.id);
  absl::StatusOr<std::vector<RuntimeInfo>> listed = world.runtime().List();
  REQUIRE(listed.ok());
  std::set<std::string> names;
  for (const RuntimeInfo& r : *listed) names.insert(r.name);
  CHECK(names.count(info.name) == 1);

  // What Docker was asked for.
  rapidjson::Document doc = Json(
      world.Raw("GET", absl::StrCat("/containers/", info.id, "/json")).body);
  const rapidjson::Value& labels = doc["Config"]["Labels"];
  CHECK(std::string(labels["iot2mqtt.type"].GetString()) == "connector");
  CHECK(std::string(labels["iot2mqtt.connector"].GetString()) ==
        world.connector());
  CHECK(std::string(labels["iot2mqtt.instance"].GetString()) == "living");
  CHECK(std::string(labels["iot2mqtt.config_hash"].GetString()) ==
        "hash-living");
  const rapidjson::Value& host = doc["HostConfig"];
  CHECK(std::string(host["NetworkMode"].GetString()) == "host");
  CHECK(std::string(host["RestartPolicy"]["Name"].GetString()) ==
        "unless-stopped");
  CHECK(host["Memory"].GetInt64() == 64 << 20);
  CHECK(host["NanoCpus"].GetInt64() == 500000000);
  CHECK_FALSE(host["Privileged"].GetBool());
  std::map<std::string, std::string> mounts;
  for (const auto& mount : doc["Mounts"].GetArray()) {
    CHECK_FALSE(mount["RW"].GetBool());
    mounts[mount["Destination"].GetString()] = mount["Source"].GetString();
  }
  CHECK(mounts == std::map<std::string, std::string>{
                      {"/app/instances", DirName(spec.instance_file)},
                      {"/app/.env", spec.env_file},
                      {"/run/secrets/iot2mqtt.json", spec.secrets_file},
                      {"/app/shared", spec.shared_dir}});
  std::set<std::string> env;
  for (const auto& e : doc["Config"]["Env"].GetArray())
    env.insert(e.GetString());
  for (const std::string& expected :
       {std::string("INSTANCE_NAME=living"), std::string("CONNECTOR_TYPE=demo"),
        std::string("IOT2MQTT_INSTANCE_FILE=/app/instances/living.json"),
        std::string("IOT2MQTT_ENV_FILE=/app/.env"),
        std::string("IOT2MQTT_SECRETS_FILE=/run/secrets/iot2mqtt.json")}) {
    INFO(expected);
    CHECK(env.count(expected) == 1);
  }
  CHECK_FALSE(absl::StrContains(
      world.Raw("GET", absl::StrCat("/containers/", info.id, "/json")).body,
      "docker.sock"));

  // The demo's devices publish state through the broker.
  sdk::Topics topics = TopicsOf("living");
  CHECK(capture->WaitFor(topics.State("light"), nullptr, kOnlineTimeout)
            .has_value());

  absl::StatusOr<RuntimeInfo> again = world.runtime().Create(spec);
  CHECK(absl::IsAlreadyExists(again.status()));
  CHECK(common::ReasonOf(again.status()) == "RUNTIME_EXISTS");

  size_t mark = capture->Mark();
  REQUIRE(world.runtime().Remove(info.id).ok());
  CHECK(capture
            ->WaitFor(topics.Status(), Payload("offline"), kOnlineTimeout, mark)
            .has_value());
  CHECK(absl::IsNotFound(world.runtime().Inspect(info.id).status()));
  listed = world.runtime().List();
  REQUIRE(listed.ok());
  for (const RuntimeInfo& r : *listed) CHECK(r.id != info.id);
  CHECK(
      world.Raw("GET", absl::StrCat("/containers/", info.id, "/json")).status ==
      404);
}

TEST_CASE(
    "docker: containers without our label are NOT_FOUND to every "
    "call and stay untouched",
    "[integration][docker]") {
  if (!DockerOrSkip()) return;
  World world;
  world.Prepare();
  // Made from our image (whose label it inherits) with other labels.
  std::string name = world.Unique("foreign");
  DockerResponse created = world.Raw(
      "POST", absl::StrCat("/containers/create?name=", name),
      absl::StrCat(R"({"Image":")", world.tag(),
                   R"(","Labels":{"iot2mqtt.connector":"demo",)",
                   R"("iot2mqtt.instance":"x","iot2mqtt.type":"other"},)",
                   R"("HostConfig":{"NetworkMode":"none"}})"));
  REQUIRE(created.status == 201);
  std::string id = Json(created.body)["Id"].GetString();

  DockerRuntime& runtime = world.runtime();
  for (const std::string& ref : {id, name, id.substr(0, 12)}) {
    INFO(ref);
    for (const absl::Status& status :
         {runtime.Inspect(ref).status(), runtime.Start(ref),
          runtime.Stop(ref, absl::Seconds(1)),
          runtime.Restart(ref, absl::Seconds(1)), runtime.Remove(ref),
          runtime.Stats(ref).status(),
          runtime.Logs(ref, LogOptions{},
                       [](const LogLine&) { return true; })}) {
      CHECK(absl::IsNotFound(status));
      CHECK(common::ReasonOf(status) == "RUNTIME_NOT_FOUND");
    }
  }
  // Never started, still there.
  rapidjson::Document doc =
      Json(world.Raw("GET", absl::StrCat("/containers/", id, "/json")).body);
  CHECK(std::string(doc["State"]["Status"].GetString()) == "created");
  absl::StatusOr<std::vector<RuntimeInfo>> listed = runtime.List();
  REQUIRE(listed.ok());
  for (const RuntimeInfo& r : *listed) CHECK(r.id != id);

  // Refs that would steer the request elsewhere are nobody.
  for (const std::string& ref :
       {std::string("../../version"), std::string("x/../../images/json"),
        std::string(""), std::string("a?b"), std::string("/") + name}) {
    INFO(ref);
    CHECK(common::ReasonOf(runtime.Inspect(ref).status()) ==
          "RUNTIME_NOT_FOUND");
    CHECK(common::ReasonOf(runtime.Remove(ref)) == "RUNTIME_NOT_FOUND");
  }
}

TEST_CASE(
    "docker: logs tail, since and follow (cancelled, and ended by a "
    "stop), stats",
    "[integration][docker]") {
  if (!DockerOrSkip()) return;
  World world;
  world.Prepare();
  auto capture = world.Capture();
  RuntimeInfo info = world.CreateOnline("logs", *capture);
  DockerRuntime& runtime = world.runtime();

  // The connector's start-up lines reach Docker's log asynchronously.
  std::vector<LogLine> all;
  LogOptions everything;
  everything.tail = -1;
  absl::Status read;
  bool enough = WaitFor([&] {
    all.clear();
    read = runtime.Logs(info.id, everything, [&all](const LogLine& line) {
      all.push_back(line);
      return true;
    });
    return !read.ok() || all.size() >= 3;
  });
  INFO(read.ToString());
  REQUIRE(read.ok());
  REQUIRE(enough);
  absl::Time now = absl::Now();
  for (const LogLine& line : all) {
    INFO(line.text);
    CHECK(line.time > now - absl::Minutes(5));
    CHECK(line.time <= now);
    CHECK((line.stream == "stdout" || line.stream == "stderr"));
    CHECK_FALSE(absl::StrContains(line.text, "\n"));
  }
  // The connector logs JSON lines.
  CHECK(absl::StartsWith(all.front().text, "{"));

  std::vector<LogLine> tail;
  LogOptions two;
  two.tail = 2;
  REQUIRE(runtime
              .Logs(info.id, two,
                    [&tail](const LogLine& line) {
                      tail.push_back(line);
                      return true;
                    })
              .ok());
  REQUIRE(tail.size() == 2);
  CHECK(tail[0].time <= tail[1].time);
  CHECK(tail[1].time >= all.back().time);

  LogOptions since;
  since.tail = -1;
  since.since = all.back().time;
  std::vector<LogLine> recent;
  REQUIRE(runtime
              .Logs(info.id, since,
                    [&recent](const LogLine& line) {
                      recent.push_back(line);
                      return true;
                    })
              .ok());
  REQUIRE_FALSE(recent.empty());
  for (const LogLine& line : recent) CHECK(line.time >= all.back().time);
  if (all.front().time < all.back().time) CHECK(recent.size() < all.size());

  // Follow, cancelled: returns within the polling period.
  {
    absl::Mutex mu;
    std::vector<LogLine> followed;
    std::atomic<bool> cancel{false};
    absl::Status result;
    absl::Time returned_at;
    LogOptions follow;
    follow.tail = 2;
    follow.follow = true;
    follow.cancelled = [&cancel] { return cancel.load(); };
    std::thread follower([&] {
      result = runtime.Logs(info.id, follow, [&](const LogLine& line) {
        absl::MutexLock lock(&mu);
        followed.push_back(line);
        return true;
      });
      returned_at = absl::Now();
    });
    bool got = WaitFor([&] {
      absl::MutexLock lock(&mu);
      return followed.size() >= 2;
    });
    absl::Time cancelled_at = absl::Now();
    cancel = true;
    follower.join();
    CHECK(got);
    CHECK(result.ok());
    CHECK(returned_at - cancelled_at < absl::Seconds(1));
    CHECK(runtime.Inspect(info.id)->state == RuntimeState::kRunning);
  }

  // Stats of the running connector, within its limit.
  absl::StatusOr<RuntimeStats> stats = runtime.Stats(info.id);
  INFO(stats.status().ToString());
  REQUIRE(stats.ok());
  CHECK(stats->memory_bytes > 0);
  CHECK(stats->memory_bytes < (64 << 20));
  CHECK(stats->memory_limit_bytes == 64 << 20);
  CHECK(stats->pids >= 1);
  CHECK(stats->cpu_percent >= 0);
  CHECK(stats->cpu_percent < 100);

  // Follow, ended by the container stopping: the shutdown lines arrive and
  // Logs returns by itself.
  {
    absl::Mutex mu;
    std::vector<LogLine> followed;
    absl::Status result;
    std::atomic<bool> done{false};
    LogOptions follow;
    follow.tail = 1;
    follow.follow = true;
    std::thread follower([&] {
      result = runtime.Logs(info.id, follow, [&](const LogLine& line) {
        absl::MutexLock lock(&mu);
        followed.push_back(line);
        return true;
      });
      done = true;
    });
    // The last line came: the stream is open.
    bool open = WaitFor([&] {
      absl::MutexLock lock(&mu);
      return !followed.empty();
    });
    CHECK(open);
    REQUIRE(runtime.Stop(info.id, absl::Seconds(10)).ok());
    bool ended = WaitFor([&] { return done.load(); }, absl::Seconds(30));
    follower.join();
    CHECK(ended);
    CHECK(result.ok());
    absl::MutexLock lock(&mu);
    bool stopped_line = false;
    for (const LogLine& line : followed) {
      stopped_line = stopped_line ||
                     absl::StrContains(line.text, R"("message":"stopped")");
    }
    CHECK(stopped_line);
  }
}

TEST_CASE(
    "docker: stop, start, restart, a crashed connector is restarted "
    "by Docker and counted, remove while running",
    "[integration][docker]") {
  if (!DockerOrSkip()) return;
  World world;
  world.Prepare();
  auto capture = world.Capture();
  RuntimeInfo info = world.CreateOnline("cycle", *capture);
  DockerRuntime& runtime = world.runtime();
  sdk::Topics topics = TopicsOf("cycle");

  size_t mark = capture->Mark();
  REQUIRE(runtime.Stop(info.id, absl::Seconds(10)).ok());
  absl::StatusOr<RuntimeInfo> stopped = runtime.Inspect(info.id);
  REQUIRE(stopped.ok());
  CHECK(stopped->state == RuntimeState::kExited);
  CHECK(stopped->exit_code == 0);  // SIGTERM: a clean shutdown.
  CHECK(stopped->pid == 0);
  CHECK(absl::StartsWith(stopped->status_text, "Exited (0)"));
  CHECK(capture
            ->WaitFor(topics.Status(), Payload("offline"), kOnlineTimeout, mark)
            .has_value());
  CHECK(runtime.Stop(info.id, absl::Seconds(10)).ok());  // Already stopped.

  mark = capture->Mark();
  REQUIRE(runtime.Start(info.id).ok());
  CHECK(
      capture->WaitFor(topics.Status(), Payload("online"), kOnlineTimeout, mark)
          .has_value());
  absl::StatusOr<RuntimeInfo> started = runtime.Inspect(info.id);
  REQUIRE(started.ok());
  CHECK(started->state == RuntimeState::kRunning);
  CHECK(absl::StartsWith(started->status_text, "Up "));

  mark = capture->Mark();
  REQUIRE(runtime.Restart(info.id, absl::Seconds(10)).ok());
  CHECK(
      capture->WaitFor(topics.Status(), Payload("online"), kOnlineTimeout, mark)
          .has_value());
  absl::StatusOr<RuntimeInfo> restarted = runtime.Inspect(info.id);
  REQUIRE(restarted.ok());
  CHECK(restarted->started_at > started->started_at);
  CHECK(restarted->restart_count == 0);  // Our restarts are not Docker's.

  // A crash (SIGKILL from outside): Docker's unless-stopped policy brings it
  // back and counts it.
  mark = capture->Mark();
  REQUIRE(restarted->pid > 0);
  REQUIRE(kill(static_cast<pid_t>(restarted->pid), SIGKILL) == 0);
  CHECK(
      capture->WaitFor(topics.Status(), Payload("online"), kOnlineTimeout, mark)
          .has_value());
  CHECK(WaitFor(
      [&] {
        absl::StatusOr<RuntimeInfo> now = runtime.Inspect(info.id);
        return now.ok() && now->restart_count == 1 &&
               now->state == RuntimeState::kRunning;
      },
      absl::Seconds(30)));

  REQUIRE(runtime.Remove(info.name).ok());
  CHECK(absl::IsNotFound(runtime.Inspect(info.id).status()));
  CHECK(absl::IsNotFound(runtime.Remove(info.id)));
}

TEST_CASE(
    "docker: create before the image exists is IMAGE_NOT_FOUND, a "
    "missing entry is ENTRY_NOT_FOUND",
    "[integration][docker]") {
  if (!DockerOrSkip()) return;
  World world;
  RuntimeSpec spec = world.Spec("early");
  absl::StatusOr<RuntimeInfo> created = world.runtime().Create(spec);
  CHECK(absl::IsFailedPrecondition(created.status()));
  CHECK(common::ReasonOf(created.status()) == "IMAGE_NOT_FOUND");

  spec.entry = "no-such-connector";
  absl::Status prepared = world.runtime().Prepare(spec, nullptr);
  CHECK(absl::IsFailedPrecondition(prepared));
  CHECK(common::ReasonOf(prepared) == "ENTRY_NOT_FOUND");
}

}  // namespace
}  // namespace iot2mqtt::orchestrator
