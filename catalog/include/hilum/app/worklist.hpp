// Hilum app: the radiologist's worklist, read-only queries over the catalog that the workstation's
// study browser needs beyond Catalog's own listings: who labelled what, where the consensus labels
// (Catalog::consensus_labels: the policy's consensus of the readers, not any one reader's label)
// and a model's stored predictions disagree, where readers disagree with each other, which images the model is least sure about, search
// by patient or accession, and the counts of what is left. One row per image, with its patient,
// study and series, so the caller can group them as it likes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "hilum/app/catalog.hpp"

namespace hilum::app {

struct WorklistQuery {
  enum class Show {
    All,
    Unlabelled,     // no reader's label and no adjudication at all
    LabelledBy,     // `author` has at least one current label of their own on the image
    NotLabelledBy,  // `author` has no current label on the image (what is left for me)
    Disagreement,   // a consensus present/absent label on the other side of `threshold` from the model
    ReadersDisagree,  // readers gave different values for a finding that no adjudicator decided
  };
  enum class Sort {
    Patient,        // patient, study date, study, series, image (the catalog's order)
    StudyDateNewest,
    Uncertainty,    // the model's least certain images first (probability nearest `threshold`)
    Imported,       // most recently imported first
  };
  Show show = Show::All;
  Sort sort = Sort::Patient;
  std::string author;                    // for LabelledBy / NotLabelledBy (and WorklistItem::labelled_by_author)
  std::optional<std::int64_t> model_id;  // the model whose predictions count; empty = the active model
  double threshold = 0.5;                // decision threshold for Disagreement and Uncertainty
  // Only images where this finding is labelled present (consensus label), or, with no label for it,
  // predicted at or above `threshold` by the model. Case-insensitive; empty = any.
  std::string finding;
  // Case-insensitive substring of the patient ID, patient name or accession number; empty = any.
  std::string search;
  // Leave out images the model's domain check found outside what it was trained on (their
  // predictions are not suggestions).
  bool hide_out_of_domain = false;
  bool with_thumbnails = true;
};

struct WorklistItem {
  std::int64_t instance_id = 0;
  std::string sop_instance_uid;
  std::string path;          // the stored copy when there is one, else the imported path
  std::string patient_id;
  std::string patient_name;
  std::string patient_sex;
  std::string patient_age;
  std::string study_instance_uid;
  std::string study_date;
  std::string study_description;
  std::string accession_number;
  std::string series_instance_uid;
  std::string series_number;
  std::string series_description;
  std::string modality;
  std::string view_position;
  int rows = 0;
  int columns = 0;
  int current_labels = 0;           // consensus labels on the image
  int present_findings = 0;         // of which present
  bool labelled_by_author = false;  // the query's author has a current label of their own on the image
  int readers = 0;                  // readers with a current label on the image
  int reader_disagreements = 0;     // findings the readers disagree on, not adjudicated
  bool has_predictions = false;     // the model has stored predictions for the image
  // How unsure the model is about the image, in [0, 1]: 1 - min over findings of the distance of the
  // probability from the threshold, scaled so that 0 and 1 are at distance 1 (1 = some finding sits
  // exactly on the threshold, 0 = every probability is 0 or 1). Empty without predictions.
  std::optional<double> uncertainty;
  int disagreements = 0;            // findings whose consensus label and prediction disagree
  std::optional<bool> in_domain;    // the model's domain check; empty when not checked
  std::string domain_reason;
  std::vector<std::uint8_t> thumbnail_png;
};

struct WorklistCounts {
  int images = 0;
  int unlabelled = 0;
  int labelled = 0;
  int labelled_by_author = 0;
  int not_labelled_by_author = 0;
  int with_predictions = 0;
  int disagreements = 0;  // images with at least one disagreement
  int out_of_domain = 0;  // images the model found outside what it was trained on
  int readers_disagree = 0;  // images where readers disagree on a finding no adjudicator decided
};

// The images matching `query`, in its order. Errors: the catalog's own.
[[nodiscard]] Result<std::vector<WorklistItem>> worklist(Catalog& catalog, const WorklistQuery& query);

// Counts over the whole catalog (query.show, finding and search ignored) for the "left to do" line.
[[nodiscard]] Result<WorklistCounts> worklist_counts(Catalog& catalog, const WorklistQuery& query);

// Number of label events appended after event `after_id` (0 = all), and the newest event id: the
// workstation's "N new labels since the last fine-tune" trigger.
struct LabelActivity {
  std::int64_t events_after = 0;
  std::int64_t newest_event_id = 0;
};
[[nodiscard]] Result<LabelActivity> label_activity(Catalog& catalog, std::int64_t after_id);

}  // namespace hilum::app
