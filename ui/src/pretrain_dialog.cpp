#include "pretrain_dialog.hpp"

#include <QChart>
#include <QChartView>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLineSeries>
#include <QValueAxis>
#include <QVBoxLayout>

#include <algorithm>

#include "async.hpp"
#include "session.hpp"

namespace hilum::ui {
namespace {

constexpr const char* kDefaultName = "mae-backbone";

// A path for a shell command line.
QString quoted(const std::filesystem::path& p) { return QStringLiteral("\"%1\"").arg(qstr(p.string())); }

}  // namespace

PretrainDialog::PretrainDialog(Session* session, QWidget* parent) : QDialog(parent), session_(session) {
  setObjectName("pretrainDialog");
  setWindowTitle(tr("Pre-train on this catalog's films"));
  resize(760, 640);
  auto* layout = new QVBoxLayout(this);
  auto* intro = new QLabel(tr("Self-supervised pre-training (masked autoencoder) of a ViT encoder on every film in this catalog: no "
                              "labels needed. It adapts the encoder to this site's scanners and gives a backbone that classifiers "
                              "are trained from. On thousands of films it takes hours: let it run overnight."),
                           this);
  intro->setWordWrap(true);
  layout->addWidget(intro);
  auto* form = new QFormLayout;
  name_ = new QLineEdit(this);
  name_->setObjectName("pretrainName");
  name_->setMaxLength(64);
  epochs_ = new QSpinBox(this);
  epochs_->setObjectName("pretrainEpochs");
  epochs_->setRange(1, 1000);
  epochs_->setValue(options_.epochs);
  init_ = new QComboBox(this);
  init_->setObjectName("pretrainInit");
  connect(init_, QOverload<int>::of(&QComboBox::activated), this, [this] { init_chosen_ = true; });
  form->addRow(tr("Backbone name"), name_);
  form->addRow(tr("Epochs"), epochs_);
  form->addRow(tr("Continue from"), init_);
  layout->addLayout(form);
  note_ = new QLabel(this);
  note_->setObjectName("pretrainNote");
  note_->setWordWrap(true);
  note_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  layout->addWidget(note_);

  phase_ = new QLabel(tr("Not started."), this);
  phase_->setObjectName("pretrainPhase");
  phase_->setWordWrap(true);
  layout->addWidget(phase_);
  bar_ = new QProgressBar(this);
  bar_->setObjectName("pretrainProgress");
  bar_->setValue(0);
  layout->addWidget(bar_);

  chart_ = EpochChart::create(this, tr("Masked-patch reconstruction loss per epoch"), tr("loss"), "pretrainChart");
  chart_.chart->legend()->hide();
  chart_.view->setMinimumHeight(200);
  layout->addWidget(chart_.view, 1);
  losses_ = new QLabel(this);
  losses_->setObjectName("pretrainLosses");
  losses_->setWordWrap(true);
  layout->addWidget(losses_);
  summary_ = new QLabel(this);
  summary_->setObjectName("pretrainSummary");
  summary_->setWordWrap(true);
  summary_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  layout->addWidget(summary_);

  auto* buttons = new QHBoxLayout;
  buttons->addStretch(1);
  start_ = new QPushButton(tr("Pre-train"), this);
  start_->setObjectName("pretrainStart");
  start_->setDefault(true);
  cancel_button_ = new QPushButton(tr("Cancel"), this);
  cancel_button_->setObjectName("pretrainCancel");
  cancel_button_->setEnabled(false);
  cancel_button_->setToolTip(tr("Stops at the next step; the checkpoint of the last finished epoch is kept"));
  close_ = new QPushButton(tr("Close"), this);
  buttons->addWidget(start_);
  buttons->addWidget(cancel_button_);
  buttons->addWidget(close_);
  layout->addLayout(buttons);
  connect(start_, &QPushButton::clicked, this, &PretrainDialog::start);
  connect(cancel_button_, &QPushButton::clicked, this, [this] {
    cancel_->store(true);
    cancel_button_->setEnabled(false);
    phase_->setText(tr("Cancelling at the next step…"));
  });
  connect(close_, &QPushButton::clicked, this, &PretrainDialog::reject);
  connect(name_, &QLineEdit::textChanged, this, [this] { update_note(); });
  reload_backbones();
}

void PretrainDialog::set_options(const app::PretrainOptions& options) {
  const int epochs = epochs_->value();
  options_ = options;
  options_.epochs = epochs;
  reload_backbones();  // the first choice names the architecture
}

void PretrainDialog::reload_backbones() {
  if (running_) return;
  backbones_.clear();
  auto list = app::catalog_backbones(session_->catalog());
  if (list) backbones_ = std::move(list.value());
  QString chosen = init_->currentData().toString();
  init_->clear();
  init_->addItem(tr("Nothing: a new encoder (%1, %2 pixels)").arg(qstr(options_.arch)).arg(options_.image_size), QString());
  // The active model's encoder already knows chest films: a site adapts it to its own scanners, so it
  // is the first choice offered when there is one.
  if (const auto model = session_->active_model(); model && !model->path.empty()) {
    const QString path = qstr(model->path);
    init_->addItem(tr("The active model's encoder: %1").arg(qstr(model->version)), path);
    if (!init_chosen_) chosen = path;
  }
  for (const auto& b : backbones_) {
    if (!b.finished) continue;
    init_->addItem(tr("%1 (%2 epochs on %3 films)").arg(qstr(b.name)).arg(b.epochs).arg(b.images), qstr(b.dir.string()));
  }
  init_->setCurrentIndex(std::max(0, init_->findData(chosen)));
  // The default name: an unfinished run's (starting resumes it), else a free one.
  QString name;
  for (const auto& b : backbones_)
    if (!b.finished && name.isEmpty()) name = qstr(b.name);
  if (name.isEmpty()) {
    auto free = app::free_backbone_name(session_->catalog(), kDefaultName);
    name = free ? qstr(free.value()) : QString(kDefaultName);
  }
  name_->setText(name);
  update_note();
}

void PretrainDialog::update_note() {
  if (running_) return;
  const std::string name = sstr(name_->text().trimmed());
  for (const auto& b : backbones_) {
    if (b.finished || b.name != name) continue;
    note_->setStyleSheet(QString());
    note_->setText(tr("A pre-training named %1 stopped after epoch %2: Pre-train resumes after it (with the same settings; the "
                      "epochs are the run's total).")
                       .arg(qstr(b.name))
                       .arg(b.epochs));
    start_->setEnabled(true);
    return;
  }
  auto dir = app::catalog_backbone_dir(session_->catalog(), name);
  if (!dir) {
    note_->setStyleSheet("color: #c0392b;");
    note_->setText(qstr(dir.error().message));
    start_->setEnabled(false);
    return;
  }
  note_->setStyleSheet(QString());
  note_->setText(tr("Pre-train writes the backbone to %1. Cancel keeps the checkpoint of every finished epoch: Pre-train again "
                    "with the same name resumes after it.")
                     .arg(qstr(dir->string())));
  start_->setEnabled(true);
}

void PretrainDialog::set_inputs_enabled(bool enabled) {
  name_->setEnabled(enabled);
  epochs_->setEnabled(enabled);
  init_->setEnabled(enabled);
  start_->setEnabled(enabled);
  close_->setEnabled(enabled);
  cancel_button_->setEnabled(!enabled);
}

void PretrainDialog::start() {
  if (running_) return;
  error_.clear();
  report_.reset();
  cancelled_ = false;
  summary_->setStyleSheet(QString());
  summary_->clear();
  const std::string name = sstr(name_->text().trimmed());
  auto dir = app::catalog_backbone_dir(session_->catalog(), name);
  if (!dir) {
    error_ = qstr(dir.error().message);
    summary_->setStyleSheet("color: #c0392b;");
    summary_->setText(error_);
    return;
  }
  dir_ = *dir;
  loss_.clear();
  finished_epochs_ = 0;
  for (const auto& b : backbones_) {  // a resumed run: the epochs it has done
    if (b.finished || b.name != name) continue;
    for (std::size_t e = 0; e < b.loss.size(); ++e) loss_[static_cast<int>(e) + 1] = b.loss[e];
    finished_epochs_ = b.epochs;
  }
  replot();
  running_ = true;
  cancel_->store(false);
  set_inputs_enabled(false);
  phase_->setText(tr("Preparing…"));
  bar_->setRange(0, 0);
  app::PretrainOptions options = options_;
  options.out = dir_;
  options.epochs = epochs_->value();
  options.init = sstr(init_->currentData().toString());
  const auto db = session_->path();
  auto cancel = cancel_;
  run_async(
      this,
      [this, db, options, cancel]() -> app::Result<app::PretrainReport> {
        auto catalog = Session::open_worker_catalog(db);
        if (!catalog) return catalog.error();
        return app::pretrain_from_catalog(
            catalog.value(), options,
            [this](const app::FinetuneProgress& p) { post_to_gui(this, [this, p] { on_progress(p); }); }, cancel.get());
      },
      [this](app::Result<app::PretrainReport> r) { on_done(std::move(r)); });
}

void PretrainDialog::on_progress(const app::FinetuneProgress& p) {
  if (!running_) return;
  if (p.phase == app::Phase::Preparing) {
    phase_->setText(tr("Reading the catalog's films…"));
    return;
  }
  QString text = tr("Epoch %1 of %2  ·  loss %3").arg(p.epoch).arg(p.epochs).arg(p.loss, 0, 'f', 4);
  if (p.images_per_second > 0) text += tr("  ·  %1 images/s").arg(p.images_per_second, 0, 'f', 1);
  if (p.eta_seconds > 0) text += tr("  ·  %1 s left").arg(p.eta_seconds, 0, 'f', 0);
  if (p.phase == app::Phase::EpochDone) text += tr("  ·  checkpoint written");
  phase_->setText(text);
  if (p.steps > 0) {
    bar_->setRange(0, 1000);
    bar_->setValue(static_cast<int>(1000.0 * static_cast<double>(p.step) / static_cast<double>(p.steps)));
  }
  if (p.epoch > 0) loss_[p.epoch] = p.loss;
  if (p.phase == app::Phase::EpochDone) finished_epochs_ = p.epoch;
  replot();
  if (p.phase == app::Phase::EpochDone) Q_EMIT epochFinished(p.epoch, p.loss);
}

void PretrainDialog::replot() {
  QStringList words;
  for (const auto& [e, v] : loss_) {
    words << tr("epoch %1: %2%3").arg(e).arg(v, 0, 'f', 4).arg(e > finished_epochs_ ? tr(" (running)") : QString());
  }
  chart_.show_loss(loss_);
  losses_->setText(words.isEmpty() ? QString() : tr("Loss per epoch: %1").arg(words.join(QStringLiteral(", "))));
}

void PretrainDialog::on_done(app::Result<app::PretrainReport> r) {
  running_ = false;
  set_inputs_enabled(true);
  // Done: full; stopped: the share of the epochs whose checkpoint is kept.
  bar_->setRange(0, r ? 1 : std::max(1, epochs_->value()));
  bar_->setValue(r ? 1 : std::min(finished_epochs_, epochs_->value()));
  const QString name = qstr(dir_.filename().string());
  if (!r) {
    error_ = qstr(r.error().message);
    if (r.error().kind == app::ErrorKind::Interrupted) {
      cancelled_ = true;
      phase_->setText(tr("Cancelled after epoch %1 of %2.").arg(finished_epochs_).arg(epochs_->value()));
      std::erase_if(loss_, [this](const auto& e) { return e.first > finished_epochs_; });  // the unfinished epoch is not kept
      replot();
      summary_->setText(finished_epochs_ > 0 ? tr("The checkpoint of epoch %1 is kept in %2.checkpoints: Pre-train again with the name %3 "
                                                  "resumes after it.")
                                                   .arg(finished_epochs_)
                                                   .arg(qstr(dir_.string()), name)
                                             : tr("Cancelled before the first epoch ended: no checkpoint was written."));
    } else {
      phase_->setText(tr("Pre-training failed."));
      summary_->setStyleSheet("color: #c0392b;");
      summary_->setText(tr("<b>%1</b>").arg(error_.toHtmlEscaped()));
    }
    const auto keep_name = name_->text();
    reload_backbones();
    name_->setText(keep_name);  // a resumable run keeps its name
    Q_EMIT finished_pretrain(false);
    return;
  }
  report_ = std::move(r.value());
  loss_.clear();
  for (std::size_t e = 0; e < report_->loss.size(); ++e) loss_[static_cast<int>(e) + 1] = report_->loss[e];
  finished_epochs_ = static_cast<int>(report_->loss.size());
  replot();
  QString done = tr("Done in %1 s: %2 films, %3 epochs").arg(report_->seconds, 0, 'f', 1).arg(report_->images).arg(report_->loss.size());
  if (report_->resumed_after_epoch > 0) done += tr(" (resumed after epoch %1)").arg(report_->resumed_after_epoch);
  if (!report_->skipped.empty()) done += tr("; %1 films could not be read (first: %2)").arg(report_->skipped.size()).arg(qstr(report_->skipped.front()));
  phase_->setText(done + ".");
  summary_->setText(tr("Backbone <b>%1</b> written to %2.<br>It is an encoder without a classifier, not a model version. Train a "
                       "classifier from it on a labelled image folder:<br><code>hilum-cli train --data LABELLED_FOLDER --init %3 --out "
                       "NEW_MODEL</code><br>then register NEW_MODEL with “Import folder…” in the model manager.")
                        .arg(name.toHtmlEscaped(), qstr(dir_.string()).toHtmlEscaped(), quoted(dir_).toHtmlEscaped()));
  reload_backbones();
  Q_EMIT finished_pretrain(true);
}

void PretrainDialog::reject() {
  if (running_) {
    cancel_button_->click();
    return;
  }
  QDialog::reject();
}

}  // namespace hilum::ui
