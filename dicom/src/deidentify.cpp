// De-identified copies of DICOM files: PS3.15 Annex E, Basic Application Level Confidentiality
// Profile (see deidentify.hpp for what is removed, replaced and kept). Every OFCondition is
// checked and turned into a hilum::dicom::Error here.
#include "hilum/dicom/deidentify.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <random>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcxfer.h>

#include "hilum/core/atomic_file.hpp"
#include "hilum/dicom/reader.hpp"
#include "internal.hpp"

namespace fs = std::filesystem;

namespace hilum::dicom {
namespace {

Error make_error(ErrorKind kind, std::string message) { return Error{kind, std::move(message)}; }

using detail::trim;

std::string upper(std::string s) {
  for (char& c : s) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return s;
}

std::vector<std::string> split_values(const std::string& value) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    const auto end = value.find('\\', start);
    out.push_back(value.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

std::string join_values(const std::vector<std::string>& values) {
  std::string out;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) out += '\\';
    out += values[i];
  }
  return out;
}

std::string tag_text(const DcmTagKey& tag) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "(%04X,%04X)", static_cast<unsigned>(tag.getGroup()),
                static_cast<unsigned>(tag.getElement()));
  return buf;
}


// What happens to one attribute.
enum class Action {
  Keep,         // left as it is (sequences: their items are processed)
  Remove,       // X
  Empty,        // Z: kept with zero length (sequences: without items)
  PatientName,  // D: plan.pseudonym("patient_name", ...)
  PatientId,    // D: plan.pseudonym("patient_id", ...)
  Accession,    // D or Z: plan.pseudonym("accession", ...)
  CodeMeaning,  // D: the code it names, "<Code Value> (<Coding Scheme Designator>)" (free text otherwise)
  ByVr,         // decided by the value representation (UIDs, dates, free text, person names)
};

constexpr std::uint32_t key(std::uint16_t group, std::uint16_t element) {
  return (static_cast<std::uint32_t>(group) << 16) | element;
}

