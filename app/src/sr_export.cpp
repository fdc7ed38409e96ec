#include "hilum/app/sr_export.hpp"

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <system_error>

#include "hilum/app/hash.hpp"
#include "hilum/app/network.hpp"
#include "hilum/core/numbers.hpp"

namespace fs = std::filesystem;

namespace hilum::app {
namespace {

dicom::sr::LabelValue sr_value(LabelValue v) {
  switch (v) {
    case LabelValue::Present: return dicom::sr::LabelValue::Present;
    case LabelValue::Absent: return dicom::sr::LabelValue::Absent;
    case LabelValue::Uncertain:
    case LabelValue::Cleared: return dicom::sr::LabelValue::Uncertain;
  }
  return dicom::sr::LabelValue::Uncertain;
}

std::vector<std::pair<double, double>> outline(const Region& r) {
  if (r.shape == Region::Shape::Polygon) return r.points;
  return {{r.x, r.y}, {r.x + r.w, r.y}, {r.x + r.w, r.y + r.h}, {r.x, r.y + r.h}};
}

// What makes two reports of one image the same report.
std::string content_key(const dicom::sr::Report& r) {
  std::string key = r.image.sop_instance_uid;
  for (const auto& f : r.findings) {
    key += '\0' + f.name;
    if (f.reader) {
      key += "|r" + std::string(1, static_cast<char>('0' + static_cast<int>(f.reader->value))) + f.reader->author + f.reader->datetime;
      for (const auto& [x, y] : f.reader->region) key += "," + core::format_number(x) + ":" + core::format_number(y);
    }
    if (f.ai) key += "|a" + core::format_number(f.ai->probability, 6) + f.ai->algorithm_name + f.ai->algorithm_version + f.ai->datetime;
  }
  return key;
}

std::string algorithm_name(const ModelRecord& m) { return m.name.empty() ? std::string("Hilum ViT") : m.name; }

std::string file_name(const char* prefix, const std::string& uid) {
  return prefix + sha256_hex(uid.data(), uid.size()).substr(0, 16) + ".dcm";
}

}  // namespace

std::string uid_from_hash(const std::string& text) {
  const std::string hex = sha256_hex(text.data(), text.size()).substr(0, 32);
  // 128 bits as a decimal number: repeated division of the 16 bytes by 10.
  std::vector<unsigned> bytes;
  for (std::size_t i = 0; i < hex.size(); i += 2) bytes.push_back(static_cast<unsigned>(std::stoul(hex.substr(i, 2), nullptr, 16)));
  std::string digits;
  while (std::any_of(bytes.begin(), bytes.end(), [](unsigned b) { return b != 0; })) {
    unsigned rem = 0;
    for (unsigned& b : bytes) {
      const unsigned cur = rem * 256 + b;
      b = cur / 10;
      rem = cur % 10;
    }
    digits.push_back(static_cast<char>('0' + rem));
  }
  if (digits.empty()) digits = "0";
  std::reverse(digits.begin(), digits.end());
  return "2.25." + digits;
}

Result<dicom::sr::Report> image_report(Catalog& catalog, const std::string& image) {
  auto found = catalog.find_instance(image);
  if (!found) return found.error();
  if (!found->has_value()) return Error{ErrorKind::NotFound, "no such image in the catalog: " + image};
  const Instance& in = found->value();
  dicom::sr::Report r;
  auto& s = r.image;
  s.sop_class_uid = in.sop_class_uid;
  s.sop_instance_uid = in.sop_instance_uid;
  s.study_instance_uid = in.study_instance_uid;
  s.series_instance_uid = in.series_instance_uid;
  s.patient_id = in.patient_id;
  s.patient_name = in.patient_name;
  s.patient_birth_date = in.patient_birth_date;
  s.patient_sex = in.patient_sex;
  s.study_date = in.study_date;
  s.study_time = in.study_time;
  s.accession_number = in.accession_number;
  s.study_description = in.study_description;

  std::map<std::string, dicom::sr::Finding> by_name;
  std::vector<std::string> order;
  auto finding = [&](const std::string& name) -> dicom::sr::Finding& {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      order.push_back(name);
      it = by_name.emplace(name, dicom::sr::Finding{name, std::nullopt, std::nullopt}).first;
    }
    return it->second;
  };
  auto labels = catalog.current_labels(in.sop_instance_uid);
  if (!labels) return labels.error();
  for (const LabelEvent& e : *labels) {
    dicom::sr::ReaderLabel l;
    l.value = sr_value(e.value);
    l.author = e.author;
    l.datetime = e.created_at;
    if (e.region) l.region = outline(*e.region);
    finding(e.finding).reader = std::move(l);
  }
  auto model = catalog.active_model();
  if (!model) return model.error();
  if (model->has_value()) {
    const ModelRecord& m = model->value();
    auto predictions = catalog.predictions(in.sop_instance_uid, m.id);
    if (!predictions) return predictions.error();
    for (const PredictionRow& p : *predictions) {
      dicom::sr::AiResult ai;
      ai.probability = p.probability;
      ai.algorithm_name = algorithm_name(m);
      ai.algorithm_version = m.version;
      ai.datetime = p.computed_at;
      finding(p.finding).ai = std::move(ai);
    }
  }
  if (order.empty()) return Error{ErrorKind::Invalid, "nothing to report for " + in.sop_instance_uid + ": no label and no prediction"};
  for (const auto& name : order) r.findings.push_back(by_name.at(name));

