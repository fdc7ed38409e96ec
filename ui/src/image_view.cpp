#include "image_view.hpp"

#include <QKeyEvent>
#include <QMouseEvent>
#include <QPainter>
#include <QPainterPath>
#include <QWheelEvent>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "async.hpp"
#include "hilum/dicom/reader.hpp"

namespace hilum::ui {
namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

QImage to_qimage(const std::vector<std::uint8_t>& pixels, int width, int height) {
  QImage out(width, height, QImage::Format_Grayscale8);
  if (out.isNull()) return out;
  const auto w = static_cast<std::size_t>(width);
  for (int y = 0; y < height; ++y) std::memcpy(out.scanLine(y), pixels.data() + static_cast<std::size_t>(y) * w, w);
  return out;
}

// Whether two renderings of the same pixels look the same (same window and invert).
bool same_look(const dicom::DisplayOptions& a, const dicom::DisplayOptions& b) {
  if (a.invert != b.invert || a.voi.kind != b.voi.kind || a.voi.index != b.voi.index) return false;
  if (a.voi.kind != dicom::VoiChoice::Kind::Custom) return true;
  return a.voi.window.center == b.voi.window.center && a.voi.window.width == b.voi.window.width &&
         a.voi.window.function == b.voi.window.function;
}

QString units_of(const dicom::Radiograph& image) {
  if (image.modality_lut && !image.modality_lut->lut_type.empty()) return QString::fromStdString(image.modality_lut->lut_type);
  return QString::fromStdString(image.rescale_type);
}

}  // namespace

DecodedImage decode_image(const QString& path, int min_side) {
  DecodedImage out;
  const auto t0 = std::chrono::steady_clock::now();
  dicom::ReadOptions options;
  options.min_side = min_side;
  auto image = dicom::read_radiograph(path.toStdString(), options);
  if (!image) {
    out.error = QString::fromStdString(image.error().message);
    return out;
  }
  out.decode_ms = ms_since(t0);
  const auto t1 = std::chrono::steady_clock::now();
  auto shared = std::make_shared<const dicom::Radiograph>(std::move(image.value()));
  auto rendering = render_image(*shared, {});
  if (!rendering.error.isEmpty()) {
    out.error = rendering.error;
    return out;
  }
  out.image = std::move(shared);
  out.rendered = std::move(rendering.rendered);
  out.voi = std::move(rendering.voi);
  out.render_ms = ms_since(t1);
  return out;
}

Rendering render_image(const dicom::Radiograph& image, const dicom::DisplayOptions& options) {
  Rendering out;
  auto voi = dicom::resolve_voi(image, options.voi);
  if (!voi) {
    out.error = QString::fromStdString(voi.error().message);
    return out;
  }
  // Render with the resolved window so that an automatic window is computed only once.
  dicom::DisplayOptions resolved = options;
  if (!voi->is_lut) resolved.voi = dicom::VoiChoice{dicom::VoiChoice::Kind::Custom, 0, voi->window};
  auto pixels = dicom::render_8bit(image, resolved);
  if (!pixels) {
    out.error = QString::fromStdString(pixels.error().message);
    return out;
  }
  out.rendered = to_qimage(pixels.value(), image.columns, image.rows);
  out.voi = std::move(voi.value());
  out.reduction = image.reduction;
  return out;
}

ImageView::ImageView(QWidget* parent) : QWidget(parent) {
  setObjectName("imageView");
  setMouseTracking(true);
  setFocusPolicy(Qt::StrongFocus);
  setMinimumSize(320, 320);
  setAttribute(Qt::WA_OpaquePaintEvent);
  smooth_timer_.setSingleShot(true);
  smooth_timer_.setInterval(120);
  connect(&smooth_timer_, &QTimer::timeout, this, [this] {
    if (rendered_.isNull() || zoom_ >= 1.0 || smooth_held_) return;
    const QImage source = rendered_;
    const double z = zoom_;
    const qint64 key = render_key_;
    // The film's size on screen (the rendering may be a reduced decode of it).
    const QSize size(std::max(1, static_cast<int>(std::lround(image_columns() * z))),
                     std::max(1, static_cast<int>(std::lround(image_rows() * z))));
    run_async(
        this, display_pool(), [source, size] { return source.scaled(size, Qt::IgnoreAspectRatio, Qt::SmoothTransformation); },
        [this, z, key](QImage scaled) {
          if (key != render_key_ || std::abs(z - zoom_) > 1e-12) return;  // the view moved on
          smooth_ = std::move(scaled);
          smooth_zoom_ = z;
          smooth_key_ = smooth_shown_key_ = key;
          update();
        });
  });
}

