// Hilum test data: writing phantoms as DICOM with DCMTK (native, deflated, RLE, JPEG, JPEG-LS)
// and OpenJPEG (JPEG 2000, which DCMTK 3.6.7 cannot encode), plus files the reader must refuse
// and a DICOMDIR media folder.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>

#include <dcmtk/config/osconfig.h>  // must come first
#include <dcmtk/dcmdata/dcddirif.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcdicdir.h>
#include <dcmtk/dcmdata/dcdirrec.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcrleerg.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcvrobow.h>
#include <dcmtk/dcmdata/dcvrss.h>
#include <dcmtk/dcmdata/dcvrus.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djencode.h>
#include <dcmtk/dcmjpeg/djrplol.h>
#include <dcmtk/dcmjpeg/djrploss.h>
#include <dcmtk/dcmjpls/djencode.h>
#include <dcmtk/dcmjpls/djrparam.h>
#include <openjpeg.h>

#include "hilum/testdata/phantom.hpp"

namespace hilum::testdata {
namespace {

namespace fs = std::filesystem;

void check(const OFCondition& c, const std::string& what) {
  if (c.bad()) throw std::runtime_error("DICOM writer: " + what + ": " + c.text());
}

std::string new_uid(const char* root) {
  char buf[100];
  dcmGenerateUniqueIdentifier(buf, root);
  return buf;
}

// DCMTK's encoders are process-wide; register them once and deregister at exit.
void register_encoders() {
  static std::once_flag once;
  std::call_once(once, [] {
    DcmRLEEncoderRegistration::registerCodecs();
    // UID creation "never": the tests check that the SOP Instance UID survives lossy encoding.
    // pUsePixelValues = false: with the default (true) DCMTK's lossy JPEG encoder renders the
    // image through a window fitted to the used pixel range, shifting every stored value by the
    // image minimum; with false it maps the full Bits Stored range onto the JPEG sample range,
    // which for Bits Stored == JPEG precision is the identity.
    DJEncoderRegistration::registerCodecs(ECC_lossyYCbCr, EUC_never, OFFalse /*optimize huffman*/,
                                          0 /*smoothing*/, 0 /*forced bit depth*/,
                                          0 /*fragment size: unlimited*/, OFTrue /*offset table*/,
                                          ESS_422, OFTrue, OFFalse /*convert to SC*/,
                                          0 /*window type: none*/, 0, 0.0, 0.0, 0, 0, 0, 0,
                                          OFFalse /*use pixel values*/,
                                          OFFalse /*use modality rescale*/, OFFalse, OFFalse,
                                          OFTrue /*true lossless*/);
    DJLSEncoderRegistration::registerCodecs(0, 0, 0, 0, OFTrue /*cooked*/, 0, OFTrue,
                                            EJLSUC_never);
    std::atexit([] {
      DJLSEncoderRegistration::cleanup();
      DJEncoderRegistration::cleanup();
      DcmRLEEncoderRegistration::cleanup();
    });
  });
}

std::string format_ds(double v) {
  char buf[32];
  // DS is at most 16 characters.
  for (int precision = 10; precision > 0; --precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strlen(buf) <= 16) break;
  }
  return buf;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i) out += '\\';
    out += parts[i];
  }
  return out;
}

void put(DcmItem* item, const DcmTagKey& tag, const std::string& value, const char* name) {
  check(item->putAndInsertString(tag, value.c_str()), std::string("cannot set ") + name);
}

void put_u16(DcmItem* item, const DcmTagKey& tag, int value, const char* name) {
  check(item->putAndInsertUint16(tag, static_cast<Uint16>(value)), std::string("cannot set ") + name);
}

// LUT Descriptor (0028,3002): entries (0 = 65536), first mapped, bits per entry. US, or SS when
// the input values are signed (PS3.3 C.11.1.1: the 2nd value's VR follows Pixel Representation).
void put_lut(DcmItem* item, const LutSpec& lut, bool signed_input) {
  if (lut.data.empty() || lut.data.size() > 65536)
    throw std::runtime_error("DICOM writer: a LUT needs 1..65536 entries");
  const auto entries = static_cast<Uint16>(lut.data.size() == 65536 ? 0 : lut.data.size());
  DcmElement* desc = nullptr;
  if (signed_input) {
    auto* ss = new DcmSignedShort(DcmTag(DCM_LUTDescriptor, EVR_SS));
    const Sint16 v[3] = {static_cast<Sint16>(entries), static_cast<Sint16>(lut.first_mapped),
                         static_cast<Sint16>(lut.bits_per_entry)};
    check(ss->putSint16Array(v, 3), "LUT Descriptor");
    desc = ss;
  } else {
    auto* us = new DcmUnsignedShort(DcmTag(DCM_LUTDescriptor, EVR_US));
    const Uint16 v[3] = {entries, static_cast<Uint16>(lut.first_mapped),
                         static_cast<Uint16>(lut.bits_per_entry)};
    check(us->putUint16Array(v, 3), "LUT Descriptor");
    desc = us;
  }
  check(item->insert(desc, OFTrue), "insert LUT Descriptor");
  if (!lut.explanation.empty()) put(item, DCM_LUTExplanation, lut.explanation, "LUT Explanation");
  auto* data = new DcmOtherByteOtherWord(DcmTag(DCM_LUTData, EVR_OW));
  check(data->putUint16Array(lut.data.data(), static_cast<unsigned long>(lut.data.size())), "LUT Data");
  check(item->insert(data, OFTrue), "insert LUT Data");
}

