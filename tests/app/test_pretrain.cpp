// app::pretrain_from_folders (masked-autoencoder pre-training) on a few generated PNGs: the
// backbone folder and report it writes, unreadable files skipped and reported, cancel and resume,
// damaged checkpoints refused with a reason and the last good one used, and train --init from the
// backbone (a fresh classifier for the folder's findings on the pre-trained encoder).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <cmath>
#include <fstream>
#include <random>

#include "hilum/app/png.hpp"
#include "hilum/app/pretrain.hpp"
#include "hilum/app/train.hpp"
#include "temp_dir_test.hpp"

namespace fs = std::filesystem;

namespace hilum::test {
namespace {

class PretrainTest : public TempDirTest {
 protected:
  // `n` 32x32 grey PNGs in films/ (two sub-folders: the search is recursive), one broken PNG and a
  // text file.
  void write_films(int n) {
    std::mt19937 rng(9);
    std::uniform_int_distribution<int> noise(30, 200);
    for (int i = 0; i < n; ++i) {
      const fs::path dir = path("films") / (i % 2 == 0 ? "a" : "b");
      fs::create_directories(dir);
      std::vector<std::uint8_t> px(32 * 32);
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) px[static_cast<std::size_t>(y * 32 + x)] = static_cast<std::uint8_t>((x * 4 + noise(rng)) / 2);
      ASSERT_TRUE(app::write_png_gray8(dir / ("film" + std::to_string(i) + ".png"), 32, 32, px).ok());
    }
    std::ofstream(path("films") / "broken.png") << "not a png";
    std::ofstream(path("films") / "README.txt") << "notes";
  }
  app::PretrainOptions options() const {
    app::PretrainOptions o;
    o.data = {path("films")};
    o.out = path("backbone");
    o.arch = "vit-ti16-d6";
    o.image_size = 32;
    o.epochs = 2;
    o.batch_size = 4;
    o.learning_rate = 1e-3f;
    o.mae.mask_ratio = 0.75f;  // 4 patches: 1 kept
    o.mae.decoder_hidden = 16;
    o.mae.decoder_heads = 2;
    o.mae.decoder_layers = 1;
    o.mae.decoder_intermediate = 32;
    o.precision = inference::Precision::F32;
    return o;
  }
  fs::path checkpoints() const { return path("backbone.checkpoints"); }
};

TEST_F(PretrainTest, WritesABackboneADecoderAndTheLossCurve) {
  write_films(8);
  auto r = app::pretrain_from_folders(options());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->images, 8);
  ASSERT_EQ(r->skipped.size(), 1u);
  EXPECT_NE(r->skipped[0].find("broken.png"), std::string::npos) << r->skipped[0];
  ASSERT_EQ(r->loss.size(), 2u);
  for (double l : r->loss) EXPECT_TRUE(std::isfinite(l) && l > 0.0) << l;
  EXPECT_EQ(r->resumed_after_epoch, 0);
  auto model = inference::ViTModel::load(path("backbone"));
  ASSERT_TRUE(model.ok()) << model.error().message;
  EXPECT_FALSE(model->weights().has_classifier);
  EXPECT_EQ(model->config().num_layers, 6);
  EXPECT_EQ(model->config().input_width, 32);
  auto decoder = training::load_decoder(path("backbone") / "mae_decoder.safetensors", model->config());
  ASSERT_TRUE(decoder.ok()) << decoder.error().message;
  EXPECT_EQ(decoder->mae.decoder_hidden, 16);
  std::ifstream in(path("backbone") / "pretrain_report.json");
  const auto report = nlohmann::json::parse(in, nullptr, false);
  ASSERT_TRUE(report.is_object());
  ASSERT_EQ(report["loss"].size(), 2u);
  EXPECT_DOUBLE_EQ(report["loss"][1]["loss"].get<double>(), r->loss[1]);
  EXPECT_EQ(report["images"], 8);
  EXPECT_EQ(report["skipped"], 1);
  // The last two epochs' checkpoints stay, so that a damaged newest one has a fallback.
  EXPECT_TRUE(fs::exists(checkpoints() / "epoch-1" / "checkpoint.json"));
  EXPECT_TRUE(fs::exists(checkpoints() / "epoch-2" / "checkpoint.json"));
  // Nothing readable: an error, not an empty model.
  fs::create_directories(path("empty"));
  std::ofstream(path("empty") / "x.png") << "junk";
  app::PretrainOptions none = options();
  none.data = {path("empty")};
  none.out = path("none");
  EXPECT_FALSE(app::pretrain_from_folders(none).ok());
}

