#include "main_window.hpp"

#include <QApplication>
#include <QCloseEvent>
#include <QCoreApplication>
#include <QDockWidget>
#include <QFileDialog>
#include <QMenuBar>
#include <QMessageBox>
#include <QPushButton>
#include <QRegularExpression>
#include <QSplitter>
#include <QStatusBar>
#include <QThreadPool>
#include <QTimer>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string_view>

#include "async.hpp"
#include "export_dialog.hpp"
#include "hilum/app/classify.hpp"
#include "hilum/app/viewer.hpp"
#include "hilum/app/sr_export.hpp"
#include "hilum/core/numbers.hpp"
#include "hilum/inference/overlay.hpp"
#include "import_dialog.hpp"
#include "learning.hpp"

namespace hilum::ui {
namespace {

constexpr const char* kFinetuneMark = "ui.auto_finetune.after_event";

struct PredictionOutcome {
  std::vector<std::pair<std::string, double>> probabilities;
  app::DomainCheck domain;
  double queued_ms = 0.0;  // from the request to the worker starting
  double engine_ms = 0.0;  // app::classify's decode + preprocess + forward
  double total_ms = 0.0;   // on the worker, catalog connection and model look-up included
  QString error;
};

// On a worker thread: its own catalog connection and the active model.
struct WorkerModel {
  app::Catalog catalog;
  std::shared_ptr<const app::LoadedModel> model;
};
app::Result<WorkerModel> open_worker_model(const std::filesystem::path& db, ModelCache& cache) {
  auto catalog = Session::open_worker_catalog(db);
  if (!catalog) return catalog.error();
  auto model = cache.active(catalog.value());
  if (!model) return model.error();
  return WorkerModel{std::move(catalog.value()), std::move(model.value())};
}

struct HeatmapOutcome {
  QImage layer;
  QString error;
  double ms = 0.0;
  inference::Window seen{0.0, 0.0, 1.0, 1.0};  // the part of the film the model saw (app::Heatmap::seen)
};

// The attention map as a premultiplied colour layer (inference::attention_layer) at up to 512
// pixels on the long side; the viewer paints it over whatever window is shown.
// The grid covers `seen` (shares of the image's sides: the model's centre crop) and nothing outside it.
QImage heatmap_layer(const inference::Matrix& grid, int image_width, int image_height, const inference::Window& seen) {
  const int side = 512;
  const double scale = std::min(1.0, side / static_cast<double>(std::max(image_width, image_height)));
  const int w = std::max(1, static_cast<int>(image_width * scale));
  const int h = std::max(1, static_cast<int>(image_height * scale));
  const inference::RgbaImage layer = inference::attention_layer(grid, w, h, inference::ColourMap::Jet, inference::scaled_window(seen, w, h));
  return QImage(layer.rgba.data(), w, h, 4 * w, QImage::Format_RGBA8888_Premultiplied).copy();
}

}  // namespace

MainWindow::MainWindow(std::unique_ptr<Session> session, Preferences preferences, QWidget* parent)
    : QMainWindow(parent), session_(std::move(session)), preferences_(std::move(preferences)) {
  setObjectName("mainWindow");
  setWindowTitle(tr("Hilum — %1 — reader: %2").arg(qstr(app::shown_catalog_location(session_->path().string())), session_->author()));
  resize(1600, 1000);
  if (preferences_.threads > 0) QThreadPool::globalInstance()->setMaxThreadCount(std::max(2, preferences_.threads));

  viewer_ = new ImageView(this);
  setCentralWidget(viewer_);

  worklist_ = new WorklistPanel(session_.get(), this);
  auto* left = new QDockWidget(tr("Worklist"), this);
  left->setObjectName("worklistDock");
  left->setWidget(worklist_);
  left->setFeatures(QDockWidget::DockWidgetMovable | QDockWidget::DockWidgetFloatable);
  addDockWidget(Qt::LeftDockWidgetArea, left);

  ai_ = new AiPanel(this);
  labeller_ = new Labeller(session_.get(), this);
  labels_ = new LabelPanel(labeller_, this);
  auto* right_split = new QSplitter(Qt::Vertical, this);
  right_split->addWidget(ai_);
  right_split->addWidget(labels_);
  right_split->setStretchFactor(0, 2);
  right_split->setStretchFactor(1, 3);
  auto* right = new QDockWidget(tr("AI and labels"), this);
  right->setObjectName("rightDock");
  right->setWidget(right_split);
  right->setFeatures(QDockWidget::DockWidgetMovable | QDockWidget::DockWidgetFloatable);
  addDockWidget(Qt::RightDockWidgetArea, right);
  resizeDocks({left, right}, {440, 430}, Qt::Horizontal);

  status_pixel_ = new QLabel(this);
  status_pixel_->setObjectName("statusPixel");
  status_window_ = new QLabel(this);
  status_window_->setObjectName("statusWindow");
  status_job_ = new QLabel(this);
  status_job_->setObjectName("statusJob");
  statusBar()->addWidget(status_pixel_, 2);
  statusBar()->addWidget(status_window_, 2);
  statusBar()->addPermanentWidget(status_job_);
  // Labels the catalog could not take yet (its server went away): kept, retried, shown here.
  status_pending_ = new QLabel(this);
  status_pending_->setObjectName("pendingLabels");
  status_pending_->setStyleSheet("QLabel { color: #b35900; font-weight: bold; }");
  retry_labels_ = new QPushButton(tr("Retry now"), this);
  retry_labels_->setObjectName("retryLabels");
  statusBar()->addPermanentWidget(status_pending_);
  statusBar()->addPermanentWidget(retry_labels_);
  connect(retry_labels_, &QPushButton::clicked, this, [this] { (void)session_->retry_labels(); });
  connect(session_.get(), &Session::labelsRetried, this, [this](int saved, int) {
    if (saved > 0) statusBar()->showMessage(tr("Saved %n kept change(s)", "", saved), 6000);
  });
  connect(session_.get(), &Session::pendingLabelsChanged, this, [this] { update_pending_labels(); });
  connect(session_.get(), &Session::keptLabelsSaved, this, [this](const QString& uid) {
    if (uid == labeller_->image()) labeller_->refresh();
  });
  update_pending_labels();

  build_actions();
  build_menus();

  connect(viewer_, &ImageView::cursorInfo, status_pixel_, &QLabel::setText);
  connect(viewer_, &ImageView::windowChanged, status_window_, &QLabel::setText);
  connect(viewer_, &ImageView::regionDrawn, this, [this](const app::Region& region) {
    labeller_->set_region(labels_->selected_finding(), region);
  });
  connect(worklist_, &WorklistPanel::imageActivated, this, &MainWindow::open_item);
  connect(ai_, &AiPanel::findingClicked, this, [this](const QString& f) {
    labels_->select_finding(f);
    request_heatmap(f);
  });
  connect(ai_, &AiPanel::opacityChanged, viewer_, &ImageView::set_heatmap_opacity);
  connect(ai_, &AiPanel::heatmapShownChanged, viewer_, &ImageView::set_heatmap_visible);
  connect(ai_, &AiPanel::methodChanged, this, [this] {
    if (!ai_->selected_finding().isEmpty()) request_heatmap(ai_->selected_finding());
  });
  connect(labels_, &LabelPanel::selectedFindingChanged, this, [this] { update_regions(); });
  connect(labels_, &LabelPanel::toolRequested, this, [this](int tool) { set_tool(static_cast<ImageView::Tool>(tool)); });
  connect(labels_, &LabelPanel::acceptAiRequested, this, [this] { labeller_->accept_ai(); });
  connect(labeller_, &Labeller::changed, this, &MainWindow::on_labels_changed);
  connect(labeller_, &Labeller::readingSubmitted, this, &MainWindow::request_predictions);
  connect(labeller_, &Labeller::saved, this, [this](const QString& what) { statusBar()->showMessage(tr("Saved: %1").arg(what), 4000); });
  connect(labeller_, &Labeller::failed, this, [this](const QString& why) { statusBar()->showMessage(tr("Not saved: %1").arg(why), 8000); });
  connect(labeller_, &Labeller::kept, this, [this](const QString& what, const QString& why) {
    statusBar()->showMessage(tr("Not yet saved: %1 (kept, and saved when the catalog can be reached again: %2)").arg(what, why), 8000);
  });
  connect(session_.get(), &Session::catalogChanged, this, [this] {
    labeller_->reload_vocabulary();
    labels_->rebuild_rows();
    worklist_->reload_findings();
    worklist_->refresh();
  });
  connect(session_.get(), &Session::modelsChanged, this, [this] {
    labeller_->reload_vocabulary();
    labels_->rebuild_rows();
    worklist_->reload_findings();
    worklist_->refresh();
    request_predictions();
  });
  connect(worklist_, &WorklistPanel::refreshed, this, [this] {
    if (!current_ && !worklist_->items().empty() && worklist_->current_index() < 0) worklist_->step(+1);
  });

  labels_->set_enabled_for_image(false);
  viewer_->clear(tr("Import radiographs with File > Import (Ctrl+O), then pick an image from the worklist."));
  if (!session_->active_model()) ai_->show_no_model();
  session_->reload_model();
  worklist_->refresh();
  apply_network();
}

MainWindow::~MainWindow() {
  listener_.reset();  // reports to this window: stopped first
  // Let background work that reports to this window finish before the widgets go away; long jobs
  // are asked to stop first, so that this never waits for a whole import or fine-tune.
  cancel_jobs();
  display_pool()->waitForDone();
  ai_pool()->waitForDone();
  QThreadPool::globalInstance()->waitForDone();
}

QAction* MainWindow::add_action(const QString& name, const QString& text, const QList<QKeySequence>& keys, std::function<void()> slot) {
  auto* a = new QAction(text, this);
  a->setObjectName(name);
  a->setShortcuts(keys);
  a->setShortcutContext(Qt::WindowShortcut);
  connect(a, &QAction::triggered, this, [slot = std::move(slot)] { slot(); });
  addAction(a);
  actions_[name] = a;
  return a;
}

QAction* MainWindow::action(const QString& object_name) const {
  const auto it = actions_.find(object_name);
  return it == actions_.end() ? nullptr : it->second;
}

void MainWindow::build_actions() {
  using K = QKeySequence;
  // File.
  add_action("actionImportFiles", tr("Import files…"), {K(Qt::CTRL | Qt::Key_O)}, [this] { import_interactive(0); });
  add_action("actionImportFolder", tr("Import folder…"), {K(Qt::CTRL | Qt::SHIFT | Qt::Key_O)}, [this] { import_interactive(1); });
  add_action("actionImportDicomdir", tr("Import DICOMDIR…"), {}, [this] { import_interactive(2); });
  add_action("actionExport", tr("Export labels…"), {K(Qt::CTRL | Qt::Key_E)}, [this] { show_export(); });
  add_action("actionSettings", tr("Settings…"), {K(Qt::CTRL | Qt::Key_Comma)}, [this] { show_settings(); });
  add_action("actionQueryPacs", tr("Query PACS…"), {}, [this] { show_query_pacs(); });
  add_action("actionSendResults", tr("Send results to the PACS"), {}, [this] { send_results(); });
  add_action("actionQuit", tr("Quit"), {K(Qt::CTRL | Qt::Key_Q)}, [this] { close(); });
  // Worklist.
  add_action("actionNextImage", tr("Next image"), {K(Qt::Key_PageDown), K(Qt::ALT | Qt::Key_Right)}, [this] { worklist_->step(+1); });
  add_action("actionPreviousImage", tr("Previous image"), {K(Qt::Key_PageUp), K(Qt::ALT | Qt::Key_Left)}, [this] { worklist_->step(-1); });
  add_action("actionSearch", tr("Search the worklist"), {K(Qt::CTRL | Qt::Key_F)}, [this] {
    worklist_->search_box()->setFocus();
    worklist_->search_box()->selectAll();
  });
  add_action("actionRefresh", tr("Refresh the worklist"), {K(Qt::Key_F5)}, [this] { worklist_->refresh(); });
  // View.
  add_action("actionFit", tr("Fit to window"), {K(Qt::Key_F)}, [this] { viewer_->fit(); });
  add_action("actionActualSize", tr("Actual pixels (1:1)"), {K(Qt::Key_Z)}, [this] { viewer_->actual_size(); });
  add_action("actionZoomIn", tr("Zoom in"), {K(Qt::Key_Plus), K(Qt::Key_Equal)}, [this] { viewer_->zoom_by(1.25, QPointF(viewer_->width() / 2.0, viewer_->height() / 2.0)); });
  add_action("actionZoomOut", tr("Zoom out"), {K(Qt::Key_Minus)}, [this] { viewer_->zoom_by(0.8, QPointF(viewer_->width() / 2.0, viewer_->height() / 2.0)); });
  add_action("actionInvert", tr("Invert"), {K(Qt::Key_I)}, [this] { viewer_->toggle_invert(); });
  add_action("actionReset", tr("Reset view and window"), {K(Qt::Key_R)}, [this] { viewer_->reset(); });
  add_action("actionAutoWindow", tr("Automatic window"), {K(Qt::Key_0)}, [this] { viewer_->set_automatic_window(); });
  for (int i = 1; i <= 9; ++i) {
    add_action(QString("actionPreset%1").arg(i), tr("Window preset %1 of the file").arg(i), {K(Qt::Key_0 + i)}, [this, i] { viewer_->set_preset(i - 1); });
  }
  add_action("actionRuler", tr("Ruler"), {K(Qt::Key_M)}, [this] { set_tool(viewer_->tool() == ImageView::Tool::Ruler ? ImageView::Tool::Pan : ImageView::Tool::Ruler); });
  add_action("actionPan", tr("Pan tool / cancel drawing"), {K(Qt::Key_Escape)}, [this] {
    viewer_->cancel_drawing();
    set_tool(ImageView::Tool::Pan);
  });
  add_action("actionToggleHeatmap", tr("Show / hide the attention map"), {K(Qt::Key_H)}, [this] {
    if (!viewer_->has_heatmap()) {
      QString f = ai_->selected_finding();
      if (f.isEmpty() && !ai_->probabilities().empty()) {
        // The most probable finding.
        const auto best = std::max_element(ai_->probabilities().begin(), ai_->probabilities().end(),
                                           [](const auto& a, const auto& b) { return a.second < b.second; });
        f = qstr(best->first);
      }
      if (!f.isEmpty()) request_heatmap(f);
      return;
    }
    ai_->set_heatmap_shown(!ai_->heatmap_shown());
  });
  add_action("actionOpacityDown", tr("Attention map more transparent"), {K(Qt::Key_BracketLeft)}, [this] {
    ai_->findChild<QSlider*>("aiOpacity")->setValue(ai_->findChild<QSlider*>("aiOpacity")->value() - 10);
  });
  add_action("actionOpacityUp", tr("Attention map more opaque"), {K(Qt::Key_BracketRight)}, [this] {
    ai_->findChild<QSlider*>("aiOpacity")->setValue(ai_->findChild<QSlider*>("aiOpacity")->value() + 10);
  });
  // Labels.
  add_action("actionFindingUp", tr("Previous finding"), {K(Qt::Key_Up), K(Qt::Key_K)}, [this] { labels_->select_next(-1); });
  add_action("actionFindingDown", tr("Next finding"), {K(Qt::Key_Down), K(Qt::Key_J)}, [this] { labels_->select_next(+1); });
  add_action("actionPresent", tr("Selected finding present"), {K(Qt::Key_P)}, [this] { labeller_->set_value(labels_->selected_finding(), app::LabelValue::Present); });
  add_action("actionAbsent", tr("Selected finding absent"), {K(Qt::Key_A)}, [this] { labeller_->set_value(labels_->selected_finding(), app::LabelValue::Absent); });
  add_action("actionUncertain", tr("Selected finding uncertain"), {K(Qt::Key_U)}, [this] { labeller_->set_value(labels_->selected_finding(), app::LabelValue::Uncertain); });
  add_action("actionClearLabel", tr("Clear the selected finding's label"), {K(Qt::Key_Delete), K(Qt::Key_Backspace)}, [this] {
    labeller_->set_value(labels_->selected_finding(), app::LabelValue::Cleared);
  });
  add_action("actionNoFinding", tr("No Finding (sets present findings absent)"), {K(Qt::Key_N)}, [this] {
    labeller_->set_value(kNoFinding, app::LabelValue::Present);
    labels_->select_finding(kNoFinding);
  });
  add_action("actionAcceptAi", tr("Accept the AI suggestion"), {K(Qt::Key_Y)}, [this] { labeller_->accept_ai(); });
  add_action("actionRectangle", tr("Draw a box for the selected finding"), {K(Qt::Key_B)}, [this] { set_tool(ImageView::Tool::Rectangle); });
  add_action("actionPolygon", tr("Draw a polygon for the selected finding (double-click or Enter closes it)"), {K(Qt::Key_G)}, [this] { set_tool(ImageView::Tool::Polygon); });
  add_action("actionComment", tr("Comment on the selected finding"), {K(Qt::Key_C)}, [this] { labels_->findChild<QPlainTextEdit*>("labelComment")->setFocus(); });
  add_action("actionUndo", tr("Undo"), {K(Qt::CTRL | Qt::Key_Z)}, [this] { labeller_->undo_stack()->undo(); });
  add_action("actionAgreement", tr("Reader agreement…"), {}, [this] { show_agreement(); });
  add_action("actionRedo", tr("Redo"), {K(Qt::CTRL | Qt::SHIFT | Qt::Key_Z), K(Qt::CTRL | Qt::Key_Y)}, [this] { labeller_->undo_stack()->redo(); });
  // Models and learning.
  add_action("actionImportModel", tr("Import…"), {}, [this] { show_models()->import_interactively(); });
  add_action("actionModelManager", tr("Model manager…"), {K(Qt::CTRL | Qt::Key_M)}, [this] { show_models(); });
  add_action("actionFinetune", tr("Fine-tune now…"), {K(Qt::CTRL | Qt::Key_T)}, [this] { show_finetune(); });
  add_action("actionPretrain", tr("Pre-train on this catalog's films…"), {}, [this] { show_models()->show_pretrain(); });
  // Help.
  add_action("actionShortcuts", tr("Keyboard shortcuts"), {K(Qt::Key_F1), K(Qt::Key_Question)}, [this] { show_shortcuts(); });
  add_action("actionAbout", tr("About Hilum"), {}, [this] { show_about(); });
}

void MainWindow::build_menus() {
  auto* file = menuBar()->addMenu(tr("&File"));
  for (const char* n : {"actionImportFiles", "actionImportFolder", "actionImportDicomdir"}) file->addAction(action(n));
  file->addSeparator();
  file->addAction(action("actionExport"));
  file->addAction(action("actionQueryPacs"));
  file->addAction(action("actionSendResults"));
  file->addSeparator();
  file->addAction(action("actionSettings"));
  file->addAction(action("actionQuit"));
  auto* work = menuBar()->addMenu(tr("&Worklist"));
  for (const char* n : {"actionNextImage", "actionPreviousImage", "actionSearch", "actionRefresh"}) work->addAction(action(n));
  auto* view = menuBar()->addMenu(tr("&View"));
  for (const char* n : {"actionFit", "actionActualSize", "actionZoomIn", "actionZoomOut", "actionInvert", "actionAutoWindow", "actionPreset1",
                        "actionPreset2", "actionReset", "actionRuler", "actionToggleHeatmap"})
    view->addAction(action(n));
  auto* labels = menuBar()->addMenu(tr("&Labels"));
  for (const char* n : {"actionPresent", "actionAbsent", "actionUncertain", "actionClearLabel", "actionNoFinding", "actionAcceptAi",
                        "actionRectangle", "actionPolygon", "actionComment"})
    labels->addAction(action(n));
  labels->addSeparator();
  labels->addAction(action("actionUndo"));
  labels->addAction(action("actionRedo"));
  labels->addSeparator();
  labels->addAction(action("actionAgreement"));
  auto* models = menuBar()->addMenu(tr("&Models"));
  models->addAction(action("actionImportModel"));
  models->addAction(action("actionModelManager"));
  models->addAction(action("actionFinetune"));
  models->addAction(action("actionPretrain"));
  auto* help = menuBar()->addMenu(tr("&Help"));
  help->addAction(action("actionShortcuts"));
  help->addAction(action("actionAbout"));
}

ShortcutSheet MainWindow::shortcut_sheet() {
  return {
      {"", tr("Worklist")},
      {"PgDown  Alt+Right", tr("Next image in the filtered worklist")},
      {"PgUp  Alt+Left", tr("Previous image")},
      {"Ctrl+F", tr("Search by patient name, ID or accession")},
      {"F5", tr("Refresh the worklist")},
      {"", tr("Viewer")},
      {tr("Wheel"), tr("Zoom around the cursor")},
      {"F  /  Z", tr("Fit to window  /  actual pixels (1:1)")},
      {"+  -", tr("Zoom in / out")},
      {tr("Left-drag, middle-drag"), tr("Pan (double-click: fit)")},
      {tr("Right-drag"), tr("Window (horizontal) and level (vertical)")},
      {"1 … 9", tr("The file's window presets and VOI LUTs")},
      {"0", tr("Automatic window")},
      {"I", tr("Invert")},
      {"R", tr("Reset view and window")},
      {"M", tr("Ruler (millimetres from Pixel Spacing)")},
      {"Esc", tr("Cancel drawing, back to pan")},
      {"", tr("AI")},
      {tr("Click a finding"), tr("Its attention map over the image")},
      {"H", tr("Show / hide the attention map")},
      {"[  ]", tr("Attention map opacity")},
      {"", tr("Labels (saved at once)")},
      {"↑ ↓  K J", tr("Select the finding")},
      {"P  A  U", tr("Present / absent / uncertain")},
      {"Del  Backspace", tr("Clear the label")},
      {"N", tr("No Finding (exclusive)")},
      {"Y", tr("Accept the AI suggestion")},
      {"B  /  G", tr("Draw a box / polygon for the selected finding")},
      {"C", tr("Comment on the selected finding (Ctrl+Enter saves)")},
      {"Ctrl+Z  Ctrl+Shift+Z", tr("Undo / redo")},
      {"", tr("Application")},
      {"Ctrl+O  Ctrl+Shift+O", tr("Import files / a folder")},
      {"Ctrl+E", tr("Export labels")},
      {"Ctrl+M", tr("Model manager")},
      {"Ctrl+T", tr("Fine-tune now")},
      {"Ctrl+,", tr("Settings")},
      {"F1", tr("This sheet")},
  };
}

void MainWindow::set_tool(ImageView::Tool tool) {
  viewer_->set_tool(tool);
  static const char* names[] = {"pan", "ruler", "box", "polygon"};
  statusBar()->showMessage(tr("Tool: %1").arg(names[static_cast<int>(tool)]), 3000);
}

// ---- Opening an image --------------------------------------------------------------------

// Opening a film (issue 18): a first decode sized to the view (a JPEG 2000 resolution level, JPEG's
// DCT scaling; app::viewer_min_side) is shown and classified, then the full decode replaces it in
// the viewer once no prediction runs (both want the cores). Results of a film no longer open are
// dropped on the GUI thread (open_generation_), and decodes not yet started are skipped.
int MainWindow::first_decode_min_side(const app::WorklistItem& item) {
  // HILUM_VIEWER_REDUCED=0 decodes in full at once, as before issue 18 (to compare: bench/ui_open/run.sh).
  static const bool reduced = [] {
    const char* v = std::getenv("HILUM_VIEWER_REDUCED");
    return v == nullptr || std::string_view(v) != "0";
  }();
  if (!reduced) return 0;
  int model_side = 0;
  if (const auto model = session_->active_model()) {
    model_side = 224;  // the usual input while the model loads
    if (const auto loaded = session_->models()->peek(model->id)) {
      model_side = std::max(loaded->model.config().input_width, loaded->model.config().input_height);
    }
  }
  const double ratio = viewer_->devicePixelRatioF();
  return app::viewer_min_side(item.columns, item.rows, static_cast<int>(std::lround(viewer_->width() * ratio)),
                              static_cast<int>(std::lround(viewer_->height() * ratio)), model_side);
}

void MainWindow::open_item(const app::WorklistItem& item) {
  // Decoding starts first: it is what the radiologist waits for.
  const int generation = ++open_generation_;
  open_token_->store(generation);
  const QString path = qstr(item.path);
  const int min_side = first_decode_min_side(item);
  const auto token = open_token_;
  run_async(
      this, display_pool(),
      [path, min_side, token, generation] { return token->load() == generation ? decode_image(path, min_side) : DecodedImage{}; },
      [this, generation](DecodedImage decoded) {
        if (generation != open_generation_) return;
        if (!decoded.error.isEmpty()) {
          viewer_->clear(tr("This image cannot be shown: %1").arg(decoded.error));
          shown_uid_.clear();
          if (pending_model_) {
            ai_->show_error(*pending_model_, decoded.error);
            pending_model_.reset();
            Q_EMIT predictionsShown(qstr(current_->sop_instance_uid));
          }
          Q_EMIT imageShown(qstr(current_->sop_instance_uid));
          return;
        }
        viewer_->set_image(decoded);
        shown_uid_ = qstr(current_->sop_instance_uid);
        first_decode_ = decoded.image;
        full_decode_pending_ = decoded.image->reduction > 0;
        update_regions();
        if (pending_model_) start_prediction(decoded.image);
        const QString uid = shown_uid_;
        Q_EMIT imageShown(uid);
        if (generation != open_generation_) return;  // a slot opened another film
        if (!full_decode_pending_) Q_EMIT fullImageShown(uid);
        start_full_decode();
      });
  labels_->commit_comment();
  ++heatmap_generation_;
  current_ = item;
  shown_uid_.clear();
  first_decode_.reset();
  full_decode_pending_ = false;
  labeller_->set_image(qstr(item.sop_instance_uid));
  labels_->refresh();
  labels_->set_enabled_for_image(true);
  ai_->clear_for_image();
  viewer_->clear(tr("Loading %1…").arg(path));
  setWindowTitle(tr("Hilum — %1 %2 — reader: %3").arg(qstr(item.patient_name).replace('^', ' '), qstr(item.patient_id), session_->author()));
  request_predictions();
}

void MainWindow::request_predictions() {
  if (!current_) return;
  const auto model = session_->active_model();
  labeller_->set_model({}, {}, {});
  pending_model_.reset();
  if (labeller_->ai_hidden()) {  // blinded reading: the AI's findings after the reader's own
    ai_->show_withheld(tr("Blinded reading: the AI's findings are shown once you submit your reading"));
    Q_EMIT predictionsShown(qstr(current_->sop_instance_uid));
    return;
  }
  if (!model) {
    ai_->show_no_model();
    Q_EMIT predictionsShown(qstr(current_->sop_instance_uid));
    return;
  }
  std::map<std::string, double> thresholds;
  for (auto [k, v] : model_thresholds(*model).asKeyValueRange()) thresholds[sstr(k)] = v;
  // Cached in the catalog: shown at once.
  auto cached = session_->catalog().predictions(current_->sop_instance_uid, model->id);
  if (cached && !cached->empty()) {
    std::vector<std::pair<std::string, double>> probabilities;
    for (const auto& row : cached.value()) probabilities.emplace_back(row.finding, row.probability);
    auto domain = session_->catalog().prediction_domain(current_->sop_instance_uid, model->id);
    ai_->show_predictions(*model, probabilities, tr("From the catalog (computed %1)").arg(qstr(cached->front().computed_at).left(19).replace('T', ' ')),
                          domain ? domain.value() : std::nullopt);
    labeller_->set_model(qstr(model->version), ai_->probabilities(), thresholds);
    Q_EMIT predictionsShown(qstr(current_->sop_instance_uid));
    return;
  }
  ai_->show_computing(*model);
  pending_model_ = *model;
  // Computed from the radiograph the viewer decoded first (no second decode), as soon as it is there.
  if (shown_uid_ == qstr(current_->sop_instance_uid) && first_decode_) start_prediction(first_decode_);
}

void MainWindow::start_full_decode() {
  if (!full_decode_pending_ || predictions_running_ > 0 || !current_) return;
  full_decode_pending_ = false;
  const int generation = open_generation_;
  const QString path = qstr(current_->path);
  const auto token = open_token_;
  run_async(
      this, display_pool(), [path, token, generation] { return token->load() == generation ? decode_image(path) : DecodedImage{}; },
      [this, generation](DecodedImage decoded) {
        if (generation != open_generation_) return;
        if (!decoded.error.isEmpty() || !decoded.image) {
          statusBar()->showMessage(tr("Shown at reduced resolution: the full decode failed: %1").arg(decoded.error), 10000);
          return;
        }
        viewer_->set_full_image(decoded);
        Q_EMIT fullImageShown(qstr(current_->sop_instance_uid));
      });
}

void MainWindow::start_prediction(std::shared_ptr<const dicom::Radiograph> image) {
  if (!pending_model_ || !current_ || !image) return;
  const app::ModelRecord model = *pending_model_;
  pending_model_.reset();
  std::map<std::string, double> thresholds;
  for (auto [k, v] : model_thresholds(model).asKeyValueRange()) thresholds[sstr(k)] = v;
  const int generation = open_generation_;
  const auto db = session_->path();
  auto cache = session_->models();
  const std::string uid = current_->sop_instance_uid;
  const std::int64_t model_id = model.id;
  status_job_->setText(tr("AI: computing…"));
  viewer_->hold_smooth(true);
  ++predictions_running_;
  const auto requested = std::chrono::steady_clock::now();
  run_async(
      this, ai_pool(),
      [db, cache, image, uid, model_id, requested]() {
        PredictionOutcome out;
        const auto t0 = std::chrono::steady_clock::now();
        out.queued_ms = std::chrono::duration<double, std::milli>(t0 - requested).count();
        auto worker = open_worker_model(db, *cache);
        if (!worker) {
          out.error = qstr(worker.error().message);
          return out;
        }
        auto& catalog = worker->catalog;
        const auto& loaded = worker->model;
        if (loaded->record.id != model_id) {
          out.error = QObject::tr("the active model changed");
          return out;
        }
        const auto t1 = std::chrono::steady_clock::now();
        auto probabilities = app::classify_radiograph(*loaded, *image);
        if (!probabilities) {
          out.error = qstr(probabilities.error().message);
          return out;
        }
        out.engine_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t1).count();
        auto stored = catalog.put_predictions(uid, model_id, probabilities->probabilities, probabilities->domain);  // cached for the next time
        if (!stored) {
          out.error = qstr(stored.error().message);
          return out;
        }
        out.probabilities = std::move(probabilities->probabilities);
        out.domain = std::move(probabilities->domain);
        out.total_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        return out;
      },
      [this, generation, model, thresholds](PredictionOutcome out) {
        status_job_->clear();
        --predictions_running_;
        viewer_->hold_smooth(predictions_running_ > 0);
        last_timing_ = {out.queued_ms, out.total_ms, out.engine_ms};
        if (generation != open_generation_) {
          start_full_decode();  // the film open now may wait for it
          return;
        }
        if (!out.error.isEmpty()) {
          ai_->show_error(model, out.error);
        } else {
          ai_->show_predictions(model, out.probabilities,
                                tr("Computed in %1 ms (display values, preprocessing, forward pass)").arg(out.engine_ms, 0, 'f', 0), out.domain);
          labeller_->set_model(qstr(model.version), ai_->probabilities(), thresholds);
          if (!out.domain.in_domain) worklist_->refresh();  // its mark and the count of images outside the domain
        }
        Q_EMIT predictionsShown(qstr(current_->sop_instance_uid));
        start_full_decode();
      });
}

