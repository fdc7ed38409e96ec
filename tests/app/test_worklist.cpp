// The workstation's worklist queries: filters (unlabelled, by author, disagreement with the model,
// finding), search, uncertainty order and the counts of what is left.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "catalog_support.hpp"
#include "hilum/app/worklist.hpp"

namespace hilum::test {
namespace {

using app::WorklistQuery;

class Worklist : public CatalogTest {
 protected:
  void SetUp() override {
    CatalogTest::SetUp();
    catalog_.emplace(open_catalog());
    // Three patients: P1 (two images in one study), P2, P3 (accession "ACC_9%").
    auto a = record("1.1", "P1", "1.2.1", "1.2.1.1");
    auto b = record("1.2", "P1", "1.2.1", "1.2.1.1");
    auto c = record("2.1", "P2", "1.2.2", "1.2.2.1");
    auto d = record("3.1", "P3", "1.2.3", "1.2.3.1");
    a.accession_number = b.accession_number = "ACC1";
    c.accession_number = "ACC2";
    d.accession_number = "ACC_9%";
    d.patient_name = "Doe^Jane";
    c.study_date = "20260301";
    ASSERT_TRUE(catalog_->put_instances({a, b, c, d}).ok());
  }

  app::Catalog& cat() { return *catalog_; }

  std::int64_t add_model(const std::string& version, bool active) {
    app::ModelRecord m;
    m.version = version;
    m.status = active ? app::ModelStatus::Active : app::ModelStatus::Candidate;
    m.path = "/models/" + version;
    auto r = cat().register_model(m, {"Effusion", "Nodule", "Mass"});
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    return r.ok() ? r->id : 0;
  }

  void label(const std::string& image, const std::string& finding, app::LabelValue v, const std::string& author) {
    app::LabelInput in;
    in.image = image;
    in.finding = finding;
    in.value = v;
    in.author = author;
    auto r = cat().add_labels({in});
    ASSERT_TRUE(r.ok()) << r.error().message;
  }

  std::vector<std::string> uids(const WorklistQuery& q) {
    auto list = app::worklist(cat(), q);
    EXPECT_TRUE(list.ok()) << (list.ok() ? "" : list.error().message);
    std::vector<std::string> out;
    if (list.ok())
      for (const auto& w : list.value()) out.push_back(w.sop_instance_uid);
    return out;
  }

