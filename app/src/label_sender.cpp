#include "hilum/app/label_sender.hpp"

namespace hilum::app {

Result<std::unique_ptr<LabelSender>> LabelSender::open(std::filesystem::path journal_file, Connect connect) {
  // The outbox's own writer is never used: the sender writes each change itself, outside its lock.
  auto outbox = LabelOutbox::open(std::move(journal_file), [](const std::vector<LabelInput>&) -> Result<std::vector<std::int64_t>> {
    return Error{ErrorKind::Invalid, "the label sender writes its changes itself"};
  });
  if (!outbox) return outbox.error();
  return std::unique_ptr<LabelSender>(new LabelSender(std::move(outbox.value()), std::move(connect)));
}

LabelSender::LabelSender(LabelOutbox outbox, Connect connect) : outbox_(std::move(outbox)), connect_(std::move(connect)) {
  thread_ = std::thread([this] { run(); });
}

LabelSender::~LabelSender() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

Result<LabelOutbox::Submitted> LabelSender::submit(std::vector<LabelInput> labels, const LabelOutbox::Writer& direct, const Done& done) {
  if (labels.empty()) return LabelOutbox::Submitted{true, {}, {}, {}};
  return submit_change(LabelOutbox::new_change(std::move(labels)), direct, {}, done);
}

Result<LabelOutbox::Submitted> LabelSender::submit_reading(ReadingSubmission submission, const LabelOutbox::Submitter& direct, const Done& done) {
  return submit_change(LabelOutbox::new_change(std::move(submission)), {}, direct, done);
}

Result<LabelOutbox::Submitted> LabelSender::submit_change(PendingChange change, const LabelOutbox::Writer& direct,
                                                          const LabelOutbox::Submitter& direct_submitter, const Done& done) {
  LabelOutbox::Submitted out;
  LabelOutbox::Writer writer;
  LabelOutbox::Submitter submitter;
  {
    std::lock_guard lock(mutex_);
    if (retrying_ || requested_ || outbox_.pending() > 0) {
      // Saved in the order made: behind the pending ones, by the sender's thread.
      out.why_kept = "earlier changes are not saved yet";
      out.journal_problem = outbox_.keep(std::move(change));
      if (!retrying_ && !requested_) {
        requested_ = done;
        wake_.notify_all();
      }
      return out;
    }
    writer = writer_ ? writer_ : direct;
    submitter = writer_ ? LabelOutbox::submitter_from(writer_) : direct_submitter;
  }
  auto now = LabelOutbox::write_now(writer, submitter, change, out);
  if (!now) return now.error();
  if (*now) return out;
  std::lock_guard lock(mutex_);
  out.journal_problem = outbox_.keep(std::move(change));
  return out;
}

bool LabelSender::retry(Done done) {
  std::lock_guard lock(mutex_);
  if (retrying_ || requested_ || outbox_.pending() == 0) return false;
  requested_ = std::move(done);
  wake_.notify_all();
  return true;
}

bool LabelSender::retrying() const {
  std::lock_guard lock(mutex_);
  return retrying_ || requested_.has_value();
}

int LabelSender::pending() const {
  std::lock_guard lock(mutex_);
  return outbox_.pending();
}

int LabelSender::refused() const {
  std::lock_guard lock(mutex_);
  return outbox_.refused();
}

std::vector<PendingChange> LabelSender::changes() const {
  std::lock_guard lock(mutex_);
  return outbox_.changes();
}

std::filesystem::path LabelSender::journal_file() const {
  std::lock_guard lock(mutex_);
  return outbox_.journal_file();
}

void LabelSender::set_writer(LabelOutbox::Writer writer) {
  std::lock_guard lock(mutex_);
  writer_ = std::move(writer);
}

void LabelSender::reset_writer() { set_writer({}); }

void LabelSender::set_connect(Connect connect) {
  std::lock_guard lock(mutex_);
  connect_ = std::move(connect);
  drop_connection_ = true;
}

void LabelSender::run() {
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait(lock, [this] { return stop_ || requested_.has_value(); });
    if (stop_) break;
    Done done = std::move(*requested_);
    requested_.reset();
    retrying_ = true;
    lock.unlock();
    const LabelOutbox::RetryReport report = send_pending();
    if (done) done(report);
    lock.lock();
    // retrying_ was cleared by send_pending under the lock when nothing was left to send (so that a
    // change kept just then starts a retry of its own), or here after an unreachable catalog.
    retrying_ = false;
  }
  lock.unlock();
  catalog_.reset();
}

LabelOutbox::RetryReport LabelSender::send_pending() {
  LabelOutbox::RetryReport report;
  while (true) {
    std::optional<PendingChange> next;
    LabelOutbox::Writer writer;
    Connect connect;
    {
      std::lock_guard lock(mutex_);
      if (stop_) break;
      next = outbox_.next_pending();
      if (!next) {
        retrying_ = false;
        break;
      }
      writer = writer_;
      connect = connect_;
      if (drop_connection_) {
        catalog_.reset();
        drop_connection_ = false;
      }
    }
    Result<std::vector<std::int64_t>> written = Error{ErrorKind::Invalid, "not written"};
    if (writer) {
      written = LabelOutbox::write(*next, writer, {});
    } else {
      if (!catalog_) {
        auto opened = connect();
        if (opened) catalog_.emplace(std::move(opened.value()));
        else written = Error{ErrorKind::CannotOpen, opened.error().message};  // never a refusal of the change
      }
      if (catalog_) {
        written = LabelOutbox::write(
            *next, [this](const std::vector<LabelInput>& in) { return catalog_->add_labels(in); },
            [this](const ReadingSubmission& s) { return catalog_->submit_reading(s.image, s.reader); });
      }
      // A connection that failed is opened afresh next time (the server may come back elsewhere).
      if (!written && is_unreachable(written.error())) catalog_.reset();
    }
    std::lock_guard lock(mutex_);
    if (!outbox_.settle(next->key, written, report)) break;
  }
  return report;
}

}  // namespace hilum::app
