#include "gateway/http_server.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "boost/asio/bind_executor.hpp"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/http/empty_body.hpp"
#include "boost/beast/http/error.hpp"
#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/read.hpp"
#include "boost/beast/http/string_body.hpp"
#include "boost/beast/http/write.hpp"
#include "iot2mqtt/sdk/log.h"
#include "services/common/rpc_scope.h"

namespace iot2mqtt::gateway {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

std::string HttpRequest::Header(absl::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return value;
  }
  return "";
}

HttpResponse ErrorResponse(const HttpError& error,
                           absl::string_view correlation_id) {
  HttpResponse response;
  response.status = error.http_status;
  response.body = ErrorBody(error.status, correlation_id);
  return response;
}

std::string CorrelationIdFor(absl::string_view header) {
  bool sane = !header.empty() && header.size() <= 128;
  for (char c : header) {
    if (c < 0x21 || c > 0x7e) sane = false;
  }
  return sane ? std::string(header) : common::NewCorrelationId();
}

ResponseStream::ResponseStream(size_t max_buffered_bytes)
    : max_buffered_bytes_(max_buffered_bytes) {}

ResponseStream::~ResponseStream() = default;

bool ResponseStream::Write(std::string chunk) {
  {
    absl::MutexLock lock(&mu_);
    if (closed_ || ended_) return false;
    if (chunk.empty()) return true;
    if (chunk.size() <= max_buffered_bytes_ &&
        buffered_bytes_ <= max_buffered_bytes_ - chunk.size()) {
      buffered_bytes_ += chunk.size();
      queue_.push_back(std::move(chunk));
      NotifyLocked();
      return true;
    }
    overflowed_ = true;
  }
  CloseAndNotify();
  return false;
}

void ResponseStream::End() {
  absl::MutexLock lock(&mu_);
  if (closed_ || ended_) return;
  ended_ = true;
  NotifyLocked();
}

void ResponseStream::Close() { CloseAndNotify(); }

void ResponseStream::SetOnClose(std::function<void()> on_close) {
  {
    absl::MutexLock lock(&mu_);
    if (!on_close_ran_) {
      on_close_ = std::move(on_close);
      return;
    }
  }
  if (on_close) on_close();  // Closed already.
}

bool ResponseStream::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_ || ended_;
}

void ResponseStream::NotifyLocked() {
  if (notify_ && !notify_pending_) {
    notify_pending_ = true;
    notify_();
  }
}

void ResponseStream::Attach(std::function<void()> notify) {
  absl::MutexLock lock(&mu_);
  if (closed_) return;
  notify_ = std::move(notify);
  notify_pending_ = false;
}

ResponseStream::Take ResponseStream::TakeChunks(
    std::vector<std::string>* chunks) {
  absl::MutexLock lock(&mu_);
  notify_pending_ = false;
  if (closed_) return Take::kClosed;
  if (chunks == nullptr) return Take::kIdle;
  if (!queue_.empty()) {
    chunks->swap(queue_);
    queue_.clear();
    return Take::kData;
  }
  return ended_ ? Take::kEnded : Take::kIdle;
}

void ResponseStream::Written(size_t bytes) {
  absl::MutexLock lock(&mu_);
  buffered_bytes_ -= std::min(bytes, buffered_bytes_);
}

bool ResponseStream::overflowed() const {
  absl::MutexLock lock(&mu_);
  return overflowed_;
}

void ResponseStream::CloseAndNotify() {
  std::function<void()> on_close;
  {
    absl::MutexLock lock(&mu_);
    if (!closed_) {
      closed_ = true;
      queue_.clear();
      buffered_bytes_ = 0;
      // Wake the session so it closes the connection, then forget it.
      NotifyLocked();
      notify_ = nullptr;
    }
    if (!on_close_ran_) {
      on_close_ran_ = true;
      on_close = std::move(on_close_);
      on_close_ = nullptr;
    }
  }
  if (on_close) on_close();
}

namespace {

absl::string_view View(beast::string_view s) {
  return absl::string_view(s.data(), s.size());
}
std::string Str(beast::string_view s) {
  return std::string(s.data(), s.size());
}

std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      absl::ToChronoNanoseconds(d));
}

