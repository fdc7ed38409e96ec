// Hilum app: the results of an image as a DICOM Structured Report (TID 1500, see
// hilum/dicom/sr.hpp): the readers' current labels (value, who, when, region) and the active
// model's probabilities (algorithm name and version), one report per image, in the image's study.
//
// UIDs are stable: the report's SOP Instance UID comes from the image and the report's content
// (the same results give the same UID, so sending twice does not make two reports in the PACS;
// changed results make a new one), its series from the study; both under 2.25 (UUID-derived).
#pragma once

#include <atomic>
#include <filesystem>
#include <string>
#include <vector>

#include "hilum/app/catalog.hpp"
#include "hilum/dicom/network.hpp"
#include "hilum/dicom/sr.hpp"

namespace hilum::app {

struct SrExportOptions {
  std::filesystem::path out_dir;     // created when missing
  std::vector<std::string> images;   // SOP Instance UIDs or paths; empty = every image with a label or a prediction
};

struct SrExportReport {
  std::vector<std::filesystem::path> files;   // written, in catalog order
  std::vector<std::pair<std::string, std::string>> failed;  // image, reason
};

// The report of one image from the catalog (no file written). NotFound: unknown image; Invalid:
// nothing to report (no label, no prediction by the active model).
[[nodiscard]] Result<dicom::sr::Report> image_report(Catalog& catalog, const std::string& image);

// Writes <out_dir>/SR_<16 hex>.dcm per image (atomically).
[[nodiscard]] Result<SrExportReport> export_reports(Catalog& catalog, const SrExportOptions& options,
                                                    const std::atomic<bool>* cancel = nullptr);

// Writes the reports into a temporary folder and sends them by C-STORE.
[[nodiscard]] Result<dicom::net::SendReport> send_reports(Catalog& catalog, const dicom::net::ScuOptions& scu,
                                                          const std::vector<std::string>& images,
                                                          const std::atomic<bool>* cancel = nullptr);

// "2.25." + the first 128 bits of SHA-256(text) as a decimal number.
[[nodiscard]] std::string uid_from_hash(const std::string& text);

}  // namespace hilum::app
