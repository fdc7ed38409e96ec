// Reading one DICOM file into a Radiograph. Every OFCondition is checked and turned into a
// hilum::dicom::Error here, at the boundary; declared sizes are checked against what the file
// holds before anything large is allocated.
#include "hilum/dicom/reader.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <system_error>
#include <thread>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmdata/dccodec.h>

#include "internal.hpp"

namespace fs = std::filesystem;

namespace hilum::dicom {
namespace {

Error make_error(ErrorKind kind, std::string message) { return Error{kind, std::move(message)}; }

using detail::trim;

// Whole value (all components, backslash-separated) of a string attribute, trimmed.
std::string get_string(DcmItem& item, const DcmTagKey& tag) {
  OFString value;
  if (item.findAndGetOFStringArray(tag, value).good()) return trim(value.c_str());
  return {};
}

// Component `pos` of a multi-valued string attribute, trimmed.
std::string get_string_at(DcmItem& item, const DcmTagKey& tag, unsigned long pos) {
  OFString value;
  if (item.findAndGetOFString(tag, value, pos).good()) return trim(value.c_str());
  return {};
}

std::optional<long> get_int(DcmItem& item, const DcmTagKey& tag) {
  Uint16 u = 0;
  if (item.findAndGetUint16(tag, u).good()) return static_cast<long>(u);
  Sint32 s = 0;
  if (item.findAndGetSint32(tag, s).good()) return static_cast<long>(s);  // IS (Number of Frames)
  return std::nullopt;
}

std::optional<double> get_double(DcmItem& item, const DcmTagKey& tag, unsigned long pos = 0) {
  Float64 v = 0.0;
  if (item.findAndGetFloat64(tag, v, pos).good() && std::isfinite(v)) return v;
  return std::nullopt;
}

unsigned long value_count(DcmItem& item, const DcmTagKey& tag) {
  DcmElement* el = nullptr;
  if (item.findAndGetElement(tag, el).good() && el != nullptr) return el->getVM();
  return 0;
}

// A Modality LUT or VOI LUT sequence item (PS3.3 C.11.1 / C.11.2).
Result<LookupTable> read_lut(DcmItem& item, bool pixel_signed, const char* what, const DcmTagKey& descriptor_tag = DCM_LUTDescriptor,
                             const DcmTagKey& data_tag = DCM_LUTData) {
  DcmElement* descriptor = nullptr;
  if (item.findAndGetElement(descriptor_tag, descriptor).bad() || descriptor == nullptr ||
      descriptor->getVM() < 3) {
    return make_error(ErrorKind::Corrupt, std::string(what) + ": missing or invalid LUT Descriptor");
  }
  std::array<long, 3> d{};
  for (unsigned long i = 0; i < 3; ++i) {
    Uint16 u = 0;
    Sint16 s = 0;
    if (descriptor->getUint16(u, i).good()) {
      d[i] = u;
    } else if (descriptor->getSint16(s, i).good()) {
      d[i] = s;
    } else {
      return make_error(ErrorKind::Corrupt, std::string(what) + ": unreadable LUT Descriptor");
    }
  }
  LookupTable lut;
  const long entries = d[0] == 0 ? 65536 : d[0];
  // The first mapped value is signed when the pixel values are (PS3.3 C.11.1.1.1).
  lut.first_mapped = pixel_signed ? static_cast<std::int16_t>(static_cast<std::uint16_t>(d[1]))
                                  : static_cast<std::int32_t>(static_cast<std::uint16_t>(d[1]));
  lut.bits_per_entry = static_cast<int>(d[2]);
  if (lut.bits_per_entry < 8 || lut.bits_per_entry > 16) {
    return make_error(ErrorKind::Corrupt, std::string(what) + ": LUT Descriptor says " +
                                              std::to_string(lut.bits_per_entry) +
                                              " bits per entry (8 to 16 allowed)");
  }
  const Uint16* data = nullptr;
  unsigned long count = 0;
  if (item.findAndGetUint16Array(data_tag, data, &count).bad() || data == nullptr || count == 0) {
    return make_error(ErrorKind::Corrupt, std::string(what) + ": missing LUT Data");
  }
  if (lut.bits_per_entry == 8 && static_cast<long>(count) * 2 >= entries && static_cast<long>(count) < entries) {
    // 8-bit entries packed two per 16-bit word (allowed for OW LUT Data).
    lut.data.reserve(static_cast<std::size_t>(entries));
    for (unsigned long i = 0; i < count && static_cast<long>(lut.data.size()) < entries; ++i) {
      lut.data.push_back(static_cast<std::uint16_t>(data[i] & 0xFF));
      if (static_cast<long>(lut.data.size()) < entries) lut.data.push_back(static_cast<std::uint16_t>(data[i] >> 8));
    }
  } else {
    const auto n = static_cast<std::size_t>(std::min<long>(entries, static_cast<long>(count)));
    lut.data.assign(data, data + n);
  }
  lut.explanation = get_string(item, DCM_LUTExplanation);
  lut.lut_type = get_string(item, DCM_ModalityLUTType);
  return lut;
}

// The Palette Color Lookup Tables of a PALETTE COLOR image (PS3.3 C.7.6.3.1.5-6): red, green and
// blue of each stored index.
struct Palette {
  LookupTable red, green, blue;
  std::int32_t max_value = 255;

