// The catalog: opening, migrations from every earlier schema, damaged / foreign / newer files,
// locks, instances and the DICOM hierarchy, jobs, pseudonyms.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdlib>
#include <set>
#include <thread>

#include "catalog_support.hpp"

namespace hilum::test {
namespace {

using app::Catalog;
using app::ErrorKind;

// Runs SQL on a raw SQLite connection (to build old catalogs and to play the other process).
void raw_exec(sqlite3* db, const std::string& sql) {
  char* msg = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg);
  ASSERT_EQ(rc, SQLITE_OK) << (msg ? msg : "") << "\n" << sql;
}

TEST_F(CatalogTest, OpensWithWalForeignKeysAndTheLatestSchema) {
  const fs::path db = path("sub/folder/hilum.db");
  auto c = Catalog::open(db);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_TRUE(fs::exists(db));
  EXPECT_EQ(c->schema_version(), Catalog::latest_schema_version());
  EXPECT_GE(Catalog::latest_schema_version(), 3);
  sqlite3* h = c->handle();
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &s, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), "wal");
  sqlite3_finalize(s);
  ASSERT_EQ(sqlite3_prepare_v2(h, "PRAGMA foreign_keys", -1, &s, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(s, 0), 1);
  sqlite3_finalize(s);
  auto check = c->integrity_check();
  ASSERT_TRUE(check.ok());
  EXPECT_EQ(check.value(), "ok");
  // The vocabulary starts as ChestX-ray14's 14 findings plus "No Finding".
  auto f = c->findings();
  ASSERT_TRUE(f.ok());
  ASSERT_EQ(f->size(), 15u);
  EXPECT_EQ(f->front().name, "Atelectasis");
  EXPECT_EQ(f->back().name, "No Finding");
  EXPECT_TRUE(f->front().builtin);
}

TEST_F(CatalogTest, ReopeningKeepsEverything) {
  {
    auto c = open_catalog();
    ASSERT_TRUE(c.put_instances({record("1.1"), record("1.2")}).ok());
  }
  auto c = open_catalog();
  auto n = c.count_instances();
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n.value(), 2);
}

// A catalog written at every earlier schema version, with data of that version, opens with the
// current code: it is upgraded in place and nothing is lost.
class MigrationTest : public CatalogTest, public ::testing::WithParamInterface<int> {};

TEST_P(MigrationTest, UpgradesFromEveryEarlierVersion) {
  const int from = GetParam();
  const fs::path db = path("old.db");
  {
    sqlite3* h = nullptr;
    ASSERT_EQ(sqlite3_open(db.c_str(), &h), SQLITE_OK);
    for (int v = 0; v < from; ++v) raw_exec(h, app::catalog_migrations()[static_cast<std::size_t>(v)]);
    if (from >= 1) {
      raw_exec(h, "PRAGMA application_id=1212763213; PRAGMA user_version=" + std::to_string(from));
      raw_exec(h, "INSERT INTO patients(id, patient_key, patient_id, name) VALUES (1, 'id:OLD', 'OLD', 'Old^Patient');"
                  "INSERT INTO studies(id, study_uid, patient_ref) VALUES (1, '9.9.1', 1);"
                  "INSERT INTO series(id, series_uid, study_ref) VALUES (1, '9.9.1.1', 1);"
                  "INSERT INTO instances(id, sop_uid, series_ref, path, content_hash, imported_at) "
                  "VALUES (1, '9.9.1.1.1', 1, '/old/file.dcm', 'abc', '2025-01-01T00:00:00.000Z');");
    }
    if (from >= 2) {
      raw_exec(h, "INSERT INTO label_events(instance_ref, finding_ref, value, author, created_at) "
                  "VALUES (1, (SELECT id FROM findings WHERE name = 'Effusion'), 'present', 'dr.old', '2025-01-02T00:00:00.000Z')");
    }
    sqlite3_close(h);
  }
  auto c = Catalog::open(db);
  ASSERT_TRUE(c.ok()) << "from version " << from << ": " << c.error().message;
  EXPECT_EQ(c->schema_version(), Catalog::latest_schema_version());
  auto findings = c->findings();
  ASSERT_TRUE(findings.ok());
  EXPECT_EQ(findings->size(), 15u);
  if (from >= 1) {
    auto old = c->find_instance("9.9.1.1.1");
    ASSERT_TRUE(old.ok());
    ASSERT_TRUE(old->has_value()) << "the old image was lost in the migration";
    EXPECT_EQ((*old)->patient_id, "OLD");
    EXPECT_EQ((*old)->path, "/old/file.dcm");
  }
  if (from >= 2) {
    auto labels = c->current_labels("9.9.1.1.1");
    ASSERT_TRUE(labels.ok());
    ASSERT_EQ(labels->size(), 1u);
    EXPECT_EQ(labels->front().author, "dr.old");
  }
  // And the upgraded catalog is fully usable.
  EXPECT_TRUE(c->put_instances({record("2.1")}).ok());
  EXPECT_TRUE(c->pseudonym("patient_id", "OLD").ok());
  auto check = c->integrity_check();
  ASSERT_TRUE(check.ok());
  EXPECT_EQ(check.value(), "ok");
}

