// Hilum ui: labelling one image. Every change is written to the catalog at once (append-only label
// events, source "gui", with the author and the model version and probability that were on screen)
// and can be undone and redone: undo appends the earlier state again, nothing is ever deleted.
// "No Finding" is kept exclusive: setting it present sets the present findings absent in the same
// change, and setting a finding present sets "No Finding" absent.
#pragma once

#include <QObject>
#include <QString>
#include <QUndoStack>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "hilum/app/catalog.hpp"

namespace hilum::ui {

class Session;

struct LabelState {
  app::LabelValue value = app::LabelValue::Cleared;  // Cleared = no current label
  std::optional<app::Region> region;
  QString comment;
  QString author;
  QString model_version;
};

inline constexpr const char* kNoFinding = "No Finding";

class Labeller : public QObject {
  Q_OBJECT
 public:
  explicit Labeller(Session* session, QObject* parent = nullptr);

  // The image being labelled (reloads its current labels; clears the undo history).
  void set_image(const QString& sop_instance_uid);
  // Reads the image's labels again (kept changes were saved meanwhile); the undo history stays.
  // Emits readingSubmitted when the AI's findings were withheld and no longer are.
  void refresh();
  [[nodiscard]] const QString& image() const { return image_; }
  // What the AI panel shows, recorded with each label.
  void set_model(const QString& version, std::vector<std::pair<std::string, double>> probabilities,
                 std::map<std::string, double> thresholds);

  [[nodiscard]] QStringList findings() const { return findings_; }
  [[nodiscard]] LabelState state(const QString& finding) const;
  [[nodiscard]] const std::map<QString, LabelState>& states() const { return states_; }
  // Several readers: the states above are this reader's own labels. Other readers' current labels
  // per finding ("dr.a: present"), empty while blinded reading withholds them.
  [[nodiscard]] QStringList others(const QString& finding) const;
  [[nodiscard]] bool blinded() const { return blinded_; }      // others' labels withheld
  [[nodiscard]] bool ai_hidden() const { return ai_hidden_; }  // and the AI's findings
  [[nodiscard]] bool submitted() const { return submitted_; }
  // Submits this reader's reading of the image (blinded reading then shows the rest).
  bool submit();

  // Each returns false (and emits failed with the reason) when nothing was written.
  bool set_value(const QString& finding, app::LabelValue value);
  bool set_region(const QString& finding, const app::Region& region);
  bool clear_region(const QString& finding);
  bool set_comment(const QString& finding, const QString& comment);
  bool accept_ai();
  // The AI panel shows findings that accept_ai would take (none while withheld, computing, without
  // a model, or outside the model's domain).
  [[nodiscard]] bool has_suggestion() const { return !probabilities_.empty(); }

  QUndoStack* undo_stack() { return &undo_; }
  void reload_vocabulary();

 Q_SIGNALS:
  void changed();                          // labels of the current image changed (written)
  // The AI's findings of the current image may be shown now: the reader's reading was saved as
  // submitted (at once, or later from the outbox: see refresh).
  void readingSubmitted();
  void suggestionChanged();                // set_model: has_suggestion() may have changed
  void saved(const QString& description);  // e.g. "Effusion: present"
  // The change could not be saved (the catalog cannot be reached): it is kept and retried (see
  // Session::submit_labels), and shown as this reader's labels meanwhile.
  void kept(const QString& description, const QString& why);
  void failed(const QString& message);

 private:
  friend class LabelCommand;
  using Change = std::map<QString, LabelState>;  // finding -> state to write
  // Writes `after` (the states to reach), recording `before` for undo; false on error.
  bool apply(const Change& after, const QString& description);
  bool write(const Change& states);  // appends the events, reloads
  void reload();
  void overlay_pending();  // this reader's kept changes of the image, over what the catalog said
  [[nodiscard]] std::optional<double> probability_of(const QString& finding) const;

  Session* session_;
  QString image_;
  QStringList findings_;
  std::map<QString, LabelState> states_;
  std::map<QString, QStringList> others_;
  bool blinded_ = false;
  bool ai_hidden_ = false;
  bool submitted_ = false;
  QString model_version_;
  std::vector<std::pair<std::string, double>> probabilities_;
  std::map<std::string, double> thresholds_;
  QUndoStack undo_;
  QString kept_reason_;  // set by write() when the change was kept, not saved
};

}  // namespace hilum::ui