  [[nodiscard]] ColourPlanes planes_of(const std::vector<std::int32_t>& index) const {
    ColourPlanes p;
    p.red.resize(index.size());
    p.green.resize(index.size());
    p.blue.resize(index.size());
    for (std::size_t i = 0; i < index.size(); ++i) {
      p.red[i] = red.lookup(index[i]);
      p.green[i] = green.lookup(index[i]);
      p.blue[i] = blue.lookup(index[i]);
    }
    return p;
  }
};

Result<Palette> read_palette(DcmItem& ds, bool pixel_signed) {
  if (ds.tagExists(DCM_SegmentedRedPaletteColorLookupTableData)) {
    return make_error(ErrorKind::Unsupported, "segmented palette colour lookup tables are not supported");
  }
  auto red = read_lut(ds, pixel_signed, "Red Palette Color Lookup Table", DCM_RedPaletteColorLookupTableDescriptor,
                      DCM_RedPaletteColorLookupTableData);
  if (!red) return red.error();
  auto green = read_lut(ds, pixel_signed, "Green Palette Color Lookup Table", DCM_GreenPaletteColorLookupTableDescriptor,
                        DCM_GreenPaletteColorLookupTableData);
  if (!green) return green.error();
  auto blue = read_lut(ds, pixel_signed, "Blue Palette Color Lookup Table", DCM_BluePaletteColorLookupTableDescriptor,
                       DCM_BluePaletteColorLookupTableData);
  if (!blue) return blue.error();
  if (red->bits_per_entry != green->bits_per_entry || red->bits_per_entry != blue->bits_per_entry) {
    return make_error(ErrorKind::Corrupt, "invalid image: the palette's red, green and blue tables differ in bits per entry");
  }
  Palette p{std::move(red.value()), std::move(green.value()), std::move(blue.value())};
  p.max_value = static_cast<std::int32_t>((1u << p.red.bits_per_entry) - 1u);
  return p;
}

// The largest value a sample of `bits_stored` bits holds.
std::int32_t max_sample(const Radiograph& r) { return static_cast<std::int32_t>((1u << std::clamp(r.bits_stored, 1, 16)) - 1u); }

// A colour image from here on is the grey of its colours, 0..max_value, shown as it is: the
// modality and VOI stages of the file belong to greyscale images (PS3.3 C.11) and are dropped.
void finish_colour(Radiograph& r, GreyOfColour grey, std::int32_t max_value) {
  r.stored = std::move(grey.grey);
  r.coloured_share = grey.coloured_share;
  int bits = 1;
  while (bits < 16 && (1 << bits) - 1 < max_value) ++bits;
  r.bits_stored = bits;
  r.high_bit = bits - 1;
  r.bits_allocated = bits > 8 ? 16 : 8;
  r.is_signed = false;
  r.rescale_slope = 1.0;
  r.rescale_intercept = 0.0;
  r.rescale_type.clear();
  r.modality_lut.reset();
  r.voi_luts.clear();
  r.pixel_padding_value.reset();
  r.presentation_shape = PresentationShape::Absent;
  r.windows = {Window{(max_value + 1) / 2.0, max_value + 1.0, "the grey of the colour image", VoiFunction::Linear}};
}

// Does the start of a file without the "DICM" marker look like a DICOM data set?
// (ACR-NEMA files start with a group 0x0008 element, sometimes group 0x0000 or 0x0002).
bool looks_like_dataset(const std::array<unsigned char, 132>& head, std::size_t n) {
  if (n < 8) return false;
  const unsigned le_group = head[0] | (head[1] << 8);
  const unsigned be_group = (head[0] << 8) | head[1];
  const auto plausible = [](unsigned g) { return g == 0x0000 || g == 0x0002 || g == 0x0008; };
  return plausible(le_group) || plausible(be_group);
}

struct FileHead {
  bool has_marker = false;
  bool plausible = false;
};

Result<FileHead> sniff(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorKind::FileNotFound, "cannot open file: " + path.string());
  std::array<unsigned char, 132> head{};
  in.read(reinterpret_cast<char*>(head.data()), static_cast<std::streamsize>(head.size()));
  const auto n = static_cast<std::size_t>(in.gcount());
  FileHead h;
  h.has_marker = n == 132 && std::memcmp(head.data() + 128, "DICM", 4) == 0;
  h.plausible = h.has_marker || looks_like_dataset(head, n);
  return h;
}

// Bytes of the file before the Pixel Data value, as DCMTK would encode what precedes it
// (used only to say how much pixel data a truncated file still holds).
std::uint64_t bytes_before_pixel_value(DcmFileFormat& ff, bool has_marker) {
  DcmDataset* ds = ff.getDataset();
  const E_TransferSyntax xfer = ds->getOriginalXfer();
  std::uint64_t n = 0;  // the meta information's length includes the 128-byte preamble and "DICM"
  if (has_marker) n += ff.getMetaInfo()->calcElementLength(EXS_LittleEndianExplicit, EET_ExplicitLength);
  n += ds->calcElementLength(xfer, EET_ExplicitLength);
  n += DcmXfer(xfer).isExplicitVR() ? 12 : 8;  // Pixel Data tag, VR, length
  return n;
}

void read_metadata(DcmFileFormat& ff, Metadata& m) {
  DcmDataset& ds = *ff.getDataset();
  DcmMetaInfo& meta = *ff.getMetaInfo();
  m.sop_class_uid = get_string(ds, DCM_SOPClassUID);
  if (m.sop_class_uid.empty()) m.sop_class_uid = get_string(meta, DCM_MediaStorageSOPClassUID);
  m.sop_class_name = detail::sop_class_display_name(m.sop_class_uid);
  m.sop_instance_uid = get_string(ds, DCM_SOPInstanceUID);
  if (m.sop_instance_uid.empty()) m.sop_instance_uid = get_string(meta, DCM_MediaStorageSOPInstanceUID);
  m.study_instance_uid = get_string(ds, DCM_StudyInstanceUID);
  m.series_instance_uid = get_string(ds, DCM_SeriesInstanceUID);
  const DcmXfer xfer(ds.getOriginalXfer());
  m.transfer_syntax_uid = get_string(meta, DCM_TransferSyntaxUID);
  if (m.transfer_syntax_uid.empty()) m.transfer_syntax_uid = xfer.getXferID();
  m.transfer_syntax_name = xfer.getXferName();
  // DCMTK names what it read the data set as; a UID it does not know is named here, or said unknown.
  if (detail::unknown_to_dcmtk(m.transfer_syntax_uid)) {
    const std::string htj2k = detail::htj2k_name(m.transfer_syntax_uid);
    m.transfer_syntax_name = htj2k.empty() ? "unknown transfer syntax (read as " + m.transfer_syntax_name + ")" : htj2k;
  }
  m.patient_id = get_string(ds, DCM_PatientID);
  m.patient_name = get_string(ds, DCM_PatientName);
  m.patient_birth_date = get_string(ds, DCM_PatientBirthDate);
  m.patient_sex = get_string(ds, DCM_PatientSex);
  m.patient_age = get_string(ds, DCM_PatientAge);
  m.accession_number = get_string(ds, DCM_AccessionNumber);
  m.study_id = get_string(ds, DCM_StudyID);
  m.study_date = get_string(ds, DCM_StudyDate);
  m.study_time = get_string(ds, DCM_StudyTime);
  m.study_description = get_string(ds, DCM_StudyDescription);
  m.series_description = get_string(ds, DCM_SeriesDescription);
  m.series_number = get_string(ds, DCM_SeriesNumber);
  m.instance_number = get_string(ds, DCM_InstanceNumber);
  m.modality = get_string(ds, DCM_Modality);
  m.view_position = get_string(ds, DCM_ViewPosition);
  m.body_part_examined = get_string(ds, DCM_BodyPartExamined);
  m.laterality = get_string(ds, DCM_ImageLaterality);
  if (m.laterality.empty()) m.laterality = get_string(ds, DCM_Laterality);
  m.acquisition_date = get_string(ds, DCM_AcquisitionDate);
  if (m.acquisition_date.empty()) m.acquisition_date = get_string(ds, DCM_ContentDate);
  m.acquisition_time = get_string(ds, DCM_AcquisitionTime);
  if (m.acquisition_time.empty()) m.acquisition_time = get_string(ds, DCM_ContentTime);
  m.manufacturer = get_string(ds, DCM_Manufacturer);
  m.institution_name = get_string(ds, DCM_InstitutionName);
  m.burned_in_annotation = get_string(ds, DCM_BurnedInAnnotation);
  const std::array<std::pair<DcmTagKey, const char*>, 3> spacing_tags{{
      {DCM_PixelSpacing, "PixelSpacing"},
      {DCM_ImagerPixelSpacing, "ImagerPixelSpacing"},
      {DCM_NominalScannedPixelSpacing, "NominalScannedPixelSpacing"},
  }};
  for (const auto& [tag, name] : spacing_tags) {
    const auto r = get_double(ds, tag, 0);
    const auto c = get_double(ds, tag, 1);
    if (r && c && *r > 0 && *c > 0) {
      m.pixel_spacing = PixelSpacing{*r, *c, name};
      break;
    }
  }
  m.has_part10_header = meta.card() > 0;
}

// Stored values from native (uncompressed, already in host byte order) words.
template <typename Word>
void unpack(const Word* words, std::size_t n, const Radiograph& r, std::vector<std::int32_t>& out) {
  const int shift = r.high_bit - r.bits_stored + 1;
  const std::uint32_t mask = r.bits_stored >= 32 ? 0xFFFFFFFFu : ((1u << r.bits_stored) - 1u);
  const std::uint32_t sign_bit = 1u << (r.bits_stored - 1);
  out.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t v = (static_cast<std::uint32_t>(words[i]) >> shift) & mask;
    if (r.is_signed && (v & sign_bit) != 0u) {
      out[i] = static_cast<std::int32_t>(v) - static_cast<std::int32_t>(1u << r.bits_stored);
    } else {
      out[i] = static_cast<std::int32_t>(v);
    }
  }
}

}  // namespace

