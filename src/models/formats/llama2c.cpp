// Reader for llama2.c checkpoints (the legacy "version 0" export: a 7-int32 header, then fp32
// weights in a fixed order, then optionally the unshared output matrix).
#include <ATen/ATen.h>

#include <cstdint>
#include <cstdio>
#include <fstream>

#include "candor/error.h"
#include "models/llama.h"

namespace candor {
namespace {

constexpr int32_t kVersionedMagic = 0x616b3432;  // "ak42": llama2.c's newer export formats

struct Header {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

int64_t file_size(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) return -1;
  return static_cast<int64_t>(f.tellg());
}

// Number of floats the legacy layout stores after the header.
int64_t expected_floats(const ModelConfig& c, bool shared) {
  const int64_t L = c.n_layers, D = c.dim, F = c.hidden_dim, V = c.vocab_size;
  const int64_t hd = c.head_dim(), kv = c.n_kv_heads * hd, q = c.n_heads * hd;
  int64_t n = V * D;                // token embeddings
  n += L * D;                       // attention norms
  n += L * D * q + 2 * L * D * kv;  // wq, wk, wv
  n += L * q * D;                   // wo
  n += L * D;                       // ffn norms
  n += 3 * L * D * F;               // w1, w2, w3
  n += D;                           // final norm
  n += c.max_seq_len * hd;          // freq_cis real + imag (unused: recomputed)
  if (!shared) n += V * D;          // output matrix
  return n;
}

bool read_header(const std::string& path, Header* h) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  f.read(reinterpret_cast<char*>(h), sizeof(Header));
  return static_cast<size_t>(f.gcount()) == sizeof(Header);
}

ModelConfig config_from_header(const Header& h) {
  ModelConfig c;
  c.architecture = "llama";
  c.source_format = "llama2c";
  c.dtype = "f32";
  c.dim = h.dim;
  c.hidden_dim = h.hidden_dim;
  c.n_layers = h.n_layers;
  c.n_heads = h.n_heads;
  c.n_kv_heads = h.n_kv_heads;
  c.vocab_size = h.vocab_size < 0 ? -static_cast<int64_t>(h.vocab_size) : h.vocab_size;
  c.tied_embeddings = h.vocab_size > 0;
  c.max_seq_len = h.seq_len;
  c.rope_interleaved = true;
  return c;
}

}  // namespace

bool looks_like_llama2c_checkpoint(const std::string& path) {
  Header h{};
  if (!read_header(path, &h) || h.dim == kVersionedMagic) return false;
  ModelConfig c = config_from_header(h);
  try {
    validate_llama_config(c, path);
  } catch (const Error&) {
    return false;
  }
  return file_size(path) ==
         static_cast<int64_t>(sizeof(Header)) + 4 * expected_floats(c, c.tied_embeddings);
}

std::pair<ModelConfig, LlamaWeights> read_llama2c_checkpoint(const std::string& path) {
  const int64_t size = file_size(path);
  if (size < 0) {
    throw Error(ErrorCode::kNotFound, "cannot open checkpoint '" + path + "'",
                "check the path; --model takes a llama2.c .bin file or a folder holding one");
  }
  Header h{};
  if (!read_header(path, &h)) {
    throw Error(ErrorCode::kInvalidArgument,
                "checkpoint '" + path + "' is truncated: " + std::to_string(size) +
                    " bytes, too short for the 28-byte llama2.c header",
                "re-export or re-download the checkpoint");
  }
  if (h.dim == kVersionedMagic) {
    throw Error(ErrorCode::kUnsupported,
                "checkpoint '" + path + "' uses llama2.c's versioned export format (magic ak42)",
                "export it with llama2.c's legacy format (export.py --version 0)");
  }
  ModelConfig c = config_from_header(h);
  validate_llama_config(c, "checkpoint '" + path + "'");
  const int64_t n_floats = expected_floats(c, c.tied_embeddings);
  const int64_t want = static_cast<int64_t>(sizeof(Header)) + 4 * n_floats;
  if (size < want) {
    throw Error(ErrorCode::kInvalidArgument,
                "checkpoint '" + path + "' is truncated: its header describes " +
                    std::to_string(want) + " bytes but the file has " + std::to_string(size),
                "the file was cut short; re-export or re-download it");
  }
  if (size > want) {
    throw Error(ErrorCode::kInvalidArgument,
                "checkpoint '" + path + "': header inconsistent with file size: the header (dim " +
                    std::to_string(c.dim) + ", " + std::to_string(c.n_layers) + " layers, vocab " +
                    std::to_string(c.vocab_size) + ") describes " + std::to_string(want) +
                    " bytes but the file has " + std::to_string(size),
                "the file is not a legacy llama2.c checkpoint or it is corrupt");
  }

  at::Tensor data = at::empty({n_floats}, at::kFloat);
  {
    std::ifstream f(path, std::ios::binary);
    f.seekg(sizeof(Header));
    f.read(reinterpret_cast<char*>(data.data_ptr<float>()), n_floats * 4);
    if (f.gcount() != n_floats * 4) {
      throw Error(ErrorCode::kInvalidArgument, "checkpoint '" + path + "': read failed");
    }
  }
  int64_t off = 0;
  auto take = [&](std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    at::Tensor t = data.narrow(0, off, n).view(shape);
    off += n;
    return t;
  };
  const int64_t L = c.n_layers, D = c.dim, F = c.hidden_dim, V = c.vocab_size;
  const int64_t hd = c.head_dim(), q_dim = c.n_heads * hd, kv_dim = c.n_kv_heads * hd;
  LlamaWeights w;
  w.tok_embeddings = take({V, D}).clone();  // clones free `data` after loading
  at::Tensor attn_norm = take({L, D});
  at::Tensor wq = take({L, q_dim, D});
  at::Tensor wk = take({L, kv_dim, D});
  at::Tensor wv = take({L, kv_dim, D});
  at::Tensor wo = take({L, D, q_dim});
  at::Tensor ffn_norm = take({L, D});
  at::Tensor w1 = take({L, F, D});
  at::Tensor w2 = take({L, D, F});
  at::Tensor w3 = take({L, F, D});
  w.final_norm = take({D}).clone();
  take({c.max_seq_len, hd});  // freq_cis_real, recomputed
  w.output = c.tied_embeddings ? w.tok_embeddings : take({V, D}).clone();
  for (int64_t l = 0; l < L; ++l) {
    LlamaLayerWeights lw;
    lw.attn_norm = attn_norm[l].clone();
    lw.wqkv = at::cat({wq[l], wk[l], wv[l]}, 0);
    lw.wo = wo[l].clone();
    lw.ffn_norm = ffn_norm[l].clone();
    lw.w13 = at::cat({w1[l], w3[l]}, 0);
    lw.w2 = w2[l].clone();
    w.layers.push_back(std::move(lw));
  }
  return {c, std::move(w)};
}

}  // namespace candor
