// A deliberately small continuous-batching loop for tests of the memory system: first come,
// first served, greedy decoding, one sequence per request, and preemption of the most recently
// admitted request when the GPU pool runs short (by swap or by recompute). It drives the real
// block manager, cache engine and step runner; the server's scheduler (code/scheduler/) is the
// full version of the same loop.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <string>
#include <vector>

#include "block_manager/block_manager.h"
#include "cache_engine/cache_engine.h"
#include "common/error.h"
#include "engine/step_runner.h"
#include "model/llama_model.h"

namespace servelab::testing {

enum class PreemptionMode { kSwap, kRecompute };

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
  BlockManager blocks(options.blocks);
  CacheEngine cache(model.backend(), kv_cache_shape(model, options.blocks.block_size),
                    options.blocks.num_gpu_blocks, options.blocks.num_cpu_blocks);
  StepRunner runner(model, cache);

  const size_t count = requests.size();
  DriverResult result;
  result.outputs.assign(count, {});
  std::vector<bool> preempted_before(count, false);
  std::deque<size_t> waiting, swapped;
  std::vector<size_t> running;  // admission order: oldest first
  for (size_t r = 0; r < count; ++r) waiting.push_back(r);
  size_t finished = 0;
  auto id = [](size_t r) { return static_cast<int64_t>(r); };  // request id = sequence id

  while (finished < count) {
    CachePlan plan;
    bool preempted = false;
    auto preempt = [&](size_t victim) {
      preempted = true;
      preempted_before[victim] = true;
      if (options.mode == PreemptionMode::kSwap && blocks.can_swap_out(id(victim))) {
        std::vector<BlockMove> moves = blocks.swap_out(id(victim));
        plan.swap_out.insert(plan.swap_out.end(), moves.begin(), moves.end());
        swapped.push_back(victim);
      } else {
        blocks.preempt_by_recompute(id(victim));
        waiting.push_front(victim);
      }
    };

    // 1. Every running sequence needs a slot for its last token; when there is none, the most
    //    recently admitted request gives its blocks up (possibly the one asking).
    std::vector<size_t> decode;
    std::deque<size_t> queue(running.begin(), running.end());
    running.clear();
    while (!queue.empty()) {
      const size_t r = queue.front();
      queue.pop_front();
      bool self_preempted = false;
      while (!blocks.can_append_slots(id(r))) {
        if (!queue.empty()) {
          preempt(queue.back());
          queue.pop_back();
        } else {
          preempt(r);
          self_preempted = true;
          break;
        }
      }
      if (self_preempted) continue;
      AppendResult append = blocks.append_slot(id(r), result.outputs[r].back());
      if (append.copy) plan.copies.push_back(*append.copy);
      running.push_back(r);
      decode.push_back(r);
    }
    // 2. Swapped requests come back first come, first served, when nothing was preempted.
    while (!preempted && !swapped.empty() && blocks.can_swap_in(id(swapped.front()))) {
      const size_t r = swapped.front();
      swapped.pop_front();
      std::vector<BlockMove> moves = blocks.swap_in(id(r));
      plan.swap_in.insert(plan.swap_in.end(), moves.begin(), moves.end());
      AppendResult append = blocks.append_slot(id(r), result.outputs[r].back());
      if (append.copy) plan.copies.push_back(*append.copy);
      running.push_back(r);
      decode.push_back(r);
    }
    // 3. New (and recompute-preempted) requests, while blocks allow.
    std::vector<std::pair<size_t, int64_t>> prefill;  // request, cached tokens
    while (!preempted && swapped.empty() && !waiting.empty() &&
           static_cast<int64_t>(running.size()) < options.max_running) {
      const size_t r = waiting.front();
      std::vector<int32_t> tokens = requests[r].prompt;
      tokens.insert(tokens.end(), result.outputs[r].begin(), result.outputs[r].end());
      const int64_t total =
          static_cast<int64_t>(requests[r].prompt.size()) + requests[r].max_new_tokens;
      AllocationStatus status = blocks.can_allocate(tokens, total);
      if (status == AllocationStatus::kNever)
        fail("request ", r, " can never fit in ", options.blocks.num_gpu_blocks, " blocks");
      if (status == AllocationStatus::kLater) break;
      waiting.pop_front();
      const int64_t cached = blocks.allocate(id(r), id(r), tokens);
      if (preempted_before[r]) result.recomputed_tokens += static_cast<int64_t>(tokens.size());
      prefill.emplace_back(r, cached);
      running.push_back(r);
    }
    if (decode.empty() && prefill.empty())
      fail("the driver is stuck: nothing can run (", waiting.size(), " waiting, ", swapped.size(),
           " swapped)");

    // 4. One step over decodes and prefills together.
    std::vector<StepSequence> step;
    std::vector<size_t> order;
    for (size_t r : decode) {
      step.push_back(
          {{result.outputs[r].back()}, blocks.num_tokens(id(r)) - 1, &blocks.block_table(id(r))});
      order.push_back(r);
    }
    for (const auto& [r, cached] : prefill) {
      std::vector<int32_t> tokens = requests[r].prompt;
      tokens.insert(tokens.end(), result.outputs[r].begin(), result.outputs[r].end());
      step.push_back({std::vector<int32_t>(tokens.begin() + cached, tokens.end()), cached,
                      &blocks.block_table(id(r))});
      order.push_back(r);
    }
    std::vector<int32_t> next = runner.run_greedy(plan, step);
    ++result.steps;
    result.max_running_seen =
        std::max(result.max_running_seen, static_cast<int64_t>(running.size()));

    // 5. Append the new tokens; finished requests give their blocks back.
    for (size_t i = 0; i < order.size(); ++i) {
      const size_t r = order[i];
      blocks.mark_computed(id(r));
      result.outputs[r].push_back(next[i]);
      if (static_cast<int64_t>(result.outputs[r].size()) == requests[r].max_new_tokens) {
        blocks.free_request(id(r));
        running.erase(std::find(running.begin(), running.end(), r));
        ++finished;
      }
    }
    blocks.check_invariants();
  }
  cache.synchronize();
  result.stats = blocks.stats();
  result.moved = cache.counters();
  return result;
}

}  // namespace servelab::testing
