// rms_norm: out = rms_norm(x) * weight, optionally fused with the residual add before it
// (residual += x; out = rms_norm(residual) * weight), one row of `hidden` values at a time:
//   out[j] = round(weight[j] * round(v[j] / sqrt(mean(v^2) + eps)))
// where v is x (or the updated residual, as stored) and round() rounds to the dtype. The inner
// rounding is Hugging Face's LlamaRMSNorm, `weight * hidden.to(input_dtype)`: it normalises in
// fp32, rounds, then multiplies by the weight in the dtype. The sum of squares is fp32.
//
// Design: two passes over the row by the same threads, with the same element -> thread mapping.
// Pass 1 reads x (adds it into the residual and stores the rounded sum when fused) and
// accumulates the sum of squares; a reduction gives every thread the row's 1/rms; pass 2 reads
// the row again (x, or the residual just written) with the weight and stores out. Because each
// element is read and written by one thread only, out may alias x (and the residual) safely. The
// second read of the row comes from L1/L2, not DRAM: the kernel moves 2 (3 fused) row-sized
// streams per row plus the weight, which stays in L2.
// Small rows (up to 128 vectors: 1024 bf16 or 512 fp32 values, the embedded model's 320) use one
// warp per row, four rows per block, and a shuffle-only reduction; larger rows (Llama-8B's 4096)
// use one block per row with a shared-memory reduction. Both access the row in 16-byte vectors
// when hidden is a multiple of 16 bytes and every pointer is aligned, else element by element.
//
// Ladder:
//   v1  one thread per row: a serial sum of squares, uncoalesced (each thread walks its own row).
//   v2  one block per row, scalar loads, block reduction: coalesced.
//   v3  (this) 16-byte vectors; a warp per row for small hidden sizes (a 320-wide row leaves most
//       of a 256-thread block idle), residual add fused in (saves a kernel and a round trip of
//       the residual stream through DRAM).
// measured: not measured separately yet; see
//   benchmarks/results/2026-11-22-h100-80gb-hbm3.md for whole-step numbers
#include <cstdint>

#include "kernels/cuda_utils.cuh"
#include "kernels/kernels.h"
#include "kernels/memory_bound.cuh"

