// The docker runtime's pure parts: host-path translation, Docker's JSON →
// RuntimeInfo / RuntimeStats, and the container it asks Docker to create.

#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "rapidjson/document.h"
#include "services/common/status.h"
#include "services/orchestrator/docker_runtime.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::orchestrator {
namespace {

absl::Time At(const std::string& text) {
  absl::Time t;
  std::string error;
  REQUIRE(absl::ParseTime(absl::RFC3339_full, text, &t, &error));
  return t;
}

TEST_CASE("host paths: the longest whole-component prefix is translated",
          "[unit][docker]") {
  std::vector<PathMapping> mappings = {
      {"/data", "/srv/iot2mqtt"},
      {"/data/shared", "/mnt/shared"},
      {"/run/secrets/", "/run/iot2mqtt-secrets/"},
  };
  CHECK(TranslateHostPath("/data", mappings) == "/srv/iot2mqtt");
  CHECK(TranslateHostPath("/data/instances/demo", mappings) ==
        "/srv/iot2mqtt/instances/demo");
  CHECK(TranslateHostPath("/data/shared/x", mappings) == "/mnt/shared/x");
  CHECK(TranslateHostPath("/run/secrets/a.json", mappings) ==
        "/run/iot2mqtt-secrets/a.json");
  // Not a component boundary, or no mapping: unchanged.
  CHECK(TranslateHostPath("/database/x", mappings) == "/database/x");
  CHECK(TranslateHostPath("/etc/hosts", mappings) == "/etc/hosts");
  CHECK(TranslateHostPath("/data/x", {}) == "/data/x");
  CHECK(TranslateHostPath("/a/b", {{"/", "/host"}}) == "/host/a/b");
}

TEST_CASE("host paths: our own container's mounts, binds and volumes only",
          "[unit][docker]") {
  absl::StatusOr<std::vector<PathMapping>> mappings = PathMappingsFromInspect(
      R"({"Id":"abc","Mounts":[
        {"Type":"bind","Source":"/home/me/iot2mqtt","Destination":"/app",
         "RW":true},
        {"Type":"volume","Name":"v","Source":"/var/lib/docker/volumes/v/_data",
         "Destination":"/app/data"},
        {"Type":"tmpfs","Source":"","Destination":"/run/secrets"}]})");
  REQUIRE(mappings.ok());
  REQUIRE(mappings->size() == 2);
  CHECK(TranslateHostPath("/app/instances/demo", *mappings) ==
        "/home/me/iot2mqtt/instances/demo");
  CHECK(TranslateHostPath("/app/data/x.json", *mappings) ==
        "/var/lib/docker/volumes/v/_data/x.json");
  CHECK(TranslateHostPath("/run/secrets/s.json", *mappings) ==
        "/run/secrets/s.json");
  CHECK(PathMappingsFromInspect(R"({"Id":"abc"})")->empty());
  CHECK_FALSE(PathMappingsFromInspect("not json").ok());
}

std::string InspectJson(const std::string& labels, const std::string& state,
                        const std::string& extra = "") {
  return absl::StrCat(R"({"Id":"4f9e0c1d2b3a","Name":"/iot2mqtt_demo_living",
    "Created":"2024-05-01T09:59:58.5Z","RestartCount":2,)",
                      extra, R"("Config":{"Image":"iot2mqtt_demo:latest",
      "Tty":false,"Labels":)",
                      labels, R"(},"State":)", state,
                      R"(,"HostConfig":{"Memory":16777216}})");
}

constexpr char kOurLabels[] =
    R"({"iot2mqtt.type":"connector","iot2mqtt.connector":"demo",
        "iot2mqtt.instance":"living","iot2mqtt.config_hash":"h1",
        "iot2mqtt.context_hash":"c1"})";

