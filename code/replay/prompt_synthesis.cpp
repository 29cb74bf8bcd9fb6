// Prompt synthesis (see prompt_synthesis.h).
#include "replay/prompt_synthesis.h"

#include <algorithm>
#include <random>

#include "common/error.h"

namespace servelab {
namespace {

const char* const kWords[] = {"the",   "a",    "little", "dog",  "cat",   "sun",  "tree", "ran",
                              "saw",   "big",  "red",    "ball", "and",   "then", "home", "happy",
                              "play",  "park", "friend", "day",  "one",   "went", "to",   "with",
                              "his",   "her",  "mom",    "dad",  "said",  "good", "bird", "water",
                              "house", "blue", "fast",   "slow", "found", "box",  "toy",  "sky"};
constexpr size_t kWordCount = sizeof(kWords) / sizeof(kWords[0]);

/// Appends words drawn from `random` until `text` holds at least `target` tokens (counting BOS).
void grow(const Tokenizer& tokenizer, std::string& text, int64_t target, std::mt19937_64& random) {
  // Words are one or two tokens: add about the missing count at a time, then check.
  while (true) {
    const int64_t have = static_cast<int64_t>(tokenizer.encode(text).size());
    if (have >= target) return;
    for (int64_t i = 0; i < std::max<int64_t>(1, (target - have) * 2 / 3); ++i) {
      if (!text.empty()) text += ' ';
      text += kWords[random() % kWordCount];
    }
  }
}

/// Cuts whole words off the end, then adds single-letter words, until the count is exact.
std::string fit(const Tokenizer& tokenizer, std::string text, int64_t target) {
  while (static_cast<int64_t>(tokenizer.encode(text).size()) > target) {
    const size_t space = text.find_last_of(' ');
    if (space == std::string::npos) {
      text.clear();
      break;
    }
    text.resize(space);
  }
  for (const char* filler : {" a", " I", " o", ".", " x"}) {
    std::string attempt = text;
    for (int i = 0; i < 64; ++i) {
      const int64_t have = static_cast<int64_t>(tokenizer.encode(attempt).size());
      if (have == target) return attempt;
      if (have > target) break;
      attempt += text.empty() && attempt.empty() ? std::string(filler + 1) : std::string(filler);
    }
  }
  fail("cannot write a prompt of exactly ", target, " tokens with this tokenizer");
}

}  // namespace

std::string synthesize_prompt(const Tokenizer& tokenizer, int64_t tokens, uint64_t seed,
                              const std::vector<int64_t>& hash_ids, int64_t block_tokens) {
  if (tokens < 2) fail("a prompt needs at least 2 tokens (BOS and one more), asked for ", tokens);
  if (block_tokens < 1) fail("block_tokens must be >= 1");
  std::string text;
  // The blocks named by the hash ids, each drawn from its own id: shared ids, shared text.
  for (size_t block = 0; block < hash_ids.size(); ++block) {
    const int64_t block_end =
        std::min<int64_t>(tokens, (static_cast<int64_t>(block) + 1) * block_tokens);
    std::mt19937_64 random(static_cast<uint64_t>(hash_ids[block]) * 0x9E3779B97F4A7C15ull + 1);
    grow(tokenizer, text, block_end, random);
    if (block_end == tokens) break;
  }
  std::mt19937_64 random(seed);
  grow(tokenizer, text, tokens, random);
  return fit(tokenizer, text, tokens);
}

std::vector<std::string> synthesize_prompts(const Tokenizer& tokenizer,
                                            const std::vector<TraceRequest>& trace, uint64_t seed) {
  std::vector<std::string> prompts;
  prompts.reserve(trace.size());
  for (size_t i = 0; i < trace.size(); ++i)
    prompts.push_back(synthesize_prompt(tokenizer, std::max<int64_t>(2, trace[i].prompt_tokens),
                                        seed * 1000003 + i, trace[i].hash_ids));
  return prompts;
}

}  // namespace servelab
