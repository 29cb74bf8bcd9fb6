// kernels::gemv (the batch-1 linear layer) against a plain fp32 loop on the same rounded
// inputs: widths from one vector (8) to Llama's 14336, feature counts that do not fill
// a block, with and without bias, in fp16 and bf16; poisoned outputs; and the cases it declines.
#include <gtest/gtest.h>

#include <tuple>

#include "kernel_test_helpers.h"
#include "kernels/kernels.h"

namespace servelab {
namespace {

using testing::all_close;
using testing::DeviceBuffer;
using testing::random_values;
using testing::round_to;

class GemvTest : public ::testing::TestWithParam<std::tuple<DType, int64_t /*rows*/, int64_t /*in*/,
                                                            int64_t /*features*/, bool /*bias*/>> {
};

TEST_P(GemvTest, MatchesAnFp32LoopOnTheSameInputs) {
  SERVELAB_REQUIRE_GPU();
  const auto [dtype, rows, in, features, with_bias] = GetParam();
  const std::vector<float> x = round_to(dtype, random_values(rows * in, 11));
  const std::vector<float> w = round_to(dtype, random_values(features * in, 12, 0.05f));
  const std::vector<float> b = round_to(dtype, random_values(features, 13));
  std::vector<float> expected(static_cast<size_t>(rows * features));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t n = 0; n < features; ++n) {
      double sum = with_bias ? b[n] : 0.0;
      for (int64_t k = 0; k < in; ++k) sum += static_cast<double>(x[r * in + k]) * w[n * in + k];
      expected[r * features + n] = static_cast<float>(sum);
    }
  }
  DeviceBuffer device_x = DeviceBuffer::from(dtype, x);
  DeviceBuffer device_w = DeviceBuffer::from(dtype, w);
  DeviceBuffer device_b = DeviceBuffer::from(dtype, b);
  DeviceBuffer out(dtype, rows * features);
  out.poison();
  ASSERT_TRUE(
      kernels::gemv_supported(dtype, rows, in, device_x.data(), device_w.data(), out.data()));
  kernels::gemv(dtype, device_x.data(), rows, device_w.data(),
                with_bias ? device_b.data() : nullptr, features, in, out.data(), nullptr);
  // One rounding of the output, plus fp32 summation order over up to 14336 terms.
  EXPECT_TRUE(all_close(out.download(), round_to(dtype, expected), testing::default_atol(dtype),
                        testing::default_rtol(dtype)));
}

INSTANTIATE_TEST_SUITE_P(Shapes, GemvTest,
                         ::testing::Values(std::make_tuple(DType::kBF16, 1, 4096, 4096, false),
                                           std::make_tuple(DType::kBF16, 1, 14336, 4097, false),
                                           std::make_tuple(DType::kBF16, 1, 14336, 33, true),
                                           std::make_tuple(DType::kBF16, 1, 8, 7, true),
                                           std::make_tuple(DType::kBF16, 1, 320, 3072, false),
                                           std::make_tuple(DType::kBF16, 1, 864, 320, true),
                                           std::make_tuple(DType::kF16, 1, 4096, 1000, true),
                                           std::make_tuple(DType::kF16, 1, 1032, 9, false),
                                           std::make_tuple(DType::kF16, 1, 40, 130, true)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) == DType::kBF16 ? "bf16"
                                                                                      : "f16") +
                                  "_rows" + std::to_string(std::get<1>(info.param)) + "_in" +
                                  std::to_string(std::get<2>(info.param)) + "_out" +
                                  std::to_string(std::get<3>(info.param)) +
                                  (std::get<4>(info.param) ? "_bias" : "");
                         });

TEST(Gemv, DeclinesWhatItDoesNotHandleSoTheBackendUsesCublas) {
  alignas(16) static char buffer[64];
  const void* p = buffer;
  EXPECT_FALSE(kernels::gemv_supported(DType::kF32, 1, 64, p, p, p));   // fp32: cuBLAS
  EXPECT_FALSE(kernels::gemv_supported(DType::kBF16, 5, 64, p, p, p));  // too many rows
  EXPECT_FALSE(kernels::gemv_supported(DType::kBF16, 1, 60, p, p, p));  // not a multiple of 8
  EXPECT_FALSE(kernels::gemv_supported(DType::kBF16, 1, 64, buffer + 2, p, p));  // misaligned
  EXPECT_FALSE(kernels::gemv_supported(DType::kBF16, 1, 1 << 20, p, p, p));  // x too big for shared
  EXPECT_TRUE(kernels::gemv_supported(DType::kBF16, 1, 64, p, p, p));
  EXPECT_THROW(kernels::gemv(DType::kF32, p, 1, p, nullptr, 8, 64, buffer, nullptr), Error);
}

}  // namespace
}  // namespace servelab
