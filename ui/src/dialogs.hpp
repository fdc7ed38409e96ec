// Hilum ui: settings (database location, author, threads, automatic fine-tune threshold), the
// keyboard shortcut sheet, and About with the active model's card.
#pragma once

#include <QCheckBox>
#include <QDialog>
#include <QLineEdit>
#include <QSpinBox>
#include <QString>
#include <QStringList>
#include <utility>
#include <vector>

#include "session.hpp"

namespace hilum::ui {

class SettingsDialog : public QDialog {
  Q_OBJECT
 public:
  SettingsDialog(const Preferences& preferences, QWidget* parent = nullptr);
  [[nodiscard]] Preferences preferences() const;

 private:
  Preferences base_;
  QLineEdit* database_ = nullptr;
  QLineEdit* author_ = nullptr;
  QSpinBox* threads_ = nullptr;
  QSpinBox* auto_finetune_ = nullptr;
  QCheckBox* listen_ = nullptr;
  QSpinBox* listen_port_ = nullptr;
  QLineEdit* listen_aet_ = nullptr;
  QLineEdit* listen_allow_ = nullptr;
  QSpinBox* listen_acse_timeout_ = nullptr;
  QLineEdit* pacs_peer_ = nullptr;
  QCheckBox* tls_ = nullptr;
  QLineEdit* tls_key_ = nullptr;
  QLineEdit* tls_cert_ = nullptr;
  QLineEdit* tls_ca_ = nullptr;
  QLineEdit* tls_peer_cert_ = nullptr;
};

// (keys, what they do) rows, grouped by section titles (rows whose keys are empty).
using ShortcutSheet = std::vector<std::pair<QString, QString>>;

class ShortcutsDialog : public QDialog {
  Q_OBJECT
 public:
  ShortcutsDialog(const ShortcutSheet& sheet, QWidget* parent = nullptr);
};

class AboutDialog : public QDialog {
  Q_OBJECT
 public:
  AboutDialog(Session* session, QWidget* parent = nullptr);
};

}  // namespace hilum::ui
