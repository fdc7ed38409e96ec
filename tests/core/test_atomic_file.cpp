// core::write_file_atomically: the content, nothing left behind, and the folder synced after the
// rename (issue 16, defect 17), seen through core::folder_sync.
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

int recording_sync(const fs::path& folder) {
  g_log->folders.push_back(folder);
  g_log->content_then.push_back(read_file(g_log->watched));
  return g_log->answer;
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
  ASSERT_EQ(core::write_file_atomically(file, "{\"epoch\": 1}"), "");
  EXPECT_EQ(read_file(file), "{\"epoch\": 1}");
  ASSERT_EQ(core::write_file_atomically(file, "{\"epoch\": 2}"), "");
  EXPECT_EQ(read_file(file), "{\"epoch\": 2}");
  EXPECT_EQ(names(dir_), std::vector<std::string>{"state.json"});
  // The real folder sync works on an ordinary folder.
  EXPECT_EQ(core::fsync_folder(dir_), 0);
  EXPECT_EQ(core::fsync_folder(path("no-such-folder")), ENOENT);
}

TEST_F(AtomicFileTest, TheFolderIsSyncedAfterTheRename) {
  SyncLog log;
  log.watched = path("labels.csv");
  g_log = &log;
  core::folder_sync = &recording_sync;
  ASSERT_EQ(core::write_file_atomically(log.watched, "a,b\r\n"), "");
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
  const std::string error = core::write_file_atomically(log.watched, "{}");
  EXPECT_NE(error.find("cannot flush the folder"), std::string::npos) << error;
  EXPECT_NE(error.find(dir_.string()), std::string::npos) << error;
  EXPECT_EQ(log.folders.size(), 1u);
  // The content is in place (the rename happened), and no temporary file is left.
  EXPECT_EQ(read_file(log.watched), "{}");
  EXPECT_EQ(names(dir_), std::vector<std::string>{"model.json"});
}

}  // namespace
}  // namespace hilum::test