bool IsParseError(const error_code& ec) {
  return ec.category() ==
             http::make_error_code(http::error::bad_method).category() &&
         ec != http::error::partial_message && ec != http::error::end_of_stream;
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 499:
      return "Client Closed Request";
    case 431:
      return "Request Header Fields Too Large";
    default:
      return nullptr;
  }
}

}  // namespace

std::string EscapeUnprintable(absl::string_view text, size_t max_bytes) {
  std::string out;
  for (char c : text.substr(0, max_bytes)) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7e) {
      absl::StrAppendFormat(&out, "%%%02X", u);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

class Session;

class HttpServer::Impl {
 public:
  Impl(HttpServerOptions options, RequestHandler* handler)
      : options_(std::move(options)),
        handler_(handler),
        cors_(options_.cors_origins),
        acceptor_(net::make_strand(ioc_)),
        retry_timer_(acceptor_.get_executor()) {}

  void Accept();
  void Register(const std::shared_ptr<Session>& session);
  void Unregister(Session* session);
  // Remembers a streaming answer so Shutdown can close it wherever it is;
  // closes it at once when the server is stopping.
  void AdoptStream(const std::shared_ptr<ResponseStream>& stream);

  // Logs the request and tells the handler (metrics).
  void Finish(absl::string_view method, absl::string_view path,
              const std::string& correlation_id, const HttpResponse& response,
              absl::Time start) {
    absl::Duration latency = absl::Now() - start;
    {
      sdk::ScopedCorrelationId scope(correlation_id);
      IOT2MQTT_LOG(INFO)
              .With("method", method)
              .With("path", EscapeUnprintable(path, 512))
              .With("route", response.route)
              .With("status", response.status)
              .With("latency_ms", absl::ToDoubleMilliseconds(latency))
          << "http request";
    }
    handler_->Record(method, response, latency);
  }

  // Declared before ioc_: sessions destroyed with the io_context still
  // unregister themselves.
  HttpServerOptions options_;
  RequestHandler* handler_;
  CorsPolicy cors_;
  absl::Mutex mu_;
  std::map<Session*, std::weak_ptr<Session>> sessions_ ABSL_GUARDED_BY(mu_);
  std::vector<std::weak_ptr<ResponseStream>> streams_ ABSL_GUARDED_BY(mu_);
  std::atomic<int> in_progress_{0};
  std::atomic<bool> stopping_{false};
  bool shut_down_ = false;  // Only touched by the owning thread.

  net::io_context ioc_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_;
  tcp::acceptor acceptor_;
  net::steady_timer retry_timer_;
  std::vector<std::thread> threads_;
};

// One connection. Every handler runs on the connection's strand.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpServer::Impl* server)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        server_(server) {}

  ~Session() { server_->Unregister(this); }

  void Start() {
    net::post(socket_.get_executor(),
              [self = shared_from_this()] { self->ReadRequest(); });
  }

  // At shutdown (from any thread).
  void PostStopIfIdle() {
    net::post(socket_.get_executor(),
              [self = shared_from_this()] { self->StopIfIdle(); });
  }

 private:
  // Closes when waiting for a request, else closes after the current
  // response.
  void StopIfIdle() {
    close_after_response_ = true;
    if (state_ == State::kStreaming ||
        (state_ == State::kDraining && streamed_)) {
      Close();  // Streams don't hold the grace period.
      return;
    }
    if (state_ == State::kReading && buffer_.size() == 0 &&
        (!parser_ || !parser_->got_some())) {
      Close();
    }
  }

  enum class State {
    kReading,
    kHandling,
    kWriting,
    kStreaming,  // Headers or chunks of a streaming answer.
    kDraining,
    kClosed
  };

  void ArmTimer(absl::Duration timeout) {
    uint64_t generation = ++timer_generation_;
    timer_.expires_after(ToChrono(timeout));
    timer_.async_wait([self = shared_from_this(), generation](error_code ec) {
      if (ec || generation != self->timer_generation_) return;
      self->OnTimeout();
    });
  }

  void CancelTimer() {
    ++timer_generation_;
    timer_.cancel();
  }

  void OnTimeout() {
    timed_out_ = true;
    error_code ignored;
    switch (state_) {
      case State::kReading:
        // The pending read completes with operation_aborted; OnRead decides.
        socket_.cancel(ignored);
        break;
      case State::kWriting:
      case State::kStreaming:
      case State::kDraining:
        Close();
        break;
      case State::kHandling:
      case State::kClosed:
        break;
    }
  }

  void ReadRequest() {
    if (state_ == State::kClosed) return;
    if (close_after_response_ && buffer_.size() == 0) {
      Close();
      return;
    }
    state_ = State::kReading;
    timed_out_ = false;
    parser_.emplace();
    parser_->header_limit(
        static_cast<std::uint32_t>(server_->options_.max_header_bytes));
    parser_->body_limit(
        static_cast<std::uint64_t>(server_->options_.max_body_bytes));
    ArmTimer(server_->options_.read_timeout);
    http::async_read_header(
        socket_, buffer_, *parser_,
        [self = shared_from_this()](error_code ec, std::size_t) {
          self->OnHeader(ec);
        });
  }

  // A failed read: answer when the client can still learn something from
  // it, else just close.
  void OnReadError(const error_code& ec) {
    const bool got_some = buffer_.size() > 0 || parser_->got_some();
    if (timed_out_) {
      if (got_some) {
        SendErrorAndClose(GatewayError(
            408, absl::StatusCode::kDeadlineExceeded,
            absl::StrCat("the request did not arrive within ",
                         absl::FormatDuration(server_->options_.read_timeout)),
            "REQUEST_TIMEOUT"));
      } else {
        Close();  // An idle keep-alive connection.
      }
      return;
    }
    if (ec == http::error::header_limit) {
      SendErrorAndClose(GatewayError(
          431, absl::StatusCode::kResourceExhausted,
          absl::StrCat("the request headers exceed ",
                       server_->options_.max_header_bytes, " bytes"),
          "HEADERS_TOO_LARGE",
          {{"limit_bytes", absl::StrCat(server_->options_.max_header_bytes)}}));
      return;
    }
    if (ec == http::error::body_limit) {
      SendErrorAndClose(GatewayError(
          413, absl::StatusCode::kResourceExhausted,
          absl::StrCat("the request body exceeds ",
                       server_->options_.max_body_bytes, " bytes"),
          "PAYLOAD_TOO_LARGE",
          {{"limit_bytes", absl::StrCat(server_->options_.max_body_bytes)}}));
      return;
    }
    if (IsParseError(ec)) {
      SendErrorAndClose(
          GatewayError(400, absl::StatusCode::kInvalidArgument,
                       absl::StrCat("malformed HTTP request: ", ec.message()),
                       "MALFORMED_REQUEST"));
      return;
    }
    Close();  // end_of_stream, partial_message, reset, ...
  }

  void OnHeader(error_code ec) {
    if (ec || timed_out_) {
      OnReadError(ec);
      return;
    }
    start_ = absl::Now();
    auto& request = parser_->get();
    method_ = Str(request.method_string());
    path_ = Str(request.target().substr(0, request.target().find('?')));
    correlation_id_ = CorrelationIdFor(View(request["X-Correlation-ID"]));
    if (parser_->is_done()) {
      OnBody(error_code());
      return;
    }
    if (request.version() >= 11 &&
        absl::EqualsIgnoreCase(View(request[http::field::expect]),
                               "100-continue")) {
      static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
      net::async_write(socket_, net::buffer(kContinue, sizeof(kContinue) - 1),
                       [self = shared_from_this()](error_code ec, std::size_t) {
                         if (ec) {
                           self->Close();
                           return;
                         }
                         self->ReadBody();
                       });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    http::async_read(socket_, buffer_, *parser_,
                     [self = shared_from_this()](error_code ec, std::size_t) {
                       self->OnBody(ec);
                     });
  }

  void OnBody(error_code ec) {
    if (ec || timed_out_) {
      OnReadError(ec);
      return;
    }
    CancelTimer();
    state_ = State::kHandling;
    server_->in_progress_.fetch_add(1);
    counted_ = true;

    http::request<http::string_body> message = parser_->release();
    keep_alive_ = message.keep_alive();
    version_ = message.version();
    HttpRequest request;
    request.method = method_;
    request.target = Str(message.target());
    // absolute-form ("http://host/path", RFC 7230 §5.3.2): keep the path.
    for (absl::string_view scheme : {"http://", "https://"}) {
      if (absl::StartsWithIgnoreCase(request.target, scheme)) {
        size_t slash = request.target.find('/', scheme.size());
        request.target =
            slash == std::string::npos ? "/" : request.target.substr(slash);
        path_ = request.target.substr(0, request.target.find('?'));
        break;
      }
    }
    size_t question = request.target.find('?');
    request.path = request.target.substr(0, question);
    if (question != std::string::npos) {
      request.query = request.target.substr(question + 1);
    }
    for (const auto& field : message) {
      request.headers.emplace_back(
          absl::AsciiStrToLower(View(field.name_string())), Str(field.value()));
    }
    request.body = std::move(message.body());
    request.correlation_id = correlation_id_;
    {
      error_code ec;
      net::ip::address remote = socket_.remote_endpoint(ec).address();
      if (remote.is_v6() && remote.to_v6().is_v4_mapped()) {
        remote = net::ip::make_address_v4(net::ip::v4_mapped, remote.to_v6());
      }
      if (!ec) request.remote_address = remote.to_string();
    }
    origin_ = request.Header("origin");

    const CorsPolicy& cors = server_->cors_;
    if (cors.IsPreflight(request.method, origin_,
                         request.Header("access-control-request-method"))) {
      HttpResponse response;
      response.status = 204;
      response.content_type.clear();
      response.route = "preflight";
      response.headers = cors.PreflightHeaders(origin_);
      Respond(std::move(response));
      return;
    }

    auto self = shared_from_this();
    auto answered = std::make_shared<std::atomic<bool>>(false);
    server_->handler_->Handle(
        std::move(request), [self, answered](HttpResponse response) {
          if (answered->exchange(true)) {
            if (response.stream) response.stream->Close();
            return;
          }
          if (response.stream) self->server_->AdoptStream(response.stream);
          net::post(self->socket_.get_executor(),
                    [self, response = std::move(response)]() mutable {
                      self->Respond(std::move(response));
                    });
        });
  }

  void Respond(HttpResponse response) {
    if (state_ != State::kHandling) {
      if (response.stream) response.stream->Close();
      return;
    }
    if (response.stream) {
      StartStream(std::move(response));
      return;
    }
    server_->Finish(method_, path_, correlation_id_, response, start_);
    Write(std::move(response),
          !keep_alive_ || close_after_response_ || server_->stopping_.load());
  }

  void SendErrorAndClose(const HttpError& error) {
    if (parser_ && parser_->is_header_done()) {
      auto& request = parser_->get();
      method_ = Str(request.method_string());
      path_ = Str(request.target().substr(0, request.target().find('?')));
      correlation_id_ = CorrelationIdFor(View(request["X-Correlation-ID"]));
      origin_ = Str(request["Origin"]);
    } else {
      method_ = "-";
      path_ = "-";
      correlation_id_ = common::NewCorrelationId();
      origin_.clear();
    }
    HttpResponse response = ErrorResponse(error, correlation_id_);
    server_->Finish(method_, path_, correlation_id_, response, absl::Now());
    version_ = 11;
    Write(std::move(response), /*close=*/true);
  }

  void Write(HttpResponse response, bool close) {
    CancelTimer();
    state_ = State::kWriting;
    auto message = std::make_shared<http::response<http::string_body>>();
    message->version(version_);
    message->result(static_cast<unsigned>(response.status));
    SetHeaders(response, message.get());
    if (!HasNoBody(response.status)) {
      if (!response.content_type.empty()) {
        message->set(http::field::content_type, response.content_type);
      }
      message->body() = std::move(response.body);
      message->prepare_payload();
      // HEAD: the headers of the GET answer, Content-Length included, but
      // no body.
      if (method_ == "HEAD") message->body().clear();
    }
    message->keep_alive(!close);
    ArmTimer(server_->options_.write_timeout);
    http::async_write(
        socket_, *message,
        [self = shared_from_this(), message, close](
            error_code ec, std::size_t) { self->OnWrite(ec, close); });
  }

  static bool HasNoBody(int status) {
    return status == 204 || status == 304 || (status >= 100 && status < 200);
  }

  // The status line's reason, X-Correlation-ID, CORS and the handler's
  // headers.
  void SetHeaders(const HttpResponse& response,
                  http::response_header<>* message) {
    if (const char* reason = ReasonPhrase(response.status)) {
      message->reason(reason);
    }
    message->set("X-Correlation-ID", correlation_id_);
    for (auto& [name, value] : server_->cors_.ResponseHeaders(origin_)) {
      if (response.route == "preflight") break;  // Already has its own.
      message->set(name, value);
    }
    for (auto& [name, value] : response.headers) message->insert(name, value);
  }

  // --- Streaming answers ---------------------------------------------------
  //
  // kStreaming: the headers go out (timer armed), then a read stays pending
  // for the rest of the connection (EOF or an error: the client is gone),
  // and PumpStream writes what the producer queued, one batch at a time,
  // each under the write timeout. End(): the last batch, then a half-close
  // and kDraining until the client closes (2 s at most).

  void StartStream(HttpResponse response) {
    std::shared_ptr<ResponseStream> stream = std::move(response.stream);
    if (server_->stopping_.load()) {
      stream->Close();
      HttpResponse answer = ErrorResponse(
          GatewayError(503, absl::StatusCode::kUnavailable,
                       "the server is shutting down", "SHUTTING_DOWN"),
          correlation_id_);
      answer.route = response.route;
      server_->Finish(method_, path_, correlation_id_, answer, start_);
      Write(std::move(answer), /*close=*/true);
      return;
    }
    server_->Finish(method_, path_, correlation_id_, response, start_);
    const bool headers_only = HasNoBody(response.status) || method_ == "HEAD";
    CancelTimer();
    state_ = State::kStreaming;
    streamed_ = true;
    stream_ = std::move(stream);
    auto message = std::make_shared<http::response<http::empty_body>>();
    message->version(version_);
    message->result(static_cast<unsigned>(response.status));
    SetHeaders(response, message.get());
    if (!HasNoBody(response.status) && !response.content_type.empty()) {
      message->set(http::field::content_type, response.content_type);
    }
    if (message->find(http::field::cache_control) == message->end()) {
      message->set(http::field::cache_control, "no-cache");
    }
    if (message->find("X-Accel-Buffering") == message->end()) {
      message->set("X-Accel-Buffering", "no");
    }
    // No Content-Length: the body ends when the connection closes.
    message->set(http::field::connection, "close");
    auto serializer =
        std::make_shared<http::response_serializer<http::empty_body>>(*message);
    ArmTimer(server_->options_.write_timeout);
    http::async_write_header(socket_, *serializer,
                             [self = shared_from_this(), message, serializer,
                              headers_only](error_code ec, std::size_t) {
                               self->OnStreamHeaders(ec, headers_only);
                             });
  }

  void OnStreamHeaders(error_code ec, bool headers_only) {
    CancelTimer();
    if (counted_) {
      server_->in_progress_.fetch_sub(1);
      counted_ = false;
    }
    if (state_ != State::kStreaming) return;  // Closed meanwhile.
    if (ec) {
      Close();
      return;
    }
    if (headers_only) {
      std::shared_ptr<ResponseStream> stream = std::move(stream_);
      stream->CloseAndNotify();
      GracefulClose();
      return;
    }
    WatchForDisconnect();
    stream_->Attach(
        [weak = weak_from_this(), executor = socket_.get_executor()] {
          net::post(executor, [weak] {
            if (std::shared_ptr<Session> self = weak.lock()) self->PumpStream();
          });
        });
    PumpStream();
  }

  // Bytes the client sends now are ignored; EOF or an error ends the
  // stream.
  void WatchForDisconnect() {
    socket_.async_read_some(
        net::buffer(drain_buffer_),
        [self = shared_from_this()](error_code ec, std::size_t) {
          if (self->state_ == State::kClosed) return;
          if (ec) {
            self->Close();
            return;
          }
          self->WatchForDisconnect();
        });
  }

  void PumpStream() {
    if (state_ != State::kStreaming || !stream_) return;
    std::vector<std::string> chunks;
    // With a write in flight nothing is taken, but a closed stream is
    // noticed: a client too slow to take that write is dropped now, not
    // when it reads again or at the write timeout.
    switch (stream_->TakeChunks(stream_writing_ ? nullptr : &chunks)) {
      case ResponseStream::Take::kIdle:
        return;
      case ResponseStream::Take::kClosed:
        if (stream_->overflowed()) {
          sdk::ScopedCorrelationId scope(correlation_id_);
          IOT2MQTT_LOG(WARNING)
                  .With("path", EscapeUnprintable(path_, 512))
                  .With("limit_bytes",
                        static_cast<int64_t>(stream_->max_buffered_bytes()))
              << "streaming client too slow: connection dropped";
        }
        Close();
        return;
      case ResponseStream::Take::kEnded:
        EndStream();
        return;
      case ResponseStream::Take::kData:
        break;
    }
    stream_chunks_ = std::move(chunks);
    std::vector<net::const_buffer> buffers;
    buffers.reserve(stream_chunks_.size());
    for (const std::string& chunk : stream_chunks_) {
      buffers.push_back(net::buffer(chunk));
    }
    stream_writing_ = true;
    ArmTimer(server_->options_.write_timeout);
    net::async_write(
        socket_, buffers,
        [self = shared_from_this()](error_code ec, std::size_t bytes) {
          self->OnStreamWrite(ec, bytes);
        });
  }

  void OnStreamWrite(error_code ec, std::size_t bytes) {
    stream_writing_ = false;
    if (state_ != State::kStreaming) return;  // Closed meanwhile.
    CancelTimer();
    if (ec) {
      Close();
      return;
    }
    stream_chunks_.clear();
    stream_->Written(bytes);
    PumpStream();
  }

  // Everything written after End(): half-close; the pending read sees the
  // client's EOF.
  void EndStream() {
    state_ = State::kDraining;
    std::shared_ptr<ResponseStream> stream = std::move(stream_);
    stream->CloseAndNotify();
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    ArmTimer(absl::Seconds(2));
  }

  void OnWrite(error_code ec, bool close) {
    CancelTimer();
    if (counted_) {
      server_->in_progress_.fetch_sub(1);
      counted_ = false;
    }
    if (ec) {
      Close();
      return;
    }
    if (close) {
      GracefulClose();
      return;
    }
    ReadRequest();
  }

  // Half-closes and reads what the client still sends for a moment, so the
  // kernel doesn't answer unread data with a reset that destroys the
  // response we just sent (a 413 before a large body, say).
  void GracefulClose() {
    state_ = State::kDraining;
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    ArmTimer(absl::Seconds(2));
    Drain();
  }

  void Drain() {
    socket_.async_read_some(
        net::buffer(drain_buffer_),
        [self = shared_from_this()](error_code ec, std::size_t) {
          if (ec || self->state_ != State::kDraining) {
            self->Close();
            return;
          }
          self->Drain();
        });
  }

  void Close() {
    if (state_ == State::kClosed) return;
    state_ = State::kClosed;
    CancelTimer();
    if (counted_) {
      server_->in_progress_.fetch_sub(1);
      counted_ = false;
    }
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    if (stream_) {
      std::shared_ptr<ResponseStream> stream = std::move(stream_);
      stream->CloseAndNotify();
    }
  }

  tcp::socket socket_;
  net::steady_timer timer_;
  HttpServer::Impl* server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::array<char, 4096> drain_buffer_;
  std::shared_ptr<ResponseStream> stream_;
  std::vector<std::string> stream_chunks_;  // Being written.
  bool stream_writing_ = false;
  bool streamed_ = false;  // The connection carried a streaming answer.
  State state_ = State::kReading;
  uint64_t timer_generation_ = 0;
  bool timed_out_ = false;
  bool close_after_response_ = false;
  bool keep_alive_ = false;
  bool counted_ = false;
  unsigned version_ = 11;
  std::string method_;
  std::string path_;
  std::string correlation_id_;
  std::string origin_;
  absl::Time start_;
};

void HttpServer::Impl::Register(const std::shared_ptr<Session>& session) {
  absl::MutexLock lock(&mu_);
  sessions_[session.get()] = session;
}

void HttpServer::Impl::Unregister(Session* session) {
  absl::MutexLock lock(&mu_);
  sessions_.erase(session);
}

void HttpServer::Impl::AdoptStream(
    const std::shared_ptr<ResponseStream>& stream) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_.load()) {
      streams_.erase(std::remove_if(streams_.begin(), streams_.end(),
                                    [](const std::weak_ptr<ResponseStream>& s) {
                                      std::shared_ptr<ResponseStream> live =
                                          s.lock();
                                      return !live || live->closed();
                                    }),
                     streams_.end());
      streams_.push_back(stream);
      return;
    }
  }
  stream->Close();
}

