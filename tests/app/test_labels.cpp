// Labels: the append-only history, the derived current labels, validation (all-or-nothing),
// "No Finding" exclusivity, regions, the vocabulary and CSV bulk entry.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "catalog_support.hpp"
#include "hilum/app/json.hpp"
#include "hilum/app/labels_csv.hpp"

#include <nlohmann/json.hpp>

#include <clocale>
#include <cstdio>

#include "hilum/core/numbers.hpp"

namespace hilum::test {
namespace {

using app::LabelInput;
using app::LabelValue;

LabelInput label(const std::string& image, const std::string& finding, LabelValue v, const std::string& author = "dr.a") {
  return reading(image, finding, v, author);
}

class LabelsTest : public CatalogTest {
 protected:
  void SetUp() override {
    CatalogTest::SetUp();
    catalog_.emplace(open_catalog());
    ASSERT_TRUE(catalog_->put_instances({record("7.1"), record("7.2"), record("7.3", "P2", "2.2", "2.2.1")}).ok());
  }
  app::Catalog& c() { return *catalog_; }
  std::optional<app::Catalog> catalog_;
};

TEST_F(LabelsTest, HistoryIsAppendOnlyAndCurrentIsTheLatest) {
  auto in = label("7.1", "Effusion", LabelValue::Present);
  in.model_version = "hilum-vit-ti-1";
  in.model_probability = 0.83;
  in.comment = "left base";
  ASSERT_TRUE(c().add_labels({in}).ok());
  ASSERT_TRUE(c().add_labels({label("7.1", "effusion", LabelValue::Absent, "dr.b")}).ok());  // case-insensitive name
  ASSERT_TRUE(c().add_labels({label("7.1", "Nodule", LabelValue::Uncertain, "dr.b")}).ok());

  auto history = c().label_history("7.1");
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 3u);
  EXPECT_EQ(history->at(0).value, LabelValue::Present);
  EXPECT_EQ(history->at(0).author, "dr.a");
  ASSERT_TRUE(history->at(0).model_version.has_value());
  EXPECT_EQ(*history->at(0).model_version, "hilum-vit-ti-1");
  EXPECT_DOUBLE_EQ(history->at(0).model_probability.value_or(-1), 0.83);
  EXPECT_EQ(history->at(0).comment, "left base");
  EXPECT_EQ(history->at(1).value, LabelValue::Absent);
  EXPECT_EQ(history->at(1).finding, "Effusion");
  EXPECT_FALSE(history->at(0).created_at.empty());

  // Each reader keeps their own current label; dr.a and dr.b disagree on Effusion, so the
  // consensus (current_labels) has only Nodule.
  auto readers = c().reader_labels("7.1");
  ASSERT_TRUE(readers.ok());
  ASSERT_EQ(readers->size(), 3u);
  EXPECT_EQ(readers->at(0).finding, "Effusion");
  EXPECT_EQ(readers->at(0).author, "dr.a");
  EXPECT_EQ(readers->at(0).value, LabelValue::Present);
  EXPECT_EQ(readers->at(1).author, "dr.b");
  EXPECT_EQ(readers->at(1).value, LabelValue::Absent);
  auto current = c().current_labels("7.1");
  ASSERT_TRUE(current.ok());
  ASSERT_EQ(current->size(), 1u);
  EXPECT_EQ(current->at(0).finding, "Nodule");
  EXPECT_EQ(current->at(0).basis, "unanimous");

  // Clearing removes it from the current labels but not from the history.
  ASSERT_TRUE(c().add_labels({label("7.1", "Nodule", LabelValue::Cleared, "dr.b")}).ok());
  EXPECT_EQ(c().current_labels("7.1")->size(), 0u);
  EXPECT_EQ(c().reader_labels("7.1")->size(), 2u);
  EXPECT_EQ(c().label_history("7.1")->size(), 4u);

