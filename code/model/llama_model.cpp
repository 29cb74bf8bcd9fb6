#include "model/llama_model.h"

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
  for (size_t s = 0; s < batch.size(); ++s) {
    const ForwardSequence& sequence = batch[s];
    if (sequence.tokens.empty()) fail("forward: sequence ", s, " has no new tokens");
    if (sequence.cache == nullptr) fail("forward: sequence ", s, " has no KV cache");
    const int64_t end = sequence.cache->length + static_cast<int64_t>(sequence.tokens.size());
    if (end > sequence.cache->capacity) {
      fail("sequence ", s, " needs ", end, " positions but its KV cache holds ",
           sequence.cache->capacity);
    }
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

Tensor LlamaModel::forward(std::vector<ForwardSequence>& batch, bool all_positions) {
  check_batch(batch);
  Backend& ops = *backend_;
  const ModelConfig& c = config_;

  // Pack the new tokens of all sequences into one [total, ...] batch: every op except attention
  // treats tokens independently, so they need not know where one sequence ends.
  std::vector<int32_t> tokens;
  std::vector<int64_t> positions;
  std::vector<int64_t> first_row;  // where each sequence's tokens start in the packed batch
  for (const ForwardSequence& sequence : batch) {
    first_row.push_back(static_cast<int64_t>(tokens.size()));
    for (size_t i = 0; i < sequence.tokens.size(); ++i) {
      tokens.push_back(sequence.tokens[i]);
      positions.push_back(sequence.cache->length + static_cast<int64_t>(i));
    }
  }
  const int64_t total = static_cast<int64_t>(tokens.size());
  const int64_t hidden = c.hidden_size;

  Tensor residual = ops.allocate({total, hidden});  // the residual stream
  Tensor normed = ops.allocate({total, hidden});
  Tensor queries = ops.allocate({total, c.q_size()});
  Tensor keys = ops.allocate({total, c.kv_size()});
  Tensor values = ops.allocate({total, c.kv_size()});
  Tensor attention_out = ops.allocate({total, c.q_size()});
  Tensor projected = ops.allocate({total, hidden});
  Tensor gate = ops.allocate({total, c.intermediate_size});
  Tensor up = ops.allocate({total, c.intermediate_size});

  ops.embedding(weights_.embed_tokens, tokens, residual);

  // Per-head views of the projections: [total, heads, head_dim].
  Tensor queries_by_head = queries.view({total, c.num_attention_heads, c.head_dim});
  Tensor keys_by_head = keys.view({total, c.num_key_value_heads, c.head_dim});
  Tensor values_by_head = values.view({total, c.num_key_value_heads, c.head_dim});
  const float eps = static_cast<float>(c.rms_norm_eps);

  for (int layer = 0; layer < static_cast<int>(c.num_hidden_layers); ++layer) {
    const LayerWeights& w = weights_.layers[layer];

    // Attention block: x + o_proj(attention(rope(q), rope(k), v)) on the normalised stream.
    ops.rms_norm(residual, w.input_norm, eps, normed);
    ops.linear(normed, w.q_proj, w.q_bias, queries);
    ops.linear(normed, w.k_proj, w.k_bias, keys);
    ops.linear(normed, w.v_proj, w.v_bias, values);
    ops.rope(queries_by_head, positions, inv_freq_);
    ops.rope(keys_by_head, positions, inv_freq_);
    for (size_t s = 0; s < batch.size(); ++s) {
      // Attention is the one op that must see sequence boundaries: each sequence attends only
      // to its own cache, which first receives the new keys and values.
      const int64_t begin = first_row[s];
      const int64_t end = begin + static_cast<int64_t>(batch[s].tokens.size());
      const int64_t start = batch[s].cache->length;
      ops.write_kv_cache(keys_by_head.rows(begin, end), values_by_head.rows(begin, end),
                         *batch[s].cache, layer, start);
      Tensor out_rows = attention_out.rows(begin, end);
      ops.attention(queries_by_head.rows(begin, end), *batch[s].cache, layer, start, out_rows);
    }
    ops.linear(attention_out, w.o_proj, w.o_bias, projected);
    ops.add(residual, projected);

    // Feed-forward block: x + down(silu(gate(x)) * up(x)) on the normalised stream.
    ops.rms_norm(residual, w.post_attention_norm, eps, normed);
    ops.linear(normed, w.gate_proj, w.gate_bias, gate);
    ops.linear(normed, w.up_proj, w.up_bias, up);
    ops.silu_mul(gate, up, gate);
    ops.linear(gate, w.down_proj, w.down_bias, projected);
    ops.add(residual, projected);
  }
  for (ForwardSequence& sequence : batch) {
    sequence.cache->length += static_cast<int64_t>(sequence.tokens.size());
  }

  ops.rms_norm(residual, weights_.final_norm, eps, normed);
  Tensor selected = normed;
  if (!all_positions) {
    // Only each sequence's last token predicts the next one. Picking rows is a gather, which is
    // exactly what the embedding op does with a table: reuse it.
    std::vector<int32_t> last_rows;
    for (size_t s = 0; s < batch.size(); ++s) {
      last_rows.push_back(static_cast<int32_t>(first_row[s] + batch[s].tokens.size() - 1));
    }
    selected = ops.allocate({static_cast<int64_t>(last_rows.size()), hidden});
    ops.embedding(normed, last_rows, selected);
  }
  Tensor logits = ops.allocate({selected.dim(0), c.vocab_size});
  ops.linear(selected, weights_.lm_head, Tensor(), logits);
  return ops.to_host(logits);
}

}  // namespace servelab
