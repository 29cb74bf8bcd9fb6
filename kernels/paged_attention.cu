// PagedAttention decode: each sequence's one new query token attends to its whole cached context,
// which lives scattered over the paged cache [num_blocks, block_size, num_kv_heads, head_dim]
// (position p is at block block_table[p / block_size], offset p % block_size). Grouped-query
// attention: the num_heads / num_kv_heads query heads of a group read the same KV head.
//
// Decode is memory-bound: every cached key and value is read once and used for a handful of
// multiply-adds per query head. So the design goal of every version is to read K and V exactly
// once per KV head (not once per query head), in wide coalesced loads, with enough thread blocks
// and bytes in flight to keep the memory system busy.
//
// Ladder:
//   v1 paged_attention_decode: one thread block per (sequence, KV head), handling all the query
//      heads of its group so each key and value is read once. The context is walked in tiles of
//      32 tokens: the tile's keys are staged in shared memory (consecutive threads load
//      consecutive elements, through the block table), each (query head, token) score is a warp's
//      dot product, an online softmax (running max and sum per head) folds the tile in, then the
//      tile's values are staged and accumulated. Any length, any block size, few registers; easy
//      to check against cpu::paged_attention_decode. Its limits: only num_seqs * num_kv_heads
//      blocks (128 for 16 sequences of an 8-KV-head model: one per SM, so the memory system
//      idles), element-sized loads, and barriers that stop the loads between phases.
//   v2 paged_attention_decode_split (flash-decoding): the context is also cut into partitions, one
//      block each, so that even a small batch fills the GPU; a second, small kernel merges
//      the partitions' (max, sum, unnormalised output) with log-sum-exp rescaling. Inside a block
//      there are no barriers in the main loop: a team of lanes (head_dim / 8 lanes for fp16/bf16)
//      owns one token row and loads it in 16-byte vectors; each team runs its own online softmax
//      over its tokens, keeps all of the group's query heads and accumulators in registers, and
//      issues the loads of several tokens' keys *and* values before using any of them (bytes in
//      flight). Scores are in the log2 domain (scale * log2(e) folded into the query) so each
//      exponential is a single ex2 instruction. Teams merge once, at the end, through shared
//      memory. The block table entries of the partition are fetched once into shared memory, so
//      the K/V loads never wait on a dependent block-table load. Fast paths for head_dim 64 and
//      128, a generic path (a warp per row) for any multiple of 8 up to 256. The automatic
//      partition size counts waves: blocks of equal work run in waves of what the device holds at
//      once, and a last wave left half empty costs as much as a full one (choose_partition_size).
// measured (NVIDIA H100 80GB HBM3, 2026-11-22; benchmarks/results/2026-11-22-h100-80gb-hbm3.md;
//   bf16, 32 query / 8 KV heads, head_dim 128, blocks of 16; GB/s counts K and V of every context
//   token + queries + outputs; copy bandwidth 3020 GB/s; SDPA = PyTorch's fastest variant):
//   batch x context   v1                    v2                          SDPA
//   1 x 512              725 us,   3 GB/s       9.4 us,   225 GB/s,  7%      17.3 us
//   1 x 4096           5,784 us,   3 GB/s      21.1 us,   798 GB/s, 26%      37.1 us
//   16 x 4096          5,833 us,  46 GB/s       129 us, 2,082 GB/s, 69%       101 us
//   64 x 4096          6,256 us, 172 GB/s       456 us, 2,356 GB/s, 78%       359 us
//   128 x 8192        15,222 us, 282 GB/s     1,752 us, 2,453 GB/s, 81%     1,413 us
//   v1 is the teaching version; v2 is what the backend runs. At batch >= 16 and context >= 2048
//   v2 reaches 62-81% of the copy bandwidth and takes 1.21-1.36x SDPA's time (floor: 75%, 1.00x).
//   Tried and not kept: a grid with the KV head varying fastest (neighbouring blocks reading a
//   token's whole cache row together). Same H100, same day: better at batch 16 (70-81% of copy
//   bandwidth, 1.13-1.20x SDPA at context >= 2048) but far worse at batch 64-128 (27-53%,
//   1.9-3.6x SDPA), so the partition-fastest order stays.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda_utils.cuh"
#include "kernels/kernels.h"

