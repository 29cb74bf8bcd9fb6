// Element-wise kernels of the MLP and the residual stream:
//   silu_mul  out = silu(gate) * up, silu(g) = g / (1 + exp(-g))   (out may alias gate)
//   add       x += y
//   add_bias  out[r, c] += bias[c]                                  (a linear layer's bias)
//   convert   out = in, from one floating-point type to another (F32, F16, BF16, any direction)
// All compute in fp32 and round once, when they store.
//
// Design: grid-stride loops over 16-byte vectors (4 fp32 or 8 fp16/bf16 per access) while every
// pointer is 16-byte aligned, then the last count % N elements one by one (the scalar tail);
// element by element throughout when a pointer is not aligned (e.g. a view at an odd offset).
// Each element is read and written by one thread in one step, which is what makes in-place use
// (out aliasing gate, x += y, an F16 <-> BF16 convert with in == out) safe. silu uses __expf: its
// error (a few ulp) is far below the bf16/fp16 rounding of the result and within the fp32
// tolerance.
//
// Ladder:
//   v1  one thread per element, scalar loads, one block per 256 elements.
//   v2  (this) 16-byte vectors with a scalar tail, a grid-stride loop over a capped grid (a few
//       waves of the GPU: fewer, longer-lived blocks, index math amortised).
// measured: not measured separately yet; see
//   benchmarks/results/2026-11-22-h100-80gb-hbm3.md for whole-step numbers
#include <cstdint>

#include "kernels/cuda_utils.cuh"
#include "kernels/kernels.h"
#include "kernels/memory_bound.cuh"

namespace servelab::kernels {
namespace {

/// silu(gate) * up. In 16-bit types silu's result is rounded before the product, as Hugging
/// Face's act_fn(gate) * up rounds it (so bf16 runs agree with its bf16 run).
struct SiluMul {
  DType dtype = DType::kF32;
  __device__ __forceinline__ float operator()(float gate, float up) const {
    float silu = gate / (1.0f + __expf(-gate));
    if (dtype == DType::kBF16) silu = round_to<__nv_bfloat16>(silu);
    if (dtype == DType::kF16) silu = round_to<__half>(silu);
    return silu * up;
  }
};

struct Add {
  __device__ __forceinline__ float operator()(float x, float y) const { return x + y; }
};

/// out[i] = op(a[i], b[i]); out may alias a or b. N elements per access, the tail one by one.
/// @param a, b, out [count]
template <typename T, int N, typename Op>
__global__ void binary_kernel(const T* a, const T* b, T* out, int64_t count, Op op) {
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t vectors = count / N;
  for (int64_t v = first; v < vectors; v += stride) {
    const AlignedVector<T, N> a_values = load_vector<N>(a + v * N);
    const AlignedVector<T, N> b_values = load_vector<N>(b + v * N);
    AlignedVector<T, N> result;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      result.values[j] =
          from_float<T>(op(to_float(a_values.values[j]), to_float(b_values.values[j])));
    }
    store_vector<N>(out + v * N, result);
  }
  // The scalar tail: fewer than N elements, empty when N == 1.
  for (int64_t i = vectors * N + first; i < count; i += stride) {
    out[i] = from_float<T>(op(to_float(a[i]), to_float(b[i])));
  }
}

/// out[r, c] += bias[c], N columns per access.
/// @param out [rows, cols]   @param bias [cols]   (cols % N == 0)
template <typename T, int N>
__global__ void add_bias_kernel(T* __restrict__ out, const T* __restrict__ bias, int64_t rows,
                                int64_t cols) {
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t vectors_per_row = cols / N;
  const int64_t vectors = rows * vectors_per_row;
  for (int64_t v = first; v < vectors; v += stride) {
    AlignedVector<T, N> values = load_vector<N>(out + v * N);
    const AlignedVector<T, N> biases = load_vector<N>(bias + (v % vectors_per_row) * N);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      values.values[j] = from_float<T>(to_float(values.values[j]) + to_float(biases.values[j]));
    }
    store_vector<N>(out + v * N, values);
  }
}

/// out[i] = in[i] converted, N elements per access, the tail one by one. No __restrict__: between
/// types of one size (F16 <-> BF16) the conversion may run in place.
/// @param in [count] From   @param out [count] To
template <typename From, typename To, int N>
__global__ void convert_kernel(const From* in, To* out, int64_t count) {
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t vectors = count / N;
  for (int64_t v = first; v < vectors; v += stride) {
    const AlignedVector<From, N> values = load_vector<N>(in + v * N);
    AlignedVector<To, N> result;
#pragma unroll
    for (int j = 0; j < N; ++j) result.values[j] = from_float<To>(to_float(values.values[j]));
    store_vector<N>(out + v * N, result);
  }
  for (int64_t i = vectors * N + first; i < count; i += stride) {
    out[i] = from_float<To>(to_float(in[i]));
  }
}

