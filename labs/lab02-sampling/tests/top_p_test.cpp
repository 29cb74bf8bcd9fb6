// Grades lab part lab02-top-p: top_p_filter in code/sampling/logits_processors.cpp.
// Each test names the mistake it catches.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "sampling/logits_processors.h"
#include "sampling/random.h"
#include "sampling/sampler.h"

namespace servelab {
namespace {

constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();

// Logits whose softmax is `probabilities`.
std::vector<float> logits_for(const std::vector<double>& probabilities) {
  std::vector<float> logits;
  for (double probability : probabilities)
    logits.push_back(static_cast<float>(std::log(probability)));
  return logits;
}

// The ids of the tokens top_p_filter kept (finite logit), ascending.
std::vector<int32_t> kept_after_top_p(std::vector<float> logits, float top_p) {
  top_p_filter(logits, top_p);
  std::vector<int32_t> kept;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] != kMinusInfinity) kept.push_back(static_cast<int32_t>(i));
  }
  return kept;
}

std::vector<float> random_logits(int32_t vocab_size, uint64_t seed, float scale) {
  RandomGenerator generator(seed);
  std::vector<float> logits(vocab_size);
  for (float& logit : logits)
    logit = static_cast<float>((2.0 * generator.uniform01() - 1.0) * scale);
  return logits;
}

// A deliberately different, slow definition: token t is kept iff the tokens ranked before it
// (higher logit, or equal logit and lower id) have total probability < top_p.
std::vector<int32_t> reference_kept(const std::vector<float>& logits, float top_p) {
  const std::vector<float> probabilities = softmax(logits);
  std::vector<int32_t> kept;
  for (size_t t = 0; t < logits.size(); ++t) {
    double before = 0.0;
    for (size_t u = 0; u < logits.size(); ++u) {
      if (logits[u] > logits[t] || (logits[u] == logits[t] && u < t)) before += probabilities[u];
    }
    if (before < top_p) kept.push_back(static_cast<int32_t>(t));
  }
  return kept;
}

// Probabilities 0.1, 0.4, 0.3, 0.2 at ids 0..3. Sorted: 0.4 (id 1), 0.3 (id 2), 0.2 (id 3),
// 0.1 (id 0); cumulative 0.4, 0.7, 0.9, 1.0. No threshold below sits on those sums.
const std::vector<double> kProbabilities = {0.1, 0.4, 0.3, 0.2};

