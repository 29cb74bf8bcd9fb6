// argmax: ids[r] = the index of the largest logit of row r, the first one on ties (as
// torch.argmax), for greedy sampling. fill_normal: normal(0, std) values from a counter-based
// generator, for benchmarks' random weights.
//
// argmax compares in fp32 with a total order, so that the answer does not depend on how the work
// is split: a larger value wins; equal values go to the lower index; NaN counts as larger than
// every number, so a row holding a NaN returns the index of its first NaN (again as torch.argmax
// does). That makes a numerical blow-up visible as a strange token instead of silently picking
// among the finite logits. -0.0 and +0.0 are equal. A row of -inf returns 0.
// Design: one block of 1024 threads per row. Each thread scans a strided slice of the row in
// 16-byte vectors (8 bf16 logits) keeping its best (value, index), then the block reduces the
// pairs: warp shuffles, one pair per warp through shared memory, a last warp shuffle.
//
// fill_normal: element pair p gets two normals from one Box-Muller transform of two 24-bit
// uniforms cut from splitmix64(key + p * golden), key = splitmix64(seed). A value therefore
// depends only on (seed, index): the same whatever the grid, and a shorter fill is a prefix of a
// longer one. Tails are capped at about 5.8 std (24-bit uniforms), plenty for random weights. The
// fast-math __logf/__sinf/__cosf are accurate here (arguments in (0, 1] and [0, 2 pi)).
//
// Ladder (argmax):
//   v1  one thread per row: serial scan, a single SM for a batch of one.
//   v2  one block per row, scalar loads, shared-memory tree reduction of (value, index).
//   v3  (this) 16-byte vectors, warp-shuffle reduction, NaN and tie rules as a total order.
// measured: not measured separately yet; see
//   benchmarks/results/2026-11-22-h100-80gb-hbm3.md for whole-step numbers
#include <cstdint>
#include <limits>

#include "kernels/cuda_utils.cuh"
#include "kernels/kernels.h"
#include "kernels/memory_bound.cuh"

namespace servelab::kernels {
namespace {

constexpr int kArgmaxThreads = 1024;

/// NaN test on the bits, independent of any fast-math assumption.
__device__ __forceinline__ bool is_nan(float value) {
  return (__float_as_uint(value) & 0x7fffffffu) > 0x7f800000u;
}

/// Whether (value, index) ranks above (other_value, other_index): NaN above every number, then
/// the larger value, then the lower index. A strict total order over distinct indices.
__device__ __forceinline__ bool ranks_above(float value, int32_t index, float other_value,
                                            int32_t other_index) {
  const bool nan = is_nan(value), other_nan = is_nan(other_value);
  if (nan != other_nan) return nan;
  if (!nan && value != other_value) return value > other_value;
  return index < other_index;
}

/// The best (value, index) of the warp, in every lane.
__device__ __forceinline__ void warp_best(float& value, int32_t& index) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    const float other_value = __shfl_xor_sync(0xffffffffu, value, offset);
    const int32_t other_index = __shfl_xor_sync(0xffffffffu, index, offset);
    if (ranks_above(other_value, other_index, value, index)) {
      value = other_value;
      index = other_index;
    }
  }
}

/// One block per row, N logits per access (vocab % N == 0 and logits aligned when N > 1).
/// @param logits [rows, vocab]   @param ids [rows]
template <typename T, int N>
__global__ void __launch_bounds__(kArgmaxThreads)
    argmax_kernel(const T* __restrict__ logits, int64_t vocab, int32_t* __restrict__ ids) {
  const T* row = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  // Starts below every element: -inf with an index past any real one.
  float best_value = -std::numeric_limits<float>::infinity();
  int32_t best_index = std::numeric_limits<int32_t>::max();
  const int64_t vectors = vocab / N;
  for (int64_t v = threadIdx.x; v < vectors; v += blockDim.x) {
    const AlignedVector<T, N> values = load_vector<N>(row + v * N);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const float value = to_float(values.values[j]);
      const int32_t index = static_cast<int32_t>(v * N + j);
      if (ranks_above(value, index, best_value, best_index)) {
        best_value = value;
        best_index = index;
      }
    }
  }
  __shared__ float warp_values[32];
  __shared__ int32_t warp_indices[32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  warp_best(best_value, best_index);
  if (lane == 0) {
    warp_values[warp] = best_value;
    warp_indices[warp] = best_index;
  }
  __syncthreads();
  if (warp == 0) {
    const bool has_warp = lane < static_cast<int>(blockDim.x / 32);
    best_value = has_warp ? warp_values[lane] : -std::numeric_limits<float>::infinity();
    best_index = has_warp ? warp_indices[lane] : std::numeric_limits<int32_t>::max();
    warp_best(best_value, best_index);
    if (lane == 0) ids[blockIdx.x] = best_index;
  }
}

