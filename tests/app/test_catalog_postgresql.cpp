// The PostgreSQL engine's own guarantees, checked against the database itself (run by the
// `postgresql` CTest entry, which starts a throwaway server; skipped in the SQLite run): no role may
// rewrite the label history, a reader's role labels only as itself, and a server that goes away
// mid-session gives a clear error, not a crash, and the session reconnects.
#include <gtest/gtest.h>

#include <cstdlib>
#include <limits>

#include "catalog_support.hpp"
#include "hilum/app/import.hpp"
#include "hilum/app/model_input.hpp"
#include "hilum/testdata/phantom.hpp"

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

// Where a label was entered is one of four names: the server refuses any other, whoever writes.
TEST_F(PostgresRules, TheServerRefusesALabelSourceItDoesNotKnow) {
  ASSERT_TRUE(catalog_->add_labels({reading("7.1", "Effusion", LabelValue::Present, "dr.a")}).ok());
  const std::string refused = pg::admin_exec(db_, "INSERT INTO label_events(instance_ref, finding_ref, value, author, created_at, source) "
                                                  "SELECT instance_ref, finding_ref, 'absent', author, created_at, 'api' FROM label_events");
  EXPECT_NE(refused.find("label_events_source"), std::string::npos) << refused;
  ASSERT_EQ(events(), 1u);
  EXPECT_EQ(catalog_->label_history()->at(0).source, app::LabelSource::Cli);
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

// Adjudications are the database's to allow: only members of hilum_adjudicator record them, through
// Hilum or around it; a reading by the same role is still accepted.
TEST_F(PostgresRules, OnlyTheAdjudicatorRoleRecordsAdjudications) {
  ASSERT_EQ(pg::admin_exec(db_, "CREATE ROLE rhea LOGIN IN ROLE hilum_reader; "
                                "CREATE ROLE ada LOGIN IN ROLE hilum_reader, hilum_adjudicator"),
            "");
  ASSERT_TRUE(catalog_->add_labels({reading("7.1", "Effusion", LabelValue::Present, "dr.a"),
                                    reading("7.1", "Mass", LabelValue::Present, "dr.a")})
                  .ok());
  ASSERT_TRUE(catalog_->add_labels({reading("7.1", "Effusion", LabelValue::Absent, "dr.b")}).ok());
  auto rhea = app::Catalog::open(pg::catalog_url(path("hilum.db").string(), "rhea"), app::Catalog::Mode::ReadWrite);
  ASSERT_TRUE(rhea.ok()) << rhea.error().message;
  auto refused = rhea->adjudicate("7.1", {{"Effusion", LabelValue::Absent}}, "rhea");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, app::ErrorKind::ReadOnly);
  EXPECT_NE(refused.error().message.find("may not record adjudications"), std::string::npos) << refused.error().message;
  EXPECT_NE(refused.error().message.find("GRANT hilum_adjudicator TO rhea"), std::string::npos) << refused.error().message;
  // The database itself refuses, whatever program connects; a reading by the same role passes.
  const std::string around = pg::exec_as(
      "rhea", db_, "INSERT INTO label_events(instance_ref, finding_ref, value, author, created_at, kind) "
                   "SELECT i.id, 1, 'absent', 'rhea', 'x', 'adjudication' FROM instances i LIMIT 1");
  EXPECT_NE(around.find("may not record adjudications"), std::string::npos) << around;
  EXPECT_EQ(pg::exec_as("rhea", db_, "INSERT INTO label_events(instance_ref, finding_ref, value, author, created_at, kind) "
                                     "SELECT i.id, 1, 'absent', 'rhea', 'x', 'reading' FROM instances i LIMIT 1"),
            "");
  EXPECT_EQ(pg::admin_value(db_, "SELECT count(*) FROM label_events WHERE kind = 'adjudication'"), "0");
  // An adjudicator's role succeeds, and the consensus follows the decision.
  auto ada = app::Catalog::open(pg::catalog_url(path("hilum.db").string(), "ada"), app::Catalog::Mode::ReadWrite);
  ASSERT_TRUE(ada.ok()) << ada.error().message;
  auto done = ada->adjudicate("7.1", {{"Effusion", LabelValue::Absent}}, "ada");
  ASSERT_TRUE(done.ok()) << done.error().message;
  EXPECT_EQ(pg::admin_value(db_, "SELECT author FROM label_events WHERE kind = 'adjudication'"), "ada");
  // Granting the role is all an administrator does.
  ASSERT_EQ(pg::admin_exec(db_, "GRANT hilum_adjudicator TO rhea"), "");
  auto granted = rhea->adjudicate("7.1", {{"Mass", LabelValue::Present}}, "rhea", {}, std::numeric_limits<std::int64_t>::max());
  EXPECT_TRUE(granted.ok()) << granted.error().message;
}

