// The prefix-cache key of a full block: a hash of its tokens chained with the key of the block
// before it, so that two blocks with the same tokens after different prefixes get different keys
// (their keys and values differ: attention saw different pasts).
#pragma once

#include <cstdint>
#include <vector>

namespace servelab {

/// The key of the first block of a sequence chains from this value.
constexpr uint64_t kNoPrefixHash = 0x9E3779B97F4A7C15ull;

/// Key of a full block holding `tokens` after the prefix whose last block had key `previous`.
/// 64-bit keys: two different prefixes collide with probability about 2^-64 per pair; a hit is
/// trusted without comparing tokens.
uint64_t chain_block_hash(uint64_t previous, const int32_t* tokens, int64_t count);
inline uint64_t chain_block_hash(uint64_t previous, const std::vector<int32_t>& tokens) {
  return chain_block_hash(previous, tokens.data(), static_cast<int64_t>(tokens.size()));
}

}  // namespace servelab
