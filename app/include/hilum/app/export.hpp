// Hilum app: exporting the current labels for (re)training elsewhere, as one plain function that
// the CLI and the GUI both call (the GUI on a worker thread).
//
// What is written into options.out_dir (each file atomically: temporary file in the same folder,
// fsync, rename; label files last, so they never name an image that is not there):
// The labels are the consensus of the readers (Catalog::consensus_labels, under the catalog's
// ConsensusPolicy; report.labels_used and labels.json's "labels" say which), never one reader's.
// - csv:  Data_Entry_2017.csv (the ChestX-ray14 layout, plus a Split column) and
//         BBox_List_2017.csv (present labels with a region; polygons as their bounding box).
//         "Finding Labels" lists the present findings; "No Finding" only when "No Finding" itself is
//         the consensus or every other finding of the vocabulary was assessed absent; empty when
//         nothing is present but not everything was assessed ("Pneumonia absent" alone).
// - json: labels.json (format version 2), one record per image with every consensus label
//         ("labels"), an "assessment" of every finding of the vocabulary ({"status": present |
//         absent | uncertain | not_assessed, "basis": how the consensus was reached, "readers":
//         {reader: value}}) and the image's attributes.
// - images (--images): images/<image>.png, a 16-bit grayscale PNG of the modality values
//         (modality value = PNG value * Slope + Offset, per image in images/pixel_scaling.csv);
//         with deidentify and json also images/<image>.dcm, a de-identified DICOM copy
//         (PS3.15 Annex E Basic Profile, see hilum/dicom/deidentify.hpp).
// Only images with at least one current label are exported, in the order of their Image Index.
//
// Split: train / validation / test (80/10/10) by patient, from HMAC-SHA256(catalog secret,
// patient key): the same for every export of the catalog, and never two splits for one patient.
//
// deidentify: patient IDs, patient names, accession numbers and UIDs are replaced by the catalog's
// pseudonyms (Catalog::pseudonym; the mapping stays in the catalog, never in the export); no
// paths, no names, no label comments (free text); dates (study date, label times, DICOM dates)
// are shifted by a per-patient number of days (1 to 10 years back, from the catalog secret); age
// and sex are kept, as are the clinicians' names as label authors. Images whose pixels may carry
// burned-in identity (Burned In Annotation YES, or a Secondary Capture without it) are exported
// without pixels (report.skipped says which).
//
// The output folder must be new, empty, or an earlier Hilum export. Every export keeps a manifest
// of the files it wrote (.hilum-export-manifest, one relative path a line); only files that
// manifest lists are replaced or removed. Files of an earlier export that this one does not write
// again (stale images, the other format's label file) are removed, so a folder never mixes two
// exports; a folder holding any file the manifest does not list (the user's own DICOM files in
// images/, a file added to an earlier export) is refused and left as it is.
#pragma once

#include <atomic>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hilum/app/catalog.hpp"

