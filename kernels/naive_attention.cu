// Naive attention: the static-batching server's attention, over one contiguous KV cache per
// sequence. write_contiguous_kv appends each sequence's new keys and values to its cache;
// naive_attention then computes causal softmax(q·kᵀ·scale)·v for every new token (prefill and
// decode alike) with grouped-query heads: query head h reads KV head h / (num_heads/num_kv_heads).
//
// Design (the teaching version, written to be read next to CpuBackend::attention):
//   - One thread block per (packed query token, query head). The block finds its sequence by a
//     binary search of query_start (every thread runs it; the loads are broadcasts), so a batch
//     of very different lengths wastes no blocks.
//   - Scores for every visible position live in dynamic shared memory (max_context_len floats),
//     which is what makes this version "naive": a context longer than shared memory (about 56K
//     tokens on an H100) is refused rather than tiled, and K and V are each read once per query
//     head, not once per KV head.
//   - Scores: one warp per key position, its lanes splitting the dot product over head_dim, so a
//     key row is one coalesced load. Softmax: block-wide max, exp, block-wide sum. Output: one
//     thread per output dimension, so a value row is again read by consecutive threads.
//
// Ladder:
//   v1 (this file) scores in shared memory, one block per (token, head), coalesced scalar loads.
//   The faster versions are other files: PagedAttention decode (paged_attention.cu: one block per
//   KV head reads each key once for its whole query group, online softmax, any length) and the
//   tiled prefill (prefill_attention.cu).
// measured: not measured separately yet; see
//   benchmarks/results/2026-11-22-h100-80gb-hbm3.md for whole-step numbers
#include <cstdint>

#include "kernels/cuda_utils.cuh"
#include "kernels/kernels.h"

namespace servelab::kernels {
namespace {

constexpr int kNaiveThreads = 128;
constexpr int kNaiveWarps = kNaiveThreads / 32;
constexpr int kDefaultSharedMemory = 48 * 1024;  // without opting in, a block gets this much

// The sequence that owns packed row `token`: the last s with query_start[s] <= token. (An empty
// sequence shares its start with the next one; the search then lands on the later, non-empty
// one, whose range actually holds the row.)
__device__ int find_sequence(const int32_t* query_start, int num_seqs, int64_t token) {
  int low = 0, high = num_seqs - 1;
  while (low < high) {
    const int middle = (low + high + 1) / 2;
    if (query_start[middle] <= token) {
      low = middle;
    } else {
      high = middle - 1;
    }
  }
  return low;
}

// Block-wide max and sum of one value per thread (blockDim.x == kNaiveThreads). Every thread gets
// the result. scratch: kNaiveWarps floats of shared memory, free again on return.
__device__ float block_max(float value, float* scratch) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  value = warp_max(value);
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  value = warp_max(lane < kNaiveWarps ? scratch[lane] : -INFINITY);
  __syncthreads();
  return value;
}

__device__ float block_sum(float value, float* scratch) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  value = warp_sum(value);
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  value = warp_sum(lane < kNaiveWarps ? scratch[lane] : 0.0f);
  __syncthreads();
  return value;
}

// Grid: one block per packed token. Copies its key and value rows ([row_elements] each) to
// position context_lens[s] - new_s + i of its sequence's caches.
template <typename T>
__global__ void __launch_bounds__(kNaiveThreads)
    write_contiguous_kv_kernel(const T* __restrict__ keys, const T* __restrict__ values,
                               T* const* __restrict__ key_caches,
                               T* const* __restrict__ value_caches,
                               const int32_t* __restrict__ query_start,
                               const int32_t* __restrict__ context_lens, int num_seqs,
                               int64_t row_elements) {
  const int64_t token = blockIdx.x;
  const int seq = find_sequence(query_start, num_seqs, token);
  const int first_row = query_start[seq], end_row = query_start[seq + 1];
  if (token < first_row || token >= end_row) return;  // a row no sequence owns
  const int64_t position = context_lens[seq] - (end_row - first_row) + (token - first_row);
  if (position < 0) return;  // context_lens shorter than the new tokens: nowhere to write
  const T* key_row = keys + token * row_elements;
  const T* value_row = values + token * row_elements;
  T* key_destination = key_caches[seq] + position * row_elements;
  T* value_destination = value_caches[seq] + position * row_elements;
  for (int64_t i = threadIdx.x; i < row_elements; i += blockDim.x) {
    key_destination[i] = key_row[i];
    value_destination[i] = value_row[i];
  }
}

