// Several readers, one catalog: each reader's own current label, the consensus policy, the
// adjudication queue and decisions, blinded reading, who recorded what, concurrent labelling.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <limits>
#include <thread>

#include <fstream>
#include <nlohmann/json.hpp>

#include "catalog_support.hpp"
#include "hilum/app/agreement.hpp"

namespace hilum::test {
namespace {

using app::LabelInput;
using app::LabelValue;

class Readers : public CatalogTest {
 protected:
  void SetUp() override {
    CatalogTest::SetUp();
    catalog_.emplace(open_catalog());
    ASSERT_TRUE(catalog_->put_instances({record("7.1"), record("7.2"), record("7.3", "P2", "2.2", "2.2.1")}).ok());
  }
  app::Catalog& c() { return *catalog_; }
  void read(const std::string& image, const std::string& finding, LabelValue v, const std::string& author) {
    auto r = c().add_labels({reading(image, finding, v, author)});
    ASSERT_TRUE(r.ok()) << r.error().message;
  }
  std::optional<app::LabelEvent> consensus(const std::string& image, const std::string& finding) {
    auto all = c().current_labels(image);
    EXPECT_TRUE(all.ok());
    for (const auto& e : all.value())
      if (e.finding == finding) return e;
    return std::nullopt;
  }
  std::optional<app::Catalog> catalog_;
};

// Before several readers, the newest event of any author won: a second reader's "absent" silently
// replaced the first reader's "present".
TEST_F(Readers, ASecondReaderDoesNotReplaceTheFirst) {
  read("7.1", "Effusion", LabelValue::Present, "dr.a");
  read("7.1", "Effusion", LabelValue::Absent, "dr.b");
  EXPECT_FALSE(consensus("7.1", "Effusion").has_value()) << "a 1-1 split has no consensus";
  auto own = c().reader_labels("7.1", "dr.a");
  ASSERT_TRUE(own.ok());
  ASSERT_EQ(own->size(), 1u);
  EXPECT_EQ(own->at(0).value, LabelValue::Present);
  EXPECT_EQ(c().reader_labels("7.1")->size(), 2u);
}

TEST_F(Readers, TheMajorityDecidesAndSaysSo) {
  read("7.1", "Effusion", LabelValue::Present, "dr.a");
  read("7.1", "Effusion", LabelValue::Present, "dr.b");
  read("7.1", "Effusion", LabelValue::Absent, "dr.c");  // the newest event, but outvoted
  auto e = consensus("7.1", "Effusion");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->value, LabelValue::Present);
  EXPECT_EQ(e->basis, "majority");
  EXPECT_EQ(e->readers, 3);
  EXPECT_EQ(e->agreeing, 2);
  // A reader changing their mind replaces only their own label: now 1 present, 2 absent.
  read("7.1", "Effusion", LabelValue::Absent, "dr.b");
  ASSERT_TRUE(consensus("7.1", "Effusion").has_value());
  EXPECT_EQ(consensus("7.1", "Effusion")->value, LabelValue::Absent);
  EXPECT_EQ(c().label_history("7.1")->size(), 4u);
}

TEST_F(Readers, ThePolicyIsConfigurable) {
  read("7.1", "Effusion", LabelValue::Present, "dr.a");
  read("7.1", "Effusion", LabelValue::Present, "dr.b");
  read("7.1", "Effusion", LabelValue::Absent, "dr.c");
  read("7.2", "Mass", LabelValue::Present, "dr.a");
  EXPECT_EQ(c().consensus_policy()->describe(), "adjudicated > unanimous > majority (at least 1 reader)");
  app::ConsensusPolicy unanimous;
  unanimous.rule = app::ConsensusPolicy::Rule::Unanimous;
  unanimous.min_readers = 2;
  ASSERT_TRUE(c().set_consensus_policy(unanimous).ok());
  EXPECT_EQ(c().consensus_policy()->rule, app::ConsensusPolicy::Rule::Unanimous);
  EXPECT_EQ(c().consensus_policy()->min_readers, 2);
  EXPECT_FALSE(consensus("7.1", "Effusion").has_value()) << "2 of 3 is not unanimous";
  EXPECT_FALSE(consensus("7.2", "Mass").has_value()) << "one reader is fewer than 2";
  read("7.2", "Mass", LabelValue::Present, "dr.b");
  ASSERT_TRUE(consensus("7.2", "Mass").has_value());
  EXPECT_EQ(consensus("7.2", "Mass")->basis, "unanimous");
  app::ConsensusPolicy bad;
  bad.min_readers = 0;
  EXPECT_FALSE(c().set_consensus_policy(bad).ok());
}

TEST_F(Readers, NoFindingIsExclusivePerReaderAndInTheConsensus) {
  read("7.1", "No Finding", LabelValue::Present, "dr.a");
  read("7.1", "Nodule", LabelValue::Present, "dr.b");  // another reader may disagree
  auto own = c().add_labels({reading("7.1", "Mass", LabelValue::Present, "dr.a")});
  ASSERT_FALSE(own.ok()) << "but not with themselves";
  EXPECT_NE(own.error().message.find("exclusive"), std::string::npos);
  EXPECT_FALSE(consensus("7.1", "No Finding").has_value()) << "No Finding beside a present finding";
  ASSERT_TRUE(consensus("7.1", "Nodule").has_value());
  auto queue = c().disagreements();
  ASSERT_TRUE(queue.ok());
  ASSERT_EQ(queue->size(), 1u);
  ASSERT_EQ(queue->at(0).findings.size(), 1u);
  EXPECT_EQ(queue->at(0).findings[0].finding, "No Finding");
}

TEST_F(Readers, EveryEventRecordsTheOsUserWhoEnteredIt) {
  // The OS user on SQLite; on PostgreSQL the database role (PostgresRules checks whom).
  const std::string me = c().reader();
  ASSERT_FALSE(me.empty());
  if (c().handle() != nullptr) {
    EXPECT_EQ(me, app::current_os_user());
  }
  LabelInput mine = reading("7.1", "Effusion", LabelValue::Present, "");
  ASSERT_TRUE(c().add_labels({mine}).ok());
  read("7.1", "Mass", LabelValue::Present, "dr.imported");
  auto history = c().label_history("7.1");
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ(history->at(0).author, me) << "no author: the OS user";
  EXPECT_EQ(history->at(0).recorded_by, me);
  EXPECT_EQ(history->at(1).author, "dr.imported");
  EXPECT_EQ(history->at(1).recorded_by, me) << "entered by the OS user on behalf of dr.imported";
  EXPECT_EQ(history->at(1).kind, app::LabelKind::Reading);
}

TEST_F(Readers, AnAdjudicatorsDecisionWinsAndIsRecordedAsSuch) {
  read("7.1", "Effusion", LabelValue::Present, "dr.a");
  read("7.1", "Effusion", LabelValue::Present, "dr.b");
  read("7.1", "Effusion", LabelValue::Absent, "dr.c");
  read("7.2", "Mass", LabelValue::Present, "dr.a");
  read("7.2", "Mass", LabelValue::Absent, "dr.b");
  auto queue = c().disagreements();
  ASSERT_TRUE(queue.ok());
  ASSERT_EQ(queue->size(), 2u);
  EXPECT_EQ(queue->at(0).sop_instance_uid, "7.2") << "no consensus comes first";
  EXPECT_FALSE(queue->at(0).findings[0].consensus.has_value());
  ASSERT_TRUE(queue->at(1).findings[0].consensus.has_value());
  EXPECT_EQ(*queue->at(1).findings[0].consensus, LabelValue::Present);
  ASSERT_EQ(queue->at(1).findings[0].readers.size(), 3u);

  // The adjudicator overrules the majority.
  auto done = c().adjudicate("7.1", {{"Effusion", LabelValue::Absent}}, "dr.chief", "pleural thickening, not fluid",
                             queue->at(1).newest_event_id);
  ASSERT_TRUE(done.ok()) << done.error().message;
  auto e = consensus("7.1", "Effusion");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->value, LabelValue::Absent);
  EXPECT_EQ(e->basis, "adjudicated");
  EXPECT_EQ(e->author, "dr.chief");
  EXPECT_EQ(e->kind, app::LabelKind::Adjudication);
  EXPECT_EQ(e->readers, 3);
  EXPECT_EQ(e->agreeing, 1);
  EXPECT_EQ(c().label_history("7.1")->back().kind, app::LabelKind::Adjudication);
  EXPECT_EQ(c().reader_labels("7.1")->size(), 3u) << "an adjudication is no reading";
  queue = c().disagreements();
  ASSERT_EQ(queue->size(), 1u);
  EXPECT_EQ(queue->at(0).sop_instance_uid, "7.2");
  // A newer reading does not undo the decision; clearing the adjudication gives the readers back.
  read("7.1", "Effusion", LabelValue::Present, "dr.d");
  EXPECT_EQ(consensus("7.1", "Effusion")->value, LabelValue::Absent);
  ASSERT_TRUE(c().adjudicate("7.1", {{"Effusion", LabelValue::Cleared}}, "dr.chief", {}, std::numeric_limits<std::int64_t>::max()).ok());
  EXPECT_EQ(consensus("7.1", "Effusion")->value, LabelValue::Present);
  EXPECT_EQ(consensus("7.1", "Effusion")->basis, "majority");
  // add_labels never records an adjudication (it would skip the check below).
  LabelInput sneaky = reading("7.2", "Mass", LabelValue::Present, "dr.x");
  sneaky.kind = app::LabelKind::Adjudication;
  EXPECT_FALSE(c().add_labels({sneaky}).ok());
}

