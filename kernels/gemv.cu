// gemv: out[r, n] = Σ_k x[r, k] · W[n, k] (+ bias[n]) for a handful of rows r: the linear layers
// of a decode step at small batch, where each weight is used by so few tokens that the layer is a
// pure stream over W. Its job is to read W at the speed of the memory and do nothing else.
//
// Design: one warp per output feature n (a block of 8 warps covers 8 features). Each lane loads
// 16 bytes of W's row at a time (8 bf16 values), four loads in flight before it uses any, and
// multiplies them by the matching 8 values of every x row, which the block first copied to shared
// memory as fp32. Accumulation is fp32, one warp shuffle reduction per row at the end, the bias
// added in fp32 before the one rounding (as torch's addmm and cuBLAS with beta = 1 do).
// Used for F16/BF16 with up to kMaxRows rows, K a multiple of 8 and 16-byte aligned pointers;
// cuBLAS does everything else (the backend decides).
//
// Ladder (Llama-3-8B shapes, bf16, H100; the whole decode step at batch 1 in parentheses):
//   v0  cublasGemmEx with m = 1: cuBLAS's own GEMV path (6.72 ms/step, 2237 GB/s)
//   v1  warp per row, 16-byte loads, 4 in flight, x in shared memory as fp32: slower than v0
//       (7.29 ms/step), the fp32 x reads conflicting 8 ways in shared memory
//   v2  (this) x kept in its 16-bit type and read as 16-byte vectors: conflict-free
// measured (NVIDIA H100 80GB HBM3, 2026-11-22; benchmarks/results/2026-11-22-h100-80gb-hbm3.md):
//   whole decode step at batch 1, 15.04 GB read per step: v0 6.72 ms (2237 GB/s), v1 7.29 ms,
//   v2 6.39 ms (2354 GB/s, 78% of the 3020 GB/s copy bandwidth). Run on 4 rows it made a step take
//   8.38 ms, more than cuBLAS needs for a whole batch-8 step (about 6.9 ms): hence batch 1 only.
#include "kernels/cuda_utils.cuh"
#include "kernels/kernels.h"

namespace servelab::kernels {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kUnroll = 4;  // 16-byte loads in flight per lane

template <typename T>
struct alignas(16) Vector8 {
  T values[8];
};

/// A 16-byte read-only load of 8 values.
template <typename T>
__device__ __forceinline__ Vector8<T> load8(const uint4* address) {
  const uint4 raw = __ldg(address);
  Vector8<T> result;
  memcpy(&result, &raw, sizeof raw);
  return result;
}

template <typename T, int kRows>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    gemv_kernel(const T* __restrict__ x, const T* __restrict__ weight, const T* __restrict__ bias,
                T* __restrict__ out, int64_t features, int64_t in) {
  // x in shared memory in its own type: lane l then reads 16 contiguous bytes at 16·l, which
  // spreads a quarter-warp over all 32 banks (fp32 copies read at a 32-byte stride conflicted
  // 8 ways and made v1 slower than cuBLAS).
  extern __shared__ uint4 x_shared_raw[];
  const uint4* x_vectors = x_shared_raw;  // [kRows][in / 8]
  {
    const auto* source = reinterpret_cast<const uint4*>(x);
    for (int64_t i = threadIdx.x; i < kRows * in / 8; i += blockDim.x) x_shared_raw[i] = source[i];
  }
  __syncthreads();

  const int lane = threadIdx.x % 32;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (n >= features) return;
  const auto* row = reinterpret_cast<const uint4*>(weight + n * in);
  const int64_t vectors = in / 8;
  float sum[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) sum[r] = 0.0f;

  int64_t v = lane;
  // Main loop: kUnroll loads issued before any is used, so each lane keeps 64 bytes in flight.
  for (; v + (kUnroll - 1) * 32 < vectors; v += kUnroll * 32) {
    Vector8<T> w[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) w[u] = load8<T>(row + v + u * 32);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        Vector8<T> xs;
        const uint4 raw = x_vectors[r * vectors + v + u * 32];
        memcpy(&xs, &raw, sizeof raw);
#pragma unroll
        for (int j = 0; j < 8; ++j) sum[r] += to_float(w[u].values[j]) * to_float(xs.values[j]);
      }
    }
  }
  for (; v < vectors; v += 32) {  // the tail: fewer than kUnroll * 32 vectors left
    const Vector8<T> w = load8<T>(row + v);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      Vector8<T> xs;
      const uint4 raw = x_vectors[r * vectors + v];
      memcpy(&xs, &raw, sizeof raw);
#pragma unroll
      for (int j = 0; j < 8; ++j) sum[r] += to_float(w.values[j]) * to_float(xs.values[j]);
    }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float total = warp_sum(sum[r]);
    if (lane == 0) {
      const float b = bias != nullptr ? to_float(bias[n]) : 0.0f;
      out[r * features + n] = from_float<T>(total + b);
    }
  }
}

