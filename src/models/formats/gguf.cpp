// GGUF reader (metadata, tensor infos, dequantisation of F32/F16/BF16/Q8_0/Q4_0/Q4_K/Q6_K),
// the llama and gpt2 architectures with the tokenizer stored in the metadata, and a writer for
// F32 and Q8_0 llama models. Layouts from llama.cpp's public GGUF specification.
#include "models/formats/gguf.h"

#include <ATen/ATen.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>

#include "candor/error.h"
#include "models/formats/hf.h"
#include "models/llama.h"
#include "tokenizers/tokenizer_internal.h"

namespace candor {
namespace {

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

TypeTraits traits(uint32_t type) {
  switch (type) {
    case 0:
      return {"F32", 1, 4};
    case 1:
      return {"F16", 1, 2};
    case 2:
      return {"Q4_0", 32, 18};
    case 3:
      return {"Q4_1", 32, 20};
    case 6:
      return {"Q5_0", 32, 22};
    case 7:
      return {"Q5_1", 32, 24};
    case 8:
      return {"Q8_0", 32, 34};
    case 9:
      return {"Q8_1", 32, 36};
    case 10:
      return {"Q2_K", 256, 84};
    case 11:
      return {"Q3_K", 256, 110};
    case 12:
      return {"Q4_K", 256, 144};
    case 13:
      return {"Q5_K", 256, 176};
    case 14:
      return {"Q6_K", 256, 210};
    case 15:
      return {"Q8_K", 256, 292};
    case 24:
      return {"I8", 1, 1};
    case 25:
      return {"I16", 1, 2};
    case 26:
      return {"I32", 1, 4};
    case 27:
      return {"I64", 1, 8};
    case 28:
      return {"F64", 1, 8};
    case 30:
      return {"BF16", 1, 2};
    default:
      if (type >= 16 && type <= 29) return {"IQ-quant", 0, 0};
      return {nullptr, 0, 0};
  }
}

float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return c10::detail::fp16_ieee_to_fp32_value(h);
}

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

std::string ggml_type_name(uint32_t type) {
  const char* n = traits(type).name;
  return n ? n : "type " + std::to_string(type);
}

size_t ggml_nbytes(uint32_t type, int64_t n) {
  TypeTraits t = traits(type);
  if (!t.name || t.block == 0 || n % t.block != 0) return 0;
  return static_cast<size_t>(n / t.block) * t.block_bytes;
}

void dequantize_ggml(uint32_t type, const uint8_t* p, int64_t n, float* y) {
  switch (type) {
    case 0:
      std::memcpy(y, p, n * 4);
      return;
    case 1:
      for (int64_t i = 0; i < n; ++i) y[i] = f16(p + 2 * i);
      return;
    case 30:
      for (int64_t i = 0; i < n; ++i) {
        uint32_t bits = static_cast<uint32_t>(p[2 * i] | (p[2 * i + 1] << 8)) << 16;
        std::memcpy(&y[i], &bits, 4);
      }
      return;
    case 8:  // Q8_0: per 32 values, f16 scale d, 32 int8 q: x = d * q
      for (int64_t b = 0; b < n / 32; ++b, p += 34, y += 32) {
        const float d = f16(p);
        for (int j = 0; j < 32; ++j) y[j] = d * static_cast<int8_t>(p[2 + j]);
      }
      return;
    case 2:  // Q4_0: f16 d, 16 bytes of nibbles: low nibbles are values 0..15, high 16..31
      for (int64_t b = 0; b < n / 32; ++b, p += 18, y += 32) {
        const float d = f16(p);
        for (int j = 0; j < 16; ++j) {
          y[j] = d * ((p[2 + j] & 0x0F) - 8);
          y[j + 16] = d * ((p[2 + j] >> 4) - 8);
        }
      }
      return;
    case 12:  // Q4_K: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins for 8 sub-blocks, 128 qs
      for (int64_t b = 0; b < n / 256; ++b, p += 144) {
        const float d = f16(p), dmin = f16(p + 2);
        const uint8_t* sc = p + 4;
        const uint8_t* q = p + 16;
        auto scale_min = [&](int j, uint8_t* s, uint8_t* m) {
          if (j < 4) {
            *s = sc[j] & 63;
            *m = sc[j + 4] & 63;
          } else {
            *s = (sc[j + 4] & 0x0F) | ((sc[j - 4] >> 6) << 4);
            *m = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
          }
        };
        for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
          uint8_t s1, m1, s2, m2;
          scale_min(is, &s1, &m1);
          scale_min(is + 1, &s2, &m2);
          const float d1 = d * s1, n1 = dmin * m1, d2 = d * s2, n2 = dmin * m2;
          for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0x0F) - n1;
          for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - n2;
        }
      }
      return;
    case 14:  // Q6_K: 128 bytes low 4 bits, 64 bytes high 2 bits, 16 int8 scales, f16 d
      for (int64_t b = 0; b < n / 256; ++b, p += 210) {
        const uint8_t* ql = p;
        const uint8_t* qh = p + 128;
        const int8_t* sc = reinterpret_cast<const int8_t*>(p + 192);
        const float d = f16(p + 208);
        for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, y += 128) {
          for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = static_cast<int>((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = static_cast<int>((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = static_cast<int>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = static_cast<int>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * sc[is] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
          }
        }
      }
      return;
    default:
      throw Error(ErrorCode::kUnsupported,
                  "ggml tensor type " + ggml_type_name(type) + " cannot be dequantised by candor",
                  "candor reads F32, F16, BF16, Q8_0, Q4_0, Q4_K and Q6_K");
  }
}

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

// ---- models -------------------------------------------------------------------------------

namespace {

int64_t meta_int(const GgufFile& g, const std::string& key) {
  const auto& v = g.meta(key);
  if (!v.is_number_integer()) {
    throw Error(ErrorCode::kInvalidArgument,
                "GGUF file '" + g.where() + "': metadata '" + key + "' is not an integer");
  }
  return v.get<int64_t>();
}
int64_t meta_int(const GgufFile& g, const std::string& key, int64_t dflt) {
  return g.has_meta(key) ? meta_int(g, key) : dflt;
}
double meta_num(const GgufFile& g, const std::string& key, double dflt) {
  if (!g.has_meta(key)) return dflt;
  const auto& v = g.meta(key);
  if (!v.is_number()) {
    throw Error(ErrorCode::kInvalidArgument,
                "GGUF file '" + g.where() + "': metadata '" + key + "' is not a number");
  }
  return v.get<double>();
}

const std::string kSpmSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's word boundary

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size())
    s.replace(p, from.size(), to);
  return s;
}

