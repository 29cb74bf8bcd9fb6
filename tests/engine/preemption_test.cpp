// The memory system end to end on the CPU with the embedded model: several requests generate
// hundreds of tokens each through a GPU pool far too small to hold them all, so that requests are
// preempted again and again, by swap (their blocks go to the CPU pool and come back) or by
// recompute (their blocks are dropped and their prompt plus output is prefilled again). Greedy
// outputs must equal, token for token, those of a run with an ample pool; and prefix caching
// must change nothing but the work done.
#include <gtest/gtest.h>

#include "backend/cpu/cpu_backend.h"
#include "embedded_model.h"
#include "engine/preemption_driver.h"
#include "test_paths.h"
#include "tokenizer/tokenizer.h"

namespace servelab {
namespace {

using testing::DriverOptions;
using testing::DriverRequest;
using testing::DriverResult;

class CpuPreemption : public testing::EmbeddedModelSuite {
 protected:
  /// Six stories of different lengths: 256 to 320 new tokens each (past EOS: the point is the
  /// memory traffic, and what the model says after its story ends is just as deterministic).
  static std::vector<DriverRequest> stories() {
    const std::vector<std::string> openings = {
        "Once upon a time, there was a little fox who lived in the forest.",
        "Tom had a red ball.",
        "One day, a girl named Lily went to the park with her mom. She saw a big tree",
        "The cat sat on the mat and looked at the bird.",
        "Ben and Mia wanted to build a boat. They found some wood",
        "There was a small town by the sea. Every morning,",
    };
    std::vector<DriverRequest> requests;
    for (size_t i = 0; i < openings.size(); ++i)
      requests.push_back({tokenizer_->encode(openings[i]), 256 + 13 * static_cast<int64_t>(i)});
    return requests;
  }

  static DriverResult run(const std::vector<DriverRequest>& requests, int64_t gpu_blocks,
                          PreemptionMode mode, int64_t block_size = 16, bool prefix_caching = false,
                          int64_t cpu_blocks = 256) {
    DriverOptions options;
    options.blocks.block_size = block_size;
    options.blocks.num_gpu_blocks = gpu_blocks;
    options.blocks.num_cpu_blocks = cpu_blocks;
    options.blocks.enable_prefix_caching = prefix_caching;
    options.mode = mode;
    return testing::run_greedy_requests(*model_, requests, options);
  }

  /// The stories in a pool that holds them all: no preemption. Computed once for the suite.
  static const DriverResult& ample() {
    static const DriverResult result = run(stories(), 256, PreemptionMode::kSwap);
    return result;
  }

