#include "hilum/app/import.hpp"
#include "hilum/core/atomic_file.hpp"
#include "hilum/core/numbers.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <random>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hilum/app/domain.hpp"
#include "hilum/app/hash.hpp"
#include "hilum/app/json.hpp"
#include "hilum/app/model_input.hpp"
#include "hilum/app/thumbnail.hpp"
#include "hilum/dicom/dicomdir.hpp"
#include "hilum/dicom/display.hpp"
#include "hilum/dicom/reader.hpp"

namespace fs = std::filesystem;
namespace dcm = hilum::dicom;

namespace hilum::app {
namespace {

using Clock = std::chrono::steady_clock;

// Batches whose files may be read ahead of the one being committed: bounds memory while keeping
// the workers busy during commits.
constexpr std::size_t kBatchesInFlight = 3;
constexpr auto kProgressInterval = std::chrono::milliseconds(250);

// Job item statuses (see catalog.hpp).
constexpr JobItemStatus kPending = JobItemStatus::Pending;
constexpr JobItemStatus kImported = JobItemStatus::Imported;
constexpr JobItemStatus kPresent = JobItemStatus::Present;
constexpr JobItemStatus kConflict = JobItemStatus::Conflict;
constexpr JobItemStatus kSkipped = JobItemStatus::Skipped;
constexpr JobItemStatus kFailed = JobItemStatus::Failed;
constexpr JobItemStatus kNotDicom = JobItemStatus::NotDicom;

fs::path absolute_path(const fs::path& p) {
  std::error_code ec;
  fs::path abs = fs::absolute(p, ec);
  if (ec) abs = p;
  fs::path canonical = fs::weakly_canonical(abs, ec);
  return ec ? abs.lexically_normal() : canonical;
}

bool is_hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

bool named_dicomdir(const fs::path& p) {
  std::string name = p.filename().string();
  for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name == "DICOMDIR";
}

// What the inputs expand to: files to read, and inputs that could not be expanded (with why).
struct Expansion {
  std::vector<std::string> files;
  std::vector<std::pair<std::string, std::string>> failures;  // path, reason
};

void walk_folder(const fs::path& folder, std::vector<std::string>& files, Expansion& out) {
  std::error_code ec;
  fs::directory_iterator it(folder, ec);
  if (ec) {
    out.failures.emplace_back(folder.string(), "cannot read folder " + folder.string() + ": " + ec.message());
    return;
  }
  for (const fs::directory_iterator end; it != end; it.increment(ec)) {
    if (ec) {
      out.failures.emplace_back(folder.string(), "cannot read folder " + folder.string() + ": " + ec.message());
      return;
    }
    const fs::path& p = it->path();
    if (is_hidden(p)) continue;
    std::error_code sec;
    // Symbolic links to folders are not followed (no cycles); links to files are.
    if (it->is_directory(sec) && !it->is_symlink(sec)) {
      walk_folder(p, files, out);
    } else if (it->is_regular_file(sec)) {
      if (!named_dicomdir(p)) files.push_back(absolute_path(p).string());
    }
  }
}

Expansion expand_inputs(const std::vector<fs::path>& given) {
  // In sorted order, like the job's parameters: the order of the command line does not matter.
  std::vector<fs::path> inputs;
  for (const fs::path& p : given) inputs.push_back(absolute_path(p));
  std::sort(inputs.begin(), inputs.end());
  inputs.erase(std::unique(inputs.begin(), inputs.end()), inputs.end());
  Expansion out;
  for (const fs::path& path : inputs) {
    std::error_code ec;
    const fs::file_status status = fs::status(path, ec);
    if (ec || !fs::exists(status)) {
      out.failures.emplace_back(path.string(), "no such file or folder: " + path.string());
    } else if (fs::is_directory(status)) {
      std::vector<std::string> files;
      walk_folder(path, files, out);
      std::sort(files.begin(), files.end());
      out.files.insert(out.files.end(), files.begin(), files.end());
    } else if (dcm::is_dicomdir(path)) {
      auto images = dcm::read_dicomdir(path);
      if (!images) {
        out.failures.emplace_back(path.string(), images.error().message);
        continue;
      }
      for (const auto& image : images.value()) {
        // A reference that leads outside the medium is never opened: it fails with its reason.
        if (!image.refused.empty()) out.failures.emplace_back(path.string() + " (" + image.file_id + ")", image.refused);
        else out.files.push_back(absolute_path(image.file).string());
      }
    } else {
      out.files.push_back(path.string());
    }
  }
  // The same file reached twice (a folder and a file inside it, two DICOMDIRs) is read once.
  std::unordered_set<std::string> seen;
  std::vector<std::string> unique;
  unique.reserve(out.files.size());
  for (auto& f : out.files) {
    if (seen.insert(f).second) unique.push_back(std::move(f));
  }
  out.files = std::move(unique);
  std::unordered_set<std::string> failed;
  std::vector<std::pair<std::string, std::string>> failures;
  for (auto& f : out.failures) {
    if (!seen.count(f.first) && failed.insert(f.first).second) failures.push_back(std::move(f));
  }
  out.failures = std::move(failures);
  return out;
}

std::string safe_name(const std::string& uid) {
  std::string out;
  for (const char c : uid) {
    const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c == '-' || c == '_';
    out.push_back(ok ? c : '_');
  }
  if (out.empty() || out == "." || out == "..") out = "unknown";
  return out;
}

std::string errno_text() { return std::strerror(errno); }

// Copies `from` to a new file `tmp` (created exclusively) and fsyncs it. "" or the reason.
std::string copy_and_sync(const fs::path& from, const fs::path& tmp) {
  const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return "cannot open " + from.string() + ": " + errno_text();
  const int out = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (out < 0) {
    const std::string reason = "cannot create " + tmp.string() + ": " + errno_text();
    ::close(in);
    return reason;
  }
  std::string error;
  std::vector<char> buffer(std::size_t{1} << 20);
  for (;;) {
    const ssize_t n = ::read(in, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      error = "cannot read " + from.string() + ": " + errno_text();
      break;
    }
    if (n == 0) break;
    ssize_t written = 0;
    while (written < n) {
      const ssize_t w = ::write(out, buffer.data() + written, static_cast<std::size_t>(n - written));
      if (w < 0) {
        if (errno == EINTR) continue;
        error = "cannot write " + tmp.string() + ": " + errno_text();
        break;
      }
      written += w;
    }
    if (!error.empty()) break;
  }
  if (error.empty() && ::fsync(out) != 0) error = "cannot write " + tmp.string() + ": " + errno_text();
  if (::close(out) != 0 && error.empty()) error = "cannot close " + tmp.string() + ": " + errno_text();
  ::close(in);
  if (!error.empty()) ::unlink(tmp.c_str());
  return error;
}

struct StoreCopy {
  std::string path;
  bool created = false;  // this import wrote the file (so it may remove it if the record is not kept)
  std::string error;
};

// Puts a copy of `source` (content hash `hash`) into `folder` as `<sop>.dcm`, atomically and
// without ever replacing a file: a file already there with the same content is reused; one with
// different content (a conflicting instance) makes the copy go to `<sop>.<hash prefix>.dcm`.
// With `link_source` (a received file of ours, already synced, on the store's file system), the
// source itself is linked under the name instead of copied.
StoreCopy copy_into_store(const fs::path& source, const fs::path& folder, const std::string& sop, const std::string& hash,
                          bool link_source = false) {
  StoreCopy result;
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec) {
    result.error = "cannot create the store folder " + folder.string() + ": " + ec.message();
    return result;
  }
  const std::string base = safe_name(sop);
  const fs::path candidates[] = {folder / (base + ".dcm"), folder / (base + "." + hash.substr(0, 16) + ".dcm")};
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  for (const fs::path& target : candidates) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (fs::exists(target, ec)) {
        if (auto existing = sha256_file(target); existing && existing.value() == hash) {
          result.path = target.string();
          return result;
        }
        break;  // different content: try the next name
      }
      int rc = -1;
      int link_errno = EXDEV;
      if (link_source) {
        rc = ::link(source.c_str(), target.c_str());
        link_errno = errno;
      }
      if (rc != 0 && link_errno == EXDEV) {
        const fs::path tmp = folder / ("." + base + ".tmp-" + std::to_string(rng()));
        result.error = copy_and_sync(source, tmp);
        if (!result.error.empty()) return result;
        // link() never replaces an existing file: two workers racing for one name cannot clobber.
        rc = ::link(tmp.c_str(), target.c_str());
        link_errno = errno;
        ::unlink(tmp.c_str());
      }
      if (rc == 0) {
        (void)core::fsync_folder(folder);  // best effort: the file was flushed before its rename
        result.path = target.string();
        result.created = true;
        return result;
      }
      if (link_errno != EEXIST) {
        result.error = "cannot store " + target.string() + ": " + std::strerror(link_errno);
        return result;
      }
      // Someone else just created it: look again.
    }
  }
  result.error = "cannot store a copy of " + source.string() + " in " + folder.string() + ": names taken by other content";
  return result;
}