  // The database itself refuses to rewrite history, whoever asks (on PostgreSQL: PostgresRules).
  if (c().handle() != nullptr) {
    char* msg = nullptr;
    EXPECT_NE(sqlite3_exec(c().handle(), "UPDATE label_events SET author = 'forger'", nullptr, nullptr, &msg), SQLITE_OK);
    sqlite3_free(msg);
    EXPECT_NE(sqlite3_exec(c().handle(), "DELETE FROM label_events", nullptr, nullptr, &msg), SQLITE_OK);
    sqlite3_free(msg);
  }
  EXPECT_EQ(c().label_history("7.1")->size(), 4u);
  EXPECT_EQ(c().label_history("7.1")->at(0).author, "dr.a");
}

TEST_F(LabelsTest, ABatchWithOneBadLabelWritesNothing) {
  const std::vector<std::vector<LabelInput>> bad_batches{
      {label("7.1", "Effusion", LabelValue::Present), label("9.9.9", "Effusion", LabelValue::Present)},  // unknown image
      {label("7.1", "Effusion", LabelValue::Present), label("7.1", "Dragons", LabelValue::Present)},     // unknown finding
      {label("7.1", "Effusion", LabelValue::Present), label("7.2", "Mass", LabelValue::Present, "dr\x01b")},  // control character
  };
  for (const auto& batch : bad_batches) {
    auto r = c().add_labels(batch);
    ASSERT_FALSE(r.ok());
    EXPECT_FALSE(r.error().message.empty());
  }
  EXPECT_TRUE(c().label_history()->empty());
  auto unknown = c().add_labels({label("7.1", "Dragons", LabelValue::Present)});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().kind, app::ErrorKind::NotFound);
  EXPECT_NE(unknown.error().message.find("unknown finding"), std::string::npos);
}

// A label sent again with the same event key (a retry after a lost reply) is not written twice:
// add_labels returns the stored event's id. A key given twice in one batch, or malformed, is refused.
TEST_F(LabelsTest, AnEventKeyIsWrittenOnce) {
  auto a = label("7.1", "Effusion", LabelValue::Present);
  a.event_key = "0123abcd-1";
  auto b = label("7.1", "Mass", LabelValue::Present);
  b.event_key = "0123abcd-2";
  auto first = c().add_labels({a, b});
  ASSERT_TRUE(first.ok()) << first.error().message;
  auto again = c().add_labels({a, b});
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again.value(), first.value());
  // Partly stored: only the new one is written.
  auto d = label("7.1", "Nodule", LabelValue::Present);
  d.event_key = "0123abcd-3";
  auto mixed = c().add_labels({a, d});
  ASSERT_TRUE(mixed.ok()) << mixed.error().message;
  EXPECT_EQ(mixed->at(0), first->at(0));
  EXPECT_EQ(c().label_history()->size(), 3u);
  // Without a key, the same label is a new event, as always.
  ASSERT_TRUE(c().add_labels({label("7.1", "Effusion", LabelValue::Present)}).ok());
  EXPECT_EQ(c().label_history()->size(), 4u);
  auto dup = label("7.2", "Effusion", LabelValue::Present);
  dup.event_key = "k-1";
  EXPECT_EQ(c().add_labels({dup, dup}).error().kind, app::ErrorKind::Invalid);
  dup.event_key = "with space";
  EXPECT_EQ(c().add_labels({dup}).error().kind, app::ErrorKind::Invalid);
  EXPECT_EQ(c().label_history()->size(), 4u);
}

TEST_F(LabelsTest, NoFindingIsExclusive) {
  ASSERT_TRUE(c().add_labels({label("7.1", "Effusion", LabelValue::Present)}).ok());
  auto clash = c().add_labels({label("7.1", "No Finding", LabelValue::Present)});
  ASSERT_FALSE(clash.ok());
  EXPECT_NE(clash.error().message.find("exclusive"), std::string::npos);
  auto same_batch = c().add_labels({label("7.2", "No Finding", LabelValue::Present), label("7.2", "Mass", LabelValue::Present)});
  EXPECT_FALSE(same_batch.ok());
  // Setting the other finding absent in the same change makes it consistent.
  auto fixed = c().add_labels({label("7.1", "Effusion", LabelValue::Absent), label("7.1", "No Finding", LabelValue::Present)});
  ASSERT_TRUE(fixed.ok()) << fixed.error().message;
  // Uncertain findings do not contradict "No Finding".
  EXPECT_TRUE(c().add_labels({label("7.1", "Nodule", LabelValue::Uncertain)}).ok());
}