TEST(Lab02TopP, KeepsTheMostLikelyTokensUntilTheirSumReachesTopP) {
  EXPECT_EQ(kept_after_top_p(logits_for(kProbabilities), 0.35f), (std::vector<int32_t>{1}));
  EXPECT_EQ(kept_after_top_p(logits_for(kProbabilities), 0.85f), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(kept_after_top_p(logits_for(kProbabilities), 0.95f),
            (std::vector<int32_t>{0, 1, 2, 3}));
}

TEST(Lab02TopP, KeepsTheTokenThatCrossesTopP) {
  // 0.4 < 0.65, so the next token (0.3) is needed to reach 0.65: keep ids 1 and 2. Stopping
  // while "sum including this token <= top_p" would keep only id 1.
  EXPECT_EQ(kept_after_top_p(logits_for(kProbabilities), 0.65f), (std::vector<int32_t>{1, 2}));
  // ... and not one token more: 0.4 + 0.3 = 0.7 already reaches 0.69.
  EXPECT_EQ(kept_after_top_p(logits_for(kProbabilities), 0.69f), (std::vector<int32_t>{1, 2}));
}

TEST(Lab02TopP, StopsAsSoonAsTheSumReachesTopP) {
  // Equal logits give probabilities that are exact in binary (0.25 each; 0.5 each when half are
  // masked), so these sums hit top_p exactly: reaching top_p is enough, one more token is too many.
  EXPECT_EQ(kept_after_top_p({0.0f, 0.0f, 0.0f, 0.0f}, 0.5f), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(kept_after_top_p({0.0f, 0.0f, 0.0f, 0.0f}, 0.75f), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(kept_after_top_p({0.0f, kMinusInfinity, 0.0f}, 0.5f), (std::vector<int32_t>{0}));
}

TEST(Lab02TopP, AlwaysKeepsAtLeastOneToken) {
  // The most likely token alone (0.4) exceeds top_p: it must still be kept.
  EXPECT_EQ(kept_after_top_p(logits_for(kProbabilities), 1e-4f), (std::vector<int32_t>{1}));
  // Nearly flat over 1000 tokens: every single probability is below top_p.
  const std::vector<float> flat = random_logits(1000, 3, 0.01f);
  EXPECT_EQ(kept_after_top_p(flat, 0.0005f), (std::vector<int32_t>{argmax(flat)}));
}

TEST(Lab02TopP, RanksByProbabilityNotByTokenId) {
  // The most likely token comes last in the vocabulary.
  EXPECT_EQ(kept_after_top_p(logits_for({0.05, 0.15, 0.2, 0.6}), 0.7f),
            (std::vector<int32_t>{2, 3}));
}

TEST(Lab02TopP, SetsRemovedLogitsToMinusInfinityAndLeavesKeptOnesAlone) {
  const std::vector<float> original = {1.5f, -0.5f, 3.0f, 0.25f};
  std::vector<float> logits = original;
  top_p_filter(logits, 0.8f);  // probabilities ~0.17, 0.02, 0.76, 0.05: keeps ids 2 and 0
  EXPECT_EQ(logits, (std::vector<float>{1.5f, kMinusInfinity, 3.0f, kMinusInfinity}));
}

TEST(Lab02TopP, BreaksTiesByLowerTokenId) {
  // Four tokens of 0.25 each; 0.3 needs two of them: the two lowest ids.
  EXPECT_EQ(kept_after_top_p({2.0f, 2.0f, 2.0f, 2.0f}, 0.3f), (std::vector<int32_t>{0, 1}));
}

TEST(Lab02TopP, HandlesTokensAlreadyMaskedByTopK) {
  // top-k has already removed ids 0 and 2; the probabilities of the rest are 0.73 and 0.27.
  const std::vector<float> logits = {kMinusInfinity, 1.0f, kMinusInfinity, 0.0f};
  EXPECT_EQ(kept_after_top_p(logits, 0.5f), (std::vector<int32_t>{1}));
  EXPECT_EQ(kept_after_top_p(logits, 0.9f), (std::vector<int32_t>{1, 3}));
}

TEST(Lab02TopP, IsNumericallyStableForLargeLogits) {
  // exp(1000) overflows a float: subtract the max (or use softmax()) before exponentiating.
  const std::vector<float> logits = {1000.0f, 999.0f, 0.0f};  // ~0.73, 0.27, 0
  EXPECT_EQ(kept_after_top_p(logits, 0.5f), (std::vector<int32_t>{0}));
  EXPECT_EQ(kept_after_top_p(logits, 0.8f), (std::vector<int32_t>{0, 1}));
}

TEST(Lab02TopP, MatchesTheDefinitionOnRandomLogits) {
  for (uint64_t seed = 0; seed < 10; ++seed) {
    const std::vector<float> logits = random_logits(200, seed, 3.0f);
    for (float top_p : {0.05f, 0.3f, 0.6f, 0.9f, 0.99f}) {
      EXPECT_EQ(kept_after_top_p(logits, top_p), reference_kept(logits, top_p))
          << "seed " << seed << ", top_p " << top_p;
    }
  }
}

TEST(Lab02TopP, SamplerNeverPicksATokenOutsideTheNucleus) {
  SamplingParams params;
  params.top_p = 0.65f;
  params.seed = 11;
  Sampler sampler(params);
  const std::vector<float> logits = logits_for(kProbabilities);
  int picked_second = 0;
  for (int step = 0; step < 1000; ++step) {
    const int32_t token = sampler.sample(logits.data(), 4, {});
    ASSERT_TRUE(token == 1 || token == 2) << "sampled token " << token << " at step " << step;
    if (token == 2) ++picked_second;
  }
  // Within the nucleus the odds are 0.4 : 0.3, so token 2 comes out about 429 times in 1000.
  EXPECT_NEAR(picked_second, 429, 80);
}

}  // namespace
}  // namespace servelab
