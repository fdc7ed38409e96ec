// Hilum ui: Models > Pre-train on this catalog's films: masked-autoencoder pre-training of a ViT
// encoder on every film of the catalog (app::pretrain_from_catalog, no labels needed) on a worker
// thread with its own catalog connection, with progress, the loss per epoch as it comes, and cancel
// (the checkpoint of each finished epoch is kept; starting again with the same name resumes). The
// backbone is written into the catalog's models folder (app::catalog_backbone_dir).
#pragma once

#include <QComboBox>
#include <QDialog>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>

#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "epoch_chart.hpp"
#include "hilum/app/pretrain.hpp"

QT_BEGIN_NAMESPACE
class QChart;
class QChartView;
class QLineSeries;
class QValueAxis;
QT_END_NAMESPACE

namespace hilum::ui {

class Session;

class PretrainDialog : public QDialog {
  Q_OBJECT
 public:
  PretrainDialog(Session* session, QWidget* parent = nullptr);
  // Tests and screenshots: a small run (architecture, image size, images, decoder, precision);
  // the name, the epochs and what it continues from stay the dialog's fields.
  void set_options(const app::PretrainOptions& options);
  void start();
  [[nodiscard]] bool running() const { return running_; }
  // Asks the running pre-training to stop at its next step (the last finished epoch's checkpoint is kept).
  void cancel() {
    if (running_) cancel_button_->click();
  }
  void reload_backbones();  // the "continue from" choices and the default name
  [[nodiscard]] const std::optional<app::PretrainReport>& report() const { return report_; }
  [[nodiscard]] const QString& error() const { return error_; }
  [[nodiscard]] bool cancelled() const { return cancelled_; }
  [[nodiscard]] const std::filesystem::path& backbone_dir() const { return dir_; }
  [[nodiscard]] const std::map<int, double>& losses() const { return loss_; }  // epoch -> loss (the current one running)

 Q_SIGNALS:
  void epochFinished(int epoch, double loss);
  void finished_pretrain(bool ok);

 protected:
  void reject() override;

 private:
  void update_note();
  void on_progress(const app::FinetuneProgress& p);
  void on_done(app::Result<app::PretrainReport> result);
  void replot();
  void set_inputs_enabled(bool enabled);

  Session* session_;
  std::shared_ptr<std::atomic<bool>> cancel_ = std::make_shared<std::atomic<bool>>(false);
  bool running_ = false;
  bool init_chosen_ = false;  // the user picked a starting point (else the active model's encoder is offered first)
  bool cancelled_ = false;
  app::PretrainOptions options_;
  std::vector<app::CatalogBackbone> backbones_;
  std::optional<app::PretrainReport> report_;
  QString error_;
  std::filesystem::path dir_;
  std::map<int, double> loss_;  // epoch -> mean masked-patch loss
  int finished_epochs_ = 0;
  QLineEdit* name_ = nullptr;
  QSpinBox* epochs_ = nullptr;
  QComboBox* init_ = nullptr;
  QLabel* note_ = nullptr;
  QLabel* phase_ = nullptr;
  QProgressBar* bar_ = nullptr;
  EpochChart chart_;
  QLabel* losses_ = nullptr;
  QLabel* summary_ = nullptr;
  QPushButton* start_ = nullptr;
  QPushButton* cancel_button_ = nullptr;
  QPushButton* close_ = nullptr;
};

}  // namespace hilum::ui
