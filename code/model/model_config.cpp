#include "model/model_config.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace servelab {
namespace {

using nlohmann::json;

json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open");
  std::stringstream buffer;
  buffer << in.rdbuf();
  try {
    return json::parse(buffer.str());
  } catch (const json::exception& error) {
    fail(path, ": not valid JSON: ", error.what());
  }
}

// Field readers that say which file and field was wrong, and how.
int64_t required_int(const json& config, const char* key, const std::string& source) {
  if (!config.contains(key)) fail(source, ": missing required field '", key, "'");
  const json& value = config[key];
  if (!value.is_number_integer())
    fail(source, ": field '", key, "' must be an integer, got ", value.dump());
  return value.get<int64_t>();
}

int64_t positive_int(const json& config, const char* key, const std::string& source) {
  int64_t value = required_int(config, key, source);
  if (value <= 0) fail(source, ": field '", key, "' must be positive, got ", value);
  return value;
}

bool has_value(const json& config, const char* key) {
  return config.contains(key) && !config[key].is_null();
}

double number_or(const json& config, const char* key, double fallback, const std::string& source) {
  if (!has_value(config, key)) return fallback;
  if (!config[key].is_number())
    fail(source, ": field '", key, "' must be a number, got ", config[key].dump());
  return config[key].get<double>();
}

bool bool_or(const json& config, const char* key, bool fallback, const std::string& source) {
  if (!has_value(config, key)) return fallback;
  if (!config[key].is_boolean())
    fail(source, ": field '", key, "' must be true or false, got ", config[key].dump());
  return config[key].get<bool>();
}

std::vector<int32_t> token_ids(const json& value, const char* key, const std::string& source) {
  std::vector<int32_t> ids;
  auto add = [&](const json& item) {
    if (!item.is_number_integer() || item.get<int64_t>() < 0) {
      fail(source, ": field '", key, "' must be a token id or a list of them, got ", value.dump());
    }
    ids.push_back(item.get<int32_t>());
  };
  if (value.is_array()) {
    for (const json& item : value) add(item);
  } else if (!value.is_null()) {
    add(value);
  }
  return ids;
}

RopeScaling parse_rope_scaling(const json& scaling, const std::string& source) {
  RopeScaling result;
  if (scaling.is_null()) return result;
  if (!scaling.is_object()) fail(source, ": rope_scaling must be an object or null");
  // transformers 4 wrote "type", later versions "rope_type".
  std::string type = scaling.value("rope_type", scaling.value("type", std::string("default")));
  if (type == "default") return result;
  if (type == "linear") {
    result.type = RopeScaling::Type::kLinear;
  } else if (type == "llama3") {
    result.type = RopeScaling::Type::kLlama3;
    result.low_freq_factor = number_or(scaling, "low_freq_factor", 1.0, source);
    result.high_freq_factor = number_or(scaling, "high_freq_factor", 4.0, source);
    if (!scaling.contains("original_max_position_embeddings")) {
      fail(source, ": llama3 rope scaling needs 'original_max_position_embeddings'");
    }
    result.original_max_position_embeddings =
        required_int(scaling, "original_max_position_embeddings", source);
    if (result.high_freq_factor <= result.low_freq_factor) {
      fail(source, ": llama3 rope scaling needs high_freq_factor > low_freq_factor");
    }
  } else {
    fail(source, ": rope scaling type '", type,
         "' is not supported (servelab implements default, linear and llama3)");
  }
  result.factor = number_or(scaling, "factor", 1.0, source);
  if (result.factor <= 0) fail(source, ": rope scaling factor must be positive");
  return result;
}

}  // namespace

