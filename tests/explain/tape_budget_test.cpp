// The tape budget (issue 17): the size limit above which the fused backward's tape turns lean,
// set through the library (set_tape_budget, TapeBudgetScope, the jobs' tape_budget) and parsed
// from the CLI's --tape-budget SIZE. A tiny budget (every tape lean) gives the same
// attributions as the default within 1e-5.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "candor/error.h"
#include "candor/explain.h"
#include "candor/jobs_explain.h"
#include "candor/model.h"
#include "models/fused/fused_backward.h"
#include "test_util.h"

namespace candor {
namespace {

using testing::builtin_lm;
using testing::max_rel;

TEST(TapeBudget, ATinyBudgetGivesTheSameAttributions) {
  const Model& m = builtin_lm();
  ASSERT_EQ(m.gradient_path().rfind("fused", 0), 0u) << m.gradient_path();
  ExplainRequest r;
  r.input_ids = m.tokenizer().encode("Once upon a time there was a little dog", true, false);
  const int64_t before = tape_budget();
  EXPECT_EQ(before, kDefaultTapeBudget);
  // At the default budget these passes keep the full tape; at 1 KiB every one is lean.
  const ModelConfig& c = m.config();
  const int64_t T = static_cast<int64_t>(r.input_ids.size());
  EXPECT_LE(fused::Tape::full_bytes(c, 32, T), before);
  EXPECT_GT(fused::Tape::full_bytes(c, 1, T), 1024);
  for (const char* spec : {"saliency", "input_x_gradient", "integrated_gradients:n_steps=32",
                           "smoothgrad:n_samples=4", "layer_integrated_gradients:layer=1,n_steps=16",
                           "layer_gradient_x_activation:layer=2,per_neuron=true"}) {
    SCOPED_TRACE(spec);
    Attribution full = make_explainer(spec)->explain(m, r);
    Attribution lean;
    {
      TapeBudgetScope tiny(1024);
      EXPECT_EQ(tape_budget(), 1024);
      EXPECT_EQ(fused::tape_budget(), 1024);
      lean = make_explainer(spec)->explain(m, r);
    }
    EXPECT_EQ(tape_budget(), before);
    EXPECT_LE(max_rel(lean.scores, full.scores), 1e-5);
    EXPECT_LE(max_rel(lean.target_values, full.target_values), 1e-5);
    if (full.extra.contains("neurons")) {
      std::vector<double> a, b;
      for (const auto& row : lean.extra["neurons"]["scores"][0])
        for (const auto& v : row) a.push_back(v.get<double>());
      for (const auto& row : full.extra["neurons"]["scores"][0])
        for (const auto& v : row) b.push_back(v.get<double>());
      EXPECT_LE(max_rel(a, b), 1e-5);
    }
  }
  // A negative scope leaves the budget as it is.
  {
    TapeBudgetScope none(-1);
    EXPECT_EQ(tape_budget(), before);
  }
  EXPECT_THROW(set_tape_budget(-5), Error);
}

TEST(TapeBudget, SizesParseAndBadOnesAreRefusedNamingTheOption) {
  EXPECT_EQ(parse_byte_size("512M", "--tape-budget"), int64_t{512} << 20);
  EXPECT_EQ(parse_byte_size("2G", "--tape-budget"), int64_t{2} << 30);
  EXPECT_EQ(parse_byte_size("2gib", "--tape-budget"), int64_t{2} << 30);
  EXPECT_EQ(parse_byte_size("64k", "--tape-budget"), int64_t{64} << 10);
  EXPECT_EQ(parse_byte_size("1000", "--tape-budget"), 1000);
  EXPECT_EQ(parse_byte_size("0", "--tape-budget"), 0);
  for (const char* bad : {"", "12Q", "-1", "1.5G", "M", "99999999999999999999", "9999999999T"}) {
    const std::string e = testing::error_of([&] { parse_byte_size(bad, "--tape-budget"); });
    EXPECT_NE(e.find("--tape-budget"), std::string::npos) << bad << ": " << e;
  }
  // The job refuses a budget below -1 before it loads anything.
  jobs::ExplainOptions o;
  o.model.model = &builtin_lm();
  o.prompt = "A dog";
  o.tape_budget = -2;
  const std::string e = testing::error_of([&] { jobs::run_explain(o, {}); });
  EXPECT_NE(e.find("--tape-budget must be >= 0"), std::string::npos) << e;
  // A budget given to the job holds while it runs and is restored afterwards.
  o.tape_budget = 0;
  o.methods = {"integrated_gradients:n_steps=8"};
  jobs::ExplainResult res = jobs::run_explain(o, {});
  EXPECT_EQ(tape_budget(), kDefaultTapeBudget);
  ASSERT_EQ(res.attributions.size(), 1u);
}

}  // namespace
}  // namespace candor
