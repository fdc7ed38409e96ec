#include "ai_panel.hpp"

#include <QFormLayout>
#include <QHBoxLayout>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QMouseEvent>
#include <QPainter>
#include <QResizeEvent>
#include <QScrollArea>

#include <algorithm>

#include "session.hpp"

namespace hilum::ui {

QMap<QString, double> model_thresholds(const app::ModelRecord& model) {
  QMap<QString, double> out;
  const auto doc = QJsonDocument::fromJson(QByteArray::fromStdString(model.metrics));
  if (!doc.isObject()) return out;
  const QJsonObject root = doc.object();
  const QJsonObject t = root.value("thresholds").toObject();
  for (auto it = t.begin(); it != t.end(); ++it)
    if (it.value().isDouble()) out[it.key()] = it.value().toDouble();
  // {"findings": [...]} directly or inside an evaluation report ({"metrics": {"findings": [...]}}).
  QJsonArray findings = root.value("findings").toArray();
  if (findings.isEmpty()) findings = root.value("metrics").toObject().value("findings").toArray();
  for (const auto& f : findings) {
    const QJsonObject o = f.toObject();
    const QString name = o.value("finding").toString(o.value("name").toString());
    if (!name.isEmpty() && o.value("threshold").isDouble()) out[name] = o.value("threshold").toDouble();
  }
  return out;
}

QString model_title(const app::ModelRecord& model) {
  const QString name = qstr(model.name.empty() ? model.version : model.name);
  return name == qstr(model.version) ? name : QString("%1 (%2)").arg(name, qstr(model.version));
}

// ---- FindingBar --------------------------------------------------------------------------

FindingBar::FindingBar(const QString& finding, double probability, double threshold, QWidget* parent)
    : QWidget(parent), finding_(finding), probability_(probability), threshold_(threshold) {
  setObjectName("findingBar_" + finding);
  setCursor(Qt::PointingHandCursor);
  setMinimumHeight(22);
  setToolTip(tr("%1: probability %2, threshold %3. Click for its attention map.")
                 .arg(finding).arg(probability, 0, 'f', 3).arg(threshold, 0, 'f', 2));
}

void FindingBar::set_selected(bool selected) {
  selected_ = selected;
  update();
}

void FindingBar::paintEvent(QPaintEvent*) {
  QPainter p(this);
  const QRect r = rect().adjusted(0, 1, -1, -2);
  if (selected_) p.fillRect(rect(), palette().highlight().color().lighter(170));
  const int name_w = std::min(150, r.width() / 2);
  const int value_w = 44;
  const QRect name_rect(r.left() + 4, r.top(), name_w - 4, r.height());
  const QRect bar(r.left() + name_w, r.top() + 3, std::max(10, r.width() - name_w - value_w), r.height() - 6);
  const QRect value_rect(bar.right() + 4, r.top(), value_w - 4, r.height());
  const bool above = probability_ >= threshold_;
  p.setPen(palette().text().color());
  QFont f = font();
  f.setBold(above);
  p.setFont(f);
  p.drawText(name_rect, Qt::AlignVCenter | Qt::AlignLeft, finding_);
  p.fillRect(bar, palette().base().color().darker(110));
  const int filled = static_cast<int>(bar.width() * std::clamp(probability_, 0.0, 1.0));
  p.fillRect(QRect(bar.left(), bar.top(), filled, bar.height()), above ? QColor(214, 80, 60) : QColor(70, 130, 200));
  const int tx = bar.left() + static_cast<int>(bar.width() * std::clamp(threshold_, 0.0, 1.0));
  p.setPen(QPen(palette().text().color(), 2));
  p.drawLine(tx, bar.top() - 2, tx, bar.bottom() + 2);
  p.setPen(palette().text().color());
  p.drawText(value_rect, Qt::AlignVCenter | Qt::AlignRight, QString::number(probability_, 'f', 2));
}

void FindingBar::mousePressEvent(QMouseEvent* event) {
  if (event->button() == Qt::LeftButton) Q_EMIT clicked(finding_);
}

// ---- AiPanel -----------------------------------------------------------------------------

void AiPanel::resizeEvent(QResizeEvent* event) {
  QWidget::resizeEvent(event);
  fit_domain_text();
}

void AiPanel::fit_domain_text() {
  if (domain_->isHidden() || domain_->text().isEmpty()) {
    domain_->setMinimumHeight(0);
    return;
  }
  const QMargins m = layout()->contentsMargins();
  const int width = std::max(1, contentsRect().width() - m.left() - m.right());
  domain_->ensurePolished();  // the style sheet's padding and border count
  domain_->setMinimumHeight(domain_->heightForWidth(width));
}

AiPanel::AiPanel(QWidget* parent) : QWidget(parent) {
  setObjectName("aiPanel");
  auto* layout = new QVBoxLayout(this);
  model_ = new QLabel(this);
  model_->setObjectName("aiModel");
  model_->setWordWrap(true);
  QFont bold = model_->font();
  bold.setBold(true);
  model_->setFont(bold);
  status_ = new QLabel(this);
  status_->setObjectName("aiStatus");
  status_->setWordWrap(true);
  domain_ = new QLabel(this);
  domain_->setObjectName("aiDomain");
  domain_->setWordWrap(true);
  domain_->setTextFormat(Qt::PlainText);
  domain_->hide();
  layout->addWidget(model_);
  layout->addWidget(domain_);
  layout->addWidget(status_);

  bars_box_ = new QWidget(this);
  bars_ = new QVBoxLayout(bars_box_);
  bars_->setContentsMargins(0, 0, 0, 0);
  bars_->setSpacing(1);
  layout->addWidget(bars_box_);

  auto* heat = new QFormLayout;
  method_ = new QComboBox(this);
  method_->setObjectName("aiHeatmapMethod");
  method_->addItem(tr("Attention rollout"));
  method_->addItem(tr("Class-specific"));
  opacity_ = new QSlider(Qt::Horizontal, this);
  opacity_->setObjectName("aiOpacity");
  opacity_->setRange(0, 100);
  opacity_->setValue(50);
  show_ = new QCheckBox(tr("Show map (H)"), this);
  show_->setObjectName("aiHeatmapShow");
  show_->setChecked(true);
  heat->addRow(tr("Map"), method_);
  heat->addRow(tr("Opacity"), opacity_);
  heat->addRow(QString(), show_);
  layout->addLayout(heat);
  heatmap_status_ = new QLabel(this);
  heatmap_status_->setObjectName("aiHeatmapStatus");
  heatmap_status_->setWordWrap(true);
  layout->addWidget(heatmap_status_);
  layout->addStretch(1);

  connect(opacity_, &QSlider::valueChanged, this, [this](int v) { Q_EMIT opacityChanged(v / 100.0); });
  connect(show_, &QCheckBox::toggled, this, &AiPanel::heatmapShownChanged);
  connect(method_, &QComboBox::currentIndexChanged, this, [this](int) { Q_EMIT methodChanged(); });
  show_no_model();
}

void AiPanel::clear_bars() {
  while (auto* item = bars_->takeAt(0)) {
    delete item->widget();
    delete item;
  }
  probabilities_.clear();
  out_of_domain_ = false;
  domain_->hide();
  domain_->clear();
  fit_domain_text();
}

FindingBar* AiPanel::bar(const QString& finding) const {
  return bars_box_->findChild<FindingBar*>("findingBar_" + finding);
}

void AiPanel::show_no_model(const QString& why) {
  clear_bars();
  version_.clear();
  thresholds_.clear();
  model_->setText(tr("No model: import one with Models > Import…"));
  status_->setText(why);
  heatmap_status_->clear();
}

void AiPanel::show_withheld(const QString& why) {
  clear_bars();
  version_.clear();
  thresholds_.clear();
  model_->setText(tr("AI findings withheld"));
  status_->setText(why);
  heatmap_status_->clear();
}

void AiPanel::show_computing(const app::ModelRecord& model) {
  clear_bars();
  version_ = qstr(model.version);
  thresholds_ = model_thresholds(model);
  model_->setText(tr("Model: %1").arg(model_title(model)));
  status_->setText(tr("Computing predictions…"));
  heatmap_status_->clear();
}

void AiPanel::show_predictions(const app::ModelRecord& model, const std::vector<std::pair<std::string, double>>& probabilities,
                               const QString& timing, const std::optional<app::DomainCheck>& domain) {
  clear_bars();
  version_ = qstr(model.version);
  thresholds_ = model_thresholds(model);
  model_->setText(tr("Model: %1").arg(model_title(model)));
  status_->setText(timing);
  if (domain && !domain->in_domain) {
    out_of_domain_ = true;
    domain_->setText(tr("Outside what this model knows: %1. No findings are suggested for this image.").arg(qstr(domain->reason)));
    domain_->setStyleSheet("QLabel { background: #5a1d1d; color: #ffd7d7; border: 1px solid #c0392b; padding: 6px; font-weight: bold; }");
    domain_->show();
    fit_domain_text();
    return;
  }
  if (domain) {
    // Whose calibration the bars carry, when the model has populations to choose from.
    const auto& pop = domain->population;
    const QString calibrated =
        pop.population.empty() || pop.chosen_by == "only population"
            ? QString()
            : tr(" Probabilities calibrated for %1 films (%2).")
                  .arg(qstr(pop.population), pop.chosen_by == "age" ? tr("by the patient's age") : tr("by the image: the header gives no age"));
    domain_->setText((domain->pixel_check ? tr("Within the model's training domain (score %1; above 1 is outside).").arg(*domain->score, 0, 'f', 2)
                                          : tr("Domain check unavailable: %1.").arg(qstr(domain->reason))) +
                     calibrated);
    domain_->setStyleSheet(domain->pixel_check ? "QLabel { color: #8fbc8f; }" : "QLabel { color: #d4a017; }");
    domain_->show();
    fit_domain_text();
  }
  probabilities_ = probabilities;
  for (const auto& [name, p] : probabilities) {
    const QString finding = qstr(name);
    auto* b = new FindingBar(finding, p, thresholds_.value(finding, 0.5), bars_box_);
    b->set_selected(finding == selected_);
    connect(b, &FindingBar::clicked, this, &AiPanel::findingClicked);
    bars_->addWidget(b);
  }
}

void AiPanel::show_error(const app::ModelRecord& model, const QString& message) {
  clear_bars();
  version_ = qstr(model.version);
  model_->setText(tr("Model: %1").arg(model_title(model)));
  status_->setText(tr("No prediction: %1").arg(message));
}

void AiPanel::clear_for_image() {
  heatmap_status_->clear();
  selected_.clear();
}

void AiPanel::set_heatmap_status(const QString& text) { heatmap_status_->setText(text); }

void AiPanel::set_selected_finding(const QString& finding) {
  selected_ = finding;
  for (auto* b : bars_box_->findChildren<FindingBar*>()) b->set_selected(b->finding() == finding);
}

}  // namespace hilum::ui