E_TransferSyntax xfer_of(Encoding e) {
  switch (e) {
    case Encoding::ImplicitLittle: return EXS_LittleEndianImplicit;
    case Encoding::ExplicitLittle: return EXS_LittleEndianExplicit;
    case Encoding::ExplicitBig: return EXS_BigEndianExplicit;
    case Encoding::Deflated: return EXS_DeflatedLittleEndianExplicit;
    case Encoding::Rle: return EXS_RLELossless;
    case Encoding::JpegBaseline: return EXS_JPEGProcess1;
    case Encoding::JpegExtended12: return EXS_JPEGProcess2_4;
    case Encoding::JpegLosslessP14: return EXS_JPEGProcess14;
    case Encoding::JpegLosslessSV1: return EXS_JPEGProcess14SV1;
    case Encoding::JpegLsLossless: return EXS_JPEGLSLossless;
    case Encoding::JpegLsNearLossless: return EXS_JPEGLSLossy;
    case Encoding::J2kLossless: return EXS_JPEG2000LosslessOnly;
    case Encoding::J2kLossy: return EXS_JPEG2000;
  }
  return EXS_Unknown;
}

bool is_native(Encoding e) {
  return e == Encoding::ImplicitLittle || e == Encoding::ExplicitLittle ||
         e == Encoding::ExplicitBig || e == Encoding::Deflated;
}

// ---- JPEG 2000 with OpenJPEG: a raw J2K codestream written into memory --------------------

struct MemoryStream {
  std::vector<std::uint8_t> data;
  std::size_t pos = 0;
};

OPJ_SIZE_T mem_write(void* buffer, OPJ_SIZE_T n, void* user) {
  auto* m = static_cast<MemoryStream*>(user);
  if (m->pos + n > m->data.size()) m->data.resize(m->pos + n);
  std::memcpy(m->data.data() + m->pos, buffer, n);
  m->pos += n;
  return n;
}

OPJ_OFF_T mem_skip(OPJ_OFF_T n, void* user) {
  auto* m = static_cast<MemoryStream*>(user);
  if (n < 0 && static_cast<std::size_t>(-n) > m->pos) return -1;
  m->pos = static_cast<std::size_t>(static_cast<OPJ_OFF_T>(m->pos) + n);
  if (m->pos > m->data.size()) m->data.resize(m->pos);
  return n;
}

OPJ_BOOL mem_seek(OPJ_OFF_T n, void* user) {
  auto* m = static_cast<MemoryStream*>(user);
  if (n < 0) return OPJ_FALSE;
  m->pos = static_cast<std::size_t>(n);
  if (m->pos > m->data.size()) m->data.resize(m->pos);
  return OPJ_TRUE;
}

void opj_collect(const char* msg, void* user) {
  auto* s = static_cast<std::string*>(user);
  if (!s->empty()) *s += "; ";
  std::string m = msg;
  while (!m.empty() && (m.back() == '\n' || m.back() == '\r')) m.pop_back();
  *s += m;
}

std::vector<std::uint8_t> encode_j2k(const std::vector<std::int32_t>& values, const PhantomSpec& p,
                                     bool lossless, int ratio) {
  opj_cparameters_t params;
  opj_set_default_encoder_parameters(&params);
  params.tcp_numlayers = 1;
  params.cp_disto_alloc = 1;
  params.tcp_rates[0] = lossless ? 0.0f : static_cast<float>(std::max(ratio, 1));
  params.irreversible = lossless ? 0 : 1;  // 5/3 reversible, or 9/7 irreversible
  int levels = 1;
  while (levels < 6 && (std::min(p.rows, p.columns) >> levels) >= 8) ++levels;
  params.numresolution = levels;

  opj_image_cmptparm_t cmpt;
  std::memset(&cmpt, 0, sizeof cmpt);
  cmpt.dx = cmpt.dy = 1;
  cmpt.w = static_cast<OPJ_UINT32>(p.columns);
  cmpt.h = static_cast<OPJ_UINT32>(p.rows);
  cmpt.prec = static_cast<OPJ_UINT32>(p.bits_stored);
  cmpt.sgnd = p.is_signed ? 1 : 0;
  opj_image_t* image = opj_image_create(1, &cmpt, OPJ_CLRSPC_GRAY);
  if (!image) throw std::runtime_error("JPEG 2000 writer: opj_image_create failed");
  image->x0 = 0;
  image->y0 = 0;
  image->x1 = cmpt.w;
  image->y1 = cmpt.h;
  std::copy(values.begin(), values.end(), image->comps[0].data);

  std::string errors;
  opj_codec_t* codec = opj_create_compress(OPJ_CODEC_J2K);
  opj_set_error_handler(codec, opj_collect, &errors);
  MemoryStream out;
  opj_stream_t* stream = opj_stream_create(1 << 16, OPJ_FALSE);
  opj_stream_set_write_function(stream, mem_write);
  opj_stream_set_skip_function(stream, mem_skip);
  opj_stream_set_seek_function(stream, mem_seek);
  opj_stream_set_user_data(stream, &out, nullptr);

  bool ok = opj_setup_encoder(codec, &params, image) && opj_start_compress(codec, image, stream) &&
            opj_encode(codec, stream) && opj_end_compress(codec, stream);
  opj_stream_destroy(stream);
  opj_destroy_codec(codec);
  opj_image_destroy(image);
  if (!ok || out.data.empty())
    throw std::runtime_error("JPEG 2000 writer: OpenJPEG failed: " + (errors.empty() ? "unknown error" : errors));
  return std::move(out.data);
}

