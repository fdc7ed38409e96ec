// Fuzz harness: the DICOM reader, the display pipeline, the DICOMDIR reader and de-identification.
// The input is one file. Invariants checked beyond "no crash, no sanitizer report":
//  - a file that reads renders in [0, 1] for every VOI choice it offers, with rows x columns values;
//  - a file that reads and is de-identified reads again, with the pseudonyms in place of its
//    patient's name and ID;
//  - a DICOMDIR never lists a referenced file outside its own folder (issue 16, defect 3).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "hilum/dicom/deidentify.hpp"
#include "hilum/dicom/dicomdir.hpp"
#include "hilum/dicom/display.hpp"
#include "hilum/dicom/reader.hpp"

namespace dcm = hilum::dicom;
namespace fs = std::filesystem;
using hilum::fuzz::require;

namespace {

void check_rendering(const dcm::Radiograph& image, const dcm::DisplayOptions& options) {
  const auto values = dcm::render_float(image, options);
  if (!values) return;  // a VOI choice the file cannot give is an error, not a crash
  require(values->size() == static_cast<std::size_t>(image.rows) * static_cast<std::size_t>(image.columns),
          "render_float: value count is not rows x columns");
  for (const float v : *values) require(v >= 0.0f && v <= 1.0f, "render_float: a display value outside [0, 1]");
}

void check_dicomdir(const fs::path& path) {
  const auto images = dcm::read_dicomdir(path);
  if (!images) return;
  const fs::path folder = fs::weakly_canonical(path.parent_path());
  for (const auto& im : *images) {
    if (!im.refused.empty()) {
      require(im.file.empty() && !im.file_exists, "a refused DICOMDIR reference still names a file");
      continue;
    }
    if (im.file.empty()) continue;
    const fs::path resolved = fs::weakly_canonical(im.file);
    const auto rel = resolved.lexically_relative(folder);
    require(!rel.empty() && *rel.begin() != "..", "a DICOMDIR reference outside its folder: " + im.file_id);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const fs::path folder = hilum::fuzz::scratch() / "dicom";
  fs::create_directories(folder);
  const fs::path in = folder / "DICOMDIR";  // the name the DICOMDIR reader expects; any file reads
  hilum::fuzz::write_file(in, std::string_view(reinterpret_cast<const char*>(data), size));

  dcm::ReadOptions options;
  options.limits.max_pixels = 4'000'000;  // keeps one input fast; the limits themselves are tested elsewhere
  options.decoder_threads = 1;
  const auto image = dcm::read_radiograph(in, options);
  if (image) {
    const auto& r = *image;
    require(r.rows > 0 && r.columns > 0, "an image without rows or columns was read");
    check_rendering(r, {});
    check_rendering(r, {dcm::VoiChoice::automatic(), false});
    check_rendering(r, {dcm::VoiChoice::min_max(), true});
    check_rendering(r, {dcm::VoiChoice::custom(100.0, 1.0), false});
    for (int i = 0; i < static_cast<int>(r.windows.size()) && i < 4; ++i) check_rendering(r, {dcm::VoiChoice::preset(i), false});
    for (int i = 0; i < static_cast<int>(r.voi_luts.size()) && i < 4; ++i) check_rendering(r, {dcm::VoiChoice::lut(i), false});
  }

  dcm::DeidentifyPlan plan;
  plan.pseudonym = [](const std::string& kind, const std::string&) -> std::string {
    if (kind == "uid") return "2.25.1234567";
    if (kind == "accession") return "ACC1";
    return kind == "patient_id" ? "FUZZ-ID" : "FUZZ^NAME";
  };
  plan.date_shift_days = 7;
  const fs::path out = folder / "deidentified.dcm";
  const auto written = dcm::write_deidentified(in, out, plan);
  if (written && image) {
    dcm::ReadOptions again = options;
    again.decode_pixels = false;
    const auto back = dcm::read_radiograph(out, again);
    require(static_cast<bool>(back), "a readable file de-identified does not read: " + (back ? std::string() : back.error().message));
    require(back->meta.patient_id == "FUZZ-ID" && back->meta.patient_name == "FUZZ^NAME",
            "the de-identified file does not carry the pseudonyms: " + back->meta.patient_id + " / " + back->meta.patient_name);
  }
  std::error_code ec;
  fs::remove(out, ec);

  check_dicomdir(in);
  return 0;
}
