#include "common/dtype.h"

#include <cmath>
#include <cstring>

#include "common/error.h"

namespace servelab {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
  }
  fail("unknown dtype");
}

std::string dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kI32:
      return "I32";
  }
  fail("unknown dtype");
}

float bf16_to_float(uint16_t bits) {
  // bf16 is the top half of an fp32: shift it back into place.
  uint32_t word = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &word, sizeof value);
  return value;
}

uint16_t float_to_bf16(float value) {
  uint32_t word;
  std::memcpy(&word, &value, sizeof word);
  if (std::isnan(value)) return static_cast<uint16_t>((word >> 16) | 0x40);  // keep it a NaN
  // Round to nearest, ties to even: add 0x7fff plus the lowest kept bit, then truncate.
  uint32_t rounding = 0x7fff + ((word >> 16) & 1);
  return static_cast<uint16_t>((word + rounding) >> 16);
}

float fp16_to_float(uint16_t bits) {
  uint32_t sign = (bits & 0x8000u) << 16;
  uint32_t exponent = (bits >> 10) & 0x1f;
  uint32_t mantissa = bits & 0x3ffu;
  uint32_t word;
  if (exponent == 0x1f) {  // inf or NaN
    word = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {  // normal: rebias 15 -> 127
    word = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {  // signed zero
    word = sign;
  } else {  // subnormal fp16 is a normal fp32: value = mantissa * 2^-24
    float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  float value;
  std::memcpy(&value, &word, sizeof value);
  return value;
}

uint16_t float_to_fp16(float value) {
  uint32_t word;
  std::memcpy(&word, &value, sizeof word);
  uint16_t sign = static_cast<uint16_t>((word >> 16) & 0x8000u);
  float magnitude = std::fabs(value);
  if (std::isnan(value)) return sign | 0x7e00;
  if (magnitude >= 65520.0f) return sign | 0x7c00;  // rounds to infinity
  if (magnitude < 6.103515625e-05f) {
    // Subnormal range: the value in units of 2^-24, rounded to nearest even.
    float units = std::nearbyint(magnitude * 16777216.0f);
    return sign | static_cast<uint16_t>(units);
  }
  // Normal range: drop 13 mantissa bits with round to nearest even, then rebias 127 -> 15.
  uint32_t rounded = (word & 0x7fffffffu) + 0xfffu + ((word >> 13) & 1u);
  return sign | static_cast<uint16_t>((rounded >> 13) - (112u << 10));
}

void convert_to_f32(DType dtype, const void* src, float* dst, size_t count) {
  if (count == 0) return;  // empty tensors may have null pointers, which memcpy must not see
  const auto* bytes = static_cast<const unsigned char*>(src);
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, count * sizeof(float));
      return;
    case DType::kF16:
    case DType::kBF16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t bits;
        std::memcpy(&bits, bytes + 2 * i, 2);  // the source may be unaligned (memory-mapped)
        dst[i] = dtype == DType::kF16 ? fp16_to_float(bits) : bf16_to_float(bits);
      }
      return;
    case DType::kI32:
      fail("convert_to_f32: I32 is not a floating-point type");
  }
}

}  // namespace servelab
