// Hilum ui: the worklist / study browser: patients > studies > series > images with thumbnails,
// filters (unlabelled, not labelled by me, labelled by me, label and model disagree, a finding),
// sort (patient, newest study, model uncertainty high first, recently imported), search by patient
// or accession, and the counts of what is left. Queries run on a worker thread (app::worklist).
#pragma once

#include <QCheckBox>
#include <QComboBox>
#include <QImage>
#include <QLabel>
#include <QLineEdit>
#include <QTimer>
#include <QTreeWidget>
#include <QWidget>

#include <vector>

#include "hilum/app/worklist.hpp"

namespace hilum::ui {

class Session;

class WorklistPanel : public QWidget {
  Q_OBJECT
 public:
  explicit WorklistPanel(Session* session, QWidget* parent = nullptr);

  // Runs the query again (keeps the current image selected when it is still listed).
  void refresh();
  void reload_findings();
  // Moves through the filtered list in the order shown; false at either end.
  bool step(int delta);
  bool select(const QString& sop_instance_uid);
  [[nodiscard]] const std::vector<app::WorklistItem>& items() const { return items_; }
  [[nodiscard]] int current_index() const { return current_; }
  [[nodiscard]] const app::WorklistItem* current() const;
  [[nodiscard]] bool busy() const { return busy_; }
  QTreeWidget* tree() const { return tree_; }
  QComboBox* show_box() const { return show_; }
  QComboBox* sort_box() const { return sort_; }
  QLineEdit* search_box() const { return search_; }
  QCheckBox* hide_out_of_domain_box() const { return hide_out_of_domain_; }

 Q_SIGNALS:
  void imageActivated(const hilum::app::WorklistItem& item);
  void refreshed();

 private:
  void build(std::vector<app::WorklistItem> items, std::vector<QImage> thumbs, const app::WorklistCounts& counts);
  void activate_index(int index);
  [[nodiscard]] app::WorklistQuery query() const;

  Session* session_;
  QComboBox* show_ = nullptr;
  QComboBox* sort_ = nullptr;
  QComboBox* finding_ = nullptr;
  QCheckBox* hide_out_of_domain_ = nullptr;
  QLineEdit* search_ = nullptr;
  QLabel* counts_ = nullptr;
  QTreeWidget* tree_ = nullptr;
  QTimer search_timer_;
  std::vector<app::WorklistItem> items_;  // in the order shown
  std::vector<QTreeWidgetItem*> rows_;    // items_[k]'s row
  int current_ = -1;
  QString want_selected_;
  bool busy_ = false;
  bool again_ = false;
  bool building_ = false;
};

}  // namespace hilum::ui
