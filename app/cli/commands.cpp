#include "commands.hpp"

#include <charconv>
#include <csignal>
#include <unistd.h>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>

#include "hilum/app/json.hpp"
#include "hilum/app/png.hpp"
#include "hilum/dicom/dicomdir.hpp"
#include "hilum/dicom/display.hpp"
#include "hilum/dicom/reader.hpp"

namespace fs = std::filesystem;
namespace dcm = hilum::dicom;
using hilum::app::JsonObject;

namespace hilum::cli {

int usage_error(const std::string& message) {
  std::fprintf(stderr, "hilum-cli: %s (see hilum-cli --help)\n", message.c_str());
  return kExitUsage;
}

std::optional<std::pair<std::string, app::LabelValue>> parse_finding_value(const std::string& s, std::string& problem) {
  const auto eq = s.rfind('=');
  if (eq == std::string::npos) {
    problem = "--set takes FINDING=present|absent|uncertain|cleared";
    return std::nullopt;
  }
  auto parsed = app::parse_label_value(s.substr(eq + 1));
  if (!parsed) {
    problem = "unknown value \"" + s.substr(eq + 1) + "\" (present, absent, uncertain, cleared)";
    return std::nullopt;
  }
  return std::make_pair(s.substr(0, eq), *parsed);
}

int report_error(const app::Error& error) {
  std::fprintf(stderr, "hilum-cli: %s\n", error.message.c_str());
  switch (error.kind) {
    case app::ErrorKind::Invalid:
    case app::ErrorKind::NotFound:
    case app::ErrorKind::Conflict:
    case app::ErrorKind::Io:
      return kExitFailures;
    case app::ErrorKind::Interrupted:
      return kExitInterrupted;
    default:
      return kExitCatalog;
  }
}

namespace {
std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the signal handler needs a lock-free flag");

extern "C" void on_interrupt(int) {
  if (g_interrupted.exchange(true)) ::_exit(kExitInterrupted);
  static const char kMessage[] = "\nhilum-cli: interrupted: saving what is done (Ctrl-C again to quit at once)\n";
  const ssize_t ignored = ::write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
  (void)ignored;
}
}  // namespace

struct InterruptGuard::Saved {
  struct sigaction old_int {};
  struct sigaction old_term {};
};

InterruptGuard::InterruptGuard() : saved_(std::make_unique<Saved>()) {
  g_interrupted = false;
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, &saved_->old_int);
  ::sigaction(SIGTERM, &sa, &saved_->old_term);
}

InterruptGuard::~InterruptGuard() {
  ::sigaction(SIGINT, &saved_->old_int, nullptr);
  ::sigaction(SIGTERM, &saved_->old_term, nullptr);
}

const std::atomic<bool>* InterruptGuard::flag() { return &g_interrupted; }

