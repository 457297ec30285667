// Named tensors read from a checkpoint (safetensors archive, GGUF file): what the architecture
// builders take their weights from. Internal header.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

namespace candor {

class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual bool has(const std::string& name) const = 0;
  virtual std::vector<std::string> names() const = 0;
  virtual std::vector<int64_t> shape(const std::string& name) const = 0;
  // Writes the tensor, converted or dequantised to float32, into `dst` (contiguous float32 with
  // as many elements). Throws Error(kNotFound) naming the file when absent, Error(kUnsupported)
  // for a type that cannot be converted.
  virtual void load_into(const std::string& name, at::Tensor dst) const = 0;
  // The tensor as float32 (default: a new tensor from empty_weight filled by load_into; a
  // source may instead return a read-only-in-spirit view of a memory-mapped file).
  virtual at::Tensor load(const std::string& name) const;
  // The file (or index) the tensors come from, for messages.
  virtual std::string where() const = 0;
  // Storage types of the tensors, e.g. "f32", "bf16", "f16+f32" (shown by `candor info`).
  virtual std::string dtype_summary() const = 0;

  // load() checked against an expected shape: Error(kInvalidArgument) naming the tensor.
  at::Tensor load(const std::string& name, const std::vector<int64_t>& shape) const;
  // Tensors checked against their shapes and stacked along dim 0 into one new tensor, each read
  // straight into its rows (fused q/k/v and gate/up matrices without a concatenation copy).
  at::Tensor load_rows(
      const std::vector<std::pair<std::string, std::vector<int64_t>>>& parts) const;
  // Error(kInvalidArgument) unless the tensor exists with this shape.
  void check_shape(const std::string& name, const std::vector<int64_t>& shape) const;
};

// An uninitialised float32 tensor for weights. Large ones are backed by transparent huge pages
// (2 MB): filling a 1 GB model from 4 KB pages costs more in page faults than reading the file.
at::Tensor empty_weight(const std::vector<int64_t>& shape);

std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace candor
