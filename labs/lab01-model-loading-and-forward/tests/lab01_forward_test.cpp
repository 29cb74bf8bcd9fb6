// Lab 01, all parts together: with safetensors parsing, RMSNorm and RoPE in place, the whole
// model reproduces Hugging Face's logits for the GQA + llama3-RoPE fixture.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "backend/cpu/cpu_backend.h"
#include "model/llama_model.h"
#include "model/safetensors.h"
#include "test_paths.h"

namespace servelab {
namespace {

TEST(Lab01Forward, WholeModelMatchesHuggingFaceLogits) {
  const std::string dir = testing::fixture_path("llama-gqa-llama3-tied");
  CpuBackend backend;
  LlamaModel model = LlamaModel::load(dir, backend);
  SafetensorsFile reference(dir + "/reference_logits.safetensors");
  const SafetensorsTensor* expected = reference.find("prompt_0");
  ASSERT_NE(expected, nullptr);
  const int64_t rows = expected->shape[0], vocab = expected->shape[1];
  std::ifstream json_file(dir + "/reference.json");
  auto ids =
      nlohmann::json::parse(json_file)["prompts"][0]["token_ids"].get<std::vector<int32_t>>();
  ASSERT_EQ(static_cast<int64_t>(ids.size()), rows);
  ContiguousKvCache cache = model.new_kv_cache(rows);
  std::vector<ForwardSequence> batch = {{ids, &cache}};
  Tensor logits = model.forward(batch, true);
  std::vector<float> want(rows * vocab);
  convert_to_f32(DType::kF32, expected->data, want.data(), want.size());
  for (int64_t i = 0; i < rows * vocab; ++i) {
    ASSERT_NEAR(logits.f32()[i], want[i], 1e-4 * (1 + std::fabs(want[i]))) << "row " << i / vocab;
  }
}

}  // namespace
}  // namespace servelab