// Two adjudicators decide the same image at once: the first wins, the second is told and
// nothing of theirs is written.
TEST_F(Readers, TwoAdjudicatorsAtOnceOneWinsTheOtherIsTold) {
  read("7.1", "Effusion", LabelValue::Present, "dr.a");
  read("7.1", "Effusion", LabelValue::Absent, "dr.b");
  const std::int64_t seen = c().disagreements()->at(0).newest_event_id;
  auto other = app::Catalog::open(location(), app::Catalog::Mode::ReadWrite);
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(c().adjudicate("7.1", {{"Effusion", LabelValue::Present}}, "dr.first", {}, seen).ok());
  auto late = other->adjudicate("7.1", {{"Effusion", LabelValue::Absent}}, "dr.second", {}, seen);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().kind, app::ErrorKind::Conflict);
  EXPECT_NE(late.error().message.find("dr.first"), std::string::npos) << late.error().message;
  EXPECT_EQ(consensus("7.1", "Effusion")->author, "dr.first");

  // Really at once, from two threads with their own connections, on another image.
  read("7.2", "Mass", LabelValue::Present, "dr.a");
  read("7.2", "Mass", LabelValue::Absent, "dr.b");
  std::atomic<int> ready{0};
  std::atomic<int> won{0}, told{0};
  const auto adjudicator = [&](const std::string& name, LabelValue v) {
    auto cat = app::Catalog::open(location(), app::Catalog::Mode::ReadWrite);
    if (!cat) return;
    ++ready;
    while (ready.load() < 2) std::this_thread::yield();
    auto r = cat->adjudicate("7.2", {{"Mass", v}}, name);
    if (r) ++won;
    else if (r.error().kind == app::ErrorKind::Conflict) ++told;
  };
  std::thread t1(adjudicator, "dr.one", LabelValue::Present);
  std::thread t2(adjudicator, "dr.two", LabelValue::Absent);
  t1.join();
  t2.join();
  EXPECT_EQ(won.load(), 1);
  EXPECT_EQ(told.load(), 1);
  int adjudications = 0;
  for (const auto& e : c().label_history("7.2").value()) adjudications += e.kind == app::LabelKind::Adjudication;
  EXPECT_EQ(adjudications, 1);
}

