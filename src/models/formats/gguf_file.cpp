// GGUF files: header, typed metadata, tensor infos and aligned tensor data, read from a
// memory-mapped file with bounds checks (llama.cpp's public GGUF specification).
#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "candor/error.h"
#include "models/formats/gguf.h"
#include "models/formats/gguf_format.h"

namespace candor {
namespace {

using namespace gguf;

// Bounds-checked reading of the header.
struct Cursor {
  const uint8_t* data;
  size_t size, pos;
  const std::string& path;

  Error truncated(const std::string& what) const {
    return Error(ErrorCode::kInvalidArgument,
                 "GGUF file '" + path + "' is truncated: " + what + " at byte offset " +
                     std::to_string(pos) + " runs past the end (" + std::to_string(size) +
                     " bytes)",
                 "the file was cut short; re-download it");
  }
  template <typename T>
  T get(const char* what) {
    if (size - pos < sizeof(T)) throw truncated(what);
    T v;
    std::memcpy(&v, data + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string str(const char* what) {
    uint64_t n = get<uint64_t>(what);
    if (n > size - pos) throw truncated(what);
    std::string s(reinterpret_cast<const char*>(data + pos), n);
    pos += n;
    return s;
  }
};

nlohmann::json read_value(Cursor& c, uint32_t type, const std::string& key, int depth = 0) {
  switch (type) {
    case kU8:
      return c.get<uint8_t>("a metadata value");
    case kI8:
      return c.get<int8_t>("a metadata value");
    case kU16:
      return c.get<uint16_t>("a metadata value");
    case kI16:
      return c.get<int16_t>("a metadata value");
    case kU32:
      return c.get<uint32_t>("a metadata value");
    case kI32:
      return c.get<int32_t>("a metadata value");
    case kF32:
      return c.get<float>("a metadata value");
    case kBool:
      return c.get<uint8_t>("a metadata value") != 0;
    case kString:
      return c.str("a metadata string");
    case kU64:
      return c.get<uint64_t>("a metadata value");
    case kI64:
      return c.get<int64_t>("a metadata value");
    case kF64:
      return c.get<double>("a metadata value");
    case kArray: {
      if (depth > 2) break;
      uint32_t et = c.get<uint32_t>("an array type");
      uint64_t n = c.get<uint64_t>("an array length");
      if (n > c.size - c.pos) throw c.truncated("array '" + key + "'");
      nlohmann::json arr = nlohmann::json::array();
      arr.get_ref<nlohmann::json::array_t&>().reserve(n);
      for (uint64_t i = 0; i < n; ++i) arr.push_back(read_value(c, et, key, depth + 1));
      return arr;
    }
    default:
      break;
  }
  throw Error(ErrorCode::kInvalidArgument,
              "GGUF file '" + c.path + "': metadata key '" + key + "' has unknown value type " +
                  std::to_string(type),
              "the file is corrupt or from a newer GGUF version");
}

}  // namespace

// ---- reading ------------------------------------------------------------------------------

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  auto g = std::unique_ptr<GgufFile>(new GgufFile());
  g->file_ = std::make_shared<MappedFile>(path);
  const size_t size = g->file_->size();
  Cursor c{g->file_->data(), size, 0, path};
  auto bad = [&](const std::string& problem) {
    return Error(ErrorCode::kInvalidArgument, "GGUF file '" + path + "': " + problem,
                 "the file is corrupt or not a GGUF model");
  };
  if (size < 4) throw c.truncated("the magic");
  uint32_t magic = c.get<uint32_t>("the magic");
  if (magic != kMagic) {
    char m[5] = {0};
    std::memcpy(m, &magic, 4);
    for (char& ch : m)
      if (ch && !std::isprint(static_cast<unsigned char>(ch))) ch = '?';
    throw bad("wrong magic '" + std::string(m, 4) + "' (expected 'GGUF')");
  }
  g->version_ = c.get<uint32_t>("the version");
  if (g->version_ != 2 && g->version_ != 3) {
    throw Error(ErrorCode::kUnsupported,
                "GGUF file '" + path + "' has version " + std::to_string(g->version_) +
                    "; candor reads versions 2 and 3",
                "convert the model with a current llama.cpp");
  }
  const uint64_t n_tensors = c.get<uint64_t>("the tensor count");
  const uint64_t n_kv = c.get<uint64_t>("the metadata count");
  if (n_tensors > size / 8 || n_kv > size / 8) throw bad("tensor or metadata count out of range");
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.str("a metadata key");
    uint32_t type = c.get<uint32_t>("a metadata type");
    g->metadata_[key] = read_value(c, type, key);
  }
  struct Raw {
    std::string name;
    std::vector<int64_t> shape;
    uint32_t type;
    uint64_t offset;
  };
  std::vector<Raw> raws;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    Raw r;
    r.name = c.str("a tensor name");
    uint32_t n_dims = c.get<uint32_t>("a tensor rank");
    if (n_dims > 4) throw bad("tensor '" + r.name + "' has " + std::to_string(n_dims) + " dims");
    std::vector<int64_t> dims;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t v = c.get<uint64_t>("a tensor dim");
      if (v > (uint64_t{1} << 40)) throw bad("tensor '" + r.name + "' has a dim out of range");
      dims.push_back(static_cast<int64_t>(v));
    }
    r.shape.assign(dims.rbegin(), dims.rend());  // ggml lists the fastest-varying dim first
    r.type = c.get<uint32_t>("a tensor type");
    r.offset = c.get<uint64_t>("a tensor offset");
    if (!traits(r.type).name) {
      throw bad("tensor '" + r.name + "' has unknown ggml type " + std::to_string(r.type));
    }
    raws.push_back(std::move(r));
  }
  uint64_t alignment = kDefaultAlignment;
  if (g->metadata_.count("general.alignment")) {
    const auto& a = g->metadata_["general.alignment"];
    if (!a.is_number_unsigned() || a.get<uint64_t>() == 0 || a.get<uint64_t>() > 65536)
      throw bad("general.alignment is invalid");
    alignment = a.get<uint64_t>();
  }
  const size_t data_start = (c.pos + alignment - 1) / alignment * alignment;
  if (data_start > size) throw c.truncated("the tensor data");
  for (Raw& r : raws) {
    Info info;
    info.shape = r.shape;
    info.type = r.type;
    int64_t numel = 1;
    for (int64_t d : r.shape) numel *= d;
    TypeTraits t = traits(r.type);
    if (t.block > 0 && numel % t.block != 0) {
      throw bad("tensor '" + r.name + "' of type " + t.name + " has " + std::to_string(numel) +
                " values, not a multiple of its block of " + std::to_string(t.block));
    }
    info.size = t.block > 0 ? static_cast<size_t>(numel / t.block) * t.block_bytes : 0;
    if (r.offset % alignment != 0) throw bad("tensor '" + r.name + "' offset is not aligned");
    if (r.offset > size - data_start || info.size > size - data_start - r.offset) {
      throw bad("tensor '" + r.name + "': data [" + std::to_string(r.offset) + ", +" +
                std::to_string(info.size) + ") out of range (the data section has " +
                std::to_string(size - data_start) + " bytes)");
    }
    info.begin = data_start + r.offset;
    if (g->infos_.count(r.name)) throw bad("tensor '" + r.name + "' appears twice");
    g->infos_[r.name] = info;
    g->order_.push_back(r.name);
  }
  return g;
}