// Attributes of Table E.1-1 (and a few close relatives) that occur in projection radiographs and
// are not already covered by the group and value-representation rules of action_for().
const std::map<std::uint32_t, Action>& attribute_table() {
  static const std::map<std::uint32_t, Action> table = {
      // General Study, Patient Study, General Series, General Equipment, ...
      {key(0x0008, 0x0050), Action::Accession},   // Accession Number
      {key(0x0008, 0x0051), Action::Remove},      // Issuer of Accession Number Sequence
      {key(0x0008, 0x0080), Action::Remove},      // Institution Name
      {key(0x0008, 0x0081), Action::Remove},      // Institution Address
      {key(0x0008, 0x0082), Action::Remove},      // Institution Code Sequence
      {key(0x0008, 0x0090), Action::Empty},       // Referring Physician's Name (Type 2)
      {key(0x0008, 0x0092), Action::Remove},      // Referring Physician's Address
      {key(0x0008, 0x0094), Action::Remove},      // Referring Physician's Telephone Numbers
      {key(0x0008, 0x0096), Action::Remove},      // Referring Physician Identification Sequence
      {key(0x0008, 0x009C), Action::Remove},      // Consulting Physician's Name
      {key(0x0008, 0x009D), Action::Remove},      // Consulting Physician Identification Sequence
      {key(0x0008, 0x0201), Action::Remove},      // Timezone Offset From UTC
      {key(0x0008, 0x0300), Action::Remove},      // Private Data Element Characteristics Sequence
      // Coded entries, in the items of any sequence at any depth (Anatomic Region Sequence and its
      // modifiers, Concept Name Code Sequence, ...): the code is kept; its meaning is text a person
      // may have typed (a name, a story), so it is replaced by the code it names.
      {key(0x0008, 0x0104), Action::CodeMeaning},  // Code Meaning
      {key(0x0008, 0x0119), Action::Keep},         // Long Code Value (UC: a code, not free text)
      {key(0x0008, 0x0120), Action::Keep},         // URN Code Value (UR: a code, not a link)
      {key(0x0008, 0x1010), Action::Remove},      // Station Name
      {key(0x0008, 0x1030), Action::Remove},      // Study Description
      {key(0x0008, 0x1032), Action::Remove},      // Procedure Code Sequence
      {key(0x0008, 0x103E), Action::Remove},      // Series Description
      {key(0x0008, 0x1040), Action::Remove},      // Institutional Department Name
      {key(0x0008, 0x1041), Action::Remove},      // Institutional Department Type Code Sequence
      {key(0x0008, 0x1048), Action::Remove},      // Physician(s) of Record
      {key(0x0008, 0x1049), Action::Remove},      // Physician(s) of Record Identification Sequence
      {key(0x0008, 0x1050), Action::Remove},      // Performing Physician's Name
      {key(0x0008, 0x1052), Action::Remove},      // Performing Physician Identification Sequence
      {key(0x0008, 0x1060), Action::Remove},      // Name of Physician(s) Reading Study
      {key(0x0008, 0x1062), Action::Remove},      // Physician(s) Reading Study Identification Sequence
      {key(0x0008, 0x1070), Action::Remove},      // Operators' Name
      {key(0x0008, 0x1072), Action::Remove},      // Operator Identification Sequence
      {key(0x0008, 0x1080), Action::Remove},      // Admitting Diagnoses Description
      {key(0x0008, 0x1084), Action::Remove},      // Admitting Diagnoses Code Sequence
      {key(0x0008, 0x1110), Action::Remove},      // Referenced Study Sequence
      {key(0x0008, 0x1111), Action::Remove},      // Referenced Performed Procedure Step Sequence
      {key(0x0008, 0x1120), Action::Remove},      // Referenced Patient Sequence
      {key(0x0008, 0x2111), Action::Remove},      // Derivation Description
      {key(0x0008, 0x4000), Action::Remove},      // Identifying Comments
      // Acquisition and equipment.
      {key(0x0018, 0x0010), Action::Remove},      // Contrast/Bolus Agent
      {key(0x0018, 0x1000), Action::Remove},      // Device Serial Number
      {key(0x0018, 0x1003), Action::Remove},      // Device ID
      {key(0x0018, 0x1004), Action::Remove},      // Plate ID
      {key(0x0018, 0x1005), Action::Remove},      // Generator ID
      {key(0x0018, 0x1007), Action::Remove},      // Cassette ID
      {key(0x0018, 0x1008), Action::Remove},      // Gantry ID
      {key(0x0018, 0x1009), Action::Remove},      // Unique Device Identifier
      {key(0x0018, 0x100A), Action::Remove},      // UDI Sequence
      {key(0x0018, 0x1020), Action::Remove},      // Software Versions
      {key(0x0018, 0x1030), Action::Remove},      // Protocol Name
      {key(0x0018, 0x1400), Action::Remove},      // Acquisition Device Processing Description
      {key(0x0018, 0x4000), Action::Remove},      // Acquisition Comments
      {key(0x0018, 0x700A), Action::Remove},      // Detector ID
      {key(0x0018, 0x9185), Action::Remove},      // Respiratory Motion Compensation Technique Description
      {key(0x0018, 0x9367), Action::Remove},      // X-Ray Source ID
      {key(0x0018, 0x9371), Action::Remove},      // X-Ray Detector ID
      {key(0x0018, 0x9373), Action::Remove},      // X-Ray Detector Label
      {key(0x0018, 0x9424), Action::Remove},      // Acquisition Protocol Description
      {key(0x0018, 0xA003), Action::Remove},      // Contribution Description
      // Study and image identification, comments.
      {key(0x0020, 0x0010), Action::Empty},       // Study ID (Type 2)
      {key(0x0020, 0x3401), Action::Remove},      // Modifying Device ID
      {key(0x0020, 0x3404), Action::Remove},      // Modifying Device Manufacturer
      {key(0x0020, 0x3406), Action::Remove},      // Modified Image Description
      {key(0x0020, 0x4000), Action::Remove},      // Image Comments
      {key(0x0020, 0x9158), Action::Remove},      // Frame Comments
      {key(0x0028, 0x4000), Action::Remove},      // Image Presentation Comments
      // Graphic annotations and their creators (text drawn over the image).
      {key(0x0070, 0x0001), Action::Remove},      // Graphic Annotation Sequence
      {key(0x0070, 0x0084), Action::Remove},      // Content Creator's Name
      {key(0x0070, 0x0086), Action::Remove},      // Content Creator's Identification Code Sequence
  };
  return table;
}

// UI attributes that name classes, syntaxes or coding schemes rather than instances: kept.
bool is_kept_uid_attribute(std::uint32_t k) {
  switch (k) {
    case key(0x0002, 0x0002):  // Media Storage SOP Class UID
    case key(0x0002, 0x0010):  // Transfer Syntax UID
    case key(0x0004, 0x1510):  // Referenced SOP Class UID in File
    case key(0x0004, 0x1512):  // Referenced Transfer Syntax UID in File
    case key(0x0008, 0x0016):  // SOP Class UID
    case key(0x0008, 0x001A):  // Related General SOP Class UID
    case key(0x0008, 0x001B):  // Original Specialized SOP Class UID
    case key(0x0008, 0x0062):  // SOP Classes in Study
    case key(0x0008, 0x010C):  // Coding Scheme UID
    case key(0x0008, 0x0117):  // Context UID
    case key(0x0008, 0x0118):  // Mapping Resource UID
    case key(0x0008, 0x1150):  // Referenced SOP Class UID
    case key(0x0008, 0x1162):  // (retired) Referenced SOP Class UID in File
      return true;
    default:
      return false;
  }
}

