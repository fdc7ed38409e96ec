// End-to-end tests of `hilum-cli import` and `hilum-cli list`: the real executable on generated
// files, its exit statuses, and an import killed with SIGKILL mid-way then run again.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "temp_dir_test.hpp"
#include "cli_runner.hpp"
#include "hilum/app/catalog.hpp"
#include "hilum/app/hash.hpp"
#include "hilum/app/import.hpp"
#include "hilum/testdata/phantom.hpp"

namespace fs = std::filesystem;
namespace td = hilum::testdata;

namespace {

using hilum::test::CliRun;
using hilum::test::lines;
using hilum::test::quote;
using hilum::test::run_cli;

class CliImport : public hilum::test::TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    db_ = dir_ / "cat" / "hilum.db";
  }
  std::string db() const { return "--db " + quote(db_.string()) + " "; }

  // `count` images of side x side pixels in `folder`, spread over `patients` patients (one study
  // each). Returns their SOP Instance UIDs.
  std::vector<std::string> write_images(const fs::path& folder, int count, int patients, int side) {
    fs::create_directories(folder);
    std::vector<std::string> sops;
    for (int i = 0; i < count; ++i) {
      const int p = i % patients;
      td::DicomSpec s;
      s.phantom.rows = side;
      s.phantom.columns = side;
      s.phantom.seed = static_cast<std::uint32_t>(i + 1);
      s.patient_id = "CLI-" + std::to_string(p);
      s.study_instance_uid = "1.2.826.0.1.3680043.10.998.2." + std::to_string(p);
      s.series_instance_uid = "1.2.826.0.1.3680043.10.998.3." + std::to_string(p);
      s.sop_instance_uid = "1.2.826.0.1.3680043.10.998.4." + std::to_string(i);
      char name[32];
      std::snprintf(name, sizeof name, "IM%05d.dcm", i);
      td::write_dicom(folder / name, s);
      sops.push_back(s.sop_instance_uid);
    }
    return sops;
  }

  fs::path db_;
};

// The integer value of a top-level "key": in the one-line JSON summary (keys of nested objects
// come after the top-level counts), or of "key" inside the object that follows "within".
std::optional<long long> json_int(const std::string& json, const std::string& key, const std::string& within = {}) {
  std::size_t from = 0;
  if (!within.empty()) {
    from = json.find("\"" + within + "\":{");
    if (from == std::string::npos) return std::nullopt;
  }
  const std::string needle = "\"" + key + "\":";
  const auto at = json.find(needle, from);
  if (at == std::string::npos) return std::nullopt;
  return std::atoll(json.c_str() + at + needle.size());
}

bool json_has(const std::string& json, const std::string& fragment) { return json.find(fragment) != std::string::npos; }

std::string file_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST_F(CliImport, ImportsThenListsImagesAndStudiesAsJsonLines) {
  const auto a = write_images(dir_ / "in", 6, 2, 64);
  td::write_basic_text_sr(dir_ / "in" / "report.dcm");

  const CliRun run = run_cli(db() + "import " + quote((dir_ / "in").string()) + " --jobs 2 --json");
  EXPECT_EQ(run.status, 0) << run.out;  // a non-image is skipped, not a failure
  auto out = lines(run.out);
  ASSERT_EQ(out.size(), 1u) << run.out;
  EXPECT_EQ(json_int(out[0], "files"), 7);
  EXPECT_EQ(json_int(out[0], "imported"), 6);
  EXPECT_EQ(json_int(out[0], "skipped"), 1);
  EXPECT_EQ(json_int(out[0], "failed"), 0);
  EXPECT_TRUE(json_has(out[0], "\"reason\":\"not an image: Basic Text SR\"")) << out[0];
  EXPECT_TRUE(json_has(out[0], "\"interrupted\":false"));

  const CliRun images = run_cli(db() + "list --json");
  EXPECT_EQ(images.status, 0);
  const auto il = lines(images.out);
  ASSERT_EQ(il.size(), 6u) << images.out;
  std::set<std::string> listed;
  const std::regex uid_re("\"sop_instance_uid\":\"([0-9.]+)\"");
  for (const auto& l : il) {
    std::smatch m;
    ASSERT_TRUE(std::regex_search(l, m, uid_re)) << l;
    listed.insert(m[1]);
    EXPECT_TRUE(json_has(l, "\"path\":\"" + fs::weakly_canonical(dir_ / "in").string() + "/IM0000")) << l;
  }
  EXPECT_EQ(listed, std::set<std::string>(a.begin(), a.end()));

  const CliRun studies = run_cli(db() + "list --studies --json");
  EXPECT_EQ(studies.status, 0);
  const auto sl = lines(studies.out);
  ASSERT_EQ(sl.size(), 2u) << studies.out;
  for (const auto& l : sl) {
    EXPECT_TRUE(json_has(l, "\"study_instance_uid\":\"1.2.826.0.1.3680043.10.998.2.")) << l;
    EXPECT_TRUE(json_has(l, "\"images\":3")) << l;
  }
  // Nothing is labelled yet.
  EXPECT_EQ(lines(run_cli(db() + "list --unlabeled --json").out).size(), 6u);
  EXPECT_EQ(run_cli(db() + "list --labeled --json").out, "");

  // Human output: a table with one row per image.
  const CliRun table = run_cli(db() + "list");
  EXPECT_EQ(table.status, 0);
  EXPECT_EQ(lines(table.out).size(), 7u) << table.out;  // header + 6 rows

  // Again: everything already present, exit 0, human summary.
  const CliRun again = run_cli(db() + "import " + quote((dir_ / "in").string()));
  EXPECT_EQ(again.status, 0);
  EXPECT_TRUE(json_has(again.out, "imported 0, already present 6, conflicts 0, skipped 1, failed 0")) << again.out;
  EXPECT_TRUE(json_has(again.out, "skipped: " + fs::weakly_canonical(dir_ / "in" / "report.dcm").string() +
                                      ": not an image: Basic Text SR"))
      << again.out;
}

