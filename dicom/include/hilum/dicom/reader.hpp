// Hilum: reading DICOM files into Radiograph values.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "hilum/dicom/error.hpp"
#include "hilum/dicom/radiograph.hpp"

namespace hilum::dicom {

// Limits that keep a hostile or broken file from making us allocate without bound.
struct ReadLimits {
  int max_rows = 16384;
  int max_columns = 16384;
  std::uint64_t max_pixels = 100'000'000;  // 100 megapixels (a 43 cm detector at 0.05 mm)
};

struct ReadOptions {
  ReadLimits limits;
  bool decode_pixels = true;  // false: attributes only (fast "info" and import scans)
  int decoder_threads = 0;    // JPEG 2000 decoder threads; 0 = one per core (batch import: 1)
  // > 0: the consumer needs no more than this many pixels on the shorter side (a model input, a
  // thumbnail). Lossless JPEG 2000 is then decoded at the lowest resolution level (OpenJPEG's
  // reduce factor) whose both sides are still at least 2 x min_side: each level halves the sides,
  // so only a film at least four times that size is reduced. Radiograph::reduction says by how
  // much; rows and columns are the decoded size, full_rows/full_columns the file's. Lossy 8-bit
  // JPEG (baseline, extended) is decoded at 1/2, 1/4 or 1/8 scale by the same rule (libjpeg's DCT
  // scaling). Other codecs (lossy JPEG 2000, 12-bit and lossless JPEG, JPEG-LS, RLE) decode in full.
  int min_side = 0;
};

// Reads one file: Part 10 or ACR-NEMA style (no preamble/meta header), any transfer syntax
// listed in supported_transfer_syntaxes(). Never throws for bad input: the Error says why.
[[nodiscard]] Result<Radiograph> read_radiograph(const std::filesystem::path& path,
                                                 const ReadOptions& options = {});

struct TransferSyntaxInfo {
  std::string uid;
  std::string name;
};
// Every transfer syntax this build can decode.
[[nodiscard]] std::vector<TransferSyntaxInfo> supported_transfer_syntaxes();

// Registers DCMTK's codecs (RLE, JPEG, JPEG-LS). Called by the reader on first use; safe to call
// from several threads and more than once.
void register_codecs();

}  // namespace hilum::dicom