std::string detail::htj2k_name(const std::string& uid) {
  if (uid == "1.2.840.10008.1.2.4.201") return "High-Throughput JPEG 2000 Image Compression (Lossless Only)";
  if (uid == "1.2.840.10008.1.2.4.202") return "High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only)";
  if (uid == "1.2.840.10008.1.2.4.203") return "High-Throughput JPEG 2000 Image Compression";
  return {};
}

bool detail::unknown_to_dcmtk(const std::string& uid) {
  return !uid.empty() && DcmXfer(uid.c_str()).getXfer() == EXS_Unknown;
}

bool detail::encoded_under_unknown_syntax(DcmFileFormat& ff) {
  OFString uid;
  if (ff.getMetaInfo() == nullptr || ff.getMetaInfo()->findAndGetOFString(DCM_TransferSyntaxUID, uid).bad() ||
      !unknown_to_dcmtk(uid.c_str()) || ff.getDataset() == nullptr) {
    return false;
  }
  DcmElement* element = nullptr;
  if (ff.getDataset()->findAndGetElement(DCM_PixelData, element).bad()) return false;
  auto* pixel_data = dynamic_cast<DcmPixelData*>(element);
  DcmPixelSequence* sequence = nullptr;
  return pixel_data != nullptr && pixel_data->getEncapsulatedRepresentation(ff.getDataset()->getOriginalXfer(), nullptr, sequence).good() &&
         sequence != nullptr;
}