  static void expect_everything_freed(const DriverResult& result) {
    EXPECT_EQ(result.stats.gpu_blocks_used, 0);
    EXPECT_EQ(result.stats.cpu_blocks_used, 0);
  }
};

// The six requests need about 6 x 21 = 126 blocks of 16 tokens at their longest; 30 blocks hold
// fewer than two of them.
constexpr int64_t kAmpleBlocks = 256;  // the prefix-caching test's pool
constexpr int64_t kSmallBlocks = 30;

TEST_F(CpuPreemption, SwappingRequestsOutAndInLeavesGreedyOutputsUnchanged) {
  EXPECT_EQ(ample().stats.swap_outs, 0);
  EXPECT_EQ(ample().stats.recompute_preemptions, 0);
  EXPECT_EQ(ample().max_running_seen, 6);

  DriverResult small = run(stories(), kSmallBlocks, PreemptionMode::kSwap);
  EXPECT_TRUE(testing::same_outputs(small, ample()));
  EXPECT_GE(small.stats.swap_outs, 5) << "the small pool must force many swaps";
  EXPECT_EQ(small.stats.swap_ins, small.stats.swap_outs);
  EXPECT_EQ(small.stats.recompute_preemptions, 0);
  EXPECT_GT(small.moved.bytes_swapped_out, 0);
  EXPECT_EQ(small.moved.blocks_swapped_in, small.stats.blocks_swapped_in);
  expect_everything_freed(small);
  std::cout << "swap: " << small.stats.swap_outs << " swap-outs, " << small.stats.blocks_swapped_out
            << " blocks out, " << small.stats.blocks_swapped_in << " in, " << small.steps
            << " steps (ample pool: " << ample().steps << ")\n";
}

TEST_F(CpuPreemption, RecomputingPreemptedRequestsLeavesGreedyOutputsUnchanged) {
  DriverResult small = run(stories(), kSmallBlocks, PreemptionMode::kRecompute);
  EXPECT_TRUE(testing::same_outputs(small, ample()));
  EXPECT_GE(small.stats.recompute_preemptions, 5) << "the small pool must force many recomputes";
  EXPECT_EQ(small.stats.swap_outs, 0);
  EXPECT_GT(small.recomputed_tokens, 0);
  expect_everything_freed(small);
  std::cout << "recompute: " << small.stats.recompute_preemptions << " preemptions, "
            << small.recomputed_tokens << " tokens prefilled again, " << small.steps << " steps\n";
}

TEST_F(CpuPreemption, SwapFallsBackToRecomputeWhenTheCpuPoolIsFullAndOutputsStayTheSame) {
  // Room in the CPU pool for about one swapped request: the others are recomputed.
  DriverResult mixed = run(stories(), kSmallBlocks, PreemptionMode::kSwap, 16, false, 24);
  EXPECT_TRUE(testing::same_outputs(mixed, ample()));
  EXPECT_GT(mixed.stats.swap_outs, 0);
  EXPECT_GT(mixed.stats.recompute_preemptions, 0);
  expect_everything_freed(mixed);
}

TEST_F(CpuPreemption, SmallBlocksPreemptedOftenGiveTheSameOutputs) {
  // Block size 4: sequences span ~80 blocks and end mid-block at every step.
  std::vector<DriverRequest> requests = stories();
  requests.resize(4);
  for (auto& request : requests) request.max_new_tokens = 100;
  DriverResult ample = run(requests, 512, PreemptionMode::kSwap, 4);
  DriverResult small = run(requests, 64, PreemptionMode::kSwap, 4);
  EXPECT_TRUE(testing::same_outputs(small, ample));
  EXPECT_GT(small.stats.swap_outs, 0);
}

TEST_F(CpuPreemption, PrefixCachingSharesALongCommonPrefixWithoutChangingOutputs) {
  // Eight requests that share a long opening (a system prompt, in a chat server) and differ in
  // their last sentence.
  const std::string common =
      "Once upon a time, in a little house at the edge of a big forest, there lived an old man "
      "and his dog. Every day they walked to the river and looked at the fish. One morning, the "
      "sun was bright and the birds sang in the trees.";
  const std::vector<std::string> endings = {" The dog",  " The old man", " Then a fox",
                                            " A bird",   " The river",   " Suddenly,",
                                            " They saw", " That day,"};
  std::vector<DriverRequest> requests;
  for (const std::string& ending : endings)
    requests.push_back({tokenizer_->encode(common + ending), 40});

  DriverResult plain = run(requests, kAmpleBlocks, PreemptionMode::kSwap, 16, false);
  DriverResult cached = run(requests, kAmpleBlocks, PreemptionMode::kSwap, 16, true);
  EXPECT_TRUE(testing::same_outputs(cached, plain));
  EXPECT_EQ(plain.stats.prefix_hits, 0);
  // All eight are admitted in the first step, before any block is computed: the first step
  // finds nothing. Requests that arrive later do: run them once more, one at a time.
  std::vector<DriverRequest> staggered;
  for (const DriverRequest& request : requests) staggered.push_back(request);
  DriverOptions options;
  options.blocks.block_size = 16;
  options.blocks.num_gpu_blocks = kAmpleBlocks;
  options.blocks.num_cpu_blocks = 0;
  options.blocks.enable_prefix_caching = true;
  options.max_running = 1;
  DriverResult one_by_one = testing::run_greedy_requests(*model_, staggered, options);
  EXPECT_TRUE(testing::same_outputs(one_by_one, plain));
  const int64_t common_blocks = static_cast<int64_t>(tokenizer_->encode(common).size()) / 16;
  ASSERT_GE(common_blocks, 2);
  // Every request after the first finds at least the common prefix's full blocks.
  EXPECT_GE(one_by_one.stats.prefix_hits, 7 * (common_blocks - 1));
  EXPECT_GT(one_by_one.stats.prefix_hit_rate(), 0.5);
  EXPECT_GT(one_by_one.stats.gpu_blocks_cached, 0) << "finished requests' blocks stay cached";
  std::cout << "prefix caching: " << one_by_one.stats.prefix_hits << " of "
            << one_by_one.stats.prefix_queries << " prompt blocks found, hit rate "
            << one_by_one.stats.prefix_hit_rate() << "\n";
}

TEST_F(CpuPreemption, PrefixCachingUnderPreemptionGivesTheSameOutputs) {
  // Recompute with prefix caching: a recomputed request finds the blocks it left behind, as long
  // as no one evicted them. (Swap with prefix caching is covered by the property test.)
  DriverResult cached = run(stories(), kSmallBlocks, PreemptionMode::kRecompute, 16, true);
  EXPECT_TRUE(testing::same_outputs(cached, ample()));
  EXPECT_GT(cached.stats.prefix_hits, 0);
}

}  // namespace
}  // namespace servelab