  std::optional<app::Catalog> catalog_;
};

TEST_F(Worklist, ListsEveryImageWithItsHierarchyInPatientOrder) {
  auto list = app::worklist(cat(), {});
  ASSERT_TRUE(list.ok()) << list.error().message;
  ASSERT_EQ(list->size(), 4u);
  EXPECT_EQ((*list)[0].sop_instance_uid, "1.1");
  EXPECT_EQ((*list)[0].patient_id, "P1");
  EXPECT_EQ((*list)[0].study_instance_uid, "1.2.1");
  EXPECT_EQ((*list)[0].series_instance_uid, "1.2.1.1");
  EXPECT_EQ((*list)[0].accession_number, "ACC1");
  EXPECT_EQ((*list)[0].path, "/data/1.1.dcm");
  EXPECT_EQ((*list)[0].rows, 2500);
  EXPECT_FALSE((*list)[0].thumbnail_png.empty());
  EXPECT_FALSE((*list)[0].has_predictions);
  EXPECT_FALSE((*list)[0].uncertainty.has_value());
  WorklistQuery no_thumbs;
  no_thumbs.with_thumbnails = false;
  EXPECT_TRUE(app::worklist(cat(), no_thumbs)->at(0).thumbnail_png.empty());
  WorklistQuery newest;
  newest.sort = WorklistQuery::Sort::StudyDateNewest;
  EXPECT_EQ(uids(newest).front(), "2.1");
}

TEST_F(Worklist, FiltersByLabelStateAndAuthorAndCountsWhatIsLeft) {
  label("1.1", "Effusion", app::LabelValue::Present, "dr.lee");
  label("1.1", "Nodule", app::LabelValue::Absent, "dr.kim");
  label("2.1", "Mass", app::LabelValue::Present, "dr.kim");
  label("3.1", "Mass", app::LabelValue::Present, "dr.lee");
  label("3.1", "Mass", app::LabelValue::Cleared, "dr.lee");  // cleared: unlabelled again

  WorklistQuery q;
  q.author = "dr.lee";
  q.show = WorklistQuery::Show::Unlabelled;
  EXPECT_EQ(uids(q), (std::vector<std::string>{"1.2", "3.1"}));
  q.show = WorklistQuery::Show::LabelledBy;
  EXPECT_EQ(uids(q), (std::vector<std::string>{"1.1"}));
  q.show = WorklistQuery::Show::NotLabelledBy;
  EXPECT_EQ(uids(q), (std::vector<std::string>{"1.2", "2.1", "3.1"}));

  // Each reader keeps their own label: dr.kim's opposite Effusion on 1.1 does not take dr.lee's
  // over; the readers now disagree on it, so the consensus has only Nodule.
  label("1.1", "Effusion", app::LabelValue::Absent, "dr.kim");
  q.show = WorklistQuery::Show::LabelledBy;
  EXPECT_EQ(uids(q), (std::vector<std::string>{"1.1"}));
  q.show = WorklistQuery::Show::ReadersDisagree;
  EXPECT_EQ(uids(q), (std::vector<std::string>{"1.1"}));

  q.show = WorklistQuery::Show::All;
  auto list = app::worklist(cat(), q);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ((*list)[0].current_labels, 1);
  EXPECT_EQ((*list)[0].readers, 2);
  EXPECT_EQ((*list)[0].reader_disagreements, 1);
  EXPECT_EQ((*list)[0].present_findings, 0);
  EXPECT_EQ((*list)[2].present_findings, 1);

  auto counts = app::worklist_counts(cat(), q);
  ASSERT_TRUE(counts.ok()) << counts.error().message;
  EXPECT_EQ(counts->images, 4);
  EXPECT_EQ(counts->unlabelled, 2);
  EXPECT_EQ(counts->labelled, 2);
  EXPECT_EQ(counts->labelled_by_author, 1);
  EXPECT_EQ(counts->not_labelled_by_author, 3);
  EXPECT_EQ(counts->readers_disagree, 1);
  EXPECT_EQ(counts->with_predictions, 0);
}

TEST_F(Worklist, DisagreementUsesTheActiveModelAndItsThreshold) {
  const auto old_model = add_model("old", false);
  const auto model = add_model("new", true);
  label("1.1", "Effusion", app::LabelValue::Present, "dr.lee");  // model says 0.2: disagrees
  label("1.1", "Nodule", app::LabelValue::Absent, "dr.lee");     // model says 0.1: agrees
  label("2.1", "Mass", app::LabelValue::Absent, "dr.lee");       // model says 0.7: disagrees
  label("3.1", "Mass", app::LabelValue::Uncertain, "dr.lee");    // uncertain never disagrees
  ASSERT_TRUE(cat().put_predictions("1.1", model, {{"Effusion", 0.2}, {"Nodule", 0.1}, {"Mass", 0.0}}).ok());
  ASSERT_TRUE(cat().put_predictions("2.1", model, {{"Effusion", 0.0}, {"Nodule", 0.0}, {"Mass", 0.7}}).ok());
  ASSERT_TRUE(cat().put_predictions("3.1", model, {{"Mass", 0.99}}).ok());
  ASSERT_TRUE(cat().put_predictions("1.1", old_model, {{"Effusion", 0.9}, {"Nodule", 0.1}}).ok());

  WorklistQuery q;
  q.show = WorklistQuery::Show::Disagreement;
  EXPECT_EQ(uids(q), (std::vector<std::string>{"1.1", "2.1"}));
  auto list = app::worklist(cat(), q);
  EXPECT_EQ((*list)[0].disagreements, 1);
  EXPECT_TRUE((*list)[0].has_predictions);

  q.threshold = 0.8;  // Mass 0.7 is now "absent" too
  EXPECT_EQ(uids(q), (std::vector<std::string>{"1.1"}));
  q.threshold = 0.5;
  q.model_id = old_model;  // the old model agrees with the labels on 1.1 and never saw 2.1
  EXPECT_TRUE(uids(q).empty());

  auto counts = app::worklist_counts(cat(), WorklistQuery{});
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->disagreements, 2);
  EXPECT_EQ(counts->with_predictions, 3);
}

TEST_F(Worklist, UncertainImagesComeFirst) {
  const auto model = add_model("m", true);
  ASSERT_TRUE(cat().put_predictions("1.1", model, {{"Effusion", 0.99}, {"Nodule", 0.01}}).ok());  // sure
  ASSERT_TRUE(cat().put_predictions("2.1", model, {{"Effusion", 0.52}, {"Nodule", 0.0}}).ok());   // nearly on it
  ASSERT_TRUE(cat().put_predictions("3.1", model, {{"Effusion", 0.30}}).ok());
  WorklistQuery q;
  q.sort = WorklistQuery::Sort::Uncertainty;
  EXPECT_EQ(uids(q), (std::vector<std::string>{"2.1", "3.1", "1.1", "1.2"}));  // no predictions: last
  auto list = app::worklist(cat(), q);
  ASSERT_TRUE(list.ok());
  ASSERT_TRUE((*list)[0].uncertainty.has_value());
  EXPECT_NEAR(*(*list)[0].uncertainty, 1.0 - 0.02 / 0.5, 1e-9);
  EXPECT_NEAR(*(*list)[1].uncertainty, 1.0 - 0.2 / 0.5, 1e-9);
  EXPECT_NEAR(*(*list)[2].uncertainty, 0.02, 1e-9);
  EXPECT_FALSE((*list)[3].uncertainty.has_value());
}

TEST_F(Worklist, SearchesPatientIdNameAndAccessionLiterally) {
  WorklistQuery q;
  q.search = "p2";
  EXPECT_EQ(uids(q), (std::vector<std::string>{"2.1"}));
  q.search = "jane";
  EXPECT_EQ(uids(q), (std::vector<std::string>{"3.1"}));
  q.search = "acc1";
  EXPECT_EQ(uids(q), (std::vector<std::string>{"1.1", "1.2"}));
  q.search = "_9%";  // wildcards are literal characters
  EXPECT_EQ(uids(q), (std::vector<std::string>{"3.1"}));
  q.search = "C_1";
  EXPECT_TRUE(uids(q).empty());
}

TEST_F(Worklist, FindingFilterUsesLabelsFirstThenPredictions) {
  const auto model = add_model("m", true);
  ASSERT_TRUE(cat().put_predictions("1.1", model, {{"Effusion", 0.9}}).ok());  // predicted, unlabelled: in
  ASSERT_TRUE(cat().put_predictions("1.2", model, {{"Effusion", 0.9}}).ok());  // predicted but labelled absent: out
  ASSERT_TRUE(cat().put_predictions("2.1", model, {{"Effusion", 0.1}}).ok());  // labelled present: in
  label("1.2", "Effusion", app::LabelValue::Absent, "dr.lee");
  label("2.1", "effusion", app::LabelValue::Present, "dr.lee");
  WorklistQuery q;
  q.finding = "EFFUSION";
  EXPECT_EQ(uids(q), (std::vector<std::string>{"1.1", "2.1"}));
  q.finding = "Not a finding";
  auto bad = app::worklist(cat(), q);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().kind, app::ErrorKind::NotFound);
}

TEST_F(Worklist, LabelActivityCountsEventsAfterAMark) {
  auto none = app::label_activity(cat(), 0);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->events_after, 0);
  EXPECT_EQ(none->newest_event_id, 0);
  label("1.1", "Effusion", app::LabelValue::Present, "dr.lee");
  auto first = app::label_activity(cat(), 0);
  label("1.2", "Effusion", app::LabelValue::Present, "dr.lee");
  label("2.1", "Effusion", app::LabelValue::Present, "dr.lee");
  auto later = app::label_activity(cat(), first->newest_event_id);
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(later->events_after, 2);
  EXPECT_GT(later->newest_event_id, first->newest_event_id);
}

}  // namespace
}  // namespace hilum::test
