#ifndef IOT2MQTT_SDK_JSON_SAX_H_
#define IOT2MQTT_SDK_JSON_SAX_H_

// A base for RapidJSON SAX handlers that copy a document to a writer: every
// scalar event (null, bool, the number events, string) goes to one hook,
//
//   template <typename Write>
//   bool Scalar(JsonScalar kind, Write write);
//
// which the derived class defines (public) and which emits the value by
// calling `write(writer)` on the writer of its choice, or skips it. A derived
// class may still define String() itself (it hides this one), and always
// defines Key() and the container events.
//
//   class Copier : public sdk::ScalarEvents<Copier, Writer> {
//    public:
//     template <typename Write>
//     bool Scalar(sdk::JsonScalar, Write write) { return write(*out_); }
//     ...
//   };

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "rapidjson/rapidjson.h"

namespace iot2mqtt::sdk {

enum class JsonScalar { kNull, kBool, kNumber, kString };

template <typename Derived, typename Writer>
class ScalarEvents {
 public:
  bool Null() {
    return Self().Scalar(JsonScalar::kNull, [](Writer& w) { return w.Null(); });
  }
  bool Bool(bool b) {
    return Self().Scalar(JsonScalar::kBool,
                         [b](Writer& w) { return w.Bool(b); });
  }
  bool Int(int i) {
    return Self().Scalar(JsonScalar::kNumber,
                         [i](Writer& w) { return w.Int(i); });
  }
  bool Uint(unsigned u) {
    return Self().Scalar(JsonScalar::kNumber,
                         [u](Writer& w) { return w.Uint(u); });
  }
  bool Int64(int64_t i) {
    return Self().Scalar(JsonScalar::kNumber,
                         [i](Writer& w) { return w.Int64(i); });
  }
  bool Uint64(uint64_t u) {
    return Self().Scalar(JsonScalar::kNumber,
                         [u](Writer& w) { return w.Uint64(u); });
  }
  bool Double(double d) {
    return Self().Scalar(JsonScalar::kNumber,
                         [d](Writer& w) { return w.Double(d); });
  }
  // Numbers as their exact text (kParseNumbersAsStringsFlag).
  bool RawNumber(const char* s, rapidjson::SizeType n, bool) {
    return Self().Scalar(JsonScalar::kNumber, [s, n](Writer& w) {
      return w.RawValue(s, n, rapidjson::kNumberType);
    });
  }
  bool String(const char* s, rapidjson::SizeType n, bool) {
    return Self().Scalar(JsonScalar::kString,
                         [s, n](Writer& w) { return w.String(s, n); });
  }

 private:
  Derived& Self() { return static_cast<Derived&>(*this); }
};

// One open container on a SAX handler's way through a document.
struct JsonFrame {
  bool array = false;
  int64_t index = -1;  // Of the current element, in an array.
  std::string key;     // Of the current member, in an object.
};

// The dotted path of the current value: "connection.password",
// "devices.0.token" (the secret paths of docs/connector-guide.md).
inline std::string DottedPath(const std::vector<JsonFrame>& frames) {
  std::string path;
  for (const JsonFrame& frame : frames) {
    if (!path.empty()) path += '.';
    if (frame.array) {
      absl::StrAppend(&path, frame.index);
    } else {
      path += frame.key;
    }
  }
  return path;
}

}  // namespace iot2mqtt::sdk

#endif  // IOT2MQTT_SDK_JSON_SAX_H_
