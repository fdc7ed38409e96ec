// Issue 13: the model manager starts a masked-autoencoder pre-training on the catalog's own films.
// Driven as a person would, offscreen (QT_QPA_PLATFORM=offscreen): Models > Pre-train, one epoch of
// a tiny encoder with progress and the loss as it comes, the backbone folder beside the catalog's
// models and listed by the manager with what to do with it; Cancel keeps the checkpoint and starting
// again with the same name resumes; a taken name is refused; a failure says why; quitting during a
// pre-training asks, cancels and keeps the checkpoint.
#include <QApplication>
#include <QSettings>
#include <QSignalSpy>
#include <QtTest>


#include <cmath>
#include <filesystem>
#include <memory>

#include "hilum/app/catalog.hpp"
#include "hilum/app/pretrain.hpp"
#include "hilum/inference/vit.hpp"
#include "learning.hpp"
#include "main_window.hpp"
#include "main_window_fixture.hpp"
#include "pretrain_dialog.hpp"
#include "ui_fixtures.hpp"

namespace fs = std::filesystem;
using namespace hilum;

class Pretrain : public QObject {
  Q_OBJECT

 private:
  fs::path dir_;
  fs::path films_;

  std::unique_ptr<ui::MainWindow> open_window(const fs::path& db) { return uitest::open_main_window(db); }

  // A catalog of the phantom films (created on first use).
  fs::path catalog(const std::string& name) {
    const fs::path db = dir_ / (name + ".db");
    uitest::import_into(db, {films_});
    return db;
  }

  // A tiny encoder so that an epoch takes milliseconds: 4 patches of 16 pixels, one kept.
  static app::PretrainOptions tiny() {
    app::PretrainOptions o;
    o.arch = "vit-ti16-d6";
    o.image_size = 32;
    o.batch_size = 4;
    o.max_images = 4;
    o.learning_rate = 1e-3f;
    o.mae.mask_ratio = 0.75f;
    o.mae.decoder_hidden = 16;
    o.mae.decoder_heads = 2;
    o.mae.decoder_layers = 1;
    o.mae.decoder_intermediate = 32;
    o.precision = inference::Precision::F32;
    return o;
  }

  // Models > Pre-train on this catalog's films…, as a person opens it.
  static ui::PretrainDialog* open_dialog(ui::MainWindow& w) {
    w.action("actionModelManager")->trigger();
    auto* manager = w.findChild<ui::ModelManager*>();
    if (manager == nullptr) return nullptr;
    QTest::mouseClick(manager->findChild<QPushButton*>("modelPretrain"), Qt::LeftButton);
    auto* dialog = manager->findChild<ui::PretrainDialog*>();
    if (dialog == nullptr || !dialog->isVisible()) return nullptr;
    dialog->set_options(tiny());
    return dialog;
  }

  static QString text(QWidget* parent, const char* name) {
    auto* label = parent->findChild<QLabel*>(name);
    return label ? label->text() : QString("<no %1>").arg(name);
  }

  static int row_of(QTableWidget* table, const QString& name) {
    for (int r = 0; r < table->rowCount(); ++r)
      if (table->item(r, 0) && table->item(r, 0)->text() == name) return r;
    return -1;
  }

 private Q_SLOTS:
  void initTestCase() {
    dir_ = uitest::make_temp_dir("hilum-ui-pretrain");
    QSettings::setDefaultFormat(QSettings::IniFormat);
    QSettings::setPath(QSettings::IniFormat, QSettings::UserScope, QString::fromStdString((dir_ / "settings").string()));
    films_ = dir_ / "dicom";
    uitest::write_phantoms(films_, 6, 1, 96, 96);
  }

