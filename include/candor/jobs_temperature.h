// Temperature scaling beside a model: `candor audit calibration --model M --save-temperature`
// writes the fitted temperature next to the model; `candor explain --temperature-scaling` (and
// the service, when asked) reads it and explains the model with its logits divided by it.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>

#include "candor/model.h"

namespace candor::jobs {

// Where the temperature of `model_path` lives: DIR/temperature.json for a model folder,
// FILE.temperature.json beside a model file.
std::string temperature_path(const std::string& model_path);
// Writes {"temperature": t, ...info} there, atomically. Error(kInvalidArgument) for t <= 0.
void save_temperature(const std::string& model_path, double temperature, const nlohmann::json& info);
// The saved temperature; Error(kNotFound) naming the file and the command that writes it, or
// Error(kInvalidArgument) for a malformed file.
double load_temperature(const std::string& model_path);

// `model` with every logit divided by `temperature` (forward and unembed; embeddings, caches and
// parameters are the model's own). The wrapper borrows `model`, which must outlive it.
std::unique_ptr<Model> temperature_scaled(const Model& model, double temperature);

}  // namespace candor::jobs
