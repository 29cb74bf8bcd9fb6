// The paged KV cache's data movers: write_paged_kv stores each new token's key and value row in
// the slot the block manager gave it, copy_blocks duplicates whole blocks in every layer
// (copy-on-write when two sequences that share a block diverge), and swap_blocks moves whole
// blocks of one layer between the device pool and the pinned host pool (swap-out and swap-in,
// preemption by swapping). None computes anything; all are bandwidth-bound copies, so the whole
// design is about moving bytes in wide, coalesced units.
//
// Design: a copy does not care what the bytes mean, so each kernel is templated on the *unit* it
// moves (16-byte uint4 when sizes and alignment allow, else the element itself) rather than on
// the dtype. One thread block per token (write_paged_kv), per (block pair, layer) (copy_blocks) or
// per (16 KiB chunk of a block pair, keys/values) (swap_blocks); its threads walk the row with a
// stride of blockDim, so consecutive threads touch consecutive 16-byte units: every warp load and
// store is a full, coalesced 512-byte transaction.
//
// Ladder (write_paged_kv, copy_blocks):
//   v1 element-wise copy, one thread per element: coalesced but 2-byte accesses for fp16/bf16
//      issue 8x the memory instructions of the 16-byte version.
//   v2 (this file) 16-byte units whenever the row (block) size is a multiple of 16 bytes and the
//      pointers are aligned; the element copy remains as the fallback for odd sizes.
// measured (H100 80GB HBM3, 2026-11-22, benchmarks/swap_bench.cu): copy_blocks of shuffled
//   Llama-3-8B blocks (bf16, 32 layers) at 2.4-2.7 TB/s read + write, 79-91% of the copy
//   bandwidth, block sizes 8-64. write_paged_kv: not measured separately.
//
// Ladder (swap_blocks, device <-> pinned host; the CUDA backend can still run v1, see
// CudaBackendOptions::swap_copy and SERVELAB_SWAP_COPY):
//   v1 no kernel: one cudaMemcpyAsync per run of consecutive blocks, per layer, per keys/values
//      (CudaBackend::swap_blocks). Each call costs microseconds of driver work and DMA set-up, so
//      shuffled small blocks (32 KiB per layer per keys/values at block size 16: 8192 calls per
//      GiB) reach a fifth of the host link; consecutive blocks reach the link.
//   v2 zero-copy kernel, one launch per layer (so the per-layer swap events stay):
//      the pinned host pool is mapped into the device's address space (unified addressing), so
//      the kernel's threads read or write host memory themselves over the link, 16 bytes each,
//      with every block pair of the layer in flight at once. Each thread issues kSwapUnroll
//      loads before its stores, so enough requests are outstanding to cover the link's latency
//      on swap-in (reads from the host); swap-out's stores to the host are posted writes.
//      Block bytes that are not a multiple of 16 fall back to element units (correct, slower).
//   v3 (this file) the same kernel with its grid capped at kSwapMaxBlocks per keys/values, and
//      the compute stream at the device's highest priority: v2's grid filled every SM with
//      threads waiting on PCIe, so a forward running beside a swap got no SMs until it finished.
// measured (H100 80GB HBM3, PCIe link ~55 GB/s, 2026-11-22, 1 GiB of Llama-3-8B KV blocks in
//   random order): v1 5.6-11.3 GB/s at block sizes 8-16, 25.5-26.0 GB/s at 64 (97-98% only for
//   blocks in order); v2 (07:17 UTC) 48.9-52.0 GB/s, 89-94% of the link in any order; v3 with 4
//   blocks per keys/values (07:55): swap-out 92-93%, swap-in 84-89% shuffled, 72-84% in order.
//   A batch-64 decode step (7.85 ms alone) with a 256 MiB swap-in issued just before it: v2
//   13.63 ms, no better than swap then step; v3 10.54 ms (caps of 8 + 8: 11.75 ms, 16 + 16:
//   12.78, 128 + 128: 14.72, none: 15.28; servelab_bench_model swapstep).
//   Details: benchmarks/results/2026-11-22-h100-80gb-hbm3.md.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda_utils.cuh"
#include "kernels/kernels.h"

