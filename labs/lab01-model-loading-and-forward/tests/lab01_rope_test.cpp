// Lab 01, part lab01-rope: CpuBackend::rope in code/backend/cpu/cpu_backend.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "model/rope_frequencies.h"
#include "test_helpers.h"

namespace servelab {
namespace {

using testing::random_tensor;

// An independent formulation: (x[i], x[i + half]) as the complex number x[i] + i·x[i + half],
// multiplied by e^{i·angle}.
void reference_rope(std::vector<double>& head, int64_t position,
                    const std::vector<float>& inv_freq) {
  const size_t half = inv_freq.size();
  for (size_t i = 0; i < half; ++i) {
    std::complex<double> z(head[i], head[i + half]);
    z *= std::polar(1.0, double(float(position) * inv_freq[i]));
    head[i] = z.real();
    head[i + half] = z.imag();
  }
}

TEST(Lab01Rope, MatchesComplexRotationForEveryHeadAndPosition) {
  std::mt19937 rng(3);
  CpuBackend backend;
  const int64_t tokens = 6, heads = 3, head_dim = 16;
  auto inv_freq = rope_inverse_frequencies(head_dim, 10000.0, RopeScaling{});
  Tensor x = random_tensor({tokens, heads, head_dim}, rng);
  Tensor original = backend.upload(x.f32(), x.shape());
  std::vector<int64_t> positions = {0, 1, 2, 17, 100, 4095};
  backend.rope(x, positions, inv_freq);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      const float* before = original.f32() + (t * heads + h) * head_dim;
      std::vector<double> expected(before, before + head_dim);
      reference_rope(expected, positions[t], inv_freq);
      for (int64_t d = 0; d < head_dim; ++d) {
        ASSERT_NEAR(x.f32()[(t * heads + h) * head_dim + d], expected[d],
                    1e-4 + 1e-4 * std::fabs(expected[d]))
            << "token " << t << " head " << h << " dim " << d;
      }
    }
  }
}

TEST(Lab01Rope, PositionZeroIsTheIdentity) {
  std::mt19937 rng(4);
  CpuBackend backend;
  Tensor x = random_tensor({1, 2, 8}, rng);
  Tensor original = backend.upload(x.f32(), x.shape());
  backend.rope(x, {0}, rope_inverse_frequencies(8, 10000.0, RopeScaling{}));
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_FLOAT_EQ(x.f32()[i], original.f32()[i]);
}

TEST(Lab01Rope, DotProductDependsOnlyOnRelativePosition) {
  // The reason RoPE exists: q_m · k_n is a function of m - n.
  std::mt19937 rng(5);
  CpuBackend backend;
  auto inv_freq = rope_inverse_frequencies(32, 10000.0, RopeScaling{});
  Tensor q = random_tensor({1, 1, 32}, rng), k = random_tensor({1, 1, 32}, rng);
  auto rotated_dot = [&](int64_t m, int64_t n) {
    Tensor qm = backend.upload(q.f32(), q.shape()), kn = backend.upload(k.f32(), k.shape());
    backend.rope(qm, {m}, inv_freq);
    backend.rope(kn, {n}, inv_freq);
    double dot = 0;
    for (int d = 0; d < 32; ++d) dot += double(qm.f32()[d]) * kn.f32()[d];
    return dot;
  };
  EXPECT_NEAR(rotated_dot(10, 3), rotated_dot(107, 100), 1e-3);
  EXPECT_NEAR(rotated_dot(5, 5), rotated_dot(0, 0), 1e-3);
  EXPECT_GT(std::fabs(rotated_dot(10, 3) - rotated_dot(10, 4)), 1e-4);  // and it does vary
}

}  // namespace
}  // namespace servelab
