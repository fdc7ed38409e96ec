// Hilum training: AdamW, cosine schedule, gradient clipping (see optim.hpp).
//
// The update mirrors torch.optim.AdamW (torch 1.13, single-tensor path) operation by operation in
// float32, with the scalars (bias corrections, step size, 1 - lr * wd) computed in double as
// Python does, so the results agree with PyTorch to float rounding.
#include "hilum/training/optim.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <map>
#include <numbers>
#include <stdexcept>
#include <string>
#include <utility>

#include "hilum/inference/safetensors.hpp"

namespace hilum::training {

namespace {

using inference::Error;
using inference::ErrorKind;

// The Eigen shape of every tensor of `w`, keyed by its data pointer (ParamRef carries no shape).
std::map<const float*, std::vector<std::int64_t>> shapes_of(const ViTWeights& w) {
  std::map<const float*, std::vector<std::int64_t>> out;
  const auto matrix = [&](const Matrix& m) {
    if (m.size() > 0) out[m.data()] = {static_cast<std::int64_t>(m.rows()), static_cast<std::int64_t>(m.cols())};
  };
  const auto vector = [&](const Vector& v) {
    if (v.size() > 0) out[v.data()] = {static_cast<std::int64_t>(v.size())};
  };
  const auto linear = [&](const inference::Linear& l) {
    matrix(l.w);
    vector(l.b);
  };
  const auto norm = [&](const inference::LayerNorm& n) {
    vector(n.gamma);
    vector(n.beta);
  };
  matrix(w.patch_w);
  vector(w.patch_b);
  vector(w.cls_token);
  matrix(w.position);
  for (const auto& b : w.blocks) {
    norm(b.ln_before);
    linear(b.query);
    linear(b.key);
    linear(b.value);
    linear(b.attn_out);
    norm(b.ln_after);
    linear(b.fc1);
    linear(b.fc2);
  }
  norm(w.final_ln);
  if (w.has_classifier) linear(w.classifier);
  return out;
}

std::string moment_name(const char* which, const std::string& param) { return std::string(which) + "." + param; }

}  // namespace

AdamW::AdamW(const ViTWeights& like, AdamWOptions options)
    : options_(options), m_(zeros_like(like)), v_(zeros_like(like)) {
  trainable_.assign(parameters(m_).size(), true);
}

void AdamW::set_trainable(std::vector<bool> trainable) {
  const std::size_t count = parameters(m_).size();
  if (trainable.size() != count)
    throw std::invalid_argument("AdamW::set_trainable: expected " + std::to_string(count) + " flags, got " +
                                std::to_string(trainable.size()));
  trainable_ = std::move(trainable);
}

void AdamW::step(ViTWeights& weights, ViTWeights& grads, float lr) {
  const std::vector<ParamRef> p = parameters(weights);
  const std::vector<ParamRef> g = parameters(grads);
  const std::vector<ParamRef> m = parameters(m_);
  const std::vector<ParamRef> v = parameters(v_);
  if (p.size() != m.size() || g.size() != m.size() || v.size() != m.size())
    throw std::invalid_argument("AdamW::step: weights, gradients and optimizer state have different tensors");
  for (std::size_t k = 0; k < p.size(); ++k)
    if (p[k].size != m[k].size || g[k].size != m[k].size)
      throw std::invalid_argument("AdamW::step: tensor " + p[k].name + " does not match the optimizer state");

  ++step_;
  const double beta1 = options_.beta1;
  const double beta2 = options_.beta2;
  const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(step_));
  const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(beta2, static_cast<double>(step_)));
  const float b1 = options_.beta1;
  const float b2 = options_.beta2;
  const auto one_minus_b1 = static_cast<float>(1.0 - beta1);
  const auto one_minus_b2 = static_cast<float>(1.0 - beta2);
  const auto bc2_sqrt = static_cast<float>(bias_correction2_sqrt);
  const float eps = options_.eps;
  const int layers = static_cast<int>(weights.blocks.size());

  for (std::size_t k = 0; k < p.size(); ++k) {
    if (!trainable_[k]) continue;
    const double layer_scale =
        std::pow(static_cast<double>(options_.layer_decay), static_cast<double>(layers + 1 - std::min(p[k].depth, layers + 1)));
    const double group_lr = static_cast<double>(lr) * layer_scale;
    float* param = p[k].data;
    const float* grad = g[k].data;
    float* exp_avg = m[k].data;
    float* exp_avg_sq = v[k].data;
    const std::size_t n = p[k].size;
    if (p[k].decay && options_.weight_decay != 0.0f) {
      const auto factor = static_cast<float>(1.0 - group_lr * static_cast<double>(options_.weight_decay));
      for (std::size_t i = 0; i < n; ++i) param[i] *= factor;
    }
    const auto neg_step_size = static_cast<float>(-(group_lr / bias_correction1));
    for (std::size_t i = 0; i < n; ++i) {
      const float gi = grad[i];
      exp_avg[i] = exp_avg[i] * b1 + one_minus_b1 * gi;
      exp_avg_sq[i] = exp_avg_sq[i] * b2 + one_minus_b2 * gi * gi;
      const float denom = std::sqrt(exp_avg_sq[i]) / bc2_sqrt + eps;
      param[i] = param[i] + neg_step_size * exp_avg[i] / denom;
    }
  }
}

