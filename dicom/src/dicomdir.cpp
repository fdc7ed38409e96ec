// DICOMDIR media: walk PATIENT -> STUDY -> SERIES -> IMAGE records and resolve Referenced File IDs.
#include "hilum/dicom/dicomdir.hpp"
#include "internal.hpp"

#include <algorithm>
#include <cctype>
#include <iterator>
#include <system_error>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcdicdir.h>
#include <dcmtk/dcmdata/dcdirrec.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcuid.h>

#include "hilum/dicom/reader.hpp"

namespace fs = std::filesystem;

namespace hilum::dicom {
namespace {

std::string str(DcmItem& item, const DcmTagKey& tag) {
  OFString v;
  if (item.findAndGetOFStringArray(tag, v).bad()) return {};
  std::string s = v.c_str();
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  while (!s.empty() && s.front() == ' ') s.erase(s.begin());
  return s;
}

bool iequal(const std::string& a, const std::string& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// Resolves "IMAGES\IM000001" below `base`, matching each component case-insensitively
// (media written on one system are often read on another).
fs::path resolve(const fs::path& base, const std::string& file_id, bool& exists) {
  fs::path p = base;
  std::size_t start = 0;
  exists = true;
  while (start <= file_id.size()) {
    const std::size_t end = file_id.find('\\', start);
    const std::string part = file_id.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!part.empty()) {
      fs::path candidate = p / part;
      std::error_code ec;
      if (!exists || fs::exists(candidate, ec)) {
        p = candidate;
      } else {
        bool found = false;
        for (fs::directory_iterator it(p, ec), last; !ec && it != last; it.increment(ec)) {
          if (iequal(it->path().filename().string(), part)) { p = it->path(); found = true; break; }
        }
        if (!found) { p = candidate; exists = false; }
      }
    }
    if (end == std::string::npos) break;
    start = end + 1;
  }
  std::error_code ec;
  exists = exists && fs::is_regular_file(p, ec);
  return p;
}

// Why a Referenced File ID cannot be followed by itself: components that climb ("..") or that
// are not one name. Empty when it is acceptable.
std::string unsafe_file_id(const std::string& file_id) {
  std::size_t start = 0;
  while (start <= file_id.size()) {
    const std::size_t end = file_id.find('\\', start);
    const std::string part = file_id.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (part == "." || part == "..") return "its component '" + part + "' is not allowed (PS3.10 file IDs name files below the DICOMDIR)";
    if (part.find('/') != std::string::npos || part.find('\0') != std::string::npos)
      return "its component '" + part + "' is not a single file name";
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return {};
}

// True when `path` is `root` or below it, comparing whole components (so /media/cd2 is not
// inside /media/cd).
bool within(const fs::path& root, const fs::path& path) {
  auto r = root.begin();
  auto p = path.begin();
  for (; r != root.end(); ++r, ++p) {
    if (r->empty() && std::next(r) == root.end()) break;  // a trailing separator
    if (p == path.end() || *p != *r) return false;
  }
  return true;
}

}  // namespace

bool is_dicomdir(const fs::path& path) {
  register_codecs();
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  try {  // DCMTK's parser can throw on hostile input (internal.hpp, guarded)
    DcmFileFormat ff;
    if (ff.loadFile(path.c_str(), EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_metaOnly).bad()) return false;
    return str(*ff.getMetaInfo(), DCM_MediaStorageSOPClassUID) == UID_MediaStorageDirectoryStorage;
  } catch (...) {
    return false;
  }
}

static Result<std::vector<DicomdirImage>> read_dicomdir_unguarded(const fs::path& path) {
  register_codecs();
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return Error{ErrorKind::FileNotFound, "file not found: " + path.string()};
  if (!is_dicomdir(path)) {
    return Error{ErrorKind::NotDicom, "not a DICOMDIR (no Media Storage Directory meta header): " + path.string()};
  }
  DcmDicomDir dir(path.c_str());
  if (dir.error().bad()) {
    return Error{ErrorKind::Corrupt, std::string("cannot read DICOMDIR: ") + dir.error().text()};
  }
  const fs::path base = fs::absolute(path, ec).parent_path();
  // The folder the references must stay in, its symbolic links resolved.
  const fs::path root = fs::weakly_canonical(base, ec);
  if (ec) return Error{ErrorKind::FileNotFound, "cannot resolve the folder of " + path.string() + ": " + ec.message()};
  std::vector<DicomdirImage> images;
  // Walk the whole record tree: IMAGE records anywhere below the root, their patient / study /
  // series attributes taken from the nearest ancestor that has them. This also copes with media
  // whose upper records have a wrong or private type.
  std::vector<DcmDirectoryRecord*> chain;
  const auto from_ancestors = [&chain](const DcmTagKey& tag) {
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      std::string v = str(**it, tag);
      if (!v.empty()) return v;
    }
    return std::string();
  };
  const auto visit = [&](auto&& self, DcmDirectoryRecord& record, int depth) -> void {
    if (depth > 16) return;  // PATIENT/STUDY/SERIES/IMAGE is 4 deep; a deeper tree is damaged
    for (unsigned long i = 0; i < record.cardSub(); ++i) {
      DcmDirectoryRecord* sub = record.getSub(i);
      if (sub == nullptr) continue;
      if (sub->getRecordType() == ERT_Image) {
        const std::string file_id = str(*sub, DCM_ReferencedFileID);
        if (file_id.empty()) continue;
        DicomdirImage out;
        out.patient_id = from_ancestors(DCM_PatientID);
        out.patient_name = from_ancestors(DCM_PatientName);
        out.study_instance_uid = from_ancestors(DCM_StudyInstanceUID);
        out.study_date = from_ancestors(DCM_StudyDate);
        out.study_description = from_ancestors(DCM_StudyDescription);
        out.accession_number = from_ancestors(DCM_AccessionNumber);
        out.series_instance_uid = from_ancestors(DCM_SeriesInstanceUID);
        out.series_number = from_ancestors(DCM_SeriesNumber);
        out.modality = from_ancestors(DCM_Modality);
        out.sop_instance_uid = str(*sub, DCM_ReferencedSOPInstanceUIDInFile);
        out.instance_number = str(*sub, DCM_InstanceNumber);
        out.file_id = file_id;
        const auto refuse = [&](const std::string& why) {
          out.refused = "the Referenced File ID '" + file_id + "' of the DICOMDIR " + path.string() + " is refused: " + why;
          out.file.clear();
          out.file_exists = false;
        };
        if (const std::string unsafe = unsafe_file_id(file_id); !unsafe.empty()) {
          refuse(unsafe);
        } else {
          out.file = resolve(base, file_id, out.file_exists);
          std::error_code rec;
          const fs::path real = fs::weakly_canonical(out.file, rec);
          if (rec) refuse("cannot resolve " + out.file.string() + ": " + rec.message());
          else if (!within(root, real) || real == root)
            refuse("it leads to " + real.string() + ", outside the DICOMDIR's folder " + root.string());
        }
        images.push_back(std::move(out));
        continue;
      }
      chain.push_back(sub);
      self(self, *sub, depth + 1);
      chain.pop_back();
    }
  };
  visit(visit, dir.getRootRecord(), 0);
  return images;
}

Result<std::vector<DicomdirImage>> read_dicomdir(const fs::path& path) {
  return detail::guarded(path, [&] { return read_dicomdir_unguarded(path); });
}

}  // namespace hilum::dicom
