#ifndef IOT2MQTT_TESTS_INTEGRATION_DISCOVERY_CHILD_TEST_UTIL_H_
#define IOT2MQTT_TESTS_INTEGRATION_DISCOVERY_CHILD_TEST_UTIL_H_

// Helpers for the RunChild and ToolExecutor tests: executable scripts and
// checks on processes through /proc.

#include <dirent.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "catch2/catch.hpp"
#include "services/orchestrator/process_runtime.h"
#include "tests/support/test_support.h"

namespace iot2mqtt::discovery::test {

// Writes an executable (0755) script.
inline void WriteScript(const std::string& path, const std::string& text) {
  ::iot2mqtt::testing::WriteFile(path, text);
  REQUIRE(chmod(path.c_str(), 0755) == 0);
}

// /proc/<pid>/stat, or nothing when the process does not exist.
inline bool ReadStat(int64_t pid, orchestrator::ProcStat* stat) {
  std::string path = absl::StrCat("/proc/", pid, "/stat");
  FILE* file = fopen(path.c_str(), "re");
  if (file == nullptr) return false;
  char buffer[1024];
  size_t n = fread(buffer, 1, sizeof buffer, file);
  fclose(file);
  absl::StatusOr<orchestrator::ProcStat> parsed =
      orchestrator::ParseProcStat(absl::string_view(buffer, n));
  if (!parsed.ok()) return false;
  *stat = *parsed;
  return true;
}

// Gone: no such process, or a zombie (PID 1 here may never reap orphans;
// a zombie runs nothing and holds nothing).
inline bool ProcessGone(int64_t pid) {
  orchestrator::ProcStat stat;
  if (!ReadStat(pid, &stat)) return true;
  return stat.state == 'Z' || stat.state == 'X';
}

// The pids of live (not zombie) processes in process group `pgid`.
inline std::vector<int64_t> LiveGroupMembers(int64_t pgid) {
  std::vector<int64_t> members;
  DIR* dir = opendir("/proc");
  REQUIRE(dir != nullptr);
  while (struct dirent* entry = readdir(dir)) {
    int64_t pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    orchestrator::ProcStat stat;
    if (!ReadStat(pid, &stat) || stat.pgrp != pgid) continue;
    if (stat.state == 'Z' || stat.state == 'X') continue;
    members.push_back(pid);
  }
  closedir(dir);
  return members;
}

// A pid a script wrote to a file.
inline int64_t ReadPidFile(const std::string& path) {
  int64_t pid = 0;
  std::string text = ::iot2mqtt::testing::ReadFile(path);
  INFO(path << ": " << text);
  REQUIRE(absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &pid));
  REQUIRE(pid > 0);
  return pid;
}

inline bool FileExists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

}  // namespace iot2mqtt::discovery::test

#endif  // IOT2MQTT_TESTS_INTEGRATION_DISCOVERY_CHILD_TEST_UTIL_H_
