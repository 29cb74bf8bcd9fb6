#include "sampling/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "common/error.h"
#include "sampling/random.h"
#include "sampling_test_helpers.h"

namespace servelab {
namespace {

using testing::chi_square;
using testing::logits_for;
using testing::random_logits;

SamplingParams params_with(float temperature, int32_t top_k, float top_p, uint64_t seed,
                           float repetition_penalty = 1.0f) {
  SamplingParams params;
  params.temperature = temperature;
  params.top_k = top_k;
  params.top_p = top_p;
  params.seed = seed;
  params.repetition_penalty = repetition_penalty;
  return params;
}

int32_t sample_once(Sampler& sampler, const std::vector<float>& logits,
                    const std::vector<int32_t>& previous = {}) {
  return sampler.sample(logits.data(), static_cast<int32_t>(logits.size()), previous);
}

// `draws` tokens from one sampler on fixed logits, counted per token.
std::vector<int64_t> sample_counts(const SamplingParams& params, const std::vector<float>& logits,
                                   int draws) {
  Sampler sampler(params);
  std::vector<int64_t> counts(logits.size(), 0);
  for (int i = 0; i < draws; ++i) ++counts[sample_once(sampler, logits)];
  return counts;
}

// Chi-square critical values at significance 0.001 (a correct sampler fails one seed in 1000;
// the seeds are fixed, so the tests are deterministic). Degrees of freedom = bins - 1.
constexpr double kChiSquare001[] = {0.0, 10.83, 13.82, 16.27, 18.47};

// Checks counts against the expected distribution: chi-square, plus every bin within 5 binomial
// standard deviations, plus bins with probability 0 never hit.
void expect_matches_distribution(const std::vector<int64_t>& counts,
                                 const std::vector<double>& expected, int draws) {
  int nonzero_bins = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (expected[i] == 0.0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " has probability 0 but was sampled";
      continue;
    }
    ++nonzero_bins;
    const double mean = expected[i] * draws;
    const double std_dev = std::sqrt(draws * expected[i] * (1.0 - expected[i]));
    EXPECT_NEAR(static_cast<double>(counts[i]), mean, 5.0 * std_dev) << "token " << i;
  }
  ASSERT_LE(nonzero_bins, 5);
  if (nonzero_bins >= 2) {
    EXPECT_LT(chi_square(counts, expected), kChiSquare001[nonzero_bins - 1]);
  }
}

const std::vector<double> kDistribution = {0.5, 0.25, 0.15, 0.1};
constexpr int kDraws = 20000;

TEST(Sampler, SamplesMatchTheModelDistribution) {
  const std::vector<int64_t> counts =
      sample_counts(params_with(1.0f, 0, 1.0f, 2024), logits_for(kDistribution), kDraws);
  expect_matches_distribution(counts, kDistribution, kDraws);
}

TEST(Sampler, TemperatureReshapesTheDistributionAsPToTheOneOverT) {
  // T = 0.5: p_i^2 / sum_j p_j^2.
  double sum = 0.0;
  for (double p : kDistribution) sum += p * p;
  std::vector<double> expected;
  for (double p : kDistribution) expected.push_back(p * p / sum);
  const std::vector<int64_t> counts =
      sample_counts(params_with(0.5f, 0, 1.0f, 77), logits_for(kDistribution), kDraws);
  expect_matches_distribution(counts, expected, kDraws);
}

TEST(Sampler, TopKRenormalisesOverTheSurvivors) {
  const std::vector<int64_t> counts =
      sample_counts(params_with(1.0f, 2, 1.0f, 5), logits_for(kDistribution), kDraws);
  expect_matches_distribution(counts, {2.0 / 3.0, 1.0 / 3.0, 0.0, 0.0}, kDraws);
}

TEST(Sampler, TopPRenormalisesOverTheNucleus) {
  // top_p 0.8: 0.5 + 0.25 = 0.75 < 0.8, so 0.15 joins; 0.1 goes.
  const std::vector<int64_t> counts =
      sample_counts(params_with(1.0f, 0, 0.8f, 6), logits_for(kDistribution), kDraws);
  expect_matches_distribution(counts, {0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9, 0.0}, kDraws);
}

TEST(Sampler, TopPMeasuresItsNucleusAfterTopK) {
  // top_k 3 leaves 0.5, 0.25, 0.15 -> renormalised 0.556, 0.278, 0.167; top_p 0.8 then stops
  // after two (0.556 < 0.8 <= 0.833). Without top-k first it would keep three (see above).
  const std::vector<int64_t> counts =
      sample_counts(params_with(1.0f, 3, 0.8f, 8), logits_for(kDistribution), kDraws);
  expect_matches_distribution(counts, {2.0 / 3.0, 1.0 / 3.0, 0.0, 0.0}, kDraws);
}

TEST(Sampler, EachSampleDrawsExactlyOneNumberFromTheSeededGenerator) {
  // Two equally likely tokens: the token is 1 exactly when the draw is >= 0.5.
  Sampler sampler(params_with(1.0f, 0, 1.0f, 99));
  RandomGenerator generator(99);
  const std::vector<float> logits = {0.0f, 0.0f};
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(sample_once(sampler, logits), generator.uniform01() >= 0.5 ? 1 : 0) << "step " << i;
  }
}