// Grid: (packed token, query head). Dynamic shared memory: (head_dim + max_context_len +
// kNaiveWarps) floats.
template <typename T>
__global__ void __launch_bounds__(kNaiveThreads)
    naive_attention_kernel(const T* __restrict__ queries, const T* const* __restrict__ key_caches,
                           const T* const* __restrict__ value_caches,
                           const int32_t* __restrict__ query_start,
                           const int32_t* __restrict__ context_lens, int num_seqs,
                           int max_context_len, int num_heads, int num_kv_heads, int head_dim,
                           float scale, T* __restrict__ out) {
  const int64_t token = blockIdx.x;
  const int head = blockIdx.y;
  const int kv_head = head / (num_heads / num_kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  const int seq = find_sequence(query_start, num_seqs, token);
  const int first_row = query_start[seq], end_row = query_start[seq + 1];
  if (token < first_row || token >= end_row) return;  // a row no sequence owns
  // Causal: the new token at position p sees positions [0, p]. max_context_len bounds the
  // shared scores array, so a length beyond it (a broken contract) is cut, never overrun.
  const int position =
      context_lens[seq] - (end_row - first_row) + static_cast<int>(token - first_row);
  const int visible = min(position + 1, max_context_len);

  T* out_row = out + (token * num_heads + head) * head_dim;
  if (visible <= 0) {  // nothing to attend to: a zero row rather than 0/0
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) out_row[d] = from_float<T>(0.0f);
    return;
  }

  extern __shared__ float shared[];
  float* query = shared;                      // [head_dim], already multiplied by scale
  float* scores = query + head_dim;           // [max_context_len]
  float* scratch = scores + max_context_len;  // [kNaiveWarps], for the block reductions

  const T* query_row = queries + (token * num_heads + head) * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    query[d] = to_float(query_row[d]) * scale;
  }
  __syncthreads();

  // Row p of a cache is [num_kv_heads, head_dim]; this head reads its kv_head slice.
  const int64_t position_stride = static_cast<int64_t>(num_kv_heads) * head_dim;
  const T* keys = key_caches[seq] + kv_head * head_dim;
  const T* values = value_caches[seq] + kv_head * head_dim;

  // 1. scores[p] = q · k[p], one warp per position (the loop bound is the same for all lanes, so
  //    every lane reaches warp_sum).
  for (int p = warp; p < visible; p += kNaiveWarps) {
    const T* key = keys + p * position_stride;
    float dot = 0.0f;
    for (int d = lane; d < head_dim; d += 32) dot += query[d] * to_float(key[d]);
    dot = warp_sum(dot);
    if (lane == 0) scores[p] = dot;
  }
  __syncthreads();

  // 2. Softmax: subtract the maximum so that exp never overflows.
  float local_max = -INFINITY;
  for (int p = threadIdx.x; p < visible; p += blockDim.x) local_max = fmaxf(local_max, scores[p]);
  const float max_score = block_max(local_max, scratch);
  float local_sum = 0.0f;
  for (int p = threadIdx.x; p < visible; p += blockDim.x) {
    const float weight = __expf(scores[p] - max_score);
    scores[p] = weight;
    local_sum += weight;
  }
  // block_sum's barrier also publishes the weights written just above.
  const float inverse_total = 1.0f / block_sum(local_sum, scratch);

  // 3. out[d] = Σ_p weight[p] · v[p][d], one thread per dimension.
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float sum = 0.0f;
    for (int p = 0; p < visible; ++p) sum += scores[p] * to_float(values[p * position_stride + d]);
    out_row[d] = from_float<T>(sum * inverse_total);
  }
}

void require_float_dtype(DType dtype, const char* what) {
  if (dtype != DType::kF32 && dtype != DType::kF16 && dtype != DType::kBF16) {
    fail(what, ": dtype must be F32, F16 or BF16, got ", dtype_name(dtype));
  }
}

void check_batch_and_heads(const PackedBatch& batch, const HeadShape& heads, const char* what) {
  if (batch.num_seqs < 0) fail(what, ": num_seqs is ", batch.num_seqs, ", expected >= 0");
  if (batch.num_tokens < 0 || batch.num_tokens > INT32_MAX) {
    fail(what, ": num_tokens is ", batch.num_tokens, ", expected 0 to 2^31 - 1");
  }
  if (heads.num_heads <= 0 || heads.num_kv_heads <= 0 || heads.head_dim <= 0) {
    fail(what, ": num_heads (", heads.num_heads, "), num_kv_heads (", heads.num_kv_heads,
         ") and head_dim (", heads.head_dim, ") must be positive");
  }
  if (heads.num_heads % heads.num_kv_heads != 0) {
    fail(what, ": ", heads.num_heads, " query heads cannot be shared evenly by ",
         heads.num_kv_heads, " KV heads (num_heads % num_kv_heads must be 0)");
  }
}

}  // namespace