TEST_F(PretrainTest, ResumesAfterCancelAndRefusesDamagedCheckpoints) {
  write_films(8);
  app::PretrainOptions o = options();
  std::atomic<bool> cancel{false};
  auto first = app::pretrain_from_folders(o, [&](const app::FinetuneProgress& p) { if (p.epoch == 2) cancel = true; }, &cancel);
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.error().kind, app::ErrorKind::Interrupted);
  EXPECT_FALSE(fs::exists(path("backbone")));
  auto resumed = app::pretrain_from_folders(o);
  ASSERT_TRUE(resumed.ok()) << resumed.error().message;
  EXPECT_EQ(resumed->resumed_after_epoch, 1);
  ASSERT_EQ(resumed->loss.size(), 2u);
  EXPECT_TRUE(resumed->refused_checkpoints.empty());

  // Truncate the newest checkpoint's weights: refused with its reason, epoch 1's used instead.
  const fs::path weights = checkpoints() / "epoch-2" / "model.safetensors";
  fs::resize_file(weights, fs::file_size(weights) / 2);
  auto again = app::pretrain_from_folders(o);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->resumed_after_epoch, 1);
  ASSERT_EQ(again->refused_checkpoints.size(), 1u);
  EXPECT_NE(again->refused_checkpoints[0].find("epoch-2"), std::string::npos) << again->refused_checkpoints[0];
  EXPECT_NE(again->refused_checkpoints[0].find("checksum"), std::string::npos) << again->refused_checkpoints[0];
  EXPECT_DOUBLE_EQ(again->loss[0], resumed->loss[0]) << "epoch 1's loss comes from its checkpoint";

  // A flipped byte in both checkpoints' decoders and a damaged state.json: nothing good is left,
  // so the run is refused and the checkpoints are left alone.
  for (const char* e : {"epoch-1", "epoch-2"}) {
    std::fstream f(checkpoints() / e / "mae_decoder.safetensors", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  std::ofstream(checkpoints() / "state.json") << "{\"epo";
  auto refused = app::pretrain_from_folders(o);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("state.json"), std::string::npos) << refused.error().message;
  EXPECT_NE(refused.error().message.find("mae_decoder.safetensors does not match its checksum"), std::string::npos) << refused.error().message;
  EXPECT_TRUE(fs::exists(checkpoints() / "epoch-1" / "model.safetensors"));
  EXPECT_TRUE(fs::exists(checkpoints() / "epoch-2" / "model.safetensors"));
}

TEST_F(PretrainTest, TrainInitFromTheBackboneGetsAFreshClassifier) {
  write_films(4);
  app::PretrainOptions p = options();
  p.epochs = 1;
  auto pre = app::pretrain_from_folders(p);
  ASSERT_TRUE(pre.ok()) << pre.error().message;
  auto backbone = inference::ViTModel::load(path("backbone"));
  ASSERT_TRUE(backbone.ok());
  // A labelled folder: NORMAL and PNEUMONIA.
  for (const std::string cls : {"NORMAL", "PNEUMONIA"}) {
    fs::create_directories(path("labelled") / cls);
    for (int i = 0; i < 8; ++i) {
      std::vector<std::uint8_t> px(32 * 32, static_cast<std::uint8_t>(cls == "NORMAL" ? 60 + i : 180 + i));
      ASSERT_TRUE(app::write_png_gray8(path("labelled") / cls / ("p" + std::to_string(i) + "_x.png"), 32, 32, px).ok());
    }
  }
  app::TrainOptions t;
  t.data = {app::DataSource::folder(path("labelled"))};
  t.out = path("classifier");
  t.init = path("backbone");
  t.epochs = 1;
  t.batch_size = 8;
  t.learning_rate = 0.0f;  // no update: the written encoder must be the backbone's exactly
  t.validation_fraction = 0.3;
  t.dtype = inference::DType::F32;
  t.precision = inference::Precision::F32;
  auto r = app::train_from_folder(t);
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto model = inference::ViTModel::load(path("classifier"));
  ASSERT_TRUE(model.ok()) << model.error().message;
  EXPECT_EQ(model->config().labels, std::vector<std::string>{"Pneumonia"});
  ASSERT_TRUE(model->weights().has_classifier);
  EXPECT_EQ(model->weights().classifier.w.rows(), 1);
  EXPECT_GT(model->weights().classifier.w.norm(), 0.0f) << "the classifier is initialised, not zero";
  EXPECT_EQ(model->weights().blocks[3].fc1.w, backbone->weights().blocks[3].fc1.w);
  EXPECT_EQ(model->weights().position, backbone->weights().position);
  EXPECT_NE(r->report_json.find("encoder of"), std::string::npos);
}

