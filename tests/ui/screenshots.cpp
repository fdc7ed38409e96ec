// hilum-ui-screenshots OUTDIR DICOM_FOLDER: photographs every window of the workstation, offscreen,
// with real radiographs: imports DICOM_FOLDER (plus a broken file and an SR, so the import report
// has something to say) into a temporary catalog, registers a random ViT-Ti/16, labels with the
// keyboard, shows an attention map and a ruler, exports, fine-tunes, pre-trains (running, with the
// question quitting asks then, cancelled, resumed), queries a PACS (Orthanc, when the build found
// it), reads blinded with three readers, shows the readers' agreement, keeps a label while the catalog is away, and writes one PNG per window.
#include <QApplication>
#include <QComboBox>
#include <QDir>
#include <QDockWidget>
#include <QLineEdit>
#include <QMessageBox>
#include <QMouseEvent>
#include <QProcess>
#include <QPushButton>
#include <QSlider>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTableWidget>
#include <QTest>
#include <QTimer>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include "free_port.hpp"
#include "agreement_window.hpp"
#include "export_dialog.hpp"
#include "hilum/app/catalog.hpp"
#include "hilum/dicom/display.hpp"
#include "hilum/dicom/network.hpp"
#include "hilum/dicom/reader.hpp"
#include "hilum/testdata/phantom.hpp"
#include "import_dialog.hpp"
#include "learning.hpp"
#include "main_window.hpp"
#include "pretrain_dialog.hpp"
#include "ui_fixtures.hpp"

namespace fs = std::filesystem;
using namespace hilum;

namespace {

int failures = 0;

bool wait_for(const std::function<bool()>& done, int ms) {
  QElapsedTimer t;
  t.start();
  while (!done()) {
    if (t.elapsed() > ms) return false;
    QTest::qWait(20);
  }
  return true;
}

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "screenshots: FAILED: %s\n", what);
    ++failures;
  }
}

void save(QWidget* w, const QDir& out, const QString& name) {
  QApplication::processEvents();
  const QImage image = w->grab().toImage();
  const QString path = out.filePath(name + ".png");
  check(!image.isNull() && image.save(path), qPrintable("saving " + path));
  std::printf("%s (%dx%d)\n", qPrintable(path), image.width(), image.height());
}

// What a failed step saw, so that a failure in CI says more than its name: the open film, the
// reader's state, the AI panel's texts, the labels not yet saved, the active model.
void describe_state(ui::MainWindow& window, QPushButton* submit) {
  const auto& item = window.current_item();
  std::fprintf(stderr, "  open film: %s\n", item ? item->sop_instance_uid.c_str() : "(none)");
  const auto* labeller = window.labeller();
  std::fprintf(stderr, "  reader: image %s, blinded %d, AI hidden %d, submitted %d\n", qPrintable(labeller->image()), labeller->blinded(),
               labeller->ai_hidden(), labeller->submitted());
  if (submit != nullptr)
    std::fprintf(stderr, "  submit button: enabled %d, visible %d, \"%s\"\n", submit->isEnabled(), submit->isVisible(), qPrintable(submit->text()));
  for (const char* name : {"aiModel", "aiStatus", "aiDomain"}) {
    const auto* label = window.ai()->findChild<QLabel*>(name);
    std::fprintf(stderr, "  %s: \"%s\"\n", name, label ? qPrintable(label->text()) : "(none)");
  }
  std::fprintf(stderr, "  AI: model %s, out of domain %d, %zu probabilities\n", qPrintable(window.ai()->model_version()),
               window.ai()->out_of_domain(), window.ai()->probabilities().size());
  std::fprintf(stderr, "  labels not yet saved: %d\n", window.session()->pending_labels());
  const auto active = window.session()->active_model();
  std::fprintf(stderr, "  active model: %s\n", active ? active->version.c_str() : "(none)");
}

