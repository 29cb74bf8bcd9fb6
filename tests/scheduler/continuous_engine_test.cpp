// The continuous-batching engine in-process, on the CPU with the embedded model (label unit, so it
// also runs under the sanitizers): concurrent greedy requests in a pool small enough to preempt
// give what Generator gives alone; n seeded samples differ and repeat; beam search returns its
// best sequences; a cancelled request and a stop() free every block.
#include "scheduler/continuous_engine.h"

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <thread>
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

class ContinuousEngineTest : public testing::EmbeddedModelSuite {
 protected:
  static ContinuousEngineOptions options(int64_t gpu_blocks, int64_t cpu_blocks,
                                         PreemptionMode mode = PreemptionMode::kSwap) {
    ContinuousEngineOptions options;
    options.scheduler.batch_max_tokens = 512;
    options.scheduler.batch_max_beams = 32;
    options.scheduler.preemption_mode = mode;
    options.scheduler.blocks.block_size = 8;
    options.scheduler.blocks.num_gpu_blocks = gpu_blocks;
    options.scheduler.blocks.num_cpu_blocks = cpu_blocks;
    return options;
  }

  static ServingRequest request(const std::string& prompt, const GenerationConfig& config) {
    ServingRequest request;
    request.prompt_tokens = tokenizer_->encode(prompt);
    request.config = config;
    return request;
  }

  static std::string alone(const std::string& prompt, int64_t max_new_tokens) {
    Generator generator(*model_, *tokenizer_);
    GenerationOptions generation;
    generation.max_new_tokens = max_new_tokens;
    generation.sampling.temperature = 0.0f;
    return generator.generate(prompt, generation).text;
  }

  /// Every request gone and every block free. The engine publishes its gauges at the end of the
  /// step in which the last answer was sent: wait for that step (up to 5 s).
  static void expect_all_free(const ContinuousEngine& engine) {
    EngineGauges gauges = engine.gauges();
    for (int i = 0; i < 500 && (gauges.running + gauges.waiting + gauges.swapped > 0 ||
                                gauges.kv_blocks_free != gauges.kv_blocks_total);
         ++i) {
      std::this_thread::sleep_for(milliseconds(10));
      gauges = engine.gauges();
    }
    EXPECT_EQ(gauges.running + gauges.waiting + gauges.swapped, 0);
    EXPECT_EQ(gauges.kv_blocks_free, gauges.kv_blocks_total);
    EXPECT_EQ(gauges.cpu_blocks_free, gauges.cpu_blocks_total);
  }
};

const std::vector<std::string> kPrompts = {"Tom had a red ball.", "One day, a girl named Lily",
                                           "The cat sat on the mat and looked at the bird."};

TEST_F(ContinuousEngineTest, ConcurrentGreedyRequestsEqualGeneratorAloneThroughPreemption) {
  for (PreemptionMode mode : {PreemptionMode::kSwap, PreemptionMode::kRecompute}) {
    // 10 blocks of 8 tokens: six requests of up to ~45 tokens cannot all run side by side.
    ContinuousEngine engine(*model_, *tokenizer_, options(10, 64, mode));
    engine.start();
    std::vector<ServingRequest> requests;
    for (int i = 0; i < 6; ++i) {
      GenerationConfig config;
      config.max_new_tokens = 12 + 6 * (i % 3);
      requests.push_back(request(kPrompts[i % 3], config));
    }
    std::vector<std::shared_ptr<OutputChannel>> outputs;
    for (ServingRequest& r : requests) {
      outputs.push_back(r.output);
      engine.submit(std::move(r));
    }
    for (int i = 0; i < 6; ++i) {
      const Collected got = collect(*outputs[static_cast<size_t>(i)], 1);
      ASSERT_TRUE(got.errors.empty()) << got.errors.front().error;
      EXPECT_EQ(got.text.at(0), alone(kPrompts[i % 3], 12 + 6 * (i % 3)))
          << "request " << i << ", " << to_string(mode);
    }
    const ContinuousEngineStats stats = engine.stats();
    EXPECT_GT(stats.scheduler.swap_preemptions + stats.scheduler.recompute_preemptions, 0)
        << to_string(mode);
    expect_all_free(engine);
    engine.stop(milliseconds(0));
  }
}

