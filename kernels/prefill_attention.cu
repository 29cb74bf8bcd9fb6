// Prefill attention over the paged KV cache, FlashAttention-2 style, for a packed batch of
// variable-length sequences.
//
// What it computes. Sequence s listed in seq_ids owns query rows [query_start[s],
// query_start[s + 1]); those q_len new tokens are the last positions [context_len - q_len,
// context_len) of a context of context_lens[s] tokens (an earlier prefix may already be cached:
// prefix caching, chunked prefill). First their keys and values are written into the paged cache
// (per layer [num_blocks, block_size, num_kv_heads, head_dim]; position p lives in block
// block_tables[s][p / block_size] at offset p % block_size). Then the query at position p attends
// to positions [0, p]: out = softmax(scale · q·kᵀ) · v, query head h reading KV head
// h / (num_heads / num_kv_heads) (GQA); out is [num_tokens, num_heads * head_dim].
//
// Design. Two launches on the caller's stream:
//   1. write_new_kv_kernel copies the new keys and values into their cache slots;
//   2. an attention kernel reads every key and value, prefix and new alike, from the cache: one
//      addressing rule for all positions. Kernels on one stream run in order, so the writes of
//      launch 1 are complete and visible before launch 2 reads them; no other synchronisation.
// The attention grid is (query tile, query head, listed sequence). A block loads its tile of
// queries once, then walks the key/value tiles from position 0 up to the position of its last
// query with an online softmax: per query a running max m, a running sum l and an unnormalised
// accumulator o, all fp32. For a tile of scores s: m' = max(m, max s), p = exp(s - m'),
// l = l·exp(m - m') + Σp, o = o·exp(m - m') + p·V. Tiles wholly past the last query's position
// are never loaded (fully masked, so skipped); in a tile that the diagonal crosses each score with
// key position > query position is masked to -inf. The block writes o / l, rounded to the dtype.
//
// The launcher runs v2 where it applies (F16/BF16, head_dim 32, 64 or 128, 16-byte aligned
// pointers) and v1 otherwise.
//
// Ladder:
//   v1 SIMT (every dtype; head_dim any multiple of 8 up to 256). Grid (ceil(max_query_len / 16),
//      num_heads, num_prefill_seqs), 128 threads: 4 warps, 16 queries per block (4 per warp), 32
//      keys per tile (one per lane). Q (pre-scaled), K and V tiles are fp32 in shared memory,
//      4·(16·D + 32·(D + 1) + 32·D + 16·32) bytes (43 KB at D = 128, 84 KB at D = 256). A lane
//      computes the scores of its key against the warp's 4 queries, warp shuffles give each
//      query's max and sum, the weights go through shared memory and each lane accumulates its
//      output dimensions (lane, lane + 32, ...). Clear, but every dot product is an fp32 FMA on
//      the CUDA cores, an order of magnitude below what the tensor cores can do.
//   v2 tensor cores (F16 and BF16; head_dim 32, 64 or 128). Grid (ceil(max_query_len / 64),
//      num_heads, num_prefill_seqs), 128 threads: 4 warps, 64 queries per block (16 per warp: one
//      mma row block), 64 keys per tile. Q·Kᵀ and P·V are mma.sync.m16n8k16 with fp32
//      accumulators, operands fetched from shared memory by ldmatrix. The score tile never leaves
//      registers: the online softmax runs on the accumulator fragments (the 4 lanes holding a
//      row finish its max with two shuffles), and the accumulator fragments of two adjacent n8
//      score tiles are, element for element, the A fragment of the P·V mma once rounded to 16
//      bits (the FlashAttention-2 register trick), so P needs no shared memory either; the
//      softmax weights are thus rounded to the dtype before P·V, as in FlashAttention. The next
//      K/V tile streams in with cp.async (double buffer) while this one computes. Shared memory
//      2·320·(D + 8) bytes (Q tile, 2 K and 2 V tiles; 87 KB at D = 128): rows padded by 16
//      bytes so that ldmatrix reads are free of bank conflicts. At D = 128 ptxas gives 235
//      registers a thread, no spills: 2 blocks (8 warps) per SM. The heaviest query tiles (the
//      last ones, which see the most keys) are launched first.
//   measured (NVIDIA H100 80GB HBM3, 2026-11-22; benchmarks/results/2026-11-22-h100-80gb-hbm3.md):
//      the whole-model prefill of 2048 tokens (Llama-3-8B shape, bf16, v2 in place) runs at
//      541 TFLOP/s, 69% of the 784 TFLOP/s cuBLAS GEMM ceiling. This kernel alone (v1 or v2) is
//      not measured yet.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/cuda_utils.cuh"
#include "kernels/kernels.h"