  void cleanupTestCase() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void pretrainsOneEpochAndTheManagerShowsTheBackbone() {
    const fs::path db = catalog("one");
    auto w = open_window(db);
    auto* dialog = open_dialog(*w);
    QVERIFY(dialog != nullptr);
    auto* name = dialog->findChild<QLineEdit*>("pretrainName");
    QCOMPARE(name->text(), QString("mae-backbone"));
    QVERIFY2(text(dialog, "pretrainNote").contains("resumes"), qPrintable(text(dialog, "pretrainNote")));
    dialog->findChild<QSpinBox*>("pretrainEpochs")->setValue(1);
    auto* bar = dialog->findChild<QProgressBar*>("pretrainProgress");
    QSignalSpy bar_moved(bar, &QProgressBar::valueChanged);
    QSignalSpy epochs(dialog, &ui::PretrainDialog::epochFinished);
    QSignalSpy finished(dialog, &ui::PretrainDialog::finished_pretrain);
    QTest::mouseClick(dialog->findChild<QPushButton*>("pretrainStart"), Qt::LeftButton);
    QVERIFY(dialog->running());
    QVERIFY(w->running_jobs().contains("a pre-training"));
    QVERIFY(!dialog->findChild<QPushButton*>("pretrainStart")->isEnabled());
    QVERIFY(dialog->findChild<QPushButton*>("pretrainCancel")->isEnabled());
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 60000);
    QVERIFY2(finished[0][0].toBool(), qPrintable(dialog->error()));
    // Progress and the loss as they came.
    QVERIFY(bar_moved.count() > 0);
    QCOMPARE(epochs.count(), 1);
    QCOMPARE(epochs[0][0].toInt(), 1);
    const double loss = epochs[0][1].toDouble();
    QVERIFY2(std::isfinite(loss) && loss > 0.0, qPrintable(QString::number(loss)));
    QVERIFY(dialog->report().has_value());
    QCOMPARE(dialog->report()->loss.size(), std::size_t{1});
    QCOMPARE(dialog->report()->images, 4);
    QVERIFY2(text(dialog, "pretrainLosses").contains("epoch 1: " + QString::number(loss, 'f', 4)), qPrintable(text(dialog, "pretrainLosses")));
    QCOMPARE(bar->value(), bar->maximum());
    // The backbone, in the catalog's models folder, and what to do with it.
    const fs::path backbone = dialog->backbone_dir();
    QCOMPARE(QString::fromStdString(backbone.filename().string()), QString("mae-backbone"));
    QCOMPARE(backbone.parent_path(), dir_ / "one.models");
    QVERIFY(fs::exists(backbone / "config.json"));
    QVERIFY(fs::exists(backbone / "model.safetensors"));
    QVERIFY(fs::exists(backbone / "pretrain_report.json"));
    QVERIFY2(text(dialog, "pretrainSummary").contains("--init"), qPrintable(text(dialog, "pretrainSummary")));
    auto* manager = w->findChild<ui::ModelManager*>();
    auto* table = manager->backbones();
    const int row = row_of(table, "mae-backbone");
    QVERIFY(row >= 0);
    QCOMPARE(table->item(row, 1)->text(), QString("ready"));
    QCOMPARE(table->item(row, 2)->text(), QString("1"));
    QCOMPARE(table->item(row, 4)->text(), QString("4"));
    table->setCurrentCell(row, 0);
    const QString details = manager->findChild<QPlainTextEdit*>("modelDetails")->toPlainText();
    QVERIFY2(details.contains("hilum-cli train --data LABELLED_FOLDER --init \"" + QString::fromStdString(backbone.string()) + "\""),
             qPrintable(details));
    // The next run never writes over it: a new name is offered, and the taken one is refused.
    QCOMPARE(name->text(), QString("mae-backbone-2"));
    QVERIFY(dialog->findChild<QComboBox*>("pretrainInit")->findData(QString::fromStdString(backbone.string())) > 0);
    name->setText("mae-backbone");
    QVERIFY2(text(dialog, "pretrainNote").contains("exists already"), qPrintable(text(dialog, "pretrainNote")));
    QVERIFY(!dialog->findChild<QPushButton*>("pretrainStart")->isEnabled());
    name->setText("my backbone");
    QVERIFY2(text(dialog, "pretrainNote").contains("only letters"), qPrintable(text(dialog, "pretrainNote")));
    QVERIFY(!dialog->findChild<QPushButton*>("pretrainStart")->isEnabled());
    QVERIFY(w->close());
  }

  void cancelKeepsTheCheckpointAndStartingAgainResumes() {
    const fs::path db = catalog("cancel");
    auto w = open_window(db);
    auto* dialog = open_dialog(*w);
    QVERIFY(dialog != nullptr);
    dialog->findChild<QSpinBox*>("pretrainEpochs")->setValue(1000);  // far more than runs before the cancel
    auto* cancel = dialog->findChild<QPushButton*>("pretrainCancel");
    connect(dialog, &ui::PretrainDialog::epochFinished, this, [cancel](int epoch) {
      if (epoch == 1) QTest::mouseClick(cancel, Qt::LeftButton);
    });
    QSignalSpy finished(dialog, &ui::PretrainDialog::finished_pretrain);
    QTest::mouseClick(dialog->findChild<QPushButton*>("pretrainStart"), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 60000);
    QVERIFY(!finished[0][0].toBool());
    QVERIFY2(dialog->cancelled(), qPrintable(dialog->error()));
    const fs::path backbone = dialog->backbone_dir();
    QVERIFY(!fs::exists(backbone));
    fs::path checkpoints = backbone;
    checkpoints += ".checkpoints";
    QVERIFY(fs::exists(checkpoints / "state.json"));
    QVERIFY2(text(dialog, "pretrainSummary").contains("resumes"), qPrintable(text(dialog, "pretrainSummary")));
    // The manager lists the stopped run; the dialog keeps its name and says that it resumes.
    auto* manager = w->findChild<ui::ModelManager*>();
    const int row = row_of(manager->backbones(), "mae-backbone");
    QVERIFY(row >= 0);
    QVERIFY2(manager->backbones()->item(row, 1)->text().startsWith("stopped after epoch"), qPrintable(manager->backbones()->item(row, 1)->text()));
    const int kept = manager->backbone_list()[static_cast<std::size_t>(row)].epochs;
    QVERIFY(kept >= 1 && kept < 1000);
    qInfo("cancelled after epoch %d", kept);
    QCOMPARE(static_cast<int>(dialog->losses().size()), kept);  // the epoch cut short is not shown as done
    QVERIFY2(text(dialog, "pretrainPhase").startsWith("Cancelled after epoch " + QString::number(kept)), qPrintable(text(dialog, "pretrainPhase")));
    QCOMPARE(dialog->findChild<QLineEdit*>("pretrainName")->text(), QString("mae-backbone"));
    QVERIFY2(text(dialog, "pretrainNote").contains("stopped after epoch " + QString::number(kept)), qPrintable(text(dialog, "pretrainNote")));
    // Starting again resumes after the kept epoch.
    dialog->disconnect(this);
    dialog->findChild<QSpinBox*>("pretrainEpochs")->setValue(kept + 1);
    QTest::mouseClick(dialog->findChild<QPushButton*>("pretrainStart"), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 2, 60000);
    QVERIFY2(finished[1][0].toBool(), qPrintable(dialog->error()));
    QCOMPARE(dialog->report()->resumed_after_epoch, kept);
    QCOMPARE(dialog->report()->loss.size(), static_cast<std::size_t>(kept + 1));
    QVERIFY(fs::exists(backbone / "model.safetensors"));
    QVERIFY(w->close());
  }

  // With an active model, its encoder is the starting point offered first: a site adapts the model
  // it reads with to its own scanners, and the backbone keeps that model's size.
  void theActiveModelsEncoderIsOfferedFirst() {
    const fs::path db = catalog("active");
    uitest::write_random_vit(dir_ / "active-vit", {}, 11);
    uitest::register_model(db, dir_ / "active-vit", "random-vit-active");
    auto w = open_window(db);
    auto* dialog = open_dialog(*w);
    QVERIFY(dialog != nullptr);
    auto* init = dialog->findChild<QComboBox*>("pretrainInit");
    QCOMPARE(init->count(), 2);
    QCOMPARE(fs::path(init->currentData().toString().toStdString()), dir_ / "active-vit");
    QVERIFY2(init->currentText().contains("random-vit-active"), qPrintable(init->currentText()));
    QVERIFY(init->itemData(0).toString().isEmpty());  // a new encoder stays a choice
    dialog->findChild<QSpinBox*>("pretrainEpochs")->setValue(1);
    QSignalSpy finished(dialog, &ui::PretrainDialog::finished_pretrain);
    QTest::mouseClick(dialog->findChild<QPushButton*>("pretrainStart"), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 60000);
    QVERIFY2(finished[0][0].toBool(), qPrintable(dialog->error()));
    QVERIFY2(QString::fromStdString(dialog->report()->report_json).contains("\"continued from active-vit\""),
             qPrintable(QString::fromStdString(dialog->report()->report_json)));
    // The backbone has the active model's encoder size (32 wide), not the tiny default's (vit-ti16-d6).
    auto backbone = inference::ViTModel::load(dialog->backbone_dir());
    QVERIFY2(backbone.ok(), "the backbone does not load");
    auto model = inference::ViTModel::load(dir_ / "active-vit");
    QVERIFY(model.ok());
    QCOMPARE(backbone->config().hidden_size, model->config().hidden_size);
    QCOMPARE(backbone->config().num_layers, model->config().num_layers);
    // After a finished run the user's choice is kept, not reset to the active model.
    init->setCurrentIndex(0);
    Q_EMIT init->activated(0);
    dialog->set_options(tiny());
    QVERIFY(init->currentData().toString().isEmpty());
    QVERIFY(w->close());
  }

  void aFailureSaysWhy() {
    const fs::path db = dir_ / "empty.db";  // no films
    auto w = open_window(db);
    auto* dialog = open_dialog(*w);
    QVERIFY(dialog != nullptr);
    QSignalSpy finished(dialog, &ui::PretrainDialog::finished_pretrain);
    QTest::mouseClick(dialog->findChild<QPushButton*>("pretrainStart"), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(finished.count() == 1, 30000);
    QVERIFY(!finished[0][0].toBool());
    QVERIFY(!dialog->cancelled());
    QCOMPARE(text(dialog, "pretrainPhase"), QString("Pre-training failed."));
    QVERIFY2(text(dialog, "pretrainSummary").contains("the catalog has no films"), qPrintable(text(dialog, "pretrainSummary")));
    QVERIFY2(w->findChild<ui::ModelManager*>()->last_message().contains("the catalog has no films"),
             qPrintable(w->findChild<ui::ModelManager*>()->last_message()));
    QVERIFY(w->close());
  }

  void quittingDuringAPretrainingAsksAndKeepsTheCheckpoint() {
    const fs::path db = catalog("quit");
    auto w = open_window(db);
    QStringList questions;
    w->set_quit_question([&](const QString& q) {
      questions << q;
      return true;
    });
    auto* dialog = open_dialog(*w);
    QVERIFY(dialog != nullptr);
    dialog->findChild<QSpinBox*>("pretrainEpochs")->setValue(1000);
    QSignalSpy epochs(dialog, &ui::PretrainDialog::epochFinished);
    QTest::mouseClick(dialog->findChild<QPushButton*>("pretrainStart"), Qt::LeftButton);
    QTRY_VERIFY_WITH_TIMEOUT(epochs.count() >= 1, 30000);
    const fs::path backbone = dialog->backbone_dir();
    QVERIFY(!w->close());
    QCOMPARE(questions.size(), 1);
    QVERIFY2(questions[0].contains("a pre-training"), qPrintable(questions[0]));
    QTRY_VERIFY_WITH_TIMEOUT(!w->isVisible(), 20000);
    w.reset();
    fs::path checkpoints = backbone;
    checkpoints += ".checkpoints";
    QVERIFY(fs::exists(checkpoints / "state.json"));
    QVERIFY(!fs::exists(backbone));
  }
};

QTEST_MAIN(Pretrain)
#include "test_pretrain.moc"
