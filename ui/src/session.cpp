#include "session.hpp"

#include <QSettings>
#include <QThreadPool>

#include <cstdlib>

#include "async.hpp"

namespace hilum::ui {

QThreadPool* display_pool() {
  static QThreadPool* pool = [] {
    auto* p = new QThreadPool;
    p->setMaxThreadCount(2);
    p->setExpiryTimeout(-1);  // threads stay: no start-up cost when the next image opens
    return p;
  }();
  return pool;
}

QThreadPool* ai_pool() {
  static QThreadPool* pool = [] {
    auto* p = new QThreadPool;
    p->setMaxThreadCount(1);
    p->setExpiryTimeout(-1);
    return p;
  }();
  return pool;
}

QString qstr(const std::string& s) { return QString::fromStdString(s); }
std::string sstr(const QString& s) { return s.toStdString(); }

Preferences Preferences::load() {
  QSettings s;
  Preferences p;
  p.database = s.value("database").toString();
  // The reader is the OS user, never a free-text setting anyone could change.
  p.author = qstr(app::current_os_user());
  // A stored value that is not a number, or out of range (edited by hand, another version), falls
  // back to the default instead of reaching the thread pools.
  const auto number = [&s](const char* key, int lo, int hi) {
    bool ok = false;
    const int v = s.value(key, 0).toInt(&ok);
    return ok && v >= lo && v <= hi ? v : 0;
  };
  p.threads = number("threads", 0, 256);
  p.auto_finetune_after = number("auto_finetune_after", 0, 1000000);
  p.listen = s.value("network/listen", false).toBool();
  {
    bool ok = false;
    const int port = s.value("network/port", 11112).toInt(&ok);
    p.listen_port = ok && port > 0 && port < 65536 ? port : 11112;
  }
  {
    bool ok = false;
    const int seconds = s.value("network/acse_timeout", 15).toInt(&ok);
    p.listen_acse_timeout = ok && seconds >= 1 && seconds <= 600 ? seconds : 15;
  }
  p.listen_aet = s.value("network/aet", "HILUM").toString();
  p.listen_allow = s.value("network/allow").toString();
  p.pacs_peer = s.value("network/pacs").toString();
  p.tls = s.value("network/tls", false).toBool();
  p.tls_key = s.value("network/tls_key").toString();
  p.tls_cert = s.value("network/tls_cert").toString();
  p.tls_ca = s.value("network/tls_ca").toString();
  p.tls_peer_cert = s.value("network/tls_peer_cert").toString();
  return p;
}

void Preferences::save() const {
  QSettings s;
  s.setValue("database", database);
  s.setValue("threads", threads);
  s.setValue("auto_finetune_after", auto_finetune_after);
  s.setValue("network/listen", listen);
  s.setValue("network/port", listen_port);
  s.setValue("network/aet", listen_aet);
  s.setValue("network/allow", listen_allow);
  s.setValue("network/acse_timeout", listen_acse_timeout);
  s.setValue("network/pacs", pacs_peer);
  s.setValue("network/tls", tls);
  s.setValue("network/tls_key", tls_key);
  s.setValue("network/tls_cert", tls_cert);
  s.setValue("network/tls_ca", tls_ca);
  s.setValue("network/tls_peer_cert", tls_peer_cert);
}

app::Result<std::shared_ptr<const app::LoadedModel>> ModelCache::active(app::Catalog& catalog) {
  auto record = catalog.active_model();
  if (!record) return record.error();
  if (!record->has_value()) return app::Error{app::ErrorKind::NotFound, "No model: import one with Models > Import…"};
  const std::int64_t id = (*record)->id;
  std::lock_guard load_lock(load_mutex_);
  if (auto m = peek(id)) return m;
  auto loaded = app::load_model(catalog, (*record)->version);
  if (!loaded) return loaded.error();
  auto shared = std::make_shared<const app::LoadedModel>(std::move(loaded.value()));
  std::lock_guard lock(mutex_);
  model_ = shared;
  return shared;
}

std::shared_ptr<const app::LoadedModel> ModelCache::peek(std::int64_t model_id) const {
  std::lock_guard lock(mutex_);
  if (model_ && model_->record.id == model_id) return model_;
  return nullptr;
}

Session::Session(app::Catalog catalog, std::filesystem::path path, QString author, QObject* parent)
    : QObject(parent), catalog_(std::move(catalog)), path_(std::move(path)), author_(std::move(author)) {
  // The retries' own connection, opened on the sender's thread.
  const auto open_own = [path = path_] { return open_worker_catalog(path); };
  const std::filesystem::path journal = app::pending_labels_file(catalog_);
  auto outbox = app::LabelSender::open(journal, open_own);
  if (!outbox) {
    // A damaged journal is moved aside (kept for whoever wants to read it), never overwritten.
    std::filesystem::path aside = journal;
    aside += ".damaged-" + app::new_change_key().substr(0, 8);
    std::error_code ec;
    std::filesystem::rename(journal, aside, ec);
    qWarning("hilum: %s; moved to %s", outbox.error().message.c_str(), aside.c_str());
    outbox = app::LabelSender::open(ec ? std::filesystem::path(journal.string() + ".new") : journal, open_own);
    if (!outbox) qFatal("hilum: %s", outbox.error().message.c_str());
  }
  outbox_ = std::move(outbox.value());
  retry_timer_.setInterval(kRetryMs);
  connect(&retry_timer_, &QTimer::timeout, this, [this] { (void)retry_labels(); });
  // What an earlier session kept is retried from the start.
  if (outbox_->pending() > 0) QTimer::singleShot(0, this, [this] { (void)retry_labels(); });
}

void Session::pending_changed(const QString& reason) {
  pending_reason_ = outbox_->pending() > 0 ? reason : QString();
  if (outbox_->pending() > 0 && !retry_timer_.isActive()) retry_timer_.start();
  if (outbox_->pending() == 0) retry_timer_.stop();
  Q_EMIT pendingLabelsChanged(outbox_->pending());
}

app::Result<app::LabelOutbox::Submitted> Session::submit_labels(std::vector<app::LabelInput> labels) {
  const int before = outbox_->pending();
  const auto direct = [this](const std::vector<app::LabelInput>& in) { return catalog_.add_labels(in); };
  auto submitted = outbox_->submit(std::move(labels), direct, post_retried());
  kept_or_saved(submitted, before);
  return submitted;
}

app::Result<app::LabelOutbox::Submitted> Session::submit_reading(const QString& sop_instance_uid) {
  const int before = outbox_->pending();
  const auto direct = [this](const app::ReadingSubmission& s) { return catalog_.submit_reading(s.image, s.reader); };
  auto submitted = outbox_->submit_reading({sstr(sop_instance_uid), sstr(author_)}, direct, post_retried());
  kept_or_saved(submitted, before);
  return submitted;
}

void Session::kept_or_saved(const app::Result<app::LabelOutbox::Submitted>& submitted, int pending_before) {
  if (submitted && (!submitted->saved || pending_before != outbox_->pending())) {
    QString reason = qstr(submitted->why_kept);
    if (!submitted->journal_problem.empty()) reason += tr(" (kept in memory only: %1)").arg(qstr(submitted->journal_problem));
    pending_changed(reason);
  }
}

app::LabelSender::Done Session::post_retried() {
  // Called on the sender's thread; the report is handled on this object's (the GUI) thread. The
  // sender is stopped before this object goes (~Session), and Qt drops events of a deleted object.
  return [this](const app::LabelOutbox::RetryReport& report) {
    QMetaObject::invokeMethod(this, [this, report] { retried(report); }, Qt::QueuedConnection);
  };
}

bool Session::retry_labels() { return outbox_->retry(post_retried()); }

void Session::retried(const app::LabelOutbox::RetryReport& report) {
  QString reason = report.error ? qstr(report.error->message) : QString();
  if (!report.journal_problem.empty()) reason += tr(" (journal: %1)").arg(qstr(report.journal_problem));
  pending_changed(reason);
  for (const auto& image : report.saved_images) {
    Q_EMIT keptLabelsSaved(qstr(image));
    notify_labels_changed(qstr(image));
  }
  Q_EMIT labelsRetried(report.saved, report.refused);
}

// The sender's thread first (it may still be waiting for a server), while this object is whole.
Session::~Session() { outbox_.reset(); }

app::Result<std::unique_ptr<Session>> Session::open(const std::filesystem::path& path, const QString& author, QObject* parent) {
  auto catalog = app::Catalog::open(path);
  if (!catalog) return catalog.error();
  // First run: the built-in model becomes the active model (a failure leaves the catalog without one);
  // after an upgrade, a newer built-in model becomes a candidate in the model manager.
  if (auto builtin = app::register_builtin_model(*catalog); !builtin) {
    qWarning("hilum: the built-in model was not registered: %s", builtin.error().message.c_str());
  }
  // On PostgreSQL the database role is the reader, and the database refuses labels in another
  // name: the title bar and the labels use it. (On SQLite it is the OS user, as `author` is.)
  const QString reader = catalog->reader() != app::current_os_user() ? QString::fromStdString(catalog->reader()) : author;
  return std::unique_ptr<Session>(new Session(std::move(catalog.value()), path, reader, parent));
}

app::Result<app::Catalog> Session::open_worker_catalog(const std::filesystem::path& path) {
  return app::Catalog::open(path, app::Catalog::Mode::ReadWrite);
}

std::optional<app::ModelRecord> Session::active_model() {
  auto m = catalog_.active_model();
  if (!m || !m->has_value()) return std::nullopt;
  return **m;
}

void Session::reload_model() {
  const auto db = path_;
  auto cache = models_;
  run_async(
      this, ai_pool(),
      [db, cache]() -> app::Status {
        auto catalog = open_worker_catalog(db);
        if (!catalog) return catalog.error();
        auto m = cache->active(catalog.value());
        if (!m) return m.error();
        return core::Done{};
      },
      [this](const app::Status&) { Q_EMIT modelReady(); });
}

void Session::notify_models_changed() {
  Q_EMIT modelsChanged();
  reload_model();
}

}  // namespace hilum::ui
