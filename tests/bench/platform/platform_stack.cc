#include "tests/bench/platform/platform_stack.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "boost/asio/connect.hpp"
#include "boost/beast/core/buffers_to_string.hpp"
#include "boost/beast/http.hpp"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "rapidjson/document.h"
#include "tests/bench/sdk/bench_util.h"

namespace iot2mqtt::bench {
namespace {

namespace beast = boost::beast;
namespace http = boost::beast::http;
using boost::asio::ip::tcp;

[[noreturn]] void Die(const std::string& why, const std::string& logs = "") {
  std::fprintf(stderr, "platform bench: %s\n%s\n", why.c_str(), logs.c_str());
  std::exit(1);
}

std::string Tail(const std::string& path, size_t tail) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::ostringstream out;
  out << in.rdbuf();
  std::string text = out.str();
  return text.size() > tail ? text.substr(text.size() - tail) : text;
}

void CopyFile(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) Die("cannot read " + from);
  std::ofstream out(to, std::ios::binary);
  out << in.rdbuf();
}

std::string SourceDir() {
  const char* dir = std::getenv("IOT2MQTT_SOURCE_DIR");
  if (dir != nullptr && *dir != '\0') return dir;
  return IOT2MQTT_BENCH_SOURCE_DIR;
}

}  // namespace

// --- HttpClient ------------------------------------------------------------

HttpClient::HttpClient(int port) : port_(port), socket_(ioc_) {}

HttpClient::~HttpClient() {
  boost::system::error_code ignored;
  socket_.close(ignored);
}

void HttpClient::Connect() {
  boost::system::error_code ignored;
  socket_.close(ignored);
  socket_ = tcp::socket(ioc_);
  socket_.connect(tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"),
                                static_cast<unsigned short>(port_)));
  socket_.set_option(tcp::no_delay(true));
  buffer_.consume(buffer_.size());
  connected_ = true;
}

testing::HttpResponse HttpClient::Request(const std::string& method,
                                          const std::string& target,
                                          const std::string& body,
                                          const std::string& token) {
  testing::HttpResponse out;
  try {
    if (!connected_) Connect();
    http::request<http::string_body> request(http::string_to_verb(method),
                                             target, 11);
    request.set(http::field::host, absl::StrCat("127.0.0.1:", port_));
    request.keep_alive(true);
    if (!token.empty()) {
      request.set(http::field::authorization, absl::StrCat("Bearer ", token));
    }
    if (!body.empty() || method == "POST" || method == "PUT") {
      request.set(http::field::content_type, "application/json");
      request.body() = body;
      request.prepare_payload();
    }
    http::write(socket_, request);
    http::response<http::string_body> response;
    http::read(socket_, buffer_, response);
    out.status = static_cast<int>(response.result_int());
    out.body = std::move(response.body());
    if (!response.keep_alive()) connected_ = false;
  } catch (const boost::system::system_error& e) {
    connected_ = false;
    out.status = 0;
    out.body = e.what();
  }
  return out;
}

// --- WsCounter -------------------------------------------------------------

WsCounter::WsCounter(int port, const std::string& target) : ws_(ioc_) {
  boost::system::error_code ec;
  ws_.next_layer().connect(
      tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"),
                    static_cast<unsigned short>(port)),
      ec);
  if (ec) {
    first_ = ec.message();
    absl::MutexLock lock(&mu_);
    first_done_ = true;
    return;
  }
  thread_ = std::thread([this, port, target] { Loop(port, target); });
}

bool WsCounter::WaitFirst(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&first_done_), timeout);
  if (!first_done_) first_ = "no first message in time";
  return first_done_ && ok_;
}

WsCounter::~WsCounter() { Stop(); }

void WsCounter::Stop() {
  stopping_ = true;
  // Unblocks the reader's blocking read (shutdown is safe across threads
  // at the OS level; the stream is not used again).
  ::shutdown(ws_.next_layer().native_handle(), SHUT_RDWR);
  if (thread_.joinable()) thread_.join();
}

void WsCounter::Loop(int port, std::string target) {
  beast::flat_buffer buffer;
  try {
    // The first message may be large (every cached topic).
    ws_.read_message_max(256u << 20);
    ws_.handshake(absl::StrCat("127.0.0.1:", port), target);
    ws_.read(buffer);
    first_ = beast::buffers_to_string(buffer.data());
    ok_ = first_.find("\"type\":\"topics\"") != std::string::npos;
  } catch (const boost::system::system_error& e) {
    first_ = e.what();
  }
  {
    absl::MutexLock lock(&mu_);
    first_done_ = true;
  }
  if (!ok_) {
    closed = true;
    return;
  }
  // Classify by the start of the message: {"type":"update",...
  constexpr char kUpdate[] = "{\"type\":\"update\"";
  constexpr char kSkipped[] = "{\"type\":\"skipped\",\"count\":";
  while (!stopping_) {
    boost::system::error_code ec;
    buffer.consume(buffer.size());
    size_t n = ws_.read(buffer, ec);
    if (ec) {
      if (!stopping_) close_reason = ec.message();
      break;
    }
    bytes += static_cast<int64_t>(n);
    std::string message = beast::buffers_to_string(buffer.data());
    if (message.compare(0, sizeof(kUpdate) - 1, kUpdate) == 0) {
      ++updates;
    } else if (message.compare(0, sizeof(kSkipped) - 1, kSkipped) == 0) {
      ++skipped_markers;
      skipped_total += std::atoll(message.c_str() + sizeof(kSkipped) - 1);
    } else {
      ++other;
    }
  }
  closed = true;
}

