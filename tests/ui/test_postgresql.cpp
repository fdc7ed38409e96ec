// The GUI as a department's reader uses it: opened on a "postgresql://" catalog (a throwaway server
// this test starts, tests/app/pg_server.cpp), it lists the worklist, opens a film and labels it as
// the database role; when the server goes away a label is kept ("not yet saved (1)") and written
// once when it is back. Label `postgresql`: registered when the server's binaries are found.
#include <QApplication>
#include <QLabel>
#include <QPushButton>
#include <QtTest>

#include <cstdlib>
#include <filesystem>
#include <memory>

#include "hilum/app/catalog.hpp"
#include "main_window.hpp"
#include "main_window_fixture.hpp"
#include "pg_server.hpp"
#include "ui_fixtures.hpp"

namespace fs = std::filesystem;
using namespace hilum;

class PostgresReader : public QObject {
  Q_OBJECT

 private:
  fs::path dir_;
  std::string url_;
  std::unique_ptr<ui::MainWindow> window_;

  std::vector<app::LabelEvent> history() {
    auto c = app::Catalog::open(url_, app::Catalog::Mode::ReadOnly);
    if (!c) qFatal("%s", c.error().message.c_str());
    return c->label_history().value();
  }

 private Q_SLOTS:
  void initTestCase() {
    dir_ = uitest::make_temp_dir("hilum-ui-postgresql");
    // The catalog's local files (store, journal of unsaved labels) in the test's folder.
    ::setenv("HILUM_DATA_DIR", (dir_ / "local").c_str(), 1);
    const std::string started = test::pg::create_server();
    QVERIFY2(started.empty(), started.c_str());
    url_ = test::pg::catalog_url("gui");
    uitest::write_phantoms(dir_ / "dicom", 3, 1, 320, 256);
    uitest::import_into(url_, {dir_ / "dicom"});
  }

  void cleanupTestCase() {
    window_.reset();
    test::pg::destroy_server();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void listsAndLabelsAsTheDatabaseRole() {
    window_ = uitest::open_main_window(url_);
    QVERIFY(window_->windowTitle().contains("reader: postgres"));
    QCOMPARE(window_->session()->author(), QString("postgres"));  // the role, not the OS user
    QTRY_COMPARE_WITH_TIMEOUT(window_->worklist()->items().size(), std::size_t{3}, 10000);
    QTRY_VERIFY_WITH_TIMEOUT(window_->viewer()->has_image(), 10000);
    QVERIFY(window_->current_item().has_value());
    window_->labels()->select_finding("Effusion");
    QTest::keyClick(window_.get(), Qt::Key_P);
    const auto events = history();
    QCOMPARE(events.size(), std::size_t{1});
    QCOMPARE(events[0].finding, std::string("Effusion"));
    QCOMPARE(events[0].value, app::LabelValue::Present);
    QCOMPARE(events[0].author, std::string("postgres"));
    QCOMPARE(events[0].recorded_by, std::string("postgres"));
    QCOMPARE(events[0].source, std::string("gui"));
    QCOMPARE(events[0].sop_instance_uid, window_->current_item()->sop_instance_uid);
  }

  void keepsALabelWhileTheServerIsDownAndSavesItOnce() {
    QVERIFY(window_ != nullptr);
    auto* indicator = window_->findChild<QLabel*>("pendingLabels");
    auto* retry = window_->findChild<QPushButton*>("retryLabels");
    QVERIFY(indicator != nullptr && retry != nullptr);
    QVERIFY(!indicator->isVisible());
    QCOMPARE(test::pg::stop_server(), std::string());
    window_->labels()->select_finding("Mass");
    QTest::keyClick(window_.get(), Qt::Key_A);
    QCOMPARE(window_->labeller()->state("Mass").value, app::LabelValue::Absent);
    QVERIFY(indicator->isVisible());
    QCOMPARE(indicator->text(), QString("not yet saved (1)"));
    QVERIFY(fs::exists(window_->session()->outbox().journal_file()));
    QVERIFY(window_->session()->outbox().journal_file().string().find((dir_ / "local").string()) == 0);
    // Still down: retrying keeps it.
    QTest::mouseClick(retry, Qt::LeftButton);
    QCOMPARE(indicator->text(), QString("not yet saved (1)"));
    QCOMPARE(test::pg::start_server(), std::string());
    QTest::mouseClick(retry, Qt::LeftButton);
    QVERIFY(!indicator->isVisible());
    const auto events = history();
    QCOMPARE(events.size(), std::size_t{2});
    QCOMPARE(events[1].finding, std::string("Mass"));
    QCOMPARE(events[1].value, app::LabelValue::Absent);
    window_.reset();
  }
};

QTEST_MAIN(PostgresReader)
#include "test_postgresql.moc"
