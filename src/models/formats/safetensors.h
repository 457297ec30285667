// The safetensors format (Hugging Face): an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}}, then the raw data.
// Files are memory-mapped; a sharded checkpoint is a model.safetensors.index.json whose
// "weight_map" names the file of each tensor. Internal header.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/formats/tensor_source.h"

namespace candor {

// A read-only memory mapping of a whole file, used to parse headers in place. Tensor data is
// read with pread() straight into its final storage (read()): on a 1 GB model that is about 3x
// faster than copying from the mapping (bench_models) and never holds file pages and weights at
// once. Throws Error(kNotFound) when the file cannot be opened.
class MappedFile : public std::enable_shared_from_this<MappedFile> {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  // Tells the kernel the bytes [offset, offset + n) are no longer needed (drops them from this
  // process's resident memory; they are re-read from the file if touched again).
  void release(size_t offset, size_t n) const;
  // Copies the bytes [offset, offset + n) to `dst` with pread(). Throws Error naming the file
  // when the range is outside it or the read fails.
  void read(size_t offset, size_t n, void* dst) const;
  // A float32 tensor whose storage is the mapping itself (no copy: pages are faulted in from the
  // page cache when first used; writes stay private to this process). Keeps the mapping alive.
  // `offset` must be a multiple of 4. The object must be owned by a std::shared_ptr.
  at::Tensor map_f32(size_t offset, const std::vector<int64_t>& shape) const;

 private:
  std::string path_;
  int fd_ = -1;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

class SafetensorsArchive : public TensorSource {
 public:
  // `path`: a .safetensors file, a model.safetensors.index.json, or a folder holding either.
  // Throws Error(kInvalidArgument) for a malformed file (truncated, header offsets out of range,
  // unknown dtype), naming the file and the problem.
  static std::unique_ptr<SafetensorsArchive> open(const std::string& path);

  bool has(const std::string& name) const override;
  std::vector<std::string> names() const override;
  std::vector<int64_t> shape(const std::string& name) const override;
  void load_into(const std::string& name, at::Tensor dst) const override;
  // F32 tensors are mapped without a copy (MappedFile::map_f32); others are converted.
  at::Tensor load(const std::string& name) const override;
  using TensorSource::load;
  std::string where() const override { return where_; }
  std::string dtype_summary() const override;

  // The stored dtype ("F32", "BF16", ...) of a tensor.
  std::string dtype(const std::string& name) const;
  // The tensor converted to `type` (kFloat, kHalf or kBFloat16), own storage.
  at::Tensor load_as(const std::string& name, at::ScalarType type) const;
  // "__metadata__" of the first file.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  struct Entry {
    std::string dtype;
    std::vector<int64_t> shape;
    size_t begin = 0, end = 0;  // absolute byte offsets in the file
    size_t file = 0;            // index into files_
  };
  void add_file(const std::string& path, const std::vector<std::string>* expected);
  const Entry& entry(const std::string& name) const;

  std::string where_;
  std::vector<std::shared_ptr<MappedFile>> files_;
  std::map<std::string, Entry> entries_;
  std::vector<std::string> order_;  // names in file order
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (float32, float16 or bfloat16; any shape) as one safetensors file, in the given
// order. Throws Error(kInvalidArgument) for other dtypes, Error(kNotFound) when the file cannot
// be written.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace candor