namespace servelab::kernels {
namespace {

constexpr int kMaxHeadDim = 256;
constexpr int kDefaultSharedMemory = 48 * 1024;  // without opting in, a block gets this much

// ---- version 1 -------------------------------------------------------------------------------

constexpr int kV1Threads = 128;
constexpr int kTileTokens = 32;  // a warp's width: in the softmax step lane j owns token j

// Dynamic shared memory of version 1, in floats: queries and accumulators [group][head_dim], a
// tile of K or V rows [kTileTokens][head_dim], the tile's scores [group][kTileTokens], and three
// numbers per head (running max, running sum, rescale factor).
int64_t v1_shared_floats(int group, int head_dim) {
  return 2LL * group * head_dim + static_cast<int64_t>(kTileTokens) * head_dim +
         static_cast<int64_t>(kTileTokens) * group + 3LL * group;
}

// Grid: (sequence, KV head). Block: kV1Threads. out row: seq_rows[seq] (or seq).
template <typename T>
__global__ void __launch_bounds__(kV1Threads)
    paged_decode_v1_kernel(const T* __restrict__ queries, const T* __restrict__ key_cache,
                           const T* __restrict__ value_cache,
                           const int32_t* __restrict__ block_tables, int blocks_per_seq,
                           int block_size, const int32_t* __restrict__ context_lens,
                           const int32_t* __restrict__ seq_rows, int max_context_len, int num_heads,
                           int num_kv_heads, int head_dim, float scale, T* __restrict__ out) {
  // BEGIN LAB(lab04-paged-decode-cuda, device)
  constexpr int kV1Warps = kV1Threads / 32;
  const int seq = blockIdx.x;
  const int kv_head = blockIdx.y;
  const int group = num_heads / num_kv_heads;  // query heads that share this KV head
  const int first_head = kv_head * group;      // they are heads [first_head, first_head + group)
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row = seq_rows != nullptr ? seq_rows[seq] : seq;
  // max_context_len is the launch's promise; a longer length is cut rather than overrun.
  const int context_len = min(context_lens[seq], max_context_len);
  const int32_t* block_table = block_tables + static_cast<int64_t>(seq) * blocks_per_seq;

  extern __shared__ float shared[];
  float* query = shared;                              // [group][head_dim], times scale
  float* accumulator = query + group * head_dim;      // [group][head_dim], Σ weight · v so far
  float* tile = accumulator + group * head_dim;       // [kTileTokens][head_dim]: keys, then values
  float* scores = tile + kTileTokens * head_dim;      // [group][kTileTokens]: scores, then weights
  float* running_max = scores + group * kTileTokens;  // [group]
  float* running_sum = running_max + group;           // [group]
  float* rescale = running_sum + group;               // [group]

  for (int i = threadIdx.x; i < group * head_dim; i += blockDim.x) {
    const int h = i / head_dim, d = i % head_dim;
    query[i] = to_float(queries[(row * num_heads + first_head + h) * head_dim + d]) * scale;
    accumulator[i] = 0.0f;
  }
  for (int h = threadIdx.x; h < group; h += blockDim.x) {
    running_max[h] = -INFINITY;
    running_sum[h] = 0.0f;
  }
  __syncthreads();

  for (int tile_start = 0; tile_start < context_len; tile_start += kTileTokens) {
    const int tile_len = min(kTileTokens, context_len - tile_start);

    // 1. Stage the tile's keys. Token p is in block block_table[p / block_size]; consecutive
    //    threads read consecutive elements of a row, so each warp load is coalesced.
    for (int i = threadIdx.x; i < tile_len * head_dim; i += blockDim.x) {
      const int j = i / head_dim, d = i % head_dim;
      const int position = tile_start + j;
      const int64_t slot = static_cast<int64_t>(block_table[position / block_size]) * block_size +
                           position % block_size;
      tile[i] = to_float(key_cache[(slot * num_kv_heads + kv_head) * head_dim + d]);
    }
    __syncthreads();

    // 2. scores[h][j] = q_h · k_j: one warp per (head, token) pair, lanes split head_dim. The key
    //    is read from shared memory once per head, from global memory once in all.
    for (int pair = warp; pair < group * kTileTokens; pair += kV1Warps) {
      const int h = pair / kTileTokens, j = pair % kTileTokens;
      float dot = 0.0f;
      if (j < tile_len) {  // the same for the whole warp, so every lane reaches warp_sum
        for (int d = lane; d < head_dim; d += 32)
          dot += query[h * head_dim + d] * tile[j * head_dim + d];
      }
      dot = warp_sum(dot);
      if (lane == 0) scores[pair] = j < tile_len ? dot : -INFINITY;
    }
    __syncthreads();

    // 3. Online softmax, one warp per head, lane j holding token j: the new running max, the
    //    factor that rescales what was accumulated under the old max, and the tile's weights.
    for (int h = warp; h < group; h += kV1Warps) {
      const float old_max = running_max[h];
      const float score = scores[h * kTileTokens + lane];
      const float new_max = fmaxf(old_max, warp_max(score));  // finite: tile_len >= 1
      const float weight = __expf(score - new_max);           // 0 for the -inf padding
      scores[h * kTileTokens + lane] = weight;
      const float weight_sum = warp_sum(weight);
      __syncwarp();  // every lane has read running_max[h] before lane 0 replaces it
      if (lane == 0) {
        const float factor = __expf(old_max - new_max);  // 0 on the first tile (old max -inf)
        rescale[h] = factor;
        running_sum[h] = running_sum[h] * factor + weight_sum;
        running_max[h] = new_max;
      }
    }
    // ... and meanwhile stage the tile's values: the keys are no longer needed after step 2.
    for (int i = threadIdx.x; i < tile_len * head_dim; i += blockDim.x) {
      const int j = i / head_dim, d = i % head_dim;
      const int position = tile_start + j;
      const int64_t slot = static_cast<int64_t>(block_table[position / block_size]) * block_size +
                           position % block_size;
      tile[i] = to_float(value_cache[(slot * num_kv_heads + kv_head) * head_dim + d]);
    }
    __syncthreads();

    // 4. accumulator[h][d] = accumulator[h][d] * rescale[h] + Σ_j weight[h][j] · v_j[d].
    for (int i = threadIdx.x; i < group * head_dim; i += blockDim.x) {
      const int h = i / head_dim, d = i % head_dim;
      float sum = accumulator[i] * rescale[h];
      for (int j = 0; j < tile_len; ++j)
        sum += scores[h * kTileTokens + j] * tile[j * head_dim + d];
      accumulator[i] = sum;
    }
    __syncthreads();  // the next tile overwrites tile and scores
  }

  // 5. Normalise by the softmax denominator (an empty context gives zeros, not 0/0).
  for (int i = threadIdx.x; i < group * head_dim; i += blockDim.x) {
    const int h = i / head_dim, d = i % head_dim;
    const float value = context_len > 0 ? accumulator[i] / running_sum[h] : 0.0f;
    out[(row * num_heads + first_head + h) * head_dim + d] = from_float<T>(value);
  }
  // END LAB
}

// ---- version 2 -------------------------------------------------------------------------------

constexpr int kSplitThreads = 128;
constexpr int kReduceThreads = 128;
constexpr int kMaxHeadsPerBlock = 8;  // query heads one v2 block keeps in registers
constexpr float kLog2E = 1.4426950408889634f;
// The automatic partition size (partition_size = 0; see choose_partition_size): at least 64
// tokens, below which a block's fixed costs dominate; a block's fixed cost (the block-table fetch,
// the merge of its teams, its share of the reduce) counted as 2 main-loop steps; partition counts
// searched up to 4 waves of the most blocks an H100 can hold (132 SMs x 16 blocks of 128 threads),
// a device-independent bound so that the workspace size needs no device.
constexpr int kSmallestAutoPartition = 64;
constexpr int kAutoOverheadSteps = 2;
constexpr int kAutoMaxWaves = 4;
constexpr int64_t kAutoMaxResidentBlocks = 132 * 16;

// Everything both v2 kernels need, in one struct so the launches stay readable.
struct SplitParams {
  const void* queries;      // [rows, num_heads, head_dim]
  const void* key_cache;    // [num_blocks, block_size, num_kv_heads, head_dim]
  const void* value_cache;  // likewise
  const int32_t* block_tables;
  const int32_t* context_lens;
  const int32_t* seq_rows;  // or null
  void* out;                // [rows, num_heads * head_dim]
  // Workspace, fp32: [num_seqs, num_heads, max_partitions, head_dim] unnormalised outputs, then
  // [num_seqs, num_heads, max_partitions] maxima (log2 domain) and sums of exponentials.
  float* partial_out;
  float* partial_max;
  float* partial_sum;
  int blocks_per_seq;
  int block_size;
  int max_context_len;
  int partition_size;
  int max_partitions;
  int num_heads;
  int num_kv_heads;
  int head_dim;
  int group;         // num_heads / num_kv_heads
  int head_chunks;   // blocks per KV head: ceil(group / heads per block)
  float scale_log2;  // scale * log2(e)
};

// How a v2 block splits a K/V row among its lanes. A row is head_dim / kVector 16-byte vectors.
// Fast paths give each lane exactly one vector (a team of head_dim / kVector lanes per row:
// 8 or 16 for fp16/bf16, 16 or 32 for fp32); the generic path gives a whole warp to a row and
// up to kMaxHeadDim / kVector / 32 vectors to each lane, some lanes idling when head_dim is small.
template <typename T, int kHeadDim>
struct RowLayout {
  static constexpr int kVector = 16 / static_cast<int>(sizeof(T));  // elements per 16 bytes
  static constexpr int kTeamLanes = kHeadDim > 0 ? kHeadDim / kVector : 32;
  static constexpr int kVectorsPerLane = kHeadDim > 0 ? 1 : kMaxHeadDim / kVector / 32;
  static constexpr int kElements = kVector * kVectorsPerLane;  // per lane: 4 or 8
  static constexpr int kTeams = kSplitThreads / kTeamLanes;    // rows in flight per step
  static_assert(kTeamLanes >= 1 && kTeamLanes <= 32 && (kTeamLanes & (kTeamLanes - 1)) == 0,
                "a team is a power-of-two slice of a warp");
  static_assert(kHeadDim == 0 || kHeadDim % kVector == 0, "fast paths need whole vectors");
};

// Tokens a team loads before it computes: 4 K and 4 V rows in flight per lane (2 of each with
// 8 heads, whose accumulators already take 64 registers).
constexpr int split_unroll(int heads_per_block) {
  return heads_per_block >= 8 ? 2 : 4;
}

// Dynamic shared memory of the v2 partition kernel: per team and head, a head_dim accumulator
// plus its max and sum (the final merge of the teams), then the partition's block numbers.
template <typename T, int kHeadDim, int kHeads>
int64_t split_shared_bytes(int head_dim, int blocks_per_partition) {
  using Layout = RowLayout<T, kHeadDim>;
  const int64_t floats = static_cast<int64_t>(Layout::kTeams) * kHeads * (head_dim + 2);
  return floats * static_cast<int64_t>(sizeof(float)) +
         static_cast<int64_t>(blocks_per_partition) * static_cast<int64_t>(sizeof(int32_t));
}

// 16 bytes of T to fp32. bf16 is the top half of an fp32, so its conversion is a shift.
__device__ __forceinline__ void unpack(const uint4& raw, float* out, float) {
  out[0] = __uint_as_float(raw.x);
  out[1] = __uint_as_float(raw.y);
  out[2] = __uint_as_float(raw.z);
  out[3] = __uint_as_float(raw.w);
}
__device__ __forceinline__ void unpack(const uint4& raw, float* out, __nv_bfloat16) {
  const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out[2 * i] = __uint_as_float(words[i] << 16);
    out[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
  }
}
__device__ __forceinline__ void unpack(const uint4& raw, float* out, __half) {
  const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out[2 * i] = __half2float(__ushort_as_half(static_cast<unsigned short>(words[i] & 0xffffu)));
    out[2 * i + 1] = __half2float(__ushort_as_half(static_cast<unsigned short>(words[i] >> 16)));
  }
}

// Sum over the kLanes lanes of an aligned team. All 32 lanes must call it (full-mask shuffles);
// an xor with an offset below kLanes never leaves the team.
template <int kLanes>
__device__ __forceinline__ float team_sum(float value) {
#pragma unroll
  for (int offset = kLanes / 2; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  }
  return value;
}

// Grid: (partition, KV head * head_chunks + chunk, sequence). Block: kSplitThreads. One block
// handles query heads [first_head, first_head + heads_here) of one KV head over one partition of
// one sequence's context.
template <typename T, int kHeadDim, int kHeads>
__global__ void __launch_bounds__(kSplitThreads) paged_decode_split_kernel(SplitParams params) {
  using Layout = RowLayout<T, kHeadDim>;
  constexpr int kVector = Layout::kVector;
  constexpr int kTeamLanes = Layout::kTeamLanes;
  constexpr int kVectorsPerLane = Layout::kVectorsPerLane;
  constexpr int kElements = Layout::kElements;
  constexpr int kTeams = Layout::kTeams;
  constexpr int kUnroll = split_unroll(kHeads);
  constexpr int kTokensPerStep = kTeams * kUnroll;

  const int partition = blockIdx.x;
  const int kv_head = blockIdx.y / params.head_chunks;
  const int chunk = blockIdx.y % params.head_chunks;
  const int seq = blockIdx.z;
  const int head_dim = kHeadDim > 0 ? kHeadDim : params.head_dim;
  const int vectors_per_row = head_dim / kVector;
  const int context_len = min(params.context_lens[seq], params.max_context_len);
  const int start = partition * params.partition_size;
  // The grid covers max_context_len; partitions past this sequence's end have nothing to do.
  // (Partition 0 of an empty sequence stays, to write its zero output.)
  if (partition > 0 && start >= context_len) return;
  const int end = min(start + params.partition_size, context_len);
  const int num_partitions =
      max(1, (context_len + params.partition_size - 1) / params.partition_size);
  const int first_head = kv_head * params.group + chunk * kHeads;
  const int heads_here = min(kHeads, params.group - chunk * kHeads);
  const int64_t row = params.seq_rows != nullptr ? params.seq_rows[seq] : seq;
  T* out = static_cast<T*>(params.out);

  if (context_len <= 0) {  // nothing to attend to: a zero row rather than 0/0
    for (int i = threadIdx.x; i < heads_here * head_dim; i += kSplitThreads) {
      out[(row * params.num_heads + first_head) * head_dim + i] = from_float<T>(0.0f);
    }
    return;
  }

  extern __shared__ __align__(16) unsigned char shared_raw[];
  float* team_out = reinterpret_cast<float*>(shared_raw);   // [kTeams][kHeads][head_dim]
  float* team_max = team_out + kTeams * kHeads * head_dim;  // [kTeams][kHeads]
  float* team_total = team_max + kTeams * kHeads;           // [kTeams][kHeads]
  int32_t* physical_blocks = reinterpret_cast<int32_t*>(team_total + kTeams * kHeads);

  // The partition's block numbers, fetched once (start is a multiple of block_size).
  const int32_t* block_table = params.block_tables +
                               static_cast<int64_t>(seq) * params.blocks_per_seq +
                               start / params.block_size;
  const int blocks_here = (end - start + params.block_size - 1) / params.block_size;
  for (int i = threadIdx.x; i < blocks_here; i += kSplitThreads)
    physical_blocks[i] = block_table[i];

  const int team = threadIdx.x / kTeamLanes, team_lane = threadIdx.x % kTeamLanes;

  // This lane's slice of every query head, in fp32, times scale * log2(e).
  float query[kHeads][kElements];
  const T* query_row =
      static_cast<const T*>(params.queries) + (row * params.num_heads + first_head) * head_dim;
#pragma unroll
  for (int h = 0; h < kHeads; ++h) {
#pragma unroll
    for (int v = 0; v < kVectorsPerLane; ++v) {
      const int vector = team_lane + v * kTeamLanes;
      uint4 raw = make_uint4(0, 0, 0, 0);
      if (h < heads_here && vector < vectors_per_row) {
        raw = *reinterpret_cast<const uint4*>(query_row + h * head_dim + vector * kVector);
      }
      unpack(raw, &query[h][v * kVector], T{});
#pragma unroll
      for (int e = 0; e < kVector; ++e) query[h][v * kVector + e] *= params.scale_log2;
    }
  }

  float running_max[kHeads], running_sum[kHeads], accumulator[kHeads][kElements];
#pragma unroll
  for (int h = 0; h < kHeads; ++h) {
    running_max[h] = -INFINITY;
    running_sum[h] = 0.0f;
#pragma unroll
    for (int e = 0; e < kElements; ++e) accumulator[h][e] = 0.0f;
  }
  __syncthreads();  // physical_blocks is ready

  const int64_t token_stride = static_cast<int64_t>(params.num_kv_heads) * head_dim;
  const T* key_base = static_cast<const T*>(params.key_cache) + kv_head * head_dim;
  const T* value_base = static_cast<const T*>(params.value_cache) + kv_head * head_dim;

  // Step over the partition kTokensPerStep tokens at a time; team t takes tokens
  // step + u * kTeams + t. The bounds are the same for every thread, so all lanes reach the
  // shuffles; a lane whose token is past the end loads nothing and scores -inf.
  for (int step = start; step < end; step += kTokensPerStep) {
    uint4 keys[kUnroll][kVectorsPerLane], values[kUnroll][kVectorsPerLane];
    bool valid[kUnroll];
    // 1. Issue every load of this step before using any of them.
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int position = step + u * kTeams + team;
      valid[u] = position < end;
      int64_t row_offset = 0;
      if (valid[u]) {
        const int local = position - start;
        const int64_t slot =
            static_cast<int64_t>(physical_blocks[local / params.block_size]) * params.block_size +
            local % params.block_size;
        row_offset = slot * token_stride;
      }
#pragma unroll
      for (int v = 0; v < kVectorsPerLane; ++v) {
        const int vector = team_lane + v * kTeamLanes;
        keys[u][v] = make_uint4(0, 0, 0, 0);
        values[u][v] = make_uint4(0, 0, 0, 0);
        if (valid[u] && vector < vectors_per_row) {
          keys[u][v] = *reinterpret_cast<const uint4*>(key_base + row_offset + vector * kVector);
          values[u][v] =
              *reinterpret_cast<const uint4*>(value_base + row_offset + vector * kVector);
        }
      }
    }

    // 2. Scores (log2 domain): each lane's partial dot product, summed over its team.
    float scores[kUnroll][kHeads];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float key[kElements];
#pragma unroll
      for (int v = 0; v < kVectorsPerLane; ++v) unpack(keys[u][v], &key[v * kVector], T{});
#pragma unroll
      for (int h = 0; h < kHeads; ++h) {
        float dot = 0.0f;
#pragma unroll
        for (int e = 0; e < kElements; ++e) dot += query[h][e] * key[e];
        dot = team_sum<kTeamLanes>(dot);
        scores[u][h] = valid[u] ? dot : -INFINITY;
      }
    }

