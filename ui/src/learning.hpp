// Hilum ui: learning from the clinicians' labels. The fine-tune dialog runs app::finetune on a worker
// thread (its own catalog connection) with a progress view (loss and validation AUROC per epoch,
// Qt Charts) and cancel, then shows the candidate's metrics beside the model it was compared with.
// The model manager lists every version (status, parent, strategy, metrics, labels used) and
// promotes, rolls back, imports and exports them.
#pragma once

#include <QCheckBox>
#include <QComboBox>
#include <QDialog>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPointer>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QTableWidget>

#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "epoch_chart.hpp"
#include "hilum/app/finetune.hpp"
#include "hilum/app/pretrain.hpp"

QT_BEGIN_NAMESPACE
class QChart;
class QChartView;
class QLineSeries;
class QValueAxis;
QT_END_NAMESPACE

namespace hilum::ui {

class Session;
class PretrainDialog;

class FinetuneDialog : public QDialog {
  Q_OBJECT
 public:
  FinetuneDialog(Session* session, QWidget* parent = nullptr);
  void set_options(const app::FinetuneOptions& options);  // tests: a short run
  void start();
  [[nodiscard]] bool running() const { return running_; }
  // Asks the running fine-tune to stop at its next step (running it again resumes from the last checkpoint).
  void cancel() {
    if (running_) cancel_button_->click();
  }
  [[nodiscard]] const std::optional<app::FinetuneResult>& result() const { return result_; }
  [[nodiscard]] const QString& error() const { return error_; }

 Q_SIGNALS:
  void finished_finetune(bool ok);

 protected:
  void reject() override;

 private:
  void on_progress(const app::FinetuneProgress& p);
  void on_done(app::Result<app::FinetuneResult> result);
  void replot();

  Session* session_;
  std::shared_ptr<std::atomic<bool>> cancel_ = std::make_shared<std::atomic<bool>>(false);
  bool running_ = false;
  app::FinetuneOptions options_;
  std::optional<app::FinetuneResult> result_;
  QString error_;
  std::map<int, double> loss_;   // epoch -> training loss
  std::map<int, double> auroc_;  // epoch -> validation AUROC
  QComboBox* strategy_ = nullptr;
  QSpinBox* epochs_ = nullptr;
  QCheckBox* promote_ = nullptr;
  QLabel* phase_ = nullptr;
  QProgressBar* bar_ = nullptr;
  EpochChart chart_;
  QLineSeries* auroc_series_ = nullptr;
  QLabel* summary_ = nullptr;
  QTableWidget* compare_ = nullptr;
  QPushButton* start_ = nullptr;
  QPushButton* cancel_button_ = nullptr;
  QPushButton* close_ = nullptr;
};

class ModelManager : public QDialog {
  Q_OBJECT
 public:
  ModelManager(Session* session, QWidget* parent = nullptr);
  void refresh();
  QTableWidget* table() const { return table_; }
  // Registers a Hugging Face folder as `version` (activating it when asked) on a worker thread.
  void import_folder(const std::filesystem::path& dir, const QString& version, bool activate);
  void import_interactively();  // asks for the folder, the version and whether to activate it
  bool promote_selected();
  bool rollback();
  [[nodiscard]] const QString& last_message() const { return last_message_; }
  // "Pre-train on this catalog's films…": opens (or raises) the pre-training window, kept by the manager.
  PretrainDialog* show_pretrain();
  [[nodiscard]] bool pretraining() const;
  void cancel_pretraining();
  // The catalog's pre-trained backbones (finished ones and unfinished runs), one row each.
  QTableWidget* backbones() const { return backbone_table_; }
  [[nodiscard]] const std::vector<app::CatalogBackbone>& backbone_list() const { return backbones_; }

 Q_SIGNALS:
  void changed();
  void pretrainFinished(bool ok);

 private:
  void show_details();
  void show_backbone_details();
  void refresh_backbones();
  void message(const QString& text, bool error = false);

  Session* session_;
  QTableWidget* table_ = nullptr;
  QTableWidget* backbone_table_ = nullptr;
  std::vector<app::CatalogBackbone> backbones_;
  QPointer<PretrainDialog> pretrain_;
  QPlainTextEdit* details_ = nullptr;
  QLabel* status_ = nullptr;
  QString last_message_;
};

// Mean AUROC and number of labelled images recorded with a model (empty when unknown).
std::optional<double> model_mean_auroc(const app::ModelRecord& model);
std::optional<int> model_labelled_images(const app::ModelRecord& model);

}  // namespace hilum::ui
