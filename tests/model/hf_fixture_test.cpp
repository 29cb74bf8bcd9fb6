// The CPU engine against Hugging Face transformers: logits at every position and 32 greedy tokens
// for each fixture model (tests/fixtures/make_fixtures.py made them, and HF's outputs, on the
// device machine), run one sequence at a time and all prompts together in one batch.
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "model/fixture_reference.h"
#include "model/llama_model.h"
#include "model/safetensors.h"
#include "test_paths.h"

namespace servelab {
namespace {

// Checks `actual` [rows, vocab] against HF's logits with |a - r| <= 1e-4 * (1 + |r|).
void expect_logits_match(const float* actual, const SafetensorsTensor& reference, int64_t rows,
                         int64_t vocab, const std::string& what) {
  ASSERT_EQ(reference.shape, (Shape{rows, vocab})) << what;
  std::vector<float> expected(static_cast<size_t>(rows * vocab));
  convert_to_f32(DType::kF32, reference.data, expected.data(), expected.size());
  double worst = 0.0;
  int64_t worst_index = 0;
  for (int64_t i = 0; i < rows * vocab; ++i) {
    double excess = std::fabs(actual[i] - expected[i]) / (1.0 + std::fabs(expected[i]));
    if (excess > worst) worst = excess, worst_index = i;
  }
  ::testing::Test::RecordProperty(what + " worst scaled error", std::to_string(worst));
  std::cout << what << ": worst |ours - HF| / (1 + |HF|) = " << worst << "\n";
  EXPECT_LE(worst, 1e-4) << what << ": worst at row " << worst_index / vocab << ", token "
                         << worst_index % vocab << ": ours " << actual[worst_index] << ", HF "
                         << expected[worst_index];
}

class HfFixture : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    model_ = std::make_unique<LlamaModel>(
        LlamaModel::load(testing::fixture_model_dir(GetParam()), backend_));
    prompts_ = testing::read_reference(GetParam());
    logits_ = std::make_unique<SafetensorsFile>(
        testing::fixture_path(GetParam() + "/reference_logits.safetensors"));
  }
  const SafetensorsTensor& reference_logits(size_t prompt) {
    const SafetensorsTensor* tensor = logits_->find("prompt_" + std::to_string(prompt));
    EXPECT_NE(tensor, nullptr);
    return *tensor;
  }
  // Greedy decoding of several prompts in lock step, without stopping at EOS (as the fixture).
  std::vector<std::vector<int32_t>> greedy_together(const std::vector<size_t>& which, int steps) {
    const int64_t vocab = model_->config().vocab_size;
    std::vector<ContiguousKvCache> caches;
    std::vector<ForwardSequence> batch;
    for (size_t p : which)
      caches.push_back(model_->new_kv_cache(prompts_[p].token_ids.size() + steps));
    for (size_t i = 0; i < which.size(); ++i)
      batch.push_back({prompts_[which[i]].token_ids, &caches[i]});
    std::vector<std::vector<int32_t>> generated(which.size());
    for (int step = 0; step < steps; ++step) {
      Tensor logits = model_->forward(batch);
      for (size_t i = 0; i < which.size(); ++i) {
        int32_t token = testing::top_k_ids(logits.f32() + i * vocab, vocab, 1)[0];
        generated[i].push_back(token);
        batch[i].tokens = {token};
      }
    }
    return generated;
  }

  CpuBackend backend_;
  std::unique_ptr<LlamaModel> model_;
  std::vector<testing::ReferencePrompt> prompts_;
  std::unique_ptr<SafetensorsFile> logits_;
};

TEST_P(HfFixture, LogitsMatchTransformersAtEveryPositionForEachPromptAlone) {
  const int64_t vocab = model_->config().vocab_size;
  for (size_t p = 0; p < prompts_.size(); ++p) {
    const auto& ids = prompts_[p].token_ids;
    ContiguousKvCache cache = model_->new_kv_cache(ids.size());
    std::vector<ForwardSequence> batch = {{ids, &cache}};
    Tensor logits = model_->forward(batch, /*all_positions=*/true);
    expect_logits_match(logits.f32(), reference_logits(p), ids.size(), vocab,
                        "prompt " + std::to_string(p));
    EXPECT_EQ(cache.length, static_cast<int64_t>(ids.size()));
  }
}

TEST_P(HfFixture, LogitsMatchTransformersWhenAllPromptsShareOneBatch) {
  const int64_t vocab = model_->config().vocab_size;
  std::vector<ContiguousKvCache> caches;
  for (const auto& prompt : prompts_)
    caches.push_back(model_->new_kv_cache(prompt.token_ids.size()));
  std::vector<ForwardSequence> batch;
  for (size_t p = 0; p < prompts_.size(); ++p) batch.push_back({prompts_[p].token_ids, &caches[p]});
  Tensor logits = model_->forward(batch, /*all_positions=*/true);
  int64_t row = 0;
  for (size_t p = 0; p < prompts_.size(); ++p) {
    const int64_t rows = prompts_[p].token_ids.size();
    expect_logits_match(logits.f32() + row * vocab, reference_logits(p), rows, vocab,
                        "batched prompt " + std::to_string(p));
    row += rows;
  }
}

TEST_P(HfFixture, PrefillInTwoChunksGivesTheSameLogitsAsOneChunk) {
  // The cache must carry the first chunk's keys and values into the second chunk's attention.
  const int64_t vocab = model_->config().vocab_size;
  const auto& ids = prompts_[1].token_ids;
  const size_t split = ids.size() / 3;
  ContiguousKvCache cache = model_->new_kv_cache(ids.size());
  std::vector<ForwardSequence> first = {
      {std::vector<int32_t>(ids.begin(), ids.begin() + split), &cache}};
  model_->forward(first, true);
  std::vector<ForwardSequence> second = {
      {std::vector<int32_t>(ids.begin() + split, ids.end()), &cache}};
  Tensor logits = model_->forward(second, true);
  std::vector<float> expected_all(ids.size() * vocab);
  const SafetensorsTensor& reference = reference_logits(1);
  convert_to_f32(DType::kF32, reference.data, expected_all.data(), expected_all.size());
  for (size_t i = 0; i < (ids.size() - split) * vocab; ++i) {
    float expected = expected_all[split * vocab + i];
    ASSERT_NEAR(logits.f32()[i], expected, 1e-4 * (1 + std::fabs(expected))) << i;
  }
}

TEST_P(HfFixture, GreedyTokensMatchTransformersForEachPromptAlone) {
  for (size_t p = 0; p < prompts_.size(); ++p) {
    auto generated = greedy_together({p}, static_cast<int>(prompts_[p].greedy_token_ids.size()));
    EXPECT_EQ(generated[0], prompts_[p].greedy_token_ids) << "prompt " << p;
  }
}

TEST_P(HfFixture, GreedyTokensMatchTransformersWhenAllPromptsShareOneBatch) {
  std::vector<size_t> all;
  for (size_t p = 0; p < prompts_.size(); ++p) all.push_back(p);
  auto generated = greedy_together(all, static_cast<int>(prompts_[0].greedy_token_ids.size()));
  for (size_t p = 0; p < prompts_.size(); ++p) {
    EXPECT_EQ(generated[p], prompts_[p].greedy_token_ids) << "prompt " << p;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HfFixture,
                         ::testing::Values("llama-mha", "llama-gqa-llama3-tied", "qwen2-bias",
                                           "llama-linear-sharded", "embedded"),
                         [](const auto& info) { return testing::fixture_test_name(info.param); });

}  // namespace
}  // namespace servelab