    // 3. Online softmax over this step's kUnroll tokens: rescale once per step, not per token.
#pragma unroll
    for (int h = 0; h < kHeads; ++h) {
      float step_max = scores[0][h];
#pragma unroll
      for (int u = 1; u < kUnroll; ++u) step_max = fmaxf(step_max, scores[u][h]);
      const float new_max = fmaxf(running_max[h], step_max);
      // -inf only while this team has seen no token at all: then there is nothing to rescale
      // (and -inf - -inf would be NaN).
      const float factor = new_max == -INFINITY ? 1.0f : exp2f(running_max[h] - new_max);
      running_max[h] = new_max;
      running_sum[h] *= factor;
#pragma unroll
      for (int e = 0; e < kElements; ++e) accumulator[h][e] *= factor;
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        scores[u][h] = valid[u] ? exp2f(scores[u][h] - new_max) : 0.0f;  // now the weights
        running_sum[h] += scores[u][h];
      }
    }

    // 4. accumulator[h] += weight[u][h] · v_u: each value row converted once, used by all heads.
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float value[kElements];
#pragma unroll
      for (int v = 0; v < kVectorsPerLane; ++v) unpack(values[u][v], &value[v * kVector], T{});
#pragma unroll
      for (int h = 0; h < kHeads; ++h) {
#pragma unroll
        for (int e = 0; e < kElements; ++e) accumulator[h][e] += scores[u][h] * value[e];
      }
    }
  }

  // 5. Merge the teams: each writes its (max, sum, accumulator) per head to shared memory...
