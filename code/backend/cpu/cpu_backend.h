// The CPU reference backend: plain fp32 math that a reader can check against the formulas, with
// xtensor views over the tensors and OpenBLAS for the matrix products. Every CUDA kernel is tested
// against these ops. It favours clarity over speed: no threads of its own, no fused ops.
#pragma once

#include "backend/backend.h"

namespace servelab {

class CpuBackend : public Backend {
 public:
  std::string name() const override { return "cpu"; }

  Tensor allocate(const Shape& shape) override;
  Tensor upload(const float* host, const Shape& shape) override;
  Tensor to_host(const Tensor& tensor) override;

  void embedding(const Tensor& table, const std::vector<int32_t>& tokens, Tensor& out) override;
  void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) override;
  void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out) override;
  void rope(Tensor& x, const std::vector<int64_t>& positions,
            const std::vector<float>& inv_freq) override;
  void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override;
  void add(Tensor& x, const Tensor& y) override;
  void write_kv_cache(const Tensor& keys, const Tensor& values, ContiguousKvCache& cache, int layer,
                      int64_t start) override;
  void attention(const Tensor& queries, const ContiguousKvCache& cache, int layer, int64_t start,
                 Tensor& out) override;
};

}  // namespace servelab
