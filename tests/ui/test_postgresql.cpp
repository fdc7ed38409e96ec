// The GUI as a department's reader uses it: opened on a "postgresql://" catalog (a throwaway server
// this test starts, tests/app/pg_server.cpp), it lists the worklist, opens a film and labels it as
// the database role; when the server goes away a label is kept ("not yet saved (1)") and written
// once when it is back; a server that accepts the connection and never answers holds up the retry's
// own thread, never the window. Label `postgresql`: registered when the server's binaries are found.
#include <QApplication>
#include <QElapsedTimer>
#include <QTimer>
#include <QLabel>
#include <QPushButton>
#include <QtTest>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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
    QCOMPARE(events[0].source, app::LabelSource::Gui);
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
    // Still down: retrying (in the background) keeps it.
    auto& outbox = window_->session()->outbox();
    QTRY_VERIFY(!outbox.retrying());
    QTest::mouseClick(retry, Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(!outbox.retrying(), 15000);
    QCOMPARE(indicator->text(), QString("not yet saved (1)"));
    QCOMPARE(test::pg::start_server(), std::string());
    QTest::mouseClick(retry, Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(!indicator->isVisible(), 15000);
    const auto events = history();
    QCOMPARE(events.size(), std::size_t{2});
    QCOMPARE(events[1].finding, std::string("Mass"));
    QCOMPARE(events[1].value, app::LabelValue::Absent);
    window_.reset();
  }

  // A retry against a server that accepts the TCP connection and never answers (a socket that
  // listens and is never read: the kernel completes the handshake, libpq waits for the server's
  // reply until its connect timeout). Before, the retry ran on the GUI thread and the window froze
  // for the whole timeout (10 s by default). Now a timer of the window fires and a click is handled
  // while the retry waits, and the label is saved once a real server answers.
  void aServerThatNeverAnswersDoesNotFreezeTheWindow() {
    window_ = uitest::open_main_window(url_);
    QTRY_VERIFY_WITH_TIMEOUT(window_->viewer()->has_image(), 10000);
    auto* indicator = window_->findChild<QLabel*>("pendingLabels");
    auto* retry = window_->findChild<QPushButton*>("retryLabels");
    QVERIFY(indicator != nullptr && retry != nullptr);
    app::LabelSender& outbox = window_->session()->outbox();
    // The silent server.
    const int silent = ::socket(AF_INET, SOCK_STREAM, 0);
    QVERIFY(silent >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    QVERIFY(::bind(silent, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    QVERIFY(::listen(silent, 16) == 0);
    socklen_t length = sizeof address;
    QVERIFY(::getsockname(silent, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    const std::string silent_url = "postgresql://postgres@127.0.0.1:" + std::to_string(ntohs(address.sin_port)) +
                                   "/" + test::pg::database("gui") + "?connect_timeout=4";
    // A label kept while the catalog is away, then the retries go to the silent server.
    outbox.set_writer([](const std::vector<app::LabelInput>&) -> app::Result<std::vector<std::int64_t>> {
      return app::Error{app::ErrorKind::CannotOpen, "the connection to the catalog server was lost"};
    });
    window_->labels()->select_finding("Nodule");
    QTest::keyClick(window_.get(), Qt::Key_P);
    QCOMPARE(indicator->text(), QString("not yet saved (1)"));
    const std::size_t before = history().size();
    outbox.reset_writer();
    outbox.set_connect([silent_url] { return app::Catalog::open(silent_url, app::Catalog::Mode::ReadWrite); });
    QElapsedTimer clock;
    clock.start();
    QTest::mouseClick(retry, Qt::LeftButton);
    QVERIFY2(clock.elapsed() < 300, "the click returned at once");
    QVERIFY(outbox.retrying());
    // The event loop runs while the retry waits: a timer fires on time, and a click is handled.
    bool fired = false;
    QTimer::singleShot(50, window_.get(), [&fired] { fired = true; });
    QTRY_VERIFY_WITH_TIMEOUT(fired, 300);
    QVERIFY2(clock.elapsed() < 1000, "the window answered while the retry waited");
    window_->labels()->select_finding("Mass");
    QTest::keyClick(window_.get(), Qt::Key_A);  // handled now, kept behind the pending change
    QCOMPARE(window_->labeller()->state("Mass").value, app::LabelValue::Absent);
    QVERIFY(clock.elapsed() < 2000);
    QVERIFY2(outbox.retrying(), "the retry is still waiting for the silent server");
    // It gives up at the connect timeout; both changes are still kept.
    QTRY_VERIFY_WITH_TIMEOUT(!outbox.retrying(), 15000);
    QCOMPARE(indicator->text(), QString("not yet saved (2)"));
    QVERIFY(indicator->toolTip().contains("Last attempt"));
    ::close(silent);
    // A real server answers: both are saved, once, in order.
    outbox.set_connect([url = url_] { return app::Catalog::open(url, app::Catalog::Mode::ReadWrite); });
    QTest::mouseClick(retry, Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(!indicator->isVisible(), 15000);
    const auto events = history();
    QCOMPARE(events.size(), before + 2);
    QCOMPARE(events[before].finding, std::string("Nodule"));
    QCOMPARE(events[before].value, app::LabelValue::Present);
    QCOMPARE(events[before + 1].finding, std::string("Mass"));
    QCOMPARE(events[before + 1].value, app::LabelValue::Absent);
    window_.reset();
  }
};

QTEST_MAIN(PostgresReader)
#include "test_postgresql.moc"
