// hilum: the radiologist's workstation.
//   hilum [--db PATH] [FILES OR FOLDERS TO IMPORT...]
#include <QApplication>
#include <QCommandLineParser>
#include <QMessageBox>

#include <filesystem>
#include <vector>

#include "main_window.hpp"

int main(int argc, char** argv) {
  QApplication app(argc, argv);
  QApplication::setApplicationName("Hilum");
  QApplication::setOrganizationName("Hilum");
  QApplication::setApplicationVersion(HILUM_VERSION);

  QCommandLineParser parser;
  parser.setApplicationDescription("Hilum: an offline chest X-ray workstation.");
  parser.addHelpOption();
  parser.addVersionOption();
  QCommandLineOption db({"d", "db"}, "The catalog database (default: settings, $HILUM_DB, ~/.local/share/Hilum/hilum.db).", "PATH");
  parser.addOption(db);
  parser.addPositionalArgument("paths", "DICOM files, folders or DICOMDIRs to import at start.", "[PATHS...]");
  parser.process(app);

  auto preferences = hilum::ui::Preferences::load();
  std::filesystem::path path = parser.isSet(db)                 ? std::filesystem::path(parser.value(db).toStdString())
                               : !preferences.database.isEmpty() ? std::filesystem::path(preferences.database.toStdString())
                                                                 : hilum::app::default_catalog_path();
  auto session = hilum::ui::Session::open(path, preferences.author);
  if (!session) {
    QMessageBox::critical(nullptr, "Hilum", QString("The catalog %1 cannot be opened: %2")
                                                .arg(QString::fromStdString(path.string()), QString::fromStdString(session.error().message)));
    return 2;
  }
  hilum::ui::MainWindow window(std::move(session.value()), preferences);
  window.show();
  std::vector<std::filesystem::path> inputs;
  for (const auto& p : parser.positionalArguments()) inputs.emplace_back(p.toStdString());
  if (!inputs.empty()) window.import_paths(inputs);
  return QApplication::exec();
}
