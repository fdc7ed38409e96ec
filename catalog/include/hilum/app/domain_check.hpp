// Hilum app: the verdict of the domain check on one image (how it is made: domain.hpp). Stored
// with each prediction in the catalog.
#pragma once

#include <optional>
#include <string>

namespace hilum::app {

struct DomainCheck {
  bool in_domain = true;
  std::optional<double> score;  // distance from the training films over the model's limit: above 1 is outside; empty when unavailable
  std::string reason;           // plain words: why outside, or that it looks like the training films
  bool pixel_check = false;     // whether the model carried a reference of its training films
};

}  // namespace hilum::app
