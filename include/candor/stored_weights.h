// A model's weights as they are stored in memory, for digests (the service's weights hash):
// a tensor's bytes, or a quantized matrix's blocks as loaded (GGUF Q4_K, Q8_0, ...), never a
// float copy of them.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "candor/model.h"

namespace candor {

// Calls f(name, layout, data, bytes) for every stored weight in a fixed order (tied matrices
// once). For a tensor, layout is "SIZES:DTYPE" (e.g. "[288, 64]:Float") and data its contiguous
// bytes; a matrix kept in quantized blocks gives one call per part of rows of one ggml type, with
// layout "TYPE[ROWS, COLS]" (e.g. "Q4_K[96, 64]") and data the blocks themselves. Nothing is
// dequantised: a quantized model's float32 copy is neither made nor read.
using StoredWeightVisitor = std::function<void(const std::string& name, const std::string& layout,
                                               const void* data, size_t bytes)>;
void visit_stored_weights(const Model& model, const StoredWeightVisitor& f);

}  // namespace candor
