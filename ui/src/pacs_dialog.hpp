// Hilum ui: File > Query PACS: study-level C-FIND by patient ID/name, accession, dates and
// modality, and C-GET of the selected studies into the catalog (progress, cancel). Runs
// app::retrieve / dicom::net::find_studies off the GUI thread.
#pragma once

#include <QDialog>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QTableWidget>

#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hilum/dicom/network.hpp"

namespace hilum::ui {

class QueryPacsDialog : public QDialog {
  Q_OBJECT
 public:
  QueryPacsDialog(std::filesystem::path catalog, QWidget* parent = nullptr);
  ~QueryPacsDialog() override;
  void search();
  void retrieve_selected();
  [[nodiscard]] QString status() const { return status_->text(); }
  [[nodiscard]] int results() const { return table_->rowCount(); }
  // TLS for the search and the retrieve (from Settings > Network).
  void set_tls(dicom::net::TlsOptions tls) { tls_ = std::move(tls); }

 Q_SIGNALS:
  void retrieved();  // instances were filed: the worklist may refresh

 private:
  // The peer and our AE title from the fields; none (the reason in the status line) when the peer
  // does not parse.
  std::optional<dicom::net::ScuOptions> scu_options();
  std::filesystem::path catalog_;
  dicom::net::TlsOptions tls_;
  QLineEdit* peer_ = nullptr;
  QLineEdit* our_aet_ = nullptr;
  QLineEdit* patient_id_ = nullptr;
  QLineEdit* patient_name_ = nullptr;
  QLineEdit* accession_ = nullptr;
  QLineEdit* from_ = nullptr;
  QLineEdit* to_ = nullptr;
  QLineEdit* modality_ = nullptr;
  QPushButton* search_ = nullptr;
  QPushButton* retrieve_ = nullptr;
  QPushButton* cancel_ = nullptr;
  QTableWidget* table_ = nullptr;
  QLabel* status_ = nullptr;
  std::shared_ptr<std::atomic<bool>> cancel_flag_ = std::make_shared<std::atomic<bool>>(false);
  bool busy_ = false;
  void set_busy(bool busy);
};

}  // namespace hilum::ui
