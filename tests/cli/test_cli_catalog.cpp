// End-to-end: hilum-cli's label and labels commands on a catalog, --db and HILUM_DB.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "temp_dir_test.hpp"
#include "cli_runner.hpp"
#include "hilum/app/catalog.hpp"

namespace fs = std::filesystem;

namespace hilum::test {
namespace {

class CliCatalog : public hilum::test::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    db_ = dir_ / "hilum.db";
    auto c = app::Catalog::open(db_);
    ASSERT_TRUE(c.ok()) << c.error().message;
    for (const std::string uid : {"8.1", "8.2"}) {
      app::InstanceRecord r;
      r.sop_instance_uid = uid;
      r.path = (dir_ / (uid + ".dcm")).string();
      r.content_hash = "h" + uid;
      r.patient_id = "P8";
      r.study_instance_uid = "8";
      r.series_instance_uid = "8.0";
      r.rows = 100;
      r.columns = 100;
      ASSERT_TRUE(c->put_instances({r}).ok());
    }
  }
  std::string db() const { return "--db " + quote(db_.string()); }
  fs::path db_;
};

// catalog migrate, one command: the catalog moves into a new one (here another file; the PostgreSQL
// run of test_app moves one into PostgreSQL) and the command says that nothing was lost.
TEST_F(CliCatalog, MigrateMovesTheCatalogAndComparesRowsAndChecksums) {
  ASSERT_EQ(run_cli(db() + " label 8.1 --set Effusion=present --author dr.who").status, 0);
  ASSERT_EQ(run_cli(db() + " label 8.2 --set Nodule=absent --author dr.two").status, 0);
  const fs::path moved = dir_ / "moved.db";
  const auto r = run_cli(db() + " catalog migrate --to " + quote(moved.string()) + " --json");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("\"identical\":true"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"label_events\":2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"instances\":2"), std::string::npos) << r.out;
  auto c = app::Catalog::open(moved);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->label_history()->size(), 2u);
  // Never into a catalog that already holds something; and --to is required.
  EXPECT_NE(run_cli(db() + " catalog migrate --to " + quote(moved.string())).status, 0);
  EXPECT_EQ(run_cli(db() + " catalog migrate").status, 2);
}

