#include "services/orchestrator/docker_api.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "iot2mqtt/sdk/status_macros.h"
#include "rapidjson/document.h"
#include "services/common/status.h"

namespace iot2mqtt::orchestrator {
namespace {

constexpr char kRuntimeUnavailable[] = "RUNTIME_UNAVAILABLE";
constexpr char kRuntimeTimeout[] = "RUNTIME_TIMEOUT";

// A plain (non-streaming) answer larger than this is refused: nothing the
// runtime asks for comes near it.
constexpr size_t kMaxBodyBytes = 64 << 20;

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct ParsedVersion {
  int major = 0;
  int minor = 0;
  bool operator<(const ParsedVersion& other) const {
    return std::make_pair(major, minor) <
           std::make_pair(other.major, other.minor);
  }
};

std::optional<ParsedVersion> ParseVersion(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, '.');
  ParsedVersion v;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &v.major) ||
      !absl::SimpleAtoi(parts[1], &v.minor) || v.major < 0 || v.minor < 0) {
    return std::nullopt;
  }
  return v;
}

std::string VersionText(const ParsedVersion& v) {
  return absl::StrCat(v.major, ".", v.minor);
}

struct Transfer {
  CURL* easy = nullptr;
  const DockerApi::ChunkSink* sink = nullptr;
  const DockerApi::Cancelled* cancelled = nullptr;
  DockerResponse* response = nullptr;
  bool stopped_by_sink = false;
  bool cancelled_by_caller = false;
  bool too_large = false;
};

size_t OnData(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t bytes = size * count;
  long status = 0;  // NOLINT(runtime/int): libcurl's type.
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
  if (t->sink != nullptr && status >= 200 && status < 300) {
    if (!(*t->sink)(absl::string_view(data, bytes))) {
      t->stopped_by_sink = true;
      return 0;  // Ends the transfer with CURLE_WRITE_ERROR.
    }
    return bytes;
  }
  if (t->response->body.size() + bytes > kMaxBodyBytes) {
    t->too_large = true;
    return 0;
  }
  t->response->body.append(data, bytes);
  return bytes;
}

// Called by libcurl while the transfer runs (the multi loop below runs it
// at least every 100 ms); non-zero aborts.
int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (t->cancelled != nullptr && *t->cancelled && (*t->cancelled)()) {
    t->cancelled_by_caller = true;
    return 1;
  }
  return 0;
}

absl::Status Unavailable(const std::string& socket, absl::string_view what) {
  return common::WithReason(
      absl::UnavailableError(absl::StrCat("Docker daemon at unix://", socket,
                                          " does not answer: ", what)),
      kRuntimeUnavailable, {{"socket", socket}});
}

}  // namespace

absl::StatusOr<std::string> DockerSocketPath(const char* docker_host) {
  if (docker_host == nullptr || *docker_host == '\0') {
    return std::string(kDefaultDockerSocket);
  }
  absl::string_view host(docker_host);
  if (!absl::ConsumePrefix(&host, "unix://") || host.empty() ||
      host[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "DOCKER_HOST must be unix:///<absolute socket path>, got \"",
        absl::CHexEscape(docker_host), "\""));
  }
  return std::string(host);
}

absl::StatusOr<std::string> ChooseApiVersion(absl::string_view daemon_newest,
                                             absl::string_view daemon_oldest) {
  std::optional<ParsedVersion> newest = ParseVersion(daemon_newest);
  if (!newest.has_value()) {
    return absl::InternalError(
        absl::StrCat("Docker reported an unreadable API version \"",
                     absl::CHexEscape(daemon_newest), "\""));
  }
  ParsedVersion ours_oldest = *ParseVersion(kOldestApiVersion);
  ParsedVersion ours_newest = *ParseVersion(kNewestApiVersion);
  if (*newest < ours_oldest) {
    return common::WithReason(
        absl::FailedPreconditionError(absl::StrCat(
            "Docker API ", VersionText(*newest), " is too old; ",
            kOldestApiVersion, " (Docker 19.03) or newer is needed")),
        kDockerTooOld, {{"api_version", VersionText(*newest)}});
  }
  ParsedVersion chosen = std::min(*newest, ours_newest);
  std::optional<ParsedVersion> oldest = ParseVersion(daemon_oldest);
  if (oldest.has_value() && chosen < *oldest) chosen = *oldest;
  return VersionText(chosen);
}

