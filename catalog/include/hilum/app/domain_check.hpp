// Hilum app: the verdict of the domain check on one image (how it is made: domain.hpp), and which
// of the model's populations it was taken for. Stored with each prediction in the catalog.
#pragma once

#include <optional>
#include <string>

namespace hilum::app {

// Whose calibration an image's probabilities carry: the population the model took it for (its
// name in hilum.json; empty when the model has no populations) and what chose it, the patient's
// age in the header ("age") or, without one, the image's embedding ("image"). A population
// without a calibration of its own gives the model's.
struct PopulationChoice {
  std::string population;
  std::string chosen_by;
  bool operator==(const PopulationChoice&) const = default;
};

struct DomainCheck {
  bool in_domain = true;
  std::optional<double> score;  // distance from the training films over the model's limit: above 1 is outside; empty when unavailable
  std::string reason;           // plain words: why outside, or that it looks like the training films
  bool pixel_check = false;     // whether the model carried a reference of its training films
  PopulationChoice population;  // which of the model's populations the image was taken for (stored with it)
};

}  // namespace hilum::app
