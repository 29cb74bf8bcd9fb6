// The CPU reference backend: plain fp32 math that a reader can check against the formulas, with
// xtensor views over the tensors and OpenBLAS for the matrix products. Every CUDA kernel is tested
// against these ops. It favours clarity over speed: no threads of its own, no fused ops.
#pragma once

#include "backend/backend.h"

namespace servelab {

class CpuBackend : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  DType compute_dtype() const override { return DType::kF32; }

  using Backend::allocate;
  using Backend::embedding;
  using Backend::rope;
  using Backend::scratch;
  using Backend::upload;
  Tensor allocate(const Shape& shape, DType dtype) override;
  Tensor scratch(const Shape& shape, DType dtype) override;
  Tensor upload(const void* host, DType host_dtype, const Shape& shape, DType dtype) override;
  Tensor to_host(const Tensor& tensor) override;
  Step prepare_step(const StepLayout& layout) override;

  void embedding(const Tensor& table, const Tensor& ids, Tensor& out) override;
  void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) override;
  void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out) override;
  void rope(Tensor& x, const Tensor& positions, const Tensor& inv_freq) override;
  void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override;
  void add(Tensor& x, const Tensor& y) override;
  void attention(const Tensor& queries, const Tensor& keys, const Tensor& values, const Step& step,
                 int layer, Tensor& out) override;
  void argmax(const Tensor& logits, Tensor& ids) override;

  // The two halves of attention over one contiguous cache, as separate steps: the naive
  // reference that the kernels and the batched attention() are tested against.

  /// Writes the keys and values of new tokens at positions [start, start + num_tokens).
  /// @param keys [num_tokens, num_kv_heads, head_dim]   @param values likewise
  void write_kv_cache(const Tensor& keys, const Tensor& values, ContiguousKvCache& cache, int layer,
                      int64_t start);
  /// Causal attention of new tokens over one sequence's cache (which already holds them): the
  /// query at position start + i sees positions [0, start + i].
  /// @param queries [num_tokens, num_heads, head_dim]
  /// @param out [num_tokens, num_heads * head_dim]
  void attention(const Tensor& queries, const ContiguousKvCache& cache, int layer, int64_t start,
                 Tensor& out);
};

}  // namespace servelab