/// Launches binary_kernel with 16-byte vectors when all three pointers allow it.
template <typename Op>
void launch_binary(DType dtype, const char* name, const void* a, const void* b, void* out,
                   int64_t count, Op op, cudaStream_t stream) {
  dispatch_float_type(dtype, name, [&](auto zero) {
    using T = decltype(zero);
    constexpr int kWidth = kVectorWidth<T>;
    const auto* a_typed = static_cast<const T*>(a);
    const auto* b_typed = static_cast<const T*>(b);
    auto* out_typed = static_cast<T*>(out);
    if (is_aligned(a, 16) && is_aligned(b, 16) && is_aligned(out, 16)) {
      const unsigned int blocks = grid_stride_blocks(count / kWidth, kElementwiseThreads);
      binary_kernel<T, kWidth>
          <<<blocks, kElementwiseThreads, 0, stream>>>(a_typed, b_typed, out_typed, count, op);
    } else {
      const unsigned int blocks = grid_stride_blocks(count, kElementwiseThreads);
      binary_kernel<T, 1>
          <<<blocks, kElementwiseThreads, 0, stream>>>(a_typed, b_typed, out_typed, count, op);
    }
    SERVELAB_CHECK_LAUNCH(name);
  });
}

template <typename From, typename To>
void launch_convert(const void* in, void* out, int64_t count, cudaStream_t stream) {
  // As many elements as fit 16 bytes of the wider type (4 when either side is fp32, else 8).
  constexpr int kWidth =
      static_cast<int>(16 / (sizeof(From) > sizeof(To) ? sizeof(From) : sizeof(To)));
  const auto* in_typed = static_cast<const From*>(in);
  auto* out_typed = static_cast<To*>(out);
  if (is_aligned(in, kWidth * sizeof(From)) && is_aligned(out, kWidth * sizeof(To))) {
    const unsigned int blocks = grid_stride_blocks(count / kWidth, kElementwiseThreads);
    convert_kernel<From, To, kWidth>
        <<<blocks, kElementwiseThreads, 0, stream>>>(in_typed, out_typed, count);
  } else {
    const unsigned int blocks = grid_stride_blocks(count, kElementwiseThreads);
    convert_kernel<From, To, 1>
        <<<blocks, kElementwiseThreads, 0, stream>>>(in_typed, out_typed, count);
  }
  SERVELAB_CHECK_LAUNCH("convert_kernel");
}

void check_elementwise(DType dtype, const char* name, int64_t count) {
  require_float_dtype(dtype, name);
  require_count(count, name, "count");
}

}  // namespace

void silu_mul(DType dtype, const void* gate, const void* up, void* out, int64_t count,
              cudaStream_t stream) {
  check_elementwise(dtype, "silu_mul", count);
  if (count == 0) return;
  require_pointer(gate, "silu_mul", "gate");
  require_pointer(up, "silu_mul", "up");
  require_pointer(out, "silu_mul", "out");
  launch_binary(dtype, "silu_mul", gate, up, out, count, SiluMul{dtype}, stream);
}

void add(DType dtype, void* x, const void* y, int64_t count, cudaStream_t stream) {
  check_elementwise(dtype, "add", count);
  if (count == 0) return;
  require_pointer(x, "add", "x");
  require_pointer(y, "add", "y");
  launch_binary(dtype, "add", x, y, x, count, Add{}, stream);
}

void add_bias(DType dtype, void* out, const void* bias, int64_t rows, int64_t cols,
              cudaStream_t stream) {
  require_float_dtype(dtype, "add_bias");
  require_count(rows, "add_bias", "rows");
  require_count(cols, "add_bias", "cols");
  if (rows == 0 || cols == 0) return;
  require_pointer(out, "add_bias", "out");
  require_pointer(bias, "add_bias", "bias");
  dispatch_float_type(dtype, "add_bias", [&](auto zero) {
    using T = decltype(zero);
    constexpr int kWidth = kVectorWidth<T>;
    auto* out_typed = static_cast<T*>(out);
    const auto* bias_typed = static_cast<const T*>(bias);
    // Vectors must not straddle rows: cols a multiple of the width, both bases aligned.
    if (cols % kWidth == 0 && is_aligned(out, 16) && is_aligned(bias, 16)) {
      const unsigned int blocks = grid_stride_blocks(rows * cols / kWidth, kElementwiseThreads);
      add_bias_kernel<T, kWidth>
          <<<blocks, kElementwiseThreads, 0, stream>>>(out_typed, bias_typed, rows, cols);
    } else {
      const unsigned int blocks = grid_stride_blocks(rows * cols, kElementwiseThreads);
      add_bias_kernel<T, 1>
          <<<blocks, kElementwiseThreads, 0, stream>>>(out_typed, bias_typed, rows, cols);
    }
    SERVELAB_CHECK_LAUNCH("add_bias_kernel");
  });
}

void convert(DType from, const void* in, DType to, void* out, int64_t count, cudaStream_t stream) {
  require_float_dtype(from, "convert", "source dtype");
  require_float_dtype(to, "convert", "target dtype");
  require_count(count, "convert", "count");
  if (count == 0) return;
  require_pointer(in, "convert", "in");
  require_pointer(out, "convert", "out");
  dispatch_float_type(from, "convert", [&](auto from_zero) {
    dispatch_float_type(to, "convert", [&](auto to_zero) {
      launch_convert<decltype(from_zero), decltype(to_zero)>(in, out, count, stream);
    });
  });
}

}  // namespace servelab::kernels
