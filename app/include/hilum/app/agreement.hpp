// Hilum app: agreement between the readers of a catalog, per finding: Cohen's kappa for every
// reader pair, Fleiss' kappa and Krippendorff's alpha (nominal) across the readers, and each
// reader's Cohen's kappa against the consensus of the *other* readers (leave-one-out: a consensus
// holding the reader's own label agrees with them by construction) and against the AI (the model's
// stored predictions thresholded), each with a 95% percentile interval from a bootstrap that
// resamples patients.
// Values are the nominal categories present / absent / uncertain of each reader's current label
// (Catalog::reader_labels); against the AI, a reader's "uncertain" is left out.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "hilum/app/catalog.hpp"

namespace hilum::app {

// No statistic is given from fewer images than this (a kappa from 4 images says nothing): the value
// is then null, with the reason "too few images" (stated in every output: JSON "min_images").
inline constexpr int kMinAgreementImages = 10;

struct AgreementOptions {
  std::string finding;                   // one finding (case-insensitive); empty = every labelled finding
  std::optional<std::int64_t> model_id;  // whose predictions are "the AI"; empty = the active model
  double threshold = 0.5;                // prediction >= threshold: present
  int bootstrap = 1000;                  // resamples (0: no intervals)
  std::uint64_t seed = 1;
  int min_images = kMinAgreementImages;  // fewer images: no value
};

struct AgreementValue {
  std::optional<double> value;  // empty when undefined (one category only, nothing to compare) or too few images
  std::optional<double> low, high;  // 95% interval by patient bootstrap
  int images = 0;               // images the value is computed on
  // Why there is no value: "too few images" (fewer than AgreementOptions::min_images), "undefined"
  // (e.g. every reader gave one category), or "" when there is one.
  std::string reason;
};

struct PairAgreement {
  std::string reader_a, reader_b;
  AgreementValue cohen_kappa;
};

struct ReaderAgreement {
  std::string reader;
  AgreementValue cohen_kappa;
  // Against the others' consensus only: images the reader labelled that are left out because no
  // other reader labelled the finding (and no one else adjudicated it), or because the other
  // readers reach no consensus under the policy (a tie, too few readers, a disagreement under the
  // unanimous rule). Zero against the AI.
  int no_other_reader = 0;
  int no_consensus = 0;
};

// The consensus of the readers other than `reader` on one image and finding, under the catalog's
// policy (adjudicated > unanimous > majority): another person's adjudication decides; an
// adjudication by `reader` does not count (the others' readings decide); else the value all other
// readers gave, else (majority rule) the value more than half of them gave; at least
// `policy.min_readers` other readers. `others` are the other readers' values; `adjudication` the
// image's adjudication (its author and value), if any. Empty: no consensus (`*no_other_reader` says
// whether anyone else labelled it).
[[nodiscard]] std::optional<LabelValue> others_consensus(const ConsensusPolicy& policy, const std::string& reader,
                                                         const std::vector<LabelValue>& others,
                                                         const std::optional<std::pair<std::string, LabelValue>>& adjudication,
                                                         bool* no_other_reader = nullptr);

struct FindingAgreement {
  std::string finding;
  int images = 0;    // images with at least one reader's label of the finding
  int patients = 0;
  std::vector<std::string> readers;
  std::vector<PairAgreement> cohen_kappa;
  AgreementValue fleiss_kappa;        // images every reader labelled
  AgreementValue krippendorff_alpha;  // images with at least two readers' labels
  std::vector<ReaderAgreement> vs_others_consensus;  // leave-one-out, see others_consensus
  std::vector<ReaderAgreement> vs_ai;  // empty without a model
};

struct AgreementReport {
  std::string labels;         // "each reader's current label; consensus: ..." (and that it is leave-one-out)
  std::string model_version;  // "" without a model
  double threshold = 0.5;
  int bootstrap = 0;
  std::uint64_t seed = 1;
  int min_images = kMinAgreementImages;
  std::vector<std::string> readers;
  std::vector<FindingAgreement> findings;
};

[[nodiscard]] Result<AgreementReport> agreement(Catalog& catalog, const AgreementOptions& options);

// {"labels", "model", "threshold", "bootstrap": {"resamples", "unit": "patient", "seed"}, "min_images", "readers",
//  "findings": [{"finding", "images", "patients", "readers",
//    "cohen_kappa": [{"readers": [A, B], "value", "ci95": [low, high], "images", "reason"}],
//    "fleiss_kappa": {"value", "ci95", "images"}, "krippendorff_alpha": {...},
//    "reader_vs_others_consensus": [{"reader", "cohen_kappa": {...}, "left_out": {"no_other_reader", "no_consensus"}}],
//    "reader_vs_ai": [{"reader", "cohen_kappa": {...}}]}]}
// (Until issue 15 this was "reader_vs_consensus", against a consensus that held the reader's own
// label; the name changed with the meaning, so that nothing reads the new figure as the old.)
// Undefined values are null, with "reason" saying why ("too few images", "undefined"; null when
// there is a value); numbers with 17 significant digits, whatever the locale.
[[nodiscard]] std::string agreement_json(const AgreementReport& report);

}  // namespace hilum::app