void put_encapsulated(DcmDataset* ds, E_TransferSyntax xfer, std::vector<std::uint8_t> frame) {
  if (frame.size() % 2) frame.push_back(0);  // fragments have even length
  auto* seq = new DcmPixelSequence(DcmTag(DCM_PixelData, EVR_OB));
  auto* offset_table = new DcmPixelItem(DcmTag(DCM_Item, EVR_OB));  // empty Basic Offset Table
  check(seq->insert(offset_table), "insert offset table");
  auto* fragment = new DcmPixelItem(DcmTag(DCM_Item, EVR_OB));
  check(fragment->putUint8Array(frame.data(), static_cast<unsigned long>(frame.size())), "fragment");
  check(seq->insert(fragment), "insert fragment");
  auto* pixel = new DcmPixelData(DCM_PixelData);
  pixel->putOriginalRepresentation(xfer, nullptr, seq);
  check(ds->insert(pixel, OFTrue), "insert Pixel Data");
}

// ---- the dataset -----------------------------------------------------------------------------

void put_pixel_data(DcmDataset* ds, const PhantomSpec& p, const std::vector<std::int32_t>& values) {
  const int shift = p.high_bit - p.bits_stored + 1;
  const std::uint32_t mask = p.bits_stored >= 32 ? 0xFFFFFFFFu : ((1u << p.bits_stored) - 1u);
  if (p.bits_allocated == 8) {
    std::vector<Uint8> bytes(values.size() + (values.size() % 2));  // even length
    for (std::size_t i = 0; i < values.size(); ++i)
      bytes[i] = static_cast<Uint8>((static_cast<std::uint32_t>(values[i]) & mask) << shift);
    auto* pixel = new DcmPixelData(DcmTag(DCM_PixelData, EVR_OB));
    check(pixel->putUint8Array(bytes.data(), static_cast<unsigned long>(bytes.size())), "Pixel Data");
    check(ds->insert(pixel, OFTrue), "insert Pixel Data");
  } else {
    std::vector<Uint16> words(values.size());
    for (std::size_t i = 0; i < values.size(); ++i)
      words[i] = static_cast<Uint16>((static_cast<std::uint32_t>(values[i]) & mask) << shift);
    auto* pixel = new DcmPixelData(DcmTag(DCM_PixelData, EVR_OW));
    check(pixel->putUint16Array(words.data(), static_cast<unsigned long>(words.size())), "Pixel Data");
    check(ds->insert(pixel, OFTrue), "insert Pixel Data");
  }
}

void put_common(DcmDataset* ds, const DicomSpec& s) {
  put(ds, DCM_SOPClassUID, s.sop_class_uid, "SOP Class UID");
  put(ds, DCM_SOPInstanceUID, s.sop_instance_uid.empty() ? new_uid(SITE_INSTANCE_UID_ROOT) : s.sop_instance_uid,
      "SOP Instance UID");
  // Patient
  put(ds, DCM_PatientName, s.patient_name, "Patient Name");
  put(ds, DCM_PatientID, s.patient_id, "Patient ID");
  put(ds, DCM_PatientBirthDate, s.patient_birth_date, "Patient Birth Date");
  put(ds, DCM_PatientSex, "O", "Patient Sex");
  // General Study
  put(ds, DCM_StudyInstanceUID, s.study_instance_uid.empty() ? new_uid(SITE_STUDY_UID_ROOT) : s.study_instance_uid,
      "Study Instance UID");
  put(ds, DCM_StudyDate, s.acquisition_date, "Study Date");
  put(ds, DCM_StudyTime, s.acquisition_time, "Study Time");
  put(ds, DCM_ReferringPhysicianName, "", "Referring Physician");
  put(ds, DCM_StudyID, s.study_id, "Study ID");
  put(ds, DCM_AccessionNumber, s.accession_number, "Accession Number");
  put(ds, DCM_StudyDescription, s.study_description, "Study Description");
  // General Series
  put(ds, DCM_Modality, s.modality, "Modality");
  put(ds, DCM_SeriesInstanceUID,
      s.series_instance_uid.empty() ? new_uid(SITE_SERIES_UID_ROOT) : s.series_instance_uid,
      "Series Instance UID");
  put(ds, DCM_SeriesNumber, s.series_number, "Series Number");
  put(ds, DCM_SeriesDescription, s.series_description, "Series Description");
  if (!s.body_part.empty()) put(ds, DCM_BodyPartExamined, s.body_part, "Body Part Examined");
  // General Equipment
  put(ds, DCM_Manufacturer, "Hilum Phantom Works", "Manufacturer");
  put(ds, DCM_InstitutionName, "Hilum Test Hospital", "Institution Name");
}

