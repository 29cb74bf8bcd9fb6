// Unit tests of the continuous-batching scheduler (policy only: no model, no GPU). A scripted
// "model" appends one token per scheduled sequence per step; the tests check what each step runs,
// the three queues, preemption by swap and by recompute, the batch limits, forks and that every
// block comes back.
#include "scheduler/continuous_batcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "common/error.h"

namespace servelab {
namespace {

ContinuousSchedulerConfig config_with(int64_t gpu_blocks, int64_t cpu_blocks,
                                      PreemptionMode mode = PreemptionMode::kSwap) {
  ContinuousSchedulerConfig config;
  config.batch_max_tokens = 1024;
  config.batch_max_beams = 64;
  config.preemption_mode = mode;
  config.blocks.block_size = 4;
  config.blocks.num_gpu_blocks = gpu_blocks;
  config.blocks.num_cpu_blocks = cpu_blocks;
  config.blocks.watermark = 0.0;
  return config;
}

ScheduledRequestSpec spec(RequestId id, int64_t prompt_length, int64_t new_tokens,
                          int64_t sequences = 1) {
  ScheduledRequestSpec spec;
  spec.id = id;
  for (int64_t i = 0; i < prompt_length; ++i)
    spec.prompt.push_back(static_cast<int32_t>(id * 1000 + i));
  spec.max_total_tokens = prompt_length + new_tokens;
  spec.max_sequences = sequences;
  return spec;
}

/// Plays the model: after each step every scheduled sequence gets one token; a request finishes
/// after `new_tokens` of them.
class Driver {
 public:
  explicit Driver(ContinuousSchedulerConfig config) : scheduler(std::move(config)) {}
  void add(const ScheduledRequestSpec& request) {
    budget[request.id] = request.max_total_tokens - static_cast<int64_t>(request.prompt.size());
    scheduler.add(request);
  }
  SchedulerStep step() {
    SchedulerStep step = scheduler.schedule();
    scheduler.complete_step(step);
    for (const ScheduledSequence& sequence : step.sequences) {
      generated[sequence.request] += 1;
      if (generated[sequence.request] >= budget[sequence.request]) {
        scheduler.finish(sequence.request);
        finished.push_back(sequence.request);
      } else {
        scheduler.append_token(sequence.sequence, 7);
      }
    }
    scheduler.block_manager().check_invariants();
    return step;
  }
  ContinuousScheduler scheduler;
  std::map<RequestId, int64_t> budget, generated;
  std::vector<RequestId> finished;
};

TEST(ContinuousScheduler, NewRequestsArePrefilledTogetherThenDecodeOneTokenEach) {
  Driver driver(config_with(64, 0));
  driver.add(spec(1, 5, 3));
  driver.add(spec(2, 9, 3));
  SchedulerStep first = driver.step();
  ASSERT_EQ(first.sequences.size(), 2u);
  EXPECT_TRUE(first.sequences[0].prefill);
  EXPECT_EQ(first.sequences[0].tokens.size(), 5u);
  EXPECT_EQ(first.sequences[1].tokens.size(), 9u);
  EXPECT_EQ(first.num_prefill_tokens, 14);
  EXPECT_EQ(first.admitted, (std::vector<RequestId>{1, 2}));
  SchedulerStep second = driver.step();
  ASSERT_EQ(second.sequences.size(), 2u);
  EXPECT_FALSE(second.sequences[0].prefill);
  EXPECT_EQ(second.sequences[0].tokens, std::vector<int32_t>{7});
  EXPECT_EQ(second.sequences[0].num_cached, 5);
  EXPECT_EQ(second.num_decode_tokens, 2);
}

TEST(ContinuousScheduler, ARequestArrivingMidwayJoinsTheNextStepBesideTheRunningOnes) {
  Driver driver(config_with(64, 0));
  driver.add(spec(1, 4, 10));
  driver.step();
  driver.step();
  driver.add(spec(2, 6, 2));
  SchedulerStep step = driver.step();
  ASSERT_EQ(step.sequences.size(), 2u);
  EXPECT_EQ(step.sequences[0].request, 1);  // decodes first
  EXPECT_FALSE(step.sequences[0].prefill);
  EXPECT_EQ(step.sequences[1].request, 2);
  EXPECT_TRUE(step.sequences[1].prefill);
}

TEST(ContinuousScheduler, TheTokenBudgetStopsAdmissionInArrivalOrder) {
  ContinuousSchedulerConfig config = config_with(256, 0);
  config.batch_max_tokens = 20;
  Driver driver(config);
  driver.add(spec(1, 8, 4));
  driver.add(spec(2, 8, 4));
  driver.add(spec(3, 3, 4));  // would fit the budget, but may not overtake request 2's wait
  driver.add(spec(4, 8, 4));
  SchedulerStep first = driver.step();
  EXPECT_EQ(first.admitted, (std::vector<RequestId>{1, 2, 3}));
  EXPECT_LE(first.num_prefill_tokens + first.num_decode_tokens, 20);
  SchedulerStep second = driver.step();
  EXPECT_EQ(second.admitted, (std::vector<RequestId>{4}));
  EXPECT_EQ(second.num_decode_tokens, 3);
}

TEST(ContinuousScheduler, TheSequenceLimitCountsEverySampleARequestWillRun) {
  ContinuousSchedulerConfig config = config_with(256, 64);
  config.batch_max_beams = 5;
  Driver driver(config);
  driver.add(spec(1, 4, 4, /*sequences=*/4));
  driver.add(spec(2, 4, 4, /*sequences=*/2));
  driver.add(spec(3, 4, 4));
  SchedulerStep first = driver.step();
  EXPECT_EQ(first.admitted, (std::vector<RequestId>{1})) << "4 + 2 > 5, and 3 may not overtake";
}

TEST(ContinuousScheduler, APromptThatCanNeverFitIsRefusedWithTheNumbers) {
  ContinuousSchedulerConfig config = config_with(8, 0);
  config.batch_max_tokens = 40;
  ContinuousScheduler scheduler(config);
  EXPECT_NE(scheduler.check(spec(1, 41, 1)).find("batch_max_tokens = 40"), std::string::npos);
  EXPECT_NE(scheduler.check(spec(1, 20, 20)).find("8 blocks of 4 tokens"), std::string::npos);
  EXPECT_NE(scheduler.check(spec(1, 4, 4, 100)).find("batch_max_beams"), std::string::npos);
  EXPECT_NE(scheduler.check(spec(1, 0, 4)).find("empty"), std::string::npos);
  EXPECT_EQ(scheduler.check(spec(1, 16, 16)), "");
  EXPECT_THROW(scheduler.add(spec(1, 41, 1)), Error);
  scheduler.add(spec(1, 4, 4));
  EXPECT_THROW(scheduler.add(spec(1, 4, 4)), Error) << "ids are unique";
}

TEST(ContinuousScheduler, WhenBlocksRunShortTheNewestRequestIsSwappedOutAndComesBackLater) {
  // 6 GPU blocks of 4 tokens: two requests of 8-token prompts fill 4, and each needs 2 more to
  // reach 16 tokens: both cannot finish side by side.
  Driver driver(config_with(6, 16));
  driver.add(spec(1, 8, 8));
  driver.add(spec(2, 8, 8));
  bool saw_swap_out = false, saw_swap_in = false;
  for (int i = 0; i < 40 && driver.finished.size() < 2; ++i) {
    SchedulerStep step = driver.step();
    if (!step.swapped_out.empty()) {
      saw_swap_out = true;
      EXPECT_EQ(step.swapped_out, std::vector<RequestId>{2}) << "the most recently admitted";
      EXPECT_FALSE(step.plan.swap_out.empty());
      EXPECT_TRUE(step.plan.swap_in.empty()) << "no swap-in in a step that preempts";
      EXPECT_EQ(driver.scheduler.num_swapped(), 1);
    }
    if (!step.swapped_in.empty()) {
      saw_swap_in = true;
      EXPECT_FALSE(step.plan.swap_in.empty());
    }
  }
  EXPECT_TRUE(saw_swap_out);
  EXPECT_TRUE(saw_swap_in);
  EXPECT_EQ(driver.finished, (std::vector<RequestId>{1, 2}));
  EXPECT_EQ(driver.generated[2], 8);
  EXPECT_EQ(driver.scheduler.stats().swap_preemptions, 1);
  EXPECT_EQ(driver.scheduler.block_manager().stats().gpu_blocks_used, 0);
  EXPECT_EQ(driver.scheduler.block_manager().stats().cpu_blocks_used, 0);
}

TEST(ContinuousScheduler, RecomputeDropsTheBlocksAndPrefillsPromptPlusOutputAgain) {
  Driver driver(config_with(6, 0, PreemptionMode::kRecompute));
  driver.add(spec(1, 8, 8));
  driver.add(spec(2, 8, 8));
  int64_t recomputed_length = 0;
  for (int i = 0; i < 40 && driver.finished.size() < 2; ++i) {
    const int64_t generated_before = driver.generated[2];
    SchedulerStep step = driver.step();
    if (!step.recomputed.empty()) {
      EXPECT_EQ(step.recomputed, std::vector<RequestId>{2});
      EXPECT_TRUE(step.plan.swap_out.empty());
      EXPECT_EQ(driver.scheduler.num_waiting(), 1) << "back at the front of waiting";
    }
    for (const ScheduledSequence& sequence : step.sequences)
      if (sequence.request == 2 && sequence.prefill && generated_before > 0)
        recomputed_length = static_cast<int64_t>(sequence.tokens.size());
  }
  EXPECT_EQ(driver.finished, (std::vector<RequestId>{1, 2}));
  EXPECT_EQ(driver.scheduler.stats().recompute_preemptions, 1);
  EXPECT_GT(recomputed_length, 8) << "the prompt and the tokens generated before";
  EXPECT_EQ(driver.scheduler.block_manager().stats().gpu_blocks_used, 0);
}

TEST(ContinuousScheduler, SwapFallsBackToRecomputeWhenTheCpuPoolIsFull) {
  Driver driver(config_with(6, 0, PreemptionMode::kSwap));  // no swap space at all
  driver.add(spec(1, 8, 8));
  driver.add(spec(2, 8, 8));
  for (int i = 0; i < 40 && driver.finished.size() < 2; ++i) driver.step();
  EXPECT_EQ(driver.finished.size(), 2u);
  EXPECT_EQ(driver.scheduler.stats().swap_preemptions, 0);
  EXPECT_EQ(driver.scheduler.stats().recompute_preemptions, 1);
}

TEST(ContinuousScheduler, NoNewRequestIsAdmittedWhileOneIsSwappedOut) {
  Driver driver(config_with(6, 16));
  driver.add(spec(1, 8, 8));
  driver.add(spec(2, 8, 8));
  int step_index = 0;
  for (; step_index < 40 && driver.scheduler.num_swapped() == 0; ++step_index) driver.step();
  ASSERT_EQ(driver.scheduler.num_swapped(), 1);
  driver.add(spec(3, 1, 1));  // tiny: would fit, but the swapped request comes first
  while (driver.finished.size() < 3) {
    SchedulerStep step = driver.step();
    if (!step.admitted.empty()) {
      EXPECT_EQ(driver.scheduler.num_swapped(), 0) << "admitted past a swapped request";
    }
  }
}

TEST(ContinuousScheduler, ForkedSamplesShareThePromptAndFreeingThemGivesEveryBlockBack) {
  Driver driver(config_with(64, 0));
  driver.add(spec(1, 6, 4, /*sequences=*/3));
  ContinuousScheduler& scheduler = driver.scheduler;
  SchedulerStep step = scheduler.schedule();
  ASSERT_EQ(step.sequences.size(), 1u) << "the prompt runs once";
  scheduler.complete_step(step);
  const SequenceId parent = step.sequences[0].sequence;
  const int64_t used_before = scheduler.block_manager().stats().gpu_blocks_used;
  const SequenceId a = scheduler.fork(parent);
  const SequenceId b = scheduler.fork(parent);
  EXPECT_EQ(scheduler.block_manager().stats().gpu_blocks_used, used_before) << "shared";
  scheduler.append_token(parent, 1);
  scheduler.append_token(a, 2);
  scheduler.append_token(b, 3);
  SchedulerStep decode = scheduler.schedule();
  EXPECT_EQ(decode.sequences.size(), 3u);
  EXPECT_EQ(decode.plan.copies.size(), 2u) << "the shared half-full last block: copy-on-write";
  EXPECT_EQ(scheduler.tokens(b).back(), 3);
  scheduler.complete_step(decode);
  scheduler.free_sequence(a);
  EXPECT_THROW(scheduler.free_sequence(a), Error);
  EXPECT_EQ(scheduler.sequences_of(1), (std::vector<SequenceId>{parent, b}));
  scheduler.finish(1);
  EXPECT_EQ(scheduler.block_manager().stats().gpu_blocks_used, 0);
  EXPECT_EQ(scheduler.num_running(), 0);
}

TEST(ContinuousScheduler, AForkedRequestThatCannotBeSwappedFailsAloneAndTheOthersGoOn) {
  // No swap space: request 2 (two samples) must give its blocks up for request 1, and cannot be
  // recomputed.
  ContinuousScheduler scheduler(config_with(7, 0, PreemptionMode::kSwap));
  scheduler.add(spec(1, 8, 12));
  scheduler.add(spec(2, 4, 12, /*sequences=*/2));
  SchedulerStep step = scheduler.schedule();
  ASSERT_EQ(step.admitted, (std::vector<RequestId>{1, 2}));
  scheduler.complete_step(step);
  const SequenceId first = scheduler.sequences_of(1).front();
  const SequenceId parent = scheduler.sequences_of(2).front();
  const SequenceId child = scheduler.fork(parent);
  scheduler.append_token(first, 1);
  scheduler.append_token(parent, 1);
  scheduler.append_token(child, 2);
  std::vector<std::pair<RequestId, std::string>> failed;
  for (int i = 0; i < 12 && failed.empty(); ++i) {
    step = scheduler.schedule();
    failed = step.failed;
    scheduler.complete_step(step);
    for (const ScheduledSequence& sequence : step.sequences)
      scheduler.append_token(sequence.sequence, 3);
  }
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].first, 2);
  EXPECT_NE(failed[0].second.find("--num-cpu-blocks"), std::string::npos);
  EXPECT_FALSE(scheduler.has_request(2));
  EXPECT_EQ(scheduler.num_running(), 1);
  scheduler.block_manager().check_invariants();
}

