// The workstation driven through its real widgets, offscreen: open an imported study, change the
// window, label with the keyboard (and undo), show an attention map, import with a report, and run
// a short fine-tune that lists a new version.
#include <QApplication>
#include <QCheckBox>
#include <QLabel>
#include <QLineEdit>
#include <QMenu>
#include <QMenuBar>
#include <QMouseEvent>
#include <QProcess>
#include <QPushButton>
#include <QStandardPaths>
#include <QSettings>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTableWidget>
#include <QtTest>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>

#include "free_port.hpp"
#include "agreement_window.hpp"
#include "hilum/app/agreement.hpp"
#include "hilum/app/catalog.hpp"
#include "hilum/core/numbers.hpp"
#include "hilum/app/classify.hpp"
#include "hilum/testdata/phantom.hpp"
#include "dialogs.hpp"
#include "import_dialog.hpp"
#include "learning.hpp"
#include "main_window.hpp"
#include "main_window_fixture.hpp"
#include "ui_fixtures.hpp"

namespace fs = std::filesystem;
using namespace hilum;

class Workstation : public QObject {
  Q_OBJECT

 private:
  fs::path dir_;
  fs::path db_;
  std::unique_ptr<ui::MainWindow> window_;

  std::unique_ptr<ui::MainWindow> open_window(const fs::path& db) { return uitest::open_main_window(db); }

  // Label events of the current image.
  std::vector<app::LabelEvent> current_labels() {
    auto c = app::Catalog::open(db_);
    auto l = c->current_labels(window_->current_item()->sop_instance_uid);
    return l.value();
  }
  std::optional<app::LabelEvent> label_of(const std::string& finding) {
    for (const auto& e : current_labels())
      if (e.finding == finding) return e;
    return std::nullopt;
  }
  // The current value of a finding on the current image (Cleared when it has no label).
  app::LabelValue value_of(const std::string& finding) {
    const auto e = label_of(finding);
    return e ? e->value : app::LabelValue::Cleared;
  }

  void key(int k, Qt::KeyboardModifiers m = Qt::NoModifier) { QTest::keyClick(window_.get(), static_cast<Qt::Key>(k), m); }

 private Q_SLOTS:
  void initTestCase() {
    dir_ = uitest::make_temp_dir("hilum-ui-test");
    db_ = dir_ / "hilum.db";
    const auto files = uitest::write_phantoms(dir_ / "dicom", 6, 1, 320, 256);
    uitest::import_into(db_, {dir_ / "dicom"});
    // A model that crops the centre (32 of 40, as the built-in one crops 160 of 186).
    uitest::write_random_vit(dir_ / "vit", {32, 2, 2, 64, 32, 8, 40});
    uitest::register_model(db_, dir_ / "vit", "random-vit-1");
  }

