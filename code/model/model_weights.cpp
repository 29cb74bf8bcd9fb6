#include "model/model_weights.h"

#include "common/error.h"

namespace servelab {
namespace {

// Reads one tensor, checks its dtype and shape, converts it to fp32 and puts it on the backend.
class WeightReader {
 public:
  WeightReader(const Checkpoint& checkpoint, Backend& backend)
      : checkpoint_(checkpoint), backend_(backend) {}

  Tensor read(const std::string& name, const Shape& expected_shape) {
    const SafetensorsTensor& info = checkpoint_.tensor(name);
    const std::string file = checkpoint_.file_of(name);
    if (!info.dtype) {
      fail(file, ": tensor '", name, "' has dtype ", info.dtype_name,
           "; servelab reads F32, F16 and BF16 weights");
    }
    if (info.shape != expected_shape) {
      fail(file, ": tensor '", name, "' has shape ", shape_string(info.shape),
           ", config.json says ", shape_string(expected_shape));
    }
    std::vector<float> host(static_cast<size_t>(shape_numel(expected_shape)));
    convert_to_f32(*info.dtype, info.data, host.data(), host.size());
    return backend_.upload(host.data(), expected_shape);
  }

 private:
  const Checkpoint& checkpoint_;
  Backend& backend_;
};

}  // namespace

ModelWeights load_model_weights(const Checkpoint& checkpoint, const ModelConfig& config,
                                Backend& backend) {
  const int64_t hidden = config.hidden_size, intermediate = config.intermediate_size;
  const int64_t q_size = config.q_size(), kv_size = config.kv_size();

  // First the names: a missing or extra tensor is reported all at once, before any loading.
  std::vector<std::string> expected = {"model.embed_tokens.weight", "model.norm.weight"};
  std::vector<std::string> allowed_extra;
  if (config.tie_word_embeddings) {
    allowed_extra.push_back("lm_head.weight");  // some tied checkpoints still store a copy
  } else {
    expected.push_back("lm_head.weight");
  }
  auto layer_name = [](int64_t layer, const std::string& suffix) {
    return str_cat("model.layers.", layer, ".", suffix);
  };
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    for (const char* suffix :
         {"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
          "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
          "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"}) {
      expected.push_back(layer_name(layer, suffix));
    }
    if (config.qkv_bias) {
      for (const char* suffix :
           {"self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"}) {
        expected.push_back(layer_name(layer, suffix));
      }
    }
    if (config.output_bias) expected.push_back(layer_name(layer, "self_attn.o_proj.bias"));
    if (config.mlp_bias) {
      for (const char* suffix : {"mlp.gate_proj.bias", "mlp.up_proj.bias", "mlp.down_proj.bias"}) {
        expected.push_back(layer_name(layer, suffix));
      }
    }
    // Old checkpoints saved the rotary buffer; it is recomputed from the config, so ignore it.
    allowed_extra.push_back(layer_name(layer, "self_attn.rotary_emb.inv_freq"));
  }
  checkpoint.check_tensor_names(expected, allowed_extra);

  WeightReader reader(checkpoint, backend);
  ModelWeights weights;
  weights.embed_tokens = reader.read("model.embed_tokens.weight", {config.vocab_size, hidden});
  weights.final_norm = reader.read("model.norm.weight", {hidden});
  weights.lm_head = config.tie_word_embeddings
                        ? weights.embed_tokens
                        : reader.read("lm_head.weight", {config.vocab_size, hidden});
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    auto name = [&](const char* suffix) { return layer_name(layer, suffix); };
    LayerWeights w;
    w.input_norm = reader.read(name("input_layernorm.weight"), {hidden});
    w.q_proj = reader.read(name("self_attn.q_proj.weight"), {q_size, hidden});
    w.k_proj = reader.read(name("self_attn.k_proj.weight"), {kv_size, hidden});
    w.v_proj = reader.read(name("self_attn.v_proj.weight"), {kv_size, hidden});
    w.o_proj = reader.read(name("self_attn.o_proj.weight"), {hidden, q_size});
    if (config.qkv_bias) {
      w.q_bias = reader.read(name("self_attn.q_proj.bias"), {q_size});
      w.k_bias = reader.read(name("self_attn.k_proj.bias"), {kv_size});
      w.v_bias = reader.read(name("self_attn.v_proj.bias"), {kv_size});
    }
    if (config.output_bias) w.o_bias = reader.read(name("self_attn.o_proj.bias"), {hidden});
    w.post_attention_norm = reader.read(name("post_attention_layernorm.weight"), {hidden});
    w.gate_proj = reader.read(name("mlp.gate_proj.weight"), {intermediate, hidden});
    w.up_proj = reader.read(name("mlp.up_proj.weight"), {intermediate, hidden});
    w.down_proj = reader.read(name("mlp.down_proj.weight"), {hidden, intermediate});
    if (config.mlp_bias) {
      w.gate_bias = reader.read(name("mlp.gate_proj.bias"), {intermediate});
      w.up_bias = reader.read(name("mlp.up_proj.bias"), {intermediate});
      w.down_bias = reader.read(name("mlp.down_proj.bias"), {hidden});
    }
    weights.layers.push_back(std::move(w));
  }
  return weights;
}

}  // namespace servelab
