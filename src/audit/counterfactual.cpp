// Counterfactual swaps: protected-attribute terms rewritten to another group's term (case and
// everything between words kept), and the audit of a model's change under the rewrite.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <sstream>
#include <unordered_map>

#include "audit/lexicons.h"
#include "audit/stats.h"
#include "candor/audit.h"
#include "candor/data.h"
#include "candor/error.h"

namespace candor::audit {

namespace {

std::vector<std::string> cf_split(const std::string& s, char sep) {
  std::vector<std::string> out(1);
  for (char c : s) {
    if (c == sep)
      out.emplace_back();
    else if (c != '\r')
      out.back() += c;
  }
  return out;
}

std::string cf_lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

std::string cf_trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '"')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '"')) --e;
  return s.substr(b, e - b);
}

bool word_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

// Byte length of the word character at text[i] (a letter or digit, or a non-ASCII character that
// is not punctuation or a space), 0 when text[i] starts no word character.
size_t word_char(const std::string& text, size_t i) {
  const unsigned char c = static_cast<unsigned char>(text[i]);
  if (c < 0x80) return word_byte(c) ? 1 : 0;
  size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
  if (i + len > text.size()) len = 1;
  uint32_t cp = len == 1 ? c : (c & (0xFF >> (len + 1)));
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
  const bool punct = (cp >= 0x80 && cp <= 0xBF) || cp == 0xD7 || cp == 0xF7 || (cp >= 0x2000 && cp <= 0x206F) ||
                     (cp >= 0x20A0 && cp <= 0x20CF) || (cp >= 0x2190 && cp <= 0x2BFF) ||
                     (cp >= 0x3000 && cp <= 0x303F) || (cp >= 0xFE30 && cp <= 0xFE4F) ||
                     (cp >= 0xFF00 && cp <= 0xFF0F) || cp == 0xFEFF;
  return punct ? 0 : len;
}

// The replacement with the case pattern of `original`: UPPER (two or more letters, all upper),
// Capitalised, or as the lexicon has it (lower).
std::string with_case(const std::string& original, const std::string& term) {
  int upper = 0, letters = 0;
  for (char c : original) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) ++letters;
    if (c >= 'A' && c <= 'Z') ++upper;
  }
  std::string out = term;
  if (letters >= 2 && upper == letters) {
    for (char& c : out)
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  } else if (!original.empty() && original[0] >= 'A' && original[0] <= 'Z' && !out.empty() && out[0] >= 'a' &&
             out[0] <= 'z') {
    out[0] = static_cast<char>(out[0] - 'a' + 'A');
  }
  return out;
}

SwapLexicon from_rows(const std::string& attribute, const std::vector<std::string>& groups,
                      const std::string& rows, const std::string& source) {
  SwapLexicon lex;
  lex.attribute = attribute;
  lex.groups = groups;
  lex.source = source;
  std::istringstream in(rows);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::vector<std::string> f = cf_split(line, ',');
    for (std::string& t : f) t = t == "-" ? std::string() : t;
    lex.terms.push_back(f);
  }
  return lex;
}

// First names by (gender, ethnicity) from the resume-callback data, in order of appearance.
std::map<std::pair<std::string, std::string>, std::vector<std::string>> read_names(const std::string& path) {
  data::ReadOptions ro;
  ro.required = {"name", "gender", "ethnicity"};
  data::Table t = data::read_csv(path, ro);
  const data::Column& name = t.column("name");
  const data::Column& gender = t.column("gender");
  const data::Column& eth = t.column("ethnicity");
  std::map<std::pair<std::string, std::string>, std::vector<std::string>> out;
  for (size_t r = 0; r < t.n_rows(); ++r) {
    if (name.is_missing(r) || gender.is_missing(r) || eth.is_missing(r)) continue;
    std::vector<std::string>& v = out[{cf_lower(gender.raw[r]), cf_lower(eth.raw[r])}];
    const std::string n = cf_lower(name.raw[r]);
    if (std::find(v.begin(), v.end(), n) == v.end()) v.push_back(n);
  }
  return out;
}

void add_name_rows(SwapLexicon* lex, const std::vector<std::string>& a, const std::vector<std::string>& b) {
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    std::vector<std::string> row(lex->groups.size());
    row[0] = a[i];
    row[1] = b[i];
    lex->terms.push_back(row);
    ++lex->n_names;
  }
}

struct Match {
  size_t begin, end, row, group;
};

