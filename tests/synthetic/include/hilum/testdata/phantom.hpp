// Hilum test data: synthetic chest-radiograph phantoms written as DICOM with DCMTK (and OpenJPEG
// for JPEG 2000), in every variant the reader must handle. Used by the unit tests, the benchmarks
// and `hilum-make-phantoms OUTDIR`, so that nothing depends on ../shared on a fresh clone.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace hilum::testdata {

// How the pixel data is encoded (the transfer syntax).
enum class Encoding {
  ImplicitLittle,     // 1.2.840.10008.1.2
  ExplicitLittle,     // 1.2.840.10008.1.2.1
  ExplicitBig,        // 1.2.840.10008.1.2.2
  Deflated,           // 1.2.840.10008.1.2.1.99
  Rle,                // 1.2.840.10008.1.2.5
  JpegBaseline,       // 1.2.840.10008.1.2.4.50 (8-bit, lossy)
  JpegExtended12,     // 1.2.840.10008.1.2.4.51 (12-bit, lossy)
  JpegLosslessP14,    // 1.2.840.10008.1.2.4.57
  JpegLosslessSV1,    // 1.2.840.10008.1.2.4.70
  JpegLsLossless,     // 1.2.840.10008.1.2.4.80
  JpegLsNearLossless, // 1.2.840.10008.1.2.4.81 (max error `near_lossless_error`)
  J2kLossless,        // 1.2.840.10008.1.2.4.90
  J2kLossy,           // 1.2.840.10008.1.2.4.91
};

[[nodiscard]] const char* to_string(Encoding e);          // e.g. "explicit-little"
[[nodiscard]] const char* transfer_syntax_uid(Encoding e);
[[nodiscard]] bool is_lossless(Encoding e);
[[nodiscard]] std::vector<Encoding> all_encodings();

struct LutSpec {
  std::int32_t first_mapped = 0;
  int bits_per_entry = 16;
  std::vector<std::uint16_t> data;
  std::string explanation;
};

struct WindowSpec {
  double center = 0.0;
  double width = 1.0;
  std::string explanation;
};

struct PhantomSpec {
  int rows = 320;
  int columns = 256;
  int bits_allocated = 16;  // 8 or 16
  int bits_stored = 12;     // 8..16, <= bits_allocated
  int high_bit = 11;        // bits_stored - 1 usually; may be lower ("high bit not at the top")
  bool is_signed = false;   // Pixel Representation
  bool monochrome1 = false; // MONOCHROME1: stored values are inverted (bone = low values)
  bool collimator_border = true; // constant-valued shutter band around the exposed field
  std::uint32_t seed = 1;   // noise seed
};

// Stored pixel values (row-major) of a phantom: lungs dark, mediastinum/ribs/bone bright,
// soft tissue, noise, optional collimator border at the maximum stored value (MONOCHROME2)
// or minimum (MONOCHROME1). Values cover most of the representable range of bits_stored.
[[nodiscard]] std::vector<std::int32_t> make_phantom(const PhantomSpec& spec);

// Where the phantom's anatomy lies, for tests that check a decoded image "looks right".
// Boxes are half-open pixel ranges [row0, row1) x [col0, col1), each well inside its structure.
struct PixelBox {
  int row0 = 0;
  int col0 = 0;
  int row1 = 0;
  int col1 = 0;
};
struct PhantomLayout {
  std::int32_t min_stored = 0;  // representable range of bits_stored (signed when is_signed)
  std::int32_t max_stored = 0;
  int border_rows = 0;          // collimator band height at the top and at the bottom (0 if none)
  int border_columns = 0;       // collimator band width at the left and at the right (0 if none)
  std::int32_t border_value = 0; // max_stored (MONOCHROME2) or min_stored (MONOCHROME1)
  PixelBox exposed;             // the field inside the collimator border
  PixelBox right_lung;          // patient's right lung (image left on a PA view), dark in MONOCHROME2
  PixelBox left_lung;           // patient's left lung (image right)
  PixelBox spine;               // the thoracic spine behind the mediastinum, bright in MONOCHROME2
};
[[nodiscard]] PhantomLayout phantom_layout(const PhantomSpec& spec);

