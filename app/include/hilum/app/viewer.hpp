// Hilum app: what the viewer decodes first (issue 18). Implemented in src/classify.cpp, beside the
// reduced decodes the classifier reads.
#pragma once

namespace hilum::app {

// The viewer's first decode of a film: the dicom::ReadOptions::min_side that lets a JPEG 2000
// resolution level or JPEG's DCT scaling stand in for the full decode while that one runs, for a
// film of film_columns x film_rows shown fitted in a view of view_width x view_height device
// pixels, whose predictions are computed from the same decode (model_side: the model's larger
// input side, 0 without a model). A level it allows still covers the film on screen (its sides at
// least the fitted ones) and the model's input by prepare_input's rule (both sides at least
// 2 x model_side). 0 (decode in full) when the film is shown at 1:1 or larger, or a size is
// unknown. The full decode stays what is shown zoomed in, measured and exported.
[[nodiscard]] int viewer_min_side(int film_columns, int film_rows, int view_width, int view_height, int model_side);

}  // namespace hilum::app