// The catalog's agreement report on the reference ratings (tests/reference/golden_agreement, whose
// values scikit-learn and NumPy computed) matches them to 1e-9, under the names the JSON promises.
TEST_F(Readers, AgreementReportMatchesTheIndependentReference) {
  std::ifstream in(std::string(HILUM_AGREEMENT_GOLDEN_DIR) + "/agreement.json");
  ASSERT_TRUE(in.good());
  const auto g = nlohmann::json::parse(in);
  const auto rows = g["ratings"].get<std::vector<std::vector<int>>>();
  const auto patients = g["patients"].get<std::vector<int>>();
  const auto readers = g["readers"].get<std::vector<std::string>>();
  std::vector<app::InstanceRecord> records;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const std::string p = std::to_string(patients[i]);
    records.push_back(record("9." + std::to_string(i), "RP" + p, "9.9." + p, "9.9." + p + ".1"));
  }
  ASSERT_TRUE(c().put_instances(records).ok());
  app::ModelRecord m;
  m.version = "ai-1";
  m.status = app::ModelStatus::Active;
  m.path = "/models/ai-1";
  auto model = c().register_model(m, {"Effusion"});
  ASSERT_TRUE(model.ok());
  std::vector<LabelInput> labels;
  const LabelValue values[] = {LabelValue::Absent, LabelValue::Present, LabelValue::Uncertain};
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const std::string image = "9." + std::to_string(i);
    for (std::size_t r = 0; r < readers.size(); ++r) {
      if (rows[i][r] >= 0) labels.push_back(reading(image, "Effusion", values[rows[i][r]], readers[r]));
    }
    // The AI says what reader0 says (0.3 where reader0 did not read it): their kappa is 1.
    const double p = rows[i][0] == 1 ? 0.9 : rows[i][0] == 0 ? 0.1 : 0.3;
    ASSERT_TRUE(c().put_predictions(image, model->id, {{"Effusion", p}}).ok());
  }
  // Two images only one reader labelled, on a 21st patient, and four adjudications (the reference's
  // "reader_vs_others_consensus"): they change none of the statistics above, only each reader's
  // agreement with the other readers' consensus.
  const auto& loo = g["reader_vs_others_consensus"];
  const auto extra = loo["extra_ratings"].get<std::vector<std::vector<int>>>();
  for (std::size_t k = 0; k < extra.size(); ++k) {
    const std::string image = "9." + std::to_string(rows.size() + k);
    const std::string p = std::to_string(loo["extra_patients"][k].get<int>());
    ASSERT_TRUE(c().put_instances({record(image, "RP" + p, "9.9." + p, "9.9." + p + ".1")}).ok());
    for (std::size_t r = 0; r < readers.size(); ++r) {
      if (extra[k][r] >= 0) labels.push_back(reading(image, "Effusion", values[extra[k][r]], readers[r]));
    }
  }
  ASSERT_TRUE(c().add_labels(labels).ok());
  for (const auto& a : loo["adjudications"]) {
    const std::string image = "9." + std::to_string(a["item"].get<int>());
    auto r = c().adjudicate(image, {{"Effusion", values[a["value"].get<int>()]}}, a["adjudicator"].get<std::string>());
    ASSERT_TRUE(r.ok()) << r.error().message;
  }

  app::AgreementOptions options;
  options.finding = "effusion";
  options.bootstrap = 200;
  auto report = app::agreement(c(), options);
  ASSERT_TRUE(report.ok()) << report.error().message;
  ASSERT_EQ(report->findings.size(), 1u);
  const auto& f = report->findings[0];
  EXPECT_EQ(f.readers, readers);
  EXPECT_EQ(f.images, 42);
  EXPECT_EQ(f.patients, 21);
  ASSERT_EQ(f.cohen_kappa.size(), 6u);
  for (std::size_t k = 0; k < 6; ++k) {
    EXPECT_EQ(g["cohen_kappa"][k]["readers"][0], f.cohen_kappa[k].reader_a);
    EXPECT_EQ(g["cohen_kappa"][k]["readers"][1], f.cohen_kappa[k].reader_b);
    ASSERT_TRUE(f.cohen_kappa[k].cohen_kappa.value.has_value());
    EXPECT_NEAR(*f.cohen_kappa[k].cohen_kappa.value, g["cohen_kappa"][k]["cohen_kappa"].get<double>(), 1e-9);
    ASSERT_TRUE(f.cohen_kappa[k].cohen_kappa.low.has_value());
    EXPECT_LE(*f.cohen_kappa[k].cohen_kappa.low, *f.cohen_kappa[k].cohen_kappa.high);
  }
  EXPECT_NEAR(f.fleiss_kappa.value.value_or(-9), g["fleiss_kappa"].get<double>(), 1e-9);
  EXPECT_EQ(f.fleiss_kappa.images, g["fleiss_complete_items"].get<int>());
  EXPECT_NEAR(f.krippendorff_alpha.value.value_or(-9), g["krippendorff_alpha"].get<double>(), 1e-9);
  ASSERT_EQ(f.vs_ai.size(), 4u);
  EXPECT_NEAR(f.vs_ai[0].cohen_kappa.value.value_or(-9), 1.0, 1e-12);
  // Each reader against the consensus of the others (leave-one-out), as the reference computed it:
  // the value, the images it is computed on and those left out, by reason.
  ASSERT_EQ(f.vs_others_consensus.size(), 4u);
  for (std::size_t r = 0; r < 4; ++r) {
    const auto& want = loo["readers"][r];
    const auto& got = f.vs_others_consensus[r];
    EXPECT_EQ(got.reader, want["reader"].get<std::string>());
    ASSERT_TRUE(got.cohen_kappa.value.has_value()) << got.reader;
    EXPECT_NEAR(*got.cohen_kappa.value, want["cohen_kappa"].get<double>(), 1e-9) << got.reader;
    EXPECT_EQ(got.cohen_kappa.images, want["images"].get<int>()) << got.reader;
    EXPECT_EQ(got.no_other_reader, want["left_out"]["no_other_reader"].get<int>()) << got.reader;
    EXPECT_EQ(got.no_consensus, want["left_out"]["no_consensus"].get<int>()) << got.reader;
  }
  EXPECT_NE(report->labels.find("leave-one-out"), std::string::npos) << report->labels;

  const auto j = nlohmann::json::parse(app::agreement_json(*report));
  EXPECT_EQ(j["model"], "ai-1");
  EXPECT_EQ(j["bootstrap"]["unit"], "patient");
  const auto& jf = j["findings"][0];
  EXPECT_EQ(jf["readers"][0], "reader0");
  EXPECT_EQ(jf["cohen_kappa"][0]["readers"][1], "reader1");
  EXPECT_NEAR(jf["cohen_kappa"][0]["value"].get<double>(), g["cohen_kappa"][0]["cohen_kappa"].get<double>(), 1e-9);
  EXPECT_NEAR(jf["fleiss_kappa"]["value"].get<double>(), g["fleiss_kappa"].get<double>(), 1e-9);
  EXPECT_NEAR(jf["krippendorff_alpha"]["value"].get<double>(), g["krippendorff_alpha"].get<double>(), 1e-9);
  EXPECT_EQ(jf["krippendorff_alpha"]["ci95"].size(), 2u);
  EXPECT_EQ(jf["reader_vs_ai"][0]["reader"], "reader0");
  EXPECT_EQ(jf["reader_vs_others_consensus"][3]["reader"], "reader3");
  EXPECT_NEAR(jf["reader_vs_others_consensus"][1]["cohen_kappa"]["value"].get<double>(), loo["readers"][1]["cohen_kappa"].get<double>(), 1e-9);
  EXPECT_EQ(jf["reader_vs_others_consensus"][1]["left_out"]["no_other_reader"], 1);
  EXPECT_FALSE(jf.contains("reader_vs_consensus"));
  EXPECT_FALSE(jf["reader_vs_ai"][0].contains("left_out"));

  options.finding = "Dragons";
  EXPECT_EQ(app::agreement(c(), options).error().kind, app::ErrorKind::NotFound);
}