std::vector<std::string> string_array(const GgufFile& g, const std::string& key) {
  std::vector<std::string> out;
  if (!g.has_meta(key)) return out;
  const auto& a = g.meta(key);
  if (!a.is_array()) {
    throw Error(ErrorCode::kInvalidArgument,
                "GGUF file '" + g.where() + "': metadata '" + key + "' is not an array");
  }
  for (const auto& v : a) {
    if (!v.is_string()) {
      throw Error(ErrorCode::kInvalidArgument,
                  "GGUF file '" + g.where() + "': metadata '" + key + "' holds a non-string");
    }
    out.push_back(v.get<std::string>());
  }
  return out;
}

// A "gpt2" (byte-level BPE) vocabulary: tokens + merges, read by the tokenizer module.
std::shared_ptr<Tokenizer> gguf_bpe_tokenizer(const GgufFile& g, int64_t vocab) {
  VocabTokenizerSpec spec;
  spec.model = "gpt2";
  spec.source = g.where();
  spec.tokens = string_array(g, "tokenizer.ggml.tokens");
  spec.merges = string_array(g, "tokenizer.ggml.merges");
  if (spec.tokens.empty()) {
    return missing_tokenizer(static_cast<int32_t>(vocab), ErrorCode::kInvalidArgument,
                             "GGUF file '" + g.where() + "' has a gpt2 tokenizer without tokens",
                             "pass a tokenizer with --tokenizer");
  }
  if (g.has_meta("tokenizer.ggml.token_type") && g.meta("tokenizer.ggml.token_type").is_array()) {
    for (const auto& v : g.meta("tokenizer.ggml.token_type"))
      spec.token_types.push_back(v.is_number_integer() ? v.get<int32_t>() : 1);
  }
  if (g.has_meta("tokenizer.ggml.pre") && g.meta("tokenizer.ggml.pre").is_string())
    spec.pre = g.meta("tokenizer.ggml.pre").get<std::string>();
  auto id = [&](const std::string& key) {
    return static_cast<TokenId>(meta_int(g, "tokenizer.ggml." + key, -1));
  };
  spec.bos_id = id("bos_token_id");
  spec.eos_id = id("eos_token_id");
  spec.unk_id = id("unknown_token_id");
  spec.pad_id = id("padding_token_id");
  auto flag = [&](const std::string& key, bool dflt) {
    const std::string k = "tokenizer.ggml." + key;
    return g.has_meta(k) && g.meta(k).is_boolean() ? g.meta(k).get<bool>() : dflt;
  };
  spec.add_bos = flag("add_bos_token", false);
  spec.add_eos = flag("add_eos_token", false);
  spec.add_space_prefix = flag("add_space_prefix", false);
  if (g.has_meta("tokenizer.chat_template") && g.meta("tokenizer.chat_template").is_string())
    spec.chat_template = g.meta("tokenizer.chat_template").get<std::string>();
  return make_tokenizer_from_vocab(spec);
}