#pragma unroll
  for (int h = 0; h < kHeads; ++h) {
    float* destination = team_out + (team * kHeads + h) * head_dim;
#pragma unroll
    for (int v = 0; v < kVectorsPerLane; ++v) {
      const int vector = team_lane + v * kTeamLanes;
      if (vector < vectors_per_row) {  // 16-byte stores: head_dim % 8 == 0 keeps them aligned
        float4* slice = reinterpret_cast<float4*>(destination + vector * kVector);
#pragma unroll
        for (int e = 0; e < kVector; e += 4) {
          const float* a = &accumulator[h][v * kVector + e];
          slice[e / 4] = make_float4(a[0], a[1], a[2], a[3]);
        }
      }
    }
    if (team_lane == 0) {
      team_max[team * kHeads + h] = running_max[h];
      team_total[team * kHeads + h] = running_sum[h];
    }
  }
  __syncthreads();

  // ... and one thread per (head, dimension) rescales every team to the block's max and sums.
  for (int i = threadIdx.x; i < heads_here * head_dim; i += kSplitThreads) {
    const int h = i / head_dim, d = i % head_dim;
    float block_max = -INFINITY;
#pragma unroll
    for (int t = 0; t < kTeams; ++t) block_max = fmaxf(block_max, team_max[t * kHeads + h]);
    float total = 0.0f, value = 0.0f;
#pragma unroll
    for (int t = 0; t < kTeams; ++t) {
      const float team_maximum = team_max[t * kHeads + h];
      if (team_maximum == -INFINITY) continue;  // a team that got no token of this partition
      const float factor = exp2f(team_maximum - block_max);
      total += factor * team_total[t * kHeads + h];
      value += factor * team_out[(t * kHeads + h) * head_dim + d];
    }
    const int head = first_head + h;
    if (num_partitions == 1) {  // the whole context was this block's: finish here, skip the merge
      out[(row * params.num_heads + head) * head_dim + d] = from_float<T>(value / total);
    } else {
      const int64_t index =
          (static_cast<int64_t>(seq) * params.num_heads + head) * params.max_partitions + partition;
      params.partial_out[index * head_dim + d] = value;
      if (d == 0) {
        params.partial_max[index] = block_max;
        params.partial_sum[index] = total;
      }
    }
  }
}

