// Preprocessing: display values in [0, 1] -> the model's normalised input.
#include <algorithm>
#include <cmath>

#include "hilum/inference/vit.hpp"

namespace hilum::inference {
namespace {

// Weights of a triangle filter resampling `in` samples to `out` (support widened by the
// scale when shrinking, so every input sample contributes: antialiasing).
struct Taps {
  std::vector<int> first;
  std::vector<int> count;
  std::vector<float> weights;  // out x max_taps
  int max_taps = 0;
};

Taps make_taps(int in, int out, double start, double length) {
  Taps t;
  const double scale = length / out;
  const double support = std::max(1.0, scale);  // triangle radius in input samples
  t.max_taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(static_cast<std::size_t>(out));
  t.count.resize(static_cast<std::size_t>(out));
  t.weights.assign(static_cast<std::size_t>(out) * static_cast<std::size_t>(t.max_taps), 0.0f);
  for (int o = 0; o < out; ++o) {
    const double center = start + (o + 0.5) * scale;
    const int lo = std::max(0, static_cast<int>(std::floor(center - support)));
    const int hi = std::min(in, static_cast<int>(std::ceil(center + support)));
    double total = 0.0;
    std::vector<double> w;
    for (int i = lo; i < hi; ++i) {
      const double d = std::abs((i + 0.5 - center) / support);
      w.push_back(std::max(0.0, 1.0 - d));
      total += w.back();
    }
    const int n = std::min(static_cast<int>(w.size()), t.max_taps);
    t.first[static_cast<std::size_t>(o)] = lo;
    t.count[static_cast<std::size_t>(o)] = n;
    for (int k = 0; k < n; ++k) {
      t.weights[static_cast<std::size_t>(o) * static_cast<std::size_t>(t.max_taps) + static_cast<std::size_t>(k)] =
          static_cast<float>(total > 0 ? w[static_cast<std::size_t>(k)] / total : 0.0);
    }
  }
  return t;
}

}  // namespace

std::vector<float> resize_antialiased(const float* src, int width, int height, int out_width, int out_height) {
  return resize_antialiased(src, width, height, out_width, out_height, Window{0.0, 0.0, static_cast<double>(width), static_cast<double>(height)});
}

std::vector<float> resize_antialiased(const float* src, int width, int height, int out_width, int out_height, const Window& window) {
  const Taps tx = make_taps(width, out_width, window.x, window.width);
  const Taps ty = make_taps(height, out_height, window.y, window.height);
  // Horizontal pass, then vertical.
  std::vector<float> mid(static_cast<std::size_t>(height) * static_cast<std::size_t>(out_width));
  for (int y = 0; y < height; ++y) {
    const float* row = src + static_cast<std::size_t>(y) * static_cast<std::size_t>(width);
    for (int x = 0; x < out_width; ++x) {
      const float* w = tx.weights.data() + static_cast<std::size_t>(x) * static_cast<std::size_t>(tx.max_taps);
      float acc = 0.0f;
      for (int k = 0; k < tx.count[static_cast<std::size_t>(x)]; ++k) acc += w[k] * row[tx.first[static_cast<std::size_t>(x)] + k];
      mid[static_cast<std::size_t>(y) * static_cast<std::size_t>(out_width) + static_cast<std::size_t>(x)] = acc;
    }
  }
  std::vector<float> out(static_cast<std::size_t>(out_height) * static_cast<std::size_t>(out_width));
  for (int y = 0; y < out_height; ++y) {
    const float* w = ty.weights.data() + static_cast<std::size_t>(y) * static_cast<std::size_t>(ty.max_taps);
    float* dst = out.data() + static_cast<std::size_t>(y) * static_cast<std::size_t>(out_width);
    std::fill(dst, dst + out_width, 0.0f);
    for (int k = 0; k < ty.count[static_cast<std::size_t>(y)]; ++k) {
      const float* srow = mid.data() + static_cast<std::size_t>(ty.first[static_cast<std::size_t>(y)] + k) * static_cast<std::size_t>(out_width);
      for (int x = 0; x < out_width; ++x) dst[x] += w[k] * srow[x];
    }
  }
  return out;
}

Image normalise(const float* grey, const ViTConfig& config) {
  Image image;
  image.channels = config.num_channels;
  image.height = config.input_height;
  image.width = config.input_width;
  const std::size_t plane = static_cast<std::size_t>(image.height) * static_cast<std::size_t>(image.width);
  image.data.resize(plane * static_cast<std::size_t>(image.channels));
  for (int c = 0; c < image.channels; ++c) {
    const float mean = config.image_mean[static_cast<std::size_t>(std::min(c, 2))];
    const float inv_std = 1.0f / config.image_std[static_cast<std::size_t>(std::min(c, 2))];
    float* dst = image.data.data() + plane * static_cast<std::size_t>(c);
    for (std::size_t i = 0; i < plane; ++i) dst[i] = (std::clamp(grey[i], 0.0f, 1.0f) - mean) * inv_std;
  }
  return image;
}

Window model_window(int width, int height, const ViTConfig& config) {
  Window w{0.0, 0.0, static_cast<double>(width), static_cast<double>(height)};
  if (!config.centre_crop()) return w;
  // Hugging Face: resize to (resize_height, resize_width), then keep rows top .. top + input_height
  // with top = (resize_height - input_height) // 2 (and the same across).
  const auto side = [](int pixels, int resized, int kept, double& start, double& length) {
    if (resized <= 0 || resized < kept) return;
    const double per = static_cast<double>(pixels) / resized;
    start = static_cast<double>((resized - kept) / 2) * per;
    length = static_cast<double>(kept) * per;
  };
  side(width, config.resize_width, config.input_width, w.x, w.width);
  side(height, config.resize_height, config.input_height, w.y, w.height);
  return w;
}

std::vector<float> model_view(const float* grey, int width, int height, const ViTConfig& config) {
  return resize_antialiased(grey, width, height, config.input_width, config.input_height, model_window(width, height, config));
}

Image preprocess(const float* grey, int width, int height, const ViTConfig& config) {
  const std::vector<float> view = model_view(grey, width, height, config);
  return normalise(view.data(), config);
}

}  // namespace hilum::inference
