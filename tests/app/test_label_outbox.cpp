// Labels kept while the catalog cannot be reached (app/label_outbox.hpp): the journal survives a
// crash mid-write, kept changes are written once and in order when the catalog is back, a refused
// one is kept aside; on PostgreSQL, with the test's own server stopped and started again.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "catalog_support.hpp"
#include "hilum/app/label_outbox.hpp"
#include "hilum/app/label_sender.hpp"

namespace hilum::test {
namespace {

using app::LabelValue;

app::Error unreachable() { return {app::ErrorKind::CannotOpen, "the connection to the catalog server was lost; the change was not saved"}; }

// A catalog whose "server" a test can take away: while down, every write fails as a lost connection.
struct FlakyCatalog {
  app::Catalog* catalog = nullptr;
  bool down = false;
  bool lose_reply = false;  // commit, then report the connection lost (the reply never came)
  int attempts = 0;
  app::LabelOutbox::Writer writer() {
    return [this](const std::vector<app::LabelInput>& labels) -> app::Result<std::vector<std::int64_t>> {
      ++attempts;
      if (down) return unreachable();
      auto written = catalog->add_labels(labels);
      if (written && lose_reply) {
        lose_reply = false;
        return unreachable();
      }
      return written;
    };
  }
};

class LabelOutboxTest : public CatalogTest {
 protected:
  void SetUp() override {
    CatalogTest::SetUp();
    local_.emplace("HILUM_DATA_DIR", path("local").string());  // a PostgreSQL catalog's local folder: the test's
    catalog_.emplace(open_catalog());
    ASSERT_TRUE(catalog_->put_instances({record("8.1"), record("8.2")}).ok());
    flaky_.catalog = &*catalog_;
    journal_ = app::pending_labels_file(*catalog_);
  }
  app::LabelOutbox outbox() {
    auto o = app::LabelOutbox::open(journal_, flaky_.writer());
    EXPECT_TRUE(o.ok()) << (o.ok() ? "" : o.error().message);
    return std::move(o.value());
  }
  std::size_t events() { return catalog_->label_history()->size(); }
  std::optional<ScopedEnv> local_;
  std::optional<app::Catalog> catalog_;
  FlakyCatalog flaky_;
  fs::path journal_;
};

TEST_F(LabelOutboxTest, TheJournalLivesInTheCatalogsLocalFolderOnePerWorkstationAndReader) {
  EXPECT_EQ(journal_.parent_path(), catalog_->local_folder() / "pending-labels");
  EXPECT_NE(journal_.filename().string().find(catalog_->reader()), std::string::npos) << journal_;
}

TEST_F(LabelOutboxTest, AChangeMadeWhileTheCatalogIsAwayIsKeptAndWrittenOnceWhenItIsBack) {
  auto o = outbox();
  flaky_.down = true;
  auto kept = o.submit({reading("8.1", "Effusion", LabelValue::Present, "dr.a"), reading("8.1", "Mass", LabelValue::Absent, "dr.a")});
  ASSERT_TRUE(kept.ok()) << kept.error().message;
  EXPECT_FALSE(kept->saved);
  EXPECT_NE(kept->why_kept.find("not saved"), std::string::npos) << kept->why_kept;
  EXPECT_EQ(kept->journal_problem, "");
  EXPECT_EQ(o.pending(), 1);
  EXPECT_TRUE(fs::exists(journal_)) << "kept on disk, not only in memory";
  EXPECT_EQ(events(), 0u);
  // Still away: the retry fails again and keeps it.
  auto again = o.retry();
  EXPECT_EQ(again.saved, 0);
  ASSERT_TRUE(again.error.has_value());
  EXPECT_EQ(o.pending(), 1);
  // The program crashes: a new session reads the journal and, the catalog back, writes it once.
  auto after_crash = outbox();
  EXPECT_EQ(after_crash.pending(), 1);
  flaky_.down = false;
  auto r = after_crash.retry();
  EXPECT_EQ(r.saved, 1);
  EXPECT_FALSE(r.error.has_value());
  EXPECT_EQ(after_crash.pending(), 0);
  EXPECT_FALSE(fs::exists(journal_)) << "nothing left to keep";
  ASSERT_EQ(events(), 2u);
  auto mine = catalog_->reader_labels("8.1", "dr.a");
  ASSERT_TRUE(mine.ok());
  ASSERT_EQ(mine->size(), 2u);
  // The first session's copy of the journal is stale: retrying it writes nothing twice.
  auto stale = o.retry();
  EXPECT_EQ(stale.saved, 1);
  EXPECT_EQ(events(), 2u);
}

TEST_F(LabelOutboxTest, ARetryAfterACommitWhoseReplyWasLostWritesNothingTwice) {
  auto o = outbox();
  flaky_.lose_reply = true;
  auto kept = o.submit({reading("8.1", "Effusion", LabelValue::Present, "dr.a")});
  ASSERT_TRUE(kept.ok());
  EXPECT_FALSE(kept->saved) << "the reply was lost: the outbox cannot know it committed";
  EXPECT_EQ(events(), 1u);
  auto r = o.retry();
  EXPECT_EQ(r.saved, 1);
  EXPECT_EQ(o.pending(), 0);
  EXPECT_EQ(events(), 1u) << "the event key was stored: the retry found it";
}

TEST_F(LabelOutboxTest, KeptChangesAreSavedInTheOrderTheyWereMadeAndNewOnesWaitBehindThem) {
  auto o = outbox();
  flaky_.down = true;
  ASSERT_FALSE(o.submit({reading("8.1", "Effusion", LabelValue::Present, "dr.a")})->saved);
  ASSERT_FALSE(o.submit({reading("8.1", "Effusion", LabelValue::Absent, "dr.a")})->saved);
  EXPECT_EQ(o.pending(), 2);
  flaky_.down = false;
  // A new change once the catalog is back: the two kept ones go first.
  auto now = o.submit({reading("8.2", "Mass", LabelValue::Present, "dr.a")});
  ASSERT_TRUE(now.ok());
  EXPECT_TRUE(now->saved);
  EXPECT_EQ(o.pending(), 0);
  auto history = catalog_->label_history();
  ASSERT_EQ(history->size(), 3u);
  EXPECT_EQ(history->at(0).value, LabelValue::Present);
  EXPECT_EQ(history->at(1).value, LabelValue::Absent);
  EXPECT_EQ(history->at(2).sop_instance_uid, "8.2");
  EXPECT_EQ(catalog_->reader_labels("8.1", "dr.a")->at(0).value, LabelValue::Absent);
}

TEST_F(LabelOutboxTest, AChangeTheCatalogRefusesIsKeptAsideNeverDropped) {
  auto o = outbox();
  // Refused at once when the catalog is there: returned, not kept.
  auto refused_now = o.submit({reading("8.1", "No such finding", LabelValue::Present, "dr.a")});
  ASSERT_FALSE(refused_now.ok());
  EXPECT_EQ(o.pending(), 0);
  flaky_.down = true;
  ASSERT_FALSE(o.submit({reading("8.1", "No such finding", LabelValue::Present, "dr.a")})->saved);
  ASSERT_FALSE(o.submit({reading("8.2", "Mass", LabelValue::Present, "dr.a")})->saved);
  flaky_.down = false;
  auto r = o.retry();
  EXPECT_EQ(r.saved, 1);
  EXPECT_EQ(r.refused, 1);
  EXPECT_EQ(o.pending(), 0);
  EXPECT_EQ(o.refused(), 1);
  EXPECT_EQ(events(), 1u);
  auto reread = outbox();
  ASSERT_EQ(reread.changes().size(), 1u) << "the refused change stays in the journal";
  EXPECT_NE(reread.changes()[0].refused.find("unknown finding"), std::string::npos) << reread.changes()[0].refused;
  EXPECT_EQ(reread.changes()[0].labels.at(0).finding, "No such finding");
}

TEST_F(LabelOutboxTest, AnInvalidAnswerIsNotKept) {
  auto o = outbox();
  flaky_.down = false;
  auto clash = o.submit({reading("8.1", "No Finding", LabelValue::Present, "dr.a"), reading("8.1", "Mass", LabelValue::Present, "dr.a")});
  ASSERT_FALSE(clash.ok());
  EXPECT_EQ(clash.error().kind, app::ErrorKind::Invalid);
  EXPECT_EQ(o.pending(), 0);
  EXPECT_FALSE(fs::exists(journal_));
}

// Submitting a reading goes through the outbox like labels: kept while the catalog is away (in the
// journal, version 2 only then), written in order with the labels when it is back, once.
TEST_F(LabelOutboxTest, ASubmittedReadingIsKeptAndSavedInOrderWithTheLabels) {
  int submissions = 0;
  const app::LabelOutbox::Submitter submitter = [&](const app::ReadingSubmission& s) -> app::Status {
    ++submissions;
    if (flaky_.down) return unreachable();
    return catalog_->submit_reading(s.image, s.reader);
  };
  auto opened = app::LabelOutbox::open(journal_, flaky_.writer(), submitter);
  ASSERT_TRUE(opened.ok());
  app::LabelOutbox& o = opened.value();
  ASSERT_TRUE(o.submit({reading("8.2", "Mass", LabelValue::Present, "dr.a")})->saved);
  flaky_.down = true;
  ASSERT_FALSE(o.submit({reading("8.1", "Effusion", LabelValue::Present, "dr.a")})->saved);
  EXPECT_EQ(nlohmann::json::parse(app::LabelJournal::serialize(o.changes())).value("version", 0), 1) << "no submission: version 1";
  auto kept = o.submit_reading({"8.1", "dr.a"});
  ASSERT_TRUE(kept.ok()) << kept.error().message;
  EXPECT_FALSE(kept->saved);
  EXPECT_EQ(o.pending(), 2);
  // In the journal: a crash keeps it, and a new session reads it back.
  auto reread = app::LabelOutbox::open(journal_, flaky_.writer(), submitter);
  ASSERT_TRUE(reread.ok()) << reread.error().message;
  ASSERT_EQ(reread->changes().size(), 2u);
  ASSERT_TRUE(reread->changes()[1].submission.has_value());
  EXPECT_EQ(reread->changes()[1].submission->image, "8.1");
  EXPECT_EQ(reread->changes()[1].submission->reader, "dr.a");
  EXPECT_TRUE(reread->changes()[1].labels.empty());
  EXPECT_EQ(nlohmann::json::parse(app::LabelJournal::serialize(reread->changes())).value("version", 0), 2);
  EXPECT_FALSE(catalog_->reader_view("8.1", "dr.a")->submitted);
  flaky_.down = false;
  auto r = reread->retry();
  EXPECT_EQ(r.saved, 2);
  EXPECT_FALSE(r.error.has_value());
  EXPECT_EQ(r.saved_images, (std::vector<std::string>{"8.1", "8.1"}));
  EXPECT_TRUE(catalog_->reader_view("8.1", "dr.a")->submitted);
  EXPECT_EQ(catalog_->reader_labels("8.1", "dr.a")->size(), 1u);
  EXPECT_FALSE(fs::exists(journal_));
  // A change with labels and a submission, or with neither, is a damaged journal.
  EXPECT_FALSE(app::LabelJournal::parse(R"({"format":"hilum-pending-labels","version":2,"changes":[{"key":"k","created_at":"t",)"
                                        R"("labels":[],"submission":{"image":"8.1"}}]})").ok());
  EXPECT_FALSE(app::LabelJournal::parse(R"({"format":"hilum-pending-labels","version":2,"changes":[{"key":"k","created_at":"t","labels":[]}]})").ok());
}

// The sender writes kept changes on its own thread: while a retry waits for a server that does not
// answer (here a writer held at a gate), the caller's submit returns at once, keeps its change
// behind the pending one, and the retry running takes it too; both are written once, in order.
TEST_F(LabelOutboxTest, ASenderRetryWaitingForTheServerHoldsUpOnlyItsOwnThread) {
  const auto db = location();
  auto opened = app::LabelSender::open(journal_, [db] { return app::Catalog::open(db, app::Catalog::Mode::ReadWrite); });
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  app::LabelSender& sender = *opened.value();
  const app::LabelOutbox::Writer direct = [this](const std::vector<app::LabelInput>& in) { return catalog_->add_labels(in); };
  sender.set_writer([](const std::vector<app::LabelInput>&) -> app::Result<std::vector<std::int64_t>> { return unreachable(); });
  auto first = sender.submit({reading("8.1", "Effusion", LabelValue::Present, "dr.a")}, direct, nullptr);
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(first->saved);
  EXPECT_EQ(sender.pending(), 1);
  EXPECT_FALSE(sender.retrying());

  std::promise<void> entered, gate;
  std::shared_future<void> open_gate = gate.get_future().share();
  std::atomic<bool> told_entered = false;
  sender.set_writer([&, db](const std::vector<app::LabelInput>& in) -> app::Result<std::vector<std::int64_t>> {
    if (!told_entered.exchange(true)) entered.set_value();
    open_gate.wait();  // the server "does not answer" until the test opens the gate
    auto own = app::Catalog::open(db, app::Catalog::Mode::ReadWrite);  // this thread's own connection
    if (!own) return own.error();
    return own->add_labels(in);
  });
  std::promise<app::LabelOutbox::RetryReport> finished;
  ASSERT_TRUE(sender.retry([&](const app::LabelOutbox::RetryReport& r) { finished.set_value(r); }));
  ASSERT_EQ(entered.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(sender.retrying());
  EXPECT_FALSE(sender.retry(nullptr)) << "one retry at a time";
  const auto start = std::chrono::steady_clock::now();
  auto second = sender.submit({reading("8.2", "Mass", LabelValue::Absent, "dr.a")}, direct, nullptr);
  const auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->saved) << "kept behind the pending change, not written past it";
  EXPECT_LT(waited, std::chrono::seconds(2)) << "the submit did not wait for the retry";
  EXPECT_EQ(sender.pending(), 2);
  EXPECT_EQ(sender.changes().size(), 2u);
  EXPECT_EQ(events(), 0u);

  gate.set_value();
  auto done = finished.get_future();
  ASSERT_EQ(done.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  const auto report = done.get();
  EXPECT_EQ(report.saved, 2) << "the running retry took the change kept meanwhile";
  EXPECT_FALSE(report.error.has_value());
  EXPECT_EQ(sender.pending(), 0);
  EXPECT_FALSE(sender.retrying());
  EXPECT_FALSE(fs::exists(journal_));
  auto history = catalog_->label_history();
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ(history->at(0).sop_instance_uid, "8.1");
  EXPECT_EQ(history->at(1).sop_instance_uid, "8.2");
  // With nothing pending, a submit writes at once with the caller's catalog.
  sender.reset_writer();
  auto third = sender.submit({reading("8.2", "Nodule", LabelValue::Present, "dr.a")}, direct, nullptr);
  ASSERT_TRUE(third.ok());
  EXPECT_TRUE(third->saved);
  EXPECT_EQ(events(), 3u);
}

// ---- The journal file ---------------------------------------------------------------------------

std::vector<app::PendingChange> changes_numbered(int n, std::size_t comment_bytes) {
  std::vector<app::PendingChange> out;
  for (int i = 1; i <= n; ++i) {
    app::PendingChange c;
    c.key = "c" + std::to_string(i);
    c.created_at = "2026-12-05T12:00:00.000Z";
    auto in = reading("8.1", "Effusion", LabelValue::Present, "dr.a");
    in.comment = std::string(comment_bytes, 'x');
    in.event_key = c.key + "-1";
    c.labels.push_back(in);
    out.push_back(std::move(c));
  }
  return out;
}

TEST(LabelJournal, KeepsEveryFieldOfAChange) {
  app::PendingChange c;
  c.key = app::new_change_key();
  EXPECT_EQ(c.key.size(), 32u);
  EXPECT_NE(c.key, app::new_change_key());
  c.created_at = "2026-12-05T12:00:00.000Z";
  app::LabelInput in = reading("1.2.3", "Effusion", LabelValue::Uncertain, "dr.ä");
  in.region = app::Region{app::Region::Shape::Rectangle, 10.5, 20, 30, 40, {}};
  in.model_version = "hilum-cxr-v4";
  in.model_probability = 0.1;
  in.comment = "line 1\nline \"2\"";
  in.source = app::LabelSource::Gui;
  in.event_key = c.key + "-1";
  c.labels.push_back(in);
  c.refused = "no right";
  auto back = app::LabelJournal::parse(app::LabelJournal::serialize({c}));
  ASSERT_TRUE(back.ok()) << back.error().message;
  ASSERT_EQ(back->size(), 1u);
  const app::PendingChange& b = back->at(0);
  EXPECT_EQ(b.key, c.key);
  EXPECT_EQ(b.refused, "no right");
  const app::LabelInput& l = b.labels.at(0);
  EXPECT_EQ(l.image, "1.2.3");
  EXPECT_EQ(l.finding, "Effusion");
  EXPECT_EQ(l.value, LabelValue::Uncertain);
  EXPECT_EQ(l.author, "dr.ä");
  ASSERT_TRUE(l.region.has_value());
  EXPECT_EQ(l.region->x, 10.5);
  EXPECT_EQ(l.model_version, std::optional<std::string>("hilum-cxr-v4"));
  EXPECT_EQ(l.model_probability, std::optional<double>(0.1)) << "17 digits: the same double back";
  EXPECT_EQ(l.comment, in.comment);
  EXPECT_EQ(l.event_key, in.event_key);
  EXPECT_EQ(l.source, app::LabelSource::Gui);
  // A source the catalog would refuse is refused on reading the journal, naming it.
  std::string text = app::LabelJournal::serialize({c});
  const auto at = text.find("\"gui\"");
  ASSERT_NE(at, std::string::npos) << text;
  auto unknown = app::LabelJournal::parse(text.replace(at, 5, "\"api\""));
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().message.find("unknown label source \"api\""), std::string::npos) << unknown.error().message;
  EXPECT_FALSE(app::LabelJournal::parse("{\"format\":\"hilum-pending-labels\",\"version\":1,\"changes\":[{\"key\":\"k\"").ok());
}

TEST_F(LabelOutboxTest, ADamagedJournalIsRefusedAndLeftAsItIs) {
  fs::create_directories(journal_.parent_path());
  { std::ofstream(journal_) << "{\"format\":\"hilum-pending-labels\",\"version\":1,\"changes\":[{\"key\":"; }
  auto o = app::LabelOutbox::open(journal_, flaky_.writer());
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.error().kind, app::ErrorKind::Corrupt);
  EXPECT_NE(o.error().message.find("damaged"), std::string::npos) << o.error().message;
  EXPECT_EQ(file_bytes(journal_).substr(0, 10), "{\"format\":");
}

// A process killed while it replaces the journal (SIGKILL at a random moment, many times) leaves
// the earlier journal or the new one, complete, never a mix or a torn file.
TEST(LabelJournal, AKillMidWriteLeavesTheOldOrTheNewJournal) {
  const fs::path dir = fs::temp_directory_path() / ("hilum-journal-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const fs::path file = dir / "pending-labels" / "host_reader.json";
  int seen_old_or_new = 0;
  int last_seen = 0;
  for (int round = 0; round < 12; ++round) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {  // rewrites the journal with 1, 2, 3, ... changes (about 200 KB each) until killed
      auto journal = app::LabelJournal::open(file);
      if (!journal) ::_exit(2);
      const int start = static_cast<int>(journal->changes().size());
      for (int n = start + 1;; ++n) {
        if (!journal->store(changes_numbered(n, 200000 / n + 1))) ::_exit(3);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + 7 * round));
    ::kill(child, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer stopped by itself (status " << status << ")";
    auto journal = app::LabelJournal::open(file);
    ASSERT_TRUE(journal.ok()) << "round " << round << ": " << journal.error().message;
    const auto& changes = journal->changes();
    // A complete journal: changes c1..cN, each whole.
    for (std::size_t k = 0; k < changes.size(); ++k) {
      ASSERT_EQ(changes[k].key, "c" + std::to_string(k + 1)) << "round " << round;
      ASSERT_EQ(changes[k].labels.size(), 1u);
      ASSERT_EQ(changes[k].labels[0].comment.size(), 200000 / changes.size() + 1) << "round " << round;
    }
    EXPECT_GE(static_cast<int>(changes.size()), last_seen) << "never an older journal than one already seen";
    last_seen = static_cast<int>(changes.size());
    ++seen_old_or_new;
  }
  EXPECT_EQ(seen_old_or_new, 12);
  EXPECT_GT(last_seen, 0) << "the writer never finished a journal: the test did not test anything";
  fs::remove_all(dir);
}

// ---- PostgreSQL: the test's own server stopped mid-session, then started again -------------------

TEST_F(LabelOutboxTest, PostgresServerStoppedLabelKeptThenSavedOnceWhenItIsBack) {
  if (!pg::enabled()) GTEST_SKIP() << "the PostgreSQL run (ctest -L postgresql) checks this";
  ASSERT_TRUE(catalog_->add_labels({reading("8.2", "Mass", LabelValue::Present, "dr.a")}).ok());
  auto o = app::LabelOutbox::open(journal_, [this](const std::vector<app::LabelInput>& labels) { return catalog_->add_labels(labels); });
  ASSERT_TRUE(o.ok());
  ASSERT_EQ(pg::stop_server(), "");
  auto kept = o->submit({reading("8.1", "Effusion", LabelValue::Present, "dr.a")});
  ASSERT_TRUE(kept.ok()) << kept.error().message;
  EXPECT_FALSE(kept->saved);
  EXPECT_EQ(o->pending(), 1);
  auto still_down = o->retry();
  EXPECT_EQ(still_down.saved, 0);
  ASSERT_TRUE(still_down.error.has_value());
  EXPECT_EQ(still_down.error->kind, app::ErrorKind::CannotOpen) << still_down.error->message;
  ASSERT_EQ(pg::start_server(), "");
  const std::vector<app::LabelInput> kept_labels = o->changes().at(0).labels;
  auto r = o->retry();
  EXPECT_EQ(r.saved, 1) << (r.error ? r.error->message : "");
  EXPECT_EQ(o->pending(), 0);
  // Sent once more, as if its reply had been lost: the stored event's id, nothing written.
  auto twice = catalog_->add_labels(kept_labels);
  ASSERT_TRUE(twice.ok()) << twice.error().message;
  auto history = catalog_->label_history();
  ASSERT_TRUE(history.ok()) << history.error().message;
  ASSERT_EQ(history->size(), 2u) << "the earlier label and the kept one, each once";
  EXPECT_EQ(history->at(1).sop_instance_uid, "8.1");
  EXPECT_EQ(history->at(1).finding, "Effusion");
}

}  // namespace
}  // namespace hilum::test