// --hold-out-seed: the films of the patients `train --seed N` validates on are left out of a
// training folder (the same patients train holds out, every film of a patient on one side);
// a folder of unlabelled films is used whole.
TEST_F(PretrainTest, HoldOutSeedLeavesOutTrainsValidationPatients) {
  write_films(4);
  // 30 patients, two films each, half NORMAL and half PNEUMONIA.
  for (int i = 0; i < 30; ++i) {
    const std::string cls = i % 2 == 0 ? "NORMAL" : "PNEUMONIA";
    fs::create_directories(path("labelled") / cls);
    for (int k = 0; k < 2; ++k) {
      std::vector<std::uint8_t> px(32 * 32, static_cast<std::uint8_t>(40 + 5 * i + k));
      ASSERT_TRUE(app::write_png_gray8(path("labelled") / cls / ("person" + std::to_string(i) + "_v" + std::to_string(k) + ".png"), 32, 32, px).ok());
    }
  }
  auto held = app::held_out_files(path("labelled"), app::PatientSplit{1, 0.3, 0});
  ASSERT_TRUE(held.ok()) << held.error().message;
  ASSERT_FALSE(held->empty());
  ASSERT_LT(held->size(), 60u);
  for (int i = 0; i < 30; ++i) {
    const std::string cls = i % 2 == 0 ? "NORMAL" : "PNEUMONIA";
    const auto film = [&](int k) { return (path("labelled") / cls / ("person" + std::to_string(i) + "_v" + std::to_string(k) + ".png")).string(); };
    EXPECT_EQ(held->contains(film(0)), held->contains(film(1))) << "patient " << i << " is split across the sides";
  }
  auto other_seed = app::held_out_files(path("labelled"), app::PatientSplit{2, 0.3, 0});
  ASSERT_TRUE(other_seed.ok());
  EXPECT_NE(*held, *other_seed) << "the split depends on the seed";
  // Folds of the same seed are disjoint, together hold out every patient (three of 0.3, and the
  // last 10% no fold), and fold 0 is the split without folds.
  std::set<std::string> covered = *held, fold1;
  for (int fold = 1; fold < 3; ++fold) {
    auto other_fold = app::held_out_files(path("labelled"), app::PatientSplit{1, 0.3, fold});
    ASSERT_TRUE(other_fold.ok());
    EXPECT_FALSE(other_fold->empty()) << "fold " << fold;
    if (fold == 1) fold1 = *other_fold;
    for (const auto& f : *other_fold) EXPECT_TRUE(covered.insert(f).second) << f << " is held out by two folds";
  }
  EXPECT_GE(covered.size(), 40u) << "three folds of 30% hold out about 90% of the films";
  EXPECT_LT(covered.size(), 60u);
  EXPECT_EQ(app::PatientSplit({1, 0.3, 0}).folds(), 3);
  EXPECT_EQ(app::PatientSplit({1, 0.15, 0}).folds(), 6);
  auto beyond = app::held_out_files(path("labelled"), app::PatientSplit{1, 0.3, 3});
  ASSERT_TRUE(beyond.ok());
  EXPECT_TRUE(beyond->empty()) << "the 10% after the last whole fold is no fold";
  // films/a: two films, no sub-folders (films/ itself, with a/ and b/, reads as class folders).
  auto unlabelled = app::held_out_files(path("films") / "a", app::PatientSplit{1, 0.3, 0});
  ASSERT_TRUE(unlabelled.ok()) << unlabelled.error().message;
  EXPECT_TRUE(unlabelled->empty()) << "a folder of unlabelled films has no validation patients";

  // The same patients as train's own validation split.
  app::TrainOptions t;
  t.data = {app::DataSource::folder(path("labelled"))};
  t.out = path("classifier");
  t.arch = "vit-ti16-d6";
  t.image_size = 32;
  t.epochs = 1;
  t.batch_size = 8;
  t.validation_fraction = 0.3;
  t.seed = 1;
  t.layer_decay = 0.5f;
  t.precision = inference::Precision::F32;
  app::PretrainOptions p = options();
  p.epochs = 1;
  p.data = {path("labelled"), path("films") / "a"};
  p.hold_out_seed = 1;
  p.validation_fraction = 0.3;
  auto pre = app::pretrain_from_folders(p);
  ASSERT_TRUE(pre.ok()) << pre.error().message;
  EXPECT_EQ(pre->held_out, static_cast<int>(held->size()));
  EXPECT_EQ(pre->images, 60 - static_cast<int>(held->size()) + 2) << "every unlabelled film, the labelled ones of training patients";
  std::ifstream in(path("backbone") / "pretrain_report.json");
  const auto report = nlohmann::json::parse(in, nullptr, false);
  ASSERT_TRUE(report.is_object());
  EXPECT_EQ(report["hold_out_seed"], 1);
  EXPECT_EQ(report["held_out_images"], held->size());
  t.init = path("backbone");
  auto trained = app::train_from_folder(t);
  ASSERT_TRUE(trained.ok()) << trained.error().message;
  EXPECT_EQ(trained->validation_images, static_cast<int>(held->size())) << "pre-training left out exactly train's validation films";
  EXPECT_EQ(nlohmann::json::parse(trained->report_json)["layer_decay"], 0.5);
  // Another fold: train holds out that fold's films and says which fold; a fold beyond the last is refused.
  t.validation_fold = 1;
  t.out = path("classifier-fold1");
  auto other = app::train_from_folder(t);
  ASSERT_TRUE(other.ok()) << other.error().message;
  EXPECT_EQ(other->validation_images, static_cast<int>(fold1.size()));
  EXPECT_EQ(nlohmann::json::parse(other->report_json)["validation_fold"], 1);
  t.validation_fold = 3;
  auto beyond_last = app::train_from_folder(t);
  ASSERT_FALSE(beyond_last.ok());
  EXPECT_NE(beyond_last.error().message.find("fold 3"), std::string::npos) << beyond_last.error().message;
}

