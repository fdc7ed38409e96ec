// Labels the catalog cannot take (its server went away; here a failing writer is put in the
// session's outbox): the reader's change is shown as set, the status bar says "not yet saved (N)"
// with "Retry now", the journal beside the catalog holds it, and it is written once when the
// catalog is back, by the button or by the automatic retry (on the sender's thread: the results come
// back to the window asynchronously).
#include <QApplication>
#include <QLabel>
#include <QPushButton>
#include <QStatusBar>
#include <QtTest>

#include <atomic>
#include <filesystem>
#include <memory>

#include "hilum/app/catalog.hpp"
#include "hilum/app/label_outbox.hpp"
#include "main_window.hpp"
#include "main_window_fixture.hpp"
#include "ui_fixtures.hpp"

namespace fs = std::filesystem;
using namespace hilum;

class PendingLabels : public QObject {
  Q_OBJECT

 private:
  fs::path dir_;
  fs::path db_;
  std::unique_ptr<ui::MainWindow> window_;
  std::atomic<int> attempts_ = 0;  // the writer runs on the GUI thread and on the sender's

  std::vector<app::LabelEvent> history() {
    auto c = app::Catalog::open(db_);
    return c->label_history().value();
  }
  // The catalog "goes away": every write fails as a lost connection would.
  void take_the_catalog_away() {
    window_->session()->outbox().set_writer([this](const std::vector<app::LabelInput>&) -> app::Result<std::vector<std::int64_t>> {
      ++attempts_;
      return app::Error{app::ErrorKind::CannotOpen, "the connection to the catalog server was lost; this change was not saved"};
    });
  }
  // Back: the GUI writes with its catalog, the sender with its own connection.
  void bring_it_back() { window_->session()->outbox().reset_writer(); }
  bool idle() { return !window_->session()->outbox().retrying(); }
  QLabel* indicator() { return window_->findChild<QLabel*>("pendingLabels"); }
  QPushButton* retry_button() { return window_->findChild<QPushButton*>("retryLabels"); }

 private Q_SLOTS:
  void initTestCase() {
    dir_ = uitest::make_temp_dir("hilum-ui-pending");
    db_ = dir_ / "hilum.db";
    uitest::write_phantoms(dir_ / "dicom", 2, 1, 320, 256);
    uitest::import_into(db_, {dir_ / "dicom"});
    window_ = uitest::open_main_window(db_);
    QTRY_VERIFY_WITH_TIMEOUT(window_->current_item().has_value(), 10000);
  }