TEST(ContinuousScheduler, FinishFreesARequestWhereverItIs) {
  Driver driver(config_with(6, 16));
  driver.add(spec(1, 8, 8));
  driver.add(spec(2, 8, 8));
  driver.add(spec(3, 4, 4));
  while (driver.scheduler.num_swapped() == 0) driver.step();
  driver.scheduler.finish(2);   // swapped
  driver.scheduler.finish(3);   // waiting
  driver.scheduler.finish(1);   // running
  driver.scheduler.finish(99);  // unknown: ignored
  EXPECT_EQ(driver.scheduler.num_running() + driver.scheduler.num_waiting() +
                driver.scheduler.num_swapped(),
            0);
  const BlockManagerStats stats = driver.scheduler.block_manager().stats();
  EXPECT_EQ(stats.gpu_blocks_used, 0);
  EXPECT_EQ(stats.cpu_blocks_used, 0);
  EXPECT_TRUE(driver.scheduler.schedule().empty());
}

TEST(ContinuousScheduler, AppendingTwiceWithoutAStepIsRefused) {
  Driver driver(config_with(64, 0));
  driver.add(spec(1, 4, 4));
  SchedulerStep step = driver.scheduler.schedule();
  EXPECT_THROW(driver.scheduler.append_token(step.sequences[0].sequence, 1), Error)
      << "the prompt's keys and values were not computed yet";
  driver.scheduler.complete_step(step);
  driver.scheduler.append_token(step.sequences[0].sequence, 1);
  EXPECT_THROW(driver.scheduler.append_token(step.sequences[0].sequence, 2), Error);
}

