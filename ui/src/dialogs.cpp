#include "dialogs.hpp"

#include <QDialogButtonBox>
#include <QFile>
#include <QFileDialog>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QPushButton>
#include <QTableWidget>
#include <QTextBrowser>
#include <QThread>
#include <QVBoxLayout>

#include <filesystem>

namespace hilum::ui {

SettingsDialog::SettingsDialog(const Preferences& preferences, QWidget* parent) : QDialog(parent), base_(preferences) {
  setObjectName("settingsDialog");
  setWindowTitle(tr("Settings"));
  resize(620, 420);
  auto* layout = new QVBoxLayout(this);
  auto* form = new QFormLayout;
  auto* db_row = new QHBoxLayout;
  database_ = new QLineEdit(preferences.database, this);
  database_->setObjectName("settingsDatabase");
  database_->setPlaceholderText(QString::fromStdString(app::default_catalog_path().string()));
  auto* browse = new QPushButton(tr("Choose…"), this);
  db_row->addWidget(database_, 1);
  db_row->addWidget(browse);
  form->addRow(tr("Catalog database"), db_row);
  author_ = new QLineEdit(preferences.author, this);
  author_->setObjectName("settingsAuthor");
  author_->setReadOnly(true);  // the OS user: who is reading is not a field anyone can change
  author_->setToolTip(tr("Labels are recorded as the user logged in to this computer"));
  form->addRow(tr("You read as"), author_);
  threads_ = new QSpinBox(this);
  threads_->setObjectName("settingsThreads");
  threads_->setRange(0, 256);
  threads_->setSpecialValueText(tr("one per core (%1)").arg(QThread::idealThreadCount()));
  threads_->setValue(preferences.threads);
  form->addRow(tr("Worker threads"), threads_);
  auto_finetune_ = new QSpinBox(this);
  auto_finetune_->setObjectName("settingsAutoFinetune");
  auto_finetune_->setRange(0, 100000);
  auto_finetune_->setSpecialValueText(tr("never (only \"Fine-tune now\")"));
  auto_finetune_->setSuffix(tr(" new labels"));
  auto_finetune_->setValue(preferences.auto_finetune_after);
  form->addRow(tr("Fine-tune automatically after"), auto_finetune_);
  layout->addLayout(form);
  // Network: receive from modalities and the PACS while Hilum is open.
  auto* network = new QGroupBox(tr("Network"), this);
  network->setObjectName("settingsNetwork");
  auto* net_form = new QFormLayout(network);
  listen_ = new QCheckBox(tr("Receive images (DICOM Storage SCP) in the background"), network);
  listen_->setObjectName("settingsListen");
  listen_->setChecked(preferences.listen);
  net_form->addRow(listen_);
  listen_port_ = new QSpinBox(network);
  listen_port_->setObjectName("settingsListenPort");
  listen_port_->setRange(1, 65535);
  listen_port_->setValue(preferences.listen_port);
  net_form->addRow(tr("Port"), listen_port_);
  listen_aet_ = new QLineEdit(preferences.listen_aet, network);
  listen_aet_->setObjectName("settingsListenAet");
  listen_aet_->setMaxLength(16);
  net_form->addRow(tr("Our AE title"), listen_aet_);
  listen_allow_ = new QLineEdit(preferences.listen_allow, network);
  listen_allow_->setObjectName("settingsListenAllow");
  listen_allow_->setPlaceholderText(tr("MODALITY1@10.0.0.5 PACS"));
  net_form->addRow(tr("Accept from (AET or AET@address)"), listen_allow_);
  listen_acse_timeout_ = new QSpinBox(network);
  listen_acse_timeout_->setObjectName("settingsAcseTimeout");
  listen_acse_timeout_->setRange(1, 600);
  listen_acse_timeout_->setSuffix(tr(" s"));
  listen_acse_timeout_->setValue(preferences.listen_acse_timeout);
  listen_acse_timeout_->setToolTip(tr("A connection that has not sent its association request (TLS handshake included) "
                                      "this long after it was accepted is closed, however slowly it sends"));
  net_form->addRow(tr("Association request within"), listen_acse_timeout_);
  pacs_peer_ = new QLineEdit(preferences.pacs_peer, network);
  pacs_peer_->setObjectName("settingsPacsPeer");
  pacs_peer_->setPlaceholderText(tr("PACS@pacs.example.org:104"));
  pacs_peer_->setToolTip(tr("File > Send results to the PACS sends the current image's report and attention map here"));
  net_form->addRow(tr("Send results to (AET@host:port)"), pacs_peer_);
  tls_ = new QCheckBox(tr("TLS (the listener accepts nothing else; Query PACS and Send results use it too)"), network);
  tls_->setObjectName("settingsTls");
  tls_->setChecked(preferences.tls);
  net_form->addRow(tls_);
  const auto pem = [&](QLineEdit*& edit, const QString& value, const char* name, const QString& label, const QString& tip) {
    edit = new QLineEdit(value, network);
    edit->setObjectName(name);
    edit->setPlaceholderText(tr("PEM file"));
    edit->setToolTip(tip);
    net_form->addRow(label, edit);
  };
  pem(tls_key_, preferences.tls_key, "settingsTlsKey", tr("Our private key"), tr("Not encrypted"));
  pem(tls_cert_, preferences.tls_cert, "settingsTlsCert", tr("Our certificate"), tr("Shown to the peers"));
  pem(tls_ca_, preferences.tls_ca, "settingsTlsCa", tr("Trusted CA"),
      tr("Peers must present a certificate signed by this CA"));
  pem(tls_peer_cert_, preferences.tls_peer_cert, "settingsTlsPeerCert", tr("Trusted peer certificate"),
      tr("A peer presenting this very certificate is accepted"));
  layout->addWidget(network);
  auto* note = new QLabel(tr("A new catalog location takes effect when Hilum starts again."), this);
  note->setWordWrap(true);
  layout->addWidget(note);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
  layout->addWidget(buttons);
  connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  connect(browse, &QPushButton::clicked, this, [this] {
    const QString f = QFileDialog::getSaveFileName(this, tr("Catalog database"), database_->text(), tr("SQLite catalog (*.db)"),
                                                   nullptr, QFileDialog::DontConfirmOverwrite);
    if (!f.isEmpty()) database_->setText(f);
  });
}

Preferences SettingsDialog::preferences() const {
  Preferences p = base_;
  p.database = database_->text().trimmed();
  p.author = base_.author;
  p.threads = threads_->value();
  p.auto_finetune_after = auto_finetune_->value();
  p.listen = listen_->isChecked();
  p.listen_port = listen_port_->value();
  p.listen_aet = listen_aet_->text().trimmed().isEmpty() ? base_.listen_aet : listen_aet_->text().trimmed();
  p.listen_allow = listen_allow_->text().trimmed();
  p.listen_acse_timeout = listen_acse_timeout_->value();
  p.pacs_peer = pacs_peer_->text().trimmed();
  p.tls = tls_->isChecked();
  p.tls_key = tls_key_->text().trimmed();
  p.tls_cert = tls_cert_->text().trimmed();
  p.tls_ca = tls_ca_->text().trimmed();
  p.tls_peer_cert = tls_peer_cert_->text().trimmed();
  return p;
}

ShortcutsDialog::ShortcutsDialog(const ShortcutSheet& sheet, QWidget* parent) : QDialog(parent) {
  setObjectName("shortcutsDialog");
  setWindowTitle(tr("Keyboard shortcuts"));
  resize(580, 860);
  auto* layout = new QVBoxLayout(this);
  auto* table = new QTableWidget(0, 2, this);
  table->setObjectName("shortcutsTable");
  table->setHorizontalHeaderLabels({tr("Keys"), tr("Action")});
  table->horizontalHeader()->setSectionResizeMode(0, QHeaderView::ResizeToContents);
  table->horizontalHeader()->setStretchLastSection(true);
  table->verticalHeader()->setVisible(false);
  table->verticalHeader()->setDefaultSectionSize(20);
  table->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table->setSelectionMode(QAbstractItemView::NoSelection);
  for (const auto& [keys, action] : sheet) {
    const int r = table->rowCount();
    table->insertRow(r);
    if (keys.isEmpty()) {
      auto* title = new QTableWidgetItem(action);
      QFont f = title->font();
      f.setBold(true);
      title->setFont(f);
      table->setItem(r, 0, title);
      table->setSpan(r, 0, 1, 2);
    } else {
      auto* k = new QTableWidgetItem(keys);
      QFont mono("monospace");
      mono.setStyleHint(QFont::Monospace);
      k->setFont(mono);
      table->setItem(r, 0, k);
      table->setItem(r, 1, new QTableWidgetItem(action));
    }
  }
  layout->addWidget(table);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close, this);
  layout->addWidget(buttons);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
}