// Words of `text` that are terms of the lexicon.
std::vector<Match> find_terms(const std::string& text, const SwapLexicon& lex,
                              const std::unordered_map<std::string, std::pair<size_t, size_t>>& index) {
  std::vector<Match> out;
  size_t i = 0;
  while (i < text.size()) {
    if (word_char(text, i) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    for (size_t l; j < text.size() && (l = word_char(text, j)) > 0;) j += l;
    auto it = index.find(cf_lower(text.substr(i, j - i)));
    if (it != index.end()) out.push_back({i, j, it->second.first, it->second.second});
    i = j;
  }
  (void)lex;
  return out;
}

std::unordered_map<std::string, std::pair<size_t, size_t>> term_index(const SwapLexicon& lex) {
  std::unordered_map<std::string, std::pair<size_t, size_t>> index;
  for (size_t r = 0; r < lex.terms.size(); ++r)
    for (size_t g = 0; g < lex.terms[r].size(); ++g)
      if (!lex.terms[r][g].empty()) index.emplace(cf_lower(lex.terms[r][g]), std::make_pair(r, g));
  return index;
}

}  // namespace

const std::vector<std::string>& builtin_swap_attributes() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const BuiltinLexicon* l : builtin_lexicons()) v.push_back(l->attribute);
    return v;
  }();
  return names;
}

SwapLexicon builtin_swap_lexicon(const std::string& attribute, const std::string& names_csv) {
  for (const BuiltinLexicon* l : builtin_lexicons()) {
    if (attribute != l->attribute) continue;
    SwapLexicon lex = from_rows(attribute, cf_split(l->groups, ','), l->rows, "built-in");
    if (!names_csv.empty() && (attribute == "gender" || attribute == "race")) {
      auto names = read_names(names_csv);
      if (attribute == "gender") {
        for (const char* eth : {"cauc", "afam"}) add_name_rows(&lex, names[{"male", eth}], names[{"female", eth}]);
      } else {  // white, black, asian, hispanic: names for the first two
        for (const char* g : {"female", "male"}) add_name_rows(&lex, names[{g, "cauc"}], names[{g, "afam"}]);
      }
      lex.source += " + names from " + names_csv;
    }
    return lex;
  }
  std::string list;
  for (const std::string& a : builtin_swap_attributes()) list += (list.empty() ? "" : ", ") + a;
  throw Error(ErrorCode::kInvalidArgument,
              "no built-in word list for attribute '" + attribute + "' (the built-in ones: " + list + ")",
              "use one of " + list + ", or give a CSV of aligned terms (a header naming the groups)");
}

SwapLexicon load_swap_lexicon(const std::string& csv_path) {
  std::ifstream in(csv_path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kNotFound, csv_path + ": cannot open the file", "check the --attribute path");
  std::string line;
  int64_t n = 0;
  SwapLexicon lex;
  lex.attribute = csv_path;
  lex.source = csv_path;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    std::vector<std::string> f = cf_split(line, ',');
    for (std::string& t : f) t = cf_trim(t);
    if (lex.groups.empty()) {
      if (f.size() < 2)
        throw Error(ErrorCode::kInvalidArgument, csv_path + " line " + std::to_string(n) +
                                                     ": the header names one group; a swap needs two or more",
                    "write a header such as 'male,female' and one row of aligned terms a line");
      lex.groups = f;
      continue;
    }
    if (f.size() != lex.groups.size())
      throw Error(ErrorCode::kInvalidArgument,
                  csv_path + " line " + std::to_string(n) + ": " + std::to_string(f.size()) + " fields, the header has " +
                      std::to_string(lex.groups.size()),
                  "give one term per group on every line (leave a field empty where a group has none)");
    for (std::string& t : f) {
      for (char c : t)
        if (!word_byte(static_cast<unsigned char>(c)))
          throw Error(ErrorCode::kInvalidArgument,
                      csv_path + " line " + std::to_string(n) + ": '" + t + "' is not one word",
                      "give single words (letters and digits); each line pairs one word per group");
      t = cf_lower(t);
    }
    lex.terms.push_back(f);
  }
  if (lex.groups.empty())
    throw Error(ErrorCode::kInvalidArgument, csv_path + ": the file is empty",
                "write a header naming the groups and one row of aligned terms a line");
  if (lex.terms.empty())
    throw Error(ErrorCode::kInvalidArgument, csv_path + ": no term rows under the header",
                "add one row of aligned terms a line");
  return lex;
}

