#include "network.hpp"

#include "session.hpp"

#include <QMetaObject>

namespace hilum::ui {

dicom::net::TlsOptions tls_options(const Preferences& p) {
  dicom::net::TlsOptions t;
  if (!p.tls) return t;  // off
  t.on = true;  // a box ticked without files is refused, never plain
  const auto file = [](const QString& s) { return std::filesystem::path(sstr(s.trimmed())); };
  t.key = file(p.tls_key);
  t.certificate = file(p.tls_cert);
  if (!p.tls_ca.trimmed().isEmpty()) t.ca.push_back(file(p.tls_ca));
  if (!p.tls_peer_cert.trimmed().isEmpty()) t.peer_certificates.push_back(file(p.tls_peer_cert));
  return t;
}

BackgroundListener::BackgroundListener(std::filesystem::path catalog, app::ListenOptions options, QObject* context,
                                       std::function<void(const QString&, bool)> on_line) {
  QPointer<QObject> guard(context);
  auto post = [guard, on_line](QString line, bool arrival) {
    if (!guard) return;
    QMetaObject::invokeMethod(
        guard.data(), [guard, on_line, line, arrival] { if (guard) on_line(line, arrival); }, Qt::QueuedConnection);
  };
  thread_ = std::thread([this, catalog = std::move(catalog), options = std::move(options), post]() {
    auto opened = app::Catalog::open(catalog, app::Catalog::Mode::ReadWrite);
    if (!opened) {
      post(QString::fromStdString("Network: " + opened.error().message), false);
      return;
    }
    auto on_arrival = [&post](const app::Arrival& a) {
      const std::string line = std::string(app::to_string(a.filed.outcome)) + " " + a.instance.sop_instance_uid + " from " +
                               a.instance.calling_ae + "@" + a.instance.peer_host +
                               (a.filed.reason.empty() ? std::string() : ": " + a.filed.reason);
      post(QString::fromStdString(line), a.filed.outcome == app::ReceivedFile::Outcome::Imported);
    };
    auto log = [&post](const dicom::net::Event& e) {
      if (e.kind == dicom::net::EventKind::AssociationRejected || e.kind == dicom::net::EventKind::Aborted ||
          e.kind == dicom::net::EventKind::Refused || e.kind == dicom::net::EventKind::Error ||
          e.kind == dicom::net::EventKind::Listening) {
        post(QString::fromStdString(std::string("Network: ") + dicom::net::to_string(e.kind) + " " + e.peer + ": " + e.message), false);
      }
    };
    auto r = app::listen(*opened, options, on_arrival, log, &stop_);
    if (!r) post(QString::fromStdString("Network: " + r.error().message), false);
  });
}

BackgroundListener::~BackgroundListener() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

}  // namespace hilum::ui
