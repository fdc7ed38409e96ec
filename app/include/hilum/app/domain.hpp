// Hilum app: is this image within what the model was trained on? Every prediction says so, from
// the pixels (the image's embedding against the training films' reference stored with the model,
// inference/model_extras.hpp) and from the DICOM header where it helps (modality, SOP class, body
// part, patient age against the model's populations). Headers lie or are missing: they can only
// take an image out of the domain, never vouch for one whose pixels look foreign.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "hilum/app/domain_check.hpp"
#include "hilum/dicom/radiograph.hpp"
#include "hilum/inference/model_extras.hpp"

namespace hilum::app {

// The share of visibly coloured pixels (dicom::Radiograph::coloured_share) from which an image is
// no radiograph: a grey film stored in colour has none, even JPEG-compressed.
inline constexpr double kColouredShareLimit = 0.02;

// What the header says against the model's domain (empty: nothing against it). `domain` may be
// absent (the generic chest radiograph rules still apply).
[[nodiscard]] std::string header_out_of_domain(const dicom::Radiograph& header, const inference::DomainReference* domain);

// What an image's pixels say, beside its embedding, for the domain check (at the model's input size).
struct ImagePixels {
  std::vector<float> descriptor;  // inference::domain_pixels for the model's reference (empty: none)
  double coloured_share = 0.0;    // share of its pixels visibly in colour (DisplayImage)
  double corner_content = 1.0;    // inference::corner_content of its input image
};

// The verdict for one image: `embedding` is its CLS embedding (hidden values), `header` its DICOM
// header when it came from a DICOM file, `pixels` what its pixels say (may be null). Rules no
// reference decides come first: the header's, a picture in colour (coloured_share at or above
// kColouredShareLimit) and a round field (corner_content below inference::kRoundFieldLimit) are
// outside whatever else is said. The score is the largest of the embedding's and the pixel parts'
// distances over their limits (inference::pixel_score).
[[nodiscard]] DomainCheck check_domain(const inference::ModelExtras& extras, const float* embedding, int dim,
                                       const dicom::Radiograph* header, const ImagePixels* pixels = nullptr);

// The reason a picture with `coloured_share` of its pixels in colour is no radiograph; empty
// below kColouredShareLimit.
[[nodiscard]] std::string colour_out_of_domain(double coloured_share);

// The reason an image whose content leaves the corners of its box empty (inference::corner_content
// below inference::kRoundFieldLimit) is no chest film; empty otherwise.
[[nodiscard]] std::string round_field_out_of_domain(double corner_content);

// Years of a DICOM Age String: "003M" -> 0.25, "045Y" -> 45, and a bare number ("81", as some
// converters write it) as years; empty when it is missing or malformed. The one reader of the tag
// (patient_age_years below adds the dates).
[[nodiscard]] std::optional<double> years_of_age_string(const std::string& age_string);

// The patient's age in years at the film: the Age String when it reads (years_of_age_string), else
// from the birth date to `on_date` (DICOM DA, YYYYMMDD): whole calendar years (a 29 February
// birthday falls on 1 March in other years) plus the share of the year since the last birthday.
// Empty when neither gives an age in 0..130 (a missing or impossible date, a film dated before the
// birth). The one reader of a patient's age: the domain check, the population's calibration and
// export's age_in_years all take it from here.
[[nodiscard]] std::optional<double> patient_age_years(const std::string& age_string, const std::string& birth_date,
                                                      const std::string& on_date);
// Of a header: its PatientAge, else its birth date to its study date (the acquisition date when the
// study has none).
[[nodiscard]] std::optional<double> patient_age_years(const dicom::Metadata& meta);

}  // namespace hilum::app