namespace servelab::kernels {
namespace {

constexpr int kMaxHeadDim = 256;
constexpr int kMaxGridDimension = 65535;  // grid y and z

/// Everything the kernels need to find a listed sequence's tokens and cache slots.
struct PrefillParams {
  const int32_t* query_start = nullptr;   // [num_seqs + 1], device
  const int32_t* context_lens = nullptr;  // [num_seqs], device
  const int32_t* seq_ids = nullptr;       // [num_prefill_seqs], device
  const int32_t* block_tables = nullptr;  // [num_seqs, blocks_per_seq], device
  int num_seqs = 0;
  int64_t num_tokens = 0;
  int max_query_len = 0;
  int max_context_len = 0;
  int blocks_per_seq = 0;
  int block_size = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  float scale = 0.0f;
};

/// One listed sequence, as read from the device-side batch description.
struct SequenceSpan {
  int seq = 0;            // index into the batch (row of block_tables)
  int64_t first_row = 0;  // query row of its first new token
  int query_len = 0;      // new tokens
  int prefix_len = 0;     // tokens cached before them = position of the first new token
};

/// Reads the sequence listed at `listed_index`. False (the block does nothing) when it has no
/// new tokens or when the device-side description contradicts the host-known bounds the grid was
/// sized with: skipping such a sequence is better than reading or writing out of bounds.
__device__ bool find_sequence(const PrefillParams& params, int listed_index, SequenceSpan& span) {
  const int seq = params.seq_ids[listed_index];
  if (seq < 0 || seq >= params.num_seqs) return false;
  const int64_t first_row = params.query_start[seq];
  const int64_t query_len = params.query_start[seq + 1] - first_row;
  const int64_t context_len = params.context_lens[seq];
  if (first_row < 0 || query_len <= 0 || query_len > params.max_query_len ||
      first_row + query_len > params.num_tokens || context_len < query_len ||
      context_len > params.max_context_len) {
    return false;
  }
  span.seq = seq;
  span.first_row = first_row;
  span.query_len = static_cast<int>(query_len);
  span.prefix_len = static_cast<int>(context_len - query_len);
  return true;
}

/// The cache slot (row of the cache seen as [slots, num_kv_heads, head_dim]) of `position` in
/// sequence `seq`, or -1 where the block table holds no block. position < max_context_len, which
/// the launcher checked fits the block table.
__device__ int64_t slot_of(const PrefillParams& params, int seq, int position) {
  const int block = params.block_tables[static_cast<int64_t>(seq) * params.blocks_per_seq +
                                        position / params.block_size];
  if (block < 0) return -1;
  return static_cast<int64_t>(block) * params.block_size + position % params.block_size;
}

// ---- launch 1: the new keys and values into the cache -----------------------------------------

/// Grid (token, listed sequence); a block copies one token's keys and values (all KV heads), in
/// units of Chunk (16 bytes when every pointer allows it, one element otherwise).
/// @param keys, values [num_tokens, num_kv_heads * head_dim] as chunks_per_token chunks a row
/// @param key_cache, value_cache [num_blocks * block_size, num_kv_heads * head_dim], likewise
template <typename Chunk>
__global__ void write_new_kv_kernel(const Chunk* keys, const Chunk* values, PrefillParams params,
                                    int chunks_per_token, Chunk* key_cache, Chunk* value_cache) {
  SequenceSpan span;
  if (!find_sequence(params, blockIdx.y, span)) return;
  for (int token = blockIdx.x; token < span.query_len; token += gridDim.x) {
    const int64_t slot = slot_of(params, span.seq, span.prefix_len + token);
    if (slot < 0) continue;
    const int64_t source = (span.first_row + token) * chunks_per_token;
    const int64_t destination = slot * chunks_per_token;
    for (int i = threadIdx.x; i < chunks_per_token; i += blockDim.x) {
      key_cache[destination + i] = keys[source + i];
      value_cache[destination + i] = values[source + i];
    }
  }
}

// ---- v1: SIMT, fp32 tiles in shared memory ------------------------------------------------------

constexpr int kSimtWarps = 4;
constexpr int kSimtQueriesPerWarp = 4;
constexpr int kSimtBlockQueries = kSimtWarps * kSimtQueriesPerWarp;  // 16
constexpr int kSimtBlockKeys = 32;                                   // one key per lane
constexpr int kSimtMaxDimsPerLane = kMaxHeadDim / 32;                // lane, lane + 32, ...

/// Shared memory of v1: Q tile [16][head_dim], K tile [32][head_dim + 1] (the odd row stride lets
/// 32 lanes read 32 different rows without bank conflicts), V tile [32][head_dim], weights
/// [16][32]; all fp32.
size_t simt_shared_bytes(int head_dim) {
  return sizeof(float) * (kSimtBlockQueries * head_dim + kSimtBlockKeys * (head_dim + 1) +
                          kSimtBlockKeys * head_dim + kSimtBlockQueries * kSimtBlockKeys);
}

/// Grid (ceil(max_query_len / 16), num_heads, num_prefill_seqs), 128 threads.
/// @param queries [num_tokens, num_heads, head_dim]
/// @param key_cache, value_cache [num_blocks, block_size, num_kv_heads, head_dim]
/// @param out [num_tokens, num_heads * head_dim]
template <typename T>
__global__ void __launch_bounds__(kSimtWarps * 32)
    prefill_attention_simt_kernel(const T* queries, const T* key_cache, const T* value_cache,
                                  PrefillParams params, T* out) {
  SequenceSpan span;
  if (!find_sequence(params, blockIdx.z, span)) return;
  const int first_query = blockIdx.x * kSimtBlockQueries;  // index among the sequence's new tokens
  if (first_query >= span.query_len) return;
  const int head = blockIdx.y;
  const int kv_head = head / (params.num_heads / params.num_kv_heads);
  const int head_dim = params.head_dim;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int queries_in_tile = min(kSimtBlockQueries, span.query_len - first_query);
  // The tile's last query sits at position key_end - 1: keys at or past key_end are masked for
  // every query of the tile, so no tile starting there is loaded.
  const int key_end = span.prefix_len + first_query + queries_in_tile;
  const int64_t query_row_stride = static_cast<int64_t>(params.num_heads) * head_dim;
  const int64_t kv_row_stride = static_cast<int64_t>(params.num_kv_heads) * head_dim;

  extern __shared__ float simt_shared[];
  float* query_tile = simt_shared;                                 // [16][head_dim]
  float* key_tile = query_tile + kSimtBlockQueries * head_dim;     // [32][head_dim + 1]
  float* value_tile = key_tile + kSimtBlockKeys * (head_dim + 1);  // [32][head_dim]
  float* weight_tile = value_tile + kSimtBlockKeys * head_dim;     // [16][32]

  // Queries, pre-multiplied by the scale; rows past the sequence's end are zeros (never written).
  for (int row = warp; row < kSimtBlockQueries; row += kSimtWarps) {
    const int64_t offset = (span.first_row + first_query + row) * query_row_stride +
                           static_cast<int64_t>(head) * head_dim;
    for (int d = lane; d < head_dim; d += 32) {
      query_tile[row * head_dim + d] =
          row < queries_in_tile ? to_float(queries[offset + d]) * params.scale : 0.0f;
    }
  }

  // This warp's queries: rows warp * 4 + i of the tile.
  int query_position[kSimtQueriesPerWarp];
  float running_max[kSimtQueriesPerWarp];
  float running_sum[kSimtQueriesPerWarp];
  float accumulator[kSimtQueriesPerWarp][kSimtMaxDimsPerLane];
#pragma unroll
  for (int i = 0; i < kSimtQueriesPerWarp; ++i) {
    query_position[i] = span.prefix_len + first_query + warp * kSimtQueriesPerWarp + i;
    running_max[i] = -INFINITY;
    running_sum[i] = 0.0f;
#pragma unroll
    for (int j = 0; j < kSimtMaxDimsPerLane; ++j) accumulator[i][j] = 0.0f;
  }

  for (int tile_start = 0; tile_start < key_end; tile_start += kSimtBlockKeys) {
    __syncthreads();  // the query tile is written; every warp is done with the previous K/V tile
    // A warp loads whole rows (one position each), its lanes along head_dim: coalesced. Positions
    // past key_end are zeros, so that their weight 0 never multiplies a NaN from an unused slot.
    for (int key = warp; key < kSimtBlockKeys; key += kSimtWarps) {
      const int position = tile_start + key;
      const int64_t slot = position < key_end ? slot_of(params, span.seq, position) : -1;
      const int64_t offset = slot * kv_row_stride + static_cast<int64_t>(kv_head) * head_dim;
      for (int d = lane; d < head_dim; d += 32) {
        key_tile[key * (head_dim + 1) + d] = slot >= 0 ? to_float(key_cache[offset + d]) : 0.0f;
        value_tile[key * head_dim + d] = slot >= 0 ? to_float(value_cache[offset + d]) : 0.0f;
      }
    }
    __syncthreads();

    // Scores of key `lane` against the warp's queries (each key value read once for all four).
    float score[kSimtQueriesPerWarp] = {};
    for (int d = 0; d < head_dim; ++d) {
      const float key_value = key_tile[lane * (head_dim + 1) + d];
#pragma unroll
      for (int i = 0; i < kSimtQueriesPerWarp; ++i) {
        score[i] += query_tile[(warp * kSimtQueriesPerWarp + i) * head_dim + d] * key_value;
      }
    }

    const int key_position = tile_start + lane;
#pragma unroll
    for (int i = 0; i < kSimtQueriesPerWarp; ++i) {
      if (key_position > query_position[i]) score[i] = -INFINITY;  // causal mask
      const float new_max = fmaxf(running_max[i], warp_max(score[i]));
      // While a query has seen only masked keys its max is -inf; measuring from 0 instead keeps
      // exp(-inf - (-inf)) = NaN out (it gives exp(-inf) = 0).
      const float reference = new_max == -INFINITY ? 0.0f : new_max;
      const float correction = expf(running_max[i] - reference);  // rescales the old state
      const float weight = expf(score[i] - reference);
      running_sum[i] = running_sum[i] * correction + warp_sum(weight);
      running_max[i] = new_max;
      weight_tile[(warp * kSimtQueriesPerWarp + i) * kSimtBlockKeys + lane] = weight;
#pragma unroll
      for (int j = 0; j < kSimtMaxDimsPerLane; ++j) accumulator[i][j] *= correction;
    }
    __syncwarp();  // the warp's weights are visible to all its lanes

    for (int key = 0; key < kSimtBlockKeys; ++key) {
#pragma unroll
      for (int j = 0; j < kSimtMaxDimsPerLane; ++j) {
        const int d = lane + 32 * j;
        if (d < head_dim) {
          const float value = value_tile[key * head_dim + d];
#pragma unroll
          for (int i = 0; i < kSimtQueriesPerWarp; ++i) {
            accumulator[i][j] +=
                weight_tile[(warp * kSimtQueriesPerWarp + i) * kSimtBlockKeys + key] * value;
          }
        }
      }
    }
  }

#pragma unroll
  for (int i = 0; i < kSimtQueriesPerWarp; ++i) {
    const int row = warp * kSimtQueriesPerWarp + i;
    if (row >= queries_in_tile) continue;
    // running_sum >= 1: the max score's own weight is exp(0).
    const float inverse_sum = 1.0f / running_sum[i];
    T* output = out + (span.first_row + first_query + row) * query_row_stride +
                static_cast<int64_t>(head) * head_dim;
#pragma unroll
    for (int j = 0; j < kSimtMaxDimsPerLane; ++j) {
      const int d = lane + 32 * j;
      if (d < head_dim) output[d] = from_float<T>(accumulator[i][j] * inverse_sum);
    }
  }
}

// ---- v2: tensor cores (mma.sync m16n8k16), FlashAttention-2 register layout --------------------
//
// Fragments of mma.m16n8k16 (PTX ISA, "Matrix fragments for mma.m16n8k16"), for lane l with
// group = l / 4 and pair = l % 4:
//   A 16x16, 4 registers of two 16-bit values: register 0 holds row group, columns 2·pair and
//     2·pair + 1; register 1 row group + 8, the same columns; registers 2 and 3 likewise for
//     columns 8 + 2·pair, 8 + 2·pair + 1
//   B 16x8, 2 registers: column group, rows 2·pair, 2·pair + 1 (register 0) and 8 + 2·pair,
//     8 + 2·pair + 1 (register 1)
//   C 16x8 fp32, 4 floats: row group, columns 2·pair, 2·pair + 1 (floats 0, 1); row group + 8,
//     the same columns (floats 2, 3)
// ldmatrix.x4 loads four 8x8 matrices, lanes 8m..8m+7 giving the row addresses of matrix m, and
// hands lane l row l / 4, columns 2·(l % 4), +1 of each (with .trans: column l / 4, rows
// 2·(l % 4), +1), which is exactly these fragments.

constexpr int kMmaWarps = 4;
constexpr int kMmaThreads = kMmaWarps * 32;
constexpr int kMmaBlockQueries = kMmaWarps * 16;  // each warp owns 16 query rows
constexpr int kMmaBlockKeys = 64;
// Elements appended to each shared-memory row: 16 bytes, so that the 8 rows one ldmatrix matrix
// reads fall in 8 different 16-byte bank groups.
constexpr int kSharedPad = 8;

/// Shared memory of v2: a query tile [64][head_dim + 8], then key tiles [2][64][head_dim + 8]
/// and value tiles likewise (double buffered); 16-bit elements.
size_t mma_shared_bytes(int head_dim) {
  return sizeof(uint16_t) * (kMmaBlockQueries + 4 * kMmaBlockKeys) * (head_dim + kSharedPad);
}

__device__ __forceinline__ uint32_t shared_address(const void* pointer) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(pointer));
}