namespace {

std::vector<SwapVariant> swaps_with(const std::string& text, const SwapLexicon& lexicon,
                                    const std::unordered_map<std::string, std::pair<size_t, size_t>>& index) {
  const std::vector<Match> m = find_terms(text, lexicon, index);
  std::vector<SwapVariant> out;
  if (m.empty()) return out;
  const size_t G = lexicon.groups.size();
  auto make = [&](const std::string& to_name, auto target_of) {
    SwapVariant v;
    v.to = to_name;
    size_t at = 0;
    for (const Match& x : m) {
      const size_t g = target_of(x.group);
      const std::string& term = lexicon.terms[x.row][g];
      if (g == x.group || term.empty()) continue;
      const std::string word = text.substr(x.begin, x.end - x.begin);
      v.text += text.substr(at, x.begin - at);
      const std::string rep = with_case(word, term);
      v.text += rep;
      at = x.end;
      v.spans.push_back({x.begin, x.end});
      v.replaced.emplace_back(word, rep);
      v.from.push_back(lexicon.groups[x.group]);
    }
    v.text += text.substr(at);
    if (!v.replaced.empty()) out.push_back(std::move(v));
  };
  if (G == 2) {
    make("", [](size_t g) { return 1 - g; });
  } else {
    std::vector<uint8_t> seen(G, 0);
    for (const Match& x : m) seen[x.group] = 1;
    for (size_t g = 0; g < G; ++g) {
      const bool only = seen[g] && std::count(seen.begin(), seen.end(), 1) == 1;
      if (!only) make(lexicon.groups[g], [g](size_t) { return g; });
    }
  }
  return out;
}

}  // namespace

std::vector<SwapVariant> counterfactual_swaps(const std::string& text, const SwapLexicon& lexicon) {
  return swaps_with(text, lexicon, term_index(lexicon));
}

std::vector<std::string> swapped_texts(const std::string& text, const SwapLexicon& lexicon) {
  std::vector<std::string> out;
  for (SwapVariant& v : counterfactual_swaps(text, lexicon)) out.push_back(std::move(v.text));
  return out;
}

std::string apply_one_swap(const std::string& text, const SwapVariant& v, size_t k) {
  const auto& s = v.spans.at(k);
  return text.substr(0, s[0]) + v.replaced[k].second + text.substr(s[1]);
}

double jensen_shannon(const std::vector<double>& p, const std::vector<double>& q) {
  double js = 0;
  const size_t n = std::min(p.size(), q.size());
  for (size_t i = 0; i < n; ++i) {
    const double m = 0.5 * (p[i] + q[i]);
    if (p[i] > 0 && m > 0) js += 0.5 * p[i] * std::log(p[i] / m);
    if (q[i] > 0 && m > 0) js += 0.5 * q[i] * std::log(q[i] / m);
  }
  return std::max(0.0, js);
}