void ImageView::set_image(const DecodedImage& decoded) {
  ++generation_;
  render_busy_ = render_pending_ = false;
  image_ = decoded.image;
  rendered_ = decoded.rendered;
  rendered_reduction_ = image_ ? image_->reduction : 0;
  rendered_options_ = {};
  voi_ = decoded.voi;
  choice_ = {};
  invert_ = false;
  message_ = decoded.error;
  ruler_.reset();
  rubber_.reset();
  polygon_.clear();
  heatmap_ = {};
  regions_.clear();
  smooth_ = {};
  ++render_key_;
  fitted_ = true;
  painted_ = rendered_.isNull();
  fit();
  emit_window();
  Q_EMIT renderingChanged();
}

void ImageView::set_full_image(const DecodedImage& decoded) {
  if (!image_ || !decoded.image || !decoded.error.isEmpty()) return;
  image_ = decoded.image;
  const dicom::DisplayOptions shown{choice_, invert_};
  if (!render_busy_ && !decoded.rendered.isNull() && same_look(shown, dicom::DisplayOptions{}) && same_look(rendered_options_, shown)) {
    show_rendering(decoded.rendered, image_->reduction, shown, decoded.voi);  // the default window, as the decode worker rendered it
  } else {
    request_render();  // the user's window on the full pixels; the reduced rendering stays until then
  }
}

void ImageView::show_rendering(QImage rendered, int reduction, const dicom::DisplayOptions& options, dicom::ResolvedVoi voi) {
  // When the new rendering looks as the one it replaces (a sharper decode, the same window), the
  // old one's smooth copy stands in until its own is made: no change of look meanwhile.
  const bool smooth_current = smooth_shown_key_ == render_key_ && same_look(options, rendered_options_);
  rendered_ = std::move(rendered);
  rendered_reduction_ = reduction;
  rendered_options_ = options;
  voi_ = std::move(voi);
  ++render_key_;
  if (smooth_current) smooth_shown_key_ = render_key_;
  schedule_smooth();
  update();
  emit_window();
  Q_EMIT renderingChanged();
}

int ImageView::image_columns() const {
  if (!image_) return 0;
  return image_->full_columns > 0 ? image_->full_columns : image_->columns;
}

int ImageView::image_rows() const {
  if (!image_) return 0;
  return image_->full_rows > 0 ? image_->full_rows : image_->rows;
}

void ImageView::clear(const QString& message) {
  ++generation_;
  image_.reset();
  rendered_ = {};
  heatmap_ = {};
  regions_.clear();
  smooth_ = {};
  message_ = message;
  update();
}

int ImageView::preset_count() const {
  if (!image_) return 0;
  return static_cast<int>(image_->windows.size() + image_->voi_luts.size());
}

QString ImageView::window_text() const {
  if (!image_) return {};
  QString t;
  if (voi_.is_lut) {
    t = QString("VOI LUT %1").arg(voi_.lut_index + 1);
  } else {
    t = QString("W %1  L %2").arg(voi_.window.width, 0, 'f', 0).arg(voi_.window.center, 0, 'f', 0);
  }
  t += QString("  (%1)").arg(QString::fromStdString(voi_.source));
  if (invert_) t += "  inverted";
  return t;
}

void ImageView::emit_window() { Q_EMIT windowChanged(window_text()); }

// ---- View transform ------------------------------------------------------------------------

QPointF ImageView::to_image(QPointF w) const { return (w - origin_) / zoom_; }
QPointF ImageView::to_widget(QPointF i) const { return i * zoom_ + origin_; }

