#include "gateway/http_server.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <deque>
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
#include "boost/beast/core/buffers_to_string.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/http/empty_body.hpp"
#include "boost/beast/http/error.hpp"
#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/read.hpp"
#include "boost/beast/http/string_body.hpp"
#include "boost/beast/http/write.hpp"
#include "boost/beast/websocket/rfc6455.hpp"
#include "boost/beast/websocket/stream.hpp"
#include "iot2mqtt/sdk/log.h"
#include "services/common/rpc_scope.h"

namespace iot2mqtt::gateway {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace websocket = beast::websocket;
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
    case 426:
      return "Upgrade Required";
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
class WebSocketSession;

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
  // False when the server is stopping (the socket is then not opened).
  bool RegisterWebSocket(const std::shared_ptr<WebSocketSession>& socket);
  void UnregisterWebSocket(WebSocketSession* socket);

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
  std::map<WebSocketSession*, std::weak_ptr<WebSocketSession>> websockets_
      ABSL_GUARDED_BY(mu_);
  std::atomic<int> in_progress_{0};
  std::atomic<bool> stopping_{false};
  bool shut_down_ = false;  // Only touched by the owning thread.

  net::io_context ioc_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_;
  tcp::acceptor acceptor_;
  net::steady_timer retry_timer_;
  std::vector<std::thread> threads_;
};

