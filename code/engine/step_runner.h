// One step of the paged engine: execute the block manager's cache plan (swaps and copies) with
// the cache engine, then run the model forward over every scheduled sequence at once, prompts and
// single decode tokens packed together. It decides nothing: which sequences run and what moves
// is the scheduler's and the block manager's business; sampling and stopping are the caller's.
#pragma once

#include <cstdint>
#include <vector>

#include "block_manager/cache_plan.h"
#include "cache_engine/cache_engine.h"
#include "model/llama_model.h"

namespace servelab {

/// One sequence's part in a step.
struct StepSequence {
  /// The tokens whose keys and values this step computes: a prompt (or what a prefix-cache hit
  /// left of it, or a preempted sequence's prompt plus its generated tokens) at prefill, one
  /// token at decode.
  std::vector<int32_t> tokens;
  int64_t num_cached = 0;  ///< positions already in the cache; `tokens` follow them
  /// The sequence's block table in the GPU pool, covering num_cached + tokens.size() positions
  /// (the block manager's, valid until it changes).
  const std::vector<int32_t>* block_table = nullptr;
};

/// The KV cache shape of `model` in blocks of `block_size` tokens, in the backend's compute dtype.
KvCacheShape kv_cache_shape(const LlamaModel& model, int64_t block_size);

class StepRunner {
 public:
  StepRunner(LlamaModel& model, CacheEngine& cache_engine);

  /// Executes `plan`, then the forward. @return fp32 host logits [sequences, vocab] of each
  /// sequence's last token.
  Tensor run(const CachePlan& plan, const std::vector<StepSequence>& sequences);
  /// The same, with the argmax taken on the device: each sequence's greedy next token.
  std::vector<int32_t> run_greedy(const CachePlan& plan,
                                  const std::vector<StepSequence>& sequences);

 private:
  std::vector<ForwardSequence> make_batch(const CachePlan& plan,
                                          const std::vector<StepSequence>& sequences);

  LlamaModel* model_;
  CacheEngine* cache_engine_;
};

}  // namespace servelab
