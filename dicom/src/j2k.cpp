// JPEG 2000 frames through OpenJPEG, from memory. The header is read and checked against the
// DICOM Rows/Columns before anything is decoded, so a lying codestream cannot make us allocate.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include <openjpeg.h>

#include "internal.hpp"

namespace hilum::dicom::detail {

bool openjpeg_decodes_htj2k() {
  // opj_version(): "MAJOR.MINOR.PATCH"; HTJ2K decoding came with 2.5.0.
  int major = 0, minor = 0;
  return std::sscanf(opj_version(), "%d.%d", &major, &minor) == 2 && (major > 2 || (major == 2 && minor >= 5));
}

namespace {

struct MemoryStream {
  const std::uint8_t* data;
  std::size_t size;
  std::size_t pos;
};

OPJ_SIZE_T read_fn(void* buffer, OPJ_SIZE_T n, void* user) {
  auto* s = static_cast<MemoryStream*>(user);
  if (s->pos >= s->size) return static_cast<OPJ_SIZE_T>(-1);
  const std::size_t k = std::min<std::size_t>(n, s->size - s->pos);
  std::memcpy(buffer, s->data + s->pos, k);
  s->pos += k;
  return k;
}

OPJ_OFF_T skip_fn(OPJ_OFF_T n, void* user) {
  auto* s = static_cast<MemoryStream*>(user);
  if (n < 0) {
    const auto back = static_cast<std::size_t>(-n);
    if (back > s->pos) return -1;
    s->pos -= back;
    return n;
  }
  const std::size_t k = std::min<std::size_t>(static_cast<std::size_t>(n), s->size - s->pos);
  s->pos += k;
  return static_cast<OPJ_OFF_T>(k);
}

OPJ_BOOL seek_fn(OPJ_OFF_T n, void* user) {
  auto* s = static_cast<MemoryStream*>(user);
  if (n < 0 || static_cast<std::size_t>(n) > s->size) return OPJ_FALSE;
  s->pos = static_cast<std::size_t>(n);
  return OPJ_TRUE;
}

void error_fn(const char* msg, void* user) {
  auto* text = static_cast<std::string*>(user);
  if (text->empty()) {
    *text = msg;
    while (!text->empty() && (text->back() == '\n' || text->back() == ' ')) text->pop_back();
  }
}
void quiet_fn(const char*, void*) {}

struct CodecDeleter { void operator()(opj_codec_t* c) const { opj_destroy_codec(c); } };
struct StreamDeleter { void operator()(opj_stream_t* s) const { opj_stream_destroy(s); } };
struct ImageDeleter { void operator()(opj_image_t* i) const { opj_image_destroy(i); } };

}  // namespace

Result<J2kFrame> decode_j2k(const std::uint8_t* data, std::size_t size, int rows, int columns,
                            std::uint64_t max_pixels, int threads, int min_side, int components) {
  static const std::uint8_t jp2_magic[12] = {0, 0, 0, 0x0C, 'j', 'P', ' ', ' ', 0x0D, 0x0A, 0x87, 0x0A};
  static const std::uint8_t j2k_magic[4] = {0xFF, 0x4F, 0xFF, 0x51};
  OPJ_CODEC_FORMAT format;
  if (size >= 12 && std::memcmp(data, jp2_magic, 12) == 0) {
    format = OPJ_CODEC_JP2;
  } else if (size >= 4 && std::memcmp(data, j2k_magic, 4) == 0) {
    format = OPJ_CODEC_J2K;
  } else {
    return Error{ErrorKind::DecodeFailed, "JPEG 2000 decoding failed: the fragment does not start with a JPEG 2000 codestream"};
  }

  std::string message;
  std::unique_ptr<opj_codec_t, CodecDeleter> codec(opj_create_decompress(format));
  if (!codec) return Error{ErrorKind::DecodeFailed, "JPEG 2000 decoding failed: cannot create the decoder"};
  opj_set_error_handler(codec.get(), error_fn, &message);
  opj_set_warning_handler(codec.get(), quiet_fn, nullptr);
  opj_set_info_handler(codec.get(), quiet_fn, nullptr);
  opj_dparameters_t params;
  opj_set_default_decoder_parameters(&params);
  if (!opj_setup_decoder(codec.get(), &params)) {
    return Error{ErrorKind::DecodeFailed, "JPEG 2000 decoding failed: " + message};
  }

  if (threads > 1) opj_codec_set_threads(codec.get(), threads);  // code-blocks decoded in parallel

  MemoryStream ms{data, size, 0};
  std::unique_ptr<opj_stream_t, StreamDeleter> stream(opj_stream_create(64 * 1024, OPJ_TRUE));
  if (!stream) return Error{ErrorKind::DecodeFailed, "JPEG 2000 decoding failed: cannot create a stream"};
  opj_stream_set_user_data(stream.get(), &ms, nullptr);
  opj_stream_set_user_data_length(stream.get(), size);
  opj_stream_set_read_function(stream.get(), read_fn);
  opj_stream_set_skip_function(stream.get(), skip_fn);
  opj_stream_set_seek_function(stream.get(), seek_fn);

  opj_image_t* raw = nullptr;
  if (!opj_read_header(stream.get(), codec.get(), &raw)) {
    return Error{ErrorKind::DecodeFailed, "JPEG 2000 decoding failed: unreadable header" +
                                              (message.empty() ? std::string() : ": " + message)};
  }
  std::unique_ptr<opj_image_t, ImageDeleter> image(raw);
  const std::uint64_t w = image->x1 - image->x0;
  const std::uint64_t h = image->y1 - image->y0;
  if (image->numcomps != static_cast<OPJ_UINT32>(components)) {
    return Error{ErrorKind::NotARadiograph, "JPEG 2000 image has " + std::to_string(image->numcomps) + " components, but the DICOM header says " +
                                                std::to_string(components)};
  }
  if (w != static_cast<std::uint64_t>(columns) || h != static_cast<std::uint64_t>(rows) || w * h > max_pixels) {
    return Error{ErrorKind::Corrupt, "JPEG 2000 codestream is " + std::to_string(w) + " x " + std::to_string(h) +
                                         " but the DICOM header says " + std::to_string(columns) + " x " +
                                         std::to_string(rows)};
  }
  // Reduced resolution: level k has sides ceil(side / 2^k) (image origin 0 in DICOM), and the
  // codestream offers numresolutions - 1 levels below the full one. Only reversible (5/3,
  // lossless) codestreams, and only down to twice min_side: the consumer's own resize then does
  // the last octave, and the display image stays within a few thousandths of the full decode
  // (tests/app ClassifyTest.ReducedJpeg2000...). Lossy (9/7) films are decoded in full: their
  // ringing at the collimator edge moves the automatic window by several percent when reduced.
  std::uint32_t reduce = 0;
  if (min_side > 0 && image->x0 == 0 && image->y0 == 0) {
    std::uint32_t levels = 0;
    if (opj_codestream_info_v2_t* info = opj_get_cstr_info(codec.get())) {
      const opj_tccp_info_t* tccp = info->m_default_tile_info.tccp_info;
      if (tccp != nullptr && tccp[0].numresolutions > 0 && tccp[0].qmfbid == 1) levels = tccp[0].numresolutions - 1;
      opj_destroy_cstr_info(&info);
    }
    reduce = static_cast<std::uint32_t>(reduction_levels(w, h, min_side, static_cast<int>(std::min<std::uint32_t>(levels, 16))));
    if (reduce > 0 && !opj_set_decoded_resolution_factor(codec.get(), reduce)) reduce = 0;
  }
  const std::uint64_t out_w = (w + (1ull << reduce) - 1) >> reduce, out_h = (h + (1ull << reduce) - 1) >> reduce;
  if (!opj_decode(codec.get(), stream.get(), image.get()) || !opj_end_decompress(codec.get(), stream.get())) {
    return Error{ErrorKind::DecodeFailed, "JPEG 2000 decoding failed" + (message.empty() ? std::string() : ": " + message)};
  }
  for (int c = 0; c < components; ++c) {
    const opj_image_comp_t& comp = image->comps[c];
    if (comp.data == nullptr) return Error{ErrorKind::DecodeFailed, "JPEG 2000 decoding failed: incomplete image"};
    if (comp.w != out_w || comp.h != out_h) {
      return Error{c == 0 ? ErrorKind::DecodeFailed : ErrorKind::Unsupported,
                   c == 0 ? std::string("JPEG 2000 decoding failed: incomplete image")
                          : std::string("JPEG 2000 colour with subsampled components is not supported")};
    }
  }
  const opj_image_comp_t& comp = image->comps[0];
  J2kFrame frame;
  frame.rows = static_cast<int>(out_h);
  frame.columns = static_cast<int>(out_w);
  frame.reduction = static_cast<int>(reduce);
  frame.precision = static_cast<int>(comp.prec);
  frame.is_signed = comp.sgnd != 0;
  frame.samples.assign(comp.data, comp.data + out_w * out_h);
  if (components == 3) {
    frame.second.assign(image->comps[1].data, image->comps[1].data + out_w * out_h);
    frame.third.assign(image->comps[2].data, image->comps[2].data + out_w * out_h);
  }
  return frame;
}

}  // namespace hilum::dicom::detail
