#include "connectors/yeelight/yeelight_state.h"

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "catch2/catch.hpp"
#include "rapidjson/document.h"

namespace iot2mqtt::yeelight {
namespace {

// Requests as compact text lines (without id), for readable expectations.
std::vector<std::string> Lines(const std::vector<Request>& requests) {
  std::vector<std::string> lines;
  for (const Request& request : requests) {
    std::string line = EncodeRequest(0, request);
    // Drop {"id":0, and the trailing CRLF.
    lines.push_back(line.substr(8, line.size() - 8 - 3));
  }
  return lines;
}

std::vector<std::string> Plan(const std::string& values,
                              const Properties& current = {{"power", "on"}},
                              CommandDefaults defaults = {}) {
  auto plan = PlanCommandJson(values, current, defaults);
  REQUIRE(plan.ok());
  return Lines(*plan);
}

absl::Status PlanError(const std::string& values) {
  return PlanCommandJson(values, {{"power", "on"}}, {}).status();
}

rapidjson::Document State(const Properties& properties,
                          const BulbIdentity& identity = {"lamp", "", "", ""}) {
  rapidjson::Document doc;
  doc.Parse(StateJson(properties, identity, absl::FromUnixMillis(1760351400123))
                .c_str());
  REQUIRE_FALSE(doc.HasParseError());
  return doc;
}

TEST_CASE("bulb properties become the state object") {
  auto state = State({{"power", "on"},
                      {"bright", "80"},
                      {"ct", "2700"},
                      {"rgb", "16711935"},
                      {"hue", "300"},
                      {"sat", "100"},
                      {"color_mode", "2"},
                      {"flowing", "0"},
                      {"music_on", "1"},
                      {"name", "Desk"},
                      {"nl_br", ""}},
                     {"desk", "configured", "color", "18"});
  CHECK(state["online"].GetBool());
  CHECK(state["power"].GetBool());
  CHECK(state["brightness"].GetInt() == 80);
  CHECK(state["color_temp"].GetInt() == 2700);
  CHECK(state["color_mode"].GetInt() == 2);
  CHECK_FALSE(state["flowing"].GetBool());
  CHECK(state["music_mode"].GetBool());
  CHECK(std::string(state["name"].GetString()) == "Desk");  // Bulb's wins.
  CHECK(std::string(state["model"].GetString()) == "color");
  CHECK(std::string(state["fw_ver"].GetString()) == "18");
  CHECK(std::string(state["last_update"].GetString()) ==
        "2025-10-13T10:30:00.123Z");
  CHECK(state["rgb"]["r"].GetInt() == 255);
  CHECK(state["rgb"]["g"].GetInt() == 0);
  CHECK(state["rgb"]["b"].GetInt() == 255);
  CHECK(std::string(state["hex_color"].GetString()) == "#ff00ff");
  CHECK(state["hsv"]["h"].GetInt() == 300);
  CHECK(state["hsv"]["s"].GetInt() == 100);
  CHECK(state["hsv"]["v"].GetInt() == 80);
  // An empty nl_br means the bulb has no night light (upstream got this
  // wrong and always reported one).
  CHECK_FALSE(state.HasMember("nightlight"));
  CHECK_FALSE(state.HasMember("background"));
}

TEST_CASE("missing properties fall back to upstream's defaults") {
  auto state = State({{"power", "off"}});
  CHECK_FALSE(state["power"].GetBool());
  CHECK(state["brightness"].GetInt() == 100);
  CHECK(state["color_temp"].GetInt() == 3500);
  CHECK(state["color_mode"].GetInt() == 0);
  CHECK(std::string(state["name"].GetString()) == "lamp");
  CHECK(std::string(state["model"].GetString()) == "unknown");
  CHECK_FALSE(state.HasMember("rgb"));
  CHECK_FALSE(state.HasMember("hsv"));
}

TEST_CASE("night light and background light appear when the bulb has them") {
  auto state = State({{"power", "on"},
                      {"nl_br", "10"},
                      {"active_mode", "1"},
                      {"bg_power", "on"},
                      {"bg_bright", "40"},
                      {"bg_ct", "3000"},
                      {"bg_rgb", "255"},
                      {"bg_lmode", "1"}});
  CHECK(state["nightlight"]["brightness"].GetInt() == 10);
  CHECK(state["nightlight"]["active"].GetBool());
  CHECK(state["background"]["power"].GetBool());
  CHECK(state["background"]["brightness"].GetInt() == 40);
  CHECK(state["background"]["color_mode"].GetInt() == 1);
  CHECK(std::string(state["background"]["hex_color"].GetString()) == "#0000ff");
}

TEST_CASE("notifications merge into the cached properties") {
  Properties cache = {{"power", "on"}, {"bright", "50"}};
  MergeProperties({{"bright", "10"}, {"ct", "2000"}}, &cache);
  CHECK(cache == Properties{{"power", "on"}, {"bright", "10"}, {"ct", "2000"}});
}

TEST_CASE("power commands") {
  CHECK(Plan(R"({"power": true})") ==
        std::vector<std::string>{
            R"("method":"set_power","params":["on","smooth",300])"});
  CHECK(Plan(R"({"power": false, "transition": 0})") ==
        std::vector<std::string>{
            R"("method":"set_power","params":["off","sudden",300])"});
  CHECK(Plan(R"({"power": "toggle"})") ==
        std::vector<std::string>{R"("method":"toggle","params":[])"});
  CHECK(Plan(R"({"toggle": 1})") ==
        std::vector<std::string>{R"("method":"toggle","params":[])"});
  CHECK(Plan(R"({"power": "off", "effect": "sudden"})") ==
        std::vector<std::string>{
            R"("method":"set_power","params":["off","sudden",300])"});
  CHECK(absl::IsInvalidArgument(PlanError(R"({"power": "dim"})")));
  CHECK(absl::IsInvalidArgument(PlanError(R"({"power": null})")));
}

TEST_CASE("brightness: absolute, relative, clamped") {
  const Properties at50 = {{"power", "on"}, {"bright", "50"}};
  CHECK(Plan(R"({"brightness": 80})", at50) ==
        std::vector<std::string>{
            R"("method":"set_bright","params":[80,"smooth",300])"});
  CHECK(Plan(R"({"brightness": "75"})", at50)[0] ==
        R"("method":"set_bright","params":[75,"smooth",300])");
  CHECK(Plan(R"({"brightness": "+20"})", at50)[0] ==
        R"("method":"set_bright","params":[70,"smooth",300])");
  CHECK(Plan(R"({"brightness": "-80"})", at50)[0] ==
        R"("method":"set_bright","params":[1,"smooth",300])");
  CHECK(Plan(R"({"brightness": "+90"})", at50)[0] ==
        R"("method":"set_bright","params":[100,"smooth",300])");
  CHECK(Plan(R"({"brightness": 0})", at50)[0] ==
        R"("method":"set_bright","params":[1,"smooth",300])");
  CHECK(Plan(R"({"brightness": 250})", at50)[0] ==
        R"("method":"set_bright","params":[100,"smooth",300])");
  CHECK(Plan(R"({"brightness_step": -10})", at50)[0] ==
        R"("method":"set_bright","params":[40,"smooth",300])");
  CHECK(Plan(R"({"brightness": 42.6})", at50)[0] ==
        R"("method":"set_bright","params":[43,"smooth",300])");
  CHECK(absl::IsInvalidArgument(PlanError(R"({"brightness": "bright"})")));
  CHECK(absl::IsInvalidArgument(PlanError(R"({"brightness": "+x"})")));
  CHECK(absl::IsInvalidArgument(PlanError(R"({"brightness": [1]})")));
}

TEST_CASE("colour temperature is clamped to 1700..6500") {
  const Properties at3000 = {{"power", "on"}, {"ct", "3000"}};
  CHECK(Plan(R"({"color_temp": 1000})", at3000)[0] ==
        R"("method":"set_ct_abx","params":[1700,"smooth",300])");
  CHECK(Plan(R"({"color_temp": 9000})", at3000)[0] ==
        R"("method":"set_ct_abx","params":[6500,"smooth",300])");
  CHECK(Plan(R"({"color_temp": "+500"})", at3000)[0] ==
        R"("method":"set_ct_abx","params":[3500,"smooth",300])");
}

TEST_CASE("colour as #RRGGBB, {r,g,b}, [r,g,b] and {h,s,v}") {
  CHECK(Plan(R"({"color": "#FF8000"})")[0] ==
        R"("method":"set_rgb","params":[16744448,"smooth",300])");
  CHECK(Plan(R"({"color": {"r": 0, "g": 0, "b": 300}})")[0] ==
        R"("method":"set_rgb","params":[255,"smooth",300])");
  CHECK(Plan(R"({"rgb": [1, 2, 3]})")[0] ==
        R"("method":"set_rgb","params":[66051,"smooth",300])");
  CHECK(Plan(R"({"color": {"h": 120, "s": 50}})") ==
        std::vector<std::string>{
            R"("method":"set_hsv","params":[120,50,"smooth",300])"});
  // v other than 100 sets the brightness first.
  CHECK(Plan(R"({"color": {"h": 400, "s": 50, "v": 30}})") ==
        std::vector<std::string>{
            R"("method":"set_bright","params":[30,"smooth",300])",
            R"("method":"set_hsv","params":[359,50,"smooth",300])"});
  CHECK(absl::IsInvalidArgument(PlanError(R"({"color": "red"})")));
  CHECK(absl::IsInvalidArgument(PlanError(R"({"color": "#12345"})")));
  CHECK(absl::IsInvalidArgument(PlanError(R"({"color": {"r": 1}})")));
  CHECK(absl::IsInvalidArgument(PlanError(R"({"color": {"x": 1}})")));
  CHECK(absl::IsInvalidArgument(PlanError(R"({"rgb": {"h": 1, "s": 2}})")));
  CHECK(absl::IsInvalidArgument(PlanError(R"({"color": 16711680})")));
}

TEST_CASE("transition and effect shape every request of the command") {
  CHECK(Plan(R"({"brightness": 10, "transition": 1000})")[0] ==
        R"("method":"set_bright","params":[10,"smooth",1000])");
  CHECK(Plan(R"({"transition": 5, "brightness": 10})")[0] ==
        R"("method":"set_bright","params":[10,"smooth",30])");
  CHECK(Plan(R"({"brightness": 10, "effect": "sudden"})")[0] ==
        R"("method":"set_bright","params":[10,"sudden",300])");
  CommandDefaults sudden_defaults;
  sudden_defaults.transition = {false, 500};
  CHECK(Plan(R"({"brightness": 10})", {{"power", "on"}}, sudden_defaults)[0] ==
        R"("method":"set_bright","params":[10,"sudden",500])");
  CHECK(Plan(R"({"effect": "stop"})") ==
        std::vector<std::string>{R"("method":"stop_cf","params":[])"});
  CHECK(absl::IsInvalidArgument(PlanError(R"({"effect": "disco"})")));
  CHECK(absl::IsInvalidArgument(PlanError(R"({"transition": -1})")));
}

TEST_CASE("power on comes first, power off last, auto-on for dark bulbs") {
  const Properties off = {{"power", "off"}, {"bright", "20"}};
  // A change to a bulb that is off turns it on first.
  CHECK(Plan(R"({"brightness": 60})", off) ==
        std::vector<std::string>{
            R"("method":"set_power","params":["on","smooth",300])",
            R"("method":"set_bright","params":[60,"smooth",300])"});
  CommandDefaults no_auto_on;
  no_auto_on.auto_on = false;
  CHECK(Plan(R"({"brightness": 60})", off, no_auto_on).size() == 1);
  // Explicit power is ordered around the other changes.
  CHECK(Plan(R"({"brightness": 60, "power": true})", off) ==
        std::vector<std::string>{
            R"("method":"set_power","params":["on","smooth",300])",
            R"("method":"set_bright","params":[60,"smooth",300])"});
  CHECK(Plan(R"({"power": false, "color_temp": 3000})") ==
        std::vector<std::string>{
            R"("method":"set_ct_abx","params":[3000,"smooth",300])",
            R"("method":"set_power","params":["off","smooth",300])"});
}

TEST_CASE("background light commands") {
  const Properties bulb = {
      {"power", "on"}, {"bg_power", "off"}, {"bg_bright", "40"}};
  CHECK(Plan(R"({"background": {"brightness": "+10"}})", bulb) ==
        std::vector<std::string>{
            R"("method":"bg_set_power","params":["on","smooth",300])",
            R"("method":"bg_set_bright","params":[50,"smooth",300])"});
  CHECK(Plan(R"({"background": {"power": "toggle"}})", bulb) ==
        std::vector<std::string>{R"("method":"bg_toggle","params":[])"});
  CHECK(absl::IsInvalidArgument(PlanError(R"({"background": {"volume": 3}})")));
  CHECK(absl::IsInvalidArgument(PlanError(R"({"background": true})")));
}

TEST_CASE("a bad or unknown key rejects the whole command") {
  absl::Status unknown = PlanError(R"({"power": true, "scene": "sunset"})");
  CHECK(absl::IsInvalidArgument(unknown));
  CHECK(unknown.message().find("scene") != std::string::npos);
  CHECK(absl::IsInvalidArgument(PlanError(R"([1, 2])")));
  CHECK(absl::IsInvalidArgument(PlanError(R"({"name": ""})")));
  CHECK(Plan(R"({"name": "Desk"})") ==
        std::vector<std::string>{R"("method":"set_name","params":["Desk"])"});
  // Nothing to do is not an error.
  CHECK(Plan(R"({})").empty());
}

}  // namespace
}  // namespace iot2mqtt::yeelight
