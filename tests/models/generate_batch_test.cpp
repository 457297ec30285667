// generate_batch: the same sampling rule and random stream as generate() per prompt and seed,
// independent of the batch it runs in; stop reasons; bad input. On the built-in LM (in the
// repository, no ../shared needed).
#include <string>
#include <vector>

#include "candor/error.h"
#include "candor/generate.h"
#include "candor/model.h"
#include "test_util.h"

namespace candor {
namespace {

const std::string kBuiltin = std::string(CANDOR_SOURCE_DIR) + "/models/builtin/lm";

GenerateOptions sampling() {
  GenerateOptions o;
  o.max_new_tokens = 24;
  o.temperature = 0.9f;
  o.top_k = 40;
  o.top_p = 0.95f;
  return o;
}

TEST(GenerateBatch, OneRowPerBatchEqualsGenerateForEachSeed) {
  auto m = load_model(kBuiltin);
  const Tokenizer& tok = m->tokenizer();
  std::vector<std::vector<TokenId>> prompts = {tok.encode("Once upon a time", true, false),
                                               tok.encode("The dog", true, false),
                                               tok.encode("Once upon a time", true, false)};
  std::vector<uint64_t> seeds = {1, 2, 3};
  const GenerateOptions o = sampling();
  std::vector<GenerateResult> batch = generate_batch(*m, prompts, seeds, o, /*batch=*/1);
  ASSERT_EQ(batch.size(), 3u);
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerateOptions one = o;
    one.seed = seeds[i];
    GenerateResult g = generate(*m, prompts[i], one);
    EXPECT_EQ(batch[i].generated_ids, g.generated_ids) << i;
    EXPECT_EQ(batch[i].text, g.text) << i;
    EXPECT_EQ(batch[i].stop_reason, g.stop_reason) << i;
    EXPECT_EQ(batch[i].prompt_text, g.prompt_text) << i;
    ASSERT_EQ(batch[i].logprobs.size(), g.logprobs.size());
    for (size_t k = 0; k < g.logprobs.size(); ++k)
      EXPECT_FLOAT_EQ(batch[i].logprobs[k], g.logprobs[k]);
  }
  EXPECT_NE(batch[0].text, batch[2].text);  // same prompt, other seed
}

TEST(GenerateBatch, TextsDoNotDependOnTheBatch) {
  auto m = load_model(kBuiltin);
  const Tokenizer& tok = m->tokenizer();
  std::vector<std::vector<TokenId>> prompts(6, tok.encode("Once upon a time", true, false));
  std::vector<uint64_t> seeds = {11, 12, 13, 14, 15, 16};
  std::vector<GenerateResult> a = generate_batch(*m, prompts, seeds, sampling(), 6);
  std::vector<GenerateResult> b = generate_batch(*m, prompts, seeds, sampling(), 4);
  std::vector<GenerateResult> c = generate_batch(*m, {prompts.begin() + 2, prompts.end()},
                                                 {seeds.begin() + 2, seeds.end()}, sampling(), 2);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(a[i].text, b[i].text) << i;
    if (i >= 2) EXPECT_EQ(a[i].text, c[i - 2].text) << i;
    EXPECT_TRUE(a[i].stop_reason == "max_new_tokens" || a[i].stop_reason == "stop_token");
  }
  int64_t calls = 0;
  generate_batch(*m, prompts, seeds, sampling(), 4, [&](int64_t done, int64_t total) {
    ++calls;
    EXPECT_EQ(total, 6);
    EXPECT_LE(done, total);
    return true;
  });
  EXPECT_EQ(calls, 2);
}

TEST(GenerateBatch, BadInput) {
  auto m = load_model(kBuiltin);
  std::vector<std::vector<TokenId>> prompts = {m->tokenizer().encode("Hi", true, false)};
  EXPECT_THROW(generate_batch(*m, prompts, {1, 2}, sampling()), Error);
  EXPECT_THROW(generate_batch(*m, {{}}, {}, sampling()), Error);
  EXPECT_THROW(generate_batch(*m, prompts, {}, sampling(), 0), Error);
  try {
    generate_batch(*m, prompts, {}, sampling(), 1, [](int64_t, int64_t) { return false; });
    ADD_FAILURE() << "not cancelled";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCancelled);
  }
  EXPECT_TRUE(generate_batch(*m, {}, {}, sampling()).empty());
}

// Token statistics equal those of a full forward over the prompt and the answer: entropy and
// margin of each next-token distribution, the chosen token's log-probability, the best tokens.
TEST(GenerateTokenStats, EqualAFullForwardOverTheAnswer) {
  auto m = load_model(kBuiltin);
  const Tokenizer& tok = m->tokenizer();
  GenerateOptions o = sampling();
  o.seed = 5;
  o.top_logprobs = 3;
  std::vector<TokenId> prompt = tok.encode("Once upon a time", true, false);
  GenerateResult g = generate(*m, prompt, o);
  ASSERT_FALSE(g.generated_ids.empty());
  ASSERT_EQ(g.token_stats.size(), g.generated_ids.size());
  std::vector<TokenId> all = prompt;
  all.insert(all.end(), g.generated_ids.begin(), g.generated_ids.end());
  at::Tensor ids = at::tensor(std::vector<int64_t>(all.begin(), all.end())).unsqueeze(0);
  at::Tensor logp = at::log_softmax(m->forward_tokens(ids)[0].to(at::kDouble), -1);  // [seq, V]
  for (size_t k = 0; k < g.generated_ids.size(); ++k) {
    at::Tensor row = logp[static_cast<int64_t>(prompt.size() + k) - 1];
    const TokenStats& st = g.token_stats[k];
    EXPECT_NEAR(st.logprob, row[g.generated_ids[k]].item<double>(), 1e-4) << k;
    EXPECT_FLOAT_EQ(st.logprob, g.logprobs[k]);
    EXPECT_NEAR(st.entropy, -(row.exp() * row).sum().item<double>(), 1e-4) << k;
    auto [top, idx] = at::topk(row, 3);
    EXPECT_NEAR(st.margin, (top[0].exp() - top[1].exp()).item<double>(), 1e-5) << k;
    ASSERT_EQ(st.top.size(), 3u);
    for (int64_t j = 0; j < 3; ++j) {
      EXPECT_EQ(st.top[j].first, idx[j].item<int64_t>()) << k << " " << j;
      EXPECT_NEAR(st.top[j].second, top[j].item<double>(), 1e-4) << k << " " << j;
    }
  }
  o.top_logprobs = 0;
  EXPECT_TRUE(generate(*m, prompt, o).token_stats.empty());
  o.top_logprobs = -1;
  EXPECT_THROW(generate(*m, prompt, o), Error);
}

}  // namespace
}  // namespace candor
