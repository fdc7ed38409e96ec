#include "labeller.hpp"

#include <QUndoCommand>

#include "session.hpp"

namespace hilum::ui {

class LabelCommand : public QUndoCommand {
 public:
  LabelCommand(Labeller* labeller, Labeller::Change before, Labeller::Change after, const QString& text)
      : QUndoCommand(text), labeller_(labeller), before_(std::move(before)), after_(std::move(after)) {}
  void redo() override {
    if (first_) {  // already written by Labeller::apply
      first_ = false;
      return;
    }
    labeller_->write(after_);
  }
  void undo() override { labeller_->write(before_); }

 private:
  Labeller* labeller_;
  Labeller::Change before_, after_;
  bool first_ = true;
};

Labeller::Labeller(Session* session, QObject* parent) : QObject(parent), session_(session) {
  setObjectName("labeller");
  reload_vocabulary();
}

void Labeller::reload_vocabulary() {
  findings_.clear();
  auto v = session_->catalog().findings();
  if (!v) {
    Q_EMIT failed(qstr(v.error().message));
    return;
  }
  for (const auto& f : v.value()) findings_ << qstr(f.name);
  // "No Finding" last, the way a report reads.
  if (findings_.removeAll(kNoFinding) > 0) findings_ << kNoFinding;
}

void Labeller::set_image(const QString& sop_instance_uid) {
  image_ = sop_instance_uid;
  undo_.clear();
  reload();
}

void Labeller::refresh() {
  const QString image = image_;
  const bool was_hidden = ai_hidden_;
  reload();
  Q_EMIT changed();
  // The AI's findings were withheld and no longer are (a submission kept while the catalog was
  // away is saved now): they are asked for as after a submission saved at once.
  if (image_ == image && was_hidden && !ai_hidden_) Q_EMIT readingSubmitted();
}

void Labeller::set_model(const QString& version, std::vector<std::pair<std::string, double>> probabilities,
                         std::map<std::string, double> thresholds) {
  model_version_ = version;
  probabilities_ = std::move(probabilities);
  thresholds_ = std::move(thresholds);
  Q_EMIT suggestionChanged();
}

void Labeller::reload() {
  if (image_.isEmpty()) {
    states_.clear();
    others_.clear();
    blinded_ = ai_hidden_ = submitted_ = false;
    return;
  }
  // The reader edits their own labels (each reader has their own; see Catalog::reader_labels) and
  // sees the others' only as blinded reading allows.
  auto view = session_->catalog().reader_view(sstr(image_), sstr(session_->author()));
  if (!view) {  // e.g. the server went away: what was shown stays, with the changes kept since
    Q_EMIT failed(qstr(view.error().message));
    overlay_pending();
    return;
  }
  states_.clear();
  others_.clear();
  blinded_ = view->blinded;
  ai_hidden_ = view->ai_hidden;
  submitted_ = view->submitted;
  for (const auto& e : view->others) others_[qstr(e.finding)] << QStringLiteral("%1: %2").arg(qstr(e.author), qstr(app::to_string(e.value)));
  for (const auto& e : view->own) {
    LabelState s;
    s.value = e.value;
    s.region = e.region;
    s.comment = qstr(e.comment);
    s.author = qstr(e.author);
    s.model_version = qstr(e.model_version.value_or(""));
    states_[qstr(e.finding)] = s;
  }
  overlay_pending();
}

void Labeller::overlay_pending() {
  const std::string image = sstr(image_);
  const std::string author = sstr(session_->author());
  for (const auto& change : session_->outbox().changes()) {
    if (!change.refused.empty()) continue;
    if (change.submission && change.submission->image == image && change.submission->reader == author) submitted_ = true;
    for (const auto& in : change.labels) {
      if (in.image != image || in.author != author) continue;
      if (in.value == app::LabelValue::Cleared) {
        states_.erase(qstr(in.finding));
        continue;
      }
      LabelState& s = states_[qstr(in.finding)];
      s.value = in.value;
      s.region = in.region;
      s.comment = qstr(in.comment);
      s.author = qstr(in.author);
      s.model_version = qstr(in.model_version.value_or(""));
    }
  }
}

QStringList Labeller::others(const QString& finding) const {
  const auto it = others_.find(finding);
  return it == others_.end() ? QStringList() : it->second;
}

bool Labeller::submit() {
  if (image_.isEmpty()) return false;
  // Through the outbox like a label: kept and retried when the catalog cannot be reached.
  auto done = session_->submit_reading(image_);
  if (!done) {
    Q_EMIT failed(qstr(done.error().message));
    return false;
  }
  if (!done->saved) {  // shown as submitted; the others' labels come once it is saved
    submitted_ = true;
    Q_EMIT changed();
    Q_EMIT kept(tr("Reading submitted"), done->why_kept.empty() ? tr("the catalog cannot be reached") : qstr(done->why_kept));
    return true;
  }
  reload();
  Q_EMIT changed();
  Q_EMIT readingSubmitted();
  return true;
}

LabelState Labeller::state(const QString& finding) const {
  const auto it = states_.find(finding);
  return it == states_.end() ? LabelState{} : it->second;
}

std::optional<double> Labeller::probability_of(const QString& finding) const {
  for (const auto& [name, p] : probabilities_)
    if (qstr(name) == finding) return p;
  return std::nullopt;
}

bool Labeller::write(const Change& states) {
  if (image_.isEmpty()) return false;
  std::vector<app::LabelInput> inputs;
  for (const auto& [finding, s] : states) {
    app::LabelInput in;
    in.image = sstr(image_);
    in.finding = sstr(finding);
    in.value = s.value;
    if (s.value == app::LabelValue::Present || s.value == app::LabelValue::Uncertain) in.region = s.region;
    in.author = sstr(session_->author());
    if (!model_version_.isEmpty()) {
      in.model_version = sstr(model_version_);
      in.model_probability = probability_of(finding);
    }
    in.comment = sstr(s.comment);
    in.source = app::LabelSource::Gui;
    inputs.push_back(std::move(in));
  }
  kept_reason_.clear();
  auto written = session_->submit_labels(std::move(inputs));
  if (!written) {
    Q_EMIT failed(qstr(written.error().message));
    reload();
    return false;
  }
  if (!written->saved) {  // kept: shown as set (the catalog cannot be asked now), retried by the session
    kept_reason_ = written->why_kept.empty() ? tr("the catalog cannot be reached") : qstr(written->why_kept);
    overlay_pending();
    Q_EMIT changed();
    return true;
  }
  reload();
  Q_EMIT changed();
  session_->notify_labels_changed(image_);
  return true;
}

bool Labeller::apply(const Change& after, const QString& description) {
  if (image_.isEmpty()) {
    Q_EMIT failed(tr("Open an image first"));
    return false;
  }
  Change before;
  for (const auto& [finding, s] : after) {
    (void)s;
    LabelState old = state(finding);
    before[finding] = old;
  }
  if (!write(after)) return false;
  undo_.push(new LabelCommand(this, std::move(before), after, description));
  if (kept_reason_.isEmpty()) Q_EMIT saved(description);
  else Q_EMIT kept(description, kept_reason_);
  return true;
}

namespace {
QString value_name(app::LabelValue v) {
  switch (v) {
    case app::LabelValue::Present: return QObject::tr("present");
    case app::LabelValue::Absent: return QObject::tr("absent");
    case app::LabelValue::Uncertain: return QObject::tr("uncertain");
    case app::LabelValue::Cleared: return QObject::tr("cleared");
  }
  return {};
}
}  // namespace

bool Labeller::set_value(const QString& finding, app::LabelValue value) {
  Change change;
  LabelState s = state(finding);
  s.value = value;
  if (value == app::LabelValue::Absent || value == app::LabelValue::Cleared) s.region.reset();
  if (value == app::LabelValue::Cleared) s.comment.clear();
  change[finding] = s;
  if (value == app::LabelValue::Present) {
    if (finding == kNoFinding) {
      for (const auto& [other, st] : states_) {
        if (other != kNoFinding && st.value == app::LabelValue::Present) {
          LabelState absent = st;
          absent.value = app::LabelValue::Absent;
          absent.region.reset();
          change[other] = absent;
        }
      }
    } else if (state(kNoFinding).value == app::LabelValue::Present) {
      LabelState nf = state(kNoFinding);
      nf.value = app::LabelValue::Absent;
      change[kNoFinding] = nf;
    }
  }
  return apply(change, QString("%1: %2").arg(finding, value_name(value)));
}

bool Labeller::set_region(const QString& finding, const app::Region& region) {
  if (finding.isEmpty() || finding == kNoFinding) {
    Q_EMIT failed(tr("Select a finding for the region first"));
    return false;
  }
  LabelState s = state(finding);
  if (s.value != app::LabelValue::Uncertain) s.value = app::LabelValue::Present;
  s.region = region;
  Change change{{finding, s}};
  if (state(kNoFinding).value == app::LabelValue::Present) {
    LabelState nf = state(kNoFinding);
    nf.value = app::LabelValue::Absent;
    change[kNoFinding] = nf;
  }
  return apply(change, tr("%1: region").arg(finding));
}

bool Labeller::clear_region(const QString& finding) {
  LabelState s = state(finding);
  if (!s.region) return false;
  s.region.reset();
  return apply({{finding, s}}, tr("%1: region removed").arg(finding));
}

bool Labeller::set_comment(const QString& finding, const QString& comment) {
  LabelState s = state(finding);
  if (s.comment == comment) return false;
  if (s.value == app::LabelValue::Cleared) {
    Q_EMIT failed(tr("Label %1 before commenting on it").arg(finding));
    return false;
  }
  s.comment = comment;
  return apply({{finding, s}}, tr("%1: comment").arg(finding));
}

bool Labeller::accept_ai() {
  if (probabilities_.empty()) {
    Q_EMIT failed(tr("No AI suggestion to accept for this image"));
    return false;
  }
  Change change;
  bool any_present = false;
  for (const auto& [name, p] : probabilities_) {
    const QString finding = qstr(name);
    if (finding == kNoFinding || !findings_.contains(finding)) continue;
    const auto t = thresholds_.find(name);
    const bool present = p >= (t == thresholds_.end() ? 0.5 : t->second);
    LabelState s = state(finding);
    s.value = present ? app::LabelValue::Present : app::LabelValue::Absent;
    if (!present) s.region.reset();
    change[finding] = s;
    any_present = any_present || present;
  }
  for (const auto& [finding, st] : states_) {  // findings the model does not know keep their label
    if (finding != kNoFinding && change.count(finding) == 0 && st.value == app::LabelValue::Present) any_present = true;
  }
  if (findings_.contains(kNoFinding)) {
    LabelState nf = state(kNoFinding);
    nf.value = any_present ? app::LabelValue::Absent : app::LabelValue::Present;
    change[kNoFinding] = nf;
  }
  return apply(change, tr("AI suggestion accepted (%1)").arg(model_version_));
}

}  // namespace hilum::ui
