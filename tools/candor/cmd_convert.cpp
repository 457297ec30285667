// `candor convert`: writes any loaded model as a Hugging Face safetensors folder (config.json,
// model.safetensors, the tokenizer files it was loaded with), or a llama model as GGUF.
#include <iostream>
#include <memory>

#include "candor/model.h"
#include "cli.h"

namespace candor::cli {

Runner add_convert(CLI::App& app) {
  struct Opts {
    std::string model, tokenizer, out, dtype = "f32", format = "hf";
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("--model,-m", o->model,
                 "Checkpoint file, or a folder holding it and its tokenizer")
      ->required();
  app.add_option("--tokenizer", o->tokenizer, "Tokenizer file (default: found beside the model)");
  app.add_option("--out,-o", o->out, "Output folder (hf, created when absent) or file (gguf)")
      ->required();
  app.add_option("--format", o->format, "hf (default: config.json + model.safetensors) or gguf");
  app.add_option("--dtype", o->dtype,
                 "Weight type written: f32 (default), f16 or bf16 (hf); f32, q8_0, q4_k, q6_k or "
                 "bf16 (gguf)");
  app.add_option("--threads", o->threads, "Intra-op threads (default: one per core)");
  return [o]() {
    if (o->format != "hf" && o->format != "gguf")
      throw usage_error("--format must be hf or gguf, got '" + o->format + "'");
    if (o->format == "hf" && o->dtype != "f32" && o->dtype != "f16" && o->dtype != "bf16")
      throw usage_error("--dtype must be f32, f16 or bf16 for --format hf, got '" + o->dtype + "'");
    if (o->format == "gguf" && o->dtype != "f32" && o->dtype != "q8_0" && o->dtype != "q4_k" &&
        o->dtype != "q6_k" && o->dtype != "bf16")
      throw usage_error("--dtype must be f32, q8_0, q4_k, q6_k or bf16 for --format gguf, got '" +
                        o->dtype + "'");
    check_prompt_and_threads("", o->threads);
    std::unique_ptr<Model> model = load_cli_model(o->model, o->tokenizer, o->threads);
    if (o->format == "gguf") {
      save_gguf(*model, o->out, o->dtype);
    } else {
      save_hf_folder(*model, o->out, o->dtype);
    }
    std::cerr << "wrote " << o->out << " (" << model->config().architecture << ", "
              << model->n_params() << " parameters, " << o->dtype << ")\n";
    return 0;
  };
}

}  // namespace candor::cli