// Grid: (query head, sequence). Block: kReduceThreads. Merges a sequence's partitions:
//   out = Σ_i 2^(m_i - M) · o_i / Σ_i 2^(m_i - M) · s_i,  M = max_i m_i
// where partition i left its max m_i, its sum s_i and its unnormalised output o_i (both relative
// to m_i). Sequences with a single partition were finished by the partition kernel.
template <typename T>
__global__ void __launch_bounds__(kReduceThreads) paged_decode_reduce_kernel(SplitParams params) {
  constexpr int kWarps = kReduceThreads / 32;
  constexpr int kDimsPerThread = kMaxHeadDim / kReduceThreads;
  __shared__ float factors[kReduceThreads];  // 2^(m_i - M) of a chunk of partitions
  __shared__ float scratch[kWarps];

  const int head = blockIdx.x;
  const int seq = blockIdx.y;
  const int context_len = min(params.context_lens[seq], params.max_context_len);
  const int num_partitions = (context_len + params.partition_size - 1) / params.partition_size;
  if (num_partitions <= 1) return;
  const int head_dim = params.head_dim;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t base =
      (static_cast<int64_t>(seq) * params.num_heads + head) * params.max_partitions;

  // The largest partition max, then the total of the rescaled sums.
  float local_max = -INFINITY;
  for (int i = threadIdx.x; i < num_partitions; i += kReduceThreads) {
    local_max = fmaxf(local_max, params.partial_max[base + i]);
  }
  local_max = warp_max(local_max);
  if (lane == 0) scratch[warp] = local_max;
  __syncthreads();
  const float global_max = warp_max(lane < kWarps ? scratch[lane] : -INFINITY);
  __syncthreads();
  float local_total = 0.0f;
  for (int i = threadIdx.x; i < num_partitions; i += kReduceThreads) {
    local_total += params.partial_sum[base + i] * exp2f(params.partial_max[base + i] - global_max);
  }
  local_total = warp_sum(local_total);
  if (lane == 0) scratch[warp] = local_total;
  __syncthreads();
  const float inverse_total = 1.0f / warp_sum(lane < kWarps ? scratch[lane] : 0.0f);

  // The outputs, partitions taken kReduceThreads at a time with their factors in shared memory;
  // consecutive threads read consecutive dimensions of a partition's output.
  float sums[kDimsPerThread] = {};
  for (int chunk_start = 0; chunk_start < num_partitions; chunk_start += kReduceThreads) {
    const int count = min(kReduceThreads, num_partitions - chunk_start);
    __syncthreads();  // the previous chunk's factors (and scratch) are no longer read
    if (static_cast<int>(threadIdx.x) < count) {
      factors[threadIdx.x] =
          exp2f(params.partial_max[base + chunk_start + threadIdx.x] - global_max);
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kDimsPerThread; ++k) {
      const int d = threadIdx.x + k * kReduceThreads;
      if (d < head_dim) {
        const float* partial = params.partial_out + (base + chunk_start) * head_dim + d;
        for (int i = 0; i < count; ++i)
          sums[k] += factors[i] * partial[static_cast<int64_t>(i) * head_dim];
      }
    }
  }
  const int64_t row = params.seq_rows != nullptr ? params.seq_rows[seq] : seq;
  T* out = static_cast<T*>(params.out) + (row * params.num_heads + head) * head_dim;
#pragma unroll
  for (int k = 0; k < kDimsPerThread; ++k) {
    const int d = threadIdx.x + k * kReduceThreads;
    if (d < head_dim) out[d] = from_float<T>(sums[k] * inverse_total);
  }
}