// The tokenizer in the metadata. A "llama" (SentencePiece BPE) vocabulary with <unk>, <s>, </s>
// at ids 0, 1, 2 is read by the llama2.c tokenizer (the same greedy scored merges, byte
// fallback; convert writes it back as tokenizer.bin); other llama vocabularies and "gpt2" ones
// by the tokenizer module (make_tokenizer_from_vocab).
std::shared_ptr<Tokenizer> gguf_tokenizer(const GgufFile& g, int64_t vocab) {
  const std::string model =
      g.has_meta("tokenizer.ggml.model") && g.meta("tokenizer.ggml.model").is_string()
          ? g.meta("tokenizer.ggml.model").get<std::string>()
          : "";
  if (model == "gpt2") return gguf_bpe_tokenizer(g, vocab);
  if (model != "llama") {
    return missing_tokenizer(
        static_cast<int32_t>(vocab), ErrorCode::kUnsupported,
        "GGUF file '" + g.where() + "' stores a tokenizer of model '" + model +
            "', which candor cannot read (it reads 'llama' and 'gpt2' vocabularies)",
        "pass a tokenizer with --tokenizer");
  }
  const auto& tokens = g.meta("tokenizer.ggml.tokens");
  const auto& scores = g.meta("tokenizer.ggml.scores");
  if (!tokens.is_array() || !scores.is_array() || tokens.size() != scores.size()) {
    throw Error(ErrorCode::kInvalidArgument,
                "GGUF file '" + g.where() +
                    "': tokenizer.ggml.tokens and .scores are not arrays "
                    "of the same length");
  }
  const int64_t bos = meta_int(g, "tokenizer.ggml.bos_token_id", 1);
  const int64_t eos = meta_int(g, "tokenizer.ggml.eos_token_id", 2);
  const int64_t unk = meta_int(g, "tokenizer.ggml.unknown_token_id", 0);
  if (bos != 1 || eos != 2 || unk != 0) {
    // Another special-token layout: the tokenizer module's SentencePiece-BPE reader.
    VocabTokenizerSpec spec;
    spec.model = "llama";
    spec.source = g.where();
    spec.tokens = string_array(g, "tokenizer.ggml.tokens");
    for (const auto& v : scores) spec.scores.push_back(v.is_number() ? v.get<float>() : 0.0f);
    if (g.has_meta("tokenizer.ggml.token_type") && g.meta("tokenizer.ggml.token_type").is_array()) {
      for (const auto& v : g.meta("tokenizer.ggml.token_type"))
        spec.token_types.push_back(v.is_number_integer() ? v.get<int32_t>() : 1);
    }
    spec.bos_id = static_cast<TokenId>(bos);
    spec.eos_id = static_cast<TokenId>(eos);
    spec.unk_id = static_cast<TokenId>(unk);
    spec.pad_id = static_cast<TokenId>(meta_int(g, "tokenizer.ggml.padding_token_id", -1));
    const std::string k = "tokenizer.ggml.add_space_prefix";
    spec.add_space_prefix = !(g.has_meta(k) && g.meta(k).is_boolean()) || g.meta(k).get<bool>();
    if (g.has_meta("tokenizer.chat_template") && g.meta("tokenizer.chat_template").is_string())
      spec.chat_template = g.meta("tokenizer.chat_template").get<std::string>();
    return make_tokenizer_from_vocab(spec);
  }
  // Serialised as a llama2.c tokenizer.bin: max length, then (score, length, bytes) records.
  std::string bin(4, '\0');
  int32_t max_len = 1;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (!tokens[i].is_string() || !scores[i].is_number()) {
      throw Error(ErrorCode::kInvalidArgument,
                  "GGUF file '" + g.where() + "': token " + std::to_string(i) + " is malformed");
    }
    std::string piece = replace_all(tokens[i].get<std::string>(), kSpmSpace, " ");
    float score = scores[i].get<float>();
    int32_t len = static_cast<int32_t>(piece.size());
    max_len = std::max(max_len, len);
    bin.append(reinterpret_cast<const char*>(&score), 4);
    bin.append(reinterpret_cast<const char*>(&len), 4);
    bin += piece;
  }
  std::memcpy(&bin[0], &max_len, 4);
  return tokenizers::make_llama2c_tokenizer(g.where() + " (tokenizer.ggml.tokens)", bin);
}

