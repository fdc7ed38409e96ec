// Issue 18: opening a JPEG 2000 film shows a reduced decode first (a resolution level sized to the
// viewer, through the same display chain), computes the predictions from it, then replaces it by
// the full decode without moving the view or losing the reader's window; a decode of a film that
// is no longer open never replaces the current one. Driven offscreen (QT_QPA_PLATFORM=offscreen).
#include <QApplication>
#include <QSignalSpy>
#include <QTimer>
#include <QtTest>

#include <cstdlib>
#include <filesystem>
#include <memory>

#include "async.hpp"
#include "hilum/app/classify.hpp"
#include "hilum/dicom/reader.hpp"
#include "hilum/testdata/phantom.hpp"
#include "main_window.hpp"
#include "main_window_fixture.hpp"
#include "ui_fixtures.hpp"

namespace fs = std::filesystem;
using namespace hilum;

class Progressive : public QObject {
  Q_OBJECT

 private:
  fs::path dir_;
  fs::path db_;
  std::unique_ptr<ui::MainWindow> window_;
  QString first_uid_;  // opened by the worklist on its own (its predictions get cached)

  // Lossless JPEG 2000 phantoms, one portrait and one landscape, so that the two films differ in size.
  static void write_film(const fs::path& file, int rows, int columns, int patient) {
    testdata::DicomSpec spec;
    spec.phantom.rows = rows;
    spec.phantom.columns = columns;
    spec.phantom.seed = static_cast<std::uint32_t>(patient);
    spec.encoding = testdata::Encoding::J2kLossless;
    spec.windows = {{2048, 4096, "FULL"}};
    spec.patient_id = "J2K-" + std::to_string(patient);
    spec.study_instance_uid = "1.2.826.0.1.3680043.10.18." + std::to_string(patient);
    spec.series_instance_uid = spec.study_instance_uid + ".1";
    spec.sop_instance_uid = spec.series_instance_uid + ".1";
    testdata::write_dicom(file, spec);
  }

  app::WorklistItem item_of(const QString& uid) const {
    for (const auto& item : window_->worklist()->items())
      if (QString::fromStdString(item.sop_instance_uid) == uid) return item;
    qFatal("%s is not in the worklist", qPrintable(uid));
    std::abort();
  }
  app::WorklistItem other_item() const {
    for (const auto& item : window_->worklist()->items())
      if (QString::fromStdString(item.sop_instance_uid) != first_uid_) return item;
    qFatal("one film only");
    std::abort();
  }
  QString shown_uid() const {
    const auto* image = window_->viewer()->radiograph();
    return image ? QString::fromStdString(image->meta.sop_instance_uid) : QString();
  }
  // Until every decode and rendering queued so far has reported to the GUI thread.
  static void settle() {
    ui::display_pool()->waitForDone();
    ui::ai_pool()->waitForDone();
    QTest::qWait(200);
    ui::display_pool()->waitForDone();
    QTest::qWait(100);
  }

 private Q_SLOTS:
  void initTestCase() {
    dir_ = uitest::make_temp_dir("hilum-ui-progressive");
    db_ = dir_ / "hilum.db";
    write_film(dir_ / "dicom" / "portrait.dcm", 1200, 1000, 1);
    write_film(dir_ / "dicom" / "landscape.dcm", 1000, 1200, 2);
    uitest::import_into(db_, {dir_ / "dicom"});
    uitest::write_random_vit(dir_ / "vit");
    uitest::register_model(db_, dir_ / "vit", "random-vit-1");
    window_ = uitest::open_main_window(db_);
    window_->resize(900, 700);  // a viewer of at most ~500 pixels: these films are shown from their first level down
    QVERIFY(QTest::qWaitForWindowActive(window_.get()));
    QSignalSpy full(window_.get(), &ui::MainWindow::fullImageShown);
    QTRY_COMPARE_WITH_TIMEOUT(window_->worklist()->items().size(), std::size_t{2}, 20000);
    QTRY_VERIFY_WITH_TIMEOUT(full.count() > 0 && !window_->ai()->probabilities().empty(), 30000);
    first_uid_ = QString::fromStdString(window_->current_item()->sop_instance_uid);
    settle();
  }

