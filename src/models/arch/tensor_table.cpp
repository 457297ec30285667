// The walkers over an architecture's tensor table: reading a checkpoint's tensors into the
// decoder (LlamaWeights) or encoder (EncoderWeights) runtime, and naming a model's weights for
// a writer. The same table serves Hugging Face and GGUF files; see arch.h.
#include <ATen/ATen.h>

#include <algorithm>

#include "candor/error.h"
#include "models/arch/arch.h"
#include "candor/encoder.h"
#include "models/formats/tensor_source.h"
#include "models/llama.h"

namespace candor {
namespace {

bool per_layer(const std::string& name) { return name.find("{l}") != std::string::npos; }

std::string layer_name(const std::string& pattern, int64_t layer) {
  std::string s = pattern;
  const size_t at = s.find("{l}");
  if (at != std::string::npos) s.replace(at, 3, std::to_string(layer));
  return s;
}

const std::string& name_in(const TensorName& e, TensorFormat f) {
  return f == TensorFormat::kHf ? e.hf : e.gguf;
}

// Sizes a slot's shape is made of.
struct Dims {
  int64_t D, F, H, KV, hd, V, n_pos, n_types, n_labels;
  bool gated;
};

Dims dims_of(const ArchConfig& a) {
  const ModelConfig& m = a.model;
  return {m.dim,
          m.hidden_dim,
          m.n_heads,
          m.n_kv_heads,
          m.head_dim(),
          m.vocab_size,
          m.max_seq_len + a.encoder.position_offset,
          a.type_vocab,
          static_cast<int64_t>(m.labels.size()),
          m.activation == Activation::kSwiGLU};
}

// The runtime shape of a slot (of its rows, for a part of a fused tensor).
std::vector<int64_t> slot_shape(Slot s, const Dims& d) {
  const int64_t q = d.H * d.hd, kv = d.KV * d.hd;
  switch (s) {
    case Slot::kTokEmbd:
    case Slot::kOutput:
      return {d.V, d.D};
    case Slot::kPosEmbd:
      return {d.n_pos, d.D};
    case Slot::kTypeEmbd:
      return {d.n_types, d.D};
    case Slot::kPoolW:
      return {d.D, d.D};
    case Slot::kClsW:
      return {d.n_labels, d.D};
    case Slot::kClsB:
      return {d.n_labels};
    case Slot::kQ:
      return {q, d.D};
    case Slot::kK:
    case Slot::kV:
      return {kv, d.D};
    case Slot::kQKV:
      return {q + 2 * kv, d.D};
    case Slot::kQBias:
      return {q};
    case Slot::kKBias:
    case Slot::kVBias:
      return {kv};
    case Slot::kQKVBias:
      return {q + 2 * kv};
    case Slot::kO:
      return {d.D, q};
    case Slot::kGate:
    case Slot::kUp:
      return {d.F, d.D};
    case Slot::kUpBias:
      return {d.F};
    case Slot::kDown:
      return {d.D, d.F};
    default:  // norms, norm biases, output-projection and down-projection biases
      return {d.D};
  }
}

// The first row of a slot within its fused runtime tensor.
int64_t slot_offset(Slot s, const Dims& d) {
  switch (s) {
    case Slot::kK:
    case Slot::kKBias:
      return d.H * d.hd;
    case Slot::kV:
    case Slot::kVBias:
      return (d.H + d.KV) * d.hd;
    case Slot::kUp:
      return d.gated ? d.F : 0;
    default:
      return 0;
  }
}

// Heads whose rotary rows a q/k slot holds.
int64_t slot_heads(Slot s, const Dims& d) {
  return s == Slot::kQ || s == Slot::kQBias ? d.H : d.KV;
}

// The tensors both runtimes name alike: embeddings and the layers' attention, norms and down
// projection (nullptr for the others).
template <typename Weights, typename LayerWeights>
at::Tensor* shared_target(Weights& w, LayerWeights* L, Slot s) {
  if (s == Slot::kTokEmbd) return &w.tok_embeddings;
  if (s == Slot::kPosEmbd) return &w.pos_embeddings;
  if (!L) return nullptr;
  switch (s) {
    case Slot::kAttnNorm:
      return &L->attn_norm;
    case Slot::kAttnNormBias:
      return &L->attn_norm_bias;
    case Slot::kQ:
    case Slot::kK:
    case Slot::kV:
    case Slot::kQKV:
      return &L->wqkv;
    case Slot::kQBias:
    case Slot::kKBias:
    case Slot::kVBias:
    case Slot::kQKVBias:
      return &L->bqkv;
    case Slot::kO:
      return &L->wo;
    case Slot::kOBias:
      return &L->bo;
    case Slot::kFfnNorm:
      return &L->ffn_norm;
    case Slot::kFfnNormBias:
      return &L->ffn_norm_bias;
    case Slot::kDown:
      return &L->w2;
    case Slot::kDownBias:
      return &L->b2;
    default:
      return nullptr;
  }
}

// The runtime tensor a slot lives in (nullptr: the runtime has none). `L`: the layer's
// weights, null for whole-model slots.
at::Tensor* target(LlamaWeights& w, LlamaLayerWeights* L, Slot s) {
  if (at::Tensor* t = shared_target(w, L, s)) return t;
  if (s == Slot::kFinalNorm) return &w.final_norm;
  if (s == Slot::kFinalNormBias) return &w.final_norm_bias;
  if (s == Slot::kOutput) return &w.output;
  if (L && (s == Slot::kGate || s == Slot::kUp)) return &L->w13;
  if (L && s == Slot::kUpBias) return &L->b13;
  return nullptr;
}

at::Tensor* target(EncoderWeights& w, EncoderLayerWeights* L, Slot s) {
  if (at::Tensor* t = shared_target(w, L, s)) return t;
  if (s == Slot::kTypeEmbd) return &w.type_embeddings;
  if (s == Slot::kEmbNorm) return &w.emb_norm;
  if (s == Slot::kEmbNormBias) return &w.emb_norm_bias;
  if (s == Slot::kPoolW) return &w.pool_w;
  if (s == Slot::kPoolB) return &w.pool_b;
  if (s == Slot::kClsW) return &w.cls_w;
  if (s == Slot::kClsB) return &w.cls_b;
  if (L && s == Slot::kUp) return &L->w1;
  if (L && s == Slot::kUpBias) return &L->b1;
  return nullptr;
}

// Where a matrix kept quantized goes (nullptr: this runtime tensor is always read as float).
fused::QuantMatrix* quant_slot(LlamaWeights& w, LlamaLayerWeights* L, QuantWeights* q,
                               int64_t layer, const at::Tensor* t) {
  if (!q) return nullptr;
  if (t == &w.tok_embeddings) return &q->tok_embeddings;
  if (t == &w.output) return &q->output;
  if (!L) return nullptr;
  QuantLayerWeights& Q = q->layers[static_cast<size_t>(layer)];
  if (t == &L->wqkv) return &Q.wqkv;
  if (t == &L->wo) return &Q.wo;
  if (t == &L->w13) return &Q.w13;
  if (t == &L->w2) return &Q.w2;
  return nullptr;
}

fused::QuantMatrix* quant_slot(EncoderWeights&, EncoderLayerWeights*, QuantWeights*, int64_t,
                               const at::Tensor*) {
  return nullptr;
}

bool present(const TensorName& e, const ArchConfig& a) {
  switch (e.presence) {
    case Presence::kAlways:
      return true;
    case Presence::kQkvBias:
      return a.qkv_bias;
    case Presence::kOBias:
      return a.o_bias;
    case Presence::kUntied:
      return !a.model.tied_embeddings;
  }
  return true;
}

// The table's entries for `format` in runs: whole-model entries one by one, and each run of
// consecutive per-layer entries as one block that is repeated for every layer.
struct Run {
  std::vector<const TensorName*> entries;
  bool layered = false;
};

std::vector<Run> runs_of(const TensorTable& table, TensorFormat format) {
  std::vector<Run> runs;
  for (const TensorName& e : table) {
    const std::string& n = name_in(e, format);
    if (n.empty()) continue;
    const bool layered = per_layer(n);
    if (runs.empty() || !layered || !runs.back().layered) runs.push_back({{}, layered});
    runs.back().entries.push_back(&e);
  }
  return runs;
}

// Reads the entries of one run (one layer, or one whole-model tensor) into their targets.
template <typename Weights, typename LayerWeights>
void read_run(const Run& run, int64_t layer, const ArchConfig& a, const Dims& d,
              const TensorSource& ts, TensorFormat format, const std::string& strip, Weights& w,
              LayerWeights* L, QuantWeights* q = nullptr, const QuantKeeper* keep = nullptr) {
  auto name = [&](const TensorName& e) {
    std::string n = layer_name(name_in(e, format), layer);
    if (!strip.empty() && n.compare(0, strip.size(), strip) == 0) n.erase(0, strip.size());
    return n;
  };
  // The present entries by runtime tensor, in the order the tensors first appear; a fused
  // tensor's parts by their first row.
  std::vector<std::pair<at::Tensor*, std::vector<const TensorName*>>> groups;
  for (const TensorName* e : run.entries) {
    at::Tensor* t = target(w, L, e->slot);
    if (!t || !present(*e, a)) continue;
    auto it =
        std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == t; });
    if (it == groups.end()) it = groups.insert(groups.end(), {t, {}});
    it->second.push_back(e);
  }
  for (auto& [t, group] : groups) {
    std::stable_sort(group.begin(), group.end(), [&](const TensorName* x, const TensorName* y) {
      return slot_offset(x->slot, d) < slot_offset(y->slot, d);
    });
    const bool hf = format == TensorFormat::kHf;
    if (keep && *keep) {
      if (fused::QuantMatrix* slot = quant_slot(w, L, q, layer, t)) {
        std::vector<std::pair<std::string, std::vector<int64_t>>> parts;
        for (const TensorName* e : group) parts.emplace_back(name(*e), slot_shape(e->slot, d));
        if ((*keep)(parts, slot)) continue;  // stays quantized: the tensor stays undefined
      }
    }
    if (group.size() == 1 && slot_offset(group[0]->slot, d) == 0) {
      const TensorName& e = *group[0];
      const std::vector<int64_t> shape = slot_shape(e.slot, d);
      if (hf && e.hf_layout == HfLayout::kConv1D) {
        // Conv1D stores [in, out]: transposed into the [out, in] of a linear layer.
        *t = empty_weight(shape);
        t->copy_(ts.load(name(e), {shape[1], shape[0]}).t());
      } else {
        *t = ts.load(name(e), shape);
        if (hf && e.hf_layout == HfLayout::kRotateHalf)
          *t = rotate_half_to_interleaved(*t, slot_heads(e.slot, d));
      }
      continue;
    }
    std::vector<std::pair<std::string, std::vector<int64_t>>> parts;
    for (const TensorName* e : group) parts.emplace_back(name(*e), slot_shape(e->slot, d));
    *t = ts.load_rows(parts);  // a new tensor: rotated in place below
    if (!hf) continue;
    for (const TensorName* e : group) {
      if (e->hf_layout != HfLayout::kRotateHalf) continue;
      at::Tensor rows = t->narrow(0, slot_offset(e->slot, d), slot_shape(e->slot, d)[0]);
      rows.copy_(rotate_half_to_interleaved(rows, slot_heads(e->slot, d)));
    }
  }
}