TEST(ContinuousScheduler, ManyRandomRequestsAllFinishWithEveryBlockBackInBothModes) {
  for (PreemptionMode mode : {PreemptionMode::kSwap, PreemptionMode::kRecompute}) {
    ContinuousSchedulerConfig config = config_with(24, 24, mode);
    config.batch_max_tokens = 48;
    config.batch_max_beams = 8;
    Driver driver(config);
    uint32_t state = 12345;
    auto next = [&](int64_t bound) {
      state = state * 1664525u + 1013904223u;
      return static_cast<int64_t>((state >> 8) % static_cast<uint32_t>(bound));
    };
    for (RequestId id = 1; id <= 40; ++id) driver.add(spec(id, 1 + next(30), 1 + next(40)));
    for (int i = 0; i < 5000 && driver.finished.size() < 40; ++i) driver.step();
    EXPECT_EQ(driver.finished.size(), 40u) << to_string(mode);
    for (RequestId id = 1; id <= 40; ++id) EXPECT_EQ(driver.generated[id], driver.budget[id]);
    EXPECT_GT(
        driver.scheduler.stats().swap_preemptions + driver.scheduler.stats().recompute_preemptions,
        0)
        << "the pool is small enough to preempt";
    EXPECT_EQ(driver.scheduler.block_manager().stats().gpu_blocks_used, 0);
    EXPECT_EQ(driver.scheduler.block_manager().stats().cpu_blocks_used, 0);
  }
}