// Patient module attributes kept (Retain Patient Characteristics Option) or replaced; every other
// attribute of group 0010 is removed.
Action patient_group_action(std::uint16_t element) {
  switch (element) {
    case 0x0010: return Action::PatientName;
    case 0x0020: return Action::PatientId;
    case 0x0030: return Action::Empty;  // Patient's Birth Date (Type 2)
    case 0x0040:                        // Patient's Sex
    case 0x0200:                        // Quality Control Subject
    case 0x1010:                        // Patient's Age
    case 0x1020:                        // Patient's Size
    case 0x1030:                        // Patient's Weight
    case 0x2201:                        // Patient Species Description
    case 0x2202:                        // Patient Species Code Sequence
    case 0x2203:                        // Patient's Sex Neutered
      return Action::Keep;
    default:
      return Action::Remove;
  }
}

Action action_for(const DcmTagKey& tag) {
  const std::uint16_t g = tag.getGroup();
  const std::uint16_t e = tag.getElement();
  if ((g & 1u) != 0) return Action::Remove;                               // private attributes and creators
  if (e == 0x0000) return Action::Remove;                                 // group lengths (recomputed)
  if ((g & 0xFF00u) == 0x5000u || (g & 0xFF00u) == 0x6000u) return Action::Remove;  // curves, overlays
  switch (g) {
    case 0x0010: return patient_group_action(e);
    case 0x0012: return Action::Remove;  // clinical trial and earlier de-identification: replaced below
    case 0x0032: return Action::Remove;  // study scheduling, requesting physician, study comments
    case 0x0038: return Action::Remove;  // visit: admission ID, patient location, visit comments
    case 0x0040:                         // procedure steps, requests, SR content, person names
      return e == 0x0555 ? Action::Empty : Action::Remove;  // Acquisition Context Sequence (Type 2)
    case 0x0088: return Action::Remove;  // Icon Image Sequence, storage media file-set
    case 0x0400: return Action::Remove;  // digital signatures, Original Attributes Sequence
    case 0x2030: return Action::Remove;  // print annotations (Text String)
    case 0x4000: return Action::Remove;  // (retired) arbitrary text, text comments
    case 0x4008: return Action::Remove;  // (retired) results: interpretations, physicians
    case 0xFFFA: return Action::Remove;  // Digital Signatures Sequence
    default: break;
  }
  const auto& table = attribute_table();
  const auto it = table.find(key(g, e));
  if (it != table.end()) return it->second;
  return Action::ByVr;
}

// The state of one run over a data set.
class Deidentifier {
 public:
  explicit Deidentifier(const DeidentifyPlan& plan) : plan_(plan) {}

  // Processes every attribute of `item` (recursively); returns the first error.
  std::optional<Error> process(DcmItem& item) {
    for (unsigned long i = item.card(); i-- > 0;) {
      DcmElement* element = item.getElement(i);
      if (element == nullptr) return make_error(ErrorKind::Corrupt, "cannot walk the data set");
      const DcmTagKey tag = element->getTag();
      Action action = action_for(tag);
      // The VR that decides is also the one apply() acts by: a Photometric Interpretation encoded
      // as UI was kept by the rule of its CS and then given a UID pseudonym by that of its UI
      // (found by fuzzing).
      const DcmEVR vr = deciding_vr(tag, element->ident());
      if (tag == DCM_PixelData) action = Action::Keep;
      if (action == Action::ByVr) action = vr_action(vr);
      if (auto error = apply(item, i, *element, action, vr)) return error;
    }
    return std::nullopt;
  }

  [[nodiscard]] std::optional<Error> error() const { return error_; }

 private:
  // The value representation whose rule decides an attribute left to it: the one it was encoded
  // with, but in group 0028 (image pixel and presentation: no free text), the data dictionary's, so
  // that a Photometric Interpretation encoded as ST (found by fuzzing) is kept as the CS it is, and
  // the copy reads as the original. An attribute the dictionary does not know keeps its own VR, and
  // so does a sequence or an attribute the dictionary calls one: what is walked as items is what
  // was read as items.
  static DcmEVR deciding_vr(const DcmTagKey& tag, DcmEVR encoded) {
    if (tag.getGroup() != 0x0028 || encoded == EVR_SQ) return encoded;
    const DcmEVR dictionary = DcmTag(tag).getEVR();
    if (dictionary == EVR_SQ) return encoded;
    return dictionary == EVR_UNKNOWN || dictionary == EVR_UNKNOWN2B || dictionary == EVR_UN ? encoded : dictionary;
  }

