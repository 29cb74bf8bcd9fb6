// Unit tests of BeamSearch (Hugging Face's rules) on toy "models": functions from the tokens so far
// to next-token log-probabilities. The end-to-end comparison with transformers' generate() is in
// tests/e2e/continuous_server_test.cpp (a fixture made on the device machine).
#include "scheduler/beam_search.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "common/error.h"

namespace servelab {
namespace {

using ToyModel = std::function<std::vector<float>(const std::vector<int32_t>&)>;

std::vector<float> log_of(const std::vector<double>& probabilities) {
  std::vector<float> result;
  for (double p : probabilities)
    result.push_back(p > 0 ? static_cast<float>(std::log(p)) : -INFINITY);
  return result;
}

/// Runs the search to the end, as the engine does: one step per token, the beams' tokens kept
/// alongside.
std::vector<BeamHypothesis> run(BeamSearch& search, const ToyModel& model, int32_t vocab) {
  std::vector<std::vector<int32_t>> beams = {{}};
  while (true) {
    std::vector<std::vector<float>> rows;
    for (const auto& tokens : beams) rows.push_back(model(tokens));
    std::vector<const float*> pointers;
    for (const auto& row : rows) pointers.push_back(row.data());
    const std::vector<BeamContinuation> next = search.step(pointers, vocab, beams);
    std::vector<std::vector<int32_t>> grown;
    for (const BeamContinuation& continuation : next) {
      grown.push_back(beams[static_cast<size_t>(continuation.parent)]);
      grown.back().push_back(continuation.token);
    }
    beams = grown;
    if (search.done()) return search.finalize();
  }
}

TEST(BeamSearch, OneBeamIsGreedy) {
  // Token t is likeliest after a sequence of length L when t == (L * 2 + 1) % 4.
  const ToyModel model = [](const std::vector<int32_t>& tokens) {
    std::vector<double> p(4, 0.1);
    p[(tokens.size() * 2 + 1) % 4] = 0.7;
    return log_of(p);
  };
  BeamSearchConfig config;
  config.num_beams = 1;
  config.max_new_tokens = 5;
  BeamSearch search(config);
  const std::vector<BeamHypothesis> best = run(search, model, 4);
  ASSERT_EQ(best.size(), 1u);
  EXPECT_EQ(best[0].tokens, (std::vector<int32_t>{1, 3, 1, 3, 1}));
  EXPECT_FALSE(best[0].ended_with_eos);
  EXPECT_NEAR(best[0].score, 5 * std::log(0.7) / 5.0, 1e-5);
}

TEST(BeamSearch, TwoBeamsFindTheBetterPathThatGreedyMisses) {
  // Greedy takes token 0 (0.6) then faces a flat distribution; token 1 (0.4) leads to a sure
  // token: 0.4 * 0.95 > 0.6 * 0.5.
  const ToyModel model = [](const std::vector<int32_t>& tokens) {
    if (tokens.empty()) return log_of({0.6, 0.4, 0.0});
    if (tokens[0] == 0) return log_of({0.5, 0.25, 0.25});
    return log_of({0.05, 0.0, 0.95});
  };
  BeamSearchConfig config;
  config.num_beams = 2;
  config.num_return_sequences = 2;
  config.max_new_tokens = 2;
  BeamSearch search(config);
  const std::vector<BeamHypothesis> best = run(search, model, 3);
  ASSERT_EQ(best.size(), 2u);
  EXPECT_EQ(best[0].tokens, (std::vector<int32_t>{1, 2}));
  EXPECT_NEAR(best[0].score, (std::log(0.4) + std::log(0.95)) / 2.0, 1e-5);
  EXPECT_EQ(best[1].tokens, (std::vector<int32_t>{0, 0}));
  EXPECT_GE(best[0].score, best[1].score) << "best first";
}

TEST(BeamSearch, EosEndsAHypothesisWithoutTheEosTokenAndEarlyStoppingTrueStopsAtNumBeams) {
  // Token 3 is EOS and likely from the second token on.
  const ToyModel model = [](const std::vector<int32_t>& tokens) {
    if (tokens.empty()) return log_of({0.5, 0.3, 0.1, 0.1});
    return log_of({0.2, 0.15, 0.05, 0.6});
  };
  BeamSearchConfig config;
  config.num_beams = 2;
  config.num_return_sequences = 2;
  config.eos_ids = {3};
  config.early_stopping = EarlyStopping::kFirst;
  config.max_new_tokens = 10;
  BeamSearch search(config);
  const std::vector<BeamHypothesis> best = run(search, model, 4);
  ASSERT_EQ(best.size(), 2u);
  EXPECT_EQ(best[0].tokens, std::vector<int32_t>{0});
  EXPECT_TRUE(best[0].ended_with_eos);
  EXPECT_NEAR(best[0].score, (std::log(0.5) + std::log(0.6)) / 2.0, 1e-5) << "the EOS counted";
  EXPECT_EQ(best[1].tokens, std::vector<int32_t>{1});
}

TEST(BeamSearch, LengthPenaltyDecidesBetweenAShortAndALongAnswer) {
  // After token 0, EOS is likely (short answer); after token 1 the answer goes on for sure.
  const ToyModel model = [](const std::vector<int32_t>& tokens) {
    if (tokens.empty()) return log_of({0.55, 0.45, 0.0});
    if (tokens[0] == 0) return log_of({0.05, 0.05, 0.9});  // 2 is EOS
    return log_of({0.0, 0.99, 0.01});
  };
  auto best_with = [&](double length_penalty) {
    BeamSearchConfig config;
    config.num_beams = 2;
    config.eos_ids = {2};
    config.length_penalty = length_penalty;
    config.early_stopping = EarlyStopping::kNever;
    config.max_new_tokens = 6;
    BeamSearch search(config);
    return run(search, model, 3).front().tokens;
  };
  EXPECT_EQ(best_with(0.0), std::vector<int32_t>{0}) << "no penalty: the likelier short answer";
  EXPECT_EQ(best_with(2.0).size(), 6u) << "a strong length reward: the long one";
}

TEST(BeamSearch, BadConfigurationsAndCallsAreRefused) {
  BeamSearchConfig config;
  config.num_beams = 2;
  config.num_return_sequences = 3;
  EXPECT_THROW(BeamSearch{config}, Error);
  config.num_return_sequences = 1;
  BeamSearch search(config);
  const std::vector<float> row = log_of({0.5, 0.5});
  EXPECT_THROW(search.step({row.data(), row.data()}, 2, {{}, {}}), Error) << "one beam at first";
}

}  // namespace
}  // namespace servelab
