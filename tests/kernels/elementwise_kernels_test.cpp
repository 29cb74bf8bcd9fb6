// The element-wise and row-wise kernels (embedding, rms_norm, rope, silu_mul, add, add_bias,
// convert, argmax, fill_normal) against CPU references on random inputs rounded to each dtype,
// with poisoned outputs, awkward shapes (one row, odd widths that take the scalar paths, pointers
// one element off 16-byte alignment) and the edge cases of each contract. The argument checks
// run without a GPU; everything else skips where there is none.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "common/error.h"
#include "kernels/kernel_test_helpers.h"
#include "kernels/kernels.h"
#include "model/rope_frequencies.h"

namespace servelab {
namespace {

using servelab::testing::all_close;
using servelab::testing::default_atol;
using servelab::testing::default_rtol;
using servelab::testing::DeviceBuffer;
using servelab::testing::random_values;

constexpr DType kFloatTypes[] = {DType::kF32, DType::kF16, DType::kBF16};
constexpr cudaStream_t kDefaultStream = nullptr;

/// Random normal values already rounded to `dtype`: exactly what the kernel will see.
std::vector<float> random_in(DType dtype, int64_t count, uint64_t seed, float std = 1.0f) {
  return servelab::testing::round_to(dtype, random_values(count, seed, std));
}

std::vector<float> round_to(DType dtype, std::vector<float> values) {
  return servelab::testing::round_to(dtype, std::move(values));
}

/// A host fp32 tensor holding `values`, for the CPU backend.
Tensor host_tensor(const std::vector<float>& values, const Shape& shape) {
  Tensor tensor = Tensor::zeros(shape);
  std::copy(values.begin(), values.end(), tensor.f32());
  return tensor;
}

std::vector<float> values_of(const Tensor& tensor) {
  return std::vector<float>(tensor.f32(), tensor.f32() + tensor.numel());
}

/// A device copy of `values` that starts `offset` elements into its allocation: offset 1 puts the
/// pointer off 16-byte alignment, which must send a kernel down its scalar path.
class ShiftedBuffer {
 public:
  ShiftedBuffer(DType dtype, const std::vector<float>& values, int64_t offset)
      : dtype_(dtype),
        offset_(offset),
        buffer_(DeviceBuffer::from(dtype, padded(values, offset))) {}
  /// An output buffer of `count` elements, poisoned (NaN) so that unwritten elements fail.
  static ShiftedBuffer poisoned(DType dtype, int64_t count, int64_t offset) {
    ShiftedBuffer buffer(dtype, std::vector<float>(static_cast<size_t>(count)), offset);
    buffer.buffer_.poison();
    return buffer;
  }

  void* data() const {
    return static_cast<char*>(buffer_.data()) + offset_ * static_cast<int64_t>(dtype_size(dtype_));
  }
  std::vector<float> download() const {
    std::vector<float> all = buffer_.download();
    return std::vector<float>(all.begin() + offset_, all.end());
  }

 private:
  static std::vector<float> padded(const std::vector<float>& values, int64_t offset) {
    std::vector<float> result(static_cast<size_t>(offset), 0.0f);
    result.insert(result.end(), values.begin(), values.end());
    return result;
  }
  DType dtype_;
  int64_t offset_;
  DeviceBuffer buffer_;
};

std::string dtype_label(DType dtype) {
  return dtype_name(dtype);
}

// ---- embedding --------------------------------------------------------------------------------

struct EmbeddingCase {
  int64_t rows, width, count, offset;
};

class EmbeddingTest : public ::testing::TestWithParam<std::tuple<DType, EmbeddingCase>> {};

TEST_P(EmbeddingTest, GathersRowsAndZeroesOutOfRangeIds) {
  SERVELAB_REQUIRE_GPU();
  const auto [dtype, shape] = GetParam();
  const std::vector<float> table = random_in(dtype, shape.rows * shape.width, 11);
  std::mt19937 rng(12);
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(shape.rows) - 1);
  std::vector<int32_t> ids(static_cast<size_t>(shape.count));
  for (int32_t& id : ids) id = pick(rng);
  if (shape.count >= 3) {
    ids[1] = -1;
    ids[shape.count - 1] = static_cast<int32_t>(shape.rows);
  }
  if (shape.count >= 5) ids[3] = std::numeric_limits<int32_t>::max();

  // Reference: CpuBackend::embedding (which refuses bad ids) on the valid ones, zeros elsewhere.
  std::vector<int32_t> valid_ids = ids;
  for (int32_t& id : valid_ids) id = (id < 0 || id >= shape.rows) ? 0 : id;
  Tensor expected = Tensor::zeros({shape.count, shape.width});
  CpuBackend().embedding(host_tensor(table, {shape.rows, shape.width}), valid_ids, expected);
  for (int64_t t = 0; t < shape.count; ++t) {
    if (ids[t] == valid_ids[t]) continue;
    std::fill_n(expected.f32() + t * shape.width, shape.width, 0.0f);
  }

