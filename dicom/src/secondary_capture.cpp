#include "hilum/dicom/secondary_capture.hpp"

#include <algorithm>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcuid.h>

#include "hilum/core/numbers.hpp"
#include "hilum/dicom/reader.hpp"
#include "internal.hpp"

namespace fs = std::filesystem;

namespace hilum::dicom::sc {
namespace {

std::string value_of(DcmItem& item, const DcmTagKey& tag) {
  OFString v;
  if (item.findAndGetOFStringArray(tag, v).bad()) return {};
  return detail::trim(v.c_str());
}

// Our own text in a dataset whose character set could not be converted to UTF-8 (kept as the
// source has it): ASCII only, which every character set shares.
std::string ascii(std::string s) {
  for (char& c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) c = '?';
  }
  return s;
}

// Patient, General Study and Patient Study attributes the map copies from its source.
const DcmTagKey kCopied[] = {
    DCM_PatientName, DCM_PatientID, DCM_IssuerOfPatientID, DCM_PatientBirthDate, DCM_PatientSex,
    DCM_PatientIdentityRemoved, DCM_DeidentificationMethod, DCM_DeidentificationMethodCodeSequence,
    DCM_StudyInstanceUID, DCM_StudyDate, DCM_StudyTime, DCM_ReferringPhysicianName, DCM_StudyID,
    DCM_AccessionNumber, DCM_IssuerOfAccessionNumberSequence, DCM_StudyDescription,
    DCM_PatientAge, DCM_PatientSize, DCM_PatientWeight,
    DCM_BodyPartExamined, DCM_PatientOrientation, DCM_BurnedInAnnotation,
};

}  // namespace

std::string derivation_description(const AttentionMap& map) {
  std::string text = "Hilum AI attention map";
  if (!map.method.empty()) text += " (" + map.method + ")";
  text += map.finding.empty() ? std::string(" for all findings") : " for " + map.finding;
  if (map.probability >= 0.0) text += ", probability " + core::format_number(std::clamp(map.probability, 0.0, 1.0), 4);
  text += "; model " + (map.algorithm_name.empty() ? std::string("unknown") : map.algorithm_name) + " version " +
          (map.algorithm_version.empty() ? std::string("unknown") : map.algorithm_version);
  text += "; colour map over the source image's default display";
  return text.substr(0, 1024);  // ST
}

