// hilum-cli catalog migrate --to URL: moves the catalog (--db / HILUM_DB, usually an SQLite file)
// into a new one, usually on PostgreSQL, and proves that nothing was lost: rows per table and a
// checksum of the label events, read back on both sides.
#include <cstdio>
#include <iostream>

#include "commands.hpp"
#include "hilum/app/json.hpp"

namespace hilum::cli {

int cmd_catalog(const Global& global, const Args& args) {
  if (args.empty() || args[0] != "migrate") return usage_error("catalog: migrate --to URL");
  std::optional<std::string> to;
  bool json = false;
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--json") {
      json = true;
    } else if (args[i] == "--to") {
      if (i + 1 >= args.size()) return usage_error("catalog migrate: --to takes the new catalog (postgresql://... or a file)");
      to = args[++i];
    } else {
      return usage_error("catalog migrate: unexpected " + args[i]);
    }
  }
  if (!to) return usage_error("catalog migrate: --to URL is required (e.g. postgresql://host/hilum)");
  const auto from_path = global.db.empty() ? app::default_catalog_path() : global.db;
  // The source only needs reading; the target is created (never given the built-in model first:
  // the source's models come over with their ids).
  auto from = app::Catalog::open(from_path, app::Catalog::Mode::ReadOnly);
  if (!from) return report_error(from.error());
  auto target = app::Catalog::open(*to, app::Catalog::Mode::ReadWriteCreate);
  if (!target) return report_error(target.error());
  auto report = from->copy_to(*target);
  if (!report) return report_error(report.error());
  const bool same = report->identical();
  if (json) {
    app::JsonObject rows;
    for (std::size_t k = 0; k < report->target_rows.size(); ++k) rows.add(report->target_rows[k].first, report->target_rows[k].second);
    std::cout << app::JsonObject()
                     .add("from", from_path.string())
                     .add("identical", same)
                     .add("label_events_sha256", report->target_checksum)
                     .add("source_label_events_sha256", report->source_checksum)
                     .add_raw("rows", rows.str())
                     .str()
              << '\n';
  } else {
    for (std::size_t k = 0; k < report->source_rows.size(); ++k) {
      const auto& [table, n] = report->source_rows[k];
      const std::int64_t m = k < report->target_rows.size() ? report->target_rows[k].second : -1;
      std::printf("%-20s %10lld -> %lld%s\n", table.c_str(), static_cast<long long>(n), static_cast<long long>(m), n == m ? "" : "  DIFFERS");
    }
    std::printf("label events SHA-256: %s (source) / %s (new catalog)\n", report->source_checksum.c_str(), report->target_checksum.c_str());
    std::printf("%s\n", same ? "identical: the catalog was moved and nothing was lost" : "NOT identical: see the lines above");
  }
  if (!same) std::fprintf(stderr, "hilum-cli: the new catalog differs from the old one; keep using the old one\n");
  return same ? kExitOk : kExitCatalog;
}

}  // namespace hilum::cli
