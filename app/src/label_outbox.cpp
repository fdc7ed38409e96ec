// Labels not yet saved: the journal file and the outbox that retries them (see label_outbox.hpp).
#include "hilum/app/label_outbox.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <system_error>

#include "hilum/core/atomic_file.hpp"
#include "hilum/core/numbers.hpp"

namespace hilum::app {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kFormat = "hilum-pending-labels";
constexpr int kFormatVersion = 2;  // 2: submitted readings; a journal without any is written as version 1
constexpr std::uintmax_t kMaxJournalBytes = 64u << 20;  // far beyond what a reader types while a server is down

// Every character outside [A-Za-z0-9.-] made '_' (a file name from a host and a role).
std::string file_name_part(std::string_view s) {
  std::string out;
  for (const char c : s) {
    const bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
    out += keep ? c : '_';
  }
  return out.empty() ? std::string("_") : out;
}

json label_to_json(const LabelInput& in) {
  json j{{"image", in.image},   {"finding", in.finding}, {"value", to_string(in.value)}, {"author", in.author},
         {"comment", in.comment}, {"source", to_string(in.source)},   {"event_key", in.event_key}};
  if (in.region) j["region"] = in.region->to_json();
  if (in.model_version) j["model_version"] = *in.model_version;
  // Numbers as text through core/numbers.hpp (17 digits: the same double back).
  if (in.model_probability) j["model_probability"] = core::format_number(*in.model_probability, 17);
  return j;
}

std::string text_field(const json& j, const char* key, bool required, std::string* problem) {
  const auto it = j.find(key);
  if (it == j.end()) {
    if (required) *problem = std::string("\"") + key + "\" is missing";
    return {};
  }
  if (!it->is_string()) {
    *problem = std::string("\"") + key + "\" is not text";
    return {};
  }
  return it->get<std::string>();
}

std::optional<LabelInput> label_from_json(const json& j, std::string* problem) {
  if (!j.is_object()) {
    *problem = "a label is not an object";
    return std::nullopt;
  }
  LabelInput in;
  in.image = text_field(j, "image", true, problem);
  in.finding = text_field(j, "finding", true, problem);
  const std::string value = text_field(j, "value", true, problem);
  in.author = text_field(j, "author", true, problem);
  in.comment = text_field(j, "comment", false, problem);
  const std::string source = text_field(j, "source", true, problem);
  in.event_key = text_field(j, "event_key", true, problem);
  const std::string region = text_field(j, "region", false, problem);
  const std::string model_version = text_field(j, "model_version", false, problem);
  const std::string probability = text_field(j, "model_probability", false, problem);
  if (!problem->empty()) return std::nullopt;
  const auto v = parse_label_value(value);
  if (!v) {
    *problem = "unknown label value \"" + value.substr(0, 20) + "\"";
    return std::nullopt;
  }
  in.value = *v;
  const auto s = label_source_from_string(source);
  if (!s) {
    *problem = "unknown label source \"" + source.substr(0, 20) + "\"";
    return std::nullopt;
  }
  in.source = *s;
  if (j.contains("region")) {
    in.region = Region::from_json(region);
    if (!in.region) {
      *problem = "a region is not readable";
      return std::nullopt;
    }
  }
  if (j.contains("model_version")) in.model_version = model_version;
  if (j.contains("model_probability")) {
    in.model_probability = core::parse_number(probability);
    if (!in.model_probability) {
      *problem = "a model probability is not a number";
      return std::nullopt;
    }
  }
  return in;
}

}  // namespace

// ---- LabelJournal -------------------------------------------------------------------------------