// --- PlatformStack ---------------------------------------------------------

PlatformStack::PlatformStack(StackOptions options)
    : options_(std::move(options)) {
  for (const char* dir : {"data", "esp32", "connectors", "connectors/demo"}) {
    if (mkdir(root_.Join(dir).c_str(), 0755) != 0) Die("mkdir failed");
  }
  for (const char* file : {"setup.json", "manifest.json"}) {
    CopyFile(absl::StrCat(SourceDir(), "/connectors/demo/", file),
             root_.Join(absl::StrCat("connectors/demo/", file)));
  }
  if (options_.prepare_connectors) {
    options_.prepare_connectors(root_.Join("connectors"));
  }
  sdk::testing::LoopbackBrokerOptions broker_options;
  broker_options.extra_config = options_.broker_extra_config;
  // A diagnostic knob for the driver: extra mosquitto.conf lines, `;` for
  // a line break (e.g. "max_inflight_messages 100").
  if (const char* extra = std::getenv("BENCH_BROKER_CONFIG")) {
    for (const char* c = extra; *c != '\0'; ++c) {
      broker_options.extra_config += *c == ';' ? '\n' : *c;
    }
    broker_options.extra_config += '\n';
  }
  auto broker = sdk::testing::LoopbackBroker::Start(broker_options);
  if (!broker.ok()) Die("broker: " + broker.status().ToString());
  broker_ = *std::move(broker);

  config_port_ = testing::FreePort();
  bridge_port_ = testing::FreePort();
  gateway_port_ = testing::FreePort();
  orchestrator_port_ = testing::FreePort();
  discovery_port_ = testing::FreePort();
  const std::string config_addr = absl::StrCat("127.0.0.1:", config_port_);
  const std::string bridge_addr = absl::StrCat("127.0.0.1:", bridge_port_);
  const std::string orchestrator_addr =
      absl::StrCat("127.0.0.1:", orchestrator_port_);

  config_ = Start("iot2mqtt-config",
                  {{"IOT2MQTT_DATA_DIR", root_.Join("data")},
                   {"IOT2MQTT_CONNECTORS_DIR", root_.Join("connectors")},
                   {"ESP32_CONFIGS_DIR", root_.Join("esp32")},
                   {"CONFIG_LISTEN_ADDR", config_addr},
                   {"WEB_ACCESS_KEY", kAccessKey},
                   {"MQTT_HOST", "127.0.0.1"},
                   {"MQTT_PORT", absl::StrCat(broker_->port())},
                   {"MQTT_BASE_TOPIC", kBaseTopic},
                   {"LOG_LEVEL", "WARNING"}},
                  "config.log", config_port_);
  std::map<std::string, std::string> bridge_env = {
      {"MQTT_BRIDGE_LISTEN_ADDR", bridge_addr},
      {"CONFIG_SERVICE_ADDR", config_addr},
      {"LOG_LEVEL", "WARNING"}};
  for (const auto& [key, value] : options_.bridge_env) bridge_env[key] = value;
  bridge_ =
      Start("iot2mqtt-mqtt-bridge", bridge_env, "bridge.log", bridge_port_);
  if (options_.orchestrator) {
    orchestrator_ =
        Start("iot2mqtt-orchestrator",
              {{"IOT2MQTT_DATA_DIR", root_.Join("data")},
               {"IOT2MQTT_CONNECTORS_DIR", root_.Join("connectors")},
               {"ORCHESTRATOR_LISTEN_ADDR", orchestrator_addr},
               {"CONFIG_SERVICE_ADDR", config_addr},
               {"MQTT_BRIDGE_ADDR", bridge_addr},
               {"IOT2MQTT_RUNTIME", options_.runtime},
               {"IOT2MQTT_CONNECTOR_BIN_DIR", BinDir()},
               {"PROCESS_STOP_ON_EXIT", "true"},
               {"LOG_LEVEL", "WARNING"}},
              "orchestrator.log", orchestrator_port_);
  }
  if (options_.discovery) {
    std::map<std::string, std::string> discovery_env = {
        {"IOT2MQTT_DATA_DIR", root_.Join("data")},
        {"IOT2MQTT_CONNECTORS_DIR", root_.Join("connectors")},
        {"DISCOVERY_LISTEN_ADDR", absl::StrCat("127.0.0.1:", discovery_port_)},
        {"CONFIG_SERVICE_ADDR", config_addr},
        {"IOT2MQTT_CONNECTOR_BIN_DIR", BinDir()},
        {"LOG_LEVEL", "WARNING"}};
    for (const auto& [key, value] : options_.discovery_env) {
      discovery_env[key] = value;
    }
    discovery_ = Start("iot2mqtt-discovery", discovery_env, "discovery.log",
                       discovery_port_);
  }
  gateway_ =
      Start("iot2mqtt-gateway",
            {{"GATEWAY_LISTEN_ADDR", absl::StrCat("127.0.0.1:", gateway_port_)},
             {"CONFIG_SERVICE_ADDR", config_addr},
             {"MQTT_BRIDGE_ADDR", bridge_addr},
             {"ORCHESTRATOR_ADDR", orchestrator_addr},
             {"DISCOVERY_ADDR", absl::StrCat("127.0.0.1:", discovery_port_)},
             {"LOG_LEVEL", "WARNING"}},
            "gateway.log", gateway_port_);

  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  bridge_stub_ =
      mqtt_bridge::v1::MqttBridgeService::NewStub(grpc::CreateCustomChannel(
          bridge_addr, grpc::InsecureChannelCredentials(), args));

  HttpClient http(gateway_port_);
  testing::HttpResponse login =
      http.Request("POST", "/api/auth/login",
                   absl::StrCat(R"({"key":")", kAccessKey, R"("})"));
  token_ = JsonString(login.body, "token");
  if (login.status != 200 || token_.empty()) {
    Die(absl::StrCat("login failed: ", login.status, " ", login.body), Logs());
  }
  // The bridge is connected to the broker.
  bool connected = testing::WaitFor([&] { return BridgeStatus().connected(); },
                                    absl::Seconds(30));
  if (!connected) Die("the bridge did not connect to the broker", Logs());
}

