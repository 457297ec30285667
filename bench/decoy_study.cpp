// Decoy study on stories260K: how often integrated gradients and occlusion beat each decoy on
// comprehensiveness-AOPC under one fixed configuration (prompt set, target, methods, removal,
// AOPC fractions), with wins, ties and losses counted per (method, decoy) and "caught" = both
// methods beat it. The figures of docs/evaluation.md ("Decoys on stories260K: variants") come
// from this program. Not a speed benchmark: a measurement tool (run it with --threads=1).
// Decoys: make_decoys' six (other_target by the --occ explainer), and stricter ones outside the
// issue's list: next token: other_plausible (occlusion of a token sampled from the model, not the
// top one); span: last_input (recency over the prompt only), other_answer (occlusion of a sampled
// answer of the same length) and other_answer_first (one whose first token differs).
//
// Run: decoy_study [--prompts=word24|sentence|long|sentence_long] [--target=next|span]
//   [--k=0 (span length; 0: 3..8 by prompt)] [--ig=integrated_gradients:n_steps=16]
//   [--occ=occlusion] [--n=50] [--seed-base=0] [--fractions=0.01,0.05,0.1,0.2,0.5]
//   [--removal=baseline|delete] [--baseline=unk] [--granularity=token|word|sentence]
//   [--threads=1] [--details (per prompt values and every loss)] [--scan=I (prompt I: the drop
//   of removing each feature alone and with occlusion's top feature)]
// Environment: CANDOR_SHARED (the shared folder, default ../shared).
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "candor/evaluate.h"
#include "candor/explain.h"
#include "candor/generate.h"
#include "candor/model.h"
#include "candor/runtime.h"

