#include "hilum/dicom/sr.hpp"

#include <algorithm>
#include <cctype>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmsr/codes/dcm.h>
#include <dcmtk/dcmsr/dsrdoc.h>
#include <dcmtk/dcmsr/dsrimgvl.h>
#include <dcmtk/dcmsr/dsrnumvl.h>
#include <dcmtk/dcmsr/dsrscovl.h>

#include "hilum/core/numbers.hpp"
#include "hilum/dicom/reader.hpp"
#include "internal.hpp"

namespace fs = std::filesystem;

namespace hilum::dicom::sr {
namespace {

Error corrupt(const std::string& what, const OFCondition& c) { return Error{ErrorKind::Corrupt, what + ": " + c.text()}; }

DSRCodedEntryValue coded(const Code& c) { return DSRCodedEntryValue(c.value.c_str(), c.scheme.c_str(), c.meaning.c_str()); }

DSRCodedEntryValue label_code(LabelValue v) {
  switch (v) {
    case LabelValue::Present: return DSRCodedEntryValue("52101004", "SCT", "Present");
    case LabelValue::Absent: return DSRCodedEntryValue("2667000", "SCT", "Absent");
    case LabelValue::Uncertain: return DSRCodedEntryValue("42425007", "SCT", "Equivocal");
  }
  return DSRCodedEntryValue("42425007", "SCT", "Equivocal");
}

// Builds the document; every DCMTK condition is checked (the first failure says which step).
class Builder {
 public:
  explicit Builder(DSRDocumentTree& tree) : tree_(tree) {}
  OFCondition status = EC_Normal;
  std::string step;

  // Adds a content item below the current one (child) or after it, and makes it current.
  void child(DSRTypes::E_RelationshipType rel, DSRTypes::E_ValueType type, const DSRCodedEntryValue& name, const char* what) {
    if (status.bad()) return;
    status = tree_.addChildContentItem(rel, type, name);
    if (status.bad()) step = what;
  }
  void sibling(DSRTypes::E_RelationshipType rel, DSRTypes::E_ValueType type, const DSRCodedEntryValue& name, const char* what) {
    if (status.bad()) return;
    status = tree_.addContentItem(rel, type, name);
    if (status.bad()) step = what;
  }
  void check(const OFCondition& c, const char* what) {
    if (status.bad()) return;
    status = c;
    if (status.bad()) step = what;
  }
  DSRContentItem& item() { return tree_.getCurrentContentItem(); }
  void up() {
    if (status.good()) tree_.goUp();
  }

