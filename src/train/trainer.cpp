// The training loop: AdamW, warm-up + cosine schedule, clipping, checkpoint / resume.
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

#include "candor/error.h"
#include "candor/files.h"
#include "candor/train.h"

namespace candor::train {

namespace {

constexpr char kMagic[8] = {'C', 'N', 'D', 'R', 'C', 'K', 'P', '1'};

void write_checkpoint(const std::string& path, int64_t step, const std::vector<at::Tensor>& ts) {
  AtomicFile file(path);  // an interruption while writing leaves the previous checkpoint
  std::ostream& f = file.stream();
  f.write(kMagic, 8);
  int64_t n = static_cast<int64_t>(ts.size());
  f.write(reinterpret_cast<const char*>(&step), 8);
  f.write(reinterpret_cast<const char*>(&n), 8);
  for (const at::Tensor& t : ts) {
    at::Tensor c = t.detach().contiguous().to(at::kFloat);
    int64_t numel = c.numel();
    f.write(reinterpret_cast<const char*>(&numel), 8);
    f.write(reinterpret_cast<const char*>(c.data_ptr<float>()), numel * 4);
  }
  file.commit();
}

// Reads a checkpoint into `ts` (shapes must match). Returns the step.
int64_t read_checkpoint(const std::string& path, std::vector<at::Tensor>& ts) {
  std::ifstream f(path, std::ios::binary);
  char magic[8];
  int64_t step = 0, n = 0;
  f.read(magic, 8);
  f.read(reinterpret_cast<char*>(&step), 8);
  f.read(reinterpret_cast<char*>(&n), 8);
  if (!f || std::memcmp(magic, kMagic, 8) != 0 || n != static_cast<int64_t>(ts.size()))
    throw Error(ErrorCode::kInvalidArgument,
                "'" + path + "' is not a checkpoint of this training run",
                "delete it or train without resume");
  for (at::Tensor& t : ts) {
    int64_t numel = 0;
    f.read(reinterpret_cast<char*>(&numel), 8);
    if (!f || numel != t.numel())
      throw Error(ErrorCode::kInvalidArgument,
                  "checkpoint '" + path + "' does not match the model's shapes");
    at::Tensor buf = at::empty({numel}, at::kFloat);
    f.read(reinterpret_cast<char*>(buf.data_ptr<float>()), numel * 4);
    if (!f) throw Error(ErrorCode::kInvalidArgument, "checkpoint '" + path + "' is truncated");
    at::NoGradGuard ng;
    t.view({-1}).copy_(buf);
  }
  return step;
}

}  // namespace

double scheduled_lr(const TrainOptions& o, int64_t step, int64_t total) {
  const int64_t warm = static_cast<int64_t>(std::ceil(o.warmup_fraction * double(total)));
  if (step < warm) return o.learning_rate * double(step + 1) / double(warm);
  const double t = double(step - warm) / double(std::max<int64_t>(1, total - warm));
  return o.learning_rate * 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, t)));
}

