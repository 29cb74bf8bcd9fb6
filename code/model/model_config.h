// The model's shape and numerics, read from a Hugging Face `config.json` (and
// `generation_config.json`). Everything the forward needs to know comes from here; anything in
// the file that servelab cannot honour is an error at load time, never silently wrong output.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace servelab {

enum class Architecture { kLlama, kMistral, kQwen2 };

/// How rotary frequencies are rescaled for long contexts (config.json `rope_scaling`, or
/// `rope_parameters` as transformers 5 writes it).
struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 };
  Type type = Type::kNone;
  double factor = 1.0;
  // llama3 only:
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

/// Sampling defaults a model ships in generation_config.json; unset fields are absent there.
struct GenerationDefaults {
  std::optional<bool> do_sample;
  std::optional<float> temperature;
  std::optional<int32_t> top_k;
  std::optional<float> top_p;
  std::optional<float> repetition_penalty;
  std::optional<int64_t> max_new_tokens;
};

struct ModelConfig {
  std::string architecture_name;  ///< as in config.json, e.g. "LlamaForCausalLM"
  Architecture architecture = Architecture::kLlama;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  ///< < num_attention_heads means grouped-query attention
  int64_t head_dim = 0;             ///< config's head_dim, else hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;     ///< q/k/v projections have biases (Llama attention_bias, Qwen2 always)
  bool output_bias = false;  ///< o_proj has a bias (Llama attention_bias)
  bool mlp_bias = false;     ///< gate/up/down projections have biases (Llama mlp_bias)
  std::optional<int64_t> sliding_window;  ///< Mistral's window; longer sequences are refused
  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;  ///< config's eos_token_id, an int or a list
  std::string torch_dtype;             ///< "bfloat16", "float16", "float32" or "" if absent
  GenerationDefaults generation;

  /// Reads `<model_dir>/config.json` and, when present, `<model_dir>/generation_config.json`
  /// (whose bos/eos ids, when given, take precedence, as in transformers' generate).
  static ModelConfig load(const std::string& model_dir);
  /// Parses a config.json object. `source` names the file in error messages.
  static ModelConfig from_json(const nlohmann::json& json, const std::string& source);

  int64_t q_size() const { return num_attention_heads * head_dim; }
  int64_t kv_size() const { return num_key_value_heads * head_dim; }
  /// A one-line description for logs: "LlamaForCausalLM, 2 layers, hidden 64, heads 4/4, ...".
  std::string summary() const;
};

}  // namespace servelab