PlatformStack::~PlatformStack() {
  if (orchestrator_ != nullptr) StopOrchestrator();
  if (discovery_ != nullptr) StopDiscovery();
  // Graceful stops (the destructors SIGKILL what is left).
  for (auto* child : {&gateway_, &bridge_, &config_}) {
    if (*child == nullptr) continue;
    (*child)->Signal(SIGTERM);
    (void)(*child)->Wait(absl::Seconds(10));
  }
}

void PlatformStack::StopOrchestrator(absl::Duration timeout) {
  if (orchestrator_ == nullptr) return;
  orchestrator_->Signal(SIGTERM);
  (void)orchestrator_->Wait(timeout);
  orchestrator_.reset();
}

void PlatformStack::StopDiscovery(absl::Duration timeout) {
  if (discovery_ == nullptr) return;
  discovery_->Signal(SIGTERM);
  (void)discovery_->Wait(timeout);
  discovery_.reset();
}

std::unique_ptr<testing::ChildProcess> PlatformStack::Start(
    const std::string& binary, std::map<std::string, std::string> env,
    const std::string& log, int port) {
  auto child = StartOrDie(BinDir() + "/" + binary, {}, env, root_.Join(log));
  bool listening = testing::WaitFor(
      [&] { return !child->Running() || testing::PortAccepts(port); },
      absl::Seconds(30));
  if (!listening || !child->Running()) {
    Die(binary + " did not start", Logs());
  }
  return child;
}

mqtt_bridge::v1::GetStatusResponse PlatformStack::BridgeStatus() {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(5));
  mqtt_bridge::v1::GetStatusResponse response;
  (void)bridge_stub_->GetStatus(&context, {}, &response);
  return response;
}

std::string PlatformStack::Logs(size_t tail) const {
  std::string out;
  for (const char* name : {"config.log", "bridge.log", "gateway.log",
                           "orchestrator.log", "discovery.log"}) {
    absl::StrAppend(&out, "--- ", name, "\n", Tail(root_.Join(name), tail),
                    "\n");
  }
  return out;
}

// --- Helpers ---------------------------------------------------------------

std::string JsonString(const std::string& json, const char* key) {
  rapidjson::Document doc;
  doc.Parse(json.c_str(), json.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember(key) ||
      !doc[key].IsString()) {
    return "";
  }
  return std::string(doc[key].GetString(), doc[key].GetStringLength());
}

void Say(const char* format, ...) {
  va_list args;
  va_start(args, format);
  std::vfprintf(stdout, format, args);
  va_end(args);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return absl::StrCat(one, " ", five, " ", fifteen);
}

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

}  // namespace iot2mqtt::bench
