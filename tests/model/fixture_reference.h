// Reading the Hugging Face references committed with the fixtures (tests/fixtures/*/reference*.json
// and reference_logits*.safetensors), and the comparisons the model tests share: top-k ids and
// vLLM's closeness rule for greedy sequences.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/dtype.h"
#include "model/safetensors.h"
#include "test_paths.h"

namespace servelab::testing {

struct ReferencePrompt {
  std::string text;
  std::vector<int32_t> token_ids;
  std::vector<int32_t> greedy_token_ids;
  std::vector<std::vector<int32_t>> top5;  ///< per greedy step (bf16 references only)
};

/// reference.json (fp32 run) or reference_bf16.json (bf16 run) of a fixture.
inline std::vector<ReferencePrompt> read_reference(const std::string& fixture,
                                                   const std::string& file = "reference.json") {
  std::ifstream in(fixture_path(fixture + "/" + file));
  EXPECT_TRUE(in.good()) << fixture << "/" << file;
  nlohmann::json json = nlohmann::json::parse(in);
  std::vector<ReferencePrompt> prompts;
  for (const auto& entry : json["prompts"]) {
    ReferencePrompt prompt;
    if (entry.contains("text")) prompt.text = entry["text"].get<std::string>();
    prompt.token_ids = entry["token_ids"].get<std::vector<int32_t>>();
    prompt.greedy_token_ids = entry["greedy_token_ids"].get<std::vector<int32_t>>();
    if (entry.contains("top5"))
      prompt.top5 = entry["top5"].get<std::vector<std::vector<int32_t>>>();
    prompts.push_back(prompt);
  }
  return prompts;
}

/// prompt_i of a reference logits file as fp32 [T * vocab].
inline std::vector<float> read_reference_logits(const SafetensorsFile& file, size_t prompt) {
  const SafetensorsTensor* tensor = file.find("prompt_" + std::to_string(prompt));
  EXPECT_NE(tensor, nullptr) << "prompt_" << prompt;
  if (tensor == nullptr) return {};
  std::vector<float> values(static_cast<size_t>(shape_numel(tensor->shape)));
  if (!tensor->dtype) return {};
  convert_to_f32(*tensor->dtype, tensor->data, values.data(), values.size());
  return values;
}

/// The k largest entries' indices, largest first.
inline std::vector<int32_t> top_k_ids(const float* row, int64_t size, int k) {
  std::vector<int32_t> ids(static_cast<size_t>(size));
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
    return row[a] > row[b] || (row[a] == row[b] && a < b);
  });
  ids.resize(static_cast<size_t>(k));
  return ids;
}

/// vLLM's closeness rule for two greedy sequences: walk both; at the first position where they
/// differ, each side's token must be among the other side's top 5 at that position, and the
/// comparison stops there (after a near-tie flips, the continuations legitimately diverge).
inline ::testing::AssertionResult greedy_close(
    const std::vector<int32_t>& ours, const std::vector<std::vector<int32_t>>& our_top5,
    const std::vector<int32_t>& theirs, const std::vector<std::vector<int32_t>>& their_top5) {
  const size_t steps = std::min(ours.size(), theirs.size());
  for (size_t i = 0; i < steps; ++i) {
    if (ours[i] == theirs[i]) continue;
    auto contains = [](const std::vector<int32_t>& top, int32_t id) {
      return std::find(top.begin(), top.end(), id) != top.end();
    };
    if (i < our_top5.size() && i < their_top5.size() && contains(their_top5[i], ours[i]) &&
        contains(our_top5[i], theirs[i])) {
      return ::testing::AssertionSuccess() << "identical for " << i << " tokens, then a near-tie";
    }
    return ::testing::AssertionFailure()
           << "token " << i << " differs (ours " << ours[i] << ", reference " << theirs[i]
           << ") and is not in the other side's top 5";
  }
  return ::testing::AssertionSuccess() << "identical for all " << steps << " tokens";
}

/// ||a - b|| / ||b|| over all elements.
inline double relative_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    norm += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}

/// Fixture names as test-name suffixes ("llama-mha" -> "llama_mha").
inline std::string fixture_test_name(const std::string& name) {
  std::string result = name;
  for (char& c : result) {
    if (c == '-') c = '_';
  }
  return result;
}

}  // namespace servelab::testing
