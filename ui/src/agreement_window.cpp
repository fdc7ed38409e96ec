#include "agreement_window.hpp"

#include <QComboBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QPainter>
#include <QPushButton>
#include <QScrollArea>
#include <QSplitter>
#include <QTableWidget>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>

#include "async.hpp"
#include "hilum/core/numbers.hpp"

namespace hilum::ui {
namespace {

constexpr int kRowHeight = 24;
constexpr int kTop = 28;     // room for the legend
constexpr int kBottom = 34;  // room for the axis' labels

QColor kind_colour(int kind) {
  switch (kind) {
    case 0: return QColor(0x1f, 0x77, 0xb4);  // Cohen's kappa per pair
    case 1: return QColor(0xd6, 0x27, 0x28);  // Fleiss' kappa
    case 2: return QColor(0x94, 0x67, 0xbd);  // Krippendorff's alpha
    case 3: return QColor(0x2c, 0xa0, 0x2c);  // vs the other readers' consensus
    default: return QColor(0xff, 0x7f, 0x0e);  // vs AI
  }
}

QString number(const std::optional<double>& v) { return v ? QString::fromStdString(core::format_fixed(*v, 3)) : QString(); }

}  // namespace

// ---- ForestPlot -----------------------------------------------------------------------------

ForestPlot::ForestPlot(QWidget* parent) : QWidget(parent) {
  setObjectName("agreementPlot");
  setBackgroundRole(QPalette::Base);
  setAutoFillBackground(true);
  setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Preferred);
}

void ForestPlot::set_rows(std::vector<ForestRow> rows) {
  rows_ = std::move(rows);
  setMinimumHeight(sizeHint().height());
  updateGeometry();
  update();
}

std::pair<double, double> ForestPlot::axis_range() const {
  double lo = 0.0;
  for (const ForestRow& r : rows_) {
    for (const auto& v : {r.value, r.low}) {
      if (v && std::isfinite(*v)) lo = std::min(lo, *v);
    }
  }
  // Down to the next 0.2 below the lowest value, never below -1 (kappa's and alpha's floor for two
  // categories; anything lower is drawn at the edge).
  lo = std::max(-1.0, std::floor(lo * 5.0 - 1e-9) / 5.0);
  if (lo > -0.2) lo = -0.2;
  return {lo, 1.0};
}

QSize ForestPlot::sizeHint() const { return {640, kTop + kBottom + kRowHeight * std::max<int>(3, static_cast<int>(rows_.size()))}; }
QSize ForestPlot::minimumSizeHint() const { return {360, kTop + kBottom + kRowHeight * 2}; }

