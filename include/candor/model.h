// The language-model runtime: load a model, run it over batches (from tokens or from input
// embeddings), keep an explicit KV cache, and capture internal activations.
// Tensors are ATen tensors (<ATen/core/Tensor.h>, not torch/torch.h); shapes are in comments.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "candor/tokenizer.h"

namespace candor {

// What a model computes: next-token logits over the vocabulary, or class logits.
enum class ModelKind {
  kCausalLM,    // decoder: forward() gives next-token logits [batch, seq, vocab]
  kClassifier,  // bidirectional encoder with a sequence-classification head: forward() gives
                // the class logits of the whole sequence at every position [batch, seq, labels]
};

// Decoder and encoder variants (ModelConfig::norm, positions, activation).
enum class NormKind {
  kRMSNorm,    // x / rms(x) * weight (Llama)
  kLayerNorm,  // (x - mean) / std * weight + bias (GPT-2, BERT)
};
enum class PositionKind {
  kRotary,   // rotary embeddings applied to q and k (Llama)
  kLearned,  // absolute position embeddings added to the input (GPT-2, BERT)
  kNone,     // no position information
};
enum class Activation {
  kSwiGLU,    // gated: silu(gate) * up (the fused w13 holds gate rows, then up rows)
  kGeluTanh,  // GELU, tanh approximation (GPT-2's gelu_new)
  kGelu,      // GELU, exact erf form
  kRelu,
};

// Architecture hyper-parameters of a transformer.
struct ModelConfig {
  std::string architecture = "llama";  // family name shown by `candor info` (llama, mistral,
                                       // qwen2, gpt2, bert, roberta, distilbert)
  std::string source_format;           // "llama2c", "safetensors", "gguf", ...
  std::string dtype = "f32";           // storage dtype of the weights in the file
  std::string compute_dtype = "f32";   // dtype the weights are kept and the forward runs in
                                       // (LoadOptions::compute_dtype): "f32" or "bf16"
  ModelKind kind = ModelKind::kCausalLM;
  std::vector<std::string> labels;           // classifier: class names by index (id2label)
  std::vector<std::string> tokenizer_files;  // files the tokenizer was read from (for convert)
  int64_t dim = 0;                           // residual width
  int64_t hidden_dim = 0;                    // feed-forward width
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;  // < n_heads: grouped-query attention
  int64_t vocab_size = 0;
  int64_t max_seq_len = 0;  // context length
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  bool rope_interleaved = true;  // llama2.c pairs (2i, 2i+1); false: HF rotate-half layout
  bool tied_embeddings = true;   // the output matrix is the token embedding matrix

  // Rotary scaling: "none", "linear" (positions divided by the factor) or "llama3"
  // (frequency-dependent, Llama 3.1).
  std::string rope_scaling = "none";
  float rope_scaling_factor = 1.0f;
  float rope_low_freq_factor = 1.0f;         // llama3
  float rope_high_freq_factor = 4.0f;        // llama3
  int64_t rope_original_max_seq_len = 8192;  // llama3
  bool attention_bias = false;               // q/k/v projections have biases (Qwen2, GPT-2, BERT)
  // Sliding-window attention (Mistral, Qwen2): > 0: a query attends only to the keys fewer than
  // this many tokens back (position i sees j when i - j < sliding_window); 0: full causal
  // attention.
  int64_t sliding_window = 0;
  // Which layers use the window (Qwen2 windows only the layers from max_window_layers on): one
  // entry per layer, or empty = every layer (Mistral). See window_of().
  std::vector<bool> windowed_layers;

  // Variants: Llama = RMSNorm / rotary / SwiGLU; GPT-2 = LayerNorm / learned / GELU (tanh);
  // BERT = LayerNorm / learned / GELU.
  NormKind norm = NormKind::kRMSNorm;
  PositionKind positions = PositionKind::kRotary;
  Activation activation = Activation::kSwiGLU;

