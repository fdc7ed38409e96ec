// Shared by the ui tests that drive the whole workstation: the main window on a catalog, opened
// and shown as a reader ("dr.test") would see it.
#pragma once

#include <QApplication>
#include <QtGlobal>

#include <filesystem>
#include <memory>

#include "main_window.hpp"
#include "session.hpp"

namespace hilum::uitest {

inline std::unique_ptr<ui::MainWindow> open_main_window(const std::filesystem::path& db, ui::Preferences prefs = {}) {
  auto session = ui::Session::open(db, "dr.test");
  if (!session) qFatal("%s", session.error().message.c_str());
  prefs.author = "dr.test";
  auto w = std::make_unique<ui::MainWindow>(std::move(session.value()), prefs);
  w->show();
  QApplication::setActiveWindow(w.get());
  return w;
}

}  // namespace hilum::uitest
