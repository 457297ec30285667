// A model wrapper without a hand-written backward, for tests that compare the fused backward
// with libtorch autograd through the explainers and the evaluator.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "candor/model.h"

namespace candor::testing {

// The same model without a hand-written backward: forward_with_tape is the base class's (none),
// so every gradient goes through libtorch autograd. Holds a reference: keep `base` alive.
class AutogradOnly : public Model {
 public:
  explicit AutogradOnly(const Model& base) : base_(base) {}
  const ModelConfig& config() const override { return base_.config(); }
  const Tokenizer& tokenizer() const override { return base_.tokenizer(); }
  at::Tensor forward(const ForwardArgs& args) const override { return base_.forward(args); }
  at::Tensor embed(const at::Tensor& tokens) const override { return base_.embed(tokens); }
  at::Tensor embedding_matrix() const override { return base_.embedding_matrix(); }
  at::Tensor unembed(const at::Tensor& h, bool n) const override { return base_.unembed(h, n); }
  KVCache new_cache(int64_t b, int64_t c) const override { return base_.new_cache(b, c); }
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const override {
    return base_.named_parameters();
  }

 private:
  const Model& base_;
};

}  // namespace candor::testing