  static Action vr_action(DcmEVR vr) {
    switch (vr) {
      case EVR_PN:  // every person name but the patient's: physicians, operators, observers
      case EVR_LT:  // free text
      case EVR_ST:
      case EVR_UT:
      case EVR_UC:
      case EVR_AE:  // application entity titles (stations)
      case EVR_UR:  // URIs
      case EVR_UN:  // unknown content
        return Action::Remove;
      default:
        return Action::ByVr;  // UI, DA, DT, TM, SQ: handled in apply(); the rest is kept
    }
  }

  std::optional<Error> apply(DcmItem& item, unsigned long index, DcmElement& element, Action action, DcmEVR vr) {
    switch (action) {
      case Action::Keep:
        if (vr == EVR_SQ) return process_sequence(static_cast<DcmSequenceOfItems&>(element));
        return std::nullopt;
      case Action::Remove: {
        DcmElement* removed = item.remove(index);
        if (removed == nullptr) return make_error(ErrorKind::Corrupt, "cannot remove " + tag_text(element.getTag()));
        delete removed;
        return std::nullopt;
      }
      case Action::Empty:
        if (vr == EVR_SQ) return checked(element.clear(), "empty", element);
        return checked(element.putString(""), "empty", element);
      case Action::PatientName:
      case Action::PatientId:
      case Action::Accession: {
        DcmElement* target = &element;
        if (auto error = as_text_element(item, index, target)) return error;
        if (action == Action::PatientName) return replace_with_pseudonym(*target, "patient_name", 64, false);
        if (action == Action::PatientId) return replace_with_pseudonym(*target, "patient_id", 64, false);
        return replace_with_pseudonym(*target, "accession", 16, true);
      }
      case Action::CodeMeaning:
        return replace_code_meaning(item, element);
      case Action::ByVr:
        break;
    }
    switch (vr) {
      case EVR_SQ:
        return process_sequence(static_cast<DcmSequenceOfItems&>(element));
      case EVR_UI:
        return replace_uids(element);
      case EVR_DA:
        return shift_dates(element, false);
      case EVR_DT:
        return shift_dates(element, true);
      case EVR_TM:
        if (plan_.date_shift_days) return std::nullopt;
        return checked(element.putString(""), "empty", element);
      default:
        return std::nullopt;
    }
  }

  std::optional<Error> process_sequence(DcmSequenceOfItems& sequence) {
    for (unsigned long i = 0; i < sequence.card(); ++i) {
      DcmItem* child = sequence.getItem(i);
      if (child == nullptr) return make_error(ErrorKind::Corrupt, "cannot read an item of " + tag_text(sequence.getTag()));
      if (auto error = process(*child)) return error;
    }
    return std::nullopt;
  }

  static std::optional<Error> checked(const OFCondition& cond, const char* what, const DcmElement& element) {
    if (cond.good()) return std::nullopt;
    return make_error(ErrorKind::Corrupt, std::string("cannot ") + what + " " + tag_text(element.getTag()) + ": " + cond.text());
  }

  // The whole (trimmed) value; nothing when it cannot be read, which callers treat as an error:
  // a value that cannot be read cannot be checked, so it is never left in place.
  static std::optional<std::string> value_of(DcmElement& element) {
    if (element.getLength() == 0) return std::string();
    OFString value;
    if (element.getOFStringArray(value).bad()) return std::nullopt;
    return trim(value.c_str());
  }

  static Error unreadable(const DcmElement& element) {
    return make_error(ErrorKind::Corrupt, "cannot read the value of " + tag_text(element.getTag()));
  }

  // The plan's mapping, with exceptions from it turned into errors.
  std::optional<std::string> call_pseudonym(const std::string& kind, const std::string& original) {
    try {
      return plan_.pseudonym(kind, original);
    } catch (const std::exception& e) {
      error_ = make_error(ErrorKind::Unsupported, "pseudonym mapping failed for " + kind + ": " + e.what());
    } catch (...) {
      error_ = make_error(ErrorKind::Unsupported, "pseudonym mapping failed for " + kind);
    }
    return std::nullopt;
  }

  // An element whose VR in the file is not a text VR (a damaged or non-standard VR read as bytes) is
  // replaced by one of its dictionary VR holding the same text, so that a pseudonym can be written
  // into it (found by fuzzing: the Patient ID became the bytes of its pseudonym read as hex).
  std::optional<Error> as_text_element(DcmItem& item, unsigned long index, DcmElement*& element) {
    if (element->isaString()) return std::nullopt;
    const DcmTagKey tag = element->getTag();
    OFString bytes;
    Uint8* raw = nullptr;
    if (element->getLength() > 0 && element->getUint8Array(raw).good() && raw != nullptr) {
      bytes.assign(reinterpret_cast<const char*>(raw), element->getLength());
    }
    delete item.remove(index);
    const std::string text = trim(std::string(bytes.c_str(), bytes.length()).c_str());
    if (item.putAndInsertString(tag, text.c_str()).bad() || item.findAndGetElement(tag, element).bad() || element == nullptr) {
      return make_error(ErrorKind::Corrupt, "cannot rewrite " + tag_text(tag) + " with its standard VR");
    }
    return std::nullopt;
  }

