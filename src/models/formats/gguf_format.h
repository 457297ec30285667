// Pieces of the GGUF reader and writer shared by gguf_file.cpp, gguf_quant.cpp,
// gguf_model.cpp and gguf_writer.cpp: the format's constants, metadata value types and the
// block layouts of the ggml tensor types. Internal header (models/formats only).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace candor::gguf {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr uint64_t kDefaultAlignment = 32;

enum MetaType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

struct TypeTraits {
  const char* name;
  int64_t block;       // values per block
  size_t block_bytes;  // 0: size unknown to candor
};

// Name and block layout of a ggml type ({nullptr, 0, 0} for types unknown to candor).
TypeTraits traits(uint32_t type);

// Q8_0 blocks of a float32 tensor whose size is a multiple of 32 (per 32 values: f16 scale
// d = max |x| / 127, then 32 int8 round(x / d)).
std::string quantize_q8_0(const at::Tensor& t);

}  // namespace candor::gguf