namespace candor {
namespace {

struct Config {
  std::string prompts = "word24";
  std::string target = "next";
  int64_t k = 0;
  std::string ig = "integrated_gradients:n_steps=16";
  std::string occ = "occlusion";
  int64_t n = 50;
  uint64_t seed_base = 0;
  std::vector<double> fractions = {0.01, 0.05, 0.10, 0.20, 0.50};
  std::string removal = "baseline";
  std::string baseline = "unk";
  std::string granularity = "token";
  int threads = 1;
  bool details = false;
  int64_t scan = -1;  // prompt whose pair removals to print
};

bool ends_sentence(std::string piece) {
  while (!piece.empty() && (piece.back() == '"' || piece.back() == '\'')) piece.pop_back();
  return !piece.empty() && (piece.back() == '.' || piece.back() == '!' || piece.back() == '?');
}

// Distinct prompts from the model's own stories ("Once upon a time" at temperature 1, seeds
// seed_base, seed_base + 1, ...):
//   word24:        cut before a word start at most 24 tokens in (the existing test's set)
//   sentence:      cut after a sentence end (the next token starts a new word after . ! or ?),
//                  at most L tokens in, L = 12..60 by seed, at least 8 tokens
//   long:          cut before a word start at most L tokens in, L = 30..60 by seed, >= 30 tokens
//   sentence_long: a sentence end between 30 and 60 tokens in (the last one)
std::vector<std::vector<TokenId>> make_prompts(const Model& m, const Config& c) {
  const Tokenizer& tok = m.tokenizer();
  std::vector<std::vector<TokenId>> out;
  for (uint64_t seed = c.seed_base; static_cast<int64_t>(out.size()) < c.n &&
                                    seed < c.seed_base + 20 * static_cast<uint64_t>(c.n);
       ++seed) {
    GenerateOptions g;
    g.max_new_tokens = c.prompts == "word24" ? 40 : 90;
    g.temperature = 1.0f;
    g.seed = seed;
    GenerateResult gr = generate(m, tok.encode("Once upon a time", true, false), g);
    std::vector<TokenId> ids = gr.prompt_ids;
    ids.insert(ids.end(), gr.generated_ids.begin(), gr.generated_ids.end());
    auto word_start = [&](size_t k) { return tok.piece(ids[k]).rfind(" ", 0) == 0; };
    auto sentence_cut = [&](size_t k) {  // prompt ids[0..k) ends a sentence, ids[k] starts a word
      return word_start(k) && ends_sentence(tok.piece(ids[k - 1]));
    };
    size_t cut = 0;
    if (c.prompts == "word24") {
      size_t k = std::min<size_t>(ids.size() - 1, 24);
      while (k > 1 && !word_start(k)) --k;
      cut = k >= 8 ? k : 0;
    } else if (c.prompts == "sentence") {
      size_t lim = 12 + (seed * 7) % 49;
      for (size_t k = 8; k <= lim && k + 1 < ids.size(); ++k)
        if (sentence_cut(k)) cut = k;
    } else if (c.prompts == "long") {
      size_t lim = 30 + (seed * 7) % 31;
      for (size_t k = 30; k <= lim && k + 1 < ids.size(); ++k)
        if (word_start(k)) cut = k;
    } else if (c.prompts == "sentence_long") {
      for (size_t k = 30; k <= 60 && k + 1 < ids.size(); ++k)
        if (sentence_cut(k)) cut = k;
    } else {
      std::fprintf(stderr, "unknown --prompts=%s\n", c.prompts.c_str());
      std::exit(2);
    }
    if (cut == 0) continue;
    ids.resize(cut);
    if (std::find(out.begin(), out.end(), ids) == out.end()) out.push_back(ids);
  }
  return out;
}

std::vector<double> parse_list(const std::string& s) {
  std::vector<double> v;
  std::stringstream ss(s);
  std::string x;
  while (std::getline(ss, x, ',')) v.push_back(std::stod(x));
  return v;
}

std::string rank_text(const std::vector<double>& phi, int64_t n) {
  std::vector<int64_t> o = rank_order(phi);
  std::string s;
  for (int64_t i = 0; i < n && i < static_cast<int64_t>(o.size()); ++i)
    s += (i ? "," : "") + std::to_string(o[i]);
  return s;
}

int run(int argc, char** argv) {
  Config c;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&](const char* key) -> const char* {
      size_t n = std::strlen(key);
      return a.compare(0, n, key) == 0 ? a.c_str() + n : nullptr;
    };
    if (const char* v = val("--prompts="))
      c.prompts = v;
    else if (const char* v = val("--target="))
      c.target = v;
    else if (const char* v = val("--k="))
      c.k = std::atoll(v);
    else if (const char* v = val("--ig="))
      c.ig = v;
    else if (const char* v = val("--occ="))
      c.occ = v;
    else if (const char* v = val("--n="))
      c.n = std::atoll(v);
    else if (const char* v = val("--seed-base="))
      c.seed_base = std::strtoull(v, nullptr, 10);
    else if (const char* v = val("--fractions="))
      c.fractions = parse_list(v);
    else if (const char* v = val("--removal="))
      c.removal = v;
    else if (const char* v = val("--baseline="))
      c.baseline = v;
    else if (const char* v = val("--threads="))
      c.threads = std::atoi(v);
    else if (const char* v = val("--granularity="))
      c.granularity = v;
    else if (a == "--details")
      c.details = true;
    else if (const char* v = val("--scan="))
      c.scan = std::atoll(v);
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  set_num_threads(c.threads);
  const char* sh = std::getenv("CANDOR_SHARED");
  std::string shared = sh ? sh : "../shared";
  auto model = load_model(shared + "/models/stories260K/stories260K.bin");
  const Model& m = *model;
  Lexicon lex = load_lexicon(shared + "/lexicons/vader_lexicon.txt");
  auto ig = make_explainer(c.ig);
  auto occ = make_explainer(c.occ);
  auto ps = make_prompts(m, c);
  FaithfulnessOptions fo;
  fo.curves = fo.infidelity = fo.loo = false;
  fo.fractions = c.fractions;
  fo.removal = parse_removal(c.removal);