std::string QueryEscape(absl::string_view value) {
  std::string out;
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : value) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' ||
        c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string DockerErrorMessage(absl::string_view body) {
  rapidjson::Document doc;
  doc.Parse(body.data(), body.size());
  if (!doc.HasParseError() && doc.IsObject() && doc.HasMember("message") &&
      doc["message"].IsString()) {
    return std::string(doc["message"].GetString(),
                       doc["message"].GetStringLength());
  }
  absl::string_view text = absl::StripAsciiWhitespace(body);
  constexpr size_t kMax = 512;
  if (text.size() > kMax) {
    return absl::StrCat(absl::CHexEscape(text.substr(0, kMax)), "...");
  }
  return absl::CHexEscape(text);
}

absl::Time ParseDockerTime(absl::string_view text) {
  if (text.empty() || absl::StartsWith(text, "0001-01-01")) {
    return absl::InfinitePast();
  }
  absl::Time time;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, std::string(text), &time, &error)) {
    return absl::InfinitePast();
  }
  return time;
}

// ---------------------------------------------------------------------------
// DockerApi

DockerApi::DockerApi(DockerApiOptions options) : options_(std::move(options)) {
  GlobalInit();
}

absl::StatusOr<std::string> DockerApi::Version(absl::Duration timeout) {
  IOT2MQTT_ASSIGN_OR_RETURN(
      DockerResponse response,
      Perform("GET", "/version", timeout, "", "", nullptr, nullptr));
  if (response.status != 200) {
    return Unavailable(options_.socket_path,
                       absl::StrCat("GET /version answered ", response.status,
                                    ": ", DockerErrorMessage(response.body)));
  }
  rapidjson::Document doc;
  doc.Parse(response.body.data(), response.body.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("ApiVersion") ||
      !doc["ApiVersion"].IsString()) {
    return Unavailable(options_.socket_path,
                       "GET /version gave no ApiVersion (not a Docker "
                       "daemon?)");
  }
  std::string oldest;
  if (doc.HasMember("MinAPIVersion") && doc["MinAPIVersion"].IsString()) {
    oldest = doc["MinAPIVersion"].GetString();
  }
  IOT2MQTT_ASSIGN_OR_RETURN(
      std::string version,
      ChooseApiVersion(doc["ApiVersion"].GetString(), oldest));
  absl::MutexLock lock(&mu_);
  version_prefix_ = absl::StrCat("/v", version);
  return std::move(response.body);
}

std::string DockerApi::api_version() {
  absl::MutexLock lock(&mu_);
  return version_prefix_.empty() ? "" : version_prefix_.substr(2);
}

absl::StatusOr<std::string> DockerApi::VersionPrefix(absl::Duration timeout) {
  {
    absl::MutexLock lock(&mu_);
    if (!version_prefix_.empty()) return version_prefix_;
  }
  IOT2MQTT_RETURN_IF_ERROR(Version(timeout).status());
  absl::MutexLock lock(&mu_);
  return version_prefix_;
}

absl::StatusOr<DockerResponse> DockerApi::Call(absl::string_view method,
                                               absl::string_view path,
                                               absl::Duration timeout,
                                               absl::string_view body,
                                               absl::string_view content_type) {
  IOT2MQTT_ASSIGN_OR_RETURN(std::string prefix, VersionPrefix(timeout));
  return Perform(method, absl::StrCat(prefix, path), timeout, body,
                 content_type, nullptr, nullptr);
}

