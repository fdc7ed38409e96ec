// Registration of DCMTK's decoders, once per process (as dcm2img/dcmj2pnm do at start-up).
#include <mutex>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>

#include "hilum/dicom/reader.hpp"

namespace hilum::dicom {

void register_codecs() {
  static std::once_flag once;
  std::call_once(once, [] {
    // DCMTK's own log goes to stderr; every problem reaches the caller as a hilum::dicom::Error
    // instead, so keep the library quiet unless something is fatal.
    OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
    DcmRLEDecoderRegistration::registerCodecs();
    DJDecoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
  });
}

}  // namespace hilum::dicom
