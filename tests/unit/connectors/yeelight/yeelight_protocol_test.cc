#include "connectors/yeelight/yeelight_protocol.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "catch2/catch.hpp"

namespace iot2mqtt::yeelight {
namespace {

std::vector<std::string> AllLines(LineSplitter& splitter) {
  std::vector<std::string> lines;
  std::string line;
  while (splitter.Next(&line)) lines.push_back(line);
  return lines;
}

TEST_CASE("requests are one JSON line ending in CRLF") {
  CHECK(EncodeRequest(1, SetPower(true, Transition{true, 500})) ==
        "{\"id\":1,\"method\":\"set_power\",\"params\":[\"on\",\"smooth\","
        "500]}\r\n");
  CHECK(EncodeRequest(7, Toggle()) ==
        "{\"id\":7,\"method\":\"toggle\",\"params\":[]}\r\n");
  CHECK(EncodeRequest(2, GetProp({"power", "bright"})) ==
        "{\"id\":2,\"method\":\"get_prop\",\"params\":[\"power\",\"bright\"]}"
        "\r\n");
  CHECK(EncodeRequest(3, SetName("Desk \"lamp\"")) ==
        "{\"id\":3,\"method\":\"set_name\",\"params\":[\"Desk \\\"lamp\\\"\"]}"
        "\r\n");
}

TEST_CASE("request builders clamp values to what bulbs accept") {
  Transition sudden{false, 0};
  CHECK(std::get<int64_t>(SetBright(0, sudden).params[0]) == 1);
  CHECK(std::get<int64_t>(SetBright(250, sudden).params[0]) == 100);
  CHECK(std::get<int64_t>(SetCtAbx(1000, sudden).params[0]) == 1700);
  CHECK(std::get<int64_t>(SetCtAbx(9000, sudden).params[0]) == 6500);
  CHECK(std::get<int64_t>(SetRgb(255, 0, 0, sudden).params[0]) == 0xFF0000);
  CHECK(std::get<int64_t>(SetRgb(300, -4, 16, sudden).params[0]) == 0xFF0010);
  CHECK(std::get<int64_t>(SetRgb(0, 0, 0, sudden).params[0]) == 1);
  Request hsv = SetHsv(400, 150, sudden);
  CHECK(std::get<int64_t>(hsv.params[0]) == 359);
  CHECK(std::get<int64_t>(hsv.params[1]) == 100);
  // Durations below the bulb's minimum are raised to 30 ms.
  Request quick = SetPower(false, Transition{true, 5});
  CHECK(std::get<std::string>(quick.params[1]) == "smooth");
  CHECK(std::get<int64_t>(quick.params[2]) == kMinDurationMs);
  CHECK(std::get<std::string>(SetPower(false, sudden).params[1]) == "sudden");
}

TEST_CASE("background requests carry the bg_ prefix") {
  CHECK(Background(SetPower(true, {})).method == "bg_set_power");
  CHECK(Background(Toggle()).method == "bg_toggle");
  CHECK(Background(SetCtAbx(3000, {})).method == "bg_set_ct_abx");
}

TEST_CASE("results, errors and notifications parse") {
  auto result = ParseMessage("{\"id\":4,\"result\":[\"on\",\"80\",\"\"]}");
  REQUIRE(result.ok());
  CHECK(result->kind == Message::Kind::kResult);
  CHECK(result->id == 4);
  CHECK(result->result == std::vector<std::string>{"on", "80", ""});

  // Some firmware answers numbers; they become their text.
  auto numbers = ParseMessage("{\"id\":5,\"result\":[100, 4000]}");
  REQUIRE(numbers.ok());
  CHECK(numbers->result == std::vector<std::string>{"100", "4000"});

  auto error = ParseMessage(
      "{\"id\":6,\"error\":{\"code\":-5000,\"message\":\"general error\"}}");
  REQUIRE(error.ok());
  CHECK(error->kind == Message::Kind::kError);
  CHECK(error->id == 6);
  CHECK(error->error_code == -5000);
  CHECK(error->error_message == "general error");

  auto props = ParseMessage(
      "{\"method\":\"props\",\"params\":{\"power\":\"off\",\"bright\":10}}");
  REQUIRE(props.ok());
  CHECK(props->kind == Message::Kind::kNotification);
  CHECK(props->method == "props");
  CHECK(props->params == Properties{{"power", "off"}, {"bright", "10"}});
}

TEST_CASE("malformed lines are rejected, not guessed") {
  for (const char* line :
       {"", "not json", "{\"id\":1,", "[1,2,3]", "{\"id\":\"x\",\"result\":[]}",
        "{\"id\":1}", "{\"method\":\"props\",\"params\":[1]}",
        "{\"method\":7,\"params\":{}}", "\"just a string\"",
        "{\"id\":1,\"result\":[\"\xff\xfe\"]}"}) {
    INFO(line);
    CHECK(absl::IsInvalidArgument(ParseMessage(line).status()));
  }
}

TEST_CASE("the line splitter handles CRLF, fragments and several lines") {
  LineSplitter splitter;
  splitter.Append("{\"id\":1,\"res");
  CHECK(AllLines(splitter).empty());
  splitter.Append("ult\":[\"ok\"]}\r\n{\"method\":\"props\",");
  CHECK(AllLines(splitter) ==
        std::vector<std::string>{"{\"id\":1,\"result\":[\"ok\"]}"});
  splitter.Append("\"params\":{}}\n\r\n\n{\"id\":2,\"result\":[]}\r\n");
  CHECK(AllLines(splitter) ==
        std::vector<std::string>{"{\"method\":\"props\",\"params\":{}}",
                                 "{\"id\":2,\"result\":[]}"});
}

TEST_CASE("an over-long line is dropped whole and the stream recovers") {
  LineSplitter splitter(16);
  splitter.Append(std::string(10, 'x'));
  splitter.Append(std::string(10, 'y'));  // Now over the limit, no newline.
  CHECK(AllLines(splitter).empty());
  splitter.Append(std::string(30, 'z'));
  splitter.Append("tail\r\nshort\r\n");
  CHECK(AllLines(splitter) == std::vector<std::string>{"short"});
  CHECK(splitter.dropped_lines() == 1);
  splitter.Append(std::string(40, 'w') + "\nok\n");
  CHECK(AllLines(splitter) == std::vector<std::string>{"ok"});
  CHECK(splitter.dropped_lines() == 2);
}

TEST_CASE("interleaved notifications and answers come out in order") {
  LineSplitter splitter;
  splitter.Append(
      "{\"method\":\"props\",\"params\":{\"power\":\"on\"}}\r\n"
      "{\"id\":9,\"result\":[\"ok\"]}\r\n"
      "garbage\r\n"
      "{\"method\":\"props\",\"params\":{\"bright\":\"5\"}}\r\n");
  std::vector<Message::Kind> kinds;
  int malformed = 0;
  std::string line;
  while (splitter.Next(&line)) {
    auto message = ParseMessage(line);
    if (!message.ok()) {
      ++malformed;
      continue;
    }
    kinds.push_back(message->kind);
  }
  CHECK(malformed == 1);
  CHECK(kinds == std::vector<Message::Kind>{Message::Kind::kNotification,
                                            Message::Kind::kResult,
                                            Message::Kind::kNotification});
}

TEST_CASE("discovery addresses are numeric IPv4 with a port") {
  // The default (the SSDP multicast group) parses; it is only parsed here,
  // never sent to: tests stay on loopback.
  auto full = ParseHostPort(kDefaultDiscoveryAddress, 0);
  REQUIRE(full.ok());
  CHECK(absl::StrCat(full->host, ":", full->port) == kDefaultDiscoveryAddress);
  CHECK(full->port == 1982);
  auto bare = ParseHostPort(" 127.0.0.1 ", 55443);
  REQUIRE(bare.ok());
  CHECK(bare->port == 55443);
  CHECK_FALSE(ParseHostPort("bulb.local:1982", 0).ok());
  CHECK_FALSE(ParseHostPort("127.0.0.1:0", 0).ok());
  CHECK_FALSE(ParseHostPort("127.0.0.1:99999", 0).ok());
  CHECK_FALSE(ParseHostPort("127.0.0.1:x", 0).ok());
}

TEST_CASE("the search request is an SSDP M-SEARCH for wifi_bulb") {
  std::string search = BuildSearchRequest(kDefaultDiscoveryAddress);
  CHECK(search ==
        absl::StrCat("M-SEARCH * HTTP/1.1\r\nHOST: ", kDefaultDiscoveryAddress,
                     "\r\nMAN: \"ssdp:discover\"\r\nST: wifi_bulb\r\n\r\n"));
}

TEST_CASE("a bulb's search answer parses into its identity and state") {
  const std::string answer =
      "HTTP/1.1 200 OK\r\n"
      "Cache-Control: max-age=3600\r\n"
      "Date: \r\n"
      "Ext: \r\n"
      "Location: yeelight://192.0.2.239:55443\r\n"
      "Server: POSIX UPnP/1.0 YGLC/1\r\n"
      "id: 0x000000000015243f\r\n"
      "model: color\r\n"
      "fw_ver: 18\r\n"
      "support: get_prop set_default set_power toggle set_bright\r\n"
      "power: on\r\n"
      "bright: 100\r\n"
      "color_mode: 2\r\n"
      "ct: 4000\r\n"
      "rgb: 16711680\r\n"
      "hue: 100\r\n"
      "sat: 35\r\n"
      "name: my_bulb\r\n\r\n";
  auto bulb = ParseSearchResponse(answer);
  REQUIRE(bulb.ok());
  CHECK(bulb->id == "0x000000000015243f");
  CHECK(bulb->host == "192.0.2.239");
  CHECK(bulb->port == 55443);
  CHECK(bulb->model == "color");
  CHECK(bulb->fw_ver == "18");
  CHECK(bulb->name == "my_bulb");
  CHECK(bulb->support.size() == 5);
  CHECK(bulb->headers.at("power") == "on");
  CHECK(bulb->headers.at("ct") == "4000");

  // What the simulator sends parses back to the same bulb.
  auto again = ParseSearchResponse(BuildSearchResponse(*bulb));
  REQUIRE(again.ok());
  CHECK(again->id == bulb->id);
  CHECK(again->port == bulb->port);
  CHECK(again->name == bulb->name);
  CHECK(again->support == bulb->support);
  CHECK(again->headers.at("rgb") == "16711680");
}

TEST_CASE("unusable search answers are rejected") {
  CHECK_FALSE(ParseSearchResponse("").ok());
  CHECK_FALSE(ParseSearchResponse("M-SEARCH * HTTP/1.1\r\n\r\n").ok());
  CHECK_FALSE(ParseSearchResponse("HTTP/1.1 200 OK\r\nid: 0x1\r\n\r\n")
                  .ok());  // No Location.
  CHECK_FALSE(ParseSearchResponse("HTTP/1.1 200 OK\r\nLocation: "
                                  "http://1.2.3.4:80\r\nid: 0x1\r\n\r\n")
                  .ok());
  CHECK_FALSE(
      ParseSearchResponse(
          "HTTP/1.1 200 OK\r\nLocation: yeelight://1.2.3.4:55443\r\n\r\n")
          .ok());  // No id.
  // Advertisements carry the same headers and are accepted.
  CHECK(ParseSearchResponse("NOTIFY * HTTP/1.1\r\nLocation: "
                            "yeelight://192.0.2.2:55443\r\nid: 0x2\r\n\r\n")
            .ok());
}

}  // namespace
}  // namespace iot2mqtt::yeelight
