// bench_ui: how long the workstation takes from opening an image to its first pixels on screen, and
// to its predictions in the AI panel, for a 2,000 x 2,500 16-bit CR (synthetic phantom, explicit
// little endian) and a random ViT-Ti/16 with the ChestX-ray14 outputs, offscreen (the real widgets,
// the real worker threads). Each image is opened once so that its predictions are computed, not
// read back from the catalog; the engine's own latency (app::classify: decode, preprocess,
// forward) is measured on the same files for comparison.
//   QT_QPA_PLATFORM=offscreen build/bench/bench_ui [IMAGES] [DIR]
// With DIR, its .dcm files (real films, e.g. JPEG 2000 CRs with distinct SOP Instance UIDs:
// bench/ui_open/run.sh makes them) are opened instead of the phantoms, and the decode alone
// (dicom::read_radiograph, full resolution) is timed on the same files. The viewer shows a film first
// from a reduced decode sized to the view where the codec offers one (issue 18), then the full decode:
// both times are printed.
#include <QApplication>
#include <QElapsedTimer>
#include <QEventLoop>
#include <QTimer>
#include <QTest>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "hilum/dicom/reader.hpp"
#include "hilum/testdata/phantom.hpp"
#include "main_window.hpp"
#include "ui_fixtures.hpp"

namespace fs = std::filesystem;
using namespace hilum;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0.0;
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