namespace servelab::kernels {
namespace {

constexpr int kRowsPerWarpBlock = 4;         // warp-per-row blocks: 4 warps, 4 rows
constexpr int64_t kMaxWarpRowVectors = 128;  // up to 4 vectors per lane
constexpr int kMaxBlockThreads = 1024;

/// Sum over the block, returned to every thread. blockDim.x is a multiple of 32; called once per
/// kernel, so the shared array needs no second barrier before reuse.
__device__ __forceinline__ float block_sum(float value) {
  __shared__ float warp_sums[32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  value = warp_sum(value);
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();
  // Every warp adds up the per-warp sums itself: no broadcast step needed.
  value = lane < static_cast<int>(blockDim.x / 32) ? warp_sums[lane] : 0.0f;
  return warp_sum(value);
}

/// Normalises one row per warp (kWarpPerRow) or one row per block, N elements per access
/// (hidden % N == 0 and every pointer aligned to N * sizeof(T), checked by the launcher).
/// x, residual and out carry no __restrict__: out may alias x.
/// @param x [rows, hidden]   @param residual [rows, hidden] or null   @param weight [hidden]
/// @param out [rows, hidden]
template <typename T, int N, bool kWarpPerRow>
__global__ void rms_norm_kernel(const T* x, T* residual, const T* __restrict__ weight, float eps,
                                int64_t rows, int64_t hidden, T* out) {
  int64_t row;
  int lane, lanes;
  if constexpr (kWarpPerRow) {
    row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
    lane = threadIdx.x % 32;
    lanes = 32;
    if (row >= rows) return;  // the whole warp leaves together, before its shuffles
  } else {
    row = blockIdx.x;
    lane = threadIdx.x;
    lanes = blockDim.x;
  }
  const int64_t vectors = hidden / N;
  const T* x_row = x + row * hidden;
  T* residual_row = residual != nullptr ? residual + row * hidden : nullptr;
  T* out_row = out + row * hidden;

  // Pass 1: (residual += x), sum of squares of the values the norm sees, as stored.
  float sum_squares = 0.0f;
  for (int64_t v = lane; v < vectors; v += lanes) {
    AlignedVector<T, N> values = load_vector<N>(x_row + v * N);
    if (residual_row != nullptr) {
      const AlignedVector<T, N> previous = load_vector<N>(residual_row + v * N);
#pragma unroll
      for (int j = 0; j < N; ++j) {
        values.values[j] = from_float<T>(to_float(previous.values[j]) + to_float(values.values[j]));
      }
      store_vector<N>(residual_row + v * N, values);
    }
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float value = to_float(values.values[j]);
      sum_squares += value * value;
    }
  }
  if constexpr (kWarpPerRow) {
    sum_squares = warp_sum(sum_squares);
  } else {
    sum_squares = block_sum(sum_squares);
  }
  const float inverse_rms = rsqrtf(sum_squares / static_cast<float>(hidden) + eps);

  // Pass 2: the same elements by the same threads, so writing out over x is safe.
  const T* source_row = residual_row != nullptr ? residual_row : x_row;
  for (int64_t v = lane; v < vectors; v += lanes) {
    const AlignedVector<T, N> values = load_vector<N>(source_row + v * N);
    const AlignedVector<T, N> gains = load_vector<N>(weight + v * N);
    AlignedVector<T, N> result;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float normalised = round_to<T>(to_float(values.values[j]) * inverse_rms);
      result.values[j] = from_float<T>(to_float(gains.values[j]) * normalised);
    }
    store_vector<N>(out_row + v * N, result);
  }
}

template <typename T, int N>
void launch_rms_norm(const void* x, void* residual, const void* weight, float eps, int64_t rows,
                     int64_t hidden, void* out, cudaStream_t stream) {
  const auto* x_typed = static_cast<const T*>(x);
  auto* residual_typed = static_cast<T*>(residual);
  const auto* weight_typed = static_cast<const T*>(weight);
  auto* out_typed = static_cast<T*>(out);
  const int64_t vectors = hidden / N;
  if (vectors <= kMaxWarpRowVectors) {
    const int64_t blocks = ceil_div(rows, kRowsPerWarpBlock);
    rms_norm_kernel<T, N, true>
        <<<static_cast<unsigned int>(blocks), 32 * kRowsPerWarpBlock, 0, stream>>>(
            x_typed, residual_typed, weight_typed, eps, rows, hidden, out_typed);
    SERVELAB_CHECK_LAUNCH("rms_norm_kernel (warp per row)");
  } else {
    const int threads = warp_multiple(vectors, kMaxBlockThreads);
    rms_norm_kernel<T, N, false><<<static_cast<unsigned int>(rows), threads, 0, stream>>>(
        x_typed, residual_typed, weight_typed, eps, rows, hidden, out_typed);
    SERVELAB_CHECK_LAUNCH("rms_norm_kernel (block per row)");
  }
}

}  // namespace

void rms_norm(DType dtype, const void* x, void* residual, const void* weight, float eps,
              int64_t rows, int64_t hidden, void* out, cudaStream_t stream) {
  require_float_dtype(dtype, "rms_norm");
  require_count(rows, "rms_norm", "rows", kMaxGridX);
  require_count(hidden, "rms_norm", "hidden");
  if (rows == 0) return;
  if (hidden == 0) fail("rms_norm: hidden is 0 for ", rows, " rows (the norm of nothing)");
  require_pointer(x, "rms_norm", "x");
  require_pointer(weight, "rms_norm", "weight");
  require_pointer(out, "rms_norm", "out");

  dispatch_float_type(dtype, "rms_norm", [&](auto zero) {
    using T = decltype(zero);
    constexpr int kWidth = kVectorWidth<T>;
    // Vectors need every row start aligned: hidden a multiple of the width, bases 16-byte aligned.
    const bool vectorised = hidden % kWidth == 0 && is_aligned(x, 16) && is_aligned(residual, 16) &&
                            is_aligned(weight, 16) && is_aligned(out, 16);
    if (vectorised) {
      launch_rms_norm<T, kWidth>(x, residual, weight, eps, rows, hidden, out, stream);
    } else {
      launch_rms_norm<T, 1>(x, residual, weight, eps, rows, hidden, out, stream);
    }
  });
}

}  // namespace servelab::kernels