TEST_F(CliCatalog, LabelSetsAndShowsCurrentLabels) {
  const auto r = run_cli(db() + " label 8.1 --set Effusion=present --set Nodule=absent --author dr.who --region 10,20,30,40 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto l = lines(r.out);
  ASSERT_EQ(l.size(), 2u) << r.out;
  EXPECT_NE(l[0].find("\"finding\":\"Effusion\""), std::string::npos) << l[0];
  EXPECT_NE(l[0].find("\"region\":{\"type\":\"rect\",\"x\":10,\"y\":20,\"w\":30,\"h\":40}"), std::string::npos) << l[0];
  EXPECT_NE(l[1].find("\"value\":\"absent\""), std::string::npos) << l[1];
  EXPECT_NE(l[1].find("\"region\":null"), std::string::npos) << l[1];
  // By path too, and the history keeps both events.
  ASSERT_EQ(run_cli(db() + " label " + quote((dir_ / "8.1.dcm").string()) + " --set Effusion=uncertain --author dr.two").status, 0);
  const auto h = run_cli(db() + " labels history 8.1 --json");
  ASSERT_EQ(h.status, 0);
  EXPECT_EQ(lines(h.out).size(), 3u);
  auto c = app::Catalog::open(db_);
  ASSERT_TRUE(c.ok());
  // dr.two's label is dr.two's own: dr.who's stays, and the two readers disagree on Effusion.
  auto mine = c->reader_labels("8.1", "dr.two");
  ASSERT_TRUE(mine.ok());
  ASSERT_EQ(mine->size(), 1u);
  EXPECT_EQ(mine->at(0).value, app::LabelValue::Uncertain);
  EXPECT_EQ(c->reader_labels("8.1", "dr.who")->size(), 2u);
  auto current = c->current_labels("8.1");
  ASSERT_TRUE(current.ok());
  ASSERT_EQ(current->size(), 1u);
  EXPECT_EQ(current->at(0).finding, "Nodule");
}

// Issue 16, defect 13: a catalog on read-only storage could not even be listed. SQLite cannot
// create the catalog's -shm file there (as on a CD or a read-only mount); a dangling symbolic link
// in its place stands in for that storage, since chmod does not stop root, who runs the tests.
TEST_F(CliCatalog, ACatalogOnReadOnlyStorageCanBeBrowsed) {
  ASSERT_EQ(run_cli(db() + " label 8.1 --set Effusion=present --author dr.who").status, 0);
  ASSERT_FALSE(fs::exists(dir_ / "hilum.db-shm"));
  fs::create_symlink(dir_ / "no-such-folder" / "shm", dir_ / "hilum.db-shm");
  const auto list = run_cli(db() + " list --json", true);
  EXPECT_EQ(list.status, 0) << list.out;
  EXPECT_EQ(lines(list.out).size(), 2u) << list.out;
  const auto history = run_cli(db() + " labels history 8.1 --json", true);
  EXPECT_EQ(history.status, 0) << history.out;
  EXPECT_NE(history.out.find("\"finding\":\"Effusion\""), std::string::npos) << history.out;
  const auto models = run_cli(db() + " models list", true);
  EXPECT_EQ(models.status, 0) << models.out;
  // A writing command still needs a writable catalog, and changes nothing.
  const auto write = run_cli(db() + " label 8.2 --set Effusion=absent --author dr.who", true);
  EXPECT_EQ(write.status, 3) << write.out;
  fs::remove(dir_ / "hilum.db-shm");
  auto c = app::Catalog::open(db_, app::Catalog::Mode::ReadOnly);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_TRUE(c->current_labels("8.2")->empty());
}

TEST_F(CliCatalog, AdjudicateListsDisagreementsAndRecordsOneDecision) {
  ASSERT_EQ(run_cli(db() + " label 8.1 --set Effusion=present --author dr.a").status, 0);
  ASSERT_EQ(run_cli(db() + " label 8.1 --set Effusion=absent --author dr.b").status, 0);
  const auto list = run_cli(db() + " adjudicate list --json");
  ASSERT_EQ(list.status, 0) << list.out;
  ASSERT_EQ(lines(list.out).size(), 1u) << list.out;
  EXPECT_NE(list.out.find("\"sop_instance_uid\":\"8.1\""), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("\"readers\":{\"dr.a\":\"present\",\"dr.b\":\"absent\"}"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("\"consensus\":null"), std::string::npos) << list.out;
  const auto decided = run_cli(db() + " adjudicate 8.1 --set Effusion=present --json");
  ASSERT_EQ(decided.status, 0) << decided.out;
  EXPECT_NE(decided.out.find("\"basis\":\"adjudicated\""), std::string::npos) << decided.out;
  // A second adjudicator (who saw the list before the first decided) is refused and told who decided.
  const auto second = run_cli(db() + " adjudicate 8.1 --set Effusion=absent", true);
  EXPECT_EQ(second.status, 1) << second.out;
  EXPECT_NE(second.out.find("was adjudicated by"), std::string::npos) << second.out;
  EXPECT_TRUE(lines(run_cli(db() + " adjudicate list --json").out).empty());
  auto c = app::Catalog::open(db_);
  ASSERT_TRUE(c.ok());
  const auto history = c->label_history("8.1");
  ASSERT_EQ(history->size(), 3u);
  EXPECT_EQ(history->back().kind, app::LabelKind::Adjudication);
  EXPECT_EQ(history->back().author, app::current_os_user());
  EXPECT_EQ(c->current_labels("8.1")->at(0).value, app::LabelValue::Present);
}

TEST_F(CliCatalog, ConsensusPolicyAndBlindingAreSettings) {
  const auto shown = run_cli(db() + " labels policy --json");
  ASSERT_EQ(shown.status, 0) << shown.out;
  EXPECT_NE(shown.out.find("\"rule\":\"majority\""), std::string::npos) << shown.out;
  ASSERT_EQ(run_cli(db() + " labels policy --rule unanimous --min-readers 2").status, 0);
  EXPECT_EQ(run_cli(db() + " labels policy --min-readers 0").status, 2);
  ASSERT_EQ(run_cli(db() + " labels blinding labels+ai").status, 0);
  EXPECT_EQ(run_cli(db() + " labels blinding sometimes").status, 2);
  auto c = app::Catalog::open(db_);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->consensus_policy()->rule, app::ConsensusPolicy::Rule::Unanimous);
  EXPECT_EQ(c->consensus_policy()->min_readers, 2);
  EXPECT_EQ(*c->blinding(), app::Blinding::LabelsAndAi);
}

TEST_F(CliCatalog, AgreementNamesEachStatisticAndTheReaders) {
  ASSERT_EQ(run_cli(db() + " label 8.1 --set Effusion=present --author dr.a").status, 0);
  ASSERT_EQ(run_cli(db() + " label 8.1 --set Effusion=absent --author dr.b").status, 0);
  ASSERT_EQ(run_cli(db() + " label 8.2 --set Effusion=absent --author dr.a").status, 0);
  ASSERT_EQ(run_cli(db() + " label 8.2 --set Effusion=absent --author dr.b").status, 0);
  const auto r = run_cli(db() + " agreement --finding Effusion --bootstrap 20 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  // Two images are too few for any statistic (kMinAgreementImages): null, with the reason and the count.
  for (const char* field : {"\"cohen_kappa\":[{\"readers\":[\"dr.a\",\"dr.b\"],\"value\":null,\"ci95\":null,\"images\":2,\"reason\":\"too few images\"}",
                            "\"fleiss_kappa\":{\"value\":null,\"ci95\":null,\"images\":2,\"reason\":\"too few images\"}",
                            "\"krippendorff_alpha\":{\"value\":null,", "\"reader_vs_others_consensus\":[{\"reader\":\"dr.a\"",
                            "\"readers\":[\"dr.a\",\"dr.b\"]", "\"min_images\":10"}) {
    EXPECT_NE(r.out.find(field), std::string::npos) << field << " in " << r.out;
  }
  const auto text = run_cli(db() + " agreement --finding Effusion --bootstrap 20");
  ASSERT_EQ(text.status, 0) << text.out;
  EXPECT_NE(text.out.find("Cohen's kappa dr.a / dr.b: too few images (2)"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("no statistic from fewer than 10 images"), std::string::npos) << text.out;
  EXPECT_EQ(run_cli(db() + " agreement --threshold 2").status, 2);
}

// The reader is the OS user; --author NAME (also for --from-csv) is recorded as entered by the OS
// user on behalf of NAME.
TEST_F(CliCatalog, TheReaderIsTheOsUserAndImportsSayWhoEnteredThem) {
  const std::string me = app::current_os_user();
  ASSERT_EQ(run_cli(db() + " label 8.1 --set Effusion=present").status, 0);
  const auto behalf = run_cli(db() + " label 8.1 --set Effusion=absent --author dr.other");
  ASSERT_EQ(behalf.status, 0) << behalf.out;
  EXPECT_NE(behalf.out.find("by " + me + " on behalf of dr.other"), std::string::npos) << behalf.out;
  {
    std::ofstream csv(dir_ / "other.csv");
    csv << "image,Mass\n8.2,present\n";
  }
  ASSERT_EQ(run_cli(db() + " label --from-csv " + quote((dir_ / "other.csv").string()) + " --author dr.csv").status, 0);
  const auto h = run_cli(db() + " labels history --json");
  ASSERT_EQ(h.status, 0);
  const auto l = lines(h.out);
  ASSERT_EQ(l.size(), 3u) << h.out;
  EXPECT_NE(l[0].find("\"author\":\"" + me + "\""), std::string::npos) << l[0];
  EXPECT_NE(l[1].find("\"author\":\"dr.other\""), std::string::npos) << l[1];
  EXPECT_NE(l[2].find("\"author\":\"dr.csv\""), std::string::npos) << l[2];
  for (const auto& line : l) EXPECT_NE(line.find("\"recorded_by\":\"" + me + "\""), std::string::npos) << line;
  // Each reader's own label stays theirs.
  auto c = app::Catalog::open(db_);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->reader_labels("8.1")->size(), 2u);
}

TEST_F(CliCatalog, BadLabelCommandsChangeNothing) {
  EXPECT_EQ(run_cli(db() + " label 8.1 --set Effusion --author a").status, 2);               // no value
  EXPECT_EQ(run_cli(db() + " label 8.1 --set Effusion=maybe --author a").status, 2);         // bad value
  EXPECT_EQ(run_cli(db() + " label 8.1 --set Effusion=present --region 1,2,3 --author a").status, 2);
  EXPECT_EQ(run_cli(db() + " label 9.9 --set Effusion=present --author a").status, 1);       // unknown image
  EXPECT_EQ(run_cli(db() + " label 8.1 --set Dragons=present --author a").status, 1);        // unknown finding
  EXPECT_EQ(run_cli(db() + " label 8.1 --set Mass=present --region 90,90,50,50 --author a").status, 1);  // outside
  auto c = app::Catalog::open(db_);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->label_history()->empty());
}

TEST_F(CliCatalog, VocabularyAndCsv) {
  ASSERT_EQ(run_cli(db() + " labels add 'Tube malposition' --description 'Line or tube misplaced'").status, 0);
  EXPECT_EQ(run_cli(db() + " labels add 'tube malposition'").status, 1);
  const auto list = run_cli(db() + " labels list --json");
  ASSERT_EQ(list.status, 0);
  EXPECT_EQ(lines(list.out).size(), 16u);
  EXPECT_NE(list.out.find("\"name\":\"Tube malposition\",\"description\":\"Line or tube misplaced\",\"builtin\":false"), std::string::npos);
  {
    std::ofstream csv(dir_ / "bulk.csv");
    csv << "image,Tube malposition,Effusion\n8.1,present,absent\n8.2,absent,present\nnope,present,\n";
  }
  const auto r = run_cli(db() + " label --from-csv " + quote((dir_ / "bulk.csv").string()) + " --author reader --json");
  EXPECT_EQ(r.status, 1) << r.out;  // one row failed
  EXPECT_NE(r.out.find("\"rows\":3,\"rows_applied\":2,\"labels_written\":4"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"line\":4"), std::string::npos) << r.out;
}

TEST_F(CliCatalog, HilumDbEnvironmentAndDamagedCatalogs) {
  const std::string env = "HILUM_DB=" + quote(db_.string()) + " ";
  // HILUM_DB names the catalog when --db is not given.
  const std::string command = env + HILUM_CLI + " label 8.2 --set Mass=present --author env";
  ASSERT_EQ(std::system((command + " >/dev/null 2>&1").c_str()), 0);
  auto c = app::Catalog::open(db_);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->current_labels("8.2")->size(), 1u);
  // A file that is not a catalog: exit status 3, a reason, the file untouched.
  const fs::path bad = dir_ / "bad.db";
  { std::ofstream(bad) << "this is not a database, it is a shopping list\n"; }
  const auto failed = run_cli("--db " + quote(bad.string()) + " labels list", true);
  EXPECT_EQ(failed.status, 3);
  EXPECT_NE(failed.out.find("damaged or not a database"), std::string::npos) << failed.out;
  std::ifstream in(bad);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "this is not a database, it is a shopping list\n");
}

}  // namespace
}  // namespace hilum::test