// ---- One file, on a worker thread.

struct WorkResult {
  enum class Kind { Record, Present, Skipped, Failed, NotDicom };
  Kind kind = Kind::Failed;
  InstanceRecord record;       // Kind::Record
  std::string reason;          // Kind::Skipped / Failed
  std::string sop_instance_uid;
  bool created_store_file = false;
  bool not_dicom = false;      // Kind::Failed because the file is not DICOM at all
};

using Stamps = std::unordered_map<std::string, std::pair<std::int64_t, std::int64_t>>;

struct WorkContext {
  const Stamps* stamps = nullptr;
  bool copy_to_store = false;
  fs::path store;
  int thumbnail_side = 128;
  bool received = false;  // a file received over the network: linked into the store, catalogued there
  InputSize model_input;  // also cache the model's input (model_input.hpp), from the pixels decoded here
  fs::path cache_dir;
};


WorkResult failed(std::string reason) {
  WorkResult r;
  r.kind = WorkResult::Kind::Failed;
  r.reason = std::move(reason);
  return r;
}

WorkResult process_file(const std::string& path, const WorkContext& ctx) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return failed("file not found: " + path);
    return failed("cannot read " + path + ": " + errno_text());
  }
  if (S_ISDIR(st.st_mode)) return failed("is a folder, not a file: " + path);
  const auto size = static_cast<std::int64_t>(st.st_size);
  const auto mtime = static_cast<std::int64_t>(st.st_mtime);
  if (ctx.stamps) {
    const auto it = ctx.stamps->find(path);
    if (it != ctx.stamps->end() && it->second.first == size && it->second.second == mtime) {
      WorkResult r;
      r.kind = WorkResult::Kind::Present;
      return r;
    }
  }

  dcm::ReadOptions options;
  options.decode_pixels = true;
  options.decoder_threads = 1;  // one file per worker; parallelism comes from the workers
  // Nothing here needs more pixels than the thumbnail and the model input: a lossless JPEG 2000
  // film four times that size or more is decoded at a reduced resolution level (ReadOptions::
  // min_side; the record keeps the file's size).
  options.min_side = std::max({ctx.thumbnail_side, ctx.model_input.width, ctx.model_input.height});
  auto image = dcm::read_radiograph(path, options);
  if (!image) {
    WorkResult r;
    // An object without pixels (an SR) or a picture of no radiograph is not a film: skipped with its
    // reason, not a failure.
    const auto kind = image.error().kind;
    r.kind = kind == dcm::ErrorKind::NotAnImage || kind == dcm::ErrorKind::NotARadiograph ? WorkResult::Kind::Skipped : WorkResult::Kind::Failed;
    r.not_dicom = image.error().kind == dcm::ErrorKind::NotDicom;
    r.reason = image.error().message;
    return r;
  }
  if (!image->colour_photometric.empty() && image->coloured_share >= kColouredShareLimit) {
    // A colour picture (a photograph, a Doppler ultrasound, an attention map sent back to the
    // PACS) is not a film either. A film sent in colour (grey in every pixel) is imported.
    WorkResult r;
    r.kind = WorkResult::Kind::Skipped;
    r.reason = "a colour picture (" + image->colour_photometric + ", " + core::format_fixed(100.0 * image->coloured_share, 0) +
               "% of its pixels in colour), not a film";
    return r;
  }
  WorkResult r;
  r.kind = WorkResult::Kind::Record;
  r.record = instance_record(image.value(), path);
  r.sop_instance_uid = r.record.sop_instance_uid;
  if (r.record.sop_instance_uid.empty()) return failed("no SOP Instance UID: the file cannot be catalogued");
  r.record.file_size = size;
  r.record.file_mtime = mtime;

  // The window shown by default (dicom::VoiChoice::Default): the file's first window, else none
  // when it has a VOI LUT, else the automatic one -- which the thumbnail uses in any case, so it
  // is computed once here.
  const dcm::Window automatic = dcm::auto_window(image.value());
  const dcm::Radiograph& im = image.value();
  if (!im.windows.empty()) {
    r.record.window_center = im.windows.front().center;
    r.record.window_width = im.windows.front().width;
  } else if (im.voi_luts.empty()) {
    r.record.window_center = automatic.center;
    r.record.window_width = automatic.width;
  }
  // A preview that cannot be made does not keep the image out of the catalog.
  if (auto thumbnail = make_thumbnail(im, automatic, ctx.thumbnail_side)) r.record.thumbnail_png = std::move(thumbnail.value());
  else if (auto fallback = make_thumbnail(im, ctx.thumbnail_side)) r.record.thumbnail_png = std::move(fallback.value());
  // The model's input from the same pixels (the display image, default VOI, at the input size),
  // so that classification never decodes this film again. Best effort: a film whose display image
  // cannot be made is still catalogued (classify will say why).
  std::vector<float> model_input;
  const double coloured_share = im.coloured_share;
  if (!ctx.model_input.empty() && !ctx.cache_dir.empty()) {
    if (auto grey = dcm::render_float(im)) model_input = model_input_of(grey->data(), im.columns, im.rows, ctx.model_input);
  }
  image = dcm::Error{};  // free the decoded pixels before hashing and copying

  auto hashed = sha256_file(path);
  if (!hashed) return failed(hashed.error().message);
  r.record.content_hash = std::move(hashed.value());
  // A cache that cannot be written costs a decode later, nothing else: the import goes on.
  if (!model_input.empty()) (void)write_cached_input(ctx.cache_dir, r.record.content_hash, ctx.model_input, model_input, coloured_share);

  if (ctx.received && (!storable_uid(r.record.study_instance_uid) || !storable_uid(r.record.sop_instance_uid))) {
    return failed("not a valid DICOM UID in the Study or SOP Instance UID: the instance cannot be stored");
  }
  if (ctx.copy_to_store || ctx.received) {
    StoreCopy copy = copy_into_store(path, ctx.store / safe_name(r.record.study_instance_uid),
                                     r.record.sop_instance_uid, r.record.content_hash, ctx.received);
    if (!copy.error.empty()) return failed(copy.error);
    r.record.stored_path = copy.path;
    r.created_store_file = copy.created;
    // A received file has no place of its own: the catalog points at the store.
    if (ctx.received) r.record.path = copy.path;
  }
  return r;
}