// ---- host side -------------------------------------------------------------------------------

bool aligned_16(const void* pointer) {
  return reinterpret_cast<uintptr_t>(pointer) % 16 == 0;
}

int max_shared_memory_per_block() {
  int device = 0, limit = 0;
  SERVELAB_CUDA_CHECK(cudaGetDevice(&device));
  SERVELAB_CUDA_CHECK(
      cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return limit;
}

// Query heads one v2 block handles: the group rounded up to a power of two, at most 8 (larger
// groups are split into chunks of 8 heads, each chunk its own block).
int heads_per_block(int group) {
  if (group <= 1) return 1;
  if (group <= 2) return 2;
  if (group <= 4) return 4;
  return kMaxHeadsPerBlock;
}

int head_chunks(int group) {
  const int per_block = heads_per_block(group);
  return (group + per_block - 1) / per_block;
}

// The checks both versions share; they run before anything touches the device.
void check_decode_arguments(const char* what, DType dtype, const PagedCache& cache, int num_seqs,
                            int max_context_len, const HeadShape& heads) {
  if (dtype != DType::kF32 && dtype != DType::kF16 && dtype != DType::kBF16) {
    fail(what, ": dtype must be F32, F16 or BF16, got ", dtype_name(dtype));
  }
  if (heads.num_heads <= 0 || heads.num_kv_heads <= 0) {
    fail(what, ": num_heads (", heads.num_heads, ") and num_kv_heads (", heads.num_kv_heads,
         ") must be positive");
  }
  if (heads.num_heads % heads.num_kv_heads != 0) {
    fail(what, ": ", heads.num_heads, " query heads cannot be shared evenly by ",
         heads.num_kv_heads, " KV heads (num_heads % num_kv_heads must be 0)");
  }
  if (heads.head_dim <= 0 || heads.head_dim % 8 != 0 || heads.head_dim > kMaxHeadDim) {
    fail(what, ": head_dim is ", heads.head_dim, ", expected a multiple of 8 from 8 to ",
         kMaxHeadDim);
  }
  if (heads.num_kv_heads > 65535) {
    fail(what, ": num_kv_heads is ", heads.num_kv_heads, ", at most 65535 fit the grid");
  }
  if (num_seqs < 0) fail(what, ": num_seqs is ", num_seqs, ", expected >= 0");
  if (cache.block_size <= 0) fail(what, ": block_size is ", cache.block_size, ", expected > 0");
  if (cache.blocks_per_seq < 0) {
    fail(what, ": blocks_per_seq is ", cache.blocks_per_seq, ", expected >= 0");
  }
  if (max_context_len < 0) fail(what, ": max_context_len is ", max_context_len, ", expected >= 0");
  if (static_cast<int64_t>(max_context_len) >
      static_cast<int64_t>(cache.blocks_per_seq) * cache.block_size) {
    fail(what, ": max_context_len ", max_context_len, " does not fit a block table row of ",
         cache.blocks_per_seq, " blocks of ", cache.block_size, " tokens");
  }
}

void check_decode_pointers(const char* what, const void* queries, const PagedCache& cache,
                           const int32_t* context_lens, const void* out) {
  if (queries == nullptr || cache.key_cache == nullptr || cache.value_cache == nullptr ||
      cache.block_tables == nullptr || context_lens == nullptr || out == nullptr) {
    fail(what,
         ": queries, key_cache, value_cache, block_tables, context_lens and out must be "
         "device pointers");
  }
}

int64_t blocks_per_partition_index(int num_seqs, const HeadShape& heads) {
  return static_cast<int64_t>(num_seqs) * heads.num_kv_heads *
         head_chunks(heads.num_heads / heads.num_kv_heads);
}

// The most partitions the automatic choice may cut max_context_len into (the workspace is sized
// for it): partitions of at least kSmallestAutoPartition tokens, and no more than kAutoMaxWaves
// waves of blocks on the largest device this targets.
int auto_partition_limit(int num_seqs, int max_context_len, const HeadShape& heads) {
  const int64_t by_size = ceil_div(max_context_len, kSmallestAutoPartition);
  const int64_t by_waves =
      ceil_div(kAutoMaxWaves * kAutoMaxResidentBlocks,
               std::max<int64_t>(1, blocks_per_partition_index(num_seqs, heads)));
  return static_cast<int>(std::max<int64_t>(1, std::min(by_size, by_waves)));
}

// The automatic partition size. Blocks of equal work run in waves of `resident` blocks (all the
// device holds at once), so a launch takes about
//   ceil(blocks / resident) * (steps per block + kAutoOverheadSteps)
// and a partition count that leaves the last wave half empty wastes half a wave: for 16 sequences
// of 8 KV heads at 2048 tokens on an H100 (3 blocks per SM, 396 resident), 256-token partitions
// make 1024 blocks, 2.6 waves rounded up to 3, while 688-token ones make 384 blocks, one wave.
// For a given number of waves w the best size is the smallest whose blocks still fit in w waves,
// so only kAutoMaxWaves candidates need a look; sizes are whole cache blocks, at least
// kSmallestAutoPartition tokens, and cut the context into at most `limit` partitions.
int choose_partition_size(int max_context_len, int block_size, int64_t blocks_per_index,
                          int64_t resident, int tokens_per_step, int limit) {
  const int64_t context = std::max(max_context_len, 1);
  const int64_t smallest = ceil_div(kSmallestAutoPartition, block_size) * block_size;
  int64_t best_size = 0, best_cost = INT64_MAX;
  for (int waves = 1; waves <= kAutoMaxWaves; ++waves) {
    const int64_t partitions_wanted =
        std::clamp<int64_t>(waves * resident / std::max<int64_t>(1, blocks_per_index), 1, limit);
    const int64_t size =
        std::max(smallest, ceil_div(ceil_div(context, partitions_wanted), block_size) * block_size);
    const int64_t partitions = ceil_div(context, size);
    const int64_t cost = ceil_div(blocks_per_index * partitions, std::max<int64_t>(1, resident)) *
                         (ceil_div(size, tokens_per_step) + kAutoOverheadSteps);
    if (cost < best_cost) {
      best_cost = cost;
      best_size = size;
    }
  }
  return static_cast<int>(best_size);
}

int64_t split_workspace_bytes(int num_seqs, int max_partitions, const HeadShape& heads) {
  return static_cast<int64_t>(num_seqs) * heads.num_heads * max_partitions * (heads.head_dim + 2) *
         static_cast<int64_t>(sizeof(float));
}

// Calls f(std::integral_constant<int, kHeadDim>) with 64, 128 or 0 (the generic path).
template <typename F>
void dispatch_head_dim(int head_dim, F&& f) {
  if (head_dim == 64) {
    f(std::integral_constant<int, 64>{});
  } else if (head_dim == 128) {
    f(std::integral_constant<int, 128>{});
  } else {
    f(std::integral_constant<int, 0>{});
  }
}

// Calls f(std::integral_constant<int, kHeads>) with heads_per_block(group).
template <typename F>
void dispatch_heads_per_block(int group, F&& f) {
  switch (heads_per_block(group)) {
    case 1:
      f(std::integral_constant<int, 1>{});
      return;
    case 2:
      f(std::integral_constant<int, 2>{});
      return;
    case 4:
      f(std::integral_constant<int, 4>{});
      return;
    default:
      f(std::integral_constant<int, kMaxHeadsPerBlock>{});
  }
}

}  // namespace