std::unique_ptr<Model> build_gguf_llama(const GgufFile& g, std::shared_ptr<Tokenizer> tok,
                                        const std::string& arch) {
  const std::string p = arch + ".";
  ModelConfig m;
  m.architecture = arch;
  m.dim = meta_int(g, p + "embedding_length");
  m.n_layers = meta_int(g, p + "block_count");
  m.hidden_dim = meta_int(g, p + "feed_forward_length");
  m.n_heads = meta_int(g, p + "attention.head_count");
  m.n_kv_heads = meta_int(g, p + "attention.head_count_kv", m.n_heads);
  m.max_seq_len = meta_int(g, p + "context_length");
  m.vocab_size = g.has("token_embd.weight") ? g.shape("token_embd.weight")[0] : 0;
  const int64_t D = m.dim, F = m.hidden_dim;
  LlamaWeights w;
  if (arch == "llama") {
    m.norm_eps = static_cast<float>(meta_num(g, p + "attention.layer_norm_rms_epsilon", 1e-5));
    m.rope_theta = static_cast<float>(meta_num(g, p + "rope.freq_base", 10000.0));
    m.rope_interleaved = true;  // llama.cpp's converter stores q/k in the interleaved layout
    if (g.has_meta(p + "rope.scaling.type")) {
      const std::string t = g.meta(p + "rope.scaling.type").is_string()
                                ? g.meta(p + "rope.scaling.type").get<std::string>()
                                : "";
      if (t == "linear") {
        m.rope_scaling = "linear";
        m.rope_scaling_factor = static_cast<float>(meta_num(g, p + "rope.scaling.factor", 1.0));
      } else if (t != "none") {
        throw Error(ErrorCode::kUnsupported,
                    "GGUF file '" + g.where() + "': rope scaling '" + t + "' is not supported");
      }
    }
    m.tied_embeddings = !g.has("output.weight");
    validate_llama_config(m, "GGUF file '" + g.where() + "'");
    const int64_t hd = m.head_dim(), H = m.n_heads, KV = m.n_kv_heads;
    w.tok_embeddings = g.load("token_embd.weight", {m.vocab_size, D});
    for (int64_t l = 0; l < m.n_layers; ++l) {
      const std::string b = "blk." + std::to_string(l) + ".";
      LlamaLayerWeights L;
      L.attn_norm = g.load(b + "attn_norm.weight", {D});
      L.wqkv = g.load_rows({{b + "attn_q.weight", {H * hd, D}},
                            {b + "attn_k.weight", {KV * hd, D}},
                            {b + "attn_v.weight", {KV * hd, D}}});
      L.wo = g.load(b + "attn_output.weight", {D, H * hd});
      L.ffn_norm = g.load(b + "ffn_norm.weight", {D});
      L.w13 = g.load_rows({{b + "ffn_gate.weight", {F, D}}, {b + "ffn_up.weight", {F, D}}});
      L.w2 = g.load(b + "ffn_down.weight", {D, F});
      w.layers.push_back(std::move(L));
    }
    w.final_norm = g.load("output_norm.weight", {D});
    w.output = m.tied_embeddings ? w.tok_embeddings : g.load("output.weight", {m.vocab_size, D});
  } else {  // gpt2
    m.norm = "layer";
    m.positions = "learned";
    m.activation = "gelu_tanh";
    m.attention_bias = true;
    m.norm_eps = static_cast<float>(meta_num(g, p + "attention.layer_norm_epsilon", 1e-5));
    m.tied_embeddings = !g.has("output.weight");
    validate_llama_config(m, "GGUF file '" + g.where() + "'");
    w.tok_embeddings = g.load("token_embd.weight", {m.vocab_size, D});
    w.pos_embeddings = g.load("position_embd.weight", {m.max_seq_len, D});
    for (int64_t l = 0; l < m.n_layers; ++l) {
      const std::string b = "blk." + std::to_string(l) + ".";
      LlamaLayerWeights L;
      L.attn_norm = g.load(b + "attn_norm.weight", {D});
      L.attn_norm_bias = g.load(b + "attn_norm.bias", {D});
      L.wqkv = g.load(b + "attn_qkv.weight", {3 * D, D});
      L.bqkv = g.load(b + "attn_qkv.bias", {3 * D});
      L.wo = g.load(b + "attn_output.weight", {D, D});
      L.bo = g.load(b + "attn_output.bias", {D});
      L.ffn_norm = g.load(b + "ffn_norm.weight", {D});
      L.ffn_norm_bias = g.load(b + "ffn_norm.bias", {D});
      L.w13 = g.load(b + "ffn_up.weight", {F, D});
      L.b13 = g.load(b + "ffn_up.bias", {F});
      L.w2 = g.load(b + "ffn_down.weight", {D, F});
      L.b2 = g.load(b + "ffn_down.bias", {D});
      w.layers.push_back(std::move(L));
    }
    w.final_norm = g.load("output_norm.weight", {D});
    w.final_norm_bias = g.load("output_norm.bias", {D});
    w.output = m.tied_embeddings ? w.tok_embeddings : g.load("output.weight", {m.vocab_size, D});
  }
  m.source_format = "gguf";
  m.dtype = g.dtype_summary();
  return std::make_unique<LlamaModel>(m, std::move(w), std::move(tok));
}

}  // namespace