/// Starts an asynchronous 16-byte copy global -> shared (both 16-byte aligned).
__device__ __forceinline__ void cp_async_16(void* shared_destination, const void* global_source) {
  asm volatile(
      "cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(shared_address(shared_destination)),
      "l"(__cvta_generic_to_global(global_source)));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
/// Waits for every cp.async this thread started (other threads' need a __syncthreads after).
__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.wait_all;\n" ::: "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&fragment)[4], const void* row_address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(fragment[0]), "=r"(fragment[1]), "=r"(fragment[2]), "=r"(fragment[3])
               : "r"(shared_address(row_address)));
}
__device__ __forceinline__ void ldmatrix_x4_transposed(uint32_t (&fragment)[4],
                                                       const void* row_address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(fragment[0]), "=r"(fragment[1]), "=r"(fragment[2]), "=r"(fragment[3])
               : "r"(shared_address(row_address)));
}

/// c += a · b for one m16n8k16 tile: a, b 16-bit (T), c fp32.
template <typename T>
__device__ __forceinline__ void mma_16x8x16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                            uint32_t b1) {
  if constexpr (std::is_same_v<T, __half>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    static_assert(std::is_same_v<T, __nv_bfloat16>, "mma_16x8x16: F16 or BF16 only");
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

/// Two fp32 values rounded to T and packed in one register, `low` in the low half (the lower
/// column index, as the mma fragments want it).
template <typename T>
__device__ __forceinline__ uint32_t pack_pair(float low, float high) {
  uint32_t bits;
  if constexpr (std::is_same_v<T, __half>) {
    const __half2 pair = __floats2half2_rn(low, high);
    memcpy(&bits, &pair, sizeof bits);
  } else {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(low, high);
    memcpy(&bits, &pair, sizeof bits);
  }
  return bits;
}

/// Starts the copy of the query tile: rows [0, rows) from queries (already offset to the head),
/// the rest zeros. tile is [64][kHeadDim + 8].
template <typename T, int kHeadDim>
__device__ void load_query_tile(const T* queries, int64_t first_row, int rows, int64_t row_stride,
                                T* tile) {
  constexpr int kChunksPerRow = kHeadDim / 8;  // 16-byte chunks
  constexpr int kIterations = kMmaBlockQueries * kChunksPerRow / kMmaThreads;
  static_assert(kMmaBlockQueries * kChunksPerRow % kMmaThreads == 0, "whole iterations");
#pragma unroll
  for (int iteration = 0; iteration < kIterations; ++iteration) {
    const int chunk = threadIdx.x + iteration * kMmaThreads;
    const int row = chunk / kChunksPerRow;
    const int column = (chunk % kChunksPerRow) * 8;
    T* destination = tile + row * (kHeadDim + kSharedPad) + column;
    if (row < rows) {
      cp_async_16(destination, queries + (first_row + row) * row_stride + column);
    } else {
      *reinterpret_cast<uint4*>(destination) = make_uint4(0, 0, 0, 0);
    }
  }
}

/// Starts the copy of the keys and values of positions [tile_start, tile_start + 64) into
/// key_tile / value_tile ([64][kHeadDim + 8] each). Positions at or past key_end are zeros: masked
/// keys, and values whose weight is 0 (a NaN from an unused slot would survive 0 · NaN).
template <typename T, int kHeadDim>
__device__ void load_key_value_tile(const T* key_cache, const T* value_cache,
                                    const PrefillParams& params, int seq, int kv_head,
                                    int tile_start, int key_end, T* key_tile, T* value_tile) {
  constexpr int kChunksPerRow = kHeadDim / 8;
  constexpr int kIterations = kMmaBlockKeys * kChunksPerRow / kMmaThreads;
  static_assert(kMmaBlockKeys * kChunksPerRow % kMmaThreads == 0, "whole iterations");
  const int64_t row_stride = static_cast<int64_t>(params.num_kv_heads) * kHeadDim;
#pragma unroll
  for (int iteration = 0; iteration < kIterations; ++iteration) {
    const int chunk = threadIdx.x + iteration * kMmaThreads;
    const int row = chunk / kChunksPerRow;
    const int column = (chunk % kChunksPerRow) * 8;
    const int position = tile_start + row;
    const int64_t slot = position < key_end ? slot_of(params, seq, position) : -1;
    const int offset = row * (kHeadDim + kSharedPad) + column;
    if (slot >= 0) {
      const int64_t source = slot * row_stride + static_cast<int64_t>(kv_head) * kHeadDim + column;
      cp_async_16(key_tile + offset, key_cache + source);
      cp_async_16(value_tile + offset, value_cache + source);
    } else {
      *reinterpret_cast<uint4*>(key_tile + offset) = make_uint4(0, 0, 0, 0);
      *reinterpret_cast<uint4*>(value_tile + offset) = make_uint4(0, 0, 0, 0);
    }
  }
}

/// Grid (ceil(max_query_len / 64), num_heads, num_prefill_seqs), 128 threads, dynamic shared
/// memory mma_shared_bytes(kHeadDim). Pointers 16-byte aligned (the launcher checks).
/// @param queries [num_tokens, num_heads, kHeadDim]
/// @param key_cache, value_cache [num_blocks, block_size, num_kv_heads, kHeadDim]
/// @param out [num_tokens, num_heads * kHeadDim]
template <typename T, int kHeadDim>
__global__ void __launch_bounds__(kMmaThreads)
    prefill_attention_mma_kernel(const T* queries, const T* key_cache, const T* value_cache,
                                 PrefillParams params, T* out) {
  constexpr int kRowStride = kHeadDim + kSharedPad;  // elements per shared-memory row
  constexpr int kDimSteps = kHeadDim / 16;           // k steps of Q·Kᵀ; n8 tile pairs of P·V
  constexpr int kKeySteps = kMmaBlockKeys / 16;      // n8 tile pairs of Q·Kᵀ; k steps of P·V
  constexpr int kChunksPerRow = kHeadDim / 8;
  static_assert(kHeadDim % 16 == 0 && kHeadDim <= 128, "v2 covers head_dim 16..128");

  SequenceSpan span;
  if (!find_sequence(params, blockIdx.z, span)) return;
  // Later query tiles see more keys: launching them first (x counts down) shortens the tail.
  const int first_query = static_cast<int>(gridDim.x - 1 - blockIdx.x) * kMmaBlockQueries;
  if (first_query >= span.query_len) return;
  const int head = blockIdx.y;
  const int kv_head = head / (params.num_heads / params.num_kv_heads);
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int group = lane / 4;  // this lane holds rows group and group + 8 of its warp's 16
  const int pair = lane % 4;   // ... and columns 2 * pair, 2 * pair + 1 of every n8 tile
  const int first_position = span.prefix_len + first_query;
  const int queries_in_tile = min(kMmaBlockQueries, span.query_len - first_query);
  const int key_end = first_position + queries_in_tile;  // last query's position + 1
  const int num_key_tiles = (key_end + kMmaBlockKeys - 1) / kMmaBlockKeys;
  const int64_t query_row_stride = static_cast<int64_t>(params.num_heads) * kHeadDim;

  extern __shared__ __align__(16) unsigned char mma_shared[];
  T* query_tile = reinterpret_cast<T*>(mma_shared);             // [64][kRowStride]
  T* key_tiles = query_tile + kMmaBlockQueries * kRowStride;    // [2][64][kRowStride]
  T* value_tiles = key_tiles + 2 * kMmaBlockKeys * kRowStride;  // [2][64][kRowStride]

  load_query_tile<T, kHeadDim>(queries + static_cast<int64_t>(head) * kHeadDim,
                               span.first_row + first_query, queries_in_tile, query_row_stride,
                               query_tile);
  load_key_value_tile<T, kHeadDim>(key_cache, value_cache, params, span.seq, kv_head, 0, key_end,
                                   key_tiles, value_tiles);
  cp_async_commit();
  cp_async_wait_all();
  __syncthreads();

  // The warp's 16 query rows as A fragments, one per 16 dimensions; they stay in registers.
  uint32_t query_fragments[kDimSteps][4];
#pragma unroll
  for (int step = 0; step < kDimSteps; ++step) {
    ldmatrix_x4(query_fragments[step],
                query_tile + (warp * 16 + lane % 16) * kRowStride + step * 16 + (lane / 16) * 8);
  }

  // Per lane: rows group (index 0) and group + 8 (index 1) of the warp's 16. The output
  // accumulator is kHeadDim / 8 C fragments; the sum covers only this lane's columns until the
  // end (the scaling factors are the same for the 4 lanes of a row, so partial sums can wait).
  float output[kHeadDim / 8][4] = {};
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.0f, 0.0f};
  const int row_position[2] = {first_position + warp * 16 + group,
                               first_position + warp * 16 + group + 8};
  // exp(x) = exp2(x · log2 e): the scale and log2 e fold into one multiply-add per score.
  const float scale_log2 = params.scale * 1.4426950408889634f;

  for (int tile = 0; tile < num_key_tiles; ++tile) {
    const int buffer = tile % 2;
    if (tile > 0) {
      cp_async_wait_all();  // this thread's part of tile `tile` has landed...
      __syncthreads();      // ...everyone's has, and everyone is done reading buffer ^ 1
    }
    if (tile + 1 < num_key_tiles) {  // the next tile loads while this one computes
      load_key_value_tile<T, kHeadDim>(key_cache, value_cache, params, span.seq, kv_head,
                                       (tile + 1) * kMmaBlockKeys, key_end,
                                       key_tiles + (buffer ^ 1) * kMmaBlockKeys * kRowStride,
                                       value_tiles + (buffer ^ 1) * kMmaBlockKeys * kRowStride);
      cp_async_commit();
    }
    const T* key_tile = key_tiles + buffer * kMmaBlockKeys * kRowStride;
    const T* value_tile = value_tiles + buffer * kMmaBlockKeys * kRowStride;
    const int tile_start = tile * kMmaBlockKeys;

    // Scores S = Q·Kᵀ: 16 rows x 64 keys as 8 C fragments (keys 8n .. 8n + 7). B = Kᵀ, i.e. K's
    // rows read as they are: matrices (keys 0-7, dims 0-7), (keys 0-7, dims 8-15), (keys 8-15,
    // dims 0-7), (keys 8-15, dims 8-15) are B registers 0, 1 of n8 tile 2k and 0, 1 of 2k + 1.
    float scores[2 * kKeySteps][4] = {};
#pragma unroll
    for (int step = 0; step < kDimSteps; ++step) {
#pragma unroll
      for (int key_step = 0; key_step < kKeySteps; ++key_step) {
        uint32_t key_fragment[4];
        ldmatrix_x4(key_fragment, key_tile +
                                      (key_step * 16 + lane % 8 + (lane / 16) * 8) * kRowStride +
                                      step * 16 + (lane / 8 % 2) * 8);
        mma_16x8x16<T>(scores[2 * key_step], query_fragments[step], key_fragment[0],
                       key_fragment[1]);
        mma_16x8x16<T>(scores[2 * key_step + 1], query_fragments[step], key_fragment[2],
                       key_fragment[3]);
      }
    }

    // Causal mask, only where the diagonal can cross the tile: a key past the block's first query
    // position. Keys at or past key_end are past every valid query's position too.
    if (tile_start + kMmaBlockKeys - 1 > first_position) {
#pragma unroll
      for (int n = 0; n < 2 * kKeySteps; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key_position = tile_start + n * 8 + 2 * pair + e % 2;
          if (key_position > row_position[e / 2]) scores[n][e] = -INFINITY;
        }
      }
    }

    // Online softmax on the fragments; floats 0, 1 of each fragment are row 0, floats 2, 3 row 1.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float tile_max = -INFINITY;
#pragma unroll
      for (int n = 0; n < 2 * kKeySteps; ++n) {
        tile_max = fmaxf(tile_max, fmaxf(scores[n][2 * r], scores[n][2 * r + 1]));
      }
      // The 4 lanes of a row are lanes 4·group .. 4·group + 3: xor 1 and 2 stay inside them.
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
      const float new_max = fmaxf(row_max[r], tile_max);
      // As in v1: a row with only masked keys so far measures from 0, never -inf - (-inf).
      const float reference = new_max == -INFINITY ? 0.0f : new_max * scale_log2;
      const float correction = exp2f(row_max[r] * scale_log2 - reference);
      row_max[r] = new_max;
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < 2 * kKeySteps; ++n) {
#pragma unroll
        for (int e = 2 * r; e < 2 * r + 2; ++e) {
          scores[n][e] = exp2f(scores[n][e] * scale_log2 - reference);
          sum += scores[n][e];
        }
      }
      row_sum[r] = row_sum[r] * correction + sum;
#pragma unroll
      for (int d = 0; d < kHeadDim / 8; ++d) {
        output[d][2 * r] *= correction;
        output[d][2 * r + 1] *= correction;
      }
    }

    // O += P·V. The A fragment of keys 16k .. 16k + 15 is the C fragments 2k and 2k + 1 of P,
    // rounded to T. B = V read transposed: matrices (keys 0-7, dims 0-7), (keys 8-15, dims 0-7),
    // (keys 0-7, dims 8-15), (keys 8-15, dims 8-15) are B registers 0, 1 of output n8 tile 2d and
    // 0, 1 of 2d + 1.
