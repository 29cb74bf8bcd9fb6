// Lab 07 (continuous batching): one iteration of the scheduler, ContinuousScheduler::schedule().
// Part lab07-preempt: every running request gets the slot for its next token, preempting the most
// recently admitted ones when the GPU pool is short. Part lab07-admit: waiting requests are
// admitted in arrival order within the step's token, sequence and block limits.
//
// The tests play the model and a clock: each step "takes" 10 ms plus 0.1 ms per token it
// computes, each scheduled sequence gets one token, and requests arrive at scripted times.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <vector>

#include "scheduler/continuous_batcher.h"

namespace servelab {
namespace {

struct ScriptedRequest {
  RequestId id;
  double arrival_ms;
  int64_t prompt_tokens;
  int64_t new_tokens;
  int64_t sequences = 1;
};

ContinuousSchedulerConfig small_config(int64_t gpu_blocks, int64_t cpu_blocks,
                                       PreemptionMode mode) {
  ContinuousSchedulerConfig config;
  config.batch_max_tokens = 256;
  config.batch_max_beams = 16;
  config.preemption_mode = mode;
  config.blocks.block_size = 4;
  config.blocks.num_gpu_blocks = gpu_blocks;
  config.blocks.num_cpu_blocks = cpu_blocks;
  config.blocks.watermark = 0.0;
  return config;
}

/// A fake clock and a fake model around the real scheduler.
class Simulation {
 public:
  explicit Simulation(ContinuousSchedulerConfig config) : scheduler_(std::move(config)) {}

  void script(std::vector<ScriptedRequest> requests) {
    for (const ScriptedRequest& request : requests) pending_.push_back(request);
    std::sort(pending_.begin(), pending_.end(),
              [](const auto& a, const auto& b) { return a.arrival_ms < b.arrival_ms; });
  }

  /// One iteration at the current time: arrivals, schedule, the "forward", one token per
  /// scheduled sequence. Returns the step.
  SchedulerStep step() {
    while (!pending_.empty() && pending_.front().arrival_ms <= now_ms_) {
      const ScriptedRequest& request = pending_.front();
      ScheduledRequestSpec spec;
      spec.id = request.id;
      for (int64_t i = 0; i < request.prompt_tokens; ++i)
        spec.prompt.push_back(static_cast<int32_t>(request.id * 100 + i));
      spec.max_total_tokens = request.prompt_tokens + request.new_tokens;
      spec.max_sequences = request.sequences;
      budget_[request.id] = request.new_tokens;
      arrival_[request.id] = request.arrival_ms;
      scheduler_.add(spec);
      pending_.erase(pending_.begin());
    }
    SchedulerStep step = scheduler_.schedule();
    const int64_t tokens = step.num_prefill_tokens + step.num_decode_tokens;
    now_ms_ += step.empty() ? 1.0 : 10.0 + 0.1 * static_cast<double>(tokens);
    scheduler_.complete_step(step);
    for (const ScheduledSequence& sequence : step.sequences) {
      const RequestId id = sequence.request;
      if (generated_[id] == 0) first_token_ms_[id] = now_ms_;
      generated_[id] += 1;
      if (generated_[id] >= budget_[id]) {
        scheduler_.finish(id);
        finished_.push_back(id);
      } else {
        scheduler_.append_token(sequence.sequence, 3);
      }
    }
    scheduler_.block_manager().check_invariants();
    return step;
  }

  /// Runs until every scripted request is done (or `max_steps`).
  void run(int max_steps = 10000) {
    for (int i = 0; i < max_steps && finished_.size() < budget_.size() + pending_.size(); ++i)
      step();
  }

  double ttft_ms(RequestId id) const { return first_token_ms_.at(id) - arrival_.at(id); }
  ContinuousScheduler& scheduler() { return scheduler_; }
  const std::vector<RequestId>& finished() const { return finished_; }
  int64_t generated(RequestId id) const { return generated_.count(id) ? generated_.at(id) : 0; }

