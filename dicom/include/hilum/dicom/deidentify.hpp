// Hilum: writing a de-identified copy of a DICOM file, following DICOM PS3.15 Annex E, the Basic
// Application Level Confidentiality Profile (Table E.1-1), with the Retain Patient
// Characteristics Option (sex, age, size, weight kept) and, when dates are shifted, the Retain
// Longitudinal Temporal Information with Modified Dates Option.
//
// What happens to the data set (at every nesting level, sequences included):
// - Patient Name and Patient ID: replaced through plan.pseudonym("patient_name" / "patient_id",
//   original), and added (pseudonym of an empty original) when the file has none; Accession Number through plan.pseudonym("accession", original) (zero length when the
//   mapping returns nothing or more than 16 characters); Patient Birth Date, Referring Physician's
//   Name, Study ID: zero length. Every other patient attribute (other IDs and names, address,
//   telephone, birth time, ethnic group, occupation, history, comments, ...) is removed.
// - Every UID (Study, Series, SOP Instance, Frame of Reference, Referenced SOP Instance UIDs inside
//   sequences, Device UID, Irradiation Event UID, ...) is replaced through
//   plan.pseudonym("uid", original), except class and transfer syntax UIDs and the standard's own
//   registry UIDs (1.2.840.10008.*). The meta header is rebuilt from the data set (Media Storage SOP
//   Instance UID = the new SOP Instance UID; no Source AE Title, no private meta information).
// - Dates (DA, and the date part of DT): shifted by plan.date_shift_days, or zero length when no
//   shift is given; times (TM) are kept with a shift and zero length without one; time zone
//   offsets are removed.
// - Removed: private attributes (odd groups), overlays (60xx) and curves (50xx), the Icon Image
//   Sequence, institution name/address/department, station name, physicians and operators (every
//   person name other than the patient's), device serial numbers and other device/plate/cassette/
//   detector IDs, software versions, protocol name, study/series descriptions, all comments and
//   other free text (LT, ST, UT, UC), AE titles, URIs, attributes of unknown type (UN), visit,
//   scheduling and request attributes (groups 0032, 0038, 0040 except a zero-length Acquisition
//   Context Sequence), digital signatures, Original Attributes Sequence, graphic annotations.
// - Kept: Patient Sex, Age, Size, Weight, the whole Image Pixel module (pixel data unchanged; bits
//   outside Bits Stored of native pixel data are cleared, since retired overlays can hide there),
//   Modality LUT / Rescale, VOI LUT / windows, Presentation LUT Shape, View Position, Body Part
//   Examined, Laterality, Pixel Spacing and Imager Pixel Spacing, Manufacturer and model.
// - Added: Patient Identity Removed = YES, De-identification Method, De-identification Method Code
//   Sequence (113100 Basic Application Confidentiality Profile, 113108 Retain Patient
//   Characteristics Option, and 113107 Retain Longitudinal Temporal Information Modified Dates
//   Option when dates are shifted), Longitudinal Temporal Information Modified = MODIFIED/REMOVED.
//
// Images whose pixels may show the patient's identity (Burned In Annotation YES, or Burned In
// Annotation absent in a Secondary Capture image) are refused unless plan.allow_burned_in.
//
// The output is written in the input's transfer syntax (compressed pixel data is copied as it is)
// to a temporary file in the output's folder, flushed to disk and renamed over `out`: a crash never
// leaves a half-written file. Nothing is written when an error is returned.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "hilum/core/expected.hpp"
#include "hilum/dicom/error.hpp"

namespace hilum::dicom {

struct DeidentifyPlan {
  // The consistent replacement of an identifying value, by kind:
  //   "uid"          -> a valid UID (digits and dots, at most 64 characters), the same for the same original
  //   "patient_id"   -> at most 64 characters (LO); also called when the original is empty
  //   "patient_name" -> at most 64 characters (PN); also called when the original is empty
  //   "accession"    -> at most 16 characters (SH), or empty for zero length
  // Required: write_deidentified fails without it.
  std::function<std::string(const std::string& kind, const std::string& original)> pseudonym;
  // Days added to every date (negative: earlier). No value: dates and times are emptied.
  std::optional<int> date_shift_days;
  // Write images that may carry burned-in identifying text anyway (the caller cleans the pixels).
  bool allow_burned_in = false;
};

// True when the pixels may carry burned-in patient identity: Burned In Annotation (0028,0301)
// is YES, or it is absent (empty) and the SOP Class is a Secondary Capture one.
// A syntactically valid UID: digits and dots, at most 64 characters, no empty component and no
// leading zero in a component of more than one digit (PS3.5 9.1).
[[nodiscard]] bool is_valid_uid(const std::string& uid);

[[nodiscard]] bool may_have_burned_in_annotation(const std::string& sop_class_uid,
                                                 const std::string& burned_in_annotation);

// Writes a de-identified copy of `in` at `out` (see above). `out` may not be `in`.
// Errors: FileNotFound (missing input, output folder not writable), NotDicom / Corrupt /
// Truncated (input unreadable), Unsupported (burned-in annotation refused, or a pseudonym that does
// not fit its attribute, with the reason).
[[nodiscard]] Result<core::Done> write_deidentified(const std::filesystem::path& in,
                                                    const std::filesystem::path& out,
                                                    const DeidentifyPlan& plan);

// A date (YYYYMMDD, or the old YYYY.MM.DD) shifted by `days`; nothing when it is not a valid date.
[[nodiscard]] std::optional<std::string> shift_dicom_date(const std::string& date, int days);

}  // namespace hilum::dicom