TEST_F(LabelsTest, RegionsAreValidatedAndKept) {
  auto rect = label("7.1", "Nodule", LabelValue::Present);
  rect.region = app::Region{app::Region::Shape::Rectangle, 100, 200, 50, 40, {}};
  auto poly = label("7.1", "Effusion", LabelValue::Present);
  poly.region = app::Region{app::Region::Shape::Polygon, 0, 0, 0, 0, {{10, 10}, {300, 20}, {150, 400}}};
  ASSERT_TRUE(c().add_labels({rect, poly}).ok());
  auto current = c().current_labels("7.1");
  ASSERT_TRUE(current.ok());
  ASSERT_EQ(current->size(), 2u);
  for (const auto& e : current.value()) {
    ASSERT_TRUE(e.region.has_value()) << e.finding;
    if (e.finding == "Nodule") {
      EXPECT_EQ(e.region->shape, app::Region::Shape::Rectangle);
      EXPECT_DOUBLE_EQ(e.region->x, 100);
      EXPECT_DOUBLE_EQ(e.region->h, 40);
    } else {
      EXPECT_EQ(e.region->shape, app::Region::Shape::Polygon);
      ASSERT_EQ(e.region->points.size(), 3u);
      const auto box = e.region->bounding_box();
      EXPECT_DOUBLE_EQ(box.x, 10);
      EXPECT_DOUBLE_EQ(box.w, 290);
      EXPECT_DOUBLE_EQ(box.h, 390);
    }
  }
  // Outside the 2000 x 2500 image, empty, or on an absent finding: refused.
  auto outside = label("7.2", "Mass", LabelValue::Present);
  outside.region = app::Region{app::Region::Shape::Rectangle, 1990, 10, 50, 50, {}};
  EXPECT_FALSE(c().add_labels({outside}).ok());
  auto empty = label("7.2", "Mass", LabelValue::Present);
  empty.region = app::Region{app::Region::Shape::Rectangle, 10, 10, 0, 50, {}};
  EXPECT_FALSE(c().add_labels({empty}).ok());
  auto absent = label("7.2", "Mass", LabelValue::Absent);
  absent.region = app::Region{app::Region::Shape::Rectangle, 10, 10, 5, 5, {}};
  EXPECT_FALSE(c().add_labels({absent}).ok());
}

TEST_F(LabelsTest, TheVocabularyGrows) {
  auto added = c().add_finding("Tube malposition", "Line or tube in the wrong place");
  ASSERT_TRUE(added.ok()) << added.error().message;
  EXPECT_FALSE(added->builtin);
  EXPECT_FALSE(c().add_finding("tube MALPOSITION", "").ok());  // names are case-insensitive
  EXPECT_FALSE(c().add_finding("  ", "").ok());
  EXPECT_FALSE(c().add_finding("A|B", "").ok());
  EXPECT_EQ(c().findings()->size(), 16u);
  EXPECT_TRUE(c().add_labels({label("7.1", "Tube malposition", LabelValue::Present)}).ok());
}

// Issue 16, defect 8: a finding name that a spreadsheet would run as a formula is refused, whether
// added by hand or brought in as a model's output.
TEST_F(LabelsTest, FindingNamesThatLookLikeFormulasAreRefused) {
  for (const std::string name : {"=1+1", "+SUM(A1)", "-2+3", "@HYPERLINK(\"x\")", "Tube=1", "a\x01b"}) {
    auto r = c().add_finding(name, "");
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.error().kind, app::ErrorKind::Invalid);
    EXPECT_FALSE(app::finding_name_problem(name).empty()) << name;
  }
  EXPECT_NE(c().add_finding("@cmd", "").error().message.find("cannot begin with"), std::string::npos);
  EXPECT_TRUE(app::finding_name_problem("Pleural_Thickening").empty());
  EXPECT_TRUE(c().add_finding("Line-tube malposition (+/-)", "").ok());  // inside a name they are harmless
  app::ModelRecord m;
  m.version = "formula-model";
  auto registered = c().register_model(m, {"Effusion", "-cmd|' /C calc'!A0"});
  ASSERT_FALSE(registered.ok());
  EXPECT_NE(registered.error().message.find("cannot be a finding"), std::string::npos) << registered.error().message;
  EXPECT_FALSE(c().find_model("formula-model").value().has_value());
  const auto vocabulary = c().findings();
  ASSERT_TRUE(vocabulary.ok());
  for (const auto& f : vocabulary.value()) EXPECT_EQ(app::finding_name_problem(f.name), "") << f.name;
}

