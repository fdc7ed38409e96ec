// Fine-tuning from the catalog end to end: generated radiographs whose label depends on a visible
// pattern, imported and labelled through the catalog, a tiny random ViT as the active model, then
// each strategy trains a new version; its AUROC must be clearly above chance, the gate must
// refuse a version trained on labels that contradict the images (and one whose new output is at
// chance), and an interrupted run must resume.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <set>
#include <random>

#include "catalog_support.hpp"
#include "labelled_catalog.hpp"
#include "random_vit.hpp"
#include "hilum/app/classify.hpp"
#include "hilum/app/finetune.hpp"
#include "hilum/app/import.hpp"
#include "hilum/app/png.hpp"
#include "hilum/app/train.hpp"
#include "hilum/inference/model_extras.hpp"
#include "hilum/inference/precision.hpp"
#include "hilum/testdata/phantom.hpp"

namespace hilum::test {
namespace {

using inference::Matrix;

// A tiny random ViT (1 channel, 32x32 input, patch 8, D=32, 2 blocks) with two outputs.
inference::ViTModel tiny_vit(std::uint32_t seed) {
  inference::ViTConfig c = tiny_cluster_config();
  c.labels = {"Effusion", "Mass"};
  inference::ViTWeights w = random_vit_weights(c, seed, 0.2f);
  auto m = inference::ViTModel::from_weights(c, std::move(w));
  EXPECT_TRUE(m.ok());
  return std::move(m.value());
}

class FinetuneTest : public CatalogTest {
 protected:
  static constexpr int kPatients = 40;

  void SetUp() override {
    CatalogTest::SetUp();
    catalog_.emplace(open_catalog());
    // Two images per patient; about half carry a bright square in the upper left quarter.
    for (const auto& [uid, pattern] : write_pattern_phantoms(path("images"), kPatients)) truth_[uid] = pattern;
    app::ImportOptions io;
    auto report = app::import_paths(*catalog_, {path("images")}, io);
    ASSERT_TRUE(report.ok()) << report.error->message;
    ASSERT_EQ(report.counts.imported, static_cast<std::size_t>(2 * kPatients));
    ASSERT_TRUE(tiny_vit(3).save(path("base")).ok());
    ASSERT_TRUE(app::import_model(*catalog_, path("base"), "tiny-base", true).ok());
    ASSERT_TRUE(catalog_->add_finding("Pattern", "a bright square (test)").ok());
  }

  // Labels every image's Pattern from `value(uid, truth)`.
  void label(const std::function<bool(const app::Instance&, bool)>& value) {
    InstanceFilterAll();
    std::vector<app::LabelInput> labels;
    for (const auto& in : instances_) {
      app::LabelInput l;
      l.image = in.sop_instance_uid;
      l.finding = "Pattern";
      l.value = value(in, truth_.at(in.sop_instance_uid)) ? app::LabelValue::Present : app::LabelValue::Absent;
      l.author = "tester";
      labels.push_back(l);
    }
    ASSERT_TRUE(catalog_->add_labels(labels).ok());
  }
  void InstanceFilterAll() {
    app::InstanceFilter f;
    f.with_thumbnails = false;
    instances_ = catalog_->list_instances(f).value();
  }
  static app::FinetuneOptions one_epoch_last_k() {
    app::FinetuneOptions o;
    o.strategy = app::Strategy::LastK;
    o.k = 1;
    o.epochs = 1;
    return o;
  }
  // Every image labelled with its truth, and a fine-tune of tiny-base with `o` (tiny-base has no
  // domain reference: all three parts are fitted on the site's films) made the active model. Its
  // version, or "" (with a failure) when it failed.
  std::string active_last_k_parent(const app::FinetuneOptions& o) {
    label([](const app::Instance&, bool truth) { return truth; });
    auto first = app::finetune(*catalog_, o);
    if (!first) {
      ADD_FAILURE() << first.error().message;
      return {};
    }
    if (!first->promoted && !app::promote_model(*catalog_, first->model.version, "test: the parent").ok()) {
      ADD_FAILURE() << "cannot make " << first->model.version << " the active model";
      return {};
    }
    return first->model.version;
  }
  static const app::FindingMetrics* metric(const app::EvaluationReport& r, const std::string& name) {
    for (const auto& f : r.findings) {
      if (f.finding == name) return &f;
    }
    return nullptr;
  }