// No statistic from fewer than kMinAgreementImages images: a kappa of two readers on 9 images is
// not given (null, "too few images", the count), on 10 it is.
TEST_F(Readers, NoAgreementStatisticFromTooFewImages) {
  static_assert(app::kMinAgreementImages == 10);
  std::vector<app::InstanceRecord> records;
  for (int i = 0; i < 10; ++i) records.push_back(record("6." + std::to_string(i), "Q" + std::to_string(i), "6.6." + std::to_string(i), "6.6." + std::to_string(i) + ".1"));
  ASSERT_TRUE(c().put_instances(records).ok());
  std::vector<LabelInput> labels;
  for (int i = 0; i < 9; ++i) {  // the readers agree on 6 of 9
    const std::string image = "6." + std::to_string(i);
    labels.push_back(reading(image, "Mass", i % 2 == 0 ? LabelValue::Present : LabelValue::Absent, "dr.a"));
    labels.push_back(reading(image, "Mass", i % 3 == 0 ? LabelValue::Absent : (i % 2 == 0 ? LabelValue::Present : LabelValue::Absent), "dr.b"));
  }
  ASSERT_TRUE(c().add_labels(labels).ok());
  app::AgreementOptions options;
  options.finding = "Mass";
  options.bootstrap = 20;
  auto few = app::agreement(c(), options);
  ASSERT_TRUE(few.ok()) << few.error().message;
  EXPECT_EQ(few->min_images, 10);
  const auto& f = few->findings.at(0);
  ASSERT_EQ(f.cohen_kappa.size(), 1u);
  const app::AgreementValue& k = f.cohen_kappa[0].cohen_kappa;
  EXPECT_FALSE(k.value.has_value());
  EXPECT_FALSE(k.low.has_value());
  EXPECT_EQ(k.images, 9);
  EXPECT_EQ(k.reason, "too few images");
  EXPECT_FALSE(f.fleiss_kappa.value.has_value());
  EXPECT_FALSE(f.krippendorff_alpha.value.has_value());
  const auto j = nlohmann::json::parse(app::agreement_json(*few));
  EXPECT_EQ(j["min_images"], 10);
  EXPECT_TRUE(j["findings"][0]["cohen_kappa"][0]["value"].is_null());
  EXPECT_EQ(j["findings"][0]["cohen_kappa"][0]["reason"], "too few images");
  EXPECT_EQ(j["findings"][0]["cohen_kappa"][0]["images"], 9);
  // The tenth image: the statistics are given, and their reason is null.
  ASSERT_TRUE(c().add_labels({reading("6.9", "Mass", LabelValue::Present, "dr.a"), reading("6.9", "Mass", LabelValue::Present, "dr.b")}).ok());
  auto enough = app::agreement(c(), options);
  ASSERT_TRUE(enough.ok());
  const app::AgreementValue& k10 = enough->findings.at(0).cohen_kappa.at(0).cohen_kappa;
  ASSERT_TRUE(k10.value.has_value());
  EXPECT_EQ(k10.images, 10);
  EXPECT_EQ(k10.reason, "");
  EXPECT_TRUE(enough->findings.at(0).krippendorff_alpha.value.has_value());
  EXPECT_TRUE(nlohmann::json::parse(app::agreement_json(*enough))["findings"][0]["cohen_kappa"][0]["reason"].is_null());
}

