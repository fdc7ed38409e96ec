#include "hilum/app/domain.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>

#include "hilum/core/numbers.hpp"
#include "text.hpp"

namespace hilum::app {
namespace {

std::string upper_trimmed(std::string s) {
  s = trim(s);
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// Modalities that are never a chest radiograph, with what they are.
const char* foreign_modality(const std::string& m) {
  static const std::array<std::pair<const char*, const char*>, 22> table{{
      {"CT", "computed tomography"}, {"MR", "magnetic resonance"}, {"US", "ultrasound"}, {"MG", "mammography"},
      {"NM", "nuclear medicine"}, {"PT", "PET"}, {"XA", "angiography"}, {"RF", "fluoroscopy"}, {"IO", "intra-oral radiography"},
      {"PX", "panoramic dental radiography"}, {"ES", "endoscopy"}, {"XC", "external-camera photography"}, {"OP", "ophthalmic photography"},
      {"SM", "slide microscopy"}, {"GM", "general microscopy"}, {"OPT", "ophthalmic tomography"}, {"IVUS", "intravascular ultrasound"},
      {"IVOCT", "intravascular OCT"}, {"BMD", "bone densitometry"}, {"DG", "diaphanography"}, {"TG", "thermography"}, {"ECG", "electrocardiography"},
  }};
  for (const auto& [code, name] : table) {
    if (m == code) return name;
  }
  return nullptr;
}

bool chest_body_part(const std::string& part) {
  for (const char* p : {"CHEST", "THORAX", "LUNG", "LUNGS", "CHEST_TO_ABDOMEN", "CHESTABDOMEN", "RIB", "RIBS", "PORT CHEST", "TORSO"}) {
    if (part == p) return true;
  }
  return part.find("CHEST") != std::string::npos || part.find("THORA") != std::string::npos || part.find("LUNG") != std::string::npos;
}

std::string format_years(double years) {
  if (years < 1.0) return core::format_fixed(years * 12.0, 0) + " months";
  return core::format_fixed(years, years < 10.0 ? 1 : 0) + " years";
}

}  // namespace

std::optional<double> years_of_age_string(const std::string& age_string) {
  const std::string s = upper_trimmed(age_string);
  if (s.empty()) return std::nullopt;
  // Without its unit ("81", as some converters write it) the number is years: no other reading is
  // plausible for a value a person's age can have.
  if (s.size() <= 3 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    const int years = std::stoi(s);
    return years <= 130 ? std::optional<double>(years) : std::nullopt;
  }
  if (s.size() < 2) return std::nullopt;
  const char unit = s.back();
  int value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size() - 1, value);
  if (ec != std::errc{} || end != s.data() + s.size() - 1 || value < 0) return std::nullopt;
  switch (unit) {
    case 'Y': return value;
    case 'M': return value / 12.0;
    case 'W': return value * 7.0 / 365.25;
    case 'D': return value / 365.25;
    default: return std::nullopt;
  }
}

namespace {

// A DICOM DA (YYYYMMDD) as a calendar date; empty when it is not one.
std::optional<std::chrono::year_month_day> dicom_date(const std::string& text) {
  const std::string s = upper_trimmed(text);
  if (s.size() != 8 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  const std::chrono::year_month_day d{std::chrono::year{std::stoi(s.substr(0, 4))}, std::chrono::month{static_cast<unsigned>(std::stoi(s.substr(4, 2)))},
                                      std::chrono::day{static_cast<unsigned>(std::stoi(s.substr(6, 2)))}};
  if (!d.ok()) return std::nullopt;
  return d;
}

}  // namespace

std::optional<double> patient_age_years(const std::string& age_string, const std::string& birth_date, const std::string& on_date) {
  if (const auto years = years_of_age_string(age_string)) return years;
  const auto birth = dicom_date(birth_date);
  const auto on = dicom_date(on_date);
  if (!birth || !on) return std::nullopt;
  using std::chrono::sys_days;
  // The birthday in the year `years` after the birth (1 March for a 29 February birth in a common year).
  const auto birthday = [&](int years) {
    const std::chrono::year y = birth->year() + std::chrono::years{years};
    const std::chrono::year_month_day d{y, birth->month(), birth->day()};
    return sys_days(d.ok() ? d : std::chrono::year_month_day{y, std::chrono::March, std::chrono::day{1}});
  };
  const sys_days day{*on};
  if (day < sys_days{*birth}) return std::nullopt;
  int years = static_cast<int>(on->year()) - static_cast<int>(birth->year());
  if (day < birthday(years)) --years;
  const auto last = birthday(years), next = birthday(years + 1);
  const double age = years + static_cast<double>((day - last).count()) / static_cast<double>((next - last).count());
  return age <= 130.0 ? std::optional<double>(age) : std::nullopt;
}

std::optional<double> patient_age_years(const dicom::Metadata& meta) {
  return patient_age_years(meta.patient_age, meta.patient_birth_date, meta.study_date.empty() ? meta.acquisition_date : meta.study_date);
}

std::string header_out_of_domain(const dicom::Radiograph& header, const inference::DomainReference* domain) {
  std::vector<std::string> problems;
  const std::string modality = upper_trimmed(header.meta.modality);
  if (const char* what = foreign_modality(modality)) {
    problems.push_back("the header says modality " + modality + " (" + what + "), not a chest radiograph");
  }
  const std::string sop = header.meta.sop_class_uid;
  if (sop.rfind("1.2.840.10008.5.1.4.1.1.1.2", 0) == 0) problems.push_back("the header says it is a mammogram (" + header.meta.sop_class_name + ")");
  if (sop.rfind("1.2.840.10008.5.1.4.1.1.1.3", 0) == 0) problems.push_back("the header says it is an intra-oral radiograph");
  const std::string part = upper_trimmed(header.meta.body_part_examined);
  if (!part.empty() && !chest_body_part(part)) problems.push_back("the header says body part " + part + ", not the chest");
  if (header.number_of_frames > 1) problems.push_back("a multi-frame image (" + std::to_string(header.number_of_frames) + " frames), not a radiograph");
  if (domain != nullptr && !domain->populations.empty()) {
    double youngest = domain->populations.front().min_age_years;
    for (const auto& p : domain->populations) youngest = std::min(youngest, p.min_age_years);
    const auto age = patient_age_years(header.meta);
    if (age && youngest > 0.0 && *age < youngest) {
      problems.push_back("the patient is " + format_years(*age) + " old, younger than any training film (" + format_years(youngest) + ")");
    }
  }
  std::string out;
  for (const auto& p : problems) out += (out.empty() ? "" : "; ") + p;
  return out;
}

std::string colour_out_of_domain(double coloured_share) {
  // A chest film sent in colour (a secondary capture, an RGB PNG) is grey in every pixel; an
  // ultrasound with colour Doppler, a photograph or an annotated figure is not.
  if (!(coloured_share >= kColouredShareLimit)) return {};
  return "a colour image (" + core::format_fixed(100.0 * coloured_share, coloured_share < 0.1 ? 1 : 0) +
         "% of its pixels in colour), not a radiograph";
}

std::string round_field_out_of_domain(double corner_content) {
  // A chest film's content reaches into the corners of its box (shoulders, abdomen, the detector's
  // edge); a cross-section on its empty background, the reconstruction circle of a CT or a fundus
  // photograph does not.
  if (!(corner_content < inference::kRoundFieldLimit)) return {};
  return "a round field on an empty background, like a CT or MR cross-section or a fundus photograph, not a chest film (the corners "
         "around it " + core::format_fixed(100.0 * corner_content, 1) + "% filled)";
}

DomainCheck check_domain(const inference::ModelExtras& extras, const float* embedding, int dim, const dicom::Radiograph* header,
                         const ImagePixels* image_pixels) {
  DomainCheck out;
  const ImagePixels none;
  const ImagePixels& said = image_pixels != nullptr ? *image_pixels : none;
  const inference::DomainReference* domain = extras.domain ? &*extras.domain : nullptr;
  // The rules an image cannot pass whatever the reference says of its pixels: its header's, its
  // colour's and its shape's.
  std::string rule_problems = header != nullptr ? header_out_of_domain(*header, domain) : std::string();
  if (const std::string colour = colour_out_of_domain(said.coloured_share); !colour.empty()) {
    rule_problems += (rule_problems.empty() ? "" : "; ") + colour;
  }
  if (const std::string round = round_field_out_of_domain(said.corner_content); !round.empty()) {
    rule_problems += (rule_problems.empty() ? "" : "; ") + round;
  }
  std::string pixels;
  bool pixels_ok = true;
  if (domain != nullptr && embedding != nullptr) {
    out.pixel_check = true;
    // Each part of the reference over its own limit, so that the reason can say which one the
    // image is unlike (the model's features of it, its layout, its grey levels and edges).
    // A reference may have no embedding part (features "none": the pixel parts alone).
    const double features =
        domain->embedding.mean.size() > 0 ? inference::distance(domain->embedding, embedding, dim) / domain->embedding.threshold : 0.0;
    inference::PixelScores parts;
    if (!said.descriptor.empty()) parts = inference::pixel_scores(*domain, said.descriptor);
    const double score = std::max({features, parts.thumbnail, parts.statistics});
    out.score = std::isfinite(score) ? score : 1e9;
    pixels_ok = *out.score <= 1.0;
    if (pixels_ok) {
      pixels = "the image looks like the training films (domain score " + core::format_fixed(*out.score, 2) + "; above 1 is outside)";
    } else {
      std::string unlike;
      auto name = [&](double part, const char* what) {
        if (part > 1.0) unlike += std::string(unlike.empty() ? "" : ", ") + what + " " + (std::isfinite(part) ? core::format_fixed(part, 2) : "inf");
      };
      name(features, "the model's features of it");
      name(parts.thumbnail, "its layout");
      name(parts.statistics, "its grey levels and edges");
      pixels = "the image does not look like the chest films the model was trained on (domain score " + core::format_fixed(*out.score, 2) +
               "; above 1 is outside; unlike them in " + unlike + ")";
    }
  } else {
    pixels = "the model carries no reference of its training films, so the pixel check is unavailable";
  }
  out.in_domain = pixels_ok && rule_problems.empty();
  if (out.in_domain) {
    out.reason = pixels;
  } else if (!pixels_ok && !rule_problems.empty()) {
    // The rule first: "the header says modality MR" or "a round field" is plainer than a score.
    out.reason = rule_problems + "; " + pixels;
  } else {
    out.reason = pixels_ok ? rule_problems : pixels;
  }
  return out;
}

}  // namespace hilum::app