INSTANTIATE_TEST_SUITE_P(EveryVersion, MigrationTest, ::testing::Range(0, Catalog::latest_schema_version()));

TEST_F(CatalogTest, ANewerCatalogIsRefusedAndLeftUntouched) {
  const fs::path db = path("newer.db");
  {
    auto c = open_catalog("newer.db");
  }
  {
    sqlite3* h = nullptr;
    ASSERT_EQ(sqlite3_open(db.c_str(), &h), SQLITE_OK);
    raw_exec(h, "PRAGMA journal_mode=DELETE; PRAGMA user_version=" + std::to_string(Catalog::latest_schema_version() + 1));
    sqlite3_close(h);
  }
  const std::string before = file_bytes(db);
  auto c = Catalog::open(db);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().kind, ErrorKind::NewerSchema);
  EXPECT_NE(c.error().message.find("newer Hilum"), std::string::npos) << c.error().message;
  EXPECT_EQ(file_bytes(db), before);
}

TEST_F(CatalogTest, ADamagedFileIsReportedAndNeverOverwritten) {
  const fs::path garbage = path("garbage.db");
  {
    std::ofstream out(garbage, std::ios::binary);
    for (int i = 0; i < 4096; ++i) out.put(static_cast<char>((i * 7919) & 0xFF));
  }
  const std::string before = file_bytes(garbage);
  auto c = Catalog::open(garbage);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().kind, ErrorKind::Corrupt) << c.error().message;
  EXPECT_NE(c.error().message.find("left untouched"), std::string::npos) << c.error().message;
  EXPECT_EQ(file_bytes(garbage), before);

  // A real catalog whose pages were damaged after the header: detected by the check on open.
  const fs::path db = path("damaged.db");
  {
    auto good = open_catalog("damaged.db");
    std::vector<app::InstanceRecord> many;
    for (int i = 0; i < 300; ++i) many.push_back(record("3." + std::to_string(i)));
    ASSERT_TRUE(good.put_instances(many).ok());
    sqlite3* h = good.handle();
    raw_exec(h, "PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE");
  }
  {
    std::fstream f(db, std::ios::in | std::ios::out | std::ios::binary);
    for (int page = 2; page < 8; ++page) {  // the b-tree page headers of pages 2..7
      f.seekp(4096 * (page - 1));
      for (int i = 0; i < 12; ++i) f.put(static_cast<char>(0xA5));
    }
  }
  const std::string damaged = file_bytes(db);
  auto d = Catalog::open(db);
  ASSERT_FALSE(d.ok()) << "a damaged catalog opened as if it were fine";
  EXPECT_EQ(d.error().kind, ErrorKind::Corrupt) << d.error().message;
  EXPECT_EQ(file_bytes(db), damaged);
}

TEST_F(CatalogTest, AnotherApplicationsDatabaseIsNotTouched) {
  const fs::path db = path("other.db");
  {
    sqlite3* h = nullptr;
    ASSERT_EQ(sqlite3_open(db.c_str(), &h), SQLITE_OK);
    raw_exec(h, "CREATE TABLE contacts(name TEXT); INSERT INTO contacts VALUES ('x')");
    sqlite3_close(h);
  }
  const std::string before = file_bytes(db);
  auto c = Catalog::open(db);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().kind, ErrorKind::Corrupt);
  EXPECT_NE(c.error().message.find("not a Hilum catalog"), std::string::npos);
  EXPECT_EQ(file_bytes(db), before);
}

