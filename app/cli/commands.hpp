// hilum-cli commands. Each returns the process exit status and writes results to stdout,
// progress and human-readable diagnostics to stderr.
#pragma once

#include <atomic>
#include <charconv>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hilum/app/catalog.hpp"
#include "hilum/inference/precision.hpp"

namespace hilum::cli {

using Args = std::vector<std::string>;

// Options placed before the command (hilum-cli --db PATH import ...).
struct Global {
  std::filesystem::path db;  // --db, else $HILUM_DB, else the XDG data folder
};

// Prints "hilum-cli: MESSAGE (see hilum-cli --help)" and returns kExitUsage.
int usage_error(const std::string& message);

// The whole of `s` as a number of type T ('.' whatever the locale), or nothing.
template <typename T>
std::optional<T> parse_number(const std::string& s) {
  T v{};
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// --set FINDING=present|absent|uncertain|cleared (label, adjudicate); nothing, with `problem` set, when bad.
std::optional<std::pair<std::string, app::LabelValue>> parse_finding_value(const std::string& s, std::string& problem);

// --precision f32|bf16: the arithmetic of the trained layers' matrix products.
std::optional<inference::Precision> parse_precision(const std::string& s);

// Prints a catalog/workflow error and returns its exit status: 1 for bad input (unknown image,
// invalid label, ...), 130 for an interruption, 3 for the catalog itself (locked, damaged, ...).
int report_error(const app::Error& error);

// While a long command runs: the first Ctrl-C (or SIGTERM) sets the flag, so the job commits
// what it has and stops; a second one exits at once. The previous handlers come back after.
class InterruptGuard {
 public:
  InterruptGuard();
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;
  [[nodiscard]] static const std::atomic<bool>* flag();

 private:
  struct Saved;
  std::unique_ptr<Saved> saved_;
};

// Opens the catalog for a command; prints the reason and returns nothing when it cannot.
// `browsing` (commands that only read): a catalog that cannot be written (read-only storage) is
// opened read-only instead of refused.
std::optional<app::Catalog> open_catalog(const Global& global, app::Catalog::Mode mode, bool browsing = false);

// Reader commands (no catalog).
int cmd_info(const Args& args);
int cmd_render(const Args& args);
int cmd_dicomdir(const Args& args);

// Catalog commands.
int cmd_import(const Global& global, const Args& args);   // cmd_import.cpp
int cmd_list(const Global& global, const Args& args);     // cmd_import.cpp
int cmd_label(const Global& global, const Args& args);    // cmd_labels.cpp
int cmd_labels(const Global& global, const Args& args);   // cmd_labels.cpp
int cmd_export(const Global& global, const Args& args);   // cmd_export.cpp
int cmd_classify(const Global& global, const Args& args); // cmd_models.cpp
int cmd_heatmap(const Global& global, const Args& args);  // cmd_models.cpp
int cmd_models(const Global& global, const Args& args);   // cmd_models.cpp
int cmd_finetune(const Global& global, const Args& args); // cmd_finetune.cpp
int cmd_evaluate(const Global& global, const Args& args); // cmd_finetune.cpp
int cmd_train(const Global& global, const Args& args);    // cmd_finetune.cpp
int cmd_pretrain(const Global& global, const Args& args); // cmd_pretrain.cpp
int cmd_adjudicate(const Global& global, const Args& args);  // cmd_readers.cpp
int cmd_agreement(const Global& global, const Args& args);   // cmd_readers.cpp
int cmd_listen(const Global& global, const Args& args);   // cmd_network.cpp
int cmd_pacs(const Global& global, const Args& args);     // cmd_network.cpp

// Exit statuses shared by every command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailures = 1;  // the command ran, some inputs failed
inline constexpr int kExitUsage = 2;     // bad command line
inline constexpr int kExitCatalog = 3;   // the catalog could not be opened or written
inline constexpr int kExitInterrupted = 130;  // Ctrl-C

}  // namespace hilum::cli