int64_t train_loop(std::vector<at::Tensor>& params, int64_t n_examples,
                   const std::function<at::Tensor(const std::vector<int64_t>& batch)>& loss_fn,
                   const TrainOptions& o) {
  if (n_examples <= 0 || o.batch_size <= 0 || o.epochs <= 0)
    throw Error(ErrorCode::kInvalidArgument, "training needs examples, a batch size and epochs");
  const int64_t per_epoch = (n_examples + o.batch_size - 1) / o.batch_size;
  const int64_t total = per_epoch * o.epochs;
  std::vector<at::Tensor> m, v;
  for (at::Tensor& p : params) {
    p.requires_grad_(true);
    m.push_back(at::zeros_like(p.detach()));
    v.push_back(at::zeros_like(p.detach()));
  }
  int64_t step = 0;
  auto state = [&]() {
    std::vector<at::Tensor> all = params;
    all.insert(all.end(), m.begin(), m.end());
    all.insert(all.end(), v.begin(), v.end());
    return all;
  };
  if (o.resume && !o.checkpoint.empty() && std::ifstream(o.checkpoint).good()) {
    std::vector<at::Tensor> all = state();
    step = read_checkpoint(o.checkpoint, all);
  }
  const int64_t start_step = step;
  auto last_write = std::chrono::steady_clock::now();
  auto save = [&]() {
    write_checkpoint(o.checkpoint, step, state());
    last_write = std::chrono::steady_clock::now();
  };
  auto cancelled = [&](const std::string& why) {
    std::string msg = why + " at step " + std::to_string(step) + " of " + std::to_string(total);
    if (!o.checkpoint.empty() && step > start_step) {
      save();
      msg += "; the checkpoint '" + o.checkpoint + "' holds the finished steps";
    } else if (!o.checkpoint.empty() && std::ifstream(o.checkpoint).good()) {
      msg += "; the checkpoint '" + o.checkpoint + "' is unchanged";
    }
    return Error(ErrorCode::kCancelled, msg,
                 o.checkpoint.empty() ? "" : "resume from the checkpoint to continue");
  };
  std::vector<int64_t> order;
  int64_t order_epoch = -1;
  at::AutoGradMode grad(true);
  while (step < total) {
    if (is_cancelled(o.cancel)) throw cancelled("training interrupted");
    const int64_t epoch = step / per_epoch, b = step % per_epoch;
    if (epoch != order_epoch) {
      order.resize(n_examples);
      for (int64_t i = 0; i < n_examples; ++i) order[i] = i;
      std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch) + 1);
      for (int64_t i = n_examples; i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
      order_epoch = epoch;
    }
    std::vector<int64_t> batch(order.begin() + b * o.batch_size,
                               order.begin() + std::min(n_examples, (b + 1) * o.batch_size));
    for (at::Tensor& p : params)
      if (p.grad().defined()) p.mutable_grad().zero_();
    at::Tensor loss = loss_fn(batch);
    loss.backward();
    const double lr = scheduled_lr(o, step, total);
    {
      at::NoGradGuard ng;
      if (o.clip_norm > 0) {
        double sq = 0;
        for (at::Tensor& p : params)
          if (p.grad().defined()) sq += p.grad().pow(2).sum().item<double>();
        double norm = std::sqrt(sq);
        if (norm > o.clip_norm)
          for (at::Tensor& p : params)
            if (p.grad().defined()) p.mutable_grad().mul_(o.clip_norm / (norm + 1e-12));
      }
      const double bc1 = 1 - std::pow(o.beta1, double(step + 1));
      const double bc2 = 1 - std::pow(o.beta2, double(step + 1));
      for (size_t i = 0; i < params.size(); ++i) {
        at::Tensor& p = params[i];
        if (!p.grad().defined()) continue;
        const at::Tensor& g = p.grad();
        p.mul_(1 - lr * o.weight_decay);
        m[i].mul_(o.beta1).add_(g, 1 - o.beta1);
        v[i].mul_(o.beta2).addcmul_(g, g, 1 - o.beta2);
        at::Tensor denom = (v[i] / bc2).sqrt_().add_(o.eps);
        p.addcdiv_(m[i], denom, -lr / bc1);
      }
    }
    ++step;
    if (o.progress) {
      TrainProgress pr;
      pr.step = step;
      pr.total_steps = total;
      pr.loss = loss.item<double>();
      pr.learning_rate = lr;
      pr.start_step = start_step;
      if (!o.progress(pr)) throw cancelled("training cancelled");
    }
    const bool stop = o.stop_after_steps >= 0 && step >= o.stop_after_steps;
    const bool due =
        o.checkpoint_seconds > 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - last_write).count() >=
            o.checkpoint_seconds;
    if (!o.checkpoint.empty() &&
        ((o.checkpoint_every > 0 && step % o.checkpoint_every == 0) || step == total || stop ||
         due))
      save();
    if (stop) break;
  }
  for (at::Tensor& p : params) {
    p.requires_grad_(false);
    p.mutable_grad() = at::Tensor();
  }
  return step;
}

}  // namespace candor::train