  std::optional<Error> replace_with_pseudonym(DcmElement& element, const std::string& kind, std::size_t max_length,
                                              bool empty_when_unfit) {
    const auto read = value_of(element);
    if (!read) return unreadable(element);
    const std::string& original = *read;
    if (kind == "accession" && original.empty()) return std::nullopt;
    auto mapped = call_pseudonym(kind, original);
    if (!mapped) return error_;
    std::string value = *mapped;
    const bool fits = value.size() <= max_length && value.find('\\') == std::string::npos &&
                      std::none_of(value.begin(), value.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; });
    if (!fits) {
      if (!empty_when_unfit) {
        return make_error(ErrorKind::Unsupported, "the pseudonym for " + kind + " does not fit " + tag_text(element.getTag()) +
                                                      " (at most " + std::to_string(max_length) +
                                                      " characters, no backslash or control characters)");
      }
      value.clear();
    }
    if (!original.empty() && value == original) {
      return make_error(ErrorKind::Unsupported, "the pseudonym for " + kind + " equals the original value");
    }
    return checked(element.putString(value.c_str()), "replace", element);
  }

  // The code an item's Code Meaning stands for, as its meaning: "51185008 (SCT)"; empty when the
  // item names no code. The code's own attributes are kept by the table, whatever their order.
  static std::optional<Error> replace_code_meaning(DcmItem& item, DcmElement& element) {
    OFString code, scheme;
    for (const DcmTagKey& tag : {DCM_CodeValue, DCM_LongCodeValue, DCM_URNCodeValue}) {
      if (item.findAndGetOFStringArray(tag, code).good() && !code.empty()) break;
      code.clear();
    }
    (void)item.findAndGetOFStringArray(DCM_CodingSchemeDesignator, scheme);
    std::string meaning = trim(code.c_str());
    if (!meaning.empty() && !trim(scheme.c_str()).empty()) meaning += " (" + trim(scheme.c_str()) + ")";
    if (meaning.size() > 64) meaning.clear();  // LO holds 64 characters
    return checked(element.putString(meaning.c_str()), "replace", element);
  }

  std::optional<Error> replace_uids(DcmElement& element) {
    const auto read = value_of(element);
    if (!read) return unreadable(element);
    const std::string& whole = *read;
    if (whole.empty()) return std::nullopt;
    const DcmTagKey tag = element.getTag();
    if (is_kept_uid_attribute(key(tag.getGroup(), tag.getElement()))) return std::nullopt;
    std::vector<std::string> values = split_values(whole);
    for (std::string& v : values) {
      v = trim(v);
      // The standard's own registry (transfer syntaxes, SOP classes, coding schemes, ...) is kept.
      if (v.rfind("1.2.840.10008.", 0) == 0) continue;
      auto cached = uids_.find(v);
      if (cached == uids_.end()) {
        auto mapped = call_pseudonym("uid", v);
        if (!mapped) return error_;
        if (!is_valid_uid(*mapped)) {
          return make_error(ErrorKind::Unsupported, "the pseudonym for UID " + tag_text(tag) + " is not a valid UID: '" + *mapped + "'");
        }
        if (*mapped == v) return make_error(ErrorKind::Unsupported, "the pseudonym for UID " + tag_text(tag) + " equals the original");
        cached = uids_.emplace(v, *mapped).first;
      }
      v = cached->second;
    }
    return checked(element.putString(join_values(values).c_str()), "replace", element);
  }

  // DA: YYYYMMDD (or YYYY.MM.DD); DT: YYYYMMDD[HHMMSS[.FFFFFF]][&ZZXX], the offset dropped.
  std::optional<Error> shift_dates(DcmElement& element, bool datetime) {
    const auto read = value_of(element);
    if (!read) return unreadable(element);
    const std::string& whole = *read;
    if (whole.empty()) return std::nullopt;
    if (!plan_.date_shift_days) return checked(element.putString(""), "empty", element);
    std::vector<std::string> values = split_values(whole);
    bool ok = true;
    for (std::string& v : values) {
      v = trim(v);
      std::string date = v;
      std::string rest;
      if (datetime) {
        const auto zone = v.find_first_of("+-", 4);
        const std::string local = zone == std::string::npos ? v : v.substr(0, zone);
        if (local.size() < 8) {
          ok = false;
          break;
        }
        date = local.substr(0, 8);
        rest = local.substr(8);
      }
      auto shifted = shift_dicom_date(date, *plan_.date_shift_days);
      if (!shifted) {
        ok = false;
        break;
      }
      v = *shifted + rest;
    }
    // A value that cannot be shifted (partial or malformed) is emptied rather than kept.
    if (!ok) return checked(element.putString(""), "empty", element);
    return checked(element.putString(join_values(values).c_str()), "shift", element);
  }

  const DeidentifyPlan& plan_;
  std::map<std::string, std::string> uids_;
  std::optional<Error> error_;
};

