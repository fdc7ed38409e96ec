#include "epoch_chart.hpp"

#include <QChart>
#include <QChartView>
#include <QLineSeries>
#include <QPainter>
#include <QValueAxis>

#include <algorithm>

namespace hilum::ui {

EpochChart EpochChart::create(QWidget* parent, const QString& title, const QString& loss_name, const QString& object_name) {
  EpochChart c;
  c.chart = new QChart;
  c.chart->setTitle(title);
  c.loss = new QLineSeries;
  c.loss->setName(loss_name);
  c.loss->setPointsVisible(true);
  c.chart->addSeries(c.loss);
  c.epochs = new QValueAxis;
  c.epochs->setTitleText(QObject::tr("epoch"));
  c.epochs->setLabelFormat("%d");
  c.epochs->setRange(0, 1);
  c.loss_axis = new QValueAxis;
  c.loss_axis->setTitleText(QObject::tr("loss"));
  c.loss_axis->setRange(0, 1);
  c.chart->addAxis(c.epochs, Qt::AlignBottom);
  c.chart->addAxis(c.loss_axis, Qt::AlignLeft);
  c.loss->attachAxis(c.epochs);
  c.loss->attachAxis(c.loss_axis);
  c.view = new QChartView(c.chart, parent);
  c.view->setObjectName(object_name);
  c.view->setRenderHint(QPainter::Antialiasing);
  return c;
}

void EpochChart::show_loss(const std::map<int, double>& values, int last_epoch) {
  QList<QPointF> points;
  double max_loss = 0.0;
  int max_epoch = std::max(1, last_epoch);
  for (const auto& [e, v] : values) {
    points << QPointF(e, v);
    max_loss = std::max(max_loss, v);
    max_epoch = std::max(max_epoch, e);
  }
  loss->replace(points);
  epochs->setRange(0, max_epoch);
  epochs->setTickCount(std::min(max_epoch, 10) + 1);
  loss_axis->setRange(0, max_loss > 0 ? max_loss * 1.1 : 1.0);
}

}  // namespace hilum::ui