void MainWindow::request_heatmap(const QString& finding) {
  if (!current_) return;
  ai_->set_selected_finding(finding);
  const auto model = session_->active_model();
  if (!model) {
    ai_->set_heatmap_status(tr("No model: import one with Models > Import…"));
    Q_EMIT heatmapFailed(tr("no model"));
    return;
  }
  app::HeatmapOptions options;
  options.method = ai_->method() == AiPanel::Method::ClassSpecific ? app::HeatmapMethod::ClassSpecific : app::HeatmapMethod::Rollout;
  options.finding = finding.toStdString();
  options.opacity = 1.0f;  // the viewer applies the panel's opacity to the layer
  options.max_side = 64;   // only the grid is used here
  const int generation = ++heatmap_generation_;
  const bool class_specific = options.method == app::HeatmapMethod::ClassSpecific;
  ai_->set_heatmap_status(class_specific ? tr("Computing the class-specific map for %1…").arg(finding)
                                         : tr("Computing the attention map for %1…").arg(finding));
  const auto db = session_->path();
  auto cache = session_->models();
  const std::string path = current_->path;
  const int columns = current_->columns, rows = current_->rows;
  run_async(
      this, ai_pool(),
      [db, cache, path, columns, rows, options]() {
        HeatmapOutcome out;
        const auto t0 = std::chrono::steady_clock::now();
        auto worker = open_worker_model(db, *cache);
        if (!worker) {
          out.error = qstr(worker.error().message);
          return out;
        }
        const auto& loaded = worker->model;
        auto h = app::heatmap(*loaded, path, options);
        if (!h) {
          out.error = qstr(h.error().message);
          return out;
        }
        out.layer = heatmap_layer(h->grid, std::max(1, columns), std::max(1, rows), h->seen);
        out.seen = h->seen;
        out.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        return out;
      },
      [this, generation, finding, class_specific](HeatmapOutcome out) {
        if (generation != heatmap_generation_) return;
        if (!out.error.isEmpty()) {
          ai_->set_heatmap_status(tr("No attention map: %1").arg(out.error));
          Q_EMIT heatmapFailed(out.error);
          return;
        }
        viewer_->set_heatmap(out.layer);
        viewer_->set_heatmap_opacity(ai_->opacity());
        ai_->set_heatmap_shown(true);
        ai_->set_heatmap_status(
            (class_specific ? tr("%1: class-specific map (what raised this finding's score, Chefer et al. 2021), %2 ms. H hides it.")
                            : tr("%1: attention rollout (where the model looked; the same map for every finding), %2 ms. H hides it."))
                .arg(finding)
                .arg(out.ms, 0, 'f', 0) +
            // A model that crops the centre never sees the film's edges: say so beside the map.
            (out.seen.width < 0.995 || out.seen.height < 0.995
                 ? tr(" The model sees the centre %1% of the film; the map covers that part only.")
                       .arg(std::lround(100.0 * std::min(out.seen.width, out.seen.height)))
                 : QString()));
        Q_EMIT heatmapShown(finding);
      });
}

