// Prompts of an exact token count for a replay: the traces give lengths only, so the replay writes
// text that the model's tokenizer turns into exactly the trace's number of prompt tokens (BOS
// included, as the servers count them). Requests that share leading Mooncake hash ids get the same
// leading text, block by block, so that prefix caching sees what it would see in production.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "replay/trace.h"
#include "tokenizer/tokenizer.h"

namespace servelab {

/// Text that `tokenizer.encode()` turns into exactly `tokens` ids (>= 2: BOS and one more), made
/// of plain English words drawn from `seed`. With `hash_ids`, the text is built block by block,
/// each block's words drawn from its id, about `block_tokens` tokens each, so that two requests
/// with the same leading ids share those blocks' text; the last block is cut or padded to the
/// exact count. Throws servelab::Error if no text of that count is found (a tokenizer whose pieces
/// cannot add one token at a time).
std::string synthesize_prompt(const Tokenizer& tokenizer, int64_t tokens, uint64_t seed,
                              const std::vector<int64_t>& hash_ids = {},
                              int64_t block_tokens = 512);

/// One prompt per request of `trace`, of its prompt length (at least 2 tokens) and its hash ids;
/// request i's words are drawn from `seed` and i, so the same trace and seed give the same
/// prompts (the same for every server a comparison replays them against).
std::vector<std::string> synthesize_prompts(const Tokenizer& tokenizer,
                                            const std::vector<TraceRequest>& trace, uint64_t seed);

}  // namespace servelab