// Issue 16, defect 9: text entering the catalog is well-formed UTF-8 (checked at the boundary), so
// that the JSON and CSV printed from it are text.
TEST_F(LabelsTest, TextEnteringTheCatalogMustBeUtf8) {
  const std::string invalid[] = {"Dr. \xff\xfe", "M\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\x80"};
  for (const auto& bytes : invalid) {
    auto r = c().add_labels({label("7.1", "Effusion", LabelValue::Present, bytes)});
    ASSERT_FALSE(r.ok()) << "author " << bytes;
    EXPECT_EQ(r.error().kind, app::ErrorKind::Invalid);
    EXPECT_NE(r.error().message.find("the author is not valid UTF-8"), std::string::npos) << r.error().message;
    auto commented = label("7.1", "Effusion", LabelValue::Present);
    commented.comment = "seen " + bytes;
    EXPECT_FALSE(c().add_labels({commented}).ok());
    EXPECT_FALSE(c().add_finding("Nodule " + bytes, "").ok());
    EXPECT_FALSE(c().add_finding("Tube", "bad " + bytes).ok());
  }
  EXPECT_FALSE(c().add_labels({label("7.1", "Effusion", LabelValue::Present, "Dr.\tA")}).ok());  // control characters
  EXPECT_TRUE(c().label_history("7.1")->empty());
  EXPECT_EQ(c().findings()->size(), 15u);
  // Well-formed text in any script is welcome.
  ASSERT_TRUE(c().add_labels({label("7.1", "Effusion", LabelValue::Present, "Dr. M\xc3\xbcller \xe6\x9d\x8e \xf0\x9f\xa9\xbb")}).ok());
  EXPECT_EQ(c().label_history("7.1")->at(0).author, "Dr. M\xc3\xbcller \xe6\x9d\x8e \xf0\x9f\xa9\xbb");
}

// Issue 16, defect 9: whatever bytes a value holds (a DICOM string, an older catalog), the JSON
// Hilum prints parses: invalid UTF-8 becomes U+FFFD, valid text is kept.
TEST(Json, WhatHilumPrintsAlwaysParses) {
  const std::string line = app::JsonObject()
                               .add("author", std::string("Dr.\xff\xc3("))
                               .add("kept", "M\xc3\xbcller \xf0\x9f\xa9\xbb")
                               .add("control", std::string("a\x01\x7f\xed\xa0\x80z"))
                               .str();
  nlohmann::json j;
  ASSERT_NO_THROW(j = nlohmann::json::parse(line)) << line;
  EXPECT_EQ(j["author"], "Dr.\xef\xbf\xbd\xef\xbf\xbd(");
  EXPECT_EQ(j["kept"], "M\xc3\xbcller \xf0\x9f\xa9\xbb");
  EXPECT_EQ(j["control"], "a\x01\x7f\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz");
}

// Runs a test under a decimal-comma locale (as the GUI does once Qt has called setlocale), and
// restores the previous one.
class GermanLocale {
 public:
  GermanLocale() : previous_(std::setlocale(LC_ALL, nullptr)) { active_ = std::setlocale(LC_ALL, "de_DE.UTF-8") != nullptr; }
  ~GermanLocale() { std::setlocale(LC_ALL, previous_.c_str()); }
  GermanLocale(const GermanLocale&) = delete;
  GermanLocale& operator=(const GermanLocale&) = delete;
  [[nodiscard]] bool active() const { return active_; }

 private:
  std::string previous_;
  bool active_ = false;
};