void MainWindow::update_regions() {
  std::vector<ShownRegion> shown;
  const QString selected = labels_->selected_finding();
  for (const auto& [finding, s] : labeller_->states()) {
    if (s.region && (s.value == app::LabelValue::Present || s.value == app::LabelValue::Uncertain)) {
      shown.push_back({finding, *s.region, finding == selected});
    }
  }
  viewer_->set_regions(std::move(shown));
}

void MainWindow::on_labels_changed() {
  update_regions();
  set_tool(ImageView::Tool::Pan);
  worklist_->refresh();
  maybe_auto_finetune();
}

void MainWindow::maybe_auto_finetune() {
  if (preferences_.auto_finetune_after <= 0 || (finetune_ && finetune_->running())) return;
  if (!session_->active_model()) return;
  // A stored mark that is not a whole number (damaged, or written by another version) counts as 0.
  auto mark_text = session_->catalog().setting(kFinetuneMark);
  std::int64_t mark = 0;
  if (mark_text && mark_text->has_value()) {
    const auto n = core::parse_number(**mark_text);
    if (n && *n >= 0 && *n < 9.0e15 && std::floor(*n) == *n) mark = static_cast<std::int64_t>(*n);
  }
  auto activity = app::label_activity(session_->catalog(), mark);
  if (!activity || activity->events_after < preferences_.auto_finetune_after) return;
  (void)session_->catalog().set_setting(kFinetuneMark, std::to_string(activity->newest_event_id));
  statusBar()->showMessage(tr("%1 new labels: fine-tuning in the background").arg(activity->events_after), 6000);
  show_finetune()->start();
}

