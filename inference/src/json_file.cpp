#include "json_file.hpp"

#include <algorithm>
#include <fstream>
#include <system_error>

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace hilum::inference::detail {
namespace {

Error invalid(std::string m) { return {ErrorKind::Invalid, std::move(m)}; }

}  // namespace

// The deepest nesting of arrays and objects in `text` (brackets inside strings do not count), or
// -1 as soon as it exceeds `limit`. A linear scan that needs no stack.
int json_depth(std::string_view text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (const char ch : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (ch == '\\') escaped = true;
      else if (ch == '"') in_string = false;
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      if (++depth > limit) return -1;
      deepest = std::max(deepest, depth);
    } else if (ch == ']' || ch == '}') {
      --depth;
    }
  }
  return deepest;
}

// Parses `text` (named `what` in messages) after checking its size and nesting depth.
Result<json> parse_bounded_json(const std::string& text, const std::string& what, const JsonLimits& limits) {
  if (text.size() > limits.max_bytes) {
    return invalid(what + " is " + std::to_string(text.size()) + " bytes; at most " + std::to_string(limits.max_bytes) + " are accepted");
  }
  if (json_depth(text, limits.max_depth) < 0) {
    return invalid(what + " is nested more than " + std::to_string(limits.max_depth) + " levels deep (arrays or objects)");
  }
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    return invalid(what + " is not valid JSON: " + e.what());
  }
}

// Reads a JSON file (bounded, see above); `text` receives its bytes as they are.
Result<json> read_json(const fs::path& path, std::string* text, const JsonLimits& limits) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{ErrorKind::NotFound, "cannot read " + path.string()};
  // Read at most one byte past the limit: a huge file is refused without being loaded (and a
  // small one does not cost a buffer of the limit's size).
  std::error_code ec;
  const std::uintmax_t size = fs::file_size(path, ec);
  std::string bytes(static_cast<std::size_t>(std::min<std::uintmax_t>(limits.max_bytes, ec ? limits.max_bytes : size) + 1), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  bytes.resize(static_cast<std::size_t>(in.gcount()));
  if (in.bad()) return Error{ErrorKind::Io, "cannot read " + path.string()};
  if (bytes.size() > limits.max_bytes) {
    return invalid(path.filename().string() + " is larger than " + std::to_string(limits.max_bytes) + " bytes (the most accepted)");
  }
  auto j = parse_bounded_json(bytes, path.filename().string(), limits);
  if (j && text != nullptr) *text = std::move(bytes);
  return j;
}

}  // namespace hilum::inference::detail