QRectF ImageView::image_rect_in_widget() const {
  if (rendered_.isNull()) return {};
  return {origin_, QSizeF(image_columns() * zoom_, image_rows() * zoom_)};
}

QPointF ImageView::clamp_to_image(QPointF p) const {
  if (!image_) return p;
  return {std::clamp(p.x(), 0.0, static_cast<double>(image_columns())), std::clamp(p.y(), 0.0, static_cast<double>(image_rows()))};
}

void ImageView::fit() {
  fitted_ = true;
  if (image_ && image_columns() > 0 && image_rows() > 0) {
    const double columns = image_columns(), rows = image_rows();
    zoom_ = std::min(width() / columns, height() / rows);
    origin_ = QPointF((width() - columns * zoom_) / 2.0, (height() - rows * zoom_) / 2.0);
    Q_EMIT zoomChanged(zoom_);
  }
  schedule_smooth();
  update();
}

void ImageView::actual_size() {
  if (!image_) return;
  zoom_by(1.0 / zoom_, QPointF(width() / 2.0, height() / 2.0));
}

void ImageView::zoom_by(double factor, QPointF anchor) {
  if (!image_) return;
  const double z = std::clamp(zoom_ * factor, 0.02, 32.0);
  const QPointF at = to_image(anchor);
  zoom_ = z;
  origin_ = anchor - at * zoom_;
  fitted_ = false;
  Q_EMIT zoomChanged(zoom_);
  schedule_smooth();
  update();
}

void ImageView::hold_smooth(bool hold) {
  smooth_held_ = hold;
  if (!hold) schedule_smooth();
}

void ImageView::schedule_smooth() {
  if (smooth_held_) return;
  if (zoom_ < 1.0 && !rendered_.isNull() && !(smooth_key_ == render_key_ && std::abs(smooth_zoom_ - zoom_) < 1e-12)) {
    smooth_timer_.start();
  }
}

// ---- Window / level ----------------------------------------------------------------------

void ImageView::set_preset(int index) {
  if (!image_ || index < 0 || index >= preset_count()) return;
  const int windows = static_cast<int>(image_->windows.size());
  choice_ = index < windows ? dicom::VoiChoice::preset(index) : dicom::VoiChoice::lut(index - windows);
  request_render();
}

void ImageView::set_automatic_window() {
  if (!image_) return;
  choice_ = dicom::VoiChoice::automatic();
  request_render();
}

void ImageView::set_window(double center, double width) {
  if (!image_) return;
  choice_ = dicom::VoiChoice::custom(center, std::max(1.0, width));
  request_render();
}

void ImageView::toggle_invert() {
  if (!image_) return;
  invert_ = !invert_;
  request_render();
}

void ImageView::reset() {
  if (!image_) return;
  choice_ = {};
  invert_ = false;
  ruler_.reset();
  cancel_drawing();
  fit();
  request_render();
}

void ImageView::request_render() {
  if (render_busy_) {
    render_pending_ = true;
    return;
  }
  start_render();
}

void ImageView::start_render() {
  render_busy_ = true;
  render_pending_ = false;
  const int generation = generation_;
  dicom::DisplayOptions options;
  options.voi = choice_;
  options.invert = invert_;
  run_async(
      this, display_pool(), [image = image_, options] { return render_image(*image, options); },
      [this, generation, options](Rendering r) {
        if (generation != generation_) return;  // another image was opened meanwhile
        render_busy_ = false;
        // A rendering of the reduced decode that finished after the full decode arrived is shown
        // (it has the user's latest window) and followed by the full one.
        const bool sharper_later = image_ && r.reduction != image_->reduction;
        if (r.error.isEmpty()) {
          show_rendering(std::move(r.rendered), r.reduction, options, std::move(r.voi));
        } else {
          Q_EMIT windowChanged(r.error);
        }
        if (render_pending_ || sharper_later) start_render();
      });
}

// ---- Overlays ----------------------------------------------------------------------------

