// Hilum GUI: the per-epoch loss chart of a training job (fine-tuning, pre-training): a loss series
// on an epoch axis, refitted as epochs come in; a caller may add series of its own to `chart`.
#pragma once

#include <QList>
#include <QPointF>
#include <QString>

#include <map>

class QChart;
class QChartView;
class QLineSeries;
class QValueAxis;
class QWidget;

namespace hilum::ui {

struct EpochChart {
  QChart* chart = nullptr;
  QChartView* view = nullptr;  // owned by `parent`; add it to a layout
  QLineSeries* loss = nullptr;
  QValueAxis* epochs = nullptr;
  QValueAxis* loss_axis = nullptr;

  static EpochChart create(QWidget* parent, const QString& title, const QString& loss_name, const QString& object_name);
  // Replaces the loss curve by `loss` (epoch -> loss) and fits the axes to it and to `last_epoch`
  // (another series' epochs).
  void show_loss(const std::map<int, double>& loss, int last_epoch = 1);
};

}  // namespace hilum::ui