#pragma unroll
    for (int key_step = 0; key_step < kKeySteps; ++key_step) {
      const uint32_t weight_fragment[4] = {
          pack_pair<T>(scores[2 * key_step][0], scores[2 * key_step][1]),
          pack_pair<T>(scores[2 * key_step][2], scores[2 * key_step][3]),
          pack_pair<T>(scores[2 * key_step + 1][0], scores[2 * key_step + 1][1]),
          pack_pair<T>(scores[2 * key_step + 1][2], scores[2 * key_step + 1][3])};
#pragma unroll
      for (int step = 0; step < kDimSteps; ++step) {
        uint32_t value_fragment[4];
        ldmatrix_x4_transposed(
            value_fragment,
            value_tile + (key_step * 16 + lane % 16) * kRowStride + step * 16 + (lane / 16) * 8);
        mma_16x8x16<T>(output[2 * step], weight_fragment, value_fragment[0], value_fragment[1]);
        mma_16x8x16<T>(output[2 * step + 1], weight_fragment, value_fragment[2], value_fragment[3]);
      }
    }
  }

  // Each row's sum over its 4 lanes; then normalise, stage the warp's 16 rows in its own rows of
  // the query tile (only this warp ever read them) and store them 16 bytes at a time.
  float inverse_sum[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float sum = row_sum[r];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    inverse_sum[r] = sum > 0.0f ? 1.0f / sum : 0.0f;  // >= 1 for every row: key 0 is visible
  }
  T* staging = query_tile + warp * 16 * kRowStride;
