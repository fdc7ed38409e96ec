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
// converters write it) as years; empty when it is missing or malformed. The one reader of the tag:
// export's age_in_years (whole years, with the dates as a fallback) takes it from here.
[[nodiscard]] std::optional<double> years_of_age_string(const std::string& age_string);

}  // namespace hilum::app
