// The internals views: attention (last, mean, rollout) as attribution with its per-layer maps,
// and the logit lens against the model's own next-token distribution.
#include <ATen/ATen.h>

#include <cmath>

#include "candor/error.h"
#include "candor/explain.h"
#include "candor/model.h"
#include "test_util.h"

namespace candor {
namespace {

const Model& stories() { return testing::stories260k(); }

std::vector<TokenId> encode(const std::string& text) {
  return stories().tokenizer().encode(text, true, false);
}

Attribution run(const std::string& spec, const ExplainRequest& r) {
  return make_explainer(spec)->explain(stories(), r);
}

// Head-averaged attention maps [L, T, T] of `ids`, captured directly from the model.
at::Tensor attention_maps(const std::vector<TokenId>& ids) {
  Activations acts;
  ForwardArgs a;
  a.tokens = at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).unsqueeze(0);
  a.capture = &acts;
  a.capture_options.attention = true;
  at::NoGradGuard ng;
  stories().forward(a);
  std::vector<at::Tensor> layers;
  for (const at::Tensor& t : acts.attention) layers.push_back(t[0].to(at::kDouble).mean(0));
  return at::stack(layers, 0);
}

void expect_error_naming(const std::string& spec, const std::string& word) {
  try {
    make_explainer(spec);
    ADD_FAILURE() << spec << " did not throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << spec;
    EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << spec << ": " << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// Attention
// ---------------------------------------------------------------------------------------------

TEST(Attention, LastLayerScoresAndBosShareSumToOne) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  ExplainRequest r;
  r.input_ids = encode("The cat sat on the mat and looked at the bird");
  r.target.span = {r.input_ids[3], r.input_ids[4], r.input_ids[5]};
  Attribution a = run("attention:mode=last", r);
  std::vector<TokenId> seq = a.tokens;
  at::Tensor maps = attention_maps(seq);
  const int64_t L = maps.size(0);
  ASSERT_EQ(a.n_steps(), 3);
  for (int64_t s = 0; s < a.n_steps(); ++s) {
    const int64_t pos = a.step_positions[s];
    double sum = 0;
    for (int64_t f = 0; f < a.n_features(); ++f) sum += a.score(s, f);
    const double bos = maps[L - 1][pos][0].item<double>();
    EXPECT_NEAR(sum + bos, 1.0, 1e-5) << "step " << s;
    // Each feature's score is the head-averaged last-layer attention to its token.
    for (int64_t f = 0; f < a.n_features(); ++f) {
      const double want =
          a.features[f].begin <= pos ? maps[L - 1][pos][a.features[f].begin].item<double>() : 0.0;
      EXPECT_NEAR(a.score(s, f), want, 1e-6);
    }
  }
  // Full maps [layer][query][key] for a short input.
  const auto& full = a.extra["attention"];
  ASSERT_EQ(static_cast<int64_t>(full.size()), L);
  for (int64_t l = 0; l < L; ++l) {
    ASSERT_EQ(full[l].size(), seq.size());
    for (size_t q = 0; q < seq.size(); ++q) {
      double row = 0;
      for (size_t k = 0; k < seq.size(); ++k) {
        const double v = full[l][q][k].get<double>();
        EXPECT_NEAR(v, maps[l][q][k].item<double>(), 1e-6);
        if (k > q) EXPECT_EQ(v, 0.0);
        row += v;
      }
      EXPECT_NEAR(row, 1.0, 1e-4);
    }
  }
  // The explained rows.
  const auto& steps = a.extra["attention_steps"];
  EXPECT_EQ(steps["mode"], "last");
  EXPECT_EQ(steps["positions"].get<std::vector<int64_t>>(), a.step_positions);
  ASSERT_EQ(static_cast<int64_t>(steps["layers"].size()), L);
  for (int64_t s = 0; s < a.n_steps(); ++s) {
    EXPECT_EQ(steps["layers"][L - 1][s], full[L - 1][a.step_positions[s]]);
    EXPECT_EQ(steps["combined"][s], full[L - 1][a.step_positions[s]]);
  }
}

TEST(Attention, RolloutRowsAreDistributionsAndMeanAveragesLayers) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  // BOS and one input token, the rest as a span: the steps are every position from 1 on.
  std::vector<TokenId> ids = encode("Once upon a time there was a little girl named Lily");
  const int64_t T = static_cast<int64_t>(ids.size());
  ExplainRequest r;
  r.input_ids = {ids[0], ids[1]};
  r.target.span.assign(ids.begin() + 2, ids.end());
  r.target.span.push_back(ids.back());  // the last span token is not part of the sequence
  at::Tensor maps = attention_maps(ids);

  Attribution roll = run("attention:mode=rollout", r);
  ASSERT_EQ(roll.n_steps(), T - 1);
  const auto& combined = roll.extra["attention_steps"]["combined"];
  for (int64_t s = 0; s < roll.n_steps(); ++s) {
    const int64_t q = roll.step_positions[s];
    ASSERT_EQ(q, s + 1);
    double row = 0;
    for (int64_t k = 0; k < T; ++k) {
      const double v = combined[s][k].get<double>();
      EXPECT_GE(v, 0.0);
      if (k > q) EXPECT_EQ(v, 0.0);
      row += v;
    }
    EXPECT_NEAR(row, 1.0, 1e-4) << "row " << q;
    // Scores are the row's feature entries; BOS takes the rest.
    double sum = combined[s][0].get<double>();
    for (int64_t f = 0; f < roll.n_features(); ++f) sum += roll.score(s, f);
    EXPECT_NEAR(sum, 1.0, 1e-5) << "step " << s;
  }
  // Rollout by hand for the last position: R = A'_L ... A'_1 with A' = (A + I) / 2.
  at::Tensor eye = at::eye(T, at::kDouble), rolled = eye;
  for (int64_t l = 0; l < maps.size(0); ++l) rolled = at::matmul(0.5 * maps[l] + 0.5 * eye, rolled);
  for (int64_t k = 0; k < T; ++k) {
    EXPECT_NEAR(combined[T - 2][k].get<double>(), rolled[T - 1][k].item<double>(), 2e-6);
  }

  Attribution mean = run("attention:mode=mean", r);
  at::Tensor want = maps.mean(0);
  for (int64_t s = 0; s < mean.n_steps(); ++s) {
    for (int64_t f = 0; f < mean.n_features(); ++f) {
      const int64_t q = mean.step_positions[s], k = mean.features[f].begin;
      EXPECT_NEAR(mean.score(s, f), k <= q ? want[q][k].item<double>() : 0.0, 1e-6);
    }
  }
  EXPECT_NE(mean.scores, roll.scores);
  EXPECT_DOUBLE_EQ(roll.forward_passes, 1.0);
}

TEST(Attention, LongInputsKeepOnlyTheExplainedRows) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  ExplainRequest r;
  r.input_ids = {stories().tokenizer().bos_id()};
  for (int i = 0; i < 300; ++i) r.input_ids.push_back(300 + i % 150);
  Attribution a = run("attention", r);
  EXPECT_FALSE(a.extra.contains("attention"));
  const auto& steps = a.extra["attention_steps"];
  EXPECT_EQ(steps["positions"], nlohmann::json::array({300}));
  EXPECT_EQ(steps["layers"].size(), static_cast<size_t>(stories().config().n_layers));
  EXPECT_EQ(steps["layers"][0].size(), 1u);
  EXPECT_EQ(steps["layers"][0][0].size(), 301u);
  EXPECT_LT(attribution_to_json(a).dump().size(), 200000u);
}

