// Hilum test data: the synthetic chest phantom and the Encoding helpers.
#include "hilum/testdata/phantom.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

namespace hilum::testdata {

const char* to_string(Encoding e) {
  switch (e) {
    case Encoding::ImplicitLittle: return "implicit-little";
    case Encoding::ExplicitLittle: return "explicit-little";
    case Encoding::ExplicitBig: return "explicit-big";
    case Encoding::Deflated: return "deflated";
    case Encoding::Rle: return "rle";
    case Encoding::JpegBaseline: return "jpeg-baseline";
    case Encoding::JpegExtended12: return "jpeg-extended-12";
    case Encoding::JpegLosslessP14: return "jpeg-lossless-p14";
    case Encoding::JpegLosslessSV1: return "jpeg-lossless-sv1";
    case Encoding::JpegLsLossless: return "jpeg-ls-lossless";
    case Encoding::JpegLsNearLossless: return "jpeg-ls-near-lossless";
    case Encoding::J2kLossless: return "j2k-lossless";
    case Encoding::J2kLossy: return "j2k-lossy";
  }
  return "unknown";
}

const char* transfer_syntax_uid(Encoding e) {
  switch (e) {
    case Encoding::ImplicitLittle: return "1.2.840.10008.1.2";
    case Encoding::ExplicitLittle: return "1.2.840.10008.1.2.1";
    case Encoding::ExplicitBig: return "1.2.840.10008.1.2.2";
    case Encoding::Deflated: return "1.2.840.10008.1.2.1.99";
    case Encoding::Rle: return "1.2.840.10008.1.2.5";
    case Encoding::JpegBaseline: return "1.2.840.10008.1.2.4.50";
    case Encoding::JpegExtended12: return "1.2.840.10008.1.2.4.51";
    case Encoding::JpegLosslessP14: return "1.2.840.10008.1.2.4.57";
    case Encoding::JpegLosslessSV1: return "1.2.840.10008.1.2.4.70";
    case Encoding::JpegLsLossless: return "1.2.840.10008.1.2.4.80";
    case Encoding::JpegLsNearLossless: return "1.2.840.10008.1.2.4.81";
    case Encoding::J2kLossless: return "1.2.840.10008.1.2.4.90";
    case Encoding::J2kLossy: return "1.2.840.10008.1.2.4.91";
  }
  return "";
}

bool is_lossless(Encoding e) {
  switch (e) {
    case Encoding::JpegBaseline:
    case Encoding::JpegExtended12:
    case Encoding::JpegLsNearLossless:
    case Encoding::J2kLossy:
      return false;
    default:
      return true;
  }
}

std::vector<Encoding> all_encodings() {
  return {Encoding::ImplicitLittle,  Encoding::ExplicitLittle,     Encoding::ExplicitBig,
          Encoding::Deflated,        Encoding::Rle,                Encoding::JpegBaseline,
          Encoding::JpegExtended12,  Encoding::JpegLosslessP14,    Encoding::JpegLosslessSV1,
          Encoding::JpegLsLossless,  Encoding::JpegLsNearLossless, Encoding::J2kLossless,
          Encoding::J2kLossy};
}

namespace {

void validate(const PhantomSpec& s) {
  if (s.rows < 16 || s.columns < 16 || s.rows > 65535 || s.columns > 65535)
    throw std::runtime_error("phantom: rows/columns must be in [16, 65535]");
  if (s.bits_allocated != 8 && s.bits_allocated != 16)
    throw std::runtime_error("phantom: bits_allocated must be 8 or 16");
  if (s.bits_stored < 2 || s.bits_stored > s.bits_allocated)
    throw std::runtime_error("phantom: bits_stored must be in [2, bits_allocated]");
  if (s.high_bit < s.bits_stored - 1 || s.high_bit >= s.bits_allocated)
    throw std::runtime_error("phantom: high_bit must be in [bits_stored-1, bits_allocated-1]");
}

// Anatomy in normalised coordinates: x in [0,1] from the image's left (patient's right on a PA
// view) to its right, y in [0,1] from the top (head) to the bottom (abdomen).
constexpr double kBorderFraction = 0.06;  // collimator band, per side
constexpr double kLungCx = 0.30, kLungCy = 0.44, kLungRx = 0.145, kLungRy = 0.28;
constexpr double kSpineHalfWidth = 0.035;

// 1 inside the ellipse, 0 outside, with a soft edge `soft` (in ellipse-radius units).
double ellipse(double x, double y, double cx, double cy, double rx, double ry, double soft) {
  const double dx = (x - cx) / rx;
  const double dy = (y - cy) / ry;
  const double d = std::sqrt(dx * dx + dy * dy);
  return std::clamp((1.0 - d) / soft + 0.5, 0.0, 1.0);
}

// A soft band |t| < half with edge width `soft`.
double band(double t, double half, double soft) {
  return std::clamp((half - std::abs(t)) / soft + 0.5, 0.0, 1.0);
}

double mix(double a, double b, double t) { return a + (b - a) * t; }

// splitmix64: tiny, fast and the same on every platform (unlike std::normal_distribution).
struct SplitMix {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53; }  // (0,1)
};

// The MONOCHROME2 "attenuation" of the phantom at (x, y): 0 = black (direct exposure), 1 = white.
double anatomy(double x, double y) {
  const double soft = 0.06;
  // Direct exposure (air) around the body.
  double v = 0.04;
  // Body outline: soft tissue of the thorax and shoulders.
  const double body = std::max(ellipse(x, y, 0.5, 0.60, 0.46, 0.62, soft),
                               ellipse(x, y, 0.5, 0.22, 0.47, 0.16, soft));
  v = mix(v, 0.44, body);
  // Lower abdomen / diaphragm domes: denser than the chest wall.
  const double dome_r = 0.78 - 0.10 * std::cos((x - kLungCx) * std::numbers::pi / 0.30) * 0.3;
  const double dome_l = 0.80 - 0.10 * std::cos((x - (1.0 - kLungCx)) * std::numbers::pi / 0.30) * 0.3;
  const double dome = x < 0.5 ? dome_r : dome_l;
  v = mix(v, 0.56, body * std::clamp((y - dome) / 0.03 + 0.5, 0.0, 1.0));
  // Lungs: dark, slightly denser towards the bases.
  const double lung_r = ellipse(x, y, kLungCx, kLungCy, kLungRx, kLungRy, 0.12);
  const double lung_l = ellipse(x, y, 1.0 - kLungCx, kLungCy + 0.01, kLungRx, kLungRy, 0.12);
  const double lung = std::max(lung_r, lung_l);
  v = mix(v, 0.12 + 0.06 * std::clamp(y, 0.0, 1.0), lung);
  // Vessels: faint branching texture from the hila.
  for (const double hx : {0.40, 0.60}) {
    const double dx = x - hx;
    const double dy = y - 0.45;
    const double r = std::sqrt(dx * dx + dy * dy);
    const double ang = std::atan2(dy, dx);
    const double stripes = std::pow(std::abs(std::cos(ang * 7.0)), 24.0);
    v += lung * 0.06 * stripes * std::exp(-r / 0.12);
  }
  // Ribs: posterior arcs leaving the spine and descending laterally, over the lungs and chest wall.
  const double ribcage = ellipse(x, y, 0.5, 0.46, 0.41, 0.34, 0.05);
  const double dx = std::abs(x - 0.5);
  if (dx > kSpineHalfWidth) {
    for (int k = 0; k < 9; ++k) {
      const double y0 = 0.15 + 0.058 * k;
      const double t = dx - kSpineHalfWidth;
      const double yc = y0 + 1.6 * t * t + 0.08 * t;
      v += 0.11 * ribcage * band(y - yc, 0.012, 0.006);
    }
  }
  // Clavicles.
  v += 0.14 * body * band(y - (0.17 - 0.12 * (dx - 0.05)), 0.012, 0.006) * band(dx - 0.17, 0.13, 0.02);
  // Mediastinum and heart: bright central shadow, heart bulging to the patient's left (image right).
  const double mediastinum = ellipse(x, y, 0.5, 0.47, 0.085, 0.33, 0.10);
  v = mix(v, 0.66, mediastinum);
  const double heart = ellipse(x, y, 0.56, 0.63, 0.13, 0.11, 0.15);
  v = mix(v, 0.60, heart * 0.9);
  // Thoracic spine: the brightest structure, with vertebral bodies and disc spaces.
  const double spine = band(x - 0.5, kSpineHalfWidth, 0.01) * std::clamp((y - 0.05) / 0.02, 0.0, 1.0);
  const double discs = 0.5 + 0.5 * std::cos(y * 2.0 * std::numbers::pi / 0.055);
  v = mix(v, 0.80 + 0.05 * discs, spine);
  return v;
}

}  // namespace

