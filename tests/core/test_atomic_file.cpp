// core::write_file_atomically: the content, nothing left behind, and the folder synced after the
// rename (issue 16, defect 17), seen through core::folder_sync; its failures are values
// (core::FileStatus) naming the file and carrying errno.
#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "hilum/core/atomic_file.hpp"
#include "temp_dir_test.hpp"

namespace fs = std::filesystem;

namespace hilum::test {
namespace {

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string> names(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  return out;
}

// What the folder sync saw: which folder, and the target's content at that moment.
struct SyncLog {
  std::vector<fs::path> folders;
  std::vector<std::string> content_then;
  fs::path watched;
  int answer = 0;
};
SyncLog* g_log = nullptr;

core::FileStatus recording_sync(const fs::path& folder) {
  g_log->folders.push_back(folder);
  g_log->content_then.push_back(read_file(g_log->watched));
  if (g_log->answer != 0) return core::file_error(g_log->answer, "cannot flush the folder " + folder.string());
  return core::Done{};
}

class AtomicFileTest : public TempDirTest {
 protected:
  void TearDown() override {
    core::folder_sync = &core::fsync_folder;
    g_log = nullptr;
    TempDirTest::TearDown();
  }
};

TEST_F(AtomicFileTest, WritesTheContentAndLeavesNoTemporaryFile) {
  const fs::path file = path("state.json");
  ASSERT_TRUE(core::write_file_atomically(file, "{\"epoch\": 1}").ok());
  EXPECT_EQ(read_file(file), "{\"epoch\": 1}");
  ASSERT_TRUE(core::write_file_atomically(file, "{\"epoch\": 2}").ok());
  EXPECT_EQ(read_file(file), "{\"epoch\": 2}");
  EXPECT_EQ(names(dir_), std::vector<std::string>{"state.json"});
  // The real syncs work on an ordinary folder and file, and name what they cannot open.
  EXPECT_TRUE(core::fsync_folder(dir_).ok());
  EXPECT_TRUE(core::fsync_file(file).ok());
  const auto no_folder = core::fsync_folder(path("no-such-folder"));
  ASSERT_FALSE(no_folder.ok());
  EXPECT_EQ(no_folder.error().code, ENOENT);
  EXPECT_NE(no_folder.error().message.find("no-such-folder"), std::string::npos) << no_folder.error().message;
  const auto no_file = core::fsync_file(path("no-such-file"));
  ASSERT_FALSE(no_file.ok());
  EXPECT_EQ(no_file.error().code, ENOENT);
  EXPECT_NE(no_file.error().message.find("no-such-file"), std::string::npos) << no_file.error().message;
}

TEST_F(AtomicFileTest, TheFolderIsSyncedAfterTheRename) {
  SyncLog log;
  log.watched = path("labels.csv");
  g_log = &log;
  core::folder_sync = &recording_sync;
  ASSERT_TRUE(core::write_file_atomically(log.watched, "a,b\r\n").ok());
  ASSERT_EQ(log.folders.size(), 1u) << "the folder was not synced after the rename";
  EXPECT_EQ(log.folders[0], dir_);
  EXPECT_EQ(log.content_then[0], "a,b\r\n") << "the folder was synced before the rename";
  EXPECT_EQ(names(dir_), std::vector<std::string>{"labels.csv"});
}

TEST_F(AtomicFileTest, AFailedFolderSyncIsAnError) {
  SyncLog log;
  log.watched = path("model.json");
  log.answer = EIO;
  g_log = &log;
  core::folder_sync = &recording_sync;
  const auto written = core::write_file_atomically(log.watched, "{}");
  ASSERT_FALSE(written.ok());
  const std::string& error = written.error().message;
  EXPECT_EQ(written.error().code, EIO);
  EXPECT_NE(error.find("cannot flush the folder"), std::string::npos) << error;
  EXPECT_NE(error.find(dir_.string()), std::string::npos) << error;
  EXPECT_NE(error.find("model.json"), std::string::npos) << error;
  EXPECT_EQ(log.folders.size(), 1u);
  // The content is in place (the rename happened), and no temporary file is left.
  EXPECT_EQ(read_file(log.watched), "{}");
  EXPECT_EQ(names(dir_), std::vector<std::string>{"model.json"});
}

// A file that cannot be created (its folder is missing, or is a file) is an error value naming it;
// nothing is written anywhere.
TEST_F(AtomicFileTest, AnUnwritablePathIsAnErrorValue) {
  const auto missing = core::write_file_atomically(path("no-such-folder") / "state.json", "{}");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ENOENT);
  EXPECT_NE(missing.error().message.find("cannot create"), std::string::npos) << missing.error().message;
  EXPECT_NE(missing.error().message.find("no-such-folder"), std::string::npos) << missing.error().message;

  { std::ofstream(path("plain-file")) << "x"; }
  const auto under_a_file = core::write_file_atomically(path("plain-file") / "state.json", "{}");
  ASSERT_FALSE(under_a_file.ok());
  EXPECT_EQ(under_a_file.error().code, ENOTDIR);
  EXPECT_EQ(read_file(path("plain-file")), "x");
  EXPECT_EQ(names(dir_), std::vector<std::string>{"plain-file"});
}

// A rename that fails (the target is a folder that is not empty) removes the temporary file and
// leaves the target as it was.
TEST_F(AtomicFileTest, AFailedRenameLeavesNoTemporaryFile) {
  fs::create_directories(path("target") / "inside");
  const auto written = core::write_file_atomically(path("target"), "{}");
  ASSERT_FALSE(written.ok());
  EXPECT_NE(written.error().code, 0);
  EXPECT_NE(written.error().message.find("cannot move"), std::string::npos) << written.error().message;
  EXPECT_EQ(names(dir_), std::vector<std::string>{"target"});
  EXPECT_TRUE(fs::is_directory(path("target") / "inside"));
}

}  // namespace
}  // namespace hilum::test