std::unique_ptr<Model> load_gguf_model(const std::string& path, const LoadOptions& options) {
  std::unique_ptr<GgufFile> g = GgufFile::open(path);
  const auto& a = g->meta("general.architecture");
  const std::string arch = a.is_string() ? a.get<std::string>() : "";
  if (arch != "llama" && arch != "gpt2") {
    throw Error(
        ErrorCode::kUnsupported,
        "GGUF file '" + path + "' holds architecture '" + arch + "'; candor reads llama and gpt2",
        "see docs/model-formats.md");
  }
  const int64_t vocab = g->has("token_embd.weight") ? g->shape("token_embd.weight")[0] : 0;
  std::shared_ptr<Tokenizer> tok;
  std::vector<std::string> files;
  if (!options.tokenizer_path.empty()) {
    tok = load_folder_tokenizer(".", vocab, options, &files);
  } else {
    tok = gguf_tokenizer(*g, vocab);
  }
  std::unique_ptr<Model> model = build_gguf_llama(*g, tok, arch);
  const_cast<ModelConfig&>(model->config()).tokenizer_files = files;
  return model;
}

// ---- writing ------------------------------------------------------------------------------

namespace {

class Writer {
 public:
  void u32(uint32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void f32(float v) { raw(&v, 4); }
  void str(const std::string& s) {
    u64(s.size());
    buf_ += s;
  }
  void raw(const void* p, size_t n) { buf_.append(static_cast<const char*>(p), n); }
  void kv_u32(const std::string& k, uint32_t v) { str(k), u32(kU32), u32(v); }
  void kv_f32(const std::string& k, float v) { str(k), u32(kF32), f32(v); }
  void kv_str(const std::string& k, const std::string& v) { str(k), u32(kString), str(v); }
  std::string& buf() { return buf_; }

 private:
  std::string buf_;
};

std::string quantize_q8_0(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  const float* x = c.data_ptr<float>();
  const int64_t n = c.numel();
  std::string out(static_cast<size_t>(n / 32) * 34, '\0');
  for (int64_t b = 0; b < n / 32; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    uint16_t h = c10::detail::fp16_ieee_from_fp32_value(d);
    std::memcpy(&out[b * 34], &h, 2);
    for (int j = 0; j < 32; ++j) {
      out[b * 34 + 2 + j] = static_cast<char>(static_cast<int8_t>(std::lround(x[b * 32 + j] * id)));
    }
  }
  return out;
}

}  // namespace

void save_gguf(const Model& model, const std::string& path, const std::string& type) {
  if (type != "f32" && type != "q8_0") {
    throw Error(ErrorCode::kInvalidArgument, "unknown GGUF tensor type '" + type + "'",
                "use f32 or q8_0");
  }
  const auto* lm = dynamic_cast<const LlamaModel*>(&model);
  const ModelConfig& m = model.config();
  if (!lm || m.norm != "rms" || m.positions != "rope" || m.activation != "silu" ||
      m.attention_bias || m.rope_scaling == "llama3") {
    throw Error(ErrorCode::kUnsupported,
                "candor writes GGUF for plain llama-architecture models; this is a " +
                    m.architecture + " model",
                "write a Hugging Face folder instead (candor convert --format hf)");
  }
  if (m.sliding_window > 0 && m.sliding_window < m.max_seq_len) {
    throw Error(ErrorCode::kUnsupported,
                "candor does not write GGUF for models with sliding-window attention (this " +
                    m.architecture + " model has a window of " + std::to_string(m.sliding_window) +
                    " tokens)",
                "write a Hugging Face folder instead (candor convert --format hf)");
  }
  const Tokenizer& tok = model.tokenizer();
  if (tok.kind() != "llama2c" && tok.kind() != "sentencepiece") {
    throw Error(ErrorCode::kUnsupported, "the model's tokenizer (" + tok.kind() +
                                             ") cannot be stored as a GGUF llama "
                                             "vocabulary");
  }
  // Tensors in llama.cpp naming; q/k stay in the interleaved rotary layout GGUF uses.
  const LlamaWeights& w = lm->weights();
  const int64_t hd = m.head_dim(), H = m.n_heads, KV = m.n_kv_heads, F = m.hidden_dim;
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  tensors.emplace_back("token_embd.weight", w.tok_embeddings);
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const auto& L = w.layers[l];
    const std::string b = "blk." + std::to_string(l) + ".";
    tensors.emplace_back(b + "attn_norm.weight", L.attn_norm);
    tensors.emplace_back(b + "attn_q.weight", L.wqkv.narrow(0, 0, H * hd));
    tensors.emplace_back(b + "attn_k.weight", L.wqkv.narrow(0, H * hd, KV * hd));
    tensors.emplace_back(b + "attn_v.weight", L.wqkv.narrow(0, (H + KV) * hd, KV * hd));
    tensors.emplace_back(b + "attn_output.weight", L.wo);
    tensors.emplace_back(b + "ffn_norm.weight", L.ffn_norm);
    tensors.emplace_back(b + "ffn_gate.weight", L.w13.narrow(0, 0, F));
    tensors.emplace_back(b + "ffn_up.weight", L.w13.narrow(0, F, F));
    tensors.emplace_back(b + "ffn_down.weight", L.w2);
  }
  tensors.emplace_back("output_norm.weight", w.final_norm);
  if (!m.tied_embeddings) tensors.emplace_back("output.weight", w.output);

