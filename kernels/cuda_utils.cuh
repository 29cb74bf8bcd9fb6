// What every kernel file shares: error checking that names the call and the reason, the element
// types (float, __half, __nv_bfloat16) behind servelab's DType, and fp32 load/store helpers.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "common/error.h"
#include "common/dtype.h"

namespace servelab::kernels {

/// Throws servelab::Error("<call> failed: <reason>") when a CUDA runtime call does not succeed.
#define SERVELAB_CUDA_CHECK(call)                                                        \
  do {                                                                                   \
    cudaError_t servelab_status_ = (call);                                               \
    if (servelab_status_ != cudaSuccess) {                                               \
      ::servelab::fail(#call, " failed: ", cudaGetErrorName(servelab_status_), " (",     \
                       cudaGetErrorString(servelab_status_), ") at ", __FILE__, ":",     \
                       __LINE__);                                                        \
    }                                                                                    \
  } while (0)

/// Checks the launch just made (bad configuration, too much shared memory...). Asynchronous
/// faults inside the kernel surface at the next synchronising call, which is checked too.
#define SERVELAB_CHECK_LAUNCH(kernel_name)                                               \
  do {                                                                                   \
    cudaError_t servelab_status_ = cudaGetLastError();                                   \
    if (servelab_status_ != cudaSuccess) {                                               \
      ::servelab::fail("launch of ", kernel_name, " failed: ",                           \
                       cudaGetErrorName(servelab_status_), " (",                         \
                       cudaGetErrorString(servelab_status_), ")");                       \
    }                                                                                    \
  } while (0)

// fp32 <-> storage type. Every kernel computes in fp32 and rounds once when it stores.
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

/// Rounds an fp32 value to T and back: what storing to T and reloading would give.
template <typename T>
__device__ __forceinline__ float round_to(float x) {
  return to_float(from_float<T>(x));
}

/// Calls f(T{}) with T the element type of `dtype` (float, __half or __nv_bfloat16).
template <typename F>
void dispatch_float_type(DType dtype, const char* what, F&& f) {
  switch (dtype) {
    case DType::kF32:
      f(float{});
      return;
    case DType::kF16:
      f(__half{});
      return;
    case DType::kBF16:
      f(__nv_bfloat16{});
      return;
    default:
      fail(what, ": unsupported dtype ", dtype_name(dtype));
  }
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// Sum over a warp (all 32 lanes get the result).
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

/// Max over a warp (all 32 lanes get the result).
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  return x;
}

}  // namespace servelab::kernels
