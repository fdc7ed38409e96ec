// hilum-make-phantoms OUTDIR [--rows R --columns C]
// Writes the synthetic chest phantom in every encoding and variant the reader handles, the files
// it must refuse, and a DICOMDIR media folder, then lists what it wrote.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>
#include <string_view>

#include "hilum/dicom/reader.hpp"
#include "hilum/testdata/phantom.hpp"

namespace fs = std::filesystem;
using namespace hilum::testdata;

namespace {

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s OUTDIR [--rows R] [--columns C]\n"
               "Writes synthetic chest-radiograph phantoms as DICOM in every supported encoding,\n"
               "variants (MONOCHROME1, signed, high bit not at the top, ACR-NEMA), files the reader\n"
               "must refuse, and a DICOMDIR media folder (OUTDIR/DIR).\n",
               argv0);
  return 2;
}

bool parse_int(const char* text, int& out) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v < 16 || v > 8192) return false;
  out = static_cast<int>(v);
  return true;
}

void report(const fs::path& path, const std::string& what) {
  std::printf("%-44s %s\n", path.string().c_str(), what.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage(argv[0]);
  fs::path out;
  int rows = 320;
  int columns = 256;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if ((arg == "--rows" || arg == "--columns") && i + 1 < argc) {
      if (!parse_int(argv[++i], arg == "--rows" ? rows : columns)) {
        std::fprintf(stderr, "%s: %s needs an integer in [16, 8192]\n", argv[0], std::string(arg).c_str());
        return 2;
      }
    } else if (arg == "-h" || arg == "--help") {
      usage(argv[0]);
      return 0;
    } else if (!arg.empty() && arg[0] == '-') {
      return usage(argv[0]);
    } else if (out.empty()) {
      out = arg;
    } else {
      return usage(argv[0]);
    }
  }
  if (out.empty()) return usage(argv[0]);

  // The reader's codec registration also turns DCMTK's informational logging off.
  hilum::dicom::register_codecs();
  try {
    fs::create_directories(out);
    int count = 0;
    auto base = [&]() {
      DicomSpec s;
      s.phantom.rows = rows;
      s.phantom.columns = columns;
      s.windows = {{2048.0, 4096.0, "FULL"}, {1500.0, 2200.0, "LUNG"}};
      return s;
    };

    // Every encoding: 16 bits allocated / 12 stored MONOCHROME2, 8-bit for JPEG baseline.
    for (Encoding e : all_encodings()) {
      DicomSpec s = base();
      s.encoding = e;
      std::string what = std::string(to_string(e)) + " (" + transfer_syntax_uid(e) + "), ";
      if (e == Encoding::JpegBaseline) {
        s.phantom.bits_allocated = 8;
        s.phantom.bits_stored = 8;
        s.phantom.high_bit = 7;
        s.windows = {{128.0, 256.0, "FULL"}};
        what += "8-bit MONOCHROME2";
      } else {
        what += "16/12-bit MONOCHROME2";
      }
      const fs::path p = out / (std::string("phantom-") + to_string(e) + ".dcm");
      (void)write_dicom(p, s);
      report(p, what);
      ++count;
    }

    {
      DicomSpec s = base();
      s.phantom.monochrome1 = true;
      s.windows = {{2048.0, 4096.0, "FULL"}};
      const fs::path p = out / "variant-monochrome1.dcm";
      (void)write_dicom(p, s);
      report(p, "MONOCHROME1 (bone low, border at 0), explicit little endian");
      ++count;
    }
    {
      DicomSpec s = base();
      s.phantom.is_signed = true;
      s.phantom.bits_stored = 16;
      s.phantom.high_bit = 15;
      s.windows = {{0.0, 65536.0, "FULL"}};
      const fs::path p = out / "variant-signed16.dcm";
      (void)write_dicom(p, s);
      report(p, "signed 16-bit (Pixel Representation 1), explicit little endian");
      ++count;
    }
    {
      DicomSpec s = base();
      s.phantom.bits_stored = 10;
      s.phantom.high_bit = 12;
      s.windows = {{512.0, 1024.0, "FULL"}};
      const fs::path p = out / "variant-highbit12-stored10.dcm";
      (void)write_dicom(p, s);
      report(p, "bits stored 10 at bits 3..12 (high bit not at the top), explicit little endian");
      ++count;
    }
    {
      DicomSpec s = base();
      s.part10 = false;
      s.encoding = Encoding::ImplicitLittle;
      const fs::path p = out / "variant-acr-nema.dcm";
      (void)write_dicom(p, s);
      report(p, "ACR-NEMA style: no preamble, no meta header, implicit little endian");
      ++count;
    }
    {
      DicomSpec s = base();
      s.rescale_slope = 2.0;
      s.rescale_intercept = -1024.0;
      s.voi_lut_function = "SIGMOID";
      s.windows = {{3072.0, 8192.0, "FULL"}, {2000.0, 4000.0, "SOFT"}};
      LutSpec lut;
      lut.first_mapped = 0;  // modality values below 0 map to the first entry
      lut.bits_per_entry = 12;
      lut.explanation = "GAMMA 0.5";
      for (int i = 0; i < 7168; ++i)
        lut.data.push_back(static_cast<std::uint16_t>(std::lround(4095.0 * std::sqrt(i / 7167.0))));
      s.voi_luts = {lut};
      s.presentation_lut_shape = "IDENTITY";
      const fs::path p = out / "variant-rescale-voi-lut.dcm";
      (void)write_dicom(p, s);
      report(p, "rescale 2x-1024, two windows, SIGMOID, a VOI LUT, Presentation LUT Shape IDENTITY");
      ++count;
    }

    {
      const fs::path p = out / "bad-basic-text-sr.dcm";
      write_basic_text_sr(p);
      report(p, "refused: Basic Text SR, no pixel data");
      ++count;
    }
    {
      const fs::path p = out / "bad-truncated.dcm";
      write_truncated(p, 1000);
      report(p, "refused: native pixel data cut to 1000 of 163840 bytes");
      ++count;
    }
    {
      const fs::path p = out / "bad-not-dicom.dcm";
      write_not_dicom(p);
      report(p, "refused: a text file");
      ++count;
    }
    {
      const fs::path p = out / "bad-absurd-dimensions.dcm";
      write_absurd_dimensions(p);
      report(p, "refused: Rows = Columns = 65535 with 64 bytes of pixel data");
      ++count;
    }
    {
      const fs::path dir = out / "DIR";
      const auto uids = write_dicomdir_media(dir, 2);
      report(dir / "DICOMDIR", "DICOMDIR media: 2 patients x 1 study x 1 series x 2 images (" +
                                   std::to_string(uids.size()) + " files in DIR/IMAGES)");
      ++count;
    }
    std::printf("%d items written to %s\n", count, out.string().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    return 1;
  }
  return 0;
}