// ---- The job.

struct PendingFile {
  std::string path;
  std::int64_t item_id = 0;
  bool walked = false;  // met while walking a folder input (not named, not referenced by a DICOMDIR)
};

struct Reporter {
  const ProgressFn* fn = nullptr;
  Clock::time_point start = Clock::now();
  Clock::time_point last{};
  std::size_t total = 0;
  std::size_t earlier_done = 0;

  void operator()(std::size_t completed, std::size_t committed, const ImportCounts& counts, bool force) {
    if (fn == nullptr || !*fn) return;
    const auto now = Clock::now();
    if (!force && now - last < kProgressInterval) return;
    last = now;
    ImportProgress p;
    p.total = total;
    p.done = earlier_done + completed;
    p.committed = committed;
    p.counts = counts;
    p.elapsed_seconds = std::chrono::duration<double>(now - start).count();
    if (p.elapsed_seconds > 0.0) p.files_per_second = static_cast<double>(completed) / p.elapsed_seconds;
    if (p.files_per_second > 0.0) p.eta_seconds = static_cast<double>(total - p.done) / p.files_per_second;
    else if (p.done >= total) p.eta_seconds = 0.0;
    (*fn)(p);
  }
};

}  // namespace

std::string to_json(const ImportCounts& c) {
  JsonObject o;
  o.add("imported", static_cast<std::int64_t>(c.imported));
  o.add("already_present", static_cast<std::int64_t>(c.already_present));
  o.add("conflicts", static_cast<std::int64_t>(c.conflicts));
  o.add("skipped", static_cast<std::int64_t>(c.skipped));
  o.add("failed", static_cast<std::int64_t>(c.failed));
  o.add("not_dicom", static_cast<std::int64_t>(c.not_dicom));
  return o.str();
}