  std::optional<app::Catalog> catalog_;
  std::map<std::string, bool> truth_;
  std::vector<app::Instance> instances_;
};

// `calibrate`: the same weights, a calibration fitted to the site's validation patients; the
// ranking (AUROC) cannot change, so the gate lets it through, and what is shown changes.
TEST_F(FinetuneTest, CalibrateKeepsTheWeightsAndFitsTheProbabilitiesToTheSite) {
  label([](const app::Instance&, bool truth) { return truth; });
  app::FinetuneOptions o;
  o.strategy = app::Strategy::Head;
  auto head = app::finetune(*catalog_, o);
  ASSERT_TRUE(head.ok()) << head.error().message;
  {
    // The parent carries populations with calibrations of their own (as the built-in model does):
    // the site's calibration must replace them, not sit under them.
    auto loaded = app::load_model(*catalog_, head->model.version);
    ASSERT_TRUE(loaded.ok());
    inference::ModelExtras extras = loaded->extras;
    if (!extras.domain) {
      extras.domain.emplace();
      const auto n = static_cast<Eigen::Index>(loaded->model.config().hidden_size);
      extras.domain->embedding.mean = inference::Vector::Zero(n);
      extras.domain->embedding.axes = inference::Matrix(0, n);
      extras.domain->embedding.variances = inference::Vector(0);
    }
    inference::Calibration shifted;
    shifted.labels = loaded->model.config().labels;
    shifted.scaling.assign(shifted.labels.size(), inference::PlattScaling{1.0, 5.0});
    for (const char* name : {"pediatric", "adult"}) {
      inference::Population pop;
      pop.name = name;
      pop.calibration = shifted;
      extras.domain->populations.push_back(pop);
    }
    ASSERT_TRUE(inference::write_model_extras(loaded->record.path, extras).ok());
  }
  o.strategy = app::Strategy::Calibrate;
  auto cal = app::finetune(*catalog_, o);
  ASSERT_TRUE(cal.ok()) << cal.error().message;
  EXPECT_EQ(cal->strategy, "calibrate");
  ASSERT_TRUE(cal->parent.has_value());
  EXPECT_EQ(cal->parent->version, head->model.version);
  const auto* before = metric(head->metrics, "Pattern");
  const auto* after = metric(cal->metrics, "Pattern");
  ASSERT_TRUE(before && after && before->auroc && after->auroc);
  EXPECT_NEAR(*after->auroc, *before->auroc, 1e-9) << "calibration must not change the ranking";
  EXPECT_TRUE(cal->promoted) << cal->reason;
  auto parent = app::load_model(*catalog_, head->model.version);
  auto child = app::load_model(*catalog_, cal->model.version);
  ASSERT_TRUE(parent.ok() && child.ok());
  EXPECT_TRUE(parent->model.weights().classifier.w.isApprox(child->model.weights().classifier.w)) << "the same weights";
  ASSERT_TRUE(child->extras.calibration.has_value());
  const auto labels = child->model.config().labels;
  const auto at = static_cast<std::size_t>(std::find(labels.begin(), labels.end(), "Pattern") - labels.begin());
  ASSERT_LT(at, labels.size());
  const auto s = child->extras.calibration->scaling[at];
  EXPECT_TRUE(s.a != 1.0 || s.b != 0.0) << "a fitted scaling, not the identity";
  ASSERT_TRUE(child->extras.domain.has_value());
  ASSERT_EQ(child->extras.domain->populations.size(), 2u);
  for (const auto& pop : child->extras.domain->populations) EXPECT_FALSE(pop.calibration.has_value()) << pop.name;
  EXPECT_EQ(cal->history.size(), 0u) << "nothing was trained";
}

TEST_F(FinetuneTest, HeadLearnsThePatternAndTheGateRefusesAWorseVersion) {
  label([](const app::Instance&, bool truth) { return truth; });
  app::FinetuneOptions o;
  o.strategy = app::Strategy::Head;
  auto first = app::finetune(*catalog_, o);
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(first->strategy, "head");
  const auto* m = metric(first->metrics, "Pattern");
  ASSERT_NE(m, nullptr);
  ASSERT_TRUE(m->auroc.has_value());
  EXPECT_GT(*m->auroc, 0.85) << "validation AUROC of the pattern";
  EXPECT_GT(m->auroc_low, 0.5);
  EXPECT_GT(m->positives, 0);
  EXPECT_GT(m->negatives, 0);
  EXPECT_TRUE(first->promoted) << first->reason;
  EXPECT_EQ(first->model.status, app::ModelStatus::Active);
  ASSERT_TRUE(first->parent.has_value());
  EXPECT_EQ(first->parent->version, "tiny-base");
  EXPECT_EQ(first->model.version, "tiny-base-ft1");
  EXPECT_EQ(first->model.parent_id, first->parent->id);
  // The head grew one output; the existing outputs kept their weights.
  auto loaded = app::load_model(*catalog_, first->model.version);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  const auto& labels = loaded->model.config().labels;
  ASSERT_EQ(labels, (std::vector<std::string>{"Effusion", "Mass", "Pattern"}));
  auto base = app::load_model(*catalog_, "tiny-base");
  ASSERT_TRUE(base.ok());
  EXPECT_TRUE(loaded->model.weights().classifier.w.topRows(2).isApprox(base->model.weights().classifier.w));
  // Embeddings are cached per backbone: the second refit computes none.
  EXPECT_EQ(catalog_->embeddings("tiny-base")->size(), instances_.size());

  // Labels that contradict the images on the training patients (validation keeps the truth): the
  // new version ranks the validation images the wrong way round and the gate keeps it as a
  // candidate. (Shuffled labels are not used here: on this synthetic pattern, which dominates the
  // tiny ViT's embeddings, a head fitted to uninformative labels still ranks the validation images
  // almost perfectly in either direction, depending on the catalog's random patient split, so
  // whether it is worse is a coin toss.)
  label([&](const app::Instance& in, bool truth) {
    const bool validation = app::in_validation_split(*catalog_, in).value();
    return validation ? truth : !truth;
  });
  auto second = app::finetune(*catalog_, o);
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_FALSE(second->promoted) << second->reason;
  EXPECT_EQ(second->model.status, app::ModelStatus::Candidate);
  EXPECT_NE(second->reason.find("worse"), std::string::npos) << second->reason;
  EXPECT_EQ(catalog_->active_model().value()->version, "tiny-base-ft1");
  ASSERT_TRUE(second->parent_metrics.has_value());
  const auto* wrong = metric(second->metrics, "Pattern");
  const auto* active = metric(*second->parent_metrics, "Pattern");
  ASSERT_TRUE(wrong && active && wrong->auroc && active->auroc);
  EXPECT_LT(*wrong->auroc, 0.5);
  EXPECT_LT(*wrong->auroc, *active->auroc);

  // The registry: the candidate records its parent, strategy, labels used and metrics; it can be
  // promoted by hand and rolled back; export writes a folder the engine loads.
  auto record = catalog_->find_model(second->model.version).value().value();
  EXPECT_NE(record.label_snapshot.find("max_label_event"), std::string::npos);
  EXPECT_NE(record.metrics.find("\"gate\""), std::string::npos);
  EXPECT_NE(record.hyperparameters.find("backbone_version"), std::string::npos);
  ASSERT_TRUE(app::promote_model(*catalog_, second->model.version, "test").ok());
  EXPECT_EQ(catalog_->active_model().value()->version, second->model.version);
  auto back = app::rollback_model(*catalog_);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->version, "tiny-base-ft1");
  ASSERT_TRUE(app::export_model(*catalog_, "tiny-base-ft1", path("exported")).ok());
  auto exported = inference::ViTModel::load(path("exported"));
  ASSERT_TRUE(exported.ok()) << exported.error().message;
  EXPECT_EQ(exported->config().labels, labels);
}

TEST_F(FinetuneTest, EvaluateReportsPerFindingMetrics) {
  label([](const app::Instance&, bool truth) { return truth; });
  app::FinetuneOptions o;
  o.strategy = app::Strategy::Head;
  auto trained = app::finetune(*catalog_, o);
  ASSERT_TRUE(trained.ok()) << trained.error().message;
  auto report = app::evaluate(*catalog_, trained->model.version);
  ASSERT_TRUE(report.ok()) << report.error().message;
  const auto* m = metric(*report, "Pattern");
  ASSERT_NE(m, nullptr);
  ASSERT_TRUE(m->auroc.has_value());
  // The same validation images as the fine-tuning run's own evaluation.
  EXPECT_NEAR(*m->auroc, *metric(trained->metrics, "Pattern")->auroc, 1e-9);
  EXPECT_GE(m->threshold, 0.0);
  EXPECT_LE(m->threshold, 1.0);
  EXPECT_GE(m->ece, 0.0);
  // The base model has no Pattern output: nothing to report for it.
  auto base = app::evaluate(*catalog_, "tiny-base");
  ASSERT_TRUE(base.ok());
  EXPECT_EQ(metric(*base, "Pattern"), nullptr);
  EXPECT_FALSE(base->mean_auroc.has_value());
}

// A version that keeps the shared findings but adds an output that says nothing is not promoted:
// "Speckle" is labelled independently of the images (every other image, on both sides of the
// split), so its AUROC on the validation patients is not above chance, while Pattern stays as good
// as before.
TEST_F(FinetuneTest, GateRefusesANewOutputAtChance) {
  label([](const app::Instance&, bool truth) { return truth; });
  app::FinetuneOptions o;
  o.strategy = app::Strategy::Head;
  auto first = app::finetune(*catalog_, o);
  ASSERT_TRUE(first.ok()) << first.error().message;
  ASSERT_TRUE(first->promoted) << first->reason;
  EXPECT_NE(first->reason.find("(Pattern)"), std::string::npos) << first->reason;

  ASSERT_TRUE(catalog_->add_finding("Speckle", "labelled at random (test)").ok());
  std::vector<app::LabelInput> labels;
  std::map<bool, int> seen;  // every other image present, within the validation split and within training
  for (const auto& in : instances_) {
    app::LabelInput l;
    l.image = in.sop_instance_uid;
    l.finding = "Speckle";
    l.value = seen[app::in_validation_split(*catalog_, in).value()]++ % 2 == 0 ? app::LabelValue::Present : app::LabelValue::Absent;
    l.author = "tester";
    labels.push_back(l);
  }
  ASSERT_TRUE(catalog_->add_labels(labels).ok());
  auto second = app::finetune(*catalog_, o);
  ASSERT_TRUE(second.ok()) << second.error().message;
  const auto* pattern = metric(second->metrics, "Pattern");
  const auto* speckle = metric(second->metrics, "Speckle");
  ASSERT_TRUE(pattern && pattern->auroc && speckle && speckle->auroc);
  EXPECT_GT(*pattern->auroc, 0.85);
  EXPECT_LE(speckle->auroc_low, 0.5);
  EXPECT_FALSE(second->promoted) << second->reason;
  EXPECT_NE(second->reason.find("not worse"), std::string::npos) << second->reason;
  EXPECT_NE(second->reason.find("new finding (Speckle)"), std::string::npos) << second->reason;
  EXPECT_NE(second->reason.find("not above chance"), std::string::npos) << second->reason;
  EXPECT_EQ(catalog_->active_model().value()->version, first->model.version);
}

TEST_F(FinetuneTest, LastKTrainsAndFullResumesAfterCancel) {
  label([](const app::Instance&, bool truth) { return truth; });
  app::FinetuneOptions o;
  o.strategy = app::Strategy::LastK;
  o.k = 1;
  o.epochs = 3;
  o.allow_promotion = false;
  auto lastk = app::finetune(*catalog_, o);
  ASSERT_TRUE(lastk.ok()) << lastk.error().message;
  EXPECT_EQ(lastk->strategy, "last-k");
  ASSERT_EQ(lastk->history.size(), 3u);
  EXPECT_LT(lastk->history.back().train_loss, lastk->history.front().train_loss);
  EXPECT_FALSE(lastk->promoted);
  EXPECT_EQ(lastk->model.status, app::ModelStatus::Candidate);
  // The default arithmetic is BF16 mixed precision where the CPU has it; the version records what ran.
  const bool bf16 = inference::available_precision(inference::Precision::BF16) == inference::Precision::BF16;
  EXPECT_NE(lastk->model.hyperparameters.find(bf16 ? "\"precision\":\"bf16\"" : "\"precision\":\"f32\""), std::string::npos)
      << lastk->model.hyperparameters;

  // Full fine-tuning, cancelled during the second epoch, then run again: it resumes after the
  // first epoch (its history comes back from the checkpoint) and finishes.
  o.strategy = app::Strategy::Full;
  o.epochs = 2;
  o.precision = inference::Precision::F32;
  std::atomic<bool> cancel{false};
  auto stop_in_epoch_2 = [&](const app::FinetuneProgress& p) {
    if (p.phase == app::Phase::Training && p.epoch == 2) cancel = true;
  };
  auto interrupted = app::finetune(*catalog_, o, stop_in_epoch_2, &cancel);
  ASSERT_FALSE(interrupted.ok());
  EXPECT_EQ(interrupted.error().kind, app::ErrorKind::Interrupted);
  const fs::path checkpoints = path("hilum.models") / ".checkpoints";  // the catalog's own models folder
  ASSERT_TRUE(fs::exists(checkpoints));
  int first_epoch_seen = 0;
  auto resumed = app::finetune(*catalog_, o, [&](const app::FinetuneProgress& p) {
    if (p.phase == app::Phase::Training && first_epoch_seen == 0 && p.epoch > 0) first_epoch_seen = p.epoch;
  });
  ASSERT_TRUE(resumed.ok()) << resumed.error().message;
  EXPECT_EQ(first_epoch_seen, 2);
  ASSERT_EQ(resumed->history.size(), 2u);
  EXPECT_EQ(resumed->history[0].epoch, 1);
  EXPECT_EQ(resumed->strategy, "full");
  EXPECT_NE(resumed->model.hyperparameters.find("\"precision\":\"f32\""), std::string::npos) << resumed->model.hyperparameters;
  EXPECT_TRUE(fs::is_empty(checkpoints));
  auto loaded = app::load_model(*catalog_, resumed->model.version);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
}

// A fine-tune that trains the backbone describes the new embeddings with the site's films, but the
// parent's pixel reference (thumbnail, statistics: the films' pixels, not the weights) stays, and the
// films it finds outside are left out of the new description: twelve noise images labelled with the
// rest are no example of the site's films. (Before, all three parts were fitted anew on every
// labelled film, the noise images among them.)
TEST_F(FinetuneTest, ATrainedBackboneKeepsThePixelReferenceAndLeavesOutFilmsItFindsOutside) {
  const app::FinetuneOptions o = one_epoch_last_k();
  const std::string parent_version = active_last_k_parent(o);
  ASSERT_FALSE(parent_version.empty());
  auto parent = app::load_model(*catalog_, parent_version);
  ASSERT_TRUE(parent.ok()) << parent.error().message;
  ASSERT_TRUE(parent->extras.domain.has_value());
  const inference::DomainReference& before = *parent->extras.domain;
  ASSERT_GT(before.thumbnail_side, 0);
  ASSERT_GT(before.statistics.mean.size(), 0);

  std::set<std::string> noise_uids;
  for (int p = 0; p < 6; ++p) {
    for (int k = 0; k < 2; ++k) {
      testdata::DicomSpec spec;
      spec.phantom.rows = spec.phantom.columns = 96;
      spec.patient_id = "NOISE" + std::to_string(p);
      spec.sop_instance_uid = "1.2.826.0.1.3680043.10.3." + std::to_string(2 * p + k);
      spec.draw = [seed = 2 * p + k](std::vector<std::int32_t>& v, int, int) {
        std::mt19937 rng(static_cast<unsigned>(seed));
        for (auto& x : v) x = static_cast<std::int32_t>(rng() % 4096);
      };
      testdata::write_dicom(path("noise") / ("noise" + std::to_string(2 * p + k) + ".dcm"), spec);
      noise_uids.insert(spec.sop_instance_uid);
      truth_[spec.sop_instance_uid] = false;
    }
  }
  app::ImportOptions io;
  auto imported = app::import_paths(*catalog_, {path("noise")}, io);
  ASSERT_FALSE(imported.error) << imported.error->message;
  label([](const app::Instance&, bool truth) { return truth; });
  std::vector<app::Instance> noise;
  for (const auto& in : instances_)
    if (noise_uids.count(in.sop_instance_uid) > 0) noise.push_back(in);
  ASSERT_EQ(noise.size(), 12u);
  auto by_parent = app::classify(*catalog_, *parent, noise);
  ASSERT_TRUE(by_parent.ok()) << by_parent.error().message;
  for (const auto& r : by_parent.value()) ASSERT_FALSE(r.domain.in_domain) << "the parent's pixel reference finds noise outside";

  auto second = app::finetune(*catalog_, o);
  ASSERT_TRUE(second.ok()) << second.error().message;
  auto child = app::load_model(*catalog_, second->model.version);
  ASSERT_TRUE(child.ok()) << child.error().message;
  ASSERT_TRUE(child->extras.domain.has_value());
  const inference::DomainReference& after = *child->extras.domain;
  // The pixel parts are the parent's.
  EXPECT_EQ(after.thumbnail_side, before.thumbnail_side);
  EXPECT_TRUE(after.thumbnail.mean.isApprox(before.thumbnail.mean));
  EXPECT_DOUBLE_EQ(after.thumbnail.threshold, before.thumbnail.threshold);
  EXPECT_TRUE(after.statistics.mean.isApprox(before.statistics.mean));
  EXPECT_DOUBLE_EQ(after.statistics.threshold, before.statistics.threshold);
  // The embeddings are described anew, by the films within that reference only.
  EXPECT_FALSE(after.embedding.mean.isApprox(before.embedding.mean)) << "the trained blocks changed the embeddings";
  const auto metrics = nlohmann::json::parse(child->record.metrics);
  ASSERT_TRUE(metrics.contains("domain_reference")) << metrics.dump();
  const auto& note = metrics["domain_reference"];
  EXPECT_EQ(note["pixel_parts"], "the parent's");
  EXPECT_EQ(note["embedding_films"].get<int>(), after.embedding.images);
  EXPECT_GE(note["films_outside_the_parents_pixel_reference"].get<int>(), 10) << "most of the 12 noise films are training films";
  // And hardly any phantom film: the limit is about the farthest of the parent's dozen or so
  // validation films, drawn by the catalog's own secret, so now and then a training phantom or a
  // few land just beyond it (30 runs: 12 left out 29 times, 13 once; 16 seen once).
  EXPECT_LE(note["films_outside_the_parents_pixel_reference"].get<int>(), 12 + 6) << "at most 6 of the 64 phantom films are left out";
  // So the child, too, finds every noise image outside, and the phantoms inside.
  auto by_child = app::classify(*catalog_, *child, noise);
  ASSERT_TRUE(by_child.ok()) << by_child.error().message;
  for (const auto& r : by_child.value()) EXPECT_FALSE(r.domain.in_domain) << r.sop_instance_uid << ": " << r.domain.reason;
  std::vector<app::Instance> films;
  for (const auto& in : instances_)
    if (noise_uids.count(in.sop_instance_uid) == 0 && films.size() < 20) films.push_back(in);
  auto films_by_child = app::classify(*catalog_, *child, films);
  ASSERT_TRUE(films_by_child.ok()) << films_by_child.error().message;
  int inside = 0;
  for (const auto& r : films_by_child.value()) inside += r.domain.in_domain ? 1 : 0;
  EXPECT_GE(inside, 18) << "of 20 phantom films";
}

// Fewer than 20 training films within the parent's pixel reference: no new embedding part, but the
// parent's pixel parts stay (before, the model had no reference at all and every image passed).
TEST_F(FinetuneTest, TooFewFilmsWithinThePixelReferenceKeepItWithoutAnEmbeddingPart) {
  const app::FinetuneOptions o = one_epoch_last_k();
  const std::string parent_version = active_last_k_parent(o);
  ASSERT_FALSE(parent_version.empty());
  // The parent's pixel reference made strict enough that every film of this site is outside it.
  {
    auto parent = app::load_model(*catalog_, parent_version);
    ASSERT_TRUE(parent.ok() && parent->extras.domain.has_value());
    inference::ModelExtras extras = parent->extras;
    extras.domain->thumbnail.threshold = 1e-6;
    ASSERT_TRUE(inference::write_model_extras(parent->record.path, extras).ok());
  }
  auto parent = app::load_model(*catalog_, parent_version);
  ASSERT_TRUE(parent.ok());
  auto second = app::finetune(*catalog_, o);
  ASSERT_TRUE(second.ok()) << second.error().message;
  auto child = app::load_model(*catalog_, second->model.version);
  ASSERT_TRUE(child.ok()) << child.error().message;
  ASSERT_TRUE(child->extras.domain.has_value()) << "the parent's pixel parts stay";
  EXPECT_EQ(child->extras.domain->features, "none");
  EXPECT_EQ(child->extras.domain->embedding.mean.size(), 0);
  EXPECT_DOUBLE_EQ(child->extras.domain->thumbnail.threshold, 1e-6);
  EXPECT_TRUE(child->extras.domain->statistics.mean.isApprox(parent->extras.domain->statistics.mean));
  const auto metrics = nlohmann::json::parse(child->record.metrics);
  ASSERT_TRUE(metrics.contains("domain_reference")) << metrics.dump();
  EXPECT_NE(metrics["domain_reference"]["embedding"].get<std::string>().find("none: 0 training films"), std::string::npos)
      << metrics["domain_reference"].dump();
  // Predictions still get the pixel check (here: every film outside), not "unavailable".
  InstanceFilterAll();
  std::vector<app::Instance> some(instances_.begin(), instances_.begin() + 4);
  auto r = app::classify(*catalog_, *child, some);
  ASSERT_TRUE(r.ok()) << r.error().message;
  for (const auto& p : r.value()) {
    EXPECT_TRUE(p.domain.pixel_check) << p.domain.reason;
    EXPECT_FALSE(p.domain.in_domain) << p.domain.reason;
    EXPECT_NE(p.domain.reason.find("its layout"), std::string::npos) << p.domain.reason;
  }
}

// Issue 16, defect 4: two catalogs in one folder shared models/, and the second one's fine-tune
// failed at the final rename ("Directory not empty") and lost the run.
TEST_F(FinetuneTest, CatalogsInOneFolderKeepTheirOwnModelsAndACollisionCostsNoRun) {
  label([](const app::Instance&, bool truth) { return truth; });
  app::FinetuneOptions o;
  o.strategy = app::Strategy::Head;
  o.epochs = 1;
  auto first = app::finetune(*catalog_, o);
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(first->model.version, "tiny-base-ft1");

  // A second catalog beside the first, with the same images, base model and labels: its first
  // version has the same name, and must neither fail nor touch the first catalog's folder.
  app::Catalog other = open_catalog("other.db");
  auto report = app::import_paths(other, {path("images")}, app::ImportOptions{});
  ASSERT_TRUE(report.ok());
  ASSERT_TRUE(app::import_model(other, path("base"), "tiny-base", true).ok());
  ASSERT_TRUE(other.add_finding("Pattern", "a bright square (test)").ok());
  std::vector<app::LabelInput> labels;
  for (const auto& [uid, truth] : truth_) {
    app::LabelInput l;
    l.image = uid;
    l.finding = "Pattern";
    l.value = truth ? app::LabelValue::Present : app::LabelValue::Absent;
    l.author = "tester";
    labels.push_back(l);
  }
  ASSERT_TRUE(other.add_labels(labels).ok());
  const std::string first_weights = file_bytes(fs::path(first->model.path) / "model.safetensors");
  auto second = app::finetune(other, o);
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_EQ(second->model.version, "tiny-base-ft1");
  EXPECT_NE(fs::weakly_canonical(first->model.path), fs::weakly_canonical(second->model.path));
  EXPECT_TRUE(fs::equivalent(fs::path(first->model.path).parent_path(), path("hilum.models"))) << first->model.path;
  EXPECT_TRUE(fs::equivalent(fs::path(second->model.path).parent_path(), path("other.models"))) << second->model.path;
  EXPECT_EQ(file_bytes(fs::path(first->model.path) / "model.safetensors"), first_weights);
  ASSERT_TRUE(app::load_model(*catalog_, first->model.version).ok());
  ASSERT_TRUE(app::load_model(other, second->model.version).ok());

  // A folder already named like the next version (left by someone else): the run takes the next
  // free name, and the folder is left alone.
  fs::create_directories(path("hilum.models") / "tiny-base-ft2");
  std::ofstream(path("hilum.models") / "tiny-base-ft2" / "notes.txt") << "not a model";
  auto third = app::finetune(*catalog_, o);
  ASSERT_TRUE(third.ok()) << third.error().message;
  EXPECT_EQ(third->model.version, "tiny-base-ft3");
  EXPECT_EQ(file_bytes(path("hilum.models") / "tiny-base-ft2" / "notes.txt"), "not a model");
  ASSERT_TRUE(app::load_model(*catalog_, third->model.version).ok());
}

}  // namespace
}  // namespace hilum::test