#pragma unroll
  for (int d = 0; d < kHeadDim / 8; ++d) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      *reinterpret_cast<uint32_t*>(staging + (group + 8 * r) * kRowStride + d * 8 + 2 * pair) =
          pack_pair<T>(output[d][2 * r] * inverse_sum[r], output[d][2 * r + 1] * inverse_sum[r]);
    }
  }
  __syncwarp();
#pragma unroll
  for (int chunk = lane; chunk < 16 * kChunksPerRow; chunk += 32) {
    const int row = chunk / kChunksPerRow;
    const int column = (chunk % kChunksPerRow) * 8;
    const int query = first_query + warp * 16 + row;
    if (query < span.query_len) {
      *reinterpret_cast<uint4*>(out + (span.first_row + query) * query_row_stride +
                                static_cast<int64_t>(head) * kHeadDim + column) =
          *reinterpret_cast<const uint4*>(staging + row * kRowStride + column);
    }
  }
}

// ---- host side ------------------------------------------------------------------------------

bool aligned_16(const void* pointer) {
  return reinterpret_cast<uintptr_t>(pointer) % 16 == 0;
}

/// Lets a kernel use more than the default 48 KiB of dynamic shared memory where it needs to.
template <typename Kernel>
void allow_shared_memory(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024) {
    SERVELAB_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(bytes)));
  }
}