// Issue 16, defect 12: numbers written to the catalog and to JSON do not depend on the locale: under
// de_DE.UTF-8 a region's 120.5 is stored as "120.5" (not "120,5") and reads back as 120.5.
TEST_F(LabelsTest, NumbersDoNotDependOnTheLocale) {
  GermanLocale german;
  if (!german.active()) GTEST_SKIP() << "the de_DE.UTF-8 locale is not installed (scripts/setup generates it)";
  char printed[32];
  std::snprintf(printed, sizeof printed, "%.1f", 120.5);
  ASSERT_STREQ(printed, "120,5") << "the locale does not use a decimal comma: the test would prove nothing";

  app::Region rect{app::Region::Shape::Rectangle, 120.5, 80.25, 30.5, 10.125, {}};
  EXPECT_EQ(rect.to_json(), R"({"type":"rect","x":120.5,"y":80.25,"w":30.5,"h":10.125})");
  app::Region polygon{app::Region::Shape::Polygon, 0, 0, 0, 0, {{10.5, 20.25}, {60.75, 20.5}, {30.125, 70.5}}};
  const auto back = app::Region::from_json(polygon.to_json());
  ASSERT_TRUE(back.has_value()) << polygon.to_json();
  EXPECT_EQ(back->points, polygon.points);

  auto in = label("7.1", "Effusion", LabelValue::Present);
  in.region = rect;
  in.model_version = "vit-1";
  in.model_probability = 0.8125;
  ASSERT_TRUE(c().add_labels({in}).ok());
  auto current = c().current_labels("7.1");
  ASSERT_TRUE(current.ok());
  ASSERT_EQ(current->size(), 1u);
  ASSERT_TRUE(current->at(0).region.has_value());
  EXPECT_EQ(current->at(0).region->x, 120.5);
  EXPECT_EQ(current->at(0).region->h, 10.125);
  EXPECT_EQ(current->at(0).model_probability.value_or(0.0), 0.8125);

  const std::string line = app::JsonObject().add("probability", 0.8125).add("x", -120.5).add("tiny", 1e-7).str();
  EXPECT_EQ(line, R"({"probability":0.8125,"x":-120.5,"tiny":1e-07})");
  EXPECT_EQ(nlohmann::json::parse(line)["x"], -120.5);
  EXPECT_EQ(hilum::core::format_fixed(0.81234, 4), "0.8123");
  EXPECT_EQ(hilum::core::parse_number("120.5").value_or(0.0), 120.5);
  EXPECT_FALSE(hilum::core::parse_number("120,5").has_value());
}

TEST_F(LabelsTest, LabelledFiltersFollowTheCurrentLabels) {
  ASSERT_TRUE(c().add_labels({label("7.1", "Effusion", LabelValue::Present)}).ok());
  app::InstanceFilter labelled;
  labelled.labelled = app::InstanceFilter::Labelled::Labelled;
  app::InstanceFilter unlabelled;
  unlabelled.labelled = app::InstanceFilter::Labelled::Unlabelled;
  EXPECT_EQ(c().list_instances(labelled)->size(), 1u);
  EXPECT_EQ(c().list_instances(unlabelled)->size(), 2u);
  ASSERT_TRUE(c().add_labels({label("7.1", "Effusion", LabelValue::Cleared)}).ok());
  EXPECT_EQ(c().list_instances(labelled)->size(), 0u);
  auto studies = c().list_studies();
  ASSERT_TRUE(studies.ok());
  EXPECT_EQ(studies->at(0).labelled_images, 0);
}

TEST(Csv, ParsesQuotesAndLineEndings) {
  auto rows = app::parse_csv("\xEF\xBB\xBFimage,\"Finding Labels\"\r\n\"a,b\",\"say \"\"hi\"\"\"\r\n\nc,\"multi\nline\"\n");
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 3u);
  EXPECT_EQ(rows->at(0).at(0), "image");
  EXPECT_EQ(rows->at(1).at(0), "a,b");
  EXPECT_EQ(rows->at(1).at(1), "say \"hi\"");
  EXPECT_EQ(rows->at(2).at(1), "multi\nline");
  EXPECT_FALSE(app::parse_csv("a,\"unterminated\n").ok());
}

TEST_F(LabelsTest, CsvWithOneColumnPerFinding) {
  {
    std::ofstream out(path("labels.csv"));
    out << "image,Effusion,Nodule,Dragons\n"
        << "7.1,present,absent,\n"
        << "/data/7.2.dcm,1,-1,\n"
        << "9.9.9,present,,\n"          // unknown image
        << "7.3,maybe,,\n";             // unreadable value
  }
  auto report = app::import_label_csv(c(), path("labels.csv"), "dr.csv");
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(report->rows, 4);
  EXPECT_EQ(report->rows_applied, 2);
  EXPECT_EQ(report->labels_written, 4);
  ASSERT_EQ(report->problems.size(), 3u);  // the unknown column, and two bad rows
  EXPECT_EQ(report->problems[1].line, 4);
  EXPECT_NE(report->problems[1].message.find("unknown image"), std::string::npos);
  EXPECT_EQ(report->problems[2].line, 5);
  auto current = c().current_labels("7.2");
  ASSERT_TRUE(current.ok());
  ASSERT_EQ(current->size(), 2u);
  EXPECT_EQ(current->at(1).value, LabelValue::Uncertain);
  EXPECT_EQ(current->at(1).author, "dr.csv");
  EXPECT_EQ(current->at(1).source, app::LabelSource::Csv);
  EXPECT_TRUE(c().current_labels("7.3")->empty());
}