void put_image(DcmDataset* ds, const DicomSpec& s, bool lossy) {
  const PhantomSpec& p = s.phantom;
  // General Image / DX
  put(ds, DCM_InstanceNumber, s.instance_number, "Instance Number");
  put(ds, DCM_PatientOrientation, "L\\F", "Patient Orientation");
  put(ds, DCM_ContentDate, s.acquisition_date, "Content Date");
  put(ds, DCM_ContentTime, s.acquisition_time, "Content Time");
  put(ds, DCM_AcquisitionDate, s.acquisition_date, "Acquisition Date");
  put(ds, DCM_AcquisitionTime, s.acquisition_time, "Acquisition Time");
  put(ds, DCM_ImageType, "ORIGINAL\\PRIMARY", "Image Type");
  put(ds, DCM_BurnedInAnnotation, "NO", "Burned In Annotation");
  put(ds, DCM_LossyImageCompression, lossy ? "01" : "00", "Lossy Image Compression");
  put(ds, DCM_PresentationIntentType, "FOR PRESENTATION", "Presentation Intent Type");
  put(ds, DCM_PixelIntensityRelationship, "LOG", "Pixel Intensity Relationship");
  // Sign -1: higher values mean less X-ray intensity (bone bright), true for MONOCHROME2 here.
  put(ds, DCM_PixelIntensityRelationshipSign, p.monochrome1 ? "1" : "-1", "Pixel Intensity Relationship Sign");
  if (!s.view_position.empty()) put(ds, DCM_ViewPosition, s.view_position, "View Position");
  if (!s.laterality.empty()) put(ds, DCM_ImageLaterality, s.laterality, "Image Laterality");
  if (s.pixel_spacing) {
    const std::string spacing = format_ds(s.pixel_spacing->first) + "\\" + format_ds(s.pixel_spacing->second);
    put(ds, DCM_PixelSpacing, spacing, "Pixel Spacing");
    put(ds, DCM_ImagerPixelSpacing, spacing, "Imager Pixel Spacing");
  }
  // Image Pixel
  put_u16(ds, DCM_SamplesPerPixel, 1, "Samples per Pixel");
  std::string photometric = p.monochrome1 ? "MONOCHROME1" : "MONOCHROME2";
  if (!s.photometric_override.empty()) photometric = s.photometric_override;
  put(ds, DCM_PhotometricInterpretation, photometric, "Photometric Interpretation");
  put_u16(ds, DCM_Rows, p.rows, "Rows");
  put_u16(ds, DCM_Columns, p.columns, "Columns");
  put_u16(ds, DCM_BitsAllocated, p.bits_allocated, "Bits Allocated");
  put_u16(ds, DCM_BitsStored, p.bits_stored, "Bits Stored");
  put_u16(ds, DCM_HighBit, p.high_bit, "High Bit");
  put_u16(ds, DCM_PixelRepresentation, p.is_signed ? 1 : 0, "Pixel Representation");
  // Modality LUT: a table, or Rescale Slope/Intercept.
  if (s.modality_lut) {
    auto* seq = new DcmSequenceOfItems(DCM_ModalityLUTSequence);
    auto* item = new DcmItem();
    check(seq->append(item), "Modality LUT Sequence item");
    put_lut(item, *s.modality_lut, p.is_signed);
    put(item, DCM_ModalityLUTType, "US", "Modality LUT Type");
    check(ds->insert(seq, OFTrue), "insert Modality LUT Sequence");
  } else if (s.rescale_slope != 1.0 || s.rescale_intercept != 0.0) {
    put(ds, DCM_RescaleIntercept, format_ds(s.rescale_intercept), "Rescale Intercept");
    put(ds, DCM_RescaleSlope, format_ds(s.rescale_slope), "Rescale Slope");
    put(ds, DCM_RescaleType, "US", "Rescale Type");
  }
  // VOI LUT module
  if (!s.windows.empty()) {
    std::vector<std::string> centers, widths, explanations;
    bool any_explanation = false;
    for (const WindowSpec& w : s.windows) {
      centers.push_back(format_ds(w.center));
      widths.push_back(format_ds(w.width));
      explanations.push_back(w.explanation);
      any_explanation = any_explanation || !w.explanation.empty();
    }
    put(ds, DCM_WindowCenter, join(centers), "Window Center");
    put(ds, DCM_WindowWidth, join(widths), "Window Width");
    if (any_explanation) put(ds, DCM_WindowCenterWidthExplanation, join(explanations), "Window Explanation");
  }
  if (!s.voi_lut_function.empty()) put(ds, DCM_VOILUTFunction, s.voi_lut_function, "VOI LUT Function");
  if (!s.voi_luts.empty()) {
    auto* seq = new DcmSequenceOfItems(DCM_VOILUTSequence);
    for (const LutSpec& lut : s.voi_luts) {
      auto* item = new DcmItem();
      check(seq->append(item), "VOI LUT Sequence item");
      // LUT Descriptor VR follows Pixel Representation (PS3.5 A.1 for "US or SS" elements).
      put_lut(item, lut, p.is_signed);
    }
    check(ds->insert(seq, OFTrue), "insert VOI LUT Sequence");
  }
  if (!s.presentation_lut_shape.empty())
    put(ds, DCM_PresentationLUTShape, s.presentation_lut_shape, "Presentation LUT Shape");
}