inference::Status AdamW::save(const std::filesystem::path& file) const {
  // parameters() needs mutable access; the tensors are only read here.
  auto& m = const_cast<ViTWeights&>(m_);
  auto& v = const_cast<ViTWeights&>(v_);
  const std::vector<ParamRef> mp = parameters(m);
  const std::vector<ParamRef> vp = parameters(v);
  const auto m_shapes = shapes_of(m_);
  const auto v_shapes = shapes_of(v_);
  std::vector<inference::TensorToWrite> tensors;
  tensors.reserve(2 * mp.size());
  for (std::size_t k = 0; k < mp.size(); ++k) {
    if (mp[k].size == 0) continue;
    const auto ms = m_shapes.find(mp[k].data);
    const auto vs = v_shapes.find(vp[k].data);
    inference::TensorToWrite tm;
    tm.name = moment_name("exp_avg", mp[k].name);
    tm.shape = ms != m_shapes.end() ? ms->second : std::vector<std::int64_t>{static_cast<std::int64_t>(mp[k].size)};
    tm.data = mp[k].data;
    inference::TensorToWrite tv;
    tv.name = moment_name("exp_avg_sq", vp[k].name);
    tv.shape = vs != v_shapes.end() ? vs->second : std::vector<std::int64_t>{static_cast<std::int64_t>(vp[k].size)};
    tv.data = vp[k].data;
    tensors.push_back(std::move(tm));
    tensors.push_back(std::move(tv));
  }
  std::map<std::string, std::string> metadata{{"format", "pt"},
                                              {"optimizer", "AdamW"},
                                              {"step", std::to_string(step_)}};
  return inference::write_safetensors(file, tensors, metadata);
}

inference::Status AdamW::load(const std::filesystem::path& file) {
  auto opened = inference::SafetensorsFile::open(file);
  if (!opened) return opened.error();
  const inference::SafetensorsFile& st = *opened;
  const auto bad = [&](const std::string& why) {
    return Error{ErrorKind::Invalid, "the optimizer state " + file.string() + " does not fit this model: " + why};
  };
  const auto step_it = st.metadata().find("step");
  if (step_it == st.metadata().end()) return bad("it records no step count");
  std::int64_t step = 0;
  try {
    std::size_t used = 0;
    step = std::stoll(step_it->second, &used);
    if (used != step_it->second.size() || step < 0) return bad("its step count \"" + step_it->second + "\" is not a number");
  } catch (const std::exception&) {
    return bad("its step count \"" + step_it->second + "\" is not a number");
  }

  // Read everything into copies first: the state changes only when the whole file fits.
  ViTWeights m = m_;
  ViTWeights v = v_;
  const std::vector<ParamRef> mp = parameters(m);
  const std::vector<ParamRef> vp = parameters(v);
  const auto m_shapes = shapes_of(m);
  const auto v_shapes = shapes_of(v);
  std::size_t expected = 0;
  for (std::size_t k = 0; k < mp.size(); ++k) {
    if (mp[k].size == 0) continue;
    for (int which = 0; which < 2; ++which) {
      const ParamRef& ref = which == 0 ? mp[k] : vp[k];
      const auto& shapes = which == 0 ? m_shapes : v_shapes;
      const auto s = shapes.find(ref.data);
      const std::vector<std::int64_t> shape =
          s != shapes.end() ? s->second : std::vector<std::int64_t>{static_cast<std::int64_t>(ref.size)};
      const std::string name = moment_name(which == 0 ? "exp_avg" : "exp_avg_sq", ref.name);
      if (st.find(name) == nullptr) return bad("tensor " + name + " is missing");
      auto data = st.read_f32(name, shape);
      if (!data) return bad(data.error().message);
      if (data->size() != ref.size) return bad("tensor " + name + " has the wrong size");
      std::copy(data->begin(), data->end(), ref.data);
      ++expected;
    }
  }
  if (st.tensors().size() != expected)
    return bad("it holds " + std::to_string(st.tensors().size()) + " tensors, this model needs " + std::to_string(expected));
  m_ = std::move(m);
  v_ = std::move(v);
  step_ = step;
  return core::Done{};
}

float cosine_lr(std::int64_t step, std::int64_t total, std::int64_t warmup, float base_lr, float min_lr) {
  if (step < 0) step = 0;
  if (warmup > 0 && step < warmup)
    return static_cast<float>(static_cast<double>(base_lr) * static_cast<double>(step) / static_cast<double>(warmup));
  const std::int64_t span = std::max<std::int64_t>(1, total - std::max<std::int64_t>(warmup, 0));
  const double progress = std::clamp(static_cast<double>(step - std::max<std::int64_t>(warmup, 0)) / static_cast<double>(span), 0.0, 1.0);
  const double cosine = 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  return static_cast<float>(static_cast<double>(min_lr) + (static_cast<double>(base_lr) - static_cast<double>(min_lr)) * cosine);
}

float clip_grad_norm(ViTWeights& grads, float max_norm) {
  const double norm = std::sqrt(squared_norm(grads));
  // As torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6), applied when < 1.
  // A non-finite norm leaves the gradients untouched (the caller should skip the step).
  if (std::isfinite(norm)) {
    const double coef = static_cast<double>(max_norm) / (norm + 1e-6);
    if (coef < 1.0) scale(grads, static_cast<float>(coef));
  }
  return static_cast<float>(norm);
}

}  // namespace hilum::training
