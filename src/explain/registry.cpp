// The single explicit list of attribution methods: names, descriptions, options with defaults,
// and factories. The CLI, reports and tests all go through it.
#include <functional>

#include "candor/error.h"
#include "explain/common.h"

namespace candor {
namespace {

struct Entry {
  const char* name;
  const char* description;
  std::map<std::string, std::string> defaults;
  std::function<std::unique_ptr<Explainer>(const Options&)> make;
};

const std::vector<Entry>& registry() {
  static const std::vector<Entry> entries = {
      // --- gradient methods ------------------------------------------------------------------
      {"saliency", "norm of the target's gradient w.r.t. each token embedding",
       {{"norm", "l2"}}, explain::make_saliency},
      {"input_x_gradient", "embedding times gradient, summed over the embedding",
       {}, explain::make_input_x_gradient},
      // --- perturbation methods --------------------------------------------------------------
      {"occlusion", "drop in the target when a sliding window of features is removed",
       {{"window", "1"}, {"stride", "1"}, {"internal_batch_size", "32"}}, explain::make_occlusion},
      {"leave_one_out", "occlusion of one feature at a time",
       {{"internal_batch_size", "32"}}, explain::make_occlusion},
  };
  return entries;
}

std::string names() {
  std::string s;
  for (const auto& e : registry()) s += (s.empty() ? "" : ", ") + std::string(e.name);
  return s;
}

}  // namespace

std::unique_ptr<Explainer> make_explainer(const std::string& spec) {
  auto [name, given] = parse_spec(spec);
  for (const auto& e : registry()) {
    if (name == e.name) return e.make(Options(e.name, e.defaults, given));
  }
  throw Error(ErrorCode::kInvalidArgument, "unknown attribution method '" + name + "'",
              "available methods: " + names());
}

std::vector<ExplainerInfo> list_explainers() {
  std::vector<ExplainerInfo> out;
  for (const auto& e : registry()) out.push_back({e.name, e.description, e.defaults});
  return out;
}

}  // namespace candor