namespace {

bool is_j2k(E_TransferSyntax xfer) {
  return xfer == EXS_JPEG2000LosslessOnly || xfer == EXS_JPEG2000 ||
         xfer == EXS_JPEG2000MulticomponentLosslessOnly || xfer == EXS_JPEG2000Multicomponent;
}

// The encapsulated bytes of frame 1: item 0 is the Basic Offset Table; with one fragment per frame,
// frame 1 is item 1, otherwise frame 1 starts in item 1 and the decoder stops at its end marker.
// Empty when the pixel data is not encapsulated or has no fragment.
std::vector<std::uint8_t> first_frame_bytes(DcmPixelData& pixel_data, E_TransferSyntax xfer, const Radiograph& r) {
  std::vector<std::uint8_t> stream;
  DcmPixelSequence* seq = nullptr;
  if (pixel_data.getEncapsulatedRepresentation(xfer, nullptr, seq).bad() || seq == nullptr) return stream;
  const unsigned long items = seq->card();
  if (items < 2) return stream;
  const unsigned long last = (r.number_of_frames > 1 && items - 1 == static_cast<unsigned long>(r.number_of_frames)) ? 1 : items - 1;
  for (unsigned long i = 1; i <= last; ++i) {
    DcmPixelItem* item = nullptr;
    if (seq->getItem(item, i).bad() || item == nullptr) break;
    Uint8* bytes = nullptr;
    if (item->getUint8Array(bytes).bad() || bytes == nullptr) continue;
    stream.insert(stream.end(), bytes, bytes + item->getLength());
  }
  return stream;
}

// JPEG 2000 frame 1 through OpenJPEG (DCMTK 3.6.7 has no JPEG 2000 decoder): its samples, or, for
// a three-sample colour image (colour != null), its planes in *colour and no samples.
Result<std::vector<std::int32_t>> decode_j2k_pixels(DcmPixelData& pixel_data, E_TransferSyntax xfer,
                                                    Radiograph& r, const ReadOptions& options, ColourPlanes* colour) {
  DcmPixelSequence* seq = nullptr;
  if (pixel_data.getEncapsulatedRepresentation(xfer, nullptr, seq).bad() || seq == nullptr) {
    return make_error(ErrorKind::Corrupt, "JPEG 2000 pixel data is not encapsulated");
  }
  if (seq->card() < 2) return make_error(ErrorKind::Truncated, "truncated pixel data: no JPEG 2000 fragment");
  const std::vector<std::uint8_t> stream = first_frame_bytes(pixel_data, xfer, r);
  if (stream.empty()) return make_error(ErrorKind::Truncated, "truncated pixel data: empty JPEG 2000 fragment");
  auto frame = detail::decode_j2k(stream.data(), stream.size(), r.rows, r.columns, options.limits.max_pixels,
                                 options.decoder_threads > 0 ? options.decoder_threads
                                                             : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())),
                                 options.min_side, colour != nullptr ? 3 : 1);
  if (!frame) return frame.error();
  if (colour != nullptr) {
    // Three components: RGB after OpenJPEG's inverse colour transform (YBR_RCT / YBR_ICT, RGB),
    // or Y, Cb, Cr as they were coded (YBR_FULL).
    r.rows = frame->rows;
    r.columns = frame->columns;
    r.reduction = frame->reduction;
    const auto pixels = frame->samples.size();
    std::vector<std::int32_t> planar;
    planar.reserve(3 * pixels);
    for (const auto* plane : {&frame->samples, &frame->second, &frame->third}) {
      for (const std::int32_t v : *plane) planar.push_back(std::clamp(v, 0, max_sample(r)));
    }
    const auto model = detail::colour_model_of(r.colour_photometric) == detail::ColourModel::YbrFull ? detail::ColourModel::YbrFull
                                                                                                       : detail::ColourModel::Rgb;
    *colour = detail::planes_of(planar, pixels, model, true, max_sample(r));
    return std::vector<std::int32_t>{};
  }
  r.rows = frame->rows;
  r.columns = frame->columns;
  r.reduction = frame->reduction;
  if (frame->precision > 16) {
    return make_error(ErrorKind::Unsupported, "JPEG 2000 precision " + std::to_string(frame->precision) +
                                                  " bits is not supported (at most 16)");
  }
  if (frame->is_signed != r.is_signed) {
    // Encoders disagree with the header now and then (e.g. signed CT data coded as unsigned);
    // like GDCM and pydicom, trust the DICOM Pixel Representation and reinterpret the bits.
    const std::uint32_t mask = (1u << r.bits_stored) - 1u;
    const std::uint32_t sign_bit = 1u << (r.bits_stored - 1);
    for (auto& v : frame->samples) {
      const std::uint32_t bits = static_cast<std::uint32_t>(v) & mask;
      v = (r.is_signed && (bits & sign_bit) != 0u) ? static_cast<std::int32_t>(bits) - static_cast<std::int32_t>(mask) - 1
                                                   : static_cast<std::int32_t>(bits);
    }
  }
  return std::move(frame->samples);
}

// Lossy 8-bit JPEG frame 1 at a reduced scale when the consumer needs a small image
// (ReadOptions::min_side; detail::decode_jpeg_scaled); nullopt: decode in full.
std::optional<detail::ScaledJpeg> scaled_jpeg(DcmPixelData& pixel_data, E_TransferSyntax xfer, const Radiograph& r,
                                              const ReadOptions& options) {
  if (options.min_side <= 0 || (xfer != EXS_JPEGProcess1 && xfer != EXS_JPEGProcess2_4)) return std::nullopt;
  if (r.bits_allocated != 8 || r.bits_stored != 8 || r.high_bit != 7 || r.is_signed) return std::nullopt;
  const std::vector<std::uint8_t> stream = first_frame_bytes(pixel_data, xfer, r);
  if (stream.empty()) return std::nullopt;
  return detail::decode_jpeg_scaled(stream.data(), stream.size(), r.rows, r.columns, options.min_side);
}

