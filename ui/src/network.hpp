// Hilum ui: the Storage SCP (app::listen) running in the background while the workstation is
// open (File > Settings > Network). It opens its own connection to the catalog on its own thread;
// each arrival is reported on the GUI thread (the worklist refreshes, the status bar says what came).
#pragma once

#include <QObject>
#include <QPointer>
#include <QString>

#include <atomic>
#include <filesystem>
#include <functional>
#include <thread>

#include "hilum/app/network.hpp"

namespace hilum::ui {

struct Preferences;

// The TLS options the preferences set (disabled when their TLS box is off).
[[nodiscard]] dicom::net::TlsOptions tls_options(const Preferences& preferences);

class BackgroundListener {
 public:
  // `on_line` runs on `context`'s thread (queued), once per arrival and for errors.
  BackgroundListener(std::filesystem::path catalog, app::ListenOptions options, QObject* context,
                     std::function<void(const QString& line, bool arrival)> on_line);
  ~BackgroundListener();  // stops the listener and waits for it
  BackgroundListener(const BackgroundListener&) = delete;
  BackgroundListener& operator=(const BackgroundListener&) = delete;

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace hilum::ui