TEST_CASE("inspect JSON → RuntimeInfo: a running container", "[unit][docker]") {
  absl::StatusOr<RuntimeInfo> info = RuntimeInfoFromInspect(
      InspectJson(kOurLabels,
                  R"({"Status":"running","Running":true,"Pid":4242,
                      "ExitCode":0,"StartedAt":"2024-05-01T10:00:00Z",
                      "FinishedAt":"0001-01-01T00:00:00Z"})"),
      At("2024-05-01T10:03:10Z"));
  REQUIRE(info.ok());
  CHECK(info->id == "4f9e0c1d2b3a");
  CHECK(info->name == "iot2mqtt_demo_living");
  CHECK(info->connector == "demo");
  CHECK(info->instance_id == "living");
  CHECK(info->config_hash == "h1");
  CHECK(info->image == "iot2mqtt_demo:latest");
  CHECK(info->state == RuntimeState::kRunning);
  CHECK(info->status_text == "Up 3 minutes");
  CHECK(info->pid == 4242);
  CHECK_FALSE(info->exit_code.has_value());
  CHECK(info->restart_count == 2);
  CHECK(info->created == At("2024-05-01T09:59:58Z") + absl::Milliseconds(500));
  CHECK(info->started_at == At("2024-05-01T10:00:00Z"));
  CHECK(info->finished_at == absl::InfinitePast());
  CHECK(info->labels.at("iot2mqtt.context_hash") == "c1");
}

TEST_CASE("inspect JSON → RuntimeInfo: Docker's states", "[unit][docker]") {
  absl::Time now = At("2024-05-01T11:00:00Z");
  auto state_of = [&](const std::string& state) {
    absl::StatusOr<RuntimeInfo> info =
        RuntimeInfoFromInspect(InspectJson(kOurLabels, state), now);
    REQUIRE(info.ok());
    return *info;
  };
  RuntimeInfo exited = state_of(
      R"({"Status":"exited","Pid":0,"ExitCode":137,
          "StartedAt":"2024-05-01T10:00:00Z",
          "FinishedAt":"2024-05-01T10:59:55Z"})");
  CHECK(exited.state == RuntimeState::kExited);
  CHECK(exited.exit_code == 137);
  CHECK(exited.pid == 0);
  CHECK(exited.status_text == "Exited (137) 5 seconds ago");

  RuntimeInfo restarting = state_of(
      R"({"Status":"restarting","Pid":0,"ExitCode":2,
          "FinishedAt":"2024-05-01T10:59:00Z"})");
  CHECK(restarting.state == RuntimeState::kRestarting);
  CHECK(restarting.exit_code == 2);
  CHECK(restarting.status_text == "Restarting (2) About a minute ago");

  CHECK(state_of(R"({"Status":"created"})").state == RuntimeState::kCreated);
  CHECK(state_of(R"({"Status":"created"})").status_text == "Created");
  CHECK(state_of(R"({"Status":"paused","Pid":7,
                     "StartedAt":"2024-05-01T09:00:00Z"})")
            .status_text == "Up 2 hours (Paused)");
  CHECK(state_of(R"({"Status":"dead","ExitCode":1})").state ==
        RuntimeState::kDead);
  CHECK(state_of(R"({"Status":"removing"})").state == RuntimeState::kExited);
  CHECK(RuntimeStateFromDocker("sleeping") == std::nullopt);
}

TEST_CASE(
    "inspect JSON → RuntimeInfo: anything not labelled as ours is "
    "NOT_FOUND",
    "[unit][docker]") {
  absl::Time now = absl::Now();
  std::string state = R"({"Status":"running"})";
  for (const std::string& labels :
       {std::string("{}"), std::string("null"),
        std::string(R"({"iot2mqtt.type":"orchestrator"})"),
        std::string(R"({"iot2mqtt.connector":"demo",
                        "iot2mqtt.instance":"living"})"),
        // What a container made from our image by someone else inherits.
        std::string(R"({"iot2mqtt.context_hash":"c1"})")}) {
    INFO(labels);
    absl::StatusOr<RuntimeInfo> info =
        RuntimeInfoFromInspect(InspectJson(labels, state), now);
    CHECK(absl::IsNotFound(info.status()));
    CHECK(common::ReasonOf(info.status()) == "RUNTIME_NOT_FOUND");
  }
  CHECK(absl::IsInternal(RuntimeInfoFromInspect("[1]", now).status()));
}