  void cleanupTestCase() {
    window_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void opensTheFirstImageOfTheWorklist() {
    window_ = open_window(db_);
    QVERIFY(QTest::qWaitForWindowActive(window_.get()));
    QTRY_COMPARE_WITH_TIMEOUT(window_->worklist()->items().size(), std::size_t{6}, 10000);
    QTRY_VERIFY_WITH_TIMEOUT(window_->viewer()->has_image(), 10000);
    QCOMPARE(window_->viewer()->radiograph()->rows, 320);
    QCOMPARE(window_->worklist()->current_index(), 0);
    auto* counts = window_->findChild<QLabel*>("worklistCounts");
    QVERIFY(counts->text().contains("6"));
    // Predictions arrive in the background, from the active model.
    QTRY_VERIFY_WITH_TIMEOUT(!window_->ai()->probabilities().empty(), 20000);
    QCOMPARE(window_->ai()->probabilities().size(), std::size_t{14});
    QVERIFY(window_->findChild<QLabel*>("aiModel")->text().contains("random-vit-1"));
    QVERIFY(window_->ai()->bar("Effusion") != nullptr);
    // The same probabilities as app::classify reading the file itself, and cached in the catalog.
    auto c = app::Catalog::open(db_);
    auto model = app::load_model(c.value(), "");
    QVERIFY(model.ok());
    app::Instance loose;
    loose.path = window_->current_item()->path;
    auto reference = app::classify(c.value(), model.value(), {loose}, 1);
    QVERIFY(reference.ok() && reference->front().error.empty());
    const auto& shown = window_->ai()->probabilities();
    for (std::size_t k = 0; k < shown.size(); ++k) {
      QCOMPARE(shown[k].first, reference->front().probabilities[k].first);
      QVERIFY(std::abs(shown[k].second - reference->front().probabilities[k].second) < 1e-6);
    }
    auto cached = c->predictions(window_->current_item()->sop_instance_uid, model->record.id);
    QCOMPARE(cached->size(), std::size_t{14});
  }

  void changesTheWindowByRightDragAndPresets() {
    auto* v = window_->viewer();
    const double width_before = v->voi().window.width;
    const double center_before = v->voi().window.center;
    const QPoint p0(200, 200), p1(300, 260);
    QSignalSpy rendered(v, &ui::ImageView::renderingChanged);
    QTest::mousePress(v, Qt::RightButton, Qt::NoModifier, p0);
    QMouseEvent move(QEvent::MouseMove, QPointF(p1), v->mapToGlobal(QPointF(p1)), Qt::NoButton, Qt::RightButton, Qt::NoModifier);
    QApplication::sendEvent(v, &move);
    QTest::mouseRelease(v, Qt::RightButton, Qt::NoModifier, p1);
    QTRY_VERIFY_WITH_TIMEOUT(rendered.count() > 0 && !v->rendering(), 5000);
    QVERIFY(v->voi().window.width > width_before);   // dragged right: wider
    QVERIFY(v->voi().window.center > center_before);  // dragged down: higher level
    QCOMPARE(QString::fromStdString(v->voi().source), QString("custom"));
    // The file's second preset is one key away; invert and reset too.
    QCOMPARE(v->preset_count(), 2);
    key(Qt::Key_2);
    QTRY_COMPARE_WITH_TIMEOUT(v->voi().window.width, 1800.0, 5000);
    QCOMPARE(v->voi().window.center, 1400.0);
    key(Qt::Key_I);
    QTRY_VERIFY_WITH_TIMEOUT(v->inverted() && !v->rendering(), 5000);
    QVERIFY(v->window_text().contains("inverted"));
    key(Qt::Key_R);
    QTRY_VERIFY_WITH_TIMEOUT(!v->inverted() && !v->rendering(), 5000);
    QCOMPARE(v->voi().window.width, 4096.0);
    // Zoom 1:1 and back to fit.
    key(Qt::Key_Z);
    QCOMPARE(v->zoom(), 1.0);
    key(Qt::Key_F);
    QVERIFY(v->zoom() != 1.0 || v->width() == 256);
  }

  void labelsWithTheKeyboardAndUndoes() {
    auto* panel = window_->labels();
    panel->select_finding("Effusion");
    key(Qt::Key_P);
    auto effusion = label_of("Effusion");
    QVERIFY(effusion.has_value());
    QCOMPARE(effusion->value, app::LabelValue::Present);
    QCOMPARE(effusion->author, std::string("dr.test"));
    QCOMPARE(effusion->source, app::LabelSource::Gui);
    QCOMPARE(effusion->model_version.value_or(""), std::string("random-vit-1"));  // the model on screen
    QVERIFY(effusion->model_probability.has_value());
    // Down to the next finding, absent.
    key(Qt::Key_Down);
    QCOMPARE(panel->selected_finding(), QString("Infiltration"));
    key(Qt::Key_A);
    QCOMPARE(value_of("Infiltration"), app::LabelValue::Absent);
    // "No Finding" is exclusive: Effusion becomes absent in the same change.
    key(Qt::Key_N);
    QCOMPARE(value_of("No Finding"), app::LabelValue::Present);
    QCOMPARE(value_of("Effusion"), app::LabelValue::Absent);
    // Undo brings Effusion back and clears No Finding; redo repeats it.
    key(Qt::Key_Z, Qt::ControlModifier);
    QCOMPARE(value_of("Effusion"), app::LabelValue::Present);
    QVERIFY(!label_of("No Finding").has_value());
    key(Qt::Key_Z, Qt::ControlModifier | Qt::ShiftModifier);
    QCOMPARE(value_of("No Finding"), app::LabelValue::Present);
    // The panel shows what the catalog holds.
    const int last = panel->table()->rowCount() - 1;
    QCOMPARE(panel->table()->item(last, ui::LabelPanel::kFinding)->text(), QString("No Finding"));
    QCOMPARE(panel->table()->item(last, ui::LabelPanel::kPresent)->text(), QString("●"));
    // Accept the AI suggestion in one key: every model finding gets a label.
    QVERIFY(window_->findChild<QPushButton*>("acceptAiButton")->isEnabled());
    key(Qt::Key_Y);
    int model_labels = 0;
    for (const auto& e : current_labels())
      if (e.finding != "No Finding") ++model_labels;
    QCOMPARE(model_labels, 14);
  }

  void drawsARegionForTheSelectedFinding() {
    auto* v = window_->viewer();
    window_->labels()->select_finding("Nodule");
    key(Qt::Key_B);
    QCOMPARE(v->tool(), ui::ImageView::Tool::Rectangle);
    const QPointF a = v->to_widget(QPointF(50, 60)), b = v->to_widget(QPointF(120, 140));
    QTest::mousePress(v, Qt::LeftButton, Qt::NoModifier, a.toPoint());
    QMouseEvent move(QEvent::MouseMove, b, v->mapToGlobal(b), Qt::NoButton, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(v, &move);
    QTest::mouseRelease(v, Qt::LeftButton, Qt::NoModifier, b.toPoint());
    const auto nodule = label_of("Nodule");
    QVERIFY(nodule.has_value());
    QCOMPARE(nodule->value, app::LabelValue::Present);
    QVERIFY(nodule->region.has_value());
    QVERIFY(std::abs(nodule->region->x - 50) <= 2 && std::abs(nodule->region->w - 70) <= 3);
    QCOMPARE(v->tool(), ui::ImageView::Tool::Pan);  // back to panning after a label
  }

  // G, three clicks and Enter: a polygon region for the selected finding, stored in image
  // coordinates; Escape abandons a polygon in progress (and the tool); a double-click closes one too.
  void drawsAPolygonRegion() {
    auto* v = window_->viewer();
    window_->labels()->select_finding("Mass");
    key(Qt::Key_G);
    QCOMPARE(v->tool(), ui::ImageView::Tool::Polygon);
    const std::vector<QPointF> corners = {{40, 50}, {150, 60}, {90, 160}};
    // Two points, then Escape: nothing is stored.
    const auto before = label_of("Mass");
    QTest::mouseClick(v, Qt::LeftButton, Qt::NoModifier, v->to_widget(corners[0]).toPoint());
    QTest::mouseClick(v, Qt::LeftButton, Qt::NoModifier, v->to_widget(corners[1]).toPoint());
    QTest::keyClick(v, Qt::Key_Escape);
    QTest::keyClick(v, Qt::Key_Return);
    const auto after_escape = label_of("Mass");
    QCOMPARE(after_escape.has_value(), before.has_value());
    if (before) QCOMPARE(after_escape->id, before->id);
    QCOMPARE(v->tool(), ui::ImageView::Tool::Pan);  // Escape cancels the drawing and its tool
    key(Qt::Key_G);
    for (const auto& c : corners) QTest::mouseClick(v, Qt::LeftButton, Qt::NoModifier, v->to_widget(c).toPoint());
    QTest::keyClick(v, Qt::Key_Return);
    const auto mass = label_of("Mass");
    QVERIFY(mass.has_value());
    // A region makes its finding present, unless it was marked uncertain.
    const bool was_uncertain = before && before->value == app::LabelValue::Uncertain;
    QCOMPARE(mass->value, was_uncertain ? app::LabelValue::Uncertain : app::LabelValue::Present);
    QVERIFY(mass->region.has_value());
    QCOMPARE(mass->region->shape, app::Region::Shape::Polygon);
    QCOMPARE(mass->region->points.size(), corners.size());
    for (std::size_t i = 0; i < corners.size(); ++i) {
      QVERIFY2(std::abs(mass->region->points[i].first - corners[i].x()) <= 2 && std::abs(mass->region->points[i].second - corners[i].y()) <= 2,
               qPrintable(QString("point %1 is (%2, %3)").arg(i).arg(mass->region->points[i].first).arg(mass->region->points[i].second)));
    }
    QCOMPARE(v->tool(), ui::ImageView::Tool::Pan);
    // A double-click closes a polygon as Enter does (four points here).
    window_->labels()->select_finding("Nodule");
    key(Qt::Key_G);
    const std::vector<QPointF> quad = {{60, 60}, {120, 60}, {120, 120}};
    for (const auto& c : quad) QTest::mouseClick(v, Qt::LeftButton, Qt::NoModifier, v->to_widget(c).toPoint());
    // A real double-click: the first click adds the last corner, the double-click event closes.
    QTest::mouseClick(v, Qt::LeftButton, Qt::NoModifier, v->to_widget(QPointF(60, 120)).toPoint());
    QTest::mouseDClick(v, Qt::LeftButton, Qt::NoModifier, v->to_widget(QPointF(60, 120)).toPoint());
    const auto nodule = label_of("Nodule");
    QVERIFY(nodule.has_value() && nodule->region.has_value());
    QCOMPARE(nodule->region->shape, app::Region::Shape::Polygon);
    QCOMPARE(nodule->region->points.size(), std::size_t{4});
  }

  void showsAnAttentionMap() {
    auto* bar = window_->ai()->bar("Effusion");
    QVERIFY(bar != nullptr);
    QSignalSpy shown(window_.get(), &ui::MainWindow::heatmapShown);
    QTest::mouseClick(bar, Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(shown.count() == 1, 20000);
    QVERIFY(window_->viewer()->has_heatmap());
    QVERIFY(window_->viewer()->heatmap_visible());
    key(Qt::Key_H);
    QVERIFY(!window_->viewer()->heatmap_visible());
    key(Qt::Key_H);
    QVERIFY(window_->viewer()->heatmap_visible());
    const QImage rollout = window_->viewer()->heatmap();
    // The model saw the centre 80% of the film: the panel says so, and the map leaves the edge band
    // untinted (a corner is transparent) while the centre carries it.
    QVERIFY2(window_->findChild<QLabel*>("aiHeatmapStatus")->text().contains("centre 80%"),
             qPrintable(window_->findChild<QLabel*>("aiHeatmapStatus")->text()));
    QCOMPARE(qAlpha(rollout.pixel(0, 0)), 0);
    QCOMPARE(qAlpha(rollout.pixel(rollout.width() - 1, rollout.height() - 1)), 0);
    int tinted = 0;
    for (int y = rollout.height() / 4; y < rollout.height() * 3 / 4; ++y)
      for (int x = rollout.width() / 4; x < rollout.width() * 3 / 4; ++x) tinted += qAlpha(rollout.pixel(x, y)) > 0 ? 1 : 0;
    QVERIFY(tinted > 0);
    // The class-specific map of the same finding is another map, and the panel names the method.
    window_->findChild<QComboBox*>("aiHeatmapMethod")->setCurrentIndex(1);
    QTRY_VERIFY_WITH_TIMEOUT(shown.count() == 2, 20000);
    QVERIFY(window_->findChild<QLabel*>("aiHeatmapStatus")->text().contains("class-specific"));
    const QImage effusion = window_->viewer()->heatmap();
    QVERIFY(!effusion.isNull());
    QVERIFY(effusion != rollout);
    // Another finding's class-specific map differs from this one.
    QTest::mouseClick(window_->ai()->bar("Atelectasis"), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(shown.count() == 3, 20000);
    QVERIFY(window_->viewer()->heatmap() != effusion);
    window_->findChild<QComboBox*>("aiHeatmapMethod")->setCurrentIndex(0);
    QTRY_VERIFY_WITH_TIMEOUT(shown.count() == 4, 20000);
    QVERIFY(window_->findChild<QLabel*>("aiHeatmapStatus")->text().contains("rollout"));
  }

  void nextAndPreviousFollowTheFilteredWorklist() {
    auto* w = window_->worklist();
    const auto first = window_->current_item()->sop_instance_uid;
    QSignalSpy shown(window_.get(), &ui::MainWindow::imageShown);
    key(Qt::Key_PageDown);
    QTRY_VERIFY_WITH_TIMEOUT(shown.count() >= 1, 10000);
    QVERIFY(window_->current_item()->sop_instance_uid != first);
    key(Qt::Key_PageUp);
    QTRY_COMPARE_WITH_TIMEOUT(window_->current_item()->sop_instance_uid, first, 10000);
    // "Labelled by me" shows the one image labelled so far.
    QSignalSpy refreshed(w, &ui::WorklistPanel::refreshed);
    w->show_box()->setCurrentIndex(w->show_box()->findData(static_cast<int>(app::WorklistQuery::Show::LabelledBy)));
    QTRY_VERIFY_WITH_TIMEOUT(refreshed.count() >= 1 && !w->busy(), 10000);
    QCOMPARE(w->items().size(), std::size_t{1});
    QCOMPARE(w->items()[0].sop_instance_uid, first);
    // Search by accession.
    w->show_box()->setCurrentIndex(0);
    QTRY_VERIFY_WITH_TIMEOUT(!w->busy() && w->items().size() == 6, 10000);
    refreshed.clear();
    w->search_box()->setText("ACC1003");
    QTRY_VERIFY_WITH_TIMEOUT(refreshed.count() >= 1 && !w->busy(), 10000);
    QCOMPARE(w->items().size(), std::size_t{1});
    QCOMPARE(w->items()[0].accession_number, std::string("ACC1003"));
    w->search_box()->clear();
    QTRY_COMPARE_WITH_TIMEOUT(w->items().size(), std::size_t{6}, 10000);
  }

  void importReportsWhatFailedAndWhy() {
    const fs::path more = dir_ / "more";
    uitest::write_phantoms(more, 1, 1, 128, 128);
    testdata::write_not_dicom(more / "notes.txt");
    testdata::write_basic_text_sr(more / "report.dcm");
    // The phantom's patient and UIDs repeat the first fixture patient's: same UID, new content.
    auto* dialog = window_->import_paths({more});
    QTRY_VERIFY_WITH_TIMEOUT(!dialog->running(), 20000);
    const auto* report = dialog->report();
    QVERIFY(report != nullptr);
    // notes.txt, met walking the folder, is not DICOM: left out, not a failure (issue 16).
    QCOMPARE(report->counts.failed, std::size_t{0});
    QCOMPARE(report->counts.not_dicom, std::size_t{1});
    QCOMPARE(report->counts.skipped, std::size_t{1});
    auto* issues = dialog->findChild<QTableWidget*>("importIssues");
    QVERIFY(issues->rowCount() >= 2);
    QVERIFY(dialog->findChild<QLabel*>("importSummary")->text().contains("failed"));
    QVERIFY(dialog->findChild<QLabel*>("importSummary")->text().contains("not DICOM"));
    dialog->close();
  }

  void finetunesAndListsTheNewVersion() {
    // Labels on every image: Effusion present on half the patients.
    uitest::label_every_image(db_);
    auto* dialog = window_->show_finetune();
    app::FinetuneOptions options;
    options.strategy = app::Strategy::Head;
    options.epochs = 3;
    options.author = "dr.test";
    dialog->set_options(options);
    QSignalSpy done(dialog, &ui::FinetuneDialog::finished_finetune);
    dialog->findChild<QPushButton*>("finetuneStart")->click();
    QVERIFY(dialog->running());
    QTRY_VERIFY_WITH_TIMEOUT(done.count() == 1, 120000);
    QVERIFY2(dialog->result().has_value(), qPrintable(dialog->error()));
    const QString version = QString::fromStdString(dialog->result()->model.version);
    QVERIFY(!version.isEmpty());
    auto* manager = window_->show_models();
    auto* table = manager->findChild<QTableWidget*>("modelTable");
    QStringList versions;
    for (int r = 0; r < table->rowCount(); ++r) versions << table->item(r, 0)->text();
    QVERIFY2(versions.contains(version), qPrintable(versions.join(", ")));
    QVERIFY(versions.contains("random-vit-1"));
    manager->close();
    dialog->close();
  }

  // Several readers: the title bar names the reader; with blinded reading (labels and AI), the
  // label panel withholds other readers' labels and the AI panel its findings until the reader
  // submits their reading.
  void blindedReadingHidesOthersUntilSubmitted() {
    window_.reset();
    const fs::path db = dir_ / "blind.db";
    uitest::import_into(db, {dir_ / "dicom"});
    uitest::register_model(db, dir_ / "vit", "random-vit-3");
    {
      auto c = app::Catalog::open(db);
      QVERIFY(c.ok());
      QVERIFY(c->set_blinding(app::Blinding::LabelsAndAi).ok());
    }
    window_ = open_window(db);
    QTRY_VERIFY_WITH_TIMEOUT(window_->viewer()->has_image(), 10000);
    QVERIFY(window_->windowTitle().contains("reader: dr.test"));
    const std::string uid = window_->current_item()->sop_instance_uid;
    {
      auto c = app::Catalog::open(db);
      app::LabelInput in;
      in.image = uid;
      in.finding = "Effusion";
      in.value = app::LabelValue::Present;
      in.author = "dr.other";
      QVERIFY(c->add_labels({in}).ok());
    }
    QTRY_VERIFY_WITH_TIMEOUT(window_->findChild<QLabel*>("aiModel")->text().contains("withheld"), 10000);
    QVERIFY(window_->ai()->probabilities().empty());
    auto* panel = window_->labels();
    const auto row_of = [&](const QString& finding) {
      for (int r = 0; r < panel->table()->rowCount(); ++r)
        if (panel->table()->item(r, ui::LabelPanel::kFinding)->text() == finding) return r;
      return -1;
    };
    const int effusion = row_of("Effusion");
    QVERIFY(effusion >= 0);
    panel->select_finding("Mass");
    key(Qt::Key_A);  // the reader's own label, then the submission
    QVERIFY(panel->table()->item(effusion, ui::LabelPanel::kFinding)->toolTip().contains("hidden until you submit"));
    QVERIFY(!panel->table()->item(effusion, ui::LabelPanel::kFinding)->toolTip().contains("dr.other"));
    // Said on the panel, not only in a tooltip.
    auto* readers = window_->findChild<QLabel*>("labelReaders");
    QVERIFY(readers != nullptr && readers->isVisible());
    QVERIFY2(readers->text().contains("hidden until you submit"), qPrintable(readers->text()));
    QVERIFY(!readers->text().contains("dr.other"));
    auto* submit = window_->findChild<QPushButton*>("submitReadingButton");
    QVERIFY(submit != nullptr && submit->isEnabled());
    QTest::mouseClick(submit, Qt::LeftButton);
    QVERIFY(!submit->isEnabled());
    QVERIFY(panel->table()->item(effusion, ui::LabelPanel::kFinding)->toolTip().contains("dr.other: present"));
    QVERIFY2(readers->text().contains("Effusion (dr.other: present)"), qPrintable(readers->text()));
    QTRY_VERIFY_WITH_TIMEOUT(!window_->ai()->probabilities().empty(), 20000);
    window_.reset();
  }

  // Labels > Reader agreement shows, per finding, exactly what app::agreement computes (the numbers
  // of `hilum-cli agreement`): each row's value and interval, in the table and in the plot.
  void showsTheReadersAgreementAsAppComputesIt() {
    window_.reset();
    const fs::path db = dir_ / "agreement.db";
    // Eighteen films: no statistic is given from fewer than app::kMinAgreementImages (10), and the two
    // readers agree (a consensus to compare with) on 12 of them for Effusion.
    uitest::write_phantoms(dir_ / "dicom-18", 18, 1, 128, 128);
    uitest::import_into(db, {dir_ / "dicom-18"});
    uitest::label_by_two_readers(db);
    window_ = open_window(db);
    QAction* action = window_->action("actionAgreement");
    QVERIFY(action != nullptr);
    bool in_menu = false;
    for (QAction* menu : window_->menuBar()->actions())
      if (menu->menu() != nullptr && menu->menu()->actions().contains(action)) in_menu = true;
    QVERIFY2(in_menu, "reachable from a menu");
    action->trigger();
    auto* view = window_->findChild<ui::AgreementWindow*>("agreementWindow");
    QVERIFY(view != nullptr && view->isVisible());
    QTRY_VERIFY_WITH_TIMEOUT(!view->computing(), 60000);
    auto c = app::Catalog::open(db);
    QVERIFY(c.ok());
    const auto expected = app::agreement(c.value(), view->options());
    QVERIFY(expected.ok());
    QCOMPARE(expected->findings.size(), std::size_t{2});
    auto* table = view->findChild<QTableWidget*>("agreementTable");
    auto* plot = view->findChild<ui::ForestPlot*>("agreementPlot");
    QVERIFY(table != nullptr && plot != nullptr);
    for (const auto& f : expected->findings) {
      view->select_finding(QString::fromStdString(f.finding));
      // The rows app reports, in order: pairs, Fleiss, Krippendorff, each reader vs the others' consensus.
      std::vector<std::pair<QString, app::AgreementValue>> rows;
      for (const auto& p : f.cohen_kappa) rows.emplace_back(QString::fromStdString(p.reader_a + " / " + p.reader_b), p.cohen_kappa);
      rows.emplace_back("all 2 readers", f.fleiss_kappa);
      rows.emplace_back("all 2 readers", f.krippendorff_alpha);
      for (const auto& r : f.vs_others_consensus) rows.emplace_back(QString::fromStdString(r.reader), r.cohen_kappa);
      QCOMPARE(f.cohen_kappa.size(), std::size_t{1});
      QCOMPARE(f.vs_others_consensus.size(), std::size_t{2});
      QCOMPARE(table->rowCount(), static_cast<int>(rows.size()));
      QCOMPARE(plot->rows().size(), rows.size());
      for (int r = 0; r < table->rowCount(); ++r) {
        const auto& [readers, v] = rows[static_cast<std::size_t>(r)];
        QCOMPARE(table->item(r, 1)->text(), readers);
        QVERIFY2(v.value.has_value(), qPrintable(table->item(r, 0)->text()));
        QCOMPARE(table->item(r, 2)->text(), QString::fromStdString(core::format_fixed(*v.value, 3)));
        QCOMPARE(table->item(r, 2)->data(Qt::UserRole).toDouble(), *v.value);
        const QVariantList interval = table->item(r, 3)->data(Qt::UserRole).toList();
        QCOMPARE(static_cast<int>(interval.size()), v.low && v.high ? 2 : 0);
        if (v.low && v.high) {
          QCOMPARE(interval[0].toDouble(), *v.low);
          QCOMPARE(interval[1].toDouble(), *v.high);
          QCOMPARE(table->item(r, 3)->text(),
                   QString::fromStdString(core::format_fixed(*v.low, 3) + " to " + core::format_fixed(*v.high, 3)));
        }
        QCOMPARE(table->item(r, 4)->text(), QString::number(v.images));
        const ui::ForestRow& drawn = plot->rows()[static_cast<std::size_t>(r)];
        QCOMPARE(drawn.value.value_or(-9), *v.value);
        QCOMPARE(drawn.low.value_or(-9), v.low.value_or(-9));
        QCOMPARE(drawn.high.value_or(-9), v.high.value_or(-9));
      }
      QVERIFY2(f.cohen_kappa[0].cohen_kappa.low.has_value(), "the pair's kappa has an interval");
      QCOMPARE(table->item(0, 0)->text(), QString("Cohen's kappa"));
      QCOMPARE(table->item(1, 0)->text(), QString("Fleiss' kappa"));
      QCOMPARE(table->item(2, 0)->text(), QString("Krippendorff's alpha"));
      // Every drawn value sits inside the plot's axis.
      const auto [lo, hi] = plot->axis_range();
      for (const auto& d : plot->rows()) QVERIFY(d.low.value_or(0) >= lo && d.high.value_or(0) <= hi && *d.value >= lo);
    }
    // The readers disagree on Effusion: its Cohen's kappa is below 1, and the two findings differ.
    QVERIFY(*expected->findings[0].cohen_kappa[0].cohen_kappa.value < 1.0);
    window_.reset();
  }

  // Six films: every statistic would come from fewer than ten images; the window says so
  // ("too few images (6)") in the table and the plot, and states the minimum.
  void saysTooFewImagesInsteadOfAStatistic() {
    window_.reset();
    const fs::path db = dir_ / "agreement-few.db";
    uitest::import_into(db, {dir_ / "dicom"});
    uitest::label_by_two_readers(db);
    window_ = open_window(db);
    auto* view = window_->show_agreement();
    QVERIFY(view != nullptr);
    QTRY_VERIFY_WITH_TIMEOUT(!view->computing(), 60000);
    view->select_finding("Effusion");
    auto* table = view->findChild<QTableWidget*>("agreementTable");
    auto* plot = view->findChild<ui::ForestPlot*>("agreementPlot");
    QVERIFY(table != nullptr && plot != nullptr);
    QVERIFY(table->rowCount() >= 3);
    for (int r = 0; r < table->rowCount(); ++r) {
      QCOMPARE(table->item(r, 2)->text(), QString("too few images (%1)").arg(table->item(r, 4)->text()));
      QVERIFY(!table->item(r, 2)->data(Qt::UserRole).isValid());
    }
    QCOMPARE(table->item(0, 2)->text(), QString("too few images (6)"));
    for (const auto& row : plot->rows()) {
      QVERIFY(!row.value.has_value());
      QVERIFY(row.missing.startsWith("too few images ("));
    }
    bool stated = false;
    for (auto* label : view->findChildren<QLabel*>()) stated = stated || label->text().contains("fewer than 10 images");
    QVERIFY2(stated, "the minimum is stated");
    window_.reset();
  }

  void saysPlainlyWhenThereIsNoModel() {
    window_.reset();
    const fs::path db = dir_ / "nomodel.db";
    uitest::import_into(db, {dir_ / "dicom"});
    window_ = open_window(db);
    QTRY_VERIFY_WITH_TIMEOUT(window_->viewer()->has_image(), 10000);
    QCOMPARE(window_->findChild<QLabel*>("aiModel")->text(), QString("No model: import one with Models > Import…"));
    // Models > Import folder registers and activates one; predictions follow.
    auto* manager = window_->show_models();
    manager->import_folder(dir_ / "vit", "random-vit-2", true);
    QTRY_VERIFY_WITH_TIMEOUT(!window_->ai()->probabilities().empty(), 20000);
    QVERIFY(window_->findChild<QLabel*>("aiModel")->text().contains("random-vit-2"));
    // The manager says where each version was trained (an imported folder: "imported").
    auto* table = manager->findChild<QTableWidget*>("modelTable");
    QCOMPARE(table->horizontalHeaderItem(4)->text(), QString("Trained on"));
    QTRY_VERIFY_WITH_TIMEOUT(table->rowCount() == 1, 5000);
    QCOMPARE(table->item(0, 4)->text(), QString("imported"));
    window_.reset();
  }

  // File > Send results to the PACS: the current image's report and attention map go to the PACS
  // of Settings > Network (DCMTK's storescp plays it, when installed), off the GUI thread; no PACS
  // set, a PACS that refuses the association and one that hangs up mid-transfer each get a message
  // that says so.
  void sendsTheCurrentImagesResultsToThePacs() {
    const QString storescp = QStandardPaths::findExecutable("storescp");
    if (storescp.isEmpty()) QSKIP("storescp (Debian dcmtk) is not installed");
    window_.reset();
    const auto open_with_peer = [&](const QString& peer) {
      window_.reset();
      auto session = ui::Session::open(db_, "dr.test");
      if (!session) qFatal("%s", session.error().message.c_str());
      ui::Preferences prefs;
      prefs.author = "dr.test";
      prefs.listen_aet = "HILUM";
      prefs.pacs_peer = peer;
      window_ = std::make_unique<ui::MainWindow>(std::move(session.value()), prefs);
      window_->show();
    };
    // Sends from a fresh window once its image and predictions are there; returns (ok, message).
    const auto send = [&](const QString& peer) -> std::pair<bool, QString> {
      open_with_peer(peer);
      if (!QTest::qWaitFor([&] { return !window_->ai()->probabilities().empty(); }, 20000)) return {false, "no predictions"};
      QSignalSpy sent(window_.get(), &ui::MainWindow::resultsSent);
      window_->action("actionSendResults")->trigger();
      if (!QTest::qWaitFor([&] { return sent.count() == 1; }, 60000)) return {false, "no answer"};
      if (window_->sending_results()) return {false, "still sending after the answer"};
      return {sent.at(0).at(0).toBool(), sent.at(0).at(1).toString()};
    };
    // A storescp on a free loopback port, with `extra` options, writing into `out`.
    std::vector<std::unique_ptr<QProcess>> peers;
    const auto start_peer = [&](const QStringList& extra, const fs::path& out) -> int {
      const int port = test::free_port();
      fs::create_directories(out);
      auto p = std::make_unique<QProcess>();
      p->start(storescp, QStringList{"-aet", "PACS", "-od", QString::fromStdString(out.string())} + extra + QStringList{QString::number(port)});
      p->waitForStarted();
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<std::uint16_t>(port));
      for (int i = 0; i < 100; ++i) {  // until it listens
        const int s = ::socket(AF_INET, SOCK_STREAM, 0);
        const bool up = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
        ::close(s);
        if (up) break;
        QTest::qWait(50);
      }
      peers.push_back(std::move(p));
      return port;
    };

    auto [none_ok, none] = send("");
    QVERIFY(!none_ok);
    QVERIFY2(none.contains("Settings"), qPrintable(none));

    const fs::path received = dir_ / "pacs-received";
    const int good = start_peer({}, received);
    auto [ok, message] = send(QString("PACS@127.0.0.1:%1").arg(good));
    QVERIFY2(ok, qPrintable(message));
    QVERIFY2(message.contains("Sent 2"), qPrintable(message));
    int reports = 0, maps = 0;
    for (const auto& e : fs::directory_iterator(received)) {
      const std::string name = e.path().filename().string();
      reports += name.rfind("SR", 0) == 0 ? 1 : 0;
      maps += name.rfind("SR", 0) != 0 ? 1 : 0;
    }
    QCOMPARE(reports, 1);
    QCOMPARE(maps, 1);

    const int refusing = start_peer({"--refuse"}, dir_ / "pacs-refusing");
    auto [refused_ok, refused] = send(QString("PACS@127.0.0.1:%1").arg(refusing));
    QVERIFY(!refused_ok);
    QVERIFY2(refused.contains("failed") && refused.contains(QString::number(refusing)) && refused.contains("Rejected"), qPrintable(refused));

    const int hanging_up = start_peer({"--abort-during"}, dir_ / "pacs-hanging-up");
    auto [aborted_ok, aborted] = send(QString("PACS@127.0.0.1:%1").arg(hanging_up));
    QVERIFY(!aborted_ok);
    QVERIFY2(aborted.contains("failed") && aborted.contains("broke off"), qPrintable(aborted));

    window_.reset();
    for (auto& p : peers) {
      p->kill();
      p->waitForFinished();
    }
  }

  // Settings > Network's ACSE timeout: the field shows and returns it, it is saved and read back
  // (a value edited out of range or not a number falls back to 15 s), and the background listener
  // closes a connection that sends nothing after that many seconds (2 here, not the default 15).
  void theAcseTimeoutIsASettingTheBackgroundListenerUses() {
    QSettings::setDefaultFormat(QSettings::IniFormat);  // this test's settings, never the user's
    QSettings::setPath(QSettings::IniFormat, QSettings::UserScope, QString::fromStdString((dir_ / "settings").string()));
    ui::Preferences prefs;
    prefs.author = "dr.test";
    prefs.listen_acse_timeout = 7;
    ui::SettingsDialog settings(prefs);
    auto* field = settings.findChild<QSpinBox*>("settingsAcseTimeout");
    QVERIFY(field != nullptr);
    QCOMPARE(field->value(), 7);
    QVERIFY(field->parentWidget() == settings.findChild<QWidget*>("settingsNetwork"));
    field->setValue(2);
    const ui::Preferences chosen = settings.preferences();
    QCOMPARE(chosen.listen_acse_timeout, 2);
    chosen.save();
    QCOMPARE(ui::Preferences::load().listen_acse_timeout, 2);
    for (const QVariant& bad : {QVariant(0), QVariant(601), QVariant("soon")}) {
      QSettings().setValue("network/acse_timeout", bad);
      QCOMPARE(ui::Preferences::load().listen_acse_timeout, 15);
    }

    auto session = ui::Session::open(dir_ / "acse.db", "dr.test");
    QVERIFY(session.ok());
    ui::Preferences listening = chosen;
    listening.listen = true;
    listening.listen_port = test::free_port();
    listening.listen_aet = "HILUM";
    listening.listen_allow = "STORESCU@localhost";
    window_ = std::make_unique<ui::MainWindow>(std::move(session.value()), listening);
    window_->show();
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(listening.listen_port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int silent = -1;
    for (int attempt = 0; attempt < 50 && silent < 0; ++attempt) {  // until the listener's port is open
      QTest::qWait(100);
      const int s = ::socket(AF_INET, SOCK_STREAM, 0);
      if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) silent = s;
      else ::close(s);
    }
    QVERIFY(silent >= 0);
    const auto since = std::chrono::steady_clock::now();
    double closed_after = -1;
    while (closed_after < 0 && std::chrono::steady_clock::now() - since < std::chrono::seconds(10)) {
      QTest::qWait(50);
      char b[16];
      const ssize_t n = ::recv(silent, b, sizeof b, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        closed_after = std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
      }
    }
    ::close(silent);
    QVERIFY2(closed_after >= 1.5 && closed_after < 6.0, qPrintable(QString("closed after %1 s").arg(closed_after)));
    window_.reset();
  }

  // File > Settings > Network: the listener runs in the background and what arrives appears in
  // the worklist (sent with DCMTK's storescu when it is installed).
  void receivesInTheBackgroundWhenTheNetworkIsOn() {
    const QString storescu = QStandardPaths::findExecutable("storescu");
    if (storescu.isEmpty()) QSKIP("storescu (Debian dcmtk) is not installed");
    const fs::path db = dir_ / "network.db";
    auto session = ui::Session::open(db, "dr.test");
    QVERIFY(session.ok());
    ui::Preferences prefs;
    prefs.author = "dr.test";
    prefs.listen = true;
    prefs.listen_port = test::free_port();
    QVERIFY(prefs.listen_port > 0);
    prefs.listen_aet = "HILUM";
    prefs.listen_allow = "STORESCU@localhost";
    window_ = std::make_unique<ui::MainWindow>(std::move(session.value()), prefs);
    window_->show();
    QCOMPARE(window_->worklist()->items().size(), std::size_t{0});
    const auto files = uitest::write_phantoms(dir_ / "incoming", 1);
    const QStringList args = {"-aet", "STORESCU", "-aec", "HILUM", "127.0.0.1", QString::number(prefs.listen_port),
                              QString::fromStdString(files.at(0).string())};
    int rc = -1;
    for (int attempt = 0; attempt < 50 && rc != 0; ++attempt) {  // until the listener's port is open
      QTest::qWait(100);
      rc = QProcess::execute(storescu, args);
    }
    QCOMPARE(rc, 0);
    QTRY_COMPARE_WITH_TIMEOUT(window_->worklist()->items().size(), std::size_t{1}, 10000);

    // File > Query PACS: a peer written wrongly, and a peer that is not there, each say why.
    auto* query = window_->show_query_pacs();
    query->findChild<QLineEdit*>("pacsPeer")->setText("PACS@127.0.0.1");
    query->search();
    QVERIFY(query->status().contains("AET@HOST:PORT"));
    // Our own listener's port answers, but it is no C-FIND SCP: refused with a reason, no rows.
    query->findChild<QLineEdit*>("pacsPeer")->setText(QString("HILUM@127.0.0.1:%1").arg(prefs.listen_port));
    query->search();
    QTRY_VERIFY_WITH_TIMEOUT(query->findChild<QPushButton*>("pacsSearch")->isEnabled(), 20000);
    QCOMPARE(query->results(), 0);
    QVERIFY2(!query->status().isEmpty() && !query->status().startsWith("Searching"), qPrintable(query->status()));
    window_.reset();  // stops the listener
  }

  // Settings > Network with TLS: the background listener takes the certificate files from the
  // settings and speaks TLS only (a throwaway CA and certificates made with openssl).
  void receivesOverTlsWhenTheSettingsSaySo() {
    const QString storescu = QStandardPaths::findExecutable("storescu");
    const QString openssl = QStandardPaths::findExecutable("openssl");
    if (storescu.isEmpty() || openssl.isEmpty()) QSKIP("storescu (Debian dcmtk) or openssl is not installed");
    const fs::path pki = dir_ / "pki";
    fs::create_directories(pki);
    const QString script = QString(
        "set -e; cd '%1'; ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes';"
        " openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj /CN=ca 2>/dev/null;"
        " for n in server client; do openssl req -new $ec -keyout $n.key -out $n.csr -subj /CN=$n 2>/dev/null;"
        " openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out $n.pem 2>/dev/null; done")
                               .arg(QString::fromStdString(pki.string()));
    QCOMPARE(QProcess::execute("/bin/sh", {"-c", script}), 0);
    const auto file = [&](const char* name) { return QString::fromStdString((pki / name).string()); };
    auto session = ui::Session::open(dir_ / "tls.db", "dr.test");
    QVERIFY(session.ok());
    ui::Preferences prefs;
    prefs.author = "dr.test";
    prefs.listen = true;
    prefs.listen_port = test::free_port();
    prefs.listen_aet = "HILUM";
    prefs.listen_allow = "STORESCU@localhost";
    prefs.tls = true;
    prefs.tls_key = file("server.key");
    prefs.tls_cert = file("server.pem");
    prefs.tls_ca = file("ca.pem");
    // The settings dialog shows and returns the same files.
    ui::SettingsDialog settings(prefs);
    QVERIFY(settings.findChild<QCheckBox*>("settingsTls")->isChecked());
    QCOMPARE(settings.findChild<QLineEdit*>("settingsTlsCa")->text(), file("ca.pem"));
    QCOMPARE(settings.preferences().tls_key, file("server.key"));
    window_ = std::make_unique<ui::MainWindow>(std::move(session.value()), prefs);
    window_->show();
    const auto files = uitest::write_phantoms(dir_ / "incoming-tls", 1);
    const QStringList target = {"-aet", "STORESCU", "-aec", "HILUM", "127.0.0.1", QString::number(prefs.listen_port),
                                QString::fromStdString(files.at(0).string())};
    int rc = -1;
    const QStringList tls = QStringList{"+tls", file("client.key"), file("client.pem"), "+cf", file("ca.pem")} + target;
    for (int attempt = 0; attempt < 50 && rc != 0; ++attempt) {
      QTest::qWait(100);
      rc = QProcess::execute(storescu, tls);
    }
    QCOMPARE(rc, 0);
    QTRY_COMPARE_WITH_TIMEOUT(window_->worklist()->items().size(), std::size_t{1}, 10000);
    const auto other = uitest::write_phantoms(dir_ / "incoming-plain", 1);
    QStringList plain = target;
    plain.back() = QString::fromStdString(other.at(0).string());
    QVERIFY(QProcess::execute(storescu, plain) != 0);  // the listener is up, but plain is refused
    QTest::qWait(300);
    QCOMPARE(window_->worklist()->items().size(), std::size_t{1});
    window_.reset();
  }
};

QTEST_MAIN(Workstation)
#include "test_workstation.moc"