AboutDialog::AboutDialog(Session* session, QWidget* parent) : QDialog(parent) {
  setObjectName("aboutDialog");
  setWindowTitle(tr("About Hilum"));
  resize(640, 560);
  auto* layout = new QVBoxLayout(this);
  auto* text = new QTextBrowser(this);
  text->setObjectName("aboutText");
  text->setOpenExternalLinks(false);
  QString md = tr("# Hilum %1\n\nAn offline chest X-ray workstation: DICOM display, a Vision Transformer that shows where "
                  "it looked, labels kept with who set them and which model was on screen, and fine-tuning on this "
                  "machine.\n\n*Research and workflow software, not a medical device.*\n\n")
                   .arg(HILUM_VERSION);
  md += tr("Catalog: `%1`\n\n").arg(qstr(app::shown_catalog_location(session->path().string())));
  const auto model = session->active_model();
  if (!model) {
    md += tr("## Model card\n\nNo active model: import one with Models > Import….\n");
  } else {
    md += tr("## Model card: %1\n\n").arg(qstr(model->version));
    md += tr("- Status: %1 (%2)\n- Strategy: %3\n- Created: %4\n- Folder: `%5`\n")
              .arg(qstr(app::to_string(model->status)), qstr(model->status_reason), qstr(model->strategy), qstr(model->created_at), qstr(model->path));
    const auto hp = QJsonDocument::fromJson(QByteArray::fromStdString(model->hyperparameters)).object();
    if (!hp.isEmpty()) {
      md += tr("- Architecture and training: ");
      QStringList parts;
      for (auto it = hp.begin(); it != hp.end(); ++it)
        if (it.value().isDouble()) {
          // Six significant digits: a float hyperparameter read back as a double shows as 0.1, not 0.10000000149.
          parts << QString("%1 %2").arg(it.key(), QString::number(it.value().toDouble(), 'g', 6));
        } else if (!it.value().isObject() && !it.value().isArray()) {
          parts << QString("%1 %2").arg(it.key(), it.value().toVariant().toString());
        }
      md += parts.join(", ") + "\n";
    }
    const auto metrics = QJsonDocument::fromJson(QByteArray::fromStdString(model->metrics)).object();
    if (metrics.value("mean_auroc").isDouble()) {
      md += tr("- Mean validation AUROC: %1 on %2 images of %3 patients\n")
                .arg(metrics.value("mean_auroc").toDouble(), 0, 'f', 3)
                .arg(metrics.value("images").toInt())
                .arg(metrics.value("patients").toInt());
    }
    // A Hugging Face model card (README.md) in the model's folder, when there is one.
    const auto card = std::filesystem::path(model->path) / "README.md";
    QFile f(QString::fromStdString(card.string()));
    if (f.open(QIODevice::ReadOnly)) md += "\n---\n\n" + QString::fromUtf8(f.readAll());
    else md += tr("\nThe model folder has no model card (README.md).\n");
  }
  text->setMarkdown(md);
  layout->addWidget(text);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close, this);
  layout->addWidget(buttons);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
}

}  // namespace hilum::ui
