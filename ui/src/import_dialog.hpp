// Hilum ui: importing files, folders or a DICOMDIR (app::import_paths on a worker thread with its
// own catalog connection): count, rate, ETA and cancel while it runs, then what was skipped or failed
// and why.
#pragma once

#include <QDialog>
#include <QDialogButtonBox>
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QTableWidget>

#include <atomic>
#include <filesystem>
#include <memory>
#include <vector>

#include "hilum/app/import.hpp"

namespace hilum::ui {

class Session;

class ImportDialog : public QDialog {
  Q_OBJECT
 public:
  ImportDialog(Session* session, std::vector<std::filesystem::path> inputs, QWidget* parent = nullptr);
  void start();
  [[nodiscard]] bool running() const { return running_; }
  // Asks the running import to stop (what was read is kept; importing the same items again finishes it).
  void cancel() {
    if (running_) cancel_button_->click();
  }
  [[nodiscard]] const app::ImportReport* report() const { return report_.get(); }

 Q_SIGNALS:
  void finished_import();

 protected:
  void reject() override;
  void closeEvent(QCloseEvent* event) override;

 private:
  void on_progress(const app::ImportProgress& p);
  void on_done(app::ImportReport report);

  Session* session_;
  std::vector<std::filesystem::path> inputs_;
  std::shared_ptr<std::atomic<bool>> cancel_ = std::make_shared<std::atomic<bool>>(false);
  bool running_ = false;
  std::unique_ptr<app::ImportReport> report_;
  QLabel* title_ = nullptr;
  QProgressBar* bar_ = nullptr;
  QLabel* numbers_ = nullptr;
  QLabel* summary_ = nullptr;
  QTableWidget* issues_ = nullptr;
  QPushButton* cancel_button_ = nullptr;
  QPushButton* close_button_ = nullptr;
};

}  // namespace hilum::ui
