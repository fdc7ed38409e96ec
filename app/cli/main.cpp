// hilum-cli: Hilum's command-line tool. The commands, their options and the help texts are in
// command_table.cpp.
#include <cstdio>
#include <cstring>
#include <string>

#include "command_table.hpp"
#include "commands.hpp"

int main(int argc, char** argv) {
  using namespace hilum::cli;
  Global global;
  int i = 1;
  while (i < argc && std::strncmp(argv[i], "--", 2) == 0) {
    const std::string option = argv[i];
    if (option == "--db") {
      if (i + 1 >= argc) {
        std::fputs("hilum-cli: --db needs a PATH\n", stderr);
        return kExitUsage;
      }
      global.db = argv[i + 1];
      i += 2;
    } else if (option == "--help") {
      std::fputs(global_usage().c_str(), stdout);
      return kExitOk;
    } else if (option == "--version") {
      std::puts("hilum-cli " HILUM_VERSION);
      return kExitOk;
    } else {
      std::fprintf(stderr, "hilum-cli: unknown option '%s'\n\n%s", option.c_str(), global_usage().c_str());
      return kExitUsage;
    }
  }
  return run_command(global, Args(argv + i, argv + argc));
}