void ForestPlot::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.setRenderHint(QPainter::Antialiasing);
  const QFontMetrics fm(font());
  int label_width = 0;
  for (const ForestRow& r : rows_) label_width = std::max(label_width, fm.horizontalAdvance(r.label));
  label_width = std::min(label_width + 12, width() * 45 / 100);
  const int value_width = fm.horizontalAdvance("-0.000 [-0.000, -0.000]") + 12;
  const QRect plot(label_width, kTop, std::max(40, width() - label_width - value_width - 8), kRowHeight * static_cast<int>(rows_.size()));
  const auto range = axis_range();
  const double lo = range.first, hi = range.second;
  const auto x_of = [&](double v) {
    v = std::clamp(v, lo, hi);
    return plot.left() + (v - lo) / (hi - lo) * plot.width();
  };
  const QColor text = palette().color(QPalette::Text);
  const QColor grid = palette().color(QPalette::Mid);

  // Legend.
  const char* names[] = {"Cohen's κ (pair)", "Fleiss' κ", "Krippendorff's α", "vs others' consensus", "vs AI"};
  int lx = 4;
  for (int k = 0; k < 5; ++k) {
    p.setPen(Qt::NoPen);
    p.setBrush(kind_colour(k));
    p.drawEllipse(QPointF(lx + 5, 12), 4.5, 4.5);
    p.setPen(text);
    const QString name = tr(names[k]);
    p.drawText(QPointF(lx + 13, 12 + fm.ascent() / 2.0 - 1), name);
    lx += 13 + fm.horizontalAdvance(name) + 16;
  }

  // Grid and axis: ticks every 0.2, a dashed line at 0 (chance).
  p.setFont(font());
  for (int t = static_cast<int>(std::lround(lo * 5)); t <= 5; ++t) {
    const double v = t / 5.0;
    const double x = x_of(v);
    p.setPen(QPen(grid, t == 0 ? 1.2 : 0.5, t == 0 ? Qt::DashLine : Qt::DotLine));
    p.drawLine(QPointF(x, plot.top() - 4), QPointF(x, plot.bottom() + 4));
    p.setPen(text);
    const QString label = QString::fromStdString(core::format_fixed(v, 1));
    p.drawText(QRectF(x - 30, plot.bottom() + 6, 60, fm.height()), Qt::AlignHCenter | Qt::AlignTop, label);
  }
  p.drawText(QRectF(plot.left(), plot.bottom() + 6 + fm.height(), plot.width(), fm.height()), Qt::AlignHCenter | Qt::AlignTop,
             tr("agreement (κ, α): 0 = chance, 1 = perfect; bars: 95% interval"));

  // Rows.
  for (std::size_t i = 0; i < rows_.size(); ++i) {
    const ForestRow& r = rows_[i];
    const double y = plot.top() + (static_cast<double>(i) + 0.5) * kRowHeight;
    if (i % 2 == 1) p.fillRect(QRectF(0, y - kRowHeight / 2.0, width(), kRowHeight), palette().color(QPalette::AlternateBase));
    p.setPen(r.value ? text : palette().color(QPalette::Disabled, QPalette::Text));
    p.drawText(QRectF(4, y - kRowHeight / 2.0, label_width - 8, kRowHeight), Qt::AlignVCenter | Qt::AlignRight,
               fm.elidedText(r.label, Qt::ElideMiddle, label_width - 8));
    QString shown = r.missing.isEmpty() ? tr("undefined") : r.missing;
    if (r.value) {
      const QColor c = kind_colour(r.kind);
      if (r.low && r.high) {
        p.setPen(QPen(c, 2));
        const double a = x_of(*r.low), b = x_of(*r.high);
        p.drawLine(QPointF(a, y), QPointF(b, y));
        p.drawLine(QPointF(a, y - 4), QPointF(a, y + 4));
        p.drawLine(QPointF(b, y - 4), QPointF(b, y + 4));
      }
      p.setPen(QPen(c.darker(130), 1));
      p.setBrush(c);
      p.drawRect(QRectF(x_of(*r.value) - 4.5, y - 4.5, 9, 9));
      shown = number(r.value);
      if (r.low && r.high) shown += " [" + number(r.low) + ", " + number(r.high) + "]";
    }
    p.setPen(r.value ? text : palette().color(QPalette::Disabled, QPalette::Text));
    p.drawText(QRectF(plot.right() + 8, y - kRowHeight / 2.0, value_width, kRowHeight), Qt::AlignVCenter | Qt::AlignLeft, shown);
  }
  p.setPen(QPen(grid, 1));
  p.setBrush(Qt::NoBrush);
  p.drawRect(plot.adjusted(0, -4, 0, 4));
}

// ---- AgreementWindow -------------------------------------------------------------------------

