// Causal-LM students: a small Llama-architecture model (candor's own runtime model, so generation
// and every explainer work on it unchanged) trained with train::train_loop, either from a teacher
// LM (token-level knowledge distillation on a corpus: KL between temperature-softened teacher and
// student next-token distributions, T^2-scaled, mixed with next-token cross-entropy; or
// sequence-level distillation on seeded teacher generations, sampled by generate_batch) or from
// text alone. The byte-level BPE trainer of tokenizer_trainers.h gives a student its own
// tokenizer. Tensors are ATen (<ATen/core/Tensor.h>); no torch/torch.h. Part of candor_train.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "candor/cancel.h"
#include "candor/model.h"
#include "candor/options.h"
#include "candor/tokenizer.h"

namespace candor::distill {

// --- teacher generations -----------------------------------------------------------------------

struct SampleOptions {
  int64_t n = 1000;              // texts to generate
  int64_t first_index = 0;       // text i uses a random stream derived from (seed, first_index+i)
  int64_t max_new_tokens = 256;  // per text
  float temperature = 1.0f;      // > 0 (sampling)
  int64_t top_k = 0;             // 0: none
  float top_p = 1.0f;            // 1: none
  uint64_t seed = 0;
  std::string prompt;  // each text continues BOS + prompt ("" = BOS alone)
  int64_t batch = 64;  // sequences decoded together
  std::function<bool(int64_t done, int64_t total)> progress;  // false cancels
};

// Seeded samples of a causal LM drawn by generate_batch (generate's sampling rule; text i
// depends only on the seed and its index, not on the batch), without the prompt. `complete`
// (optional) receives whether each text ended with a stop token (BOS or EOS) rather than at
// max_new_tokens. Throws Error(kInvalidArgument) when the model is not a causal LM or an option is
// out of range.
std::vector<std::string> sample_teacher_texts(const Model& teacher, const SampleOptions& o,
                                              std::vector<bool>* complete = nullptr);

// --- the student -------------------------------------------------------------------------------

struct LmStudentOptions {
  // Architecture (Llama: RMSNorm, rotary, SwiGLU, tied embeddings).
  int64_t dim = 128, n_layers = 4, n_heads = 4, n_kv_heads = 0;  // kv 0: = n_heads
  int64_t hidden_dim = 0;                                        // 0: 8/3 dim rounded up to 8
  int64_t context = 256;                                         // training and model context
  // Tokenizer: "bpe" (a byte-level BPE learned on the training texts) or "teacher" (the
  // teacher's; needed for token-level KD).
  std::string tokenizer = "bpe";
  int32_t vocab_size = 1024;
  // Loss: "token" (KD on the teacher's distributions, needs tokenizer=teacher), "sequence"
  // (next-token cross-entropy on teacher generations or the corpus), "auto" (token when the
  // tokenizers match and there is a teacher, else sequence).
  std::string mode = "auto";
  double alpha = 0.5;           // token mode: weight of the KD term (1 - alpha: cross-entropy)
  double kd_temperature = 2.0;  // token mode: softening temperature T (the KL is scaled by T^2)
  // Teacher generations (when no corpus is given).
  int64_t samples = 2000, sample_tokens = 256;
  float temperature = 1.0f, top_p = 1.0f;
  int64_t top_k = 0;
  int64_t held_out = 100;  // texts kept out of training for the figures
  // Training (train::TrainOptions).
  int epochs = 1;
  int64_t batch = 16;
  double lr = 3e-3, weight_decay = 0.1, warmup = 0.05, clip = 1.0;
  // Output.
  std::string dtype = "f32";      // of model.safetensors: f32 | f16 | bf16
  int64_t eval_boundaries = 400;  // word boundaries for the next-word agreement
};

// The declared options of "lm[:key=value,...]" (dim, layers, heads, kv_heads, hidden, context,
// tokenizer, vocab, mode, alpha, kd_temperature, samples, sample_tokens, temperature, top_k,
// top_p, held_out, epochs, batch, lr, weight_decay, warmup, clip, dtype, eval_boundaries), with
// LmStudentOptions' defaults.
OptionSpecs lm_student_options();
// Parses "lm" or "lm:dim=96,layers=4,vocab=768,samples=4000,..." against lm_student_options().
// Throws Error(kInvalidArgument) naming an unknown key or a bad value.
LmStudentOptions parse_lm_student(const std::string& spec);

// Held-out figures of a student (and its teacher, when there is one) on texts none of them saw
// in training.
struct LmFidelity {
  int64_t texts = 0, words = 0;
  int64_t student_tokens = 0;
  double student_loss = 0;             // mean next-token cross-entropy per student token (nats)
  double student_perplexity = 0;       // exp(student_loss)
  double student_word_perplexity = 0;  // exp(total NLL / words): tokenizer-independent
  double teacher_word_perplexity = -1;
  // Same tokenizer only: top-1 next-token agreement and mean KL(teacher || student) per token.
  double token_agreement = -1, token_kl = -1;
  // Greedy next word of each model after a prefix ending at a word boundary, compared as text.
  int64_t boundaries = 0;
  double word_agreement = -1;
  nlohmann::json to_json() const;
};

// Splits text into the words the figures count: runs of ASCII letters, digits and inner
// apostrophes (bytes >= 0x80 count as letters), lower-cased.
std::vector<std::string> lm_words(const std::string& text);

// Measures `student` on `texts` (and compares it with `teacher` when not null). `boundaries`:
// at most this many word boundaries (seeded choice) for the next-word agreement.
LmFidelity measure_lm_fidelity(const Model* teacher, const Model& student,
                               const std::vector<std::string>& texts, int64_t boundaries,
                               uint64_t seed);

struct LmProgress {
  std::string phase;  // "sample" (teacher generations), "tokenizer", "train", "measure"
  int64_t done = 0, total = 0;
  double loss = 0, learning_rate = 0;
  double fidelity = -1;  // train: top-1 agreement on the batch (with the teacher's argmax in
                         // token mode, with the next token of the text in sequence mode)
  double tokens_per_second = 0;
};

struct LmDistillOptions {
  LmStudentOptions student;
  std::vector<std::string> corpus;  // training texts; empty: sample them from the teacher
  uint64_t seed = 0;
  std::string out_dir;            // model folder written here (created)
  bool resume = false;            // continue from out_dir/train.ckpt when it exists
  int64_t stop_after_steps = -1;  // stop (after checkpointing) at this step
  std::function<bool(const LmProgress&)> progress;  // false cancels (Error kCancelled)
  // Polled between training steps: when cancelled, train.ckpt is written and Error(kCancelled)
  // thrown (resume continues from it). Not owned; may be null.
  const CancelToken* cancel = nullptr;
};

struct LmDistillResult {
  std::unique_ptr<Model> student;
  std::string mode;  // "token" or "sequence"
  int64_t train_texts = 0, steps = 0, train_tokens = 0, params = 0;
  double train_seconds = 0, tokens_per_second = 0, final_loss = 0;
  bool finished = true;  // false when stopped by stop_after_steps
  LmFidelity held_out;
  nlohmann::json to_json() const;
};

// The whole run: teacher generations (or the corpus) -> tokenizer -> student -> training ->
// held-out figures. Writes into out_dir: config.json, model.safetensors, the tokenizer files,
// words.txt (the training texts' words seen at least twice), report.json, train.ckpt, and
// teacher_text.jsonl (the generated texts, {"text": ...} per line) when it sampled them.
// `teacher` may be null when a corpus is given (a language model trained from text alone).
// Throws Error(kInvalidArgument) when the teacher is not a causal LM, the corpus is empty, or
// token mode is asked for without a shared tokenizer.
LmDistillResult distill_lm(const Model* teacher, const LmDistillOptions& o);

}  // namespace candor::distill