TEST_F(CliImport, ExitStatuses) {
  write_images(dir_ / "good", 2, 1, 64);
  fs::create_directories(dir_ / "bad");
  td::write_not_dicom(dir_ / "bad" / "notes.txt");
  td::write_dicom(dir_ / "bad" / "b.dcm", td::DicomSpec{});

  // Usage errors: 2, and no catalog is created.
  EXPECT_EQ(run_cli(db() + "import").status, 2);
  EXPECT_EQ(run_cli(db() + "import " + quote((dir_ / "good").string()) + " --jobs 0").status, 2);
  EXPECT_EQ(run_cli(db() + "import " + quote((dir_ / "good").string()) + " --jobs").status, 2);
  EXPECT_EQ(run_cli(db() + "import " + quote((dir_ / "good").string()) + " --frobnicate").status, 2);
  EXPECT_EQ(run_cli(db() + "list --studies --images").status, 2);
  EXPECT_FALSE(fs::exists(db_));
  // No catalog yet: list cannot open it.
  EXPECT_EQ(run_cli(db() + "list").status, 3);

  EXPECT_EQ(run_cli(db() + "import " + quote((dir_ / "good").string())).status, 0);
  // A folder holding a file that is not DICOM: 0 (every DICOM file imported), the file counted
  // as not DICOM (issue 16, defect 14).
  const CliRun walked = run_cli(db() + "import " + quote((dir_ / "bad").string()) + " --json");
  EXPECT_EQ(walked.status, 0) << walked.out;
  EXPECT_EQ(json_int(walked.out, "imported"), 1);
  EXPECT_EQ(json_int(walked.out, "failed"), 0);
  EXPECT_EQ(json_int(walked.out, "not_dicom"), 1);
  const CliRun walked_human = run_cli(db() + "import " + quote((dir_ / "bad").string()));
  EXPECT_EQ(walked_human.status, 0) << walked_human.out;
  EXPECT_NE(walked_human.out.find("not DICOM 1"), std::string::npos) << walked_human.out;
  // The same file named explicitly: 1.
  const CliRun bad = run_cli(db() + "import " + quote((dir_ / "bad" / "notes.txt").string()) + " --json");
  EXPECT_EQ(bad.status, 1);
  EXPECT_EQ(json_int(bad.out, "failed"), 1);
  EXPECT_EQ(json_int(bad.out, "not_dicom"), 0);
  EXPECT_TRUE(json_has(bad.out, "\"path\":\"" + fs::weakly_canonical(dir_ / "bad" / "notes.txt").string() + "\""));
  EXPECT_TRUE(json_has(bad.out, "not a DICOM file")) << bad.out;

  // A conflict (same SOP Instance UID, other pixels): 1, both files named, nothing replaced.
  td::DicomSpec twin;
  twin.phantom.rows = twin.phantom.columns = 64;
  twin.phantom.seed = 99;
  twin.sop_instance_uid = "1.2.826.0.1.3680043.10.998.4.0";  // the UID of good/IM00000.dcm
  twin.study_instance_uid = "1.2.826.0.1.3680043.10.998.2.0";
  twin.series_instance_uid = "1.2.826.0.1.3680043.10.998.3.0";
  td::write_dicom(dir_ / "twin" / "x.dcm", twin);
  const CliRun conflict = run_cli(db() + "import " + quote((dir_ / "twin").string()) + " --json");
  EXPECT_EQ(conflict.status, 1);
  EXPECT_EQ(json_int(conflict.out, "conflicts"), 1);
  EXPECT_TRUE(json_has(conflict.out, "\"sop_instance_uid\":\"1.2.826.0.1.3680043.10.998.4.0\"")) << conflict.out;
  EXPECT_TRUE(json_has(conflict.out, "\"existing_path\":\"" + fs::weakly_canonical(dir_ / "good" / "IM00000.dcm").string()))
      << conflict.out;
  const CliRun human = run_cli(db() + "import " + quote((dir_ / "twin").string()));
  EXPECT_EQ(human.status, 1);
  EXPECT_TRUE(json_has(human.out, "conflict: " + fs::weakly_canonical(dir_ / "twin" / "x.dcm").string() +
                                      " (1.2.826.0.1.3680043.10.998.4.0)"))
      << human.out;

  // A catalog that cannot be opened: 3.
  fs::create_directories(dir_ / "folder.db");
  EXPECT_EQ(run_cli("--db " + quote((dir_ / "folder.db").string()) + " import " + quote((dir_ / "good").string())).status, 3);
}

