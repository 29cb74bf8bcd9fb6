// Helpers shared by the sampling tests: reproducible random logits and a chi-square statistic.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "sampling/random.h"

namespace servelab::testing {

/// [vocab] logits uniform in [-scale, scale), from our own portable generator so the same seed
/// gives the same logits everywhere. Never all zeros.
inline std::vector<float> random_logits(int32_t vocab_size, uint64_t seed, float scale = 5.0f) {
  RandomGenerator generator(seed);
  std::vector<float> logits(vocab_size);
  for (float& logit : logits)
    logit = static_cast<float>((2.0 * generator.uniform01() - 1.0) * scale);
  return logits;
}

/// Logits whose softmax is `probabilities` (up to rounding): log(p).
inline std::vector<float> logits_for(const std::vector<double>& probabilities) {
  std::vector<float> logits;
  for (double probability : probabilities)
    logits.push_back(static_cast<float>(std::log(probability)));
  return logits;
}

/// Pearson's chi-square statistic of `counts` against `probabilities`, over the bins with
/// expected probability > 0 (the caller checks separately that the others stay at 0).
inline double chi_square(const std::vector<int64_t>& counts,
                         const std::vector<double>& probabilities) {
  int64_t total = 0;
  for (int64_t count : counts) total += count;
  double statistic = 0.0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (probabilities[i] <= 0.0) continue;
    const double expected = probabilities[i] * static_cast<double>(total);
    statistic += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  return statistic;
}

}  // namespace servelab::testing