// DCMTK 3.6.7's JPEG decoder (dcmjpeg: processes 1 to 14 and SV1), before decoding, walks the
// first fragment's markers to the frame header for its sample precision, and never steps past a
// TEM marker (FF01): a fragment with one before its frame header makes it loop forever (found by
// fuzzing; the walk is DJCodecDecoder::scanJpegDataForBitDepth). The same walk here, which stops
// where DCMTK's stops (a frame header, a byte that is no marker), steps as it steps (a segment's
// length, two bytes for a marker alone, one for a fill byte FF) and says whether it meets a TEM.
bool dcmjpeg_would_loop(E_TransferSyntax xfer, DcmPixelData& pixel_data) {
  switch (xfer) {
    case EXS_JPEGProcess1: case EXS_JPEGProcess2_4: case EXS_JPEGProcess3_5: case EXS_JPEGProcess6_8:
    case EXS_JPEGProcess7_9: case EXS_JPEGProcess10_12: case EXS_JPEGProcess11_13: case EXS_JPEGProcess14:
    case EXS_JPEGProcess15: case EXS_JPEGProcess16_18: case EXS_JPEGProcess17_19: case EXS_JPEGProcess20_22:
    case EXS_JPEGProcess21_23: case EXS_JPEGProcess24_26: case EXS_JPEGProcess25_27: case EXS_JPEGProcess28:
    case EXS_JPEGProcess29: case EXS_JPEGProcess14SV1: break;
    default: return false;
  }
  DcmPixelSequence* sequence = nullptr;
  DcmPixelItem* item = nullptr;
  Uint8* d = nullptr;
  if (pixel_data.getEncapsulatedRepresentation(xfer, nullptr, sequence).bad() || sequence == nullptr ||
      sequence->getItem(item, 1).bad() || item == nullptr || item->getUint8Array(d).bad() || d == nullptr) {
    return false;  // DCMTK refuses these itself
  }
  const std::size_t n = item->getLength();
  for (std::size_t at = 0; at + 4 < n;) {
    if (d[at] != 0xFF) return false;
    const unsigned m = d[at + 1];
    if (m == 0x01) return true;  // TEM: where DCMTK stays
    const bool with_length = m == 0xC4 || m == 0xC8 || m == 0xCC || (m >= 0xDA && m <= 0xFE);
    const bool alone = (m >= 0xD0 && m <= 0xD9) || (m >= 0x03 && m <= 0xBF);  // RSTn, SOI, EOI, reserved
    if (with_length) at += 2 + (static_cast<std::size_t>(d[at + 2]) << 8 | d[at + 3]);
    else if (alone) at += 2;
    else if (m == 0xFF) at += 1;  // a fill byte: DCMTK steps one byte (found by fuzzing: FF FF 01 hung)
    else return false;  // a frame header (DCMTK has its precision) or no marker (DCMTK gives up)
  }
  return false;
}

}  // namespace