absl::StatusOr<DockerResponse> DockerApi::Stream(
    absl::string_view method, absl::string_view path, absl::Duration timeout,
    const ChunkSink& sink, const Cancelled& cancelled, absl::string_view body,
    absl::string_view content_type) {
  IOT2MQTT_ASSIGN_OR_RETURN(std::string prefix,
                            VersionPrefix(options_.connect_timeout));
  return Perform(method, absl::StrCat(prefix, path), timeout, body,
                 content_type, &sink, &cancelled);
}

absl::StatusOr<DockerResponse> DockerApi::Perform(
    absl::string_view method, const std::string& url_path,
    absl::Duration timeout, absl::string_view body,
    absl::string_view content_type, const ChunkSink* sink,
    const Cancelled* cancelled) {
  DockerResponse response;
  Transfer transfer;
  transfer.sink = sink;
  transfer.cancelled = cancelled;
  transfer.response = &response;

  CURL* easy = curl_easy_init();
  CURLM* multi = curl_multi_init();
  if (easy == nullptr || multi == nullptr) {
    if (easy != nullptr) curl_easy_cleanup(easy);
    if (multi != nullptr) curl_multi_cleanup(multi);
    return absl::ResourceExhaustedError("libcurl could not allocate a handle");
  }
  transfer.easy = easy;
  std::string method_text(method);
  std::string url = absl::StrCat("http://docker", url_path);
  curl_slist* headers = nullptr;
  // No "Expect: 100-continue" round trip before large bodies (build
  // contexts).
  headers = curl_slist_append(headers, "Expect:");
  std::string content_type_header;
  if (!content_type.empty()) {
    content_type_header = absl::StrCat("Content-Type: ", content_type);
    headers = curl_slist_append(headers, content_type_header.c_str());
  }
  curl_easy_setopt(easy, CURLOPT_UNIX_SOCKET_PATH,
                   options_.socket_path.c_str());
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method_text.c_str());
  if (method_text == "POST" || method_text == "PUT" || !body.empty()) {
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(body.size()));
  }
  curl_easy_setopt(
      easy, CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(  // NOLINT(runtime/int)
          options_.connect_timeout)));
  if (timeout != absl::InfiniteDuration()) {
    curl_easy_setopt(
        easy, CURLOPT_TIMEOUT_MS,
        static_cast<long>(std::max<int64_t>(  // NOLINT(runtime/int)
            1, absl::ToInt64Milliseconds(timeout))));
  }
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &OnData);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, &OnProgress);
  curl_easy_setopt(easy, CURLOPT_XFERINFODATA, &transfer);
  curl_multi_add_handle(multi, easy);

  CURLcode result = CURLE_OK;
  bool done = false;
  while (!done) {
    int running = 0;
    CURLMcode mc = curl_multi_perform(multi, &running);
    if (mc != CURLM_OK) {
      result = CURLE_FAILED_INIT;
      break;
    }
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
      if (msg->msg == CURLMSG_DONE) {
        result = msg->data.result;
        done = true;
      }
    }
    if (done || running == 0) break;
    if (cancelled != nullptr && *cancelled && (*cancelled)()) {
      transfer.cancelled_by_caller = true;
      result = CURLE_ABORTED_BY_CALLBACK;
      break;
    }
    curl_multi_poll(multi, nullptr, 0, 100, nullptr);
  }
  long status = 0;  // NOLINT(runtime/int): libcurl's type.
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
  response.status = static_cast<int>(status);
  curl_multi_remove_handle(multi, easy);
  curl_easy_cleanup(easy);
  curl_multi_cleanup(multi);
  curl_slist_free_all(headers);

  std::string what = absl::StrCat(method_text, " ", url_path);
  if (transfer.stopped_by_sink) return response;
  if (transfer.cancelled_by_caller) {
    return absl::CancelledError(absl::StrCat(what, " cancelled"));
  }
  if (transfer.too_large) {
    return absl::InternalError(
        absl::StrCat(what, ": the answer exceeds ", kMaxBodyBytes, " bytes"));
  }
  switch (result) {
    case CURLE_OK:
      return response;
    case CURLE_OPERATION_TIMEDOUT:
      return common::WithReason(
          absl::DeadlineExceededError(absl::StrCat(
              what, " took longer than ", absl::FormatDuration(timeout))),
          kRuntimeTimeout);
    default:
      return Unavailable(options_.socket_path,
                         absl::StrCat(what, ": ", curl_easy_strerror(result)));
  }
}

