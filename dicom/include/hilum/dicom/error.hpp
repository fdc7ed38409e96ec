// Hilum: the dicom/ boundary's error type. Every DCMTK OFCondition and every decoder status is
// turned into one of these, with a reason a person understands.
#pragma once

#include <string>

#include "hilum/core/expected.hpp"

namespace hilum::dicom {

enum class ErrorKind {
  FileNotFound,   // missing or unreadable file
  NotDicom,       // not a DICOM file at all
  NotAnImage,     // a DICOM object without pixel data (SR, presentation state, ...)
  NotARadiograph, // a colour picture (RGB, YBR, several samples per pixel): a photograph, a derived overlay, not a film
  Unsupported,    // an image we deliberately do not read (32-bit, floating point, multi-frame ...)
  Truncated,      // the file ends before the data it declares
  Corrupt,        // inconsistent or invalid attributes
  TooLarge,       // declared dimensions beyond the limits (protects memory)
  DecodeFailed,   // the codec rejected the compressed pixel data
  Network,        // peer unreachable, association rejected or broken off, timeout
  Refused,        // the peer answered with a failure status; invalid network options
  Io,             // a file could not be written (received instances, SR objects)
  Cancelled,      // stopped by the caller
};

[[nodiscard]] const char* to_string(ErrorKind kind);

struct Error {
  ErrorKind kind = ErrorKind::Corrupt;
  std::string message;  // e.g. "not an image: Basic Text SR"
};

// A Radiograph, a table, ... or the Error that says why not.
template <typename T>
using Result = core::Expected<T, Error>;

}  // namespace hilum::dicom