PhantomLayout phantom_layout(const PhantomSpec& spec) {
  validate(spec);
  PhantomLayout l;
  if (spec.is_signed) {
    l.min_stored = -(std::int32_t{1} << (spec.bits_stored - 1));
    l.max_stored = (std::int32_t{1} << (spec.bits_stored - 1)) - 1;
  } else {
    l.min_stored = 0;
    l.max_stored = static_cast<std::int32_t>((std::int64_t{1} << spec.bits_stored) - 1);
  }
  l.border_value = spec.monochrome1 ? l.min_stored : l.max_stored;
  if (spec.collimator_border) {
    l.border_rows = static_cast<int>(std::lround(spec.rows * kBorderFraction));
    l.border_columns = static_cast<int>(std::lround(spec.columns * kBorderFraction));
  }
  l.exposed = {l.border_rows, l.border_columns, spec.rows - l.border_rows,
               spec.columns - l.border_columns};
  auto box = [&](double x0, double y0, double x1, double y1) {
    return PixelBox{static_cast<int>(std::floor(y0 * spec.rows)),
                    static_cast<int>(std::floor(x0 * spec.columns)),
                    static_cast<int>(std::ceil(y1 * spec.rows)),
                    static_cast<int>(std::ceil(x1 * spec.columns))};
  };
  // Well inside each lung ellipse (ribs cross them, which is fine: they are still dark).
  l.right_lung = box(kLungCx - 0.05, kLungCy - 0.10, kLungCx + 0.05, kLungCy + 0.02);
  l.left_lung = box(1.0 - kLungCx - 0.05, kLungCy - 0.10, 1.0 - kLungCx + 0.05, kLungCy + 0.02);
  l.spine = box(0.5 - kSpineHalfWidth * 0.5, 0.25, 0.5 + kSpineHalfWidth * 0.5, 0.60);
  return l;
}

