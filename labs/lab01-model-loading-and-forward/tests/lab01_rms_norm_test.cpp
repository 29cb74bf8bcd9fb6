// Lab 01, part lab01-rms-norm: CpuBackend::rms_norm in code/backend/cpu/cpu_backend.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "test_helpers.h"

namespace servelab {
namespace {

using testing::random_tensor;

// The definition, in double precision: x / sqrt(mean(x^2) + eps) * weight.
double reference(const Tensor& x, const Tensor& weight, double eps, int64_t row, int64_t column) {
  const int64_t hidden = x.dim(1);
  double sum = 0;
  for (int64_t j = 0; j < hidden; ++j)
    sum += double(x.f32()[row * hidden + j]) * x.f32()[row * hidden + j];
  return x.f32()[row * hidden + column] / std::sqrt(sum / hidden + eps) * weight.f32()[column];
}

TEST(Lab01RmsNorm, MatchesTheDefinitionOnRandomRows) {
  std::mt19937 rng(1);
  CpuBackend backend;
  for (int64_t hidden : {1, 7, 64, 300}) {
    Tensor x = random_tensor({5, hidden}, rng, 3.0f);
    Tensor weight = random_tensor({hidden}, rng);
    Tensor out = backend.allocate({5, hidden});
    backend.rms_norm(x, weight, 1e-6f, out);
    for (int64_t r = 0; r < 5; ++r) {
      for (int64_t c = 0; c < hidden; ++c) {
        double expected = reference(x, weight, 1e-6, r, c);
        ASSERT_NEAR(out.f32()[r * hidden + c], expected, 1e-5 + 1e-5 * std::fabs(expected))
            << "hidden " << hidden << " row " << r << " column " << c;
      }
    }
  }
}

TEST(Lab01RmsNorm, EpsilonMattersForSmallRows) {
  // With tiny inputs, eps dominates mean(x^2): forgetting it (or adding it after the sqrt) shows.
  CpuBackend backend;
  Tensor x = Tensor::zeros({1, 4});
  Tensor weight = Tensor::zeros({4});
  for (int i = 0; i < 4; ++i) x.f32()[i] = 1e-3f * (i + 1), weight.f32()[i] = 1.0f;
  Tensor out = backend.allocate({1, 4});
  backend.rms_norm(x, weight, 1e-5f, out);
  for (int c = 0; c < 4; ++c) {
    double expected = reference(x, weight, 1e-5, 0, c);
    EXPECT_NEAR(out.f32()[c], expected, 1e-6 + 1e-5 * std::fabs(expected));
  }
}

TEST(Lab01RmsNorm, WorksInPlace) {
  std::mt19937 rng(2);
  CpuBackend backend;
  Tensor x = random_tensor({3, 16}, rng);
  Tensor weight = random_tensor({16}, rng);
  Tensor copy = backend.upload(x.f32(), x.shape());
  backend.rms_norm(x, weight, 1e-6f, x);
  for (int64_t r = 0; r < 3; ++r) {
    for (int64_t c = 0; c < 16; ++c) {
      double expected = reference(copy, weight, 1e-6, r, c);
      ASSERT_NEAR(x.f32()[r * 16 + c], expected, 1e-5 + 1e-5 * std::fabs(expected));
    }
  }
}

}  // namespace
}  // namespace servelab
