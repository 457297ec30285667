// The GGUF writer: F32 and Q8_0 llama-family models with their scored vocabulary in the
// metadata (llama.cpp's public GGUF specification).
#include <ATen/ATen.h>

#include <fstream>
#include <map>

#include "candor/error.h"
#include "candor/files.h"
#include "candor/tokenizer.h"
#include "models/arch/arch.h"
#include "models/formats/gguf.h"
#include "models/formats/gguf_format.h"

namespace candor {
namespace {

using namespace gguf;

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

}  // namespace

void save_gguf(const Model& model, const std::string& path, const std::string& type) {
  // The ggml type of the 2-D weights (the others stay F32) and general.file_type.
  const std::map<std::string, std::pair<uint32_t, uint32_t>> kTypes = {
      {"f32", {0, 0}}, {"q8_0", {8, 7}}, {"q4_k", {12, 15}}, {"q6_k", {14, 18}}, {"bf16", {30, 32}}};
  if (!kTypes.count(type)) {
    throw Error(ErrorCode::kInvalidArgument, "unknown GGUF tensor type '" + type + "'",
                "use f32, q8_0, q4_k, q6_k or bf16");
  }
  const uint32_t wtype = kTypes.at(type).first;
  const int64_t block = gguf::traits(wtype).block;
  const ModelConfig& m = model.config();
  // Families without a GGUF writer of their own (mistral, qwen2) are written as llama, whose
  // mapping refuses the layouts it cannot describe.
  const Architecture* arch = find_architecture(m.architecture);
  if (!arch || !arch->to_gguf) arch = &llama_architecture();
  const GgufMetadata hyper = arch->to_gguf(m);
  const Tokenizer& tok = model.tokenizer();
  if (tok.kind() != "llama2c" && tok.kind() != "sentencepiece") {
    throw Error(ErrorCode::kUnsupported, "the model's tokenizer (" + tok.kind() +
                                             ") cannot be stored as a GGUF llama "
                                             "vocabulary");
  }
  const std::vector<std::pair<std::string, at::Tensor>> tensors =
      tensors_from_table(*arch, model, TensorFormat::kGguf);
  const VocabTokenizerSpec vocab = scored_vocabulary(tok);
  const uint64_t V = vocab.tokens.size();

  Writer h;
  h.u32(kMagic);
  h.u32(3);
  h.u64(tensors.size());
  h.u64(4 + hyper.size() + 7);  // general.*, the architecture's, tokenizer.ggml.*
  h.kv_str("general.architecture", arch->gguf_name);
  h.kv_str("general.name", "candor export");
  h.kv_u32("general.alignment", static_cast<uint32_t>(kDefaultAlignment));
  h.kv_u32("general.file_type", kTypes.at(type).second);
  for (const auto& [key, value] : hyper) {
    if (value.is_string()) {
      h.kv_str(key, value.get<std::string>());
    } else if (value.is_number_float()) {
      h.kv_f32(key, value.get<float>());
    } else {
      h.kv_u32(key, value.get<uint32_t>());
    }
  }
  h.kv_str("tokenizer.ggml.model", vocab.model);
  h.str("tokenizer.ggml.tokens");
  h.u32(kArray);
  h.u32(kString);
  h.u64(V);
  for (const std::string& t : vocab.tokens) h.str(t);
  h.str("tokenizer.ggml.scores");
  h.u32(kArray);
  h.u32(kF32);
  h.u64(V);
  for (float score : vocab.scores) h.f32(score);
  h.str("tokenizer.ggml.token_type");
  h.u32(kArray);
  h.u32(kI32);
  h.u64(V);
  for (int32_t t : vocab.token_types) h.raw(&t, 4);
  h.kv_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(vocab.bos_id));
  h.kv_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(vocab.eos_id));
  h.kv_u32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(vocab.unk_id));

  std::vector<std::string> blobs;
  uint64_t offset = 0;
  for (const auto& [name, t0] : tensors) {
    at::Tensor t = t0.contiguous().to(at::kFloat);
    const bool q = wtype != 0 && t.dim() == 2 && t.size(1) % block == 0;
    std::string data = q ? quantize_ggml(wtype, t.data_ptr<float>(), t.numel())
                         : std::string(static_cast<const char*>(t.data_ptr()), t.numel() * 4);
    h.str(name);
    h.u32(static_cast<uint32_t>(t.dim()));
    for (int64_t d = t.dim() - 1; d >= 0; --d) h.u64(static_cast<uint64_t>(t.size(d)));
    h.u32(q ? wtype : 0);
    h.u64(offset);
    offset += data.size();
    while (data.size() % kDefaultAlignment) data.push_back('\0');
    offset = (offset + kDefaultAlignment - 1) / kDefaultAlignment * kDefaultAlignment;
    blobs.push_back(std::move(data));
  }
  while (h.buf().size() % kDefaultAlignment) h.buf().push_back('\0');
  AtomicFile file(path);  // never a half-written model under `path`
  std::ostream& f = file.stream();
  f.write(h.buf().data(), static_cast<std::streamsize>(h.buf().size()));
  for (const auto& b : blobs) f.write(b.data(), static_cast<std::streamsize>(b.size()));
  file.commit();
}

}  // namespace candor