// The argument checks every backend's block copies share (Backend::copy_blocks and swap_blocks):
// a well-formed paged cache, two caches that hold the same kind of block, and block pairs that
// stay inside their pools. Checks only: nothing here reads or writes a cache's memory.
#pragma once

#include <cstdint>

#include "backend/backend.h"

namespace servelab {

/// Checks that `cache` holds one keys and one values tensor per layer (at least one layer), each
/// [num_blocks, block_size, num_kv_heads, head_dim], all of one dtype and in one memory space.
/// Throws servelab::Error naming `op` and `which` ("source", "destination", "cache").
/// @return the bytes of one block of one layer's keys (the same for values)
int64_t check_paged_cache(const PagedKvCache& cache, const char* op, const char* which);

/// Checks that two caches hold blocks of the same layers, shape and dtype (their numbers of
/// blocks may differ); throws servelab::Error naming `op` otherwise.
void check_same_block_kind(const PagedKvCache& source, const PagedKvCache& destination,
                           const char* op);

/// Checks (source, destination) block pairs: every source in [0, source_blocks), every
/// destination in [0, destination_blocks), no destination written twice, and, when both are
/// blocks of one pool (`same_pool`), no block both written by one pair and read by another (the
/// pairs are copied as if all at once, so such a chain would have no defined result).
void check_block_pairs(const Backend::BlockPairs& pairs, int64_t source_blocks,
                       int64_t destination_blocks, bool same_pool, const char* op);

}  // namespace servelab