namespace {

std::optional<double> parse_double(const std::string& s) {
  double v = 0.0;
  const auto* end = s.data() + s.size();
  const auto [ptr, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return v;
}

std::optional<int> parse_int(const std::string& s) {
  int v = 0;
  const auto* end = s.data() + s.size();
  const auto [ptr, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return v;
}

std::string window_json(const dcm::ResolvedVoi& voi) {
  JsonObject w;
  w.add("source", voi.source);
  if (voi.is_lut) {
    w.add("voi_lut", voi.lut_index + 1);
  } else {
    w.add("center", voi.window.center).add("width", voi.window.width).add("function", dcm::to_string(voi.window.function));
    if (!voi.window.explanation.empty()) w.add("explanation", voi.window.explanation);
  }
  return w.str();
}

std::string info_json(const fs::path& path, const dcm::Result<dcm::Radiograph>& result, bool pixels) {
  JsonObject o;
  o.add("path", path.string());
  if (!result) {
    o.add("ok", false);
    o.add("error", result.error().message);
    o.add("error_kind", dcm::to_string(result.error().kind));
    return o.str();
  }
  const dcm::Radiograph& r = result.value();
  const dcm::Metadata& m = r.meta;
  o.add("ok", true);
  o.add("sop_instance_uid", m.sop_instance_uid);
  o.add("sop_class_uid", m.sop_class_uid);
  o.add("sop_class", m.sop_class_name);
  o.add("modality", m.modality);
  o.add("transfer_syntax_uid", m.transfer_syntax_uid);
  o.add("transfer_syntax", m.transfer_syntax_name);
  o.add("part10", m.has_part10_header);
  o.add("photometric_interpretation", r.colour_photometric.empty() ? std::string(dcm::to_string(r.photometric)) : r.colour_photometric);
  // A colour image is shown (and classified) as the grey of its colours.
  o.add("colour_shown_as_grey", !r.colour_photometric.empty());
  o.add("coloured_share", r.coloured_share);
  o.add("rows", r.rows).add("columns", r.columns);
  o.add("bits_allocated", r.bits_allocated).add("bits_stored", r.bits_stored).add("high_bit", r.high_bit);
  o.add("pixel_representation", r.is_signed ? 1 : 0);
  o.add("frames", r.number_of_frames);
  o.add("study_instance_uid", m.study_instance_uid);
  o.add("series_instance_uid", m.series_instance_uid);
  o.add("view_position", m.view_position);
  o.add("body_part", m.body_part_examined);
  o.add("laterality", m.laterality);
  if (m.pixel_spacing) {
    JsonObject s;
    s.add("row_mm", m.pixel_spacing->row_mm).add("column_mm", m.pixel_spacing->column_mm).add("source", m.pixel_spacing->source);
    o.add_raw("pixel_spacing", s.str());
  } else {
    o.add_null("pixel_spacing");
  }
  o.add("window_presets", static_cast<int>(r.windows.size()));
  o.add("voi_luts", static_cast<int>(r.voi_luts.size()));
  o.add("modality_lut", r.modality_lut.has_value());
  o.add("rescale_slope", r.rescale_slope).add("rescale_intercept", r.rescale_intercept);
  if (pixels) {
    auto voi = dcm::resolve_voi(r, {});
    if (voi) o.add_raw("window", window_json(voi.value()));
    o.add("min_modality_value", static_cast<double>(r.min_modality));
    o.add("max_modality_value", static_cast<double>(r.max_modality));
  }
  return o.str();
}

}  // namespace

int cmd_info(const Args& args) {
  bool pixels = true;
  std::vector<fs::path> files;
  for (const auto& a : args) {
    if (a == "--no-pixels") pixels = false;
    else if (a.rfind("--", 0) == 0) return usage_error("info: unknown option " + a);
    else files.emplace_back(a);
  }
  if (files.empty()) return usage_error("info: no FILE given");
  dcm::ReadOptions options;
  options.decode_pixels = pixels;
  int failures = 0;
  for (const auto& file : files) {
    if (dcm::is_dicomdir(file)) {
      auto images = dcm::read_dicomdir(file);
      if (!images) {
        ++failures;
        std::cout << JsonObject().add("path", file.string()).add("ok", false).add("error", images.error().message).str() << '\n';
        continue;
      }
      for (const auto& image : images.value()) {
        if (!image.refused.empty()) {
          ++failures;
          std::cout << JsonObject().add("path", file.string()).add("file_id", image.file_id).add("ok", false)
                           .add("error", image.refused).str() << '\n';
          continue;
        }
        auto result = dcm::read_radiograph(image.file, options);
        if (!result) ++failures;
        std::cout << info_json(image.file, result, pixels) << '\n';
      }
      continue;
    }
    auto result = dcm::read_radiograph(file, options);
    if (!result) ++failures;
    std::cout << info_json(file, result, pixels) << '\n';
  }
  std::cout.flush();
  return failures == 0 ? kExitOk : kExitFailures;
}

int cmd_render(const Args& args) {
  std::optional<fs::path> input;
  std::optional<fs::path> output;
  dcm::DisplayOptions display;
  int max_size = 0;
  int voi_options = 0;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const auto next = [&](const char* what) -> std::optional<std::string> {
      if (i + 1 >= args.size()) return std::nullopt;
      (void)what;
      return args[++i];
    };
    if (a == "-o" || a == "--output") {
      auto v = next("-o");
      if (!v) return usage_error("render: -o needs a file name");
      output = *v;
    } else if (a == "--window") {
      auto v = next("--window");
      const auto comma = v ? v->find(',') : std::string::npos;
      if (comma == std::string::npos) return usage_error("render: --window takes CENTER,WIDTH");
      const auto c = parse_double(v->substr(0, comma));
      const auto w = parse_double(v->substr(comma + 1));
      if (!c || !w) return usage_error("render: --window takes two numbers, CENTER,WIDTH");
      display.voi = dcm::VoiChoice::custom(*c, *w);
      ++voi_options;
    } else if (a == "--preset" || a == "--voi-lut") {
      auto v = next(a.c_str());
      const auto n = v ? parse_int(*v) : std::nullopt;
      if (!n || *n < 1) return usage_error("render: " + a + " takes a number from 1");
      display.voi = a == "--preset" ? dcm::VoiChoice::preset(*n - 1) : dcm::VoiChoice::lut(*n - 1);
      ++voi_options;
    } else if (a == "--auto") {
      display.voi = dcm::VoiChoice::automatic();
      ++voi_options;
    } else if (a == "--min-max") {
      display.voi = dcm::VoiChoice::min_max();
      ++voi_options;
    } else if (a == "--invert") {
      display.invert = true;
    } else if (a == "--max-size") {
      auto v = next("--max-size");
      const auto n = v ? parse_int(*v) : std::nullopt;
      if (!n || *n < 1) return usage_error("render: --max-size takes a positive number of pixels");
      max_size = *n;
    } else if (a.rfind("--", 0) == 0) {
      return usage_error("render: unknown option " + a);
    } else if (!input) {
      input = a;
    } else {
      return usage_error("render: one FILE at a time");
    }
  }
  if (!input) return usage_error("render: no FILE given");
  if (!output) return usage_error("render: no output given (-o OUT.png)");
  if (voi_options > 1) return usage_error("render: choose one of --window, --preset, --voi-lut, --auto, --min-max");

  auto image = dcm::read_radiograph(*input);
  if (!image) {
    std::fprintf(stderr, "hilum-cli: %s: %s\n", input->c_str(), image.error().message.c_str());
    return kExitFailures;
  }
  auto values = dcm::render_float(image.value(), display);
  if (!values) {
    std::fprintf(stderr, "hilum-cli: %s: %s\n", input->c_str(), values.error().message.c_str());
    return kExitFailures;
  }
  app::FloatImage shown{image->columns, image->rows, std::move(values.value())};
  shown = app::downscale_to_fit(std::move(shown), max_size);
  std::vector<std::uint8_t> bytes(shown.pixels.size());
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const float v = std::min(1.0f, std::max(0.0f, shown.pixels[i]));
    bytes[i] = static_cast<std::uint8_t>(v * 255.0f + 0.5f);
  }
  if (auto written = app::write_png_gray8(*output, shown.width, shown.height, bytes); !written) {
    std::fprintf(stderr, "hilum-cli: %s\n", written.error().message.c_str());
    return kExitFailures;
  }
  return kExitOk;
}