// A reader is compared with the consensus of the *other* readers. Before, the consensus held the
// reader's own label: on images only that reader labelled it was their label, a kappa of 1.0 by
// construction (here 1.0 on 9 images); now those images are left out and counted.
TEST_F(Readers, AReaderIsComparedWithTheOtherReadersConsensusOnly) {
  std::vector<app::InstanceRecord> records;
  for (int i = 0; i < 10; ++i) records.push_back(record("5." + std::to_string(i), "S" + std::to_string(i), "5.5." + std::to_string(i), "5.5." + std::to_string(i) + ".1"));
  ASSERT_TRUE(c().put_instances(records).ok());
  std::vector<LabelInput> labels;
  for (int i = 0; i < 10; ++i) labels.push_back(reading("5." + std::to_string(i), "Nodule", i % 2 ? LabelValue::Present : LabelValue::Absent, "dr.solo"));
  labels.push_back(reading("5.0", "Nodule", LabelValue::Present, "dr.b"));  // a second reader on one image, disagreeing
  ASSERT_TRUE(c().add_labels(labels).ok());
  app::AgreementOptions options;
  options.finding = "Nodule";
  options.bootstrap = 0;
  options.min_images = 1;
  auto report = app::agreement(c(), options);
  ASSERT_TRUE(report.ok()) << report.error().message;
  const auto& f = report->findings.at(0);
  ASSERT_EQ(f.vs_others_consensus.size(), 2u);
  const auto& solo = f.vs_others_consensus[1];
  ASSERT_EQ(solo.reader, "dr.solo");
  EXPECT_EQ(solo.cohen_kappa.images, 1) << "only the image dr.b also labelled";
  EXPECT_EQ(solo.no_other_reader, 9);
  EXPECT_EQ(solo.no_consensus, 0);
  ASSERT_TRUE(solo.cohen_kappa.value.has_value());
  EXPECT_NEAR(*solo.cohen_kappa.value, 0.0, 1e-12) << "they disagree on the one image compared; before: 1.0 on 9 images";
  const auto& b = f.vs_others_consensus[0];
  EXPECT_EQ(b.reader, "dr.b");
  EXPECT_EQ(b.cohen_kappa.images, 1);
  EXPECT_EQ(b.no_other_reader, 0);

  // The policy, applied to the others: another person's adjudication decides, the reader's own does not.
  app::ConsensusPolicy majority;
  const std::vector<LabelValue> two_one = {LabelValue::Present, LabelValue::Present, LabelValue::Absent};
  EXPECT_EQ(app::others_consensus(majority, "r", two_one, std::nullopt), LabelValue::Present);
  EXPECT_EQ(app::others_consensus(majority, "r", {LabelValue::Present, LabelValue::Absent}, std::nullopt), std::nullopt);
  EXPECT_EQ(app::others_consensus(majority, "r", two_one, std::pair<std::string, LabelValue>{"chief", LabelValue::Absent}), LabelValue::Absent);
  EXPECT_EQ(app::others_consensus(majority, "r", two_one, std::pair<std::string, LabelValue>{"r", LabelValue::Absent}), LabelValue::Present);
  bool nobody = false;
  EXPECT_EQ(app::others_consensus(majority, "r", {}, std::pair<std::string, LabelValue>{"r", LabelValue::Absent}, &nobody), std::nullopt);
  EXPECT_TRUE(nobody);
  EXPECT_EQ(app::others_consensus(majority, "r", {}, std::pair<std::string, LabelValue>{"chief", LabelValue::Absent}, &nobody), LabelValue::Absent);
  EXPECT_FALSE(nobody);
  app::ConsensusPolicy unanimous{app::ConsensusPolicy::Rule::Unanimous, 3};
  EXPECT_EQ(app::others_consensus(unanimous, "r", two_one, std::nullopt), std::nullopt);
  EXPECT_EQ(app::others_consensus(unanimous, "r", {LabelValue::Absent, LabelValue::Absent}, std::nullopt), std::nullopt) << "fewer than 3";
  EXPECT_EQ(app::others_consensus(unanimous, "r", {LabelValue::Absent, LabelValue::Absent, LabelValue::Absent}, std::nullopt), LabelValue::Absent);
}