  int64_t head_dim() const { return n_heads > 0 ? dim / n_heads : 0; }
  // The sliding window of `layer` (0: full attention).
  int64_t window_of(int64_t layer) const {
    if (sliding_window <= 0) return 0;
    if (windowed_layers.empty()) return sliding_window;
    return layer >= 0 && layer < static_cast<int64_t>(windowed_layers.size()) &&
                   windowed_layers[static_cast<size_t>(layer)]
               ? sliding_window
               : 0;
  }
  bool is_causal() const { return kind == ModelKind::kCausalLM; }
  // Width of forward()'s last dimension: the vocabulary, or the number of classes.
  int64_t n_outputs() const {
    return kind == ModelKind::kClassifier ? static_cast<int64_t>(labels.size()) : vocab_size;
  }
};

// Which activations a forward pass records.
struct CaptureOptions {
  bool attention = false;  // attention probabilities per layer
  bool residual = false;   // residual stream after each layer
};

// Activations recorded by a forward pass (empty vectors for what was not requested).
struct Activations {
  std::vector<at::Tensor> attention;  // per layer: [batch, n_heads, q_len, k_len], k_len counts
                                      // cached positions too; masked entries are 0
  at::Tensor embeddings;              // [batch, seq, dim] residual stream entering layer 0
  std::vector<at::Tensor> residual;   // per layer: [batch, seq, dim] after that layer
  at::Tensor final_norm;              // [batch, seq, dim] after the final norm (lens input)
};

// Keys and values of the positions seen so far, per layer, for a batch of sequences.
// A value type: copying shares the tensors (cheap); fork() makes an independent deep copy.
// Not thread-safe: one forward at a time per cache.
class KVCache {
 public:
  KVCache() = default;

  int64_t batch() const { return batch_; }
  int64_t length() const { return length_; }      // positions filled
  int64_t capacity() const { return capacity_; }  // positions allocated
  bool empty() const { return length_ == 0; }

  // Keeps the first `n` positions (n <= length()); later positions are forgotten.
  // Throws Error(kInvalidArgument) when n > length() or n < 0.
  void truncate(int64_t n);
  // An independent copy (same contents, own storage).
  KVCache fork() const;
  // A batch-`n` cache whose every row is a copy of this batch-1 cache (perturbations of a
  // shared prefix). Throws Error(kInvalidArgument) unless batch() == 1.
  KVCache expand(int64_t n) const;
  // Keeps only rows `rows` (indices into the batch), in that order.
  KVCache select_rows(const std::vector<int64_t>& rows) const;

  // --- used by model implementations -----------------------------------------------------
  // Allocates room for `n_layers` layers of [batch, n_kv_heads, capacity, head_dim].
  void init(int64_t n_layers, int64_t batch, int64_t n_kv_heads, int64_t capacity, int64_t head_dim,
            at::ScalarType dtype);
  // Makes room for `extra` more positions (grows geometrically).
  void reserve(int64_t extra);
  at::Tensor& keys(int64_t layer) { return k_[layer]; }    // [batch, kv_heads, capacity, hd]
  at::Tensor& values(int64_t layer) { return v_[layer]; }  // [batch, kv_heads, capacity, hd]
  at::Tensor& key_mask() { return key_mask_; }       // [batch, capacity] bool: real (not padding)
  at::Tensor& next_position() { return next_pos_; }  // [batch] int64: next rotary position
  void set_length(int64_t n) { length_ = n; }

