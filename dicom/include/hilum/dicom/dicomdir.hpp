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
  std::string file_id;          // the Referenced File ID as written ("IMAGES\\IM000001")
  std::filesystem::path file;  // absolute path of the referenced file (resolved case-insensitively);
                               // empty when refused
  bool file_exists = false;
  std::string refused;         // why the reference is not followed (it leaves the DICOMDIR's folder)
};

// Lists every image record of the DICOMDIR at `path`, in the DICOMDIR's order. A Referenced File
// ID must name a file inside the DICOMDIR's folder once symbolic links are resolved: one with ".."
// or "." components, a '/' inside a component, or a path that leads outside (through a symbolic
// link, say) is refused (`refused` says why, `file` is empty, `file_exists` false) and never
// opened; the other records are listed as usual.
[[nodiscard]] Result<std::vector<DicomdirImage>> read_dicomdir(const std::filesystem::path& path);

// True when the file is a DICOMDIR (Media Storage Directory Storage), judged by its meta header.
[[nodiscard]] bool is_dicomdir(const std::filesystem::path& path);

}  // namespace hilum::dicom
