// Hilum app: the results of an image as a DICOM Structured Report (TID 1500, see
// hilum/dicom/sr.hpp): the readers' current labels (value, who, when, region) and the active
// model's probabilities (algorithm name and version), one report per image, in the image's study.
//
// UIDs are stable: the report's SOP Instance UID comes from the image and the report's content
// (the same results give the same UID, so sending twice does not make two reports in the PACS;
// changed results make a new one), its series from the study; both under 2.25 (UUID-derived).
//
// With attention_maps, each image the active model scored also gets its attention map as a DICOM
// Secondary Capture (hilum/dicom/secondary_capture.hpp): the class-specific map (Chefer et al.) of
// its most probable finding, blended over the film, in the image's study, in a series of its own;
// its UID comes from the image, the model version, the finding and the method (the same map is
// the same object).
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "hilum/app/catalog.hpp"
#include "hilum/app/classify.hpp"
#include "hilum/dicom/network.hpp"
#include "hilum/dicom/secondary_capture.hpp"
#include "hilum/dicom/sr.hpp"

namespace hilum::app {

struct SrExportOptions {
  std::filesystem::path out_dir;     // created when missing
  std::vector<std::string> images;   // SOP Instance UIDs or paths; empty = every image with a label or a prediction
  bool attention_maps = false;       // also each scored image's attention map (a Secondary Capture)
  int map_max_side = 2048;           // the map's longest side (the film's size when smaller)
  const LoadedModel* model = nullptr;  // the active model, already loaded (else loaded when a map needs it)
};

struct SrExportReport {
  std::vector<std::filesystem::path> files;   // written, in catalog order: each image's report, then its map
  std::size_t reports = 0;
  std::size_t maps = 0;
  std::vector<std::pair<std::string, std::string>> failed;  // image, reason
};

// The report of one image from the catalog (no file written). NotFound: unknown image; Invalid:
// nothing to report (no label, no prediction by the active model).
[[nodiscard]] Result<dicom::sr::Report> image_report(Catalog& catalog, const std::string& image);

// The attention map object of one image (no file written): the class-specific map of the active
// model's most probable stored finding for the image. NotFound: unknown image; Invalid: the model
// has not scored the image; errors of heatmap().
[[nodiscard]] Result<dicom::sc::AttentionMap> image_attention_map(Catalog& catalog, const LoadedModel& model, const std::string& image,
                                                                  int max_side = 2048);

// Writes <out_dir>/SR_<16 hex>.dcm per image (atomically), and SC_<16 hex>.dcm with attention_maps.
// `progress` before each image (done, total) and at the end.
using ReportProgressFn = std::function<void(std::size_t done, std::size_t total)>;
[[nodiscard]] Result<SrExportReport> export_reports(Catalog& catalog, const SrExportOptions& options,
                                                    const std::atomic<bool>* cancel = nullptr, const ReportProgressFn& progress = {});

// What send_results is doing: "writing" (reports and maps, done/total images) then "sending"
// (done/total files).
using SendResultsProgress = std::function<void(const std::string& stage, std::size_t done, std::size_t total)>;

// Writes the reports (and maps, with what.attention_maps) of what.images (empty: every image) into
// a temporary folder (what.out_dir is not used) and sends them by C-STORE on one association. A
// file that cannot be written is in `failed` with its image, as is one the peer refused (with its
// status); a peer that cannot be reached, rejects the association or breaks it off is an Error.
[[nodiscard]] Result<dicom::net::SendReport> send_reports(Catalog& catalog, const dicom::net::ScuOptions& scu,
                                                          const SrExportOptions& what, const std::atomic<bool>* cancel = nullptr,
                                                          const SendResultsProgress& progress = {});

// "2.25." + the first 128 bits of SHA-256(text) as a decimal number.
[[nodiscard]] std::string uid_from_hash(const std::string& text);

}  // namespace hilum::app
