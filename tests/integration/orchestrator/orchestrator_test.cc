// The orchestrator against the real platform (orchestrator_harness.h):
// Mosquitto, config, mqtt-bridge and orchestrator binaries, the process
// runtime running the demo connector and a script that crashes at once.

#include <signal.h>
#include <sys/stat.h>

#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "tests/integration/orchestrator/orchestrator_harness.h"

namespace iot2mqtt::orchestrator::harness {
namespace {

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

TEST_CASE("an instance's lifecycle: create, edit, disable, delete",
          "[orchestrator][process]") {
  Platform platform;
  platform.StartAll();
  sdk::Topics topics = Platform::TopicsOf("living");
  auto capture = platform.Capture(topics.All());

  // Create → the demo connector runs and says `online` (retained).
  platform.CreateInstance("living", "demo");
  platform.WaitOnline("living");
  int64_t first_pid = platform.WaitForPid("living");
  REQUIRE(capture->WaitFor(topics.State("light1"), nullptr, absl::Seconds(10)));

  // Its secrets reach it in a 0600 file, never in its environment.
  struct stat st;
  REQUIRE(stat(platform.SecretsFile("living").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  std::string secrets = ReadFile(platform.SecretsFile("living"));
  CHECK(absl::StrContains(secrets, "tok-living-secret"));
  CHECK(absl::StrContains(secrets, kBrokerPassword));
  CHECK_FALSE(absl::StrContains(
      ReadFile(platform.InstanceFile("demo", "living")), "tok-living-secret"));
  std::map<std::string, std::string> env = ProcessEnviron(first_pid);
  CHECK(env["INSTANCE_NAME"] == "living");
  CHECK(env["CONNECTOR_TYPE"] == "demo");
  CHECK(env["MODE"] == "production");
  CHECK(env["MQTT_BASE_TOPIC"] == kBaseTopic);
  CHECK(env["IOT2MQTT_SECRETS_FILE"] == platform.SecretsFile("living"));
  CHECK(env.count("MQTT_PASSWORD") == 0);
  CHECK(platform.CountConnectorProcesses("living") == 1);

  // Listed as ours, with the instance's runtime view.
  std::optional<v1::ContainerInfo> info = platform.Container("living");
  REQUIRE(info.has_value());
  CHECK(info->name() == "iot2mqtt_demo_living");
  CHECK(info->connector() == "demo");
  CHECK(info->labels().at("iot2mqtt.instance") == "living");
  REQUIRE(WaitFor([&] {
    auto runtime = platform.Runtime("living");
    return runtime && runtime->state() == "running";
  }));
  CHECK(platform.Runtime("living")->desired_running());

  // Logs: the connector's own lines, with a level.
  REQUIRE(WaitFor([&] {
    v1::GetContainerLogsRequest request;
    request.set_id(info->id());
    request.set_lines(50);
    v1::GetContainerLogsResponse response;
    grpc::Status status =
        platform.stub().GetContainerLogs(Context().get(), request, &response);
    REQUIRE(status.ok());
    return response.logs_size() > 0 && !response.logs(0).level().empty() &&
           !response.logs(0).timestamp().empty();
  }));

  // System status with real counts.
  {
    v1::GetSystemStatusResponse status;
    REQUIRE(platform.stub().GetSystemStatus(Context().get(), {}, &status).ok());
    CHECK(status.instances_count() == 1);
    CHECK(status.devices_count() == 1);
    CHECK(status.containers_total() == 1);
    CHECK(status.containers_running() == 1);
    CHECK(status.runtime() == "process");
    CHECK_FALSE(status.version().empty());
  }

  // Edit → restarted with the new config: a new process that publishes the
  // new device.
  size_t mark = capture->Mark();
  platform.UpdateInstance(
      "living", "demo",
      R"({"devices":[{"device_id":"light1","type":"light"},)"
      R"({"device_id":"switch9","type":"switch"}]})");
  int64_t second_pid = platform.WaitForPid("living", first_pid);
  CHECK(second_pid != first_pid);
  CHECK_FALSE(ProcessAlive(first_pid));
  INFO(platform.Logs());
  CHECK(capture->WaitFor(topics.State("switch9"), nullptr, absl::Seconds(15),
                         mark));
  CHECK(platform.CountConnectorProcesses("living") == 1);

  // Disable → stopped (and `offline`), not restarted by the watchdog.
  mark = capture->Mark();
  platform.UpdateInstance("living", "demo", R"({"enabled":false})");
  REQUIRE(
      WaitFor([&] { return !ProcessAlive(second_pid); }, absl::Seconds(20)));
  CHECK(capture->WaitFor(
      topics.Status(),
      [](const sdk::testing::CapturedMessage& m) {
        return m.payload == "offline";
      },
      absl::Seconds(10), mark));
  REQUIRE(WaitFor([&] {
    auto runtime = platform.Runtime("living");
    return runtime && runtime->state() == "stopped" &&
           !runtime->desired_running();
  }));
  CHECK(platform.Container("living")->status() == "exited");
  {
    v1::InstanceActionResponse response;
    grpc::Status status = platform.InstanceAction("start", "living", &response);
    CHECK(status.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
    CHECK(ReasonOf(status) == "INSTANCE_DISABLED");
  }

  // Enable → runs again.
  platform.UpdateInstance("living", "demo", R"({"enabled":true})");
  int64_t third_pid = platform.WaitForPid("living", second_pid);
  platform.WaitOnline("living");

  // Delete → runtime, instance file, secrets file and retained topics gone.
  v1::InstanceActionResponse deleted;
  grpc::Status status = platform.InstanceAction("delete", "living", &deleted);
  INFO(platform.Logs());
  REQUIRE(status.ok());
  CHECK(deleted.status() == "success");
  CHECK(deleted.message() == "Instance living deleted completely");
  CHECK_FALSE(ProcessAlive(third_pid));
  CHECK_FALSE(platform.Container("living").has_value());
  CHECK_FALSE(FileExists(platform.InstanceFile("demo", "living")));
  CHECK_FALSE(FileExists(platform.SecretsFile("living")));
  CHECK_FALSE(platform.Runtime("living").has_value());
  {
    // A new subscriber gets no retained message of the instance.
    auto fresh = platform.Capture(topics.All());
    CHECK_FALSE(fresh->Arrives(
        topics.All(),
        [](const sdk::testing::CapturedMessage& m) {
          return m.retain && !m.payload.empty();
        },
        absl::Seconds(1)));
  }
  // Nothing comes back at the next reconcile.
  CHECK(platform.InstanceAction("delete", "living").error_code() ==
        grpc::StatusCode::NOT_FOUND);
  CHECK(platform.CountConnectorProcesses("living") == 0);
  // Transitions and actions are counted.
  std::string metrics = platform.Metrics();
  CHECK(absl::StrContains(
      metrics, R"(iot_orchestrator_transitions_total{to="running"})"));
  CHECK(absl::StrContains(
      metrics,
      R"(iot_orchestrator_actions_total{action="create",outcome="success"})"));
  CHECK(absl::StrContains(metrics, "iot_orchestrator_reconcile_seconds_count"));
  CHECK(absl::StrContains(metrics, "iot_orchestrator_crash_loops"));
  // No secret value in the orchestrator's log.
  CHECK_FALSE(absl::StrContains(platform.OrchestratorLog(), "tok-living"));
  CHECK_FALSE(absl::StrContains(platform.OrchestratorLog(), kBrokerPassword));
}

TEST_CASE("unknown and invalid ids", "[orchestrator][process]") {
  Platform platform;
  platform.StartAll();

  grpc::Status status = platform.InstanceAction("start", "nosuch");
  CHECK(status.error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(ReasonOf(status) == "INSTANCE_NOT_FOUND");
  CHECK(status.error_message() == "Instance nosuch not found");
  for (const char* action : {"stop", "restart", "delete"}) {
    INFO(action);
    CHECK(platform.InstanceAction(action, "nosuch").error_code() ==
          grpc::StatusCode::NOT_FOUND);
  }
  status = platform.InstanceAction("start", "../etc");
  CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(ReasonOf(status) == "INVALID_INSTANCE_ID");

  // Any container that is not ours is NOT_FOUND, whatever the action.
  for (const char* id : {"iot2mqtt_demo_nosuch", "postgres", "abc123def456"}) {
    INFO(id);
    v1::ContainerRequest request;
    request.set_id(id);
    v1::ContainerActionResponse response;
    status =
        platform.stub().StartContainer(Context().get(), request, &response);
    CHECK(status.error_code() == grpc::StatusCode::NOT_FOUND);
    CHECK(ReasonOf(status) == "RUNTIME_NOT_FOUND");
    status = platform.stub().StopContainer(Context().get(), request, &response);
    CHECK(status.error_code() == grpc::StatusCode::NOT_FOUND);
    v1::GetContainerLogsRequest logs;
    logs.set_id(id);
    v1::GetContainerLogsResponse logs_response;
    status =
        platform.stub().GetContainerLogs(Context().get(), logs, &logs_response);
    CHECK(status.error_code() == grpc::StatusCode::NOT_FOUND);
  }
  v1::RetryInstanceRequest retry;
  retry.set_connector("demo");
  retry.set_instance_id("nosuch");
  v1::RetryInstanceResponse response;
  status = platform.stub().RetryInstance(Context().get(), retry, &response);
  CHECK(status.error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(platform.Containers().empty());
}

TEST_CASE("the watchdog restarts a killed connector",
          "[orchestrator][process]") {
  Platform platform;
  platform.StartAll();
  platform.CreateInstance("kitchen", "demo");
  int64_t pid = platform.WaitForPid("kitchen");
  platform.WaitOnline("kitchen");

  sdk::Topics topics = Platform::TopicsOf("kitchen");
  auto capture = platform.Capture(topics.Status());
  size_t mark = capture->Mark();
  REQUIRE(kill(static_cast<pid_t>(pid), SIGKILL) == 0);
  int64_t restarted = platform.WaitForPid("kitchen", pid, absl::Seconds(10));
  CHECK(restarted != pid);
  // The new process says `online` again.
  CHECK(capture->WaitFor(
      topics.Status(),
      [](const sdk::testing::CapturedMessage& m) {
        return m.payload == "online";
      },
      absl::Seconds(10), mark));
  REQUIRE(WaitFor([&] {
    auto runtime = platform.Runtime("kitchen");
    return runtime && runtime->restarts() == 1 && runtime->state() == "running";
  }));
  CHECK(platform.CountConnectorProcesses("kitchen") == 1);
  CHECK(absl::StrContains(platform.OrchestratorLog(),
                          "restarted by the watchdog"));
}

TEST_CASE("a connector that exits at once ends in a crash loop",
          "[orchestrator][process]") {
  Platform platform;
  platform.StartAll();
  platform.CreateInstance("boom", "crasher");

  std::optional<v1::InstanceRuntime> runtime;
  bool looped = WaitFor(
      [&] {
        runtime = platform.Runtime("boom");
        return runtime && runtime->crash_loop();
      },
      absl::Seconds(30));
  INFO(platform.Logs());
  REQUIRE(looped);
  CHECK(runtime->state() == "crash_loop");
  CHECK(runtime->last_exit_code() == 3);
  CHECK(runtime->restarts() == 3);  // CRASH_LOOP_RESTARTS=4: 4 runs.
  REQUIRE(runtime->last_log_lines_size() > 0);
  std::string lines;
  for (const std::string& line : runtime->last_log_lines()) {
    absl::StrAppend(&lines, line, "\n");
  }
  CHECK(absl::StrContains(lines, "fatal: no device answers"));
  CHECK(runtime->last_log_lines_size() <= 20);
  CHECK_FALSE(runtime->last_error().empty());
  // Kept, stopped; no further restarts.
  std::string runs = platform.CrasherRuns();
  CHECK(std::count(runs.begin(), runs.end(), '\n') == 4);
  std::optional<v1::ContainerInfo> info = platform.Container("boom");
  REQUIRE(info.has_value());
  CHECK(info->status() == "exited");
  CHECK_FALSE(
      WaitFor([&] { return platform.CrasherRuns().size() > runs.size(); },
              absl::Seconds(2)));
  CHECK(absl::StrContains(platform.OrchestratorLog(), "crash_loop"));

  // Retry: runs again (and loops again, being what it is).
  v1::RetryInstanceRequest retry;
  retry.set_connector("crasher");
  retry.set_instance_id("boom");
  v1::RetryInstanceResponse response;
  grpc::Status status =
      platform.stub().RetryInstance(Context(30).get(), retry, &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  CHECK(response.success());
  CHECK(response.message() == "Retry initiated");
  REQUIRE(WaitFor([&] { return platform.CrasherRuns().size() > runs.size(); },
                  absl::Seconds(10)));
  // The wrong connector for the id is NOT_FOUND.
  retry.set_connector("demo");
  CHECK(platform.stub()
            .RetryInstance(Context().get(), retry, &response)
            .error_code() == grpc::StatusCode::NOT_FOUND);
}

TEST_CASE("after a kill -9 the orchestrator adopts what runs",
          "[orchestrator][process]") {
  Platform platform;
  platform.StartAll();
  platform.CreateInstance("hall", "demo");
  platform.CreateInstance("porch", "demo");
  int64_t hall = platform.WaitForPid("hall");
  int64_t porch = platform.WaitForPid("porch");
  platform.WaitOnline("hall");
  platform.WaitOnline("porch");

  // A user stop is remembered.
  v1::InstanceActionResponse response;
  REQUIRE(platform.InstanceAction("stop", "porch", &response).ok());
  CHECK(response.message() == "Instance porch stopped");
  REQUIRE(WaitFor([&] { return !ProcessAlive(porch); }));

  platform.KillOrchestrator();
  CHECK(ProcessAlive(hall));  // Connectors outlive the orchestrator.
  platform.StartOrchestrator();
  // Once the new orchestrator has reconciled, both are known ...
  REQUIRE(WaitFor(
      [&] {
        auto h = platform.Runtime("hall");
        auto p = platform.Runtime("porch");
        return h && p && h->state() == "running" && p->state() == "stopped";
      },
      absl::Seconds(20)));
  // ... the running one adopted untouched, the stopped one still stopped.
  CHECK(platform.WaitForPid("hall") == hall);
  CHECK(platform.CountConnectorProcesses("hall") == 1);
  CHECK(platform.CountConnectorProcesses("porch") == 0);
  CHECK(platform.Containers().size() == 2);
  CHECK_FALSE(platform.Runtime("porch")->desired_running());
  // Still after a while (watchdog polls every 200 ms).
  CHECK_FALSE(
      WaitFor([&] { return platform.CountConnectorProcesses("porch") > 0; },
              absl::Seconds(2)));
  CHECK(platform.Container("hall")->pid() == hall);

  // Start clears the stop.
  REQUIRE(platform.InstanceAction("start", "porch", &response).ok());
  CHECK(response.message() == "Instance porch started");
  int64_t porch2 = platform.WaitForPid("porch");
  CHECK(porch2 != porch);
  platform.WaitOnline("porch");
}

TEST_CASE("logs stream until the client cancels", "[orchestrator][process]") {
  Platform platform;
  platform.StartAll();
  platform.CreateInstance("attic", "demo");
  platform.WaitForPid("attic");
  std::optional<v1::ContainerInfo> info = platform.Container("attic");
  REQUIRE(info.has_value());

  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  v1::StreamLogsRequest request;
  request.set_id(info->id());
  request.set_lines(5);
  auto reader = platform.stub().StreamLogs(&context, request);
  v1::LogEntry entry;
  REQUIRE(reader->Read(&entry));
  CHECK_FALSE(entry.content().empty());
  CHECK(entry.stream() == "stdout");
  context.TryCancel();
  while (reader->Read(&entry)) {
  }
  CHECK(reader->Finish().error_code() == grpc::StatusCode::CANCELLED);

  // An unknown id ends the stream with NOT_FOUND.
  grpc::ClientContext context2;
  request.set_id("iot2mqtt_demo_nosuch");
  auto missing = platform.stub().StreamLogs(&context2, request);
  CHECK_FALSE(missing->Read(&entry));
  CHECK(missing->Finish().error_code() == grpc::StatusCode::NOT_FOUND);
}

// The status of `instance_id` in the orchestrator's integration views.
std::string IntegrationStatus(Platform& platform,
                              const std::string& instance_id) {
  v1::GetIntegrationInstanceRequest request;
  request.set_instance_id(instance_id);
  v1::GetIntegrationInstanceResponse response;
  grpc::Status status = platform.stub().GetIntegrationInstance(
      Context().get(), request, &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  rapidjson::Document doc;
  doc.Parse(response.instance().c_str());
  REQUIRE(doc.IsObject());
  REQUIRE(doc["status"].IsString());
  return doc["status"].GetString();
}

// name → status of ListConfiguredIntegrations.
std::map<std::string, std::string> IntegrationStatuses(Platform& platform) {
  v1::ListConfiguredIntegrationsResponse response;
  REQUIRE(platform.stub()
              .ListConfiguredIntegrations(Context().get(), {}, &response)
              .ok());
  rapidjson::Document doc;
  doc.Parse(response.integrations().c_str());
  REQUIRE(doc.IsArray());
  std::map<std::string, std::string> statuses;
  for (const auto& item : doc.GetArray()) {
    statuses[item["name"].GetString()] = item["status"].GetString();
  }
  return statuses;
}

TEST_CASE("integration views carry the live status",
          "[orchestrator][process]") {
  Platform platform;
  platform.StartAll();
  platform.CreateInstance("den", "demo");
  platform.CreateInstance("oops", "crasher");
  platform.WaitOnline("den");
  INFO(platform.Logs());
  REQUIRE(
      WaitFor([&] { return IntegrationStatus(platform, "den") == "connected"; },
              absl::Seconds(15)));
  REQUIRE(
      WaitFor([&] { return IntegrationStatus(platform, "oops") == "error"; },
              absl::Seconds(30)));
  std::map<std::string, std::string> statuses = IntegrationStatuses(platform);
  CHECK(statuses["demo"] == "connected");
  CHECK(statuses["crasher"] == "error");
  {
    v1::ListIntegrationInstancesRequest request;
    request.set_name("demo");
    v1::ListIntegrationInstancesResponse response;
    REQUIRE(platform.stub()
                .ListIntegrationInstances(Context().get(), request, &response)
                .ok());
    CHECK(absl::StrContains(response.instances(), R"("status":"connected")"));
  }

  // Stopped by the user → offline; disabled → disabled.
  REQUIRE(platform.InstanceAction("stop", "den").ok());
  CHECK(IntegrationStatus(platform, "den") == "offline");
  CHECK(IntegrationStatuses(platform)["demo"] == "offline");
  platform.UpdateInstance("den", "demo", R"({"enabled":false})");
  REQUIRE(WaitFor(
      [&] { return IntegrationStatus(platform, "den") == "disabled"; }));
  CHECK(IntegrationStatuses(platform)["demo"] == "disabled");

  v1::GetIntegrationInstanceRequest missing;
  missing.set_instance_id("nosuch");
  v1::GetIntegrationInstanceResponse response;
  grpc::Status status = platform.stub().GetIntegrationInstance(
      Context().get(), missing, &response);
  CHECK(status.error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(ReasonOf(status) == "INSTANCE_NOT_FOUND");
}

TEST_CASE("an instance deleted in the config service goes away entirely",
          "[orchestrator][process]") {
  Platform platform;
  platform.StartAll();
  platform.CreateInstance("shed", "demo");
  int64_t pid = platform.WaitForPid("shed");
  platform.WaitOnline("shed");
  REQUIRE(FileExists(platform.SecretsFile("shed")));

  platform.DeleteInConfig("shed", "demo");
  INFO(platform.Logs());
  // The orphan runtime, its secrets file and its retained topics go.
  REQUIRE(WaitFor([&] {
    return !platform.Container("shed").has_value() &&
           !FileExists(platform.SecretsFile("shed"));
  }));
  CHECK_FALSE(ProcessAlive(pid));
  sdk::Topics topics = Platform::TopicsOf("shed");
  REQUIRE(WaitFor([&] {
    auto fresh = platform.Capture(topics.All());
    return !fresh->Arrives(
        topics.All(),
        [](const sdk::testing::CapturedMessage& m) {
          return m.retain && !m.payload.empty();
        },
        absl::Milliseconds(300));
  }));
}

TEST_CASE("a graceful shutdown ends log streams and stops connectors",
          "[orchestrator][process]") {
  Platform platform;
  platform.StartAll();
  platform.CreateInstance("cellar", "demo");
  int64_t pid = platform.WaitForPid("cellar");
  std::optional<v1::ContainerInfo> info = platform.Container("cellar");
  REQUIRE(info.has_value());

  auto stub =
      OrchestratorService::NewStub(Channel(platform.orchestrator_port()));
  grpc::ClientContext context;
  v1::StreamLogsRequest request;
  request.set_id(info->id());
  auto reader = stub->StreamLogs(&context, request);
  v1::LogEntry entry;
  REQUIRE(reader->Read(&entry));

  // PROCESS_STOP_ON_EXIT=true (the harness): SIGTERM stops the connector.
  absl::Time start = absl::Now();
  std::thread stopper([&] { CHECK(platform.StopOrchestrator() == 0); });
  while (reader->Read(&entry)) {
  }
  grpc::Status status = reader->Finish();
  stopper.join();
  CHECK(status.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(absl::Now() - start < absl::Seconds(10));
  CHECK_FALSE(ProcessAlive(pid));
}

// --- Docker --------------------------------------------------------------

// A platform whose orchestrator runs connectors as Docker containers; null
// (after a visible SKIPPED line) when no daemon can be had.
std::unique_ptr<Platform> DockerPlatform() {
  std::string why;
  if (!DockerAvailable(&why)) {
    std::cout << "SKIPPED: no Docker daemon: " << why << std::endl;
    WARN("SKIPPED: no Docker daemon: " << why);
    return nullptr;
  }
  std::map<std::string, std::string> env = {{"IOT2MQTT_RUNTIME", "docker"}};
  if (const char* host = getenv("DOCKER_HOST")) env["DOCKER_HOST"] = host;
  auto platform = std::make_unique<Platform>(env);
  platform->StartAll();
  return platform;
}

// The container of `instance_id` once it runs (id different from `not_id`).
v1::ContainerInfo WaitForContainer(Platform& platform,
                                   const std::string& instance_id,
                                   const std::string& not_id = "") {
  std::optional<v1::ContainerInfo> info;
  bool ok = WaitFor(
      [&] {
        info = platform.Container(instance_id);
        return info && info->status() == "running" && info->id() != not_id;
      },
      absl::Seconds(90));
  INFO(platform.Logs());
  REQUIRE(ok);
  return *info;
}

TEST_CASE("docker: create, edit, crash, disable, delete",
          "[orchestrator][docker]") {
  std::unique_ptr<Platform> platform = DockerPlatform();
  if (platform == nullptr) return;
  sdk::Topics topics = Platform::TopicsOf("dock1");
  auto capture = platform->Capture(topics.All());

  platform->CreateInstance("dock1", "demo");
  v1::ContainerInfo first = WaitForContainer(*platform, "dock1");
  platform->WaitOnline("dock1", absl::Seconds(90));
  CHECK(first.name() == "iot2mqtt_demo_dock1");
  CHECK(first.image() == "iot2mqtt_demo:latest");
  CHECK(first.id().size() == 12);
  CHECK(first.labels().at("iot2mqtt.connector") == "demo");
  CHECK(FileExists(platform->SecretsFile("dock1")));

  // Edit → a new container with the new device.
  size_t mark = capture->Mark();
  platform->UpdateInstance(
      "dock1", "demo",
      R"({"devices":[{"device_id":"light1","type":"light"},)"
      R"({"device_id":"switch9","type":"switch"}]})");
  v1::ContainerInfo second = WaitForContainer(*platform, "dock1", first.id());
  INFO(platform->Logs());
  CHECK(capture->WaitFor(topics.State("switch9"), nullptr, absl::Seconds(30),
                         mark));
  CHECK(platform->Containers().size() == 1);

  // A crash (SIGKILL from outside): Docker restarts it, the watchdog counts.
  REQUIRE(second.pid() > 0);
  mark = capture->Mark();
  REQUIRE(kill(static_cast<pid_t>(second.pid()), SIGKILL) == 0);
  REQUIRE(WaitFor(
      [&] {
        auto runtime = platform->Runtime("dock1");
        return runtime && runtime->restarts() == 1 &&
               runtime->state() == "running";
      },
      absl::Seconds(30)));
  CHECK(capture->WaitFor(
      topics.Status(),
      [](const sdk::testing::CapturedMessage& m) {
        return m.payload == "online";
      },
      absl::Seconds(30), mark));
  CHECK(platform->Container("dock1")->id() == second.id());

  // Disable → the container stops and stays stopped.
  platform->UpdateInstance("dock1", "demo", R"({"enabled":false})");
  REQUIRE(WaitFor(
      [&] {
        auto info = platform->Container("dock1");
        return info && info->status() == "exited";
      },
      absl::Seconds(30)));
  REQUIRE(WaitFor([&] {
    auto runtime = platform->Runtime("dock1");
    return runtime && runtime->state() == "stopped";
  }));

  // Delete → container, files and retained topics gone.
  v1::InstanceActionResponse deleted;
  REQUIRE(platform->InstanceAction("delete", "dock1", &deleted).ok());
  CHECK(deleted.message() == "Instance dock1 deleted completely");
  CHECK_FALSE(platform->Container("dock1").has_value());
  CHECK_FALSE(FileExists(platform->InstanceFile("demo", "dock1")));
  CHECK_FALSE(FileExists(platform->SecretsFile("dock1")));
  auto fresh = platform->Capture(topics.All());
  CHECK_FALSE(fresh->Arrives(
      topics.All(),
      [](const sdk::testing::CapturedMessage& m) {
        return m.retain && !m.payload.empty();
      },
      absl::Seconds(1)));
}

TEST_CASE("docker: a crash loop stops the container",
          "[orchestrator][docker]") {
  std::unique_ptr<Platform> platform = DockerPlatform();
  if (platform == nullptr) return;
  platform->CreateInstance("dockboom", "crashbin");
  std::optional<v1::InstanceRuntime> runtime;
  bool looped = WaitFor(
      [&] {
        runtime = platform->Runtime("dockboom");
        return runtime && runtime->crash_loop();
      },
      absl::Seconds(90));
  INFO(platform->Logs());
  REQUIRE(looped);
  CHECK(runtime->last_exit_code() == 1);
  std::string lines;
  for (const std::string& line : runtime->last_log_lines()) {
    absl::StrAppend(&lines, line, "\n");
  }
  CHECK(absl::StrContains(lines, "missing operand"));
  REQUIRE(WaitFor(
      [&] {
        auto info = platform->Container("dockboom");
        return info && info->status() == "exited";
      },
      absl::Seconds(30)));
  int restarts = platform->Container("dockboom")->restart_count();
  CHECK_FALSE(WaitFor(
      [&] {
        auto info = platform->Container("dockboom");
        return info && info->restart_count() > restarts;
      },
      absl::Seconds(2)));
  REQUIRE(platform->InstanceAction("delete", "dockboom").ok());
  CHECK_FALSE(platform->Container("dockboom").has_value());
}

TEST_CASE("docker: after a kill -9 the orchestrator adopts its containers",
          "[orchestrator][docker]") {
  std::unique_ptr<Platform> platform = DockerPlatform();
  if (platform == nullptr) return;
  platform->CreateInstance("dockadopt", "demo");
  v1::ContainerInfo before = WaitForContainer(*platform, "dockadopt");
  platform->WaitOnline("dockadopt", absl::Seconds(90));
  platform->KillOrchestrator();
  platform->StartOrchestrator();
  REQUIRE(WaitFor(
      [&] {
        auto runtime = platform->Runtime("dockadopt");
        return runtime && runtime->state() == "running";
      },
      absl::Seconds(30)));
  std::optional<v1::ContainerInfo> after = platform->Container("dockadopt");
  REQUIRE(after.has_value());
  CHECK(after->id() == before.id());
  CHECK(after->pid() == before.pid());
  CHECK(platform->Containers().size() == 1);
  REQUIRE(platform->InstanceAction("delete", "dockadopt").ok());
}

}  // namespace
}  // namespace iot2mqtt::orchestrator::harness