bool wait_for(const std::function<bool()>& done, int ms) {
  QElapsedTimer t;
  t.start();
  while (!done()) {
    if (t.elapsed() > ms) return false;
    QCoreApplication::processEvents(QEventLoop::AllEvents, 1);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  QApplication app(argc, argv);
  const int images = argc > 1 ? std::max(3, std::atoi(argv[1])) : 8;
  const fs::path dir = uitest::make_temp_dir("hilum-bench-ui");
  const fs::path db = dir / "hilum.db";
  std::vector<fs::path> files;
  if (argc > 2) {
    for (const auto& entry : fs::directory_iterator(argv[2])) {
      if (entry.path().extension() == ".dcm") files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    if (files.size() > static_cast<std::size_t>(images)) files.resize(static_cast<std::size_t>(images));
    std::printf("opening %zu films of %s\n", files.size(), argv[2]);
    if (files.size() < 3) return 2;
  } else {
    std::printf("writing %d 2000x2500 16-bit CR phantoms\n", images);
  }
  for (int k = 0; argc <= 2 && k < images; ++k) {
    testdata::DicomSpec spec;
    spec.phantom.rows = 2500;
    spec.phantom.columns = 2000;
    spec.phantom.bits_allocated = 16;
    spec.phantom.bits_stored = 16;
    spec.phantom.high_bit = 15;
    spec.phantom.seed = static_cast<std::uint32_t>(k + 1);
    spec.sop_class_uid = "1.2.840.10008.5.1.4.1.1.1";  // CR Image Storage
    spec.modality = "CR";
    spec.windows = {{32768, 65536, "FULL"}};
    spec.patient_id = "BENCH-" + std::to_string(k);
    spec.study_instance_uid = "1.2.826.0.1.3680043.10.9." + std::to_string(k + 1);
    spec.series_instance_uid = spec.study_instance_uid + ".1";
    spec.sop_instance_uid = spec.series_instance_uid + ".1";
    files.push_back(dir / ("cr_" + std::to_string(k) + ".dcm"));
    testdata::write_dicom(files.back(), spec);
  }
  uitest::import_into(db, {files});
  std::printf("model: %s\n", uitest::builtin_or_random_model(db, dir).c_str());

  auto session = ui::Session::open(db, "bench");
  if (!session) return 2;
  ui::Preferences prefs;
  prefs.author = "bench";
  ui::MainWindow window(std::move(session.value()), prefs);
  window.resize(1600, 1000);
  // Predictions are shown when the AI panel has its answer: findings, or (a film outside the
  // model's domain, e.g. the NEMA test CR) the domain warning instead of findings.
  bool first_shown = false;
  auto c0 = QObject::connect(&window, &ui::MainWindow::predictionsShown, [&] { first_shown = true; });
  window.show();
  if (!wait_for([&] { return !window.worklist()->busy() && window.worklist()->items().size() == files.size(); }, 30000)) return 3;
  // The first image (opened automatically) warms up: the model is loaded and the caches filled.
  if (!wait_for([&] { return first_shown; }, 60000)) return 3;
  QObject::disconnect(c0);

  std::vector<double> first_pixels, predictions, full_shown, decode, render;
  const auto items = window.worklist()->items();
  for (std::size_t k = 1; k < items.size(); ++k) {
    bool painted = false, predicted = false, full = false;
    double t_paint = 0, t_pred = 0, t_full = 0;
    QElapsedTimer t;
    // An idle wait in the event loop, as the application waits (a busy loop would take a core
    // from the workers).
    QEventLoop loop;
    auto c1 = QObject::connect(window.viewer(), &ui::ImageView::firstPaint, [&] {
      painted = true;
      t_paint = static_cast<double>(t.nsecsElapsed()) / 1e6;
      if (predicted && full) loop.quit();
    });
    auto c2 = QObject::connect(&window, &ui::MainWindow::predictionsShown, [&] {
      predicted = true;
      t_pred = static_cast<double>(t.nsecsElapsed()) / 1e6;
      if (painted && full) loop.quit();
    });
    auto c3 = QObject::connect(&window, &ui::MainWindow::fullImageShown, [&] {
      full = true;
      t_full = static_cast<double>(t.nsecsElapsed()) / 1e6;
      if (painted && predicted) loop.quit();
    });
    QTimer::singleShot(60000, &loop, &QEventLoop::quit);
    t.start();
    window.open_item(items[k]);
    if (!painted || !predicted || !full) loop.exec();
    if (!painted || !predicted || !full) return 4;
    QObject::disconnect(c1);
    QObject::disconnect(c2);
    QObject::disconnect(c3);
    first_pixels.push_back(t_paint);
    const auto& pt = window.last_prediction_timing();
    std::printf("  image %zu: first pixels %.1f ms (halved %d times), predictions %.1f ms (queued %.1f, worker %.1f, engine %.1f), full resolution %.1f ms\n",
                k, t_paint, window.first_decode_reduction(), t_pred, pt.queued_ms, pt.worker_ms, pt.engine_ms, t_full);
    predictions.push_back(t_pred);
    full_shown.push_back(t_full);
    QTest::qWait(300);  // the smooth downscaled copy lands before the next image
  }

  // The engine alone on the same files (its own catalog connection; predictions are overwritten).
  std::vector<double> engine;
  {
    auto catalog = app::Catalog::open(db);
    auto model = app::load_model(catalog.value(), "");
    for (std::size_t k = 1; k < items.size(); ++k) {
      app::Instance im;
      im.path = items[k].path;  // not catalogued: classified, not stored
      QElapsedTimer t;
      t.start();
      auto r = app::classify(catalog.value(), model.value(), {im}, 1);
      engine.push_back(static_cast<double>(t.nsecsElapsed()) / 1e6);
      if (!r || !r->front().error.empty()) return 5;
    }
  }
  // One synchronous repaint of the viewer at fit (before and after the smooth copy lands).
  std::vector<double> repaint;
  for (int k = 0; k < 5; ++k) {
    QElapsedTimer t;
    t.start();
    window.viewer()->repaint();
    repaint.push_back(static_cast<double>(t.nsecsElapsed()) / 1e6);
  }
  std::printf("repaints: %.1f %.1f %.1f %.1f %.1f ms (zoom %.2f)\n", repaint[0], repaint[1], repaint[2], repaint[3], repaint[4], window.viewer()->zoom());
  // The decode worker alone (read + 8-bit rendering), no GUI.
  std::vector<double> decode_only, decode_part, render_part;
  for (std::size_t k = 1; k < items.size(); ++k) {
    QElapsedTimer t;
    t.start();
    const auto d = ui::decode_image(QString::fromStdString(items[k].path));
    decode_only.push_back(static_cast<double>(t.nsecsElapsed()) / 1e6);
    decode_part.push_back(d.decode_ms);
    render_part.push_back(d.render_ms);
  }
  // The viewer's first decode alone (reduced to the view where the codec allows), read + render.
  std::vector<double> first_decode_only;
  for (std::size_t k = 1; k < items.size(); ++k) {
    QElapsedTimer t;
    t.start();
    const auto d = ui::decode_image(QString::fromStdString(items[k].path), window.first_decode_min_side(items[k]));
    first_decode_only.push_back(static_cast<double>(t.nsecsElapsed()) / 1e6);
  }
  // The decode alone: the file read at full resolution (what the viewer shows), no rendering.
  std::vector<double> read_only;
  for (std::size_t k = 1; k < items.size(); ++k) {
    QElapsedTimer t;
    t.start();
    const auto r = dicom::read_radiograph(items[k].path);
    read_only.push_back(static_cast<double>(t.nsecsElapsed()) / 1e6);
    if (!r) return 7;
  }
  std::printf("\n%zu images, median of each:\n", first_pixels.size());
  std::printf("  decode alone (dicom::read_radiograph, full resolution): %.1f ms\n", median(read_only));
  std::vector<double> after_decode, after_pixels;
  for (std::size_t k = 0; k < first_pixels.size(); ++k) {
    after_decode.push_back(first_pixels[k] - median(read_only));
    after_pixels.push_back(predictions[k] - first_pixels[k]);
  }
  std::printf("  first pixels - decode alone:         %7.1f ms (goal <= 30)\n", median(after_decode));
  std::printf("  predictions shown - first pixels:    %7.1f ms (goal <= 50; min %.1f, max %.1f)\n", median(after_pixels),
              *std::min_element(after_pixels.begin(), after_pixels.end()), *std::max_element(after_pixels.begin(), after_pixels.end()));
  std::printf("  decode worker alone (read %.1f + 8-bit render %.1f): %.1f ms\n", median(decode_part), median(render_part), median(decode_only));
  std::printf("  first decode worker alone (reduced to the view, read + render): %.1f ms\n", median(first_decode_only));
  std::printf("  open -> first pixels painted:        %7.1f ms (min %.1f, max %.1f)\n", median(first_pixels),
              *std::min_element(first_pixels.begin(), first_pixels.end()), *std::max_element(first_pixels.begin(), first_pixels.end()));
  std::printf("  open -> predictions shown:           %7.1f ms (min %.1f, max %.1f)\n", median(predictions),
              *std::min_element(predictions.begin(), predictions.end()), *std::max_element(predictions.begin(), predictions.end()));
  std::printf("  open -> full resolution shown:       %7.1f ms (min %.1f, max %.1f)\n", median(full_shown),
              *std::min_element(full_shown.begin(), full_shown.end()), *std::max_element(full_shown.begin(), full_shown.end()));
  std::printf("  engine alone (app::classify, 1 image): %5.1f ms\n", median(engine));
  std::printf("  predictions shown - engine alone:    %7.1f ms (the decode is shared with the viewer)\n", median(predictions) - median(engine));

  // Window/level drag on a 3,000 x 3,000 16-bit image: each step is one render_image on the
  // display pool (the latest request wins; the GUI thread only swaps the QImage in).
  {
    testdata::DicomSpec spec;
    spec.phantom.rows = spec.phantom.columns = 3000;
    spec.phantom.bits_allocated = spec.phantom.bits_stored = 16;
    spec.phantom.high_bit = 15;
    spec.modality = "CR";
    const fs::path big = dir / "cr_3000.dcm";
    testdata::write_dicom(big, spec);
    const auto decoded = ui::decode_image(QString::fromStdString(big.string()));
    std::vector<double> steps;
    for (int k = 0; k < 15; ++k) {
      dicom::DisplayOptions o;
      o.voi = dicom::VoiChoice::custom(20000.0 + 500.0 * k, 30000.0 - 700.0 * k);
      QElapsedTimer t;
      t.start();
      const auto r = ui::render_image(*decoded.image, o);
      steps.push_back(static_cast<double>(t.nsecsElapsed()) / 1e6);
      if (!r.error.isEmpty()) return 6;
    }
    std::printf("  window/level step, 3000x3000 16-bit (render_image): %.1f ms median (%.0f updates/s)\n", median(steps),
                1000.0 / median(steps));
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}