// ---- Windows -----------------------------------------------------------------------------

void MainWindow::import_interactive(int kind) {
  std::vector<std::filesystem::path> inputs;
  if (kind == 0) {
    for (const auto& f : QFileDialog::getOpenFileNames(this, tr("DICOM files to import"))) inputs.emplace_back(sstr(f));
  } else if (kind == 1) {
    const QString d = QFileDialog::getExistingDirectory(this, tr("A folder of DICOM files (searched recursively)"));
    if (!d.isEmpty()) inputs.emplace_back(sstr(d));
  } else {
    const QString f = QFileDialog::getOpenFileName(this, tr("A DICOMDIR"), QString(), tr("DICOMDIR (DICOMDIR dicomdir);;All files (*)"));
    if (!f.isEmpty()) inputs.emplace_back(sstr(f));
  }
  if (!inputs.empty()) import_paths(inputs);
}

ImportDialog* MainWindow::import_paths(const std::vector<std::filesystem::path>& inputs) {
  auto* d = new ImportDialog(session_.get(), inputs, this);
  d->setAttribute(Qt::WA_DeleteOnClose);
  connect(d, &ImportDialog::finished_import, this, &MainWindow::close_when_jobs_stopped);
  import_ = d;
  d->show();
  d->start();
  return d;
}

