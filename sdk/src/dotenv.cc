#include "iot2mqtt/sdk/dotenv.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace iot2mqtt::sdk {

namespace {

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

// Strips blanks and a trailing '\r' (CRLF files).
absl::string_view Trim(absl::string_view text) {
  while (!text.empty() && (IsBlank(text.front()) || text.front() == '\r')) {
    text.remove_prefix(1);
  }
  while (!text.empty() && (IsBlank(text.back()) || text.back() == '\r')) {
    text.remove_suffix(1);
  }
  return text;
}

// An unquoted value: up to the end of the line, a whitespace followed by
// '#' starts a comment.
std::string UnquotedValue(absl::string_view rest_of_line) {
  for (size_t i = 1; i < rest_of_line.size(); ++i) {
    if (rest_of_line[i] == '#' && IsBlank(rest_of_line[i - 1])) {
      rest_of_line = rest_of_line.substr(0, i);
      break;
    }
  }
  return std::string(Trim(rest_of_line));
}

char DecodeDoubleQuotedEscape(char c, bool* known) {
  *known = true;
  switch (c) {
    case 'n':
      return '\n';
    case 'r':
      return '\r';
    case 't':
      return '\t';
    case 'a':
      return '\a';
    case 'b':
      return '\b';
    case 'f':
      return '\f';
    case 'v':
      return '\v';
    case '\\':
    case '"':
    case '\'':
      return c;
    default:
      *known = false;
      return c;
  }
}

// Parses a quoted value starting at text[pos] (the quote). On success sets
// `value` and returns the position just after the closing quote; returns
// npos when the quote is not closed.
size_t ParseQuoted(absl::string_view text, size_t pos, std::string* value) {
  const char quote = text[pos];
  value->clear();
  for (size_t i = pos + 1; i < text.size(); ++i) {
    char c = text[i];
    if (c == quote) return i + 1;
    if (c == '\\' && i + 1 < text.size()) {
      char next = text[i + 1];
      if (quote == '"') {
        bool known = false;
        char decoded = DecodeDoubleQuotedEscape(next, &known);
        if (known) {
          value->push_back(decoded);
          ++i;
          continue;
        }
      } else if (next == '\\' || next == '\'') {
        value->push_back(next);
        ++i;
        continue;
      }
    }
    value->push_back(c);
  }
  return absl::string_view::npos;
}

// Whether what follows a closing quote up to the end of the line is nothing,
// blanks or a comment.
bool OnlyCommentFollows(absl::string_view rest_of_line) {
  rest_of_line = Trim(rest_of_line);
  return rest_of_line.empty() || rest_of_line.front() == '#';
}

size_t EndOfLine(absl::string_view text, size_t pos) {
  size_t end = text.find('\n', pos);
  return end == absl::string_view::npos ? text.size() : end;
}

}  // namespace

std::map<std::string, std::string> ParseDotEnvEntries(absl::string_view text) {
  std::map<std::string, std::string> values;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t line_end = EndOfLine(text, pos);
    absl::string_view line = Trim(text.substr(pos, line_end - pos));
    pos = line_end + 1;
    if (line.empty() || line.front() == '#') continue;
    if (absl::StartsWith(line, "export") && line.size() > 6 &&
        IsBlank(line[6])) {
      line = Trim(line.substr(6));
    }
    size_t eq = line.find('=');
    if (eq == absl::string_view::npos) continue;
    std::string key(Trim(line.substr(0, eq)));
    if (key.empty()) continue;
    // Offset of the first value character in `text`.
    size_t value_start =
        static_cast<size_t>(line.data() - text.data()) + eq + 1;
    while (value_start < line_end && IsBlank(text[value_start])) {
      ++value_start;
    }
    if (value_start < line_end &&
        (text[value_start] == '"' || text[value_start] == '\'')) {
      std::string value;
      size_t after = ParseQuoted(text, value_start, &value);
      if (after != absl::string_view::npos) {
        size_t after_line_end = EndOfLine(text, after);
        if (OnlyCommentFollows(text.substr(after, after_line_end - after))) {
          values[key] = std::move(value);
          pos = after_line_end + 1;
          continue;
        }
      }
      // Unclosed or followed by more text: taken literally, like upstream.
    }
    values[key] =
        UnquotedValue(text.substr(value_start, line_end - value_start));
  }
  return values;
}

MapEnv ParseDotEnv(absl::string_view text) {
  MapEnv env;
  for (auto& [key, value] : ParseDotEnvEntries(text)) {
    env.Set(key, std::move(value));
  }
  return env;
}

absl::StatusOr<MapEnv> ReadDotEnv(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int error = errno;
    if (error == ENOENT) {
      return absl::NotFoundError(absl::StrCat(path, " does not exist"));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read ", path, ": ", std::strerror(error)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return ParseDotEnv(text.str());
}

absl::StatusOr<MapEnv> LoadEnvFile(const Env& process) {
  std::optional<std::string> named = process.Get("IOT2MQTT_ENV_FILE");
  if (named.has_value() && !named->empty()) {
    absl::StatusOr<MapEnv> env = ReadDotEnv(*named);
    if (!env.ok()) {
      return absl::Status(
          env.status().code(),
          absl::StrCat("IOT2MQTT_ENV_FILE: ", env.status().message()));
    }
    return env;
  }
  absl::StatusOr<MapEnv> env = ReadDotEnv(kDefaultEnvFile);
  if (absl::IsNotFound(env.status())) return MapEnv();
  return env;
}

}  // namespace iot2mqtt::sdk
