#include "engine/step_runner.h"

#include "common/error.h"

namespace servelab {

KvCacheShape kv_cache_shape(const LlamaModel& model, int64_t block_size) {
  KvCacheShape shape;
  shape.num_layers = model.config().num_hidden_layers;
  shape.num_kv_heads = model.config().num_key_value_heads;
  shape.head_dim = model.config().head_dim;
  shape.block_size = block_size;
  shape.dtype = model.backend().compute_dtype();
  return shape;
}

StepRunner::StepRunner(LlamaModel& model, CacheEngine& cache_engine)
    : model_(&model), cache_engine_(&cache_engine) {
  const ModelConfig& config = model.config();
  const KvCacheShape& shape = cache_engine.shape();
  if (shape.num_layers != config.num_hidden_layers ||
      shape.num_kv_heads != config.num_key_value_heads || shape.head_dim != config.head_dim) {
    fail("step runner: the cache engine's KV shape (", shape.num_layers, " layers, ",
         shape.num_kv_heads, " KV heads, head_dim ", shape.head_dim, ") does not fit the model (",
         config.num_hidden_layers, ", ", config.num_key_value_heads, ", ", config.head_dim, ")");
  }
}

std::vector<ForwardSequence> StepRunner::make_batch(const CachePlan& plan,
                                                    const std::vector<StepSequence>& sequences) {
  // The plan first: the forward reads blocks that were just swapped in or copied, and writes
  // into blocks that swap-outs just emptied.
  cache_engine_->execute(plan);
  std::vector<ForwardSequence> batch;
  batch.reserve(sequences.size());
  for (const StepSequence& sequence : sequences) {
    if (sequence.block_table == nullptr) fail("step runner: a sequence has no block table");
    ForwardSequence forward;
    forward.tokens = sequence.tokens;
    forward.paged_cache = &cache_engine_->gpu_cache();
    forward.block_table = sequence.block_table;
    forward.num_cached = sequence.num_cached;
    batch.push_back(std::move(forward));
  }
  return batch;
}

Tensor StepRunner::run(const CachePlan& plan, const std::vector<StepSequence>& sequences) {
  std::vector<ForwardSequence> batch = make_batch(plan, sequences);
  if (batch.empty()) return Tensor();
  return model_->forward(batch);
}

std::vector<int32_t> StepRunner::run_greedy(const CachePlan& plan,
                                            const std::vector<StepSequence>& sequences) {
  std::vector<ForwardSequence> batch = make_batch(plan, sequences);
  if (batch.empty()) return {};
  return model_->forward_greedy(batch);
}

}  // namespace servelab