  std::vector<std::map<std::string, double>> values;
  std::vector<std::string> decoy_names;
  int64_t fmin = 1 << 30, fmax = 0, ig_last = 0, occ_last = 0;
  for (size_t i = 0; i < ps.size(); ++i) {
    ExplainRequest r;
    r.input_ids = ps[i];
    r.baseline = parse_baseline(c.baseline);
    r.granularity = parse_granularity(c.granularity);
    int64_t k = 0;
    if (c.target == "span") {
      k = c.k > 0 ? c.k : 3 + static_cast<int64_t>(i % 6);
      GenerateOptions g;
      g.max_new_tokens = k;  // greedy
      GenerateResult gr = generate(m, ps[i], g);
      r.target.span = gr.generated_ids;
      if (r.target.span.empty()) continue;
    }
    std::vector<Attribution> all = {ig->explain(m, r), occ->explain(m, r)};
    if (static_cast<int64_t>(i) == c.scan) {
      // Drops of removing each feature alone, and together with occlusion's top feature.
      const int64_t F0 = all[1].n_features();
      const int64_t top = rank_order(all[1].total())[0];
      std::vector<std::vector<uint8_t>> masks;
      for (int64_t j = 0; j < F0; ++j) {
        std::vector<uint8_t> a1(F0, 1), a2(F0, 1);
        a1[j] = 0;
        a2[j] = a2[top] = 0;
        masks.push_back(a1);
        masks.push_back(a2);
      }
      std::vector<double> v = score_masks(m, r, all[1], masks, parse_removal(c.removal));
      const double fx = all[1].target_values[0];
      std::printf("scan prompt %zu, occlusion top feature %lld:\n", i, static_cast<long long>(top));
      for (int64_t j = 0; j < F0; ++j)
        std::printf("  feature %lld %-10s alone %.4f with top %.4f\n", static_cast<long long>(j),
                    all[1].features[j].label.c_str(), fx - v[2 * j], fx - v[2 * j + 1]);
    }
    const int64_t F = all[0].n_features();
    fmin = std::min(fmin, F);
    fmax = std::max(fmax, F);
    if (rank_order(all[0].total())[0] == F - 1) ++ig_last;
    if (rank_order(all[1].total())[0] == F - 1) ++occ_last;
    DecoyOptions d;
    d.seed = i;
    d.lexicon = &lex;
    d.other_target = occ.get();
    std::vector<Attribution> decoys = make_decoys(m, r, all[0], d);
    if (!r.target.span.empty()) {
      // Stricter span decoys (not in the list): recency over the prompt only (the
      // input's last token first, generated tokens after every input token), and the occlusion
      // explanation of another plausible answer: a temperature-1 continuation of the same
      // length (seeded by the prompt) that differs from the greedy one.
      std::vector<double> lv(F);
      for (int64_t f = 0; f < F; ++f)
        lv[f] = static_cast<double>(f + 1) +
                (all[0].features[f].begin < all[0].n_input_tokens ? static_cast<double>(F) : 0.0);
      decoys.push_back(decoy_with_scores(all[0], "last_input", lv));
      // other_answer: may share a prefix with the greedy answer; other_answer_first: its first
      // token differs from the greedy one's.
      bool got_any = false, got_first = false;
      for (uint64_t s = 0; s < 64 && !(got_any && got_first); ++s) {
        GenerateOptions g;
        g.max_new_tokens = k;
        g.temperature = 1.0f;
        g.seed = 7919 * i + s;
        GenerateResult gr = generate(m, ps[i], g);
        if (gr.generated_ids.size() != r.target.span.size() || gr.generated_ids == r.target.span)
          continue;
        const bool first_differs = gr.generated_ids[0] != r.target.span[0];
        if (got_any && !first_differs) continue;
        ExplainRequest o2 = r;
        o2.target.span = gr.generated_ids;
        std::vector<double> tot = occ->explain(m, o2).total();
        if (!got_any) decoys.push_back(decoy_with_scores(all[0], "other_answer", tot));
        got_any = true;
        if (first_differs && !got_first) {
          decoys.push_back(decoy_with_scores(all[0], "other_answer_first", tot));
          got_first = true;
        }
      }
    } else {
      // other_plausible: the occlusion explanation of a token drawn from the model's own
      // next-token distribution (temperature 1), other than the explained top token.
      for (uint64_t s = 0; s < 64; ++s) {
        GenerateOptions g;
        g.max_new_tokens = 1;
        g.temperature = 1.0f;
        g.seed = 7919 * i + s;
        GenerateResult gr = generate(m, ps[i], g);
        if (gr.generated_ids.empty() || gr.generated_ids[0] == all[0].step_tokens[0]) continue;
        ExplainRequest o2 = r;
        o2.target.token = gr.generated_ids[0];
        decoys.push_back(decoy_with_scores(all[0], "other_plausible", occ->explain(m, o2).total()));
        break;
      }
    }
    for (Attribution& dec : decoys) {
      if (std::find(decoy_names.begin(), decoy_names.end(), dec.method) == decoy_names.end())
        decoy_names.push_back(dec.method);
      all.push_back(std::move(dec));
    }
    std::vector<Faithfulness> f = evaluate_faithfulness(m, r, all, fo);
    std::map<std::string, double> v;
    v["integrated_gradients"] = f[0].comprehensiveness_aopc;
    v["occlusion"] = f[1].comprehensiveness_aopc;
    for (size_t j = 2; j < all.size(); ++j) v[all[j].method] = f[j].comprehensiveness_aopc;
    values.push_back(v);
    if (c.details) {
      std::string text = m.tokenizer().decode(ps[i]);
      for (char& ch : text)
        if (ch == '\n') ch = ' ';
      // Integrated gradients' relative completeness error |sum of scores - (f(x) - f(b))| /
      // |f(x) - f(b)| over the steps.
      double delta = 0, gap = 0;
      for (size_t s = 0; s < all[0].convergence_delta.size(); ++s) {
        delta += all[0].convergence_delta[s];
        gap += all[0].target_values[s] - all[0].baseline_values[s];
      }
      std::printf("prompt %zu F=%lld k=%lld f(x)=%.4f ig_rel_error=%.4f |%s|\n", i,
                  static_cast<long long>(F), static_cast<long long>(k), f[0].full_value,
                  gap != 0 ? std::fabs(delta / gap) : 0.0, text.c_str());
      for (size_t j = 0; j < all.size(); ++j) {
        std::printf("  %-22s aopc=%.5f top=%s comp=", all[j].method.c_str(),
                    f[j].comprehensiveness_aopc, rank_text(all[j].total(), 6).c_str());
        for (double x : f[j].comprehensiveness) std::printf(" %.4f", x);
        std::printf("\n");
      }
    }
  }
  std::vector<std::string> methods = {"integrated_gradients", "occlusion"};
  const int64_t N = static_cast<int64_t>(values.size());
  std::printf(
      "config: prompts=%s target=%s k=%lld ig=%s occ=%s removal=%s baseline=%s "
      "fractions=",
      c.prompts.c_str(), c.target.c_str(), static_cast<long long>(c.k), c.ig.c_str(), c.occ.c_str(),
      c.removal.c_str(), c.baseline.c_str());
  for (double q : c.fractions) std::printf("%g ", q);
  std::printf("granularity=%s seed-base=%llu\n", c.granularity.c_str(),
              static_cast<unsigned long long>(c.seed_base));
  std::printf(
      "prompts: %lld distinct, %lld-%lld features; top feature is the last: IG %lld, "
      "occlusion %lld\n",
      static_cast<long long>(N), static_cast<long long>(fmin), static_cast<long long>(fmax),
      static_cast<long long>(ig_last), static_cast<long long>(occ_last));
  std::printf("| decoy | IG wins / ties / losses | occlusion wins / ties / losses | caught |\n");
  for (size_t d = 0; d < decoy_names.size(); ++d) {
    const std::string& dn = decoy_names[d];
    int64_t w[2] = {0, 0}, t[2] = {0, 0}, caught = 0, n = 0;
    for (const auto& v : values) {
      auto di = v.find(dn);
      if (di == v.end()) continue;
      ++n;
      bool all = true;
      for (size_t mt = 0; mt < methods.size(); ++mt) {
        const double a = v.at(methods[mt]), b = di->second;
        const bool tie =
            std::fabs(a - b) <= 1e-9 * std::max(1.0, std::max(std::fabs(a), std::fabs(b)));
        const bool win = !tie && a > b;
        w[mt] += win;
        t[mt] += tie;
        all = all && win;
      }
      caught += all;
    }
    auto wtl = [&](size_t mt) {
      char b[64];
      std::snprintf(b, sizeof b, "%lld%% (%lld / %lld / %lld)",
                    static_cast<long long>(std::llround(100.0 * w[mt] / n)),
                    static_cast<long long>(w[mt]), static_cast<long long>(t[mt]),
                    static_cast<long long>(n - w[mt] - t[mt]));
      return std::string(b);
    };
    std::printf("| %s | %s | %s | %lld%% (%lld of %lld) |\n", dn.c_str(), wtl(0).c_str(),
                wtl(1).c_str(), static_cast<long long>(std::llround(100.0 * caught / n)),
                static_cast<long long>(caught), static_cast<long long>(n));
  }
  if (c.details) {
    for (size_t i = 0; i < values.size(); ++i)
      for (const std::string& dn : decoy_names)
        for (const std::string& mt : methods)
          if (values[i].count(dn) && !(values[i].at(mt) > values[i].at(dn)))
            std::printf("miss: prompt %zu %s vs %s: %.5f vs %.5f\n", i, mt.c_str(), dn.c_str(),
                        values[i].at(mt), values[i].at(dn));
  }
  return 0;
}

}  // namespace
}  // namespace candor

int main(int argc, char** argv) {
  candor::prepare_process(argc, argv);
  try {
    return candor::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