TEST_F(CatalogTest, MissingCatalogWithoutCreateIsAClearError) {
  auto c = Catalog::open(path("absent.db"), Catalog::Mode::ReadWrite);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().kind, ErrorKind::CannotOpen);
  EXPECT_FALSE(fs::exists(path("absent.db")));
  auto d = Catalog::open(dir_);  // a folder
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().kind, ErrorKind::CannotOpen);
}

TEST_F(CatalogTest, ReadOnlyCatalogRefusesWritesAndLosesNothing) {
  {
    auto c = open_catalog();
    ASSERT_TRUE(c.put_instances({record("4.1")}).ok());
  }
  auto ro = Catalog::open(path("hilum.db"), Catalog::Mode::ReadOnly);
  ASSERT_TRUE(ro.ok()) << ro.error().message;
  auto found = ro->find_instance("4.1");
  ASSERT_TRUE(found.ok());
  EXPECT_TRUE(found->has_value());
  auto put = ro->put_instances({record("4.2")});
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.error().kind, ErrorKind::ReadOnly) << put.error().message;
  app::LabelInput in{"4.1", "Effusion", app::LabelValue::Present, std::nullopt, "dr", std::nullopt, std::nullopt, "", app::LabelSource::Cli, app::LabelKind::Reading, ""};
  auto label = ro->add_labels({in});
  ASSERT_FALSE(label.ok());
  EXPECT_EQ(label.error().kind, ErrorKind::ReadOnly);
}

// Issue 16, defect 13: on read-only storage a (WAL) catalog could not even be read: SQLite could
// not create its -shm file. A dangling symbolic link in that file's place stands in for such
// storage here (chmod does not stop root, who runs the tests).
TEST_F(CatalogTest, ReadOnlyStorageIsBrowsedAndWritesAreRefused) {
  {
    auto c = open_catalog();
    ASSERT_TRUE(c.put_instances({record("4.1"), record("4.2")}).ok());
    app::LabelInput in{"4.1", "Effusion", app::LabelValue::Present, std::nullopt, "dr", std::nullopt, std::nullopt, "", app::LabelSource::Cli, app::LabelKind::Reading, ""};
    ASSERT_TRUE(c.add_labels({in}).ok());
  }
  ASSERT_FALSE(fs::exists(path("hilum.db-shm")));
  fs::create_symlink(path("no-such-folder") / "shm", path("hilum.db-shm"));
  auto ro = Catalog::open(path("hilum.db"), Catalog::Mode::ReadOnly);
  ASSERT_TRUE(ro.ok()) << ro.error().message;
  auto list = ro->list_instances();
  ASSERT_TRUE(list.ok()) << list.error().message;
  EXPECT_EQ(list->size(), 2u);
  auto history = ro->label_history("4.1");
  ASSERT_TRUE(history.ok()) << history.error().message;
  EXPECT_EQ(history->size(), 1u);
  auto models = ro->models();
  ASSERT_TRUE(models.ok()) << models.error().message;
  auto put = ro->put_instances({record("4.3")});
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.error().kind, ErrorKind::ReadOnly) << put.error().message;
}

// The same through file permissions, which only a user other than root can try.
TEST_F(CatalogTest, AFolderWithoutWritePermissionIsBrowsedAndWritingNeedsAWritableCatalog) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root, whom permissions do not stop (see ReadOnlyStorageIsBrowsedAndWritesAreRefused)";
  {
    auto c = open_catalog();
    ASSERT_TRUE(c.put_instances({record("4.1")}).ok());
  }
  fs::permissions(path("hilum.db"), fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
  fs::permissions(dir_, fs::perms::owner_read | fs::perms::owner_exec);
  auto ro = Catalog::open(path("hilum.db"), Catalog::Mode::ReadOnly);
  auto rw = Catalog::open(path("hilum.db"), Catalog::Mode::ReadWrite);
  fs::permissions(dir_, fs::perms::owner_all);
  ASSERT_TRUE(ro.ok()) << ro.error().message;
  EXPECT_EQ(ro->list_instances()->size(), 1u);
  ASSERT_FALSE(rw.ok());
  EXPECT_EQ(rw.error().kind, ErrorKind::ReadOnly);
  EXPECT_NE(rw.error().message.find("writable"), std::string::npos) << rw.error().message;
}

