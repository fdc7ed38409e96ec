// Hilum ui: the radiograph viewer. Shows the DICOM display pipeline's 8-bit rendering at full
// resolution (dicom::render_8bit, on a worker thread), with zoom (wheel, fit, 1:1), pan, window/level
// by right-drag, the file's presets, invert and reset; the modality value under the cursor; a ruler in
// millimetres from Pixel Spacing; an attention-map layer; label regions and the tools to draw them.
// A film may first be shown from a reduced decode (a JPEG 2000 resolution level, JPEG DCT scaling:
// Radiograph::reduction > 0) and then from its full decode (set_full_image). Every coordinate of
// the view (zoom, pan, regions, ruler, cursor) is in the file's full-size pixels either way, so
// the swap moves nothing; only the rendering gains detail.
#pragma once

#include <QImage>
#include <QPointF>
#include <QPolygonF>
#include <QString>
#include <QTimer>
#include <QWidget>

#include <memory>
#include <optional>
#include <vector>

#include "hilum/app/catalog.hpp"
#include "hilum/dicom/display.hpp"
#include "hilum/dicom/radiograph.hpp"

namespace hilum::ui {

// A decoded radiograph and its first rendering, as the decode worker hands it over.
struct DecodedImage {
  std::shared_ptr<const dicom::Radiograph> image;
  QImage rendered;  // Format_Grayscale8, the default VOI
  dicom::ResolvedVoi voi;
  QString error;    // why there is no image
  double decode_ms = 0.0;
  double render_ms = 0.0;
};

// Reads and renders a file (call on a worker thread). min_side > 0: a reduced decode when the codec
// offers one (dicom::ReadOptions::min_side).
DecodedImage decode_image(const QString& path, int min_side = 0);

// Renders an already decoded image with a VOI choice and invert flag (worker thread).
struct Rendering {
  QImage rendered;
  dicom::ResolvedVoi voi;
  QString error;
  int reduction = 0;  // of the radiograph it was rendered from
};
Rendering render_image(const dicom::Radiograph& image, const dicom::DisplayOptions& options);

// A label region shown over the image.
struct ShownRegion {
  QString finding;
  app::Region region;
  bool selected = false;
};

class ImageView : public QWidget {
  Q_OBJECT
 public:
  enum class Tool { Pan, Ruler, Rectangle, Polygon };

  explicit ImageView(QWidget* parent = nullptr);

  // A newly opened film: the view fits it, with its default window.
  void set_image(const DecodedImage& decoded);
  // The same film decoded at a higher resolution (after set_image of a reduced decode): zoom, pan,
  // window/level, invert, overlays and drawing stay; the rendering is redone with the user's window
  // unless the decode's default rendering is what is shown.
  void set_full_image(const DecodedImage& decoded);
  void clear(const QString& message);
  [[nodiscard]] bool has_image() const { return image_ != nullptr; }
  [[nodiscard]] const dicom::Radiograph* radiograph() const { return image_.get(); }
  [[nodiscard]] std::shared_ptr<const dicom::Radiograph> shared_radiograph() const { return image_; }
  [[nodiscard]] const QImage& rendered() const { return rendered_; }
  // How many times the rendering on screen was halved from the file's size (0: full resolution).
  [[nodiscard]] int shown_reduction() const { return rendered_.isNull() ? 0 : rendered_reduction_; }
  // The film's size in the file (the view's coordinates), also while a reduced decode is shown.
  [[nodiscard]] int image_columns() const;
  [[nodiscard]] int image_rows() const;
  [[nodiscard]] const dicom::ResolvedVoi& voi() const { return voi_; }
  [[nodiscard]] double zoom() const { return zoom_; }
  [[nodiscard]] bool inverted() const { return invert_; }
  [[nodiscard]] bool rendering() const { return render_busy_ || render_pending_; }
  // Number of window presets (file windows then VOI LUTs).
  [[nodiscard]] int preset_count() const;
  [[nodiscard]] QString window_text() const;

  // Interaction (also bound to keys by the main window).
  void fit();
  void actual_size();
  void zoom_by(double factor, QPointF anchor);
  void set_preset(int index);  // 0-based over windows then VOI LUTs
  void set_automatic_window();
  void set_window(double center, double width);
  void toggle_invert();
  void reset();
  void set_tool(Tool tool);
  [[nodiscard]] Tool tool() const { return tool_; }
  void cancel_drawing();