void ImageView::set_heatmap(const QImage& overlay) {
  heatmap_ = overlay;
  heatmap_visible_ = true;
  update();
}
void ImageView::clear_heatmap() {
  heatmap_ = {};
  update();
}
void ImageView::set_heatmap_opacity(double opacity) {
  heatmap_opacity_ = std::clamp(opacity, 0.0, 1.0);
  update();
}
void ImageView::set_heatmap_visible(bool visible) {
  heatmap_visible_ = visible;
  update();
}
void ImageView::set_regions(std::vector<ShownRegion> regions) {
  regions_ = std::move(regions);
  update();
}

// ---- Tools -------------------------------------------------------------------------------

void ImageView::set_tool(Tool tool) {
  cancel_drawing();
  tool_ = tool;
  setCursor(tool == Tool::Pan ? Qt::OpenHandCursor : Qt::CrossCursor);
  Q_EMIT toolChanged(static_cast<int>(tool));
  update();
}

void ImageView::cancel_drawing() {
  rubber_.reset();
  polygon_.clear();
  if (drag_ == Drag::Rectangle || drag_ == Drag::Ruler) drag_ = Drag::None;
  update();
}

QString ImageView::measure_text(QPointF a, QPointF b) const {
  const double dx = b.x() - a.x(), dy = b.y() - a.y();
  if (image_ && image_->meta.pixel_spacing) {
    const auto& ps = *image_->meta.pixel_spacing;
    const double mm = std::hypot(dx * ps.column_mm, dy * ps.row_mm);
    return QString("%1 mm").arg(mm, 0, 'f', 1);
  }
  return QString("%1 px (no pixel spacing)").arg(std::hypot(dx, dy), 0, 'f', 1);
}

// ---- Painting ----------------------------------------------------------------------------

void ImageView::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.fillRect(rect(), Qt::black);
  if (rendered_.isNull()) {
    p.setPen(QColor(200, 200, 200));
    p.drawText(rect().adjusted(20, 20, -20, -20), Qt::AlignCenter | Qt::TextWordWrap,
               message_.isEmpty() ? tr("Open an image from the worklist") : message_);
    return;
  }
  const QRectF target = image_rect_in_widget();
  if (zoom_ < 1.0 && smooth_shown_key_ == render_key_ && std::abs(smooth_zoom_ - zoom_) < 1e-12 && !smooth_.isNull()) {
    p.drawImage(target.topLeft(), smooth_);
  } else {
    p.setRenderHint(QPainter::SmoothPixmapTransform, zoom_ < 1.0);
    // Only the visible part of the source is scaled; a reduced rendering covers the film's
    // full-size coordinates at rendered_scale() of them per pixel.
    const QRectF visible = QRectF(rect()).intersected(target);
    const double scale = rendered_scale();
    const QRectF source(to_image(visible.topLeft()) / scale, to_image(visible.bottomRight()) / scale);
    p.drawImage(visible, rendered_, source);
  }
  if (!heatmap_.isNull() && heatmap_visible_ && heatmap_opacity_ > 0.0) {
    p.setOpacity(heatmap_opacity_);
    p.setRenderHint(QPainter::SmoothPixmapTransform, true);
    p.drawImage(target, heatmap_);
    p.setOpacity(1.0);
  }
  p.setRenderHint(QPainter::Antialiasing, true);
  QFont small = font();
  small.setPointSizeF(small.pointSizeF() * 0.95);
  p.setFont(small);
  for (const auto& r : regions_) {
    const QColor colour = r.selected ? QColor(255, 210, 0) : QColor(0, 200, 255);
    p.setPen(QPen(colour, r.selected ? 2.5 : 1.5));
    p.setBrush(Qt::NoBrush);
    QPointF label_at;
    if (r.region.shape == app::Region::Shape::Rectangle) {
      const QRectF box(to_widget(QPointF(r.region.x, r.region.y)), to_widget(QPointF(r.region.x + r.region.w, r.region.y + r.region.h)));
      p.drawRect(box);
      label_at = box.topLeft();
    } else {
      QPolygonF poly;
      for (const auto& [x, y] : r.region.points) poly << to_widget(QPointF(x, y));
      p.drawPolygon(poly);
      label_at = poly.boundingRect().topLeft();
    }
    p.drawText(label_at + QPointF(2, -4), r.finding);
  }
  const QColor tool_colour(120, 255, 120);
  p.setPen(QPen(tool_colour, 1.5, Qt::DashLine));
  if (rubber_) p.drawRect(QRectF(to_widget(rubber_->topLeft()), to_widget(rubber_->bottomRight())));
  if (!polygon_.isEmpty()) {
    QPolygonF poly;
    for (const auto& pt : polygon_) poly << to_widget(pt);
    poly << hover_;
    p.drawPolyline(poly);
  }
  if (ruler_) {
    const QPointF a = to_widget(ruler_->first), b = to_widget(ruler_->second);
    p.setPen(QPen(QColor(255, 255, 0), 1.5));
    p.drawLine(a, b);
    p.drawEllipse(a, 3, 3);
    p.drawEllipse(b, 3, 3);
    const QString text = measure_text(ruler_->first, ruler_->second);
    // Beside the end point, kept inside the widget.
    const int text_w = p.fontMetrics().horizontalAdvance(text) + 4;
    const QPointF at(std::clamp(b.x() + 8.0, 4.0, std::max(4.0, width() - text_w - 4.0)), std::clamp(b.y() - 8.0, 16.0, height() - 24.0));
    p.setPen(Qt::black);
    p.drawText(at + QPointF(1, 1), text);
    p.setPen(QColor(255, 255, 0));
    p.drawText(at, text);
  }
  if (!painted_) {
    painted_ = true;
    Q_EMIT firstPaint();
  }
  // Corner overlay: window and zoom.
  p.setPen(QColor(230, 230, 230));
  p.drawText(rect().adjusted(8, 6, -8, -6), Qt::AlignLeft | Qt::AlignBottom,
             window_text() + QString("    %1%").arg(zoom_ * 100.0, 0, 'f', 0));
}