 private:
  DSRDocumentTree& tree_;
};

}  // namespace

Code finding_code(const std::string& name) {
  std::string key;
  for (const char c : name) key += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // SNOMED CT concepts for the ChestX-ray14 findings Hilum's models report most.
  static const struct {
    const char* name;
    const char* code;
    const char* meaning;
  } kKnown[] = {
      {"pneumonia", "233604007", "Pneumonia"},
      {"effusion", "60046008", "Pleural effusion"},
      {"pneumothorax", "36118008", "Pneumothorax"},
      {"cardiomegaly", "8186001", "Cardiomegaly"},
      {"atelectasis", "46621007", "Atelectasis"},
  };
  for (const auto& k : kKnown) {
    if (key == k.name) return {k.code, "SCT", k.meaning};
  }
  return {name, "99HILUM", name.substr(0, 64)};
}

Result<core::Done> write_report(const Report& report, const fs::path& out) {
  register_codecs();  // keeps DCMTK's log quiet
  const SourceImage& im = report.image;
  if (im.sop_instance_uid.empty() || im.sop_class_uid.empty() || im.study_instance_uid.empty() || im.series_instance_uid.empty()) {
    return Error{ErrorKind::Corrupt, "the source image has no SOP/Study/Series UID: no report"};
  }
  DSRDocument doc(DSRTypes::DT_ComprehensiveSR);
  OFCondition c = doc.createNewSeriesInStudy(im.study_instance_uid.c_str());
  if (c.bad()) return corrupt("study instance UID", c);
  doc.setSpecificCharacterSetType(DSRTypes::CS_UTF8);
  // Patient and study as the image has them (values DCMTK refuses are left out, not invented).
  doc.setPatientID(im.patient_id.c_str(), OFFalse);
  doc.setPatientName(im.patient_name.c_str(), OFFalse);
  doc.setPatientBirthDate(im.patient_birth_date.c_str(), OFFalse);
  doc.setPatientSex(im.patient_sex.c_str(), OFFalse);
  if (!im.study_date.empty()) doc.setStudyDate(im.study_date.c_str(), OFFalse);
  if (!im.study_time.empty()) doc.setStudyTime(im.study_time.c_str(), OFFalse);
  doc.setAccessionNumber(im.accession_number.c_str(), OFFalse);
  doc.setStudyDescription(im.study_description.c_str(), OFFalse);
  doc.setSeriesDescription("Hilum AI results and labels");
  doc.setManufacturer("Hilum");
  doc.setSeriesNumber("9901");
  doc.setInstanceNumber("1");
  const std::string content = detail::to_dicom_datetime(report.content_datetime.empty() ? detail::now_iso() : report.content_datetime);
  if (content.size() >= 14) {
    doc.setContentDate(content.substr(0, 8).c_str());
    doc.setContentTime(content.substr(8, 6).c_str());
  }
  doc.getCurrentRequestedProcedureEvidence().addItem(im.study_instance_uid.c_str(), im.series_instance_uid.c_str(),
                                                     im.sop_class_uid.c_str(), im.sop_instance_uid.c_str());

  DSRDocumentTree& tree = doc.getTree();
  Builder b(tree);
  b.check(tree.addContentItem(DSRTypes::RT_isRoot, DSRTypes::VT_Container) > 0 ? EC_Normal : SR_EC_CannotAddContentItem, "root");
  b.check(b.item().setConceptName(DSRCodedEntryValue("126000", "DCM", "Imaging Measurement Report")), "document title");
  b.check(tree.setTemplateIdentification("1500", "DCMR"), "template");
  b.child(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Code, DSRCodedEntryValue("121049", "DCM", "Language of Content Item and Descendants"), "language");
  b.check(b.item().setCodeValue(DSRCodedEntryValue("en-US", "RFC5646", "English (United States)")), "language");
  b.sibling(DSRTypes::RT_hasObsContext, DSRTypes::VT_Code, CODE_DCM_ObserverType, "observer type");
  b.check(b.item().setCodeValue(CODE_DCM_Device), "observer type");
  b.sibling(DSRTypes::RT_hasObsContext, DSRTypes::VT_UIDRef, CODE_DCM_DeviceObserverUID, "device observer");
  b.check(b.item().setStringValue(report.device_uid.empty() ? "2.25.1" : report.device_uid.c_str()), "device observer UID");
  b.sibling(DSRTypes::RT_hasObsContext, DSRTypes::VT_Text, CODE_DCM_DeviceObserverName, "device observer name");
  b.check(b.item().setStringValue("Hilum"), "device observer name");
  b.sibling(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Code, CODE_DCM_ProcedureReported, "procedure reported");
  b.check(b.item().setCodeValue(DSRCodedEntryValue("399208008", "SCT", "Chest X-ray")), "procedure reported");

  // Image Library: the one source image.
  b.sibling(DSRTypes::RT_contains, DSRTypes::VT_Container, CODE_DCM_ImageLibrary, "image library");
  b.child(DSRTypes::RT_contains, DSRTypes::VT_Container, CODE_DCM_ImageLibraryGroup, "image library group");
  // An IMAGE entry has no concept name.
  b.check(tree.addContentItem(DSRTypes::RT_contains, DSRTypes::VT_Image, DSRTypes::AM_belowCurrent) > 0 ? EC_Normal : SR_EC_CannotAddContentItem, "image entry");
  b.check(b.item().setImageReference(DSRImageReferenceValue(im.sop_class_uid.c_str(), im.sop_instance_uid.c_str())), "image reference");
  b.up();
  b.up();

  // Imaging Measurements: the AI's probability per finding (TID 1501 + TID 4019).
  const bool any_ai = std::any_of(report.findings.begin(), report.findings.end(), [](const Finding& f) { return f.ai.has_value(); });
  const bool any_reader = std::any_of(report.findings.begin(), report.findings.end(), [](const Finding& f) { return f.reader.has_value(); });
  if (any_ai) {
    b.sibling(DSRTypes::RT_contains, DSRTypes::VT_Container, CODE_DCM_ImagingMeasurements, "imaging measurements");
    bool first = true;
    int index = 0;
    for (const Finding& f : report.findings) {
      if (!f.ai) continue;
      ++index;
      if (first) b.child(DSRTypes::RT_contains, DSRTypes::VT_Container, CODE_DCM_MeasurementGroup, "measurement group");
      else b.sibling(DSRTypes::RT_contains, DSRTypes::VT_Container, CODE_DCM_MeasurementGroup, "measurement group");
      first = false;
      b.check(tree.setTemplateIdentification("1501", "DCMR"), "measurement group template");
      b.child(DSRTypes::RT_contains, DSRTypes::VT_Text, CODE_DCM_TrackingIdentifier, "tracking identifier");
      b.check(b.item().setStringValue(("AI " + f.name).substr(0, 64).c_str(), OFFalse), "tracking identifier");
      b.sibling(DSRTypes::RT_contains, DSRTypes::VT_UIDRef, CODE_DCM_TrackingUniqueIdentifier, "tracking UID");
      b.check(b.item().setStringValue((report.sop_instance_uid + "." + std::to_string(index)).substr(0, 64).c_str()), "tracking UID");
      b.sibling(DSRTypes::RT_contains, DSRTypes::VT_Code, CODE_DCM_Finding, "finding");
      b.check(b.item().setCodeValue(coded(finding_code(f.name))), "finding code");
      b.sibling(DSRTypes::RT_contains, DSRTypes::VT_Num, CODE_DCM_Probability, "probability");
      const double p = std::clamp(f.ai->probability, 0.0, 1.0);
      b.check(b.item().setNumericValue(DSRNumericMeasurementValue(core::format_number(p, 6).c_str(),
                                                                  DSRCodedEntryValue("1", "UCUM", "no units"))),
              "probability value");
      if (const std::string dt = detail::to_dicom_datetime(f.ai->datetime); !dt.empty()) b.check(b.item().setObservationDateTime(dt.c_str()), "observation time");
      b.child(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Text, CODE_DCM_AlgorithmName, "algorithm name");
      b.check(b.item().setStringValue(f.ai->algorithm_name.empty() ? "unknown" : f.ai->algorithm_name.c_str(), OFFalse), "algorithm name");
      b.sibling(DSRTypes::RT_hasConceptMod, DSRTypes::VT_Text, CODE_DCM_AlgorithmVersion, "algorithm version");
      b.check(b.item().setStringValue(f.ai->algorithm_version.empty() ? "unknown" : f.ai->algorithm_version.c_str(), OFFalse), "algorithm version");
      b.up();  // the NUM
      b.up();  // the group
    }
    b.up();  // Imaging Measurements
  }

  // Qualitative Evaluations: the reader's label per finding, who and when, and its region.
  if (any_reader) {
    b.sibling(DSRTypes::RT_contains, DSRTypes::VT_Container, DSRCodedEntryValue("C0034375", "UMLS", "Qualitative Evaluations"), "qualitative evaluations");
    bool first = true;
    for (const Finding& f : report.findings) {
      if (!f.reader) continue;
      const ReaderLabel& l = *f.reader;
      if (first) b.child(DSRTypes::RT_contains, DSRTypes::VT_Code, coded(finding_code(f.name)), "evaluation");
      else b.sibling(DSRTypes::RT_contains, DSRTypes::VT_Code, coded(finding_code(f.name)), "evaluation");
      first = false;
      b.check(b.item().setCodeValue(label_code(l.value)), "evaluation value");
      if (const std::string dt = detail::to_dicom_datetime(l.datetime); !dt.empty()) b.check(b.item().setObservationDateTime(dt.c_str()), "label time");
      b.child(DSRTypes::RT_hasObsContext, DSRTypes::VT_Code, CODE_DCM_ObserverType, "reader observer type");
      b.check(b.item().setCodeValue(CODE_DCM_Person), "reader observer type");
      b.sibling(DSRTypes::RT_hasObsContext, DSRTypes::VT_PName, CODE_DCM_PersonObserverName, "reader name");
      b.check(b.item().setStringValue(l.author.substr(0, 64).c_str(), OFFalse), "reader name");
      if (l.region.size() >= 3) {
        b.sibling(DSRTypes::RT_inferredFrom, DSRTypes::VT_SCoord, CODE_DCM_ImageRegion, "region");
        DSRSpatialCoordinatesValue coords(DSRTypes::GT_Polyline);
        for (const auto& [x, y] : l.region) coords.getGraphicDataList().addItem(static_cast<Float32>(x), static_cast<Float32>(y));
        coords.getGraphicDataList().addItem(static_cast<Float32>(l.region.front().first), static_cast<Float32>(l.region.front().second));
        b.check(b.item().setSpatialCoordinates(coords), "region coordinates");
        // SELECTED FROM the image (by value: every SR reader follows it).
        b.check(tree.addContentItem(DSRTypes::RT_selectedFrom, DSRTypes::VT_Image, DSRTypes::AM_belowCurrent) > 0 ? EC_Normal : SR_EC_CannotAddContentItem, "region image");
        b.check(b.item().setImageReference(DSRImageReferenceValue(im.sop_class_uid.c_str(), im.sop_instance_uid.c_str())), "region image reference");
        b.up();
      }
      b.up();  // the CODE
    }
    b.up();
  }
  if (b.status.bad()) return corrupt("cannot build the report (" + b.step + ")", b.status);

  DcmFileFormat ff;
  c = doc.write(*ff.getDataset());
  if (c.bad()) return corrupt("cannot encode the report", c);
  DcmDataset* ds = ff.getDataset();
  if (!report.series_instance_uid.empty()) ds->putAndInsertString(DCM_SeriesInstanceUID, report.series_instance_uid.c_str());
  if (!report.sop_instance_uid.empty()) ds->putAndInsertString(DCM_SOPInstanceUID, report.sop_instance_uid.c_str());
  ds->putAndInsertString(DCM_TimezoneOffsetFromUTC, "+0000");

  return detail::save_atomically(ff, out);
}

}  // namespace hilum::dicom::sr
