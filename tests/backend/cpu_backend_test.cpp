// The CPU backend's ops against their definitions, written here independently in double
// precision, on random inputs (never zeros) with awkward sizes.
#include "backend/cpu/cpu_backend.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "common/error.h"
#include "test_helpers.h"

namespace servelab {
namespace {

using testing::random_tensor;

void expect_close(double actual, double expected, const std::string& where) {
  EXPECT_NEAR(actual, expected, 1e-5 + 1e-5 * std::fabs(expected)) << where;
}

TEST(CpuBackend, LinearIsXTimesWeightTransposedPlusBias) {
  std::mt19937 rng(11);
  CpuBackend backend;
  const int64_t rows = 5, in = 37, out = 19;
  Tensor x = random_tensor({rows, in}, rng), weight = random_tensor({out, in}, rng);
  Tensor bias = random_tensor({out}, rng);
  Tensor with_bias = backend.allocate({rows, out}), without = backend.allocate({rows, out});
  backend.linear(x, weight, bias, with_bias);
  backend.linear(x, weight, Tensor(), without);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double sum = 0;
      for (int64_t i = 0; i < in; ++i)
        sum += double(x.f32()[r * in + i]) * weight.f32()[o * in + i];
      expect_close(without.f32()[r * out + o], sum, "no bias");
      expect_close(with_bias.f32()[r * out + o], sum + bias.f32()[o], "bias");
    }
  }
}

TEST(CpuBackend, LinearRejectsMismatchedShapes) {
  CpuBackend backend;
  Tensor x = Tensor::zeros({2, 3}), weight = Tensor::zeros({4, 5}), out = Tensor::zeros({2, 4});
  EXPECT_THROW(backend.linear(x, weight, Tensor(), out), Error);
}

TEST(CpuBackend, EmbeddingGathersRowsAndRejectsOutOfRangeIds) {
  std::mt19937 rng(12);
  CpuBackend backend;
  Tensor table = random_tensor({10, 6}, rng);
  Tensor out = backend.allocate({3, 6});
  backend.embedding(table, {9, 0, 9}, out);
  for (int d = 0; d < 6; ++d) {
    EXPECT_EQ(out.f32()[d], table.f32()[9 * 6 + d]);
    EXPECT_EQ(out.f32()[6 + d], table.f32()[d]);
    EXPECT_EQ(out.f32()[12 + d], table.f32()[9 * 6 + d]);
  }
  EXPECT_THROW(backend.embedding(table, {10, 0, 0}, out), Error);
  EXPECT_THROW(backend.embedding(table, {-1, 0, 0}, out), Error);
}

TEST(CpuBackend, SiluMulAndAddFollowTheirDefinitions) {
  std::mt19937 rng(13);
  CpuBackend backend;
  Tensor gate = random_tensor({3, 17}, rng), up = random_tensor({3, 17}, rng);
  Tensor out = backend.allocate({3, 17});
  backend.silu_mul(gate, up, out);
  for (int64_t i = 0; i < gate.numel(); ++i) {
    double g = gate.f32()[i];
    expect_close(out.f32()[i], g / (1 + std::exp(-g)) * up.f32()[i], "silu_mul");
  }
  Tensor copy = backend.upload(out.f32(), out.shape());
  backend.add(out, up);
  for (int64_t i = 0; i < out.numel(); ++i)
    expect_close(out.f32()[i], copy.f32()[i] + up.f32()[i], "add");
}