// Starts hilum-cli with `args` (no shell); standard output to `out` (else /dev/null), standard
// error to /dev/null.
pid_t spawn_cli(const std::vector<std::string>& args, const fs::path& out = {}) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int null = ::open("/dev/null", O_WRONLY);
    const int stdout_fd = out.empty() ? null : ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (null >= 0) ::dup2(null, STDERR_FILENO);
    if (stdout_fd >= 0) ::dup2(stdout_fd, STDOUT_FILENO);
    std::vector<char*> argv;
    std::string program = HILUM_CLI;
    argv.push_back(program.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(HILUM_CLI, argv.data());
    ::_exit(127);
  }
  return pid;
}

// Instances in the catalog as another process sees them (0 while it does not exist yet).
long long visible_instances(const fs::path& db) {
  if (!fs::exists(db)) return 0;
  auto c = hilum::app::Catalog::open(db, hilum::app::Catalog::Mode::ReadOnly);
  if (!c) return 0;
  auto n = c->count_instances();
  return n ? n.value() : 0;
}

TEST_F(CliImport, KilledMidwayLeavesAConsistentCatalogAndTheNextRunFinishesTheJob) {
  constexpr int kFiles = 300;
  const auto sops = write_images(dir_ / "in", kFiles, 3, 128);
  const std::set<std::string> expected(sops.begin(), sops.end());

  const pid_t pid = spawn_cli({"--db", db_.string(), "import", (dir_ / "in").string(), "--jobs", "2"});
  ASSERT_GT(pid, 0);
  // Kill it as soon as the first batch is committed.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (visible_instances(db_) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the import finished before it could be killed (exit status " << WEXITSTATUS(status) << ")";

  std::size_t committed = 0;
  {
    auto c = hilum::app::Catalog::open(db_);
    ASSERT_TRUE(c.ok()) << c.error().message;
    auto check = c->integrity_check();
    ASSERT_TRUE(check.ok());
    EXPECT_EQ(check.value(), "ok");
    auto list = c->list_instances();
    ASSERT_TRUE(list.ok());
    committed = list->size();
    EXPECT_GT(committed, 0u);
    EXPECT_LT(committed, static_cast<std::size_t>(kFiles));
    // Every row is complete: the file, its hash, its geometry and its thumbnail.
    for (const auto& im : list.value()) {
      EXPECT_EQ(expected.count(im.sop_instance_uid), 1u) << im.sop_instance_uid;
      EXPECT_EQ(im.content_hash, hilum::app::sha256_file(im.path).value()) << im.path;
      EXPECT_EQ(im.rows, 128);
      EXPECT_EQ(im.columns, 128);
      EXPECT_EQ(static_cast<std::uintmax_t>(im.file_size), fs::file_size(im.path));
      EXPECT_FALSE(im.thumbnail_png.empty());
      EXPECT_FALSE(im.study_instance_uid.empty());
    }
    // The interrupted job's finished items are exactly the catalogued files.
    hilum::app::ImportOptions cli_options;
    auto job = c->unfinished_job("import", hilum::app::import_job_params({dir_ / "in"}, cli_options));
    ASSERT_TRUE(job.ok());
    ASSERT_TRUE(job->has_value());
    EXPECT_EQ(job->value().status, hilum::app::JobStatus::Running);
    auto items = c->job_items(job->value().id, false);
    ASSERT_TRUE(items.ok());
    EXPECT_EQ(items->size(), static_cast<std::size_t>(kFiles));
    std::set<std::string> imported_paths;
    for (const auto& item : items.value()) {
      if (item.status != hilum::app::JobItemStatus::Pending) {
        EXPECT_EQ(item.status, hilum::app::JobItemStatus::Imported) << item.path;
        imported_paths.insert(item.path);
      }
    }
    std::set<std::string> catalogued_paths;
    for (const auto& im : list.value()) catalogued_paths.insert(im.path);
    EXPECT_EQ(imported_paths, catalogued_paths);
  }

  // Running the same import again finishes the job: each file imported exactly once.
  const CliRun again = run_cli(db() + "import " + quote((dir_ / "in").string()) + " --jobs 2 --json");
  EXPECT_EQ(again.status, 0) << again.out;
  EXPECT_TRUE(json_has(again.out, "\"resumed\":true")) << again.out;
  EXPECT_EQ(json_int(again.out, "files"), kFiles);
  EXPECT_EQ(json_int(again.out, "imported"), static_cast<long long>(kFiles - committed));
  EXPECT_EQ(json_int(again.out, "already_present"), 0);
  EXPECT_EQ(json_int(again.out, "failed"), 0);
  EXPECT_EQ(json_int(again.out, "pending"), 0);
  EXPECT_EQ(json_int(again.out, "imported", "earlier"), static_cast<long long>(committed));
  const CliRun listed = run_cli(db() + "list --json");
  const auto l = lines(listed.out);
  ASSERT_EQ(l.size(), static_cast<std::size_t>(kFiles));
  std::set<std::string> got;
  const std::regex uid_re("\"sop_instance_uid\":\"([0-9.]+)\"");
  for (const auto& line : l) {
    std::smatch m;
    ASSERT_TRUE(std::regex_search(line, m, uid_re)) << line;
    got.insert(m[1]);
  }
  EXPECT_EQ(got, expected);
}