// ---------------------------------------------------------------------------------------------
// Logit lens
// ---------------------------------------------------------------------------------------------

TEST(LogitLens, LastLayerIsTheModelsDistribution) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  ExplainRequest r;
  r.input_ids = encode("Lily went to the park and saw a big");
  Attribution a = run("logit_lens", r);
  EXPECT_TRUE(a.scores.empty());
  const auto& lens = a.extra["logit_lens"];
  const int64_t L = stories().config().n_layers;
  ASSERT_EQ(static_cast<int64_t>(lens["layers"].size()), L + 1);
  EXPECT_EQ(lens["layers"][0]["name"], "embeddings");
  EXPECT_EQ(lens["layers"][L]["name"], "layer " + std::to_string(L));
  std::vector<nlohmann::json> layers;  // this step's row of each layer
  for (const auto& layer : lens["layers"]) {
    ASSERT_EQ(layer["steps"].size(), 1u);
    layers.push_back(layer["steps"][0]);
  }

  at::Tensor probs = at::softmax(stories().logits(r.input_ids)[-1].to(at::kDouble), -1);  // [V]
  const auto& last = layers[L];
  const TokenId target = a.step_tokens[0];
  EXPECT_EQ(target, probs.argmax().item<int64_t>());
  EXPECT_EQ(last["target_rank"], 0);
  EXPECT_NEAR(last["target_prob"].get<double>(), probs[target].item<double>(), 1e-5);
  ASSERT_EQ(last["top"].size(), 5u);
  at::Tensor top = std::get<1>(probs.topk(5));
  for (int j = 0; j < 5; ++j) {
    const TokenId id = last["top"][j]["token"];
    EXPECT_EQ(id, top[j].item<int64_t>());
    EXPECT_NEAR(last["top"][j]["prob"].get<double>(), probs[id].item<double>(), 1e-5);
    EXPECT_EQ(last["top"][j]["text"], stories().tokenizer().decode_piece(r.input_ids.back(), id));
  }
  for (int64_t l = 0; l <= L; ++l) {
    EXPECT_EQ(lens["layers"][l]["layer"], l);
    EXPECT_EQ(layers[l]["position"], a.step_positions[0]);
    double prev = 1.0;
    for (const auto& t : layers[l]["top"]) {
      EXPECT_LE(t["prob"].get<double>(), prev + 1e-12);
      prev = t["prob"].get<double>();
    }
    EXPECT_GE(layers[l]["target_rank"].get<int64_t>(), 0);
  }
  nlohmann::json j = attribution_to_json(a);
  EXPECT_FALSE(j.contains("total"));
  EXPECT_TRUE(j["steps"][0]["scores"].empty());
  EXPECT_TRUE(a.total() == std::vector<double>(a.features.size(), 0.0));
}