namespace servelab::kernels {
namespace {

constexpr int kCopyThreads = 256;
// swap_blocks: each thread moves kSwapUnroll units per round (all loads, then all stores), and a
// thread block moves one chunk of kSwapChunkUnits units of a block (16 KiB in uint4 units), so a
// large block is spread over several thread blocks and even a few pairs fill the GPU.
constexpr int kSwapUnroll = 4;
constexpr int64_t kSwapChunkUnits = int64_t{kCopyThreads} * kSwapUnroll;
// Thread blocks per swap launch for keys, and as many for values. 8 blocks keep 128 KiB of loads
// in flight, already more than the host link's bandwidth-delay product (55 GB/s x ~2 us = 110 KB):
// on an H100 a swap moves at the same ~50 GB/s with a cap of 4 per keys/values as with none, and
// a decode step beside it loses the least (the sweep in servelab_bench_model swapstep).
constexpr int64_t kSwapMaxBlocks = 4;

bool aligned_16(const void* pointer) {
  return reinterpret_cast<uintptr_t>(pointer) % 16 == 0;
}

// Token t's row of keys and of values ([row_units] units each) goes to row slot_mapping[t] of the
// caches seen as [slots, row_units]. Grid: one block per token.
template <typename Unit>
__global__ void __launch_bounds__(kCopyThreads)
    write_paged_kv_kernel(const Unit* __restrict__ keys, const Unit* __restrict__ values,
                          const int32_t* __restrict__ slot_mapping, int64_t row_units,
                          Unit* __restrict__ key_cache, Unit* __restrict__ value_cache) {
  const int64_t token = blockIdx.x;
  const int64_t slot = slot_mapping[token];
  if (slot < 0) return;  // a padding token: it owns no slot
  const Unit* key_row = keys + token * row_units;
  const Unit* value_row = values + token * row_units;
  Unit* key_destination = key_cache + slot * row_units;
  Unit* value_destination = value_cache + slot * row_units;
  for (int64_t i = threadIdx.x; i < row_units; i += blockDim.x) {
    key_destination[i] = key_row[i];
    value_destination[i] = value_row[i];
  }
}

// For pair blockIdx.x and layer blockIdx.y: block pairs[2i] -> block pairs[2i + 1], keys and
// values. Each block is [block_units] units of its layer's cache.
template <typename Unit>
__global__ void __launch_bounds__(kCopyThreads)
    copy_blocks_kernel(void* const* __restrict__ key_caches, void* const* __restrict__ value_caches,
                       const int32_t* __restrict__ pairs, int64_t block_units) {
  const int pair = blockIdx.x;
  const int layer = blockIdx.y;
  const int64_t source = pairs[2 * pair];
  const int64_t destination = pairs[2 * pair + 1];
  if (source < 0 || destination < 0) return;  // never index before the cache
  Unit* key_cache = static_cast<Unit*>(key_caches[layer]);
  Unit* value_cache = static_cast<Unit*>(value_caches[layer]);
  const Unit* key_from = key_cache + source * block_units;
  const Unit* value_from = value_cache + source * block_units;
  Unit* key_to = key_cache + destination * block_units;
  Unit* value_to = value_cache + destination * block_units;
  for (int64_t i = threadIdx.x; i < block_units; i += blockDim.x) {
    key_to[i] = key_from[i];
    value_to[i] = value_from[i];
  }
}

// Work item w (of num_chunks = pairs x chunks_per_block) is chunk w % chunks_per_block of pair
// w / chunks_per_block; blockIdx.y picks keys (0) or values (1): block pairs[2i] of the source
// layer -> block pairs[2i + 1] of the destination layer. Each block is [block_units] units. Either
// side may be mapped pinned host memory: the loads and stores then cross the host link. The grid
// is capped (kSwapMaxBlocks) and strides over the work: a swap runs beside a forward on the
// compute stream, and a grid that filled every SM with threads waiting on PCIe would hold the
// forward's kernels off until it finished. The pairs never read a block that another pair writes
// (the backend checks), so no load can see a store of this launch.
template <typename Unit>
__global__ void __launch_bounds__(kCopyThreads)
    swap_blocks_kernel(const Unit* key_source, const Unit* value_source, Unit* key_destination,
                       Unit* value_destination, const int32_t* __restrict__ pairs,
                       int64_t block_units, int64_t num_chunks, int chunks_per_block) {
  const bool values = blockIdx.y == 1;
  for (int64_t work = blockIdx.x; work < num_chunks; work += gridDim.x) {
    const int64_t pair = work / chunks_per_block;
    const int64_t chunk = work % chunks_per_block;
    const int64_t source = pairs[2 * pair];
    const int64_t destination = pairs[2 * pair + 1];
    if (source < 0 || destination < 0) continue;  // never index before the pool
    const Unit* from = (values ? value_source : key_source) + source * block_units;
    Unit* to = (values ? value_destination : key_destination) + destination * block_units;
    const int64_t begin = chunk * kSwapChunkUnits;
    const int64_t end =
        begin + kSwapChunkUnits < block_units ? begin + kSwapChunkUnits : block_units;
    for (int64_t first = begin + threadIdx.x; first < end; first += kSwapChunkUnits) {
      Unit buffer[kSwapUnroll];
#pragma unroll
      for (int u = 0; u < kSwapUnroll; ++u) {
        const int64_t i = first + int64_t{u} * kCopyThreads;
        if (i < end) buffer[u] = from[i];
      }
#pragma unroll
      for (int u = 0; u < kSwapUnroll; ++u) {
        const int64_t i = first + int64_t{u} * kCopyThreads;
        if (i < end) to[i] = buffer[u];
      }
    }
  }
}

// Calls f(Unit{}) with the widest unit that divides `bytes` and the alignment of every pointer.
template <typename F>
void dispatch_copy_unit(DType dtype, int64_t bytes, bool pointers_aligned, const char* what,
                        F&& f) {
  if (bytes % 16 == 0 && pointers_aligned) {
    f(uint4{});
    return;
  }
  // The element-wise fallback moves each element's bits as an unsigned integer of its size.
  switch (dtype_size(dtype)) {
    case 2:
      f(uint16_t{});
      return;
    case 4:
      f(uint32_t{});
      return;
    default:
      fail(what, ": unsupported dtype ", dtype_name(dtype));
  }
}

void require_float_dtype(DType dtype, const char* what) {
  if (dtype != DType::kF32 && dtype != DType::kF16 && dtype != DType::kBF16) {
    fail(what, ": dtype must be F32, F16 or BF16, got ", dtype_name(dtype));
  }
}

}  // namespace

void write_paged_kv(DType dtype, const void* keys, const void* values, const int32_t* slot_mapping,
                    int64_t num_tokens, void* key_cache, void* value_cache, int block_size,
                    const HeadShape& heads, cudaStream_t stream) {
  // Every argument is checked before the device is touched.
  require_float_dtype(dtype, "write_paged_kv");
  if (num_tokens < 0 || num_tokens > INT32_MAX) {
    fail("write_paged_kv: num_tokens is ", num_tokens, ", expected 0 to 2^31 - 1");
  }
  if (heads.num_kv_heads <= 0 || heads.head_dim <= 0) {
    fail("write_paged_kv: num_kv_heads (", heads.num_kv_heads, ") and head_dim (", heads.head_dim,
         ") must be positive");
  }
  if (block_size <= 0) fail("write_paged_kv: block_size is ", block_size, ", expected > 0");
  if (num_tokens == 0) return;
  if (keys == nullptr || values == nullptr || slot_mapping == nullptr || key_cache == nullptr ||
      value_cache == nullptr) {
    fail("write_paged_kv: keys, values, slot_mapping and both caches must be device pointers");
  }
  // The block size does not enter the address: a slot already is block * block_size + offset.
  const int64_t row_elements = static_cast<int64_t>(heads.num_kv_heads) * heads.head_dim;
  const int64_t row_bytes = row_elements * static_cast<int64_t>(dtype_size(dtype));
  const bool aligned =
      aligned_16(keys) && aligned_16(values) && aligned_16(key_cache) && aligned_16(value_cache);
  dispatch_copy_unit(dtype, row_bytes, aligned, "write_paged_kv", [&](auto unit) {
    using Unit = decltype(unit);
    const int64_t row_units = row_bytes / static_cast<int64_t>(sizeof(Unit));
    write_paged_kv_kernel<Unit><<<static_cast<unsigned>(num_tokens), kCopyThreads, 0, stream>>>(
        static_cast<const Unit*>(keys), static_cast<const Unit*>(values), slot_mapping, row_units,
        static_cast<Unit*>(key_cache), static_cast<Unit*>(value_cache));
  });
  SERVELAB_CHECK_LAUNCH("write_paged_kv");
}

void copy_blocks(DType dtype, void* const* key_caches, void* const* value_caches, int num_layers,
                 const int32_t* pairs, int num_pairs, int64_t block_elements, cudaStream_t stream) {
  require_float_dtype(dtype, "copy_blocks");
  if (num_layers < 0 || num_layers > 65535) {
    fail("copy_blocks: num_layers is ", num_layers, ", expected 0 to 65535");
  }
  if (num_pairs < 0) fail("copy_blocks: num_pairs is ", num_pairs, ", expected >= 0");
  if (block_elements <= 0) {
    fail("copy_blocks: block_elements is ", block_elements,
         ", expected block_size * num_kv_heads * head_dim > 0");
  }
  if (num_layers == 0 || num_pairs == 0) return;
  if (key_caches == nullptr || value_caches == nullptr || pairs == nullptr) {
    fail("copy_blocks: key_caches, value_caches and pairs must be device pointers");
  }
  // The per-layer cache pointers live on the device, so their alignment cannot be checked here;
  // caches come from cudaMalloc (256-byte aligned), and a block of a multiple of 16 bytes keeps
  // every block 16-byte aligned.
  const int64_t block_bytes = block_elements * static_cast<int64_t>(dtype_size(dtype));
  dispatch_copy_unit(dtype, block_bytes, true, "copy_blocks", [&](auto unit) {
    using Unit = decltype(unit);
    const dim3 grid(static_cast<unsigned>(num_pairs), static_cast<unsigned>(num_layers));
    copy_blocks_kernel<Unit><<<grid, kCopyThreads, 0, stream>>>(
        key_caches, value_caches, pairs, block_bytes / static_cast<int64_t>(sizeof(Unit)));
  });
  SERVELAB_CHECK_LAUNCH("copy_blocks");
}

void swap_blocks(DType dtype, const void* key_source, const void* value_source,
                 void* key_destination, void* value_destination, const int32_t* pairs,
                 int num_pairs, int64_t block_elements, cudaStream_t stream,
                 int max_thread_blocks) {
  require_float_dtype(dtype, "swap_blocks");
  if (max_thread_blocks < 0) fail("swap_blocks: max_thread_blocks is ", max_thread_blocks);
  const int64_t grid_cap = max_thread_blocks > 0 ? max_thread_blocks : kSwapMaxBlocks;
  if (num_pairs < 0) fail("swap_blocks: num_pairs is ", num_pairs, ", expected >= 0");
  if (block_elements <= 0) {
    fail("swap_blocks: block_elements is ", block_elements,
         ", expected block_size * num_kv_heads * head_dim > 0");
  }
  if (num_pairs == 0) return;
  if (key_source == nullptr || value_source == nullptr || key_destination == nullptr ||
      value_destination == nullptr || pairs == nullptr) {
    fail("swap_blocks: the four caches and pairs must be device-accessible pointers");
  }
  const int64_t block_bytes = block_elements * static_cast<int64_t>(dtype_size(dtype));
  const bool aligned = aligned_16(key_source) && aligned_16(value_source) &&
                       aligned_16(key_destination) && aligned_16(value_destination);
  dispatch_copy_unit(dtype, block_bytes, aligned, "swap_blocks", [&](auto unit) {
    using Unit = decltype(unit);
    const int64_t block_units = block_bytes / static_cast<int64_t>(sizeof(Unit));
    const int64_t chunks_per_block = (block_units + kSwapChunkUnits - 1) / kSwapChunkUnits;
    const int64_t num_chunks = chunks_per_block * num_pairs;
    const dim3 grid(static_cast<unsigned>(std::min<int64_t>(num_chunks, grid_cap)), 2);
    swap_blocks_kernel<Unit><<<grid, kCopyThreads, 0, stream>>>(
        static_cast<const Unit*>(key_source), static_cast<const Unit*>(value_source),
        static_cast<Unit*>(key_destination), static_cast<Unit*>(value_destination), pairs,
        block_units, num_chunks, static_cast<int>(chunks_per_block));
  });
  SERVELAB_CHECK_LAUNCH("swap_blocks");
}

}  // namespace servelab::kernels