// seq_rows and stream are used only by the launch, inside the lab region: [[maybe_unused]] keeps
// the student tree (where the region is a stub) free of warnings.
void paged_attention_decode(DType dtype, const void* queries, const PagedCache& cache,
                            const int32_t* context_lens, [[maybe_unused]] const int32_t* seq_rows,
                            int num_seqs, int max_context_len, const HeadShape& heads, void* out,
                            [[maybe_unused]] cudaStream_t stream) {
  const char* what = "paged_attention_decode";
  check_decode_arguments(what, dtype, cache, num_seqs, max_context_len, heads);
  if (num_seqs == 0) return;
  check_decode_pointers(what, queries, cache, context_lens, out);
  const int group = heads.num_heads / heads.num_kv_heads;
  const int64_t shared_bytes =
      v1_shared_floats(group, heads.head_dim) * static_cast<int64_t>(sizeof(float));
  const int shared_limit = max_shared_memory_per_block();
  if (shared_bytes > shared_limit) {
    fail(what, ": a group of ", group, " query heads of head_dim ", heads.head_dim, " needs ",
         shared_bytes, " bytes of shared memory, the device allows ", shared_limit);
  }

  // BEGIN LAB(lab04-paged-decode-cuda)
  dispatch_float_type(dtype, what, [&](auto element) {
    using T = decltype(element);
    if (shared_bytes > kDefaultSharedMemory) {
      SERVELAB_CUDA_CHECK(cudaFuncSetAttribute(paged_decode_v1_kernel<T>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(shared_bytes)));
    }
    const dim3 grid(static_cast<unsigned>(num_seqs), static_cast<unsigned>(heads.num_kv_heads));
    paged_decode_v1_kernel<T><<<grid, kV1Threads, shared_bytes, stream>>>(
        static_cast<const T*>(queries), static_cast<const T*>(cache.key_cache),
        static_cast<const T*>(cache.value_cache), cache.block_tables, cache.blocks_per_seq,
        cache.block_size, context_lens, seq_rows, max_context_len, heads.num_heads,
        heads.num_kv_heads, heads.head_dim, heads.scale, static_cast<T*>(out));
  });
  SERVELAB_CHECK_LAUNCH(what);
  // END LAB
}

int64_t paged_attention_split_workspace(int num_seqs, int max_context_len, int partition_size,
                                        const HeadShape& heads) {
  const char* what = "paged_attention_split_workspace";
  if (num_seqs < 0 || max_context_len < 0 || partition_size < 0) {
    fail(what, ": num_seqs (", num_seqs, "), max_context_len (", max_context_len,
         ") and partition_size (", partition_size, ") must not be negative");
  }
  if (heads.num_heads <= 0 || heads.num_kv_heads <= 0 || heads.head_dim <= 0 ||
      heads.num_heads % heads.num_kv_heads != 0) {
    fail(what, ": invalid heads: ", heads.num_heads, " query heads, ", heads.num_kv_heads,
         " KV heads, head_dim ", heads.head_dim);
  }
  // With partition_size 0 the launcher picks a size on the device it runs on; it never cuts the
  // context into more than auto_partition_limit partitions, so that many fit in any case.
  const int max_partitions =
      partition_size > 0
          ? static_cast<int>(std::max<int64_t>(1, ceil_div(max_context_len, partition_size)))
          : auto_partition_limit(num_seqs, max_context_len, heads);
  return split_workspace_bytes(num_seqs, max_partitions, heads);
}

