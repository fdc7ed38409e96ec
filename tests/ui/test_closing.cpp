// Issue 16, item 15: closing the workstation while an import or a fine-tune runs asks first, cancels
// the jobs and closes as soon as they have stopped (what they did is kept and an import resumes when
// run again); declining keeps everything running. A malformed stored setting never throws out of a
// slot. Driven offscreen (QT_QPA_PLATFORM=offscreen).
#include <QApplication>
#include <QSettings>
#include <QSignalSpy>
#include <QtTest>

#include <chrono>
#include <filesystem>
#include <memory>

#include "hilum/app/catalog.hpp"
#include "import_dialog.hpp"
#include "learning.hpp"
#include "main_window.hpp"
#include "main_window_fixture.hpp"
#include "ui_fixtures.hpp"

namespace fs = std::filesystem;
using namespace hilum;

class Closing : public QObject {
  Q_OBJECT

 private:
  fs::path dir_;
  fs::path db_;
  fs::path many_;  // enough files that an import is still running when the window is closed
  static constexpr int kMany = 400;

  std::unique_ptr<ui::MainWindow> open_window(const fs::path& db, ui::Preferences prefs = {}) { return uitest::open_main_window(db, std::move(prefs)); }

 private Q_SLOTS:
  void initTestCase() {
    dir_ = uitest::make_temp_dir("hilum-ui-closing");
    // QSettings of this test only (never the user's).
    QSettings::setDefaultFormat(QSettings::IniFormat);
    QSettings::setPath(QSettings::IniFormat, QSettings::UserScope, QString::fromStdString((dir_ / "settings").string()));
    db_ = dir_ / "hilum.db";
    uitest::write_phantoms(dir_ / "dicom", 6, 1, 128, 128);
    uitest::import_into(db_, {dir_ / "dicom"});
    uitest::write_random_vit(dir_ / "vit");
    uitest::register_model(db_, dir_ / "vit", "random-vit-1");
    many_ = dir_ / "many";
    uitest::write_phantoms(many_, kMany, 1, 64, 64);
  }

  void cleanupTestCase() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void closingWithoutJobsAsksNothing() {
    auto w = open_window(db_);
    int asked = 0;
    w->set_quit_question([&](const QString&) { return ++asked, true; });
    QVERIFY(w->running_jobs().isEmpty());
    QVERIFY(w->close());
    QVERIFY(!w->isVisible());
    QCOMPARE(asked, 0);
  }

  void closingDuringAnImportAsksCancelsAndTheImportResumes() {
    const fs::path db = dir_ / "import.db";  // (the phantoms of many_ repeat the patients and UIDs of dicom/)
    auto w = open_window(db);
    QStringList questions;
    w->set_quit_question([&](const QString& q) {
      questions << q;
      return true;
    });
    QPointer<ui::ImportDialog> dialog = w->import_paths({many_});
    QVERIFY(dialog->running());
    QSignalSpy finished(dialog.data(), &ui::ImportDialog::finished_import);
    const auto t0 = std::chrono::steady_clock::now();
    QVERIFY(!w->close());  // not yet: the import is asked to stop first
    QCOMPARE(questions.size(), 1);
    QVERIFY2(questions[0].contains("an import"), qPrintable(questions[0]));
    QVERIFY(w->quitting());
    QVERIFY(w->isVisible());
    // A second close while stopping asks nothing more.
    QVERIFY(!w->close());
    QCOMPARE(questions.size(), 1);
    QTRY_VERIFY_WITH_TIMEOUT(!w->isVisible(), 20000);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    QCOMPARE(finished.count(), 1);
    QVERIFY(dialog);
    const auto* report = dialog->report();
    QVERIFY(report != nullptr);
    QVERIFY2(report->interrupted, "the import ran to its end instead of stopping");
    QVERIFY(report->counts.imported < static_cast<std::size_t>(kMany));
    qInfo("closed %.2f s after the request, %zu of %d files imported", seconds, report->counts.imported, kMany);
    w.reset();

    // Next time, the same import continues where it stopped and finishes.
    auto again = open_window(db);
    QPointer<ui::ImportDialog> second = again->import_paths({many_});
    QTRY_VERIFY_WITH_TIMEOUT(!second->running(), 60000);
    const auto* resumed = second->report();
    QVERIFY(resumed != nullptr);
    QVERIFY(resumed->resumed);
    QVERIFY(!resumed->interrupted);
    QCOMPARE(resumed->earlier.imported + resumed->counts.imported, static_cast<std::size_t>(kMany));
    QVERIFY(again->close());
  }