TEST(Sampler, GreedyReturnsTheArgmaxWhateverTheSeedTopKAndTopP) {
  for (uint64_t seed = 0; seed < 10; ++seed) {
    const std::vector<float> logits = random_logits(1000, seed);
    Sampler plain(params_with(0.0f, 0, 1.0f, seed));
    Sampler filtered(params_with(0.0f, 5, 0.3f, seed + 100));
    for (int step = 0; step < 3; ++step) {
      EXPECT_EQ(sample_once(plain, logits), argmax(logits));
      EXPECT_EQ(sample_once(filtered, logits), argmax(logits));
    }
  }
}

TEST(Sampler, GreedyAppliesTheRepetitionPenalty) {
  const std::vector<float> logits = {3.0f, 2.9f, 1.0f};
  Sampler sampler(params_with(0.0f, 0, 1.0f, 0, 1.2f));
  EXPECT_EQ(sample_once(sampler, logits, {0}), 1);  // 3.0 / 1.2 = 2.5 < 2.9
  EXPECT_EQ(sample_once(sampler, logits, {}), 0);
}

TEST(Sampler, TinyTemperatureIsGreedy) {
  const std::vector<float> logits = random_logits(1000, 3);
  Sampler sampler(params_with(1e-7f, 0, 1.0f, 1));
  for (int step = 0; step < 5; ++step) EXPECT_EQ(sample_once(sampler, logits), argmax(logits));
}

TEST(Sampler, TopKOneEqualsGreedy) {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    std::vector<float> logits = random_logits(500, seed);
    logits[7] = logits[300] = 50.0f;  // a tie at the top: greedy takes the lower id
    Sampler sampler(params_with(1.5f, 1, 1.0f, seed, 1.1f));
    const std::vector<int32_t> previous = {1, 2, 3};
    std::vector<float> penalised = logits;
    apply_repetition_penalty(penalised, previous, 1.1f);
    EXPECT_EQ(sample_once(sampler, logits, previous), argmax(penalised));
    EXPECT_EQ(argmax(penalised), 7);
  }
}

TEST(Sampler, TinyTopPEqualsGreedy) {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const std::vector<float> logits = random_logits(500, seed, 0.5f);  // flat: many close values
    Sampler sampler(params_with(2.0f, 0, 1e-6f, seed));
    EXPECT_EQ(sample_once(sampler, logits), argmax(logits));
  }
}