namespace {

void count_status(ImportCounts& c, JobItemStatus status) {
  if (status == kImported) ++c.imported;
  else if (status == kPresent) ++c.already_present;
  else if (status == kConflict) ++c.conflicts;
  else if (status == kSkipped) ++c.skipped;
  else if (status == kFailed) ++c.failed;
  else if (status == kNotDicom) ++c.not_dicom;
}

// What one committed batch adds to the report.
struct BatchOutcome {
  std::vector<JobItem> items;
  ImportCounts counts;
  std::vector<ImportIssue> conflicts, skipped, failed, not_dicom;
  std::vector<std::string> stored_to_remove;  // store copies of records the catalog did not keep
  std::vector<std::string> imported;          // SOP Instance UIDs new in the catalog
};

class Importer {
 public:
  Importer(Catalog& catalog, const ImportOptions& options, const ProgressFn& progress, const std::atomic<bool>* cancel)
      : catalog_(catalog), options_(options), cancel_(cancel) {
    reporter_.fn = &progress;
  }

  ImportReport run(const std::vector<fs::path>& inputs);
  // One received file, through the same reading and commit as run()'s files, without a job.
  ReceivedFile receive(const fs::path& file, const fs::path& keep_refused_in);

 private:
  bool cancelled() const { return cancel_ != nullptr && cancel_->load(std::memory_order_relaxed); }
  bool start_job(const std::vector<fs::path>& inputs, std::vector<PendingFile>& pending);
  void process(std::vector<PendingFile> pending);
  // Writes the finished results of one batch in one transaction; false when the catalog failed.
  bool commit(std::vector<std::pair<const PendingFile*, WorkResult>>& batch);
  void fail(Error error) {
    if (!report_.error) report_.error = std::move(error);
  }

  Catalog& catalog_;
  ImportOptions options_;
  const std::atomic<bool>* cancel_;
  Reporter reporter_;
  ImportReport report_;
  Stamps stamps_;
  bool record_items_ = true;  // false: no job (received files)
};

namespace {

// Moves a received file that was not filed into `folder` (created), beside a .txt with the reason:
// where it went, or why it could not be kept (it is then removed, as before).
std::string keep_refused(const fs::path& file, const fs::path& folder, const std::string& sop_uid, const std::string& reason,
                         std::string& kept) {
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec) return "cannot create " + folder.string() + ": " + ec.message();
  std::string stem = utc_now();
  for (char& c : stem) {
    if (c == ':') c = '-';
  }
  const std::string uid = storable_uid(sop_uid) ? sop_uid : std::string("unknown-uid");
  fs::path target;
  for (int n = 0;; ++n) {
    target = folder / (stem + "-" + uid + (n > 0 ? "-" + std::to_string(n) : std::string()) + ".dcm");
    if (!fs::exists(target, ec)) break;
    if (n > 1000) return "no free name in " + folder.string();
  }
  fs::rename(file, target, ec);
  if (ec) {  // another file system: copy, then remove the received file
    std::error_code copy_ec;
    fs::copy_file(file, target, copy_ec);
    if (copy_ec || !core::fsync_file(target).ok()) {
      fs::remove(target, copy_ec);
      return "cannot keep it in " + folder.string() + ": " + ec.message();
    }
    fs::remove(file, ec);
  }
  fs::path note = target;
  note.replace_extension(".txt");
  (void)core::write_file_atomically(note, "SOP Instance UID: " + sop_uid + "\nnot filed: " + reason + "\n");
  (void)core::fsync_folder(folder);
  kept = target.string();
  return {};
}

}  // namespace

ReceivedFile Importer::receive(const fs::path& file, const fs::path& keep_refused_in) {
  record_items_ = false;
  if (options_.store.empty()) options_.store = catalog_.local_folder() / "store";
  options_.store = absolute_path(options_.store);
  WorkContext ctx;
  ctx.store = options_.store;
  ctx.thumbnail_side = options_.thumbnail_side;
  ctx.received = true;
  ctx.model_input = options_.model_input;  // the model's input too, from the pixels decoded here
  ctx.cache_dir = model_input_cache_dir(catalog_.local_path());
  const PendingFile pending{file.string(), 0, false};
  WorkResult result;
  try {
    result = process_file(pending.path, ctx);
  } catch (const std::exception& e) {
    result = failed(std::string("cannot import: ") + e.what());
  }
  ReceivedFile out;
  out.sop_instance_uid = result.sop_instance_uid;
  out.stored_path = result.record.stored_path;
  std::vector<std::pair<const PendingFile*, WorkResult>> batch;
  batch.emplace_back(&pending, std::move(result));
  const bool committed = commit(batch);
  const ImportCounts& c = report_.counts;
  auto reason_of = [](const std::vector<ImportIssue>& issues) { return issues.empty() ? std::string() : issues.back().reason; };
  if (!committed) {
    out.outcome = ReceivedFile::Outcome::Failed;
    out.reason = report_.error ? report_.error->message : "not written to the catalog";
  } else if (c.imported == 1) {
    out.outcome = ReceivedFile::Outcome::Imported;
  } else if (c.already_present == 1) {
    out.outcome = ReceivedFile::Outcome::AlreadyPresent;
    out.reason = "already in the catalog";
  } else if (c.conflicts == 1) {
    out.outcome = ReceivedFile::Outcome::Conflict;
    out.reason = reason_of(report_.conflicts);
  } else if (c.skipped == 1) {
    out.outcome = ReceivedFile::Outcome::Skipped;
    out.reason = reason_of(report_.skipped);
  } else {
    out.outcome = ReceivedFile::Outcome::Failed;
    out.reason = reason_of(report_.failed);
  }
  const bool filed = out.outcome == ReceivedFile::Outcome::Imported || out.outcome == ReceivedFile::Outcome::AlreadyPresent;
  if (!filed) out.stored_path.clear();
  if (!filed && !keep_refused_in.empty()) {
    const std::string problem = keep_refused(file, keep_refused_in, out.sop_instance_uid, out.reason, out.kept_path);
    out.reason += problem.empty() ? " (kept in " + out.kept_path + ")" : " (and " + problem + ")";
  }
  std::error_code ec;
  fs::remove(file, ec);  // linked into the store, kept aside, or not kept: the received file itself goes
  return out;
}