void validate_for_encoding(const DicomSpec& s) {
  const PhantomSpec& p = s.phantom;
  const auto fail = [&](const std::string& why) {
    throw std::runtime_error(std::string("DICOM writer: ") + to_string(s.encoding) + ": " + why);
  };
  if (!s.part10 && !(s.encoding == Encoding::ImplicitLittle || s.encoding == Encoding::ExplicitLittle ||
                     s.encoding == Encoding::ExplicitBig))
    fail("ACR-NEMA style files (part10=false) are written uncompressed only");
  switch (s.encoding) {
    case Encoding::JpegBaseline:
      if (p.bits_allocated != 8 || p.bits_stored != 8 || p.high_bit != 7 || p.is_signed)
        fail("JPEG baseline needs unsigned 8-bit samples (bits allocated/stored 8, high bit 7)");
      break;
    case Encoding::JpegExtended12:
      if (p.bits_stored != 12 || p.high_bit != 11 || p.is_signed)
        fail("JPEG extended needs unsigned 12-bit samples (bits stored 12, high bit 11)");
      break;
    case Encoding::JpegLsNearLossless:
      if (p.is_signed) fail("JPEG-LS near-lossless cannot encode signed pixels");
      if (s.near_lossless_error < 1) fail("near_lossless_error must be >= 1");
      break;
    default:
      break;
  }
  if (!is_lossless(s.encoding) && (s.modality_lut || !s.voi_luts.empty()))
    fail("lossy encoders would rewrite the Modality/VOI LUTs; use a lossless encoding");
  if ((s.encoding == Encoding::JpegBaseline || s.encoding == Encoding::JpegExtended12) &&
      (s.rescale_slope != 1.0 || s.rescale_intercept != 0.0))
    fail("DCMTK's lossy JPEG encoder folds Rescale Slope/Intercept into the pixels; use another encoding");
  if (!is_native(s.encoding) && s.encoding != Encoding::Rle && s.encoding != Encoding::J2kLossless &&
      s.encoding != Encoding::J2kLossy && p.high_bit != p.bits_stored - 1)
    fail("DCMTK's JPEG encoders need High Bit = Bits Stored - 1");
  if (!s.photometric_override.empty() && !is_native(s.encoding))
    fail("photometric_override is for native encodings only");
}

void write_file(DcmFileFormat& ff, const fs::path& path, E_TransferSyntax xfer, bool part10) {
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  if (part10) {
    check(ff.saveFile(path.c_str(), xfer, EET_ExplicitLength, EGL_recalcGL), "cannot write " + path.string());
  } else {
    // ACR-NEMA style: no preamble, no meta header, group lengths as old files have them.
    check(ff.getDataset()->saveFile(path.c_str(), xfer, EET_ExplicitLength, EGL_withGL),
          "cannot write " + path.string());
  }
}

}  // namespace

std::vector<std::int32_t> write_dicom(const std::filesystem::path& path, const DicomSpec& spec) {
  register_encoders();
  validate_for_encoding(spec);
  const PhantomSpec& p = spec.phantom;
  std::vector<std::int32_t> values = make_phantom(p);
  if (spec.draw) spec.draw(values, p.rows, p.columns);

  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  put_common(ds, spec);
  put_image(ds, spec, !is_lossless(spec.encoding));
  const E_TransferSyntax xfer = xfer_of(spec.encoding);

  switch (spec.encoding) {
    case Encoding::J2kLossless:
    case Encoding::J2kLossy: {
      const bool lossless = spec.encoding == Encoding::J2kLossless;
      std::vector<std::uint8_t> j2k = encode_j2k(values, p, lossless, spec.j2k_lossy_ratio);
      if (!lossless) {
        const double raw = static_cast<double>(p.rows) * p.columns * p.bits_allocated / 8.0;
        put(ds, DCM_LossyImageCompressionRatio, format_ds(raw / static_cast<double>(j2k.size())),
            "Lossy Image Compression Ratio");
        put(ds, DCM_LossyImageCompressionMethod, "ISO_15444_1", "Lossy Image Compression Method");
      }
      put_encapsulated(ds, xfer, std::move(j2k));
      break;
    }
    default: {
      put_pixel_data(ds, p, values);
      if (!is_native(spec.encoding)) {
        const DJ_RPLossless p14(6 /*predictor*/, 0 /*point transform*/);
        const DJ_RPLossless sv1(1, 0);
        const DJ_RPLossy lossy(90 /*quality*/);
        const DJLSRepresentationParameter ls_lossless(0, OFTrue);
        const DJLSRepresentationParameter ls_near(static_cast<Uint16>(spec.near_lossless_error), OFFalse);
        const DcmRepresentationParameter* rp = nullptr;
        switch (spec.encoding) {
          case Encoding::JpegBaseline:
          case Encoding::JpegExtended12: rp = &lossy; break;
          case Encoding::JpegLosslessP14: rp = &p14; break;
          case Encoding::JpegLosslessSV1: rp = &sv1; break;
          case Encoding::JpegLsLossless: rp = &ls_lossless; break;
          case Encoding::JpegLsNearLossless: rp = &ls_near; break;
          default: break;
        }
        check(ds->chooseRepresentation(xfer, rp),
              std::string("cannot encode as ") + to_string(spec.encoding));
        if (!ds->canWriteXfer(xfer))
          throw std::runtime_error(std::string("DICOM writer: no ") + to_string(spec.encoding) +
                                   " representation after encoding");
      }
      break;
    }
  }
  write_file(ff, path, xfer, spec.part10);
  return values;
}