  void set_heatmap(const QImage& overlay);  // ARGB32 premultiplied, any size, stretched over the image
  void clear_heatmap();
  [[nodiscard]] bool has_heatmap() const { return !heatmap_.isNull(); }
  [[nodiscard]] const QImage& heatmap() const { return heatmap_; }
  void set_heatmap_opacity(double opacity);
  void set_heatmap_visible(bool visible);
  [[nodiscard]] bool heatmap_visible() const { return heatmap_visible_; }
  void set_regions(std::vector<ShownRegion> regions);
  // While held, the smooth downscaled copy waits (it would take a core from the forward pass).
  void hold_smooth(bool hold);

  // Image <-> widget coordinates.
  [[nodiscard]] QPointF to_image(QPointF widget) const;
  [[nodiscard]] QPointF to_widget(QPointF image) const;

 Q_SIGNALS:
  void cursorInfo(const QString& text);
  void windowChanged(const QString& text);
  void zoomChanged(double zoom);
  void regionDrawn(const hilum::app::Region& region);
  void toolChanged(int tool);
  void renderingChanged();  // a new rendering (window, invert) is in place (tests wait for it)
  void firstPaint();        // the first frame of a newly opened image has been painted

 protected:
  void paintEvent(QPaintEvent* event) override;
  void resizeEvent(QResizeEvent* event) override;
  void wheelEvent(QWheelEvent* event) override;
  void mousePressEvent(QMouseEvent* event) override;
  void mouseMoveEvent(QMouseEvent* event) override;
  void mouseReleaseEvent(QMouseEvent* event) override;
  void mouseDoubleClickEvent(QMouseEvent* event) override;
  void keyPressEvent(QKeyEvent* event) override;
  void leaveEvent(QEvent* event) override;

 private:
  void request_render();
  void start_render();
  void show_rendering(QImage rendered, int reduction, const dicom::DisplayOptions& options, dicom::ResolvedVoi voi);
  void schedule_smooth();
  void update_cursor_info(QPointF widget_pos);
  void emit_window();
  [[nodiscard]] QString measure_text(QPointF a, QPointF b) const;
  [[nodiscard]] QRectF image_rect_in_widget() const;
  [[nodiscard]] QPointF clamp_to_image(QPointF p) const;

  // Full-size pixels per rendered pixel along each side (2^reduction of the rendering's source).
  [[nodiscard]] double rendered_scale() const { return static_cast<double>(1 << rendered_reduction_); }

  std::shared_ptr<const dicom::Radiograph> image_;
  QImage rendered_;
  int rendered_reduction_ = 0;  // of the radiograph rendered_ comes from (it may lag image_ by one render)
  dicom::DisplayOptions rendered_options_;  // what rendered_ was rendered with
  dicom::ResolvedVoi voi_;
  dicom::VoiChoice choice_;
  bool invert_ = false;
  QString message_;

  // View transform: widget = image * zoom_ + origin_.
  double zoom_ = 1.0;
  QPointF origin_;
  bool fitted_ = true;  // follow the widget size until the user zooms or pans

  // Background rendering, latest request wins.
  bool render_busy_ = false;
  bool render_pending_ = false;
  int generation_ = 0;   // bumps on every new image, so stale renders are dropped

  // Smoothly downscaled copy for zoom < 1 (made on a worker after the view settles).
  QImage smooth_;
  double smooth_zoom_ = 0.0;
  qint64 smooth_key_ = 0;        // the rendering it was made from
  qint64 smooth_shown_key_ = 0;  // the rendering it may stand for: its own, or a sharper one that looks the same
  qint64 render_key_ = 0;  // bumps on every new rendering
  QTimer smooth_timer_;
  bool smooth_held_ = false;

  // Interaction state.
  Tool tool_ = Tool::Pan;
  enum class Drag { None, Pan, Window, Ruler, Rectangle } drag_ = Drag::None;
  QPointF press_pos_;
  QPointF press_origin_;
  double press_center_ = 0.0;
  double press_width_ = 1.0;
  std::optional<std::pair<QPointF, QPointF>> ruler_;  // image coordinates
  std::optional<QRectF> rubber_;                       // image coordinates
  QPolygonF polygon_;                                  // image coordinates, while drawing
  QPointF hover_;                                      // widget coordinates

  QImage heatmap_;
  double heatmap_opacity_ = 0.5;
  bool heatmap_visible_ = true;
  std::vector<ShownRegion> regions_;
  bool painted_ = true;  // the current image's first frame has been painted
};

}  // namespace hilum::ui