template <typename Weights, typename LayerWeights>
Weights read_weights(const Architecture& arch, const ArchConfig& a, const TensorSource& ts,
                     TensorFormat format, QuantWeights* q = nullptr,
                     const QuantKeeper* keep = nullptr) {
  const Dims d = dims_of(a);
  const std::vector<Run> runs = runs_of(*arch.tensors, format);
  // Checkpoints saved without the optional prefix: the first tensor tells.
  std::string strip;
  if (format == TensorFormat::kHf && !arch.hf_optional_prefix.empty() && !runs.empty() &&
      !ts.has(layer_name(runs[0].entries[0]->hf, 0)))
    strip = arch.hf_optional_prefix;
  Weights w;
  w.layers.resize(static_cast<size_t>(a.model.n_layers));
  for (const Run& run : runs) {
    if (!run.layered) {
      read_run<Weights, LayerWeights>(run, 0, a, d, ts, format, strip, w, nullptr, q, keep);
      continue;
    }
    for (int64_t l = 0; l < a.model.n_layers; ++l)
      read_run(run, l, a, d, ts, format, strip, w, &w.layers[static_cast<size_t>(l)], q, keep);
  }
  return w;
}

// Appends the tensors of one run to `out`.
template <typename Weights, typename LayerWeights>
void write_run(const Run& run, int64_t layer, const ModelConfig& m, const Dims& d,
               TensorFormat format, Weights& w, LayerWeights* L,
               std::vector<std::pair<std::string, at::Tensor>>* out) {
  for (const TensorName* e : run.entries) {
    if (e->slot == Slot::kOutput && m.tied_embeddings) continue;
    const at::Tensor* t = target(w, L, e->slot);
    if (!t || !t->defined()) continue;
    at::Tensor v = *t;
    const int64_t first = slot_offset(e->slot, d), rows = slot_shape(e->slot, d)[0];
    if (first != 0 || rows != v.size(0)) v = v.narrow(0, first, rows);  // a part of a fused one
    if (format == TensorFormat::kHf && e->hf_layout == HfLayout::kRotateHalf)
      v = interleaved_to_rotate_half(v, slot_heads(e->slot, d));
    if (format == TensorFormat::kHf && e->hf_layout == HfLayout::kConv1D) v = v.t();
    out->emplace_back(layer_name(name_in(*e, format), layer), v.contiguous());
  }
}

