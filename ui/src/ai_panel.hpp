// Hilum ui: the AI panel. Which model said what: the active model's name and version, one bar per
// finding with its probability and the model's decision threshold, how long it took; clicking a
// finding asks for its attention map, drawn over the image with an opacity slider and a toggle.
#pragma once

#include <QComboBox>
#include <QMap>
#include <QCheckBox>
#include <QLabel>
#include <QSlider>
#include <QString>
#include <QVBoxLayout>
#include <QWidget>

#include <optional>

#include <string>
#include <utility>
#include <vector>

#include "hilum/app/catalog.hpp"

namespace hilum::ui {

// Per-finding decision thresholds of a model, from its metrics JSON ({"findings": [{"finding": ..,
// "threshold": ..}]} or {"thresholds": {name: value}}); 0.5 for findings it does not list.
QMap<QString, double> model_thresholds(const app::ModelRecord& model);
// "name (version)".
QString model_title(const app::ModelRecord& model);

// One finding's bar: probability, threshold tick, value; clickable.
class FindingBar : public QWidget {
  Q_OBJECT
 public:
  FindingBar(const QString& finding, double probability, double threshold, QWidget* parent = nullptr);
  [[nodiscard]] const QString& finding() const { return finding_; }
  [[nodiscard]] double probability() const { return probability_; }
  [[nodiscard]] double threshold() const { return threshold_; }
  void set_selected(bool selected);
  [[nodiscard]] QSize sizeHint() const override { return {260, 22}; }

 Q_SIGNALS:
  void clicked(const QString& finding);

 protected:
  void paintEvent(QPaintEvent* event) override;
  void mousePressEvent(QMouseEvent* event) override;

 private:
  QString finding_;
  double probability_ = 0.0;
  double threshold_ = 0.5;
  bool selected_ = false;
};

class AiPanel : public QWidget {
  Q_OBJECT
 public:
  enum class Method { Rollout = 0, ClassSpecific = 1 };
  explicit AiPanel(QWidget* parent = nullptr);

  void show_no_model(const QString& why = {});
  // Blinded reading: no findings shown, and why.
  void show_withheld(const QString& why);
  void show_computing(const app::ModelRecord& model);
  // An image outside the model's domain gets no finding bars: the panel says why instead, and
  // probabilities() stays empty so that nothing is offered as a suggestion.
  void show_predictions(const app::ModelRecord& model, const std::vector<std::pair<std::string, double>>& probabilities,
                        const QString& timing, const std::optional<app::DomainCheck>& domain = std::nullopt);
  [[nodiscard]] bool out_of_domain() const { return out_of_domain_; }
  void show_error(const app::ModelRecord& model, const QString& message);
  void clear_for_image();
  void set_heatmap_status(const QString& text);
  void set_selected_finding(const QString& finding);
  [[nodiscard]] QString selected_finding() const { return selected_; }
  [[nodiscard]] Method method() const { return static_cast<Method>(method_->currentIndex()); }
  [[nodiscard]] double opacity() const { return opacity_->value() / 100.0; }
  [[nodiscard]] bool heatmap_shown() const { return show_->isChecked(); }
  void set_heatmap_shown(bool shown) { show_->setChecked(shown); }
  // The probabilities on screen (the ones a label records), by finding.
  [[nodiscard]] const std::vector<std::pair<std::string, double>>& probabilities() const { return probabilities_; }
  [[nodiscard]] const QMap<QString, double>& thresholds() const { return thresholds_; }
  [[nodiscard]] const QString& model_version() const { return version_; }
  [[nodiscard]] FindingBar* bar(const QString& finding) const;

 Q_SIGNALS:
  void findingClicked(const QString& finding);
  void opacityChanged(double opacity);
  void heatmapShownChanged(bool shown);
  void methodChanged();

 protected:
  void resizeEvent(QResizeEvent* event) override;

 private:
  void clear_bars();
  // Keeps the domain message whole: a word-wrapped label squeezed by the splitter above the labels
  // lost its first and last lines (a reason naming a rule and the pixel parts runs to five).
  void fit_domain_text();

  QLabel* model_ = nullptr;
  QLabel* status_ = nullptr;
  QLabel* domain_ = nullptr;
  bool out_of_domain_ = false;
  QWidget* bars_box_ = nullptr;
  QVBoxLayout* bars_ = nullptr;
  QComboBox* method_ = nullptr;
  QSlider* opacity_ = nullptr;
  QCheckBox* show_ = nullptr;
  QLabel* heatmap_status_ = nullptr;
  QString selected_;
  QString version_;
  std::vector<std::pair<std::string, double>> probabilities_;
  QMap<QString, double> thresholds_;
};

}  // namespace hilum::ui
