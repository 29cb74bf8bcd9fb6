#include "cache_engine/cache_engine.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>

#include "backend/block_transfer_checks.h"
#include "common/error.h"

namespace servelab {
namespace {

/// "1.50 GiB", "2.00 MiB", "512 bytes": sizes a person reads in an error message.
std::string human_bytes(double bytes) {
  const double magnitude = std::fabs(bytes);
  char text[64];
  if (magnitude >= 1024.0 * 1024 * 1024) {
    std::snprintf(text, sizeof(text), "%.2f GiB", bytes / (1024.0 * 1024 * 1024));
  } else if (magnitude >= 1024.0 * 1024) {
    std::snprintf(text, sizeof(text), "%.2f MiB", bytes / (1024.0 * 1024));
  } else if (magnitude >= 1024.0) {
    std::snprintf(text, sizeof(text), "%.2f KiB", bytes / 1024.0);
  } else {
    std::snprintf(text, sizeof(text), "%.0f bytes", bytes);
  }
  return text;
}

void check_shape(const KvCacheShape& shape) {
  if (shape.num_layers <= 0 || shape.num_kv_heads <= 0 || shape.head_dim <= 0 ||
      shape.block_size <= 0) {
    fail("cache engine: KV cache shape must be positive: layers ", shape.num_layers, ", kv heads ",
         shape.num_kv_heads, ", head_dim ", shape.head_dim, ", block size ", shape.block_size);
  }
  if (shape.dtype == DType::kI32) fail("cache engine: the KV cache dtype must be F32, F16 or BF16");
}

Backend::BlockPairs to_pairs(const std::vector<BlockMove>& moves) {
  Backend::BlockPairs pairs;
  pairs.reserve(moves.size());
  for (const BlockMove& move : moves) pairs.emplace_back(move.source, move.destination);
  return pairs;
}

Backend::BlockPairs to_pairs(const std::vector<BlockCopy>& copies) {
  Backend::BlockPairs pairs;
  pairs.reserve(copies.size());
  for (const BlockCopy& copy : copies) pairs.emplace_back(copy.source, copy.destination);
  return pairs;
}

}  // namespace

int64_t KvCacheShape::bytes_per_block() const {
  return 2 * num_layers * block_size * num_kv_heads * head_dim *
         static_cast<int64_t>(dtype_size(dtype));
}

int64_t gpu_blocks_for_memory_fraction(const Backend& backend, const KvCacheShape& shape,
                                       double memory_fraction, int64_t reserve_bytes) {
  check_shape(shape);
  if (!(memory_fraction > 0.0 && memory_fraction <= 1.0)) {
    fail("the GPU memory fraction is ", memory_fraction,
         "; expected a number in (0, 1], e.g. 0.9 to let servelab use 90% of the device");
  }
  if (reserve_bytes < 0) fail("the activation reserve is ", reserve_bytes, " bytes; expected >= 0");
  const Backend::MemoryInfo memory = backend.memory_info();
  const double total = static_cast<double>(memory.total_bytes);
  const double in_use = static_cast<double>(memory.total_bytes - memory.free_bytes);
  const double budget = memory_fraction * total - in_use - static_cast<double>(reserve_bytes);
  const int64_t block_bytes = shape.bytes_per_block();
  const double blocks = std::floor(budget / static_cast<double>(block_bytes));
  if (blocks < 1.0) {
    fail("not one KV cache block fits in the memory of the ", backend.name(),
         " backend's device: ", memory_fraction, " of its ", human_bytes(total), " is ",
         human_bytes(memory_fraction * total), ", of which ", human_bytes(in_use),
         " is already in use (the model's weights and anything else on the device) and ",
         human_bytes(static_cast<double>(reserve_bytes)), " is reserved for activations, leaving ",
         human_bytes(budget), "; one block of ", shape.block_size, " tokens needs ",
         human_bytes(static_cast<double>(block_bytes)), " (", shape.num_layers,
         " layers x keys and values x ", shape.num_kv_heads, " KV heads x ", shape.head_dim,
         " dims x ", dtype_name(shape.dtype),
         "). Raise the memory fraction, lower the reserve, or use a smaller model or block size");
  }
  // Blocks are named by int32 indices in block tables.
  return static_cast<int64_t>(std::min(blocks, static_cast<double>(INT32_MAX)));
}

CacheEngine::CacheEngine(Backend& backend, const KvCacheShape& shape, int64_t num_gpu_blocks,
                         int64_t num_cpu_blocks)
    : backend_(&backend), shape_(shape) {
  check_shape(shape_);
  if (shape_.dtype != backend.compute_dtype()) {
    fail("cache engine: the KV cache is ", dtype_name(shape_.dtype), " but the ", backend.name(),
         " backend computes in ", dtype_name(backend.compute_dtype()),
         "; attention reads and writes the cache in the compute dtype, so give "
         "KvCacheShape::dtype = backend.compute_dtype()");
  }
  if (num_gpu_blocks <= 0 || num_gpu_blocks > INT32_MAX) {
    fail("cache engine: ", num_gpu_blocks, " GPU blocks; expected 1 to 2^31 - 1");
  }
  if (num_cpu_blocks < 0 || num_cpu_blocks > INT32_MAX) {
    fail("cache engine: ", num_cpu_blocks, " CPU blocks; expected 0 (no swap space) to 2^31 - 1");
  }
  const double block_bytes = static_cast<double>(shape_.bytes_per_block());
  try {
    gpu_cache_ = backend.allocate_paged_kv_cache(
        shape_.num_layers, num_gpu_blocks, shape_.block_size, shape_.num_kv_heads, shape_.head_dim);
  } catch (const Error& error) {
    fail("cache engine: cannot allocate ", num_gpu_blocks, " KV blocks (",
         human_bytes(block_bytes * static_cast<double>(num_gpu_blocks)), ") on the ",
         backend.name(), " device; ask for fewer GPU blocks or a smaller memory fraction. ",
         error.what());
  }
  if (num_cpu_blocks > 0) {
    try {
      cpu_cache_ =
          backend.allocate_host_paged_kv_cache(shape_.num_layers, num_cpu_blocks, shape_.block_size,
                                               shape_.num_kv_heads, shape_.head_dim, shape_.dtype);
    } catch (const Error& error) {
      fail("cache engine: cannot allocate ", num_cpu_blocks, " KV blocks of swap space (",
           human_bytes(block_bytes * static_cast<double>(num_cpu_blocks)),
           ") in host memory; ask for fewer CPU blocks. ", error.what());
    }
  } else {
    // No swap space: an empty pool of the same geometry, which every swap index falls outside.
    cpu_cache_.num_blocks = 0;
    cpu_cache_.block_size = shape_.block_size;
    cpu_cache_.num_kv_heads = shape_.num_kv_heads;
    cpu_cache_.head_dim = shape_.head_dim;
  }
}

void CacheEngine::execute(const CachePlan& plan) {
  // Every check before the first byte moves: a bad plan moves nothing.
  check_block_pairs(to_pairs(plan.swap_out), gpu_cache_.num_blocks, cpu_cache_.num_blocks,
                    /*same_pool=*/false, "cache plan swap-out (GPU block -> CPU block)");
  check_block_pairs(to_pairs(plan.swap_in), cpu_cache_.num_blocks, gpu_cache_.num_blocks,
                    /*same_pool=*/false, "cache plan swap-in (CPU block -> GPU block)");
  check_block_pairs(to_pairs(plan.copies), gpu_cache_.num_blocks, gpu_cache_.num_blocks,
                    /*same_pool=*/true, "cache plan copy (GPU block -> GPU block)");
  // Swap-outs first (they free GPU blocks the swap-ins and copies may reuse), then swap-ins,
  // then copies (a copy's source may have just been swapped in).
  swap_out(plan.swap_out);
  swap_in(plan.swap_in);
  copy(plan.copies);
}

void CacheEngine::swap_out(const std::vector<BlockMove>& moves) {
  if (moves.empty()) return;
  const Backend::BlockPairs pairs = to_pairs(moves);
  check_block_pairs(pairs, gpu_cache_.num_blocks, cpu_cache_.num_blocks, false,
                    "swap-out (GPU block -> CPU block)");
  backend_->swap_blocks(gpu_cache_, cpu_cache_, pairs);
  const int64_t count = static_cast<int64_t>(moves.size());
  counters_.blocks_swapped_out += count;
  counters_.bytes_swapped_out += count * shape_.bytes_per_block();
}

void CacheEngine::swap_in(const std::vector<BlockMove>& moves) {
  if (moves.empty()) return;
  const Backend::BlockPairs pairs = to_pairs(moves);
  check_block_pairs(pairs, cpu_cache_.num_blocks, gpu_cache_.num_blocks, false,
                    "swap-in (CPU block -> GPU block)");
  backend_->swap_blocks(cpu_cache_, gpu_cache_, pairs);
  const int64_t count = static_cast<int64_t>(moves.size());
  counters_.blocks_swapped_in += count;
  counters_.bytes_swapped_in += count * shape_.bytes_per_block();
}

void CacheEngine::copy(const std::vector<BlockCopy>& copies) {
  if (copies.empty()) return;
  backend_->copy_blocks(gpu_cache_, to_pairs(copies));
  counters_.blocks_copied += static_cast<int64_t>(copies.size());
}

}  // namespace servelab
