#include "learning.hpp"

#include <QChart>
#include <QChartView>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QInputDialog>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLineSeries>
#include <QMessageBox>
#include <QSignalBlocker>
#include <QSplitter>
#include <QValueAxis>
#include <QVBoxLayout>

#include <algorithm>

#include "async.hpp"
#include "hilum/app/classify.hpp"
#include "hilum/app/cluster.hpp"
#include "pretrain_dialog.hpp"
#include "session.hpp"

namespace hilum::ui {
namespace {

QJsonObject json_object(const std::string& text) {
  const auto doc = QJsonDocument::fromJson(QByteArray::fromStdString(text));
  return doc.isObject() ? doc.object() : QJsonObject{};
}

QString auroc_text(const std::optional<double>& v) { return v ? QString::number(*v, 'f', 3) : QStringLiteral("–"); }

}  // namespace

std::optional<double> model_mean_auroc(const app::ModelRecord& model) {
  const QJsonObject m = json_object(model.metrics);
  if (m.value("mean_auroc").isDouble()) return m.value("mean_auroc").toDouble();
  return std::nullopt;
}

std::optional<int> model_labelled_images(const app::ModelRecord& model) {
  const QJsonObject s = json_object(model.label_snapshot);
  if (s.value("images").isDouble()) return s.value("images").toInt();
  return std::nullopt;
}

// ---- FinetuneDialog ------------------------------------------------------------------------

FinetuneDialog::FinetuneDialog(Session* session, QWidget* parent) : QDialog(parent), session_(session) {
  setObjectName("finetuneDialog");
  setWindowTitle(tr("Fine-tune on your labels"));
  resize(760, 620);
  auto* layout = new QVBoxLayout(this);
  auto* form = new QFormLayout;
  strategy_ = new QComboBox(this);
  strategy_->setObjectName("finetuneStrategy");
  strategy_->addItem(tr("Automatic (by number of labelled images)"), static_cast<int>(app::Strategy::Auto));
  strategy_->addItem(tr("Classifier head only (fast)"), static_cast<int>(app::Strategy::Head));
  strategy_->addItem(tr("Last blocks"), static_cast<int>(app::Strategy::LastK));
  strategy_->addItem(tr("Full network"), static_cast<int>(app::Strategy::Full));
  strategy_->addItem(tr("Recalibrate to this site (same weights)"), static_cast<int>(app::Strategy::Calibrate));
  epochs_ = new QSpinBox(this);
  epochs_->setObjectName("finetuneEpochs");
  epochs_->setRange(0, 200);
  epochs_->setSpecialValueText(tr("strategy default"));
  promote_ = new QCheckBox(tr("Promote when it is not worse than the active model"), this);
  promote_->setObjectName("finetunePromote");
  promote_->setChecked(true);
  form->addRow(tr("Strategy"), strategy_);
  form->addRow(tr("Epochs"), epochs_);
  form->addRow(QString(), promote_);
  layout->addLayout(form);

  phase_ = new QLabel(tr("Trains a new version from the catalog's current labels, validated on held-out patients."), this);
  phase_->setObjectName("finetunePhase");
  phase_->setWordWrap(true);
  layout->addWidget(phase_);
  bar_ = new QProgressBar(this);
  bar_->setObjectName("finetuneProgress");
  bar_->setValue(0);
  layout->addWidget(bar_);

  chart_ = EpochChart::create(this, tr("Training loss and validation AUROC per epoch"), tr("training loss"), "finetuneChart");
  chart_.chart->legend()->setAlignment(Qt::AlignBottom);
  auroc_series_ = new QLineSeries;
  auroc_series_->setName(tr("validation AUROC"));
  auroc_series_->setPointsVisible(true);
  chart_.chart->addSeries(auroc_series_);
  auto* auroc_axis = new QValueAxis;
  auroc_axis->setTitleText(tr("AUROC"));
  auroc_axis->setRange(0.4, 1.0);
  chart_.chart->addAxis(auroc_axis, Qt::AlignRight);
  auroc_series_->attachAxis(chart_.epochs);
  auroc_series_->attachAxis(auroc_axis);
  chart_.view->setMinimumHeight(220);
  layout->addWidget(chart_.view, 2);

  summary_ = new QLabel(this);
  summary_->setObjectName("finetuneSummary");
  summary_->setWordWrap(true);
  layout->addWidget(summary_);
  compare_ = new QTableWidget(0, 5, this);
  compare_->setObjectName("finetuneCompare");
  compare_->setHorizontalHeaderLabels({tr("Finding"), tr("Positives / negatives"), tr("Candidate AUROC (95% CI)"),
                                       tr("Compared model AUROC"), tr("Threshold")});
  compare_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  compare_->horizontalHeader()->setStretchLastSection(true);
  compare_->verticalHeader()->setVisible(false);
  compare_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  layout->addWidget(compare_, 1);

  auto* buttons = new QHBoxLayout;
  buttons->addStretch(1);
  start_ = new QPushButton(tr("Fine-tune now"), this);
  start_->setObjectName("finetuneStart");
  start_->setDefault(true);
  cancel_button_ = new QPushButton(tr("Cancel"), this);
  cancel_button_->setObjectName("finetuneCancel");
  cancel_button_->setEnabled(false);
  close_ = new QPushButton(tr("Close"), this);
  buttons->addWidget(start_);
  buttons->addWidget(cancel_button_);
  buttons->addWidget(close_);
  layout->addLayout(buttons);
  connect(start_, &QPushButton::clicked, this, &FinetuneDialog::start);
  connect(cancel_button_, &QPushButton::clicked, this, [this] {
    cancel_->store(true);
    cancel_button_->setEnabled(false);
    phase_->setText(tr("Cancelling at the next checkpoint…"));
  });
  connect(close_, &QPushButton::clicked, this, &FinetuneDialog::reject);
  options_.author = sstr(session_->author());
}

void FinetuneDialog::set_options(const app::FinetuneOptions& options) {
  options_ = options;
  strategy_->setCurrentIndex(std::max(0, strategy_->findData(static_cast<int>(options.strategy))));
  epochs_->setValue(options.epochs);
  promote_->setChecked(options.allow_promotion);
}

void FinetuneDialog::start() {
  if (running_) return;
  running_ = true;
  cancel_->store(false);
  result_.reset();
  error_.clear();
  loss_.clear();
  auroc_.clear();
  replot();
  compare_->setRowCount(0);
  summary_->clear();
  start_->setEnabled(false);
  cancel_button_->setEnabled(true);
  close_->setEnabled(false);
  strategy_->setEnabled(false);
  epochs_->setEnabled(false);
  phase_->setText(tr("Preparing…"));
  options_.strategy = static_cast<app::Strategy>(strategy_->currentData().toInt());
  options_.epochs = epochs_->value();
  options_.allow_promotion = promote_->isChecked();
  if (options_.author.empty()) options_.author = sstr(session_->author());
  const auto db = session_->path();
  const auto options = options_;
  auto cancel = cancel_;
  run_async(
      this,
      [this, db, options, cancel]() -> app::Result<app::FinetuneResult> {
        auto catalog = Session::open_worker_catalog(db);
        if (!catalog) return catalog.error();
        return app::finetune(
            catalog.value(), options,
            [this](const app::FinetuneProgress& p) { post_to_gui(this, [this, p] { on_progress(p); }); }, cancel.get());
      },
      [this](app::Result<app::FinetuneResult> r) { on_done(std::move(r)); });
}

void FinetuneDialog::on_progress(const app::FinetuneProgress& p) {
  if (!running_) return;
  QString text = tr("Phase: %1").arg(QString::fromUtf8(app::to_string(p.phase)));
  if (p.epochs > 0 && p.epoch > 0) text += tr("  ·  epoch %1 of %2").arg(p.epoch).arg(p.epochs);
  if (p.epoch > 0) text += tr("  ·  loss %1").arg(p.loss, 0, 'f', 4);
  if (p.validation_auroc) text += tr("  ·  validation AUROC %1").arg(*p.validation_auroc, 0, 'f', 3);
  if (p.images_per_second > 0) text += tr("  ·  %1 images/s").arg(p.images_per_second, 0, 'f', 1);
  if (p.eta_seconds > 0) text += tr("  ·  %1 s left").arg(p.eta_seconds, 0, 'f', 0);
  phase_->setText(text);
  if (p.steps > 0) {
    bar_->setRange(0, 1000);
    bar_->setValue(static_cast<int>(1000.0 * static_cast<double>(p.step) / static_cast<double>(p.steps)));
  } else {
    bar_->setRange(0, 0);
  }
  if (p.epoch > 0 && p.phase == app::Phase::Training) loss_[p.epoch] = p.loss;
  if (p.epoch > 0 && p.validation_auroc) auroc_[p.epoch] = *p.validation_auroc;
  replot();
}

void FinetuneDialog::replot() {
  QList<QPointF> auroc;
  int last_epoch = 1;
  for (const auto& [e, v] : auroc_) {
    auroc << QPointF(e, v);
    last_epoch = std::max(last_epoch, e);
  }
  auroc_series_->replace(auroc);
  chart_.show_loss(loss_, last_epoch);
}

void FinetuneDialog::on_done(app::Result<app::FinetuneResult> r) {
  running_ = false;
  start_->setEnabled(true);
  cancel_button_->setEnabled(false);
  close_->setEnabled(true);
  strategy_->setEnabled(true);
  epochs_->setEnabled(true);
  bar_->setRange(0, 1);
  bar_->setValue(r ? 1 : 0);
  if (!r) {
    error_ = qstr(r.error().message);
    phase_->setText(r.error().kind == app::ErrorKind::Interrupted ? tr("Cancelled. Running it again resumes from the last checkpoint.")
                                                                 : tr("Fine-tuning failed."));
    summary_->setText(tr("<b>%1</b>").arg(error_.toHtmlEscaped()));
    Q_EMIT finished_finetune(false);
    return;
  }
  result_ = std::move(r.value());
  const auto& res = *result_;
  loss_.clear();
  auroc_.clear();
  for (const auto& h : res.history) {
    loss_[h.epoch] = h.train_loss;
    if (h.validation_auroc) auroc_[h.epoch] = *h.validation_auroc;
  }
  replot();
  phase_->setText(tr("Done in %1 s (strategy %2).").arg(res.seconds, 0, 'f', 1).arg(qstr(res.strategy)));
  const QString compared = res.parent_metrics ? qstr(res.parent_metrics->model_version) : tr("none");
  summary_->setText(tr("<b>%1</b> %2 — %3<br>Mean validation AUROC: candidate %4, %5 %6 (%7 images, %8 patients).")
                        .arg(qstr(res.model.version).toHtmlEscaped())
                        .arg(res.promoted ? tr("is now the active model") : tr("is kept as a candidate"))
                        .arg(qstr(res.reason).toHtmlEscaped())
                        .arg(auroc_text(res.metrics.mean_auroc))
                        .arg(compared.toHtmlEscaped())
                        .arg(res.parent_metrics ? auroc_text(res.parent_metrics->mean_auroc) : QString("–"))
                        .arg(res.metrics.images)
                        .arg(res.metrics.patients));
  compare_->setRowCount(0);
  for (const auto& f : res.metrics.findings) {
    const int row = compare_->rowCount();
    compare_->insertRow(row);
    std::optional<double> old;
    if (res.parent_metrics) {
      for (const auto& g : res.parent_metrics->findings)
        if (g.finding == f.finding) old = g.auroc;
    }
    QString cand = auroc_text(f.auroc);
    if (f.auroc) cand += QString(" (%1–%2)").arg(f.auroc_low, 0, 'f', 2).arg(f.auroc_high, 0, 'f', 2);
    compare_->setItem(row, 0, new QTableWidgetItem(qstr(f.finding)));
    compare_->setItem(row, 1, new QTableWidgetItem(QString("%1 / %2").arg(f.positives).arg(f.negatives)));
    compare_->setItem(row, 2, new QTableWidgetItem(cand));
    compare_->setItem(row, 3, new QTableWidgetItem(auroc_text(old)));
    compare_->setItem(row, 4, new QTableWidgetItem(f.auroc ? QString::number(f.threshold, 'f', 2) : QString("–")));
  }
  session_->notify_models_changed();
  Q_EMIT finished_finetune(true);
}

void FinetuneDialog::reject() {
  if (running_) {
    cancel_button_->click();
    return;
  }
  QDialog::reject();
}

// ---- ModelManager ------------------------------------------------------------------------

ModelManager::ModelManager(Session* session, QWidget* parent) : QDialog(parent), session_(session) {
  setObjectName("modelManager");
  setWindowTitle(tr("Models"));
  resize(960, 640);
  auto* layout = new QVBoxLayout(this);
  auto* split = new QSplitter(Qt::Vertical, this);
  table_ = new QTableWidget(0, 9, split);
  table_->setObjectName("modelTable");
  table_->setHorizontalHeaderLabels({tr("Version"), tr("Status"), tr("Parent"), tr("Strategy"), tr("Trained on"), tr("Mean AUROC"),
                                     tr("Labelled images"), tr("Created"), tr("Why")});
  table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  table_->horizontalHeader()->setSectionResizeMode(8, QHeaderView::Stretch);
  table_->setWordWrap(false);
  table_->setTextElideMode(Qt::ElideRight);
  table_->verticalHeader()->setVisible(false);
  table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  table_->setSelectionMode(QAbstractItemView::SingleSelection);
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  // Pre-trained backbones: encoders without a classifier, not versions (see app::catalog_backbones).
  auto* backbone_box = new QWidget(split);
  auto* backbone_layout = new QVBoxLayout(backbone_box);
  backbone_layout->setContentsMargins(0, 4, 0, 0);
  auto* backbone_title = new QLabel(tr("<b>Pre-trained backbones</b> (encoders without a classifier: classifiers are trained from them)"),
                                    backbone_box);
  backbone_title->setWordWrap(true);
  backbone_layout->addWidget(backbone_title);
  backbone_table_ = new QTableWidget(0, 6, backbone_box);
  backbone_table_->setObjectName("backboneTable");
  backbone_table_->setHorizontalHeaderLabels({tr("Backbone"), tr("State"), tr("Epochs"), tr("Last loss"), tr("Films"), tr("Folder")});
  backbone_table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  backbone_table_->horizontalHeader()->setSectionResizeMode(5, QHeaderView::Stretch);
  backbone_table_->setWordWrap(false);
  backbone_table_->setTextElideMode(Qt::ElideMiddle);
  backbone_table_->verticalHeader()->setVisible(false);
  backbone_table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  backbone_table_->setSelectionMode(QAbstractItemView::SingleSelection);
  backbone_table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  backbone_layout->addWidget(backbone_table_);
  details_ = new QPlainTextEdit(split);
  details_->setObjectName("modelDetails");
  details_->setReadOnly(true);
  split->setStretchFactor(0, 2);
  split->setStretchFactor(1, 1);
  split->setStretchFactor(2, 2);
  split->setSizes({230, 140, 170});
  layout->addWidget(split, 1);
  status_ = new QLabel(this);
  status_->setObjectName("modelStatus");
  status_->setWordWrap(true);
  layout->addWidget(status_);
  auto* buttons = new QHBoxLayout;
  auto* promote = new QPushButton(tr("Promote selected"), this);
  promote->setObjectName("modelPromote");
  auto* rollback_button = new QPushButton(tr("Roll back"), this);
  rollback_button->setObjectName("modelRollback");
  auto* import_button = new QPushButton(tr("Import folder…"), this);
  import_button->setObjectName("modelImport");
  auto* export_button = new QPushButton(tr("Export selected…"), this);
  export_button->setObjectName("modelExport");
  auto* pretrain_button = new QPushButton(tr("Pre-train on this catalog's films…"), this);
  pretrain_button->setObjectName("modelPretrain");
  auto* close = new QPushButton(tr("Close"), this);
  buttons->addWidget(promote);
  buttons->addWidget(rollback_button);
  buttons->addWidget(pretrain_button);
  buttons->addStretch(1);
  buttons->addWidget(import_button);
  buttons->addWidget(export_button);
  buttons->addWidget(close);
  layout->addLayout(buttons);
  connect(table_, &QTableWidget::currentCellChanged, this, [this] { show_details(); });
  connect(table_, &QTableWidget::cellClicked, this, [this] { show_details(); });
  connect(backbone_table_, &QTableWidget::currentCellChanged, this, [this] { show_backbone_details(); });
  connect(backbone_table_, &QTableWidget::cellClicked, this, [this] { show_backbone_details(); });
  connect(pretrain_button, &QPushButton::clicked, this, [this] { show_pretrain(); });
  connect(promote, &QPushButton::clicked, this, [this] { promote_selected(); });
  connect(rollback_button, &QPushButton::clicked, this, [this] { rollback(); });
  connect(close, &QPushButton::clicked, this, &QDialog::accept);
  connect(import_button, &QPushButton::clicked, this, &ModelManager::import_interactively);
  connect(export_button, &QPushButton::clicked, this, [this] {
    const int row = table_->currentRow();
    if (row < 0) return;
    const QString version = table_->item(row, 0)->text();
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Export %1 into").arg(version));
    if (dir.isEmpty()) return;
    const auto db = session_->path();
    run_async(
        this,
        [db, version, dir]() -> app::Status {
          auto catalog = Session::open_worker_catalog(db);
          if (!catalog) return catalog.error();
          return app::export_model(catalog.value(), sstr(version), sstr(dir));
        },
        [this, version, dir](const app::Status& s) {
          if (s) message(tr("%1 written to %2 (config.json + model.safetensors).").arg(version, dir));
          else message(qstr(s.error().message), true);
        });
  });
  connect(session_, &Session::modelsChanged, this, &ModelManager::refresh);
  refresh();
}

void ModelManager::message(const QString& text, bool error) {
  last_message_ = text;
  status_->setStyleSheet(error ? "color: #c0392b;" : "");
  status_->setText(text);
}

void ModelManager::refresh() {
  const QString keep = table_->currentRow() >= 0 && table_->item(table_->currentRow(), 0) ? table_->item(table_->currentRow(), 0)->text() : QString();
  auto models = session_->catalog().models();
  if (!models) {
    message(qstr(models.error().message), true);
    return;
  }
  std::map<std::int64_t, QString> versions;
  for (const auto& m : models.value()) versions[m.id] = qstr(m.version);
  table_->setRowCount(0);
  for (const auto& m : models.value()) {
    const int row = table_->rowCount();
    table_->insertRow(row);
    const auto mean = model_mean_auroc(m);
    const auto images = model_labelled_images(m);
    const QStringList cells{qstr(m.version),
                            qstr(app::to_string(m.status)),
                            m.parent_id ? versions[*m.parent_id] : QString("–"),
                            qstr(m.strategy),
                            qstr(app::trained_on(m)),
                            auroc_text(mean),
                            images ? QString::number(*images) : QString("–"),
                            qstr(m.created_at).left(19).replace('T', ' '),
                            qstr(m.status_reason)};
    for (int c = 0; c < cells.size(); ++c) {
      auto* item = new QTableWidgetItem(cells[c]);
      if (m.status == app::ModelStatus::Active) {
        QFont f = item->font();
        f.setBold(true);
        item->setFont(f);
      }
      item->setToolTip(cells[c]);
      table_->setItem(row, c, item);
    }
    table_->item(row, 0)->setData(Qt::UserRole, QVariant::fromValue<qlonglong>(m.id));
    if (qstr(m.version) == keep) table_->setCurrentCell(row, 0);
  }
  if (table_->currentRow() < 0 && table_->rowCount() > 0) table_->setCurrentCell(0, 0);
  if (table_->rowCount() == 0) message(tr("No model yet: import a Hugging Face ViT folder, or fine-tune once one is active."));
  refresh_backbones();
  show_details();
}

void ModelManager::refresh_backbones() {
  auto list = app::catalog_backbones(session_->catalog());
  if (!list) {
    message(qstr(list.error().message), true);
    return;
  }
  backbones_ = std::move(list.value());
  const QSignalBlocker block(backbone_table_);
  backbone_table_->setRowCount(0);
  const bool running = pretraining();
  const QString running_name = running ? qstr(pretrain_->backbone_dir().filename().string()) : QString();
  for (const auto& b : backbones_) {
    const int row = backbone_table_->rowCount();
    backbone_table_->insertRow(row);
    QString state = b.finished ? tr("ready") : tr("stopped after epoch %1: Pre-train with this name resumes").arg(b.epochs);
    if (!b.finished && running && qstr(b.name) == running_name) state = tr("pre-training now");
    const QStringList cells{qstr(b.name),
                            state,
                            QString::number(b.epochs),
                            b.loss.empty() ? QString("–") : QString::number(b.loss.back(), 'f', 4),
                            b.images > 0 ? QString::number(b.images) : QString("–"),
                            qstr(b.dir.string())};
    for (int c = 0; c < cells.size(); ++c) {
      auto* item = new QTableWidgetItem(cells[c]);
      item->setToolTip(cells[c]);
      backbone_table_->setItem(row, c, item);
    }
  }
  if (backbones_.empty()) {
    backbone_table_->insertRow(0);
    auto* item = new QTableWidgetItem(tr("None yet: “Pre-train on this catalog's films…” makes one from the catalog's own films."));
    item->setFlags(Qt::ItemIsEnabled);
    backbone_table_->setItem(0, 0, item);
    backbone_table_->setSpan(0, 0, 1, backbone_table_->columnCount());
  }
}

void ModelManager::show_backbone_details() {
  const int row = backbone_table_->currentRow();
  if (row < 0 || row >= static_cast<int>(backbones_.size())) return;
  const auto& b = backbones_[static_cast<std::size_t>(row)];
  QStringList losses;
  for (std::size_t e = 0; e < b.loss.size(); ++e) losses << QString("%1: %2").arg(e + 1).arg(b.loss[e], 0, 'f', 4);
  const QString folder = qstr(b.dir.string());
  QString text = tr("%1 — a pre-trained encoder (masked autoencoder on this catalog's films), no classifier: not a model version.\n"
                    "Folder: %2\nInput: %3 pixels%4\nLoss per epoch: %5\n\n")
                     .arg(qstr(b.name), folder, b.image_size > 0 ? QString::number(b.image_size) : QString("–"),
                          b.architecture.empty() ? QString() : QString(", %1").arg(qstr(b.architecture)),
                          losses.isEmpty() ? QString("–") : losses.join(", "));
  if (b.finished) {
    text += tr("Train a classifier from it on a labelled image folder (one sub-folder per class, or a labels.csv):\n"
               "  hilum-cli train --data LABELLED_FOLDER --init \"%1\" --out NEW_MODEL\n"
               "then register NEW_MODEL here with “Import folder…”. To pre-train it further, choose it under "
               "“Continue from” in “Pre-train on this catalog's films…”.")
                .arg(folder);
  } else {
    text += tr("Stopped after epoch %1; its checkpoints are in %2.checkpoints. “Pre-train on this catalog's films…” with the name %3 "
               "resumes after that epoch.")
                .arg(b.epochs)
                .arg(folder, qstr(b.name));
  }
  details_->setPlainText(text);
}

PretrainDialog* ModelManager::show_pretrain() {
  if (!pretrain_) {
    pretrain_ = new PretrainDialog(session_, this);
    connect(pretrain_, &PretrainDialog::finished_pretrain, this, [this](bool ok) {
      refresh_backbones();
      if (ok) message(tr("Backbone %1 written: see Pre-trained backbones.").arg(qstr(pretrain_->backbone_dir().filename().string())));
      else message(pretrain_->cancelled() ? tr("Pre-training cancelled; its checkpoint is kept.") : tr("Pre-training failed: %1").arg(pretrain_->error()),
                   !pretrain_->cancelled());
      Q_EMIT pretrainFinished(ok);
    });
    connect(pretrain_, &PretrainDialog::epochFinished, this, [this] { refresh_backbones(); });
  }
  if (!pretrain_->running()) pretrain_->reload_backbones();
  pretrain_->show();
  pretrain_->raise();
  return pretrain_;
}

bool ModelManager::pretraining() const { return pretrain_ && pretrain_->running(); }

void ModelManager::cancel_pretraining() {
  if (pretrain_) pretrain_->cancel();
}

void ModelManager::show_details() {
  const int row = table_->currentRow();
  if (row < 0) {
    details_->clear();
    return;
  }
  auto m = session_->catalog().find_model(sstr(table_->item(row, 0)->text()));
  if (!m || !m->has_value()) return;
  const auto& r = **m;
  auto pretty = [](const std::string& json) {
    const auto doc = QJsonDocument::fromJson(QByteArray::fromStdString(json));
    return doc.isNull() ? qstr(json) : QString::fromUtf8(doc.toJson(QJsonDocument::Indented));
  };
  details_->setPlainText(tr("%1 — %2\nTrained on: %3\nFolder: %4\n\nHyperparameters:\n%5\nLabels used:\n%6\nMetrics:\n%7")
                             .arg(qstr(r.version), qstr(r.name), qstr(app::trained_on(r)), qstr(r.path), pretty(r.hyperparameters),
                                  pretty(r.label_snapshot), pretty(r.metrics)));
}

void ModelManager::import_folder(const std::filesystem::path& dir, const QString& version, bool activate) {
  message(tr("Checking and registering %1…").arg(qstr(dir.string())));
  const auto db = session_->path();
  run_async(
      this,
      [db, dir, version, activate]() -> app::Result<app::ModelRecord> {
        auto catalog = Session::open_worker_catalog(db);
        if (!catalog) return catalog.error();
        // A folder trained by cluster/train.py goes through the fine-tune gate, which decides.
        if (app::is_cluster_model_folder(dir)) {
          auto r = app::import_cluster_model(catalog.value(), dir);
          if (!r) return r.error();
          return r->result.model;
        }
        return app::import_model(catalog.value(), dir, sstr(version), activate);
      },
      [this](const app::Result<app::ModelRecord>& r) {
        if (!r) {
          message(tr("Import failed: %1").arg(qstr(r.error().message)), true);
          return;
        }
        message(tr("%1 registered (%2).").arg(qstr(r->version), qstr(app::to_string(r->status))));
        session_->notify_models_changed();
        Q_EMIT changed();
      });
}

void ModelManager::import_interactively() {
  const QString dir = QFileDialog::getExistingDirectory(this, tr("A Hugging Face ViT folder (config.json + model.safetensors)"));
  if (dir.isEmpty()) return;
  if (app::is_cluster_model_folder(sstr(dir))) {  // named and promoted like a fine-tune
    import_folder(sstr(dir), QString(), false);
    return;
  }
  bool ok = false;
  const QString version = QInputDialog::getText(this, tr("Version"), tr("Version name for this model:"), QLineEdit::Normal,
                                                QFileInfo(dir).fileName(), &ok);
  if (!ok || version.trimmed().isEmpty()) return;
  const bool activate = !session_->active_model() ||
                        QMessageBox::question(this, tr("Activate"), tr("Make %1 the active model?").arg(version)) == QMessageBox::Yes;
  import_folder(sstr(dir), version.trimmed(), activate);
}

bool ModelManager::promote_selected() {
  const int row = table_->currentRow();
  if (row < 0) return false;
  const QString version = table_->item(row, 0)->text();
  auto s = app::promote_model(session_->catalog(), sstr(version), sstr(tr("promoted in the workstation by %1").arg(session_->author())));
  if (!s) {
    message(qstr(s.error().message), true);
    return false;
  }
  message(tr("%1 is now the active model.").arg(version));
  session_->notify_models_changed();
  Q_EMIT changed();
  return true;
}

bool ModelManager::rollback() {
  auto r = app::rollback_model(session_->catalog());
  if (!r) {
    message(qstr(r.error().message), true);
    return false;
  }
  message(tr("Rolled back: %1 is active again.").arg(qstr(r->version)));
  session_->notify_models_changed();
  Q_EMIT changed();
  return true;
}

}  // namespace hilum::ui
