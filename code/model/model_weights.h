// The weights of a Llama-family model on a backend, loaded from a checkpoint and checked against
// the config: every tensor the config implies must be present with the shape it implies, and
// nothing unexpected may be left over (a sign of a config/checkpoint mismatch).
#pragma once

#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/checkpoint.h"
#include "model/model_config.h"

namespace servelab {

/// One decoder layer. Bias tensors are undefined (empty) when the config has none.
struct LayerWeights {
  Tensor input_norm;            ///< [hidden]
  Tensor q_proj, q_bias;        ///< [heads * head_dim, hidden], [heads * head_dim]
  Tensor k_proj, k_bias;        ///< [kv_heads * head_dim, hidden], [kv_heads * head_dim]
  Tensor v_proj, v_bias;        ///< [kv_heads * head_dim, hidden], [kv_heads * head_dim]
  Tensor o_proj, o_bias;        ///< [hidden, heads * head_dim], [hidden]
  Tensor post_attention_norm;   ///< [hidden]
  Tensor gate_proj, gate_bias;  ///< [intermediate, hidden], [intermediate]
  Tensor up_proj, up_bias;      ///< [intermediate, hidden], [intermediate]
  Tensor down_proj, down_bias;  ///< [hidden, intermediate], [hidden]
};

struct ModelWeights {
  Tensor embed_tokens;  ///< [vocab, hidden]
  std::vector<LayerWeights> layers;
  Tensor final_norm;  ///< [hidden]
  Tensor lm_head;     ///< [vocab, hidden]; the same tensor as embed_tokens when tied
};

/// Loads every weight as fp32 onto `backend`. Errors name the file, the tensor, and the expected
/// shape or dtype.
ModelWeights load_model_weights(const Checkpoint& checkpoint, const ModelConfig& config,
                                Backend& backend);

}  // namespace servelab