void HttpServer::Impl::Accept() {
  acceptor_.async_accept(
      net::make_strand(ioc_), [this](error_code ec, tcp::socket socket) {
        if (stopping_.load() || !acceptor_.is_open()) return;
        if (ec) {
          // Out of file descriptors and the like: retry shortly instead of
          // spinning.
          IOT2MQTT_LOG(WARNING).With("error", ec.message()) << "accept failed";
          retry_timer_.expires_after(std::chrono::milliseconds(100));
          retry_timer_.async_wait([this](error_code wait_ec) {
            if (!wait_ec) Accept();
          });
          return;
        }
        error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        auto session = std::make_shared<Session>(std::move(socket), this);
        Register(session);
        session->Start();
        Accept();
      });
}

HttpServer::HttpServer(HttpServerOptions options, RequestHandler* handler)
    : impl_(std::make_unique<Impl>(std::move(options), handler)) {}

HttpServer::~HttpServer() { Shutdown(); }

int HttpServer::requests_in_progress() const {
  return impl_->in_progress_.load();
}

absl::Status HttpServer::Start() {
  const std::string& address = impl_->options_.listen_address;
  size_t colon = address.rfind(':');
  int port = -1;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", address, "\" is not host:port"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  error_code ec;
  tcp::endpoint endpoint;
  net::ip::address ip = net::ip::make_address(host, ec);
  if (!ec) {
    endpoint = tcp::endpoint(ip, static_cast<unsigned short>(port));
  } else {
    // A host name: resolve it (before any io thread runs).
    tcp::resolver resolver(impl_->ioc_);
    auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec || results.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("can't resolve \"", host, "\": ", ec.message()));
    }
    endpoint = results.begin()->endpoint();
  }
  tcp::acceptor& acceptor = impl_->acceptor_;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("can't listen on ", address, ": ", ec.message()));
  }
  port_ = acceptor.local_endpoint(ec).port();
  impl_->work_.emplace(impl_->ioc_.get_executor());
  impl_->Accept();
  for (int i = 0; i < std::max(1, impl_->options_.threads); ++i) {
    impl_->threads_.emplace_back([impl = impl_.get()] {
      // Handlers don't throw; should a library call do so anyway, log it and
      // keep serving rather than take the process down.
      while (true) {
        try {
          impl->ioc_.run();
          return;
        } catch (const std::exception& e) {
          IOT2MQTT_LOG(ERROR).With("error", e.what())
              << "unexpected exception on an io thread";
        }
      }
    });
  }
  return absl::OkStatus();
}