namespace hilum::app {

// The names of ExportFormat and Split come from one table each (core/enum_names.hpp): to_string
// gives "" for a value the table does not list (never another format's or split's name), and
// *_from_string reads the exact name back (an unknown one is an Invalid error naming the known ones).
enum class ExportFormat { Csv, Json };
[[nodiscard]] const char* to_string(ExportFormat format);                              // "csv", "json"
[[nodiscard]] Result<ExportFormat> export_format_from_string(std::string_view s);      // exact
[[nodiscard]] std::optional<ExportFormat> parse_export_format(const std::string& s);  // as typed: any case

struct ExportOptions {
  std::filesystem::path out_dir;
  ExportFormat format = ExportFormat::Csv;
  bool deidentify = false;
  bool images = false;
};

struct ExportProgress {
  std::size_t done = 0;   // images handled
  std::size_t total = 0;  // images to export
};
// Called on the calling thread after every image. (Named apart from import's ProgressFn.)
using ExportProgressFn = std::function<void(const ExportProgress&)>;

// An image whose pixels were not exported, and why.
struct ExportIssue {
  std::string image;   // the Image Index (pseudonymous with deidentify)
  std::string reason;
};

enum class Split { Train, Validation, Test };
[[nodiscard]] const char* to_string(Split split);  // "train", "validation", "test"
[[nodiscard]] Result<Split> split_from_string(std::string_view s);

struct SplitCounts {
  std::size_t patients = 0;
  std::size_t images = 0;
};

struct ExportReport {
  std::filesystem::path out_dir;
  std::vector<std::string> files;      // written, relative to out_dir, in the order written
  std::vector<std::string> removed;    // stale files of an earlier export, removed
  std::size_t images = 0;              // images with at least one current label
  std::size_t labels = 0;              // consensus labels exported
  std::string labels_used;             // "consensus: adjudicated > unanimous > majority (...)"
  std::size_t bounding_boxes = 0;      // present labels with a region
  std::size_t patients = 0;
  SplitCounts train, validation, test;
  std::size_t pngs = 0;                // images/*.png written
  std::size_t dicoms = 0;              // images/*.dcm written
  std::vector<ExportIssue> skipped;    // pixels left out on purpose (burned-in annotation)
  std::vector<ExportIssue> failed;     // pixels that could not be read or written
  bool interrupted = false;            // cancelled: images so far are complete, no label file written
};

// Exports the current labels (see above). Errors: Invalid (options, output folder not empty and
// not an earlier export), Io (cannot write), and the catalog's own errors. Problems with one
// image's pixels do not stop the export: they are listed in report.failed.
[[nodiscard]] Result<ExportReport> export_labels(Catalog& catalog, const ExportOptions& options,
                                                 const ExportProgressFn& progress = {},
                                                 const std::atomic<bool>* cancel = nullptr);

// ---- Building blocks, exposed for tests and other workflows.

// The key that identifies a patient in the catalog: Patient ID, else "name:" + Patient Name,
// else "study:" + Study Instance UID (an anonymous study is its own patient).
[[nodiscard]] std::string patient_key(const std::string& patient_id, const std::string& patient_name,
                                      const std::string& study_instance_uid);

// The patient's split: HMAC-SHA256(secret, "split" NUL key), first 8 bytes modulo 10: 0-7 train,
// 8 validation, 9 test.
[[nodiscard]] Split patient_split(const std::string& secret, const std::string& key);

// The patient's date shift for de-identified exports: -365 to -3652 days, from the secret.
[[nodiscard]] int patient_date_shift(const std::string& secret, const std::string& key);

// Age in whole years: domain.hpp's patient_age_years (DICOM AS "045Y", "006M", "010W", "003D", a
// bare "62"; else the birth and study dates, YYYYMMDD, when both are known), rounded down.
[[nodiscard]] std::optional<int> age_in_years(const std::string& dicom_age, const std::string& birth_date = {},
                                              const std::string& study_date = {});

// One CSV text cell as RFC 4180 wants it: quoted (with doubled quotes) when it holds a comma, a
// quote, CR or LF, else as it is. A cell a spreadsheet would take for a formula (beginning with
// = + - @ TAB or CR: a Patient ID "=cmd|' /C calc'!A0") is neutralised as OWASP recommends: a
// single quote before it, and the whole field quoted.
[[nodiscard]] std::string csv_field(std::string_view value);

// One cell of a CSV line: text (through csv_field) or a number Hilum formatted, written as it is
// (so that -0.5 stays a number).
struct CsvCell {
  CsvCell(std::string text) : value(std::move(text)) {}  // NOLINT(google-explicit-constructor): text is the usual cell
  CsvCell(const char* text) : value(text) {}              // NOLINT(google-explicit-constructor)
  static CsvCell number(std::string formatted) {
    CsvCell c(std::move(formatted));
    c.numeric = true;
    return c;
  }
  std::string value;
  bool numeric = false;
};

// One CSV record, CRLF-terminated.
[[nodiscard]] std::string csv_line(const std::vector<CsvCell>& cells);

// The exact header lines of the ChestX-ray14 files.
inline constexpr const char* kDataEntryHeader =
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],Split";
inline constexpr const char* kBBoxHeader = "Image Index,Finding Label,Bbox [x,y,w,h]";

}  // namespace hilum::app
