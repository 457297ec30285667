// Precompiled header for the library's sources: the tensor library (ATen, not torch/torch.h).
#pragma once
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <algorithm>
#include <memory>
#include <string>
#include <vector>
