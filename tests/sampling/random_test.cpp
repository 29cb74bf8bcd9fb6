#include "sampling/random.h"

#include <gtest/gtest.h>

namespace servelab {
namespace {

// The value of an mt19937_64 output as our uniform01 maps it: top 53 bits times 2^-53.
double mapped(uint64_t engine_output) {
  return static_cast<double>(engine_output >> 11) * 0x1.0p-53;
}

TEST(RandomGenerator, FollowsTheEngineTheCppStandardSpecifies) {
  // [rand.predef]: the 10000th output of a default-constructed mt19937_64 (seed 5489) is
  // 9981545732273789042. If this holds, every platform produces the same numbers.
  RandomGenerator generator(5489);
  double value = 0.0;
  for (int i = 0; i < 10000; ++i) value = generator.uniform01();
  EXPECT_EQ(value, mapped(9981545732273789042ull));
}

TEST(RandomGenerator, Seed42StartsWithTheRecordedDraws) {
  // Recorded once; a change here means every seeded output of servelab changed.
  RandomGenerator generator(42);
  EXPECT_EQ(generator.uniform01(), mapped(13930160852258120406ull));
  EXPECT_DOUBLE_EQ(generator.uniform01(), 0.63903139385469743);
  EXPECT_DOUBLE_EQ(generator.uniform01(), 0.7521452007480266);
}

TEST(RandomGenerator, DrawsLieInHalfOpenUnitIntervalWithMeanOneHalf) {
  RandomGenerator generator(7);
  const int draws = 100000;
  double sum = 0.0;
  for (int i = 0; i < draws; ++i) {
    const double value = generator.uniform01();
    ASSERT_GE(value, 0.0);
    ASSERT_LT(value, 1.0);
    sum += value;
  }
  // The mean of n uniforms has std 1/sqrt(12 n) ~ 0.0009; 5 std is 0.0046.
  EXPECT_NEAR(sum / draws, 0.5, 0.0046);
}

TEST(RandomGenerator, SameSeedRepeatsAndDifferentSeedsDiffer) {
  RandomGenerator a(123), b(123), c(124);
  int differing = 0;
  for (int i = 0; i < 100; ++i) {
    const double value_a = a.uniform01();
    EXPECT_EQ(value_a, b.uniform01());
    if (value_a != c.uniform01()) ++differing;
  }
  EXPECT_EQ(differing, 100);
}

}  // namespace
}  // namespace servelab