// Issue 16, defect 10: a megabyte-long field is named in a message by its first characters and its
// length, never echoed whole.
TEST_F(LabelsTest, CsvMessagesCutLongValues) {
  const std::string huge(std::size_t{1} << 20, 'A');
  {
    std::ofstream out(path("columns.csv"), std::ios::binary);
    out << "image,Effusion," << huge << "\n"
        << huge << ",present,\n"        // unknown image
        << "7.3,\"" << huge << "\",\n";  // unreadable value
  }
  auto report = app::import_label_csv(c(), path("columns.csv"), "dr.csv");
  ASSERT_TRUE(report.ok()) << report.error().message;
  ASSERT_EQ(report->problems.size(), 3u);
  {
    std::ofstream out(path("list.csv"), std::ios::binary);
    out << "Image Index,Finding Labels\n7.1,Effusion|" << huge << "\n";  // unknown finding
  }
  auto list = app::import_label_csv(c(), path("list.csv"), "dr.csv");
  ASSERT_TRUE(list.ok()) << list.error().message;
  ASSERT_EQ(list->problems.size(), 1u);
  report->problems.push_back(list->problems[0]);
  for (const auto& p : report->problems) {
    EXPECT_LT(p.message.size(), 300u) << p.message.substr(0, 300);
    EXPECT_NE(p.message.find("\"" + std::string(60, 'A') + "\"... (1048576 bytes)"), std::string::npos) << p.message.substr(0, 300);
  }
  EXPECT_NE(report->problems[1].message.find("unknown image"), std::string::npos);
  EXPECT_NE(report->problems[2].message.find("unreadable value"), std::string::npos);
  EXPECT_NE(report->problems[3].message.find("unknown finding"), std::string::npos);
  // A short value is quoted whole.
  std::ofstream(path("short.csv"), std::ios::binary) << "image,Effusion\n9.9.9,present\n";
  auto short_report = app::import_label_csv(c(), path("short.csv"), "dr.csv");
  ASSERT_TRUE(short_report.ok());
  ASSERT_EQ(short_report->problems.size(), 1u);
  EXPECT_EQ(short_report->problems[0].message, "unknown image \"9.9.9\"");
}

TEST_F(LabelsTest, CsvInChestXray14Layout) {
  {
    std::ofstream out(path("Data_Entry.csv"));
    out << "Image Index,Finding Labels,Follow-up #,Patient ID\n"
        << "7.1.png,Effusion|Mass,0,1\n"
        << "7.2,No Finding,0,1\n"
        << "7.3,Effusion|Unicorn,0,2\n";
  }
  auto report = app::import_label_csv(c(), path("Data_Entry.csv"), "nih");
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(report->rows_applied, 2);
  ASSERT_EQ(report->problems.size(), 1u);
  EXPECT_EQ(report->problems[0].line, 4);
  EXPECT_NE(report->problems[0].message.find("Unicorn"), std::string::npos);
  // Listed findings present, every other ChestX-ray14 finding absent.
  auto current = c().current_labels("7.1");
  ASSERT_TRUE(current.ok());
  EXPECT_EQ(current->size(), 15u);
  int present = 0;
  for (const auto& e : current.value()) {
    if (e.value == LabelValue::Present) {
      ++present;
      EXPECT_TRUE(e.finding == "Effusion" || e.finding == "Mass") << e.finding;
    }
  }
  EXPECT_EQ(present, 2);
  auto normal = c().current_labels("7.2");
  ASSERT_TRUE(normal.ok());
  for (const auto& e : normal.value()) EXPECT_EQ(e.value == LabelValue::Present, e.finding == "No Finding") << e.finding;
  // No author, no file, no image column: refused as a whole.
  EXPECT_FALSE(app::import_label_csv(c(), path("Data_Entry.csv"), "").ok());
  EXPECT_FALSE(app::import_label_csv(c(), path("missing.csv"), "x").ok());
  {
    std::ofstream out(path("noimage.csv"));
    out << "Effusion\npresent\n";
  }
  EXPECT_FALSE(app::import_label_csv(c(), path("noimage.csv"), "x").ok());
}

}  // namespace
}  // namespace hilum::test