template <typename Chunk>
void launch_write_new_kv(const void* keys, const void* values, const PrefillParams& params,
                         int num_prefill_seqs, int64_t row_bytes, void* key_cache,
                         void* value_cache, cudaStream_t stream) {
  const int chunks_per_token = static_cast<int>(row_bytes / sizeof(Chunk));
  // One block per token up to a cap; beyond it blocks loop over tokens.
  const dim3 grid(static_cast<unsigned>(std::min(params.max_query_len, 8192)),
                  static_cast<unsigned>(num_prefill_seqs));
  write_new_kv_kernel<Chunk><<<grid, 128, 0, stream>>>(
      static_cast<const Chunk*>(keys), static_cast<const Chunk*>(values), params, chunks_per_token,
      static_cast<Chunk*>(key_cache), static_cast<Chunk*>(value_cache));
  SERVELAB_CHECK_LAUNCH("prefill_attention (write_new_kv_kernel)");
}

template <typename T, int kHeadDim>
void launch_mma(const T* queries, const T* key_cache, const T* value_cache,
                const PrefillParams& params, int num_prefill_seqs, T* out, cudaStream_t stream) {
  const auto kernel = prefill_attention_mma_kernel<T, kHeadDim>;
  const size_t shared_bytes = mma_shared_bytes(kHeadDim);
  allow_shared_memory(kernel, shared_bytes);
  const dim3 grid(static_cast<unsigned>(ceil_div(params.max_query_len, kMmaBlockQueries)),
                  params.num_heads, num_prefill_seqs);
  kernel<<<grid, kMmaThreads, shared_bytes, stream>>>(queries, key_cache, value_cache, params, out);
  SERVELAB_CHECK_LAUNCH("prefill_attention (prefill_attention_mma_kernel)");
}