TEST_CASE("stats JSON → RuntimeStats (cgroup v2 and v1)", "[unit][docker]") {
  // 0.2 s of CPU over 2 s of all 4 CPUs = 40 % of one CPU.
  constexpr char kV2[] = R"({
    "cpu_stats":{"cpu_usage":{"total_usage":1200000000},
                 "system_cpu_usage":10000000000,"online_cpus":4},
    "precpu_stats":{"cpu_usage":{"total_usage":1000000000},
                    "system_cpu_usage":8000000000},
    "memory_stats":{"usage":9000000,"limit":16777216,
                    "stats":{"inactive_file":1000000,"anon":7000000}},
    "pids_stats":{"current":3}})";
  absl::StatusOr<RuntimeStats> stats = RuntimeStatsFromJson(kV2, true);
  REQUIRE(stats.ok());
  CHECK(stats->cpu_percent == Approx(40.0));
  CHECK(stats->memory_bytes == 8000000);
  CHECK(stats->memory_limit_bytes == 16777216);
  CHECK(stats->pids == 3);
  // No limit configured: Docker's "limit" is the host's memory.
  CHECK(RuntimeStatsFromJson(kV2, false)->memory_limit_bytes == 0);

  constexpr char kV1[] = R"({
    "cpu_stats":{"cpu_usage":{"total_usage":300,"percpu_usage":[150,150]},
                 "system_cpu_usage":2000},
    "precpu_stats":{"cpu_usage":{"total_usage":100},"system_cpu_usage":1000},
    "memory_stats":{"usage":5000,"limit":9000,
                    "stats":{"total_inactive_file":1000,"cache":3000}},
    "pids_stats":{"current":1}})";
  stats = RuntimeStatsFromJson(kV1, true);
  REQUIRE(stats.ok());
  CHECK(stats->cpu_percent == Approx(40.0));  // 200/1000 × 2 CPUs.
  CHECK(stats->memory_bytes == 4000);

  // A stopped container: zeros, no division by zero.
  stats = RuntimeStatsFromJson(R"({"cpu_stats":{},"precpu_stats":{},
                                   "memory_stats":{},"pids_stats":{}})",
                               false);
  REQUIRE(stats.ok());
  CHECK(stats->cpu_percent == 0);
  CHECK(stats->memory_bytes == 0);
}

RuntimeSpec DemoSpec() {
  RuntimeSpec spec;
  spec.connector = "demo";
  spec.instance_id = "living";
  spec.connector_dir = "/data/connectors/demo";
  spec.instance_file = "/data/instances/demo/living.json";
  spec.secrets_file = "/run/iot2mqtt/secrets/demo/living.json";
  spec.env_file = "/data/.env";
  spec.shared_dir = "/data/shared";
  spec.entry = "iot2mqtt-connector-demo";
  spec.env = {{"INSTANCE_NAME", "living"},
              {"CONNECTOR_TYPE", "demo"},
              {"MQTT_HOST", "127.0.0.1"},
              {"IOT2MQTT_INSTANCE_FILE", "/elsewhere.json"}};
  spec.cpus = 0.05;
  spec.memory_bytes = 16 << 20;
  spec.config_hash = "cafe";
  return spec;
}

TEST_CASE(
    "the container asked for: image, env, labels, host networking, "
    "read-only binds at host paths, limits",
    "[unit][docker]") {
  absl::StatusOr<std::string> body = ContainerCreateBody(
      DemoSpec(), {{"/data", "/srv/iot2mqtt"}}, "/var/run/docker.sock");
  REQUIRE(body.ok());
  rapidjson::Document doc;
  doc.Parse(body->c_str());
  REQUIRE(doc.IsObject());
  CHECK(std::string(doc["Image"].GetString()) == "iot2mqtt_demo:latest");

  std::set<std::string> env;
  for (const auto& value : doc["Env"].GetArray()) env.insert(value.GetString());
  CHECK(env == std::set<std::string>{
                   "CONNECTOR_TYPE=demo", "INSTANCE_NAME=living",
                   "MQTT_HOST=127.0.0.1",
                   // Ours win over the spec's.
                   "IOT2MQTT_INSTANCE_FILE=/app/instances/living.json",
                   "IOT2MQTT_ENV_FILE=/app/.env",
                   "IOT2MQTT_SECRETS_FILE=/run/secrets/iot2mqtt.json"});

  const rapidjson::Value& labels = doc["Labels"];
  CHECK(std::string(labels["iot2mqtt.type"].GetString()) == "connector");
  CHECK(std::string(labels["iot2mqtt.connector"].GetString()) == "demo");
  CHECK(std::string(labels["iot2mqtt.instance"].GetString()) == "living");
  CHECK(std::string(labels["iot2mqtt.config_hash"].GetString()) == "cafe");

  const rapidjson::Value& host = doc["HostConfig"];
  CHECK(std::string(host["NetworkMode"].GetString()) == "host");
  CHECK(std::string(host["RestartPolicy"]["Name"].GetString()) ==
        "unless-stopped");
  CHECK(host["NanoCpus"].GetInt64() == 50000000);
  CHECK(host["Memory"].GetInt64() == 16 << 20);
  CHECK_FALSE(host.HasMember("Binds"));
  CHECK_FALSE(host.HasMember("Privileged"));
  std::set<std::string> mounts;
  for (const auto& mount : host["Mounts"].GetArray()) {
    CHECK(std::string(mount["Type"].GetString()) == "bind");
    CHECK(mount["ReadOnly"].GetBool());
    mounts.insert(absl::StrCat(mount["Source"].GetString(), " -> ",
                               mount["Target"].GetString()));
  }
  CHECK(mounts ==
        std::set<std::string>{"/srv/iot2mqtt/instances/demo -> /app/instances",
                              "/srv/iot2mqtt/.env -> /app/.env",
                              // Not below the mapped prefix: as it is.
                              "/run/iot2mqtt/secrets/demo/living.json -> "
                              "/run/secrets/iot2mqtt.json",
                              "/srv/iot2mqtt/shared -> /app/shared"});
  CHECK_FALSE(absl::StrContains(*body, "docker.sock"));
}

