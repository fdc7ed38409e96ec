#include "hilum/inference/overlay.hpp"

#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>

namespace hilum::inference {

std::vector<float> upsample_map(const Matrix& grid_map, int width, int height) {
  cv::Mat src(static_cast<int>(grid_map.rows()), static_cast<int>(grid_map.cols()), CV_32F);
  for (int y = 0; y < src.rows; ++y)
    for (int x = 0; x < src.cols; ++x) src.at<float>(y, x) = grid_map(y, x);
  cv::Mat dst;
  cv::resize(src, dst, cv::Size(width, height), 0, 0, cv::INTER_CUBIC);
  std::vector<float> out(static_cast<std::size_t>(width) * static_cast<std::size_t>(height));
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) out[static_cast<std::size_t>(y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x)] = std::clamp(dst.at<float>(y, x), 0.0f, 1.0f);
  return out;
}

std::vector<float> upsample_map(const Matrix& grid_map, int width, int height, const Window& window) {
  // The window's pixel rectangle (rounded to whole pixels), clipped to the image.
  const int x0 = std::clamp(static_cast<int>(std::lround(window.x)), 0, width);
  const int y0 = std::clamp(static_cast<int>(std::lround(window.y)), 0, height);
  const int x1 = std::clamp(static_cast<int>(std::lround(window.x + window.width)), x0, width);
  const int y1 = std::clamp(static_cast<int>(std::lround(window.y + window.height)), y0, height);
  if (x0 == 0 && y0 == 0 && x1 == width && y1 == height) return upsample_map(grid_map, width, height);
  std::vector<float> out(static_cast<std::size_t>(width) * static_cast<std::size_t>(height), 0.0f);
  if (x1 == x0 || y1 == y0) return out;
  const std::vector<float> inner = upsample_map(grid_map, x1 - x0, y1 - y0);
  for (int y = y0; y < y1; ++y) {
    std::copy_n(inner.begin() + static_cast<std::ptrdiff_t>(y - y0) * (x1 - x0), x1 - x0,
                out.begin() + static_cast<std::ptrdiff_t>(y) * width + x0);
  }
  return out;
}

Window scaled_window(const Window& shares, int width, int height) {
  return {shares.x * width, shares.y * height, shares.width * width, shares.height * height};
}

RgbaImage attention_layer(const Matrix& grid_map, int width, int height, ColourMap colours, const std::optional<Window>& window) {
  const std::vector<float> map = window ? upsample_map(grid_map, width, height, *window) : upsample_map(grid_map, width, height);
  cv::Mat map8(height, width, CV_8U);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      map8.at<std::uint8_t>(y, x) = static_cast<std::uint8_t>(map[static_cast<std::size_t>(y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x)] * 255.0f + 0.5f);
  int cv_map = cv::COLORMAP_JET;
  switch (colours) {
    case ColourMap::Jet: cv_map = cv::COLORMAP_JET; break;
    case ColourMap::Turbo: cv_map = cv::COLORMAP_TURBO; break;
    case ColourMap::Inferno: cv_map = cv::COLORMAP_INFERNO; break;
    case ColourMap::Hot: cv_map = cv::COLORMAP_HOT; break;
  }
  cv::Mat bgr;
  cv::applyColorMap(map8, bgr, cv_map);
  RgbaImage out{width, height, std::vector<std::uint8_t>(static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 4)};
  for (int y = 0; y < height; ++y) {
    const auto* colour = bgr.ptr<cv::Vec3b>(y);
    for (int x = 0; x < width; ++x) {
      const std::size_t i = static_cast<std::size_t>(y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x);
      const float v = map[i];
      for (int c = 0; c < 3; ++c) {
        out.rgba[i * 4 + static_cast<std::size_t>(c)] =
            static_cast<std::uint8_t>(std::clamp(static_cast<float>(colour[x][2 - c]) * v + 0.5f, 0.0f, 255.0f));  // BGR -> RGB
      }
      out.rgba[i * 4 + 3] = static_cast<std::uint8_t>(std::clamp(v * 255.0f + 0.5f, 0.0f, 255.0f));
    }
  }
  return out;
}

RgbImage attention_overlay(const float* grey, int width, int height, const Matrix& grid_map, float opacity, ColourMap colours,
                           const std::optional<Window>& window) {
  const RgbaImage layer = attention_layer(grid_map, width, height, colours, window);
  RgbImage out{width, height, std::vector<std::uint8_t>(static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 3)};
  const float a = std::clamp(opacity, 0.0f, 1.0f);
  for (std::size_t i = 0; i < static_cast<std::size_t>(width) * static_cast<std::size_t>(height); ++i) {
    const float g = std::clamp(grey[i], 0.0f, 1.0f) * 255.0f;
    const float w = a * static_cast<float>(layer.rgba[i * 4 + 3]) / 255.0f;
    for (std::size_t c = 0; c < 3; ++c) {
      out.rgb[i * 3 + c] = static_cast<std::uint8_t>(std::clamp((1.0f - w) * g + a * static_cast<float>(layer.rgba[i * 4 + c]) + 0.5f, 0.0f, 255.0f));
    }
  }
  return out;
}

}  // namespace hilum::inference