ExportDialog* MainWindow::show_export() {
  if (!export_) {
    export_ = new ExportDialog(session_.get(), this);
    connect(export_, &ExportDialog::finished_export, this, &MainWindow::close_when_jobs_stopped);
  }
  export_->show();
  export_->raise();
  return export_;
}

FinetuneDialog* MainWindow::show_finetune() {
  if (!finetune_) {
    finetune_ = new FinetuneDialog(session_.get(), this);
    connect(finetune_, &FinetuneDialog::finished_finetune, this, [this](bool ok) {
      status_job_->setText(ok ? tr("Fine-tune finished") : tr("Fine-tune stopped"));
      if (auto a = app::label_activity(session_->catalog(), 0)) {
        (void)session_->catalog().set_setting(kFinetuneMark, std::to_string(a->newest_event_id));
      }
      close_when_jobs_stopped();
    });
  }
  finetune_->show();
  finetune_->raise();
  return finetune_;
}

ModelManager* MainWindow::show_models() {
  if (!models_) {
    models_ = new ModelManager(session_.get(), this);
    connect(models_, &ModelManager::pretrainFinished, this, [this](bool ok) {
      status_job_->setText(ok ? tr("Pre-training finished") : tr("Pre-training stopped"));
      close_when_jobs_stopped();
    });
  }
  models_->refresh();
  models_->show();
  models_->raise();
  return models_;
}

