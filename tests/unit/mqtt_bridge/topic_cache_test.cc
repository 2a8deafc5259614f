#include "services/mqtt_bridge/topic_cache.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "catch2/catch.hpp"
#include "iot2mqtt/sdk/json.h"

namespace iot2mqtt::mqtt_bridge {
namespace {

constexpr char kBase[] = "IoT2mqtt/v1/instances";
const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

absl::Time At(int seconds) { return kT0 + absl::Seconds(seconds); }

std::string Compact(const std::string& json) {
  absl::StatusOr<std::string> compact = sdk::RewriteJson(json);
  REQUIRE(compact.ok());
  return *compact;
}

std::vector<std::string> TopicsOf(const std::vector<CachedTopic>& topics) {
  std::vector<std::string> out;
  for (const CachedTopic& t : topics) out.push_back(t.topic);
  return out;
}

std::string T(const std::string& rest) {
  return absl::StrCat(kBase, "/", rest);
}

TEST_CASE("PayloadToJson keeps JSON and quotes text", "[unit]") {
  CHECK(PayloadToJson("{\"a\": 1}") == "{\"a\": 1}");
  CHECK(PayloadToJson("  [1, 2]\n") == "[1, 2]");
  CHECK(PayloadToJson("75") == "75");
  CHECK(PayloadToJson("12345678901234567890123") == "12345678901234567890123");
  CHECK(PayloadToJson("\"online\"") == "\"online\"");
  CHECK(PayloadToJson("true") == "true");
  CHECK(PayloadToJson("online") == "\"online\"");
  CHECK(PayloadToJson("True") == "\"True\"");
  CHECK(PayloadToJson("living room") == "\"living room\"");
  CHECK(PayloadToJson("{\"a\": 1} trailing") == "\"{\\\"a\\\": 1} trailing\"");
  CHECK(PayloadToJson("{\"a\":") == "\"{\\\"a\\\":\"");
  CHECK(PayloadToJson(std::string("1\0x", 3)) == "\"1\\u0000x\"");
  // Invalid UTF-8 as text and inside a JSON string.
  CHECK(PayloadToJson("caf\xC3") == "\"caf\xEF\xBF\xBD\"");
  std::string bad_json = PayloadToJson("\"caf\xC3\"");
  CHECK(sdk::RewriteJson(bad_json).ok());
  CHECK(bad_json.find("\xEF\xBF\xBD") != std::string::npos);
}

TEST_CASE("Apply stores values with metadata, an empty payload deletes",
          "[unit]") {
  TopicCache cache;
  CacheChange change = cache.Apply("IoT2mqtt/x", "{\"v\": 1}", true, 1, At(1));
  CHECK(change.kind == CacheChange::Kind::kUpdate);
  CHECK(change.value == "{\"v\": 1}");
  CHECK(change.evicted == 0);
  change = cache.Apply("IoT2mqtt/y", "hello", false, 0, At(2));
  CHECK(change.value == "\"hello\"");

  std::optional<CachedTopic> x = cache.Get("IoT2mqtt/x");
  REQUIRE(x.has_value());
  CHECK(x->value == "{\"v\": 1}");
  CHECK(x->retained);
  CHECK(x->qos == 1);
  CHECK(x->received == At(1));
  CHECK(cache.size() == 2);
  CHECK(cache.bytes() == std::string("IoT2mqtt/x").size() + 8 +
                             std::string("IoT2mqtt/y").size() + 7);

  CHECK(cache.Apply("IoT2mqtt/x", "", true, 1, At(3)).kind ==
        CacheChange::Kind::kDelete);
  CHECK_FALSE(cache.Get("IoT2mqtt/x").has_value());
  CHECK(cache.Apply("IoT2mqtt/x", "", true, 1, At(3)).kind ==
        CacheChange::Kind::kIgnored);
  CHECK(cache.size() == 1);
  CHECK(cache.bytes() == std::string("IoT2mqtt/y").size() + 7);

  cache.Erase("IoT2mqtt/y");
  cache.Erase("IoT2mqtt/none");
  CHECK(cache.size() == 0);
  CHECK(cache.bytes() == 0);
}

TEST_CASE("Eviction by topic count drops the least recently updated",
          "[unit]") {
  CacheLimits limits;
  limits.max_topics = 3;
  TopicCache cache(limits);
  cache.Apply("t/a", "1", false, 0, At(1));
  cache.Apply("t/b", "1", false, 0, At(2));
  cache.Apply("t/c", "1", false, 0, At(3));
  // Updating a refreshes it: b is now the oldest.
  cache.Apply("t/a", "2", false, 0, At(4));
  CacheChange change = cache.Apply("t/d", "1", false, 0, At(5));
  CHECK(change.evicted == 1);
  CHECK(TopicsOf(cache.List()) ==
        std::vector<std::string>{"t/a", "t/c", "t/d"});
  cache.Apply("t/e", "1", false, 0, At(6));
  CHECK(TopicsOf(cache.List()) ==
        std::vector<std::string>{"t/a", "t/d", "t/e"});
  CHECK(cache.evicted() == 2);
  CHECK(cache.size() == 3);
}

TEST_CASE("Eviction by bytes counts topic and value sizes", "[unit]") {
  CacheLimits limits;
  limits.max_bytes = 30;  // Each entry below is 3 + 7 = 10 bytes.
  TopicCache cache(limits);
  cache.Apply("t/a", "\"aaaaa\"", false, 0, At(1));
  cache.Apply("t/b", "\"bbbbb\"", false, 0, At(2));
  cache.Apply("t/c", "\"ccccc\"", false, 0, At(3));
  CHECK(cache.bytes() == 30);
  CHECK(cache.evicted() == 0);
  // A larger value for c (3 + 17 bytes) needs room: a (the oldest) goes.
  CacheChange change =
      cache.Apply("t/c", "\"ccccccccccccccc\"", false, 0, At(4));
  CHECK(change.kind == CacheChange::Kind::kUpdate);
  CHECK(change.evicted == 1);
  CHECK(TopicsOf(cache.List()) == std::vector<std::string>{"t/b", "t/c"});
  CHECK(cache.bytes() == 30);
  change = cache.Apply("t/c", std::string(40, 'x'), false, 0, At(5));
  // Too large for the cache at all: not cached, the old value is dropped.
  CHECK(change.kind == CacheChange::Kind::kIgnored);
  CHECK_FALSE(cache.Get("t/c").has_value());
  CHECK(cache.evicted() == 2);
  CHECK(cache.bytes() == 10);
}

TEST_CASE("List filters by case-insensitive substring, sorted", "[unit]") {
  TopicCache cache;
  cache.Apply("b/Kitchen/Light", "1", false, 0, At(1));
  cache.Apply("a/kitchen/fan", "1", false, 0, At(2));
  cache.Apply("c/bedroom", "1", false, 0, At(3));
  CHECK(TopicsOf(cache.List("KITCHEN")) ==
        std::vector<std::string>{"a/kitchen/fan", "b/Kitchen/Light"});
  CHECK(TopicsOf(cache.List("")).size() == 3);
  CHECK(cache.List("garage").empty());
}

TEST_CASE("Matching honours + and # and $ topics", "[unit]") {
  TopicCache cache;
  for (const char* topic :
       {"home/a/state", "home/a/state/power", "home/b/state", "home",
        "homework/x", "$SYS/x", "other/a/state"}) {
    cache.Apply(topic, "1", false, 0, At(1));
  }
  CHECK(TopicsOf(cache.Matching("home/+/state")) ==
        std::vector<std::string>{"home/a/state", "home/b/state"});
  CHECK(TopicsOf(cache.Matching("home/#")) ==
        std::vector<std::string>{"home", "home/a/state", "home/a/state/power",
                                 "home/b/state"});
  CHECK(TopicsOf(cache.Matching("+/a/state")) ==
        std::vector<std::string>{"home/a/state", "other/a/state"});
  CHECK(TopicsOf(cache.Matching("#")).size() == 6);  // Not $SYS/x.
  CHECK(TopicsOf(cache.Matching("$SYS/#")) ==
        std::vector<std::string>{"$SYS/x"});
  CHECK(TopicsOf(cache.Matching("home")) == std::vector<std::string>{"home"});
}

TEST_CASE("TopicMatchesFilter and TopicProblem follow MQTT 3.1.1", "[unit]") {
  CHECK(TopicMatchesFilter("a/b/c", "a/+/c"));
  CHECK(TopicMatchesFilter("a/b/c", "a/#"));
  CHECK(TopicMatchesFilter("a", "a/#"));
  CHECK(TopicMatchesFilter("a/", "a/+"));
  CHECK(TopicMatchesFilter("/a", "+/a"));
  CHECK_FALSE(TopicMatchesFilter("a/b/c", "a/+"));
  CHECK_FALSE(TopicMatchesFilter("a/b", "a/b/c"));
  CHECK_FALSE(TopicMatchesFilter("$SYS/a", "+/a"));
  CHECK_FALSE(TopicMatchesFilter("ab", "a"));

  CHECK(TopicProblem("a/b", false).empty());
  CHECK(TopicProblem("a/+/#", true).empty());
  CHECK_FALSE(TopicProblem("", false).empty());
  CHECK_FALSE(TopicProblem("a/+", false).empty());
  CHECK_FALSE(TopicProblem("a/#", false).empty());
  CHECK_FALSE(TopicProblem("a/#/b", true).empty());
  CHECK_FALSE(TopicProblem("a/b+", true).empty());
  CHECK_FALSE(TopicProblem("a#", true).empty());
  CHECK_FALSE(TopicProblem(std::string("a\0b", 3), false).empty());
  CHECK_FALSE(TopicProblem("a/\xC3", false).empty());
  CHECK_FALSE(TopicProblem(std::string(65536, 'a'), false).empty());
  CHECK(TopicProblem(std::string(65535, 'a'), false).empty());
}

TEST_CASE("TopicsUnder is exact about the instance prefix", "[unit]") {
  TopicCache cache;
  cache.Apply(T("inst/status"), "online", true, 1, At(1));
  cache.Apply(T("inst/devices/d/state"), "{}", true, 1, At(1));
  cache.Apply(T("inst2/status"), "online", true, 1, At(1));
  cache.Apply(T("inst-x/status"), "online", true, 1, At(1));
  cache.Apply(T("inst"), "1", true, 1, At(1));
  CHECK(cache.TopicsUnder(T("inst")) ==
        std::vector<std::string>{T("inst"), T("inst/devices/d/state"),
                                 T("inst/status")});
  CHECK(cache.TopicsUnder(T("nothing")).empty());
}

TEST_CASE("Instance status comes from the status topic", "[unit]") {
  TopicCache cache;
  CHECK_FALSE(cache.Instance("a").has_value());
  cache.Apply(T("a/status"), "online", true, 1, At(1));
  cache.Apply(T("b/status"), "\"offline\"", true, 1, At(2));
  cache.Apply(T("c/status"), "ONLINE", true, 1, At(3));
  cache.Apply(T("d/status"), "{\"status\": \"online\"}", true, 1, At(4));
  cache.Apply(T("e/meta/info"), "{}", true, 1, At(5));
  std::vector<InstanceView> all = cache.Instances();
  REQUIRE(all.size() == 5);
  CHECK(all[0].instance_id == "a");
  CHECK(all[0].status == "online");
  CHECK(all[0].last_seen == At(1));
  CHECK(all[1].status == "offline");
  CHECK(all[2].status == "online");
  CHECK(all[3].status == "unknown");
  CHECK(all[4].instance_id == "e");
  CHECK(all[4].status == "unknown");

  cache.Apply(T("a/status"), "offline", true, 1, At(9));
  CHECK(cache.Instance("a")->status == "offline");
  CHECK(cache.Instance("a")->last_seen == At(9));
  cache.Apply(T("a/status"), "", true, 1, At(10));
  CHECK_FALSE(cache.Instance("a").has_value());
}

TEST_CASE("Instances with invalid ids are not projected", "[unit]") {
  TopicCache cache;
  for (const char* id : {"Upper", "_lead", "-lead", "sp ace", "dot.ted"}) {
    cache.Apply(T(absl::StrCat(id, "/status")), "online", true, 1, At(1));
  }
  cache.Apply(T(absl::StrCat(std::string(64, 'a'), "/status")), "online", true,
              1, At(1));
  cache.Apply(T(absl::StrCat(std::string(63, 'a'), "/status")), "online", true,
              1, At(1));
  cache.Apply(T("ok_1-2/status"), "online", true, 1, At(1));
  std::vector<InstanceView> all = cache.Instances();
  REQUIRE(all.size() == 2);
  CHECK(all[0].instance_id == std::string(63, 'a'));
  CHECK(all[1].instance_id == "ok_1-2");
  CHECK_FALSE(cache.Instance("Upper").has_value());
  CHECK(cache.size() == 8);  // Still cached, only not projected.
}

TEST_CASE("Device state projection merges later property values", "[unit]") {
  TopicCache cache;
  const std::string full =
      R"({"timestamp": "2025-01-01T00:00:00.000Z", "device_id": "lamp",)"
      R"( "state": {"power": false, "brightness": 10}})";
  // A property before the full state is superseded by it.
  cache.Apply(T("i/devices/lamp/state/power"), "true", true, 1, At(1));
  cache.Apply(T("i/devices/lamp/state"), full, true, 1, At(2));
  std::optional<InstanceView> view = cache.Instance("i");
  REQUIRE(view.has_value());
  REQUIRE(view->devices.size() == 1);
  CHECK(view->devices[0].device_id == "lamp");
  CHECK(view->devices[0].state == full);
  CHECK(view->devices[0].last_update == At(2));

  // Later property values override their key.
  cache.Apply(T("i/devices/lamp/state/brightness"), "75", true, 1, At(3));
  cache.Apply(T("i/devices/lamp/state/color"), "{\"r\": 255}", true, 1, At(4));
  view = cache.Instance("i");
  CHECK(view->devices[0].state ==
        Compact(R"({"timestamp": "2025-01-01T00:00:00.000Z",)"
                R"( "device_id": "lamp", "state": {"power": false,)"
                R"( "brightness": 75, "color": {"r": 255}}})"));
  CHECK(view->devices[0].last_update == At(4));

  // A new full state supersedes them again.
  cache.Apply(T("i/devices/lamp/state"), full, true, 1, At(5));
  CHECK(cache.Instance("i")->devices[0].state == full);
}

TEST_CASE("Device projection from properties only, and exact topics",
          "[unit]") {
  TopicCache cache;
  cache.Apply(T("i/devices/b/state/power"), "True", true, 1, At(1));
  cache.Apply(T("i/devices/a/state_foo"), "{}", true, 1, At(1));
  cache.Apply(T("i/devices/a/state/x/y"), "1", true, 1, At(1));
  cache.Apply(T("i/devices/a/events"), "{}", false, 0, At(1));
  std::optional<InstanceView> view = cache.Instance("i");
  REQUIRE(view.has_value());
  REQUIRE(view->devices.size() == 1);
  CHECK(view->devices[0].device_id == "b");
  CHECK(view->devices[0].state ==
        R"({"device_id":"b","state":{"power":"True"}})");

  cache.Apply(T("i/devices/a/state"), "{\"device_id\": \"a\"}", true, 1, At(2));
  view = cache.Instance("i");
  REQUIRE(view->devices.size() == 2);
  CHECK(view->devices[0].device_id == "a");
  CHECK(view->devices[1].device_id == "b");

  // Deleting the last state topic of a device removes it.
  cache.Apply(T("i/devices/b/state/power"), "", true, 1, At(3));
  view = cache.Instance("i");
  REQUIRE(view->devices.size() == 1);
  CHECK(view->devices[0].device_id == "a");
}

TEST_CASE("Eviction keeps projections consistent", "[unit]") {
  CacheLimits limits;
  limits.max_topics = 2;
  TopicCache cache(limits);
  cache.Apply(T("i/devices/d/state"), "{\"state\": {}}", true, 1, At(1));
  cache.Apply(T("i/status"), "online", true, 1, At(2));
  cache.Apply("IoT2mqtt/other", "1", false, 0, At(3));
  std::optional<InstanceView> view = cache.Instance("i");
  REQUIRE(view.has_value());
  CHECK(view->devices.empty());
  CHECK(view->status == "online");
  cache.Apply("IoT2mqtt/other2", "1", false, 0, At(4));
  CHECK_FALSE(cache.Instance("i").has_value());
  CHECK(cache.Instances().empty());
}

TEST_CASE("Changing the base topic clears the cache", "[unit]") {
  TopicCache cache;
  CHECK(cache.base_topic() == "IoT2mqtt");
  cache.Apply(T("i/status"), "online", true, 1, At(1));
  cache.SetBaseTopic("IoT2mqtt");  // Unchanged: nothing happens.
  CHECK(cache.size() == 1);
  cache.SetBaseTopic("home");
  CHECK(cache.base_topic() == "home");
  CHECK(cache.size() == 0);
  CHECK(cache.bytes() == 0);
  CHECK(cache.Instances().empty());
  cache.Apply(T("i/status"), "online", true, 1, At(2));
  CHECK(cache.Instances().empty());  // Not under the new base.
  cache.Apply("home/v1/instances/i/status", "online", true, 1, At(2));
  REQUIRE(cache.Instances().size() == 1);
  CHECK(cache.Instances()[0].status == "online");
  cache.Clear();
  CHECK(cache.size() == 0);
  CHECK(cache.Instances().empty());
}

}  // namespace
}  // namespace iot2mqtt::mqtt_bridge