void draw_axial_ct_slice(std::vector<std::int32_t>& stored, int rows, int columns) {
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < columns; ++c) {
      const double dy = (r + 0.5) / rows - 0.5, dx = (c + 0.5) / columns - 0.5;
      const bool body = dx * dx / 0.16 + dy * dy / 0.09 <= 1.0;
      const bool lung = std::abs(dx) > 0.05 && std::abs(dx) < 0.3 && std::abs(dy) < 0.2;
      const bool spine = dx * dx + (dy - 0.2) * (dy - 0.2) < 0.003;
      stored[static_cast<std::size_t>(r) * static_cast<std::size_t>(columns) + static_cast<std::size_t>(c)] =
          dx * dx + dy * dy > 0.25 ? 0 : !body ? 600 : spine ? 3800 : lung ? 800 + (r * 7 + c * 3) % 200 : 2400 + (r * c) % 300;
    }
  }
}

std::vector<std::int32_t> make_phantom(const PhantomSpec& spec) {
  const PhantomLayout layout = phantom_layout(spec);
  const double lo = layout.min_stored;
  const double range = static_cast<double>(layout.max_stored) - lo;
  // Noise: 0.4 % of the range (about 16 of 4096 at 12 bits, 1 of 255 at 8 bits).
  const double sigma = 0.004;

  SplitMix rng{0x243F6A8885A308D3ULL ^ (std::uint64_t{spec.seed} * 0x9E3779B97F4A7C15ULL)};
  std::vector<std::int32_t> out(static_cast<std::size_t>(spec.rows) * static_cast<std::size_t>(spec.columns));
  for (int r = 0; r < spec.rows; ++r) {
    const double y = (r + 0.5) / spec.rows;
    for (int c = 0; c < spec.columns; ++c) {
      const std::size_t i = static_cast<std::size_t>(r) * static_cast<std::size_t>(spec.columns) +
                            static_cast<std::size_t>(c);
      const bool in_border = r < layout.exposed.row0 || r >= layout.exposed.row1 ||
                             c < layout.exposed.col0 || c >= layout.exposed.col1;
      if (in_border) {
        out[i] = layout.border_value;
        continue;
      }
      const double x = (c + 0.5) / spec.columns;
      // Box-Muller (one of the pair) for Gaussian detector noise.
      const double u1 = rng.uniform();
      const double u2 = rng.uniform();
      const double n = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
      // Keep the anatomy in [2 %, 92 %] of the range so the border value stands apart.
      double f = std::clamp(anatomy(x, y), 0.0, 0.90) + sigma * n;
      f = std::clamp(f, 0.02, 0.92);
      if (spec.monochrome1) f = 1.0 - f;
      out[i] = static_cast<std::int32_t>(std::lround(lo + f * range));
    }
  }
  return out;
}

}  // namespace hilum::testdata
