// hilum-cli pretrain: masked-autoencoder pre-training of a ViT encoder on unlabelled films.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "commands.hpp"
#include "hilum/app/pretrain.hpp"

namespace fs = std::filesystem;

namespace hilum::cli {

int cmd_pretrain(const Global& global, const Args& args) {
  app::PretrainOptions o;
  bool catalog = false, json = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const bool has_value = i + 1 < args.size();
    if (a == "--catalog") {
      catalog = true;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--data" && has_value) {
      o.data.emplace_back(args[++i]);
      while (i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0) o.data.emplace_back(args[++i]);  // --data DIR [DIR...]
    } else if (a == "--mask-ratio" && has_value) {
      auto x = parse_number<float>(args[++i]);
      if (!x || !(*x > 0.0f && *x < 1.0f)) return usage_error("pretrain: --mask-ratio takes a value in (0, 1)");
      o.mae.mask_ratio = *x;
    } else if (a == "--hold-out-seed" && has_value) {
      auto n = parse_number<std::uint64_t>(args[++i]);
      if (!n) return usage_error("pretrain: --hold-out-seed takes a whole number (train's --seed)");
      o.hold_out_seed = *n;
    } else if (std::string error; training_option("pretrain", args, i, o, 1, error)) {
      if (!error.empty()) return usage_error(error);
    } else {
      return usage_error("pretrain: unknown argument " + a);
    }
  }
  if (o.out.empty()) return usage_error("pretrain: --out DIR is required");
  if (catalog == !o.data.empty()) return usage_error("pretrain: give --data DIR [DIR...] or --catalog");
  InterruptGuard guard;
  int last_epoch = 0;
  auto progress = [&](const app::FinetuneProgress& p) {
    if (json) return;
    if (p.phase == app::Phase::Training && p.epoch != last_epoch) {
      last_epoch = p.epoch;
      std::fprintf(stderr, "pretrain: epoch %d/%d started (%.1f images/s, ETA %.0f s)\n", p.epoch, p.epochs, p.images_per_second, p.eta_seconds);
    }
    if (p.phase == app::Phase::EpochDone) std::fprintf(stderr, "pretrain: epoch %d/%d loss %.4f\n", p.epoch, p.epochs, p.loss);
  };
  app::Result<app::PretrainReport> r = app::Error{app::ErrorKind::Invalid, "not run"};
  if (catalog) {
    auto c = open_catalog(global, app::Catalog::Mode::ReadOnly);
    if (!c) return kExitCatalog;
    r = app::pretrain_from_catalog(*c, o, progress, InterruptGuard::flag());
  } else {
    r = app::pretrain_from_folders(o, progress, InterruptGuard::flag());
  }
  if (!r) return report_error(r.error());
  for (const auto& s : r->skipped) std::fprintf(stderr, "pretrain: skipped %s\n", s.c_str());
  for (const auto& s : r->refused_checkpoints) std::fprintf(stderr, "pretrain: %s\n", s.c_str());
  if (json) {
    std::cout << r->report_json << '\n';
  } else {
    if (r->resumed_after_epoch > 0) std::printf("resumed after epoch %d\n", r->resumed_after_epoch);
    for (std::size_t e = 0; e < r->loss.size(); ++e) std::printf("  epoch %zu loss %.4f\n", e + 1, r->loss[e]);
    std::printf("wrote %s (a ViT backbone pre-trained on %d images, %zu skipped, %d held out as validation patients, %.0f s)\n",
                o.out.c_str(), r->images, r->skipped.size(), r->held_out, r->seconds);
  }
  return kExitOk;
}

}  // namespace hilum::cli
