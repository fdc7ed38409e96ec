// Internal to app/: small text helpers shared by the workflows.
#pragma once

#include <cctype>
#include <string>

namespace hilum::app {

// ASCII lower case (finding names, headers, file extensions).
inline std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace hilum::app