TEST_F(ContinuousEngineTest, NSeededSamplesDifferRepeatAndShareThePromptsBlocks) {
  ContinuousEngine engine(*model_, *tokenizer_, options(64, 0));
  engine.start();
  GenerationConfig config;
  config.do_sample = true;
  config.temperature = 1.0;
  config.max_new_tokens = 16;
  config.num_return_sequences = 3;
  config.seed = 77;
  std::vector<std::map<int, std::string>> runs;
  for (int run = 0; run < 2; ++run) {
    ServingRequest r = request(kPrompts[1], config);
    auto output = r.output;
    engine.submit(std::move(r));
    const Collected got = collect(*output, 3);
    ASSERT_TRUE(got.errors.empty());
    runs.push_back(got.text);
  }
  EXPECT_EQ(runs[0], runs[1]) << "the same seed repeats every choice";
  const std::set<std::string> distinct = {runs[0][0], runs[0][1], runs[0][2]};
  EXPECT_EQ(distinct.size(), 3u);
  expect_all_free(engine);
}

TEST_F(ContinuousEngineTest, BeamSearchReturnsItsBestSequencesAndFreesTheBeams) {
  ContinuousEngine engine(*model_, *tokenizer_, options(64, 64));
  engine.start();
  GenerationConfig config;
  config.max_new_tokens = 12;
  config.num_beams = 4;
  config.num_return_sequences = 3;
  config.early_stopping = "true";
  ServingRequest r = request(kPrompts[0], config);
  auto output = r.output;
  engine.submit(std::move(r));
  const Collected got = collect(*output, 3);
  ASSERT_TRUE(got.errors.empty()) << got.errors.front().error;
  EXPECT_EQ(got.finish_reason.size(), 3u);
  std::set<std::string> distinct;
  for (const auto& [index, text] : got.text) distinct.insert(text);
  EXPECT_EQ(distinct.size(), got.text.size()) << "the beams differ";
  expect_all_free(engine);

  config.do_sample = true;  // beam sampling: refused at once
  ServingRequest sampled = request(kPrompts[0], config);
  auto refused = sampled.output;
  engine.submit(std::move(sampled));
  const Collected error = collect(*refused, 3);
  ASSERT_EQ(error.errors.size(), 1u);
  EXPECT_EQ(error.errors[0].status, 400);
}

TEST_F(ContinuousEngineTest, ACancelledRequestAndAStopFreeEveryBlock) {
  ContinuousEngine engine(*model_, *tokenizer_, options(32, 32));
  engine.start();
  GenerationConfig config;
  config.max_new_tokens = 200;
  config.ignore_eos = true;
  ServingRequest cancelled = request(kPrompts[2], config);
  auto cancelled_output = cancelled.output;
  ServingRequest running = request(kPrompts[0], config);
  auto running_output = running.output;
  engine.submit(std::move(cancelled));
  engine.submit(std::move(running));
  // Wait for the first piece of text, then leave.
  ASSERT_TRUE(cancelled_output->receive(milliseconds(60000)).has_value());
  cancelled_output->cancel();
  ASSERT_TRUE(running_output->receive(milliseconds(60000)).has_value());
  engine.stop(milliseconds(0));
  const Collected rest = collect(*running_output, 1);
  EXPECT_EQ(rest.finish_reason.at(0), "abort");
  expect_all_free(engine);

  // A request that can never fit (more tokens than the pool holds) is refused with the numbers.
  ContinuousEngine small(*model_, *tokenizer_, options(4, 0));
  small.start();
  ServingRequest huge = request(kPrompts[2], config);
  auto huge_output = huge.output;
  small.submit(std::move(huge));
  const Collected refused = collect(*huge_output, 1);
  ASSERT_EQ(refused.errors.size(), 1u);
  EXPECT_EQ(refused.errors[0].status, 400);
  EXPECT_NE(refused.errors[0].error.find("4 blocks of 8 tokens"), std::string::npos)
      << refused.errors[0].error;
}

}  // namespace
}  // namespace servelab