// `w` is a copy (of tensor handles): the walkers take the slots' addresses.
template <typename Weights, typename LayerWeights>
std::vector<std::pair<std::string, at::Tensor>> write_weights(const Architecture& arch,
                                                              const ModelConfig& m, const Dims& d,
                                                              TensorFormat format, Weights w) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const Run& run : runs_of(*arch.tensors, format)) {
    if (!run.layered) {
      write_run<Weights, LayerWeights>(run, 0, m, d, format, w, nullptr, &out);
      continue;
    }
    for (size_t l = 0; l < w.layers.size(); ++l)
      write_run(run, static_cast<int64_t>(l), m, d, format, w, &w.layers[l], &out);
  }
  return out;
}

}  // namespace

std::unique_ptr<Model> build_from_table(const Architecture& arch, const ArchConfig& config,
                                        const TensorSource& tensors, TensorFormat format,
                                        std::shared_ptr<Tokenizer> tokenizer,
                                        const QuantKeeper& keep) {
  if (arch.kind == ModelKind::kClassifier) {
    EncoderWeights w =
        read_weights<EncoderWeights, EncoderLayerWeights>(arch, config, tensors, format);
    return std::make_unique<EncoderClassifier>(config.model, config.encoder, std::move(w),
                                               std::move(tokenizer));
  }
  auto q = std::make_shared<QuantWeights>();
  q->layers.resize(static_cast<size_t>(std::max<int64_t>(0, config.model.n_layers)));
  LlamaWeights w = read_weights<LlamaWeights, LlamaLayerWeights>(arch, config, tensors, format,
                                                                 q.get(), &keep);
  if (config.model.tied_embeddings) {
    w.output = w.tok_embeddings;
    q->output = q->tok_embeddings;
  }
  if (q->any()) w.quant = std::move(q);
  return std::make_unique<LlamaModel>(config.model, std::move(w), std::move(tokenizer));
}

std::vector<std::pair<std::string, at::Tensor>> tensors_from_table(const Architecture& arch,
                                                                   const Model& model,
                                                                   TensorFormat format) {
  const ModelConfig& m = model.config();
  ArchConfig a;
  a.model = m;
  if (const auto* lm = dynamic_cast<const LlamaModel*>(&model)) {
    return write_weights<LlamaWeights, LlamaLayerWeights>(arch, m, dims_of(a), format,
                                                          lm->weights());
  }
  if (const auto* enc = dynamic_cast<const EncoderClassifier*>(&model)) {
    a.encoder = enc->settings();
    const EncoderWeights& w = enc->weights();
    if (w.type_embeddings.defined()) a.type_vocab = w.type_embeddings.size(0);
    return write_weights<EncoderWeights, EncoderLayerWeights>(arch, m, dims_of(a), format, w);
  }
  throw Error(ErrorCode::kUnsupported,
              "cannot write a " + m.architecture + " model as a " +
                  (format == TensorFormat::kHf ? "Hugging Face folder" : "GGUF file"));
}

}  // namespace candor