Result<core::Done> write_attention_map(const AttentionMap& map, const fs::path& out) {
  return detail::guarded(map.source_file, [&]() -> Result<core::Done> {
    register_codecs();  // keeps DCMTK's log quiet
    if (map.width <= 0 || map.height <= 0 || map.width > 65535 || map.height > 65535 ||
        map.rgb.size() != static_cast<std::size_t>(map.width) * static_cast<std::size_t>(map.height) * 3U) {
      return Error{ErrorKind::Corrupt, "the attention map's pixels do not match its size"};
    }
    if (map.series_instance_uid.empty() || map.sop_instance_uid.empty()) return Error{ErrorKind::Corrupt, "the attention map has no UIDs"};

    // The source's header (up to its pixels), in UTF-8 when its character set converts.
    std::error_code ec;
    if (!fs::is_regular_file(map.source_file, ec)) return Error{ErrorKind::FileNotFound, "cannot read " + map.source_file.string()};
    DcmFileFormat source;
    OFCondition c = source.loadFileUntilTag(OFFilename(map.source_file.c_str()), EXS_Unknown, EGL_noChange, DCM_MaxReadLength,
                                            ERM_autoDetect, DCM_PixelData);
    if (c.bad()) return Error{ErrorKind::NotDicom, "cannot read " + map.source_file.string() + " as DICOM: " + c.text()};
    DcmDataset* src = source.getDataset();
    const bool utf8 = src->convertToUTF8().good();
    const std::string sop_class = value_of(*src, DCM_SOPClassUID);
    const std::string sop_instance = value_of(*src, DCM_SOPInstanceUID);
    if (sop_class.empty() || sop_instance.empty() || value_of(*src, DCM_StudyInstanceUID).empty()) {
      return Error{ErrorKind::Corrupt, map.source_file.string() + " has no SOP Class, SOP Instance or Study Instance UID"};
    }
    const auto own = [&](const std::string& s) { return utf8 ? s : ascii(s); };

    DcmFileFormat ff;
    DcmDataset* ds = ff.getDataset();
    OFCondition status = EC_Normal;
    std::string step;
    const auto put = [&](const DcmTagKey& tag, const std::string& value) {
      if (status.bad()) return;
      status = ds->putAndInsertString(tag, value.c_str());
      if (status.bad()) step = DcmTag(tag).getTagName();
    };

    // SOP Common.
    if (utf8) put(DCM_SpecificCharacterSet, "ISO_IR 192");
    else if (const std::string cs = value_of(*src, DCM_SpecificCharacterSet); !cs.empty()) put(DCM_SpecificCharacterSet, cs);
    put(DCM_SOPClassUID, kSecondaryCaptureSopClass);
    put(DCM_SOPInstanceUID, map.sop_instance_uid);
    const std::string when = detail::to_dicom_datetime(map.content_datetime.empty() ? detail::now_iso() : map.content_datetime);
    const std::string date = when.size() >= 14 ? when.substr(0, 8) : std::string();
    const std::string time = when.size() >= 14 ? when.substr(8, 6) : std::string();
    put(DCM_InstanceCreationDate, date);
    put(DCM_InstanceCreationTime, time);
    put(DCM_TimezoneOffsetFromUTC, "+0000");

    // Patient, study (and what the source says of its pixels' annotations and orientation).
    for (const DcmTagKey& tag : kCopied) {
      DcmElement* e = nullptr;
      if (src->findAndGetElement(tag, e).good() && e != nullptr) {
        if (status.good()) status = ds->insert(OFstatic_cast(DcmElement*, e->clone()), OFTrue);
        if (status.bad() && step.empty()) step = DcmTag(tag).getTagName();
      }
    }
    // Type 2 attributes the source may lack: present, empty.
    for (const DcmTagKey& tag : {DCM_PatientName, DCM_PatientID, DCM_PatientBirthDate, DCM_PatientSex, DCM_StudyDate, DCM_StudyTime,
                                 DCM_ReferringPhysicianName, DCM_StudyID, DCM_AccessionNumber, DCM_PatientOrientation}) {
      if (status.good() && !ds->tagExists(tag)) status = ds->insertEmptyElement(tag);
    }

    // General Series, General Equipment, SC Equipment.
    put(DCM_Modality, "OT");
    put(DCM_SeriesInstanceUID, map.series_instance_uid);
    put(DCM_SeriesNumber, "9902");
    put(DCM_SeriesDescription, "Hilum AI attention maps");
    put(DCM_Manufacturer, "Hilum");
    put(DCM_ConversionType, "WSD");
    put(DCM_SecondaryCaptureDeviceManufacturer, "Hilum");
    put(DCM_SecondaryCaptureDeviceManufacturerModelName, "Hilum");
    put(DCM_DateOfSecondaryCapture, date);
    put(DCM_TimeOfSecondaryCapture, time);

    // General Image: derived from the source image, which it references.
    put(DCM_InstanceNumber, "1");
    put(DCM_ImageType, "DERIVED\\SECONDARY");
    put(DCM_ContentDate, date);
    put(DCM_ContentTime, time);
    const std::string description = own(derivation_description(map));
    put(DCM_DerivationDescription, description);
    put(DCM_ImageComments, description);
    if (const std::string lossy = value_of(*src, DCM_LossyImageCompression); lossy == "01") {
      put(DCM_LossyImageCompression, "01");
      for (const DcmTagKey& tag : {DCM_LossyImageCompressionRatio, DCM_LossyImageCompressionMethod}) {
        if (const std::string v = value_of(*src, tag); !v.empty()) put(tag, v);
      }
    }
    if (status.good()) {
      DcmItem* ref = nullptr;
      status = ds->findOrCreateSequenceItem(DCM_SourceImageSequence, ref, 0);
      if (status.good()) status = ref->putAndInsertString(DCM_ReferencedSOPClassUID, sop_class.c_str());
      if (status.good()) status = ref->putAndInsertString(DCM_ReferencedSOPInstanceUID, sop_instance.c_str());
      DcmItem* purpose = nullptr;
      if (status.good()) status = ref->findOrCreateSequenceItem(DCM_PurposeOfReferenceCodeSequence, purpose, 0);
      if (status.good()) status = purpose->putAndInsertString(DCM_CodeValue, "121322");
      if (status.good()) status = purpose->putAndInsertString(DCM_CodingSchemeDesignator, "DCM");
      if (status.good()) status = purpose->putAndInsertString(DCM_CodeMeaning, "Source image for image processing operation");
      if (status.bad()) step = "Source Image Sequence";
    }

    // Image Pixel: RGB, interleaved, 8 bits.
    if (status.good()) status = ds->putAndInsertUint16(DCM_SamplesPerPixel, 3);
    put(DCM_PhotometricInterpretation, "RGB");
    if (status.good()) status = ds->putAndInsertUint16(DCM_PlanarConfiguration, 0);
    if (status.good()) status = ds->putAndInsertUint16(DCM_Rows, static_cast<Uint16>(map.height));
    if (status.good()) status = ds->putAndInsertUint16(DCM_Columns, static_cast<Uint16>(map.width));
    if (status.good()) status = ds->putAndInsertUint16(DCM_BitsAllocated, 8);
    if (status.good()) status = ds->putAndInsertUint16(DCM_BitsStored, 8);
    if (status.good()) status = ds->putAndInsertUint16(DCM_HighBit, 7);
    if (status.good()) status = ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
    if (status.good()) status = ds->putAndInsertUint8Array(DCM_PixelData, map.rgb.data(), static_cast<unsigned long>(map.rgb.size()));
    if (status.bad()) {
      return Error{ErrorKind::Corrupt, "cannot build the attention map" + (step.empty() ? std::string() : " (" + step + ")") + ": " + status.text()};
    }
    return detail::save_atomically(ff, out);
  });
}

}  // namespace hilum::dicom::sc