namespace {

size_t cf_argmax(const std::vector<double>& v) {
  return static_cast<size_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// The figure compared for a pair: classifiers the probability of the original's class; LMs the
// JS divergence (and the log-probability change of the original's top token).
struct PairFigures {
  size_t before = 0, after = 0;
  double p_before = 0, p_after = 0, delta = 0, logprob = 0;
};

PairFigures compare(const std::vector<double>& a, const std::vector<double>& b, bool lm) {
  PairFigures f;
  f.before = cf_argmax(a);
  f.after = cf_argmax(b);
  f.p_before = a[f.before];
  f.p_after = b[f.before];
  if (lm) {
    f.delta = jensen_shannon(a, b);
    f.logprob = std::log(std::max(f.p_after, 1e-30)) - std::log(std::max(f.p_before, 1e-30));
  } else {
    f.delta = f.p_after - f.p_before;
  }
  return f;
}

}  // namespace

CounterfactualResult audit_counterfactual(const std::vector<std::string>& texts, const SwapLexicon& lexicon,
                                          const ProbabilityFn& fn, const CounterfactualOptions& o) {
  CounterfactualResult r;
  r.attribute = lexicon.attribute;
  r.lexicon_source = lexicon.source;
  r.groups = lexicon.groups;
  r.causal_lm = o.causal_lm;
  r.options = o;
  r.n_texts = static_cast<int64_t>(texts.size());
  const auto index = term_index(lexicon);
  struct Pair {
    size_t row, variant;
    PairFigures f;
  };
  std::vector<std::vector<SwapVariant>> variants(texts.size());
  std::vector<Pair> pairs;
  std::vector<size_t> mentioning;
  for (size_t i = 0; i < texts.size(); ++i) {
    variants[i] = swaps_with(texts[i], lexicon, index);
    if (variants[i].empty()) continue;
    mentioning.push_back(i);
    for (const Match& m : find_terms(texts[i], lexicon, index)) ++r.mentions[lexicon.groups[m.group]];
  }
  r.n_mentioning = static_cast<int64_t>(mentioning.size());
  if (mentioning.empty()) {
    std::string some;
    for (size_t k = 0; k < std::min<size_t>(lexicon.terms.size(), 4); ++k)
      for (const std::string& t : lexicon.terms[k])
        if (!t.empty()) some += (some.empty() ? "" : ", ") + t;
    throw Error(ErrorCode::kInvalidArgument,
                "no text mentions a term of attribute '" + lexicon.attribute + "' (" + some + ", ...) among " +
                    std::to_string(texts.size()) + " texts",
                "check --text-column and --attribute, or give your own pair list as CSV");
  }
  // Score originals and rewrites in batches.
  const size_t batch = std::max<size_t>(1, o.batch);
  std::vector<std::string> buf;
  std::vector<std::pair<size_t, size_t>> owner;  // (mentioning index, variant + 1; 0 = original)
  std::vector<std::vector<double>> original(mentioning.size());
  auto flush = [&] {
    if (buf.empty()) return;
    std::vector<std::vector<double>> p = fn(buf);
    if (p.size() != buf.size())
      throw Error(ErrorCode::kInternal, "the model scored " + std::to_string(p.size()) + " of " +
                                            std::to_string(buf.size()) + " texts", "report this as a bug");
    for (size_t k = 0; k < buf.size(); ++k) {
      const auto [mi, v] = owner[k];
      if (v == 0) {
        original[mi] = std::move(p[k]);
      } else {
        pairs.push_back({mentioning[mi], v - 1, compare(original[mi], p[k], o.causal_lm)});
      }
    }
    buf.clear();
    owner.clear();
  };
  for (size_t mi = 0; mi < mentioning.size(); ++mi) {
    const size_t row = mentioning[mi];
    // The original and its rewrites go in one batch, so the original is scored first.
    if (buf.size() + 1 + variants[row].size() > batch) flush();
    buf.push_back(texts[row]);
    owner.emplace_back(mi, 0);
    for (size_t v = 0; v < variants[row].size(); ++v) {
      buf.push_back(variants[row][v].text);
      owner.emplace_back(mi, v + 1);
    }
  }
  flush();
  for (std::vector<double>& p : original) p = {};  // only the pairs' figures are kept
  r.n_pairs = static_cast<int64_t>(pairs.size());
  // Per-text sums (a text's pairs are resampled together).
  const size_t n = mentioning.size();
  std::vector<double> flips(n, 0), abs_delta(n, 0), abs_lp(n, 0), count(n, 0);
  std::unordered_map<size_t, size_t> pos;
  for (size_t k = 0; k < n; ++k) pos[mentioning[k]] = k;
  std::map<std::string, std::array<double, 3>> per_target;
  for (const Pair& p : pairs) {
    const size_t k = pos[p.row];
    const double flip = p.f.before != p.f.after;
    flips[k] += flip;
    abs_delta[k] += std::fabs(p.f.delta);
    abs_lp[k] += std::fabs(p.f.logprob);
    count[k] += 1;
    r.max_abs_delta = std::max(r.max_abs_delta, std::fabs(p.f.delta));
    std::array<double, 3>& t = per_target[variants[p.row][p.variant].to.empty() ? "swapped" : variants[p.row][p.variant].to];
    t[0] += 1;
    t[1] += flip;
    t[2] += std::fabs(p.f.delta);
  }
  auto share = [&](const std::vector<double>& v, const std::vector<size_t>& idx) {
    double s = 0, c = 0;
    for (size_t k : idx) {
      s += v[k];
      c += count[k];
    }
    return c > 0 ? s / c : 0.0;
  };
  std::vector<size_t> all(n);
  std::iota(all.begin(), all.end(), 0);
  r.flip_share = share(flips, all);
  r.mean_abs_delta = share(abs_delta, all);
  r.mean_abs_logprob_change = share(abs_lp, all);
  for (auto& [to, t] : per_target) r.per_target.push_back({to, {t[0], t[1] / t[0], t[2] / t[0]}});
  if (o.n_boot > 0) {
    std::vector<double> bf, bd, bl;
    std::vector<size_t> idx(n);
    for (int b = 0; b < o.n_boot; ++b) {
      Rng rng(o.seed, static_cast<uint64_t>(b));
      for (size_t& k : idx) k = rng.below(n);
      bf.push_back(share(flips, idx));
      bd.push_back(share(abs_delta, idx));
      bl.push_back(share(abs_lp, idx));
    }
    const double a = (1 - o.confidence) / 2;
    r.flip_ci = {quantile(bf, a), quantile(bf, 1 - a)};
    r.mean_abs_delta_ci = {quantile(bd, a), quantile(bd, 1 - a)};
    r.mean_abs_logprob_change_ci = {quantile(bl, a), quantile(bl, 1 - a)};
  }
  // The worst pairs, each with its per-word contrast (one word swapped at a time).
  std::vector<size_t> order(pairs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::fabs(pairs[a].f.delta) > std::fabs(pairs[b].f.delta);
  });
  for (size_t w = 0; w < std::min<size_t>(order.size(), static_cast<size_t>(std::max(0, o.worst))); ++w) {
    const Pair& p = pairs[order[w]];
    const SwapVariant& v = variants[p.row][p.variant];
    CounterfactualExample e;
    e.row = p.row;
    e.original = texts[p.row];
    e.swapped = v.text;
    e.to = v.to;
    e.replaced = v.replaced;
    e.class_before = static_cast<int>(p.f.before);
    e.class_after = static_cast<int>(p.f.after);
    e.p_before = p.f.p_before;
    e.p_after = p.f.p_after;
    e.delta = p.f.delta;
    e.logprob_change = p.f.logprob;
    std::vector<std::string> one{texts[p.row]};
    for (size_t k = 0; k < v.replaced.size(); ++k) one.push_back(apply_one_swap(texts[p.row], v, k));
    std::vector<std::vector<double>> q = fn(one);
    for (size_t k = 1; k < q.size(); ++k) e.word_effects.push_back(compare(q[0], q[k], o.causal_lm).delta);
    r.worst.push_back(std::move(e));
  }
  return r;
}

