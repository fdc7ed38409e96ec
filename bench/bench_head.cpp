// Hilum training: the `head` strategy's refit on cached embeddings (issue 5). fit_head on random
// 10,000 x {192, 768} embeddings (ViT-Ti / ViT-B widths) with 15 findings, logistic and linear SVM.
//   OMP_NUM_THREADS=2 build/bench/bench_head [--benchmark_repetitions=5 ...]
// Data: standard-normal embeddings; finding j is drawn from a planted logistic model with
// prevalence from 2% to 30% (the 2% column is the slow one: balancing weighs its positives 25x);
// 10% of the labels are masked. Default HeadOptions (balanced, l2 1e-3, tolerance 1e-6).
// Each benchmark reports the median of the repetitions (default 5) as wall time, the Newton
// iterations summed over the findings.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "hilum/training/head.hpp"

namespace {

using hilum::training::HeadOptions;
using hilum::training::Matrix;

struct Data {
  Matrix x;
  Matrix targets;
  Matrix mask;
};

const Data& data(int dim) {
  static std::vector<std::pair<int, Data>> cache;
  for (const auto& [d, v] : cache)
    if (d == dim) return v;
  const int n = 10000;
  const int m = 15;
  std::mt19937_64 rng(static_cast<std::uint64_t>(dim));
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> uniform;
  Data out;
  out.x.resize(n, dim);
  for (Eigen::Index i = 0; i < out.x.size(); ++i) out.x.data()[i] = normal(rng);
  Matrix beta(dim, m);
  for (Eigen::Index i = 0; i < beta.size(); ++i) beta.data()[i] = normal(rng) * 2.0f / std::sqrt(static_cast<float>(dim));
  const Matrix z = out.x * beta;
  out.targets.resize(n, m);
  out.mask = Matrix::Ones(n, m);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < m; ++j) {
      const float prevalence = 0.02f + 0.28f * static_cast<float>(j) / static_cast<float>(m - 1);
      const float logit = z(i, j) + std::log(prevalence / (1.0f - prevalence));
      out.targets(i, j) = uniform(rng) < 1.0f / (1.0f + std::exp(-logit)) ? 1.0f : 0.0f;
      if (uniform(rng) < 0.1f) out.mask(i, j) = 0.0f;
    }
  }
  cache.emplace_back(dim, std::move(out));
  return cache.back().second;
}

void BM_FitHead(benchmark::State& state) {
  const int dim = static_cast<int>(state.range(0));
  HeadOptions options;
  options.kind = state.range(1) == 0 ? HeadOptions::Kind::Logistic : HeadOptions::Kind::LinearSvm;
  const Data& d = data(dim);
  int iterations = 0;
  for (auto _ : state) {
    auto fit = hilum::training::fit_head(d.x, d.targets, d.mask, options);
    iterations = 0;
    for (const int it : fit.iterations) iterations += it;
    benchmark::DoNotOptimize(fit);
  }
  state.counters["newton_iterations"] = iterations;
  state.SetLabel(options.kind == HeadOptions::Kind::Logistic ? "logistic" : "linear_svm");
}

BENCHMARK(BM_FitHead)
    ->ArgNames({"dim", "svm"})
    ->Args({192, 0})
    ->Args({768, 0})
    ->Args({192, 1})
    ->Args({768, 1})
    ->Iterations(1)
    ->Repetitions(5)
    ->ReportAggregatesOnly(true)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