struct DicomSpec {
  PhantomSpec phantom;
  Encoding encoding = Encoding::ExplicitLittle;
  bool part10 = true;           // false: ACR-NEMA style, no preamble and no meta header
  std::string sop_class_uid = "1.2.840.10008.5.1.4.1.1.1.1"; // DX For Presentation
  std::string modality = "DX";
  double rescale_slope = 1.0;   // written when != 1 or intercept != 0
  double rescale_intercept = 0.0;
  std::optional<LutSpec> modality_lut;     // Modality LUT Sequence (replaces rescale)
  std::vector<WindowSpec> windows;         // Window Center/Width (+ Explanation)
  std::string voi_lut_function;            // "", "LINEAR", "LINEAR_EXACT", "SIGMOID"
  std::vector<LutSpec> voi_luts;           // VOI LUT Sequence items
  std::string presentation_lut_shape;      // "", "IDENTITY", "INVERSE"
  std::string photometric_override;        // e.g. "YBR_FULL_422" to write a rejected image
  int near_lossless_error = 2;             // JPEG-LS near-lossless NEAR
  int j2k_lossy_ratio = 10;                // JPEG 2000 lossy compression ratio
  // Identifying attributes (UIDs are generated when empty).
  std::string patient_name = "Phantom^Chest";
  std::string patient_id = "PHANTOM-001";
  std::string patient_birth_date = "19700101";  // empty: the attribute is written empty (type 2)
  std::string study_instance_uid;
  std::string series_instance_uid;
  std::string sop_instance_uid;
  std::string view_position = "PA";
  std::string body_part = "CHEST";
  std::string laterality;
  std::optional<std::pair<double, double>> pixel_spacing = std::make_pair(0.143, 0.143);
  std::string study_description = "Chest PA";
  std::string acquisition_date = "20260101";
  std::string acquisition_time = "101500";
  // Further identifying attributes (needed by DICOMDIR records).
  std::string study_id = "1";
  std::string accession_number = "ACC-0001";
  std::string series_number = "1";
  std::string instance_number = "1";
  std::string series_description = "Phantom";
  // Optional: changes the phantom's stored values (row-major, rows x columns) before encoding,
  // e.g. to draw a visible pattern a classifier should learn.
  std::function<void(std::vector<std::int32_t>& stored, int rows, int columns)> draw;
};

// A DicomSpec::draw that replaces the phantom with an axial CT slice of the chest in its
// reconstruction circle: an elliptic body (ribs and soft tissue), two textured lungs, the spine,
// and nothing (0) outside the circle; stored values within 12 bits.
void draw_axial_ct_slice(std::vector<std::int32_t>& stored, int rows, int columns);

// Writes the phantom of spec.phantom as a DICOM file at `path`. Returns the stored values that
// were written (for lossy encodings: the values before compression). Throws std::runtime_error
// with DCMTK's / OpenJPEG's message when writing fails (test code: failures must be loud).
// Combinations the encoders cannot write faithfully are refused (runtime_error) rather than
// silently altered: JpegBaseline needs unsigned 8/8/7 bits, JpegExtended12 unsigned 12 stored
// with high bit 11; DCMTK's JPEG and JPEG-LS encoders need high_bit = bits_stored - 1; lossy
// encodings refuse Modality/VOI LUT sequences, lossy JPEG also a non-identity rescale, and
// JPEG-LS near-lossless signed pixels; part10 = false is for uncompressed encodings only.
// The SOP Instance UID is kept by every encoder (DCMTK's lossy default would replace it).
std::vector<std::int32_t> write_dicom(const std::filesystem::path& path, const DicomSpec& spec);

// A colour image (Secondary Capture, 8 bits per sample) for the reader's colour paths: RGB or
// YBR_FULL (interleaved, or planar), YBR_FULL_422 (uncompressed), or PALETTE COLOR (the image's
// distinct colours, at most 256, in 16-bit tables); native, or RLE Lossless (RGB, YBR_FULL,
// palette). `colour` gives each pixel's R, G, B; YBR is computed from them with PS3.3's equations,
// rounded, and YBR_FULL_422 averages Cb and Cr over each pair of pixels. Throws like write_dicom.
struct ColourDicomSpec {
  std::string photometric = "RGB";
  bool planar = false;
  bool rle = false;
  int rows = 48;
  int columns = 64;  // even for YBR_FULL_422
  std::string modality = "OT";
  std::string body_part;
  std::function<std::array<std::uint8_t, 3>(int row, int column)> colour;
};
void write_colour_dicom(const std::filesystem::path& path, const ColourDicomSpec& spec);

// Files the reader must refuse, each with a clear error.
void write_basic_text_sr(const std::filesystem::path& path);     // "not an image: Basic Text SR"
void write_truncated(const std::filesystem::path& path, std::uint64_t keep_pixel_bytes); // native pixel data cut short
void write_not_dicom(const std::filesystem::path& path);         // a text file
void write_absurd_dimensions(const std::filesystem::path& path); // Rows/Columns 65535 with tiny pixel data

// A DICOM media folder: DICOMDIR plus referenced files in uppercase 8-character paths
// (e.g. DIR/IMAGES/IM000001), two patients with one study and one series each, `per_series`
// images each. Returns the SOP Instance UIDs of the images in DICOMDIR order.
std::vector<std::string> write_dicomdir_media(const std::filesystem::path& folder, int per_series = 2);

// Rewrites the Referenced File ID of the `image`-th IMAGE record (0-based, DICOMDIR order) of an
// existing DICOMDIR, as a hostile or broken medium would carry it (e.g. "..\\..\\etc\\passwd").
void set_dicomdir_file_id(const std::filesystem::path& dicomdir, std::size_t image, const std::string& file_id);

}  // namespace hilum::testdata
