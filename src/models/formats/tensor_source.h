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
  // The tensor as a new float32 tensor with its own storage (converted or dequantised).
  // Throws Error(kNotFound) naming the file when absent, Error(kUnsupported) for a type that
  // cannot be converted.
  virtual at::Tensor load(const std::string& name) const = 0;
  // The file (or index) the tensors come from, for messages.
  virtual std::string where() const = 0;
  // Storage types of the tensors, e.g. "f32", "bf16", "f16+f32" (shown by `candor info`).
  virtual std::string dtype_summary() const = 0;

  // load() checked against an expected shape: Error(kInvalidArgument) naming the tensor.
  at::Tensor load(const std::string& name, const std::vector<int64_t>& shape) const;
};

std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace candor
