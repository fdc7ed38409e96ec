// Hilum ui: exporting the current labels for retraining (app::export_labels on a worker thread):
// output folder, format (ChestX-ray14 CSV or JSON), de-identification and images, with progress,
// cancel and the report.
#pragma once

#include <QCheckBox>
#include <QComboBox>
#include <QDialog>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QTableWidget>

#include <atomic>
#include <memory>

namespace hilum::ui {

class Session;

class ExportDialog : public QDialog {
  Q_OBJECT
 public:
  explicit ExportDialog(Session* session, QWidget* parent = nullptr);
  void start();
  [[nodiscard]] bool running() const { return running_; }
  void cancel() {
    if (running_) cancel_button_->click();
  }
  QLineEdit* folder() const { return folder_; }

 Q_SIGNALS:
  void finished_export(bool ok);

 protected:
  void reject() override;

 private:
  Session* session_;
  std::shared_ptr<std::atomic<bool>> cancel_ = std::make_shared<std::atomic<bool>>(false);
  bool running_ = false;
  QLineEdit* folder_ = nullptr;
  QComboBox* format_ = nullptr;
  QCheckBox* deidentify_ = nullptr;
  QCheckBox* images_ = nullptr;
  QProgressBar* bar_ = nullptr;
  QLabel* summary_ = nullptr;
  QTableWidget* issues_ = nullptr;
  QPushButton* export_ = nullptr;
  QPushButton* cancel_button_ = nullptr;
  QPushButton* close_ = nullptr;
};

}  // namespace hilum::ui