void write_colour_dicom(const std::filesystem::path& path, const ColourDicomSpec& spec) {
  register_encoders();
  if (!spec.colour || spec.rows < 1 || spec.columns < 1) throw std::runtime_error("write_colour_dicom: needs a size and a colour");
  const bool pairs = spec.photometric == "YBR_FULL_422";
  const bool palette = spec.photometric == "PALETTE COLOR";
  const bool ybr = spec.photometric == "YBR_FULL" || pairs;
  if (!pairs && !palette && !ybr && spec.photometric != "RGB") throw std::runtime_error("write_colour_dicom: unknown " + spec.photometric);
  if (pairs && (spec.columns % 2 != 0 || spec.rle || spec.planar)) throw std::runtime_error("write_colour_dicom: YBR_FULL_422 needs even columns, native, interleaved");
  const auto n = static_cast<std::size_t>(spec.rows) * static_cast<std::size_t>(spec.columns);
  std::vector<std::array<std::uint8_t, 3>> rgb(n);
  for (int r = 0; r < spec.rows; ++r)
    for (int c = 0; c < spec.columns; ++c) rgb[static_cast<std::size_t>(r) * spec.columns + c] = spec.colour(r, c);
  auto byte = [](double v) { return static_cast<std::uint8_t>(std::clamp(std::lround(v), 0L, 255L)); };
  auto y_of = [&](const std::array<std::uint8_t, 3>& p) { return 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]; };
  auto cb_of = [&](const std::array<std::uint8_t, 3>& p) { return -0.168736 * p[0] - 0.331264 * p[1] + 0.5 * p[2] + 128.0; };
  auto cr_of = [&](const std::array<std::uint8_t, 3>& p) { return 0.5 * p[0] - 0.418688 * p[1] - 0.081312 * p[2] + 128.0; };

  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  DicomSpec common;
  common.sop_class_uid = UID_SecondaryCaptureImageStorage;
  common.modality = spec.modality;
  common.body_part = spec.body_part;
  put_common(ds, common);
  put_u16(ds, DCM_SamplesPerPixel, palette ? 1 : 3, "Samples per Pixel");
  put(ds, DCM_PhotometricInterpretation, spec.photometric, "Photometric Interpretation");
  put_u16(ds, DCM_Rows, spec.rows, "Rows");
  put_u16(ds, DCM_Columns, spec.columns, "Columns");
  put_u16(ds, DCM_BitsAllocated, 8, "Bits Allocated");
  put_u16(ds, DCM_BitsStored, 8, "Bits Stored");
  put_u16(ds, DCM_HighBit, 7, "High Bit");
  put_u16(ds, DCM_PixelRepresentation, 0, "Pixel Representation");
  if (!palette) put_u16(ds, DCM_PlanarConfiguration, spec.planar ? 1 : 0, "Planar Configuration");

  std::vector<Uint8> bytes;
  if (palette) {
    std::vector<std::array<std::uint8_t, 3>> colours;
    bytes.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      auto it = std::find(colours.begin(), colours.end(), rgb[i]);
      if (it == colours.end()) {
        if (colours.size() == 256) throw std::runtime_error("write_colour_dicom: a palette holds at most 256 colours");
        colours.push_back(rgb[i]);
        it = colours.end() - 1;
      }
      bytes[i] = static_cast<Uint8>(it - colours.begin());
    }
    const DcmTagKey descriptors[3] = {DCM_RedPaletteColorLookupTableDescriptor, DCM_GreenPaletteColorLookupTableDescriptor,
                                      DCM_BluePaletteColorLookupTableDescriptor};
    const DcmTagKey data[3] = {DCM_RedPaletteColorLookupTableData, DCM_GreenPaletteColorLookupTableData,
                               DCM_BluePaletteColorLookupTableData};
    for (int k = 0; k < 3; ++k) {
      auto* desc = new DcmUnsignedShort(DcmTag(descriptors[k], EVR_US));
      const Uint16 d[3] = {static_cast<Uint16>(colours.size()), 0, 16};
      check(desc->putUint16Array(d, 3), "Palette Color Lookup Table Descriptor");
      check(ds->insert(desc, OFTrue), "insert Palette Color Lookup Table Descriptor");
      std::vector<Uint16> entries;
      for (const auto& colour : colours) entries.push_back(static_cast<Uint16>(colour[static_cast<std::size_t>(k)] * 257));
      check(ds->putAndInsertUint16Array(data[k], entries.data(), static_cast<unsigned long>(entries.size())),
            "Palette Color Lookup Table Data");
    }
  } else if (pairs) {
    for (std::size_t i = 0; i < n; i += 2) {
      bytes.push_back(byte(y_of(rgb[i])));
      bytes.push_back(byte(y_of(rgb[i + 1])));
      bytes.push_back(byte((cb_of(rgb[i]) + cb_of(rgb[i + 1])) / 2.0));
      bytes.push_back(byte((cr_of(rgb[i]) + cr_of(rgb[i + 1])) / 2.0));
    }
  } else {
    bytes.resize(3 * n);
    for (std::size_t i = 0; i < n; ++i) {
      const std::array<std::uint8_t, 3> v =
          ybr ? std::array<std::uint8_t, 3>{byte(y_of(rgb[i])), byte(cb_of(rgb[i])), byte(cr_of(rgb[i]))} : rgb[i];
      for (std::size_t k = 0; k < 3; ++k) bytes[spec.planar ? k * n + i : 3 * i + k] = v[k];
    }
  }
  auto* pixel = new DcmPixelData(DcmTag(DCM_PixelData, EVR_OB));
  check(pixel->putUint8Array(bytes.data(), static_cast<unsigned long>(bytes.size())), "Pixel Data");
  check(ds->insert(pixel, OFTrue), "insert Pixel Data");
  E_TransferSyntax xfer = EXS_LittleEndianExplicit;
  if (spec.rle) {
    xfer = EXS_RLELossless;
    check(ds->chooseRepresentation(xfer, nullptr), "cannot encode as RLE");
    if (!ds->canWriteXfer(xfer)) throw std::runtime_error("write_colour_dicom: no RLE representation after encoding");
  }
  write_file(ff, path, xfer, true);
}