static Result<Radiograph> read_radiograph_unguarded(const fs::path& path, const ReadOptions& options) {
  register_codecs();
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) return make_error(ErrorKind::FileNotFound, "file not found: " + path.string());
  if (fs::is_directory(status)) return make_error(ErrorKind::FileNotFound, "is a folder, not a file: " + path.string());
  const std::uint64_t file_size = fs::file_size(path, ec);
  if (ec) return make_error(ErrorKind::FileNotFound, "cannot read file size: " + path.string());

  auto head = sniff(path);
  if (!head) return head.error();
  if (!head->plausible) {
    return make_error(ErrorKind::NotDicom, "not a DICOM file: no 'DICM' marker at byte 128 and no DICOM data element at the start");
  }

  DcmFileFormat ff;
  // Large values (pixel data) stay in the file until asked for: nothing big is allocated here.
  OFCondition cond = ff.loadFile(path.c_str(), EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_autoDetect);
  if (cond.bad()) {
    // A file that ends inside an element is the most common damage: say how much is missing.
    DcmFileFormat partial;
    if (partial.loadFileUntilTag(path.c_str(), EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_autoDetect,
                                 DCM_PixelData).good()) {
      DcmDataset* pds = partial.getDataset();
      Uint16 rows = 0, cols = 0, ba = 0, spp = 1;
      if (pds->findAndGetUint16(DCM_Rows, rows).good() && pds->findAndGetUint16(DCM_Columns, cols).good() &&
          pds->findAndGetUint16(DCM_BitsAllocated, ba).good() &&
          !DcmXfer(pds->getOriginalXfer()).isEncapsulated()) {
        pds->findAndGetUint16(DCM_SamplesPerPixel, spp);
        const std::uint64_t expected = std::uint64_t{rows} * cols * std::max<Uint16>(spp, 1) * ((ba + 7u) / 8u);
        const std::uint64_t before = bytes_before_pixel_value(partial, head->has_marker);
        const std::uint64_t found = file_size > before ? file_size - before : 0;
        if (found < expected) {
          return make_error(ErrorKind::Truncated, "truncated pixel data: expected " + detail::with_thousands(expected) +
                                                      " bytes, found " + detail::with_thousands(found));
        }
      }
    }
    if (cond == EC_StreamNotifyClient || cond == EC_ItemEnd || cond == EC_EndOfStream) {
      return make_error(ErrorKind::Truncated, "truncated file: it ends inside a data element (" +
                                                  detail::with_thousands(file_size) + " bytes; DCMTK: " + cond.text() + ")");
    }
    return make_error(ErrorKind::Corrupt, std::string("cannot parse DICOM data: ") + cond.text());
  }

  Radiograph r;
  read_metadata(ff, r.meta);
  DcmDataset& ds = *ff.getDataset();
  const E_TransferSyntax xfer = ds.getOriginalXfer();

  if (r.meta.sop_class_uid == UID_MediaStorageDirectoryStorage) {
    return make_error(ErrorKind::NotAnImage, "not an image: a DICOMDIR (media directory); open it as a DICOMDIR");
  }
  if (!ds.tagExists(DCM_PixelData)) {
    if (ds.tagExists(DCM_FloatPixelData) || ds.tagExists(DCM_DoubleFloatPixelData)) {
      return make_error(ErrorKind::Unsupported, "floating-point pixel data is not supported for a radiograph");
    }
    std::string what = r.meta.sop_class_name.empty() ? std::string("no pixel data") : r.meta.sop_class_name;
    return make_error(ErrorKind::NotAnImage, "not an image: " + what);
  }

  // Image Pixel module.
  const auto spp = get_int(ds, DCM_SamplesPerPixel).value_or(1);
  std::string photometric = get_string(ds, DCM_PhotometricInterpretation);
  if (photometric.empty() && !r.meta.has_part10_header) photometric = "MONOCHROME2";  // ACR-NEMA default
  const detail::ColourModel colour = detail::colour_model_of(photometric);
  if (photometric == "MONOCHROME1") {
    r.photometric = Photometric::Monochrome1;
  } else if (photometric == "MONOCHROME2") {
    r.photometric = Photometric::Monochrome2;
  } else if (colour != detail::ColourModel::None) {
    r.photometric = Photometric::Monochrome2;  // shown as the grey of its colours
    r.colour_photometric = photometric;
  } else if (photometric.empty()) {
    return make_error(ErrorKind::Corrupt, "invalid image: Photometric Interpretation is missing");
  } else {
    return make_error(ErrorKind::NotARadiograph, "unsupported photometric interpretation " + photometric + " for a chest radiograph");
  }
  const bool three_samples = colour != detail::ColourModel::None && colour != detail::ColourModel::Palette;
  if (spp != (three_samples ? 3 : 1)) {
    if (colour != detail::ColourModel::None) {
      return make_error(ErrorKind::Corrupt, "invalid image: " + std::to_string(spp) + " samples per pixel for photometric interpretation " +
                                                photometric + " (it needs " + (three_samples ? "3" : "1") + ")");
    }
    return make_error(ErrorKind::NotARadiograph, std::to_string(spp) + " samples per pixel: not a grayscale radiograph");
  }
  const auto rows = get_int(ds, DCM_Rows);
  const auto cols = get_int(ds, DCM_Columns);
  const auto ba = get_int(ds, DCM_BitsAllocated);
  if (!rows || !cols || *rows <= 0 || *cols <= 0) return make_error(ErrorKind::Corrupt, "missing or zero Rows/Columns");
  if (!ba) return make_error(ErrorKind::Corrupt, "missing Bits Allocated");
  r.rows = static_cast<int>(*rows);
  r.columns = static_cast<int>(*cols);
  r.full_rows = r.rows;
  r.full_columns = r.columns;
  r.bits_allocated = static_cast<int>(*ba);
  r.bits_stored = static_cast<int>(get_int(ds, DCM_BitsStored).value_or(*ba));
  r.high_bit = static_cast<int>(get_int(ds, DCM_HighBit).value_or(r.bits_stored - 1));
  r.is_signed = get_int(ds, DCM_PixelRepresentation).value_or(0) == 1;
  r.number_of_frames = static_cast<int>(std::clamp<long>(get_int(ds, DCM_NumberOfFrames).value_or(1), 1, 1L << 20));
  if (three_samples) r.is_signed = false;  // colour samples are unsigned (PS3.3 C.7.6.3.1.4)
  if (r.bits_allocated != 8 && r.bits_allocated != 16) {
    return make_error(ErrorKind::Unsupported, "bits allocated " + std::to_string(r.bits_allocated) +
                                                  " is not supported for a radiograph (8 or 16)");
  }
  if (r.bits_stored < 1 || r.bits_stored > r.bits_allocated || r.high_bit < r.bits_stored - 1 ||
      r.high_bit >= r.bits_allocated) {
    return make_error(ErrorKind::Corrupt, "inconsistent pixel module: bits allocated " + std::to_string(r.bits_allocated) +
                                              ", bits stored " + std::to_string(r.bits_stored) + ", high bit " +
                                              std::to_string(r.high_bit));
  }
  std::uint64_t pixels = static_cast<std::uint64_t>(r.rows) * static_cast<std::uint64_t>(r.columns);
  if (r.rows > options.limits.max_rows || r.columns > options.limits.max_columns || pixels > options.limits.max_pixels) {
    return make_error(ErrorKind::TooLarge, "image too large: " + std::to_string(r.columns) + " x " + std::to_string(r.rows) +
                                               " pixels (limit " + std::to_string(options.limits.max_columns) + " x " +
                                               std::to_string(options.limits.max_rows) + ", " +
                                               detail::with_thousands(options.limits.max_pixels) + " pixels)");
  }

  std::optional<Palette> palette;
  if (colour == detail::ColourModel::Palette) {
    auto read = read_palette(ds, r.is_signed);
    if (!read) return read.error();
    palette = std::move(read.value());
  }

  // Modality LUT stage.
  r.rescale_slope = get_double(ds, DCM_RescaleSlope).value_or(1.0);
  r.rescale_intercept = get_double(ds, DCM_RescaleIntercept).value_or(0.0);
  if (r.rescale_slope == 0.0) r.rescale_slope = 1.0;  // a zero slope is invalid; DCMTK ignores it too
  r.rescale_type = get_string(ds, DCM_RescaleType);
  DcmItem* mlut_item = nullptr;
  if (ds.findAndGetSequenceItem(DCM_ModalityLUTSequence, mlut_item, 0).good() && mlut_item != nullptr) {
    auto lut = read_lut(*mlut_item, r.is_signed, "Modality LUT");
    if (!lut) return lut.error();
    r.modality_lut = std::move(lut.value());
  }

  // VOI stage: window presets (invalid widths dropped) and VOI LUT items.
  const std::string function = get_string(ds, DCM_VOILUTFunction);
  VoiFunction voi_function = VoiFunction::Linear;
  if (function == "LINEAR_EXACT") voi_function = VoiFunction::LinearExact;
  else if (function == "SIGMOID") voi_function = VoiFunction::Sigmoid;
  const unsigned long n_windows = std::min(value_count(ds, DCM_WindowCenter), value_count(ds, DCM_WindowWidth));
  for (unsigned long i = 0; i < n_windows; ++i) {
    const auto c = get_double(ds, DCM_WindowCenter, i);
    const auto w = get_double(ds, DCM_WindowWidth, i);
    if (!c || !w) continue;
    if (*w <= 0.0 || (voi_function == VoiFunction::Linear && *w < 1.0)) continue;
    r.windows.push_back(Window{*c, *w, get_string_at(ds, DCM_WindowCenterWidthExplanation, i), voi_function});
  }
  for (unsigned long i = 0;; ++i) {
    DcmItem* item = nullptr;
    if (ds.findAndGetSequenceItem(DCM_VOILUTSequence, item, static_cast<int>(i)).bad() || item == nullptr) break;
    auto lut = read_lut(*item, r.is_signed, "VOI LUT");
    if (lut) r.voi_luts.push_back(std::move(lut.value()));
  }
  {
    Uint16 u = 0;
    Sint16 v = 0;
    if (ds.findAndGetUint16(DCM_PixelPaddingValue, u).good()) {
      r.pixel_padding_value = r.is_signed ? static_cast<std::int16_t>(u) : static_cast<std::int32_t>(u);
    } else if (ds.findAndGetSint16(DCM_PixelPaddingValue, v).good()) {
      r.pixel_padding_value = v;
    }
  }
  const std::string shape = get_string(ds, DCM_PresentationLUTShape);
  if (shape == "IDENTITY") r.presentation_shape = PresentationShape::Identity;
  else if (shape == "INVERSE") r.presentation_shape = PresentationShape::Inverse;

  if (!options.decode_pixels) return r;
  ColourPlanes colour_planes;  // a three-sample colour image's frame 1

  // Pixel data.
  DcmElement* pixel_element = nullptr;
  if (ds.findAndGetElement(DCM_PixelData, pixel_element).bad() || pixel_element == nullptr) {
    return make_error(ErrorKind::Corrupt, "unreadable Pixel Data element");
  }
  auto* pixel_data = dynamic_cast<DcmPixelData*>(pixel_element);
  if (pixel_data == nullptr) return make_error(ErrorKind::Corrupt, "unreadable Pixel Data element");
  const DcmXfer xfer_info(xfer);
  const std::uint64_t bytes_per_word = static_cast<std::uint64_t>(r.bits_allocated / 8);
  const std::uint64_t frame_bytes = detail::stored_samples(colour, pixels) * bytes_per_word;

  const bool htj2k = !detail::htj2k_name(r.meta.transfer_syntax_uid).empty();
  if (!htj2k && detail::encoded_under_unknown_syntax(ff)) {
    return make_error(ErrorKind::Unsupported, "unsupported transfer syntax " + r.meta.transfer_syntax_uid + " (unknown to this reader)");
  }
  if (xfer_info.isEncapsulated() || htj2k) {
    if (is_j2k(xfer) || htj2k) {
      ReadOptions j2k_options = options;
      if (colour == detail::ColourModel::Palette) j2k_options.min_side = 0;  // a reduced level would blend palette indices
      auto samples = decode_j2k_pixels(*pixel_data, xfer, r, j2k_options, three_samples ? &colour_planes : nullptr);
      if (!samples) return samples.error();
      r.stored = std::move(samples.value());
      pixels = static_cast<std::uint64_t>(r.rows) * static_cast<std::uint64_t>(r.columns);  // reduced (min_side)
    } else if (auto scaled = colour == detail::ColourModel::None ? scaled_jpeg(*pixel_data, xfer, r, options) : std::nullopt) {
      r.stored = std::move(scaled->samples);
      r.rows = scaled->rows;
      r.columns = scaled->columns;
      r.reduction = scaled->reduction;
      pixels = static_cast<std::uint64_t>(r.rows) * static_cast<std::uint64_t>(r.columns);
    } else {
      if (!DcmCodecList::canChangeCoding(xfer, EXS_LittleEndianExplicit)) {
        return make_error(ErrorKind::Unsupported, "unsupported transfer syntax " + r.meta.transfer_syntax_name + " (" +
                                                      r.meta.transfer_syntax_uid + ")");
      }
      // DCMTK decompresses every frame: bound the whole allocation first.
      if (pixels * static_cast<std::uint64_t>(r.number_of_frames) > options.limits.max_pixels) {
        return make_error(ErrorKind::TooLarge, "image too large: " + std::to_string(r.number_of_frames) + " frames of " +
                                                   std::to_string(r.columns) + " x " + std::to_string(r.rows));
      }
      if (dcmjpeg_would_loop(xfer, *pixel_data)) {
        return make_error(ErrorKind::DecodeFailed, "cannot decode " + r.meta.transfer_syntax_name +
                                                       " pixel data: a TEM marker before the JPEG frame header (damaged stream)");
      }
      cond = ds.chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
      if (cond.bad() || !ds.canWriteXfer(EXS_LittleEndianExplicit)) {
        return make_error(ErrorKind::DecodeFailed, "cannot decode " + r.meta.transfer_syntax_name + " pixel data: " +
                                                       (cond.bad() ? cond.text() : "codec refused the data"));
      }
    }
  } else if (pixel_data->getLength() < frame_bytes) {
    return make_error(ErrorKind::Truncated, "truncated pixel data: expected " + detail::with_thousands(frame_bytes) +
                                                " bytes, found " + detail::with_thousands(pixel_data->getLength()));
  }

  if (r.stored.empty() && colour_planes.red.empty()) {
    // Native data (now also what the codec produced), in host byte order. A codec may have
    // changed a colour image's layout: DCMTK's JPEG decoder turns YBR into RGB, the RLE decoder
    // writes one plane after another; the dataset then says so.
    detail::ColourModel layout = colour;
    bool planar = false;
    if (three_samples) {
      layout = detail::colour_model_of(get_string(ds, DCM_PhotometricInterpretation));
      if (layout == detail::ColourModel::None || layout == detail::ColourModel::Palette) layout = colour;
      planar = get_int(ds, DCM_PlanarConfiguration).value_or(0) == 1;
    }
    const std::uint64_t samples_now = detail::stored_samples(layout, pixels);
    const std::uint64_t bytes_now = samples_now * bytes_per_word;
    if (pixel_data->getLength() < bytes_now) {
      return make_error(ErrorKind::Truncated, "truncated pixel data after decoding: expected " +
                                                  detail::with_thousands(bytes_now) + " bytes, found " +
                                                  detail::with_thousands(pixel_data->getLength()));
    }
    std::vector<std::int32_t> colour_samples;  // a colour image's samples as stored, before they become planes
    std::vector<std::int32_t>& out = three_samples ? colour_samples : r.stored;
    if (r.bits_allocated == 8) {
      Uint8* words = nullptr;
      cond = pixel_data->getUint8Array(words);
      if (cond.bad() || words == nullptr) return make_error(ErrorKind::Corrupt, std::string("cannot read pixel data: ") + cond.text());
      unpack(words, samples_now, r, out);
    } else {
      Uint16* words = nullptr;
      cond = pixel_data->getUint16Array(words);
      if (cond.bad() || words == nullptr) return make_error(ErrorKind::Corrupt, std::string("cannot read pixel data: ") + cond.text());
      unpack(words, samples_now, r, out);
    }
    if (three_samples) colour_planes = detail::planes_of(colour_samples, pixels, layout, planar, max_sample(r));
  }
  if (three_samples) {
    finish_colour(r, grey_of(colour_planes, max_sample(r)), max_sample(r));
  } else if (palette) {
    finish_colour(r, grey_of(palette->planes_of(r.stored), palette->max_value), palette->max_value);
  }
  if (r.stored.size() != pixels) {
    return make_error(ErrorKind::DecodeFailed, "decoded " + detail::with_thousands(r.stored.size()) + " pixels, expected " +
                                                   detail::with_thousands(pixels));
  }

  // Modality values.
  r.modality.resize(pixels);
  if (r.modality_lut) {
    for (std::size_t i = 0; i < pixels; ++i) r.modality[i] = static_cast<float>(r.modality_lut->lookup(r.stored[i]));
  } else {
    const double slope = r.rescale_slope;
    const double intercept = r.rescale_intercept;
    for (std::size_t i = 0; i < pixels; ++i) r.modality[i] = static_cast<float>(r.stored[i] * slope + intercept);
  }
  const auto [mn, mx] = std::minmax_element(r.modality.begin(), r.modality.end());
  r.min_modality = *mn;
  r.max_modality = *mx;
  return r;
}