// Clears the bits of native pixel data outside Bits Stored (retired overlays may live there); the
// stored values are unchanged.
std::optional<Error> clear_unused_bits(DcmDataset& ds, E_TransferSyntax xfer) {
  if (DcmXfer(xfer).isEncapsulated()) return std::nullopt;
  Uint16 allocated = 0, stored = 0, high = 0;
  if (ds.findAndGetUint16(DCM_BitsAllocated, allocated).bad() || ds.findAndGetUint16(DCM_BitsStored, stored).bad()) {
    return std::nullopt;
  }
  if (ds.findAndGetUint16(DCM_HighBit, high).bad()) high = static_cast<Uint16>(stored - 1);
  if (allocated != 8 && allocated != 16) return std::nullopt;  // (and so every shift below stays under 16)
  if (stored == 0 || stored >= allocated || high >= allocated || high + 1 < stored) return std::nullopt;
  DcmElement* element = nullptr;
  if (ds.findAndGetElement(DCM_PixelData, element).bad() || element == nullptr) return std::nullopt;
  const unsigned shift = static_cast<unsigned>(high + 1 - stored);
  const std::uint32_t mask = ((std::uint32_t{1} << stored) - 1u) << shift;
  if (allocated == 16) {
    Uint16* words = nullptr;
    OFCondition cond = element->getUint16Array(words);
    if (cond.bad() || words == nullptr) return make_error(ErrorKind::Corrupt, std::string("cannot read pixel data: ") + cond.text());
    const unsigned long count = element->getLength() / 2;
    const auto m = static_cast<Uint16>(mask);
    if (std::all_of(words, words + count, [m](Uint16 w) { return (w & ~m) == 0; })) return std::nullopt;
    std::vector<Uint16> cleaned(words, words + count);
    for (Uint16& w : cleaned) w = static_cast<Uint16>(w & m);
    cond = element->putUint16Array(cleaned.data(), count);
    if (cond.bad()) return make_error(ErrorKind::Corrupt, std::string("cannot write pixel data: ") + cond.text());
  } else if (allocated == 8) {
    Uint8* bytes = nullptr;
    OFCondition cond = element->getUint8Array(bytes);
    if (cond.bad() || bytes == nullptr) return make_error(ErrorKind::Corrupt, std::string("cannot read pixel data: ") + cond.text());
    const unsigned long count = element->getLength();
    const auto m = static_cast<Uint8>(mask);
    if (std::all_of(bytes, bytes + count, [m](Uint8 b) { return (b & ~m) == 0; })) return std::nullopt;
    std::vector<Uint8> cleaned(bytes, bytes + count);
    for (Uint8& b : cleaned) b = static_cast<Uint8>(b & m);
    cond = element->putUint8Array(cleaned.data(), count);
    if (cond.bad()) return make_error(ErrorKind::Corrupt, std::string("cannot write pixel data: ") + cond.text());
  }
  return std::nullopt;
}

std::optional<Error> put(DcmItem& item, const DcmTagKey& tag, const std::string& value) {
  const OFCondition cond = item.putAndInsertString(tag, value.c_str());
  if (cond.good()) return std::nullopt;
  return make_error(ErrorKind::Corrupt, "cannot set " + tag_text(tag) + ": " + cond.text());
}

// Patient Identity Removed, De-identification Method (+ Code Sequence), Longitudinal Temporal
// Information Modified.
std::optional<Error> add_deidentification_attributes(DcmDataset& ds, const DeidentifyPlan& plan) {
  struct Code {
    const char* value;
    const char* meaning;
  };
  std::vector<Code> codes = {{"113100", "Basic Application Confidentiality Profile"},
                             {"113108", "Retain Patient Characteristics Option"}};
  if (plan.date_shift_days) codes.push_back({"113107", "Retain Longitudinal Temporal Information Modified Dates Option"});
  std::vector<std::string> method = {"Hilum (DICOM PS3.15 Annex E)"};
  for (const Code& c : codes) method.emplace_back(c.meaning);

  if (auto e = put(ds, DCM_PatientIdentityRemoved, "YES")) return e;
  if (auto e = put(ds, DCM_DeidentificationMethod, join_values(method))) return e;
  for (const Code& c : codes) {
    DcmItem* item = nullptr;
    const OFCondition cond = ds.findOrCreateSequenceItem(DCM_DeidentificationMethodCodeSequence, item, -2);
    if (cond.bad() || item == nullptr) {
      return make_error(ErrorKind::Corrupt, std::string("cannot add to the De-identification Method Code Sequence: ") + cond.text());
    }
    if (auto e = put(*item, DCM_CodeValue, c.value)) return e;
    if (auto e = put(*item, DCM_CodingSchemeDesignator, "DCM")) return e;
    if (auto e = put(*item, DCM_CodeMeaning, c.meaning)) return e;
  }
  return put(ds, DCM_LongitudinalTemporalInformationModified, plan.date_shift_days ? "MODIFIED" : "REMOVED");
}

