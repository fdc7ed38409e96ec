// hilum-cli: Hilum's command-line tool.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include "commands.hpp"

namespace {

constexpr const char* kUsage = R"(usage: hilum-cli <command> [options]

commands:
  info FILE...            one JSON object per line per file (a DICOMDIR expands to its images);
                          exit status 1 when any file failed
      --no-pixels         read attributes only (no pixel decoding, no window)
  render FILE -o OUT.png  8-bit display rendering after the full DICOM display pipeline
      --window C,W        window centre and width in modality units
      --preset N          the file's N-th window preset (1-based)
      --voi-lut N         the file's N-th VOI LUT (1-based)
      --auto              automatic (histogram) window, ignoring collimator borders
      --min-max           window over the full range of modality values
      --invert            invert on top of the file's polarity
      --max-size PIXELS   shrink (area average) so that neither side exceeds PIXELS
  dicomdir DICOMDIR       list patients / studies / series / images of a DICOMDIR
      --json              one JSON object per image

  --help, --version
)";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return hilum::cli::kExitUsage;
  }
  const std::string command = argv[1];
  hilum::cli::Args args(argv + 2, argv + argc);
  if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(kUsage, stdout);
    return hilum::cli::kExitOk;
  }
  if (command == "--version") {
    std::puts("hilum-cli " HILUM_VERSION);
    return hilum::cli::kExitOk;
  }
  if (command == "info") return hilum::cli::cmd_info(args);
  if (command == "render") return hilum::cli::cmd_render(args);
  if (command == "dicomdir") return hilum::cli::cmd_dicomdir(args);
  std::fprintf(stderr, "hilum-cli: unknown command '%s'\n\n%s", command.c_str(), kUsage);
  return hilum::cli::kExitUsage;
}
