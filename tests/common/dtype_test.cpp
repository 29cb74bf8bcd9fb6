#include "common/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>

namespace servelab {
namespace {

TEST(DType, Bf16RoundTripIsExactForRepresentableValues) {
  for (float value : {0.0f, -0.0f, 1.0f, -2.5f, 0.15625f, 3.0e38f, 1.0e-38f}) {
    uint16_t bits = float_to_bf16(value);
    float back = bf16_to_float(bits);
    EXPECT_EQ(float_to_bf16(back), bits) << value;
  }
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f)), 1.0f);
  EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_float(0xc020), -2.5f);
}

TEST(DType, Bf16RoundsToNearestEven) {
  // 1 + 2^-8 lies exactly between two bf16 values (1 and 1 + 2^-7): ties go to even, i.e. 1.
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + std::ldexp(1.0f, -8))), 1.0f);
  // 1 + 3*2^-8 lies between 1+2^-7 (odd) and 1+2^-6 (even): goes up to 1 + 2^-6.
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8))),
            1.0f + std::ldexp(1.0f, -6));
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(DType, Fp16DecodesKnownBitPatterns) {
  EXPECT_EQ(fp16_to_float(0x3c00), 1.0f);
  EXPECT_EQ(fp16_to_float(0xc000), -2.0f);
  EXPECT_EQ(fp16_to_float(0x7bff), 65504.0f);
  EXPECT_EQ(fp16_to_float(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(fp16_to_float(0x0400), std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_TRUE(std::isinf(fp16_to_float(0x7c00)));
  EXPECT_TRUE(std::isnan(fp16_to_float(0x7e00)));
  EXPECT_TRUE(std::signbit(fp16_to_float(0x8000)));
}

TEST(DType, Fp16EncodeInvertsDecodeForEveryFiniteValue) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    uint16_t half = static_cast<uint16_t>(bits);
    float value = fp16_to_float(half);
    if (std::isnan(value)) continue;
    ASSERT_EQ(float_to_fp16(value), half) << std::hex << bits;
  }
}

TEST(DType, Fp16EncodeRoundsToNearest) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-70000.0f, 70000.0f);
  for (int i = 0; i < 10000; ++i) {
    float value = dist(rng) * (i % 2 ? 1.0f : 1e-4f);
    float rounded = fp16_to_float(float_to_fp16(value));
    if (std::fabs(value) >= 65520.0f) {
      EXPECT_TRUE(std::isinf(rounded));
      continue;
    }
    // No other fp16 value may be closer than the one chosen.
    uint16_t bits = float_to_fp16(value);
    for (int step : {-1, 1}) {
      float neighbour = fp16_to_float(static_cast<uint16_t>(bits + step));
      if (std::isnan(neighbour) || std::isinf(neighbour)) continue;
      EXPECT_LE(std::fabs(rounded - value), std::fabs(neighbour - value)) << value;
    }
  }
}

TEST(DType, ConvertToF32HandlesUnalignedSources) {
  unsigned char buffer[9];
  uint16_t values[4] = {float_to_bf16(1.5f), float_to_bf16(-3.0f), float_to_bf16(0.25f), 0};
  std::memcpy(buffer + 1, values, 8);  // deliberately odd address
  float out[4];
  convert_to_f32(DType::kBF16, buffer + 1, out, 4);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[1], -3.0f);
  EXPECT_EQ(out[2], 0.25f);
  EXPECT_EQ(out[3], 0.0f);
}

}  // namespace
}  // namespace servelab
