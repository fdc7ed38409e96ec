// Hilum ui: the labelling panel. One row per finding with present / absent / uncertain cells
// (click, or the keys P / A / U on the selected row), its region, the comment on the selected
// finding, "accept AI suggestion", undo/redo and the line that says what was saved. Above the table,
// a line says that blinded reading hides the other readers' labels, or lists them once visible.
#pragma once

#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QTableWidget>
#include <QToolButton>
#include <QWidget>

#include "labeller.hpp"

namespace hilum::ui {

class LabelPanel : public QWidget {
  Q_OBJECT
 public:
  enum Column { kFinding = 0, kPresent, kAbsent, kUncertain, kRegion, kColumns };
  LabelPanel(Labeller* labeller, QWidget* parent = nullptr);

  [[nodiscard]] QString selected_finding() const;
  void select_finding(const QString& finding);
  void select_next(int delta);
  void refresh();            // from the labeller's states
  void rebuild_rows();       // after the vocabulary changed
  void commit_comment();     // writes the comment box if it changed
  void set_enabled_for_image(bool enabled);
  QTableWidget* table() const { return table_; }

 Q_SIGNALS:
  void selectedFindingChanged(const QString& finding);
  void toolRequested(int tool);  // ImageView::Tool
  void acceptAiRequested();

 protected:
  bool eventFilter(QObject* watched, QEvent* event) override;

 private:
  void load_comment();
  void update_accept();  // enabled for an image with an AI suggestion to accept

  Labeller* labeller_;
  QTableWidget* table_ = nullptr;
  QPlainTextEdit* comment_ = nullptr;
  QLabel* comment_label_ = nullptr;
  QLabel* saved_ = nullptr;
  QLabel* readers_ = nullptr;  // blinded reading, or the other readers' labels on this image
  QPushButton* accept_ = nullptr;
  QPushButton* submit_ = nullptr;
  QToolButton* undo_ = nullptr;
  QToolButton* redo_ = nullptr;
  QString comment_finding_;
  bool enabled_for_image_ = false;
};

}  // namespace hilum::ui