  auto secret = catalog.secret();
  if (!secret) return secret.error();
  r.series_instance_uid = uid_from_hash("hilum-sr-series\n" + s.study_instance_uid);
  r.sop_instance_uid = uid_from_hash("hilum-sr\n" + content_key(r));
  r.device_uid = uid_from_hash("hilum-device\n" + *secret);
  return r;
}

Result<dicom::sc::AttentionMap> image_attention_map(Catalog& catalog, const LoadedModel& model, const std::string& image, int max_side) {
  auto found = catalog.find_instance(image);
  if (!found) return found.error();
  if (!found->has_value()) return Error{ErrorKind::NotFound, "no such image in the catalog: " + image};
  const Instance& in = found->value();
  if (model.record.id == 0) return Error{ErrorKind::Invalid, "the model is not registered: no stored prediction to explain"};
  auto predictions = catalog.predictions(in.sop_instance_uid, model.record.id);
  if (!predictions) return predictions.error();
  if (predictions->empty()) return Error{ErrorKind::Invalid, "the model " + model.record.version + " has not scored " + in.sop_instance_uid};
  const PredictionRow& top = *std::max_element(predictions->begin(), predictions->end(),
                                               [](const PredictionRow& a, const PredictionRow& b) { return a.probability < b.probability; });
  HeatmapOptions options;
  options.method = HeatmapMethod::ClassSpecific;
  options.finding = top.finding;
  options.max_side = max_side;
  const std::string file = in.stored_path.empty() ? in.path : in.stored_path;
  auto h = heatmap(model, file, options);
  if (!h) return h.error();
  dicom::sc::AttentionMap map;
  map.source_file = file;
  map.width = h->overlay.width;
  map.height = h->overlay.height;
  map.rgb = std::move(h->overlay.rgb);
  map.finding = top.finding;
  map.probability = top.probability;
  map.method = "class-specific relevance, Chefer et al. 2021";
  map.algorithm_name = algorithm_name(model.record);
  map.algorithm_version = model.record.version;
  map.content_datetime = top.computed_at;
  map.series_instance_uid = uid_from_hash("hilum-map-series\n" + in.study_instance_uid);
  map.sop_instance_uid = uid_from_hash("hilum-map\n" + in.sop_instance_uid + '\0' + map.algorithm_name + '\0' + map.algorithm_version + '\0' +
                                       map.finding + '\0' + map.method + '\0' + std::to_string(max_side));
  return map;
}

