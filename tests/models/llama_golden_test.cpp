// The stories260K model against the llama2.c reference runner: greedy texts byte for byte and
// the logits of all 64 positions of the golden run (tolerance 1e-4 absolute, from the issue).
#include <ATen/ATen.h>

#include <fstream>
#include <sstream>

#include "candor/generate.h"
#include "candor/model.h"
#include "test_util.h"

namespace candor {
namespace {

using testing::shared_path;

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

constexpr const char* kModelDir = "models/stories260K";

TEST(LlamaGolden, GreedyOnceUponATimeMatchesReferenceByteForByte) {
  CANDOR_REQUIRE_SHARED("models/stories260K/golden/gen_t0_n64_once_upon_a_time.txt");
  auto model = load_model(shared_path(kModelDir));
  std::vector<TokenId> ids = model->tokenizer().encode("Once upon a time", true, false);
  // The reference ran 64 positions: the prompt after BOS is echoed, the rest generated.
  GenerateOptions o;
  o.max_new_tokens = 64 - (static_cast<int64_t>(ids.size()) - 1);
  GenerateResult r = generate(*model, ids, o);
  std::string golden =
      read_file(shared_path("models/stories260K/golden/gen_t0_n64_once_upon_a_time.txt"));
  EXPECT_EQ(r.prompt_text + r.text + "\n", golden);
  EXPECT_EQ(r.stop_reason, "max_new_tokens");
}

TEST(LlamaGolden, GreedyNoPromptStartsFromBosAndMatchesReference) {
  CANDOR_REQUIRE_SHARED("models/stories260K/golden/gen_t0_n200_noprompt.txt");
  auto model = load_model(shared_path(kModelDir));
  GenerateOptions o;
  o.max_new_tokens = 200;
  GenerateResult r = generate(*model, std::string_view(""), o);
  ASSERT_EQ(r.prompt_ids, std::vector<TokenId>{1});
  std::string golden = read_file(shared_path("models/stories260K/golden/gen_t0_n200_noprompt.txt"));
  EXPECT_EQ(r.text + "\n", golden);
}

TEST(LlamaGolden, LogitsOfAll64PositionsWithin1e4) {
  CANDOR_REQUIRE_SHARED("models/stories260K/golden/logits_t0_n64_once_upon_a_time.tsv");
  std::ifstream f(shared_path("models/stories260K/golden/logits_t0_n64_once_upon_a_time.tsv"));
  std::vector<int64_t> tokens;
  std::vector<float> ref;
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream ls(line);
    int64_t pos = 0, tok = 0;
    ls >> pos >> tok;
    ASSERT_EQ(pos, static_cast<int64_t>(tokens.size()));
    tokens.push_back(tok);
    float v = 0;
    int n = 0;
    while (ls >> v) {
      ref.push_back(v);
      ++n;
    }
    ASSERT_EQ(n, 512) << "row " << pos;
  }
  ASSERT_EQ(tokens.size(), 64u);
  auto model = load_model(shared_path(kModelDir));
  at::NoGradGuard g;
  at::Tensor logits = model->forward_tokens(at::tensor(tokens, at::kLong).unsqueeze(0))[0];
  at::Tensor expected = at::tensor(ref, at::kFloat).view({64, 512});
  double max_err = (logits - expected).abs().max().item<double>();
  EXPECT_LE(max_err, 1e-4) << "largest absolute difference from the reference logits";
  // The argmax of each row is the next input token of the greedy run.
  at::Tensor argmax = logits.argmax(-1);
  for (int64_t p = 0; p + 1 < 64; ++p) EXPECT_EQ(argmax[p].item<int64_t>(), tokens[p + 1]) << p;
}

}  // namespace
}  // namespace candor
