// Hilum ui: the workstation's main window: the worklist on the left, the viewer in the middle, the
// AI panel and the labelling panel on the right, menus for import, export, models, learning and
// settings, and every action one key away (see shortcut_sheet()).
#pragma once

#include <QAction>
#include <QElapsedTimer>
#include <QLabel>
#include <QMainWindow>
#include <QPointer>
#include <QPushButton>
#include <QStringList>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>

#include "agreement_window.hpp"
#include "ai_panel.hpp"
#include "dialogs.hpp"
#include "hilum/app/worklist.hpp"
#include "image_view.hpp"
#include "label_panel.hpp"
#include "labeller.hpp"
#include "network.hpp"
#include "pacs_dialog.hpp"
#include "session.hpp"
#include "worklist_panel.hpp"

namespace hilum::ui {

class FinetuneDialog;
class ModelManager;
class ImportDialog;
class ExportDialog;

class MainWindow : public QMainWindow {
  Q_OBJECT
 public:
  MainWindow(std::unique_ptr<Session> session, Preferences preferences, QWidget* parent = nullptr);
  ~MainWindow() override;

  Session* session() const { return session_.get(); }
  ImageView* viewer() const { return viewer_; }
  WorklistPanel* worklist() const { return worklist_; }
  AiPanel* ai() const { return ai_; }
  LabelPanel* labels() const { return labels_; }
  Labeller* labeller() const { return labeller_; }
  QAction* action(const QString& object_name) const;
  [[nodiscard]] const std::optional<app::WorklistItem>& current_item() const { return current_; }
  [[nodiscard]] static ShortcutSheet shortcut_sheet();

  // Opens the windows (non-modal, kept by the main window) and returns them (tests, screenshots).
  ImportDialog* import_paths(const std::vector<std::filesystem::path>& inputs);
  ExportDialog* show_export();
  FinetuneDialog* show_finetune();
  ModelManager* show_models();
  SettingsDialog* show_settings();
  QueryPacsDialog* show_query_pacs();
  ShortcutsDialog* show_shortcuts();
  AboutDialog* show_about();
  AgreementWindow* show_agreement();

  void open_item(const app::WorklistItem& item);
  // The dicom::ReadOptions::min_side of a film's first decode in this window (app::viewer_min_side
  // with the viewer's size and the active model's input), and how many times the current film's
  // first decode was halved (0: it was the full decode).
  [[nodiscard]] int first_decode_min_side(const app::WorklistItem& item);
  [[nodiscard]] int first_decode_reduction() const { return first_decode_ ? first_decode_->reduction : 0; }
  // Timings of the last computed prediction (ms): waiting for a worker, on the worker in total,
  // and in the engine (display values, preprocessing, forward pass).
  struct PredictionTiming {
    double queued_ms = 0.0;
    double worker_ms = 0.0;
    double engine_ms = 0.0;
  };
  [[nodiscard]] const PredictionTiming& last_prediction_timing() const { return last_timing_; }
  void request_heatmap(const QString& finding);
  // File > Send results to the PACS: the current image's structured report and attention map to
  // the PACS of Settings > Network, off the GUI thread (progress in the status bar); resultsSent
  // says how it went, in words.
  void send_results();
  [[nodiscard]] bool sending_results() const { return sending_; }

  // Quitting while an import, a fine-tune, a pre-training or an export runs asks first: `ask` gets the question and
  // answers true for "stop them and quit" (default: a message box). The jobs are then cancelled and
  // the window closes as soon as they have stopped (each keeps what it has done and resumes when run
  // again); false keeps the window open and the jobs running.
  void set_quit_question(std::function<bool(const QString&)> ask) { ask_quit_ = std::move(ask); }
  // The jobs running now, in words ("an import", "a fine-tune", "a pre-training", "an export").
  [[nodiscard]] QStringList running_jobs() const;
  [[nodiscard]] bool quitting() const { return quitting_; }

 Q_SIGNALS:
  // Opening a film: first decoded and on screen (a reduced decode sized to the view when the codec
  // offers one), then at full resolution (fullImageShown; at once when the first decode was full).
  void imageShown(const QString& sop_instance_uid);
  void fullImageShown(const QString& sop_instance_uid);
  void predictionsShown(const QString& sop_instance_uid);  // the AI panel shows this image's predictions (or why not)
  void heatmapShown(const QString& finding);
  void heatmapFailed(const QString& message);
  void resultsSent(bool ok, const QString& message);

 private:
  void build_actions();
  void build_menus();
  QAction* add_action(const QString& name, const QString& text, const QList<QKeySequence>& keys, std::function<void()> slot);
  void request_predictions();
  void start_prediction(std::shared_ptr<const dicom::Radiograph> image);
  void start_full_decode();
  void update_regions();
  void on_labels_changed();
  void maybe_auto_finetune();
  void set_tool(ImageView::Tool tool);
  void import_interactive(int kind);  // 0 files, 1 folder, 2 DICOMDIR
  void closeEvent(QCloseEvent* event) override;
  void cancel_jobs();
  void close_when_jobs_stopped();

  std::unique_ptr<Session> session_;
  Preferences preferences_;
  ImageView* viewer_ = nullptr;
  WorklistPanel* worklist_ = nullptr;
  AiPanel* ai_ = nullptr;
  Labeller* labeller_ = nullptr;
  LabelPanel* labels_ = nullptr;
  QLabel* status_pixel_ = nullptr;
  QLabel* status_window_ = nullptr;
  QLabel* status_job_ = nullptr;
  QLabel* status_pending_ = nullptr;     // "not yet saved (N)"
  QPushButton* retry_labels_ = nullptr;  // "Retry now"
  void update_pending_labels();
  std::map<QString, QAction*> actions_;
  std::optional<app::WorklistItem> current_;
  int open_generation_ = 0;
  int heatmap_generation_ = 0;
  PredictionTiming last_timing_;
  QString shown_uid_;            // the image the viewer holds (decoded)
  // The film's first decode (reduced when the codec allows): what its predictions are computed from.
  std::shared_ptr<const dicom::Radiograph> first_decode_;
  bool full_decode_pending_ = false;  // the viewer shows a reduced decode; the full one starts when no prediction runs
  int predictions_running_ = 0;
  // open_generation_ for the workers: a decode queued for a film no longer open is skipped.
  std::shared_ptr<std::atomic<int>> open_token_ = std::make_shared<std::atomic<int>>(0);
  std::optional<app::ModelRecord> pending_model_;  // predictions to compute once the image is decoded
  QPointer<FinetuneDialog> finetune_;
  QPointer<ModelManager> models_;
  QPointer<ExportDialog> export_;
  QPointer<ImportDialog> import_;
  QPointer<AgreementWindow> agreement_;
  std::function<bool(const QString&)> ask_quit_;
  bool quitting_ = false;  // the user chose to quit: close once the cancelled jobs have stopped
  std::unique_ptr<BackgroundListener> listener_;  // File > Settings > Network
  std::shared_ptr<std::atomic<bool>> send_cancel_ = std::make_shared<std::atomic<bool>>(false);
  bool sending_ = false;
  void apply_network();
};

}  // namespace hilum::ui