void write_contiguous_kv(DType dtype, const void* keys, const void* values, void* const* key_caches,
                         void* const* value_caches, const PackedBatch& batch,
                         const HeadShape& heads, cudaStream_t stream) {
  require_float_dtype(dtype, "write_contiguous_kv");
  check_batch_and_heads(batch, heads, "write_contiguous_kv");
  if (batch.num_seqs == 0 || batch.num_tokens == 0) return;
  if (keys == nullptr || values == nullptr || key_caches == nullptr || value_caches == nullptr ||
      batch.query_start == nullptr || batch.context_lens == nullptr) {
    fail(
        "write_contiguous_kv: keys, values, the cache pointer arrays, query_start and "
        "context_lens must be device pointers");
  }
  const int64_t row_elements = static_cast<int64_t>(heads.num_kv_heads) * heads.head_dim;
  dispatch_float_type(dtype, "write_contiguous_kv", [&](auto element) {
    using T = decltype(element);
    write_contiguous_kv_kernel<T>
        <<<static_cast<unsigned>(batch.num_tokens), kNaiveThreads, 0, stream>>>(
            static_cast<const T*>(keys), static_cast<const T*>(values),
            reinterpret_cast<T* const*>(key_caches), reinterpret_cast<T* const*>(value_caches),
            batch.query_start, batch.context_lens, batch.num_seqs, row_elements);
  });
  SERVELAB_CHECK_LAUNCH("write_contiguous_kv");
}

void naive_attention(DType dtype, const void* queries, const void* const* key_caches,
                     const void* const* value_caches, const PackedBatch& batch,
                     const HeadShape& heads, void* out, cudaStream_t stream) {
  require_float_dtype(dtype, "naive_attention");
  check_batch_and_heads(batch, heads, "naive_attention");
  if (heads.num_heads > 65535) {
    fail("naive_attention: num_heads is ", heads.num_heads, ", at most 65535 fit the grid");
  }
  if (batch.max_context_len < 0) {
    fail("naive_attention: max_context_len is ", batch.max_context_len, ", expected >= 0");
  }
  if (batch.num_seqs == 0 || batch.num_tokens == 0) return;
  if (queries == nullptr || key_caches == nullptr || value_caches == nullptr || out == nullptr ||
      batch.query_start == nullptr || batch.context_lens == nullptr) {
    fail(
        "naive_attention: queries, the cache pointer arrays, out, query_start and context_lens "
        "must be device pointers");
  }

  // Every visible position's score sits in shared memory: refuse what does not fit.
  const int64_t shared_bytes =
      (static_cast<int64_t>(heads.head_dim) + batch.max_context_len + kNaiveWarps) *
      static_cast<int64_t>(sizeof(float));
  int device = 0, shared_limit = 0;
  SERVELAB_CUDA_CHECK(cudaGetDevice(&device));
  SERVELAB_CUDA_CHECK(
      cudaDeviceGetAttribute(&shared_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (shared_bytes > shared_limit) {
    fail("naive_attention: max_context_len ", batch.max_context_len, " needs ", shared_bytes,
         " bytes of shared memory for its scores, the device allows ", shared_limit,
         " per block; use paged attention for contexts this long");
  }

  dispatch_float_type(dtype, "naive_attention", [&](auto element) {
    using T = decltype(element);
    if (shared_bytes > kDefaultSharedMemory) {
      SERVELAB_CUDA_CHECK(cudaFuncSetAttribute(naive_attention_kernel<T>,
                                               cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(shared_bytes)));
    }
    const dim3 grid(static_cast<unsigned>(batch.num_tokens),
                    static_cast<unsigned>(heads.num_heads));
    naive_attention_kernel<T><<<grid, kNaiveThreads, shared_bytes, stream>>>(
        static_cast<const T*>(queries), reinterpret_cast<const T* const*>(key_caches),
        reinterpret_cast<const T* const*>(value_caches), batch.query_start, batch.context_lens,
        batch.num_seqs, batch.max_context_len, heads.num_heads, heads.num_kv_heads, heads.head_dim,
        heads.scale, static_cast<T*>(out));
  });
  SERVELAB_CHECK_LAUNCH("naive_attention");
}

}  // namespace servelab::kernels
