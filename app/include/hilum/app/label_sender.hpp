// Hilum app: the outbox of unsaved labels (app/label_outbox.hpp) written from a thread of its own,
// with its own catalog connection. A catalog server that accepts the connection and never answers
// holds up a write for the whole connect timeout; a retry on the GUI's thread froze the window for
// that long. Here the retries run on the sender's thread, and the caller's thread only ever takes
// a short lock (never held while a write waits for the server). Thread-safe; no Qt here: the GUI
// posts the reports back to its own thread (ui/src/session.cpp).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "hilum/app/catalog.hpp"
#include "hilum/app/label_outbox.hpp"

namespace hilum::app {

class LabelSender {
 public:
  // Opens the sender's own connection to the catalog (called on the sender's thread, when a retry
  // needs it; again after the catalog could not be reached).
  using Connect = std::function<Result<Catalog>()>;
  // A finished retry (called on the sender's thread).
  using Done = std::function<void(const LabelOutbox::RetryReport&)>;

  // Opens the journal at `journal_file` (what an earlier session kept is pending again).
  static Result<std::unique_ptr<LabelSender>> open(std::filesystem::path journal_file, Connect connect);
  // Waits for the attempt in progress (at most the connect timeout), then stops the thread.
  ~LabelSender();
  LabelSender(const LabelSender&) = delete;
  LabelSender& operator=(const LabelSender&) = delete;

  // Writes `labels` as one change with `direct` (the caller's catalog, on the caller's thread) when
  // nothing is pending and no retry is running; else keeps it after the pending ones without any
  // write on the caller's thread, and starts a retry (whose report goes to `done`). Kept as well
  // when `direct` finds the catalog unreachable; any other error is returned and nothing is kept.
  [[nodiscard]] Result<LabelOutbox::Submitted> submit(std::vector<LabelInput> labels, const LabelOutbox::Writer& direct, const Done& done);
  // The same for a submitted reading (Catalog::submit_reading with `direct`): kept and retried in
  // the same order as the labels.
  [[nodiscard]] Result<LabelOutbox::Submitted> submit_reading(ReadingSubmission submission, const LabelOutbox::Submitter& direct,
                                                              const Done& done);
  // Starts writing the pending changes on the sender's thread, in order; `done` gets the report.
  // False (and `done` is not called) when a retry is running already (it takes every change kept
  // meanwhile) or nothing is pending.
  bool retry(Done done);
  [[nodiscard]] bool retrying() const;

  [[nodiscard]] int pending() const;
  [[nodiscard]] int refused() const;
  [[nodiscard]] std::vector<PendingChange> changes() const;
  [[nodiscard]] std::filesystem::path journal_file() const;

  // Tests: every write (direct and retries) goes to `writer` instead (called on either thread;
  // submissions call it with no labels); reset_writer() goes back to the catalogs. set_connect replaces how the sender connects (the
  // connection it holds is closed first).
  void set_writer(LabelOutbox::Writer writer);
  void reset_writer();
  void set_connect(Connect connect);

 private:
  LabelSender(LabelOutbox outbox, Connect connect);
  Result<LabelOutbox::Submitted> submit_change(PendingChange change, const LabelOutbox::Writer& direct,
                                               const LabelOutbox::Submitter& direct_submitter, const Done& done);
  void run();
  LabelOutbox::RetryReport send_pending();

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  LabelOutbox outbox_;
  Connect connect_;
  LabelOutbox::Writer writer_;  // tests' override, else empty
  std::optional<Catalog> catalog_;  // the sender's own connection (its thread only)
  bool drop_connection_ = false;
  std::optional<Done> requested_;   // a retry asked for and not started
  bool retrying_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace hilum::app