TEST_F(Readers, BlindedReadingWithholdsOthersLabelsUntilSubmitted) {
  read("7.1", "Effusion", LabelValue::Present, "dr.a");
  read("7.1", "Mass", LabelValue::Absent, "dr.b");
  auto open_view = c().reader_view("7.1", "dr.b");
  ASSERT_TRUE(open_view.ok());
  EXPECT_FALSE(open_view->blinded) << "blinding is off by default";
  EXPECT_EQ(open_view->others.size(), 1u);

  ASSERT_TRUE(c().set_blinding(app::Blinding::LabelsAndAi).ok());
  auto view = c().reader_view("7.1", "dr.b");
  ASSERT_TRUE(view.ok());
  EXPECT_TRUE(view->blinded);
  EXPECT_TRUE(view->ai_hidden);
  EXPECT_FALSE(view->submitted);
  ASSERT_EQ(view->own.size(), 1u);
  EXPECT_EQ(view->own[0].finding, "Mass");
  EXPECT_TRUE(view->others.empty()) << "dr.a's label before dr.b submitted";
  EXPECT_TRUE(view->consensus.empty());

  ASSERT_TRUE(c().submit_reading("7.1", "dr.b").ok());
  ASSERT_TRUE(c().submit_reading("7.1", "dr.b").ok()) << "submitting twice is harmless";
  view = c().reader_view("7.1", "dr.b");
  EXPECT_TRUE(view->submitted);
  EXPECT_FALSE(view->blinded);
  EXPECT_FALSE(view->ai_hidden);
  ASSERT_EQ(view->others.size(), 1u);
  EXPECT_EQ(view->others[0].author, "dr.a");
  EXPECT_EQ(view->consensus.size(), 2u);
  // Another reader who has not submitted is still blinded, for labels only with Labels.
  ASSERT_TRUE(c().set_blinding(app::Blinding::Labels).ok());
  view = c().reader_view("7.1", "dr.c");
  EXPECT_TRUE(view->blinded);
  EXPECT_FALSE(view->ai_hidden);
  EXPECT_TRUE(view->own.empty());
  EXPECT_TRUE(view->others.empty());
}