TEST(LogitLens, SpanStepsTopKAndContrast) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  ExplainRequest r;
  r.input_ids = encode("Once upon a time");
  std::vector<TokenId> more = encode("Once upon a time there was a");
  ASSERT_TRUE(std::equal(r.input_ids.begin(), r.input_ids.end(), more.begin()));
  r.target.span.assign(more.begin() + r.input_ids.size(), more.end());
  ASSERT_GE(r.target.span.size(), 2u);
  Attribution a = run("logit_lens:top_k=3", r);
  const auto& layers = a.extra["logit_lens"]["layers"];
  const int64_t L = stories().config().n_layers;
  ASSERT_EQ(static_cast<int64_t>(layers.size()), L + 1);
  at::Tensor logits = stories().logits(more).to(at::kDouble);  // [T, V]
  for (const auto& layer : layers) {
    ASSERT_EQ(layer["steps"].size(), r.target.span.size());
    for (size_t s = 0; s < r.target.span.size(); ++s) {
      EXPECT_EQ(layer["steps"][s]["position"], a.step_positions[s]);
      EXPECT_EQ(layer["steps"][s]["token"], r.target.span[s]);
      EXPECT_EQ(layer["steps"][s]["top"].size(), 3u);
    }
  }
  for (size_t s = 0; s < r.target.span.size(); ++s) {
    at::Tensor p = at::softmax(logits[a.step_positions[s]], -1);
    const auto& last = layers[L]["steps"][s];
    EXPECT_NEAR(last["target_prob"].get<double>(), p[r.target.span[s]].item<double>(), 1e-5);
    EXPECT_EQ(last["target_rank"], (p > p[r.target.span[s]]).sum().item<int64_t>());
  }
  // More than the vocabulary: every token.
  Attribution all = run("logit_lens:top_k=100000", r);
  EXPECT_EQ(all.extra["logit_lens"]["top_k"], stories().config().vocab_size);
  EXPECT_EQ(all.extra["logit_lens"]["layers"][0]["steps"][0]["top"].size(),
            static_cast<size_t>(stories().config().vocab_size));

  ExplainRequest c;
  c.input_ids = r.input_ids;
  c.target.function = TargetFunction::kContrast;
  c.target.contrast_token = r.target.span[0];
  Attribution ca = run("logit_lens", c);
  const auto& row = ca.extra["logit_lens"]["layers"][L]["steps"][0];
  EXPECT_TRUE(row.contains("contrast_rank"));
  EXPECT_TRUE(row.contains("target_rank"));
}

TEST(Internals, BadOptionsNameTheOption) {
  expect_error_naming("attention:mode=first", "mode");
  expect_error_naming("attention:heads=2", "heads");
  expect_error_naming("logit_lens:top_k=0", "top_k");
  expect_error_naming("logit_lens:top_k=five", "top_k");
}

}  // namespace
}  // namespace candor