  void cleanupTestCase() {
    window_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // The reduced decode first (half the pixels on each side, the file's window), the predictions
  // computed from it, then the full decode, with the reader's window, invert and zoom kept.
  void showsTheReducedDecodeFirstThenTheFullOne() {
    const app::WorklistItem item = other_item();  // its predictions are not cached: they are computed now
    const QString uid = QString::fromStdString(item.sop_instance_uid);
    auto* v = window_->viewer();
    QStringList events;
    int first_reduction = -1;
    QSize first_size, full_size_at_first;
    double zoom_after = 0.0;
    const double center = 1500.0, width = 2200.0;
    auto c1 = connect(window_.get(), &ui::MainWindow::imageShown, this, [&](const QString& shown) {
      events << "image " + shown;
      first_reduction = v->shown_reduction();
      first_size = v->rendered().size();
      full_size_at_first = QSize(v->image_columns(), v->image_rows());
      // The reader changes the view while the reduced decode is shown.
      v->set_window(center, width);
      v->toggle_invert();
      v->zoom_by(1.5, QPointF(v->width() / 2.0, v->height() / 2.0));
      zoom_after = v->zoom();
    });
    auto c2 = connect(window_.get(), &ui::MainWindow::predictionsShown, this, [&](const QString& shown) { events << "predictions " + shown; });
    auto c3 = connect(window_.get(), &ui::MainWindow::fullImageShown, this, [&](const QString& shown) { events << "full " + shown; });
    window_->open_item(item);
    QTRY_VERIFY_WITH_TIMEOUT(events.contains("full " + uid), 30000);
    QTRY_VERIFY_WITH_TIMEOUT(!v->rendering(), 10000);
    settle();
    disconnect(c1);
    disconnect(c2);
    disconnect(c3);
    // First the reduced decode, then the predictions (from it), then the full decode.
    QCOMPARE(events, (QStringList{"image " + uid, "predictions " + uid, "full " + uid}));
    QVERIFY2(first_reduction > 0, "the first decode was not reduced");
    QCOMPARE(full_size_at_first, QSize(item.columns, item.rows));
    const int step = 1 << first_reduction;
    QCOMPARE(first_size, QSize((item.columns + step - 1) / step, (item.rows + step - 1) / step));
    // Now the full decode, in the same view with the reader's window.
    QCOMPARE(v->shown_reduction(), 0);
    QCOMPARE(v->radiograph()->reduction, 0);
    QCOMPARE(v->rendered().size(), QSize(item.columns, item.rows));
    QCOMPARE(v->image_columns(), item.columns);
    QCOMPARE(v->voi().window.center, center);
    QCOMPARE(v->voi().window.width, width);
    QVERIFY(v->inverted());
    QCOMPARE(v->zoom(), zoom_after);
    QCOMPARE(shown_uid(), uid);
    // The predictions shown are the model's on the reduced decode.
    auto catalog = app::Catalog::open(db_);
    auto model = app::load_model(catalog.value(), "");
    QVERIFY(model.ok());
    dicom::ReadOptions reduced;
    reduced.min_side = window_->first_decode_min_side(item);
    auto image = dicom::read_radiograph(item.path, reduced);
    QVERIFY(image.ok());
    QCOMPARE(image->reduction, first_reduction);
    auto expected = app::classify_radiograph(model.value(), image.value());
    QVERIFY(expected.ok());
    const auto& shown = window_->ai()->probabilities();
    QCOMPARE(shown.size(), expected->probabilities.size());
    for (std::size_t k = 0; k < shown.size(); ++k) QVERIFY(std::abs(shown[k].second - expected->probabilities[k].second) < 1e-6);
  }

  // Opening another film while the decodes of the previous one run: neither its reduced nor its
  // full decode ever reaches the viewer.
  void aStaleDecodeNeverReplacesTheCurrentFilm() {
    const app::WorklistItem previous = other_item();
    const app::WorklistItem current = item_of(first_uid_);
    const QString previous_uid = QString::fromStdString(previous.sop_instance_uid);
    auto* v = window_->viewer();
    bool opened_current = false;
    QStringList stale;
    auto watch = [&](const QString& what) {
      if (opened_current && shown_uid() == previous_uid) stale << what;
    };
    auto c0 = connect(v, &ui::ImageView::renderingChanged, this, [&] { watch("rendering"); });
    auto c1 = connect(window_.get(), &ui::MainWindow::imageShown, this, [&](const QString& uid) { watch("image " + uid); });
    auto c2 = connect(window_.get(), &ui::MainWindow::fullImageShown, this, [&](const QString& uid) {
      watch("full " + uid);
      if (opened_current && uid != first_uid_) stale << "full signal " + uid;
    });

    // 1. The other film opened while the previous one's first decode runs.
    window_->open_item(previous);
    opened_current = true;
    window_->open_item(current);
    QSignalSpy full(window_.get(), &ui::MainWindow::fullImageShown);
    QTRY_VERIFY_WITH_TIMEOUT(full.count() > 0, 30000);
    settle();
    QCOMPARE(shown_uid(), first_uid_);
    QCOMPARE(v->image_columns(), current.columns);

    // 2. The other film opened just after the previous one's first pixels, while its full decode runs.
    opened_current = false;
    auto c3 = connect(window_.get(), &ui::MainWindow::imageShown, this, [&](const QString& uid) {
      if (uid != previous_uid || opened_current) return;
      // Once the full decode of `previous` runs on a worker (it takes longer than this wait): its
      // result then reaches the GUI thread after `current` was opened, and must be dropped there.
      QTimer::singleShot(15, this, [&] {
        opened_current = true;
        window_->open_item(current);
      });
    });
    full.clear();
    window_->open_item(previous);
    QTRY_VERIFY_WITH_TIMEOUT(opened_current, 30000);
    QTRY_VERIFY_WITH_TIMEOUT(!full.isEmpty() && full.last().at(0).toString() == first_uid_, 30000);
    settle();
    for (auto c : {c0, c1, c2, c3}) disconnect(c);
    QVERIFY2(stale.isEmpty(), qPrintable(stale.join(", ")));
    QCOMPARE(shown_uid(), first_uid_);
    QCOMPARE(v->image_columns(), current.columns);
    QCOMPARE(v->image_rows(), current.rows);
    QCOMPARE(v->shown_reduction(), 0);
    QCOMPARE(v->rendered().size(), QSize(current.columns, current.rows));
    QCOMPARE(QString::fromStdString(window_->current_item()->sop_instance_uid), first_uid_);
  }
};

QTEST_MAIN(Progressive)
#include "test_progressive.moc"
