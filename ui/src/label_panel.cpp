#include "label_panel.hpp"

#include <QHBoxLayout>
#include <QHeaderView>
#include <QKeyEvent>
#include <QTime>
#include <QVBoxLayout>

namespace hilum::ui {
namespace {
const char* const kMark = "●";
}

LabelPanel::LabelPanel(Labeller* labeller, QWidget* parent) : QWidget(parent), labeller_(labeller) {
  setObjectName("labelPanel");
  auto* layout = new QVBoxLayout(this);

  readers_ = new QLabel(this);
  readers_->setObjectName("labelReaders");
  readers_->setWordWrap(true);
  readers_->setVisible(false);
  layout->addWidget(readers_);

  table_ = new QTableWidget(0, kColumns, this);
  table_->setObjectName("labelTable");
  table_->setHorizontalHeaderLabels({tr("Finding"), tr("Present (P)"), tr("Absent (A)"), tr("Uncertain (U)"), tr("Region")});
  table_->horizontalHeader()->setSectionResizeMode(kFinding, QHeaderView::Stretch);
  for (int c = kPresent; c < kColumns; ++c) table_->horizontalHeader()->setSectionResizeMode(c, QHeaderView::ResizeToContents);
  table_->verticalHeader()->setVisible(false);
  table_->verticalHeader()->setDefaultSectionSize(20);
  table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  table_->setSelectionMode(QAbstractItemView::SingleSelection);
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->setFocusPolicy(Qt::NoFocus);  // keys go to the window's shortcuts
  layout->addWidget(table_, 1);

  auto* tools = new QHBoxLayout;
  accept_ = new QPushButton(tr("Accept AI suggestion (Y)"), this);
  accept_->setObjectName("acceptAiButton");
  accept_->setFocusPolicy(Qt::NoFocus);
  auto* box = new QToolButton(this);
  box->setObjectName("rectangleToolButton");
  box->setText(tr("▭ Box (B)"));
  box->setFocusPolicy(Qt::NoFocus);
  auto* poly = new QToolButton(this);
  poly->setObjectName("polygonToolButton");
  poly->setText(tr("⬠ Polygon (G)"));
  poly->setFocusPolicy(Qt::NoFocus);
  undo_ = new QToolButton(this);
  undo_->setObjectName("undoButton");
  undo_->setText(tr("Undo"));
  undo_->setFocusPolicy(Qt::NoFocus);
  redo_ = new QToolButton(this);
  redo_->setObjectName("redoButton");
  redo_->setText(tr("Redo"));
  redo_->setFocusPolicy(Qt::NoFocus);
  tools->addWidget(accept_);
  submit_ = new QPushButton(tr("Submit my reading"), this);
  submit_->setObjectName("submitReadingButton");
  submit_->setFocusPolicy(Qt::NoFocus);
  submit_->setToolTip(tr("Blinded reading: other readers' labels (and, if so configured, the AI's findings) are shown once you submit"));
  tools->addWidget(submit_);
  tools->addWidget(box);
  tools->addWidget(poly);
  tools->addStretch(1);
  tools->addWidget(undo_);
  tools->addWidget(redo_);
  layout->addLayout(tools);

  comment_label_ = new QLabel(tr("Comment"), this);
  layout->addWidget(comment_label_);
  comment_ = new QPlainTextEdit(this);
  comment_->setObjectName("labelComment");
  comment_->setPlaceholderText(tr("Comment on the selected finding (saved when you leave the box, or Ctrl+Enter)"));
  comment_->setMaximumHeight(70);
  comment_->installEventFilter(this);
  layout->addWidget(comment_);

  saved_ = new QLabel(this);
  saved_->setObjectName("labelSaved");
  saved_->setWordWrap(true);
  layout->addWidget(saved_);

  connect(table_, &QTableWidget::cellClicked, this, [this](int row, int column) {
    const QString finding = table_->item(row, kFinding)->text();
    const LabelState s = labeller_->state(finding);
    auto set = [&](app::LabelValue v) { labeller_->set_value(finding, s.value == v ? app::LabelValue::Cleared : v); };
    if (column == kPresent) set(app::LabelValue::Present);
    if (column == kAbsent) set(app::LabelValue::Absent);
    if (column == kUncertain) set(app::LabelValue::Uncertain);
    if (column == kRegion && s.region) labeller_->clear_region(finding);
  });
  connect(table_, &QTableWidget::currentCellChanged, this, [this](int, int, int, int) {
    commit_comment();
    load_comment();
    Q_EMIT selectedFindingChanged(selected_finding());
  });
  connect(accept_, &QPushButton::clicked, this, &LabelPanel::acceptAiRequested);
  connect(submit_, &QPushButton::clicked, this, [this] { labeller_->submit(); });
  connect(box, &QToolButton::clicked, this, [this] { Q_EMIT toolRequested(2); });
  connect(poly, &QToolButton::clicked, this, [this] { Q_EMIT toolRequested(3); });
  connect(undo_, &QToolButton::clicked, labeller_->undo_stack(), &QUndoStack::undo);
  connect(redo_, &QToolButton::clicked, labeller_->undo_stack(), &QUndoStack::redo);
  connect(labeller_->undo_stack(), &QUndoStack::canUndoChanged, undo_, &QToolButton::setEnabled);
  connect(labeller_->undo_stack(), &QUndoStack::canRedoChanged, redo_, &QToolButton::setEnabled);
  connect(labeller_, &Labeller::changed, this, &LabelPanel::refresh);
  connect(labeller_, &Labeller::suggestionChanged, this, &LabelPanel::update_accept);
  connect(labeller_, &Labeller::kept, this, [this](const QString& what, const QString&) {
    saved_->setStyleSheet("color: #b35900;");
    saved_->setText(tr("Not yet saved %1 — %2 (kept; saved when the catalog can be reached)").arg(QTime::currentTime().toString("HH:mm:ss"), what));
  });
  connect(labeller_, &Labeller::saved, this, [this](const QString& what) {
    saved_->setStyleSheet({});
    saved_->setText(tr("Saved %1 — %2").arg(QTime::currentTime().toString("HH:mm:ss"), what));
  });
  connect(labeller_, &Labeller::failed, this, [this](const QString& why) {
    saved_->setStyleSheet("color: #c0392b;");
    saved_->setText(tr("Not saved: %1").arg(why));
  });
  undo_->setEnabled(false);
  redo_->setEnabled(false);
  rebuild_rows();
}

void LabelPanel::rebuild_rows() {
  const QString keep = selected_finding();
  const QStringList findings = labeller_->findings();
  table_->setRowCount(static_cast<int>(findings.size()));
  for (int r = 0; r < findings.size(); ++r) {
    table_->setItem(r, kFinding, new QTableWidgetItem(findings[r]));
    for (int c = kPresent; c < kColumns; ++c) {
      auto* item = new QTableWidgetItem;
      item->setTextAlignment(Qt::AlignCenter);
      table_->setItem(r, c, item);
    }
  }
  if (!keep.isEmpty()) select_finding(keep);
  else if (!findings.isEmpty()) table_->setCurrentCell(0, kFinding);
  refresh();
}

void LabelPanel::refresh() {
  const QColor present(200, 60, 45), absent(40, 140, 70), uncertain(210, 150, 20);
  for (int r = 0; r < table_->rowCount(); ++r) {
    const QString finding = table_->item(r, kFinding)->text();
    const LabelState s = labeller_->state(finding);
    auto mark = [&](int column, app::LabelValue v, const QColor& colour) {
      auto* item = table_->item(r, column);
      item->setText(s.value == v ? kMark : "");
      item->setForeground(colour);
    };
    mark(kPresent, app::LabelValue::Present, present);
    mark(kAbsent, app::LabelValue::Absent, absent);
    mark(kUncertain, app::LabelValue::Uncertain, uncertain);
    table_->item(r, kRegion)->setText(s.region ? (s.region->shape == app::Region::Shape::Rectangle ? "▭" : "⬠") : "");
    table_->item(r, kRegion)->setToolTip(s.region ? tr("Click to remove the region") : QString());
    QFont f = table_->item(r, kFinding)->font();
    f.setBold(s.value != app::LabelValue::Cleared);
    table_->item(r, kFinding)->setFont(f);
    QString tip = s.author.isEmpty() ? QString()
                                     : tr("by %1, model on screen: %2").arg(s.author, s.model_version.isEmpty() ? tr("none") : s.model_version);
    const QStringList others = labeller_->others(finding);
    if (labeller_->blinded()) tip += (tip.isEmpty() ? "" : "\n") + tr("Other readers' labels are hidden until you submit your reading");
    else if (!others.isEmpty()) tip += (tip.isEmpty() ? "" : "\n") + tr("Other readers: %1").arg(others.join(", "));
    table_->item(r, kFinding)->setToolTip(tip);
  }
  // Visible, not only in tooltips: whether others' labels are withheld, else what the others said.
  QStringList said;
  for (const QString& finding : labeller_->findings()) {
    const QStringList others = labeller_->others(finding);
    if (!others.isEmpty()) said << tr("%1 (%2)").arg(finding, others.join(", "));
  }
  if (labeller_->image().isEmpty()) {
    readers_->setVisible(false);
  } else if (labeller_->blinded()) {
    readers_->setStyleSheet("color: #9a6700;");
    readers_->setText(tr("Blinded reading: other readers' labels are hidden until you submit your reading."));
    readers_->setVisible(true);
  } else if (!said.isEmpty()) {
    readers_->setStyleSheet({});
    readers_->setText(tr("Other readers: %1").arg(said.join(QStringLiteral("; "))));
    readers_->setVisible(true);
  } else {
    readers_->setVisible(false);
  }
  submit_->setEnabled(!labeller_->image().isEmpty() && !labeller_->submitted());
  submit_->setText(labeller_->submitted() ? tr("Reading submitted") : tr("Submit my reading"));
  load_comment();
}

QString LabelPanel::selected_finding() const {
  const int r = table_->currentRow();
  if (r < 0 || r >= table_->rowCount() || table_->item(r, kFinding) == nullptr) return {};
  return table_->item(r, kFinding)->text();
}

void LabelPanel::select_finding(const QString& finding) {
  for (int r = 0; r < table_->rowCount(); ++r) {
    if (table_->item(r, kFinding)->text() == finding) {
      table_->setCurrentCell(r, kFinding);
      table_->scrollToItem(table_->item(r, kFinding));
      return;
    }
  }
}

void LabelPanel::select_next(int delta) {
  if (table_->rowCount() == 0) return;
  const int r = std::clamp(table_->currentRow() + delta, 0, table_->rowCount() - 1);
  table_->setCurrentCell(r, kFinding);
}

void LabelPanel::load_comment() {
  comment_finding_ = selected_finding();
  const LabelState s = labeller_->state(comment_finding_);
  comment_label_->setText(comment_finding_.isEmpty() ? tr("Comment") : tr("Comment on %1").arg(comment_finding_));
  if (!comment_->hasFocus()) comment_->setPlainText(s.comment);
}

void LabelPanel::commit_comment() {
  if (comment_finding_.isEmpty()) return;
  const QString text = comment_->toPlainText().trimmed();
  if (text != labeller_->state(comment_finding_).comment) labeller_->set_comment(comment_finding_, text);
}

void LabelPanel::set_enabled_for_image(bool enabled) {
  table_->setEnabled(enabled);
  comment_->setEnabled(enabled);
  enabled_for_image_ = enabled;
  update_accept();
}

void LabelPanel::update_accept() {
  const bool can = enabled_for_image_ && labeller_->has_suggestion();
  accept_->setEnabled(can);
  accept_->setToolTip(can ? tr("Label each finding the model knows present or absent by its threshold (Y)")
                          : tr("No AI suggestion for this image: withheld until you submit your reading, still computing, no model, "
                               "or outside what the model knows"));
}

bool LabelPanel::eventFilter(QObject* watched, QEvent* event) {
  if (watched == comment_) {
    if (event->type() == QEvent::FocusOut) commit_comment();
    if (event->type() == QEvent::KeyPress) {
      auto* key = static_cast<QKeyEvent*>(event);
      if ((key->key() == Qt::Key_Return || key->key() == Qt::Key_Enter) && (key->modifiers() & Qt::ControlModifier)) {
        commit_comment();
        comment_->clearFocus();
        return true;
      }
      if (key->key() == Qt::Key_Escape) {
        comment_->clearFocus();
        return true;
      }
    }
  }
  return QWidget::eventFilter(watched, event);
}

}  // namespace hilum::ui