// Eight processes label one catalog at once: every label is there afterwards, none failed.
TEST_F(Readers, EightProcessesLabellingAtOnceLoseNothing) {
  constexpr int kProcesses = 8;
  constexpr int kLabels = 40;
  const auto db = location();
  catalog_.reset();
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int failures = 0;
      auto cat = app::Catalog::open(db, app::Catalog::Mode::ReadWrite);
      if (!cat) ::_exit(100);
      const char* findings[] = {"Effusion", "Mass", "Nodule", "Atelectasis"};
      for (int k = 0; k < kLabels; ++k) {
        const std::string image = k % 2 ? "7.1" : "7.2";
        auto r = cat->add_labels({reading(image, findings[k % 4], k % 3 ? LabelValue::Present : LabelValue::Absent,
                                          "reader" + std::to_string(p))});
        if (!r) ++failures;
      }
      ::_exit(failures > 99 ? 99 : failures);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "a process saw a failure (database is locked?)";
  }
  catalog_.emplace(open_catalog());
  EXPECT_EQ(c().label_history()->size(), static_cast<std::size_t>(kProcesses * kLabels));
  EXPECT_EQ(c().reader_labels()->size(), static_cast<std::size_t>(kProcesses * 4));  // 4 (image, finding) pairs per reader
}

}  // namespace
}  // namespace hilum::test