void drag(QWidget* w, Qt::MouseButton button, QPointF a, QPointF b) {
  QTest::mousePress(w, button, Qt::NoModifier, a.toPoint());
  for (int k = 1; k <= 4; ++k) {
    const QPointF p = a + (b - a) * (k / 4.0);
    QMouseEvent move(QEvent::MouseMove, p, w->mapToGlobal(p), Qt::NoButton, button, Qt::NoModifier);
    QApplication::sendEvent(w, &move);
  }
  QTest::mouseRelease(w, button, Qt::NoModifier, b.toPoint());
}

using hilum::test::free_port;

// A PACS to query: Orthanc (Debian `orthanc`) with its own configuration under `dir`, when the
// build found it. Returns its AE title@host:port, or an empty string.
QString start_orthanc(QProcess& process, const fs::path& dir) {
#ifdef HILUM_ORTHANC
  const int port = free_port();
  fs::create_directories(dir / "storage");
  std::ofstream cfg(dir / "orthanc.json");
  cfg << "{\"Name\": \"hilum-screenshots\", \"StorageDirectory\": \"" << (dir / "storage").string() << "\", \"IndexDirectory\": \""
      << (dir / "storage").string() << "\", \"DicomAet\": \"ORTHANC\", \"DicomPort\": " << port << ", \"HttpPort\": " << free_port()
      << ", \"RemoteAccessAllowed\": false, \"AuthenticationEnabled\": false, \"Plugins\": [], \"DicomModalities\": {\"hilum\": "
         "{\"AET\": \"HILUM\", \"Host\": \"127.0.0.1\", \"Port\": 11112, \"AllowEcho\": true, \"AllowFind\": true, \"AllowGet\": true, "
         "\"AllowMove\": false, \"AllowStore\": true}}}\n";
  cfg.close();
  process.setStandardOutputFile(QString::fromStdString((dir / "orthanc.log").string()));
  process.setStandardErrorFile(QString::fromStdString((dir / "orthanc.log").string()));
  process.start(HILUM_ORTHANC, {"--no-jobs", QString::fromStdString((dir / "orthanc.json").string())});
  dicom::net::ScuOptions o;
  o.peer = {"ORTHANC", "127.0.0.1", port};
  for (int i = 0; i < 100; ++i) {
    if (dicom::net::echo(o).ok()) return QString("ORTHANC@127.0.0.1:%1").arg(port);
    QTest::qWait(100);
  }
  std::fprintf(stderr, "screenshots: Orthanc did not answer (see %s)\n", (dir / "orthanc.log").c_str());
#else
  (void)process;
  (void)dir;
#endif
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  QApplication app(argc, argv);
  QApplication::setApplicationName("Hilum-screenshots");
  if (argc < 3) {
    std::fprintf(stderr, "usage: hilum-ui-screenshots OUTDIR DICOM_FOLDER\n");
    return 2;
  }
  QDir out(argv[1]);
  out.mkpath(".");
  const fs::path dicoms = argv[2];
  const fs::path dir = uitest::make_temp_dir("hilum-screenshots");
  const fs::path db = dir / "hilum.db";
  const fs::path extra = dir / "incoming";
  fs::create_directories(extra);
  testdata::write_not_dicom(extra / "notes.txt");
  testdata::write_basic_text_sr(extra / "report_sr.dcm");
  testdata::write_truncated(extra / "truncated.dcm", 1024);
  // The NIH chest film sent as a colour secondary capture (grey in every pixel) and as a colour
  // picture (a red box drawn over it): the first is imported and read like any film, the second is
  // skipped with its reason (the "import" screenshot).
  if (auto film = dicom::read_radiograph(dicoms / "NIH_DX_nofinding_gcp.dcm")) {
    if (auto shown = dicom::render_8bit(film.value(), {})) {
      const std::vector<std::uint8_t> grey = std::move(shown.value());
      const int columns = film->columns, rows = film->rows;
      testdata::ColourDicomSpec spec;
      spec.photometric = "YBR_FULL_422";
      spec.rows = rows;
      spec.columns = columns - columns % 2;
      spec.modality = "DX";
      spec.body_part = "CHEST";
      spec.colour = [&](int r, int c) {
        const std::uint8_t v = grey[static_cast<std::size_t>(r) * static_cast<std::size_t>(columns) + static_cast<std::size_t>(c)];
        return std::array<std::uint8_t, 3>{v, v, v};
      };
      testdata::write_colour_dicom(extra / "film_sent_in_colour.dcm", spec);
      spec.photometric = "RGB";
      spec.colour = [&](int r, int c) {
        const std::uint8_t v = grey[static_cast<std::size_t>(r) * static_cast<std::size_t>(columns) + static_cast<std::size_t>(c)];
        if (r > rows / 4 && r < 3 * rows / 4 && c > columns / 3 && c < columns / 2) return std::array<std::uint8_t, 3>{230, 40, 40};
        return std::array<std::uint8_t, 3>{v, v, v};
      };
      testdata::write_colour_dicom(extra / "colour_picture.dcm", spec);
    }
  }
  // An axial CT slice in its reconstruction circle sent with the header of a chest DX: its round
  // field takes it out of the model's domain whatever the header says.
  {
    testdata::DicomSpec slice;
    slice.phantom.rows = slice.phantom.columns = 512;
    slice.modality = "DX";
    slice.body_part = "CHEST";
    slice.sop_instance_uid = "1.2.826.0.1.3680043.9.77.512512";
    slice.patient_id = "CT-AS-DX";
    slice.draw = testdata::draw_axial_ct_slice;
    testdata::write_dicom(extra / "ct_slice_as_chest_dx.dcm", slice);
  }
  std::printf("model: %s\n", uitest::builtin_or_random_model(db, dir).c_str());

  auto session = ui::Session::open(db, "dr.lee");
  if (!session) return 2;
  ui::Preferences prefs;
  prefs.author = "dr.lee";
  auto window = std::make_unique<ui::MainWindow>(std::move(session.value()), prefs);
  window->resize(1600, 1000);
  window->show();
  QApplication::setActiveWindow(window.get());
  check(QTest::qWaitForWindowActive(window.get()), "window active");

  // Import through the dialog: the real files and the broken ones.
  auto* import = window->import_paths({dicoms, extra});
  check(wait_for([&] { return !import->running(); }, 120000), "import finished");
  save(import, out, "import");
  import->close();
  QApplication::setActiveWindow(window.get());
  check(QTest::qWaitForWindowActive(window.get()), "window active again");

  auto* worklist = window->worklist();
  check(wait_for([&] { return !worklist->busy() && !worklist->items().empty(); }, 20000), "worklist filled");
  // Open the NIH chest radiograph (the most typical PA view), else the first image.
  QString uid;
  for (const auto& w : worklist->items())
    if (w.path.find("NIH_DX") != std::string::npos) uid = QString::fromStdString(w.sop_instance_uid);
  QSignalSpy predicted(window.get(), &ui::MainWindow::predictionsShown);
  if (!uid.isEmpty() && (!window->current_item() || QString::fromStdString(window->current_item()->sop_instance_uid) != uid)) {
    worklist->select(uid);
  }
  check(wait_for([&] { return window->viewer()->has_image() && !window->ai()->probabilities().empty(); }, 60000), "image and predictions");
  // The built-in model calibrates per population: the panel names whose calibration the bars carry
  // (this film's header gives the patient's age, 81).
  if (window->ai()->findChild<QLabel*>("aiModel")->text().contains("hilum-cxr")) {
    const QString said = window->ai()->findChild<QLabel*>("aiDomain")->text();
    check(said.contains("calibrated for adult films (by the patient's age)"), qPrintable("the population named: " + said));
  }

  // Label with the keyboard: Effusion present, Nodule absent, Cardiomegaly uncertain; a box for Effusion.
  auto key = [&](Qt::Key k) { QTest::keyClick(window.get(), k); };
  window->labels()->select_finding("Cardiomegaly");
  key(Qt::Key_U);
  window->labels()->select_finding("Nodule");
  key(Qt::Key_A);
  window->labels()->select_finding("Effusion");
  key(Qt::Key_P);
  key(Qt::Key_B);
  auto* v = window->viewer();
  const double w = v->image_columns(), h = v->image_rows();  // the view's coordinates, also before the full decode lands
  drag(v, Qt::LeftButton, v->to_widget(QPointF(w * 0.58, h * 0.55)), v->to_widget(QPointF(w * 0.86, h * 0.82)));
  // A ruler across the chest.
  key(Qt::Key_M);
  drag(v, Qt::LeftButton, v->to_widget(QPointF(w * 0.15, h * 0.45)), v->to_widget(QPointF(w * 0.85, h * 0.45)));
  // The attention map of the most probable finding.
  QSignalSpy heat(window.get(), &ui::MainWindow::heatmapShown);
  const auto& probs = window->ai()->probabilities();
  const auto best = std::max_element(probs.begin(), probs.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  window->request_heatmap(QString::fromStdString(best->first));
  check(wait_for([&] { return heat.count() > 0; }, 60000), "heatmap shown");
  window->ai()->findChild<QSlider*>("aiOpacity")->setValue(40);
  wait_for([] { return false; }, 300);  // the smooth downscale lands
  save(window.get(), out, "main");
  // The class-specific map of the same finding.
  window->ai()->findChild<QComboBox*>("aiHeatmapMethod")->setCurrentIndex(1);
  check(wait_for([&] { return heat.count() > 1; }, 60000), "class-specific map shown");
  wait_for([] { return false; }, 300);
  save(window.get(), out, "main_class_specific");
  window->ai()->findChild<QComboBox*>("aiHeatmapMethod")->setCurrentIndex(0);
  check(wait_for([&] { return heat.count() > 2; }, 60000), "rollout shown again");

  // Opens the worklist's image whose path holds `part`, waits for its prediction, saves the window
  // as `name` and goes back to the chest film; false when no image has such a path.
  auto visit = [&](const char* part, const QString& name, const std::function<void()>& while_open = {}) {
    QString found;
    for (const auto& item : worklist->items())
      if (item.path.find(part) != std::string::npos) found = QString::fromStdString(item.sop_instance_uid);
    if (found.isEmpty()) return false;
    const auto before = predicted.count();
    worklist->select(found);
    check(wait_for([&] { return predicted.count() > before && window->viewer()->has_image(); }, 60000), qPrintable(name + ": prediction shown"));
    wait_for([] { return false; }, 300);
    save(window.get(), out, name);
    if (while_open) while_open();
    worklist->select(uid);
    check(wait_for([&] { return window->viewer()->has_image() && !window->ai()->probabilities().empty(); }, 60000), "back to the chest film");
    return true;
  };
  // A radiograph that is not a chest film (the dental panoramic among the shared files): the AI
  // panel says it is outside the model's domain and shows no finding bars.
  visit("CR-ModalitySequenceLUT", "main_out_of_domain");
  // The CT slice with a chest header: outside, for its round field.
  check(visit("ct_slice_as_chest_dx", "main_round_field",
              [&] {
                // Its reason (the rule, then the pixel parts) runs to several lines: all of them shown.
                const auto* reason = window->ai()->findChild<QLabel*>("aiDomain");
                check(window->ai()->out_of_domain() && reason != nullptr && reason->text().contains("a round field"),
                      "the AI panel names the round field");
                check(reason != nullptr && reason->height() >= reason->heightForWidth(reason->width()), "the AI panel's reason is whole");
              }),
        "the CT slice is in the worklist");
  check(wait_for([&] {
          for (const auto& item : worklist->items())
            if (item.path.find("ct_slice_as_chest_dx") != std::string::npos) return item.in_domain.has_value() && !*item.in_domain;
          return false;
        }, 20000),
        "the worklist says the CT slice with a chest header is outside the AI's domain");
  // The chest film that came as a colour secondary capture: read as the grey it is, classified
  // like the original.
  check(visit("film_sent_in_colour", "main_film_sent_in_colour"), "the film sent in colour is in the worklist");

  // The viewer alone with a narrow window, inverted, at 1:1.
  key(Qt::Key_H);
  key(Qt::Key_Escape);
  drag(v, Qt::RightButton, QPointF(400, 400), QPointF(340, 430));
  key(Qt::Key_I);
  key(Qt::Key_Z);
  check(wait_for([&] { return !v->rendering(); }, 5000), "re-rendered");
  wait_for([] { return false; }, 200);
  save(v, out, "viewer_window_invert_1to1");
  key(Qt::Key_R);
  key(Qt::Key_H);

  // A training set: 40 synthetic patients beside the real images, and labels on all of them (a few
  // findings each) so that export and fine-tuning have data.
  uitest::import_into(db, {uitest::write_phantoms(dir / "phantoms", 40, 1, 320, 256)});
  {
    auto c = app::Catalog::open(db);
    auto list = c->list_instances({});
    std::vector<app::LabelInput> labels;
    int i = 0;
    for (const auto& im : list.value()) {
      ++i;
      if (QString::fromStdString(im.sop_instance_uid) == uid) continue;
      int j = 0;
      for (const char* f : {"Effusion", "Pneumonia", "Cardiomegaly"}) {
        app::LabelInput in;
        in.image = im.sop_instance_uid;
        in.finding = f;
        in.value = ((i * 31 + (j++) * 17) % 7) < 3 ? app::LabelValue::Present : app::LabelValue::Absent;
        in.author = "dr.kim";
        in.source = app::LabelSource::Gui;
        labels.push_back(in);
      }
    }
    check(c->add_labels(labels).ok(), "bulk labels");
  }
  window->worklist()->refresh();
  wait_for([&] { return !worklist->busy(); }, 10000);

  // Export.
  auto* exporter = window->show_export();
  exporter->folder()->setText(QString::fromStdString((dir / "export").string()));
  exporter->findChild<QCheckBox*>("exportImages")->setChecked(true);
  QSignalSpy exported(exporter, &ui::ExportDialog::finished_export);
  exporter->start();
  check(wait_for([&] { return exported.count() > 0; }, 120000), "export finished");
  save(exporter, out, "export");
  exporter->close();

  // Fine-tune (head on cached embeddings) and the model manager.
  auto* finetune = window->show_finetune();
  app::FinetuneOptions options;
  options.strategy = app::Strategy::LastK;
  options.k = 1;
  options.epochs = 4;
  options.author = "dr.lee";
  finetune->set_options(options);
  QSignalSpy tuned(finetune, &ui::FinetuneDialog::finished_finetune);
  finetune->start();
  check(wait_for([&] { return tuned.count() > 0; }, 300000), "fine-tune finished");
  if (!finetune->error().isEmpty()) std::fprintf(stderr, "screenshots: fine-tune: %s\n", qPrintable(finetune->error()));
  if (const auto& r = finetune->result())
    std::printf("fine-tune: %s %s: %s\n", r->model.version.c_str(), r->promoted ? "promoted" : "kept as a candidate", r->reason.c_str());
  save(finetune, out, "finetune");
  finetune->close();
  // Models > Pre-train on this catalog's films: a small encoder at 64 pixels on 24 films, so that
  // it takes seconds. Photographed running (with the question quitting asks then), cancelled, and
  // resumed to its end; then the model manager with the backbone.
  auto* models = window->show_models();
  auto* pre = models->show_pretrain();
  {
    app::PretrainOptions po;
    po.arch = "vit-ti16";
    po.image_size = 64;
    po.max_images = 24;
    po.batch_size = 8;
    pre->set_options(po);
  }
  pre->findChild<QSpinBox*>("pretrainEpochs")->setValue(8);
  QSignalSpy pre_epochs(pre, &ui::PretrainDialog::epochFinished);
  QSignalSpy pretrained(pre, &ui::PretrainDialog::finished_pretrain);
  pre->start();
  check(wait_for([&] { return pre_epochs.count() >= 3 || pretrained.count() > 0; }, 300000), "pre-training: 3 epochs");
  save(pre, out, "pretrain_running");
  if (!window->running_jobs().isEmpty()) {
    // Quitting now asks first: the real question, photographed, then answered "Keep working".
    bool asked = false;
    QTimer::singleShot(300, [&] {
      if (auto* box = qobject_cast<QMessageBox*>(QApplication::activeModalWidget())) {
        save(box, out, "quit_question");
        asked = true;
        for (auto* b : box->buttons())
          if (box->buttonRole(b) == QMessageBox::RejectRole) b->click();
      }
    });
    window->close();
    check(asked && window->isVisible() && !window->quitting(), "quit question asked and declined");
  }
  pre->cancel();
  check(wait_for([&] { return pretrained.count() > 0; }, 120000), "pre-training cancelled");
  save(pre, out, "pretrain_cancelled");
  pre->start();  // the same name: resumes after the kept epoch
  check(wait_for([&] { return pretrained.count() > 1; }, 300000), "pre-training finished");
  if (!pre->error().isEmpty()) std::fprintf(stderr, "screenshots: pre-training: %s\n", qPrintable(pre->error()));
  save(pre, out, "pretrain");
  pre->close();
  if (models->backbones()->rowCount() > 0) models->backbones()->setCurrentCell(0, 0);
  save(models, out, "models");
  models->close();

  save(window->show_settings(), out, "settings");
  save(window->show_shortcuts(), out, "shortcuts");
  save(window->show_about(), out, "about");
  for (auto* w2 : QApplication::topLevelWidgets())
    if (w2 != window.get()) w2->close();

  // File > Query PACS against Orthanc holding a few of the films (when the build found Orthanc;
  // else the dialog says that nothing answers).
  {
    QProcess orthanc;
    const QString peer = start_orthanc(orthanc, dir / "orthanc");
    if (!peer.isEmpty()) {
      std::vector<fs::path> files;
      for (const auto& item : worklist->items())
        if (files.size() < 8 && item.path.find("phantoms") == std::string::npos) files.emplace_back(item.path);
      dicom::net::ScuOptions o;
      o.peer = {"ORTHANC", "127.0.0.1", peer.section(':', -1).toInt()};
      auto sent = dicom::net::send_files(o, files);
      check(sent.ok() && sent->sent > 0, "films sent to Orthanc");
    }
    auto* pacs = window->show_query_pacs();
    pacs->findChild<QLineEdit*>("pacsPeer")->setText(peer.isEmpty() ? QString("PACS@127.0.0.1:%1").arg(free_port()) : peer);
    pacs->findChild<QLineEdit*>("pacsPatientName")->setText("*");
    pacs->search();
    check(wait_for([&] { return pacs->findChild<QPushButton*>("pacsSearch")->isEnabled(); }, 30000), "PACS search finished");
    if (pacs->results() > 0) pacs->findChild<QTableWidget*>("pacsResults")->selectRow(0);
    save(pacs, out, "query_pacs");
    pacs->close();
    if (orthanc.state() != QProcess::NotRunning) {
      orthanc.terminate();
      orthanc.waitForFinished(10000);
    }
  }

  // Blinded double reading (labels and AI) with three readers on the chest film: dr.lee sees
  // neither dr.kim's nor dr.patel's labels, nor the model's findings, until submitting.
  {
    auto c = app::Catalog::open(db);
    check(c.ok() && c->set_blinding(app::Blinding::LabelsAndAi).ok(), "blinding on");
    std::vector<app::LabelInput> labels;
    for (const auto& [author, finding, value] :
         std::vector<std::tuple<const char*, const char*, app::LabelValue>>{{"dr.kim", "Effusion", app::LabelValue::Present},
                                                                            {"dr.kim", "Cardiomegaly", app::LabelValue::Present},
                                                                            {"dr.patel", "Effusion", app::LabelValue::Absent},
                                                                            {"dr.patel", "Nodule", app::LabelValue::Uncertain}}) {
      app::LabelInput in;
      in.image = uid.toStdString();
      in.finding = finding;
      in.value = value;
      in.author = author;
      in.source = app::LabelSource::Gui;
      labels.push_back(in);
    }
    check(c->add_labels(labels).ok(), "other readers' labels");
  }
  {
    auto* dock = window->findChild<QDockWidget*>("rightDock");
    QString other;
    for (const auto& item : worklist->items())
      if (QString::fromStdString(item.sop_instance_uid) != uid && other.isEmpty()) other = QString::fromStdString(item.sop_instance_uid);
    worklist->select(other);  // away and back: the image's labels are read again under blinding
    check(wait_for([&] { return window->current_item() && QString::fromStdString(window->current_item()->sop_instance_uid) == other; }, 20000),
          "another image");
    const auto before = predicted.count();
    worklist->select(uid);
    check(wait_for([&] { return predicted.count() > before && window->viewer()->has_image(); }, 60000), "back to the chest film, blinded");
    window->labels()->select_finding("Effusion");
    wait_for([] { return false; }, 300);
    save(dock, out, "labels_blinded");
    auto* submit = window->findChild<QPushButton*>("submitReadingButton");
    check(submit != nullptr && submit->isEnabled(), "submit button enabled before submitting");
    const auto shown_before = predicted.count();
    if (submit != nullptr) QTest::mouseClick(submit, Qt::LeftButton);
    // The model's answer for this film replaces "withheld": its findings, or (should the gate have
    // promoted the fine-tune above, trained on these few films) that the film is outside what it
    // knows.
    const bool answered = wait_for(
        [&] {
          return predicted.count() > shown_before && window->current_item() && QString::fromStdString(window->current_item()->sop_instance_uid) == uid &&
                 (!window->ai()->probabilities().empty() || window->ai()->out_of_domain());
        },
        60000);
    check(answered, "findings shown after submitting");
    check(submit == nullptr || (!submit->isEnabled() && window->labeller()->submitted()), "reading shown as submitted");
    if (!answered || window->ai()->probabilities().empty()) describe_state(*window, submit);
    wait_for([] { return false; }, 300);
    save(dock, out, "labels_submitted");
  }

  // Labels > Reader agreement: two more readers (dr.a, dr.b) on every film; the statistics of
  // `hilum-cli agreement` and their forest plot.
  {
    uitest::label_by_two_readers(db);
    auto* agreement = window->show_agreement();
    check(wait_for([&] { return !agreement->computing(); }, 120000), "agreement computed");
    agreement->select_finding("Effusion");
    wait_for([] { return false; }, 300);
    save(agreement, out, "agreement");
    // A finding only a few films carry two readers' labels of: "too few images (n)", no statistic.
    auto* finding_box = agreement->findChild<QComboBox*>();
    auto* table = agreement->findChild<QTableWidget*>("agreementTable");
    bool too_few = false;
    for (int i = 0; finding_box != nullptr && table != nullptr && i < finding_box->count() && !too_few; ++i) {
      finding_box->setCurrentIndex(i);
      too_few = table->rowCount() > 0 && table->item(0, 2)->text().startsWith("too few images");
    }
    if (too_few) {
      wait_for([] { return false; }, 300);
      save(agreement, out, "agreement_too_few_images");
    }
  }

  // The catalog goes away (a failing writer stands in for a server that stopped): a label is kept,
  // "not yet saved (1)" and "Retry now" in the status bar; then the catalog is back and it is saved.
  {
    ui::Session* reading_session = window->session();
    reading_session->outbox().set_writer([](const std::vector<app::LabelInput>&) -> app::Result<std::vector<std::int64_t>> {
      return app::Error{app::ErrorKind::CannotOpen, "catalog query: cannot reach the catalog server (connection refused)"};
    });
    window->labels()->select_finding("Mass");
    window->labeller()->set_value("Mass", app::LabelValue::Absent);  // as the A key does
    check(reading_session->pending_labels() == 1, "label kept while the catalog is away");
    wait_for([] { return false; }, 300);
    save(window.get(), out, "main_labels_not_yet_saved");
    reading_session->outbox().reset_writer();
    (void)reading_session->retry_labels();  // in the background
    wait_for([&] { return reading_session->pending_labels() == 0 && !reading_session->outbox().retrying(); }, 10000);
    check(reading_session->pending_labels() == 0, "kept label saved once the catalog is back");
  }

  // The worklist sorted by AI uncertainty, and the main window once more after everything.
  worklist->sort_box()->setCurrentIndex(2);
  wait_for([&] { return !worklist->busy(); }, 10000);
  wait_for([] { return false; }, 300);
  save(window.get(), out, "main_after_finetune");

  window.reset();
  std::error_code ec;
  fs::remove_all(dir, ec);
  std::printf("%s\n", failures == 0 ? "screenshots: all windows written" : "screenshots: some steps failed");
  return failures == 0 ? 0 : 1;
}
