// A continuous-batching loop for tests of the memory system: greedy decoding, one sequence per
// request, the real scheduler (ContinuousScheduler: first come, first served, the most recently
// admitted request preempted by swap or recompute when the GPU pool runs short) driving the real
// block manager, cache engine and step runner, without the engine thread, sampling or HTTP of the
// server (ContinuousEngine).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "cache_engine/cache_engine.h"
#include "common/error.h"
#include "engine/step_runner.h"
#include "model/llama_model.h"
#include "scheduler/continuous_batcher.h"

namespace servelab::testing {

struct DriverRequest {
  std::vector<int32_t> prompt;
  int64_t max_new_tokens = 0;
};

struct DriverOptions {
  BlockManagerConfig blocks;
  PreemptionMode mode = PreemptionMode::kSwap;
  int64_t max_running = 64;
};

struct DriverResult {
  std::vector<std::vector<int32_t>> outputs;  ///< generated tokens, per request
  BlockManagerStats stats;                    ///< at the end (every request freed)
  CacheEngineCounters moved;
  int64_t steps = 0;
  int64_t max_running_seen = 0;
  int64_t recomputed_tokens = 0;  ///< tokens prefilled again after a recompute preemption
};

/// Passes when two runs generated the same tokens for every request; the failure names the first
/// request and token that differ.
inline ::testing::AssertionResult same_outputs(const DriverResult& actual,
                                               const DriverResult& expected) {
  if (actual.outputs.size() != expected.outputs.size())
    return ::testing::AssertionFailure() << "different numbers of requests";
  for (size_t r = 0; r < expected.outputs.size(); ++r) {
    const auto& got = actual.outputs[r];
    const auto& want = expected.outputs[r];
    for (size_t t = 0; t < std::min(got.size(), want.size()); ++t) {
      if (got[t] != want[t]) {
        return ::testing::AssertionFailure()
               << "request " << r << " differs first at generated token " << t << ": " << got[t]
               << " instead of " << want[t];
      }
    }
    if (got.size() != want.size()) {
      return ::testing::AssertionFailure() << "request " << r << " generated " << got.size()
                                           << " tokens instead of " << want.size();
    }
  }
  return ::testing::AssertionSuccess();
}

inline DriverResult run_greedy_requests(LlamaModel& model,
                                        const std::vector<DriverRequest>& requests,
                                        const DriverOptions& options) {
  ContinuousSchedulerConfig config;
  config.batch_max_tokens = int64_t{1} << 30;  // no token budget: only the blocks limit a step
  config.batch_max_beams = options.max_running;
  config.preemption_mode = options.mode;
  config.blocks = options.blocks;
  ContinuousScheduler scheduler(config);
  CacheEngine cache(model.backend(), kv_cache_shape(model, options.blocks.block_size),
                    options.blocks.num_gpu_blocks, options.blocks.num_cpu_blocks);
  StepRunner runner(model, cache);

  DriverResult result;
  result.outputs.assign(requests.size(), {});
  for (size_t r = 0; r < requests.size(); ++r) {
    ScheduledRequestSpec spec;
    spec.id = static_cast<RequestId>(r);
    spec.prompt = requests[r].prompt;
    spec.max_total_tokens =
        static_cast<int64_t>(requests[r].prompt.size()) + requests[r].max_new_tokens;
    scheduler.add(std::move(spec));
  }
  size_t finished = 0;
  while (finished < requests.size()) {
    const SchedulerStep step = scheduler.schedule();
    if (!step.rejected.empty())
      fail("request ", step.rejected.front().first,
           " can never fit: ", step.rejected.front().second);
    if (step.empty())
      fail("the driver is stuck: nothing can run (", scheduler.num_waiting(), " waiting, ",
           scheduler.num_swapped(), " swapped)");
    std::vector<StepSequence> batch;
    for (const ScheduledSequence& s : step.sequences)
      batch.push_back({s.tokens, s.num_cached, &scheduler.block_table(s.sequence)});
    const std::vector<int32_t> next = runner.run_greedy(step.plan, batch);
    scheduler.complete_step(step);
    ++result.steps;
    result.max_running_seen = std::max(result.max_running_seen, scheduler.num_running());
    for (size_t i = 0; i < step.sequences.size(); ++i) {
      const ScheduledSequence& s = step.sequences[i];
      std::vector<int32_t>& output = result.outputs[static_cast<size_t>(s.request)];
      output.push_back(next[i]);
      if (static_cast<int64_t>(output.size()) ==
          requests[static_cast<size_t>(s.request)].max_new_tokens) {
        scheduler.finish(s.request);
        ++finished;
      } else {
        scheduler.append_token(s.sequence, next[i]);
      }
    }
    scheduler.block_manager().check_invariants();
  }
  cache.synchronize();
  result.stats = scheduler.block_manager().stats();
  result.moved = cache.counters();
  result.recomputed_tokens = scheduler.stats().recomputed_tokens;
  return result;
}

}  // namespace servelab::testing
