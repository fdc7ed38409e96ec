// Helpers shared by the objects Hilum writes (structured reports, attention maps): DICOM date-times
// and the atomic write of a Part 10 file.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>

#include <fcntl.h>
#include <unistd.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcfilefo.h>

#include "hilum/core/atomic_file.hpp"
#include "internal.hpp"

namespace fs = std::filesystem;

namespace hilum::dicom::detail {

std::string to_dicom_datetime(const std::string& iso) {
  if (iso.size() < 19 || iso[4] != '-' || iso[7] != '-' || iso[10] != 'T' || iso[13] != ':' || iso[16] != ':') return {};
  std::string dt = iso.substr(0, 4) + iso.substr(5, 2) + iso.substr(8, 2) + iso.substr(11, 2) + iso.substr(14, 2) + iso.substr(17, 2);
  if (!std::all_of(dt.begin(), dt.end(), [](char c) { return c >= '0' && c <= '9'; })) return {};
  std::size_t i = 19;
  if (i < iso.size() && iso[i] == '.') {
    std::string frac;
    for (++i; i < iso.size() && std::isdigit(static_cast<unsigned char>(iso[i])) && frac.size() < 6; ++i) frac += iso[i];
    if (!frac.empty()) dt += "." + frac;
  }
  return dt;  // UTC: the dataset says so once (Timezone Offset From UTC "+0000")
}

std::string now_iso() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Result<core::Done> save_atomically(DcmFileFormat& file, const fs::path& out) {
  const fs::path tmp = core::temporary_path_beside(out);
  const OFCondition c = file.saveFile(OFFilename(tmp.c_str()), EXS_LittleEndianExplicit);
  if (c.bad()) {
    std::error_code ec;
    fs::remove(tmp, ec);
    return Error{ErrorKind::Io, "cannot write " + out.string() + ": " + c.text()};
  }
  const int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  const bool synced = fd >= 0 && ::fsync(fd) == 0;
  const int error = errno;
  if (fd >= 0) ::close(fd);
  if (!synced) {
    std::error_code ec;
    fs::remove(tmp, ec);
    return Error{ErrorKind::Io, "cannot write " + out.string() + ": " + std::strerror(error)};
  }
  if (auto moved = core::replace_with_temporary(tmp, out); !moved) return Error{ErrorKind::Io, moved.error().message};
  return core::Done{};
}

}  // namespace hilum::dicom::detail