void HttpServer::Shutdown() {
  Impl& impl = *impl_;
  if (impl.shut_down_) return;
  impl.shut_down_ = true;
  impl.stopping_.store(true);
  if (impl.threads_.empty()) return;
  net::post(impl.acceptor_.get_executor(), [&impl] {
    error_code ignored;
    impl.acceptor_.close(ignored);
    impl.retry_timer_.cancel();
  });
  {
    // StopIfIdle must run on each session's strand.
    std::vector<std::shared_ptr<Session>> live;
    {
      absl::MutexLock lock(&impl.mu_);
      for (auto& [raw, weak] : impl.sessions_) {
        if (std::shared_ptr<Session> session = weak.lock()) {
          live.push_back(std::move(session));
        }
      }
    }
    for (const std::shared_ptr<Session>& session : live) {
      session->PostStopIfIdle();
    }
  }
  {
    // Streaming answers end now, wherever they are (not yet handed to a
    // session, or being written).
    std::vector<std::weak_ptr<ResponseStream>> streams;
    {
      absl::MutexLock lock(&impl.mu_);
      streams.swap(impl.streams_);
    }
    for (const std::weak_ptr<ResponseStream>& weak : streams) {
      if (std::shared_ptr<ResponseStream> stream = weak.lock()) {
        stream->Close();
      }
    }
  }
  absl::Time deadline = absl::Now() + impl.options_.shutdown_grace;
  while (absl::Now() < deadline) {
    {
      absl::MutexLock lock(&impl.mu_);
      if (impl.sessions_.empty()) break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  impl.work_.reset();
  impl.ioc_.stop();
  for (std::thread& thread : impl.threads_) thread.join();
  impl.threads_.clear();
}

}  // namespace iot2mqtt::gateway
