#include "model/llama_model.h"

#include <algorithm>

#include "common/error.h"
#include "model/checkpoint.h"
#include "model/rope_frequencies.h"

namespace servelab {

LlamaModel LlamaModel::load(const std::string& model_dir, Backend& backend) {
  ModelConfig config = ModelConfig::load(model_dir);
  Checkpoint checkpoint = Checkpoint::open(model_dir);
  ModelWeights weights = load_model_weights(checkpoint, config, backend);
  return LlamaModel(std::move(config), std::move(weights), backend);
}

LlamaModel::LlamaModel(ModelConfig config, ModelWeights weights, Backend& backend)
    : config_(std::move(config)), weights_(std::move(weights)), backend_(&backend) {
  inv_freq_ = rope_inverse_frequencies(config_.head_dim, config_.rope_theta, config_.rope_scaling);
  inv_freq_device_ = backend.upload(inv_freq_.data(), DType::kF32,
                                    {static_cast<int64_t>(inv_freq_.size())}, DType::kF32);
}

PagedKvCache LlamaModel::new_paged_kv_cache(int64_t num_blocks, int64_t block_size) const {
  return backend_->allocate_paged_kv_cache(config_.num_hidden_layers, num_blocks, block_size,
                                           config_.num_key_value_heads, config_.head_dim);
}

ContiguousKvCache LlamaModel::new_kv_cache(int64_t capacity) const {
  if (capacity > config_.max_position_embeddings) {
    fail("a cache of ", capacity, " tokens exceeds the model's maximum context length of ",
         config_.max_position_embeddings, " tokens");
  }
  return backend_->allocate_kv_cache(config_.num_hidden_layers, capacity,
                                     config_.num_key_value_heads, config_.head_dim);
}

void LlamaModel::check_batch(const std::vector<ForwardSequence>& batch) const {
  if (batch.empty()) fail("forward: empty batch");
  const bool paged = batch.front().paged_cache != nullptr;
  for (size_t s = 0; s < batch.size(); ++s) {
    const ForwardSequence& sequence = batch[s];
    if (sequence.tokens.empty()) fail("forward: sequence ", s, " has no new tokens");
    if ((sequence.paged_cache != nullptr) != paged) {
      fail("forward: sequence ", s,
           " uses a different KV layout than sequence 0 (contiguous and "
           "paged sequences cannot share a batch)");
    }
    int64_t cached = 0;
    if (paged) {
      if (sequence.paged_cache != batch.front().paged_cache) {
        fail("forward: sequence ", s, " uses another paged cache than sequence 0");
      }
      if (sequence.block_table == nullptr) fail("forward: sequence ", s, " has no block table");
      if (sequence.num_cached < 0) fail("forward: sequence ", s, " has a negative cached length");
      cached = sequence.num_cached;
      const int64_t end = cached + static_cast<int64_t>(sequence.tokens.size());
      const int64_t block_size = sequence.paged_cache->block_size;
      const int64_t needed = (end + block_size - 1) / block_size;
      if (static_cast<int64_t>(sequence.block_table->size()) < needed) {
        fail("sequence ", s, " needs ", needed, " blocks for ", end,
             " positions but its block "
             "table has ",
             sequence.block_table->size());
      }
    } else {
      if (sequence.cache == nullptr) fail("forward: sequence ", s, " has no KV cache");
      cached = sequence.cache->length;
      const int64_t end = cached + static_cast<int64_t>(sequence.tokens.size());
      if (end > sequence.cache->capacity) {
        fail("sequence ", s, " needs ", end, " positions but its KV cache holds ",
             sequence.cache->capacity);
      }
    }
    const int64_t end = cached + static_cast<int64_t>(sequence.tokens.size());
    if (end > config_.max_position_embeddings) {
      fail("This model's maximum context length is ", config_.max_position_embeddings,
           " tokens; sequence ", s, " needs ", end);
    }
    if (config_.sliding_window && end > *config_.sliding_window) {
      fail("sequence ", s, " reaches ", end, " tokens, past the sliding window of ",
           *config_.sliding_window, "; sliding-window attention is not implemented");
    }
    for (int32_t token : sequence.tokens) {
      if (token < 0 || token >= config_.vocab_size) {
        fail("token id ", token, " is outside the vocabulary [0, ", config_.vocab_size, ")");
      }
    }
  }
}

namespace {

/// The smallest power of two >= value (and >= minimum). Rounding the sizes that shape kernel
/// launches means a CUDA graph recorded for one step can be replayed for the next ones.
int32_t round_up_pow2(int64_t value, int32_t minimum) {
  int64_t result = minimum;
  while (result < value) result *= 2;
  return static_cast<int32_t>(result);
}

}  // namespace

StepLayout LlamaModel::make_layout(const std::vector<ForwardSequence>& batch,
                                   bool all_positions) const {
  // Pack the new tokens of all sequences into one [total, ...] batch: every op except attention
  // treats tokens independently, so they need not know where one sequence ends.
  StepLayout layout;
  layout.query_start.push_back(0);
  const bool paged = batch.front().paged_cache != nullptr;
  int64_t max_blocks = 0;
  for (const ForwardSequence& sequence : batch) {
    const int64_t cached = paged ? sequence.num_cached : sequence.cache->length;
    const int64_t count = static_cast<int64_t>(sequence.tokens.size());
    for (int64_t i = 0; i < count; ++i) {
      layout.tokens.push_back(sequence.tokens[i]);
      layout.positions.push_back(static_cast<int32_t>(cached + i));
    }
    layout.query_start.push_back(static_cast<int32_t>(layout.tokens.size()));
    layout.context_lens.push_back(static_cast<int32_t>(cached + count));
    layout.max_query_len = std::max<int32_t>(layout.max_query_len, static_cast<int32_t>(count));
    if (all_positions) {
      for (int64_t i = 0; i < count; ++i)
        layout.output_rows.push_back(layout.query_start.back() - count + i);
    } else {
      layout.output_rows.push_back(layout.query_start.back() - 1);  // the last token predicts
    }
    if (paged) {
      max_blocks =
          std::max<int64_t>(max_blocks, (cached + count + sequence.paged_cache->block_size - 1) /
                                            sequence.paged_cache->block_size);
    } else {
      layout.contiguous.push_back(sequence.cache);
      layout.max_context_len =
          std::max<int32_t>(layout.max_context_len, static_cast<int32_t>(sequence.cache->capacity));
    }
  }
  if (!paged) {
    layout.max_context_len = round_up_pow2(layout.max_context_len, 64);
    return layout;
  }
  PagedKvCache* cache = batch.front().paged_cache;
  layout.paged = cache;
  layout.blocks_per_seq = round_up_pow2(max_blocks, 4);
  layout.max_context_len = static_cast<int32_t>(layout.blocks_per_seq * cache->block_size);
  layout.block_tables.assign(batch.size() * layout.blocks_per_seq, 0);
  for (size_t s = 0; s < batch.size(); ++s) {
    const std::vector<int32_t>& table = *batch[s].block_table;
    const int64_t used = (layout.context_lens[s] + cache->block_size - 1) / cache->block_size;
    std::copy(table.begin(), table.begin() + used,
              layout.block_tables.begin() + s * layout.blocks_per_seq);
    for (int32_t p = layout.context_lens[s] - static_cast<int32_t>(batch[s].tokens.size());
         p < layout.context_lens[s]; ++p) {
      layout.slot_mapping.push_back(static_cast<int32_t>(
          table[p / cache->block_size] * cache->block_size + p % cache->block_size));
    }
  }
  return layout;
}

Tensor LlamaModel::forward_ops(const Step& step) {
  Backend& ops = *backend_;
  const ModelConfig& c = config_;
  const int64_t total = step.layout.num_tokens();
  const int64_t hidden = c.hidden_size;

  Tensor residual = ops.scratch({total, hidden});  // the residual stream
  Tensor normed = ops.scratch({total, hidden});
  Tensor queries = ops.scratch({total, c.q_size()});
  Tensor keys = ops.scratch({total, c.kv_size()});
  Tensor values = ops.scratch({total, c.kv_size()});
  Tensor attention_out = ops.scratch({total, c.q_size()});
  Tensor projected = ops.scratch({total, hidden});
  Tensor gate = ops.scratch({total, c.intermediate_size});
  Tensor up = ops.scratch({total, c.intermediate_size});

  ops.embedding(weights_.embed_tokens, step.tokens, residual);

  // Per-head views of the projections: [total, heads, head_dim].
  Tensor queries_by_head = queries.view({total, c.num_attention_heads, c.head_dim});
  Tensor keys_by_head = keys.view({total, c.num_key_value_heads, c.head_dim});
  Tensor values_by_head = values.view({total, c.num_key_value_heads, c.head_dim});
  const float eps = static_cast<float>(c.rms_norm_eps);

  for (int layer = 0; layer < static_cast<int>(c.num_hidden_layers); ++layer) {
    const LayerWeights& w = weights_.layers[layer];

    // Attention block: x + o_proj(attention(rope(q), rope(k), v)) on the normalised stream. The
    // residual add that closes the previous block is fused with this block's norm.
    if (layer == 0) {
      ops.rms_norm(residual, w.input_norm, eps, normed);
    } else {
      ops.add_rms_norm(residual, projected, w.input_norm, eps, normed);
    }
    ops.linear(normed, w.q_proj, w.q_bias, queries);
    ops.linear(normed, w.k_proj, w.k_bias, keys);
    ops.linear(normed, w.v_proj, w.v_bias, values);
    ops.rope_queries_and_keys(queries_by_head, keys_by_head, step.positions, inv_freq_device_);
    // Attention is the one op that must see sequence boundaries: each sequence's new keys and
    // values go into its cache, then its queries attend to that cache only.
    ops.attention(queries_by_head, keys_by_head, values_by_head, step, layer, attention_out);
    ops.linear(attention_out, w.o_proj, w.o_bias, projected);

    // Feed-forward block: x + down(silu(gate(x)) * up(x)) on the normalised stream.
    ops.add_rms_norm(residual, projected, w.post_attention_norm, eps, normed);
    ops.linear(normed, w.gate_proj, w.gate_bias, gate);
    ops.linear(normed, w.up_proj, w.up_bias, up);
    ops.silu_mul(gate, up, gate);
    ops.linear(gate, w.down_proj, w.down_bias, projected);
  }
  ops.add_rms_norm(residual, projected, weights_.final_norm, eps, normed);

  // Only some rows predict a token we need (each sequence's last one, unless all positions are
  // asked for). Picking rows is a gather, which is exactly what the embedding op does.
  Tensor selected = normed;
  const int64_t rows = static_cast<int64_t>(step.layout.output_rows.size());
  if (rows != total) {
    selected = ops.scratch({rows, hidden});
    ops.embedding(normed, step.output_rows, selected);
  }
  Tensor logits = ops.scratch({rows, c.vocab_size});
  ops.linear(selected, weights_.lm_head, Tensor(), logits);
  return logits;
}

Tensor LlamaModel::run(std::vector<ForwardSequence>& batch, bool all_positions, bool greedy) {
  check_batch(batch);
  Backend& ops = *backend_;
  StepLayout layout = make_layout(batch, all_positions);
  layout.variant = greedy ? 1 : 0;
  Step step = ops.prepare_step(layout);
  Tensor result = ops.run_step(step, [&] {
    Tensor logits = forward_ops(step);
    if (!greedy) return logits;
    Tensor ids = ops.scratch({logits.dim(0)}, DType::kI32);
    ops.argmax(logits, ids);
    return ids;
  });
  Tensor host = ops.to_host(result);
  for (ForwardSequence& sequence : batch) {
    if (sequence.cache != nullptr)
      sequence.cache->length += static_cast<int64_t>(sequence.tokens.size());
  }
  return host;
}

Tensor LlamaModel::forward(std::vector<ForwardSequence>& batch, bool all_positions) {
  return run(batch, all_positions, /*greedy=*/false);
}

std::vector<int32_t> LlamaModel::forward_greedy(std::vector<ForwardSequence>& batch) {
  Tensor ids = run(batch, /*all_positions=*/false, /*greedy=*/true);
  const auto* data = static_cast<const int32_t*>(ids.data());
  return std::vector<int32_t>(data, data + ids.numel());
}

}  // namespace servelab