// The GUI's model manager keeps a catalog's backbones in its models folder: a run stopped after an
// epoch is listed as resumable under its name, a finished one with its loss curve, and a name that is
// taken or not a plain folder name is refused.
TEST_F(PretrainTest, CatalogBackbonesLiveInTheModelsFolder) {
  write_films(8);
  auto catalog = app::Catalog::open(path("site.db"));
  ASSERT_TRUE(catalog.ok()) << catalog.error().message;
  auto listed = app::catalog_backbones(*catalog);
  ASSERT_TRUE(listed.ok()) << listed.error().message;
  EXPECT_TRUE(listed->empty());
  auto name = app::free_backbone_name(*catalog, "mae");
  ASSERT_TRUE(name.ok()) << name.error().message;
  EXPECT_EQ(*name, "mae");
  auto dir = app::catalog_backbone_dir(*catalog, "mae");
  ASSERT_TRUE(dir.ok()) << dir.error().message;
  EXPECT_EQ(dir->parent_path(), path("site.models"));

  // Stopped after epoch 1 (cancelled when the first epoch ends).
  app::PretrainOptions o = options();
  o.out = *dir;
  std::atomic<bool> cancel{false};
  auto stopped = app::pretrain_from_folders(
      o, [&](const app::FinetuneProgress& p) { if (p.phase == app::Phase::EpochDone && p.epoch == 1) cancel = true; }, &cancel);
  ASSERT_FALSE(stopped.ok());
  EXPECT_EQ(stopped.error().kind, app::ErrorKind::Interrupted);
  listed = app::catalog_backbones(*catalog);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].name, "mae");
  EXPECT_FALSE((*listed)[0].finished);
  EXPECT_EQ((*listed)[0].epochs, 1);
  EXPECT_EQ((*listed)[0].loss.size(), 1u);
  EXPECT_EQ((*listed)[0].image_size, 32);
  EXPECT_TRUE(app::catalog_backbone_dir(*catalog, "mae").ok()) << "a stopped run's name is accepted: it resumes";
  EXPECT_EQ(app::free_backbone_name(*catalog, "mae").value(), "mae-2") << "a new run never takes a stopped run's name";

  // Finished.
  auto done = app::pretrain_from_folders(o);
  ASSERT_TRUE(done.ok()) << done.error().message;
  EXPECT_EQ(done->resumed_after_epoch, 1);
  listed = app::catalog_backbones(*catalog);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u) << "a finished backbone's checkpoints are not a run of their own";
  EXPECT_TRUE((*listed)[0].finished);
  EXPECT_EQ((*listed)[0].epochs, 2);
  EXPECT_EQ((*listed)[0].loss, done->loss);
  EXPECT_EQ((*listed)[0].images, 8);
  EXPECT_EQ((*listed)[0].architecture, "vit-ti16-d6");
  auto taken = app::catalog_backbone_dir(*catalog, "mae");
  ASSERT_FALSE(taken.ok());
  EXPECT_NE(taken.error().message.find("exists already"), std::string::npos) << taken.error().message;
  for (const std::string& bad : std::vector<std::string>{"", ".hidden", "a/b", "../up", "two words", "x.checkpoints", "x.partial", std::string(65, 'a')}) {
    EXPECT_FALSE(app::catalog_backbone_dir(*catalog, bad).ok()) << bad;
    EXPECT_FALSE(app::free_backbone_name(*catalog, bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace hilum::test