namespace hilum::test {
namespace {

TEST(TrainFolder, PatientsComeFromFileNames) {
  EXPECT_EQ(app::patient_from_file_name("person1000_bacteria_2931"), "person1000");
  EXPECT_EQ(app::patient_from_file_name("IM-0115-0001"), "IM-0115");
  EXPECT_EQ(app::patient_from_file_name("NORMAL2-IM-1427-0001"), "NORMAL2-IM-1427");
  EXPECT_EQ(app::patient_from_file_name("plain"), "plain");
}

class TrainFolderTest : public TempDirTest {
 protected:
  // A small, quick run: a 6-block Ti at 32 pixels, two epochs, into path("model").
  app::TrainOptions small_run(std::vector<app::DataSource> data, double validation_fraction) {
    app::TrainOptions o;
    o.data = std::move(data);
    o.out = path("model");
    o.arch = "vit-ti16-d6";
    o.image_size = 32;
    o.epochs = 2;
    o.batch_size = 16;
    o.learning_rate = 1e-3f;
    o.warmup_epochs = 1;
    o.validation_fraction = validation_fraction;
    o.drop_path = 0.0f;
    return o;
  }
  // NORMAL/ and PNEUMONIA/ with 32x32 PNGs; pneumonia images carry a bright lower-left block.
  // Two images per patient, named like the Kermany data set.
  void write_folder(int per_class) {
    std::mt19937 rng(5);
    std::uniform_int_distribution<int> noise(40, 120);
    for (const std::string cls : {"NORMAL", "PNEUMONIA"}) {
      fs::create_directories(path("data") / cls);
      for (int i = 0; i < per_class; ++i) {
        std::vector<std::uint8_t> px(32 * 32);
        for (auto& v : px) v = static_cast<std::uint8_t>(noise(rng));
        if (cls == "PNEUMONIA") {
          for (int r = 16; r < 30; ++r)
            for (int c = 2; c < 16; ++c) px[static_cast<std::size_t>(r * 32 + c)] = 250;
        }
        const std::string name = cls == "NORMAL" ? "IM-" + std::to_string(1000 + i / 2) + "-000" + std::to_string(i % 2)
                                                 : "person" + std::to_string(i / 2) + "_bacteria_" + std::to_string(i);
        ASSERT_TRUE(app::write_png_gray8(path("data") / cls / (name + ".png"), 32, 32, px).ok());
      }
    }
  }
};

TEST_F(TrainFolderTest, ScansClassesAndPatients) {
  write_folder(6);
  auto data = app::scan_image_folder(path("data"));
  ASSERT_TRUE(data.ok()) << data.error().message;
  EXPECT_EQ(data->findings, std::vector<std::string>{"Pneumonia"});
  ASSERT_EQ(data->files.size(), 12u);
  std::set<std::string> patients(data->patients.begin(), data->patients.end());
  EXPECT_EQ(patients.size(), 6u);  // two images per patient
  int positives = 0;
  for (const auto& t : data->targets) positives += t.at(0) > 0.5f ? 1 : 0;
  EXPECT_EQ(positives, 6);
  EXPECT_FALSE(app::scan_image_folder(path("nowhere")).ok());
  fs::create_directories(path("empty") / "NORMAL");
  EXPECT_FALSE(app::scan_image_folder(path("empty")).ok());  // no finding folder
}

// A labels.csv folder beside a class folder: what each source does not say is "not assessed".
TEST_F(TrainFolderTest, MergesClassFoldersAndLabelTablesKeepingNotAssessedApart) {
  write_folder(4);
  fs::create_directories(path("adult"));
  std::vector<std::uint8_t> px(32 * 32, 90);
  for (const std::string name : {"a1.png", "a2.png", "a3.png"}) ASSERT_TRUE(app::write_png_gray8(path("adult") / name, 32, 32, px).ok());
  {
    std::ofstream csv(path("adult") / "labels.csv");
    csv << "image,patient_id,age,sex,view,No Finding,Pneumonia,Effusion\n"
           "a1.png,7,40,F,PA,1,0,0\n"
           "a2.png,7,41,F,PA,0,1,\n"   // Effusion not assessed
           "a3.png,8,70,M,AP,0,0,1\n";
  }
  auto table = app::scan_image_folder(path("adult"));
  ASSERT_TRUE(table.ok()) << table.error().message;
  EXPECT_FALSE(table->class_folders);
  EXPECT_EQ(table->findings, (std::vector<std::string>{"No Finding", "Pneumonia", "Effusion"}));
  EXPECT_EQ(table->patients[0], "adult/7");
  EXPECT_EQ(table->patients[1], "adult/7");
  EXPECT_EQ(table->ages[2], 70.0);
  EXPECT_EQ(table->masks[1][2], 0.0f);

  std::vector<app::DataSource> sources = {app::DataSource::folder(path("data")), app::DataSource::folder(path("adult"))};
  sources[0].population = "pediatric";
  auto merged = app::merge_sources(sources, {"Pneumonia", "No Finding", "Effusion"});
  ASSERT_TRUE(merged.ok()) << merged.error().message;
  const auto& d = merged->data;
  ASSERT_EQ(d.files.size(), 11u);
  auto row = [&](const std::string& stem) {
    for (std::size_t i = 0; i < d.files.size(); ++i) {
      if (d.files[i].stem() == stem) return i;
    }
    ADD_FAILURE() << "no " << stem;
    return std::size_t{0};
  };
  // A NORMAL film: every output assessed, No Finding present.
  const auto normal = row("IM-1000-0000");
  EXPECT_EQ(d.targets[normal], (std::vector<float>{0, 1, 0}));
  EXPECT_EQ(d.masks[normal], (std::vector<float>{1, 1, 1}));
  EXPECT_EQ(merged->population[normal], "pediatric");
  // A PNEUMONIA film: Pneumonia present, No Finding absent, Effusion not assessed.
  const auto pneumonia = row("person0_bacteria_0");
  EXPECT_EQ(d.targets[pneumonia], (std::vector<float>{1, 0, 0}));
  EXPECT_EQ(d.masks[pneumonia], (std::vector<float>{1, 1, 0}));
  // The table's rows as written; its population from the ages.
  const auto a2 = row("a2");
  EXPECT_EQ(d.targets[a2], (std::vector<float>{1, 0, 0}));
  EXPECT_EQ(d.masks[a2], (std::vector<float>{1, 1, 0}));
  EXPECT_EQ(merged->population[a2], "adult");
  EXPECT_EQ(d.masks[row("a1")], (std::vector<float>{1, 1, 1}));

  // A bad cell is an error that names the line, and file names may not leave the folder.
  { std::ofstream(path("adult") / "labels.csv") << "image,Pneumonia\na1.png,maybe\n"; }
  auto bad = app::scan_image_folder(path("adult"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("line 2"), std::string::npos) << bad.error().message;
  { std::ofstream(path("adult") / "labels.csv") << "image,Pneumonia\n../data/x.png,1\n"; }
  EXPECT_FALSE(app::scan_image_folder(path("adult")).ok());
}

// Training on two sources writes the calibration and the domain reference beside the weights,
// and reports each population on its own.
TEST_F(TrainFolderTest, TwoSourcesGiveCalibrationDomainAndPopulations) {
  write_folder(24);
  fs::create_directories(path("adult"));
  {
    std::ofstream csv(path("adult") / "labels.csv");
    csv << "image,patient_id,age,No Finding,Pneumonia,Effusion\n";
    std::mt19937 rng(9);
    std::uniform_int_distribution<int> noise(60, 140);
    for (int i = 0; i < 40; ++i) {
      std::vector<std::uint8_t> px(32 * 32);
      for (auto& v : px) v = static_cast<std::uint8_t>(noise(rng));
      const bool sick = i % 2 == 1;
      if (sick) {
        for (int r = 16; r < 30; ++r)
          for (int c = 2; c < 16; ++c) px[static_cast<std::size_t>(r * 32 + c)] = 250;
      }
      const std::string name = "adult" + std::to_string(i) + ".png";
      ASSERT_TRUE(app::write_png_gray8(path("adult") / name, 32, 32, px).ok());
      csv << name << "," << i / 2 << "," << 30 + i << "," << (sick ? "0,1,1" : "1,0,0") << "\n";
    }
  }
  app::TrainOptions o = small_run({app::DataSource::folder(path("data")), app::DataSource::folder(path("adult"))}, 0.3);
  o.data[0].population = "pediatric";
  o.data[0].min_age_years = 1;
  o.data[0].max_age_years = 5;
  o.data[1].repeat = 2;
  o.outputs = {"Pneumonia", "No Finding", "Effusion"};  // Effusion: only the adults have it
  o.min_population_calibration_images = 3;
  // Unlabelled films the domain reference describes too (most fitted, some only set the limits).
  fs::create_directories(path("reference") / "site");
  {
    std::mt19937 rng(11);
    std::uniform_int_distribution<int> noise(40, 200);
    for (int i = 0; i < 20; ++i) {
      std::vector<std::uint8_t> px(32 * 32);
      for (auto& v : px) v = static_cast<std::uint8_t>(noise(rng));
      ASSERT_TRUE(app::write_png_gray8(path("reference") / "site" / ("film" + std::to_string(i) + ".png"), 32, 32, px).ok());
    }
    std::ofstream(path("reference") / "manifest.csv") << "image,source\n";  // not an image: not read
  }
  o.reference_data = {path("reference")};
  std::int64_t steps = 0;
  auto r = app::train_from_folder(o, [&](const app::FinetuneProgress& p) { steps = p.steps; });
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_GT(steps, 0);
  ASSERT_EQ(r->populations.size(), 2u);
  std::set<std::string> names;
  for (const auto& pop : r->populations) {
    names.insert(pop.population);
    EXPECT_EQ(pop.ece_cross_fitted.size(), pop.validation.findings.size());
    EXPECT_EQ(pop.ece_uncalibrated.size(), pop.validation.findings.size());
    // The chance floor of a few validation films is far from zero (and never above the worst ECE).
    ASSERT_EQ(pop.ece_by_chance.size(), pop.validation.findings.size());
    for (double floor : pop.ece_by_chance) {
      EXPECT_GT(floor, 0.0);
      EXPECT_LE(floor, 1.0);
    }
  }
  EXPECT_EQ(names, (std::set<std::string>{"pediatric", "adult"}));
  {
    std::ifstream in(path("model") / "training_report.json");
    const auto report = nlohmann::json::parse(in);
    EXPECT_TRUE(report["populations"][0]["findings"][0].contains("ece_by_chance_p95"));
  }
  auto model = inference::ViTModel::load(path("model"));
  ASSERT_TRUE(model.ok()) << model.error().message;
  EXPECT_EQ(model->config().labels, (std::vector<std::string>{"Pneumonia", "No Finding", "Effusion"}));
  auto extras = inference::read_model_extras(path("model"), model->config());
  ASSERT_TRUE(extras.ok()) << extras.error().message;
  ASSERT_TRUE(extras->calibration.has_value());
  ASSERT_TRUE(extras->domain.has_value());
  EXPECT_EQ(extras->domain->embedding.mean.size(), model->config().hidden_size);
  EXPECT_GT(extras->domain->embedding.images, r->train_images) << "the reference films are described too";
  EXPECT_LT(extras->domain->embedding.images, r->train_images + 20) << "some reference films only set the limits";
  EXPECT_GT(extras->domain->embedding.threshold, 0.0);
  ASSERT_EQ(extras->domain->populations.size(), 2u);
  for (const auto& pop : extras->domain->populations) {
    // Each population has its own calibration (fitted on its own validation images) and the
    // centroid of its training films' embeddings, by which an image without an age is placed.
    ASSERT_TRUE(pop.calibration.has_value()) << pop.name;
    EXPECT_EQ(pop.calibration->labels, model->config().labels);
    EXPECT_LT(pop.calibration->images, extras->calibration->images);
    EXPECT_EQ(pop.centroid.size(), model->config().hidden_size);
    if (pop.name == "pediatric") {
      // The children have no effusion to calibrate it on: that output keeps the model's calibration.
      EXPECT_EQ(pop.calibration->scaling[2].a, extras->calibration->scaling[2].a);
      EXPECT_EQ(pop.calibration->scaling[2].b, extras->calibration->scaling[2].b);
      EXPECT_NE(pop.calibration->scaling[0].a, extras->calibration->scaling[0].a) << "Pneumonia: the children's own";
      EXPECT_EQ(pop.min_age_years, 1.0);
      EXPECT_EQ(pop.max_age_years, 5.0);
    } else {
      EXPECT_EQ(pop.name, "adult");
      EXPECT_GE(pop.min_age_years, 30.0);
      EXPECT_LE(pop.max_age_years, 69.0);
    }
  }
  std::ifstream report(path("model") / "training_report.json");
  const auto j = nlohmann::json::parse(report);
  EXPECT_EQ(j["populations"].size(), 2u);
  EXPECT_EQ(j["outputs"].size(), 3u);
  ASSERT_EQ(j["domain"]["reference_data"].size(), 1u);
  EXPECT_EQ(j["domain"]["reference_data"][0]["images"], 20);
  for (const auto& pj : j["populations"]) {
    const double recognised = pj["population_recognised"].get<double>();
    EXPECT_GE(recognised, 0.0);
    EXPECT_LE(recognised, 1.0);
    // The adults' ages are in their table, and the age decides.
    if (pj["population"] == "adult") {
      EXPECT_EQ(recognised, 1.0);
    }
  }
  // The steps of one epoch count each adult training film twice.
  int adult_validation = 0;
  for (const auto& pop : r->populations) {
    if (pop.population == "adult") adult_validation = pop.validation.images;
  }
  const int adult_train = 40 - adult_validation;
  ASSERT_GT(adult_train, 0);
  const int epoch_images = r->train_images + adult_train;
  EXPECT_EQ(steps, o.epochs * ((epoch_images + o.batch_size - 1) / o.batch_size));
}

// train --center-crop: the model is written with Hugging Face's centre crop, and what the run
// fits on its held-out films (the calibration) is fitted on what the model is shown, the crop:
// refitted without it (--epochs 0 --center-crop 1), the same weights get another calibration.
TEST_F(TrainFolderTest, ACentreCropIsWrittenWithTheModelAndItsCalibrationIsOfTheCrop) {
  write_folder(24);
  app::TrainOptions o = small_run({app::DataSource::folder(path("data"))}, 0.25);
  o.center_crop = 0.8;
  auto r = app::train_from_folder(o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto model = inference::ViTModel::load(path("model"));
  ASSERT_TRUE(model.ok()) << model.error().message;
  ASSERT_TRUE(model->config().centre_crop());
  EXPECT_EQ(model->config().input_width, 32);
  EXPECT_EQ(model->config().resize_width, 40);
  EXPECT_EQ(model->config().resize_height, 40);
  const auto calibration_of = [&](const fs::path& dir) {
    auto m = inference::ViTModel::load(dir);
    EXPECT_TRUE(m.ok());
    auto extras = inference::read_model_extras(dir, m->config());
    EXPECT_TRUE(extras.ok() && extras->calibration.has_value());
    return extras->calibration->scaling.at(0);
  };
  // No training, the crop kept (0: the --init model's): the same calibration, to F16 rounding.
  app::TrainOptions kept = o;
  kept.init = path("model");
  kept.epochs = 0;
  kept.center_crop = 0.0;
  kept.out = path("kept");
  ASSERT_TRUE(app::train_from_folder(kept).ok());
  auto kept_model = inference::ViTModel::load(path("kept"));
  ASSERT_TRUE(kept_model.ok());
  EXPECT_EQ(kept_model->config().resize_width, 40);
  EXPECT_NEAR(calibration_of(path("kept")).a, calibration_of(path("model")).a, 0.1 * std::abs(calibration_of(path("model")).a) + 1e-3);
  // The whole film: no crop written, and the calibration fitted on other inputs.
  app::TrainOptions whole = kept;
  whole.center_crop = 1.0;
  whole.out = path("whole");
  ASSERT_TRUE(app::train_from_folder(whole).ok());
  auto whole_model = inference::ViTModel::load(path("whole"));
  ASSERT_TRUE(whole_model.ok());
  EXPECT_FALSE(whole_model->config().centre_crop());
  const auto a = calibration_of(path("kept")), b = calibration_of(path("whole"));
  EXPECT_GT(std::abs(a.a - b.a) + std::abs(a.b - b.b), 1e-3) << "the calibration was not fitted on what the model is shown";
  // A share outside 0.5..1 is refused.
  app::TrainOptions bad = kept;
  bad.center_crop = 0.3;
  bad.out = path("bad");
  auto refused = app::train_from_folder(bad);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, app::ErrorKind::Invalid);
}

TEST_F(TrainFolderTest, TrainsWritesAModelAndResumesFromCheckpoints) {
  write_folder(24);
  app::TrainOptions o = small_run({app::DataSource::folder(path("data"))}, 0.25);
  // Cancel in epoch 2, then run again: it resumes after epoch 1.
  std::atomic<bool> cancel{false};
  auto first = app::train_from_folder(o, [&](const app::FinetuneProgress& p) { if (p.epoch == 2) cancel = true; }, &cancel);
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.error().kind, app::ErrorKind::Interrupted);
  EXPECT_TRUE(fs::exists(path("model.checkpoints") / "state.json"));
  EXPECT_FALSE(fs::exists(path("model")));
  int first_epoch = 0;
  auto r = app::train_from_folder(o, [&](const app::FinetuneProgress& p) { if (first_epoch == 0 && p.epoch > 0) first_epoch = p.epoch; });
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(first_epoch, 2);
  ASSERT_EQ(r->history.size(), 2u);
  EXPECT_EQ(r->history[0].epoch, 1);  // from the checkpoint
  EXPECT_GT(r->validation_images, 0);
  EXPECT_GT(r->train_images, r->validation_images);
  ASSERT_EQ(r->validation.findings.size(), 1u);
  EXPECT_TRUE(r->validation.findings[0].auroc.has_value());
  EXPECT_FALSE(fs::exists(path("model.checkpoints")));
  // The written folder: F16 weights that the engine loads, the report beside them.
  auto model = inference::ViTModel::load(path("model"));
  ASSERT_TRUE(model.ok()) << model.error().message;
  EXPECT_EQ(model->config().labels, std::vector<std::string>{"Pneumonia"});
  EXPECT_EQ(model->config().num_layers, 6);
  EXPECT_TRUE(fs::exists(path("model") / "training_report.json"));
  std::ifstream st(path("model") / "model.safetensors", std::ios::binary);
  std::string head(4096, '\0');
  st.read(head.data(), static_cast<std::streamsize>(head.size()));
  EXPECT_NE(head.find("\"F16\""), std::string::npos);
  // A fresh run of two epochs: progress gives each epoch its own validation AUROC (the history's),
  // never the previous epoch's while the next one trains.
  std::vector<std::pair<int, double>> reported;
  std::set<int> validating;  // epochs whose validation phase has been reported
  int early = 0;             // reports carrying an AUROC before their epoch's validation
  app::TrainOptions fresh = o;
  fresh.out = path("model-fresh");
  auto f = app::train_from_folder(fresh, [&](const app::FinetuneProgress& p) {
    if (p.phase == app::Phase::Validating) validating.insert(p.epoch);
    if (!p.validation_auroc) return;
    reported.emplace_back(p.epoch, *p.validation_auroc);
    if (validating.count(p.epoch) == 0) ++early;
  });
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(early, 0) << "progress carried an AUROC into an epoch before that epoch was validated";
  std::set<int> epochs_reported;
  for (const auto& [epoch, auroc] : reported) {
    ASSERT_GE(epoch, 1);
    ASSERT_LE(epoch, 2);
    ASSERT_TRUE(f->history[static_cast<std::size_t>(epoch - 1)].validation_auroc.has_value());
    EXPECT_EQ(auroc, *f->history[static_cast<std::size_t>(epoch - 1)].validation_auroc) << "epoch " << epoch;
    epochs_reported.insert(epoch);
  }
  EXPECT_EQ(epochs_reported, (std::set<int>{1, 2}));
  // The same held-out patients, recomputed from the folder and the seed, give the run's figures
  // (within the F16 rounding of the written weights).
  auto again = app::evaluate_folder(*model, path("data"), o.split());
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->images, r->validation_images);
  EXPECT_EQ(again->patients, r->validation_patients);
  ASSERT_EQ(again->findings.size(), 1u);
  ASSERT_TRUE(again->findings[0].auroc.has_value());
  EXPECT_NEAR(*again->findings[0].auroc, *r->validation.findings[0].auroc, 0.02);
  auto other_seed = app::evaluate_folder(*model, path("data"), app::PatientSplit{o.seed + 1, o.validation_fraction, 0});
  ASSERT_TRUE(other_seed.ok());
  EXPECT_NE(other_seed->images, again->images) << "another seed holds out other patients";
  EXPECT_FALSE(app::evaluate_folder(*model, path("nowhere"), o.split()).ok());
}

}  // namespace
}  // namespace hilum::test