TEST_F(CatalogTest, ALockedCatalogGivesAClearErrorAndCommitsNothing) {
  auto c = open_catalog();
  ASSERT_TRUE(c.put_instances({record("5.1")}).ok());
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path("hilum.db").c_str(), &other), SQLITE_OK);
  raw_exec(other, "BEGIN EXCLUSIVE; INSERT INTO settings(key, value) VALUES ('held', 'by another process')");
  auto put = c.put_instances({record("5.2")});  // waits for the busy timeout, then gives up
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.error().kind, ErrorKind::Locked) << put.error().message;
  EXPECT_NE(put.error().message.find("locked"), std::string::npos);
  raw_exec(other, "ROLLBACK");
  sqlite3_close(other);
  auto again = c.put_instances({record("5.2")});
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(c.count_instances().value(), 2);
}

TEST_F(CatalogTest, InstancesBuildTheHierarchyAndDetectConflicts) {
  auto c = open_catalog();
  auto first = c.put_instances({record("6.1", "P1", "1.1", "1.1.1"), record("6.2", "P1", "1.1", "1.1.2"),
                                record("6.3", "P2", "2.1", "2.1.1")});
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(first.value(), (std::vector<app::PutOutcome>{app::PutOutcome::Inserted, app::PutOutcome::Inserted, app::PutOutcome::Inserted}));
  // Same UID and content: already present. Same UID, different content: conflict, not replaced.
  app::InstanceRecord changed = record("6.1", "P1", "1.1", "1.1.1", "other");
  changed.path = "/elsewhere/6.1.dcm";
  auto second = c.put_instances({record("6.1", "P1", "1.1", "1.1.1"), changed, record("6.4", "P2", "2.1", "2.1.1")});
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second.value(), (std::vector<app::PutOutcome>{app::PutOutcome::AlreadyPresent, app::PutOutcome::Conflict, app::PutOutcome::Inserted}));
  auto kept = c.find_instance("6.1");
  ASSERT_TRUE(kept.ok() && kept->has_value());
  EXPECT_EQ((*kept)->path, "/data/6.1.dcm");
  EXPECT_EQ((*kept)->content_hash, "h6.1");
  // Found by path too; attributes round-trip.
  auto by_path = c.find_instance("/data/6.3.dcm");
  ASSERT_TRUE(by_path.ok() && by_path->has_value());
  EXPECT_EQ((*by_path)->sop_instance_uid, "6.3");
  EXPECT_EQ((*by_path)->patient_name, "Name^P2");
  EXPECT_EQ((*by_path)->rows, 2500);
  EXPECT_EQ((*by_path)->view_position, "PA");
  EXPECT_EQ((*by_path)->thumbnail_png.size(), 4u);
  auto studies = c.list_studies();
  ASSERT_TRUE(studies.ok());
  ASSERT_EQ(studies->size(), 2u);
  EXPECT_EQ(studies->at(0).images, 2);
  EXPECT_EQ(studies->at(1).images, 2);
  app::InstanceFilter only_p2;
  only_p2.patient_id = "P2";
  auto p2 = c.list_instances(only_p2);
  ASSERT_TRUE(p2.ok());
  EXPECT_EQ(p2->size(), 2u);
  // A study UID of another patient: never attached to that patient (issue 16), and said why.
  auto reused = c.put_instances({record("6.5", "P3", "1.1", "3.1.1")});
  ASSERT_TRUE(reused.ok());
  EXPECT_EQ(reused.value(), std::vector<app::PutOutcome>{app::PutOutcome::PatientConflict});
  auto why = c.attach_conflict(record("6.5", "P3", "1.1", "3.1.1"));
  ASSERT_TRUE(why.ok() && why->has_value());
  EXPECT_NE(why->value().find("'P1'"), std::string::npos) << why->value();
  EXPECT_NE(why->value().find("'P3'"), std::string::npos) << why->value();
  auto fits = c.attach_conflict(record("6.6", "P1", "1.1", "1.1.1"));
  ASSERT_TRUE(fits.ok());
  EXPECT_FALSE(fits->has_value());
  auto merged = c.find_instance("6.5");
  ASSERT_TRUE(merged.ok());
  EXPECT_FALSE(merged->has_value());
  // A batch that fails part-way writes nothing.
  auto bad = c.put_instances({record("6.9"), record("")});
  ASSERT_FALSE(bad.ok());
  auto absent = c.find_instance("6.9");
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->has_value());
}

