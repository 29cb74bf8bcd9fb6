#include "sampling/logits_processors.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "common/error.h"
#include "sampling/random.h"
#include "sampling_test_helpers.h"

namespace servelab {
namespace {

using testing::logits_for;
using testing::random_logits;

constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Token ids whose logit is still finite, ascending.
std::vector<int32_t> kept_tokens(const std::vector<float>& logits) {
  std::vector<int32_t> kept;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isfinite(logits[i])) kept.push_back(static_cast<int32_t>(i));
  }
  return kept;
}

// ---- repetition penalty ---------------------------------------------------------------------

TEST(RepetitionPenalty, DividesPositiveAndMultipliesNegativeLogits) {
  std::vector<float> logits = {2.0f, -2.0f, 0.0f, 1.0f};
  apply_repetition_penalty(logits, {0, 1, 2}, 2.0f);
  EXPECT_EQ(logits, (std::vector<float>{1.0f, -4.0f, 0.0f, 1.0f}));
}

TEST(RepetitionPenalty, PenaltyBelowOneRaisesSeenTokensOfEitherSign) {
  std::vector<float> logits = {2.0f, -2.0f, 1.0f};
  apply_repetition_penalty(logits, {0, 1}, 0.5f);
  EXPECT_EQ(logits, (std::vector<float>{4.0f, -1.0f, 1.0f}));
}

TEST(RepetitionPenalty, PenalisesATokenSeenManyTimesOnce) {
  std::vector<float> logits = {4.0f, -3.0f, 1.0f};
  apply_repetition_penalty(logits, {0, 1, 0, 0, 1}, 2.0f);
  EXPECT_EQ(logits, (std::vector<float>{2.0f, -6.0f, 1.0f}));
}

TEST(RepetitionPenalty, KeepsMaskedTokensMaskedAndPenaltyOneIsIdentity) {
  std::vector<float> logits = {kMinusInfinity, 3.0f, -1.0f};
  apply_repetition_penalty(logits, {0}, 1.3f);
  EXPECT_EQ(logits[0], kMinusInfinity);
  const std::vector<float> original = random_logits(64, 3);
  std::vector<float> unchanged = original;
  apply_repetition_penalty(unchanged, {1, 5, 9, 5}, 1.0f);
  EXPECT_EQ(unchanged, original);
}

// The reference is Hugging Face's RepetitionPenaltyLogitsProcessor written out literally:
//   score = torch.gather(scores, 1, input_ids)
//   score = torch.where(score < 0, score * penalty, score / penalty)
//   scores.scatter_(1, input_ids, score)
std::vector<float> hugging_face_repetition_penalty(const std::vector<float>& scores,
                                                   const std::vector<int32_t>& input_ids,
                                                   float penalty) {
  std::vector<float> gathered;
  for (int32_t id : input_ids) gathered.push_back(scores[id]);
  for (float& score : gathered) score = score < 0 ? score * penalty : score / penalty;
  std::vector<float> result = scores;
  for (size_t i = 0; i < input_ids.size(); ++i) result[input_ids[i]] = gathered[i];
  return result;
}

TEST(RepetitionPenalty, MatchesHuggingFaceFormulaOnRandomLogits) {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const std::vector<float> logits = random_logits(100, seed);
    RandomGenerator generator(1000 + seed);
    std::vector<int32_t> previous;  // 60 draws from 100 ids: many repeats
    for (int i = 0; i < 60; ++i)
      previous.push_back(static_cast<int32_t>(generator.uniform01() * 100));
    for (float penalty : {1.3f, 0.7f}) {
      std::vector<float> ours = logits;
      apply_repetition_penalty(ours, previous, penalty);
      EXPECT_EQ(ours, hugging_face_repetition_penalty(logits, previous, penalty))
          << "seed " << seed << " penalty " << penalty;
    }
  }
}

