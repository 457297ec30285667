// `candor info`: architecture, size, tokenizer and runtime (BLAS, threads) of a model.
#include <nlohmann/json.hpp>

#include <iostream>
#include <map>
#include <memory>

#include "candor/classifier.h"
#include "candor/distill.h"
#include "candor/model.h"
#include "candor/runtime.h"
#include "cli.h"

namespace candor::cli {
namespace {
std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}
// A fastText classifier: what its file holds (candor runs it itself, no libtorch model).
int info_fasttext(const std::string& path, bool json) {
  std::unique_ptr<TextClassifier> clf = load_fasttext(path);
  nlohmann::ordered_json d = clf->describe();
  nlohmann::ordered_json j = {{"model", path},          {"architecture", "fasttext"},
                              {"kind", "classifier"},   {"tokenizer", "whitespace"},
                              {"threads", num_threads()}};
  for (const auto& [k, v] : d.items()) j[k] = v;
  if (json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  const std::vector<std::string> labels = d["labels"].get<std::vector<std::string>>();
  std::cout << "model          " << path << "\n"
            << "architecture   " << d["format"].get<std::string>() << ", file version "
            << d["file_version"] << "\n"
            << "parameters     " << d["parameters"] << "\n"
            << "dim            " << d["dim"] << "  loss " << d["loss"].get<std::string>() << "\n"
            << "vocabulary     " << d["words"] << " words, " << d["buckets"]
            << " n-gram buckets (character n-grams " << d["char_ngrams"].get<std::string>()
            << ", word n-grams up to " << d["word_ngrams"] << "), split on whitespace\n"
            << "classifier     " << labels.size() << " labels: " << join(labels) << "\n"
            << "explained      exactly: candor explain --model " << path << " --prompt TEXT\n";
  return 0;
}

// A model candor fitted over table rows (the MLP of candor train, a glass-box student of candor
// distill): its classes, the columns it reads and its size.
int info_table_model(const std::string& path, bool json) {
  nlohmann::ordered_json j = {{"model", path}, {"kind", "classifier"}, {"input", "table rows"}};
  const distill::Featurizer* f = nullptr;
  std::unique_ptr<distill::MlpClassifier> mlp;
  std::unique_ptr<distill::SavedStudent> student;
  std::string what;
  if (distill::SavedStudent::is_saved(path)) {
    student = distill::SavedStudent::load(path);
    f = &student->featurizer();
    j["architecture"] = student->student().kind() + " student";
    j["format"] = "candor student.json";
    j["labels"] = student->classes();
    j["teacher"] = student->teacher();
    what = "a " + student->student().kind() + " student distilled by candor distill";
  } else {
    mlp = distill::MlpClassifier::load(path);
    f = &mlp->featurizer();
    int64_t n = 0;
    std::vector<int64_t> widths;
    for (const at::Tensor& p : mlp->parameters()) {
      n += p.numel();
      if (p.dim() == 2) widths.push_back(p.size(1));
    }
    if (!widths.empty()) widths.pop_back();  // the output layer
    j["architecture"] = "mlp";
    j["format"] = "candor mlp.json";
    j["parameters"] = n;
    j["hidden"] = widths;
    j["labels"] = mlp->classes();
    what = "an MLP trained by candor train";
  }
  std::map<std::string, std::string> columns;  // column -> how it is read
  for (const distill::Feature& x : f->features())
    columns[x.column] = x.kind == distill::Feature::kNumeric       ? "numeric"
                        : x.kind == distill::Feature::kCategorical ? "categorical"
                                                                   : "text n-grams";
  nlohmann::ordered_json cols = nlohmann::ordered_json::object();
  for (const auto& [c, k] : columns) cols[c] = k;
  j["columns"] = cols;
  j["features"] = f->features().size();
  j["threads"] = num_threads();
  if (json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::string cs;
  for (const auto& [c, k] : columns) cs += (cs.empty() ? "" : ", ") + c + " (" + k + ")";
  std::cout << "model          " << path << "\n"
            << "architecture   " << what << "\n";
  if (mlp)
    std::cout << "parameters     " << j["parameters"] << " (hidden " << j["hidden"].dump() << ")\n";
  std::cout << "input          table rows: " << cs << "\n"
            << "features       " << f->features().size() << "\n"
            << "classifier     " << j["labels"].size()
            << " labels: " << join(j["labels"].get<std::vector<std::string>>()) << "\n"
            << "commands       candor predict --model " << path
            << " --data FILE --out FILE.csv; candor distill --teacher " << path
            << " --data FILE (explains it with a glass-box student)\n";
  return 0;
}

}  // namespace

Runner add_info(CLI::App& app) {
  struct Opts {
    std::string model, tokenizer, dtype = "f32";
    int threads = 0;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("--model,-m", o->model,
                 "Checkpoint file, or a folder holding it and its tokenizer")
      ->required();
  app.add_option("--tokenizer", o->tokenizer, "Tokenizer file (default: found beside the model)");
  app.add_option("--threads", o->threads, "Intra-op threads (default: one per core)");
  add_dtype_option(app, &o->dtype);
  app.add_flag("--json", o->json, "Print JSON");
  return [o]() {
    check_prompt_and_threads("", o->threads);
    set_num_threads(o->threads);
    if (is_fasttext_file(o->model)) return info_fasttext(o->model, o->json);
    if (distill::SavedStudent::is_saved(o->model) || distill::MlpClassifier::is_saved(o->model))
      return info_table_model(o->model, o->json);
    LoadOptions lo;
    lo.tokenizer_path = o->tokenizer;
    lo.compute_dtype = o->dtype;
    std::unique_ptr<Model> model = load_model(o->model, lo);
    const ModelConfig& c = model->config();
    std::vector<std::string> windowed;  // layers that use the sliding window
    std::vector<int64_t> windowed_ids;
    for (int64_t l = 0; l < c.n_layers; ++l) {
      if (c.window_of(l) == 0) continue;
      windowed.push_back(std::to_string(l));
      windowed_ids.push_back(l);
    }
    // Before named_parameters(), which dequantises matrices kept quantized (GGUF).
    const std::string forward_path = model->forward_path();
    int64_t weight_bytes = 0;  // as held in memory (tied matrices counted once)
    for (const auto& [name, t] : model->named_parameters())
      weight_bytes += t.numel() * static_cast<int64_t>(t.element_size());
    BlasInfo blas = blas_info();
    nlohmann::ordered_json j = {
        {"model", o->model},
        {"architecture", c.architecture},
        {"format", c.source_format},
        {"dtype", c.dtype},
        {"compute_dtype", c.compute_dtype},
        {"weight_bytes", weight_bytes},
        {"parameters", model->n_params()},
        {"dim", c.dim},
        {"hidden_dim", c.hidden_dim},
        {"n_layers", c.n_layers},
        {"n_heads", c.n_heads},
        {"n_kv_heads", c.n_kv_heads},
        {"vocab_size", c.vocab_size},
        {"context_length", c.max_seq_len},
        {"sliding_window", c.sliding_window},
        {"windowed_layers", windowed_ids},
        {"tied_embeddings", c.tied_embeddings},
        {"kind", c.is_causal() ? "causal_lm" : "classifier"},
        {"labels", c.labels},
        {"tokenizer", model->tokenizer().kind()},
        {"blas",
         {{"library", blas.library},
          {"core", blas.core},
          {"slow", blas.slow},
          {"openblas_coretype", blas.coretype_env}}},
        {"threads", num_threads()},
        {"forward_path", forward_path},
        {"gradient_path", model->gradient_path()},
    };
    if (o->json) {
      std::cout << j.dump(2) << "\n";
    } else {
      std::cout << "model          " << o->model << "\n"
                << "architecture   " << c.architecture << " (" << c.source_format << ")\n"
                << "parameters     " << model->n_params() << "\n"
                << "dtype          " << c.dtype << " stored, computed in " << c.compute_dtype
                << " (" << weight_bytes << " bytes of weights)\n"
                << "layers         " << c.n_layers << "  dim " << c.dim << "  hidden "
                << c.hidden_dim << "  heads " << c.n_heads << "  kv heads " << c.n_kv_heads << "\n"
                << "vocabulary     " << c.vocab_size << " (" << model->tokenizer().kind()
                << " tokenizer)\n"
                << "context        " << c.max_seq_len << " tokens"
                << (c.sliding_window > 0
                        ? ", sliding-window attention over " + std::to_string(c.sliding_window) +
                              (c.windowed_layers.empty() ? std::string()
                                                         : " in layers " + join(windowed))
                        : std::string())
                << "\n"
                << (c.is_causal() ? std::string("output matrix  ") +
                                        (c.tied_embeddings ? "tied to embeddings" : "separate")
                                  : "classifier     " + std::to_string(c.labels.size()) +
                                        " labels: " + join(c.labels))
                << "\n"
                << "BLAS           " << blas.library
                << (blas.core.empty() ? "" : " (core " + blas.core + ")") << "\n"
                << "threads        " << num_threads() << "\n"
                << "forward        " << forward_path << "\n"
                << "gradients      " << model->gradient_path() << "\n";
    }
    if (blas.slow) std::cerr << "warning: " << blas.warning << "\n";
    return 0;
  };
}

}  // namespace candor::cli