AgreementWindow::AgreementWindow(Session* session, QWidget* parent) : QDialog(parent), session_(session) {
  setObjectName("agreementWindow");
  setWindowTitle(tr("Reader agreement"));
  auto* layout = new QVBoxLayout(this);
  summary_ = new QLabel(this);
  summary_->setObjectName("agreementSummary");
  summary_->setWordWrap(true);
  layout->addWidget(summary_);
  auto* row = new QHBoxLayout;
  row->addWidget(new QLabel(tr("Finding:"), this));
  finding_ = new QComboBox(this);
  finding_->setObjectName("agreementFinding");
  finding_->setMinimumContentsLength(20);
  row->addWidget(finding_);
  finding_summary_ = new QLabel(this);
  finding_summary_->setObjectName("agreementFindingSummary");
  row->addWidget(finding_summary_, 1);
  refresh_ = new QPushButton(tr("Recompute"), this);
  refresh_->setObjectName("agreementRefresh");
  row->addWidget(refresh_);
  layout->addLayout(row);

  auto* split = new QSplitter(Qt::Vertical, this);
  table_ = new QTableWidget(0, 5, split);
  table_->setObjectName("agreementTable");
  table_->setHorizontalHeaderLabels({tr("Statistic"), tr("Readers"), tr("Value"), tr("95% interval"), tr("Images")});
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  table_->setAlternatingRowColors(true);
  table_->verticalHeader()->hide();
  table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  table_->horizontalHeader()->setSectionResizeMode(1, QHeaderView::Stretch);
  // The plot keeps its rows' height and scrolls when there are many reader pairs.
  auto* scroll = new QScrollArea(split);
  scroll->setObjectName("agreementPlotScroll");
  scroll->setWidgetResizable(true);
  scroll->setFrameShape(QFrame::NoFrame);
  plot_ = new ForestPlot;
  scroll->setWidget(plot_);
  split->addWidget(table_);
  split->addWidget(scroll);
  split->setStretchFactor(0, 2);
  split->setStretchFactor(1, 3);
  layout->addWidget(split, 1);

  connect(finding_, &QComboBox::currentIndexChanged, this, [this](int i) { show_finding(i); });
  connect(refresh_, &QPushButton::clicked, this, [this] { refresh(); });
  resize(860, 760);
  refresh();
}

void AgreementWindow::refresh() {
  const int generation = ++generation_;
  computing_ = true;
  refresh_->setEnabled(false);
  summary_->setText(tr("Computing the agreement between the readers (%1 bootstrap resamples by patient)…").arg(options_.bootstrap));
  const auto db = session_->path();
  const app::AgreementOptions options = options_;
  run_async(
      this,
      [db, options]() -> app::Result<app::AgreementReport> {
        auto catalog = Session::open_worker_catalog(db);
        if (!catalog) return catalog.error();
        return app::agreement(catalog.value(), options);
      },
      [this, generation](app::Result<app::AgreementReport> result) {
        if (generation != generation_) return;  // a newer computation is on its way
        computing_ = false;
        refresh_->setEnabled(true);
        const QString previous = finding_->currentText();
        report_.reset();
        {
          const QSignalBlocker block(finding_);
          finding_->clear();
        }
        if (!result) {
          summary_->setText(tr("The agreement could not be computed: %1").arg(qstr(result.error().message)));
          show_finding(-1);
          Q_EMIT computed();
          return;
        }
        report_ = std::move(result.value());
        const QString ai = report_->model_version.empty()
                               ? tr("no model, so no agreement with the AI")
                               : tr("model %1, finding present at probability ≥ %2")
                                     .arg(qstr(report_->model_version), QString::fromStdString(core::format_number(report_->threshold, 6)));
        QStringList readers;
        for (const auto& r : report_->readers) readers << qstr(r);
        summary_->setText(tr("Readers: %1. Labels: %2. AI: %3. 95% intervals: %4 bootstrap resamples by patient (seed %5). "
                             "No statistic from fewer than %6 images.")
                              .arg(readers.isEmpty() ? tr("none") : readers.join(", "), qstr(report_->labels), ai)
                              .arg(report_->bootstrap)
                              .arg(static_cast<qulonglong>(report_->seed))
                              .arg(report_->min_images));
        {
          const QSignalBlocker block(finding_);
          for (const auto& f : report_->findings) finding_->addItem(qstr(f.finding));
          const int keep = finding_->findText(previous);
          finding_->setCurrentIndex(keep >= 0 ? keep : (report_->findings.empty() ? -1 : 0));
        }
        show_finding(finding_->currentIndex());
        Q_EMIT computed();
      });
}