  void cleanupTestCase() {
    window_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void showsNotYetSavedAndRetriesNow() {
    QVERIFY(indicator() != nullptr && retry_button() != nullptr);
    QVERIFY(!indicator()->isVisible());
    QVERIFY(!retry_button()->isVisible());
    take_the_catalog_away();
    QSignalSpy kept(window_->labeller(), &ui::Labeller::kept);
    QVERIFY(window_->labeller()->set_value("Effusion", app::LabelValue::Present));
    QCOMPARE(kept.count(), 1);
    // Shown as set, counted as pending, kept on disk; nothing in the catalog yet.
    QCOMPARE(window_->labeller()->state("Effusion").value, app::LabelValue::Present);
    QVERIFY(window_->findChild<QLabel*>("labelSaved")->text().contains("Not yet saved"));
    QVERIFY(indicator()->isVisible());
    QCOMPARE(indicator()->text(), QString("not yet saved (1)"));
    QVERIFY(retry_button()->isVisible());
    QVERIFY(indicator()->toolTip().contains("connection to the catalog server was lost"));
    QVERIFY(fs::exists(window_->session()->outbox().journal_file()));
    QVERIFY(window_->session()->outbox().journal_file().string().find((dir_ / "pending-labels").string()) == 0);
    QCOMPARE(history().size(), std::size_t{0});
    // A second change waits behind the first.
    QVERIFY(window_->labeller()->set_value("Mass", app::LabelValue::Absent));
    QCOMPARE(indicator()->text(), QString("not yet saved (2)"));
    QCOMPARE(window_->labeller()->state("Mass").value, app::LabelValue::Absent);
    // Still away: "Retry now" fails again and keeps both.
    QTRY_VERIFY(idle());
    const int before = attempts_;
    QTest::mouseClick(retry_button(), Qt::LeftButton);
    QTRY_VERIFY(attempts_ > before);
    QTRY_VERIFY(idle());
    QCOMPARE(indicator()->text(), QString("not yet saved (2)"));
    // Back: "Retry now" writes both, once each, in order, and the indicator goes.
    bring_it_back();
    QTest::mouseClick(retry_button(), Qt::LeftButton);
    QTRY_VERIFY(!indicator()->isVisible());
    QVERIFY(!retry_button()->isVisible());
    const auto events = history();
    QCOMPARE(events.size(), std::size_t{2});
    QCOMPARE(events[0].finding, std::string("Effusion"));
    QCOMPARE(events[0].source, app::LabelSource::Gui);
    QCOMPARE(events[1].finding, std::string("Mass"));
    QVERIFY(!fs::exists(window_->session()->outbox().journal_file()));
    QCOMPARE(window_->labeller()->state("Effusion").value, app::LabelValue::Present);
  }

  void retriesByItselfWhenTheCatalogIsBack() {
    take_the_catalog_away();
    QVERIFY(window_->labeller()->set_value("Nodule", app::LabelValue::Present));
    QCOMPARE(indicator()->text(), QString("not yet saved (1)"));
    bring_it_back();
    // No click: the session's timer retries every few seconds.
    QTRY_VERIFY_WITH_TIMEOUT(!indicator()->isVisible(), 3 * ui::Session::kRetryMs);
    QTRY_VERIFY(idle());
    const auto events = history();
    QCOMPARE(events.size(), std::size_t{3});
    QCOMPARE(events[2].finding, std::string("Nodule"));
  }

  // The GUI crashes with a change kept: the next session finds it in the journal and saves it.
  void aNewSessionSavesWhatTheLastOneKept() {
    take_the_catalog_away();
    QVERIFY(window_->labeller()->set_value("Nodule", app::LabelValue::Absent));
    QCOMPARE(indicator()->text(), QString("not yet saved (1)"));
    window_.reset();  // as a crash would leave it: the journal on disk
    window_ = uitest::open_main_window(db_);
    // The next test labels the film this window opens (asynchronously, as initTestCase waits for).
    QTRY_VERIFY_WITH_TIMEOUT(window_->current_item().has_value(), 10000);
    QTRY_VERIFY_WITH_TIMEOUT(history().size() == 4, 10000);
    QCOMPARE(history()[3].finding, std::string("Nodule"));
    QCOMPARE(history()[3].value, app::LabelValue::Absent);
    QTRY_VERIFY_WITH_TIMEOUT(!indicator()->isVisible(), 10000);
  }

  // "Submit my reading" while the catalog is away: kept behind the label, shown as submitted, and
  // saved with it when the catalog is back. (Before, the submission failed with an error and was lost.)
  void aSubmittedReadingIsKeptAndSavedToo() {
    const std::string image = window_->labeller()->image().toStdString();
    QVERIFY(!image.empty());
    const auto submitted = [&] {
      auto c = app::Catalog::open(db_);
      return c->reader_view(image, "dr.test")->submitted;
    };
    QVERIFY(!submitted());
    QVERIFY(!window_->labeller()->submitted());
    take_the_catalog_away();
    QVERIFY(window_->labeller()->set_value("Atelectasis", app::LabelValue::Present));
    QVERIFY(window_->labeller()->submit());
    QVERIFY(window_->labeller()->submitted());
    QCOMPARE(indicator()->text(), QString("not yet saved (2)"));
    QVERIFY(!submitted());
    QTRY_VERIFY(idle());
    bring_it_back();
    QTest::mouseClick(retry_button(), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(!indicator()->isVisible(), 10000);
    QVERIFY(submitted());
    QVERIFY(window_->labeller()->submitted());
    QCOMPARE(history().back().finding, std::string("Atelectasis"));
  }

  // Blinded reading with the AI withheld: a reading submitted while the catalog is away shows the
  // AI's findings once it is saved, not only the others' labels. (Before, the panel kept saying
  // "withheld" until the film was opened again.)
  void aKeptSubmissionShowsTheAiOnceSaved() {
    {
      auto c = app::Catalog::open(db_);
      QVERIFY(c && c->set_blinding(app::Blinding::LabelsAndAi).ok());
    }
    // A film not yet submitted, opened under blinding: the AI's findings are withheld.
    QString other;
    for (const auto& item : window_->worklist()->items())
      if (QString::fromStdString(item.sop_instance_uid) != window_->labeller()->image()) other = QString::fromStdString(item.sop_instance_uid);
    QVERIFY(!other.isEmpty());
    QVERIFY(window_->worklist()->select(other));
    QTRY_VERIFY_WITH_TIMEOUT(window_->labeller()->image() == other, 10000);
    QVERIFY(window_->labeller()->ai_hidden());
    const auto ai_says = [&] { return window_->ai()->findChild<QLabel*>("aiModel")->text(); };
    QCOMPARE(ai_says(), QString("AI findings withheld"));
    QVERIFY(!window_->findChild<QPushButton*>("acceptAiButton")->isEnabled());  // nothing to accept

    take_the_catalog_away();
    QVERIFY(window_->labeller()->submit());
    QVERIFY(window_->labeller()->submitted());
    QCOMPARE(indicator()->text(), QString("not yet saved (1)"));
    // Not saved: still withheld (the catalog does not know of the submission yet).
    QTest::qWait(200);
    QCOMPARE(ai_says(), QString("AI findings withheld"));
    QTRY_VERIFY(idle());

    QSignalSpy shown(window_.get(), &ui::MainWindow::predictionsShown);
    bring_it_back();
    QTest::mouseClick(retry_button(), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(!indicator()->isVisible(), 10000);
    QVERIFY(!window_->labeller()->ai_hidden());
    // The AI's answer for this film replaces "withheld" (here: that there is no model; the test
    // runs without the built-in one).
    QTRY_VERIFY_WITH_TIMEOUT(!shown.isEmpty() && shown.back().front().toString() == other, 30000);
    QVERIFY(ai_says().startsWith("No model"));
  }
};

QTEST_MAIN(PendingLabels)
#include "test_pending_labels.moc"
