// The static-batching engine on the CPU with the embedded model: packages of concurrent requests
// give each request exactly what it gets alone (greedy), streamed pieces add up to the answer,
// sampling with n choices is seeded per choice, stop strings / min_new_tokens / cancellation /
// shutdown behave as serving.h promises.
#include "scheduler/static_batcher.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "embedded_model.h"
#include "engine/generator.h"
#include "scheduler/engine_test_helpers.h"
#include "test_paths.h"
#include "tokenizer/tokenizer.h"

namespace servelab {
namespace {

using std::chrono::milliseconds;
using testing::collect;
using testing::Collected;

class StaticBatcherTest : public testing::EmbeddedModelSuite {
 protected:
  static ServingRequest request(const std::string& prompt, const GenerationConfig& config) {
    ServingRequest request;
    request.prompt_tokens = tokenizer_->encode(prompt);
    request.config = config;
    return request;
  }

  /// What Generator gives the same prompt alone, greedy.
  static GenerationResult alone(const std::string& prompt, int64_t max_new_tokens) {
    Generator generator(*model_, *tokenizer_);
    GenerationOptions options;
    options.max_new_tokens = max_new_tokens;
    options.sampling.temperature = 0.0f;
    return generator.generate(prompt, options);
  }

  static GenerationConfig greedy(int64_t max_new_tokens) {
    GenerationConfig config;
    config.max_new_tokens = max_new_tokens;
    return config;
  }
};

const std::vector<std::string> kPrompts = {
    "Once upon a time, there was a little fox who lived in the forest.",
    "Tom had a red ball.",
    "One day, a girl named Lily went to the park with her mom. She saw a big tree",
    "The cat sat on the mat and looked at the bird.",
    "Ben and Mia wanted to build a boat. They found some wood",
    "There was a small town by the sea. Every morning,",
    "Sam",
    "The dog ran to the old barn because it heard a loud noise, and then it",
};

TEST_F(StaticBatcherTest, EightGreedyRequestsInOnePackageEqualGeneratorAlone) {
  StaticBatcher batcher(*model_, *tokenizer_, {8, 0.05, 0});
  std::vector<std::shared_ptr<OutputChannel>> outputs;
  for (const std::string& prompt : kPrompts) {
    ServingRequest item = request(prompt, greedy(40));
    outputs.push_back(item.output);
    batcher.submit(std::move(item));  // before start(): all eight wait, so one package takes them
  }
  EXPECT_EQ(batcher.gauges().waiting, 8);
  batcher.start();
  for (size_t i = 0; i < kPrompts.size(); ++i) {
    Collected got = collect(*outputs[i], 1);
    GenerationResult expected = alone(kPrompts[i], 40);
    ASSERT_TRUE(got.errors.empty()) << got.errors[0].error;
    EXPECT_EQ(got.text[0], expected.text) << "prompt " << i;
    EXPECT_EQ(got.finish_reason[0], expected.finish_reason) << "prompt " << i;
    EXPECT_EQ(got.completion_tokens[0], static_cast<int64_t>(expected.token_ids.size()));
    EXPECT_GT(got.pieces[0].size(), 1u) << "the text was not streamed piece by piece";
  }
  batcher.stop(milliseconds(1000));
  const StaticBatcherStats stats = batcher.stats();
  EXPECT_EQ(stats.packages, 1);
  EXPECT_EQ(stats.kv_positions_reserved > stats.kv_positions_used, true);
}

TEST_F(StaticBatcherTest, DifferentConfigsRunInDifferentPackagesAndAllComplete) {
  StaticBatcher batcher(*model_, *tokenizer_, {8, 0.0, 0});
  const std::vector<int64_t> budgets = {5, 30, 12, 5, 30, 12};
  std::vector<std::shared_ptr<OutputChannel>> outputs;
  for (size_t i = 0; i < budgets.size(); ++i) {
    ServingRequest item = request(kPrompts[i], greedy(budgets[i]));
    outputs.push_back(item.output);
    batcher.submit(std::move(item));
  }
  batcher.start();
  for (size_t i = 0; i < budgets.size(); ++i) {
    Collected got = collect(*outputs[i], 1);
    GenerationResult expected = alone(kPrompts[i], budgets[i]);
    ASSERT_TRUE(got.errors.empty());
    EXPECT_EQ(got.text[0], expected.text) << "prompt " << i;
    EXPECT_EQ(got.completion_tokens[0], static_cast<int64_t>(expected.token_ids.size()));
  }
  batcher.stop(milliseconds(1000));
  EXPECT_EQ(batcher.stats().packages, 3);  // one per distinct max_new_tokens
}

TEST_F(StaticBatcherTest, PackingAcrossTokenBudgetsPutsThemInOnePackageAndEachRowStopsAtItsOwn) {
  StaticBatcherOptions options{8, 0.0, 0};
  options.pack_across_token_budgets = true;
  StaticBatcher batcher(*model_, *tokenizer_, options);
  const std::vector<int64_t> budgets = {5, 30, 12, 5, 30, 12};
  std::vector<std::shared_ptr<OutputChannel>> outputs;
  for (size_t i = 0; i < budgets.size(); ++i) {
    GenerationConfig config = greedy(budgets[i]);
    config.min_new_tokens = budgets[i];
    config.ignore_eos = true;
    ServingRequest item = request(kPrompts[i], config);
    outputs.push_back(item.output);
    batcher.submit(std::move(item));
  }
  // A request with another sampling setting still gets a package of its own.
  GenerationConfig other = greedy(12);
  other.repetition_penalty = 1.3;
  ServingRequest odd = request(kPrompts[6], other);
  auto odd_output = odd.output;
  batcher.submit(std::move(odd));
  batcher.start();
  for (size_t i = 0; i < budgets.size(); ++i) {
    Collected got = collect(*outputs[i], 1);
    ASSERT_TRUE(got.errors.empty());
    EXPECT_EQ(got.completion_tokens[0], budgets[i]) << "request " << i;
  }
  ASSERT_TRUE(collect(*odd_output, 1).errors.empty());
  batcher.stop(milliseconds(1000));
  EXPECT_EQ(batcher.stats().packages, 2);
}

TEST_F(StaticBatcherTest, ThreeSeededSamplesDifferAndRepeatWithTheSameSeed) {
  GenerationConfig config;
  config.do_sample = true;
  config.temperature = 1.0;
  config.num_return_sequences = 3;
  config.seed = 1234;
  config.max_new_tokens = 30;
  config.ignore_eos = true;
  auto run_once = [&] {
    StaticBatcher batcher(*model_, *tokenizer_);
    ServingRequest item = request(kPrompts[0], config);
    auto output = item.output;
    batcher.submit(std::move(item));
    batcher.start();
    Collected got = collect(*output, 3);
    batcher.stop(milliseconds(1000));
    return got;
  };
  Collected first = run_once();
  ASSERT_TRUE(first.errors.empty());
  ASSERT_EQ(first.finish_reason.size(), 3u);
  std::set<std::string> distinct;
  for (int index = 0; index < 3; ++index) {
    EXPECT_EQ(first.finish_reason[index], "length");
    EXPECT_EQ(first.completion_tokens[index], 30);
    distinct.insert(first.text[index]);
  }
  EXPECT_EQ(distinct.size(), 3u) << "the three choices used the same random stream";
  Collected second = run_once();
  EXPECT_EQ(second.text, first.text);
}

TEST_F(StaticBatcherTest, StopStringEndsTheTextBeforeIt) {
  GenerationResult reference = alone(kPrompts[2], 40);
  // A word from the middle of the greedy answer: the answer must end right before it.
  const size_t middle = reference.text.find(' ', reference.text.size() / 2);
  ASSERT_NE(middle, std::string::npos);
  const size_t word_end = reference.text.find_first_of(" .,", middle + 1);
  const std::string stop = reference.text.substr(middle, word_end - middle);  // " word"
  ASSERT_GE(stop.size(), 2u);
  GenerationConfig config = greedy(40);
  config.stop = {"never appears in a story", stop};
  StaticBatcher batcher(*model_, *tokenizer_);
  ServingRequest item = request(kPrompts[2], config);
  auto output = item.output;
  batcher.submit(std::move(item));
  batcher.start();
  Collected got = collect(*output, 1);
  EXPECT_EQ(got.text[0], reference.text.substr(0, reference.text.find(stop)));
  EXPECT_EQ(got.finish_reason[0], "stop");
  for (const std::string& piece : got.pieces[0])
    EXPECT_EQ(piece.find(stop), std::string::npos) << "a streamed piece carried the stop string";
  batcher.stop(milliseconds(1000));
}

TEST_F(StaticBatcherTest, MinNewTokensKeepsGoingPastEos) {
  // A prompt whose greedy story ends (EOS) well within the budget.
  const std::string prompt = kPrompts[1];
  GenerationResult reference = alone(prompt, 400);
  ASSERT_EQ(reference.finish_reason, "stop") << "the reference prompt no longer ends with EOS";
  const int64_t eos_at = static_cast<int64_t>(reference.token_ids.size());  // EOS included
  GenerationConfig config = greedy(eos_at + 20);
  config.min_new_tokens = eos_at + 10;
  StaticBatcher batcher(*model_, *tokenizer_);
  ServingRequest item = request(prompt, config);
  auto output = item.output;
  batcher.submit(std::move(item));
  batcher.start();
  Collected got = collect(*output, 1);
  EXPECT_GE(got.completion_tokens[0], eos_at + 10);
  // Up to the suppressed EOS the text is the reference's; then it goes on.
  EXPECT_EQ(got.text[0].compare(0, reference.text.size(), reference.text), 0);
  EXPECT_GT(got.text[0].size(), reference.text.size());
  batcher.stop(milliseconds(1000));
}

TEST_F(StaticBatcherTest, CancelledRequestStopsAndItsPackageMatesFinishRight) {
  GenerationConfig config = greedy(200);
  config.ignore_eos = true;
  StaticBatcher batcher(*model_, *tokenizer_);
  ServingRequest leaving = request(kPrompts[0], config);
  ServingRequest staying = request(kPrompts[3], config);
  auto leaving_output = leaving.output;
  auto staying_output = staying.output;
  batcher.submit(std::move(leaving));
  batcher.submit(std::move(staying));
  batcher.start();
  // Wait for the first piece of the leaving request, then its client leaves.
  std::optional<OutputEvent> first = leaving_output->receive(milliseconds(60000));
  ASSERT_TRUE(first.has_value());
  leaving_output->cancel();
  Collected got = collect(*staying_output, 1);
  batcher.stop(milliseconds(1000));

  Generator generator(*model_, *tokenizer_);
  GenerationOptions options;
  options.max_new_tokens = 200;
  options.ignore_eos = true;
  options.sampling.temperature = 0.0f;
  GenerationResult expected = generator.generate(kPrompts[3], options);
  EXPECT_EQ(got.text[0], expected.text);
  EXPECT_EQ(got.completion_tokens[0], 200);
  // The cancelled row stopped early: far fewer than the 400 row steps of two full rows.
  const StaticBatcherStats stats = batcher.stats();
  EXPECT_LT(stats.computed_row_steps, 300);
  EXPECT_GT(stats.idle_row_steps, 100);
}

TEST_F(StaticBatcherTest, StopAnswersWaitingRequestsWith503AndAbortsTheRunningOnes) {
  GenerationConfig long_config = greedy(400);
  long_config.ignore_eos = true;
  StaticBatcher batcher(*model_, *tokenizer_, {8, 10.0, 0});
  ServingRequest running = request(kPrompts[0], long_config);
  auto running_output = running.output;
  batcher.submit(std::move(running));
  batcher.start();
  ASSERT_TRUE(running_output->receive(milliseconds(60000)).has_value());  // it runs
  std::vector<std::shared_ptr<OutputChannel>> waiting;
  for (int i = 0; i < 3; ++i) {
    ServingRequest item = request(kPrompts[i + 1], greedy(5));
    waiting.push_back(item.output);
    batcher.submit(std::move(item));
  }
  EXPECT_EQ(batcher.gauges().running, 1);
  EXPECT_EQ(batcher.gauges().waiting, 3);
  batcher.stop(milliseconds(0));
  for (auto& output : waiting) {
    Collected got = collect(*output, 1);
    ASSERT_EQ(got.errors.size(), 1u);
    EXPECT_EQ(got.errors[0].status, 503);
  }
  Collected got = collect(*running_output, 1);
  EXPECT_EQ(got.finish_reason[0], "abort");
  EXPECT_LT(got.completion_tokens[0], 400);
  // After stop, new requests are refused at once.
  ServingRequest late = request(kPrompts[0], greedy(5));
  auto late_output = late.output;
  batcher.submit(std::move(late));
  EXPECT_EQ(collect(*late_output, 1).errors.at(0).status, 503);
}

TEST_F(StaticBatcherTest, FullQueueAnswers429AndOverlongPromptAnswers400) {
  StaticBatcher batcher(*model_, *tokenizer_, {8, 0.05, 2});
  std::vector<std::shared_ptr<OutputChannel>> outputs;
  for (int i = 0; i < 3; ++i) {
    ServingRequest item = request(kPrompts[i], greedy(3));
    outputs.push_back(item.output);
    batcher.submit(std::move(item));  // not started: the third finds the queue full
  }
  EXPECT_EQ(collect(*outputs[2], 1).errors.at(0).status, 429);
  ServingRequest overlong;
  overlong.prompt_tokens.assign(static_cast<size_t>(model_->config().max_position_embeddings), 5);
  auto overlong_output = overlong.output;
  batcher.submit(std::move(overlong));
  EXPECT_EQ(collect(*overlong_output, 1).errors.at(0).status, 400);
  batcher.start();
  EXPECT_TRUE(collect(*outputs[0], 1).errors.empty());
  EXPECT_TRUE(collect(*outputs[1], 1).errors.empty());
  batcher.stop(milliseconds(1000));
}

}  // namespace
}  // namespace servelab
