// (in progress: export)
#include <cstdio>
#include "commands.hpp"
namespace hilum::cli {
int cmd_export(const Global&, const Args&) { std::fputs("hilum-cli: export: not implemented yet\n", stderr); return kExitUsage; }
}  // namespace hilum::cli