/// splitmix64's output function: a bijective mix of 64 bits (Steele, Lea and Flood 2014).
__host__ __device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

constexpr uint64_t kGoldenGamma = 0x9e3779b97f4a7c15ull;

/// Element pair p = (2p, 2p + 1) from one Box-Muller transform of hash(key, p).
/// @param out [count]
template <typename T>
__global__ void fill_normal_kernel(T* __restrict__ out, int64_t count, float std_dev,
                                   uint64_t key) {
  const int64_t pairs = (count + 1) / 2;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < pairs;
       p += stride) {
    const uint64_t bits = splitmix64(key + static_cast<uint64_t>(p) * kGoldenGamma);
    constexpr float kUnit = 1.0f / 16777216.0f;                       // 2^-24
    const float u1 = static_cast<float>((bits >> 40) + 1) * kUnit;    // (0, 1]: log is finite
    const float u2 = static_cast<float>(bits & 0xffffffull) * kUnit;  // [0, 1)
    // __logf's absolute error (~4e-7) can make log(u1) slightly positive for u1 next to 1: clamp,
    // or sqrtf would return NaN.
    const float radius = std_dev * sqrtf(fmaxf(-2.0f * __logf(u1), 0.0f));
    float sine, cosine;
    __sincosf(6.28318530717958647692f * u2, &sine, &cosine);
    out[2 * p] = from_float<T>(radius * cosine);
    if (2 * p + 1 < count) out[2 * p + 1] = from_float<T>(radius * sine);
  }
}

}  // namespace

void argmax(DType dtype, const void* logits, int64_t rows, int64_t vocab, int32_t* ids,
            cudaStream_t stream) {
  require_float_dtype(dtype, "argmax");
  require_count(rows, "argmax", "rows", kMaxGridX);
  require_count(vocab, "argmax", "vocab", std::numeric_limits<int32_t>::max());
  if (rows == 0) return;
  if (vocab == 0) fail("argmax: vocab is 0 for ", rows, " rows (no index to return)");
  require_pointer(logits, "argmax", "logits");
  require_pointer(ids, "argmax", "ids");
  dispatch_float_type(dtype, "argmax", [&](auto zero) {
    using T = decltype(zero);
    constexpr int kWidth = kVectorWidth<T>;
    const auto* logits_typed = static_cast<const T*>(logits);
    const auto blocks = static_cast<unsigned int>(rows);
    if (vocab % kWidth == 0 && is_aligned(logits, 16)) {
      argmax_kernel<T, kWidth><<<blocks, kArgmaxThreads, 0, stream>>>(logits_typed, vocab, ids);
    } else {
      argmax_kernel<T, 1><<<blocks, kArgmaxThreads, 0, stream>>>(logits_typed, vocab, ids);
    }
    SERVELAB_CHECK_LAUNCH("argmax_kernel");
  });
}

void fill_normal(DType dtype, void* out, int64_t count, float std, uint64_t seed,
                 cudaStream_t stream) {
  require_float_dtype(dtype, "fill_normal");
  require_count(count, "fill_normal", "count");
  if (!(std >= 0.0f) || std == std::numeric_limits<float>::infinity()) {
    fail("fill_normal: std is ", std, ", expected a finite value >= 0");
  }
  if (count == 0) return;
  require_pointer(out, "fill_normal", "out");
  // Mixing the seed first makes nearby seeds (0, 1, 2...) give unrelated streams.
  const uint64_t key = splitmix64(seed);
  dispatch_float_type(dtype, "fill_normal", [&](auto zero) {
    using T = decltype(zero);
    const unsigned int blocks = grid_stride_blocks(ceil_div(count, 2), kElementwiseThreads);
    fill_normal_kernel<T>
        <<<blocks, kElementwiseThreads, 0, stream>>>(static_cast<T*>(out), count, std, key);
  });
  SERVELAB_CHECK_LAUNCH("fill_normal_kernel");
}

}  // namespace servelab::kernels