void write_basic_text_sr(const std::filesystem::path& path) {
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  DicomSpec s;
  s.sop_class_uid = UID_BasicTextSRStorage;  // 1.2.840.10008.5.1.4.1.1.88.11
  s.modality = "SR";
  s.body_part.clear();
  put_common(ds, s);
  put(ds, DCM_InstanceNumber, "1", "Instance Number");
  put(ds, DCM_ContentDate, s.acquisition_date, "Content Date");
  put(ds, DCM_ContentTime, s.acquisition_time, "Content Time");
  put(ds, DCM_ValueType, "CONTAINER", "Value Type");
  put(ds, DCM_ContinuityOfContent, "SEPARATE", "Continuity Of Content");
  put(ds, DCM_CompletionFlag, "COMPLETE", "Completion Flag");
  put(ds, DCM_VerificationFlag, "UNVERIFIED", "Verification Flag");
  auto code = [](DcmItem* parent, const char* value, const char* scheme, const char* meaning) {
    auto* seq = new DcmSequenceOfItems(DCM_ConceptNameCodeSequence);
    auto* item = new DcmItem();
    check(seq->append(item), "code item");
    put(item, DCM_CodeValue, value, "Code Value");
    put(item, DCM_CodingSchemeDesignator, scheme, "Coding Scheme Designator");
    put(item, DCM_CodeMeaning, meaning, "Code Meaning");
    check(parent->insert(seq, OFTrue), "insert Concept Name Code Sequence");
  };
  code(ds, "18748-4", "LN", "Diagnostic Imaging Report");
  auto* content = new DcmSequenceOfItems(DCM_ContentSequence);
  auto* text = new DcmItem();
  check(content->append(text), "content item");
  put(text, DCM_RelationshipType, "CONTAINS", "Relationship Type");
  put(text, DCM_ValueType, "TEXT", "Value Type");
  code(text, "121071", "DCM", "Finding");
  put(text, DCM_TextValue, "No acute cardiopulmonary abnormality.", "Text Value");
  check(ds->insert(content, OFTrue), "insert Content Sequence");
  write_file(ff, path, EXS_LittleEndianExplicit, true);
}

void write_truncated(const std::filesystem::path& path, std::uint64_t keep_pixel_bytes) {
  DicomSpec s;  // default 320 x 256, 16 bits allocated: 163840 bytes of pixel data
  s.encoding = Encoding::ExplicitLittle;
  (void)write_dicom(path, s);
  const std::uint64_t pixel_bytes =
      static_cast<std::uint64_t>(s.phantom.rows) * static_cast<std::uint64_t>(s.phantom.columns) *
      static_cast<std::uint64_t>(s.phantom.bits_allocated / 8);
  if (keep_pixel_bytes >= pixel_bytes)
    throw std::runtime_error("write_truncated: keep_pixel_bytes must be below " + std::to_string(pixel_bytes));
  // Pixel Data is the last element, so its value is the last pixel_bytes bytes of the file.
  const std::uint64_t size = fs::file_size(path);
  if (size < pixel_bytes) throw std::runtime_error("write_truncated: unexpected file size");
  fs::resize_file(path, size - pixel_bytes + keep_pixel_bytes);
}

