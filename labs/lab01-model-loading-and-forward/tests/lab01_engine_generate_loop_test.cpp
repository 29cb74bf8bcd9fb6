// Lab 01, part lab01-generate-loop: the decode loop of Generator::generate_from_ids in
// code/engine/generator.cpp, run on the embedded story model.
#include <gtest/gtest.h>

#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>

#include "backend/cpu/cpu_backend.h"
#include "engine/generator.h"
#include "test_paths.h"

namespace servelab {
namespace {

// Each test loads the model itself (about 0.1 s): an error while loading then fails the test,
// where an error in SetUpTestSuite would only skip it.
class Lab01GenerateLoop : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = testing::source_path("models/servelab-stories");
    model_ = std::make_unique<LlamaModel>(LlamaModel::load(dir, backend_));
    const ModelConfig& config = model_->config();
    tokenizer_ = std::make_unique<Tokenizer>(
        Tokenizer::load(dir, {config.bos_token_id, config.eos_token_ids}));
  }
  GenerationOptions greedy(int64_t max_new_tokens, bool ignore_eos) {
    GenerationOptions options;
    options.max_new_tokens = max_new_tokens;
    options.ignore_eos = ignore_eos;
    options.sampling.temperature = 0.0f;
    return options;
  }
  CpuBackend backend_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_F(Lab01GenerateLoop, GreedyTokensEqualTransformers) {
  std::ifstream in(testing::fixture_path("embedded/reference.json"));
  const nlohmann::json reference = nlohmann::json::parse(in);
  Generator generator(*model_, *tokenizer_);
  for (const auto& prompt : reference["prompts"]) {
    auto expected = prompt["greedy_token_ids"].get<std::vector<int32_t>>();
    GenerationResult result = generator.generate(
        prompt["text"].get<std::string>(), greedy(static_cast<int64_t>(expected.size()), true));
    EXPECT_EQ(result.prompt_token_ids, prompt["token_ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(result.token_ids, expected) << prompt["text"];
    EXPECT_EQ(result.finish_reason, "length");
  }
}

TEST_F(Lab01GenerateLoop, AStoryEndsAtEosWhichGivesNoText) {
  Generator generator(*model_, *tokenizer_);
  GenerationResult result = generator.generate("Once upon a time", greedy(400, false));
  EXPECT_EQ(result.finish_reason, "stop");
  ASSERT_FALSE(result.token_ids.empty());
  EXPECT_TRUE(tokenizer_->is_eos(result.token_ids.back()));
  EXPECT_LT(result.token_ids.size(), 400u);
  // The text is what the tokens add to the prompt's text: decode(prompt + story) - decode(prompt).
  std::vector<int32_t> all = result.prompt_token_ids;
  all.insert(all.end(), result.token_ids.begin(), result.token_ids.end() - 1);
  const std::string prompt_text = tokenizer_->decode(result.prompt_token_ids);
  EXPECT_EQ(result.text, tokenizer_->decode(all).substr(prompt_text.size()));
  EXPECT_NE(result.text.find("."), std::string::npos);
}

TEST_F(Lab01GenerateLoop, StreamedPiecesAddUpToTheTextAndTheBudgetIsRespected) {
  Generator generator(*model_, *tokenizer_);
  std::string streamed;
  int pieces = 0;
  GenerationResult result =
      generator.generate("One day, a little fox", greedy(40, true), [&](const std::string& piece) {
        streamed += piece;
        ++pieces;
      });
  EXPECT_EQ(result.token_ids.size(), 40u);
  EXPECT_EQ(result.finish_reason, "length");
  EXPECT_EQ(streamed, result.text);
  EXPECT_GT(pieces, 10) << "text must stream as it is produced, not arrive at the end";
}

TEST_F(Lab01GenerateLoop, IgnoreEosKeepsGoingPastTheEndOfAStory) {
  Generator generator(*model_, *tokenizer_);
  GenerationResult stopped = generator.generate("Once upon a time", greedy(400, false));
  ASSERT_EQ(stopped.finish_reason, "stop");
  GenerationResult kept =
      generator.generate("Once upon a time", greedy(stopped.token_ids.size() + 5, true));
  EXPECT_EQ(kept.token_ids.size(), stopped.token_ids.size() + 5);
  EXPECT_EQ(std::vector<int32_t>(kept.token_ids.begin(),
                                 kept.token_ids.begin() + stopped.token_ids.size()),
            stopped.token_ids);
}

}  // namespace
}  // namespace servelab
