// The per-request random generator: uniform numbers in [0, 1) that are bit-for-bit the same on
// every platform, compiler and standard library for a given seed. It must never use the <random>
// distributions, whose algorithms the C++ standard leaves to each library.
#pragma once

#include <cstdint>
#include <random>

namespace servelab {

/// std::mt19937_64 seeded with the request's seed. The engine's output sequence is fixed by the
/// C++ standard (its 10000th output from the default seed is specified), unlike
/// std::uniform_real_distribution, so we map its 64-bit outputs to doubles ourselves.
class RandomGenerator {
 public:
  explicit RandomGenerator(uint64_t seed) : engine_(seed) {}

  /// The next number in [0, 1): the top 53 bits of one 64-bit output, times 2^-53. Every value is
  /// a multiple of 2^-53, exactly representable as a double, and 1.0 can never come out.
  double uniform01() {
    const uint64_t bits = engine_() >> 11;
    return static_cast<double>(bits) * 0x1.0p-53;
  }

 private:
  std::mt19937_64 engine_;
};

}  // namespace servelab