TEST(RepetitionPenalty, RejectsTokenIdsOutsideTheVocabularyAndBadPenalties) {
  std::vector<float> logits = {1.0f, 2.0f, 3.0f, 4.0f};
  EXPECT_THROW(apply_repetition_penalty(logits, {4}, 1.2f), Error);
  EXPECT_THROW(apply_repetition_penalty(logits, {-1}, 1.2f), Error);
  EXPECT_THROW(apply_repetition_penalty(logits, {0}, 0.0f), Error);
  EXPECT_THROW(apply_repetition_penalty(logits, {0}, kNaN), Error);
  EXPECT_EQ(logits, (std::vector<float>{1.0f, 2.0f, 3.0f, 4.0f}));
}

// ---- argmax ---------------------------------------------------------------------------------

TEST(Argmax, ReturnsTheLargestAndTheLowestIndexOnTies) {
  EXPECT_EQ(argmax({1.0f, 3.0f, 2.0f}), 1);
  EXPECT_EQ(argmax({-5.0f, -1.0f, -1.0f, -3.0f}), 1);
  EXPECT_EQ(argmax({7.0f}), 0);
  EXPECT_EQ(argmax({kMinusInfinity, -1e30f}), 1);
}

TEST(Argmax, AgreesWithFirstMaxElementOnRandomLogits) {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const std::vector<float> logits = random_logits(1000, seed);
    EXPECT_EQ(argmax(logits), std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
}

TEST(Argmax, RejectsEmptyAndNaN) {
  EXPECT_THROW(argmax({}), Error);
  EXPECT_THROW(argmax({1.0f, kNaN}), Error);
}

// ---- temperature ----------------------------------------------------------------------------

TEST(Temperature, DividesEveryLogit) {
  std::vector<float> logits = {2.0f, -4.0f, 1.0f, kMinusInfinity};
  apply_temperature(logits, 2.0f);
  EXPECT_EQ(logits, (std::vector<float>{1.0f, -2.0f, 0.5f, kMinusInfinity}));
}

TEST(Temperature, BelowOneSharpensAndAboveOneFlattens) {
  const std::vector<float> logits = random_logits(50, 11);
  const std::vector<float> base_probabilities = softmax(logits);
  const float base = *std::max_element(base_probabilities.begin(), base_probabilities.end());
  std::vector<float> cold = logits, hot = logits;
  apply_temperature(cold, 0.5f);
  apply_temperature(hot, 2.0f);
  const std::vector<float> cold_probabilities = softmax(cold), hot_probabilities = softmax(hot);
  EXPECT_GT(*std::max_element(cold_probabilities.begin(), cold_probabilities.end()), base);
  EXPECT_LT(*std::max_element(hot_probabilities.begin(), hot_probabilities.end()), base);
}

TEST(Temperature, RejectsZeroNegativeAndNaN) {
  std::vector<float> logits = {1.0f};
  EXPECT_THROW(apply_temperature(logits, 0.0f), Error);
  EXPECT_THROW(apply_temperature(logits, -1.0f), Error);
  EXPECT_THROW(apply_temperature(logits, kNaN), Error);
}

// ---- softmax --------------------------------------------------------------------------------

TEST(Softmax, HandCheckedValues) {
  const std::vector<float> equal = softmax({1.0f, 1.0f, 1.0f, 1.0f});
  for (float probability : equal) EXPECT_FLOAT_EQ(probability, 0.25f);
  const std::vector<float> quarter = softmax({0.0f, std::log(3.0f)});
  EXPECT_NEAR(quarter[0], 0.25f, 1e-7f);
  EXPECT_NEAR(quarter[1], 0.75f, 1e-7f);
  const std::vector<float> masked = softmax({kMinusInfinity, 2.0f, kMinusInfinity});
  EXPECT_EQ(masked, (std::vector<float>{0.0f, 1.0f, 0.0f}));
}

TEST(Softmax, SumsToOneAndKeepsRatiosOnRandomLogits) {
  for (uint64_t seed = 0; seed < 10; ++seed) {
    const std::vector<float> logits = random_logits(500, seed, 10.0f);
    const std::vector<float> probabilities = softmax(logits);
    EXPECT_NEAR(std::accumulate(probabilities.begin(), probabilities.end(), 0.0), 1.0, 1e-5);
    // p_i / p_0 = exp(l_i - l_0)
    for (size_t i = 1; i < logits.size(); ++i) {
      const double expected = std::exp(static_cast<double>(logits[i]) - logits[0]);
      const double ratio = static_cast<double>(probabilities[i]) / probabilities[0];
      ASSERT_NEAR(ratio, expected, 1e-6 + 1e-5 * expected) << "token " << i;
    }
  }
}

TEST(Softmax, DoesNotOverflowOnLargeLogits) {
  const std::vector<float> logits = random_logits(100, 5);
  std::vector<float> shifted = logits;
  for (float& logit : shifted) logit += 1000.0f;  // exp(1000) is inf in float
  const std::vector<float> expected = softmax(logits), actual = softmax(shifted);
  for (size_t i = 0; i < logits.size(); ++i) {
    EXPECT_NEAR(actual[i], expected[i], 1e-6f + 1e-3f * expected[i]);
  }
}

TEST(Softmax, RejectsEmptyAllMaskedNaNAndPlusInfinity) {
  EXPECT_THROW(softmax({}), Error);
  EXPECT_THROW(softmax({kMinusInfinity, kMinusInfinity}), Error);
  EXPECT_THROW(softmax({0.0f, kNaN}), Error);
  EXPECT_THROW(softmax({0.0f, std::numeric_limits<float>::infinity()}), Error);
}

// ---- top-k ----------------------------------------------------------------------------------

TEST(TopK, KeepsTheKLargestLogitsUnchanged) {
  std::vector<float> logits = {1.0f, 5.0f, 3.0f, 4.0f, 2.0f};
  top_k_filter(logits, 2);
  EXPECT_EQ(logits,
            (std::vector<float>{kMinusInfinity, 5.0f, kMinusInfinity, 4.0f, kMinusInfinity}));
}

TEST(TopK, ZeroOrAtLeastVocabKeepsEverything) {
  const std::vector<float> original = random_logits(10, 1);
  for (int32_t top_k : {0, 10, 11}) {
    std::vector<float> logits = original;
    top_k_filter(logits, top_k);
    EXPECT_EQ(logits, original) << "top_k " << top_k;
  }
}

TEST(TopK, KeepsExactlyKOnTiesPreferringLowerIds) {
  std::vector<float> logits = {1.0f, 2.0f, 2.0f, 2.0f, 0.0f};
  top_k_filter(logits, 2);
  EXPECT_EQ(kept_tokens(logits), (std::vector<int32_t>{1, 2}));
}

TEST(TopK, KeptTokensAreTheLargestOnRandomLogits) {
  for (uint64_t seed = 0; seed < 10; ++seed) {
    const std::vector<float> original = random_logits(200, seed);
    std::vector<float> logits = original;
    top_k_filter(logits, 17);
    const std::vector<int32_t> kept = kept_tokens(logits);
    ASSERT_EQ(kept.size(), 17u);
    std::vector<float> sorted = original;
    std::sort(sorted.begin(), sorted.end(), std::greater<float>());
    for (int32_t token : kept) {
      EXPECT_GE(original[token], sorted[16]);
      EXPECT_EQ(logits[token], original[token]);
    }
  }
}

TEST(TopK, RejectsNegativeK) {
  std::vector<float> logits = {1.0f, 2.0f};
  EXPECT_THROW(top_k_filter(logits, -1), Error);
}

// ---- top-p ----------------------------------------------------------------------------------

// Probabilities 0.2, 0.5, 0.3 at token ids 0, 1, 2: sorted, that is 0.5 (id 1), 0.3 (id 2),
// 0.2 (id 0), with cumulative sums 0.5, 0.8, 1.0. Thresholds stay clear of those sums.
std::vector<int32_t> top_p_kept(float top_p) {
  std::vector<float> logits = logits_for({0.2, 0.5, 0.3});
  top_p_filter(logits, top_p);
  return kept_tokens(logits);
}

TEST(TopP, KeepsTheSmallestSetReachingTopP) {
  EXPECT_EQ(top_p_kept(0.3f), (std::vector<int32_t>{1}));
  EXPECT_EQ(top_p_kept(0.6f), (std::vector<int32_t>{1, 2}));  // 0.5 < 0.6: 0.3 crosses it
  EXPECT_EQ(top_p_kept(0.79f), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(top_p_kept(0.81f), (std::vector<int32_t>{0, 1, 2}));
}

// The same probabilities: entropy H = 1.0297 nats; -log p is 1.609 (id 0), 0.693 (id 1) and
// 1.204 (id 2), so the distances |-log p - H| are 0.580, 0.337 and 0.174: in typical order
// id 2 (0.3), id 1 (0.5), id 0 (0.2), with cumulative sums 0.3, 0.8, 1.0.
std::vector<int32_t> typical_kept(float mass) {
  std::vector<float> logits = logits_for({0.2, 0.5, 0.3});
  typical_filter(logits, mass);
  return kept_tokens(logits);
}

TEST(Typical, KeepsTheTokensClosestToTheEntropyNotTheMostLikely) {
  EXPECT_EQ(typical_kept(0.25f), (std::vector<int32_t>{2})) << "0.3 is more typical than 0.5";
  EXPECT_EQ(typical_kept(0.5f), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(typical_kept(0.85f), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(typical_kept(1.0f), (std::vector<int32_t>{0, 1, 2}));
}

TEST(Typical, MaskedTokensStayMaskedAndBadMassIsRefused) {
  std::vector<float> logits = logits_for({0.2, 0.5, 0.3});
  logits.push_back(-INFINITY);
  typical_filter(logits, 0.9f);
  EXPECT_EQ(kept_tokens(logits), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_THROW(typical_filter(logits, 0.0f), Error);
  EXPECT_THROW(typical_filter(logits, 1.5f), Error);
}

TEST(TopP, StopsWhenTheSumReachesTopPExactly) {
  // 0.25 each, exact in binary: two tokens reach 0.5, so a third is not added.
  std::vector<float> logits = {0.0f, 0.0f, 0.0f, 0.0f};
  top_p_filter(logits, 0.5f);
  EXPECT_EQ(kept_tokens(logits), (std::vector<int32_t>{0, 1}));
}

TEST(TopP, AlwaysKeepsTheMostLikelyToken) {
  EXPECT_EQ(top_p_kept(1e-6f), (std::vector<int32_t>{1}));
  std::vector<float> logits = random_logits(1000, 9, 0.1f);  // nearly flat: each p ~ 0.001
  top_p_filter(logits, 1e-6f);
  EXPECT_EQ(kept_tokens(logits), (std::vector<int32_t>{argmax(random_logits(1000, 9, 0.1f))}));
}

TEST(TopP, OneKeepsEveryToken) {
  const std::vector<float> original = random_logits(1000, 2, 20.0f);  // tail probabilities ~e-40
  std::vector<float> logits = original;
  top_p_filter(logits, 1.0f);
  EXPECT_EQ(logits, original);
}

TEST(TopP, IsStableForLargeLogits) {
  std::vector<float> logits = {1000.0f, 999.0f, 0.0f};  // ~0.73, 0.27, 0; exp(1000) overflows
  top_p_filter(logits, 0.8f);
  EXPECT_EQ(kept_tokens(logits), (std::vector<int32_t>{0, 1}));
}

TEST(TopP, BreaksTiesByLowerTokenId) {
  std::vector<float> logits = {0.0f, 0.0f, 0.0f, 0.0f};  // each 0.25
  top_p_filter(logits, 0.3f);
  EXPECT_EQ(kept_tokens(logits), (std::vector<int32_t>{0, 1}));
}

TEST(TopP, KeptSetIsTheMinimalPrefixOnRandomLogits) {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const std::vector<float> original = random_logits(300, seed, 3.0f);
    const std::vector<float> probabilities = softmax(original);
    for (float top_p : {0.1f, 0.5f, 0.9f, 0.99f}) {
      std::vector<float> logits = original;
      top_p_filter(logits, top_p);
      const std::vector<int32_t> kept = kept_tokens(logits);
      ASSERT_FALSE(kept.empty());
      // The kept tokens are a prefix of the tokens sorted by logit: none removed is more likely.
      double kept_mass = 0.0;
      float smallest_kept_probability = std::numeric_limits<float>::infinity();
      float smallest_kept_logit = std::numeric_limits<float>::infinity();
      for (int32_t token : kept) {
        EXPECT_EQ(logits[token], original[token]);
        kept_mass += probabilities[token];
        smallest_kept_probability = std::min(smallest_kept_probability, probabilities[token]);
        smallest_kept_logit = std::min(smallest_kept_logit, original[token]);
      }
      for (size_t token = 0; token < original.size(); ++token) {
        if (!std::isfinite(logits[token])) {
          EXPECT_LE(original[token], smallest_kept_logit);
        }
      }
      // Reaches top_p, and would not without its least likely member: the smallest such set.
      EXPECT_GE(kept_mass, top_p - 1e-6) << "seed " << seed << " top_p " << top_p;
      EXPECT_LT(kept_mass - smallest_kept_probability, top_p + 1e-6)
          << "seed " << seed << " top_p " << top_p;
    }
  }
}

TEST(TopP, RejectsValuesOutsideZeroToOne) {
  std::vector<float> logits = {1.0f, 2.0f};
  EXPECT_THROW(top_p_filter(logits, 0.0f), Error);
  EXPECT_THROW(top_p_filter(logits, 1.5f), Error);
  EXPECT_THROW(top_p_filter(logits, kNaN), Error);
}

// ---- sample_from_probabilities --------------------------------------------------------------

TEST(SampleFromProbabilities, InvertsTheCumulativeDistribution) {
  const std::vector<float> probabilities = {0.2f, 0.3f, 0.5f};  // cumulative 0.2, 0.5, 1.0
  EXPECT_EQ(sample_from_probabilities(probabilities, 0.0), 0);
  EXPECT_EQ(sample_from_probabilities(probabilities, 0.1), 0);
  EXPECT_EQ(sample_from_probabilities(probabilities, 0.25), 1);
  EXPECT_EQ(sample_from_probabilities(probabilities, 0.49), 1);
  EXPECT_EQ(sample_from_probabilities(probabilities, 0.51), 2);
  EXPECT_EQ(sample_from_probabilities(probabilities, 0.99), 2);
}

TEST(SampleFromProbabilities, NeverReturnsAZeroProbabilityToken) {
  const double almost_one = std::nextafter(1.0, 0.0);
  for (double uniform01 : {0.0, 0.5, almost_one}) {
    EXPECT_EQ(sample_from_probabilities({0.0f, 1.0f, 0.0f}, uniform01), 1);
  }
  EXPECT_EQ(sample_from_probabilities({0.5f, 0.5f, 0.0f}, almost_one), 1);
  EXPECT_EQ(sample_from_probabilities({0.0f, 0.0f, 0.3f}, 0.0), 2);
}

TEST(SampleFromProbabilities, AcceptsUnnormalisedWeights) {
  EXPECT_EQ(sample_from_probabilities({1.0f, 3.0f}, 0.2), 0);
  EXPECT_EQ(sample_from_probabilities({1.0f, 3.0f}, 0.3), 1);
}

TEST(SampleFromProbabilities, EvenlySpacedUniformsReproduceTheProbabilities) {
  // With uniform01 = (j + 0.5) / n for j < n, token i must come out p_i * n times, give or take
  // one at each end of its interval: a deterministic check of the whole inverse CDF.
  const std::vector<float> probabilities = softmax(random_logits(20, 4, 2.0f));
  const int n = 100000;
  std::vector<int> counts(probabilities.size(), 0);
  for (int j = 0; j < n; ++j) ++counts[sample_from_probabilities(probabilities, (j + 0.5) / n)];
  for (size_t i = 0; i < probabilities.size(); ++i) {
    EXPECT_NEAR(counts[i], probabilities[i] * n, 2.0) << "token " << i;
  }
}

TEST(SampleFromProbabilities, RejectsInvalidInput) {
  EXPECT_THROW(sample_from_probabilities({}, 0.5), Error);
  EXPECT_THROW(sample_from_probabilities({0.0f, 0.0f}, 0.5), Error);
  EXPECT_THROW(sample_from_probabilities({-0.1f, 1.1f}, 0.5), Error);
  EXPECT_THROW(sample_from_probabilities({kNaN, 1.0f}, 0.5), Error);
  EXPECT_THROW(sample_from_probabilities({1.0f}, 1.0), Error);
  EXPECT_THROW(sample_from_probabilities({1.0f}, -0.1), Error);
}

}  // namespace
}  // namespace servelab