std::string errno_text() { return std::strerror(errno); }

// fsync of a file or folder; "" or the reason.
std::string sync_path(const fs::path& path, bool directory) {
  const int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) return "cannot open " + path.string() + ": " + errno_text();
  std::string error;
  if (::fsync(fd) != 0) error = "cannot flush " + path.string() + ": " + errno_text();
  ::close(fd);
  return error;
}


}  // namespace

// A syntactically valid UID: digits and dots, at most 64 characters, no empty component and no
// leading zero in a component of more than one digit (PS3.5 9.1).
bool is_valid_uid(const std::string& uid) {
  if (uid.empty() || uid.size() > 64) return false;
  std::size_t start = 0;
  for (;;) {
    const auto end = uid.find('.', start);
    const std::string part = uid.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (part.empty()) return false;
    if (!std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; })) return false;
    if (part.size() > 1 && part[0] == '0') return false;
    if (end == std::string::npos) return true;
    start = end + 1;
  }
}

bool may_have_burned_in_annotation(const std::string& sop_class_uid, const std::string& burned_in_annotation) {
  const std::string value = upper(trim(burned_in_annotation));
  if (value == "YES") return true;
  if (!value.empty()) return false;
  // Secondary Capture Image Storage and the multi-frame Secondary Capture classes.
  const std::string sc = "1.2.840.10008.5.1.4.1.1.7";
  const std::string uid = trim(sop_class_uid);
  return uid == sc || uid.rfind(sc + ".", 0) == 0;
}

std::optional<std::string> shift_dicom_date(const std::string& date, int shift_days) {
  std::string digits;
  if (date.size() == 10 && date[4] == '.' && date[7] == '.') {
    digits = date.substr(0, 4) + date.substr(5, 2) + date.substr(8, 2);
  } else {
    digits = date;
  }
  if (digits.size() != 8 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  namespace chrono = std::chrono;
  const int y = std::stoi(digits.substr(0, 4));
  const auto m = static_cast<unsigned>(std::stoi(digits.substr(4, 2)));
  const auto d = static_cast<unsigned>(std::stoi(digits.substr(6, 2)));
  const chrono::year_month_day ymd{chrono::year{y}, chrono::month{m}, chrono::day{d}};
  if (!ymd.ok()) return std::nullopt;
  const chrono::year_month_day shifted{chrono::sys_days{ymd} + chrono::days{shift_days}};
  const int sy = static_cast<int>(shifted.year());
  if (!shifted.ok() || sy < 1 || sy > 9999) return std::nullopt;
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d%02u%02u", sy, static_cast<unsigned>(shifted.month()),
                static_cast<unsigned>(shifted.day()));
  return std::string(buf);
}