template <typename T, int kRows>
void launch(const void* x, const void* weight, const void* bias, void* out, int64_t features,
            int64_t in, cudaStream_t stream) {
  const size_t shared = static_cast<size_t>(kRows) * in * sizeof(T);
  auto* kernel = gemv_kernel<T, kRows>;
  if (shared > 48 * 1024) {
    SERVELAB_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             static_cast<int>(shared)));
  }
  const unsigned int blocks = static_cast<unsigned int>(ceil_div(features, kWarpsPerBlock));
  kernel<<<blocks, kWarpsPerBlock * 32, shared, stream>>>(
      static_cast<const T*>(x), static_cast<const T*>(weight), static_cast<const T*>(bias),
      static_cast<T*>(out), features, in);
  SERVELAB_CHECK_LAUNCH("gemv");
}

template <typename T>
void launch_rows(int64_t rows, const void* x, const void* weight, const void* bias, void* out,
                 int64_t features, int64_t in, cudaStream_t stream) {
  switch (rows) {
    case 1:
      return launch<T, 1>(x, weight, bias, out, features, in, stream);
    case 2:
      return launch<T, 2>(x, weight, bias, out, features, in, stream);
    case 3:
      return launch<T, 3>(x, weight, bias, out, features, in, stream);
    case 4:
      return launch<T, 4>(x, weight, bias, out, features, in, stream);
    default:
      fail("gemv: ", rows, " rows (at most ", kGemvMaxRows, ")");
  }
}

bool aligned16(const void* pointer) {
  return reinterpret_cast<uintptr_t>(pointer) % 16 == 0;
}

}  // namespace

bool gemv_supported(DType dtype, int64_t rows, int64_t in, const void* x, const void* weight,
                    const void* out) {
  const size_t shared = static_cast<size_t>(rows) * in * 2;  // x, 16-bit
  return (dtype == DType::kBF16 || dtype == DType::kF16) && rows >= 1 && rows <= kGemvMaxRows &&
         in % 8 == 0 && in > 0 && shared <= 200 * 1024 && aligned16(x) && aligned16(weight) &&
         aligned16(out);
}

void gemv(DType dtype, const void* x, int64_t rows, const void* weight, const void* bias,
          int64_t features, int64_t in, void* out, cudaStream_t stream) {
  if (!gemv_supported(dtype, rows, in, x, weight, out)) {
    fail("gemv: unsupported case (", dtype_name(dtype), ", ", rows, " rows, in ", in,
         "); check gemv_supported first");
  }
  if (features <= 0) return;
  if (dtype == DType::kBF16) {
    launch_rows<__nv_bfloat16>(rows, x, weight, bias, out, features, in, stream);
  } else {
    launch_rows<__half>(rows, x, weight, bias, out, features, in, stream);
  }
}

}  // namespace servelab::kernels