 private:
  ContinuousScheduler scheduler_;
  std::vector<ScriptedRequest> pending_;
  double now_ms_ = 0;
  std::map<RequestId, int64_t> budget_, generated_;
  std::map<RequestId, double> arrival_, first_token_ms_;
  std::vector<RequestId> finished_;
};

// ---- lab07-preempt ------------------------------------------------------------------------------

TEST(Lab07Preempt, RunningRequestsDecodeOneTokenEachWithAnAmplePool) {
  Simulation simulation(small_config(64, 0, PreemptionMode::kSwap));
  simulation.script({{1, 0, 6, 5}, {2, 0, 9, 5}});
  simulation.step();  // the prompts
  SchedulerStep decode = simulation.step();
  ASSERT_EQ(decode.sequences.size(), 2u);
  EXPECT_EQ(decode.sequences[0].request, 1) << "oldest admitted first";
  EXPECT_EQ(decode.sequences[0].tokens, std::vector<int32_t>{3});
  EXPECT_EQ(decode.sequences[0].num_cached, 6);
  EXPECT_EQ(decode.num_decode_tokens, 2);
  EXPECT_TRUE(decode.swapped_out.empty() && decode.recomputed.empty());
}

TEST(Lab07Preempt, TheMostRecentlyAdmittedRequestIsSwappedOutFirst) {
  // 9 blocks: three 8-token prompts take 6; growing to 12 tokens each needs 3 more than exist.
  Simulation simulation(small_config(9, 32, PreemptionMode::kSwap));
  simulation.script({{1, 0, 8, 10}, {2, 0, 8, 10}, {3, 0, 8, 10}});
  std::vector<RequestId> swapped_out;
  for (int i = 0; i < 200 && simulation.finished().size() < 3; ++i) {
    SchedulerStep step = simulation.step();
    for (RequestId id : step.swapped_out) swapped_out.push_back(id);
    if (!step.swapped_out.empty()) {
      EXPECT_TRUE(step.plan.swap_in.empty()) << "no swap-in in a step that preempts";
      for (const ScheduledSequence& sequence : step.sequences)
        EXPECT_EQ(std::count(step.swapped_out.begin(), step.swapped_out.end(), sequence.request), 0)
            << "a request swapped out does not run in that step";
    }
  }
  ASSERT_FALSE(swapped_out.empty());
  EXPECT_EQ(swapped_out.front(), 3);
  EXPECT_EQ(simulation.finished().size(), 3u);
  for (RequestId id : {1, 2, 3}) EXPECT_EQ(simulation.generated(id), 10) << "request " << id;
  EXPECT_EQ(simulation.scheduler().block_manager().stats().gpu_blocks_used, 0);
  EXPECT_EQ(simulation.scheduler().block_manager().stats().cpu_blocks_used, 0);
}

TEST(Lab07Preempt, RecomputeSendsTheVictimBackToTheFrontOfWaiting) {
  Simulation simulation(small_config(9, 0, PreemptionMode::kRecompute));
  simulation.script({{1, 0, 8, 10}, {2, 0, 8, 10}, {3, 0, 8, 10}, {4, 500, 4, 2}});
  bool saw_recompute = false;
  for (int i = 0; i < 2000 && simulation.finished().size() < 4; ++i) {
    SchedulerStep step = simulation.step();
    if (!step.recomputed.empty()) {
      saw_recompute = true;
      EXPECT_TRUE(step.plan.swap_out.empty());
    }
  }
  EXPECT_TRUE(saw_recompute);
  EXPECT_EQ(simulation.finished().size(), 4u);
  EXPECT_GT(simulation.scheduler().stats().recomputed_tokens, 0);
  EXPECT_EQ(simulation.scheduler().block_manager().stats().gpu_blocks_used, 0);
}

TEST(Lab07Preempt, TheNewestRequestMakesRoomForTheOldestToFinish) {
  // 6 blocks of 4: request 1 (16 + 8 tokens) needs all 6 in the end; request 2 (4 + 6 tokens) is
  // admitted beside it, and gives its blocks up when request 1 needs them.
  Simulation simulation(small_config(6, 16, PreemptionMode::kSwap));
  simulation.script({{1, 0, 16, 8}, {2, 0, 4, 6}});
  simulation.run();
  EXPECT_EQ(simulation.finished().size(), 2u);
  EXPECT_GE(simulation.scheduler().stats().swap_preemptions, 1);
}

// ---- lab07-admit --------------------------------------------------------------------------------

TEST(Lab07Admit, WaitingRequestsAreAdmittedInArrivalOrderWithinTheTokenBudget) {
  ContinuousSchedulerConfig config = small_config(256, 0, PreemptionMode::kSwap);
  config.batch_max_tokens = 20;
  Simulation simulation(config);
  simulation.script({{1, 0, 8, 4}, {2, 0, 8, 4}, {3, 0, 6, 4}, {4, 0, 2, 4}});
  SchedulerStep first = simulation.step();
  EXPECT_EQ(first.admitted, (std::vector<RequestId>{1, 2}))
      << "8 + 8 + 6 > 20, and 4 may not overtake 3";
  EXPECT_EQ(first.num_prefill_tokens, 16);
  SchedulerStep second = simulation.step();
  EXPECT_EQ(second.admitted, (std::vector<RequestId>{3, 4}));
  EXPECT_LE(second.num_prefill_tokens + second.num_decode_tokens, 20);
}

TEST(Lab07Admit, APromptLongerThanTheRestOfTheBudgetStillRunsAsTheStepsFirstPrompt) {
  ContinuousSchedulerConfig config = small_config(256, 0, PreemptionMode::kSwap);
  config.batch_max_tokens = 12;
  Simulation simulation(config);
  simulation.script({{1, 0, 4, 20}, {2, 10, 12, 2}});
  simulation.step();
  SchedulerStep with_decode = simulation.step();
  EXPECT_EQ(with_decode.admitted, std::vector<RequestId>{2})
      << "1 decode token + 12 > 12, but a step's first prompt always fits";
}

TEST(Lab07Admit, EverySampleCountsAgainstTheSequenceLimit) {
  ContinuousSchedulerConfig config = small_config(256, 0, PreemptionMode::kSwap);
  config.batch_max_beams = 6;
  Simulation simulation(config);
  simulation.script({{1, 0, 4, 4, 4}, {2, 0, 4, 4, 3}, {3, 0, 4, 4, 1}});
  SchedulerStep first = simulation.step();
  EXPECT_EQ(first.admitted, std::vector<RequestId>{1}) << "4 + 3 > 6, and 3 may not overtake 2";
}

TEST(Lab07Admit, RequestsWaitForBlocksAndNeverOvertake) {
  // 8 blocks: request 1 takes 6 (24 tokens); request 2 needs 3 and waits; 3 needs 1 but must not
  // overtake 2.
  Simulation simulation(small_config(8, 0, PreemptionMode::kSwap));
  simulation.script({{1, 0, 24, 2}, {2, 0, 12, 2}, {3, 0, 4, 2}});
  SchedulerStep first = simulation.step();
  EXPECT_EQ(first.admitted, std::vector<RequestId>{1});
  simulation.run();
  EXPECT_EQ(simulation.finished(), (std::vector<RequestId>{1, 2, 3}));
}

TEST(Lab07Admit, ARequestThatCanNeverFitIsRejectedAndTheNextOneRuns) {
  Simulation simulation(small_config(8, 0, PreemptionMode::kSwap));
  simulation.script({{1, 0, 4, 2}});
  ScheduledRequestSpec huge;
  huge.id = 2;
  huge.prompt.assign(20, 1);
  huge.max_total_tokens = 20 + 30;  // 13 blocks of 4: more than the pool
  EXPECT_FALSE(simulation.scheduler().check(huge).empty());
  SchedulerStep first = simulation.step();
  EXPECT_EQ(first.admitted, std::vector<RequestId>{1});
}

TEST(Lab07Admit, AShortRequestBehindALongOneGetsItsFirstTokenWithinAStep) {
  // The point of iteration-level scheduling: request 2 arrives while request 1 (500 tokens) runs,
  // and is admitted at the next step instead of waiting for 1 to finish.
  Simulation simulation(small_config(512, 0, PreemptionMode::kSwap));
  simulation.script({{1, 0, 8, 500}, {2, 100, 8, 4}});
  simulation.run();
  EXPECT_EQ(simulation.finished(), (std::vector<RequestId>{2, 1}));
  EXPECT_LT(simulation.ttft_ms(2), 25.0) << "one step of about 10 ms after its arrival";
}

TEST(Lab07Admit, SwappedRequestsComeBackBeforeAnyNewOneIsAdmitted) {
  Simulation simulation(small_config(9, 32, PreemptionMode::kSwap));
  simulation.script({{1, 0, 8, 10}, {2, 0, 8, 10}, {3, 0, 8, 10}, {4, 30, 2, 2}});
  for (int i = 0; i < 200 && simulation.finished().size() < 4; ++i) {
    SchedulerStep step = simulation.step();
    if (!step.admitted.empty()) {
      EXPECT_EQ(simulation.scheduler().num_swapped(), 0)
          << "step " << i << " admitted past a swapped request";
    }
  }
  EXPECT_EQ(simulation.finished().size(), 4u);
}

}  // namespace
}  // namespace servelab
