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

// The options `train` and `pretrain` share (command_table.cpp: with_training_options, and --out):
// when args[i] is one of them and has its value, reads it into `o` (moving i past it) and returns
// true; `error` is set when the value is wrong. `min_epochs` is 0 where --epochs 0 means something.
template <typename Options>
bool training_option(const std::string& command, const Args& args, std::size_t& i, Options& o, int min_epochs, std::string& error) {
  const std::string& a = args[i];
  if (i + 1 >= args.size()) return false;
  const std::string& v = args[i + 1];
  if (a == "--out" || a == "-o") {
    o.out = v;
  } else if (a == "--arch") {
    o.arch = v;
  } else if (a == "--init") {
    o.init = v;
  } else if (a == "--epochs" || a == "--batch" || a == "--image-size" || a == "--warmup-epochs" || a == "--max-images") {
    const auto n = parse_number<int>(v);
    const int least = a == "--epochs" ? min_epochs : a == "--warmup-epochs" || a == "--max-images" ? 0 : 1;
    if (!n || *n < least) error = command + ": " + a + " takes a number";
    else (a == "--epochs" ? o.epochs : a == "--batch" ? o.batch_size : a == "--image-size" ? o.image_size : a == "--warmup-epochs" ? o.warmup_epochs : o.max_images) = *n;
  } else if (a == "--lr" || a == "--weight-decay") {
    const auto x = parse_number<float>(v);
    if (!x || *x < 0.0f || *x > 1.0f) error = command + ": " + a + " takes a value in [0, 1]";
    else (a == "--lr" ? o.learning_rate : o.weight_decay) = *x;
  } else if (a == "--seed") {
    const auto x = parse_number<std::uint64_t>(v);
    if (!x) error = command + ": --seed takes a number";
    else o.seed = *x;
  } else if (a == "--precision") {
    const auto p = parse_precision(v);
    if (!p) error = command + ": --precision takes f32 or bf16";
    else o.precision = *p;
  } else {
    return false;
  }
  ++i;
  return true;
}

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
int cmd_catalog(const Global& global, const Args& args);     // cmd_catalog.cpp
int cmd_listen(const Global& global, const Args& args);   // cmd_network.cpp
int cmd_pacs(const Global& global, const Args& args);     // cmd_network.cpp

// Exit statuses shared by every command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailures = 1;  // the command ran, some inputs failed
inline constexpr int kExitUsage = 2;     // bad command line
inline constexpr int kExitCatalog = 3;   // the catalog could not be opened or written
inline constexpr int kExitInterrupted = 130;  // Ctrl-C

}  // namespace hilum::cli
