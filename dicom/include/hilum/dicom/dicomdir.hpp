// Hilum: DICOMDIR media (PS3.10/PS3.11): list what a DICOMDIR references.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "hilum/dicom/error.hpp"

namespace hilum::dicom {

// One IMAGE record of a DICOMDIR with the PATIENT / STUDY / SERIES records above it.
struct DicomdirImage {
  std::string patient_id;
  std::string patient_name;
  std::string study_instance_uid;
  std::string study_date;
  std::string study_description;
  std::string accession_number;
  std::string series_instance_uid;
  std::string series_number;
  std::string modality;
  std::string sop_instance_uid;
  std::string instance_number;
  std::filesystem::path file;  // absolute path of the referenced file (resolved case-insensitively)
  bool file_exists = false;
};

// Lists every image record of the DICOMDIR at `path`, in the DICOMDIR's order.
[[nodiscard]] Result<std::vector<DicomdirImage>> read_dicomdir(const std::filesystem::path& path);

// True when the file is a DICOMDIR (Media Storage Directory Storage), judged by its meta header.
[[nodiscard]] bool is_dicomdir(const std::filesystem::path& path);

}  // namespace hilum::dicom
