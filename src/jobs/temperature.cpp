// Temperature scaling saved beside a model, and the model with its logits scaled.
#include <filesystem>
#include <fstream>

#include "candor/error.h"
#include "candor/files.h"
#include "candor/jobs_temperature.h"

namespace candor::jobs {

namespace {

class ScaledTape : public GradientTape {
 public:
  ScaledTape(std::unique_ptr<GradientTape> inner, double t) : inner_(std::move(inner)), t_(t) {}
  at::Tensor backward(const at::Tensor& dlogits) const override {
    return inner_->backward(dlogits / t_);
  }

 private:
  std::unique_ptr<GradientTape> inner_;
  double t_;
};

class TemperatureScaled : public Model {
 public:
  TemperatureScaled(const Model* inner, std::unique_ptr<Model> owned, double t)
      : inner_(inner), owned_(std::move(owned)), t_(t) {}
  const ModelConfig& config() const override { return inner_->config(); }
  const Tokenizer& tokenizer() const override { return inner_->tokenizer(); }
  int64_t n_params() const override { return inner_->n_params(); }
  at::Tensor forward(const ForwardArgs& args) const override { return inner_->forward(args) / t_; }
  at::Tensor embed(const at::Tensor& tokens) const override { return inner_->embed(tokens); }
  // The inner model's hand-written backward, with the scale applied on both sides: logits / T,
  // and d/dlogits of the inner pass = dlogits / T.
  std::unique_ptr<GradientTape> forward_with_tape(const ForwardArgs& args,
                                                  at::Tensor* logits) const override {
    std::unique_ptr<GradientTape> inner = inner_->forward_with_tape(args, logits);
    if (!inner) return nullptr;
    *logits = *logits / t_;
    return std::make_unique<ScaledTape>(std::move(inner), t_);
  }
  std::string forward_path() const override { return inner_->forward_path(); }
  std::string gradient_path() const override { return inner_->gradient_path(); }
  at::Tensor embedding_matrix() const override { return inner_->embedding_matrix(); }
  at::Tensor unembed(const at::Tensor& hidden, bool apply_norm) const override {
    return inner_->unembed(hidden, apply_norm) / t_;
  }
  KVCache new_cache(int64_t batch, int64_t capacity) const override { return inner_->new_cache(batch, capacity); }
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const override {
    return inner_->named_parameters();
  }
  std::unique_ptr<Model> clone() const override {
    std::unique_ptr<Model> c = inner_->clone();
    const Model* p = c.get();
    return std::make_unique<TemperatureScaled>(p, std::move(c), t_);
  }

 private:
  const Model* inner_;
  std::unique_ptr<Model> owned_;
  double t_;
};

}  // namespace

std::string temperature_path(const std::string& model_path) {
  std::error_code ec;
  std::string p = model_path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  if (std::filesystem::is_directory(p, ec)) return p + "/temperature.json";
  return p + ".temperature.json";
}

void save_temperature(const std::string& model_path, double temperature, const nlohmann::json& info) {
  if (!(temperature > 0))
    throw Error(ErrorCode::kInvalidArgument, "a temperature must be > 0, not " + std::to_string(temperature),
                "fit it with candor audit calibration");
  nlohmann::json j = info.is_object() ? info : nlohmann::json::object();
  j["temperature"] = temperature;
  write_file_atomic(temperature_path(model_path), j.dump(2) + "\n");
}

double load_temperature(const std::string& model_path) {
  const std::string path = temperature_path(model_path);
  std::ifstream in(path);
  if (!in)
    throw Error(ErrorCode::kNotFound, "no saved temperature for " + model_path + " (" + path + " is missing)",
                "fit one with candor audit calibration --model " + model_path +
                    " --data F --label COL --save-temperature");
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_object() || !j.contains("temperature") || !j["temperature"].is_number() ||
      !(j["temperature"].get<double>() > 0))
    throw Error(ErrorCode::kInvalidArgument, path + ": not a saved temperature (needs \"temperature\": a number > 0)",
                "fit it again with candor audit calibration --save-temperature");
  return j["temperature"].get<double>();
}

std::unique_ptr<Model> temperature_scaled(const Model& model, double temperature) {
  if (!(temperature > 0))
    throw Error(ErrorCode::kInvalidArgument, "a temperature must be > 0, not " + std::to_string(temperature),
                "fit it with candor audit calibration");
  return std::make_unique<TemperatureScaled>(&model, nullptr, temperature);
}

}  // namespace candor::jobs
