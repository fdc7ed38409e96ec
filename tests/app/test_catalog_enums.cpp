// The catalog's enums (issue 16: statuses as enums, not strings): each name is the spelling the
// catalog stores and the JSON prints, read back exactly; an unknown name is an error, whether typed
// or found in a catalog, never a default.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <string>
#include <utility>
#include <vector>

#include "catalog_support.hpp"
#include "hilum/app/export.hpp"
#include "hilum/app/finetune.hpp"

namespace hilum::test {
namespace {

using app::ErrorKind;

// Every enumerator of E with the name it must keep (the stored values: never renamed), read back
// through `parse`.
template <typename E, typename Parse>
void expect_round_trip(const std::vector<std::pair<E, std::string>>& names, Parse parse) {
  for (const auto& [value, name] : names) {
    EXPECT_EQ(std::string(app::to_string(value)), name);
    auto back = parse(name);
    ASSERT_TRUE(back.ok()) << name << ": " << back.error().message;
    EXPECT_EQ(back.value(), value) << name;
  }
}

// A name that is not in the table: refused, the message naming it and the known names.
template <typename Parse>
void expect_refused(Parse parse, const std::string& name, const std::string& a_known_name) {
  auto r = parse(name);
  ASSERT_FALSE(r.ok()) << "'" << name << "' was accepted";
  EXPECT_EQ(r.error().kind, ErrorKind::Invalid);
  EXPECT_NE(r.error().message.find("'" + name.substr(0, 64)), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(a_known_name), std::string::npos) << r.error().message;
}

TEST(CatalogEnums, EveryEnumeratorRoundTripsThroughItsStoredName) {
  using app::LabelValue;
  expect_round_trip<LabelValue>({{LabelValue::Present, "present"}, {LabelValue::Absent, "absent"},
                                 {LabelValue::Uncertain, "uncertain"}, {LabelValue::Cleared, "cleared"}},
                                app::label_value_from_string);
  using app::LabelKind;
  expect_round_trip<LabelKind>({{LabelKind::Reading, "reading"}, {LabelKind::Adjudication, "adjudication"}}, app::label_kind_from_string);
  using app::LabelSource;
  expect_round_trip<LabelSource>({{LabelSource::Cli, "cli"}, {LabelSource::Csv, "csv"}, {LabelSource::Gui, "gui"},
                                  {LabelSource::Adjudication, "adjudication"}},
                                 app::label_source_from_string);
  using Rule = app::ConsensusPolicy::Rule;
  expect_round_trip<Rule>({{Rule::Majority, "majority"}, {Rule::Unanimous, "unanimous"}}, app::consensus_rule_from_string);
  using app::Blinding;
  expect_round_trip<Blinding>({{Blinding::Off, "off"}, {Blinding::Labels, "labels"}, {Blinding::LabelsAndAi, "labels+ai"}},
                              app::blinding_from_string);
  using app::JobStatus;
  expect_round_trip<JobStatus>({{JobStatus::Running, "running"}, {JobStatus::Interrupted, "interrupted"},
                                {JobStatus::Done, "done"}, {JobStatus::Failed, "failed"}},
                               app::job_status_from_string);
  using app::JobItemStatus;
  expect_round_trip<JobItemStatus>({{JobItemStatus::Pending, "pending"}, {JobItemStatus::Imported, "imported"},
                                    {JobItemStatus::Present, "present"}, {JobItemStatus::Conflict, "conflict"},
                                    {JobItemStatus::Skipped, "skipped"}, {JobItemStatus::NotDicom, "not-dicom"},
                                    {JobItemStatus::Failed, "failed"}},
                                   app::job_item_status_from_string);
  using app::ModelStatus;
  expect_round_trip<ModelStatus>({{ModelStatus::Active, "active"}, {ModelStatus::Candidate, "candidate"},
                                  {ModelStatus::Retired, "retired"}},
                                 app::model_status_from_string);
}

TEST(CatalogEnums, AnUnknownNameIsRefused) {
  for (const std::string& bad : std::vector<std::string>{"", "bogus", "Active", " active", "active ", std::string(200, 'x')}) {
    expect_refused(app::model_status_from_string, bad, "active, candidate, retired");
    expect_refused(app::job_status_from_string, bad, "running, interrupted, done, failed");
    expect_refused(app::job_item_status_from_string, bad, "not-dicom");
    expect_refused(app::label_value_from_string, bad, "present, absent, uncertain, cleared");
    expect_refused(app::label_kind_from_string, bad, "reading, adjudication");
    expect_refused(app::label_source_from_string, bad, "cli, csv, gui, adjudication");
    expect_refused(app::consensus_rule_from_string, bad, "majority, unanimous");
    expect_refused(app::blinding_from_string, bad, "labels+ai");
  }
  // The stored reading is exact: a synonym a person may type is not a stored name.
  EXPECT_FALSE(app::label_value_from_string("yes").ok());
  EXPECT_FALSE(app::label_value_from_string("Present").ok());
  EXPECT_FALSE(app::blinding_from_string("on").ok());
  // A hostile name is cut in the message.
  auto long_name = app::model_status_from_string(std::string(200, 'x'));
  ASSERT_FALSE(long_name.ok());
  EXPECT_LT(long_name.error().message.size(), 150u) << long_name.error().message;
}

TEST(CatalogEnums, WhatAPersonTypesStillParses) {
  EXPECT_EQ(app::parse_label_value("Present"), app::LabelValue::Present);
  EXPECT_EQ(app::parse_label_value("YES"), app::LabelValue::Present);
  EXPECT_EQ(app::parse_label_value("0"), app::LabelValue::Absent);
  EXPECT_EQ(app::parse_label_value("?"), app::LabelValue::Uncertain);
  EXPECT_EQ(app::parse_label_value("none"), app::LabelValue::Cleared);
  EXPECT_FALSE(app::parse_label_value("maybe").has_value());
  EXPECT_EQ(app::parse_blinding("ALL"), app::Blinding::LabelsAndAi);
  EXPECT_EQ(app::parse_blinding("labels+ai"), app::Blinding::LabelsAndAi);
  EXPECT_FALSE(app::parse_blinding("sometimes").has_value());
}

void raw_exec(sqlite3* db, const std::string& sql) {
  char* msg = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg);
  ASSERT_EQ(rc, SQLITE_OK) << (msg ? msg : "") << "\n" << sql;
}

// A catalog holding a status this Hilum does not know (written by something else, or damaged) is
// reported as such, not read as "off", "majority" or a job item to redo.
TEST_F(CatalogTest, AnUnknownStoredNameIsAnErrorNotADefault) {
  if (pg::enabled()) GTEST_SKIP() << "edits the SQLite file directly";
  auto c = open_catalog();
  auto job = c.create_job("import", "{}", {"/a/1.dcm"});
  ASSERT_TRUE(job.ok());
  ASSERT_TRUE(c.set_blinding(app::Blinding::Labels).ok());
  ASSERT_TRUE(c.blinding().ok());
  ASSERT_TRUE(c.job_items(job.value(), false).ok());

  raw_exec(c.handle(), "UPDATE job_items SET status = 'exploded'");
  raw_exec(c.handle(), "UPDATE settings SET value = 'sometimes' WHERE key = 'blinding'");
  raw_exec(c.handle(), "INSERT OR REPLACE INTO settings(key, value) VALUES ('consensus.rule', 'plurality')");

  auto items = c.job_items(job.value(), false);
  ASSERT_FALSE(items.ok());
  EXPECT_EQ(items.error().kind, ErrorKind::Corrupt);
  EXPECT_NE(items.error().message.find("'exploded'"), std::string::npos) << items.error().message;
  auto blinding = c.blinding();
  ASSERT_FALSE(blinding.ok()) << "read as " << app::to_string(blinding.value());
  EXPECT_EQ(blinding.error().kind, ErrorKind::Corrupt);
  EXPECT_NE(blinding.error().message.find("'sometimes'"), std::string::npos) << blinding.error().message;
  auto policy = c.consensus_policy();
  ASSERT_FALSE(policy.ok());
  EXPECT_EQ(policy.error().kind, ErrorKind::Corrupt);
  EXPECT_NE(policy.error().message.find("'plurality'"), std::string::npos) << policy.error().message;
}

// The export's format and split and the fine-tuning strategy (issue 16): one table each. Before
// the tables, a value the switch did not list came out as another one's name ("csv", "train",
// "auto": an export row of no known split written as "train"); now it has no name.
TEST(AppEnums, ExportFormatSplitAndStrategyRoundTripAndNothingDefaults) {
  using app::ExportFormat;
  expect_round_trip<ExportFormat>({{ExportFormat::Csv, "csv"}, {ExportFormat::Json, "json"}}, app::export_format_from_string);
  using app::Split;
  expect_round_trip<Split>({{Split::Train, "train"}, {Split::Validation, "validation"}, {Split::Test, "test"}}, app::split_from_string);
  using app::Strategy;
  expect_round_trip<Strategy>({{Strategy::Auto, "auto"}, {Strategy::Head, "head"}, {Strategy::LastK, "last-k"}, {Strategy::Full, "full"},
                               {Strategy::Calibrate, "calibrate"}},
                              app::strategy_from_string);
  EXPECT_STREQ(app::to_string(static_cast<ExportFormat>(7)), "");
  EXPECT_STREQ(app::to_string(static_cast<Split>(7)), "");
  EXPECT_STREQ(app::to_string(static_cast<Strategy>(7)), "");
  for (const std::string& bad : std::vector<std::string>{"", "CSV", "xml", " csv", std::string(200, 'x')}) {
    expect_refused(app::export_format_from_string, bad, "csv, json");
  }
  for (const std::string& bad : std::vector<std::string>{"", "Train", "val", "train "}) expect_refused(app::split_from_string, bad, "train, validation, test");
  for (const std::string& bad : std::vector<std::string>{"", "lastk", "Head", "last_k", "imported"}) {
    expect_refused(app::strategy_from_string, bad, "auto, head, last-k, full, calibrate");
  }
  // What a person types: any case, and the strategy's synonyms; nothing else.
  EXPECT_EQ(app::parse_export_format("JSON"), ExportFormat::Json);
  EXPECT_FALSE(app::parse_export_format("sr").has_value());
  EXPECT_EQ(app::parse_strategy("Last-K"), Strategy::LastK);
  EXPECT_EQ(app::parse_strategy("last_k"), Strategy::LastK);
  EXPECT_EQ(app::parse_strategy("FULL"), Strategy::Full);
  EXPECT_FALSE(app::parse_strategy("everything").has_value());
}

// Where a label was entered is one of four names, and the catalog itself refuses any other (since
// schema 7, a trigger), as it does an unknown value or kind: a writer that is not Hilum cannot add
// a label from nowhere. A row that still holds another name (written before, or with the rule
// dropped) is reported as damaged, not read as some default.
TEST_F(CatalogTest, TheCatalogRefusesALabelSourceItDoesNotKnow) {
  if (pg::enabled()) GTEST_SKIP() << "edits the SQLite file directly (PostgresRules checks the server's constraint)";
  auto c = open_catalog();
  ASSERT_TRUE(c.put_instances({record("8.1")}).ok());
  app::LabelInput in = reading("8.1", "Effusion", app::LabelValue::Present, "dr.a");
  in.source = app::LabelSource::Csv;
  ASSERT_TRUE(c.add_labels({in}).ok());
  const std::string forged = "INSERT INTO label_events(instance_ref, finding_ref, value, author, created_at, source) "
                             "SELECT instance_ref, finding_ref, 'absent', author, created_at, 'api' FROM label_events";
  char* msg = nullptr;
  EXPECT_NE(sqlite3_exec(c.handle(), forged.c_str(), nullptr, nullptr, &msg), SQLITE_OK) << "the catalog took a label source it does not know";
  EXPECT_NE(std::string(msg ? msg : "").find("label source"), std::string::npos) << (msg ? msg : "");
  sqlite3_free(msg);
  auto history = c.label_history();
  ASSERT_TRUE(history.ok()) << history.error().message;
  ASSERT_EQ(history->size(), 1u);
  EXPECT_EQ(history->at(0).source, app::LabelSource::Csv);

  raw_exec(c.handle(), "DROP TRIGGER label_events_source");
  raw_exec(c.handle(), forged);
  auto damaged = c.label_history();
  ASSERT_FALSE(damaged.ok());
  EXPECT_EQ(damaged.error().kind, ErrorKind::Corrupt);
  EXPECT_NE(damaged.error().message.find("'api'"), std::string::npos) << damaged.error().message;
}

}  // namespace
}  // namespace hilum::test