nlohmann::json CounterfactualResult::to_json() const {
  using nlohmann::json;
  json j;
  j["audit"] = "counterfactual";
  j["attribute"] = attribute;
  j["lexicon"] = lexicon_source;
  j["groups"] = groups;
  j["model_kind"] = causal_lm ? "causal_lm" : "classifier";
  j["n_texts"] = n_texts;
  j["n_mentioning"] = n_mentioning;
  j["n_pairs"] = n_pairs;
  j["mentions"] = mentions;
  j["flip_share"] = flip_share;
  j["flip_share_ci"] = flip_ci;
  j["delta_name"] = causal_lm ? "jensen_shannon" : "probability";
  j["mean_abs_delta"] = mean_abs_delta;
  j["mean_abs_delta_ci"] = mean_abs_delta_ci;
  j["max_abs_delta"] = max_abs_delta;
  if (causal_lm) {
    j["mean_abs_logprob_change"] = mean_abs_logprob_change;
    j["mean_abs_logprob_change_ci"] = mean_abs_logprob_change_ci;
  }
  json pt = json::array();
  for (const auto& [to, t] : per_target)
    pt.push_back({{"to", to}, {"n", static_cast<int64_t>(t[0])}, {"flip_share", t[1]}, {"mean_abs_delta", t[2]}});
  j["per_target"] = pt;
  if (!classes.empty()) j["classes"] = classes;
  json w = json::array();
  for (const CounterfactualExample& e : worst) {
    json x{{"record", e.row + 1},       {"original", e.original},     {"swapped", e.swapped},
           {"to", e.to},                {"class_before", e.class_before}, {"class_after", e.class_after},
           {"p_before", e.p_before},    {"p_after", e.p_after},       {"delta", e.delta}};
    if (!classes.empty() && e.class_before < static_cast<int>(classes.size()) &&
        e.class_after < static_cast<int>(classes.size())) {
      x["label_before"] = classes[e.class_before];
      x["label_after"] = classes[e.class_after];
    }
    if (causal_lm) x["logprob_change"] = e.logprob_change;
    json words = json::array();
    for (size_t k = 0; k < e.replaced.size(); ++k)
      words.push_back({{"from", e.replaced[k].first},
                       {"to", e.replaced[k].second},
                       {"effect", k < e.word_effects.size() ? e.word_effects[k] : 0.0}});
    x["words"] = words;
    w.push_back(x);
  }
  j["worst"] = w;
  j["options"] = {{"n_boot", options.n_boot}, {"seed", options.seed}, {"confidence", options.confidence},
                  {"worst", options.worst}};
  return j;
}

}  // namespace candor::audit
