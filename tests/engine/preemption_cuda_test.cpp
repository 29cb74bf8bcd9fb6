// Preemption end to end on the GPU: the CUDA backend, a larger random Llama-shaped model (fp32,
// so that the comparison can be exact), long outputs, and a GPU pool far too small for the
// requests. Swaps go through pinned host memory on the backend's swap stream, with per-layer
// events; recompute re-runs prefills. Greedy outputs must equal those of a run with an ample
// pool, token for token. Label gpu: skipped where there is no CUDA device.
#include <gtest/gtest.h>

#include <iostream>
#include <random>
#include <set>

#include "backend/cuda/cuda_backend.h"
#include "engine/preemption_driver.h"

namespace servelab {
namespace {

using testing::DriverOptions;
using testing::DriverRequest;
using testing::DriverResult;

#define REQUIRE_GPU() \
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device"

ModelConfig random_model_config() {
  ModelConfig c;
  c.architecture_name = "LlamaForCausalLM";
  c.vocab_size = 4096;
  c.hidden_size = 512;
  c.intermediate_size = 1408;
  c.num_hidden_layers = 8;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 2;
  c.head_dim = 64;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.max_position_embeddings = 2048;
  c.eos_token_ids = {2};
  c.bos_token_id = 1;
  return c;
}

/// Normal random weights made on the host. The embedding and the output head are large
/// (std 1 and 0.3) so that logits are far from uniform: a random model with small weights has
/// near-ties everywhere, and greedy decoding would then depend on rounding alone.
ModelWeights random_weights(const ModelConfig& c, Backend& backend, uint32_t seed) {
  std::mt19937 generator(seed);
  auto matrix = [&](int64_t rows, int64_t cols, float stddev) {
    std::normal_distribution<float> normal(0.0f, stddev);
    std::vector<float> values(static_cast<size_t>(rows * cols));
    for (float& value : values) value = normal(generator);
    return backend.upload(values.data(), {rows, cols});
  };
  std::vector<float> ones(static_cast<size_t>(c.hidden_size), 1.0f);
  auto gain = [&] { return backend.upload(ones.data(), {c.hidden_size}); };
  ModelWeights w;
  w.embed_tokens = matrix(c.vocab_size, c.hidden_size, 1.0f);
  for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
    LayerWeights l;
    l.input_norm = gain();
    l.q_proj = matrix(c.q_size(), c.hidden_size, 0.05f);
    l.k_proj = matrix(c.kv_size(), c.hidden_size, 0.05f);
    l.v_proj = matrix(c.kv_size(), c.hidden_size, 0.05f);
    l.o_proj = matrix(c.hidden_size, c.q_size(), 0.05f);
    l.post_attention_norm = gain();
    l.gate_proj = matrix(c.intermediate_size, c.hidden_size, 0.05f);
    l.up_proj = matrix(c.intermediate_size, c.hidden_size, 0.05f);
    l.down_proj = matrix(c.hidden_size, c.intermediate_size, 0.03f);
    w.layers.push_back(l);
  }
  w.final_norm = gain();
  w.lm_head = matrix(c.vocab_size, c.hidden_size, 0.3f);
  return w;
}

/// Eight requests with random prompts of 20-200 tokens and 400-700 new tokens.
std::vector<DriverRequest> random_requests(uint32_t seed) {
  std::mt19937 generator(seed);
  std::vector<DriverRequest> requests;
  for (int r = 0; r < 8; ++r) {
    DriverRequest request;
    const int length = std::uniform_int_distribution<int>(20, 200)(generator);
    request.prompt.push_back(1);
    for (int t = 1; t < length; ++t)
      request.prompt.push_back(std::uniform_int_distribution<int32_t>(3, 4095)(generator));
    request.max_new_tokens = std::uniform_int_distribution<int>(400, 700)(generator);
    requests.push_back(request);
  }
  return requests;
}

DriverResult run(LlamaModel& model, const std::vector<DriverRequest>& requests, int64_t gpu_blocks,
                 PreemptionMode mode, bool prefix_caching = false) {
  DriverOptions options;
  options.blocks.block_size = 16;
  options.blocks.num_gpu_blocks = gpu_blocks;
  options.blocks.num_cpu_blocks = 512;
  options.blocks.enable_prefix_caching = prefix_caching;
  options.mode = mode;
  return testing::run_greedy_requests(model, requests, options);
}

// The eight requests need up to about 8 x 56 = 450 blocks; 100 blocks hold two of them.
TEST(CudaPreemption, SwapAndRecomputeLeaveLongGreedyOutputsUnchanged) {
  REQUIRE_GPU();
  CudaBackend backend(CudaBackendOptions{DType::kF32});
  ModelConfig config = random_model_config();
  LlamaModel model(config, random_weights(config, backend, 5), backend);
  const std::vector<DriverRequest> requests = random_requests(11);

  DriverResult ample = run(model, requests, 1024, PreemptionMode::kSwap);
  EXPECT_EQ(ample.stats.swap_outs, 0);
  // The model must not be degenerate: its outputs should not be one token repeated.
  std::set<int32_t> distinct(ample.outputs[0].begin(), ample.outputs[0].end());
  EXPECT_GT(distinct.size(), 20u);

  DriverResult swapped = run(model, requests, 100, PreemptionMode::kSwap);
  EXPECT_TRUE(testing::same_outputs(swapped, ample));
  EXPECT_GE(swapped.stats.swap_outs, 5);
  EXPECT_GT(swapped.moved.bytes_swapped_in, 0);
  EXPECT_EQ(swapped.stats.gpu_blocks_used, 0);
  EXPECT_EQ(swapped.stats.cpu_blocks_used, 0);
  std::cout << "swap: " << swapped.stats.swap_outs << " swap-outs, "
            << swapped.moved.bytes_swapped_out / (1 << 20) << " MiB out, " << swapped.steps
            << " steps (ample: " << ample.steps << ")\n";

  DriverResult recomputed = run(model, requests, 100, PreemptionMode::kRecompute);
  EXPECT_TRUE(testing::same_outputs(recomputed, ample));
  EXPECT_GE(recomputed.stats.recompute_preemptions, 5);
  std::cout << "recompute: " << recomputed.stats.recompute_preemptions << " preemptions, "
            << recomputed.recomputed_tokens << " tokens prefilled again\n";

  DriverResult cached = run(model, requests, 100, PreemptionMode::kRecompute, true);
  EXPECT_TRUE(testing::same_outputs(cached, ample));
  EXPECT_GT(cached.stats.prefix_hits, 0);
}

}  // namespace
}  // namespace servelab