// The worked timeline of docs/continuous-batching.md: three requests of 8 + 10 tokens in 9 GPU
// blocks of 4. Printed with SERVELAB_PRINT_TIMELINE=1; the facts the chapter states are checked.
TEST(ContinuousScheduler, TheDocsWorkedTimeline) {
  Driver driver(config_with(9, 64));
  for (RequestId id = 1; id <= 3; ++id) driver.add(spec(id, 8, 10));
  const bool print = std::getenv("SERVELAB_PRINT_TIMELINE") != nullptr;
  std::vector<std::string> lines;
  int64_t swap_outs = 0, swap_ins = 0;
  for (int index = 1; index <= 60 && driver.finished.size() < 3; ++index) {
    SchedulerStep step = driver.step();
    std::string line = "| " + std::to_string(index) + " | ";
    for (const ScheduledSequence& sequence : step.sequences)
      line += (sequence.prefill ? "prefill " : "decode ") + std::to_string(sequence.request) + " ";
    line += "| " + std::to_string(driver.scheduler.block_manager().stats().gpu_blocks_used) + " | ";
    for (RequestId id : step.swapped_out) line += "swap out " + std::to_string(id) + " ";
    for (RequestId id : step.swapped_in) line += "swap in " + std::to_string(id) + " ";
    for (RequestId id : driver.finished) line += "(" + std::to_string(id) + " done) ";
    line += "|";
    lines.push_back(line);
    swap_outs += static_cast<int64_t>(step.swapped_out.size());
    swap_ins += static_cast<int64_t>(step.swapped_in.size());
  }
  if (print)
    for (const std::string& line : lines) std::printf("%s\n", line.c_str());
  EXPECT_EQ(driver.finished.size(), 3u);
  EXPECT_EQ(driver.scheduler.stats().recompute_preemptions, 0);
  EXPECT_EQ(swap_outs, swap_ins);
  EXPECT_GT(swap_outs, 0);
  for (RequestId id = 1; id <= 3; ++id) EXPECT_EQ(driver.generated[id], 10);
}

}  // namespace
}  // namespace servelab