bool Importer::start_job(const std::vector<fs::path>& inputs, std::vector<PendingFile>& pending) {
  const std::string params = import_job_params(inputs, options_);
  auto existing = catalog_.unfinished_job("import", params);
  if (!existing) {
    fail(existing.error());
    return false;
  }
  if (existing->has_value()) {
    // Continue the earlier run: only its pending items are left; the others are reported as
    // outcomes of that run.
    report_.resumed = true;
    report_.job_id = existing->value().id;
    auto items = catalog_.job_items(report_.job_id, false);
    if (!items) {
      fail(items.error());
      return false;
    }
    std::sort(items->begin(), items->end(), [](const JobItem& a, const JobItem& b) { return a.id < b.id; });
    report_.files = items->size();
    for (const JobItem& item : items.value()) {
      if (item.status == kPending) {
        pending.push_back({item.path, item.id});
        continue;
      }
      count_status(report_.earlier, item.status);
      ImportIssue issue{item.path, {}, item.reason, {}, true};
      if (item.status == kConflict) report_.conflicts.push_back(std::move(issue));
      else if (item.status == kSkipped) report_.skipped.push_back(std::move(issue));
      else if (item.status == kFailed) report_.failed.push_back(std::move(issue));
      else if (item.status == kNotDicom) report_.not_dicom.push_back(std::move(issue));
    }
    if (auto s = catalog_.set_job_status(report_.job_id, JobStatus::Running); !s) {
      fail(s.error());
      return false;
    }
    return true;
  }

  // A new job: the expanded file list becomes its items; inputs that could not be expanded are
  // recorded as failed in the same transaction.
  Expansion expansion = expand_inputs(inputs);
  std::vector<std::string> paths = expansion.files;
  for (const auto& f : expansion.failures) paths.push_back(f.first);
  std::vector<JobItem> items;
  auto created = catalog_.transaction([&]() -> Status {
    auto id = catalog_.create_job("import", params, paths);
    if (!id) return id.error();
    report_.job_id = id.value();
    auto listed = catalog_.job_items(report_.job_id, true);
    if (!listed) return listed.error();
    items = std::move(listed.value());
    std::unordered_map<std::string, std::string> reasons(expansion.failures.begin(), expansion.failures.end());
    std::vector<JobItem> failures;
    for (const JobItem& item : items) {
      const auto it = reasons.find(item.path);
      if (it != reasons.end()) failures.push_back({item.id, item.path, kFailed, it->second});
    }
    if (!failures.empty()) {
      if (auto s = catalog_.finish_job_items(failures); !s) return s.error();
    }
    return core::Done{};
  });
  if (!created) {
    fail(created.error());
    return false;
  }
  std::sort(items.begin(), items.end(), [](const JobItem& a, const JobItem& b) { return a.id < b.id; });
  report_.files = items.size();
  std::unordered_map<std::string, std::string> reasons(expansion.failures.begin(), expansion.failures.end());
  for (const JobItem& item : items) {
    const auto it = reasons.find(item.path);
    if (it != reasons.end()) {
      ++report_.counts.failed;
      report_.failed.push_back({item.path, {}, it->second, {}, false});
    } else {
      pending.push_back({item.path, item.id});
    }
  }
  return true;
}

