// Hilum app: labels that could not be saved yet. When the catalog's server (PostgreSQL) cannot be
// reached, a reader's change is kept, in memory and in a small journal file beside the catalog
// (written atomically, so that a crash of the program keeps it too), and written when the
// connection comes back (LabelOutbox::retry), in the order it was made, exactly once: each label of
// a change carries a client-generated event key (LabelInput::event_key), which the catalog stores
// once, so that a retry after an attempt that committed but whose reply was lost writes nothing
// twice. The GUI binds it (ui/src/session.cpp); no Qt here.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hilum/app/catalog.hpp"

namespace hilum::app {

// A reader's reading of an image marked as submitted (Catalog::submit_reading; idempotent, so that
// a retry after a lost reply writes nothing twice).
struct ReadingSubmission {
  std::string image;   // SOP Instance UID or a path in the catalog
  std::string reader;
};

// One change a reader made: labels written together (all or nothing), or a reading submitted.
struct PendingChange {
  std::string key;                 // client-generated, unique; its labels' event keys are key + "-" + k
  std::string created_at;          // when the reader made it (ISO 8601 UTC)
  std::vector<LabelInput> labels;  // with their event keys (empty for a submission)
  std::optional<ReadingSubmission> submission;  // a submitted reading instead of labels
  std::string refused;             // why the catalog refused it on a retry (then it is no longer retried)
  [[nodiscard]] const std::string& image() const;  // the image the change is about
};

// The journal of the changes not yet saved: a JSON file replaced atomically on every change (a
// crash mid-write leaves the earlier journal or the new one, never a mix).
class LabelJournal {
 public:
  // Reads `file` (no file: an empty journal). A damaged journal is refused (ErrorKind::Corrupt) and
  // left as it is.
  static Result<LabelJournal> open(std::filesystem::path file);
  [[nodiscard]] const std::filesystem::path& file() const { return file_; }
  [[nodiscard]] const std::vector<PendingChange>& changes() const { return changes_; }
  // Replaces the journal's content, in memory and on disk (atomically; the file is removed when
  // nothing is left). On an error the memory holds `changes` and the file its earlier content.
  [[nodiscard]] Status store(std::vector<PendingChange> changes);

  [[nodiscard]] static std::string serialize(const std::vector<PendingChange>& changes);
  [[nodiscard]] static Result<std::vector<PendingChange>> parse(std::string_view text);

 private:
  std::filesystem::path file_;
  std::vector<PendingChange> changes_;
};

// Where the journal of `catalog`'s unsaved labels lives: <local_folder>/pending-labels/<host>_<reader>.json
// (a server catalog's local folder may be shared by several workstations: one journal each).
[[nodiscard]] std::filesystem::path pending_labels_file(const Catalog& catalog);

// Whether an error means "the catalog could not be reached; the same change may succeed later"
// (a lost or refused connection, a lock held too long) rather than "this change is refused".
[[nodiscard]] bool is_unreachable(const Error& error);

// A fresh client key (32 hexadecimal digits from the system's random source).
[[nodiscard]] std::string new_change_key();

class LabelOutbox {
 public:
  // Writes one change (Catalog::add_labels on the GUI's catalog; tests put a failing one here).
  using Writer = std::function<Result<std::vector<std::int64_t>>(const std::vector<LabelInput>&)>;
  // Submits a reading (Catalog::submit_reading on the GUI's catalog).
  using Submitter = std::function<Status(const ReadingSubmission&)>;
  // A submitter for tests that fail or pass writes together: `writer` called with no labels.
  [[nodiscard]] static Submitter submitter_from(Writer writer);
  // Writes `change` with `writer`, or (a submission) with `submitter`; a submission has no ids.
  [[nodiscard]] static Result<std::vector<std::int64_t>> write(const PendingChange& change, const Writer& writer, const Submitter& submitter);

  // Opens the journal at `journal_file` (what an earlier session kept is pending again).
  // Without a submitter, submissions kept are written through `writer` called with no labels.
  static Result<LabelOutbox> open(std::filesystem::path journal_file, Writer writer, Submitter submitter = {});
  void set_writer(Writer writer) {
    submitter_ = submitter_from(writer);
    writer_ = std::move(writer);
  }

  struct Submitted {
    bool saved = false;             // written to the catalog; else kept (pending)
    std::vector<std::int64_t> ids;  // the events' ids when saved
    std::string why_kept;           // the catalog's error, when kept
    std::string journal_problem;    // when kept but the journal file could not be written ("" = durable)
  };
  // Writes `labels` as one change. Changes kept earlier are retried first; while any is still
  // pending, this one is kept after them (changes are saved in the order they were made). Kept when
  // the catalog is unreachable (is_unreachable); any other error (invalid input, no right) is
  // returned and nothing is kept.
  [[nodiscard]] Result<Submitted> submit(std::vector<LabelInput> labels);
  // The same for a submitted reading: kept and retried like labels, in the same order.
  [[nodiscard]] Result<Submitted> submit_reading(ReadingSubmission submission);

  struct RetryReport {
    int saved = 0;                         // changes written now
    int refused = 0;                       // changes the catalog refused now (kept aside, never dropped)
    std::vector<std::string> saved_images; // the images whose labels were written or refused
    std::optional<Error> error;            // why the first change still pending failed (unreachable), or a refusal
    std::string journal_problem;
  };
  // Tries the pending changes in order, stopping at the first one the catalog cannot be reached
  // for. A change the catalog refuses is kept aside (PendingChange::refused, still in the journal).
  RetryReport retry();

  // The steps of submit and retry, for a caller that writes on another thread (app::LabelSender)
  // and must not hold the outbox while a write waits for the server:
  // a change of `labels` with a fresh key, its labels' event keys set;
  [[nodiscard]] static PendingChange new_change(std::vector<LabelInput> labels);
  [[nodiscard]] static PendingChange new_change(ReadingSubmission submission);
  // writes `change` with `writer` at once: true when saved (`out` says so), false when the catalog
  // could not be reached (`out.why_kept` says why; keep it), the error when the catalog refused it;
  [[nodiscard]] static Result<bool> write_now(const Writer& writer, const Submitter& submitter, const PendingChange& change, Submitted& out);
  // keeps `change` after the pending ones without trying to write it ("" or the journal's problem);
  [[nodiscard]] std::string keep(PendingChange change);
  // the first change still to save (a copy), if any;
  [[nodiscard]] std::optional<PendingChange> next_pending() const;
  // records what writing the change `key` gave (saved: dropped; refused: kept aside), into `report`.
  // False when the catalog could not be reached (the change stays pending; stop there).
  bool settle(const std::string& key, const Result<std::vector<std::int64_t>>& written, RetryReport& report);

  [[nodiscard]] int pending() const;  // changes still to save (refused ones left out)
  [[nodiscard]] int refused() const;
  [[nodiscard]] const std::vector<PendingChange>& changes() const { return journal_.changes(); }
  [[nodiscard]] const std::filesystem::path& journal_file() const { return journal_.file(); }

 private:
  LabelOutbox(LabelJournal journal, Writer writer, Submitter submitter)
      : journal_(std::move(journal)), writer_(std::move(writer)), submitter_(std::move(submitter)) {}
  Result<Submitted> submit_change(PendingChange change);
  LabelJournal journal_;
  Writer writer_;
  Submitter submitter_;
};

}  // namespace hilum::app