QStringList MainWindow::running_jobs() const {
  QStringList jobs;
  int imports = 0;
  for (const auto* d : findChildren<ImportDialog*>()) imports += d->running() ? 1 : 0;
  if (imports == 1) jobs << tr("an import");
  if (imports > 1) jobs << tr("%1 imports").arg(imports);
  if (finetune_ && finetune_->running()) jobs << tr("a fine-tune");
  if (models_ && models_->pretraining()) jobs << tr("a pre-training");
  if (export_ && export_->running()) jobs << tr("an export");
  if (sending_) jobs << tr("a send to the PACS");
  return jobs;
}

void MainWindow::cancel_jobs() {
  for (auto* d : findChildren<ImportDialog*>()) d->cancel();
  if (finetune_) finetune_->cancel();
  if (models_) models_->cancel_pretraining();
  if (export_) export_->cancel();
  *send_cancel_ = true;
}

void MainWindow::closeEvent(QCloseEvent* event) {
  const QStringList jobs = running_jobs();
  if (jobs.isEmpty()) {
    QMainWindow::closeEvent(event);
    return;
  }
  event->ignore();
  if (quitting_) return;  // already stopping: the window closes when the jobs have
  QString question = tr("Hilum is running %1. Stop and quit?").arg(jobs.join(tr(" and ")));
  question += tr("\n\nNothing done so far is lost: an import keeps the files it has read (importing the same items again "
                 "finishes it), a fine-tune resumes from its last checkpoint when it is run again, a pre-training from the checkpoint of its "
                 "last finished epoch.");
  bool stop = false;
  if (ask_quit_) {
    stop = ask_quit_(question);
  } else {
    QMessageBox box(QMessageBox::Question, tr("Quit Hilum"), question, QMessageBox::NoButton, this);
    auto* quit = box.addButton(tr("Stop and quit"), QMessageBox::AcceptRole);
    box.setDefaultButton(box.addButton(tr("Keep working"), QMessageBox::RejectRole));
    box.exec();
    stop = box.clickedButton() == quit;
  }
  if (!stop) return;
  quitting_ = true;
  status_job_->setText(tr("Stopping %1…").arg(jobs.join(tr(" and "))));
  cancel_jobs();
  close_when_jobs_stopped();
}

