// The op interface that the model forward is written against. A backend owns memory on its
// device and computes; it never decides what to compute (that is the model's job) or when
// (the scheduler's). The CPU backend is the readable fp32 reference; a CUDA backend implements the
// same ops with cuBLAS and servelab's kernels, and is tested against the CPU one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/tensor.h"

namespace servelab {

/// The keys and values of one sequence, stored contiguously: the cache the static-batching server
/// and naive attention use. Position p of layer l lives at keys[l][p].
struct ContiguousKvCache {
  std::vector<Tensor>
      keys;  ///< per layer: [capacity, num_kv_heads, head_dim], fp32, backend device
  std::vector<Tensor>
      values;            ///< per layer: [capacity, num_kv_heads, head_dim], fp32, backend device
  int64_t capacity = 0;  ///< positions the cache can hold
  int64_t length = 0;    ///< positions written so far: [0, length) are valid
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // ---- memory -------------------------------------------------------------------------------
  /// An fp32 activation tensor on the backend's device. Contents are unspecified.
  virtual Tensor allocate(const Shape& shape) = 0;
  /// Copies fp32 host data to a new tensor on the backend's device (weights, once at load time).
  /// @param host [numel(shape)], fp32, host
  virtual Tensor upload(const float* host, const Shape& shape) = 0;
  /// Copies a tensor of this backend to a new fp32 host tensor.
  virtual Tensor to_host(const Tensor& tensor) = 0;
  /// A zeroed contiguous KV cache for one sequence.
  ContiguousKvCache allocate_kv_cache(int64_t num_layers, int64_t capacity, int64_t num_kv_heads,
                                      int64_t head_dim);

  // ---- ops ----------------------------------------------------------------------------------
  /// out[t] = table[tokens[t]]: the embedding lookup, and in general a gather of rows.
  /// Ids must be in [0, rows of table).
  /// @param table [vocab, hidden]   @param out [num_tokens, hidden]
  virtual void embedding(const Tensor& table, const std::vector<int32_t>& tokens, Tensor& out) = 0;

  /// out = x / sqrt(mean(x^2) + eps) * weight, row by row.
  /// @param x [rows, hidden]   @param weight [hidden]   @param out [rows, hidden] (may alias x)
  virtual void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) = 0;

  /// out = x · weightᵀ + bias: the layout of torch.nn.Linear.
  /// @param x [rows, in]   @param weight [out, in]   @param bias [out] or undefined
  /// @param out [rows, out] (must not alias x)
  virtual void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out) = 0;

  /// Rotary position embedding, in place, in Hugging Face's rotate-half layout: dimension i pairs
  /// with i + head_dim/2, rotated by the angle positions[t] * inv_freq[i].
  /// @param x [num_tokens, num_heads, head_dim]   @param positions [num_tokens], host
  /// @param inv_freq [head_dim / 2], host (already scaled: see model/rope_frequencies.h)
  virtual void rope(Tensor& x, const std::vector<int64_t>& positions,
                    const std::vector<float>& inv_freq) = 0;

  /// out = silu(gate) * up, element-wise; silu(g) = g / (1 + exp(-g)).
  /// @param gate [rows, n]   @param up [rows, n]   @param out [rows, n] (may alias gate)
  virtual void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) = 0;

  /// x += y, element-wise (the residual connections). Shapes must match.
  virtual void add(Tensor& x, const Tensor& y) = 0;

  /// Writes the keys and values of new tokens at positions [start, start + num_tokens).
  /// @param keys [num_tokens, num_kv_heads, head_dim]   @param values likewise
  virtual void write_kv_cache(const Tensor& keys, const Tensor& values, ContiguousKvCache& cache,
                              int layer, int64_t start) = 0;

  /// Causal attention of new tokens over one sequence's cache (which already holds them): the
  /// query at position start + i sees positions [0, start + i]. Grouped-query attention: query
  /// head h reads KV head h / (num_heads / num_kv_heads).
  /// @param queries [num_tokens, num_heads, head_dim]   @param out [num_tokens, num_heads *
  /// head_dim]
  virtual void attention(const Tensor& queries, const ContiguousKvCache& cache, int layer,
                         int64_t start, Tensor& out) = 0;
};

}  // namespace servelab
