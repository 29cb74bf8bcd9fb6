// rope: rotary position embedding in place on queries and (optionally) keys, rotate-half layout:
// dimension i of a head pairs with i + head_dim/2, and the pair turns by the angle
// position * inv_freq[i]:
//   x[i]        = x[i] * cos - x[i + half] * sin
//   x[i + half] = x[i + half] * cos + x[i] * sin
// Linear and llama3 scaling are already folded into inv_freq (model/rope_frequencies.h).
//
// Accuracy of the angle. The angle is float(position) * inv_freq[i], rounded to fp32 exactly as
// Hugging Face (and the CPU reference) computes it; __fmul_rn keeps the compiler from fusing it
// into anything. It reaches thousands of radians (position 8191 * inv_freq[0] = 1 -> 8191 rad).
// The kernels are built with --use_fast_math, under which nvcc turns sinf/cosf/sincosf into the
// __sinf/__cosf intrinsics, whose absolute error grows with |x| (about 1e-3 at 8000 rad): far too
// coarse. So the kernel takes the fp32 angle to double and calls the double-precision sincos,
// which fast math leaves alone (it only touches single precision): the double result rounded to
// fp32 is the correctly rounded cos/sin of the fp32 angle, as std::cos/std::sin give on the CPU
// (within an ulp). The cost is small because a token's cos/sin table (head_dim/2 entries) is
// computed once per block and shared by all its query and key heads: 64 double sincos per token
// for head_dim 128, against 40 heads x 128 values rotated.
//
// Design: one block per token. Its threads first fill the token's (cos, sin) table in shared
// memory, then rotate (head, i) pairs of all query heads followed by all key heads, N consecutive
// i at a time: a 16-byte load from the first half of the head and one from the second half, so
// consecutive threads touch consecutive memory in both halves.
//
// Ladder:
//   v1  one thread per (token, head, i) pair, cos/sin recomputed by every head: 40x the
//       transcendental work, and with __sinf a wrong answer at long positions.
//   v2  (this) one block per token, a shared cos/sin table in double-precision sincos, 16-byte
//       vectors (8 bf16 pairs per thread) when half the head is a multiple of the vector width
//       (head_dim 64, 128), narrower vectors otherwise (head_dim 40 -> 4 at a time).
// measured: not measured separately yet; see
//   benchmarks/results/2026-11-22-h100-80gb-hbm3.md for whole-step numbers
#include <cstdint>

#include "kernels/cuda_utils.cuh"
#include "kernels/kernels.h"
#include "kernels/memory_bound.cuh"

namespace servelab::kernels {
namespace {

/// Reads N consecutive table entries from shared memory in accesses of up to 16 bytes, which keeps
/// the lanes of a warp (N entries apart) from piling onto the same banks. `source` is aligned to
/// min(N, 4) floats.
template <int N>
__device__ __forceinline__ void load_table(const float* source, float (&values)[N]) {
  constexpr int kChunk = N < 4 ? N : 4;
#pragma unroll
  for (int c = 0; c < N; c += kChunk) {
    const AlignedVector<float, kChunk> chunk = load_vector<kChunk>(source + c);
#pragma unroll
    for (int j = 0; j < kChunk; ++j) values[c + j] = chunk.values[j];
  }
}

/// One block per token; dynamic shared memory: head_dim floats (cos table then sin table).
/// @param queries [tokens, num_heads, head_dim]   @param keys [tokens, num_kv_heads, head_dim]
///        or null   @param positions [tokens]   @param inv_freq [head_dim / 2], fp32
template <typename T, int N>
__global__ void rope_kernel(T* queries, int num_heads, T* keys, int num_kv_heads, int head_dim,
                            const int32_t* __restrict__ positions,
                            const float* __restrict__ inv_freq) {
  extern __shared__ __align__(16) float cos_sin_table[];
  const int half = head_dim / 2;
  float* cosines = cos_sin_table;
  float* sines = cos_sin_table + half;
  const int64_t token = blockIdx.x;
  const float position = static_cast<float>(positions[token]);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float angle = __fmul_rn(position, inv_freq[i]);  // fp32, as HF
    double sine, cosine;
    sincos(static_cast<double>(angle), &sine, &cosine);  // precise even under --use_fast_math
    cosines[i] = static_cast<float>(cosine);
    sines[i] = static_cast<float>(sine);
  }
  __syncthreads();

