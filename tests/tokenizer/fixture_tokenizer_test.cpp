// servelab's tokenizer against Python's sentencepiece and Hugging Face's tokenizer on the fixture
// models: the same prompt gives the same ids, and HF's greedy tokens decode to the same text,
// streamed piece by piece or all at once.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "model/model_config.h"
#include "test_paths.h"
#include "tokenizer/incremental_detokenizer.h"
#include "tokenizer/tokenizer.h"

namespace servelab {
namespace {

class FixtureTokenizer : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    directory_ = testing::fixture_model_dir(GetParam());
    ModelConfig config = ModelConfig::load(directory_);
    tokenizer_ = std::make_unique<Tokenizer>(
        Tokenizer::load(directory_, SpecialTokens{config.bos_token_id, config.eos_token_ids}));
    std::ifstream in(testing::fixture_path(GetParam() + "/reference.json"));
    reference_ = nlohmann::json::parse(in);
  }
  std::string directory_;
  std::unique_ptr<Tokenizer> tokenizer_;
  nlohmann::json reference_;
};

TEST_P(FixtureTokenizer, EncodesPromptsExactlyAsPythonSentencepieceAndHuggingFace) {
  ASSERT_FALSE(reference_["prompts"].empty());
  for (const auto& prompt : reference_["prompts"]) {
    auto ids = tokenizer_->encode(prompt["text"].get<std::string>());
    EXPECT_EQ(ids, prompt["token_ids"].get<std::vector<int32_t>>()) << prompt["text"];
    if (prompt.contains("hf_tokenizer_ids")) {
      EXPECT_EQ(ids, prompt["hf_tokenizer_ids"].get<std::vector<int32_t>>()) << prompt["text"];
    }
  }
}

TEST_P(FixtureTokenizer, DecodesGreedyTokensAsPythonSentencepieceDoes) {
  for (const auto& prompt : reference_["prompts"]) {
    auto tokens = prompt["greedy_token_ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tokenizer_->decode(tokens), prompt["greedy_text"].get<std::string>());
  }
}

TEST_P(FixtureTokenizer, StreamingTheGreedyTokensAfterThePromptYieldsTheFullText) {
  for (const auto& prompt : reference_["prompts"]) {
    auto context = prompt["token_ids"].get<std::vector<int32_t>>();
    auto tokens = prompt["greedy_token_ids"].get<std::vector<int32_t>>();
    IncrementalDetokenizer detokenizer(*tokenizer_, context);
    std::string streamed;
    for (int32_t token : tokens) streamed += detokenizer.push(token);
    streamed += detokenizer.finish();
    // In the prompt's context, the first piece keeps its leading space: compare with the
    // decode of prompt + generated minus the decode of the prompt.
    std::vector<int32_t> all = context;
    all.insert(all.end(), tokens.begin(), tokens.end());
    std::string full = tokenizer_->decode(all);
    std::string prompt_text = tokenizer_->decode(context);
    ASSERT_EQ(full.rfind(prompt_text, 0), 0u);
    EXPECT_EQ(streamed, full.substr(prompt_text.size())) << prompt["text"];
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureTokenizer,
                         ::testing::Values("llama-mha", "llama-linear-sharded", "embedded"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) c = c == '-' ? '_' : c;
                           return name;
                         });

}  // namespace
}  // namespace servelab
