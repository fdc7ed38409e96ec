// Hilum core: writing a file so that a crash never leaves a half-written one behind (temporary
// file beside the target, written, fsync'ed, renamed over it, the folder fsync'ed so that the
// rename is durable too). POSIX; header-only.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "hilum/core/expected.hpp"

namespace hilum::core {

// Why a file operation failed: the errno value (0 when there is none) and a sentence naming the
// file. Each library turns it into its own error (app::ErrorKind::Io, ...).
struct FileError {
  int code = 0;
  std::string message;
};
using FileStatus = Expected<Done, FileError>;

inline FileError file_error(int code, std::string what) {
  return FileError{code, std::move(what) + ": " + std::strerror(code)};
}

// A fresh name for a temporary file in the same folder as `path` (so the rename stays atomic).
inline std::filesystem::path temporary_path_beside(const std::filesystem::path& path) {
  std::random_device rd;
  return path.parent_path() /
         ("." + path.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
}

// Flushes a folder's entries (a rename into it) to the disk: fsync of the folder opened
// O_RDONLY | O_DIRECTORY. A file system that cannot sync a folder (EINVAL) has nothing to flush
// and counts as done.
inline FileStatus fsync_folder(const std::filesystem::path& folder) {
  const std::filesystem::path dir = folder.empty() ? std::filesystem::path(".") : folder;
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return file_error(errno, "cannot open the folder " + dir.string());
  int error = 0;
  while (::fsync(fd) != 0) {
    if (errno == EINTR) continue;
    if (errno != EINVAL) error = errno;
    break;
  }
  ::close(fd);
  if (error != 0) return file_error(error, "cannot flush the folder " + dir.string());
  return Done{};
}

// Flushes a file's data (and the size needed to read them back) to the disk: fdatasync of the
// file opened O_RDONLY.
inline FileStatus fsync_file(const std::filesystem::path& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return file_error(errno, "cannot open " + file.string());
  int error = 0;
  while (::fdatasync(fd) != 0) {
    if (errno == EINTR) continue;
    error = errno;
    break;
  }
  ::close(fd);
  if (error != 0) return file_error(error, "cannot flush " + file.string());
  return Done{};
}

// The folder sync replace_with_temporary calls after its rename: fsync_folder, unless a test
// puts another function here (to see that it is called, or to make it fail).
using FolderSyncFn = FileStatus (*)(const std::filesystem::path& folder);
inline FolderSyncFn folder_sync = &fsync_folder;

// Renames a finished temporary file over `path`, then syncs the folder so that the rename itself
// survives a power loss; removes the temporary file when the rename fails. When only the folder
// sync failed, the new content is in place but may not be durable.
inline FileStatus replace_with_temporary(const std::filesystem::path& tmp, const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    const int code = ec.value();
    std::filesystem::remove(tmp, ec);
    return file_error(code, "cannot move " + tmp.string() + " to " + path.string());
  }
  if (auto synced = folder_sync(path.parent_path()); !synced) {
    FileError error = synced.error();
    error.message += " (after writing " + path.filename().string() + ")";
    return error;
  }
  return Done{};
}

// Writes `content` to `path` atomically and durably.
inline FileStatus write_file_atomically(const std::filesystem::path& path, std::string_view content) {
  const std::filesystem::path tmp = temporary_path_beside(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return file_error(errno, "cannot create " + tmp.string());
  std::optional<FileError> error;
  std::size_t written = 0;
  while (written < content.size()) {
    const ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      error = file_error(errno, "cannot write " + tmp.string());
      break;
    }
    written += static_cast<std::size_t>(n);
  }
  if (!error && ::fsync(fd) != 0) error = file_error(errno, "cannot flush " + tmp.string());
  if (::close(fd) != 0 && !error) error = file_error(errno, "cannot close " + tmp.string());
  if (error) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    return *error;
  }
  return replace_with_temporary(tmp, path);
}

}  // namespace hilum::core