  void decliningKeepsTheWindowAndTheImport() {
    const fs::path db = dir_ / "declined.db";
    auto w = open_window(db);
    int asked = 0;
    w->set_quit_question([&](const QString&) { return ++asked, false; });
    QPointer<ui::ImportDialog> dialog = w->import_paths({many_});
    QVERIFY(!w->close());
    QCOMPARE(asked, 1);
    QVERIFY(!w->quitting());
    QVERIFY(w->isVisible());
    QTRY_VERIFY_WITH_TIMEOUT(!dialog->running(), 60000);
    QVERIFY(!dialog->report()->interrupted);
    QCOMPARE(dialog->report()->counts.imported, static_cast<std::size_t>(kMany));
    QVERIFY(w->isVisible());  // the finished import does not close the window by itself
    QVERIFY(w->close());
    QCOMPARE(asked, 1);
  }

  void closingDuringAFinetuneCancelsIt() {
    uitest::label_every_image(db_);
    auto w = open_window(db_);
    QStringList questions;
    w->set_quit_question([&](const QString& q) {
      questions << q;
      return true;
    });
    auto* dialog = w->show_finetune();
    app::FinetuneOptions options;
    options.strategy = app::Strategy::Full;
    options.epochs = 200;  // far longer than the test allows: only a cancel ends it in time
    options.author = "dr.test";
    dialog->set_options(options);
    QSignalSpy done(dialog, &ui::FinetuneDialog::finished_finetune);
    dialog->start();
    QVERIFY(dialog->running());
    QVERIFY(!w->close());
    QCOMPARE(questions.size(), 1);
    QVERIFY2(questions[0].contains("a fine-tune"), qPrintable(questions[0]));
    QTRY_VERIFY_WITH_TIMEOUT(!w->isVisible(), 60000);
    QCOMPARE(done.count(), 1);
    QCOMPARE(done.at(0).at(0).toBool(), false);
    QVERIFY2(!dialog->result().has_value(), "the fine-tune finished instead of stopping");
    QVERIFY2(dialog->error().contains("cancelled"), qPrintable(dialog->error()));
  }

  void aMalformedStoredSettingDoesNotThrowOutOfASlot() {
    // The auto fine-tune mark, stored in the catalog, damaged.
    {
      auto c = app::Catalog::open(db_);
      QVERIFY(c->set_setting("ui.auto_finetune.after_event", "not a number").ok());
    }
    ui::Preferences p;
    p.auto_finetune_after = 1000;  // read, but far from reached: no fine-tune starts
    auto w = open_window(db_, p);
    QTRY_VERIFY_WITH_TIMEOUT(w->viewer()->has_image(), 10000);
    // Labelling runs the slot that reads the mark.
    QVERIFY(w->labeller()->set_value("Nodule", app::LabelValue::Present));
    QTRY_VERIFY_WITH_TIMEOUT(w->running_jobs().isEmpty(), 1000);
    QVERIFY(w->close());

    // Preferences edited by hand.
    {
      QSettings s;
      s.setValue("threads", "lots");
      s.setValue("auto_finetune_after", 100000000);
    }
    const auto prefs = ui::Preferences::load();
    QCOMPARE(prefs.threads, 0);
    QCOMPARE(prefs.auto_finetune_after, 0);
  }
};

QTEST_MAIN(Closing)
#include "test_closing.moc"