  ShiftedBuffer device_table(dtype, table, shape.offset);
  DeviceBuffer device_ids = DeviceBuffer::from_ints(ids);
  ShiftedBuffer out = ShiftedBuffer::poisoned(dtype, shape.count * shape.width, shape.offset);
  kernels::embedding(dtype, device_table.data(), shape.rows, shape.width, device_ids.as<int32_t>(),
                     shape.count, out.data(), kDefaultStream);
  EXPECT_TRUE(all_close(out.download(), values_of(expected), 0.0, 0.0));  // a copy: exact
}

INSTANTIATE_TEST_SUITE_P(Shapes, EmbeddingTest,
                         ::testing::Combine(::testing::ValuesIn(kFloatTypes),
                                            ::testing::Values(EmbeddingCase{1000, 320, 1, 0},
                                                              EmbeddingCase{1000, 320, 4097, 0},
                                                              EmbeddingCase{50, 323, 17, 0},
                                                              EmbeddingCase{50, 320, 9, 1},
                                                              EmbeddingCase{7, 1, 5, 0})),
                         [](const auto& info) {
                           const EmbeddingCase& shape = std::get<1>(info.param);
                           return dtype_label(std::get<0>(info.param)) + "_rows" +
                                  std::to_string(shape.rows) + "_width" +
                                  std::to_string(shape.width) + "_count" +
                                  std::to_string(shape.count) +
                                  (shape.offset != 0 ? "_misaligned" : "");
                         });

// ---- rms_norm ---------------------------------------------------------------------------------

struct RmsNormCase {
  int64_t rows, hidden, offset;
};

class RmsNormTest : public ::testing::TestWithParam<
                        std::tuple<DType, RmsNormCase, bool /*fused*/, bool /*in_place*/>> {};

TEST_P(RmsNormTest, MatchesHuggingFaceRoundingOfTheCpuReference) {
  SERVELAB_REQUIRE_GPU();
  const auto [dtype, shape, fused, in_place] = GetParam();
  const int64_t count = shape.rows * shape.hidden;
  const float eps = 1e-5f;
  const std::vector<float> x = random_in(dtype, count, 21);
  const std::vector<float> residual = random_in(dtype, count, 22, 2.0f);
  std::vector<float> weight = random_values(shape.hidden, 23, 0.25f);
  for (float& w : weight) w += 1.0f;
  weight = round_to(dtype, weight);

  // Reference: the stored residual round(residual + x), then HF's double rounding
  // round(weight * round(norm(v))), with CpuBackend::rms_norm (unit weight) for norm(v).
  CpuBackend cpu;
  Tensor source = host_tensor(x, {shape.rows, shape.hidden});
  if (fused) {
    Tensor sum = host_tensor(residual, {shape.rows, shape.hidden});
    cpu.add(sum, source);
    source = host_tensor(round_to(dtype, values_of(sum)), {shape.rows, shape.hidden});
  }
  Tensor normalised = Tensor::zeros({shape.rows, shape.hidden});
  cpu.rms_norm(source, host_tensor(std::vector<float>(shape.hidden, 1.0f), {shape.hidden}), eps,
               normalised);
  std::vector<float> expected = round_to(dtype, values_of(normalised));
  for (int64_t i = 0; i < count; ++i) expected[i] *= weight[i % shape.hidden];
  expected = round_to(dtype, expected);

  ShiftedBuffer device_x(dtype, x, shape.offset);
  ShiftedBuffer device_residual(dtype, residual, shape.offset);
  ShiftedBuffer device_weight(dtype, weight, shape.offset);
  ShiftedBuffer separate_out = ShiftedBuffer::poisoned(dtype, count, shape.offset);
  ShiftedBuffer& out = in_place ? device_x : separate_out;
  kernels::rms_norm(dtype, device_x.data(), fused ? device_residual.data() : nullptr,
                    device_weight.data(), eps, shape.rows, shape.hidden, out.data(),
                    kDefaultStream);
  EXPECT_TRUE(all_close(out.download(), expected, default_atol(dtype), default_rtol(dtype)));
  if (fused) {
    // The residual stream is stored exactly as round(residual + x): the same fp32 sum, one
    // rounding.
    EXPECT_TRUE(all_close(device_residual.download(), values_of(source), 0.0, 0.0));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, RmsNormTest,
    ::testing::Combine(::testing::ValuesIn(kFloatTypes),
                       ::testing::Values(RmsNormCase{1, 320, 0}, RmsNormCase{4097, 320, 0},
                                         RmsNormCase{3, 323, 0}, RmsNormCase{5, 1000, 0},
                                         RmsNormCase{2, 4096, 0}, RmsNormCase{3, 16389, 0},
                                         RmsNormCase{6, 1, 0}, RmsNormCase{3, 320, 1}),
                       ::testing::Bool(), ::testing::Bool()),
    [](const auto& info) {
      const RmsNormCase& shape = std::get<1>(info.param);
      return dtype_label(std::get<0>(info.param)) + "_rows" + std::to_string(shape.rows) +
             "_hidden" + std::to_string(shape.hidden) + (shape.offset != 0 ? "_misaligned" : "") +
             (std::get<2>(info.param) ? "_fused" : "") +
             (std::get<3>(info.param) ? "_in_place" : "");
    });

// ---- rope -------------------------------------------------------------------------------------

enum class RopeTable { kDefault, kLinear, kLlama3 };

std::vector<float> rope_table(RopeTable kind, int head_dim) {
  RopeScaling scaling;
  double theta = 10000.0;
  if (kind == RopeTable::kLinear) {
    scaling.type = RopeScaling::Type::kLinear;
    scaling.factor = 4.0;
  } else if (kind == RopeTable::kLlama3) {
    // Llama 3.1's configuration.
    scaling.type = RopeScaling::Type::kLlama3;
    scaling.factor = 8.0;
    scaling.low_freq_factor = 1.0;
    scaling.high_freq_factor = 4.0;
    scaling.original_max_position_embeddings = 8192;
    theta = 500000.0;
  }
  return rope_inverse_frequencies(head_dim, theta, scaling);
}

std::string rope_table_label(RopeTable kind) {
  return kind == RopeTable::kDefault ? "default" : kind == RopeTable::kLinear ? "linear" : "llama3";
}

/// Rounds one value to `dtype` (identity for F32).
float round_one(DType dtype, float value) {
  return round_to(dtype, std::vector<float>{value})[0];
}

/// RoPE as Hugging Face's eager code computes it in a 16-bit dtype: cos and sin cast to the dtype,
/// each product rounded, then the sum. The kernel rounds at the same points (in F32 the CPU
/// backend's rope is the reference instead).
std::vector<float> hf_rounded_rope(DType dtype, std::vector<float> x, int heads, int head_dim,
                                   const std::vector<int32_t>& positions,
                                   const std::vector<float>& inv_freq) {
  const int half = head_dim / 2;
  for (size_t t = 0; t < positions.size(); ++t) {
    for (int i = 0; i < half; ++i) {
      const float angle = static_cast<float>(positions[t]) * inv_freq[i];
      const float c = round_one(dtype, std::cos(angle)), s = round_one(dtype, std::sin(angle));
      for (int h = 0; h < heads; ++h) {
        float* head = x.data() + (t * heads + h) * head_dim;
        const float x1 = head[i], x2 = head[i + half];
        head[i] = round_one(dtype, round_one(dtype, x1 * c) + round_one(dtype, -x2 * s));
        head[i + half] = round_one(dtype, round_one(dtype, x2 * c) + round_one(dtype, x1 * s));
      }
    }
  }
  return x;
}

class RopeTest
    : public ::testing::TestWithParam<
          std::tuple<DType, int /*head_dim*/, RopeTable, bool /*keys*/, int /*offset*/>> {};

TEST_P(RopeTest, RotatesQueriesAndKeysLikeTheCpuAtLongPositions) {
  SERVELAB_REQUIRE_GPU();
  const auto [dtype, head_dim, table_kind, with_keys, offset] = GetParam();
  const int num_heads = 32, num_kv_heads = 8;
  const int64_t tokens = 37;
  const std::vector<float> inv_freq = rope_table(table_kind, head_dim);
  // Positions up to 8191, where angles reach 8191 radians: __sinf would be off by ~1e-3 there.
  std::mt19937 rng(31);
  std::uniform_int_distribution<int32_t> pick(0, 8191);
  std::vector<int32_t> positions(tokens);
  for (int32_t& p : positions) p = pick(rng);
  positions[0] = 0;
  positions[1] = 8191;
  positions[2] = 1;
  const std::vector<int64_t> positions64(positions.begin(), positions.end());
  const std::vector<float> queries = random_in(dtype, tokens * num_heads * head_dim, 32);
  const std::vector<float> keys = random_in(dtype, tokens * num_kv_heads * head_dim, 33);

  CpuBackend cpu;
  Tensor expected_queries = host_tensor(queries, {tokens, num_heads, head_dim});
  Tensor expected_keys = host_tensor(keys, {tokens, num_kv_heads, head_dim});
  cpu.rope(expected_queries, positions64, inv_freq);
  cpu.rope(expected_keys, positions64, inv_freq);

  ShiftedBuffer device_queries(dtype, queries, offset);
  ShiftedBuffer device_keys(dtype, keys, offset);
  DeviceBuffer device_positions = DeviceBuffer::from_ints(positions);
  DeviceBuffer device_inv_freq = DeviceBuffer::from(DType::kF32, inv_freq);
  kernels::rope(dtype, device_queries.data(), num_heads, with_keys ? device_keys.data() : nullptr,
                num_kv_heads, head_dim, device_positions.as<int32_t>(), device_inv_freq.as<float>(),
                tokens, kDefaultStream);
  // fp32: 1e-4 * (1 + |ref|); fp16/bf16: the one rounding of the output.
  const double atol = dtype == DType::kF32 ? 1e-4 : default_atol(dtype);
  const double rtol = dtype == DType::kF32 ? 1e-4 : default_rtol(dtype);
  std::vector<float> expected_q = values_of(expected_queries);
  std::vector<float> expected_k = values_of(expected_keys);
  if (dtype != DType::kF32) {
    expected_q = hf_rounded_rope(dtype, queries, num_heads, head_dim, positions, inv_freq);
    expected_k = hf_rounded_rope(dtype, keys, num_kv_heads, head_dim, positions, inv_freq);
  }
  EXPECT_TRUE(all_close(device_queries.download(), expected_q, atol, rtol));
  const std::vector<float> expected = with_keys ? expected_k : keys;
  EXPECT_TRUE(all_close(device_keys.download(), expected, atol, rtol));
}

INSTANTIATE_TEST_SUITE_P(HeadsAndScalings, RopeTest,
                         ::testing::Combine(::testing::ValuesIn(kFloatTypes),
                                            ::testing::Values(64, 128, 40),
                                            ::testing::Values(RopeTable::kDefault,
                                                              RopeTable::kLinear,
                                                              RopeTable::kLlama3),
                                            ::testing::Bool(), ::testing::Values(0, 1)),
                         [](const auto& info) {
                           return dtype_label(std::get<0>(info.param)) + "_head" +
                                  std::to_string(std::get<1>(info.param)) + "_" +
                                  rope_table_label(std::get<2>(info.param)) +
                                  (std::get<3>(info.param) ? "_with_keys" : "_queries_only") +
                                  (std::get<4>(info.param) != 0 ? "_misaligned" : "");
                         });

// ---- silu_mul, add, add_bias ------------------------------------------------------------------

/// Which operands sit one element off 16-byte alignment.
enum class Layout { kAligned, kAllShifted, kSecondShifted };

int64_t offset_of(Layout layout, bool second) {
  return layout == Layout::kAllShifted || (layout == Layout::kSecondShifted && second) ? 1 : 0;
}

std::string layout_label(Layout layout) {
  return layout == Layout::kAligned      ? "aligned"
         : layout == Layout::kAllShifted ? "all_shifted"
                                         : "second_shifted";
}

class SiluMulTest
    : public ::testing::TestWithParam<std::tuple<DType, int64_t, Layout, bool /*in_place*/>> {};

TEST_P(SiluMulTest, MatchesCpuSiluTimesUp) {
  SERVELAB_REQUIRE_GPU();
  const auto [dtype, count, layout, in_place] = GetParam();
  const std::vector<float> gate = random_in(dtype, count, 41, 3.0f);
  const std::vector<float> up = random_in(dtype, count, 42);
  Tensor expected = Tensor::zeros({count});
  CpuBackend().silu_mul(host_tensor(gate, {count}), host_tensor(up, {count}), expected);

  ShiftedBuffer device_gate(dtype, gate, offset_of(layout, false));
  ShiftedBuffer device_up(dtype, up, offset_of(layout, true));
  ShiftedBuffer separate_out = ShiftedBuffer::poisoned(dtype, count, offset_of(layout, false));
  ShiftedBuffer& out = in_place ? device_gate : separate_out;
  kernels::silu_mul(dtype, device_gate.data(), device_up.data(), out.data(), count, kDefaultStream);
  EXPECT_TRUE(all_close(out.download(), round_to(dtype, values_of(expected)), default_atol(dtype),
                        default_rtol(dtype)));
}

INSTANTIATE_TEST_SUITE_P(Counts, SiluMulTest,
                         ::testing::Combine(::testing::ValuesIn(kFloatTypes),
                                            ::testing::Values<int64_t>(1, 7, 4096 * 3 + 5,
                                                                       (1 << 20) + 3),
                                            ::testing::Values(Layout::kAligned, Layout::kAllShifted,
                                                              Layout::kSecondShifted),
                                            ::testing::Bool()),
                         [](const auto& info) {
                           return dtype_label(std::get<0>(info.param)) + "_count" +
                                  std::to_string(std::get<1>(info.param)) + "_" +
                                  layout_label(std::get<2>(info.param)) +
                                  (std::get<3>(info.param) ? "_in_place" : "");
                         });

class AddTest : public ::testing::TestWithParam<std::tuple<DType, int64_t, Layout>> {};

TEST_P(AddTest, AddsInPlaceWithOneRounding) {
  SERVELAB_REQUIRE_GPU();
  const auto [dtype, count, layout] = GetParam();
  const std::vector<float> x = random_in(dtype, count, 51);
  const std::vector<float> y = random_in(dtype, count, 52);
  Tensor expected = host_tensor(x, {count});
  CpuBackend().add(expected, host_tensor(y, {count}));

  ShiftedBuffer device_x(dtype, x, offset_of(layout, false));
  ShiftedBuffer device_y(dtype, y, offset_of(layout, true));
  kernels::add(dtype, device_x.data(), device_y.data(), count, kDefaultStream);
  // The same fp32 sum rounded once, as the reference: exact.
  EXPECT_TRUE(all_close(device_x.download(), round_to(dtype, values_of(expected)), 0.0, 0.0));
}

INSTANTIATE_TEST_SUITE_P(Counts, AddTest,
                         ::testing::Combine(::testing::ValuesIn(kFloatTypes),
                                            ::testing::Values<int64_t>(1, 7, 4096 * 3 + 5,
                                                                       (1 << 20) + 3),
                                            ::testing::Values(Layout::kAligned, Layout::kAllShifted,
                                                              Layout::kSecondShifted)),
                         [](const auto& info) {
                           return dtype_label(std::get<0>(info.param)) + "_count" +
                                  std::to_string(std::get<1>(info.param)) + "_" +
                                  layout_label(std::get<2>(info.param));
                         });

struct AddBiasCase {
  int64_t rows, cols;
};

class AddBiasTest : public ::testing::TestWithParam<std::tuple<DType, AddBiasCase, Layout>> {};

TEST_P(AddBiasTest, AddsTheBiasToEveryRow) {
  SERVELAB_REQUIRE_GPU();
  const auto [dtype, shape, layout] = GetParam();
  const int64_t count = shape.rows * shape.cols;
  const std::vector<float> out = random_in(dtype, count, 61);
  const std::vector<float> bias = random_in(dtype, shape.cols, 62);
  // A plain loop: a linear layer's bias, what CpuBackend::linear adds after its GEMM.
  std::vector<float> expected(out);
  for (int64_t i = 0; i < count; ++i) expected[i] += bias[i % shape.cols];

  ShiftedBuffer device_out(dtype, out, offset_of(layout, false));
  ShiftedBuffer device_bias(dtype, bias, offset_of(layout, true));
  kernels::add_bias(dtype, device_out.data(), device_bias.data(), shape.rows, shape.cols,
                    kDefaultStream);
  EXPECT_TRUE(all_close(device_out.download(), round_to(dtype, expected), 0.0, 0.0));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, AddBiasTest,
    ::testing::Combine(::testing::ValuesIn(kFloatTypes),
                       ::testing::Values(AddBiasCase{1, 320}, AddBiasCase{4097, 323},
                                         AddBiasCase{3, 4096}, AddBiasCase{5, 1}),
                       ::testing::Values(Layout::kAligned, Layout::kAllShifted,
                                         Layout::kSecondShifted)),
    [](const auto& info) {
      const AddBiasCase& shape = std::get<1>(info.param);
      return dtype_label(std::get<0>(info.param)) + "_rows" + std::to_string(shape.rows) + "_cols" +
             std::to_string(shape.cols) + "_" + layout_label(std::get<2>(info.param));
    });

// ---- convert ----------------------------------------------------------------------------------

class ConvertTest : public ::testing::TestWithParam<std::tuple<DType, DType, int64_t, Layout>> {};

TEST_P(ConvertTest, RoundsOnceToTheTargetType) {
  SERVELAB_REQUIRE_GPU();
  const auto [from, to, count, layout] = GetParam();
  std::vector<float> values = random_values(count, 71, 3.0f);
  // Small magnitudes too: fp16 subnormals (below 6.1e-5) must round like the CPU's conversion.
  for (int64_t i = 5; i < count; i += 97) values[i] *= 1e-5f;
  values = round_to(from, values);

  ShiftedBuffer in(from, values, offset_of(layout, false));
  ShiftedBuffer out = ShiftedBuffer::poisoned(to, count, offset_of(layout, true));
  kernels::convert(from, in.data(), to, out.data(), count, kDefaultStream);
  EXPECT_TRUE(all_close(out.download(), round_to(to, values), 0.0, 0.0));
}

INSTANTIATE_TEST_SUITE_P(Pairs, ConvertTest,
                         ::testing::Combine(::testing::ValuesIn(kFloatTypes),
                                            ::testing::ValuesIn(kFloatTypes),
                                            ::testing::Values<int64_t>(1, 13, 100003),
                                            ::testing::Values(Layout::kAligned, Layout::kAllShifted,
                                                              Layout::kSecondShifted)),
                         [](const auto& info) {
                           return dtype_label(std::get<0>(info.param)) + "_to_" +
                                  dtype_label(std::get<1>(info.param)) + "_count" +
                                  std::to_string(std::get<2>(info.param)) + "_" +
                                  layout_label(std::get<3>(info.param));
                         });

// ---- argmax -----------------------------------------------------------------------------------

/// torch.argmax on NaN-free rows: the first index of the largest value.
std::vector<int32_t> reference_argmax(const std::vector<float>& logits, int64_t rows,
                                      int64_t vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits.data() + r * vocab;
    ids[r] = static_cast<int32_t>(std::max_element(row, row + vocab) - row);  // first maximum
  }
  return ids;
}

struct ArgmaxCase {
  int64_t rows, vocab, offset;
};

class ArgmaxTest : public ::testing::TestWithParam<std::tuple<DType, ArgmaxCase>> {};

TEST_P(ArgmaxTest, PicksTheFirstLargestLogit) {
  SERVELAB_REQUIRE_GPU();
  const auto [dtype, shape] = GetParam();
  const int64_t vocab = shape.vocab;
  std::vector<float> logits = random_in(dtype, shape.rows * vocab, 81);
  auto row = [&](int64_t r) { return logits.begin() + r * vocab; };
  // Planted rows, where the shape has them (random values stay far below 8):
  //  1: the maximum is the last element;
  //  2: the maximum appears at several indices, in different threads and warps: the first wins;
  //  3: all equal: index 0;
  //  4: all -inf: index 0.
  // 16 and 17 share a vector; 16 + 8192 is a later iteration of 16's thread (for N = 1, 4, 8).
  std::set<int64_t> ties = {vocab - 1,
                            vocab / 2,
                            vocab / 3,
                            std::min<int64_t>(17, vocab - 1),
                            std::min<int64_t>(16, vocab - 1),
                            std::min<int64_t>(16 + 8192, vocab - 1)};
  if (shape.rows > 1) row(1)[vocab - 1] = 8.0f;
  if (shape.rows > 2) {
    for (int64_t index : ties) row(2)[index] = 8.0f;
  }
  if (shape.rows > 3) std::fill(row(3), row(3) + vocab, 0.5f);
  if (shape.rows > 4) std::fill(row(4), row(4) + vocab, -std::numeric_limits<float>::infinity());
  const std::vector<int32_t> expected = reference_argmax(logits, shape.rows, vocab);
  if (shape.rows > 2) {
    ASSERT_EQ(expected[2], *ties.begin());  // the reference keeps the first maximum too
  }

  ShiftedBuffer device_logits(dtype, logits, shape.offset);
  DeviceBuffer ids(DType::kI32, shape.rows);
  ids.poison();
  kernels::argmax(dtype, device_logits.data(), shape.rows, vocab, ids.as<int32_t>(),
                  kDefaultStream);
  const std::vector<int32_t> actual = ids.download_ints();
  EXPECT_EQ(actual, expected);
  if (shape.rows > 1) {
    EXPECT_EQ(actual[1], vocab - 1) << "maximum at the last element";
  }
  if (shape.rows > 3) {
    EXPECT_EQ(actual[3], 0) << "all equal";
  }
  if (shape.rows > 4) {
    EXPECT_EQ(actual[4], 0) << "all -inf";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ArgmaxTest,
    ::testing::Combine(::testing::ValuesIn(kFloatTypes),
                       ::testing::Values(ArgmaxCase{1, 128256, 0}, ArgmaxCase{6, 128256, 0},
                                         ArgmaxCase{6, 128256, 1}, ArgmaxCase{4097, 323, 0},
                                         ArgmaxCase{6, 1000, 0}, ArgmaxCase{6, 7, 0},
                                         ArgmaxCase{3, 1, 0})),
    [](const auto& info) {
      const ArgmaxCase& shape = std::get<1>(info.param);
      return dtype_label(std::get<0>(info.param)) + "_rows" + std::to_string(shape.rows) +
             "_vocab" + std::to_string(shape.vocab) + (shape.offset != 0 ? "_misaligned" : "");
    });

class ArgmaxNanTest : public ::testing::TestWithParam<DType> {};

// The documented rule (argmax.cu): NaN ranks above every number, so a row holding NaN returns the
// index of its first NaN, as torch.argmax does.
TEST_P(ArgmaxNanTest, FirstNanWinsAsInTorch) {
  SERVELAB_REQUIRE_GPU();
  const DType dtype = GetParam();
  const int64_t rows = 3, vocab = 128256;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> logits = random_in(dtype, rows * vocab, 91);
  logits[0 * vocab + 10] = 9.0f;
  logits[0 * vocab + 5000] = nan;
  logits[1 * vocab + 70000] = nan;
  logits[1 * vocab + 300] = nan;
  logits[1 * vocab + 200] = 9.0f;
  logits[2 * vocab + 4242] = 9.0f;  // no NaN: the ordinary rule

  DeviceBuffer device_logits = DeviceBuffer::from(dtype, logits);
  DeviceBuffer ids(DType::kI32, rows);
  ids.poison();
  kernels::argmax(dtype, device_logits.data(), rows, vocab, ids.as<int32_t>(), kDefaultStream);
  EXPECT_EQ(ids.download_ints(), (std::vector<int32_t>{5000, 300, 4242}));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, ArgmaxNanTest, ::testing::ValuesIn(kFloatTypes),
                         [](const auto& info) { return dtype_label(info.param); });

// ---- fill_normal ------------------------------------------------------------------------------

class FillNormalTest : public ::testing::TestWithParam<DType> {};

TEST_P(FillNormalTest, IsNormalAndDeterministicPerSeedAndIndex) {
  SERVELAB_REQUIRE_GPU();
  const DType dtype = GetParam();
  const int64_t count = (1 << 20) + 1;  // odd: the last pair has one element
  const float target_std = 0.02f;
  auto fill = [&](int64_t n, uint64_t seed) {
    DeviceBuffer buffer(dtype, n);
    buffer.poison();
    kernels::fill_normal(dtype, buffer.data(), n, target_std, seed, kDefaultStream);
    return buffer.download();
  };
  const std::vector<float> values = fill(count, 7);

  double sum = 0.0, sum_squares = 0.0;
  int64_t within_one_std = 0;
  for (float v : values) {
    ASSERT_TRUE(std::isfinite(v));
    sum += v;
    sum_squares += static_cast<double>(v) * v;
    within_one_std += std::fabs(v) < target_std ? 1 : 0;
  }
  const double mean = sum / count;
  const double sample_std = std::sqrt(sum_squares / count - mean * mean);
  EXPECT_LT(std::fabs(mean), 6.0 * target_std / std::sqrt(static_cast<double>(count)));
  EXPECT_NEAR(sample_std / target_std, 1.0, 0.01);
  // The shape, not only the moments: 68.3% of a normal lies within one std (a uniform: 57.7%).
  EXPECT_NEAR(static_cast<double>(within_one_std) / count, 0.6827, 0.01);
  EXPECT_GT(std::set<float>(values.begin(), values.end()).size(), 100u) << "values vary";

  EXPECT_EQ(fill(count, 7), values) << "same seed, same values";
  const std::vector<float> prefix = fill(1001, 7);
  EXPECT_TRUE(std::equal(prefix.begin(), prefix.end(), values.begin()))
      << "a value depends only on (seed, index)";
  const std::vector<float> other = fill(count, 8);
  int64_t same = 0;
  for (int64_t i = 0; i < count; ++i) same += other[i] == values[i] ? 1 : 0;
  EXPECT_LT(same, count / 20) << "another seed, other values";
}

INSTANTIATE_TEST_SUITE_P(Dtypes, FillNormalTest, ::testing::ValuesIn(kFloatTypes),
                         [](const auto& info) { return dtype_label(info.param); });

// ---- argument checks: no GPU needed, they throw before any CUDA call ---------------------------

/// Passes when `call` throws servelab::Error whose message contains `kernel`.
::testing::AssertionResult throws_naming(const std::function<void()>& call, const char* kernel) {
  try {
    call();
  } catch (const Error& error) {
    if (std::string(error.what()).find(kernel) != std::string::npos) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure()
           << "message does not name " << kernel << ": " << error.what();
  }
  return ::testing::AssertionFailure() << kernel << ": no servelab::Error thrown";
}

TEST(ElementwiseKernelArguments, UnsupportedDtypeThrowsWithoutAGpu) {
  const DType i32 = DType::kI32;
  int32_t ids[4] = {0, 0, 0, 0};
  float data[64] = {};
  EXPECT_TRUE(throws_naming(
      [&] { kernels::embedding(i32, data, 4, 4, ids, 4, data, kDefaultStream); }, "embedding"));
  EXPECT_TRUE(throws_naming(
      [&] { kernels::rms_norm(i32, data, nullptr, data, 1e-5f, 2, 4, data, kDefaultStream); },
      "rms_norm"));
  EXPECT_TRUE(throws_naming(
      [&] { kernels::rope(i32, data, 1, nullptr, 0, 4, ids, data, 2, kDefaultStream); }, "rope"));
  EXPECT_TRUE(throws_naming([&] { kernels::silu_mul(i32, data, data, data, 8, kDefaultStream); },
                            "silu_mul"));
  EXPECT_TRUE(throws_naming([&] { kernels::add(i32, data, data, 8, kDefaultStream); }, "add"));
  EXPECT_TRUE(
      throws_naming([&] { kernels::add_bias(i32, data, data, 2, 4, kDefaultStream); }, "add_bias"));
  EXPECT_TRUE(throws_naming(
      [&] { kernels::convert(i32, data, DType::kF32, data, 8, kDefaultStream); }, "convert"));
  EXPECT_TRUE(throws_naming(
      [&] { kernels::convert(DType::kF32, data, i32, data, 8, kDefaultStream); }, "convert"));
  EXPECT_TRUE(
      throws_naming([&] { kernels::argmax(i32, data, 2, 4, ids, kDefaultStream); }, "argmax"));
  EXPECT_TRUE(throws_naming([&] { kernels::fill_normal(i32, data, 8, 1.0f, 1, kDefaultStream); },
                            "fill_normal"));
}

TEST(ElementwiseKernelArguments, NegativeSizesThrowWithoutAGpu) {
  const DType f16 = DType::kF16;
  int32_t ids[4] = {0, 0, 0, 0};
  float data[64] = {};
  EXPECT_TRUE(throws_naming(
      [&] { kernels::embedding(f16, data, 4, 4, ids, -1, data, kDefaultStream); }, "embedding"));
  EXPECT_TRUE(throws_naming(
      [&] { kernels::embedding(f16, data, -4, 4, ids, 1, data, kDefaultStream); }, "embedding"));
  EXPECT_TRUE(throws_naming(
      [&] { kernels::embedding(f16, data, 4, -4, ids, 1, data, kDefaultStream); }, "embedding"));
  EXPECT_TRUE(throws_naming(
      [&] { kernels::rms_norm(f16, data, nullptr, data, 1e-5f, -2, 4, data, kDefaultStream); },
      "rms_norm"));
  EXPECT_TRUE(throws_naming(
      [&] { kernels::rms_norm(f16, data, nullptr, data, 1e-5f, 2, -4, data, kDefaultStream); },
      "rms_norm"));
  EXPECT_TRUE(throws_naming(
      [&] { kernels::rope(f16, data, 1, nullptr, 0, 4, ids, data, -2, kDefaultStream); }, "rope"));
  EXPECT_TRUE(throws_naming([&] { kernels::silu_mul(f16, data, data, data, -8, kDefaultStream); },
                            "silu_mul"));
  EXPECT_TRUE(throws_naming([&] { kernels::add(f16, data, data, -8, kDefaultStream); }, "add"));
  EXPECT_TRUE(throws_naming([&] { kernels::add_bias(f16, data, data, -2, 4, kDefaultStream); },
                            "add_bias"));
  EXPECT_TRUE(throws_naming([&] { kernels::add_bias(f16, data, data, 2, -4, kDefaultStream); },
                            "add_bias"));
  EXPECT_TRUE(throws_naming(
      [&] { kernels::convert(f16, data, DType::kF32, data, -8, kDefaultStream); }, "convert"));
  EXPECT_TRUE(
      throws_naming([&] { kernels::argmax(f16, data, -2, 4, ids, kDefaultStream); }, "argmax"));
  EXPECT_TRUE(
      throws_naming([&] { kernels::argmax(f16, data, 2, -4, ids, kDefaultStream); }, "argmax"));
  EXPECT_TRUE(throws_naming([&] { kernels::fill_normal(f16, data, -8, 1.0f, 1, kDefaultStream); },
                            "fill_normal"));
}

TEST(ElementwiseKernelArguments, ImpossibleShapesAndMissingPointersThrowWithoutAGpu) {
  const DType bf16 = DType::kBF16;
  int32_t ids[4] = {0, 0, 0, 0};
  float data[64] = {};
  // RoPE pairs i with i + head_dim / 2: an odd head_dim has no rotate-half layout.
  EXPECT_TRUE(throws_naming(
      [&] { kernels::rope(bf16, data, 1, nullptr, 0, 63, ids, data, 2, kDefaultStream); }, "rope"));
  EXPECT_TRUE(throws_naming(
      [&] { kernels::rope(bf16, data, 0, nullptr, 0, 64, ids, data, 2, kDefaultStream); }, "rope"));
  EXPECT_TRUE(throws_naming(
      [&] { kernels::rope(bf16, data, 1, data, 0, 64, ids, data, 2, kDefaultStream); }, "rope"));
  EXPECT_TRUE(throws_naming(
      [&] { kernels::rope(bf16, data, 1, nullptr, 0, 64, nullptr, data, 2, kDefaultStream); },
      "rope"));
  EXPECT_TRUE(throws_naming(
      [&] { kernels::rms_norm(bf16, data, nullptr, data, 1e-5f, 2, 0, data, kDefaultStream); },
      "rms_norm"));
  EXPECT_TRUE(throws_naming(
      [&] { kernels::rms_norm(bf16, data, nullptr, nullptr, 1e-5f, 2, 4, data, kDefaultStream); },
      "rms_norm"));
  EXPECT_TRUE(
      throws_naming([&] { kernels::argmax(bf16, data, 2, 0, ids, kDefaultStream); }, "argmax"));
  EXPECT_TRUE(throws_naming(
      [&] { kernels::silu_mul(bf16, data, nullptr, data, 8, kDefaultStream); }, "silu_mul"));
  EXPECT_TRUE(
      throws_naming([&] { kernels::embedding(bf16, data, 4, 4, nullptr, 2, data, kDefaultStream); },
                    "embedding"));
  EXPECT_TRUE(throws_naming([&] { kernels::fill_normal(bf16, data, 8, -1.0f, 1, kDefaultStream); },
                            "fill_normal"));
  EXPECT_TRUE(throws_naming(
      [&] {
        kernels::fill_normal(bf16, data, 8, std::numeric_limits<float>::quiet_NaN(), 1,
                             kDefaultStream);
      },
      "fill_normal"));
}

TEST(ElementwiseKernelArguments, EmptyLaunchesDoNothingWithoutAGpu) {
  // Zero work returns before any pointer or CUDA call: null pointers are fine.
  const DType f32 = DType::kF32;
  EXPECT_NO_THROW(kernels::embedding(f32, nullptr, 0, 8, nullptr, 0, nullptr, kDefaultStream));
  EXPECT_NO_THROW(
      kernels::rms_norm(f32, nullptr, nullptr, nullptr, 1e-5f, 0, 8, nullptr, kDefaultStream));
  EXPECT_NO_THROW(
      kernels::rope(f32, nullptr, 4, nullptr, 0, 64, nullptr, nullptr, 0, kDefaultStream));
  EXPECT_NO_THROW(kernels::silu_mul(f32, nullptr, nullptr, nullptr, 0, kDefaultStream));
  EXPECT_NO_THROW(kernels::add(f32, nullptr, nullptr, 0, kDefaultStream));
  EXPECT_NO_THROW(kernels::add_bias(f32, nullptr, nullptr, 0, 8, kDefaultStream));
  EXPECT_NO_THROW(kernels::convert(f32, nullptr, DType::kBF16, nullptr, 0, kDefaultStream));
  EXPECT_NO_THROW(kernels::argmax(f32, nullptr, 0, 8, nullptr, kDefaultStream));
  EXPECT_NO_THROW(kernels::fill_normal(f32, nullptr, 0, 1.0f, 1, kDefaultStream));
}

}  // namespace
}  // namespace servelab
