// What the memory-bound kernels (embedding, rms_norm, rope, activation, argmax) share: 16-byte
// vector loads and stores, the alignment tests that decide when they are allowed, grid sizing for
// grid-stride loops, and the host-side argument checks that run before anything touches the GPU.
// Nothing here launches a kernel or allocates memory.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "kernels/cuda_utils.cuh"

namespace servelab::kernels {

/// N elements of T moved as one access. With N * sizeof(T) = 16 bytes (4 floats, 8 halves) the
/// compiler emits a single ld.global.v4 / st.global.v4: the widest access a thread can make, and
/// the way a memory-bound kernel gets close to the bandwidth limit with few instructions.
template <typename T, int N>
struct alignas(sizeof(T) * N) AlignedVector {
  T values[N];
};

/// Elements of T in one 16-byte access.
template <typename T>
constexpr int kVectorWidth = static_cast<int>(16 / sizeof(T));

/// Loads N elements from `source`, which must be aligned to N * sizeof(T) bytes.
template <int N, typename T>
__device__ __forceinline__ AlignedVector<T, N> load_vector(const T* source) {
  return *reinterpret_cast<const AlignedVector<T, N>*>(source);
}

/// Stores N elements to `target`, which must be aligned to N * sizeof(T) bytes.
template <int N, typename T>
__device__ __forceinline__ void store_vector(T* target, const AlignedVector<T, N>& vector) {
  *reinterpret_cast<AlignedVector<T, N>*>(target) = vector;
}

/// True when `pointer` is a multiple of `bytes` (null counts as aligned: it is never accessed).
inline bool is_aligned(const void* pointer, size_t bytes) {
  return reinterpret_cast<uintptr_t>(pointer) % bytes == 0;
}

/// Threads per block of the element-wise kernels: 8 warps, enough to keep loads in flight.
constexpr int kElementwiseThreads = 256;

/// Blocks for a grid-stride loop over `work` items, `threads` per block. Capped at a few waves of
/// an H100 (132 SMs x 8 blocks of 256 threads): past that, extra blocks only add scheduling.
inline unsigned int grid_stride_blocks(int64_t work, int threads) {
  constexpr int64_t kMaxBlocks = 8192;
  return static_cast<unsigned int>(std::clamp<int64_t>(ceil_div(work, threads), 1, kMaxBlocks));
}

/// `threads` rounded up to whole warps and clamped to [32, max_threads].
inline int warp_multiple(int64_t threads, int max_threads) {
  return static_cast<int>(std::clamp<int64_t>(ceil_div(threads, 32) * 32, 32, max_threads));
}

// ---- host-side argument checks: they throw servelab::Error before any CUDA call -----------

/// Throws unless `dtype` is F32, F16 or BF16.
inline void require_float_dtype(DType dtype, const char* kernel, const char* what = "dtype") {
  if (dtype != DType::kF32 && dtype != DType::kF16 && dtype != DType::kBF16) {
    fail(kernel, ": ", what, " ", dtype_name(dtype),
         " is not supported (expected F32, F16 or BF16)");
  }
}

/// Throws unless 0 <= value <= limit.
inline void require_count(int64_t value, const char* kernel, const char* what,
                          int64_t limit = std::numeric_limits<int64_t>::max()) {
  if (value < 0 || value > limit) {
    fail(kernel, ": ", what, " is ", value, ", expected a value in [0, ", limit, "]");
  }
}

/// Throws when `pointer` is null although the launch would access it.
inline void require_pointer(const void* pointer, const char* kernel, const char* what) {
  if (pointer == nullptr) fail(kernel, ": ", what, " is null");
}

/// Largest grid.x a launch may use.
constexpr int64_t kMaxGridX = std::numeric_limits<int32_t>::max();

}  // namespace servelab::kernels
