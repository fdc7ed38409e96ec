// Internal helpers of dicom/ (not installed, not part of the public API).
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "hilum/dicom/colour.hpp"
#include "hilum/dicom/error.hpp"

class DcmFileFormat;

namespace hilum::dicom::detail {

// Decodes one JPEG 2000 frame (J2K codestream or JP2 file) with OpenJPEG. The result holds the
// sample values (sign included) row-major; the frame must be single-component rows x columns, or,
// with components = 3 (a colour image), have three components of that size (`second`, `third`:
// the other two, after OpenJPEG's inverse colour transform when the codestream has one).
// min_side > 0: decoded at the lowest resolution level whose sides stay >= min_side (rows and
// columns of the frame say the decoded size, reduction the level).
struct J2kFrame {
  std::vector<std::int32_t> samples;
  std::vector<std::int32_t> second;
  std::vector<std::int32_t> third;
  int precision = 0;
  bool is_signed = false;
  int rows = 0;
  int columns = 0;
  int reduction = 0;
};
[[nodiscard]] Result<J2kFrame> decode_j2k(const std::uint8_t* data, std::size_t size, int rows,
                                          int columns, std::uint64_t max_pixels, int threads, int min_side = 0,
                                          int components = 1);

// How many times a w x h frame may be halved for a consumer that needs min_side pixels: the most
// halvings (at most max_levels) after which both sides, rounded up, stay >= 2 x min_side (the
// consumer's own resize does the last octave). 0 when min_side <= 0. One rule for the reduced
// JPEG 2000 levels and JPEG's DCT scaling.
[[nodiscard]] inline int reduction_levels(std::uint64_t w, std::uint64_t h, int min_side, int max_levels) {
  if (min_side <= 0) return 0;
  const auto side = 2 * static_cast<std::uint64_t>(min_side);
  int r = 0;
  while (r < max_levels && r < 16 && ((w + (2ull << r) - 1) >> (r + 1)) >= side && ((h + (2ull << r) - 1) >> (r + 1)) >= side) ++r;
  return r;
}

// Colour images (PS3.3 C.7.6.3.1.2), read as the grey of their colours (colour.hpp). The Photometric
// Interpretation's colour model; None for MONOCHROME1/2 and anything unknown.
enum class ColourModel { None, Rgb, YbrFull, YbrFull422, YbrPartial422, Palette };
[[nodiscard]] ColourModel colour_model_of(const std::string& photometric);

// How many samples `pixels` pixels of a frame hold as stored: three per pixel for RGB and
// YBR_FULL, four per pair of pixels (Y Y Cb Cr; a last odd pixel still takes a whole pair) for
// YBR_*_422, one per pixel for greyscale and palette indices.
[[nodiscard]] std::uint64_t stored_samples(ColourModel model, std::uint64_t pixels);

// The planes of `pixels` pixels from unpacked unsigned samples in the file's layout: three per
// pixel (planar = false: R G B R G B ..., true: all R, then all G, then all B) for Rgb and YbrFull,
// Y Y Cb Cr for each pair of pixels for YbrFull422 / YbrPartial422. YBR is turned into RGB with
// PS3.3's equations (rounded, clamped). Empty planes when there are fewer than stored_samples.
[[nodiscard]] dicom::ColourPlanes planes_of(const std::vector<std::int32_t>& samples, std::size_t pixels, ColourModel model, bool planar,
                                     std::int32_t max_value);

// Decodes one lossy 8-bit greyscale JPEG frame (baseline or extended DCT) at 1/2, 1/4 or 1/8 of
// its size with libjpeg's DCT scaling: the largest reduction after which both sides stay
// >= 2 x min_side (as the reduced JPEG 2000 levels). nullopt when no reduction applies or the frame
// is anything else (12-bit, lossless, colour, another size than rows x columns, corrupt data): the
// caller then decodes it in full through DCMTK, which says what is wrong.
struct ScaledJpeg {
  std::vector<std::int32_t> samples;
  int rows = 0;
  int columns = 0;
  int reduction = 0;  // the frame is 1/2^reduction of its size
};
[[nodiscard]] std::optional<ScaledJpeg> decode_jpeg_scaled(const std::uint8_t* data, std::size_t size, int rows, int columns,
                                                           int min_side);

// Runs `f` (returning a Result) and turns an exception into a Corrupt error about `path`: DCMTK 3.6.7's
// parser can throw on hostile input (std::out_of_range from DcmByteString::verify while reading a
// directory record, found by fuzzing), and the public functions promise errors as values.
template <typename F>
auto guarded(const std::filesystem::path& path, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    return Error{ErrorKind::Corrupt, "cannot parse DICOM data in " + path.string() + ": " + e.what()};
  } catch (...) {
    return Error{ErrorKind::Corrupt, "cannot parse DICOM data in " + path.string()};
  }
}

// Without leading/trailing spaces, NULs, tabs and line ends (DICOM pads values with them).
[[nodiscard]] std::string trim(std::string s);

// "1,234,567" for messages people read.
[[nodiscard]] std::string with_thousands(std::uint64_t n);

// "BasicTextSRStorage" -> "Basic Text SR"; unknown UIDs are returned as they are.
[[nodiscard]] std::string sop_class_display_name(const std::string& uid);

// High-Throughput JPEG 2000 (JPEG 2000 Part 15 in DICOM: the same codestream with a faster block
// coder). DCMTK 3.6.7 knows none of its three UIDs and reads such a data set as Explicit VR Little
// Endian with an encapsulated Pixel Data; OpenJPEG (2.5 and later) decodes the codestream.
// The name of an HTJ2K transfer syntax UID, else empty.
[[nodiscard]] std::string htj2k_name(const std::string& uid);
// The OpenJPEG this process runs with decodes HTJ2K codestreams (2.5 or later).
[[nodiscard]] bool openjpeg_decodes_htj2k();
// A transfer syntax UID DCMTK does not know (HTJ2K, a vendor's private one): DCMTK reads the data
// set by what it finds (most often Explicit VR Little Endian).
[[nodiscard]] bool unknown_to_dcmtk(const std::string& uid);
// The file's meta header states a transfer syntax DCMTK does not know and its Pixel Data is
// encapsulated: pixels DCMTK can neither decode nor write back (it would write them under the
// syntax it read the data set as). A private syntax with native pixels is not one of these.
[[nodiscard]] bool encoded_under_unknown_syntax(DcmFileFormat& ff);

// "2026-11-25T12:00:00.123Z" -> "20261125120000.123" (DICOM DT, UTC); "" when it is not that.
[[nodiscard]] std::string to_dicom_datetime(const std::string& iso);

// Now, UTC, as "2026-11-25T12:00:00Z".
[[nodiscard]] std::string now_iso();

// Writes a Part 10 file (Explicit VR Little Endian) atomically: a temporary file beside `out`,
// fsync, rename, fsync of the folder. Errors: Io.
[[nodiscard]] Result<core::Done> save_atomically(DcmFileFormat& file, const std::filesystem::path& out);

}  // namespace hilum::dicom::detail