bool Importer::commit(std::vector<std::pair<const PendingFile*, WorkResult>>& batch) {
  if (batch.empty()) return true;
  BatchOutcome out;
  std::vector<InstanceRecord> records;
  std::vector<std::size_t> record_of;  // batch index of each record
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (batch[i].second.kind == WorkResult::Kind::Record) {
      record_of.push_back(i);
      records.push_back(std::move(batch[i].second.record));
    }
  }

  auto status = catalog_.transaction([&]() -> Status {
    out = BatchOutcome{};
    std::vector<std::optional<Result<PutOutcome>>> outcomes(batch.size());
    if (!records.empty()) {
      auto put = catalog_.put_instances(records);
      if (put && put->size() != records.size()) {
        return Error{ErrorKind::Invalid, "the catalog returned " + std::to_string(put->size()) + " outcomes for " +
                                             std::to_string(records.size()) + " records"};
      }
      if (put) {
        for (std::size_t k = 0; k < records.size(); ++k) outcomes[record_of[k]] = put->at(k);
      } else if (put.error().kind == ErrorKind::Invalid) {
        // One record the catalog refuses must not sink the others: put them one at a time
        // (each a savepoint of this transaction) and fail only the refused ones.
        for (std::size_t k = 0; k < records.size(); ++k) {
          auto one = catalog_.put_instances({records[k]});
          if (one && one->size() != 1) return Error{ErrorKind::Invalid, "the catalog returned no outcome for a record"};
          if (one) outcomes[record_of[k]] = one->at(0);
          else if (one.error().kind == ErrorKind::Invalid) outcomes[record_of[k]] = one.error();
          else return one.error();
        }
      } else {
        return put.error();
      }
    }
    std::unordered_set<std::string> kept_store_files;
    for (std::size_t k = 0; k < records.size(); ++k) {
      const auto& o = outcomes[record_of[k]];
      if (o && o->ok() && o->value() == PutOutcome::Inserted && !records[k].stored_path.empty()) {
        kept_store_files.insert(records[k].stored_path);
      }
    }
    std::size_t next_record = 0;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const PendingFile& file = *batch[i].first;
      const WorkResult& r = batch[i].second;
      JobItem item{file.item_id, file.path, kFailed, {}};
      switch (r.kind) {
        case WorkResult::Kind::Present:
          item.status = kPresent;
          ++out.counts.already_present;
          break;
        case WorkResult::Kind::Skipped:
          item.status = kSkipped;
          item.reason = r.reason;
          ++out.counts.skipped;
          out.skipped.push_back({file.path, r.sop_instance_uid, r.reason, {}, false});
          break;
        case WorkResult::Kind::Failed:
          item.reason = r.reason;
          ++out.counts.failed;
          out.failed.push_back({file.path, r.sop_instance_uid, r.reason, {}, false});
          break;
        case WorkResult::Kind::NotDicom:
          item.status = kNotDicom;
          item.reason = r.reason;
          ++out.counts.not_dicom;
          out.not_dicom.push_back({file.path, {}, r.reason, {}, false});
          break;
        case WorkResult::Kind::Record: {
          const InstanceRecord& rec = records[next_record++];
          const auto& o = outcomes[i];
          if (r.created_store_file && !(o && o->ok() && o->value() == PutOutcome::Inserted) &&
              !kept_store_files.count(rec.stored_path)) {
            out.stored_to_remove.push_back(rec.stored_path);
          }
          if (!o || !o->ok()) {
            item.reason = o ? o->error().message : "not written to the catalog";
            ++out.counts.failed;
            out.failed.push_back({file.path, rec.sop_instance_uid, item.reason, {}, false});
            break;
          }
          if (o->value() == PutOutcome::Inserted) {
            item.status = kImported;
            ++out.counts.imported;
            out.imported.push_back(rec.sop_instance_uid);
          } else if (o->value() == PutOutcome::AlreadyPresent) {
            item.status = kPresent;
            ++out.counts.already_present;
          } else if (o->value() == PutOutcome::PatientConflict) {
            item.status = kConflict;
            auto why = catalog_.attach_conflict(rec);
            if (!why) return why.error();
            item.reason = why->value_or("the image's study or series is another patient's in the catalog; not imported");
            ++out.counts.conflicts;
            out.conflicts.push_back({file.path, rec.sop_instance_uid, item.reason, {}, false});
          } else {
            item.status = kConflict;
            std::string existing;
            auto found = catalog_.find_instance(rec.sop_instance_uid);
            if (!found) return found.error();
            if (found->has_value()) existing = found->value().path;
            item.reason = "SOP Instance UID " + rec.sop_instance_uid + " is already in the catalog" +
                          (existing.empty() ? std::string() : " from " + existing) +
                          " with different content; nothing was replaced";
            ++out.counts.conflicts;
            out.conflicts.push_back({file.path, rec.sop_instance_uid, item.reason, existing, false});
          }
          break;
        }
      }
      out.items.push_back(std::move(item));
    }
    if (!record_items_) return core::Done{};
    return catalog_.finish_job_items(out.items);
  });

  std::error_code ec;
  if (!status) {
    // Nothing of this batch is in the catalog: the copies made for it are not referenced.
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (batch[i].second.created_store_file) {
        for (std::size_t k = 0; k < record_of.size(); ++k) {
          if (record_of[k] == i) fs::remove(records[k].stored_path, ec);
        }
      }
    }
    fail(status.error());
    return false;
  }
  for (const auto& p : out.stored_to_remove) fs::remove(p, ec);
  ImportCounts& c = report_.counts;
  c.imported += out.counts.imported;
  c.already_present += out.counts.already_present;
  c.conflicts += out.counts.conflicts;
  c.skipped += out.counts.skipped;
  c.failed += out.counts.failed;
  c.not_dicom += out.counts.not_dicom;
  for (auto& i : out.conflicts) report_.conflicts.push_back(std::move(i));
  for (auto& i : out.not_dicom) report_.not_dicom.push_back(std::move(i));
  for (auto& i : out.skipped) report_.skipped.push_back(std::move(i));
  for (auto& i : out.failed) report_.failed.push_back(std::move(i));
  // On the calling thread, while the workers read the next batches: what runs here (the model on
  // the films just imported) overlaps their decoding.
  if (options_.on_committed && !out.imported.empty()) options_.on_committed(out.imported);
  for (auto& uid : out.imported) report_.imported.push_back(std::move(uid));
  return true;
}