// ---- Events ------------------------------------------------------------------------------

void ImageView::resizeEvent(QResizeEvent*) {
  if (fitted_) fit();
}

void ImageView::wheelEvent(QWheelEvent* event) {
  if (!image_) return;
  const double steps = event->angleDelta().y() / 120.0;
  if (steps == 0.0) return;
  zoom_by(std::pow(1.2, steps), event->position());
  event->accept();
}

void ImageView::mousePressEvent(QMouseEvent* event) {
  setFocus(Qt::MouseFocusReason);
  if (!image_) return;
  press_pos_ = event->position();
  press_origin_ = origin_;
  const QPointF at = clamp_to_image(to_image(event->position()));
  if (event->button() == Qt::RightButton) {
    drag_ = Drag::Window;
    if (voi_.is_lut) {
      press_center_ = (image_->min_modality + image_->max_modality) / 2.0;
      press_width_ = std::max(1.0, static_cast<double>(image_->max_modality - image_->min_modality));
    } else {
      press_center_ = voi_.window.center;
      press_width_ = voi_.window.width;
    }
  } else if (event->button() == Qt::MiddleButton || (event->button() == Qt::LeftButton && tool_ == Tool::Pan)) {
    drag_ = Drag::Pan;
    setCursor(Qt::ClosedHandCursor);
  } else if (event->button() == Qt::LeftButton && tool_ == Tool::Ruler) {
    drag_ = Drag::Ruler;
    ruler_ = std::make_pair(at, at);
  } else if (event->button() == Qt::LeftButton && tool_ == Tool::Rectangle) {
    drag_ = Drag::Rectangle;
    rubber_ = QRectF(at, at);
  } else if (event->button() == Qt::LeftButton && tool_ == Tool::Polygon) {
    polygon_ << at;
  }
  update();
}

