#include "pacs_dialog.hpp"

#include <QCoreApplication>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QVBoxLayout>

#include <algorithm>

#include "async.hpp"
#include "hilum/app/network.hpp"
#include "session.hpp"

namespace hilum::ui {
namespace {

namespace net = dicom::net;

QLineEdit* field(QWidget* parent, const char* name, const QString& placeholder = {}) {
  auto* e = new QLineEdit(parent);
  e->setObjectName(name);
  e->setPlaceholderText(placeholder);
  return e;
}

}  // namespace

QueryPacsDialog::QueryPacsDialog(std::filesystem::path catalog, QWidget* parent) : QDialog(parent), catalog_(std::move(catalog)) {
  setObjectName("queryPacsDialog");
  setWindowTitle(tr("Query PACS"));
  resize(900, 560);
  auto* layout = new QVBoxLayout(this);
  auto* form = new QFormLayout;
  peer_ = field(this, "pacsPeer", "PACS@pacs.example.org:104");
  our_aet_ = field(this, "pacsOurAet");
  our_aet_->setText("HILUM");
  patient_id_ = field(this, "pacsPatientId");
  patient_name_ = field(this, "pacsPatientName", tr("wildcards * and ? allowed"));
  accession_ = field(this, "pacsAccession");
  from_ = field(this, "pacsFrom", "YYYYMMDD");
  to_ = field(this, "pacsTo", "YYYYMMDD");
  modality_ = field(this, "pacsModality", "CR, DX");
  form->addRow(tr("PACS (AET@host:port)"), peer_);
  form->addRow(tr("Our AE title"), our_aet_);
  form->addRow(tr("Patient ID"), patient_id_);
  form->addRow(tr("Patient name"), patient_name_);
  form->addRow(tr("Accession number"), accession_);
  auto* dates = new QHBoxLayout;
  dates->addWidget(from_);
  dates->addWidget(to_);
  form->addRow(tr("Study date from / to"), dates);
  form->addRow(tr("Modality"), modality_);
  layout->addLayout(form);
  table_ = new QTableWidget(0, 7, this);
  table_->setObjectName("pacsResults");
  table_->setHorizontalHeaderLabels({tr("Patient ID"), tr("Name"), tr("Date"), tr("Accession"), tr("Modalities"), tr("Description"), tr("Images")});
  table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  // The description takes what the other columns leave (each sized to its text, at most 200 pixels,
  // after a search); one line per study, the whole text in the tooltip.
  table_->horizontalHeader()->setSectionResizeMode(5, QHeaderView::Stretch);
  table_->verticalHeader()->setVisible(false);
  table_->setWordWrap(false);
  table_->setTextElideMode(Qt::ElideRight);
  layout->addWidget(table_, 1);
  status_ = new QLabel(this);
  status_->setObjectName("pacsStatus");
  status_->setWordWrap(true);
  layout->addWidget(status_);
  auto* buttons = new QHBoxLayout;
  search_ = new QPushButton(tr("Search"), this);
  search_->setObjectName("pacsSearch");
  retrieve_ = new QPushButton(tr("Retrieve selected"), this);
  retrieve_->setObjectName("pacsRetrieve");
  cancel_ = new QPushButton(tr("Cancel"), this);
  cancel_->setObjectName("pacsCancel");
  cancel_->setEnabled(false);
  buttons->addWidget(search_);
  buttons->addStretch(1);
  buttons->addWidget(retrieve_);
  buttons->addWidget(cancel_);
  layout->addLayout(buttons);
  connect(search_, &QPushButton::clicked, this, &QueryPacsDialog::search);
  connect(retrieve_, &QPushButton::clicked, this, &QueryPacsDialog::retrieve_selected);
  connect(cancel_, &QPushButton::clicked, this, [this] { *cancel_flag_ = true; });
}

QueryPacsDialog::~QueryPacsDialog() { *cancel_flag_ = true; }

void QueryPacsDialog::set_busy(bool busy) {
  busy_ = busy;
  search_->setEnabled(!busy);
  retrieve_->setEnabled(!busy);
  cancel_->setEnabled(busy);
}

std::optional<net::ScuOptions> QueryPacsDialog::scu_options() {
  auto peer = net::parse_peer(sstr(peer_->text().trimmed()));
  if (!peer) {
    status_->setText(qstr(peer.error().message));
    return std::nullopt;
  }
  net::ScuOptions o;
  o.peer = *peer;
  o.our_ae = sstr(our_aet_->text().trimmed());
  o.tls = tls_;
  return o;
}

void QueryPacsDialog::search() {
  if (busy_) return;
  const auto scu = scu_options();
  if (!scu) return;
  const net::ScuOptions& o = *scu;
  net::StudyQuery q;
  q.patient_id = sstr(patient_id_->text().trimmed());
  q.patient_name = sstr(patient_name_->text().trimmed());
  q.accession_number = sstr(accession_->text().trimmed());
  q.date_from = sstr(from_->text().trimmed());
  q.date_to = sstr(to_->text().trimmed());
  q.modality = sstr(modality_->text().trimmed());
  *cancel_flag_ = false;
  set_busy(true);
  status_->setText(tr("Searching %1…").arg(qstr(net::to_string(o.peer))));
  auto flag = cancel_flag_;
  run_async(this, [o, q, flag] { return net::find_studies(o, q, flag.get()); },
            [this](dicom::Result<std::vector<net::StudyMatch>> r) {
              set_busy(false);
              if (!r) {
                status_->setText(qstr(r.error().message));
                return;
              }
              table_->setRowCount(0);
              for (const auto& m : *r) {
                const int row = table_->rowCount();
                table_->insertRow(row);
                const QStringList cells = {qstr(m.patient_id), qstr(m.patient_name), qstr(m.study_date), qstr(m.accession_number),
                                           qstr(m.modalities), qstr(m.study_description),
                                           m.instances < 0 ? QString() : QString::number(m.instances)};
                for (int c = 0; c < cells.size(); ++c) {
                  auto* item = new QTableWidgetItem(cells[c]);
                  item->setData(Qt::UserRole, qstr(m.study_instance_uid));
                  item->setToolTip(cells[c]);
                  table_->setItem(row, c, item);
                }
              }
              for (int c = 0; c < table_->columnCount(); ++c) {
                if (c == 5) continue;
                table_->resizeColumnToContents(c);
                table_->setColumnWidth(c, std::min(table_->columnWidth(c), 200));
              }
              status_->setText(tr("%n studies", nullptr, static_cast<int>(r->size())));
            });
}

void QueryPacsDialog::retrieve_selected() {
  if (busy_) return;
  std::vector<std::string> studies;
  for (const auto& range : table_->selectionModel()->selectedRows()) {
    studies.push_back(sstr(table_->item(range.row(), 0)->data(Qt::UserRole).toString()));
  }
  if (studies.empty()) {
    status_->setText(tr("Select the studies to retrieve."));
    return;
  }
  const auto scu = scu_options();
  if (!scu) return;
  const net::ScuOptions& o = *scu;
  *cancel_flag_ = false;
  set_busy(true);
  status_->setText(tr("Retrieving %n studies…", nullptr, static_cast<int>(studies.size())));
  auto flag = cancel_flag_;
  QPointer<QueryPacsDialog> self(this);
  const auto path = catalog_;
  run_async(
      this,
      [o, studies, flag, path, self]() -> app::Result<net::RetrieveReport> {
        auto catalog = app::Catalog::open(path, app::Catalog::Mode::ReadWrite);
        if (!catalog) return catalog.error();
        auto progress = [self](const net::RetrieveProgress& p) {
          const QString text = QObject::tr("Retrieving: %1 received, %2 to go in this study")
                                   .arg(p.received)
                                   .arg(p.remaining < 0 ? 0 : p.remaining);
          // Through the application object (always there): `self` is only looked at on the GUI thread.
          post_to_gui(QCoreApplication::instance(), [self, text] {
            if (self) self->status_->setText(text);
          });
        };
        return app::retrieve(*catalog, o, studies, {}, {}, progress, flag.get());
      },
      [this](app::Result<net::RetrieveReport> r) {
        set_busy(false);
        if (!r) {
          status_->setText(qstr(r.error().message));
          return;
        }
        status_->setText(tr("Retrieved %1 images (%2 not kept).").arg(r->received).arg(r->refused));
        if (r->received > 0) Q_EMIT retrieved();
      });
}

}  // namespace hilum::ui