void Importer::process(std::vector<PendingFile> pending) {
  const std::size_t n = pending.size();
  const std::size_t batch_size = static_cast<std::size_t>(std::max(1, options_.batch_size));
  const std::size_t batches = (n + batch_size - 1) / batch_size;
  const std::size_t already_committed = report_.counts.total();  // inputs that failed to expand

  WorkContext ctx;
  ctx.stamps = &stamps_;
  ctx.copy_to_store = options_.copy_to_store;
  ctx.store = options_.store;
  ctx.thumbnail_side = options_.thumbnail_side;
  ctx.model_input = options_.model_input;
  ctx.cache_dir = model_input_cache_dir(catalog_.local_path());

  // Shared with the workers, guarded by `mutex`.
  std::mutex mutex;
  std::condition_variable work_cv;   // workers: more may be claimed, or stop
  std::condition_variable done_cv;   // caller: a file finished
  std::size_t next = 0;
  std::size_t limit = std::min(n, kBatchesInFlight * batch_size);
  bool stop = false;
  // One pointer per file (empty until read, emptied once committed): only the batches in flight
  // hold records, however many files the import has.
  std::vector<std::unique_ptr<WorkResult>> results(n);
  std::vector<std::size_t> batch_done(batches, 0);
  std::size_t completed = 0;

  auto worker = [&]() {
    for (;;) {
      std::size_t index = 0;
      {
        std::unique_lock lock(mutex);
        work_cv.wait(lock, [&] { return stop || next < limit; });
        if (stop || next >= n) return;
        index = next++;
      }
      WorkResult result;
      try {
        result = process_file(pending[index].path, ctx);
      } catch (const std::exception& e) {
        result = failed(std::string("cannot import: ") + e.what());
      }
      // Not DICOM at all, met while walking a folder: left out, not a failure.
      if (result.kind == WorkResult::Kind::Failed && result.not_dicom && pending[index].walked)
        result.kind = WorkResult::Kind::NotDicom;
      {
        std::lock_guard lock(mutex);
        results[index] = std::make_unique<WorkResult>(std::move(result));
        ++batch_done[index / batch_size];
        ++completed;
      }
      done_cv.notify_one();
    }
  };

  int threads = options_.jobs > 0 ? options_.jobs : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(threads), std::max<std::size_t>(n, 1)));
  std::vector<std::thread> pool;
  pool.reserve(static_cast<std::size_t>(threads));
  auto stop_workers = [&]() {
    {
      std::lock_guard lock(mutex);
      stop = true;
    }
    work_cv.notify_all();
    for (auto& t : pool) t.join();
    pool.clear();
  };
  // Whatever happens below (even an exception), the workers are stopped and joined.
  struct Joiner {
    decltype(stop_workers)& f;
    ~Joiner() { f(); }
  } joiner{stop_workers};
  if (n > 0) {
    for (int t = 0; t < threads; ++t) {
      try {
        pool.emplace_back(worker);
      } catch (const std::system_error& e) {
        if (pool.empty()) {
          fail(Error{ErrorKind::Io, std::string("cannot start a worker thread: ") + e.what()});
          return;
        }
        break;  // fewer workers than asked for still do the job
      }
    }
  }

  std::size_t committed = already_committed;
  reporter_(committed, committed, report_.counts, true);
  for (std::size_t b = 0; b < batches; ++b) {
    const std::size_t begin = b * batch_size;
    const std::size_t end = std::min(n, begin + batch_size);
    bool cancel_now = false;
    {
      std::unique_lock lock(mutex);
      while (batch_done[b] < end - begin) {
        if (cancelled()) {
          cancel_now = true;
          break;
        }
        done_cv.wait_for(lock, std::chrono::milliseconds(50));
        const std::size_t c = completed;
        lock.unlock();
        reporter_(already_committed + c, committed, report_.counts, false);
        lock.lock();
      }
    }
    if (cancel_now || cancelled()) {
      // Commit whatever has been read (in any batch), then stop: those items are done, the
      // rest stay pending for the next run.
      stop_workers();
      std::vector<std::pair<const PendingFile*, WorkResult>> finished;
      for (std::size_t i = begin; i < n; ++i) {
        if (results[i]) finished.emplace_back(&pending[i], std::move(*results[i]));
      }
      const std::size_t count = finished.size();
      if (commit(finished)) committed += count;
      report_.interrupted = true;
      break;
    }
    std::vector<std::pair<const PendingFile*, WorkResult>> batch;
    batch.reserve(end - begin);
    {
      std::lock_guard lock(mutex);
      for (std::size_t i = begin; i < end; ++i) {
        batch.emplace_back(&pending[i], std::move(*results[i]));
        results[i].reset();
      }
      limit = std::min(n, (b + 1 + kBatchesInFlight) * batch_size);
    }
    work_cv.notify_all();
    if (!commit(batch)) break;
    committed += end - begin;
    std::size_t c = 0;
    {
      std::lock_guard lock(mutex);
      c = completed;
    }
    reporter_(already_committed + c, committed, report_.counts, true);
  }
  stop_workers();
  reporter_(committed, committed, report_.counts, true);
}

ImportReport Importer::run(const std::vector<fs::path>& inputs) {
  if (inputs.empty()) {
    report_.error = Error{ErrorKind::Invalid, "nothing to import: no file or folder given"};
    return std::move(report_);
  }
  if (options_.copy_to_store && options_.store.empty()) options_.store = catalog_.local_folder() / "store";
  if (!options_.store.empty()) options_.store = absolute_path(options_.store);

  std::vector<PendingFile> pending;
  if (start_job(inputs, pending)) {
    // Which files were met walking a folder input, from the inputs alone (so a resumed job knows
    // too): below a folder input, and not an input themselves.
    std::unordered_set<std::string> named;
    std::vector<std::string> folders;
    for (const fs::path& input : inputs) {
      const fs::path abs = absolute_path(input);
      named.insert(abs.string());
      std::error_code ec;
      if (fs::is_directory(abs, ec)) {
        std::string prefix = abs.string();
        if (prefix.empty() || prefix.back() != '/') prefix += '/';
        folders.push_back(std::move(prefix));
      }
    }
    for (PendingFile& file : pending) {
      if (named.count(file.path)) continue;
      file.walked = std::any_of(folders.begin(), folders.end(),
                                [&](const std::string& prefix) { return file.path.compare(0, prefix.size(), prefix) == 0; });
    }
    auto stamps = catalog_.file_stamps();
    if (!stamps) {
      fail(stamps.error());
    } else {
      stamps_.reserve(stamps->size());
      for (auto& s : stamps.value()) stamps_.emplace(std::move(s.first), s.second);
      reporter_.total = report_.files;
      reporter_.earlier_done = report_.earlier.total();
      reporter_.start = Clock::now();
      process(std::move(pending));
    }
  }

  report_.seconds = std::chrono::duration<double>(Clock::now() - reporter_.start).count();
  if (report_.seconds > 0.0) report_.files_per_second = static_cast<double>(report_.counts.total()) / report_.seconds;
  if (report_.job_id != 0) {
    JsonObject summary;
    summary.add_raw("counts", to_json(report_.counts));
    summary.add_raw("earlier", to_json(report_.earlier));
    summary.add("files", static_cast<std::int64_t>(report_.files));
    summary.add("seconds", report_.seconds);
    if (report_.error) summary.add("error", report_.error->message);
    const JobStatus status = report_.error ? JobStatus::Failed : report_.interrupted ? JobStatus::Interrupted : JobStatus::Done;
    auto s = catalog_.set_job_status(report_.job_id, status, summary.str());
    if (!s) fail(s.error());
  }
  return std::move(report_);
}

}  // namespace

