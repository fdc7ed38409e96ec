// The PostgreSQL engine's own guarantees, checked against the database itself (run by the
// `postgresql` CTest entry, which starts a throwaway server; skipped in the SQLite run): no role may
// rewrite the label history, a reader's role labels only as itself, and a server that goes away
// mid-session gives a clear error, not a crash, and the session reconnects.
#include <gtest/gtest.h>

#include "catalog_support.hpp"

namespace hilum::test {
namespace {

using app::LabelValue;

class PostgresRules : public CatalogTest {
 protected:
  void SetUp() override {
    CatalogTest::SetUp();
    if (!pg::enabled()) GTEST_SKIP() << "the PostgreSQL run (ctest -L postgresql) checks these";
    catalog_.emplace(open_catalog());
    ASSERT_TRUE(catalog_->put_instances({record("7.1"), record("7.2")}).ok());
    db_ = pg::database(path("hilum.db").string());
  }
  std::size_t events() { return catalog_->label_history()->size(); }
  std::optional<app::Catalog> catalog_;
  std::string db_;
};

TEST_F(PostgresRules, NoRoleMayUpdateOrDeleteTheAudit) {
  ASSERT_TRUE(catalog_->add_labels({reading("7.1", "Effusion", LabelValue::Present, "dr.a")}).ok());
  ASSERT_EQ(events(), 1u);
  // Not even the superuser who owns the catalog.
  for (const char* sql : {"UPDATE label_events SET author = 'forger'", "DELETE FROM label_events", "TRUNCATE label_events"}) {
    const std::string refused = pg::admin_exec(db_, sql);
    EXPECT_NE(refused.find("append-only"), std::string::npos) << sql << ": " << refused;
  }
  // Nor a reader's role, which has no such right in the first place.
  ASSERT_EQ(pg::admin_exec(db_, "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rita') THEN "
                                "CREATE ROLE rita LOGIN IN ROLE hilum_reader; END IF; END $$"),
            "");
  for (const char* sql : {"UPDATE label_events SET value = 'absent'", "DELETE FROM label_events"}) {
    const std::string refused = pg::exec_as("rita", db_, sql);
    EXPECT_NE(refused.find("permission denied"), std::string::npos) << sql << ": " << refused;
  }
  EXPECT_EQ(events(), 1u);
  EXPECT_EQ(catalog_->label_history()->at(0).author, "dr.a");
}

TEST_F(PostgresRules, AReadersRoleLabelsOnlyAsItself) {
  ASSERT_EQ(pg::admin_exec(db_, "CREATE ROLE alice LOGIN IN ROLE hilum_reader; "
                                "CREATE ROLE ivan LOGIN IN ROLE hilum_reader, hilum_importer"),
            "");
  auto alice = app::Catalog::open(pg::catalog_url(path("hilum.db").string(), "alice"), app::Catalog::Mode::ReadWrite);
  ASSERT_TRUE(alice.ok()) << alice.error().message;
  EXPECT_EQ(alice->reader(), "alice") << "the reader is the database role";
  // As herself (no author given: the role), recorded as entered by her.
  ASSERT_TRUE(alice->add_labels({reading("7.1", "Effusion", LabelValue::Present, "")}).ok());
  auto mine = alice->label_history("7.1");
  ASSERT_TRUE(mine.ok());
  ASSERT_EQ(mine->size(), 1u);
  EXPECT_EQ(mine->at(0).author, "alice");
  EXPECT_EQ(mine->at(0).recorded_by, "alice");
  // As someone else: the database refuses, clearly, and nothing is written.
  auto forged = alice->add_labels({reading("7.1", "Mass", LabelValue::Present, "bob")});
  ASSERT_FALSE(forged.ok());
  EXPECT_EQ(forged.error().kind, app::ErrorKind::ReadOnly);
  EXPECT_NE(forged.error().message.find("only as itself"), std::string::npos) << forged.error().message;
  EXPECT_NE(forged.error().message.find("alice"), std::string::npos) << forged.error().message;
  // Around Hilum too: SQL that names another reader, or claims someone else entered it.
  const std::string sql_author = pg::exec_as(
      "alice", db_, "INSERT INTO label_events(instance_ref, finding_ref, value, author, created_at) SELECT i.id, 1, 'present', 'bob', 'x' FROM instances i LIMIT 1");
  EXPECT_NE(sql_author.find("only as itself"), std::string::npos) << sql_author;
  const std::string sql_recorder = pg::exec_as(
      "alice", db_, "INSERT INTO label_events(instance_ref, finding_ref, value, author, created_at, recorded_by) SELECT i.id, 1, 'present', 'alice', 'x', 'bob' FROM instances i LIMIT 1");
  EXPECT_NE(sql_recorder.find("cannot record"), std::string::npos) << sql_recorder;
  EXPECT_EQ(events(), 1u);
  // A member of hilum_importer may import a colleague's labels: recorded as entered by itself.
  auto ivan = app::Catalog::open(pg::catalog_url(path("hilum.db").string(), "ivan"), app::Catalog::Mode::ReadWrite);
  ASSERT_TRUE(ivan.ok()) << ivan.error().message;
  auto imported = ivan->add_labels({reading("7.2", "Mass", LabelValue::Present, "bob")});
  ASSERT_TRUE(imported.ok()) << imported.error().message;
  auto history = catalog_->label_history("7.2");
  ASSERT_EQ(history->size(), 1u);
  EXPECT_EQ(history->at(0).author, "bob");
  EXPECT_EQ(history->at(0).recorded_by, "ivan");
}

TEST_F(PostgresRules, AServerGoingAwayGivesAClearErrorAndTheSessionReconnects) {
  ASSERT_TRUE(catalog_->add_labels({reading("7.1", "Effusion", LabelValue::Present, "dr.a")}).ok());
  // The server ends this catalog's session (as a restart or a network cut would).
  ASSERT_EQ(pg::admin_value(db_, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '" + db_ +
                                     "' AND pid <> pg_backend_pid()"),
            "1");
  auto lost = catalog_->add_labels({reading("7.1", "Mass", LabelValue::Present, "dr.a")});
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.error().kind, app::ErrorKind::CannotOpen);
  EXPECT_NE(lost.error().message.find("connection to the catalog server"), std::string::npos) << lost.error().message;
  EXPECT_NE(lost.error().message.find("not saved"), std::string::npos) << lost.error().message;
  // The next action reconnects; what was refused is not there, and the retry is.
  auto retry = catalog_->add_labels({reading("7.1", "Mass", LabelValue::Present, "dr.a")});
  ASSERT_TRUE(retry.ok()) << retry.error().message;
  EXPECT_EQ(events(), 2u);
}

TEST_F(PostgresRules, AnotherApplicationsDatabaseIsLeftUntouched) {
  const std::string key = path("foreign").string();
  const std::string name = pg::database(key);
  ASSERT_EQ(pg::admin_exec(name, "CREATE TABLE accounts (id int)"), "");
  auto c = app::Catalog::open(pg::catalog_url(key));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().kind, app::ErrorKind::Corrupt);
  EXPECT_EQ(pg::admin_value(name, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"), "1");
}

// catalog migrate: an SQLite catalog with something in every table moves into a new catalog
// (PostgreSQL in the PostgreSQL run, another SQLite file otherwise) and nothing is lost.
TEST_F(CatalogTest, CatalogMigrateMovesEverythingAndTheChecksumsMatch) {
  auto old = app::Catalog::open(path("old.db"));
  ASSERT_TRUE(old.ok()) << old.error().message;
  ASSERT_TRUE(old->put_instances({record("7.1"), record("7.2"), record("7.3", "P2", "2.2", "2.2.1")}).ok());
  ASSERT_TRUE(old->add_finding("Tube", "a line or tube").ok());
  auto in = reading("7.1", "Effusion", LabelValue::Present, "dr.a");
  in.region = app::Region{app::Region::Shape::Rectangle, 10.5, 20, 30, 40, {}};
  in.model_version = "m1";
  in.model_probability = 0.123456789012345;
  in.comment = "left base, é";
  ASSERT_TRUE(old->add_labels({in, reading("7.1", "Tube", LabelValue::Present, "dr.a")}).ok());
  ASSERT_TRUE(old->add_labels({reading("7.1", "Effusion", LabelValue::Absent, "dr.b")}).ok());
  ASSERT_TRUE(old->adjudicate("7.1", {{"Effusion", LabelValue::Present}}, "dr.c").ok());
  ASSERT_TRUE(old->submit_reading("7.1", "dr.a").ok());
  app::ModelRecord m;
  m.version = "m1";
  m.status = "active";
  auto model = old->register_model(m, {"Effusion"});
  ASSERT_TRUE(model.ok());
  ASSERT_TRUE(old->put_predictions("7.1", model->id, {{"Effusion", 0.75}}).ok());
  ASSERT_TRUE(old->put_embeddings("m1", {{1, {0.5f, -1.25f}}}).ok());
  ASSERT_TRUE(old->pseudonym("patient", "P1").ok());
  ASSERT_TRUE(old->create_job("import", "{}", {"/a.dcm"}).ok());
  ASSERT_TRUE(old->set_blinding(app::Blinding::Labels).ok());

  auto target = app::Catalog::open(location("new.db"));
  ASSERT_TRUE(target.ok()) << target.error().message;
  auto report = old->copy_to(*target);
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_TRUE(report->identical());
  EXPECT_EQ(report->source_checksum, report->target_checksum);
  EXPECT_EQ(report->source_rows, report->target_rows);
  for (const auto& [table, n] : report->target_rows) {
    if (table != "studies" && table != "series" && table != "patients") continue;
    EXPECT_GT(n, 0) << table;
  }
  // Read back through the new catalog: the same events, the same consensus, the same vectors.
  EXPECT_EQ(target->label_history()->size(), 4u);
  EXPECT_EQ(target->label_history()->at(0).comment, "left base, é");
  EXPECT_EQ(target->label_history()->at(0).model_probability.value_or(0), 0.123456789012345);
  EXPECT_EQ(target->consensus_labels("7.1")->size(), old->consensus_labels("7.1")->size());
  EXPECT_EQ(target->embeddings("m1")->at(1), (std::vector<float>{0.5f, -1.25f}));
  EXPECT_EQ(*target->pseudonym("patient", "P1"), *old->pseudonym("patient", "P1"));
  EXPECT_EQ(target->blinding().value(), app::Blinding::Labels);
  EXPECT_TRUE(target->reader_view("7.1", "dr.a")->submitted);
  // New rows continue after the copied ids.
  auto next = target->add_labels({reading("7.2", "Tube", LabelValue::Present, "dr.a")});
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ(next->at(0), 5);
  // A catalog moves only into a new one.
  auto again = old->copy_to(*target);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().kind, app::ErrorKind::Conflict);
}

}  // namespace
}  // namespace hilum::test
