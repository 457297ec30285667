// The lean tape against the full one on the GPT-2-small-sized random Llama (llama768): one
// forward keeping a tape and one backward to the embeddings for a batch of B points of T
// tokens (an integrated-gradients chunk), with the tape budget forced to keep everything and
// then to keep the block inputs only. Prints the tape's bytes, the best time of each over the
// rounds, their ratio, and the largest gradient difference relative to the largest element.
// Run: bench_tape [--batch=8] [--tokens=64] [--rounds=3] [--start-layer=0]
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include "bench_common.h"
#include "candor/model.h"
#include "models/fused/fused_backward.h"

using namespace candor;

int main(int argc, char** argv) {
  int64_t B = 8, T = 64, rounds = 3, start = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&](const char* key) {
      const std::string k = std::string(key) + "=";
      return a.rfind(k, 0) == 0 ? a.substr(k.size()) : std::string();
    };
    if (!val("--batch").empty()) B = std::stoll(val("--batch"));
    else if (!val("--tokens").empty()) T = std::stoll(val("--tokens"));
    else if (!val("--rounds").empty()) rounds = std::stoll(val("--rounds"));
    else if (!val("--start-layer").empty()) start = std::stoll(val("--start-layer"));
    else {
      std::fprintf(stderr, "usage: bench_tape [--batch=8] [--tokens=64] [--rounds=3] "
                           "[--start-layer=0]\n");
      return 2;
    }
  }
  auto model = bench::make_large();
  const ModelConfig& c = model->config();
  at::manual_seed(1);
  ForwardArgs a;
  a.embeddings = at::randn({B, T, c.dim}, at::kFloat) * 0.02;
  a.start_layer = start;
  a.output_positions = at::tensor(std::vector<int64_t>{T - 1}, at::kLong);
  const at::Tensor dl = at::randn({B, 1, c.vocab_size}, at::kFloat);
  std::printf("llama768 (dim %lld, hidden %lld, %lld layers), chunk %lld x %lld tokens, start "
              "layer %lld\n",
              (long long)c.dim, (long long)c.hidden_dim, (long long)c.n_layers, (long long)B,
              (long long)T, (long long)start);
  at::Tensor grads[2];
  double best[2] = {1e30, 1e30};
  const int64_t bytes[2] = {fused::Tape::full_bytes(c, B, T, start),
                            fused::Tape::lean_bytes(c, B, T, start)};
  for (int64_t r = 0; r < rounds; ++r) {
    for (int lean = 0; lean < 2; ++lean) {
      fused::set_tape_budget(lean ? 0 : int64_t{1} << 50);
      const auto t0 = std::chrono::steady_clock::now();
      at::Tensor logits;
      auto tape = model->forward_with_tape(a, &logits);
      if (!tape) {
        std::fprintf(stderr, "no fused tape for this model\n");
        return 1;
      }
      grads[lean] = tape->backward(dl);
      const double s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best[lean] = std::min(best[lean], s);
    }
  }
  const double diff = (grads[1] - grads[0]).abs().max().item<double>() /
                      std::max(1e-30, grads[0].abs().max().item<double>());
  std::printf("full tape: %8.1f MB  forward + backward %.3f s (best of %lld)\n", bytes[0] / 1e6,
              best[0], (long long)rounds);
  std::printf("lean tape: %8.1f MB  forward + backward %.3f s\n", bytes[1] / 1e6, best[1]);
  std::printf("tape %.2fx smaller, time %.2fx the full tape's, gradients differ by %.2e of the "
              "largest\n",
              static_cast<double>(bytes[0]) / static_cast<double>(bytes[1]), best[1] / best[0],
              diff);
  std::printf("an integrated-gradients chunk of 50 x 128 tokens: full %.2f GB, lean %.2f GB\n",
              fused::Tape::full_bytes(c, 50, 128) / 1e9, fused::Tape::lean_bytes(c, 50, 128) / 1e9);
  return 0;
}