/// Launches v2 where it applies (F16/BF16, head_dim 32/64/128, 16-byte aligned pointers for
/// cp.async and the vector stores); false otherwise.
template <typename T>
bool try_launch_mma(const T* queries, const T* key_cache, const T* value_cache,
                    const PrefillParams& params, int num_prefill_seqs, T* out,
                    cudaStream_t stream) {
  if (!aligned_16(queries) || !aligned_16(key_cache) || !aligned_16(value_cache) ||
      !aligned_16(out)) {
    return false;
  }
  switch (params.head_dim) {
    case 32:
      launch_mma<T, 32>(queries, key_cache, value_cache, params, num_prefill_seqs, out, stream);
      return true;
    case 64:
      launch_mma<T, 64>(queries, key_cache, value_cache, params, num_prefill_seqs, out, stream);
      return true;
    case 128:
      launch_mma<T, 128>(queries, key_cache, value_cache, params, num_prefill_seqs, out, stream);
      return true;
    default:
      return false;
  }
}

template <typename T>
void launch_simt(const T* queries, const T* key_cache, const T* value_cache,
                 const PrefillParams& params, int num_prefill_seqs, T* out, cudaStream_t stream) {
  const auto kernel = prefill_attention_simt_kernel<T>;
  const size_t shared_bytes = simt_shared_bytes(params.head_dim);
  allow_shared_memory(kernel, shared_bytes);
  const dim3 grid(static_cast<unsigned>(ceil_div(params.max_query_len, kSimtBlockQueries)),
                  params.num_heads, num_prefill_seqs);
  kernel<<<grid, kSimtWarps * 32, shared_bytes, stream>>>(queries, key_cache, value_cache, params,
                                                          out);
  SERVELAB_CHECK_LAUNCH("prefill_attention (prefill_attention_simt_kernel)");
}

}  // namespace