std::string LabelJournal::serialize(const std::vector<PendingChange>& changes) {
  json list = json::array();
  for (const PendingChange& c : changes) {
    json labels = json::array();
    for (const LabelInput& in : c.labels) labels.push_back(label_to_json(in));
    json change{{"key", c.key}, {"created_at", c.created_at}, {"labels", std::move(labels)}};
    if (c.submission) change["submission"] = json{{"image", c.submission->image}, {"reader", c.submission->reader}};
    if (!c.refused.empty()) change["refused"] = c.refused;
    list.push_back(std::move(change));
  }
  // Version 1 (which an older Hilum reads) unless a change is a submitted reading.
  const bool submissions = std::any_of(changes.begin(), changes.end(), [](const PendingChange& c) { return c.submission.has_value(); });
  json doc{{"format", kFormat}, {"version", submissions ? kFormatVersion : 1}, {"changes", std::move(list)}};
  // Text that is not UTF-8 (never expected: the catalog refuses it) is replaced, not thrown on.
  return doc.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

Result<std::vector<PendingChange>> LabelJournal::parse(std::string_view text) {
  const json doc = json::parse(text, nullptr, false);
  const auto damaged = [](const std::string& why) { return Error{ErrorKind::Corrupt, "the journal of unsaved labels is damaged: " + why}; };
  if (doc.is_discarded() || !doc.is_object()) return damaged("not a JSON object");
  if (!doc.contains("format") || doc["format"] != kFormat) return damaged("not a Hilum journal of unsaved labels");
  if (!doc.contains("version") || !doc["version"].is_number_integer()) return damaged("no version");
  if (doc["version"].get<std::int64_t>() > kFormatVersion) {
    return Error{ErrorKind::NewerSchema, "the journal of unsaved labels was written by a newer Hilum (version " +
                                             std::to_string(doc["version"].get<std::int64_t>()) + ")"};
  }
  if (!doc.contains("changes") || !doc["changes"].is_array()) return damaged("no list of changes");
  std::vector<PendingChange> out;
  for (const json& c : doc["changes"]) {
    if (!c.is_object()) return damaged("a change is not an object");
    std::string problem;
    PendingChange change;
    change.key = text_field(c, "key", true, &problem);
    change.created_at = text_field(c, "created_at", true, &problem);
    change.refused = text_field(c, "refused", false, &problem);
    if (!problem.empty()) return damaged(problem);
    if (!c.contains("labels") || !c["labels"].is_array()) return damaged("a change without labels");
    if (const auto s = c.find("submission"); s != c.end()) {
      if (!s->is_object()) return damaged("a submission is not an object");
      ReadingSubmission submission{text_field(*s, "image", true, &problem), text_field(*s, "reader", true, &problem)};
      if (!problem.empty()) return damaged(problem);
      if (!c["labels"].empty()) return damaged("a change with labels and a submission");
      change.submission = std::move(submission);
    } else if (c["labels"].empty()) {
      return damaged("a change without labels");
    }
    for (const json& l : c["labels"]) {
      auto in = label_from_json(l, &problem);
      if (!in) return damaged(problem);
      change.labels.push_back(std::move(*in));
    }
    out.push_back(std::move(change));
  }
  return out;
}

Result<LabelJournal> LabelJournal::open(fs::path file) {
  LabelJournal journal;
  journal.file_ = std::move(file);
  std::error_code ec;
  if (!fs::exists(journal.file_, ec)) return journal;
  const auto size = fs::file_size(journal.file_, ec);
  if (ec) return Error{ErrorKind::Io, "cannot read " + journal.file_.string() + ": " + ec.message()};
  if (size > kMaxJournalBytes) return Error{ErrorKind::Corrupt, journal.file_.string() + " is too large for a journal of unsaved labels"};
  std::ifstream in(journal.file_, std::ios::binary);
  if (!in) return Error{ErrorKind::Io, "cannot read " + journal.file_.string()};
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  auto changes = parse(text);
  if (!changes) return Error{changes.error().kind, changes.error().message + " (" + journal.file_.string() + ", left as it is)"};
  journal.changes_ = std::move(changes.value());
  return journal;
}

Status LabelJournal::store(std::vector<PendingChange> changes) {
  changes_ = std::move(changes);
  std::error_code ec;
  if (changes_.empty()) {
    fs::remove(file_, ec);
    if (ec) return Error{ErrorKind::Io, "cannot remove " + file_.string() + ": " + ec.message()};
    (void)core::folder_sync(file_.parent_path());
    return core::Done{};
  }
  fs::create_directories(file_.parent_path(), ec);
  if (ec) return Error{ErrorKind::Io, "cannot create " + file_.parent_path().string() + ": " + ec.message()};
  if (auto written = core::write_file_atomically(file_, serialize(changes_)); !written) return Error{ErrorKind::Io, written.error().message};
  return core::Done{};
}

// ---- Helpers ----------------------------------------------------------------------------------

fs::path pending_labels_file(const Catalog& catalog) {
  std::array<char, 256> host{};
  if (::gethostname(host.data(), host.size() - 1) != 0) host[0] = '\0';
  return catalog.local_folder() / "pending-labels" / (file_name_part(host.data()) + "_" + file_name_part(catalog.reader()) + ".json");
}

bool is_unreachable(const Error& error) { return error.kind == ErrorKind::CannotOpen || error.kind == ErrorKind::Locked; }

std::string new_change_key() {
  std::random_device rd;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string key;
  for (int i = 0; i < 4; ++i) {
    std::uint32_t v = rd();
    for (int d = 0; d < 8; ++d, v >>= 4) key += kHex[v & 0xf];
  }
  return key;
}

// ---- LabelOutbox --------------------------------------------------------------------------------

const std::string& PendingChange::image() const {
  static const std::string none;
  if (submission) return submission->image;
  return labels.empty() ? none : labels.front().image;
}

LabelOutbox::Submitter LabelOutbox::submitter_from(Writer writer) {
  if (!writer) return {};
  return [writer = std::move(writer)](const ReadingSubmission&) -> Status {
    auto r = writer({});
    if (!r) return r.error();
    return core::Done{};
  };
}

Result<std::vector<std::int64_t>> LabelOutbox::write(const PendingChange& change, const Writer& writer, const Submitter& submitter) {
  if (!change.submission) return writer(change.labels);
  auto submitted = submitter ? submitter(*change.submission) : submitter_from(writer)(*change.submission);
  if (!submitted) return submitted.error();
  return std::vector<std::int64_t>{};
}

Result<LabelOutbox> LabelOutbox::open(fs::path journal_file, Writer writer, Submitter submitter) {
  auto journal = LabelJournal::open(std::move(journal_file));
  if (!journal) return journal.error();
  return LabelOutbox(std::move(journal.value()), std::move(writer), std::move(submitter));
}

int LabelOutbox::pending() const {
  int n = 0;
  for (const auto& c : journal_.changes()) n += c.refused.empty() ? 1 : 0;
  return n;
}

int LabelOutbox::refused() const { return static_cast<int>(journal_.changes().size()) - pending(); }

PendingChange LabelOutbox::new_change(std::vector<LabelInput> labels) {
  PendingChange change;
  change.key = new_change_key();
  change.created_at = utc_now();
  for (std::size_t k = 0; k < labels.size(); ++k) labels[k].event_key = change.key + "-" + std::to_string(k + 1);
  change.labels = std::move(labels);
  return change;
}

PendingChange LabelOutbox::new_change(ReadingSubmission submission) {
  PendingChange change;
  change.key = new_change_key();
  change.created_at = utc_now();
  change.submission = std::move(submission);
  return change;
}

Result<bool> LabelOutbox::write_now(const Writer& writer, const Submitter& submitter, const PendingChange& change, Submitted& out) {
  auto written = write(change, writer, submitter);
  if (written) {
    out.saved = true;
    out.ids = std::move(written.value());
    return true;
  }
  if (!is_unreachable(written.error())) return written.error();
  out.why_kept = written.error().message;
  return false;
}

std::string LabelOutbox::keep(PendingChange change) {
  std::vector<PendingChange> changes = journal_.changes();
  changes.push_back(std::move(change));
  auto stored = journal_.store(std::move(changes));
  return stored ? std::string() : stored.error().message;
}

std::optional<PendingChange> LabelOutbox::next_pending() const {
  for (const auto& c : journal_.changes())
    if (c.refused.empty()) return c;
  return std::nullopt;
}

bool LabelOutbox::settle(const std::string& key, const Result<std::vector<std::int64_t>>& written, RetryReport& report) {
  if (!written && is_unreachable(written.error())) {
    report.error = written.error();
    return false;
  }
  std::vector<PendingChange> changes = journal_.changes();
  const auto it = std::find_if(changes.begin(), changes.end(), [&](const PendingChange& c) { return c.key == key; });
  if (it == changes.end()) return true;
  if (!it->image().empty()) report.saved_images.push_back(it->image());
  if (written) {
    ++report.saved;
    changes.erase(it);
  } else {  // refused: kept aside, never dropped, never retried
    ++report.refused;
    it->refused = written.error().message;
    report.error = written.error();
  }
  if (auto stored = journal_.store(std::move(changes)); !stored) report.journal_problem = stored.error().message;
  return true;
}

Result<LabelOutbox::Submitted> LabelOutbox::submit(std::vector<LabelInput> labels) {
  if (labels.empty()) return Submitted{true, {}, {}, {}};
  return submit_change(new_change(std::move(labels)));
}

Result<LabelOutbox::Submitted> LabelOutbox::submit_reading(ReadingSubmission submission) {
  return submit_change(new_change(std::move(submission)));
}

Result<LabelOutbox::Submitted> LabelOutbox::submit_change(PendingChange change) {
  Submitted out;
  if (pending() > 0) {
    const RetryReport r = retry();
    if (pending() > 0) out.why_kept = r.error ? r.error->message : "earlier changes are not saved yet";
  }
  if (pending() == 0) {
    auto now = write_now(writer_, submitter_, change, out);
    if (!now) return now.error();
    if (*now) return out;
  }
  out.journal_problem = keep(std::move(change));
  return out;
}

LabelOutbox::RetryReport LabelOutbox::retry() {
  RetryReport report;
  while (auto next = next_pending()) {
    if (!settle(next->key, write(*next, writer_, submitter_), report)) break;
  }
  return report;
}

}  // namespace hilum::app
