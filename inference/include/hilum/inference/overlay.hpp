// Hilum inference: attention maps drawn over the radiograph (OpenCV colour maps).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "hilum/inference/vit.hpp"

namespace hilum::inference {

enum class ColourMap { Jet, Turbo, Inferno, Hot };

struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> rgb;  // row-major, 3 bytes per pixel
};

// A patch-grid map (values in [0, 1]) brought to width x height (bicubic, clamped to [0, 1]).
// With a `window` (model_window: the part of the image the model saw, a centre crop), the map
// covers that rectangle only and is 0 outside it.
[[nodiscard]] std::vector<float> upsample_map(const Matrix& grid_map, int width, int height);
[[nodiscard]] std::vector<float> upsample_map(const Matrix& grid_map, int width, int height, const Window& window);
// A window given as shares of an image's sides ({0, 0, 1, 1} = all of it), in the pixels of a
// width x height rendering of that image.
[[nodiscard]] Window scaled_window(const Window& shares, int width, int height);

// The map as a layer to paint over any rendering of the image (a viewer whose window changes):
// premultiplied RGBA, alpha = map value, colour = colour map(map value) x map value. Painting it
// with opacity a over grey g gives g (1 - a v) + colour(v) a v, exactly attention_overlay's mix.
struct RgbaImage {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> rgba;  // row-major, 4 bytes per pixel, premultiplied alpha
};
[[nodiscard]] RgbaImage attention_layer(const Matrix& grid_map, int width, int height, ColourMap colours = ColourMap::Jet,
                                        const std::optional<Window>& window = std::nullopt);

// The map over the grey display image (values in [0, 1], row-major): each pixel mixes the colour
// of its map value into the grey with weight opacity x map value, so low-attention regions keep
// the radiograph as it is and `opacity` 0 gives the plain image.
[[nodiscard]] RgbImage attention_overlay(const float* grey, int width, int height, const Matrix& grid_map, float opacity,
                                         ColourMap colours = ColourMap::Jet, const std::optional<Window>& window = std::nullopt);

}  // namespace hilum::inference
