#ifndef IOT2MQTT_TESTS_INTEGRATION_GATEWAY_WS_CLIENT_H_
#define IOT2MQTT_TESTS_INTEGRATION_GATEWAY_WS_CLIENT_H_

// A WebSocket client for tests (Boost.Beast), every operation bounded by a
// timeout: its own io_context runs only inside the calls. Header-only; it
// REQUIREs through Catch.
//
//   WsClient client(port);
//   REQUIRE(client.Open("/ws/mqtt?token=" + token) == 101);
//   std::string first = client.Read();
//   client.Send(R"({"action":"subscribe","topic":"a/#"})");

#include <sys/socket.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/asio/connect.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/core/buffers_to_string.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/http/string_body.hpp"
#include "boost/beast/websocket/stream.hpp"
#include "catch2/catch.hpp"

namespace iot2mqtt::testing {

class WsClient {
 public:
  // `receive_buffer` > 0: SO_RCVBUF before connecting (a client that
  // reads little).
  explicit WsClient(int port, int receive_buffer = 0) : port_(port), ws_(ioc_) {
    auto& socket = ws_.next_layer();
    socket.open(boost::asio::ip::tcp::v4());
    if (receive_buffer > 0) {
      socket.set_option(
          boost::asio::socket_base::receive_buffer_size(receive_buffer));
    }
    socket.connect(boost::asio::ip::tcp::endpoint(
        boost::asio::ip::make_address("127.0.0.1"),
        static_cast<unsigned short>(port)));
    ws_.control_callback([this](boost::beast::websocket::frame_type kind,
                                boost::beast::string_view) {
      if (kind == boost::beast::websocket::frame_type::ping) ++pings_;
    });
  }
  ~WsClient() {
    boost::system::error_code ignored;
    ws_.next_layer().close(ignored);
  }

  // The handshake; returns the HTTP status (101 when upgraded). On a
  // refusal the answer is in response().
  int Open(const std::string& target,
           std::vector<std::pair<std::string, std::string>> headers = {}) {
    ws_.set_option(boost::beast::websocket::stream_base::decorator(
        [headers](boost::beast::websocket::request_type& request) {
          for (const auto& [name, value] : headers) request.set(name, value);
        }));
    boost::system::error_code result;
    bool done = false;
    ws_.async_handshake(response_, absl::StrCat("127.0.0.1:", port_), target,
                        [&](boost::system::error_code ec) {
                          result = ec;
                          done = true;
                        });
    Run(&done, absl::Seconds(10));
    REQUIRE(done);
    return static_cast<int>(response_.result_int());
  }

  void Send(const std::string& text) {
    boost::system::error_code result;
    bool done = false;
    ws_.text(true);
    ws_.async_write(boost::asio::buffer(text),
                    [&](boost::system::error_code ec, std::size_t) {
                      result = ec;
                      done = true;
                    });
    Run(&done, absl::Seconds(10));
    REQUIRE(done);
    INFO(result.message());
    REQUIRE_FALSE(result);
  }

  void SendBinary(const std::string& bytes) {
    bool done = false;
    ws_.binary(true);
    ws_.async_write(
        boost::asio::buffer(bytes),
        [&](boost::system::error_code, std::size_t) { done = true; });
    Run(&done, absl::Seconds(10));
    ws_.text(true);
  }

  // The next message; nullopt when the socket closed (see close_code()) or
  // nothing arrived in time (timed_out() then).
  std::optional<std::string> Read(absl::Duration timeout = absl::Seconds(10)) {
    if (closed_) return std::nullopt;
    boost::system::error_code result;
    bool done = false;
    buffer_.consume(buffer_.size());
    ws_.async_read(buffer_, [&](boost::system::error_code ec, std::size_t) {
      result = ec;
      done = true;
    });
    timed_out_ = !Run(&done, timeout);
    if (timed_out_) {
      // Cancelling a read spoils the stream: the connection is given up.
      boost::system::error_code ignored;
      ws_.next_layer().cancel(ignored);
      ws_.next_layer().close(ignored);
      ioc_.restart();
      ioc_.run_for(std::chrono::seconds(5));
      closed_ = true;
      return std::nullopt;
    }
    if (result) {
      closed_ = true;
      error_ = result.message();
      // The close frame's code, also when the TCP teardown after it failed
      // (the server may cut the connection once its close frame is out).
      if (result == boost::beast::websocket::error::closed ||
          ws_.reason().code != 0) {
        close_code_ = ws_.reason().code;
        close_reason_ = std::string(ws_.reason().reason.c_str());
      }
      return std::nullopt;
    }
    return boost::beast::buffers_to_string(buffer_.data());
  }

  // Reads until `match` holds for a message (returned) or the socket ends;
  // the messages before it go to `skipped` when given.
  std::optional<std::string> ReadUntil(
      const std::function<bool(const std::string&)>& match,
      absl::Duration timeout = absl::Seconds(10),
      std::vector<std::string>* skipped = nullptr) {
    absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      std::optional<std::string> message = Read(deadline - absl::Now());
      if (!message) return std::nullopt;
      if (match(*message)) return message;
      if (skipped != nullptr) skipped->push_back(*message);
    }
    return std::nullopt;
  }

  // Sends a close frame and waits for the server's.
  void Close() {
    bool done = false;
    ws_.async_close(boost::beast::websocket::close_code::normal,
                    [&](boost::system::error_code) { done = true; });
    Run(&done, absl::Seconds(10));
    closed_ = true;
  }

  const boost::beast::websocket::response_type& response() const {
    return response_;
  }
  bool closed() const { return closed_; }
  bool timed_out() const { return timed_out_; }
  int close_code() const { return close_code_; }
  const std::string& close_reason() const { return close_reason_; }
  int pings() const { return pings_; }
  // Why the last read ended ("" when it didn't fail).
  const std::string& error() const { return error_; }

 private:
  // Runs the io_context until `*done` or the timeout; whether done.
  bool Run(bool* done, absl::Duration timeout) {
    ioc_.restart();
    absl::Time deadline = absl::Now() + timeout;
    while (!*done && absl::Now() < deadline) {
      ioc_.run_for(std::chrono::milliseconds(20));
      if (ioc_.stopped()) ioc_.restart();
    }
    return *done;
  }

  int port_;
  boost::asio::io_context ioc_;
  boost::beast::websocket::stream<boost::asio::ip::tcp::socket> ws_;
  boost::beast::websocket::response_type response_;
  boost::beast::flat_buffer buffer_;
  bool closed_ = false;
  bool timed_out_ = false;
  int close_code_ = 0;
  std::string close_reason_;
  int pings_ = 0;
  std::string error_;
};

}  // namespace iot2mqtt::testing

#endif  // IOT2MQTT_TESTS_INTEGRATION_GATEWAY_WS_CLIENT_H_