void MainWindow::close_when_jobs_stopped() {
  if (!quitting_ || !running_jobs().isEmpty()) return;
  // After the job's own completion handler has returned.
  QTimer::singleShot(0, this, [this] { close(); });
}

SettingsDialog* MainWindow::show_settings() {
  auto* d = new SettingsDialog(preferences_, this);
  d->setAttribute(Qt::WA_DeleteOnClose);
  connect(d, &QDialog::accepted, this, [this, d] {
    const Preferences p = d->preferences();
    const bool moved = p.database != preferences_.database;
    preferences_ = p;
    preferences_.save();
    session_->set_author(p.author);
    if (p.threads > 0) QThreadPool::globalInstance()->setMaxThreadCount(std::max(2, p.threads));
    worklist_->refresh();
    apply_network();
    if (moved) statusBar()->showMessage(tr("The new catalog location is used from the next start."), 8000);
  });
  d->show();
  return d;
}

QueryPacsDialog* MainWindow::show_query_pacs() {
  auto* d = new QueryPacsDialog(session_->path(), this);
  d->set_tls(tls_options(preferences_));
  d->setAttribute(Qt::WA_DeleteOnClose);
  connect(d, &QueryPacsDialog::retrieved, this, [this] { worklist_->refresh(); });
  d->show();
  return d;
}