bool GgufFile::has(const std::string& name) const { return infos_.count(name) > 0; }
std::vector<std::string> GgufFile::names() const { return order_; }

std::vector<int64_t> GgufFile::shape(const std::string& name) const {
  auto it = infos_.find(name);
  if (it == infos_.end())
    throw Error(ErrorCode::kNotFound, where() + ": no tensor named '" + name + "'");
  return it->second.shape;
}

uint32_t GgufFile::type(const std::string& name) const {
  auto it = infos_.find(name);
  if (it == infos_.end())
    throw Error(ErrorCode::kNotFound, where() + ": no tensor named '" + name + "'");
  return it->second.type;
}

const uint8_t* GgufFile::data(const std::string& name) const {
  auto it = infos_.find(name);
  if (it == infos_.end())
    throw Error(ErrorCode::kNotFound, where() + ": no tensor named '" + name + "'");
  return file_->data() + it->second.begin;
}

const nlohmann::json& GgufFile::meta(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) {
    throw Error(ErrorCode::kInvalidArgument,
                "GGUF file '" + where() + "' lacks the metadata key '" + key + "'",
                "the file is incomplete or not a model candor reads");
  }
  return it->second;
}

std::string GgufFile::dtype_summary() const {
  std::set<std::string> kinds;
  for (const auto& [n, i] : infos_) {
    std::string s = ggml_type_name(i.type);
    for (auto& ch : s) ch = static_cast<char>(std::tolower(ch));
    kinds.insert(s);
  }
  std::string s;
  for (const auto& k : kinds) s += (s.empty() ? "" : "+") + k;
  return s;
}

at::Tensor GgufFile::load(const std::string& name) const {
  auto it = infos_.find(name);
  if (it != infos_.end() && it->second.type == 0 && it->second.begin % 4 == 0)
    return file_->map_f32(it->second.begin, it->second.shape);
  return TensorSource::load(name);
}

void GgufFile::load_into(const std::string& name, at::Tensor dst) const {
  auto it = infos_.find(name);
  if (it == infos_.end())
    throw Error(ErrorCode::kNotFound, where() + ": no tensor named '" + name + "'");
  const Info& info = it->second;
  const TypeTraits t = traits(info.type);
  if (t.block == 0) {
    throw Error(ErrorCode::kUnsupported,
                where() + ": tensor '" + name + "' has ggml type " + ggml_type_name(info.type) +
                    ", which candor cannot dequantise",
                "candor reads F32, F16, BF16, Q8_0, Q4_0, Q4_K and Q6_K");
  }
  const int64_t numel = dst.numel();
  if (!dst.is_contiguous() || dst.scalar_type() != at::kFloat ||
      ggml_nbytes(info.type, numel) != info.size) {
    throw Error(ErrorCode::kInternal, where() + ": tensor '" + name + "' read into a wrong buffer");
  }
  float* y = dst.data_ptr<float>();
  if (info.type == 0) {  // F32: straight into the final storage
    file_->read(info.begin, info.size, y);
    return;
  }
  // Dequantised chunk by chunk (whole blocks) from a small buffer.
  const int64_t blocks =
      std::max<int64_t>(1, (int64_t{4} << 20) / static_cast<int64_t>(t.block_bytes));
  const int64_t chunk = blocks * t.block;
  std::vector<uint8_t> buf(static_cast<size_t>(std::min(chunk, numel) / t.block) * t.block_bytes);
  for (int64_t off = 0; off < numel; off += chunk) {
    const int64_t n = std::min(chunk, numel - off);
    const size_t bytes = static_cast<size_t>(n / t.block) * t.block_bytes;
    file_->read(info.begin + static_cast<size_t>(off / t.block) * t.block_bytes, bytes, buf.data());
    try {
      dequantize_ggml(info.type, buf.data(), n, y + off);
    } catch (const Error& e) {
      throw Error(e.code(), where() + ": tensor '" + name + "': " + e.what(), e.hint());
    }
  }
}

}  // namespace candor
