#include "export_dialog.hpp"

#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QVBoxLayout>

#include "async.hpp"
#include "hilum/app/export.hpp"
#include "session.hpp"

namespace hilum::ui {

ExportDialog::ExportDialog(Session* session, QWidget* parent) : QDialog(parent), session_(session) {
  setObjectName("exportDialog");
  setWindowTitle(tr("Export labels for retraining"));
  resize(640, 420);
  auto* layout = new QVBoxLayout(this);
  auto* intro = new QLabel(tr("Writes every image with a current label: the ChestX-ray14 CSV layout (Data_Entry_2017.csv, "
                              "BBox_List_2017.csv) or labels.json, a patient-level train / validation / test split, and "
                              "optionally the images. De-identification replaces identifiers by the catalog's pseudonyms "
                              "and shifts dates."),
                           this);
  intro->setWordWrap(true);
  layout->addWidget(intro);
  auto* form = new QFormLayout;
  auto* row = new QHBoxLayout;
  folder_ = new QLineEdit(this);
  folder_->setObjectName("exportFolder");
  auto* browse = new QPushButton(tr("Choose…"), this);
  row->addWidget(folder_, 1);
  row->addWidget(browse);
  form->addRow(tr("Output folder"), row);
  format_ = new QComboBox(this);
  format_->setObjectName("exportFormat");
  format_->addItem(tr("ChestX-ray14 CSV"), "csv");
  format_->addItem(tr("JSON"), "json");
  form->addRow(tr("Format"), format_);
  deidentify_ = new QCheckBox(tr("De-identify (pseudonyms, shifted dates, no comments or paths)"), this);
  deidentify_->setObjectName("exportDeidentify");
  deidentify_->setChecked(true);
  images_ = new QCheckBox(tr("Include images (16-bit PNG; with JSON and de-identification also DICOM)"), this);
  images_->setObjectName("exportImages");
  form->addRow(QString(), deidentify_);
  form->addRow(QString(), images_);
  layout->addLayout(form);
  bar_ = new QProgressBar(this);
  bar_->setObjectName("exportProgress");
  bar_->setValue(0);
  layout->addWidget(bar_);
  summary_ = new QLabel(this);
  summary_->setObjectName("exportSummary");
  summary_->setWordWrap(true);
  layout->addWidget(summary_);
  issues_ = new QTableWidget(0, 3, this);
  issues_->setHorizontalHeaderLabels({tr("Outcome"), tr("Image"), tr("Why")});
  issues_->horizontalHeader()->setSectionResizeMode(2, QHeaderView::Stretch);
  issues_->verticalHeader()->setVisible(false);
  issues_->setVisible(false);
  layout->addWidget(issues_, 1);
  auto* buttons = new QHBoxLayout;
  buttons->addStretch(1);
  export_ = new QPushButton(tr("Export"), this);
  export_->setObjectName("exportStart");
  export_->setDefault(true);
  cancel_button_ = new QPushButton(tr("Cancel"), this);
  cancel_button_->setEnabled(false);
  close_ = new QPushButton(tr("Close"), this);
  buttons->addWidget(export_);
  buttons->addWidget(cancel_button_);
  buttons->addWidget(close_);
  layout->addLayout(buttons);
  connect(browse, &QPushButton::clicked, this, [this] {
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Export into"), folder_->text());
    if (!dir.isEmpty()) folder_->setText(dir);
  });
  connect(export_, &QPushButton::clicked, this, &ExportDialog::start);
  connect(cancel_button_, &QPushButton::clicked, this, [this] {
    cancel_->store(true);
    cancel_button_->setEnabled(false);
  });
  connect(close_, &QPushButton::clicked, this, &ExportDialog::reject);
}

void ExportDialog::start() {
  if (running_) return;
  if (folder_->text().trimmed().isEmpty()) {
    summary_->setText(tr("Choose an output folder first."));
    return;
  }
  running_ = true;
  cancel_->store(false);
  export_->setEnabled(false);
  cancel_button_->setEnabled(true);
  close_->setEnabled(false);
  issues_->setRowCount(0);
  issues_->setVisible(false);
  summary_->setText(tr("Exporting…"));
  app::ExportOptions options;
  options.out_dir = sstr(folder_->text().trimmed());
  options.format = *app::parse_export_format(sstr(format_->currentData().toString()));
  options.deidentify = deidentify_->isChecked();
  options.images = images_->isChecked();
  const auto db = session_->path();
  auto cancel = cancel_;
  run_async(
      this,
      [this, db, options, cancel]() -> app::Result<app::ExportReport> {
        auto catalog = Session::open_worker_catalog(db);
        if (!catalog) return catalog.error();
        return app::export_labels(
            catalog.value(), options,
            [this](const app::ExportProgress& p) {
              post_to_gui(this, [this, p] {
                bar_->setRange(0, static_cast<int>(std::max<std::size_t>(1, p.total)));
                bar_->setValue(static_cast<int>(p.done));
              });
            },
            cancel.get());
      },
      [this](app::Result<app::ExportReport> result) {
        running_ = false;
        export_->setEnabled(true);
        cancel_button_->setEnabled(false);
        close_->setEnabled(true);
        if (!result) {
          summary_->setText(tr("<b>Export failed:</b> %1").arg(qstr(result.error().message)));
          Q_EMIT finished_export(false);
          return;
        }
        const auto& r = result.value();
        summary_->setText(
            (r.interrupted ? tr("<b>Cancelled</b> (no label file written). ") : tr("<b>Exported</b> to %1. ").arg(qstr(r.out_dir.string()))) +
            tr("%1 images, %2 labels, %3 boxes, %4 patients (train %5 / validation %6 / test %7 images); %8 PNG, %9 DICOM files.")
                .arg(r.images)
                .arg(r.labels)
                .arg(r.bounding_boxes)
                .arg(r.patients)
                .arg(r.train.images)
                .arg(r.validation.images)
                .arg(r.test.images)
                .arg(r.pngs)
                .arg(r.dicoms));
        auto add = [this](const QString& outcome, const std::vector<app::ExportIssue>& list) {
          for (const auto& i : list) {
            const int row = issues_->rowCount();
            issues_->insertRow(row);
            issues_->setItem(row, 0, new QTableWidgetItem(outcome));
            issues_->setItem(row, 1, new QTableWidgetItem(qstr(i.image)));
            issues_->setItem(row, 2, new QTableWidgetItem(qstr(i.reason)));
          }
        };
        add(tr("failed"), r.failed);
        add(tr("pixels left out"), r.skipped);
        issues_->setVisible(issues_->rowCount() > 0);
        Q_EMIT finished_export(!r.interrupted);
      });
}

void ExportDialog::reject() {
  if (running_) {
    cancel_->store(true);
    return;
  }
  QDialog::reject();
}

}  // namespace hilum::ui
