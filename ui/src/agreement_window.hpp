// Hilum ui: Labels > Reader agreement: what app::agreement computes for `hilum-cli agreement`, per
// finding: Cohen's kappa per reader pair, Fleiss' kappa, Krippendorff's alpha, each reader against
// the consensus and against the AI, with their 95% intervals (patient bootstrap), as a table and a
// forest plot. Thin: the statistics are app/'s; this window only lays them out.
#pragma once

#include <QDialog>
#include <QString>
#include <QWidget>

#include <optional>
#include <vector>

#include "hilum/app/agreement.hpp"
#include "session.hpp"

class QComboBox;
class QLabel;
class QPushButton;
class QTableWidget;

namespace hilum::ui {

// One line of the forest plot: a statistic with its interval (undefined values are drawn as such).
struct ForestRow {
  QString label;
  int kind = 0;  // 0 Cohen's kappa (pair), 1 Fleiss' kappa, 2 Krippendorff's alpha, 3 vs the other readers' consensus, 4 vs AI
  std::optional<double> value, low, high;
  QString missing;  // shown instead of a value ("too few images (4)"); "" = "undefined"
};

// A forest plot drawn with QPainter: one row per statistic, its point and 95% interval on a shared
// axis from at most -1 to 1, with a dashed line at 0 (chance agreement).
class ForestPlot : public QWidget {
  Q_OBJECT
 public:
  explicit ForestPlot(QWidget* parent = nullptr);
  void set_rows(std::vector<ForestRow> rows);
  [[nodiscard]] const std::vector<ForestRow>& rows() const { return rows_; }
  // The axis' range drawn (tests).
  [[nodiscard]] std::pair<double, double> axis_range() const;
  [[nodiscard]] QSize sizeHint() const override;
  [[nodiscard]] QSize minimumSizeHint() const override;

 protected:
  void paintEvent(QPaintEvent* event) override;

 private:
  std::vector<ForestRow> rows_;
};

class AgreementWindow : public QDialog {
  Q_OBJECT
 public:
  AgreementWindow(Session* session, QWidget* parent = nullptr);
  // Recomputes on a worker thread (its own catalog connection); emits computed() when shown.
  void refresh();
  // Shows the finding `name` (as app names it) when the report has it.
  void select_finding(const QString& name);
  [[nodiscard]] bool computing() const { return computing_; }
  [[nodiscard]] const app::AgreementOptions& options() const { return options_; }

 Q_SIGNALS:
  void computed();

 private:
  void show_finding(int index);

  Session* session_;
  app::AgreementOptions options_;
  std::optional<app::AgreementReport> report_;
  int generation_ = 0;
  bool computing_ = false;
  QLabel* summary_ = nullptr;
  QComboBox* finding_ = nullptr;
  QLabel* finding_summary_ = nullptr;
  QTableWidget* table_ = nullptr;
  ForestPlot* plot_ = nullptr;
  QPushButton* refresh_ = nullptr;
};

}  // namespace hilum::ui