// ---------------------------------------------------------------------------
// LogStreamDecoder

LogStreamDecoder::LogStreamDecoder(bool tty, LogSink sink)
    : tty_(tty), sink_(std::move(sink)) {}

bool LogStreamDecoder::Feed(absl::string_view data) {
  if (stopped_) return false;
  if (tty_) {
    pending_stdout_.append(data.data(), data.size());
    return EmitLines(1, &pending_stdout_, false);
  }
  while (!data.empty()) {
    if (frame_left_ == 0) {
      size_t take = std::min(data.size(), 8 - header_.size());
      header_.append(data.data(), take);
      data.remove_prefix(take);
      if (header_.size() < 8) break;
      const auto* h = reinterpret_cast<const unsigned char*>(header_.data());
      frame_stream_ = h[0] >= 2 ? 2 : 1;  // 0 stdin, 1 stdout, 2/3 stderr.
      frame_left_ = (uint32_t{h[4]} << 24) | (uint32_t{h[5]} << 16) |
                    (uint32_t{h[6]} << 8) | uint32_t{h[7]};
      header_.clear();
      continue;
    }
    size_t take = std::min<size_t>(data.size(), frame_left_);
    std::string* pending =
        frame_stream_ == 2 ? &pending_stderr_ : &pending_stdout_;
    pending->append(data.data(), take);
    data.remove_prefix(take);
    frame_left_ -= static_cast<uint32_t>(take);
    if (!EmitLines(frame_stream_, pending, false)) return false;
  }
  return true;
}

bool LogStreamDecoder::Finish() {
  if (stopped_) return false;
  return EmitLines(1, &pending_stdout_, true) &&
         EmitLines(2, &pending_stderr_, true);
}

bool LogStreamDecoder::EmitLines(int stream, std::string* pending, bool flush) {
  size_t start = 0;
  while (true) {
    size_t newline = pending->find('\n', start);
    if (newline == std::string::npos) break;
    if (!Emit(stream,
              absl::string_view(*pending).substr(start, newline - start))) {
      pending->clear();
      return false;
    }
    start = newline + 1;
  }
  pending->erase(0, start);
  if (flush && !pending->empty()) {
    bool ok = Emit(stream, *pending);
    pending->clear();
    return ok;
  }
  return true;
}

bool LogStreamDecoder::Emit(int stream, absl::string_view raw) {
  absl::ConsumeSuffix(&raw, "\r");
  LogLine line;
  line.stream = stream == 2 ? "stderr" : "stdout";
  size_t space = raw.find(' ');
  absl::Time time = space == absl::string_view::npos
                        ? ParseDockerTime(raw)
                        : ParseDockerTime(raw.substr(0, space));
  if (time != absl::InfinitePast()) {
    line.time = time;
    raw = space == absl::string_view::npos ? absl::string_view()
                                           : raw.substr(space + 1);
  }
  line.text = std::string(raw);
  if (!sink_(line)) stopped_ = true;
  return !stopped_;
}

// ---------------------------------------------------------------------------
// LineSplitter

void LineSplitter::Feed(absl::string_view data) {
  pending_.append(data.data(), data.size());
  size_t start = 0;
  while (true) {
    size_t newline = pending_.find('\n', start);
    if (newline == std::string::npos) break;
    sink_(absl::string_view(pending_).substr(start, newline - start));
    start = newline + 1;
  }
  pending_.erase(0, start);
}

void LineSplitter::Finish() {
  if (!pending_.empty()) sink_(pending_);
  pending_.clear();
}

}  // namespace iot2mqtt::orchestrator
