// The CUDA backend end to end (label gpu; every test skips where no GPU is present):
//  - fp32 weights: GPU logits match the CPU engine within 1e-3·(1 + |ref|), for the contiguous
//    (naive attention) and the paged (PagedAttention) layouts, at prefill and every decode step;
//  - bf16 weights: prompt logits within a relative L2 error of 2e-2 of Hugging Face's own bf16
//    run, and greedy tokens close to HF's bf16 ones by vLLM's rule (fixtures made on the device);
//  - the trained embedded model: GPU bf16 greedy text equals the CPU's, or the rule explains it;
//  - decode steps replayed from CUDA graphs equal steps run directly; a sequence's greedy tokens
//    do not depend on the batch it runs in.
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "common/error.h"
#include "model/fixture_reference.h"
#include "model/llama_model.h"

namespace servelab {
namespace {

#define REQUIRE_GPU()                                               \
  do {                                                              \
    if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

const std::vector<std::string> kFixtures = {"llama-mha", "llama-gqa-llama3-tied", "qwen2-bias",
                                            "llama-linear-sharded", "embedded"};

/// Runs greedy decoding for a batch of prompts on one model and layout, recording every step's
/// logits (host fp32) so two runs can be compared step by step.
struct GreedyRun {
  std::vector<std::vector<int32_t>> tokens;             // [prompt][step]
  std::vector<std::vector<std::vector<int32_t>>> top5;  // [prompt][step][5]
  std::vector<Tensor> logits;                           // per step: [prompts, vocab]
};

GreedyRun run_greedy(LlamaModel& model, const std::vector<std::vector<int32_t>>& prompts, int steps,
                     bool paged, int64_t block_size = 16) {
  const int64_t vocab = model.config().vocab_size;
  std::vector<ContiguousKvCache> caches;
  PagedKvCache pool;
  std::vector<std::vector<int32_t>> tables(prompts.size());
  std::vector<ForwardSequence> batch;
  int32_t next_block = 0;
  if (paged) {
    int64_t blocks = 0;
    for (const auto& prompt : prompts) {
      blocks += (static_cast<int64_t>(prompt.size()) + steps + block_size - 1) / block_size;
    }
    pool = model.new_paged_kv_cache(blocks + 1, block_size);
  }
  for (size_t p = 0; p < prompts.size(); ++p) {
    const int64_t capacity = static_cast<int64_t>(prompts[p].size()) + steps;
    if (!paged) caches.push_back(model.new_kv_cache(capacity));
  }
  for (size_t p = 0; p < prompts.size(); ++p) {
    ForwardSequence sequence{prompts[p]};
    if (paged) {
      // Blocks handed out back to front, so tables are not the identity.
      const int64_t needed =
          (static_cast<int64_t>(prompts[p].size()) + steps + block_size - 1) / block_size;
      for (int64_t b = 0; b < needed; ++b)
        tables[p].push_back(static_cast<int32_t>(pool.num_blocks - 1 - next_block++));
      sequence.paged_cache = &pool;
      sequence.block_table = &tables[p];
    } else {
      sequence.cache = &caches[p];
    }
    batch.push_back(sequence);
  }
  GreedyRun run;
  run.tokens.resize(prompts.size());
  run.top5.resize(prompts.size());
  std::vector<int64_t> cached(prompts.size(), 0);
  for (int step = 0; step < steps; ++step) {
    Tensor logits = model.forward(batch);
    run.logits.push_back(logits);
    for (size_t p = 0; p < prompts.size(); ++p) {
      const float* row = logits.f32() + p * vocab;
      run.top5[p].push_back(testing::top_k_ids(row, vocab, 5));
      const int32_t token = run.top5[p].back()[0];
      run.tokens[p].push_back(token);
      cached[p] += static_cast<int64_t>(batch[p].tokens.size());
      batch[p].num_cached = cached[p];
      batch[p].tokens = {token};
    }
  }
  return run;
}

void expect_logits_close(const Tensor& actual, const Tensor& expected, double tolerance,
                         const std::string& what) {
  ASSERT_EQ(actual.shape(), expected.shape()) << what;
  double worst = 0.0;
  int64_t worst_at = 0;
  for (int64_t i = 0; i < actual.numel(); ++i) {
    const double e = expected.f32()[i];
    const double scaled = std::fabs(actual.f32()[i] - e) / (1.0 + std::fabs(e));
    if (!(scaled <= worst)) worst = scaled, worst_at = i;  // NaN becomes the worst
  }
  std::cout << what << ": worst |gpu - cpu| / (1 + |cpu|) = " << worst << "\n";
  EXPECT_LE(worst, tolerance) << what << " at element " << worst_at << ": gpu "
                              << actual.f32()[worst_at] << ", cpu " << expected.f32()[worst_at];
}

std::vector<std::vector<int32_t>> prompt_ids(const std::vector<testing::ReferencePrompt>& prompts) {
  std::vector<std::vector<int32_t>> ids;
  for (const auto& prompt : prompts) ids.push_back(prompt.token_ids);
  return ids;
}

class CudaFixture : public ::testing::TestWithParam<std::string> {};

/// The relative L2 bound against HF's bf16 logits: 2e-2, except on llama-linear-sharded, whose
/// random weights amplify bf16 rounding the most: there HF's own fp32 and bf16 runs are 2.4-2.9%
/// apart, and servelab's bf16 run measured 2.1-2.3% from HF's (H100, 2026-11-22).
double bf16_tolerance(const std::string& fixture) {
  return fixture == "llama-linear-sharded" ? 2.5e-2 : 2e-2;
}

TEST_P(CudaFixture, Fp32LogitsMatchTheCpuEngineAtPrefillAndEveryDecodeStep) {
  REQUIRE_GPU();
  const std::string dir = testing::fixture_model_dir(GetParam());
  CpuBackend cpu;
  CudaBackend gpu(CudaBackendOptions{DType::kF32});
  LlamaModel cpu_model = LlamaModel::load(dir, cpu);
  LlamaModel gpu_model = LlamaModel::load(dir, gpu);
  const auto prompts = prompt_ids(testing::read_reference(GetParam()));

  // All positions of every prompt at once (prefill through both attention paths).
  for (bool paged : {false, true}) {
    std::vector<ContiguousKvCache> cpu_caches, gpu_caches;
    PagedKvCache pool = gpu_model.new_paged_kv_cache(64, 8);
    std::vector<std::vector<int32_t>> tables(prompts.size());
    std::vector<ForwardSequence> cpu_batch, gpu_batch;
    int32_t block = 63;
    for (size_t p = 0; p < prompts.size(); ++p) {
      cpu_caches.push_back(cpu_model.new_kv_cache(prompts[p].size()));
      gpu_caches.push_back(gpu_model.new_kv_cache(prompts[p].size()));
    }
    for (size_t p = 0; p < prompts.size(); ++p) {
      cpu_batch.push_back({prompts[p], &cpu_caches[p]});
      ForwardSequence sequence{prompts[p]};
      if (paged) {
        for (size_t b = 0; b < (prompts[p].size() + 7) / 8; ++b) tables[p].push_back(block--);
        sequence.paged_cache = &pool;
        sequence.block_table = &tables[p];
      } else {
        sequence.cache = &gpu_caches[p];
      }
      gpu_batch.push_back(sequence);
    }
    expect_logits_close(gpu_model.forward(gpu_batch, true), cpu_model.forward(cpu_batch, true),
                        1e-3, std::string(paged ? "paged" : "contiguous") + " prefill");
  }

  // Greedy decoding, step by step: contiguous and paged GPU runs against the CPU.
  const int kSteps = 12;
  GreedyRun reference = run_greedy(cpu_model, prompts, kSteps, false);
  for (bool paged : {false, true}) {
    GreedyRun run = run_greedy(gpu_model, prompts, kSteps, paged, 16);
    for (int step = 0; step < kSteps; ++step) {
      expect_logits_close(
          run.logits[step], reference.logits[step], 1e-3,
          std::string(paged ? "paged" : "contiguous") + " step " + std::to_string(step));
    }
    EXPECT_EQ(run.tokens, reference.tokens);
  }
  EXPECT_GT(gpu.graph_replays(), 0) << "decode steps were never replayed from a CUDA graph";
}

TEST_P(CudaFixture, Bf16PromptLogitsAreWithinTwoPercentOfHuggingFacesBf16Run) {
  REQUIRE_GPU();
  CudaBackend gpu(CudaBackendOptions{DType::kBF16});
  LlamaModel model = LlamaModel::load(testing::fixture_model_dir(GetParam()), gpu);
  const auto prompts = testing::read_reference(GetParam(), "reference_bf16.json");
  SafetensorsFile references(
      testing::fixture_path(GetParam() + "/reference_logits_bf16.safetensors"));
  for (size_t p = 0; p < prompts.size(); ++p) {
    PagedKvCache pool = model.new_paged_kv_cache(32, 16);
    std::vector<int32_t> table;
    for (int32_t b = 31; b >= 0; --b) table.push_back(b);
    ForwardSequence sequence{prompts[p].token_ids};
    sequence.paged_cache = &pool;
    sequence.block_table = &table;
    std::vector<ForwardSequence> batch = {sequence};
    Tensor logits = model.forward(batch, true);
    std::vector<float> ours(logits.f32(), logits.f32() + logits.numel());
    const std::vector<float> expected = testing::read_reference_logits(references, p);
    ASSERT_EQ(ours.size(), expected.size());
    const double error = testing::relative_l2(ours, expected);
    std::cout << GetParam() << " prompt " << p << ": relative L2 vs HF bf16 = " << error << "\n";
    EXPECT_LE(error, bf16_tolerance(GetParam())) << "prompt " << p;
  }
}

TEST_P(CudaFixture, Bf16GreedyTokensAreCloseToHuggingFacesBf16Run) {
  REQUIRE_GPU();
  CudaBackend gpu(CudaBackendOptions{DType::kBF16});
  LlamaModel model = LlamaModel::load(testing::fixture_model_dir(GetParam()), gpu);
  const auto references = testing::read_reference(GetParam(), "reference_bf16.json");
  const auto prompts = prompt_ids(references);
  const int steps = static_cast<int>(references[0].greedy_token_ids.size());
  GreedyRun run = run_greedy(model, prompts, steps, /*paged=*/true);
  for (size_t p = 0; p < prompts.size(); ++p) {
    ::testing::AssertionResult close = testing::greedy_close(
        run.tokens[p], run.top5[p], references[p].greedy_token_ids, references[p].top5);
    std::cout << GetParam() << " prompt " << p << ": " << close.message() << "\n";
    EXPECT_TRUE(close) << "prompt " << p;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaFixture, ::testing::ValuesIn(kFixtures),
                         [](const auto& info) { return testing::fixture_test_name(info.param); });

TEST(CudaEmbeddedModel, Bf16GreedyTextEqualsTheCpusOrTheClosenessRuleExplainsIt) {
  REQUIRE_GPU();
  const std::string dir = testing::fixture_model_dir("embedded");
  CpuBackend cpu;
  CudaBackend gpu(CudaBackendOptions{DType::kBF16});
  LlamaModel cpu_model = LlamaModel::load(dir, cpu);
  LlamaModel gpu_model = LlamaModel::load(dir, gpu);
  std::vector<std::vector<int32_t>> prompts = prompt_ids(testing::read_reference("embedded"));
  // Two more openings, tokenised like the references' (BOS + sentencepiece ids), cut from them.
  prompts.push_back(std::vector<int32_t>(prompts[0].begin(), prompts[0].begin() + 3));
  prompts.push_back(std::vector<int32_t>(prompts[1].begin(), prompts[1].end() - 1));
  GreedyRun cpu_run = run_greedy(cpu_model, prompts, 32, false);
  GreedyRun gpu_run = run_greedy(gpu_model, prompts, 32, true);
  int identical = 0;
  for (size_t p = 0; p < prompts.size(); ++p) {
    ::testing::AssertionResult close = testing::greedy_close(gpu_run.tokens[p], gpu_run.top5[p],
                                                             cpu_run.tokens[p], cpu_run.top5[p]);
    std::cout << "embedded prompt " << p << ": " << close.message() << "\n";
    EXPECT_TRUE(close) << "prompt " << p;
    identical += gpu_run.tokens[p] == cpu_run.tokens[p];
  }
  std::cout << identical << " of " << prompts.size() << " prompts give identical 32-token text\n";
}

TEST(CudaGraphs, ReplayedDecodeStepsEqualDirectlyRunSteps) {
  REQUIRE_GPU();
  const std::string dir = testing::fixture_model_dir("embedded");
  CudaBackendOptions direct_options{DType::kBF16};
  direct_options.use_graphs = false;
  CudaBackend direct(direct_options);
  CudaBackend graphed(CudaBackendOptions{DType::kBF16});
  LlamaModel direct_model = LlamaModel::load(dir, direct);
  LlamaModel graphed_model = LlamaModel::load(dir, graphed);
  const auto prompts = prompt_ids(testing::read_reference("embedded"));
  for (bool paged : {true, false}) {
    GreedyRun a = run_greedy(direct_model, prompts, 40, paged);
    GreedyRun b = run_greedy(graphed_model, prompts, 40, paged);
    EXPECT_EQ(a.tokens, b.tokens);
    for (size_t step = 0; step < a.logits.size(); ++step) {
      expect_logits_close(b.logits[step], a.logits[step], 1e-6,
                          "graph step " + std::to_string(step));
    }
  }
  EXPECT_EQ(direct.graph_replays(), 0);
  EXPECT_GT(graphed.graph_replays(), 60);
}

TEST(CudaBatching, GreedyTokensOfASequenceDoNotDependOnItsBatch) {
  REQUIRE_GPU();
  const std::string dir = testing::fixture_model_dir("llama-gqa-llama3-tied");
  CudaBackend gpu(CudaBackendOptions{DType::kF32});
  LlamaModel model = LlamaModel::load(dir, gpu);
  const auto prompts = prompt_ids(testing::read_reference("llama-gqa-llama3-tied"));
  std::vector<std::vector<int32_t>> crowd;
  for (int copy = 0; copy < 3; ++copy) {
    for (const auto& prompt : prompts) {
      crowd.push_back(std::vector<int32_t>(prompt.begin(), prompt.end() - copy));
    }
  }
  GreedyRun together = run_greedy(model, crowd, 16, true);
  for (size_t p = 0; p < crowd.size(); ++p) {
    GreedyRun alone = run_greedy(model, {crowd[p]}, 16, true);
    EXPECT_EQ(alone.tokens[0], together.tokens[p]) << "sequence " << p;
  }
}

TEST(CudaGreedy, ArgmaxOnTheDeviceEqualsArgmaxOfTheCopiedLogits) {
  REQUIRE_GPU();
  CudaBackend gpu(CudaBackendOptions{DType::kBF16});
  LlamaModel model = LlamaModel::load(testing::fixture_model_dir("embedded"), gpu);
  const auto prompts = prompt_ids(testing::read_reference("embedded"));
  std::vector<ContiguousKvCache> a, b;
  std::vector<ForwardSequence> with_logits, with_ids;
  for (const auto& prompt : prompts) {
    a.push_back(model.new_kv_cache(prompt.size()));
    b.push_back(model.new_kv_cache(prompt.size()));
  }
  for (size_t p = 0; p < prompts.size(); ++p) {
    with_logits.push_back({prompts[p], &a[p]});
    with_ids.push_back({prompts[p], &b[p]});
  }
  Tensor logits = model.forward(with_logits);
  std::vector<int32_t> ids = model.forward_greedy(with_ids);
  const int64_t vocab = model.config().vocab_size;
  for (size_t p = 0; p < prompts.size(); ++p) {
    EXPECT_EQ(ids[p], testing::top_k_ids(logits.f32() + p * vocab, vocab, 1)[0]);
  }
}

TEST(CudaBackendErrors, AMissingDeviceFailsWithAClearMessage) {
  // Without a GPU: "no CUDA device"; with one, a device ordinal that does not exist.
  CudaBackendOptions options;
  options.device = 99;
  try {
    CudaBackend backend(options);
    FAIL() << "a CUDA backend was made on a device that does not exist";
  } catch (const Error& error) {
    const std::string expected = cuda_device_available() ? "does not exist" : "no CUDA device";
    EXPECT_NE(std::string(error.what()).find(expected), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace servelab
