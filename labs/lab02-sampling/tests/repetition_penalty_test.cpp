// Grades lab part lab02-repetition-penalty: apply_repetition_penalty in
// code/sampling/logits_processors.cpp. Each test names the mistake it catches.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "sampling/logits_processors.h"
#include "sampling/random.h"

namespace servelab {
namespace {

std::vector<float> penalised(std::vector<float> logits, const std::vector<int32_t>& previous,
                             float penalty) {
  apply_repetition_penalty(logits, previous, penalty);
  return logits;
}

std::vector<float> random_logits(int32_t vocab_size, uint64_t seed) {
  RandomGenerator generator(seed);
  std::vector<float> logits(vocab_size);
  for (float& logit : logits) logit = static_cast<float>((2.0 * generator.uniform01() - 1.0) * 5.0);
  return logits;
}

TEST(Lab02RepetitionPenalty, DividesPositiveLogitsByThePenalty) {
  EXPECT_EQ(penalised({2.0f, 4.0f, 1.0f}, {1}, 2.0f), (std::vector<float>{2.0f, 2.0f, 1.0f}));
}

TEST(Lab02RepetitionPenalty, MultipliesNegativeLogitsByThePenalty) {
  // Dividing -2 by 2 would give -1: the token would become *more* likely.
  EXPECT_EQ(penalised({-2.0f, 1.0f, -3.0f}, {0}, 2.0f), (std::vector<float>{-4.0f, 1.0f, -3.0f}));
}

TEST(Lab02RepetitionPenalty, PenaltyAboveOneLowersTheProbabilityOfEverySeenToken) {
  const std::vector<float> logits = random_logits(50, 1);
  const std::vector<int32_t> previous = {0, 3, 7, 12, 20, 33, 41};
  const std::vector<float> before = softmax(logits);
  const std::vector<float> after = softmax(penalised(logits, previous, 1.5f));
  for (int32_t token : previous) {
    EXPECT_LT(after[token], before[token])
        << "token " << token << " (logit " << logits[token] << ") became more likely";
  }
}

TEST(Lab02RepetitionPenalty, PenaltyBelowOneRaisesSeenTokensOfBothSigns) {
  EXPECT_EQ(penalised({3.0f, -3.0f, 1.0f}, {0, 1}, 0.5f), (std::vector<float>{6.0f, -1.5f, 1.0f}));
}

TEST(Lab02RepetitionPenalty, PenalisesATokenSeenSeveralTimesOnlyOnce) {
  // Token 0 appears three times and token 1 twice: each is penalised once, not once per
  // occurrence (that would give 4 / 8 = 0.5 and -3 * 4 = -12).
  EXPECT_EQ(penalised({4.0f, -3.0f, 1.0f}, {0, 1, 0, 0, 1}, 2.0f),
            (std::vector<float>{2.0f, -6.0f, 1.0f}));
}

TEST(Lab02RepetitionPenalty, LeavesUnseenTokensAndZeroLogitsUnchanged) {
  const std::vector<float> logits = random_logits(100, 2);
  std::vector<float> with_zero = logits;
  with_zero[10] = 0.0f;
  const std::vector<float> result = penalised(with_zero, {10, 20, 30}, 1.7f);
  for (size_t token = 0; token < logits.size(); ++token) {
    if (token == 20 || token == 30) continue;
    EXPECT_EQ(result[token], with_zero[token]) << "token " << token;
  }
}

TEST(Lab02RepetitionPenalty, EmptyHistoryAndPenaltyOneChangeNothing) {
  const std::vector<float> logits = random_logits(100, 3);
  EXPECT_EQ(penalised(logits, {}, 1.3f), logits);
  EXPECT_EQ(penalised(logits, {1, 2, 2, 3}, 1.0f), logits);
}

TEST(Lab02RepetitionPenalty, KeepsMaskedTokensMasked) {
  const float minus_infinity = -std::numeric_limits<float>::infinity();
  EXPECT_EQ(penalised({minus_infinity, 1.0f}, {0}, 1.2f)[0], minus_infinity);
}

TEST(Lab02RepetitionPenalty, MatchesHuggingFaceOnRandomHistories) {
  // Hugging Face: score = gather(scores, ids); score = where(score < 0, score * p, score / p);
  // scores.scatter_(ids, score). Every occurrence reads the *original* logit.
  for (uint64_t seed = 0; seed < 10; ++seed) {
    const std::vector<float> logits = random_logits(64, seed);
    RandomGenerator generator(100 + seed);
    std::vector<int32_t> previous;
    for (int i = 0; i < 80; ++i)
      previous.push_back(static_cast<int32_t>(generator.uniform01() * 64));
    for (float penalty : {1.2f, 0.8f}) {
      std::vector<float> expected = logits;
      for (int32_t id : previous) {
        const float score = logits[id];
        expected[id] = score < 0 ? score * penalty : score / penalty;
      }
      EXPECT_EQ(penalised(logits, previous, penalty), expected)
          << "seed " << seed << ", penalty " << penalty;
    }
  }
}

TEST(Lab02RepetitionPenalty, OrderOfThePreviousTokensDoesNotMatter) {
  const std::vector<float> logits = random_logits(30, 4);
  EXPECT_EQ(penalised(logits, {3, 9, 3, 27, 9}, 1.4f), penalised(logits, {27, 9, 9, 3, 3}, 1.4f));
}

}  // namespace
}  // namespace servelab