void AgreementWindow::select_finding(const QString& name) {
  const int i = finding_->findText(name);
  if (i >= 0) finding_->setCurrentIndex(i);
}

void AgreementWindow::show_finding(int index) {
  table_->setRowCount(0);
  std::vector<ForestRow> rows;
  if (!report_ || index < 0 || index >= static_cast<int>(report_->findings.size())) {
    finding_summary_->setText(report_ && report_->findings.empty() ? tr("no finding has two readers' labels yet") : QString());
    plot_->set_rows({});
    return;
  }
  const app::FindingAgreement& f = report_->findings[static_cast<std::size_t>(index)];
  finding_summary_->setText(tr("%1 image(s) of %2 patient(s), %3 reader(s)").arg(f.images).arg(f.patients).arg(f.readers.size()));
  const auto add = [&](const QString& statistic, const QString& readers, const app::AgreementValue& v, int kind, const QString& plot_label) {
    const int r = table_->rowCount();
    table_->insertRow(r);
    auto* name = new QTableWidgetItem(statistic);
    auto* who = new QTableWidgetItem(readers);
    const bool too_few = !v.value && v.reason == "too few images";
    const QString missing = too_few ? tr("too few images (%1)").arg(v.images) : tr("undefined");
    auto* value = new QTableWidgetItem(v.value ? number(v.value) : missing);
    value->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
    if (v.value) value->setData(Qt::UserRole, *v.value);
    else if (too_few) value->setToolTip(tr("not shown: computed from fewer than %1 images it would say nothing").arg(report_->min_images));
    else value->setToolTip(tr("undefined: the readers used one category only, or no image has two labels"));
    auto* interval = new QTableWidgetItem(v.low && v.high ? number(v.low) + " to " + number(v.high) : QString());
    if (v.low && v.high) interval->setData(Qt::UserRole, QVariantList{*v.low, *v.high});
    auto* images = new QTableWidgetItem(QString::number(v.images));
    images->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
    name->setForeground(kind_colour(kind).darker(140));
    if (!v.value) {
      for (auto* item : {name, who, value, interval, images}) item->setForeground(palette().color(QPalette::Disabled, QPalette::Text));
    }
    table_->setItem(r, 0, name);
    table_->setItem(r, 1, who);
    table_->setItem(r, 2, value);
    table_->setItem(r, 3, interval);
    table_->setItem(r, 4, images);
    rows.push_back({plot_label, kind, v.value, v.low, v.high, v.value ? QString() : missing});
  };
  for (const auto& p : f.cohen_kappa) {
    const QString pair = qstr(p.reader_a) + " / " + qstr(p.reader_b);
    add(tr("Cohen's kappa"), pair, p.cohen_kappa, 0, tr("κ %1").arg(pair));
  }
  const QString all = tr("all %1 readers").arg(f.readers.size());
  add(tr("Fleiss' kappa"), all, f.fleiss_kappa, 1, tr("Fleiss' κ"));
  add(tr("Krippendorff's alpha"), all, f.krippendorff_alpha, 2, tr("Krippendorff's α"));
  for (const auto& r : f.vs_others_consensus) {
    add(tr("vs others' consensus"), qstr(r.reader), r.cohen_kappa, 3, tr("%1 vs others").arg(qstr(r.reader)));
    table_->item(table_->rowCount() - 1, 0)->setToolTip(
        tr("%1 against the consensus of the other readers (leave-one-out); left out: %2 image(s) no other reader labelled, %3 on which "
           "the others reach no consensus")
            .arg(qstr(r.reader))
            .arg(r.no_other_reader)
            .arg(r.no_consensus));
  }
  for (const auto& r : f.vs_ai) add(tr("vs AI"), qstr(r.reader), r.cohen_kappa, 4, tr("%1 vs AI").arg(qstr(r.reader)));
  plot_->set_rows(std::move(rows));
}

}  // namespace hilum::ui