TEST_CASE("the container asked for: optional parts left out",
          "[unit][docker]") {
  RuntimeSpec spec = DemoSpec();
  spec.secrets_file.clear();
  spec.env_file.clear();
  spec.shared_dir.clear();
  spec.cpus.reset();
  spec.memory_bytes.reset();
  spec.env["IOT2MQTT_SECRETS_FILE"] = "/tmp/x";
  absl::StatusOr<std::string> body =
      ContainerCreateBody(spec, {}, "/var/run/docker.sock");
  REQUIRE(body.ok());
  rapidjson::Document doc;
  doc.Parse(body->c_str());
  std::set<std::string> env;
  for (const auto& value : doc["Env"].GetArray()) env.insert(value.GetString());
  CHECK(env.count("IOT2MQTT_ENV_FILE=/dev/null") == 1);
  for (const std::string& e : env) {
    CHECK_FALSE(absl::StartsWith(e, "IOT2MQTT_SECRETS_FILE="));
  }
  const rapidjson::Value& host = doc["HostConfig"];
  CHECK_FALSE(host.HasMember("NanoCpus"));
  CHECK_FALSE(host.HasMember("Memory"));
  REQUIRE(host["Mounts"].Size() == 1);
  CHECK(std::string(host["Mounts"][0]["Source"].GetString()) ==
        "/data/instances/demo");
}

TEST_CASE("the Docker socket is never mounted into a connector",
          "[unit][docker]") {
  ::iot2mqtt::testing::TempDir dir;
  std::string socket = dir.Join("run/docker.sock");
  for (const std::string& shared :
       {std::string("/"), dir.Join("run"), socket, dir.path()}) {
    INFO(shared);
    RuntimeSpec spec = DemoSpec();
    spec.shared_dir = shared;
    absl::StatusOr<std::string> body = ContainerCreateBody(spec, {}, socket);
    CHECK(absl::IsFailedPrecondition(body.status()));
    CHECK(common::ReasonOf(body.status()) == "MOUNT_REFUSED");
  }
}

TEST_CASE("names that would become container names are validated",
          "[unit][docker]") {
  RuntimeSpec spec = DemoSpec();
  spec.instance_id = "../x";
  absl::StatusOr<std::string> body =
      ContainerCreateBody(spec, {}, "/var/run/docker.sock");
  CHECK(common::ReasonOf(body.status()) == "INVALID_INSTANCE_ID");
  spec = DemoSpec();
  spec.connector = "Demo";
  body = ContainerCreateBody(spec, {}, "/var/run/docker.sock");
  CHECK(common::ReasonOf(body.status()) == "INVALID_CONNECTOR_NAME");
  spec = DemoSpec();
  spec.instance_file = "relative.json";
  CHECK(absl::IsInvalidArgument(
      ContainerCreateBody(spec, {}, "/var/run/docker.sock").status()));
}

}  // namespace
}  // namespace iot2mqtt::orchestrator