// Ctrl-C: the files read so far are committed, the job is marked interrupted, exit status 130;
// running the same import again finishes it.
TEST_F(CliImport, InterruptCommitsWhatWasReadAndExits130) {
  constexpr int kFiles = 300;
  write_images(dir_ / "in", kFiles, 3, 128);
  const fs::path out = dir_ / "out.json";
  const pid_t pid = spawn_cli({"--db", db_.string(), "import", (dir_ / "in").string(), "--jobs", "2", "--json"}, out);
  ASSERT_GT(pid, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (visible_instances(db_) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_EQ(::kill(pid, SIGINT), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 130);

  const std::string summary = hilum::test::lines(file_text(out)).at(0);
  EXPECT_TRUE(json_has(summary, "\"interrupted\":true")) << summary;
  const auto imported = json_int(summary, "imported");
  const auto pending = json_int(summary, "pending");
  ASSERT_TRUE(imported && pending);
  EXPECT_GE(*imported, 64);
  EXPECT_GT(*pending, 0);
  EXPECT_EQ(*imported + *pending, kFiles);
  {
    auto c = hilum::app::Catalog::open(db_);
    ASSERT_TRUE(c.ok());
    auto n = c->count_instances();
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(n.value(), *imported);
    auto job = c->job(*json_int(summary, "job_id"));
    ASSERT_TRUE(job.ok());
    EXPECT_EQ(job->status, hilum::app::JobStatus::Interrupted);
  }

  const CliRun again = run_cli(db() + "import " + quote((dir_ / "in").string()) + " --json");
  EXPECT_EQ(again.status, 0);
  EXPECT_TRUE(json_has(again.out, "\"resumed\":true")) << again.out;
  EXPECT_EQ(json_int(again.out, "imported"), *pending);
  EXPECT_EQ(json_int(again.out, "imported", "earlier"), *imported);
  EXPECT_EQ(lines(run_cli(db() + "list --json").out).size(), static_cast<std::size_t>(kFiles));
}

}  // namespace
