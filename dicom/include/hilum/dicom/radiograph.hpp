// Hilum: a projection radiograph read from DICOM, with everything its display needs.
// No Qt, no inference: plain values. See reader.hpp (file -> Radiograph) and display.hpp
// (Radiograph -> display values).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace hilum::dicom {

enum class Photometric { Monochrome1, Monochrome2 };

// VOI LUT Function (0028,1056), PS3.3 C.11.2.1.2/3.
enum class VoiFunction { Linear, LinearExact, Sigmoid };

// Presentation LUT Shape (2050,0020) as found in the image (absent means "not stated").
enum class PresentationShape { Absent, Identity, Inverse };

// A lookup table as DICOM stores one (Modality LUT Sequence or VOI LUT Sequence item).
struct LookupTable {
  std::int32_t first_mapped = 0;   // first input value mapped (LUT Descriptor, 2nd value)
  int bits_per_entry = 16;         // LUT Descriptor, 3rd value (8..16)
  std::vector<std::uint16_t> data; // LUT Data; the number of entries is data.size()
  std::string explanation;         // LUT Explanation
  std::string lut_type;            // Modality LUT Type (modality LUT only), e.g. "OD", "US"

  // Table value for an input, clamped to the first/last entry as PS3.3 requires.
  [[nodiscard]] std::uint16_t lookup(double input) const;
};

// One Window Center/Width pair with its explanation and the VOI LUT Function in force.
struct Window {
  double center = 0.0;
  double width = 1.0;
  std::string explanation;
  VoiFunction function = VoiFunction::Linear;
};

struct PixelSpacing {
  double row_mm = 0.0;    // spacing between rows (vertical), mm
  double column_mm = 0.0; // spacing between columns (horizontal), mm
  std::string source;     // "PixelSpacing", "ImagerPixelSpacing" or "NominalScannedPixelSpacing"
};

// Identifying and descriptive attributes (strings exactly as stored, trimmed).
struct Metadata {
  std::string sop_class_uid;
  std::string sop_class_name;     // e.g. "Digital X-Ray Image Storage - For Presentation"
  std::string sop_instance_uid;
  std::string study_instance_uid;
  std::string series_instance_uid;
  std::string transfer_syntax_uid;
  std::string transfer_syntax_name;
  std::string patient_id;
  std::string patient_name;
  std::string patient_birth_date;
  std::string patient_sex;
  std::string patient_age;
  std::string accession_number;
  std::string study_id;
  std::string study_date;
  std::string study_time;
  std::string study_description;
  std::string series_description;
  std::string series_number;
  std::string instance_number;
  std::string modality;           // CR, DX, ...
  std::string view_position;      // PA, AP, LL, ...
  std::string body_part_examined; // CHEST, ...
  std::string laterality;         // Image Laterality, else (Series) Laterality
  std::string acquisition_date;   // Acquisition Date, else Content Date
  std::string acquisition_time;
  std::string manufacturer;
  std::string institution_name;
  std::string burned_in_annotation; // YES / NO / empty
  std::optional<PixelSpacing> pixel_spacing;
  bool has_part10_header = true;  // false for ACR-NEMA style files without preamble/meta header
};

struct Radiograph {
  Metadata meta;

  // Geometry and pixel module. rows/columns: the decoded pixels; full_rows/full_columns: the
  // file's (they differ only when reduction > 0: JPEG 2000 or lossy 8-bit JPEG read at 1/2^reduction of its size,
  // ReadOptions::min_side; the pixel spacing in `meta` stays the file's).
  int rows = 0;
  int columns = 0;
  int full_rows = 0;
  int full_columns = 0;
  int reduction = 0;
  int bits_allocated = 16;
  int bits_stored = 16;
  int high_bit = 15;
  bool is_signed = false;  // Pixel Representation 1
  int number_of_frames = 1; // only the first frame is read
  Photometric photometric = Photometric::Monochrome2;
  // A colour image (RGB, YBR_FULL, YBR_FULL_422, YBR_PARTIAL_422, YBR_ICT, YBR_RCT, PALETTE COLOR)
  // is read as the grey of its colours, 0.299 R + 0.587 G + 0.114 B (as DCMTK's dcm2pnm +G): the
  // file's Photometric Interpretation (empty for a greyscale image), and the share of pixels whose
  // colour is visibly not grey (0 for a grey film stored in colour; a photograph's or a Doppler
  // ultrasound's are not). Such an image is MONOCHROME2 with no rescale, and one window: its grey
  // levels as they are.
  std::string colour_photometric;
  double coloured_share = 0.0;

  // Stored pixel values of the first frame, row-major, sign-extended when is_signed.
  std::vector<std::int32_t> stored;
  // Modality values (after the Modality LUT or Rescale Slope/Intercept), row-major.
  std::vector<float> modality;

  // Modality LUT stage as found in the file.
  double rescale_slope = 1.0;
  double rescale_intercept = 0.0;
  std::string rescale_type;
  std::optional<LookupTable> modality_lut;

  // VOI stage: every preset the file offers.
  std::vector<Window> windows;
  std::vector<LookupTable> voi_luts;

  // Pixel Padding Value (0028,0120): stored value marking pixels outside the image (if any).
  std::optional<std::int32_t> pixel_padding_value;

  // Presentation stage.
  PresentationShape presentation_shape = PresentationShape::Absent;

  float min_modality = 0.0f;
  float max_modality = 0.0f;

  [[nodiscard]] std::size_t pixel_count() const {
    return static_cast<std::size_t>(rows) * static_cast<std::size_t>(columns);
  }
  [[nodiscard]] float modality_at(int row, int column) const {
    return modality[static_cast<std::size_t>(row) * static_cast<std::size_t>(columns) +
                    static_cast<std::size_t>(column)];
  }
  // True when the displayed image must be inverted so that a higher P-value is brighter:
  // MONOCHROME1 (whose Presentation LUT Shape is INVERSE), or MONOCHROME2 with INVERSE.
  [[nodiscard]] bool display_inverted() const;
};

[[nodiscard]] const char* to_string(Photometric p);
[[nodiscard]] const char* to_string(VoiFunction f);

}  // namespace hilum::dicom