 private:
  int64_t batch_ = 0, length_ = 0, capacity_ = 0;
  std::vector<at::Tensor> k_, v_;
  at::Tensor key_mask_, next_pos_;
};

// Input of one forward pass. Give either `tokens` or `embeddings`.
struct ForwardArgs {
  at::Tensor tokens;          // [batch, seq] int64
  at::Tensor embeddings;      // [batch, seq, dim] float: differentiable input
  at::Tensor attention_mask;  // [batch, seq], 1 = real token, 0 = padding; undefined = all real.
                              // Padding may be on either side: rotary positions count only the
                              // real tokens of each row, and no token attends to padding.
  KVCache* cache = nullptr;   // when set: the input continues the cached positions, and its keys
                              // and values are appended to the cache
  Activations* capture = nullptr;
  CaptureOptions capture_options;
  bool last_only = false;       // logits of the last position only: [batch, 1, vocab]
  at::Tensor output_positions;  // [P] int64: logits at these positions only: [batch, P, vocab]
  // Run libtorch's kernels even where the model's fused no-grad path would run (the reference
  // the fused path is tested and benchmarked against).
  bool libtorch_path = false;
  // The input enters the stack at this layer: `embeddings` are then the residual stream after
  // layer start_layer - 1 (Activations::residual[start_layer - 1]), and the layers before it
  // (and learned position embeddings) are skipped. 0: the input embeddings (the default).
  // Models without a layer stack to enter (encoders) throw Error(kUnsupported) for > 0.
  int64_t start_layer = 0;
};

// What a forward pass kept for a hand-written backward to its input embeddings (see
// Model::forward_with_tape). Holds a pointer to its model: use it while the model lives.
class GradientTape {
 public:
  virtual ~GradientTape() = default;
  // The gradient of sum(dlogits * logits) with respect to the pass's input embeddings (with
  // ForwardArgs::start_layer: the residual stream the pass started from, for layer
  // attribution): dlogits shaped as the pass's logits -> [batch, seq, dim] float32. May be
  // called several times (one forward, a backward per target); not concurrently on one tape.
  virtual at::Tensor backward(const at::Tensor& dlogits) const = 0;
};

// The tape budget: the largest full tape (bytes) a pass of Model::forward_with_tape keeps.
// Beyond it the tape is lean: it keeps each layer's block inputs only and the backward
// recomputes the rest (about 5x less memory, 1.1-1.2x the time; the same gradients within
// float rounding). Process-wide, default 1 GiB (kDefaultTapeBudget); 0: always lean. Throws
// Error(kInvalidArgument) for a negative budget. docs/kernels.md, "The lean tape".
constexpr int64_t kDefaultTapeBudget = int64_t{1} << 30;
void set_tape_budget(int64_t bytes);
int64_t tape_budget();
// Sets the tape budget for its lifetime and restores the previous one (bytes < 0: leaves it
// as it is). Process-wide: concurrent jobs with different budgets see the latest.
class TapeBudgetScope {
 public:
  explicit TapeBudgetScope(int64_t bytes);
  ~TapeBudgetScope();
  TapeBudgetScope(const TapeBudgetScope&) = delete;
  TapeBudgetScope& operator=(const TapeBudgetScope&) = delete;

 private:
  int64_t previous_ = -1;  // -1: nothing to restore
};
// Parses a byte size as the CLI takes it: a whole number with an optional unit K, M, G (powers
// of 1024; KiB, MiB, GiB and KB, MB, GB read the same) or B, e.g. "512M", "1G", "0". Throws
// Error(kInvalidArgument) naming `what` (e.g. "--tape-budget") for anything else.
int64_t parse_byte_size(const std::string& text, const std::string& what);

// A loaded model. Thread safety: forward() may run concurrently on different caches.
class Model {
 public:
  virtual ~Model() = default;

  virtual const ModelConfig& config() const = 0;
  virtual const Tokenizer& tokenizer() const = 0;
  // The number of parameters (default: the sizes of named_parameters() summed).
  virtual int64_t n_params() const;
  // Causal models see only earlier positions, so a prefix's KV cache can be reused; a
  // bidirectional encoder (classifier) must be rerun over the whole sequence.
  bool is_causal() const { return config().is_causal(); }

  // Logits [batch, seq, vocab] (float32, whatever the compute dtype); classifiers: [batch, seq,
  // n_labels], the sequence's class logits repeated at every position (so last_only /
  // output_positions work alike). Throws Error(kInvalidArgument) for wrong shapes or token ids out
  // of range, Error(kResourceExhausted) when the context length is exceeded.
  virtual at::Tensor forward(const ForwardArgs& args) const = 0;

  // Token embeddings [batch, seq, dim] (float32) for ids [batch, seq].
  virtual at::Tensor embed(const at::Tensor& tokens) const = 0;
  // The token embedding matrix [vocab, dim], in the compute dtype.
  virtual at::Tensor embedding_matrix() const = 0;
  // Applies the final norm and output matrix to residual states [..., dim] -> [..., vocab]
  // (the logit lens).
  virtual at::Tensor unembed(const at::Tensor& hidden, bool apply_norm = true) const = 0;

  // A cache for `batch` sequences with room for `capacity` positions (0: a small start that
  // grows as needed).
  // Encoders keep no cache: forward() with a cache throws Error(kUnsupported).
  virtual KVCache new_cache(int64_t batch, int64_t capacity = 0) const = 0;

  // All parameters by name (for randomisation tests, conversion and statistics).
  virtual std::vector<std::pair<std::string, at::Tensor>> named_parameters() const = 0;

  // An independent copy: the same configuration, tokenizer (shared, read-only) and computation,
  // with its own parameter tensors (tied ones stay tied), so that changing the copy's parameters
  // (the randomisation sanity check) leaves this model untouched. Models that cannot be copied
  // throw Error(kUnsupported) (the default).
  virtual std::unique_ptr<Model> clone() const;