// Causal GQA attention written from the definition, over a cache of `length` positions.
std::vector<double> reference_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                        int64_t start) {
  const int64_t tokens = q.dim(0), heads = q.dim(1), dim = q.dim(2), kv_heads = k.dim(1);
  std::vector<double> out(tokens * heads * dim, 0.0);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t kv = h * kv_heads / heads;
      std::vector<double> weights;
      double max_score = -1e300, total = 0;
      for (int64_t p = 0; p <= start + t; ++p) {
        double dot = 0;
        for (int64_t d = 0; d < dim; ++d) {
          dot +=
              double(q.f32()[(t * heads + h) * dim + d]) * k.f32()[(p * kv_heads + kv) * dim + d];
        }
        weights.push_back(dot / std::sqrt(double(dim)));
        max_score = std::max(max_score, weights.back());
      }
      for (double& w : weights) total += (w = std::exp(w - max_score));
      for (size_t p = 0; p < weights.size(); ++p) {
        for (int64_t d = 0; d < dim; ++d) {
          out[(t * heads + h) * dim + d] +=
              weights[p] / total * v.f32()[(p * kv_heads + kv) * dim + d];
        }
      }
    }
  }
  return out;
}

TEST(CpuBackend, AttentionIsCausalGroupedQueryAttentionOverTheCache) {
  std::mt19937 rng(14);
  CpuBackend backend;
  for (int64_t group : {1, 4, 8}) {
    const int64_t kv_heads = 2, heads = kv_heads * group, dim = 16, start = 5, tokens = 3;
    ContiguousKvCache cache = backend.allocate_kv_cache(1, start + tokens + 2, kv_heads, dim);
    // Earlier positions, then the new tokens' keys and values.
    Tensor old_k = random_tensor({start, kv_heads, dim}, rng),
           old_v = random_tensor({start, kv_heads, dim}, rng);
    backend.write_kv_cache(old_k, old_v, cache, 0, 0);
    Tensor new_k = random_tensor({tokens, kv_heads, dim}, rng),
           new_v = random_tensor({tokens, kv_heads, dim}, rng);
    backend.write_kv_cache(new_k, new_v, cache, 0, start);
    Tensor q = random_tensor({tokens, heads, dim}, rng);
    Tensor out = backend.allocate({tokens, heads * dim});
    backend.attention(q, cache, 0, start, out);
    auto expected = reference_attention(q, cache.keys[0], cache.values[0], start);
    for (size_t i = 0; i < expected.size(); ++i) {
      expect_close(out.f32()[i], expected[i],
                   "group " + std::to_string(group) + " element " + std::to_string(i));
    }
  }
}

TEST(CpuBackend, AttentionIgnoresCachePositionsAfterTheQuery) {
  // Garbage beyond the causal horizon must not leak into the result.
  std::mt19937 rng(15);
  CpuBackend backend;
  ContiguousKvCache clean = backend.allocate_kv_cache(1, 8, 1, 4);
  ContiguousKvCache dirty = backend.allocate_kv_cache(1, 8, 1, 4);
  Tensor k = random_tensor({3, 1, 4}, rng), v = random_tensor({3, 1, 4}, rng);
  backend.write_kv_cache(k, v, clean, 0, 0);
  backend.write_kv_cache(k, v, dirty, 0, 0);
  Tensor junk = random_tensor({5, 1, 4}, rng);
  for (int64_t i = 0; i < junk.numel(); ++i) junk.f32()[i] *= 1000;
  backend.write_kv_cache(junk, junk, dirty, 0, 3);
  Tensor q = random_tensor({1, 1, 4}, rng);
  Tensor a = backend.allocate({1, 4}), b = backend.allocate({1, 4});
  backend.attention(q, clean, 0, 2, a);
  backend.attention(q, dirty, 0, 2, b);
  for (int d = 0; d < 4; ++d) EXPECT_EQ(a.f32()[d], b.f32()[d]);
}

TEST(CpuBackend, KvCacheWritesPastCapacityAreErrors) {
  CpuBackend backend;
  ContiguousKvCache cache = backend.allocate_kv_cache(2, 4, 1, 2);
  Tensor k = Tensor::zeros({3, 1, 2});
  EXPECT_NO_THROW(backend.write_kv_cache(k, k, cache, 1, 1));
  EXPECT_THROW(backend.write_kv_cache(k, k, cache, 1, 2), Error);
  EXPECT_THROW(backend.write_kv_cache(k, k, cache, 2, 0), Error);
  EXPECT_THROW(backend.allocate_kv_cache(0, 4, 1, 2), Error);
}

}  // namespace
}  // namespace servelab