void write_not_dicom(const std::filesystem::path& path) {
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("write_not_dicom: cannot write " + path.string());
  out << "Hilum test file: this is plain text, not DICOM.\n";
  for (int i = 0; i < 8; ++i)
    out << "Line " << i << ": the quick brown fox jumps over the lazy dog.\n";
  if (!out) throw std::runtime_error("write_not_dicom: cannot write " + path.string());
}

void write_absurd_dimensions(const std::filesystem::path& path) {
  DcmFileFormat ff;
  DcmDataset* ds = ff.getDataset();
  DicomSpec s;
  s.phantom.rows = 65535;  // only written into the header, never generated
  s.phantom.columns = 65535;
  put_common(ds, s);
  put_image(ds, s, false);
  std::vector<Uint16> tiny(32, 0x0800);  // 64 bytes instead of 8.6 GB
  auto* pixel = new DcmPixelData(DcmTag(DCM_PixelData, EVR_OW));
  check(pixel->putUint16Array(tiny.data(), static_cast<unsigned long>(tiny.size())), "Pixel Data");
  check(ds->insert(pixel, OFTrue), "insert Pixel Data");
  write_file(ff, path, EXS_LittleEndianExplicit, true);
}

std::vector<std::string> write_dicomdir_media(const std::filesystem::path& folder, int per_series) {
  if (per_series < 1 || per_series > 9999)
    throw std::runtime_error("write_dicomdir_media: per_series must be in [1, 9999]");
  fs::create_directories(folder / "IMAGES");
  struct Patient {
    const char* id;
    const char* name;
  };
  const Patient patients[] = {{"PHANTOM-A", "Phantom^Alpha"}, {"PHANTOM-B", "Phantom^Beta"}};
  std::vector<std::string> files;
  std::vector<std::string> sop_uids;
  int n = 0;
  int patient_index = 0;
  for (const Patient& patient : patients) {
    DicomSpec s;
    s.encoding = Encoding::ExplicitLittle;  // the General Purpose profile requires it
    s.phantom.rows = 96;
    s.phantom.columns = 80;
    s.patient_id = patient.id;
    s.patient_name = patient.name;
    s.study_instance_uid = new_uid(SITE_STUDY_UID_ROOT);
    s.series_instance_uid = new_uid(SITE_SERIES_UID_ROOT);
    s.study_id = std::to_string(patient_index + 1);
    s.accession_number = "ACC-000" + std::to_string(patient_index + 1);
    s.study_description = patient_index == 0 ? "Chest PA" : "Chest AP";
    s.view_position = patient_index == 0 ? "PA" : "AP";
    s.acquisition_date = patient_index == 0 ? "20260101" : "20260102";
    for (int i = 0; i < per_series; ++i) {
      ++n;
      s.sop_instance_uid = new_uid(SITE_INSTANCE_UID_ROOT);
      s.instance_number = std::to_string(i + 1);
      s.phantom.seed = static_cast<std::uint32_t>(n);
      char name[32];
      std::snprintf(name, sizeof name, "IM%06d", n);
      const std::string rel = std::string("IMAGES/") + name;
      (void)write_dicom(folder / rel, s);
      files.push_back(rel);
      sop_uids.push_back(s.sop_instance_uid);
    }
    ++patient_index;
  }

  const fs::path dicomdir = folder / "DICOMDIR";
  std::error_code ec;
  fs::remove(dicomdir, ec);
  DicomDirInterface ddir;
  ddir.disableBackupMode();
  check(ddir.createNewDicomDir(DicomDirInterface::AP_GeneralPurpose, dicomdir.c_str(), "HILUM_PHANTOM"),
        "cannot create " + dicomdir.string());
  for (const std::string& rel : files)
    check(ddir.addDicomFile(rel.c_str(), folder.c_str()), "cannot add " + rel + " to the DICOMDIR");
  check(ddir.writeDicomDir(), "cannot write " + dicomdir.string());
  return sop_uids;
}

void set_dicomdir_file_id(const std::filesystem::path& dicomdir, std::size_t image, const std::string& file_id) {
  DcmDicomDir dir(dicomdir.c_str());
  check(dir.error(), "cannot read " + dicomdir.string());
  std::size_t seen = 0;
  DcmDirectoryRecord* target = nullptr;
  const auto visit = [&](auto&& self, DcmDirectoryRecord& record) -> void {
    for (unsigned long i = 0; i < record.cardSub() && target == nullptr; ++i) {
      DcmDirectoryRecord* sub = record.getSub(i);
      if (sub == nullptr) continue;
      if (sub->getRecordType() == ERT_Image) {
        if (seen++ == image) target = sub;
        continue;
      }
      self(self, *sub);
    }
  };
  visit(visit, dir.getRootRecord());
  if (target == nullptr) throw std::runtime_error("set_dicomdir_file_id: no IMAGE record " + std::to_string(image));
  check(target->putAndInsertString(DCM_ReferencedFileID, file_id.c_str()), "cannot set the Referenced File ID");
  check(dir.write(), "cannot write " + dicomdir.string());
}

}  // namespace hilum::testdata
