// Internal to inference/: JSON files of model folders, read bounded. Model folders come from
// anywhere: a JSON file is read only when it is small and shallow enough, so that neither the
// parser nor anything walking the tree recursively can be made to exhaust memory or stack.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "hilum/inference/error.hpp"

namespace hilum::inference::detail {

struct JsonLimits {
  std::uintmax_t max_bytes = 1u << 20;  // 1 MiB: Hugging Face configs are a few KB
  int max_depth = 64;                   // real configs nest 2 or 3 levels
};

// The deepest nesting of arrays and objects in `text` (brackets inside strings do not count), or
// -1 as soon as it exceeds `limit`. A linear scan that needs no stack.
[[nodiscard]] int json_depth(std::string_view text, int limit);

// Parses `text` (named `what` in messages) after checking its size and nesting depth.
[[nodiscard]] Result<nlohmann::json> parse_bounded_json(const std::string& text, const std::string& what, const JsonLimits& limits = {});

// Reads a JSON file within `limits` (a larger file is refused without being loaded); `text`
// receives its bytes as they are.
[[nodiscard]] Result<nlohmann::json> read_json(const std::filesystem::path& path, std::string* text = nullptr,
                                               const JsonLimits& limits = {});

}  // namespace hilum::inference::detail
