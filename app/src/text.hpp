// Internal to app/: the text helpers (hilum/core/text.hpp) under their app/ names.
#pragma once

#include "hilum/core/text.hpp"

namespace hilum::app {
using core::dump_json;
using core::lower;
using core::quoted_excerpt;
using core::trim;
using core::utf8_sequence;
using core::valid_utf8;
}  // namespace hilum::app