  Writer h;
  const int32_t V = tok.vocab_size();
  const uint64_t n_kv = 20 + (m.rope_scaling == "linear" ? 2 : 0);
  h.u32(kMagic);
  h.u32(3);
  h.u64(tensors.size());
  h.u64(n_kv);
  h.kv_str("general.architecture", "llama");
  h.kv_str("general.name", "candor export");
  h.kv_u32("general.alignment", static_cast<uint32_t>(kDefaultAlignment));
  h.kv_u32("general.file_type", type == "f32" ? 0 : 7);
  h.kv_u32("llama.context_length", static_cast<uint32_t>(m.max_seq_len));
  h.kv_u32("llama.embedding_length", static_cast<uint32_t>(m.dim));
  h.kv_u32("llama.block_count", static_cast<uint32_t>(m.n_layers));
  h.kv_u32("llama.feed_forward_length", static_cast<uint32_t>(m.hidden_dim));
  h.kv_u32("llama.attention.head_count", static_cast<uint32_t>(H));
  h.kv_u32("llama.attention.head_count_kv", static_cast<uint32_t>(KV));
  h.kv_f32("llama.attention.layer_norm_rms_epsilon", m.norm_eps);
  h.kv_f32("llama.rope.freq_base", m.rope_theta);
  h.kv_u32("llama.rope.dimension_count", static_cast<uint32_t>(hd));
  if (m.rope_scaling == "linear") {
    h.kv_str("llama.rope.scaling.type", "linear");
    h.kv_f32("llama.rope.scaling.factor", m.rope_scaling_factor);
  }
  h.kv_str("tokenizer.ggml.model", "llama");
  h.str("tokenizer.ggml.tokens");
  h.u32(kArray);
  h.u32(kString);
  h.u64(static_cast<uint64_t>(V));
  for (TokenId i = 0; i < V; ++i) h.str(replace_all(tok.piece(i), " ", kSpmSpace));
  h.str("tokenizer.ggml.scores");
  h.u32(kArray);
  h.u32(kF32);
  h.u64(static_cast<uint64_t>(V));
  for (TokenId i = 0; i < V; ++i) h.f32(tok.score(i));
  h.str("tokenizer.ggml.token_type");
  h.u32(kArray);
  h.u32(kI32);
  h.u64(static_cast<uint64_t>(V));
  for (TokenId i = 0; i < V; ++i) {
    uint8_t byte = 0;
    int32_t t = i == tok.unk_id() ? 2 : (i == tok.bos_id() || i == tok.eos_id()) ? 3 : 1;
    if (t == 1 && tokenizers::parse_byte_piece(tok.piece(i), &byte)) t = 6;
    h.raw(&t, 4);
  }
  h.kv_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(tok.bos_id()));
  h.kv_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(tok.eos_id()));
  h.kv_u32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(tok.unk_id()));

  std::vector<std::string> blobs;
  uint64_t offset = 0;
  for (const auto& [name, t0] : tensors) {
    at::Tensor t = t0.contiguous().to(at::kFloat);
    const bool q8 = type == "q8_0" && t.dim() == 2 && t.size(1) % 32 == 0;
    std::string data =
        q8 ? quantize_q8_0(t) : std::string(static_cast<const char*>(t.data_ptr()), t.numel() * 4);
    h.str(name);
    h.u32(static_cast<uint32_t>(t.dim()));
    for (int64_t d = t.dim() - 1; d >= 0; --d) h.u64(static_cast<uint64_t>(t.size(d)));
    h.u32(q8 ? 8 : 0);
    h.u64(offset);
    offset += data.size();
    while (data.size() % kDefaultAlignment) data.push_back('\0');
    offset = (offset + kDefaultAlignment - 1) / kDefaultAlignment * kDefaultAlignment;
    blobs.push_back(std::move(data));
  }
  while (h.buf().size() % kDefaultAlignment) h.buf().push_back('\0');
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw Error(ErrorCode::kNotFound, "cannot write '" + path + "'", "check the folder");
  f.write(h.buf().data(), static_cast<std::streamsize>(h.buf().size()));
  for (const auto& b : blobs) f.write(b.data(), static_cast<std::streamsize>(b.size()));
  f.flush();
  if (!f) throw Error(ErrorCode::kResourceExhausted, "writing '" + path + "' failed (disk full?)");
}

}  // namespace candor
