// Hilum app: importing files, folders and DICOMDIR media into the catalog, as one plain function
// that the CLI and the GUI both call (the GUI on a worker thread).
//
// - Inputs: files, folders (recursive, in sorted order, hidden entries and files named DICOMDIR
//   left out) and DICOMDIRs (their referenced images). Paths are stored absolute. A file met while
//   walking a folder that is not DICOM at all (a README, a CSV, a thumbnail) is counted as
//   not_dicom, not as a failure; a file named explicitly (or referenced by a DICOMDIR) that is not
//   DICOM is a failure.
// - Resumable: the import is a catalog job whose parameters are the sorted absolute inputs and
//   the options; each batch of files is committed in one transaction together with the outcome
//   of its job items, so a crash or a kill at any moment leaves a consistent catalog and running
//   the same import again finishes what is left.
// - Files whose path, size and modification time are already in the catalog are counted as
//   already present without being read again.
// - Files are read, hashed and thumbnailed on `jobs` worker threads; the catalog is written only
//   from the calling thread. At most a few batches are in memory at once.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "hilum/app/catalog.hpp"
#include "hilum/app/model_input.hpp"
#include "hilum/dicom/radiograph.hpp"

namespace hilum::app {

struct ImportOptions {
  int jobs = 0;                 // worker threads; 0 = one per core
  int batch_size = 64;          // files per transaction
  bool copy_to_store = false;   // also copy each imported file into the managed store
  std::filesystem::path store;  // the store folder; empty = "store" beside the catalog file
  int thumbnail_side = 128;     // longest side of the thumbnails kept in the catalog
  // Not empty: each imported film's model input at this size (the active model's input size) is
  // made from the pixels decoded for the import and cached beside the catalog (model_input.hpp),
  // so that classifying it decodes nothing. Not part of the job's identity.
  InputSize model_input;
  // Called on the calling thread after each committed batch with the SOP Instance UIDs it added
  // (the workers go on reading meanwhile): the CLI classifies them there from their cached inputs.
  std::function<void(const std::vector<std::string>& imported)> on_committed;
};

struct ImportCounts {
  std::size_t imported = 0;         // new in the catalog
  std::size_t already_present = 0;  // same SOP Instance UID and same content already there
  std::size_t conflicts = 0;        // same SOP Instance UID, different content: nothing replaced
  std::size_t skipped = 0;          // DICOM objects that are not images (SR, presentation states)
  std::size_t failed = 0;           // unreadable, truncated, not DICOM when named explicitly, ...
  std::size_t not_dicom = 0;        // files met while walking a folder that are not DICOM (a README,
                                    // a CSV, thumbnails): left out, not a failure
  [[nodiscard]] std::size_t total() const { return imported + already_present + conflicts + skipped + failed + not_dicom; }
};

// A file that was not imported, and why.
struct ImportIssue {
  std::string path;
  std::string sop_instance_uid;  // when known (empty for files not read in this run)
  std::string reason;            // e.g. "not an image: Basic Text SR"
  std::string existing_path;     // conflicts: the file already in the catalog under that UID
  bool earlier_run = false;      // recorded by an earlier, interrupted run of the same import
};

struct ImportProgress {
  std::size_t done = 0;            // files with an outcome, earlier runs of this import included
  std::size_t total = 0;           // files in the import
  std::size_t committed = 0;       // outcomes of this run written to the catalog
  double elapsed_seconds = 0.0;
  double files_per_second = 0.0;   // this run
  double eta_seconds = -1.0;       // < 0 while not yet known
  ImportCounts counts;             // this run, committed so far
};
// Called on the calling thread: after every committed batch and a few times a second between.
using ProgressFn = std::function<void(const ImportProgress&)>;

struct ImportReport {
  std::int64_t job_id = 0;
  bool resumed = false;           // an unfinished job with the same inputs and options was continued
  bool interrupted = false;       // cancelled: what was committed stays, running it again finishes it
  std::size_t files = 0;          // files in the import (all runs)
  ImportCounts counts;            // outcomes of this run
  ImportCounts earlier;           // outcomes recorded by earlier runs of the same import
  std::vector<ImportIssue> conflicts;  // earlier runs' first, then this run's, in file order
  std::vector<ImportIssue> skipped;
  std::vector<ImportIssue> failed;
  std::vector<ImportIssue> not_dicom;  // files of walked folders that are not DICOM
  std::vector<std::string> imported;   // SOP Instance UIDs this run added, in commit order
  double seconds = 0.0;
  double files_per_second = 0.0;  // files given an outcome in this run per second
  std::optional<Error> error;     // the catalog could not be read or written: the import stopped

  [[nodiscard]] bool ok() const { return !error.has_value(); }
};

// Imports `inputs` into `catalog`. `cancel` (may be null) is polled: when it becomes true, the
// files already read are committed and the import stops with report.interrupted set.
[[nodiscard]] ImportReport import_paths(Catalog& catalog, const std::vector<std::filesystem::path>& inputs,
                                        const ImportOptions& options = {}, const ProgressFn& progress = {},
                                        const std::atomic<bool>* cancel = nullptr);

// One instance received over the network (a complete, synced file that the caller hands over):
// read, checked and filed exactly as a folder import with copy_to_store files its files (dedupe by
// SOP Instance UID and content, conflicts reported and nothing replaced, one transaction), but
// without a job, and with the file linked into the store (copied when on another file system)
// rather than copied: the catalog records the store path. Both its Study and SOP Instance UIDs
// must be valid DICOM UIDs (they name the store's folder and file). The received file is removed,
// unless `keep_refused_in` is given and the file was not filed (a conflict, pixels that do not
// decode, ...): it is then moved there, beside a .txt saying why (an instance the peer was told
// was stored must not be lost; see InstanceFiler).
struct ReceivedFile {
  enum class Outcome { Imported, AlreadyPresent, Conflict, Skipped, Failed };
  Outcome outcome = Outcome::Failed;
  std::string sop_instance_uid;
  std::string reason;       // why not imported ("already in the catalog" for AlreadyPresent)
  std::string stored_path;  // Imported / AlreadyPresent: the file in the store
  std::string kept_path;    // not filed, and kept (keep_refused_in): where
};
[[nodiscard]] const char* to_string(ReceivedFile::Outcome outcome);  // "imported", "already-present", ...
// A DICOM UID as PS3.5 9.1 has it (digits and dots, 64 characters at most; a component's leading
// zero is tolerated): what a received instance's Study and SOP Instance UIDs must be before they
// name a folder or a file of the store (import_received, and InstanceFiler before it acknowledges).
[[nodiscard]] bool storable_uid(const std::string& uid);
[[nodiscard]] ReceivedFile import_received(Catalog& catalog, const std::filesystem::path& file,
                                           const ImportOptions& options = {}, const std::filesystem::path& keep_refused_in = {});

// The catalog record of a decoded radiograph read from `path` (file fields, hash and thumbnail
// left to the caller). Exposed for tests and tools.
// {"imported":N,"already_present":N,"conflicts":N,"skipped":N,"failed":N,"not_dicom":N}
[[nodiscard]] std::string to_json(const ImportCounts& counts);

[[nodiscard]] InstanceRecord instance_record(const dicom::Radiograph& image, const std::filesystem::path& path);

// The import job's parameters (JSON) for these inputs and options: what identifies a resumable job.
[[nodiscard]] std::string import_job_params(const std::vector<std::filesystem::path>& inputs, const ImportOptions& options);

}  // namespace hilum::app
