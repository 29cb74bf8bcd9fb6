// The paged KV layout against the contiguous one on the CPU: the same model, the same prompts,
// keys and values scattered over shuffled blocks of a shared pool (block size 4, so sequences span
// many blocks and end mid-block), prompts prefilled whole or in chunks, and decode steps of a
// mixed batch. Logits must agree to fp32 rounding and greedy tokens exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "common/error.h"
#include "model/fixture_reference.h"
#include "model/llama_model.h"

namespace servelab {
namespace {

class PagedForward : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    model_ = std::make_unique<LlamaModel>(
        LlamaModel::load(testing::fixture_model_dir(GetParam()), backend_));
    prompts_ = testing::read_reference(GetParam());
  }

  /// A pool of `blocks` blocks handed out in a shuffled order.
  void make_pool(int64_t blocks, int64_t block_size) {
    cache_ = model_->new_paged_kv_cache(blocks, block_size);
    free_.resize(static_cast<size_t>(blocks));
    for (int64_t b = 0; b < blocks; ++b) free_[b] = static_cast<int32_t>(b);
    std::shuffle(free_.begin(), free_.end(), std::mt19937(7));
  }
  /// Grows a block table to hold `positions` positions.
  void reserve(std::vector<int32_t>& table, int64_t positions) {
    while (static_cast<int64_t>(table.size()) * cache_.block_size < positions) {
      ASSERT_FALSE(free_.empty());
      table.push_back(free_.back());
      free_.pop_back();
    }
  }

  static void expect_close(const Tensor& actual, const Tensor& expected, const std::string& what) {
    ASSERT_EQ(actual.shape(), expected.shape()) << what;
    for (int64_t i = 0; i < actual.numel(); ++i) {
      const float e = expected.f32()[i];
      ASSERT_NEAR(actual.f32()[i], e, 1e-5 * (1 + std::fabs(e))) << what << " element " << i;
    }
  }

  CpuBackend backend_;
  std::unique_ptr<LlamaModel> model_;
  std::vector<testing::ReferencePrompt> prompts_;
  PagedKvCache cache_;
  std::vector<int32_t> free_;
};

TEST_P(PagedForward, PrefillOfAllPromptsTogetherEqualsTheContiguousCache) {
  make_pool(64, 4);
  std::vector<ContiguousKvCache> contiguous;
  std::vector<std::vector<int32_t>> tables(prompts_.size());
  std::vector<ForwardSequence> paged_batch, contiguous_batch;
  for (const auto& prompt : prompts_)
    contiguous.push_back(model_->new_kv_cache(prompt.token_ids.size()));
  for (size_t p = 0; p < prompts_.size(); ++p) {
    reserve(tables[p], prompts_[p].token_ids.size());
    ForwardSequence paged{prompts_[p].token_ids};
    paged.paged_cache = &cache_;
    paged.block_table = &tables[p];
    paged_batch.push_back(paged);
    contiguous_batch.push_back({prompts_[p].token_ids, &contiguous[p]});
  }
  expect_close(model_->forward(paged_batch, true), model_->forward(contiguous_batch, true),
               "all positions");
}

TEST_P(PagedForward, ChunkedPrefillThenMixedDecodeEqualsTheContiguousCache) {
  make_pool(96, 4);
  const int kSteps = 6;
  std::vector<ContiguousKvCache> contiguous;
  std::vector<std::vector<int32_t>> tables(prompts_.size());
  std::vector<int64_t> cached(prompts_.size(), 0);
  for (const auto& prompt : prompts_) {
    contiguous.push_back(model_->new_kv_cache(prompt.token_ids.size() + kSteps));
  }
  // Prompt 0 is prefilled in two chunks (a cached prefix, then the rest); the others whole.
  const auto& first = prompts_[0].token_ids;
  const size_t split = first.size() / 2;
  reserve(tables[0], split);
  ForwardSequence chunk{std::vector<int32_t>(first.begin(), first.begin() + split)};
  chunk.paged_cache = &cache_;
  chunk.block_table = &tables[0];
  std::vector<ForwardSequence> chunk_batch = {chunk};
  model_->forward(chunk_batch);
  cached[0] = static_cast<int64_t>(split);

  // One mixed step: the rest of prompt 0 (after its cached prefix) and the other prompts whole.
  std::vector<ForwardSequence> paged_batch, contiguous_batch;
  for (size_t p = 0; p < prompts_.size(); ++p) {
    const auto& ids = prompts_[p].token_ids;
    reserve(tables[p], ids.size());
    ForwardSequence paged{std::vector<int32_t>(ids.begin() + cached[p], ids.end())};
    paged.paged_cache = &cache_;
    paged.block_table = &tables[p];
    paged.num_cached = cached[p];
    paged_batch.push_back(paged);
    contiguous_batch.push_back({ids, &contiguous[p]});
    cached[p] = static_cast<int64_t>(ids.size());
  }
  const int64_t vocab = model_->config().vocab_size;
  Tensor paged_logits = model_->forward(paged_batch);
  Tensor contiguous_logits = model_->forward(contiguous_batch);
  expect_close(paged_logits, contiguous_logits, "after prefill");

  for (int step = 0; step < kSteps; ++step) {
    for (size_t p = 0; p < prompts_.size(); ++p) {
      const int32_t token = testing::top_k_ids(contiguous_logits.f32() + p * vocab, vocab, 1)[0];
      reserve(tables[p], cached[p] + 1);
      paged_batch[p].tokens = {token};
      paged_batch[p].num_cached = cached[p]++;
      contiguous_batch[p].tokens = {token};
    }
    paged_logits = model_->forward(paged_batch);
    contiguous_logits = model_->forward(contiguous_batch);
    expect_close(paged_logits, contiguous_logits, "decode step " + std::to_string(step));
  }
}

TEST_P(PagedForward, BadBlockTablesAreRefusedWithAClearError) {
  make_pool(8, 4);
  std::vector<int32_t> table = {0};  // one block of 4 positions for a longer prompt
  ForwardSequence sequence{prompts_[0].token_ids};
  sequence.paged_cache = &cache_;
  sequence.block_table = &table;
  std::vector<ForwardSequence> batch = {sequence};
  try {
    model_->forward(batch);
    FAIL() << "a block table too short for the prompt was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("block table"), std::string::npos) << error.what();
  }
  table.assign(8, 99);  // blocks outside the pool
  try {
    model_->forward(batch);
    FAIL() << "blocks outside the pool were accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("pool"), std::string::npos) << error.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, PagedForward,
                         ::testing::Values("llama-mha", "llama-gqa-llama3-tied", "qwen2-bias",
                                           "llama-linear-sharded", "embedded"),
                         [](const auto& info) { return testing::fixture_test_name(info.param); });

}  // namespace
}  // namespace servelab
