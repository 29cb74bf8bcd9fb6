#include "block_manager/block_hash.h"

namespace servelab {
namespace {

// SplitMix64's finaliser: every input bit affects every output bit.
uint64_t mix(uint64_t value) {
  value ^= value >> 30;
  value *= 0xBF58476D1CE4E5B9ull;
  value ^= value >> 27;
  value *= 0x94D049BB133111EBull;
  value ^= value >> 31;
  return value;
}

}  // namespace

uint64_t chain_block_hash(uint64_t previous, const int32_t* tokens, int64_t count) {
  uint64_t hash = mix(previous ^ static_cast<uint64_t>(count));
  for (int64_t i = 0; i < count; ++i)
    hash = mix(hash + static_cast<uint64_t>(static_cast<uint32_t>(tokens[i])) + 1);
  return hash;
}

}  // namespace servelab