// A catalog of the first PostgreSQL revision (no pg_revision, no adjudicator rule, no event keys) is upgraded when
// opened, in one transaction: a step that fails leaves it exactly as it was. A newer revision is
// refused with a clear message and left untouched.
TEST_F(PostgresRules, AnOlderRevisionIsUpgradedInATransactionAndANewerOneRefused) {
  const std::string to_revision_1 =
      "DROP TRIGGER label_events_adjudicator ON label_events; DROP FUNCTION hilum_adjudicator_only(); "
      "ALTER TABLE hilum_catalog DROP COLUMN pg_revision; ALTER TABLE label_events DROP COLUMN event_key; "
      "ALTER TABLE label_events DROP CONSTRAINT label_events_source; "
      "ALTER TABLE prediction_domain DROP COLUMN population; ALTER TABLE prediction_domain DROP COLUMN population_from; "
      "UPDATE hilum_catalog SET schema_version = 5";
  const std::string has_revision = "SELECT count(*) FROM pg_attribute WHERE attrelid = 'hilum_catalog'::regclass "
                                   "AND attname = 'pg_revision' AND NOT attisdropped";
  ASSERT_EQ(pg::admin_value(db_, "SELECT pg_revision FROM hilum_catalog"), "5");
  catalog_.reset();
  ASSERT_EQ(pg::admin_exec(db_, to_revision_1), "");
  // A step that fails (a function of that name is already there): nothing of the upgrade is left.
  ASSERT_EQ(pg::admin_exec(db_, "CREATE FUNCTION hilum_adjudicator_only() RETURNS integer LANGUAGE sql AS 'SELECT 1'"), "");
  auto failed = app::Catalog::open(location(), app::Catalog::Mode::ReadWrite);
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.error().message.find("from PostgreSQL revision 1 to 5"), std::string::npos) << failed.error().message;
  EXPECT_EQ(pg::admin_value(db_, has_revision), "0") << "the ALTER TABLE before the failing step was rolled back";
  EXPECT_EQ(pg::admin_value(db_, "SELECT count(*) FROM pg_trigger WHERE tgname = 'label_events_adjudicator'"), "0");
  // Without the obstacle: upgraded, labels kept, the rule in force.
  ASSERT_EQ(pg::admin_exec(db_, "DROP FUNCTION hilum_adjudicator_only()"), "");
  auto upgraded = app::Catalog::open(location(), app::Catalog::Mode::ReadWrite);
  ASSERT_TRUE(upgraded.ok()) << upgraded.error().message;
  EXPECT_EQ(pg::admin_value(db_, "SELECT pg_revision FROM hilum_catalog"), "5");
  EXPECT_EQ(pg::admin_value(db_, "SELECT schema_version FROM hilum_catalog"), "8");
  EXPECT_EQ(pg::admin_value(db_, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'prediction_domain'::regclass "
                                 "AND attname IN ('population', 'population_from') AND NOT attisdropped"),
            "2");
  EXPECT_EQ(pg::admin_value(db_, "SELECT count(*) FROM pg_indexes WHERE indexname = 'label_events_event_key'"), "1");
  EXPECT_EQ(pg::admin_value(db_, "SELECT count(*) FROM pg_trigger WHERE tgname = 'label_events_adjudicator'"), "1");
  EXPECT_EQ(pg::admin_value(db_, "SELECT count(*) FROM pg_constraint WHERE conname = 'label_events_source'"), "1");
  ASSERT_TRUE(upgraded->count_instances().ok());
  EXPECT_EQ(upgraded->count_instances().value(), 2);
  // A revision from a newer Hilum: refused, named, untouched.
  ASSERT_EQ(pg::admin_exec(db_, "UPDATE hilum_catalog SET pg_revision = 99"), "");
  auto newer = app::Catalog::open(location(), app::Catalog::Mode::ReadWrite);
  ASSERT_FALSE(newer.ok());
  EXPECT_EQ(newer.error().kind, app::ErrorKind::NewerSchema);
  EXPECT_NE(newer.error().message.find("newer Hilum"), std::string::npos) << newer.error().message;
  EXPECT_NE(newer.error().message.find("revision 99"), std::string::npos) << newer.error().message;
  EXPECT_EQ(pg::admin_value(db_, "SELECT pg_revision FROM hilum_catalog"), "99");
}

