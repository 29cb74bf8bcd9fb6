#include "model/model_config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "model/rope_frequencies.h"
#include "test_paths.h"

namespace servelab {
namespace {

using nlohmann::json;

json llama_config() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "vocab_size": 100, "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 8,
    "num_key_value_heads": 2, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0, "bos_token_id": 1, "eos_token_id": [2, 7],
    "torch_dtype": "bfloat16", "tie_word_embeddings": true})");
}

std::string error_of(const json& config) {
  try {
    ModelConfig::from_json(config, "config.json");
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

TEST(ModelConfig, ReadsTransformers4StyleLlamaConfig) {
  json raw = llama_config();
  raw["rope_scaling"] = {{"type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  ModelConfig config = ModelConfig::from_json(raw, "config.json");
  EXPECT_EQ(config.architecture, Architecture::kLlama);
  EXPECT_EQ(config.head_dim, 8);  // hidden_size / num_attention_heads
  EXPECT_EQ(config.q_size(), 64);
  EXPECT_EQ(config.kv_size(), 16);
  EXPECT_DOUBLE_EQ(config.rope_theta, 500000.0);
  EXPECT_EQ(config.rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(config.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(config.eos_token_ids, (std::vector<int32_t>{2, 7}));
  EXPECT_EQ(config.bos_token_id, 1);
  EXPECT_EQ(config.torch_dtype, "bfloat16");
  EXPECT_TRUE(config.tie_word_embeddings);
  EXPECT_FALSE(config.qkv_bias);
}

TEST(ModelConfig, ReadsTransformers5RopeParameters) {
  json raw = llama_config();
  raw.erase("rope_theta");
  raw["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 1234.0}};
  ModelConfig config = ModelConfig::from_json(raw, "config.json");
  EXPECT_DOUBLE_EQ(config.rope_theta, 1234.0);
  EXPECT_EQ(config.rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_DOUBLE_EQ(config.rope_scaling.factor, 2.0);
}

TEST(ModelConfig, Qwen2AlwaysHasQkvBiasButNoOutputBias) {
  json raw = llama_config();
  raw["architectures"] = {"Qwen2ForCausalLM"};
  ModelConfig config = ModelConfig::from_json(raw, "config.json");
  EXPECT_TRUE(config.qkv_bias);
  EXPECT_FALSE(config.output_bias);
}

TEST(ModelConfig, LlamaAttentionBiasCoversAllFourProjections) {
  json raw = llama_config();
  raw["attention_bias"] = true;
  raw["head_dim"] = 16;
  ModelConfig config = ModelConfig::from_json(raw, "config.json");
  EXPECT_TRUE(config.qkv_bias);
  EXPECT_TRUE(config.output_bias);
  EXPECT_EQ(config.head_dim, 16);  // an explicit head_dim wins over hidden / heads
  EXPECT_EQ(config.q_size(), 128);
}

TEST(ModelConfig, SingleEosIdBecomesAListOfOne) {
  json raw = llama_config();
  raw["eos_token_id"] = 2;
  EXPECT_EQ(ModelConfig::from_json(raw, "config.json").eos_token_ids, (std::vector<int32_t>{2}));
}

TEST(ModelConfig, UnknownArchitectureIsAClearError) {
  json raw = llama_config();
  raw["architectures"] = {"GPT2LMHeadModel"};
  std::string message = error_of(raw);
  EXPECT_NE(message.find("GPT2LMHeadModel"), std::string::npos) << message;
  EXPECT_NE(message.find("LlamaForCausalLM"), std::string::npos) << message;
}

TEST(ModelConfig, UnsupportedFeaturesAreRefusedNotIgnored) {
  json yarn = llama_config();
  yarn["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  EXPECT_NE(error_of(yarn).find("'yarn' is not supported"), std::string::npos) << error_of(yarn);

  json gelu = llama_config();
  gelu["hidden_act"] = "gelu";
  EXPECT_NE(error_of(gelu).find("hidden_act 'gelu'"), std::string::npos);

  json sliding = llama_config();
  sliding["architectures"] = {"Qwen2ForCausalLM"};
  sliding["use_sliding_window"] = true;
  EXPECT_NE(error_of(sliding).find("sliding-window"), std::string::npos);
}

TEST(ModelConfig, InconsistentShapesAreRejectedNamingTheFields) {
  json gqa = llama_config();
  gqa["num_key_value_heads"] = 3;
  EXPECT_NE(error_of(gqa).find("multiple of num_key_value_heads"), std::string::npos);

  json missing = llama_config();
  missing.erase("hidden_size");
  EXPECT_NE(error_of(missing).find("missing required field 'hidden_size'"), std::string::npos);

  json negative = llama_config();
  negative["num_hidden_layers"] = -1;
  EXPECT_NE(error_of(negative).find("'num_hidden_layers' must be positive"), std::string::npos);

  json wrong_type = llama_config();
  wrong_type["vocab_size"] = "100";
  EXPECT_NE(error_of(wrong_type).find("'vocab_size' must be an integer"), std::string::npos);

  json eos = llama_config();
  eos["eos_token_id"] = 500;
  EXPECT_NE(error_of(eos).find("outside the vocabulary"), std::string::npos);
}

TEST(ModelConfig, GenerationConfigOverridesEosAndSuppliesSamplingDefaults) {
  auto dir = std::filesystem::temp_directory_path() / "servelab_config_test";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << llama_config().dump();
  std::ofstream(dir / "generation_config.json")
      << R"({"eos_token_id": [2, 9], "do_sample": true, "temperature": 0.6, "top_p": 0.9})";
  ModelConfig config = ModelConfig::load(dir.string());
  EXPECT_EQ(config.eos_token_ids, (std::vector<int32_t>{2, 9}));
  EXPECT_EQ(config.generation.do_sample, true);
  EXPECT_FLOAT_EQ(*config.generation.temperature, 0.6f);
  EXPECT_FLOAT_EQ(*config.generation.top_p, 0.9f);
  EXPECT_FALSE(config.generation.top_k.has_value());
  std::filesystem::remove_all(dir);
}

TEST(ModelConfig, MissingOrBrokenConfigFileNamesThePath) {
  try {
    ModelConfig::load("/nonexistent/model");
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("/nonexistent/model/config.json"), std::string::npos);
  }
  auto dir = std::filesystem::temp_directory_path() / "servelab_config_broken";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << "{\"architectures\": [";
  EXPECT_THROW(ModelConfig::load(dir.string()), Error);
  std::filesystem::remove_all(dir);
}

TEST(RopeFrequencies, DefaultFollowsThetaPowerLaw) {
  auto inv_freq = rope_inverse_frequencies(8, 10000.0, RopeScaling{});
  ASSERT_EQ(inv_freq.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(inv_freq[i], std::pow(10000.0, -2.0 * i / 8), 1e-7 * std::pow(10000.0, -2.0 * i / 8));
  }
}

TEST(RopeFrequencies, LinearScalingDividesEveryFrequency) {
  RopeScaling linear;
  linear.type = RopeScaling::Type::kLinear;
  linear.factor = 4.0;
  auto plain = rope_inverse_frequencies(16, 10000.0, RopeScaling{});
  auto scaled = rope_inverse_frequencies(16, 10000.0, linear);
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_FLOAT_EQ(scaled[i], plain[i] / 4.0f);
}

TEST(RopeFrequencies, Llama3KeepsHighSlowsLowAndBlendsTheMiddle) {
  RopeScaling llama3;
  llama3.type = RopeScaling::Type::kLlama3;
  llama3.factor = 8.0;
  llama3.low_freq_factor = 1.0;
  llama3.high_freq_factor = 4.0;
  llama3.original_max_position_embeddings = 64;  // wavelengths above 64 slow, below 16 kept
  auto plain = rope_inverse_frequencies(16, 10000.0, RopeScaling{});
  auto scaled = rope_inverse_frequencies(16, 10000.0, llama3);
  int high = 0, low = 0, middle = 0;
  for (size_t i = 0; i < plain.size(); ++i) {
    double wavelength = 2 * M_PI / plain[i];
    if (wavelength < 16) {
      EXPECT_FLOAT_EQ(scaled[i], plain[i]);
      ++high;
    } else if (wavelength > 64) {
      EXPECT_FLOAT_EQ(scaled[i], plain[i] / 8.0f);
      ++low;
    } else {
      double smooth = (64 / wavelength - 1.0) / (4.0 - 1.0);
      EXPECT_NEAR(scaled[i], (1 - smooth) * plain[i] / 8 + smooth * plain[i], 1e-6);
      EXPECT_LT(scaled[i], plain[i]);
      EXPECT_GT(scaled[i], plain[i] / 8.0f);
      ++middle;
    }
  }
  EXPECT_GT(high, 0);
  EXPECT_GT(low, 0);
  EXPECT_GT(middle, 0);
}

}  // namespace
}  // namespace servelab