TEST_F(CatalogTest, JobsRecordTheirItems) {
  auto c = open_catalog();
  auto id = c.create_job("import", "{\"paths\":[\"/a\"]}", {"/a/1.dcm", "/a/2.dcm", "/a/3.dcm"});
  ASSERT_TRUE(id.ok());
  auto unfinished = c.unfinished_job("import", "{\"paths\":[\"/a\"]}");
  ASSERT_TRUE(unfinished.ok() && unfinished->has_value());
  EXPECT_EQ((*unfinished)->id, id.value());
  auto items = c.job_items(id.value(), true);
  ASSERT_TRUE(items.ok());
  ASSERT_EQ(items->size(), 3u);
  std::vector<app::JobItem> done{items->at(0)};
  done[0].status = app::JobItemStatus::Imported;
  ASSERT_TRUE(c.finish_job_items(done).ok());
  EXPECT_EQ(c.job_items(id.value(), true)->size(), 2u);
  ASSERT_TRUE(c.set_job_status(id.value(), app::JobStatus::Done, "{\"imported\":3}").ok());
  auto none = c.unfinished_job("import", "{\"paths\":[\"/a\"]}");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(c.job(id.value())->summary, "{\"imported\":3}");
  EXPECT_FALSE(c.set_job_status(999, app::JobStatus::Done).ok());
}

TEST_F(CatalogTest, PseudonymsAreConsistentAndDistinct) {
  auto c = open_catalog();
  auto a1 = c.pseudonym("patient_id", "PAT-0001");
  auto a2 = c.pseudonym("patient_id", "PAT-0001");
  auto b = c.pseudonym("patient_id", "PAT-0002");
  auto u = c.pseudonym("uid", "1.2.840.99.1");
  ASSERT_TRUE(a1.ok() && a2.ok() && b.ok() && u.ok());
  EXPECT_EQ(a1.value(), a2.value());
  EXPECT_NE(a1.value(), b.value());
  EXPECT_EQ(a1->find("PAT-0001"), std::string::npos);
  EXPECT_LE(a1->size(), 16u);  // fits Accession Number (SH) and every other DICOM string VR
  EXPECT_EQ(u->rfind("2.25.", 0), 0u) << u.value();
  EXPECT_LE(u->size(), 64u);  // a UID is at most 64 characters
  auto s1 = c.secret();
  auto s2 = c.secret();
  ASSERT_TRUE(s1.ok() && s2.ok());
  EXPECT_EQ(s1.value(), s2.value());
  EXPECT_EQ(s1->size(), 64u);
}

// What the title bar and the messages show: never a password, in the authority or the query.
TEST(CatalogPath, ShownWithoutItsPassword) {
  using app::shown_catalog_location;
  EXPECT_EQ(shown_catalog_location("/home/dr/hilum.db"), "/home/dr/hilum.db");
  EXPECT_EQ(shown_catalog_location("postgresql://dr@pacs.local/hilum"), "postgresql://dr@pacs.local/hilum");
  EXPECT_EQ(shown_catalog_location("postgresql://dr:s3cr:et@pacs.local:5432/hilum"), "postgresql://dr:***@pacs.local:5432/hilum");
  EXPECT_EQ(shown_catalog_location("postgresql:///hilum?host=/run/pg&password=s3cret&user=dr"),
            "postgresql:///hilum?host=/run/pg&password=***&user=dr");
  EXPECT_EQ(shown_catalog_location("postgresql://pacs.local/hilum?password=s3cret"), "postgresql://pacs.local/hilum?password=***");
  EXPECT_EQ(shown_catalog_location("postgresql://pacs.local/hilum?sslpassword=x"), "postgresql://pacs.local/hilum?sslpassword=x");
}

TEST(CatalogPath, DefaultFollowsHilumDbThenXdg) {
  ::setenv("HILUM_DB", "/tmp/explicit.db", 1);
  EXPECT_EQ(app::default_catalog_path(), fs::path("/tmp/explicit.db"));
  ::unsetenv("HILUM_DB");
  ::setenv("XDG_DATA_HOME", "/tmp/xdg", 1);
  EXPECT_EQ(app::default_catalog_path(), fs::path("/tmp/xdg/Hilum/hilum.db"));
  ::unsetenv("XDG_DATA_HOME");
  ::setenv("HOME", "/home/someone", 1);
  EXPECT_EQ(app::default_catalog_path(), fs::path("/home/someone/.local/share/Hilum/hilum.db"));
}

}  // namespace
}  // namespace hilum::test
