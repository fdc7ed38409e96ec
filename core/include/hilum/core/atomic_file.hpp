// Hilum core: writing a file so that a crash never leaves a half-written one behind (temporary
// file beside the target, written, fsync'ed, renamed over it). POSIX; header-only.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <string_view>
#include <system_error>

namespace hilum::core {

// A fresh name for a temporary file in the same folder as `path` (so the rename stays atomic).
inline std::filesystem::path temporary_path_beside(const std::filesystem::path& path) {
  std::random_device rd;
  return path.parent_path() /
         ("." + path.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
}

// Renames a finished temporary file over `path`; removes it on failure. Returns "" or the reason.
inline std::string replace_with_temporary(const std::filesystem::path& tmp, const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (!ec) return {};
  std::filesystem::remove(tmp, ec);
  return "cannot move " + tmp.string() + " to " + path.string() + ": " + ec.message();
}

// Writes `content` to `path` atomically and durably. Returns "" or the reason.
inline std::string write_file_atomically(const std::filesystem::path& path, std::string_view content) {
  const std::filesystem::path tmp = temporary_path_beside(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return "cannot create " + tmp.string() + ": " + std::strerror(errno);
  std::string error;
  std::size_t written = 0;
  while (written < content.size()) {
    const ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      error = "cannot write " + tmp.string() + ": " + std::strerror(errno);
      break;
    }
    written += static_cast<std::size_t>(n);
  }
  if (error.empty() && ::fsync(fd) != 0) error = "cannot flush " + tmp.string() + ": " + std::strerror(errno);
  if (::close(fd) != 0 && error.empty()) error = "cannot close " + tmp.string() + ": " + std::strerror(errno);
  if (!error.empty()) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    return error;
  }
  return replace_with_temporary(tmp, path);
}

}  // namespace hilum::core