void ImageView::mouseMoveEvent(QMouseEvent* event) {
  hover_ = event->position();
  update_cursor_info(event->position());
  if (!image_) return;
  const QPointF delta = event->position() - press_pos_;
  switch (drag_) {
    case Drag::None:
      if (!polygon_.isEmpty()) update();
      break;
    case Drag::Pan:
      origin_ = press_origin_ + delta;
      fitted_ = false;
      update();
      break;
    case Drag::Window: {
      // Horizontal: width, vertical: level; a full widget's travel spans the image's value range.
      const double range = std::max(1.0, static_cast<double>(image_->max_modality - image_->min_modality));
      const double per_pixel = range / std::max(200, std::min(width(), height()));
      set_window(press_center_ + delta.y() * per_pixel, press_width_ + delta.x() * per_pixel);
      break;
    }
    case Drag::Ruler:
      ruler_->second = clamp_to_image(to_image(event->position()));
      update();
      break;
    case Drag::Rectangle:
      rubber_->setBottomRight(clamp_to_image(to_image(event->position())));
      update();
      break;
  }
}

void ImageView::mouseReleaseEvent(QMouseEvent* event) {
  if (drag_ == Drag::Pan) setCursor(tool_ == Tool::Pan ? Qt::OpenHandCursor : Qt::CrossCursor);
  if (drag_ == Drag::Rectangle && rubber_) {
    const QRectF r = rubber_->normalized();
    rubber_.reset();
    if (r.width() >= 2.0 && r.height() >= 2.0) {
      app::Region region;
      region.shape = app::Region::Shape::Rectangle;
      region.x = std::round(r.x());
      region.y = std::round(r.y());
      region.w = std::max(1.0, std::min(std::round(r.width()), image_columns() - region.x));
      region.h = std::max(1.0, std::min(std::round(r.height()), image_rows() - region.y));
      Q_EMIT regionDrawn(region);
    }
  }
  drag_ = Drag::None;
  update();
  QWidget::mouseReleaseEvent(event);
}

void ImageView::mouseDoubleClickEvent(QMouseEvent* event) {
  if (tool_ == Tool::Polygon && polygon_.size() >= 3) {
    app::Region region;
    region.shape = app::Region::Shape::Polygon;
    for (const auto& pt : polygon_) region.points.emplace_back(std::round(pt.x()), std::round(pt.y()));
    // A double-click also delivered a press: drop the duplicate last point.
    if (region.points.size() > 3 && region.points.back() == region.points[region.points.size() - 2]) region.points.pop_back();
    polygon_.clear();
    update();
    Q_EMIT regionDrawn(region);
    return;
  }
  if (event->button() == Qt::LeftButton && tool_ == Tool::Pan) fit();
}

void ImageView::keyPressEvent(QKeyEvent* event) {
  if ((event->key() == Qt::Key_Return || event->key() == Qt::Key_Enter) && tool_ == Tool::Polygon && polygon_.size() >= 3) {
    app::Region region;
    region.shape = app::Region::Shape::Polygon;
    for (const auto& pt : polygon_) region.points.emplace_back(std::round(pt.x()), std::round(pt.y()));
    polygon_.clear();
    update();
    Q_EMIT regionDrawn(region);
    return;
  }
  if (event->key() == Qt::Key_Escape && (!polygon_.isEmpty() || rubber_ || ruler_)) {
    ruler_.reset();
    cancel_drawing();
    return;
  }
  QWidget::keyPressEvent(event);
}

void ImageView::leaveEvent(QEvent*) { Q_EMIT cursorInfo({}); }

void ImageView::update_cursor_info(QPointF widget_pos) {
  if (!image_) return;
  const QPointF at = to_image(widget_pos);
  const int col = static_cast<int>(std::floor(at.x()));
  const int row = static_cast<int>(std::floor(at.y()));
  if (col < 0 || row < 0 || col >= image_columns() || row >= image_rows()) {
    Q_EMIT cursorInfo({});
    return;
  }
  // The decoded pixel that covers it (a reduced decode's pixel covers 2^reduction of the file's).
  const double value = image_->modality_at(std::min(row >> image_->reduction, image_->rows - 1),
                                           std::min(col >> image_->reduction, image_->columns - 1));
  const QString units = units_of(*image_);
  Q_EMIT cursorInfo(QString("x %1  y %2   value %3%4").arg(col).arg(row).arg(value, 0, 'g', 6).arg(units.isEmpty() ? QString() : " " + units));
}

}  // namespace hilum::ui