void paged_attention_decode_split(DType dtype, const void* queries, const PagedCache& cache,
                                  const int32_t* context_lens, const int32_t* seq_rows,
                                  int num_seqs, int max_context_len, int partition_size,
                                  const HeadShape& heads, void* workspace, int64_t workspace_bytes,
                                  void* out, cudaStream_t stream) {
  const char* what = "paged_attention_decode_split";
  check_decode_arguments(what, dtype, cache, num_seqs, max_context_len, heads);
  if (partition_size < 0) fail(what, ": partition_size is ", partition_size, ", expected >= 0");
  if (partition_size > 0 && partition_size % cache.block_size != 0) {
    fail(what, ": partition_size ", partition_size, " is not a multiple of the block size ",
         cache.block_size, " (a partition must start at a block boundary)");
  }
  if (num_seqs > 65535) fail(what, ": num_seqs is ", num_seqs, ", at most 65535 fit the grid");
  const int group = heads.num_heads / heads.num_kv_heads;
  const int chunks = head_chunks(group);
  if (static_cast<int64_t>(heads.num_kv_heads) * chunks > 65535) {
    fail(what, ": ", heads.num_kv_heads, " KV heads in ", chunks, " chunks do not fit the grid");
  }
  // The workspace is checked against what paged_attention_split_workspace promised for these
  // arguments (for partition_size 0, the most the automatic choice may use), before the device.
  const int64_t needed =
      paged_attention_split_workspace(num_seqs, max_context_len, partition_size, heads);
  if (workspace_bytes < needed) {
    fail(what, ": the workspace has ", workspace_bytes, " bytes, ", needed,
         " are needed (paged_attention_split_workspace gives the size)");
  }
  if (num_seqs == 0) return;
  check_decode_pointers(what, queries, cache, context_lens, out);
  if (workspace == nullptr) fail(what, ": workspace must be a device pointer");
  if (!aligned_16(queries) || !aligned_16(cache.key_cache) || !aligned_16(cache.value_cache)) {
    fail(what, ": queries, key_cache and value_cache must be 16-byte aligned (16-byte loads)");
  }

  SplitParams params{};
  params.queries = queries;
  params.key_cache = cache.key_cache;
  params.value_cache = cache.value_cache;
  params.block_tables = cache.block_tables;
  params.context_lens = context_lens;
  params.seq_rows = seq_rows;
  params.out = out;
  params.blocks_per_seq = cache.blocks_per_seq;
  params.block_size = cache.block_size;
  params.max_context_len = max_context_len;
  params.num_heads = heads.num_heads;
  params.num_kv_heads = heads.num_kv_heads;
  params.head_dim = heads.head_dim;
  params.group = group;
  params.head_chunks = chunks;
  params.scale_log2 = heads.scale * kLog2E;

  int device = 0, shared_limit = 0, sm_count = 0;
  SERVELAB_CUDA_CHECK(cudaGetDevice(&device));
  SERVELAB_CUDA_CHECK(
      cudaDeviceGetAttribute(&shared_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  SERVELAB_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
  dispatch_float_type(dtype, what, [&](auto element) {
    using T = decltype(element);
    dispatch_head_dim(heads.head_dim, [&](auto head_dim_constant) {
      constexpr int kHeadDim = decltype(head_dim_constant)::value;
      dispatch_heads_per_block(group, [&](auto heads_constant) {
        constexpr int kHeads = decltype(heads_constant)::value;
        auto* kernel = paged_decode_split_kernel<T, kHeadDim, kHeads>;
        if (partition_size == 0) {
          // How many blocks the device holds at once, for the wave count (the shared memory of a
          // 512-token partition stands in for the final size's: registers bind first).
          int blocks_per_sm = 0;
          SERVELAB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
              &blocks_per_sm, kernel, kSplitThreads,
              split_shared_bytes<T, kHeadDim, kHeads>(heads.head_dim,
                                                      ceil_div(512, cache.block_size))));
          constexpr int kTokensPerStep = RowLayout<T, kHeadDim>::kTeams * split_unroll(kHeads);
          partition_size = choose_partition_size(
              max_context_len, cache.block_size, blocks_per_partition_index(num_seqs, heads),
              static_cast<int64_t>(std::max(1, blocks_per_sm)) * sm_count, kTokensPerStep,
              auto_partition_limit(num_seqs, max_context_len, heads));
        }
        params.partition_size = partition_size;
        params.max_partitions =
            static_cast<int>(std::max<int64_t>(1, ceil_div(max_context_len, partition_size)));
        const int64_t partial_entries =
            static_cast<int64_t>(num_seqs) * heads.num_heads * params.max_partitions;
        params.partial_out = static_cast<float*>(workspace);
        params.partial_max = params.partial_out + partial_entries * heads.head_dim;
        params.partial_sum = params.partial_max + partial_entries;

        const int64_t shared_bytes = split_shared_bytes<T, kHeadDim, kHeads>(
            heads.head_dim, partition_size / cache.block_size);
        if (shared_bytes > shared_limit) {
          fail(what, ": partition_size ", partition_size, " with block size ", cache.block_size,
               " and ", kHeads, " heads per block needs ", shared_bytes,
               " bytes of shared memory, the device allows ", shared_limit,
               "; use a smaller partition");
        }
        if (shared_bytes > kDefaultSharedMemory) {
          SERVELAB_CUDA_CHECK(cudaFuncSetAttribute(
              kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared_bytes)));
        }
        const dim3 grid(static_cast<unsigned>(params.max_partitions),
                        static_cast<unsigned>(heads.num_kv_heads * chunks),
                        static_cast<unsigned>(num_seqs));
        kernel<<<grid, kSplitThreads, shared_bytes, stream>>>(params);
      });
    });
    SERVELAB_CHECK_LAUNCH("paged_attention_decode_split (partitions)");
    if (params.max_partitions > 1) {
      const dim3 grid(static_cast<unsigned>(heads.num_heads), static_cast<unsigned>(num_seqs));
      paged_decode_reduce_kernel<T><<<grid, kReduceThreads, 0, stream>>>(params);
      SERVELAB_CHECK_LAUNCH("paged_attention_decode_split (reduce)");
    }
  });
}

}  // namespace servelab::kernels
