#ifndef IOT2MQTT_SERVICES_ORCHESTRATOR_DOCKER_API_H_
#define IOT2MQTT_SERVICES_ORCHESTRATOR_DOCKER_API_H_

// The Docker Engine HTTP API over its unix socket (libcurl), and the wire
// formats the runtime reads from it (no gRPC):
//
//   - DockerApi: one request per call on a fresh connection, a deadline on
//     every call, streaming calls with a chunk callback and cancellation
//     polled every 100 ms. Paths are prefixed with the negotiated API
//     version ("/v1.41"), learned once from GET /version.
//   - LogStreamDecoder: the multiplexed log stream (8-byte frame headers:
//     stream, 0, 0, 0, big-endian length) or a TTY's raw stream, cut into
//     lines, each with its RFC 3339 timestamp.
//   - LineSplitter: the JSON-lines progress stream of POST /build.
//
// Errors: UNAVAILABLE RUNTIME_UNAVAILABLE (the socket does not answer),
// DEADLINE_EXCEEDED RUNTIME_TIMEOUT, CANCELLED (the caller's cancel);
// HTTP statuses are returned to the caller, who knows what they mean.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/orchestrator/runtime.h"

namespace iot2mqtt::orchestrator {

inline constexpr char kDockerTooOld[] = "DOCKER_TOO_OLD";

inline constexpr char kDefaultDockerSocket[] = "/var/run/docker.sock";

// The socket named by a DOCKER_HOST value: "unix:///run/docker.sock" →
// "/run/docker.sock"; null or empty → kDefaultDockerSocket. Any other
// scheme (tcp://, ssh://) is INVALID_ARGUMENT: only the local socket is
// spoken.
absl::StatusOr<std::string> DockerSocketPath(const char* docker_host);

// The API version to speak, from GET /version's ApiVersion and
// MinAPIVersion: the daemon's newest, capped at the newest this code knows
// (kNewestApiVersion), never below the daemon's minimum.
// FAILED_PRECONDITION DOCKER_TOO_OLD when the daemon's newest is older than
// kOldestApiVersion. Versions are "<major>.<minor>".
inline constexpr char kOldestApiVersion[] = "1.40";  // Docker 19.03.
inline constexpr char kNewestApiVersion[] = "1.47";
absl::StatusOr<std::string> ChooseApiVersion(absl::string_view daemon_newest,
                                             absl::string_view daemon_oldest);

// `value` percent-encoded for a URL query.
std::string QueryEscape(absl::string_view value);

// The "message" of a Docker error body ({"message": "..."}), else the body
// itself (at most 512 bytes, control characters escaped).
std::string DockerErrorMessage(absl::string_view body);

// Docker's RFC 3339 timestamps ("2024-05-01T10:00:00.123456789Z", any
// offset). The zero time "0001-01-01T00:00:00Z" and anything unparsable
// give absl::InfinitePast().
absl::Time ParseDockerTime(absl::string_view text);

struct DockerResponse {
  int status = 0;  // HTTP status.
  std::string body;
};

struct DockerApiOptions {
  std::string socket_path = kDefaultDockerSocket;
  absl::Duration connect_timeout = absl::Seconds(5);
};

class DockerApi {
 public:
  // Returns false to stop the transfer (the call then returns OK).
  using ChunkSink = std::function<bool(absl::string_view chunk)>;
  using Cancelled = std::function<bool()>;

  explicit DockerApi(DockerApiOptions options);

  const std::string& socket_path() const { return options_.socket_path; }

  // GET /version (unversioned). Remembers the API version to speak.
  // Returns the body.
  absl::StatusOr<std::string> Version(absl::Duration timeout);
  // The API version spoken ("1.41"); "" until a call learned it.
  std::string api_version();

  // One request to the versioned `path` ("/containers/json?all=1"); the
  // body is sent with `content_type` when not empty.
  absl::StatusOr<DockerResponse> Call(absl::string_view method,
                                      absl::string_view path,
                                      absl::Duration timeout,
                                      absl::string_view body = "",
                                      absl::string_view content_type = "");

  // The same, with the response body handed to `sink` as it arrives (only
  // for 2xx answers; an error answer's body is returned in `body`). Ends
  // when the server closes the stream, `sink` returns false, `cancelled`
  // returns true (CANCELLED) or `timeout` passes (DEADLINE_EXCEEDED;
  // absl::InfiniteDuration() for none).
  absl::StatusOr<DockerResponse> Stream(
      absl::string_view method, absl::string_view path, absl::Duration timeout,
      const ChunkSink& sink, const Cancelled& cancelled = nullptr,
      absl::string_view body = "", absl::string_view content_type = "");

 private:
  absl::StatusOr<std::string> VersionPrefix(absl::Duration timeout);
  absl::StatusOr<DockerResponse> Perform(absl::string_view method,
                                         const std::string& url_path,
                                         absl::Duration timeout,
                                         absl::string_view body,
                                         absl::string_view content_type,
                                         const ChunkSink* sink,
                                         const Cancelled* cancelled);

  const DockerApiOptions options_;
  absl::Mutex mu_;
  std::string version_prefix_ ABSL_GUARDED_BY(mu_);  // "/v1.41"
};

// Decodes GET /containers/{id}/logs?timestamps=1. Feed() any split of the
// stream; complete lines go to the sink as they are decoded, a line cut at
// the end of the stream comes out of Finish(). Lines end at "\n" (a "\r"
// before it is dropped); each starts with Docker's timestamp and a space,
// which become LogLine::time (a line without one keeps InfinitePast and
// its whole text).
class LogStreamDecoder {
 public:
  // `tty`: the container has a TTY, so the stream is raw (no frame
  // headers; everything is "stdout").
  LogStreamDecoder(bool tty, LogSink sink);

  // False once the sink returned false (the rest is dropped).
  bool Feed(absl::string_view data);
  bool Finish();

 private:
  bool EmitLines(int stream, std::string* pending, bool flush);
  bool Emit(int stream, absl::string_view raw);

  const bool tty_;
  const LogSink sink_;
  bool stopped_ = false;
  std::string header_;          // A frame header still incomplete.
  uint32_t frame_left_ = 0;     // Payload bytes left in the frame.
  int frame_stream_ = 1;        // 1 stdout, 2 stderr.
  std::string pending_stdout_;  // Partial lines per stream.
  std::string pending_stderr_;
};

// Splits a stream into "\n"-terminated lines (for the build's JSON lines);
// a last line without "\n" comes out of Finish().
class LineSplitter {
 public:
  explicit LineSplitter(std::function<void(absl::string_view line)> sink)
      : sink_(std::move(sink)) {}
  void Feed(absl::string_view data);
  void Finish();

 private:
  std::function<void(absl::string_view line)> sink_;
  std::string pending_;
};

}  // namespace iot2mqtt::orchestrator

#endif  // IOT2MQTT_SERVICES_ORCHESTRATOR_DOCKER_API_H_