  // Which kernels forward() runs, for `candor info`: e.g. "fused (candor kernels) without
  // gradients, libtorch with them", or "libtorch" and why the fused path does not apply.
  virtual std::string forward_path() const { return "libtorch"; }
  // The logits of forward(args) into *logits, and what a hand-written backward to args.embeddings
  // needs; null (nothing run) where the model has none for these arguments (a KV cache, capture,
  // libtorch_path, a dtype or architecture its kernels do not cover): use autograd then.
  virtual std::unique_ptr<GradientTape> forward_with_tape(const ForwardArgs& args,
                                                          at::Tensor* logits) const {
    (void)args;
    (void)logits;
    return nullptr;
  }
  // Which kernels gradients to the input embeddings run on, for `candor info`.
  virtual std::string gradient_path() const { return "libtorch autograd"; }

  // --- conveniences over forward() ------------------------------------------------------
  // Logits [seq, vocab] of one sequence.
  at::Tensor logits(const std::vector<TokenId>& ids) const;
  // Logits [batch, seq, vocab] for one token batch.
  at::Tensor forward_tokens(const at::Tensor& tokens, const at::Tensor& mask = {}) const;

 protected:
  // *tokenizer, or Error(kNotFound) for a model built without one.
  static const Tokenizer& require_tokenizer(const std::shared_ptr<Tokenizer>& tokenizer);
};

// Where to find the files of a model.
struct LoadOptions {
  std::string tokenizer_path;  // empty: look beside the checkpoint
  // dtype the weights are kept and the model computes in, whatever their stored dtype: "f32"
  // (default) or "bf16" (half the weight memory; logits within about 2-3% of the largest logit,
  // see docs/model-formats.md). Inputs (embeddings) and outputs (logits, activations) stay
  // float32, and gradients flow through. "f16" is refused with Error(kUnsupported): libtorch's
  // CPU kernels have no float16 matmul.
  std::string compute_dtype = "f32";
  // GGUF: false (default) keeps Q8_0, Q4_0, Q4_K, Q6_K, F16 and BF16 matrices in their blocks
  // (about the file's size in memory; the fused path dequantises them on the fly, and the
  // libtorch path, used for gradients, dequantises them once when first needed); true
  // dequantises every tensor to float32 at load.
  bool dequantize = false;
};

// Loads a model from a checkpoint file or from a folder holding it with its tokenizer.
// Supported: llama2.c checkpoints (`.bin`) with a `tokenizer.bin` or SentencePiece `.model`
// tokenizer; Hugging Face folders (config.json + model.safetensors or a sharded
// model.safetensors.index.json; F32, F16, BF16) of the llama, mistral, qwen2, gpt2, bert,
// roberta and distilbert architectures; a single `.safetensors` file beside its config.json;
// GGUF files (see docs/model-formats.md). Throws Error(kNotFound) for missing files,
// Error(kInvalidArgument) for corrupt or inconsistent ones (the message names the file).
std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& options = {});

// Writes `model` as a Hugging Face folder: config.json, model.safetensors (dtype "f32", "f16"
// or "bf16") and its tokenizer in files the Hugging Face tools read: a llama2.c vocabulary as
// tokenizer.json + tokenizer_config.json (scored_tokenizer_to_hf), a SentencePiece model copied
// as tokenizer.model, Hugging Face tokenizer files copied as they are; load_model reads it back.
// Creates `dir` when absent. Throws Error(kInvalidArgument) for an unknown dtype,
// Error(kUnsupported) for a model without a Hugging Face layout, Error(kNotFound) when the
// folder cannot be written.
void save_hf_folder(const Model& model, const std::string& dir, const std::string& dtype = "f32");

// Writes a llama-architecture model with a scored (llama2.c / SentencePiece) vocabulary as one
// GGUF file (llama.cpp's format), its vocabulary in the metadata; `type` "f32", "q8_0",
// "q4_k", "q6_k" or "bf16" (2-D weights whose rows hold a whole number of the type's blocks, 32
// or 256 values; the others stay F32). Throws
// Error(kUnsupported) for other architectures or tokenizers.
void save_gguf(const Model& model, const std::string& path, const std::string& type = "f32");

// A llama-architecture model with random weights (normal, std 0.02), for tests and benchmarks.
// Needs a tokenizer; `tokenizer` may be null, giving a model whose tokenizer() throws.
std::unique_ptr<Model> make_random_llama(const ModelConfig& config, uint64_t seed,
                                         std::shared_ptr<Tokenizer> tokenizer = nullptr);

}  // namespace candor