// One upgraded connection (websocket.h). Every method without a lock runs on
// the connection's strand; producers reach it through SendText and Close.
class WebSocketSession final
    : public WebSocketConnection,
      public std::enable_shared_from_this<WebSocketSession> {
 public:
  WebSocketSession(tcp::socket socket, HttpServer::Impl* server,
                   std::shared_ptr<WebSocketHandler> handler,
                   std::string correlation_id, std::string path)
      : ws_(std::move(socket)),
        close_timer_(ws_.get_executor()),
        write_timer_(ws_.get_executor()),
        server_(server),
        handler_(std::move(handler)),
        correlation_id_(std::move(correlation_id)),
        path_(std::move(path)),
        max_queue_bytes_(server->options_.websocket_queue_bytes) {}

  ~WebSocketSession() override { server_->UnregisterWebSocket(this); }

  // Completes the handshake (101) for `request`; on the strand.
  void Accept(http::request<http::empty_body> request) {
    const HttpServerOptions& options = server_->options_;
    websocket::stream_base::timeout timeout;
    timeout.handshake_timeout = ToChrono(options.websocket_close_timeout);
    timeout.idle_timeout = ToChrono(options.websocket_idle_timeout);
    timeout.keep_alive_pings = true;
    ws_.set_option(timeout);
    ws_.set_option(websocket::stream_base::decorator(
        [id = correlation_id_](websocket::response_type& response) {
          response.set("X-Correlation-ID", id);
        }));
    ws_.read_message_max(options.websocket_max_message_bytes);
    ws_.auto_fragment(false);
    ws_.text(true);
    started_ = absl::Now();
    ws_.async_accept(request, [self = shared_from_this()](error_code ec) {
      self->OnAccept(ec);
    });
  }

  bool SendText(std::string message) override {
    {
      absl::MutexLock lock(&mu_);
      if (closed_ || close_requested_) return false;
      if (queued_bytes_ == 0 ||
          (message.size() <= max_queue_bytes_ &&
           queued_bytes_ <= max_queue_bytes_ - message.size())) {
        queued_bytes_ += message.size();
        queue_.push_back(std::move(message));
        PostPumpLocked();
        return true;
      }
      // Too slow: drop what is queued, close after the write in flight.
      overflowed_ = true;
      RequestCloseLocked(kClosePolicyViolation, kClientTooSlow,
                         /*drop_queued=*/true);
    }
    sdk::ScopedCorrelationId scope(correlation_id_);
    IOT2MQTT_LOG(WARNING)
            .With("path", EscapeUnprintable(path_, 512))
            .With("limit_bytes", static_cast<int64_t>(max_queue_bytes_))
        << "websocket client too slow: closing";
    return false;
  }

  void Close(int code, std::string reason) override {
    absl::MutexLock lock(&mu_);
    RequestCloseLocked(code, std::move(reason), /*drop_queued=*/false);
  }

  size_t queued_bytes() const override {
    absl::MutexLock lock(&mu_);
    return queued_bytes_;
  }

  bool congested() const override {
    absl::MutexLock lock(&mu_);
    return queued_bytes_ > max_queue_bytes_ / 2;
  }

  void NotifyWhenDrained(std::function<void()> callback) override {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    drained_callbacks_.push_back(std::move(callback));
    if (queued_bytes_ <= max_queue_bytes_ / 4) {
      net::post(ws_.get_executor(),
                [self = shared_from_this()] { self->RunDrained(); });
    }
  }

  // Server shutdown: 1001 at once, whatever is queued.
  void CloseForShutdown() {
    absl::MutexLock lock(&mu_);
    RequestCloseLocked(kCloseGoingAway, "server shutting down",
                       /*drop_queued=*/true);
  }

 private:
  void RequestCloseLocked(int code, std::string reason, bool drop_queued)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (closed_) return;
    if (drop_queued) {
      queue_.clear();
      queued_bytes_ = in_flight_bytes_;
    }
    if (close_requested_) return;
    close_requested_ = true;
    if (reason.size() > 123) reason.resize(123);
    close_code_ = code;
    close_reason_ = std::move(reason);
    net::post(ws_.get_executor(), [self = shared_from_this()] {
      self->ArmCloseTimer();
    });
    PostPumpLocked();
  }

  // On the strand: the drained callbacks, when the queue is low enough.
  void RunDrained() {
    std::vector<std::function<void()>> callbacks;
    {
      absl::MutexLock lock(&mu_);
      if (closed_ || queued_bytes_ > max_queue_bytes_ / 4) return;
      callbacks.swap(drained_callbacks_);
    }
    for (auto& callback : callbacks) callback();
  }

  void PostPumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (pump_pending_) return;
    pump_pending_ = true;
    net::post(ws_.get_executor(),
              [self = shared_from_this()] { self->Pump(); });
  }

  void OnAccept(error_code ec) {
    if (ec) {
      // The handshake failed (the client went away): no OnOpen, no OnClose.
      {
        absl::MutexLock lock(&mu_);
        closed_ = true;
        queue_.clear();
      }
      finished_ = true;
      handler_.reset();
      error_code ignored;
      ws_.next_layer().close(ignored);
      return;
    }
    open_ = true;
    handler_->OnOpen(shared_from_this());
    Read();
    Pump();
  }

  void Read() {
    ws_.async_read(read_buffer_, [self = shared_from_this()](
                                     error_code ec, std::size_t) {
      self->OnRead(ec);
    });
  }

  void OnRead(error_code ec) {
    if (finished_) return;
    if (ec) {
      int code = kCloseAbnormal;
      if (ec == websocket::error::closed) {
        code = ws_.reason().code;
      } else if (ec == websocket::error::message_too_big) {
        code = kCloseTooBig;
      }
      {
        absl::MutexLock lock(&mu_);
        if (close_requested_) code = close_code_;
      }
      Finish(code);
      return;
    }
    if (!ws_.got_text()) {
      read_buffer_.consume(read_buffer_.size());
      Close(kCloseUnsupportedData, "text messages only");
    } else {
      std::string text = beast::buffers_to_string(read_buffer_.data());
      read_buffer_.consume(read_buffer_.size());
      ++messages_in_;
      bool closing;
      {
        absl::MutexLock lock(&mu_);
        closing = close_requested_;
      }
      if (!closing) handler_->OnMessage(std::move(text));
    }
    Read();  // Also while closing: the client's close frame arrives here.
  }

  void Pump() {
    std::string next;
    {
      absl::MutexLock lock(&mu_);
      pump_pending_ = false;
      if (finished_ || !open_ || writing_ || closing_) return;
      if (!queue_.empty()) {
        next = std::move(queue_.front());
        queue_.pop_front();
        in_flight_bytes_ = next.size();
      } else if (close_requested_) {
        closing_ = true;
      } else {
        return;
      }
    }
    if (closing_) {
      ws_.async_close(
          websocket::close_reason(static_cast<websocket::close_code>(close_code_),
                                  close_reason_),
          [self = shared_from_this()](error_code ec) { self->OnClosed(ec); });
      return;
    }
    writing_ = true;
    in_flight_ = std::move(next);
    ++messages_out_;
    // A write that makes no progress for the write timeout: too slow.
    write_timer_.expires_after(
        ToChrono(server_->options_.websocket_write_timeout));
    write_timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (ec || self->finished_ || !self->writing_) return;
      {
        absl::MutexLock lock(&self->mu_);
        self->RequestCloseLocked(kClosePolicyViolation, kClientTooSlow,
                                 /*drop_queued=*/true);
      }
      sdk::ScopedCorrelationId scope(self->correlation_id_);
      IOT2MQTT_LOG(WARNING)
              .With("path", EscapeUnprintable(self->path_, 512))
          << "websocket client too slow (a write stalled): closing";
    });
    ws_.async_write(net::buffer(in_flight_),
                    [self = shared_from_this()](error_code ec, std::size_t) {
                      self->OnWrite(ec);
                    });
  }

  void OnWrite(error_code ec) {
    writing_ = false;
    write_timer_.cancel();
    in_flight_.clear();
    bool drained;
    {
      absl::MutexLock lock(&mu_);
      queued_bytes_ -= std::min(queued_bytes_, in_flight_bytes_);
      in_flight_bytes_ = 0;
      drained = !drained_callbacks_.empty() &&
                queued_bytes_ <= max_queue_bytes_ / 4;
    }
    if (finished_) return;
    if (drained && !ec) RunDrained();
    if (ec) {
      Finish(kCloseAbnormal);
      return;
    }
    Pump();
  }

  void OnClosed(error_code ec) {
    // Our close frame went out and the client's came back (or the closing
    // handshake failed): the connection is over either way.
    (void)ec;
    Finish(close_code_);
  }

  void ArmCloseTimer() {
    if (finished_) return;
    close_timer_.expires_after(
        ToChrono(server_->options_.websocket_close_timeout));
    close_timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (ec || self->finished_) return;
      // The client took neither our last write nor the close frame.
      self->Finish(self->close_code_);
    });
  }

  void Finish(int code) {
    if (finished_) return;
    finished_ = true;
    {
      absl::MutexLock lock(&mu_);
      closed_ = true;
      queue_.clear();
      queued_bytes_ = 0;
      drained_callbacks_.clear();
    }
    close_timer_.cancel();
    write_timer_.cancel();
    error_code ignored;
    ws_.next_layer().shutdown(tcp::socket::shutdown_both, ignored);
    ws_.next_layer().close(ignored);
    {
      sdk::ScopedCorrelationId scope(correlation_id_);
      IOT2MQTT_LOG(INFO)
              .With("path", EscapeUnprintable(path_, 512))
              .With("close_code", code)
              .With("messages_in", messages_in_)
              .With("messages_out", messages_out_)
              .With("duration_ms",
                    absl::ToDoubleMilliseconds(absl::Now() - started_))
          << "websocket closed";
    }
    std::shared_ptr<WebSocketHandler> handler = std::move(handler_);
    if (open_ && handler) handler->OnClose(code);
  }

  websocket::stream<tcp::socket> ws_;
  net::steady_timer close_timer_;
  net::steady_timer write_timer_;
  HttpServer::Impl* server_;
  std::shared_ptr<WebSocketHandler> handler_;  // Until Finish.
  const std::string correlation_id_;
  const std::string path_;
  const size_t max_queue_bytes_;
  beast::flat_buffer read_buffer_;
  std::string in_flight_;  // Being written.
  bool writing_ = false;
  bool finished_ = false;
  absl::Time started_;
  int64_t messages_in_ = 0;
  int64_t messages_out_ = 0;

  mutable absl::Mutex mu_;
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // Queued + in flight.
  size_t in_flight_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::function<void()>> drained_callbacks_ ABSL_GUARDED_BY(mu_);
  bool pump_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool close_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
  // Written under mu_ before the strand reads them (posted after).
  int close_code_ = kCloseNormal;
  std::string close_reason_;
  // Strand-only, but read in Pump under mu_ for simplicity.
  bool open_ = false;
  bool closing_ = false;  // The close frame is on its way.
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
    kClosed,
    kUpgraded  // The socket went to a WebSocketSession.
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
      case State::kUpgraded:
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
    upgrade_request_.reset();
    upgrade_error_.reset();
    if (websocket::is_upgrade(message) || !request.Header("upgrade").empty()) {
      upgrade_error_ = ValidateWebSocketUpgrade(request);
      if (!upgrade_error_ && version_ < 11) {
        upgrade_error_ = GatewayError(400, absl::StatusCode::kInvalidArgument,
                                      "WebSocket upgrades need HTTP/1.1",
                                      kWebSocketHandshakeInvalid);
      }
      if (!upgrade_error_) {
        upgrade_request_.emplace(std::move(message.base()));
      }
    }
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
    if (response.websocket) {
      StartWebSocket(std::move(response));
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

  // Hands the socket to a WebSocketSession when the request is a valid
  // handshake; else an error answer.
  void StartWebSocket(HttpResponse response) {
    std::shared_ptr<WebSocketHandler> handler = std::move(response.websocket);
    std::optional<HttpError> error = upgrade_error_;
    if (!upgrade_request_ && !error) {
      error = GatewayError(
          400, absl::StatusCode::kInvalidArgument,
          "this path serves WebSockets only: send a WebSocket upgrade request",
          kWebSocketHandshakeInvalid);
    }
    if (!error && server_->stopping_.load()) {
      error = GatewayError(503, absl::StatusCode::kUnavailable,
                           "the server is shutting down", "SHUTTING_DOWN");
    }
    if (error) {
      handler.reset();
      HttpResponse answer = ErrorResponse(*error, correlation_id_);
      answer.route = response.route;
      if (error->http_status == 426) {
        answer.headers.emplace_back("Sec-WebSocket-Version", "13");
      }
      server_->Finish(method_, path_, correlation_id_, answer, start_);
      Write(std::move(answer), /*close=*/true);
      return;
    }
    HttpResponse switched;
    switched.status = 101;
    switched.route = response.route;
    switched.content_type.clear();
    server_->Finish(method_, path_, correlation_id_, switched, start_);
    CancelTimer();
    if (counted_) {
      server_->in_progress_.fetch_sub(1);
      counted_ = false;
    }
    state_ = State::kUpgraded;
    auto socket = std::make_shared<WebSocketSession>(
        std::move(socket_), server_, std::move(handler), correlation_id_,
        path_);
    if (!server_->RegisterWebSocket(socket)) return;  // Stopping: dropped.
    socket->Accept(http::request<http::empty_body>(std::move(*upgrade_request_)));
    upgrade_request_.reset();
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
    // The producer hears first, so that by the time the client sees the
    // connection end, on_close has run.
    if (stream_) {
      std::shared_ptr<ResponseStream> stream = std::move(stream_);
      stream->CloseAndNotify();
    }
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  tcp::socket socket_;
  net::steady_timer timer_;
  HttpServer::Impl* server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::array<char, 4096> drain_buffer_;
  std::shared_ptr<ResponseStream> stream_;
  // The handshake of a WebSocket upgrade request, or why it isn't one.
  std::optional<http::request_header<>> upgrade_request_;
  std::optional<HttpError> upgrade_error_;
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

bool HttpServer::Impl::RegisterWebSocket(
    const std::shared_ptr<WebSocketSession>& socket) {
  absl::MutexLock lock(&mu_);
  if (stopping_.load()) return false;
  websockets_[socket.get()] = socket;
  return true;
}

void HttpServer::Impl::UnregisterWebSocket(WebSocketSession* socket) {
  absl::MutexLock lock(&mu_);
  websockets_.erase(socket);
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

int HttpServer::websockets_open() const {
  absl::MutexLock lock(&impl_->mu_);
  return static_cast<int>(impl_->websockets_.size());
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
  {
    // WebSockets get 1001 and their closing handshake within the grace.
    std::vector<std::shared_ptr<WebSocketSession>> sockets;
    {
      absl::MutexLock lock(&impl.mu_);
      for (auto& [raw, weak] : impl.websockets_) {
        if (std::shared_ptr<WebSocketSession> socket = weak.lock()) {
          sockets.push_back(std::move(socket));
        }
      }
    }
    for (const std::shared_ptr<WebSocketSession>& socket : sockets) {
      socket->CloseForShutdown();
    }
  }
  absl::Time deadline = absl::Now() + impl.options_.shutdown_grace;
  while (absl::Now() < deadline) {
    {
      absl::MutexLock lock(&impl.mu_);
      if (impl.sessions_.empty() && impl.websockets_.empty()) break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  impl.work_.reset();
  impl.ioc_.stop();
  for (std::thread& thread : impl.threads_) thread.join();
  impl.threads_.clear();
}

}  // namespace iot2mqtt::gateway