// The files beside a PostgreSQL catalog (the managed store, the model-input cache) land in its own
// local folder under $XDG_DATA_HOME/Hilum/postgresql/<host>_<port>_<database>, named from the
// connection with every odd character made '_', never relative to the URL's text (which held
// "postgresql:", '?' and '&'); HILUM_DATA_DIR puts them elsewhere.
TEST_F(PostgresRules, ItsLocalFilesLiveInAFolderOfItsOwn) {
  const fs::path xdg = path("xdg");
  ScopedEnv data_home("XDG_DATA_HOME", xdg.string());
  ScopedEnv override_dir("HILUM_DATA_DIR", std::nullopt);
  auto c = app::Catalog::open(location());
  ASSERT_TRUE(c.ok()) << c.error().message;
  const fs::path folder = c->local_folder();
  ASSERT_EQ(folder.parent_path(), xdg / "Hilum" / "postgresql") << folder;
  const std::string key = folder.filename().string();
  // The test server listens on a socket in a /tmp folder, port 5432; the database is db_.
  EXPECT_EQ(key.rfind("_tmp_hilum-pg-", 0), 0u) << key;
  EXPECT_NE(key.find("_5432_" + db_), std::string::npos) << key;
  EXPECT_EQ(key.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._"), std::string::npos) << key;
  EXPECT_EQ(c->local_path(), folder / "catalog");
  EXPECT_EQ(app::model_input_cache_dir(c->local_path()), folder / "store" / "model-inputs");

  // An import that copies into the store, and caches the model input: both inside that folder.
  namespace td = hilum::testdata;
  td::DicomSpec spec;
  spec.phantom.rows = 64;
  spec.phantom.columns = 64;
  spec.patient_id = "P9";
  spec.study_instance_uid = "1.2.826.0.1.3680043.10.999.2.1";
  spec.series_instance_uid = "1.2.826.0.1.3680043.10.999.3.1";
  spec.sop_instance_uid = "1.2.826.0.1.3680043.10.999.4.1";
  fs::create_directories(path("in"));
  td::write_dicom(path("in/a.dcm"), spec);
  app::ImportOptions o;
  o.copy_to_store = true;
  o.model_input = {32, 32};
  const app::ImportReport r = app::import_paths(*c, {path("in")}, o);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.counts.imported, 1u);
  auto found = c->find_instance(spec.sop_instance_uid);
  ASSERT_TRUE(found.ok() && found->has_value());
  const fs::path stored = (*found)->stored_path;
  EXPECT_EQ(stored.string().rfind((folder / "store").string() + "/", 0), 0u) << stored;
  EXPECT_TRUE(fs::is_regular_file(stored)) << stored;
  EXPECT_TRUE(app::read_cached_input(folder / "store" / "model-inputs", (*found)->content_hash, o.model_input).has_value());
  EXPECT_FALSE(fs::exists("postgresql:")) << "nothing is placed relative to the URL's text";

  // HILUM_DATA_DIR: a folder the department chose (e.g. a share every workstation mounts).
  ScopedEnv chosen("HILUM_DATA_DIR", path("shared").string());
  auto again = app::Catalog::open(location());
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->local_folder(), path("shared"));
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
  m.status = app::ModelStatus::Active;
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