InstanceRecord instance_record(const dcm::Radiograph& image, const fs::path& path) {
  const dcm::Metadata& m = image.meta;
  InstanceRecord r;
  r.sop_instance_uid = m.sop_instance_uid;
  r.sop_class_uid = m.sop_class_uid;
  r.path = path.string();
  r.patient_id = m.patient_id;
  r.patient_name = m.patient_name;
  r.patient_birth_date = m.patient_birth_date;
  r.patient_sex = m.patient_sex;
  r.patient_age = m.patient_age;
  r.study_instance_uid = m.study_instance_uid;
  r.study_date = m.study_date;
  r.study_time = m.study_time;
  r.study_description = m.study_description;
  r.accession_number = m.accession_number;
  r.series_instance_uid = m.series_instance_uid;
  r.series_number = m.series_number;
  r.series_description = m.series_description;
  r.modality = m.modality;
  r.transfer_syntax_uid = m.transfer_syntax_uid;
  r.photometric = image.colour_photometric.empty() ? std::string(dcm::to_string(image.photometric)) : image.colour_photometric;
  r.rows = image.full_rows > 0 ? image.full_rows : image.rows;  // the file's size, also when read reduced
  r.columns = image.full_columns > 0 ? image.full_columns : image.columns;
  r.bits_stored = image.bits_stored;
  r.view_position = m.view_position;
  r.body_part = m.body_part_examined;
  r.laterality = m.laterality;
  if (m.pixel_spacing) {
    r.pixel_spacing_row = m.pixel_spacing->row_mm;
    r.pixel_spacing_column = m.pixel_spacing->column_mm;
  }
  r.acquisition_date = m.acquisition_date;
  r.acquisition_time = m.acquisition_time;
  r.burned_in_annotation = m.burned_in_annotation;
  return r;
}

std::string import_job_params(const std::vector<fs::path>& inputs, const ImportOptions& options) {
  std::vector<std::string> paths;
  paths.reserve(inputs.size());
  for (const auto& p : inputs) paths.push_back(absolute_path(p).string());
  std::sort(paths.begin(), paths.end());
  paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
  std::string list = "[";
  for (std::size_t i = 0; i < paths.size(); ++i) {
    if (i > 0) list += ",";
    list += json_escape(paths[i]);
  }
  list += "]";
  JsonObject o;
  o.add_raw("inputs", list);
  o.add("copy_to_store", options.copy_to_store);
  if (options.copy_to_store && !options.store.empty()) o.add("store", absolute_path(options.store).string());
  o.add("thumbnail_side", options.thumbnail_side);
  return o.str();
}

bool storable_uid(const std::string& uid) {
  if (uid.empty() || uid.size() > 64 || uid.front() == '.' || uid.back() == '.') return false;
  for (std::size_t i = 0; i < uid.size(); ++i) {
    const char c = uid[i];
    if (c == '.') {
      if (uid[i - 1] == '.') return false;
    } else if (c < '0' || c > '9') {
      return false;
    }
  }
  return true;
}

ReceivedFile import_received(Catalog& catalog, const fs::path& file, const ImportOptions& options, const fs::path& keep_refused_in) {
  static const ProgressFn none;
  Importer importer(catalog, options, none, nullptr);
  try {
    return importer.receive(file, keep_refused_in);
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove(file, ec);
    ReceivedFile out;
    out.reason = std::string("import stopped: ") + e.what();
    return out;
  }
}

const char* to_string(ReceivedFile::Outcome outcome) {
  switch (outcome) {
    case ReceivedFile::Outcome::Imported: return "imported";
    case ReceivedFile::Outcome::AlreadyPresent: return "already-present";
    case ReceivedFile::Outcome::Conflict: return "conflict";
    case ReceivedFile::Outcome::Skipped: return "skipped";
    case ReceivedFile::Outcome::Failed: return "failed";
  }
  return "failed";
}

ImportReport import_paths(Catalog& catalog, const std::vector<fs::path>& inputs, const ImportOptions& options,
                          const ProgressFn& progress, const std::atomic<bool>* cancel) {
  Importer importer(catalog, options, progress, cancel);
  try {
    return importer.run(inputs);
  } catch (const std::exception& e) {
    // Out of memory or a thread that could not be started: reported, never thrown across the API.
    ImportReport report;
    report.error = Error{ErrorKind::Io, std::string("import stopped: ") + e.what()};
    return report;
  }
}

}  // namespace hilum::app
