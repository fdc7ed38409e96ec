// Runs the real hilum-cli executable for end-to-end tests.
#pragma once

#include <array>
#include <cstdio>
#include <string>
#include <vector>

#include <sys/wait.h>

namespace hilum::test {

struct CliRun {
  int status = -1;   // exit status, -1 when killed by a signal
  std::string out;   // standard output
};

// `args` is passed through the shell: quote paths with quote().
inline CliRun run_cli(const std::string& args, bool keep_stderr = false) {
  CliRun r;
  const std::string command = std::string(HILUM_CLI) + " " + args + (keep_stderr ? " 2>&1" : " 2>/dev/null");
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return r;
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.out.append(buf.data(), n);
  const int status = ::pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out.push_back(c);
  }
  return out + "'";
}

inline std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < s.size()) {
    const auto end = s.find('\n', start);
    out.push_back(s.substr(start, end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

}  // namespace hilum::test