void prefill_attention(DType dtype, const void* queries, const void* keys, const void* values,
                       const PackedBatch& batch, const int32_t* seq_ids, int num_prefill_seqs,
                       const PagedCache& cache, void* key_cache, void* value_cache,
                       const HeadShape& heads, void* out, cudaStream_t stream) {
  // Every check comes before anything touches the device.
  if (dtype != DType::kF32 && dtype != DType::kF16 && dtype != DType::kBF16) {
    fail("prefill_attention: dtype ", dtype_name(dtype), " is not F32, F16 or BF16");
  }
  if (heads.num_heads <= 0 || heads.num_kv_heads <= 0 ||
      heads.num_heads % heads.num_kv_heads != 0 || heads.num_heads > kMaxGridDimension) {
    fail("prefill_attention: ", heads.num_heads, " query heads cannot share ", heads.num_kv_heads,
         " KV heads (need num_heads a positive multiple of num_kv_heads, at most ",
         kMaxGridDimension, ")");
  }
  if (heads.head_dim < 8 || heads.head_dim > kMaxHeadDim || heads.head_dim % 8 != 0) {
    fail("prefill_attention: head_dim ", heads.head_dim, " is not a multiple of 8 in [8, ",
         kMaxHeadDim, "]");
  }
  if (!(heads.scale > 0.0f) || !std::isfinite(heads.scale)) {
    fail("prefill_attention: scale ", heads.scale, " must be positive and finite");
  }
  if (batch.num_seqs < 0 || batch.num_tokens < 0 || batch.max_query_len < 0 ||
      batch.max_context_len < batch.max_query_len) {
    fail("prefill_attention: inconsistent batch: ", batch.num_seqs, " sequences, ",
         batch.num_tokens, " tokens, max_query_len ", batch.max_query_len, ", max_context_len ",
         batch.max_context_len, " (need max_query_len <= max_context_len, none negative)");
  }
  if (num_prefill_seqs < 0 || num_prefill_seqs > batch.num_seqs ||
      num_prefill_seqs > kMaxGridDimension) {
    fail("prefill_attention: num_prefill_seqs ", num_prefill_seqs, " is not in [0, ",
         std::min(batch.num_seqs, kMaxGridDimension), "] for a batch of ", batch.num_seqs,
         " sequences");
  }
  if (num_prefill_seqs == 0 || batch.max_query_len == 0 || batch.num_tokens == 0) return;

  if (cache.block_size <= 0 || cache.blocks_per_seq <= 0) {
    fail("prefill_attention: block_size ", cache.block_size, " and blocks_per_seq ",
         cache.blocks_per_seq, " must be positive");
  }
  if (batch.max_context_len >
      static_cast<int64_t>(cache.blocks_per_seq) * static_cast<int64_t>(cache.block_size)) {
    fail("prefill_attention: max_context_len ", batch.max_context_len,
         " does not fit a block table of ", cache.blocks_per_seq, " blocks of ", cache.block_size,
         " tokens");
  }
  if ((cache.key_cache != nullptr && cache.key_cache != key_cache) ||
      (cache.value_cache != nullptr && cache.value_cache != value_cache)) {
    fail(
        "prefill_attention: key_cache / value_cache must be the writable versions of "
        "cache.key_cache / cache.value_cache (the attention reads the cache it wrote)");
  }
  if (queries == nullptr || keys == nullptr || values == nullptr || out == nullptr ||
      key_cache == nullptr || value_cache == nullptr || seq_ids == nullptr ||
      batch.query_start == nullptr || batch.context_lens == nullptr ||
      cache.block_tables == nullptr) {
    fail(
        "prefill_attention: a null pointer among queries, keys, values, out, key_cache, "
        "value_cache, seq_ids, batch.query_start, batch.context_lens, cache.block_tables");
  }

  PrefillParams params;
  params.query_start = batch.query_start;
  params.context_lens = batch.context_lens;
  params.seq_ids = seq_ids;
  params.block_tables = cache.block_tables;
  params.num_seqs = batch.num_seqs;
  params.num_tokens = batch.num_tokens;
  params.max_query_len = batch.max_query_len;
  params.max_context_len = batch.max_context_len;
  params.blocks_per_seq = cache.blocks_per_seq;
  params.block_size = cache.block_size;
  params.num_heads = heads.num_heads;
  params.num_kv_heads = heads.num_kv_heads;
  params.head_dim = heads.head_dim;
  params.scale = heads.scale;

  dispatch_float_type(dtype, "prefill_attention", [&](auto zero) {
    using T = decltype(zero);
    // Launch 1: the new keys and values into the cache, 16 bytes at a time where the pointers
    // allow it (a row is a multiple of 16 bytes: head_dim is a multiple of 8).
    const int64_t row_bytes = static_cast<int64_t>(heads.num_kv_heads) * heads.head_dim * sizeof(T);
    if (aligned_16(keys) && aligned_16(values) && aligned_16(key_cache) &&
        aligned_16(value_cache)) {
      launch_write_new_kv<uint4>(keys, values, params, num_prefill_seqs, row_bytes, key_cache,
                                 value_cache, stream);
    } else {
      launch_write_new_kv<T>(keys, values, params, num_prefill_seqs, row_bytes, key_cache,
                             value_cache, stream);
    }
    // Launch 2: attention, reading the cache launch 1 completed.
    const T* typed_queries = static_cast<const T*>(queries);
    const T* typed_keys = static_cast<const T*>(key_cache);
    const T* typed_values = static_cast<const T*>(value_cache);
    T* typed_out = static_cast<T*>(out);
    if constexpr (!std::is_same_v<T, float>) {  // v2 where it applies
      if (try_launch_mma<T>(typed_queries, typed_keys, typed_values, params, num_prefill_seqs,
                            typed_out, stream)) {
        return;
      }
    }
    launch_simt<T>(typed_queries, typed_keys, typed_values, params, num_prefill_seqs, typed_out,
                   stream);
  });
}

}  // namespace servelab::kernels