ShortcutsDialog* MainWindow::show_shortcuts() {
  auto* d = new ShortcutsDialog(shortcut_sheet(), this);
  d->setAttribute(Qt::WA_DeleteOnClose);
  d->show();
  return d;
}

AgreementWindow* MainWindow::show_agreement() {
  if (!agreement_) agreement_ = new AgreementWindow(session_.get(), this);
  else agreement_->refresh();
  agreement_->show();
  agreement_->raise();
  return agreement_;
}

AboutDialog* MainWindow::show_about() {
  auto* d = new AboutDialog(session_.get(), this);
  d->setAttribute(Qt::WA_DeleteOnClose);
  d->show();
  return d;
}

}  // namespace hilum::ui

namespace hilum::ui {

void MainWindow::apply_network() {
  listener_.reset();
  if (!preferences_.listen) return;
  app::ListenOptions options;
  options.scp.ae_title = sstr(preferences_.listen_aet);
  options.scp.port = preferences_.listen_port;
  options.scp.limits.acse_timeout_seconds = preferences_.listen_acse_timeout;
  options.scp.tls = tls_options(preferences_);
  for (const QString& entry : preferences_.listen_allow.split(QRegularExpression("[\\s,]+"), Qt::SkipEmptyParts)) {
    auto allowed = dicom::net::parse_allowed(sstr(entry));
    if (!allowed) {
      statusBar()->showMessage(tr("Network: %1").arg(qstr(allowed.error().message)), 8000);
      return;
    }
    options.scp.allow.push_back(*allowed);
  }
  listener_ = std::make_unique<BackgroundListener>(session_->path(), options, this, [this](const QString& line, bool arrival) {
    statusBar()->showMessage(line, 8000);
    if (arrival) worklist_->refresh();
  });
}

}  // namespace hilum::ui

namespace hilum::ui {

void MainWindow::send_results() {
  const auto finish = [this](bool ok, const QString& message) {
    status_job_->setText(message);
    statusBar()->showMessage(message, 15000);
    Q_EMIT resultsSent(ok, message);
  };
  if (sending_) return;
  if (!current_) return finish(false, tr("Send results: open an image first."));
  if (preferences_.pacs_peer.trimmed().isEmpty()) {
    return finish(false, tr("Send results: no PACS is set. Set one in File > Settings > Network (Send results to)."));
  }
  auto peer = dicom::net::parse_peer(sstr(preferences_.pacs_peer.trimmed()));
  if (!peer) return finish(false, tr("Send results: the PACS in Settings is not usable: %1").arg(qstr(peer.error().message)));
  dicom::net::ScuOptions scu;
  scu.peer = *peer;
  scu.our_ae = sstr(preferences_.listen_aet.trimmed().isEmpty() ? QString("HILUM") : preferences_.listen_aet.trimmed());
  scu.tls = tls_options(preferences_);
  const std::string uid = current_->sop_instance_uid;
  const QString where = qstr(dicom::net::to_string(*peer));
  sending_ = true;
  *send_cancel_ = false;
  status_job_->setText(tr("Sending results to %1…").arg(where));
  const auto db = session_->path();
  const auto cache = session_->models();
  const auto flag = send_cancel_;
  QPointer<MainWindow> self(this);
  run_async(
      this,
      [db, cache, scu, uid, flag, self, where]() -> app::Result<dicom::net::SendReport> {
        auto catalog = Session::open_worker_catalog(db);
        if (!catalog) return catalog.error();
        app::SrExportOptions what;
        what.images = {uid};
        what.attention_maps = true;
        // The loaded active model when there is one (a catalog without a model sends the report only).
        auto model = cache->active(catalog.value());
        if (model) what.model = model->get();
        else if (model.error().kind == app::ErrorKind::NotFound) what.attention_maps = false;
        else return model.error();
        const auto progress = [self, where](const std::string& stage, std::size_t done, std::size_t total) {
          const QString text = stage == "writing" ? QObject::tr("Sending results to %1: writing the report and attention map…").arg(where)
                                                  : QObject::tr("Sending results to %1: %2 of %3 sent").arg(where).arg(done).arg(total);
          post_to_gui(QCoreApplication::instance(), [self, text] {
            if (self && self->sending_) self->status_job_->setText(text);
          });
        };
        return app::send_reports(catalog.value(), scu, what, flag.get(), progress);
      },
      [this, where, finish](app::Result<dicom::net::SendReport> r) {
        sending_ = false;
        if (!r) {
          finish(false, tr("Sending results to %1 failed: %2").arg(where, qstr(r.error().message)));
        } else if (!r->failed.empty()) {
          finish(false, tr("Sending results to %1: %2 sent, %3 not: %4")
                            .arg(where)
                            .arg(r->sent)
                            .arg(r->failed.size())
                            .arg(qstr(r->failed.front().reason)));
        } else if (r->sent == 0) {
          finish(false, tr("Nothing sent to %1: this image has no label and no prediction.").arg(where));
        } else {
          finish(true, tr("Sent %n results (report and attention map) to %1.", nullptr, static_cast<int>(r->sent)).arg(where));
        }
        close_when_jobs_stopped();
      });
}

void MainWindow::update_pending_labels() {
  const int pending = session_->pending_labels();
  const int refused = session_->refused_labels();
  QStringList parts;
  if (pending > 0) parts << tr("not yet saved (%1)").arg(pending);
  if (refused > 0) parts << tr("refused by the catalog (%1)").arg(refused);
  status_pending_->setText(parts.join(QStringLiteral(" · ")));
  QString tip = tr("Labels kept in %1 until the catalog takes them").arg(qstr(session_->outbox().journal_file().string()));
  if (!session_->pending_reason().isEmpty()) tip += "\n" + tr("Last attempt: %1").arg(session_->pending_reason());
  status_pending_->setToolTip(tip);
  status_pending_->setVisible(!parts.isEmpty());
  retry_labels_->setVisible(pending > 0);
}

}  // namespace hilum::ui
