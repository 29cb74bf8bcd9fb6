// Prompts of an exact token count, with the embedded model's tokenizer.
#include "replay/prompt_synthesis.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "test_paths.h"

namespace servelab {
namespace {

const Tokenizer& tokenizer() {
  static const Tokenizer instance =
      Tokenizer::load(servelab::testing::source_path("models/servelab-stories"));
  return instance;
}

TEST(PromptSynthesis, EveryCountFrom2To600IsExact) {
  for (int64_t tokens = 2; tokens <= 600; tokens += tokens < 40 ? 1 : 37) {
    const std::string prompt =
        synthesize_prompt(tokenizer(), tokens, static_cast<uint64_t>(tokens));
    EXPECT_EQ(static_cast<int64_t>(tokenizer().encode(prompt).size()), tokens) << prompt;
  }
  EXPECT_THROW(synthesize_prompt(tokenizer(), 1, 0), Error);
}

TEST(PromptSynthesis, SharedHashIdsGiveSharedLeadingTextAndTheSeedRepeatsIt) {
  const std::string a = synthesize_prompt(tokenizer(), 300, 1, {7, 8, 9}, 100);
  const std::string b = synthesize_prompt(tokenizer(), 250, 2, {7, 8, 4}, 100);
  const std::string c = synthesize_prompt(tokenizer(), 300, 3, {5, 8, 9}, 100);
  EXPECT_EQ(static_cast<int64_t>(tokenizer().encode(a).size()), 300);
  EXPECT_EQ(static_cast<int64_t>(tokenizer().encode(b).size()), 250);
  // a and b share blocks 7 and 8: at least 150 tokens' worth of text in common at the start.
  size_t common = 0;
  while (common < std::min(a.size(), b.size()) && a[common] == b[common]) ++common;
  EXPECT_GE(static_cast<int64_t>(tokenizer().encode(a.substr(0, common)).size()), 150);
  EXPECT_NE(a.substr(0, 20), c.substr(0, 20)) << "different first blocks";
  EXPECT_EQ(synthesize_prompt(tokenizer(), 300, 1, {7, 8, 9}, 100), a);
}

}  // namespace
}  // namespace servelab