Result<SrExportReport> export_reports(Catalog& catalog, const SrExportOptions& options, const std::atomic<bool>* cancel,
                                      const ReportProgressFn& progress) {
  if (options.out_dir.empty()) return Error{ErrorKind::Invalid, "no output folder"};
  std::error_code ec;
  fs::create_directories(options.out_dir, ec);
  if (ec) return Error{ErrorKind::Io, "cannot create " + options.out_dir.string() + ": " + ec.message()};
  std::vector<std::string> images = options.images;
  const bool every = images.empty();
  if (every) {
    InstanceFilter filter;
    filter.with_thumbnails = false;
    auto all = catalog.list_instances(filter);
    if (!all) return all.error();
    for (const auto& i : *all) images.push_back(i.sop_instance_uid);
  }
  // The active model, loaded when the first map needs it (once: a model that does not load is
  // every map's failure).
  std::optional<Result<LoadedModel>> model;
  SrExportReport out;
  for (std::size_t k = 0; k < images.size(); ++k) {
    const std::string& image = images[k];
    if (cancel != nullptr && cancel->load()) return Error{ErrorKind::Interrupted, "export interrupted"};
    if (progress) progress(k, images.size());
    auto report = image_report(catalog, image);
    if (!report) {
      // With every image: those with nothing to say are simply not reported.
      if (every && report.error().kind == ErrorKind::Invalid) continue;
      if (report.error().kind == ErrorKind::Invalid || report.error().kind == ErrorKind::NotFound) {
        out.failed.emplace_back(image, report.error().message);
        continue;
      }
      return report.error();
    }
    const fs::path file = options.out_dir / file_name("SR_", report->sop_instance_uid);
    auto written = dicom::sr::write_report(*report, file);
    if (!written) {
      out.failed.emplace_back(image, written.error().message);
    } else {
      out.files.push_back(file);
      ++out.reports;
    }
    const bool scored = std::any_of(report->findings.begin(), report->findings.end(), [](const dicom::sr::Finding& f) { return f.ai.has_value(); });
    if (!options.attention_maps || !scored) continue;
    if (!model && options.model == nullptr) model = load_model(catalog, "");
    if (model && !model->ok()) {
      out.failed.emplace_back(image, "no attention map: " + model->error().message);
      continue;
    }
    auto map = image_attention_map(catalog, options.model != nullptr ? *options.model : model->value(), image, options.map_max_side);
    if (!map) {
      out.failed.emplace_back(image, "no attention map: " + map.error().message);
      continue;
    }
    const fs::path map_file = options.out_dir / file_name("SC_", map->sop_instance_uid);
    auto map_written = dicom::sc::write_attention_map(*map, map_file);
    if (!map_written) {
      out.failed.emplace_back(image, "no attention map: " + map_written.error().message);
      continue;
    }
    out.files.push_back(map_file);
    ++out.maps;
  }
  if (progress) progress(images.size(), images.size());
  return out;
}

Result<dicom::net::SendReport> send_reports(Catalog& catalog, const dicom::net::ScuOptions& scu, const SrExportOptions& what,
                                            const std::atomic<bool>* cancel, const SendResultsProgress& progress) {
  std::error_code ec;
  std::random_device rd;
  const fs::path tmp = fs::temp_directory_path(ec) / ("hilum-sr-send-" + std::to_string(rd()) + std::to_string(rd()));
  if (ec || !fs::create_directory(tmp, ec)) return Error{ErrorKind::Io, "cannot create a temporary folder: " + ec.message()};
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code e;
      fs::remove_all(p, e);
    }
  } cleanup{tmp};
  SrExportOptions options = what;
  options.out_dir = tmp;
  ReportProgressFn writing;
  if (progress) writing = [&](std::size_t done, std::size_t total) { progress("writing", done, total); };
  auto written = export_reports(catalog, options, cancel, writing);
  if (!written) return written.error();
  dicom::net::SendProgressFn sending;
  if (progress) sending = [&](std::size_t done, std::size_t total, const fs::path&) { progress("sending", done, total); };
  auto sent = dicom::net::send_files(scu, written->files, sending, cancel);
  if (!sent) return from_dicom(sent.error());
  dicom::net::SendReport report = *sent;
  for (const auto& [image, reason] : written->failed) report.failed.push_back({image, reason});
  return report;
}

}  // namespace hilum::app
