// GGUF, llama.cpp's single-file format (read from its public specification): a header (magic
// "GGUF", version 2 or 3, tensor and metadata counts), typed metadata key/values, tensor infos
// (name, dims with the fastest-varying first, ggml type, offset), then aligned tensor data.
// Types F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K are read; Llama matrices stay in their blocks
// (models/fused/qgemm.h) unless LoadOptions::dequantize, other tensors become float32 at load. gguf_file.cpp reads the file, gguf_quant.cpp (de)quantises, gguf_model.cpp builds the
// model (architectures from src/models/arch/) and its tokenizer, gguf_writer.cpp writes;
// gguf_format.h holds what they share. Internal header.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "candor/model.h"
#include "models/formats/safetensors.h"
#include "models/formats/tensor_source.h"

namespace candor {

// ggml tensor types candor reads (values from the GGUF specification).
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ8_0 = 8,
  kQ4_K = 12,
  kQ6_K = 14,
  kBF16 = 30,
};

class GgufFile : public TensorSource {
 public:
  // Throws Error(kInvalidArgument) naming the file for a wrong magic, an unsupported version,
  // truncation or offsets out of range; Error(kUnsupported) is deferred to load() for tensor
  // types candor cannot dequantise.
  static std::unique_ptr<GgufFile> open(const std::string& path);

  bool has(const std::string& name) const override;
  std::vector<std::string> names() const override;
  std::vector<int64_t> shape(const std::string& name) const override;  // torch order
  void load_into(const std::string& name, at::Tensor dst) const override;
  // F32 tensors are mapped without a copy (MappedFile::map_f32); others are dequantised.
  at::Tensor load(const std::string& name) const override;
  using TensorSource::load;
  std::string where() const override { return file_->path(); }
  std::string dtype_summary() const override;

  uint32_t version() const { return version_; }
  // Metadata values as JSON (integers, floats, bools, strings, arrays).
  const std::map<std::string, nlohmann::json>& metadata() const { return metadata_; }
  bool has_meta(const std::string& key) const { return metadata_.count(key) > 0; }
  const nlohmann::json& meta(const std::string& key) const;  // Error(kInvalidArgument) if absent
  uint32_t type(const std::string& name) const;
  // The stored bytes of a tensor (in the mapping) and the mapping itself, which keeps them alive.
  const uint8_t* data(const std::string& name) const;
  std::shared_ptr<const void> mapping() const { return file_; }

 private:
  struct Info {
    std::vector<int64_t> shape;  // torch order (reversed ggml dims)
    uint32_t type = 0;
    size_t begin = 0, size = 0;  // absolute byte offset and size
  };
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  std::map<std::string, nlohmann::json> metadata_;
  std::map<std::string, Info> infos_;
  std::vector<std::string> order_;
};

// Dequantises `n` values (a multiple of the type's block size) of ggml type `type` at `data`
// into `out`. Throws Error(kUnsupported) for other types.
void dequantize_ggml(uint32_t type, const uint8_t* data, int64_t n, float* out);
// Quantises `n` floats (a multiple of the type's block size) as ggml type `type`: F32, F16,
// BF16, Q8_0, Q4_K or Q6_K (simple round-to-nearest quantisers: per block or sub-block the scale
// of its largest magnitude, Q4_K's minimum from the sub-block's minimum). Throws
// Error(kUnsupported) for other types, Error(kInvalidArgument) when n is not a whole number of
// blocks.
std::string quantize_ggml(uint32_t type, const float* x, int64_t n);
// Bytes taken by `n` values of `type` (0 for unknown types or n not a multiple of the block).
size_t ggml_nbytes(uint32_t type, int64_t n);
std::string ggml_type_name(uint32_t type);

// Loads a GGUF file of an architecture with a GGUF mapping (llama, gpt2) with the tokenizer in
// its metadata (or LoadOptions::tokenizer_path).
std::unique_ptr<Model> load_gguf_model(const std::string& path, const LoadOptions& options);

}  // namespace candor
