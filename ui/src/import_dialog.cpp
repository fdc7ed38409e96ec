#include "import_dialog.hpp"

#include <QCloseEvent>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QThreadPool>
#include <QVBoxLayout>

#include "async.hpp"
#include "session.hpp"

namespace hilum::ui {
namespace {

QString duration_text(double seconds) {
  if (seconds < 0) return QObject::tr("estimating…");
  const int s = static_cast<int>(seconds + 0.5);
  if (s < 60) return QObject::tr("%1 s").arg(s);
  return QObject::tr("%1 min %2 s").arg(s / 60).arg(s % 60, 2, 10, QChar('0'));
}

}  // namespace

ImportDialog::ImportDialog(Session* session, std::vector<std::filesystem::path> inputs, QWidget* parent)
    : QDialog(parent), session_(session), inputs_(std::move(inputs)) {
  setObjectName("importDialog");
  setWindowTitle(tr("Import DICOM"));
  setModal(false);
  resize(680, 420);
  auto* layout = new QVBoxLayout(this);
  title_ = new QLabel(this);
  title_->setWordWrap(true);
  QStringList names;
  for (const auto& p : inputs_) names << QString::fromStdString(p.string());
  title_->setText(tr("Importing %1").arg(names.size() <= 3 ? names.join(", ") : tr("%1 items").arg(names.size())));
  layout->addWidget(title_);
  bar_ = new QProgressBar(this);
  bar_->setObjectName("importProgress");
  bar_->setRange(0, 0);
  layout->addWidget(bar_);
  numbers_ = new QLabel(tr("Looking for files…"), this);
  numbers_->setObjectName("importNumbers");
  layout->addWidget(numbers_);
  summary_ = new QLabel(this);
  summary_->setObjectName("importSummary");
  summary_->setWordWrap(true);
  layout->addWidget(summary_);
  issues_ = new QTableWidget(0, 3, this);
  issues_->setObjectName("importIssues");
  issues_->setHorizontalHeaderLabels({tr("Outcome"), tr("File"), tr("Why")});
  issues_->horizontalHeader()->setSectionResizeMode(0, QHeaderView::ResizeToContents);
  issues_->horizontalHeader()->setSectionResizeMode(1, QHeaderView::Interactive);
  issues_->horizontalHeader()->setSectionResizeMode(2, QHeaderView::Stretch);
  issues_->setColumnWidth(1, 260);
  issues_->verticalHeader()->setVisible(false);
  issues_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  issues_->setVisible(false);
  layout->addWidget(issues_, 1);
  auto* buttons = new QHBoxLayout;
  buttons->addStretch(1);
  cancel_button_ = new QPushButton(tr("Cancel"), this);
  cancel_button_->setObjectName("importCancel");
  close_button_ = new QPushButton(tr("Close"), this);
  close_button_->setObjectName("importClose");
  close_button_->setEnabled(false);
  buttons->addWidget(cancel_button_);
  buttons->addWidget(close_button_);
  layout->addLayout(buttons);
  connect(cancel_button_, &QPushButton::clicked, this, [this] {
    cancel_->store(true);
    cancel_button_->setEnabled(false);
    numbers_->setText(tr("Cancelling: committing the files already read…"));
  });
  connect(close_button_, &QPushButton::clicked, this, &QDialog::accept);
}

void ImportDialog::start() {
  if (running_) return;
  running_ = true;
  const auto db = session_->path();
  auto inputs = inputs_;
  auto cancel = cancel_;
  app::ImportOptions options;
  options.jobs = std::max(1, QThreadPool::globalInstance()->maxThreadCount());
  run_async(
      this,
      [this, db, inputs, cancel, options]() {
        auto catalog = Session::open_worker_catalog(db);
        if (!catalog) {
          app::ImportReport failed;
          failed.error = catalog.error();
          return failed;
        }
        // Progress arrives on this worker thread; the dialog stays alive while running_.
        return app::import_paths(catalog.value(), inputs, options,
                                 [this](const app::ImportProgress& p) { post_to_gui(this, [this, p] { on_progress(p); }); },
                                 cancel.get());
      },
      [this](app::ImportReport report) { on_done(std::move(report)); });
}

void ImportDialog::on_progress(const app::ImportProgress& p) {
  if (!running_) return;
  if (p.total > 0) {
    bar_->setRange(0, static_cast<int>(p.total));
    bar_->setValue(static_cast<int>(p.done));
  }
  numbers_->setText(tr("%1 of %2 files  ·  %3 files/s  ·  %4 left  ·  %5 imported, %6 already there, %7 skipped, %8 failed")
                        .arg(p.done)
                        .arg(p.total)
                        .arg(p.files_per_second, 0, 'f', 1)
                        .arg(duration_text(p.eta_seconds))
                        .arg(p.counts.imported)
                        .arg(p.counts.already_present)
                        .arg(p.counts.skipped)
                        .arg(p.counts.failed + p.counts.conflicts));
}

void ImportDialog::on_done(app::ImportReport report) {
  running_ = false;
  bar_->setRange(0, 1);
  bar_->setValue(1);
  cancel_button_->setEnabled(false);
  close_button_->setEnabled(true);
  close_button_->setDefault(true);
  const auto& c = report.counts;
  QString text;
  if (report.error) {
    text = tr("<b>The import stopped:</b> %1").arg(QString::fromStdString(report.error->message));
  } else {
    text = (report.interrupted ? tr("<b>Cancelled.</b> What was read is kept; import the same items again to finish. ")
                               : tr("<b>Done.</b> ")) +
           tr("%1 imported, %2 already in the catalog, %3 conflicts, %4 skipped, %5 failed, in %6 (%7 files/s).")
               .arg(c.imported)
               .arg(c.already_present)
               .arg(c.conflicts)
               .arg(c.skipped)
               .arg(c.failed)
               .arg(duration_text(report.seconds))
               .arg(report.files_per_second, 0, 'f', 1);
    if (c.not_dicom > 0) {
      text += c.not_dicom == 1 ? tr(" 1 file in the folders was not DICOM and was left out.")
                               : tr(" %1 files in the folders were not DICOM and were left out.").arg(c.not_dicom);
    }
    if (report.resumed) text += tr(" (an interrupted import of the same items was resumed)");
  }
  numbers_->setText(tr("%1 files").arg(report.files));
  summary_->setText(text);
  auto add = [this](const QString& outcome, const std::vector<app::ImportIssue>& list) {
    for (const auto& issue : list) {
      const int r = issues_->rowCount();
      issues_->insertRow(r);
      issues_->setItem(r, 0, new QTableWidgetItem(outcome));
      issues_->setItem(r, 1, new QTableWidgetItem(QString::fromStdString(issue.path)));
      QString why = QString::fromStdString(issue.reason);
      if (!issue.existing_path.empty()) why += tr(" (already there: %1)").arg(QString::fromStdString(issue.existing_path));
      issues_->setItem(r, 2, new QTableWidgetItem(why));
      issues_->item(r, 1)->setToolTip(QString::fromStdString(issue.path));
      issues_->item(r, 2)->setToolTip(why);
    }
  };
  add(tr("failed"), report.failed);
  add(tr("skipped"), report.skipped);
  add(tr("conflict"), report.conflicts);
  add(tr("not DICOM"), report.not_dicom);
  issues_->setVisible(issues_->rowCount() > 0);
  report_ = std::make_unique<app::ImportReport>(std::move(report));
  session_->notify_catalog_changed();
  Q_EMIT finished_import();
}

void ImportDialog::reject() {
  if (running_) {
    cancel_button_->click();
    return;
  }
  QDialog::reject();
}

void ImportDialog::closeEvent(QCloseEvent* event) {
  if (running_) {
    cancel_button_->click();
    event->ignore();
    return;
  }
  QDialog::closeEvent(event);
}

}  // namespace hilum::ui
