// Hilum ui: the workstation's session: the catalog the GUI thread uses, a way for worker threads
// to open their own connection to the same file (a Catalog must never be shared between threads;
// WAL mode lets several connections read while one writes), who is labelling, and the active
// model, loaded once in the background and shared read-only with the workers.
#pragma once

#include <QObject>
#include <QString>
#include <QTimer>

#include <filesystem>
#include <memory>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "hilum/app/catalog.hpp"
#include "hilum/app/classify.hpp"
#include "hilum/app/label_outbox.hpp"
#include "hilum/app/label_sender.hpp"

namespace hilum::ui {

// The workstation's own preferences (QSettings, not the catalog).
struct Preferences {
  QString database;               // empty = app::default_catalog_path()
  QString author;                 // recorded on every label: the OS user (app::current_os_user), not a setting
  int threads = 0;                // worker threads for decode/inference/import; 0 = one per core
  int auto_finetune_after = 0;    // start a fine-tune after this many new labels; 0 = never
  // Network: the Storage SCP in the background (see network.hpp).
  bool listen = false;
  int listen_port = 11112;
  QString listen_aet = "HILUM";
  QString listen_allow;           // "AET[@HOST]" entries, separated by spaces or commas
  // Seconds from a connection to its association request (TLS handshake included) before the
  // listener closes it (dicom::net::Limits::acse_timeout_seconds; 1 to 600).
  int listen_acse_timeout = 15;
  QString pacs_peer;              // where the current image's results go: "AET@HOST:PORT" (our AE title: listen_aet)
  // TLS for the listener, Query PACS and Send results (PEM files; see dicom::net::TlsOptions):
  // the peer's certificate is verified against the CA and/or the pinned peer certificate.
  bool tls = false;
  QString tls_key;
  QString tls_cert;
  QString tls_ca;
  QString tls_peer_cert;
  static Preferences load();
  void save() const;
};

// Loaded models by catalog id, shared between threads. get() may block (loading) and is meant for
// worker threads.
class ModelCache {
 public:
  // The active model of the catalog `catalog` (opened by the worker), loading it when needed.
  app::Result<std::shared_ptr<const app::LoadedModel>> active(app::Catalog& catalog);
  // A loaded model if the cache holds `model_id`, else null (never blocks on loading).
  [[nodiscard]] std::shared_ptr<const app::LoadedModel> peek(std::int64_t model_id) const;

 private:
  mutable std::mutex mutex_;
  std::mutex load_mutex_;  // one load at a time
  std::shared_ptr<const app::LoadedModel> model_;
};

class Session : public QObject {
  Q_OBJECT
 public:
  // Opens (creating) the catalog at `path`.
  static app::Result<std::unique_ptr<Session>> open(const std::filesystem::path& path, const QString& author,
                                                    QObject* parent = nullptr);
  ~Session() override;

  app::Catalog& catalog() { return catalog_; }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] const QString& author() const { return author_; }
  void set_author(const QString& author) { author_ = author; }

  // A new connection to the same catalog for a worker thread (call it on that thread).
  [[nodiscard]] static app::Result<app::Catalog> open_worker_catalog(const std::filesystem::path& path);

  // The active model's record (read on the GUI thread), if any.
  [[nodiscard]] std::optional<app::ModelRecord> active_model();

  // The active model, loaded once and shared read-only by the workers (thread-safe).
  [[nodiscard]] std::shared_ptr<ModelCache> models() const { return models_; }
  // Loads the active model in the background (again when it changed); emits modelReady.
  void reload_model();

  // Labels that could not be saved (the catalog's server cannot be reached) are kept, in memory and
  // in a journal beside the catalog (app::LabelOutbox), and retried every kRetryMs while any is
  // pending, and by retry_labels() ("Retry now"). Each change is written once, in order. The
  // retries run on the sender's own thread and connection (app::LabelSender): a server that does
  // not answer never holds up the window; their outcome comes back as labelsRetried.
  static constexpr int kRetryMs = 5000;
  [[nodiscard]] app::LabelSender& outbox() { return *outbox_; }
  [[nodiscard]] app::Result<app::LabelOutbox::Submitted> submit_labels(std::vector<app::LabelInput> labels);
  // Submits this reader's reading of an image the same way (kept, retried, in order with the labels).
  [[nodiscard]] app::Result<app::LabelOutbox::Submitted> submit_reading(const QString& sop_instance_uid);
  // Starts a retry in the background; false when one is running already or nothing is pending.
  bool retry_labels();
  [[nodiscard]] int pending_labels() const { return outbox_->pending(); }
  [[nodiscard]] int refused_labels() const { return outbox_->refused(); }
  // Why the last attempt to save the pending labels failed ("" when none are pending).
  [[nodiscard]] const QString& pending_reason() const { return pending_reason_; }

  // Announces catalog changes made by the GUI (labels) or by background jobs (import, training).
  void notify_labels_changed(const QString& sop_instance_uid) { Q_EMIT labelsChanged(sop_instance_uid); }
  void notify_catalog_changed() { Q_EMIT catalogChanged(); }
  void notify_models_changed();

 Q_SIGNALS:
  void catalogChanged();
  void labelsChanged(const QString& sop_instance_uid);
  void modelsChanged();
  void modelReady();
  // The number of changes not yet saved (or refused) changed, or a retry failed again.
  void pendingLabelsChanged(int pending);
  // Kept labels of this image were written (or refused) by a retry: what the catalog holds changed.
  void keptLabelsSaved(const QString& sop_instance_uid);
  // A background retry finished (on the GUI thread): changes saved and refused by it.
  void labelsRetried(int saved, int refused);

 private:
  Session(app::Catalog catalog, std::filesystem::path path, QString author, QObject* parent);

  app::Catalog catalog_;
  std::filesystem::path path_;
  QString author_;
  std::shared_ptr<ModelCache> models_ = std::make_shared<ModelCache>();
  std::unique_ptr<app::LabelSender> outbox_;
  QString pending_reason_;
  QTimer retry_timer_;
  void pending_changed(const QString& reason);
  void retried(const app::LabelOutbox::RetryReport& report);  // on the GUI thread
  void kept_or_saved(const app::Result<app::LabelOutbox::Submitted>& submitted, int pending_before);
  app::LabelSender::Done post_retried();
};

QString qstr(const std::string& s);
std::string sstr(const QString& s);

}  // namespace hilum::ui
