// The cache engine: owns the paged KV cache's memory, a pool of blocks per layer on the device
// (what PagedAttention reads) and a pool in pinned host memory (the swap space), and executes the
// block manager's plans: block copies for copy-on-write, swap-outs and swap-ins. It moves bytes
// and never decides what to move; the block manager plans, the scheduler decides when.
#pragma once

#include <cstdint>

#include "backend/backend.h"
#include "block_manager/cache_plan.h"

namespace servelab {

/// The shape of one paged KV cache: what a block holds.
struct KvCacheShape {
  int64_t num_layers = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t block_size = 16;
  DType dtype = DType::kF32;

  /// Bytes of one block in one pool: keys and values of every layer.
  int64_t bytes_per_block() const;
};

/// Sizes the GPU pool from a fraction of the device's memory, as measured now (call it after the
/// weights are loaded): blocks = (fraction * total - in use - reserve) / bytes_per_block.
/// `reserve_bytes` is kept for activations. Throws servelab::Error when not one block fits,
/// saying how much memory the weights use and how much a block needs.
int64_t gpu_blocks_for_memory_fraction(const Backend& backend, const KvCacheShape& shape,
                                       double memory_fraction, int64_t reserve_bytes);

/// What the cache engine has moved since construction.
struct CacheEngineCounters {
  int64_t blocks_swapped_out = 0, blocks_swapped_in = 0, blocks_copied = 0;
  int64_t bytes_swapped_out = 0, bytes_swapped_in = 0;
};

class CacheEngine {
 public:
  /// Allocates `num_gpu_blocks` blocks on the backend's device and `num_cpu_blocks` in pinned
  /// host memory (zeroed). Throws servelab::Error if the memory cannot be had.
  CacheEngine(Backend& backend, const KvCacheShape& shape, int64_t num_gpu_blocks,
              int64_t num_cpu_blocks);

  const KvCacheShape& shape() const { return shape_; }
  /// The device pool the model's attention reads and writes.
  PagedKvCache& gpu_cache() { return gpu_cache_; }
  /// The swap space (host memory).
  PagedKvCache& cpu_cache() { return cpu_cache_; }

  /// Executes a step's plan in its order: swap out, swap in, copy. Checks every block index
  /// first and throws servelab::Error (moving nothing) on one out of range.
  void execute(const CachePlan& plan);
  void swap_out(const std::vector<BlockMove>& moves);  ///< GPU block -> CPU block
  void swap_in(const std::vector<BlockMove>& moves);   ///< CPU block -> GPU block
  void copy(const std::vector<BlockCopy>& copies);     ///< GPU block -> GPU block
  /// Waits for every copy issued so far.
  void synchronize() { backend_->synchronize(); }
  const CacheEngineCounters& counters() const { return counters_; }

 private:
  Backend* backend_;
  KvCacheShape shape_;
  PagedKvCache gpu_cache_;
  PagedKvCache cpu_cache_;
  CacheEngineCounters counters_;
};

}  // namespace servelab
