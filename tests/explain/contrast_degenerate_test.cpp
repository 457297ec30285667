// A contrast "A rather than A" is 0 for every input: every method refuses it instead of
// returning zeros (issue 13, defect 8).
#include "candor/explain.h"
#include "test_util.h"

namespace candor {
namespace {

using ::testing::HasSubstr;

// The library refuses the same degenerate request (a service or binding caller gets the error
// too), including a contrast equal to the predicted token.
TEST(ExplainContrast, RefusesAContrastEqualToTheTarget) {
  CANDOR_REQUIRE_SHARED("models/stories260K/stories260K.bin");
  const Model& m = testing::stories260k();
  ExplainRequest req;
  req.input_ids = m.tokenizer().encode("Lily saw her", true, false);
  req.target.function = TargetFunction::kContrast;
  req.target.token = 300;
  req.target.contrast_token = 300;
  for (const char* method : {"occlusion", "integrated_gradients:n_steps=4", "input_x_gradient"}) {
    std::string err = testing::error_of([&] { make_explainer(method)->explain(m, req); });
    EXPECT_THAT(err, HasSubstr("contrast token 300")) << method;
    EXPECT_THAT(err, HasSubstr("0 for every input")) << method;
  }
  // The predicted token as its own contrast.
  ExplainRequest pred = req;
  pred.target.token = -1;
  pred.target.contrast_token =
      static_cast<TokenId>(m.logits(req.input_ids)[-1].argmax().item<int64_t>());
  // saliency reads the prediction from its gradient pass instead of a pass of its own.
  for (const char* method : {"occlusion", "saliency"}) {
    EXPECT_THAT(testing::error_of([&] { make_explainer(method)->explain(m, pred); }),
                HasSubstr("predicted token"))
        << method;
  }
}

}  // namespace
}  // namespace candor