  const int vectors_per_head = half / N;
  const int heads = num_heads + (keys != nullptr ? num_kv_heads : 0);
  for (int item = threadIdx.x; item < heads * vectors_per_head; item += blockDim.x) {
    const int head = item / vectors_per_head;
    const int i = (item % vectors_per_head) * N;
    T* head_data = head < num_heads ? queries + (token * num_heads + head) * head_dim
                                    : keys + (token * num_kv_heads + (head - num_heads)) * head_dim;
    AlignedVector<T, N> first = load_vector<N>(head_data + i);
    AlignedVector<T, N> second = load_vector<N>(head_data + i + half);
    float cosine_values[N], sine_values[N];
    load_table(cosines + i, cosine_values);  // i and half are multiples of N: aligned
    load_table(sines + i, sine_values);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      // In 16-bit types, round where Hugging Face's eager code does (cos and sin cast to the
      // model's dtype, each product and the sum rounded), so bf16 runs agree with its bf16 run;
      // in fp32 every round_to is the identity.
      const float cosine = round_to<T>(cosine_values[j]), sine = round_to<T>(sine_values[j]);
      const float x1 = to_float(first.values[j]), x2 = to_float(second.values[j]);
      first.values[j] = from_float<T>(round_to<T>(x1 * cosine) + round_to<T>(-x2 * sine));
      second.values[j] = from_float<T>(round_to<T>(x2 * cosine) + round_to<T>(x1 * sine));
    }
    store_vector<N>(head_data + i, first);
    store_vector<N>(head_data + i + half, second);
  }
}

template <typename T, int N>
void launch_rope(void* queries, int num_heads, void* keys, int num_kv_heads, int head_dim,
                 const int32_t* positions, const float* inv_freq, int64_t tokens,
                 cudaStream_t stream) {
  const int heads = num_heads + (keys != nullptr ? num_kv_heads : 0);
  const int threads = warp_multiple(static_cast<int64_t>(heads) * (head_dim / 2 / N), 256);
  const size_t shared_bytes = static_cast<size_t>(head_dim) * sizeof(float);
  rope_kernel<T, N><<<static_cast<unsigned int>(tokens), threads, shared_bytes, stream>>>(
      static_cast<T*>(queries), num_heads, static_cast<T*>(keys), num_kv_heads, head_dim, positions,
      inv_freq);
  SERVELAB_CHECK_LAUNCH("rope_kernel");
}

}  // namespace

void rope(DType dtype, void* queries, int num_heads, void* keys, int num_kv_heads, int head_dim,
          const int32_t* positions, const float* inv_freq, int64_t tokens, cudaStream_t stream) {
  require_float_dtype(dtype, "rope");
  require_count(tokens, "rope", "tokens", kMaxGridX);
  // head_dim bounds the cos/sin table in shared memory (4 KiB at most).
  if (head_dim <= 0 || head_dim % 2 != 0 || head_dim > 1024) {
    fail("rope: head_dim is ", head_dim, ", expected an even number in [2, 1024]");
  }
  if (num_heads <= 0) fail("rope: num_heads is ", num_heads, ", expected at least 1");
  if (keys != nullptr && num_kv_heads <= 0) {
    fail("rope: keys are given but num_kv_heads is ", num_kv_heads, ", expected at least 1");
  }
  if (num_kv_heads < 0) fail("rope: num_kv_heads is ", num_kv_heads, ", expected >= 0");
  const int64_t heads = static_cast<int64_t>(num_heads) + (keys != nullptr ? num_kv_heads : 0);
  if (heads * head_dim > kMaxGridX) fail("rope: ", heads, " heads of ", head_dim, " is too many");
  if (tokens == 0) return;
  require_pointer(queries, "rope", "queries");
  require_pointer(positions, "rope", "positions");
  require_pointer(inv_freq, "rope", "inv_freq");

  dispatch_float_type(dtype, "rope", [&](auto zero) {
    using T = decltype(zero);
    // The widest vector (in pairs of elements) that divides half a head and to which the bases
    // are aligned; every (head, i) offset is then a multiple of it too.
    const int half = head_dim / 2;
    int width = kVectorWidth<T>;
    while (width > 1 && !(half % width == 0 && is_aligned(queries, width * sizeof(T)) &&
                          is_aligned(keys, width * sizeof(T)))) {
      width /= 2;
    }
    switch (width) {
      case 8:
        launch_rope<T, 8>(queries, num_heads, keys, num_kv_heads, head_dim, positions, inv_freq,
                          tokens, stream);
        break;
      case 4:
        launch_rope<T, 4>(queries, num_heads, keys, num_kv_heads, head_dim, positions, inv_freq,
                          tokens, stream);
        break;
      case 2:
        launch_rope<T, 2>(queries, num_heads, keys, num_kv_heads, head_dim, positions, inv_freq,
                          tokens, stream);
        break;
      default:
        launch_rope<T, 1>(queries, num_heads, keys, num_kv_heads, head_dim, positions, inv_freq,
                          tokens, stream);
        break;
    }
  });
}

}  // namespace servelab::kernels
