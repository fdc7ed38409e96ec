// hilum-cli commands. Each returns the process exit status and writes results to stdout,
// progress and human-readable diagnostics to stderr.
#pragma once

#include <string>
#include <vector>

namespace hilum::cli {

using Args = std::vector<std::string>;

int cmd_info(const Args& args);
int cmd_render(const Args& args);
int cmd_dicomdir(const Args& args);

// Exit statuses shared by every command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailures = 1;  // the command ran, some inputs failed
inline constexpr int kExitUsage = 2;     // bad command line

}  // namespace hilum::cli
