// Hilum dicom/: results out as DICOM. One Comprehensive SR per image following TID 1500
// (Measurement Report), in the image's study, that every SR viewer can show:
//
//   CONTAINER (126000, DCM, "Imaging Measurement Report")                 TID 1500
//     HAS CONCEPT MOD  Language (en-US); HAS OBS CONTEXT  Device observer "Hilum"
//     HAS CONCEPT MOD  Procedure reported (399208008, SCT, "Chest X-ray")
//     CONTAINS Image Library > Image Library Group > IMAGE (the source image)
//     CONTAINS Imaging Measurements
//       CONTAINS Measurement Group (one per finding the AI scored)           TID 1501
//         Tracking Identifier, Tracking Unique Identifier, Finding (the finding's code)
//         NUM (122157, DCM, "Probability") in UCUM "1", observed at the prediction's time,
//           HAS CONCEPT MOD  Algorithm Name / Algorithm Version               TID 4019
//     CONTAINS Qualitative Evaluations (image level)
//       CODE (the finding) = Present (52101004, SCT) / Absent (2667000, SCT) / Equivocal
//         (42425007, SCT), observed at the label's time,
//         HAS OBS CONTEXT  Observer Type = Person, Person Observer Name = the reader
//         INFERRED FROM  SCOORD (111030, DCM, "Image Region") POLYLINE, SELECTED FROM the image
//
// Findings are coded in SNOMED CT when Hilum knows the concept, else in the private scheme
// 99HILUM with the finding's name as meaning.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "hilum/dicom/error.hpp"

namespace hilum::dicom::sr {

// The image the report is about, and the patient/study it copies.
struct SourceImage {
  std::string sop_class_uid;
  std::string sop_instance_uid;
  std::string study_instance_uid;
  std::string series_instance_uid;
  std::string patient_id;
  std::string patient_name;
  std::string patient_birth_date;
  std::string patient_sex;
  std::string study_date;
  std::string study_time;
  std::string accession_number;
  std::string study_description;
};

enum class LabelValue { Present, Absent, Uncertain };

struct ReaderLabel {
  LabelValue value = LabelValue::Present;
  std::string author;     // the reader (written as a person name)
  std::string datetime;   // ISO 8601 UTC ("2026-11-25T12:00:00.123Z")
  // A region in pixel coordinates (column, row), closed polygon: a rectangle's four corners or
  // the polygon's points. Empty: no region.
  std::vector<std::pair<double, double>> region;
};

struct AiResult {
  double probability = 0.0;
  std::string algorithm_name;
  std::string algorithm_version;
  std::string datetime;   // when computed, ISO 8601 UTC; may be empty
};

struct Finding {
  std::string name;                  // e.g. "Effusion"
  std::optional<ReaderLabel> reader;
  std::optional<AiResult> ai;
};

struct Report {
  SourceImage image;
  std::vector<Finding> findings;
  std::string series_instance_uid;   // the SR's series and instance (the caller makes them stable)
  std::string sop_instance_uid;
  std::string content_datetime;      // ISO 8601 UTC; empty = now
  std::string device_uid;            // the Device Observer UID of Hilum
};

// Writes the report as a Part 10 file, atomically (temporary file, fsync, rename). Errors:
// Corrupt (a value DCMTK refuses, with which), Io.
[[nodiscard]] Result<core::Done> write_report(const Report& report, const std::filesystem::path& out);

// The code Hilum uses for a finding: (value, scheme, meaning).
struct Code {
  std::string value;
  std::string scheme;
  std::string meaning;
};
[[nodiscard]] Code finding_code(const std::string& name);

}  // namespace hilum::dicom::sr
