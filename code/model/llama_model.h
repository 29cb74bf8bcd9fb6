// The Llama-family forward pass (Llama, Mistral, Qwen2), written once over the Backend's ops so
// that the CPU reference and the CUDA backend run the same code. It runs a batch of sequences of
// different lengths in one call: prompts (prefill) and single tokens (decode) alike.
#pragma once

#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/model_config.h"
#include "model/model_weights.h"

namespace servelab {

/// One sequence's share of a forward call. Its keys and values live either in a contiguous
/// cache of its own (`cache`; the static-batching layout) or in blocks of a shared paged cache
/// (`paged_cache` + `block_table`; the continuous-batching layout). All sequences of a batch use
/// the same layout.
struct ForwardSequence {
  std::vector<int32_t> tokens;         ///< new tokens: the prompt at prefill, one token at decode
  ContiguousKvCache* cache = nullptr;  ///< holds positions [0, cache->length); the new ones follow

  PagedKvCache* paged_cache = nullptr;                ///< the shared pool, or null
  const std::vector<int32_t>* block_table = nullptr;  ///< blocks for all positions incl. new ones
  int64_t num_cached = 0;  ///< positions already in the paged cache; the new tokens follow
};

class LlamaModel {
 public:
  /// Loads config.json (+ generation_config.json) and the safetensors of a Hugging Face folder.
  static LlamaModel load(const std::string& model_dir, Backend& backend);
  LlamaModel(ModelConfig config, ModelWeights weights, Backend& backend);

  const ModelConfig& config() const { return config_; }
  Backend& backend() const { return *backend_; }

  /// A cache for one sequence of up to `capacity` tokens (at most the model's context).
  ContiguousKvCache new_kv_cache(int64_t capacity) const;

  /// Runs the new tokens of every sequence through the model and appends their keys and values
  /// to the sequences' caches (each cache's length grows by its number of new tokens).
  /// @return fp32 host logits: [num_sequences, vocab] for the last new token of each sequence,
  ///         or, with all_positions, [total new tokens, vocab] in batch order.
  Tensor forward(std::vector<ForwardSequence>& batch, bool all_positions = false);

  /// The same forward, followed by argmax on the device: the greedy next token of each
  /// sequence, without copying [num_sequences, vocab] logits back to the host.
  std::vector<int32_t> forward_greedy(std::vector<ForwardSequence>& batch);

  /// A paged cache for this model: `num_blocks` blocks of `block_size` tokens per layer.
  PagedKvCache new_paged_kv_cache(int64_t num_blocks, int64_t block_size = 16) const;

 private:
  void check_batch(const std::vector<ForwardSequence>& batch) const;
  StepLayout make_layout(const std::vector<ForwardSequence>& batch, bool all_positions) const;
  /// The ops of one forward call; returns [output rows, vocab] logits on the device.
  Tensor forward_ops(const Step& step);
  Tensor run(std::vector<ForwardSequence>& batch, bool all_positions, bool greedy);

  ModelConfig config_;
  ModelWeights weights_;
  Backend* backend_;
  std::vector<float> inv_freq_;  ///< [head_dim / 2], host
  Tensor inv_freq_device_;       ///< the same, F32 on the backend's device
};

}  // namespace servelab