static Result<core::Done> write_deidentified_unguarded(const fs::path& in, const fs::path& out, const DeidentifyPlan& plan) {
  register_codecs();  // keeps DCMTK's log quiet
  if (!plan.pseudonym) return make_error(ErrorKind::Unsupported, "de-identification needs a pseudonym mapping");
  std::error_code ec;
  if (!fs::is_regular_file(in, ec)) return make_error(ErrorKind::FileNotFound, "file not found: " + in.string());
  if (fs::exists(out, ec) && fs::equivalent(in, out, ec)) {
    return make_error(ErrorKind::Unsupported, "the de-identified copy cannot replace its original: " + out.string());
  }
  const fs::path folder = out.has_parent_path() ? out.parent_path() : fs::path(".");
  if (!fs::is_directory(folder, ec)) return make_error(ErrorKind::FileNotFound, "no such folder: " + folder.string());

  DcmFileFormat ff;
  OFCondition cond = ff.loadFile(in.c_str(), EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_autoDetect);
  if (cond.bad()) return make_error(ErrorKind::Corrupt, "cannot parse DICOM data in " + in.string() + ": " + cond.text());
  DcmDataset* ds = ff.getDataset();
  if (ds == nullptr) return make_error(ErrorKind::Corrupt, "no data set in " + in.string());
  cond = ds->loadAllDataIntoMemory();
  if (cond.bad()) return make_error(ErrorKind::Truncated, "cannot read " + in.string() + ": " + cond.text());
  const E_TransferSyntax xfer = ds->getOriginalXfer();
  if (xfer == EXS_Unknown) return make_error(ErrorKind::Corrupt, "unknown transfer syntax in " + in.string());
  // Pixels encoded under a transfer syntax DCMTK does not know (HTJ2K, say) would be written under
  // the syntax the data set was read as, still encoded: refused rather than written wrong.
  if (detail::encoded_under_unknown_syntax(ff)) {
    OFString stated_xfer;
    (void)ff.getMetaInfo()->findAndGetOFString(DCM_TransferSyntaxUID, stated_xfer);
    const std::string name = detail::htj2k_name(stated_xfer.c_str());
    return make_error(ErrorKind::Unsupported, "cannot write a de-identified copy of " + in.string() + ": transfer syntax " +
                                                  (name.empty() ? std::string(stated_xfer.c_str()) : name + " (" + stated_xfer.c_str() + ")") +
                                                  " cannot be written by this build");
  }

  // Pixels that may show the patient's name are not de-identified by editing attributes.
  OFString sop_class, burned_in;
  if (ds->findAndGetOFString(DCM_SOPClassUID, sop_class).bad()) sop_class.clear();         // absent: empty
  if (ds->findAndGetOFString(DCM_BurnedInAnnotation, burned_in).bad()) burned_in.clear();  // absent: empty
  if (!plan.allow_burned_in && may_have_burned_in_annotation(sop_class.c_str(), burned_in.c_str())) {
    const std::string why = upper(trim(burned_in.c_str())) == "YES"
                                ? "Burned In Annotation is YES"
                                : "a Secondary Capture image without Burned In Annotation";
    return make_error(ErrorKind::Unsupported,
                      "burned-in annotation: " + why + ", so the pixels may show the patient's identity; not de-identified");
  }

  // Patient Name and Patient ID are Type 2: a file without them gets them too, replaced like empty
  // ones (their pseudonyms), so that every de-identified copy names its pseudonymous patient
  // (found by fuzzing, tests/fuzz/regressions/dicom).
  for (const DcmTagKey& tag : {DCM_PatientName, DCM_PatientID}) {
    if (ds->tagExists(tag)) continue;
    cond = ds->insertEmptyElement(tag);
    if (cond.bad()) return make_error(ErrorKind::Corrupt, "cannot add " + tag_text(tag) + ": " + cond.text());
  }
  Deidentifier deidentifier(plan);
  if (auto error = deidentifier.process(*ds)) return *error;
  if (auto error = clear_unused_bits(*ds, xfer)) return *error;
  if (auto error = add_deidentification_attributes(*ds, plan)) return *error;
  // The reader takes an ACR-NEMA file (no meta header) without Photometric Interpretation, or
  // with an empty one, for MONOCHROME2; the copy has a meta header, so it says so, and reads as the
  // original did (both found by fuzzing).
  const DcmMetaInfo* original_meta = ff.getMetaInfo();
  OFString photometric;
  const bool no_photometric =
      ds->findAndGetOFStringArray(DCM_PhotometricInterpretation, photometric).bad() || trim(photometric.c_str()).empty();
  if ((original_meta == nullptr || original_meta->card() == 0) && ds->tagExists(DCM_PixelData) && no_photometric) {
    if (auto e = put(*ds, DCM_PhotometricInterpretation, "MONOCHROME2")) return *e;
  }

  // The meta header is rebuilt from the data set: Media Storage SOP Instance UID = the new SOP
  // Instance UID, and nothing of the original (source AE title, private information) survives.
  DcmMetaInfo* meta = ff.getMetaInfo();
  if (meta != nullptr) {
    cond = meta->clear();
    if (cond.bad()) return make_error(ErrorKind::Corrupt, std::string("cannot rebuild the meta header: ") + cond.text());
  }
  const fs::path tmp = core::temporary_path_beside(out);
  cond = ff.saveFile(tmp.c_str(), xfer, EET_ExplicitLength, EGL_recalcGL, EPD_noChange, 0, 0, EWM_createNewMeta);
  if (cond.bad()) {
    fs::remove(tmp, ec);
    return make_error(ErrorKind::FileNotFound, "cannot write " + out.string() + ": " + cond.text());
  }
  if (std::string e = sync_path(tmp, false); !e.empty()) {
    fs::remove(tmp, ec);
    return make_error(ErrorKind::FileNotFound, e);
  }
  if (auto moved = core::replace_with_temporary(tmp, out); !moved) return make_error(ErrorKind::FileNotFound, moved.error().message);
  if (std::string e = sync_path(folder, true); !e.empty()) return make_error(ErrorKind::FileNotFound, e);
  return core::Done{};
}

Result<core::Done> write_deidentified(const fs::path& in, const fs::path& out, const DeidentifyPlan& plan) {
  return detail::guarded(in, [&] { return write_deidentified_unguarded(in, out, plan); });
}

}  // namespace hilum::dicom