std::vector<TransferSyntaxInfo> supported_transfer_syntaxes() {
  const std::array<E_TransferSyntax, 17> all{
      EXS_LittleEndianImplicit, EXS_LittleEndianExplicit, EXS_BigEndianExplicit, EXS_DeflatedLittleEndianExplicit,
      EXS_RLELossless, EXS_JPEGProcess1, EXS_JPEGProcess2_4, EXS_JPEGProcess14, EXS_JPEGProcess14SV1,
      EXS_JPEGLSLossless, EXS_JPEGLSLossy, EXS_JPEG2000LosslessOnly, EXS_JPEG2000,
      EXS_JPEG2000MulticomponentLosslessOnly, EXS_JPEG2000Multicomponent, EXS_JPEGProcess6_8, EXS_JPEGProcess10_12};
  std::vector<TransferSyntaxInfo> out;
  register_codecs();
  for (const auto x : all) {
    const DcmXfer info(x);
    if (!info.isEncapsulated() || is_j2k(x) || DcmCodecList::canChangeCoding(x, EXS_LittleEndianExplicit)) {
      out.push_back({info.getXferID(), info.getXferName()});
    }
  }
  if (detail::openjpeg_decodes_htj2k()) {
    for (const char* uid : {"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"}) {
      out.push_back({uid, detail::htj2k_name(uid)});
    }
  }
  return out;
}

Result<Radiograph> read_radiograph(const fs::path& path, const ReadOptions& options) {
  return detail::guarded(path, [&] { return read_radiograph_unguarded(path, options); });
}

}  // namespace hilum::dicom