ModelConfig ModelConfig::from_json(const json& config, const std::string& source) {
  if (!config.is_object()) fail(source, ": expected a JSON object");
  ModelConfig result;

  if (!config.contains("architectures") || !config["architectures"].is_array() ||
      config["architectures"].size() != 1 || !config["architectures"][0].is_string()) {
    fail(source, ": 'architectures' must be a list of one name, e.g. [\"LlamaForCausalLM\"]");
  }
  result.architecture_name = config["architectures"][0].get<std::string>();
  if (result.architecture_name == "LlamaForCausalLM") {
    result.architecture = Architecture::kLlama;
  } else if (result.architecture_name == "MistralForCausalLM") {
    result.architecture = Architecture::kMistral;
  } else if (result.architecture_name == "Qwen2ForCausalLM") {
    result.architecture = Architecture::kQwen2;
  } else {
    fail(source, ": architecture '", result.architecture_name,
         "' is not supported; servelab runs LlamaForCausalLM, MistralForCausalLM and "
         "Qwen2ForCausalLM");
  }

  result.vocab_size = positive_int(config, "vocab_size", source);
  result.hidden_size = positive_int(config, "hidden_size", source);
  result.intermediate_size = positive_int(config, "intermediate_size", source);
  result.num_hidden_layers = positive_int(config, "num_hidden_layers", source);
  result.num_attention_heads = positive_int(config, "num_attention_heads", source);
  result.num_key_value_heads = has_value(config, "num_key_value_heads")
                                   ? positive_int(config, "num_key_value_heads", source)
                                   : result.num_attention_heads;
  if (result.num_attention_heads % result.num_key_value_heads != 0) {
    fail(source, ": num_attention_heads (", result.num_attention_heads,
         ") must be a multiple of num_key_value_heads (", result.num_key_value_heads, ")");
  }
  if (has_value(config, "head_dim")) {
    result.head_dim = positive_int(config, "head_dim", source);
  } else {
    if (result.hidden_size % result.num_attention_heads != 0) {
      fail(source, ": hidden_size (", result.hidden_size,
           ") is not divisible by num_attention_heads (", result.num_attention_heads,
           ") and no head_dim is given");
    }
    result.head_dim = result.hidden_size / result.num_attention_heads;
  }
  if (result.head_dim % 2 != 0)
    fail(source, ": head_dim must be even for rotary embeddings, got ", result.head_dim);
  result.max_position_embeddings = positive_int(config, "max_position_embeddings", source);
  result.rms_norm_eps = number_or(config, "rms_norm_eps", 1e-6, source);
  if (result.rms_norm_eps <= 0) fail(source, ": rms_norm_eps must be positive");

  // RoPE: transformers <= 4 writes rope_theta + rope_scaling; transformers 5 writes
  // rope_parameters = {rope_type, rope_theta, ...}. Read either.
  if (has_value(config, "rope_parameters")) {
    const json& parameters = config["rope_parameters"];
    if (!parameters.is_object()) fail(source, ": rope_parameters must be an object");
    result.rope_theta = number_or(parameters, "rope_theta",
                                  number_or(config, "rope_theta", 10000.0, source), source);
    result.rope_scaling = parse_rope_scaling(parameters, source);
  } else {
    result.rope_theta = number_or(config, "rope_theta", 10000.0, source);
    if (config.contains("rope_scaling"))
      result.rope_scaling = parse_rope_scaling(config["rope_scaling"], source);
  }
  if (result.rope_theta <= 0) fail(source, ": rope_theta must be positive");

  std::string activation = config.value("hidden_act", std::string("silu"));
  if (activation != "silu")
    fail(source, ": hidden_act '", activation, "' is not supported (only silu)");

  result.tie_word_embeddings = bool_or(config, "tie_word_embeddings", false, source);
  if (result.architecture == Architecture::kQwen2) {
    result.qkv_bias = true;  // Qwen2 always has q/k/v biases and no o_proj bias
    if (bool_or(config, "use_sliding_window", false, source)) {
      fail(source, ": use_sliding_window is true; sliding-window attention is not supported");
    }
  } else {
    result.qkv_bias = result.output_bias = bool_or(config, "attention_bias", false, source);
  }
  result.mlp_bias = bool_or(config, "mlp_bias", false, source);
  if (result.architecture == Architecture::kMistral && has_value(config, "sliding_window")) {
    result.sliding_window = positive_int(config, "sliding_window", source);
  }

  if (has_value(config, "bos_token_id")) {
    auto bos = token_ids(config["bos_token_id"], "bos_token_id", source);
    if (bos.size() != 1) fail(source, ": bos_token_id must be one token id");
    result.bos_token_id = bos[0];
  }
  if (config.contains("eos_token_id"))
    result.eos_token_ids = token_ids(config["eos_token_id"], "eos_token_id", source);
  for (int32_t id : result.eos_token_ids) {
    if (id >= result.vocab_size)
      fail(source, ": eos_token_id ", id, " is outside the vocabulary (", result.vocab_size, ")");
  }
  if (result.bos_token_id && *result.bos_token_id >= result.vocab_size) {
    fail(source, ": bos_token_id ", *result.bos_token_id, " is outside the vocabulary (",
         result.vocab_size, ")");
  }
  // transformers 5 writes "dtype", earlier versions "torch_dtype".
  for (const char* key : {"dtype", "torch_dtype"}) {
    if (has_value(config, key) && config[key].is_string()) {
      result.torch_dtype = config[key].get<std::string>();
      break;
    }
  }
  return result;
}

ModelConfig ModelConfig::load(const std::string& model_dir) {
  const std::string config_path = model_dir + "/config.json";
  ModelConfig config = from_json(read_json_file(config_path), config_path);

  const std::string generation_path = model_dir + "/generation_config.json";
  if (std::ifstream(generation_path).good()) {
    json generation = read_json_file(generation_path);
    if (!generation.is_object()) fail(generation_path, ": expected a JSON object");
    if (has_value(generation, "eos_token_id")) {
      config.eos_token_ids = token_ids(generation["eos_token_id"], "eos_token_id", generation_path);
    }
    if (has_value(generation, "bos_token_id")) {
      auto bos = token_ids(generation["bos_token_id"], "bos_token_id", generation_path);
      if (bos.size() == 1) config.bos_token_id = bos[0];
    }
    GenerationDefaults& defaults = config.generation;
    if (has_value(generation, "do_sample"))
      defaults.do_sample = bool_or(generation, "do_sample", false, generation_path);
    if (has_value(generation, "temperature"))
      defaults.temperature =
          static_cast<float>(number_or(generation, "temperature", 1.0, generation_path));
    if (has_value(generation, "top_k"))
      defaults.top_k = static_cast<int32_t>(required_int(generation, "top_k", generation_path));
    if (has_value(generation, "top_p"))
      defaults.top_p = static_cast<float>(number_or(generation, "top_p", 1.0, generation_path));
    if (has_value(generation, "repetition_penalty"))
      defaults.repetition_penalty =
          static_cast<float>(number_or(generation, "repetition_penalty", 1.0, generation_path));
    if (has_value(generation, "max_new_tokens"))
      defaults.max_new_tokens = required_int(generation, "max_new_tokens", generation_path);
  }
  return config;
}

std::string ModelConfig::summary() const {
  const char* rope = rope_scaling.type == RopeScaling::Type::kLlama3   ? ", rope llama3"
                     : rope_scaling.type == RopeScaling::Type::kLinear ? ", rope linear"
                                                                       : "";
  return str_cat(architecture_name, ", ", num_hidden_layers, " layers, hidden ", hidden_size,
                 ", heads ", num_attention_heads, "/", num_key_value_heads, " (q/kv), head_dim ",
                 head_dim, ", vocab ", vocab_size, ", context ", max_position_embeddings, rope,
                 tie_word_embeddings ? ", tied embeddings" : "");
}

}  // namespace servelab
