// Hilum dicom/: the attention map as a DICOM object that every viewer shows. A Secondary Capture
// Image (1.2.840.10008.5.1.4.1.1.7), RGB 8-bit, uncompressed (Explicit VR Little Endian): the
// colour map blended over the film as the viewer's default rendering shows it.
//
// Why not a Parametric Map (float): few viewers and PACS display one (OHIF and Weasis do not show it
// as an image, Orthanc's viewer neither), and a chest film's reader wants to see where the model
// looked over the film, not a float grid to colour by hand. The map's values themselves stay in
// Hilum (and its grid is a 14 x 14 patch map: no finer quantity is lost).
//
// The object (one per image and finding):
//   Patient, General Study, Patient Study: copied from the source file (converted to UTF-8)
//   General Series: a new series in the source's study, Modality OT, Series Number 9902
//   General Image: Image Type DERIVED\SECONDARY, Derivation Description and Image Comments naming
//     the method, finding, probability and the model's name and version; Source Image Sequence
//     referencing the source SOP instance (purpose 121322 "Source image for image processing
//     operation"); Burned In Annotation as the source says (the map adds no text), Lossy Image
//     Compression 01 kept when the source had it
//   SC Equipment: Conversion Type WSD; Image Pixel: 3 samples, RGB, planar 0, 8 bits
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "hilum/dicom/error.hpp"

namespace hilum::dicom::sc {

inline constexpr const char* kSecondaryCaptureSopClass = "1.2.840.10008.5.1.4.1.1.7";

struct AttentionMap {
  std::filesystem::path source_file;  // the image the map is about (a DICOM file)
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> rgb;  // row-major, 3 bytes per pixel
  std::string finding;            // the finding the map explains; empty: every finding (rollout)
  double probability = -1.0;      // the AI's probability for it; < 0: not given
  std::string method;             // e.g. "class-specific relevance (Chefer et al. 2021)"
  std::string algorithm_name;
  std::string algorithm_version;
  std::string series_instance_uid;  // the new series and instance (the caller makes them stable)
  std::string sop_instance_uid;
  std::string content_datetime;  // ISO 8601 UTC ("2026-11-25T12:00:00Z"); empty = now
};

// What the object says in Derivation Description (and Image Comments); numbers locale-independent.
[[nodiscard]] std::string derivation_description(const AttentionMap& map);

// Writes the map as a Part 10 file, atomically (temporary file, fsync, rename). Errors:
// FileNotFound / NotDicom / Corrupt (the source cannot be read or has no SOP/Study UID, a value
// DCMTK refuses), Corrupt (pixels that do not match width x height), Io.
[[nodiscard]] Result<core::Done> write_attention_map(const AttentionMap& map, const std::filesystem::path& out);

}  // namespace hilum::dicom::sc
