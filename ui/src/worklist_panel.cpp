#include "worklist_panel.hpp"

#include <QFormLayout>
#include <QHeaderView>
#include <QVBoxLayout>

#include <map>

#include "async.hpp"
#include "session.hpp"

namespace hilum::ui {
namespace {

struct Listing {
  std::vector<app::WorklistItem> items;
  std::vector<QImage> thumbs;
  app::WorklistCounts counts;
  QString error;
};

QString date_text(const std::string& yyyymmdd) {
  if (yyyymmdd.size() != 8) return qstr(yyyymmdd);
  return qstr(yyyymmdd.substr(0, 4) + "-" + yyyymmdd.substr(4, 2) + "-" + yyyymmdd.substr(6, 2));
}

QString patient_text(const app::WorklistItem& w) {
  QString name = qstr(w.patient_name).replace('^', ' ').trimmed();
  QString id = qstr(w.patient_id);
  if (name.isEmpty() && id.isEmpty()) return QObject::tr("(no patient ID)");
  if (name.isEmpty()) return id;
  if (id.isEmpty()) return name;
  return QString("%1  ·  %2").arg(name, id);
}

QString status_text(const app::WorklistItem& w) {
  QStringList parts;
  if (w.current_labels == 0) parts << QObject::tr("unlabelled");
  else parts << QObject::tr("%1 lab.").arg(w.current_labels) + (w.labelled_by_author ? QObject::tr(" (me)") : QString());
  if (w.in_domain && !*w.in_domain) parts << QObject::tr("outside AI domain");
  else if (w.disagreements > 0) parts << QObject::tr("AI≠%1").arg(w.disagreements);
  if (w.uncertainty && w.in_domain.value_or(true)) parts << QObject::tr("u %1").arg(*w.uncertainty, 0, 'f', 2);
  return parts.join(" · ");
}

QString status_tooltip(const app::WorklistItem& w) {
  QString t = QObject::tr("%1 current label(s)%2").arg(w.current_labels).arg(w.labelled_by_author ? QObject::tr(", some by you") : QString());
  if (w.has_predictions) t += QObject::tr("\nAI uncertainty %1 (1 = a finding right at its threshold)").arg(w.uncertainty.value_or(0.0), 0, 'f', 2);
  else t += QObject::tr("\nno predictions by the active model yet");
  if (w.disagreements > 0) t += QObject::tr("\n%1 finding(s) where your label and the AI disagree").arg(w.disagreements);
  if (w.in_domain && !*w.in_domain) t += QObject::tr("\nOutside what the model knows: %1").arg(qstr(w.domain_reason));
  return t;
}

}  // namespace

WorklistPanel::WorklistPanel(Session* session, QWidget* parent) : QWidget(parent), session_(session) {
  setObjectName("worklistPanel");
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(4, 4, 4, 4);
  auto* form = new QFormLayout;
  search_ = new QLineEdit(this);
  search_->setObjectName("worklistSearch");
  search_->setPlaceholderText(tr("Patient name, ID or accession (Ctrl+F)"));
  search_->setClearButtonEnabled(true);
  show_ = new QComboBox(this);
  show_->setObjectName("worklistShow");
  show_->addItem(tr("All images"), static_cast<int>(app::WorklistQuery::Show::All));
  show_->addItem(tr("Not labelled by me"), static_cast<int>(app::WorklistQuery::Show::NotLabelledBy));
  show_->addItem(tr("Unlabelled"), static_cast<int>(app::WorklistQuery::Show::Unlabelled));
  show_->addItem(tr("Labelled by me"), static_cast<int>(app::WorklistQuery::Show::LabelledBy));
  show_->addItem(tr("Label and AI disagree"), static_cast<int>(app::WorklistQuery::Show::Disagreement));
  show_->addItem(tr("Readers disagree"), static_cast<int>(app::WorklistQuery::Show::ReadersDisagree));
  sort_ = new QComboBox(this);
  sort_->setObjectName("worklistSort");
  sort_->addItem(tr("Patient, study"), static_cast<int>(app::WorklistQuery::Sort::Patient));
  sort_->addItem(tr("Newest study first"), static_cast<int>(app::WorklistQuery::Sort::StudyDateNewest));
  sort_->addItem(tr("AI uncertainty, high first"), static_cast<int>(app::WorklistQuery::Sort::Uncertainty));
  sort_->addItem(tr("Recently imported"), static_cast<int>(app::WorklistQuery::Sort::Imported));
  finding_ = new QComboBox(this);
  finding_->setObjectName("worklistFinding");
  form->addRow(tr("Search"), search_);
  form->addRow(tr("Show"), show_);
  form->addRow(tr("Finding"), finding_);
  form->addRow(tr("Sort"), sort_);
  hide_out_of_domain_ = new QCheckBox(tr("Hide images outside the AI's domain"), this);
  hide_out_of_domain_->setObjectName("worklistHideOutOfDomain");
  hide_out_of_domain_->setToolTip(tr("Images the model was not trained on (other modalities, body parts, or films unlike its training films)"));
  form->addRow(QString(), hide_out_of_domain_);
  layout->addLayout(form);

  counts_ = new QLabel(this);
  counts_->setObjectName("worklistCounts");
  counts_->setWordWrap(true);
  layout->addWidget(counts_);

  tree_ = new QTreeWidget(this);
  tree_->setObjectName("worklistTree");
  tree_->setColumnCount(2);
  tree_->setHeaderLabels({tr("Patient / study / series / image"), tr("Status")});
  tree_->setIconSize(QSize(48, 48));
  tree_->setUniformRowHeights(false);
  tree_->header()->setSectionResizeMode(0, QHeaderView::Stretch);
  tree_->header()->setSectionResizeMode(1, QHeaderView::ResizeToContents);
  tree_->setFocusPolicy(Qt::NoFocus);
  layout->addWidget(tree_, 1);

  search_timer_.setSingleShot(true);
  search_timer_.setInterval(250);
  connect(&search_timer_, &QTimer::timeout, this, &WorklistPanel::refresh);
  connect(search_, &QLineEdit::textChanged, this, [this] { search_timer_.start(); });
  connect(show_, &QComboBox::currentIndexChanged, this, [this] { refresh(); });
  connect(sort_, &QComboBox::currentIndexChanged, this, [this] { refresh(); });
  connect(finding_, &QComboBox::currentIndexChanged, this, [this] { refresh(); });
  connect(hide_out_of_domain_, &QCheckBox::toggled, this, [this] { refresh(); });
  connect(tree_, &QTreeWidget::currentItemChanged, this, [this](QTreeWidgetItem* item) {
    if (building_ || item == nullptr) return;
    const QVariant index = item->data(0, Qt::UserRole + 1);
    if (index.isValid()) activate_index(index.toInt());
  });
  reload_findings();
}

void WorklistPanel::reload_findings() {
  const QString keep = finding_->currentData().toString();
  QSignalBlocker block(finding_);
  finding_->clear();
  finding_->addItem(tr("Any finding"), QString());
  auto v = session_->catalog().findings();
  if (v) {
    for (const auto& f : v.value()) {
      if (f.name != "No Finding") finding_->addItem(qstr(f.name), qstr(f.name));
    }
  }
  const int i = finding_->findData(keep);
  finding_->setCurrentIndex(i < 0 ? 0 : i);
}

app::WorklistQuery WorklistPanel::query() const {
  app::WorklistQuery q;
  q.show = static_cast<app::WorklistQuery::Show>(show_->currentData().toInt());
  q.sort = static_cast<app::WorklistQuery::Sort>(sort_->currentData().toInt());
  q.author = sstr(session_->author());
  q.finding = sstr(finding_->currentData().toString());
  q.search = sstr(search_->text().trimmed());
  q.hide_out_of_domain = hide_out_of_domain_->isChecked();
  return q;
}

void WorklistPanel::refresh() {
  if (busy_) {
    again_ = true;
    return;
  }
  busy_ = true;
  if (const auto* c = current()) want_selected_ = qstr(c->sop_instance_uid);
  const auto db = session_->path();
  const app::WorklistQuery q = query();
  run_async(
      this,
      [db, q]() {
        Listing out;
        auto catalog = Session::open_worker_catalog(db);
        if (!catalog) {
          out.error = qstr(catalog.error().message);
          return out;
        }
        auto items = app::worklist(catalog.value(), q);
        if (!items) {
          out.error = qstr(items.error().message);
          return out;
        }
        auto counts = app::worklist_counts(catalog.value(), q);
        if (counts) out.counts = counts.value();
        out.items = std::move(items.value());
        out.thumbs.reserve(out.items.size());
        for (auto& w : out.items) {
          out.thumbs.push_back(QImage::fromData(w.thumbnail_png.data(), static_cast<int>(w.thumbnail_png.size()), "PNG"));
          w.thumbnail_png.clear();
          w.thumbnail_png.shrink_to_fit();
        }
        return out;
      },
      [this](Listing listing) {
        busy_ = false;
        if (!listing.error.isEmpty()) {
          counts_->setText(tr("The worklist could not be read: %1").arg(listing.error));
        } else {
          build(std::move(listing.items), std::move(listing.thumbs), listing.counts);
        }
        Q_EMIT refreshed();
        if (again_) {
          again_ = false;
          refresh();
        }
      });
}

void WorklistPanel::build(std::vector<app::WorklistItem> items, std::vector<QImage> thumbs, const app::WorklistCounts& counts) {
  building_ = true;
  tree_->clear();
  rows_.clear();
  std::map<std::string, QTreeWidgetItem*> patients, studies, series;
  std::vector<std::pair<QTreeWidgetItem*, std::size_t>> image_rows;
  for (std::size_t k = 0; k < items.size(); ++k) {
    const auto& w = items[k];
    const std::string pkey = w.patient_id + "\x1f" + w.patient_name;
    auto& p = patients[pkey];
    if (p == nullptr) {
      p = new QTreeWidgetItem(tree_, {patient_text(w), QString("%1 %2").arg(qstr(w.patient_sex), qstr(w.patient_age)).trimmed()});
      QFont f = p->font(0);
      f.setBold(true);
      p->setFont(0, f);
      p->setExpanded(true);
    }
    auto& s = studies[w.study_instance_uid];
    if (s == nullptr) {
      QString text = date_text(w.study_date);
      if (!w.study_description.empty()) text += "  " + qstr(w.study_description);
      if (!w.accession_number.empty()) text += tr("  · acc. %1").arg(qstr(w.accession_number));
      s = new QTreeWidgetItem(p, {text.trimmed().isEmpty() ? tr("(study)") : text.trimmed()});
      s->setExpanded(true);
    }
    auto& se = series[w.series_instance_uid];
    if (se == nullptr) {
      QString text = tr("Series %1 %2 %3").arg(qstr(w.series_number), qstr(w.modality), qstr(w.series_description));
      se = new QTreeWidgetItem(s, {text.simplified()});
      se->setExpanded(true);
    }
    auto* im = new QTreeWidgetItem(se, {qstr(w.view_position.empty() ? w.modality : w.view_position), status_text(w)});
    if (k < thumbs.size() && !thumbs[k].isNull()) im->setIcon(0, QIcon(QPixmap::fromImage(thumbs[k])));
    im->setToolTip(0, QString("%1 × %2\n%3\n%4").arg(w.columns).arg(w.rows).arg(qstr(w.sop_instance_uid), qstr(w.path)));
    im->setToolTip(1, status_tooltip(w));
    if (w.disagreements > 0) im->setForeground(1, QColor(200, 60, 45));
    image_rows.emplace_back(im, k);
  }
  // The order shown (groups keep their first appearance) is the order next/previous follow.
  std::map<QTreeWidgetItem*, std::size_t> index_of;
  for (const auto& [row, k] : image_rows) index_of[row] = k;
  std::vector<app::WorklistItem> ordered;
  ordered.reserve(items.size());
  for (QTreeWidgetItemIterator it(tree_); *it; ++it) {
    const auto found = index_of.find(*it);
    if (found == index_of.end()) continue;
    (*it)->setData(0, Qt::UserRole + 1, static_cast<int>(ordered.size()));
    ordered.push_back(std::move(items[found->second]));
    rows_.push_back(*it);
  }
  items_ = std::move(ordered);
  current_ = -1;
  const int left = counts.not_labelled_by_author;
  counts_->setText(tr("<b>%1</b> shown of %2 images  ·  <b>%3</b> left for you  ·  %4 unlabelled  ·  %5 disagree with the AI  ·  %6 outside its domain")
                       .arg(items_.size())
                       .arg(counts.images)
                       .arg(left)
                       .arg(counts.unlabelled)
                       .arg(counts.disagreements)
                       .arg(counts.out_of_domain));
  for (std::size_t k = 0; k < items_.size(); ++k) {
    if (qstr(items_[k].sop_instance_uid) == want_selected_) {
      current_ = static_cast<int>(k);
      tree_->setCurrentItem(rows_[k]);
      break;
    }
  }
  building_ = false;
}

const app::WorklistItem* WorklistPanel::current() const {
  if (current_ < 0 || current_ >= static_cast<int>(items_.size())) return nullptr;
  return &items_[static_cast<std::size_t>(current_)];
}

void WorklistPanel::activate_index(int index) {
  if (index < 0 || index >= static_cast<int>(items_.size())) return;
  current_ = index;
  want_selected_ = qstr(items_[static_cast<std::size_t>(index)].sop_instance_uid);
  building_ = true;
  tree_->setCurrentItem(rows_[static_cast<std::size_t>(index)]);
  tree_->scrollToItem(rows_[static_cast<std::size_t>(index)]);
  building_ = false;
  Q_EMIT imageActivated(items_[static_cast<std::size_t>(index)]);
}

bool WorklistPanel::step(int delta) {
  if (items_.empty()) return false;
  const int next = current_ < 0 ? (delta > 0 ? 0 : static_cast<int>(items_.size()) - 1) : current_ + delta;
  if (next < 0 || next >= static_cast<int>(items_.size())) return false;
  activate_index(next);
  return true;
}

bool WorklistPanel::select(const QString& sop_instance_uid) {
  for (std::size_t k = 0; k < items_.size(); ++k) {
    if (qstr(items_[k].sop_instance_uid) == sop_instance_uid) {
      activate_index(static_cast<int>(k));
      return true;
    }
  }
  return false;
}

}  // namespace hilum::ui