TEST(Sampler, SameSeedGivesTheSameSequence) {
  const SamplingParams params = params_with(1.0f, 40, 0.95f, 1234, 1.1f);
  Sampler first(params), second(params);
  std::vector<int32_t> history = {5, 6};
  for (int step = 0; step < 200; ++step) {
    const std::vector<float> logits = random_logits(100, step, 2.0f);
    const int32_t token = sample_once(first, logits, history);
    ASSERT_EQ(sample_once(second, logits, history), token) << "step " << step;
    history.push_back(token);
  }
}

TEST(Sampler, DifferentSeedsGiveDifferentSequences) {
  Sampler first(params_with(1.0f, 0, 1.0f, 1)), second(params_with(1.0f, 0, 1.0f, 2));
  int differing = 0;
  for (int step = 0; step < 200; ++step) {
    const std::vector<float> logits = random_logits(50, step, 0.5f);  // ~uniform over 50
    if (sample_once(first, logits) != sample_once(second, logits)) ++differing;
  }
  // Independent draws from ~50 tokens agree about 1 time in 50.
  EXPECT_GT(differing, 150);
}

TEST(Sampler, OutputDoesNotDependOnOtherRequestsSampledInBetween) {
  const SamplingParams params = params_with(0.8f, 20, 0.9f, 42);
  std::vector<int32_t> alone;
  {
    Sampler sampler(params);
    for (int step = 0; step < 100; ++step) {
      alone.push_back(sample_once(sampler, random_logits(64, step)));
    }
  }
  // The same request in a "batch" with two others, sampled in a varying order at each step.
  Sampler request(params);
  Sampler neighbour_a(params_with(1.0f, 0, 1.0f, 42)), neighbour_b(params_with(1.3f, 5, 1.0f, 7));
  for (int step = 0; step < 100; ++step) {
    const std::vector<float> logits = random_logits(64, step);
    if (step % 2 == 0) sample_once(neighbour_a, random_logits(64, 500 + step));
    ASSERT_EQ(sample_once(request, logits), alone[step]) << "step " << step;
    if (step % 3 == 0) sample_once(neighbour_b, random_logits(64, 900 + step));
  }
}

TEST(Sampler, NeverSamplesATokenTheFiltersRemoved) {
  const std::vector<float> logits = random_logits(200, 17);
  std::vector<float> allowed = logits;
  top_k_filter(allowed, 10);
  Sampler sampler(params_with(1.0f, 10, 1.0f, 3));
  for (int step = 0; step < 2000; ++step) {
    ASSERT_TRUE(std::isfinite(allowed[sample_once(sampler, logits)]));
  }
}

TEST(Sampler, RejectsBadLogitsAndTokenIds) {
  Sampler sampler(params_with(1.0f, 0, 1.0f, 0, 1.2f));
  const std::vector<float> good = {1.0f, 2.0f};
  EXPECT_THROW(sampler.sample(nullptr, 2, {}), Error);
  EXPECT_THROW(sampler.sample(good.data(), 0, {}), Error);
  EXPECT_THROW(sample_once(sampler, {1.0f, std::numeric_limits<float>::quiet_NaN()}), Error);
  EXPECT_THROW(sample_once(sampler, {1.0f, std::numeric_limits<float>::infinity()}), Error);
  EXPECT_THROW(sample_once(sampler, good, {2}), Error);
  // A masked (-inf) token is fine and is never chosen.
  EXPECT_EQ(sample_once(sampler, {-std::numeric_limits<float>::infinity(), 0.0f}), 1);
}

TEST(Sampler, ConstructorValidatesTheParams) {
  EXPECT_THROW(Sampler(params_with(-1.0f, 0, 1.0f, 0)), Error);
  EXPECT_THROW(Sampler(params_with(1.0f, -2, 1.0f, 0)), Error);
  EXPECT_THROW(Sampler(params_with(1.0f, 0, 0.0f, 0)), Error);
  EXPECT_THROW(Sampler(params_with(1.0f, 0, 1.0f, 0, 0.0f)), Error);
}

}  // namespace
}  // namespace servelab