int cmd_dicomdir(const Args& args) {
  bool json = false;
  std::optional<fs::path> path;
  for (const auto& a : args) {
    if (a == "--json") json = true;
    else if (a.rfind("--", 0) == 0) return usage_error("dicomdir: unknown option " + a);
    else if (!path) path = a;
    else return usage_error("dicomdir: one DICOMDIR at a time");
  }
  if (!path) return usage_error("dicomdir: no DICOMDIR given");
  auto images = dcm::read_dicomdir(*path);
  if (!images) {
    std::fprintf(stderr, "hilum-cli: %s: %s\n", path->c_str(), images.error().message.c_str());
    return kExitFailures;
  }
  int missing = 0;
  std::string patient, study, series;
  for (const auto& im : images.value()) {
    if (!im.file_exists) ++missing;
    if (json) {
      JsonObject o;
      o.add("patient_id", im.patient_id).add("patient_name", im.patient_name);
      o.add("study_instance_uid", im.study_instance_uid).add("study_date", im.study_date);
      o.add("study_description", im.study_description).add("accession_number", im.accession_number);
      o.add("series_instance_uid", im.series_instance_uid).add("series_number", im.series_number).add("modality", im.modality);
      o.add("sop_instance_uid", im.sop_instance_uid).add("instance_number", im.instance_number);
      o.add("file_id", im.file_id).add("path", im.file.string()).add("exists", im.file_exists);
      if (!im.refused.empty()) o.add("refused", im.refused);
      std::cout << o.str() << '\n';
      continue;
    }
    if (im.patient_id + im.patient_name != patient) {
      patient = im.patient_id + im.patient_name;
      std::cout << "patient " << im.patient_id << "  " << im.patient_name << '\n';
    }
    if (im.study_instance_uid != study) {
      study = im.study_instance_uid;
      std::cout << "  study " << im.study_date << "  " << im.study_description << "  " << im.study_instance_uid << '\n';
    }
    if (im.series_instance_uid != series) {
      series = im.series_instance_uid;
      std::cout << "    series " << im.series_number << "  " << im.modality << "  " << im.series_instance_uid << '\n';
    }
    if (!im.refused.empty()) {
      std::cout << "      image " << im.instance_number << "  (refused: " << im.refused << ")\n";
      continue;
    }
    std::cout << "      image " << im.instance_number << "  " << im.file.string() << (im.file_exists ? "" : "  (missing)") << '\n';
  }
  if (missing > 0) std::fprintf(stderr, "hilum-cli: %d referenced file(s) missing or refused\n", missing);
  return missing == 0 ? kExitOk : kExitFailures;
}

std::optional<inference::Precision> parse_precision(const std::string& s) {
  if (s == "f32") return inference::Precision::F32;
  if (s == "bf16") return inference::Precision::BF16;
  return std::nullopt;
}

}  // namespace hilum::cli
