#include "hilum/dicom/radiograph.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcuid.h>

#include "hilum/dicom/error.hpp"
#include "internal.hpp"

namespace hilum::dicom {

std::uint16_t LookupTable::lookup(double input) const {
  if (data.empty()) return 0;
  const double index = std::floor(input) - first_mapped;
  if (index <= 0.0) return data.front();
  if (index >= static_cast<double>(data.size() - 1)) return data.back();
  return data[static_cast<std::size_t>(index)];
}

bool Radiograph::display_inverted() const {
  if (photometric == Photometric::Monochrome1) return true;
  return presentation_shape == PresentationShape::Inverse;
}

const char* to_string(Photometric p) {
  return p == Photometric::Monochrome1 ? "MONOCHROME1" : "MONOCHROME2";
}

const char* to_string(VoiFunction f) {
  switch (f) {
    case VoiFunction::Linear: return "LINEAR";
    case VoiFunction::LinearExact: return "LINEAR_EXACT";
    case VoiFunction::Sigmoid: return "SIGMOID";
  }
  return "LINEAR";
}

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::FileNotFound: return "file-not-found";
    case ErrorKind::NotDicom: return "not-dicom";
    case ErrorKind::NotAnImage: return "not-an-image";
    case ErrorKind::NotARadiograph: return "not-a-radiograph";
    case ErrorKind::Unsupported: return "unsupported";
    case ErrorKind::Truncated: return "truncated";
    case ErrorKind::Corrupt: return "corrupt";
    case ErrorKind::TooLarge: return "too-large";
    case ErrorKind::DecodeFailed: return "decode-failed";
    case ErrorKind::Network: return "network";
    case ErrorKind::Refused: return "refused";
    case ErrorKind::Io: return "io";
    case ErrorKind::Cancelled: return "cancelled";
  }
  return "error";
}

namespace detail {

std::string trim(std::string s) {
  const auto not_space = [](unsigned char c) { return c != ' ' && c != '\0' && c != '\t' && c != '\r' && c != '\n'; };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

std::string with_thousands(std::uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  const std::size_t len = digits.size();
  for (std::size_t i = 0; i < len; ++i) {
    out.push_back(digits[i]);
    const std::size_t left = len - i - 1;
    if (left > 0 && left % 3 == 0) out.push_back(',');
  }
  return out;
}

std::string sop_class_display_name(const std::string& uid) {
  if (uid.empty()) return {};
  const char* name = dcmFindNameOfUID(uid.c_str(), nullptr);
  if (name == nullptr) return uid;
  // DCMTK's names are CamelCase keywords ("BasicTextSRStorage"): split them into words.
  std::string in(name);
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    const bool upper = std::isupper(static_cast<unsigned char>(c)) != 0;
    if (i > 0 && upper) {
      const char prev = in[i - 1];
      const bool prev_lower = std::islower(static_cast<unsigned char>(prev)) != 0 || std::isdigit(static_cast<unsigned char>(prev)) != 0;
      const bool next_lower = i + 1 < in.size() && std::islower(static_cast<unsigned char>(in[i + 1])) != 0;
      if (prev_lower || (std::isupper(static_cast<unsigned char>(prev)) != 0 && next_lower)) out.push_back(' ');
    }
    out.push_back(c);
  }
  const std::string suffix = " Storage";
  if (out.size() > suffix.size() && out.compare(out.size() - suffix.size(), suffix.size(), suffix) == 0) {
    out.erase(out.size() - suffix.size());
  }
  auto pos = out.find(" Storage ");
  if (pos != std::string::npos) out.replace(pos, 9, " - ");
  // The standard writes "X-Ray" and "3D" where the keywords cannot.
  for (pos = out.find("X Ray"); pos != std::string::npos; pos = out.find("X Ray", pos)) out.replace(pos, 5, "X-Ray");
  return out;
}

}  // namespace detail
}  // namespace hilum::dicom
